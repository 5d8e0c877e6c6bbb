// The comments panel: a modal dialog listing a video's comments, with a form to post.
import { api, session } from './api.js';
import { h, icon, avatar, toast, spinner, needLogin } from './ui.js';

let dialog = null;
let current = null; // { video, onChange }

function build() {
  const title = h('h2', { id: 'comments-title' }, 'Comments');
  const closeBtn = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close comments', testid: 'comments-close' }, icon('close'));
  const list = h('ul', { class: 'comment-list', testid: 'comment-list', 'aria-label': 'Comments', 'aria-live': 'polite' });
  const input = h('textarea', {
    id: 'comment-input', name: 'comment_text', rows: 1, maxlength: 500,
    placeholder: 'Add a comment…', testid: 'comment-input', required: true,
  });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'comment-submit' }, 'Post');
  const error = h('p', { class: 'form-error', role: 'alert', testid: 'comment-error' });
  const form = h('form', { class: 'comment-form', testid: 'comment-form' },
    h('label', { for: 'comment-input', class: 'sr-only' }, 'Add a comment'),
    input, submit, error);
  const loginHint = h('p', { class: 'login-hint', hidden: true },
    h('a', { href: '#/login', onclick: (e) => { e.preventDefault(); close(); needLogin(); } }, 'Log in'), ' to comment.');

  dialog = h('dialog', { class: 'sheet', 'aria-labelledby': 'comments-title', testid: 'comments-panel' },
    h('header', { class: 'sheet-header' }, title, closeBtn), list, form, loginHint);
  document.body.append(dialog);

  closeBtn.addEventListener('click', close);
  dialog.addEventListener('close', () => { current = null; });
  dialog.addEventListener('click', (e) => { if (e.target === dialog) close(); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!current) return;
    if (!session.loggedIn) { close(); needLogin('Log in to comment'); return; }
    const text = input.value.trim();
    error.textContent = '';
    if (!text) { error.textContent = 'Write something first.'; return; }
    submit.disabled = true;
    try {
      const body = await api.comment(current.video.id, text);
      input.value = '';
      list.querySelector('.empty')?.remove();
      list.prepend(commentItem(body.comment, current.video));
      current.video.comment_count = (Number(current.video.comment_count) || 0) + 1;
      updateTitle();
      current.onChange?.();
    } catch (err) {
      error.textContent = err.message;
    } finally {
      submit.disabled = false;
    }
  });
  dialog.parts = { title, list, input, form, loginHint, error };
}

function updateTitle() {
  dialog.parts.title.textContent = `Comments (${current.video.comment_count})`;
}

function commentItem(c, video) {
  const mine = session.loggedIn && String(c.user.id) === session.userId;
  const del = mine ? h('button', {
    type: 'button', class: 'link-button', testid: 'comment-delete', 'aria-label': 'Delete comment',
    onclick: async (e) => {
      e.currentTarget.disabled = true;
      try {
        await api.deleteComment(video.id, c.id);
        li.remove();
        video.comment_count = Math.max(0, (Number(video.comment_count) || 0) - 1);
        updateTitle();
        current?.onChange?.();
      } catch (err) {
        toast(err.message, 'error');
        e.currentTarget.disabled = false;
      }
    },
  }, 'Delete') : null;
  const li = h('li', { class: 'comment', testid: 'comment-item', dataset: { commentId: String(c.id) } },
    avatar(c.user, 32),
    h('div', { class: 'comment-body' },
      h('div', { class: 'comment-meta' },
        h('a', {
          href: `#/user/${c.user.id}`, class: 'comment-author',
          onclick: () => close(),
        }, c.user.name),
        h('span', { class: 'comment-date' }, c.create_date),
        del),
      h('p', { class: 'comment-text', testid: 'comment-text' }, c.content)));
  return li;
}

export function openComments(video, onChange) {
  if (!dialog) build();
  current = { video, onChange };
  const { list, form, loginHint, error } = dialog.parts;
  error.textContent = '';
  form.hidden = !session.loggedIn;
  loginHint.hidden = session.loggedIn;
  updateTitle();
  list.replaceChildren(spinner('Loading comments'));
  if (!dialog.open) dialog.showModal();
  if (session.loggedIn) dialog.parts.input.focus();
  const forVideo = video;
  api.commentList(video.id).then((body) => {
    if (current?.video !== forVideo) return;
    const items = body.comment_list || [];
    list.replaceChildren(...items.map((c) => commentItem(c, video)));
    if (!items.length) list.append(h('li', { class: 'empty' }, 'No comments yet. Be the first.'));
  }, (err) => {
    if (current?.video !== forVideo) return;
    list.replaceChildren(h('li', { class: 'empty', role: 'alert' }, err.message));
  });
}

export function close() {
  if (dialog?.open) dialog.close();
  current = null;
}

