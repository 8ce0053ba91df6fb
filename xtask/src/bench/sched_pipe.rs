//! Scheduler-hook overhead on a context-switch-heavy load: `perf bench sched
//! pipe` alone, under `tailprof record` (default settings), under `perf record
//! -e sched:sched_switch -a -g` and under a bpftrace off-CPU one-liner.
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
        set_bpf_stats, spawn_tool, wait_ready, wait_with_cost, Cost, ProgStats, Tool as _,
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
    Tailprof,
    Perf,
    Bpftrace,
}

impl common::Tool for Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::None => "no tool",
            Tool::Tailprof => "tailprof",
            Tool::Perf => "perf",
            Tool::Bpftrace => "bpftrace",
        }
    }
}

type Condition = common::Condition<Tool>;

const CONDITIONS: [Condition; 6] = [
    Condition { tool: Tool::None, bpf_stats: false },
    Condition { tool: Tool::Tailprof, bpf_stats: false },
    Condition { tool: Tool::Perf, bpf_stats: false },
    Condition { tool: Tool::Bpftrace, bpf_stats: false },
    Condition { tool: Tool::Tailprof, bpf_stats: true },
    Condition { tool: Tool::Bpftrace, bpf_stats: true },
];

/// One load run under one condition.
struct Run {
    cond: Condition,
    load: Load,
    /// CPU time of the tool's process while the load ran, ns.
    load_proc_ns: u64,
    /// Run time of the tool's BPF programs while the load ran, ns (0 with statistics off).
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
        Tool::Tailprof => {
            let mut cmd = Command::new(bin);
            cmd.args(["record", "--duration", "600s", "-o"]).arg(output);
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
    let base = scratch.join(format!("sched-{}-stats-{}-{rep}", cond.tool.label(), cond.bpf_stats));
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
        Tool::Tailprof => bpf_progs_of(pid).keys().map(|&id| u64::from(id)).collect(),
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

/// Lines where the tool reports losing data, or tailprof's loss counters.
fn loss_note(tool: Tool, stderr: &Path, output: &Path) -> String {
    match tool {
        Tool::None => String::new(),
        Tool::Tailprof => {
            let summary = std::fs::read_to_string(output.join("summary.json")).unwrap_or_default();
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&summary) else {
                return "no summary.json".into();
            };
            let lost = json["lost_samples"].as_u64().unwrap_or(0);
            let dropped = json["dropped_events"].as_u64().unwrap_or(0);
            if lost + dropped == 0 {
                String::new()
            } else {
                format!("lost_samples {lost}, dropped_events {dropped}")
            }
        }
        Tool::Perf | Tool::Bpftrace => std::fs::read_to_string(stderr)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("lost"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn measure(cond: Condition, bin: &Path, scratch: &Path, rep: usize) -> anyhow::Result<Run> {
    set_bpf_stats(cond.bpf_stats)?;
    let tool = cond.tool;
    let Some(mut started) = start(cond, bin, scratch, rep)? else {
        let load = run_load()?;
        let none = Run {
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
        cond,
        load,
        load_proc_ns: proc_after.saturating_sub(proc_before),
        load_bpf_ns: progs.values().map(|p| p.run_time_ns).sum(),
        progs,
        whole,
        note,
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
    let _ = writeln!(md, "## Scheduler hooks: `perf bench sched pipe`, a context-switch-heavy load\n");
    report_method(&mut md, reps);
    report_runs(&mut md, runs);
    report_medians(&mut md, reps, runs);
    report_programs(&mut md, runs);
    md
}

fn report_method(md: &mut String, reps: usize) {
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
        "| tailprof | `tailprof record --duration 600s -o DIR`: default settings, i.e. tp_btf hooks on sched_switch, \
         sched_wakeup, sched_wakeup_new, sys_enter, sys_exit, thread-state snapshots at 20 Hz, on-CPU sampling at \
         99 Hz |"
    );
    let _ = writeln!(md, "| perf | `perf record -e sched:sched_switch -a -g -o FILE` |");
    let _ = writeln!(md, "| bpftrace | `bpftrace -e '{BPFTRACE_OFFCPU}'` |");
    let _ = writeln!(
        md,
        "\nThe slowdowns are measured with `kernel.bpf_stats_enabled=0`: run-time statistics add two clock reads to \
         every BPF program run, which on this load is itself a visible cost. tailprof and bpftrace then run once more \
         per repetition with statistics on (\"bpf_stats on\" rows), to read the run time of each of their programs \
         from /proc/PID/fdinfo. A tool counts as ready when the BPF programs (tailprof; bpftrace after its \
         \"Attaching\" line) or perf events (perf) it holds have not changed for {} s. The load's µs/op and ops/s are \
         its own report; context switches per operation come from `ctxt` in /proc/stat (whole host). Tool CPU while \
         the load ran = CPU time of the tool's threads (/proc/PID/task/*/schedstat) + the run time of its BPF \
         programs (statistics-on runs only); whole run = user+sys of the tool's process from wait4 (start-up, the \
         load, writing its output). The BPF programs run in the switching tasks, so their time is inside the load's \
         slowdown as well; so is perf's kernel-side work per event (callchain walk, copy into its buffer), which no \
         counter charges to perf. Extra ns per context switch = (µs/op − µs/op without a tool) / context switches \
         per operation without a tool: all a tool adds per operation, hooks on wake-ups and syscalls included, \
         charged to the switches.\n",
        SETTLE.as_secs()
    );
}

fn report_runs(md: &mut String, runs: &[Run]) {
    let _ = writeln!(
        md,
        "| run | condition | µs/op | ops/s | context switches/op | load s | tool CPU during load ms (process + BPF) \
         | tool CPU whole run ms | reported loss |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {:.0} | {:.2} | {:.2} | {:.1} + {:.1} | {:.1} | {} |",
            i / CONDITIONS.len() + 1,
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
    let slowdown = |m: &Medians| 100.0 * (m.usecs_per_op / base.usecs_per_op - 1.0);
    let _ = writeln!(
        md,
        "\n| median of {reps} | µs/op | ops/s | slowdown | extra ns per context switch | tool process ms during load \
         | tool BPF ms during load | tool CPU during load, % of one CPU | tool CPU, whole run ms |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for cond in CONDITIONS {
        let m = medians(runs, cond);
        let extra_ns = (m.usecs_per_op - base.usecs_per_op) * 1e3 / base.switches_per_op;
        let bpf_unseen = !cond.bpf_stats && matches!(cond.tool, Tool::Tailprof | Tool::Bpftrace);
        let bpf = if bpf_unseen { "–".to_owned() } else { format!("{:.1}", m.load_bpf_ms) };
        let share = format!("{:.1}%{}", 100.0 * m.load_share, if bpf_unseen { " + BPF" } else { "" });
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.0} | {:+.1}% | {:.0} | {:.1} | {bpf} | {share} | {:.1} |",
            cond.label(),
            m.usecs_per_op,
            m.ops_per_sec,
            slowdown(&m),
            extra_ns,
            m.load_proc_ms,
            m.whole_ms,
        );
    }
    let [tp, perf, bt] =
        [Tool::Tailprof, Tool::Perf, Tool::Bpftrace].map(|t| slowdown(&medians(runs, Condition::without_stats(t))));
    let met = tp < 5.0 && tp < perf && tp < bt;
    let _ = writeln!(
        md,
        "\n**Goal (tailprof slows the load by less than 5% and less than either peer): {}.** \
         Slowdown tailprof {tp:+.1}%, perf {perf:+.1}%, bpftrace {bt:+.1}%; tailprof / perf {:.2}, \
         tailprof / bpftrace {:.2} (ratios of the slowdowns).\n",
        if met { "met" } else { "not met" },
        tp / perf,
        tp / bt,
    );
}

/// Where the BPF tools' time goes per load operation, by program, from the
/// statistics-on runs.
fn report_programs(md: &mut String, runs: &[Run]) {
    let _ = writeln!(
        md,
        "BPF programs while the load ran (\"bpf_stats on\" runs, medians; names cut to 15 bytes by the kernel; \
         per op = divided by the {LOOPS} operations, so runs for the rest of the host are included):\n"
    );
    let _ = writeln!(md, "| tool | program | runs per op | ns per run | BPF ns per op |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|");
    let base = medians(runs, Condition::without_stats(Tool::None)).usecs_per_op;
    let mut stats_costs = Vec::new();
    for tool in [Tool::Tailprof, Tool::Bpftrace] {
        let cond = Condition::with_stats(tool);
        let names: std::collections::BTreeSet<&String> = of(runs, cond).flat_map(|r| r.progs.keys()).collect();
        let (mut ns_total, mut runs_total) = (0.0, 0.0);
        for name in names {
            let stat = |r: &Run| r.progs.get(name).copied().unwrap_or_default();
            let per_op =
                |f: fn(ProgStats) -> u64| median(of(runs, cond).map(|r| f(stat(r)) as f64 / LOOPS as f64).collect());
            let (runs_per_op, ns_per_op) = (per_op(|s| s.run_cnt), per_op(|s| s.run_time_ns));
            let ns_per_run = if runs_per_op > 0.0 { format!("{:.0}", ns_per_op / runs_per_op) } else { "–".into() };
            ns_total += ns_per_op;
            runs_total += runs_per_op;
            let _ = writeln!(md, "| {} | {name} | {runs_per_op:.2} | {ns_per_run} | {ns_per_op:.0} |", tool.label());
        }
        let on = medians(runs, cond).usecs_per_op;
        let off = medians(runs, Condition::without_stats(tool)).usecs_per_op;
        let _ = writeln!(
            md,
            "| {} | **all** | {runs_total:.2} | | **{ns_total:.0}**, of {:.0} ns added per op in these runs \
             ({:.0} with statistics off) |",
            tool.label(),
            (on - base) * 1e3,
            (off - base) * 1e3,
        );
        if runs_total > 0.0 {
            stats_costs.push(format!("{} {:.0} ns", tool.label(), (on - off) * 1e3 / runs_total));
        }
    }
    let _ = writeln!(
        md,
        "\nCost of the statistics themselves per program run ((µs/op with − without) / runs per op; noisy): {}. \
         What a tool adds per operation beyond its programs' run time is the hooks' dispatch (tracepoint and \
         trampoline entry), its user-space thread competing for the CPU, and cache effects.",
        stats_costs.join(", ")
    );
}
