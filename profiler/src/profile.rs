//! The symbolized result of a capture: what every output format renders.

use std::{collections::BTreeMap, sync::Arc};

pub use crate::model::syscall::{syscall_name, syscall_name_of};
use crate::{
    enrich::{fd_target::BlockedOn, process::ProcessInfo, processes::EnrichStats},
    query::dimension::GroupBy,
};

/// Where a frame's code lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Kernel,
    User,
    /// Just-in-time compiled code, named from the process's perf map.
    Jit,
}

/// Source location of a frame, from DWARF.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceLine {
    /// The source file, with its directory when DWARF gives one.
    pub file: Arc<str>,
    /// 0 when unknown.
    pub line: u32,
}

impl SourceLine {
    /// The file name without its directory, as perf shows it.
    pub fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }
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
    /// kernel frames, the raw address for unknown user frames and JIT frames.
    pub address: u64,
    /// A function inlined into the frame before it (its caller), at the
    /// same address. Inlined frames follow their caller, innermost last.
    pub inlined: bool,
    /// Where in the source the frame was, when DWARF says.
    pub line: Option<SourceLine>,
}

impl Frame {
    /// A frame without inlining or source information.
    pub fn new(name: Arc<str>, kind: FrameKind, module: Option<usize>, address: u64) -> Self {
        Self { name, kind, module, address, inlined: false, line: None }
    }

    pub fn is_unknown(&self) -> bool {
        &*self.name == UNKNOWN
    }
}

/// Name of a frame whose function could not be determined.
pub const UNKNOWN: &str = "[unknown]";

/// A binary or shared object that user frames point into, and how well
/// it could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Module {
    pub path: String,
    pub build_id: Option<String>,
    /// The separate debug file its frames were named with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_file: Option<String>,
    /// Why it could not be read; its frames show as `module+0xOFFSET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// Why its debug information could not be read; its frames were named
    /// from its symbol table only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_info_unreadable: Option<String>,
}

impl Module {
    pub fn new(path: String, build_id: Option<String>) -> Self {
        Self { path, build_id, ..Self::default() }
    }

    /// The file name, for compact display.
    pub fn short_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// A module whose frames could not be named, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModuleProblem {
    pub path: String,
    pub reason: String,
}

/// What symbolization achieved (`summary.json`: `symbolization`), over
/// the stacks reported. Frame counts are of distinct addresses, not of
/// samples.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SymbolizationStats {
    /// Modules user frames point into.
    pub modules: u64,
    /// Modules that could not be read at all (permissions, gone, not an
    /// ELF file): their frames show as `module+0xOFFSET`.
    pub modules_unreadable: Vec<ModuleProblem>,
    /// Modules whose debug information (DWARF, separate debug file) could
    /// not be read: named from their symbol tables only.
    pub debug_info_unreadable: Vec<ModuleProblem>,
    /// Modules named with a separate debug file.
    pub debug_files: u64,
    /// User addresses (module, offset) named.
    pub frames_named: u64,
    /// Inlined function frames DWARF added at those addresses.
    pub frames_inlined: u64,
    /// User addresses in a module that no symbol covers (`module+0xOFFSET`).
    pub frames_unnamed: u64,
    /// User addresses (per process) outside any module named from the
    /// process's perf map (JIT code).
    pub frames_jit: u64,
    /// User addresses (per process) outside any module and not in a perf
    /// map: `[unknown]`.
    pub frames_unknown: u64,
    /// Wall time spent naming user and kernel frames at the end of the
    /// recording, ns (all processes, before any selection).
    pub ns: u64,
}

impl SymbolizationStats {
    pub fn of(profile: &Profile) -> Self {
        use std::collections::HashSet;
        let mut modules = HashSet::new();
        let (mut named, mut inlined, mut unnamed) = (HashSet::new(), HashSet::new(), HashSet::new());
        let (mut jit, mut unknown) = (HashSet::new(), HashSet::new());
        let stacks = profile.stacks.iter().map(|s| (s.pid, &s.frames));
        for (pid, frames) in stacks.chain(profile.off_cpu.iter().map(|s| (s.pid, &s.frames))) {
            for f in frames.iter() {
                match (f.kind, f.module) {
                    (FrameKind::Kernel, _) => {}
                    (FrameKind::Jit, _) => {
                        jit.insert((pid, f.address));
                    }
                    (FrameKind::User, Some(m)) => {
                        modules.insert(m);
                        if f.inlined {
                            inlined.insert((m, f.address, f.name.clone()));
                        } else if f.is_unknown() {
                            unnamed.insert((m, f.address));
                        } else {
                            named.insert((m, f.address));
                        }
                    }
                    (FrameKind::User, None) if f.is_unknown() => {
                        unknown.insert((pid, f.address));
                    }
                    (FrameKind::User, None) => {}
                }
            }
        }
        let mut modules: Vec<&Module> = modules.into_iter().filter_map(|m| profile.modules.get(m)).collect();
        modules.sort_by(|a, b| a.path.cmp(&b.path));
        let problems = |why: fn(&Module) -> Option<&String>| {
            modules
                .iter()
                .filter_map(|m| why(m).map(|r| ModuleProblem { path: m.path.clone(), reason: r.clone() }))
                .collect()
        };
        Self {
            modules: modules.len() as u64,
            modules_unreadable: problems(|m| m.unreadable.as_ref()),
            debug_info_unreadable: problems(|m| m.debug_info_unreadable.as_ref()),
            debug_files: modules.iter().filter(|m| m.debug_file.is_some()).count() as u64,
            frames_named: named.len() as u64,
            frames_inlined: inlined.len() as u64,
            frames_unnamed: unnamed.len() as u64,
            frames_jit: jit.len() as u64,
            frames_unknown: unknown.len() as u64,
            ns: profile.symbolize_ns,
        }
    }
}

/// A stack's frames, shared by the stacks that have the same ones (the
/// blocked stacks of a pool's idle threads are one stack many times).
pub type Frames = std::sync::Arc<[Frame]>;

/// One unique (process generation, thread, comm, syscall, stack) with
/// the number of samples that hit it.
#[derive(Debug, Clone)]
pub struct Stack {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// Index into [`Profile::processes`].
    pub process: u32,
    /// System call the thread was in when sampled (`NO_SYSCALL`: none or unknown).
    pub syscall: i32,
    /// Outermost frame first: user frames, then kernel frames.
    pub frames: Frames,
    pub count: u64,
    /// When each of its samples was taken (their weights sum to `count`).
    pub times: SampleTimes,
}

/// When a stack's samples were taken: Unix nanoseconds, each with the
/// weight the cost governor gave it (a sample kept for 2^level others).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleTimes {
    unix_ns: Vec<u64>,
    /// Parallel to `unix_ns`; empty while every weight is 1.
    weights: Vec<u32>,
}

impl SampleTimes {
    pub fn len(&self) -> usize {
        self.unix_ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.unix_ns.is_empty()
    }

    pub fn push(&mut self, unix_ns: u64, weight: u32) {
        let weight = weight.max(1);
        if weight != 1 || !self.weights.is_empty() {
            self.weights.resize(self.unix_ns.len(), 1);
            self.weights.push(weight);
        }
        self.unix_ns.push(unix_ns);
    }

    pub fn extend(&mut self, other: &SampleTimes) {
        for (t, w) in other.iter() {
            self.push(t, w);
        }
    }

    /// (Unix ns, weight) of each sample.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.unix_ns.iter().enumerate().map(|(i, &t)| (t, self.weights.get(i).copied().unwrap_or(1)))
    }

    /// The weights, all 1 unless the governor thinned the samples.
    pub fn has_weights(&self) -> bool {
        !self.weights.is_empty()
    }

    /// Ordered by time.
    pub fn sorted(&self) -> SampleTimes {
        let mut pairs: Vec<(u64, u32)> = self.iter().collect();
        pairs.sort_unstable();
        let mut out = SampleTimes::default();
        for (t, w) in pairs {
            out.push(t, w);
        }
        out
    }

    /// The weights' sum: the samples the times stand for.
    pub fn weight(&self) -> u64 {
        self.iter().map(|(_, w)| u64::from(w)).sum()
    }
}

/// Exact off-CPU time of one thread in one state, blocked at one stack in
/// one syscall, woken by one waker.
#[derive(Debug, Clone)]
pub struct OffCpuStack {
    pub pid: u32,
    pub tid: u32,
    /// The thread's name when last seen (one copy for all its lines).
    pub comm: std::sync::Arc<str>,
    /// Index into [`Profile::processes`] (the pid's latest generation).
    pub process: u32,
    /// An off-CPU `STATE_*`.
    pub state: u32,
    /// System call number (`NO_SYSCALL`: not in one).
    pub syscall: i32,
    /// `NO_WAKER` when nobody woke it (preempted).
    pub waker_tid: u32,
    pub waker_comm: Box<str>,
    /// Outermost first: user frames, then kernel frames.
    pub frames: Frames,
    /// The blocking stack could not be stored (stack map full).
    pub stack_lost: bool,
    pub ns: u64,
    /// Off-CPU intervals summed into `ns`.
    pub count: u64,
}

/// Events dropped during the capture, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dropped {
    /// Thread-map insertions refused (map full): those threads are not tracked.
    pub threads: u64,
    /// Exited threads whose totals were lost (exit ring full).
    pub exits: u64,
    /// Blocking stacks not stored (stack-map bucket taken or full).
    pub stacks: u64,
    /// Off-CPU intervals not aggregated (off-CPU map full).
    pub off_cpu_aggregates: u64,
    /// Fork and exec records lost (sample ring full): those processes'
    /// samples may carry their previous program's metadata.
    #[serde(default)]
    pub process_events: u64,
    /// Snapshot records of threads the snapshots' thread table had no room
    /// for (`--max-threads`), one per thread per snapshot: their time goes
    /// unaccounted until room frees.
    #[serde(default)]
    pub snapshot_threads: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.threads + self.exits + self.stacks + self.off_cpu_aggregates + self.process_events + self.snapshot_threads
    }

    /// Both counts added, cause by cause.
    pub fn plus(&self, o: &Self) -> Self {
        Self {
            threads: self.threads + o.threads,
            exits: self.exits + o.exits,
            stacks: self.stacks + o.stacks,
            off_cpu_aggregates: self.off_cpu_aggregates + o.off_cpu_aggregates,
            process_events: self.process_events + o.process_events,
            snapshot_threads: self.snapshot_threads + o.snapshot_threads,
        }
    }

    /// What was counted since `before`, an earlier reading of the same counters.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            threads: self.threads.saturating_sub(before.threads),
            exits: self.exits.saturating_sub(before.exits),
            stacks: self.stacks.saturating_sub(before.stacks),
            off_cpu_aggregates: self.off_cpu_aggregates.saturating_sub(before.off_cpu_aggregates),
            process_events: self.process_events.saturating_sub(before.process_events),
            snapshot_threads: self.snapshot_threads.saturating_sub(before.snapshot_threads),
        }
    }
}

/// A bound that filled up during the capture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimitHit {
    pub what: String,
    pub bound: u32,
    /// The option that raises the bound.
    pub flag: String,
    /// Events dropped because of it.
    pub dropped: u64,
}

impl LimitHit {
    pub fn new(what: &str, bound: u32, flag: &str, dropped: u64) -> Self {
        Self { what: what.to_owned(), bound, flag: flag.to_owned(), dropped }
    }
}

/// Snapshots that saw a thread in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// The innermost kernel function it blocked in, below the scheduler
    /// (like /proc/PID/wchan), from the blocking stack with the most time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_frame: Option<String>,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OffCpuNs {
    pub runnable: u64,
    pub sleeping: u64,
    pub disk: u64,
    pub other: u64,
}

/// What is known of one thread in one process generation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ThreadTotal {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// Index into `processes`.
    pub process: u32,
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_on: Vec<BlockedOn>,
    /// Continuous tier: context switches, block-I/O delay and how sure the
    /// sampled states are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<crate::model::stats::CounterExtras>,
}

/// Everything a capture produced.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Which tier made it.
    pub tier: crate::tier::Tier,
    /// What the cost governor (`--cpu-budget`) measured and did.
    pub governor: Option<crate::governor::GovernorReport>,
    /// Continuous tier: what the kernel's counters say beyond the times.
    pub counter_extras: BTreeMap<u32, crate::model::stats::CounterExtras>,
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
    pub comms: BTreeMap<u32, crate::model::text::Name>,
    /// Off-CPU time by thread, state, syscall, stack and waker.
    pub off_cpu: Vec<OffCpuStack>,
    /// Thread-state snapshots per second (0: off).
    pub state_hz: u64,
    /// Per thread: tgid and the snapshots that saw it in each state.
    pub state_samples: BTreeMap<u32, (u32, StateSamples)>,
    pub state_sampler: crate::model::stats::SamplerStats,
    /// Threads whose exact times were dropped: the hooks missed their switch-outs.
    pub untrusted_times: Vec<u32>,
    /// Bounds that filled up (each warned about once).
    pub limits_hit: Vec<LimitHit>,
    /// Process generations: what every sample belongs to.
    pub processes: Vec<ProcessInfo>,
    /// Per tid, the generation its exact times, snapshots and off-CPU
    /// time are attributed to (its process's latest).
    pub thread_process: BTreeMap<u32, u32>,
    /// Per tid, what snapshots saw it blocked on.
    pub blocked_on: BTreeMap<u32, Vec<BlockedOn>>,
    pub enrichment: EnrichStats,
    /// Machine architecture the capture was taken on (`std::env::consts::ARCH`).
    pub arch: String,
    /// How reports are sliced.
    pub group_by: GroupBy,
    /// Reports show the source file and line of user frames (`--lines`).
    pub lines: bool,
    /// Wall time symbolization took at the end of the recording, ns.
    pub symbolize_ns: u64,
    /// How user stacks were unwound (`None`: `--unwind fp`).
    pub unwind: Option<crate::model::stats::UnwindReport>,
    /// The collector's long-lived caches after the window (not in a
    /// re-rendered capture).
    pub caches: Option<crate::model::stats::CacheReport>,
}

impl Profile {
    /// Nanoseconds of CPU time one sample stands for.
    pub fn period_ns(&self) -> u64 {
        1_000_000_000 / self.frequency_hz.max(1)
    }

    /// Keep only what the selection picks, exact times included.
    pub fn select(&mut self, sel: &Selection) {
        if sel.is_empty() {
            return;
        }
        let processes = &self.processes;
        let process = |id: Option<u32>| id.and_then(|id| processes.get(id as usize));
        let comms = &self.comms;
        let thread_process = &self.thread_process;
        let keep_thread = |tgid: u32, tid: u32| {
            let comm = comms.get(&tid).map_or("", |c| &**c);
            sel.matches(process(thread_process.get(&tid).copied()), tgid, comm)
        };
        let running = profiler_common::STATE_RUNNING;
        self.stacks
            .retain(|s| sel.keeps_stack(running, s.syscall) && sel.matches(process(Some(s.process)), s.pid, &s.comm));
        self.off_cpu
            .retain(|s| sel.keeps_stack(s.state, s.syscall) && sel.matches(process(Some(s.process)), s.pid, &s.comm));
        self.thread_times.retain(|tid, t| keep_thread(t.tgid, *tid));
        let times = &self.thread_times;
        self.counter_extras.retain(|tid, _| times.contains_key(tid));
        self.state_samples.retain(|tid, (tgid, _)| keep_thread(*tgid, *tid));
        let selected: std::collections::HashSet<u32> =
            self.state_samples.keys().chain(self.thread_times.keys()).copied().collect();
        self.untrusted_times.retain(|tid| selected.contains(tid));
        self.blocked_on.retain(|tid, _| selected.contains(tid));
        self.samples = self.stacks.iter().map(|s| s.count).sum();
    }

    /// The name of a thread known from snapshots or procfs.
    pub fn thread_name(&self, tid: u32) -> &str {
        self.comms.get(&tid).map_or("", |c| &**c)
    }

    /// A process generation by id.
    pub fn process(&self, id: u32) -> Option<&ProcessInfo> {
        self.processes.get(id as usize)
    }

    /// Per-thread totals (one entry per thread and process generation),
    /// busiest first. A thread that changed its name within a generation
    /// is listed under the name it had most often.
    pub fn threads(&self) -> Vec<ThreadTotal> {
        type Entry<'a> = (u32, BTreeMap<&'a str, u64>);
        let mut by_thread: BTreeMap<(u32, u32), Entry> = BTreeMap::new();
        for s in &self.stacks {
            let e = by_thread.entry((s.process, s.tid)).or_insert((s.pid, BTreeMap::new()));
            *e.1.entry(&s.comm).or_default() += s.count;
        }
        // Exact times, snapshots and waits belong to the thread's latest generation.
        let latest = |tid: u32| self.thread_process.get(&tid).copied().unwrap_or(u32::MAX);
        for (&tid, t) in &self.thread_times {
            by_thread.entry((latest(tid), tid)).or_insert((t.tgid, BTreeMap::new()));
        }
        for (&tid, (tgid, _)) in &self.state_samples {
            by_thread.entry((latest(tid), tid)).or_insert((*tgid, BTreeMap::new()));
        }
        let mut waits = self.waits_by_thread();
        let mut out: Vec<ThreadTotal> = by_thread
            .into_iter()
            .map(|((process, tid), (pid, comms))| {
                let on_cpu_samples = comms.values().sum();
                let comm = comms
                    .iter()
                    .max_by_key(|(_, n)| **n)
                    .map(|(c, _)| c.to_string())
                    .or_else(|| self.comms.get(&tid).map(|c| c.to_string()))
                    .unwrap_or_default();
                let is_latest = latest(tid) == process;
                let times = self.thread_times.get(&tid).filter(|_| is_latest);
                let (top_syscalls, top_wakers) =
                    if is_latest { waits.remove(&tid).unwrap_or_default() } else { Default::default() };
                ThreadTotal {
                    pid,
                    tid,
                    comm,
                    process,
                    on_cpu_samples,
                    on_cpu_ns: times.map(|t| t.on_cpu_ns),
                    off_cpu_ns: times.map(|t| {
                        let [runnable, sleeping, disk, other] = t.off_cpu_ns;
                        OffCpuNs { runnable, sleeping, disk, other }
                    }),
                    state_samples: (self.state_hz > 0 && is_latest)
                        .then(|| self.state_samples.get(&tid).map(|(_, s)| *s).unwrap_or_default()),
                    top_syscalls,
                    top_wakers,
                    blocked_on: if is_latest { self.blocked_on.get(&tid).cloned().unwrap_or_default() } else { vec![] },
                    counters: self.counter_extras.get(&tid).filter(|_| is_latest).copied(),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.on_cpu_samples
                .cmp(&a.on_cpu_samples)
                .then(b.on_cpu_ns.cmp(&a.on_cpu_ns))
                .then(a.tid.cmp(&b.tid))
                .then(a.process.cmp(&b.process))
        });
        out
    }

    /// Per thread, the syscalls it waited in and the threads that woke it,
    /// by off-CPU time, largest first, at most [`TOP_WAITS`] of each.
    fn waits_by_thread(&self) -> BTreeMap<u32, (Vec<SyscallWait>, Vec<Waker>)> {
        let mut syscalls: BTreeMap<u32, BTreeMap<i32, u64>> = BTreeMap::new();
        // Per (thread, syscall): the blocking stack with the most time.
        let mut deepest: BTreeMap<(u32, i32), (u64, Option<&str>)> = BTreeMap::new();
        let mut wakers: BTreeMap<u32, BTreeMap<u32, (u64, u64, &str)>> = BTreeMap::new();
        for s in &self.off_cpu {
            if s.syscall >= 0 {
                *syscalls.entry(s.tid).or_default().entry(s.syscall).or_default() += s.ns;
                let best = deepest.entry((s.tid, s.syscall)).or_insert((0, None));
                if s.ns > best.0 && s.state != profiler_common::STATE_RUNNABLE {
                    *best = (s.ns, wait_channel(&s.frames));
                }
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
            let mut v: Vec<SyscallWait> = by_nr
                .into_iter()
                .map(|(nr, ns)| SyscallWait {
                    name: syscall_name(nr),
                    nr,
                    off_cpu_ns: ns,
                    kernel_frame: deepest.get(&(tid, nr)).and_then(|(_, f)| f.map(str::to_owned)),
                })
                .collect();
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

/// Kernel functions of the scheduler itself, skipped to find where a
/// thread blocked.
const SCHEDULER_FRAMES: &[&str] = &[
    "schedule",
    "__schedule",
    "schedule_timeout",
    "schedule_hrtimeout_range",
    "schedule_hrtimeout_range_clock",
    "schedule_preempt_disabled",
    "io_schedule",
    "io_schedule_timeout",
    "preempt_schedule",
    "preempt_schedule_common",
    "preempt_schedule_irq",
    "__cond_resched",
    "__traceiter_sched_switch",
];

/// The innermost kernel frame that is not the scheduler (frames are
/// outermost first).
pub fn wait_channel(frames: &[Frame]) -> Option<&str> {
    frames
        .iter()
        .rev()
        .take_while(|f| f.kind == FrameKind::Kernel)
        .map(|f| &*f.name)
        .find(|name| !SCHEDULER_FRAMES.contains(name) && !name.starts_with("bpf_") && *name != UNKNOWN)
}

/// What `--pid`, `--comm`, `--cgroup` and `--container` select (and the
/// agent's queries, which also select by unit, pod, state and syscall).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub pids: Vec<u32>,
    pub comm: Option<String>,
    /// Prefix of a cgroup path (v2, or any v1 hierarchy).
    pub cgroup: Option<String>,
    /// Prefix of a container id.
    pub container: Option<String>,
    /// A systemd unit or slice, exactly.
    pub unit: Option<String>,
    /// Prefix of a Kubernetes pod uid.
    pub pod: Option<String>,
    /// Stacks in this state (a `STATE_*`; on-CPU stacks are `running`).
    /// Thread times stay whole: a thread has all its states.
    pub state: Option<u32>,
    /// Stacks in this system call.
    pub syscall: Option<i32>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
            && self.comm.is_none()
            && self.cgroup.is_none()
            && self.container.is_none()
            && self.unit.is_none()
            && self.pod.is_none()
            && self.state.is_none()
            && self.syscall.is_none()
    }

    /// Whether a stack in `state` and `syscall` is selected (thread aside).
    fn keeps_stack(&self, state: u32, syscall: i32) -> bool {
        self.state.is_none_or(|s| s == state) && self.syscall.is_none_or(|n| n == syscall)
    }

    /// Whether a thread `comm` of process `tgid` (whose metadata is `process`) is selected.
    pub fn matches(&self, process: Option<&ProcessInfo>, tgid: u32, comm: &str) -> bool {
        let placement = process.map(|p| &p.placement);
        (self.pids.is_empty() || self.pids.contains(&tgid))
            && self.comm.as_deref().is_none_or(|c| c == comm)
            && self.cgroup.as_deref().is_none_or(|prefix| {
                placement.is_some_and(|p| {
                    p.cgroup.as_deref().is_some_and(|c| c.starts_with(prefix))
                        || p.cgroup_v1.values().any(|c| c.starts_with(prefix))
                })
            })
            && self.container.as_deref().is_none_or(|prefix| {
                placement.and_then(|p| p.container.as_ref()).is_some_and(|c| c.id.starts_with(prefix))
            })
            && self.unit.as_deref().is_none_or(|u| {
                placement.is_some_and(|p| p.unit.as_deref() == Some(u) || p.slice.as_deref() == Some(u))
            })
            && self.pod.as_deref().is_none_or(|prefix| {
                placement.and_then(|p| p.pod.as_ref()).is_some_and(|pod| pod.uid.starts_with(prefix))
            })
    }
}
