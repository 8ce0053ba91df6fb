//! The capture loop: drain the sample ring buffer until the duration ends,
//! Ctrl-C or SIGTERM, updating the progress line.

use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use profiler_common::{ProcessEvent, SampleEvent, EVENT_EXEC, EVENT_FORK, EVENT_SAMPLE, EVENT_SAMPLE_STACK};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    time::{interval, sleep_until, MissedTickBehavior},
};

use crate::{
    blocked_stacks::BlockedStacks,
    enrich::{cgroup_filter::CgroupFilter, processes::ProcessTable},
    off_cpu::StackResolver,
    progress::Progress,
    sched_times::{drain_exits, monotonic_ns, Exited},
    stacks::StackAggregator,
    state_sampler::StateSampler,
    unwinding::{decode_stack_record, SampleUnwinder},
    Error, Result,
};

/// Why a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Elapsed,
    Interrupted,
}

/// Plain `#[repr(C)]` records that the programs write into ring buffers.
pub trait Record: Copy {}
impl Record for SampleEvent {}
impl Record for profiler_common::ThreadExit {}
impl Record for profiler_common::StateRecord {}
impl Record for ProcessEvent {}
impl Record for profiler_common::UserRegs {}

/// Decode one ring buffer record; `None` if it is too short to be a `T`.
pub fn decode<T: Record>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked; records are plain old data of integers
    // for which every bit pattern is valid; the read tolerates any alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The kind of a record of the sample ring (its first `u32`).
fn kind(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// What the ring buffer readers update.
pub struct Sinks {
    pub stacks: StackAggregator,
    pub processes: ProcessTable,
    /// With `--unwind dwarf|auto`.
    pub unwinder: Option<SampleUnwinder>,
    malformed: u64,
}

impl Sinks {
    /// Samples and process events, in the order the kernel wrote them: an
    /// exec is seen before the samples of the program it started.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            match kind(&item) {
                Some(EVENT_SAMPLE) => match decode::<SampleEvent>(&item) {
                    Some(event) => {
                        if let Some(u) = self.unwinder.as_mut() {
                            u.count_frame_pointer_sample();
                        }
                        let process = self.processes.current(event.pid);
                        self.stacks.add(&event, process);
                    }
                    None => self.malformed += 1,
                },
                Some(EVENT_SAMPLE_STACK) => match (decode_stack_record(&item), self.unwinder.as_mut()) {
                    (Some(rec), Some(u)) => {
                        // The process table reads a new process before its
                        // first stack is unwound, while it still lives.
                        let process = self.processes.current(rec.sample.pid);
                        let event = u.apply(rec);
                        self.stacks.add(&event, process);
                    }
                    _ => self.malformed += 1,
                },
                Some(EVENT_EXEC | EVENT_FORK) => match decode::<ProcessEvent>(&item) {
                    Some(event) => {
                        if let Some(u) = self.unwinder.as_mut() {
                            // New code (exec), or a pid that may be reused (fork).
                            u.forget(event.pid);
                        }
                        self.processes.on_event(&event);
                    }
                    None => self.malformed += 1,
                },
                _ => self.malformed += 1,
            }
        }
    }
}

/// What the capture loop gathered.
pub struct Captured {
    pub stacks: StackAggregator,
    pub processes: ProcessTable,
    pub unwinder: Option<SampleUnwinder>,
    pub elapsed: Duration,
    pub end: EndReason,
    /// Final times and names of threads that exited.
    pub exited: Exited,
    /// The exit ring, to drain once more after the window is closed.
    pub exits: Option<RingBuf<MapData>>,
    /// CLOCK_MONOTONIC ns when the loop stopped.
    pub end_ns: u64,
    pub snapshots: Option<Snapshots>,
}

/// Thread-state snapshots taken during the capture, and the stack map
/// whose user stacks they name (normalized while their process lives).
pub struct Snapshots {
    pub sampler: StateSampler,
    pub stacks: StackResolver,
    pub hz: u64,
    /// Complete user stacks of blocked threads (`--unwind dwarf|auto`).
    pub blocked: Option<BlockedStacks>,
}

impl Snapshots {
    fn take(&mut self, sinks: &mut Sinks) {
        if let Err(err) = self.sampler.snapshot() {
            tracing::warn!(%err, "a thread-state snapshot failed");
        }
        for (tgid, id) in std::mem::take(&mut self.sampler.new_user_stacks) {
            self.stacks.user(tgid, id, &mut sinks.stacks);
        }
        let blocked = std::mem::take(&mut self.sampler.blocked);
        if let (Some(stacks), Some(u)) = (self.blocked.as_mut(), sinks.unwinder.as_mut()) {
            stacks.start_snapshot();
            for t in &blocked {
                if !u.walks_with_frame_pointers(t.tgid) {
                    stacks.observe(t, &mut u.unwinder, &mut sinks.stacks);
                }
            }
            stacks.finish_snapshot();
        }
        self.sampler.blocked = blocked;
        self.sampler.blocked.clear();
        // Processes first seen by a snapshot are read now, while they live.
        for tgid in std::mem::take(&mut self.sampler.new_processes) {
            sinks.processes.current(tgid);
        }
    }
}

/// Read samples (and exited threads' totals, if tracked) for `duration`.
pub async fn run(
    ring: RingBuf<MapData>,
    mut exits: Option<RingBuf<MapData>>,
    mut snapshots: Option<Snapshots>,
    mut cgroup_filter: Option<CgroupFilter>,
    unwinder: Option<SampleUnwinder>,
    duration: Duration,
) -> Result<Captured> {
    let mut exited = Exited::default();
    // SAFETY: the ring buffer owns its map fd, which stays open and is not
    // replaced while the AsyncFd owns the ring buffer.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| Error::Read(e.to_string()))?;
    let mut sinks = Sinks { stacks: StackAggregator::new(), processes: ProcessTable::new(), unwinder, malformed: 0 };
    let mut progress = Progress::new();
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + duration);
    let mut tick = interval(Duration::from_millis(profiler_common::DRAIN_INTERVAL_MS));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let snapshot_period = Duration::from_nanos(1_000_000_000 / snapshots.as_ref().map_or(1, |s| s.hz.max(1)));
    let mut snapshot_tick = interval(snapshot_period);
    snapshot_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::Read(e.to_string()))?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let reason = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(|e| Error::Read(e.to_string()))?;
                sinks.drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = sleep_until(deadline) => break EndReason::Elapsed,
            _ = &mut ctrl_c => break EndReason::Interrupted,
            _ = sigterm.recv() => break EndReason::Interrupted,
            _ = snapshot_tick.tick(), if snapshots.is_some() => {
                // Execs still in the ring must reach the unwinder before
                // blocked threads of the new program are unwound.
                sinks.drain(ring.get_mut());
                if let Some(s) = snapshots.as_mut() {
                    s.take(&mut sinks);
                }
            }
            _ = tick.tick() => {
                sinks.drain(ring.get_mut());
                if let Some(exits) = exits.as_mut() {
                    drain_exits(exits, &mut exited);
                    for pid in std::mem::take(&mut exited.processes_gone) {
                        if let Some(u) = sinks.unwinder.as_mut() {
                            u.forget(pid);
                        }
                    }
                }
                if let Some(filter) = cgroup_filter.as_mut() {
                    filter.rescan_if_due();
                }
                progress.update(duration.saturating_sub(start.elapsed()), sinks.stacks.samples());
            }
        }
    };
    let end_ns = monotonic_ns();
    let elapsed = start.elapsed().min(duration);
    // Whatever the kernel wrote before we stopped still counts.
    sinks.drain(ring.get_mut());
    if let Some(exits) = exits.as_mut() {
        drain_exits(exits, &mut exited);
    }
    progress.finish();
    if sinks.malformed > 0 {
        tracing::warn!(malformed = sinks.malformed, "ignored malformed ring buffer records");
    }
    Ok(Captured {
        stacks: sinks.stacks,
        processes: sinks.processes,
        unwinder: sinks.unwinder,
        elapsed,
        end: reason,
        exited,
        exits,
        end_ns,
        snapshots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_records_are_rejected() {
        assert!(decode::<SampleEvent>(&[0u8; 16]).is_none());
        let bytes = vec![0u8; size_of::<SampleEvent>()];
        let ev = decode::<SampleEvent>(&bytes).unwrap();
        assert_eq!(ev.kernel_frames().len(), 0);
    }
}
