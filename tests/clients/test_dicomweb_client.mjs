// test_dicomweb_client.mjs - the npm dicomweb-client library (the version
// OHIF v3 bundles) against a fresh, empty yingyun: STOW-RS, QIDO-RS and every
// WADO-RS call OHIF makes, checked against the corpus files themselves (parsed
// independently with cornerstone's dicom-parser) and REFERENCE.tsv.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

import { CORPUS, assert, assertEq, jv, referenceFrameSha, sha256, toBuffer } from './lib.mjs';

const require = createRequire(import.meta.url);
// dicomweb-client uses the browser's XMLHttpRequest; Node has none
globalThis.XMLHttpRequest = require('xhr2');
const dicomweb = require('dicomweb-client');
const dicomParser = require('dicom-parser');

const MR_DIR = 'series/mr_ge_signa_3d_sag_irspgr_196';
const MR_FILES = ['00001', '00002', '00003', '00098', '00099', '00196'].map((n) => `${MR_DIR}/${n}.dcm`);
const JPEG_MULTI = 'ts/jpeg_baseline/orthanc__Issue16.dcm'; // US cine, 34 frames, YBR_FULL_422
const JPEG_SINGLE = 'ts/jpeg_baseline/pylibjpeg-data__JPEGBaseline_1s_1f_u_08_08.dcm'; // 100x100 MONOCHROME2
const PDF = 'nonimage/orthanc__sample-pdf.dcm';
const ECG = 'nonimage/pydicom__waveform_ecg.dcm'; // WaveformData inside a sequence
const OVERLAY_MR = 'ts/explicit_le/pydicom-data__MR-SIEMENS-DICOM-WithOverlays.dcm'; // OverlayData
const RLE = 'ts/rle/fo-dicom__D_CLUNIE_CT1_RLE_FRAGS.dcm'; // lossless, CT 512x512 16-bit
const OTHER_FILES = [JPEG_MULTI, JPEG_SINGLE, RLE, PDF, ECG, OVERLAY_MR];

const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

/** A corpus file: bytes, dicom-parser dataset, UIDs. */
function load(rel) {
    const buf = fs.readFileSync(path.join(CORPUS, rel));
    const ds = dicomParser.parseDicom(new Uint8Array(buf.buffer, buf.byteOffset, buf.length));
    return {
        rel, buf, ds,
        study: ds.string('x0020000d'), series: ds.string('x0020000e'), sop: ds.string('x00080018'),
        sopClass: ds.string('x00080016'), ts: ds.string('x00020010'),
        ids() { return { studyInstanceUID: this.study, seriesInstanceUID: this.series, sopInstanceUID: this.sop }; },
        arrayBuffer() { return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length); },
    };
}

/** Bytes of frame `index` (0-based) of an encapsulated Pixel Data element. */
function encapsulatedFrame(f, index) {
    const el = f.ds.elements.x7fe00010;
    const frames = f.ds.intString('x00280008') || 1;
    if (frames === 1)
        return toBuffer(dicomParser.readEncapsulatedPixelDataFromFragments(f.ds, el, 0, el.fragments.length));
    const bot = el.basicOffsetTable.length ? el.basicOffsetTable
                                           : dicomParser.createJPEGBasicOffsetTable(f.ds, el);
    return toBuffer(dicomParser.readEncapsulatedImageFrame(f.ds, el, index, bot));
}

/** Value bytes of an element found by a DICOM JSON path ['54000100', 0, '54001010']. */
function elementBytes(f, jsonPath) {
    let ds = f.ds;
    let el;
    for (let i = 0; i < jsonPath.length; i++) {
        el = ds.elements['x' + jsonPath[i].toLowerCase()];
        assert(el, `${f.rel}: no element ${jsonPath.slice(0, i + 1).join('/')} in the file`);
        if (i + 1 < jsonPath.length) {
            const item = el.items && el.items[jsonPath[i + 1]];
            assert(item, `${f.rel}: no item ${jsonPath.slice(0, i + 2).join('/')} in the file`);
            ds = item.dataSet;
            i++;
        }
    }
    return Buffer.from(f.buf.buffer, f.buf.byteOffset + el.dataOffset, el.length);
}

/** Every BulkDataURI of a DICOM JSON object as [jsonPath, uri]. */
function bulkDataUris(obj, prefix = []) {
    const out = [];
    for (const [tag, attr] of Object.entries(obj)) {
        if (attr.BulkDataURI)
            out.push([[...prefix, tag], attr.BulkDataURI]);
        if (attr.vr === 'SQ')
            (attr.Value || []).forEach((item, i) => out.push(...bulkDataUris(item, [...prefix, tag, i])));
    }
    return out;
}

function httpError(e) {
    if (!e || !e.request)
        return e;
    const r = e.request;
    let body = '';
    try { body = toBuffer(r.response).toString('utf8').slice(0, 300); } catch { body = String(r.response).slice(0, 300); }
    return new Error(`${e.message}: HTTP ${e.status} for ${r._method || 'GET'} ${r.responseURL || ''}`
                     + ` (Accept: ${r._headers && r._headers.Accept}); Warning: ${r.getResponseHeader('warning')}; body: ${body}`);
}

async function call(p) {
    try {
        return await p;
    } catch (e) {
        throw httpError(e);
    }
}

export async function run(checks, server) {
    const client = new dicomweb.api.DICOMwebClient({ url: server.root, verbose: false });
    const mr = MR_FILES.map(load);
    const others = Object.fromEntries(OTHER_FILES.map((r) => [r, load(r)]));
    const all = [...mr, ...Object.values(others)];
    const mrStudy = mr[0].study, mrSeries = mr[0].series;
    const studies = new Map();
    for (const f of all)
        studies.set(f.study, (studies.get(f.study) || 0) + 1);

    const check = (name, fn) => checks.check(name, fn);

    // ---- STOW-RS
    await check('storeInstances: 6 MR instances to /studies/{study}', async () => {
        const text = await call(client.storeInstances({ datasets: mr.map((f) => f.arrayBuffer()), studyInstanceUID: mrStudy }));
        const resp = JSON.parse(text);
        assert(!resp['00081198'], 'FailedSOPSequence present: ' + JSON.stringify(resp['00081198']));
        const refs = resp['00081199'].Value;
        assertEq(refs.map((r) => jv(r, '00081155')).sort(), mr.map((f) => f.sop).sort(), 'ReferencedSOPInstanceUIDs');
        assertEq(refs.map((r) => jv(r, '00081150')), mr.map(() => '1.2.840.10008.5.1.4.1.1.4'), 'ReferencedSOPClassUIDs');
        assertEq(jv(resp, '00081190'), `${server.root}/studies/${mrStudy}`, 'RetrieveURL');
    });
    await check('storeInstances: JPEG (multi- and single-frame), RLE, PDF, ECG, MR with overlays to /studies', async () => {
        const fs6 = Object.values(others);
        const resp = JSON.parse(await call(client.storeInstances({ datasets: fs6.map((f) => f.arrayBuffer()) })));
        assert(!resp['00081198'], 'FailedSOPSequence present: ' + JSON.stringify(resp['00081198']));
        assertEq(resp['00081199'].Value.map((r) => jv(r, '00081155')).sort(), fs6.map((f) => f.sop).sort(),
                 'ReferencedSOPInstanceUIDs');
    });

    // ---- QIDO-RS
    await check('searchForStudies: every stored study with its instance count', async () => {
        const res = await call(client.searchForStudies());
        const got = res.map((s) => [jv(s, '0020000D'), jv(s, '00201208')]).sort();
        assertEq(got, [...studies].sort(), '(StudyInstanceUID, NumberOfStudyRelatedInstances)');
    });
    await check('searchForStudies: PatientID=FRUIT, PatientName=FRU* and fuzzy "fru"', async () => {
        for (const qp of [{ PatientID: 'FRUIT' }, { PatientName: 'FRU*' }, { PatientName: 'fru', fuzzymatching: 'true' }]) {
            const res = await call(client.searchForStudies({ queryParams: qp }));
            assertEq(res.map((s) => jv(s, '0020000D')), [mrStudy], `studies for ${JSON.stringify(qp)}`);
            assertEq(jv(res[0], '00100020'), 'FRUIT', 'PatientID');
            assertEq(jv(res[0], '00080061'), 'MR', 'ModalitiesInStudy');
            assertEq(jv(res[0], '00201206'), 1, 'NumberOfStudyRelatedSeries');
        }
    });
    await check('searchForStudies: ModalitiesInStudy=US + includefield, limit/offset paging', async () => {
        const us = await call(client.searchForStudies({ queryParams: { ModalitiesInStudy: 'US', includefield: '00081030' } }));
        assertEq(us.map((s) => jv(s, '0020000D')), [others[JPEG_MULTI].study], 'US studies');
        assert('00081030' in us[0], 'StudyDescription (includefield) missing');
        const pages = [];
        for (let off = 0; off < studies.size; off += 2)
            pages.push(...await call(client.searchForStudies({ queryParams: { limit: 2, offset: off } })));
        assertEq(pages.map((s) => jv(s, '0020000D')).sort(), [...studies.keys()].sort(), 'studies over pages of 2');
    });
    await check('searchForSeries: the MR study has 1 MR series of 6; Modality=ECG finds the ECG', async () => {
        const res = await call(client.searchForSeries({ studyInstanceUID: mrStudy }));
        assertEq(res.map((s) => [jv(s, '0020000E'), jv(s, '00080060'), jv(s, '00201209')]), [[mrSeries, 'MR', 6]],
                 'series (UID, Modality, NumberOfSeriesRelatedInstances)');
        const ecg = await call(client.searchForSeries({ queryParams: { Modality: 'ECG' } }));
        assertEq(ecg.map((s) => jv(s, '0020000E')), [others[ECG].series], 'ECG series');
    });
    await check('searchForInstances: 6 MR instances in InstanceNumber order; InstanceNumber and SOPClassUID matching', async () => {
        const res = await call(client.searchForInstances({ studyInstanceUID: mrStudy, seriesInstanceUID: mrSeries }));
        const want = mr.map((f) => [f.ds.intString('x00200013'), f.sop]).sort((a, b) => a[0] - b[0]);
        assertEq(res.map((i) => [jv(i, '00200013'), jv(i, '00080018')]), want, '(InstanceNumber, SOP UID)');
        for (const i of res) {
            assertEq([jv(i, '00280010'), jv(i, '00280011'), jv(i, '00280100')], [256, 256, 16], 'Rows, Columns, BitsAllocated');
        }
        const one = await call(client.searchForInstances({ studyInstanceUID: mrStudy, seriesInstanceUID: mrSeries,
                                                           queryParams: { InstanceNumber: String(want[3][0]) } }));
        assertEq(one.map((i) => jv(i, '00080018')), [want[3][1]], 'instance by InstanceNumber');
        const pdf = await call(client.searchForInstances({ queryParams: { SOPClassUID: others[PDF].sopClass } }));
        assertEq(pdf.map((i) => jv(i, '00080018')), [others[PDF].sop], 'Encapsulated PDF by SOPClassUID');
    });

    // ---- WADO-RS metadata
    const checkMrMetadata = (md, what) => {
        assertEq(md.map((m) => jv(m, '00080018')).sort(), mr.map((f) => f.sop).sort(), `${what}: SOP UIDs`);
        for (const m of md) {
            const f = mr.find((x) => x.sop === jv(m, '00080018'));
            assertEq(jv(m, '0020000D'), mrStudy, 'StudyInstanceUID');
            assertEq(jv(m, '00200013'), f.ds.intString('x00200013'), 'InstanceNumber');
            assertEq([jv(m, '00280010'), jv(m, '00280011')], [f.ds.uint16('x00280010'), f.ds.uint16('x00280011')], 'Rows/Columns');
            assertEq(m['00200032'].Value, [0, 1, 2].map((k) => f.ds.floatString('x00200032', k)), 'ImagePositionPatient');
            assertEq(m['00280030'].Value, [0, 1].map((k) => f.ds.floatString('x00280030', k)), 'PixelSpacing');
            assertEq(jv(m, '00100010'), { Alphabetic: 'FRUIT' }, 'PatientName');
            assert(m['7FE00010'] && m['7FE00010'].BulkDataURI && !m['7FE00010'].InlineBinary, 'PixelData is not a BulkDataURI');
        }
    };
    await check('retrieveStudyMetadata: 6 MR instances, values equal to the files', async () => {
        checkMrMetadata(await call(client.retrieveStudyMetadata({ studyInstanceUID: mrStudy })), 'study metadata');
    });
    await check('retrieveSeriesMetadata: 6 MR instances, values equal to the files', async () => {
        checkMrMetadata(await call(client.retrieveSeriesMetadata({ studyInstanceUID: mrStudy, seriesInstanceUID: mrSeries })),
                        'series metadata');
    });

    // ---- WADO-RS instances
    await check('retrieveInstance: native instances come back byte-identical (MR x6, PDF, ECG, overlay MR)', async () => {
        for (const f of [...mr, others[PDF], others[ECG], others[OVERLAY_MR]]) {
            const got = await call(client.retrieveInstance(f.ids()));
            assertEq([got.byteLength, sha256(got)], [f.buf.length, sha256(f.buf)], `${f.rel} (length, sha256)`);
        }
    });
    // dicomweb-client 0.10.4 retrieveInstance can only send its default
    // Accept: multipart/related; type="application/dicom" (with mediaTypes it
    // throws before sending). PS3.18 8.7.3.4 and its Note 2: the default is
    // Explicit VR Little Endian; every origin server must be able to convert to
    // it, except that for lossy compressed pixel data it may return the lossy
    // syntax as received.
    await check('retrieveInstance: lossy JPEG instance, client default Accept -> JPEG as stored or Explicit VR LE (PS3.18 8.7.3.4)', async () => {
        const f = others[JPEG_SINGLE];
        const got = await call(client.retrieveInstance(f.ids()));
        const ds = dicomParser.parseDicom(new Uint8Array(got));
        const ts = ds.string('x00020010');
        assertEq(ds.string('x00080018'), f.sop, 'SOPInstanceUID');
        if (ts === JPEG_BASELINE)
            assertEq(sha256(encapsulatedFrame({ ds, buf: toBuffer(got) }, 0)), sha256(encapsulatedFrame(f, 0)), 'JPEG frame');
        else
            assertEq([ts, ds.elements.x7fe00010.length], [EXPLICIT_LE, 100 * 100], '(TransferSyntaxUID, PixelData length)');
    });
    await check('retrieveInstance: RLE (lossless) instance, client default Accept -> Explicit VR LE, pixels = REFERENCE.tsv (PS3.18 8.7.3.4)', async () => {
        const f = others[RLE];
        const got = toBuffer(await call(client.retrieveInstance(f.ids())));
        const ds = dicomParser.parseDicom(new Uint8Array(got.buffer, got.byteOffset, got.length));
        assertEq([ds.string('x00020010'), ds.string('x00080018')], [EXPLICIT_LE, f.sop], '(TransferSyntaxUID, SOPInstanceUID)');
        const el = ds.elements.x7fe00010;
        assertEq(sha256(got.subarray(el.dataOffset, el.dataOffset + 512 * 512 * 2)), referenceFrameSha(f.rel, 0),
                 'decoded PixelData sha256 vs REFERENCE.tsv');
    });

    // ---- WADO-RS frames
    await check('retrieveInstanceFrames: native MR frame = file PixelData = REFERENCE.tsv', async () => {
        const f = mr[1];
        const parts = await call(client.retrieveInstanceFrames({ ...f.ids(), frameNumbers: [1] }));
        assertEq(parts.length, 1, 'parts');
        const el = f.ds.elements.x7fe00010;
        assertEq(parts[0].byteLength, 256 * 256 * 2, 'frame length');
        assertEq(sha256(parts[0]), sha256(f.buf.subarray(el.dataOffset, el.dataOffset + el.length)), 'frame sha256 vs file');
        assertEq(sha256(parts[0]), referenceFrameSha(f.rel, 0), 'frame sha256 vs REFERENCE.tsv');
    });
    await check('retrieveInstanceFrames: JPEG baseline frame 2 as image/jpeg = the file\'s codestream', async () => {
        const f = others[JPEG_MULTI];
        const parts = await call(client.retrieveInstanceFrames({ ...f.ids(), frameNumbers: [2],
            mediaTypes: [{ mediaType: 'image/jpeg', transferSyntaxUID: JPEG_BASELINE }] }));
        assertEq(parts.length, 1, 'parts');
        const want = encapsulatedFrame(f, 1);
        assertEq(toBuffer(parts[0]).subarray(0, 2).toString('hex'), 'ffd8', 'SOI marker');
        assertEq([parts[0].byteLength, sha256(parts[0])], [want.length, sha256(want)], '(length, sha256)');
    });
    await check('retrieveInstanceFrames: frames 1,3,34 with transfer-syntax=* (as cornerstone asks)', async () => {
        const f = others[JPEG_MULTI];
        const parts = await call(client.retrieveInstanceFrames({ ...f.ids(), frameNumbers: [1, 3, 34],
            mediaTypes: [{ mediaType: 'application/octet-stream', transferSyntaxUID: '*' }] }));
        assertEq(parts.map((p) => sha256(p)), [0, 2, 33].map((i) => sha256(encapsulatedFrame(f, i))), 'frame sha256s');
    });
    await check('retrieveInstanceFrames: RLE (lossless) frame, client default Accept (octet-stream) -> decoded = REFERENCE.tsv', async () => {
        // Accept: multipart/related; type="application/octet-stream": uncompressed
        // bulk data, default Explicit VR LE (PS3.18 8.7.3 and Table 8.7.3-4)
        const f = others[RLE];
        const parts = await call(client.retrieveInstanceFrames({ ...f.ids(), frameNumbers: [1] }));
        assertEq(parts.map((p) => p.byteLength), [512 * 512 * 2], 'decoded frame lengths');
        assertEq(sha256(parts[0]), referenceFrameSha(f.rel, 0), 'frame sha256 vs REFERENCE.tsv');
    });

    // ---- WADO-RS bulk data
    const bulkFiles = [mr[0], others[PDF], others[ECG], others[OVERLAY_MR], others[JPEG_SINGLE], others[JPEG_MULTI]];
    for (const f of bulkFiles) {
        await check(`retrieveBulkData: every BulkDataURI of ${f.rel} resolves to the file's bytes`, async () => {
            const md = await call(client.retrieveInstanceMetadata(f.ids()));
            const uris = bulkDataUris(md[0]);
            assert(uris.length > 0, 'no BulkDataURI in the metadata');
            const errors = [];
            for (const [jpath, uri] of uris) {
                const where = `${jpath.join('/')} (${uri})`;
                try {
                    const encapsulated = jpath.length === 1 && jpath[0] === '7FE00010' && f.ds.elements.x7fe00010.encapsulatedPixelData;
                    if (encapsulated) {
                        // compressed Pixel Data: one image/jpeg part per frame (PS3.18 8.7.3.3.2)
                        const n = f.ds.intString('x00280008') || 1;
                        const parts = await call(client.retrieveBulkData({ BulkDataURI: uri,
                            mediaTypes: [{ mediaType: 'image/jpeg', transferSyntaxUID: JPEG_BASELINE }] }));
                        const want = Array.from({ length: n }, (_, i) => sha256(encapsulatedFrame(f, i)));
                        assertEq(parts.map((p) => sha256(p)), want, `${where}: frame sha256s`);
                    } else {
                        const parts = await call(client.retrieveBulkData({ BulkDataURI: uri }));
                        const want = elementBytes(f, jpath);
                        assertEq(parts.length, 1, `${where}: parts`);
                        assertEq([parts[0].byteLength, sha256(parts[0])], [want.length, sha256(want)], `${where}: (length, sha256)`);
                    }
                } catch (e) {
                    errors.push(e.message);
                }
            }
            assert(errors.length === 0, `${errors.length} of ${uris.length} BulkDataURIs failed:\n` + errors.join('\n'));
        });
    }
}
