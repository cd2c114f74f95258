"""harness.py - end-to-end test support: a real yingyun server on a free
loopback port with a temporary data directory, and small HTTP helpers
(stdlib only, so tests see exactly what goes over the wire).

Every test module runs as `python3 test_x.py` from meson and ends with the
line "N passed, N failed" (see run()).
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

BIN = os.environ.get('YY_BIN', 'build/yingyun')
CORPUS = os.environ.get('YY_CORPUS', os.path.join(os.path.dirname(__file__), '../../../shared/corpus'))
SOURCE = os.environ.get('YY_SOURCE_ROOT', os.path.join(os.path.dirname(__file__), '../..'))
ARTIFACTS = os.environ.get('YY_ARTIFACTS', os.path.join(SOURCE, 'tests', 'artifacts'))


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def manifest():
    """Rows of MANIFEST.tsv as dicts."""
    with open(os.path.join(CORPUS, 'MANIFEST.tsv'), encoding='utf-8') as f:
        head = f.readline().rstrip('\n').split('\t')
        return [dict(zip(head, l.rstrip('\n').split('\t'))) for l in f if l.strip()]


# the six corpus files that cannot be stored (README of the corpus)
UNSTORABLE = {
    'edge/pydicom-data__JLSL_RGB_ILV0.dcm', 'edge/pydicom-data__JLSL_RGB_ILV1.dcm',
    'edge/pydicom-data__JLSL_RGB_ILV2.dcm', 'ts/htj2k/pydicom-data__HTJ2KLossless_08_RGB.dcm',
    'ts/htj2k/pydicom-data__HTJ2K_08_RGB.dcm', 'ts/jpegls_lossless/pydicom-data__JLSL_16_15_1_1F.dcm',
}


class Server:
    """A yingyun process. Use as a context manager or call start()/stop()."""

    def __init__(self, *args, data=None, keep=False, env=None):
        self.tmp = tempfile.mkdtemp(prefix='yy-e2e-')
        self.data = data or os.path.join(self.tmp, 'data')
        self.port = free_port()
        self.args = list(args)
        self.keep = keep
        self.env = env
        self.proc = None
        self.log_path = os.path.join(self.tmp, 'server.log')

    def start(self):
        cmd = [BIN, 'serve', '--listen', '127.0.0.1:%d' % self.port, '--data', self.data] + self.args
        self.log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     env=dict(os.environ, **(self.env or {})))
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('server exited: ' + self.read_log()[-2000:])
            try:
                c = socket.create_connection(('127.0.0.1', self.port), timeout=0.2)
                c.close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError('server did not start: ' + self.read_log()[-2000:])

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        self.stop()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def read_log(self):
        try:
            return open(self.log_path, encoding='utf-8', errors='replace').read()
        except OSError:
            return ''

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    @property
    def base(self):
        return 'http://127.0.0.1:%d' % self.port

    def conn(self, timeout=60):
        return http.client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=60):
        """Returns (status, headers dict lower-cased, body bytes)."""
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def get(self, path, headers=None):
        return self.request('GET', path, headers=headers)

    def get_json(self, path, headers=None):
        st, h, body = self.get(path, headers=headers)
        if st != 200:
            raise AssertionError('GET %s -> %d %s' % (path, st, body[:300]))
        return json.loads(body)

    def stow(self, parts, study=None, boundary=None, content_type=None, headers=None):
        """STOW-RS the given list of bytes objects. Returns (status, headers, json)."""
        body, ct = multipart(parts, boundary)
        hdrs = {'Content-Type': content_type or ct, 'Accept': 'application/dicom+json'}
        hdrs.update(headers or {})
        path = '/dicomweb/studies' + ('/' + study if study else '')
        st, h, data = self.request('POST', path, body=body, headers=hdrs, timeout=600)
        try:
            js = json.loads(data) if data else None
        except ValueError:
            js = None
        return st, h, js

    def stow_files(self, paths, **kw):
        return self.stow([open(p, 'rb').read() for p in paths], **kw)


def multipart(parts, boundary=None, part_type='application/dicom'):
    b = boundary or ('yy' + uuid.uuid4().hex)
    out = []
    for p in parts:
        out.append(b'--' + b.encode() + b'\r\nContent-Type: ' + part_type.encode() + b'\r\n\r\n')
        out.append(p)
        out.append(b'\r\n')
    out.append(b'--' + b.encode() + b'--\r\n')
    return b''.join(out), 'multipart/related; type="application/dicom"; boundary=' + b


def value(ds, tag):
    """First value of tag in a DICOM JSON object, or None."""
    el = ds.get(tag)
    if not el:
        return None
    v = el.get('Value')
    return v[0] if v else None


def values(ds, tag):
    el = ds.get(tag) or {}
    return el.get('Value', [])


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0


def run(tests, teardown=None):
    """Runs test functions in order, printing one line each and the closing
    line "N passed, N failed". Returns the exit status."""
    res = Results()
    try:
        for fn in tests:
            name = fn.__name__
            t0 = time.time()
            try:
                fn()
                res.passed += 1
                print('ok   %s (%.2fs)' % (name, time.time() - t0), flush=True)
            except Exception:
                res.failed += 1
                print('FAIL %s (%.2fs)' % (name, time.time() - t0), flush=True)
                traceback.print_exc(file=sys.stdout)
    finally:
        if teardown:
            teardown(None)
    print('%d passed, %d failed' % (res.passed, res.failed))
    return 1 if res.failed else 0


def check(cond, msg=''):
    if not cond:
        raise AssertionError(msg)


def eq(a, b, msg=''):
    if a != b:
        raise AssertionError('%s: %r != %r' % (msg, a, b))
