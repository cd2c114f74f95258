// dicomweb.js - the DICOMweb client: QIDO-RS, WADO-RS metadata, frames
// (multipart/related parsed here), bulk data, rendered and thumbnail
// resources; remembers which optional resources the server lacks and
// estimates the link speed from the transfers it makes.

export const TS = {
  ImplicitLE: '1.2.840.10008.1.2', ExplicitLE: '1.2.840.10008.1.2.1', ExplicitBE: '1.2.840.10008.1.2.2',
  Deflated: '1.2.840.10008.1.2.1.99', JPEGBaseline: '1.2.840.10008.1.2.4.50', JPEGExtended: '1.2.840.10008.1.2.4.51',
  RLE: '1.2.840.10008.1.2.5', DeflatedFrame: '1.2.840.10008.1.2.8.1',
};

export class HttpError extends Error {
  constructor(status, message, url) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.url = url;
  }
}

/** The fields the viewer needs for every instance (QIDO includefield). */
export const INSTANCE_FIELDS = [
  '00080008', '00080016', '00080018', '00080060', '00180050', '00181164', '00181063', '00180040',
  '00200013', '00200032', '00200037', '00200052', '00201041', '00280002', '00280004', '00280006',
  '00280008', '00280010', '00280011', '00280030', '00280034', '00280100', '00280101', '00280102',
  '00280103', '00281050', '00281051', '00281052', '00281053', '00281054', '00281055', '00281056',
  '20500020', '00282110', '00283000', '00283010', '7FE00010', '7FE00008', '7FE00009', '00186011',
];

const STUDY_FIELDS = ['00081030', '00080061', '00201206', '00201208', '00100030', '00100040'];
const SERIES_FIELDS = ['0008103E', '00080060', '00200011', '00201209', '00200052', '00080021', '00180015'];

/** Throughput / round-trip estimator from completed requests. */
class LinkMeter {
  constructor() { this.bps = 0; this.ttfb = []; }
  /** Round trip: the smallest of the last few times to first byte (server time included). */
  get rtt() { return this.ttfb.length ? Math.min(...this.ttfb) : 0; }
  sample(bytes, ms, ttfbMs) {
    if (ttfbMs > 0) { this.ttfb.push(ttfbMs); if (this.ttfb.length > 4) this.ttfb.shift(); }
    const xfer = ms - ttfbMs;
    if (bytes >= 16384 && xfer > 2) {
      const bps = (bytes * 8000) / xfer;
      this.bps = this.bps ? this.bps * 0.6 + bps * 0.4 : bps;
    }
  }
  /** Milliseconds to fetch n bytes (0 when unknown / fast). */
  estimate(bytes) {
    let bps = this.bps;
    const c = navigator.connection;
    if (!bps && c && ['slow-2g', '2g', '3g'].includes(c.effectiveType) && c.downlink) bps = c.downlink * 1e6;
    // no transfer measured yet: a distant server is assumed to be a modest link
    if (!bps && this.rtt > 50) bps = 8e6;
    if (!bps) return 0;
    return (bytes * 8000) / bps + (this.rtt || 0);
  }
}

function enc(s) { return new TextEncoder().encode(s); }

function indexOfBytes(hay, needle, from) {
  const n0 = needle[0], nl = needle.length, end = hay.length - nl;
  outer: for (let i = hay.indexOf(n0, from); i !== -1 && i <= end; i = hay.indexOf(n0, i + 1)) {
    for (let k = 1; k < nl; k++) if (hay[i + k] !== needle[k]) continue outer;
    return i;
  }
  return -1;
}

export function mediaParams(ct) {
  const out = { type: '', params: {} };
  if (!ct) return out;
  const parts = ct.split(';');
  out.type = parts.shift().trim().toLowerCase();
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq < 0) continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
    out.params[p.slice(0, eq).trim().toLowerCase()] = v;
  }
  return out;
}

/**
 * Splits a multipart/related body. expectedSizes (optional, per part) lets
 * the parser jump over binary data instead of scanning it for the boundary.
 */
export function parseMultipart(buf, boundary, expectedSizes = []) {
  const open = enc('--' + boundary);
  const delim = enc('\r\n--' + boundary);
  const parts = [];
  let pos = indexOfBytes(buf, open, 0);
  while (pos >= 0) {
    pos += open.length;
    if (buf[pos] === 45 && buf[pos + 1] === 45) break; // closing "--"
    while (pos < buf.length && buf[pos] !== 10) pos++;
    pos++;
    let hdrEnd = indexOfBytes(buf, enc('\r\n\r\n'), pos - 2);
    let bodyStart;
    if (hdrEnd < 0) break;
    bodyStart = hdrEnd + 4;
    if (hdrEnd < pos) { hdrEnd = pos; } // no headers
    const headers = {};
    const text = new TextDecoder('latin1').decode(buf.subarray(pos, hdrEnd));
    for (const line of text.split(/\r\n/)) {
      const c = line.indexOf(':');
      if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
    }
    let next = -1;
    const want = headers['content-length'] ? parseInt(headers['content-length'], 10) : expectedSizes[parts.length];
    if (want >= 0 && bodyStart + want + delim.length <= buf.length) {
      let ok = true;
      for (let k = 0; k < delim.length && ok; k++) ok = buf[bodyStart + want + k] === delim[k];
      if (ok) next = bodyStart + want;
    }
    if (next < 0) next = indexOfBytes(buf, delim, bodyStart);
    const end = next < 0 ? buf.length : next;
    parts.push({ headers, data: buf.subarray(bodyStart, end) });
    if (next < 0) break;
    pos = next + 2;
  }
  return parts;
}

function capsKey(root) { return 'yy.caps:' + root; }

export class DicomWeb {
  constructor(root) {
    this.root = (root || '/dicomweb').replace(/\/+$/, '');
    this.link = new LinkMeter();
    let caps = {};
    try { caps = JSON.parse(sessionStorage.getItem(capsKey(this.root)) || '{}'); } catch { caps = {}; }
    // rendered / thumbnail: undefined = not tried yet, false = the server lacks it
    this.caps = { rendered: caps.rendered, thumbnail: caps.thumbnail, noDecode: caps.noDecode || {} };
    this.stats = { requests: 0, bytes: 0 };
  }

  saveCaps() {
    try { sessionStorage.setItem(capsKey(this.root), JSON.stringify(this.caps)); } catch { /* private mode */ }
  }

  url(path, params) {
    let u = path.startsWith('http') ? path : this.root + path;
    if (params) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) {
        if (v === undefined || v === null || v === '') continue;
        if (Array.isArray(v)) v.forEach((x) => q.append(k, x)); else q.append(k, v);
      }
      const s = q.toString();
      if (s) u += (u.includes('?') ? '&' : '?') + s;
    }
    return u;
  }

  async request(url, { accept, signal, responseType = 'json' } = {}) {
    const t0 = performance.now();
    const resp = await fetch(url, { headers: accept ? { Accept: accept } : {}, signal, credentials: 'same-origin' });
    const ttfb = performance.now() - t0;
    if (!resp.ok) {
      let msg = '';
      try { const j = await resp.json(); msg = j.message || j.error || ''; } catch { /* not JSON */ }
      throw new HttpError(resp.status, msg || `HTTP ${resp.status}`, url);
    }
    let body;
    if (responseType === 'json') body = resp.status === 204 ? [] : await resp.json();
    else if (responseType === 'blob') body = await resp.blob();
    else body = await resp.arrayBuffer();
    const ms = performance.now() - t0;
    const len = body instanceof ArrayBuffer ? body.byteLength : body instanceof Blob ? body.size
      : +(resp.headers.get('content-length') || 0);
    this.stats.requests++;
    this.stats.bytes += len;
    this.link.sample(len, ms, ttfb);
    return { body, headers: resp.headers, status: resp.status };
  }

  async json(path, params, opts = {}) {
    const r = await this.request(this.url(path, params), { accept: 'application/dicom+json', ...opts });
    return Array.isArray(r.body) ? r.body : [];
  }

  searchStudies(params, opts) {
    return this.json('/studies', { includefield: STUDY_FIELDS.join(','), ...params }, opts);
  }

  series(study, opts) {
    return this.json(`/studies/${study}/series`, { includefield: SERIES_FIELDS.join(',') }, opts);
  }

  instances(study, series, params = {}, opts) {
    return this.json(`/studies/${study}/series/${series}/instances`,
      { includefield: INSTANCE_FIELDS.join(','), ...params }, opts);
  }

  metadata(study, series, instance, opts) {
    const p = instance ? `/studies/${study}/series/${series}/instances/${instance}/metadata`
      : `/studies/${study}/series/${series}/metadata`;
    return this.json(p, null, opts);
  }

  frameURL(study, series, instance, frames) {
    return this.url(`/studies/${study}/series/${series}/instances/${instance}/frames/${frames.join(',')}`);
  }

  /**
   * Frames as [{data: Uint8Array, contentType, transferSyntax}].
   * ts: a transfer syntax UID ('*' for the stored encoding).
   */
  async frames(study, series, instance, frames, { ts = TS.ExplicitLE, signal, expectedSize } = {}) {
    const accept = `multipart/related; type="application/octet-stream"; transfer-syntax=${ts}`;
    const r = await this.request(this.frameURL(study, series, instance, frames),
      { accept, signal, responseType: 'arraybuffer' });
    const ct = mediaParams(r.headers.get('content-type'));
    const buf = new Uint8Array(r.body);
    if (!ct.type.startsWith('multipart/')) {
      return [{ data: buf, contentType: ct.type, transferSyntax: ct.params['transfer-syntax'] || ts }];
    }
    const parts = parseMultipart(buf, ct.params.boundary || '', frames.map(() => expectedSize));
    return parts.map((p) => {
      const pct = mediaParams(p.headers['content-type']);
      return { data: p.data, contentType: pct.type, transferSyntax: pct.params['transfer-syntax'] || (ts === '*' ? '' : ts) };
    });
  }

  async bulk(uri, opts = {}) {
    const u = /^https?:/.test(uri) || uri.startsWith('/') ? uri : this.url('/' + uri);
    const r = await this.request(u, { accept: 'application/octet-stream, multipart/related; type="application/octet-stream"', responseType: 'arraybuffer', ...opts });
    const ct = mediaParams(r.headers.get('content-type'));
    const buf = new Uint8Array(r.body);
    if (ct.type.startsWith('multipart/')) {
      const parts = parseMultipart(buf, ct.params.boundary || '');
      return parts.length ? parts[0].data : new Uint8Array(0);
    }
    return buf;
  }

  /** Server-rendered frame (JPEG/PNG) as a Blob, or null when the server lacks it. */
  async rendered(study, series, instance, frame, { window, viewport, signal } = {}) {
    if (this.caps.rendered === false) return null;
    const params = {};
    if (window) params.window = `${window.center},${window.width}`;
    if (viewport) params.viewport = `${viewport[0]},${viewport[1]}`;
    params.quality = 85;
    try {
      const r = await this.request(this.url(`/studies/${study}/series/${series}/instances/${instance}/frames/${frame}/rendered`, params),
        { accept: 'image/jpeg, image/png;q=0.9', signal, responseType: 'blob' });
      if (this.caps.rendered !== true) { this.caps.rendered = true; this.saveCaps(); }
      return r.body;
    } catch (e) {
      if (e.status === 404 || e.status === 501) { this.caps.rendered = false; this.saveCaps(); return null; }
      if (e.status === 406) return null; // not for this object (e.g. a syntax the server cannot decode)
      throw e;
    }
  }

  /** imageLikely: the series should have images, so a 404 means the server lacks thumbnails. */
  async thumbnail(study, series, size = 128, { imageLikely = true, ...opts } = {}) {
    if (this.caps.thumbnail === false) return null;
    const path = series ? `/studies/${study}/series/${series}/thumbnail` : `/studies/${study}/thumbnail`;
    try {
      const r = await this.request(this.url(path, { viewport: `${size},${size}` }),
        { accept: 'image/jpeg, image/png;q=0.9, image/gif;q=0.5', responseType: 'blob', ...opts });
      if (this.caps.thumbnail !== true) { this.caps.thumbnail = true; this.saveCaps(); }
      return r.body;
    } catch (e) {
      if (e.status === 501 || (e.status === 404 && imageLikely)) { this.caps.thumbnail = false; this.saveCaps(); return null; }
      if (e.status === 404 || e.status === 406) return null;
      throw e;
    }
  }
}
