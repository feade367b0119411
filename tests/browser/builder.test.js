// End-to-end tests of the console's visual builder in headless Chromium (see ./run, which
// starts the server and sets HILO_URL, HILO_KEY_A, SHOTS, PROFILE_DIR and HILO_BIN).
// The pages run under the console's Content-Security-Policy (no bypass): axe-core is injected
// through the DevTools protocol instead of a <script> element.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync, rmSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const BASE = process.env.HILO_URL;
const KEY_A = process.env.HILO_KEY_A;
const SHOTS = process.env.SHOTS;
const HILO_BIN = process.env.HILO_BIN;
// Timed budgets (docs/console.md) are judged from the printed figures on a quiet machine; the
// tests fail at LOADED times a budget, which a regression reaches and a busy CI machine (2-3x
// slower in its slow state) does not.
const LOADED = 3;
const PROFILE = (process.env.PROFILE_DIR || '/tmp/hilo-console-chromium') + '-builder';
assert.ok(BASE && KEY_A && SHOTS && HILO_BIN, 'run through tests/browser/run');
const EXAMPLES = new URL('../../examples/', import.meta.url);

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function api(method, path, body, type = 'application/json') {
  const res = await fetch(new URL('api/v1' + path, BASE), {
    method,
    headers: { authorization: `Bearer ${KEY_A}`, ...(body !== undefined ? { 'content-type': type } : {}) },
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
  const text = await res.text();
  const json = (res.headers.get('content-type') || '').includes('json');
  return { status: res.status, body: json && text ? JSON.parse(text) : text };
}

/** A line diff's hunks between two texts: runs of changed lines (3 lines of context join them). */
function hunksOf(a, b) {
  const A = a.split('\n');
  const B = b.split('\n');
  const n = A.length;
  const m = B.length;
  const dp = Array.from({ length: n + 1 }, () => new Int32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) for (let j = m - 1; j >= 0; j -= 1) dp[i][j] = A[i] === B[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const ops = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && A[i] === B[j]) { ops.push(' '); i += 1; j += 1; }
    else if (j < m && (i >= n || dp[i][j + 1] > dp[i + 1][j])) { ops.push('+' + B[j]); j += 1; }
    else { ops.push('-' + A[i]); i += 1; }
  }
  const hunks = [];
  let last = -Infinity;
  ops.forEach((o, k) => {
    if (o === ' ') return;
    if (k - last > 7) hunks.push([]);
    hunks[hunks.length - 1].push(o);
    last = k;
  });
  return hunks;
}

function chain(n) {
  const nodes = [];
  const edges = [];
  for (let i = 0; i < n - 1; i++) nodes.push(`  - {id: s${i}, type: set, vars: {i${i}: ${i}}}`);
  nodes.push(`  - {id: s${n - 1}, type: finish, output: {n: ${n}}}`);
  for (let i = 1; i < n; i++) edges.push(`  - {from: s${i - 1}, to: s${i}}`);
  return `name: builder_big\nversion: 1\ndescription: ${n} nodes in a row\nnodes:\n${nodes.join('\n')}\nedges:\n${edges.join('\n')}\n`;
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

let browser;
const problems = [];
const axeReport = [];
const builderLoads = [];

async function newPage(width = 1280, colorScheme = 'light') {
  const context = await browser.newContext({ viewport: { width, height: width > 600 ? 900 : 844 }, acceptDownloads: true, colorScheme });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    // Chromium logs every 4xx the page reads: a workflow without a stored layout yet is a 404.
    if (/Failed to load resource: the server responded with a status of (401|404)/.test(m.text())) return;
    problems.push(`${page.url()}: [${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${page.url()}: ${e.message}`));
  page.on('request', (r) => { if (/assets\/builder\.(js|css)$/.test(r.url())) builderLoads.push(page.url()); });
  return page;
}

async function signIn(page) {
  await page.goto(new URL('executions', BASE).href);
  await page.waitForURL(/sign-in/);
  await page.getByLabel('API key').fill(KEY_A);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Executions' }).waitFor();
}

async function axe(page, name) {
  // through the DevTools protocol: the page's CSP allows no inline <script>
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help, target: v.nodes[0]?.target }));
  });
  axeReport.push({ page: name, violations: result });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `axe-core on ${name}: ${JSON.stringify(bad, null, 1)}`);
}

async function noOverflow(page, name) {
  const over = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(over <= 0, `${name}: the page scrolls sideways by ${over} px`);
}

/** Screenshots at both widths; at 390 px the page must not scroll sideways. */
async function shoot(page, name) {
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width > 600 ? 900 : 844 });
    await page.waitForTimeout(150);
    if (width === 390) await noOverflow(page, name);
    await page.screenshot({ path: `${SHOTS}/builder-${name}-${width}.png`, fullPage: false });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.waitForTimeout(100);
}

async function editorText(page) {
  await page.waitForFunction(() => window.__hbEditor);
  return page.evaluate(() => window.__hbEditor.view.state.doc.toString());
}
const canvasNode = (page, key) => page.locator(`.react-flow__node[data-id="${key}"]`);

async function waitValid(page) {
  await page.locator('.hb-status .ok', { hasText: 'valid' }).waitFor({ timeout: 10000 });
}

/** Adds a node from the palette (into the selected loop when one is selected). */
async function add(page, type) {
  await page.getByRole('button', { name: new RegExp(`^Add an? ${type} node`) }).click();
}

async function select(page, key) {
  await canvasNode(page, key).click();
  await page.locator('.hb-form h2 code', { hasText: key }).waitFor();
}

/** Selects an edge with the keyboard (edges are focusable; Enter selects). */
async function selectEdge(page, id) {
  // Right after a layout the canvas may redraw its edges (a new element loses the focus), so
  // focus and Enter again if the edge's form did not open.
  // Nothing selected first, so that the form that opens is this edge's.
  await page.locator('.react-flow__pane').click({ position: { x: 5, y: 5 } });
  await page.locator('#hb-edge-title').waitFor({ state: 'detached' });
  for (let attempt = 1; ; attempt++) {
    await page.locator(`.react-flow__edge[data-id="${id}"]`).focus();
    await page.keyboard.press('Enter');
    try {
      await page.locator('#hb-edge-title').waitFor({ timeout: 3000 });
      break;
    } catch (e) {
      if (attempt === 3) throw e;
    }
  }
}

async function field(page, label, value) {
  const f = page.locator('.hb-panel').getByLabel(new RegExp(`^${label}( \\*)?$`));
  await f.fill(value);
  await f.blur();
}

async function connectWith(page, from, to) {
  await select(page, from);
  await page.locator('.hb-panel').getByLabel('Connect to').selectOption(to);
  await page.locator('.hb-panel').getByRole('button', { name: 'Add edge' }).click();
}

before(async () => {
  rmSync(PROFILE, { recursive: true, force: true });
  mkdirSync(PROFILE, { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ARGS,
    env: { ...process.env, HOME: PROFILE, XDG_CONFIG_HOME: `${PROFILE}/config`, XDG_CACHE_HOME: `${PROFILE}/cache` },
    headless: true,
  });
});

after(async () => {
  if (browser) await browser.close();
  console.log('axe-core violations (any impact):', JSON.stringify(axeReport.filter((r) => r.violations.length)));
});

test('builder: a workflow built from nothing on the canvas validates with hilo validate and round-trips byte for byte', async () => {
  const page = await newPage();
  await signIn(page);
  assert.deepEqual(builderLoads, [], 'the builder is not loaded by the other pages');
  await page.goto(new URL('workflows/new', BASE).href);
  await page.getByRole('heading', { level: 1, name: 'New workflow' }).waitFor();
  assert.ok(builderLoads.length > 0, 'the builder loads when it opens');
  await field(page, 'name', 'builder_built');
  await field(page, 'description', 'Built on the canvas');

  // a tool, by the palette's button
  await add(page, 'tool');
  await canvasNode(page, 'tool_1').waitFor();
  // a tool the catalog does not have: the validator's diagnostic shows on the node and beside the field
  await field(page, 'tool', 'no_such_tool');
  await page.locator('.react-flow__node[data-id="tool_1"] .has-problems').waitFor({ timeout: 10000 });
  await page.locator('.hb-panel .field-error', { hasText: /no_such_tool/ }).waitFor();
  await page.locator('.cm-lint-marker-error').first().waitFor();
  await field(page, 'tool', 'transform_json');
  await field(page, 'with', 'data: {amount: 40}\nexpression: amount');
  // a switch, dragged from the palette onto the canvas
  const canvas = await page.locator('.hb-canvas').boundingBox();
  await page.locator('.hb-palette').getByRole('button', { name: 'Add a switch node' }).dragTo(page.locator('.hb-canvas .react-flow__pane'), {
    targetPosition: { x: canvas.width / 2 + 120, y: canvas.height - 160 },
  });
  await canvasNode(page, 'switch_1').waitFor();
  // connected by dragging from the tool's handle to the switch
  await page.locator('.react-flow__node[data-id="tool_1"] .react-flow__handle.source').dragTo(page.locator('.react-flow__node[data-id="switch_1"] .react-flow__handle.target'));
  await page.locator('.react-flow__edge[data-id^="e:"]').first().waitFor();
  assert.match(await editorText(page), /- \{from: tool_1, to: switch_1\}/);
  // a loop (it comes with a finish in its body); a set node added inside its body
  await page.locator('.react-flow__pane').click({ position: { x: 5, y: 5 } });
  await add(page, 'loop');
  await canvasNode(page, 'loop_1').waitFor();
  await field(page, 'for_each', '${ [`1`, `2`] }');
  await add(page, 'set');
  await canvasNode(page, 'loop_1/set_1').waitFor();
  await field(page, 'vars', 'seen: "${ item }"');
  await connectWith(page, 'loop_1/set_1', 'done');
  // a human, a finish and a fail; then the edges
  await page.locator('.react-flow__pane').click({ position: { x: 5, y: 5 } });
  await add(page, 'human');
  await add(page, 'finish');
  await field(page, 'output', 'amount: "${ tool_1.output }"\napproved: "${ human_1.output.approve }"');
  await page.locator('.react-flow__pane').click({ position: { x: 5, y: 5 } });
  await add(page, 'fail');
  await connectWith(page, 'switch_1', 'loop_1');
  await connectWith(page, 'switch_1', 'human_1');
  await connectWith(page, 'loop_1', 'finish_1');
  await connectWith(page, 'human_1', 'finish_1');
  // the switch's first case gets a condition; the second becomes the default
  await page.getByRole('button', { name: 'Lay out' }).click();
  await selectEdge(page, 'c:switch_1:0');
  await field(page, 'when', 'tool_1.output > `100`');
  await selectEdge(page, 'c:switch_1:1');
  await page.getByRole('button', { name: 'Make it the default' }).click();
  // a node deleted from its form
  await select(page, 'fail_1');
  await page.getByRole('button', { name: 'Delete node' }).click();
  await canvasNode(page, 'fail_1').waitFor({ state: 'detached' });
  await waitValid(page);
  await axe(page, 'builder (built from nothing)');
  await shoot(page, 'new');

  const built = await editorText(page);
  await page.getByRole('button', { name: 'Save…' }).click();
  const dialog = page.getByRole('dialog', { name: /Save builder_built version 1/ });
  await dialog.waitFor();
  await axe(page, 'builder (save dialog)');
  await dialog.getByRole('button', { name: 'Save version 1' }).click();
  await page.locator('.hb-status', { hasText: 'Saved builder_built version 1' }).waitFor();
  await page.waitForURL(/workflows\/builder_built\/edit$/);
  const exported = await api('GET', '/workflows/builder_built/export?version=1');
  assert.equal(exported.status, 200);
  assert.equal(exported.body, built, 'the stored text is the editor\'s');
  const lay = await api('GET', '/workflows/builder_built/layout');
  assert.equal(lay.status, 200);
  assert.ok(lay.body.layout.nodes['loop_1/set_1'], 'the layout has the body node\'s position');
  assert.ok(!/\bx:|position/.test(exported.body), 'no position in the workflow');
  const dir = mkdtempSync(join(tmpdir(), 'hilo-builder-'));
  writeFileSync(join(dir, 'built.yaml'), exported.body);
  const out = execFileSync(HILO_BIN, ['validate', join(dir, 'built.yaml')], { encoding: 'utf8', env: { ...process.env, HILO_COLOR: 'never' } });
  console.log('hilo validate:', out.trim());
  for (const t of ['tool', 'switch', 'loop', 'human', 'finish']) assert.match(exported.body, new RegExp(`type: ${t}\\b`));

  // opened again and exported with nothing edited: the same bytes
  await page.goto(new URL('workflows/builder_built/edit', BASE).href);
  await canvasNode(page, 'loop_1/set_1').waitFor();
  assert.equal(await editorText(page), exported.body);
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export YAML' }).click()]);
  assert.equal(readFileSync(await download.path(), 'utf8'), exported.body, 'exported byte for byte');
  assert.equal(download.suggestedFilename(), 'builder_built.yaml');
  const [dl2] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export layout' }).click()]);
  const layoutJson = JSON.parse(readFileSync(await dl2.path(), 'utf8'));
  assert.deepEqual(Object.keys(layoutJson.layout.nodes).sort(), Object.keys(lay.body.layout.nodes).sort());
  await page.getByRole('button', { name: 'Save…' }).click();
  await page.locator('.hb-status', { hasText: 'Nothing to save' }).waitFor();
  const versions = await api('GET', '/workflows/builder_built/versions');
  assert.equal(versions.body.items.length, 1, 'saving with nothing edited stores nothing');
  // a workflow's first version is its active one
  await page.getByRole('button', { name: 'Version 1 active' }).waitFor();
  rmSync(dir, { recursive: true, force: true });
  await page.context().close();
});

test('builder: one node of a commented example edited on the canvas is a one-hunk diff; undo restores the text exactly; the YAML view edits the canvas', async () => {
  const original = readFileSync(new URL('refund_approval.yaml', EXAMPLES), 'utf8').replace('name: refund_approval', 'name: builder_refund');
  assert.match(original, /^# /m, 'the example has comments');
  const imported = await api('POST', '/workflows?activate=always', original, 'application/yaml');
  assert.ok([200, 201].includes(imported.status), JSON.stringify(imported.body));
  const page = await newPage();
  await signIn(page);
  await page.goto(new URL('workflows/builder_refund/edit', BASE).href);
  await canvasNode(page, 'review').waitFor();
  assert.equal(await editorText(page), original, 'opened byte for byte');
  await waitValid(page);

  await select(page, 'review');
  await field(page, 'prompt', 'Refund {{ input.amount }} {{ vars.currency }}? Check the photos first.');
  await page.waitForFunction(() => window.__hbEditor.view.state.doc.toString().includes('Check the photos'));
  const edited = await editorText(page);
  const hs = hunksOf(original, edited);
  assert.equal(hs.length, 1, `one hunk: ${JSON.stringify(hs)}`);
  assert.deepEqual(hs[0], [
    `-    prompt: "Refund {{ input.amount }} {{ vars.currency }} ({{ input.reason | default('no reason given') }})?"`,
    '+    prompt: "Refund {{ input.amount }} {{ vars.currency }}? Check the photos first."',
  ]);
  assert.match(await canvasNode(page, 'review').innerText(), /\? Check the ph/);
  await axe(page, 'builder (a node selected)');
  await shoot(page, 'edit');

  // undo (the button, then Ctrl+Z for the redo's undo) gives back the original bytes
  await page.getByRole('button', { name: 'Undo' }).click();
  await page.waitForFunction((t) => window.__hbEditor.view.state.doc.toString() === t, original);
  await page.getByRole('button', { name: 'Redo' }).click();
  await page.waitForFunction((t) => window.__hbEditor.view.state.doc.toString() === t, edited);
  await page.locator('.react-flow__pane').click({ position: { x: 5, y: 5 } });
  await page.keyboard.press('Control+z');
  await page.waitForFunction((t) => window.__hbEditor.view.state.doc.toString() === t, original);
  await page.keyboard.press('Control+Shift+z');
  await page.waitForFunction((t) => window.__hbEditor.view.state.doc.toString() === t, edited);

  // saving: the diff shown is the prompt and the version line; the stored text is exactly that
  await page.getByRole('button', { name: 'Save…' }).click();
  const dialog = page.getByRole('dialog', { name: /Save builder_refund version 2/ });
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /2 hunks/);
  await shoot(page, 'save');
  await dialog.getByRole('button', { name: 'Save version 2' }).click();
  await page.locator('.hb-status', { hasText: 'Saved builder_refund version 2' }).waitFor();
  const v2 = (await api('GET', '/workflows/builder_refund/export?version=2')).body;
  assert.deepEqual(hunksOf(original, v2).flat().filter((l) => /^[-+]/.test(l)).map((l) => l.slice(0, 12)), ['-version: 1', '+version: 2', '-    prompt:', '+    prompt:']);
  const wf = await api('GET', '/workflows/builder_refund');
  assert.equal(wf.body.version, 1, 'saving does not activate');
  // activating is its own step
  await page.getByRole('button', { name: 'Activate' }).click();
  await page.getByRole('button', { name: 'Version 2 active' }).waitFor();
  assert.equal((await api('GET', '/workflows/builder_refund')).body.version, 2);

  // the YAML view: a typed edit that parses redraws the canvas; a node's problem shows on it
  await page.locator('.cm-content').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type('  - {from: approved, to: expired}\n');
  await page.locator('.react-flow__edge[data-id="e:5"]').waitFor();
  await page.locator('.react-flow__node[data-id="approved"] .has-problems, .react-flow__edge[data-id="e:5"].has-problems').first().waitFor({ timeout: 10000 });
  await page.locator('.cm-lint-marker-error').first().waitFor();
  await axe(page, 'builder (diagnostics)');
  await shoot(page, 'diagnostics');
  await page.keyboard.press('Control+z');
  await page.waitForFunction((t) => window.__hbEditor.view.state.doc.toString() === t, v2);
  await page.context().close();
});

test('builder: 390 px wide (and dark), the panels stack and the page does not scroll sideways', async () => {
  const page = await newPage(390, 'dark');
  await signIn(page);
  await page.goto(new URL('workflows/builder_refund/edit', BASE).href);
  await canvasNode(page, 'review').waitFor();
  await waitValid(page);
  await noOverflow(page, 'builder at 390 px');
  const [c, p, y] = await Promise.all(['.hb-canvas', '.hb-panel', '.hb-yaml'].map((s) => page.locator(s).boundingBox()));
  assert.ok(c.y < p.y && p.y < y.y && c.width <= 390 && p.width <= 390 && y.width <= 390, 'canvas, properties and YAML one under the other');
  await axe(page, 'builder (390 px, dark)');
  await page.screenshot({ path: `${SHOTS}/builder-dark-390.png` });
  await page.context().close();
});

test('measures: the builder opens a workflow of 500 nodes, and a drag of a node there', async () => {
  const r = await api('POST', '/workflows?activate=always', chain(500), 'application/yaml');
  assert.ok([200, 201].includes(r.status), JSON.stringify(r.body));
  const page = await newPage();
  await signIn(page);
  const opens = [];
  for (let i = 0; i < 5; i += 1) {
    await page.goto(new URL('workflows/builder_big/edit', BASE).href);
    await page.waitForFunction(() => window.__hbRendered, null, { timeout: 10000 });
    const m = await page.evaluate(() => window.__hbRendered);
    assert.ok(m.nodes > 0);
    opens.push(m.at);
    console.log('  open:', JSON.stringify(m));
  }
  const open = median(opens);
  console.log(`builder, 500 nodes: opened (navigation to nodes drawn) in ${opens.map((x) => x.toFixed(0)).join(', ')} ms; median ${open.toFixed(0)} ms`);
  console.log(`builder, 500 nodes: open ${open <= 1000 ? 'within' : 'OVER'} its 1 s budget`);
  assert.ok(open <= 1000 * LOADED, `the builder opens 500 nodes in ${open} ms (budget 1 s; the test fails at ${LOADED} s)`);

  // a drag of a node: the main thread's work per frame, from the first pointer event of the
  // frame to the end of its rendering (a task posted from requestAnimationFrame)
  const node = canvasNode(page, 's3');
  await node.waitFor();
  const box = await node.boundingBox();
  await page.evaluate(() => {
    window.__frames = [];
    window.__gaps = [];
    window.__evt = null;
    window.__measuring = true;
    addEventListener('pointermove', () => { if (window.__evt === null) window.__evt = performance.now(); }, true);
    let last = null;
    const loop = (t) => {
      if (last !== null) window.__gaps.push(t - last);
      last = t;
      const e = window.__evt;
      window.__evt = null;
      if (e !== null) {
        const ch = new MessageChannel();
        ch.port1.onmessage = () => window.__frames.push(performance.now() - e);
        ch.port2.postMessage(0);
      }
      if (window.__measuring) requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  });
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 + 300, box.y + box.height / 2 + 200, { steps: 60 });
  await page.mouse.up();
  await page.waitForTimeout(200);
  const { frames, gaps } = await page.evaluate(() => { window.__measuring = false; return { frames: window.__frames, gaps: window.__gaps }; });
  assert.ok(frames.length >= 20, `frames measured: ${frames.length}`);
  const after = await node.boundingBox();
  assert.ok(after.x > box.x + 200, 'the node moved');
  console.log(`builder, 500 nodes: drag of a node, ${frames.length} frames: work per frame median ${median(frames).toFixed(1)} ms, p95 ${pct(frames, 0.95).toFixed(1)} ms, max ${Math.max(...frames).toFixed(1)} ms; frame interval median ${median(gaps).toFixed(1)} ms`);
  console.log(`builder, 500 nodes: drag p95 ${pct(frames, 0.95) <= 16 ? 'within' : 'OVER'} its 16 ms budget`);
  assert.ok(pct(frames, 0.95) <= 16 * LOADED, `95 % of the drag's frames within ${16 * LOADED} ms (p95 ${pct(frames, 0.95).toFixed(1)} ms; budget 16 ms)`);
  await page.context().close();
});

test('builder: no console errors (Content-Security-Policy included) on its pages', () => {
  assert.deepEqual(problems, []);
});
