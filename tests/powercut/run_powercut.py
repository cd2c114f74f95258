#!/usr/bin/env python3
"""Power-cut test: the server in a qemu guest whose disk has a volatile
write cache (nbdcache.py); concurrent single-instance STOWs; the power is
cut (qemu killed) at a random moment, and the disk keeps a random part of
what it had not flushed. The guest boots again on what is left and checks:
every instance whose STOW got its 2xx is listed and retrievable
byte-identical, nothing listed is missing or damaged, no temp file is
left. Several cuts per file system, on ext4 with a journal, ext4 without
one, and XFS (where the server commits with one flush), and on ext4
without a journal with one_flush = false (two flushes: the commit of other
file systems and of replacements); the store accumulates across the cuts.

    run_powercut.py [--fs ext4,ext4nj,xfs,ext4nj:two-flush] [--cuts 3] [--per-cut 48]
                    [--seed S]

Needs qemu-system-x86, busybox-static, kmod, e2fsprogs, xfsprogs, and a
Debian kernel package (downloaded with apt-get into the work folder, or
--kernel-deb). No KVM, no root, no loop device: software emulation.
Exit 0 when every check passed."""
import argparse
import glob
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, 'tests', 'e2e'))
import harness as H  # noqa: E402  (free_port)
CORPUS = os.environ.get('YY_CORPUS', os.path.join(SRC, '..', 'shared', 'corpus'))
BUILD = os.environ.get('YY_BUILD_ROOT', os.path.join(SRC, 'build'))
MR = os.path.join(CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196')
MODULES = ['virtio_ring', 'virtio', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev',
           'virtio_pci', 'virtio_blk', 'crc16', 'mbcache', 'jbd2', 'crc32c_generic',
           'libcrc32c', 'ext4', 'xfs']
BOUNDARY = b'yyb'
EXPLICIT_LE = '1.2.840.10008.1.2.1'


def log(msg):
    print(msg, flush=True)


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# --- the guest's files ------------------------------------------------------

def kernel(work, deb):
    """vmlinuz and the module folder of a Debian kernel package."""
    if not deb:
        meta = subprocess.run(['apt-cache', 'depends', 'linux-image-amd64'],
                              capture_output=True, text=True, check=True).stdout
        name = re.search(r'Depends: (linux-image-\S+)', meta).group(1)
        kd = os.path.join(work, 'kdeb')
        os.makedirs(kd)
        subprocess.run(['apt-get', 'download', name], cwd=kd, check=True,
                       capture_output=True)
        deb = glob.glob(os.path.join(kd, '*.deb'))[0]
    root = os.path.join(work, 'kernel')
    subprocess.run(['dpkg-deb', '-x', deb, root], check=True)
    (vmlinuz,) = glob.glob(os.path.join(root, 'boot', 'vmlinuz-*'))
    (mods,) = glob.glob(os.path.join(root, 'lib', 'modules', '*'))
    return vmlinuz, mods


def find_module(mods, name):
    hits = glob.glob(os.path.join(mods, 'kernel', '**', name + '.ko*'), recursive=True)
    check(len(hits) == 1, 'kernel module %s: %s' % (name, hits))
    return hits[0]


class Cpio:
    """A newc archive, gzipped: the guest's initramfs."""

    def __init__(self):
        self.out = io.BytesIO()
        self.ino = 1
        self.dirs = set()

    def _entry(self, name, mode, data=b''):
        hdr = '070701' + ''.join('%08x' % v for v in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
        self.ino += 1
        b = hdr.encode() + name.encode() + b'\0'
        b += bytes((-len(b)) % 4)
        self.out.write(b + data + bytes((-len(data)) % 4))

    def dir(self, name):
        parts = name.strip('/').split('/')
        for i in range(1, len(parts) + 1):
            d = '/'.join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                self._entry(d, 0o40755)

    def file(self, name, data, mode=0o644):
        name = name.strip('/')
        if '/' in name:
            self.dir(name.rsplit('/', 1)[0])
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name, target):
        name = name.strip('/')
        self.dir(name.rsplit('/', 1)[0])
        self._entry(name, 0o120777, target.encode())

    def close(self):
        self._entry('TRAILER!!!', 0)
        return gzip.compress(self.out.getvalue(), 1)


def add_program(cp, path, as_name, done):
    """A program and the shared libraries ldd names, at their host paths."""
    cp.file(as_name, open(path, 'rb').read(), 0o755)
    out = subprocess.run(['ldd', path], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.search(r'(/\S+) \(0x', line)
        if not m:
            continue
        lib = m.group(1)
        if lib in done:
            continue
        done.add(lib)
        real = os.path.realpath(lib)
        cp.file(real, open(real, 'rb').read(), 0o755)
        if real != lib:
            cp.symlink(lib, real)


def instances(n):
    """n distinct instances of the corpus's real MR series (the SOP Instance
    UID patched in place, same length): [(study, series, sop, bytes)]."""
    import pydicom
    out = []
    files = sorted(os.listdir(MR))[:20]
    tpl = []
    for f in files:
        raw = open(os.path.join(MR, f), 'rb').read()
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
        check(ds.file_meta.TransferSyntaxUID == EXPLICIT_LE, 'template syntax')
        tpl.append((raw, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                    ds.SOPInstanceUID.encode()))
    for i in range(n):
        raw, st, se, uid = tpl[i % len(tpl)]
        new = uid[:-8] + b'%08d' % (90000000 + i)
        out.append((st, se, new.decode(), raw.replace(uid, new)))
    return out


def initramfs(work, mods, insts):
    cp = Cpio()
    for d in ('bin', 'sbin', 'proc', 'sys', 'dev', 'tmp', 'data', 'run', 'etc'):
        cp.dir(d)
    cp.file('bin/busybox', open('/bin/busybox', 'rb').read(), 0o755)
    cp.file('init', open(os.path.join(HERE, 'init.sh'), 'rb').read(), 0o755)
    done = set()
    add_program(cp, os.path.join(BUILD, 'yingyun'), 'yy/yingyun', done)
    worker = os.path.join(BUILD, 'yingyun-codec-worker')
    if os.path.exists(worker):
        add_program(cp, worker, 'yy/yingyun-codec-worker', done)
    add_program(cp, '/sbin/e2fsck', 'sbin/e2fsck', done)
    add_program(cp, shutil.which('curl'), 'bin/curl', done)
    for m in MODULES:
        cp.file('lib/modules/%s.ko' % m, open(find_module(mods, m), 'rb').read())
    cp.file('lib/modules/order', ('\n'.join(MODULES) + '\n').encode())
    lst = []
    for i, (st, se, sop, data) in enumerate(insts):
        body = (b'--' + BOUNDARY + b'\r\nContent-Type: application/dicom\r\n\r\n' + data +
                b'\r\n--' + BOUNDARY + b'--\r\n')
        cp.file('req/%05d.mp' % i, body)
        lst.append('%d %s %s %s\n' % (i, st, se, sop))
    cp.file('req/list', ''.join(lst).encode())
    path = os.path.join(work, 'initrd.gz')
    with open(path, 'wb') as f:
        f.write(cp.close())
    return path


# --- the host side ----------------------------------------------------------

def mkfs(image, fs, size_mb):
    with open(image, 'wb') as f:
        f.truncate(size_mb << 20)
    if fs == 'xfs':
        cmd = ['mkfs.xfs', '-q', '-f', image]
    else:
        cmd = ['mkfs.ext4', '-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0']
        if fs == 'ext4nj':
            cmd += ['-O', '^has_journal']
        cmd.append(image)
    subprocess.run(cmd, check=True, capture_output=True)


class Boot:
    """nbdcache + qemu for one boot; lines "YY ..." of the console in .lines."""

    def __init__(self, work, vmlinuz, initrd, image, keep, seed, append, tag, cut_at=0,
                 lying=False):
        self.port = H.free_port()
        self.stats = os.path.join(work, 'nbd-%s.json' % tag)
        self.console = open(os.path.join(work, 'console-%s.txt' % tag), 'w')
        self.nbd = subprocess.Popen([sys.executable, os.path.join(HERE, 'nbdcache.py'), image,
                                     str(self.port), '--keep', str(keep), '--seed', str(seed),
                                     '--stats', self.stats, '--cut-at', str(cut_at)] +
                                    (['--lying'] if lying else []),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        check(self.nbd.stdout.readline().strip() == 'listening', 'nbdcache started')
        self.qemu = subprocess.Popen(
            ['qemu-system-x86_64', '-M', 'pc', '-cpu', 'max', '-smp', '2', '-m', '1024',
             '-accel', 'tcg,thread=multi', '-kernel', vmlinuz, '-initrd', initrd,
             '-append', 'console=ttyS0 quiet panic=-1 ' + append,
             '-drive', 'file=nbd://127.0.0.1:%d,format=raw,if=virtio,cache=writeback' % self.port,
             '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-nic', 'none',
             '-no-reboot'],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_nbd, daemon=True).start()

    def _read_nbd(self):
        """nbdcache prints "cut" when it cut the power itself (--cut-at)."""
        for line in self.nbd.stdout:
            if line.strip() == 'cut':
                with self.cond:
                    self.lines.append('disk-cut')
                    self.cond.notify_all()

    def _read(self):
        for raw in self.qemu.stdout:
            line = raw.decode('utf-8', 'replace').rstrip('\r\n')
            self.console.write(line + '\n')
            i = line.find('YY ')
            if i >= 0:
                with self.cond:
                    self.lines.append(line[i + 3:])
                    self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_for(self, pred, timeout):
        end = time.time() + timeout
        with self.cond:
            while not pred(self.lines) and not self.eof:
                left = end - time.time()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return pred(self.lines)

    def cut(self):
        self.qemu.kill()
        self.qemu.wait()
        self.nbd.wait(timeout=60)
        self.console.close()
        return self._stats()

    def finish(self, timeout):
        try:
            self.qemu.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.qemu.kill()
            self.qemu.wait()
            raise Fail('guest did not power off')
        self.nbd.wait(timeout=60)
        self.console.close()
        with self.cond:
            while not self.eof:
                self.cond.wait(1)
        return self._stats()

    def _stats(self):
        with open(self.stats) as f:
            return json.load(f)


def parse_check(lines):
    have, miss, qido, tmp, fsck, logs = {}, set(), None, None, None, []
    for l in lines:
        w = l.split()
        if w[0] == 'HAVE':
            have[int(w[1])] = w[2]
        elif w[0] == 'MISS':
            miss.add(int(w[1]))
        elif w[0] == 'QIDO':
            qido = set(w[1:])
        elif w[0] == 'tmpfiles':
            tmp = int(w[1])
        elif w[0] == 'fsck':
            fsck = int(w[1])
        elif w[0] == 'LOG':
            logs.append(l[4:])
    return have, miss, qido, tmp, fsck, logs


def run_fs(a, work, vmlinuz, initrd, insts, spec, rnd):
    """spec: a file system (ext4, ext4nj = ext4 without a journal, xfs),
    with ":two-flush" for the server's other commit (one_flush = false)."""
    fs, _, variant = spec.partition(':')
    check(fs in ('ext4', 'ext4nj', 'xfs') and variant in ('', 'two-flush'), 'bad --fs ' + spec)
    commit = 'two-flush' if variant else 'one-flush'
    image = os.path.join(work, 'disk-%s-%s.img' % (fs, commit))
    mkfs(image, fs, a.disk_mb)
    digests = [hashlib.sha256(d).hexdigest() for _, _, _, d in insts]
    sop_of = [s for _, _, s, _ in insts]
    acked = set()
    sent = 0
    keeps = [0.0, 0.5, 1.0, 0.25, 0.75]
    for cut in range(a.cuts):
        keep = keeps[cut % len(keeps)]
        # the disk loses power at a write while it holds unflushed ones, at
        # a random point of the run (~7 writes per instance), counted from
        # the server's start
        cut_at = rnd.randint(a.per_cut // 2, a.per_cut * 3)
        tag = '%s-%s-%d' % (fs, commit, cut)
        t0 = time.time()
        b = Boot(work, vmlinuz, initrd, image, keep, rnd.randrange(1 << 30),
                 'yy.mode=run yy.fs=%s yy.commit=%s yy.from=%d yy.count=%d yy.clients=%d' % (
                     fs, commit, sent, a.per_cut, a.clients), 'run-' + tag, cut_at, a.lying_disk)
        up = b.wait_for(lambda ls: 'server up' in ls, 300)
        check(up, '%s: the guest server came up (console-run-%s.txt)' % (spec, tag))
        b.nbd.stdin.write('arm\n')
        b.nbd.stdin.flush()
        check(b.wait_for(lambda ls: 'store-checked' in ls, 30) and commit in b.lines,
              '%s: the server commits with %s' % (spec, commit))
        check(('syncfs' in b.lines) == (fs == 'ext4nj'),
              '%s: the server syncs folders with syncfs exactly on ext4 without a journal' % spec)
        check(b.wait_for(lambda ls: 'disk-cut' in ls or 'run-done' in ls, 600),
              '%s: the run came to its cut' % spec)
        # acknowledgements already on their way (their flush came before
        # the cut) reach the console; then the machine is gone
        time.sleep(1.0)
        st = b.cut()
        cut_lines = list(b.lines)
        acks = {int(x.split()[1]) for x in cut_lines if x.startswith('ACK')}
        naks = [x for x in cut_lines if x.startswith('NAK')]
        check(not naks, '%s: no STOW refused before the cut: %s' % (spec, naks[:3]))
        acked |= acks
        sent += a.per_cut
        where = ('at write %d' % cut_at if 'disk-cut' in cut_lines else
                 'after the run (write %d not reached)' % cut_at)
        if 'disk-cut' in cut_lines:
            late = [x for x in cut_lines[cut_lines.index('disk-cut'):] if x.startswith('ACK')]
            if late:
                # console and disk report through separate pipes: approximate
                where += ' (%s seen after the disk stopped)' % ', '.join(late)
        log('  %s cut %d: %s, keeping %.2f of the unflushed 4 KiB pieces; %d '
            'acknowledged this boot (%d in all), cut after %.0f s; disk: %d writes (%d FUA), '
            '%d flushes, at the cut %d unflushed writes (%d of %d pieces kept)' % (
                spec, cut, where, keep, len(acks), len(acked), time.time() - t0, st['writes'],
                st['fua_writes'], st['flushes'], st.get('unflushed_writes', 0),
                st.get('pieces_kept', 0), st.get('unflushed_pieces', 0)))
        check(st['flushes'] > 0, '%s: the guest flushed its disk' % spec)
        # boot again on what the disk kept, and look
        b = Boot(work, vmlinuz, initrd, image, 1.0, 0,
                 'yy.mode=check yy.fs=%s yy.commit=%s yy.upto=%d' % (fs, commit, sent),
                 'check-' + tag)
        check(b.wait_for(lambda ls: 'check-done' in ls, 900),
              '%s: the check boot finished (console-check-%s.txt)' % (spec, tag))
        st2 = b.finish(120)
        check(not st2.get('cut'), '%s: the check boot shut down cleanly' % spec)
        have, miss, qido, tmp, fsck, logs = parse_check(b.lines)
        check(len(have) + len(miss) == sent, '%s: every instance looked up (%d + %d of %d)' % (
            spec, len(have), len(miss), sent))
        if fs == 'ext4nj':
            check(fsck is not None and fsck <= 1, '%s: e2fsck fixed what it found (%s)' % (
                spec, fsck))
        lost = sorted(i for i in acked if i not in have)
        check(not lost, '%s: acknowledged instances lost: %s' % (spec, lost[:10]))
        bad = sorted(i for i, h in have.items() if h != digests[i])
        check(not bad, '%s: instances served with other bytes: %s' % (spec, bad[:10]))
        check(qido is not None, '%s: QIDO answered' % spec)
        ghost = sorted(qido - {sop_of[i] for i in have})
        check(not ghost, '%s: listed but not retrievable: %s' % (spec, ghost[:5]))
        check(tmp == 0, '%s: no temp file left (%s)' % (spec, tmp))
        extra = len(have) - len(acked)
        log('  %s check %d: %d acknowledged all retrievable byte-identical; %d stored without '
            'an answer (cut before it), %d not stored; QIDO lists %d; fsck %s; server: %s' % (
                spec, cut, len(acked), extra, len(miss), len(qido),
                '-' if fsck is None else fsck, '; '.join(logs[-3:]) or 'nothing to recover'))
        # what was kept stays: the next run boots on this disk (no unflushed
        # writes remain after a clean shutdown)
    return len(acked)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--fs', default='ext4,ext4nj,xfs,ext4nj:two-flush')
    ap.add_argument('--cuts', type=int, default=3)
    ap.add_argument('--per-cut', type=int, default=48)
    ap.add_argument('--clients', type=int, default=4)
    ap.add_argument('--disk-mb', type=int, default=512)
    ap.add_argument('--seed', type=int, default=int(time.time()))
    ap.add_argument('--kernel-deb')
    ap.add_argument('--keep-work', action='store_true')
    ap.add_argument('--lying-disk', action='store_true',
                    help='the disk answers flushes without doing them: the test must fail')
    a = ap.parse_args()
    for tool in ('qemu-system-x86_64', 'mkfs.ext4', 'mkfs.xfs', 'dpkg-deb', 'curl'):
        check(shutil.which(tool), 'needs ' + tool)
    check(os.path.exists('/bin/busybox'), 'needs busybox-static')
    log('power-cut test: seed %d, %s, %d cuts x %d single-instance STOWs (%d clients)' % (
        a.seed, a.fs, a.cuts, a.per_cut, a.clients))
    work = tempfile.mkdtemp(prefix='yy-powercut-')
    rnd = random.Random(a.seed)
    ok = False
    try:
        vmlinuz, mods = kernel(work, a.kernel_deb)
        insts = instances(a.cuts * a.per_cut)
        initrd = initramfs(work, mods, insts)
        for spec in a.fs.split(','):
            n = run_fs(a, work, vmlinuz, initrd, insts, spec, rnd)
            log('ok %s: %d cuts, %d acknowledged instances survived' % (spec, a.cuts, n))
        ok = True
    except Fail as e:
        log('FAIL: %s (seed %d; work folder %s)' % (e, a.seed, work))
    finally:
        if ok and not a.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
