//! What `tailprof noise` prints and writes, and the noise and histogram
//! files of `record`.

use std::path::{Path, PathBuf};

use super::{continuous::ContinuousReport, flame, report::NoiseReport, Measurement};
use crate::{
    latency::{self, histograms::Histograms},
    output::{flamegraph, folded::Folded},
    Result,
};

pub const NOISE_JSON: &str = "noise.json";
pub const NOISE_SVG: &str = "noise.svg";
pub const HISTOGRAMS_JSON: &str = "histograms.json";
pub const HISTOGRAMS_SVG: &str = "histograms.svg";
pub const INTERFERENCE_FOLDED: &str = "interference.folded";
pub const INTERFERENCE_SVG: &str = "interference.svg";

/// A noise window, named and summed.
pub enum Rendered {
    Deep { report: NoiseReport, histograms: Histograms },
    Continuous { report: ContinuousReport },
}

pub fn render(measured: &Measurement, slos: &[latency::slo::Slo]) -> Rendered {
    match measured {
        Measurement::Deep { noise, histograms, names } => Rendered::Deep {
            report: super::report::build(noise),
            histograms: latency::histograms::build(histograms, names, slos),
        },
        Measurement::Continuous(raw) => Rendered::Continuous { report: super::continuous::build(raw) },
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|source| crate::Error::Json { what: "the noise report", source })
}

/// The one JSON document of `noise --json`: the noise report with the
/// histograms (in the continuous tier: their absence) under `histograms`.
pub fn json_document(r: &Rendered) -> Result<String> {
    let (mut doc, histograms) = match r {
        Rendered::Deep { report, histograms } => (to_value(report)?, to_value(histograms)?),
        Rendered::Continuous { report } => (to_value(report)?, to_value(&super::continuous::histograms_absent())?),
    };
    if let Some(map) = doc.as_object_mut() {
        map.insert("histograms".into(), histograms);
    }
    serde_json::to_string_pretty(&doc).map_err(|source| crate::Error::Json { what: "noise.json", source })
}

/// The human report: the per-CPU table, victims, then the histograms.
pub fn text(r: &Rendered) -> String {
    match r {
        Rendered::Deep { report, histograms } => {
            let mut out = super::table::table(report);
            out.push('\n');
            out.push_str(&latency::text::text(histograms, 8));
            out
        }
        Rendered::Continuous { report } => super::continuous::table(report),
    }
}

fn folded(lines: Vec<(String, u64)>) -> Folded {
    let mut f = Folded::new();
    for (stack, n) in lines {
        if n > 0 {
            *f.entry(stack).or_default() += n;
        }
    }
    f
}

/// Write noise.json, noise.svg, histograms.json, histograms.svg and, with
/// victims, interference.folded and .svg into `dir`; returns the paths. The
/// continuous tier writes noise.json, noise.svg (its sampled estimates)
/// and a histograms.json that says they are absent and why.
pub fn write_files(dir: &Path, measured: &Measurement, r: &Rendered) -> Result<Vec<PathBuf>> {
    let mut files = crate::output::Files::new(dir);
    let mut write =
        |name: &str, fill: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>| files.write(name, fill);
    fn json<T: serde::Serialize>(v: &T, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *w, v).map_err(std::io::Error::other)?;
        writeln!(w)
    }
    match (measured, r) {
        (Measurement::Deep { noise: raw, .. }, Rendered::Deep { report, histograms }) => {
            write(NOISE_JSON, &mut |w| json(report, w))?;
            let sources = folded(flame::fold_sources(raw));
            write(NOISE_SVG, &mut |w| flamegraph::write(&sources, "tailprof: OS noise by CPU and source", "ns", w))?;
            write(HISTOGRAMS_JSON, &mut |w| json(histograms, w))?;
            write(HISTOGRAMS_SVG, &mut |w| latency::plot::svg(histograms, w))?;
            if !raw.victim_pids.is_empty() {
                let victims = folded(flame::fold_victims(raw));
                write(INTERFERENCE_FOLDED, &mut |w| crate::output::folded::write(&victims, w))?;
                write(INTERFERENCE_SVG, &mut |w| {
                    flamegraph::write(&victims, "tailprof: what stole time from the selected threads", "ns", w)
                })?;
            }
        }
        (Measurement::Continuous(_), Rendered::Continuous { report }) => {
            write(NOISE_JSON, &mut |w| json(report, w))?;
            let sampled = folded(super::continuous::fold_sampled(report));
            write(NOISE_SVG, &mut |w| {
                flamegraph::write(&sampled, "tailprof: OS noise by CPU and source, estimated from samples", "ns", w)
            })?;
            write(HISTOGRAMS_JSON, &mut |w| json(&super::continuous::histograms_absent(), w))?;
        }
        _ => return Err(crate::Error::Internal("noise report rendered for another tier than measured")),
    }
    Ok(files.written)
}
