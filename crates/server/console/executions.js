// The executions list: newest first, live (the first page refreshes itself), filtered by
// workflow (a prefix), status, what started it and a time range, searched by id and by a
// JMESPath over input and output; each row says what it waits for or why it failed. Every
// filter lives in the URL, so a link keeps it.

import { api, el, fmtMs, fmtTime, statusBadge } from './api.js';
import { EXEC_STATUSES, errorBox, fill, heading, link } from './common.js';

const STARTERS = ['api', 'cli', 'queue', 'conversation', 'child', 'schedule', 'webhook', 'mcp', 'a2a', 'retry', 'fork', 'eval'];
const FILTERS = ['status', 'workflow_prefix', 'started_by', 'id', 'where', 'created_after', 'created_before'];
const LIVE_MS = 3000;

/** `datetime-local` value (the browser's zone) → RFC 3339, and back. */
function toRfc3339(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}
function toLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** What a row waits for, or why it failed. */
function why(x) {
  const w = x.waiting_for;
  if (w) {
    if (w.kind === 'person') return el('span', {}, 'a person at ', el('span', { class: 'mono' }, w.node || '?'), w.prompt ? el('span', { class: 'muted' }, `: ${w.prompt.length > 80 ? w.prompt.slice(0, 79) + '…' : w.prompt}`) : null);
    if (w.kind === 'timer') return `a timer, until ${fmtTime(w.until)}`;
    if (w.kind === 'child') return ['a child execution ', link(`executions/${encodeURIComponent(w.execution_id || '')}`, w.execution_id || '')];
    return w.kind;
  }
  const e = x.error;
  if (e) {
    const msg = e.message || '';
    return el('span', { class: 'error-text' }, e.node ? el('span', { class: 'mono' }, `${e.node}: `) : null, e.code ? `${e.code} ` : '',
      el('span', { class: 'muted' }, msg.length > 100 ? msg.slice(0, 99) + '…' : msg));
  }
  return '';
}

export async function executions(main, { query, navigate }) {
  const get = (k) => query.get(k) || '';
  // `workflow` (an exact name, as links from before had it) is taken as the prefix.
  const prefix = get('workflow_prefix') || get('workflow');
  const cursor = get('cursor');
  const size = Math.min(Math.max(Number(query.get('limit')) || 50, 1), 500);
  const input = (id, label, attrs, help) => el('div', { class: 'field' }, el('label', { for: id }, label),
    help ? el('span', { class: 'help', id: `${id}-help` }, help) : null,
    el('input', { id, name: id, 'aria-describedby': help ? `${id}-help` : null, ...attrs }));
  const statusSel = el('select', { id: 'f-status', name: 'status' },
    el('option', { value: '' }, 'any'),
    EXEC_STATUSES.map((s) => el('option', { value: s, selected: s === get('status') }, s.replace('_', ' '))));
  const startedSel = el('select', { id: 'f-started', name: 'started_by' },
    el('option', { value: '' }, 'anything'),
    STARTERS.map((s) => el('option', { value: s, selected: s === get('started_by') }, s)));
  const filters = el('form', { class: 'filters', role: 'search', 'aria-label': 'Find executions' },
    input('f-id', 'Execution id', { type: 'search', value: get('id'), placeholder: 'id or its start', spellcheck: 'false', autocomplete: 'off' }),
    input('f-workflow', 'Workflow', { type: 'search', value: prefix, placeholder: 'name or its start', spellcheck: 'false' }),
    el('div', { class: 'field' }, el('label', { for: 'f-status' }, 'Status'), statusSel),
    // On a phone the rarer filters fold away (open when one is set).
    el('details', { class: 'more-filters', open: window.innerWidth > 640 || ['started_by', 'created_after', 'created_before', 'where'].some((k) => get(k)) },
      el('summary', {}, 'More filters'),
      el('div', { class: 'filters-inner' },
        el('div', { class: 'field' }, el('label', { for: 'f-started' }, 'Started by'), startedSel),
        input('f-after', 'From', { type: 'datetime-local', value: toLocal(get('created_after')) }),
        input('f-before', 'Until', { type: 'datetime-local', value: toLocal(get('created_before')) }),
        input('f-where', 'Where (JMESPath)', { type: 'search', class: 'wide mono', value: get('where'), placeholder: "input.amount > `100`", spellcheck: 'false', autocomplete: 'off' },
          'Over id, workflow, status, input, output, error, started_by'))),
    el('div', { class: 'filter-buttons' }, el('button', { type: 'submit' }, 'Search'),
      el('a', { href: 'executions', class: 'clear' }, 'Clear')));
  const url = (over = {}) => {
    const q = new URLSearchParams();
    const vals = {
      status: statusSel.value, workflow_prefix: filters.querySelector('#f-workflow').value.trim(),
      started_by: startedSel.value, id: filters.querySelector('#f-id').value.trim(),
      where: filters.querySelector('#f-where').value.trim(),
      created_after: toRfc3339(filters.querySelector('#f-after').value),
      created_before: toRfc3339(filters.querySelector('#f-before').value), ...over,
    };
    for (const k of FILTERS) if (vals[k]) q.set(k, vals[k]);
    if (size !== 50) q.set('limit', String(size));
    if (over.cursor) q.set('cursor', over.cursor);
    return `executions${q.size ? '?' + q : ''}`;
  };
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    navigate(url());
  });
  const live = el('p', { class: 'muted live', 'aria-live': 'off' });
  const body = el('div', {}, el('p', {}, 'Loading…'));
  fill(main, heading('Executions'), filters, live, body);

  const q = new URLSearchParams({ limit: String(size) });
  if (prefix) q.set('workflow_prefix', prefix);
  for (const k of FILTERS) if (k !== 'workflow_prefix' && get(k)) q.set(k, get(k));
  if (cursor) q.set('cursor', cursor);
  let shown = '';
  const load = async () => {
    const page = await api('GET', `/executions?${q}`);
    const key = JSON.stringify(page.items.map((x) => [x.id, x.status, x.updated_at]));
    if (key === shown) return;
    shown = key;
    const rows = page.items.map((x) => el('tr', { 'data-id': x.id },
      el('td', { 'data-label': 'Execution' }, link(`executions/${encodeURIComponent(x.id)}`, x.id, { class: 'mono' })),
      el('td', { 'data-label': 'Workflow' }, link(`workflows/${encodeURIComponent(x.workflow)}`, `${x.workflow} v${x.version}`)),
      el('td', { 'data-label': 'Status' }, statusBadge(x.status)),
      el('td', { 'data-label': 'Waiting for / why', class: 'why' }, why(x)),
      el('td', { 'data-label': 'Started' }, fmtTime(x.created_at), x.started_by ? el('span', { class: 'muted' }, ` · ${x.started_by.kind}`) : null),
      el('td', { 'data-label': 'Took', class: 'num' }, x.finished_at ? fmtMs(Date.parse(x.finished_at) - Date.parse(x.created_at)) : '—')));
    const table = el('table', { class: 'list stack' },
      el('caption', { class: 'sr-only' }, 'Executions, newest first'),
      el('thead', {}, el('tr', {}, ['Execution', 'Workflow', 'Status', 'Waiting for / why', 'Started', 'Took'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows));
    const nav = el('nav', { class: 'pager', 'aria-label': 'Pages' });
    if (cursor) nav.append(link(url({ cursor: '' }), 'First page'));
    if (page.next_cursor) nav.append(link(url({ cursor: page.next_cursor }), page.items.length < size && get('where') ? 'Search further' : 'Next page', { rel: 'next' }));
    const scanned = page.scanned !== undefined && get('where')
      ? el('p', { class: 'muted' }, `Searched ${page.scanned} execution${page.scanned === 1 ? '' : 's'}${page.next_cursor ? '; older ones are not searched yet' : ''}.`) : null;
    fill(body, page.items.length ? table : el('p', {}, 'No executions match.'), scanned, nav);
  };
  try {
    await load();
  } catch (e) {
    fill(body, errorBox(e));
    return () => {};
  }
  // The first page stays current; a later page is a fixed view of the past.
  if (cursor) return () => {};
  live.textContent = 'Live: new executions and status changes appear as they happen.';
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await load(); } catch { /* a refresh that fails leaves the list as it was */ }
    }
    if (!stopped) timer = setTimeout(tick, LIVE_MS);
  };
  timer = setTimeout(tick, LIVE_MS);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
