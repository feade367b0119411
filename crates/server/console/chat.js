// The customer chat widget: starts a chat on the first message (a token for that one
// conversation, kept in this tab's sessionStorage), posts the customer's messages and shows
// every message of the conversation live (AI answers, the handover notice, a person's replies).

const PREFIX = new URL(document.baseURI).pathname;
const [tenant, channel] = location.pathname.slice(PREFIX.length).split('/').slice(1, 3).map(decodeURIComponent);
const STORE = `hilo-chat:${tenant}/${channel}`;
const log = document.getElementById('log');
const stateLine = document.getElementById('state');
const form = document.getElementById('send');
const text = document.getElementById('text');
const seen = new Set();
let chat = null;
let stream = null;

try { chat = JSON.parse(sessionStorage.getItem(STORE) || 'null'); } catch { chat = null; }

function show(m) {
  if (seen.has(m.seq)) return;
  seen.add(m.seq);
  const who = m.sender === 'user' ? 'You' : m.sender === 'agent' ? 'Assistant' : m.sender === 'human' ? (m.author || 'Support') : '';
  const li = document.createElement('li');
  li.className = `from-${m.sender}`;
  li.dataset.seq = String(m.seq);
  if (who) {
    const w = document.createElement('span');
    w.className = 'who';
    w.textContent = who;
    li.append(w);
  }
  li.append(document.createTextNode(m.content));
  const items = [...log.children];
  const after = items.find((x) => Number(x.dataset.seq) > m.seq);
  log.insertBefore(li, after || null);
  log.scrollTop = log.scrollHeight;
}

function follow() {
  if (stream || !chat) return;
  const after = seen.size ? Math.max(...seen) : 0;
  stream = new EventSource(`ui/chat/stream?token=${encodeURIComponent(chat.token)}&after=${after}`);
  stream.addEventListener('message', (ev) => {
    try { show(JSON.parse(ev.data)); } catch { /* not JSON: ignore */ }
  });
  stream.addEventListener('end', () => {
    stateLine.textContent = 'This conversation has ended. Write again to start a new one.';
    stream.close();
    stream = null;
    sessionStorage.removeItem(STORE);
    chat = null;
  });
}

async function start() {
  const res = await fetch(`ui/chat/${encodeURIComponent(tenant)}/${encodeURIComponent(channel)}`, { method: 'POST' });
  const body = await res.json();
  if (!res.ok) throw new Error(body.detail || 'the chat could not start');
  chat = { token: body.token, id: body.conversation_id };
  sessionStorage.setItem(STORE, JSON.stringify(chat));
  follow();
}

async function send(content) {
  if (!chat) await start();
  const res = await fetch('ui/chat/messages', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-chat-token': chat.token },
    body: JSON.stringify({ content }),
  });
  const body = await res.json();
  if (res.status === 401) {
    sessionStorage.removeItem(STORE);
    chat = null;
    if (stream) { stream.close(); stream = null; }
    return send(content);
  }
  if (!res.ok) throw new Error(body.code === 'CONVERSATION_BUSY' ? 'Still answering your previous message; send it again in a moment.' : (body.detail || 'not sent'));
  show(body.message);
  for (const r of body.replies || []) show(r);
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const content = text.value.trim();
  if (!content) {
    stateLine.textContent = 'Write a message first.';
    return;
  }
  const button = form.querySelector('button');
  button.disabled = true;
  stateLine.textContent = 'Sending…';
  try {
    await send(content);
    text.value = '';
    stateLine.textContent = '';
  } catch (e) {
    stateLine.textContent = e.message;
  } finally {
    button.disabled = false;
    text.focus();
  }
});
text.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey) {
    ev.preventDefault();
    form.requestSubmit();
  }
});
follow();
