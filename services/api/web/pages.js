// Pages other than the feed and the chat: login, profile, user lists, publish, friends.
import { api, session, publishVideo } from './api.js';
import { h, icon, avatar, toast, formatCount, spinner, emptyState, navigate, needLogin, toggleOnClick } from './ui.js';
import { openPlayer } from './feed.js';

function pageHeader(title, { back = false, testid } = {}) {
  return h('header', { class: 'page-header' },
    back ? h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Back', onclick: () => history.back() }, icon('back')) : null,
    h('h1', { tabindex: '-1', testid }, title));
}

function failure(root, err, retry) {
  root.replaceChildren(emptyState(err.message,
    retry ? h('button', { type: 'button', class: 'button', onclick: retry }, 'Try again') : null));
}

// ---------- login / register ----------
export function loginPage(root, { params }) {
  const next = params.get('next') || '#/';
  const error = h('p', { class: 'form-error', role: 'alert', testid: 'auth-error' });
  const username = h('input', { id: 'auth-username', name: 'username', autocomplete: 'username', maxlength: 32, required: true, testid: 'auth-username' });
  const password = h('input', { id: 'auth-password', name: 'password', type: 'password', autocomplete: 'current-password', maxlength: 32, required: true, testid: 'auth-password' });
  const loginBtn = h('button', { type: 'submit', class: 'primary', value: 'login', testid: 'login-submit' }, 'Log in');
  const registerBtn = h('button', { type: 'submit', class: 'button', value: 'register', testid: 'register-submit' }, 'Create account');
  const form = h('form', { class: 'card form', testid: 'auth-form', 'aria-labelledby': 'auth-title' },
    h('h1', { id: 'auth-title', tabindex: '-1' }, 'Log in or sign up'),
    h('div', { class: 'field' }, h('label', { for: 'auth-username' }, 'Username'), username,
      h('small', {}, '1–32 characters')),
    h('div', { class: 'field' }, h('label', { for: 'auth-password' }, 'Password'), password,
      h('small', {}, '6–32 characters')),
    error,
    h('div', { class: 'form-actions' }, loginBtn, registerBtn));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const register = e.submitter?.value === 'register';
    error.textContent = '';
    loginBtn.disabled = registerBtn.disabled = true;
    try {
      const body = register
        ? await api.register(username.value.trim(), password.value)
        : await api.login(username.value.trim(), password.value);
      session.save(body.token, body.user_id);
      toast(register ? `Welcome, ${username.value.trim()}!` : 'Logged in');
      navigate(next.startsWith('#/') ? next : '#/');
    } catch (err) {
      error.textContent = err.message;
    } finally {
      loginBtn.disabled = registerBtn.disabled = false;
    }
  });
  root.replaceChildren(h('div', { class: 'page-narrow' }, form));
  username.focus();
}

// ---------- follow button ----------
export function followButton(user, onChange) {
  const btn = h('button', { type: 'button', class: 'button follow', testid: 'follow-button' });
  const render = () => {
    btn.textContent = user.is_follow ? 'Unfollow' : 'Follow';
    btn.classList.toggle('primary', !user.is_follow);
    btn.setAttribute('aria-pressed', String(Boolean(user.is_follow)));
    btn.setAttribute('aria-label', `${user.is_follow ? 'Unfollow' : 'Follow'} ${user.name}`);
  };
  toggleOnClick(btn, {
    item: user, flag: 'is_follow', count: 'follower_count', loginMessage: 'Log in to follow people',
    call: (want) => api.follow(user.id, want), render, onChange,
  });
  render();
  return btn;
}

// ---------- profile ----------
function videoGrid(videos, emptyText) {
  if (!videos.length) return emptyState(emptyText);
  return h('ul', { class: 'video-grid', testid: 'video-grid' }, videos.map((v) => h('li', {},
    h('button', {
      type: 'button', class: 'video-card', testid: 'profile-video', dataset: { videoId: String(v.id) },
      'aria-label': `Play ${v.title}`, onclick: () => openPlayer(v),
    },
    h('img', { src: v.cover_url, alt: '', loading: 'lazy' }),
    h('span', { class: 'video-card-title', testid: 'profile-video-title' }, v.title),
    h('span', { class: 'video-card-likes' }, icon('heart', 14), formatCount(v.favorite_count))))));
}

const STATS = [
  ['follow_count', 'Following', 'following'],
  ['follower_count', 'Followers', 'followers'],
  ['total_favorited', 'Likes received'],
  ['work_count', 'Works'],
  ['favorite_count', 'Liked'],
];

export function profilePage(root, { id }) {
  const userId = id === 'me' ? session.userId : id;
  if (!userId) { needLogin(); return; }
  const isMe = session.loggedIn && String(userId) === session.userId;
  root.replaceChildren(spinner('Loading profile'));
  let gone = false;

  const load = async () => {
    let user;
    try {
      user = (session.loggedIn ? await api.user(userId) : await api.userPublic(userId)).user;
    } catch (err) {
      if (!gone) failure(root, err, load);
      return;
    }
    if (gone) return;
    const stats = h('ul', { class: 'stats', testid: 'profile-stats' });
    const renderStats = () => stats.replaceChildren(...STATS.map(([key, label, list]) => {
      const n = Number(user[key]) || 0;
      const num = h('strong', { testid: `stat-${key}`, dataset: { count: String(n) } }, formatCount(n));
      const inner = [num, h('span', {}, label)];
      return h('li', {}, list
        ? h('a', { href: `#/user/${userId}/${list}`, 'aria-label': `${n} ${label}`, testid: `stat-link-${list}` }, inner)
        : h('div', { 'aria-label': `${n} ${label}` }, inner));
    }));
    renderStats();

    const actions = h('div', { class: 'profile-actions' });
    if (isMe) {
      actions.append(
        h('a', { href: '#/publish', class: 'button primary' }, 'Publish a video'),
        h('button', { type: 'button', class: 'button', testid: 'logout-button', onclick: () => { session.clear(); toast('Logged out'); navigate('#/'); } }, 'Log out'));
    } else {
      actions.append(followButton(user, renderStats));
      if (session.loggedIn) actions.append(h('a', { href: `#/chat/${userId}`, class: 'button', testid: 'message-button' }, 'Message'));
    }

    const banner = h('div', { class: 'profile-banner', role: 'presentation' });
    if (user.background_image) banner.style.backgroundImage = `url(${JSON.stringify(user.background_image)})`;

    const tabWorks = h('button', { type: 'button', role: 'tab', id: 'ptab-works', 'aria-selected': 'true', 'aria-controls': 'ppanel', testid: 'tab-works' }, 'Works');
    const tabLikes = h('button', { type: 'button', role: 'tab', id: 'ptab-likes', 'aria-selected': 'false', 'aria-controls': 'ppanel', testid: 'tab-likes' }, 'Liked');
    const panel = h('div', { id: 'ppanel', role: 'tabpanel', 'aria-labelledby': 'ptab-works', testid: 'profile-videos' });
    const showTab = async (which) => {
      tabWorks.setAttribute('aria-selected', String(which === 'works'));
      tabLikes.setAttribute('aria-selected', String(which === 'likes'));
      panel.setAttribute('aria-labelledby', which === 'works' ? 'ptab-works' : 'ptab-likes');
      panel.replaceChildren(spinner('Loading videos'));
      try {
        const body = which === 'works' ? await api.publishList(userId) : await api.favoriteList(userId);
        if (gone) return;
        panel.replaceChildren(videoGrid(body.video_list || [], which === 'works' ? 'No videos published yet.' : 'No liked videos yet.'));
      } catch (err) {
        if (!gone) panel.replaceChildren(emptyState(err.message));
      }
    };
    tabWorks.addEventListener('click', () => showTab('works'));
    tabLikes.addEventListener('click', () => showTab('likes'));

    root.replaceChildren(h('section', { class: 'profile', testid: 'profile', dataset: { userId: String(userId) } },
      banner,
      h('div', { class: 'profile-head' },
        avatar(user, 88),
        h('div', { class: 'profile-id' },
          h('h1', { tabindex: '-1', testid: 'profile-name' }, user.name),
          user.signature ? h('p', { class: 'signature' }, user.signature) : null)),
      stats, actions,
      h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Videos' }, tabWorks, tabLikes),
      panel));
    document.title = `${user.name} · Douyin`;
    showTab('works');
  };
  load();
  return () => { gone = true; };
}

// ---------- following / followers ----------
export function userListPage(root, { id, kind }) {
  const title = kind === 'followers' ? 'Followers' : 'Following';
  const list = h('ul', { class: 'user-list', testid: 'user-list' }, h('li', {}, spinner()));
  root.replaceChildren(h('section', { class: 'page-narrow' }, pageHeader(title, { back: true }), list));
  let gone = false;
  (kind === 'followers' ? api.followerList(id) : api.followList(id)).then((body) => {
    if (gone) return;
    const users = body.user_list || [];
    if (!users.length) { list.replaceChildren(h('li', {}, emptyState(kind === 'followers' ? 'No followers yet.' : 'Not following anyone yet.'))); return; }
    list.replaceChildren(...users.map((u) => userRow(u)));
  }, (err) => { if (!gone) list.replaceChildren(h('li', {}, emptyState(err.message))); });
  return () => { gone = true; };
}

function userRow(u, extra) {
  const isMe = session.loggedIn && String(u.id) === session.userId;
  return h('li', { class: 'user-row', testid: 'user-row', dataset: { userId: String(u.id) } },
    h('a', { href: `#/user/${u.id}`, class: 'user-link' }, avatar(u, 44),
      h('span', { class: 'user-text' }, h('span', { class: 'user-name', testid: 'user-name' }, u.name), extra || (u.signature ? h('span', { class: 'muted' }, u.signature) : null))),
    isMe ? null : followButton(u));
}

// ---------- publish ----------
export function publishPage(root, { onPublished }) {
  if (!session.loggedIn) { needLogin('Log in to publish videos'); return; }
  const file = h('input', { id: 'publish-file', name: 'data', type: 'file', accept: 'video/mp4,video/quicktime,video/webm,video/*', required: true, testid: 'publish-file' });
  const title = h('input', { id: 'publish-title', name: 'title', maxlength: 100, required: true, testid: 'publish-title', autocomplete: 'off' });
  const preview = h('video', { class: 'publish-preview', muted: true, playsinline: true, controls: true, hidden: true, 'aria-label': 'Preview of the chosen video' });
  const progress = h('progress', { max: 100, value: 0, 'aria-label': 'Upload progress', testid: 'publish-progress', hidden: true });
  const percent = h('span', { class: 'muted', testid: 'publish-percent' });
  const status = h('p', { class: 'form-status', role: 'status', testid: 'publish-status' });
  const error = h('p', { class: 'form-error', role: 'alert', testid: 'publish-error' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'publish-submit' }, 'Publish');
  let previewUrl = null;
  file.addEventListener('change', () => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    const f = file.files[0];
    previewUrl = f ? URL.createObjectURL(f) : null;
    preview.hidden = !f;
    if (f) preview.src = previewUrl;
    if (f && !title.value) title.value = f.name.replace(/\.[^.]+$/, '').slice(0, 100);
  });
  const form = h('form', { class: 'card form', testid: 'publish-form', 'aria-labelledby': 'publish-heading' },
    h('h1', { id: 'publish-heading', tabindex: '-1' }, 'Publish a video'),
    h('div', { class: 'field' }, h('label', { for: 'publish-file' }, 'Video file (MP4, MOV or WebM)'), file),
    preview,
    h('div', { class: 'field' }, h('label', { for: 'publish-title' }, 'Title'), title, h('small', {}, '1–100 characters')),
    h('div', { class: 'progress-row' }, progress, percent),
    status, error,
    h('div', { class: 'form-actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    status.textContent = '';
    const f = file.files[0];
    if (!f) { error.textContent = 'Choose a video file first.'; return; }
    submit.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    status.textContent = 'Uploading…';
    try {
      await publishVideo(f, title.value.trim(), (frac) => {
        const pct = Math.round(frac * 100);
        progress.value = pct;
        percent.textContent = `${pct}%`;
        if (pct >= 100) status.textContent = 'Processing…';
      });
      progress.value = 100;
      percent.textContent = '100%';
      status.textContent = 'Published';
      toast('Video published');
      onPublished?.();
      navigate(`#/user/${session.userId}`);
    } catch (err) {
      status.textContent = '';
      error.textContent = err.message;
      progress.hidden = true;
      percent.textContent = '';
    } finally {
      submit.disabled = false;
    }
  });
  root.replaceChildren(h('div', { class: 'page-narrow' }, form));
  return () => { if (previewUrl) URL.revokeObjectURL(previewUrl); };
}

// ---------- friends ----------
export function friendsPage(root) {
  if (!session.loggedIn) { needLogin('Log in to see your friends'); return; }
  const list = h('ul', { class: 'user-list', testid: 'friend-list', 'aria-label': 'Friends' }, h('li', {}, spinner('Loading friends')));
  root.replaceChildren(h('section', { class: 'page-narrow' },
    pageHeader('Friends'),
    h('p', { class: 'muted' }, 'Friends are people you follow who follow you back.'),
    list));
  let gone = false;
  const load = () => api.friendList(session.userId).then((body) => {
    if (gone) return;
    const friends = body.user_list || [];
    if (!friends.length) {
      list.replaceChildren(h('li', {}, emptyState('No friends yet. Follow people from their profile; when they follow you back, you can chat here.')));
      return;
    }
    list.replaceChildren(...friends.map((f) => h('li', { class: 'user-row', testid: 'friend-row', dataset: { userId: String(f.id) } },
      h('a', { href: `#/chat/${f.id}`, class: 'user-link', 'aria-label': `Chat with ${f.name}`, testid: 'friend-chat-link' },
        avatar(f, 44),
        h('span', { class: 'user-text' },
          h('span', { class: 'user-name', testid: 'user-name' }, f.name),
          h('span', { class: 'muted last-message' }, f.message ? `${Number(f.msgType) === 1 ? 'You: ' : ''}${f.message}` : 'Say hi!'))),
      h('a', { href: `#/user/${f.id}`, class: 'button', 'aria-label': `Profile of ${f.name}` }, 'Profile'))));
  }, (err) => { if (!gone) failure(list, err, load); });
  load();
  return () => { gone = true; };
}
