#!/usr/bin/env node
// run.mjs - runs real third-party DICOMweb clients against yingyun.
//
//   node tests/clients/run.mjs [dicomweb_client] [ohif]     (default: both)
//
// Environment: YY_BIN (the yingyun binary, default build/yingyun), YY_CORPUS
// (default /work/shared/corpus), YY_ARTIFACTS (screenshots and request logs,
// default tests/artifacts), YY_CHROMIUM (default /usr/bin/chromium).
//
// 1. `npm ci` into tests/clients/node_modules when a dependency is missing
//    (versions pinned in package.json / package-lock.json).
// 2. For the ohif suite, the prebuilt OHIF viewer: the dist/ folder of the
//    npm package @ohif/app at the version and sha512 pinned in package.json
//    ("ohifApp"). It is fetched with `npm pack` (the tarball only) rather
//    than installed as a dependency: its package.json lists the OHIF source
//    packages (@ohif/core, @ohif/i18n, extensions, rspack loaders...) that
//    the prebuilt bundle does not need, and some of them (e.g.
//    @ohif/i18n@3.13.2) cannot be resolved from the registry we use.
// 3. Per suite: a fresh yingyun on a free loopback port with a temporary data
//    directory (the ohif suite imports the whole corpus first), the checks,
//    then the server is stopped and its directory removed.
// Last line: "N passed, N failed"; exit status 1 when anything failed.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { ARTIFACTS, BIN, CORPUS, Checks, HERE, Server } from './lib.mjs';

const SUITES = {
    dicomweb_client: { module: './test_dicomweb_client.mjs', importCorpus: false },
    ohif: { module: './test_ohif.mjs', importCorpus: true },
};

const pkg = JSON.parse(fs.readFileSync(path.join(HERE, 'package.json'), 'utf8'));

function npm(args, opts = {}) {
    const r = spawnSync('npm', args, { cwd: HERE, encoding: 'utf8', ...opts });
    if (r.error)
        throw new Error(`npm ${args.join(' ')}: ${r.error.message}`);
    if (r.status !== 0)
        throw new Error(`npm ${args.join(' ')} exited ${r.status}:\n${(r.stdout || '') + (r.stderr || '')}`);
    return r.stdout;
}

function ensureNodeModules() {
    const req = createRequire(path.join(HERE, 'package.json'));
    const missing = Object.keys(pkg.dependencies).filter((d) => {
        try {
            req.resolve(`${d}/package.json`);
            return false;
        } catch {
            return true;
        }
    });
    if (missing.length === 0)
        return;
    console.log(`# npm ci (missing: ${missing.join(', ')})`);
    npm(['ci', '--no-audit', '--no-fund', '--loglevel=error'], { stdio: 'inherit' });
}

/** The OHIF dist/ folder, fetched and verified once. */
function ensureOhif() {
    const { package: name, version, integrity } = pkg.ohifApp;
    const dir = path.join(HERE, 'node_modules', `.ohif-app-${version}`);
    const dist = path.join(dir, 'dist');
    if (fs.existsSync(path.join(dist, 'index.html')))
        return dist;
    console.log(`# npm pack ${name}@${version}`);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'yy-ohif-'));
    try {
        const out = JSON.parse(npm(['pack', `${name}@${version}`, '--json', '--pack-destination', tmp,
                                    '--loglevel=error']));
        const tgz = path.join(tmp, out[0].filename);
        const got = 'sha512-' + crypto.createHash('sha512').update(fs.readFileSync(tgz)).digest('base64');
        if (got !== integrity)
            throw new Error(`${name}@${version}: tarball sha512 ${got} is not the pinned ${integrity}`);
        const stage = path.join(tmp, 'x');
        fs.mkdirSync(stage);
        const r = spawnSync('tar', ['-xzf', tgz, '-C', stage, '--strip-components=1', 'package/dist'],
                            { encoding: 'utf8' });
        if (r.status !== 0)
            throw new Error(`tar: ${r.stderr || r.error}`);
        if (!fs.existsSync(path.join(stage, 'dist', 'index.html')))
            throw new Error(`${name}@${version} has no dist/index.html`);
        fs.rmSync(dir, { recursive: true, force: true });
        fs.renameSync(stage, dir);
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    return dist;
}

async function main() {
    const names = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(SUITES);
    for (const n of names)
        if (!SUITES[n])
            throw new Error(`unknown suite ${n} (known: ${Object.keys(SUITES).join(', ')})`);
    console.log(`# yingyun ${BIN}\n# corpus ${CORPUS}\n# artifacts ${ARTIFACTS}`);
    const total = new Checks('setup');
    let passed = 0, failed = 0;
    let ready = await total.check('node_modules (npm ci when missing)', () => ensureNodeModules());
    let ohifDist = null;
    if (ready && names.includes('ohif'))
        ready = await total.check(`OHIF viewer ${pkg.ohifApp.package}@${pkg.ohifApp.version} dist/`, () => {
            ohifDist = ensureOhif();
        });
    passed += total.passed;
    failed += total.failed;
    if (ready) {
        for (const n of names) {
            const checks = new Checks(n);
            const server = new Server({ importCorpus: SUITES[n].importCorpus });
            try {
                await checks.check('server start', () => server.start());
                if (checks.failed === 0) {
                    const mod = await import(pathToFileURL(path.join(HERE, SUITES[n].module)).href);
                    await mod.run(checks, server, { ohifDist });
                }
            } catch (e) {
                await checks.check('suite ran to the end', () => { throw e; });
            } finally {
                await server.stop();
                if (checks.failed)
                    console.log(`# server log tail (${n}):\n${server.readLog().split('\n').slice(-40).join('\n')}`);
                await server.cleanup();
            }
            passed += checks.passed;
            failed += checks.failed;
        }
    }
    console.log(`${passed} passed, ${failed} failed`);
    return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
    console.error(e && e.stack || e);
    console.log('0 passed, 1 failed');
    process.exit(1);
});
