#!/usr/bin/env node
// run.mjs - browser tests of the viewer: Playwright (playwright-core, pinned
// in package.json / package-lock.json) driving Debian's /usr/bin/chromium.
// Starts our server on a free loopback port with a temporary data dir,
// imports the shared corpus, runs the tests and prints "N passed, N failed".
//
// env: YY_BIN (server binary), YY_CORPUS (DICOM corpus), YY_ARTIFACTS
// (screenshots; default tests/artifacts), YY_BROWSER_TESTS (comma-separated
// test names to run, optional), CHROMIUM (default /usr/bin/chromium).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = process.env.YY_SOURCE_ROOT || resolve(here, '..', '..');
const BIN = process.env.YY_BIN || join(root, 'build', 'yingyun');
const CORPUS = process.env.YY_CORPUS || resolve(root, '..', 'shared', 'corpus');
const ARTIFACTS = process.env.YY_ARTIFACTS || join(root, 'tests', 'artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ONLY = (process.env.YY_BROWSER_TESTS || '').split(',').filter(Boolean);

function log(...a) { console.log(...a); }

if (!existsSync(CHROMIUM)) {
  log(`SKIP: ${CHROMIUM} is missing (apt-get install chromium)`);
  log('0 passed, 0 failed');
  process.exit(77);
}
if (!existsSync(join(here, 'node_modules', 'playwright-core'))) {
  log('installing playwright-core (npm ci)…');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: here, stdio: 'inherit', env: { ...process.env, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1' } });
  if (r.status !== 0) { log('npm ci failed'); log('0 passed, 1 failed'); process.exit(1); }
}
const { chromium } = await import('playwright-core');
const { makeTests } = await import('./tests.mjs');

/* ---------------- server ---------------- */

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

async function startServer() {
  const data = mkdtempSync(join(tmpdir(), 'yy-browser-'));
  const imp = spawnSync(BIN, ['import', '--data', data, CORPUS], { encoding: 'utf8' });
  const summary = (imp.stdout + imp.stderr).trim().split('\n').filter((l) => l.startsWith('imported')).pop();
  log(`corpus: ${summary || 'import finished with status ' + imp.status}`);
  const port = await freePort();
  const proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data', data], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  const base = `http://127.0.0.1:${port}`;
  proc.on('exit', (code, signal) => {
    if (!proc.stopping) log(`server exited during the tests: code ${code} signal ${signal}\n${stderr.split('\n').slice(-8).join('\n')}`);
  });
  for (let i = 0; i < 100; i++) {
    try { const r = await fetch(base + '/status'); if (r.ok) return { base, proc, data }; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill();
  throw new Error('server did not start: ' + stderr);
}

/* ---------------- requests and console watch ---------------- */

// Responses the viewer is built to expect until the server offers them:
// rendered frames and thumbnails (404), native decoding of compressed
// frames (406). They are listed, not failed.
const EXPECTED = [
  { status: [404, 406, 501], re: /\/(rendered|thumbnail)(\?|$)/, what: 'rendered/thumbnail resources' },
  { status: [406], re: /\/frames\/[\d,]+$/, what: 'native decoding of compressed frames' },
];

function watch(page, allProblems, expected, allow) {
  const problems = { push: (msg) => { if (!allow || !allow(msg)) allProblems.push(msg); } };
  const isExpected = (url, status) => EXPECTED.find((e) => e.status.includes(status) && e.re.test(url));
  let lastNavigation = 0;
  const started = new WeakMap();
  page.on('request', (r) => started.set(r, Date.now()));
  page.on('request', (r) => { if (r.isNavigationRequest() && r.frame() === page.mainFrame()) lastNavigation = Date.now(); });
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) lastNavigation = Date.now(); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = m.location() && m.location().url;
    if (/Failed to load resource/.test(m.text()) && url) {
      const st = +((/status of (\d+)/.exec(m.text()) || [])[1] || 0);
      if (isExpected(url, st)) return;
    }
    problems.push(`console error: ${m.text()} ${url || ''}`);
  });
  page.on('requestfailed', (r) => {
    const err = r.failure() ? r.failure().errorText : '';
    if (!/^https?:/.test(r.url())) return; // the browser's own pages (e.g. its PDF viewer)
    // the test navigating away aborts the page's pending requests: not a failure of the viewer
    if (err === 'net::ERR_ABORTED' && (page.isClosed() || lastNavigation >= started.get(r) || Date.now() - lastNavigation < 2000)) return;
    problems.push(`request failed: ${r.method()} ${r.url()} ${err}`);
  });
  page.on('response', (r) => {
    const st = r.status();
    if (st < 400) return;
    const e = isExpected(r.url(), st);
    if (e) expected.add(`${st} ${e.what}: ${r.url().replace(/^https?:\/\/[^/]+/, '').slice(0, 160)}`);
    else problems.push(`HTTP ${st}: ${r.request().method()} ${r.url()}`);
  });
}

/* ---------------- main ---------------- */

mkdirSync(ARTIFACTS, { recursive: true });
const t0 = Date.now();
let server;
try {
  server = await startServer();
} catch (e) {
  log(String(e.message || e));
  log('0 passed, 1 failed');
  process.exit(1);
}
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'],
});

const problems = [];
const expected = new Set();
const env = {
  base: server.base,
  artifacts: ARTIFACTS,
  /** A page in a fresh context; allow(message) may excuse problems a test provokes on purpose. */
  async newPage(options = {}, { allow } = {}) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', ...options });
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    watch(page, problems, expected, allow);
    return page;
  },
  root,
};

let passed = 0, failed = 0;
const tests = makeTests(env).filter((tc) => !ONLY.length || ONLY.includes(tc.name));
for (const tc of tests) {
  const started = Date.now();
  const before = problems.length;
  try {
    await tc.run();
    if (problems.length > before) throw new Error(problems.slice(before).join('\n  '));
    passed++;
    log(`ok   ${tc.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    const where = e && e.stack ? (e.stack.split('\n').find((l) => l.includes('tests.mjs')) || '').trim() : '';
    log(`FAIL ${tc.name}: ${e && e.message ? e.message.slice(0, 3000) : e}${where ? '\n  ' + where : ''}`);
  } finally {
    for (const ctx of browser.contexts()) await ctx.close().catch(() => {});
  }
}
// the console/request watch as a test of its own
if (problems.length) { failed++; log(`FAIL no-console-errors-or-failed-requests:\n  ${problems.join('\n  ')}`); }
else { passed++; log('ok   no-console-errors-or-failed-requests'); }
if (expected.size) {
  log(`note: answers the viewer handled (optional resources the server lacks or that do not apply):\n  ${[...expected].slice(0, 12).join('\n  ')}${expected.size > 12 ? `\n  … ${expected.size - 12} more` : ''}`);
}

await browser.close();
server.proc.stopping = true;
server.proc.kill('SIGTERM');
await new Promise((r) => { server.proc.once('exit', r); setTimeout(r, 3000); });
rmSync(server.data, { recursive: true, force: true });
log(`screenshots: ${ARTIFACTS}  time: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
