// measure.js - measurement geometry in real units: lengths and angles in
// millimetres from PixelSpacing (or ImagerPixelSpacing), ellipse and
// rectangle regions with mean, SD and area (modality units: HU on CT).

import { regionStats } from './pixels.js';

let nextId = 1;

export const MEASURE_TOOLS = ['length', 'angle', 'ellipse', 'rect'];

export function newAnnotation(type, key, p) {
  const n = type === 'angle' ? 3 : 2;
  return { id: nextId++, type, key, points: Array.from({ length: n }, () => [p[0], p[1]]), done: false, version: 0 };
}

/** Spacing [col (x), row (y)] in mm per pixel, or null. */
export function spacingOf(info) {
  if (!info || !info.colSpacing || !info.rowSpacing) return null;
  return [info.colSpacing, info.rowSpacing];
}

export function lengthMM(p, q, sp) {
  const dx = (q[0] - p[0]) * (sp ? sp[0] : 1), dy = (q[1] - p[1]) * (sp ? sp[1] : 1);
  return Math.hypot(dx, dy);
}

export function angleDeg(a, v, b, sp) {
  const sx = sp ? sp[0] : 1, sy = sp ? sp[1] : 1;
  const u = [(a[0] - v[0]) * sx, (a[1] - v[1]) * sy], w = [(b[0] - v[0]) * sx, (b[1] - v[1]) * sy];
  const d = Math.hypot(...u) * Math.hypot(...w);
  if (!d) return 0;
  const c = Math.max(-1, Math.min(1, (u[0] * w[0] + u[1] * w[1]) / d));
  return (Math.acos(c) * 180) / Math.PI;
}

function bbox(a) {
  const [p, q] = a.points;
  return [Math.min(p[0], q[0]), Math.min(p[1], q[1]), Math.max(p[0], q[0]), Math.max(p[1], q[1])];
}

/**
 * Values of an annotation: {length, unit} | {angle} | {mean, sd, area, areaUnit, n}.
 * unit is 'mm' with spacing, 'px' without.
 */
export function measure(a, info, frame, pres) {
  const sp = spacingOf(info);
  const unit = sp ? 'mm' : 'px';
  if (a.type === 'length') return { length: lengthMM(a.points[0], a.points[1], sp), unit };
  if (a.type === 'angle') return { angle: angleDeg(a.points[0], a.points[1], a.points[2], sp) };
  const [x0, y0, x1, y1] = bbox(a);
  const w = (x1 - x0) * (sp ? sp[0] : 1), h = (y1 - y0) * (sp ? sp[1] : 1);
  let inside;
  let area;
  if (a.type === 'ellipse') {
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, rx = (x1 - x0) / 2, ry = (y1 - y0) / 2;
    inside = (x, y) => rx > 0 && ry > 0 && ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1;
    area = (Math.PI * w * h) / 4;
  } else {
    inside = (x, y) => x >= x0 && x <= x1 && y >= y0 && y <= y1;
    area = w * h;
  }
  let stats = null;
  if (frame && !frame.color) {
    const ck = `${a.version}|${frame.rows}|${pres.slope}|${pres.intercept}`;
    if (a._stats && a._stats.k === ck && a._stats.frame === frame) stats = a._stats.v;
    else {
      stats = regionStats(frame, pres, [x0, y0, x1, y1], inside);
      a._stats = { k: ck, v: stats, frame };
    }
  }
  return { area, areaUnit: sp ? 'mm²' : 'px²', unit, ...(stats || {}), hasStats: !!stats };
}

/** Squared distance from point p to segment ab. */
export function distToSegment(p, a, b) {
  const vx = b[0] - a[0], vy = b[1] - a[1];
  const l2 = vx * vx + vy * vy;
  let t = l2 ? ((p[0] - a[0]) * vx + (p[1] - a[1]) * vy) / l2 : 0;
  t = Math.max(0, Math.min(1, t));
  return Math.hypot(p[0] - (a[0] + t * vx), p[1] - (a[1] + t * vy));
}
