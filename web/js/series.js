// series.js - the study/series/instance model and the frame loader:
// a priority queue of frame requests over a few connections, batching the
// frames of multi-frame instances, falling back from native frames to the
// stored encoding (decoded here) and to server rendering, and caching the
// decoded frames in a byte-bounded LRU.

import { T, str, num, first, objectKind, frameInfo, dot } from './dicom.js';
import { TS, HttpError } from './dicomweb.js';
import {
  pixelModule, nativeFrameBytes, decodeNative, decodeStored, decodeWithBrowser, loadPalette,
  modalityLutOf, voiLutsOf,
} from './pixels.js';

function hasPixelData(ds) { return !!(ds && (ds[T.PixelData] || ds[T.FloatPixelData] || ds[T.DoubleFloatPixelData])); }

export class Instance {
  constructor(series, ds) {
    this.series = series;
    this.uid = str(ds, T.SOPInstanceUID);
    this.ds = ds;
    this.full = null; // instance-level WADO metadata once fetched
    this.update(ds);
  }

  update(ds) {
    this.ds = Object.assign({}, this.ds, ds);
    const dw = this.series.dw;
    if (hasPixelData(ds) && !this.full) dw.pixelDataReported = true;
    this.kind = objectKind(this.ds, dw.pixelDataReported || !!this.full);
    this.pm = pixelModule(this.ds);
    this.frames = Math.max(1, num(this.ds, T.NumberOfFrames, 1));
    this.number = num(this.ds, T.InstanceNumber, 0);
    this._info = [];
  }

  /** Needs its own metadata before frames can be shown. */
  needsFull() {
    if (this.full) return false;
    const pm = this.pm;
    // is there pixel data at all? (a QIDO response may or may not say)
    const unsure = this.kind === 'image' && !hasPixelData(this.ds) && !this.series.dw.pixelDataNotReported;
    return unsure || this.kind !== 'image' || this.frames > 1 || pm.photometric === 'PALETTE COLOR' ||
      pm.bitsAllocated > 16 || !this.ds[T.PhotometricInterpretation] || !this.ds[T.BitsStored];
  }

  info(frame = 0) {
    if (!this._info[frame]) {
      const fi = frameInfo(this.ds, frame);
      fi.modLut = modalityLutOf(this.ds);
      fi.voiLuts = voiLutsOf(this.ds);
      fi.voiFunction = str(this.ds, T.VOILUTFunction, 'LINEAR').trim().toUpperCase() || 'LINEAR';
      fi.mono1 = this.pm.photometric === 'MONOCHROME1';
      fi.presentationInverse = this.pm.presentationInverse;
      this._info[frame] = fi;
    }
    return this._info[frame];
  }

  key(frame) { return `${this.uid}|${frame}`; }
}

/** Sorts instances: InstanceNumber, then position along the normal. */
function sortInstances(list) {
  return list.sort((a, b) => {
    if (a.number !== b.number) return a.number - b.number;
    const ia = a.info(0), ib = b.info(0);
    if (ia.ipp && ib.ipp && ia.normal) return dot(ia.ipp, ia.normal) - dot(ib.ipp, ia.normal);
    return a.uid < b.uid ? -1 : 1;
  });
}

export class Series {
  constructor(dw, studyUID, ds) {
    this.dw = dw;
    this.studyUID = studyUID;
    this.ds = ds;
    this.uid = str(ds, T.SeriesInstanceUID);
    this.modality = str(ds, T.Modality);
    this.description = str(ds, T.SeriesDescription);
    this.number = num(ds, T.SeriesNumber, 0);
    this.count = num(ds, T.NumberOfSeriesRelatedInstances, 0);
    this.byUID = new Map();
    this.images = null; // [{inst, frame}] once the instance list is loaded
    this.fetchMode = null; // 'stored' when the server cannot send native frames
    this._all = null;
  }

  instanceFor(ds) {
    const uid = str(ds, T.SOPInstanceUID);
    let inst = this.byUID.get(uid);
    if (inst) inst.update(ds); else { inst = new Instance(this, ds); this.byUID.set(uid, inst); }
    return inst;
  }

  /** One instance at an offset of the server's order (first image, thumbnails). */
  async probe(offset = 0) {
    const list = await this.dw.instances(this.studyUID, this.uid, { limit: 1, offset });
    if (!list.length) return null;
    return this.instanceFor(list[0]);
  }

  /** The whole instance list, and the image stack built from it. */
  loadAll() {
    if (!this._all) {
      this._all = (async () => {
        // pages of 1000: servers cap QIDO limits (this one at qido_max_limit)
        let list = [];
        for (;;) {
          const page = await this.dw.instances(this.studyUID, this.uid, { limit: 1000, offset: list.length });
          list = list.concat(page);
          if (!page.length || (this.count ? list.length >= this.count : page.length < 1000)) break;
        }
        const insts = list.map((ds) => this.instanceFor(ds));
        // a server that ignores includefield: fall back to the series metadata
        if (insts.some((i) => i.kind === 'image' && !i.ds[T.BitsStored])) {
          const meta = await this.dw.metadata(this.studyUID, this.uid);
          for (const ds of meta) { const i = this.instanceFor(ds); i.full = ds; }
          list = meta;
        }
        const sorted = sortInstances([...new Set(list.map((ds) => this.byUID.get(str(ds, T.SOPInstanceUID))))]);
        this.instances = sorted;
        const images = [];
        for (const inst of sorted) for (let f = 0; f < inst.frames; f++) images.push({ inst, frame: f });
        this.images = images;
        this.frameOfReference = str(sorted[0] && sorted[0].ds, T.FrameOfReferenceUID);
        this.count = sorted.length;
        return images;
      })();
      this._all.catch(() => { this._all = null; });
    }
    return this._all;
  }

  /** Instance-level metadata (and palette) of an instance, once. */
  ensureFull(inst) {
    if (!inst._full) {
      inst._full = (async () => {
        if (!inst.full) {
          const m = await this.dw.metadata(this.studyUID, this.uid, inst.uid);
          const listed = hasPixelData(inst.ds);
          inst.full = m[0] || {};
          // pixel data in the metadata but not in QIDO: this server's QIDO does not list it
          if (!listed && hasPixelData(inst.full)) this.dw.pixelDataNotReported = true;
          inst.update(inst.full);
        }
        if (inst.pm.photometric === 'PALETTE COLOR' && !inst.palette) {
          inst.palette = await loadPalette(inst.full, (uri) => this.dw.bulk(uri));
        }
        return inst.full;
      })();
      inst._full.catch(() => { inst._full = null; });
    }
    return inst._full;
  }
}

/* ------------------------------------------------------------------ */

const URGENT = 10; // priorities below this are images someone is waiting for
const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_FRAMES = 16;

export class FrameLoader {
  constructor(dw, cache, { concurrency = 4 } = {}) {
    this.dw = dw;
    this.cache = cache;
    this.concurrency = concurrency;
    this.queue = []; // jobs not started
    this.jobs = new Map(); // key -> job (queued or running)
    this.running = 0;
    this.active = new Set(); // jobs being loaded
    this.listeners = new Set();
    this.errors = 0;
  }

  onLoaded(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }

  cached(inst, frame) { return this.cache.get(inst.key(frame)); }

  /** Loads (or returns) a frame; lower priority numbers go first. */
  load(inst, frame, priority = 0, owner = null) {
    const key = inst.key(frame);
    const hit = this.cache.get(key);
    if (hit) return Promise.resolve(hit);
    let job = this.jobs.get(key);
    if (job) {
      if (priority < job.priority) { job.priority = priority; this.pump(); }
      if (owner) job.owners.add(owner);
      return job.promise;
    }
    job = { key, inst, frame, priority, owners: new Set(owner ? [owner] : []) };
    job.promise = new Promise((res, rej) => { job.resolve = res; job.reject = rej; });
    job.promise.catch(() => {});
    this.jobs.set(key, job);
    this.queue.push(job);
    this.pump();
    return job.promise;
  }

  /** Replaces the prefetch wishes of an owner with these {inst, frame} images (nearest first). */
  prefetch(owner, images, basePriority = 10) {
    const want = new Set(images.map((im) => im.inst.key(im.frame)));
    this.queue = this.queue.filter((j) => {
      if (j.priority < basePriority || !j.owners.has(owner) || want.has(j.key)) return true;
      j.owners.delete(owner);
      if (j.owners.size) return true;
      this.jobs.delete(j.key);
      const e = new Error('cancelled'); e.cancelled = true;
      j.reject(e);
      return false;
    });
    images.forEach((im, i) => {
      if (!this.cache.has(im.inst.key(im.frame))) this.load(im.inst, im.frame, basePriority + i, owner);
    });
  }

  cancelOwner(owner) { this.prefetch(owner, [], 0); }

  /**
   * Starts queued jobs, most urgent first. While an image someone is
   * waiting for (priority < URGENT) is queued or loading, prefetching waits:
   * on a slow link the image on screen gets the whole bandwidth.
   */
  pump() {
    this.queue.sort((a, b) => a.priority - b.priority);
    while (this.running < this.concurrency && this.queue.length) {
      const urgent = this.queue[0].priority < URGENT || [...this.active].some((j) => j.priority < URGENT);
      if (urgent && this.queue[0].priority >= URGENT) break;
      const job = this.queue.shift();
      this.running++;
      this.active.add(job);
      this.run(job).finally(() => { this.running--; this.active.delete(job); this.pump(); });
    }
  }

  /** Takes queued jobs for the next frames of the same instance into one request. */
  batchFor(job) {
    const inst = job.inst;
    const batch = [job];
    if (inst.frames <= 1) return batch;
    const size = nativeFrameBytes(inst.pm) || 1;
    for (let f = job.frame + 1; f < inst.frames && batch.length < BATCH_FRAMES && (batch.length + 1) * size <= BATCH_BYTES; f++) {
      const key = inst.key(f);
      if (this.cache.has(key)) break;
      let j = this.jobs.get(key);
      if (j && !this.queue.includes(j)) break; // running elsewhere
      if (!j) {
        j = { key, inst, frame: f, priority: job.priority + 1, owners: new Set(job.owners) };
        j.promise = new Promise((res, rej) => { j.resolve = res; j.reject = rej; });
        j.promise.catch(() => {});
        this.jobs.set(key, j);
      } else {
        this.queue.splice(this.queue.indexOf(j), 1);
      }
      batch.push(j);
    }
    return batch;
  }

  async run(job) {
    const inst = job.inst, series = inst.series;
    let batch = [job];
    try {
      if (inst.needsFull() || inst.pm.photometric === 'PALETTE COLOR') await series.ensureFull(inst);
      if (inst.kind !== 'image') throw Object.assign(new Error('not an image'), { notImage: true });
      batch = this.batchFor(job);
      const frames = await this.fetchDecode(inst, batch.map((j) => j.frame));
      batch.forEach((j, i) => {
        const fr = frames[i];
        if (!fr) { // not fetched this time (see fetchDecode): back in the queue
          this.queue.push(j);
          return;
        }
        this.cache.set(j.key, fr, fr.bytes || 1);
        this.jobs.delete(j.key);
        j.resolve(fr);
        for (const fn of this.listeners) fn(j.inst, j.frame, fr);
      });
      batch = [];
    } catch (e) {
      this.errors++;
      for (const j of batch) j.reject(e);
    } finally {
      for (const j of batch) this.jobs.delete(j.key);
    }
  }

  /** Frames (decoded) for frame indices; may return fewer than asked (the rest are queued again). */
  async fetchDecode(inst, frameIdx) {
    const s = inst.series, pm = inst.pm;
    if (inst.undecodable) throw inst.undecodable;
    let numbers = frameIdx.map((f) => f + 1);
    const colorPlanar = pm.spp >= 3 && pm.planar === 1;
    const mode = inst.fetchMode || s.fetchMode || (colorPlanar ? 'stored' : 'native');
    if (mode === 'native') {
      try {
        const parts = await this.dw.frames(s.studyUID, s.uid, inst.uid, numbers, { ts: TS.ExplicitLE, expectedSize: nativeFrameBytes(pm) });
        return parts.map((p) => decodeNative(pm, p.data, { palette: inst.palette, decoded: undefined }));
      } catch (e) {
        if (!(e instanceof HttpError) || e.status !== 406) throw e;
        s.fetchMode = 'stored'; // other instances of the series are probably stored alike
      }
    }
    if (mode !== 'rendered') {
      // stored encoding of unknown syntax: one frame first, to learn whether we can decode it
      if (!inst.storedTS) numbers = numbers.slice(0, 1);
      try {
        const parts = await this.dw.frames(s.studyUID, s.uid, inst.uid, numbers, { ts: '*' });
        inst.storedTS = parts[0] && parts[0].transferSyntax;
        const out = [];
        for (const p of parts) out.push(await decodeStored(pm, p, inst.palette));
        return out;
      } catch (e) {
        if (!e.unsupported) throw e;
        inst.fetchMode = 'rendered';
      }
    }
    // last resort: the server renders (8-bit, lossy): still better than nothing
    const out = [];
    for (const n of numbers) {
      const blob = await this.dw.rendered(s.studyUID, s.uid, inst.uid, n);
      if (!blob) {
        const e = new Error(`frames stored as ${inst.storedTS || 'this transfer syntax'} cannot be decoded here`);
        e.undecodable = true;
        inst.undecodable = e; // no more requests for this instance
        throw e;
      }
      const fr = await decodeWithBrowser({ ...pm, palette: null, photometric: pm.spp > 1 || pm.photometric === 'PALETTE COLOR' ? 'RGB' : pm.photometric }, new Uint8Array(await blob.arrayBuffer()), blob.type || 'image/jpeg');
      fr.rendered = true;
      out.push(fr);
    }
    return out;
  }
}

export class Study {
  constructor(dw, uid) {
    this.dw = dw;
    this.uid = uid;
    this.series = [];
    this.ds = {};
  }

  async load() {
    const list = await this.dw.series(this.uid);
    this.series = list.map((ds) => new Series(this.dw, this.uid, ds))
      .sort((a, b) => a.number - b.number || (a.uid < b.uid ? -1 : 1));
    this.ds = list[0] || {};
    return this.series;
  }

  get patientName() { return first(this.ds, T.PatientName); }
}
