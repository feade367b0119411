// Automatic positions for nodes the stored layout does not place: per graph (the top level,
// each loop's body), ranks by longest path from the entries, then two barycenter sweeps to
// keep edges short, top to bottom. A loop is a box around its body's own layout.

export const NODE_W = 200;
export const NODE_H = 64;
const GAP_X = 40;
const GAP_Y = 56;
export const PAD = 24;
export const HEADER = 52;
const MIN_LOOP_W = 260;
const MIN_LOOP_H = 150;

function layered(keys, edges, size) {
  const index = new Map(keys.map((k, i) => [k, i]));
  const succ = keys.map(() => []);
  const pred = keys.map(() => []);
  for (const e of edges) {
    const a = index.get(e.source);
    const b = index.get(e.target);
    if (a === undefined || b === undefined || a === b) continue;
    succ[a].push(b);
    pred[b].push(a);
  }
  // longest path (Kahn); nodes on a cycle are ranked after their other predecessors
  const rank = keys.map(() => 0);
  const indeg = pred.map((p) => p.length);
  const queue = [];
  indeg.forEach((d, i) => { if (d === 0) queue.push(i); });
  const seen = new Array(keys.length).fill(false);
  for (let qi = 0; qi < queue.length; qi += 1) {
    const i = queue[qi];
    seen[i] = true;
    for (const j of succ[i]) {
      rank[j] = Math.max(rank[j], rank[i] + 1);
      indeg[j] -= 1;
      if (indeg[j] === 0) queue.push(j);
    }
  }
  keys.forEach((_, i) => { if (!seen[i]) rank[i] = Math.max(rank[i], ...pred[i].filter((p) => seen[p]).map((p) => rank[p] + 1), 0); });
  const ranks = [];
  keys.forEach((_, i) => { (ranks[rank[i]] ||= []).push(i); });
  const order = new Array(keys.length).fill(0);
  for (const r of ranks) if (r) r.forEach((i, o) => { order[i] = o; });
  for (let sweep = 0; sweep < 2; sweep += 1) {
    for (const r of ranks) {
      if (!r || r.length < 2) continue;
      const bary = (i) => (pred[i].length ? pred[i].reduce((s, p) => s + order[p], 0) / pred[i].length : order[i]);
      r.sort((a, b) => bary(a) - bary(b) || a - b);
      r.forEach((i, o) => { order[i] = o; });
    }
  }
  const pos = new Map();
  let y = 0;
  const widths = ranks.map((r) => (r || []).reduce((s, i) => s + size(keys[i]).w, 0) + GAP_X * Math.max(0, (r || []).length - 1));
  const widest = Math.max(0, ...widths);
  ranks.forEach((r, ri) => {
    if (!r) return;
    let x = (widest - widths[ri]) / 2;
    let h = 0;
    for (const i of r) {
      const s = size(keys[i]);
      pos.set(keys[i], { x, y });
      x += s.w + GAP_X;
      h = Math.max(h, s.h);
    }
    y += h + GAP_Y;
  });
  return pos;
}

/**
 * Positions (relative to the parent loop for body nodes) and sizes of every node.
 * `nodes`: [{key, parentKey, type}], `edges`: [{source, target}], `stored`: {key: {x, y}}.
 */
export function layout(nodes, edges, stored = {}) {
  const children = new Map();
  for (const n of nodes) {
    const p = n.parentKey || '';
    if (!children.has(p)) children.set(p, []);
    children.get(p).push(n);
  }
  const size = new Map();
  const pos = new Map();
  function place(parent) {
    const list = children.get(parent) || [];
    for (const n of list) if (n.type === 'loop') place(n.key);
    const keys = list.map((n) => n.key);
    const sz = (k) => size.get(k) || { w: NODE_W, h: NODE_H };
    const missing = keys.filter((k) => !stored[k]);
    let auto = new Map();
    if (missing.length) {
      const inner = new Set(keys);
      auto = layered(keys, edges.filter((e) => inner.has(e.source) && inner.has(e.target)), sz);
    }
    const off = parent ? { x: PAD, y: HEADER } : { x: 0, y: 0 };
    for (const k of keys) {
      const s = stored[k];
      const p = s && Number.isFinite(s.x) && Number.isFinite(s.y) ? { x: s.x, y: s.y } : { x: auto.get(k).x + off.x, y: auto.get(k).y + off.y };
      pos.set(k, p);
    }
    if (parent) {
      let w = MIN_LOOP_W;
      let h = MIN_LOOP_H;
      for (const k of keys) {
        const p = pos.get(k);
        const s = sz(k);
        w = Math.max(w, p.x + s.w + PAD);
        h = Math.max(h, p.y + s.h + PAD);
      }
      size.set(parent, { w, h });
    }
  }
  place('');
  return { pos, size };
}
