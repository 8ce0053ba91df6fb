//! Complete user stacks of blocked threads, at no cost to the scheduler
//! hooks. A thread off a CPU leaves its user stack and its user registers
//! (saved on kernel entry) untouched until it runs again. The snapshot
//! iterator reports those registers; here the stack is copied from user
//! space (`process_vm_readv`) and unwound like a sample's copy.
//!
//! The copy is kept only if the thread's total CPU time, read from
//! /proc/PID/task/TID/schedstat after the copy, still equals the one the
//! snapshot saw: the thread did not run in between, so its stack is the
//! one it blocked with.
//!
//! Each observation is counted under the blocking stacks the scheduler
//! hooks keyed the thread's off-CPU time by (frame-pointer walks, which
//! code without frame pointers cuts short). At the end, each off-CPU
//! aggregate takes the complete user stack observed with its key; when one
//! key was seen with several complete stacks, its time is split between
//! them in proportion to the snapshots that saw each (snapshots sample
//! time uniformly), and that time is reported as estimated.

use std::io::Read;

use rustc_hash::FxHashMap;

use profiler_common::{StateRecord, UserRegs, MAX_STACK_DEPTH, STATE_RUNNING};

use crate::{
    stacks::{StackAggregator, UserFrame},
    unwind::Unwinder,
};

/// A blocked thread a snapshot saw, with its user registers.
#[derive(Debug, Clone, Copy)]
pub struct BlockedThread {
    pub tgid: u32,
    pub tid: u32,
    pub kstack_id: i32,
    pub ustack_id: i32,
    pub regs: UserRegs,
    pub sum_exec_ns: u64,
}

impl BlockedThread {
    /// A snapshot record of a thread whose user stack can be copied.
    pub fn of(rec: &StateRecord) -> Option<Self> {
        if rec.state == STATE_RUNNING || rec.regs.sp == 0 || rec.tgid == 0 {
            return None;
        }
        Some(Self {
            tgid: rec.tgid,
            tid: rec.tid,
            kstack_id: rec.kstack_id,
            ustack_id: rec.ustack_id,
            regs: rec.regs,
            sum_exec_ns: rec.sum_exec_ns,
        })
    }
}

/// Most stacks copied per snapshot: on a host with thousands of blocked
/// threads the first snapshots would otherwise copy them all at once.
/// Threads left over are copied by later snapshots if still blocked.
pub const COPIES_PER_SNAPSHOT: u32 = 128;

/// Key of off-CPU time: thread and its frame-pointer blocking stacks.
pub type BlockKey = (u32, i32, i32);

/// Cost and outcome of the copies, for summary.json.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockedStackStats {
    /// Observations of blocked threads with user registers.
    pub observed: u64,
    /// Stacks copied and unwound (a thread still blocked where an earlier
    /// snapshot saw it reuses that result).
    pub copies: u64,
    /// Copies dropped because the thread ran meanwhile.
    pub stale: u64,
    /// Copies that could not be read (process gone, unmapped).
    pub read_errors: u64,
    /// Observations not copied because the snapshot had used its budget
    /// ([`COPIES_PER_SNAPSHOT`]).
    pub deferred: u64,
    /// CPU time spent copying and unwinding, ns.
    pub cpu_ns: u64,
}

/// How a thread was last seen blocked, and what its stack unwound to.
struct Last {
    regs: UserRegs,
    sum_exec_ns: u64,
    frames: Option<Box<[UserFrame]>>,
}

pub struct BlockedStacks {
    bytes: usize,
    /// `--pid`: only these processes' threads are copied (empty: all).
    pids: rustc_hash::FxHashSet<u32>,
    last: FxHashMap<u32, Last>,
    /// Complete user stacks seen per blocking key, with snapshot counts.
    pub observed: FxHashMap<BlockKey, FxHashMap<Box<[UserFrame]>, u64>>,
    pub stats: BlockedStackStats,
    /// Copies left in the current snapshot.
    budget: u32,
    buf: Vec<u8>,
    out: Vec<u64>,
}

impl BlockedStacks {
    /// `bytes`: how much stack to copy (`--user-stack-size`); `pids`:
    /// the selected processes (empty: all).
    pub fn new(bytes: u32, pids: &[u32]) -> Self {
        Self {
            bytes: bytes as usize,
            pids: pids.iter().copied().collect(),
            last: FxHashMap::default(),
            observed: FxHashMap::default(),
            stats: BlockedStackStats::default(),
            budget: COPIES_PER_SNAPSHOT,
            buf: vec![0; bytes as usize],
            out: vec![0; MAX_STACK_DEPTH],
        }
    }

    /// Count one snapshot of a blocked thread, copying and unwinding its
    /// stack unless it is still where an earlier snapshot saw it.
    /// A new snapshot: the copy budget starts afresh.
    pub fn start_snapshot(&mut self) {
        self.budget = COPIES_PER_SNAPSHOT;
    }

    /// Whether `tgid` is one of the selected processes.
    pub fn selected(&self, tgid: u32) -> bool {
        self.pids.is_empty() || self.pids.contains(&tgid)
    }

    pub fn observe(&mut self, t: &BlockedThread, unwinder: &mut Unwinder, agg: &mut StackAggregator) {
        if !self.selected(t.tgid) {
            return;
        }
        self.stats.observed += 1;
        let started = crate::sched_times::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        let same = self.last.get(&t.tid).is_some_and(|l| l.regs == t.regs && l.sum_exec_ns == t.sum_exec_ns);
        if !same {
            if self.budget == 0 {
                self.stats.deferred += 1;
                self.stats.cpu_ns +=
                    crate::sched_times::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(started);
                return;
            }
            self.budget -= 1;
            let frames = self.unwind(t, unwinder, agg);
            self.last.insert(t.tid, Last { regs: t.regs, sum_exec_ns: t.sum_exec_ns, frames });
        }
        if let Some(frames) = self.last.get(&t.tid).and_then(|l| l.frames.clone()) {
            *self.observed.entry((t.tid, t.kstack_id, t.ustack_id)).or_default().entry(frames).or_default() += 1;
        }
        self.stats.cpu_ns += crate::sched_times::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(started);
    }

    fn unwind(
        &mut self,
        t: &BlockedThread,
        unwinder: &mut Unwinder,
        agg: &mut StackAggregator,
    ) -> Option<Box<[UserFrame]>> {
        let n = match read_remote(t.tgid, t.regs.sp, &mut self.buf[..self.bytes]) {
            Ok(n) if n > 0 => n,
            _ => {
                self.stats.read_errors += 1;
                return None;
            }
        };
        if sum_exec_ns(t.tgid, t.tid) != Some(t.sum_exec_ns) {
            self.stats.stale += 1;
            return None;
        }
        self.stats.copies += 1;
        let unwound = unwinder.unwind(t.tgid, &t.regs, &self.buf[..n], &mut self.out);
        let frames = unwound.frames.min(self.out.len());
        if frames <= 1 {
            return None;
        }
        Some(agg.normalize(t.tgid, &self.out[..frames]))
    }

    /// Complete user stacks for the off-CPU time keyed by `key`: each with
    /// its share of the snapshots that saw the key (summing to 1).
    pub fn shares(&self, key: &BlockKey) -> Vec<(&[UserFrame], f64)> {
        let Some(seen) = self.observed.get(key) else { return Vec::new() };
        let total: u64 = seen.values().sum();
        let mut shares: Vec<(&[UserFrame], f64)> =
            seen.iter().map(|(frames, &n)| (&**frames, n as f64 / total as f64)).collect();
        // Deterministic order: the most observed first.
        shares.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.len().cmp(&b.0.len())));
        shares
    }
}

/// Copy `buf.len()` bytes (fewer if the mapping ends) from `addr` in
/// process `pid`. Returns the bytes read.
fn read_remote(pid: u32, addr: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: `local` covers `buf`, which we own mutably; the kernel checks `remote`.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The thread's total CPU time, ns (first field of its schedstat).
fn sum_exec_ns(tgid: u32, tid: u32) -> Option<u64> {
    let mut s = String::new();
    std::fs::File::open(format!("/proc/{tgid}/task/{tid}/schedstat")).ok()?.read_to_string(&mut s).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_stops_at_unmapped() {
        let data = [7u8; 64];
        let mut buf = [0u8; 64];
        let me = std::process::id();
        assert_eq!(read_remote(me, data.as_ptr() as u64, &mut buf).ok(), Some(64));
        assert_eq!(buf, data);
        assert!(read_remote(me, 8, &mut buf).is_err());
    }

    #[test]
    fn own_schedstat_is_read() {
        let me = std::process::id();
        assert!(sum_exec_ns(me, me).is_some_and(|ns| ns > 0));
    }
}
