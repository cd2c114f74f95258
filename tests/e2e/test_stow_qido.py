#!/usr/bin/env python3
"""STOW-RS and QIDO-RS end to end against a real server on loopback, with
the whole shared corpus (issue: core server).

Reference values (UIDs, names, dates) come from pydicom, not from our own
parser."""
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import warnings
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(__file__))
import harness as H  # noqa: E402

warnings.filterwarnings('ignore')
import pydicom  # noqa: E402

S = None
REF = {}       # rel path -> dict of reference attributes
STORED = {}    # sop uid -> rel


def ref_attrs(path):
    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)

    def g(k):
        v = ds.get(k)
        return str(v).strip() if v is not None and str(v) != '' else None
    return {
        'study': g('StudyInstanceUID'), 'series': g('SeriesInstanceUID'),
        'sop': g('SOPInstanceUID'), 'class': g('SOPClassUID'), 'pid': g('PatientID'),
        'acc': g('AccessionNumber'), 'date': g('StudyDate'), 'modality': g('Modality'),
        'name': str(ds.get('PatientName', '')) or None,
        'ts': str(getattr(getattr(ds, 'file_meta', None), 'TransferSyntaxUID', '') or '') or None,
    }


def setup():
    global S
    for row in H.manifest():
        REF[row['path']] = ref_attrs(os.path.join(H.CORPUS, row['path']))
    S = H.Server().start()
    return S


def teardown(_):
    if S:
        S.cleanup()


def corpus_paths():
    return [os.path.join(H.CORPUS, r) for r in sorted(REF)]


def test_stow_whole_corpus():
    """Every storable corpus file is stored; the six without UIDs are refused
    with a reason; batches with failures answer 202."""
    rels = sorted(REF)
    for i in range(0, len(rels), 40):
        batch = rels[i:i + 40]
        st, h, js = S.stow_files([os.path.join(H.CORPUS, r) for r in batch])
        bad = [r for r in batch if r in H.UNSTORABLE]
        H.eq(h.get('content-type'), 'application/dicom+json', 'content type')
        H.eq(st, 202 if bad else 200, 'status of batch %d' % i)
        ok = H.values(js, '00081199')
        failed = H.values(js, '00081198')
        H.eq(len(ok), len(batch) - len(bad), 'stored count')
        H.eq(len(failed), len(bad), 'failed count')
        for item in failed:
            H.eq(H.value(item, '00081197'), 0xA900, 'failure reason')
            H.check(H.value(item, '00000902'), 'a reason text')
        for item in ok:
            sop = H.value(item, '00081155')
            url = H.value(item, '00081190')
            H.check(url.startswith(S.base + '/dicomweb/studies/') and url.endswith(sop), url)
            STORED[sop] = True
    H.eq(len(STORED), len(REF) - len(H.UNSTORABLE), 'distinct stored')


def test_refused_reasons_name_the_problem():
    st, _, js = S.stow_files([os.path.join(H.CORPUS, 'edge/pydicom-data__JLSL_RGB_ILV0.dcm')])
    H.eq(st, 409, 'none stored')
    item = H.values(js, '00081198')[0]
    H.check('missing' in H.value(item, '00000902'), H.value(item, '00000902'))


REQUIRED_STUDY = ['00080020', '00080030', '00080050', '00080056', '00080061', '00080090',
                  '00081190', '00100010', '00100020', '00100030', '00100040', '0020000D',
                  '00200010', '00201206', '00201208']
REQUIRED_SERIES = ['00080060', '0008103E', '00081190', '0020000E', '00200011', '00201209',
                   '00400244', '00400245']
REQUIRED_INSTANCE = ['00080016', '00080018', '00080056', '00081190', '00200013', '00280010',
                     '00280011', '00280100', '00280008', '00083002']


def test_qido_finds_every_study_series_instance():
    studies = {}
    for rel, a in REF.items():
        if rel in H.UNSTORABLE:
            continue
        studies.setdefault(a['study'], []).append(a)
    for study, members in studies.items():
        res = S.get_json('/dicomweb/studies?StudyInstanceUID=' + study)
        H.eq(len(res), 1, 'study ' + study)
        mods = {m['modality'] for m in members if m['modality']}
        for t in REQUIRED_STUDY:
            if t == '00080061' and not mods:
                # no series has a Modality: left out (an empty value breaks
                # OHIF's study list; see docs/conformance.md)
                H.check(t not in res[0], 'empty ModalitiesInStudy omitted')
                continue
            H.check(t in res[0], 'study attribute %s missing' % t)
        H.eq(H.value(res[0], '00201208'), len(members), 'NumberOfStudyRelatedInstances ' + study)
        H.eq(H.value(res[0], '00201206'), len({m['series'] for m in members}), 'series count')
        H.eq(set(H.values(res[0], '00080061')), mods, 'ModalitiesInStudy')
    for rel, a in REF.items():
        if rel in H.UNSTORABLE:
            continue
        se = S.get_json('/dicomweb/studies/%s/series?SeriesInstanceUID=%s' % (a['study'], a['series']))
        H.eq(len(se), 1, 'series of ' + rel)
        for t in REQUIRED_SERIES:
            H.check(t in se[0], 'series attribute %s missing (%s)' % (t, rel))
        ins = S.get_json('/dicomweb/studies/%s/series/%s/instances?SOPInstanceUID=%s'
                         % (a['study'], a['series'], a['sop']))
        H.eq(len(ins), 1, 'instance of ' + rel)
        for t in REQUIRED_INSTANCE:
            H.check(t in ins[0], 'instance attribute %s missing (%s)' % (t, rel))
        H.eq(H.value(ins[0], '00080016'), a['class'], 'SOPClassUID')
        if a['ts']:  # AvailableTransferSyntaxUID: the stored syntax, where
            # Implicit VR (not allowed over DICOMweb) is served as Explicit VR
            want = '1.2.840.10008.1.2.1' if a['ts'] == '1.2.840.10008.1.2' else a['ts']
            H.eq(H.value(ins[0], '00083002'), want, 'AvailableTransferSyntaxUID ' + rel)
        H.check(H.value(ins[0], '00081190').endswith('/instances/' + a['sop']), 'RetrieveURL')
        # all-instances search carries the study and series attributes too
        allins = S.get_json('/dicomweb/instances?SOPInstanceUID=' + a['sop'])
        H.eq(len(allins), 1, 'all-instances ' + rel)
        for t in REQUIRED_STUDY + REQUIRED_SERIES:
            if t == '00081190' or (t == '00080061' and not a['modality']):
                continue
            H.check(t in allins[0], '/instances lacks %s' % t)
        H.eq(H.value(allins[0], '0020000E'), a['series'], 'series uid on instance')


def test_qido_by_keys():
    for rel, a in REF.items():
        if rel in H.UNSTORABLE:
            continue
        if a['pid']:
            res = S.get_json('/dicomweb/studies?PatientID=' + H_quote(a['pid']))
            H.check(any(H.value(r, '0020000D') == a['study'] for r in res), 'by PatientID ' + rel)
        if a['acc']:
            res = S.get_json('/dicomweb/studies?AccessionNumber=' + H_quote(a['acc']))
            H.check(any(H.value(r, '0020000D') == a['study'] for r in res), 'by Accession ' + rel)
        if a['date'] and len(a['date']) == 8:
            res = S.get_json('/dicomweb/studies?StudyDate=%s&limit=1000' % a['date'])
            H.check(any(H.value(r, '0020000D') == a['study'] for r in res), 'by StudyDate ' + rel)
        if a['modality']:
            res = S.get_json('/dicomweb/studies/%s/series?Modality=%s' % (a['study'], H_quote(a['modality'])))
            H.check(any(H.value(r, '0020000E') == a['series'] for r in res), 'by Modality ' + rel)
        res = S.get_json('/dicomweb/studies/%s/instances?SOPClassUID=%s&SOPInstanceUID=%s'
                         % (a['study'], a['class'], a['sop']))
        H.eq(len(res), 1, 'by SOPClassUID ' + rel)


def H_quote(s):
    from urllib.parse import quote
    return quote(s, safe='')


def test_qido_matching_rules():
    # wildcards, case-insensitive person names
    res = S.get_json('/dicomweb/studies?PatientName=' + H_quote('buc*'))
    H.check(any('Buc' in json.dumps(r) for r in res), 'PN wildcard buc*')
    res = S.get_json('/dicomweb/studies?PatientName=' + H_quote('*gildong*'))
    H.eq(len(res), 1, '*gildong*')
    # '?' matches one character
    res = S.get_json('/dicomweb/studies?PatientID=' + H_quote('SCSGR?EK'))
    H.eq(len(res), 1, 'PatientID with ?')
    # date ranges: open and closed
    all_dates = sorted({a['date'] for a in REF.values() if a['date'] and len(a['date']) == 8})
    mid = all_dates[len(all_dates) // 2]
    n_total = len(S.get_json('/dicomweb/studies?limit=10000'))
    lo = S.get_json('/dicomweb/studies?limit=10000&StudyDate=-' + mid)
    hi = S.get_json('/dicomweb/studies?limit=10000&StudyDate=' + mid + '-')
    exact = S.get_json('/dicomweb/studies?limit=10000&StudyDate=' + mid)
    for r in lo:
        H.check(H.value(r, '00080020') <= mid, 'open upper range')
    for r in hi:
        H.check(H.value(r, '00080020') >= mid, 'open lower range')
    no_date = len([1 for r in S.get_json('/dicomweb/studies?limit=10000') if not H.value(r, '00080020')])
    H.eq(len(lo) + len(hi) - len(exact) + no_date, n_total, 'ranges partition the studies')
    closed = S.get_json('/dicomweb/studies?limit=10000&StudyDate=%s-%s' % (all_dates[0], all_dates[-1]))
    H.eq(len(closed) + no_date, n_total, 'closed range covers all dated studies')
    # UID list (comma and backslash)
    uids = sorted({a['study'] for r, a in REF.items() if r not in H.UNSTORABLE})[:3]
    res = S.get_json('/dicomweb/studies?StudyInstanceUID=' + ','.join(uids))
    H.eq(sorted(H.value(r, '0020000D') for r in res), uids, 'UID list with commas')
    res = S.get_json('/dicomweb/studies?StudyInstanceUID=' + H_quote('\\'.join(uids)))
    H.eq(len(res), 3, 'UID list with backslashes')
    # time range
    res = S.get_json('/dicomweb/studies?StudyTime=000000-235959&limit=10000')
    H.check(all(H.value(r, '00080030') for r in res), 'time range returns timed studies')
    # percent-decoded values
    res = S.get_json('/dicomweb/studies?PatientName=Buc%5EJ%C3%A9r%C3%B4me')
    H.eq(len(res), 1, 'percent-encoded PN')


def test_name_prefix_plans_agree():
    """A name prefix is answered by one of two SQL plans (walk the date
    order, or look the matches up), chosen from the match count and the
    page size: every page agrees with the whole list either way."""
    names = [str(a['name']).strip() for a in REF.values() if a['name']]
    letters = sorted({n[0].upper() for n in names if n[0].isalpha()})
    H.check(len(letters) >= 3, 'names to search')
    for ch in letters[:6] + ['*']:
        pat = ch + '*' if ch != '*' else '*'
        full = [H.value(r, '0020000D') for r in S.get_json('/dicomweb/studies?limit=1000&PatientName=' + pat)]
        paged = []
        for off in range(0, len(full) + 1):
            page = S.get_json('/dicomweb/studies?limit=1&offset=%d&PatientName=%s' % (off, pat))
            paged += [H.value(r, '0020000D') for r in page]
        H.eq(paged, full, 'pages of PatientName=%s' % pat)
        H.eq(len(set(full)), len(full), 'no study twice for ' + pat)


def test_fuzzy_names_hanzi_and_pinyin():
    def names(q):
        res = S.get_json('/dicomweb/studies?fuzzymatching=true&PatientName=' + H_quote(q))
        return sorted(H.value(r, '00100020') for r in res)
    H.eq(names('wang'), ['X1EXAMPLE', 'X2EXAMPLE'], 'pinyin family name')
    H.eq(names('xiaodong'), ['X1EXAMPLE', 'X2EXAMPLE'], 'pinyin given name, case-insensitive')
    H.eq(names('wang xiao'), ['X1EXAMPLE', 'X2EXAMPLE'], 'several words')
    H.eq(names('王'), ['X1EXAMPLE', 'X2EXAMPLE'], 'hanzi family name')
    H.eq(names('小东'), ['X2EXAMPLE'], 'simplified hanzi given name (GB18030 file)')
    H.eq(names('小東'), ['X1EXAMPLE'], 'traditional hanzi given name (UTF-8 file)')
    H.eq(names('王小东'), ['X2EXAMPLE'], 'hanzi written together')
    H.eq(names('jerome'), ['SCSFREN'], 'accent-insensitive')
    H.eq(names('ANEAS'), ['SCSGERM'], 'case- and accent-insensitive')
    H.eq(names('홍'), ['I2EXAMPLE'], 'hangul group')
    H.eq(names('やまだ'), ['2008-4', 'H31EXAMPLE', 'H32EXAMPLE'], 'phonetic group (and the plain kana name)')
    # a UTF-8 query finds the GB18030-encoded name without fuzzy matching too
    res = S.get_json('/dicomweb/studies?PatientName=' + H_quote('王^小东'))
    H.eq([H.value(r, '00100020') for r in res], ['X2EXAMPLE'], 'exact ideographic group')
    pn = H.value(res[0], '00100010')
    H.eq(pn.get('Ideographic'), '王^小东', 'PN returned as UTF-8 groups')
    H.eq(pn.get('Alphabetic'), 'Wang^XiaoDong', 'alphabetic group')


def test_includefield_limit_offset_order():
    res = S.get_json('/dicomweb/studies?limit=3&includefield=PatientAge,00081030&includefield=InstitutionName')
    H.eq(len(res), 3, 'limit')
    every = S.get_json('/dicomweb/studies?limit=10000')
    page2 = S.get_json('/dicomweb/studies?limit=3&offset=3')
    H.eq([H.value(r, '0020000D') for r in page2], [H.value(r, '0020000D') for r in every[3:6]],
         'offset pages through the deterministic order')
    # newest study first by default
    dates = [H.value(r, '00080020') or '' for r in every]
    dated = [d for d in dates if d]
    H.eq(dated, sorted(dated, reverse=True), 'newest first')
    res = S.get_json('/dicomweb/studies?orderby=PatientID&limit=10000')
    pids = [H.value(r, '00100020') or '' for r in res]
    H.eq(pids, sorted(pids, key=lambda x: x), 'orderby PatientID')
    res = S.get_json('/dicomweb/studies?orderby=-StudyDate,PatientName&limit=10000')
    H.eq(len(res), len(every), 'orderby two keys')
    allf = S.get_json('/dicomweb/studies?includefield=all&limit=1&PatientID=X2EXAMPLE')
    H.check('00100010' in allf[0] and '00080005' in allf[0], 'includefield=all')
    inst = S.get_json('/dicomweb/instances?includefield=all&limit=1&PatientID=X2EXAMPLE')
    H.check('00280004' in inst[0], 'includefield=all at instance level returns image attributes')
    # every instance row with includefield=all carries exactly the stored
    # attributes WADO-RS metadata returns (QIDO merges them as text), plus
    # the computed ones; a few picked attributes likewise
    rows = S.get_json('/dicomweb/instances?includefield=all&limit=10000')
    picked = S.get_json('/dicomweb/instances?includefield=00180050,00100010,00280030,00186011&limit=10000')
    H.eq(len(rows), len(picked), 'same rows')
    by_sop = {H.value(r, '00080018'): r for r in picked}
    computed = {'00081190', '00083002', '00201206', '00201208', '00201209', '00080061', '00080056'}
    for row in rows:
        study, series, sop = H.value(row, '0020000D'), H.value(row, '0020000E'), H.value(row, '00080018')
        meta = S.get_json('/dicomweb/studies/%s/series/%s/instances/%s/metadata' % (study, series, sop))[0]
        for k, v in meta.items():
            if k in computed or k in REQUIRED_STUDY or k in REQUIRED_SERIES:
                continue  # study/series attributes come from the index (normalised dates)
            H.eq(row.get(k), v, 'QIDO includefield=all %s of %s' % (k, sop))
        p = by_sop[sop]
        for k in ['00180050', '00100010', '00280030', '00186011']:
            if k not in meta:  # a required study attribute comes back empty
                H.check(k not in p or 'Value' not in p[k], 'no value for absent %s' % k)
                continue
            H.eq(p.get(k), meta.get(k), 'QIDO includefield %s of %s' % (k, sop))
        keys = list(row.keys())
        H.eq(keys, sorted(keys), 'attributes in tag order')
    # clamped limit: Warning header
    s2 = H.Server('--qido-max-limit', '5')
    with s2:
        s2.stow_files(corpus_paths()[:20])
        st, h, body = s2.get('/dicomweb/instances?limit=50')
        H.eq(st, 200, 'clamped')
        H.eq(len(json.loads(body)), 5, 'clamped to the maximum')
        H.check('warning' in h and '299' in h['warning'], 'Warning header when clamped')


def test_qido_errors():
    for q, why in [('Foo=1', 'unknown attribute'), ('StudyDate=2020', 'bad date'),
                   ('StudyDate=20200101-20201301x', 'bad range'), ('limit=-1', 'negative limit'),
                   ('limit=abc', 'non-numeric limit'), ('offset=1e3', 'bad offset'),
                   ('includefield=NoSuchThing', 'bad includefield'), ('StudyInstanceUID=1.2.x', 'bad UID'),
                   ('StudyInstanceUID=1.2.*', 'wildcard UID'), ('orderby=Foo', 'bad orderby'),
                   ('fuzzymatching=maybe', 'bad fuzzymatching'), ('PatientName=%ZZ', 'bad escape'),
                   ('PatientName=a%00b', 'NUL')]:
        st, h, body = S.get('/dicomweb/studies?' + q)
        H.eq(st, 400, why)
        msg = json.loads(body)['message']
        H.check(msg, 'reason text for ' + why)
    st, h, body = S.get('/dicomweb/studies?Foo=1')
    H.check('Foo' in json.loads(body)['message'], '400 names the parameter')
    st, _, _ = S.get('/dicomweb/studies', headers={'Accept': 'image/png'})
    H.eq(st, 406, 'unsatisfiable Accept')
    st, _, body = S.get('/dicomweb/studies?StudyInstanceUID=' + '1' * 70)
    H.eq(st, 400, 'UID over 64 chars')
    # an SQL metacharacter is just a value
    st, _, body = S.get('/dicomweb/studies?PatientID=' + H_quote("x' OR '1'='1"))
    H.eq((st, json.loads(body)), (200, []), 'SQL text matches nothing')


def test_qido_xml():
    st, h, body = S.get('/dicomweb/studies?limit=2',
                        headers={'Accept': 'multipart/related; type="application/dicom+xml"'})
    H.eq(st, 200, 'xml status')
    ct = h['content-type']
    H.check(ct.startswith('multipart/related') and 'application/dicom+xml' in ct, ct)
    boundary = re.search(r'boundary=([^;\s]+)', ct).group(1)
    parts = [p for p in body.split(b'--' + boundary.encode()) if p.strip() not in (b'', b'--')]
    H.eq(len(parts), 2, 'two parts')
    for p in parts:
        head, _, xml = p.partition(b'\r\n\r\n')
        H.check(b'application/dicom+xml' in head, 'part type')
        root = ET.fromstring(xml.strip())
        H.check(root.tag.endswith('NativeDicomModel'), root.tag)
        tags = {a.get('tag') for a in root}
        H.check('0020000D' in tags, 'study uid in xml')


def test_qido_gzip():
    """Accept-Encoding: gzip compresses result lists (a clinic's study list
    over a slow link); the decompressed body equals the identity one."""
    for path in ['/dicomweb/studies?limit=1000', '/dicomweb/series?limit=1000', '/dicomweb/studies?limit=3',
                 '/dicomweb/instances?limit=1000&includefield=all', '/dicomweb/studies?PatientID=NOPE']:
        st, h, plain = S.get(path)
        H.eq(st, 200, path)
        H.check('content-encoding' not in h, 'identity without Accept-Encoding')
        for ae in ['gzip', 'br, gzip;q=0.5', 'x-gzip', '*', 'deflate, gzip']:
            st, h, z = S.get(path, headers={'Accept-Encoding': ae})
            H.eq(st, 200, path + ' ' + ae)
            H.check('accept-encoding' in h.get('vary', '').lower(), 'Vary: Accept-Encoding')
            if len(plain) < 8192:  # small results are not worth compressing
                H.check('content-encoding' not in h, 'identity for a small result')
                H.eq(z, plain, 'small result as it is')
                continue
            H.eq(h.get('content-encoding'), 'gzip', 'gzip for ' + ae)
            H.eq(gzip.decompress(z), plain, 'same JSON after gunzip (%s, %s)' % (path, ae))
        if len(plain) > 100000:
            H.check(len(z) * 4 < len(plain), 'compresses: %d -> %d' % (len(plain), len(z)))
        for ae in ['gzip;q=0', 'identity', 'br', 'gzip;q=0, *', '*;q=0']:
            st, h, b = S.get(path, headers={'Accept-Encoding': ae})
            H.check('content-encoding' not in h, 'identity for ' + ae)
            H.eq(b, plain, 'identity body for ' + ae)
    xml = {'Accept': 'multipart/related; type="application/dicom+xml"'}
    st, h, plain = S.get('/dicomweb/studies?limit=50', headers=xml)
    st, h, z = S.get('/dicomweb/studies?limit=50', headers=dict(xml, **{'Accept-Encoding': 'gzip'}))
    H.eq(h.get('content-encoding'), 'gzip', 'xml gzip')
    unz = gzip.decompress(z)
    b1 = re.search(r'boundary=([^;\s]+)', h['content-type']).group(1).encode()
    H.eq(unz.count(b'<NativeDicomModel'), plain.count(b'<NativeDicomModel'), 'xml parts after gunzip')
    H.check(unz.endswith(b'--' + b1 + b'--\r\n'), 'xml closing boundary after gunzip')
    H.check(b'NativeDicomModel' in gzip.decompress(z), 'xml after gunzip')


def test_restow_is_idempotent():
    before = S.get_json('/status')
    paths = corpus_paths()[:30]
    st, _, js = S.stow_files([p for p in paths if os.path.relpath(p, H.CORPUS) not in H.UNSTORABLE])
    H.eq(st, 200, 're-STOW of identical objects succeeds')
    after = S.get_json('/status')
    H.eq(after['instances'], before['instances'], 'nothing stored twice')


def modified_copy(path, new_name=b'CHANGED'):
    ds = pydicom.dcmread(path)
    ds.PatientName = new_name.decode()
    import io
    b = io.BytesIO()
    ds.save_as(b, write_like_original=True)
    return b.getvalue()


def test_conflicting_object_refused_unless_overwrite():
    path = os.path.join(H.CORPUS, 'charset/pydicom__chrGerm.dcm')
    data = modified_copy(path)
    st, _, js = S.stow([data])
    H.eq(st, 409, 'different object with a stored SOP Instance UID')
    item = H.values(js, '00081198')[0]
    H.eq(H.value(item, '00081197'), 0x0111, 'duplicate failure reason')
    H.check('already stored' in H.value(item, '00000902'), 'reason text')
    res = S.get_json('/dicomweb/studies?PatientID=SCSGERM')
    H.check('Rüdiger' in json.dumps(res, ensure_ascii=False), 'original kept')
    s2 = H.Server('--overwrite')
    with s2:
        H.eq(s2.stow_files([path])[0], 200, 'first store')
        H.eq(s2.stow([data])[0], 200, 'overwrite allowed by config')
        st, _, body = s2.get('/dicomweb/instances?PatientID=SCSGERM&includefield=all')
        H.eq(s2.get_json('/status')['instances'], 1, 'replaced, not added')
        # a replacement stored the same day never renames over the file it
        # replaces (objects/<day>r/ then back to objects/<day>/); the old one
        # goes once the new one is indexed; reindex finds both folders
        ds = pydicom.dcmread(path)
        url = '/dicomweb/studies/%s/series/%s/instances/%s' % (
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        acc = {'Accept': 'multipart/related; type="application/dicom"; transfer-syntax=*'}

        def files():
            return sorted(os.path.relpath(os.path.join(d, f), s2.data)
                          for d, _, fs in os.walk(os.path.join(s2.data, 'objects')) for f in fs)

        def served():
            st, h, b = s2.get(url, headers=acc)
            H.eq(st, 200, 'retrieve')
            return b
        third = modified_copy(path, b'THIRD')
        H.eq(len(files()), 1, 'one file after the second version: %s' % files())
        H.check(data in served(), 'the second version is served')
        for version, label in ((third, 'third'), (data, 'second again')):
            before = files()
            H.eq(s2.stow([version])[0], 200, 'replaced by the %s version' % label)
            H.eq(len(files()), 1, 'one file after the %s version: %s' % (label, files()))
            H.check(files() != before, 'the %s version was not renamed over the file it '
                    'replaced: %s' % (label, files()))
            H.check(version in served(), 'the %s version is served' % label)
        s2.stop()
        p = subprocess.run([H.BIN, 'reindex', '--data', s2.data], capture_output=True, text=True,
                           timeout=120)
        H.eq(p.returncode, 0, 'reindex: %s %s' % (p.stdout, p.stderr))
        s2.start()
        H.eq(s2.get_json('/status')['instances'], 1, 'one instance after reindex')
        H.check(data in served(), 'the last version after reindex')


def test_stow_to_study_url():
    a = REF['charset/pydicom__chrX1.dcm']
    st, _, js = S.stow_files([os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm')], study=a['study'])
    H.eq(st, 200, 'matching study in URL')
    st, _, js = S.stow_files([os.path.join(H.CORPUS, 'charset/pydicom__chrX2.dcm')], study=a['study'])
    H.eq(st, 409, 'instance of another study')
    item = H.values(js, '00081198')[0]
    H.eq(H.value(item, '00081197'), 0xA901, 'study mismatch reason')
    st, _, _ = S.stow_files([os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm')], study='1.2.abc')
    H.eq(st, 400, 'malformed study UID in URL')


def test_stow_error_statuses():
    f = os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm')
    data = open(f, 'rb').read()
    # 415: not multipart, or multipart of something else
    st, _, _ = S.request('POST', '/dicomweb/studies', body=data, headers={'Content-Type': 'application/dicom'})
    H.eq(st, 415, 'single application/dicom body')
    st, _, _ = S.request('POST', '/dicomweb/studies', body=b'x', headers={'Content-Type': 'text/plain'})
    H.eq(st, 415, 'text/plain')
    st, _, _ = S.request('POST', '/dicomweb/studies', body=b'x')
    H.eq(st, 415, 'no content type')
    body, ct = H.multipart([data])
    st, _, _ = S.request('POST', '/dicomweb/studies', body=body,
                         headers={'Content-Type': ct.replace('application/dicom', 'application/dicom+xml')})
    H.eq(st, 415, 'multipart of dicom+xml')
    # 400: no boundary, wrong boundary, truncated
    st, _, _ = S.request('POST', '/dicomweb/studies', body=body,
                         headers={'Content-Type': 'multipart/related; type="application/dicom"'})
    H.eq(st, 400, 'no boundary')
    st, h, _ = S.request('POST', '/dicomweb/studies', body=body,
                         headers={'Content-Type': 'multipart/related; type=application/dicom; boundary=nope'})
    H.eq(st, 400, 'wrong boundary')
    H.check('warning' in h, 'reason in Warning')
    st, _, _ = S.request('POST', '/dicomweb/studies', body=body[:len(body) // 2], headers={'Content-Type': ct})
    H.eq(st, 400, 'truncated body')
    # the type parameter unquoted works
    st, _, _ = S.request('POST', '/dicomweb/studies', body=body,
                         headers={'Content-Type': ct.replace('"application/dicom"', 'application/dicom')})
    H.eq(st, 200, 'unquoted type parameter')
    # 409: nothing storable
    st, _, js = S.stow([b'this is not DICOM'])
    H.eq(st, 409, 'garbage part')
    H.eq(H.value(H.values(js, '00081198')[0], '00081197'), 0xC000, 'cannot understand')
    # 202: mixed
    st, _, js = S.stow([data, b'garbage'])
    H.eq(st, 202, 'partly stored')
    # 406: response type
    st, _, _ = S.request('POST', '/dicomweb/studies', body=body, headers={'Content-Type': ct, 'Accept': 'text/html'})
    H.eq(st, 406, 'unacceptable response type')
    # 413: over the configured body limit
    s2 = H.Server('--max-body-bytes', '100K')
    with s2:
        big = open(os.path.join(H.CORPUS, 'series/ct_ge_hispeed_gantry_tilt_28', sorted(
            os.listdir(os.path.join(H.CORPUS, 'series/ct_ge_hispeed_gantry_tilt_28')))[0]), 'rb').read()
        st, _, _ = s2.stow([big])
        H.eq(st, 413, 'over max_body_bytes (Content-Length)')
        st, _, _ = s2.stow([data])
        H.eq(st, 200, 'small one still fine')
        # chunked upload without Content-Length is counted as it arrives
        c = s2.conn()
        b2, ct2 = H.multipart([big, big])
        c.putrequest('POST', '/dicomweb/studies')
        c.putheader('Content-Type', ct2)
        c.putheader('Transfer-Encoding', 'chunked')
        c.endheaders()
        try:
            for i in range(0, len(b2), 8192):
                ch = b2[i:i + 8192]
                c.send(b'%x\r\n' % len(ch) + ch + b'\r\n')
            c.send(b'0\r\n\r\n')
        except OSError:
            pass
        r = c.getresponse()
        H.eq(r.status, 413, 'chunked body over the limit')
        c.close()
        H.eq(s2.get_json('/status')['instances'], 1, 'nothing of the refused bodies stored')
    # 413: too many parts
    s3 = H.Server('--max-parts', '2')
    with s3:
        st, _, _ = s3.stow([data, data, data])
        H.eq(st, 413, 'over max_parts')


def test_disk_full_503_and_reads_keep_working():
    # the free-space reserve makes the real statvfs check refuse (a real
    # ENOSPC on a small filesystem is exercised by the robustness tests)
    s2 = H.Server(keep=True)
    with s2:
        f = os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm')
        H.eq(s2.stow_files([f])[0], 200, 'stored before the disk fills')
    s3 = H.Server('--disk-reserve-bytes', '1000000T', data=s2.data)
    with s3:
        st, h, js = s3.stow_files([os.path.join(H.CORPUS, 'charset/pydicom__chrX2.dcm')])
        H.eq(st, 503, 'disk full')
        H.eq(H.value(H.values(js, '00081198')[0], '00081197'), 0xA700, 'out of resources')
        H.eq(len(s3.get_json('/dicomweb/studies')), 1, 'reads keep working')
        H.eq(os.listdir(os.path.join(s3.data, 'tmp')), [], 'nothing half-written')
    import shutil
    shutil.rmtree(s2.tmp, ignore_errors=True)


def test_concurrent_uploads_into_one_study():
    files = sorted(os.listdir(os.path.join(H.CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196')))
    paths = [os.path.join(H.CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196', f) for f in files]
    s2 = H.Server()
    with s2:
        errors = []

        def worker(k):
            try:
                mine = paths[k::4]
                for i in range(0, len(mine), 7):
                    st, _, _ = s2.stow_files(mine[i:i + 7])
                    if st != 200:
                        errors.append(st)
            except Exception as e:
                errors.append(e)
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        H.eq(errors, [], 'all uploads succeeded')
        res = s2.get_json('/dicomweb/studies')
        H.eq(len(res), 1, 'one study')
        H.eq(H.value(res[0], '00201208'), len(paths), 'every instance counted once')
        se = s2.get_json('/dicomweb/studies/%s/series' % H.value(res[0], '0020000D'))
        H.eq(H.value(se[0], '00201209'), len(paths), 'series count')
        inst = s2.get_json('/dicomweb/studies/%s/instances?limit=1000' % H.value(res[0], '0020000D'))
        H.eq(len(inst), len(paths), 'instances listed')


def test_stow_while_reading():
    """Writers next to streaming readers: a pooled index connection once
    kept a read snapshot open and the next STOW on it failed at once with
    "database is locked" (SQLITE_BUSY_SNAPSHOT)."""
    import io
    mr = os.path.join(H.CORPUS, 'series/mr_ge_signa_3d_sag_irspgr_196')
    tmpl = []
    for fn in sorted(os.listdir(mr))[:5]:
        raw = open(os.path.join(mr, fn), 'rb').read()
        tmpl.append((raw, pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True).SOPInstanceUID.encode()))
    s2 = H.Server()
    with s2:
        s2.stow([t[0] for t in tmpl])
        st_uid = H.value(s2.get_json('/dicomweb/studies')[0], '0020000D')
        stop = threading.Event()
        failures = []

        def reader():
            while not stop.is_set():
                for p in ['/dicomweb/studies', '/dicomweb/studies/%s/metadata' % st_uid,
                          '/dicomweb/instances?limit=1000']:
                    st, _, _ = s2.get(p)
                    if st != 200:
                        failures.append(('read', p, st))
        readers = [threading.Thread(target=reader) for _ in range(3)]
        for t in readers:
            t.start()
        n = 0
        for k in range(40):
            parts = []
            for raw, uid in tmpl:
                n += 1
                parts.append(raw.replace(uid, uid[:-9] + b'7%08d' % n))
            st, _, js = s2.stow(parts)
            if st != 200:
                failures.append(('stow', st, json.dumps(js)[:200]))
        stop.set()
        for t in readers:
            t.join()
        H.eq(failures, [], 'no failures with concurrent readers')
        H.eq(s2.get_json('/status')['instances'], 5 + 200, 'every instance stored')


def _variant(raw, study, series, sop):
    """raw with new Study, Series and SOP Instance UIDs (pydicom)."""
    import io
    ds = pydicom.dcmread(io.BytesIO(raw))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    out = io.BytesIO()
    ds.save_as(out, write_like_original=True)
    return out.getvalue()


ROOT = '1.2.826.0.1.3680043.8.498.7'


def test_answered_is_visible_to_the_next_request():
    """A STOW is answered once the object is durable and its index row is
    written right after (ingest.h, ack_when_durable); any request sent
    after the answer must find the object, on another connection, at once:
    QIDO, the instance's metadata and a delete of its study. 4 clients x 40
    rounds, new studies and series all the time."""
    raw = open(os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm'), 'rb').read()
    work = []
    for k in range(4):
        mine = []
        for i in range(40):
            st, se, sop = ('%s1.%d.%d' % (ROOT, k, i // 6), '%s2.%d.%d' % (ROOT, k, i // 3),
                           '%s3.%d.%d' % (ROOT, k, i))
            mine.append((st, se, sop, _variant(raw, st, se, sop)))
        work.append(mine)
    # rows gathered for up to 2 s: without the wait for them, every read
    # below would come before its object's row
    s2 = H.Server('--access-log', 'false', '--index-gather-ms', '2000')
    with s2:
        failures = []

        def client(mine):
            for st_uid, se_uid, sop, data in mine:
                st, _, _ = s2.stow([data])
                if st != 200:
                    failures.append(('stow', sop, st))
                    continue
                found = s2.get_json('/dicomweb/instances?SOPInstanceUID=' + sop)
                if len(found) != 1:
                    failures.append(('qido', sop, len(found)))
                st, _, _ = s2.get('/dicomweb/studies/%s/series/%s/instances/%s/metadata'
                                  % (st_uid, se_uid, sop))
                if st != 200:
                    failures.append(('metadata', sop, st))
        ts = [threading.Thread(target=client, args=(m,)) for m in work]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        H.eq(failures, [], 'every answered instance found by the next request')
        H.eq(s2.get_json('/status')['instances'], 160, 'all counted')
        # a delete right after a STOW deletes what that STOW stored
        st_uid, se_uid, sop = ROOT + '1.9', ROOT + '2.9', ROOT + '3.9'
        H.eq(s2.stow([_variant(raw, st_uid, se_uid, sop)])[0], 200, 'stored')
        st, _, _ = s2.request('DELETE', '/dicomweb/studies/' + st_uid)
        H.check(st in (200, 204), 'delete right after: %d' % st)
        H.eq(s2.get_json('/dicomweb/instances?SOPInstanceUID=' + sop), [], 'deleted')


def test_series_of_another_study_refused():
    """A SeriesInstanceUID already used by another study is refused
    (0xA900), in turn and when both objects arrive together, before either
    is answered: exactly one of each pair is stored, and nothing of the
    other is left on disk."""
    raw = open(os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm'), 'rb').read()
    s2 = H.Server('--access-log', 'false')
    with s2:
        a = _variant(raw, ROOT + '4.1', ROOT + '5.1', ROOT + '6.1')
        b = _variant(raw, ROOT + '4.2', ROOT + '5.1', ROOT + '6.2')
        H.eq(s2.stow([a])[0], 200, 'first study')
        st, _, js = s2.stow([b])
        H.eq(st, 409, 'the same series in another study')
        H.eq(H.value(H.values(js, '00081198')[0], '00081197'), 0xA900, 'failure reason')
        pairs = []
        for k in range(12):
            se = '%s5.2.%d' % (ROOT, k)
            pairs.append([_variant(raw, '%s4.3.%d.%d' % (ROOT, k, j), se, '%s6.3.%d.%d' % (ROOT, k, j))
                          for j in range(2)])
        results = {}

        def send(k, j, gate):
            gate.wait()
            results[(k, j)] = s2.stow([pairs[k][j]])[0]
        for k in range(12):
            gate = threading.Barrier(2)
            ts = [threading.Thread(target=send, args=(k, j, gate)) for j in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            got = sorted([results[(k, 0)], results[(k, 1)]])
            H.eq(got, [200, 409], 'pair %d: one stored, one refused' % k)
            se = s2.get_json('/dicomweb/series?SeriesInstanceUID=%s5.2.%d' % (ROOT, k))
            H.eq(len(se), 1, 'pair %d: one series' % k)
            winner = 0 if results[(k, 0)] == 200 else 1
            H.eq(H.value(se[0], '0020000D'), '%s4.3.%d.%d' % (ROOT, k, winner), 'its study')
            H.eq(s2.get_json('/dicomweb/studies?StudyInstanceUID=%s4.3.%d.%d'
                             % (ROOT, k, 1 - winner)), [], 'the refused study is absent')
        stored = s2.get_json('/status')['instances']
        files = sum(len(fs) for d, _, fs in os.walk(os.path.join(s2.data, 'objects')))
        H.eq(stored, 13, 'stored')
        H.eq(files, stored, 'no file of a refused object left')


def test_sigterm_indexes_every_answered_instance():
    """Rows still waiting for the committer when the server is stopped are
    written before it exits: no recovery is needed at the next start."""
    raw = open(os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm'), 'rb').read()
    # rows gathered for 5 s: those of the last 8 answers (40 = 32 + 8) are
    # certainly still queued when the signal comes
    s2 = H.Server('--access-log', 'false', '--index-gather-ms', '5000', keep=True)
    s2.start()
    parts = [_variant(raw, ROOT + '7.1', ROOT + '8.1', '%s9.%d' % (ROOT, i)) for i in range(40)]
    done = []
    lock = threading.Lock()

    def client(k):
        for p in parts[k::4]:
            st = s2.stow([p])[0]
            with lock:
                done.append(st)
                if len(done) == len(parts):
                    s2.proc.send_signal(signal.SIGTERM)
    ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    H.eq(s2.stop(), 0, 'stopped cleanly')
    H.eq(done, [200] * 40, 'answered')
    s3 = H.Server('--access-log', 'false', data=s2.data)
    with s3:
        H.eq(s3.get_json('/status')['instances'], 40, 'every answered instance indexed')
        H.check('recovery' not in s3.read_log(), 'nothing left to recovery')
    shutil_rm(s2.tmp)


def shutil_rm(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def test_reindex_reproduces_qido():
    s2 = H.Server()
    s2.start()
    try:
        s2.stow_files([p for p in corpus_paths() if os.path.relpath(p, H.CORPUS) not in H.UNSTORABLE])
        queries = ['/dicomweb/studies?limit=10000&includefield=all',
                   '/dicomweb/series?limit=10000', '/dicomweb/instances?limit=10000&includefield=all']
        before = [s2.get(q)[2] for q in queries]
        s2.stop()
        import subprocess
        p = subprocess.run([H.BIN, 'reindex', '--data', s2.data], capture_output=True, text=True)
        H.eq(p.returncode, 0, 'reindex exit: ' + p.stderr)
        H.check('302 indexed' in p.stderr, p.stderr)
        s2.start()
        after = [s2.get(q)[2] for q in queries]
        for q, b, a in zip(queries, before, after):
            H.eq(json.loads(a), json.loads(b), 'same answer for ' + q)
    finally:
        s2.cleanup()


def test_answers_do_not_depend_on_arrival_order():
    """Instances of one study may disagree on study-level attributes; the
    index takes them from the instance with the smallest SOP Instance UID,
    so the corpus stored forwards and backwards (one per request) gives the
    same QIDO answers."""
    paths = [p for p in corpus_paths() if os.path.relpath(p, H.CORPUS) not in H.UNSTORABLE]
    queries = ['/dicomweb/studies?limit=10000&includefield=all',
               '/dicomweb/series?limit=10000&includefield=all']
    answers = []
    for order in (paths, list(reversed(paths))):
        s2 = H.Server()
        with s2:
            for p in order:
                st, _, _ = s2.stow_files([p])
                H.check(st in (200, 202, 409), 'stored %s: %d' % (p, st))
            # only the URLs' authority differs between the two servers (not
            # digits that happen to equal the port inside a UID)
            host = ('127.0.0.1:%d' % s2.port).encode()
            answers.append([json.loads(s2.get(q)[2].replace(host, b'127.0.0.1:PORT'))
                            for q in queries])
    for q, a, b in zip(queries, answers[0], answers[1]):
        H.eq(a, b, 'same answer whatever the order: ' + q)


def test_access_log_has_no_patient_data():
    S.get('/dicomweb/studies?PatientName=Buc&PatientID=SCSFREN&PatientBirthDate=19700101')
    # the access line is written when the server has finished the request,
    # which can be just after the client has read the response
    import time
    for _ in range(50):
        log = S.read_log()
        if 'PatientBirthDate= 200' in log:
            break
        time.sleep(0.05)
    H.check('GET /dicomweb/studies?PatientName=&PatientID=&PatientBirthDate= 200' in log,
            'access line with parameter names')
    for secret in ['SCSFREN', 'Buc', '19700101', 'Rüdiger', 'Wang', 'FRUIT']:
        H.check(secret not in log, 'patient data %r in the log' % secret)
    H.check(re.search(r'ACCESS \d+ POST /dicomweb/studies 20[02] \d+ [\d.]+ms', log), 'STOW access line')


def test_import_cli_summary():
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix='yy-import-')
    p = subprocess.run([H.BIN, 'import', '--data', d, os.path.join(H.CORPUS, 'charset'),
                        os.path.join(H.CORPUS, 'edge'), os.path.join(H.CORPUS, 'README.md')],
                       capture_output=True, text=True)
    H.check('imported 17 files: 13 stored, 0 duplicate, 4 failed' in p.stderr, p.stderr)
    H.check('README.md: not a valid DICOM Part 10 object' in p.stderr, 'reason for a non-DICOM file')
    H.check('JLSL_RGB_ILV0.dcm: missing' in p.stderr, 'reason for a file without UIDs')
    p = subprocess.run([H.BIN, 'import', '--data', d, os.path.join(H.CORPUS, 'charset')],
                       capture_output=True, text=True)
    H.check('13 files: 0 stored, 13 duplicate, 0 failed' in p.stderr, p.stderr)
    import shutil
    shutil.rmtree(d)
    # parallel import (--import-jobs) stores the same as one file at a time;
    # a file given twice is one store and one duplicate, whichever comes first
    summaries, answers = [], []
    for jobs in ['1', '8']:
        d = tempfile.mkdtemp(prefix='yy-import-')
        p = subprocess.run([H.BIN, 'import', '--data', d, '--import-jobs', jobs, H.CORPUS,
                            os.path.join(H.CORPUS, 'charset')], capture_output=True, text=True)
        H.eq(p.returncode, 3, 'exit status 3: some corpus files are not storable')
        summaries.append(re.search(r'imported .*', p.stderr).group(0))
        with H.Server(data=d) as s3:
            rows = s3.get_json('/dicomweb/instances?limit=10000')
            answers.append(sorted((H.value(r, '0020000D'), H.value(r, '00080018')) for r in rows))
        shutil.rmtree(d)
    H.eq(summaries[0], summaries[1], 'same summary with 1 and 8 jobs')
    H.check(' 13 duplicate' in summaries[0], summaries[0])
    H.eq(answers[0], answers[1], 'same instances with 1 and 8 jobs')


def test_sigterm_stops_cleanly():
    s2 = H.Server()
    s2.start()
    s2.stow_files([os.path.join(H.CORPUS, 'charset/pydicom__chrX1.dcm')])
    code = s2.stop()
    H.eq(code, 0, 'exit status after SIGTERM')
    H.check('stopped cleanly' in s2.read_log(), 'clean stop logged')
    s2.cleanup()


TESTS = [test_stow_whole_corpus, test_refused_reasons_name_the_problem,
         test_qido_finds_every_study_series_instance, test_qido_by_keys, test_qido_matching_rules,
         test_name_prefix_plans_agree, test_fuzzy_names_hanzi_and_pinyin, test_includefield_limit_offset_order, test_qido_errors,
         test_qido_xml, test_restow_is_idempotent, test_conflicting_object_refused_unless_overwrite,
         test_stow_to_study_url, test_stow_error_statuses, test_disk_full_503_and_reads_keep_working,
         test_concurrent_uploads_into_one_study, test_stow_while_reading,
         test_answered_is_visible_to_the_next_request, test_series_of_another_study_refused,
         test_sigterm_indexes_every_answered_instance, test_reindex_reproduces_qido,
         test_answers_do_not_depend_on_arrival_order, test_access_log_has_no_patient_data, test_import_cli_summary, test_sigterm_stops_cleanly]

if __name__ == '__main__':
    setup()
    sys.exit(H.run(TESTS, teardown=teardown))
