// Small DOM helpers shared by every view. All user data goes through
// textContent / attributes, never through innerHTML.

import { session } from './api.js';

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'testid') el.dataset.testid = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' || k === 'checked' || k === 'muted') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const ICONS = {
  heart: 'M12 21.35l-1.45-1.32C5.4 15.36 2 12.28 2 8.5 2 5.42 4.42 3 7.5 3c1.74 0 3.41.81 4.5 2.09C13.09 3.81 14.76 3 16.5 3 19.58 3 22 5.42 22 8.5c0 3.78-3.4 6.86-8.55 11.54L12 21.35z',
  comment: 'M21.99 4c0-1.1-.89-2-1.99-2H4c-1.1 0-2 .9-2 2v12c0 1.1.9 2 2 2h14l4 4-.01-18z',
  home: 'M10 20v-6h4v6h5v-8h3L12 3 2 12h3v8z',
  add: 'M19 13h-6v6h-2v-6H5v-2h6V5h2v6h6v2z',
  people: 'M16 11c1.66 0 2.99-1.34 2.99-3S17.66 5 16 5c-1.66 0-3 1.34-3 3s1.34 3 3 3zm-8 0c1.66 0 2.99-1.34 2.99-3S9.66 5 8 5C6.34 5 5 6.34 5 8s1.34 3 3 3zm0 2c-2.33 0-7 1.17-7 3.5V19h14v-2.5c0-2.33-4.67-3.5-7-3.5zm8 0c-.29 0-.62.02-.97.05 1.16.84 1.97 1.97 1.97 3.45V19h6v-2.5c0-2.33-4.67-3.5-7-3.5z',
  person: 'M12 12c2.21 0 4-1.79 4-4s-1.79-4-4-4-4 1.79-4 4 1.79 4 4 4zm0 2c-2.67 0-8 1.34-8 4v2h16v-2c0-2.66-5.33-4-8-4z',
  star: 'M12 17.27L18.18 21l-1.64-7.03L22 9.24l-7.19-.61L12 2 9.19 8.63 2 9.24l5.46 4.73L5.82 21z',
  volumeOn: 'M3 9v6h4l5 5V4L7 9H3zm13.5 3c0-1.77-1.02-3.29-2.5-4.03v8.05c1.48-.73 2.5-2.25 2.5-4.02zM14 3.23v2.06c2.89.86 5 3.54 5 6.71s-2.11 5.85-5 6.71v2.06c4.01-.91 7-4.49 7-8.77s-2.99-7.86-7-8.77z',
  volumeOff: 'M16.5 12c0-1.77-1.02-3.29-2.5-4.03v2.21l2.45 2.45c.03-.2.05-.41.05-.63zm2.5 0c0 .94-.2 1.82-.54 2.64l1.51 1.51C20.63 14.91 21 13.5 21 12c0-4.28-2.99-7.86-7-8.77v2.06c2.89.86 5 3.54 5 6.71zM4.27 3L3 4.27 7.73 9H3v6h4l5 5v-6.73l4.25 4.25c-.67.52-1.42.93-2.25 1.18v2.06c1.38-.31 2.63-.95 3.69-1.81L19.73 21 21 19.73l-9-9L4.27 3zM12 4L9.91 6.09 12 8.18V4z',
  close: 'M19 6.41L17.59 5 12 10.59 6.41 5 5 6.41 10.59 12 5 17.59 6.41 19 12 13.41 17.59 19 19 17.59 13.41 12z',
  send: 'M2.01 21L23 12 2.01 3 2 10l15 2-15 2z',
  back: 'M20 11H7.83l5.59-5.59L12 4l-8 8 8 8 1.41-1.41L7.83 13H20v-2z',
  play: 'M8 5v14l11-7z',
};

export function icon(name, size = 24) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.classList.add('icon');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', ICONS[name] || '');
  svg.append(path);
  return svg;
}

// Visually hidden text for screen readers.
export const srOnly = (text) => h('span', { class: 'sr-only' }, text);

export function formatCount(n) {
  const v = Number(n) || 0;
  if (v >= 1e8) return `${(v / 1e8).toFixed(1).replace(/\.0$/, '')}亿`;
  if (v >= 1e4) return `${(v / 1e4).toFixed(1).replace(/\.0$/, '')}万`;
  return String(v);
}

export function formatTime(ms) {
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return '';
  const today = new Date();
  const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === today.toDateString()) return hm;
  return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${hm}`;
}

export function avatar(user, size = 40) {
  const img = h('img', {
    class: 'avatar',
    src: user.avatar || '',
    alt: '',
    width: size,
    height: size,
    loading: 'lazy',
    decoding: 'async',
  });
  img.addEventListener('error', () => img.classList.add('broken'), { once: true });
  return img;
}

let toastRoot = null;
// Show a short message. kind: 'info' | 'error'. Errors are also announced assertively.
export function toast(message, kind = 'info') {
  toastRoot ??= document.getElementById('toasts');
  const el = h('div', { class: `toast toast-${kind}`, testid: kind === 'error' ? 'toast-error' : 'toast-info', role: kind === 'error' ? 'alert' : null }, message);
  toastRoot.append(el);
  setTimeout(() => el.classList.add('leaving'), kind === 'error' ? 5500 : 3000);
  setTimeout(() => el.remove(), kind === 'error' ? 6000 : 3500);
}

export function emptyState(text, ...extra) {
  return h('div', { class: 'empty', testid: 'empty-state' }, h('p', {}, text), ...extra);
}

export function spinner(label = 'Loading') {
  return h('div', { class: 'spinner', role: 'progressbar', 'aria-label': label, 'aria-busy': 'true' });
}

export function navigate(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}

// Send the visitor to the login page, remembering where they wanted to go.
export function needLogin(message) {
  if (message) toast(message);
  const next = location.hash && !location.hash.startsWith('#/login') ? location.hash : '#/';
  navigate(`#/login?next=${encodeURIComponent(next)}`);
}

// Makes `btn` toggle a flag of `item` (a like, a follow) for a signed-in
// viewer: `call(want)` asks the server, then the flag and its count move
// together and `render` shows them; a refusal is shown and changes nothing.
export function toggleOnClick(btn, { item, flag, count, loginMessage, call, render, onChange }) {
  btn.addEventListener('click', async () => {
    if (!session.loggedIn) { needLogin(loginMessage); return; }
    const want = !item[flag];
    btn.disabled = true;
    try {
      await call(want);
      item[flag] = want;
      item[count] = Math.max(0, (Number(item[count]) || 0) + (want ? 1 : -1));
      render();
      onChange?.();
    } catch (err) {
      toast(err.message, 'error');
    } finally {
      btn.disabled = false;
    }
  });
}
