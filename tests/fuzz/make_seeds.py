#!/usr/bin/env python3
"""make_seeds.py - writes the hand-made seed inputs of the fuzz targets into
tests/fuzz/seeds/<target>/ (the DICOM target also replays the whole shared
corpus). Run again after changing it; the outputs are committed."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, 'seeds', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def el(tag, vr, value):
    g, e = tag >> 16, tag & 0xFFFF
    if vr in ('OB', 'OW', 'SQ', 'UN', 'UT', 'UC', 'UR', 'OD', 'OF', 'OL', 'OV', 'SV', 'UV'):
        return struct.pack('<HH2sHI', g, e, vr.encode(), 0, len(value)) + value
    return struct.pack('<HH2sH', g, e, vr.encode(), len(value)) + value


def part10(ds, ts=b'1.2.840.10008.1.2.1\0'):
    meta = el(0x00020010, 'UI', ts)
    return b'\0' * 128 + b'DICM' + el(0x00020000, 'UL', struct.pack('<I', len(meta))) + meta + ds


def main():
    ids = (el(0x00080016, 'UI', b'1.2.840.10008.5.1.4.1.1.7\0') + el(0x00080018, 'UI', b'1.2.3.4\0') +
           el(0x0020000D, 'UI', b'1.2.3\0') + el(0x0020000E, 'UI', b'1.2.3.5\0'))
    write('dicom', 'minimal.dcm', part10(ids))
    write('dicom', 'length_past_end.dcm', part10(ids + struct.pack('<HH2sH', 0x10, 0x10, b'PN', 0xFFF0) + b'Doe'))
    write('dicom', 'odd_length.dcm', part10(ids + el(0x00100010, 'PN', b'Doe')))
    undefined_lo = struct.pack('<HH2sH', 0x10, 0x20, b'LO', 0) + struct.pack('<HH2sHI', 0x10, 0x21, b'UT', 0, 0xFFFFFFFF)
    write('dicom', 'undefined_outside_sq.dcm', part10(ids + undefined_lo))
    # deep nesting: 200 levels of undefined-length sequences
    deep = b''
    for _ in range(200):
        deep += struct.pack('<HH2sHI', 0x0040, 0xA730, b'SQ', 0, 0xFFFFFFFF) + struct.pack('<HHI', 0xFFFE, 0xE000, 0xFFFFFFFF)
    write('dicom', 'nested_200.dcm', part10(ids + deep))
    # encapsulated pixel data with a lying fragment length and 3 frames
    px = struct.pack('<HH2sHI', 0x7FE0, 0x0010, b'OB', 0, 0xFFFFFFFF)
    px += struct.pack('<HHI', 0xFFFE, 0xE000, 8) + struct.pack('<II', 0, 10)
    px += struct.pack('<HHI', 0xFFFE, 0xE000, 4) + b'\xff\xd8\xff\xd9'
    px += struct.pack('<HHI', 0xFFFE, 0xE000, 1000) + b'\xff\xd8'
    img = (el(0x00280002, 'US', struct.pack('<H', 1)) + el(0x00280008, 'IS', b'3 ') +
           el(0x00280010, 'US', struct.pack('<H', 8)) + el(0x00280011, 'US', struct.pack('<H', 8)) +
           el(0x00280100, 'US', struct.pack('<H', 8)))
    write('dicom', 'encaps_lies.dcm', part10(ids + img + px, b'1.2.840.10008.1.2.4.50\0'))
    write('dicom', 'deflated_garbage.dcm', part10(b'\x78\x9c' + os.urandom(64), b'1.2.840.10008.1.2.1.99\0'))
    write('dicom', 'implicit_no_preamble.dcm', struct.pack('<HHI', 8, 0x16, 4) + b'1.2\0' + struct.pack('<HHI', 8, 0x18, 4) + b'1.3\0')
    write('dicom', 'empty.dcm', b'')
    write('dicom', 'not_dicom.txt', 'hello world\n' * 10)

    b = 'BOUNDARY'
    write('multipart', 'two_parts', bytes([7]) + (b + '\n--' + b + '\r\nContent-Type: application/dicom\r\n\r\nAAAA\r\n--' + b +
                                                  '\r\nContent-Type: application/dicom\r\n\r\n--BOUNDAR\r\n--' + b + '--\r\n').encode())
    write('multipart', 'preamble_lf', bytes([1]) + (b + '\npreamble\n--' + b + '\nX: y\n\nbody\n--' + b + '--').encode())
    write('multipart', 'folded', bytes([30]) + (b + '\n--' + b + '\r\nContent-Type: a/b;\r\n type=x\r\n\r\n\r\n--' + b + '--').encode())
    write('multipart', 'truncated', bytes([3]) + (b + '\n--' + b + '\r\nContent-Type: application/dicom\r\n\r\nAAA').encode())

    for i, q in enumerate(['PatientName=Doe*&fuzzymatching=true&limit=10&offset=5',
                           'StudyDate=20200101-20201231&ModalitiesInStudy=CT%5CMR&includefield=all',
                           'StudyInstanceUID=1.2.3,1.2.4&orderby=-StudyDate,PatientName',
                           'includefield=00100010,PatientAge&00400275.00321060=x',
                           "PatientID=x'%20OR%20'1'='1&limit=99999999999",
                           'StudyTime=-1030&SeriesNumber=3&Rows=512&SOPClassUID=1.2',
                           'PatientName=%E7%8E%8B%5E%E5%B0%8F%E4%B8%9C&limit=&offset=-1']):
        write('qido', 'q%d' % i, q)
    for i, a in enumerate(['multipart/related; type="application/dicom"; transfer-syntax=*',
                           'multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.50;q=0.9, */*;q=0.1',
                           'application/dicom+json, multipart/related; type="application/dicom+xml"; boundary="a,b"',
                           'text/html;q=0, image/jpeg;q=1.000',
                           'multipart/related; type="a\\"b"; q=0.5; x=y']):
        write('mime', 'a%d' % i, a)
    for i, w in enumerate(['requestType=WADO&studyUID=1.2&seriesUID=1.3&objectUID=1.4&contentType=application/dicom',
                           'requestType=WADO&studyUID=1.2&seriesUID=1.3&objectUID=1.4&contentType=image/jpeg,image/png&frameNumber=2&rows=256&windowCenter=40&windowWidth=400',
                           'requestType=WADO&studyUID=1.2&seriesUID=1.3&objectUID=1.4&transferSyntax=1.2.840.10008.1.2.1&imageQuality=101']):
        write('wado_uri', 'w%d' % i, w)
    write('charset', 'gb18030', b'GB18030\n' + 'Wang^XiaoDong=王^小东'.encode('gb18030'))
    write('charset', 'ir87', b'\\ISO 2022 IR 87\nYamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B')
    write('charset', 'ir149', b'\\ISO 2022 IR 149\nHong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7')
    write('charset', 'latin1', b'ISO_IR 100\nBuc^J\xe9r\xf4me')
    write('charset', 'utf8_bad', b'ISO_IR 192\nabc\xff\xfe\xc3')


TS = ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.5',
      '1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70',
      '1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91',
      '1.2.840.10008.1.2.4.201', '1.2.840.10008.1.2.4.203', '1.2.840.10008.1.2.4.111', '1.2.840.10008.1.2.8.1']
PI = ['MONOCHROME2', 'MONOCHROME1', 'RGB', 'YBR_FULL', 'YBR_FULL_422', 'PALETTE COLOR', 'YBR_ICT', 'YBR_RCT']


def codec_seeds():
    """One small frame per syntax from the corpus, with the fuzz header
    (see fuzz_codec.c). Needs build/yy-dump."""
    import subprocess
    corpus = os.environ.get('YY_CORPUS', os.path.join(HERE, '..', '..', '..', 'shared', 'corpus'))
    dump = os.path.join(HERE, '..', '..', 'build', 'yy-dump')
    done = set()
    for line in open(os.path.join(corpus, 'MANIFEST.tsv')):
        p = line.rstrip('\n').split('\t')
        if p[0] == 'path' or p[4] not in TS or p[4] in done or not p[7] or p[0].startswith('edge/'):
            continue
        rows, cols, spp = int(p[7]), int(p[8]), 3 if p[6] in ('RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_ICT', 'YBR_RCT') else 1
        ba, bs, pr = int(p[10]), int(p[11]), int(p[12])
        r = subprocess.run([dump, 'frame', os.path.join(corpus, p[0]), '0'], capture_output=True)
        if r.returncode != 0 or len(r.stdout) > 65536 or ba not in (1, 8, 16, 32):
            continue
        hdr = bytes([TS.index(p[4]), rows & 255, rows >> 8, cols & 255, cols >> 8, spp,
                     [1, 8, 16, 32].index(ba), bs, pr, 0, PI.index(p[6]) if p[6] in PI else 0,
                     1 if p[4] == '1.2.840.10008.1.2.2' else 0, 0, 0, 0, 0])
        write('codec', p[4] + '.bin', hdr + r.stdout)
        done.add(p[4])


if __name__ == '__main__':
    main()
    codec_seeds()
