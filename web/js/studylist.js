// studylist.js - the study search: patient name (hanzi or pinyin, fuzzy),
// patient ID, accession number, date presets or a custom range, modality;
// sortable columns (QIDO orderby), paging (limit/offset); the last search
// is kept in localStorage.

import { T, str, num, values, personName, formatDA, toDA } from './dicom.js';
import { t, lang } from '../i18n.js';

const KEY = 'yy.search';
const MODALITIES = ['CT', 'MR', 'US', 'CR', 'DX', 'MG', 'NM', 'PT', 'XA', 'RF', 'OT', 'SC', 'SR', 'SEG', 'ECG', 'RTDOSE', 'RTPLAN'];
const COLUMNS = [
  { id: 'name', sort: 'PatientName' }, { id: 'pid', sort: 'PatientID' }, { id: 'birth', sort: 'PatientBirthDate' },
  { id: 'date', sort: 'StudyDate' }, { id: 'modality' }, { id: 'desc', sort: 'StudyDescription' },
  { id: 'acc', sort: 'AccessionNumber' }, { id: 'count', sort: 'NumberOfStudyRelatedInstances' },
];

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

function loadState() {
  const def = { name: '', pid: '', acc: '', datePreset: 'any', from: '', to: '', modality: '', sort: '-StudyDate', page: 0 };
  try { return { ...def, ...JSON.parse(localStorage.getItem(KEY) || '{}') }; } catch { return def; }
}

export class StudyList {
  constructor(ctx) {
    this.ctx = ctx;
    this.dw = ctx.dw;
    this.pageSize = ctx.config.pageSize || 25;
    this.state = loadState();
    this.el = h('div', { class: 'study-list' });
    this.seq = 0;
  }

  mount(parent) {
    const s = this.state;
    const field = (id, label, input) => h('label', { class: 'field', for: id }, h('span', {}, label), input);
    this.f = {
      name: h('input', { id: 'q-name', type: 'search', value: s.name, autocomplete: 'off', placeholder: t('sl.namePh'), enterkeyhint: 'search' }),
      pid: h('input', { id: 'q-pid', type: 'search', value: s.pid, autocomplete: 'off' }),
      acc: h('input', { id: 'q-acc', type: 'search', value: s.acc, autocomplete: 'off' }),
      datePreset: h('select', { id: 'q-date' }, ...['any', 'today', '7d', '30d', 'custom'].map((p) => h('option', { value: p }, t('sl.date.' + p)))),
      from: h('input', { id: 'q-from', type: 'date', value: s.from, 'aria-label': t('sl.from') }),
      to: h('input', { id: 'q-to', type: 'date', value: s.to, 'aria-label': t('sl.to') }),
      modality: h('select', { id: 'q-mod' }, h('option', { value: '' }, t('sl.anyModality')), ...MODALITIES.map((m) => h('option', { value: m }, m))),
    };
    this.f.datePreset.value = s.datePreset;
    this.f.modality.value = s.modality;
    this.custom = h('div', { class: 'custom-range', hidden: s.datePreset !== 'custom' },
      field('q-from', t('sl.from'), this.f.from), field('q-to', t('sl.to'), this.f.to));
    this.f.datePreset.addEventListener('change', () => {
      this.custom.hidden = this.f.datePreset.value !== 'custom';
      if (this.f.datePreset.value !== 'custom') this.search(0);
    });
    this.f.modality.addEventListener('change', () => this.search(0));
    const form = h('form', { class: 'search-form', role: 'search', onsubmit: (e) => { e.preventDefault(); this.search(0); } },
      field('q-name', t('sl.name'), this.f.name), field('q-pid', t('sl.pid'), this.f.pid), field('q-acc', t('sl.acc'), this.f.acc),
      field('q-date', t('sl.date'), this.f.datePreset), this.custom, field('q-mod', t('sl.modality'), this.f.modality),
      h('div', { class: 'form-actions' },
        h('button', { type: 'submit', class: 'btn primary' }, t('sl.search')),
        h('button', { type: 'button', class: 'btn', onclick: () => this.clear() }, t('sl.clear'))));
    this.thead = h('thead', {}, h('tr', {}, ...COLUMNS.map((c) => this.header(c))));
    this.tbody = h('tbody');
    this.table = h('table', { class: 'studies', 'aria-label': t('sl.results') }, this.thead, this.tbody);
    this.info = h('p', { class: 'sl-info', role: 'status', 'aria-live': 'polite' });
    this.prev = h('button', { type: 'button', class: 'btn', onclick: () => this.search(this.state.page - 1) }, t('sl.prev'));
    this.next = h('button', { type: 'button', class: 'btn', onclick: () => this.search(this.state.page + 1) }, t('sl.next'));
    this.pageLabel = h('span', { class: 'page-label' });
    const pager = h('nav', { class: 'pager', 'aria-label': t('sl.pages') }, this.prev, this.pageLabel, this.next);
    this.el.append(h('h1', { class: 'visually-hidden' }, t('sl.title')), form, this.info, h('div', { class: 'table-wrap' }, this.table), pager);
    parent.append(this.el);
    this.search(s.page || 0);
  }

  destroy() { this.el.remove(); }

  header(c) {
    const label = t('sl.col.' + c.id);
    if (!c.sort) return h('th', { scope: 'col' }, label);
    const cur = this.state.sort;
    const dir = cur === c.sort ? 'ascending' : cur === '-' + c.sort ? 'descending' : 'none';
    const btn = h('button', { type: 'button', class: 'sort', onclick: () => {
      this.state.sort = this.state.sort === c.sort ? '-' + c.sort : c.sort;
      this.thead.replaceChildren(h('tr', {}, ...COLUMNS.map((x) => this.header(x))));
      this.search(0);
    } }, label, h('span', { class: 'sort-ind', 'aria-hidden': 'true' }, dir === 'ascending' ? ' ▲' : dir === 'descending' ? ' ▼' : ''));
    return h('th', { scope: 'col', 'aria-sort': dir }, btn);
  }

  clear() {
    Object.assign(this.state, { name: '', pid: '', acc: '', datePreset: 'any', from: '', to: '', modality: '', page: 0 });
    for (const k of ['name', 'pid', 'acc', 'from', 'to']) this.f[k].value = '';
    this.f.datePreset.value = 'any';
    this.f.modality.value = '';
    this.custom.hidden = true;
    this.search(0);
  }

  query() {
    const s = this.state;
    const q = { limit: this.pageSize + 1, offset: s.page * this.pageSize, orderby: s.sort };
    if (s.name) {
      q.PatientName = /[*?]/.test(s.name) || !this.ctx.config.nameWildcard ? s.name : s.name + '*';
      q.fuzzymatching = 'true';
    }
    if (s.pid) q.PatientID = s.pid;
    if (s.acc) q.AccessionNumber = s.acc;
    if (s.modality) q.ModalitiesInStudy = s.modality;
    const today = new Date();
    const back = (d) => { const x = new Date(today); x.setDate(x.getDate() - d); return toDA(x); };
    if (s.datePreset === 'today') q.StudyDate = toDA(today);
    else if (s.datePreset === '7d') q.StudyDate = `${back(6)}-${toDA(today)}`;
    else if (s.datePreset === '30d') q.StudyDate = `${back(29)}-${toDA(today)}`;
    else if (s.datePreset === 'custom' && (s.from || s.to)) q.StudyDate = `${s.from.replace(/-/g, '')}-${s.to.replace(/-/g, '')}`;
    return q;
  }

  async search(page) {
    const s = this.state;
    Object.assign(s, {
      name: this.f.name.value.trim(), pid: this.f.pid.value.trim(), acc: this.f.acc.value.trim(),
      datePreset: this.f.datePreset.value, from: this.f.from.value, to: this.f.to.value, modality: this.f.modality.value,
      page: Math.max(0, page || 0),
    });
    try { localStorage.setItem(KEY, JSON.stringify(s)); } catch { /* private mode */ }
    const seq = ++this.seq;
    this.info.textContent = t('sl.searching');
    this.el.setAttribute('aria-busy', 'true');
    try {
      const list = await this.dw.searchStudies(this.query());
      if (seq !== this.seq) return;
      const more = list.length > this.pageSize;
      this.render(list.slice(0, this.pageSize), more);
    } catch (e) {
      if (seq !== this.seq) return;
      this.tbody.replaceChildren();
      this.info.textContent = t('sl.error', { msg: e.message });
      this.prev.disabled = this.next.disabled = true;
    } finally {
      if (seq === this.seq) this.el.removeAttribute('aria-busy');
    }
  }

  render(list, more) {
    const L = lang();
    const s = this.state;
    this.tbody.replaceChildren(...list.map((ds) => {
      const uid = str(ds, T.StudyInstanceUID);
      const open = () => this.ctx.navigate(`#/study/${encodeURIComponent(uid)}`);
      const cells = {
        name: personName(ds, T.PatientName, L) || t('sl.noName'), pid: str(ds, T.PatientID),
        birth: formatDA(str(ds, T.PatientBirthDate), L), date: formatDA(str(ds, T.StudyDate), L),
        modality: values(ds, T.ModalitiesInStudy).join(', '), desc: str(ds, T.StudyDescription),
        acc: str(ds, T.AccessionNumber),
        count: t('sl.countText', { s: num(ds, T.NumberOfStudyRelatedSeries, 0), i: num(ds, T.NumberOfStudyRelatedInstances, 0) }),
      };
      return h('tr', { tabindex: '0', 'data-study': uid, 'aria-label': `${cells.name} ${cells.date}`, onclick: open,
        onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); } } },
      ...COLUMNS.map((c) => h('td', { 'data-label': t('sl.col.' + c.id), class: 'c-' + c.id }, cells[c.id] || '')));
    }));
    const from = s.page * this.pageSize + 1;
    this.info.textContent = list.length ? t('sl.showing', { from, to: from + list.length - 1 }) : t('sl.none');
    this.pageLabel.textContent = t('sl.page', { n: s.page + 1 });
    this.prev.disabled = s.page === 0;
    this.next.disabled = !more;
  }
}
