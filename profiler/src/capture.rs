//! The capture loop: drain the sample ring buffer until the duration ends,
//! Ctrl-C or SIGTERM, updating the progress line.

use profiler_common::Record as _;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use profiler_common::{ProcessEvent, SampleEvent, EVENT_EXEC, EVENT_FORK, EVENT_SAMPLE, EVENT_SAMPLE_STACK};
use tokio::{
    io::unix::AsyncFd,
    time::{interval, sleep_until, MissedTickBehavior},
};

use crate::{
    blocked_stacks::BlockedStacks,
    enrich::{cgroup_filter::CgroupFilter, processes::ProcessTable},
    governor::{Apply, Governor, GovernorReport, Levels},
    noise::sampled::NoiseSampler,
    off_cpu::StackResolver,
    sched_times::{drain_exits, Exited},
    snapshot_taker::{SnapshotTaker, Taken},
    stacks::StackAggregator,
    state_sampler::{CounterRead, StateSampler},
    sys::clock::monotonic_ns,
    unwinding::{decode_stack_record, SampleUnwinder},
    Error, Result,
};

/// Why a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Elapsed,
    Interrupted,
}

/// The kind of a record of the sample ring (its first `u32`).
pub(crate) fn kind(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// What the ring buffer readers update.
pub struct Sinks {
    pub stacks: StackAggregator,
    pub processes: ProcessTable,
    /// With `--unwind dwarf|auto`.
    pub unwinder: Option<SampleUnwinder>,
    /// The continuous tier's noise estimates: every sample classified by
    /// its kernel stack (interrupt context, kernel thread).
    pub noise: Option<NoiseSampler>,
    /// Samples are aggregated into stacks and processes (not for `noise`,
    /// which only classifies them).
    profile: bool,
    /// Names of addresses, for the collector's life: the noise sampler
    /// names kernel frames as samples arrive, windows at their end.
    pub names: crate::symbolize::Names,
    malformed: u64,
    /// Records stamped after a window's end, read while closing it: they
    /// are handled, in order, once the next window is open.
    held: Vec<Vec<u8>>,
}

/// When a record of the sample ring was stamped (CLOCK_MONOTONIC ns).
fn stamp(item: &[u8]) -> Option<u64> {
    match kind(item)? {
        EVENT_SAMPLE => Some(SampleEvent::decode(item)?.ts_ns),
        EVENT_SAMPLE_STACK => Some(decode_stack_record(item)?.sample.ts_ns),
        EVENT_EXEC | EVENT_FORK => Some(ProcessEvent::decode(item)?.ts_ns),
        _ => None,
    }
}

impl Sinks {
    /// Samples and process events, in the order the kernel wrote them: an
    /// exec is seen before the samples of the program it started. With
    /// `split`, the first record stamped after it and all that follow are
    /// held for the next window.
    fn drain(&mut self, ring: &mut RingBuf<MapData>, split: Option<u64>) {
        while let Some(item) = ring.next() {
            if let Some(end) = split {
                if !self.held.is_empty() || stamp(&item).is_some_and(|ts| ts > end) {
                    self.held.push(item.to_vec());
                    continue;
                }
            }
            self.handle(&item);
        }
        if let Some(n) = self.noise.as_mut() {
            n.flush_if_many(self.names.kernel_mut());
        }
    }

    /// Handle the records held at the last window's end.
    fn replay(&mut self) {
        for item in std::mem::take(&mut self.held) {
            self.handle(&item);
        }
        if let Some(n) = self.noise.as_mut() {
            n.flush(self.names.kernel_mut());
        }
    }

    fn handle(&mut self, item: &[u8]) {
        {
            let profile = self.profile;
            match kind(item) {
                Some(EVENT_SAMPLE) => match SampleEvent::decode(item) {
                    Some(event) => {
                        if let Some(u) = self.unwinder.as_mut() {
                            u.count_frame_pointer_sample();
                        }
                        if let Some(n) = self.noise.as_mut() {
                            n.add(&event);
                        }
                        if profile {
                            let process = self.processes.current(event.pid);
                            self.stacks.add(&event, process);
                        }
                    }
                    None => self.malformed += 1,
                },
                Some(EVENT_SAMPLE_STACK) => match (decode_stack_record(item), self.unwinder.as_mut()) {
                    (Some(rec), Some(u)) => {
                        // The process table reads a new process before its
                        // first stack is unwound, while it still lives.
                        let process = self.processes.current(rec.sample.pid);
                        let event = u.apply(rec);
                        if let Some(n) = self.noise.as_mut() {
                            n.add(&event);
                        }
                        self.stacks.add(&event, process);
                    }
                    _ => self.malformed += 1,
                },
                Some(EVENT_EXEC | EVENT_FORK) => match ProcessEvent::decode(item) {
                    Some(event) => {
                        if let Some(u) = self.unwinder.as_mut() {
                            // New code (exec), or a pid that may be reused (fork).
                            u.forget(event.pid);
                        }
                        if let Some(n) = self.noise.as_mut() {
                            n.forget(event.pid);
                        }
                        if profile {
                            self.processes.on_event(&event);
                        }
                    }
                    None => self.malformed += 1,
                },
                _ => self.malformed += 1,
            }
        }
    }
}

/// Thread-state snapshots taken during the capture, and the stack map
/// whose user stacks they name (normalized while their process lives).
pub struct Snapshots {
    pub sampler: StateSampler,
    pub taker: SnapshotTaker,
    /// The hooks' blocking-stack map (deep tier).
    pub stacks: Option<StackResolver>,
    pub hz: u64,
    /// Complete user stacks of blocked threads (`--unwind dwarf|auto`).
    pub blocked: Option<BlockedStacks>,
    /// The continuous tier's stacks of blocked threads come from the
    /// snapshots alone: copy them for every process.
    pub copy_all: bool,
    /// Exiting threads' final counters (continuous tier).
    pub task_exits: Option<RingBuf<MapData>>,
    /// The iterator's memory of each thread, for threads to resend whole.
    pub seen: Option<aya::maps::HashMap<MapData, u32, profiler_common::SnapSeen>>,
}

impl Snapshots {
    /// Parse a snapshot and finish what must be done while its threads
    /// still are where it saw them. A bound snapshot returns its counters.
    fn handle(&mut self, taken: std::io::Result<Taken>, sinks: &mut Sinks) -> Option<CounterRead> {
        let taken = match taken {
            Ok(t) => t,
            Err(err) => {
                tracing::warn!(%err, "a thread-state snapshot failed");
                return None;
            }
        };
        let before = (self.sampler.stats.cpu_ns, self.blocked.as_ref().map_or(0, |b| b.stats.cpu_ns));
        let bound = self.sampler.parse(&taken);
        if let Some(stacks) = self.stacks.as_mut() {
            for (tgid, id) in std::mem::take(&mut self.sampler.new_user_stacks) {
                stacks.user(tgid, id, &mut sinks.stacks);
            }
        }
        let pending = self.sampler.pending_unwinds();
        if let (Some(stacks), Some(u)) = (self.blocked.as_mut(), sinks.unwinder.as_mut()) {
            stacks.start_snapshot();
            for t in &pending {
                let outcome = match self.copy_all || !u.walks_with_frame_pointers(t.tgid) {
                    false => crate::blocked_stacks::Unwound::NotSelected,
                    // Over this snapshot's budget: left for the next ones.
                    true if stacks.budget_spent() => stacks.defer(),
                    true => stacks.stack_of(t, &mut u.unwinder, &mut sinks.stacks),
                };
                self.sampler.unwound(t.tid, outcome);
            }
            stacks.finish_snapshot(|tid| self.sampler.is_live(tid));
        }
        for (key, frames, n) in std::mem::take(&mut self.sampler.blocked_counts) {
            if let Some(stacks) = self.blocked.as_mut() {
                stacks.count(key, frames.as_deref(), n);
            }
        }
        tracing::debug!(
            read_us = taken.cpu_ns / 1000,
            parse_us = (self.sampler.stats.cpu_ns - before.0 - taken.cpu_ns) / 1000,
            unwind_us = (self.blocked.as_ref().map_or(0, |b| b.stats.cpu_ns) - before.1) / 1000,
            pending = pending.len(),
            "snapshot handled"
        );
        self.taker.recycle(taken.bytes);
        // Processes first seen by a snapshot are read now, while they live.
        for tgid in std::mem::take(&mut self.sampler.new_processes) {
            sinks.processes.current(tgid);
        }
        for tid in std::mem::take(&mut self.sampler.resync) {
            if let Some(seen) = self.seen.as_mut() {
                let _ = seen.remove(&tid);
            }
        }
        bound
    }

    /// Take a bound snapshot now; periodic ones that arrive meanwhile are
    /// handled as usual.
    pub async fn bound(&mut self, sinks: &mut Sinks) -> Result<CounterRead> {
        self.taker.request_bound();
        while let Some(taken) = self.taker.taken.recv().await {
            if let Some(read) = self.handle(taken, sinks) {
                return Ok(read);
            }
        }
        Err(Error::SnapshotThreadStopped)
    }

    fn drain_exits(&mut self) {
        if let Some(ring) = self.task_exits.as_mut() {
            while let Some(item) = ring.next() {
                if let Some(e) = profiler_common::TaskExit::decode(&item) {
                    self.sampler.exited(e);
                }
            }
        }
    }
}

/// The cost governor and what it turns.
pub struct Governed {
    pub governor: Governor,
    /// The sampling program's rates (`RATES`).
    pub rates: aya::maps::Array<MapData, u32>,
}

/// Applies the governor's levels: snapshots through their thread, samples
/// through the sampling program's rates map.
struct Turn<'a> {
    taker: Option<&'a SnapshotTaker>,
    rates: &'a mut aya::maps::Array<MapData, u32>,
}

impl Apply for Turn<'_> {
    fn apply(&mut self, levels: Levels) {
        if let Some(t) = self.taker {
            t.set_stride(levels.snapshot_stride);
        }
        if let Err(err) = self.rates.set(profiler_common::RATE_SAMPLE_LEVEL, levels.sample, 0) {
            tracing::warn!(%err, "could not set the sampling rate");
        }
    }
}

/// The next snapshot, or never without snapshots.
async fn next_snapshot(snapshots: &mut Option<Snapshots>) -> Option<std::io::Result<Taken>> {
    match snapshots {
        Some(s) => s.taker.taken.recv().await,
        None => std::future::pending().await,
    }
}

/// Called on every drain tick with the time left and the samples of the
/// open window: the command line's progress line.
pub type OnProgress = Box<dyn FnMut(Duration, u64) + Send>;

/// How long to capture, whether each window opens and closes with a
/// snapshot of every thread's counters (the continuous tier), the
/// sampling frequency when samples are to be classified as noise (the
/// continuous tier's noise report), and what may end it early.
pub struct Plan {
    pub duration: Duration,
    pub bounds: bool,
    pub noise_sampling_hz: Option<u64>,
    /// Ends the capture early, as if its duration were up.
    pub cancel: crate::sys::cancel::Cancel,
    pub progress: Option<OnProgress>,
    /// Aggregate samples into stacks and read their processes (`false`:
    /// only the noise sampler sees them).
    pub profile: bool,
}

/// Why [`Collector::collect_until`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The window's end: the capture goes on.
    Boundary,
    /// The capture is over.
    End(EndReason),
}

/// What one window gathered, taken at its end (see [`Collector::close_window`]).
pub struct WindowTaken {
    /// On-CPU stacks of the window.
    pub stacks: Vec<crate::stacks::AggregatedStack>,
    /// Samples past the bound on sample times (the stacks then have none).
    pub untimed_samples: u64,
    /// The snapshots' sightings of the window.
    pub sampled: Option<crate::state_sampler::SampledWindow>,
    /// The samples classified as noise (continuous tier), with the
    /// sampler's counts over the window still to be filled in.
    pub noise: Option<crate::noise::sampled::SampledRaw>,
    /// Every thread's counters at the window's start and end (continuous
    /// tier); the closing one is the next window's opening.
    pub opening: Option<Arc<CounterRead>>,
    pub closing: Option<Arc<CounterRead>>,
    /// CLOCK_MONOTONIC ns of the window's end.
    pub end_ns: u64,
}

/// The capture loop over its sources: the sample ring, exit records,
/// snapshots, the cgroup filter and the governor. It runs window by window;
/// what it keeps between windows (processes, modules, address spaces,
/// unwind tables, kernel names) lives as long as it does.
pub struct Collector {
    ring: AsyncFd<RingBuf<MapData>>,
    pub exits: Option<RingBuf<MapData>>,
    pub snapshots: Option<Snapshots>,
    cgroup_filter: Option<CgroupFilter>,
    pub sinks: Sinks,
    governed: Option<Governed>,
    /// Final times and names of threads that exited (deep tier).
    pub exited: Exited,
    bounds: bool,
    cancel: crate::sys::cancel::Cancel,
    progress: Option<OnProgress>,
    duration: Duration,
    start: Instant,
    deadline: tokio::time::Instant,
    tick: tokio::time::Interval,
    /// The open window's opening bound (continuous tier).
    pub opening: Option<Arc<CounterRead>>,
    start_ns: u64,
}

impl Collector {
    /// Start collecting: the first window opens now (with a bound snapshot
    /// in the continuous tier).
    pub async fn start(
        ring: RingBuf<MapData>,
        exits: Option<RingBuf<MapData>>,
        mut snapshots: Option<Snapshots>,
        cgroup_filter: Option<CgroupFilter>,
        unwinder: Option<SampleUnwinder>,
        plan: Plan,
        governed: Option<Governed>,
    ) -> Result<Self> {
        let Plan { duration, bounds, noise_sampling_hz, cancel, progress, profile } = plan;
        // SAFETY: the ring buffer owns its map fd, which stays open and is not
        // replaced while the AsyncFd owns the ring buffer.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| Error::Io { what: "watch the sample ring buffer", source: e.into_parts().1 })?;
        let mut sinks = Sinks {
            stacks: StackAggregator::new(),
            processes: ProcessTable::new(),
            unwinder,
            noise: None,
            profile,
            names: crate::symbolize::Names::default(),
            malformed: 0,
            held: Vec::new(),
        };
        // The kernel's symbols are read now, in the cost governor's warm-up,
        // not at the first window's end.
        sinks.names.kernel_mut().prepare();
        // The continuous tier's window opens and closes with a snapshot of
        // every thread's counters.
        let opening = match (bounds, snapshots.as_mut()) {
            (true, Some(s)) => Some(Arc::new(s.bound(&mut sinks).await?)),
            _ => None,
        };
        // Noise samples count from the window's start.
        let start_ns = opening.as_ref().map_or_else(monotonic_ns, |o| o.at_ns);
        sinks.noise = noise_sampling_hz.map(|hz| NoiseSampler::new(hz, start_ns));
        let start = Instant::now();
        let mut tick = interval(Duration::from_millis(profiler_common::DRAIN_INTERVAL_MS));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ok(Self {
            ring,
            exits,
            snapshots,
            cgroup_filter,
            sinks,
            governed,
            exited: Exited::default(),
            bounds,
            cancel,
            progress,
            duration,
            start,
            deadline: tokio::time::Instant::from_std(start + duration),
            tick,
            opening,
            start_ns,
        })
    }

    /// CLOCK_MONOTONIC ns at which the first window opened.
    pub fn window_start_ns(&self) -> u64 {
        self.start_ns
    }

    /// When the capture started.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// Time since the capture started, at most its duration.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed().min(self.duration)
    }

    /// Collect until `until`, the capture's end, or a cancel.
    pub async fn collect_until(&mut self, until: Instant) -> Result<Cut> {
        let until = tokio::time::Instant::from_std(until).min(self.deadline);
        let deadline = self.deadline;
        loop {
            tokio::select! {
                guard = self.ring.readable_mut() => {
                    let mut guard = guard.map_err(|source| Error::Io { what: "wait for the sample ring buffer", source })?;
                    self.sinks.drain(guard.get_inner_mut(), None);
                    guard.clear_ready();
                }
                _ = sleep_until(until) => {
                    return Ok(if until >= deadline { Cut::End(EndReason::Elapsed) } else { Cut::Boundary });
                }
                _ = self.cancel.cancelled() => return Ok(Cut::End(EndReason::Interrupted)),
                Some(taken) = next_snapshot(&mut self.snapshots) => {
                    // Execs still in the ring must reach the unwinder before
                    // blocked threads of the new program are unwound.
                    self.sinks.drain(self.ring.get_mut(), None);
                    if let Some(s) = self.snapshots.as_mut() {
                        s.handle(taken, &mut self.sinks);
                    }
                }
                _ = self.tick.tick() => self.on_tick(),
            }
        }
    }

    fn on_tick(&mut self) {
        self.sinks.drain(self.ring.get_mut(), None);
        if let Some(exits) = self.exits.as_mut() {
            drain_exits(exits, &mut self.exited);
            for tid in std::mem::take(&mut self.exited.threads_gone) {
                if let Some(s) = self.snapshots.as_mut() {
                    s.sampler.gone(tid);
                }
            }
            for pid in std::mem::take(&mut self.exited.processes_gone) {
                if let Some(u) = self.sinks.unwinder.as_mut() {
                    u.forget(pid);
                }
            }
        }
        if let Some(s) = self.snapshots.as_mut() {
            s.drain_exits();
        }
        let snapshots = &self.snapshots;
        if let Some(g) = self.governed.as_mut() {
            // What snapshots cost: taking and parsing them, and copying
            // and unwinding the stacks of the blocked threads they find.
            let snapshot_cpu = snapshots
                .as_ref()
                .map_or(0, |s| s.sampler.stats.cpu_ns + s.blocked.as_ref().map_or(0, |b| b.stats.cpu_ns));
            let taken = snapshots.as_ref().map_or(0, |s| s.sampler.stats.snapshots);
            let mut turn = Turn { taker: snapshots.as_ref().map(|s| &s.taker), rates: &mut g.rates };
            g.governor.poll(snapshot_cpu, taken, &mut turn);
        }
        if let Some(filter) = self.cgroup_filter.as_mut() {
            filter.rescan_if_due();
        }
        if let Some(p) = self.progress.as_mut() {
            p(self.duration.saturating_sub(self.start.elapsed()), self.sinks.stacks.samples());
        }
    }

    /// Close the open window (with a bound snapshot in the continuous
    /// tier) and take what it gathered; the next window opens where this
    /// one ends. Samples stamped after the end wait for the next window.
    pub async fn close_window(&mut self) -> Result<WindowTaken> {
        let closing = match (self.bounds, self.snapshots.as_mut()) {
            (true, Some(s)) => Some(Arc::new(s.bound(&mut self.sinks).await?)),
            _ => None,
        };
        let end_ns = closing.as_ref().map_or_else(monotonic_ns, |c| c.at_ns);
        if let Some(s) = self.snapshots.as_mut() {
            s.drain_exits();
        }
        // Whatever the kernel wrote up to the end counts in this window.
        self.sinks.drain(self.ring.get_mut(), Some(end_ns));
        if let Some(exits) = self.exits.as_mut() {
            drain_exits(exits, &mut self.exited);
        }
        if self.sinks.malformed > 0 {
            tracing::warn!(malformed = self.sinks.malformed, "ignored malformed ring buffer records");
            self.sinks.malformed = 0;
        }
        let stacks = self.sinks.stacks.take_stacks();
        let untimed_samples = self.sinks.stacks.take_untimed();
        let sampled = self.snapshots.as_mut().map(|s| {
            let mut w = s.sampler.cut();
            for (key, frames, n) in std::mem::take(&mut w.blocked_counts) {
                if let Some(b) = s.blocked.as_mut() {
                    b.count(key, frames.as_deref(), n);
                }
            }
            w
        });
        let sinks = &mut self.sinks;
        let noise = sinks.noise.as_mut().map(|n| n.cut(end_ns, sinks.names.kernel_mut()));
        // The next window's samples.
        self.sinks.replay();
        let opening = std::mem::replace(&mut self.opening, closing.clone());
        Ok(WindowTaken { stacks, untimed_samples, sampled, noise, opening, closing, end_ns })
    }

    /// Between windows: forget what is kept of processes and threads the
    /// window's closing snapshot did not list. Returns how many entries.
    pub fn evict(&mut self, live_tids: &rustc_hash::FxHashSet<u32>, live_tgids: &rustc_hash::FxHashSet<u32>) -> u64 {
        let mut n = self.sinks.processes.evict(live_tgids) + self.sinks.stacks.evict(live_tgids);
        if let Some(u) = self.sinks.unwinder.as_mut() {
            n += u.evict(live_tgids);
        }
        if let Some(noise) = self.sinks.noise.as_mut() {
            n += noise.evict(live_tids);
        }
        if let Some(s) = self.snapshots.as_mut() {
            n += s.sampler.evict(live_tids);
        }
        n
    }

    /// Read the exit ring (deep tier) once more.
    pub fn drain_exits(&mut self) {
        if let Some(exits) = self.exits.as_mut() {
            drain_exits(exits, &mut self.exited);
        }
    }

    /// The cost governor's report so far.
    pub fn governor(&self) -> Option<GovernorReport> {
        self.governed.as_ref().map(|g| g.governor.report())
    }
}
