//! The continuous tier's thread times, from the kernel's own cumulative
//! counters read at the window's bounds (and at each thread's exit):
//! on-CPU time is the growth of `se.sum_exec_runtime`, runnable time that
//! of `sched_info.run_delay` — the same counters /proc/PID/task/TID/schedstat
//! prints, so the two agree to the tick. The rest of each thread's time in
//! the window is off CPU and not waiting for one: it is split between
//! sleeping, disk and other by the states the snapshots sampled, with a 95%
//! confidence interval. Off-CPU stacks are the snapshots' sightings, each
//! weighing its share of its state's time, so that every thread's stacks
//! add up to its times exactly.

use std::{collections::BTreeMap, ops::Range};

use rustc_hash::FxHashMap;

use profiler_common::{
    TaskCounters, ThreadTimes, NO_WAKER, OFF_CPU_STATES, STATE_DISK, STATE_OTHER, STATE_RUNNABLE, STATE_RUNNING,
    STATE_SLEEPING,
};

use crate::{
    off_cpu::RawOffCpu,
    state_sampler::{CounterRead, SampledWindow, SightKey},
};

pub use crate::model::stats::CounterExtras;

/// Exact and estimated times of every thread seen in the window.
#[derive(Debug, Default)]
pub struct Accounted {
    pub times: BTreeMap<u32, ThreadTimes>,
    pub extras: BTreeMap<u32, CounterExtras>,
    /// Threads whose end could not be read (gone without an exit record).
    pub unaccounted: Vec<u32>,
}

/// Whether `kernel.task_delayacct` is on now.
pub fn delay_accounting_on() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/task_delayacct").is_ok_and(|s| s.trim() == "1")
}

fn delta(end: &TaskCounters, start: &TaskCounters) -> TaskCounters {
    TaskCounters {
        sum_exec_ns: end.sum_exec_ns.saturating_sub(start.sum_exec_ns),
        run_delay_ns: end.run_delay_ns.saturating_sub(start.run_delay_ns),
        pcount: end.pcount.saturating_sub(start.pcount),
        nvcsw: end.nvcsw.saturating_sub(start.nvcsw),
        nivcsw: end.nivcsw.saturating_sub(start.nivcsw),
        blkio_delay_ns: end.blkio_delay_ns.saturating_sub(start.blkio_delay_ns),
    }
}

/// Split `ns` in proportion to `weights`; the last non-zero weight takes
/// what rounding leaves, so the parts add up to `ns`.
fn split(ns: u64, weights: &[u64]) -> Vec<u64> {
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let mut parts: Vec<u64> =
        weights.iter().map(|&w| (u128::from(ns) * u128::from(w) / u128::from(total)) as u64).collect();
    let given: u64 = parts.iter().sum();
    if let Some(i) = weights.iter().rposition(|&w| w > 0) {
        parts[i] += ns - given;
    }
    parts
}

/// Per-thread times over `window` from the bound reads, exits and sightings.
pub fn account(
    opening: &CounterRead,
    closing: &CounterRead,
    sampler: &SampledWindow,
    window: &Range<u64>,
    delayacct: bool,
) -> Accounted {
    let mut out = Accounted::default();
    // Gathered in tid order and built in bulk: a map filled one insert
    // at a time in key order leaves its nodes half empty.
    let (mut times, mut extras) = (Vec::new(), Vec::new());
    let mut tids: Vec<u32> = closing.threads().iter().map(|t| t.tid).chain(sampler.exits.tids()).collect();
    tids.extend(opening.threads().iter().map(|t| t.tid).filter(|&tid| !closing.contains(tid)));
    tids.sort_unstable();
    tids.dedup();
    for tid in tids {
        // The thread's end: alive at the close, or its exit in the window.
        let end = match (closing.get(tid), sampler.exits.get(tid)) {
            (Some(t), _) => Some((t.tgid, t.start_ns, t.counters, window.end)),
            (None, Some(e)) if e.ts_ns >= window.start && e.ts_ns <= window.end => {
                Some((e.tgid, e.start_ns, e.counters, e.ts_ns))
            }
            _ => None,
        };
        let Some((tgid, start_ns, end_counters, end_ns)) = end else {
            if opening.contains(tid) {
                out.unaccounted.push(tid);
            }
            continue;
        };
        // A thread born in the window started from zero.
        let base = match opening.get(tid) {
            Some(t) if t.start_ns == start_ns => t.counters,
            _ => TaskCounters::default(),
        };
        let life = end_ns.saturating_sub(window.start.max(start_ns));
        let d = delta(&end_counters, &base);
        let (mut on, mut runnable) = (d.sum_exec_ns, d.run_delay_ns);
        // A running thread's counters are brought up to date at ticks and
        // switches, so a bound may read them up to a tick late: a window of
        // a thread that never sleeps can then hold a little more than its
        // span. It is capped at the span, the time shared in proportion.
        if on + runnable > life {
            let total = on + runnable;
            on = (u128::from(on) * u128::from(life) / u128::from(total)) as u64;
            runnable = life - on;
        }
        let rest = life.saturating_sub(on + runnable);
        let samples = sampler.threads.get(&tid).map(|t| t.states).unwrap_or_default();
        let seen = [samples[STATE_SLEEPING as usize], samples[STATE_DISK as usize], samples[STATE_OTHER as usize]];
        // Never seen off CPU yet not running or waiting: short sleeps.
        let weights = if seen.iter().sum::<u64>() == 0 { [1, 0, 0] } else { seen };
        let [sleeping, disk, other] = split(rest, &weights)[..] else { unreachable!("three weights") };
        let n: u64 = seen.iter().sum();
        let ci = |k: u64| -> u64 {
            if n == 0 {
                return rest;
            }
            let p = k as f64 / n as f64;
            (1.96 * (p * (1.0 - p) / n as f64).sqrt() * rest as f64) as u64
        };
        let mut off = [0u64; OFF_CPU_STATES];
        off[(STATE_RUNNABLE - 1) as usize] = runnable;
        off[(STATE_SLEEPING - 1) as usize] = sleeping;
        off[(STATE_DISK - 1) as usize] = disk;
        off[(STATE_OTHER - 1) as usize] = other;
        times.push((tid, ThreadTimes { tgid, state: STATE_RUNNING, since_ns: end_ns, on_cpu_ns: on, off_cpu_ns: off }));
        extras.push((
            tid,
            CounterExtras {
                voluntary_switches: d.nvcsw,
                involuntary_switches: d.nivcsw,
                blkio_delay_ns: delayacct.then_some(d.blkio_delay_ns),
                sampled_ci95_ns: [ci(seen[0]), ci(seen[1]), ci(seen[2])],
            },
        ));
    }
    out.times = times.into_iter().collect();
    out.extras = extras.into_iter().collect();
    out
}

/// Off-CPU stacks from the snapshots' sightings: each thread's time in a
/// state is shared among its sightings in that state; time in a state no
/// snapshot saw the thread in gets a line without stacks.
pub fn off_cpu_stacks(
    accounted: &Accounted,
    sightings: &FxHashMap<u32, FxHashMap<SightKey, u64>>,
    mut comm_of: impl FnMut(u32) -> crate::model::text::Name,
) -> Vec<RawOffCpu> {
    let none = FxHashMap::default();
    // Sized exactly: under thread churn a window has tens of thousands of
    // lines, and a doubling vector would hold up to twice their room.
    let lines: usize = accounted
        .times
        .iter()
        .map(|(tid, t)| {
            let seen = sightings.get(tid).unwrap_or(&none);
            [STATE_RUNNABLE, STATE_SLEEPING, STATE_DISK, STATE_OTHER]
                .into_iter()
                .filter(|&state| t.off_cpu_ns[(state - 1) as usize] > 0)
                .map(|state| seen.keys().filter(|k| k.state == state).count().max(1))
                .sum::<usize>()
        })
        .sum();
    let mut out = Vec::with_capacity(lines);
    for (&tid, t) in &accounted.times {
        let seen = sightings.get(&tid).unwrap_or(&none);
        let comm = comm_of(tid);
        for state in [STATE_RUNNABLE, STATE_SLEEPING, STATE_DISK, STATE_OTHER] {
            let ns = t.off_cpu_ns[(state - 1) as usize];
            let mut keys: Vec<(&SightKey, u64)> =
                seen.iter().filter(|(k, _)| k.state == state).map(|(k, n)| (k, *n)).collect();
            if ns == 0 {
                continue;
            }
            let raw = |syscall: i32, kstack: std::sync::Arc<[u64]>, ustack, ns, count| RawOffCpu {
                tgid: t.tgid,
                tid,
                process: u32::MAX,
                state,
                syscall,
                waker_tid: NO_WAKER,
                waker_comm: Box::default(),
                comm: comm.clone(),
                kstack,
                ustack,
                stack_lost: false,
                ns,
                count,
            };
            if keys.is_empty() {
                out.push(raw(profiler_common::NO_SYSCALL, Default::default(), Default::default(), ns, 0));
                continue;
            }
            // A stable order, so that rounding goes the same way every run.
            keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.kstack.cmp(&b.0.kstack)));
            let weights: Vec<u64> = keys.iter().map(|(_, n)| *n).collect();
            for ((k, n), part) in keys.iter().zip(split(ns, &weights)) {
                let ustack = k.ustack.clone().unwrap_or_default();
                out.push(raw(k.syscall, k.kstack.clone(), ustack, part, *n));
            }
        }
    }
    out
}

/// Where the off-CPU stacks' user halves came from: a complete unwind
/// (`unwound_ns`), or none (`frame_pointer_ns` keeps the name of the deep
/// tier's field: the time shown without a user stack).
pub fn unwind_sources(stacks: &[RawOffCpu]) -> crate::off_cpu::OffCpuUnwind {
    let mut u = crate::off_cpu::OffCpuUnwind::default();
    for s in stacks {
        match s.ustack.is_empty() {
            false => u.unwound_ns += s.ns,
            true => u.frame_pointer_ns += s.ns,
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_sampler::BoundThread;

    #[test]
    fn split_keeps_the_total() {
        assert_eq!(split(10, &[1, 1, 1]), vec![3, 3, 4]);
        assert_eq!(split(10, &[0, 0, 0]), vec![0, 0, 0]);
        assert_eq!(split(7, &[2, 0]), vec![7, 0]);
    }

    #[test]
    fn times_come_from_counter_growth() {
        let c = |exec, delay| TaskCounters { sum_exec_ns: exec, run_delay_ns: delay, ..Default::default() };
        let t = |tid, start_ns, counters| BoundThread { tid, tgid: 1, start_ns, counters };
        let opening = CounterRead::new(1_000, vec![t(1, 0, c(500, 100))]);
        // Thread 2 was born in the window at 6_000, alive at the end.
        let closing = CounterRead::new(11_000, vec![t(2, 6_000, c(1_000, 0)), t(1, 0, c(3_500, 1_100))]);
        let a = account(&opening, &closing, &SampledWindow::default(), &(1_000..11_000), false);
        let t = a.times[&1];
        assert_eq!((t.on_cpu_ns, t.off_cpu_ns), (3_000, [1_000, 6_000, 0, 0]));
        let t = a.times[&2];
        assert_eq!((t.on_cpu_ns, t.off_cpu_ns), (1_000, [0, 4_000, 0, 0]));
        let stacks = off_cpu_stacks(&a, &FxHashMap::default(), |_| "".into());
        let total: u64 = stacks.iter().filter(|s| s.tid == 1).map(|s| s.ns).sum();
        assert_eq!(total, 7_000, "unseen states keep their time on a line without stacks");
    }
}
