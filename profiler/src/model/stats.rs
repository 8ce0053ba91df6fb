//! What the collectors count about their own work (`*Stats`, reports of
//! how stacks were unwound), as plain data: the capture's summary embeds
//! them, the collectors fill them in. Filling them stays with the
//! collectors (`impl` blocks there).

use serde::{Deserialize, Serialize};

// From continuous.rs.
/// What the counters say of one thread beyond its times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterExtras {
    /// Context switches in the window: voluntary (it blocked) and
    /// involuntary (it was preempted).
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// Time waiting for block I/O, from delay accounting (`None` when
    /// `kernel.task_delayacct` is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_delay_ns: Option<u64>,
    /// Half-widths of the 95% confidence intervals of the sampled
    /// sleeping, disk and other times, ns.
    pub sampled_ci95_ns: [u64; 3],
}

// From state_sampler.rs.
/// Cost and volume of the snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplerStats {
    /// Periodic snapshots (the sampled states).
    pub snapshots: u64,
    /// Thread records read over all snapshots, window bounds included.
    pub records: u64,
    /// Of those, threads that had not changed: an 8-byte record and no work.
    #[serde(default)]
    pub unchanged: u64,
    /// CPU time of the snapshots: the kernel's iteration and BPF program
    /// (run inside read(), on the snapshot thread) plus parsing here.
    pub cpu_ns: u64,
    /// Of `cpu_ns`, the reads of the iterator: the kernel's iteration and
    /// the BPF program, on the snapshot thread.
    #[serde(default)]
    pub read_cpu_ns: u64,
    /// Snapshots that found the capture loop behind and were dropped.
    #[serde(default)]
    pub skipped: u64,
    /// Threads not followed because the live-thread table was full
    /// (`--max-threads`).
    #[serde(default)]
    pub threads_dropped: u64,
    /// Sum of the periodic snapshots' weights (periods of --state-hz they
    /// stand for) and of their squares: with the governor's changes of rate
    /// the sampled shares are weighted means, as sure as
    /// `effective_snapshots` = (sum)^2 / (sum of squares) equal ones.
    #[serde(default)]
    pub weight_sum: u64,
    #[serde(default)]
    pub weight_square_sum: u64,
    #[serde(default)]
    pub effective_snapshots: f64,
    /// Whether the snapshot thread ran at a real-time priority.
    #[serde(default)]
    pub realtime: bool,
}

impl SamplerStats {
    /// What was counted since `before` (an earlier reading of the same sampler).
    pub fn since(&self, before: &Self) -> Self {
        let weight_sum = self.weight_sum.saturating_sub(before.weight_sum);
        let weight_square_sum = self.weight_square_sum.saturating_sub(before.weight_square_sum);
        Self {
            snapshots: self.snapshots.saturating_sub(before.snapshots),
            records: self.records.saturating_sub(before.records),
            unchanged: self.unchanged.saturating_sub(before.unchanged),
            cpu_ns: self.cpu_ns.saturating_sub(before.cpu_ns),
            read_cpu_ns: self.read_cpu_ns.saturating_sub(before.read_cpu_ns),
            skipped: self.skipped.saturating_sub(before.skipped),
            threads_dropped: self.threads_dropped.saturating_sub(before.threads_dropped),
            weight_sum,
            weight_square_sum,
            effective_snapshots: (weight_sum as f64).powi(2) / weight_square_sum.max(1) as f64,
            realtime: self.realtime,
        }
    }
}

// From unwinding.rs.
/// Everything about how user stacks were unwound: `unwind` in summary.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnwindReport {
    /// `--unwind`: auto, fp or dwarf.
    pub method: String,
    /// `--user-stack-size` (0 with `fp`).
    pub user_stack_bytes: u32,
    /// How each on-CPU sample's user stack was obtained.
    pub samples: UnwindUse,
    /// Samples whose user stack copy the kernel could not read.
    pub copy_errors: u64,
    /// The unwinder: samples and blocked stacks unwound, why unwinds
    /// stopped, modules loaded and failed, time and cache memory.
    pub unwinder: UnwindStats,
    /// Blocked threads' stacks copied from user space by the snapshots.
    pub blocked: BlockedStackStats,
    /// Where the off-CPU time's user stacks came from.
    pub off_cpu: OffCpuUnwind,
}

// From unwinding.rs.
/// How the user stacks of a capture were obtained, for summary.json.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnwindUse {
    /// Samples that carried a stack copy.
    pub copied: u64,
    /// Of those, unwound from the copy to the outermost frame.
    pub complete: u64,
    /// Unwound from the copy, but the copy ended first and the kernel's
    /// frame-pointer walk continued from the same frame.
    pub spliced: u64,
    /// Unwound from the copy, stopped early (see `unwind.stops`).
    pub partial: u64,
    /// The copy was unreadable or gave nothing: the frame-pointer walk is used.
    pub fell_back: u64,
    /// Samples without a copy: frame pointers only (`fp`, or `auto` for
    /// processes in `fp_pids`), and kernel threads.
    pub frame_pointers: u64,
    /// Processes `auto` walks with frame pointers only.
    pub fp_pids: u64,
}

// From unwind/mod.rs.
/// What the unwinder did; `"unwind"` in summary.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnwindStats {
    /// Calls to [`Unwinder::unwind`].
    pub samples: u64,
    /// Addresses written, over all samples.
    pub frames: u64,
    pub stops: StopCounts,
    /// Modules whose unwind information was read (each file once).
    pub modules_loaded: u64,
    /// Modules that could not be used, each once (at most 1024 listed).
    pub modules_failed: Vec<ModuleFailure>,
    /// Heap bytes held: unwind tables of the modules, plus an estimate of
    /// the per-process state (rule cache, mappings).
    pub cache_bytes: u64,
    /// Time spent in [`Unwinder::unwind`], including first reads of maps
    /// and modules, ns.
    pub unwind_ns: u64,
    /// Reads of `/proc/PID/maps`.
    pub maps_reads: u64,
    /// Processes whose address space is held now.
    pub processes: u64,
}

// From unwind/mod.rs.
/// Unwinds by [`StopReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopCounts {
    pub complete: u64,
    pub stack_copy_end: u64,
    pub no_unwind_info: u64,
    pub bad_frame: u64,
    pub depth_limit: u64,
    pub not_mapped: u64,
}

// From unwind/module_cache.rs.
/// A module that could not be used for unwinding; its frames are unwound
/// with frame pointers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModuleFailure {
    pub path: String,
    /// One line.
    pub reason: String,
}

// From blocked_stacks.rs.
/// Cost and outcome of the copies, for summary.json.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Copies whose unwind stopped before the outermost frame: not used.
    pub incomplete: u64,
    /// Observations not copied because the snapshot had used its budget
    /// ([`COPIES_PER_SNAPSHOT`]).
    pub deferred: u64,
    /// CPU time spent copying and unwinding, ns.
    pub cpu_ns: u64,
}

// From off_cpu.rs.
/// Where off-CPU user stacks came from (`--unwind dwarf|auto`), ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// One long-lived cache of the collector: what it holds after a window
/// and what it has let go of so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheUse {
    /// Entries held when the window closed.
    pub held: u64,
    /// Entries dropped since the collector started (by exit, exec, age
    /// or bound).
    pub evicted: u64,
    /// Its bound, where it has one of its own (others follow the live
    /// processes and threads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<u64>,
}

/// The collector's caches after a window: `caches` in summary.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheReport {
    /// Windows the collector has closed, this one included.
    pub windows: u64,
    /// Per cache, by name.
    pub caches: std::collections::BTreeMap<String, CacheUse>,
    /// Resident memory of the process when the window closed, bytes.
    pub rss_bytes: u64,
    /// Of it, bytes held by live heap allocations, and bytes free in the
    /// heap but not given back (absent in captures of older versions).
    #[serde(default)]
    pub heap_in_use_bytes: u64,
    #[serde(default)]
    pub heap_free_bytes: u64,
}
