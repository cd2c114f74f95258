// sw.js - service worker: keeps the app shell (the viewer's own files) for
// offline start. Network first (a new version is picked up at once), the
// cached copy when offline. DICOM data is never cached here: requests for
// anything not in SHELL (QIDO, WADO, frames, bulk data) are not touched.

const CACHE = 'yy-shell-v1';
const SHELL = [
  './', 'index.html', 'app.css', 'config.js', 'i18n.js', 'manifest.webmanifest',
  'icons/icon.svg', 'icons/icon-192.png', 'icons/icon-512.png', 'icons/maskable-512.png',
  'js/main.js', 'js/dicom.js', 'js/dicomweb.js', 'js/pixels.js', 'js/cache.js', 'js/series.js',
  'js/viewport.js', 'js/viewer.js', 'js/studylist.js', 'js/measure.js', 'js/sr.js', 'js/tagbrowser.js',
  'js/icons.js', 'js/dict.js',
];

const scope = new URL(self.registration ? self.registration.scope : './', self.location.href);
const shellURLs = new Set(SHELL.map((p) => new URL(p, scope).href));

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith('yy-shell-') && k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

function timeout(ms) { return new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), ms)); }

async function networkFirst(request, cacheKey) {
  const cache = await caches.open(CACHE);
  try {
    const resp = await Promise.race([fetch(request), timeout(5000)]);
    if (resp.ok && resp.type === 'basic') cache.put(cacheKey, resp.clone());
    return resp;
  } catch (e) {
    const hit = await cache.match(cacheKey);
    if (hit) return hit;
    throw e;
  }
}

async function navigation(request) {
  try {
    return await fetch(request);
  } catch (e) {
    const hit = await (await caches.open(CACHE)).match(new URL('index.html', scope).href);
    if (hit) return hit;
    throw e;
  }
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  url.hash = '';
  url.search = '';
  const index = new URL('index.html', scope).href;
  if (req.mode === 'navigate') {
    if (url.href === scope.href || url.href === index) event.respondWith(networkFirst(req, index));
    else if (url.href.startsWith(scope.href) && !url.pathname.slice(scope.pathname.length).includes('.')) event.respondWith(navigation(req));
    return;
  }
  if (shellURLs.has(url.href)) event.respondWith(networkFirst(req, url.href === scope.href ? index : url.href));
});
