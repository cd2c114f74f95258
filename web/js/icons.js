// icons.js - small inline SVG icons (24x24, stroke), our own drawings.

const P = {
  wl: '<circle cx="12" cy="12" r="8"/><path d="M12 4a8 8 0 0 1 0 16z" fill="currentColor"/>',
  pan: '<path d="M12 3v18M3 12h18M12 3l-3 3M12 3l3 3M12 21l-3-3M12 21l3-3M3 12l3-3M3 12l3 3M21 12l-3-3M21 12l-3 3"/>',
  zoom: '<circle cx="10" cy="10" r="6"/><path d="M14.5 14.5L20 20M7 10h6M10 7v6"/>',
  scroll: '<rect x="6" y="3" width="12" height="18" rx="2"/><path d="M12 7v10M9 10l3-3 3 3M9 14l3 3 3-3"/>',
  length: '<path d="M4 20L20 4"/><path d="M7 17l-2-2M10 14l-2-2M13 11l-2-2M16 8l-2-2"/>',
  angle: '<path d="M4 20h16M4 20L16 6"/><path d="M10 20a6 6 0 0 0-1.5-4"/>',
  ellipse: '<ellipse cx="12" cy="12" rx="9" ry="6"/>',
  rect: '<rect x="4" y="6" width="16" height="12"/>',
  invert: '<circle cx="12" cy="12" r="8"/><path d="M12 4v16"/><path d="M12 4a8 8 0 0 0 0 16z" fill="currentColor"/>',
  rotl: '<path d="M4 4v6h6"/><path d="M4.5 10A8 8 0 1 1 6 17"/>',
  rotr: '<path d="M20 4v6h-6"/><path d="M19.5 10A8 8 0 1 0 18 17"/>',
  fliph: '<path d="M12 3v18"/><path d="M9 7L4 12l5 5zM15 7l5 5-5 5z"/>',
  flipv: '<path d="M3 12h18"/><path d="M7 9l5-5 5 5zM7 15l5 5 5-5z"/>',
  fit: '<path d="M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5"/>',
  one: '<rect x="4" y="4" width="16" height="16"/><path d="M10 9l2-1v8"/>',
  reset: '<path d="M3 12a9 9 0 1 0 3-6.7L3 8"/><path d="M3 3v5h5"/>',
  play: '<path d="M7 4l13 8-13 8z" fill="currentColor"/>',
  pause: '<path d="M7 4h4v16H7zM13 4h4v16h-4z" fill="currentColor"/>',
  sync: '<path d="M4 12a8 8 0 0 1 14-5l2-2v6h-6l2-2a5 5 0 0 0-9 3M20 12a8 8 0 0 1-14 5l-2 2v-6h6l-2 2a5 5 0 0 0 9-3"/>',
  ref: '<rect x="3" y="5" width="18" height="14"/><path d="M3 15L21 9" stroke-dasharray="3 2"/>',
  overlay: '<rect x="3" y="3" width="18" height="18"/><path d="M6 7h5M6 10h3M13 17h5M15 14h3"/>',
  tags: '<path d="M4 6h16M4 12h16M4 18h10"/>',
  trash: '<path d="M5 7h14M10 7V4h4v3M7 7l1 13h8l1-13"/>',
  help: '<circle cx="12" cy="12" r="9"/><path d="M9.5 9.5a2.5 2.5 0 1 1 3.5 2.3c-.7.4-1 1-1 1.7V14M12 17v.5"/>',
  settings: '<circle cx="12" cy="12" r="3"/><path d="M12 2v3M12 19v3M2 12h3M19 12h3M4.9 4.9l2.1 2.1M17 17l2.1 2.1M4.9 19.1L7 17M17 7l2.1-2.1"/>',
  back: '<path d="M15 5l-7 7 7 7"/>',
  series: '<rect x="3" y="3" width="7" height="7"/><rect x="14" y="3" width="7" height="7"/><rect x="3" y="14" width="7" height="7"/><rect x="14" y="14" width="7" height="7"/>',
  download: '<path d="M12 4v11M7 10l5 5 5-5M5 20h14"/>',
  install: '<rect x="6" y="2" width="12" height="20" rx="2"/><path d="M12 7v8M9 12l3 3 3-3"/>',
  search: '<circle cx="10" cy="10" r="6"/><path d="M14.5 14.5L20 20"/>',
};

export function icon(name) {
  const span = document.createElement('span');
  span.className = 'icon';
  span.setAttribute('aria-hidden', 'true');
  span.innerHTML = `<svg viewBox="0 0 24 24" width="22" height="22" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round">${P[name] || ''}</svg>`;
  return span;
}
