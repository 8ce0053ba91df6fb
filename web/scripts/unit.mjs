// Unit tests of the tree code (src/tree.ts, src/state/url.ts) under node's test runner: esbuild bundles the
// modules in memory, no browser needed.  npm test
import { build } from 'esbuild';
import { test } from 'node:test';
import assert from 'node:assert/strict';

const entry = `
export * from './tree';
export { parseParams, toHash, DEFAULT_STATE } from './state/url';
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
