//! Thread-state snapshots, parsed. Each snapshot lists every thread on the
//! host: a whole [`StateRecord`] for a thread that changed since the last
//! snapshot, an 8-byte head for one that did not (the iterator's
//! [`SNAP_UNCHANGED`]). Here each live thread keeps its last whole record
//! and the number of periodic snapshots that have seen it unchanged since:
//! a *segment*. When the thread changes, goes, or the capture ends, the
//! segment's sightings are counted at once, by state, syscall, fd target
//! and blocking stacks, so an unchanged thread costs one hash lookup per
//! snapshot.
//!
//! Bound snapshots (a window's start and end) are not sightings: they read
//! every live thread's cumulative counters ([`TaskCounters`]), from which
//! the continuous tier takes exact on-CPU and run-queue times.

use profiler_common::Record as _;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use profiler_common::{
    SnapHead, StateRecord, TaskCounters, TaskExit, SNAPSHOT_STACK_DEPTH, SNAP_UNCHANGED, STATE_RUNNING,
};

use crate::{
    blocked_stacks::BlockedThread,
    snapshot_taker::{Kind, Taken},
    stacks::UserFrame,
};

pub use crate::model::stats::SamplerStats;

/// Number of `STATE_*` values.
pub const STATES: usize = 5;

/// What the snapshots saw of one thread.
#[derive(Debug, Clone, Default)]
pub struct ThreadSamples {
    pub tgid: u32,
    pub comm: String,
    /// Snapshots that saw the thread in each `STATE_*`.
    pub states: [u64; STATES],
}

/// Key of off-CPU sightings (continuous tier): state, syscall and the
/// blocking stacks the snapshot read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SightKey {
    pub state: u32,
    pub syscall: i32,
    pub kstack: Arc<[u64]>,
    pub ustack: Option<Arc<[UserFrame]>>,
}

/// One live thread: its last whole record and the segment since.
struct Live {
    rec: StateRecord,
    /// Kernel stack the last whole record carried (off-CPU threads).
    kstack: Option<Arc<[u64]>>,
    /// The user stack copied and unwound for this segment, if any.
    ustack: Option<Arc<[UserFrame]>>,
    /// What the thread waits on (fd syscalls), read at the segment's start.
    fd_target: Option<u32>,
    /// The running total of periodic weights before the segment began: its
    /// sightings are the total now minus this (see [`StateSampler::weights`]).
    base: u64,
    /// Sequence number of the last full snapshot that listed it.
    listed: u64,
    /// The user stack is yet to be copied (the budget ran out).
    unwind_pending: bool,
}

/// Sightings of a blocked thread under the hooks' key, with its complete
/// user stack if one was unwound.
pub type BlockedCount = (crate::blocked_stacks::BlockKey, Option<Box<[UserFrame]>>, u64);

/// Cumulative counters of every live thread at one instant (a bound).
/// A vector sorted by tid: a window holds two (a hash map of 10,000
/// threads took 1.2 MB each), the closing one shared with the next window.
#[derive(Debug, Clone, Default)]
pub struct CounterRead {
    /// CLOCK_MONOTONIC ns the snapshot stands for.
    pub at_ns: u64,
    threads: Vec<BoundThread>,
}

/// One thread at a bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundThread {
    pub tid: u32,
    pub tgid: u32,
    /// The thread's start, CLOCK_MONOTONIC ns (names it across tid reuse).
    pub start_ns: u64,
    pub counters: TaskCounters,
}

impl CounterRead {
    /// A bound of these threads, in any order (a tid given twice keeps one).
    pub fn new(at_ns: u64, mut threads: Vec<BoundThread>) -> Self {
        threads.sort_unstable_by_key(|t| t.tid);
        threads.dedup_by_key(|t| t.tid);
        Self { at_ns, threads }
    }

    pub fn get(&self, tid: u32) -> Option<&BoundThread> {
        self.threads.binary_search_by_key(&tid, |t| t.tid).ok().map(|i| &self.threads[i])
    }

    pub fn contains(&self, tid: u32) -> bool {
        self.get(tid).is_some()
    }

    /// Every thread, in tid order.
    pub fn threads(&self) -> &[BoundThread] {
        &self.threads
    }
}

/// Most exit records kept per window, as a multiple of `--max-threads`.
const EXITS_PER_THREAD_SLOT: usize = 4;

pub struct StateSampler {
    pub stats: SamplerStats,
    /// Sightings counted so far, per tid.
    pub threads: FxHashMap<u32, ThreadSamples>,
    /// Latest kernel stack a snapshot carried per thread (innermost first).
    pub kstacks: FxHashMap<u32, Box<[u64]>>,
    /// (tgid, user stack id) pairs seen, in order of first sight, for
    /// normalizing user stacks while their process lives.
    pub new_user_stacks: Vec<(u32, i32)>,
    seen_user_stacks: FxHashSet<(u32, i32)>,
    /// Processes seen for the first time, in order, for the process table.
    pub new_processes: Vec<u32>,
    seen_processes: FxHashSet<u32>,
    /// What off-CPU threads in fd syscalls wait on.
    pub fd_waits: crate::enrich::fd_target::FdWaits,
    /// Off-CPU sightings by thread and (state, syscall, stacks): the
    /// continuous tier's off-CPU stacks.
    pub sightings: FxHashMap<u32, FxHashMap<SightKey, u64>>,
    /// Deep tier: complete user stacks of blocked threads by the hooks' key.
    /// In the continuous tier they carry no stack (the sightings have it):
    /// only the count.
    pub blocked_counts: Vec<BlockedCount>,
    /// The hooks key off-CPU time by stack ids (deep tier): blocked
    /// threads' complete stacks are counted under those keys.
    hook_keys: bool,
    /// Final counters of threads that exited (continuous tier).
    pub exits: Exits,
    /// Live threads. A snapshot lists only those that changed (and, when
    /// full, the others as heads): an unchanged thread costs nothing here,
    /// not even a lookup, as memory left cold for a while is dear to touch
    /// (on this VM a hash lookup of a thread last touched a snapshot ago
    /// cost 2.8 us, 30 times a warm one).
    live: FxHashMap<u32, Live>,
    /// One copy of each kernel stack the live threads hold: a pool's idle
    /// threads are blocked in one place (emptied of unheld ones between
    /// windows).
    shared_kstacks: FxHashSet<Arc<[u64]>>,
    /// Stacks dropped from `shared_kstacks` since the start.
    shared_dropped: u64,
    /// Running total of the periodic snapshots' weights (periods of
    /// --state-hz): a segment's sightings are the growth of this total.
    weights: u64,
    max_threads: usize,
    /// Snapshots parsed, bounds included.
    seq: u64,
    /// Live threads whose user stack is yet to be copied.
    pending: Vec<u32>,
    /// Threads the kernel believes we know but we do not (table full):
    /// their iterator entries are deleted so that they are sent whole.
    pub resync: Vec<u32>,
    /// `stats` at the last [`cut`](Self::cut): a window's are the growth since.
    stats_at_cut: SamplerStats,
    /// Entries of gone threads forgotten between windows.
    pub evicted: u64,
}

impl StateSampler {
    pub fn new(max_threads: u32) -> Self {
        Self {
            stats: SamplerStats::default(),
            threads: FxHashMap::default(),
            kstacks: FxHashMap::default(),
            new_user_stacks: Vec::new(),
            seen_user_stacks: FxHashSet::default(),
            new_processes: Vec::new(),
            seen_processes: FxHashSet::default(),
            fd_waits: crate::enrich::fd_target::FdWaits::new(),
            sightings: FxHashMap::default(),
            blocked_counts: Vec::new(),
            hook_keys: false,
            exits: Exits::default(),
            live: FxHashMap::default(),
            shared_kstacks: FxHashSet::default(),
            shared_dropped: 0,
            weights: 0,
            max_threads: max_threads as usize,
            seq: 0,
            pending: Vec::new(),
            resync: Vec::new(),
            stats_at_cut: SamplerStats::default(),
            evicted: 0,
        }
    }

    /// Deep tier: count blocked threads' complete stacks under the hooks'
    /// keys too, for the off-CPU aggregates to take their user halves from.
    pub fn with_hook_keys(mut self) -> Self {
        self.hook_keys = true;
        self
    }

    /// Parse one snapshot. A bound snapshot returns every live thread's
    /// counters; a periodic one counts sightings.
    pub fn parse(&mut self, taken: &Taken) -> Option<CounterRead> {
        let started = crate::sys::clock::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        self.seq += 1;
        let periodic = taken.kind == Kind::Periodic;
        // Sightings count in periods of --state-hz.
        let weight = if periodic { u64::from(taken.weight.max(1)) } else { 0 };
        if periodic {
            self.stats.snapshots += 1;
            self.stats.weight_sum += weight;
            self.stats.weight_square_sum += weight * weight;
            self.stats.effective_snapshots =
                (self.stats.weight_sum as f64).powi(2) / self.stats.weight_square_sum.max(1) as f64;
        }
        let mut bound: Option<Vec<BoundThread>> = (!periodic).then(Vec::new);
        // Segments that end here were seen up to the snapshot before.
        let before = self.weights;
        self.weights += weight;
        let seq = self.seq;
        let mut bytes = &taken.bytes[..];
        const HEAD: usize = size_of::<StateRecord>();
        while let Some(head) = SnapHead::decode(bytes) {
            self.stats.records += 1;
            let tid = head.tid;
            if head.flags & SNAP_UNCHANGED != 0 {
                // Only full snapshots list unchanged threads.
                bytes = &bytes[size_of::<SnapHead>()..];
                self.stats.unchanged += 1;
                match self.live.get_mut(&tid) {
                    Some(l) => {
                        l.listed = seq;
                        if let Some(b) = bound.as_mut() {
                            b.push(BoundThread {
                                tid,
                                tgid: l.rec.tgid,
                                start_ns: l.rec.start_ns,
                                counters: l.rec.counters,
                            });
                        }
                    }
                    None => self.resync.push(tid),
                }
                continue;
            }
            let Some(rec) = StateRecord::decode(bytes) else { break };
            let frames = (rec.kstack_len as usize).min(SNAPSHOT_STACK_DEPTH);
            let end = HEAD + frames * 8;
            let Some(stack) = bytes.get(HEAD..end) else { break };
            bytes = &bytes[end..];
            if let Some(b) = bound.as_mut() {
                b.push(BoundThread { tid, tgid: rec.tgid, start_ns: rec.start_ns, counters: rec.counters });
            }
            let previous = self.live.remove(&tid);
            let previous_kstack = previous.as_ref().and_then(|l| l.kstack.clone());
            if let Some(l) = previous {
                self.close(l, before);
            } else if self.live.len() >= self.max_threads {
                self.stats.threads_dropped += 1;
                self.resync.push(tid);
                continue;
            }
            let l = self.whole(rec, stack, before, previous_kstack);
            self.live.insert(tid, l);
        }
        // A full snapshot lists every live thread: the others are gone.
        if taken.full {
            let gone: Vec<u32> = self.live.iter().filter(|(_, l)| l.listed != seq).map(|(tid, _)| *tid).collect();
            for tid in gone {
                if let Some(l) = self.live.remove(&tid) {
                    self.close(l, before);
                }
            }
        }
        self.stats.read_cpu_ns += taken.cpu_ns;
        self.stats.cpu_ns +=
            taken.cpu_ns + crate::sys::clock::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(started);
        bound.map(|threads| CounterRead::new(taken.at_ns(), threads))
    }

    /// A thread's whole record: it changed, or is new.
    fn whole(&mut self, rec: StateRecord, stack: &[u8], base: u64, previous_kstack: Option<Arc<[u64]>>) -> Live {
        let tid = rec.head.tid;
        if rec.tgid != 0 && self.seen_processes.insert(rec.tgid) {
            self.new_processes.push(rec.tgid);
        }
        let t = self.threads.entry(tid).or_default();
        t.tgid = rec.tgid;
        if t.comm.as_bytes() != profiler_common::comm_bytes(&rec.comm) {
            t.comm = crate::model::text::comm_string(&rec.comm);
        }
        let kstack: Option<Arc<[u64]>> = (!stack.is_empty()).then(|| {
            let frames: Vec<u64> =
                stack.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default())).collect();
            match self.shared_kstacks.get(&*frames) {
                Some(k) => k.clone(),
                None => {
                    let k: Arc<[u64]> = frames.into();
                    self.shared_kstacks.insert(k.clone());
                    k
                }
            }
        });
        // The deep tier's aggregates of threads the hooks have no stack for yet use it.
        if let Some(k) = kstack.as_ref().filter(|_| rec.head.flags & profiler_common::SNAP_UNTRACKED == 0) {
            self.kstacks.insert(tid, k.to_vec().into_boxed_slice());
        }
        if rec.ustack_id >= 0 && self.seen_user_stacks.insert((rec.tgid, rec.ustack_id)) {
            self.new_user_stacks.push((rec.tgid, rec.ustack_id));
        }
        let fd_target = match rec.state != STATE_RUNNING && rec.syscall >= 0 {
            true => self.fd_waits.target(rec.tgid, tid, rec.syscall, rec.syscall_fd, rec.syscall_start_ns),
            false => None,
        };
        let unwind_pending = BlockedThread::of(&rec).is_some();
        if unwind_pending {
            self.pending.push(tid);
        }
        // A thread still blocked where it was keeps the kernel stack it was
        // sent with (the deep tier's iterator sends it once).
        let kstack = kstack.or_else(|| {
            (rec.head.flags & profiler_common::SNAP_STACK_SENT_BEFORE != 0).then_some(previous_kstack).flatten()
        });
        Live { rec, kstack, ustack: None, fd_target, base, listed: self.seq, unwind_pending }
    }

    /// Count a segment's sightings: it lasted until the running total of
    /// periodic weights was `until`.
    fn close(&mut self, l: Live, until: u64) {
        self.count(&l, until);
    }

    fn count(&mut self, l: &Live, until: u64) {
        let (rec, n) = (&l.rec, until.saturating_sub(l.base));
        if n == 0 {
            return;
        }
        let tid = rec.head.tid;
        if let Some(count) = self.threads.get_mut(&tid).and_then(|t| t.states.get_mut(rec.state as usize)) {
            *count += n;
        }
        if rec.state == STATE_RUNNING {
            return;
        }
        if let Some(target) = l.fd_target {
            self.fd_waits.count(rec.tgid, tid, rec.syscall, target, n);
        }
        if rec.regs.sp != 0 {
            let key = (tid, rec.kstack_id, rec.ustack_id);
            let frames = l.ustack.as_deref().filter(|_| self.hook_keys).map(Into::into);
            self.blocked_counts.push((key, frames, n));
        }
        let key = SightKey {
            state: rec.state,
            syscall: rec.syscall,
            kstack: l.kstack.clone().unwrap_or_else(|| Arc::from([])),
            ustack: l.ustack.clone(),
        };
        *self.sightings.entry(tid).or_default().entry(key).or_default() += n;
    }

    /// Blocked threads whose user stacks are yet to be copied: the new
    /// segments of this snapshot, and those an earlier one deferred.
    pub fn pending_unwinds(&mut self) -> Vec<BlockedThread> {
        let pending = std::mem::take(&mut self.pending);
        pending
            .into_iter()
            .filter_map(|tid| self.live_mut(tid).filter(|l| l.unwind_pending).and_then(|l| BlockedThread::of(&l.rec)))
            .collect()
    }

    /// Whether the last snapshot saw `tid` alive.
    pub fn is_live(&self, tid: u32) -> bool {
        self.live.contains_key(&tid)
    }

    fn live_mut(&mut self, tid: u32) -> Option<&mut Live> {
        self.live.get_mut(&tid)
    }

    /// The outcome of copying a blocked thread's user stack.
    pub fn unwound(&mut self, tid: u32, outcome: crate::blocked_stacks::Unwound) {
        let Some(l) = self.live_mut(tid) else { return };
        match outcome {
            crate::blocked_stacks::Unwound::Deferred => self.pending.push(tid),
            crate::blocked_stacks::Unwound::Complete(frames) => {
                l.ustack = Some(frames);
                l.unwind_pending = false;
            }
            _ => l.unwind_pending = false,
        }
    }

    /// The last counters of a live thread (a thread gone without an exit record).
    pub fn last_counters(&self) -> impl Iterator<Item = (u32, u32, u64, TaskCounters)> + '_ {
        self.live.values().map(|l| (l.rec.head.tid, l.rec.tgid, l.rec.start_ns, l.rec.counters))
    }

    /// A thread exited (the deep tier's exit records): its segment ends now.
    pub fn gone(&mut self, tid: u32) {
        if let Some(l) = self.live.remove(&tid) {
            self.close(l, self.weights);
        }
    }

    /// A thread's final counters at its exit: its segment ends now.
    pub fn exited(&mut self, e: TaskExit) {
        if let Some(l) = self.live.remove(&e.tid).filter(|l| l.rec.start_ns == e.start_ns) {
            self.close(l, self.weights);
        }
        if self.exits.len() >= self.max_threads.saturating_mul(EXITS_PER_THREAD_SLOT) {
            self.stats.threads_dropped += 1;
            return;
        }
        self.exits.0.push(e);
    }

    /// The capture is over: count every open segment.
    pub fn finish(&mut self) {
        let until = self.weights;
        for (_, l) in std::mem::take(&mut self.live) {
            self.close(l, until);
        }
    }

    /// End a window (after its closing bound): every open segment counts
    /// its sightings so far into this window and goes on in the next one.
    /// Returns what the window saw; live threads stay known.
    pub fn cut(&mut self) -> SampledWindow {
        let until = self.weights;
        let mut live = std::mem::take(&mut self.live);
        for l in live.values_mut() {
            self.count(l, until);
            l.base = until;
        }
        let next: FxHashMap<u32, ThreadSamples> = live
            .keys()
            .filter_map(|tid| self.threads.get(tid).map(|t| (*tid, ThreadSamples { states: [0; STATES], ..t.clone() })))
            .collect();
        self.live = live;
        // Processes are listed again when next seen whole (the table knows them).
        self.seen_processes.clear();
        let stats = self.stats.since(&self.stats_at_cut);
        self.stats_at_cut = self.stats;
        SampledWindow {
            threads: std::mem::replace(&mut self.threads, next),
            sightings: std::mem::take(&mut self.sightings),
            exits: std::mem::take(&mut self.exits).sealed(),
            blocked_counts: std::mem::take(&mut self.blocked_counts),
            fd_waits: self.fd_waits.take_counts(),
            stats,
        }
    }

    /// Forget what is kept of threads no longer alive (between windows).
    pub fn evict(&mut self, live: &rustc_hash::FxHashSet<u32>) -> u64 {
        let before = self.kstacks.len();
        self.kstacks.retain(|tid, _| live.contains(tid));
        let evicted = (before - self.kstacks.len()) as u64 + self.fd_waits.evict(live);
        self.seen_user_stacks.clear();
        let shared = self.shared_kstacks.len();
        self.shared_kstacks.retain(|k| Arc::strong_count(k) > 1);
        self.shared_dropped += (shared - self.shared_kstacks.len()) as u64;
        self.evicted += evicted;
        evicted
    }

    /// Distinct kernel stacks held once for the live threads, and those
    /// dropped since the start as no thread held them any more.
    pub fn shared_stacks(&self) -> (u64, u64) {
        (self.shared_kstacks.len() as u64, self.shared_dropped)
    }

    /// The live-thread table's bound (`--max-threads`).
    pub fn max_threads(&self) -> u32 {
        self.max_threads as u32
    }

    /// Entries held across windows: live threads and their kernel stacks.
    pub fn held(&self) -> u64 {
        (self.live.len() + self.kstacks.len()) as u64
    }
}

/// Final counters of threads that exited, in a window. A vector sorted by
/// tid once the window is cut: under thread churn a window holds 30,000
/// (a hash map of them took 3.4 MB of the agent's peak).
#[derive(Debug, Default)]
pub struct Exits(Vec<TaskExit>);

impl Exits {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorted by tid, the latest record of a tid kept (a tid reused within
    /// the window).
    fn sealed(mut self) -> Self {
        self.0.sort_unstable_by(|a, b| a.tid.cmp(&b.tid).then(b.ts_ns.cmp(&a.ts_ns)));
        self.0.dedup_by_key(|e| e.tid);
        self
    }

    /// The exit record of `tid` (of a sealed window's).
    pub fn get(&self, tid: u32) -> Option<&TaskExit> {
        self.0.binary_search_by_key(&tid, |e| e.tid).ok().map(|i| &self.0[i])
    }

    /// The tids, in order (of a sealed window's).
    pub fn tids(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().map(|e| e.tid)
    }

    /// The records, in tid order (of a sealed window's).
    pub fn iter(&self) -> impl Iterator<Item = &TaskExit> + '_ {
        self.0.iter()
    }
}

/// What the snapshots saw in one window.
#[derive(Debug, Default)]
pub struct SampledWindow {
    /// Per tid: name, process and snapshots by state.
    pub threads: FxHashMap<u32, ThreadSamples>,
    pub sightings: FxHashMap<u32, FxHashMap<SightKey, u64>>,
    /// Final counters of threads that exited in the window.
    pub exits: Exits,
    pub blocked_counts: Vec<BlockedCount>,
    /// Per tid, what it was seen blocked on.
    pub fd_waits: std::collections::BTreeMap<u32, Vec<crate::enrich::fd_target::BlockedOn>>,
    /// The snapshots of this window.
    pub stats: SamplerStats,
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::{STATE_RUNNABLE, STATE_SLEEPING};

    fn record(tid: u32, state: u32, pcount: u64) -> Vec<u8> {
        let rec = StateRecord {
            head: SnapHead { tid, flags: 0 },
            tgid: 7,
            state,
            counters: TaskCounters { pcount, sum_exec_ns: pcount * 10, ..Default::default() },
            ..Default::default()
        };
        // SAFETY: plain #[repr(C)] data of integers.
        unsafe { std::slice::from_raw_parts((&raw const rec).cast::<u8>(), size_of::<StateRecord>()) }.to_vec()
    }

    fn unchanged(tid: u32) -> Vec<u8> {
        let head = SnapHead { tid, flags: SNAP_UNCHANGED };
        // SAFETY: plain #[repr(C)] data of integers.
        unsafe { std::slice::from_raw_parts((&raw const head).cast::<u8>(), size_of::<SnapHead>()) }.to_vec()
    }

    fn taken(kind: Kind, parts: &[Vec<u8>]) -> Taken {
        Taken { kind, bytes: parts.concat(), start_ns: 100, end_ns: 200, cpu_ns: 0, weight: 1, full: true }
    }

    #[test]
    fn unchanged_threads_count_as_sightings_of_their_last_state() {
        let mut s = StateSampler::new(16);
        let b = s.parse(&taken(Kind::Bound, &[record(1, STATE_SLEEPING, 3), record(2, STATE_RUNNING, 5)])).unwrap();
        assert_eq!(b.at_ns, 150);
        assert_eq!(b.get(1).map(|t| t.counters.pcount), Some(3));
        assert!(s.parse(&taken(Kind::Periodic, &[unchanged(1), record(2, STATE_RUNNING, 6)])).is_none());
        s.parse(&taken(Kind::Periodic, &[unchanged(1), record(2, STATE_RUNNABLE, 7)]));
        // Thread 1 changes; thread 2 is gone.
        s.parse(&taken(Kind::Periodic, &[record(1, STATE_RUNNABLE, 4)]));
        let b = s.parse(&taken(Kind::Bound, &[unchanged(1)])).unwrap();
        assert_eq!(
            b.get(1).map(|t| t.counters.pcount),
            Some(4),
            "a bound reads an unchanged thread's counters from its last record"
        );
        s.finish();
        assert_eq!(s.threads[&1].states, [0, 1, 2, 0, 0]);
        assert_eq!(s.threads[&2].states, [1, 1, 0, 0, 0]);
        assert_eq!(s.stats.snapshots, 3);
        assert_eq!(s.stats.unchanged, 3);
        let sleeping: u64 = s.sightings[&1].iter().filter(|(k, _)| k.state == STATE_SLEEPING).map(|(_, n)| n).sum();
        assert_eq!(sleeping, 2);
    }

    #[test]
    fn threads_a_snapshot_does_not_list_stay_as_they_were_until_a_full_one() {
        let mut s = StateSampler::new(16);
        let partial = |parts: &[Vec<u8>], weight| Taken { full: false, weight, ..taken(Kind::Periodic, parts) };
        s.parse(&taken(Kind::Periodic, &[record(1, STATE_SLEEPING, 3), record(2, STATE_SLEEPING, 1)]));
        s.parse(&partial(&[], 1));
        // The governor halves the rate: each snapshot stands for 2 periods.
        s.parse(&partial(&[], 2));
        s.parse(&partial(&[record(1, STATE_RUNNABLE, 4)], 2));
        // A full snapshot without thread 2: gone after the snapshot before.
        s.parse(&Taken { weight: 2, ..taken(Kind::Periodic, &[unchanged(1)]) });
        s.finish();
        assert_eq!(s.threads[&1].states, [0, 4, 4, 0, 0]);
        assert_eq!(s.threads[&2].states, [0, 0, 6, 0, 0]);
        assert_eq!(s.stats.weight_sum, 8);
    }

    #[test]
    fn a_reused_tid_keeps_its_latest_exit() {
        let mut s = StateSampler::new(16);
        let exit = |tid, ts_ns| TaskExit { tid, ts_ns, ..Default::default() };
        for e in [exit(9, 5), exit(3, 1), exit(9, 7), exit(5, 2)] {
            s.exited(e);
        }
        let w = s.cut();
        assert_eq!(w.exits.tids().collect::<Vec<_>>(), [3, 5, 9]);
        assert_eq!(w.exits.get(9).map(|e| e.ts_ns), Some(7));
        assert!(w.exits.get(4).is_none());
    }

    #[test]
    fn unknown_unchanged_threads_are_resynced() {
        let mut s = StateSampler::new(1);
        s.parse(&taken(Kind::Periodic, &[record(1, STATE_SLEEPING, 1), record(2, STATE_SLEEPING, 1), unchanged(3)]));
        assert_eq!(s.stats.threads_dropped, 1, "the table holds one thread");
        assert_eq!(s.resync, vec![2, 3]);
    }
}
