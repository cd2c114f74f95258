// cache.js - a least-recently-used cache bounded by bytes, for decoded
// frames. Entries pinned by a viewport (shown now) are never evicted.

export class ByteLRU {
  constructor(maxBytes) {
    this.maxBytes = maxBytes;
    this.bytes = 0;
    this.map = new Map(); // insertion order = recency
    this.pinned = new Map(); // key -> count
    this.evictions = 0;
  }

  get(key) {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }

  has(key) { return this.map.has(key); }

  set(key, value, bytes) {
    const old = this.map.get(key);
    if (old) { this.bytes -= old.bytes; this.map.delete(key); }
    this.map.set(key, { value, bytes });
    this.bytes += bytes;
    this.trim();
  }

  pin(key) { this.pinned.set(key, (this.pinned.get(key) || 0) + 1); }

  unpin(key) {
    const n = (this.pinned.get(key) || 0) - 1;
    if (n > 0) this.pinned.set(key, n); else this.pinned.delete(key);
  }

  trim() {
    if (this.bytes <= this.maxBytes) return;
    for (const [k, e] of this.map) {
      if (this.bytes <= this.maxBytes) break;
      if (this.pinned.has(k)) continue;
      this.map.delete(k);
      this.bytes -= e.bytes;
      this.evictions++;
    }
  }

  /** Room for this many more bytes without evicting. */
  free() { return Math.max(0, this.maxBytes - this.bytes); }

  clear() { this.map.clear(); this.bytes = 0; }
}

/** A budget that suits the device: small on phones, larger on desktops. */
export function defaultCacheBytes(configured) {
  if (configured) return configured;
  const mem = navigator.deviceMemory || 4; // GiB, Chrome only; capped at 8
  const mobile = matchMedia('(pointer: coarse)').matches || /Mobi|Android|iPhone|iPad/.test(navigator.userAgent);
  const mb = mobile ? Math.min(160, mem * 32) : Math.min(768, mem * 96);
  return mb * 1024 * 1024;
}
