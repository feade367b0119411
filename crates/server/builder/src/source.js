// The workflow's text is the builder's one source of truth. Every canvas edit becomes a
// minimal splice of that text: the `yaml` library gives every node's source range, and only
// the changed value (a field, a seq item, a pair) is written again, in the document's own
// style (flow or block, its indentation), so comments and everything else stay byte for byte.
// Each edit is checked by parsing the result and comparing the edited value.

import { parseDocument, isMap, isSeq, isScalar, isPair, isAlias } from 'yaml';
import { equal, getIn } from './graph.js';

export * from './graph.js';

let cache = [];

/** The parsed document of `text` (the last few are kept: the same text is asked often). */
export function parsed(text) {
  for (const c of cache) if (c.text === text) return c.doc;
  const doc = parseDocument(text, { uniqueKeys: false, prettyErrors: false, strict: false });
  cache = [{ text, doc }, ...cache.slice(0, 3)];
  return doc;
}

/** The plain value of `text`, or null when it does not parse. */
export function valueOf(text) {
  const doc = parsed(text);
  if (doc.errors.length) return null;
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch {
    return null;
  }
}

const keyOf = (pair) => (pair.key && isScalar(pair.key) ? pair.key.value : pair.key);

// ---- text helpers -------------------------------------------------------------------------

const lineStart = (text, pos) => text.lastIndexOf('\n', pos - 1) + 1;
const col = (text, pos) => pos - lineStart(text, pos);
/** The position just after the end of the line `pos` is on (or `pos` when it is a line start after a newline). */
function lineEndAfter(text, pos) {
  if (pos > 0 && text[pos - 1] === '\n') return pos;
  const i = text.indexOf('\n', pos);
  return i < 0 ? text.length : i + 1;
}
const splice = (text, from, to, insert) => text.slice(0, from) + insert + text.slice(to);

/** Whether the document is JSON (its root a flow map starting with `{`). */
function isJson(doc, text) {
  return doc.contents && isMap(doc.contents) && doc.contents.flow && text.trimStart().startsWith('{');
}

// ---- emitting values ----------------------------------------------------------------------

const RESERVED = /^(true|false|null|yes|no|on|off|y|n|~)$/i;
const PLAIN = /^[A-Za-z_$][A-Za-z0-9_.\/$-]*( [A-Za-z0-9_.\/$()'-]+)*$/;

function plainOk(s, inFlow) {
  if (!PLAIN.test(s) || RESERVED.test(s)) return false;
  if (s.startsWith('$') && s.includes('{')) return false;
  if (inFlow && /[,[\]{}]/.test(s)) return false;
  return true;
}

export function keyText(k, json) {
  return !json && plainOk(String(k), true) ? String(k) : JSON.stringify(String(k));
}

function scalarText(v, json, inFlow) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return !json && plainOk(v, inFlow) ? v : JSON.stringify(v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : JSON.stringify(String(v));
  return String(v);
}

const isColl = (v) => v !== null && typeof v === 'object';
const isEmptyColl = (v) => isColl(v) && (Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0);
function multiline(v) {
  if (typeof v === 'string') return v.includes('\n');
  if (isColl(v)) return Object.values(v).some(multiline);
  return false;
}

/** One line, flow style. */
export function flowText(v, json) {
  if (Array.isArray(v)) return '[' + v.map((x) => flowText(x, json)).join(', ') + ']';
  if (isColl(v)) return '{' + Object.entries(v).map(([k, x]) => `${keyText(k, json)}: ${flowText(x, json)}`).join(', ') + '}';
  return scalarText(v, json, true);
}

const WIDTH = 100;
const pad = (n) => ' '.repeat(n);

/** A block literal for a multi-line string: the header (`|`, `|-`, `|+`) and the lines. */
function literal(s, indent) {
  const body = s.replace(/\n+$/, '');
  const trailing = s.length - body.length;
  if (/^[ \t]/.test(body) || /[ \t]$/m.test(body) || /\t/.test(body) || /\r/.test(s)) return null;
  const header = trailing === 0 ? '|-' : trailing === 1 ? '|' : '|+';
  let lines = body.split('\n').map((l) => (l === '' ? '' : pad(indent) + l));
  if (trailing > 1) lines = lines.concat(Array(trailing - 1).fill(''));
  return { header, lines };
}

/**
 * What follows `key:` for `v` in a block map whose keys are at `indent`: ` value` on the same
 * line, or a newline and the block lines. `style`: 'flow' | 'block' | 'auto'.
 */
function afterColon(v, indent, ctx, style = 'auto', keyLen = 0) {
  if (ctx.json) return ' ' + JSON.stringify(v);
  if (!isColl(v)) {
    if (typeof v === 'string' && v.includes('\n')) {
      const lit = literal(v, indent + 2);
      if (lit) return ' ' + lit.header + '\n' + lit.lines.join('\n');
    }
    return ' ' + scalarText(v, false, false);
  }
  if (isEmptyColl(v)) return ' ' + flowText(v);
  const flow = flowText(v);
  const fits = !multiline(v) && indent + keyLen + 2 + flow.length <= WIDTH;
  if (style === 'flow' && !multiline(v)) return ' ' + flow;
  if (style === 'auto' && fits) return ' ' + flow;
  if (Array.isArray(v)) return '\n' + blockSeq(v, indent + ctx.seqIndent, ctx, style === 'nodes' ? 'block' : 'auto').join('\n');
  return '\n' + blockMap(v, indent + 2, ctx).join('\n');
}

function blockMap(obj, indent, ctx) {
  const out = [];
  for (const [k, v] of Object.entries(obj)) {
    const kt = keyText(k, ctx.json);
    // a graph (a loop's body) and its nodes are written as blocks, like the document's own
    const style = k === 'body' ? 'block' : k === 'nodes' ? 'nodes' : 'auto';
    const rest = afterColon(v, indent, ctx, style, kt.length);
    out.push(...(pad(indent) + kt + ':' + rest).split('\n'));
  }
  return out;
}

function blockSeq(arr, indent, ctx, itemStyle = 'auto') {
  const out = [];
  for (const v of arr) {
    if (isColl(v) && !isEmptyColl(v)) {
      const flow = flowText(v);
      if (itemStyle !== 'block' && !multiline(v) && (itemStyle === 'flow' || indent + 2 + flow.length <= WIDTH)) {
        out.push(pad(indent) + '- ' + flow);
        continue;
      }
      const lines = Array.isArray(v) ? blockSeq(v, indent + 2, ctx) : blockMap(v, indent + 2, ctx);
      lines[0] = pad(indent) + '- ' + lines[0].slice(indent + 2);
      out.push(...lines);
    } else {
      const t = afterColon(v, indent, ctx);
      out.push(...(pad(indent) + '-' + t).split('\n'));
    }
  }
  return out;
}

/** The document's style: how far a block seq is indented under its key, and JSON or not. */
function styleOf(doc, text) {
  const json = isJson(doc, text);
  let seqIndent = 2;
  const root = doc.contents;
  if (isMap(root)) {
    for (const p of root.items) {
      if (isSeq(p.value) && !p.value.flow && p.value.items.length && p.key.range) {
        seqIndent = dashOf(text, p.value.items[0]).col - col(text, p.key.range[0]);
        break;
      }
    }
  }
  return { json, seqIndent: Math.max(0, seqIndent) };
}

/** Where the `- ` of a block seq item is. */
function dashOf(text, item) {
  let i = item.range[0];
  if (text[i] === '-' && /\s/.test(text[i + 1] || '')) return { pos: i, col: col(text, i) };
  i -= 1;
  while (i >= 0 && text[i] !== '-') i -= 1;
  return { pos: i, col: col(text, i) };
}

function endOf(node) {
  return node.range[1];
}

// ---- finding ------------------------------------------------------------------------------

/** Walks `path` as far as it exists: {node, parent, pair, depth}. */
function walk(doc, path) {
  let node = doc.contents;
  let parent = null;
  let pair = null;
  let i = 0;
  for (; i < path.length; i += 1) {
    const seg = path[i];
    if (isMap(node)) {
      const p = node.items.find((x) => keyOf(x) === seg);
      if (!p) break;
      parent = node;
      pair = p;
      node = p.value;
    } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
      parent = node;
      pair = null;
      node = node.items[seg];
    } else break;
  }
  return { node, parent, pair, depth: i };
}

/** The node at a path (a JSON pointer's segments), or null. */
export function nodeAt(text, path) {
  const doc = parsed(text);
  const w = walk(doc, path);
  return w.depth === path.length ? w.node : null;
}

/** The source range [from, to] of the value at `path` (as far as it exists). */
export function rangeAt(text, path) {
  const doc = parsed(text);
  const w = walk(doc, path);
  const n = w.node && w.node.range ? w.node : w.pair && w.pair.key;
  if (!n || !n.range) return null;
  return [n.range[0], Math.max(n.range[0], Math.min(n.range[1], text.length))];
}

// ---- edits --------------------------------------------------------------------------------

export class EditError extends Error {}

function checked(text, next, path, expect) {
  const doc = parsed(next);
  if (doc.errors.length) throw new EditError(`the edit would not parse: ${doc.errors[0].message}`);
  if (expect !== CHECK_SKIP) {
    const got = getIn(valueOf(next), path);
    if (!equal(got, expect)) throw new EditError(`the edit did not give the value it should (${JSON.stringify(got)})`);
  }
  return next;
}
const CHECK_SKIP = Symbol('skip');

/** Replaces [from, to): when the region ended with a newline, the replacement does too. */
function replaceRegion(text, from, to, insert) {
  if (to > from && text[to - 1] === '\n' && !insert.endsWith('\n')) insert += '\n';
  return splice(text, from, to, insert);
}

/** Sets the value at `path` (creating the missing maps on the way). */
export function setIn(text, path, value) {
  const cur = getIn(valueOf(text), path);
  if (cur !== undefined && equal(cur, value)) return text;
  const doc = parsed(text);
  if (doc.errors.length) throw new EditError('the YAML does not parse: fix it first');
  const ctx = styleOf(doc, text);
  const w = walk(doc, path);
  let next;
  if (w.depth === path.length) {
    if (w.pair) next = replacePairValue(text, w.parent, w.pair, value, ctx);
    else if (isSeq(w.parent)) next = replaceSeqItem(text, w.parent, path[path.length - 1], value, ctx);
    else throw new EditError('cannot set the document itself');
  } else {
    let v = value;
    for (const k of path.slice(w.depth + 1).reverse()) v = { [k]: v };
    if (isMap(w.node)) next = insertPair(text, w.node, path[w.depth], v, ctx);
    else if (w.pair) next = replacePairValue(text, w.parent, w.pair, { [path[w.depth]]: v }, ctx);
    else throw new EditError(`nothing at ${path.slice(0, w.depth + 1).join('.')} to write into`);
  }
  return checked(text, next, path, value);
}

function replacePairValue(text, map, pair, value, ctx) {
  const old = pair.value;
  const keyEnd = pair.key.range[1];
  const keyCol = col(text, pair.key.range[0]);
  const keyLen = pair.key.range[1] - pair.key.range[0];
  if (map.flow) {
    const t = ctx.json ? JSON.stringify(value) : flowText(value);
    if (old && old.range && !(isScalar(old) && old.source === undefined && old.range[0] === old.range[1])) {
      return splice(text, old.range[0], old.range[1], t);
    }
    return splice(text, keyEnd, keyEnd + (text[keyEnd] === ':' ? 1 : 0), ': ' + t);
  }
  const emptyOld = !old || !old.range || (isScalar(old) && old.value === null && old.range[0] === old.range[1]);
  if (emptyOld) {
    const colon = text.indexOf(':', keyEnd);
    const rest = afterColon(value, keyCol, ctx, 'auto', keyLen);
    return splice(text, keyEnd, colon + 1, ':' + rest);
  }
  const oldInline = isScalar(old) || isAlias(old) || old.flow;
  if (oldInline && (!isScalar(old) || !old.type || !String(old.type).startsWith('BLOCK'))) {
    const rest = afterColon(value, keyCol, ctx, isColl(old && old.toJSON && old.toJSON()) ? 'flow' : 'auto', keyLen);
    if (!rest.includes('\n')) return splice(text, old.range[0], old.range[1], rest.slice(1));
    return replaceRegion(text, keyEnd, old.range[1], ':' + rest);
  }
  // a block collection or a block scalar
  const rest = afterColon(value, keyCol, ctx, 'block', keyLen);
  if (!rest.startsWith('\n') || isScalar(old)) return replaceRegion(text, keyEnd, endOf(old), ':' + rest);
  const childCol = col(text, old.range[0]);
  const lines = Array.isArray(value)
    ? blockSeq(value, childCol, ctx)
    : blockMap(value, childCol, ctx);
  return replaceRegion(text, old.range[0], endOf(old), lines.join('\n').slice(childCol));
}

function replaceSeqItem(text, seq, index, value, ctx) {
  const item = seq.items[index];
  if (seq.flow || ctx.json) return splice(text, item.range[0], item.range[1], ctx.json ? JSON.stringify(value) : flowText(value));
  const dash = dashOf(text, item);
  const lines = blockSeq([value], dash.col, ctx, isColl(value) && item.flow ? 'flow' : 'auto');
  return replaceRegion(text, lineStart(text, dash.pos), lineEndAfter(text, endOf(item)), lines.join('\n') + '\n');
}

function insertPair(text, map, key, value, ctx) {
  const kt = keyText(key, ctx.json);
  if (map.flow) {
    let close = map.range[1] - 1;
    while (close > map.range[0] && text[close] !== '}') close -= 1;
    const t = `${kt}: ${ctx.json ? JSON.stringify(value) : flowText(value)}`;
    if (!map.items.length) return splice(text, close, close, t);
    const last = map.items[map.items.length - 1];
    const end = last.value && last.value.range ? last.value.range[1] : last.key.range[1];
    return splice(text, end, end, ', ' + t);
  }
  if (!map.items.length) throw new EditError('an empty block map');
  const indent = col(text, map.items[0].key.range[0]);
  const last = map.items[map.items.length - 1];
  const end = last.value && last.value.range ? endOf(last.value) : last.key.range[1];
  let at = lineEndAfter(text, end);
  let lead = '';
  if (at === text.length && !text.endsWith('\n')) lead = '\n';
  const line = pad(indent) + kt + ':' + afterColon(value, indent, ctx, 'auto', kt.length);
  return splice(text, at, at, lead + line + '\n');
}

/** Deletes the value at `path` (a pair of a map, or an item of a seq). */
export function deleteIn(text, path) {
  const doc = parsed(text);
  if (doc.errors.length) throw new EditError('the YAML does not parse: fix it first');
  const w = walk(doc, path);
  if (w.depth !== path.length) return text;
  const parentPath = path.slice(0, -1);
  const before = getIn(valueOf(text), parentPath);
  let expect;
  if (Array.isArray(before)) expect = before.filter((_, i) => i !== path[path.length - 1]);
  else {
    expect = { ...before };
    delete expect[path[path.length - 1]];
  }
  let next;
  if (isSeq(w.parent)) next = removeSeqItem(text, w.parent, path[path.length - 1], parentPath);
  else next = removePair(text, w.parent, w.pair, parentPath);
  return checked(text, next, parentPath, expect);
}

function removeFlowEntry(text, parent, from, to, index) {
  const items = parent.items;
  if (items.length === 1) {
    let s = from;
    let e = to;
    while (s > parent.range[0] + 1 && /\s/.test(text[s - 1])) s -= 1;
    while (e < text.length && /[ \t]/.test(text[e])) e += 1;
    return splice(text, s, e, '');
  }
  if (index > 0) {
    let s = from;
    while (s > 0 && text[s - 1] !== ',') s -= 1;
    return splice(text, s - 1, to, '');
  }
  let e = to;
  while (e < text.length && text[e] !== ',') e += 1;
  e += 1;
  while (e < text.length && /[ \t]/.test(text[e])) e += 1;
  return splice(text, from, e, '');
}

function removeSeqItem(text, seq, index, seqPath) {
  const item = seq.items[index];
  if (seq.flow) return removeFlowEntry(text, seq, item.range[0], item.range[1], index);
  if (seq.items.length === 1) return setIn(text, seqPath, []);
  const dash = dashOf(text, item);
  return splice(text, lineStart(text, dash.pos), lineEndAfter(text, endOf(item)), '');
}

function removePair(text, map, pair, mapPath) {
  const end = pair.value && pair.value.range ? pair.value.range[1] : pair.key.range[1];
  if (map.flow) return removeFlowEntry(text, map, pair.key.range[0], end, map.items.indexOf(pair));
  if (map.items.length === 1) return setIn(text, mapPath, {});
  const start = lineStart(text, pair.key.range[0]);
  if (text.slice(start, pair.key.range[0]).trim() !== '') {
    // the first pair of a seq item (`- key: …`): the next pair's key moves up after the dash
    const nextPair = map.items[map.items.indexOf(pair) + 1];
    return splice(text, pair.key.range[0], nextPair.key.range[0], '');
  }
  return splice(text, start, lineEndAfter(text, endOf(pair.value && pair.value.range ? pair.value : pair.key)), '');
}

/** Appends `value` to the seq at `path` (creating it when missing). */
export function appendIn(text, path, value) {
  const doc = parsed(text);
  if (doc.errors.length) throw new EditError('the YAML does not parse: fix it first');
  const ctx = styleOf(doc, text);
  const w = walk(doc, path);
  const before = getIn(valueOf(text), path);
  const expect = [...(Array.isArray(before) ? before : []), value];
  if (w.depth !== path.length || !isSeq(w.node)) {
    // missing (or null): a block seq under the key
    const parent = w.depth >= path.length - 1 ? w : null;
    if (!parent) throw new EditError(`nothing at ${path.slice(0, -1).join('.')}`);
    if (w.depth === path.length && w.pair && !w.parent.flow && !ctx.json) {
      const keyCol = col(text, w.pair.key.range[0]);
      const lines = blockSeq([value], keyCol + ctx.seqIndent, ctx);
      return checked(text, replaceKeyBlock(text, w.pair, lines), path, expect);
    }
    if (isMap(w.node) && !w.node.flow && !ctx.json) {
      const map = w.node;
      const indent = col(text, map.items[0].key.range[0]);
      const key = path[path.length - 1];
      const lines = [pad(indent) + keyText(key) + ':', ...blockSeq([value], indent + ctx.seqIndent, ctx)];
      const last = map.items[map.items.length - 1];
      const end = last.value && last.value.range ? endOf(last.value) : last.key.range[1];
      const at = lineEndAfter(text, end);
      const lead = at === text.length && !text.endsWith('\n') ? '\n' : '';
      return checked(text, splice(text, at, at, lead + lines.join('\n') + '\n'), path, expect);
    }
    return setIn(text, path, expect);
  }
  const seq = w.node;
  if (seq.flow && !seq.items.length && !ctx.json && w.pair && !w.parent.flow) {
    const keyCol = col(text, w.pair.key.range[0]);
    const lines = blockSeq([value], keyCol + ctx.seqIndent, ctx, isColl(value) && !Array.isArray(value) && path[path.length - 1] === 'nodes' ? 'block' : 'auto');
    return checked(text, replaceKeyBlock(text, w.pair, lines), path, expect);
  }
  if (seq.flow || ctx.json) {
    let close = seq.range[1] - 1;
    while (close > seq.range[0] && text[close] !== ']') close -= 1;
    const t = ctx.json ? JSON.stringify(value) : flowText(value);
    if (!seq.items.length) return checked(text, splice(text, close, close, t), path, expect);
    const last = seq.items[seq.items.length - 1];
    return checked(text, splice(text, last.range[1], last.range[1], ', ' + t), path, expect);
  }
  const first = seq.items[0];
  const dash = dashOf(text, first);
  const style = isColl(value) && !Array.isArray(value) ? (first.flow ? 'flow' : isMap(first) ? 'block' : 'auto') : 'auto';
  const lines = blockSeq([value], dash.col, ctx, style);
  const last = seq.items[seq.items.length - 1];
  const at = lineEndAfter(text, endOf(last));
  const lead = at === text.length && !text.endsWith('\n') ? '\n' : '';
  return checked(text, splice(text, at, at, lead + lines.join('\n') + '\n'), path, expect);
}

/** `key:` (null) followed by a block seq. */
function replaceKeyBlock(text, pair, lines) {
  const keyEnd = pair.key.range[1];
  const end = pair.value && pair.value.range ? pair.value.range[1] : keyEnd + 1;
  return replaceRegion(text, keyEnd, Math.max(end, keyEnd + 1), ':\n' + lines.join('\n'));
}

// ---- the graph ----------------------------------------------------------------------------

const gEdit = (gpath, ...rest) => [...gpath, ...rest];

export function addNode(text, gpath, node) {
  return appendIn(text, gEdit(gpath, 'nodes'), node);
}

/** Removes a node and everything in its graph that names it (edges, cases, branches, gotos). */
export function deleteNode(text, gpath, id) {
  for (let guard = 0; guard < 10000; guard += 1) {
    const g = getIn(valueOf(text), gpath) || {};
    const edges = Array.isArray(g.edges) ? g.edges : [];
    const ei = edges.findIndex((e) => e && (e.from === id || e.to === id));
    if (ei >= 0) { text = deleteIn(text, gEdit(gpath, 'edges', ei)); continue; }
    const nodes = Array.isArray(g.nodes) ? g.nodes : [];
    let done = false;
    for (let ni = 0; ni < nodes.length && !done; ni += 1) {
      const n = nodes[ni];
      if (!n || n.id === id) continue;
      const base = gEdit(gpath, 'nodes', ni);
      if (Array.isArray(n.cases)) {
        const ci = n.cases.findIndex((c) => c && c.to === id);
        if (ci >= 0) { text = deleteIn(text, [...base, 'cases', ci]); done = true; break; }
      }
      if (n.default === id) { text = deleteIn(text, [...base, 'default']); done = true; break; }
      if (Array.isArray(n.branches)) {
        const bi = n.branches.indexOf(id);
        if (bi >= 0) { text = deleteIn(text, [...base, 'branches', bi]); done = true; break; }
      }
      if (n.on_error && typeof n.on_error === 'object' && n.on_error.goto === id) { text = deleteIn(text, [...base, 'on_error']); done = true; break; }
    }
    if (done) continue;
    const idx = nodes.findIndex((n) => n && n.id === id);
    if (idx >= 0) text = deleteIn(text, gEdit(gpath, 'nodes', idx));
    return text;
  }
  return text;
}

/** Connects `from` to `to` in one graph: a switch gets a case, a parallel a branch, others an edge. */
export function connect(text, gpath, from, to) {
  const v = valueOf(text);
  const g = getIn(v, gpath) || {};
  const nodes = Array.isArray(g.nodes) ? g.nodes : [];
  const fi = nodes.findIndex((n) => n && n.id === from);
  if (fi < 0 || from === to) return text;
  const src = nodes[fi];
  if (src.type === 'switch') {
    const cases = Array.isArray(src.cases) ? src.cases : [];
    if (cases.some((c) => c && c.to === to) || src.default === to) return text;
    return appendIn(text, gEdit(gpath, 'nodes', fi, 'cases'), { when: '`true`', to });
  }
  if (src.type === 'parallel') {
    const br = Array.isArray(src.branches) ? src.branches : [];
    if (br.includes(to)) return text;
    return appendIn(text, gEdit(gpath, 'nodes', fi, 'branches'), to);
  }
  const edges = Array.isArray(g.edges) ? g.edges : [];
  if (edges.some((e) => e && e.from === from && e.to === to)) return text;
  return appendIn(text, gEdit(gpath, 'edges'), { from, to });
}

/** Removes what an edge of the canvas stands for. */
export function deleteEdge(text, edge) {
  const base = gEdit(edge.gpath, 'nodes', edge.nodeIndex);
  switch (edge.kind) {
    case 'edge': return deleteIn(text, gEdit(edge.gpath, 'edges', edge.index));
    case 'case': return deleteIn(text, [...base, 'cases', edge.index]);
    case 'default': return deleteIn(text, [...base, 'default']);
    case 'branch': return deleteIn(text, [...base, 'branches', edge.index]);
    case 'goto': return deleteIn(text, [...base, 'on_error']);
    default: return text;
  }
}

/** Sets (or, when empty, removes) an edge's or a case's `when`. */
export function setEdgeWhen(text, edge, when) {
  const path = edge.kind === 'edge'
    ? gEdit(edge.gpath, 'edges', edge.index, 'when')
    : gEdit(edge.gpath, 'nodes', edge.nodeIndex, 'cases', edge.index, 'when');
  if (when === '' && edge.kind === 'edge') return deleteIn(text, path);
  return setIn(text, path, when);
}

/** A switch case becomes the switch's default (the old default, if any, becomes a case). */
export function caseToDefault(text, edge) {
  const v = valueOf(text);
  const base = gEdit(edge.gpath, 'nodes', edge.nodeIndex);
  const sw = getIn(v, base);
  const to = sw.cases[edge.index].to;
  const old = sw.default;
  text = deleteIn(text, [...base, 'cases', edge.index]);
  text = setIn(text, [...base, 'default'], to);
  if (old && old !== to) text = appendIn(text, [...base, 'cases'], { when: '`true`', to: old });
  return text;
}

/** Renames a node and every reference to it in its graph (not inside expressions). */
export function renameNode(text, gpath, oldId, newId) {
  const v = valueOf(text);
  const g = getIn(v, gpath) || {};
  const nodes = Array.isArray(g.nodes) ? g.nodes : [];
  const idx = nodes.findIndex((n) => n && n.id === oldId);
  if (idx < 0 || oldId === newId) return text;
  text = setIn(text, gEdit(gpath, 'nodes', idx, 'id'), newId);
  (Array.isArray(g.edges) ? g.edges : []).forEach((e, i) => {
    if (e && e.from === oldId) text = setIn(text, gEdit(gpath, 'edges', i, 'from'), newId);
    if (e && e.to === oldId) text = setIn(text, gEdit(gpath, 'edges', i, 'to'), newId);
  });
  nodes.forEach((n, ni) => {
    if (!n) return;
    const base = gEdit(gpath, 'nodes', ni);
    if (Array.isArray(n.cases)) n.cases.forEach((c, ci) => { if (c && c.to === oldId) text = setIn(text, [...base, 'cases', ci, 'to'], newId); });
    if (n.default === oldId) text = setIn(text, [...base, 'default'], newId);
    if (Array.isArray(n.branches)) n.branches.forEach((b, bi) => { if (b === oldId) text = setIn(text, [...base, 'branches', bi], newId); });
    if (n.on_error && typeof n.on_error === 'object' && n.on_error.goto === oldId) text = setIn(text, [...base, 'on_error', 'goto'], newId);
  });
  return text;
}

/** The text with its `version:` set to `n` (the only change). */
export function withVersion(text, n) {
  return setIn(text, ['version'], n);
}

/** A YAML text for a value on its own (the forms' YAML fields). */
export function yamlOf(v) {
  if (v === undefined) return '';
  const ctx = { json: false, seqIndent: 2 };
  if (!isColl(v) || isEmptyColl(v)) return afterColon(v, 0, ctx, 'flow').slice(1);
  return (Array.isArray(v) ? blockSeq(v, 0, ctx) : blockMap(v, 0, ctx)).join('\n');
}

/** The value of a form's YAML field, or an error. */
export function parseYamlValue(s) {
  const doc = parseDocument(s, { prettyErrors: false });
  if (doc.errors.length) return { error: doc.errors[0].message.split('\n')[0] };
  return { value: doc.toJS() };
}

export { isPair };
