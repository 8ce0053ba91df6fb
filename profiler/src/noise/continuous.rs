//! The continuous tier's noise report: no program on an interrupt, softirq
//! or switch path. Per CPU it gives what procfs keeps (hard IRQ, softirq
//! and steal time from /proc/stat; event counts per softirq vector and
//! interrupt row from /proc/softirqs and /proc/interrupts) and what the
//! on-CPU samples show (time per source, estimated, see [`super::sampled`]).
//! Every figure says where it comes from; what only the deep tier's hooks
//! can give is listed as absent ([`Tier::noise_cannot_show`]).

use std::{collections::BTreeMap, fmt::Write};

use serde::Serialize;

use super::{
    cpu_list::format_cpu_list,
    proc_counts::{CpuTimes, HardirqAccounting},
    report::{Ordered, SourceKind},
    sampled::{periods, Estimate, SampledRaw, SampledSource},
    table::human_ns,
};
use crate::tier::Tier;

/// Entries of [`ContinuousReport::top_sources`].
pub const TOP_SOURCES: usize = 10;

/// Everything one window gave, before it is summed (stored in the agent's
/// segments as JSON).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct ContinuousRaw {
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// CPUs to report, ascending.
    pub cpus: Vec<u32>,
    /// /proc/stat's hard IRQ, softirq and steal time per CPU: growth over
    /// the window, and cumulative at its end (to judge the irq column).
    pub stat: BTreeMap<u32, CpuTimes>,
    pub stat_since_boot: BTreeMap<u32, CpuTimes>,
    /// /proc/interrupts rows and /proc/softirqs rows per CPU, growth over the window.
    pub kernel_interrupts: BTreeMap<String, BTreeMap<u32, u64>>,
    pub kernel_softirqs: BTreeMap<String, BTreeMap<u32, u64>>,
    /// IRQ number → action name, from /proc/interrupts.
    pub irq_names: BTreeMap<u32, String>,
    pub sampled: SampledRaw,
}

impl ContinuousRaw {
    pub fn duration_ns(&self) -> u64 {
        self.window_end_ns.saturating_sub(self.window_start_ns)
    }

    /// Interrupts /proc/interrupts counted in the window, all rows and CPUs.
    fn interrupts(&self) -> u64 {
        self.kernel_interrupts.values().flat_map(|cpus| cpus.values()).sum()
    }

    pub fn hardirq_accounting(&self) -> HardirqAccounting {
        HardirqAccounting::judge(&self.stat_since_boot, self.interrupts())
    }
}

/// Where each group of figures comes from, one sentence each.
#[derive(Debug, Clone, Serialize)]
pub struct Origins {
    pub procfs_time: &'static str,
    pub procfs_counts: &'static str,
    pub sampled: &'static str,
}

const ORIGINS: Origins = Origins {
    procfs_time:
        "/proc/stat per CPU: growth of the irq, softirq and steal columns over the window (USER_HZ ticks as ns); \
                  the kernel's own accounting, in ns with CONFIG_IRQ_TIME_ACCOUNTING, else each scheduler tick charged \
                  to the context it interrupted",
    procfs_counts:
        "/proc/softirqs and /proc/interrupts per CPU: growth of each row over the window, exact event counts",
    sampled:
        "on-CPU samples (perf cpu-clock on every CPU) whose kernel stack shows softirq, interrupt or NMI context, \
              or that ran a kernel thread: samples x sampling period, with a 95% Wilson interval over the window's \
              sampler periods",
};

/// How the report's hard IRQ and softirq times are kept by this kernel.
#[derive(Debug, Clone, Serialize)]
pub struct Accounting {
    /// `accounted`, `not_accounted` or `unknown`.
    pub hardirq_time: HardirqAccounting,
    /// `exact` (ns, with hard IRQ time accounting) or `tick` (each tick
    /// charged wholly to the context it interrupted).
    pub softirq_time: &'static str,
    /// One sentence on both.
    pub note: String,
}

/// The sampler.
#[derive(Debug, Clone, Serialize)]
pub struct Sampling {
    pub frequency_hz: u64,
    pub period_ns: u64,
    /// Non-idle samples delivered in the window, on the reported CPUs.
    pub samples: u64,
    /// Idle-task samples the program dropped unread (since it was loaded).
    pub idle_samples: u64,
    /// Samples lost to a full ring buffer.
    pub lost_samples: u64,
    /// Samples whose thread was gone before it could be told kernel or user.
    pub threads_guessed: u64,
    /// Kernel frame names the bounded name cache dropped (looked up again).
    pub kernel_names_evicted: u64,
    /// `null`, or why the samples cover only some threads.
    pub restricted_to: Option<String>,
    /// What sampling cannot see, one sentence each.
    pub blind_spots: Vec<&'static str>,
}

const BLIND_SPOTS: [&str; 2] = [
    "hard IRQ and NMI handlers run with interrupts off, where the cpu-clock sampler (an hrtimer interrupt) cannot \
     land: their sampled time is near zero whatever they cost; their counts are in procfs_counts",
    "samples of the idle task are dropped by the sampling program before their stacks are read, so interrupt and \
     softirq work done on an idle CPU is not in the sampled estimates (procfs_time includes it)",
];

/// The continuous tier's noise.json (and `noise --json` document).
#[derive(Debug, Clone, Serialize)]
pub struct ContinuousReport {
    pub tier: Tier,
    /// What only the deep tier shows, one sentence each.
    pub cannot_show: Vec<&'static str>,
    pub duration_ns: u64,
    /// The window, CLOCK_MONOTONIC ns.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    pub origins: Origins,
    pub accounting: Accounting,
    pub sampling: Sampling,
    pub cpus: Vec<CpuContinuous>,
    /// The sampled sources with the most estimated time over the reported CPUs.
    pub top_sources: Vec<TopSampled>,
}

/// One CPU over the window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuContinuous {
    pub cpu: u32,
    pub runtime_ns: u64,
    pub procfs_time: ProcfsTime,
    pub procfs_counts: ProcfsCounts,
    pub sampled: CpuSampled,
}

/// /proc/stat's growth over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcfsTime {
    pub softirq_ns: u64,
    /// `softirq_ns` in percent of `runtime_ns`.
    pub softirq_pct: f64,
    /// `null` unless the kernel accounts hard IRQ time (see `accounting`).
    pub hardirq_ns: Option<u64>,
    pub steal_ns: u64,
}

/// /proc/softirqs and /proc/interrupts growth over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcfsCounts {
    pub softirq_total: u64,
    /// Every /proc/softirqs row, in kernel order.
    pub softirqs: Ordered<u64>,
    pub irq_total: u64,
    /// /proc/interrupts rows that grew: IRQ numbers ascending, then the
    /// vector rows (`LOC`, `CAL`, …) in their order.
    pub irqs: Ordered<CountRow>,
}

/// An interrupt row: its name (IRQ action, or the row's description) and count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountRow {
    pub name: Option<String>,
    pub count: u64,
}

/// What the samples of one CPU show.
#[derive(Debug, Clone, Serialize)]
pub struct CpuSampled {
    /// Sampler periods in the window (window / period).
    pub periods: u64,
    /// Non-idle samples delivered (weighted).
    pub samples: u64,
    /// All noise below together.
    pub noise: Estimate,
    /// Device interrupts and vectors.
    pub irq: Estimate,
    pub softirq: Estimate,
    pub nmi: Estimate,
    /// Kernel threads.
    pub thread: Estimate,
    /// Each source, most samples first.
    pub sources: Vec<SampledEntry>,
}

/// One sampled source on one CPU.
#[derive(Debug, Clone, Serialize)]
pub struct SampledEntry {
    /// `"softirq NET_RX"`, `"vector LOC"`, `"irq vring_interrupt"`, `"thread kworker/0:1"`, `"nmi"`.
    pub source: String,
    pub kind: &'static str,
    pub name: String,
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// One sampled source over the reported CPUs.
#[derive(Debug, Clone, Serialize)]
pub struct TopSampled {
    pub source: String,
    pub kind: &'static str,
    pub name: String,
    #[serde(flatten)]
    pub estimate: Estimate,
    pub cpus: Vec<u32>,
}

/// The reason histograms.json gives in the continuous tier.
pub const HISTOGRAMS_ABSENT: &str = "the continuous tier hangs no program on the scheduler, syscall or interrupt \
     paths, which the latency histograms (run queue, off-CPU, syscalls, handler own time) are measured on; run \
     with --tier deep for them";

/// histograms.json of the continuous tier: there are none, and it says why.
#[derive(Debug, Clone, Serialize)]
pub struct HistogramsAbsent {
    pub tier: Tier,
    pub absent: bool,
    pub reason: &'static str,
}

pub fn histograms_absent() -> HistogramsAbsent {
    HistogramsAbsent { tier: Tier::Continuous, absent: true, reason: HISTOGRAMS_ABSENT }
}

fn accounting(raw: &ContinuousRaw) -> Accounting {
    let hardirq_time = raw.hardirq_accounting();
    let (softirq_time, note) = match hardirq_time {
        HardirqAccounting::Accounted => (
            "exact",
            "this kernel accounts interrupt time (CONFIG_IRQ_TIME_ACCOUNTING): hard IRQ and softirq time are exact, \
             to the USER_HZ tick /proc/stat prints"
                .to_owned(),
        ),
        HardirqAccounting::NotAccounted => (
            "tick",
            "hard IRQ time is not accounted by this kernel: /proc/stat's irq column is 0 on every CPU since boot \
             while /proc/interrupts counts grow (no CONFIG_IRQ_TIME_ACCOUNTING); softirq time is the kernel's \
             tick-based charge (each scheduler tick charged wholly to the context it interrupted)"
                .to_owned(),
        ),
        HardirqAccounting::Unknown => (
            "tick",
            "whether this kernel accounts hard IRQ time is unknown: /proc/stat's irq column is 0 everywhere and no \
             interrupt was counted in the window"
                .to_owned(),
        ),
    };
    Accounting { hardirq_time, softirq_time, note }
}

/// The description /proc/interrupts gives a vector row.
fn vector_description(row: &str) -> Option<&'static str> {
    Some(match row {
        "NMI" => "Non-maskable interrupts",
        "LOC" => "Local timer interrupts",
        "SPU" => "Spurious interrupts",
        "PMI" => "Performance monitoring interrupts",
        "IWI" => "IRQ work interrupts",
        "RTR" => "APIC ICR read retries",
        "RES" => "Rescheduling interrupts",
        "CAL" => "Function call interrupts",
        "TLB" => "TLB shootdowns",
        "TRM" => "Thermal event interrupts",
        "THR" => "Threshold APIC interrupts",
        "DFR" => "Deferred Error APIC interrupts",
        "MCE" => "Machine check exceptions",
        "MCP" => "Machine check polls",
        "HYP" => "Hypervisor callback interrupts",
        "PIN" => "Posted-interrupt notification event",
        "NPI" => "Nested posted-interrupt event",
        "PIW" => "Posted-interrupt wakeup event",
        "PLT" => "Platform interrupts",
        _ => return None,
    })
}

fn procfs_counts(raw: &ContinuousRaw, cpu: u32) -> ProcfsCounts {
    let at = |per_cpu: &BTreeMap<u32, u64>| per_cpu.get(&cpu).copied().unwrap_or(0);
    // Kernel order of the softirq rows where known, others after.
    let order = |name: &str| profiler_common::SOFTIRQ_NAMES.iter().position(|n| *n == name).unwrap_or(usize::MAX);
    let mut softirqs: Vec<(String, u64)> = raw.kernel_softirqs.iter().map(|(row, c)| (row.clone(), at(c))).collect();
    softirqs.sort_by(|(a, _), (b, _)| order(a).cmp(&order(b)).then_with(|| a.cmp(b)));
    let mut numbered: Vec<(u32, String, u64)> = Vec::new();
    let mut vectors: Vec<(String, u64)> = Vec::new();
    for (row, per_cpu) in &raw.kernel_interrupts {
        let count = at(per_cpu);
        if count == 0 {
            continue;
        }
        match row.parse::<u32>() {
            Ok(irq) => numbered.push((irq, row.clone(), count)),
            Err(_) => vectors.push((row.clone(), count)),
        }
    }
    numbered.sort_unstable();
    let irqs: Vec<(String, CountRow)> = numbered
        .into_iter()
        .map(|(irq, row, count)| (row, CountRow { name: raw.irq_names.get(&irq).cloned(), count }))
        .chain(vectors.into_iter().map(|(row, count)| {
            let name = vector_description(&row).map(str::to_owned);
            (row, CountRow { name, count })
        }))
        .collect();
    ProcfsCounts {
        softirq_total: softirqs.iter().map(|(_, n)| n).sum(),
        softirqs: Ordered(softirqs),
        irq_total: irqs.iter().map(|(_, r)| r.count).sum(),
        irqs: Ordered(irqs),
    }
}

fn entry(source: &SampledSource, estimate: Estimate) -> SampledEntry {
    SampledEntry { source: source.label(), kind: source.kind.as_str(), name: source.name.clone(), estimate }
}

fn cpu_sampled(raw: &ContinuousRaw, cpu: u32, duration_ns: u64) -> CpuSampled {
    let s = &raw.sampled;
    let delivered = s.delivered.get(&cpu).copied().unwrap_or_default();
    let (n, effective) = periods(duration_ns, s.period_ns, delivered);
    let estimate = |k: u64| Estimate::new(k, n, effective, s.period_ns);
    let empty = BTreeMap::new();
    let sources = s.sources.get(&cpu).unwrap_or(&empty);
    let sum = |f: &dyn Fn(SourceKind) -> bool| sources.iter().filter(|(k, _)| f(k.kind)).map(|(_, n)| n).sum::<u64>();
    let mut entries: Vec<SampledEntry> = sources.iter().map(|(src, k)| entry(src, estimate(*k))).collect();
    entries.sort_by(|a, b| b.estimate.samples.cmp(&a.estimate.samples).then_with(|| a.source.cmp(&b.source)));
    CpuSampled {
        periods: n,
        samples: delivered.weighted,
        noise: estimate(sum(&|_| true)),
        irq: estimate(sum(&|k| matches!(k, SourceKind::Irq | SourceKind::Vector))),
        softirq: estimate(sum(&|k| k == SourceKind::Softirq)),
        nmi: estimate(sum(&|k| k == SourceKind::Nmi)),
        thread: estimate(sum(&|k| k == SourceKind::Thread)),
        sources: entries,
    }
}

fn top_sources(raw: &ContinuousRaw, duration_ns: u64) -> Vec<TopSampled> {
    let s = &raw.sampled;
    let (mut n, mut effective) = (0u64, 0f64);
    let mut all: BTreeMap<&SampledSource, (u64, Vec<u32>)> = BTreeMap::new();
    for &cpu in &raw.cpus {
        let (cn, ce) = periods(duration_ns, s.period_ns, s.delivered.get(&cpu).copied().unwrap_or_default());
        n += cn;
        effective += ce;
        for (source, k) in s.sources.get(&cpu).into_iter().flatten() {
            let e = all.entry(source).or_default();
            e.0 += k;
            e.1.push(cpu);
        }
    }
    let mut top: Vec<TopSampled> = all
        .into_iter()
        .map(|(source, (k, cpus))| TopSampled {
            source: source.label(),
            kind: source.kind.as_str(),
            name: source.name.clone(),
            estimate: Estimate::new(k, n, effective, s.period_ns),
            cpus,
        })
        .collect();
    top.sort_by(|a, b| b.estimate.samples.cmp(&a.estimate.samples).then_with(|| a.source.cmp(&b.source)));
    top.truncate(TOP_SOURCES);
    top
}

/// Sum and name a window; see [`ContinuousReport`].
pub fn build(raw: &ContinuousRaw) -> ContinuousReport {
    let duration_ns = raw.duration_ns();
    let accounting = accounting(raw);
    let cpus = raw
        .cpus
        .iter()
        .map(|&cpu| {
            let t = raw.stat.get(&cpu).copied().unwrap_or_default();
            CpuContinuous {
                cpu,
                runtime_ns: duration_ns,
                procfs_time: ProcfsTime {
                    softirq_ns: t.softirq_ns,
                    softirq_pct: match duration_ns {
                        0 => 0.0,
                        d => t.softirq_ns as f64 * 100.0 / d as f64,
                    },
                    hardirq_ns: (accounting.hardirq_time == HardirqAccounting::Accounted).then_some(t.irq_ns),
                    steal_ns: t.steal_ns,
                },
                procfs_counts: procfs_counts(raw, cpu),
                sampled: cpu_sampled(raw, cpu, duration_ns),
            }
        })
        .collect();
    let s = &raw.sampled;
    ContinuousReport {
        tier: Tier::Continuous,
        cannot_show: Tier::Continuous.noise_cannot_show().to_vec(),
        duration_ns,
        window_start_ns: raw.window_start_ns,
        window_end_ns: raw.window_end_ns,
        origins: ORIGINS,
        accounting,
        sampling: Sampling {
            frequency_hz: s.frequency_hz,
            period_ns: s.period_ns,
            samples: raw.cpus.iter().filter_map(|c| s.delivered.get(c)).map(|d| d.weighted).sum(),
            idle_samples: s.idle_samples,
            lost_samples: s.lost_samples,
            threads_guessed: s.threads_guessed,
            kernel_names_evicted: s.kernel_names_evicted,
            restricted_to: s.restricted_to.clone(),
            blind_spots: BLIND_SPOTS.to_vec(),
        },
        cpus,
        top_sources: top_sources(raw, duration_ns),
    }
}

/// `1.23s [1.10s, 1.35s]`.
fn estimate_text(e: &Estimate) -> String {
    format!("{} [{}, {}]", human_ns(e.ns), human_ns(e.ci95_ns[0]), human_ns(e.ci95_ns[1]))
}

/// Named values most first, at most `top`, then `+N more`.
fn list(mut items: Vec<(String, String, u64)>, top: usize) -> String {
    items.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let more = items.len().saturating_sub(top);
    let mut parts: Vec<String> = items.into_iter().take(top).map(|(name, text, _)| format!("{name} {text}")).collect();
    if more > 0 {
        parts.push(format!("+{more} more"));
    }
    parts.join(", ")
}

/// The human report of the continuous tier, as printed by `tailprof noise --tier continuous`.
pub fn table(r: &ContinuousReport) -> String {
    let mut out = String::new();
    let cpus: Vec<u32> = r.cpus.iter().map(|c| c.cpu).collect();
    let _ = writeln!(
        out,
        "OS noise over {} on CPU{} {} (tier continuous: procfs times and counts, sampled per-source estimates; \
         no program on interrupt, softirq or switch paths)\n",
        human_ns(r.duration_ns),
        if cpus.len() == 1 { "" } else { "s" },
        format_cpu_list(&cpus),
    );
    let hardirq_cell = |c: &CpuContinuous| match c.procfs_time.hardirq_ns {
        Some(ns) => human_ns(ns),
        None if r.accounting.hardirq_time == HardirqAccounting::NotAccounted => "not accounted".to_owned(),
        None => "unknown".to_owned(),
    };
    let _ = writeln!(
        out,
        "{:>3}  {:>8}  {:-^40}  {:-^50}",
        "",
        "",
        " /proc/stat (kernel accounting) ",
        format!(" sampled at {} Hz: estimate [95% interval] ", r.sampling.frequency_hz)
    );
    let _ = writeln!(
        out,
        "{:>3}  {:>8}  {:>8}  {:>7}  {:>13}  {:>5}  {:>24}  {:>24}",
        "CPU", "RUNTIME", "SOFTIRQ", "%", "HARDIRQ", "STEAL", "SOFTIRQ", "THREAD"
    );
    for c in &r.cpus {
        let _ = writeln!(
            out,
            "{:>3}  {:>8}  {:>8}  {:>6.2}%  {:>13}  {:>5}  {:>24}  {:>24}",
            c.cpu,
            human_ns(c.runtime_ns),
            human_ns(c.procfs_time.softirq_ns),
            c.procfs_time.softirq_pct,
            hardirq_cell(c),
            human_ns(c.procfs_time.steal_ns),
            estimate_text(&c.sampled.softirq),
            estimate_text(&c.sampled.thread),
        );
    }
    for c in &r.cpus {
        let _ = writeln!(out, "\nCPU {}", c.cpu);
        let counts = &c.procfs_counts;
        let softirqs =
            counts.softirqs.0.iter().filter(|(_, n)| *n > 0).map(|(k, n)| (k.clone(), n.to_string(), *n)).collect();
        let _ = writeln!(out, "  softirq counts ({} in /proc/softirqs): {}", counts.softirq_total, list(softirqs, 6));
        let irqs = counts
            .irqs
            .0
            .iter()
            .map(|(k, row)| {
                let name = match (&row.name, k.bytes().all(|b| b.is_ascii_digit())) {
                    (Some(name), true) => format!("{k} {name}"),
                    _ => k.clone(),
                };
                (name, row.count.to_string(), row.count)
            })
            .collect();
        let _ = writeln!(out, "  irq counts ({} in /proc/interrupts): {}", counts.irq_total, list(irqs, 6));
        let sampled: Vec<(String, String, u64)> = c
            .sampled
            .sources
            .iter()
            .map(|e| {
                (
                    e.source.clone(),
                    format!("{}× {}", e.estimate.samples, estimate_text(&e.estimate)),
                    e.estimate.samples,
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  sampled ({} of {} periods non-idle): {}",
            c.sampled.samples,
            c.sampled.periods,
            if sampled.is_empty() {
                "no sample in interrupt context or a kernel thread".to_owned()
            } else {
                list(sampled, 4)
            }
        );
    }
    if r.top_sources.is_empty() {
        let _ = writeln!(out, "\nNo sample landed in interrupt context or a kernel thread on these CPUs.");
    } else {
        let width = r.top_sources.iter().map(|t| t.source.chars().count()).max().unwrap_or(0).max(6);
        let _ = writeln!(
            out,
            "\nTop sampled sources\n  {:<width$}  {:>7}  {:>26}  CPUS",
            "SOURCE", "SAMPLES", "TIME [95% INTERVAL]"
        );
        for t in &r.top_sources {
            let _ = writeln!(
                out,
                "  {:<width$}  {:>7}  {:>26}  {}",
                t.source,
                t.estimate.samples,
                estimate_text(&t.estimate),
                format_cpu_list(&t.cpus)
            );
        }
    }
    footer(r, &mut out);
    out
}

fn footer(r: &ContinuousReport, out: &mut String) {
    let _ = writeln!(out, "\nWhere the figures come from:");
    let _ = writeln!(out, "  times: {}", r.origins.procfs_time);
    let _ = writeln!(out, "  counts: {}", r.origins.procfs_counts);
    let _ = writeln!(out, "  sampled: {}", r.origins.sampled);
    let _ = writeln!(out, "Accounting: {}.", r.accounting.note);
    let s = &r.sampling;
    let _ = writeln!(
        out,
        "Sampling: {} samples at {} Hz (period {}); {} idle-task samples dropped unread; {} lost to a full ring buffer{}.",
        s.samples,
        s.frequency_hz,
        human_ns(s.period_ns),
        s.idle_samples,
        s.lost_samples,
        if s.threads_guessed > 0 {
            format!("; {} from threads gone before they could be told kernel or user", s.threads_guessed)
        } else {
            String::new()
        }
    );
    if let Some(why) = &s.restricted_to {
        let _ = writeln!(out, "The samples cover only {why}: the estimates are the noise that hit those threads.");
    }
    for b in &s.blind_spots {
        let _ = writeln!(out, "  - {b}");
    }
    let _ = writeln!(out, "\ntier continuous: what it cannot show (run with --tier deep for these):");
    for line in &r.cannot_show {
        let _ = writeln!(out, "  - {line}");
    }
}

/// Folded lines of the sampled estimates per reported CPU (ns):
/// `cpu0;[softirq];NET_RX`, `cpu1;[irq];vring_interrupt`, `cpu0;[irq];LOC`,
/// `cpu0;[thread];kworker/0:1`, `cpu0;[nmi]`; sorted, no zero lines.
pub fn fold_sampled(r: &ContinuousReport) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for c in &r.cpus {
        for e in &c.sampled.sources {
            let kind = match e.kind {
                "irq" | "vector" => "[irq]",
                "softirq" => "[softirq]",
                "thread" => "[thread]",
                _ => "[nmi]",
            };
            let line = match e.kind {
                "nmi" => format!("cpu{};[nmi]", c.cpu),
                _ => format!("cpu{};{kind};{}", c.cpu, crate::output::folded::clean(&e.name)),
            };
            *out.entry(line).or_default() += e.estimate.ns;
        }
    }
    out.into_iter().filter(|(_, ns)| *ns > 0).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::noise::sampled::Delivered;

    fn times(irq: u64, softirq: u64, steal: u64) -> CpuTimes {
        CpuTimes { irq_ns: irq, softirq_ns: softirq, steal_ns: steal }
    }

    fn src(kind: SourceKind, name: &str) -> SampledSource {
        SampledSource { kind, name: name.into() }
    }

    /// Two reported CPUs of three, 4 s at 99 Hz.
    pub fn sample() -> ContinuousRaw {
        let period = 10_101_010;
        ContinuousRaw {
            window_start_ns: 1_000_000_000,
            window_end_ns: 5_000_000_000,
            cpus: vec![0, 1],
            stat: BTreeMap::from([
                (0, times(0, 1_230_000_000, 0)),
                (1, times(0, 40_000_000, 10_000_000)),
                (2, times(0, 1, 0)),
            ]),
            stat_since_boot: BTreeMap::from([(0, times(0, 9, 9)), (1, times(0, 9, 9))]),
            kernel_interrupts: [
                ("36".to_owned(), [(0, 0), (1, 500)].into()),
                ("LOC".to_owned(), [(0, 1000), (1, 990)].into()),
                ("CAL".to_owned(), [(0, 12), (1, 0)].into()),
            ]
            .into(),
            kernel_softirqs: [
                ("TIMER".to_owned(), [(0, 100), (1, 90)].into()),
                ("NET_RX".to_owned(), [(0, 50_000), (1, 3)].into()),
                ("HI".to_owned(), [(0, 0), (1, 0)].into()),
            ]
            .into(),
            irq_names: BTreeMap::from([(36, "virtio1-req.0".into())]),
            sampled: SampledRaw {
                frequency_hz: 99,
                period_ns: period,
                sources: BTreeMap::from([
                    (
                        0,
                        BTreeMap::from([
                            (src(SourceKind::Softirq, "NET_RX"), 120),
                            (src(SourceKind::Softirq, "TIMER"), 2),
                            (src(SourceKind::Thread, "kworker/0:1"), 3),
                        ]),
                    ),
                    (
                        1,
                        BTreeMap::from([
                            (src(SourceKind::Softirq, "NET_RX"), 1),
                            (src(SourceKind::Irq, "vring_interrupt"), 1),
                        ]),
                    ),
                    (2, BTreeMap::from([(src(SourceKind::Thread, "ksoftirqd/2"), 50)])),
                ]),
                delivered: BTreeMap::from([
                    (0, Delivered { kept: 390, weighted: 390 }),
                    (1, Delivered { kept: 20, weighted: 20 }),
                    (2, Delivered { kept: 99, weighted: 99 }),
                ]),
                idle_samples: 370,
                lost_samples: 0,
                threads_guessed: 0,
                kernel_names_evicted: 0,
                restricted_to: None,
            },
        }
    }

    #[test]
    fn procfs_figures_per_cpu() {
        let r = build(&sample());
        assert_eq!(r.tier, Tier::Continuous);
        assert!(!r.cannot_show.is_empty());
        assert_eq!(r.duration_ns, 4_000_000_000);
        assert_eq!(r.accounting.hardirq_time, HardirqAccounting::NotAccounted);
        assert_eq!(r.accounting.softirq_time, "tick");
        assert_eq!(r.cpus.iter().map(|c| c.cpu).collect::<Vec<_>>(), [0, 1], "only reported CPUs");
        let c0 = &r.cpus[0];
        assert_eq!(c0.procfs_time.softirq_ns, 1_230_000_000);
        assert!((c0.procfs_time.softirq_pct - 30.75).abs() < 1e-9);
        assert_eq!(c0.procfs_time.hardirq_ns, None, "not accounted, never 0");
        let keys: Vec<&str> = c0.procfs_counts.softirqs.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["HI", "TIMER", "NET_RX"], "kernel order, every row");
        assert_eq!(c0.procfs_counts.softirqs.get("NET_RX"), Some(&50_000));
        assert_eq!(c0.procfs_counts.softirq_total, 50_100);
        let irqs: Vec<&str> = c0.procfs_counts.irqs.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(irqs, ["CAL", "LOC"], "rows that grew");
        let c1 = &r.cpus[1];
        assert_eq!(c1.procfs_counts.irqs.get("36"), Some(&CountRow { name: Some("virtio1-req.0".into()), count: 500 }));
        assert_eq!(c1.procfs_counts.irqs.get("LOC").and_then(|r| r.name.as_deref()), Some("Local timer interrupts"));
        assert_eq!(c1.procfs_time.steal_ns, 10_000_000);
        // A kernel that keeps hard IRQ time reports it.
        let mut kept = sample();
        kept.stat_since_boot.insert(1, times(20_000_000, 9, 9));
        kept.stat.insert(0, times(30_000_000, 1, 0));
        let r = build(&kept);
        assert_eq!(r.accounting.softirq_time, "exact");
        assert_eq!(r.cpus[0].procfs_time.hardirq_ns, Some(30_000_000));
    }

    #[test]
    fn sampled_estimates_with_intervals() {
        let r = build(&sample());
        let c0 = &r.cpus[0].sampled;
        assert_eq!(c0.periods, 396);
        assert_eq!(c0.samples, 390);
        assert_eq!(c0.softirq.samples, 122);
        assert_eq!(c0.softirq.ns, 122 * 10_101_010);
        assert!(c0.softirq.ci95_ns[0] < c0.softirq.ns && c0.softirq.ns < c0.softirq.ci95_ns[1]);
        assert_eq!(c0.thread.samples, 3);
        assert_eq!(c0.noise.samples, 125);
        assert_eq!(c0.irq.samples, 0);
        assert_eq!(c0.sources[0].source, "softirq NET_RX");
        assert_eq!(r.cpus[1].sampled.irq.samples, 1);
        let top: Vec<(&str, u64, &[u32])> =
            r.top_sources.iter().map(|t| (t.source.as_str(), t.estimate.samples, &t.cpus[..])).collect();
        assert_eq!(top[0], ("softirq NET_RX", 121, &[0, 1][..]));
        assert!(top.iter().all(|t| !t.0.contains("ksoftirqd")), "CPU 2 is not reported");
        assert_eq!(r.sampling.samples, 410);
    }

    #[test]
    fn json_shape() {
        let v: Value = serde_json::to_value(build(&sample())).unwrap();
        assert_eq!(v["tier"], "continuous");
        for field in ["cannot_show", "origins", "accounting", "sampling", "cpus", "top_sources", "window_start_ns"] {
            assert!(v.get(field).is_some(), "{field}");
        }
        assert_eq!(v["accounting"]["hardirq_time"], "not_accounted");
        let c0 = &v["cpus"][0];
        assert!(c0["procfs_time"]["hardirq_ns"].is_null());
        assert_eq!(c0["procfs_counts"]["softirqs"]["NET_RX"], 50_000);
        assert_eq!(c0["procfs_counts"]["irqs"]["LOC"], json!({"name": "Local timer interrupts", "count": 1000}));
        let s = &c0["sampled"]["sources"][0];
        assert_eq!(
            (&s["source"], &s["kind"], &s["name"], &s["samples"]),
            (&json!("softirq NET_RX"), &json!("softirq"), &json!("NET_RX"), &json!(120))
        );
        assert!(s["ci95_ns"].as_array().is_some_and(|a| a.len() == 2));
        assert_eq!(serde_json::to_value(histograms_absent()).unwrap()["absent"], true);
    }

    #[test]
    fn text_says_where_figures_come_from_and_what_is_absent() {
        let text = table(&build(&sample()));
        println!("{text}");
        assert!(text.starts_with("OS noise over 4.00s on CPUs 0-1 (tier continuous"));
        let cpu0 = text.lines().find(|l| l.trim_start().starts_with("0 ")).unwrap();
        assert!(cpu0.contains("1.23s") && cpu0.contains("30.75%") && cpu0.contains("not accounted"), "{cpu0}");
        assert!(text.contains("softirq counts (50100 in /proc/softirqs): NET_RX 50000, TIMER 100"));
        assert!(text.contains("irq counts (1490 in /proc/interrupts): LOC 990, 36 virtio1-req.0 500"), "{text}");
        assert!(text.contains("softirq NET_RX 120×"));
        assert!(text.contains("Top sampled sources"));
        assert!(text.contains("hard IRQ time is not accounted by this kernel"));
        assert!(text.contains("tier continuous: what it cannot show"));
        for line in Tier::Continuous.noise_cannot_show() {
            assert!(text.contains(line));
        }
    }

    #[test]
    fn folded_lines_are_the_estimates() {
        let lines = fold_sampled(&build(&sample()));
        assert!(lines.contains(&("cpu0;[softirq];NET_RX".to_owned(), 120 * 10_101_010)));
        assert!(lines.contains(&("cpu1;[irq];vring_interrupt".to_owned(), 10_101_010)));
        assert!(lines.iter().all(|(l, _)| !l.starts_with("cpu2")));
    }
}
