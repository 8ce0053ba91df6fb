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
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(Cost {
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
    })
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
            a.iter()
                .filter(|p| p["name"].as_str() == Some(prog_name))
                .filter_map(|p| p["run_time_ns"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Start `stress-ng --cpu N` for `seconds`; its bogo ops/s is read at the end.
fn start_load(cpus: usize, seconds: u64) -> anyhow::Result<Child> {
    Command::new("stress-ng")
        .args([
            "--cpu",
            &cpus.to_string(),
            "--timeout",
            &format!("{seconds}s"),
            "--metrics-brief",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not start stress-ng")
}

fn load_throughput(child: Child) -> anyhow::Result<f64> {
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
    Ok(Phase {
        name,
        cost,
        bpf_ns,
        throughput,
    })
}

pub fn run(bin: &Path, seconds: u64) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let stats_before =
        std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default();
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")
        .context("could not enable kernel.bpf_stats_enabled")?;
    let scratch = tempfile_dir()?;
    let result = (|| {
        let baseline = measure("no profiler", seconds, cpus, None, None)?;
        let out = scratch.join("tailprof");
        let mut start_tailprof = || {
            Command::new(bin)
                .args([
                    "record",
                    "--duration",
                    &format!("{seconds}s"),
                    "--frequency",
                    "99",
                    "-o",
                ])
                .arg(&out)
                .stdout(Stdio::null())
                .spawn()
                .context("could not start tailprof")
        };
        let tailprof = measure(
            "tailprof record -F 99",
            seconds,
            cpus,
            Some(&mut start_tailprof),
            Some("on_cpu_sample"),
        )?;
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
        let perf = measure(
            "perf record -F 99 -g -a",
            seconds,
            cpus,
            Some(&mut start_perf),
            None,
        )?;
        write_report(seconds, cpus, &[baseline, tailprof, perf])
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

fn write_report(seconds: u64, cpus: usize, phases: &[Phase]) -> anyhow::Result<()> {
    let [baseline, tailprof, perf] = phases else {
        bail!("expected three phases")
    };
    let tp_total = ms(tailprof.cost.total()) + tailprof.bpf_ns as f64 / 1e6;
    let perf_total = ms(perf.cost.total());
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench` (do not edit by hand). Machine: {cpus} CPUs, kernel {}.\n",
        kernel_release()
    );
    let _ = writeln!(
        md,
        "## On-CPU sampling: {seconds} s at 99 Hz on a busy host\n"
    );
    let _ = writeln!(
        md,
        "Workload: `stress-ng --cpu {cpus}` keeps every CPU busy. Each tool samples the whole host for {seconds} s, one after the other in the same run.\n"
    );
    let _ = writeln!(md, "| phase | user ms | sys ms | BPF ms | total CPU ms | % of one CPU | workload bogo ops/s | vs no profiler |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for p in phases {
        let total = ms(p.cost.total()) + p.bpf_ns as f64 / 1e6;
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3}% | {:.1} | {:+.2}% |",
            p.name,
            ms(p.cost.user),
            ms(p.cost.sys),
            p.bpf_ns as f64 / 1e6,
            total,
            100.0 * total / (seconds as f64 * 1e3),
            p.throughput,
            100.0 * (p.throughput / baseline.throughput - 1.0),
        );
    }
    let ratio = if perf_total > 0.0 {
        tp_total / perf_total
    } else {
        f64::NAN
    };
    let _ = writeln!(
        md,
        "\n**tailprof / perf CPU cost ratio: {ratio:.2}** (goal: below 1).\n"
    );
    let _ = writeln!(
        md,
        "Cost is the user+sys time of the tool's process (wait4) plus, for tailprof, the run time of its BPF program \
         (`bpftool prog show`, `kernel.bpf_stats_enabled=1`). tailprof's figure includes symbolizing and writing \
         flamegraph.svg, stacks.folded, profile.pb.gz and summary.json; perf's covers only writing perf.data \
         (`perf report`/`perf script` would come on top). The kernel's own per-sample work for perf (frame-pointer \
         callchain walk, copy into the perf buffer) is charged to the interrupted tasks and shows only in the \
         workload's throughput column, as the work of the perf_event interrupt does for tailprof."
    );
    let path = root().join("BENCHMARKS.md");
    std::fs::write(&path, md).with_context(|| format!("could not write {}", path.display()))?;
    println!("wrote {}", path.display());
    print!("{}", std::fs::read_to_string(&path)?);
    Ok(())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
