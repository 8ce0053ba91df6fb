//! What `tailprof noise` prints and writes, and the noise and histogram
//! files of `record`.

use std::path::{Path, PathBuf};

use super::{flame, report::NoiseReport, NoiseRaw};
use crate::{
    latency::{self, histograms::Histograms, HistogramNames, HistogramsRaw},
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
pub struct Rendered {
    pub report: NoiseReport,
    pub histograms: Histograms,
}

pub fn render(
    noise: &NoiseRaw,
    histograms: &HistogramsRaw,
    names: &HistogramNames,
    slos: &[latency::slo::Slo],
) -> Rendered {
    Rendered { report: super::report::build(noise), histograms: latency::histograms::build(histograms, names, slos) }
}

/// The one JSON document of `noise --json`: the noise report with the
/// histograms under `histograms`.
pub fn json_document(r: &Rendered) -> Result<String> {
    let mut doc = serde_json::to_value(&r.report).map_err(|e| crate::Error::Read(e.to_string()))?;
    if let Some(map) = doc.as_object_mut() {
        map.insert(
            "histograms".into(),
            serde_json::to_value(&r.histograms).map_err(|e| crate::Error::Read(e.to_string()))?,
        );
    }
    serde_json::to_string_pretty(&doc).map_err(|e| crate::Error::Read(e.to_string()))
}

/// The human report: the per-CPU table, victims, then the histograms.
pub fn text(r: &Rendered) -> String {
    let mut out = super::table::table(&r.report);
    out.push('\n');
    out.push_str(&latency::text::text(&r.histograms, 8));
    out
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
/// victims, interference.folded and .svg into `dir`; returns the paths.
pub fn write_files(dir: &Path, raw: &NoiseRaw, r: &Rendered) -> Result<Vec<PathBuf>> {
    let mut files = crate::output::Files::new(dir);
    let mut write =
        |name: &str, fill: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>| files.write(name, fill);
    write(NOISE_JSON, &mut |w| {
        serde_json::to_writer_pretty(&mut *w, &r.report).map_err(std::io::Error::other)?;
        writeln!(w)
    })?;
    let sources = folded(flame::fold_sources(raw));
    write(NOISE_SVG, &mut |w| flamegraph::write(&sources, "tailprof: OS noise by CPU and source", "ns", w))?;
    write(HISTOGRAMS_JSON, &mut |w| {
        serde_json::to_writer_pretty(&mut *w, &r.histograms).map_err(std::io::Error::other)?;
        writeln!(w)
    })?;
    write(HISTOGRAMS_SVG, &mut |w| latency::plot::svg(&r.histograms, w))?;
    if !raw.victim_pids.is_empty() {
        let victims = folded(flame::fold_victims(raw));
        write(INTERFERENCE_FOLDED, &mut |w| crate::output::folded::write(&victims, w))?;
        write(INTERFERENCE_SVG, &mut |w| {
            flamegraph::write(&victims, "tailprof: what stole time from the selected threads", "ns", w)
        })?;
    }
    Ok(files.written)
}
