//! Complete user stacks of blocked threads, at no cost to the scheduler
//! hooks. A thread off a CPU leaves its user stack and its user registers
//! (saved on kernel entry) untouched until it runs again. The snapshot
//! iterator reports those registers; here the stack is copied from user
//! space (`process_vm_readv`) and unwound like a sample's copy.
//!
//! The copy is kept only if the thread's run counters, read from
//! /proc/PID/task/TID/schedstat after the copy (CPU time and the number
//! of times it was switched in), still equal the ones the snapshot read
//! before the registers: the thread was not switched in between, so its
//! stack is the one it blocked with. Only unwinds that reach the
//! outermost frame are kept.
//!
//! Each observation is counted under the blocking stacks the scheduler
//! hooks keyed the thread's off-CPU time by (frame-pointer walks, which
//! code without frame pointers cuts short, so one key can hold waits from
//! several callers). At the end each off-CPU aggregate gives its complete
//! stacks only the time the snapshots vouch for: one snapshot period per
//! sighting, at most the aggregate's time. With one complete stack seen
//! that time is reported as unwound; with several it is split between them
//! in proportion to their sightings (snapshots sample time uniformly) and
//! reported as estimated. The rest keeps the frame-pointer stack.

use std::{io::Read, sync::Arc};

use rustc_hash::FxHashMap;

use profiler_common::{StateRecord, UserRegs, MAX_STACK_DEPTH, STATE_RUNNING};

use crate::{
    stacks::{StackAggregator, UserFrame},
    unwind::{StopReason, Unwinder},
};

pub use crate::model::stats::BlockedStackStats;

/// A blocked thread a snapshot saw, with its user registers.
#[derive(Debug, Clone, Copy)]
pub struct BlockedThread {
    pub tgid: u32,
    pub tid: u32,
    pub kstack_id: i32,
    pub ustack_id: i32,
    pub regs: UserRegs,
    pub sum_exec_ns: u64,
    pub pcount: u64,
}

impl BlockedThread {
    /// A snapshot record of a thread whose user stack can be copied.
    pub fn of(rec: &StateRecord) -> Option<Self> {
        if rec.state == STATE_RUNNING || rec.regs.sp == 0 || rec.tgid == 0 {
            return None;
        }
        Some(Self {
            tgid: rec.tgid,
            tid: rec.head.tid,
            kstack_id: rec.kstack_id,
            ustack_id: rec.ustack_id,
            regs: rec.regs,
            sum_exec_ns: rec.counters.sum_exec_ns,
            pcount: rec.counters.pcount,
        })
    }
}

/// What became of a blocked thread's user stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwound {
    /// Unwound to the outermost frame (shared with the threads blocked in
    /// the same place).
    Complete(Arc<[UserFrame]>),
    /// Not copied: the snapshot had used its budget; try again later.
    Deferred,
    /// Copied but not usable (ran meanwhile, unreadable, incomplete).
    Incomplete,
    /// Not one of the selected processes.
    NotSelected,
}

/// Most stacks copied per snapshot: on a host with thousands of blocked
/// threads the first snapshots would otherwise copy them all at once.
/// Threads left over are copied by later snapshots if still blocked.
pub const COPIES_PER_SNAPSHOT: u32 = 128;

/// Key of off-CPU time: thread and its frame-pointer blocking stacks.
pub type BlockKey = (u32, i32, i32);

/// How a thread was last seen blocked, and what its stack unwound to.
struct Last {
    regs: UserRegs,
    counters: (u64, u64),
    frames: Option<Arc<[UserFrame]>>,
    /// The snapshot that last saw it.
    seen: u64,
}

/// Entries of threads no snapshot has seen for this many are dropped.
const FORGET_AFTER_SNAPSHOTS: u64 = 64;

/// Every this many snapshots, entries of threads gone are dropped: under
/// thread churn they would otherwise wait [`FORGET_AFTER_SNAPSHOTS`], which
/// the cost governor can stretch to many minutes.
const FORGET_GONE_EVERY: u64 = 8;

pub struct BlockedStacks {
    bytes: usize,
    period_ns: u64,
    /// `--pid`: only these processes' threads are copied (empty: all).
    pids: rustc_hash::FxHashSet<u32>,
    last: FxHashMap<u32, Last>,
    /// One copy of each complete stack the entries of `last` hold: a
    /// pool's idle threads are blocked in one place, 10,000 of them in one
    /// stack.
    shared: rustc_hash::FxHashSet<Arc<[UserFrame]>>,
    /// Stacks dropped from `shared` since the start.
    shared_dropped: u64,
    /// Complete user stacks seen per blocking key, with snapshot counts.
    pub observed: FxHashMap<BlockKey, FxHashMap<Box<[UserFrame]>, u64>>,
    pub stats: BlockedStackStats,
    /// Copies left in the current snapshot.
    budget: u32,
    snapshot: u64,
    snapshot_started_ns: u64,
    buf: Vec<u8>,
    out: Vec<u64>,
}

impl BlockedStacks {
    /// `bytes`: how much stack to copy (`--user-stack-size`); `pids`:
    /// the selected processes (empty: all); `hz`: snapshots per second.
    pub fn new(bytes: u32, pids: &[u32], hz: u64) -> Self {
        Self {
            period_ns: 1_000_000_000 / hz.max(1),
            bytes: bytes as usize,
            pids: pids.iter().copied().collect(),
            last: FxHashMap::default(),
            shared: Default::default(),
            shared_dropped: 0,
            observed: FxHashMap::default(),
            stats: BlockedStackStats::default(),
            budget: COPIES_PER_SNAPSHOT,
            snapshot: 0,
            snapshot_started_ns: 0,
            buf: vec![0; bytes as usize],
            out: vec![0; MAX_STACK_DEPTH],
        }
    }

    /// Count one snapshot of a blocked thread, copying and unwinding its
    /// stack unless it is still where an earlier snapshot saw it.
    /// A new snapshot: the copy budget starts afresh.
    pub fn start_snapshot(&mut self) {
        self.budget = COPIES_PER_SNAPSHOT;
        self.snapshot += 1;
        self.snapshot_started_ns = crate::sys::clock::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        if self.snapshot.is_multiple_of(FORGET_AFTER_SNAPSHOTS) {
            let now = self.snapshot;
            self.last.retain(|_, l| now - l.seen < FORGET_AFTER_SNAPSHOTS);
        }
    }

    /// The snapshot's threads are done: account its CPU time, and now and
    /// then forget threads for which `alive` is false.
    pub fn finish_snapshot(&mut self, alive: impl Fn(u32) -> bool) {
        if self.snapshot.is_multiple_of(FORGET_GONE_EVERY) {
            self.last.retain(|&tid, _| alive(tid));
            // Stacks no thread holds any more: the set's is the last copy.
            let shared = self.shared.len();
            self.shared.retain(|f| Arc::strong_count(f) > 1);
            self.shared_dropped += (shared - self.shared.len()) as u64;
        }
        let now = crate::sys::clock::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        self.stats.cpu_ns += now.saturating_sub(self.snapshot_started_ns);
    }

    /// Whether this snapshot has used its copy budget.
    pub fn budget_spent(&self) -> bool {
        self.budget == 0
    }

    /// A blocked thread left for a later snapshot: the budget is spent.
    pub fn defer(&mut self) -> Unwound {
        self.stats.deferred += 1;
        Unwound::Deferred
    }

    /// Whether `tgid` is one of the selected processes.
    pub fn selected(&self, tgid: u32) -> bool {
        self.pids.is_empty() || self.pids.contains(&tgid)
    }

    /// The complete user stack of a blocked thread a snapshot saw: copied
    /// and unwound, unless it is still where an earlier snapshot saw it.
    pub fn stack_of(&mut self, t: &BlockedThread, unwinder: &mut Unwinder, agg: &mut StackAggregator) -> Unwound {
        if !self.selected(t.tgid) {
            return Unwound::NotSelected;
        }
        let counters = (t.sum_exec_ns, t.pcount);
        let snapshot = self.snapshot;
        let frames = match self.last.get_mut(&t.tid) {
            Some(l) if l.regs == t.regs && l.counters == counters => {
                l.seen = snapshot;
                l.frames.clone()
            }
            _ => {
                if self.budget == 0 {
                    self.stats.deferred += 1;
                    return Unwound::Deferred;
                }
                self.budget -= 1;
                let frames = self.unwind(t, unwinder, agg).map(|f| self.share(f));
                self.last.insert(t.tid, Last { regs: t.regs, counters, frames: frames.clone(), seen: snapshot });
                frames
            }
        };
        frames.map_or(Unwound::Incomplete, Unwound::Complete)
    }

    /// Distinct user stacks held once for the threads seen blocked, and
    /// those dropped since the start as no thread held them any more.
    pub fn shared_stacks(&self) -> (u64, u64) {
        (self.shared.len() as u64, self.shared_dropped)
    }

    /// The one copy of `frames`.
    fn share(&mut self, frames: Box<[UserFrame]>) -> Arc<[UserFrame]> {
        if let Some(f) = self.shared.get(&*frames) {
            return f.clone();
        }
        let f: Arc<[UserFrame]> = frames.into();
        self.shared.insert(f.clone());
        f
    }

    /// `n` snapshots saw a blocked thread with off-CPU key `key`, and
    /// `frames` (if complete) as its user stack.
    pub fn count(&mut self, key: BlockKey, frames: Option<&[UserFrame]>, n: u64) {
        self.stats.observed += n;
        if let Some(frames) = frames {
            *self.observed.entry(key).or_default().entry(frames.into()).or_default() += n;
        }
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
        // Unchanged counters: not switched in since the snapshot read them.
        // All-zero counters (no schedstats) cannot vouch for anything.
        match run_counters(t.tgid, t.tid) {
            Some(now) if now == (t.sum_exec_ns, t.pcount) && now != (0, 0) => {}
            _ => {
                self.stats.stale += 1;
                return None;
            }
        }
        self.stats.copies += 1;
        let unwound = unwinder.unwind(t.tgid, &t.regs, &self.buf[..n], &mut self.out);
        let frames = unwound.frames.min(self.out.len());
        if unwound.stop != StopReason::Complete || frames <= 1 {
            self.stats.incomplete += 1;
            return None;
        }
        Some(agg.normalize(t.tgid, &self.out[..frames]))
    }

    /// Complete user stacks seen with the off-CPU key `key`, with the
    /// snapshots that saw each; the most seen first.
    pub fn sightings(&self, key: &BlockKey) -> Vec<(&[UserFrame], u64)> {
        let Some(seen) = self.observed.get(key) else { return Vec::new() };
        let mut out: Vec<(&[UserFrame], u64)> = seen.iter().map(|(frames, &n)| (&**frames, n)).collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.len().cmp(&b.0.len())));
        out
    }

    /// Time between two snapshots, ns.
    pub fn period_ns(&self) -> u64 {
        self.period_ns
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

/// The thread's total CPU time (ns) and switch-in count: the first and
/// third fields of its schedstat.
fn run_counters(tgid: u32, tid: u32) -> Option<(u64, u64)> {
    let mut s = String::new();
    std::fs::File::open(format!("/proc/{tgid}/task/{tid}/schedstat")).ok()?.read_to_string(&mut s).ok()?;
    let mut fields = s.split_whitespace();
    let ns = fields.next()?.parse().ok()?;
    let pcount = fields.nth(1)?.parse().ok()?;
    Some((ns, pcount))
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
        assert!(run_counters(me, me).is_some_and(|(ns, pcount)| ns > 0 && pcount > 0));
    }
}
