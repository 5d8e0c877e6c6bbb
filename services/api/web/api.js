// Thin client for the public app API (see the HTTP contract).
// Base URL is the page's own origin; parameters travel in the query string (GET)
// or an urlencoded form body (POST), the token as the `token` parameter.

const TOKEN_KEY = 'douyin.token';
const USER_KEY = 'douyin.user_id';

export class ApiError extends Error {
  constructor(message, code = -1) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
  }
}

// Ids are int64 on the wire. Keep any integer beyond 2^53 as its exact decimal
// text instead of a rounded number; the client only ever uses ids as strings.
function reviveBigInt(_key, value, context) {
  if (typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value)
      && context && typeof context.source === 'string') {
    return context.source;
  }
  return value;
}

export function parseJson(text) {
  return JSON.parse(text, reviveBigInt);
}

export const session = {
  get token() { return localStorage.getItem(TOKEN_KEY) || ''; },
  get userId() { return localStorage.getItem(USER_KEY) || ''; },
  get loggedIn() { return this.token !== '' && this.userId !== ''; },
  save(token, userId) {
    localStorage.setItem(TOKEN_KEY, token);
    localStorage.setItem(USER_KEY, String(userId));
    window.dispatchEvent(new CustomEvent('session-change'));
  },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(USER_KEY);
    window.dispatchEvent(new CustomEvent('session-change'));
  },
};

function toParams(params, withToken) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null) p.append(k, String(v));
  }
  if (withToken && session.token) p.set('token', session.token);
  return p;
}

async function readBody(res) {
  const text = await res.text();
  try {
    return parseJson(text);
  } catch {
    throw new ApiError(`The server answered HTTP ${res.status} without a JSON body`);
  }
}

function check(body) {
  if (!body || typeof body !== 'object') throw new ApiError('Empty answer from the server');
  if (body.status_code !== 0) {
    throw new ApiError(body.status_msg || `Request refused (status ${body.status_code})`, body.status_code);
  }
  return body;
}

async function request(method, path, params, { token = true } = {}) {
  const p = toParams(params, token);
  let url = path;
  const init = { method, headers: { Accept: 'application/json' } };
  if (method === 'GET') {
    const qs = p.toString();
    if (qs) url += `?${qs}`;
  } else {
    init.body = p; // application/x-www-form-urlencoded
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch {
    throw new ApiError('Cannot reach the server');
  }
  return check(await readBody(res));
}

const get = (path, params, opts) => request('GET', path, params, opts);
const post = (path, params, opts) => request('POST', path, params, opts);

// Optional-token routes refuse an invalid token; a stale one (expired, or from a
// server that was reset) should not lock the visitor out of public pages.
async function getOptional(path, params) {
  if (!session.token) return get(path, params, { token: false });
  try {
    return await get(path, params);
  } catch (e) {
    if (!(e instanceof ApiError) || e.code === -1) throw e;
    const probe = await get('/douyin/user/', {}).then(() => true, () => false);
    if (probe) throw e;
    session.clear();
    return get(path, params, { token: false });
  }
}

export const api = {
  feed: (latestTime) => getOptional('/douyin/feed/', { latest_time: latestTime || undefined }),
  register: (username, password) => post('/douyin/user/register/', { username, password }, { token: false }),
  login: (username, password) => post('/douyin/user/login/', { username, password }, { token: false }),
  user: (userId) => get('/douyin/user/', { user_id: userId }),
  userPublic: (userId) => getOptional('/douyin/user/', { user_id: userId }),
  publishList: (userId) => getOptional('/douyin/publish/list/', { user_id: userId }),
  favoriteList: (userId) => getOptional('/douyin/favorite/list/', { user_id: userId }),
  favorite: (videoId, like) => post('/douyin/favorite/action/', { video_id: videoId, action_type: like ? 1 : 2 }),
  commentList: (videoId) => getOptional('/douyin/comment/list/', { video_id: videoId }),
  comment: (videoId, text) => post('/douyin/comment/action/', { video_id: videoId, action_type: 1, comment_text: text }),
  deleteComment: (videoId, commentId) => post('/douyin/comment/action/', { video_id: videoId, action_type: 2, comment_id: commentId }),
  follow: (userId, on) => post('/douyin/relation/action/', { to_user_id: userId, action_type: on ? 1 : 2 }),
  followList: (userId) => getOptional('/douyin/relation/follow/list/', { user_id: userId }),
  followerList: (userId) => getOptional('/douyin/relation/follower/list/', { user_id: userId }),
  friendList: (userId) => get('/douyin/relation/friend/list/', { user_id: userId }),
  chat: (toUserId, preMsgTime) => get('/douyin/message/chat/', { to_user_id: toUserId, pre_msg_time: preMsgTime || 0 }),
  sendMessage: (toUserId, content) => post('/douyin/message/action/', { to_user_id: toUserId, action_type: 1, content }),
  rankVideos: (limit) => getOptional('/douyin/rank/videos/', { limit }),
  rankUsers: (limit) => getOptional('/douyin/rank/users/', { limit }),
};

// Multipart upload through XMLHttpRequest, for upload progress events.
export function publishVideo(file, title, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append('token', session.token);
    form.append('title', title);
    form.append('data', file, file.name || 'video.mp4');
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/douyin/publish/action/');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      let body;
      try {
        body = parseJson(xhr.responseText);
      } catch {
        reject(new ApiError(`The server answered HTTP ${xhr.status} without a JSON body`));
        return;
      }
      try {
        resolve(check(body));
      } catch (e) {
        reject(e);
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError('Upload failed: cannot reach the server')));
    xhr.addEventListener('abort', () => reject(new ApiError('Upload cancelled')));
    xhr.send(form);
  });
}

// Live chat push: one socket per logged-in page, reconnecting with backoff.
// Listeners get each Message object; status listeners get 'connecting' | 'open' | 'closed'.
export class ChatSocket {
  constructor() {
    this.listeners = new Set();
    this.statusListeners = new Set();
    this.status = 'closed';
    this.ws = null;
    this.retry = 0;
    this.timer = null;
    this.token = '';
  }

  onMessage(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  onStatus(fn) { this.statusListeners.add(fn); fn(this.status); return () => this.statusListeners.delete(fn); }

  setStatus(s) {
    this.status = s;
    for (const fn of this.statusListeners) fn(s);
  }

  // Connect for the current session (or disconnect when logged out).
  sync() {
    const token = session.loggedIn ? session.token : '';
    if (token === this.token && (this.ws || this.timer)) return;
    this.close();
    this.token = token;
    if (token) this.open();
  }

  open() {
    clearTimeout(this.timer);
    this.timer = null;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    // A reconnect asks for what arrived while it was away (newest create_time held).
    const since = this.newest ? `&since=${this.newest}` : '';
    const url = `${scheme}//${location.host}/douyin/message/ws/?token=${encodeURIComponent(this.token)}${since}`;
    this.setStatus('connecting');
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      this.retry = 0;
      this.setStatus('open');
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws || typeof ev.data !== 'string') return;
      let msg;
      try { msg = parseJson(ev.data); } catch { return; }
      if (!msg || msg.id === undefined || msg.content === undefined) return;
      if (typeof msg.create_time === 'number') this.newest = Math.max(this.newest || 0, msg.create_time);
      for (const fn of this.listeners) fn(msg);
    });
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setStatus('closed');
      if (!this.token) return;
      const delay = Math.min(30000, 1000 * 2 ** this.retry++);
      this.timer = setTimeout(() => this.open(), delay);
    });
  }

  close() {
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    this.token = '';
    this.newest = 0;
    if (ws) ws.close();
    this.setStatus('closed');
  }
}
