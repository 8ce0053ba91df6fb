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

/// Exact off-CPU time of a thread by state, nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
    /// Accounting window in CLOCK_MONOTONIC ns.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// Exact scheduler times by tid (empty with --no-off-cpu).
    pub thread_times: BTreeMap<u32, profiler_common::ThreadTimes>,
    /// Thread names for threads known only from their times.
    pub comms: BTreeMap<u32, String>,
}

impl Profile {
    /// Nanoseconds of CPU time one sample stands for.
    pub fn period_ns(&self) -> u64 {
        1_000_000_000 / self.frequency_hz.max(1)
    }

    /// Per-thread totals, busiest first. A thread that changed its name
    /// is listed under the name it had most often.
    pub fn threads(&self) -> Vec<ThreadTotal> {
        let mut by_tid: BTreeMap<(u32, u32), BTreeMap<&str, u64>> = BTreeMap::new();
        for s in &self.stacks {
            *by_tid.entry((s.pid, s.tid)).or_default().entry(&s.comm).or_default() += s.count;
        }
        let mut out: Vec<ThreadTotal> = by_tid
            .into_iter()
            .map(|((pid, tid), comms)| {
                let total = comms.values().sum();
                let comm = comms.iter().max_by_key(|(_, n)| **n).map(|(c, _)| c.to_string()).unwrap_or_default();
                ThreadTotal { pid, tid, comm, on_cpu_samples: total, on_cpu_ns: None, off_cpu_ns: None }
            })
            .collect();
        // Threads that never ran during a sample still have exact times.
        let sampled: std::collections::HashSet<u32> = out.iter().map(|t| t.tid).collect();
        for (&tid, t) in &self.thread_times {
            if !sampled.contains(&tid) {
                let comm = self.comms.get(&tid).cloned().unwrap_or_default();
                out.push(ThreadTotal { pid: t.tgid, tid, comm, on_cpu_samples: 0, on_cpu_ns: None, off_cpu_ns: None });
            }
        }
        for thread in &mut out {
            if let Some(t) = self.thread_times.get(&thread.tid) {
                thread.on_cpu_ns = Some(t.on_cpu_ns);
                let [runnable, sleeping, disk, other] = t.off_cpu_ns;
                thread.off_cpu_ns = Some(OffCpuNs { runnable, sleeping, disk, other });
            }
        }
        out.sort_by(|a, b| {
            b.on_cpu_samples.cmp(&a.on_cpu_samples).then(b.on_cpu_ns.cmp(&a.on_cpu_ns)).then(a.tid.cmp(&b.tid))
        });
        out
    }
}
