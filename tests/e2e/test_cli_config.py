#!/usr/bin/env python3
"""The command line: --help/--version, every config key documented in
docs/configuration.md and accepted both in a config file and as a flag,
bad settings refused with a clear message, and SIGTERM letting an in-flight
upload finish."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as H  # noqa: E402


def keys():
    out = subprocess.run([H.BIN, '--help'], capture_output=True, text=True).stdout
    return re.findall(r'^  --(\w+)\s', out, re.M)


def test_help_and_version():
    p = subprocess.run([H.BIN, '--help'], capture_output=True, text=True)
    H.eq(p.returncode, 0, '--help exit')
    for cmd in ['serve', 'import', 'reindex']:
        H.check('yingyun ' + cmd in p.stdout, cmd + ' in help')
    p = subprocess.run([H.BIN, '--version'], capture_output=True, text=True)
    H.check(re.match(r'yingyun \d+\.\d+\.\d+', p.stdout), p.stdout)
    p = subprocess.run([H.BIN, 'bogus'], capture_output=True, text=True)
    H.eq(p.returncode, 2, 'unknown command')


def test_every_key_documented():
    doc = open(os.path.join(H.SOURCE, 'docs', 'configuration.md'), encoding='utf-8').read()
    ks = keys()
    H.check(len(ks) >= 15, 'keys found: %r' % ks)
    for k in ks:
        H.check('`%s`' % k in doc, 'docs/configuration.md lacks %s' % k)


def test_config_file_and_flags():
    d = tempfile.mkdtemp(prefix='yy-cfg-')
    port = H.free_port()
    cfg = os.path.join(d, 'y.conf')
    with open(cfg, 'w') as f:
        f.write('# test\nlisten = 127.0.0.1:%d\ndata = "%s/data"\nqido_max_limit = 2\n'
                'cors_origins = http://viewer.test\nlog_level = warn\n' % (port, d))
    s = H.Server('--config', cfg)
    s.port = port
    s.args = ['--config', cfg]
    # Server() adds its own --listen/--data flags, which win over the file;
    # start by hand to see the file's values in effect
    proc = subprocess.Popen([H.BIN, 'serve', '--config', cfg], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        H.check('127.0.0.1:%d' % port in line, line)
        H.check(os.path.isdir(os.path.join(d, 'data', 'objects')), 'data dir from the file')
        s.proc = proc
        st, h, body = s.get('/dicomweb/studies?limit=5', headers={'Origin': 'http://viewer.test'})
        H.eq(st, 200, 'serving')
        H.eq(h.get('access-control-allow-origin'), 'http://viewer.test', 'cors_origins from the file')
        H.check('warning' in h, 'qido_max_limit from the file clamps limit=5')
    finally:
        proc.terminate()
        proc.wait(10)
    # flags override the file, with - or _
    proc = subprocess.Popen([H.BIN, 'serve', '--config', cfg, '--qido-max-limit', '50',
                             '--cors_origins=*'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        proc.stdout.readline()
        st, h, body = s.get('/dicomweb/studies?limit=5', headers={'Origin': 'http://x.test'})
        H.check('warning' not in h, 'flag overrides the file')
        H.eq(h.get('access-control-allow-origin'), '*', 'flag with =')
    finally:
        proc.terminate()
        proc.wait(10)
    # every key is accepted as a flag and in a file (with its default value)
    helptext = subprocess.run([H.BIN, '--help'], capture_output=True, text=True).stdout
    for k in keys():
        m = re.search(r'^  --%s\s.*\(default: (.*)\)$' % k, helptext, re.M)
        v = m.group(1)
        v = '' if v == '""' else v
        if k in ('listen', 'data'):
            continue
        with open(cfg, 'w') as f:
            f.write('%s = %s\n' % (k, v))
        for args in (['--config', cfg], ['--' + k, v] if v else ['--%s=' % k]):
            p = subprocess.run([H.BIN, 'import', '--data', os.path.join(d, 'k')] + args +
                               [os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm')],
                               capture_output=True, text=True)
            H.eq(p.returncode, 0, '%s %r: %s' % (k, args, p.stderr[-300:]))


def test_bad_settings_refused():
    for args, why in [(['--max-body-bytes', 'lots'], 'size'), (['--overwrite=perhaps'], 'bool'),
                      (['--no-such-key', '1'], 'unknown'), (['--log-level', 'loud'], 'log level'),
                      (['--config', '/nonexistent.conf'], 'missing file')]:
        p = subprocess.run([H.BIN, 'serve'] + args, capture_output=True, text=True, timeout=10)
        H.eq(p.returncode, 2, why)
        H.check(p.stderr.strip(), 'message for ' + why)
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, 'bad.conf')
    open(cfg, 'w').write('listen = 127.0.0.1:1\nqido_max_limit = ten\n')
    p = subprocess.run([H.BIN, 'serve', '--config', cfg], capture_output=True, text=True, timeout=10)
    H.check('bad.conf:2' in p.stderr, 'file and line named: ' + p.stderr)


def test_sigterm_lets_inflight_upload_finish():
    s = H.Server('--shutdown-grace-s', '20')
    s.start()
    try:
        data = open(os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm'), 'rb').read()
        body, ct = H.multipart([data])
        c = s.conn()
        c.putrequest('POST', '/dicomweb/studies')
        c.putheader('Content-Type', ct)
        c.putheader('Content-Length', str(len(body)))
        c.endheaders()
        c.send(body[:100])
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        H.check(s.proc.poll() is None, 'server waits for the in-flight request')
        c.send(body[100:])
        r = c.getresponse()
        H.eq(r.status, 200, 'the in-flight upload completes')
        r.read()
        c.close()
        s.proc.wait(15)
        H.eq(s.proc.returncode, 0, 'clean exit')
    finally:
        s.cleanup()


if __name__ == '__main__':
    sys.exit(H.run([test_help_and_version, test_every_key_documented, test_config_file_and_flags,
                    test_bad_settings_refused, test_sigterm_lets_inflight_upload_finish]))
