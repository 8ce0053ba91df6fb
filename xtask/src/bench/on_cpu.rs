//! On-CPU sampling cost: `tailprof record --no-off-cpu -F 99` against
//! `perf record -F 99 -g -a` while `stress-ng --cpu N` keeps every CPU busy.
//!
//! The workload's own throughput with and without each tool is reported
//! beside the tools' CPU time, because the kernel-side work a perf_event does
//! for perf is charged to the interrupted tasks, not to perf.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::common::{bpf_run_time_ns_of, median, ms, set_bpf_stats, wait_with_cost, Cost};

const TAILPROF: &str = "tailprof record --no-off-cpu -F 99";
const PERF: &str = "perf record -F 99 -g -a";
const NONE: &str = "no profiler";

/// Start `stress-ng --cpu N` for `seconds`; its bogo ops/s is read at the end.
fn start_load(cpus: usize, seconds: u64) -> anyhow::Result<Child> {
    Command::new("stress-ng")
        .args(["--cpu", &cpus.to_string(), "--timeout", &format!("{seconds}s"), "--metrics-brief"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not start stress-ng")
}

fn load_throughput(child: Child) -> anyhow::Result<f64> {
    let out = child.wait_with_output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // "stress-ng: metrc: [pid] cpu  6382  2.00  3.95  0.01  3188.39  1609.25"
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = fields.iter().position(|f| *f == "cpu") {
            if fields.get(1) == Some(&"metrc:") {
                if let Some(v) = fields.get(i + 5).and_then(|v| v.parse().ok()) {
                    return Ok(v);
                }
            }
        }
    }
    bail!("could not read stress-ng's bogo ops/s from:\n{text}")
}

struct Phase {
    name: &'static str,
    cost: Cost,
    bpf_ns: u64,
    throughput: f64,
}

impl Phase {
    fn total_ms(&self) -> f64 {
        ms(self.cost.total()) + self.bpf_ns as f64 / 1e6
    }
}

fn measure(
    name: &'static str,
    seconds: u64,
    cpus: usize,
    tool: Option<&mut dyn FnMut() -> anyhow::Result<Child>>,
) -> anyhow::Result<Phase> {
    let load = start_load(cpus, seconds + 2)?;
    sleep(Duration::from_millis(500));
    let (cost, bpf_ns) = match tool {
        Some(start) => {
            let child = start()?;
            let begin = Instant::now();
            let mut bpf_ns = 0;
            // Programs unload when the tool exits: keep the last reading.
            while begin.elapsed() < Duration::from_secs(seconds) {
                sleep(Duration::from_millis(500));
                bpf_ns = bpf_ns.max(bpf_run_time_ns_of(child.id()));
            }
            (wait_with_cost(child, name, false)?, bpf_ns)
        }
        None => {
            sleep(Duration::from_secs(seconds));
            (Cost::default(), 0)
        }
    };
    let throughput = load_throughput(load)?;
    Ok(Phase { name, cost, bpf_ns, throughput })
}

/// `tailprof record` sampling on-CPU stacks only, like `perf record -g`
/// (the scheduler hooks are off), for `seconds`.
fn start_tailprof(bin: &Path, out: &Path, seconds: u64) -> anyhow::Result<Child> {
    Command::new(bin)
        .args(["record", "--no-off-cpu", "--duration", &format!("{seconds}s"), "--frequency", "99", "-o"])
        .arg(out)
        .stdout(Stdio::null())
        .spawn()
        .context("could not start tailprof")
}

/// `perf record -F 99 -g -a` for `seconds`.
fn start_perf(data: &Path, seconds: u64) -> anyhow::Result<Child> {
    Command::new("perf")
        .args(["record", "-F", "99", "-g", "-a", "-q", "-o"])
        .arg(data)
        .args(["--", "sleep", &seconds.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start perf")
}

/// Run the section; returns its markdown.
pub fn run(bin: &Path, scratch: &Path, seconds: u64, reps: usize) -> anyhow::Result<String> {
    // The BPF run time of tailprof's programs is part of its cost.
    set_bpf_stats(true)?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let out = scratch.join("tailprof-on-cpu");
    let mut start_tailprof = || start_tailprof(bin, &out, seconds);
    let perf_data = scratch.join("perf.data");
    let mut start_perf = || start_perf(&perf_data, seconds);
    // Interleaved repetitions, so that drift of the host hits every tool alike.
    let mut phases = Vec::new();
    for rep in 0..reps {
        eprintln!("xtask bench: on-CPU sampling, repetition {} of {reps}", rep + 1);
        phases.push(measure(NONE, seconds, cpus, None)?);
        phases.push(measure(TAILPROF, seconds, cpus, Some(&mut start_tailprof))?);
        phases.push(measure(PERF, seconds, cpus, Some(&mut start_perf))?);
    }
    let _ = std::fs::remove_file(&perf_data);
    Ok(report(seconds, cpus, reps, &phases))
}

fn report(seconds: u64, cpus: usize, reps: usize, phases: &[Phase]) -> String {
    fn of<'a>(phases: &'a [Phase], name: &'a str) -> impl Iterator<Item = &'a Phase> {
        phases.iter().filter(move |p| p.name == name)
    }
    let baseline = median(of(phases, NONE).map(|p| p.throughput).collect());
    let mut md = String::new();
    let _ = writeln!(md, "## On-CPU sampling: {seconds} s at 99 Hz on a busy host\n");
    let _ = writeln!(
        md,
        "Workload: `stress-ng --cpu {cpus}` keeps every CPU busy. Each tool samples the whole host for {seconds} s; \
         {reps} interleaved repetitions (baseline, tailprof, perf, baseline, …) in the same run.\n"
    );
    let _ =
        writeln!(md, "| run | phase | user ms | sys ms | BPF ms | total CPU ms | % of one CPU | workload bogo ops/s |");
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for (i, p) in phases.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3}% | {:.1} |",
            i / 3 + 1,
            p.name,
            ms(p.cost.user),
            ms(p.cost.sys),
            p.bpf_ns as f64 / 1e6,
            p.total_ms(),
            100.0 * p.total_ms() / (seconds as f64 * 1e3),
            p.throughput,
        );
    }
    let tp = median(of(phases, TAILPROF).map(Phase::total_ms).collect());
    let tp_bpf = median(of(phases, TAILPROF).map(|p| p.bpf_ns as f64 / 1e6).collect());
    let perf = median(of(phases, PERF).map(Phase::total_ms).collect());
    let tp_tput = median(of(phases, TAILPROF).map(|p| p.throughput).collect());
    let perf_tput = median(of(phases, PERF).map(|p| p.throughput).collect());
    let _ = writeln!(md, "\n| median of {reps} | total CPU ms | workload throughput vs no profiler |");
    let _ = writeln!(md, "|---|---:|---:|");
    let _ = writeln!(md, "| tailprof (process + BPF) | {tp:.1} | {:+.2}% |", 100.0 * (tp_tput / baseline - 1.0));
    let _ = writeln!(md, "| perf (process) | {perf:.1} | {:+.2}% |", 100.0 * (perf_tput / baseline - 1.0));
    let _ = writeln!(md, "\n**tailprof / perf CPU cost ratio (medians): {:.2}** (goal: below 1).", tp / perf);
    let _ = writeln!(
        md,
        "Without its BPF time (the callchain walk that perf's kernel side also does, uncounted for perf): {:.2}.\n",
        (tp - tp_bpf) / perf
    );
    let _ = writeln!(
        md,
        "Cost is the user+sys time of the tool's process (wait4) plus, for tailprof, the run time of its BPF programs \
         (`kernel.bpf_stats_enabled=1`, read from the process's BPF file descriptors). tailprof's figure includes \
         symbolizing and writing flamegraph.svg, stacks.folded, profile.pb.gz and summary.json; perf's covers only \
         writing perf.data (`perf report`/`perf script` would come on top). The kernel's own per-sample work for perf \
         (frame-pointer callchain walk, copy into the perf buffer) is charged to the interrupted tasks and shows only \
         in the workload's throughput column, whose run-to-run noise (see the baseline rows) is larger than either \
         tool's effect."
    );
    md
}

/// `--qualify`: tailprof's on-CPU cost (process plus BPF) over perf's,
/// sampling the same load at 99 Hz for `seconds` each.
pub(crate) fn qualify(bin: &Path, scratch: &Path, seconds: u64) -> anyhow::Result<f64> {
    set_bpf_stats(true)?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let out = scratch.join("qualify-on-cpu");
    let perf_data = scratch.join("qualify-perf.data");
    let mut start_tailprof = || start_tailprof(bin, &out, seconds);
    let mut start_perf = || start_perf(&perf_data, seconds);
    let ours = measure(TAILPROF, seconds, cpus, Some(&mut start_tailprof))?;
    let perf = measure(PERF, seconds, cpus, Some(&mut start_perf))?;
    let _ = std::fs::remove_file(&perf_data);
    let _ = std::fs::remove_dir_all(&out);
    Ok(ours.total_ms() / perf.total_ms().max(1e-3))
}
