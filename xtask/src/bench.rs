//! Overhead benchmarks, side by side with a peer in the same run; writes
//! BENCHMARKS.md at the workspace root.
//!
//! Cost of a tool = user+sys CPU time of its process (from wait4) plus, for
//! tailprof, the run time of its BPF programs (`bpftool prog show` with
//! `kernel.bpf_stats_enabled=1`). The workload's own throughput with and
//! without each tool is reported beside it, because the kernel-side work a
//! perf_event does for perf is charged to the interrupted tasks, not to perf.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::util::{output, root};

/// CPU time of a finished child.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    user: Duration,
    sys: Duration,
}

impl Cost {
    fn total(&self) -> Duration {
        self.user + self.sys
    }
}

fn wait_with_cost(child: Child) -> anyhow::Result<Cost> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: we own the child and reap it exactly once here.
    let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if ret != pid {
        bail!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
    }
    std::mem::forget(child);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("benchmarked process {pid} failed with status {status:#x}");
    }
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Ok(Cost { user: tv(usage.ru_utime), sys: tv(usage.ru_stime) })
}

/// Total BPF run time of programs with this name, nanoseconds.
fn bpf_run_time_ns(prog_name: &str) -> u64 {
    let Ok(json) = output(Command::new("bpftool").args(["prog", "show", "-j"])) else {
        return 0;
    };
    let Ok(progs) = serde_json::from_str::<serde_json::Value>(&json) else {
        return 0;
    };
    progs
        .as_array()
        .map(|a| {
            a.iter().filter(|p| p["name"].as_str() == Some(prog_name)).filter_map(|p| p["run_time_ns"].as_u64()).sum()
        })
        .unwrap_or(0)
}

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

fn measure(
    name: &'static str,
    seconds: u64,
    cpus: usize,
    tool: Option<&mut dyn FnMut() -> anyhow::Result<Child>>,
    bpf_prog: Option<&str>,
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
                if let Some(p) = bpf_prog {
                    bpf_ns = bpf_ns.max(bpf_run_time_ns(p));
                }
            }
            (wait_with_cost(child)?, bpf_ns)
        }
        None => {
            sleep(Duration::from_secs(seconds));
            (Cost::default(), 0)
        }
    };
    let throughput = load_throughput(load)?;
    Ok(Phase { name, cost, bpf_ns, throughput })
}

pub fn run(bin: &Path, seconds: u64, reps: usize) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let stats_before = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default();
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").context("could not enable kernel.bpf_stats_enabled")?;
    let scratch = tempfile_dir()?;
    let result = (|| {
        let out = scratch.join("tailprof");
        let mut start_tailprof = || {
            Command::new(bin)
                // On-CPU sampling only, like `perf record -g`: the scheduler hooks are off.
                .args(["record", "--no-off-cpu", "--duration", &format!("{seconds}s"), "--frequency", "99", "-o"])
                .arg(&out)
                .stdout(Stdio::null())
                .spawn()
                .context("could not start tailprof")
        };
        let perf_data = scratch.join("perf.data");
        let mut start_perf = || {
            Command::new("perf")
                .args(["record", "-F", "99", "-g", "-a", "-q", "-o"])
                .arg(&perf_data)
                .args(["--", "sleep", &seconds.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("could not start perf")
        };
        // Interleaved repetitions, so that drift of the host hits every tool alike.
        let mut phases = Vec::new();
        for rep in 0..reps {
            eprintln!("xtask bench: on-CPU sampling, repetition {} of {reps}", rep + 1);
            phases.push(measure("no profiler", seconds, cpus, None, None)?);
            phases.push(measure(
                "tailprof record --no-off-cpu -F 99",
                seconds,
                cpus,
                Some(&mut start_tailprof),
                Some("on_cpu_sample"),
            )?);
            phases.push(measure("perf record -F 99 -g -a", seconds, cpus, Some(&mut start_perf), None)?);
        }
        write_report(seconds, cpus, reps, &phases)
    })();
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", stats_before.trim());
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tailprof-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Phase {
    fn total_ms(&self) -> f64 {
        ms(self.cost.total()) + self.bpf_ns as f64 / 1e6
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn write_report(seconds: u64, cpus: usize, reps: usize, phases: &[Phase]) -> anyhow::Result<()> {
    fn of<'a>(phases: &'a [Phase], name: &'a str) -> impl Iterator<Item = &'a Phase> {
        phases.iter().filter(move |p| p.name == name)
    }
    let baseline = median(of(phases, "no profiler").map(|p| p.throughput).collect());
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench` (do not edit by hand). Machine: {cpus} CPUs, kernel {}.\n",
        kernel_release()
    );
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
    let tp = median(of(phases, "tailprof record --no-off-cpu -F 99").map(Phase::total_ms).collect());
    let tp_bpf = median(of(phases, "tailprof record --no-off-cpu -F 99").map(|p| p.bpf_ns as f64 / 1e6).collect());
    let perf = median(of(phases, "perf record -F 99 -g -a").map(Phase::total_ms).collect());
    let tp_tput = median(of(phases, "tailprof record --no-off-cpu -F 99").map(|p| p.throughput).collect());
    let perf_tput = median(of(phases, "perf record -F 99 -g -a").map(|p| p.throughput).collect());
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
        "Cost is the user+sys time of the tool's process (wait4) plus, for tailprof, the run time of its BPF program \
         (`bpftool prog show`, `kernel.bpf_stats_enabled=1`). tailprof's figure includes symbolizing and writing \
         flamegraph.svg, stacks.folded, profile.pb.gz and summary.json; perf's covers only writing perf.data \
         (`perf report`/`perf script` would come on top). The kernel's own per-sample work for perf (frame-pointer \
         callchain walk, copy into the perf buffer) is charged to the interrupted tasks and shows only in the \
         workload's throughput column, whose run-to-run noise (see the baseline rows) is larger than either tool's effect."
    );
    let path = root().join("BENCHMARKS.md");
    std::fs::write(&path, md).with_context(|| format!("could not write {}", path.display()))?;
    println!("wrote {}", path.display());
    print!("{}", std::fs::read_to_string(&path)?);
    Ok(())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}
