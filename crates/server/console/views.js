// The console's views. Each takes the <main> element and the route's parameters, draws
// itself from the HTTP API and returns a function that stops what it started (live streams).

import { api, call, el, fmtMs, fmtTime, statusBadge, setCsrf, ApiError } from './api.js';
import { drawGraph, topNode } from './graph.js';
import { schemaForm } from './form.js';

const EXEC_STATUSES = ['pending', 'running', 'waiting', 'succeeded', 'failed', 'compensated', 'handed_over', 'cancelled'];
const TERMINAL = new Set(['succeeded', 'failed', 'compensated', 'handed_over', 'cancelled']);

/** Replaces `parent`'s children with `kids` (arrays flattened; null, undefined, false left out). */
function fill(parent, ...kids) {
  parent.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
}

function heading(text) {
  return el('h1', { tabindex: '-1' }, text);
}

function errorBox(e) {
  return el('p', { class: 'error', role: 'alert' }, e instanceof Error ? e.message : String(e));
}

function json(value) {
  // Focusable: a long value scrolls, and a keyboard user must be able to scroll it too.
  return el('pre', { class: 'json', tabindex: '0' }, value === undefined ? '—' : JSON.stringify(value, null, 2));
}

function link(href, text, attrs = {}) {
  return el('a', { href, ...attrs }, text);
}

// ---- sign-in -------------------------------------------------------------------------

export function signIn(main, { done }) {
  const err = el('p', { class: 'field-error', id: 'key-err', 'aria-live': 'polite' });
  const input = el('input', {
    id: 'key', name: 'key', type: 'password', autocomplete: 'off', required: true,
    'aria-describedby': 'key-help key-err', spellcheck: 'false',
  });
  const form = el('form', { class: 'card narrow', novalidate: true },
    el('div', { class: 'field' },
      el('label', { for: 'key' }, 'API key'),
      el('span', { class: 'help', id: 'key-help' }, 'A key from `hilo keys create` (or a human agent’s key). It stays on the server; this browser gets a session cookie.'),
      input, err),
    el('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    if (!input.value.trim()) {
      err.textContent = 'Paste an API key.';
      input.setAttribute('aria-invalid', 'true');
      return;
    }
    try {
      const s = await call('POST', 'session', { key: input.value.trim() }, { quiet: true });
      setCsrf(s.csrf);
      input.value = '';
      done(s);
    } catch (e) {
      input.setAttribute('aria-invalid', 'true');
      err.textContent = e.message;
    }
  });
  fill(main, heading('Sign in'), form);
  input.focus();
}

// ---- executions ----------------------------------------------------------------------

export async function executions(main, { query, navigate }) {
  const status = query.get('status') || '';
  const workflow = query.get('workflow') || '';
  const cursor = query.get('cursor') || '';
  const size = Math.min(Math.max(Number(query.get('limit')) || 50, 1), 500);
  const statusSel = el('select', { id: 'f-status', name: 'status' },
    el('option', { value: '' }, 'any'),
    EXEC_STATUSES.map((s) => el('option', { value: s, selected: s === status }, s.replace('_', ' '))));
  const wfInput = el('input', { id: 'f-workflow', name: 'workflow', type: 'text', value: workflow });
  const filters = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filter executions' },
    el('div', { class: 'field' }, el('label', { for: 'f-status' }, 'Status'), statusSel),
    el('div', { class: 'field' }, el('label', { for: 'f-workflow' }, 'Workflow'), wfInput),
    el('button', { type: 'submit' }, 'Filter'));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (statusSel.value) q.set('status', statusSel.value);
    if (wfInput.value.trim()) q.set('workflow', wfInput.value.trim());
    if (size !== 50) q.set('limit', String(size));
    navigate(`executions${q.size ? '?' + q : ''}`);
  });
  const body = el('div', {}, el('p', {}, 'Loading…'));
  fill(main, heading('Executions'), filters, body);
  const q = new URLSearchParams({ limit: String(size) });
  if (status) q.set('status', status);
  if (workflow) q.set('workflow', workflow);
  if (cursor) q.set('cursor', cursor);
  try {
    const page = await api('GET', `/executions?${q}`);
    const rows = page.items.map((x) => el('tr', {},
      el('td', {}, link(`executions/${encodeURIComponent(x.id)}`, x.id, { class: 'mono' })),
      el('td', {}, link(`workflows/${encodeURIComponent(x.workflow)}`, `${x.workflow} v${x.version}`)),
      el('td', {}, statusBadge(x.status)),
      el('td', {}, fmtTime(x.created_at)),
      el('td', {}, x.finished_at ? fmtMs(Date.parse(x.finished_at) - Date.parse(x.created_at)) : '—')));
    const table = el('table', { class: 'list' },
      el('caption', { class: 'sr-only' }, 'Executions, newest first'),
      el('thead', {}, el('tr', {}, ['Execution', 'Workflow', 'Status', 'Started', 'Duration'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows));
    const nav = el('nav', { class: 'pager', 'aria-label': 'Pages' });
    const base = new URLSearchParams();
    if (status) base.set('status', status);
    if (workflow) base.set('workflow', workflow);
    if (size !== 50) base.set('limit', String(size));
    if (cursor) nav.append(link(`executions${base.size ? '?' + base : ''}`, 'First page'));
    if (page.next_cursor) {
      const next = new URLSearchParams(base);
      next.set('cursor', page.next_cursor);
      nav.append(link(`executions?${next}`, 'Next page', { rel: 'next' }));
    }
    fill(body, page.items.length ? el('div', { class: 'scroll' }, table) : el('p', {}, 'No executions match.'), nav);
  } catch (e) {
    fill(body, errorBox(e));
  }
}

// ---- one execution -------------------------------------------------------------------

const EVENT_STATUS = {
  node_started: 'running', node_succeeded: 'succeeded', node_failed: 'failed',
  node_skipped: 'skipped', node_retrying: 'retrying', node_waiting: 'waiting',
  node_cancelled: 'cancelled', compensation_started: 'compensating',
  compensation_succeeded: 'compensated', compensation_failed: 'failed',
};
const EVENTS = Object.keys(EVENT_STATUS).concat([
  'execution_started', 'execution_resumed', 'timer_fired', 'human_answered', 'child_finished',
  'cancel_requested', 'execution_waiting', 'execution_succeeded', 'execution_failed',
  'execution_compensated', 'execution_handed_over', 'execution_cancelled']);

/** A node key's LLM use (`costs.by_node`): tokens in and out, and its cost with the calls. */
function nodeUsage(c) {
  if (!c) return [el('td', { class: 'num' }, '—'), el('td', { class: 'num' }, '—')];
  const calls = `${c.llm_calls} call${c.llm_calls === 1 ? '' : 's'}`;
  return [
    el('td', { class: 'num', title: `${c.input_tokens} in, ${c.output_tokens} out` },
      `${c.input_tokens + c.output_tokens}`, el('span', { class: 'muted' }, ` (${c.input_tokens} in · ${c.output_tokens} out)`)),
    el('td', { class: 'num' }, `$${(c.cost_usd || 0).toFixed(4)}`, el('span', { class: 'muted' }, ` · ${calls}`)),
  ];
}

/** A timeline bar from `s` to `f` (ms; `f` null: still going) on the axis `t0`..`t1`. */
function bar(s, f, t0, t1, status, label) {
  const track = el('div', { class: 'track', title: label });
  if (s === null) return track;
  const span = t1 - t0;
  const left = ((s - t0) / span) * 100;
  const width = Math.max((((f ?? t1) - s) / span) * 100, 0.4);
  const b = el('div', { class: `bar s-${status}` });
  b.style.left = `${left.toFixed(2)}%`;
  b.style.width = `${Math.min(width, 100 - left).toFixed(2)}%`;
  track.append(b);
  return track;
}

/** A time of the view (RFC 3339) as ms, or null. */
const ms = (t) => (t ? Date.parse(t) : null);

/**
 * The row of a node's compensation ("undo <node>"): its status, attempts, how long it took
 * (from its first attempt's start to its end) as a bar on the run's axis, its tool and error.
 */
function undoRow(n, t0, t1) {
  const c = n.compensation;
  const s = ms(c.started_at);
  const f = ms(c.finished_at);
  const dur = s !== null ? (f ?? Date.now()) - s : null;
  const more = [el('div', {}, 'with ', el('span', { class: 'mono' }, c.tool))];
  if (c.error) more.push(el('div', { class: 'undo-error' }, el('strong', {}, 'Error: '), c.error.code ? `${c.error.code}: ` : '', c.error.message || JSON.stringify(c.error)));
  return el('tr', { class: 'undo', 'data-undo': n.key },
    el('th', { scope: 'row', class: 'mono' }, `undo ${n.key}`),
    el('td', {}, statusBadge(c.status)),
    el('td', { class: 'num' }, String(c.attempts || 0), c.attempts > 1 ? el('span', { class: 'muted' }, ` (${c.attempts - 1} retr${c.attempts === 2 ? 'y' : 'ies'})`) : null),
    el('td', { class: 'num undo-duration' }, fmtMs(dur)),
    el('td', { class: 'num' }, '—'),
    el('td', { class: 'num' }, '—'),
    el('td', { class: 'timeline-cell' }, bar(s, f, t0, t1, c.status === 'succeeded' ? 'compensated' : (c.status === 'running' ? 'compensating' : c.status), `undo ${n.key}: ${fmtMs(dur)}`)),
    el('td', {}, more));
}

/** The knowledge-base searches an agent made (`with.context.knowledge`), from its trace. */
function knowledgeSteps(trace) {
  return (Array.isArray(trace.steps) ? trace.steps : []).map((s) => s && s.knowledge).filter(Boolean);
}

/** What one search gave the agent: each chunk's source, heading, score and ranks. */
function knowledgeRead(k) {
  const hits = Array.isArray(k.hits) ? k.hits : [];
  const head = `Knowledge read from \`${k.collection}\` (${(k.ranked_by || []).join(' + ') || 'nothing ranked'}): ${hits.length} chunk${hits.length === 1 ? '' : 's'}`;
  const items = hits.map((h) => {
    const ranks = [h.text_rank ? `text #${h.text_rank}` : null, h.vector_rank ? `vector #${h.vector_rank}` : null].filter(Boolean).join(', ');
    return el('li', { class: 'kb-hit' },
      el('span', { class: 'mono' }, h.source || '?'),
      h.heading ? ` — ${h.heading}` : '',
      el('span', { class: 'muted' }, ` · score ${Number(h.score || 0).toFixed(2)}${ranks ? ` (${ranks})` : ''}`),
      h.text ? el('div', { class: 'kb-text' }, h.text) : null);
  });
  return el('div', { class: 'kb-read' }, el('strong', {}, head),
    k.note ? el('div', { class: 'muted' }, k.note) : null,
    items.length ? el('ol', {}, items) : null);
}

function timeline(view) {
  const byNode = (view.costs && view.costs.by_node) || {};
  const undos = [];
  const t0 = Date.parse(view.created_at);
  const ends = view.nodes.flatMap((n) => [
    Date.parse(n.finished_at || n.started_at || view.updated_at),
    n.compensation ? ms(n.compensation.finished_at || n.compensation.started_at) : null]);
  const t1 = Math.max(Date.parse(view.finished_at || view.updated_at), ...ends.filter(Number.isFinite), t0 + 1);
  const span = t1 - t0;
  const frag = document.createDocumentFragment();
  for (const n of view.nodes) {
    const s = ms(n.started_at);
    const f = ms(n.finished_at);
    const dur = s !== null ? (f ?? Date.now()) - s : null;
    const more = [];
    if (n.child) more.push(el('div', { class: 'written-child' }, el('strong', {}, 'Wrote a workflow, run as child execution '), link(`executions/${encodeURIComponent(n.child)}`, n.child)));
    if (n.error) more.push(el('div', {}, el('strong', {}, 'Error: '), json(n.error)));
    if (n.output !== undefined && n.output !== null) more.push(el('div', {}, el('strong', {}, 'Output: '), json(n.output)));
    if (n.trace) {
      for (const k of knowledgeSteps(n.trace)) more.push(knowledgeRead(k));
      more.push(el('div', {}, el('strong', {}, 'Agent trace: '), json(n.trace)));
    }
    frag.append(el('tr', { 'data-key': n.key },
      el('th', { scope: 'row', class: 'mono' }, n.key),
      el('td', {}, statusBadge(n.status)),
      el('td', { class: 'num' }, n.attempts ? String(n.attempts) : '—', n.attempts > 1 ? el('span', { class: 'muted' }, ` (${n.attempts - 1} retr${n.attempts === 2 ? 'y' : 'ies'})`) : null),
      el('td', { class: 'num' }, fmtMs(dur)),
      nodeUsage(byNode[n.key]),
      el('td', { class: 'timeline-cell' }, bar(s, f, t0, t1, n.status, `${n.key}: ${fmtMs(dur)}`)),
      el('td', {}, more.length ? el('details', {}, el('summary', {}, 'details'), more) : '')));
    if (n.compensation) undos.push(n);
  }
  // Compensations run after the failure, one at a time, in reverse order of the nodes'
  // completion: in the order they started (those not started yet last, in the order they
  // will).
  const order = (n) => [ms(n.compensation.started_at) ?? Infinity, -(ms(n.finished_at) ?? 0)];
  undos.sort((a, b) => {
    const [x, y] = [order(a), order(b)];
    return x[0] - y[0] || x[1] - y[1];
  });
  for (const n of undos) frag.append(undoRow(n, t0, t1));
  return el('div', { class: 'scroll' }, el('table', { class: 'list timeline' },
    el('caption', {}, `Node attempts (${view.nodes.length}${view.nodes_total ? ' of ' + view.nodes_total : ''})${undos.length ? `, then ${undos.length} compensation${undos.length === 1 ? '' : 's'}` : ''}, over ${fmtMs(span)}`),
    el('thead', {}, el('tr', {}, ['Node', 'Status', 'Attempts', 'Duration', 'Tokens', 'LLM cost', 'Timeline', 'More'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, frag)));
}

export async function execution(main, { id, navigate }) {
  const t0 = performance.now();
  const title = heading(`Execution ${id}`);
  fill(main, title, el('p', {}, 'Loading…'));
  let view;
  let layout;
  try {
    view = await api('GET', `/executions/${encodeURIComponent(id)}?nodes_limit=10000`);
    // The definition the execution runs: its stored version, or the one kept with it (a
    // workflow a planner wrote).
    layout = await call('GET', `ui/executions/${encodeURIComponent(id)}/layout`);
  } catch (e) {
    fill(main, title, errorBox(e));
    return () => {};
  }
  const graph = drawGraph(layout, `Graph of ${view.workflow} version ${view.version}, coloured by node status`);
  const summary = el('div', { class: 'summary' });
  const actions = el('div', { class: 'actions' });
  const tasks = el('section', { 'aria-labelledby': 'tasks-h' });
  const tl = el('section', { 'aria-labelledby': 'tl-h' });
  const io = el('section', { 'aria-labelledby': 'io-h' });
  const written = el('section', { 'aria-labelledby': 'def-h' });
  const live = el('p', { class: 'live muted', 'aria-live': 'polite' });
  fill(main, title, summary, actions, live,
    el('section', { 'aria-labelledby': 'graph-h' }, el('h2', { id: 'graph-h' }, 'Graph'),
      el('div', { class: 'graph-wrap', tabindex: '0', role: 'region', 'aria-label': 'Workflow graph (scrolls)' }, graph.element),
      legend()),
    tasks, tl, io, view.generated_by ? written : null);

  let shownTasks = null;
  const render = (v) => {
    view = v;
    fill(summary, el('dl', { class: 'facts' },
      el('dt', {}, 'Workflow'), el('dd', {}, v.generated_by ? `${v.workflow} v${v.version} (written, not stored)` : link(`workflows/${encodeURIComponent(v.workflow)}`, `${v.workflow} v${v.version}`)),
      el('dt', {}, 'Status'), el('dd', { id: 'exec-status' }, statusBadge(v.status)),
      el('dt', {}, 'Started'), el('dd', {}, fmtTime(v.created_at)),
      el('dt', {}, 'Finished'), el('dd', {}, fmtTime(v.finished_at)),
      el('dt', {}, 'Started by'), el('dd', { id: 'exec-started-by' }, startedBy(v.started_by)),
      el('dt', {}, 'Trace'), el('dd', { id: 'exec-trace' },
        el('code', { class: 'mono trace-id', title: `OpenTelemetry trace id ${v.trace_id}` }, v.trace_id), ' ',
        el('button', { type: 'button', class: 'small', 'aria-label': 'Copy the trace id', onclick: () => copyTrace(v.trace_id) }, 'Copy')),
      el('dt', {}, 'LLM cost'), el('dd', {}, `$${(v.costs.cost_usd || 0).toFixed(4)} · ${v.costs.input_tokens + v.costs.output_tokens} tokens · ${v.costs.llm_calls} calls`),
      v.parent_id ? [el('dt', {}, 'Parent'), el('dd', {}, link(`executions/${v.parent_id}`, v.parent_id))] : null,
      v.generated_by ? [el('dt', {}, 'Definition'), el('dd', { id: 'exec-generated-by' }, 'generated by ',
        link(`executions/${encodeURIComponent(v.generated_by.execution_id)}`, v.generated_by.execution_id), ` / ${v.generated_by.node_key}`)] : null,
      v.grant ? [el('dt', {}, 'Tools granted'), el('dd', { id: 'exec-grant' }, v.grant.length ? v.grant.join(', ') : 'none')] : null));
    const top = new Map();
    // A node whose undo succeeded is drawn compensated (as the live stream's
    // compensation_succeeded makes it); its own status stays in the timeline.
    const drawn = (n) => (n.compensation?.status === 'succeeded' ? 'compensated' : n.status);
    for (const n of v.nodes) if (!n.key.includes('/')) top.set(n.key, drawn(n));
    for (const n of v.nodes) if (n.key.includes('/') && !top.has(topNode(n.key))) top.set(topNode(n.key), 'running');
    for (const [k, s] of top) graph.setStatus(k, s);
    fill(actions);
    if (!TERMINAL.has(v.status)) {
      actions.append(el('button', { type: 'button', class: 'danger', onclick: () => act('cancel') }, 'Cancel'));
      actions.append(el('button', { type: 'button', onclick: () => act('resume') }, 'Resume'));
    }
    // The forms are rebuilt only when the pending questions change, so that what the person
    // typed (and the errors beside it) survive the refreshes live events cause.
    const pending = v.tasks.filter((t) => t.status === 'pending');
    const ids = pending.map((t) => t.id).join(' ');
    if (ids !== shownTasks) {
      shownTasks = ids;
      fill(tasks, el('h2', { id: 'tasks-h' }, 'Waiting for a person'),
        pending.length ? pending.map((t) => el('div', { class: 'card task', 'data-task': t.id },
          el('h3', {}, t.node_key), el('p', {}, t.prompt),
          schemaForm(t.schema, async (answer) => {
            await api('POST', `/tasks/${encodeURIComponent(t.id)}/answer`, { answer });
            live.textContent = `Answer to ${t.node_key} sent.`;
            refresh();
          }))) : el('p', { class: 'muted' }, 'No questions pending.'));
    }
    fill(tl, el('h2', { id: 'tl-h' }, 'Timeline'), timeline(v));
    if (v.generated_by && v.definition) fill(written, el('h2', { id: 'def-h' }, 'Definition (written by a planner)'), json(v.definition));
    fill(io, el('h2', { id: 'io-h' }, 'Input and output'),
      el('h3', {}, 'Input'), json(v.input),
      el('h3', {}, v.error ? 'Error' : 'Output'), json(v.error || v.output));
  };
  // The trace id to the clipboard, or (without one: not a secure context) selected for a copy.
  const copyTrace = async (traceId) => {
    try {
      await navigator.clipboard.writeText(traceId);
      live.textContent = 'Trace id copied.';
    } catch {
      const code = summary.querySelector('#exec-trace code');
      if (code) window.getSelection().selectAllChildren(code);
      live.textContent = 'Trace id selected: press Ctrl+C (⌘C) to copy it.';
    }
  };
  const act = async (what) => {
    try {
      await api('POST', `/executions/${encodeURIComponent(id)}/${what}`);
      live.textContent = what === 'cancel' ? 'Cancel requested.' : 'Resumed.';
      refresh();
    } catch (e) {
      live.textContent = e.message;
    }
  };
  let timer = null;
  let stopped = false;
  const refresh = () => {
    if (timer || stopped) return;
    timer = setTimeout(async () => {
      timer = null;
      try {
        render(await api('GET', `/executions/${encodeURIComponent(id)}?nodes_limit=10000`));
      } catch (e) {
        live.textContent = e.message;
      }
    }, 300);
  };
  render(view);
  document.body.dataset.rendered = String(Math.round(performance.now() - t0));
  let es = null;
  if (!TERMINAL.has(view.status)) {
    es = new EventSource(`api/v1/executions/${encodeURIComponent(id)}/events`);
    for (const kind of EVENTS) {
      es.addEventListener(kind, (ev) => {
        let data = {};
        try { data = JSON.parse(ev.data); } catch { /* not JSON: ignore the body */ }
        if (EVENT_STATUS[kind] && data.node) graph.setStatus(topNode(data.node), EVENT_STATUS[kind]);
        refresh();
        if (kind.startsWith('execution_') && TERMINAL.has(kind.slice(10))) es.close();
      });
    }
  }
  return () => {
    stopped = true;
    if (es) es.close();
    clearTimeout(timer);
  };
}

function legend() {
  const states = ['pending', 'running', 'waiting', 'retrying', 'succeeded', 'failed', 'skipped', 'cancelled', 'compensated'];
  return el('ul', { class: 'legend', 'aria-label': 'Colours' }, states.map((s) => el('li', {}, el('span', { class: `swatch s-${s}`, 'aria-hidden': 'true' }), s)));
}

// ---- a line diff between two versions -----------------------------------------------

/** Lines of `a` and `b` as [kind, text] with kind ' ', '-' or '+' (longest common subsequence). */
export function lineDiff(a, b) {
  const x = a.split('\n');
  const y = b.split('\n');
  if (x.length * y.length > 4_000_000) return null;
  const n = x.length;
  const m = y.length;
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] = x[i] === y[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push([' ', x[i]]); i++; j++; } else if (lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) { out.push(['-', x[i]]); i++; } else { out.push(['+', y[j]]); j++; }
  }
  while (i < n) out.push(['-', x[i++]]);
  while (j < m) out.push(['+', y[j++]]);
  return out;
}

async function versionDiff(name, from, to) {
  const [a, b] = await Promise.all([
    api('GET', `/workflows/${encodeURIComponent(name)}/export?version=${from}`),
    api('GET', `/workflows/${encodeURIComponent(name)}/export?version=${to}`),
  ]);
  const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v, null, 2));
  const d = lineDiff(text(a), text(b));
  if (!d) return el('p', {}, 'The versions are too long to compare here.');
  const changed = d.filter(([k]) => k !== ' ').length;
  return el('div', {},
    el('p', {}, changed ? `${changed} line${changed === 1 ? '' : 's'} differ between v${from} and v${to}.` : `v${from} and v${to} have the same text.`),
    el('ol', { class: 'diff', 'aria-label': `Changes from version ${from} to ${to}` }, d.map(([k, line]) =>
      el('li', { class: k === '+' ? 'add' : k === '-' ? 'del' : null },
        el('span', { class: 'sr-only' }, k === '+' ? 'added: ' : k === '-' ? 'removed: ' : ''),
        el('span', { 'aria-hidden': 'true', class: 'mark' }, k), el('code', {}, line || ' ')))));
}

// ---- workflows -----------------------------------------------------------------------

function importForm(navigate) {
  const text = el('textarea', { id: 'wf-text', name: 'definition', rows: 14, spellcheck: 'false', 'aria-describedby': 'wf-help' });
  const result = el('div', { class: 'import-result', 'aria-live': 'polite' });
  const form = el('form', { class: 'card', novalidate: true },
    el('h2', {}, 'Import a workflow'),
    el('div', { class: 'field' }, el('label', { for: 'wf-text' }, 'Definition (YAML or JSON)'),
      el('span', { class: 'help', id: 'wf-help' }, 'Paste the text; it is checked completely and stored as a new version.'), text),
    el('button', { type: 'submit' }, 'Import'), result);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const src = text.value;
    fill(result);
    try {
      const type = src.trimStart().startsWith('{') ? 'application/json' : 'application/yaml';
      const r = await api('POST', '/workflows', src, { type });
      fill(result, el('p', { class: 'ok' }, `${r.name} version ${r.version}: ${r.outcome}${r.active ? ' (active)' : ''}. `,
        link(`workflows/${encodeURIComponent(r.name)}`, 'Open it')));
    } catch (e) {
      const diags = (e.body && e.body.details && e.body.details.diagnostics) || [];
      if (!diags.length) {
        fill(result, errorBox(e));
        return;
      }
      const n = diags.length;
      fill(result, errorBox(`Not imported: the definition has ${n} problem${n === 1 ? '' : 's'}, shown under ${n === 1 ? 'its line' : 'their lines'} below.`),
        sourceWithErrors(src, diags));
    }
  });
  return form;
}

/** The pasted text, numbered, with each diagnostic under its line. */
function sourceWithErrors(src, diags) {
  const byLine = new Map();
  const loose = [];
  for (const d of diags) {
    if (d.line) {
      if (!byLine.has(d.line)) byLine.set(d.line, []);
      byLine.get(d.line).push(d);
    } else loose.push(d);
  }
  const lines = src.split('\n');
  const list = el('ol', { class: 'source', 'aria-label': 'The definition with its problems' });
  lines.forEach((text, i) => {
    const n = i + 1;
    const ds = byLine.get(n) || [];
    list.append(el('li', { 'data-line': n, class: ds.length ? 'has-error' : null },
      el('code', {}, text || ' '),
      ds.map((d) => el('div', { class: 'diag', role: 'note' },
        el('strong', {}, `line ${n}${d.column ? ', column ' + d.column : ''} · ${d.code}: `), d.message))));
  });
  return el('div', {},
    loose.length ? el('ul', { class: 'diags' }, loose.map((d) => el('li', {}, `${d.code} (${d.path}): ${d.message}`))) : null,
    list);
}

export async function workflows(main, { query, navigate }) {
  const cursor = query.get('cursor') || '';
  const body = el('div', {}, el('p', {}, 'Loading…'));
  fill(main, heading('Workflows'), body, importForm(navigate));
  try {
    const page = await api('GET', `/workflows?limit=100${cursor ? '&cursor=' + encodeURIComponent(cursor) : ''}`);
    const table = el('table', { class: 'list' },
      el('caption', { class: 'sr-only' }, 'Workflows by name'),
      el('thead', {}, el('tr', {}, ['Name', 'Active', 'Latest', 'Versions', 'Description', 'Updated'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, page.items.map((w) => el('tr', {},
        el('td', {}, link(`workflows/${encodeURIComponent(w.name)}`, w.name)),
        el('td', { class: 'num' }, `v${w.active_version}`), el('td', { class: 'num' }, `v${w.latest_version}`),
        el('td', { class: 'num' }, String(w.versions)), el('td', {}, w.description || ''), el('td', {}, fmtTime(w.updated_at))))));
    const nav = el('nav', { class: 'pager', 'aria-label': 'Pages' });
    if (cursor) nav.append(link('workflows', 'First page'));
    if (page.next_cursor) nav.append(link(`workflows?cursor=${encodeURIComponent(page.next_cursor)}`, 'Next page'));
    fill(body, page.items.length ? el('div', { class: 'scroll' }, table) : el('p', {}, 'No workflows yet: import one below.'), nav);
  } catch (e) {
    fill(body, errorBox(e));
  }
}

export async function workflow(main, { name, query, navigate }) {
  fill(main, heading(`Workflow ${name}`), el('p', {}, 'Loading…'));
  try {
    const versions = await api('GET', `/workflows/${encodeURIComponent(name)}/versions?limit=100`);
    const active = versions.items.find((v) => v.active) || versions.items[0];
    const chosen = Number(query.get('version')) || (active && active.version);
    const wf = await api('GET', `/workflows/${encodeURIComponent(name)}?version=${chosen}`);
    const layout = await call('GET', `ui/workflows/${encodeURIComponent(name)}/layout?version=${chosen}`);
    const vt = el('table', { class: 'list' },
      el('caption', {}, 'Versions'),
      el('thead', {}, el('tr', {}, ['Version', 'Active', 'Nodes', 'Created'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, versions.items.map((v) => el('tr', { class: v.version === chosen ? 'current' : null },
        el('td', {}, link(`workflows/${encodeURIComponent(name)}?version=${v.version}`, `v${v.version}`, { 'aria-current': v.version === chosen ? 'page' : null })),
        el('td', {}, v.active ? 'active' : ''), el('td', { class: 'num' }, String(v.nodes)), el('td', {}, fmtTime(v.created_at))))));
    const input = el('textarea', { id: 'run-input', name: 'input', rows: 4, spellcheck: 'false' }, '{}');
    const err = el('span', { class: 'field-error', id: 'run-err', 'aria-live': 'polite' });
    input.setAttribute('aria-describedby', 'run-err');
    const run = el('form', { class: 'card', novalidate: true },
      el('h2', {}, `Run version ${chosen}`),
      el('div', { class: 'field' }, el('label', { for: 'run-input' }, 'Input (JSON)'), input, err),
      el('button', { type: 'submit' }, 'Start'));
    run.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      let value;
      try { value = JSON.parse(input.value || '{}'); } catch (e) {
        err.textContent = `Not JSON: ${e.message}`;
        return;
      }
      try {
        const r = await api('POST', '/executions', { workflow: name, version: chosen, input: value });
        navigate(`executions/${encodeURIComponent(r.execution_id)}`);
      } catch (e) {
        err.textContent = e.message;
      }
    });
    const others = versions.items.map((v) => v.version).filter((v) => v !== chosen);
    let diffSection = null;
    if (others.length) {
      const against = others.includes(chosen - 1) ? chosen - 1 : others[0];
      const sel = el('select', { id: 'diff-from', name: 'from' }, others.map((v) => el('option', { value: String(v), selected: v === against }, `v${v}`)));
      const out = el('div', { 'aria-live': 'polite' });
      const show = async () => {
        try { fill(out, await versionDiff(name, Number(sel.value), chosen)); } catch (e) { fill(out, errorBox(e)); }
      };
      sel.addEventListener('change', show);
      diffSection = el('section', { 'aria-labelledby': 'diff-h' }, el('h2', { id: 'diff-h' }, `Changes to version ${chosen}`),
        el('div', { class: 'field' }, el('label', { for: 'diff-from' }, 'Compared with'), sel), out);
      show();
    }
    fill(main, heading(`Workflow ${name}`),
      wf.definition && wf.definition.description ? el('p', {}, wf.definition.description) : null,
      el('section', { 'aria-label': 'Graph' }, el('h2', {}, `Graph of version ${chosen}`),
        el('div', { class: 'graph-wrap', tabindex: '0', role: 'region', 'aria-label': 'Workflow graph (scrolls)' },
          drawGraph(layout, `Graph of ${name} version ${chosen}`).element)),
      run, el('div', { class: 'scroll' }, vt),
      diffSection,
      el('details', {}, el('summary', {}, 'Definition'), json(wf.definition)));
  } catch (e) {
    fill(main, heading(`Workflow ${name}`), errorBox(e));
  }
}

// ---- inbox and costs -----------------------------------------------------------------

function age(iso) {
  if (!iso) return '—';
  return fmtMs(Date.now() - Date.parse(iso)) + ' ago';
}

/** The agent the page acts as: the key's own, else the one chosen (`?agent=`). */
function actingAgent(session, query) {
  return (session && session.agent) || query.get('agent') || '';
}

function itemRow(item, agent, onClaim) {
  const isConv = item.kind === 'conversation';
  const c = item.conversation;
  const t = item.task;
  const what = isConv
    ? [link(`conversations/${encodeURIComponent(item.key)}${agent ? '?agent=' + encodeURIComponent(agent) : ''}`, `Conversation with ${c ? c.customer_id : item.key}`),
      c && c.handover ? el('div', { class: 'muted' }, c.handover.reason) : null]
    : [link(`executions/${encodeURIComponent(t ? t.execution_id : item.key.split('.')[0])}`, `Approval: ${t ? t.node_key : item.key}`),
      t ? el('div', { class: 'muted' }, t.prompt) : null];
  const claim = agent && item.state !== 'active'
    ? el('button', { type: 'button', onclick: () => onClaim(item), 'aria-label': `Claim ${isConv ? 'conversation ' + (c ? c.customer_id : item.key) : 'approval ' + item.key}` }, 'Claim')
    : null;
  return el('tr', { 'data-item': item.key },
    el('td', {}, what), el('td', { class: 'num' }, String(item.priority)), el('td', {}, age(item.queued_at)),
    el('td', {}, item.skills.join(', ') || '—'), el('td', {}, statusBadge(item.state)), el('td', {}, item.agent || '—'), el('td', {}, claim));
}

function itemTable(caption, items, agent, onClaim) {
  if (!items.length) return el('p', { class: 'muted' }, `${caption}: nothing.`);
  return el('div', { class: 'scroll' }, el('table', { class: 'list' },
    el('caption', {}, caption),
    el('thead', {}, el('tr', {}, ['Item', 'Priority', 'Waiting', 'Skills', 'State', 'Agent', 'Action'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, items.map((i) => itemRow(i, agent, onClaim)))));
}

export async function inbox(main, { query, navigate, session }) {
  const agent = actingAgent(session, query);
  fill(main, heading('Inbox'), el('p', {}, 'Loading…'));
  const live = el('p', { class: 'live muted', 'aria-live': 'polite' });
  const draw = async () => {
    try {
      const parts = [heading('Inbox'), live];
      if (!session.agent) {
        const agents = await api('GET', '/hil/agents?limit=500');
        const sel = el('select', { id: 'acting', name: 'agent' },
          el('option', { value: '' }, '— choose —'),
          agents.items.map((a) => el('option', { value: a.id, selected: a.id === agent }, `${a.name} (${a.id}) · ${a.status} · ${a.load}/${a.capacity}`)));
        sel.addEventListener('change', () => navigate(`inbox${sel.value ? '?agent=' + encodeURIComponent(sel.value) : ''}`));
        parts.push(el('div', { class: 'filters' }, el('div', { class: 'field' }, el('label', { for: 'acting' }, 'Acting as'), sel)));
      }
      if (agent) {
        const me = await api('GET', `/hil/agents?limit=500`).then((r) => r.items.find((a) => a.id === agent)).catch(() => null);
        if (me) {
          parts.push(el('div', { class: 'actions', role: 'group', 'aria-label': 'My status' },
            el('span', {}, `${me.name}: `, statusBadge(me.status), ` · load ${me.load} of ${me.capacity}`),
            ['online', 'away', 'offline'].filter((s) => s !== me.status).map((s) =>
              el('button', { type: 'button', onclick: async () => {
                try { await api('POST', `/hil/agents/${encodeURIComponent(agent)}/status`, { status: s }); draw(); } catch (e) { live.textContent = e.message; }
              } }, `Go ${s}`))));
        }
        const mine = await api('GET', `/hil/agents/${encodeURIComponent(agent)}/inbox`);
        parts.push(el('h2', {}, 'My inbox'), itemTable('Assigned to me or claimed, in queue order', mine.items, agent, claim));
      }
      const queue = await api('GET', '/hil/queue');
      parts.push(el('h2', {}, 'Queue'), itemTable('Not yet assigned, by priority then age', queue.items, agent, claim));
      if (!session.agent) {
        // The supervisor's view: the agents and their loads, and the KPIs of the last 30 days.
        const [agents, stats] = await Promise.all([api('GET', '/hil/agents?limit=500'), api('GET', '/hil/stats')]);
        const k = stats.total;
        const ms = (x) => (x && x.median_ms !== undefined && x.median_ms !== null ? fmtMs(x.median_ms) : '—');
        const pct = (x) => `${Math.round((x || 0) * 100)} %`;
        parts.push(el('h2', {}, 'Agents'), agents.items.length ? el('div', { class: 'scroll' }, el('table', { class: 'list' },
          el('caption', { class: 'sr-only' }, 'Human agents'),
          el('thead', {}, el('tr', {}, ['Agent', 'Status', 'Load', 'Skills'].map((h) => el('th', { scope: 'col' }, h)))),
          el('tbody', {}, agents.items.map((a) => el('tr', {},
            el('td', {}, `${a.name} (${a.id})`), el('td', {}, statusBadge(a.status)),
            el('td', { class: 'num' }, `${a.load} / ${a.capacity}`), el('td', {}, a.skills.join(', ') || '—')))))) : el('p', { class: 'muted' }, 'No human agents yet (hilo hil agents set).'),
        el('h2', {}, 'Humans in the loop, last 30 days'),
        el('dl', { class: 'facts kpis' },
          el('dt', {}, 'Conversations'), el('dd', {}, String(k.conversations)),
          el('dt', {}, 'Automation rate'), el('dd', {}, pct(k.automation_rate)),
          el('dt', {}, 'Escalation rate'), el('dd', {}, pct(k.escalation_rate)),
          el('dt', {}, 'First human response (median)'), el('dd', {}, ms(k.time_to_first_human_response)),
          el('dt', {}, 'Resolution time (median)'), el('dd', {}, ms(k.resolution_time))));
      }
      const tasks = await api('GET', '/tasks?status=pending&limit=200');
      parts.push(el('h2', {}, 'Questions waiting'), tasks.items.length ? el('div', { class: 'scroll' }, el('table', { class: 'list' },
        el('caption', { class: 'sr-only' }, 'Pending questions, oldest first'),
        el('thead', {}, el('tr', {}, ['Question', 'Prompt', 'Skills', 'Assignee', 'Asked'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, tasks.items.map((t) => el('tr', {},
          el('td', {}, link(`executions/${encodeURIComponent(t.execution_id)}`, t.node_key)),
          el('td', {}, t.prompt), el('td', {}, (t.skills || []).join(', ')), el('td', {}, t.assignee || '—'),
          el('td', {}, fmtTime(t.created_at))))))) : el('p', {}, 'Nothing is waiting for a person.'));
      fill(main, parts);
    } catch (e) {
      fill(main, heading('Inbox'), errorBox(e));
    }
  };
  async function claim(item) {
    try {
      if (item.kind === 'conversation') await api('POST', `/conversations/${encodeURIComponent(item.key)}/claim`, { agent });
      else await api('POST', `/hil/tasks/${encodeURIComponent(item.key)}/claim`, { agent });
      live.textContent = `Claimed ${item.key}.`;
      await draw();
    } catch (e) {
      live.textContent = e.message;
    }
  }
  await draw();
  const timer = setInterval(draw, 5000);
  return () => clearInterval(timer);
}

// ---- a conversation ------------------------------------------------------------------

function messageItem(m) {
  const who = m.sender === 'user' ? 'Customer' : m.sender === 'agent' ? 'AI' : m.sender === 'human' ? (m.author || 'Agent') : 'System';
  return el('li', { class: `msg from-${m.sender}`, 'data-seq': m.seq },
    el('div', { class: 'msg-meta' }, el('strong', {}, who), ' · ', fmtTime(m.at)),
    el('div', { class: 'msg-text' }, m.content));
}

export async function conversation(main, { id, query, session }) {
  const agent = actingAgent(session, query);
  const title = heading('Conversation');
  fill(main, title, el('p', {}, 'Loading…'));
  let conv;
  let msgs;
  try {
    conv = await api('GET', `/conversations/${encodeURIComponent(id)}`);
    msgs = await api('GET', `/conversations/${encodeURIComponent(id)}/messages?limit=500`);
  } catch (e) {
    fill(main, title, errorBox(e));
    return () => {};
  }
  const live = el('p', { class: 'live muted', 'aria-live': 'polite' });
  const facts = el('div', {});
  const list = el('ol', { class: 'messages', 'aria-label': 'Messages', 'aria-live': 'polite' });
  const seen = new Set();
  const add = (m) => {
    if (seen.has(m.seq)) return;
    seen.add(m.seq);
    list.append(messageItem(m));
  };
  (msgs.items || msgs.messages || []).forEach(add);
  const actions = el('div', {});
  const drawFacts = (c) => {
    conv = c;
    const h = c.handover;
    const ctx = (h && h.context) || {};
    fill(facts, el('dl', { class: 'facts' },
      el('dt', {}, 'Customer'), el('dd', {}, `${c.customer_id} (${c.channel})`),
      el('dt', {}, 'Status'), el('dd', { id: 'conv-status' }, statusBadge(c.status)),
      el('dt', {}, 'Agent'), el('dd', {}, c.assigned_agent || '—'),
      el('dt', {}, 'Workflow'), el('dd', {}, link(`workflows/${encodeURIComponent(c.workflow)}`, c.workflow)),
      c.note ? [el('dt', {}, 'Note for the AI'), el('dd', {}, c.note)] : null),
    h ? el('section', { class: 'card', 'aria-labelledby': 'ctx-h' },
      el('h2', { id: 'ctx-h' }, 'Handover context'),
      el('p', {}, el('strong', {}, 'Why: '), `${h.reason} (${h.trigger})`),
      ctx.summary || c.summary ? el('p', {}, el('strong', {}, 'Summary: '), ctx.summary || c.summary) : null,
      Array.isArray(ctx.path) && ctx.path.length ? el('p', {}, el('strong', {}, 'Path: '), ctx.path.map((p) => (typeof p === 'string' ? p : p.node || JSON.stringify(p))).join(' → ')) : null,
      ctx.outputs && Object.keys(ctx.outputs).length ? el('details', {}, el('summary', {}, 'Node outputs'), json(ctx.outputs)) : null,
      h.execution_id ? el('p', {}, link(`executions/${encodeURIComponent(h.execution_id)}`, 'The execution that handed over')) : null) : null);
    drawActions(c);
  };
  // `done`: what to announce, or a function of the response that says it.
  const post = async (what, body, done) => {
    try {
      const r = await api('POST', `/conversations/${encodeURIComponent(id)}/${what}`, body);
      live.textContent = typeof done === 'function' ? done(r || {}) : done;
      drawFacts(await api('GET', `/conversations/${encodeURIComponent(id)}`));
    } catch (e) {
      live.textContent = e.message;
    }
  };
  let shownFor = null;
  const drawActions = (c) => {
    // Rebuilt only when who holds it or its status changes, so that a reply being typed
    // survives the refreshes new messages cause.
    const key = `${c.status}/${c.assigned_agent || ''}`;
    if (key === shownFor) return;
    shownFor = key;
    if (!agent) {
      fill(actions, el('p', { class: 'muted' }, 'Choose who you act as in the Inbox to take part.'));
      return;
    }
    if (c.status === 'pending_human' || (c.status === 'handover')) {
      fill(actions, el('button', { type: 'button', onclick: () => post('claim', { agent }, 'Claimed.') }, 'Claim'));
      return;
    }
    if (c.status !== 'human_active' || c.assigned_agent !== agent) {
      fill(actions);
      return;
    }
    const text = el('textarea', { id: 'reply', name: 'content', rows: 3 });
    const reply = el('form', { class: 'card', novalidate: true },
      el('div', { class: 'field' }, el('label', { for: 'reply' }, 'Reply to the customer'), text),
      el('button', { type: 'submit' }, 'Send reply'));
    reply.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!text.value.trim()) return;
      const content = text.value;
      text.value = '';
      await post('reply', { agent, content }, 'Reply sent.');
    });
    const note = el('textarea', { id: 'note', name: 'note', rows: 2 });
    const close = el('div', { class: 'card' },
      el('div', { class: 'field' }, el('label', { for: 'note' }, 'Note (for the AI, or why it is resolved)'), note),
      el('div', { class: 'actions' },
        el('button', { type: 'button', onclick: () => post('back-to-ai', { agent, note: note.value || null }, 'Sent back to the AI.') }, 'Back to AI'),
        el('button', { type: 'button', onclick: () => post('resolve', { agent, note: note.value || null }, 'Resolved.') }, 'Resolve'),
        el('button', { type: 'button', onclick: () => post('release', { agent, note: note.value || null }, 'Released to the queue.') }, 'Release')));
    fill(actions, reply, close, transferForm(c));
  };
  // Transfer to another agent (online, with the conversation's skills, below capacity; the
  // list shows who could take it) or to a skill queue: back in the queue requiring other
  // skills, routed to whoever has them. Two radio buttons choose; only the chosen field shows.
  const transferForm = (c) => {
    const title = () => el('h2', { id: 'transfer-h' }, 'Transfer');
    const form = el('form', { class: 'card transfer', novalidate: true, 'aria-labelledby': 'transfer-h' },
      title(), el('p', { class: 'muted' }, 'Loading the agents…'));
    const mode = (value, text, checked) => el('label', { class: 'field check' },
      el('input', { type: 'radio', name: 'transfer-mode', id: `transfer-mode-${value}`, value, checked }), text);
    const skills = el('input', {
      id: 'transfer-skills', name: 'skills', type: 'text', maxlength: '500', spellcheck: 'false',
      autocomplete: 'off', 'aria-describedby': 'transfer-skills-help transfer-skills-err',
    });
    const skillsErr = el('span', { class: 'field-error', id: 'transfer-skills-err', 'aria-live': 'polite' });
    skills.addEventListener('input', () => {
      if (!skills.value.trim()) return;
      skills.removeAttribute('aria-invalid');
      skillsErr.textContent = '';
    });
    const skillsField = el('div', { class: 'field', id: 'transfer-skills-field', hidden: true },
      el('label', { for: 'transfer-skills' }, 'Skills the queue requires'),
      el('span', { class: 'help', id: 'transfer-skills-help' },
        'Comma-separated, e.g. billing. They replace the conversation’s own; it keeps its place in the queue and goes to an online agent with all of them.'),
      skills, skillsErr);
    const chosen = () => (form.querySelector('input[name="transfer-mode"]:checked') || {}).value || 'agent';
    const show = () => {
      const agentField = form.querySelector('#transfer-agent-field');
      if (agentField) agentField.hidden = chosen() !== 'agent';
      skillsField.hidden = chosen() !== 'skills';
    };
    api('GET', '/hil/agents?limit=500').then((r) => {
      const others = (r.items || []).filter((a) => a.id !== c.assigned_agent);
      const agentField = others.length
        ? el('div', { class: 'field', id: 'transfer-agent-field' },
          el('label', { for: 'transfer-to' }, 'Transfer to'),
          el('select', { id: 'transfer-to', name: 'to' },
            others.map((a) => el('option', { value: a.id },
              `${a.name} (${a.id}) · ${a.status} · ${a.load}/${a.capacity}${a.skills.length ? ' · ' + a.skills.join(', ') : ''}`))))
        : el('p', { class: 'muted', id: 'transfer-agent-field' }, 'No other agent to transfer to: send it to a skill queue instead.');
      const why = el('input', { id: 'transfer-reason', name: 'reason', type: 'text', maxlength: '500' });
      const modes = el('fieldset', { class: 'sub' }, el('legend', {}, 'Where it goes'),
        mode('agent', 'To an agent', others.length > 0), mode('skills', 'To a skill queue', others.length === 0));
      modes.addEventListener('change', show);
      fill(form, title(), modes, agentField, skillsField,
        el('div', { class: 'field' }, el('label', { for: 'transfer-reason' }, 'Reason (optional)'), why),
        el('button', { type: 'submit' }, 'Transfer'));
      show();
    }).catch((e) => fill(form, title(), errorBox(e)));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const why = form.querySelector('#transfer-reason');
      if (!why) return;
      const reason = why.value.trim() || null;
      if (chosen() === 'skills') {
        const list = skills.value.split(',').map((s) => s.trim()).filter(Boolean);
        if (!list.length) {
          skills.setAttribute('aria-invalid', 'true');
          skillsErr.textContent = 'Name at least one skill, e.g. billing.';
          skills.focus();
          return;
        }
        skills.removeAttribute('aria-invalid');
        skillsErr.textContent = '';
        await post('transfer', { by: agent, skills: list, reason },
          (r) => `Sent to the queue for ${list.join(', ')}${r.conversation && r.conversation.assigned_agent ? `: assigned to ${r.conversation.assigned_agent}` : ': waiting for an agent with the skills'}.`);
        return;
      }
      const to = form.querySelector('#transfer-to');
      if (!to) return;
      await post('transfer', { by: agent, to: to.value, reason }, `Transferred to ${to.value}.`);
    });
    return form;
  };
  fill(main, heading(`Conversation with ${conv.customer_id}`), live, facts,
    el('section', { 'aria-labelledby': 'msgs-h' }, el('h2', { id: 'msgs-h' }, 'Messages'), list), actions);
  drawFacts(conv);
  const es = new EventSource(`api/v1/conversations/${encodeURIComponent(id)}/stream?after=${Math.max(0, ...seen)}`);
  let refreshing = null;
  es.addEventListener('message', (ev) => {
    try { add(JSON.parse(ev.data)); } catch { /* not JSON: ignore */ }
    if (!refreshing) {
      refreshing = setTimeout(async () => {
        refreshing = null;
        try { drawFacts(await api('GET', `/conversations/${encodeURIComponent(id)}`)); } catch { /* shown on the next action */ }
      }, 300);
    }
  });
  es.addEventListener('end', () => es.close());
  return () => { es.close(); clearTimeout(refreshing); };
}

// ---- triggers ------------------------------------------------------------------------

function triggerWhen(t) {
  if (t.type === 'schedule') return el('span', {}, el('code', {}, t.cron), ` (${t.timezone})`);
  return el('code', {}, t.path || '');
}

export async function triggers(main) {
  fill(main, heading('Triggers'), el('p', {}, 'Loading…'));
  try {
    const r = await api('GET', '/triggers');
    const items = r.triggers || [];
    const table = el('table', { class: 'list' },
      el('caption', { class: 'sr-only' }, 'Schedules and webhooks by name'),
      el('thead', {}, el('tr', {}, ['Name', 'Type', 'Schedule or path', 'Next fires', 'Last fire', 'Paused'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, items.map((t) => el('tr', { 'data-trigger': t.name },
        el('td', {}, link(`workflows/${encodeURIComponent(t.workflow)}`, t.workflow), `/${t.id}`),
        el('td', {}, t.type),
        el('td', {}, triggerWhen(t)),
        el('td', {}, t.type === 'schedule' ? (t.next || []).map((n) => el('div', {}, fmtTime(n))) : '—'),
        el('td', {}, t.last_execution_id
          ? link(`executions/${encodeURIComponent(t.last_execution_id)}`, fmtTime(t.last_fire) || t.last_execution_id)
          : fmtTime(t.last_fire)),
        el('td', {}, t.paused ? 'paused' : 'no')))));
    fill(main, heading('Triggers'),
      items.length ? el('div', { class: 'scroll' }, table)
        : el('p', {}, 'No triggers: a workflow’s active version declares them under `triggers:`.'),
      el('p', { class: 'muted' }, 'Pause, resume and backfill with `hilo triggers`.'));
  } catch (e) {
    fill(main, heading('Triggers'), errorBox(e));
  }
}

// ---- connections -----------------------------------------------------------------------

export async function connections(main) {
  fill(main, heading('Connections'), el('p', {}, 'Loading…'));
  const load = async () => {
    const r = await api('GET', '/connections');
    const configured = r.connections || [];
    const granted = r.granted || [];
    const out = el('div', { class: 'connect-out', 'aria-live': 'polite' });
    const connectButton = (c) => {
      if (c.grant !== 'authorization_code') return el('span', { class: 'muted' }, 'tokens obtained by hilo');
      const entity = el('input', { type: 'text', name: 'entity', placeholder: 'end user (optional)', 'aria-label': `End user for ${c.name}` });
      const button = el('button', { type: 'button' }, 'Connect');
      button.addEventListener('click', async () => {
        button.disabled = true;
        try {
          const body = entity.value.trim() ? { entity: entity.value.trim() } : {};
          const u = await api('POST', `/connections/${encodeURIComponent(c.name)}/connect`, body);
          out.replaceChildren(el('p', {}, `Open this link to grant ${u.connection}${u.entity ? ` for ${u.entity}` : ''} (valid 15 minutes): `,
            el('a', { href: u.url, target: '_blank', rel: 'noopener noreferrer', class: 'connect-link' }, 'grant access')));
        } catch (e) {
          out.replaceChildren(errorBox(e));
        } finally {
          button.disabled = false;
        }
      });
      return el('span', { class: 'connect' }, entity, button);
    };
    const configuredTable = el('table', { class: 'list' },
      el('caption', { class: 'sr-only' }, 'Configured connections'),
      el('thead', {}, el('tr', {}, ['Name', 'Grant', 'Scopes', 'Client', 'Connect'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, configured.map((c) => el('tr', { 'data-connection': c.name },
        el('td', {}, c.name), el('td', {}, c.grant === 'authorization_code' ? 'a person grants it' : 'client credentials'),
        el('td', {}, (c.scopes || []).join(' ') || '—'), el('td', {}, el('code', {}, c.client_id)),
        el('td', {}, connectButton(c))))));
    const revokeButton = (g) => {
      const b = el('button', { type: 'button', class: 'danger' }, 'Revoke');
      b.addEventListener('click', async () => {
        const who = g.entity ? `${g.connection} for ${g.entity}` : g.connection;
        if (!window.confirm(`Revoke ${who}? Calls that need it fail with CONNECTION_REQUIRED until someone connects it again.`)) return;
        b.disabled = true;
        try {
          await api('DELETE', `/connections/${encodeURIComponent(g.connection)}?entity=${encodeURIComponent(g.entity)}`);
          await load();
        } catch (e) {
          out.replaceChildren(errorBox(e));
          b.disabled = false;
        }
      });
      return b;
    };
    const grantedSection = el('section', { 'aria-labelledby': 'granted-h' },
      el('h2', { id: 'granted-h' }, 'Granted'),
      granted.length
        ? el('div', { class: 'scroll' }, el('table', { class: 'list' },
          el('caption', { class: 'sr-only' }, 'Connections a person granted'),
          el('thead', {}, el('tr', {}, ['Connection', 'End user', 'Status', 'Scopes', 'Expires', 'Last refresh', 'Last error', 'Revoke'].map((h) => el('th', { scope: 'col' }, h)))),
          el('tbody', {}, granted.map((g) => el('tr', { 'data-granted': `${g.connection}/${g.entity}` },
            el('td', {}, g.connection), el('td', {}, g.entity || 'the tenant'),
            el('td', {}, el('span', { class: `badge ${g.status === 'connected' ? 's-succeeded' : 's-failed'}` }, g.status === 'connected' ? 'connected' : 'connect again')),
            el('td', {}, g.scopes || '—'), el('td', {}, fmtTime(g.expires_at) || '—'),
            el('td', {}, fmtTime(g.last_refresh_at) || '—'), el('td', {}, g.last_error || '—'),
            el('td', {}, revokeButton(g)))))))
        : el('p', {}, 'Nothing granted yet: connect one above.'));
    fill(main, heading('Connections'),
      configured.length
        ? el('div', { class: 'scroll' }, configuredTable)
        : el('p', {}, 'No connections: add ', el('code', {}, '[connections.NAME]'), ' to ', el('code', {}, 'hilo.toml'), '.'),
      out, grantedSection,
      el('p', { class: 'muted' }, 'Tokens are never shown. From the command line: ', el('code', {}, 'hilo connections'), '.'));
  };
  try {
    await load();
  } catch (e) {
    fill(main, heading('Connections'), errorBox(e));
  }
}

function startedBy(b) {
  if (!b) return 'unknown';
  if (b.kind === 'schedule') return `schedule ${b.trigger} (tick ${b.tick})`;
  if (b.kind === 'webhook') return `webhook ${b.trigger} (delivery ${b.delivery})`;
  if (b.kind === 'conversation') return ['conversation ', link(`conversations/${encodeURIComponent(b.conversation)}`, b.conversation)];
  if (b.kind === 'child') return ['parent ', link(`executions/${encodeURIComponent(b.parent)}`, b.parent)];
  return b.kind;
}

export async function costs(main, { query }) {
  const by = ['model', 'workflow', 'node'].includes(query.get('by')) ? query.get('by') : 'model';
  fill(main, heading('Costs'), el('p', {}, 'Loading…'));
  try {
    const [r, b] = await Promise.all([
      api('GET', `/costs/summary?period=day&by=${by}`),
      api('GET', '/costs/budgets'),
    ]);
    const items = r.items || [];
    const windows = b.windows || [];
    const budgets = el('section', { 'aria-labelledby': 'budgets-h' },
      el('h2', { id: 'budgets-h' }, 'Budgets'),
      windows.length || b.per_execution_usd != null
        ? el('div', { class: 'scroll' }, el('table', { class: 'list budgets' },
          el('caption', {}, `When a call would exceed one: ${b.on_exceed === 'refuse' ? 'it is refused' : 'a cheaper model is used'}`),
          el('thead', {}, el('tr', {}, ['Window', 'Since', 'Spent', 'Limit', 'Left', 'Use'].map((h) => el('th', { scope: 'col' }, h)))),
          el('tbody', {}, windows.map((w) => {
            const used = w.limit_usd > 0 ? Math.min(1, w.spent_usd / w.limit_usd) : 1;
            const bar = el('div', { class: `bar ${w.left_usd < 0 ? 's-failed' : used > 0.8 ? 's-retrying' : 's-succeeded'}` });
            bar.style.width = `${used * 100}%`;
            return el('tr', { 'data-window': w.window }, el('td', {}, w.window), el('td', {}, fmtTime(w.since)),
              el('td', { class: 'num' }, `$${w.spent_usd.toFixed(4)}`), el('td', { class: 'num' }, `$${w.limit_usd.toFixed(2)}`),
              el('td', { class: 'num' }, `$${w.left_usd.toFixed(4)}`),
              el('td', { class: 'timeline-cell', 'aria-label': `${Math.round(used * 100)} % used` }, el('div', { class: 'track' }, bar)));
          }), b.per_execution_usd != null
            ? el('tr', { 'data-window': 'per-execution' }, el('td', {}, 'per execution'), el('td', {}, '—'), el('td', { class: 'num' }, 'see each execution'),
              el('td', { class: 'num' }, `$${b.per_execution_usd.toFixed(2)}`), el('td', {}, '—'), el('td', {}, '—'))
            : null)))
        : el('p', {}, 'No budgets are set (`[llm.budgets]` in hilo.toml).'));
    const max = Math.max(1e-12, ...items.map((x) => x.cost_usd || 0));
    fill(main, heading('Costs'),
      el('nav', { class: 'pager', 'aria-label': 'Group by' }, ['model', 'workflow', 'node'].map((b) =>
        link(`costs?by=${b}`, `by ${b}`, { 'aria-current': b === by ? 'page' : null }))),
      budgets,
      el('h2', {}, 'Spending'),
      el('p', {}, `Since ${fmtTime(r.since)}: $${(r.total_usd || 0).toFixed(4)} in ${r.total_calls} model calls.`),
      items.length ? el('div', { class: 'scroll' }, el('table', { class: 'list' },
        el('caption', {}, `LLM spending per day, by ${by}`),
        el('thead', {}, el('tr', {}, ['Day', by, 'Calls', 'Tokens', 'Cost', 'Share'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, items.map((x) => {
          const bar = el('div', { class: 'bar s-succeeded' });
          bar.style.width = `${((x.cost_usd || 0) / max) * 100}%`;
          return el('tr', {}, el('td', {}, x.bucket || ''), el('td', {}, x.key || ''),
            el('td', { class: 'num' }, String(x.calls ?? '')), el('td', { class: 'num' }, String((x.input_tokens || 0) + (x.output_tokens || 0))),
            el('td', { class: 'num' }, `$${(x.cost_usd || 0).toFixed(4)}`), el('td', { class: 'timeline-cell' }, el('div', { class: 'track' }, bar)));
        })))) : el('p', {}, 'No LLM calls recorded yet.'));
  } catch (e) {
    fill(main, heading('Costs'), errorBox(e));
  }
}

export { ApiError };
