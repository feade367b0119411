// The console's entry: the session, the router (history API, every path under the prefix)
// and the header. Views live in views.js.

import { PREFIX, call, el, setCsrf, whenUnauthorized } from './api.js';
import * as views from './views.js';
import { executions } from './executions.js';
import { execution } from './execution.js';
import { notFound } from './common.js';

const main = document.getElementById('main');
const who = document.getElementById('who');
let session = null;
let stop = () => {};

function path() {
  const p = location.pathname;
  return p.startsWith(PREFIX) ? p.slice(PREFIX.length) : p.replace(/^\//, '');
}

export function navigate(to, replace = false) {
  const url = new URL(to, document.baseURI);
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

function showWho() {
  // The sections are for someone signed in: hidden until then.
  document.querySelector('header nav').hidden = !session;
  if (!session) {
    who.replaceChildren();
    return;
  }
  const out = el('button', { type: 'button', class: 'link' }, 'Sign out');
  out.addEventListener('click', async () => {
    try { await call('DELETE', 'session'); } catch { /* signed out already */ }
    session = null;
    setCsrf(null);
    navigate('sign-in');
  });
  who.replaceChildren(el('span', { class: 'tenant' }, `${session.tenant}${session.agent ? ' · ' + session.agent : ''}`), ' ', out);
}

function markNav(p) {
  for (const a of document.querySelectorAll('header nav a')) {
    const target = a.getAttribute('href');
    if (p === target || p.startsWith(target + '/')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function render() {
  stop();
  stop = () => {};
  const p = path();
  const query = new URLSearchParams(location.search);
  markNav(p);
  if (!session && p !== 'sign-in') {
    navigate('sign-in', true);
    return;
  }
  const ctx = { query, navigate, session };
  let m;
  let cleanup;
  if (p === 'sign-in') {
    document.title = 'Sign in · hilo';
    views.signIn(main, {
      done: (s) => {
        session = s;
        showWho();
        const back = new URLSearchParams(location.search).get('next');
        navigate(back && !back.includes('//') ? back : 'executions');
      },
    });
    return;
  } else if (p === '' || p === 'executions') {
    document.title = 'Executions · hilo';
    cleanup = await executions(main, ctx);
  } else if ((m = /^executions\/([^/]+)$/.exec(p))) {
    document.title = 'Execution · hilo';
    cleanup = await execution(main, { ...ctx, id: decodeURIComponent(m[1]) });
  } else if (p === 'workflows') {
    document.title = 'Workflows · hilo';
    cleanup = await views.workflows(main, ctx);
  } else if (p === 'workflows/new' || (m = /^workflows\/([^/]+)\/edit$/.exec(p))) {
    // The visual builder: its bundle (assets/builder.js, builder.css) loads only here.
    const name = p === 'workflows/new' ? null : decodeURIComponent(m[1]);
    document.title = `${name ? `Edit ${name}` : 'New workflow'} · hilo`;
    const builder = await import('./builder.js');
    cleanup = await builder.mount(main, { ...ctx, name });
  } else if ((m = /^workflows\/([^/]+)$/.exec(p))) {
    document.title = 'Workflow · hilo';
    cleanup = await views.workflow(main, { ...ctx, name: decodeURIComponent(m[1]) });
  } else if (p === 'triggers') {
    document.title = 'Triggers · hilo';
    cleanup = await views.triggers(main, ctx);
  } else if (p === 'connections') {
    document.title = 'Connections · hilo';
    cleanup = await views.connections(main, ctx);
  } else if (p === 'inbox') {
    document.title = 'Inbox · hilo';
    cleanup = await views.inbox(main, ctx);
  } else if ((m = /^conversations\/([^/]+)$/.exec(p))) {
    document.title = 'Conversation · hilo';
    cleanup = await views.conversation(main, { ...ctx, id: decodeURIComponent(m[1]) });
  } else if (p === 'costs') {
    document.title = 'Costs · hilo';
    cleanup = await views.costs(main, ctx);
  } else {
    notFound(main, `The console has no page at /${p}.`);
  }
  if (typeof cleanup === 'function') stop = cleanup;
  if (query.get('focus') === 'search') {
    const box = main.querySelector('[role="search"] input');
    if (box) { box.focus(); return; }
  }
  const h = main.querySelector('h1');
  if (h && document.activeElement === document.body) h.focus({ preventScroll: true });
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest && ev.target.closest('a[href]');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || a.target) return;
  if (a.classList.contains('skip')) {
    ev.preventDefault();
    main.focus();
    return;
  }
  const url = new URL(a.href, document.baseURI);
  if (url.origin !== location.origin || !url.pathname.startsWith(PREFIX) || url.pathname.startsWith(PREFIX + 'api/')) return;
  ev.preventDefault();
  history.pushState(null, '', url);
  render();
});
window.addEventListener('popstate', render);
whenUnauthorized(() => {
  session = null;
  showWho();
  if (path() !== 'sign-in') navigate(`sign-in?next=${encodeURIComponent(path() + location.search)}`, true);
});

// Keyboard shortcuts: `/` finds (the page's search, else the executions'), `g` then `e`,
// `w`, `t`, `i` or `c` goes to executions, workflows, triggers, inbox or costs; `?` lists them.
let pendingG = 0;
const GO = { e: 'executions', w: 'workflows', t: 'triggers', i: 'inbox', c: 'costs' };
document.addEventListener('keydown', (ev) => {
  const t = ev.target;
  if (ev.ctrlKey || ev.metaKey || ev.altKey || !session) return;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName) || t.closest('.cm-editor, dialog'))) return;
  if (ev.key === '/') {
    ev.preventDefault();
    const box = main.querySelector('[role="search"] input');
    if (box) box.focus();
    else navigate('executions?focus=search');
  } else if (ev.key === 'g') {
    pendingG = Date.now();
  } else if (pendingG && Date.now() - pendingG < 1500 && GO[ev.key]) {
    pendingG = 0;
    navigate(GO[ev.key]);
  } else if (ev.key === '?') {
    const d = document.getElementById('shortcuts');
    if (d) d.showModal();
  } else {
    pendingG = 0;
  }
});

// On a builder path the builder's bundle loads while the session is read.
if (/^workflows\/(new|[^/]+\/edit)$/.test(path())) import('./builder.js').catch(() => {});

(async () => {
  try {
    // 204 (no content) when this browser is signed out.
    session = await call('GET', 'session', undefined, { quiet: true });
    if (session) setCsrf(session.csrf);
  } catch {
    session = null;
  }
  showWho();
  render();
})();
