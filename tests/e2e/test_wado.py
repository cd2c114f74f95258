#!/usr/bin/env python3
"""WADO-RS, WADO-URI and DELETE end to end with the whole corpus (issue:
WADO-RS retrieval). Reference values come from pydicom and
../shared/corpus/REFERENCE.tsv, not from our own parser."""
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import warnings
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(__file__))
import harness as H  # noqa: E402

warnings.filterwarnings('ignore')
import pydicom  # noqa: E402

S = None
FILES = {}   # rel -> dict(study, series, sop, ts)
IMPLICIT = '1.2.840.10008.1.2'
EXPLICIT = '1.2.840.10008.1.2.1'
NATIVE = {IMPLICIT, EXPLICIT, '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.1.99'}


def setup():
    global S
    for row in H.manifest():
        if row['path'] in H.UNSTORABLE:
            continue
        ds = pydicom.dcmread(os.path.join(H.CORPUS, row['path']), stop_before_pixels=True)
        FILES[row['path']] = {'study': ds.StudyInstanceUID, 'series': ds.SeriesInstanceUID,
                              'sop': ds.SOPInstanceUID, 'ts': row['transfer_syntax_uid']}
    S = H.Server('--cors-origins', 'http://viewer.test').start()
    rels = sorted(FILES)
    for i in range(0, len(rels), 50):
        st, _, _ = S.stow_files([os.path.join(H.CORPUS, r) for r in rels[i:i + 50]])
        H.eq(st, 200, 'stow batch')


def teardown(_):
    if S:
        S.cleanup()


def attrs(ds):
    """DICOM JSON of a dataset without pixel data and group lengths (which
    a rewritten object does not carry)."""
    d = ds.to_json_dict(10**9, None)
    return {k: v for k, v in d.items() if not k.endswith('0000') and k != '7FE00010'}


def inst_url(f):
    return '/dicomweb/studies/%s/series/%s/instances/%s' % (f['study'], f['series'], f['sop'])


def split_multipart(ctype, body):
    b = re.search(r'boundary="?([^";\s]+)"?', ctype).group(1).encode()
    parts = []
    chunks = body.split(b'--' + b)
    H.check(chunks[-1].strip() in (b'--', b''), 'closing delimiter present')
    H.check(chunks[-1].startswith(b'--'), 'last chunk is the close delimiter')
    for c in chunks[1:-1]:
        H.check(c.startswith(b'\r\n') and c.endswith(b'\r\n'), 'part framing')
        head, _, data = c[2:-2].partition(b'\r\n\r\n')
        hdrs = {}
        for line in head.decode().split('\r\n'):
            k, _, v = line.partition(':')
            hdrs[k.strip().lower()] = v.strip()
        parts.append((hdrs, data))
    return parts


def get_parts(path, accept):
    st, h, body = S.get(path, headers={'Accept': accept})
    H.eq(st, 200, 'GET %s (%s): %s' % (path, accept, body[:200]))
    return h, split_multipart(h['content-type'], body)


ANY_TS = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def test_instance_as_stored_is_byte_identical():
    for rel, f in sorted(FILES.items()):
        h, parts = get_parts(inst_url(f), ANY_TS)
        H.eq(len(parts), 1, rel)
        hdrs, data = parts[0]
        original = open(os.path.join(H.CORPUS, rel), 'rb').read()
        if f['ts'] == IMPLICIT:
            # never Implicit VR over the web: converted to Explicit VR LE
            H.check('transfer-syntax=' + EXPLICIT in hdrs['content-type'], hdrs['content-type'])
            a = pydicom.dcmread(io.BytesIO(data))
            b = pydicom.dcmread(os.path.join(H.CORPUS, rel))
            H.eq(a.file_meta.TransferSyntaxUID, EXPLICIT, rel)
            H.eq(attrs(a), attrs(b), 'same dataset ' + rel)
        else:
            H.check(data == original, 'byte-identical: ' + rel)
            H.check('transfer-syntax=' + f['ts'] in hdrs['content-type'], hdrs['content-type'])
        H.eq(int(h['content-length']) if 'content-length' in h else None,
             None if f['ts'] == IMPLICIT else int(h['content-length']), 'content-length known')


def test_default_is_explicit_le_and_conversion():
    # no transfer-syntax parameter: Explicit VR LE (PS3.18 8.7.3.5.2)
    for rel, f in sorted(FILES.items()):
        if f['ts'] not in NATIVE:
            continue
        st, h, body = S.get(inst_url(f))
        H.eq(st, 200, rel)
        (hdrs, data), = split_multipart(h['content-type'], body)
        H.check('transfer-syntax=' + EXPLICIT in hdrs['content-type'], rel)
        a = pydicom.dcmread(io.BytesIO(data))
        b = pydicom.dcmread(os.path.join(H.CORPUS, rel))
        H.eq(str(a.file_meta.TransferSyntaxUID), EXPLICIT, rel)
        if 'PixelData' in b:
            H.check((a.pixel_array == b.pixel_array).all(), 'pixels equal ' + rel)
        H.eq(attrs(a), attrs(b), 'attributes equal ' + rel)


def test_negotiation_and_406():
    f = FILES['ts/explicit_be/' + sorted(os.listdir(os.path.join(H.CORPUS, 'ts/explicit_be')))[0]]
    st, _, _ = S.get(inst_url(f), headers={'Accept': 'multipart/related; type="application/dicom"; '
                                                      'transfer-syntax=1.2.840.10008.1.2'})
    H.eq(st, 406, 'implicit VR never offered')
    st, _, _ = S.get(inst_url(f), headers={'Accept': 'text/html'})
    H.eq(st, 406, 'unacceptable media type')
    # q-values: the preferred acceptable one wins
    acc = ('multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2;q=1, '
           'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.2;q=0.9, '
           'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1;q=0.5')
    h, parts = get_parts(inst_url(f), acc)
    H.check('transfer-syntax=1.2.840.10008.1.2.2' in parts[0][0]['content-type'], 'q order')
    # the accept query parameter overrides the header
    h, parts = get_parts(inst_url(f) + '?accept=' + quote(ANY_TS), 'text/html')
    H.check('1.2.840.10008.1.2.2' in parts[0][0]['content-type'], 'accept= parameter')
    jf = [v for k, v in FILES.items() if v['ts'] == '1.2.840.10008.1.2.4.50'][0]
    st, _, _ = S.get(inst_url(jf), headers={'Accept': 'multipart/related; type="application/dicom"; '
                                                       'transfer-syntax=1.2.840.10008.1.2.4.80'})
    H.check(st in (200, 406), 'a syntax we may not produce')


def quote(s):
    from urllib.parse import quote as q
    return q(s, safe='')


def test_study_and_series_retrieve():
    mr = [f for r, f in FILES.items() if r.startswith('series/mr_')]
    study, series = mr[0]['study'], mr[0]['series']
    h, parts = get_parts('/dicomweb/studies/%s/series/%s' % (study, series), ANY_TS)
    H.eq(len(parts), len(mr), 'every instance of the series')
    sops = set()
    for hdrs, data in parts:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        sops.add(ds.SOPInstanceUID)
        H.check(hdrs['content-location'].endswith(ds.SOPInstanceUID), 'Content-Location')
    H.eq(sops, {f['sop'] for f in mr}, 'no instance left out')
    h2, parts2 = get_parts('/dicomweb/studies/%s' % study, ANY_TS)
    H.eq(len(parts2), len(mr), 'study retrieve')
    b1 = re.search(r'boundary=(\S+)', h['content-type']).group(1)
    b2 = re.search(r'boundary=(\S+)', h2['content-type']).group(1)
    H.check(b1 != b2, 'boundary unique per response')
    st, _, _ = S.get('/dicomweb/studies/1.2.3.4.5')
    H.eq(st, 404, 'unknown study')
    st, _, _ = S.get('/dicomweb/studies/%s/series/1.2.3' % study)
    H.eq(st, 404, 'unknown series')
    st, _, _ = S.get('/dicomweb/studies/%s/series/%s/instances/%s' % (study, series, 'x'))
    H.eq(st, 400, 'invalid UID')


def dump_json(rel):
    p = subprocess.run([os.path.join(os.environ.get('YY_BUILD_ROOT', 'build'), 'yy-dump'), 'json',
                        os.path.join(H.CORPUS, rel)], capture_output=True)
    return json.loads(p.stdout)


def test_metadata_equals_ingest_json():
    base = S.base + '/dicomweb'
    for rel, f in sorted(FILES.items()):
        md = S.get_json(inst_url(f) + '/metadata')
        H.eq(len(md), 1, rel)
        want = dump_json(rel)
        # yy-dump writes BulkDataURIs relative to the base with placeholder UIDs
        txt = json.dumps(want).replace('/studies/S/series/SE/instances/I/',
                                       '/studies/%s/series/%s/instances/%s/' % (f['study'], f['series'], f['sop']))
        want = json.loads(txt)

        def fix(d):
            for el in d.values():
                if 'BulkDataURI' in el:
                    el['BulkDataURI'] = base + el['BulkDataURI']
                if el.get('vr') == 'SQ':
                    for v in el.get('Value', []):
                        fix(v)
        fix(want)
        H.eq(md[0], want, 'metadata of ' + rel)


def test_series_metadata_gzip_etag_xml():
    mr = [f for r, f in FILES.items() if r.startswith('series/mr_')]
    path = '/dicomweb/studies/%s/series/%s/metadata' % (mr[0]['study'], mr[0]['series'])
    st, h, plain = S.get(path)
    H.eq(st, 200, 'series metadata')
    md = json.loads(plain)
    H.eq(len(md), 196, 'one object per instance')
    H.eq({m['00080018']['Value'][0] for m in md}, {f['sop'] for f in mr}, 'all instances')
    st, hz, z = S.get(path, headers={'Accept-Encoding': 'gzip'})
    H.eq(hz.get('content-encoding'), 'gzip', 'gzip when accepted')
    H.eq(gzip.decompress(z), plain, 'gzip body equals identity body')
    H.check(len(z) < len(plain) / 3, 'compressed')
    etag = h['etag']
    H.check(h.get('last-modified', '').endswith('GMT'), 'Last-Modified')
    st, h3, body = S.get(path, headers={'If-None-Match': etag})
    H.eq((st, body), (304, b''), 'If-None-Match -> 304')
    st, _, _ = S.get(path, headers={'If-None-Match': '"other"'})
    H.eq(st, 200, 'other etag -> 200')
    st, hx, body = S.get(path, headers={'Accept': 'multipart/related; type="application/dicom+xml"'})
    H.eq(st, 200, 'xml metadata')
    parts = split_multipart(hx['content-type'], body)
    H.eq(len(parts), 196, 'one XML part per instance')
    root = ET.fromstring(parts[0][1])
    H.check(root.tag.endswith('NativeDicomModel'), 'native model')
    st, _, _ = S.get(path, headers={'Accept': 'image/png'})
    H.eq(st, 406, 'metadata in an unsupported type')
    st, _, _ = S.get('/dicomweb/studies/1.2.3/metadata')
    H.eq(st, 404, 'metadata of an unknown study')
    # a repeat is served from the metadata cache: the same bytes, both ways
    H.eq(S.get(path)[2], plain, 'repeat identity identical')
    H.eq(gzip.decompress(S.get(path, headers={'Accept-Encoding': 'gzip'})[2]), plain,
         'repeat gzip identical')


def test_metadata_cache_follows_changes():
    """Cached metadata never outlives a change of the series: new, deleted
    and replaced instances show at once (the cache key is the ETag)."""
    mr_dir = os.path.join(H.CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196')
    files = sorted(os.listdir(mr_dir))[:4]
    s2 = H.Server()
    with s2:
        s2.stow_files([os.path.join(mr_dir, x) for x in files[:3]])
        mr = [FILES['series/mr_ge_signa_3d_sag_irspgr_196/' + x] for x in files]
        path = '/dicomweb/studies/%s/series/%s/metadata' % (mr[0]['study'], mr[0]['series'])
        spath = '/dicomweb/studies/%s/metadata' % mr[0]['study']
        for enc in [{}, {'Accept-Encoding': 'gzip'}]:
            def sops(p):
                st, h, b = s2.get(p, headers=enc)
                H.eq(st, 200, p)
                if h.get('content-encoding') == 'gzip':
                    b = gzip.decompress(b)
                return sorted(m['00080018']['Value'][0] for m in json.loads(b))
            for _ in range(2):  # the second is a cache hit
                H.eq(sops(path), sorted(m['sop'] for m in mr[:3]), 'three instances')
                H.eq(sops(spath), sorted(m['sop'] for m in mr[:3]), 'study: three instances')
            st, _, _ = s2.stow_files([os.path.join(mr_dir, files[3])])
            H.eq(st, 200, 'fourth stored')
            H.eq(sops(path), sorted(m['sop'] for m in mr), 'new instance shows at once')
            H.eq(sops(spath), sorted(m['sop'] for m in mr), 'study: new instance shows')
            H.eq(s2.request('DELETE', inst_url(mr[3]))[0], 204, 'delete')
            H.eq(sops(path), sorted(m['sop'] for m in mr[:3]), 'deleted instance gone at once')
            H.eq(sops(spath), sorted(m['sop'] for m in mr[:3]), 'study: deleted instance gone')


def test_metadata_disk_cache():
    """A series' metadata is kept gzip'd on disk after its first answer: after
    a restart a gzip request is answered from that file (one gzip stream, a
    fraction of the per-instance-deflated size) with the same JSON; a
    damaged or stale file is never served; a change to the series shows at
    once; the cache's size stays bounded; 0 turns it off."""
    mr_dir = os.path.join(H.CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196')
    files = sorted(os.listdir(mr_dir))[:13]
    mr = [FILES['series/mr_ge_signa_3d_sag_irspgr_196/' + x] for x in files]
    path = '/dicomweb/studies/%s/series/%s/metadata' % (mr[0]['study'], mr[0]['series'])
    gz = {'Accept-Encoding': 'gzip'}

    def cache_files(srv):
        d = os.path.join(srv.data, 'cache', 'metadata')
        return sorted(x for x in os.listdir(d) if x.endswith('.gz')) if os.path.isdir(d) else []

    def wait_file(srv, old=None):
        for _ in range(200):
            f = cache_files(srv)
            if f and (old is None or os.path.getmtime(os.path.join(
                    srv.data, 'cache', 'metadata', f[0])) != old):
                return f
            time.sleep(0.05)
        raise AssertionError('no metadata cache file was written')

    def sops(b):
        return sorted(m['00080018']['Value'][0] for m in json.loads(b))

    s2 = H.Server()
    with s2:
        H.eq(s2.stow_files([os.path.join(mr_dir, x) for x in files[:12]])[0], 200, 'stored')
        st, h, first = s2.get(path, headers=gz)  # assembled: each instance deflated alone
        H.eq(h.get('content-encoding'), 'gzip', 'gzip answer')
        st, h, plain = s2.get(path)
        H.eq(st, 200, 'identity')
        H.eq(sops(plain), sorted(m['sop'] for m in mr[:12]), 'twelve instances')
        H.eq(gzip.decompress(first), plain, 'gzip answer = identity answer')
        name = wait_file(s2)
        H.eq(len(name), 1, 'one file for the series')
        fpath = os.path.join(s2.data, 'cache', 'metadata', name[0])
        s2.stop()
        s2.start()  # the memory cache is gone; the file stays
        st, h, body = s2.get(path, headers=gz)
        H.eq(st, 200, 'after restart')
        H.eq(h.get('content-encoding'), 'gzip', 'after restart: gzip')
        H.eq(len(body), os.path.getsize(fpath) - 128, 'answered from the file')
        H.check(len(body) < len(first) / 2, 'one gzip stream: %d < %d / 2' % (len(body), len(first)))
        H.eq(gzip.decompress(body), plain, 'same JSON from the file')
        etag = h.get('etag')
        st, h, _ = s2.get(path, headers=dict(gz, **{'If-None-Match': etag}))
        H.eq(st, 304, 'validator still works')
        # reindex replaces the index the files were made from: they go
        s2.stop()
        p = subprocess.run([H.BIN, 'reindex', '--data', s2.data], capture_output=True, text=True)
        H.eq(p.returncode, 0, 'reindex: ' + p.stderr[-300:])
        H.eq(cache_files(s2), [], 'reindex empties the metadata cache')
        s2.start()
        st, h, body = s2.get(path, headers=gz)
        H.eq(gzip.decompress(body), plain, 'after reindex')
        # a damaged file (cut short, or made for another ETag) is not served
        def cut(f):
            f.truncate(os.path.getsize(fpath) // 2)

        def other_etag(f):
            f.seek(8)
            f.write(b'0' * 64)
        for damage in (cut, other_etag):
            wait_file(s2)
            s2.stop()
            with open(fpath, 'r+b') as f:
                damage(f)
            damaged = os.path.getmtime(fpath)
            s2.start()
            st, h, body = s2.get(path, headers=gz)
            H.eq(gzip.decompress(body), plain, damage.__name__ + ': rebuilt from the index')
            # the rebuilt file is written in the background: wait for it, or
            # it may land after the change below (a flake under load)
            wait_file(s2, damaged)
        # a new instance changes the ETag: the file no longer matches
        old = os.path.getmtime(wait_file(s2) and fpath)
        H.eq(s2.stow_files([os.path.join(mr_dir, files[12])])[0], 200, '13th stored')
        st, h, body = s2.get(path, headers=gz)
        H.eq(sops(gzip.decompress(body)), sorted(m['sop'] for m in mr), 'new instance shows')
        wait_file(s2, old)
        s2.stop()
        s2.start()
        st, h, body = s2.get(path, headers=gz)
        H.eq(len(body), os.path.getsize(fpath) - 128, 'the replaced file is used')
        H.eq(sops(gzip.decompress(body)), sorted(m['sop'] for m in mr), 'and has 13')
        # a symlink planted in place of the file is not followed
        s2.stop()
        os.unlink(fpath)
        os.symlink('/etc/passwd', fpath)
        s2.start()
        st, h, body = s2.get(path, headers=gz)
        H.eq(sops(gzip.decompress(body)), sorted(m['sop'] for m in mr), 'symlink ignored')
        for _ in range(100):
            if not os.path.islink(fpath):
                break
            time.sleep(0.05)
        H.check(os.path.isfile(fpath) and not os.path.islink(fpath), 'replaced by a file')
        H.check(open('/etc/passwd', 'rb').read(4) != b'YYME', 'the link target is untouched')
        # the study-level answer is kept too; a DELETE removes both at once
        H.eq(s2.get('/dicomweb/studies/%s/metadata' % mr[0]['study'], headers=gz)[0], 200, 'study')
        for _ in range(100):
            if len(cache_files(s2)) == 2:
                break
            time.sleep(0.05)
        H.eq(len(cache_files(s2)), 2, 'series and study files')
        st = s2.request('DELETE', '/dicomweb/studies/%s/series/%s' % (mr[0]['study'],
                                                                      mr[0]['series']))[0]
        H.eq(st, 204, 'series deleted')
        H.eq(cache_files(s2), [], 'DELETE removes the kept metadata (it holds patient data)')
        H.eq(s2.get(path, headers=gz)[0], 404, 'gone')
    # bounded: the files' total stays under the configured size (oldest
    # written go first, never the file just written)
    s3 = H.Server('--metadata-disk-cache-bytes', '6K')
    with s3:
        ct = os.path.join(H.CORPUS, 'series')
        for d in sorted(os.listdir(ct)):
            fl = sorted(os.listdir(os.path.join(ct, d)))[:10]
            H.eq(s3.stow_files([os.path.join(ct, d, x) for x in fl])[0], 200, d)
            f = FILES['series/%s/%s' % (d, fl[0])]
            p = '/dicomweb/studies/%s/series/%s/metadata' % (f['study'], f['series'])
            H.eq(s3.get(p, headers=gz)[0], 200, d)
            time.sleep(0.5)
            H.eq(len(cache_files(s3)), 1, 'the newest file stays (CT 2 KB, then MR 5.5 KB)')
        total = sum(os.path.getsize(os.path.join(s3.data, 'cache', 'metadata', x))
                    for x in cache_files(s3))
        H.check(total <= 6144, 'cache bounded: %d bytes' % total)
    s4 = H.Server('--metadata-disk-cache-bytes', '0')
    with s4:
        s4.stow_files([os.path.join(mr_dir, x) for x in files[:12]])
        s4.get(path, headers=gz)
        time.sleep(0.3)
        H.eq(cache_files(s4), [], 'off: no files')


def canonical(ds, raw, frame_index):
    """Native frame bytes as REFERENCE.tsv canonicalises them."""
    import numpy as np
    rows, cols, spp = ds.Rows, ds.Columns, ds.get('SamplesPerPixel', 1)
    ba = ds.BitsAllocated
    if ba == 1:
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder='little')
        return bits[:rows * cols * spp].astype(np.uint8).tobytes()
    if spp > 1 and ds.get('PlanarConfiguration', 0) == 1:
        a = np.frombuffer(raw, dtype=np.dtype('<u%d' % (ba // 8)))
        return a.reshape(spp, rows * cols).T.copy().tobytes()
    return raw


def test_native_frames_match_reference():
    ref = {}
    for line in open(os.path.join(H.CORPUS, 'REFERENCE.tsv')):
        p = line.rstrip('\n').split('\t')
        if p[0] != 'path':
            ref[(p[0], int(p[1]))] = p[2]
    n = 0
    for (rel, idx), sha in sorted(ref.items()):
        f = FILES.get(rel)
        if not f or f['ts'] not in NATIVE:
            continue
        ds = pydicom.dcmread(os.path.join(H.CORPUS, rel), stop_before_pixels=True)
        h, parts = get_parts(inst_url(f) + '/frames/%d' % (idx + 1),
                             'multipart/related; type="application/octet-stream"')
        H.eq(len(parts), 1, rel)
        data = canonical(ds, parts[0][1], idx)
        H.eq(hashlib.sha256(data).hexdigest(), sha, 'frame %d of %s' % (idx + 1, rel))
        n += 1
    H.check(n > 150, 'native frames checked: %d' % n)


def test_frames_stored_and_errors():
    jf = [(r, v) for r, v in FILES.items() if v['ts'] == '1.2.840.10008.1.2.4.50'][0]
    url = inst_url(jf[1]) + '/frames/1'
    h, parts = get_parts(url, 'multipart/related; type="application/octet-stream"; transfer-syntax=*')
    H.check(parts[0][1][:2] == b'\xff\xd8', 'stored JPEG codestream')
    H.check('transfer-syntax=1.2.840.10008.1.2.4.50' in parts[0][0]['content-type'], 'part ts')
    h, parts = get_parts(url, 'multipart/related; type="image/jpeg"')
    H.check(parts[0][0]['content-type'].startswith('image/jpeg'), 'image/jpeg part')
    # multi-frame: several frames in one request, in the order asked
    cine = [(r, v) for r, v in FILES.items() if 'US1_UNCR' in r or 'rtdose' in r.lower()]
    rel, f = [(r, v) for r, v in FILES.items() if r.endswith('pydicom__rtdose.dcm')][0]
    h, parts = get_parts(inst_url(f) + '/frames/3,1,2', 'multipart/related; type="application/octet-stream"')
    H.eq(len(parts), 3, 'three frames')
    b = pydicom.dcmread(os.path.join(H.CORPUS, rel))
    arr = b.pixel_array
    H.eq(parts[0][1], arr[2].astype(arr.dtype.newbyteorder('<')).tobytes(), 'frame 3 first')
    H.eq(parts[1][1], arr[0].astype(arr.dtype.newbyteorder('<')).tobytes(), 'then frame 1')
    for bad, code in [('0', 400), ('-1', 400), ('abc', 400), ('1,,2', 400), ('99999', 404),
                      (','.join(['1'] * 10000), 400), ('1' * 40, 400)]:
        st, _, body = S.get(inst_url(f) + '/frames/' + bad)
        H.eq(st, code, 'frames/' + bad[:20])
        H.check(json.loads(body)['message'], 'reason')
    nonimage = [v for r, v in FILES.items() if 'sample-pdf' in r][0]
    st, _, _ = S.get(inst_url(nonimage) + '/frames/1')
    H.eq(st, 404, 'no pixel data')


def test_frames_found_by_codestream_markers():
    """A multi-frame JPEG with an empty Basic Offset Table and two fragments
    per frame: the frames are found at ingest from the JPEG start markers
    at fragment starts, read from the received bytes in memory (an object
    that fits in the staging buffer) or from the file (a larger one)."""
    from pydicom.encaps import encapsulate, generate_pixel_data_frame
    from pydicom.uid import generate_uid
    rels = sorted(r for r, v in FILES.items() if v['ts'] == '1.2.840.10008.1.2.4.50')[:3]
    H.check(len(rels) == 3, 'three JPEG baseline files in the corpus')
    frames = []
    for r in rels:
        d = pydicom.dcmread(os.path.join(H.CORPUS, r))
        frames.append(next(generate_pixel_data_frame(d.PixelData, 1)))
    H.check(all(f[:2] == b'\xff\xd8' for f in frames), 'JPEG codestreams')
    acc = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    for label, pad in (('in memory', 0), ('from the file', 1536 * 1024)):
        ds = pydicom.dcmread(os.path.join(H.CORPUS, rels[0]))
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.NumberOfFrames = 3
        ds.PixelData = encapsulate(frames, fragments_per_frame=2, has_bot=False)
        if pad:
            ds.add_new(0x00090010, 'LO', 'YINGYUN TEST')
            ds.add_new(0x00091010, 'OB', b'\0' * pad)
        buf = io.BytesIO()
        ds.save_as(buf, write_like_original=False)
        H.check((len(buf.getvalue()) > 1024 * 1024) == bool(pad), label + ': size')
        st, _, js = S.stow([buf.getvalue()])
        H.eq(st, 200, label + ': stored')
        url = '/dicomweb/studies/%s/series/%s/instances/%s/frames/3,1,2' % (
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        _, parts = get_parts(url, acc)
        H.eq(len(parts), 3, label + ': three frames')
        for got, want in zip(parts, (frames[2], frames[0], frames[1])):
            # fragments are padded to an even length
            H.check(got[1][:len(want)] == want and len(got[1]) - len(want) <= 1,
                    label + ': frame bytes (%d vs %d)' % (len(got[1]), len(want)))


def test_single_frame_single_part_and_range():
    """One frame asked as a bare media type (image/jphc, image/jpeg,
    application/octet-stream) comes as a single part from the file, with
    HTTP Range: a client can fetch the first bytes of a progressive HTJ2K
    codestream (its low resolutions) and the rest later."""
    rel = 'derived/htj2k_lossless__from_MR-SIEMENS-DICOM-WithOverlays.dcm'
    f = FILES[rel]
    url = inst_url(f) + '/frames/1'
    h, parts = get_parts(url, 'multipart/related; type="image/jphc"')
    code = parts[0][1]
    H.check(code[:2] == b'\xff\x4f', 'J2K codestream (SOC)')
    st, h, body = S.get(url, headers={'Accept': 'image/jphc'})
    H.eq(st, 200, 'single part')
    H.check(h['content-type'].startswith('image/jphc') and
            'transfer-syntax=1.2.840.10008.1.2.4.201' in h['content-type'], h['content-type'])
    H.eq(h.get('accept-ranges'), 'bytes', 'Accept-Ranges')
    H.eq(body, code, 'the same codestream as the multipart part')
    st, h, part = S.get(url, headers={'Accept': 'image/jphc', 'Range': 'bytes=0-1023'})
    H.eq((st, part, h.get('content-range')), (206, code[:1024], 'bytes 0-1023/%d' % len(code)),
         'first KiB')
    st, h, part = S.get(url, headers={'Accept': 'image/jphc', 'Range': 'bytes=1024-'})
    H.eq((st, part), (206, code[1024:]), 'the rest')
    st, h, _ = S.get(url, headers={'Accept': 'image/jphc', 'Range': 'bytes=%d-' % len(code)})
    H.eq((st, h.get('content-range')), (416, 'bytes */%d' % len(code)), 'unsatisfiable')
    st, _, _ = S.get(url, headers={'Accept': 'image/jphc', 'Range': 'bytes=5-2'})
    H.eq(st, 416, 'reversed range')
    # native frame, bare octet-stream: the stored bytes
    mr = [v for r, v in FILES.items() if r.startswith('series/mr_')][0]
    st, h, raw = S.get(inst_url(mr) + '/frames/1', headers={'Accept': 'application/octet-stream'})
    H.eq((st, len(raw)), (200, 256 * 256 * 2), 'native single part')
    h2, parts = get_parts(inst_url(mr) + '/frames/1', 'multipart/related; type="application/octet-stream"')
    H.eq(parts[0][1], raw, 'same bytes as the multipart part')
    # several frames stay multipart whatever was asked
    rel, cine = [(r, v) for r, v in FILES.items() if r.endswith('pydicom__rtdose.dcm')][0]
    st, h, _ = S.get(inst_url(cine) + '/frames/1,2', headers={'Accept': 'application/octet-stream'})
    H.check(st != 200 or h['content-type'].startswith('multipart/related'), 'many frames: multipart')


def test_every_bulkdata_uri_resolves():
    n = 0
    for rel, f in sorted(FILES.items()):
        md = S.get_json(inst_url(f) + '/metadata')[0]
        ds = pydicom.dcmread(os.path.join(H.CORPUS, rel))
        uris = []

        def walk(d, ds_):
            for tag, el in d.items():
                if 'BulkDataURI' in el:
                    uris.append((el['BulkDataURI'], ds_, int(tag, 16)))
                if el.get('vr') == 'SQ':
                    for item, dsi in zip(el.get('Value', []), ds_[int(tag, 16)].value if int(tag, 16) in ds_ else []):
                        walk(item, dsi)
        walk(md, ds)
        for uri, ds_, tag in uris:
            H.check(uri.startswith(S.base + '/dicomweb/studies/'), uri)
            path = uri[len(S.base):]
            el = ds_[tag]
            if el.VR in ('OB', 'OW') and el.is_undefined_length:
                # compressed pixel data: one part per frame, the codestream
                # without fragment delimiters (PS3.18 8.7.3.3.2)
                from pydicom.encaps import generate_pixel_data_frame
                nf = int(ds_.get('NumberOfFrames', 1) or 1)
                want = list(generate_pixel_data_frame(el.value, nf))
                h, parts = get_parts(path, 'multipart/related; type="application/octet-stream"; '
                                           'transfer-syntax=*')
                H.eq(len(parts), len(want), 'one part per frame: ' + rel)
                for (ph, pb), w in zip(parts, want):
                    H.check(pb.rstrip(b'\0') == w.rstrip(b'\0'), 'frame codestream ' + rel)
                n += 1
                continue
            st, h, body = S.get(path, headers={'Accept': 'application/octet-stream'})
            H.eq(st, 200, 'bulk %s of %s' % (path, rel))
            want = el.value if isinstance(el.value, bytes) else None
            if want is None:
                want = ds_.get_item(tag).value
            if ds_.is_little_endian is False and el.VR in ('OW', 'US', 'SS', 'OF', 'FL', 'OD', 'FD', 'OL', 'UL', 'SL'):
                import numpy as np
                size = {'OW': 2, 'US': 2, 'SS': 2, 'OF': 4, 'FL': 4, 'OL': 4, 'UL': 4, 'SL': 4, 'OD': 8, 'FD': 8}[el.VR]
                if tag == 0x7FE00010 and ds_.BitsAllocated >= 16:
                    size = ds_.BitsAllocated // 8
                want = np.frombuffer(want, dtype='>u%d' % size).astype('<u%d' % size).tobytes()
            H.eq(len(body), len(want), 'bulk length ' + path)
            H.check(body == want, 'bulk bytes ' + path)
            n += 1
    H.check(n > 200, 'bulk URIs checked: %d' % n)
    # multipart form and a range
    f = FILES['series/mr_ge_signa_3d_sag_irspgr_196/' + sorted(os.listdir(os.path.join(H.CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196')))[0]]
    url = inst_url(f) + '/bulkdata/7FE00010'
    st, h, full = S.get(url, headers={'Accept': 'application/octet-stream'})
    H.eq(h.get('accept-ranges'), 'bytes', 'Accept-Ranges')
    st, h, part = S.get(url, headers={'Accept': 'application/octet-stream', 'Range': 'bytes=100-199'})
    H.eq((st, part, h['content-range']), (206, full[100:200], 'bytes 100-199/%d' % len(full)), 'range')
    st, h, part = S.get(url, headers={'Accept': 'application/octet-stream', 'Range': 'bytes=-10'})
    H.eq((st, part), (206, full[-10:]), 'suffix range')
    st, h, _ = S.get(url, headers={'Accept': 'application/octet-stream', 'Range': 'bytes=%d-' % (len(full) + 5)})
    H.eq(st, 416, 'unsatisfiable range')
    h, parts = get_parts(url, 'multipart/related; type="application/octet-stream"')
    H.eq(parts[0][1], full, 'multipart bulk')
    st, _, _ = S.get(inst_url(f) + '/bulkdata/12345678')
    H.eq(st, 404, 'no such bulk data')


def test_http_behaviour():
    f = FILES['charset/pydicom__chrX1.dcm']
    path = '/dicomweb/studies?PatientID=X1EXAMPLE'
    # CORS: allowed origin gets the headers, others do not
    st, h, _ = S.get(path, headers={'Origin': 'http://viewer.test'})
    H.eq(h.get('access-control-allow-origin'), 'http://viewer.test', 'allowed origin')
    st, h, _ = S.get(path, headers={'Origin': 'http://evil.test'})
    H.check('access-control-allow-origin' not in h, 'other origin')
    st, h, _ = S.request('OPTIONS', inst_url(f) + '/metadata',
                         headers={'Origin': 'http://viewer.test', 'Access-Control-Request-Method': 'GET',
                                  'Access-Control-Request-Headers': 'accept, if-none-match'})
    H.eq(st, 204, 'preflight')
    H.check('GET' in h['access-control-allow-methods'], 'allow methods')
    H.eq(h['access-control-allow-headers'], 'accept, if-none-match', 'allow headers')
    st, h, _ = S.request('OPTIONS', '/dicomweb/studies')
    H.eq(h['allow'], 'GET, HEAD, POST, OPTIONS', 'Allow on OPTIONS')
    st, h, _ = S.request('PUT', '/dicomweb/studies', body=b'x')
    H.eq(st, 405, 'method not allowed')
    H.check('allow' in h, 'Allow on 405')
    # HEAD everywhere GET is: same headers, no body
    for p in [path, inst_url(f) + '/metadata', inst_url(f), '/wado?requestType=WADO&studyUID=%s&seriesUID=%s'
              '&objectUID=%s&contentType=application/dicom' % (f['study'], f['series'], f['sop'])]:
        sg, hg, bg = S.get(p)
        sh, hh, bh = S.request('HEAD', p)
        H.eq((sh, bh), (sg, b''), 'HEAD ' + p)
        H.eq(re.sub(r'boundary=\S+', '', hh.get('content-type', '')),
             re.sub(r'boundary=\S+', '', hg.get('content-type', '')), 'HEAD content type')
    # keep-alive: two requests on one connection
    c = S.conn()
    c.request('GET', path)
    r1 = c.getresponse()
    r1.read()
    c.request('GET', inst_url(f) + '/metadata')
    r2 = c.getresponse()
    H.eq(r2.status, 200, 'second request on the same connection')
    r2.read()
    H.check(r1.getheader('connection') != 'close', 'no Connection: close')
    c.close()


def test_wado_uri():
    f = FILES['charset/pydicom__chrX2.dcm']
    q = '/wado?requestType=WADO&studyUID=%s&seriesUID=%s&objectUID=%s' % (f['study'], f['series'], f['sop'])
    st, h, body = S.get(q + '&contentType=application/dicom&transferSyntax=' + f['ts'])
    H.eq((st, h['content-type']), (200, 'application/dicom'), 'WADO-URI')
    H.check(body == open(os.path.join(H.CORPUS, 'charset/pydicom__chrX2.dcm'), 'rb').read(), 'as stored')
    st, h, body = S.get(q + '&contentType=application/dicom')
    H.eq(str(pydicom.dcmread(io.BytesIO(body)).file_meta.TransferSyntaxUID), EXPLICIT, 'default Explicit LE')
    imp = [v for r, v in FILES.items() if v['ts'] == IMPLICIT][0]
    q2 = '/wado?requestType=WADO&studyUID=%s&seriesUID=%s&objectUID=%s&contentType=application/dicom' % (
        imp['study'], imp['series'], imp['sop'])
    st, h, body = S.get(q2)
    H.eq(st, 200, 'implicit stored, explicit sent')
    H.eq(str(pydicom.dcmread(io.BytesIO(body)).file_meta.TransferSyntaxUID), EXPLICIT, 'converted')
    for bad, code in [('/wado?studyUID=1&seriesUID=2&objectUID=3', 400),
                      ('/wado?requestType=WADO&studyUID=1', 400),
                      ('/wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3&contentType=application/dicom', 404),
                      ('/wado?requestType=WADO&studyUID=a&seriesUID=2&objectUID=3', 400),
                      (q + '&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2', 406)]:
        st, _, _ = S.get(bad)
        H.eq(st, code, bad)


def test_delete_and_recovery():
    s2 = H.Server()
    with s2:
        mr_dir = os.path.join(H.CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196')
        files = sorted(os.listdir(mr_dir))[:6]
        s2.stow_files([os.path.join(mr_dir, x) for x in files] +
                      [os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm')])
        mr = [FILES['series/mr_ge_signa_3d_sag_irspgr_196/' + x] for x in files]
        n_files = lambda: sum(len(fs) for _, _, fs in os.walk(os.path.join(s2.data, 'objects')))
        H.eq(n_files(), 7, 'files stored')
        st, _, _ = s2.request('DELETE', inst_url(mr[0]))
        H.eq(st, 204, 'delete instance')
        H.eq(s2.get(inst_url(mr[0]))[0], 404, 'gone')
        H.eq(n_files(), 6, 'file removed')
        res = s2.get_json('/dicomweb/studies?StudyInstanceUID=' + mr[0]['study'])
        H.eq(H.value(res[0], '00201208'), 5, 'counts updated')
        st, _, _ = s2.request('DELETE', '/dicomweb/studies/%s/series/%s' % (mr[1]['study'], mr[1]['series']))
        H.eq(st, 204, 'delete series')
        H.eq(s2.get_json('/dicomweb/studies?StudyInstanceUID=' + mr[0]['study']), [], 'empty study removed')
        H.eq(s2.request('DELETE', '/dicomweb/studies/' + mr[1]['study'])[0], 404, 'already gone')
        x1 = FILES['charset/pydicom__chrX1.dcm']
        H.eq(s2.request('DELETE', '/dicomweb/studies/' + x1['study'])[0], 204, 'delete study')
        H.eq(n_files(), 0, 'no files left')
        H.eq(s2.get_json('/status')['instances'], 0, 'index empty')
        # crash between the index commit and the unlink: the journal is
        # finished at the next start
        s2.stow_files([os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm')])
        s2.stop()
        rel = [os.path.relpath(os.path.join(d, x), s2.data) for d, _, fs in os.walk(os.path.join(s2.data, 'objects')) for x in fs][0]
        db = sqlite3.connect(os.path.join(s2.data, 'index.db'))
        db.execute('DELETE FROM instance')
        db.execute('DELETE FROM series')
        db.execute('DELETE FROM study')
        db.execute('INSERT INTO pending_unlink(rel_path) VALUES (?)', (rel,))
        db.commit()
        db.close()
        s2.start()
        H.eq(n_files(), 0, 'leftover removed at start')
        H.eq(sqlite3.connect(os.path.join(s2.data, 'index.db')).execute(
            'SELECT count(*) FROM pending_unlink').fetchone()[0], 0, 'journal finished')


def test_frame_lookups_follow_changes():
    """Frames are served from a cache of instance lookups: a change made by
    this server (delete, store) or by another process (yingyun import
    replacing the object) shows at once, never the old pixels."""
    mr_dir = os.path.join(H.CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196')
    src = os.path.join(mr_dir, sorted(os.listdir(mr_dir))[0])
    f = FILES['series/mr_ge_signa_3d_sag_irspgr_196/' + os.path.basename(src)]
    ds = pydicom.dcmread(src)
    before = ds.PixelData
    after = bytes(b ^ 0x5A for b in before)
    ds.PixelData = after
    ds.ImageComments = 'replaced ' * 100  # moves the pixel data: another layout
    s2 = H.Server('--overwrite')
    with s2:
        changed = os.path.join(s2.tmp, 'changed.dcm')
        ds.save_as(changed)
        url = inst_url(f) + '/frames/1'
        acc = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'

        def frame():
            st, h, body = s2.get(url, headers={'Accept': acc})
            if st != 200:
                return st
            return split_multipart(h['content-type'], body)[0][1]
        H.eq(s2.stow_files([src])[0], 200, 'stored')
        for i in range(3):  # the later ones come from the cache
            H.check(frame() == before, 'stored pixels (%d)' % i)
        p = subprocess.run([H.BIN, 'import', '--data', s2.data, '--overwrite', changed],
                           capture_output=True, text=True, timeout=120)
        H.eq(p.returncode, 0, 'import by another process: %s %s' % (p.stdout, p.stderr))
        for i in range(2):
            H.check(frame() == after, 'the replacement is served (%d)' % i)
        H.eq(s2.request('DELETE', inst_url(f))[0], 204, 'delete')
        H.eq(frame(), 404, 'deleted: 404 at once')
        H.eq(s2.stow_files([src])[0], 200, 'stored again')
        H.check(frame() == before, 'stored again: its pixels')
        H.check(frame() == before, 'stored again: its pixels (cached)')


def test_part_failing_after_headers_aborts():
    s2 = H.Server()
    with s2:
        mr_dir = os.path.join(H.CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196')
        files = sorted(os.listdir(mr_dir))[:40]
        s2.stow_files([os.path.join(mr_dir, x) for x in files])
        f = FILES['series/mr_ge_signa_3d_sag_irspgr_196/' + files[-1]]
        # remove the last instance's file behind the server's back
        for d, _, fs in os.walk(os.path.join(s2.data, 'objects')):
            for x in fs:
                p = os.path.join(d, x)
                if pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID == f['sop']:
                    os.unlink(p)
        c = s2.conn()
        c.request('GET', '/dicomweb/studies/' + f['study'], headers={'Accept': ANY_TS})
        r = c.getresponse()
        H.eq(r.status, 200, 'headers were already sent')
        try:
            body = r.read()
            aborted = len(body) < int(r.getheader('content-length', '0'))
        except http.client.IncompleteRead:
            aborted = True
        H.check(aborted, 'the response is cut, never a valid body with an instance missing')


TESTS = [test_instance_as_stored_is_byte_identical, test_default_is_explicit_le_and_conversion,
         test_negotiation_and_406, test_study_and_series_retrieve, test_metadata_equals_ingest_json,
         test_series_metadata_gzip_etag_xml, test_metadata_cache_follows_changes,
         test_metadata_disk_cache,
         test_native_frames_match_reference, test_single_frame_single_part_and_range,
         test_frames_stored_and_errors, test_frames_found_by_codestream_markers,
         test_every_bulkdata_uri_resolves, test_http_behaviour,
         test_wado_uri, test_delete_and_recovery, test_frame_lookups_follow_changes,
         test_part_failing_after_headers_aborts]

if __name__ == '__main__':
    setup()
    sys.exit(H.run(TESTS, teardown=teardown))
