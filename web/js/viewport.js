// viewport.js - one image viewport: a canvas with the image under a view
// transform (zoom, pan, rotate, flip), presentation (window/level, invert),
// the four-corner overlay, measurements, reference lines, a scroll bar,
// cine, and pointer/touch input (one finger: active tool; two: pinch-zoom
// and pan; double tap: reset). Non-image objects (SR, PDF) are shown as
// documents in the viewport.

import { T, str, num, first, personName, formatDA, formatTM, formatNumber, dot } from './dicom.js';
import { renderFrame, modalityRange, modalityValueAt, decodeWithBrowser, nativeFrameBytes } from './pixels.js';
import { newAnnotation, measure, MEASURE_TOOLS, distToSegment } from './measure.js';
import { t, lang } from '../i18n.js';
import { renderSR } from './sr.js';

const HANDLE_MOUSE = 10, HANDLE_TOUCH = 24;

function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k);
  return e;
}

export class Viewport {
  constructor(app, slot) {
    this.app = app;
    this.slot = slot;
    this.series = null;
    this.images = [];
    this.index = 0;
    this.frame = null;
    this.view = { scale: 1, panX: 0, panY: 0, rot: 0, flipH: false, flipV: false, fit: true };
    this.pres = null; // {wc, ww, invertUser, voiFunction, voiLutIndex, name}
    this.cine = { playing: false, fps: 15, last: 0, shown: 0, t0: 0, measured: 0 };
    this.pointers = new Map();
    this.gesture = null;
    this.pending = null; // angle waiting for its third point
    this.dirty = true;
    this.owner = `vp${slot}`;
    this.firstShown = new Promise((res) => { this.resolveFirstShown = res; });

    this.canvas = h('canvas', { class: 'vp-canvas', 'aria-hidden': 'true' });
    this.corners = { tl: h('div', { class: 'corner tl' }), tr: h('div', { class: 'corner tr' }),
      bl: h('div', { class: 'corner bl' }), br: h('div', { class: 'corner br' }) };
    this.thumb = h('div', { class: 'sb-thumb' });
    this.scrollbar = h('div', { class: 'scrollbar', role: 'scrollbar', 'aria-orientation': 'vertical', 'aria-label': t('vp.scrollbar'), tabindex: '-1' }, this.thumb);
    this.mlist = h('ul', { class: 'mlist', 'aria-label': t('vp.measurements') });
    this.msg = h('div', { class: 'vp-msg', role: 'status' });
    this.doc = h('div', { class: 'vp-doc', hidden: true });
    this.el = h('div', { class: 'viewport', tabindex: '0', 'data-slot': slot, role: 'group', 'aria-label': t('vp.label', { n: slot + 1 }) },
      this.canvas, ...Object.values(this.corners), this.scrollbar, this.mlist, this.msg, this.doc);
    this.ctx = this.canvas.getContext('2d');
    this.imgCanvas = document.createElement('canvas');
    this.imgCtx = this.imgCanvas.getContext('2d');
    this.imageData = null;
    this.renderedKey = '';

    this.bindInput();
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(this.el);
  }

  destroy() {
    this.ro.disconnect();
    this.app.loader.cancelOwner(this.owner);
    this.unpin();
    this.el.remove();
  }

  /* ---------------- series and images ---------------- */

  get image() { return this.images[this.index]; }
  get info() { const im = this.image; return im && im.inst.kind === 'image' ? im.inst.info(im.frame) : null; }

  /** Shows a series; probe: an instance known before the full list (fast first image). */
  async setSeries(series, probe = null) {
    if (this.series === series && this.images.length) return;
    this.app.loader.cancelOwner(this.owner);
    this.stopCine();
    this.series = series;
    this.pres = null;
    this.frame = null;
    this.index = 0;
    this.pending = null;
    this.el.dataset.series = series.uid;
    this.showMessage(t('vp.loading'));
    if (series.images) this.images = series.images;
    else if (probe) this.images = [{ inst: probe, frame: 0 }];
    else this.images = [];
    this.el.dataset.count = String(this.images.length);
    if (this.images.length) this.show(0);
    if (!series.images) {
      try {
        // on a slow link the instance list would compete with the first image
        if (probe) await this.firstShown;
        const images = await series.loadAll();
        if (this.series !== series) return;
        const keep = this.image;
        this.images = images;
        let i = keep ? images.findIndex((im) => im.inst.uid === keep.inst.uid && im.frame === keep.frame) : 0;
        if (i < 0) i = 0;
        this.el.dataset.count = String(images.length);
        this.show(i, { fromList: true });
      } catch (e) {
        if (this.series === series) this.showMessage(t('vp.error', { msg: e.message }), true);
      }
    }
    this.initCineRate();
    this.app.onViewportChanged(this);
  }

  initCineRate() {
    const im = this.images[0];
    if (!im) return;
    const ft = num(im.inst.ds, T.FrameTime) || num(im.inst.full, T.FrameTime);
    const cr = num(im.inst.ds, T.CineRate) || num(im.inst.full, T.CineRate);
    let fps = ft > 0 ? 1000 / ft : cr > 0 ? cr : im.inst.frames > 1 ? 25 : 15;
    this.cine.fps = Math.max(1, Math.min(60, Math.round(fps)));
  }

  unpin() { if (this.pinnedKey) { this.app.cache.unpin(this.pinnedKey); this.pinnedKey = null; } }

  /** Displays image i (loads it if needed) and prefetches around it. */
  show(i, { sync = true, fromList = false } = {}) {
    if (!this.images.length) return;
    i = Math.max(0, Math.min(this.images.length - 1, i));
    const changed = i !== this.index || fromList || !this.frame;
    this.index = i;
    const im = this.images[i];
    this.el.dataset.index = String(i);
    this.el.dataset.instance = im.inst.uid;
    if (im.inst.kind !== 'image') {
      this.frame = null;
      this.showDocument(im.inst);
      this.updateScrollbar();
      return;
    }
    this.hideDocument();
    const key = im.inst.key(im.frame);
    const hit = this.app.loader.cached(im.inst, im.frame);
    if (hit) this.setFrame(hit, im);
    else {
      if (!this.frame) this.showMessage(t('vp.loading'));
      this.el.dataset.ready = 'false';
      const want = this.wantsPreview(im);
      this.app.loader.load(im.inst, im.frame, 0, this.owner).then((fr) => {
        if (this.image === im) this.setFrame(fr, im);
      }, (e) => {
        if (e.cancelled || this.image !== im) return;
        this.resolveFirstShown();
        this.showMessage(e.notImage ? t('vp.notImage') : e.status === 404 ? t('doc.noPixelsText', { modality: im.inst.series.modality }) : e.undecodable ? t('vp.undecodable', { ts: im.inst.storedTS || '' }) : t('vp.error', { msg: e.message }), true);
      });
      if (want) this.loadPreview(im);
    }
    this.unpin();
    this.pinnedKey = key;
    this.app.cache.pin(key);
    this.prefetch();
    this.updateScrollbar();
    this.invalidate();
    if (changed && sync) this.app.onImageChanged(this);
  }

  /** A fast lossy first image from the server, when the link is slow. */
  wantsPreview(im) {
    const dw = this.app.dw;
    if (this.frame || dw.caps.rendered === false) return false;
    // a distant server (round trip over 60 ms) or a frame that takes long to come
    return dw.link.rtt > 60 || dw.link.estimate(nativeFrameBytes(im.inst.pm)) > 450;
  }

  async loadPreview(im) {
    const s = im.inst.series;
    try {
      const blob = await this.app.dw.rendered(s.studyUID, s.uid, im.inst.uid, im.frame + 1);
      if (!blob || this.image !== im || (this.frame && !this.frame.preview)) return;
      const pm = im.inst.pm;
      const fr = await decodeWithBrowser({ ...pm, photometric: pm.spp > 1 || pm.photometric === 'PALETTE COLOR' ? 'RGB' : 'MONOCHROME2' }, new Uint8Array(await blob.arrayBuffer()), blob.type);
      if (this.image !== im || (this.frame && !this.frame.preview)) return;
      fr.preview = true;
      if (fr.rows === pm.rows && fr.cols === pm.cols) this.setFrame(fr, im);
    } catch { /* the native frame will come */ }
  }

  setFrame(fr, im) {
    const first = !this.frame || !this.pres;
    this.frame = fr;
    this.hideMessage();
    // until the user sets a window, each image shows with its own (files often vary per slice)
    if (first || this.frame.color !== (this.pres && this.pres.color) || !this.pres.userSet) this.initPresentation();
    if (first && this.view.fit) this.fit(false);
    this.el.dataset.ready = fr.preview ? 'preview' : 'true';
    this.invalidate();
    if (!fr.preview) this.resolveFirstShown();
    void im;
  }

  prefetch() {
    const n = this.images.length;
    if (n <= 1 && !(this.image && this.image.inst.frames > 1)) return;
    const im = this.image;
    const per = Math.max(1, nativeFrameBytes(im.inst.pm) * (im.inst.pm.spp === 3 ? 4 / 3 : im.inst.pm.bitsAllocated <= 8 ? 1 : 1));
    const budget = this.app.cache.maxBytes * 0.6 / Math.max(1, this.app.viewports.length);
    const max = Math.max(4, Math.min(n - 1, Math.floor(budget / per)));
    const dir = this.lastDir || 1;
    const list = [];
    for (let d = 1; list.length < max && d < n; d++) {
      const a = this.index + d * dir, b = this.index - d * dir;
      const wrapA = this.cine.playing ? (a + n) % n : a;
      if (wrapA >= 0 && wrapA < n) list.push(this.images[wrapA]);
      if (list.length < max && b >= 0 && b < n && d <= max / 3) list.push(this.images[b]);
    }
    this.app.loader.prefetch(this.owner, list, 10);
  }

  /* ---------------- presentation ---------------- */

  initPresentation() {
    const fr = this.frame, info = this.info;
    if (!fr || !info) return;
    let wc, ww, name = '';
    const w = info.windows[0];
    const [lo, hi] = modalityRange(fr, info);
    if (fr.color) { wc = 128; ww = 256; }
    else if (w && !fr.preview && !fr.eightBit) { wc = w.center; ww = w.width; name = w.name || t('wl.file'); }
    else if (info.voiLuts.length && !fr.eightBit) { wc = (lo + hi) / 2; ww = Math.max(1, hi - lo); }
    else {
      // the full range: lowest value black, highest white (LINEAR maps c-0.5±(w-1)/2)
      let a = lo, b = hi;
      if (b - a < 1e-9) { // a constant frame: the range its bits allow
        const pm = this.image.inst.pm;
        const top = fr.eightBit ? 255 : pm.isFloat ? a + 1 : 2 ** Math.min(pm.bitsStored, 31) - 1;
        a = fr.isFloat ? a : pm.pixrep ? -(top + 1) / 2 : 0;
        b = fr.isFloat ? b + 1 : pm.pixrep ? (top - 1) / 2 : top;
        if (!fr.isFloat) { a = a * info.slope + info.intercept; b = b * info.slope + info.intercept; if (a > b) [a, b] = [b, a]; }
      }
      if (fr.isFloat) { wc = (a + b) / 2; ww = Math.max(1e-6, b - a); }
      else { wc = (a + b) / 2 + 0.5; ww = Math.max(1, b - a + 1); }
      name = t('wl.auto');
    }
    const useVoiLut = !fr.color && !fr.preview && !w && info.voiLuts.length ? 0 : -1;
    this.pres = { wc, ww, invertUser: this.pres ? this.pres.invertUser : false, color: !!fr.color, colorWindow: false,
      voiLutIndex: useVoiLut, name, range: [lo, hi], userSet: false };
  }

  /** The full presentation for the current frame (pixels.renderFrame's view). */
  presentation() {
    const info = this.info, p = this.pres, fr = this.frame;
    const inverse = (info.mono1 && !fr.color && !fr.rendered && !fr.preview) !== !!info.presentationInverse;
    const eight = fr.eightBit || fr.preview || fr.rendered;
    return {
      // float data: the window is exact (LINEAR's -0.5 / w-1 steps are for integers)
      wc: p.wc, ww: p.ww, invert: inverse !== !!p.invertUser,
      voiFunction: fr.isFloat && info.voiFunction === 'LINEAR' ? 'LINEAR_EXACT' : info.voiFunction,
      slope: eight ? 1 : info.slope, intercept: eight ? 0 : info.intercept,
      modLut: eight ? null : info.modLut, voiLut: p.voiLutIndex >= 0 ? info.voiLuts[p.voiLutIndex] : null,
      colorWindow: p.colorWindow,
    };
  }

  setWindow(wc, ww, name = '') {
    if (!this.pres || !this.frame) return;
    this.pres.wc = wc;
    this.pres.ww = Math.max(1e-3, ww);
    this.pres.voiLutIndex = -1;
    this.pres.name = name;
    this.pres.userSet = true;
    if (this.frame.color) this.pres.colorWindow = true;
    this.invalidate();
    this.app.onPresentationChanged(this);
  }

  /** Applies a CT preset or a window from the file. */
  applyPreset(p) {
    if (!this.frame) return;
    if (p.file !== undefined) {
      const w = this.info.windows[p.file];
      if (w && p.file > 0) this.setWindow(w.center, w.width, w.name || t('wl.file'));
      else { this.initPresentation(); this.invalidate(); }
      return;
    }
    this.setWindow(p.center, p.width, t('preset.' + p.id));
  }

  toggleInvert() { if (this.pres) { this.pres.invertUser = !this.pres.invertUser; this.invalidate(); } }

  /* ---------------- view transform ---------------- */

  aspect() {
    const info = this.info;
    if (info && info.colSpacing && info.rowSpacing && Math.abs(info.colSpacing - info.rowSpacing) > 1e-6) {
      const m = Math.min(info.colSpacing, info.rowSpacing);
      return [info.colSpacing / m, info.rowSpacing / m];
    }
    return [1, 1];
  }

  size() { return [this.el.clientWidth || 1, this.el.clientHeight || 1]; }

  matrix() {
    const fr = this.frame;
    const [w, hgt] = this.size();
    const v = this.view, [ax, ay] = this.aspect();
    const m = new DOMMatrix();
    m.translateSelf(w / 2 + v.panX, hgt / 2 + v.panY);
    m.scaleSelf(v.flipH ? -1 : 1, v.flipV ? -1 : 1);
    m.rotateSelf(v.rot);
    m.scaleSelf(v.scale * ax, v.scale * ay);
    if (fr) m.translateSelf(-fr.cols / 2, -fr.rows / 2);
    return m;
  }

  toImage(x, y) { const p = this.matrix().inverse().transformPoint(new DOMPoint(x, y)); return [p.x, p.y]; }
  toScreen(p) { const q = this.matrix().transformPoint(new DOMPoint(p[0], p[1])); return [q.x, q.y]; }

  fit(redraw = true) {
    const fr = this.frame;
    if (!fr) return;
    const [w, hgt] = this.size(), [ax, ay] = this.aspect();
    const rot = Math.abs(this.view.rot % 180) === 90;
    const iw = (rot ? fr.rows * ay : fr.cols * ax), ih = (rot ? fr.cols * ax : fr.rows * ay);
    Object.assign(this.view, { scale: Math.min(w / iw, hgt / ih) * 0.98, panX: 0, panY: 0, fit: true });
    if (redraw) this.invalidate();
  }

  oneToOne() { Object.assign(this.view, { scale: 1 / (window.devicePixelRatio || 1), fit: false }); this.invalidate(); }

  zoomBy(f, cx, cy) {
    const [w, hgt] = this.size();
    if (cx === undefined) { cx = w / 2; cy = hgt / 2; }
    const before = this.toImage(cx, cy);
    this.view.scale = Math.max(0.02, Math.min(50, this.view.scale * f));
    this.view.fit = false;
    const after = this.toScreen(before);
    this.view.panX += cx - after[0];
    this.view.panY += cy - after[1];
    this.invalidate();
  }

  rotate(deg) { this.view.rot = (this.view.rot + deg + 360) % 360; if (this.view.fit) this.fit(false); this.invalidate(); }
  flip(axis) { if (axis === 'h') this.view.flipH = !this.view.flipH; else this.view.flipV = !this.view.flipV; this.invalidate(); }

  reset() {
    this.view = { scale: 1, panX: 0, panY: 0, rot: 0, flipH: false, flipV: false, fit: true };
    if (this.pres) this.pres.invertUser = false;
    this.initPresentation();
    this.fit(false);
    this.invalidate();
  }

  /* ---------------- drawing ---------------- */

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const [w, hgt] = this.size();
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(hgt * dpr);
    if (this.view.fit) this.fit(false);
    this.draw();
  }

  invalidate() {
    this.dirty = true;
    this.app.requestDraw();
  }

  draw() {
    this.dirty = false;
    const ctx = this.ctx, dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    const fr = this.frame;
    if (fr && this.pres && this.info) {
      const pres = this.presentation();
      const key = `${this.index}|${pres.wc}|${pres.ww}|${pres.invert}|${pres.voiLut ? 1 : 0}|${pres.colorWindow}`;
      if (this.renderedFrame !== fr || this.renderedKey !== key) {
        if (this.imgCanvas.width !== fr.cols || this.imgCanvas.height !== fr.rows) {
          this.imgCanvas.width = fr.cols; this.imgCanvas.height = fr.rows;
          this.imageData = null;
        }
        if (!this.imageData) this.imageData = this.imgCtx.createImageData(fr.cols, fr.rows);
        renderFrame(fr, pres, this.imageData);
        this.imgCtx.putImageData(this.imageData, 0, 0);
        this.renderedFrame = fr;
        this.renderedKey = key;
      }
      const m = this.matrix();
      ctx.setTransform(new DOMMatrix().scaleSelf(dpr, dpr).multiplySelf(m));
      ctx.imageSmoothingEnabled = this.view.scale * dpr < 3;
      ctx.imageSmoothingQuality = 'high';
      ctx.drawImage(this.imgCanvas, 0, 0);
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      this.drawReferenceLines(ctx);
      this.drawAnnotations(ctx, pres);
    }
    this.updateOverlay();
    this.el.dataset.wc = this.pres ? String(this.pres.wc) : '';
    this.el.dataset.ww = this.pres ? String(this.pres.ww) : '';
    this.el.dataset.scale = String(this.view.scale);
  }

  drawReferenceLines(ctx) {
    if (!this.app.settings.refLines) return;
    const src = this.app.active;
    if (!src || src === this || !src.info || !this.info) return;
    const a = src.info, b = this.info;
    if (!a.ipp || !a.normal || !b.ipp || !b.iop || !b.colSpacing) return;
    const fa = str(src.image.inst.ds, T.FrameOfReferenceUID), fb = str(this.image.inst.ds, T.FrameOfReferenceUID);
    if (!fa || fa !== fb) return;
    if (Math.abs(dot(a.normal, b.normal)) > 0.95) return; // parallel: no line
    // plane of a: n.(X - P) = 0; pixel (c, r) of b: X = B + c*cs*row + r*rs*col
    const row = b.iop.slice(0, 3), col = b.iop.slice(3, 6);
    const k0 = dot(a.normal, b.ipp) - dot(a.normal, a.ipp);
    const kc = dot(a.normal, row) * b.colSpacing, kr = dot(a.normal, col) * b.rowSpacing;
    const W = this.frame.cols, H = this.frame.rows, pts = [];
    // intersect k0 + kc*c + kr*r = 0 with the image border (pixel centres at integer+0.5 ignored)
    if (Math.abs(kr) > 1e-9) for (const c of [0, W]) { const r = -(k0 + kc * c) / kr; if (r >= 0 && r <= H) pts.push([c, r]); }
    if (Math.abs(kc) > 1e-9) for (const r of [0, H]) { const c = -(k0 + kr * r) / kc; if (c >= 0 && c <= W) pts.push([c, r]); }
    if (pts.length < 2) return;
    // pixel (c, r) has its centre at image coordinates (c + 0.5, r + 0.5)
    const p = this.toScreen([pts[0][0] + 0.5, pts[0][1] + 0.5]), q = this.toScreen([pts[pts.length - 1][0] + 0.5, pts[pts.length - 1][1] + 0.5]);
    ctx.save();
    ctx.strokeStyle = '#ffd400';
    ctx.lineWidth = 1.5;
    ctx.setLineDash([6, 4]);
    ctx.beginPath(); ctx.moveTo(p[0], p[1]); ctx.lineTo(q[0], q[1]); ctx.stroke();
    ctx.restore();
  }

  annotations() {
    const im = this.image;
    return im ? this.app.annotationsFor(im.inst.key(im.frame)) : [];
  }

  drawAnnotations(ctx, pres) {
    const list = this.annotations();
    const info = this.info;
    const items = [];
    ctx.save();
    ctx.lineWidth = 2;
    ctx.font = '600 14px system-ui, sans-serif';
    for (const a of list) {
      const sel = this.app.selectedAnnotation === a;
      ctx.strokeStyle = sel ? '#ff9f1c' : '#3cf08a';
      ctx.fillStyle = ctx.strokeStyle;
      const s = a.points.map((p) => this.toScreen(p));
      ctx.beginPath();
      if (a.type === 'length') { ctx.moveTo(...s[0]); ctx.lineTo(...s[1]); }
      else if (a.type === 'angle') { ctx.moveTo(...s[0]); ctx.lineTo(...s[1]); ctx.lineTo(...s[2]); }
      else {
        // draw the region in image space so rotation/flip keep its shape
        const [p, q] = a.points;
        const x0 = Math.min(p[0], q[0]), y0 = Math.min(p[1], q[1]), x1 = Math.max(p[0], q[0]), y1 = Math.max(p[1], q[1]);
        const N = a.type === 'ellipse' ? 48 : 4;
        for (let i = 0; i <= N; i++) {
          let ip;
          if (a.type === 'ellipse') { const th = (i / N) * 2 * Math.PI; ip = [(x0 + x1) / 2 + ((x1 - x0) / 2) * Math.cos(th), (y0 + y1) / 2 + ((y1 - y0) / 2) * Math.sin(th)]; }
          else ip = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]][i];
          const sp = this.toScreen(ip);
          if (i === 0) ctx.moveTo(...sp); else ctx.lineTo(...sp);
        }
      }
      ctx.stroke();
      for (const p of s) { ctx.beginPath(); ctx.arc(p[0], p[1], 3.5, 0, 2 * Math.PI); ctx.fill(); }
      const v = measure(a, info, this.frame, pres);
      const text = this.measureText(a, v);
      // labels: lengths at their midpoint, angles at the vertex, regions beside their box
      const anchor = a.type === 'angle' ? s[1] : a.type === 'length' ? [(s[0][0] + s[1][0]) / 2 + 6, (s[0][1] + s[1][1]) / 2 - 6]
        : [Math.max(s[0][0], s[1][0]), Math.min(s[0][1], s[1][1]) + 14];
      const lines = text.split('\n');
      const tw = Math.max(...lines.map((l) => ctx.measureText(l).width));
      const x = Math.min(anchor[0] + 8, this.size()[0] - tw - 6), y = Math.max(18, anchor[1] - 6);
      ctx.fillStyle = 'rgba(0,0,0,0.65)';
      ctx.fillRect(x - 3, y - 15, tw + 6, lines.length * 17 + 2);
      ctx.fillStyle = sel ? '#ff9f1c' : '#3cf08a';
      lines.forEach((l, i) => ctx.fillText(l, x, y + i * 17));
      items.push({ a, text });
    }
    ctx.restore();
    // the same values as text, for screen readers and tests
    const sig = items.map((it) => it.a.id + it.text + it.a.points.join(';')).join('|');
    if (sig !== this.mlistSig) {
      this.mlistSig = sig;
      this.mlist.replaceChildren(...items.map(({ a, text }) => h('li', {
        'data-type': a.type, 'data-points': JSON.stringify(a.points.map((p) => [+p[0].toFixed(3), +p[1].toFixed(3)])),
      }, `${t('tool.' + a.type)}: ${text.replace(/\n/g, ', ')}`)));
    }
  }

  measureText(a, v) {
    const L = lang();
    const f = (x, d = 1) => formatNumber(x, L, d);
    if (a.type === 'length') return `${f(v.length, v.unit === 'mm' ? 1 : 0)} ${t('unit.' + v.unit)}`;
    if (a.type === 'angle') return `${f(v.angle)}°`;
    const ct = this.image && this.image.inst.series.modality === 'CT' && !this.frame.eightBit;
    const u = ct ? ' HU' : '';
    const parts = [];
    if (v.hasStats) {
      parts.push(`${t('m.mean')} ${f(v.mean)}${u}  ${t('m.sd')} ${f(v.sd)}`);
    }
    parts.push(`${t('m.area')} ${f(v.area, v.areaUnit === 'mm²' ? 1 : 0)} ${v.areaUnit === 'mm²' ? t('unit.mm2') : t('unit.px2')}`);
    return parts.join('\n');
  }

  /* ---------------- overlay, scrollbar, messages ---------------- */

  updateOverlay() {
    const im = this.image;
    if (!im || !this.app.settings.overlay) {
      for (const c of Object.values(this.corners)) c.textContent = '';
      return;
    }
    const L = lang();
    const ds = Object.assign({}, this.app.studyDS, im.inst.series.ds, im.inst.ds);
    const info = this.info;
    const lines = {
      tl: [personName(ds, T.PatientName, L), str(ds, T.PatientID) && `${t('ov.id')} ${str(ds, T.PatientID)}`,
        [formatDA(str(ds, T.PatientBirthDate), L), str(ds, T.PatientSex)].filter(Boolean).join(' · ')],
      tr: [str(ds, T.StudyDescription), [formatDA(str(ds, T.StudyDate), L), formatTM(str(ds, T.StudyTime), L)].filter(Boolean).join(' '),
        str(ds, T.AccessionNumber) && `${t('ov.acc')} ${str(ds, T.AccessionNumber)}`],
      bl: [[im.inst.series.number ? `${t('ov.series')} ${im.inst.series.number}` : '', im.inst.series.description].filter(Boolean).join(' · '),
        im.inst.frames > 1
          ? `${t('ov.image')} ${im.inst.number || ''} ${t('ov.frame')} ${im.frame + 1}/${im.inst.frames}  (${this.index + 1}/${this.images.length})`
          : `${t('ov.image')} ${im.inst.number || this.index + 1}  (${this.index + 1}/${this.images.length})`,
        info && info.sliceLocation !== undefined ? `${t('ov.loc')} ${formatNumber(info.sliceLocation, L, 1)} ${t('unit.mm')}` : '',
        info && info.thickness ? `${t('ov.thick')} ${formatNumber(info.thickness, L, 1)} ${t('unit.mm')}` : ''],
      br: [],
    };
    if (this.pres && this.frame) {
      const p = this.pres;
      const dg = p.ww < 10 ? 2 : 0; // small windows (float data, 8-bit maps) need decimals
      lines.br.push(p.voiLutIndex >= 0 ? t('ov.voilut') : `${t('ov.ww')} ${formatNumber(p.ww, L, dg)} ${t('ov.wl')} ${formatNumber(p.wc, L, dg)}`);
      if (p.name) lines.br.push(p.name);
      lines.br.push(`${t('ov.zoom')} ${Math.round(this.view.scale * 100)}%` + (this.view.rot ? `  ${this.view.rot}°` : '') +
        (this.view.flipH ? ' ⇋' : '') + (this.view.flipV ? ' ⇵' : ''));
      if (this.cine.playing) lines.br.push(`${t('ov.cine')} ${this.cine.measured ? this.cine.measured.toFixed(0) : this.cine.fps} ${t('unit.fps')}`);
      if (this.frame.preview || this.frame.rendered) lines.br.push(t('ov.preview'));
      else if (this.frame.lossy) lines.br.push(t('ov.lossy'));
      if (info && info.spacingKind === 'detector') lines.br.push(t('ov.detector'));
      if (info && info.spacingKind === 'region') lines.br.push(t('ov.region'));
    }
    for (const [k, arr] of Object.entries(lines)) {
      const text = arr.filter(Boolean).join('\n');
      if (this.corners[k].textContent !== text) this.corners[k].textContent = text;
    }
  }

  updateScrollbar() {
    const n = this.images.length;
    this.scrollbar.hidden = n <= 1;
    if (n <= 1) return;
    const frac = 1 / n;
    this.thumb.style.height = `max(${frac * 100}%, 24px)`;
    this.thumb.style.top = `calc(${(this.index / Math.max(1, n - 1)) * 100}% - ${(this.index / Math.max(1, n - 1))} * max(${frac * 100}%, 24px))`;
    this.scrollbar.setAttribute('aria-valuemin', '1');
    this.scrollbar.setAttribute('aria-valuemax', String(n));
    this.scrollbar.setAttribute('aria-valuenow', String(this.index + 1));
  }

  showMessage(text, error = false) {
    this.msg.textContent = text;
    this.msg.classList.toggle('error', error);
    this.msg.hidden = false;
  }

  hideMessage() { this.msg.hidden = true; }

  /* ---------------- documents (SR, PDF, other) ---------------- */

  async showDocument(inst) {
    this.hideMessage();
    this.doc.hidden = false;
    this.el.classList.add('has-doc');
    if (this.docFor === inst) return;
    this.docFor = inst;
    this.doc.replaceChildren(h('p', {}, t('vp.loading')));
    this.el.dataset.ready = 'false';
    try {
      const ds = await inst.series.ensureFull(inst);
      if (this.docFor !== inst) return;
      if (inst.kind === 'sr') this.doc.replaceChildren(renderSR(ds));
      else if (inst.kind === 'pdf') await this.showPDF(inst, ds);
      else this.doc.replaceChildren(h('div', { class: 'doc-other' },
        h('h2', {}, t('doc.noImage')), h('p', {}, t(inst.kind === 'nopixels' ? 'doc.noPixelsText' : 'doc.noImageText', { cls: str(ds, T.SOPClassUID), modality: str(ds, T.Modality) })),
        h('button', { type: 'button', class: 'btn', onclick: () => this.app.openTags(inst) }, t('tool.tags'))));
      this.el.dataset.ready = 'doc';
      this.resolveFirstShown();
    } catch (e) {
      this.doc.replaceChildren(h('p', { class: 'error' }, t('vp.error', { msg: e.message })));
    }
    this.updateOverlay();
  }

  async showPDF(inst, ds) {
    const uri = ds[T.EncapsulatedDocument] && ds[T.EncapsulatedDocument].BulkDataURI;
    let bytes;
    if (uri) bytes = await this.app.dw.bulk(uri);
    else if (ds[T.EncapsulatedDocument] && ds[T.EncapsulatedDocument].InlineBinary) {
      bytes = Uint8Array.from(atob(ds[T.EncapsulatedDocument].InlineBinary), (c) => c.charCodeAt(0));
    } else throw new Error(t('doc.pdfMissing'));
    // DICOM pads odd lengths with a NUL byte: harmless for PDF readers
    if (this.pdfURL) URL.revokeObjectURL(this.pdfURL);
    this.pdfURL = URL.createObjectURL(new Blob([bytes], { type: 'application/pdf' }));
    const title = str(ds, T.DocumentTitle) || 'document';
    this.doc.replaceChildren(
      h('div', { class: 'doc-bar' }, h('strong', {}, title),
        h('a', { class: 'btn', href: this.pdfURL, download: title.replace(/[^\w\u4e00-\u9fff.-]+/g, '_') + '.pdf' }, t('doc.download')),
        h('a', { class: 'btn', href: this.pdfURL, target: '_blank', rel: 'noopener' }, t('doc.openTab'))),
      h('iframe', { class: 'pdf', src: this.pdfURL, title }));
  }

  hideDocument() {
    if (this.doc.hidden) return;
    this.doc.hidden = true;
    this.docFor = null;
    this.el.classList.remove('has-doc');
    this.doc.replaceChildren();
  }

  /* ---------------- cine ---------------- */

  toggleCine(force) {
    const on = force === undefined ? !this.cine.playing : force;
    if (on && this.images.length < 2) return;
    this.cine.playing = on;
    this.cine.last = 0;
    this.cine.t0 = performance.now();
    this.cine.shown = 0;
    this.cine.measured = 0;
    this.el.dataset.cine = on ? 'playing' : 'stopped';
    if (on) { this.lastDir = 1; this.prefetch(); }
    this.app.cineChanged(this);
    this.invalidate();
  }

  stopCine() { if (this.cine.playing) this.toggleCine(false); }

  /** Called every animation frame by the app while playing. */
  cineTick(now) {
    const c = this.cine;
    if (!c.playing) return;
    const period = 1000 / c.fps;
    if (c.last && now - c.last < period - 2) return;
    const next = (this.index + 1) % this.images.length;
    const im = this.images[next];
    if (!this.app.loader.cached(im.inst, im.frame)) {
      this.app.loader.load(im.inst, im.frame, 1, this.owner).catch(() => {});
      return; // wait for it: keeps the rate honest
    }
    c.last = c.last && now - c.last < period * 2 ? c.last + period : now;
    c.shown++;
    const el = (now - c.t0) / 1000;
    if (el > 1) { c.measured = c.shown / el; if (el > 3) { c.t0 = now; c.shown = 0; } }
    this.show(next);
  }

  /* ---------------- input ---------------- */

  bindInput() {
    const el = this.el;
    el.addEventListener('pointerdown', (e) => this.onDown(e));
    el.addEventListener('pointermove', (e) => this.onMove(e));
    el.addEventListener('pointerup', (e) => this.onUp(e));
    el.addEventListener('pointercancel', (e) => this.onUp(e, true));
    el.addEventListener('wheel', (e) => this.onWheel(e), { passive: false });
    el.addEventListener('contextmenu', (e) => e.preventDefault());
    el.addEventListener('dblclick', (e) => { if (!this.inDoc(e)) { this.reset(); e.preventDefault(); } });
    el.addEventListener('focus', () => this.app.setActive(this));
    el.addEventListener('dragover', (e) => { if (e.dataTransfer.types.includes('text/x-yy-series')) { e.preventDefault(); el.classList.add('drop'); } });
    el.addEventListener('dragleave', () => el.classList.remove('drop'));
    el.addEventListener('drop', (e) => {
      el.classList.remove('drop');
      const uid = e.dataTransfer.getData('text/x-yy-series');
      if (uid) { e.preventDefault(); this.app.assignSeries(this, uid); }
    });
    // scroll bar: drag or tap to jump
    const sbMove = (e) => {
      const r = this.scrollbar.getBoundingClientRect();
      const f = Math.max(0, Math.min(1, (e.clientY - r.top) / r.height));
      this.show(Math.round(f * (this.images.length - 1)));
    };
    this.scrollbar.addEventListener('pointerdown', (e) => {
      e.stopPropagation();
      this.app.setActive(this);
      this.scrollbar.setPointerCapture(e.pointerId);
      this.sbDrag = true;
      sbMove(e);
    });
    this.scrollbar.addEventListener('pointermove', (e) => { if (this.sbDrag) { e.stopPropagation(); sbMove(e); } });
    this.scrollbar.addEventListener('pointerup', (e) => { this.sbDrag = false; e.stopPropagation(); });
  }

  inDoc(e) { return !this.doc.hidden && this.doc.contains(e.target); }

  /** Pointer position in the viewport's padding box (where the canvas is). */
  local(e) {
    const r = this.el.getBoundingClientRect();
    return [e.clientX - r.left - this.el.clientLeft, e.clientY - r.top - this.el.clientTop];
  }

  onDown(e) {
    if (this.inDoc(e) || e.target === this.scrollbar || this.scrollbar.contains(e.target)) return;
    this.app.setActive(this);
    if (document.activeElement !== this.el) this.el.focus({ preventScroll: true });
    e.preventDefault();
    try { this.el.setPointerCapture(e.pointerId); } catch { /* synthetic */ }
    const [x, y] = this.local(e);
    this.pointers.set(e.pointerId, { x, y, x0: x, y0: y, type: e.pointerType });
    if (this.pointers.size === 2) {
      // two fingers: pinch-zoom and pan; abandon a one-finger action
      if (this.gesture && this.gesture.ann && !this.gesture.ann.done) this.app.removeAnnotation(this.gesture.ann);
      const [a, b] = [...this.pointers.values()];
      this.gesture = { kind: 'pinch', d0: Math.hypot(a.x - b.x, a.y - b.y) || 1, mid: [(a.x + b.x) / 2, (a.y + b.y) / 2], scale0: this.view.scale };
      return;
    }
    if (this.pointers.size > 2) return;
    let tool = this.app.tool;
    if (e.pointerType === 'mouse') {
      if (e.button === 1 || (e.button === 0 && (e.ctrlKey || e.metaKey) && !MEASURE_TOOLS.includes(tool))) tool = 'pan';
      else if (e.button === 2) tool = 'zoom';
      else if (e.button !== 0) return;
    }
    this.gesture = { kind: tool, x, y, x0: x, y0: y, acc: 0, wc: this.pres && this.pres.wc, ww: this.pres && this.pres.ww, moved: false, touch: e.pointerType === 'touch' };
    if (MEASURE_TOOLS.includes(tool)) this.measureDown(x, y, e.pointerType);
  }

  onMove(e) {
    const p = this.pointers.get(e.pointerId);
    const [x, y] = this.local(e);
    if (!p) {
      // hover: an angle waiting for its third point follows the mouse
      if (this.pending && e.pointerType === 'mouse') { this.pending.points[2] = this.toImage(x, y); this.pending.version++; this.invalidate(); }
      return;
    }
    const dx = x - p.x, dy = y - p.y;
    p.x = x; p.y = y;
    const g = this.gesture;
    if (!g) return;
    if (g.kind === 'pinch') {
      const [a, b] = [...this.pointers.values()];
      if (!b) return;
      const mid = [(a.x + b.x) / 2, (a.y + b.y) / 2];
      const d = Math.hypot(a.x - b.x, a.y - b.y) || 1;
      const f = (g.scale0 * d) / g.d0 / this.view.scale;
      this.view.panX += mid[0] - g.mid[0];
      this.view.panY += mid[1] - g.mid[1];
      g.mid = mid;
      this.zoomBy(f, mid[0], mid[1]);
      return;
    }
    if (Math.hypot(x - g.x0, y - g.y0) > 3) g.moved = true;
    switch (g.kind) {
      case 'wl': {
        if (!this.pres || !this.frame) return;
        const [lo, hi] = this.pres.range || [0, 255];
        const k = Math.max((hi - lo) / 600, this.frame.isFloat ? (hi - lo) / 2000 : 0.25);
        this.setWindow(this.pres.wc + dy * k, Math.max(1e-3, this.pres.ww + dx * k), '');
        break;
      }
      case 'pan': this.view.panX += dx; this.view.panY += dy; this.view.fit = false; this.invalidate(); break;
      case 'zoom': this.zoomBy(Math.exp(-dy * 0.01), g.x0, g.y0); break;
      case 'scroll': {
        g.acc += g.touch ? -dy : dy; // a finger pushes the stack like a page: up = next
        const n = this.images.length;
        const step = Math.max(4, Math.min(24, this.size()[1] / Math.max(1, n)));
        while (Math.abs(g.acc) >= step) {
          const d = g.acc > 0 ? 1 : -1;
          g.acc -= d * step;
          this.step(d);
        }
        break;
      }
      default:
        if (MEASURE_TOOLS.includes(g.kind)) this.measureMove(x, y);
    }
  }

  onUp(e, cancelled = false) {
    const p = this.pointers.get(e.pointerId);
    this.pointers.delete(e.pointerId);
    const g = this.gesture;
    if (!p || !g) return;
    if (g.kind === 'pinch') {
      if (this.pointers.size === 0) this.gesture = null;
      else this.gesture = { kind: 'none' };
      return;
    }
    if (MEASURE_TOOLS.includes(g.kind) && !cancelled) this.measureUp(...this.local(e));
    // double tap resets (touch: dblclick is not reliable)
    if (e.pointerType === 'touch' && !g.moved && !cancelled && !MEASURE_TOOLS.includes(g.kind)) {
      const now = performance.now();
      if (this.lastTap && now - this.lastTap.t < 350 && Math.hypot(p.x - this.lastTap.x, p.y - this.lastTap.y) < 30) {
        this.reset();
        this.lastTap = null;
      } else this.lastTap = { t: now, x: p.x, y: p.y };
    }
    if (this.pointers.size === 0) this.gesture = null;
  }

  onWheel(e) {
    if (this.inDoc(e)) return;
    e.preventDefault();
    this.app.setActive(this);
    const [x, y] = this.local(e);
    if (e.ctrlKey || e.metaKey) { this.zoomBy(Math.exp(-e.deltaY * 0.002), x, y); return; }
    const unit = e.deltaMode === 1 ? 40 : e.deltaMode === 2 ? 400 : 1;
    this.wheelAcc = (this.wheelAcc || 0) + e.deltaY * unit;
    while (Math.abs(this.wheelAcc) >= 40) {
      const d = this.wheelAcc > 0 ? 1 : -1;
      this.wheelAcc -= d * 40;
      this.step(d);
    }
  }

  step(d) {
    if (this.images.length < 2) return;
    this.lastDir = d > 0 ? 1 : -1;
    this.show(this.index + d);
  }

  /* ---------------- measurement input ---------------- */

  hitHandle(x, y, pointerType) {
    const r = pointerType === 'touch' ? HANDLE_TOUCH : HANDLE_MOUSE;
    for (const a of this.annotations()) {
      for (let i = 0; i < a.points.length; i++) {
        const s = this.toScreen(a.points[i]);
        if (Math.hypot(s[0] - x, s[1] - y) <= r) return { a, i };
      }
    }
    return null;
  }

  hitAnnotation(x, y) {
    for (const a of this.annotations()) {
      const s = a.points.map((p) => this.toScreen(p));
      const segs = a.type === 'angle' ? [[s[0], s[1]], [s[1], s[2]]] : a.type === 'length' ? [[s[0], s[1]]] : null;
      if (segs && segs.some(([p, q]) => distToSegment([x, y], p, q) < 8)) return a;
      if (!segs) {
        const [x0, x1] = [Math.min(s[0][0], s[1][0]), Math.max(s[0][0], s[1][0])];
        const [y0, y1] = [Math.min(s[0][1], s[1][1]), Math.max(s[0][1], s[1][1])];
        if (x >= x0 - 6 && x <= x1 + 6 && y >= y0 - 6 && y <= y1 + 6) return a;
      }
    }
    return null;
  }

  measureDown(x, y, pointerType) {
    if (!this.frame || !this.image) return;
    const g = this.gesture;
    const p = this.toImage(x, y);
    if (this.pending) { // third point of an angle
      this.pending.points[2] = p;
      this.pending.version++;
      g.ann = this.pending;
      g.handle = 2;
      this.invalidate();
      return;
    }
    const hit = this.hitHandle(x, y, pointerType);
    if (hit) { g.ann = hit.a; g.handle = hit.i; this.app.selectAnnotation(hit.a); return; }
    const key = this.image.inst.key(this.image.frame);
    const a = newAnnotation(g.kind, key, p);
    g.ann = a;
    g.handle = 1;
    g.creating = true;
    this.app.addAnnotation(a);
  }

  measureMove(x, y) {
    const g = this.gesture;
    if (!g.ann) return;
    const p = this.toImage(x, y);
    if (g.creating && g.ann.type === 'angle') { g.ann.points[1] = p; g.ann.points[2] = p; }
    else g.ann.points[g.handle] = p;
    g.ann.version++;
    this.invalidate();
  }

  measureUp(x, y) {
    const g = this.gesture;
    const a = g.ann;
    if (!a) return;
    if (g.creating) {
      const s0 = this.toScreen(a.points[0]);
      if (Math.hypot(s0[0] - x, s0[1] - y) < 4) { // a click, not a drag
        if (!g.touch || a.type !== 'angle') { const hit = this.hitAnnotation(x, y); this.app.removeAnnotation(a); this.app.selectAnnotation(hit); return; }
      }
      if (a.type === 'angle') { this.pending = a; a.points[2] = this.toImage(x, y); this.invalidate(); return; }
      a.done = true;
    } else if (this.pending === a) {
      this.pending = null;
      a.done = true;
    }
    a.version++;
    this.app.selectAnnotation(a);
    this.invalidate();
  }
}
