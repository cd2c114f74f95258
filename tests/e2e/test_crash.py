#!/usr/bin/env python3
"""Crash consistency: concurrent STOW-RS clients while the server is killed
with SIGKILL at random moments (at least 20 kills), restarted each time.
Afterwards every instance that got a success entry in a STOW response is
retrievable and byte-identical; QIDO lists nothing that cannot be
retrieved; no temp file or index row is left dangling; deleting the index
and running `yingyun reindex` reproduces the same QIDO answers.
Bounded to a couple of minutes; the random seed is printed."""
import hashlib
import http.client
import io
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
import zlib

sys.path.insert(0, os.path.dirname(__file__))
import harness as H  # noqa: E402

warnings.filterwarnings('ignore')
import pydicom  # noqa: E402

KILLS = int(os.environ.get('YY_CRASH_KILLS', '24'))
CLIENTS = 4
SEED = int(os.environ.get('YY_CRASH_SEED', str(int(time.time()))))
MR = os.path.join(H.CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196')


class Generator:
    """Distinct instances made from the real MR series: same bytes except
    the SOP Instance UID (patched in place, same length)."""

    def __init__(self):
        self.templates = []
        for f in sorted(os.listdir(MR))[:20]:
            raw = open(os.path.join(MR, f), 'rb').read()
            uid = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True).SOPInstanceUID.encode()
            self.templates.append((raw, uid))
        self.n = 0
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            i = self.n
            self.n += 1
        raw, uid = self.templates[i % len(self.templates)]
        new = uid[:-8] + b'%08d' % i
        data = raw.replace(uid, new)
        return new.decode(), data


def stow(port, parts):
    body, ct = H.multipart(parts)
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        c.request('POST', '/dicomweb/studies', body=body, headers={'Content-Type': ct})
        r = c.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None
    finally:
        c.close()


def test_sigkill_during_concurrent_stow():
    rnd = random.Random(SEED)
    print('  seed %d, %d kills, %d clients' % (SEED, KILLS, CLIENTS))
    gen = Generator()
    s = H.Server('--log-level', 'warn')
    s.start()
    acked = {}           # sop -> sha256 of the bytes sent
    lock = threading.Lock()
    stop = threading.Event()
    stats = {'requests': 0, 'errors': 0}

    def client(k):
        while not stop.is_set():
            batch = [gen.next() for _ in range(rnd.randint(1, 5))]
            try:
                st, js = stow(s.port, [d for _, d in batch])
            except (OSError, http.client.HTTPException, ValueError):
                with lock:
                    stats['errors'] += 1
                time.sleep(0.02)
                continue
            with lock:
                stats['requests'] += 1
            if st in (200, 202) and js:
                by_uid = dict(batch)
                for item in H.values(js, '00081199'):
                    sop = H.value(item, '00081155')
                    with lock:
                        acked[sop] = hashlib.sha256(by_uid[sop]).hexdigest()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        for i in range(KILLS):
            time.sleep(rnd.uniform(0.05, 0.5))
            s.kill()
            s.start()
    finally:
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
    print('  %d STOW requests answered, %d cut by kills, %d instances acknowledged'
          % (stats['requests'], stats['errors'], len(acked)))
    H.check(len(acked) > 50, 'enough acknowledged instances to mean something')
    s.kill()
    s.start()
    try:
        # no temp file survives a start
        H.eq(os.listdir(os.path.join(s.data, 'tmp')), [], 'temp files cleaned')
        # every acknowledged instance is retrievable and byte-identical
        listed = s.get_json('/dicomweb/instances?limit=100000')
        by_sop = {H.value(x, '00080018'): x for x in listed}
        for sop, digest in acked.items():
            H.check(sop in by_sop, 'acknowledged instance %s listed' % sop)
            x = by_sop[sop]
            st, h, body = s.get('/dicomweb/studies/%s/series/%s/instances/%s' % (
                H.value(x, '0020000D'), H.value(x, '0020000E'), sop),
                headers={'Accept': 'multipart/related; type="application/dicom"; transfer-syntax=*'})
            H.eq(st, 200, 'retrieve ' + sop)
            b = re.search(r'boundary=(\S+)', h['content-type']).group(1).encode()
            data = body.split(b'--' + b)[1].split(b'\r\n\r\n', 1)[1][:-2]
            H.eq(hashlib.sha256(data).hexdigest(), digest, 'byte-identical ' + sop)
        # QIDO lists nothing that cannot be retrieved
        for sop, x in by_sop.items():
            st, _, _ = s.request('HEAD', '/dicomweb/studies/%s/series/%s/instances/%s' % (
                H.value(x, '0020000D'), H.value(x, '0020000E'), sop))
            H.eq(st, 200, 'listed instance retrievable ' + sop)
        # no index row without its file, no file under a wrong name
        db = sqlite3.connect(os.path.join(s.data, 'index.db'))
        rows = db.execute('SELECT rel_path FROM instance').fetchall()
        H.eq(db.execute('SELECT count(*) FROM pending_unlink').fetchone()[0], 0, 'journal empty')
        db.close()
        for (rel,) in rows:
            H.check(os.path.isfile(os.path.join(s.data, rel)), 'row without file: ' + rel)
        files = sum(len(fs) for _, _, fs in os.walk(os.path.join(s.data, 'objects')))
        print('  %d instances listed, %d files on disk (files beyond the index are objects '
              'whose STOW was cut before its answer)' % (len(rows), files))
        H.check(files >= len(rows), 'files >= rows')
        # reindex from the files alone: same answers (plus any complete but
        # unacknowledged objects, which were on disk)
        queries = ['/dicomweb/studies?limit=100000&includefield=all',
                   '/dicomweb/series?limit=100000', '/dicomweb/instances?limit=100000']
        before = [json.loads(s.get(q)[2]) for q in queries]
        s.stop()
        for suffix in ('', '-wal', '-shm'):
            p = os.path.join(s.data, 'index.db' + suffix)
            if os.path.exists(p):
                os.unlink(p)
        p = subprocess.run([H.BIN, 'reindex', '--data', s.data], capture_output=True, text=True)
        H.eq(p.returncode, 0, 'reindex: ' + p.stderr[-500:])
        s.start()
        after = [json.loads(s.get(q)[2]) for q in queries]
        if files == len(rows):
            for q, b, a in zip(queries, before, after):
                H.eq(a, b, 'same QIDO answer after reindex: ' + q)
        else:
            got = {H.value(x, '00080018') for x in after[2]}
            H.check(set(by_sop) <= got, 'reindex keeps every indexed instance')
            H.eq(len(got), files, 'reindex indexes every complete file')
    finally:
        s.cleanup()


def retrieve(s, x):
    """The stored bytes of the instance of QIDO entry x."""
    st, h, body = s.get('/dicomweb/studies/%s/series/%s/instances/%s' % (
        H.value(x, '0020000D'), H.value(x, '0020000E'), H.value(x, '00080018')),
        headers={'Accept': 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    H.eq(st, 200, 'retrieve ' + H.value(x, '00080018'))
    b = re.search(r'boundary=(\S+)', h['content-type']).group(1).encode()
    return body.split(b'--' + b)[1].split(b'\r\n\r\n', 1)[1][:-2]


def sha(b):
    return hashlib.sha256(b).hexdigest()


def listed(s):
    return {H.value(x, '00080018'): x for x in s.get_json('/dicomweb/instances?limit=100000')}


def lose_wal(s):
    """SIGKILL, then the WAL removed, as if none of it had reached the disk
    (an OS crash after commits that were not synced). Returns the instance
    rows left in the database file."""
    s.kill()
    wal = os.path.join(s.data, 'index.db-wal')
    H.check(os.path.getsize(wal) > 0, 'the last commits are in the WAL only')
    for suffix in ('-wal', '-shm'):
        os.unlink(os.path.join(s.data, 'index.db' + suffix))
    db = sqlite3.connect(os.path.join(s.data, 'index.db'))
    try:
        return db.execute('SELECT count(*) FROM instance').fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # not even the schema had been checkpointed
    finally:
        db.close()


def test_lost_index_commits_are_recovered():
    """New instances are committed to the index without syncing its WAL (their
    files are durable first): an OS crash or power loss may take those
    commits. Simulated here: SIGKILL, then the WAL removed, as if none of it
    had reached the disk. At the next start every acknowledged instance is
    listed and retrievable again."""
    gen = Generator()
    s = H.Server('--log-level', 'info')
    s.start()
    try:
        first = [gen.next() for _ in range(6)]
        st, _, _ = s.stow([d for _, d in first])
        H.eq(st, 200, 'first STOW')
        s.stop()  # clean: the index is checkpointed into index.db
        s.start()
        acked = dict(first)
        for k in range(4):
            batch = [gen.next() for _ in range(k + 2)]
            st, _, js = s.stow([d for _, d in batch])
            H.eq(st, 200, 'STOW %d' % k)
            by_uid = dict(batch)
            for item in H.values(js, '00081199'):
                sop = H.value(item, '00081155')
                acked[sop] = by_uid[sop]
        H.eq(len(acked), 6 + 2 + 3 + 4 + 5, 'every instance acknowledged')
        H.eq(len(listed(s)), len(acked), 'listed before the crash')
        H.eq(lose_wal(s), 6, 'the index lost the commits after the clean stop')
        s.start()
        got = listed(s)
        H.eq(set(got), set(acked), 'every acknowledged instance listed after the restart')
        for sop, data in acked.items():
            H.eq(sha(retrieve(s, got[sop])), sha(data), 'byte-identical ' + sop)
        H.check('indexed again' in s.read_log(), 'the recovery is logged')
        # a second start finds nothing to do
        s.stop()
        s.start()
        H.eq(set(listed(s)), set(acked), 'same after another restart')
        H.eq(s.read_log().count('indexed again'), 1, 'nothing recovered twice')
    finally:
        s.cleanup()


def test_every_commit_lost():
    """The same when no commit reached the disk at all (an empty index)."""
    gen = Generator()
    s = H.Server('--log-level', 'info')
    s.start()
    try:
        batch = [gen.next() for _ in range(3)]
        H.eq(s.stow([d for _, d in batch])[0], 200, 'STOW')
        H.eq(lose_wal(s), 0, 'nothing durable')
        s.start()
        got = listed(s)
        H.eq(set(got), {sop for sop, _ in batch}, 'all listed after the restart')
        for sop, data in batch:
            H.eq(sha(retrieve(s, got[sop])), sha(data), 'byte-identical ' + sop)
    finally:
        s.cleanup()


def test_torn_object_is_set_aside():
    """One flush (ext4, XFS): an object is linked into place before the fsync
    that makes it durable, with the CRC-32 of its bytes in its inode. A power
    loss during that fsync may leave it with a block that never reached the
    disk (and its index row lost): simulated by zeroing a block of a stored
    file and removing the WAL. At the next start that object is moved to
    damaged/, not indexed; the others are indexed again, byte-identical.
    With one_flush off, objects carry no CRC."""
    gen = Generator()
    s = H.Server('--log-level', 'info')
    s.start()
    try:
        if 'one flush per new object' not in s.read_log():
            print('skip: one flush is off on this file system (neither ext4 nor XFS)')
            return
        batch = [gen.next() for _ in range(3)]
        H.eq(s.stow([d for _, d in batch])[0], 200, 'STOW')
        H.eq(lose_wal(s), 0, 'no row durable')
        objects = os.path.join(s.data, 'objects')
        (day,) = os.listdir(objects)
        files = sorted(os.listdir(os.path.join(objects, day)))
        H.eq(len(files), 3, 'three objects')
        by_bytes = {data: sop for sop, data in batch}
        torn = None
        for name in files:
            p = os.path.join(objects, day, name)
            raw = open(p, 'rb').read()
            crc = int.from_bytes(os.getxattr(p, 'user.yingyun.crc32'), 'little')
            H.eq(crc, zlib.crc32(raw), 'CRC-32 of ' + name)
            if torn is None:
                torn = (name, by_bytes[raw])
                with open(p, 'r+b') as f:
                    f.seek(8192)
                    f.write(bytes(4096))
        s.start()
        got = listed(s)
        H.eq(set(got), {sop for sop, _ in batch} - {torn[1]}, 'the others indexed again')
        for sop, data in batch:
            if sop in got:
                H.eq(sha(retrieve(s, got[sop])), sha(data), 'byte-identical ' + sop)
        H.check(not os.path.exists(os.path.join(objects, day, torn[0])), 'torn file moved')
        kept = os.path.join(s.data, 'damaged', day + '-' + torn[0])
        H.check(os.path.exists(kept), 'torn file kept in damaged/')
        H.check('does not match its CRC-32' in s.read_log(), 'the torn object is logged')
        s.stop()
        s.start()
        H.eq(set(listed(s)), set(got), 'same after another restart')
        H.eq(s.read_log().count('does not match its CRC-32'), 1, 'logged once')
    finally:
        s.cleanup()
    s = H.Server('--log-level', 'info', '--one_flush', 'false')
    s.start()
    try:
        H.check('two flushes per new object' in s.read_log(), 'one_flush off is logged')
        H.eq(s.stow([gen.next()[1]])[0], 200, 'STOW, two flushes')
        objects = os.path.join(s.data, 'objects')
        (day,) = os.listdir(objects)
        (name,) = os.listdir(os.path.join(objects, day))
        H.check('user.yingyun.crc32' not in os.listxattr(os.path.join(objects, day, name)),
                'no CRC with two flushes')
    finally:
        s.cleanup()


def test_recovery_reads_recent_folders_only():
    """Start-up recovery is bounded: objects of a folder weeks old under a new
    index are left to `yingyun reindex` (which finds them), so a start never
    turns into a full reindex."""
    gen = Generator()
    s = H.Server('--log-level', 'info')
    s.start()
    try:
        batch = [gen.next() for _ in range(2)]
        H.eq(s.stow([d for _, d in batch])[0], 200, 'STOW')
        s.stop()
        objects = os.path.join(s.data, 'objects')
        (day,) = os.listdir(objects)
        old = time.strftime('%Y%m%d', time.gmtime(time.time() - 20 * 86400))
        os.rename(os.path.join(objects, day), os.path.join(objects, old))
        for suffix in ('', '-wal', '-shm'):
            p = os.path.join(s.data, 'index.db' + suffix)
            if os.path.exists(p):
                os.unlink(p)
        s.start()
        H.eq(set(listed(s)), set(), 'a folder 20 days old is not read at start')
        s.stop()
        p = subprocess.run([H.BIN, 'reindex', '--data', s.data], capture_output=True, text=True)
        H.eq(p.returncode, 0, 'reindex: ' + p.stderr[-500:])
        s.start()
        H.eq(set(listed(s)), {sop for sop, _ in batch}, 'reindex finds them')
    finally:
        s.cleanup()


def test_recovery_never_replaces_an_indexed_object():
    """A file the index does not know, under the name of an indexed instance
    whose file exists (a replacement whose commit was lost: its client got no
    answer), is left alone; when the indexed file is gone, it is indexed."""
    gen = Generator()
    s = H.Server('--log-level', 'info')
    s.start()
    try:
        sop, data = gen.next()
        H.eq(s.stow([data])[0], 200, 'STOW')
        x = listed(s)[sop]
        s.stop()
        db = sqlite3.connect(os.path.join(s.data, 'index.db'))
        rel = db.execute('SELECT rel_path FROM instance WHERE sop_uid = ?', (sop,)).fetchone()[0]
        db.close()
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.PatientName = 'REPLACEMENT^UNANSWERED'
        buf = io.BytesIO()
        ds.save_as(buf, write_like_original=True)
        other = buf.getvalue()
        day, name = rel.split('/')[1], rel.split('/')[2]
        os.makedirs(os.path.join(s.data, 'objects', day + 'r'), exist_ok=True)
        with open(os.path.join(s.data, 'objects', day + 'r', name), 'wb') as f:
            f.write(other)
        s.start()
        H.eq(sha(retrieve(s, x)), sha(data), 'the indexed object is still served')
        s.stop()
        os.unlink(os.path.join(s.data, rel))
        s.start()
        H.eq(sha(retrieve(s, listed(s)[sop])), sha(other),
             'the file found is indexed once the other is gone')
    finally:
        s.cleanup()


def test_noted_objects_are_indexed():
    """An answered object whose index row could not be written is named in
    <data>/unindexed (recover.h); the next start indexes it however old its
    folder is (beyond the folders recovery walks), skips lines that are not
    object paths, and removes the note once done."""
    gen = Generator()
    s = H.Server('--log-level', 'info')
    s.start()
    try:
        batch = [gen.next() for _ in range(3)]
        H.eq(s.stow([d for _, d in batch])[0], 200, 'STOW')
        sop, data = batch[1]
        s.stop()
        db = sqlite3.connect(os.path.join(s.data, 'index.db'))
        db.execute('PRAGMA foreign_keys = ON')
        rel = db.execute('SELECT rel_path FROM instance WHERE sop_uid = ?', (sop,)).fetchone()[0]
        db.execute('DELETE FROM instance WHERE sop_uid = ?', (sop,))
        db.commit()
        db.close()
        old = 'objects/20200101/' + rel.split('/')[2]
        os.makedirs(os.path.join(s.data, 'objects', '20200101'))
        os.rename(os.path.join(s.data, rel), os.path.join(s.data, old))
        s.start()
        H.check(sop not in listed(s), 'a folder of 2020 is not walked at start')
        s.stop()
        note = os.path.join(s.data, 'unindexed')
        with open(note, 'w') as f:
            f.write('../../etc/passwd\n' + old + '\n')
        s.start()
        got = listed(s)
        H.eq(set(got), {u for u, _ in batch}, 'the noted object is indexed')
        H.eq(sha(retrieve(s, got[sop])), sha(data), 'byte-identical')
        H.check(not os.path.exists(note), 'the note is removed')
        log = s.read_log()
        H.check('its index row was lost: indexed' in log, 'logged')
        H.check('not an object path' in log, 'the other line refused')
    finally:
        s.cleanup()


if __name__ == '__main__':
    sys.exit(H.run([test_lost_index_commits_are_recovered,
                    test_every_commit_lost,
                    test_torn_object_is_set_aside,
                    test_recovery_reads_recent_folders_only,
                    test_recovery_never_replaces_an_indexed_object,
                    test_noted_objects_are_indexed,
                    test_sigkill_during_concurrent_stow]))
