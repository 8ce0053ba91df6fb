//! What the deep tier's hooks and procfs gave for one noise window, before
//! it is named and summed.

use std::collections::BTreeMap;

use profiler_common::{NoiseKey, NoiseStats, VictimKey};

/// Everything the kernel and procfs gave for one noise window, before it
/// is named and summed (see [`report::build`]).
#[derive(Debug, Clone, Default)]
pub struct NoiseRaw {
    /// Length of the accounting window.
    pub duration_ns: u64,
    /// Its bounds, CLOCK_MONOTONIC ns.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// `--threshold`: events shorter than this were not counted.
    pub threshold_ns: u64,
    /// CPUs to report (all online ones, or `--cpus`), ascending.
    pub cpus: Vec<u32>,
    /// (cpu, source, stats) for every CPU, also those not reported.
    pub sources: Vec<(u32, NoiseKey, NoiseStats)>,
    /// Victim view (`--pid`): losses of the selected processes' threads.
    pub victims: Vec<(VictimKey, NoiseStats)>,
    /// Processes of the victim view (`--pid`), empty without it.
    pub victim_pids: Vec<u32>,
    /// Thread names (tid → comm) of victim threads.
    pub thread_names: BTreeMap<u32, String>,
    /// IRQ number → action name, from /proc/interrupts.
    pub irq_names: BTreeMap<u32, String>,
    /// Hypervisor steal per CPU over the window, from /proc/stat (ns).
    pub steal_ns: BTreeMap<u32, u64>,
    /// What the kernel itself counted over the window: /proc/interrupts
    /// rows (`"36"`, `"LOC"`) and /proc/softirqs rows (`"NET_RX"`), per CPU.
    /// Compared with the hooks' counts to report events the hooks missed.
    pub kernel_interrupts: BTreeMap<String, BTreeMap<u32, u64>>,
    pub kernel_softirqs: BTreeMap<String, BTreeMap<u32, u64>>,
    /// Events the bounded maps could not hold.
    pub dropped: NoiseDropped,
    /// Hooks this kernel lacks (e.g. `irq_vectors:local_timer_entry` off x86);
    /// their sources are absent from the report.
    pub missing_hooks: Vec<String>,
}

/// Events not counted because a bounded map was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NoiseDropped {
    pub sources: u64,
    pub victims: u64,
    pub histograms: u64,
}
