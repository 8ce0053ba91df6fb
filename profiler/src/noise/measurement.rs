//! One noise window's measurement, by tier.

use super::{continuous, raw::NoiseRaw};

/// What one noise window measured, by tier.
#[derive(Debug, Clone)]
pub enum Measurement {
    /// The hooks' maps, and the latency histograms with names for their ids.
    Deep { noise: NoiseRaw, histograms: crate::latency::HistogramsRaw, names: crate::latency::HistogramNames },
    /// procfs and on-CPU samples.
    Continuous(continuous::ContinuousRaw),
}
