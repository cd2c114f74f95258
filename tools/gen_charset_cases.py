#!/usr/bin/python3
"""Generate tests/data/charset_cases.tsv: expected UTF-8 for charset.c.

Usage (from the source root, Debian's python3-pydicom installed):
    /usr/bin/python3 tools/gen_charset_cases.py ../shared/corpus/charset \\
        tests/data/charset_cases.tsv

For every file in the corpus charset directory and every element with VR PN,
SH, LO, ST, LT, UC or UT (also inside sequences, with the Specific Character
Set inherited by items that have none) one line is written:

    name  charset_hex  vr  raw_hex  expected_hex  source

charset_hex is the raw value of (0008,0005) as stored in the file, raw_hex the
undecoded element value with its padding, expected_hex pydicom's decoding as
UTF-8. Multiple values are joined with '\\'; a PN value is its groups decoded
with pydicom's decode_bytes() and joined with '=' exactly as in the original
string (PersonName would drop trailing empty groups). pydicom strips trailing
spaces and NULs, so the test strips them from raw_hex before converting.

Hand-written cases follow. Where pydicom's answer is not what PS3.5 asks for,
the line carries our expected value and `source` records pydicom's answer.
"""
import os
import sys
import warnings

import pydicom
from pydicom import config
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataelem import RawDataElement
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.tag import Tag
from pydicom.uid import UID
from pydicom.valuerep import PN_DELIMS
from pydicom.values import convert_value

TEXT_VRS = ('PN', 'SH', 'LO', 'ST', 'LT', 'UC', 'UT')
CS_TAG = 0x00080005
# A tag per VR for hand-written cases (any tag works with an explicit VR).
TAG_FOR_VR = {'PN': 0x00100010, 'SH': 0x00200010, 'LO': 0x00100020, 'ST': 0x00080081,
              'LT': 0x001021B0, 'UC': 0x00080119, 'UT': 0x0040A160}


def encodings_for(cs_raw):
    """Python encodings for a raw (0008,0005) value, as pydicom reads it."""
    if not cs_raw:
        return convert_encodings(None)
    raw = RawDataElement(Tag(CS_TAG), 'CS', len(cs_raw), cs_raw, 0, False, True)
    terms = convert_value('CS', raw)
    if isinstance(terms, str):
        terms = [terms]
    return convert_encodings(list(terms))


def pydicom_decode(cs_raw, vr, value):
    """pydicom's decoding of one element value, as one str."""
    encs = encodings_for(cs_raw)
    if vr == 'PN':
        vals = value.rstrip(b'\x00 ').split(b'\\')  # as values.convert_PN
        return '\\'.join('='.join(decode_bytes(g, encs, PN_DELIMS) for g in v.split(b'='))
                         for v in vals)
    raw = RawDataElement(Tag(TAG_FOR_VR[vr]), vr, len(value), value, 0, False, True)
    out = convert_value(vr, raw, encs)
    return out if isinstance(out, str) else '\\'.join(out)


def file_charset(path):
    """The undecoded (0008,0005) of a Part 10 file's top-level dataset."""
    with open(path, 'rb') as fp:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
        ts = UID(meta.TransferSyntaxUID)
        for el in data_element_generator(fp, ts.is_implicit_VR, ts.is_little_endian,
                                         stop_when=lambda tag, vr, length: tag > CS_TAG):
            if el.tag == CS_TAG:
                return bytes(el.value or b'')
    return b''


def walk(ds, cs_raw, name, rows, problems, top_cs=None):
    """Appends a row per text element of ds (raw values read before decoding)."""
    tags = list(ds.keys())
    raws = {t: ds.get_item(t) for t in tags}
    if CS_TAG in raws:
        cs_el = raws[CS_TAG]
        if isinstance(cs_el, RawDataElement):
            cs_raw = bytes(cs_el.value or b'')
        else:
            # dcmread decodes (0008,0005) eagerly; main() passes the file's
            # bytes for the top level. Inside items, rebuild them.
            v = cs_el.value
            v = [v] if isinstance(v, str) else list(v)
            cs_raw = '\\'.join(v).encode('ascii')
            cs_raw += b' ' * (len(cs_raw) & 1)
            if top_cs is not None:
                cs_raw = top_cs
    for t in tags:
        raw = raws[t]
        vr = raw.VR if raw.VR else ds[t].VR
        if vr == 'SQ':
            for item in ds[t].value:
                walk(item, cs_raw, name, rows, problems)
            continue
        if vr not in TEXT_VRS or not isinstance(raw.value, bytes):
            continue
        value = raw.value
        expected = pydicom_decode(cs_raw, vr, value)
        # Cross-check against the value pydicom's Dataset produced.
        got = ds[t].value
        if vr == 'PN':
            if isinstance(got, pydicom.valuerep.PersonName):
                got = str(got)
            else:
                got = '\\'.join(str(v) for v in got)
            if got != expected and expected.rstrip('=') != got:
                problems.append(f'{name} {Tag(t)}: dataset {got!r} != {expected!r}')
        else:
            got = got if isinstance(got, str) else '\\'.join(got)
            if got != expected:
                problems.append(f'{name} {Tag(t)}: dataset {got!r} != {expected!r}')
        rows.append((name, cs_raw, vr, value, expected, 'pydicom'))


FALLBACK = ('one U+FFFD for the incomplete character; on a decode error pydicom re-decodes '
            'the fragment, escape included, as latin-1')

# (name, charset, VR, raw value, our expected or None for pydicom's, reason)
HAND = [
    ('hand:gbk', b'GBK', 'LO', '中文丂亐'.encode('gbk'), None, ''),
    ('hand:gb18030_4byte', b'GB18030', 'LO',
     'A\u0080\u2022\U00020000z'.encode('gb18030'), None, ''),
    ('hand:gb18030_pn', b'GB18030', 'PN', 'Wang^XiaoDong=王^小东'.encode('gb18030'), None, ''),
    ('hand:gb18030_truncated', b'GB18030', 'LO', b'A\x81\x30', None, ''),
    ('hand:gbk_truncated', b'GBK', 'LO', b'\xd6\xd0\xce', None, ''),
    ('hand:utf8_invalid', b'ISO_IR 192', 'LO',
     b'ok\xc3(\xed\xa0\x80x\xc0\xafy\xff\xf0\x9f\x98', None, ''),
    ('hand:utf8_valid_4byte', b'ISO_IR 192', 'UT', 'a\U0001F600b\u00e9'.encode('utf-8'), None,
     ''),
    ('hand:ir87_truncated', b'\\ISO 2022 IR 87', 'LO', b'\x1b$B;3E', '\u5c71\ufffd', FALLBACK),
    ('hand:ir149_truncated', b'\\ISO 2022 IR 149', 'LO', b'A\x1b$)C\xb1', 'A\ufffd', FALLBACK),
    ('hand:ir58_pn', b'\\ISO 2022 IR 58', 'PN',
     b'Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=',
     'Zhang^XiaoDong=\u5f20^\u5c0f\u4e1c=',
     'PS3.5 K.2 example; pydicom 2.3 lets the gb2312 codec see ESC $ ) A, which it keeps as text'),
    ('hand:ir159', b'\\ISO 2022 IR 87\\ISO 2022 IR 159', 'LO',
     b'\x1b$(D\x30\x21\x1b$B;3\x1b(Bx', None, ''),
    ('hand:ir13_single', b'ISO_IR 13', 'PN', b'\xd4\xcf\xc0\xde^\xc0\xdb\xb3', None, ''),
    ('hand:ir13_katakana_escape', b'\\ISO 2022 IR 13', 'LO', b'a\x1b)I\xb1\xb2\x1b(Jb', None,
     ''),
    ('hand:latin_greek_escapes', b'ISO 2022 IR 100\\ISO 2022 IR 126', 'LO',
     b'caf\xe9 \x1b-F\xe1\xe2\xe3\x1b-A\xe9', None, ''),
    ('hand:pn_caret_resets', b'ISO 2022 IR 100\\ISO 2022 IR 126', 'PN',
     b'\x1b-F\xe1^\xe1', None, ''),
    ('hand:crlf_resets', b'\\ISO 2022 IR 149', 'LT', b'\x1b$)C\xb1\xe8\r\n\xb1\xe8', None, ''),
    ('hand:lt_backslash_is_text', b'\\ISO 2022 IR 149', 'LT', b'\x1b$)C\xb1\xe8\\\xb1\xe8',
     None, ''),
    ('hand:lo_backslash_resets', b'\\ISO 2022 IR 149', 'LO', b'\x1b$)C\xb1\xe8\\\xb1\xe8',
     None, ''),
    ('hand:arabic_invalid', b'ISO_IR 127', 'LO', b'\xa1\xc7', None, ''),
    ('hand:thai', b'ISO_IR 166', 'LO', 'สวัสดี'.encode('tis_620'), None, ''),
    ('hand:unknown_term', b'ISO_IR 999', 'LO', b'caf\xe9', None, ''),
    ('hand:default_high_bytes', b'', 'LO', b'caf\xe9', None, ''),
    ('hand:lone_esc', b'\\ISO 2022 IR 87', 'LO', b'abc\x1b', 'abc\ufffd',
     'PS3.5: an incomplete escape is not text; pydicom keeps U+001B'),
    ('hand:unknown_escape', b'\\ISO 2022 IR 87', 'LO', b'a\x1b(Zb', 'a\ufffdb',
     'unknown escape is one U+FFFD; pydicom outputs the escape bytes as text'),
    ('hand:ir87_equals_in_kanji', b'\\ISO 2022 IR 87', 'PN', b'\x1b$BI=\x1b(B^Taro', '表^Taro',
     '0x49 0x3D is one JIS X 0208 kanji; pydicom splits PN groups at the 0x3D byte'),
    ('hand:latin9', b'ISO_IR 203', 'LO', b'\xa4 \xbd', '\u20ac \u0153',
     'pydicom 2.3 does not know ISO_IR 203 and reads latin-1'),
]


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: gen_charset_cases.py CORPUS_CHARSET_DIR OUT.tsv')
    warnings.simplefilter('ignore')
    config.settings.reading_validation_mode = config.WARN
    rows, problems = [], []
    names = sorted(f for f in os.listdir(sys.argv[1]) if not f.startswith('.'))
    for f in names:
        ds = pydicom.dcmread(os.path.join(sys.argv[1], f))
        path = os.path.join(sys.argv[1], f)
        walk(ds, b'', f, rows, problems, file_charset(path))
    for name, cs_raw, vr, value, ours, reason in HAND:
        theirs = pydicom_decode(cs_raw, vr, value)
        if ours is None:
            rows.append((name, cs_raw, vr, value, theirs, 'pydicom'))
        else:
            src = f'ours ({reason}); pydicom: {theirs.encode("utf-8").hex()}'
            rows.append((name, cs_raw, vr, value, ours, src))
    if problems:
        sys.exit('gen_charset_cases: ' + '\n'.join(problems))
    with open(sys.argv[2], 'w', encoding='utf-8') as out:
        out.write('# Generated by: /usr/bin/python3 tools/gen_charset_cases.py '
                  '../shared/corpus/charset tests/data/charset_cases.tsv\n')
        out.write(f'# pydicom {pydicom.__version__}. Columns: name, (0008,0005) hex, VR, '
                  'raw value hex, expected UTF-8 hex, source\n')
        for name, cs_raw, vr, value, exp, src in rows:
            out.write('\t'.join([name, cs_raw.hex(), vr, value.hex(),
                                 exp.encode('utf-8').hex(), src]) + '\n')


if __name__ == '__main__':
    main()
