#!/usr/bin/env node
// bench.mjs - viewer benchmark: time to first image of an opened study, on
// loopback and over an emulated 4 Mbit/s, 100 ms RTT link (CDP
// Network.emulateNetworkConditions), and stack scrolling frames/s once the
// series is loaded. Prints the figures against the targets (500 ms, 2 s,
// 30 fps). Not part of `make test`.
//
//   node bench/viewer/bench.mjs                 # starts build/yingyun with the corpus
//   node bench/viewer/bench.mjs --url http://127.0.0.1:8080   # an already running server
//
// env: YY_BIN, YY_CORPUS, CHROMIUM (as for tests/browser), BENCH_RUNS (default 3).
// Uses playwright-core from tests/browser (installed there with npm ci).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const testsDir = join(root, 'tests', 'browser');
const BIN = process.env.YY_BIN || join(root, 'build', 'yingyun');
const CORPUS = process.env.YY_CORPUS || resolve(root, '..', 'shared', 'corpus');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const RUNS = +(process.env.BENCH_RUNS || 3);
const urlArg = process.argv.indexOf('--url');

if (!existsSync(join(testsDir, 'node_modules', 'playwright-core'))) {
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: testsDir, stdio: 'inherit' });
  if (r.status !== 0) process.exit(1);
}
const { chromium } = await import(join(testsDir, 'node_modules', 'playwright-core', 'index.mjs'));

function freePort() {
  return new Promise((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); }); });
}

let base, proc, data;
if (urlArg > 0) base = process.argv[urlArg + 1].replace(/\/$/, '');
else {
  data = mkdtempSync(join(tmpdir(), 'yy-bench-'));
  spawnSync(BIN, ['import', '--data', data, CORPUS], { stdio: 'ignore' });
  const port = await freePort();
  proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data', data], { stdio: 'ignore' });
  base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) { try { if ((await fetch(base + '/status')).ok) break; } catch { /* starting */ } await new Promise((r) => setTimeout(r, 100)); }
}

const q = async (path) => (await fetch(base + '/dicomweb' + path, { headers: { Accept: 'application/dicom+json' } })).json();
const v = (ds, tag) => ds && ds[tag] && ds[tag].Value ? ds[tag].Value[0] : undefined;
const studies = {
  'MR 196 x 256²': v((await q('/studies?PatientID=FRUIT'))[0], '0020000D'),
  'CT 28 x 512²': v((await q('/studies?ModalitiesInStudy=CT&NumberOfStudyRelatedInstances=28'))[0], '0020000D'),
};

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });

/** Opens the study list, then the study (as a click would), and times the first image. */
async function firstImage(study, throttle) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  await page.goto(base + '/');
  await page.waitForSelector('table.studies tbody tr');
  if (throttle) {
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 100, downloadThroughput: 4e6 / 8, uploadThroughput: 4e6 / 8 });
  }
  const result = await page.evaluate((uid) => new Promise((res) => {
    const t0 = performance.now();
    let first = 0;
    const check = () => {
      const vp = document.querySelector('.viewport[data-slot="0"]');
      const r = vp && vp.dataset.ready;
      if (!first && (r === 'true' || r === 'preview')) first = performance.now() - t0;
      if (r === 'true') {
        const full = performance.now() - t0;
        res({ first, full, preview: first < full - 1 });
        return;
      }
      requestAnimationFrame(check);
    };
    location.hash = `#/study/${uid}`;
    requestAnimationFrame(check);
  }), study);
  // time until every image of the series is in memory
  const all = await page.evaluate(() => new Promise((res) => {
    const t0 = performance.now();
    const check = () => {
      const vp = window.yy.view && window.yy.view.active;
      if (vp && vp.images.length > 1 && window.yy.loader.jobs.size === 0 && vp.images.every((im) => window.yy.cache.has(im.inst.key(im.frame)))) res(performance.now() - t0);
      else if (performance.now() - t0 > 120000) res(NaN);
      else setTimeout(check, 20);
    };
    check();
  }));
  result.allLoaded = result.full + all;
  await ctx.close();
  return result;
}

/** Stack scrolling rate with every frame loaded: one image per animation frame, as fast as it draws. */
async function scrollRate(study) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(`${base}/#/study/${study}`);
  await page.waitForSelector('.viewport[data-ready="true"]');
  await page.waitForFunction(() => { const vp = window.yy.view.active; return vp.images.length > 1 && window.yy.loader.jobs.size === 0 && vp.images.every((im) => window.yy.cache.has(im.inst.key(im.frame))); }, null, { timeout: 120000 });
  const r = await page.evaluate(() => new Promise((res) => {
    const vp = window.yy.view.active;
    const n = vp.images.length;
    const draws = [];
    const orig = vp.draw.bind(vp);
    vp.draw = () => { const t = performance.now(); orig(); draws.push(performance.now() - t); };
    let i = 0, frames = 0;
    const t0 = performance.now();
    const tick = () => {
      vp.step(1);
      if (vp.index === n - 1) vp.show(0);
      frames++;
      if (performance.now() - t0 < 3000) requestAnimationFrame(tick);
      else {
        const secs = (performance.now() - t0) / 1000;
        draws.sort((a, b) => a - b);
        // the same without the display's pacing: how many images per second the viewer can show
        vp.draw = orig;
        const t1 = performance.now();
        let k = 0;
        for (; k < 200; k++) { vp.show(k % n); vp.draw(); }
        const capacity = (k * 1000) / (performance.now() - t1);
        res({ fps: frames / secs, capacity, drawMs: draws[Math.floor(draws.length / 2)], drawMax: draws[draws.length - 1] });
      }
      i++;
    };
    requestAnimationFrame(tick);
  }));
  await ctx.close();
  return r;
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const ms = (x) => `${Math.round(x)} ms`;
const mark = (ok) => (ok ? 'ok  ' : 'MISS');

console.log(`viewer bench: ${base}, ${RUNS} runs each, median`);
let misses = 0;
for (const [name, uid] of Object.entries(studies)) {
  if (!uid) { console.log(`${name}: not in the corpus`); continue; }
  for (const throttle of [false, true]) {
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await firstImage(uid, throttle));
    const first = median(runs.map((r) => r.first)), full = median(runs.map((r) => r.full)), all = median(runs.map((r) => r.allLoaded));
    const target = throttle ? 2000 : 500;
    if (first > target) misses++;
    console.log(`${mark(first <= target)} ${name.padEnd(14)} ${throttle ? '4 Mbit/s 100 ms' : 'loopback       '}  first image ${ms(first).padStart(8)} (target ${target} ms)` +
      `${runs.some((r) => r.preview) ? `, full-fidelity ${ms(full)}` : ''}, whole series in memory ${ms(all)}`);
  }
  const s = await scrollRate(uid);
  if (s.fps < 30) misses++;
  console.log(`${mark(s.fps >= 30)} ${name.padEnd(14)} stack scrolling ${s.fps.toFixed(1)} frames/s (target 30; one image per animation frame), ` +
    `draw median ${s.drawMs.toFixed(2)} ms, max ${s.drawMax.toFixed(2)} ms; unpaced ${Math.round(s.capacity)} images/s`);
}

await browser.close();
if (proc) { proc.kill('SIGTERM'); await new Promise((r) => { proc.once('exit', r); setTimeout(r, 3000); }); rmSync(data, { recursive: true, force: true }); }
process.exit(misses ? 1 : 0);
