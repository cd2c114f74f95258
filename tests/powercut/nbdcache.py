#!/usr/bin/env python3
"""nbdcache.py - a disk with a volatile write cache, served over NBD to
qemu, for power-cut tests.

    nbdcache.py IMAGE PORT --keep P --seed S [--cut-at N] [--stats FILE]

Serves one client (qemu's NBD block driver, fixed newstyle handshake,
simple replies). Writes are held in a cache and reach IMAGE only at a
FLUSH, or at once when the client sets FUA: what a disk with a write cache
does. Reads see the cache. When the client goes away without NBD_CMD_DISC
(qemu killed: the power cut), each 4 KiB piece of every write still in the
cache reaches IMAGE with probability P, in the order written, so the image
holds any mix of the unflushed writes (lost, reordered or torn at 4 KiB),
as a disk that lost power might. Then the server exits; stats (JSON) go to
--stats. With --cut-at N the power goes at the first write, from the N-th
after "arm" (a line on stdin) on, that finds the cache holding others:
that write is taken into the cache, never answered, "cut" is printed, the
cut is applied to IMAGE and the server stops answering (the guest's disk
hangs) until the client goes away. --lying answers FLUSH without doing it: a disk that loses data it
promised, which the test must catch.

Only the flushed state is promised by a real disk; a file system and a
store that are correct survive every P, 0 (nothing unflushed written) and
1 (everything) included."""
import argparse
import json
import os
import random
import socket
import struct
import sys
import threading

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x0003E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_REPLY = 0x67446698

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
T_HAS_FLAGS, T_SEND_FLUSH, T_SEND_FUA = 1, 4, 8

OPT_EXPORT_NAME, OPT_ABORT, OPT_INFO, OPT_GO = 1, 2, 6, 7
REP_ACK, REP_INFO = 1, 3
REP_ERR_UNSUP = (1 << 31) | 1
INFO_EXPORT = 0

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
CMD_FLAG_FUA = 1
EINVAL, EIO = 22, 5

PIECE = 4096
MAX_REQ = 32 << 20


def recv_exact(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return bytes(b)


class Disk:
    def __init__(self, path):
        self.f = open(path, 'r+b')
        self.size = os.fstat(self.f.fileno()).st_size
        self.cache = []  # (offset, bytes) in the order written, not yet on "the medium"
        self.lying = False
        self.armed = None  # writes when armed (--cut-at)
        self.stats = {'reads': 0, 'writes': 0, 'fua_writes': 0, 'flushes': 0,
                      'bytes_written': 0}

    def _media_write(self, off, data):
        self.f.seek(off)
        self.f.write(data)

    def read(self, off, n):
        self.f.seek(off)
        b = bytearray(self.f.read(n))
        for o, d in self.cache:
            lo, hi = max(o, off), min(o + len(d), off + n)
            if lo < hi:
                b[lo - off:hi - off] = d[lo - o:hi - o]
        return bytes(b)

    def write(self, off, data, fua):
        self.stats['writes'] += 1
        self.stats['bytes_written'] += len(data)
        if fua:
            # durable now, alone; the parts of older cached writes under it
            # must not land over it later
            self.stats['fua_writes'] += 1
            end = off + len(data)
            rest = []
            for o, d in self.cache:
                if o < off:
                    rest.append((o, d[:min(len(d), off - o)]))
                if o + len(d) > end:
                    s = max(o, end)
                    rest.append((s, d[s - o:]))
            self.cache = rest
            self._media_write(off, data)
        else:
            self.cache.append((off, data))

    def flush(self, count=True):
        if count:
            self.stats['flushes'] += 1
        for o, d in self.cache:
            self._media_write(o, d)
        self.cache = []
        self.f.flush()

    def power_cut(self, keep, rnd):
        pieces = kept = 0
        for o, d in self.cache:
            p = o
            while p < o + len(d):
                q = min(o + len(d), (p // PIECE + 1) * PIECE)
                pieces += 1
                if rnd.random() < keep:
                    kept += 1
                    self._media_write(p, d[p - o:q - o])
                p = q
        self.stats.update(cut=True, unflushed_writes=len(self.cache), unflushed_pieces=pieces,
                          pieces_kept=kept)
        self.cache = []
        self.f.flush()


def handshake(c, disk):
    c.sendall(struct.pack('>QQH', NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
    (cflags,) = struct.unpack('>I', recv_exact(c, 4))
    tflags = T_HAS_FLAGS | T_SEND_FLUSH | T_SEND_FUA
    while True:
        magic, opt, ln = struct.unpack('>QII', recv_exact(c, 16))
        if magic != IHAVEOPT or ln > 65536:
            raise EOFError
        recv_exact(c, ln)

        def reply(rtype, data=b''):
            c.sendall(struct.pack('>QIII', REPLY_MAGIC, opt, rtype, len(data)) + data)

        if opt == OPT_EXPORT_NAME:
            c.sendall(struct.pack('>QH', disk.size, tflags) +
                      (b'' if cflags & FLAG_NO_ZEROES else bytes(124)))
            return
        if opt in (OPT_INFO, OPT_GO):
            reply(REP_INFO, struct.pack('>HQH', INFO_EXPORT, disk.size, tflags))
            reply(REP_ACK)
            if opt == OPT_GO:
                return
        elif opt == OPT_ABORT:
            reply(REP_ACK)
            raise EOFError
        else:
            reply(REP_ERR_UNSUP)  # structured replies, meta contexts, lists


def serve(c, disk, cut_at):
    """True when the client said goodbye (NBD_CMD_DISC), False when it
    vanished or the power was cut (cut_at)."""
    while True:
        try:
            magic, flags, typ, handle, off, ln = struct.unpack('>IHHQQI', recv_exact(c, 28))
        except (EOFError, ConnectionError):
            return False
        if magic != REQ_MAGIC:
            return False
        if typ == CMD_WRITE:
            try:
                data = recv_exact(c, ln)
            except (EOFError, ConnectionError):
                return False  # cut in the middle of a request: never acknowledged
            if (cut_at and disk.armed is not None and
                    disk.stats['writes'] + 1 - disk.armed >= cut_at and disk.cache):
                disk.cache.append((off, data))
                disk.stats['writes'] += 1
                return False
        err, out = 0, b''
        if typ in (CMD_READ, CMD_WRITE) and (ln > MAX_REQ or off + ln > disk.size):
            err = EINVAL
        elif typ == CMD_READ:
            disk.stats['reads'] += 1
            out = disk.read(off, ln)
        elif typ == CMD_WRITE:
            disk.write(off, data, flags & CMD_FLAG_FUA)
        elif typ == CMD_FLUSH:
            if disk.lying:
                disk.stats['flushes'] += 1  # answered, not done
            else:
                disk.flush()
        elif typ == CMD_DISC:
            disk.flush(count=False)  # a clean shutdown: qemu flushed before
            return True
        else:
            err = EINVAL
        try:
            c.sendall(struct.pack('>IIQ', SIMPLE_REPLY, err, handle) + out)
        except (ConnectionError, OSError):
            return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('image')
    ap.add_argument('port', type=int)
    ap.add_argument('--keep', type=float, default=0.5)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--stats')
    ap.add_argument('--cut-at', type=int, default=0)
    ap.add_argument('--lying', action='store_true',
                    help='answer FLUSH without writing the cache (to check that the test '
                         'catches a disk that loses acknowledged data)')
    a = ap.parse_args()
    disk = Disk(a.image)
    disk.lying = a.lying

    def arm():
        for line in sys.stdin:
            if line.strip() == 'arm':
                disk.armed = disk.stats['writes']
    threading.Thread(target=arm, daemon=True).start()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(('127.0.0.1', a.port))
    ls.listen(1)
    print('listening', flush=True)
    c, _ = ls.accept()
    ls.close()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    clean = False
    try:
        handshake(c, disk)
        clean = serve(c, disk, a.cut_at)
    except (EOFError, ConnectionError):
        pass
    if clean:
        disk.stats['cut'] = False
    else:
        disk.power_cut(a.keep, random.Random(a.seed))
    disk.f.close()
    if a.stats:
        with open(a.stats, 'w') as f:
            json.dump(disk.stats, f)
    print('cut' if not clean else 'done', flush=True)
    # the guest's disk stays silent until qemu is gone
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
