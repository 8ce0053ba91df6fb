// Development server for the viewer: serves dist/ and forwards the API to an agent, or answers it with a
// synthetic profile (--mock) to work and test without one.
//
//   node scripts/serve.mjs [--port 8080] [--agent http://127.0.0.1:9740]
//   node scripts/serve.mjs --mock [--nodes 100000] [--token SECRET]
//   node scripts/serve.mjs --mock-serve [--nodes 20000]
//
// --mock-serve mimics `tailprof serve DIR`: status `mode: serve` with the data's extent, three past captures (a deep
// one with victims, a continuous one, a deep one without --pid; an hour apart, a minute each, 10 s windows), a
// profile, timeline and noise that answer only over their spans, captures `read_only` (POST: 405), no config or
// metrics (404).
//
// The mock's tree has --nodes nodes; the page's node budget (max_nodes=16000 in its address) trims it, so one mock
// serves the 16k, 64k and 100k cases. Its answers are gzipped when asked, as the agent's are. With --token, every
// /api/ request needs `Authorization: Bearer SECRET`, as an agent with --token-file.
//
// Listens on 127.0.0.1 only. No dependencies.
import { createServer, request as httpRequest } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const port = Number(opt('--port', '8080'));
const agent = new URL(opt('--agent', 'http://127.0.0.1:9740'));
const mockServe = args.includes('--mock-serve');
const mock = args.includes('--mock') || mockServe;
const mockNodes = Number(opt('--nodes', '100000'));
const mockToken = opt('--token', '');
const dist = fileURLToPath(new URL('../dist/', import.meta.url));

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.png': 'image/png' };

const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname.startsWith('/api/') || ['/healthz', '/readyz', '/metrics'].includes(url.pathname)) {
    if (mock) {
      if (mockToken && url.pathname.startsWith('/api/') && req.headers.authorization !== `Bearer ${mockToken}`) {
        return json(res, 401, { error: 'missing or wrong bearer token (Authorization: Bearer TOKEN)' }, req);
      }
      return mockServe ? mockServeApi(url, res, req) : mockApi(url, res, req);
    }
    return proxy(req, res);
  }
  const path = normalize(url.pathname === '/' ? '/index.html' : url.pathname).replace(/^(\.\.[/\\])+/, '');
  try {
    const body = await readFile(join(dist, path));
    res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(body);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  }
});

function proxy(req, res) {
  const up = httpRequest(
    { host: agent.hostname, port: agent.port || 80, path: req.url, method: req.method, headers: { ...req.headers, host: agent.host } },
    (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    },
  );
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('the agent is not answering\n');
  });
  req.pipe(up);
}

// ---- mock agent ----

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FUNCS = [];
{
  const r = rng(7);
  const parts = ['read', 'write', 'poll', 'parse', 'hash', 'alloc', 'free', 'lock', 'send', 'recv', 'encode', 'decode', 'flush', 'sort', 'scan', 'copy'];
  const mods = ['http', 'json', 'tls', 'db', 'cache', 'io', 'net', 'core', 'util', 'sched'];
  for (let i = 0; i < 3000; i++) {
    const name = `${mods[Math.floor(r() * mods.length)]}::${parts[Math.floor(r() * parts.length)]}_${i}`;
    FUNCS.push(r() < 0.2 ? name.replace('::', '_').toLowerCase() + '_[k]' : name);
  }
}

/** A synthetic tree of about `target` nodes, with a few very deep stacks; `states` adds the state frames. */
function synth(target, states, seed = 42) {
  const r = rng(seed);
  let budget = target;
  const scale = states ? 1e6 : 1; // ns or samples
  const node = (name, depth, deep) => {
    budget--;
    const n = { name, value: 0, self: 0, children: [] };
    const want = deep ? 1 : depth > 40 ? 0 : Math.floor(r() * (depth < 3 ? 8 : 4.2));
    for (let k = 0; k < want && budget > 0; k++) {
      const c = node(FUNCS[Math.floor(r() * FUNCS.length)], depth + 1, deep && depth < 400);
      n.children.push(c);
      n.value += c.value;
    }
    if (depth < 3 || r() < 0.5) n.self = Math.ceil(r() * 50 * scale);
    n.value += n.self;
    n.children.sort((a, b) => b.value - a.value);
    return n;
  };
  const root = { name: 'all', value: 0, self: 0, children: [] };
  const comms = ['nginx', 'postgres', 'java', 'python3', 'node', 'redis-server', 'kworker/0:1', 'bash'];
  const st = ['[running]', '[runnable]', '[sleeping]', '[disk]', '[other]'];
  let g = 0;
  while (budget > 0) {
    const comm = { name: comms[g % comms.length] + (g >= comms.length ? `-${g}` : ''), value: 0, self: 0, children: [] };
    budget--;
    const parents = states ? st.map((s) => ({ name: s, value: 0, self: 0, children: [] })) : [comm];
    for (const p of parents) {
      if (states) budget--;
      // Each group and state gets a share of the nodes, smaller and smaller, so the tree has a long tail.
      const share = Math.max(1, Math.min(budget, Math.floor(target / (6 + 2 * g) / parents.length)));
      const rest = budget - share;
      budget = share;
      const sub = [];
      while (budget > 0) sub.push(node(FUNCS[Math.floor(r() * FUNCS.length)], 2, g === 0 && sub.length === 0));
      budget = rest;
      for (const c of sub) {
        p.children.push(c);
        p.value += c.value;
      }
      p.self = Math.ceil(r() * 10 * scale);
      p.value += p.self;
      if (p.name === '[sleeping]') idleStacks(p, g + seed);
      p.children.sort((a, c) => c.value - a.value);
      if (states) {
        comm.children.push(p);
        comm.value += p.value;
      }
    }
    comm.children.sort((a, c) => c.value - a.value);
    root.children.push(comm);
    root.value += comm.value;
    g++;
  }
  root.children.sort((a, b) => b.value - a.value);
  return root;
}

/** Where thread pools wait (idle.ts hides these with idle=hide), and a nanosleep that is not idle. */
const IDLE_STACKS = [
  ['start_thread', 'worker_loop', 'pthread_cond_wait@@GLIBC_2.3.2', '__futex_abstimed_wait_common', 'entry_SYSCALL_64_after_hwframe_[k]', 'do_syscall_64_[k]', '__x64_sys_futex_[k]', 'do_futex_[k]', 'futex_wait_[k]', 'schedule_[k]'],
  ['main', 'event_loop', 'epoll_wait', 'entry_SYSCALL_64_after_hwframe_[k]', 'do_syscall_64_[k]', 'do_epoll_wait_[k]', 'ep_poll_[k]', 'schedule_hrtimeout_range_[k]'],
  ['tokio-runtime-worker', 'tokio::runtime::scheduler::multi_thread::worker::Context::park', 'tokio::runtime::park::Inner::park', 'std::sys::pal::unix::futex::futex_wait', 'syscall'],
  ['runtime.mcall', 'runtime.park_m', 'runtime.schedule', 'runtime.findRunnable', 'runtime.stopm', 'runtime.notesleep', 'runtime.futexsleep', 'runtime.futex'],
];
const SLEEP_STACK = ['main', 'throttle', 'clock_nanosleep', 'entry_SYSCALL_64_after_hwframe_[k]', 'do_syscall_64_[k]', 'hrtimer_nanosleep_[k]', 'do_nanosleep_[k]'];

function chain(names, value) {
  const root = { name: names[0], value, self: 0, children: [] };
  let cur = root;
  for (const n of names.slice(1)) {
    const c = { name: n, value, self: 0, children: [] };
    cur.children.push(c);
    cur = c;
  }
  cur.self = value;
  return root;
}

function idleStacks(p, k) {
  const base = Math.max(1, p.value);
  const add = (names, v) => {
    p.children.push(chain(names, v));
    p.value += v;
  };
  IDLE_STACKS.forEach((names, i) => add(names, Math.round(base * (0.9 - 0.2 * ((i + k) % 4)))));
  add(SLEEP_STACK, Math.round(base * 0.25));
}

const trees = new Map();
function treeFor(view, seed = 42) {
  const key = `${view === 'cpu' ? 'cpu' : 'wall'}:${seed}`;
  if (!trees.has(key)) trees.set(key, synth(mockNodes, view !== 'cpu', seed));
  return trees.get(key);
}

/** Trees summed by path (the windows of several captures merged). */
function mergeTrees(list) {
  const merge = (into, n) => {
    into.value += n.value;
    into.self += n.self ?? 0;
    for (const c of n.children ?? []) {
      into.children ??= [];
      let d = into.children.find((x) => x.name === c.name);
      if (!d) {
        d = { name: c.name, value: 0, self: 0 };
        into.children.push(d);
      }
      merge(d, c);
    }
  };
  const out = { name: 'all', value: 0, self: 0 };
  for (const t of list) merge(out, t);
  const sort = (n) => {
    n.children?.sort((a, b) => b.value - a.value);
    n.children?.forEach(sort);
  };
  sort(out);
  return out;
}

/**
 * Keeps at most `max` nodes, breadth-first, largest children first; the children a parent has no room for are folded
 * into one [other] node (room for it is kept), so the values still add up, as the agent's budget does.
 */
function budgeted(root, max) {
  let left = max - 1;
  const out = { name: root.name, value: root.value, self: root.self };
  const queue = [[root, out]];
  for (let q = 0; q < queue.length; q++) {
    const [src, dst] = queue[q];
    const kids = src.children ?? [];
    if (!kids.length || left <= 0) continue;
    dst.children = [];
    let i = 0;
    for (; i < kids.length; i++) {
      const last = i === kids.length - 1;
      if (left < (last ? 1 : 2)) break;
      left--;
      const c = kids[i];
      const d = { name: c.name, value: c.value, self: c.self };
      dst.children.push(d);
      queue.push([c, d]);
    }
    if (i < kids.length) {
      let folded = 0;
      for (; i < kids.length; i++) folded += kids[i].value;
      left--;
      dst.children.push({ name: '[other]', value: folded, self: folded, other: true });
    }
  }
  return out;
}

function folded(node, prefix, lines) {
  const path = prefix ? `${prefix};${node.name}` : node.name;
  if (node.self > 0 && prefix !== null) lines.push(`${path} ${node.self}`);
  for (const c of node.children ?? []) folded(c, prefix === null ? '' : path, lines);
  return lines;
}

function send(res, status, type, text, req) {
  const headers = { 'content-type': type };
  let body = Buffer.from(text);
  if (req && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) {
    body = gzipSync(body, { level: 6 });
    headers['content-encoding'] = 'gzip';
  }
  headers['content-length'] = String(body.length);
  res.writeHead(status, headers);
  res.end(body);
}

function json(res, status, body, req) {
  send(res, status, 'application/json', JSON.stringify(body), req);
}

const MOCK_CAPTURE = {
  id: 'c1796550000000',
  reason: 'mock: p99 jumped',
  trigger: 'rule:slow-reads',
  tier: 'deep',
  target: { unit: 'nginx.service' },
  duration_s: 10,
  started_unix_ns: Date.now() * 1e6 - 300e9,
  ended_unix_ns: Date.now() * 1e6 - 290e9,
  state: 'done',
  error: null,
  files: ['histograms.json', 'summary.json', 'flamegraph.svg'],
};

/** A deep capture's histograms.json: a few syscalls with log-normal latencies, and two --slo thresholds. */
function mockHistograms() {
  const r = rng(11);
  const hist = (kind, name, median, spread, count) => {
    const xs = [];
    for (let i = 0; i < count; i++) xs.push(Math.round(median * Math.exp(spread * Math.sqrt(-2 * Math.log(r() || 1e-9)) * Math.cos(2 * Math.PI * r()))));
    xs.sort((a, b) => a - b);
    const q = (p) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))];
    const sum = xs.reduce((a, b) => a + b, 0);
    return { kind, id: 0, name, aggregate: false, count, sum_ns: sum, mean_ns: Math.round(sum / count), p50_ns: q(0.5), p90_ns: q(0.9), p99_ns: q(0.99), p999_ns: q(0.999), p9999_ns: q(0.9999), max_ns: xs[xs.length - 1], buckets: [] };
  };
  const read = hist('syscall', 'read', 40e3, 1.2, 20000);
  const slo = (spec, kind, target, threshold, h) => {
    const n = Math.round(h.count * (h.p99_ns > threshold ? 0.02 : 0.001));
    return { spec, kind, target, threshold_ns: threshold, events: h.count, exceeding: n, fraction: n / h.count };
  };
  return {
    duration_ns: 10e9,
    precision: 'mock: synthetic latencies',
    dropped: 0,
    histograms: [hist('syscall', 'all syscalls', 8e3, 1.5, 50000), read, hist('syscall', 'write', 25e3, 1, 12000), hist('syscall', 'futex', 120e3, 1.6, 8000), hist('runq', 'nginx (pid 1234)', 6e3, 1.3, 30000)],
    slo: [slo('syscall:read=1ms', 'syscall', 'syscall:read', 1e6, read), slo('syscall:read=250us', 'syscall', 'syscall:read', 250e3, read)],
  };
}

function mockApi(url, res, req) {
  const q = url.searchParams;
  const now = Date.now() * 1e6;
  const from = now - 15 * 60e9;
  switch (url.pathname) {
    case '/healthz':
    case '/readyz':
      res.end('ok\n');
      return;
    case '/api/v1/status':
      return json(res, 200, { mode: 'agent', tier: 'mock', ready: true, window_s: 10 });
    case '/api/v1/timeline': {
      const step = 10e9;
      const r = rng(3);
      const steps = [];
      for (let t = from; t < now; t += step) {
        steps.push({ start_unix_ns: t, end_unix_ns: t + step, segments: 1, cpu_s: 2 + r() * 8, runqueue_s: r() * 2, sleeping_s: 20 + r() * 10, disk_s: r() * 3, other_s: r(), samples: 1000, threads: 120 });
      }
      return json(res, 200, { from_unix_ns: from, to_unix_ns: now, step_ns: step, steps }, req);
    }
    case '/api/v1/profile': {
      const view = q.get('view') ?? 'cpu';
      if (!['cpu', 'offcpu', 'wall'].includes(view)) return json(res, 400, { error: `unknown view '${view}'; use cpu, offcpu or wall` });
      let root = treeFor(view);
      const focus = q.get('focus');
      if (focus) {
        for (const f of focus.split(';')) root = root.children?.find((c) => c.name === f && !c.other) ?? { name: f, value: 0, self: 0 };
      }
      const format = q.get('format') ?? 'json';
      if (format === 'folded') {
        return send(res, 200, 'text/plain', folded(root, null, []).join('\n') + '\n', req);
      }
      if (format !== 'json') return json(res, 400, { error: `the mock agent serves json and folded, not ${format}` });
      const max = Number(q.get('max_nodes') ?? 2000);
      return json(res, 200, {
        from_unix_ns: from,
        to_unix_ns: now,
        windows: 90,
        covered_from_unix_ns: from,
        covered_to_unix_ns: now,
        view,
        unit: view === 'cpu' ? 'samples' : 'nanoseconds',
        root: budgeted(root, max),
      }, req);
    }
    case '/api/v1/noise':
      return json(res, 404, { error: 'no stored window with noise overlaps the range' });
    case '/api/v1/histograms':
      return json(res, 200, {
        from_unix_ns: from,
        to_unix_ns: now,
        note: 'latency histograms come from deep captures only (POST /api/v1/captures); the continuous tier hooks no syscall or interrupt',
        captures: [{ capture: MOCK_CAPTURE.id, reason: MOCK_CAPTURE.reason, started_unix_ns: MOCK_CAPTURE.started_unix_ns, ended_unix_ns: MOCK_CAPTURE.ended_unix_ns, histograms: mockHistograms() }],
      });
    case '/api/v1/captures':
      if (req.method === 'POST') return json(res, 409, { error: `capture ${MOCK_CAPTURE.id} is running; one runs at a time` });
      return json(res, 200, { limits: { max_duration: '2m', cooldown: '1m', default_duration: '10s', keep: 20 }, running: false, deleted: 0, captures: [MOCK_CAPTURE] });
    default:
      return json(res, 404, { error: `no such endpoint: ${url.pathname}` });
  }
}

// ---- mock `tailprof serve DIR` ----

const SERVE_DIR = '/var/lib/tailprof/mock-captures';
const HOUR = 3600e9;
const WINDOW = 10e9;
const serveNow = Math.floor(Date.now() / 1000) * 1e9;
const SERVE_CAPTURES = [
  { id: 'c1', tier: 'deep', hoursAgo: 3, reason: 'p99 of /search jumped', target: { pid: 4242 }, victims: true },
  { id: 'c2', tier: 'continuous', hoursAgo: 2, reason: 'baseline, quiet hour', target: {}, victims: false },
  { id: 'c3', tier: 'deep', hoursAgo: 1, reason: 'after the fix', target: { unit: 'nginx.service' }, victims: false },
].map((c, i) => {
  const start = serveNow - c.hoursAgo * HOUR;
  return {
    record: {
      id: `c${Math.round(start / 1e9)}`,
      reason: c.reason,
      trigger: 'record',
      tier: c.tier,
      target: c.target,
      duration_s: 60,
      started_unix_ns: start,
      ended_unix_ns: start + 60e9,
      state: 'done',
      error: null,
      files: ['summary.json', 'flamegraph.svg', 'noise.json', 'histograms.json'],
    },
    seed: 100 + i,
    victims: c.victims,
  };
});

/** A time as the API takes it, in Unix ns (RFC 3339, Unix seconds, now, -15m). */
function parseTime(s, now) {
  const v = (s ?? '').trim();
  if (!v || v === 'now') return now;
  if (v.startsWith('-')) {
    let ns = 0;
    const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g;
    const unit = { ms: 1e6, s: 1e9, m: 60e9, h: 3600e9, d: 86400e9, w: 604800e9 };
    for (const m of v.slice(1).matchAll(re)) ns += Number(m[1]) * unit[m[2]];
    return now - ns;
  }
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1e9;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t * 1e6;
}

function serveRange(q, res, req) {
  const to = parseTime(q.get('to'), serveNow);
  const from = q.get('from') ? parseTime(q.get('from'), serveNow) : to === null ? null : to - 15 * 60e9;
  if (from === null || to === null) {
    json(res, 400, { error: 'write times as RFC 3339, Unix seconds, now, or relative like -15m' }, req);
    return null;
  }
  if (!(from < to)) {
    json(res, 400, { error: 'from must be before to' }, req);
    return null;
  }
  return { from, to };
}

/** The windows (10 s) of the captures that overlap a range. */
function windowsIn(from, to) {
  const out = [];
  for (const c of SERVE_CAPTURES) {
    for (let t = c.record.started_unix_ns; t < c.record.ended_unix_ns; t += WINDOW) {
      if (t < to && t + WINDOW > from) out.push({ capture: c, start: t, end: t + WINDOW });
    }
  }
  return out;
}

function mockDeepNoise(c) {
  const r = rng(c.seed);
  const cpus = [0, 1, 2, 3].map((cpu) => {
    const s = (count, ns) => ({ count, ns, max_ns: Math.round((ns / Math.max(1, count)) * (2 + r() * 6)) });
    const irqs = { 36: { name: 'virtio1-req.0', ...s(200, 400e3 * (1 + r())) }, LOC: { name: 'Local timer interrupts', ...s(60000, 9e6 * (1 + r())) }, CAL: { name: 'Function call interrupts', ...s(300, 120e3) } };
    const softirqs = { TIMER: s(6000, 3e6 * (1 + r())), NET_RX: s(cpu === 1 ? 40000 : 800, (cpu === 1 ? 60e6 : 2e6) * (1 + r())), RCU: s(3000, 1.5e6), SCHED: s(2000, 2.5e6) };
    const threads = { [`kworker/${cpu}:1`]: s(50, 4e6 * r()), rcu_preempt: s(40, 1e6), [`ksoftirqd/${cpu}`]: s(5, cpu === 1 ? 20e6 : 0.2e6) };
    const nmi = s(2, 30e3);
    const steal_ns = cpu === 3 ? 15e6 : 0;
    const sum = (o) => Object.values(o).reduce((a, x) => ({ count: a.count + x.count, ns: a.ns + x.ns }), { count: 0, ns: 0 });
    const irq = sum(irqs);
    const softirq = sum(softirqs);
    const thread = sum(threads);
    const noise_ns = irq.ns + softirq.ns + thread.ns + nmi.ns + steal_ns;
    return { cpu, runtime_ns: 60e9, noise_ns, noise_pct: (noise_ns * 100) / 60e9, max_single_ns: 900e3, max_single_source: 'softirq NET_RX', irq, softirq, nmi, thread, steal_ns, unexplained_ns: null, irqs, softirqs, threads, missed_by_hooks: {} };
  });
  const top = new Map();
  for (const c of cpus) {
    const addTop = (source, kind, name, st) => {
      const t = top.get(source) ?? { source, kind, name, count: 0, ns: 0, max_ns: 0, cpus: [] };
      t.count += st.count;
      t.ns += st.ns;
      t.max_ns = Math.max(t.max_ns, st.max_ns ?? 0);
      t.cpus.push(c.cpu);
      top.set(source, t);
    };
    for (const [k, v] of Object.entries(c.irqs)) addTop(/^\d+$/.test(k) ? `irq ${k} ${v.name}` : `vector ${k}`, /^\d+$/.test(k) ? 'irq' : 'vector', /^\d+$/.test(k) ? `${k} ${v.name}` : k, v);
    for (const [k, v] of Object.entries(c.softirqs)) addTop(`softirq ${k}`, 'softirq', k, v);
    for (const [k, v] of Object.entries(c.threads)) addTop(`thread ${k}`, 'thread', k, v);
  }
  const victims = c.victims
    ? {
        pids: [4242],
        threads: [
          { tid: 4243, tgid: 4242, comm: 'search-worker', interrupted: { count: 420, ns: 38e6, by_source: [{ source: 'softirq NET_RX', count: 300, ns: 31e6, max_ns: 900e3 }, { source: 'vector LOC', count: 100, ns: 5e6, max_ns: 80e3 }, { source: 'irq 36 virtio1-req.0', count: 20, ns: 2e6, max_ns: 200e3 }] }, runnable_behind_ns: 55e6, behind: [{ tid: 19, comm: 'ksoftirqd/1', ns: 40e6, count: 12 }, { tid: 88, comm: 'kworker/1:1', ns: 9e6, count: 30 }, { tid: 0, comm: 'swapper/1', ns: 1e6, count: 2 }], behind_unknown_ns: 5e6 },
          { tid: 4242, tgid: 4242, comm: 'search', interrupted: { count: 20, ns: 1.2e6, by_source: [{ source: 'vector LOC', count: 20, ns: 1.2e6, max_ns: 70e3 }] }, runnable_behind_ns: 0.4e6, behind: [{ tid: 4243, comm: 'search-worker', ns: 0.4e6, count: 3 }], behind_unknown_ns: 0 },
        ],
      }
    : null;
  return { tier: 'deep', cannot_show: [], duration_ns: 60e9, window_start_ns: 1, window_end_ns: 60e9 + 1, threshold_ns: 0, cpus, top_sources: [...top.values()].sort((a, b) => b.ns - a.ns).slice(0, 10), victims, dropped: { sources: 0, victims: 0, histograms: 0 }, missing_hooks: [] };
}

function mockContinuousNoise(c) {
  const r = rng(c.seed);
  const est = (ns) => ({ samples: Math.round(ns / 10.1e6), ns, ci95_ns: [Math.round(ns * 0.7), Math.round(ns * 1.4)] });
  const cpus = [0, 1, 2, 3].map((cpu) => {
    const sources = [
      { source: 'softirq NET_RX', kind: 'softirq', name: 'NET_RX', ...est((cpu === 1 ? 50e6 : 2e6) * (1 + r())) },
      { source: 'softirq TIMER', kind: 'softirq', name: 'TIMER', ...est(3e6) },
      { source: `thread kworker/${cpu}:1`, kind: 'thread', name: `kworker/${cpu}:1`, ...est(6e6 * r()) },
      { source: 'vector LOC', kind: 'vector', name: 'LOC', ...est(1e6) },
    ];
    return {
      cpu,
      runtime_ns: 60e9,
      procfs_time: { softirq_ns: 70e6, softirq_pct: 0.12, hardirq_ns: null, steal_ns: cpu === 3 ? 15e6 : 0 },
      procfs_counts: { softirq_total: 9000, softirqs: {}, irq_total: 60000, irqs: {} },
      sampled: { periods: 600000, samples: 5000, noise: est(60e6), irq: est(1e6), softirq: est(50e6), nmi: est(0), thread: est(6e6), sources },
    };
  });
  return {
    tier: 'continuous',
    cannot_show: ['victims: which threads an interrupt or softirq took time from'],
    duration_ns: 60e9,
    accounting: { hardirq_time: 'not_accounted', softirq_time: 'tick', note: 'mock: hard IRQ time is not accounted by this kernel' },
    sampling: { frequency_hz: 99, samples: 20000, lost_samples: 0 },
    cpus,
    top_sources: cpus.flatMap((c) => c.sampled.sources.map((s) => ({ ...s, cpus: [c.cpu] }))).sort((a, b) => b.ns - a.ns).slice(0, 10),
  };
}

function mockServeApi(url, res, req) {
  const q = url.searchParams;
  const p = url.pathname;
  const first = SERVE_CAPTURES[0].record.started_unix_ns;
  const last = SERVE_CAPTURES[SERVE_CAPTURES.length - 1].record.ended_unix_ns;
  if (p === '/healthz' || p === '/readyz') return res.end('ok\n');
  if (p === '/metrics' || p === '/api/v1/config') return json(res, 404, { error: `tailprof serve has no ${p === '/metrics' ? 'metrics' : 'configuration'}: it shows the captures in ${SERVE_DIR}` }, req);
  if (p === '/api/v1/status') {
    return json(res, 200, { mode: 'serve', dir: SERVE_DIR, from_unix_ns: first, to_unix_ns: last, captures: SERVE_CAPTURES.length, segments: windowsIn(0, Infinity).length, skipped: [{ path: `${SERVE_DIR}/c1796000000`, reason: 'no capture.json: not a capture directory' }] }, req);
  }
  if (p === '/api/v1/segments') {
    return json(res, 200, windowsIn(0, Infinity).map((w) => ({ name: `${w.capture.record.id}/${w.start}`, start_unix_ns: w.start, end_unix_ns: w.end, bytes: 4096 })), req);
  }
  if (p === '/api/v1/captures') {
    if (req.method === 'POST') return json(res, 405, { error: 'tailprof serve is read-only: it shows captures, it cannot start one' }, req);
    return json(res, 200, { read_only: true, running: false, captures: SERVE_CAPTURES.map((c) => c.record) }, req);
  }
  const range = serveRange(q, res, req);
  if (!range) return;
  const { from, to } = range;
  const wins = windowsIn(from, to);
  const covered = wins.length ? { covered_from_unix_ns: Math.min(...wins.map((w) => w.start)), covered_to_unix_ns: Math.max(...wins.map((w) => w.end)) } : { covered_from_unix_ns: 0, covered_to_unix_ns: 0 };
  switch (p) {
    case '/api/v1/timeline': {
      const step = Math.max(1e9, Number((q.get('step') ?? '10s').replace(/s$/, '')) * 1e9 || 10e9);
      const steps = [];
      for (const w of wins) {
        const r = rng(Math.round(w.start / 1e9));
        for (let t = w.start; t < w.end; t += step) {
          steps.push({ start_unix_ns: t, end_unix_ns: Math.min(w.end, t + step), segments: 1, cpu_s: 2 + r() * 8, runqueue_s: r() * 2, sleeping_s: 20 + r() * 10, disk_s: r() * 3, other_s: r(), samples: 1000, threads: 120 });
        }
      }
      return json(res, 200, { from_unix_ns: from, to_unix_ns: to, step_ns: step, steps }, req);
    }
    case '/api/v1/profile': {
      const view = q.get('view') ?? 'cpu';
      if (!['cpu', 'offcpu', 'wall'].includes(view)) return json(res, 400, { error: `unknown view '${view}'; use cpu, offcpu or wall` }, req);
      const caps = [...new Set(wins.map((w) => w.capture))];
      let root = caps.length ? mergeTrees(caps.map((c) => treeFor(view, c.seed))) : { name: 'all', value: 0, self: 0 };
      const focus = q.get('focus');
      if (focus) for (const f of focus.split(';')) root = root.children?.find((c) => c.name === f && !c.other) ?? { name: f, value: 0, self: 0 };
      const max = Number(q.get('max_nodes') ?? 2000);
      return json(res, 200, { from_unix_ns: from, to_unix_ns: to, windows: wins.length, ...covered, view, unit: view === 'cpu' ? 'samples' : 'nanoseconds', root: budgeted(root, max) }, req);
    }
    case '/api/v1/noise': {
      const caps = [...new Set(wins.map((w) => w.capture))];
      const c = caps[caps.length - 1];
      if (!c) return json(res, 404, { error: 'no capture with a noise.json overlaps the range' }, req);
      const doc = c.record.tier === 'deep' ? mockDeepNoise(c) : mockContinuousNoise(c);
      return json(res, 200, { ...doc, capture: c.record.id }, req);
    }
    case '/api/v1/histograms': {
      const caps = [...new Set(wins.map((w) => w.capture))].filter((c) => c.record.tier === 'deep');
      return json(res, 200, {
        from_unix_ns: from,
        to_unix_ns: to,
        ...(caps.length ? {} : { note: 'no deep capture overlaps this range: latency histograms come from deep captures only' }),
        captures: caps.map((c) => ({ capture: c.record.id, reason: c.record.reason, started_unix_ns: c.record.started_unix_ns, ended_unix_ns: c.record.ended_unix_ns, histograms: mockHistograms() })),
      }, req);
    }
    default:
      return json(res, 404, { error: `no such endpoint: ${p}` }, req);
  }
}

server.listen(port, '127.0.0.1', () => {
  const what = mockServe ? `mock tailprof serve, ${mockNodes} nodes` : mock ? `mock agent, ${mockNodes} nodes` : `API from ${agent.origin}`;
  console.log(`serving dist/ on http://127.0.0.1:${port}/ (${what})`);
});
