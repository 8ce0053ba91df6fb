//! The thread that takes thread-state snapshots: it reads a fresh instance
//! of the task iterator at random moments, one in each period of
//! `--state-hz` (jittered, so that a periodic workload cannot alias with
//! the snapshots), and hands the bytes to the capture loop.
//!
//! It runs at a real-time priority (SCHED_FIFO 1) when it can: a snapshot
//! then starts the instant its timer fires, preempting whichever thread
//! runs on its CPU, and the iterator sees that thread as running (see
//! `thread_snapshot` in the eBPF crate). At a normal priority the snapshot
//! would wait for a CPU, and start preferably when a thread on it goes to
//! sleep: snapshots would see running threads less often than they run.
//!
//! Besides the periodic snapshots it takes the window's bound snapshots
//! on request, at once.

use std::{io::Read, os::fd::OwnedFd, sync::mpsc, time::Duration};

use crate::sys::{
    bpf::bpf_fd,
    clock::{clock_ns, monotonic_ns},
};

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_ITER_CREATE: libc::c_long = 33;
/// `enum bpf_attach_type`: a BPF iterator.
const BPF_TRACE_ITER: u32 = 28;

/// Our own fd of a BPF link, by id.
pub fn link_fd_by_id(id: u32) -> std::io::Result<OwnedFd> {
    bpf_fd(BPF_LINK_GET_FD_BY_ID, &mut [id, 0, 0, 0])
}

/// A link of the task iterator `prog` that visits the threads of process
/// `pid` only (`bpf_iter_link_info.task.pid`): with `--pid`, a snapshot
/// then lasts microseconds, not the time to visit every task on the host,
/// and it reads the selected threads right after it preempted its CPU.
pub fn process_iterator_link(prog: std::os::fd::BorrowedFd<'_>, pid: u32) -> std::io::Result<OwnedFd> {
    /// `struct bpf_attr`'s `link_create` with `iter_info`.
    #[repr(C)]
    struct LinkCreate {
        prog_fd: u32,
        target_fd: u32,
        attach_type: u32,
        flags: u32,
        iter_info: u64,
        iter_info_len: u32,
        _pad: u32,
    }
    // `union bpf_iter_link_info`'s `task`: tid, pid, pid_fd (16 bytes with the union's padding).
    let info: [u32; 4] = [0, pid, 0, 0];
    let mut attr = LinkCreate {
        prog_fd: std::os::fd::AsRawFd::as_raw_fd(&prog) as u32,
        target_fd: 0,
        attach_type: BPF_TRACE_ITER,
        flags: 0,
        iter_info: info.as_ptr() as u64,
        iter_info_len: size_of_val(&info) as u32,
        _pad: 0,
    };
    bpf_fd(BPF_LINK_CREATE, &mut attr)
}

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One of `--state-hz`: its sightings are the sampled states.
    Periodic,
    /// A window bound: its counters open or close the window.
    Bound,
}

/// One snapshot's bytes and when it was taken.
#[derive(Debug)]
pub struct Taken {
    pub kind: Kind,
    pub bytes: Vec<u8>,
    /// CLOCK_MONOTONIC ns before and after the read.
    pub start_ns: u64,
    pub end_ns: u64,
    /// CPU time of the read (the kernel's iteration and the BPF program).
    pub cpu_ns: u64,
    /// Periods of `--state-hz` this snapshot stands for: the stride while the
    /// cost governor takes one snapshot in `stride` periods.
    pub weight: u32,
    /// It lists unchanged threads too (heads only): window bounds, and
    /// every [`FULL_EVERY`]th periodic snapshot, to learn who is gone.
    pub full: bool,
}

/// One periodic snapshot in this many lists every thread.
pub const FULL_EVERY: u64 = 16;

impl Taken {
    /// The instant the snapshot stands for.
    pub fn at_ns(&self) -> u64 {
        self.start_ns + (self.end_ns - self.start_ns) / 2
    }
}

enum Command {
    Bound,
    Stride(u32),
}

/// The snapshot thread; dropping it stops the thread.
pub struct SnapshotTaker {
    commands: Option<mpsc::Sender<Command>>,
    /// Buffers handed back for the next snapshots.
    recycle: mpsc::Sender<Vec<u8>>,
    pub taken: tokio::sync::mpsc::Receiver<std::io::Result<Taken>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Whether it got its real-time priority.
    pub realtime: bool,
}

/// Snapshots waiting for the capture loop; more are skipped (counted).
const QUEUE: usize = 4;

/// Largest stride the governor may set: one snapshot in 1024 periods.
pub const MAX_SNAPSHOT_STRIDE: u32 = 1024;

impl SnapshotTaker {
    /// Start taking `hz` snapshots a second through the iterator `links`
    /// (one snapshot reads them all in turn), whose config array
    /// (`SNAP_CONFIG`) says whether to list every thread.
    pub fn start(
        links: Vec<OwnedFd>,
        config: aya::maps::Array<aya::maps::MapData, u32>,
        hz: u64,
    ) -> std::io::Result<Self> {
        let (commands, command_rx) = mpsc::channel();
        let (tx, taken) = tokio::sync::mpsc::channel(QUEUE);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (recycle, buffers) = mpsc::channel();
        let thread = std::thread::Builder::new().name("tp-snapshot".into()).spawn(move || {
            let realtime = make_realtime();
            let _ = ready_tx.send(realtime);
            run(&links, config, hz, &command_rx, &buffers, &tx);
        })?;
        let realtime = ready_rx.recv().unwrap_or(false);
        Ok(Self { commands: Some(commands), recycle, taken, thread: Some(thread), realtime })
    }

    /// Ask for a bound snapshot now; it arrives on `taken` like the others.
    pub fn request_bound(&self) {
        if let Some(c) = &self.commands {
            let _ = c.send(Command::Bound);
        }
    }

    /// Hand a snapshot's buffer back for reuse.
    pub fn recycle(&self, bytes: Vec<u8>) {
        let _ = self.recycle.send(bytes);
    }

    /// Take one snapshot every `stride` periods of `--state-hz` from the
    /// next period on (the cost governor).
    pub fn set_stride(&self, stride: u32) {
        if let Some(c) = &self.commands {
            let _ = c.send(Command::Stride(stride.clamp(1, MAX_SNAPSHOT_STRIDE)));
        }
    }
}

impl Drop for SnapshotTaker {
    fn drop(&mut self) {
        // Closing the command channel ends the thread's wait at once.
        self.commands.take();
        self.taken.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SCHED_FIFO at the lowest real-time priority, for this thread only.
fn make_realtime() -> bool {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: valid parameter; pid 0 is the calling thread.
    let ok = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
    if !ok {
        tracing::warn!(
            err = %std::io::Error::last_os_error(),
            "snapshots run at a normal priority: they may see running threads less often than they run"
        );
    }
    ok
}

/// A small xorshift generator: the jitter needs no cryptographic quality.
struct Jitter(u64);

impl Jitter {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            self.0 % n
        }
    }
}

/// When periodic snapshots are taken: one at a random instant of each
/// period (`stride` periods of `--state-hz`), so that they sample time
/// uniformly.
struct Schedule {
    base: u64,
    stride: u32,
    /// Start of the current period.
    slot: u64,
    /// When its snapshot is due.
    next: u64,
    jitter: Jitter,
}

impl Schedule {
    fn new(base: u64, now: u64) -> Self {
        let mut jitter = Jitter(now | 1);
        Self { base, stride: 1, slot: now, next: now + jitter.below(base), jitter }
    }

    fn period(&self) -> u64 {
        self.base * u64::from(self.stride)
    }

    /// The periodic snapshot due was taken at `now`: the next falls
    /// anywhere in the next period. A late wake-up skips the periods it
    /// missed.
    fn taken(&mut self, now: u64) {
        let period = self.period();
        self.slot += period;
        if self.slot + period <= now {
            self.slot = now - (now - self.slot) % period;
        }
        self.next = self.slot + self.jitter.below(period);
    }

    /// The cost governor set a new stride at `now`. A faster rate starts
    /// now, not after the wait the slower one had drawn (up to two of its
    /// periods: 20 s at the floor). The time since the last period began
    /// goes unsampled rather than sampled at a weight it was not drawn for.
    fn set_stride(&mut self, stride: u32, now: u64) {
        self.stride = stride;
        let period = self.period();
        if self.next > now + period {
            self.slot = now;
            self.next = now + self.jitter.below(period);
        }
    }
}

fn run(
    links: &[OwnedFd],
    mut config: aya::maps::Array<aya::maps::MapData, u32>,
    hz: u64,
    commands: &mpsc::Receiver<Command>,
    buffers: &mpsc::Receiver<Vec<u8>>,
    out: &tokio::sync::mpsc::Sender<std::io::Result<Taken>>,
) {
    let mut schedule = Schedule::new(1_000_000_000 / hz.max(1), monotonic_ns());
    let mut periodic = 0u64;
    loop {
        let now = monotonic_ns();
        let kind = match commands.recv_timeout(Duration::from_nanos(schedule.next.saturating_sub(now))) {
            Ok(Command::Bound) => Kind::Bound,
            Ok(Command::Stride(s)) => {
                schedule.set_stride(s, monotonic_ns());
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                schedule.taken(monotonic_ns());
                Kind::Periodic
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let full = match kind {
            Kind::Bound => true,
            Kind::Periodic => {
                periodic += 1;
                periodic % FULL_EVERY == 1
            }
        };
        if let Err(err) = config.set(profiler_common::SNAP_CONFIG_FULL, u32::from(full), 0) {
            tracing::warn!(%err, "could not set the snapshot's config; it may list too few threads");
        }
        let mut bytes = buffers.try_recv().unwrap_or_else(|_| Vec::with_capacity(1 << 16));
        bytes.clear();
        let taken = take(links, kind, bytes, schedule.stride, full);
        if kind == Kind::Bound {
            // A window bound is never skipped.
            if out.blocking_send(taken).is_err() {
                return;
            }
            continue;
        }
        match out.try_send(taken) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!("the capture loop is behind: a snapshot was skipped");
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

fn take(links: &[OwnedFd], kind: Kind, mut bytes: Vec<u8>, weight: u32, full: bool) -> std::io::Result<Taken> {
    let cpu_before = clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
    let start_ns = monotonic_ns();
    for link in links {
        let fd = std::os::fd::AsRawFd::as_raw_fd(link) as u32;
        let iter = bpf_fd(BPF_ITER_CREATE, &mut [fd, 0, 0, 0])?;
        std::fs::File::from(iter).read_to_end(&mut bytes)?;
    }
    let end_ns = monotonic_ns();
    let cpu_ns = clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(cpu_before);
    Ok(Taken { kind, bytes, start_ns, end_ns, cpu_ns, weight, full })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faster_rate_takes_effect_at_once_and_a_slower_one_from_the_next_period() {
        let base = 50_000_000;
        let mut s = Schedule::new(base, 1_000);
        assert!(s.next < 1_000 + base);
        // The floor: one snapshot in 200 periods (10 s).
        s.set_stride(200, s.next);
        s.taken(s.next);
        let slow = s.next;
        assert!(slow >= s.slot && slow < s.slot + 200 * base);
        // Raised a second later: the next snapshot within one new period.
        let now = s.slot + 1_000_000_000;
        s.set_stride(4, now);
        assert!(s.next >= now && s.next < now + 4 * base, "next {} now {now}", s.next);
        // Lowered again: the snapshot already due stays due.
        let due = s.next;
        s.set_stride(100, now + 1);
        assert_eq!(s.next, due);
        // Snapshots then come one per period of the new stride, at most two periods apart.
        let mut at = s.next;
        for _ in 0..50 {
            s.taken(at);
            assert!(s.next > at && s.next - at < 2 * 100 * base);
            at = s.next;
        }
    }
}
