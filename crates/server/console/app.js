// The console's entry: the session, the router (history API, every path under the prefix)
// and the header. Views live in views.js.

import { PREFIX, call, el, setCsrf, whenUnauthorized } from './api.js';
import * as views from './views.js';

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
    cleanup = await views.executions(main, ctx);
  } else if ((m = /^executions\/([^/]+)$/.exec(p))) {
    document.title = 'Execution · hilo';
    cleanup = await views.execution(main, { ...ctx, id: decodeURIComponent(m[1]) });
  } else if (p === 'workflows') {
    document.title = 'Workflows · hilo';
    cleanup = await views.workflows(main, ctx);
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
    main.replaceChildren(el('h1', {}, 'Not found'), el('p', {}, 'The console has no page here. '), el('a', { href: 'executions' }, 'Executions'));
  }
  if (typeof cleanup === 'function') stop = cleanup;
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

(async () => {
  try {
    session = await call('GET', 'session', undefined, { quiet: true });
    setCsrf(session.csrf);
  } catch {
    session = null;
  }
  showWho();
  render();
})();
