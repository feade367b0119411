// The builder's text edits (src/source.js) on every example: an edit is a minimal splice, and
// setting a value to what it is changes no byte. Run by `build --check` (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import * as S from '../src/source.js';

const DIR = new URL('../../../../examples/', import.meta.url);
const examples = readdirSync(DIR).filter((f) => /\.(ya?ml|json)$/.test(f));

/** The changed lines between two texts (common head and tail cut). */
function changed(a, b) {
  const A = a.split('\n');
  const B = b.split('\n');
  let h = 0;
  while (h < A.length && h < B.length && A[h] === B[h]) h += 1;
  let t = 0;
  while (t < A.length - h && t < B.length - h && A[A.length - 1 - t] === B[B.length - 1 - t]) t += 1;
  return { removed: A.slice(h, A.length - t), added: B.slice(h, B.length - t) };
}

test('setting every field of every node to its own value changes no byte; changing or deleting it parses', () => {
  for (const f of examples) {
    const src = readFileSync(new URL(f, DIR), 'utf8');
    const g = S.graphOf(S.valueOf(src));
    assert.ok(g.nodes.length > 0, f);
    for (const node of g.nodes) {
      for (const [k, val] of Object.entries(node.value)) {
        const p = [...node.gpath, 'nodes', node.index, k];
        assert.equal(S.setIn(src, p, val), src, `${f} ${p.join('.')}`);
        if (k === 'id' || k === 'type') continue;
        const nv = typeof val === 'string' ? `${val} x` : typeof val === 'number' ? val + 1 : { changed: true };
        assert.deepEqual(S.getIn(S.valueOf(S.setIn(src, p, nv)), p), nv);
        assert.equal(S.getIn(S.valueOf(S.deleteIn(src, p)), p), undefined);
      }
      const without = S.valueOf(S.deleteNode(src, node.gpath, node.id));
      assert.ok(!S.graphOf(without).nodes.some((n) => n.key === node.key), `${f}: ${node.key} deleted`);
    }
    for (const e of g.edges) assert.ok(S.valueOf(S.deleteEdge(src, e)), `${f}: ${e.id} deleted`);
  }
});

test('one scalar edited is one line changed, comments kept', () => {
  const src = readFileSync(new URL('refund_approval.yaml', DIR), 'utf8');
  const next = S.setIn(src, ['nodes', 0, 'vars', 'limit'], 200);
  assert.deepEqual(changed(src, next), { removed: ['    vars: {limit: 100, currency: EUR}'], added: ['    vars: {limit: 200, currency: EUR}'] });
  assert.deepEqual(changed(src, S.withVersion(src, 2)), { removed: ['version: 1'], added: ['version: 2'] });
});

test('a workflow built from an empty one: nodes as blocks, edges as flow items, a loop body in place', () => {
  let t = 'name: untitled\nversion: 1\nnodes: []\n';
  t = S.addNode(t, [], { id: 'a', type: 'tool', tool: 'transform_json', with: {} });
  t = S.addNode(t, [], { id: 'l', type: 'loop', for_each: 'input.items', body: { nodes: [{ id: 'done', type: 'finish', output: '${ item }' }] } });
  t = S.addNode(t, ['nodes', 1, 'body'], { id: 's', type: 'set', vars: { x: 1 } });
  t = S.connect(t, ['nodes', 1, 'body'], 's', 'done');
  t = S.connect(t, [], 'a', 'l');
  t = S.addNode(t, [], { id: 'sw', type: 'switch', cases: [] });
  t = S.connect(t, [], 'sw', 'a');
  assert.equal(t, `name: untitled
version: 1
nodes:
  - id: a
    type: tool
    tool: transform_json
    with: {}
  - id: l
    type: loop
    for_each: input.items
    body:
      nodes:
        - id: done
          type: finish
          output: "\${ item }"
        - id: s
          type: set
          vars: {x: 1}
      edges:
        - {from: s, to: done}
  - id: sw
    type: switch
    cases:
      - {when: "\`true\`", to: a}
edges:
  - {from: a, to: l}
`);
  const renamed = S.renameNode(t, [], 'a', 'fetch');
  assert.match(renamed, /- \{from: fetch, to: l\}/);
  assert.match(renamed, /to: fetch\}/);
});

test('a JSON workflow stays JSON', () => {
  const src = readFileSync(new URL('order_returns.json', DIR), 'utf8');
  let t = S.connect(src, [], S.valueOf(src).nodes[0].id, 'done');
  t = S.addNode(t, [], { id: 'w', type: 'wait', duration_ms: 5 });
  assert.equal(JSON.parse(t).nodes.at(-1).id, 'w');
});
