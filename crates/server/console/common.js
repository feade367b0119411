// What every view draws with: headings, errors, JSON, links, a confirmation dialog, the
// "not found" page, how an execution was started, and help text with `code` in it.

import { el } from './api.js';

export const EXEC_STATUSES = ['pending', 'running', 'waiting', 'succeeded', 'failed', 'compensated', 'handed_over', 'cancelled'];
export const TERMINAL = new Set(['succeeded', 'failed', 'compensated', 'handed_over', 'cancelled']);

/** Replaces `parent`'s children with `kids` (arrays flattened; null, undefined, false left out). */
export function fill(parent, ...kids) {
  parent.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
}

export function heading(text) {
  return el('h1', { tabindex: '-1' }, text);
}

export function errorBox(e) {
  return el('p', { class: 'error', role: 'alert' }, e instanceof Error ? e.message : String(e));
}

export function json(value) {
  // Focusable: a long value scrolls, and a keyboard user must be able to scroll it too.
  return el('pre', { class: 'json', tabindex: '0' }, value === undefined ? '—' : JSON.stringify(value, null, 2));
}

export function link(href, text, attrs = {}) {
  return el('a', { href, ...attrs }, text);
}

/** Help text whose `backquoted` parts are code: nodes to append. */
export function md(text) {
  return String(text).split('`').map((part, i) => (i % 2 ? el('code', {}, part) : part)).filter((p) => p !== '');
}

/** The console's own "not found" page. */
export function notFound(main, what, href = 'executions', label = 'Executions') {
  document.title = 'Not found · hilo';
  fill(main, heading('Not found'), el('p', {}, what), el('p', {}, link(href, `Back to ${label}`)));
}

export function startedBy(b) {
  if (!b) return 'unknown';
  if (b.kind === 'schedule') return `schedule ${b.trigger} (tick ${b.tick})`;
  if (b.kind === 'webhook') return `webhook ${b.trigger} (delivery ${b.delivery})`;
  if (b.kind === 'conversation') return ['conversation ', link(`conversations/${encodeURIComponent(b.conversation)}`, b.conversation)];
  if (b.kind === 'child') return ['parent ', link(`executions/${encodeURIComponent(b.parent)}`, b.parent)];
  if (b.kind === 'retry') return ['retry of ', link(`executions/${encodeURIComponent(b.origin)}`, b.origin), b.at ? ` from ${b.at}` : ' from the start'];
  if (b.kind === 'fork') return ['fork of ', link(`executions/${encodeURIComponent(b.origin)}`, b.origin), ` at ${b.at}`];
  if (b.kind === 'eval') return `evaluation ${b.run} (case ${b.case})`;
  return b.kind;
}

/**
 * Asks before something that cannot be taken back: a modal dialog with the question, what
 * happens, and two buttons; resolves true only for `yes`.
 */
export function confirmDialog(question, detail, yes, no) {
  return new Promise((resolve) => {
    const dlg = el('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-h', 'aria-describedby': 'confirm-d' },
      el('h2', { id: 'confirm-h' }, question),
      el('p', { id: 'confirm-d' }, detail));
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    const keep = el('button', { type: 'button', class: 'ghost', onclick: () => done(false) }, no);
    const go = el('button', { type: 'button', class: 'danger', onclick: () => done(true) }, yes);
    dlg.append(el('div', { class: 'actions' }, keep, go));
    dlg.addEventListener('cancel', (ev) => { ev.preventDefault(); done(false); });
    document.body.append(dlg);
    dlg.showModal();
    keep.focus();
  });
}
