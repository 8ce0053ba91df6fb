//! Off-CPU time by (thread, state, syscall, blocking stacks, waker), read
//! from the kernel's aggregation at the end of a capture, plus each live
//! thread's current off-CPU interval up to the end.

use aya::maps::{HashMap, MapData, StackTraceMap};
use rustc_hash::FxHashMap;

use profiler_common::{OffCpuKey, OffCpuValue, ThreadRecord, NO_SYSCALL, NO_WAKER, STACK_LOST, STATE_RUNNING};

use crate::{
    blocked_stacks::BlockedStacks,
    model::text::comm_string,
    stacks::{StackAggregator, UserFrame},
};

pub use crate::model::stats::OffCpuUnwind;

/// One aggregate with its stacks read out of the stack map.
#[derive(Debug, Clone, Default)]
pub struct RawOffCpu {
    pub tgid: u32,
    pub tid: u32,
    /// Process generation, filled in by the caller.
    pub process: u32,
    pub state: u32,
    pub syscall: i32,
    pub waker_tid: u32,
    pub waker_comm: Box<str>,
    /// The thread's own name when last seen (shared by its lines).
    pub comm: std::sync::Arc<str>,
    /// Kernel stack, innermost first; shared with the threads blocked in
    /// the same place (a pool's idle threads).
    pub kstack: std::sync::Arc<[u64]>,
    pub ustack: std::sync::Arc<[UserFrame]>,
    /// The blocking stack could not be stored (stack map full).
    pub stack_lost: bool,
    pub ns: u64,
    pub count: u64,
}

/// Reads stacks out of the stack map once per id; user stacks are
/// normalized as soon as they are first seen, while their process lives.
pub struct StackResolver {
    map: StackTraceMap<MapData>,
    kernel: FxHashMap<i32, Box<[u64]>>,
    user: FxHashMap<(u32, i32), Box<[UserFrame]>>,
}

impl StackResolver {
    pub fn new(map: StackTraceMap<MapData>) -> Self {
        Self { map, kernel: FxHashMap::default(), user: FxHashMap::default() }
    }

    fn raw(&self, id: i32) -> Box<[u64]> {
        if id < 0 {
            return Box::new([]);
        }
        match self.map.get(&(id as u32), 0) {
            Ok(trace) => trace.frames().iter().map(|f| f.ip).collect(),
            Err(err) => {
                tracing::debug!(id, %err, "stack id not in the stack map");
                Box::new([])
            }
        }
    }

    pub fn kernel(&mut self, id: i32) -> Box<[u64]> {
        if let Some(s) = self.kernel.get(&id) {
            return s.clone();
        }
        let s = self.raw(id);
        self.kernel.insert(id, s.clone());
        s
    }

    pub fn user(&mut self, tgid: u32, id: i32, agg: &mut StackAggregator) -> Box<[UserFrame]> {
        if let Some(s) = self.user.get(&(tgid, id)) {
            return s.clone();
        }
        let raw = self.raw(id);
        let s = agg.normalize(tgid, &raw);
        self.user.insert((tgid, id), s.clone());
        s
    }
}

/// Everything off-CPU: the kernel's aggregates, then the interval each
/// live off-CPU thread is in at `end_ns`. `snapshot_kstacks` gives the
/// kernel stack of threads that never left a CPU since they were first
/// seen (the snapshots walk those once).
pub fn collect(
    aggregates: &HashMap<&MapData, OffCpuKey, OffCpuValue>,
    live: &[(u32, ThreadRecord)],
    window: std::ops::Range<u64>,
    snapshot_kstacks: &FxHashMap<u32, Box<[u64]>>,
    stacks: &mut StackResolver,
    agg: &mut StackAggregator,
    blocked: Option<&BlockedStacks>,
) -> (Vec<RawOffCpu>, OffCpuUnwind) {
    let mut merged: FxHashMap<OffCpuKey, OffCpuValue> = FxHashMap::default();
    for (key, value) in aggregates.iter().flatten() {
        merged.insert(key, value);
    }
    for (tid, r) in live {
        let (window_start_ns, end_ns) = (window.start, window.end);
        let since = r.times.since_ns.max(window_start_ns);
        if r.times.state == STATE_RUNNING || end_ns <= since {
            continue;
        }
        let key = r.off_cpu_key(*tid);
        let v =
            merged.entry(key).or_insert(OffCpuValue { waker_comm: r.waker_comm, comm: r.comm, ..Default::default() });
        v.ns += end_ns - since;
        v.count += 1;
    }
    let mut unwind = OffCpuUnwind::default();
    let mut out = Vec::with_capacity(merged.len());
    for (k, v) in merged {
        let kstack = match (k.kstack_id, snapshot_kstacks.get(&k.tid)) {
            (id, _) if id >= 0 => stacks.kernel(id),
            (profiler_common::STACK_NONE, Some(s)) => s.clone(),
            _ => Box::new([]),
        };
        let raw = RawOffCpu {
            tgid: k.tgid,
            tid: k.tid,
            process: u32::MAX,
            state: k.state,
            syscall: if k.syscall < 0 { NO_SYSCALL } else { k.syscall },
            waker_tid: k.waker_tid,
            waker_comm: if k.waker_tid == NO_WAKER { Box::default() } else { comm_string(&v.waker_comm).into() },
            comm: comm_string(&v.comm).into(),
            kstack: kstack.into(),
            ustack: stacks.user(k.tgid, k.ustack_id, agg).into(),
            stack_lost: k.kstack_id == STACK_LOST,
            ns: v.ns,
            count: v.count,
        };
        let seen = blocked.map(|b| b.sightings(&(k.tid, k.kstack_id, k.ustack_id))).unwrap_or_default();
        let selected = blocked.is_some_and(|b| b.selected(k.tgid));
        let sightings: u64 = seen.iter().map(|(_, n)| n).sum();
        // Snapshots vouch for one period of blocking per sighting.
        let vouched = blocked.map_or(0, |b| b.period_ns().saturating_mul(sightings)).min(raw.ns);
        if seen.is_empty() || vouched == 0 {
            if selected {
                unwind.frame_pointer_ns += raw.ns;
            }
            out.push(raw);
            continue;
        }
        if seen.len() == 1 {
            unwind.unwound_ns += vouched;
        } else {
            unwind.estimated_ns += vouched;
        }
        let mut parts: Vec<(std::sync::Arc<[UserFrame]>, u64)> = seen
            .iter()
            .map(|(frames, n)| ((*frames).into(), (vouched as u128 * u128::from(*n) / u128::from(sightings)) as u64))
            .collect();
        let rest = raw.ns - vouched;
        if rest > 0 {
            // Waits no snapshot saw keep the frame-pointer stack.
            unwind.frame_pointer_ns += rest;
            parts.push((raw.ustack.clone(), rest));
        }
        out.extend(split(&raw, parts));
    }
    (out, unwind)
}

/// Split one aggregate between user stacks by weights (ns); the last
/// takes what rounding leaves, so ns and count totals are kept exactly.
fn split(raw: &RawOffCpu, parts: Vec<(std::sync::Arc<[UserFrame]>, u64)>) -> Vec<RawOffCpu> {
    let total: u64 = parts.iter().map(|(_, w)| w).sum::<u64>().max(1);
    let (mut ns_left, mut count_left) = (raw.ns, raw.count);
    let last = parts.len().saturating_sub(1);
    parts
        .into_iter()
        .enumerate()
        .map(|(i, (ustack, weight))| {
            let (ns, count) = if i == last {
                (ns_left, count_left)
            } else {
                let share = |x: u64| (u128::from(x) * u128::from(weight) / u128::from(total)) as u64;
                (share(raw.ns).min(ns_left), share(raw.count).min(count_left))
            };
            ns_left -= ns;
            count_left -= count;
            RawOffCpu { ustack, ns, count, ..raw.clone() }
        })
        .filter(|r| r.ns > 0 || r.count > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_totals() {
        let raw = RawOffCpu {
            tgid: 1,
            tid: 1,
            process: 0,
            state: 1,
            syscall: 0,
            waker_tid: NO_WAKER,
            waker_comm: Box::default(),
            comm: "".into(),
            kstack: Default::default(),
            ustack: Default::default(),
            stack_lost: false,
            ns: 1_000_000_007,
            count: 13,
        };
        let a: Box<[UserFrame]> = Box::new([UserFrame::Unknown { addr: 1 }]);
        let b: Box<[UserFrame]> = Box::new([UserFrame::Unknown { addr: 2 }]);
        let parts =
            split(&raw, vec![(a.into(), 300_000_000), (b.into(), 200_000_000), (Default::default(), 500_000_007)]);
        assert_eq!(parts.iter().map(|p| p.ns).sum::<u64>(), raw.ns);
        assert_eq!(parts.iter().map(|p| p.count).sum::<u64>(), raw.count);
        assert_eq!(parts[0].ns, 300_000_000);
        assert_eq!(parts.len(), 3);
    }
}
