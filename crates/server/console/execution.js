// One execution as an operator reads it: what it is and what can be done (cancel after a
// confirmation, resume only where that acts, retry from the failed node, re-run with an
// edited input), the graph (zoom, pan, fit; a node opens its details: input, output,
// attempts, tool calls, the agent's reasoning, cost), the questions it waits on (approvals
// as Approve / Reject), the history in the order it happened, and the node attempts on a
// time axis.

import { api, call, el, fmtMs, fmtTime, plural, statusBadge } from './api.js';
import { drawGraph, topNode } from './graph.js';
import { schemaForm } from './form.js';
import { confirmDialog, errorBox, fill, heading, json, link, startedBy, TERMINAL, notFound } from './common.js';

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

/** What a history event says, in words. */
const SAYS = {
  execution_started: 'Execution started',
  execution_resumed: 'Execution resumed',
  execution_waiting: 'Execution waits',
  execution_succeeded: 'Execution succeeded',
  execution_failed: 'Execution failed',
  execution_compensated: 'Execution compensated (its completed steps undone)',
  execution_handed_over: 'Handed over to a person',
  execution_cancelled: 'Execution cancelled',
  cancel_requested: 'Cancel requested',
  node_started: 'started',
  node_succeeded: 'succeeded',
  node_failed: 'failed',
  node_skipped: 'skipped',
  node_retrying: 'will retry',
  node_waiting: 'waits',
  node_cancelled: 'cancelled',
  timer_fired: 'timer fired',
  human_answered: 'answered by a person',
  child_finished: 'child execution finished',
  compensation_started: 'undo started',
  compensation_succeeded: 'undone',
  compensation_failed: 'undo failed',
};

const ms = (t) => (t ? Date.parse(t) : null);

/** A node key's LLM use (`costs.by_node`): tokens in and out, and its cost with the calls. */
function nodeUsage(c) {
  if (!c) return [el('td', { class: 'num' }, '—'), el('td', { class: 'num' }, '—')];
  return [
    el('td', { class: 'num', title: `${c.input_tokens} in, ${c.output_tokens} out` },
      `${c.input_tokens + c.output_tokens}`, el('span', { class: 'muted' }, ` (${c.input_tokens} in · ${c.output_tokens} out)`)),
    el('td', { class: 'num' }, `$${(c.cost_usd || 0).toFixed(4)}`, el('span', { class: 'muted' }, ` · ${plural(c.llm_calls, 'call')}`)),
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

function retries(n) {
  return n > 1 ? el('span', { class: 'muted' }, ` (${plural(n - 1, 'retry', 'retries')})`) : null;
}

/** The row of a node's compensation ("undo <node>"). */
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
    el('td', { class: 'num' }, String(c.attempts || 0), retries(c.attempts)),
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
  const head = `Knowledge read from ${k.collection} (${(k.ranked_by || []).join(' + ') || 'nothing ranked'}): ${plural(hits.length, 'chunk')}`;
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

/** An agent's trace as a person reads it: model calls, then each step's thought, action, observation. */
export function agentTrace(trace) {
  const calls = Array.isArray(trace.calls) ? trace.calls : [];
  const steps = Array.isArray(trace.steps) ? trace.steps : [];
  const parts = [el('p', { class: 'agent-sum' },
    `${trace.agent || 'agent'} agent`, trace.model ? ` · ${trace.model}` : '',
    ` · ${plural(calls.length, 'model call')} · ${(trace.input_tokens || 0) + (trace.output_tokens || 0)} tokens · $${Number(trace.cost_usd || 0).toFixed(4)}`)];
  if (calls.length) {
    parts.push(el('div', { class: 'scroll' }, el('table', { class: 'list calls' },
      el('caption', { class: 'sr-only' }, 'Model calls'),
      el('thead', {}, el('tr', {}, ['Model', 'Purpose', 'Tokens in', 'Tokens out', 'Latency', 'Error'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, calls.map((c) => el('tr', {},
        el('td', { class: 'mono' }, c.model || '—'), el('td', {}, c.purpose || '—'),
        el('td', { class: 'num' }, String(c.input_tokens ?? '—')), el('td', { class: 'num' }, String(c.output_tokens ?? '—')),
        el('td', { class: 'num' }, fmtMs(c.latency_ms)),
          el('td', {}, c.error ? (c.error.message || JSON.stringify(c.error)) : '')))))));
  }
  const ol = el('ol', { class: 'steps' });
  for (const s of steps) {
    if (!s || typeof s !== 'object') continue;
    if (s.knowledge) { ol.append(el('li', {}, knowledgeRead(s.knowledge))); continue; }
    const li = el('li', {});
    if (s.thought) li.append(el('div', {}, el('strong', {}, 'Thought: '), el('span', { class: 'pre' }, String(s.thought))));
    if (s.action) li.append(el('div', {}, el('strong', {}, 'Action: '), el('span', { class: 'mono' }, s.action.tool || ''), s.action.input !== undefined ? el('span', { class: 'mono muted' }, ` ${JSON.stringify(s.action.input)}`) : null));
    if (s.observation !== undefined) li.append(el('div', {}, el('strong', {}, s.ok === false ? 'Observation (error): ' : 'Observation: '), el('span', { class: 'pre' }, typeof s.observation === 'string' ? s.observation : JSON.stringify(s.observation))));
    if (s.tools_offered) li.append(el('div', { class: 'muted' }, `Tools offered: ${s.tools_offered.map((t) => t.tool).join(', ')} (of ${s.of})`));
    if (s.loop) li.append(el('div', { class: 'error' }, 'Stopped: the same call repeated.'));
    if (!li.childNodes.length) li.append(json(s));
    ol.append(li);
  }
  if (ol.childNodes.length) parts.push(el('h4', {}, 'Steps'), ol);
  return el('div', { class: 'agent-trace' }, parts);
}

/** Node attempts in the order they started (not found yet: last, by key). */
function byStart(nodes) {
  return [...nodes].sort((a, b) => (ms(a.started_at) ?? Infinity) - (ms(b.started_at) ?? Infinity) || a.key.localeCompare(b.key));
}

function timeline(view, onSelect) {
  const byNode = (view.costs && view.costs.by_node) || {};
  const undos = [];
  const t0 = Date.parse(view.created_at);
  const ends = view.nodes.flatMap((n) => [
    Date.parse(n.finished_at || n.started_at || view.updated_at),
    n.compensation ? ms(n.compensation.finished_at || n.compensation.started_at) : null]);
  const t1 = Math.max(Date.parse(view.finished_at || view.updated_at), ...ends.filter(Number.isFinite), t0 + 1);
  const span = t1 - t0;
  const frag = document.createDocumentFragment();
  for (const n of byStart(view.nodes)) {
    const s = ms(n.started_at);
    const f = ms(n.finished_at);
    const dur = s !== null ? (f ?? Date.now()) - s : null;
    frag.append(el('tr', { 'data-key': n.key },
      el('th', { scope: 'row', class: 'mono' }, el('button', { type: 'button', class: 'link mono', onclick: () => onSelect(topNode(n.key), n.key) }, n.key)),
      el('td', {}, statusBadge(n.status)),
      el('td', { class: 'num' }, n.attempts ? String(n.attempts) : '—', retries(n.attempts)),
      el('td', { class: 'num' }, fmtMs(dur)),
      nodeUsage(byNode[n.key]),
      el('td', { class: 'timeline-cell' }, bar(s, f, t0, t1, n.status, `${n.key}: ${fmtMs(dur)}`)),
      el('td', {}, n.error ? el('span', { class: 'error' }, n.error.code || 'error') : (n.child ? link(`executions/${encodeURIComponent(n.child)}`, 'child') : ''))));
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
    el('caption', {}, `Node attempts in the order they started (${view.nodes.length}${view.nodes_total ? ' of ' + view.nodes_total : ''})${undos.length ? `, then ${plural(undos.length, 'compensation')}` : ''}, over ${fmtMs(span)}`),
    el('thead', {}, el('tr', {}, ['Node', 'Status', 'Attempts', 'Duration', 'Tokens', 'LLM cost', 'Timeline', 'Note'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, frag)));
}

function legend() {
  const states = ['pending', 'running', 'waiting', 'retrying', 'succeeded', 'failed', 'skipped', 'cancelled', 'compensated'];
  return el('ul', { class: 'legend', 'aria-label': 'Colours' }, states.map((s) => el('li', {}, el('span', { class: `swatch s-${s}`, 'aria-hidden': 'true' }), s)));
}

/** One history event as a list item: when, how long since the previous one, what. */
function historyItem(e, prev, t0) {
  const at = ms(e.at);
  const what = SAYS[e.kind] || e.kind.replaceAll('_', ' ');
  const node = e.node ? el('span', { class: 'mono' }, e.node) : null;
  const extra = [];
  const d = e.data || {};
  if (e.attempt > 1) extra.push(`attempt ${e.attempt}`);
  if (d.error && (d.error.code || d.error.message)) extra.push(`${d.error.code || ''}${d.error.message ? ': ' + d.error.message : ''}`);
  if (d.code && d.message) extra.push(`${d.code}: ${d.message}`);
  if (d.delay_ms !== undefined) extra.push(`in ${fmtMs(d.delay_ms)}`);
  if (d.until) extra.push(`until ${fmtTime(d.until)}`);
  return el('li', { class: `ev ev-${e.kind}`, 'data-seq': e.seq },
    el('time', { datetime: e.at, title: fmtTime(e.at, true) }, `+${fmtMs(at - t0)}`),
    el('span', { class: 'ev-what' }, node, node ? ' ' : '', what, extra.length ? el('span', { class: 'muted' }, ` — ${extra.join(' · ')}`) : null),
    prev !== null ? el('span', { class: 'muted ev-gap' }, `(${fmtMs(at - prev)} after the previous)`) : null);
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
    if (e.status === 404) notFound(main, `There is no execution ${id} in this tenant.`, 'executions', 'Executions');
    else fill(main, title, errorBox(e));
    return () => {};
  }
  const panel = el('aside', { class: 'node-panel', 'aria-labelledby': 'node-h', hidden: true });
  let selectedNode = null;
  const select = (nodeId, key) => {
    selectedNode = nodeId;
    graph.select(nodeId);
    showNode(nodeId, key);
    panel.hidden = false;
    const h = panel.querySelector('h2');
    if (h) h.focus({ preventScroll: false });
  };
  const graph = drawGraph(layout, `Graph of ${view.workflow} version ${view.version}, coloured by node status`, { onSelect: (n) => select(n) });
  const summary = el('div', { class: 'summary' });
  const actions = el('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' });
  const tasks = el('section', { 'aria-labelledby': 'tasks-h' });
  const tl = el('section', { 'aria-labelledby': 'tl-h' });
  const io = el('section', { 'aria-labelledby': 'io-h' });
  const written = el('section', { 'aria-labelledby': 'def-h' });
  const historyList = el('ol', { class: 'history', 'aria-live': 'off', tabindex: '0', 'aria-label': 'History, oldest first' });
  const history = el('section', { class: 'history-box', 'aria-labelledby': 'hist-h' },
    el('h2', { id: 'hist-h' }, 'History'),
    el('p', { class: 'muted' }, 'Every step as it happened: times from the start, and the wait since the previous event.'),
    historyList);
  const live = el('p', { class: 'live muted', 'aria-live': 'polite' });
  const rerun = el('div', { class: 'rerun', hidden: true });
  fill(main, title, summary, actions, rerun, live,
    el('div', { class: 'exec-grid' },
      el('section', { class: 'graph-sec', 'aria-labelledby': 'graph-h' }, el('h2', { id: 'graph-h' }, 'Graph'), graph.element, legend(), panel),
      history),
    tasks, tl, io, view.generated_by ? written : null);

  const showNode = async (nodeId, key) => {
    const records = view.nodes.filter((n) => topNode(n.key) === nodeId);
    const byNode = (view.costs && view.costs.by_node) || {};
    const close = el('button', { type: 'button', class: 'small ghost', 'aria-label': 'Close the node details', onclick: () => { panel.hidden = true; graph.select(null); } }, 'Close');
    const audit = el('div', {}, el('p', { class: 'muted' }, 'Loading tool calls…'));
    fill(panel, el('div', { class: 'panel-head' }, el('h2', { id: 'node-h', tabindex: '-1' }, `Node ${nodeId}`), close),
      records.length ? null : el('p', {}, 'This node has not run in this execution.'),
      byStart(records).filter((n) => !key || n.key === key || records.length < 20).map((n) => {
        const c = byNode[n.key];
        return el('div', { class: 'node-rec', 'data-key': n.key },
          el('h3', { class: 'mono' }, n.key, ' ', statusBadge(n.status)),
          el('dl', { class: 'facts' },
            el('dt', {}, 'Attempts'), el('dd', {}, String(n.attempts || 0), retries(n.attempts)),
            el('dt', {}, 'Started'), el('dd', {}, fmtTime(n.started_at)),
            el('dt', {}, 'Took'), el('dd', {}, n.started_at ? fmtMs((ms(n.finished_at) ?? Date.now()) - ms(n.started_at)) : '—'),
            c ? [el('dt', {}, 'LLM cost'), el('dd', {}, `$${(c.cost_usd || 0).toFixed(4)} · ${c.input_tokens + c.output_tokens} tokens · ${plural(c.llm_calls, 'call')}`)] : null,
            el('dt', {}, 'Trace'), el('dd', {}, el('code', { class: 'mono trace-id' }, view.trace_id))),
          n.child ? el('p', { class: 'written-child' }, 'Wrote a workflow, run as child execution ', link(`executions/${encodeURIComponent(n.child)}`, n.child)) : null,
          n.input !== undefined && n.input !== null ? [el('h4', {}, 'Input'), json(n.input)] : null,
          n.error ? [el('h4', {}, 'Error'), json(n.error)] : null,
          n.output !== undefined && n.output !== null ? [el('h4', {}, 'Output'), json(n.output)] : null,
          n.trace ? [el('h4', {}, 'Agent'), agentTrace(n.trace)] : null,
          n.compensation ? [el('h4', {}, 'Undo'), el('p', {}, `${n.compensation.tool}: `, statusBadge(n.compensation.status))] : null);
      }),
      el('h3', {}, 'Tool calls (audit)'), audit);
    try {
      const rows = (await api('GET', `/audit?execution_id=${encodeURIComponent(id)}&limit=1000`)).items
        .filter((r) => topNode(String(r.node_key || r.node || '')) === nodeId);
      fill(audit, rows.length ? el('div', { class: 'scroll' }, el('table', { class: 'list' },
        el('caption', { class: 'sr-only' }, `Tool calls of ${nodeId}`),
        el('thead', {}, el('tr', {}, ['When', 'Tool', 'Outcome', 'Took'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, rows.map((r) => el('tr', {},
          el('td', {}, fmtTime(r.at || r.created_at || r.started_at)),
          el('td', { class: 'mono' }, r.tool || '—'),
          el('td', {}, r.error ? el('span', { class: 'error' }, r.error.code || r.status || 'error') : (r.status || r.outcome || 'ok')),
          el('td', { class: 'num' }, fmtMs(r.duration_ms))))))) : el('p', { class: 'muted' }, 'No tool calls from this node.'));
    } catch (e) {
      fill(audit, errorBox(e));
    }
  };

  let shownTasks = null;
  const failedNode = (v) => {
    const f = byStart(v.nodes).filter((n) => n.status === 'failed').pop();
    return f ? f.key : (v.error && v.error.node) || null;
  };
  const render = (v) => {
    view = v;
    fill(summary, el('dl', { class: 'facts' },
      el('dt', {}, 'Workflow'), el('dd', {}, v.generated_by ? `${v.workflow} v${v.version} (written, not stored)` : link(`workflows/${encodeURIComponent(v.workflow)}`, `${v.workflow} v${v.version}`)),
      el('dt', {}, 'Status'), el('dd', { id: 'exec-status' }, statusBadge(v.status)),
      el('dt', {}, 'Started'), el('dd', {}, fmtTime(v.created_at)),
      el('dt', {}, 'Finished'), el('dd', {}, v.finished_at ? `${fmtTime(v.finished_at)} (took ${fmtMs(ms(v.finished_at) - ms(v.created_at))})` : '—'),
      el('dt', {}, 'Started by'), el('dd', { id: 'exec-started-by' }, startedBy(v.started_by)),
      el('dt', {}, 'Trace'), el('dd', { id: 'exec-trace' },
        el('code', { class: 'mono trace-id', title: `OpenTelemetry trace id ${v.trace_id}` }, v.trace_id), ' ',
        el('button', { type: 'button', class: 'small', 'aria-label': 'Copy the trace id', onclick: () => copyTrace(v.trace_id) }, 'Copy')),
      el('dt', {}, 'LLM cost'), el('dd', {}, `$${(v.costs.cost_usd || 0).toFixed(4)} · ${v.costs.input_tokens + v.costs.output_tokens} tokens · ${plural(v.costs.llm_calls, 'call')}`),
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
      actions.append(el('button', { type: 'button', class: 'danger', onclick: cancel }, 'Cancel…'));
    }
    // Resume acts on an execution no process drives (after a crash); one waiting for a
    // person or a timer moves when they answer or it fires.
    if (v.status === 'pending' || v.status === 'running') {
      actions.append(el('button', { type: 'button', class: 'ghost', onclick: resume, title: 'Continue an execution whose process stopped (after a crash)' }, 'Resume'));
    }
    const failed = failedNode(v);
    if ((v.status === 'failed' || v.status === 'compensated') && failed && !v.generated_by) {
      actions.append(el('button', { type: 'button', onclick: () => retry('failed_node') }, `Retry from ${failed}`));
    }
    if (TERMINAL.has(v.status) && !v.generated_by) {
      actions.append(el('button', { type: 'button', class: 'ghost', onclick: openRerun }, 'Re-run with an edited input…'));
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
    fill(tl, el('h2', { id: 'tl-h' }, 'Timeline'), timeline(v, select));
    if (v.generated_by && v.definition) fill(written, el('h2', { id: 'def-h' }, 'Definition (written by a planner)'), json(v.definition));
    fill(io, el('h2', { id: 'io-h' }, 'Input and output'),
      el('h3', {}, 'Input'), json(v.input),
      el('h3', {}, v.error ? 'Error' : 'Output'), json(v.error || v.output));
    if (selectedNode && !panel.hidden) showNode(selectedNode);
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
  const cancel = async () => {
    const ok = await confirmDialog(`Cancel execution ${id}?`,
      'Its running steps stop, and the steps it completed are undone (their compensations run). This cannot be taken back.',
      'Cancel the execution', 'Keep it running');
    if (!ok) return;
    try {
      await api('POST', `/executions/${encodeURIComponent(id)}/cancel`);
      live.textContent = 'Cancel requested: running steps stop, completed ones are undone.';
      refresh();
    } catch (e) {
      live.textContent = e.message;
    }
  };
  const resume = async () => {
    try {
      const r = await api('POST', `/executions/${encodeURIComponent(id)}/resume`);
      live.textContent = r && r.status ? `Resume: ${String(r.status).replaceAll('_', ' ')}.` : 'Resume requested.';
      refresh();
    } catch (e) {
      live.textContent = e.status === 409 ? `Nothing to resume: ${e.message}` : e.message;
    }
  };
  // One retry per press: the buttons wait while it is being made (a second press would make
  // a second execution).
  let retrying = false;
  const retry = async (from, input) => {
    if (retrying) return;
    retrying = true;
    for (const b of main.querySelectorAll('.actions button, .rerun button')) b.disabled = true;
    live.textContent = 'Starting the retry…';
    try {
      const body = { from };
      if (input !== undefined) body.input = input;
      const r = await api('POST', `/executions/${encodeURIComponent(id)}/retry`, body);
      navigate(`executions/${encodeURIComponent(r.execution_id)}`);
    } catch (e) {
      live.textContent = e.message;
      for (const b of main.querySelectorAll('.actions button, .rerun button')) b.disabled = false;
    } finally {
      retrying = false;
    }
  };
  const openRerun = () => {
    const area = el('textarea', { id: 'rerun-input', rows: 8, spellcheck: 'false', 'aria-describedby': 'rerun-err' }, JSON.stringify(view.input ?? {}, null, 2));
    const err = el('p', { class: 'field-error', id: 'rerun-err', 'aria-live': 'polite' });
    const form = el('form', { class: 'card', novalidate: true },
      el('div', { class: 'field' }, el('label', { for: 'rerun-input' }, 'Input (JSON)'),
        el('span', { class: 'help' }, 'A new execution of the same version starts from the first node with this input; this one stays as it is.'), area, err),
      el('div', { class: 'actions' }, el('button', { type: 'submit' }, 'Start the re-run'),
        el('button', { type: 'button', class: 'ghost', onclick: () => { rerun.hidden = true; } }, 'Close')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      let input;
      try {
        input = JSON.parse(area.value);
      } catch (e) {
        err.textContent = `Not JSON: ${e.message}`;
        area.setAttribute('aria-invalid', 'true');
        return;
      }
      retry('start', input);
    });
    fill(rerun, form);
    rerun.hidden = false;
    area.focus();
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
  // The history, from its first event, then live: one stream. A long history shows its last
  // 2,000 events.
  const started = ms(view.created_at);
  let prev = null;
  let shown = 0;
  const es = new EventSource(`api/v1/executions/${encodeURIComponent(id)}/events`);
  const terminalSeen = () => es.close();
  for (const kind of EVENTS) {
    es.addEventListener(kind, (ev) => {
      let data = {};
      try { data = JSON.parse(ev.data); } catch { /* not JSON: ignore the body */ }
      if (data.seq !== undefined) {
        historyList.append(historyItem(data, prev, started));
        prev = ms(data.at);
        if (++shown > 2000) historyList.firstChild.remove();
      }
      if (EVENT_STATUS[kind] && data.node) graph.setStatus(topNode(data.node), EVENT_STATUS[kind]);
      if (!TERMINAL.has(view.status)) refresh();
      if (kind.startsWith('execution_') && TERMINAL.has(kind.slice(10))) terminalSeen();
    });
  }
  es.onerror = () => { if (TERMINAL.has(view.status)) es.close(); };
  return () => {
    stopped = true;
    es.close();
    clearTimeout(timer);
  };
}
