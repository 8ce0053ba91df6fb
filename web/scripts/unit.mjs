// Unit tests of the tree code (src/tree.ts, src/state/url.ts, src/diff.ts, src/idle.ts, src/noise-tree.ts) under
// node's test runner: esbuild bundles the modules in memory, no browser needed.  npm test
import { build } from 'esbuild';
import { test } from 'node:test';
import assert from 'node:assert/strict';

const entry = `
export * from './tree';
export { parseParams, toHash, DEFAULT_STATE, hasExplicitRange } from './state/url';
export { IDLE_WAITS, frameBase, idleKind, withoutIdle } from './idle';
export { noiseTree, noiseFormat, victims, cpuTimes } from './noise-tree';
export { mergeDiff, diffArrays, kindOf, withoutStates, baselineRange, shiftTime, diffColour, DIFF_NEW, DIFF_GONE, DIFF_MORE, DIFF_LESS } from './diff';
`;
const out = await build({
  stdin: { contents: entry, resolveDir: new URL('../src/', import.meta.url).pathname, loader: 'ts' },
  bundle: true,
  write: false,
  format: 'esm',
  platform: 'neutral',
  logLevel: 'error',
});
const m = await import('data:text/javascript;base64,' + Buffer.from(out.outputFiles[0].text).toString('base64'));

const n = (name, value, self, children) => ({ name, value, self, ...(children ? { children } : {}) });
const opts = { stateDepth: 0, groupDepth: 1, hidden: new Set() };

// all(10) -> p(10) -> a(8) -> b(6) -> a(4) -> c(4); a(8) self 2, b self 2; p -> d(2)
const recursive = () =>
  n('all', 10, 0, [n('p', 10, 0, [n('a', 8, 2, [n('b', 6, 2, [n('a', 4, 0, [n('c', 4, 4)])])]), n('d', 2, 2)])]);

test('flatten lays children left to right within the parent', () => {
  const t = m.flatten(recursive(), opts);
  assert.equal(t.n, 7);
  assert.equal(t.total, 10);
  const d = t.nameIndex.get('d');
  const i = [...t.nameId].indexOf(d);
  assert.equal(t.x[i], 8);
  assert.equal(t.end[0], 7);
  assert.deepEqual(m.pathOf(t, [...t.nameId].indexOf(t.nameIndex.get('c'))), ['p', 'a', 'b', 'a', 'c']);
});

test('top functions count a recursive function once per stack', () => {
  const t = m.flatten(recursive(), opts);
  const rows = Object.fromEntries(m.topFunctions(t).map((r) => [r.name, r]));
  assert.equal(rows.a.total, 8);
  assert.equal(rows.a.self, 2);
  assert.equal(rows.c.total, 4);
  assert.equal(rows.p.total, 10);
  assert.equal(rows.all, undefined);
});

test('search counts nested matches once', () => {
  const t = m.flatten(recursive(), opts);
  const r = m.search(t, /^a$/);
  assert.equal(r.matchedValue, 8);
  assert.equal(r.share, 0.8);
  assert.equal(r.count, 2);
  assert.equal(r.top.length, 1);
  const r2 = m.search(t, /^(c|d)$/);
  assert.equal(r2.matchedValue, 6);
});

test('sandwich merges callers and callees of the outermost call', () => {
  const t = m.flatten(recursive(), opts);
  const s = m.sandwich(t, t.nameIndex.get('a'));
  assert.equal(s.total, 8);
  assert.equal(s.callers.value, 8);
  assert.deepEqual(s.callers.children.map((c) => c.name), ['p']);
  assert.equal(s.callees.children[0].name, 'b');
  assert.equal(s.callees.children[0].value, 6);
  const sc = m.sandwich(t, t.nameIndex.get('c'));
  // c's callers, innermost first: a, b, a, p
  let cur = sc.callers;
  const chain = [];
  while (cur.children?.length) {
    cur = cur.children[0];
    chain.push(cur.name);
  }
  assert.deepEqual(chain, ['a', 'b', 'a', 'p']);
});

test('hidden states leave the tree and its totals', () => {
  const wall = n('all', 100, 0, [
    n('nginx', 100, 0, [n('[sleeping]', 70, 10, [n('epoll_wait', 60, 60)]), n('[running]', 30, 0, [n('main', 30, 30)]), n('[other]', 0, 0)]),
  ]);
  const t = m.flatten(wall, { stateDepth: 2, groupDepth: 1, hidden: new Set(['sleeping']) });
  assert.equal(t.total, 30);
  const main = [...t.nameId].indexOf(t.nameIndex.get('main'));
  assert.equal(t.x[main], 0);
  assert.equal(m.nodeState(t, main), 'running');
  assert.ok(t.flags[1] & m.F_GROUP);
  assert.equal(t.nameIndex.get('epoll_wait'), undefined);
});

test('folded nodes mark their ancestors trimmed; graft replaces the subtree', () => {
  const root = n('all', 10, 0, [n('p', 10, 0, [n('a', 7, 7), { name: '[other]', value: 3, self: 3, other: true }])]);
  let t = m.flatten(root, opts);
  assert.ok(t.flags[1] & m.F_TRIMMED);
  assert.ok(m.hasFoldedChild(t, 1));
  assert.ok(m.graft(root, ['p'], n('p', 10, 0, [n('a', 7, 7), n('b', 2, 2), n('c', 1, 1)])));
  t = m.flatten(root, opts);
  assert.ok(!(t.flags[1] & m.F_TRIMMED));
  assert.equal(m.findPath(t, ['p', 'c']).matched, 2);
});

test('the address round-trips the state', () => {
  const s = m.parseParams(new URLSearchParams('view=wall&from=-1h&focus=a;b;%5Bother%5D&search=x%7Cy&hide=sleeping,bogus&pid=1,2&mode=icicle&sel=10,20&max_nodes=500'));
  assert.equal(s.view, 'wall');
  assert.deepEqual(s.focus, ['a', 'b', '[other]']);
  assert.deepEqual(s.hide, ['sleeping']);
  assert.deepEqual(s.sel, [10, 20]);
  assert.equal(s.filters.pid, '1,2');
  const again = m.parseParams(new URLSearchParams(m.toHash(s).slice(1)));
  assert.deepEqual(again, s);
  assert.equal(m.toHash(m.DEFAULT_STATE), '');
});

test('the diff merges two trees normalised to their totals; frames fit both', () => {
  // now: all(100) -> p(100) -> a(75), b(25); baseline: all(10) -> p(10) -> b(5), c(5)
  const now = n('all', 100, 0, [n('p', 100, 0, [n('a', 75, 75), n('b', 25, 25)])]);
  const base = n('all', 10, 0, [n('p', 10, 0, [n('b', 5, 5), n('c', 5, 5)])]);
  const d = m.mergeDiff(now, base);
  const p = d.children[0];
  assert.equal(p.name, 'p');
  const by = Object.fromEntries(p.children.map((c) => [c.name, c]));
  assert.equal(by.a.after, 0.75);
  assert.equal(by.a.before, 0);
  assert.equal(by.b.after, 0.25);
  assert.equal(by.b.before, 0.5);
  assert.equal(by.c.before, 0.5);
  assert.equal(m.kindOf(by.a.before, by.a.after), 'new');
  assert.equal(m.kindOf(by.c.before, by.c.after), 'gone');
  assert.equal(m.kindOf(by.b.before, by.b.after), 'changed');
  // Each frame is as wide as the larger share, and a parent holds its children.
  assert.equal(by.a.value, 0.75);
  assert.equal(by.b.value, 0.5);
  assert.equal(p.value, 1.75);
  assert.equal(d.value, 1.75);
  const t = m.flatten(d, opts);
  const arr = m.diffArrays(d, t.n);
  const ia = [...t.nameId].indexOf(t.nameIndex.get('a'));
  assert.equal(arr.after[ia], 0.75);
  assert.equal(arr.before[ia], 0);
  for (let i = 1; i < t.n; i++) assert.ok(t.x[i] + t.value[i] <= t.x[t.parent[i]] + t.value[t.parent[i]] + 1e-12);
  assert.deepEqual(m.diffColour(0, 0.2, 0.2), m.DIFF_NEW);
  assert.deepEqual(m.diffColour(0.2, 0, 0.2), m.DIFF_GONE);
  assert.deepEqual(m.diffColour(0.1, 0.3, 0.2), m.DIFF_MORE);
  assert.deepEqual(m.diffColour(0.3, 0.1, 0.2), m.DIFF_LESS);
});

test('hidden states leave both trees before the diff normalises them', () => {
  const wall = n('all', 100, 0, [n('x', 100, 0, [n('[sleeping]', 80, 0, [n('f', 80, 80)]), n('[running]', 20, 0, [n('g', 20, 20)])])]);
  const w = m.withoutStates(wall, new Set(['sleeping']), 2);
  assert.equal(w.value, 20);
  assert.equal(w.children[0].value, 20);
  assert.deepEqual(w.children[0].children.map((c) => c.name), ['[running]']);
  assert.equal(wall.value, 100);
});

test('baselines move the range back, relative times staying relative', () => {
  assert.equal(m.shiftTime('now', 3600), '-3600s');
  assert.equal(m.shiftTime('-15m', 3600), '-4500s');
  assert.equal(m.shiftTime('1000.5', 100), '900.500');
  assert.equal(m.shiftTime('-1.5s', 60), '-61500ms');
  assert.equal(m.shiftTime('2026-12-06T10:00:00Z', 86400), String((Date.parse('2026-12-05T10:00:00Z') / 1000).toFixed(3)));
  assert.deepEqual(m.baselineRange({ kind: 'hour' }, '-15m', 'now'), { from: '-4500s', to: '-3600s' });
  assert.deepEqual(m.baselineRange({ kind: 'day' }, '100000', '100600'), { from: '13600.000', to: '14200.000' });
  assert.deepEqual(m.baselineRange({ kind: 'prev' }, '-15m', 'now'), { from: '-1800s', to: '-900s' });
  assert.deepEqual(m.baselineRange({ kind: 'range', from: '1', to: '2' }, '-15m', 'now'), { from: '1', to: '2' });
});

test('the address keeps the page and the diff', () => {
  for (const q of ['page=noise&diff=hour', 'diff=day', 'diff=prev&page=captures', 'diff=1700000000,1700000600&page=latency']) {
    const s = m.parseParams(new URLSearchParams(q));
    const again = m.parseParams(new URLSearchParams(m.toHash(s).slice(1)));
    assert.deepEqual(again, s);
  }
  const s = m.parseParams(new URLSearchParams('page=nope&diff=bogus'));
  assert.equal(s.page, 'profile');
  assert.equal(s.diff, null);
  assert.deepEqual(m.parseParams(new URLSearchParams('diff=-2h,-1h')).diff, { kind: 'range', from: '-2h', to: '-1h' });
});

test('the address keeps a capture baseline and the idle preset', () => {
  const s = m.parseParams(new URLSearchParams('view=wall&diff=capture:c1796550000&idle=hide'));
  assert.deepEqual(s.diff, { kind: 'capture', id: 'c1796550000' });
  assert.equal(s.idle, true);
  assert.equal(m.toHash(s), '#view=wall&diff=capture%3Ac1796550000&idle=hide');
  assert.deepEqual(m.parseParams(new URLSearchParams(m.toHash(s).slice(1))), s);
  assert.equal(m.parseParams(new URLSearchParams('idle=show')).idle, false);
  assert.equal(m.parseParams(new URLSearchParams('diff=capture:')).diff, null);
  assert.equal(m.hasExplicitRange({ search: '', hash: '#view=wall' }), false);
  assert.equal(m.hasExplicitRange({ search: '', hash: '#from=1&to=2' }), true);
  assert.equal(m.hasExplicitRange({ search: '?sel=1,2', hash: '' }), true);
});

test('idle waits: the frames of the list match, whatever the profiler adds to their names', () => {
  const idle = [
    'futex_wait_[k]', '__futex_wait_[k]', 'futex_wait_queue_[k]', 'futex_wait_queue_me_[k]', 'do_futex_[k]',
    'pthread_cond_wait@@GLIBC_2.3.2', '___pthread_cond_wait', '__pthread_cond_wait_common', 'pthread_cond_timedwait', '__lll_lock_wait',
    '__futex_abstimed_wait_common64', 'ep_poll_[k]', 'do_epoll_wait_[k]', 'do_epoll_pwait.part.0_[k]', '__x64_sys_epoll_wait_[k]', 'epoll_wait',
    'poll_schedule_timeout.constprop.0_[k]', 'do_sys_poll_[k]', 'do_select_[k]', 'core_sys_select_[k]',
    'tokio::runtime::park::Inner::park', 'tokio::runtime::park::CachedParkThread::park::h0123456789abcdef',
    '<tokio::runtime::park::CachedParkThread as core::fmt::Debug>::park', 'tokio::runtime::scheduler::multi_thread::park::Parker::park',
    'tokio::runtime::scheduler::multi_thread::worker::Context::park_timeout',
    'parking_lot_core::thread_parker::imp::ThreadParker::futex_wait', 'std::thread::park', 'std::thread::Thread::park',
    'std::thread::park_timeout', 'std::sys::pal::unix::futex::futex_wait', 'runtime.gopark', 'runtime.futexsleep', 'runtime.notesleep',
    'runtime.netpoll', 'futex_wait (kernel/futex/waitwake.c:669)_[k]', 'std::thread::park_[i]',
  ];
  const busy = [
    'nanosleep', 'clock_nanosleep', 'do_nanosleep_[k]', 'hrtimer_nanosleep_[k]', '__x64_sys_futex_[k]', 'futex_wake_[k]',
    'my_futex_wait_helper', 'epoll_ctl', 'ep_poll_callback_[k]', 'tokio::runtime::task::raw::poll', 'runtime.goexit',
    'runtime.mallocgc', 'std::thread::spawn', 'do_sys_openat2_[k]', 'pthread_mutex_lock', 'schedule_[k]', 'tokio::runtime::parker',
  ];
  for (const f of idle) assert.ok(m.idleKind(f) !== null, `${f} is an idle wait (base ${m.frameBase(f)})`);
  for (const f of busy) assert.equal(m.idleKind(f), null, `${f} is not an idle wait (base ${m.frameBase(f)})`);
  assert.equal(m.idleKind('ep_poll_[k]'), 'epoll');
  assert.equal(m.idleKind('runtime.gopark'), 'go park');
});

test('hiding idle waits cuts sleeping stacks at their outermost idle frame and keeps totals consistent', () => {
  // all(100) -> app(100) -> [sleeping](70): pool;pthread_cond_wait;futex_wait_[k] 30, loop;epoll_wait;ep_poll_[k] 20,
  // throttle;nanosleep 15, self 5; [running](30): loop;epoll_wait 10 (on CPU: not idle), main 20.
  const wall = () =>
    n('all', 100, 0, [
      n('app', 100, 0, [
        n('[sleeping]', 70, 5, [
          n('pool', 30, 0, [n('pthread_cond_wait@@GLIBC_2.3.2', 30, 0, [n('futex_wait_[k]', 30, 30)])]),
          n('loop', 20, 0, [n('epoll_wait', 20, 0, [n('ep_poll_[k]', 20, 20)])]),
          n('throttle', 15, 0, [n('nanosleep', 15, 15)]),
        ]),
        n('[running]', 30, 0, [n('loop', 10, 0, [n('epoll_wait', 10, 10)]), n('main', 20, 20)]),
      ]),
    ]);
  const src = wall();
  const r = m.withoutIdle(src, 2);
  assert.equal(r.hidden, 50);
  assert.equal(r.root.value, 50);
  assert.equal(src.value, 100, 'the input is not changed');
  const app = r.root.children[0];
  assert.equal(app.value, 50);
  const sleeping = app.children.find((c) => c.name === '[sleeping]');
  assert.equal(sleeping.value, 20);
  assert.deepEqual(sleeping.children.map((c) => c.name), ['throttle'], 'emptied frames leave, nanosleep stays');
  const running = app.children.find((c) => c.name === '[running]');
  assert.equal(running, src.children[0].children[1], 'untouched subtrees are shared');
  const t = m.flatten(r.root, { stateDepth: 2, groupDepth: 1, hidden: new Set() });
  assert.equal(t.total, 50);
  for (let i = 1; i < t.n; i++) assert.ok(t.x[i] + t.value[i] <= t.x[t.parent[i]] + t.value[t.parent[i]] + 1e-9);
  assert.equal(m.withoutIdle(src, 0).hidden, 0, 'no states (cpu view): nothing hidden');
  // group_by=unit,comm: the state frames are one level deeper.
  const two = n('all', 100, 0, [n('x.service', 100, 0, [wall().children[0]])]);
  assert.equal(m.withoutIdle(two, 3).hidden, 50);
  assert.equal(m.withoutIdle(two, 2).hidden, 0, 'state frames deeper than told are not looked for');
});

const deepNoise = {
  tier: 'deep',
  duration_ns: 1e9,
  cpus: [
    {
      cpu: 0, runtime_ns: 1e9, noise_ns: 1e6, irq: { count: 3, ns: 300 }, softirq: { count: 1, ns: 500 }, nmi: { count: 1, ns: 7, max_ns: 7 },
      thread: { count: 1, ns: 60 }, steal_ns: 0,
      irqs: { 36: { name: 'virtio1-req.0', count: 1, ns: 100, max_ns: 100 }, 37: { name: null, count: 1, ns: 50, max_ns: 50 }, LOC: { name: 'Local timer interrupts', count: 1, ns: 150, max_ns: 150 } },
      softirqs: { NET_RX: { count: 1, ns: 500, max_ns: 500 }, TIMER: { count: 0, ns: 0, max_ns: 0 } },
      threads: { 'kworker/0:1': { count: 1, ns: 60, max_ns: 60 } },
      future_field: 1,
    },
    { cpu: 1, runtime_ns: 1e9, noise_ns: 0, irq: { count: 0, ns: 0 }, softirq: { count: 0, ns: 0 }, nmi: { count: 0, ns: 0, max_ns: 0 }, thread: { count: 0, ns: 0 }, steal_ns: 40, irqs: {}, softirqs: {}, threads: {} },
  ],
  top_sources: [],
  victims: {
    pids: [100],
    threads: [
      { tid: 100, tgid: 100, comm: 'app', interrupted: { count: 1, ns: 10, by_source: [] }, runnable_behind_ns: 5, behind: [], behind_unknown_ns: 5 },
      { tid: 101, tgid: 100, comm: null, interrupted: { count: 6, ns: 51000, by_source: [{ source: 'softirq NET_RX', count: 4, ns: 40000, max_ns: 20000 }] }, runnable_behind_ns: 303000, behind: [{ tid: 55, comm: 'kworker/0:1', ns: 300000, count: 2 }], behind_unknown_ns: 2000 },
    ],
  },
};

test('noise by source: a deep capture\'s noise.json as a tree of CPUs, kinds and sources', () => {
  assert.equal(m.noiseFormat(deepNoise), 'deep');
  const t = m.noiseTree(deepNoise);
  assert.equal(t.value, 100 + 50 + 150 + 500 + 60 + 7 + 40);
  const cpu0 = t.children.find((c) => c.name === 'cpu0');
  const irq = cpu0.children.find((c) => c.name === '[irq]');
  assert.deepEqual(irq.children.map((c) => [c.name, c.value]), [['LOC', 150], ['36 virtio1-req.0', 100], ['37', 50]]);
  assert.equal(cpu0.children[0].name, '[softirq]', 'largest first');
  assert.equal(cpu0.children[0].children.length, 1, 'no zero sources');
  assert.equal(cpu0.children.find((c) => c.name === '[nmi]').value, 7);
  assert.deepEqual(t.children.find((c) => c.name === 'cpu1').children.map((c) => c.name), ['[steal]']);
  assert.deepEqual(m.cpuTimes(deepNoise.cpus[0]), { softirq_ns: 500, hardirq_ns: 300, steal_ns: 0 });
  const v = m.victims(deepNoise);
  assert.deepEqual(v.rows.map((r) => [r.tid, r.comm, r.lostNs]), [[101, 'tid 101', 354000], [100, 'app', 15]]);
  assert.equal(v.rows[0].bySource[0].source, 'softirq NET_RX');
  assert.match(m.victims({ ...deepNoise, victims: null }).note, /--pid/);
  assert.match(m.victims({ ...deepNoise, victims: { pids: [7], threads: [] } }).note, /pid 7/);
});

test('noise by source: the continuous report\'s sampled estimates', () => {
  const est = (ns) => ({ samples: 1, ns, ci95_ns: [0, ns * 2] });
  const cont = {
    tier: 'continuous',
    cpus: [{ cpu: 3, runtime_ns: 1e9, procfs_time: { softirq_ns: 9, softirq_pct: 0, hardirq_ns: null, steal_ns: 2 }, sampled: { sources: [
      { source: 'softirq NET_RX', kind: 'softirq', name: 'NET_RX', ...est(30) },
      { source: 'vector LOC', kind: 'vector', name: 'LOC', ...est(10) },
      { source: 'nmi', kind: 'nmi', name: 'NMI', ...est(1) },
      { source: 'thread kworker/3:0', kind: 'thread', name: 'kworker/3:0', ...est(0) },
    ] } }],
  };
  assert.equal(m.noiseFormat(cont), 'continuous');
  assert.equal(m.noiseFormat({ cpus: cont.cpus }), 'continuous');
  assert.equal(m.noiseFormat({ cpus: deepNoise.cpus }), 'deep', 'told apart without a tier');
  const t = m.noiseTree(cont);
  assert.equal(t.value, 41);
  assert.deepEqual(t.children[0].children.map((c) => c.name), ['[softirq]', '[irq]', '[nmi]']);
  assert.deepEqual(m.cpuTimes(cont.cpus[0]), { softirq_ns: 9, hardirq_ns: null, steal_ns: 2 });
  assert.equal(m.victims(cont).note, 'victims are measured by deep captures only');
});
