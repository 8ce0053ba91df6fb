// The "hide idle waits" preset of the wall-clock and off-CPU views: stacks of sleeping threads that wait where
// thread pools wait for work (futex, epoll, poll/select, tokio's and std's park, Go's scheduler). They are expected
// and usually dwarf everything else in a wall-clock profile; hiding them leaves the waits that may matter.
//
// The one list is IDLE_WAITS below. A frame matches by its name with the decorations the profiler adds taken off
// (`_[k]`, `_[i]`, `_[j]`, ` (file:line)`, compiler clone suffixes like `.constprop.0`, glibc symbol versions, a
// Rust hash). Only stacks under the `[sleeping]` state frame are hidden: a thread runnable or running in epoll_wait
// is not idle. `nanosleep` is not in the list: a thread that sleeps on purpose is what a wall-clock profile shows.

import type { ProfileNode } from './api';
import { stateOfFrame } from './tree';

export interface IdleWait {
  /** What kind of wait, for people. */
  kind: string;
  /** Matched against the whole normalised frame name. */
  re: RegExp;
}

export const IDLE_WAITS: readonly IdleWait[] = [
  // Kernel futex waits, glibc's condition variables, locks and semaphores that sleep on one.
  { kind: 'futex', re: /^(__)?futex_wait(_queue(_me)?|_multiple|v)?$/ },
  { kind: 'futex', re: /^do_futex(_wait)?$/ },
  { kind: 'futex', re: /^_*futex_abstimed_wait(_common(64)?|_cancelable64)?$/ },
  { kind: 'futex', re: /^_*pthread_cond_(timed|clock)?wait(_common)?$/ },
  { kind: 'futex', re: /^__lll_lock_wait(_private)?$/ },
  // epoll.
  { kind: 'epoll', re: /^ep_poll$/ },
  { kind: 'epoll', re: /^(do_|__do_sys_|__x64_sys_|__arm64_sys_|__ia32_sys_|__GI_|__libc_)?epoll_p?wait2?$/ },
  // poll and select.
  { kind: 'poll', re: /^(poll_schedule_timeout|do_sys_poll|do_poll|do_select|core_sys_select)$/ },
  // Rust: tokio's and std's park, parking_lot's thread parker, std's futex wait.
  { kind: 'park', re: /^tokio::runtime::(scheduler::[\w:]+::)?park(_timeout)?(::|$)/ },
  { kind: 'park', re: /^parking_lot_core::thread_parker(::|$)/ },
  { kind: 'park', re: /^std::thread::(\w+::)*park(_timeout)?$/ },
  { kind: 'park', re: /^std::sys::[\w:]*::futex::futex_wait$/ },
  // Go: a parked goroutine, an idle M, the network poller.
  { kind: 'go park', re: /^runtime\.(gopark|goparkunlock|futexsleep|notesleep|notetsleepg?|netpoll|netpollblock)$/ },
];

const CLONE = /(\.(constprop|isra|part|cold|llvm|lto_priv)(\.\d+)?)+$/;

/** A frame's name without what the profiler and the compiler add to it. */
export function frameBase(name: string): string {
  let s = name.replace(/_\[[kij]\]$/, '');
  s = s.replace(/ \([^()]*\)$/, ''); // ` (file:line)` with --lines
  s = s.replace(/@@?[A-Z_]+[\d.]*$/, ''); // glibc symbol versions: pthread_cond_wait@@GLIBC_2.3.2
  s = s.replace(CLONE, '');
  s = s.replace(/::h[0-9a-f]{16}$/, ''); // Rust's legacy mangling hash
  // `<tokio::runtime::park::CachedParkThread as …>::park` and `<T>::f`: the type's path is the frame's path.
  const m = /^<([^<>\s]+)(?: as [^<>]+)?>(::.*)$/.exec(s);
  if (m) s = m[1]! + m[2]!;
  return s;
}

/** The kind of idle wait a frame is, or null. */
export function idleKind(name: string): string | null {
  const base = frameBase(name);
  for (const w of IDLE_WAITS) if (w.re.test(base)) return w.kind;
  return null;
}

export interface IdleResult {
  root: ProfileNode;
  /** The value taken out (in the tree's unit). */
  hidden: number;
}

/**
 * A copy of the tree without the stacks of sleeping threads that pass through an idle-wait frame: each is cut at
 * its outermost matching frame under `[sleeping]`, and its value leaves every ancestor, so totals stay consistent.
 * Nodes that lose nothing are shared with the input. `stateDepth`: how deep the state frames are (group frames
 * above them); 0 for a view without states, which hides nothing.
 */
export function withoutIdle(root: ProfileNode, stateDepth: number): IdleResult {
  if (stateDepth <= 0) return { root, hidden: 0 };
  const memo = new Map<string, boolean>();
  const isIdle = (n: ProfileNode): boolean => {
    if (n.other) return false;
    let v = memo.get(n.name);
    if (v === undefined) {
      v = idleKind(n.name) !== null;
      memo.set(n.name, v);
    }
    return v;
  };
  // A copy of `n` whose children are `f` of each (null drops one), its value less what they lost; `n` itself
  // when nothing changed.
  const rebuild = (n: ProfileNode, f: (c: ProfileNode) => ProfileNode | null): ProfileNode => {
    const kids = n.children;
    if (!kids || !kids.length) return n;
    let removed = 0;
    let changed = false;
    const out: ProfileNode[] = [];
    for (const c of kids) {
      const w = f(c);
      if (w === c) {
        out.push(c);
        continue;
      }
      changed = true;
      removed += (c.value || 0) - (w?.value || 0);
      if (w && w.value > 0) out.push(w);
    }
    return changed ? { ...n, value: Math.max(0, (n.value || 0) - removed), children: out } : n;
  };
  // Below `[sleeping]`: cut at matching frames.
  const cut = (n: ProfileNode): ProfileNode => rebuild(n, (c) => (isIdle(c) ? null : cut(c)));
  // Above it: find the state frames.
  const walk = (n: ProfileNode, d: number): ProfileNode =>
    d >= stateDepth
      ? n
      : rebuild(n, (c) => {
          const st = stateOfFrame(c);
          return st === 'sleeping' ? cut(c) : st ? c : walk(c, d + 1);
        });
  const r = walk(root, 0);
  return { root: r, hidden: Math.max(0, (root.value || 0) - (r.value || 0)) };
}
