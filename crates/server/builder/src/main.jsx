// The builder's entry: app.js imports this bundle (assets/builder.js) only when a builder
// path opens (`workflows/new`, `workflows/{name}/edit`), and calls mount(main, ctx).

import { createRoot } from 'react-dom/client';
import { api, el } from 'console:api';
import { Builder } from './Builder.jsx';
import { exportText, versionsOf } from './server.js';
import { loadEditing } from './editing.js';
import '@xyflow/react/dist/style.css';
import './builder.css';

const NEW = `name: untitled
version: 1
description: ""
nodes: []
`;

function ensureCss() {
  if (document.querySelector('link[data-builder-css]')) return;
  const l = document.createElement('link');
  l.rel = 'stylesheet';
  l.href = 'assets/builder.css';
  l.dataset.builderCss = '';
  document.head.append(l);
}

export async function mount(main, ctx) {
  window.__hbTimes = { mount: performance.now() };
  ensureCss();
  main.classList.add('builder-main');
  main.replaceChildren(el('h1', { tabindex: '-1' }, ctx.name ? `Edit ${ctx.name}` : 'New workflow'), el('p', { class: 'muted' }, 'Loading the builder…'));
  // the text edits and the YAML view load beside the data (a new workflow waits for them)
  const lazy = loadEditing();
  const soft = (p, fallback) => p.catch((e) => { if (e && e.status === 401) throw e; return fallback; });
  let schema;
  let tools;
  let text = NEW;
  let layout = null;
  let version = null;
  let active = false;
  let json = false;
  let initialValue = null;
  try {
    // everything at once: the schema, the tools, and for a stored workflow its versions, the
    // active version's text (the export without a version) and its layout
    const name = ctx.name ? encodeURIComponent(ctx.name) : null;
    let versions;
    let exp;
    let lay;
    let view;
    [schema, tools, versions, exp, lay, view] = await Promise.all([
      soft(api('GET', '/schema/workflow', undefined, { quiet: true }), null),
      soft(api('GET', '/tools', undefined, { quiet: true }), null),
      name ? versionsOf(ctx.name) : [],
      name ? exportText(ctx.name, null).catch((e) => { if (e.status === 404) return null; throw e; }) : null,
      name ? soft(api('GET', `/workflows/${name}/layout`, undefined, { quiet: true }), null) : null,
      // the active version's definition (the text's value as JSON): the canvas's first draw
      // needs no YAML parse
      name ? soft(api('GET', `/workflows/${name}`, undefined, { quiet: true }), null) : null,
    ]);
    if (ctx.name) {
      if (!versions.length || !exp) {
        main.replaceChildren(el('h1', { tabindex: '-1' }, 'Not found'), el('p', {}, `There is no workflow named ${ctx.name}. `, el('a', { href: 'workflows/new' }, 'Build a new one')));
        return () => main.classList.remove('builder-main');
      }
      const cur = versions.find((v) => v.active) || versions.reduce((a, b) => (b.version > a.version ? b : a));
      version = cur.version;
      active = cur.active;
      if (!cur.active) exp = await exportText(ctx.name, version);
      text = exp.text;
      json = exp.json;
      layout = lay && lay.layout;
      if (view && view.version === version && view.definition && typeof view.definition === 'object') initialValue = view.definition;
    }
    window.__hbTimes = { ...(window.__hbTimes || {}), fetched: performance.now() };
  } catch (e) {
    main.replaceChildren(el('h1', { tabindex: '-1' }, 'The builder could not open'), el('p', { class: 'error' }, e.message));
    return () => main.classList.remove('builder-main');
  }
  if (!initialValue) {
    try {
      await lazy;
    } catch (e) {
      main.replaceChildren(el('h1', { tabindex: '-1' }, 'The builder could not open'), el('p', { class: 'error' }, e.message));
      return () => main.classList.remove('builder-main');
    }
  }
  const toolNames = tools ? (tools.items || tools.tools || tools || []).map((t) => (typeof t === 'string' ? t : t.name)).filter(Boolean) : [];
  const host = document.createElement('div');
  host.className = 'hb-host';
  main.replaceChildren(host);
  const root = createRoot(host);
  const started = performance.now();
  root.render(
    <Builder
      initialText={text}
      initialValue={initialValue}
      initialLayout={layout}
      storedVersion={version}
      storedActive={active}
      isJson={json}
      schema={schema}
      tools={toolNames}
      name={ctx.name}
      navigate={ctx.navigate}
      started={started}
    />,
  );
  return () => {
    root.unmount();
    main.classList.remove('builder-main');
  };
}
