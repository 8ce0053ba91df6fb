//! `cargo xtask bench --qualify`: a short run of the key benchmarks (about
//! three minutes), each ratio checked against its limit in
//! `qualify/limits.json`. A figure over its limit fails the run: CI runs it
//! after the tests. The limits are the figures measured in repeated runs on
//! this machine kind plus their noise band (see the file); a limit is only
//! tightened by a change that shows the new figure.

use std::{fmt::Write as _, path::Path, time::Instant};

use anyhow::{bail, Context};

use super::Section;
use crate::util::root;

/// One measured figure: lower is better for all of them.
struct Figure {
    key: &'static str,
    value: f64,
}

const LIMITS: &str = "qualify/limits.json";

/// Seconds of on-CPU sampling per tool, and of the agent's idle CPU.
const ON_CPU_SECONDS: u64 = 10;
const AGENT_SECONDS: u64 = 30;
/// Interleaved sched-pipe repetitions (medians: one disturbed run of three does not move them).
const PIPE_REPS: usize = 3;

/// The figures of the selected sections (`TAILPROF_BENCH_ONLY`, as for the
/// full benchmarks; all of them by default), and lines that explain them.
fn measure(bin: &Path, scratch: &Path, sections: &[Section]) -> anyhow::Result<(Vec<Figure>, Vec<String>)> {
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    if sections.contains(&Section::OnCpu) {
        eprintln!("xtask bench --qualify: on-CPU sampling, tailprof and perf, {ON_CPU_SECONDS} s each");
        out.push(Figure { key: "on_cpu_cost_vs_perf", value: super::on_cpu::qualify(bin, scratch, ON_CPU_SECONDS)? });
    }
    if sections.contains(&Section::SchedPipe) {
        eprintln!("xtask bench --qualify: perf bench sched pipe without a tool and under each tier, {PIPE_REPS} times");
        let (continuous, deep) = super::sched_pipe::qualify(bin, scratch, PIPE_REPS)?;
        out.push(Figure { key: "sched_pipe_slowdown_continuous", value: continuous });
        out.push(Figure { key: "sched_pipe_slowdown_deep", value: deep });
    }
    if sections.contains(&Section::Snapshot) {
        eprintln!(
            "xtask bench --qualify: continuous snapshots with 10,000 idle threads, beside an empty task iterator"
        );
        let snap = super::snapshot::qualify(bin, scratch)?;
        notes.push(format!(
            "snapshot_cost_over_empty_iteration: tailprof's snapshots {:.0} ns per thread on the host, the kernel's \
             empty task iteration {:.0} ns per task (median of {} reads before and after)",
            snap.tailprof_ns, snap.empty_ns, snap.empty_runs
        ));
        out.push(Figure { key: "snapshot_cost_over_empty_iteration", value: snap.tailprof_ns / snap.empty_ns });
    }
    if sections.contains(&Section::AgentIdle) {
        eprintln!(
            "xtask bench --qualify: the agent on an idle host, {AGENT_SECONDS} s, and a query of its last minute"
        );
        let (idle, query_ms) = super::agent::qualify(bin, scratch, AGENT_SECONDS)?;
        out.push(Figure { key: "agent_idle_cpu_percent", value: idle });
        out.push(Figure { key: "query_last_minute_ms", value: query_ms });
    }
    Ok((out, notes))
}

/// Measure, compare with the limits, write `target/qualify.md`; an error
/// names every figure over its limit.
pub fn run(bin: &Path, scratch: &Path, sections: &[Section], measured: &[(&'static str, f64)]) -> anyhow::Result<()> {
    let path = root().join(LIMITS);
    let text = std::fs::read_to_string(&path).with_context(|| format!("could not read {}", path.display()))?;
    let limits: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let began = Instant::now();
    let (mut figures, notes) = measure(bin, scratch, sections)?;
    figures.extend(measured.iter().map(|&(key, value)| Figure { key, value }));
    let mut md = String::new();
    let _ = writeln!(md, "# Performance qualification\n");
    let _ = writeln!(
        md,
        "`cargo xtask bench --qualify`, {:.0} s. Each figure against its limit in `{LIMITS}` (lower is better).\n",
        began.elapsed().as_secs_f64()
    );
    let _ =
        writeln!(md, "| figure | measured | limit | baseline | noise band | verdict |\n|---|---:|---:|---:|---:|---|");
    let mut over = Vec::new();
    for f in &figures {
        let entry = &limits["figures"][f.key];
        let Some(limit) = entry["limit"].as_f64() else {
            let _ = writeln!(md, "| {} | {:.4} | — | — | — | no limit |", f.key, f.value);
            over.push(format!("{} = {:.4} has no limit in {LIMITS}", f.key, f.value));
            continue;
        };
        let baseline = entry["baseline"].as_f64().unwrap_or(f64::NAN);
        let band = entry["band"].as_f64().unwrap_or(f64::NAN);
        let ok = f.value <= limit;
        if !ok {
            over.push(format!("{} = {:.4} over its limit {limit}", f.key, f.value));
        }
        let verdict = if ok { "ok" } else { "**regression**" };
        let _ =
            writeln!(md, "| {} | {:.4} | {limit} | {baseline} | ±{:.0}% | {verdict} |", f.key, f.value, band * 100.0);
    }
    if !notes.is_empty() {
        let _ = writeln!(md);
        for note in &notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    let out = root().join("target/qualify.md");
    std::fs::write(&out, &md).with_context(|| format!("could not write {}", out.display()))?;
    print!("{md}");
    if !over.is_empty() {
        bail!("performance regressed beyond the noise band: {}", over.join("; "));
    }
    Ok(())
}
