//! Part of the snapshot section: the cost governor at its default budget
//! (1% of one CPU, the continuous tier's) with 10,000 idle threads, after
//! its rates have settled.

use std::{
    fmt::Write as _,
    path::Path,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::common::{
    bpf_prog_names, bpf_progs_of, median, process_cpu_ns, set_bpf_stats, spawn_record, tier_summary, wait_record, Tier,
    SNAPSHOT_ITER_PROG,
};

pub const THREADS: usize = 10_000;
/// Time the governor gets to settle before the measurement.
const SETTLE: Duration = Duration::from_secs(30);
/// The measured interval.
const MEASURE: Duration = Duration::from_secs(20);
const GOAL_PERCENT: f64 = 1.0;

pub struct Governed {
    host_threads: u64,
    /// CPU of the tool's threads over the measured interval.
    process_ns: u64,
    /// Run time of its BPF programs that run in other tasks (all but the
    /// snapshot iterator, which runs inside the tool's read()).
    bpf_outside_ns: u64,
    seconds: f64,
    /// What summary.json's `governor` says: rates in effect at the end, the
    /// number of changes, its own measured mean.
    state_hz: f64,
    frequency_hz: f64,
    changes: usize,
    own_percent: f64,
}

impl Governed {
    fn percent(&self) -> f64 {
        100.0 * (self.process_ns + self.bpf_outside_ns) as f64 / 1e9 / self.seconds
    }
}

/// One capture with the default budget; the idle threads are already up.
pub fn measure(bin: &Path, scratch: &Path, host_threads: u64) -> anyhow::Result<Governed> {
    // Statistics stay on for the whole capture, to read the run time of the
    // programs that run outside the tool (their clock reads make the
    // iterator dearer too: the figure is, if anything, pessimistic).
    set_bpf_stats(true)?;
    let out = scratch.join("governor");
    let seconds = format!("{}s", (SETTLE + MEASURE).as_secs() + 5);
    let recording = spawn_record(bin, &["record", "--tier", "continuous", "--duration", &seconds], &out)?;
    let pid = recording.child.id();
    sleep(SETTLE);
    let names = bpf_prog_names()?;
    let outside = |progs: &std::collections::BTreeMap<u32, super::common::ProgStats>| -> u64 {
        progs
            .iter()
            .filter(|(id, _)| names.get(id).map(String::as_str) != Some(SNAPSHOT_ITER_PROG))
            .map(|(_, s)| s.run_time_ns)
            .sum()
    };
    let (p0, b0, t0) = (process_cpu_ns(pid), outside(&bpf_progs_of(pid)), Instant::now());
    sleep(MEASURE);
    let (p1, b1, t1) = (process_cpu_ns(pid), outside(&bpf_progs_of(pid)), Instant::now());
    let what = "tailprof record --tier continuous (governor)";
    wait_record(recording, what)?;
    let json = tier_summary(&out, Tier::Continuous)?;
    let g = &json["governor"];
    let f = |name: &str| g[name].as_f64().with_context(|| format!("summary.json has no governor.{name}"));
    let governed = Governed {
        host_threads,
        process_ns: p1.saturating_sub(p0),
        bpf_outside_ns: b1.saturating_sub(b0),
        seconds: (t1 - t0).as_secs_f64(),
        state_hz: f("state_hz")?,
        frequency_hz: f("frequency_hz")?,
        changes: g["changes"].as_array().map_or(0, Vec::len),
        own_percent: f("measured_percent")?,
    };
    let _ = std::fs::remove_dir_all(&out);
    Ok(governed)
}

pub fn report(md: &mut String, runs: &[Governed]) {
    let _ = writeln!(
        md,
        "\n### The cost governor at its default budget, {THREADS} idle threads\n\n\
         `tailprof record --tier continuous --duration {}s -o DIR`, every other setting default: a CPU budget of 1% of \
         one CPU, snapshots asked at 20 Hz, sampling at 99 Hz. With the idle threads up, the governor gets {} s to \
         settle; then the tool's cost is measured over {} s by the benchmark itself: the CPU time of its threads \
         (/proc/PID/task/*/schedstat, the snapshot iterator included, which runs in its read()) plus the run time of \
         its BPF programs that run in other tasks (`kernel.bpf_stats_enabled=1` for the whole capture, which also \
         makes each iterator run dearer). The rates are those in effect at the end (summary.json `governor`).\n",
        (SETTLE + MEASURE).as_secs() + 5,
        SETTLE.as_secs(),
        MEASURE.as_secs()
    );
    let _ = writeln!(
        md,
        "| run | threads on host | process ms | BPF outside ms | seconds | tool CPU, % of one CPU | governor's mean over the whole capture % (its first judged interval at 20 Hz included) | snapshots Hz | sampling Hz | rate changes |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.3}% | {:.3}% | {:.3} | {:.1} | {} |",
            i + 1,
            r.host_threads,
            r.process_ns as f64 / 1e6,
            r.bpf_outside_ns as f64 / 1e6,
            r.seconds,
            r.percent(),
            r.own_percent,
            r.state_hz,
            r.frequency_hz,
            r.changes
        );
    }
    let percent = median(runs.iter().map(Governed::percent).collect());
    let _ = writeln!(
        md,
        "\n**Median tool CPU with the governor: {percent:.3}% of one CPU** (goal: at most {GOAL_PERCENT}%{}), at \
         {:.3} Hz of snapshots and {:.1} Hz of sampling (medians).",
        if percent <= GOAL_PERCENT { ", met" } else { ", missed" },
        median(runs.iter().map(|r| r.state_hz).collect()),
        median(runs.iter().map(|r| r.frequency_hz).collect()),
    );
}
