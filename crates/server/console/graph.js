// Draws a layout computed by the server (GET ui/workflows/{name}/layout) as SVG: boxes and
// polylines only. Node colours come from their status (data-status), so a live update is
// one attribute change. The picture zooms (wheel, buttons), pans (drag) and fits its frame;
// nodes are buttons (click, Enter) when the page gives `onSelect`; edge labels show whole on
// hover and focus.

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function clip(text, max) {
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

function titled(e, text) {
  const t = svg('title', {});
  t.textContent = text;
  e.append(t);
  return e;
}

/** The point `f` (0..1) of the way along a polyline. */
function along(points, f) {
  const segs = [];
  let total = 0;
  for (let i = 1; i < points.length; i++) {
    const [a, b] = [points[i - 1], points[i]];
    const len = Math.hypot(b[0] - a[0], b[1] - a[1]);
    segs.push([a, b, len]);
    total += len;
  }
  let left = total * f;
  for (const [a, b, len] of segs) {
    if (left <= len && len > 0) {
      const t = left / len;
      return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
    }
    left -= len;
  }
  return points[points.length - 1];
}

/**
 * Draws `layout` and returns {element, setStatus(nodeId, status), select(nodeId), fit()}.
 * `title` labels the picture for assistive technology; `onSelect(nodeId)` makes nodes
 * buttons.
 */
export function drawGraph(layout, title, { onSelect } = {}) {
  const W = Math.max(layout.width, 1);
  const H = Math.max(layout.height, 1);
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'graph',
    role: 'group',
    'aria-label': title,
    preserveAspectRatio: 'xMidYMid meet',
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
  const labels = svg('g', { class: 'edge-labels' });
  for (const e of layout.edges) {
    const g = svg('g', { class: 'edge-g' });
    const line = svg('polyline', {
      points: e.points.map((p) => p.join(',')).join(' '),
      class: e.dashed ? 'edge dashed' : 'edge',
      'marker-end': 'url(#arrow)',
    });
    g.append(line);
    edges.append(g);
    if (e.label && e.points.length >= 2) {
      // Near the edge's start, where edges leaving one node have not met their neighbours'
      // labels yet; the whole text on hover (and as its accessible name).
      const [x, y] = along(e.points, 0.3);
      const t = svg('text', { x: x + 4, y, class: 'edge-label', tabindex: '-1' });
      t.textContent = clip(e.label, 28);
      titled(t, e.label);
      titled(line, e.label);
      const lg = svg('g', { class: 'label-g' });
      lg.append(t);
      labels.append(lg);
      lg.addEventListener('mouseenter', () => { t.textContent = e.label; lg.classList.add('whole'); });
      lg.addEventListener('mouseleave', () => { t.textContent = clip(e.label, 28); titled(t, e.label); lg.classList.remove('whole'); });
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
    titled(g, `${n.id} (${n.detail})`);
    g.append(svg('rect', { width: n.w, height: n.h, rx: n.kind === 'agent' ? 14 : 4 }));
    const name = svg('text', { x: 10, y: 18, class: 'node-id' });
    name.textContent = clip(n.id, 22);
    const detail = svg('text', { x: 10, y: 34, class: 'node-detail' });
    detail.textContent = clip(n.detail, 26);
    g.append(name, detail);
    if (onSelect) {
      g.setAttribute('tabindex', '0');
      g.setAttribute('role', 'button');
      g.addEventListener('click', () => onSelect(n.id));
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          onSelect(n.id);
        }
      });
    }
    nodes.append(g);
    byId.set(n.id, g);
  }
  root.append(nodes, labels);

  // The view: a viewBox over the layout; zoom keeps the point under the pointer in place.
  let view = { x: 0, y: 0, w: W, h: H };
  const apply = () => root.setAttribute('viewBox', `${view.x} ${view.y} ${view.w} ${view.h}`);
  const zoom = (factor, cx = view.x + view.w / 2, cy = view.y + view.h / 2) => {
    const w = Math.min(Math.max(view.w / factor, W / 40, 40), W * 4);
    const f = w / view.w;
    const h = view.h * f;
    view = { x: cx - (cx - view.x) * f, y: cy - (cy - view.y) * f, w, h };
    apply();
  };
  const fit = () => {
    view = { x: 0, y: 0, w: W, h: H };
    apply();
  };
  const toLayout = (ev) => {
    const r = root.getBoundingClientRect();
    // The viewBox is drawn 'meet': one scale, centred.
    const s = Math.min(r.width / view.w, r.height / view.h) || 1;
    const ox = (r.width - view.w * s) / 2;
    const oy = (r.height - view.h * s) / 2;
    return [view.x + (ev.clientX - r.left - ox) / s, view.y + (ev.clientY - r.top - oy) / s, s];
  };
  root.addEventListener('wheel', (ev) => {
    if (!ev.ctrlKey && !ev.metaKey && !ev.altKey) return; // the page scrolls; Ctrl+wheel zooms
    ev.preventDefault();
    const [x, y] = toLayout(ev);
    zoom(ev.deltaY < 0 ? 1.2 : 1 / 1.2, x, y);
  }, { passive: false });
  let drag = null;
  root.addEventListener('pointerdown', (ev) => {
    if (ev.button !== 0 || ev.target.closest('.node')) return;
    const [, , s] = toLayout(ev);
    drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, s };
    root.setPointerCapture(ev.pointerId);
    root.classList.add('panning');
  });
  root.addEventListener('pointermove', (ev) => {
    if (!drag) return;
    view.x = drag.vx - (ev.clientX - drag.x) / drag.s;
    view.y = drag.vy - (ev.clientY - drag.y) / drag.s;
    apply();
  });
  const end = () => { drag = null; root.classList.remove('panning'); };
  root.addEventListener('pointerup', end);
  root.addEventListener('pointercancel', end);

  const button = (label, text, fn) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'small ghost';
    b.setAttribute('aria-label', label);
    b.textContent = text;
    b.addEventListener('click', fn);
    return b;
  };
  const tools = document.createElement('div');
  tools.className = 'graph-tools';
  tools.setAttribute('role', 'toolbar');
  tools.setAttribute('aria-label', 'Graph view');
  tools.append(button('Zoom in', '+', () => zoom(1.25)), button('Zoom out', '−', () => zoom(0.8)),
    button('Fit the whole graph', 'Fit', fit));
  const frame = document.createElement('div');
  frame.className = 'graph-frame';
  const hint = document.createElement('p');
  hint.className = 'muted graph-hint';
  hint.textContent = onSelect ? 'Drag to pan, Ctrl+wheel or the buttons to zoom; select a node for its details.' : 'Drag to pan, Ctrl+wheel or the buttons to zoom.';
  frame.append(tools, root);
  const element = document.createElement('div');
  element.className = 'graph-box';
  element.append(frame, hint);
  // A tall, narrow graph gets a taller frame (up to most of the window).
  frame.style.height = `${Math.round(Math.min(Math.max(H * Math.min(1, 900 / W), 220), window.innerHeight * 0.75))}px`;
  let selected = null;
  return {
    element,
    svg: root,
    setStatus(id, status) {
      const g = byId.get(id);
      if (g) g.setAttribute('data-status', status);
    },
    select(id) {
      if (selected) selected.classList.remove('selected');
      selected = byId.get(id) || null;
      if (selected) selected.classList.add('selected');
    },
    fit,
    zoom,
  };
}

/** The top-level node a node key belongs to (`loop[2]/step` → `loop`). */
export function topNode(key) {
  return key.split('/')[0].replace(/\[\d+\]$/, '');
}
