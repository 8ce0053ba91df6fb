//! Off-CPU time by (thread, state, syscall, blocking stacks, waker), read
//! from the kernel's aggregation at the end of a capture, plus each live
//! thread's current off-CPU interval up to the end.

use aya::maps::{HashMap, MapData, StackTraceMap};
use rustc_hash::FxHashMap;

use profiler_common::{OffCpuKey, OffCpuValue, ThreadRecord, NO_SYSCALL, NO_WAKER, STACK_LOST, STATE_RUNNING};

use crate::{
    blocked_stacks::BlockedStacks,
    sched_times::comm_string,
    stacks::{StackAggregator, UserFrame},
};

/// One aggregate with its stacks read out of the stack map.
#[derive(Debug, Clone)]
pub struct RawOffCpu {
    pub tgid: u32,
    pub tid: u32,
    /// Process generation, filled in by the caller.
    pub process: u32,
    pub state: u32,
    pub syscall: i32,
    pub waker_tid: u32,
    pub waker_comm: String,
    /// The thread's own name when last seen.
    pub comm: String,
    /// Kernel stack, innermost first.
    pub kstack: Box<[u64]>,
    pub ustack: Box<[UserFrame]>,
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

/// Where off-CPU user stacks came from (`--unwind dwarf|auto`), ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OffCpuUnwind {
    /// Time whose blocking key snapshots saw with one complete user stack.
    pub unwound_ns: u64,
    /// Time whose key snapshots saw with several complete stacks, split
    /// between them in proportion to the snapshots that saw each.
    pub estimated_ns: u64,
    /// Time no snapshot unwound (intervals shorter than the snapshot
    /// period, or processes walked with frame pointers): the
    /// frame-pointer walk from the switch-out is reported.
    pub frame_pointer_ns: u64,
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
            waker_comm: if k.waker_tid == NO_WAKER { String::new() } else { comm_string(&v.waker_comm) },
            comm: comm_string(&v.comm),
            kstack,
            ustack: stacks.user(k.tgid, k.ustack_id, agg),
            stack_lost: k.kstack_id == STACK_LOST,
            ns: v.ns,
            count: v.count,
        };
        let shares = blocked.map(|b| b.shares(&(k.tid, k.kstack_id, k.ustack_id))).unwrap_or_default();
        match shares.as_slice() {
            [] => {
                if blocked.is_some_and(|b| b.selected(k.tgid)) {
                    unwind.frame_pointer_ns += raw.ns;
                }
                out.push(raw);
            }
            [(frames, _)] => {
                unwind.unwound_ns += raw.ns;
                out.push(RawOffCpu { ustack: (*frames).into(), ..raw });
            }
            _ => {
                unwind.estimated_ns += raw.ns;
                out.extend(split(&raw, &shares));
            }
        }
    }
    (out, unwind)
}

/// Split one aggregate between complete user stacks by their shares; the
/// last takes what rounding leaves, so the totals are kept exactly.
fn split(raw: &RawOffCpu, shares: &[(&[UserFrame], f64)]) -> Vec<RawOffCpu> {
    let (mut ns_left, mut count_left) = (raw.ns, raw.count);
    let last = shares.len().saturating_sub(1);
    shares
        .iter()
        .enumerate()
        .map(|(i, (frames, share))| {
            let (ns, count) = if i == last {
                (ns_left, count_left)
            } else {
                let ns = ((raw.ns as f64 * share).round() as u64).min(ns_left);
                let count = ((raw.count as f64 * share).round() as u64).min(count_left);
                (ns, count)
            };
            ns_left -= ns;
            count_left -= count;
            RawOffCpu { ustack: (*frames).into(), ns, count, ..raw.clone() }
        })
        .collect()
}
