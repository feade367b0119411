// Draws a layout computed by the server (GET ui/workflows/{name}/layout) as SVG: boxes and
// polylines only. Node colours come from their status (data-status), so a live update is
// one attribute change.

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function clip(text, max) {
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

/**
 * Draws `layout` and returns {element, setStatus(nodeId, status)}. `title` labels the
 * picture for assistive technology.
 */
export function drawGraph(layout, title) {
  const root = svg('svg', {
    viewBox: `0 0 ${layout.width} ${layout.height}`,
    width: layout.width,
    height: layout.height,
    class: 'graph',
    role: 'img',
    'aria-label': title,
  });
  const defs = svg('defs', {});
  const marker = svg('marker', {
    id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
  });
  marker.append(svg('path', { d: 'M0,0L10,5L0,10z', class: 'arrowhead' }));
  defs.append(marker);
  root.append(defs);
  const edges = svg('g', { class: 'edges' });
  for (const e of layout.edges) {
    const line = svg('polyline', {
      points: e.points.map((p) => p.join(',')).join(' '),
      class: e.dashed ? 'edge dashed' : 'edge',
      'marker-end': 'url(#arrow)',
    });
    edges.append(line);
    if (e.label && e.points.length >= 2) {
      const [a, b] = [e.points[0], e.points[e.points.length - 1]];
      const t = svg('text', { x: (a[0] + b[0]) / 2 + 4, y: (a[1] + b[1]) / 2, class: 'edge-label' });
      t.textContent = clip(e.label, 24);
      edges.append(t);
    }
  }
  root.append(edges);
  const nodes = svg('g', { class: 'nodes' });
  const byId = new Map();
  for (const n of layout.nodes) {
    const g = svg('g', {
      class: `node k-${n.kind}`, 'data-node': n.id, 'data-status': 'none',
      transform: `translate(${n.x},${n.y})`,
    });
    const title = svg('title', {});
    title.textContent = `${n.id} (${n.detail})`;
    g.append(title);
    g.append(svg('rect', { width: n.w, height: n.h, rx: n.kind === 'agent' ? 14 : 4 }));
    const name = svg('text', { x: 10, y: 18, class: 'node-id' });
    name.textContent = clip(n.id, 22);
    const detail = svg('text', { x: 10, y: 34, class: 'node-detail' });
    detail.textContent = clip(n.detail, 26);
    g.append(name, detail);
    nodes.append(g);
    byId.set(n.id, g);
  }
  root.append(nodes);
  return {
    element: root,
    setStatus(id, status) {
      const g = byId.get(id);
      if (g) g.setAttribute('data-status', status);
    },
  };
}

/** The top-level node a node key belongs to (`loop[2]/step` → `loop`). */
export function topNode(key) {
  return key.split('/')[0].replace(/\[\d+\]$/, '');
}
