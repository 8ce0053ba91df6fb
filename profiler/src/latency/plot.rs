//! The histograms as a self-contained SVG: one panel per kind with the
//! percentile-distribution curves of its top histograms (x: percentile on
//! a "nines" axis 0, 90, 99, 99.9, 99.99 and then max; y: latency, log
//! scale) and the `--slo` thresholds as dashed horizontal lines.

use std::fmt::Write as _;

use super::histograms::{Histograms, Kind, LatencyHistogram, SloResult};
use super::text::format_ns;

/// Histograms drawn per panel.
const CURVES_PER_PANEL: usize = 6;
const WIDTH: f64 = 940.0;
/// Height of the document title band.
const HEADER: f64 = 44.0;
/// Left edge of the plot area (room for the y labels).
const LEFT: f64 = 76.0;
/// Right edge of the plot area; the legend is to its right.
const RIGHT: f64 = 620.0;
/// From a panel's top to its plot area (panel title).
const PANEL_TOP: f64 = 34.0;
const PLOT_HEIGHT: f64 = 230.0;
/// Below the plot area: tick labels and axis title.
const PANEL_BOTTOM: f64 = 52.0;
const PANEL_HEIGHT: f64 = PANEL_TOP + PLOT_HEIGHT + PANEL_BOTTOM;
/// The x axis: nines 0..=4 (p0..p99.99), then a column for max.
const MAX_NINES: f64 = 4.0;
const X_MAX_COLUMN: f64 = 4.6;
/// Curve samples along the nines axis.
const SAMPLES: usize = 200;
/// Curve colors; the aggregate ("all processes", "all syscalls") is drawn in [`AGGREGATE_COLOR`].
const COLORS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"];
const AGGREGATE_COLOR: &str = "#222222";
const SLO_COLOR: &str = "#d62728";
/// Longest legend entry, in characters.
const LEGEND_CHARS: usize = 38;

/// Writes the SVG plot of `h` to `w`.
pub fn svg(h: &Histograms, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    w.write_all(render(h).as_bytes())
}

/// The SVG document as a string.
fn render(h: &Histograms) -> String {
    let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| h.histograms.iter().any(|x| x.kind == *k)).collect();
    let height = HEADER + PANEL_HEIGHT * kinds.len().max(1) as f64;
    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#);
    let mut title = format!("Latency percentiles over {}", format_ns(h.duration_ns));
    if h.dropped > 0 {
        let _ = write!(title, " ({} events not counted: histogram map full)", h.dropped);
    }
    let _ = writeln!(s, r#"<text x="{LEFT}" y="26" font-size="16" font-weight="bold">{}</text>"#, escape(&title));
    if kinds.is_empty() {
        let _ = writeln!(s, r#"<text x="{LEFT}" y="{}">no latency events recorded</text>"#, HEADER + 40.0);
    }
    for (i, &kind) in kinds.iter().enumerate() {
        let rows: Vec<&LatencyHistogram> =
            h.histograms.iter().filter(|x| x.kind == kind).take(CURVES_PER_PANEL).collect();
        let slos: Vec<&SloResult> = h.slo.iter().filter(|x| x.kind == kind).collect();
        panel(&mut s, HEADER + PANEL_HEIGHT * i as f64, kind, &rows, &slos);
    }
    let _ = writeln!(s, "</svg>");
    s
}

/// Percentile `q` (0..1) at a position on the nines axis: 0 → p0, 2 → p99.
fn quantile_at(nines: f64) -> f64 {
    1.0 - 10f64.powf(-nines)
}

/// A log scale from `10^lo` to `10^hi` ns onto the plot area's height.
struct YScale {
    lo: i32,
    hi: i32,
    top: f64,
}

impl YScale {
    fn y(&self, ns: u64) -> f64 {
        let v = (ns.max(1) as f64).log10();
        let frac = (v - f64::from(self.lo)) / f64::from(self.hi - self.lo);
        self.top + PLOT_HEIGHT * (1.0 - frac.clamp(0.0, 1.0))
    }
}

fn x_of(nines: f64) -> f64 {
    LEFT + (RIGHT - LEFT) * nines / X_MAX_COLUMN
}

/// One kind's panel with its top left corner at `top`.
fn panel(s: &mut String, top: f64, kind: Kind, rows: &[&LatencyHistogram], slos: &[&SloResult]) {
    let plot_top = top + PANEL_TOP;
    let plot_bottom = plot_top + PLOT_HEIGHT;
    let curves: Vec<Vec<(f64, u64)>> = rows
        .iter()
        .map(|r| {
            (0..=SAMPLES)
                .map(|i| {
                    let nines = MAX_NINES * i as f64 / SAMPLES as f64;
                    (nines, r.value_at_quantile(quantile_at(nines)))
                })
                .collect()
        })
        .collect();

    // Decades spanning every point, max and threshold.
    let low = curves.iter().flatten().map(|p| p.1.max(1)).min().unwrap_or(1);
    let high = rows.iter().map(|r| r.max_ns).chain(slos.iter().map(|x| x.threshold_ns)).max().unwrap_or(1).max(1);
    let lo = (low as f64).log10().floor() as i32;
    let hi = ((high as f64).log10().ceil() as i32).max(lo + 1);
    let scale = YScale { lo, hi, top: plot_top };

    let _ = writeln!(s, r#"<g class="panel" id="panel-{}">"#, kind.as_str());
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
        top + 20.0,
        escape(kind.title())
    );
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{plot_top:.1}" width="{:.1}" height="{PLOT_HEIGHT}" fill="none" stroke="#999999"/>"##,
        RIGHT - LEFT
    );

    // y grid and labels: every decade, with 2× and 5× when there are few.
    for d in lo..=hi {
        let base = 10u64.saturating_pow(d.max(0) as u32);
        let mut ticks = vec![(base, true)];
        if hi - lo <= 2 && d < hi {
            ticks.extend([(base.saturating_mul(2), false), (base.saturating_mul(5), false)]);
        }
        for (v, major) in ticks {
            let y = scale.y(v);
            let stroke = if major { "#dddddd" } else { "#eeeeee" };
            let _ = writeln!(s, r#"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="{stroke}"/>"#);
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                escape(&format_ns(v))
            );
        }
    }
    // x grid and labels.
    let x_ticks = [(0.0, "p0"), (1.0, "p90"), (2.0, "p99"), (3.0, "p99.9"), (4.0, "p99.99"), (X_MAX_COLUMN, "max")];
    for (nines, label) in x_ticks {
        let x = x_of(nines);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{plot_top:.1}" x2="{x:.1}" y2="{plot_bottom:.1}" stroke="#dddddd"/>"##
        );
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#, plot_bottom + 16.0);
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of nines)</text>"#,
        (LEFT + RIGHT) / 2.0,
        plot_bottom + 36.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency</text>"#,
        plot_top + PLOT_HEIGHT / 2.0,
        plot_top + PLOT_HEIGHT / 2.0
    );

    // SLO thresholds.
    for slo in slos {
        let y = scale.y(slo.threshold_ns);
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="{SLO_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{SLO_COLOR}" stroke="white" stroke-width="3" paint-order="stroke">{}</text>"#,
            LEFT + 6.0,
            y - 4.0,
            escape(&format!("SLO {} > {}", slo.target, format_ns(slo.threshold_ns)))
        );
    }

    // Curves, the max markers and the legend.
    let mut color_index = 0;
    for (i, (row, curve)) in rows.iter().zip(&curves).enumerate() {
        let (color, width) = if row.aggregate {
            (AGGREGATE_COLOR, 2.5)
        } else {
            color_index += 1;
            (COLORS[(color_index - 1) % COLORS.len()], 1.5)
        };
        let mut points = String::new();
        for (j, &(nines, v)) in curve.iter().enumerate() {
            // Drop the inner points of flat runs.
            let flat = j > 0 && j + 1 < curve.len() && curve[j - 1].1 == v && curve[j + 1].1 == v;
            if !flat {
                let _ = write!(points, "{:.1},{:.1} ", x_of(nines), scale.y(v));
            }
        }
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="{width}"/>"#,
            points.trim_end()
        );
        let (x4, y4) = (x_of(MAX_NINES), scale.y(row.p9999_ns));
        let (xm, ym) = (x_of(X_MAX_COLUMN), scale.y(row.max_ns));
        let _ = writeln!(
            s,
            r#"<line x1="{x4:.1}" y1="{y4:.1}" x2="{xm:.1}" y2="{ym:.1}" stroke="{color}" stroke-width="1" stroke-dasharray="2 3"/>"#
        );
        let _ = writeln!(s, r#"<circle cx="{xm:.1}" cy="{ym:.1}" r="3" fill="{color}"/>"#);

        let ly = plot_top + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="{width}"/>"#,
            RIGHT + 14.0,
            RIGHT + 36.0
        );
        let _ =
            writeln!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, RIGHT + 42.0, ly + 4.0, escape(&legend_label(row)));
    }
    let _ = writeln!(s, "</g>");
}

/// `name (n=COUNT)`, the name cut to fit the legend.
fn legend_label(row: &LatencyHistogram) -> String {
    let count = format!(" (n={})", row.count);
    let room = LEGEND_CHARS.saturating_sub(count.chars().count()).max(8);
    let name: String = if row.name.chars().count() > room {
        row.name.chars().take(room - 1).chain(std::iter::once('…')).collect()
    } else {
        row.name.clone()
    };
    name + &count
}

/// `text` with the XML special characters escaped (for text and attributes).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 text.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal XML well-formedness check: balanced, properly nested tags,
    /// quoted attributes without `<`, and only known entities.
    fn check_xml(doc: &str) -> Result<usize, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        let mut rest = doc;
        let check_entities = |text: &str| -> Result<(), String> {
            let mut t = text;
            while let Some(i) = t.find('&') {
                t = &t[i + 1..];
                let ok = ["amp;", "lt;", "gt;", "quot;", "apos;"].iter().any(|e| t.starts_with(e));
                if !ok {
                    return Err(format!("bad entity near {:?}", &t[..t.len().min(10)]));
                }
            }
            Ok(())
        };
        while let Some(open) = rest.find('<') {
            check_entities(&rest[..open])?;
            let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if tag.starts_with('?') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().ok_or(format!("</{name}> without opening"))?;
                if top != name.trim() {
                    return Err(format!("</{name}> closes <{top}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body.split_whitespace().next().ok_or("empty tag")?;
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c)) {
                return Err(format!("bad tag name {name:?}"));
            }
            // Attributes: name="value" pairs; quotes balanced, values free of '<'.
            let attrs = &body[name.len()..];
            if !attrs.matches('"').count().is_multiple_of(2) || attrs.contains('<') {
                return Err(format!("bad attributes in <{name}>"));
            }
            check_entities(attrs)?;
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name.to_owned());
            }
        }
        check_entities(rest)?;
        if !stack.is_empty() {
            return Err(format!("unclosed elements {stack:?}"));
        }
        Ok(roots)
    }

    fn hist(kind: Kind, name: &str, aggregate: bool, buckets: Vec<(u64, u64, u64)>) -> LatencyHistogram {
        let count = buckets.iter().map(|b| b.2).sum();
        let mut h = LatencyHistogram {
            kind,
            id: 1,
            name: name.to_owned(),
            aggregate,
            count,
            sum_ns: 0,
            mean_ns: 0,
            p50_ns: 0,
            p90_ns: 0,
            p99_ns: 0,
            p999_ns: 0,
            p9999_ns: 0,
            max_ns: buckets.last().map_or(0, |b| b.1),
            buckets,
        };
        h.p9999_ns = h.value_at_quantile(0.9999);
        h
    }

    fn sample() -> Histograms {
        let b = vec![(1000, 1003, 900), (100_000, 100_781, 90), (9_961_472, 10_027_007, 10)];
        Histograms {
            duration_ns: 5_000_000_000,
            precision: "",
            dropped: 0,
            histograms: vec![
                hist(Kind::Runq, "all processes", true, b.clone()),
                hist(Kind::Runq, "evil <script>&\"' (pid 1)", false, b.clone()),
                hist(Kind::Runq, "b", false, b.clone()),
                hist(Kind::Runq, "c", false, b.clone()),
                hist(Kind::Runq, "d", false, b.clone()),
                hist(Kind::Runq, "e", false, b.clone()),
                hist(Kind::Runq, "f-not-drawn", false, b.clone()),
                hist(Kind::Softirq, "NET_RX", false, vec![(0, 0, 1), (200, 200, 5)]),
            ],
            slo: vec![SloResult {
                spec: "runq=1ms".into(),
                kind: Kind::Runq,
                target: "runq".into(),
                threshold_ns: 1_000_000,
                events: 1000,
                exceeding: 10,
                fraction: 0.01,
            }],
        }
    }

    #[test]
    fn svg_is_well_formed_and_escaped() {
        let mut out = Vec::new();
        svg(&sample(), &mut out).expect("writes to a Vec");
        let doc = String::from_utf8(out).expect("UTF-8");
        assert_eq!(check_xml(&doc), Ok(1), "{doc}");
        assert!(doc.contains("evil &lt;script&gt;&amp;&quot;&apos; (pid 1)"));
        assert!(!doc.contains("<script"));
        // One panel per kind present, at most six curves each.
        assert!(doc.contains(r#"id="panel-runq""#) && doc.contains(r#"id="panel-softirq""#));
        assert!(!doc.contains("panel-syscall"));
        assert_eq!(doc.matches("<polyline").count(), 7);
        assert!(!doc.contains("f-not-drawn"));
        // Axis labels in human units, the nines axis and the SLO line.
        for label in
            [">p99.9<", ">p99.99<", ">max<", ">1µs<", ">10ms<", "SLO runq &gt; 1ms", "stroke-dasharray=\"6 4\""]
        {
            assert!(doc.contains(label), "missing {label}");
        }
    }

    #[test]
    fn empty_report_is_still_a_document() {
        let h = Histograms { duration_ns: 0, precision: "", dropped: 2, histograms: vec![], slo: vec![] };
        let doc = render(&h);
        assert_eq!(check_xml(&doc), Ok(1));
        assert!(doc.contains("no latency events recorded"));
    }

    #[test]
    fn checker_catches_bad_xml() {
        assert!(check_xml("<svg><g></svg>").is_err());
        assert!(check_xml("<svg>a < b</svg>").is_err());
        assert!(check_xml("<svg>a & b</svg>").is_err());
        assert_eq!(escape("a\u{1}b"), "a\u{fffd}b");
    }

    #[test]
    fn y_scale_is_logarithmic_and_clamped() {
        let s = YScale { lo: 3, hi: 6, top: 0.0 };
        assert_eq!(s.y(1000), PLOT_HEIGHT);
        assert_eq!(s.y(1_000_000), 0.0);
        assert!((s.y(31_623) - PLOT_HEIGHT / 2.0).abs() < 0.1);
        assert_eq!(s.y(0), PLOT_HEIGHT);
        assert_eq!(s.y(u64::MAX), 0.0);
        assert!((quantile_at(2.0) - 0.99).abs() < 1e-12);
    }
}
