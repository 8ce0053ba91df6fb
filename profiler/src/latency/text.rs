//! The histogram report as compact text tables: one per kind, the top rows
//! by count with their percentiles, then the misery counts of `--slo`.

use std::fmt::Write;

use super::histograms::{Histograms, Kind, LatencyHistogram};

/// Widest name column; longer names are cut with `…`.
const MAX_NAME_WIDTH: usize = 40;

/// A duration in ns in human units (ns, µs, ms, s) with three significant
/// digits, trailing zeros dropped: `850ns`, `1.25µs`, `12.5ms`, `250ms`, `1s`
/// (seconds stay whole above 1000s).
pub fn format_ns(ns: u64) -> String {
    if ns < 1000 {
        return format!("{ns}ns");
    }
    const UNITS: [(f64, &str); 3] = [(1e3, "µs"), (1e6, "ms"), (1e9, "s")];
    let mut i = 0;
    loop {
        let (scale, unit) = UNITS[i];
        let x = ns as f64 / scale;
        let text = three_digits(x);
        // 999.6µs rounds to 1000µs, which reads better as 1ms.
        if i == UNITS.len() - 1 || (x < 1000.0 && text != "1000") {
            return format!("{text}{unit}");
        }
        i += 1;
    }
}

/// `x` with three significant digits below 100, whole above; no trailing zeros.
fn three_digits(x: f64) -> String {
    let text = if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A fraction as a percentage: `0.35%`, `<0.01%` for tiny non-zero ones.
pub fn format_fraction(f: f64) -> String {
    let pct = f * 100.0;
    if pct > 0.0 && pct < 0.01 {
        "<0.01%".to_owned()
    } else {
        format!("{pct:.2}%")
    }
}

/// `name` cut to `width` characters with a trailing `…`.
fn cut(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        name.to_owned()
    } else {
        let mut s: String = name.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The report: per kind, the aggregate (if any) and the `top` histograms
/// with the most values; then one line per `--slo` threshold.
pub fn text(h: &Histograms, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Latency histograms over {} (percentiles are bucket upper bounds, at most 0.8% high)",
        format_ns(h.duration_ns)
    );
    if h.dropped > 0 {
        let _ = writeln!(out, "warning: {} events were not counted: the kernel's histogram map was full", h.dropped);
    }
    if h.histograms.is_empty() {
        let _ = writeln!(out, "\nno latency events recorded");
    }
    for kind in Kind::ALL {
        let all: Vec<&LatencyHistogram> = h.histograms.iter().filter(|x| x.kind == kind).collect();
        if all.is_empty() {
            continue;
        }
        let aggregates = all.iter().filter(|x| x.aggregate).count();
        let rows: Vec<&LatencyHistogram> =
            all.iter().filter(|x| x.aggregate).chain(all.iter().filter(|x| !x.aggregate).take(top)).copied().collect();
        let hidden = all.len() - aggregates - (rows.len() - aggregates);
        table(&mut out, kind, &rows, hidden);
    }
    if !h.slo.is_empty() {
        let _ = writeln!(out, "\nSLO misery counts (events above each threshold)");
        for s in &h.slo {
            if s.events == 0 {
                let _ = writeln!(out, "  {} > {}: no events", s.target, format_ns(s.threshold_ns));
            } else {
                let _ = writeln!(
                    out,
                    "  {} > {}: {} of {} events ({})",
                    s.target,
                    format_ns(s.threshold_ns),
                    s.exceeding,
                    s.events,
                    format_fraction(s.fraction)
                );
            }
        }
    }
    out
}

/// One kind's table.
fn table(out: &mut String, kind: Kind, rows: &[&LatencyHistogram], hidden: usize) {
    let names: Vec<String> = rows.iter().map(|r| cut(&r.name, MAX_NAME_WIDTH)).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(4);
    let _ = writeln!(out, "\n{}", kind.title());
    let _ = writeln!(
        out,
        "  {:<width$} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "NAME", "COUNT", "P50", "P90", "P99", "P99.9", "P99.99", "MAX"
    );
    for (row, name) in rows.iter().zip(&names) {
        // `{:<width$}` pads by chars, which `…` and `µ` are one of each.
        let _ = writeln!(
            out,
            "  {:<width$} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            name,
            row.count,
            format_ns(row.p50_ns),
            format_ns(row.p90_ns),
            format_ns(row.p99_ns),
            format_ns(row.p999_ns),
            format_ns(row.p9999_ns),
            format_ns(row.max_ns),
        );
    }
    if hidden > 0 {
        let _ = writeln!(out, "  … {hidden} more");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::histograms::SloResult;

    #[test]
    fn human_units() {
        let cases = [
            (0, "0ns"),
            (999, "999ns"),
            (1000, "1µs"),
            (1250, "1.25µs"),
            (12_345, "12.3µs"),
            (123_456, "123µs"),
            (999_499, "999µs"),
            (999_600, "1ms"),
            (1_000_000, "1ms"),
            (10_027_007, "10ms"),
            (10_092_543, "10.1ms"),
            (250_000_000, "250ms"),
            (2_000_000_000, "2s"),
            (4_398_046_511_103, "4398s"),
        ];
        for (ns, want) in cases {
            assert_eq!(format_ns(ns), want, "{ns}");
        }
        assert_eq!(format_fraction(12.0 / 3400.0), "0.35%");
        assert_eq!(format_fraction(0.0), "0.00%");
        assert_eq!(format_fraction(1e-7), "<0.01%");
        assert_eq!(format_fraction(1.0), "100.00%");
    }

    fn hist(kind: Kind, name: &str, count: u64, aggregate: bool) -> LatencyHistogram {
        LatencyHistogram {
            kind,
            id: 0,
            name: name.to_owned(),
            aggregate,
            count,
            sum_ns: count * 1000,
            mean_ns: 1000,
            p50_ns: 1000,
            p90_ns: 2000,
            p99_ns: 12_500,
            p999_ns: 1_000_000,
            p9999_ns: 1_500_000,
            max_ns: 2_000_000_000,
            buckets: vec![],
        }
    }

    #[test]
    fn tables_and_slo_lines() {
        let h = Histograms {
            duration_ns: 10_000_000_000,
            precision: "",
            dropped: 3,
            histograms: vec![
                hist(Kind::Runq, "all processes", 3400, true),
                hist(Kind::Runq, "postgres (pid 200)", 3000, false),
                hist(Kind::Runq, "spinner (pid 100)", 300, false),
                hist(Kind::Runq, "pid 300", 100, false),
                hist(Kind::Softirq, "NET_RX", 5, false),
            ],
            slo: vec![
                SloResult {
                    spec: "runq=1ms".into(),
                    kind: Kind::Runq,
                    target: "runq".into(),
                    threshold_ns: 1_000_000,
                    events: 3400,
                    exceeding: 12,
                    fraction: 12.0 / 3400.0,
                },
                SloResult {
                    spec: "disk=20ms".into(),
                    kind: Kind::OffCpu,
                    target: "disk".into(),
                    threshold_ns: 20_000_000,
                    events: 0,
                    exceeding: 0,
                    fraction: 0.0,
                },
            ],
        };
        let t = text(&h, 2);
        assert!(t.starts_with("Latency histograms over 10s"), "{t}");
        assert!(t.contains("warning: 3 events were not counted"), "{t}");
        assert!(t.contains(Kind::Runq.title()));
        assert!(t.contains(Kind::Softirq.title()));
        assert!(!t.contains(Kind::Syscall.title()));
        let row = t.lines().find(|l| l.contains("all processes")).expect("aggregate row");
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[2..], ["3400", "1µs", "2µs", "12.5µs", "1ms", "1.5ms", "2s"]);
        assert!(t.contains("postgres (pid 200)"));
        assert!(t.contains("spinner (pid 100)"));
        assert!(!t.contains("pid 300\n") && !t.contains(" pid 300 "), "{t}");
        assert!(t.contains("  … 1 more"));
        assert!(t.contains("  runq > 1ms: 12 of 3400 events (0.35%)"), "{t}");
        assert!(t.contains("  disk > 20ms: no events"), "{t}");
        // Columns line up: every row of the runq table is as wide as its header.
        let widths: Vec<usize> =
            t.lines().skip_while(|l| !l.starts_with("Run-queue")).skip(1).take(4).map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{widths:?}\n{t}");
    }

    #[test]
    fn long_names_are_cut() {
        let long = "x".repeat(60);
        assert_eq!(cut(&long, 40).chars().count(), 40);
        assert!(cut(&long, 40).ends_with('…'));
        assert_eq!(cut("short", 40), "short");
    }
}
