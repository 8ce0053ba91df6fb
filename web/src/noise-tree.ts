// The noise page's data, format-neutral: `/api/v1/noise` answers the continuous tier's report (per CPU /proc/stat
// times and sampled estimates) or, in `tailprof serve`, a deep capture's noise.json (per CPU hook-measured sources,
// and victims with `record --pid`). Unknown fields are ignored; missing ones count as zero.

import type { DeepNoiseCpu, NoiseCpu, NoiseResponse, ProfileNode, VictimThread } from './api';

export type NoiseFormat = 'continuous' | 'deep';

export function noiseFormat(d: NoiseResponse): NoiseFormat {
  if (d.tier === 'deep') return 'deep';
  if (d.tier === 'continuous') return 'continuous';
  const c = d.cpus?.[0];
  return c && !('procfs_time' in c) && ('noise_ns' in c || 'softirqs' in c || 'irqs' in c) ? 'deep' : 'continuous';
}

export function isDeepCpu(c: NoiseCpu | DeepNoiseCpu): c is DeepNoiseCpu {
  return !('procfs_time' in c);
}

/** Per CPU softirq, hard IRQ (null: not accounted) and steal time, in either format. */
export function cpuTimes(c: NoiseCpu | DeepNoiseCpu): { softirq_ns: number; hardirq_ns: number | null; steal_ns: number } {
  if (isDeepCpu(c)) return { softirq_ns: c.softirq?.ns ?? 0, hardirq_ns: c.irq?.ns ?? 0, steal_ns: c.steal_ns ?? 0 };
  const p = c.procfs_time ?? { softirq_ns: 0, hardirq_ns: null, steal_ns: 0 };
  return { softirq_ns: p.softirq_ns ?? 0, hardirq_ns: p.hardirq_ns ?? null, steal_ns: p.steal_ns ?? 0 };
}

/** The `[kind]` frame of a source kind, as the profiler's noise.svg names them (vectors are IRQs). */
export function kindFrame(kind: string): string {
  if (kind === 'irq' || kind === 'vector') return '[irq]';
  if (kind === 'softirq' || kind === 'thread' || kind === 'steal' || kind === 'nmi') return `[${kind}]`;
  return `[${kind || 'other'}]`;
}

function add(parent: ProfileNode, name: string, ns: number): ProfileNode {
  const kids = (parent.children ??= []);
  let c = kids.find((k) => k.name === name);
  if (!c) {
    c = { name, value: 0, self: 0 };
    kids.push(c);
  }
  c.value += ns;
  return c;
}

function leaf(parent: ProfileNode, path: string[], ns: number): void {
  if (!(ns > 0)) return;
  let cur = parent;
  for (const p of path) cur = add(cur, p, ns);
  cur.self = (cur.self ?? 0) + ns;
}

function sortTree(n: ProfileNode): void {
  if (!n.children) return;
  n.children.sort((a, b) => b.value - a.value || (a.name < b.name ? -1 : 1));
  for (const c of n.children) sortTree(c);
}

/**
 * Noise by source as a tree: all CPUs → `cpuN` → `[irq]`, `[softirq]`, `[thread]`, `[nmi]`, `[steal]` → source, in
 * ns (the lines of the profiler's noise.svg). Continuous: the sampled estimates (as its noise.svg: /proc/stat's times
 * have no sources); deep: every source the hooks measured, and steal.
 */
export function noiseTree(d: NoiseResponse): ProfileNode {
  const root: ProfileNode = { name: 'all CPUs', value: 0, self: 0, children: [] };
  for (const c of d.cpus ?? []) {
    const cpu = `cpu${c.cpu}`;
    const paths: Array<[string[], number]> = [];
    if (isDeepCpu(c)) {
      for (const [key, s] of Object.entries(c.irqs ?? {})) {
        // IRQ lines are numbers ("36 virtio1-req.0"); vectors are /proc/interrupts rows ("LOC").
        const name = /^\d+$/.test(key) && s.name ? `${key} ${s.name}` : key;
        paths.push([['[irq]', name], s.ns]);
      }
      for (const [key, s] of Object.entries(c.softirqs ?? {})) paths.push([['[softirq]', key], s.ns]);
      for (const [key, s] of Object.entries(c.threads ?? {})) paths.push([['[thread]', key], s.ns]);
      paths.push([['[nmi]'], c.nmi?.ns ?? 0]);
      paths.push([['[steal]'], c.steal_ns ?? 0]);
    } else {
      for (const s of c.sampled?.sources ?? []) {
        paths.push([s.kind === 'nmi' ? ['[nmi]'] : [kindFrame(s.kind), s.name || s.source], s.ns]);
      }
    }
    for (const [p, ns] of paths) {
      if (!(ns > 0)) continue;
      root.value += ns;
      leaf(root, [cpu, ...p], ns);
    }
  }
  sortTree(root);
  return root;
}

export interface VictimRow {
  tid: number;
  pid: number;
  comm: string;
  /** On CPU, but an interrupt, softirq or NMI took the time. */
  interruptedNs: number;
  interruptions: number;
  /** Runnable while another thread ran (or the run log did not reach back). */
  runnableNs: number;
  lostNs: number;
  bySource: Array<{ source: string; ns: number; count: number; maxNs: number }>;
  behind: Array<{ tid: number; comm: string; ns: number; count: number }>;
  behindUnknownNs: number;
}

/** The victim view: the threads of the watched processes, most time lost first; null with a sentence why not. */
export function victims(d: NoiseResponse): { rows: VictimRow[]; pids: number[] } | { note: string } {
  if (noiseFormat(d) !== 'deep') return { note: 'victims are measured by deep captures only' };
  const v = d.victims;
  if (!v) return { note: 'this deep capture watched no process (record --pid PID names the victims), so no victims were measured' };
  const rows = (v.threads ?? []).map((t: VictimThread): VictimRow => {
    const interruptedNs = t.interrupted?.ns ?? 0;
    const runnableNs = t.runnable_behind_ns ?? 0;
    return {
      tid: t.tid,
      pid: t.tgid,
      comm: t.comm ?? `tid ${t.tid}`,
      interruptedNs,
      interruptions: t.interrupted?.count ?? 0,
      runnableNs,
      lostNs: interruptedNs + runnableNs,
      bySource: (t.interrupted?.by_source ?? []).map((b) => ({ source: b.source, ns: b.ns, count: b.count, maxNs: b.max_ns ?? 0 })),
      behind: (t.behind ?? []).map((b) => ({ tid: b.tid, comm: b.comm, ns: b.ns, count: b.count })),
      behindUnknownNs: t.behind_unknown_ns ?? 0,
    };
  });
  rows.sort((a, b) => b.lostNs - a.lostNs || a.tid - b.tid);
  if (!rows.length) return { note: `the watched process${(v.pids ?? []).length === 1 ? '' : 'es'} (pid ${(v.pids ?? []).join(', ')}) lost no time to noise in this capture` };
  return { rows, pids: v.pids ?? [] };
}
