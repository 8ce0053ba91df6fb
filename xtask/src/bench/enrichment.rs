//! Enrichment cost: CPU per new process under an exec storm against
//! `perf record -a -g -F 99` (which also follows every new process), the
//! per-sample cost of finding a sample's process, and tailprof's memory per
//! 1,000 tracked processes.
//!
//! - Exec storm: `xtask/workloads/exec_storm.c` forks and execs
//!   [`STORM_RUNS`] hard links of itself one after another, each spinning
//!   1 ms; each tool captures the host with and without the storm.
//! - Per sample: `enrich-microbench` (xtask/src/bin) times tailprof's own
//!   `ProcessTable::current` and `StackAggregator::add`.
//! - Memory: `xtask/workloads/idle_procs.c` keeps N blocked processes alive
//!   while tailprof (default settings) captures; its RSS is read in steady
//!   state.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::common::{
    bpf_prog_names, bpf_progs_of, has_exited, interrupt, median, ms, perf_event_fds, process_cpu_ns, prog_deltas,
    spawn_record, start_ready_helper, stop_ready_helper, summary, wait_with_cost, Cost, ProgStats, Recording,
};
use crate::util::{cargo, output, root, run as run_cmd};

/// New processes per storm (one fork and one exec each): about 2 s on
/// 2 vCPUs without a tool.
const STORM_RUNS: usize = 1_000;
/// Capture length of every storm phase; the storm starts [`STORM_DELAY`]
/// after the tool and must end inside the capture (checked).
const STORM_CAPTURE_S: u64 = 5;
const STORM_DELAY: Duration = Duration::from_secs(1);
/// In the phases without a storm, the tool's CPU is read over this window,
/// to subtract its idle rate from its CPU during a storm.
const IDLE_WINDOW: Duration = Duration::from_secs(2);
const FREQ: u64 = 99;
/// Idle processes kept alive in the memory phases.
const PROCESSES: [usize; 3] = [0, 1_000, 10_000];
/// RSS is read between these times after tailprof starts (after its first
/// snapshot has read every process), then it is interrupted.
const RSS_FROM: Duration = Duration::from_millis(2_500);
const RSS_UNTIL: Duration = Duration::from_millis(3_500);
/// BPF programs of the fork and exec hooks (names as the kernel keeps them).
const PROCESS_PROGS: [&str; 2] = ["process_exec", "process_fork"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    None,
    Tailprof,
    Perf,
}

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::None => "no tool",
            Tool::Tailprof => "tailprof",
            Tool::Perf => "perf",
        }
    }
}

/// tailprof's `enrichment` accounting and sample count (summary.json).
#[derive(Debug, Clone, Copy, Default)]
struct Enrich {
    processes: u64,
    events: u64,
    procfs_reads: u64,
    procfs_misses: u64,
    procfs_ns: u64,
    samples: u64,
}

impl Enrich {
    fn us_per_read(&self) -> f64 {
        self.procfs_ns as f64 / self.procfs_reads.max(1) as f64 / 1e3
    }
}

/// One storm phase: a tool (or none) with or without the storm.
struct StormRun {
    tool: Tool,
    storm: bool,
    /// user+sys of the tool's whole run (wait4).
    whole: Cost,
    /// CPU of the tool's threads before the window (start-up), from schedstat.
    startup_ns: u64,
    /// CPU of the tool's threads over the window (the storm, or
    /// [`IDLE_WINDOW`]), from schedstat.
    window_cpu_ns: u64,
    window_s: f64,
    /// Run time of the tool's BPF programs over the window, by name.
    bpf: BTreeMap<String, ProgStats>,
    enrich: Option<Enrich>,
}

impl StormRun {
    fn bpf_ns(&self, names: Option<&[&str]>) -> u64 {
        self.bpf
            .iter()
            .filter(|(n, _)| names.is_none_or(|names| names.contains(&n.as_str())))
            .map(|(_, s)| s.run_time_ns)
            .sum()
    }
    /// CPU per second of window, ns.
    fn window_rate(&self) -> f64 {
        self.window_cpu_ns as f64 / self.window_s
    }
    /// The whole run's CPU but its start-up, ms: start-up (loading
    /// programs, perf's buffers and synthesized records) varies more from
    /// run to run than what a storm adds.
    fn after_startup_ms(&self) -> f64 {
        ms(self.whole.total()) - self.startup_ns as f64 / 1e6
    }
    fn bpf_rate(&self) -> f64 {
        self.bpf_ns(None) as f64 / self.window_s
    }
}

/// One memory phase: tailprof with `processes` idle processes on the host.
struct MemRun {
    processes: usize,
    /// Processes in summary.json (every generation seen).
    tracked: u64,
    /// Highest VmRSS and RssAnon while capturing, KiB.
    rss_kib: u64,
    anon_kib: u64,
    /// VmHWM of the whole run (start-up and writing the output included), KiB.
    peak_kib: u64,
    /// memlock of the BPF maps tailprof holds, bytes.
    map_bytes: u64,
    /// Thread records per snapshot and CPU ns per record (state_sampler).
    records_per_snapshot: f64,
    ns_per_record: f64,
}

/// One run of enrich-microbench.
#[derive(Debug, Clone, Copy)]
struct Micro {
    processes: u64,
    procfs_reads: u64,
    procfs_ns: u64,
    heap_bytes: i64,
    lookup_ns: f64,
    add_ns: f64,
    kernel_frames: u64,
    user_frames: u64,
    /// Size of one `ProcessInfo` (strings and maps it owns not included).
    info_bytes: u64,
}

impl Micro {
    fn heap_kib_per_1000(&self) -> f64 {
        self.heap_bytes as f64 / 1024.0 / self.processes as f64 * 1000.0
    }
    fn us_per_read(&self) -> f64 {
        self.procfs_ns as f64 / self.procfs_reads.max(1) as f64 / 1e3
    }
}

fn compile(scratch: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let src = root().join(format!("xtask/workloads/{name}.c"));
    let bin = scratch.join(name);
    output(Command::new("gcc").args(["-O2", "-Wall", "-o"]).arg(&bin).arg(&src))
        .with_context(|| format!("could not compile {}", src.display()))?;
    Ok(bin)
}

/// The storm driver, and a directory of [`STORM_RUNS`] hard links to it.
fn build_storm(scratch: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let driver = compile(scratch, "exec_storm")?;
    let dir = scratch.join("storm");
    std::fs::create_dir_all(&dir)?;
    for i in 0..STORM_RUNS {
        let link = dir.join(format!("storm-{i:04}"));
        if !link.exists() {
            std::fs::hard_link(&driver, &link).with_context(|| format!("could not link {}", link.display()))?;
        }
    }
    Ok((driver, dir))
}

/// Build the microbenchmark (it links the tailprof library).
fn build_micro() -> anyhow::Result<PathBuf> {
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "xtask",
        "--features",
        "enrich-microbench",
        "--bin",
        "enrich-microbench",
    ]))?;
    let bin = root().join("target/release/enrich-microbench");
    if !bin.exists() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

/// Storm begin and end (CLOCK_MONOTONIC ns) and wall seconds.
fn run_storm(driver: &Path, dir: &Path) -> anyhow::Result<(u64, u64, f64)> {
    let out = output(Command::new(driver).arg(dir).arg(STORM_RUNS.to_string()))?;
    let fields: Vec<&str> = out.split_whitespace().collect();
    match fields[..] {
        [b, e, s] => Ok((b.parse()?, e.parse()?, s.parse()?)),
        _ => bail!("exec_storm printed {out:?}, not \"BEGIN_NS END_NS SECONDS\""),
    }
}

fn enrich_of(s: &serde_json::Value) -> anyhow::Result<Enrich> {
    let e = &s["enrichment"];
    let field = |name: &str| e[name].as_u64().with_context(|| format!("summary.json has no enrichment.{name}"));
    Ok(Enrich {
        processes: field("processes")?,
        events: field("events")?,
        procfs_reads: field("procfs_reads")?,
        procfs_misses: field("procfs_misses")?,
        procfs_ns: field("procfs_ns")?,
        samples: s["samples"].as_u64().unwrap_or(0),
    })
}

fn spawn_tool(tool: Tool, bin: &Path, out: &Path, stderr: &Path) -> anyhow::Result<Child> {
    let mut cmd = match tool {
        Tool::None => bail!("no tool to start"),
        Tool::Tailprof => {
            let mut cmd = Command::new(bin);
            cmd.args(["record", "-d", &format!("{STORM_CAPTURE_S}s"), "-F", &FREQ.to_string(), "-o"]).arg(out);
            cmd
        }
        Tool::Perf => {
            let mut cmd = Command::new("perf");
            cmd.args(["record", "-a", "-g", "-F", &FREQ.to_string(), "-q", "-o"]).arg(out).args([
                "--",
                "sleep",
                &STORM_CAPTURE_S.to_string(),
            ]);
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(stderr)?)
        .spawn()
        .with_context(|| format!("could not start {}", tool.label()))
}

fn measure_storm(
    tool: Tool,
    storm: bool,
    bin: &Path,
    driver: &Path,
    dir: &Path,
    scratch: &Path,
) -> anyhow::Result<StormRun> {
    if tool == Tool::None {
        let (_, _, secs) = run_storm(driver, dir)?;
        let none = StormRun {
            tool,
            storm,
            whole: Cost::default(),
            startup_ns: 0,
            window_cpu_ns: 0,
            window_s: secs,
            bpf: BTreeMap::new(),
            enrich: None,
        };
        return Ok(none);
    }
    let out = scratch.join(format!("enrich-{}-{storm}.out", tool.label()));
    let stderr = out.with_extension("stderr");
    let mut child = spawn_tool(tool, bin, &out, &stderr)?;
    let pid = child.id();
    sleep(STORM_DELAY);
    let ready = match tool {
        Tool::Tailprof => !bpf_progs_of(pid).is_empty(),
        _ => perf_event_fds(pid) > 0,
    };
    if !ready || child.try_wait()?.is_some() {
        let _ = child.kill();
        let _ = child.wait();
        let said = std::fs::read_to_string(&stderr).unwrap_or_default();
        bail!("{} was not capturing {STORM_DELAY:?} after its start: {}", tool.label(), said.trim());
    }
    let names = if tool == Tool::Tailprof { bpf_prog_names().unwrap_or_default() } else { BTreeMap::new() };
    let (cpu_before, progs_before) = (process_cpu_ns(pid), bpf_progs_of(pid));
    let begin = Instant::now();
    let window = if storm {
        Some(run_storm(driver, dir))
    } else {
        sleep(IDLE_WINDOW);
        None
    };
    let window_s = begin.elapsed().as_secs_f64();
    let (cpu_after, progs_after) = (process_cpu_ns(pid), bpf_progs_of(pid));
    let still_running = child.try_wait()?.is_none();
    let what = format!("{} record", tool.label());
    let whole = wait_with_cost(child, &what, false).map_err(|e| {
        let said = std::fs::read_to_string(&stderr).unwrap_or_default();
        e.context(format!("{what} failed; it said: {}", said.trim()))
    })?;
    let window = window.transpose()?;
    if !still_running {
        bail!("the {what} capture ({STORM_CAPTURE_S} s) ended before the storm did: raise STORM_CAPTURE_S");
    }
    let (window_s, storm_span) = match window {
        Some((b, e, secs)) => (secs, Some((b, e))),
        None => (window_s, None),
    };
    let enrich = if tool == Tool::Tailprof {
        let s = summary(&out)?;
        if let Some((b, e)) = storm_span {
            let (start, end) = (s["window_start_ns"].as_u64().unwrap_or(0), s["window_end_ns"].as_u64().unwrap_or(0));
            if !(start <= b && e <= end) {
                bail!("the storm [{b}, {e}] ns is not inside tailprof's capture window [{start}, {end}] ns");
            }
        }
        Some(enrich_of(&s)?)
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&out);
    Ok(StormRun {
        tool,
        storm,
        whole,
        startup_ns: cpu_before,
        window_cpu_ns: cpu_after.saturating_sub(cpu_before),
        window_s,
        bpf: prog_deltas(&progs_before, &progs_after, &names),
        enrich,
    })
}

/// VmRSS, RssAnon and VmHWM (peak RSS) of `pid`, KiB; zeros once it is gone.
fn rss_kib(pid: u32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"), field("VmHWM:"))
}

/// memlock of the distinct BPF maps `pid` holds (fdinfo), bytes.
fn bpf_map_bytes(pid: u32) -> u64 {
    let mut maps = BTreeMap::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    for fd in fds.flatten() {
        if std::fs::read_link(fd.path()).map(|t| t.as_os_str() != "anon_inode:bpf-map").unwrap_or(true) {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
            .unwrap_or_default();
        let field =
            |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok());
        if let (Some(id), Some(bytes)) = (field("map_id"), field("memlock")) {
            maps.insert(id, bytes);
        }
    }
    maps.values().sum()
}

fn run_micro(micro: &Path, max: Option<usize>) -> anyhow::Result<Micro> {
    let mut cmd = Command::new(micro);
    if let Some(max) = max {
        cmd.arg(max.to_string());
    }
    let out = output(&mut cmd)?;
    let j: serde_json::Value = serde_json::from_str(out.trim()).context("enrich-microbench printed no JSON")?;
    let u = |k: &str| j[k].as_u64().with_context(|| format!("enrich-microbench printed no {k}"));
    let f = |k: &str| j[k].as_f64().with_context(|| format!("enrich-microbench printed no {k}"));
    Ok(Micro {
        processes: u("processes")?,
        procfs_reads: u("procfs_reads")?,
        procfs_ns: u("procfs_ns")?,
        heap_bytes: j["heap_bytes"].as_i64().context("enrich-microbench printed no heap_bytes")?,
        lookup_ns: f("lookup_ns")?,
        add_ns: f("add_ns")?,
        kernel_frames: u("kernel_frames")?,
        user_frames: u("user_frames")?,
        info_bytes: u("info_bytes")?,
    })
}

/// tailprof (default settings) with `processes` idle processes; with
/// `micro`, the microbenchmark runs too (after tailprof, before the
/// processes go), for 1,000 and for all processes on the host.
fn measure_memory(
    bin: &Path,
    helper: &Path,
    scratch: &Path,
    processes: usize,
    micro: Option<&Path>,
) -> anyhow::Result<(MemRun, Vec<Micro>)> {
    let idle = start_ready_helper(helper, processes)?;
    let out = scratch.join(format!("enrich-mem-{processes}"));
    let Recording { child, stderr } = spawn_record(bin, &["record", "-d", "600s"], &out)?;
    let pid = child.id();
    let begin = Instant::now();
    let (mut rss, mut anon, mut map_bytes) = (0, 0, 0);
    while begin.elapsed() < RSS_UNTIL {
        if begin.elapsed() >= RSS_FROM {
            let (r, a, _) = rss_kib(pid);
            (rss, anon) = (rss.max(r), anon.max(a));
            map_bytes = map_bytes.max(bpf_map_bytes(pid));
        }
        sleep(Duration::from_millis(100));
    }
    interrupt(&child)?;
    // The peak, while it writes its output: VmHWM until it exits (wait4's
    // ru_maxrss would also count the RSS of the process that spawned it).
    let mut peak_kib = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !has_exited(pid) && Instant::now() < deadline {
        peak_kib = peak_kib.max(rss_kib(pid).2);
        sleep(Duration::from_millis(10));
    }
    wait_with_cost(child, "tailprof record", true).map_err(|e| {
        let said = std::fs::read_to_string(&stderr).unwrap_or_default();
        e.context(format!("tailprof record failed; it said: {}", said.trim()))
    })?;
    let s = summary(&out)?;
    let _ = std::fs::remove_dir_all(&out);
    let tracked = enrich_of(&s)?.processes;
    if (tracked as usize) < processes {
        bail!("tailprof tracked {tracked} processes with {processes} idle ones on the host");
    }
    let sampler = |k: &str| s["state_sampler"][k].as_u64().unwrap_or(0) as f64;
    let (snapshots, records, cpu_ns) = (sampler("snapshots"), sampler("records"), sampler("cpu_ns"));
    let mut micros = Vec::new();
    if let Some(micro) = micro {
        micros.push(run_micro(micro, Some(1_000))?);
        micros.push(run_micro(micro, None)?);
    }
    stop_ready_helper(idle)?;
    let run = MemRun {
        processes,
        tracked,
        rss_kib: rss,
        anon_kib: anon,
        peak_kib,
        map_bytes,
        records_per_snapshot: records / snapshots.max(1.0),
        ns_per_record: cpu_ns / records.max(1.0),
    };
    Ok((run, micros))
}

/// Run the section; returns its markdown.
pub fn run(bin: &Path, scratch: &Path, reps: usize) -> anyhow::Result<String> {
    let micro = build_micro()?;
    let (driver, dir) = build_storm(scratch)?;
    let helper = compile(scratch, "idle_procs")?;
    let largest = *PROCESSES.last().unwrap_or(&0);
    let mut storms = Vec::new();
    let mut mems = Vec::new();
    let mut micros = Vec::new();
    // Interleaved repetitions, so that drift of the host hits every phase alike.
    for rep in 0..reps {
        let phases = [
            (Tool::None, true),
            (Tool::Tailprof, false),
            (Tool::Tailprof, true),
            (Tool::Perf, false),
            (Tool::Perf, true),
        ];
        for (tool, storm) in phases {
            eprintln!(
                "xtask bench: enrichment, repetition {} of {reps}: {}, {}",
                rep + 1,
                tool.label(),
                if storm { "exec storm" } else { "idle" }
            );
            storms.push(measure_storm(tool, storm, bin, &driver, &dir, scratch)?);
        }
        for processes in PROCESSES {
            eprintln!("xtask bench: enrichment, repetition {} of {reps}: {processes} idle processes", rep + 1);
            let with_micro = (processes == largest).then_some(micro.as_path());
            let (run, m) = measure_memory(bin, &helper, scratch, processes, with_micro)?;
            mems.push(run);
            micros.extend(m);
        }
    }
    Ok(report(reps, &storms, &mems, &micros))
}

fn of(runs: &[StormRun], tool: Tool, storm: bool) -> impl Iterator<Item = &StormRun> {
    runs.iter().filter(move |r| r.tool == tool && r.storm == storm)
}

fn med(runs: &[StormRun], tool: Tool, storm: bool, f: impl Fn(&StormRun) -> f64) -> f64 {
    median(of(runs, tool, storm).map(f).collect())
}

fn report(reps: usize, storms: &[StormRun], mems: &[MemRun], micros: &[Micro]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Enrichment: cost per new process, per sample, and memory per 1,000 processes\n");
    report_storm(&mut md, reps, storms);
    report_micro(&mut md, reps, micros);
    report_memory(&mut md, reps, mems, micros);
    md
}

fn report_storm(md: &mut String, reps: usize, runs: &[StormRun]) {
    let n = STORM_RUNS as f64;
    let _ = writeln!(md, "### Per new process: an exec storm\n");
    let _ = writeln!(
        md,
        "Storm: `xtask/workloads/exec_storm.c` forks and execs {STORM_RUNS} hard links of itself (storm-0000, \
         storm-0001, …: a name, comm and exe of their own each) one after another; each spins for 1 ms (reading the \
         vDSO clock: no system calls) and exits. Tools, each capturing the whole host for {STORM_CAPTURE_S} s: `tailprof record -d {STORM_CAPTURE_S}s \
         -F {FREQ} -o DIR` (default settings: scheduler hooks, thread-state snapshots, fork and exec hooks, a procfs \
         read of every exec'd process) and `perf record -a -g -F {FREQ} -o FILE -- sleep {STORM_CAPTURE_S}` (which \
         follows new processes too: COMM, MMAP and FORK records, build ids collected at the end). The storm starts \
         {} s after the tool; tailprof's capture window is checked to contain it. Every tool runs once with the \
         storm and once without (idle); {reps} interleaved repetitions, medians reported.\n",
        STORM_DELAY.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "Whole run = user+sys of the tool's process from wait4 (start-up, capture, writing its output). Start-up \
         = CPU of the tool's threads (/proc/PID/task/*/schedstat) when the storm (or the idle window) begins; it \
         varies more from run to run than what the storm adds, so the per-exec figures leave it out. During the \
         window = CPU of the tool's threads while the storm ran, or over {} s when idle; BPF = run time of \
         tailprof's programs over the same window (`kernel.bpf_stats_enabled=1`, /proc/PID/fdinfo). Extra CPU per \
         exec = (whole run − start-up, with storm − idle) / {STORM_RUNS}; of which during the storm = CPU in the \
         window with the storm − the idle rate times the storm's length, / {STORM_RUNS}. procfs figures are tailprof's own (`enrichment` in summary.json: \
         `procfs_ns` is wall time in the reads).\n",
        IDLE_WINDOW.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| run | tool | storm | whole run user ms | sys ms | total ms | start-up ms | window s | CPU in window ms | BPF in window ms \
         | of which fork+exec hooks ms | samples | processes | fork/exec events | procfs reads (misses) | µs per procfs read |"
    );
    let _ = writeln!(md, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in runs.iter().enumerate() {
        let e = r.enrich.map_or_else(
            || "| | | | | |".to_owned(),
            |e| {
                format!(
                    "| {} | {} | {} | {} ({}) | {:.1} |",
                    e.samples,
                    e.processes,
                    e.events,
                    e.procfs_reads,
                    e.procfs_misses,
                    e.us_per_read()
                )
            },
        );
        let tp = r.tool == Tool::Tailprof;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {} | {} {e}",
            i / 5 + 1,
            r.tool.label(),
            if r.storm { "yes" } else { "idle" },
            ms(r.whole.user),
            ms(r.whole.sys),
            ms(r.whole.total()),
            r.startup_ns as f64 / 1e6,
            r.window_s,
            r.window_cpu_ns as f64 / 1e6,
            if tp { format!("{:.1}", r.bpf_ns(None) as f64 / 1e6) } else { "–".into() },
            if tp { format!("{:.1}", r.bpf_ns(Some(&PROCESS_PROGS)) as f64 / 1e6) } else { "–".into() },
        );
    }

    let storm_none = med(runs, Tool::None, true, |r| r.window_s);
    let per_exec = |tool: Tool| {
        let whole =
            med(runs, tool, true, StormRun::after_startup_ms) - med(runs, tool, false, StormRun::after_startup_ms);
        let idle_rate = med(runs, tool, false, StormRun::window_rate);
        let window = med(runs, tool, true, |r| r.window_cpu_ns as f64 - idle_rate * r.window_s);
        (whole * 1e3 / n, window / 1e3 / n)
    };
    let (tp_whole, tp_window) = per_exec(Tool::Tailprof);
    let (perf_whole, perf_window) = per_exec(Tool::Perf);
    let bpf_idle_rate = med(runs, Tool::Tailprof, false, StormRun::bpf_rate);
    let tp_bpf = med(runs, Tool::Tailprof, true, |r| r.bpf_ns(None) as f64 - bpf_idle_rate * r.window_s) / 1e3 / n;
    let tp_hooks = med(runs, Tool::Tailprof, true, |r| r.bpf_ns(Some(&PROCESS_PROGS)) as f64) / 1e3 / n;
    let enrich = |f: fn(&Enrich) -> f64| {
        median(of(runs, Tool::Tailprof, true).filter_map(|r| r.enrich.as_ref()).map(f).collect())
    };
    let read_us = enrich(Enrich::us_per_read);
    let reads_per_exec = enrich(|e| e.procfs_reads as f64) / n;
    let procfs_per_exec = enrich(|e| e.procfs_ns as f64) / 1e3 / n;
    let slowdown = |tool: Tool| {
        let s = med(runs, tool, true, |r| r.window_s);
        (100.0 * (s / storm_none - 1.0), (s - storm_none) * 1e6 / n)
    };
    let (tp_slow, tp_slow_us) = slowdown(Tool::Tailprof);
    let (perf_slow, perf_slow_us) = slowdown(Tool::Perf);

    let _ = writeln!(
        md,
        "\n| median of {reps} | whole run idle ms | start-up ms | after start-up, idle ms \
         | after start-up, with storm ms | extra CPU per exec µs | of which during the storm µs | storm s \
         | storm slowdown | storm µs per exec added |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(md, "| no tool | | | | | | | {storm_none:.2} | | |");
    for (tool, whole, window, slow, slow_us) in [
        (Tool::Tailprof, tp_whole, tp_window, tp_slow, tp_slow_us),
        (Tool::Perf, perf_whole, perf_window, perf_slow, perf_slow_us),
    ] {
        let _ = writeln!(
            md,
            "| {} (process) | {:.1} | {:.1} | {:.1} | {:.1} | {whole:.0} | {window:.0} | {:.2} | {slow:+.1}% \
             | {slow_us:.0} |",
            tool.label(),
            med(runs, tool, false, |r| ms(r.whole.total())),
            med(runs, tool, false, |r| r.startup_ns as f64 / 1e6),
            med(runs, tool, false, StormRun::after_startup_ms),
            med(runs, tool, true, StormRun::after_startup_ms),
            med(runs, tool, true, |r| r.window_s),
        );
    }
    let _ = writeln!(
        md,
        "| tailprof BPF, all programs | | | | | | {tp_bpf:.1} | | | |\n\
         | tailprof BPF, fork+exec hooks | | | | | | {tp_hooks:.1} | | | |"
    );
    // The same ratio within each repetition, to show its spread.
    let ratios: Vec<f64> = runs
        .chunks(5)
        .filter_map(|rep| {
            let whole = |tool: Tool, storm: bool| {
                rep.iter().find(|r| r.tool == tool && r.storm == storm).map(StormRun::after_startup_ms)
            };
            let tp = whole(Tool::Tailprof, true)? - whole(Tool::Tailprof, false)?;
            let perf = whole(Tool::Perf, true)? - whole(Tool::Perf, false)?;
            (perf > 0.0).then_some(tp / perf)
        })
        .collect();
    let spread = if ratios.is_empty() {
        "–".to_owned()
    } else {
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.1} to {hi:.1}")
    };
    let _ = writeln!(
        md,
        "\n**tailprof / perf extra CPU per new process (medians): {:.2}** ({tp_whole:.0} µs against \
         {perf_whole:.0} µs per exec; within single repetitions {spread}: perf's extra is small against the spread \
         of its idle runs), plus {tp_bpf:.0} µs of tailprof's BPF programs per exec. Of tailprof's {tp_whole:.0} \
         µs, {tp_window:.0} µs are spent while the storm runs and the rest at the end. perf spends almost nothing \
         during the storm ({perf_window:.1} µs per exec: it only copies its ring buffers to perf.data) and does its \
         per-process work at the end (reading perf.data back for build ids), so only whole-run figures \
         compare like with like. The storm's own run time varies by ±5% from run to run (see the no-tool rows): \
         its slowdown column is within noise for perf.\n",
        tp_whole / perf_whole,
    );
    let _ = writeln!(
        md,
        "tailprof read procfs {reads_per_exec:.2} times per exec (the exec'd program, and the processes already \
         there at the start), at {read_us:.1} µs per read (median), {procfs_per_exec:.0} µs of wall time per exec: \
         most of what it spends during the storm. Each exec makes two process generations (the fork's and the \
         exec's: the processes column). The rest of its extra CPU goes into the events, samples and snapshots of \
         {STORM_RUNS} short-lived processes and, at the end, into writing {STORM_RUNS} more threads and \
         {} more process generations to its outputs. In the kernel, the fork and exec hooks ran {tp_hooks:.1} µs per \
         exec, and all of its BPF programs {tp_bpf:.1} µs (the scheduler hooks on the storm's switches and system \
         calls included; per program below). perf's kernel-side work per new process (COMM, MMAP and FORK \
         records) is charged to the storm, not to perf, and shows only in the storm's slowdown.\n",
        2 * STORM_RUNS
    );
    report_programs(md, runs);
}

/// tailprof's BPF programs while the storm ran, per exec (medians).
fn report_programs(md: &mut String, runs: &[StormRun]) {
    let n = STORM_RUNS as f64;
    let storm: Vec<&StormRun> = of(runs, Tool::Tailprof, true).collect();
    let mut names: Vec<&String> = storm.iter().flat_map(|r| r.bpf.keys()).collect();
    names.sort();
    names.dedup();
    let _ = writeln!(
        md,
        "tailprof's BPF programs while the storm ran (medians; the rest of the host and the idle rate included, \
         names cut to 15 bytes by the kernel):\n"
    );
    let _ = writeln!(md, "| program | runs per exec | ns per run | µs per exec |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    for name in names {
        let stat = |r: &StormRun| r.bpf.get(name).copied().unwrap_or_default();
        let runs_per = median(storm.iter().map(|r| stat(r).run_cnt as f64 / n).collect());
        let ns_per_run =
            median(storm.iter().map(|r| stat(r).run_time_ns as f64 / stat(r).run_cnt.max(1) as f64).collect());
        let us = median(storm.iter().map(|r| stat(r).run_time_ns as f64 / n / 1e3).collect());
        let _ = writeln!(md, "| {name} | {runs_per:.2} | {ns_per_run:.0} | {us:.1} |");
    }
    let _ = writeln!(md);
}

fn report_micro(md: &mut String, reps: usize, micros: &[Micro]) {
    let Some(first) = micros.first() else { return };
    let _ = writeln!(md, "### Per sample: finding the sample's process\n");
    let _ = writeln!(
        md,
        "`enrich-microbench` (xtask/src/bin, linked with the tailprof library) fills a `ProcessTable` with the \
         host's live processes (the lowest 1,000 pids, then all of them, with {} idle processes running), one \
         procfs read each as tailprof does on first sight, then times `ProcessTable::current(pid)` (what every \
         sample pays before aggregation) over 4,000,000 lookups of known pids in a pseudo-random order, and \
         `StackAggregator::add` of one repeated sample ({} kernel + {} user frames; a hash of the whole stack and \
         two small allocations) over 1,000,000 calls; medians of 5 rounds per run, then of {reps} runs.\n",
        PROCESSES.last().unwrap_or(&0),
        first.kernel_frames,
        first.user_frames
    );
    let _ =
        writeln!(md, "| known processes | ns per lookup | ns per aggregation | lookup share of lookup + aggregation |");
    let _ = writeln!(md, "|---:|---:|---:|---:|");
    let mut sizes: Vec<u64> = micros.iter().map(|m| m.processes).collect();
    sizes.sort_unstable();
    sizes.dedup_by(|a, b| a.abs_diff(*b) < 100);
    for size in sizes {
        let at: Vec<&Micro> = micros.iter().filter(|m| m.processes.abs_diff(size) < 100).collect();
        let lookup = median(at.iter().map(|m| m.lookup_ns).collect());
        let add = median(at.iter().map(|m| m.add_ns).collect());
        let procs = median(at.iter().map(|m| m.processes as f64).collect());
        let _ = writeln!(md, "| {procs:.0} | {lookup:.1} | {add:.1} | {:.1}% |", 100.0 * lookup / (lookup + add));
    }
    let _ = writeln!(md);
}

fn report_memory(md: &mut String, reps: usize, mems: &[MemRun], micros: &[Micro]) {
    let _ = writeln!(md, "### Memory per tracked process\n");
    let _ = writeln!(
        md,
        "For each N, `xtask/workloads/idle_procs.c` forks N processes (one thread each) blocked in read() on a \
         pipe and says \"ready\"; then `tailprof record -o DIR` (default settings) captures the whole host and is \
         interrupted {} s after its start. RSS (VmRSS, and its anonymous part RssAnon) is the highest reading \
         between {} and {} s, when its first snapshot has found and read every process; peak RSS is its VmHWM \
         read every 10 ms until it exits (start-up and writing the output included). BPF map memory is the `memlock` of the maps \
         it holds (/proc/PID/fdinfo). {reps} repetitions, interleaved.\n",
        RSS_UNTIL.as_secs_f64(),
        RSS_FROM.as_secs_f64(),
        RSS_UNTIL.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| run | idle processes | processes in summary.json | RSS MiB | RssAnon MiB | peak RSS MiB | BPF maps MiB \
         | threads per snapshot | snapshot ns per thread |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mib = |kib: f64| kib / 1024.0;
    for (i, m) in mems.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} |",
            i / PROCESSES.len() + 1,
            m.processes,
            m.tracked,
            mib(m.rss_kib as f64),
            mib(m.anon_kib as f64),
            mib(m.peak_kib as f64),
            m.map_bytes as f64 / (1024.0 * 1024.0),
            m.records_per_snapshot,
            m.ns_per_record,
        );
    }
    let at = |n: usize, f: fn(&MemRun) -> f64| median(mems.iter().filter(|m| m.processes == n).map(f).collect());
    let _ = writeln!(
        md,
        "\n| median of {reps} | RSS MiB | RssAnon MiB | peak RSS MiB | BPF maps MiB | RSS KiB per 1,000 processes \
         | RssAnon KiB per 1,000 |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|");
    let (rss0, anon0) = (at(0, |m| m.rss_kib as f64), at(0, |m| m.anon_kib as f64));
    for n in PROCESSES {
        let (rss, anon, peak) =
            (at(n, |m| m.rss_kib as f64), at(n, |m| m.anon_kib as f64), at(n, |m| m.peak_kib as f64));
        let per =
            |v: f64, v0: f64| if n == 0 { "–".to_owned() } else { format!("{:.0}", (v - v0) / (n as f64 / 1e3)) };
        let _ = writeln!(
            md,
            "| {n} idle processes | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            mib(rss),
            mib(anon),
            mib(peak),
            at(n, |m| m.map_bytes as f64) / (1024.0 * 1024.0),
            per(rss, rss0),
            per(anon, anon0),
        );
    }
    let largest = *PROCESSES.last().unwrap_or(&0);
    let per_1000 = |n: usize| (at(n, |m| m.rss_kib as f64) - rss0) / (n as f64 / 1e3);
    let all: Vec<&Micro> = micros.iter().filter(|m| m.processes >= largest as u64).collect();
    let heap = median(all.iter().map(|m| m.heap_kib_per_1000()).collect());
    let micro_read = median(all.iter().map(|m| m.us_per_read()).collect());
    let _ = writeln!(
        md,
        "\n**Daemon memory per 1,000 tracked processes: {:.0} KiB of RSS** (median RSS with {largest} idle processes \
         minus without, per 1,000). The process table alone (the heap a `ProcessTable` holds after reading the \
         host's {} processes, counted by a global allocator in `enrich-microbench`) takes {heap:.0} KiB per 1,000 \
         ({:.0} bytes per process, of which {} bytes are the `ProcessInfo` itself and the rest its strings \
         (comm, exe, cmdline, user, cgroup paths), the table's hash map and the spare capacity of its vector); \
         each of those first-sight procfs reads took {micro_read:.1} µs there.\n",
        per_1000(largest),
        median(all.iter().map(|m| m.processes as f64).collect()),
        heap * 1024.0 / 1000.0,
        all.first().map_or(0, |m| m.info_bytes),
    );
    let _ = writeln!(
        md,
        "RSS grows in steps, not per process: memory the start-up frees (BTF parsing, program loading) stays in \
         the allocator and is reused first, so a thousand processes can fit without moving RSS at all, and the \
         difference at {largest} processes is the better estimate. The peak is reached at start-up (parsing the \
         kernel's BTF) or while writing the output, varies from run to run, and is no per-process figure. BPF map \
         memory does not depend on the number of \
         processes: the maps are preallocated at start (their size is bounded by `--max-threads` and the stack map \
         sizes), so it is the same in every row."
    );
}
