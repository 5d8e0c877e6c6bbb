// Shell: hash router, navigation bar, session and the shared chat socket.
import { session, ChatSocket } from './api.js';
import { h, icon, toast, emptyState } from './ui.js';
import { createFeed } from './feed.js';
import { loginPage, profilePage, userListPage, publishPage, friendsPage } from './pages.js';
import { chatPage } from './chat.js';

const socket = new ChatSocket();
const feedRoot = document.getElementById('feed-view');
const page = document.getElementById('page');
const feed = createFeed(feedRoot);
let cleanup = null;
let route = { name: '' };

function parseRoute() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const [a, b, c] = parts;
  if (parts.length === 0) return { name: 'feed', params };
  if (a === 'login' && parts.length === 1) return { name: 'login', params };
  if (a === 'publish' && parts.length === 1) return { name: 'publish', params };
  if (a === 'friends' && parts.length === 1) return { name: 'friends', params };
  if (a === 'user' && b && parts.length === 2) return { name: 'profile', id: b, params };
  if (a === 'user' && b && (c === 'followers' || c === 'following') && parts.length === 3) return { name: 'users', id: b, kind: c, params };
  if (a === 'chat' && b && parts.length === 2) return { name: 'chat', id: b, params };
  return { name: 'notfound', params };
}

const TITLES = { feed: 'Feed', login: 'Log in', publish: 'Publish', friends: 'Friends', profile: 'Profile', users: 'People', chat: 'Chat', notfound: 'Not found' };

function render() {
  if (typeof cleanup === 'function') cleanup();
  cleanup = null;
  route = parseRoute();
  if (route.name === 'profile' && route.id === 'me') {
    if (!session.loggedIn) { location.replace('#/login?next=%23%2Fuser%2Fme'); return; }
    route.id = session.userId;
  }
  document.title = `${TITLES[route.name]} · Douyin`;
  document.body.dataset.route = route.name;
  updateNav();

  if (route.name === 'feed') {
    page.hidden = true;
    page.replaceChildren();
    feed.show();
    return;
  }
  feed.hide();
  page.hidden = false;
  page.replaceChildren();
  page.scrollTop = 0;
  const ctx = { ...route, socket, onPublished: () => feed.markStale() };
  switch (route.name) {
    case 'login': cleanup = loginPage(page, ctx); break;
    case 'publish': cleanup = publishPage(page, ctx); break;
    case 'friends': cleanup = friendsPage(page, ctx); break;
    case 'profile': cleanup = profilePage(page, ctx); break;
    case 'users': cleanup = userListPage(page, ctx); break;
    case 'chat': cleanup = chatPage(page, ctx); break;
    default:
      page.replaceChildren(emptyState('This page does not exist.', h('a', { href: '#/', class: 'button primary' }, 'Go to the feed')));
  }
  // Move focus to the new page's heading for keyboard and screen reader users.
  requestAnimationFrame(() => {
    if (!document.activeElement || document.activeElement === document.body) page.querySelector('h1')?.focus({ preventScroll: true });
  });
}

const NAV = [
  { key: 'feed', href: '#/', label: 'Home', icon: 'home', match: ['feed'] },
  { key: 'publish', href: '#/publish', label: 'Publish', icon: 'add', match: ['publish'] },
  { key: 'friends', href: '#/friends', label: 'Friends', icon: 'people', match: ['friends', 'chat'] },
  { key: 'me', href: '#/user/me', label: 'Me', icon: 'person', match: ['profile', 'users', 'login'] },
];

const navLinks = new Map();
function buildNav() {
  const nav = document.getElementById('nav-list');
  for (const item of NAV) {
    const label = h('span', { class: 'nav-label' }, item.label);
    const a = h('a', { href: item.href, class: `nav-link nav-${item.key}`, testid: `nav-${item.key}` }, icon(item.icon, 26), label);
    a.labelEl = label;
    // Choosing the page already shown refreshes it (the hash does not change).
    a.addEventListener('click', (e) => {
      if (a.getAttribute('href') !== (location.hash || '#/')) return;
      e.preventDefault();
      if (route.name === 'feed') feed.reload();
      else render();
    });
    navLinks.set(item.key, a);
    nav.append(h('li', {}, a));
  }
}

function updateNav() {
  const me = navLinks.get('me');
  if (session.loggedIn) {
    me.href = `#/user/${session.userId}`;
    me.labelEl.textContent = 'Me';
  } else {
    me.href = '#/login';
    me.labelEl.textContent = 'Log in';
  }
  for (const item of NAV) {
    const a = navLinks.get(item.key);
    let current = item.match.includes(route.name);
    if (item.key === 'me' && route.name !== 'login') current = current && String(route.id) === session.userId;
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// A message pushed while its conversation is not open shows as a notification.
socket.onMessage((m) => {
  const from = String(m.from_user_id);
  if (from === session.userId) return;
  if (route.name === 'chat' && String(route.id) === from) return;
  toast(`New message: ${m.content}`);
});

function onSessionChange() {
  socket.sync();
  feed.markStale();
  updateNav();
  document.body.classList.toggle('logged-in', session.loggedIn);
}

window.addEventListener('session-change', onSessionChange);
window.addEventListener('storage', (e) => {
  if (e.key && e.key.startsWith('douyin.')) { onSessionChange(); render(); }
});
window.addEventListener('hashchange', render);
window.addEventListener('unhandledrejection', (e) => {
  const msg = e.reason?.message;
  if (msg) toast(msg, 'error');
});

buildNav();
onSessionChange();
render();
