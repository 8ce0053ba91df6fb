//! What the kernel's histogram map held at the end of a window, and the
//! names of its ids, before it is turned into percentiles.

use std::collections::BTreeMap;

use profiler_common::HistKey;

/// The kernel's histogram map as read at the end of a window.
#[derive(Debug, Clone, Default)]
pub struct HistogramsRaw {
    pub duration_ns: u64,
    /// Every (histogram, bucket) → count, and the `HIST_SUM_BUCKET` sums.
    pub entries: Vec<(HistKey, u64)>,
    /// Events not counted because the map was full.
    pub dropped: u64,
}

/// Names for histogram ids.
#[derive(Debug, Clone, Default)]
pub struct HistogramNames {
    /// tgid → process name (comm of its main thread).
    pub processes: BTreeMap<u32, String>,
    /// IRQ number → action name, from /proc/interrupts.
    pub irqs: BTreeMap<u32, String>,
    /// Architecture whose syscall table names syscall numbers (`std::env::consts::ARCH`).
    pub arch: String,
}
