// lib.mjs - support for the third-party client tests: paths from the
// environment, a real yingyun server on a free loopback port with a temporary
// data directory, a tiny check/summary recorder, DICOM file helpers.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SOURCE = process.env.YY_SOURCE_ROOT || path.resolve(HERE, '..', '..');
export const BIN = process.env.YY_BIN || path.join(SOURCE, 'build', 'yingyun');
export const CORPUS = process.env.YY_CORPUS || '/work/shared/corpus';
export const ARTIFACTS = path.resolve(process.env.YY_ARTIFACTS || path.join(SOURCE, 'tests', 'artifacts'));

export function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.unref();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

export function sleep(ms) {
    return new Promise((r) => setTimeout(r, ms));
}

function canConnect(port) {
    return new Promise((resolve) => {
        const c = net.connect({ host: '127.0.0.1', port });
        c.once('connect', () => { c.destroy(); resolve(true); });
        c.once('error', () => resolve(false));
    });
}

/** A yingyun process serving a temporary data directory. */
export class Server {
    constructor({ importCorpus = false } = {}) {
        this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'yy-clients-'));
        this.data = path.join(this.tmp, 'data');
        this.logPath = path.join(this.tmp, 'server.log');
        this.importCorpus = importCorpus;
        this.proc = null;
    }

    async start() {
        if (this.importCorpus) {
            // some corpus files are meant to fail (README of the corpus), so the
            // exit status is not checked here; the tests count what QIDO finds
            const r = spawnSync(BIN, ['import', '--data', this.data, CORPUS], { encoding: 'utf8' });
            this.importOutput = (r.stdout || '') + (r.stderr || '');
            if (r.error)
                throw r.error;
        }
        this.port = await freePort();
        const log = fs.openSync(this.logPath, 'a');
        this.proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${this.port}`, '--data', this.data,
                                '--cors-origins', '*'], { stdio: ['ignore', log, log] });
        fs.closeSync(log);
        let exited = null;
        this.proc.once('exit', (code, sig) => { exited = code ?? sig; });
        const deadline = Date.now() + 20000;
        while (Date.now() < deadline) {
            if (exited !== null)
                throw new Error(`server exited (${exited}): ${this.readLog().slice(-2000)}`);
            if (await canConnect(this.port))
                return this;
            await sleep(50);
        }
        throw new Error('server did not start: ' + this.readLog().slice(-2000));
    }

    get origin() { return `http://127.0.0.1:${this.port}`; }
    get root() { return `${this.origin}/dicomweb`; }

    readLog() {
        try { return fs.readFileSync(this.logPath, 'utf8'); } catch { return ''; }
    }

    async stop() {
        const p = this.proc;
        this.proc = null;
        if (p && p.exitCode === null && p.signalCode === null) {
            const done = new Promise((r) => p.once('exit', r));
            p.kill('SIGTERM');
            const t = setTimeout(() => p.kill('SIGKILL'), 20000);
            await done;
            clearTimeout(t);
        }
    }

    async cleanup() {
        await this.stop();
        fs.rmSync(this.tmp, { recursive: true, force: true });
    }
}

/** Records named checks; summary() prints "N passed, N failed". */
export class Checks {
    constructor(suite) {
        this.suite = suite;
        this.passed = 0;
        this.failed = 0;
    }

    async check(name, fn) {
        const t0 = Date.now();
        try {
            await fn();
            this.passed++;
            console.log(`ok   ${this.suite}: ${name} (${Date.now() - t0} ms)`);
            return true;
        } catch (e) {
            this.failed++;
            console.log(`FAIL ${this.suite}: ${name}\n     ${String(e && e.stack || e).replace(/\n/g, '\n     ')}`);
            return false;
        }
    }
}

export function assert(cond, msg) {
    if (!cond)
        throw new Error(msg);
}

export function assertEq(got, want, what) {
    const g = JSON.stringify(got), w = JSON.stringify(want);
    if (g !== w)
        throw new Error(`${what}: got ${g.slice(0, 500)}, want ${w.slice(0, 500)}`);
}

export function sha256(buf) {
    return crypto.createHash('sha256').update(toBuffer(buf)).digest('hex');
}

export function toBuffer(x) {
    if (Buffer.isBuffer(x))
        return x;
    if (x instanceof ArrayBuffer)
        return Buffer.from(x);
    if (ArrayBuffer.isView(x))
        return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
    throw new Error('not bytes: ' + Object.prototype.toString.call(x));
}

/** Rows of a corpus TSV file (MANIFEST.tsv, REFERENCE.tsv) as objects. */
export function readTsv(name, header) {
    const lines = fs.readFileSync(path.join(CORPUS, name), 'utf8').split('\n').filter((l) => l.trim());
    const head = header || lines.shift().split('\t');
    return lines.map((l) => Object.fromEntries(l.split('\t').map((v, i) => [head[i], v])));
}

/** sha256 of decoded frame `index` of a corpus file, from REFERENCE.tsv. */
export function referenceFrameSha(rel, index) {
    const rows = readTsv('REFERENCE.tsv', ['path', 'frame_index', 'sha256', 'min', 'max', 'decoder_used']);
    const r = rows.find((x) => x.path === rel && Number(x.frame_index) === index);
    if (!r)
        throw new Error(`no REFERENCE.tsv row for ${rel} frame ${index}`);
    return r.sha256;
}

/** JSON value of a DICOM JSON attribute (first value), or undefined. */
export function jv(obj, tag) {
    const a = obj && obj[tag];
    return a && a.Value ? a.Value[0] : undefined;
}

export function ensureDir(d) {
    fs.mkdirSync(d, { recursive: true });
    return d;
}
