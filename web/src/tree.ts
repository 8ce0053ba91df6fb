// The profile tree in flat, pre-order typed arrays: a node's subtree is the index range [i, end[i]), and each depth
// keeps its nodes left to right, so drawing a visible band of a row is a binary search plus a scan.

import type { ProfileNode } from './api';
import { STATES, type StateName } from './colours';

export const F_OTHER = 1; // a node folding children the server's node budget left out
export const F_KERNEL = 2; // a kernel frame (`_[k]`)
export const F_STATE = 4; // a thread-state frame (`[sleeping]`, …)
export const F_GROUP = 8; // a group frame (comm, pid, unit, …) above the stacks
export const F_TRIMMED = 16; // its subtree holds an F_OTHER node: the server has more detail
export const F_ROOT = 32;

const STATE_FRAME = /^\[(running|runnable|sleeping|disk|other)\]$/;

export interface FlatTree {
  n: number;
  names: string[];
  nameIndex: Map<string, number>;
  nameId: Int32Array;
  depth: Int32Array;
  /** Left edge, in the unit of the values. */
  x: Float64Array;
  value: Float64Array;
  self: Float64Array;
  parent: Int32Array;
  /** One past the last node of the subtree. */
  end: Int32Array;
  /** Index into STATES, or -1 when the node is under no state frame. */
  state: Int8Array;
  flags: Uint8Array;
  maxDepth: number;
  byDepth: Int32Array[];
  total: number;
}

/** A node built here (the sandwich) may carry its thread state itself. */
export interface TreeNode extends ProfileNode {
  state?: StateName | null;
  children?: TreeNode[];
}

export interface FlattenOptions {
  /** State frames are looked for down to this depth (the root is depth 0); 0 finds none. */
  stateDepth: number;
  /** Group frames are the nodes above the state frame or, without one, down to this depth. */
  groupDepth: number;
  hidden: ReadonlySet<StateName>;
}

export function stateOfFrame(node: ProfileNode): StateName | null {
  if (node.other) return null;
  const m = STATE_FRAME.exec(node.name);
  return m ? (m[1] as StateName) : null;
}

function countNodes(root: ProfileNode): number {
  let n = 0;
  const stack: ProfileNode[] = [root];
  while (stack.length) {
    const node = stack.pop()!;
    n++;
    const c = node.children;
    if (c) for (let i = 0; i < c.length; i++) stack.push(c[i]!);
  }
  return n;
}

interface Open {
  node: ProfileNode;
  i: number;
  k: number;
  cursor: number;
}

export function flatten(root: ProfileNode, opts: FlattenOptions): FlatTree {
  const cap = countNodes(root);
  const nameIndex = new Map<string, number>();
  const names: string[] = [];
  const nameId = new Int32Array(cap);
  const depth = new Int32Array(cap);
  const x = new Float64Array(cap);
  const value = new Float64Array(cap);
  const self = new Float64Array(cap);
  const parent = new Int32Array(cap);
  const end = new Int32Array(cap);
  const state = new Int8Array(cap);
  const flags = new Uint8Array(cap);
  let n = 0;
  let maxDepth = 0;

  const intern = (s: string): number => {
    let id = nameIndex.get(s);
    if (id === undefined) {
      id = names.length;
      names.push(s);
      nameIndex.set(s, id);
    }
    return id;
  };
  const emit = (node: ProfileNode, d: number, left: number, p: number, st: number, f: number): number => {
    const i = n++;
    nameId[i] = intern(node.name);
    depth[i] = d;
    x[i] = left;
    value[i] = Math.max(0, node.value || 0);
    self[i] = Math.max(0, node.self || 0);
    parent[i] = p;
    state[i] = st;
    let fl = f;
    if (node.other) fl |= F_OTHER;
    if (node.name.endsWith('_[k]')) fl |= F_KERNEL;
    flags[i] = fl;
    if (d > maxDepth) maxDepth = d;
    return i;
  };

  const stack: Open[] = [];
  const rootState = (root as TreeNode).state;
  const r = emit(root, 0, 0, -1, rootState ? STATES.indexOf(rootState) : -1, F_ROOT);
  stack.push({ node: root, i: r, k: 0, cursor: 0 });
  // Whether a state frame was met on the current path (then frames above it are groups).
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const kids = top.node.children;
    if (kids && top.k < kids.length) {
      const c = kids[top.k++]!;
      const d = depth[top.i]! + 1;
      let st = state[top.i]!;
      let f = 0;
      const explicit = (c as TreeNode).state;
      if (explicit !== undefined) {
        st = explicit ? STATES.indexOf(explicit) : -1;
      } else if (st < 0 && d <= opts.stateDepth) {
        const s = stateOfFrame(c);
        if (s) {
          if (opts.hidden.has(s)) {
            const v = Math.max(0, c.value || 0);
            for (const o of stack) value[o.i] = Math.max(0, value[o.i]! - v);
            continue;
          }
          st = STATES.indexOf(s);
          f = F_STATE;
        }
      }
      if (!f && st < 0 && d <= opts.groupDepth && !c.other) f = F_GROUP;
      const ci = emit(c, d, top.cursor, top.i, st, f);
      stack.push({ node: c, i: ci, k: 0, cursor: x[ci]! });
    } else {
      stack.pop();
      end[top.i] = n;
      const p = stack[stack.length - 1];
      if (p) {
        p.cursor += value[top.i]!;
        if (flags[top.i]! & (F_OTHER | F_TRIMMED)) flags[p.i]! |= F_TRIMMED;
      }
    }
  }

  // A group frame is only a group when no state frame sits above it; frames between the root and the state frame
  // are groups (group_by=unit,comm puts two there).
  const counts = new Int32Array(maxDepth + 1);
  for (let i = 0; i < n; i++) counts[depth[i]!]!++;
  const byDepth: Int32Array[] = [];
  for (let d = 0; d <= maxDepth; d++) byDepth.push(new Int32Array(counts[d]!));
  const fill = new Int32Array(maxDepth + 1);
  for (let i = 0; i < n; i++) {
    const d = depth[i]!;
    byDepth[d]![fill[d]!++] = i;
  }
  return {
    n,
    names,
    nameIndex,
    nameId: nameId.subarray(0, n),
    depth: depth.subarray(0, n),
    x: x.subarray(0, n),
    value: value.subarray(0, n),
    self: self.subarray(0, n),
    parent: parent.subarray(0, n),
    end: end.subarray(0, n),
    state: state.subarray(0, n),
    flags: flags.subarray(0, n),
    maxDepth,
    byDepth,
    total: value[0] ?? 0,
  };
}

export function nodeName(t: FlatTree, i: number): string {
  return t.names[t.nameId[i]!]!;
}

export function nodeState(t: FlatTree, i: number): StateName | null {
  const s = t.state[i]!;
  return s >= 0 ? STATES[s]! : null;
}

/** Frames from the root (excluded) down to the node. */
export function pathOf(t: FlatTree, i: number): string[] {
  const out: string[] = [];
  for (let j = i; j > 0; j = t.parent[j]!) out.push(nodeName(t, j));
  return out.reverse();
}

export function ancestors(t: FlatTree, i: number): number[] {
  const out: number[] = [];
  for (let j = i; j >= 0; j = t.parent[j]!) out.push(j);
  return out.reverse();
}

/** Children of a node, in order. */
export function childrenOf(t: FlatTree, i: number): number[] {
  const out: number[] = [];
  for (let j = i + 1; j < t.end[i]!; j = t.end[j]!) out.push(j);
  return out;
}

/** Follows a path of frames from the root; returns how far it got (the node, and how many frames matched). */
export function findPath(t: FlatTree, path: readonly string[]): { node: number; matched: number } {
  let cur = 0;
  let k = 0;
  for (; k < path.length; k++) {
    const want = path[k]!;
    let next = -1;
    for (let j = cur + 1; j < t.end[cur]!; j = t.end[j]!) {
      if (!(t.flags[j]! & F_OTHER) && nodeName(t, j) === want) {
        next = j;
        break;
      }
    }
    if (next < 0) break;
    cur = next;
  }
  return { node: cur, matched: k };
}

/** Whether the node has a folded [other] child (its own children were trimmed by the budget). */
export function hasFoldedChild(t: FlatTree, i: number): boolean {
  for (let j = i + 1; j < t.end[i]!; j = t.end[j]!) if (t.flags[j]! & F_OTHER) return true;
  return false;
}

/** Finds the node at a path in the source tree (skipping folded nodes). */
export function findSource(root: ProfileNode, path: readonly string[]): ProfileNode | null {
  let cur: ProfileNode = root;
  for (const name of path) {
    const next = cur.children?.find((c) => !c.other && c.name === name);
    if (!next) return null;
    cur = next;
  }
  return cur;
}

/** Replaces the subtree at `path` with the server's full-detail answer for it. */
export function graft(root: ProfileNode, path: readonly string[], sub: ProfileNode): boolean {
  const node = findSource(root, path);
  if (!node) return false;
  node.children = sub.children ?? [];
  node.self = sub.self ?? 0;
  node.value = sub.value;
  return true;
}

// ---- search ----

export interface SearchResult {
  /** Per name id: whether the name matches. */
  nameMatch: Uint8Array;
  /** Per node: 1 when the node itself matches. */
  nodeMatch: Uint8Array;
  /** The value under matched frames, each sample counted once (nested matches are inside an outer one). */
  matchedValue: number;
  share: number;
  /** Outermost matched nodes, largest first. */
  top: number[];
  count: number;
}

export function search(t: FlatTree, re: RegExp): SearchResult {
  const nameMatch = new Uint8Array(t.names.length);
  for (let k = 0; k < t.names.length; k++) {
    re.lastIndex = 0;
    nameMatch[k] = re.test(t.names[k]!) ? 1 : 0;
  }
  const nodeMatch = new Uint8Array(t.n);
  let matchedValue = 0;
  let count = 0;
  const top: number[] = [];
  let insideUntil = 0;
  for (let i = 1; i < t.n; i++) {
    if (t.flags[i]! & F_OTHER || !nameMatch[t.nameId[i]!]) continue;
    nodeMatch[i] = 1;
    count++;
    if (i >= insideUntil) {
      matchedValue += t.value[i]!;
      top.push(i);
      insideUntil = t.end[i]!;
    }
  }
  top.sort((a, b) => t.value[b]! - t.value[a]!);
  return { nameMatch, nodeMatch, matchedValue, share: t.total > 0 ? matchedValue / t.total : 0, top, count };
}

// ---- top functions ----

export interface FnRow {
  nameId: number;
  name: string;
  self: number;
  /** Counted once per stack, however often the function recurses in it. */
  total: number;
  kernel: boolean;
  synthetic: boolean;
}

export function topFunctions(t: FlatTree): FnRow[] {
  const self = new Float64Array(t.names.length);
  const total = new Float64Array(t.names.length);
  const onStack = new Int32Array(t.names.length);
  const seen = new Uint8Array(t.names.length);
  const synthetic = new Uint8Array(t.names.length);
  const stack: number[] = [];
  for (let i = 1; i < t.n; i++) {
    while (stack.length && t.end[stack[stack.length - 1]!]! <= i) onStack[t.nameId[stack.pop()!]!]!--;
    if (t.flags[i]! & F_OTHER) continue; // a fold, not a function; its subtree is itself
    const id = t.nameId[i]!;
    seen[id] = 1;
    if (t.flags[i]! & (F_STATE | F_GROUP)) synthetic[id] = 1;
    if (onStack[id] === 0) total[id]! += t.value[i]!;
    self[id]! += t.self[i]!;
    onStack[id]!++;
    stack.push(i);
  }
  const rows: FnRow[] = [];
  for (let id = 0; id < t.names.length; id++) {
    if (!seen[id]) continue;
    const name = t.names[id]!;
    rows.push({ nameId: id, name, self: self[id]!, total: total[id]!, kernel: name.endsWith('_[k]'), synthetic: !!synthetic[id] });
  }
  return rows;
}

// ---- sandwich ----

interface Builder {
  name: string;
  value: number;
  self: number;
  kids: Map<string, Builder> | null;
  /** The thread state of every stack merged here, null when none or mixed. */
  state: StateName | null;
}

function builder(name: string, state: StateName | null): Builder {
  return { name, value: 0, self: 0, kids: null, state };
}

function child(b: Builder, name: string, state: StateName | null): Builder {
  if (!b.kids) b.kids = new Map();
  let c = b.kids.get(name);
  if (!c) {
    c = builder(name, state);
    b.kids.set(name, c);
  } else if (c.state !== state) {
    c.state = null;
  }
  return c;
}

function toNode(b: Builder): TreeNode {
  const out: TreeNode = { name: b.name, value: b.value, self: b.self, state: b.state };
  if (b.kids) {
    out.children = [...b.kids.values()].sort((a, c) => c.value - a.value).map(toNode);
  }
  return out;
}

export interface Sandwich {
  callers: TreeNode;
  callees: TreeNode;
  total: number;
  occurrences: number;
}

/**
 * The function's callers (inverted: the function at the root, its callers above it) and callees (its subtrees
 * merged). Only the outermost occurrence on each stack counts, so recursion is not counted twice.
 */
export function sandwich(t: FlatTree, nameId: number): Sandwich | null {
  const name = t.names[nameId];
  if (name === undefined) return null;
  let rootState: StateName | null | undefined = undefined;
  const callers = builder(name, null);
  const callees = builder(name, null);
  const map: Array<Builder | undefined> = new Array(t.n);
  let occurrences = 0;
  for (let i = 1; i < t.n; i++) {
    if (t.nameId[i] !== nameId || t.flags[i]! & F_OTHER) continue;
    const v = t.value[i]!;
    occurrences++;
    const st = nodeState(t, i);
    rootState = rootState === undefined || rootState === st ? st : null;
    callers.value += v;
    callees.value += v;
    // Callers: walk up to the root, merging the path bottom-up.
    let cur = callers;
    let p = t.parent[i]!;
    if (p <= 0) callers.self += v;
    for (; p > 0; p = t.parent[p]!) {
      cur = child(cur, nodeName(t, p), nodeState(t, p));
      cur.value += v;
      if (t.parent[p]! <= 0) cur.self += v;
    }
    // Callees: merge the subtree.
    callees.self += t.self[i]!;
    map[i] = callees;
    const e = t.end[i]!;
    for (let j = i + 1; j < e; j++) {
      const b = child(map[t.parent[j]!]!, nodeName(t, j), nodeState(t, j));
      b.value += t.value[j]!;
      b.self += t.self[j]!;
      map[j] = b;
    }
    i = e - 1; // nested occurrences are inside this one
  }
  if (!occurrences) return null;
  callers.state = callees.state = rootState ?? null;
  return { callers: toNode(callers), callees: toNode(callees), total: callers.value, occurrences };
}
