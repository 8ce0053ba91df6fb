//! The noise report: the kernel's per-CPU source stats named and summed
//! per CPU, the top sources across CPUs, and the victim view. It is what
//! `tailprof noise --json` prints and `record` writes as noise.json.
//!
//! Nesting is the kernel's job (every stat is own time); this module only
//! names and adds. Sources are named as in /proc/interrupts and
//! /proc/softirqs: IRQ lines by number, vectors by their row (`LOC`, `CAL`;
//! the two call-function vectors merge into `CAL`), softirqs by vector name.

use std::collections::{BTreeMap, BTreeSet};

use profiler_common::{
    NoiseKey, NoiseStats, NOISE_IRQ, NOISE_NMI, NOISE_SOFTIRQ, NOISE_THREAD, NOISE_VECTOR, SOFTIRQ_NAMES,
    TASK_COMM_LEN, VECTOR_NAMES, VICTIM_BEHIND_THREAD, VICTIM_BEHIND_UNKNOWN, VICTIM_INTERRUPTED,
};
use serde::{ser::SerializeMap, Serialize, Serializer};

use super::raw::{NoiseDropped, NoiseRaw};
use crate::model::text::comm_string;

/// Entries of [`NoiseReport::top_sources`].
pub const TOP_SOURCES: usize = 10;

/// What [`build`] makes of a [`NoiseRaw`]; serialized, the `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct NoiseReport {
    /// `deep`: the hooks measured every figure.
    pub tier: crate::tier::Tier,
    /// What the tier cannot show (empty for deep).
    pub cannot_show: Vec<&'static str>,
    pub duration_ns: u64,
    /// The window, CLOCK_MONOTONIC ns.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// `--threshold`: events shorter than this are in no count.
    pub threshold_ns: u64,
    /// The reported CPUs, ascending.
    pub cpus: Vec<CpuNoise>,
    /// The [`TOP_SOURCES`] sources with the most time over the reported CPUs.
    pub top_sources: Vec<TopSource>,
    /// The victim view; `null` without `--pid`.
    pub victims: Option<Victims>,
    pub dropped: NoiseDropped,
    /// Hooks this kernel lacks; their sources are absent.
    pub missing_hooks: Vec<String>,
}

/// The noise of one CPU over the window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuNoise {
    pub cpu: u32,
    /// The window's length: the CPU's time that noise can take from.
    pub runtime_ns: u64,
    /// Own time of IRQs, vectors, softirqs, NMIs and kernel threads, plus steal.
    pub noise_ns: u64,
    /// `noise_ns` in percent of `runtime_ns`.
    pub noise_pct: f64,
    /// The longest single noise event (steal has no events).
    pub max_single_ns: u64,
    /// [`Source::label`] of the source of `max_single_ns`; `null` without noise.
    pub max_single_source: Option<String>,
    /// Device IRQs and interrupt vectors together.
    pub irq: Total,
    pub softirq: Total,
    pub nmi: Stats,
    /// Kernel threads.
    pub thread: Total,
    /// Hypervisor steal from /proc/stat.
    pub steal_ns: u64,
    /// Always `null`: no measuring thread runs, so gaps no hook explains are not measured.
    pub unexplained_ns: Option<u64>,
    /// IRQ lines by number (`"36"`) ascending, then vectors by /proc/interrupts row (`"LOC"`).
    pub irqs: Ordered<IrqStats>,
    /// Softirq vectors seen, by /proc/softirqs name, in kernel order.
    pub softirqs: Ordered<Stats>,
    /// Kernel threads by name, most time first.
    pub threads: Ordered<Stats>,
    /// Rows of /proc/interrupts and /proc/softirqs where the kernel counted
    /// more events over the window than the hooks saw (only without a
    /// threshold, which leaves events out on purpose). Empty when the
    /// hooks saw every event.
    pub missed_by_hooks: Ordered<Missed>,
}

/// Events of one /proc row the hooks did not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Missed {
    /// What the kernel counted (/proc delta over the window).
    pub kernel: u64,
    /// What the hooks counted.
    pub hooks: u64,
}

/// /proc/interrupts rows whose events each have a hook of their own
/// (CAL also counts TLB shootdowns, which have none).
const TRACED_VECTOR_ROWS: [&str; 6] = ["LOC", "RES", "IWI", "PLT", "TRM", "SPU"];

/// Rows of one CPU where the kernel counted more than the hooks.
fn missed_by_hooks(
    raw: &NoiseRaw,
    cpu: u32,
    irqs: &[(String, IrqStats)],
    softirqs: &[(String, Stats)],
) -> Ordered<Missed> {
    let mut missed = Vec::new();
    if raw.threshold_ns > 0 {
        return Ordered(missed);
    }
    for (row, per_cpu) in &raw.kernel_interrupts {
        if row.parse::<u32>().is_err() && !TRACED_VECTOR_ROWS.contains(&row.as_str()) {
            continue;
        }
        let kernel = per_cpu.get(&cpu).copied().unwrap_or(0);
        let counted = irqs.iter().find(|(n, _)| n == row).map_or(0, |(_, s)| s.count);
        if kernel > counted {
            missed.push((row.clone(), Missed { kernel, hooks: counted }));
        }
    }
    for (row, per_cpu) in &raw.kernel_softirqs {
        let kernel = per_cpu.get(&cpu).copied().unwrap_or(0);
        let counted = softirqs.iter().find(|(n, _)| n == row).map_or(0, |(_, s)| s.count);
        if kernel > counted {
            missed.push((row.clone(), Missed { kernel, hooks: counted }));
        }
    }
    Ordered(missed)
}

/// Count and total own time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Total {
    pub count: u64,
    pub ns: u64,
}

/// Count, total and longest single own time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub count: u64,
    pub ns: u64,
    pub max_ns: u64,
}

impl Stats {
    fn merge(&mut self, s: &NoiseStats) {
        self.count += s.count;
        self.ns += s.ns;
        self.max_ns = self.max_ns.max(s.max_ns);
    }

    fn add(&mut self, s: &Stats) {
        self.count += s.count;
        self.ns += s.ns;
        self.max_ns = self.max_ns.max(s.max_ns);
    }
}

impl Total {
    fn add(&mut self, s: &Stats) {
        self.count += s.count;
        self.ns += s.ns;
    }
}

/// An IRQ line or vector: its action name (`virtio1-req.0`) or the
/// vector's /proc/interrupts description; `null` when /proc/interrupts
/// did not name the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IrqStats {
    pub name: Option<String>,
    pub count: u64,
    pub ns: u64,
    pub max_ns: u64,
}

/// Named entries that serialize as a JSON object in their order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<T: Serialize> Serialize for Ordered<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<T> Ordered<T> {
    /// The value named `key`.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// One source over the reported CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopSource {
    /// [`Source::label`]: `"softirq NET_RX"`.
    pub source: String,
    /// [`SourceKind::as_str`].
    pub kind: &'static str,
    /// [`Source::display_name`]: `"NET_RX"`, `"36 virtio1-req.0"`.
    pub name: String,
    /// 0 for steal, which has no events.
    pub count: u64,
    pub ns: u64,
    /// 0 for steal.
    pub max_ns: u64,
    /// CPUs it took time on, ascending.
    pub cpus: Vec<u32>,
}

/// The victim view (`--pid`).
#[derive(Debug, Clone, Serialize)]
pub struct Victims {
    pub pids: Vec<u32>,
    /// Most time lost (interrupted + runnable) first.
    pub threads: Vec<VictimThread>,
}

/// What one thread of a `--pid` process lost.
#[derive(Debug, Clone, Serialize)]
pub struct VictimThread {
    pub tid: u32,
    pub tgid: u32,
    /// `null` when the thread's name is unknown (it exited unseen).
    pub comm: Option<String>,
    /// On CPU, but an interrupt or softirq took the time.
    pub interrupted: Interrupted,
    /// All runnable time: `behind` plus `behind_unknown_ns`.
    pub runnable_behind_ns: u64,
    /// Threads that ran while it was runnable, most time first.
    pub behind: Vec<Behind>,
    /// Runnable time the kernel's per-CPU run log did not reach back to.
    pub behind_unknown_ns: u64,
}

/// Time a victim thread lost on CPU.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Interrupted {
    pub count: u64,
    pub ns: u64,
    /// Most time first.
    pub by_source: Vec<BySource>,
}

/// One source that interrupted a victim thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BySource {
    /// [`Source::label`].
    pub source: String,
    pub count: u64,
    pub ns: u64,
    pub max_ns: u64,
}

/// A thread a victim waited behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Behind {
    /// 0: the idle task (`swapper/N`).
    pub tid: u32,
    pub comm: String,
    pub ns: u64,
    pub count: u64,
}

/// The kind of a [`Source`], in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum SourceKind {
    Irq,
    Vector,
    Softirq,
    Nmi,
    Thread,
    Steal,
}

impl SourceKind {
    /// `"irq"`, `"vector"`, `"softirq"`, `"nmi"`, `"thread"`, `"steal"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Irq => "irq",
            SourceKind::Vector => "vector",
            SourceKind::Softirq => "softirq",
            SourceKind::Nmi => "nmi",
            SourceKind::Thread => "thread",
            SourceKind::Steal => "steal",
        }
    }
}

/// A noise source independent of the CPU: equal sources merge (both
/// call-function vectors are one `CAL`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub kind: SourceKind,
    /// IRQ number, vector id (the first of its name), softirq vector; 0 otherwise.
    pub id: u32,
    /// IRQ action name ("" if unknown), vector row, softirq name, thread comm.
    pub name: String,
}

impl Source {
    /// The source of a kernel key (`NOISE_*` kind, id, comm); `None` for a
    /// kind this build does not know.
    pub fn of(kind: u32, id: u32, comm: &[u8; TASK_COMM_LEN], irq_names: &BTreeMap<u32, String>) -> Option<Source> {
        let (kind, id, name) = match kind {
            NOISE_IRQ => (SourceKind::Irq, id, irq_names.get(&id).cloned().unwrap_or_default()),
            NOISE_VECTOR => {
                let name = vector_name(id);
                let first = VECTOR_NAMES.iter().position(|n| *n == name).map_or(id, |i| i as u32);
                (SourceKind::Vector, first, name)
            }
            NOISE_SOFTIRQ => (SourceKind::Softirq, id, softirq_name(id)),
            NOISE_NMI => (SourceKind::Nmi, 0, String::new()),
            NOISE_THREAD => (SourceKind::Thread, 0, comm_string(comm)),
            _ => return None,
        };
        Some(Source { kind, id, name })
    }

    /// The source of a [`NoiseKey`].
    pub fn of_key(key: &NoiseKey, irq_names: &BTreeMap<u32, String>) -> Option<Source> {
        Source::of(key.kind, key.id, &key.comm, irq_names)
    }

    fn steal() -> Source {
        Source { kind: SourceKind::Steal, id: 0, name: String::new() }
    }

    /// The name within its kind: `"36 virtio1-req.0"` (`"36"` unnamed),
    /// `"LOC"`, `"NET_RX"`, `"NMI"`, `"kworker/0:1"`, `"steal"`.
    pub fn display_name(&self) -> String {
        match self.kind {
            SourceKind::Irq if self.name.is_empty() => self.id.to_string(),
            SourceKind::Irq => format!("{} {}", self.id, self.name),
            SourceKind::Vector | SourceKind::Softirq | SourceKind::Thread => self.name.clone(),
            SourceKind::Nmi => "NMI".into(),
            SourceKind::Steal => "steal".into(),
        }
    }

    /// Kind and name: `"softirq NET_RX"`, `"irq 36 virtio1-req.0"`,
    /// `"vector LOC"`, `"thread kworker/0:1"`, `"nmi"`, `"steal"`.
    pub fn label(&self) -> String {
        match self.kind {
            SourceKind::Nmi | SourceKind::Steal => self.kind.as_str().into(),
            kind => format!("{} {}", kind.as_str(), self.display_name()),
        }
    }
}

/// The /proc/interrupts row of a vector id.
fn vector_name(id: u32) -> String {
    VECTOR_NAMES.get(id as usize).map_or_else(|| format!("VECTOR{id}"), |n| (*n).to_owned())
}

/// The /proc/softirqs row of a softirq vector.
fn softirq_name(id: u32) -> String {
    SOFTIRQ_NAMES.get(id as usize).map_or_else(|| format!("SOFTIRQ{id}"), |n| (*n).to_owned())
}

/// The description /proc/interrupts gives a vector row.
fn vector_description(name: &str) -> Option<&'static str> {
    Some(match name {
        "LOC" => "Local timer interrupts",
        "RES" => "Rescheduling interrupts",
        "CAL" => "Function call interrupts",
        "IWI" => "IRQ work interrupts",
        "PLT" => "Platform interrupts",
        "TRM" => "Thermal event interrupts",
        "SPU" => "Spurious interrupts",
        "ERR" => "APIC errors",
        _ => return None,
    })
}

/// Name and sum the raw stats; see [`NoiseReport`].
pub fn build(raw: &NoiseRaw) -> NoiseReport {
    let reported: BTreeSet<u32> = raw.cpus.iter().copied().collect();
    let mut per_cpu: BTreeMap<u32, BTreeMap<Source, Stats>> = reported.iter().map(|c| (*c, BTreeMap::new())).collect();
    for (cpu, key, stats) in &raw.sources {
        let (Some(sources), Some(source)) = (per_cpu.get_mut(cpu), Source::of_key(key, &raw.irq_names)) else {
            continue;
        };
        sources.entry(source).or_default().merge(stats);
    }
    let cpus: Vec<CpuNoise> = per_cpu
        .iter()
        .map(|(cpu, sources)| {
            let mut c = cpu_noise(*cpu, sources, raw.steal_ns.get(cpu).copied().unwrap_or(0), raw.duration_ns);
            c.missed_by_hooks = missed_by_hooks(raw, *cpu, &c.irqs.0, &c.softirqs.0);
            c
        })
        .collect();
    NoiseReport {
        tier: crate::tier::Tier::Deep,
        cannot_show: crate::tier::Tier::Deep.noise_cannot_show().to_vec(),
        duration_ns: raw.duration_ns,
        window_start_ns: raw.window_start_ns,
        window_end_ns: raw.window_end_ns,
        threshold_ns: raw.threshold_ns,
        top_sources: top_sources(&per_cpu, &raw.steal_ns),
        cpus,
        victims: victims(raw),
        dropped: raw.dropped,
        missing_hooks: raw.missing_hooks.clone(),
    }
}

fn cpu_noise(cpu: u32, sources: &BTreeMap<Source, Stats>, steal_ns: u64, duration_ns: u64) -> CpuNoise {
    let (mut irq, mut softirq, mut nmi, mut thread) =
        (Total::default(), Total::default(), Stats::default(), Total::default());
    let (mut irqs, mut softirqs, mut threads) = (Vec::new(), Vec::new(), Vec::new());
    let mut max_single: Option<(&Source, u64)> = None;
    for (source, s) in sources {
        if s.max_ns > max_single.map_or(0, |(_, m)| m) {
            max_single = Some((source, s.max_ns));
        }
        match source.kind {
            SourceKind::Irq | SourceKind::Vector => {
                irq.add(s);
                let (key, name) = match source.kind {
                    SourceKind::Irq => (source.id.to_string(), Some(source.name.clone()).filter(|n| !n.is_empty())),
                    _ => (source.name.clone(), vector_description(&source.name).map(str::to_owned)),
                };
                irqs.push((key, IrqStats { name, count: s.count, ns: s.ns, max_ns: s.max_ns }));
            }
            SourceKind::Softirq => {
                softirq.add(s);
                softirqs.push((source.name.clone(), *s));
            }
            SourceKind::Nmi => nmi.add(s),
            SourceKind::Thread => {
                thread.add(s);
                threads.push((source.name.clone(), *s));
            }
            SourceKind::Steal => {}
        }
    }
    threads.sort_by(|(a, x), (b, y)| y.ns.cmp(&x.ns).then_with(|| a.cmp(b)));
    let noise_ns = irq.ns + softirq.ns + nmi.ns + thread.ns + steal_ns;
    CpuNoise {
        cpu,
        runtime_ns: duration_ns,
        noise_ns,
        noise_pct: if duration_ns == 0 { 0.0 } else { noise_ns as f64 * 100.0 / duration_ns as f64 },
        max_single_ns: max_single.map_or(0, |(_, m)| m),
        max_single_source: max_single.map(|(s, _)| s.label()),
        irq,
        softirq,
        nmi,
        thread,
        steal_ns,
        unexplained_ns: None,
        irqs: Ordered(irqs),
        softirqs: Ordered(softirqs),
        threads: Ordered(threads),
        missed_by_hooks: Ordered(Vec::new()),
    }
}

fn top_sources(per_cpu: &BTreeMap<u32, BTreeMap<Source, Stats>>, steal: &BTreeMap<u32, u64>) -> Vec<TopSource> {
    let mut all: BTreeMap<Source, (Stats, BTreeSet<u32>)> = BTreeMap::new();
    for (cpu, sources) in per_cpu {
        let steal_ns = steal.get(cpu).copied().unwrap_or(0);
        let steal = (steal_ns > 0).then(|| (Source::steal(), Stats { count: 0, ns: steal_ns, max_ns: 0 }));
        for (source, s) in sources.iter().map(|(k, v)| (k.clone(), *v)).chain(steal) {
            if s.ns == 0 && s.count == 0 {
                continue;
            }
            let entry = all.entry(source).or_default();
            entry.0.add(&s);
            entry.1.insert(*cpu);
        }
    }
    let mut top: Vec<TopSource> = all
        .into_iter()
        .map(|(source, (s, cpus))| TopSource {
            source: source.label(),
            kind: source.kind.as_str(),
            name: source.display_name(),
            count: s.count,
            ns: s.ns,
            max_ns: s.max_ns,
            cpus: cpus.into_iter().collect(),
        })
        .collect();
    // Stable: equal times keep the source order (kind, then id, then name).
    top.sort_by(|a, b| b.ns.cmp(&a.ns).then_with(|| b.count.cmp(&a.count)));
    top.truncate(TOP_SOURCES);
    top
}

/// One victim thread while it is summed.
#[derive(Default)]
struct VictimSums {
    tgid: u32,
    interrupted: BTreeMap<Source, Stats>,
    behind: BTreeMap<(u32, String), Stats>,
    unknown: Stats,
}

fn victims(raw: &NoiseRaw) -> Option<Victims> {
    if raw.victim_pids.is_empty() {
        return None;
    }
    let mut threads: BTreeMap<u32, VictimSums> = BTreeMap::new();
    for (key, stats) in &raw.victims {
        let sums = threads.entry(key.tid).or_default();
        sums.tgid = key.tgid;
        match key.kind {
            VICTIM_INTERRUPTED => {
                if let Some(source) = Source::of(key.source, key.id, &key.comm, &raw.irq_names) {
                    sums.interrupted.entry(source).or_default().merge(stats);
                }
            }
            VICTIM_BEHIND_THREAD => sums.behind.entry((key.id, comm_string(&key.comm))).or_default().merge(stats),
            VICTIM_BEHIND_UNKNOWN => sums.unknown.merge(stats),
            _ => {}
        }
    }
    let mut threads: Vec<VictimThread> =
        threads.into_iter().map(|(tid, sums)| victim_thread(tid, sums, raw.thread_names.get(&tid).cloned())).collect();
    threads.sort_by(|a, b| {
        let lost = |t: &VictimThread| t.interrupted.ns + t.runnable_behind_ns;
        lost(b).cmp(&lost(a)).then(a.tid.cmp(&b.tid))
    });
    let mut pids = raw.victim_pids.clone();
    pids.sort_unstable();
    pids.dedup();
    Some(Victims { pids, threads })
}

fn victim_thread(tid: u32, sums: VictimSums, comm: Option<String>) -> VictimThread {
    let mut interrupted = Interrupted::default();
    for (source, s) in &sums.interrupted {
        interrupted.count += s.count;
        interrupted.ns += s.ns;
        interrupted.by_source.push(BySource { source: source.label(), count: s.count, ns: s.ns, max_ns: s.max_ns });
    }
    interrupted.by_source.sort_by_key(|b| std::cmp::Reverse(b.ns));
    let mut behind: Vec<Behind> =
        sums.behind.into_iter().map(|((tid, comm), s)| Behind { tid, comm, ns: s.ns, count: s.count }).collect();
    behind.sort_by_key(|b| std::cmp::Reverse(b.ns));
    let runnable_behind_ns = behind.iter().map(|b| b.ns).sum::<u64>() + sums.unknown.ns;
    VictimThread {
        tid,
        tgid: sums.tgid,
        comm,
        interrupted,
        runnable_behind_ns,
        behind,
        behind_unknown_ns: sums.unknown.ns,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use profiler_common::VictimKey;
    use serde_json::{json, Value};

    use super::*;

    pub fn comm(s: &str) -> [u8; TASK_COMM_LEN] {
        let mut c = [0u8; TASK_COMM_LEN];
        c[..s.len()].copy_from_slice(s.as_bytes());
        c
    }

    pub fn key(kind: u32, id: u32, name: &str) -> NoiseKey {
        NoiseKey { kind, id, comm: comm(name) }
    }

    pub fn stats(count: u64, ns: u64, max_ns: u64) -> NoiseStats {
        NoiseStats { count, ns, max_ns }
    }

    pub fn victim(tid: u32, kind: u32, source: u32, id: u32, name: &str) -> VictimKey {
        VictimKey { tid, tgid: 100, kind, source, id, _pad: 0, comm: comm(name) }
    }

    /// Two reported CPUs (0, 1) of three, a victim process 100.
    pub fn sample() -> NoiseRaw {
        NoiseRaw {
            duration_ns: 1_000_000_000,
            window_start_ns: 5_000_000_000,
            window_end_ns: 6_000_000_000,
            threshold_ns: 5_000,
            cpus: vec![0, 1],
            sources: vec![
                (0, key(NOISE_SOFTIRQ, 3, ""), stats(10, 500_000, 90_000)),
                (0, key(NOISE_SOFTIRQ, 1, ""), stats(100, 200_000, 8_000)),
                (0, key(NOISE_IRQ, 36, ""), stats(20, 100_000, 10_000)),
                (0, key(NOISE_VECTOR, 0, ""), stats(1000, 300_000, 6_000)),
                (0, key(NOISE_VECTOR, 2, ""), stats(5, 10_000, 3_000)),
                (0, key(NOISE_VECTOR, 3, ""), stats(7, 20_000, 4_000)),
                (0, key(NOISE_NMI, 0, ""), stats(2, 4_000, 2_500)),
                (0, key(NOISE_THREAD, 0, "kworker/0:1"), stats(3, 60_000, 30_000)),
                (0, key(NOISE_THREAD, 0, "rcu_preempt"), stats(4, 80_000, 20_000)),
                (1, key(NOISE_SOFTIRQ, 3, ""), stats(30, 900_000, 50_000)),
                (1, key(NOISE_IRQ, 37, ""), stats(1, 7_000, 7_000)),
                (2, key(NOISE_SOFTIRQ, 3, ""), stats(99, 9_000_000, 900_000)),
                (2, key(NOISE_THREAD, 0, "ksoftirqd/2"), stats(9, 9_000_000, 9_000_000)),
                (0, key(99, 0, ""), stats(1, 1, 1)),
            ],
            victims: vec![
                (victim(101, VICTIM_INTERRUPTED, NOISE_SOFTIRQ, 3, ""), stats(4, 40_000, 20_000)),
                (victim(101, VICTIM_INTERRUPTED, NOISE_VECTOR, 2, ""), stats(1, 5_000, 5_000)),
                (victim(101, VICTIM_INTERRUPTED, NOISE_VECTOR, 3, ""), stats(1, 6_000, 6_000)),
                (victim(101, VICTIM_BEHIND_THREAD, 0, 55, "kworker/0:1"), stats(2, 300_000, 200_000)),
                (victim(101, VICTIM_BEHIND_THREAD, 0, 0, "swapper/0"), stats(1, 1_000, 1_000)),
                (victim(101, VICTIM_BEHIND_UNKNOWN, 0, 0, ""), stats(1, 2_000, 2_000)),
                (victim(100, VICTIM_BEHIND_THREAD, 0, 101, "worker"), stats(1, 9_000, 9_000)),
            ],
            victim_pids: vec![100],
            thread_names: BTreeMap::from([(100, "app".into()), (101, "worker".into())]),
            irq_names: BTreeMap::from([(36, "virtio1-req.0".into())]),
            steal_ns: BTreeMap::from([(1, 50_000), (2, 1)]),
            dropped: NoiseDropped { sources: 0, victims: 3, histograms: 0 },
            missing_hooks: vec!["irq_vectors:thermal_apic_entry".into()],
            kernel_interrupts: [
                ("LOC".to_owned(), [(0, 1005), (1, 0)].into()),
                ("CAL".to_owned(), [(0, 99)].into()),
                ("36".to_owned(), [(0, 20)].into()),
            ]
            .into(),
            kernel_softirqs: [("NET_RX".to_owned(), [(0, 10), (1, 31)].into())].into(),
        }
    }

    #[test]
    fn sums_per_cpu_and_merges_cal() {
        let r = build(&sample());
        assert_eq!(r.duration_ns, 1_000_000_000);
        assert_eq!(r.threshold_ns, 5_000);
        assert_eq!(r.cpus.iter().map(|c| c.cpu).collect::<Vec<_>>(), vec![0, 1], "only reported CPUs");
        let c0 = &r.cpus[0];
        assert_eq!(c0.irq, Total { count: 20 + 1000 + 5 + 7, ns: 100_000 + 300_000 + 10_000 + 20_000 });
        assert_eq!(c0.softirq, Total { count: 110, ns: 700_000 });
        assert_eq!(c0.nmi, Stats { count: 2, ns: 4_000, max_ns: 2_500 });
        assert_eq!(c0.thread, Total { count: 7, ns: 140_000 });
        assert_eq!(c0.steal_ns, 0);
        assert_eq!(c0.noise_ns, 430_000 + 700_000 + 4_000 + 140_000);
        assert!((c0.noise_pct - 0.1274).abs() < 1e-9);
        assert_eq!(c0.max_single_ns, 90_000);
        assert_eq!(c0.max_single_source.as_deref(), Some("softirq NET_RX"));
        assert_eq!(
            c0.irqs.get("CAL"),
            Some(&IrqStats { name: Some("Function call interrupts".into()), count: 12, ns: 30_000, max_ns: 4_000 })
        );
        let keys: Vec<&str> = c0.irqs.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["36", "LOC", "CAL"]);
        assert_eq!(c0.irqs.get("36").and_then(|i| i.name.as_deref()), Some("virtio1-req.0"));
        let softirqs: Vec<&str> = c0.softirqs.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(softirqs, ["TIMER", "NET_RX"], "kernel order");
        let threads: Vec<&str> = c0.threads.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(threads, ["rcu_preempt", "kworker/0:1"], "most time first");
        let c1 = &r.cpus[1];
        assert_eq!(c1.steal_ns, 50_000);
        assert_eq!(c1.noise_ns, 900_000 + 7_000 + 50_000, "steal counts as noise");
        assert_eq!(c1.irqs.get("37").map(|i| i.name.clone()), Some(None), "unnamed line");
        assert_eq!(c1.unexplained_ns, None);
    }

    #[test]
    fn top_sources_span_reported_cpus_by_time() {
        let r = build(&sample());
        let top: Vec<(&str, u64, &[u32])> =
            r.top_sources.iter().map(|t| (t.source.as_str(), t.ns, &t.cpus[..])).collect();
        assert_eq!(top[0], ("softirq NET_RX", 1_400_000, &[0, 1][..]));
        assert_eq!(top[1], ("vector LOC", 300_000, &[0][..]));
        assert_eq!(top[2], ("softirq TIMER", 200_000, &[0][..]));
        assert_eq!(top[3], ("irq 36 virtio1-req.0", 100_000, &[0][..]));
        assert_eq!(top[4], ("thread rcu_preempt", 80_000, &[0][..]));
        assert!(top.iter().all(|(s, _, _)| !s.contains("ksoftirqd")), "CPU 2 is not reported");
        let steal = r.top_sources.iter().find(|t| t.kind == "steal").unwrap();
        assert_eq!((steal.ns, steal.count, &steal.cpus[..]), (50_000, 0, &[1][..]));
        assert_eq!(r.top_sources[1].name, "LOC");
        assert_eq!(r.top_sources[3].name, "36 virtio1-req.0");
        assert!(r.top_sources.len() <= TOP_SOURCES);
        assert!(r.top_sources.windows(2).all(|w| w[0].ns >= w[1].ns));
    }

    #[test]
    fn top_sources_keep_the_ten_largest() {
        let mut raw = NoiseRaw { duration_ns: 1, cpus: vec![0], ..NoiseRaw::default() };
        for irq in 0..15 {
            raw.sources.push((0, key(NOISE_IRQ, irq, ""), stats(1, u64::from(irq) * 10, 1)));
        }
        let r = build(&raw);
        assert_eq!(r.top_sources.len(), 10);
        assert_eq!(r.top_sources[0].source, "irq 14");
        assert_eq!(r.top_sources[9].source, "irq 5");
    }

    #[test]
    fn victims_by_thread_with_sources_and_behind() {
        let r = build(&sample());
        let v = r.victims.as_ref().unwrap();
        assert_eq!(v.pids, [100]);
        assert_eq!(v.threads.iter().map(|t| t.tid).collect::<Vec<_>>(), [101, 100], "most lost first");
        let t = &v.threads[0];
        assert_eq!((t.tgid, t.comm.as_deref()), (100, Some("worker")));
        assert_eq!((t.interrupted.count, t.interrupted.ns), (6, 51_000));
        assert_eq!(
            t.interrupted.by_source,
            [
                BySource { source: "softirq NET_RX".into(), count: 4, ns: 40_000, max_ns: 20_000 },
                BySource { source: "vector CAL".into(), count: 2, ns: 11_000, max_ns: 6_000 },
            ]
        );
        assert_eq!(
            t.behind,
            [
                Behind { tid: 55, comm: "kworker/0:1".into(), ns: 300_000, count: 2 },
                Behind { tid: 0, comm: "swapper/0".into(), ns: 1_000, count: 1 },
            ]
        );
        assert_eq!(t.behind_unknown_ns, 2_000);
        assert_eq!(t.runnable_behind_ns, 303_000);
        assert!(build(&NoiseRaw::default()).victims.is_none());
    }

    #[test]
    fn json_shape() {
        let v: Value = serde_json::to_value(build(&sample())).unwrap();
        for field in ["duration_ns", "threshold_ns", "cpus", "top_sources", "victims", "dropped", "missing_hooks"] {
            assert!(v.get(field).is_some(), "{field}");
        }
        assert_eq!((&v["tier"], &v["cannot_show"]), (&json!("deep"), &json!([])));
        let c0 = &v["cpus"][0];
        assert_eq!(c0["softirqs"]["NET_RX"], json!({"count": 10, "ns": 500_000, "max_ns": 90_000}));
        assert_eq!(c0["irqs"]["36"]["name"], "virtio1-req.0");
        assert_eq!(c0["irqs"]["LOC"]["count"], 1000);
        assert_eq!(c0["threads"]["kworker/0:1"]["ns"], 60_000);
        assert_eq!(c0["irq"], json!({"count": 1032, "ns": 430_000}));
        assert_eq!(c0["nmi"], json!({"count": 2, "ns": 4_000, "max_ns": 2_500}));
        assert!(c0["unexplained_ns"].is_null());
        assert_eq!(c0["runtime_ns"], 1_000_000_000u64);
        assert_eq!(v["top_sources"][0]["kind"], "softirq");
        assert_eq!(v["victims"]["threads"][0]["interrupted"]["by_source"][0]["source"], "softirq NET_RX");
        assert_eq!(v["dropped"]["victims"], 3);
        assert_eq!(v["missing_hooks"][0], "irq_vectors:thermal_apic_entry");
        let empty: Value = serde_json::to_value(build(&NoiseRaw::default())).unwrap();
        assert!(empty["victims"].is_null());
        assert_eq!(empty["cpus"], json!([]));
    }

    #[test]
    fn a_cpu_without_noise_reports_zeros() {
        let raw = NoiseRaw { duration_ns: 0, cpus: vec![3], ..NoiseRaw::default() };
        let r = build(&raw);
        let c = &r.cpus[0];
        assert_eq!((c.cpu, c.noise_ns, c.noise_pct, c.max_single_ns), (3, 0, 0.0, 0));
        assert_eq!(c.max_single_source, None);
        assert!(r.top_sources.is_empty());
    }

    #[test]
    fn events_the_hooks_missed_are_reported_without_a_threshold() {
        let mut raw = sample();
        assert!(
            build(&raw).cpus.iter().all(|c| c.missed_by_hooks.0.is_empty()),
            "a threshold leaves events out on purpose"
        );
        raw.threshold_ns = 0;
        let r = build(&raw);
        let c0 = &r.cpus[0];
        assert_eq!(c0.missed_by_hooks.0, vec![("LOC".to_owned(), Missed { kernel: 1005, hooks: 1000 })]);
        let c1 = &r.cpus[1];
        assert_eq!(c1.missed_by_hooks.0, vec![("NET_RX".to_owned(), Missed { kernel: 31, hooks: 30 })]);
        assert!(super::super::table::table(&r).contains("CPU 0 LOC 1000 of 1005"));
    }
}
