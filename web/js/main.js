// main.js - start-up: settings, language, the DICOMweb client, the frame
// cache and loader, hash routing (#/ study list, #/study/UID viewer),
// dialogs (help, settings), the service worker and install prompt.

import config from '../config.js';
import { t, lang, setLang, initLang, applyI18n, LANGS } from '../i18n.js';
import { DicomWeb } from './dicomweb.js';
import { ByteLRU, defaultCacheBytes } from './cache.js';
import { FrameLoader } from './series.js';
import { StudyList } from './studylist.js';
import { StudyViewer, shortcutList } from './viewer.js';
import { icon } from './icons.js';

const SETTINGS_KEY = 'yy.settings';

function loadSettings() {
  const def = { root: '', cacheMB: 0, overlay: true, sync: true, refLines: true };
  try { return { ...def, ...JSON.parse(localStorage.getItem(SETTINGS_KEY) || '{}') }; } catch { return def; }
}

const ctx = {
  config,
  settings: loadSettings(),
  view: null,
  saveSettings() { try { localStorage.setItem(SETTINGS_KEY, JSON.stringify(ctx.settings)); } catch { /* private mode */ } },
  navigate(hash) { if (location.hash === hash) route(); else location.hash = hash; },
  setTitle(s) {
    document.getElementById('page-title').textContent = s || '';
    document.title = s ? `${s} — ${t('app.title')}` : t('app.title');
  },
  openHelp,
};

function makeClient() {
  const root = ctx.settings.root || config.dicomwebRoot || '/dicomweb';
  ctx.dw = new DicomWeb(root);
  ctx.cache = ctx.cache || new ByteLRU(defaultCacheBytes(ctx.settings.cacheMB ? ctx.settings.cacheMB * 1048576 : config.cacheBytes));
  ctx.cache.clear();
  ctx.loader = new FrameLoader(ctx.dw, ctx.cache, { concurrency: config.concurrency || 4 });
  window.yy = ctx; // for the console and the browser tests
}

function route() {
  if (ctx.view) ctx.view.destroy();
  const main = document.getElementById('app');
  const m = /^#\/study\/([^/?]+)(?:\/series\/([^/?]+))?/.exec(location.hash);
  const back = document.getElementById('nav-back');
  if (m) {
    back.hidden = false;
    document.body.dataset.view = 'study';
    ctx.view = new StudyViewer(ctx, decodeURIComponent(m[1]), { seriesUID: m[2] && decodeURIComponent(m[2]) });
  } else {
    back.hidden = true;
    document.body.dataset.view = 'list';
    ctx.setTitle('');
    ctx.view = new StudyList(ctx);
  }
  ctx.view.mount(main);
}

/* ---------------- dialogs ---------------- */

function openHelp() {
  const dlg = document.getElementById('dlg-help');
  const tbody = dlg.querySelector('tbody');
  tbody.replaceChildren(...shortcutList().map(([k, label]) => {
    const tr = document.createElement('tr');
    const a = document.createElement('td');
    const kbd = document.createElement('kbd');
    kbd.textContent = k;
    a.append(kbd);
    const b = document.createElement('td');
    b.textContent = t(label);
    tr.append(a, b);
    return tr;
  }));
  dlg.showModal();
}

function openSettings() {
  const dlg = document.getElementById('dlg-settings');
  const f = dlg.querySelector('form');
  f.root.value = ctx.settings.root || config.dicomwebRoot;
  f.cacheMB.value = String(Math.round(ctx.cache.maxBytes / 1048576));
  f.overlay.checked = !!ctx.settings.overlay;
  dlg.querySelector('.cache-use').textContent = t('set.cacheUse', { used: Math.round(ctx.cache.bytes / 1048576), n: ctx.cache.map.size });
  dlg.showModal();
}

function saveSettingsForm(e) {
  e.preventDefault();
  const f = e.target;
  const root = f.root.value.trim().replace(/\/+$/, '');
  const cacheMB = Math.max(32, Math.min(4096, parseInt(f.cacheMB.value, 10) || 256));
  const changedRoot = root !== (ctx.settings.root || config.dicomwebRoot);
  ctx.settings.root = root === config.dicomwebRoot ? '' : root;
  ctx.settings.cacheMB = cacheMB;
  ctx.settings.overlay = f.overlay.checked;
  ctx.saveSettings();
  ctx.cache.maxBytes = cacheMB * 1048576;
  ctx.cache.trim();
  document.getElementById('dlg-settings').close();
  if (changedRoot) { makeClient(); ctx.navigate('#/'); } else if (ctx.view && ctx.view.viewports) ctx.view.viewports.forEach((v) => v.invalidate());
}

function renderLangSelect() {
  const sel = document.getElementById('lang-select');
  sel.replaceChildren(...LANGS.map((l) => { const o = document.createElement('option'); o.value = l.id; o.textContent = l.name; return o; }));
  sel.value = lang().startsWith('zh') ? 'zh-CN' : 'en';
}

function setupChrome() {
  for (const [id, name] of [['btn-help', 'help'], ['btn-settings', 'settings'], ['btn-install', 'install'], ['nav-back', 'back']]) {
    const b = document.getElementById(id);
    b.prepend(icon(name));
  }
  document.getElementById('btn-help').addEventListener('click', openHelp);
  document.getElementById('btn-settings').addEventListener('click', openSettings);
  document.getElementById('settings-form').addEventListener('submit', saveSettingsForm);
  for (const d of document.querySelectorAll('dialog')) {
    d.addEventListener('click', (e) => { if (e.target === d) d.close(); });
    for (const c of d.querySelectorAll('[data-close]')) c.addEventListener('click', () => d.close());
  }
  document.getElementById('lang-select').addEventListener('change', (e) => {
    setLang(e.target.value);
    applyI18n(document);
    route(); // re-render in the new language
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === '?' && !e.target.closest('input, textarea, select') && !document.querySelector('dialog[open]') && document.body.dataset.view === 'list') {
      e.preventDefault();
      openHelp();
    }
  });
  // installable app
  let deferred = null;
  const install = document.getElementById('btn-install');
  window.addEventListener('beforeinstallprompt', (e) => { e.preventDefault(); deferred = e; install.hidden = false; });
  install.addEventListener('click', async () => { if (!deferred) return; deferred.prompt(); await deferred.userChoice; deferred = null; install.hidden = true; });
  if ('serviceWorker' in navigator && config.serviceWorker !== false && location.protocol !== 'file:') {
    navigator.serviceWorker.register('./sw.js').catch(() => { /* an http:// origin that is not localhost */ });
  }
}

initLang();
applyI18n(document);
renderLangSelect();
makeClient();
setupChrome();
window.addEventListener('hashchange', route);
route();
