// End-to-end tests of hilo's web console in headless Chromium (see ./run, which starts the
// server and sets HILO_URL, HILO_KEY_A, HILO_KEY_B, SHOTS and PROFILE_DIR).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const BASE = process.env.HILO_URL;
const KEY_A = process.env.HILO_KEY_A;
const KEY_B = process.env.HILO_KEY_B;
const KEY_AGENT = process.env.HILO_KEY_AGENT;
const SHOTS = process.env.SHOTS;
const PROFILE = process.env.PROFILE_DIR || '/tmp/hilo-console-chromium';
// Timed budgets (docs/console.md) are judged from the printed figures on a quiet machine; the
// tests fail at LOADED times a budget, which a regression reaches and a busy CI machine (2-3x
// slower in its slow state) does not.
const LOADED = 3;
assert.ok(BASE && KEY_A && KEY_B && KEY_AGENT && SHOTS, 'run through tests/browser/run');

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const LIVE = `name: live_demo
version: 1
description: Sets a greeting, waits two and a half seconds, then finishes
nodes:
  - id: start
    type: set
    vars: {greeting: hello}
  - id: nap
    type: wait
    duration_ms: 2500
  - id: done
    type: finish
    output: {greeting: "\${ vars.greeting }"}
edges:
  - {from: start, to: nap}
  - {from: nap, to: done}
`;

const APPROVAL = `name: spend_approval
version: 1
description: A person approves a spend
nodes:
  - id: review
    type: human
    prompt: "Approve the spend of the marketing team?"
    schema:
      type: object
      required: [approve, amount]
      properties:
        approve: {type: boolean, title: Approve}
        amount: {type: integer, minimum: 1, maximum: 1000, multipleOf: 5, title: Amount}
        note: {type: string, maxLength: 200, title: Note}
  - id: done
    type: finish
    output: {approved: "\${ review.output.approve }", amount: "\${ review.output.amount }"}
edges:
  - {from: review, to: done}
`;

// Line 11 names a node that does not exist.
const BROKEN = `name: broken
version: 1
description: An edge to a node that does not exist
nodes:
  - id: first
    type: set
    vars: {a: 1}
  - id: done
    type: finish
edges:
  - {from: first, to: nowhere}
`;

// Answers every message; asked for a person, hands over to someone with the skill `returns`.
const CHAT = `name: chat_support
version: 1
description: Answers every message; a person takes over when asked
hil:
  triggers:
    - {type: explicit_request, patterns: ["talk to a human"]}
  skills: [returns]
nodes:
  - id: answer
    type: finish
    output: {reply: "AI: you wrote {{ input.message }}{% if input.note %} (note: {{ input.note }}){% endif %}"}
`;

// A saga of built-in tools (no network): two steps done, then a failure; the first step's undo
// works, the second's cannot (its JMESPath expression is invalid).
const SAGA = `name: saga_demo
version: 1
description: Reserves, charges, then fails to ship; the steps are undone
nodes:
  - id: reserve
    type: tool
    tool: transform_json
    with: {data: {seat: "12A"}, expression: seat}
    compensate: {tool: transform_json, with: {data: {released: "12A"}, expression: released}}
  - id: charge
    type: tool
    tool: transform_json
    with: {data: {amount: 40}, expression: amount}
    compensate: {tool: transform_json, with: {data: {}, expression: "refund(("}}
  - id: ship
    type: fail
    with: {code: OUT_OF_STOCK, message: "the warehouse has none left"}
edges:
  - {from: reserve, to: charge}
  - {from: charge, to: ship}
`;

// Two labelling agents answered by the built-in local router (priced in ./run's hilo.toml).
const TRIAGE = `name: triage_demo
version: 1
description: Classifies a message twice with the local router
nodes:
  - id: intent
    type: agent
    agent: simple
    with: {model: local-router, prompt: "{{ input.message }}", labels: [return_request, order_status]}
  - id: urgency
    type: agent
    agent: simple
    with: {model: local-router, prompt: "{{ input.message }} urgent now please", labels: [urgent, later]}
  - id: done
    type: finish
    output: {intent: "\${ intent.output.label }", urgency: "\${ urgency.output.label }"}
edges:
  - {from: intent, to: urgency}
  - {from: urgency, to: done}
`;

const KB_WF = `name: kb_demo
version: 1
description: Answers from the knowledge base with the local router
nodes:
  - id: answer
    type: agent
    agent: simple
    with:
      model: local-router
      prompt: "{{ input.message }}"
      context:
        knowledge: {collection: policies, top_k: 2}
  - id: done
    type: finish
    output: {answer: "\${ answer.output.text }"}
edges:
  - {from: answer, to: done}
`;

function chain(n) {
  const nodes = [];
  const edges = [];
  for (let i = 0; i < n - 1; i++) nodes.push(`  - {id: s${i}, type: set, vars: {i${i}: ${i}}}`);
  nodes.push(`  - {id: s${n - 1}, type: finish, output: {n: ${n}}}`);
  for (let i = 1; i < n; i++) edges.push(`  - {from: s${i - 1}, to: s${i}}`);
  return `name: big_chain\nversion: 1\ndescription: ${n} nodes in a row\nnodes:\n${nodes.join('\n')}\nedges:\n${edges.join('\n')}\n`;
}

/** The API with a bearer key (for setting up data the UI is then checked against). */
async function api(key, method, path, body, type = 'application/json') {
  const res = await fetch(new URL('api/v1' + path, BASE), {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': type } : {}) },
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function waitStatus(key, id, statuses) {
  for (let i = 0; i < 200; i++) {
    const r = await api(key, 'GET', `/executions/${id}?nodes_limit=1`);
    if (statuses.includes(r.body.status)) return r.body;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  throw new Error(`execution ${id} never reached ${statuses}`);
}

let browser;
const problems = [];
const axeReport = [];

/** A signed-in (or not) page in a fresh context, collecting console errors. */
async function newPage(width = 1280) {
  const context = await browser.newContext({
    viewport: { width, height: width > 600 ? 900 : 844 },
    bypassCSP: true, // so that axe-core can be injected; the page itself runs under its CSP
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Chromium reports every 4xx answer the page reads as an error line; the ones the tests
    // cause on purpose (a wrong key on the sign-in page, a page for something that does not
    // exist, a refused definition or answer) are fine. A signed-out load logs nothing.
    if (/Failed to load resource: the server responded with a status of (404|422)/.test(m.text())) return;
    if (/status of 401/.test(m.text()) && page.url().includes('sign-in')) return;
    problems.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${page.url()}: ${e.message}`));
  return page;
}

async function signIn(page, key) {
  await page.goto(new URL('executions', BASE).href);
  await page.waitForURL(/sign-in/);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Executions' }).waitFor();
}

async function axe(page, name) {
  await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help, target: v.nodes[0]?.target }));
  });
  axeReport.push({ page: name, violations: result });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `axe-core on ${name}: ${JSON.stringify(bad, null, 1)}`);
}

/** Screenshots at both widths; `focus` (a locator), when given, is scrolled into view at each. */
async function shoot(page, name, focus) {
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width > 600 ? 900 : 844 });
    if (focus) await focus.evaluate((e) => e.scrollIntoView({ block: 'center' }));
    await page.screenshot({ path: `${SHOTS}/${name}-${width}.png`, fullPage: false });
    // Usable at this width: the page itself never scrolls sideways (a wide table or graph
    // scrolls inside its own box, or stacks).
    const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= inner, `${name} at ${width} px: the page is ${scroll} px wide`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

before(async () => {
  rmSync(PROFILE, { recursive: true, force: true });
  mkdirSync(PROFILE, { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    // launch() starts Chromium on a new, empty profile directory of its own (it refuses
    // --user-data-dir, which is for launchPersistentContext); HOME/XDG dirs point into PROFILE.
    args: ARGS,
    env: { ...process.env, HOME: PROFILE, XDG_CONFIG_HOME: `${PROFILE}/config`, XDG_CACHE_HOME: `${PROFILE}/cache` },
    headless: true,
  });
});

after(async () => {
  if (browser) await browser.close();
  console.log('axe-core violations (any impact):', JSON.stringify(axeReport.filter((r) => r.violations.length)));
});

test('sign in: a wrong key is refused beside the field, a right one opens the console; sign out', async () => {
  const page = await newPage();
  await page.goto(new URL('executions', BASE).href);
  await page.waitForURL(/sign-in/);
  await axe(page, 'sign-in');
  await page.getByLabel('API key').fill('hilo_sk_wrong');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#key-err', { hasText: 'not valid' }).waitFor();
  await shoot(page, 'sign-in');
  await page.getByLabel('API key').fill(KEY_A);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Executions' }).waitFor();
  assert.match(await page.locator('#who').innerText(), /acme/);
  const cookies = await page.context().cookies();
  const c = cookies.find((x) => x.name === '__Host-hilo_session');
  assert.ok(c && c.httpOnly && c.secure && c.path === '/' && c.sameSite === 'Strict', JSON.stringify(cookies));
  assert.equal(await page.evaluate(() => document.cookie), '', 'the session cookie is not readable by scripts');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/sign-in/);
  await page.goto(new URL('workflows', BASE).href);
  await page.waitForURL(/sign-in/);
  await page.context().close();
});

test('import: a definition with an error shows it at its line; a valid one is stored', async () => {
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.getByRole('link', { name: 'Workflows' }).click();
  await page.getByRole('heading', { level: 1, name: 'Workflows' }).waitFor();
  await page.getByLabel('Definition (YAML or JSON)').fill(BROKEN);
  await page.getByRole('button', { name: 'Import' }).click();
  const line = page.locator('ol.source li[data-line="11"].has-error');
  await line.waitFor();
  assert.match(await line.innerText(), /UNKNOWN_NODE/);
  assert.match(await line.innerText(), /nowhere/);
  assert.match(await line.innerText(), /column 19/);
  await axe(page, 'workflows (import error)');
  await line.scrollIntoViewIfNeeded();
  await shoot(page, 'import-error');
  for (const wf of [LIVE, APPROVAL]) {
    await page.getByLabel('Definition (YAML or JSON)').fill(wf);
    await page.getByRole('button', { name: 'Import' }).click();
    await page.locator('.import-result .ok').waitFor();
  }
  await page.goto(new URL('workflows', BASE).href);
  await page.getByRole('link', { name: 'spend_approval' }).waitFor();
  await page.getByRole('link', { name: 'live_demo' }).waitFor();
  await page.evaluate(() => window.scrollTo(0, 0));
  await shoot(page, 'workflows');
  await page.context().close();
});

test('a run started from the workflow page colours its nodes live', async () => {
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.goto(new URL('workflows/live_demo', BASE).href);
  await page.locator('svg.graph g[data-node="nap"]').waitFor();
  await axe(page, 'workflow');
  await shoot(page, 'workflow');
  await page.getByRole('button', { name: 'Start' }).click();
  await page.waitForURL(/executions\/[^/]+$/);
  const nap = page.locator('svg.graph g[data-node="nap"]');
  await page.locator('svg.graph g[data-node="nap"]:is([data-status="waiting"],[data-status="running"])').waitFor({ timeout: 5000 });
  const before = await nap.locator('rect').evaluate((r) => getComputedStyle(r).fill);
  await page.evaluate(() => { window.__samePage = true; });
  await page.locator('svg.graph g[data-node="nap"][data-status="succeeded"]').waitFor({ timeout: 10000 });
  const afterFill = await nap.locator('rect').evaluate((r) => getComputedStyle(r).fill);
  assert.notEqual(before, afterFill, 'the node changed colour');
  assert.equal(await page.evaluate(() => window.__samePage), true, 'without a reload');
  await page.locator('svg.graph g[data-node="done"][data-status="succeeded"]').waitFor();
  await page.locator('#exec-status .badge', { hasText: 'succeeded' }).waitFor();
  const rows = await page.locator('table.timeline tbody tr').count();
  assert.equal(rows, 3);
  // A node of the graph is a button that opens its details (from the keyboard too).
  await nap.focus();
  await page.keyboard.press('Enter');
  const panel = page.locator('.node-panel');
  await panel.getByRole('heading', { name: 'Node nap' }).waitFor();
  assert.match(await panel.innerText(), /nap\s+succeeded[\s\S]*Took[\s\S]*Output/);
  // The graph fits its frame, zooms and pans.
  const box = page.locator('svg.graph');
  const full = await box.getAttribute('viewBox');
  await page.getByRole('button', { name: 'Zoom in' }).click();
  assert.notEqual(await box.getAttribute('viewBox'), full);
  await page.getByRole('button', { name: 'Fit the whole graph' }).click();
  assert.equal(await box.getAttribute('viewBox'), full);
  await axe(page, 'execution');
  await page.context().close();
});

test('an approval answered through the generated form: invalid values refused beside the field', async () => {
  const started = await api(KEY_A, 'POST', '/executions', { workflow: 'spend_approval', input: {} });
  assert.equal(started.status, 202);
  const id = started.body.execution_id;
  await waitStatus(KEY_A, id, ['waiting']);
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.getByRole('link', { name: 'Inbox' }).click();
  await page.getByRole('link', { name: 'review' }).first().waitFor();
  await page.getByText('Automation rate').waitFor();
  await page.locator('table.list td', { hasText: 'Rosa (rosa)' }).waitFor();
  await axe(page, 'inbox (supervisor)');
  await shoot(page, 'inbox-supervisor');
  await page.goto(new URL(`executions/${id}`, BASE).href);
  const form = page.locator('form.schema-form');
  await form.waitFor();
  await page.locator('svg.graph g[data-node="review"][data-status="waiting"]').waitFor();
  const amount = form.getByLabel('Amount');
  // "Beside the field": the error is in the field's own box and is its accessible description.
  const errId = await amount.getAttribute('aria-describedby');
  const amountError = form.locator('.field', { has: page.locator('input[name="amount"]') }).locator(`#${errId}`);
  // Out of range: refused by the page, beside the field, nothing sent.
  // The required yes/no (`approve`) is not a checkbox that an unticked box turns into a "no":
  // the form answers with two explicit buttons, Approve and Reject.
  assert.equal(await form.locator('input[type="checkbox"]').count(), 0);
  assert.equal(await form.getByRole('button', { name: 'Send answer' }).count(), 0);
  await amount.fill('5000');
  await form.getByRole('button', { name: 'Approve' }).click();
  await amountError.filter({ hasText: 'Must be at most 1000.' }).waitFor();
  assert.equal(await amount.getAttribute('aria-invalid'), 'true');
  // Not a multiple of 5: only the server's schema check knows; its error lands beside the field.
  await amount.fill('7');
  await form.getByRole('button', { name: 'Approve' }).click();
  await amountError.filter({ hasText: /multiple of 5/ }).waitFor();
  await axe(page, 'execution (approval form with errors)');
  await shoot(page, 'approval');
  await amount.fill('10');
  await form.getByRole('button', { name: 'Reject' }).click();
  await page.locator('#exec-status .badge', { hasText: 'succeeded' }).waitFor({ timeout: 10000 });
  await page.locator('svg.graph g[data-node="review"][data-status="succeeded"]').waitFor();
  const done = await api(KEY_A, 'GET', `/executions/${id}`);
  assert.deepEqual(done.body.output, { approved: false, amount: 10 });
  // The history says what happened, in order: the wait, then the person's answer.
  const history = await page.locator('ol.history').innerText();
  assert.ok(history.indexOf('review waits') < history.indexOf('review answered by a person'), history);
  await page.evaluate(() => window.scrollTo(0, 0));
  await shoot(page, 'execution');
  await page.goto(new URL('executions', BASE).href);
  await page.locator('table.list tbody tr').first().waitFor();
  await axe(page, 'executions');
  await shoot(page, 'executions');
  // Dark mode follows the system's setting.
  await page.emulateMedia({ colorScheme: 'dark' });
  assert.equal(await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor), 'rgb(13, 17, 23)');
  await axe(page, 'executions (dark)');
  await shoot(page, 'executions-dark');
  await page.emulateMedia({ colorScheme: 'light' });
  // Paging by the API's cursor: one at a time, the next page has another.
  await page.goto(new URL('executions?limit=1', BASE).href);
  await page.getByRole('link', { name: 'Next page' }).waitFor();
  const firstIds = await page.locator('table.list tbody tr td:first-child').allInnerTexts();
  assert.equal(firstIds.length, 1);
  await page.getByRole('link', { name: 'Next page' }).click();
  await page.waitForURL(/cursor=/);
  await page.getByRole('link', { name: 'First page' }).waitFor();
  const nextIds = await page.locator('table.list tbody tr td:first-child').allInnerTexts();
  assert.ok(nextIds.length >= 1 && nextIds.every((x) => !firstIds.includes(x)), `${firstIds} then ${nextIds}`);
  // The filters: none of them waits any more.
  await page.goto(new URL('executions', BASE).href);
  await page.getByLabel('Status').selectOption('waiting');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/status=waiting/);
  await page.getByText('No executions match.').waitFor();
  // A workflow's name is found by its start ("live" finds live_demo).
  await page.getByLabel('Workflow').fill('live');
  await page.getByLabel('Status').selectOption('succeeded');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/workflow_prefix=live/);
  await page.locator('table.list tbody tr').first().waitFor();
  const shown = await page.locator('table.list tbody tr td:nth-child(2)').allInnerTexts();
  assert.ok(shown.length >= 1 && shown.every((w) => w.startsWith('live_demo')), String(shown));
  // A JMESPath over the input finds the approval answered above, and the link keeps it.
  await page.goto(new URL('executions', BASE).href);
  await page.getByLabel('Where (JMESPath)').fill('workflow == `"spend_approval"` && output.approved == `false`');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/where=/);
  await page.locator(`table.list tbody tr[data-id="${id}"]`).waitFor();
  assert.equal(await page.locator('table.list tbody tr').count(), 1);
  await page.reload();
  await page.locator(`table.list tbody tr[data-id="${id}"]`).waitFor();
  // By id, from its first characters.
  await page.goto(new URL(`executions?id=${encodeURIComponent(id.slice(0, 8))}`, BASE).href);
  await page.locator(`table.list tbody tr[data-id="${id}"]`).waitFor();
  await page.goto(new URL('costs', BASE).href);
  await page.getByRole('heading', { level: 1, name: 'Costs' }).waitFor();
  await page.locator('main p, main table').first().waitFor();
  // The budgets of hilo.toml, each window with its use.
  const daily = page.locator('table.budgets tr[data-window="daily"]');
  await daily.waitFor();
  assert.match(await daily.innerText(), /daily[\s\S]*\$5\.00/);
  assert.match(await page.locator('table.budgets tr[data-window="monthly"]').innerText(), /\$100\.00/);
  assert.match(await page.locator('table.budgets tr[data-window="per-execution"]').innerText(), /\$1\.00/);
  const budgets = await api(KEY_A, 'GET', '/costs/budgets');
  assert.equal(budgets.body.on_exceed, 'downgrade');
  assert.deepEqual(budgets.body.windows.map((w) => w.window), ['daily', 'monthly']);
  assert.ok(budgets.body.windows.every((w) => Math.abs(w.limit_usd - w.spent_usd - w.left_usd) < 1e-9));
  await axe(page, 'costs');
  await shoot(page, 'costs');
  await page.context().close();
});

test('cancel asks first; resume is offered only where it can act', async () => {
  const started = await api(KEY_A, 'POST', '/executions', { workflow: 'spend_approval', input: {} });
  const id = started.body.execution_id;
  await waitStatus(KEY_A, id, ['waiting']);
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.goto(new URL(`executions/${id}`, BASE).href);
  await page.locator('form.schema-form').waitFor();
  // Waiting for a person: resuming would do nothing, so there is no Resume.
  assert.equal(await page.getByRole('button', { name: 'Resume' }).count(), 0);
  await page.getByRole('button', { name: 'Cancel…' }).click();
  const dialog = page.getByRole('dialog', { name: `Cancel execution ${id}?` });
  await dialog.waitFor();
  await axe(page, 'execution (confirm cancel)');
  await shoot(page, 'execution-cancel-confirm', dialog);
  await dialog.getByRole('button', { name: 'Keep it running' }).click();
  await dialog.waitFor({ state: 'detached' });
  assert.equal((await api(KEY_A, 'GET', `/executions/${id}`)).body.status, 'waiting');
  await page.getByRole('button', { name: 'Cancel…' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel the execution' }).click();
  await page.locator('#exec-status .badge', { hasText: 'cancelled' }).waitFor({ timeout: 10000 });
  await page.context().close();
});

test("the timeline shows each node's LLM tokens and cost", async () => {
  assert.equal((await api(KEY_A, 'POST', '/workflows', TRIAGE, 'application/yaml')).status, 201);
  const run = await api(KEY_A, 'POST', '/workflows/triage_demo/execute', { input: { message: 'I want to return the boots of order 881' } });
  assert.equal(run.status, 200, JSON.stringify(run.body));
  assert.equal(run.body.status, 'succeeded', JSON.stringify(run.body));
  const byNode = (await api(KEY_A, 'GET', `/executions/${run.body.id}`)).body.costs.by_node;
  assert.deepEqual(Object.keys(byNode), ['intent', 'urgency']);
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.goto(new URL(`executions/${run.body.id}`, BASE).href);
  await page.locator('table.timeline tr[data-key="urgency"]').waitFor();
  for (const key of ['intent', 'urgency']) {
    const c = byNode[key];
    assert.ok(c.llm_calls === 1 && c.input_tokens > 0 && c.cost_usd > 0, JSON.stringify(c));
    const cells = await page.locator(`table.timeline tr[data-key="${key}"] td`).allInnerTexts();
    // Status, attempts, duration, tokens, LLM cost, …
    assert.equal(cells[3], `${c.input_tokens + c.output_tokens} (${c.input_tokens} in · ${c.output_tokens} out)`, key);
    assert.equal(cells[4], `$${c.cost_usd.toFixed(4)} · 1 call`, key);
  }
  const done = await page.locator('table.timeline tr[data-key="done"] td').allInnerTexts();
  assert.deepEqual([done[3], done[4]], ['—', '—'], 'a node without model calls');
  await axe(page, 'execution (LLM costs)');
  await shoot(page, 'execution-costs', page.locator('table.timeline'));
  await page.context().close();
});

test('an agent that read the knowledge base shows the chunks it was given, with sources and scores', async () => {
  const add = await api(KEY_A, 'POST', '/kb/collections/policies/documents', {
    source: 'shipping.md',
    format: 'markdown',
    content: '# Shipping\n\n## Costs\n\nShipping is free for orders above 50 euros. Below that, shipping costs 4.90 euros.\n\n## Countries\n\nWe ship to Switzerland and Norway.\n',
  });
  assert.equal(add.status, 200, JSON.stringify(add.body));
  assert.equal((await api(KEY_A, 'POST', '/workflows', KB_WF, 'application/yaml')).status, 201);
  const run = await api(KEY_A, 'POST', '/workflows/kb_demo/execute', { input: { message: 'What does shipping cost?' } });
  assert.equal(run.status, 200, JSON.stringify(run.body));
  assert.equal(run.body.status, 'succeeded', JSON.stringify(run.body));
  assert.match(run.body.output.answer, /4\.90 euros\. \(from shipping\.md — Shipping > Costs\)$/);
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.goto(new URL(`executions/${run.body.id}`, BASE).href);
  const row = page.locator('table.timeline tr[data-key="answer"]');
  await row.waitFor();
  await row.getByRole('button', { name: 'answer' }).click();
  const panel = page.locator('.node-panel');
  const read = panel.locator('.kb-read');
  await read.waitFor();
  const text = await read.innerText();
  assert.match(text, /Knowledge read from policies \(text\): 2 chunks/);
  assert.match(text, /shipping\.md — Shipping > Costs · score 1\.00 \(text #1\)/);
  assert.match(text, /Shipping is free for orders above 50 euros/);
  await axe(page, 'execution (knowledge read)');
  await shoot(page, 'execution-knowledge', panel);
  await page.context().close();
});

test('an execution started under a traceparent shows the caller\'s trace id', async () => {
  const caller = '4bf92f3577b34da6a3ce929d0e0e4736';
  const res = await fetch(new URL('api/v1/executions', BASE), {
    method: 'POST',
    headers: {
      authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json',
      traceparent: `00-${caller}-00f067aa0ba902b7-01`,
    },
    body: JSON.stringify({ workflow: 'live_demo', input: {} }),
  });
  assert.equal(res.status, 202);
  const id = (await res.json()).execution_id;
  const view = await waitStatus(KEY_A, id, ['succeeded']);
  assert.equal(view.trace_id, caller);
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.goto(new URL(`executions/${id}`, BASE).href);
  await page.locator('#exec-status .badge', { hasText: 'succeeded' }).waitFor();
  const shown = page.locator('#exec-trace code');
  assert.equal(await shown.innerText(), caller);
  // Selectable in full with one click (user-select: all), and copied by its button.
  assert.equal(await shown.evaluate((e) => getComputedStyle(e).userSelect), 'all');
  await page.getByRole('button', { name: 'Copy the trace id' }).click();
  await page.locator('p.live', { hasText: /Trace id (copied|selected)/ }).waitFor();
  // An execution started without one has a trace of its own, shown the same way.
  const other = await api(KEY_A, 'POST', '/executions', { workflow: 'live_demo', input: {} });
  const otherView = await waitStatus(KEY_A, other.body.execution_id, ['succeeded']);
  assert.match(otherView.trace_id, /^[0-9a-f]{32}$/);
  assert.notEqual(otherView.trace_id, caller);
  await page.goto(new URL(`executions/${other.body.execution_id}`, BASE).href);
  await page.locator('#exec-trace code', { hasText: otherView.trace_id }).waitFor();
  await axe(page, 'execution (trace id)');
  await page.context().close();
});

test('a failed saga: each compensation has its own row in the timeline', async () => {
  assert.equal((await api(KEY_A, 'POST', '/workflows', SAGA, 'application/yaml')).status, 201);
  const started = await api(KEY_A, 'POST', '/executions', { workflow: 'saga_demo', input: {} });
  assert.equal(started.status, 202);
  const id = started.body.execution_id;
  await waitStatus(KEY_A, id, ['failed', 'compensated']);
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.goto(new URL(`executions/${id}`, BASE).href);
  await page.locator('#exec-status .badge', { hasText: 'failed' }).waitFor();
  const undoReserve = page.locator('table.timeline tr.undo[data-undo="reserve"]');
  const undoCharge = page.locator('table.timeline tr.undo[data-undo="charge"]');
  await undoReserve.waitFor();
  assert.match(await undoReserve.innerText(), /undo reserve\s+succeeded\s+1/);
  assert.match(await undoReserve.innerText(), /transform_json/);
  assert.match(await undoCharge.innerText(), /undo charge\s+failed\s+1/);
  assert.match(await undoCharge.locator('.undo-error').innerText(), /Error: \w+: .*refund/);
  // The failing step itself has no undo; the undo rows come after the node rows, the last
  // step done undone first.
  assert.equal(await page.locator('table.timeline tr.undo').count(), 2);
  const keys = await page.locator('table.timeline tbody tr th').allInnerTexts();
  assert.deepEqual(keys.slice(-2), ['undo charge', 'undo reserve']);
  assert.match(await page.locator('table.timeline caption').innerText(), /then 2 compensations/);
  // Each undo shows how long it took, and a bar on the run's axis: from its start to its end as
  // the API gives them.
  const view = (await api(KEY_A, 'GET', `/executions/${id}`)).body;
  const undone = view.nodes.find((n) => n.key === 'reserve').compensation;
  assert.ok(undone.started_at && undone.finished_at, JSON.stringify(undone));
  assert.ok(Date.parse(undone.finished_at) >= Date.parse(undone.started_at));
  assert.match(await undoReserve.locator('td.undo-duration').innerText(), /^\d+(\.\d+)? (ms|s)$/);
  assert.match(await undoCharge.locator('td.undo-duration').innerText(), /^\d+(\.\d+)? (ms|s)$/);
  assert.equal(await undoReserve.locator('.track .bar.s-compensated').count(), 1);
  assert.equal(await undoCharge.locator('.track .bar.s-failed').count(), 1);
  // The graph draws the step whose undo succeeded as compensated.
  await page.locator('svg.graph g[data-node="reserve"][data-status="compensated"]').waitFor({ timeout: 5000 });
  await axe(page, 'execution (compensations)');
  await shoot(page, 'execution-compensation', page.locator('table.timeline'));
  // Retry from the failed node: a new execution, linked to this one, that takes the record
  // of everything before the failed node.
  const failedKey = view.nodes.find((n) => n.status === 'failed').key;
  await page.getByRole('button', { name: `Retry from ${failedKey}` }).click();
  await page.waitForURL((u) => u.pathname.includes('/executions/') && !u.pathname.endsWith(`/${id}`));
  await page.locator('#exec-started-by', { hasText: `retry of ${id} from ${failedKey}` }).waitFor();
  const retried = page.url().split('/executions/')[1];
  const again = (await api(KEY_A, 'GET', `/executions/${retried}`)).body;
  assert.deepEqual(again.started_by, { kind: 'retry', origin: id, at: failedKey });
  await shoot(page, 'execution-retry', page.locator('#exec-started-by'));
  // Cancel asks first; declining changes nothing.
  await page.context().close();
});

test('chat widget and inbox: a customer is handed over, an agent with the skill claims, replies live, sends it back to the AI, then transfers it to another agent and to a skill queue', async () => {
  assert.equal((await api(KEY_A, 'POST', '/workflows', CHAT, 'application/yaml')).status, 201);
  // The customer, on a phone, in the chat page of acme's web channel (no key, no sign-in).
  const customer = await newPage(390);
  await customer.goto(new URL('chat/acme/web', BASE).href);
  await customer.getByRole('heading', { name: 'Chat with us' }).waitFor();
  const say = async (text) => {
    await customer.getByLabel('Your message').fill(text);
    await customer.getByRole('button', { name: 'Send' }).click();
    await customer.locator('#log li.from-user', { hasText: text }).waitFor();
  };
  await say('hello there');
  await customer.locator('#log li.from-agent', { hasText: 'AI: you wrote hello there' }).waitFor();
  await say('I want to talk to a human please');
  await customer.locator('#log li.from-system', { hasText: /person/ }).waitFor();
  await axe(customer, 'chat widget');
  const conv = (await api(KEY_A, 'GET', '/conversations?limit=1')).body.items[0];
  const cid = conv.id;
  assert.equal(conv.status, 'pending_human');
  assert.equal(conv.assigned_agent, 'rosa', 'routed to the online agent with the skill');

  // Rosa (a key bound to her) claims it from her inbox and replies.
  const page = await newPage();
  await signIn(page, KEY_AGENT);
  assert.match(await page.locator('#who').innerText(), /rosa/);
  await page.getByRole('link', { name: 'Inbox' }).click();
  const row = page.locator(`tr[data-item="${cid}"]`);
  await row.waitFor();
  await row.getByRole('button', { name: /Claim/ }).click();
  await page.locator(`tr[data-item="${cid}"] .badge`, { hasText: 'active' }).waitFor();
  await axe(page, 'inbox (agent)');
  await shoot(page, 'inbox');
  await row.getByRole('link', { name: /Conversation with chat-/ }).click();
  await page.getByRole('heading', { level: 1, name: /Conversation with chat-/ }).waitFor();
  await page.locator('ol.messages li', { hasText: 'I want to talk to a human please' }).waitFor();
  await page.getByText('Handover context').waitFor();
  await page.getByLabel('Reply to the customer').fill('Hello, I am Rosa. Which order is it?');
  await page.getByRole('button', { name: 'Send reply' }).click();
  // The customer's page shows it live.
  await customer.locator('#log li.from-human', { hasText: 'Hello, I am Rosa' }).waitFor({ timeout: 5000 });
  // The customer answers: Rosa's page shows it live.
  await say('It is order 1042');
  await page.locator('ol.messages li.from-user', { hasText: 'It is order 1042' }).waitFor({ timeout: 5000 });
  await axe(page, 'conversation');
  await shoot(page, 'conversation');
  await page.getByLabel('Note (for the AI, or why it is resolved)').fill('return label sent');
  await page.getByRole('button', { name: 'Back to AI' }).click();
  await page.locator('#conv-status .badge', { hasText: /back to ai|ai processing/ }).waitFor();
  // The next customer message is answered by the workflow again, which sees the note.
  await say('thanks!');
  await customer.locator('#log li.from-agent', { hasText: 'AI: you wrote thanks! (note: return label sent)' }).waitFor({ timeout: 5000 });
  await page.locator('ol.messages li.from-agent', { hasText: 'note: return label sent' }).waitFor({ timeout: 5000 });
  await shoot(customer, 'chat');

  // Handed over again, and Rosa transfers it to Sam (who joins with the skills only now, so
  // that the first routing had one candidate): it leaves her inbox.
  await say('talk to a human again please');
  await customer.locator('#log li.from-system', { hasText: /person/ }).nth(1).waitFor();
  await page.getByRole('button', { name: 'Claim' }).click();
  await page.locator('#conv-status .badge', { hasText: 'human active' }).waitFor();
  const sam = await api(KEY_A, 'PUT', '/hil/agents/sam',
    { name: 'Sam', email: 'sam@shop.example', skills: ['returns', 'billing'], capacity: 3, status: 'online' });
  assert.equal(sam.status, 200, JSON.stringify(sam.body));
  await page.reload();
  const to = page.getByLabel('Transfer to');
  await to.waitFor();
  assert.deepEqual(await to.locator('option').evaluateAll((os) => os.map((o) => o.value)), ['sam']);
  await to.selectOption('sam');
  await page.getByLabel('Reason (optional)').fill('Sam handles boots');
  await axe(page, 'conversation (transfer)');
  await shoot(page, 'conversation-transfer', page.locator('form.transfer'));
  await page.getByRole('button', { name: 'Transfer', exact: true }).click();
  await page.locator('main .live', { hasText: 'Transferred to sam.' }).waitFor();
  await page.locator('main dd', { hasText: /^sam$/ }).waitFor();
  // Rosa holds it no more: the transfer form goes (the page redraws from the live stream).
  await page.getByLabel('Transfer to').waitFor({ state: 'detached', timeout: 5000 });
  const moved = (await api(KEY_A, 'GET', `/conversations/${cid}`)).body;
  assert.equal(moved.assigned_agent, 'sam', JSON.stringify(moved));
  await page.getByRole('link', { name: 'Inbox' }).click();
  await page.getByRole('heading', { level: 2, name: 'Queue' }).waitFor();
  assert.equal(await page.locator(`tr[data-item="${cid}"]`).count(), 0, 'it left her inbox');
  const samInbox = (await api(KEY_A, 'GET', '/hil/agents/sam/inbox')).body;
  assert.ok(JSON.stringify(samInbox).includes(cid), JSON.stringify(samInbox));

  // A supervisor gives it back to Rosa (still claimed: now hers); with the keyboard she sends
  // it to the billing queue: nobody named, it goes to whoever has the skill (Sam; not her).
  const back = await api(KEY_A, 'POST', `/conversations/${cid}/transfer`, { by: 'sam', to: 'rosa' });
  assert.equal(back.status, 200, JSON.stringify(back.body));
  await page.goto(new URL(`conversations/${encodeURIComponent(cid)}`, BASE).href);
  await page.locator('#conv-status .badge', { hasText: 'human active' }).waitFor();
  const toAgent = page.getByRole('radio', { name: 'To an agent' });
  await toAgent.waitFor();
  assert.ok(await toAgent.isChecked(), 'an agent is the default');
  assert.equal(await page.getByLabel('Skills the queue requires').isVisible(), false, 'only the chosen field shows');
  await toAgent.focus();
  await page.keyboard.press('ArrowDown');
  assert.ok(await page.getByRole('radio', { name: 'To a skill queue' }).isChecked());
  const skills = page.getByLabel('Skills the queue requires');
  await skills.waitFor();
  assert.equal(await page.getByLabel('Transfer to').isVisible(), false);
  // Nothing named: refused on the page, with the reason next to the field.
  await skills.focus();
  await page.keyboard.press('Enter');
  await page.locator('#transfer-skills-err', { hasText: 'Name at least one skill' }).waitFor();
  assert.equal(await skills.getAttribute('aria-invalid'), 'true');
  await skills.fill('billing');
  assert.equal(await page.locator('#transfer-skills-err').innerText(), '', 'typing clears the error');
  assert.equal(await skills.getAttribute('aria-invalid'), null);
  await page.getByLabel('Reason (optional)').fill('a billing question');
  await axe(page, 'conversation (transfer to a skill queue)');
  await shoot(page, 'conversation-transfer-queue', page.locator('form.transfer'));
  await page.getByLabel('Reason (optional)').press('Enter');
  await page.locator('main .live', { hasText: 'Sent to the queue for billing: assigned to sam.' }).waitFor();
  // The page announces it once redrawn; waiting still, so that a slow redraw is not a failure.
  await page.getByLabel('Skills the queue requires').waitFor({ state: 'detached', timeout: 5000 });
  const queued = (await api(KEY_A, 'GET', `/conversations/${cid}`)).body;
  assert.equal(queued.assigned_agent, 'sam', JSON.stringify(queued));
  assert.equal(queued.status, 'pending_human', JSON.stringify(queued));
  const log = (await api(KEY_A, 'GET', `/conversations/${cid}/transitions`)).body.items.map((t) => t.reason);
  assert.ok(log.includes('transferred from rosa to the queue for skills [billing]: a billing question'), JSON.stringify(log));
  await customer.context().close();
  await page.context().close();
});

test("a second tenant's key sees none of the first tenant's executions or workflows", async () => {
  const mine = await api(KEY_A, 'GET', '/executions?limit=1');
  const theirs = mine.body.items[0].id;
  const page = await newPage();
  await signIn(page, KEY_B);
  assert.match(await page.locator('#who').innerText(), /globex/);
  await page.getByText('No executions match.').waitFor();
  const r = await page.goto(new URL(`executions/${theirs}`, BASE).href);
  assert.equal(r.status(), 404);
  await page.getByRole('heading', { level: 1, name: 'Not found' }).waitFor();
  assert.match(await page.locator('main').innerText(), /no execution/i);
  await page.goto(new URL('workflows', BASE).href);
  await page.getByText('No workflows yet').waitFor();
  await page.goto(new URL('inbox', BASE).href);
  await page.getByText('Nothing is waiting for a person.').waitFor();
  await page.getByText('Not yet assigned, by priority then age: nothing.').waitFor();
  const conv = (await api(KEY_A, 'GET', '/conversations?limit=1')).body.items[0];
  await page.goto(new URL(`conversations/${conv.id}`, BASE).href);
  await page.getByRole('heading', { level: 1, name: 'Not found' }).waitFor();
  await page.context().close();
});

test('cookie tossing: a session planted by a page on another port of the host is not read; the import lands in the signed-in tenant', async () => {
  // The attacker signs in with its own key (globex) and takes its session id.
  const res = await fetch(new URL('session', BASE), {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: KEY_B }),
  });
  assert.equal(res.status, 200);
  const planted = res.headers.get('set-cookie').split(';')[0].split('=').slice(1).join('=');
  // Its page, on another port of the same host, plants that session for the console's paths
  // (cookies do not tell ports apart): more specific paths are sent first, and hilo read the
  // first `hilo_session` it was given.
  const evil = createServer((req, out) => {
    out.setHeader('content-type', 'text/html');
    out.end(`<!doctype html><html lang="en"><title>a shop</title><body><script>
      document.cookie = 'hilo_session=${planted}; path=/api';
      document.cookie = 'hilo_session=${planted}; path=/';
      document.cookie = '__Host-hilo_session=${planted}; path=/api; Secure';
      document.title = 'planted';
    </script></body></html>`);
  });
  await new Promise((ok) => evil.listen(0, '127.0.0.1', ok));
  try {
    const page = await newPage();
    await signIn(page, KEY_A);
    await page.goto(`http://127.0.0.1:${evil.address().port}/`);
    await page.waitForFunction(() => document.title === 'planted');
    await page.goto(new URL('workflows', BASE).href);
    await page.getByRole('heading', { level: 1, name: 'Workflows' }).waitFor();
    assert.match(await page.locator('#who').innerText(), /acme/);
    const TOSSED = 'name: tossed\nversion: 1\nnodes:\n  - {id: done, type: finish, output: {ok: true}}\nedges: []\n';
    await page.getByLabel('Definition (YAML or JSON)').fill(TOSSED);
    await page.getByRole('button', { name: 'Import' }).click();
    await page.locator('.import-result .ok').waitFor();
    await shoot(page, 'cookie-tossing', page.locator('.import-result'));
    assert.equal((await api(KEY_A, 'GET', '/workflows/tossed')).status, 200, 'in the victim\'s tenant');
    assert.equal((await api(KEY_B, 'GET', '/workflows/tossed')).status, 404, 'not in the attacker\'s');
    const jar = (await page.context().cookies()).map((c) => `${c.name} ${c.path}`).sort();
    // The browser took the plain cookies and refused the `__Host-` one with a path.
    assert.deepEqual(jar, ['__Host-hilo_session /', 'hilo_session /', 'hilo_session /api'], JSON.stringify(jar));
    await page.context().close();
  } finally {
    evil.close();
  }
});

test('triggers: a schedule is listed with its next fires, and an execution it started says so', async () => {
  const SCHEDULED = [
    'name: nightly_report', 'version: 1',
    'triggers:',
    '  - {type: schedule, id: nightly, cron: "0 2 * * *", timezone: Europe/Madrid}',
    '  - {type: webhook, path: reports/requested, secret: report_hook_secret}',
    'nodes:', '  - {id: done, type: finish, output: {ok: true}}', '',
  ].join('\n');
  assert.equal((await api(KEY_A, 'POST', '/workflows', SCHEDULED, 'application/yaml')).status, 201);
  const listed = await api(KEY_A, 'GET', '/triggers');
  assert.equal(listed.status, 200);
  const nightly = listed.body.triggers.find((t) => t.name === 'nightly_report/nightly');
  assert.ok(nightly, JSON.stringify(listed.body));
  assert.equal(nightly.next.length, 3);
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.goto(new URL('triggers', BASE).href);
  const row = page.locator('tr[data-trigger="nightly_report/nightly"]');
  await row.waitFor();
  assert.match(await row.innerText(), /0 2 \* \* \*/);
  assert.match(await row.innerText(), /Europe\/Madrid/);
  const hook = page.locator('tr[data-trigger="nightly_report/webhook-2"]');
  assert.match(await hook.innerText(), /\/hooks\/acme\/reports\/requested|\/hooks\/.*\/reports\/requested/);
  await axe(page, 'triggers');
  await shoot(page, 'triggers');
  // An execution started through the API says what started it.
  const run = await api(KEY_A, 'POST', '/workflows/nightly_report/execute', {});
  assert.equal(run.status, 200, JSON.stringify(run.body));
  const id = run.body.id;
  const view = await api(KEY_A, 'GET', `/executions/${id}`);
  assert.deepEqual(view.body.started_by, { kind: 'api' });
  await page.goto(new URL(`executions/${id}`, BASE).href);
  await page.locator('#exec-started-by', { hasText: 'api' }).waitFor();
  await page.close();
});

test('connections: a configured connection is listed and gives a URL to grant it, for one end user', async () => {
  const listed = await api(KEY_A, 'GET', '/connections');
  assert.equal(listed.status, 200);
  assert.equal(listed.body.connections[0].name, 'shop');
  assert.deepEqual(listed.body.granted, []);
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.goto(new URL('connections', BASE).href);
  const row = page.locator('tr[data-connection="shop"]');
  await row.waitFor();
  assert.match(await row.innerText(), /a person grants it/);
  assert.match(await row.innerText(), /orders:read offline_access/);
  await row.locator('input[name="entity"]').fill('cust_42');
  await row.locator('button', { hasText: 'Connect' }).click();
  const link = page.locator('a.connect-link');
  await link.waitFor();
  const href = new URL(await link.getAttribute('href'));
  assert.equal(href.origin + href.pathname, 'https://accounts.shop.example/authorize');
  assert.equal(href.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(href.searchParams.get('redirect_uri'), new URL('/oauth/callback', BASE).href);
  assert.ok(href.searchParams.get('state'));
  assert.match(await page.locator('.connect-out').innerText(), /for cust_42/);
  await axe(page, 'connections');
  await shoot(page, 'connections');
  // The callback with a state nobody made: a page that says so, not a token or a stack.
  const bad = await fetch(new URL('/oauth/callback?state=nope&code=x', BASE));
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /Not connected/);
  await page.close();
});

test('versions: a workflow page shows what changed from the previous version', async () => {
  const v2 = LIVE.replace('version: 1', 'version: 2').replace('duration_ms: 2500', 'duration_ms: 1500');
  assert.equal((await api(KEY_A, 'POST', '/workflows', v2, 'application/yaml')).status, 201);
  const page = await newPage();
  await signIn(page, KEY_A);
  await page.goto(new URL('workflows/live_demo', BASE).href);
  await page.getByRole('heading', { name: 'Changes to version 2' }).waitFor();
  await page.locator('ol.diff li.del', { hasText: 'duration_ms: 2500' }).waitFor();
  await page.locator('ol.diff li.add', { hasText: 'duration_ms: 1500' }).waitFor();
  await page.locator('ol.diff li.add', { hasText: 'version: 2' }).waitFor();
  assert.match(await page.locator('#diff-h + .field + div p').innerText(), /2 lines differ|4 lines differ/);
  await axe(page, 'workflow (diff)');
  await page.locator('#diff-h').scrollIntoViewIfNeeded();
  await shoot(page, 'workflow-diff');
  await page.context().close();
});

/**
 * An OpenAI-compatible model on LLM_PORT (the port ./run wrote into hilo.toml for the profile
 * `writer`) that answers each chat completion with the next text of `replies`, and records the
 * requests. Closed by the caller.
 */
function scriptedModel(replies) {
  const requests = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const asked = JSON.parse(body || '{}');
      requests.push({ path: req.url, auth: req.headers.authorization, body: asked });
      const text = replies.shift();
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions' || text === undefined) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `no scripted reply for ${req.method} ${req.url}` } }));
        return;
      }
      const usage = { prompt_tokens: 900, completion_tokens: 120, total_tokens: 1020 };
      if (asked.stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = (choices, extra = {}) => `data: ${JSON.stringify({ id: `chatcmpl-${requests.length}`, object: 'chat.completion.chunk', created: 0, model: asked.model, choices, ...extra })}\n\n`;
        res.write(chunk([{ index: 0, delta: { role: 'assistant', content: text }, finish_reason: null }]));
        res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
        res.write(chunk([], { usage }));
        res.end('data: [DONE]\n\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        id: `chatcmpl-${requests.length}`, object: 'chat.completion', created: 0, model: asked.model,
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
        usage,
      }));
    });
  });
  return new Promise((ok, fail) => {
    server.on('error', fail);
    server.listen(Number(process.env.LLM_PORT), '127.0.0.1', () => ok({ server, requests }));
  });
}

test('a workflow written by a planner: the child shows its definition, who wrote it and the tools granted', async () => {
  // The planner grants `transform_json` only; the model's first draft ends its edge at a node
  // that does not exist, the validator says so, the second draft is run as the child.
  const PLANNER = [
    'name: written_demo', 'version: 1',
    'description: A planner writes a workflow that sums the order lines, and runs it',
    'nodes:',
    '  - id: plan', '    type: agent', '    agent: planner', '    with:',
    '      profile: writer', '      goal: "Sum the order lines 3, 4 and 5"',
    '      emit: workflow', '      max_repairs: 2', '      tools: [transform_json]',
    '  - {id: done, type: finish, output: "${ plan.output }"}',
    'edges:', '  - {from: plan, to: done}', '',
  ].join('\n');
  const draft = (last) => JSON.stringify({
    name: 'order_total', version: 1,
    nodes: [
      { id: 'sum', type: 'tool', tool: 'transform_json', with: { data: { lines: [3, 4, 5] }, expression: 'sum(lines)' } },
      { id: 'done', type: 'finish', output: { total: '${ sum.output.result }' } },
    ],
    edges: [{ from: 'sum', to: last }],
  });
  const model = await scriptedModel([draft('finish'), draft('done')]);
  try {
    assert.equal((await api(KEY_A, 'POST', '/workflows', PLANNER, 'application/yaml')).status, 201);
    const run = await api(KEY_A, 'POST', '/workflows/written_demo/execute', {});
    assert.equal(run.status, 200, JSON.stringify(run.body));
    const parent = run.body.id;
    const done = await waitStatus(KEY_A, parent, ['succeeded', 'failed']);
    assert.equal(done.status, 'succeeded', JSON.stringify(done));
    assert.deepEqual(done.output, { total: 12 });
    assert.equal(model.requests.length, 2);
    assert.equal(model.requests[0].auth, 'Bearer sk-browser-tests');
    assert.match(JSON.stringify(model.requests[1].body), /UNKNOWN_NODE/);
    const child = `${parent}.plan`;

    const page = await newPage();
    await signIn(page, KEY_A);
    // The parent's planner row links to the child it wrote.
    await page.goto(new URL(`executions/${parent}`, BASE).href);
    const row = page.locator('table.timeline tr[data-key="plan"]');
    await row.waitFor();
    await row.getByRole('button', { name: 'plan' }).click();
    const wrote = page.locator('.node-panel .written-child');
    await wrote.waitFor();
    assert.match(await wrote.innerText(), new RegExp(`Wrote a workflow, run as child execution ${child.replace('.', '\\.')}`));
    await wrote.getByRole('link').click();
    await page.waitForURL(new RegExp(`executions/${encodeURIComponent(child).replace('.', '\\.')}$`));
    // The child: written (not a stored version), by whom, under which tools, its definition
    // and its graph.
    await page.locator('#exec-status .badge', { hasText: 'succeeded' }).waitFor();
    await page.locator('#exec-generated-by', { hasText: `generated by ${parent} / plan` }).waitFor();
    assert.equal(await page.locator('#exec-generated-by a').getAttribute('href'), `executions/${encodeURIComponent(parent)}`);
    assert.equal((await page.locator('#exec-grant').innerText()).trim(), 'transform_json');
    await page.getByText('order_total v1 (written, not stored)').waitFor();
    const heading = page.getByRole('heading', { name: 'Definition (written by a planner)' });
    await heading.waitFor();
    const definition = await page.locator('section[aria-labelledby="def-h"]').innerText();
    assert.match(definition, /"expression": "sum\(lines\)"/);
    assert.match(definition, /"to": "done"/);
    await page.locator('svg.graph g[data-node="sum"][data-status="succeeded"]').waitFor();
    await page.locator('svg.graph g[data-node="done"][data-status="succeeded"]').waitFor();
    await axe(page, 'execution (written workflow)');
    await shoot(page, 'execution-written', page.locator('#exec-generated-by'));
    await shoot(page, 'execution-written-definition', heading);
    await page.context().close();
  } finally {
    model.server.close();
  }
});

test("unknown pages are the console's own not found; keyboard shortcuts find and go", async () => {
  const page = await newPage();
  // Signed out, the sections are not offered.
  await page.goto(new URL('sign-in', BASE).href);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.equal(await page.getByRole('navigation', { name: 'Main' }).isVisible(), false);
  await signIn(page, KEY_A);
  assert.equal(await page.getByRole('navigation', { name: 'Main' }).isVisible(), true);
  const r = await page.goto(new URL('no/such/page', BASE).href);
  assert.equal(r.status(), 404);
  await page.getByRole('heading', { level: 1, name: 'Not found' }).waitFor();
  await axe(page, 'not found');
  await shoot(page, 'not-found');
  // `/costs/` is the costs page.
  await page.goto(new URL('costs/', BASE).href);
  await page.getByRole('heading', { level: 1, name: 'Costs' }).waitFor();
  assert.ok(new URL(page.url()).pathname.endsWith('/costs'));
  // `g w` goes to the workflows, `/` to the executions' search, `?` lists the shortcuts.
  await page.locator('main h1').click();
  await page.keyboard.press('g');
  await page.keyboard.press('w');
  await page.getByRole('heading', { level: 1, name: 'Workflows' }).waitFor();
  await page.keyboard.press('/');
  await page.getByRole('heading', { level: 1, name: 'Executions' }).waitFor();
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'f-id');
  await page.locator('main h1').click();
  await page.keyboard.press('?');
  await page.getByRole('dialog', { name: 'Keyboard shortcuts' }).waitFor();
  await page.getByRole('dialog').getByRole('button', { name: 'Close' }).click();
  await page.context().close();
});

test('measures: first load of the executions page, and an execution of 500 nodes', async () => {
  // Bytes over the wire (compressed, with headers) for a first load with an empty cache.
  const page = await newPage();
  await signIn(page, KEY_A);
  const fresh = await page.context().newPage();
  const cdp = await page.context().newCDPSession(fresh);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  let bytes = 0;
  let requests = 0;
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; requests += 1; });
  await fresh.goto(new URL('executions', BASE).href, { waitUntil: 'networkidle' });
  await fresh.locator('table.list tbody tr').first().waitFor();
  console.log(`executions page, first load: ${bytes} bytes transferred in ${requests} requests`);
  assert.ok(bytes <= 300 * 1024, `${bytes} bytes > 300 KB`);

  const imported = await api(KEY_A, 'POST', '/workflows', chain(500), 'application/yaml');
  assert.equal(imported.status, 201, JSON.stringify(imported.body));
  const started = await api(KEY_A, 'POST', '/executions', { workflow: 'big_chain', input: {} });
  const id = started.body.execution_id;
  await waitStatus(KEY_A, id, ['succeeded']);
  const t0 = Date.now();
  await fresh.goto(new URL(`executions/${id}`, BASE).href);
  await fresh.waitForFunction(() => document.body.dataset.rendered !== undefined, null, { timeout: 20000 });
  const wall = Date.now() - t0;
  const rendered = Number(await fresh.evaluate(() => document.body.dataset.rendered));
  assert.equal(await fresh.locator('svg.graph g.node').count(), 500);
  assert.equal(await fresh.locator('table.timeline tbody tr').count(), 500);
  console.log(`execution of 500 nodes: graph and timeline rendered in ${rendered} ms after the view started (fetches included); ${wall} ms from navigation`);
  console.log(`execution of 500 nodes: ${rendered <= 1000 ? 'within' : 'OVER'} its 1 s budget`);
  assert.ok(rendered <= 1000 * LOADED, `${rendered} ms > ${LOADED} s (budget 1 s)`);
  await page.context().close();
});

test('no console errors on any page', () => {
  assert.deepEqual(problems, []);
});
