//! Cost of one thread-state snapshot (the BPF task iterator over every thread
//! on the host) with 100, 1,000 and 10,000 extra idle threads, read from
//! tailprof's own accounting in summary.json (`state_sampler`).

use std::{
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::common::{
    bpf_prog_names, bpf_progs_of, median, ms, set_bpf_stats, start_ready_helper, stop_ready_helper, wait_with_cost,
    Cost, ProgStats,
};
use crate::util::{output, root};

const THREADS: [usize; 3] = [100, 1_000, 10_000];
const SECONDS: u64 = 5;
const STATE_HZ: u64 = 20;
/// The iterator program's name as the kernel keeps it (15 bytes at most).
const ITER_PROG: &str = "thread_snapshot";
/// Goal: snapshots of 10,000 threads at 20 Hz take less than this share of one CPU.
const GOAL_SHARE: f64 = 0.02;

/// One capture with `threads` extra idle threads on the host.
struct Snap {
    threads: usize,
    /// Whether BPF run-time statistics were on (they add clock reads to every iterator program run).
    bpf_stats: bool,
    /// Threads on the host (all processes) just before the capture.
    host_threads: u64,
    snapshots: u64,
    records: u64,
    cpu_ns: u64,
    /// Run time of the iterator program over the capture (already inside
    /// `cpu_ns`; zero with statistics off).
    iter: ProgStats,
    whole: Cost,
}

impl Snap {
    fn cpu_us_per_snapshot(&self) -> f64 {
        self.cpu_ns as f64 / self.snapshots as f64 / 1e3
    }
    fn iter_us_per_snapshot(&self) -> f64 {
        self.iter.run_time_ns as f64 / self.snapshots as f64 / 1e3
    }
    fn ns_per_record(&self) -> f64 {
        self.cpu_ns as f64 / self.records as f64
    }
    fn threads_per_snapshot(&self) -> f64 {
        self.records as f64 / self.snapshots as f64
    }
    /// Share of one CPU the snapshots take at [`STATE_HZ`].
    fn share(&self) -> f64 {
        self.cpu_ns as f64 / self.snapshots as f64 * STATE_HZ as f64 / 1e9
    }
}

/// Build the idle-threads helper into `scratch`.
fn build_helper(scratch: &Path) -> anyhow::Result<PathBuf> {
    let src = root().join("xtask/workloads/idle_threads.c");
    let bin = scratch.join("idle_threads");
    output(Command::new("gcc").args(["-O2", "-Wall", "-pthread", "-o"]).arg(&bin).arg(&src))
        .with_context(|| format!("could not compile {}", src.display()))?;
    Ok(bin)
}

fn host_threads() -> u64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter(|p| p.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|p| std::fs::read_dir(p.path().join("task")).ok())
        .map(|tasks| tasks.count() as u64)
        .sum()
}

/// True once `pid` is a zombie or gone (its BPF programs are then released),
/// without reaping it, so that wait4 still gets its CPU time.
fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z"),
        Err(_) => true,
    }
}

/// Run statistics of the iterator program, read until tailprof exits.
fn follow_iterator(pid: u32, timeout: Duration) -> anyhow::Result<ProgStats> {
    let begin = Instant::now();
    let mut iter_id = None;
    let mut last = ProgStats::default();
    while !has_exited(pid) {
        if begin.elapsed() > timeout {
            bail!("tailprof did not exit within {timeout:?}");
        }
        let progs = bpf_progs_of(pid);
        if iter_id.is_none() && !progs.is_empty() {
            let names = bpf_prog_names().unwrap_or_default();
            iter_id = progs.keys().copied().find(|id| names.get(id).map(String::as_str) == Some(ITER_PROG));
        }
        if let Some(stats) = iter_id.and_then(|id| progs.get(&id)) {
            last = *stats;
        }
        sleep(Duration::from_millis(200));
    }
    Ok(last)
}

/// `state_sampler` {snapshots, records, cpu_ns} from summary.json.
fn state_sampler(out: &Path) -> anyhow::Result<(u64, u64, u64)> {
    let path = out.join("summary.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("could not read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let field = |name: &str| {
        json["state_sampler"][name]
            .as_u64()
            .with_context(|| format!("{} has no state_sampler.{name} (a tailprof without --state-hz?)", path.display()))
    };
    let (snapshots, records, cpu_ns) = (field("snapshots")?, field("records")?, field("cpu_ns")?);
    if snapshots == 0 || records == 0 {
        bail!("{}: the state sampler took no snapshot ({snapshots} snapshots, {records} records)", path.display());
    }
    Ok((snapshots, records, cpu_ns))
}

fn measure(bin: &Path, helper: &Path, scratch: &Path, threads: usize, bpf_stats: bool) -> anyhow::Result<Snap> {
    set_bpf_stats(bpf_stats)?;
    let idle = start_ready_helper(helper, threads)?;
    let host_threads = host_threads();
    let out = scratch.join(format!("snapshot-{threads}"));
    let stderr = scratch.join(format!("snapshot-{threads}.stderr"));
    let mut cmd = Command::new(bin);
    cmd.args(["record", "--duration", &format!("{SECONDS}s"), "--state-hz", &STATE_HZ.to_string(), "-o"]).arg(&out);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr)?)
        .spawn()
        .context("could not start tailprof")?;
    let iter = follow_iterator(child.id(), Duration::from_secs(SECONDS + 120));
    let whole = wait_with_cost(child, "tailprof record --state-hz", false).map_err(|e| {
        let said = std::fs::read_to_string(&stderr).unwrap_or_default();
        e.context(format!("tailprof record --state-hz failed; it said: {}", said.trim()))
    });
    stop_ready_helper(idle)?;
    let (iter, whole) = (iter?, whole?);
    let (snapshots, records, cpu_ns) = state_sampler(&out)?;
    let _ = std::fs::remove_dir_all(&out);
    Ok(Snap { threads, bpf_stats, host_threads, snapshots, records, cpu_ns, iter, whole })
}

/// Run the section; returns its markdown.
pub fn run(bin: &Path, scratch: &Path, reps: usize) -> anyhow::Result<String> {
    let helper = build_helper(scratch)?;
    let mut snaps = Vec::new();
    for rep in 0..reps {
        for threads in THREADS {
            for bpf_stats in [false, true] {
                eprintln!(
                    "xtask bench: state snapshots, repetition {} of {reps}: {threads} idle threads, bpf_stats {}",
                    rep + 1,
                    if bpf_stats { "on" } else { "off" }
                );
                snaps.push(measure(bin, &helper, scratch, threads, bpf_stats)?);
            }
        }
    }
    set_bpf_stats(true)?;
    Ok(report(reps, &snaps))
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn report(reps: usize, snaps: &[Snap]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Thread-state snapshots: cost of one snapshot at 100, 1,000 and 10,000 threads\n");
    let _ = writeln!(
        md,
        "For each count N, `xtask/workloads/idle_threads.c` starts N threads blocked in a condition-variable wait \
         (64 KiB stacks) and says \"ready\"; then `tailprof record --duration {SECONDS}s --state-hz {STATE_HZ} -o DIR` \
         (other settings default) captures the whole host. Every N runs with `kernel.bpf_stats_enabled` off (the \
         headline: statistics add clock reads to each iterator program run, i.e. to each thread record) and on (to \
         read the iterator program's run time); {reps} repetitions, interleaved. Figures come from `state_sampler` \
         in summary.json: `cpu_ns` is the CPU time (CLOCK_THREAD_CPUTIME_ID) of the thread taking the snapshots, \
         `records` the thread records read over all `snapshots`. The iterator program ({ITER_PROG}) runs inside that \
         thread's read() of the iterator, so its BPF run time (shown apart, from /proc/PID/fdinfo) is already inside \
         `cpu_ns`, not on top of it. Threads per snapshot count every thread on the host, the machine's own \
         included. Share of one CPU at {STATE_HZ} Hz = `cpu_ns / snapshots × {STATE_HZ} / 1e9`.\n"
    );
    let _ = writeln!(
        md,
        "| run | idle threads | bpf_stats | threads on host before | threads per snapshot | snapshots \
         | CPU µs per snapshot | of which BPF µs | ns per thread record | share of one CPU at {STATE_HZ} Hz \
         | tailprof whole run CPU ms |"
    );
    let _ = writeln!(md, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let per_rep = THREADS.len() * 2;
    for (i, s) in snaps.iter().enumerate() {
        let bpf = if s.bpf_stats { format!("{:.1}", s.iter_us_per_snapshot()) } else { "–".into() };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} | {} | {:.1} | {bpf} | {:.0} | {:.3}% | {:.1} |",
            i / per_rep + 1,
            s.threads,
            on_off(s.bpf_stats),
            s.host_threads,
            s.threads_per_snapshot(),
            s.snapshots,
            s.cpu_us_per_snapshot(),
            s.ns_per_record(),
            100.0 * s.share(),
            ms(s.whole.total()),
        );
    }
    let _ = writeln!(
        md,
        "\n| median of {reps} | bpf_stats | threads per snapshot | CPU µs per snapshot | of which BPF µs \
         | ns per thread record | share of one CPU at {STATE_HZ} Hz |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|");
    for threads in THREADS {
        for bpf_stats in [false, true] {
            let m = |f: fn(&Snap) -> f64| {
                median(snaps.iter().filter(|s| s.threads == threads && s.bpf_stats == bpf_stats).map(f).collect())
            };
            let bpf = if bpf_stats { format!("{:.1}", m(Snap::iter_us_per_snapshot)) } else { "–".into() };
            let _ = writeln!(
                md,
                "| {threads} idle threads | {} | {:.0} | {:.1} | {bpf} | {:.0} | {:.3}% |",
                on_off(bpf_stats),
                m(Snap::threads_per_snapshot),
                m(Snap::cpu_us_per_snapshot),
                m(Snap::ns_per_record),
                100.0 * m(Snap::share),
            );
        }
    }
    let largest = *THREADS.last().unwrap_or(&0);
    let share = median(snaps.iter().filter(|s| s.threads == largest && !s.bpf_stats).map(Snap::share).collect());
    let _ = writeln!(
        md,
        "\n**Goal ({largest} threads at {STATE_HZ} Hz under {:.0}% of one CPU): {}** (measured {:.3}%, statistics off).",
        100.0 * GOAL_SHARE,
        if share < GOAL_SHARE { "met" } else { "not met" },
        100.0 * share
    );
    md
}
