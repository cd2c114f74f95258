// tagbrowser.js - every attribute of an instance from its WADO-RS metadata:
// tag, keyword, VR, value; sequences nested and foldable; a filter.

import { tagLabel, pnToString } from './dicom.js';
import { t, lang } from '../i18n.js';

let dictPromise = null;

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

function valueText(e) {
  if (!e) return '';
  if (e.BulkDataURI) return `[${t('tags.bulk')}]`;
  if (e.InlineBinary) return `[${t('tags.binary', { n: Math.floor((e.InlineBinary.length * 3) / 4) })}]`;
  if (!Array.isArray(e.Value)) return '';
  if (e.vr === 'PN') return e.Value.map((v) => (v && typeof v === 'object' ? [v.Alphabetic, v.Ideographic, v.Phonetic].filter(Boolean).join(' = ') : String(v))).join(' \\ ');
  const s = e.Value.map((v) => (v === null ? '' : String(v))).join(' \\ ');
  return s.length > 400 ? s.slice(0, 400) + '…' : s;
}

function rows(ds, kw, depth) {
  const out = [];
  for (const tag of Object.keys(ds).sort()) {
    const e = ds[tag];
    const name = kw(tag);
    if (e.vr === 'SQ') {
      const items = Array.isArray(e.Value) ? e.Value : [];
      const det = h('details', { class: 'tag-sq', open: depth < 1 && items.length <= 3 ? true : false },
        h('summary', {}, h('code', {}, tagLabel(tag)), ' ', h('span', { class: 'kw' }, name), ' ', h('span', { class: 'vr' }, 'SQ'),
          ' ', h('span', { class: 'val' }, t('tags.items', { n: items.length }))),
        ...items.map((it, i) => h('div', { class: 'tag-item' }, h('div', { class: 'item-h' }, t('tags.item', { n: i + 1 })), ...rows(it || {}, kw, depth + 1))));
      det.dataset.search = `${tag} ${name}`.toLowerCase();
      out.push(det);
    } else {
      const val = valueText(e);
      const row = h('div', { class: 'tag-row' }, h('code', {}, tagLabel(tag)), h('span', { class: 'kw' }, name),
        h('span', { class: 'vr' }, e.vr || ''), h('span', { class: 'val' }, val));
      row.dataset.search = `${tag} ${tagLabel(tag)} ${name} ${val}`.toLowerCase();
      out.push(row);
    }
  }
  return out;
}

export async function openTagBrowser(inst, frame = 0) {
  const dlg = document.getElementById('dlg-tags');
  const body = dlg.querySelector('.tags-body');
  const filter = dlg.querySelector('input[type=search]');
  dlg.querySelector('.tags-title').textContent = `${t('tags.title')} — ${inst.series.modality} ${inst.number ? '#' + inst.number : ''}${inst.frames > 1 ? ' · ' + t('ov.frame') + ' ' + (frame + 1) : ''}`;
  body.replaceChildren(h('p', {}, t('vp.loading')));
  filter.value = '';
  if (!dlg.open) dlg.showModal();
  try {
    dictPromise = dictPromise || import('./dict.js');
    const [dict, ds] = await Promise.all([dictPromise, inst.series.ensureFull(inst)]);
    body.replaceChildren(...rows(ds, dict.keyword, 0));
    body.dataset.count = String(Object.keys(ds).length);
    void lang; void pnToString;
  } catch (e) {
    body.replaceChildren(h('p', { class: 'error' }, t('vp.error', { msg: e.message })));
  }
  filter.oninput = () => {
    const q = filter.value.trim().toLowerCase();
    for (const el of body.querySelectorAll('.tag-row, .tag-sq')) {
      const hit = !q || el.dataset.search.includes(q) || (el.tagName === 'DETAILS' && el.textContent.toLowerCase().includes(q));
      el.hidden = !hit;
      if (q && hit && el.tagName === 'DETAILS') el.open = true;
    }
  };
  filter.focus();
}
