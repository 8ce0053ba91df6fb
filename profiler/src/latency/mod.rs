//! Latency histograms read from the kernel's sparse log-linear buckets
//! (`profiler_common::histogram`) into HdrHistograms: percentiles, misery
//! counts against `--slo` thresholds, text, JSON and an SVG plot.

pub mod histograms;
pub mod plot;
pub mod slo;
pub mod text;

pub use histograms::{build, Histograms, Kind, LatencyHistogram, SloResult};
pub use plot::svg;
pub use slo::{parse_slos, syscall_number, Slo};
pub use text::{format_ns, text};

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

/// `--slo`, parsed; none when the flag is absent. A bad spec is a usage error naming it.
/// Whether the syscall hooks must run: asked for, or an SLO on syscalls.
pub fn wants_syscall_hooks(asked: bool, slos: &[Slo]) -> bool {
    asked || slos.iter().any(|s| s.kind == histograms::Kind::Syscall)
}

pub fn parse_slos_arg(spec: Option<&str>) -> crate::Result<Vec<Slo>> {
    match spec {
        None => Ok(Vec::new()),
        Some(s) => parse_slos(s).map_err(|e| crate::Error::Usage(format!("--slo {s}: {e}"))),
    }
}
