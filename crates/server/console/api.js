// The console's one way to the server: fetch with the session cookie (same origin), the
// CSRF token on state-changing requests, and RFC 9457 problems turned into ApiError.

/** The console's prefix (the page's <base href>), ending with "/". */
export const PREFIX = new URL(document.baseURI).pathname;

let csrf = null;
let onUnauthorized = () => {};

export function setCsrf(token) { csrf = token; }
export function whenUnauthorized(fn) { onUnauthorized = fn; }

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.message)) || `the server answered ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** A request to a console path (relative to the prefix). */
export async function call(method, path, body, opts = {}) {
  const headers = { accept: 'application/json' };
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string') {
      headers['content-type'] = opts.type || 'application/yaml';
      payload = body;
    } else {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
  }
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  const data = type.includes('json') ? await res.json() : await res.text();
  if (!res.ok) {
    if (res.status === 401 && !opts.quiet) onUnauthorized();
    throw new ApiError(res.status, typeof data === 'object' ? data : { detail: data });
  }
  return data;
}

/** A request to the HTTP API (`/api/v1` under the prefix). */
export function api(method, path, body, opts) {
  return call(method, 'api/v1' + path, body, opts);
}

/** Builds an element: el('p', {class: 'x'}, 'text', child…). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/**
 * A time as the console writes every time: `2026-11-27 09:14:03` in the browser's zone
 * (with the zone's offset when `long`).
 */
export function fmtTime(iso, long = false) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const s = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (!long) return s;
  const off = -d.getTimezoneOffset();
  return `${s}.${pad(d.getMilliseconds(), 3)} UTC${off >= 0 ? '+' : '−'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
}

/** `1 call`, `2 calls` (or the plural given). */
export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function statusBadge(status) {
  return el('span', { class: `badge s-${status}` }, status.replaceAll('_', ' '));
}
