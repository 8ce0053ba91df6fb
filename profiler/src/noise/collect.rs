//! Reading a noise window out of the kernel maps and procfs.

use std::{collections::BTreeMap, ops::Range};

use profiler_common::Counter;

use super::{NoiseDropped, NoiseRaw};
use crate::{bpf::Loaded, latency::HistogramsRaw, Result};

/// What the caller knows of the window besides the maps.
pub struct Window {
    /// CLOCK_MONOTONIC ns of its start and end.
    pub ns: Range<u64>,
    pub threshold_ns: u64,
    /// CPUs to report.
    pub cpus: Vec<u32>,
    pub victim_pids: Vec<u32>,
    /// /proc/interrupts, /proc/softirqs and /proc/stat at the start and the end.
    pub kernel_before: KernelCounts,
    pub kernel_after: KernelCounts,
}

/// The kernel's own interrupt and softirq counters and per-CPU interrupt
/// and steal times at one moment.
#[derive(Debug, Clone, Default)]
pub struct KernelCounts {
    pub interrupts: BTreeMap<String, BTreeMap<u32, u64>>,
    pub softirqs: BTreeMap<String, BTreeMap<u32, u64>>,
    /// /proc/stat's hard IRQ, softirq and steal time per CPU, since boot.
    pub stat: BTreeMap<u32, super::proc_counts::CpuTimes>,
}

impl KernelCounts {
    pub fn now() -> Self {
        Self {
            interrupts: super::proc_counts::interrupt_counts(),
            softirqs: super::proc_counts::softirq_counts(),
            stat: super::proc_counts::cpu_times(),
        }
    }
}

/// Per-row, per-CPU growth of a counter table between two reads.
pub fn table_delta(
    before: &BTreeMap<String, BTreeMap<u32, u64>>,
    after: &BTreeMap<String, BTreeMap<u32, u64>>,
) -> BTreeMap<String, BTreeMap<u32, u64>> {
    after
        .iter()
        .map(|(row, a)| (row.clone(), super::proc_counts::delta(before.get(row).unwrap_or(&BTreeMap::new()), a)))
        .collect()
}

/// The noise window's raw data: per-CPU sources, victims, steal, names.
pub fn noise(loaded: &Loaded, window: Window) -> Result<NoiseRaw> {
    let victims = if window.victim_pids.is_empty() { Vec::new() } else { loaded.victims()? };
    // Victim threads and their processes' main threads, named now.
    let mut thread_names = BTreeMap::new();
    for (key, _) in &victims {
        for tid in [key.tid, key.tgid] {
            if let std::collections::btree_map::Entry::Vacant(slot) = thread_names.entry(tid) {
                if let Ok(comm) = std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", key.tgid)) {
                    slot.insert(comm.trim_end().to_owned());
                }
            }
        }
    }
    let steal_ns = super::proc_counts::times_delta(&window.kernel_before.stat, &window.kernel_after.stat)
        .into_iter()
        .map(|(cpu, t)| (cpu, t.steal_ns))
        .collect();
    Ok(NoiseRaw {
        duration_ns: window.ns.end.saturating_sub(window.ns.start),
        window_start_ns: window.ns.start,
        window_end_ns: window.ns.end,
        threshold_ns: window.threshold_ns,
        cpus: window.cpus,
        sources: loaded.noise_sources()?,
        victims,
        victim_pids: window.victim_pids,
        thread_names,
        irq_names: super::proc_counts::irq_names(),
        kernel_interrupts: table_delta(&window.kernel_before.interrupts, &window.kernel_after.interrupts),
        kernel_softirqs: table_delta(&window.kernel_before.softirqs, &window.kernel_after.softirqs),
        steal_ns,
        dropped: NoiseDropped {
            sources: loaded.counter(Counter::NoiseMapFull)?,
            victims: loaded.counter(Counter::VictimMapFull)?,
            histograms: loaded.counter(Counter::HistogramMapFull)?,
        },
        missing_hooks: loaded.missing_hooks.clone(),
    })
}

/// The latency histograms of the window.
pub fn histograms(loaded: &Loaded, window: &Range<u64>) -> Result<HistogramsRaw> {
    Ok(HistogramsRaw {
        duration_ns: window.end.saturating_sub(window.start),
        entries: loaded.histogram_entries()?,
        dropped: loaded.counter(Counter::HistogramMapFull)?,
    })
}

/// Names for the histograms' ids: processes (read now, while they live) and IRQ lines.
pub fn histogram_names(raw: &HistogramsRaw) -> crate::latency::HistogramNames {
    let mut processes = BTreeMap::new();
    for (key, _) in &raw.entries {
        if key.kind == profiler_common::HIST_RUNQ {
            processes.entry(key.id).or_insert_with(|| {
                std::fs::read_to_string(format!("/proc/{}/comm", key.id))
                    .map(|s| s.trim_end().to_owned())
                    .unwrap_or_default()
            });
        }
    }
    processes.retain(|_, name| !name.is_empty());
    crate::latency::HistogramNames {
        processes,
        irqs: super::proc_counts::irq_names(),
        arch: std::env::consts::ARCH.to_owned(),
    }
}
