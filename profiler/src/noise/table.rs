//! The human form of a [`NoiseReport`]: an osnoise-style table per CPU,
//! the largest sources of each CPU, the top sources across CPUs, and the
//! victim threads of `--pid`.

use std::fmt::Write;

use super::{
    cpu_list::format_cpu_list,
    report::{CpuNoise, NoiseReport, Stats, Total, VictimThread},
};

/// Sources named per CPU and kind, and per victim thread and kind.
const TOP_PER_LINE: usize = 4;
/// Victim threads in the table (all are in the JSON).
const TOP_VICTIMS: usize = 20;

/// A duration in ns with two or three significant digits: `850ns`,
/// `12.3µs`, `4.56ms`, `10.0s`.
pub fn human_ns(ns: u64) -> String {
    const UNITS: [(f64, &str); 4] = [(1.0, "ns"), (1e3, "µs"), (1e6, "ms"), (1e9, "s")];
    if ns < 1000 {
        return format!("{ns}ns");
    }
    let ns = ns as f64;
    let mut i = UNITS.iter().rposition(|(scale, _)| ns >= *scale).unwrap_or(0);
    // 999.96µs rounds to 1000µs: say 1.00ms instead.
    if i + 1 < UNITS.len() && ns / UNITS[i].0 >= 999.5 {
        i += 1;
    }
    let (scale, unit) = UNITS[i];
    let v = ns / scale;
    match v {
        v if v < 9.995 => format!("{v:.2}{unit}"),
        v if v < 99.95 => format!("{v:.1}{unit}"),
        v => format!("{v:.0}{unit}"),
    }
}

/// Right-aligned cells of the given widths, two blanks apart.
fn row(cells: &[(&str, usize)]) -> String {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        let _ = write!(line, "{cell:>width$}");
    }
    line.trim_end().to_owned()
}

/// The osnoise-style table, the per-CPU details, the top sources and the
/// victim table, as printed by `tailprof noise`.
pub fn table(r: &NoiseReport) -> String {
    let mut out = String::new();
    let cpus: Vec<u32> = r.cpus.iter().map(|c| c.cpu).collect();
    let _ = writeln!(
        out,
        "OS noise over {} on CPU{} {} (events under {} not counted)\n",
        human_ns(r.duration_ns),
        if cpus.len() == 1 { "" } else { "s" },
        format_cpu_list(&cpus),
        human_ns(r.threshold_ns),
    );
    cpu_table(r, &mut out);
    cpu_details(r, &mut out);
    top_sources(r, &mut out);
    victims(r, &mut out);
    footer(r, &mut out);
    out
}

/// Widths: CPU, RUNTIME, NOISE, %NOISE, MAX SINGLE, then n and time for
/// IRQ, SOFTIRQ, NMI and THREAD, then STEAL.
const WIDTHS: [usize; 14] = [3, 8, 8, 8, 10, 8, 8, 8, 8, 6, 8, 6, 8, 8];

fn cpu_table(r: &NoiseReport, out: &mut String) {
    // Group headers over the n/time pairs.
    let lead: usize = WIDTHS[..5].iter().sum::<usize>() + 2 * 5;
    let mut groups = " ".repeat(lead);
    for (name, pair) in [("IRQ", 5), ("SOFTIRQ", 7), ("NMI", 9), ("THREAD", 11)] {
        let width = WIDTHS[pair] + 2 + WIDTHS[pair + 1];
        let _ = write!(groups, "{:-^width$}  ", format!(" {name} "));
    }
    let _ = writeln!(out, "{}", groups.trim_end());
    let header = [
        "CPU",
        "RUNTIME",
        "NOISE",
        "%NOISE",
        "MAX SINGLE",
        "n",
        "time",
        "n",
        "time",
        "n",
        "time",
        "n",
        "time",
        "STEAL",
    ];
    let cells: Vec<(&str, usize)> = header.iter().copied().zip(WIDTHS).collect();
    let _ = writeln!(out, "{}", row(&cells));
    for c in &r.cpus {
        let pair = |t: Total| [t.count.to_string(), human_ns(t.ns)];
        let [irq_n, irq_t] = pair(c.irq);
        let [soft_n, soft_t] = pair(c.softirq);
        let [nmi_n, nmi_t] = pair(Total { count: c.nmi.count, ns: c.nmi.ns });
        let [thr_n, thr_t] = pair(c.thread);
        let values = [
            c.cpu.to_string(),
            human_ns(c.runtime_ns),
            human_ns(c.noise_ns),
            format!("{:.3}%", c.noise_pct),
            human_ns(c.max_single_ns),
            irq_n,
            irq_t,
            soft_n,
            soft_t,
            nmi_n,
            nmi_t,
            thr_n,
            thr_t,
            human_ns(c.steal_ns),
        ];
        let cells: Vec<(&str, usize)> = values.iter().map(String::as_str).zip(WIDTHS).collect();
        let _ = writeln!(out, "{}", row(&cells));
    }
}

/// `NET_RX 10× 500µs (max 90.0µs), TIMER …, +2 more`, largest first.
fn source_list<'a>(items: impl Iterator<Item = (String, &'a Stats)>) -> String {
    let mut items: Vec<(String, &Stats)> = items.collect();
    items.sort_by_key(|(_, s)| std::cmp::Reverse(s.ns));
    let more = items.len().saturating_sub(TOP_PER_LINE);
    let mut parts: Vec<String> = items
        .iter()
        .take(TOP_PER_LINE)
        .map(|(name, s)| format!("{name} {}× {} (max {})", s.count, human_ns(s.ns), human_ns(s.max_ns)))
        .collect();
    if more > 0 {
        parts.push(format!("+{more} more"));
    }
    parts.join(", ")
}

fn cpu_details(r: &NoiseReport, out: &mut String) {
    for c in &r.cpus {
        let Some(source) = &c.max_single_source else { continue };
        let _ = writeln!(out, "\nCPU {}: max single {} ({source})", c.cpu, human_ns(c.max_single_ns));
        for (kind, list) in cpu_lists(c) {
            if !list.is_empty() {
                let _ = writeln!(out, "  {kind:<8} {list}");
            }
        }
    }
}

fn cpu_lists(c: &CpuNoise) -> [(&'static str, String); 3] {
    let irqs: Vec<(String, Stats)> = c
        .irqs
        .0
        .iter()
        .map(|(key, i)| {
            let name = match (&i.name, key.bytes().all(|b| b.is_ascii_digit())) {
                (Some(name), true) => format!("{key} {name}"),
                _ => key.clone(),
            };
            (name, Stats { count: i.count, ns: i.ns, max_ns: i.max_ns })
        })
        .collect();
    [
        ("softirq", source_list(c.softirqs.0.iter().map(|(k, s)| (k.clone(), s)))),
        ("irq", source_list(irqs.iter().map(|(k, s)| (k.clone(), s)))),
        ("thread", source_list(c.threads.0.iter().map(|(k, s)| (k.clone(), s)))),
    ]
}

fn top_sources(r: &NoiseReport, out: &mut String) {
    if r.top_sources.is_empty() {
        let _ = writeln!(out, "\nNo noise above the threshold on these CPUs.");
        return;
    }
    let width = r.top_sources.iter().map(|t| t.source.chars().count()).max().unwrap_or(0).max(6);
    let _ = writeln!(out, "\nTop sources\n  {:<width$}  {:>8}  {:>8}  {:>8}  CPUS", "SOURCE", "COUNT", "TIME", "MAX");
    for t in &r.top_sources {
        let (count, max) = match t.kind {
            "steal" => ("-".to_owned(), "-".to_owned()),
            _ => (t.count.to_string(), human_ns(t.max_ns)),
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {count:>8}  {:>8}  {max:>8}  {}",
            t.source,
            human_ns(t.ns),
            format_cpu_list(&t.cpus)
        );
    }
}

fn victims(r: &NoiseReport, out: &mut String) {
    let Some(v) = &r.victims else { return };
    let pids: Vec<String> = v.pids.iter().map(u32::to_string).collect();
    let _ = writeln!(out, "\nVictim threads (pid{} {})", if pids.len() == 1 { "" } else { "s" }, pids.join(", "));
    if v.threads.is_empty() {
        let _ = writeln!(out, "  none lost time above the threshold");
        return;
    }
    let _ = writeln!(
        out,
        "  {:>8}  {:>8}  {:<16}  {:>11}  {:>6}  {:>8}  {:>14}",
        "TID", "PID", "COMM", "INTERRUPTED", "n", "RUNNABLE", "BEHIND UNKNOWN"
    );
    for t in v.threads.iter().take(TOP_VICTIMS) {
        victim_rows(t, out);
    }
    if v.threads.len() > TOP_VICTIMS {
        let _ = writeln!(out, "  +{} more threads (see --json)", v.threads.len() - TOP_VICTIMS);
    }
}

fn victim_rows(t: &VictimThread, out: &mut String) {
    let _ = writeln!(
        out,
        "  {:>8}  {:>8}  {:<16}  {:>11}  {:>6}  {:>8}  {:>14}",
        t.tid,
        t.tgid,
        t.comm.as_deref().unwrap_or("?"),
        human_ns(t.interrupted.ns),
        t.interrupted.count,
        human_ns(t.runnable_behind_ns),
        human_ns(t.behind_unknown_ns),
    );
    let by_source: Vec<(String, Stats)> = t
        .interrupted
        .by_source
        .iter()
        .map(|b| (b.source.clone(), Stats { count: b.count, ns: b.ns, max_ns: b.max_ns }))
        .collect();
    if !by_source.is_empty() {
        let _ = writeln!(out, "      interrupted by: {}", source_list(by_source.iter().map(|(k, s)| (k.clone(), s))));
    }
    if !t.behind.is_empty() {
        let more = t.behind.len().saturating_sub(TOP_PER_LINE);
        let mut parts: Vec<String> = t
            .behind
            .iter()
            .take(TOP_PER_LINE)
            .map(|b| format!("{} (tid {}) {}× {}", b.comm, b.tid, b.count, human_ns(b.ns)))
            .collect();
        if more > 0 {
            parts.push(format!("+{more} more"));
        }
        let _ = writeln!(out, "      runnable behind: {}", parts.join(", "));
    }
}

fn footer(r: &NoiseReport, out: &mut String) {
    let _ = writeln!(
        out,
        "\nUnexplained gaps are not measured: no measuring thread runs, so only time a hook saw is counted."
    );
    let d = r.dropped;
    if d.sources + d.victims + d.histograms > 0 {
        let _ = writeln!(
            out,
            "Maps were full: {} noise, {} victim and {} histogram events were not counted.",
            d.sources, d.victims, d.histograms
        );
    }
    if !r.missing_hooks.is_empty() {
        let _ = writeln!(out, "This kernel lacks {}; their sources are not counted.", r.missing_hooks.join(", "));
    }
    let missed: Vec<String> = r
        .cpus
        .iter()
        .flat_map(|c| {
            c.missed_by_hooks.0.iter().map(move |(row, m)| format!("CPU {} {row} {} of {}", c.cpu, m.hooks, m.kernel))
        })
        .collect();
    if !missed.is_empty() {
        let _ = writeln!(
            out,
            "The kernel counted events its tracepoints did not hand to the hooks (hooks saw: {}); \
             their counts and times above are short by the difference.",
            missed.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::report::{build, tests::sample};

    #[test]
    fn human_units() {
        assert_eq!(human_ns(0), "0ns");
        assert_eq!(human_ns(850), "850ns");
        assert_eq!(human_ns(1_000), "1.00µs");
        assert_eq!(human_ns(12_345), "12.3µs");
        assert_eq!(human_ns(123_456), "123µs");
        assert_eq!(human_ns(999_960), "1.00ms");
        assert_eq!(human_ns(4_560_000), "4.56ms");
        assert_eq!(human_ns(10_000_000_000), "10.0s");
        assert_eq!(human_ns(9_999), "10.0µs");
        assert_eq!(human_ns(99_990), "100µs");
    }

    #[test]
    fn table_has_the_rows() {
        let text = table(&build(&sample()));
        println!("{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("OS noise over 1.00s on CPUs 0-1 (events under 5.00µs not counted)"));
        assert!(text.contains("CPU   RUNTIME     NOISE    %NOISE  MAX SINGLE"), "{text}");
        let cpu0 = lines.iter().find(|l| l.trim_start().starts_with("0 ")).unwrap();
        for cell in
            ["1.00s", "1.27ms", "0.127%", "90.0µs", "1032", "430µs", "110", "700µs", "2", "4.00µs", "7", "140µs", "0ns"]
        {
            assert!(cpu0.split_whitespace().any(|c| c == cell), "{cell} in {cpu0}");
        }
        assert!(text.contains("CPU 0: max single 90.0µs (softirq NET_RX)"));
        assert!(text.contains("  softirq  NET_RX 10× 500µs (max 90.0µs), TIMER 100× 200µs (max 8.00µs)"));
        assert!(
            text.contains("  irq      LOC 1000× 300µs (max 6.00µs), 36 virtio1-req.0 20× 100µs (max 10.0µs), CAL 12×")
        );
        assert!(text.contains("  thread   rcu_preempt 4× 80.0µs"));
        assert!(text.contains("Top sources"));
        assert!(text.contains("softirq NET_RX"));
        let steal = lines.iter().find(|l| l.trim_start().starts_with("steal")).unwrap();
        assert!(steal.contains("50.0µs") && steal.trim_end().ends_with('1'), "{steal}");
        assert!(text.contains("Victim threads (pid 100)"));
        assert!(text.contains("101       100  worker"));
        assert!(text.contains("interrupted by: softirq NET_RX 4× 40.0µs (max 20.0µs), vector CAL 2× 11.0µs"));
        assert!(text.contains("runnable behind: kworker/0:1 (tid 55) 2× 300µs, swapper/0 (tid 0) 1× 1.00µs"));
        assert!(text.contains("0 noise, 3 victim and 0 histogram events"));
        assert!(text.contains("lacks irq_vectors:thermal_apic_entry"));
        assert!(!text.contains("ksoftirqd"), "CPU 2 is not reported");
    }

    #[test]
    fn an_empty_report_still_reads() {
        let raw = crate::noise::raw::NoiseRaw { duration_ns: 2_000_000_000, cpus: vec![1], ..Default::default() };
        let text = table(&build(&raw));
        assert!(text.starts_with("OS noise over 2.00s on CPU 1 "));
        assert!(text.contains("No noise above the threshold"));
        assert!(!text.contains("Victim"));
    }
}
