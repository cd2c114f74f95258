// pixels.js - stored pixels to display pixels, on the full bit depth:
// native frames become typed arrays (BitsStored masking, sign extension,
// Pixel Representation), then Modality LUT (rescale or LUT sequence),
// VOI (window, VOI LUT function or VOI LUT sequence), Presentation LUT /
// MONOCHROME1 inversion, through one Uint32 lookup table per window.
// Colour: RGB (either planar configuration), YBR_FULL, YBR_FULL_422,
// PALETTE COLOR (8/16-bit, segmented LUTs). Fallback decoders for frames
// the server sends only compressed: RLE, deflate, and JPEG/PNG via the
// browser.

import { T, num, str, nums, values, seqItems, inlineBinary, bulkURI } from './dicom.js';
import { TS } from './dicomweb.js';

/** Pixel description of an instance. */
export function pixelModule(ds) {
  const photometric = str(ds, T.PhotometricInterpretation, 'MONOCHROME2').trim().toUpperCase();
  const bitsAllocated = num(ds, T.BitsAllocated, 16);
  const bitsStored = num(ds, T.BitsStored, bitsAllocated);
  return {
    rows: num(ds, T.Rows, 0), cols: num(ds, T.Columns, 0),
    spp: num(ds, T.SamplesPerPixel, photometric.startsWith('MONO') || photometric === 'PALETTE COLOR' ? 1 : 3),
    photometric, planar: num(ds, T.PlanarConfiguration, 0),
    bitsAllocated, bitsStored, highBit: num(ds, T.HighBit, bitsStored - 1),
    pixrep: num(ds, T.PixelRepresentation, 0),
    isFloat: !!(ds[T.FloatPixelData] || ds[T.DoubleFloatPixelData]),
    frames: num(ds, T.NumberOfFrames, 1),
    presentationInverse: str(ds, T.PresentationLUTShape) === 'INVERSE',
    lossy: str(ds, T.LossyImageCompression) === '01',
  };
}

/** Bytes of one frame as stored natively. */
export function nativeFrameBytes(pm) {
  const n = pm.rows * pm.cols;
  if (pm.bitsAllocated === 1) return Math.ceil((n * pm.spp) / 8);
  if (pm.photometric === 'YBR_FULL_422' && pm.bitsAllocated === 8) return n * 2;
  return n * pm.spp * (pm.bitsAllocated / 8);
}

/* ------------------------------------------------------------------ */
/* Native frames                                                        */

function aligned(bytes) {
  // a fresh buffer: typed array views need aligned offsets
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
}

/** Monochrome (or palette index) samples as a typed array of stored values. */
function grayArray(pm, bytes, n) {
  const { bitsAllocated: ba, bitsStored: bs, highBit: hb, pixrep } = pm;
  let arr;
  if (ba === 1) {
    arr = new Uint8Array(n);
    if (bytes.length >= n) arr.set(bytes.subarray(0, n)); // already one byte per pixel
    else for (let i = 0; i < n; i++) arr[i] = (bytes[i >> 3] >> (i & 7)) & 1;
    return arr;
  }
  if (pm.isFloat) {
    return ba === 64 ? new Float64Array(aligned(bytes), 0, n) : new Float32Array(aligned(bytes), 0, n);
  }
  const buf = aligned(bytes);
  if (ba === 8) arr = pixrep ? new Int8Array(buf, 0, n) : new Uint8Array(buf, 0, n);
  else if (ba === 16) arr = pixrep ? new Int16Array(buf, 0, n) : new Uint16Array(buf, 0, n);
  else if (ba === 32) arr = pixrep ? new Int32Array(buf, 0, n) : new Uint32Array(buf, 0, n);
  else throw new Error(`BitsAllocated ${ba} is not supported`);
  if (bs < ba && ba <= 16) {
    const shift = hb + 1 - bs;
    const mask = (1 << bs) - 1;
    const sign = 1 << (bs - 1);
    const raw = ba === 8 ? new Uint8Array(buf, 0, n) : new Uint16Array(buf, 0, n);
    if (pixrep) {
      for (let i = 0; i < n; i++) {
        const v = (raw[i] >>> shift) & mask;
        arr[i] = v & sign ? v - (mask + 1) : v;
      }
    } else if (shift || mask !== (1 << ba) - 1) {
      for (let i = 0; i < n; i++) raw[i] = (raw[i] >>> shift) & mask;
    }
  }
  return arr;
}

function minMax(a) {
  let mn = Infinity, mx = -Infinity;
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  if (mn === Infinity) { mn = 0; mx = 0; }
  return [mn, mx];
}

function ybrToRgb(y, cb, cr, out, o) {
  const r = y + 1.402 * (cr - 128);
  const g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128);
  const b = y + 1.772 * (cb - 128);
  out[o] = r < 0 ? 0 : r > 255 ? 255 : r;
  out[o + 1] = g < 0 ? 0 : g > 255 ? 255 : g;
  out[o + 2] = b < 0 ? 0 : b > 255 ? 255 : b;
  out[o + 3] = 255;
}

/** Share of sampled pixels that look grey read as YBR versus read as RGB. */
function looksYBR(src, n) {
  let ybr = 0, rgb = 0;
  const step = Math.max(1, Math.floor(n / 4000));
  for (let i = 0; i < n; i += step) {
    const a = src[i * 3], b = src[i * 3 + 1], c = src[i * 3 + 2];
    if (Math.abs(b - 128) <= 3 && Math.abs(c - 128) <= 3) ybr++;
    if (Math.abs(a - b) <= 3 && Math.abs(b - c) <= 3) rgb++;
  }
  // grey pixels read as RGB would have equal samples; read as YBR, neutral chroma.
  // Only clear evidence of RGB counts: a colourful image gives little of either.
  return !(rgb > ybr * 2 && rgb > 50);
}

/**
 * Colour frame to RGBA. layout: 'interleaved' | 'planar' | '422'.
 * space: 'RGB' | 'YBR_FULL'.
 */
function colorToRGBA(pm, bytes, n, layout, space) {
  const out = new Uint8ClampedArray(n * 4);
  let src = bytes;
  if (pm.bitsAllocated === 16) { // rare: 16-bit colour, keep the top 8 stored bits
    const w = new Uint16Array(aligned(bytes));
    src = new Uint8Array(w.length);
    const sh = Math.max(0, pm.bitsStored - 8);
    for (let i = 0; i < w.length; i++) src[i] = w[i] >> sh;
  }
  if (layout === '422') {
    for (let p = 0, o = 0, i = 0; p < n; p += 2, i += 4) {
      const y0 = src[i], y1 = src[i + 1], cb = src[i + 2], cr = src[i + 3];
      ybrToRgb(y0, cb, cr, out, o); o += 4;
      if (p + 1 < n) { ybrToRgb(y1, cb, cr, out, o); o += 4; }
    }
    return out;
  }
  if (layout === 'planar') {
    const inter = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) {
      inter[i * 3] = src[i]; inter[i * 3 + 1] = src[i + n]; inter[i * 3 + 2] = src[i + 2 * n];
    }
    src = inter;
  }
  if (space === 'YBR_FULL') {
    for (let i = 0, o = 0; i < n; i++, o += 4) ybrToRgb(src[i * 3], src[i * 3 + 1], src[i * 3 + 2], out, o);
  } else {
    for (let i = 0, o = 0; i < n; i++, o += 4) {
      out[o] = src[i * 3]; out[o + 1] = src[i * 3 + 1]; out[o + 2] = src[i * 3 + 2]; out[o + 3] = 255;
    }
  }
  return out;
}

/* ------------------------------------------------------------------ */
/* Palette colour                                                       */

function lutWords(bytes, count, bits) {
  // 8-bit entries may come one per byte or one per 16-bit word
  if (bits === 8 && bytes.length === count) return Uint16Array.from(bytes);
  const w = new Uint16Array(aligned(bytes), 0, Math.floor(bytes.length / 2));
  return w;
}

/** Expands segmented palette LUT data (PS3.3 C.7.9.2). */
export function expandSegmented(words, maxSegments = Infinity, start = 0, out = []) {
  let i = start, done = 0;
  while (i + 1 < words.length && done < maxSegments) {
    const type = words[i], len = words[i + 1];
    if (type === 0) { // discrete
      for (let k = 0; k < len; k++) out.push(words[i + 2 + k]);
      i += 2 + len;
    } else if (type === 1) { // linear from the previous value
      const y0 = out.length ? out[out.length - 1] : 0, y1 = words[i + 2];
      for (let k = 1; k <= len; k++) out.push(Math.round(y0 + ((y1 - y0) * k) / len));
      i += 3;
    } else if (type === 2) { // indirect: replay len segments found at a byte offset
      const off = (words[i + 2] | (words[i + 3] << 16)) >>> 1;
      if (off < i) expandSegmented(words, len, off, out);
      i += 4;
    } else break;
    done++;
  }
  return out;
}

/**
 * Loads the three palette LUTs of an instance (InlineBinary or BulkDataURI,
 * normal or segmented). Returns {r, g, b, first, bits} with 8-bit tables.
 */
export async function loadPalette(ds, fetchBulk) {
  const tables = [];
  const desc = [T.RedDescriptor, T.GreenDescriptor, T.BlueDescriptor];
  const data = [T.RedData, T.GreenData, T.BlueData];
  const seg = [T.RedSegData, T.GreenSegData, T.BlueSegData];
  let first = 0, bits = 16;
  for (let c = 0; c < 3; c++) {
    const d = nums(ds, desc[c]);
    if (d.length < 3) throw new Error('palette descriptor missing');
    const count = d[0] === 0 ? 65536 : d[0];
    first = d[1]; bits = d[2];
    const getBytes = async (tag) => inlineBinary(ds, tag) || (bulkURI(ds, tag) ? await fetchBulk(bulkURI(ds, tag)) : null);
    let words;
    let bytes = await getBytes(data[c]);
    if (bytes) words = lutWords(bytes, count, bits);
    else {
      bytes = await getBytes(seg[c]);
      if (!bytes) throw new Error('palette data missing');
      words = Uint16Array.from(expandSegmented(new Uint16Array(aligned(bytes), 0, bytes.length >> 1)));
    }
    // entries may hold 16-bit values even when the descriptor says 8
    let max = 0;
    for (let i = 0; i < words.length; i++) if (words[i] > max) max = words[i];
    const shift = bits === 16 || max > 255 ? 8 : 0;
    const t = new Uint8Array(count);
    for (let i = 0; i < count; i++) t[i] = (words[Math.min(i, words.length - 1)] || 0) >> shift;
    tables.push(t);
  }
  return { r: tables[0], g: tables[1], b: tables[2], first, bits };
}

function paletteToRGBA(idx, pal) {
  const n = idx.length, out = new Uint8ClampedArray(n * 4);
  const last = pal.r.length - 1;
  for (let i = 0, o = 0; i < n; i++, o += 4) {
    let k = idx[i] - pal.first;
    k = k < 0 ? 0 : k > last ? last : k;
    out[o] = pal.r[k]; out[o + 1] = pal.g[k]; out[o + 2] = pal.b[k]; out[o + 3] = 255;
  }
  return out;
}

/* ------------------------------------------------------------------ */
/* LUT sequences (Modality / VOI)                                       */

export function lutFromItem(item) {
  const d = nums(item, T.LUTDescriptor);
  if (d.length < 3) return null;
  const count = d[0] === 0 ? 65536 : d[0];
  const bits = d[2];
  let data = values(item, T.LUTData);
  if (!data.length) {
    const b = inlineBinary(item, T.LUTData);
    if (!b) return null;
    data = bits <= 8 && b.length === count ? Array.from(b) : Array.from(new Uint16Array(aligned(b), 0, b.length >> 1));
  }
  return { first: d[1], bits, table: Float64Array.from(data.slice(0, count)), maxOut: (2 ** bits) - 1 };
}

export function modalityLutOf(ds) {
  const item = seqItems(ds, T.ModalityLUTSequence)[0];
  return item ? lutFromItem(item) : null;
}

export function voiLutsOf(ds) {
  return seqItems(ds, T.VOILUTSequence).map(lutFromItem).filter(Boolean);
}

function applyTable(lut, x) {
  let k = Math.round(x) - lut.first;
  k = k < 0 ? 0 : k >= lut.table.length ? lut.table.length - 1 : k;
  return lut.table[k];
}

/* ------------------------------------------------------------------ */
/* Decoding entry points                                                */

/**
 * Turns frame bytes into a displayable frame.
 * opts.decoded: the bytes come from a server decode of a compressed frame
 * (canonical layout: interleaved samples, 1-bit unpacked, JPEG YCbCr kept).
 * opts.storedTS: the stored transfer syntax when known.
 */
export function decodeNative(pm, bytes, opts = {}) {
  const n = pm.rows * pm.cols;
  if (!n) throw new Error('image has no rows/columns');
  const frame = { rows: pm.rows, cols: pm.cols, lossy: !!opts.lossy || pm.lossy, source: opts.source || 'native' };
  if (pm.photometric === 'PALETTE COLOR') {
    const idx = grayArray({ ...pm, pixrep: 0 }, bytes, n);
    if (!opts.palette) throw new Error('palette not loaded');
    frame.color = true;
    frame.rgba = paletteToRGBA(idx, opts.palette);
    frame.bytes = frame.rgba.byteLength;
    return frame;
  }
  if (pm.spp >= 3) {
    let layout = 'interleaved', space = 'RGB';
    const ph = pm.photometric;
    if (ph === 'YBR_FULL_422' && bytes.length < n * 3) layout = '422';
    else if (pm.planar === 1 && !opts.decoded) layout = 'planar';
    if (ph === 'YBR_FULL' || (ph === 'YBR_FULL_422' && layout !== '422')) {
      space = 'YBR_FULL';
      // a server may convert decoded YCbCr to RGB: look before converting
      if ((opts.decoded || ph === 'YBR_FULL_422') && !looksYBR(bytes, n)) space = 'RGB';
    }
    frame.color = true;
    frame.rgba = colorToRGBA(pm, bytes, n, layout, space);
    frame.bytes = frame.rgba.byteLength;
    return frame;
  }
  const px = grayArray(pm, bytes, n);
  const [mn, mx] = minMax(px);
  frame.color = false;
  frame.pixels = px;
  frame.min = mn;
  frame.max = mx;
  frame.isFloat = pm.isFloat;
  frame.bytes = px.byteLength;
  return frame;
}

/** Decodes a DICOM RLE frame (PS3.5 G) to canonical interleaved little-endian samples. */
export function decodeRLE(pm, data) {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const nseg = dv.getUint32(0, true);
  const n = pm.rows * pm.cols;
  const bps = pm.bitsAllocated === 1 ? 1 : pm.bitsAllocated / 8;
  const out = new Uint8Array(n * pm.spp * bps);
  const tmp = new Uint8Array(n);
  for (let s = 0; s < nseg; s++) {
    const start = dv.getUint32(4 + s * 4, true);
    const end = s + 1 < nseg ? dv.getUint32(8 + s * 4, true) : data.length;
    let i = start, o = 0;
    while (i < end && o < n) {
      const c = (data[i++] << 24) >> 24;
      if (c >= 0) { for (let k = 0; k <= c && o < n; k++) tmp[o++] = data[i++]; }
      else if (c !== -128) { const v = data[i++]; for (let k = 0; k < 1 - c && o < n; k++) tmp[o++] = v; }
    }
    const sample = Math.floor(s / bps), byte = bps - 1 - (s % bps); // segments: MSB first
    const stride = pm.spp * bps;
    for (let p = 0; p < n; p++) out[p * stride + sample * bps + byte] = tmp[p];
  }
  return out;
}

async function inflate(data, format) {
  const ds = new Blob([data]).stream().pipeThrough(new DecompressionStream(format));
  return new Uint8Array(await new Response(ds).arrayBuffer());
}

/** Browser-decodable image (JPEG baseline, PNG...) to a frame. */
export async function decodeWithBrowser(pm, data, mime) {
  const bmp = await createImageBitmap(new Blob([data], { type: mime }), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const c = typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(bmp.width, bmp.height) : Object.assign(document.createElement('canvas'), { width: bmp.width, height: bmp.height });
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bmp, 0, 0);
  const W = bmp.width, H = bmp.height;
  const rgba = ctx.getImageData(0, 0, W, H).data;
  if (bmp.close) bmp.close();
  const n = W * H;
  const frame = { rows: H, cols: W, lossy: true, source: 'browser' };
  if (pm.photometric.startsWith('MONO') || pm.photometric === 'PALETTE COLOR') {
    const g = new Uint8Array(n);
    for (let i = 0; i < n; i++) g[i] = rgba[i * 4];
    if (pm.photometric === 'PALETTE COLOR' && pm.palette) {
      frame.color = true; frame.rgba = paletteToRGBA(g, pm.palette); frame.bytes = frame.rgba.byteLength;
      return frame;
    }
    const [mn, mx] = minMax(g);
    Object.assign(frame, { color: false, pixels: g, min: mn, max: mx, bytes: n, eightBit: true });
  } else {
    Object.assign(frame, { color: true, rgba: new Uint8ClampedArray(rgba.buffer), bytes: rgba.byteLength });
  }
  return frame;
}

/** Decodes what the server sent in the stored transfer syntax, when we can. */
export async function decodeStored(pm, part, palette) {
  const ts = part.transferSyntax;
  const ct = part.contentType;
  const native = [TS.ExplicitLE, TS.ImplicitLE, TS.Deflated, ''].includes(ts) && !/^image\//.test(ct);
  if (native && ts !== '') return decodeNative(pm, part.data, { palette, storedTS: ts });
  if (ts === TS.RLE) return decodeNative(pm, decodeRLE(pm, part.data), { decoded: true, palette, source: 'rle' });
  if (ts === TS.DeflatedFrame) {
    let raw;
    try { raw = await inflate(part.data, 'deflate-raw'); } catch { raw = await inflate(part.data, 'deflate'); }
    return decodeNative(pm, raw, { decoded: true, palette, source: 'deflate' });
  }
  if (ts === TS.JPEGBaseline || (ts === TS.JPEGExtended && pm.bitsStored <= 8) || ct === 'image/jpeg') {
    return decodeWithBrowser({ ...pm, palette }, part.data, 'image/jpeg');
  }
  if (ct === 'image/png' || ct === 'image/gif') return decodeWithBrowser({ ...pm, palette }, part.data, ct);
  const e = new Error(`unsupported transfer syntax ${ts || ct}`);
  e.unsupported = true;
  throw e;
}

/* ------------------------------------------------------------------ */
/* Rendering                                                            */

/** Modality value range of a frame (for default windows and W/L speed). */
export function modalityRange(frame, pres) {
  if (frame.color) return [0, 255];
  if (pres.modLut) {
    let mn = Infinity, mx = -Infinity;
    for (const v of pres.modLut.table) { if (v < mn) mn = v; if (v > mx) mx = v; }
    return [mn, mx];
  }
  const a = frame.min * pres.slope + pres.intercept, b = frame.max * pres.slope + pres.intercept;
  return a < b ? [a, b] : [b, a];
}

/** The VOI transfer for one modality value x (0..255 output). */
function voiFn(view) {
  const { wc, ww } = view;
  const fn = view.voiFunction || 'LINEAR';
  if (view.voiLut) {
    const l = view.voiLut, scale = 255 / l.maxOut;
    return (x) => applyTable(l, x) * scale;
  }
  if (fn === 'SIGMOID') return (x) => 255 / (1 + Math.exp((-4 * (x - wc)) / ww));
  if (fn === 'LINEAR_EXACT') {
    const w = Math.max(ww, 1e-9);
    return (x) => { const y = ((x - wc) / w + 0.5) * 255; return y < 0 ? 0 : y > 255 ? 255 : y; };
  }
  const w1 = Math.max(ww - 1, 1e-9), lo = wc - 0.5 - w1 / 2, hi = wc - 0.5 + w1 / 2;
  return (x) => (x <= lo ? 0 : x > hi ? 255 : ((x - (wc - 0.5)) / w1 + 0.5) * 255);
}

function grayLUT32(frame, view) {
  const key = `${view.wc}|${view.ww}|${view.invert}|${view.voiFunction}|${view.slope}|${view.intercept}|${!!view.voiLut}|${!!view.modLut}`;
  if (frame._lut && frame._lut.key === key) return frame._lut.lut;
  const size = frame.max - frame.min + 1;
  const lut = new Uint32Array(size);
  const voi = voiFn(view);
  const { slope, intercept, modLut, invert } = view;
  for (let i = 0; i < size; i++) {
    const s = i + frame.min;
    const m = modLut ? applyTable(modLut, s) : s * slope + intercept;
    let g = voi(m) + 0.5 | 0;
    if (invert) g = 255 - g;
    lut[i] = 0xff000000 | (g << 16) | (g << 8) | g;
  }
  frame._lut = { key, lut };
  return lut;
}

/**
 * Writes a frame into imageData (same size) with the view's presentation:
 * {wc, ww, invert, voiFunction, slope, intercept, modLut, voiLut, colorWindow}.
 */
export function renderFrame(frame, view, imageData) {
  const n = frame.rows * frame.cols;
  const out32 = new Uint32Array(imageData.data.buffer);
  if (frame.color) {
    const src = frame.rgba;
    if (!view.invert && !view.colorWindow) { imageData.data.set(src); return; }
    const t = new Uint8Array(256), voi = voiFn({ wc: view.wc, ww: view.ww });
    for (let i = 0; i < 256; i++) { let g = view.colorWindow ? voi(i) + 0.5 | 0 : i; t[i] = view.invert ? 255 - g : g; }
    const d = imageData.data;
    for (let i = 0; i < n * 4; i += 4) { d[i] = t[src[i]]; d[i + 1] = t[src[i + 1]]; d[i + 2] = t[src[i + 2]]; d[i + 3] = 255; }
    return;
  }
  const px = frame.pixels;
  const range = frame.max - frame.min;
  if (!frame.isFloat && range <= 1 << 20) {
    const lut = grayLUT32(frame, view), mn = frame.min;
    for (let i = 0; i < n; i++) out32[i] = lut[px[i] - mn];
    return;
  }
  const voi = voiFn(view), { slope, intercept, modLut, invert } = view;
  for (let i = 0; i < n; i++) {
    const m = modLut ? applyTable(modLut, px[i]) : px[i] * slope + intercept;
    let g = voi(m) + 0.5 | 0;
    if (invert) g = 255 - g;
    out32[i] = 0xff000000 | (g << 16) | (g << 8) | g;
  }
}

/** Modality value of the pixel (x, y), or null outside / colour. */
export function modalityValueAt(frame, pres, x, y) {
  if (frame.color) return null;
  const c = Math.floor(x), r = Math.floor(y);
  if (c < 0 || r < 0 || c >= frame.cols || r >= frame.rows) return null;
  const s = frame.pixels[r * frame.cols + c];
  return pres.modLut ? applyTable(pres.modLut, s) : s * pres.slope + pres.intercept;
}

/** Mean, SD and count of modality values of pixels whose centre is inside(x, y). */
export function regionStats(frame, pres, bbox, inside) {
  if (frame.color) return null;
  const x0 = Math.max(0, Math.floor(bbox[0])), y0 = Math.max(0, Math.floor(bbox[1]));
  const x1 = Math.min(frame.cols - 1, Math.ceil(bbox[2])), y1 = Math.min(frame.rows - 1, Math.ceil(bbox[3]));
  let n = 0, sum = 0, sum2 = 0, mn = Infinity, mx = -Infinity;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if (!inside(x + 0.5, y + 0.5)) continue;
      const s = frame.pixels[y * frame.cols + x];
      const v = pres.modLut ? applyTable(pres.modLut, s) : s * pres.slope + pres.intercept;
      n++; sum += v; sum2 += v * v;
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
  }
  if (!n) return { n: 0, mean: 0, sd: 0, min: 0, max: 0 };
  const mean = sum / n;
  return { n, mean, sd: Math.sqrt(Math.max(0, sum2 / n - mean * mean)), min: mn, max: mx };
}
