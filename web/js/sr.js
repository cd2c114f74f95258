// sr.js - a Structured Report as readable text: the document header and
// its content tree (containers as headings, text, codes, numbers with
// units, dates, names, references).

import { T, str, values, seqItems, first, personName, formatDA, formatTM, pnToString } from './dicom.js';
import { t, lang } from '../i18n.js';

function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== '') e.append(k);
  return e;
}

function codeMeaning(item, seqTag) {
  const c = seqItems(item, seqTag)[0];
  return c ? str(c, T.CodeMeaning) || str(c, T.CodeValue) : '';
}

function itemValue(item) {
  const L = lang();
  switch (str(item, T.ValueType)) {
    case 'TEXT': return str(item, T.TextValue);
    case 'CODE': return codeMeaning(item, T.ConceptCodeSequence);
    case 'NUM': {
      const mv = seqItems(item, T.MeasuredValueSequence)[0];
      if (!mv) return '';
      const unit = codeMeaning(mv, T.MeasurementUnitsCodeSequence);
      const v = first(mv, T.NumericValue);
      return `${v !== undefined ? v : ''}${unit && unit !== 'no units' ? ' ' + unit : ''}`;
    }
    case 'DATE': return formatDA(str(item, T.Date), L);
    case 'TIME': return formatTM(str(item, T.Time), L);
    case 'DATETIME': { const v = str(item, T.DateTime); return `${formatDA(v.slice(0, 8), L)} ${formatTM(v.slice(8), L)}`; }
    case 'PNAME': return pnToString(first(item, T.PersonName), L);
    case 'UIDREF': return str(item, T.UID);
    case 'IMAGE': case 'COMPOSITE': case 'WAVEFORM': {
      const r = seqItems(item, T.ReferencedSOPSequence)[0];
      return r ? `${t('sr.reference')} ${str(r, '00081155')}` : t('sr.reference');
    }
    case 'SCOORD': case 'SCOORD3D': return `${t('sr.coords')} (${values(item, '00700022').length / 2})`;
    default: return '';
  }
}

function renderItems(items, depth) {
  const out = [];
  for (const item of items) {
    const vt = str(item, T.ValueType);
    const name = codeMeaning(item, T.ConceptNameCodeSequence);
    const children = seqItems(item, T.ContentSequence);
    if (vt === 'CONTAINER') {
      const level = Math.min(6, depth + 3);
      const sec = h('section', { class: 'sr-container' });
      if (name) sec.append(h('h' + level, {}, name));
      sec.append(...renderItems(children, depth + 1));
      out.push(sec);
      continue;
    }
    const v = itemValue(item);
    const p = h('div', { class: 'sr-item', 'data-vt': vt });
    if (name) p.append(h('span', { class: 'sr-name' }, name + ': '));
    p.append(h('span', { class: 'sr-value' }, v));
    if (children.length) {
      const sub = h('div', { class: 'sr-children' }, ...renderItems(children, depth + 1));
      p.append(sub);
    }
    out.push(p);
  }
  return out;
}

export function renderSR(ds) {
  const L = lang();
  const title = codeMeaning(ds, T.ConceptNameCodeSequence) || t('sr.title');
  const meta = [
    [t('sr.patient'), personName(ds, T.PatientName, L)],
    [t('sr.date'), `${formatDA(str(ds, '00080023') || str(ds, T.StudyDate), L)} ${formatTM(str(ds, '00080033'), L)}`.trim()],
    [t('sr.completion'), str(ds, T.CompletionFlag)],
    [t('sr.verification'), str(ds, T.VerificationFlag)],
  ].filter(([, v]) => v);
  return h('article', { class: 'sr', lang: 'und' },
    h('h2', {}, title),
    h('dl', { class: 'sr-meta' }, ...meta.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    ...renderItems(seqItems(ds, T.ContentSequence), 0));
}
