//! The short report printed on stdout after a capture.

use std::{collections::HashMap, fmt::Write as _};

use super::folded::frame_label;
use crate::profile::Profile;

/// Busiest threads and hottest functions (self samples), as text.
pub fn report(profile: &Profile, top: usize) -> String {
    let mut out = String::new();
    let total = profile.samples.max(1) as f64;
    let _ = writeln!(
        out,
        "{} samples over {:.1}s at {} Hz per CPU, {} lost",
        profile.samples,
        profile.duration_ns as f64 / 1e9,
        profile.frequency_hz,
        profile.lost_samples
    );
    let _ = writeln!(out, "\nbusiest threads:\n  {:>7} {:>7} {:>8}  comm", "pid", "tid", "samples");
    for t in profile.threads().iter().take(top) {
        let _ = writeln!(
            out,
            "  {:>7} {:>7} {:>8}  {} ({:.1}%)",
            t.pid,
            t.tid,
            t.on_cpu_samples,
            t.comm,
            100.0 * t.on_cpu_samples as f64 / total
        );
    }
    let mut self_samples: HashMap<String, u64> = HashMap::new();
    for stack in &profile.stacks {
        if let Some(leaf) = stack.frames.last() {
            *self_samples.entry(frame_label(leaf, profile)).or_default() += stack.count;
        }
    }
    let mut hot: Vec<_> = self_samples.into_iter().collect();
    hot.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let _ = writeln!(out, "\nhottest functions (self):\n  {:>8}  function", "samples");
    for (name, n) in hot.iter().take(top) {
        let _ = writeln!(out, "  {:>8}  {} ({:.1}%)", n, name, 100.0 * *n as f64 / total);
    }
    out
}
