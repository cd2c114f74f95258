// dicom.js - helpers over DICOM JSON (PS3.18 F.2): values, names, dates,
// geometry of a frame (classic and enhanced multi-frame objects).

export const T = {
  SpecificCharacterSet: '00080005', ImageType: '00080008', SOPClassUID: '00080016',
  SOPInstanceUID: '00080018', StudyDate: '00080020', SeriesDate: '00080021', StudyTime: '00080030',
  AccessionNumber: '00080050', Modality: '00080060', ModalitiesInStudy: '00080061',
  StudyDescription: '00081030', SeriesDescription: '0008103E', InstitutionName: '00080080',
  PatientName: '00100010', PatientID: '00100020', PatientBirthDate: '00100030', PatientSex: '00100040',
  SliceThickness: '00180050', CineRate: '00180040', FrameTime: '00181063', ImagerPixelSpacing: '00181164',
  StudyInstanceUID: '0020000D', SeriesInstanceUID: '0020000E', StudyID: '00200010',
  SeriesNumber: '00200011', InstanceNumber: '00200013', ImagePositionPatient: '00200032',
  ImageOrientationPatient: '00200037', FrameOfReferenceUID: '00200052', SliceLocation: '00201041',
  NumberOfStudyRelatedSeries: '00201206', NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209',
  SamplesPerPixel: '00280002', PhotometricInterpretation: '00280004', PlanarConfiguration: '00280006',
  NumberOfFrames: '00280008', Rows: '00280010', Columns: '00280011', PixelSpacing: '00280030',
  PixelAspectRatio: '00280034', BitsAllocated: '00280100', BitsStored: '00280101', HighBit: '00280102',
  PixelRepresentation: '00280103', WindowCenter: '00281050', WindowWidth: '00281051',
  RescaleIntercept: '00281052', RescaleSlope: '00281053', RescaleType: '00281054',
  WindowExplanation: '00281055', VOILUTFunction: '00281056', LossyImageCompression: '00282110',
  ModalityLUTSequence: '00283000', VOILUTSequence: '00283010', LUTDescriptor: '00283002',
  LUTData: '00283006', PresentationLUTShape: '20500020',
  RedDescriptor: '00281101', GreenDescriptor: '00281102', BlueDescriptor: '00281103',
  RedData: '00281201', GreenData: '00281202', BlueData: '00281203',
  RedSegData: '00281221', GreenSegData: '00281222', BlueSegData: '00281223',
  SharedFG: '52009229', PerFrameFG: '52009230', PixelMeasuresSeq: '00289110',
  PlanePositionSeq: '00209113', PlaneOrientationSeq: '00209116', FrameVOILUTSeq: '00289132',
  PixelValueTransformSeq: '00289145', FrameContentSeq: '00209111',
  MIMETypeOfEncapsulatedDocument: '00420012', EncapsulatedDocument: '00420011', DocumentTitle: '00420010',
  ContentSequence: '0040A730', ValueType: '0040A040', ConceptNameCodeSequence: '0040A043',
  ConceptCodeSequence: '0040A168', TextValue: '0040A160', MeasuredValueSequence: '0040A300',
  NumericValue: '0040A30A', MeasurementUnitsCodeSequence: '004008EA', CodeMeaning: '00080104',
  CodeValue: '00080100', RelationshipType: '0040A010', DateTime: '0040A120', Date: '0040A121',
  Time: '0040A122', PersonName: '0040A123', UID: '0040A124', CompletionFlag: '0040A491',
  VerificationFlag: '0040A493', ReferencedSOPSequence: '00081199', ContinuityOfContent: '0040A050',
  PixelData: '7FE00010', FloatPixelData: '7FE00008', DoubleFloatPixelData: '7FE00009',
  RetrieveURL: '00081190', USRegions: '00186011',
};

export function el(ds, tag) { return ds ? ds[tag] : undefined; }

/** All values of an element (array, possibly empty). */
export function values(ds, tag) {
  const e = ds && ds[tag];
  return e && Array.isArray(e.Value) ? e.Value : [];
}

/** First value or undefined. */
export function first(ds, tag) {
  const v = values(ds, tag);
  return v.length ? v[0] : undefined;
}

export function str(ds, tag, def = '') {
  const v = first(ds, tag);
  if (v === undefined || v === null) return def;
  if (typeof v === 'object') return pnToString(v);
  return String(v);
}

/** Number (DS, IS, US, FD...): JSON numbers or numeric strings. */
export function num(ds, tag, def) {
  const v = first(ds, tag);
  if (v === undefined || v === null || v === '') return def;
  const n = typeof v === 'number' ? v : parseFloat(v);
  return Number.isFinite(n) ? n : def;
}

export function nums(ds, tag) {
  return values(ds, tag).map((v) => (typeof v === 'number' ? v : parseFloat(v))).filter(Number.isFinite);
}

export function seqItems(ds, tag) { return values(ds, tag).filter((x) => x && typeof x === 'object'); }

/** Binary value of an element already fetched (InlineBinary) as Uint8Array, or null. */
export function inlineBinary(ds, tag) {
  const e = ds && ds[tag];
  if (!e || !e.InlineBinary) return null;
  const s = atob(e.InlineBinary);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

const CJK = /[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]/;

/** One name group "Family^Given^Middle^Prefix^Suffix" as display text. */
export function nameGroup(s) {
  if (!s) return '';
  const c = s.split('^').map((x) => x.trim());
  const [fam = '', giv = '', mid = '', pre = '', suf = ''] = c;
  if (CJK.test(s)) return [pre, fam + giv + mid, suf].filter(Boolean).join(' ');
  return [pre, fam, giv, mid, suf].filter(Boolean).join(' ');
}

/** A PN value object ({Alphabetic, Ideographic, Phonetic}) as text for a language. */
export function pnToString(pn, lang = 'en') {
  if (!pn) return '';
  if (typeof pn === 'string') return nameGroup(pn);
  const a = nameGroup(pn.Alphabetic), i = nameGroup(pn.Ideographic), p = nameGroup(pn.Phonetic);
  const main = lang.startsWith('zh') ? (i || a || p) : (a || i || p);
  const other = lang.startsWith('zh') ? (a && a !== main ? a : '') : (i && i !== main ? i : '');
  return other ? `${main} (${other})` : main;
}

export function personName(ds, tag, lang) { return pnToString(first(ds, tag), lang); }

/** DA "YYYYMMDD" to a Date at UTC midnight, or null. */
export function parseDA(s) {
  if (!s) return null;
  const m = /^(\d{4})(\d{2})(\d{2})/.exec(String(s).replace(/[.-]/g, ''));
  if (!m) return null;
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
  return Number.isNaN(d.getTime()) ? null : d;
}

export function formatDA(s, lang) {
  const d = parseDA(s);
  if (!d) return s || '';
  return new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeZone: 'UTC' }).format(d);
}

export function formatTM(s, lang) {
  const m = /^(\d{2})(\d{2})?(\d{2})?/.exec(String(s || '').replace(/:/g, ''));
  if (!m) return '';
  const d = new Date(Date.UTC(2000, 0, 1, +m[1], +(m[2] || 0), +(m[3] || 0)));
  return new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit', timeZone: 'UTC' }).format(d);
}

/** Date (local) to DA. */
export function toDA(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}`;
}

export function formatNumber(v, lang, digits = 1) {
  return new Intl.NumberFormat(lang, { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(v);
}

/* ---------- functional groups (enhanced multi-frame) ---------- */

/** Looks up seqTag/tag for a frame: per-frame group first, then shared. */
export function frameAttr(ds, frameIndex, seqTag, tag) {
  const per = seqItems(ds, T.PerFrameFG)[frameIndex];
  for (const group of [per, seqItems(ds, T.SharedFG)[0]]) {
    if (!group) continue;
    const item = seqItems(group, seqTag)[0];
    if (item && item[tag] && (item[tag].Value || item[tag].InlineBinary)) return item;
  }
  return undefined;
}

/** Everything needed to show and measure one frame. */
export function frameInfo(ds, frameIndex = 0) {
  const has = (t) => ds && ds[t] && ds[t].Value && ds[t].Value.length;
  const pick = (seq, tag, fn) => {
    if (has(tag)) return fn(ds, tag);
    const item = frameAttr(ds, frameIndex, seq, tag);
    return item ? fn(item, tag) : fn(undefined, tag);
  };
  let ps = pick(T.PixelMeasuresSeq, T.PixelSpacing, nums);
  let spacingKind = 'patient';
  if (ps.length < 2) {
    ps = nums(ds, T.ImagerPixelSpacing);
    spacingKind = ps.length >= 2 ? 'detector' : 'none';
  }
  if (ps.length < 2) {
    // ultrasound: calibrated regions (PhysicalUnits 3 = cm)
    const region = seqItems(ds, T.USRegions).find((r) => num(r, '00186024') === 3 && num(r, '00186026') === 3 &&
      num(r, '0018602C') > 0 && num(r, '0018602E') > 0);
    if (region) { ps = [num(region, '0018602E') * 10, num(region, '0018602C') * 10]; spacingKind = 'region'; }
  }
  const ipp = pick(T.PlanePositionSeq, T.ImagePositionPatient, nums);
  const iop = pick(T.PlaneOrientationSeq, T.ImageOrientationPatient, nums);
  const wc = pick(T.FrameVOILUTSeq, T.WindowCenter, nums);
  const ww = pick(T.FrameVOILUTSeq, T.WindowWidth, nums);
  const wExpl = pick(T.FrameVOILUTSeq, T.WindowExplanation, values);
  const slope = pick(T.PixelValueTransformSeq, T.RescaleSlope, (d, t) => num(d, t, 1));
  const intercept = pick(T.PixelValueTransformSeq, T.RescaleIntercept, (d, t) => num(d, t, 0));
  const rescaleType = pick(T.PixelValueTransformSeq, T.RescaleType, (d, t) => str(d, t));
  const thickness = pick(T.PixelMeasuresSeq, T.SliceThickness, (d, t) => num(d, t));
  const windows = [];
  for (let i = 0; i < Math.min(wc.length, ww.length); i++) {
    if (ww[i] > 0) windows.push({ center: wc[i], width: ww[i], name: wExpl[i] || '' });
  }
  let normal = null;
  if (iop.length === 6) {
    const r = iop.slice(0, 3), c = iop.slice(3, 6);
    normal = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]];
  }
  const sliceLocation = num(ds, T.SliceLocation);
  return {
    rows: num(ds, T.Rows, 0), cols: num(ds, T.Columns, 0),
    rowSpacing: ps.length >= 2 ? ps[0] : null, colSpacing: ps.length >= 2 ? ps[1] : null,
    spacingKind, ipp: ipp.length === 3 ? ipp : null, iop: iop.length === 6 ? iop : null, normal,
    windows, slope: slope || 1, intercept: intercept || 0, rescaleType,
    thickness, sliceLocation: sliceLocation !== undefined ? sliceLocation
      : (ipp.length === 3 && normal ? dot(ipp, normal) : undefined),
  };
}

export function dot(a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

/** The kind of object: image, sr, pdf, or other (no pixels we can show). */
export function objectKind(ds, pixelDataReported = false) {
  const cls = str(ds, T.SOPClassUID);
  if (cls.startsWith('1.2.840.10008.5.1.4.1.1.88.')) return 'sr';
  if (str(ds, T.MIMETypeOfEncapsulatedDocument) === 'application/pdf' || cls === '1.2.840.10008.5.1.4.1.1.104.1') return 'pdf';
  if (num(ds, T.Rows, 0) > 0 && num(ds, T.Columns, 0) > 0) {
    // a server that lists Pixel Data (as a BulkDataURI) tells us when it is absent
    const px = ds[T.PixelData] || ds[T.FloatPixelData] || ds[T.DoubleFloatPixelData];
    return px || !pixelDataReported ? 'image' : 'nopixels';
  }
  return 'other';
}

/** Absolute or root-relative BulkDataURI of an element. */
export function bulkURI(ds, tag) {
  const e = ds && ds[tag];
  return e && e.BulkDataURI ? e.BulkDataURI : null;
}

export function tagLabel(tag) { return `(${tag.slice(0, 4)},${tag.slice(4)})`; }
