#!/usr/bin/env python3
"""Hostile and broken input: every case gets a 4xx with a reason (or a
FailedSOPSequence entry), never a crash, and the server keeps answering
(checked after every case). Also: slow clients are cut off without blocking
others, and a real ENOSPC on a small filesystem gives 503 / 0xA700 with
nothing half-written while reads keep working."""
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as H  # noqa: E402

S = None
CASES = []   # (name, status) for the summary
X1 = os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm')
INDEX = open(os.path.join(H.SOURCE, 'web', 'index.html'), 'rb').read()


def setup():
    global S
    S = H.Server('--header-timeout-s', '3', '--min-upload-rate', '2048').start()
    st, _, js = S.stow_files([X1])
    H.eq(st, 200, 'seed')


def teardown(_):
    if S:
        S.cleanup()


def alive():
    st, _, body = S.get('/status')
    H.eq(st, 200, 'server still answering')
    H.check(S.proc.poll() is None, 'server process alive')


def expect(name, st, lo=400, hi=499, body=None):
    CASES.append((name, st))
    H.check(lo <= st <= hi, '%s: status %d' % (name, st))
    if body is not None and st >= 400 and body[:1] == b'{':
        H.check(json.loads(body).get('message'), name + ': a reason')
    alive()


def raw_request(data, read=True, timeout=10):
    s = socket.create_connection(('127.0.0.1', S.port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return b''
        out = b''
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if b'\r\n\r\n' in out and b'Content-Length: 0' in out:
                break
        return out
    finally:
        s.close()


def status_of(resp):
    try:
        return int(resp.split(b' ', 2)[1])
    except (IndexError, ValueError):
        return 0


def test_path_traversal():
    ref = json.loads(S.get('/dicomweb/instances?limit=1')[2])[0]
    st_uid, se_uid, sop = H.value(ref, '0020000D'), H.value(ref, '0020000E'), H.value(ref, '00080018')
    paths = ['/../../../../etc/passwd', '/..%2f..%2f..%2fetc%2fpasswd', '/%2e%2e/%2e%2e/etc/passwd',
             '/dicomweb/studies/..%2F..%2Fetc', '/dicomweb/studies/%2e%2e', '/%00index.html',
             '/index.html%00.png', '/.git/config', '/dicomweb/../../etc/passwd', '//etc/passwd',
             '/dicomweb/studies/%s/series/..%%2F..%%2F%s' % (st_uid, se_uid),
             '/dicomweb/studies/%s/series/%s/instances/%s/bulkdata/..%%2F..%%2Fetc%%2Fpasswd' % (st_uid, se_uid, sop),
             '/dicomweb/studies/%s/series/%s/instances/%s/bulkdata/../../../../etc/passwd' % (st_uid, se_uid, sop),
             '/dicomweb/studies/%s/series/%s/instances/%s/frames/..%%2F1' % (st_uid, se_uid, sop),
             '/etc/passwd', '/%2Fetc%2Fpasswd']
    for p in paths:
        resp = raw_request(('GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' % p).encode())
        st = status_of(resp)
        H.check(b'root:' not in resp and b'[core]' not in resp, 'no file outside web/ for ' + p)
        if st == 200:
            # the viewer's client-side routes fall back to index.html
            H.check(resp.split(b'\r\n\r\n', 1)[1] == INDEX, 'only the viewer page for ' + p)
            CASES.append(('traversal ' + p, st))
            alive()
        else:
            expect('traversal ' + p, st)
    for q in ['studyUID=../../etc&seriesUID=1&objectUID=1', 'studyUID=/etc/passwd&seriesUID=1&objectUID=1',
              'studyUID=1%00&seriesUID=1&objectUID=1']:
        st, _, body = S.get('/wado?requestType=WADO&contentType=application/dicom&' + q)
        expect('wado-uri ' + q, st, body=body)


def test_bad_uids_everywhere():
    bad = ['1.2.abc', '1' * 65, '1..2', '.1.2', '1.2.', "1.2'%3BDROP%20TABLE%20study%3B--", '%E4%B8%AD']
    ok = '1.2.3'
    for b in bad:
        for tmpl in ['/dicomweb/studies/%s', '/dicomweb/studies/%s/metadata', '/dicomweb/studies/{ok}/series/%s',
                     '/dicomweb/studies/{ok}/series/{ok}/instances/%s',
                     '/dicomweb/studies/{ok}/series/{ok}/instances/%s/frames/1']:
            p = tmpl.replace('{ok}', ok) % b
            st, _, body = S.get(p)
            expect('uid %s in %s' % (b, tmpl), st, body=body)
        st, _, js = S.stow_files([X1], study=b)
        expect('STOW to study ' + b, st)


def test_sql_metacharacters_in_every_key():
    keys = ['PatientName', 'PatientID', 'AccessionNumber', 'StudyDescription', 'ModalitiesInStudy',
            'StudyID', 'InstitutionName', 'ReferringPhysicianName', 'Modality', 'SeriesDescription',
            'BodyPartExamined', 'StationName', 'PatientSex']
    vals = ["' OR 1=1 --", "x'; DROP TABLE study; --", '%', '_', '[*]', '"', '\\', "*' OR '*"]
    for k in keys:
        for v in vals:
            from urllib.parse import quote
            for level in ['/dicomweb/studies', '/dicomweb/series', '/dicomweb/instances']:
                st, _, body = S.get('%s?%s=%s' % (level, k, quote(v, safe='')))
                CASES.append(('sql %s=%s' % (k, v), st))
                H.check(st in (200, 400), 'sql %s=%r: %d' % (k, v, st))
                if st == 200:
                    H.check(json.loads(body) in ([],) or all(isinstance(x, dict) for x in json.loads(body)), 'json')
    H.eq(S.get_json('/status')['instances'], 1, 'index intact')
    alive()


def test_limits_and_includefield():
    for q in ['limit=-1', 'limit=1e3', 'limit=abc', 'limit=99999999999999', 'offset=-5', 'offset=x',
              'limit=', 'includefield=%00', 'includefield=NotAnAttribute', 'includefield=12345678Z',
              'orderby=%27', 'fuzzymatching=yes', 'StudyDate=2024', 'StudyDate=20241301-20240101x']:
        st, _, body = S.get('/dicomweb/studies?' + q)
        expect('qido ' + q, st, body=body)
    st, h, body = S.get('/dicomweb/studies?limit=4000000')
    H.check(st == 200 and 'warning' in h, 'huge limit clamped with a Warning')
    alive()


def test_invalid_utf8_and_long_values():
    for q in ['PatientName=%FF%FE', 'PatientName=%C3', 'PatientName=%ED%A0%80', 'PatientID=' + 'A' * 5000]:
        st, _, body = S.get('/dicomweb/studies?' + q)
        CASES.append(('utf8 ' + q[:30], st))
        H.check(st in (200, 400, 414), 'invalid UTF-8 %s: %d' % (q[:30], st))
        alive()
    st, _, _ = S.get('/dicomweb/studies?PatientID=' + 'A' * 20000)
    expect('query over max_query_bytes', st)


def test_frame_lists():
    ref = json.loads(S.get('/dicomweb/instances?limit=1')[2])[0]
    base = '/dicomweb/studies/%s/series/%s/instances/%s/frames/' % (
        H.value(ref, '0020000D'), H.value(ref, '0020000E'), H.value(ref, '00080018'))
    for f in ['0', '-1', '99999999999', '4294967297', ','.join(['1'] * 10000), 'a', '1,', ',1', '1;2', '%20']:
        st, _, body = S.get(base + f)
        expect('frames ' + f[:20], st, body=body)


def test_huge_headers():
    hdr = 'X-Big: ' + 'a' * 65536 + '\r\n'
    resp = raw_request(('GET /status HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n' % hdr).encode())
    expect('64 KB header', status_of(resp))
    many = ''.join('X-H%d: v\r\n' % i for i in range(3000))
    resp = raw_request(('GET /status HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n' % many).encode())
    expect('3000 headers', status_of(resp))
    resp = raw_request(b'GET /' + b'a' * 70000 + b' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    expect('70 KB request line', status_of(resp))
    resp = raw_request(b'BOGUS\r\n\r\n')
    expect('garbage request line', status_of(resp) or 400)


def dicom_el(tag, vr, value):
    g, e = tag >> 16, tag & 0xFFFF
    if vr in ('OB', 'OW', 'SQ', 'UN', 'UT'):
        return struct.pack('<HH2sHI', g, e, vr.encode(), 0, len(value)) + value
    return struct.pack('<HH2sH', g, e, vr.encode(), len(value)) + value


def part10(ds):
    meta = dicom_el(0x00020010, 'UI', b'1.2.840.10008.1.2.1\0')
    return b'\0' * 128 + b'DICM' + dicom_el(0x00020000, 'UL', struct.pack('<I', len(meta))) + meta + ds


IDS = (dicom_el(0x00080016, 'UI', b'1.2.840.10008.5.1.4.1.1.7\0') + dicom_el(0x00080018, 'UI', b'1.2.3.4.99\0') +
       dicom_el(0x0020000D, 'UI', b'1.2.3.99\0') + dicom_el(0x0020000E, 'UI', b'1.2.3.5.99\0'))


def test_stow_broken_bodies():
    data = open(X1, 'rb').read()
    body, ct = H.multipart([data, data])
    st, _, _ = S.request('POST', '/dicomweb/studies', body=body[:len(body) // 2] + b'\r\n', headers={'Content-Type': ct})
    expect('truncated mid-part', st)
    st, _, _ = S.request('POST', '/dicomweb/studies', body=body,
                         headers={'Content-Type': ct.rsplit('=', 1)[0] + '=wrongboundary'})
    expect('wrong boundary', st)
    st, _, js = S.stow([os.urandom(5000), os.urandom(100), b''])
    expect('random blobs', st, 409, 409)
    H.eq(len(H.values(js, '00081198')), 3, 'three failures')
    lies = {
        'length longer than the file': part10(IDS + struct.pack('<HH2sH', 0x10, 0x10, b'PN', 0x7000) + b'Doe'),
        'odd length past the end': part10(IDS + struct.pack('<HH2sHI', 0x0042, 0x0011, b'OB', 0, 0x7FFFFFFF) + b'x'),
        'undefined length outside a sequence': part10(IDS + struct.pack('<HH2sHI', 0x10, 0x21, b'UT', 0, 0xFFFFFFFF) + b'abc'),
        'item tag at top level': part10(IDS + struct.pack('<HHI', 0xFFFE, 0xE000, 4) + b'abcd'),
        'sequence without delimiter': part10(IDS + struct.pack('<HH2sHI', 0x0040, 0xA730, b'SQ', 0, 0xFFFFFFFF) +
                                             struct.pack('<HHI', 0xFFFE, 0xE000, 0xFFFFFFFF)),
    }
    deep = b''
    for _ in range(5000):
        deep += struct.pack('<HH2sHI', 0x0040, 0xA730, b'SQ', 0, 0xFFFFFFFF) + struct.pack('<HHI', 0xFFFE, 0xE000, 0xFFFFFFFF)
    lies['sequences nested 5,000 deep'] = part10(IDS + deep)
    for name, obj in lies.items():
        st, _, js = S.stow([obj])
        expect('DICOM: ' + name, st, 409, 409)
        item = H.values(js, '00081198')[0]
        H.eq(H.value(item, '00081197'), 0xC000, name)
        H.check(H.value(item, '00000902'), name + ': reason')
    H.eq(os.listdir(os.path.join(S.data, 'tmp')), [], 'no temp file left')


def test_content_length_4gib_short_body():
    body, ct = H.multipart([open(X1, 'rb').read()])
    resp = raw_request(('POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n'
                        'Content-Length: %d\r\n\r\n' % (ct, 4 << 30)).encode() + body[:100])
    expect('Content-Length 4 GiB', status_of(resp), 413, 413)
    resp = raw_request(('POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n'
                        'Content-Length: 99999999999999999999999\r\n\r\n' % ct).encode())
    expect('absurd Content-Length', status_of(resp))


def test_slow_clients_are_cut_and_do_not_block():
    socks = []
    for _ in range(40):
        s = socket.create_connection(('127.0.0.1', S.port))
        s.sendall(b'GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ')
        socks.append(s)
    t0 = time.time()
    st, _, _ = S.get('/status')
    H.eq(st, 200, 'others are served while 40 clients dawdle')
    H.check(time.time() - t0 < 2, 'promptly')
    # keep trickling one byte a second: cut after header_timeout_s (3 s)
    cut = 0
    deadline = time.time() + 10
    while time.time() < deadline and cut < len(socks):
        cut = 0
        for s in socks:
            try:
                s.sendall(b'a')
            except OSError:
                cut += 1
        time.sleep(1)
    H.eq(cut, len(socks), 'every slow sender was cut off')
    for s in socks:
        s.close()
    # a stalled upload is cut by the minimum rate
    body, ct = H.multipart([open(X1, 'rb').read()])
    s = socket.create_connection(('127.0.0.1', S.port))
    s.sendall(('POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n'
               % (ct, len(body))).encode() + body[:50])
    t0 = time.time()
    s.settimeout(30)
    try:
        data = s.recv(1024)
    except OSError:
        data = b''
    H.check(time.time() - t0 < 25, 'stalled upload cut within the rate window')
    s.close()
    alive()


def test_real_disk_full_small_filesystem():
    """A 3 MiB tmpfs (mounted in a private mount namespace when not root)."""
    mnt = tempfile.mkdtemp(prefix='yy-tmpfs-')
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt],
                             capture_output=True).returncode == 0
    if not mounted:
        # unprivileged: a user + mount namespace of our own
        H.check(shutil.which('unshare'), 'unshare available')
    data = os.path.join(mnt, 'data')
    port = H.free_port()
    cmd = [H.BIN, 'serve', '--listen', '127.0.0.1:%d' % port, '--data', data, '--disk-reserve-bytes', '0']
    if not mounted:
        cmd = ['unshare', '-rm', 'sh', '-c', 'mount -t tmpfs -o size=3m tmpfs "$0" && exec "$@"', mnt] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    s = H.Server(data=data)
    s.port = port
    s.proc = proc
    try:
        for _ in range(100):
            try:
                socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        st, _, _ = s.stow_files([X1])
        H.eq(st, 200, 'small object fits')
        big = os.path.join(H.CORPUS, 'ts/j2k_lossless')
        big = max((os.path.join(big, f) for f in os.listdir(big)), key=os.path.getsize)
        st, h, js = s.stow_files([big])  # ~4 MB into a 3 MiB filesystem
        H.eq(st, 503, 'disk full')
        H.eq(H.value(H.values(js, '00081198')[0], '00081197'), 0xA700, 'out of resources')
        H.eq(s.get_json('/status')['instances'], 1, 'nothing half-stored')
        st, _, _ = s.get('/dicomweb/studies')
        H.eq(st, 200, 'reads keep working')
        if mounted:
            H.eq(os.listdir(os.path.join(data, 'tmp')), [], 'no temp file left')
    finally:
        proc.terminate()
        proc.wait(10)
        if mounted:
            subprocess.run(['umount', mnt])
        shutil.rmtree(mnt, ignore_errors=True)


def crafted_codestream_dicom():
    """An HTJ2K image whose codestream makes Debian's OpenJPEG 2.5.0 abort
    on an assertion (found by fuzz_codec; tests/fuzz/crashers/codec/)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    raw = open(os.path.join(H.SOURCE, 'tests/fuzz/crashers/codec/openjpeg-htj2k-assert-abort.bin'), 'rb').read()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = '1.2.840.10008.1.2.4.91'  # pydicom 2.3 lacks .4.203; OpenJPEG sees the same codestream
    ds.file_meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.7'
    ds.file_meta.MediaStorageSOPInstanceUID = '1.2.3.4.5.6.7.1'
    ds.SOPClassUID = '1.2.840.10008.5.1.4.1.1.7'
    ds.SOPInstanceUID = '1.2.3.4.5.6.7.1'
    ds.StudyInstanceUID = '1.2.3.4.5.6.7.2'
    ds.SeriesInstanceUID = '1.2.3.4.5.6.7.3'
    ds.Modality = 'OT'
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 120, 256, 3
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = 'YBR_ICT'
    ds.PixelData = encapsulate([raw[16:]])
    ds['PixelData'].is_undefined_length = True
    ds.is_little_endian, ds.is_implicit_VR = True, False
    b = io.BytesIO()
    ds.save_as(b, write_like_original=False)
    return b.getvalue()


def test_codestreams_that_break_third_party_decoders():
    st, _, js = S.stow([crafted_codestream_dicom()])
    H.eq(st, 200, 'stored as received (frames are not decoded at ingest)')
    u = '/dicomweb/studies/1.2.3.4.5.6.7.2/series/1.2.3.4.5.6.7.3/instances/1.2.3.4.5.6.7.1'
    for path, acc in [(u + '/rendered', 'image/jpeg'), (u + '/thumbnail', 'image/jpeg'),
                      (u + '/frames/1', 'multipart/related; type="application/octet-stream"'),
                      (u, 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1')]:
        try:
            st, h, body = S.get(path, headers={'Accept': acc})
        except Exception:
            st = 0  # a streamed response cut off is acceptable here
        CASES.append(('crafted HTJ2K: ' + path.rsplit('/', 1)[-1], st))
        H.check(st >= 400 or st == 0, 'the bad frame is reported, not rendered: %s %d' % (path, st))
        alive()
    # the codestream reached the decoder: its worker process died and was
    # replaced, the server itself is untouched
    H.check('codec worker died' in S.read_log(), 'worker crash contained')
    CASES[:] = [c for c in CASES if not c[0].startswith('crafted')]


def test_summary():
    print('  %d hostile cases, statuses: %s' % (len(CASES), sorted({st for _, st in CASES})))
    H.check(all(st < 500 for _, st in CASES), 'no 5xx')
    for name, st in CASES:
        print('    %3d  %s' % (st, name[:110]))


TESTS = [test_path_traversal, test_bad_uids_everywhere, test_sql_metacharacters_in_every_key,
         test_limits_and_includefield, test_invalid_utf8_and_long_values, test_frame_lists,
         test_huge_headers, test_stow_broken_bodies, test_content_length_4gib_short_body,
         test_slow_clients_are_cut_and_do_not_block, test_real_disk_full_small_filesystem,
         test_codestreams_that_break_third_party_decoders, test_summary]

if __name__ == '__main__':
    setup()
    sys.exit(H.run(TESTS, teardown=teardown))
