// The vertical, snap-scrolling video feed, plus the like button and the
// single-video player used by profile grids.
import { api, session } from './api.js';
import { h, icon, avatar, toast, formatCount, spinner, emptyState, toggleOnClick } from './ui.js';
import { openComments } from './comments.js';

let soundOn = false;

export function likeButton(video, onChange) {
  const count = h('span', { class: 'count', testid: 'like-count' });
  const btn = h('button', { type: 'button', class: 'action like', testid: 'like-button' }, icon('heart', 34), count);
  const render = () => {
    const n = Number(video.favorite_count) || 0;
    btn.setAttribute('aria-pressed', String(Boolean(video.is_favorite)));
    btn.setAttribute('aria-label', `Like (${n} likes)`);
    count.textContent = formatCount(n);
    count.dataset.count = String(n);
  };
  toggleOnClick(btn, {
    item: video, flag: 'is_favorite', count: 'favorite_count', loginMessage: 'Log in to like videos',
    call: (want) => api.favorite(video.id, want), render, onChange,
  });
  btn.refresh = render;
  render();
  return btn;
}

function commentButton(video) {
  const count = h('span', { class: 'count', testid: 'comment-count' });
  const btn = h('button', { type: 'button', class: 'action', testid: 'comment-button' }, icon('comment', 32), count);
  const render = () => {
    const n = Number(video.comment_count) || 0;
    btn.setAttribute('aria-label', `Comments (${n})`);
    count.textContent = formatCount(n);
    count.dataset.count = String(n);
  };
  btn.addEventListener('click', () => openComments(video, render));
  render();
  return btn;
}

function makeVideo(video, extra = {}) {
  const el = h('video', {
    src: video.play_url,
    poster: video.cover_url,
    playsinline: true,
    loop: true,
    preload: 'metadata',
    'aria-label': `Video: ${video.title}`,
    ...extra,
  });
  el.muted = !soundOn;
  el.defaultMuted = !soundOn;
  return el;
}

function feedItem(video, feed) {
  const player = makeVideo(video, { testid: 'feed-video' });
  const playHint = h('button', { type: 'button', class: 'play-hint', 'aria-label': 'Play video', hidden: true }, icon('play', 64));
  const mute = h('button', { type: 'button', class: 'action', testid: 'mute-button' });
  const renderMute = () => {
    mute.replaceChildren(icon(soundOn ? 'volumeOn' : 'volumeOff', 30));
    mute.setAttribute('aria-label', soundOn ? 'Mute sound' : 'Turn sound on');
    mute.setAttribute('aria-pressed', String(soundOn));
  };
  renderMute();
  mute.addEventListener('click', () => {
    soundOn = !soundOn;
    feed.applySound();
  });

  const toggle = () => {
    if (player.paused) player.play().catch(() => {});
    else player.pause();
  };
  player.addEventListener('click', toggle);
  playHint.addEventListener('click', toggle);
  player.addEventListener('pause', () => { playHint.hidden = false; });
  player.addEventListener('play', () => { playHint.hidden = true; });

  const author = video.author;
  const item = h('article', {
    class: 'feed-item', testid: 'feed-item',
    dataset: { videoId: String(video.id) },
    'aria-label': `${video.title} by ${author.name}`,
  },
  player, playHint,
  h('div', { class: 'feed-meta' },
    h('a', { href: `#/user/${author.id}`, class: 'feed-author', testid: 'feed-author' }, `@${author.name}`),
    h('p', { class: 'feed-title', testid: 'feed-title' }, video.title)),
  h('div', { class: 'feed-actions' },
    h('a', { href: `#/user/${author.id}`, class: 'action author-avatar', 'aria-label': `Profile of ${author.name}` }, avatar(author, 44)),
    likeButton(video), commentButton(video), mute));
  item.player = player;
  item.renderMute = renderMute;
  return item;
}

export function createFeed(root) {
  const list = h('div', { class: 'feed-list', testid: 'feed-list', tabindex: '-1' });
  const tabLatest = h('button', { type: 'button', role: 'tab', id: 'tab-latest', 'aria-controls': 'feed-list', 'aria-selected': 'true', testid: 'feed-tab-latest' }, 'Latest');
  const tabTop = h('button', { type: 'button', role: 'tab', id: 'tab-top', 'aria-controls': 'feed-list', 'aria-selected': 'false', testid: 'feed-tab-top' }, 'Most liked');
  list.id = 'feed-list';
  list.setAttribute('role', 'tabpanel');
  root.append(h('div', { class: 'feed-tabs', role: 'tablist', 'aria-label': 'Feed' }, tabLatest, tabTop), list);

  const state = { mode: 'latest', nextTime: 0, done: false, loading: false, ids: new Set(), visible: false, active: null, stale: true, gen: 0 };

  const io = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (e.isIntersecting && e.intersectionRatio >= 0.6) setActive(e.target);
      else if (e.target === state.active && e.intersectionRatio < 0.6) e.target.player.pause();
    }
  }, { root: list, threshold: [0, 0.6] });

  function items() { return [...list.querySelectorAll('.feed-item')]; }

  function setActive(item) {
    state.active = item;
    const all = items();
    const idx = all.indexOf(item);
    for (const [i, it] of all.entries()) {
      if (it !== item) it.player.pause();
      if (i === idx + 1) it.player.preload = 'auto';
    }
    if (state.visible) playActive();
    if (state.mode === 'latest' && idx >= all.length - 3) loadMore();
  }

  function playActive() {
    const p = state.active?.player;
    if (!p) return;
    p.muted = !soundOn;
    p.play().catch(() => {
      // Autoplay with sound can be refused: fall back to muted, then to a play button.
      if (!p.muted) {
        soundOn = false;
        applySound();
        p.play().catch(() => {});
      }
    });
  }

  function applySound() {
    for (const it of items()) {
      it.player.muted = !soundOn;
      it.renderMute();
    }
  }
  const ctl = { applySound };

  async function loadMore() {
    if (state.loading || state.done) return;
    state.loading = true;
    const gen = state.gen;
    const loadingEl = spinner('Loading videos');
    list.append(loadingEl);
    try {
      const body = state.mode === 'top' ? await api.rankVideos(30) : await api.feed(state.nextTime);
      if (gen !== state.gen) return;
      const videos = body.video_list || [];
      if (state.mode === 'top' || videos.length === 0) state.done = true;
      if (state.mode === 'latest' && body.next_time) state.nextTime = body.next_time;
      for (const v of videos) {
        const id = String(v.id);
        if (state.ids.has(id)) continue;
        state.ids.add(id);
        const item = feedItem(v, ctl);
        list.append(item);
        io.observe(item);
      }
      if (!items().length) {
        list.append(emptyState('No videos yet.',
          h('a', { href: '#/publish', class: 'button primary' }, 'Publish the first one')));
      }
    } catch (err) {
      if (gen !== state.gen) return;
      state.done = true;
      list.append(emptyState(err.message, h('button', { type: 'button', class: 'button', onclick: () => reload() }, 'Try again')));
      toast(err.message, 'error');
    } finally {
      loadingEl.remove();
      if (gen === state.gen) state.loading = false;
    }
  }

  function reload() {
    state.gen += 1;
    for (const it of items()) { io.unobserve(it); it.player.pause(); it.player.removeAttribute('src'); it.player.load(); }
    list.replaceChildren();
    Object.assign(state, { nextTime: 0, done: false, loading: false, ids: new Set(), active: null, stale: false });
    list.scrollTop = 0;
    return loadMore();
  }

  function selectTab(mode) {
    if (state.mode === mode) return;
    state.mode = mode;
    tabLatest.setAttribute('aria-selected', String(mode === 'latest'));
    tabTop.setAttribute('aria-selected', String(mode === 'top'));
    list.setAttribute('aria-labelledby', mode === 'latest' ? 'tab-latest' : 'tab-top');
    reload();
  }
  tabLatest.addEventListener('click', () => selectTab('latest'));
  tabTop.addEventListener('click', () => selectTab('top'));
  list.setAttribute('aria-labelledby', 'tab-latest');

  function step(delta) {
    const all = items();
    const idx = Math.max(0, all.indexOf(state.active));
    const next = all[Math.min(all.length - 1, Math.max(0, idx + delta))];
    next?.scrollIntoView({ behavior: 'smooth', block: 'start' });
  }
  document.addEventListener('keydown', (e) => {
    if (!state.visible || e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target.closest?.('input, textarea, select, dialog, [contenteditable]')) return;
    if (e.key === 'ArrowDown' || e.key === 'j' || e.key === 'PageDown') { e.preventDefault(); step(1); }
    else if (e.key === 'ArrowUp' || e.key === 'k' || e.key === 'PageUp') { e.preventDefault(); step(-1); }
    else if (e.key === 'm') { soundOn = !soundOn; applySound(); }
  });

  return {
    show() {
      state.visible = true;
      root.hidden = false;
      if (state.stale) reload();
      else playActive();
    },
    hide() {
      state.visible = false;
      root.hidden = true;
      for (const it of items()) it.player.pause();
    },
    markStale() { state.stale = true; },
    reload,
  };
}

// A modal player for one video (opened from profile grids).
let playerDialog = null;
export function openPlayer(video) {
  if (!playerDialog) {
    playerDialog = h('dialog', { class: 'player-dialog', 'aria-labelledby': 'player-title', testid: 'player-dialog' });
    playerDialog.addEventListener('close', () => {
      playerDialog.querySelector('video')?.pause();
      playerDialog.replaceChildren();
    });
    playerDialog.addEventListener('click', (e) => { if (e.target === playerDialog) playerDialog.close(); });
    document.body.append(playerDialog);
  }
  const player = makeVideo(video, { controls: true, autoplay: true, testid: 'player-video' });
  player.muted = false;
  const closeBtn = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close video' }, icon('close'));
  closeBtn.addEventListener('click', () => playerDialog.close());
  playerDialog.replaceChildren(
    h('header', { class: 'sheet-header' },
      h('h2', { id: 'player-title' }, video.title), closeBtn),
    player,
    h('div', { class: 'player-bar' },
      h('a', { href: `#/user/${video.author.id}`, class: 'feed-author', onclick: () => playerDialog.close() }, `@${video.author.name}`),
      likeButton(video), commentButton(video)));
  playerDialog.showModal();
  player.play().catch(() => { player.muted = true; player.play().catch(() => {}); });
}

