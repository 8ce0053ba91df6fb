//! Overhead on a context-switch-heavy load: `perf bench sched pipe` alone,
//! under `tailprof record` in each tier (`--tier deep`: scheduler hooks;
//! `--tier continuous`: none), under `perf record -e sched:sched_switch -a
//! -g` and under a bpftrace off-CPU one-liner.
//!
//! The load is pinned to one CPU, so every operation is two context switches
//! on that CPU and the run-to-run spread stays small (unpinned, the two
//! processes land on one or two CPUs from run to run, and the time per
//! operation on this VM flips between two modes more than 2x apart).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::{
    common,
    common::{
        bpf_prog_names, bpf_progs_of, interrupt, median, ms, perf_event_fds, process_cpu_ns, prog_deltas,
        set_bpf_stats, spawn_tool, tier_summary, wait_ready, wait_with_cost, Cost, ProgStats, Tier, Tool as _,
        SNAPSHOT_ITER_PROG,
    },
};
use crate::util::output;

/// Operations per load run: about 3 s without a tool on this VM.
const LOOPS: u64 = 500_000;
/// The CPU the load is pinned to.
const LOAD_CPU: &str = "0";
/// A tool is ready once what it holds (BPF programs, perf events) has not changed for this long.
const SETTLE: Duration = Duration::from_secs(1);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Goal: the continuous tier slows the load by at most this much.
const GOAL_CONTINUOUS: f64 = 0.02;
/// Goal: the deep tier slows the load by at most this much, and less than perf and bpftrace.
const GOAL_DEEP: f64 = 0.40;

/// Off-CPU time by blocking kernel stack and name: the stack is taken at
/// switch-out, the time summed at switch-in. Tracepoints only (no kprobes on
/// this kernel); the helper maps are cleared at the end so only `@offcpu` is
/// printed.
const BPFTRACE_OFFCPU: &str = "tracepoint:sched:sched_switch { @start[args->prev_pid] = nsecs; \
     @stk[args->prev_pid] = kstack; $s = @start[args->next_pid]; \
     if ($s != 0) { @offcpu[@stk[args->next_pid], args->next_comm] = sum(nsecs - $s); \
     delete(@start[args->next_pid]); } } END { clear(@start); clear(@stk); }";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    None,
    Tailprof(Tier),
    Perf,
    Bpftrace,
}

impl common::Tool for Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::None => "no tool",
            Tool::Tailprof(Tier::Continuous) => "tailprof continuous",
            Tool::Tailprof(Tier::Deep) => "tailprof deep",
            Tool::Perf => "perf",
            Tool::Bpftrace => "bpftrace",
        }
    }
}

type Condition = common::Condition<Tool>;

const CONTINUOUS: Tool = Tool::Tailprof(Tier::Continuous);
const DEEP: Tool = Tool::Tailprof(Tier::Deep);

const CONDITIONS: [Condition; 8] = [
    Condition { tool: Tool::None, bpf_stats: false },
    Condition { tool: CONTINUOUS, bpf_stats: false },
    Condition { tool: DEEP, bpf_stats: false },
    Condition { tool: Tool::Perf, bpf_stats: false },
    Condition { tool: Tool::Bpftrace, bpf_stats: false },
    Condition { tool: CONTINUOUS, bpf_stats: true },
    Condition { tool: DEEP, bpf_stats: true },
    Condition { tool: Tool::Bpftrace, bpf_stats: true },
];

/// The BPF tools, whose programs' run time the statistics-on runs read.
const BPF_TOOLS: [Tool; 3] = [CONTINUOUS, DEEP, Tool::Bpftrace];

/// One load run under one condition.
struct Run {
    /// Repetition, from 0.
    rep: usize,
    cond: Condition,
    load: Load,
    /// CPU time of the tool's process while the load ran, ns.
    load_proc_ns: u64,
    /// Run time of the tool's BPF programs while the load ran, ns (0 with
    /// statistics off), but for tailprof's snapshot iterator, whose run time
    /// is already in `load_proc_ns`.
    load_bpf_ns: u64,
    /// Per BPF program (by name): runs and run time while the load ran.
    progs: BTreeMap<String, ProgStats>,
    /// The tool's process over its whole life: start-up, the load, writing out.
    whole: Cost,
    /// What the tool said it lost, if anything.
    note: String,
}

impl Run {
    fn load_tool_ns(&self) -> u64 {
        self.load_proc_ns + self.load_bpf_ns
    }
}

/// What one `perf bench sched pipe` run measured.
#[derive(Debug, Clone, Copy)]
struct Load {
    usecs_per_op: f64,
    ops_per_sec: f64,
    /// Context switches on the whole host while it ran (/proc/stat ctxt).
    switches: u64,
    wall: Duration,
}

/// A tool started in the background, and where it writes its capture.
struct Started {
    tool: common::Started,
    /// tailprof's output directory or perf's data file, removed after the run.
    output: PathBuf,
}

fn load_command() -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", LOAD_CPU, "perf", "bench", "sched", "pipe", "-l", &LOOPS.to_string()]);
    cmd
}

fn tool_command(tool: Tool, bin: &Path, output: &Path) -> Option<Command> {
    match tool {
        Tool::None => None,
        Tool::Tailprof(tier) => {
            let mut cmd = Command::new(bin);
            cmd.args(["record", "--tier", tier.name(), "--duration", "600s", "-o"]).arg(output);
            Some(cmd)
        }
        Tool::Perf => {
            let mut cmd = Command::new("perf");
            cmd.args(["record", "-e", "sched:sched_switch", "-a", "-g", "-o"]).arg(output);
            Some(cmd)
        }
        Tool::Bpftrace => {
            let mut cmd = Command::new("bpftrace");
            cmd.args(["-e", BPFTRACE_OFFCPU]);
            Some(cmd)
        }
    }
}

fn start(cond: Condition, bin: &Path, scratch: &Path, rep: usize) -> anyhow::Result<Option<Started>> {
    let base = scratch.join(format!("sched-{}-stats-{}-{rep}", cond.tool.label().replace(' ', "-"), cond.bpf_stats));
    let output = base.with_extension("out");
    let Some(cmd) = tool_command(cond.tool, bin, &output) else {
        return Ok(None);
    };
    Ok(Some(Started { tool: spawn_tool(cmd, cond, &base)?, output }))
}

/// What readiness is judged on: the BPF programs or perf events the tool
/// holds, once it holds any (and, for bpftrace, once it said "Attaching").
fn readiness_key(tool: Tool, pid: u32, stdout: &Path) -> Option<Vec<u64>> {
    let key: Vec<u64> = match tool {
        Tool::None => return Some(Vec::new()),
        Tool::Perf => vec![perf_event_fds(pid) as u64],
        Tool::Tailprof(_) => bpf_progs_of(pid).keys().map(|&id| u64::from(id)).collect(),
        Tool::Bpftrace => {
            let said = std::fs::read_to_string(stdout).unwrap_or_default();
            if !said.contains("Attaching") {
                return None;
            }
            bpf_progs_of(pid).keys().map(|&id| u64::from(id)).collect()
        }
    };
    key.iter().any(|&k| k > 0).then_some(key)
}

/// Wait until the tool holds its programs or events and has held the same
/// ones for [`SETTLE`] (attaching, and tailprof's procfs seeding, come after
/// loading).
fn wait_until_ready(tool: Tool, started: &mut Started) -> anyhow::Result<()> {
    let pid = started.tool.child.id();
    let stdout = started.tool.stdout.clone();
    let mut last: Option<(Vec<u64>, Instant)> = None;
    wait_ready(&mut started.tool.child, tool.label(), &started.tool.stderr, READY_TIMEOUT, || {
        match (readiness_key(tool, pid, &stdout), &last) {
            (Some(key), Some((prev, since))) if *prev == key => since.elapsed() >= SETTLE,
            (key, _) => {
                last = key.map(|k| (k, Instant::now()));
                false
            }
        }
    })
}

fn read_ctxt() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("could not read /proc/stat")?;
    stat.lines().find_map(|l| l.strip_prefix("ctxt ")?.trim().parse().ok()).context("no ctxt line in /proc/stat")
}

fn run_load() -> anyhow::Result<Load> {
    let before = read_ctxt()?;
    let begin = Instant::now();
    let text = output(&mut load_command())?;
    let wall = begin.elapsed();
    let switches = read_ctxt()? - before;
    // "      6.174965 usecs/op" and "        161944 ops/sec"
    let value = |unit: &str| -> anyhow::Result<f64> {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(unit))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {unit} in the output of perf bench sched pipe:\n{text}"))
    };
    Ok(Load { usecs_per_op: value("usecs/op")?, ops_per_sec: value("ops/sec")?, switches, wall })
}

/// Lines where the tool reports losing data, or tailprof's loss counters
/// (its summary.json must say it ran the tier asked for).
fn loss_note(tool: Tool, stderr: &Path, output: &Path) -> anyhow::Result<String> {
    Ok(match tool {
        Tool::None => String::new(),
        Tool::Tailprof(tier) => {
            let json = tier_summary(output, tier)?;
            let counter = |name: &str, v: &serde_json::Value| {
                let n = v.as_u64().unwrap_or(0);
                (n > 0).then(|| format!("{name} {n}"))
            };
            let sampler = &json["state_sampler"];
            let mut notes: Vec<String> = [
                counter("lost_samples", &json["lost_samples"]),
                counter("dropped_events", &json["dropped_events"]),
                counter("snapshots skipped", &sampler["skipped"]),
            ]
            .into_iter()
            .flatten()
            .collect();
            if sampler["realtime"] == serde_json::Value::Bool(false) {
                notes.push("snapshot thread not real-time".into());
            }
            notes.join(", ")
        }
        Tool::Perf | Tool::Bpftrace => std::fs::read_to_string(stderr)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("lost"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; "),
    })
}

fn measure(cond: Condition, bin: &Path, scratch: &Path, rep: usize) -> anyhow::Result<Run> {
    set_bpf_stats(cond.bpf_stats)?;
    let tool = cond.tool;
    let Some(mut started) = start(cond, bin, scratch, rep)? else {
        let load = run_load()?;
        let none = Run {
            rep,
            cond,
            load,
            load_proc_ns: 0,
            load_bpf_ns: 0,
            progs: BTreeMap::new(),
            whole: Cost::default(),
            note: String::new(),
        };
        return Ok(none);
    };
    wait_until_ready(tool, &mut started)?;
    let pid = started.tool.child.id();
    let names = bpf_prog_names().unwrap_or_default();
    let (proc_before, progs_before) = (process_cpu_ns(pid), bpf_progs_of(pid));
    let load = run_load();
    let (proc_after, progs_after) = (process_cpu_ns(pid), bpf_progs_of(pid));
    interrupt(&started.tool.child)?;
    let whole = wait_with_cost(started.tool.child, tool.label(), true);
    let load = load?;
    let whole = whole?;
    let progs = prog_deltas(&progs_before, &progs_after, &names);
    let note = loss_note(tool, &started.tool.stderr, &started.output);
    let _ = std::fs::remove_dir_all(&started.output);
    let _ = std::fs::remove_file(&started.output);
    Ok(Run {
        rep,
        cond,
        load,
        load_proc_ns: proc_after.saturating_sub(proc_before),
        load_bpf_ns: progs.iter().filter(|(name, _)| *name != SNAPSHOT_ITER_PROG).map(|(_, p)| p.run_time_ns).sum(),
        progs,
        whole,
        note: note?,
    })
}

/// Run the section; returns its markdown.
pub fn run(bin: &Path, scratch: &Path, reps: usize) -> anyhow::Result<String> {
    let mut runs = Vec::new();
    // Interleaved repetitions, so that drift of the host hits every condition alike.
    for rep in 0..reps {
        for cond in CONDITIONS {
            eprintln!("xtask bench: sched pipe, repetition {} of {reps}: {}", rep + 1, cond.label());
            runs.push(measure(cond, bin, scratch, rep)?);
        }
    }
    set_bpf_stats(true)?;
    Ok(report(reps, &runs))
}

fn of(runs: &[Run], cond: Condition) -> impl Iterator<Item = &Run> {
    runs.iter().filter(move |r| r.cond == cond)
}

/// Medians of one condition over its repetitions.
struct Medians {
    usecs_per_op: f64,
    ops_per_sec: f64,
    switches_per_op: f64,
    load_proc_ms: f64,
    load_bpf_ms: f64,
    load_share: f64,
    whole_ms: f64,
}

fn medians(runs: &[Run], cond: Condition) -> Medians {
    let m = |f: &dyn Fn(&Run) -> f64| median(of(runs, cond).map(f).collect());
    Medians {
        usecs_per_op: m(&|r| r.load.usecs_per_op),
        ops_per_sec: m(&|r| r.load.ops_per_sec),
        switches_per_op: m(&|r| r.load.switches as f64 / LOOPS as f64),
        load_proc_ms: m(&|r| r.load_proc_ns as f64 / 1e6),
        load_bpf_ms: m(&|r| r.load_bpf_ns as f64 / 1e6),
        load_share: m(&|r| r.load_tool_ns() as f64 / r.load.wall.as_nanos() as f64),
        whole_ms: m(&|r| ms(r.whole.total())),
    }
}

fn report(reps: usize, runs: &[Run]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Scheduler hooks: `perf bench sched pipe`, a context-switch-heavy load, both tiers\n");
    report_method(&mut md, reps, runs);
    report_runs(&mut md, runs);
    report_medians(&mut md, reps, runs);
    report_programs(&mut md, runs);
    md
}

/// The BPF programs `tool` held in its statistics-on runs, by name.
fn held_programs(runs: &[Run], tool: Tool) -> String {
    let names: std::collections::BTreeSet<&str> =
        of(runs, Condition::with_stats(tool)).flat_map(|r| r.progs.keys().map(String::as_str)).collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

fn report_method(md: &mut String, reps: usize, runs: &[Run]) {
    let load = format!("taskset -c {LOAD_CPU} perf bench sched pipe -l {LOOPS}");
    let _ = writeln!(
        md,
        "Load: `{load}`: two processes pass a byte back and forth through two pipes, pinned to CPU {LOAD_CPU}, so \
         every operation is two context switches, two wake-ups and four syscalls on that CPU (unpinned, the two \
         processes land on one or on two CPUs from run to run and the time per operation flips between two modes \
         more than 2x apart). {reps} interleaved repetitions of every condition, medians reported:\n"
    );
    let _ = writeln!(md, "| condition | command (whole host; started before the load, SIGINT after it) |");
    let _ = writeln!(md, "|---|---|");
    let _ = writeln!(md, "| no tool | |");
    let _ = writeln!(
        md,
        "| {} | `tailprof record --tier continuous --duration 600s -o DIR`, other settings default: nothing on the \
         context-switch, wake-up or syscall path; on-CPU sampling at 99 Hz, fork/exec and exit hooks, task-iterator \
         snapshots of every thread at 20 Hz (fewer if its CPU budget cuts them) taken by a SCHED_FIFO thread \
         (`tp-snapshot`). BPF programs it held: {} |",
        CONTINUOUS.label(),
        held_programs(runs, CONTINUOUS),
    );
    let _ = writeln!(
        md,
        "| {} | `tailprof record --tier deep --duration 600s -o DIR`, other settings default (deep is also the \
         default tier): tp_btf hooks on the scheduler's switches and wake-ups and on interrupts, task-iterator \
         snapshots at 20 Hz, on-CPU sampling at 99 Hz. BPF programs it held: {} |",
        DEEP.label(),
        held_programs(runs, DEEP),
    );
    let _ = writeln!(md, "| perf | `perf record -e sched:sched_switch -a -g -o FILE` |");
    let _ = writeln!(md, "| bpftrace | `bpftrace -e '{BPFTRACE_OFFCPU}'` |");
    let _ = writeln!(
        md,
        "\nThe slowdowns are measured with `kernel.bpf_stats_enabled=0`: run-time statistics add two clock reads to \
         every BPF program run, which on this load is itself a visible cost. Both tailprof tiers and bpftrace then \
         run once more per repetition with statistics on (\"bpf_stats on\" rows), to read the run time of each of \
         their programs from /proc/PID/fdinfo. A tool counts as ready when the BPF programs (tailprof; bpftrace after \
         its \"Attaching\" line) or perf events (perf) it holds have not changed for {} s. The load's µs/op and \
         ops/s are its own report; × no tool = µs/op under the tool / µs/op with no tool, slowdown = that ratio − 1 \
         (medians table: ratio of the medians; per-run table: ratio to the no-tool run of the same repetition). \
         tailprof's summary.json is checked to name the tier asked for. Context switches per operation come from \
         `ctxt` in /proc/stat (whole host). Tool CPU while the load ran = CPU time of the tool's threads \
         (/proc/PID/task/*/schedstat) + the run time of its BPF programs that run in other tasks (statistics-on \
         runs only); whole run = user+sys of the tool's process from wait4 (start-up, the load, writing its \
         output). The hooks' BPF programs run in the switching tasks, so their time is inside the load's slowdown as \
         well, and so is that of the on-CPU sampling program when it samples the load; so is perf's kernel-side work \
         per event (callchain walk, copy into its buffer), which no counter charges to perf. Extra ns per context \
         switch = (µs/op − µs/op without a tool) / context switches per operation without a tool: all a tool adds \
         per operation, hooks on wake-ups and syscalls included, charged to the switches.\n",
        SETTLE.as_secs()
    );
}

fn report_runs(md: &mut String, runs: &[Run]) {
    let _ = writeln!(
        md,
        "| run | condition | µs/op | × no tool | ops/s | context switches/op | load s \
         | tool CPU during load ms (process + BPF) | tool CPU whole run ms | reported loss, notes |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in runs {
        let none = runs.iter().find(|n| n.rep == r.rep && n.cond == Condition::without_stats(Tool::None));
        let ratio = none.map_or(f64::NAN, |n| r.load.usecs_per_op / n.load.usecs_per_op);
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {ratio:.3} | {:.0} | {:.2} | {:.2} | {:.1} + {:.1} | {:.1} | {} |",
            r.rep + 1,
            r.cond.label(),
            r.load.usecs_per_op,
            r.load.ops_per_sec,
            r.load.switches as f64 / LOOPS as f64,
            r.load.wall.as_secs_f64(),
            r.load_proc_ns as f64 / 1e6,
            r.load_bpf_ns as f64 / 1e6,
            ms(r.whole.total()),
            r.note,
        );
    }
}

fn report_medians(md: &mut String, reps: usize, runs: &[Run]) {
    let base = medians(runs, Condition::without_stats(Tool::None));
    let ratio = |m: &Medians| m.usecs_per_op / base.usecs_per_op;
    let _ = writeln!(
        md,
        "\n| median of {reps} | µs/op | × no tool | slowdown | ops/s | extra ns per context switch \
         | tool process ms during load | tool BPF ms during load | tool CPU during load, % of one CPU \
         | tool CPU, whole run ms |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for cond in CONDITIONS {
        let m = medians(runs, cond);
        let extra_ns = (m.usecs_per_op - base.usecs_per_op) * 1e3 / base.switches_per_op;
        let bpf_unseen = !cond.bpf_stats && BPF_TOOLS.contains(&cond.tool);
        let bpf = if bpf_unseen { "–".to_owned() } else { format!("{:.1}", m.load_bpf_ms) };
        let share = format!("{:.1}%{}", 100.0 * m.load_share, if bpf_unseen { " + BPF" } else { "" });
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | {:+.1}% | {:.0} | {:.0} | {:.1} | {bpf} | {share} | {:.1} |",
            cond.label(),
            m.usecs_per_op,
            ratio(&m),
            100.0 * (ratio(&m) - 1.0),
            m.ops_per_sec,
            extra_ns,
            m.load_proc_ms,
            m.whole_ms,
        );
    }
    // Slowdowns (ratio − 1) of the statistics-off runs.
    let [continuous, deep, perf, bt] = [CONTINUOUS, DEEP, Tool::Perf, Tool::Bpftrace]
        .map(|t| ratio(&medians(runs, Condition::without_stats(t))) - 1.0);
    let met = |ok: bool| if ok { "met" } else { "not met" };
    let _ = writeln!(
        md,
        "\n**Goal, continuous tier (slows the load by at most {:.0}%): {}.** Measured: tailprof continuous ×{:.3} \
         of no tool ({:+.1}%).\n",
        100.0 * GOAL_CONTINUOUS,
        met(continuous <= GOAL_CONTINUOUS),
        1.0 + continuous,
        100.0 * continuous,
    );
    let _ = writeln!(
        md,
        "**Goal, deep tier (slows the load by at most {:.0}%, and less than perf and bpftrace in the same run): {}.** \
         Measured: tailprof deep ×{:.3} of no tool ({:+.1}%), perf ×{:.3} ({:+.1}%), bpftrace ×{:.3} ({:+.1}%); \
         deep's slowdown / perf's {:.2}, / bpftrace's {:.2}.\n",
        100.0 * GOAL_DEEP,
        met(deep <= GOAL_DEEP && deep < perf && deep < bt),
        1.0 + deep,
        100.0 * deep,
        1.0 + perf,
        100.0 * perf,
        1.0 + bt,
        100.0 * bt,
        deep / perf,
        deep / bt,
    );
}

/// Below this many program runs per operation, the statistics' cost per run
/// would be the run-to-run noise divided by almost nothing.
const MIN_RUNS_FOR_STATS_COST: f64 = 0.5;

/// Runs per operation: two decimals, or enough to show rare programs.
fn runs_fmt(runs: f64) -> String {
    if runs > 0.0 && runs < 0.01 {
        format!("{runs:.6}")
    } else {
        format!("{runs:.2}")
    }
}

/// Where the BPF tools' time goes per load operation, by program, from the
/// statistics-on runs.
fn report_programs(md: &mut String, runs: &[Run]) {
    let _ = writeln!(
        md,
        "BPF programs while the load ran (\"bpf_stats on\" runs, medians; names cut to 15 bytes by the kernel; \
         per op = divided by the {LOOPS} operations, so runs for the rest of the host are included). tailprof's \
         snapshot iterator ({SNAPSHOT_ITER_PROG}) runs inside its own snapshot thread's read(), once per thread on \
         the host per snapshot: its run time is already in tailprof's process CPU, so it is left out of the \
         \"all in other tasks\" rows and of \"tool BPF ms\" above:\n"
    );
    let _ = writeln!(md, "| tool | program | runs per op | ns per run | BPF ns per op |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|");
    let base = medians(runs, Condition::without_stats(Tool::None)).usecs_per_op;
    let mut stats_costs = Vec::new();
    for tool in BPF_TOOLS {
        let cond = Condition::with_stats(tool);
        let names: std::collections::BTreeSet<&String> = of(runs, cond).flat_map(|r| r.progs.keys()).collect();
        let (mut ns_total, mut runs_total) = (0.0, 0.0);
        for name in names {
            let stat = |r: &Run| r.progs.get(name).copied().unwrap_or_default();
            let per_op =
                |f: fn(ProgStats) -> u64| median(of(runs, cond).map(|r| f(stat(r)) as f64 / LOOPS as f64).collect());
            let (runs_per_op, ns_per_op) = (per_op(|s| s.run_cnt), per_op(|s| s.run_time_ns));
            let ns_per_run = if runs_per_op > 0.0 { format!("{:.0}", ns_per_op / runs_per_op) } else { "–".into() };
            let own_thread = *name == SNAPSHOT_ITER_PROG;
            if !own_thread {
                ns_total += ns_per_op;
                runs_total += runs_per_op;
            }
            let name = if own_thread { format!("{name} (in tailprof's own thread)") } else { name.clone() };
            let _ = writeln!(
                md,
                "| {} | {name} | {} | {ns_per_run} | {ns_per_op:.0} |",
                tool.label(),
                runs_fmt(runs_per_op)
            );
        }
        let on = medians(runs, cond).usecs_per_op;
        let off = medians(runs, Condition::without_stats(tool)).usecs_per_op;
        let _ = writeln!(
            md,
            "| {} | **all in other tasks** | {} | | **{ns_total:.0}**, of {:.0} ns added per op in these \
             runs ({:.0} with statistics off) |",
            tool.label(),
            runs_fmt(runs_total),
            (on - base) * 1e3,
            (off - base) * 1e3,
        );
        let stats_cost = if runs_total >= MIN_RUNS_FOR_STATS_COST {
            format!("{:.0} ns", (on - off) * 1e3 / runs_total)
        } else {
            format!("not estimated (fewer than {MIN_RUNS_FOR_STATS_COST} runs per op)")
        };
        stats_costs.push(format!("{} {stats_cost}", tool.label()));
    }
    let _ = writeln!(
        md,
        "\nCost of the statistics themselves per program run ((µs/op with − without) / runs per op; noisy): {}. \
         What a tool adds per operation beyond its programs' run time is the hooks' dispatch (tracepoint and \
         trampoline entry), its user-space thread competing for the CPU, and cache effects.",
        stats_costs.join(", ")
    );
}

/// `--qualify`: the slowdown of `perf bench sched pipe` (µs per op over
/// the no-tool run's, minus one) under each tier, medians of `reps`
/// interleaved runs.
pub(crate) fn qualify(bin: &Path, scratch: &Path, reps: usize) -> anyhow::Result<(f64, f64)> {
    let conds = [
        Condition { tool: Tool::None, bpf_stats: false },
        Condition { tool: CONTINUOUS, bpf_stats: false },
        Condition { tool: DEEP, bpf_stats: false },
    ];
    let mut runs = Vec::new();
    for rep in 0..reps {
        for cond in conds {
            runs.push(measure(cond, bin, scratch, rep)?);
        }
    }
    set_bpf_stats(true)?;
    let base = medians(&runs, conds[0]).usecs_per_op;
    let slowdown = |c: Condition| medians(&runs, c).usecs_per_op / base - 1.0;
    Ok((slowdown(conds[1]), slowdown(conds[2])))
}
