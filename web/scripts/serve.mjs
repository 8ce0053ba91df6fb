// Development server for the viewer: serves dist/ and forwards the API to an agent, or answers it with a
// synthetic profile (--mock) to work and test without one.
//
//   node scripts/serve.mjs [--port 8080] [--agent http://127.0.0.1:9740]
//   node scripts/serve.mjs --mock [--nodes 100000] [--token SECRET]
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
const mock = args.includes('--mock');
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
      return mockApi(url, res, req);
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
function synth(target, states) {
  const r = rng(42);
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

const trees = new Map();
function treeFor(view) {
  const key = view === 'cpu' ? 'cpu' : 'wall';
  if (!trees.has(key)) trees.set(key, synth(mockNodes, key !== 'cpu'));
  return trees.get(key);
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
      return json(res, 200, { tier: 'mock', ready: true, window_s: 10 });
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

server.listen(port, '127.0.0.1', () => {
  console.log(`serving dist/ on http://127.0.0.1:${port}/ (${mock ? `mock agent, ${mockNodes} nodes` : `API from ${agent.origin}`})`);
});
