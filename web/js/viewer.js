// viewer.js - the study view: series panel with thumbnails, layouts of
// viewports, the toolbar, keyboard shortcuts, cine loop, synchronized
// scrolling and reference lines, and the measurement store.

import { T, str, num, personName, formatDA, dot } from './dicom.js';
import { Study } from './series.js';
import { Viewport } from './viewport.js';
import { renderFrame, modalityRange } from './pixels.js';
import { t, lang } from '../i18n.js';
import { icon } from './icons.js';
import { openTagBrowser } from './tagbrowser.js';

export const CT_PRESETS = [
  { id: 'brain', center: 40, width: 80, key: '1' },
  { id: 'lung', center: -600, width: 1500, key: '2' },
  { id: 'bone', center: 400, width: 1800, key: '3' },
  { id: 'abdomen', center: 40, width: 400, key: '4' },
  { id: 'mediastinum', center: 50, width: 350, key: '5' },
];

const IMAGE_MODALITIES = ['CT', 'MR', 'US', 'CR', 'DX', 'MG', 'XA', 'RF', 'NM', 'PT', 'IO', 'PX', 'ES', 'XC', 'OP'];
const NON_IMAGE_MODALITIES = ['SR', 'PR', 'KO', 'DOC', 'ECG', 'HD', 'AU', 'RTPLAN', 'RTSTRUCT', 'RTRECORD', 'REG', 'FID', 'M3D'];

export const LAYOUTS = [
  { id: '1x1', rows: 1, cols: 1, key: 'Alt+1' },
  { id: '1x2', rows: 1, cols: 2, key: 'Alt+2' },
  { id: '2x1', rows: 2, cols: 1, key: 'Alt+3' },
  { id: '2x2', rows: 2, cols: 2, key: 'Alt+4' },
  { id: '1x3', rows: 1, cols: 3, key: 'Alt+5', wide: true },
];

const TOOLS = [
  { id: 'wl', key: 'w', icon: 'wl' }, { id: 'pan', key: 'p', icon: 'pan' }, { id: 'zoom', key: 'z', icon: 'zoom' },
  { id: 'scroll', key: 's', icon: 'scroll' }, { id: 'length', key: 'l', icon: 'length' },
  { id: 'angle', key: 'a', icon: 'angle' }, { id: 'ellipse', key: 'e', icon: 'ellipse' }, { id: 'rect', key: 'b', icon: 'rect' },
];

const ACTIONS = [
  { id: 'invert', key: 'i', icon: 'invert', run: (v) => v.toggleInvert() },
  { id: 'rotl', key: '[', icon: 'rotl', run: (v) => v.rotate(-90) },
  { id: 'rotr', key: ']', icon: 'rotr', run: (v) => v.rotate(90) },
  { id: 'fliph', key: 'h', icon: 'fliph', run: (v) => v.flip('h') },
  { id: 'flipv', key: 'v', icon: 'flipv', run: (v) => v.flip('v') },
  { id: 'fit', key: 'f', icon: 'fit', run: (v) => v.fit() },
  { id: 'one', key: 'o', icon: 'one', run: (v) => v.oneToOne() },
  { id: 'reset', key: 'r', icon: 'reset', run: (v) => v.reset() },
];

/** Every shortcut, for the help panel (keys as shown, i18n label keys). */
export function shortcutList() {
  return [
    ...TOOLS.map((x) => [x.key.toUpperCase(), 'tool.' + x.id]),
    ...ACTIONS.map((x) => [x.key.toUpperCase(), 'tool.' + x.id]),
    ['↑ / ↓ / ← / →', 'key.step'], ['PgUp / PgDn', 'key.page'], ['Home / End', 'key.ends'],
    [t('key.wheel'), 'key.step'], ['Ctrl + ' + t('key.wheel'), 'key.zoomWheel'],
    ['+ / -', 'key.zoomKeys'], ...CT_PRESETS.map((p) => [p.key, 'preset.' + p.id]), ['0', 'key.fileWindow'],
    [t('key.space') + ' / C', 'tool.cine'], ['Shift+↑ / Shift+↓', 'key.fps'],
    ...LAYOUTS.map((l) => [l.key, 'layout.' + l.id]), ['Tab / N', 'key.nextViewport'],
    ['Y', 'tool.sync'], ['K', 'tool.ref'], ['G', 'tool.overlay'], ['T', 'tool.tags'], ['Q', 'sv.toggleSeries'],
    ['Delete', 'key.delete'], ['Shift+Delete', 'tool.clear'], ['Esc', 'key.escape'], ['?', 'tool.help'],
    [t('key.dblclick'), 'tool.reset'], [t('key.pinch'), 'key.pinchText'], [t('key.swipe'), 'key.swipeText'],
  ];
}

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

export class StudyViewer {
  constructor(ctx, studyUID, { seriesUID } = {}) {
    Object.assign(this, { dw: ctx.dw, cache: ctx.cache, loader: ctx.loader, settings: ctx.settings, ctx });
    this.studyUID = studyUID;
    this.wantSeries = seriesUID;
    this.viewports = [];
    this.active = null;
    this.tool = matchMedia('(pointer: coarse)').matches ? 'scroll' : 'wl';
    this.annotations = new Map();
    this.selectedAnnotation = null;
    this.studyDS = {};
    this.layout = '1x1';
    this.drawQueued = false;
    this.thumbs = new Map();
    this.el = h('div', { class: 'study-view' });
    this.onKey = (e) => this.key(e);
    this.loaderOff = this.loader.onLoaded(() => this.refreshThumbProgress());
  }

  /* ---------------- building ---------------- */

  mount(parent) {
    this.panel = h('aside', { class: 'series-panel', 'aria-label': t('sv.series') });
    this.seriesList = h('ol', { class: 'series-list' });
    this.panelToggle = h('button', { type: 'button', class: 'btn icon-btn panel-toggle', 'aria-expanded': 'true', 'aria-label': t('sv.toggleSeries') + ' (Q)', title: t('sv.toggleSeries') + ' (Q)',
      onclick: () => this.togglePanel() }, icon('series'));
    this.panel.append(h('h2', { class: 'panel-title' }, t('sv.series')), this.seriesList);
    this.grid = h('div', { class: 'grid', 'data-layout': '1x1' });
    this.toolbar = this.buildToolbar();
    this.status = h('div', { class: 'sv-status', role: 'status', 'aria-live': 'polite' });
    const main = h('div', { class: 'sv-main' }, this.toolbar, this.grid);
    this.el.append(this.panel, main, this.status);
    parent.append(this.el);
    document.addEventListener('keydown', this.onKey);
    this.setLayout('1x1', false);
    this.setTool(this.tool);
    this.load();
    if (matchMedia('(max-width: 700px)').matches) this.togglePanel(false);
  }

  destroy() {
    document.removeEventListener('keydown', this.onKey);
    this.loaderOff();
    for (const v of this.viewports) v.destroy();
    this.viewports = [];
    cancelAnimationFrame(this.raf);
    this.destroyed = true;
    this.el.remove();
  }

  togglePanel(force) {
    const open = force === undefined ? this.panel.hidden : force;
    this.panel.hidden = !open;
    this.panelToggle.setAttribute('aria-expanded', String(open));
    this.el.classList.toggle('panel-closed', !open);
  }

  button(id, iconName, label, shortcut, onclick, extra = {}) {
    const title = shortcut ? `${label} (${shortcut})` : label;
    return h('button', { type: 'button', class: 'tb-btn', 'data-id': id, title, 'aria-label': title, onclick, ...extra },
      icon(iconName), h('span', { class: 'tb-label' }, label));
  }

  buildToolbar() {
    const tb = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': t('sv.tools') });
    tb.append(this.panelToggle);
    const tools = h('div', { class: 'tb-group', role: 'radiogroup', 'aria-label': t('sv.mouseTool') });
    for (const x of TOOLS) {
      tools.append(this.button('tool-' + x.id, x.icon, t('tool.' + x.id), x.key.toUpperCase(), () => this.setTool(x.id),
        { role: 'radio', 'aria-checked': 'false' }));
    }
    const acts = h('div', { class: 'tb-group' });
    for (const x of ACTIONS) acts.append(this.button('act-' + x.id, x.icon, t('tool.' + x.id), x.key.toUpperCase(), () => this.act(x.run)));
    this.presetSel = h('select', { class: 'tb-select', 'aria-label': t('sv.preset'), title: t('sv.preset'),
      onchange: () => { this.applyPresetValue(this.presetSel.value); this.presetSel.value = ''; } });
    this.fillPresets();
    const cine = h('div', { class: 'tb-group' });
    this.playBtn = this.button('cine', 'play', t('tool.cine'), t('key.space'), () => this.act((v) => v.toggleCine()), { 'aria-pressed': 'false' });
    this.fpsInput = h('input', { type: 'number', min: '1', max: '60', step: '1', value: '15', class: 'tb-fps', 'aria-label': t('sv.fps'), title: t('sv.fps'),
      onchange: () => this.act((v) => { v.cine.fps = Math.max(1, Math.min(60, +this.fpsInput.value || 15)); v.invalidate(); }) });
    cine.append(this.playBtn, h('label', { class: 'tb-fps-wrap' }, this.fpsInput, h('span', {}, t('unit.fps'))));
    this.layoutSel = h('select', { class: 'tb-select', 'aria-label': t('sv.layout'), title: t('sv.layout'), onchange: () => this.setLayout(this.layoutSel.value) },
      ...LAYOUTS.map((l) => h('option', { value: l.id, 'data-wide': l.wide ? '1' : '0' }, t('layout.' + l.id))));
    const view = h('div', { class: 'tb-group' });
    this.syncBtn = this.button('sync', 'sync', t('tool.sync'), 'Y', () => this.toggleSetting('sync'), { 'aria-pressed': String(!!this.settings.sync) });
    this.refBtn = this.button('ref', 'ref', t('tool.ref'), 'K', () => this.toggleSetting('refLines'), { 'aria-pressed': String(!!this.settings.refLines) });
    this.ovBtn = this.button('overlay', 'overlay', t('tool.overlay'), 'G', () => this.toggleSetting('overlay'), { 'aria-pressed': String(!!this.settings.overlay) });
    view.append(this.syncBtn, this.refBtn, this.ovBtn,
      this.button('tags', 'tags', t('tool.tags'), 'T', () => this.openTags()),
      this.button('clear', 'trash', t('tool.clear'), 'Shift+Delete', () => this.clearAnnotations()));
    tb.append(tools, this.presetSel, acts, cine, this.layoutSel, view);
    return tb;
  }

  fillPresets() {
    const v = this.active;
    const opts = [h('option', { value: '' }, t('sv.preset'))];
    const wins = v && v.info ? v.info.windows : [];
    wins.forEach((w, i) => opts.push(h('option', { value: 'file:' + i }, `${w.name || t('wl.file')} (${Math.round(w.center)}/${Math.round(w.width)})`)));
    if (wins.length === 0) opts.push(h('option', { value: 'file:0' }, t('wl.auto')));
    for (const p of CT_PRESETS) opts.push(h('option', { value: 'ct:' + p.id }, `${t('preset.' + p.id)} (${p.center}/${p.width}) [${p.key}]`));
    this.presetSel.replaceChildren(...opts);
  }

  applyPresetValue(v) {
    if (!v) return;
    const [kind, id] = v.split(':');
    this.act((vp) => vp.applyPreset(kind === 'file' ? { file: +id } : CT_PRESETS.find((p) => p.id === id)));
  }

  toggleSetting(name) {
    this.settings[name] = !this.settings[name];
    this.ctx.saveSettings();
    this.syncBtn.setAttribute('aria-pressed', String(!!this.settings.sync));
    this.refBtn.setAttribute('aria-pressed', String(!!this.settings.refLines));
    this.ovBtn.setAttribute('aria-pressed', String(!!this.settings.overlay));
    this.viewports.forEach((v) => v.invalidate());
  }

  setTool(id) {
    this.tool = id;
    for (const b of this.toolbar.querySelectorAll('[role=radio]')) {
      const on = b.dataset.id === 'tool-' + id;
      b.setAttribute('aria-checked', String(on));
      b.classList.toggle('on', on);
    }
    for (const v of this.viewports) { v.el.dataset.tool = id; if (v.pending) { this.removeAnnotation(v.pending); v.pending = null; } }
  }

  act(fn) { const v = this.active || this.viewports[0]; if (v) fn(v); }

  /* ---------------- loading ---------------- */

  async load() {
    const study = new Study(this.dw, this.studyUID);
    this.study = study;
    this.status.textContent = t('vp.loading');
    try {
      // study attributes (patient, date) in parallel with the series list
      const [series, studies] = await Promise.all([
        study.load(),
        this.dw.searchStudies({ StudyInstanceUID: this.studyUID }).catch(() => []),
      ]);
      if (this.destroyed) return;
      this.studyDS = studies[0] || {};
      this.ctx.setTitle(personName(this.studyDS, T.PatientName, lang()) || t('app.title'));
      this.status.textContent = '';
      if (!series.length) { this.status.textContent = t('sv.empty'); return; }
      this.renderSeriesList();
      const firstSeries = series.find((s) => s.uid === this.wantSeries) || series[0];
      const vp = this.viewports[0];
      // fast first image: one instance first, the full list after
      const probe = firstSeries.images ? null : await firstSeries.probe(0).catch(() => null);
      if (this.destroyed) return;
      await vp.setSeries(firstSeries, probe);
      this.fillViewports();
      // thumbnails after the first image: they must not slow it down
      await vp.firstShown;
      this.loadThumbnails();
    } catch (e) {
      this.status.textContent = t('sv.loadError', { msg: e.message });
    }
  }

  fillViewports() {
    const used = new Set(this.viewports.map((v) => v.series).filter(Boolean));
    const free = this.study ? this.study.series.filter((s) => !used.has(s)) : [];
    for (const v of this.viewports) {
      if (!v.series && this.study && this.study.series.length) v.setSeries(free.shift() || this.study.series[0]);
    }
  }

  renderSeriesList() {
    this.seriesList.replaceChildren(...this.study.series.map((s) => {
      const thumb = h('div', { class: 'thumb', 'aria-hidden': 'true' });
      this.thumbs.set(s.uid, thumb);
      const li = h('li', { class: 'series-card', draggable: 'true', tabindex: '0', role: 'button', 'data-series': s.uid,
        'aria-label': t('sv.seriesLabel', { n: s.number, desc: s.description || '', mod: s.modality, count: s.count }),
        ondragstart: (e) => { e.dataTransfer.setData('text/x-yy-series', s.uid); e.dataTransfer.effectAllowed = 'copy'; },
        onclick: () => this.assignSeries(this.active || this.viewports[0], s.uid),
        onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); this.assignSeries(this.active || this.viewports[0], s.uid); } },
      }, thumb, h('div', { class: 'series-text' },
        h('div', { class: 'series-title' }, `${s.number ? 'S' + s.number + ' · ' : ''}${s.modality}`),
        h('div', { class: 'series-desc' }, s.description || t('sv.noDesc')),
        h('div', { class: 'series-count' }, t(s.count === 1 ? 'sv.image1' : 'sv.images', { n: s.count }))));
      return li;
    }));
    this.markSeriesInUse();
  }

  markSeriesInUse() {
    const inUse = new Set(this.viewports.map((v) => v.series && v.series.uid));
    for (const li of this.seriesList.children) li.classList.toggle('in-use', inUse.has(li.dataset.series));
  }

  refreshThumbProgress() { /* hook for future progress bars */ }

  /** Server thumbnails when the server has them, else the middle frame rendered here. */
  async loadThumbnails() {
    for (const s of this.study.series) {
      if (this.destroyed) return;
      const box = this.thumbs.get(s.uid);
      try {
        const noImages = NON_IMAGE_MODALITIES.includes(s.modality);
        const blob = noImages ? null : await this.dw.thumbnail(this.studyUID, s.uid, 128, { imageLikely: IMAGE_MODALITIES.includes(s.modality) });
        if (blob) {
          const img = h('img', { alt: '', src: URL.createObjectURL(blob) });
          img.onload = () => URL.revokeObjectURL(img.src);
          box.replaceChildren(img);
          continue;
        }
        await this.clientThumb(s, box);
      } catch {
        box.classList.add('none');
        box.textContent = s.modality || '?';
      }
    }
  }

  async clientThumb(s, box) {
    let inst;
    let frame = 0;
    if (s.images) { const im = s.images[Math.floor(s.images.length / 2)]; inst = im.inst; frame = im.frame; }
    else inst = await s.probe(Math.floor(Math.max(0, s.count - 1) / 2));
    if (!inst) throw new Error('no instance');
    if (inst.kind !== 'image') {
      if (inst.kind === 'other') await s.ensureFull(inst);
      box.classList.add('doc');
      box.textContent = inst.kind === 'sr' ? 'SR' : inst.kind === 'pdf' ? 'PDF' : s.modality;
      return;
    }
    if (inst.frames > 1) frame = Math.floor(inst.frames / 2);
    const fr = await this.loader.load(inst, frame, 50, 'thumbs');
    const info = inst.info(frame);
    const [lo, hi] = modalityRange(fr, info);
    const w = !fr.color && info.windows[0] && !fr.eightBit ? info.windows[0]
      : fr.isFloat ? { center: (lo + hi) / 2, width: Math.max(1e-6, hi - lo) } : { center: (lo + hi) / 2 + 0.5, width: hi - lo + 1 };
    const src = document.createElement('canvas');
    src.width = fr.cols; src.height = fr.rows;
    const sctx = src.getContext('2d');
    const id = sctx.createImageData(fr.cols, fr.rows);
    renderFrame(fr, { wc: w.center, ww: w.width, invert: info.mono1 !== !!info.presentationInverse && !fr.color, voiFunction: fr.isFloat && info.voiFunction === 'LINEAR' ? 'LINEAR_EXACT' : info.voiFunction,
      slope: fr.eightBit ? 1 : info.slope, intercept: fr.eightBit ? 0 : info.intercept, modLut: fr.eightBit ? null : info.modLut }, id);
    sctx.putImageData(id, 0, 0);
    const c = document.createElement('canvas');
    const sc = Math.min(96 / fr.cols, 96 / fr.rows);
    c.width = Math.max(1, Math.round(fr.cols * sc)); c.height = Math.max(1, Math.round(fr.rows * sc));
    const cctx = c.getContext('2d');
    cctx.imageSmoothingQuality = 'high';
    cctx.drawImage(src, 0, 0, c.width, c.height);
    box.replaceChildren(c);
  }

  /* ---------------- layout and viewports ---------------- */

  setLayout(id, fill = true) {
    for (const o of this.layoutSel.options) if (o.dataset.wide === '1') o.disabled = window.innerWidth < 1000;
    const l = LAYOUTS.find((x) => x.id === id) || LAYOUTS[0];
    if (l.wide && window.innerWidth < 1000) return this.setLayout('1x2', fill);
    this.layout = l.id;
    this.layoutSel.value = l.id;
    this.grid.dataset.layout = l.id;
    this.grid.style.gridTemplateColumns = `repeat(${l.cols}, minmax(0, 1fr))`;
    this.grid.style.gridTemplateRows = `repeat(${l.rows}, minmax(0, 1fr))`;
    const n = l.rows * l.cols;
    while (this.viewports.length > n) {
      const v = this.viewports.pop();
      if (this.active === v) this.active = null;
      v.destroy();
    }
    while (this.viewports.length < n) {
      const v = new Viewport(this, this.viewports.length);
      v.el.dataset.tool = this.tool;
      this.viewports.push(v);
      this.grid.append(v.el);
    }
    if (!this.active) this.setActive(this.viewports[0]);
    if (fill) this.fillViewports();
    this.markSeriesInUse && this.seriesList && this.markSeriesInUse();
  }

  setActive(v) {
    if (this.active === v) return;
    this.active = v;
    for (const x of this.viewports) x.el.classList.toggle('active', x === v);
    this.syncToolbar();
    this.viewports.forEach((x) => x.invalidate());
  }

  syncToolbar() {
    const v = this.active;
    if (!v) return;
    this.fpsInput.value = String(v.cine.fps);
    this.playBtn.setAttribute('aria-pressed', String(v.cine.playing));
    this.playBtn.querySelector('.icon').replaceWith(icon(v.cine.playing ? 'pause' : 'play'));
    this.fillPresets();
  }

  assignSeries(v, uid) {
    const s = this.study && this.study.series.find((x) => x.uid === uid);
    if (!s || !v) return;
    this.setActive(v);
    v.series = null; // force a reload even for the same series
    v.setSeries(s);
  }

  onViewportChanged(v) {
    this.markSeriesInUse();
    if (v === this.active) this.syncToolbar();
  }

  onPresentationChanged() { /* per viewport */ }

  /** Synchronized scrolling (same frame of reference, parallel planes) and reference lines. */
  onImageChanged(v) {
    if (this.settings.sync && v.info && v.info.ipp && v.info.normal) {
      const fa = str(v.image.inst.ds, T.FrameOfReferenceUID);
      for (const o of this.viewports) {
        if (o === v || !o.images.length || !o.info || !o.info.normal || o.images.length < 2) continue;
        if (!fa || str(o.image.inst.ds, T.FrameOfReferenceUID) !== fa) continue;
        if (Math.abs(dot(v.info.normal, o.info.normal)) < 0.95) continue;
        const n = o.info.normal;
        const target = dot(v.info.ipp, n);
        let best = -1, bd = Infinity;
        o.images.forEach((im, i) => {
          const inf = im.inst.info(im.frame);
          if (!inf.ipp) return;
          const d = Math.abs(dot(inf.ipp, n) - target);
          if (d < bd) { bd = d; best = i; }
        });
        if (best >= 0 && best !== o.index) o.show(best, { sync: false });
      }
    }
    for (const o of this.viewports) if (o !== v) o.invalidate();
    if (v === this.active && this.presetSel && this.presetFor !== v.image) { this.presetFor = v.image; this.fillPresets(); }
  }

  cineChanged(v) {
    if (v === this.active) this.syncToolbar();
    this.requestDraw();
  }

  /* ---------------- drawing loop ---------------- */

  requestDraw() {
    if (this.drawQueued || this.destroyed) return;
    this.drawQueued = true;
    this.raf = requestAnimationFrame((now) => this.frameTick(now));
  }

  frameTick(now) {
    this.drawQueued = false;
    let playing = false;
    for (const v of this.viewports) if (v.cine.playing) { playing = true; v.cineTick(now); }
    for (const v of this.viewports) if (v.dirty) v.draw();
    if (playing) this.requestDraw();
  }

  /* ---------------- annotations ---------------- */

  annotationsFor(key) { return this.annotations.get(key) || []; }

  addAnnotation(a) {
    if (!this.annotations.has(a.key)) this.annotations.set(a.key, []);
    this.annotations.get(a.key).push(a);
    this.selectedAnnotation = a;
  }

  removeAnnotation(a) {
    if (!a) return;
    const l = this.annotations.get(a.key);
    if (l) { const i = l.indexOf(a); if (i >= 0) l.splice(i, 1); }
    if (this.selectedAnnotation === a) this.selectedAnnotation = null;
    this.viewports.forEach((v) => v.invalidate());
  }

  selectAnnotation(a) { this.selectedAnnotation = a || null; this.viewports.forEach((v) => v.invalidate()); }

  clearAnnotations() {
    const v = this.active;
    if (!v || !v.image) return;
    this.annotations.delete(v.image.inst.key(v.image.frame));
    v.pending = null;
    this.selectedAnnotation = null;
    this.viewports.forEach((x) => x.invalidate());
  }

  openTags(inst) {
    const v = this.active;
    const target = inst || (v && v.image && v.image.inst);
    if (target) openTagBrowser(target, v && v.image ? v.image.frame : 0);
  }

  /* ---------------- keyboard ---------------- */

  key(e) {
    const tgt = e.target;
    if (tgt && (tgt.closest('input, select, textarea, dialog[open]') || tgt.isContentEditable)) return;
    if (document.querySelector('dialog[open]')) return;
    const v = this.active || this.viewports[0];
    if (!v) return;
    const k = e.key;
    const lower = k.length === 1 ? k.toLowerCase() : k;
    let done = true;
    if (e.altKey && /^[1-5]$/.test(k)) this.setLayout(LAYOUTS[+k - 1].id);
    else if (e.altKey && /^Digit[1-5]$/.test(e.code)) this.setLayout(LAYOUTS[+e.code.slice(5) - 1].id);
    else if (e.ctrlKey || e.metaKey || e.altKey) done = false;
    else if (k === 'ArrowDown' || k === 'ArrowRight') { if (e.shiftKey) this.changeFps(v, -1); else v.step(1); }
    else if (k === 'ArrowUp' || k === 'ArrowLeft') { if (e.shiftKey) this.changeFps(v, 1); else v.step(-1); }
    else if (k === 'PageDown') v.show(v.index + 10);
    else if (k === 'PageUp') v.show(v.index - 10);
    else if (k === 'Home') v.show(0);
    else if (k === 'End') v.show(v.images.length - 1);
    else if (k === ' ' || lower === 'c') v.toggleCine();
    else if (k === '+' || k === '=') v.zoomBy(1.25);
    else if (k === '-' || k === '_') v.zoomBy(0.8);
    else if (k === '0') v.applyPreset({ file: 0 });
    else if (/^[1-5]$/.test(k)) v.applyPreset(CT_PRESETS[+k - 1]);
    else if (k === 'Delete' || k === 'Backspace') { if (e.shiftKey) this.clearAnnotations(); else this.removeAnnotation(this.selectedAnnotation); }
    else if (k === 'Escape') { if (v.pending) { this.removeAnnotation(v.pending); v.pending = null; } else if (v.cine.playing) v.toggleCine(false); else this.selectAnnotation(null); }
    else if (k === 'Tab' || lower === 'n') {
      if (k === 'Tab' && this.viewports.length < 2) { done = false; }
      else {
        const i = this.viewports.indexOf(v);
        const next = this.viewports[(i + (e.shiftKey ? -1 : 1) + this.viewports.length) % this.viewports.length];
        next.el.focus();
        this.setActive(next);
      }
    } else if (lower === 'y') this.toggleSetting('sync');
    else if (lower === 'k') this.toggleSetting('refLines');
    else if (lower === 'g') this.toggleSetting('overlay');
    else if (lower === 't') this.openTags();
    else if (lower === 'q') this.togglePanel();
    else if (k === '?') this.ctx.openHelp();
    else {
      const tool = TOOLS.find((x) => x.key === lower);
      const action = ACTIONS.find((x) => x.key === lower);
      if (tool) this.setTool(tool.id);
      else if (action) action.run(v);
      else done = false;
    }
    if (done) e.preventDefault();
  }

  changeFps(v, d) {
    v.cine.fps = Math.max(1, Math.min(60, v.cine.fps + d));
    this.fpsInput.value = String(v.cine.fps);
    v.invalidate();
  }
}

export { formatDA, num };
