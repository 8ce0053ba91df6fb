// Drives the web viewer in headless Chromium against a running agent (or `tailprof serve`) that profiles a known
// workload, and checks what the page shows against what the API answers.
//
//   node viewer.mjs --url http://127.0.0.1:PORT --out DIR [--agent-pid PID] [--chromium /usr/bin/chromium]
//                   [--mode agent|serve] [--from T --to T] [--baseline-from T --baseline-to T] [--token TOKEN]
//                   [--hot tp_hot_two_thirds] [--hot-caller tp_worker] [--hot-comm tp-ratio] [--sleep-comm sleeper]
//                   [--perf-url URL] [--capture-form [--capture-target pid=N]] [--timeout 300]
//   node viewer.mjs --perf-only --url URL --out DIR   (the figures of `cargo xtask bench`'s viewer section: the
//                   assets' size and the synthetic profiles of a mock server, `web/scripts/serve.mjs --mock`)
//
// The workload (tests/workloads/hot_ratio.c): thread tp-ratio spends 2/3 of its CPU in tp_hot_two_thirds and 1/3 in
// tp_hot_one_third, both called by tp_worker; a thread that sleeps (tests/workloads/sleeper.c: comm `sleeper`).
// Times (--from, --to, --baseline-*) take any form the API takes. Without --from/--to the range is the last
// 2 minutes up to the last closed window; without a baseline, the oldest stored window (before the workload, when
// the harness starts it a window or more after the agent).
//
// --capture-form also starts a 3 s deep capture with the captures page's form (of --capture-target, e.g. pid=1234 or
// comm=tp-ratio; the whole host without it), expects the 201 record, then a second start refused with the agent's
// sentence (409 while it runs). It leaves the agent in its capture cooldown.
//
// Prints one JSON object on stdout: {checks: [{name, ok, detail}], perf: {...}, screenshots: [...]}; exits 0 when
// every check passed, 1 otherwise. Every wait has a timeout, and a watchdog ends the run after --timeout seconds.

import { chromium } from 'playwright-core';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

// ---- arguments ----

const argv = process.argv.slice(2);
function flag(name, def) {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) return def;
  return v;
}
const opts = {
  url: flag('url', ''),
  out: flag('out', ''),
  agentPid: flag('agent-pid', '') ? Number(flag('agent-pid', '')) : null,
  chromium: flag('chromium', '/usr/bin/chromium'),
  mode: flag('mode', 'agent'),
  from: flag('from', ''),
  to: flag('to', ''),
  span: Number(flag('span', '120')),
  baselineFrom: flag('baseline-from', ''),
  baselineTo: flag('baseline-to', ''),
  token: flag('token', ''),
  hot: flag('hot', 'tp_hot_two_thirds'),
  hotCaller: flag('hot-caller', 'tp_worker'),
  hotComm: flag('hot-comm', 'tp-ratio'),
  sleepComm: flag('sleep-comm', 'sleeper'),
  perfUrl: flag('perf-url', ''),
  captureForm: argv.includes('--capture-form'),
  perfOnly: argv.includes('--perf-only'),
  captureTarget: flag('capture-target', ''),
  timeoutS: Number(flag('timeout', '300')),
};
if (!opts.url || !opts.out || argv.includes('--help')) {
  process.stderr.write('usage: node viewer.mjs --url http://127.0.0.1:PORT --out DIR [--agent-pid PID] [--chromium PATH] [--mode agent|serve] [--perf-url URL]\n');
  process.exit(2);
}
opts.url = opts.url.replace(/\/+$/, '');
if (opts.perfUrl) opts.perfUrl = opts.perfUrl.replace(/\/+$/, '');

const WAIT_MS = 30_000;
const checks = [];
const perf = {};
const screenshots = [];
let browser = null;
let finished = false;

function check(name, ok, detail) {
  checks.push({ name, ok: !!ok, detail: typeof detail === 'string' ? detail : JSON.stringify(detail) });
  process.stderr.write(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}\n`);
}

async function finish(code) {
  if (finished) return;
  finished = true;
  try {
    await browser?.close();
  } catch {
    // closing a browser that is gone
  }
  process.stdout.write(JSON.stringify({ checks, perf, screenshots }, null, 2) + '\n');
  process.exit(code ?? (checks.length && checks.every((c) => c.ok) ? 0 : 1));
}

const watchdog = setTimeout(() => {
  check('watchdog', false, `the run took longer than ${opts.timeoutS} s`);
  void finish(1);
}, opts.timeoutS * 1000);
watchdog.unref();

/** Runs one check's body; an exception fails that check, not the run. */
async function step(name, f) {
  try {
    await f();
  } catch (e) {
    check(name, false, `threw: ${String(e && e.message ? e.message : e).split('\n')[0]}`);
  }
}

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]).finally(() => clearTimeout(t));
}

// ---- HTTP from node (raw bytes, to see what travels) ----

function rawGet(url, headers = {}) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const u = new URL(url);
      const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method: 'GET', headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    }),
    WAIT_MS,
    `GET ${url}`,
  );
}

const authHeader = () => (opts.token ? { Authorization: `Bearer ${opts.token}` } : {});

async function apiJson(base, path) {
  const r = await rawGet(`${base}${path}`, { Accept: 'application/json', ...authHeader() });
  let body = null;
  try {
    body = JSON.parse(r.body.toString('utf8'));
  } catch {
    body = null;
  }
  return { status: r.status, body };
}

// ---- the page ----

async function settle(page, ms = WAIT_MS) {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))));
  await page.waitForFunction(() => window.__tailprof && window.__tailprof.ready, null, { timeout: ms, polling: 50 });
  await withTimeout(page.evaluate(() => window.__tailprof.whenReady()), ms, 'whenReady');
}

async function hooks(page, expr, arg) {
  return page.evaluate(expr, arg);
}

/** A page at the viewer with a hash; records the profile requests it makes. */
async function open(ctx, base, hash) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.profileRequests = [];
  page.consoleErrors = [];
  page.on('request', (r) => {
    const u = r.url();
    if (u.includes('/api/v1/profile')) page.profileRequests.push(u);
  });
  page.on('pageerror', (e) => page.consoleErrors.push(String(e.message).split('\n')[0]));
  await page.goto(`${base}/${hash ? '#' + hash : ''}`, { waitUntil: 'load', timeout: WAIT_MS });
  await page.waitForFunction(() => !!window.__tailprof, null, { timeout: WAIT_MS });
  if (opts.token) {
    // The first answers are 401s: the page asks for the token.
    const asked = await page
      .waitForFunction(() => window.__tailprof.auth().needed, null, { timeout: 10_000, polling: 50 })
      .then(() => true)
      .catch(() => false);
    if (asked) {
      await page.fill('[data-testid=token]', opts.token);
      await page.click('[data-testid=token-submit]');
    }
  }
  await settle(page);
  return page;
}

/** The page's own last profile request (not a focus= graft), as a URL. */
function lastProfileRequest(page) {
  const reqs = page.profileRequests.filter((u) => !new URL(u).searchParams.has('focus') && !new URL(u).searchParams.has('format'));
  return reqs.length ? new URL(reqs[reqs.length - 1]) : null;
}

/** Fetches an API URL from inside the page (same origin, the page's token). */
async function fetchInPage(page, url, asText = false) {
  return page.evaluate(
    async ({ url, asText }) => {
      const t = sessionStorage.getItem('tailprof-token');
      const r = await fetch(url, { headers: t ? { Authorization: `Bearer ${t}` } : {} });
      return { status: r.status, text: await r.text() };
    },
    { url: url.toString() },
  ).then((r) => {
    // Parsed here: a deep tree is too deep to come back from the page as an object.
    let json = null;
    if (!asText) {
      try {
        json = JSON.parse(r.text);
      } catch {
        json = null;
      }
    }
    return { status: r.status, text: r.text, json };
  });
}

function parseFolded(text) {
  const lines = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const m = /^(.*) (\d+(?:\.\d+)?)$/.exec(line);
    if (!m) return { ok: false, bad: line, lines };
    lines.push({ frames: m[1].split(';'), count: Number(m[2]) });
  }
  return { ok: true, lines };
}

/** The share of a function in a folded profile: its stacks' counts (each stack once) over the total. */
function foldedShare(lines, name) {
  let total = 0;
  let hit = 0;
  for (const l of lines) {
    total += l.count;
    if (l.frames.includes(name)) hit += l.count;
  }
  return { share: total > 0 ? hit / total : 0, total, hit };
}

// The share of the stacks that begin with `path`: what a click on that one frame focuses. A function can
// sit on more than one path (an unwind that stopped early, a second caller), so the function's share is not it.
function foldedPathShare(lines, path) {
  let total = 0;
  let hit = 0;
  const elsewhere = {};
  for (const l of lines) {
    total += l.count;
    if (path.every((f, i) => l.frames[i] === f)) hit += l.count;
    else if (l.frames.includes(path[path.length - 1])) elsewhere[l.frames.join(';')] = l.count;
  }
  return { share: total > 0 ? hit / total : 0, total, hit, elsewhere };
}

async function foldedFor(page, params) {
  const u = new URL(params.toString());
  u.searchParams.set('format', 'folded');
  u.searchParams.delete('max_nodes');
  u.searchParams.delete('focus');
  const r = await fetchInPage(page, u, true);
  if (r.status !== 200) throw new Error(`folded answered ${r.status}: ${r.text.slice(0, 200)}`);
  return parseFolded(r.text);
}

async function clickFrame(page, name, button = 'left') {
  const rects = await hooks(page, (n) => window.__tailprof.frameRects(n), name);
  if (!rects.length) return null;
  const r = rects[0];
  await page.mouse.click(r.x + Math.min(r.width / 2, 40), r.y + r.height / 2, { button });
  await settle(page);
  return r;
}

function isSentence(text) {
  // One line, short, and nothing of a stack trace (`at f (file.js:1:2)`, `file.ts:10:5`, `TypeError: …`).
  return (
    typeof text === 'string' &&
    text.length > 0 &&
    text.length < 400 &&
    !text.includes('\n') &&
    !/\bat \S+ \(\S+:\d+:\d+\)|\.(m?js|ts|rs):\d+|\b[A-Z][a-z]+Error\b|stack backtrace|panicked/.test(text)
  );
}

async function shot(page, name) {
  const path = join(opts.out, 'screenshots', `${name}.png`);
  await page.screenshot({ path, fullPage: true, timeout: WAIT_MS });
  screenshots.push(path);
}

function rgbOf(css) {
  const m = /rgb\((\d+),\s*(\d+),\s*(\d+)\)/.exec(css || '');
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

function hueOf([r, g, b]) {
  const R = r / 255;
  const G = g / 255;
  const B = b / 255;
  const max = Math.max(R, G, B);
  const min = Math.min(R, G, B);
  const d = max - min;
  if (d === 0) return { h: 0, s: 0 };
  let h;
  if (max === R) h = ((G - B) / d) % 6;
  else if (max === G) h = (B - R) / d + 2;
  else h = (R - G) / d + 4;
  h *= 60;
  if (h < 0) h += 360;
  const l = (max + min) / 2;
  return { h, s: d / (1 - Math.abs(2 * l - 1)) };
}

const hueDist = (a, b) => Math.min(Math.abs(a - b), 360 - Math.abs(a - b));

function stats(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, median: +q(0.5).toFixed(2), p95: +q(0.95).toFixed(2), max: +s[s.length - 1].toFixed(2) };
}

/** Zooms into the largest frames one after the other and back, and scrolls the graph; draw and frame times. */
async function interact(page, rounds = 8) {
  await page.evaluate(() => {
    const w = window;
    w.__frames = [];
    let last = performance.now();
    w.__rafOn = true;
    const tick = (t) => {
      w.__frames.push(t - last);
      last = t;
      if (w.__rafOn) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  const draw = [];
  const wall = [];
  const clickToDrawn = [];
  await page.evaluate(() => {
    window.__lastClick = 0;
    document.addEventListener('mousedown', () => (window.__lastClick = performance.now()), { capture: true });
  });
  const rows = await hooks(page, () => window.__tailprof.tableRows().slice(0, 40).map((r) => r.name));
  let done = 0;
  for (const name of rows) {
    if (done >= rounds) break;
    const rects = await hooks(page, (n) => window.__tailprof.frameRects(n).filter((r) => r.width > 4 && !r.folded), name);
    if (!rects.length) continue;
    const r = rects[0];
    const t0 = Date.now();
    await page.mouse.click(r.x + Math.min(r.width / 2, 30), r.y + r.height / 2);
    await settle(page);
    wall.push(Date.now() - t0);
    const rs = await hooks(page, () => ({ ...window.__tailprof.renderStats(), click: window.__lastClick }));
    draw.push(rs.renderMs);
    if (rs.renderedAt > rs.click) clickToDrawn.push(rs.renderedAt - rs.click);
    await page.keyboard.press('Escape');
    await settle(page);
    draw.push((await hooks(page, () => window.__tailprof.renderStats())).renderMs);
    done++;
  }
  // Panning: scroll the graph's viewport up and down.
  const pan = [];
  const box = await page.$('[data-testid=flame-canvas-scroll]');
  if (box) {
    for (let k = 0; k < 10; k++) {
      await box.evaluate((el, k) => {
        el.scrollTop = k % 2 ? 0 : el.scrollHeight;
      }, k);
      await settle(page);
      pan.push((await hooks(page, () => window.__tailprof.renderStats())).renderMs);
    }
  }
  const frames = await page.evaluate(() => {
    window.__rafOn = false;
    return window.__frames.slice(1);
  });
  return { zooms: done, drawMs: stats(draw), clickToDrawnMs: stats(clickToDrawn), clickToSettledWithPollingMs: stats(wall), panDrawMs: stats(pan), rafIntervalMs: stats(frames) };
}

// ---- the run ----

async function main() {
  await mkdir(join(opts.out, 'screenshots'), { recursive: true });
  browser = await withTimeout(
    chromium.launch({ executablePath: opts.chromium, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] }),
    60_000,
    'launching Chromium',
  );
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true, deviceScaleFactor: 1 });
  if (opts.perfOnly) {
    await step('perf', async () => {
      perf.assets = await assetSizes(opts.url);
      opts.perfUrl = opts.url;
      perf.synthetic = await perfSynthetic(ctx);
      check('perf', true, 'measured');
    });
    return finish();
  }

  // The range: absolute, ending inside the last closed window, so that no window closing during the run changes it.
  let from = opts.from;
  let to = opts.to;
  const status = await apiJson(opts.url, '/api/v1/status');
  if (status.status === 401 && !opts.token) check('token', false, 'the API wants a bearer token: pass --token');
  if (!from || !to) {
    // The agent says where its last window ended; `tailprof serve` has only what is stored.
    let end = status.body?.collecting?.last_window_end_unix_ns;
    if (!end) {
      const segs = await apiJson(opts.url, '/api/v1/segments');
      if (Array.isArray(segs.body) && segs.body.length) end = Math.max(...segs.body.map((x) => x.end_unix_ns));
    }
    const toS = end ? end / 1e9 - 0.5 : Date.now() / 1000;
    to = to || toS.toFixed(3);
    from = from || (Number(to) - opts.span).toFixed(3);
  }
  const range = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
  perf.range = { from, to };
  perf.mode = opts.mode;

  // 1. The total shown is the API's total for the page's own parameters.
  let page = await open(ctx, opts.url, range);
  if (opts.token) {
    const a = await hooks(page, () => window.__tailprof.auth());
    check('token', a.tokenSet && !a.needed, a);
  }
  const firstLoad = await hooks(page, () => window.__tailprof.timings());
  perf.agent = { firstLoad };
  let cpuParams = null;
  await step('total', async () => {
    cpuParams = lastProfileRequest(page);
    if (!cpuParams) throw new Error('the page made no profile request');
    const shown = await hooks(page, () => window.__tailprof.total());
    const api = await fetchInPage(page, cpuParams);
    const apiTotal = api.json?.root?.value;
    const text = await page.textContent('[data-testid=total]');
    check('total', shown !== null && shown > 0 && shown === apiTotal, { shown, api: apiTotal, text, params: cpuParams.search });
  });
  await shot(page, 'cpu');

  // 2. Clicking the hot frame zooms to it; its share is the API's.
  let folded = null;
  await step('zoom', async () => {
    folded = await foldedFor(page, cpuParams);
    const r = await clickFrame(page, opts.hot);
    if (!r) throw new Error(`no frame of ${opts.hot} is drawn`);
    const f = await hooks(page, () => window.__tailprof.focused());
    const api = f && Array.isArray(f.path) ? foldedPathShare(folded.lines, f.path) : { share: null };
    check('zoom', f && f.name === opts.hot && api.share !== null && Math.abs(f.share - api.share) <= 0.01, { focused: f, api });
  });
  await step('zoom perf', async () => {
    perf.agent.interaction = await interact(page, 6);
  });

  // 3. Search highlights it with the API's share.
  await step('search', async () => {
    await page.keyboard.press('Escape');
    await page.fill('[data-testid=search]', opts.hot);
    await settle(page);
    const share = await hooks(page, () => window.__tailprof.searchShare());
    const m = await hooks(page, () => window.__tailprof.matches());
    const text = await page.textContent('[data-testid=search-share]');
    const api = foldedShare(folded.lines, opts.hot);
    check('search', m && m.frames > 0 && share !== null && Math.abs(share - api.share) <= 0.01 && /%/.test(text), { share, apiShare: api.share, matches: m, text });
  });

  // 4. The sandwich of the hot function lists its caller.
  await step('sandwich', async () => {
    await page.fill('[data-testid=search]', '');
    await settle(page);
    const r = await clickFrame(page, opts.hot, 'right');
    if (!r) throw new Error(`no frame of ${opts.hot} is drawn`);
    await settle(page);
    const s = await hooks(page, () => window.__tailprof.sandwich());
    const callers = await hooks(page, (n) => window.__tailprof.frameRects(n, 'callers'), opts.hotCaller);
    check('sandwich', s && s.name === opts.hot && callers.length > 0, { sandwich: s, callerFrames: callers.length, caller: opts.hotCaller });
    await page.locator('[data-testid=sandwich]').scrollIntoViewIfNeeded();
    await shot(page, 'sandwich');
    await page.click('[data-testid=sandwich-close]');
    await settle(page);
  });

  // 5. Brushing the timeline: the graph's total is the API's for the brushed range.
  await step('brush', async () => {
    await page.keyboard.press('Escape');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.locator('[data-testid=timeline-canvas]').scrollIntoViewIfNeeded();
    await settle(page);
    const box = await page.locator('[data-testid=timeline-canvas]').boundingBox();
    if (!box) throw new Error('no timeline');
    const left = box.x + 56;
    const w = box.width - 56 - 8;
    const y = box.y + 40;
    await page.mouse.move(left + 0.35 * w, y);
    await page.mouse.down();
    await page.mouse.move(left + 0.6 * w, y, { steps: 5 });
    await page.mouse.move(left + 0.9 * w, y, { steps: 5 });
    await page.mouse.up();
    await settle(page);
    const st = await hooks(page, () => window.__tailprof.state());
    if (!st.sel) throw new Error('nothing was brushed');
    const req = lastProfileRequest(page);
    const sent = { from: req.searchParams.get('from'), to: req.searchParams.get('to') };
    const u = new URL(cpuParams.toString());
    u.searchParams.set('from', st.sel[0].toFixed(3));
    u.searchParams.set('to', st.sel[1].toFixed(3));
    const api = await fetchInPage(page, u);
    const shown = await hooks(page, () => window.__tailprof.total());
    const whole = (await fetchInPage(page, cpuParams)).json?.root?.value;
    check('brush', shown === api.json?.root?.value && sent.from === st.sel[0].toFixed(3) && sent.to === st.sel[1].toFixed(3), { sel: st.sel, shown, api: api.json?.root?.value, wholeRange: whole });
  });
  await page.close();

  // 6. The diff against a baseline before the workload: the hot function is new or grew.
  await step('diff', async () => {
    let bf = opts.baselineFrom;
    let bt = opts.baselineTo;
    if (!bf || !bt) {
      const segs = await apiJson(opts.url, '/api/v1/segments');
      const first = Array.isArray(segs.body) ? segs.body[0] : null;
      if (!first) throw new Error('no stored segment to take a baseline from: pass --baseline-from/--baseline-to');
      bf = (first.start_unix_ns / 1e9 + 0.001).toFixed(3);
      bt = (first.end_unix_ns / 1e9 - 0.001).toFixed(3);
    }
    perf.baseline = { from: bf, to: bt };
    const p = await open(ctx, opts.url, `${range}&diff=${encodeURIComponent(bf)},${encodeURIComponent(bt)}`);
    const d = await hooks(p, () => window.__tailprof.diff());
    const pal = await hooks(p, () => window.__tailprof.palette());
    const colour = await hooks(p, (n) => window.__tailprof.frameColour(n), opts.hot);
    const entry = d?.changed.filter((c) => c.name === opts.hot).sort((a, b) => b.after - a.after)[0];
    const rgb = rgbOf(colour);
    const more = rgbOf(pal.diff.more);
    const warm = rgb && more && hueDist(hueOf(rgb).h, hueOf(more).h) < 20 && hueOf(rgb).s > 0.2;
    const ok = entry && ((entry.kind === 'new' && colour === pal.diff.new) || (entry.kind === 'changed' && entry.delta > 0 && warm));
    const sorted = d ? d.changed.every((c, i, a) => i === 0 || Math.abs(a[i - 1].delta) >= Math.abs(c.delta)) : false;
    check('diff', ok && sorted, { entry, colour, palette: pal.diff, baseline: d?.baseline, current: d?.current, sortedByDelta: sorted, message: await hooks(p, () => window.__tailprof.message()) });
    await shot(p, 'diff');
    await p.close();
  });

  // 7. The wall-clock view: a sleeping thread's frames in the sleeping colour.
  await step('wall sleeping colour', async () => {
    const p = await open(ctx, opts.url, `${range}&view=wall`);
    await shot(p, 'wall');
    const req = lastProfileRequest(p);
    const f = await foldedFor(p, req);
    if (!f.ok) throw new Error(`folded does not parse: ${f.bad}`);
    const pal = await hooks(p, () => window.__tailprof.palette());
    const want = hueOf(rgbOf(pal.states.sleeping)).h;
    const sleepingHue = (c) => {
      const rgb = rgbOf(c);
      const hs = rgb ? hueOf(rgb) : null;
      return !!hs && hueDist(hs.h, want) <= 8 && hs.s > 0.3;
    };
    const stateColour = await hooks(p, () => window.__tailprof.frameColour('[sleeping]'));
    // The sleeping thread's largest sleeping stack: its state frame in the state's colour, every frame above it in
    // the state's hue (a lighter shade per function). Time no snapshot saw has no stack: not a candidate.
    const own = f.lines
      .filter((l) => l.frames[0] === opts.sleepComm && l.frames[1] === '[sleeping]' && l.frames.length > 2)
      .sort((a, b) => b.count - a.count)[0];
    let good = null;
    const tried = [];
    if (own) {
      const colours = [];
      for (let k = 2; k <= own.frames.length; k++) colours.push(await hooks(p, (path) => window.__tailprof.frameColourAt(path), own.frames.slice(0, k)));
      const stateOk = colours[0] === pal.states.sleeping;
      const rest = colours.slice(1).filter((c) => c !== null);
      tried.push({ stack: own.frames.join(';'), colours });
      if (stateOk && rest.length > 0 && rest.every(sleepingHue)) good = `${opts.sleepComm}: ${own.frames.slice(2).join(';')}`;
    }
    if (!good) {
      // No sleeping thread of that name: any frame only ever seen under [sleeping], by its largest frame's colour.
      const sleeping = new Map();
      const elsewhere = new Set();
      for (const l of f.lines) {
        const k = l.frames.indexOf('[sleeping]');
        for (const n of k >= 0 ? l.frames.slice(k + 1) : l.frames) {
          if (k >= 0) sleeping.set(n, (sleeping.get(n) ?? 0) + l.count);
          else elsewhere.add(n);
        }
      }
      const cands = [...sleeping.entries()].filter(([n]) => !elsewhere.has(n) && !n.startsWith('[')).sort((a, b) => b[1] - a[1]);
      for (const [name] of cands.slice(0, 5)) {
        const c = await hooks(p, (n) => window.__tailprof.frameColour(n), name);
        tried.push({ name, colour: c });
        if (sleepingHue(c)) {
          good = name;
          break;
        }
      }
    }
    check('wall sleeping colour', good !== null && stateColour === pal.states.sleeping, { frame: good, stateFrame: stateColour, sleeping: pal.states.sleeping, tried });
    await p.close();
  });

  // Offcpu and icicle screenshots.
  await step('screenshots of views', async () => {
    const p = await open(ctx, opts.url, `${range}&view=offcpu`);
    await shot(p, 'offcpu');
    await p.close();
    const q = await open(ctx, opts.url, `${range}&mode=icicle`);
    await shot(q, 'icicle');
    await q.close();
  });

  // 8. A deep link reproduces focus, search share and view.
  await step('deep link', async () => {
    const p = await open(ctx, opts.url, range);
    await p.selectOption('[data-testid=view-select]', 'wall');
    await settle(p);
    const r = await clickFrame(p, opts.hot);
    if (!r) throw new Error(`no frame of ${opts.hot} in the wall-clock view`);
    await p.fill('[data-testid=search]', opts.hot);
    await settle(p);
    const before = {
      focused: await hooks(p, () => window.__tailprof.focused()),
      share: await hooks(p, () => window.__tailprof.searchShare()),
      view: (await hooks(p, () => window.__tailprof.state())).view,
    };
    const link = p.url();
    await p.close();
    const page2 = await ctx.newPage();
    page2.setDefaultTimeout(WAIT_MS);
    await page2.goto(link, { waitUntil: 'load' });
    await page2.waitForFunction(() => !!window.__tailprof, null, { timeout: WAIT_MS });
    await settle(page2);
    const after = {
      focused: await hooks(page2, () => window.__tailprof.focused()),
      share: await hooks(page2, () => window.__tailprof.searchShare()),
      view: (await hooks(page2, () => window.__tailprof.state())).view,
    };
    const same =
      before.view === 'wall' &&
      after.view === before.view &&
      after.focused?.name === opts.hot &&
      JSON.stringify(after.focused?.path) === JSON.stringify(before.focused?.path) &&
      after.share !== null &&
      Math.abs(after.share - before.share) < 1e-9;
    check('deep link', same, { link: link.replace(/^.*#/, '#'), before, after });
    await page2.close();
  });

  // 9. Every export downloads a file that parses.
  await step('exports', async () => {
    const p = await open(ctx, opts.url, range);
    const total = await hooks(p, () => window.__tailprof.total());
    const got = {};
    for (const [id, file] of [
      ['export-svg', 'export.svg'],
      ['export-folded', 'export.folded'],
      ['export-json', 'export.json'],
      ['export-png', 'export.png'],
      ['export-pprof', 'export.pb.gz'],
    ]) {
      const [dl] = await Promise.all([p.waitForEvent('download', { timeout: WAIT_MS }), p.click(`[data-testid=${id}]`)]);
      const path = join(opts.out, file);
      await withTimeout(dl.saveAs(path), WAIT_MS, `saving ${file}`);
      got[id] = await readFile(path);
    }
    const svgText = got['export-svg'].toString('utf8');
    const svgOk = await p.evaluate((t) => {
      const doc = new DOMParser().parseFromString(t, 'image/svg+xml');
      return !doc.querySelector('parsererror') && doc.documentElement.nodeName === 'svg';
    }, svgText);
    const fold = parseFolded(got['export-folded'].toString('utf8'));
    let jsonRoot = null;
    try {
      jsonRoot = JSON.parse(got['export-json'].toString('utf8')).root.value;
    } catch {
      jsonRoot = null;
    }
    const png = got['export-png'].subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    const gz = got['export-pprof'][0] === 0x1f && got['export-pprof'][1] === 0x8b;
    const detail = { svg: svgOk, folded: fold.ok && fold.lines.length > 0 ? `${fold.lines.length} lines` : `bad line: ${fold.bad}`, json: { root: jsonRoot, total }, png, pprofGzip: gz, pprof: join(opts.out, 'export.pb.gz') };
    check('exports', svgOk && fold.ok && fold.lines.length > 0 && jsonRoot === total && png && gz, detail);
    await p.close();
  });

  // The other pages: what they show is what the API answers (or its one sentence).
  await step('noise page', async () => {
    const p = await open(ctx, opts.url, `${range}&page=noise`);
    const api = await apiJson(opts.url, `/api/v1/noise?${range}`);
    const shown = await hooks(p, () => window.__tailprof.noise());
    const msg = await hooks(p, () => window.__tailprof.message());
    let ok;
    let detail;
    if (api.status === 200) {
      ok = shown && shown.cpus.length === api.body.cpus.length && shown.cpus.every((c, i) => c.softirq_ns === (api.body.cpus[i].procfs_time?.softirq_ns ?? api.body.cpus[i].softirq?.ns)) && (await p.locator('[data-testid=noise-row]').count()) === api.body.cpus.length;
      detail = { cpus: shown?.cpus.length, api: api.body.cpus.length, sources: shown?.sources.length, timelineSteps: shown?.timelineSteps, timelineCpus: shown?.timelineCpus };
    } else {
      ok = msg && isSentence(msg.text) && msg.text === api.body?.error;
      detail = { status: api.status, message: msg };
    }
    await shot(p, 'noise');
    check('noise page', ok, detail);
    await p.close();
  });
  await step('latency page', async () => {
    const p = await open(ctx, opts.url, `${range}&page=latency`);
    const api = await apiJson(opts.url, `/api/v1/histograms?${range}`);
    const shown = await hooks(p, () => window.__tailprof.latency());
    const msg = await hooks(p, () => window.__tailprof.message());
    let ok;
    let detail;
    if (api.status === 200 && api.body.captures.length) {
      ok = shown && shown.captures.length === api.body.captures.length && (await p.locator('[data-testid=latency-capture]').count()) === api.body.captures.length;
      detail = { captures: shown?.captures.map((c) => ({ id: c.id, histograms: c.histograms, slo: c.slo.length })) };
    } else if (api.status === 200) {
      ok = msg && msg.kind === 'empty' && msg.text === api.body.note;
      detail = { message: msg };
    } else {
      ok = msg && isSentence(msg.text);
      detail = { status: api.status, message: msg };
    }
    await shot(p, 'latency');
    check('latency page', ok, detail);
    await p.close();
  });
  await step('captures page', async () => {
    const p = await open(ctx, opts.url, `${range}&page=captures`);
    const api = await apiJson(opts.url, '/api/v1/captures');
    const shown = await hooks(p, () => window.__tailprof.captures());
    const msg = await hooks(p, () => window.__tailprof.message());
    let ok;
    let detail;
    if (api.status === 200) {
      const n = api.body.captures.length;
      const rows = await p.locator('[data-testid=capture-row]').count();
      const links = await p.locator('[data-testid=capture-file]').count();
      const files = api.body.captures.reduce((a, c) => a + (c.files?.length ?? 0), 0);
      ok = shown.rows.length === n && rows === n && links === files && (n > 0 || (msg && isSentence(msg.text)));
      detail = { rows, api: n, fileLinks: links, apiFiles: files, message: msg };
    } else {
      ok = msg && isSentence(msg.text);
      detail = { status: api.status, message: msg };
    }
    await shot(p, 'captures');
    check('captures page', ok, detail);
    await p.close();
  });
  if (opts.captureForm && opts.mode === 'serve') check('capture form', true, 'skipped: tailprof serve starts no capture');
  else if (opts.captureForm) {
    await step('capture form', async () => {
      const p = await open(ctx, opts.url, `${range}&page=captures`);
      await p.fill('[data-testid=capture-duration]', '3s');
      if (opts.captureTarget) {
        const [k, v] = opts.captureTarget.split('=');
        await p.selectOption('[data-testid=capture-target-kind]', k);
        await p.fill('[data-testid=capture-target]', v);
      }
      await p.fill('[data-testid=capture-reason]', 'tests/web/viewer.mjs');
      await p.click('[data-testid=capture-submit]');
      await settle(p);
      const first = (await hooks(p, () => window.__tailprof.captures())).result;
      await p.click('[data-testid=capture-submit]');
      await settle(p);
      const second = (await hooks(p, () => window.__tailprof.captures())).result;
      const shown = await p.textContent('[data-testid=capture-result]');
      const api = await apiJson(opts.url, '/api/v1/captures');
      const listed = api.body?.captures?.some((c) => c.id === first?.record?.id);
      check(
        'capture form',
        first && first.status === 201 && first.record?.id && listed && second && (second.status === 409 || second.status === 429) && isSentence(second.error) && shown.includes(second.error),
        { first: first && { status: first.status, id: first.record?.id, state: first.record?.state, error: first.error }, second, listed },
      );
      await shot(p, 'captures-form');
      await p.close();
    });
  }

  // The idle-wait preset hides thread pools' waits (tailprof's own tokio threads wait in epoll): what it hid
  // plus what is shown is the whole, and the sleeper's nanosleep (not an idle wait) stays.
  await step('idle preset', async () => {
    const whole = await open(ctx, opts.url, `${range}&view=wall`);
    const total = await hooks(whole, () => window.__tailprof.total());
    await whole.close();
    const p = await open(ctx, opts.url, `${range}&view=wall&idle=hide`);
    const idle = await hooks(p, () => window.__tailprof.idle());
    const shown = await hooks(p, () => window.__tailprof.total());
    const sleeper = await hooks(p, (n) => window.__tailprof.frameRects(n), opts.sleepComm);
    const text = await p.textContent('body');
    const ok = idle.on && idle.applies && idle.hidden > 0 && Math.abs(shown + idle.hidden - total) <= Math.max(1, total * 1e-9) && sleeper.length > 0 && /hidden idle waits/.test(text);
    check('idle preset', ok, { idle, shown, total, sleeperFrames: sleeper.length });
    await shot(p, 'wall-idle-hidden');
    await p.close();
  });

  // Keys: `f` flips to the icicle, `/` goes to the search, `?` opens the help, Esc closes it.
  await step('keys', async () => {
    const p = await open(ctx, opts.url, range);
    await p.keyboard.press('f');
    await settle(p);
    const flipped = (await hooks(p, () => window.__tailprof.viewport())).mode;
    await p.keyboard.press('?');
    const help = await hooks(p, () => window.__tailprof.help());
    await p.keyboard.press('Escape');
    const closed = !(await hooks(p, () => window.__tailprof.help())).open;
    await p.keyboard.press('/');
    const focused = await p.evaluate(() => document.activeElement?.getAttribute('data-testid'));
    check('keys', flipped === 'icicle' && help.open && help.keys.length >= 8 && closed && focused === 'search', { flipped, helpOpen: help.open, keys: help.keys.length, closed, focused });
    await p.close();
  });

  // Under `tailprof serve`, an address without a range opens on the captures' whole span.
  if (opts.mode === 'serve') {
    await step('serve opens on its data', async () => {
      const p = await open(ctx, opts.url, '');
      const st = await hooks(p, () => window.__tailprof.status());
      const state = await hooks(p, () => window.__tailprof.state());
      const total = await hooks(p, () => window.__tailprof.total());
      const api = status.body;
      const near = (x, ns) => Math.abs(Number(x) - ns / 1e9) < 0.01;
      check(
        'serve opens on its data',
        st.mode === 'serve' && near(state.from, api.from_unix_ns) && near(state.to, api.to_unix_ns) && total > 0,
        { status: st, from: state.from, to: state.to, apiFrom: api.from_unix_ns, apiTo: api.to_unix_ns, total },
      );
      await shot(p, 'serve-whole');
      await p.close();
    });
  }

  // 10. Bad input: one sentence each.
  await step('bad view', async () => {
    const p = await open(ctx, opts.url, `${range}&view=heap`);
    const m = await hooks(p, () => window.__tailprof.message());
    const visible = await p.locator('[data-testid=error]').isVisible();
    check('bad view', m && m.kind === 'error' && isSentence(m.text) && visible, m);
    await p.close();
  });
  await step('empty range', async () => {
    const p = await open(ctx, opts.url, 'from=2001-01-01T00:00:00Z&to=2001-01-01T01:00:00Z');
    const m = await hooks(p, () => window.__tailprof.message());
    check('empty range', m && m.kind === 'empty' && isSentence(m.text), m);
    await p.close();
  });

  // 12. Performance on what is loaded, and on a big synthetic profile.
  await step('perf', async () => {
    perf.assets = await assetSizes(opts.url);
    if (opts.perfUrl) perf.synthetic = await perfSynthetic(ctx);
  });

  if (opts.agentPid) {
    await step('agent gone', async () => {
      const p = await open(ctx, opts.url, range);
      process.kill(opts.agentPid, 'SIGTERM');
      const t0 = Date.now();
      let alive = true;
      // Gone, or a zombie its parent (the harness) has not reaped yet.
      const running = async () => {
        try {
          const stat = await readFile(`/proc/${opts.agentPid}/stat`, 'utf8');
          return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
        } catch {
          return false;
        }
      };
      while (Date.now() - t0 < 20_000) {
        if (!(await running())) {
          alive = false;
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      await p.click('[data-testid=refresh]');
      await settle(p);
      const m = await hooks(p, () => window.__tailprof.message());
      check('agent gone', !alive && m && m.kind === 'error' && isSentence(m.text) && /not answering/.test(m.text), { exited: !alive, message: m, pageErrors: p.consoleErrors });
      await p.close();
    });
  }
  await finish();
}

async function assetSizes(base) {
  const out = { files: {}, raw: 0, gzip: 0 };
  for (const f of ['index.html', 'app.js', 'app.css']) {
    const r = await rawGet(`${base}/${f === 'index.html' ? '' : f}`);
    if (r.status !== 200) continue;
    const gz = gzipSync(r.body, { level: 9 }).length;
    out.files[f] = { raw: r.body.length, gzip: gz };
    out.raw += r.body.length;
    out.gzip += gz;
  }
  return out;
}

async function perfSynthetic(ctx) {
  const res = {};
  // What travels: the 100k-node tree asked for with gzip, as the browser asks.
  const u = `${opts.perfUrl}/api/v1/profile?max_nodes=100000`;
  const gz = await rawGet(u, { 'Accept-Encoding': 'gzip', ...authHeader() });
  const plain = await rawGet(u, authHeader());
  res.tree100k = { status: gz.status, gzipBytes: gz.headers['content-encoding'] === 'gzip' ? gz.body.length : null, rawBytes: plain.body.length, gzipLevel9Bytes: gzipSync(plain.body, { level: 9 }).length };
  for (const n of [100000, 64000, 16000]) {
    const p = await open(ctx, opts.perfUrl, `max_nodes=${n}`);
    const t = await hooks(p, () => window.__tailprof.timings());
    const rs = await hooks(p, () => window.__tailprof.renderStats());
    const entry = await p.evaluate(() => {
      const e = performance.getEntriesByType('resource').filter((x) => x.name.includes('/api/v1/profile')).pop();
      return e ? { transferSize: e.transferSize, encodedBodySize: e.encodedBodySize, decodedBodySize: e.decodedBodySize, durationMs: e.duration } : null;
    });
    const inter = await interact(p, 8);
    res[`nodes${n}`] = { nodes: rs.nodes, firstLoad: t, resource: entry, interaction: inter };
    if (n === 100000) await shot(p, 'synthetic-100k');
    await p.close();
  }
  return res;
}

main().catch((e) => {
  check('run', false, `threw: ${String(e && e.message ? e.message : e).split('\n')[0]}`);
  void finish(1);
});
