// The graph a workflow's value draws: nodes (loop bodies included), the edges the canvas shows,
// where a diagnostic's JSON pointer lands. Pure functions over plain values (no YAML): the
// canvas's first draw needs only these.

export function equal(a, b) {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && equal(a[k], b[k]));
}

export function getIn(v, path) {
  let x = v;
  for (const s of path) {
    if (x === null || typeof x !== 'object') return undefined;
    x = x[s];
  }
  return x;
}


export const NODE_TYPES = ['tool', 'agent', 'condition', 'switch', 'set', 'transform', 'loop', 'parallel', 'merge',
  'human', 'wait', 'workflow', 'code', 'finish', 'handover', 'fail'];

/**
 * The graph of a workflow value: every node (loop bodies included, keyed `loop/child`) and
 * every edge the canvas draws (edges, switch cases and default, parallel branches, on_error
 * gotos), each with the path of its graph in the document.
 */
export function graphOf(value) {
  const nodes = [];
  const edges = [];
  function graph(g, gpath, prefix, parentKey) {
    const list = Array.isArray(g && g.nodes) ? g.nodes : [];
    const ids = new Set(list.map((n) => n && n.id).filter((x) => typeof x === 'string'));
    const key = (id) => prefix + id;
    list.forEach((n, index) => {
      if (!n || typeof n !== 'object') return;
      const id = typeof n.id === 'string' ? n.id : `#${index}`;
      const k = key(id);
      nodes.push({ key: k, id, type: n.type, value: n, gpath, index, parentKey });
      if (n.type === 'switch') {
        (Array.isArray(n.cases) ? n.cases : []).forEach((c, i) => {
          if (c && ids.has(c.to)) edges.push({ id: `c:${k}:${i}`, kind: 'case', source: k, target: key(c.to), label: c.when == null ? '' : String(c.when), gpath, index: i, nodeIndex: index });
        });
        if (ids.has(n.default)) edges.push({ id: `d:${k}`, kind: 'default', source: k, target: key(n.default), label: 'default', gpath, nodeIndex: index });
      }
      if (n.type === 'parallel') {
        (Array.isArray(n.branches) ? n.branches : []).forEach((b, i) => {
          if (ids.has(b)) edges.push({ id: `b:${k}:${i}`, kind: 'branch', source: k, target: key(b), label: '', gpath, index: i, nodeIndex: index });
        });
      }
      if (n.on_error && typeof n.on_error === 'object' && ids.has(n.on_error.goto)) {
        edges.push({ id: `g:${k}`, kind: 'goto', source: k, target: key(n.on_error.goto), label: 'on error', gpath, nodeIndex: index });
      }
      if (n.type === 'loop' && n.body && typeof n.body === 'object') {
        graph(n.body, [...gpath, 'nodes', index, 'body'], k + '/', k);
      }
    });
    (Array.isArray(g && g.edges) ? g.edges : []).forEach((e, i) => {
      if (e && ids.has(e.from) && ids.has(e.to)) {
        edges.push({ id: `e:${prefix}${i}`, kind: 'edge', source: key(e.from), target: key(e.to), label: e.when == null ? '' : String(e.when), gpath, index: i });
      }
    });
  }
  graph(value || {}, [], '', null);
  return { nodes, edges };
}

/** The graph node a JSON pointer (diagnostic path) points into: its key, or an edge id. */
export function targetOfPointer(value, pointer) {
  if (!pointer) return null;
  const segs = pointer.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  let g = value;
  let prefix = '';
  let found = null;
  let i = 0;
  while (i < segs.length && g && typeof g === 'object') {
    if (segs[i] === 'nodes' && Array.isArray(g.nodes)) {
      const n = g.nodes[Number(segs[i + 1])];
      if (!n || typeof n !== 'object') break;
      found = { node: prefix + n.id };
      if (segs[i + 2] === 'body' && n.type === 'loop') {
        g = n.body;
        prefix = prefix + n.id + '/';
        i += 3;
        continue;
      }
      break;
    }
    if (segs[i] === 'edges' && Array.isArray(g.edges)) {
      found = { edge: `e:${prefix}${Number(segs[i + 1])}` };
      break;
    }
    break;
  }
  return found;
}

/** A fresh node id of `type` in the graph. */
export function freshId(value, gpath, type) {
  const g = gpath.length ? getIn(value, gpath) : value;
  const ids = new Set((g && Array.isArray(g.nodes) ? g.nodes : []).map((n) => n && n.id));
  for (let i = 1; ; i += 1) if (!ids.has(`${type}_${i}`)) return `${type}_${i}`;
}
