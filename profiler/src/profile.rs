//! The symbolized result of a capture: what every output format renders.

use std::{collections::BTreeMap, sync::Arc};

/// Where a frame's code lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Kernel,
    User,
}

/// One symbolized frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Function name, or `[unknown]` when the address could not be named.
    pub name: Arc<str>,
    pub kind: FrameKind,
    /// Index into [`Profile::modules`] for user frames whose module is known.
    pub module: Option<usize>,
    /// File offset within the module for user frames, the kernel address for
    /// kernel frames, the raw address for unknown user frames.
    pub address: u64,
}

impl Frame {
    pub fn is_unknown(&self) -> bool {
        &*self.name == UNKNOWN
    }
}

/// Name of a frame whose function could not be determined.
pub const UNKNOWN: &str = "[unknown]";

/// A binary or shared object that user frames point into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub build_id: Option<String>,
}

impl Module {
    /// The file name, for compact display.
    pub fn short_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// One unique (thread, stack) with the number of samples that hit it.
#[derive(Debug, Clone)]
pub struct Stack {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// Outermost frame first: user frames, then kernel frames.
    pub frames: Vec<Frame>,
    pub count: u64,
}

/// Exact off-CPU time of one thread in one state, blocked at one stack in
/// one syscall, woken by one waker.
#[derive(Debug, Clone)]
pub struct OffCpuStack {
    pub pid: u32,
    pub tid: u32,
    /// An off-CPU `STATE_*`.
    pub state: u32,
    /// System call number (`NO_SYSCALL`: not in one).
    pub syscall: i32,
    /// `NO_WAKER` when nobody woke it (preempted).
    pub waker_tid: u32,
    pub waker_comm: String,
    /// Outermost first: user frames, then kernel frames.
    pub frames: Vec<Frame>,
    /// The blocking stack could not be stored (stack map full).
    pub stack_lost: bool,
    pub ns: u64,
    /// Off-CPU intervals summed into `ns`.
    pub count: u64,
}

/// Events dropped during the capture, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// Thread-map insertions refused (map full): those threads are not tracked.
    pub threads: u64,
    /// Exited threads whose totals were lost (exit ring full).
    pub exits: u64,
    /// Blocking stacks not stored (stack-map bucket taken or full).
    pub stacks: u64,
    /// Off-CPU intervals not aggregated (off-CPU map full).
    pub off_cpu_aggregates: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.threads + self.exits + self.stacks + self.off_cpu_aggregates
    }
}

/// A bound that filled up during the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    pub what: &'static str,
    pub bound: u32,
    /// The option that raises the bound.
    pub flag: &'static str,
    /// Events dropped because of it.
    pub dropped: u64,
}

/// Snapshots that saw a thread in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StateSamples {
    pub running: u64,
    pub runnable: u64,
    pub sleeping: u64,
    pub disk: u64,
    pub other: u64,
}

/// Off-CPU time a thread spent blocked in one system call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyscallWait {
    pub name: String,
    pub nr: i32,
    pub off_cpu_ns: u64,
}

/// Off-CPU time that ended with a wakeup by one thread.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Waker {
    pub tid: u32,
    pub comm: String,
    pub off_cpu_ns: u64,
    pub wakeups: u64,
}

/// Exact off-CPU time of a thread by state, nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OffCpuNs {
    pub runnable: u64,
    pub sleeping: u64,
    pub disk: u64,
    pub other: u64,
}

/// What is known of one thread.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ThreadTotal {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub on_cpu_samples: u64,
    /// Exact on-CPU time in the window (absent with --no-off-cpu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_cpu_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_cpu_ns: Option<OffCpuNs>,
    /// Thread-state snapshots (absent with --no-off-cpu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_samples: Option<StateSamples>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top_syscalls: Vec<SyscallWait>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top_wakers: Vec<Waker>,
}

/// Everything a capture produced.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    pub duration_ns: u64,
    pub frequency_hz: u64,
    /// Samples received and aggregated.
    pub samples: u64,
    /// Samples the kernel took but could not hand over (ring buffer full).
    pub lost_samples: u64,
    pub modules: Vec<Module>,
    pub stacks: Vec<Stack>,
    /// Threads not tracked or whose totals were lost (map full, ring full).
    pub dropped_events: u64,
    /// `dropped_events` by cause.
    pub dropped: Dropped,
    /// Accounting window in CLOCK_MONOTONIC ns.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// Exact scheduler times by tid (empty with --no-off-cpu).
    pub thread_times: BTreeMap<u32, profiler_common::ThreadTimes>,
    /// Thread names for threads known only from their times.
    pub comms: BTreeMap<u32, String>,
    /// Off-CPU time by thread, state, syscall, stack and waker.
    pub off_cpu: Vec<OffCpuStack>,
    /// Thread-state snapshots per second (0: off).
    pub state_hz: u64,
    /// Per thread: tgid and the snapshots that saw it in each state.
    pub state_samples: BTreeMap<u32, (u32, StateSamples)>,
    pub state_sampler: crate::state_sampler::SamplerStats,
    /// Threads whose exact times were dropped: the hooks missed their switch-outs.
    pub untrusted_times: Vec<u32>,
    /// Bounds that filled up (each warned about once).
    pub limits_hit: Vec<LimitHit>,
}

impl Profile {
    /// Nanoseconds of CPU time one sample stands for.
    pub fn period_ns(&self) -> u64 {
        1_000_000_000 / self.frequency_hz.max(1)
    }

    /// Keep only what `--pid` and `--comm` select, exact times included.
    pub fn select(&mut self, pids: &[u32], comm: Option<&str>) {
        let comms = &self.comms;
        let keep = |tgid: u32, tid: u32| {
            (pids.is_empty() || pids.contains(&tgid))
                && comm.is_none_or(|c| comms.get(&tid).map(String::as_str) == Some(c))
        };
        self.thread_times.retain(|tid, t| keep(t.tgid, *tid));
        self.off_cpu.retain(|s| keep(s.pid, s.tid));
        self.state_samples.retain(|tid, (tgid, _)| keep(*tgid, *tid));
        let selected: std::collections::HashSet<u32> = self.state_samples.keys().copied().collect();
        if !pids.is_empty() || comm.is_some() {
            self.untrusted_times.retain(|tid| selected.contains(tid));
        }
    }

    /// The name of a thread known from snapshots or procfs.
    pub fn thread_name(&self, tid: u32) -> &str {
        self.comms.get(&tid).map(String::as_str).unwrap_or("")
    }

    /// Per-thread totals, busiest first. A thread that changed its name
    /// is listed under the name it had most often.
    pub fn threads(&self) -> Vec<ThreadTotal> {
        let mut by_tid: BTreeMap<u32, (u32, BTreeMap<&str, u64>)> = BTreeMap::new();
        for s in &self.stacks {
            *by_tid.entry(s.tid).or_insert((s.pid, BTreeMap::new())).1.entry(&s.comm).or_default() += s.count;
        }
        // Threads that never ran during a sample still have exact times and snapshots.
        for (&tid, t) in &self.thread_times {
            by_tid.entry(tid).or_insert((t.tgid, BTreeMap::new()));
        }
        for (&tid, (tgid, _)) in &self.state_samples {
            by_tid.entry(tid).or_insert((*tgid, BTreeMap::new()));
        }
        let mut waits = self.waits_by_thread();
        let mut out: Vec<ThreadTotal> = by_tid
            .into_iter()
            .map(|(tid, (pid, comms))| {
                let on_cpu_samples = comms.values().sum();
                let comm = comms
                    .iter()
                    .max_by_key(|(_, n)| **n)
                    .map(|(c, _)| c.to_string())
                    .or_else(|| self.comms.get(&tid).cloned())
                    .unwrap_or_default();
                let times = self.thread_times.get(&tid);
                let (top_syscalls, top_wakers) = waits.remove(&tid).unwrap_or_default();
                ThreadTotal {
                    pid,
                    tid,
                    comm,
                    on_cpu_samples,
                    on_cpu_ns: times.map(|t| t.on_cpu_ns),
                    off_cpu_ns: times.map(|t| {
                        let [runnable, sleeping, disk, other] = t.off_cpu_ns;
                        OffCpuNs { runnable, sleeping, disk, other }
                    }),
                    state_samples: (self.state_hz > 0)
                        .then(|| self.state_samples.get(&tid).map(|(_, s)| *s).unwrap_or_default()),
                    top_syscalls,
                    top_wakers,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.on_cpu_samples.cmp(&a.on_cpu_samples).then(b.on_cpu_ns.cmp(&a.on_cpu_ns)).then(a.tid.cmp(&b.tid))
        });
        out
    }

    /// Per thread, the syscalls it waited in and the threads that woke it,
    /// by off-CPU time, largest first, at most [`TOP_WAITS`] of each.
    fn waits_by_thread(&self) -> BTreeMap<u32, (Vec<SyscallWait>, Vec<Waker>)> {
        let mut syscalls: BTreeMap<u32, BTreeMap<i32, u64>> = BTreeMap::new();
        let mut wakers: BTreeMap<u32, BTreeMap<u32, (u64, u64, &str)>> = BTreeMap::new();
        for s in &self.off_cpu {
            if s.syscall >= 0 {
                *syscalls.entry(s.tid).or_default().entry(s.syscall).or_default() += s.ns;
            }
            if s.waker_tid != profiler_common::NO_WAKER {
                let w = wakers.entry(s.tid).or_default().entry(s.waker_tid).or_insert((0, 0, &s.waker_comm));
                w.0 += s.ns;
                // Each wakeup ends one sleeping/disk/other interval; the
                // runnable interval after it has the same waker.
                if s.state != profiler_common::STATE_RUNNABLE {
                    w.1 += s.count;
                }
            }
        }
        let mut out: BTreeMap<u32, (Vec<SyscallWait>, Vec<Waker>)> = BTreeMap::new();
        for (tid, by_nr) in syscalls {
            let mut v: Vec<SyscallWait> =
                by_nr.into_iter().map(|(nr, ns)| SyscallWait { name: syscall_name(nr), nr, off_cpu_ns: ns }).collect();
            v.sort_by(|a, b| b.off_cpu_ns.cmp(&a.off_cpu_ns).then(a.nr.cmp(&b.nr)));
            v.truncate(TOP_WAITS);
            out.entry(tid).or_default().0 = v;
        }
        for (tid, by_waker) in wakers {
            let mut v: Vec<Waker> = by_waker
                .into_iter()
                .map(|(wt, (ns, n, comm))| Waker { tid: wt, comm: comm.to_owned(), off_cpu_ns: ns, wakeups: n })
                .collect();
            v.sort_by(|a, b| b.off_cpu_ns.cmp(&a.off_cpu_ns).then(a.tid.cmp(&b.tid)));
            v.truncate(TOP_WAITS);
            out.entry(tid).or_default().1 = v;
        }
        out
    }
}

/// Names of the `STATE_*` values, in order.
pub const STATE_NAMES: [&str; 5] = ["running", "runnable", "sleeping", "disk", "other"];

/// How many syscalls and wakers each thread lists.
pub const TOP_WAITS: usize = 5;

/// Name of a system call number of this machine's architecture.
pub fn syscall_name(nr: i32) -> String {
    syscall_numbers::native::sys_call_name(nr.into()).map(str::to_owned).unwrap_or_else(|| format!("syscall_{nr}"))
}
