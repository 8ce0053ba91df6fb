//! Latency histograms read from the kernel's sparse log-linear buckets
//! (`profiler_common::histogram`) into HdrHistograms: percentiles, misery
//! counts against `--slo` thresholds, text, JSON and an SVG plot.

pub mod histograms;
pub mod kind;
pub mod plot;
pub mod raw;
pub mod slo;
pub mod text;

pub use histograms::{build, Histograms, LatencyHistogram, SloResult};
pub use kind::Kind;
pub use plot::svg;
pub use raw::{HistogramNames, HistogramsRaw};
pub use slo::{parse_slos, syscall_number, Slo};
pub use text::{format_ns, text};

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
