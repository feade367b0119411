// The console's views. Each takes the <main> element and the route's parameters, draws
// itself from the HTTP API and returns a function that stops what it started (live streams).

import { api, call, el, fmtMs, fmtTime, plural, statusBadge, setCsrf, ApiError } from './api.js';
import { drawGraph } from './graph.js';
import { schemaForm } from './form.js';
import { EXEC_STATUSES, TERMINAL, errorBox, fill, heading, json, link, md, notFound, startedBy } from './common.js';

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
      el('span', { class: 'help', id: 'key-help' }, ...md('A key from `hilo keys create` (or a human agent’s key). It stays on the server; this browser gets a session cookie.')),
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
  fill(main, heading('Workflows'), el('p', {}, link('workflows/new', 'New workflow in the builder', { class: 'button-link' })), body, importForm(navigate));
  try {
    const page = await api('GET', `/workflows?limit=100${cursor ? '&cursor=' + encodeURIComponent(cursor) : ''}`);
    const table = el('table', { class: 'list stack' },
      el('caption', { class: 'sr-only' }, 'Workflows by name'),
      el('thead', {}, el('tr', {}, ['Name', 'Active', 'Latest', 'Versions', 'Description', 'Updated'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, page.items.map((w) => el('tr', {},
        el('td', { 'data-label': 'Name' }, link(`workflows/${encodeURIComponent(w.name)}`, w.name)),
        el('td', { class: 'num', 'data-label': 'Active' }, `v${w.active_version}`), el('td', { class: 'num', 'data-label': 'Latest' }, `v${w.latest_version}`),
        el('td', { class: 'num', 'data-label': 'Versions' }, String(w.versions)), el('td', { 'data-label': 'Description' }, w.description || ''),
        el('td', { 'data-label': 'Updated' }, fmtTime(w.updated_at))))));
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
    const start = async (value) => {
      const r = await api('POST', '/executions', { workflow: name, version: chosen, input: value });
      navigate(`executions/${encodeURIComponent(r.execution_id)}`);
    };
    const schema = wf.definition && wf.definition.input;
    let run;
    if (schema && schema.type === 'object' && schema.properties) {
      // A form built from the workflow's input schema (the server checks the whole schema).
      run = el('section', { class: 'card', 'aria-labelledby': 'run-h' }, el('h2', { id: 'run-h' }, `Run version ${chosen}`),
        schemaForm(schema, start, 'Start'));
    } else {
      const input = el('textarea', { id: 'run-input', name: 'input', rows: 4, spellcheck: 'false' }, '{}');
      const err = el('span', { class: 'field-error', id: 'run-err', 'aria-live': 'polite' });
      input.setAttribute('aria-describedby', 'run-err');
      run = el('form', { class: 'card', novalidate: true },
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
        try { await start(value); } catch (e) { err.textContent = e.message; }
      });
    }
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
      el('p', {}, link(`workflows/${encodeURIComponent(name)}/edit`, 'Edit in the builder', { class: 'button-link' }), ' ',
        link(`executions?workflow_prefix=${encodeURIComponent(name)}`, 'Its executions')),
      el('section', { 'aria-label': 'Graph' }, el('h2', {}, `Graph of version ${chosen}`),
        drawGraph(layout, `Graph of ${name} version ${chosen}`).element),
      run, el('div', { class: 'scroll' }, vt),
      diffSection,
      el('details', {}, el('summary', {}, 'Definition'), json(wf.definition)));
  } catch (e) {
    if (e.status === 404) notFound(main, `There is no workflow ${name} in this tenant.`, 'workflows', 'Workflows');
    else fill(main, heading(`Workflow ${name}`), errorBox(e));
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
    if (e.status === 404) notFound(main, `There is no conversation ${id} in this tenant.`, 'inbox', 'the inbox');
    else fill(main, title, errorBox(e));
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
      const said = typeof done === 'function' ? done(r || {}) : done;
      // Announced once the page shows it: the facts and the actions are redrawn first.
      try {
        drawFacts(await api('GET', `/conversations/${encodeURIComponent(id)}`));
      } finally {
        live.textContent = said;
      }
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
      el('p', { class: 'muted' }, ...md('Pause, resume and backfill with `hilo triggers`.')));
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
        : el('p', {}, ...md('No budgets are set (`[llm.budgets]` in hilo.toml).')));
    const max = Math.max(1e-12, ...items.map((x) => x.cost_usd || 0));
    fill(main, heading('Costs'),
      el('nav', { class: 'pager', 'aria-label': 'Group by' }, ['model', 'workflow', 'node'].map((b) =>
        link(`costs?by=${b}`, `by ${b}`, { 'aria-current': b === by ? 'page' : null }))),
      budgets,
      el('h2', {}, 'Spending'),
      el('p', {}, `Since ${fmtTime(r.since)}: $${(r.total_usd || 0).toFixed(4)} in ${plural(r.total_calls, 'model call')}.`),
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
