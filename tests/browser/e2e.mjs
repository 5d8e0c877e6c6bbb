// End-to-end test of the web client served by the gateway, in headless Chromium.
//
//   DOUYIN_URL=http://127.0.0.1:8080 node e2e.mjs
//
// Env: DOUYIN_URL (required), ARTIFACTS_DIR (screenshots go to $ARTIFACTS_DIR/screenshots;
// default a fresh temp dir), CHROMIUM_PATH (default /usr/bin/chromium),
// E2E_TIMEOUT_MS (per wait, default 20000).
// Installs nothing: .ci/browser.sh provides Chromium, ffmpeg and node_modules.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.DOUYIN_URL || '').replace(/\/+$/, '');
if (!BASE) {
  console.error('DOUYIN_URL is not set (e.g. DOUYIN_URL=http://127.0.0.1:8080)');
  process.exit(2);
}
const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS || 20000);
const artifacts = process.env.ARTIFACTS_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'douyin-e2e-'));
const shotsDir = path.join(artifacts, 'screenshots');
fs.mkdirSync(shotsDir, { recursive: true });
console.log(`# screenshots: ${shotsDir}`);
console.log(`# server: ${BASE}`);

const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage', '--autoplay-policy=no-user-gesture-required',
];

// ---------------------------------------------------------------- runner
const results = [];
const pages = {}; // label -> page, screenshotted after every step
let stopped = false;
let shotNo = 0;

class Check extends Error {}
function check(cond, message) { if (!cond) throw new Check(message); }

async function screenshots(name) {
  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
  shotNo += 1;
  for (const [label, page] of Object.entries(pages)) {
    if (page.isClosed()) continue;
    const file = path.join(shotsDir, `${String(shotNo).padStart(2, '0')}-${label}-${slug}.png`);
    await page.screenshot({ path: file, timeout: 10000 }).catch((e) => console.log(`#   (screenshot ${file} failed: ${e.message.split('\n')[0]})`));
  }
}

// A failed step stops the scenario unless it is marked { fatal: false }
// (checks that later steps do not depend on).
async function step(name, fn, { fatal = true } = {}) {
  const n = results.length + 1;
  if (stopped) {
    results.push({ name, status: 'skipped' });
    console.log(`ok ${n} - ${name} # SKIP an earlier step failed`);
    return;
  }
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, status: 'passed' });
    console.log(`ok ${n} - ${name} (${Date.now() - t0} ms)`);
  } catch (err) {
    results.push({ name, status: 'failed' });
    if (fatal) stopped = true;
    console.log(`not ok ${n} - ${name} (${Date.now() - t0} ms)`);
    const text = err instanceof Check ? err.message : (err.stack || String(err));
    for (const line of text.split('\n').slice(0, 12)) console.log(`#   ${line}`);
  }
  await screenshots(name);
}

// ---------------------------------------------------------------- helpers
const stamp = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;
const userA = { name: `e2e_a_${stamp}`, password: 'secret-a-123' };
const userB = { name: `e2e_b_${stamp}`, password: 'secret-b-123' };
const videoTitle = `e2e clip ${stamp}`;
const commentText = `Nice video! ${stamp}`;
const messageAB = `Hello B, from A ${stamp}`;
const messageBA = `Hi A, B here ${stamp}`;

const tid = (id) => `[data-testid="${id}"]`;
const diagnostics = {}; // label -> lines

async function openContext(browser, label, viewport, extra = {}) {
  const context = await browser.newContext({ viewport, ...extra });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  diagnostics[label] = [];
  const log = (line) => { diagnostics[label].push(line); if (diagnostics[label].length > 200) diagnostics[label].shift(); };
  page.on('pageerror', (e) => log(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') log(`console.${m.type()}: ${m.text()}`); });
  page.on('requestfailed', (r) => log(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) log(`http ${r.status()}: ${r.request().method()} ${r.url()}`); });
  pages[label] = page;
  return { context, page };
}

async function count(locator) {
  return Number(await locator.getAttribute('data-count'));
}

async function waitCount(locator, expected, what) {
  try {
    await locator.page().waitForFunction(([el, want]) => el && Number(el.dataset.count) === want,
      [await locator.elementHandle(), expected], { timeout: TIMEOUT });
  } catch {
    throw new Check(`${what}: expected ${expected}, shown ${await locator.getAttribute('data-count')}`);
  }
}

async function register(page, user) {
  await page.goto(`${BASE}/#/login`);
  await page.locator(tid('auth-username')).fill(user.name);
  await page.locator(tid('auth-password')).fill(user.password);
  await page.locator(tid('register-submit')).click();
  await page.waitForFunction(() => localStorage.getItem('douyin.token') && localStorage.getItem('douyin.user_id'), null, { timeout: TIMEOUT })
    .catch(async () => { throw new Check(`register refused: "${await page.locator(tid('auth-error')).textContent()}"`); });
  await page.waitForFunction(() => location.hash === '#/' || location.hash === '', null, { timeout: TIMEOUT });
  user.id = await page.evaluate(() => localStorage.getItem('douyin.user_id'));
  check(/^\d+$/.test(user.id), `user_id stored is not an integer id: ${user.id}`);
}

// Every interactive control visible on the page has an accessible name.
async function assertAccessibleNames(page, where) {
  const unnamed = await page.evaluate(() => {
    const visible = (el) => {
      const r = el.getBoundingClientRect();
      return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden';
    };
    const textOf = (el) => (el.innerText || el.textContent || '').trim();
    const nameOf = (el) => {
      const label = el.getAttribute('aria-label');
      if (label && label.trim()) return label;
      const by = el.getAttribute('aria-labelledby');
      if (by) return by.split(/\s+/).map((id) => textOf(document.getElementById(id) || document.createElement('i'))).join(' ').trim();
      if (el.labels && el.labels.length) return [...el.labels].map(textOf).join(' ').trim();
      if (el.matches('button, a, [role="tab"]')) {
        const t = textOf(el) || [...el.querySelectorAll('img[alt]')].map((i) => i.alt).join(' ');
        if (t) return t;
      }
      return el.getAttribute('title') || '';
    };
    return [...document.querySelectorAll('button, a[href], input, textarea, select, video, [role="tab"], [role="log"], dialog[open]')]
      .filter((el) => el.type !== 'hidden' && visible(el) && !nameOf(el))
      .map((el) => el.outerHTML.slice(0, 160));
  });
  check(unnamed.length === 0, `controls without an accessible name on ${where}:\n${unnamed.join('\n')}`);
}

function makeClip() {
  const out = path.join(artifacts, `clip-${stamp}.mp4`);
  try {
    execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=duration=1:size=320x240:rate=10',
      '-pix_fmt', 'yuv420p', out], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60000 });
    return out;
  } catch (e) {
    const fixture = path.join(HERE, 'fixtures', 'clip.mp4');
    console.log(`# ffmpeg unavailable (${e.code || e.message.split('\n')[0]}); using ${fixture}`);
    return fixture;
  }
}

// ---------------------------------------------------------------- scenario
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: CHROMIUM_FLAGS,
});
let exitCode = 1;
try {
  const A = await openContext(browser, 'a-phone', { width: 390, height: 844 }, { isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const pa = A.page;
  let B = null;
  let pb = null;
  let firstVideoId = null;

  await step('app shell loads from the gateway', async () => {
    const res = await pa.goto(`${BASE}/`);
    check(res && res.ok(), `GET / answered ${res && res.status()}`);
    check((res.headers()['content-type'] || '').includes('text/html'), `GET / content-type is ${res.headers()['content-type']}`);
    await pa.locator(tid('nav-feed')).waitFor();
    await pa.locator(`${tid('feed-item')}, ${tid('empty-state')}`).first().waitFor();
  });

  await step('a refused login shows the server status_msg', async () => {
    await pa.locator(tid('nav-me')).click();
    await pa.locator(tid('auth-username')).fill(`nobody_${stamp}`);
    await pa.locator(tid('auth-password')).fill('wrong-password');
    await pa.locator(tid('login-submit')).click();
    const err = pa.locator(tid('auth-error'));
    await pa.waitForFunction((el) => el.textContent.trim().length > 0, await err.elementHandle());
    console.log(`#   status_msg: ${await err.textContent()}`);
    check(!(await pa.evaluate(() => localStorage.getItem('douyin.token'))), 'a token was stored after a refused login');
    await assertAccessibleNames(pa, 'the login page');
  });

  await step('user A registers (phone viewport)', async () => {
    await register(pa, userA);
    console.log(`#   user A id ${userA.id}`);
  });

  await step('the feed shows demo videos and the first one plays', async () => {
    await pa.locator(tid('feed-item')).first().waitFor();
    const first = pa.locator(tid('feed-item')).first();
    firstVideoId = await first.getAttribute('data-video-id');
    const video = first.locator(tid('feed-video'));
    const src = await video.evaluate((v) => v.currentSrc || v.src);
    check(src, 'first video has no src');
    check(await video.getAttribute('poster'), 'first video has no poster (cover_url)');
    console.log(`#   first video ${firstVideoId}: ${src}`);
    try {
      await pa.waitForFunction((v) => !v.error && (v.readyState >= 2 || v.currentTime > 0), await video.elementHandle(), { timeout: TIMEOUT });
    } catch {
      const state = await video.evaluate((v) => ({ readyState: v.readyState, networkState: v.networkState, error: v.error && `${v.error.code} ${v.error.message}`, paused: v.paused }));
      throw new Check(`first video did not load: ${JSON.stringify(state)} (play_url ${src})`);
    }
    const playing = await video.evaluate((v) => new Promise((resolve) => {
      if (!v.paused && v.currentTime > 0) { resolve(true); return; }
      v.addEventListener('timeupdate', () => resolve(true), { once: true });
      v.play().catch(() => {});
      setTimeout(() => resolve(v.currentTime > 0), 8000);
    }));
    check(playing, 'first video never advanced its playback position');
    await assertAccessibleNames(pa, 'the feed');
  });

  await step('liking a video increases its count, and the like persists', async () => {
    const item = pa.locator(`${tid('feed-item')}[data-video-id="${firstVideoId}"]`);
    const like = item.locator(tid('like-button'));
    const before = await count(item.locator(tid('like-count')));
    check((await like.getAttribute('aria-pressed')) === 'false', 'a fresh user already likes the video');
    await like.click();
    await waitCount(item.locator(tid('like-count')), before + 1, 'like count after liking');
    check((await like.getAttribute('aria-pressed')) === 'true', 'like button not pressed after liking');
    await pa.reload();
    const again = pa.locator(`${tid('feed-item')}[data-video-id="${firstVideoId}"]`);
    await again.waitFor();
    await waitCount(again.locator(tid('like-count')), before + 1, 'like count from the server after reload');
    check((await again.locator(tid('like-button')).getAttribute('aria-pressed')) === 'true', 'is_favorite is false after reload');
  });

  await step('posting a comment shows it in the list', async () => {
    const item = pa.locator(`${tid('feed-item')}[data-video-id="${firstVideoId}"]`);
    const before = await count(item.locator(tid('comment-count')));
    await item.locator(tid('comment-button')).click();
    const panel = pa.locator(tid('comments-panel'));
    await panel.waitFor();
    await panel.locator(tid('comment-input')).fill(commentText);
    await panel.locator(tid('comment-submit')).click();
    await panel.locator(tid('comment-text'), { hasText: commentText }).first().waitFor()
      .catch(async () => { throw new Check(`comment not shown; error: "${await panel.locator(tid('comment-error')).textContent()}"`); });
    await assertAccessibleNames(pa, 'the comments panel');
    await screenshots('comments panel open');
    await panel.locator(tid('comments-close')).click();
    await waitCount(item.locator(tid('comment-count')), before + 1, 'comment count after posting');
    // Reopen: the list now comes from the server.
    await item.locator(tid('comment-button')).click();
    await panel.locator(tid('comment-text'), { hasText: commentText }).first().waitFor()
      .catch(() => { throw new Check('the comment list from the server does not contain the new comment'); });
    const first = await panel.locator(tid('comment-text')).first().textContent();
    check(first === commentText, `newest comment is not first in the list (first is "${first}")`);
    await panel.locator(tid('comments-close')).click();
  });

  await step('publishing a video shows upload progress and lists it on the profile', async () => {
    const clip = makeClip();
    await pa.locator(tid('nav-publish')).click();
    await pa.locator(tid('publish-form')).waitFor();
    await assertAccessibleNames(pa, 'the publish form');
    await pa.locator(tid('publish-file')).setInputFiles(clip);
    await pa.locator(tid('publish-title')).fill(videoTitle);
    await screenshots('publish form filled');
    await pa.evaluate(() => {
      window.__maxProgress = 0;
      const p = document.querySelector('[data-testid="publish-progress"]');
      new MutationObserver(() => { window.__maxProgress = Math.max(window.__maxProgress, Number(p.value)); })
        .observe(p, { attributes: true, attributeFilter: ['value'] });
    });
    await pa.locator(tid('publish-submit')).click();
    await pa.waitForFunction((id) => location.hash === `#/user/${id}`, userA.id, { timeout: 60000 })
      .catch(async () => { throw new Check(`publish did not finish; error: "${await pa.locator(tid('publish-error')).textContent().catch(() => '')}"`); });
    const maxProgress = await pa.evaluate(() => window.__maxProgress);
    check(maxProgress === 100, `upload progress reached ${maxProgress}%, not 100%`);
    await pa.locator(tid('profile-video-title'), { hasText: videoTitle }).first().waitFor()
      .catch(() => { throw new Check(`"${videoTitle}" is not in the profile's publish list`); });
    check(await count(pa.locator(tid('stat-work_count'))) >= 1, 'work_count is 0 after publishing');
    await assertAccessibleNames(pa, 'the profile');
  });

  await step('user B registers (desktop viewport) and sees the new video first', async () => {
    B = await openContext(browser, 'b-desktop', { width: 1280, height: 800 });
    pb = B.page;
    await register(pb, userB);
    console.log(`#   user B id ${userB.id}`);
    const first = pb.locator(tid('feed-item')).first();
    await first.waitFor();
    const title = await first.locator(tid('feed-title')).textContent();
    check(title === videoTitle, `newest video in B's feed is "${title}", expected "${videoTitle}"`);
  });

  await step('layouts fit phone and desktop viewports', async () => {
    for (const [page, label] of [[pa, 'phone'], [pb, 'desktop']]) {
      const m = await page.evaluate(() => {
        const nav = document.querySelector('.nav').getBoundingClientRect();
        return { overflow: document.documentElement.scrollWidth - innerWidth, nav: { x: nav.x, y: nav.y, w: nav.width, h: nav.height }, vw: innerWidth, vh: innerHeight };
      });
      check(m.overflow <= 0, `${label}: page scrolls horizontally by ${m.overflow}px`);
      if (label === 'phone') check(Math.abs(m.nav.y + m.nav.h - m.vh) <= 2 && m.nav.w === m.vw, `phone: navigation is not a bottom bar: ${JSON.stringify(m.nav)}`);
      else check(m.nav.x === 0 && Math.abs(m.nav.h - m.vh) <= 2 && m.nav.w < 400, `desktop: navigation is not a side bar: ${JSON.stringify(m.nav)}`);
    }
  }, { fatal: false });

  await step('B opens A\'s profile from the feed and follows A', async () => {
    const item = pb.locator(tid('feed-item')).filter({ has: pb.locator(tid('feed-title'), { hasText: videoTitle }) }).first();
    await item.locator(tid('feed-author')).click();
    await pb.waitForFunction((id) => location.hash === `#/user/${id}`, userA.id);
    await pb.locator(tid('profile-name')).filter({ hasText: userA.name }).waitFor();
    const followers = await count(pb.locator(tid('stat-follower_count')));
    const btn = pb.locator(tid('follow-button'));
    check((await btn.textContent()) === 'Follow', `follow button reads "${await btn.textContent()}"`);
    await btn.click();
    await pb.waitForFunction((el) => el.textContent === 'Unfollow', await btn.elementHandle());
    await waitCount(pb.locator(tid('stat-follower_count')), followers + 1, 'A\'s follower count');
    await pb.reload();
    await pb.locator(tid('profile-name')).filter({ hasText: userA.name }).waitFor();
    check((await pb.locator(tid('follow-button')).textContent()) === 'Unfollow', 'is_follow is false after reload');
    await waitCount(pb.locator(tid('stat-follower_count')), followers + 1, 'A\'s follower count from the server');
    await assertAccessibleNames(pb, 'another user\'s profile');
  });

  await step('A follows B back from the followers list, making them friends', async () => {
    await pa.locator(tid('nav-me')).click();
    await pa.locator(tid('profile-name')).filter({ hasText: userA.name }).waitFor();
    await waitCount(pa.locator(tid('stat-follower_count')), 1, 'A\'s follower count on A\'s profile');
    await pa.locator(tid('stat-link-followers')).click();
    const row = pa.locator(`${tid('user-row')}[data-user-id="${userB.id}"]`);
    await row.waitFor().catch(() => { throw new Check('B is not in A\'s follower list'); });
    await row.locator(tid('follow-button')).click();
    await pa.waitForFunction((el) => el.textContent === 'Unfollow', await row.locator(tid('follow-button')).elementHandle());
    await pa.locator(tid('nav-friends')).click();
    await pa.locator(`${tid('friend-row')}[data-user-id="${userB.id}"]`).waitFor()
      .catch(() => { throw new Check('B is not in A\'s friend list'); });
    await pb.locator(tid('nav-friends')).click();
    await pb.locator(`${tid('friend-row')}[data-user-id="${userA.id}"]`).waitFor()
      .catch(() => { throw new Check('A is not in B\'s friend list'); });
  });

  await step('a chat message from A arrives live in B\'s open chat', async () => {
    await pb.locator(`${tid('friend-row')}[data-user-id="${userA.id}"] ${tid('friend-chat-link')}`).click();
    await pa.locator(`${tid('friend-row')}[data-user-id="${userB.id}"] ${tid('friend-chat-link')}`).click();
    for (const [page, who] of [[pa, 'A'], [pb, 'B']]) {
      await page.locator(`${tid('chat-live')}[data-state="open"]`).waitFor()
        .catch(async () => { throw new Check(`${who}'s chat WebSocket is not open (state ${await page.locator(tid('chat-live')).getAttribute('data-state')})`); });
      await page.locator(tid('chat-log')).locator(`${tid('chat-message')}, .chat-empty`).first().waitFor();
    }
    await assertAccessibleNames(pb, 'the chat view');
    await screenshots('chats open');
    await pa.locator(tid('chat-input')).fill(messageAB);
    await pa.locator(tid('chat-send')).click();
    const received = pb.locator(tid('chat-message')).filter({ hasText: messageAB });
    await received.waitFor({ timeout: 10000 }).catch(() => { throw new Check('B did not receive A\'s message within 10 s'); });
    await pb.waitForFunction((el) => el.dataset.ws === '1', await received.elementHandle(), { timeout: 5000 })
      .catch(() => { throw new Check('B got the message by polling only: no WebSocket push arrived'); });
    check((await received.getAttribute('data-from')) === 'them', 'message shown on the wrong side in B\'s view');
    const sent = pa.locator(tid('chat-message')).filter({ hasText: messageAB });
    await sent.waitFor({ timeout: 10000 });
    check((await sent.getAttribute('data-from')) === 'me', 'sent message shown on the wrong side in A\'s view');
  });

  await step('B replies live, and each message is shown exactly once', async () => {
    await pb.locator(tid('chat-input')).fill(messageBA);
    await pb.locator(tid('chat-send')).click();
    const reply = pa.locator(tid('chat-message')).filter({ hasText: messageBA });
    await reply.waitFor({ timeout: 10000 }).catch(() => { throw new Check('A did not receive B\'s reply within 10 s'); });
    await pa.waitForFunction((el) => el.dataset.ws === '1', await reply.elementHandle(), { timeout: 5000 })
      .catch(() => { throw new Check('A got the reply by polling only: no WebSocket push arrived'); });
    // Let at least one poll round pass so duplicates would show up.
    await pa.waitForTimeout(3500);
    for (const [page, who] of [[pa, 'A'], [pb, 'B']]) {
      const texts = await page.locator(tid('chat-text')).allTextContents();
      check(JSON.stringify(texts) === JSON.stringify([messageAB, messageBA]), `${who}'s chat shows ${JSON.stringify(texts)}`);
    }
    // The friend list carries the latest message.
    await pa.locator(tid('nav-friends')).click();
    const row = pa.locator(`${tid('friend-row')}[data-user-id="${userB.id}"]`);
    await row.filter({ hasText: messageBA }).waitFor().catch(async () => { throw new Check(`A's friend row shows "${await row.textContent()}", not the latest message`); });
  });

  await step('no uncaught script errors in either page', async () => {
    const errors = Object.entries(diagnostics).flatMap(([label, lines]) => lines.filter((l) => l.startsWith('pageerror')).map((l) => `${label}: ${l}`));
    check(errors.length === 0, errors.join('\n'));
  }, { fatal: false });

  exitCode = results.some((r) => r.status === 'failed') ? 1 : 0;
  if (exitCode) {
    for (const [label, lines] of Object.entries(diagnostics)) {
      if (!lines.length) continue;
      console.log(`# browser log (${label}):`);
      for (const l of lines.slice(-30)) console.log(`#   ${l}`);
    }
  }
} catch (err) {
  console.log(`# aborted: ${err.stack || err}`);
  results.push({ name: 'scenario', status: 'failed' });
  exitCode = 1;
} finally {
  await browser.close().catch(() => {});
}

const passed = results.filter((r) => r.status === 'passed').length;
const failed = results.filter((r) => r.status === 'failed').length;
const skipped = results.filter((r) => r.status === 'skipped').length;
console.log(`# screenshots: ${shotsDir}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(exitCode);
