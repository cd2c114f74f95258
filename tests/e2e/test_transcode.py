#!/usr/bin/env python3
"""Transcoding over WADO-RS (issue: codecs): instances and frames in a
requested transfer syntax. Results are valid Part 10 (dcmdump and gdcminfo
read them), every attribute except the pixel encoding is preserved, lossless
round trips are pixel-equal (decoded by GDCM's gdcmconv, an independent
decoder), lossy ones record LossyImageCompression, its ratio and method.
Also: compressed frames decoded to native pixels equal REFERENCE.tsv."""
import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(__file__))
import harness as H  # noqa: E402

warnings.filterwarnings('ignore')
import numpy as np  # noqa: E402
import pydicom  # noqa: E402

S = None
URL = {}
EXPLICIT = '1.2.840.10008.1.2.1'
TARGETS = {'1.2.840.10008.1.2.1': False, '1.2.840.10008.1.2.4.50': True,
           '1.2.840.10008.1.2.4.90': False, '1.2.840.10008.1.2.4.201': False,
           '1.2.840.10008.1.2.4.80': False}
SOURCES = [
    'series/ct_ge_hispeed_gantry_tilt_28/*5',        # 16-bit signed CT
    'series/mr_ge_signa_3d_sag_irspgr_196/*100',     # 16-bit MR
    'ts/explicit_le/orthanc__TS-1.2.840.10008.1.2.1_US-RGB-8-esopecho.dcm',  # RGB 8-bit
    'ts/implicit_le/fo-dicom__CT-MONO2-16-ankle.dcm',
    'ts/explicit_be/pydicom__ExplVR_BigEnd.dcm',
    'ts/rle/orthanc__TS-1.2.840.10008.1.2.5_NM1_RLE.dcm',
    'ts/jpegls_lossless/orthanc__TS-1.2.840.10008.1.2.4.80_NM1_JLSL.dcm',
    'ts/j2k_lossless/pydicom-data__MR2_J2KR.dcm',
]
PIXEL_ATTRS = {'7FE00010', '00280004', '00280006', '00282110', '00282112', '00282114', '00280101',
               '00280102', '00280100', '00280103'}


def resolve(pattern):
    if '*' not in pattern:
        return pattern
    d, n = pattern.split('/*')
    return d + '/' + sorted(os.listdir(os.path.join(H.CORPUS, d)))[int(n)]


def setup():
    global S
    S = H.Server().start()
    rels = [resolve(p) for p in SOURCES]
    for line in open(os.path.join(H.CORPUS, 'MANIFEST.tsv')):
        rel = line.split('\t', 1)[0]
        if rel != 'path' and rel not in H.UNSTORABLE and rel.startswith('ts/'):
            rels.append(rel)
    rels = sorted(set(rels))
    for i in range(0, len(rels), 50):
        H.eq(S.stow_files([os.path.join(H.CORPUS, r) for r in rels[i:i + 50]])[0], 200, 'stow')
    for rel in rels:
        ds = pydicom.dcmread(os.path.join(H.CORPUS, rel), stop_before_pixels=True)
        URL[rel] = '/dicomweb/studies/%s/series/%s/instances/%s' % (
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def teardown(_):
    if S:
        S.cleanup()


def parts_of(h, body):
    b = re.search(r'boundary="?([^";\s]+)', h['content-type']).group(1).encode()
    out = []
    for c in body.split(b'--' + b)[1:-1]:
        head, _, data = c[2:-2].partition(b'\r\n\r\n')
        out.append((head.decode(), data))
    return out


def gdcm_raw(data):
    """Pixels decoded by GDCM (gdcmconv --raw), read back with pydicom."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, 'in.dcm'), os.path.join(d, 'out.dcm')
        open(src, 'wb').write(data)
        p = subprocess.run(['gdcmconv', '--raw', src, dst], capture_output=True, text=True)
        H.eq(p.returncode, 0, 'gdcmconv --raw: ' + p.stderr[-300:])
        return pydicom.dcmread(dst)


HTJ2K = '1.2.840.10008.1.2.4.201'


def htj2k_raw(ds):
    """HTJ2K frames decoded by OpenJPEG's opj_decompress (independent of
    our server's code path), as a dataset with native pixel data."""
    from pydicom.encaps import generate_pixel_data_frame
    nf = int(ds.get('NumberOfFrames', 1) or 1)
    frames = []
    with tempfile.TemporaryDirectory() as d:
        for i, fr in enumerate(generate_pixel_data_frame(ds.PixelData, nf)):
            src, dst = os.path.join(d, 'f%d.j2k' % i), os.path.join(d, 'f%d.rawl' % i)
            open(src, 'wb').write(fr)
            p = subprocess.run(['opj_decompress', '-i', src, '-o', dst], capture_output=True, text=True)
            H.eq(p.returncode, 0, 'opj_decompress: ' + p.stderr[-300:])
            frames.append(open(dst, 'rb').read())
    out = pydicom.Dataset()
    out.file_meta = pydicom.dataset.FileMetaDataset()
    out.file_meta.TransferSyntaxUID = EXPLICIT
    for k in ('Rows', 'Columns', 'SamplesPerPixel', 'BitsAllocated', 'BitsStored', 'HighBit',
              'PixelRepresentation', 'PhotometricInterpretation', 'NumberOfFrames'):
        if k in ds:
            setattr(out, k, ds.get(k))
    spp = int(ds.SamplesPerPixel)
    raw = b''
    for fr in frames:
        # opj_decompress .rawl: components planar, little endian for > 8 bits
        a = np.frombuffer(fr, dtype='<u2' if ds.BitsAllocated > 8 else 'u1')
        a = a.reshape(spp, -1).T if spp > 1 else a
        raw += a.astype('<u2' if ds.BitsAllocated > 8 else 'u1').tobytes()
    out.PixelData = raw
    if spp > 1:
        out.PlanarConfiguration = 0
        out.PhotometricInterpretation = 'RGB'
    out.is_little_endian = True
    out.is_implicit_VR = False
    return out


def attrs(ds):
    d = ds.to_json_dict(10**9, None)
    return {k: v for k, v in d.items() if k not in PIXEL_ATTRS and not k.endswith('0000')}


def rgb_of(ds):
    a = ds.pixel_array
    pi = ds.PhotometricInterpretation
    if ds.get('SamplesPerPixel', 1) == 3 and pi.startswith('YBR_FULL'):
        from pydicom.pixel_data_handlers.util import convert_color_space
        a = convert_color_space(a, pi if pi != 'YBR_FULL_422' else 'YBR_FULL', 'RGB')
    return a


def test_instances_in_each_target():
    n = 0
    for pat in SOURCES:
        rel = resolve(pat)
        orig = pydicom.dcmread(os.path.join(H.CORPUS, rel))
        for ts, lossy in TARGETS.items():
            acc = 'multipart/related; type="application/dicom"; transfer-syntax=' + ts
            st, h, body = S.get(URL[rel], headers={'Accept': acc})
            if st == 406:
                # only when the image cannot be expressed in the target
                H.check(ts == '1.2.840.10008.1.2.4.50' and orig.BitsAllocated > 8,
                        '%s -> %s refused' % (rel, ts))
                continue
            H.eq(st, 200, '%s -> %s' % (rel, ts))
            (head, data), = parts_of(h, body)
            H.check('transfer-syntax=' + ts in head, head)
            with tempfile.NamedTemporaryFile(suffix='.dcm') as f:
                f.write(data)
                f.flush()
                tools = [['dcmdump', '-q', f.name], ['gdcminfo', f.name]]
                if ts == HTJ2K:
                    tools = tools[:1]  # Debian's GDCM 3.0.21 predates HTJ2K (added in 3.0.22)
                for tool in tools:
                    p = subprocess.run(tool, capture_output=True, text=True)
                    H.eq(p.returncode, 0, '%s reads %s -> %s: %s' % (tool[0], rel, ts, p.stderr[-200:]))
            out = pydicom.dcmread(io.BytesIO(data))
            H.eq(str(out.file_meta.TransferSyntaxUID), ts, 'declared syntax')
            H.eq(attrs(out), attrs(orig), 'attributes preserved %s -> %s' % (rel, ts))
            dec = out if ts == EXPLICIT else htj2k_raw(out) if ts == HTJ2K else gdcm_raw(data)
            ref = orig
            if orig.file_meta.TransferSyntaxUID.is_compressed:
                ref = gdcm_raw(open(os.path.join(H.CORPUS, rel), 'rb').read())
            a, b = rgb_of(dec), rgb_of(ref)
            H.eq(a.shape, b.shape, 'shape %s -> %s' % (rel, ts))
            if lossy:
                H.eq(out.LossyImageCompression, '01', 'lossy flag')
                H.check(float(out.LossyImageCompressionRatio) > 1, 'ratio')
                H.eq(out.LossyImageCompressionMethod, 'ISO_10918_1', 'method')
                mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
                psnr = 10 * np.log10(255.0 ** 2 / mse) if mse else 99
                H.check(psnr > 30, '%s -> JPEG PSNR %.1f' % (rel, psnr))
            else:
                bs = int(orig.BitsStored)
                mask = (1 << bs) - 1
                if orig.PixelRepresentation == 1:
                    eq = ((a.astype(np.int64) & mask) == (b.astype(np.int64) & mask)).all()
                else:
                    eq = (a.astype(np.int64) == b.astype(np.int64)).all()
                H.check(eq, 'pixel-equal %s -> %s' % (rel, ts))
                if 'LossyImageCompression' in orig:
                    H.eq(out.LossyImageCompression, orig.LossyImageCompression, 'history kept')
            n += 1
    print('  %d transcodings checked' % n)


def test_frames_in_a_target_syntax():
    rel = resolve('series/ct_ge_hispeed_gantry_tilt_28/*5')
    for mt, ts, magic in [('image/jls', '1.2.840.10008.1.2.4.80', b'\xff\xd8\xff\xf7'),
                          ('image/jp2', '1.2.840.10008.1.2.4.90', b'\xff\x4f\xff\x51'),
                          ('image/jphc', '1.2.840.10008.1.2.4.201', b'\xff\x4f\xff\x51'),
                          ('image/dicom-rle', '1.2.840.10008.1.2.5', None)]:
        st, h, body = S.get(URL[rel] + '/frames/1', headers={'Accept': 'multipart/related; type="%s"' % mt})
        H.eq(st, 200, mt)
        (head, data), = parts_of(h, body)
        H.check(head.startswith('Content-Type: %s; transfer-syntax=%s' % (mt, ts)), head)
        if magic:
            H.check(data.startswith(magic), '%s codestream starts with %r' % (mt, data[:4]))
        # the same codestream as in the transcoded instance
        st, h, body = S.get(URL[rel], headers={'Accept': 'multipart/related; type="application/dicom"; transfer-syntax=' + ts})
        (_, inst), = parts_of(h, body)
        from pydicom.encaps import generate_pixel_data_frame
        ds = pydicom.dcmread(io.BytesIO(inst))
        frame = next(generate_pixel_data_frame(ds.PixelData, 1))
        H.eq(frame.rstrip(b'\0'), data.rstrip(b'\0'), 'frame equals the instance frame (%s)' % mt)
    st, _, _ = S.get(URL[rel] + '/frames/1', headers={'Accept': 'multipart/related; type="image/jpeg"'})
    H.eq(st, 406, '16-bit CT cannot be JPEG baseline')


def test_decoded_frames_match_reference():
    ref = {}
    for line in open(os.path.join(H.CORPUS, 'REFERENCE.tsv')):
        p = line.rstrip('\n').split('\t')
        if p[0] != 'path':
            ref[(p[0], int(p[1]))] = p[2]
    lossless = {'1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70', '1.2.840.10008.1.2.4.80',
                '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.5', '1.2.840.10008.1.2.4.201'}
    n = 0
    for (rel, idx), sha in sorted(ref.items()):
        if rel not in URL:
            continue
        ts = str(pydicom.dcmread(os.path.join(H.CORPUS, rel), stop_before_pixels=True).file_meta.TransferSyntaxUID)
        if ts not in lossless or idx > 3:
            continue
        st, h, body = S.get(URL[rel] + '/frames/%d' % (idx + 1),
                            headers={'Accept': 'multipart/related; type="application/octet-stream"'})
        H.eq(st, 200, rel)
        (head, data), = parts_of(h, body)
        H.check('transfer-syntax=' + EXPLICIT in head, head)
        H.eq(hashlib.sha256(data).hexdigest(), sha, 'decoded frame %d of %s' % (idx + 1, rel))
        n += 1
    print('  %d decoded frames equal REFERENCE.tsv' % n)
    H.check(n >= 10, 'enough frames')


TESTS = [test_instances_in_each_target, test_frames_in_a_target_syntax,
         test_decoded_frames_match_reference]

if __name__ == '__main__':
    setup()
    sys.exit(H.run(TESTS, teardown=teardown))
