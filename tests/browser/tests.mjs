// tests.mjs - the browser test cases (run by run.mjs). Each case gets fresh
// browser contexts through env.newPage(); run.mjs fails a case that
// produced a console error or a failed request.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

const MR_PATIENT = 'FRUIT';

export function makeTests(env) {
  const dw = env.base + '/dicomweb';
  const json = async (path) => {
    const r = await fetch(dw + path, { headers: { Accept: 'application/dicom+json' } });
    assert.equal(r.status, 200, `GET ${path}`);
    return r.json();
  };
  const v = (ds, tag) => ds && ds[tag] && ds[tag].Value ? ds[tag].Value[0] : undefined;
  const shot = (page, name) => page.screenshot({ path: join(env.artifacts, `browser-${name}.png`) });

  let allInstances = null;
  const instances = async () => {
    if (!allInstances) allInstances = await json('/instances?limit=5000&includefield=00280004,00280100,00280008,00280010,00280011');
    return allInstances;
  };
  const studyOf = async (pred, what) => {
    const hit = (await instances()).find(pred);
    assert.ok(hit, `no corpus instance: ${what}`);
    return v(hit, '0020000D');
  };
  const mrStudy = async () => v((await json(`/studies?PatientID=${MR_PATIENT}`))[0], '0020000D');

  /** Canvas statistics of viewport slot: hash, non-black and colourful pixel counts. */
  const canvas = (page, slot = 0) => page.evaluate((s) => {
    const c = document.querySelector(`.viewport[data-slot="${s}"] canvas`);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let hash = 0, lit = 0, colour = 0, sum = 0;
    for (let i = 0; i < d.length; i += 4) {
      const r = d[i], g = d[i + 1], b = d[i + 2];
      hash = (hash * 31 + r + g * 7 + b * 13) >>> 0;
      if (r + g + b > 30) lit++;
      if (Math.abs(r - g) > 24 || Math.abs(g - b) > 24) colour++;
      sum += r + g + b;
    }
    return { hash, lit, colour, mean: sum / (d.length / 4) / 3, w: c.width, h: c.height };
  }, slot);

  const vpAttr = (page, name, slot = 0) => page.getAttribute(`.viewport[data-slot="${slot}"]`, `data-${name}`);
  const waitReady = async (page, slot = 0, ready = 'true') => {
    await page.waitForSelector(`.viewport[data-slot="${slot}"][data-ready="${ready}"]`, { timeout: 20000 });
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  };
  const waitIndexChange = async (page, from, slot = 0) => {
    await page.waitForFunction(([s, f]) => {
      const el = document.querySelector(`.viewport[data-slot="${s}"]`);
      return el && el.dataset.index !== String(f) && el.dataset.ready === 'true';
    }, [slot, from], { timeout: 10000 });
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  };
  const box = async (page, slot = 0) => page.locator(`.viewport[data-slot="${slot}"]`).boundingBox();

  const search = async (page, name) => {
    await page.fill('#q-name', name);
    await page.press('#q-name', 'Enter');
    await page.waitForFunction(() => !document.querySelector('.study-list[aria-busy]'));
    return page.locator('table.studies tbody tr');
  };

  return [
    {
      name: 'i18n-catalogue-and-app-shell',
      async run() {
        // every t('key') of the viewer exists in both languages, and both have the same keys
        const web = join(env.root, 'web');
        const { messages } = await import(pathToFileURL(join(web, 'i18n.js')).href);
        const en = Object.keys(messages.en), zh = Object.keys(messages.zh);
        assert.deepEqual(en.filter((k) => !messages.zh[k]), [], 'keys missing in Chinese');
        assert.deepEqual(zh.filter((k) => !messages.en[k]), [], 'keys missing in English');
        const files = [];
        const walk = (d) => { for (const f of readdirSync(d)) { const p = join(d, f); if (statSync(p).isDirectory()) { if (!['tools', 'vendor'].includes(f)) walk(p); } else files.push(p); } };
        walk(web);
        const used = new Set();
        for (const f of files.filter((x) => /\.(js|html)$/.test(x) && !x.endsWith('i18n.js'))) {
          const text = readFileSync(f, 'utf8');
          for (const m of text.matchAll(/\bt\('([\w.]+)'[,)]/g)) used.add(m[1]);
          for (const m of text.matchAll(/data-i18n(?:-aria|-title|-ph)?="([\w.]+)"/g)) used.add(m[1]);
        }
        const prefixed = ['tool.', 'preset.', 'layout.', 'unit.', 'sl.col.', 'sl.date.'];
        for (const p of prefixed) assert.ok(en.some((k) => k.startsWith(p)), `keys ${p}*`);
        assert.deepEqual([...used].filter((k) => !messages.en[k]), [], 'keys used but not in the catalogue');
        // the service worker caches every app file (and nothing else)
        const sw = readFileSync(join(web, 'sw.js'), 'utf8');
        const shell = new Set([...sw.matchAll(/'((?:js|icons)\/[\w.-]+|[\w.-]+\.(?:html|css|js|webmanifest))'/g)].map((m) => m[1]));
        const app = files.map((f) => relative(web, f)).filter((f) => f !== 'sw.js' && !f.startsWith('tools/') && !f.endsWith('.md'));
        assert.deepEqual(app.filter((f) => !shell.has(f)), [], 'app files missing from the service worker shell');
      },
    },
    {
      name: 'pwa-offline-shell',
      async run() {
        const offline = (m) => /ERR_INTERNET_DISCONNECTED|ERR_ABORTED|Failed to fetch/.test(m);
        const page = await env.newPage({}, { allow: offline });
        await page.goto(env.base + '/');
        await page.waitForSelector('table.studies tbody tr');
        const manifest = await page.evaluate(async () => (await fetch(document.querySelector('link[rel=manifest]').href)).json());
        assert.equal(manifest.display, 'standalone');
        assert.ok(manifest.icons.some((i) => i.sizes === '192x192') && manifest.icons.some((i) => i.sizes === '512x512'), 'icons');
        await page.waitForFunction(() => navigator.serviceWorker && navigator.serviceWorker.controller, null, { timeout: 10000 })
          .catch(async () => { await page.reload(); await page.waitForFunction(() => navigator.serviceWorker.controller); });
        // open a study so DICOM data passes the service worker
        const rows = await search(page, 'fruit');
        await rows.first().click();
        await waitReady(page);
        const cached = await page.evaluate(async () => {
          const out = [];
          for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) out.push(new URL(r.url).pathname);
          return out;
        });
        assert.ok(cached.includes('/js/main.js') && cached.includes('/index.html'), `app shell cached: ${cached.join(' ')}`);
        assert.deepEqual(cached.filter((p) => p.startsWith('/dicomweb/')), [], 'no DICOM data in the cache');
        await page.context().setOffline(true);
        await page.goto(env.base + '/');
        await page.waitForSelector('.search-form');
        await page.waitForFunction(() => /failed|失败/i.test(document.querySelector('.sl-info').textContent));
        await shot(page, 'offline');
        await page.context().setOffline(false);
      },
    },
    {
      name: 'search-by-name-part',
      async run() {
        const page = await env.newPage();
        await page.goto(env.base + '/');
        const rows = await search(page, 'fru');
        await rows.first().waitFor();
        assert.equal(await rows.count(), 1, 'one study for "fru"');
        assert.match(await rows.first().innerText(), /FRUIT/);
        const rows2 = await search(page, 'wang');
        await page.waitForFunction(() => document.querySelectorAll('table.studies tbody tr').length === 2);
        assert.match(await rows2.first().innerText(), /Wang XiaoDong/);
        // the last search is remembered
        await page.reload();
        await page.waitForFunction(() => document.querySelectorAll('table.studies tbody tr').length === 2);
        assert.equal(await page.inputValue('#q-name'), 'wang');
        await shot(page, 'search-name');
      },
    },
    {
      name: 'search-by-hanzi',
      async run() {
        const page = await env.newPage();
        await page.goto(env.base + '/');
        const rows = await search(page, '小东');
        await rows.first().waitFor();
        assert.equal(await rows.count(), 1, 'one study for 小东 (the GB18030 one)');
        const text = await rows.first().innerText();
        assert.ok(text.includes('王小东'), `row shows the ideographic name: ${text}`);
        await shot(page, 'search-hanzi');
      },
    },
    {
      name: 'open-mr-window-level-scroll-tags',
      async run() {
        const page = await env.newPage();
        await page.goto(env.base + '/');
        const rows = await search(page, 'fruit');
        await rows.first().click();
        await waitReady(page);
        await page.waitForFunction(() => document.querySelector('.viewport').dataset.count === '196');
        // scroll to the middle with the mouse wheel
        const b = await box(page);
        await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2);
        for (let i = 0; i < 98; i++) await page.mouse.wheel(0, 40);
        await page.waitForFunction(() => document.querySelector('.viewport').dataset.index === '98');
        await waitReady(page);
        const a = await canvas(page);
        assert.ok(a.lit > (a.w * a.h) / 20, `image is not blank (${a.lit} lit pixels)`);
        // window/level drag
        await page.keyboard.press('w');
        const ww0 = +(await vpAttr(page, 'ww'));
        await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2);
        await page.mouse.down();
        await page.mouse.move(b.x + b.width / 2 + 120, b.y + b.height / 2 + 60, { steps: 6 });
        await page.mouse.up();
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        const c = await canvas(page);
        assert.notEqual(+(await vpAttr(page, 'ww')), ww0, 'window width changed');
        assert.notEqual(c.hash, a.hash, 'pixels changed with W/L');
        // keyboard scrolling changes the image
        await page.keyboard.press('ArrowDown');
        await page.keyboard.press('ArrowDown');
        await waitIndexChange(page, 98);
        assert.equal(await vpAttr(page, 'index'), '100');
        const d = await canvas(page);
        assert.notEqual(d.hash, c.hash, 'pixels changed with scrolling');
        // stack scrolling speed once the frames are cached
        await page.waitForFunction(() => window.yy.loader.jobs.size === 0, null, { timeout: 20000 });
        // the work per scrolled image (select, LUT, draw), without the display's refresh pacing
        const fps = await page.evaluate(() => {
          const vp = window.yy.view.active;
          const t0 = performance.now();
          let n = 0;
          for (; n < 120; n++) { vp.show(n % 190); vp.draw(); }
          return (n * 1000) / (performance.now() - t0);
        });
        assert.ok(fps >= 30, `stack scrolling can run at ${fps.toFixed(1)} images/s`);
        // tag browser
        await page.keyboard.press('t');
        await page.waitForSelector('#dlg-tags .tag-row');
        const tags = await page.locator('#dlg-tags .tags-body').innerText();
        assert.match(tags, /PatientName/);
        assert.match(tags, /PixelSpacing/);
        await shot(page, 'tags');
        await page.keyboard.press('Escape');
        await shot(page, 'mr');
      },
    },
    {
      name: 'length-measurement-in-mm',
      async run() {
        const page = await env.newPage();
        const study = await mrStudy();
        await page.goto(`${env.base}/#/study/${study}`);
        await waitReady(page);
        await page.waitForFunction(() => document.querySelector('.viewport').dataset.count === '196');
        await page.keyboard.press('End');
        await waitIndexChange(page, 0);
        await page.keyboard.press('l');
        const b = await box(page);
        const cx = b.x + b.width / 2, cy = b.y + b.height / 2;
        await page.mouse.move(cx - 90, cy - 20);
        await page.mouse.down();
        await page.mouse.move(cx + 70, cy + 50, { steps: 8 });
        await page.mouse.up();
        const li = page.locator('.viewport[data-slot="0"] .mlist li');
        await li.first().waitFor({ state: 'attached' });
        const text = await li.first().textContent();
        const pts = JSON.parse(await li.first().getAttribute('data-points'));
        const shown = parseFloat(/([\d.]+)\s*mm/.exec(text)[1]);
        // expected value from the instance's own metadata
        const series = await vpAttr(page, 'series'), inst = await vpAttr(page, 'instance');
        const meta = (await json(`/studies/${study}/series/${series}/instances/${inst}/metadata`))[0];
        const [rowSp, colSp] = meta['00280030'].Value.map(Number);
        const mm = Math.hypot((pts[1][0] - pts[0][0]) * colSp, (pts[1][1] - pts[0][1]) * rowSp);
        assert.ok(Math.abs(shown - mm) <= 0.051, `shown ${shown} mm, expected ${mm.toFixed(2)} mm`);
        // and the points are where the mouse was (fit view: centred, uniform scale)
        const scale = +(await vpAttr(page, 'scale'));
        const cols = meta['00280011'].Value[0], rows = meta['00280010'].Value[0];
        const vb = await page.evaluate(() => { const e = document.querySelector('.viewport'); const r = e.getBoundingClientRect(); return { x: r.left + e.clientLeft, y: r.top + e.clientTop, w: e.clientWidth, h: e.clientHeight }; });
        const toImg = (sx, sy) => [(sx - vb.x - vb.w / 2) / scale + cols / 2, (sy - vb.y - vb.h / 2) / scale + rows / 2];
        const e0 = toImg(cx - 90, cy - 20), e1 = toImg(cx + 70, cy + 50);
        assert.ok(Math.hypot(e0[0] - pts[0][0], e0[1] - pts[0][1]) < 0.6 && Math.hypot(e1[0] - pts[1][0], e1[1] - pts[1][1]) < 0.6,
          `points ${JSON.stringify(pts)} match the drag ${JSON.stringify([e0, e1])}`);
        const expectedMM = Math.hypot((e1[0] - e0[0]) * colSp, (e1[1] - e0[1]) * rowSp);
        assert.ok(Math.abs(shown - expectedMM) < 0.7, `shown ${shown} mm vs drag ${expectedMM.toFixed(2)} mm`);
        // an ellipse ROI gives mean, SD and area
        await page.keyboard.press('e');
        await page.mouse.move(cx - 40, cy - 40);
        await page.mouse.down();
        await page.mouse.move(cx + 40, cy + 30, { steps: 5 });
        await page.mouse.up();
        await page.waitForFunction(() => document.querySelectorAll('.viewport .mlist li').length === 2);
        const roi = await li.nth(1).textContent();
        assert.match(roi, /Mean -?[\d,.]+ .*SD [\d,.]+.*Area [\d,.]+ mm²/);
        await shot(page, 'measure');
      },
    },
    {
      name: 'cine-us-multiframe',
      async run() {
        const page = await env.newPage();
        const study = await studyOf((x) => v(x, '00280008') == 34, '34-frame US cine');
        await page.goto(`${env.base}/#/study/${study}`);
        await waitReady(page);
        await page.waitForFunction(() => document.querySelector('.viewport').dataset.count === '34');
        const a = await canvas(page);
        assert.ok(a.lit > (a.w * a.h) / 50, 'first frame shown');
        await page.click('.toolbar [data-id=cine]');
        await page.waitForFunction(() => +document.querySelector('.viewport').dataset.index >= 5, null, { timeout: 15000 });
        assert.equal(await vpAttr(page, 'cine'), 'playing');
        const i1 = +(await vpAttr(page, 'index'));
        await page.waitForTimeout(400);
        const i2 = +(await vpAttr(page, 'index'));
        assert.notEqual(i1, i2, 'frame index advances');
        await shot(page, 'cine');
        await page.keyboard.press(' ');
        assert.equal(await vpAttr(page, 'cine'), 'stopped');
      },
    },
    {
      name: 'mobile-pinch-and-swipe',
      async run() {
        const page = await env.newPage({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 });
        const study = await mrStudy();
        await page.goto(`${env.base}/#/study/${study}`);
        await waitReady(page);
        await page.waitForFunction(() => document.querySelector('.viewport').dataset.count === '196');
        const cdp = await page.context().newCDPSession(page);
        const b = await box(page);
        const cx = Math.round(b.x + b.width / 2), cy = Math.round(b.y + b.height / 2);
        const touch = (type, points) => cdp.send('Input.dispatchTouchEvent', { type, touchPoints: points.map(([x, y], id) => ({ x, y, id })) });
        // pinch out: two fingers moving apart
        const s0 = +(await vpAttr(page, 'scale'));
        await touch('touchStart', [[cx - 30, cy], [cx + 30, cy]]);
        for (let i = 1; i <= 10; i++) await touch('touchMove', [[cx - 30 - i * 9, cy], [cx + 30 + i * 9, cy]]);
        await touch('touchEnd', []);
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(r)));
        const s1 = +(await vpAttr(page, 'scale'));
        assert.ok(s1 > s0 * 1.8, `pinch zoomed from ${s0} to ${s1}`);
        // swipe up with one finger: next images
        const i0 = +(await vpAttr(page, 'index'));
        await touch('touchStart', [[cx, cy + 120]]);
        for (let i = 1; i <= 12; i++) await touch('touchMove', [[cx, cy + 120 - i * 20]]);
        await touch('touchEnd', []);
        await waitIndexChange(page, i0);
        const i1 = +(await vpAttr(page, 'index'));
        assert.ok(i1 > i0 + 3, `swiped from image ${i0} to ${i1}`);
        // tap targets are at least 44 px
        const small = await page.evaluate(() => [...document.querySelectorAll('.toolbar button, .toolbar select, .topbar button, .topbar select, .series-card')]
          .filter((e) => e.offsetParent).map((e) => e.getBoundingClientRect()).filter((r) => r.width < 43.5 || r.height < 43.5).length);
        assert.equal(small, 0, 'no tap target under 44 px');
        await shot(page, 'mobile');
        // landscape
        await page.setViewportSize({ width: 844, height: 390 });
        await page.waitForTimeout(200);
        await waitReady(page);
        await shot(page, 'mobile-landscape');
      },
    },
    {
      name: 'chinese-ui',
      async run() {
        const page = await env.newPage({ locale: 'zh-CN' });
        await page.goto(env.base + '/');
        assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
        await page.waitForSelector('table.studies tbody tr');
        assert.equal((await page.locator('.search-form button[type=submit]').innerText()).trim(), '查询');
        assert.match(await page.locator('table.studies thead').innerText(), /患者/);
        assert.match(await page.locator('label[for=q-name]').innerText(), /患者姓名/);
        // dates in the Chinese locale
        assert.match(await page.locator('table.studies tbody').innerText(), /\d{4}年\d{1,2}月\d{1,2}日/);
        const rows = await search(page, '王');
        await rows.first().waitFor();
        assert.match(await rows.first().innerText(), /王小/);
        await rows.first().click();
        await page.waitForSelector('.viewport[data-slot="0"][data-ready="true"], .viewport[data-slot="0"][data-ready="doc"]');
        assert.match(await page.getAttribute('.toolbar [data-id=tool-wl]', 'aria-label'), /窗宽窗位/);
        await shot(page, 'zh');
        // switch to English: remembered
        await page.selectOption('#lang-select', 'en');
        await page.goto(env.base + '/');
        await page.waitForSelector('table.studies tbody tr');
        assert.equal(await page.getAttribute('html', 'lang'), 'en');
        assert.equal((await page.locator('.search-form button[type=submit]').innerText()).trim(), 'Search');
      },
    },
    {
      name: 'layout-sync',
      async run() {
        const page = await env.newPage({ viewport: { width: 1400, height: 800 } });
        const study = await mrStudy();
        await page.goto(`${env.base}/#/study/${study}`);
        await waitReady(page);
        await page.keyboard.press('Alt+2');
        await waitReady(page, 1);
        assert.equal(await page.locator('.viewport').count(), 2);
        await page.locator('.viewport[data-slot="0"]').click();
        for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowDown');
        await page.waitForFunction(() => document.querySelector('.viewport[data-slot="1"]').dataset.index === '5');
        await page.selectOption('.toolbar select.tb-select >> nth=1', '2x2');
        assert.equal(await page.locator('.viewport').count(), 4);
        await shot(page, 'layout');
      },
    },
    {
      name: 'colour-palette-mono1-sr-pdf',
      async run() {
        const cases = [
          { what: 'RGB US', pred: (x) => v(x, '00280004') === 'RGB' && v(x, '00280010') == 120, colour: true },
          { what: 'YBR_FULL_422 US', pred: (x) => v(x, '00280004') === 'YBR_FULL_422' && v(x, '00280010') == 555, colour: true },
          { what: 'YBR_FULL US', pred: (x) => v(x, '00280004') === 'YBR_FULL' && v(x, '00280010') == 480, colour: true },
          { what: 'PALETTE COLOR 8-bit', pred: (x) => v(x, '00280004') === 'PALETTE COLOR' && v(x, '00280010') == 600, colour: true },
          { what: 'PALETTE COLOR 16-bit', pred: (x) => v(x, '00280004') === 'PALETTE COLOR' && v(x, '00280100') == 16, colour: true },
          { what: 'MONOCHROME1 CR', pred: (x) => v(x, '00280004') === 'MONOCHROME1' && v(x, '00280010') == 2446, colour: false },
        ];
        const page = await env.newPage();
        for (const c of cases) {
          const study = await studyOf(c.pred, c.what);
          await page.evaluate(() => document.querySelectorAll('.viewport').forEach((e) => { e.dataset.slot = 'old'; }));
          await page.goto(`${env.base}/#/study/${study}`);
          await waitReady(page);
          const s = await canvas(page);
          assert.ok(s.lit > 500, `${c.what}: image shown`);
          if (c.colour) assert.ok(s.colour > 200, `${c.what}: in colour (${s.colour} colourful pixels)`);
          else assert.equal(s.colour, 0, `${c.what}: grey`);
          await shot(page, c.what.replace(/\W+/g, '-').toLowerCase());
        }
        const sr = await studyOf((x) => v(x, '00080016') === '1.2.840.10008.5.1.4.1.1.88.33', 'Comprehensive SR');
        await page.goto(`${env.base}/#/study/${sr}`);
        await page.waitForSelector('.vp-doc .sr .sr-item');
        assert.ok((await page.locator('.vp-doc .sr').innerText()).length > 200, 'SR text shown');
        await shot(page, 'sr');
        const pdf = await studyOf((x) => v(x, '00080016') === '1.2.840.10008.5.1.4.1.1.104.1', 'encapsulated PDF');
        await page.goto(`${env.base}/#/study/${pdf}`);
        await page.waitForSelector('.vp-doc iframe.pdf');
        assert.match(await page.getAttribute('.vp-doc iframe.pdf', 'src'), /^blob:/);
        assert.ok(await page.locator('.vp-doc a[download]').count(), 'PDF can be downloaded');
        await shot(page, 'pdf');
      },
    },
  ];
}
