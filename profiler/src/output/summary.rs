//! `summary.json`: totals and per-thread counts, for scripts and tests.
//! The schema is documented in docs/summary-json.md.

use std::io::Write;

use serde::Serialize;

use crate::profile::{Profile, ThreadTotal};

#[derive(Debug, Serialize)]
pub struct Summary {
    /// The tier that made the capture: `continuous` or `deep`.
    pub tier: crate::tier::Tier,
    /// What that tier cannot show (empty for deep).
    pub cannot_show: Vec<&'static str>,
    /// The cost governor: budget, rates in effect, measured cost, changes (absent without `--cpu-budget`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub governor: Option<crate::governor::GovernorReport>,
    pub duration_ns: u64,
    pub frequency_hz: u64,
    pub samples: u64,
    pub lost_samples: u64,
    pub dropped_events: u64,
    pub dropped: crate::profile::Dropped,
    /// Accounting window of the exact times, CLOCK_MONOTONIC ns.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// Thread-state snapshots per second (0 with --no-off-cpu).
    pub state_hz: u64,
    pub state_sampler: crate::state_sampler::SamplerStats,
    /// Threads whose exact times were left out: the hooks missed their switch-outs.
    pub untrusted_times: Vec<u32>,
    /// Cost and volume of process metadata lookups.
    pub enrichment: crate::enrich::processes::EnrichStats,
    /// How frames were named, and what could not be read.
    pub symbolization: crate::profile::SymbolizationStats,
    /// How user stacks were unwound (absent with `--unwind fp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unwind: Option<crate::unwinding::UnwindReport>,
    /// The collector's long-lived caches after the window: sizes and evictions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caches: Option<crate::model::stats::CacheReport>,
    pub group_by: Vec<crate::group::Dimension>,
    pub groups: Vec<crate::group::GroupTotal>,
    pub threads: Vec<ThreadTotal>,
    pub processes: Vec<crate::enrich::process::ProcessInfo>,
}

impl Summary {
    pub fn from_profile(profile: &Profile) -> Self {
        Self {
            tier: profile.tier,
            cannot_show: profile.tier.cannot_show().to_vec(),
            governor: profile.governor.clone(),
            duration_ns: profile.duration_ns,
            frequency_hz: profile.frequency_hz,
            samples: profile.samples,
            lost_samples: profile.lost_samples,
            dropped_events: profile.dropped_events,
            dropped: profile.dropped,
            window_start_ns: profile.window_start_ns,
            window_end_ns: profile.window_end_ns,
            state_hz: profile.state_hz,
            state_sampler: profile.state_sampler,
            untrusted_times: profile.untrusted_times.clone(),
            enrichment: profile.enrichment,
            symbolization: crate::profile::SymbolizationStats::of(profile),
            unwind: profile.unwind.clone(),
            caches: profile.caches.clone(),
            group_by: profile.group_by.0.clone(),
            groups: crate::group::groups(profile),
            threads: profile.threads(),
            processes: profile.processes.clone(),
        }
    }
}

pub fn write(profile: &Profile, w: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, &Summary::from_profile(profile))?;
    writeln!(w)
}
