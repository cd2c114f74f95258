// test_ohif.mjs - the OHIF v3 viewer (prebuilt dist/ of npm @ohif/app) in
// Debian's headless Chromium, driven by playwright-core, against yingyun
// holding the whole corpus: the study list, the GE MR series drawn in the
// viewport, scrolling to other slices, and not one failed DICOMweb request.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

import { ARTIFACTS, CORPUS, assert, assertEq, ensureDir, freePort, jv, sleep } from './lib.mjs';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const dicomParser = require('dicom-parser');

const CHROMIUM = process.env.YY_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                       '--disable-component-update', '--disable-sync', '--no-first-run'];
const MR_PATIENT_ID = 'FRUIT'; // series/mr_ge_signa_3d_sag_irspgr_196
const MR_FRAMES = 196;
const JPEG_US = 'ts/jpeg_baseline/orthanc__Issue16.dcm'; // JPEG baseline, 34 frames, YBR_FULL_422

function studyUidOf(rel) {
    const b = fs.readFileSync(path.join(CORPUS, rel));
    return dicomParser.parseDicom(new Uint8Array(b.buffer, b.byteOffset, b.length)).string('x0020000d');
}

/** app-config.js: one DICOMweb data source, our server. */
function appConfig(server) {
    const root = server.root;
    const config = {
        routerBasename: '/',
        showStudyList: true,
        extensions: [],
        modes: [],
        maxNumberOfWebWorkers: 2,
        showWarningMessageForCrossOrigin: false,
        showCPUFallbackMessage: false,
        showLoadingIndicator: true,
        strictZSpacingForVolumeViewport: true,
        investigationalUseDialog: { option: 'never' },
        defaultDataSourceName: 'yingyun',
        dataSources: [{
            namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
            sourceName: 'yingyun',
            configuration: {
                friendlyName: 'Yingyun',
                name: 'yingyun',
                qidoRoot: root,
                wadoRoot: root,
                wadoUriRoot: `${root}/wado`,
                qidoSupportsIncludeField: true,
                supportsFuzzyMatching: true,
                supportsWildcard: true,
                imageRendering: 'wadors',
                thumbnailRendering: 'wadors', // no /rendered or /thumbnail yet (docs/conformance.md)
                enableStudyLazyLoad: true,
                staticWado: false,
                supportsReject: false,
                supportsStow: true,
                bulkDataURI: { enabled: true },
                omitQuotationForMultipartRequest: true, // OHIF's default
            },
        }],
    };
    return `window.config = ${JSON.stringify(config, null, 2)};\n`;
}

const TYPES = {
    '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
    '.json': 'application/json', '.wasm': 'application/wasm', '.svg': 'image/svg+xml', '.png': 'image/png',
    '.ico': 'image/x-icon', '.woff2': 'font/woff2', '.woff': 'font/woff', '.ttf': 'font/ttf', '.txt': 'text/plain',
    '.map': 'application/json', '.xml': 'application/xml', '.webmanifest': 'application/manifest+json',
};

/** A static file server for dist/ (single-page app: unknown paths get index.html). */
async function serveDist(dist, configJs) {
    const root = fs.realpathSync(dist);
    const srv = http.createServer((req, res) => {
        let p;
        try {
            p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
        } catch {
            res.writeHead(400).end();
            return;
        }
        if (p === '/app-config.js') {
            res.writeHead(200, { 'Content-Type': 'text/javascript', 'Cache-Control': 'no-store' });
            res.end(configJs);
            return;
        }
        let file = path.join(root, path.normalize(p));
        if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || fs.statSync(file).isDirectory())
            file = path.join(root, 'index.html');
        res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
        fs.createReadStream(file).pipe(res);
    });
    const port = await freePort();
    await new Promise((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(port, '127.0.0.1', resolve);
    });
    return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => srv.close(r)) };
}

/** Pixels of the viewport's canvas: distinct grey levels, lit fraction, a digest. */
async function canvasStats(page) {
    return page.evaluate(() => {
        const c = document.querySelector('.viewport-element canvas.cornerstone-canvas')
            || document.querySelector('.viewport-element canvas');
        if (!c || !c.width || !c.height)
            return null;
        let data;
        const ctx2d = c.getContext('2d', { willReadFrequently: true });
        if (ctx2d) {
            data = ctx2d.getImageData(0, 0, c.width, c.height).data;
        } else {
            const off = new OffscreenCanvas(c.width, c.height);
            const o = off.getContext('2d');
            o.drawImage(c, 0, 0);
            data = o.getImageData(0, 0, c.width, c.height).data;
        }
        const levels = new Set();
        let lit = 0, h = 2166136261;
        for (let i = 0; i < data.length; i += 4) {
            const v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
            levels.add(v);
            if (v)
                lit++;
            h = Math.imul(h ^ v, 16777619) >>> 0;
        }
        return { width: c.width, height: c.height, distinct: levels.size, lit: lit / (data.length / 4),
                 digest: h.toString(16) };
    });
}

async function waitFor(what, fn, timeoutMs, intervalMs = 250) {
    const deadline = Date.now() + timeoutMs;
    let last;
    while (Date.now() < deadline) {
        last = await fn();
        if (last && last.ok)
            return last;
        await sleep(intervalMs);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last state: ${JSON.stringify(last && last.state)}`);
}

async function overlayText(page) {
    return page.evaluate(() => {
        const el = document.querySelector('[data-cy="viewport-overlay-bottom-right"]');
        return el ? el.innerText.replace(/\s+/g, ' ').trim() : '';
    });
}

/** "I:98 (99/196)" -> 99 */
function sliceIndex(text) {
    const m = /\((\d+)\s*\/\s*(\d+)\)/.exec(text);
    return m ? Number(m[1]) : null;
}

async function skipTour(page) {
    const skip = page.getByRole('button', { name: 'Skip all' });
    for (let i = 0; i < 3; i++) {
        if (!(await skip.count()))
            return;
        await skip.first().click({ timeout: 2000 }).catch(() => {});
        await sleep(200);
    }
}

export async function run(checks, server, { ohifDist }) {
    const check = (name, fn) => checks.check(name, fn);
    assert(ohifDist && fs.existsSync(path.join(ohifDist, 'index.html')), 'no OHIF dist/');
    const art = ensureDir(ARTIFACTS);

    // what the server holds, asked directly (the expected values)
    const studies = await (await fetch(`${server.root}/studies?limit=10000`)).json();
    const mr = studies.filter((s) => jv(s, '00100020') === MR_PATIENT_ID);
    assertEq(mr.length, 1, `studies of PatientID ${MR_PATIENT_ID}`);
    const mrStudy = jv(mr[0], '0020000D');

    const web = await serveDist(ohifDist, appConfig(server));
    const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'yy-chromium-'));
    let ctx = null;
    const log = []; // every request to our server: "status method url"
    const bad = []; // failed ones
    const pageErrors = [];
    try {
        assert(fs.existsSync(CHROMIUM), `${CHROMIUM} not found (Debian package chromium)`);
        ctx = await chromium.launchPersistentContext(userData, {
            executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
            viewport: { width: 1400, height: 900 }, deviceScaleFactor: 1,
        });
        const page = ctx.pages()[0] || await ctx.newPage();
        page.setDefaultTimeout(30000);
        const ours = (u) => u.startsWith(server.origin + '/');
        page.on('response', (r) => {
            if (!ours(r.url()))
                return;
            const line = `${r.status()} ${r.request().method()} ${r.url()}  [Accept: ${r.request().headers().accept || '-'}]`;
            log.push(line);
            if (r.status() >= 400)
                bad.push(line);
        });
        page.on('requestfailed', (r) => {
            if (!ours(r.url()))
                return;
            const line = `FAILED (${r.failure() && r.failure().errorText}) ${r.method()} ${r.url()}`;
            log.push(line);
            bad.push(line);
        });
        page.on('pageerror', (e) => pageErrors.push(String(e && e.message || e).slice(0, 300)));
        page.on('console', (m) => {
            if (m.type() === 'error')
                pageErrors.push('console.error: ' + m.text().slice(0, 300));
        });

        // ---- the study list
        await check(`study list shows all ${studies.length} studies of the server, FRUIT among them`, async () => {
            const errorsBefore = pageErrors.length;
            await page.goto(`${web.url}/`);
            const st = await waitFor('the study list', async () => {
                const text = await page.evaluate(() => document.body.innerText);
                const m = /(\d+)\s*-\s*(\d+)\s+of\s+(\d+)/.exec(text);
                const dsError = /Data Source Connection Error/.test(text);
                return { ok: (m && Number(m[3]) > 0) || dsError, state: { range: m && m[0], dsError }, text };
            }, 60000);
            await sleep(500);
            await page.screenshot({ path: path.join(art, 'ohif-study-list.png') });
            if (st.state.dsError)
                throw new Error('OHIF shows "Data Source Connection Error": '
                    + st.text.slice(st.text.indexOf('Data Source Connection Error'), st.text.indexOf('Data Source Connection Error') + 200).replace(/\s+/g, ' ')
                    + '\n     page errors: ' + pageErrors.slice(errorsBefore).join(' | '));
            assertEq(Number(/of\s+(\d+)/.exec(st.state.range)[1]), studies.length, 'studies counted by OHIF');
            assert(/\bFRUIT\b/.test(st.text), 'no FRUIT row in the study list');
        });

        // ---- the MR study in the viewer
        let first = null;
        await check('viewer: the MR study (PatientID FRUIT) draws real pixels', async () => {
            await page.goto(`${web.url}/viewer?StudyInstanceUIDs=${mrStudy}`);
            await page.locator('.viewport-element canvas').first().waitFor({ state: 'attached', timeout: 60000 });
            const st = await waitFor('an image in the viewport', async () => {
                const s = await canvasStats(page);
                const idx = sliceIndex(await overlayText(page));
                return { ok: s && s.distinct >= 32 && s.lit > 0.05 && idx !== null, state: { ...s, idx } };
            }, 60000);
            await skipTour(page);
            await sleep(300);
            first = { ...(await canvasStats(page)), idx: sliceIndex(await overlayText(page)), overlay: await overlayText(page) };
            await page.locator('.viewport-element').first().screenshot({ path: path.join(art, 'ohif-mr-first.png') });
            assert(first.distinct >= 32, `only ${first.distinct} distinct colours in the canvas: ${JSON.stringify(first)}`);
            assert(first.lit > 0.05, `canvas mostly black: ${JSON.stringify(first)}`);
            assert(new RegExp(`/\\s*${MR_FRAMES}\\)`).test(first.overlay), `overlay "${first.overlay}" does not count ${MR_FRAMES} images`);
            void st;
        });

        await check('viewer: mouse wheel moves to another slice and the pixels change', async () => {
            assert(first, 'no first image');
            await skipTour(page);
            const vp = page.locator('.viewport-element').first();
            const box = await vp.boundingBox();
            await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
            await page.mouse.wheel(0, 120);
            const next = await waitFor('another slice', async () => {
                const s = await canvasStats(page);
                const idx = sliceIndex(await overlayText(page));
                return { ok: s && idx !== null && idx !== first.idx && s.digest !== first.digest && s.distinct >= 32,
                         state: { ...s, idx } };
            }, 20000);
            assert(Math.abs(next.state.idx - first.idx) === 1, `one wheel step moved from ${first.idx} to ${next.state.idx}`);
            await vp.screenshot({ path: path.join(art, 'ohif-mr-next.png') });
            // on to the middle of the head (a better picture for the artifacts)
            const steps = Math.floor(MR_FRAMES / 2) - 1;
            const dir = next.state.idx > first.idx ? 1 : -1;
            for (let i = 0; i < steps; i++)
                await page.mouse.wheel(0, 120);
            const want = next.state.idx + dir * steps;
            const mid = await waitFor(`slice ${want}`, async () => {
                const s = await canvasStats(page);
                const idx = sliceIndex(await overlayText(page));
                return { ok: s && idx === want && s.distinct >= 32, state: { ...s, idx } };
            }, 30000);
            await sleep(300);
            await vp.screenshot({ path: path.join(art, 'ohif-mr-middle.png') });
            assert(mid.state.digest !== next.state.digest, 'middle slice has the same pixels as the second');
        });

        await check('viewer: arrow key moves back one slice', async () => {
            const before = { ...(await canvasStats(page)), idx: sliceIndex(await overlayText(page)) };
            await page.keyboard.press('ArrowUp');
            const after = await waitFor('another slice after ArrowUp', async () => {
                const s = await canvasStats(page);
                const idx = sliceIndex(await overlayText(page));
                return { ok: s && idx !== null && idx !== before.idx && s.digest !== before.digest, state: { ...s, idx } };
            }, 20000);
            assert(Math.abs(after.state.idx - before.idx) === 1, `ArrowUp moved from ${before.idx} to ${after.state.idx}`);
        });

        await check('viewer: a JPEG baseline US cine (34 frames) draws real pixels', async () => {
            const before = log.length;
            await page.goto(`${web.url}/viewer?StudyInstanceUIDs=${studyUidOf(JPEG_US)}`);
            await page.locator('.viewport-element canvas').first().waitFor({ state: 'attached', timeout: 60000 });
            const st = await waitFor('an image in the viewport', async () => {
                const s = await canvasStats(page);
                return { ok: s && s.distinct >= 32 && s.lit > 0.05, state: s };
            }, 60000);
            await skipTour(page);
            await page.locator('.viewport-element').first().screenshot({ path: path.join(art, 'ohif-us-jpeg.png') });
            const frames = log.slice(before).filter((l) => /\/frames\/\d+/.test(l));
            assert(frames.length >= 1 && frames.every((l) => l.startsWith('200 ')), `frame requests:\n${frames.join('\n')}`);
            void st;
        });

        await check('viewer: the frames came from WADO-RS /frames', async () => {
            const frames = log.filter((l) => /^200 GET .*\/frames\/\d+/.test(l));
            assert(frames.length >= 2, `${frames.length} frame requests answered 200:\n${log.join('\n')}`);
            const metadata = log.filter((l) => /^200 GET .*\/series\/[0-9.]+\/metadata/.test(l));
            assert(metadata.length >= 1, 'no series metadata request');
        });
    } finally {
        fs.writeFileSync(path.join(art, 'ohif-requests.txt'), log.join('\n') + '\n');
        if (ctx)
            await ctx.close().catch(() => {});
        await web.close();
        fs.rmSync(userData, { recursive: true, force: true });
    }

    await check(`no failed DICOMweb request (${log.length} requests to ${server.origin})`, async () => {
        assert(log.length > 0, 'OHIF sent no request to our server');
        assert(bad.length === 0, `${bad.length} of ${log.length} requests failed:\n` + bad.join('\n'));
    });
}
