// The diff view: the current range against a baseline range. Each tree is normalised to its own total (a share of
// 1), the two are merged by path, and every merged frame is as wide as the larger of its two shares (plus room for
// its children's, so that both trees fit). Frames are coloured by the change in share: blue for less, orange for
// more (a colour-blind-safe diverging pair), and colours of their own for frames that are new or gone.

import type { ProfileNode } from './api';
import { type Rgb, ROOT_RGB, type StateName } from './colours';
import { F_ROOT, type FlatTree, stateOfFrame } from './tree';

export type DiffKind = 'new' | 'gone' | 'changed';

export interface DiffNode extends ProfileNode {
  /** Share of the baseline's total (0 when absent there). */
  before: number;
  /** Share of the current range's total (0 when absent now). */
  after: number;
  children?: DiffNode[];
}

/** Shares below this are "the same" in colour. */
const SAME = 0.0005;

export const DIFF_LESS: Rgb = [0x21, 0x66, 0xac]; // blue
export const DIFF_MORE: Rgb = [0xd9, 0x5f, 0x02]; // orange
export const DIFF_SAME: Rgb = [0xe6, 0xe4, 0xe0];
export const DIFF_NEW: Rgb = [0x76, 0x2a, 0x83]; // purple
export const DIFF_GONE: Rgb = [0x52, 0x52, 0x52]; // dark grey

// ---- time arithmetic on the API's time forms ----

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/;
const UNIT_S: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

export function parseDuration(s: string): number | null {
  let rest = s.trim();
  let total = 0;
  if (!rest) return null;
  while (rest) {
    const m = DURATION.exec(rest);
    if (!m) return null;
    total += Number(m[1]) * UNIT_S[m[2]!]!;
    rest = rest.slice(m[0].length).trim();
  }
  return total;
}

/** A time as the API takes it, in Unix seconds (null when it cannot tell). */
export function resolveTime(s: string, nowS: number): number | null {
  const v = s.trim();
  if (v === 'now') return nowS;
  if (v.startsWith('-')) {
    const d = parseDuration(v.slice(1));
    return d === null ? null : nowS - d;
  }
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v);
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t / 1000;
}

/** A time `d` seconds earlier, in a form the API takes; relative times stay relative (the agent's clock decides). */
export function shiftTime(s: string, d: number): string | null {
  const v = s.trim();
  if (v === 'now') return `-${durationText(d)}`;
  if (v.startsWith('-')) {
    const x = parseDuration(v.slice(1));
    return x === null ? null : `-${durationText(x + d)}`;
  }
  const abs = resolveTime(v, 0);
  return abs === null ? null : (abs - d).toFixed(3);
}

/** Whole seconds, or milliseconds (the agent reads durations without decimals). */
function durationText(x: number): string {
  return Number.isInteger(x) ? `${x}s` : `${Math.round(x * 1000)}ms`;
}

/** The baseline range for a diff spec, given the current range as the API takes it. */
export function baselineRange(spec: { kind: string; from?: string; to?: string }, from: string, to: string): { from: string; to: string } | { error: string } {
  if (spec.kind === 'range') return { from: spec.from!, to: spec.to! };
  let d: number;
  if (spec.kind === 'hour') d = 3600;
  else if (spec.kind === 'day') d = 86400;
  else {
    const now = Date.now() / 1000;
    const a = resolveTime(from, now);
    const b = resolveTime(to, now);
    if (a === null || b === null || !(b > a)) return { error: `cannot tell how long the range ${from} to ${to} is` };
    d = b - a;
  }
  const f = shiftTime(from, d);
  const t = shiftTime(to, d);
  if (f === null || t === null) return { error: `cannot move the range ${from} to ${to} back in time` };
  return { from: f, to: t };
}

// ---- trees ----

/** A copy of the tree without the subtrees of hidden thread states (their time leaves the ancestors too). */
export function withoutStates(root: ProfileNode, hidden: ReadonlySet<StateName>, stateDepth: number): ProfileNode {
  if (!hidden.size || stateDepth <= 0) return root;
  const walk = (n: ProfileNode, d: number): ProfileNode => {
    if (!n.children || d >= stateDepth) return n;
    const kids: ProfileNode[] = [];
    let removed = 0;
    for (const c of n.children) {
      const s = d + 1 <= stateDepth ? stateOfFrame(c) : null;
      if (s && hidden.has(s)) {
        removed += Math.max(0, c.value || 0);
        continue;
      }
      const w = walk(c, d + 1);
      removed += (c.value || 0) - (w.value || 0);
      kids.push(w);
    }
    return { ...n, value: Math.max(0, (n.value || 0) - removed), children: kids };
  };
  return walk(root, 0);
}

function selfOf(n: ProfileNode): number {
  if (n.self !== undefined) return Math.max(0, n.self);
  let s = n.value || 0;
  for (const c of n.children ?? []) s -= c.value || 0;
  return Math.max(0, s);
}

const key = (n: ProfileNode): string => (n.other ? '\u0000' : '') + n.name;

/** Merges the current tree (`after`) and the baseline (`before`), each normalised to its own total. */
export function mergeDiff(after: ProfileNode | null, before: ProfileNode | null): DiffNode {
  const ta = after && after.value > 0 ? after.value : 0;
  const tb = before && before.value > 0 ? before.value : 0;
  const walk = (a: ProfileNode | null, b: ProfileNode | null): DiffNode => {
    const sa = a && ta ? (a.value || 0) / ta : 0;
    const sb = b && tb ? (b.value || 0) / tb : 0;
    const selfA = a && ta ? selfOf(a) / ta : 0;
    const selfB = b && tb ? selfOf(b) / tb : 0;
    const name = (a ?? b)!.name;
    const node: DiffNode = { name, value: 0, self: 0, before: sb, after: sa };
    if ((a && a.other) || (b && b.other)) node.other = true;
    const kids = new Map<string, [ProfileNode | null, ProfileNode | null]>();
    for (const c of a?.children ?? []) kids.set(key(c), [c, null]);
    for (const c of b?.children ?? []) {
      const e = kids.get(key(c));
      if (e) e[1] = c;
      else kids.set(key(c), [null, c]);
    }
    let width = Math.max(selfA, selfB);
    if (kids.size) {
      const children: DiffNode[] = [];
      for (const [ca, cb] of kids.values()) {
        const c = walk(ca, cb);
        width += c.value;
        children.push(c);
      }
      children.sort((x, y) => y.value - x.value);
      node.children = children;
    }
    node.self = Math.max(selfA, selfB);
    node.value = Math.max(width, sa, sb);
    return node;
  };
  const root = walk(after ?? { name: 'all', value: 0 }, before ?? { name: 'all', value: 0 });
  root.name = (after ?? before)?.name ?? 'all';
  return root;
}

/** Per flattened node (pre-order, as `flatten` lays them out): its shares before and after. */
export function diffArrays(root: DiffNode, n: number): { before: Float64Array; after: Float64Array } {
  const before = new Float64Array(n);
  const after = new Float64Array(n);
  let i = 0;
  const stack: DiffNode[] = [root];
  while (stack.length && i < n) {
    const d = stack.pop()!;
    before[i] = d.before;
    after[i] = d.after;
    i++;
    const c = d.children;
    if (c) for (let k = c.length - 1; k >= 0; k--) stack.push(c[k]!);
  }
  return { before, after };
}

export function kindOf(before: number, after: number): DiffKind {
  if (before <= 0 && after > 0) return 'new';
  if (after <= 0 && before > 0) return 'gone';
  return 'changed';
}

function mix(a: Rgb, b: Rgb, t: number): Rgb {
  return [Math.round(a[0] + (b[0] - a[0]) * t), Math.round(a[1] + (b[1] - a[1]) * t), Math.round(a[2] + (b[2] - a[2]) * t)];
}

/** The colour scale: the largest change of any frame but the root saturates (at least 2 points). */
export function diffScale(t: FlatTree, before: Float64Array, after: Float64Array): number {
  let m = 0;
  for (let i = 1; i < t.n; i++) {
    const d = Math.abs(after[i]! - before[i]!);
    if (d > m) m = d;
  }
  return Math.max(0.02, m);
}

export function diffColour(before: number, after: number, scale: number): Rgb {
  const k = kindOf(before, after);
  if (k === 'new') return DIFF_NEW;
  if (k === 'gone') return DIFF_GONE;
  const d = after - before;
  if (Math.abs(d) < SAME) return DIFF_SAME;
  const x = Math.sqrt(Math.min(1, Math.abs(d) / scale));
  return mix(DIFF_SAME, d > 0 ? DIFF_MORE : DIFF_LESS, 0.25 + 0.75 * x);
}

export function diffColours(t: FlatTree, before: Float64Array, after: Float64Array): { fill: Rgb[] } {
  const scale = diffScale(t, before, after);
  const fill: Rgb[] = new Array(t.n);
  const cache = new Map<string, Rgb>();
  for (let i = 0; i < t.n; i++) {
    if (t.flags[i]! & F_ROOT) {
      fill[i] = ROOT_RGB;
      continue;
    }
    const c = diffColour(before[i]!, after[i]!, scale);
    const k = c.join(',');
    const hit = cache.get(k);
    if (hit) fill[i] = hit;
    else {
      cache.set(k, c);
      fill[i] = c;
    }
  }
  return { fill };
}

/** The legend's gradient, less to more. */
export function diffGradientCss(): string {
  const css = (c: Rgb): string => `rgb(${c[0]},${c[1]},${c[2]})`;
  return `linear-gradient(to right, ${css(DIFF_LESS)}, ${css(DIFF_SAME)}, ${css(DIFF_MORE)})`;
}

