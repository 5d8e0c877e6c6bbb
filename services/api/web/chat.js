// One conversation: history and catch-up through /douyin/message/chat/ polling
// (pre_msg_time = newest create_time held), live messages through the WebSocket
// push. Messages are deduplicated by id whichever way they arrive first.
import { api, session } from './api.js';
import { h, icon, avatar, toast, formatTime, spinner, needLogin } from './ui.js';

const POLL_MS = 3000;
const STATUS_TEXT = { open: 'Live', connecting: 'Connecting…', closed: 'Offline' };

export function chatPage(root, { id, socket }) {
  if (!session.loggedIn) { needLogin('Log in to chat'); return; }
  const me = session.userId;
  const peer = String(id);
  if (peer === me) { toast('You cannot message yourself', 'error'); history.back(); return; }

  const seen = new Map(); // message id -> <li>
  let newest = 0;
  let gone = false;
  let pollTimer = null;
  let polling = false;

  const title = h('h1', { tabindex: '-1', testid: 'chat-title' }, 'Chat');
  const peerAvatar = h('span', { class: 'chat-avatar' });
  const live = h('span', { class: 'live-badge', testid: 'chat-live', role: 'status' });
  const log = h('ol', { class: 'chat-log', testid: 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages' });
  const input = h('input', { id: 'chat-input', name: 'content', maxlength: 1000, autocomplete: 'off', placeholder: 'Message…', testid: 'chat-input', required: true });
  const send = h('button', { type: 'submit', class: 'icon-button primary', 'aria-label': 'Send message', testid: 'chat-send' }, icon('send'));
  const error = h('p', { class: 'form-error', role: 'alert', testid: 'chat-error' });
  const form = h('form', { class: 'chat-form', testid: 'chat-form' },
    h('label', { for: 'chat-input', class: 'sr-only' }, 'Message'), input, send);

  root.replaceChildren(h('section', { class: 'chat', testid: 'chat', dataset: { peerId: peer } },
    h('header', { class: 'page-header chat-header' },
      h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Back', onclick: () => history.back() }, icon('back')),
      h('a', { href: `#/user/${peer}`, class: 'chat-peer' }, peerAvatar, title),
      live),
    log, error, form));
  log.append(h('li', { class: 'chat-loading' }, spinner('Loading messages')));

  api.user(peer).then((body) => {
    if (gone) return;
    title.textContent = body.user.name;
    peerAvatar.replaceChildren(avatar(body.user, 32));
    document.title = `Chat with ${body.user.name} · Douyin`;
  }, () => {});

  function belongs(m) {
    const from = String(m.from_user_id);
    const to = String(m.to_user_id);
    return (from === me && to === peer) || (from === peer && to === me);
  }

  function add(m, via) {
    if (!belongs(m)) return false;
    const key = String(m.id);
    const existing = seen.get(key);
    if (existing) {
      if (via === 'ws') existing.dataset.ws = '1';
      return false;
    }
    const mine = String(m.from_user_id) === me;
    const time = Number(m.create_time) || 0;
    const li = h('li', {
      class: `msg ${mine ? 'mine' : 'theirs'}`, testid: 'chat-message',
      dataset: { id: key, time: String(time), from: mine ? 'me' : 'them', via },
    },
    h('span', { class: 'sr-only' }, mine ? 'You: ' : 'Them: '),
    h('p', { class: 'msg-text', testid: 'chat-text' }, m.content),
    h('time', { datetime: new Date(time).toISOString() }, formatTime(time)));
    if (via === 'ws') li.dataset.ws = '1';
    seen.set(key, li);
    // Keep oldest-first order even if a message arrives out of order.
    const after = [...log.querySelectorAll('.msg')].find((el) => Number(el.dataset.time) > time);
    log.insertBefore(li, after || null);
    if (time > newest) newest = time;
    return true;
  }

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  async function poll() {
    if (gone || polling) return;
    polling = true;
    clearTimeout(pollTimer);
    try {
      const body = await api.chat(peer, newest);
      if (gone) return;
      log.querySelector('.chat-loading')?.remove();
      let added = false;
      for (const m of body.message_list || []) added = add(m, 'poll') || added;
      if (added) scrollDown();
      if (!seen.size && !log.querySelector('.chat-empty')) {
        log.append(h('li', { class: 'chat-empty muted' }, 'No messages yet. Say hi!'));
      }
      if (seen.size) log.querySelector('.chat-empty')?.remove();
      error.textContent = '';
    } catch (err) {
      if (!gone) error.textContent = err.message;
    } finally {
      polling = false;
      if (!gone) pollTimer = setTimeout(poll, POLL_MS);
    }
  }

  const offMessage = socket.onMessage((m) => {
    if (add(m, 'ws')) {
      log.querySelector('.chat-empty')?.remove();
      log.querySelector('.chat-loading')?.remove();
      scrollDown();
    }
  });
  const offStatus = socket.onStatus((s) => {
    live.textContent = STATUS_TEXT[s] || s;
    live.dataset.state = s;
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    send.disabled = true;
    error.textContent = '';
    try {
      await api.sendMessage(peer, content);
      input.value = '';
      poll(); // shows the sent message even when the push is down
    } catch (err) {
      error.textContent = err.message;
    } finally {
      send.disabled = false;
      input.focus();
    }
  });

  poll();
  input.focus();

  return () => {
    gone = true;
    clearTimeout(pollTimer);
    offMessage();
    offStatus();
  };
}
