#!/usr/bin/env python3
"""soak.py - a bounded soak test, run by hand (not part of make test):

    tests/soak/soak.py [--minutes 5] [--bin build/yingyun] [--corpus ../shared/corpus]

Loopback only. Starts a server on a free port with a temporary data
directory, loads the corpus, then for the given time runs wrk on a mix of
read URLs (QIDO, metadata, frames, rendered, thumbnails) while two Python
clients STOW new instances (UIDs patched) continuously. Samples the server's
RSS every second. Prints: requests and errors of each side, RSS at start,
middle and end (flat means no leak), and exits non-zero on any error or
when RSS grows by more than 32 MiB between the first and the last quarter.
"""
import argparse
import http.client
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
sys.path.insert(0, os.path.join(HERE, '..', 'e2e'))
import harness as H  # noqa: E402


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--minutes', type=float, default=5)
    ap.add_argument('--bin', default=os.environ.get('YY_BIN', 'build/yingyun'))
    ap.add_argument('--corpus', default=H.CORPUS)
    ap.add_argument('--connections', type=int, default=8)
    ap.add_argument('--no-stow', action='store_true', help='reads only')
    a = ap.parse_args()
    H.BIN = a.bin
    H.CORPUS = a.corpus
    if not shutil.which('wrk'):
        print('soak: wrk is needed (apt-get install wrk)')
        return 2
    import pydicom
    s = H.Server('--log-level', os.environ.get('YY_SOAK_LOG', 'warn'), '--access-log', 'false', keep=bool(os.environ.get('YY_SOAK_KEEP'))).start()
    try:
        rels = [r['path'] for r in H.manifest() if r['path'] not in H.UNSTORABLE]
        for i in range(0, len(rels), 60):
            s.stow_files([os.path.join(a.corpus, r) for r in rels[i:i + 60]])
        # read URLs
        urls = ['/dicomweb/studies?limit=50', '/dicomweb/studies?PatientName=*a*&fuzzymatching=true',
                '/dicomweb/series?Modality=CT', '/status']
        for rel in rels:
            if not rel.startswith('series/') or random.random() > 0.2:
                continue
            d = pydicom.dcmread(os.path.join(a.corpus, rel), stop_before_pixels=True)
            inst = '/dicomweb/studies/%s/series/%s/instances/%s' % (d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID)
            urls += [inst + '/metadata', inst + '/frames/1', inst + '/rendered?viewport=256,256',
                     inst.rsplit('/instances/', 1)[0] + '/metadata', inst + '/thumbnail']
        lua = os.path.join(s.tmp, 'mix.lua')
        with open(lua, 'w') as f:
            f.write('local urls = {%s}\nlocal i = 0\n' % ','.join('"%s"' % u for u in urls))
            f.write('request = function()\n  i = i % #urls + 1\n'
                    '  return wrk.format("GET", urls[i], {["Accept"] = "*/*"})\nend\n')
            f.write('done = function(summary, latency, requests)\n'
                    '  io.write(string.format("WRK %d %d %d %d %d %d\\n", summary.requests, '
                    'summary.errors.connect, summary.errors.read, summary.errors.write, '
                    'summary.errors.status, summary.errors.timeout))\nend\n')
        secs = int(a.minutes * 60)
        stop = threading.Event()
        stow_stats = {'ok': 0, 'err': 0}
        mr = os.path.join(a.corpus, 'series/mr_ge_signa_3d_sag_irspgr_196')
        tmpl = []
        for fn in sorted(os.listdir(mr))[:10]:
            raw = open(os.path.join(mr, fn), 'rb').read()
            ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
            tmpl.append((raw, ds.SOPInstanceUID.encode(), ds.StudyInstanceUID.encode(),
                         ds.SeriesInstanceUID.encode()))
        counter = [0]
        lock = threading.Lock()

        def stower():
            while not stop.is_set():
                # each request is a new 5-instance study, as a clinic sends
                # them (same-length UIDs, patched in place)
                parts = []
                with lock:
                    counter[0] += 1
                    k = counter[0]
                for j in range(5):
                    raw, uid, st_uid, se_uid = tmpl[(k * 5 + j) % len(tmpl)]
                    raw = raw.replace(uid, uid[:-9] + b'9%08d' % (k * 5 + j))
                    raw = raw.replace(st_uid, st_uid[:-9] + b'8%08d' % k)
                    parts.append(raw.replace(se_uid, se_uid[:-9] + b'7%08d' % k))
                try:
                    st, _, js = s.stow(parts)
                    stow_stats['ok' if st == 200 else 'err'] += 1
                    if st != 200 and 'first' not in stow_stats:
                        stow_stats['first'] = '%d %s' % (st, json.dumps(js)[:300])
                except Exception as e:
                    stow_stats['err'] += 1
                    stow_stats.setdefault('first', repr(e))
        threads = [threading.Thread(target=stower) for _ in range(0 if a.no_stow else 2)]
        for t in threads:
            t.start()
        samples = []
        wrk = subprocess.Popen(['wrk', '-t2', '-c%d' % a.connections, '-d%ds' % secs, '-s', lua, s.base],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = time.time()
        while wrk.poll() is None:
            samples.append((time.time() - t0, rss_kib(s.proc.pid)))
            time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
        out = wrk.stdout.read()
        m = re.search(r"WRK (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
        if not m:
            print(out)
            return 1
        reqs, errs = int(m.group(1)), sum(int(x) for x in m.groups()[1:])
        # caches (rendered images, SQLite pages) fill during the first half;
        # after that RSS must stay flat: compare the 2nd and the 4th quarter
        q = max(1, len(samples) // 4)
        first = sum(r for _, r in samples[q:2 * q]) / q
        last = sum(r for _, r in samples[-q:]) / q
        peak = max(r for _, r in samples)
        print('soak: %.1f min, %d connections' % (a.minutes, a.connections))
        print('  reads (wrk): %d requests, %d errors (%.0f req/s)' % (reqs, errs, reqs / secs))
        print('  STOW: %d requests of 5 instances, %d errors %s' % (stow_stats['ok'], stow_stats['err'],
                                                                  stow_stats.get('first', '')))
        print('  RSS: second quarter %.1f MiB, last quarter %.1f MiB, peak %.1f MiB'
              % (first / 1024, last / 1024, peak / 1024))
        print('  instances at the end: %d' % s.get_json('/status')['instances'])
        ok = errs == 0 and stow_stats['err'] == 0 and last - first <= 16 * 1024
        print('soak: %s' % ('PASS' if ok else 'FAIL'))
        return 0 if ok else 1
    finally:
        s.cleanup()


if __name__ == '__main__':
    sys.exit(main())
