//! Folded lines (in ns) for flamegraphs of noise: what took each reported
//! CPU's time, and what each victim thread lost. Render them with
//! [`crate::output::flamegraph::write`] after collecting them into a
//! [`Folded`](crate::output::folded::Folded) map (the lines are unique).

use std::collections::BTreeMap;

use profiler_common::{VICTIM_BEHIND_THREAD, VICTIM_BEHIND_UNKNOWN, VICTIM_INTERRUPTED};

use super::{
    report::{Source, SourceKind},
    NoiseRaw,
};
use crate::model::text::{clean, comm_string};

/// The `[kind]` frame of a source; vectors are IRQs here as in the table.
fn kind_frame(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Irq | SourceKind::Vector => "[irq]",
        SourceKind::Softirq => "[softirq]",
        SourceKind::Nmi => "[nmi]",
        SourceKind::Thread => "[thread]",
        SourceKind::Steal => "[steal]",
    }
}

/// Noise per reported CPU: `cpu0;[softirq];NET_RX`, `cpu1;[irq];36 virtio1-req.0`,
/// `cpu0;[irq];LOC`, `cpu0;[thread];kworker/0:1`, `cpu0;[nmi]`, `cpu0;[steal]`,
/// with own time in ns; sorted, merged, no zero lines.
pub fn fold_sources(r: &NoiseRaw) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (cpu, key, stats) in &r.sources {
        if !r.cpus.contains(cpu) {
            continue;
        }
        let Some(source) = Source::of_key(key, &r.irq_names) else { continue };
        let line = match source.kind {
            SourceKind::Nmi => format!("cpu{cpu};[nmi]"),
            kind => format!("cpu{cpu};{};{}", kind_frame(kind), clean(&source.display_name())),
        };
        *out.entry(line).or_default() += stats.ns;
    }
    for cpu in &r.cpus {
        if let Some(ns) = r.steal_ns.get(cpu) {
            *out.entry(format!("cpu{cpu};[steal]")).or_default() += ns;
        }
    }
    out.into_iter().filter(|(_, ns)| *ns > 0).collect()
}

/// Losses of victim threads: `COMM;[interrupted];[softirq] NET_RX`,
/// `COMM;[runnable behind];OTHERCOMM`, `COMM;[runnable behind];[unknown]`,
/// in ns. With several processes, each line starts with
/// `NAME (pid N)` (the name is `thread_names[pid]`, when known).
pub fn fold_victims(r: &NoiseRaw) -> Vec<(String, u64)> {
    let several = {
        let mut tgids: Vec<u32> = r.victims.iter().map(|(k, _)| k.tgid).chain(r.victim_pids.iter().copied()).collect();
        tgids.sort_unstable();
        tgids.dedup();
        tgids.len() > 1
    };
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (key, stats) in &r.victims {
        let thread = r.thread_names.get(&key.tid).map_or_else(|| format!("tid {}", key.tid), |n| clean(n));
        let root = if !several {
            thread
        } else {
            match r.thread_names.get(&key.tgid) {
                Some(name) => format!("{} (pid {});{thread}", clean(name), key.tgid),
                None => format!("pid {};{thread}", key.tgid),
            }
        };
        let leaf = match key.kind {
            VICTIM_INTERRUPTED => {
                let Some(source) = Source::of(key.source, key.id, &key.comm, &r.irq_names) else { continue };
                match source.kind {
                    SourceKind::Nmi => "[interrupted];[nmi]".to_owned(),
                    kind => format!("[interrupted];{} {}", kind_frame(kind), clean(&source.display_name())),
                }
            }
            VICTIM_BEHIND_THREAD => format!("[runnable behind];{}", clean(&comm_string(&key.comm))),
            VICTIM_BEHIND_UNKNOWN => "[runnable behind];[unknown]".to_owned(),
            _ => continue,
        };
        *out.entry(format!("{root};{leaf}")).or_default() += stats.ns;
    }
    out.into_iter().filter(|(_, ns)| *ns > 0).collect()
}

#[cfg(test)]
mod tests {
    use profiler_common::{NOISE_IRQ, NOISE_SOFTIRQ};

    use super::*;
    use crate::{
        noise::report::tests::{key, sample, stats, victim},
        output::folded::Folded,
    };

    fn line(lines: &[(String, u64)], stack: &str) -> Option<u64> {
        lines.iter().find(|(s, _)| s == stack).map(|(_, n)| *n)
    }

    #[test]
    fn sources_per_reported_cpu() {
        let lines = fold_sources(&sample());
        assert_eq!(line(&lines, "cpu0;[softirq];NET_RX"), Some(500_000));
        assert_eq!(line(&lines, "cpu1;[softirq];NET_RX"), Some(900_000));
        assert_eq!(line(&lines, "cpu0;[irq];36 virtio1-req.0"), Some(100_000));
        assert_eq!(line(&lines, "cpu1;[irq];37"), Some(7_000));
        assert_eq!(line(&lines, "cpu0;[irq];CAL"), Some(30_000), "both call-function vectors");
        assert_eq!(line(&lines, "cpu0;[irq];LOC"), Some(300_000));
        assert_eq!(line(&lines, "cpu0;[thread];kworker/0:1"), Some(60_000));
        assert_eq!(line(&lines, "cpu0;[nmi]"), Some(4_000));
        assert_eq!(line(&lines, "cpu1;[steal]"), Some(50_000));
        assert!(lines.iter().all(|(s, _)| !s.starts_with("cpu2")), "CPU 2 is not reported");
        let folded: Folded = lines.iter().cloned().collect();
        assert_eq!(folded.len(), lines.len(), "unique lines");
        let mut svg = Vec::new();
        crate::output::flamegraph::write(&folded, "OS noise", "ns", &mut svg).unwrap();
        assert!(String::from_utf8_lossy(&svg).contains("NET_RX"));
    }

    #[test]
    fn victims_of_one_process() {
        let lines = fold_victims(&sample());
        assert_eq!(line(&lines, "worker;[interrupted];[softirq] NET_RX"), Some(40_000));
        assert_eq!(line(&lines, "worker;[interrupted];[irq] CAL"), Some(11_000));
        assert_eq!(line(&lines, "worker;[runnable behind];kworker/0:1"), Some(300_000));
        assert_eq!(line(&lines, "worker;[runnable behind];swapper/0"), Some(1_000));
        assert_eq!(line(&lines, "worker;[runnable behind];[unknown]"), Some(2_000));
        assert_eq!(line(&lines, "app;[runnable behind];worker"), Some(9_000));
    }

    #[test]
    fn victims_of_several_processes_name_the_process() {
        let mut raw = sample();
        raw.victim_pids = vec![100, 200];
        let mut other = victim(201, VICTIM_INTERRUPTED, NOISE_IRQ, 36, "");
        other.tgid = 200;
        raw.victims.push((other, stats(1, 3_000, 3_000)));
        raw.thread_names.insert(201, "a;b".into());
        let lines = fold_victims(&raw);
        assert_eq!(line(&lines, "app (pid 100);worker;[interrupted];[softirq] NET_RX"), Some(40_000));
        assert_eq!(line(&lines, "pid 200;a:b;[interrupted];[irq] 36 virtio1-req.0"), Some(3_000));
        raw.sources.push((0, key(NOISE_SOFTIRQ, 42, ""), stats(1, 5, 5)));
        assert_eq!(line(&fold_sources(&raw), "cpu0;[softirq];SOFTIRQ42"), Some(5));
    }
}
