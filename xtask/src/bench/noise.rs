//! OS-noise hook overhead on a softirq-heavy load: a loopback UDP flood
//! (`xtask/workloads/udp_flood.c`) alone, under `tailprof noise` and under a
//! bpftrace one-liner that counts and times softirqs, IRQ handlers and local
//! timer interrupts per CPU.
//!
//! The load's throughput is datagrams received per second. Both of its
//! threads are pinned to one CPU: with a thread on each CPU, or unpinned,
//! the throughput on this VM varies by 10 to 25% from run to run, on one
//! CPU by a few percent.
//!
//! The cost of a tool is per million events: softirqs and hardirqs (all
//! CPUs, /proc/softirqs and /proc/interrupts), context switches (/proc/stat
//! ctxt) and the load's own system calls (it counts its send and recv calls).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::{
    common,
    common::{
        bpf_prog_names, bpf_progs_of, interrupt, median, ms, process_cpu_ns, prog_deltas, set_bpf_stats, spawn_tool,
        wait_ready, wait_with_cost, Cost, ProgStats, Started, Tool as _,
    },
};
use crate::util::{output, root};

/// Seconds per load run.
const LOAD_SECS: u64 = 5;
/// The CPU both threads of the load are pinned to.
const LOAD_CPU: u32 = 0;
/// bpftrace is ready once the programs it holds have not changed for this long.
const SETTLE: Duration = Duration::from_secs(1);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// What `tailprof noise` prints on stderr once its hooks are attached and its window is open.
const TAILPROF_READY: &str = "tailprof: measuring noise";

/// Per-CPU counts and total durations of softirqs (by vector), IRQ handlers
/// (by IRQ) and local timer interrupts: `stats()` keeps a count and a sum of
/// the entry-to-exit times. The start stamps are zeroed at exit, so an exit
/// whose entry the hook did not see is not timed against a stale stamp; the
/// stamp maps are cleared at the end so only the statistics are printed.
const BPFTRACE_IRQ: &str = "tracepoint:irq:softirq_entry { @softirq_start[cpu] = nsecs; } \
     tracepoint:irq:softirq_exit /@softirq_start[cpu]/ { @softirq[cpu, args->vec] = stats(nsecs - @softirq_start[cpu]); \
     @softirq_start[cpu] = 0; } \
     tracepoint:irq:irq_handler_entry { @irq_start[cpu] = nsecs; } \
     tracepoint:irq:irq_handler_exit /@irq_start[cpu]/ { @hardirq[cpu, args->irq] = stats(nsecs - @irq_start[cpu]); \
     @irq_start[cpu] = 0; } \
     tracepoint:irq_vectors:local_timer_entry { @timer_start[cpu] = nsecs; } \
     tracepoint:irq_vectors:local_timer_exit /@timer_start[cpu]/ { @timer[cpu] = stats(nsecs - @timer_start[cpu]); \
     @timer_start[cpu] = 0; } \
     END { clear(@softirq_start); clear(@irq_start); clear(@timer_start); }";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    None,
    Tailprof,
    Bpftrace,
}

impl common::Tool for Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::None => "no tool",
            Tool::Tailprof => "tailprof",
            Tool::Bpftrace => "bpftrace",
        }
    }
}

type Condition = common::Condition<Tool>;

const CONDITIONS: [Condition; 5] = [
    Condition { tool: Tool::None, bpf_stats: false },
    Condition { tool: Tool::Tailprof, bpf_stats: false },
    Condition { tool: Tool::Bpftrace, bpf_stats: false },
    Condition { tool: Tool::Tailprof, bpf_stats: true },
    Condition { tool: Tool::Bpftrace, bpf_stats: true },
];

/// Host-wide event counters (all CPUs).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// Sum of /proc/softirqs.
    softirqs: u64,
    /// Sum of /proc/interrupts: device IRQs and architecture vectors (LOC, RES, CAL, …).
    hardirqs: u64,
    /// Context switches, `ctxt` in /proc/stat.
    ctxt: u64,
    /// Hypervisor steal of all CPUs, /proc/stat, in clock ticks.
    steal_ticks: u64,
}

impl Counters {
    fn now() -> anyhow::Result<Counters> {
        let softirqs = std::fs::read_to_string("/proc/softirqs").context("could not read /proc/softirqs")?;
        let interrupts = std::fs::read_to_string("/proc/interrupts").context("could not read /proc/interrupts")?;
        let stat = std::fs::read_to_string("/proc/stat").context("could not read /proc/stat")?;
        let ctxt = stat
            .lines()
            .find_map(|l| l.strip_prefix("ctxt ")?.trim().parse().ok())
            .context("no ctxt line in /proc/stat")?;
        // "cpu  user nice system idle iowait irq softirq steal guest guest_nice"
        let steal_ticks = stat
            .lines()
            .find_map(|l| l.strip_prefix("cpu ")?.split_whitespace().nth(7)?.parse().ok())
            .context("no cpu line in /proc/stat")?;
        Ok(Counters { softirqs: table_total(&softirqs), hardirqs: table_total(&interrupts), ctxt, steal_ticks })
    }

    fn since(self, before: Counters) -> Counters {
        Counters {
            softirqs: self.softirqs.saturating_sub(before.softirqs),
            hardirqs: self.hardirqs.saturating_sub(before.hardirqs),
            ctxt: self.ctxt.saturating_sub(before.ctxt),
            steal_ticks: self.steal_ticks.saturating_sub(before.steal_ticks),
        }
    }
}

/// Sum of the per-CPU counts of /proc/softirqs or /proc/interrupts: on every
/// row after the header of CPU names, the numbers right after the row's name
/// (at most one per CPU; ERR and MIS have a single one), not the IRQ chip
/// and action names after them.
fn table_total(text: &str) -> u64 {
    let mut lines = text.lines();
    let cpus = lines.next().map_or(0, |header| header.split_whitespace().count());
    lines
        .filter_map(|l| l.split_once(':'))
        .map(|(_, counts)| counts.split_whitespace().take(cpus).map_while(|w| w.parse::<u64>().ok()).sum::<u64>())
        .sum()
}

/// What one run of the load measured.
#[derive(Debug, Clone, Copy)]
struct Load {
    received: u64,
    sent: u64,
    /// send(2) + recv(2) calls of the load, as it counted them.
    syscalls: u64,
    /// The load's window, as it measured it.
    seconds: f64,
    /// Host-wide counters over the load's whole run.
    counts: Counters,
    wall: Duration,
}

impl Load {
    fn received_per_s(&self) -> f64 {
        self.received as f64 / self.seconds
    }

    fn sent_per_s(&self) -> f64 {
        self.sent as f64 / self.seconds
    }

    /// Events a tool's hooks see during the load: softirqs, hardirqs,
    /// context switches and the load's system calls.
    fn events(&self) -> u64 {
        self.counts.softirqs + self.counts.hardirqs + self.counts.ctxt + self.syscalls
    }
}

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
    /// The tool's process over its whole life: start-up, the load, its report.
    whole: Cost,
    /// What the tool said it missed or dropped, if anything.
    note: String,
}

impl Run {
    fn load_tool_ns(&self) -> u64 {
        self.load_proc_ns + self.load_bpf_ns
    }

    /// Tool CPU (process + BPF) per million events, ms (= ns per event).
    fn ms_per_million_events(&self) -> f64 {
        self.load_tool_ns() as f64 / self.load.events() as f64
    }
}

fn build_load(scratch: &Path) -> anyhow::Result<PathBuf> {
    let src = root().join("xtask/workloads/udp_flood.c");
    let bin = scratch.join("udp_flood");
    output(Command::new("gcc").args(["-O2", "-Wall", "-pthread", "-o"]).arg(&bin).arg(&src))
        .with_context(|| format!("could not compile {}", src.display()))?;
    Ok(bin)
}

fn run_load(load_bin: &Path) -> anyhow::Result<Load> {
    let before = Counters::now()?;
    let begin = Instant::now();
    let cpu = LOAD_CPU.to_string();
    let text = output(Command::new(load_bin).args([&LOAD_SECS.to_string(), &cpu, &cpu]))?;
    let wall = begin.elapsed();
    let counts = Counters::now()?.since(before);
    let value = |name: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("no {name} in the output of udp_flood:\n{text}"))
    };
    Ok(Load {
        received: value("received")? as u64,
        sent: value("sent")? as u64,
        syscalls: (value("send_calls")? + value("recv_calls")?) as u64,
        seconds: value("seconds")?,
        counts,
        wall,
    })
}

fn tool_command(tool: Tool, bin: &Path) -> Option<Command> {
    match tool {
        Tool::None => None,
        Tool::Tailprof => {
            let mut cmd = Command::new(bin);
            cmd.args(["noise", "--duration", "600s"]);
            Some(cmd)
        }
        Tool::Bpftrace => {
            let mut cmd = Command::new("bpftrace");
            cmd.args(["-e", BPFTRACE_IRQ]);
            Some(cmd)
        }
    }
}

fn start(cond: Condition, bin: &Path, scratch: &Path, rep: usize) -> anyhow::Result<Option<Started>> {
    let Some(cmd) = tool_command(cond.tool, bin) else {
        return Ok(None);
    };
    let base = scratch.join(format!("noise-{}-stats-{}-{rep}", cond.tool.label(), cond.bpf_stats));
    spawn_tool(cmd, cond, &base).map(Some)
}

/// tailprof is ready once it says its window is open (its hooks are
/// attached by then); bpftrace once it said "Attaching" and the programs it
/// holds have not changed for [`SETTLE`].
fn wait_until_ready(tool: Tool, started: &mut Started) -> anyhow::Result<()> {
    let pid = started.child.id();
    let (stdout, stderr) = (started.stdout.clone(), started.stderr.clone());
    let said = |path: &Path, what: &str| std::fs::read_to_string(path).unwrap_or_default().contains(what);
    let mut last: Option<(Vec<u32>, Instant)> = None;
    wait_ready(&mut started.child, tool.label(), &started.stderr, READY_TIMEOUT, || match tool {
        Tool::None => true,
        Tool::Tailprof => said(&stderr, TAILPROF_READY) && !bpf_progs_of(pid).is_empty(),
        Tool::Bpftrace => {
            if !said(&stdout, "Attaching") {
                return false;
            }
            let key: Vec<u32> = bpf_progs_of(pid).into_keys().collect();
            match &last {
                Some((prev, since)) if *prev == key && !key.is_empty() => since.elapsed() >= SETTLE,
                _ => {
                    last = Some((key, Instant::now()));
                    false
                }
            }
        }
    })
}

/// What the tool reported missing: tailprof's events its hooks were not
/// handed (summed over CPUs by source) and map overflows, bpftrace's lost
/// events.
fn loss_note(tool: Tool, stdout: &Path, stderr: &Path) -> String {
    let (file, needles): (&Path, &[&str]) = match tool {
        Tool::None => return String::new(),
        Tool::Tailprof => (stdout, &["did not hand", "maps were full"]),
        Tool::Bpftrace => (stderr, &["lost"]),
    };
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| needles.iter().any(|n| l.to_ascii_lowercase().contains(n)))
        .map(|l| summarize_missed(l).unwrap_or_else(|| l.trim().trim_end_matches('.').to_owned()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// "The kernel counted events its tracepoints did not hand to the hooks
/// (hooks saw: CPU 0 LOC 1298 of 1300, CPU 1 36 127 of 128); …" as "hooks
/// missed 3 events the kernel counted (IRQ 36 1, LOC 2)", summed over CPUs.
fn summarize_missed(line: &str) -> Option<String> {
    let list = line.split_once("(hooks saw: ")?.1.split_once(')')?.0;
    let mut by_source: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for item in list.split(", ") {
        let words: Vec<&str> = item.split_whitespace().collect();
        let [.., saw, "of", counted] = words[..] else {
            return None;
        };
        let name = words.get(2..words.len() - 3)?.join(" ");
        let name = if name.parse::<u32>().is_ok() { format!("IRQ {name}") } else { name };
        let e = by_source.entry(name).or_default();
        e.0 += saw.parse::<u64>().ok()?;
        e.1 += counted.parse::<u64>().ok()?;
    }
    let missed: u64 = by_source.values().map(|(s, c)| c.saturating_sub(*s)).sum();
    let detail: Vec<String> = by_source.iter().map(|(n, (s, c))| format!("{n} {}", c.saturating_sub(*s))).collect();
    Some(format!("hooks missed {missed} events the kernel counted ({})", detail.join(", ")))
}

fn measure(cond: Condition, bin: &Path, load_bin: &Path, scratch: &Path, rep: usize) -> anyhow::Result<Run> {
    set_bpf_stats(cond.bpf_stats)?;
    let tool = cond.tool;
    let Some(mut started) = start(cond, bin, scratch, rep)? else {
        let load = run_load(load_bin)?;
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
    let pid = started.child.id();
    let names = bpf_prog_names().unwrap_or_default();
    let (proc_before, progs_before) = (process_cpu_ns(pid), bpf_progs_of(pid));
    let load = run_load(load_bin);
    let (proc_after, progs_after) = (process_cpu_ns(pid), bpf_progs_of(pid));
    interrupt(&started.child)?;
    let Started { child, stdout, stderr } = started;
    let whole = wait_with_cost(child, tool.label(), true);
    let load = load?;
    let whole = whole?;
    let progs = prog_deltas(&progs_before, &progs_after, &names);
    let note = loss_note(tool, &stdout, &stderr);
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
    let load_bin = build_load(scratch)?;
    let mut runs = Vec::new();
    // Interleaved repetitions, so that drift of the host hits every condition alike.
    for rep in 0..reps {
        for cond in CONDITIONS {
            eprintln!("xtask bench: noise, repetition {} of {reps}: {}", rep + 1, cond.label());
            runs.push(measure(cond, bin, &load_bin, scratch, rep)?);
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
    received_per_s: f64,
    events: f64,
    load_proc_ms: f64,
    load_bpf_ms: f64,
    ms_per_million_events: f64,
    whole_ms: f64,
}

fn medians(runs: &[Run], cond: Condition) -> Medians {
    let m = |f: &dyn Fn(&Run) -> f64| median(of(runs, cond).map(f).collect());
    Medians {
        received_per_s: m(&|r| r.load.received_per_s()),
        events: m(&|r| r.load.events() as f64),
        load_proc_ms: m(&|r| r.load_proc_ns as f64 / 1e6),
        load_bpf_ms: m(&|r| r.load_bpf_ns as f64 / 1e6),
        ms_per_million_events: m(&|r| r.ms_per_million_events()),
        whole_ms: m(&|r| ms(r.whole.total())),
    }
}

/// Throughput loss against the load alone, percent.
fn loss(runs: &[Run], cond: Condition) -> f64 {
    let base = medians(runs, Condition::without_stats(Tool::None)).received_per_s;
    100.0 * (1.0 - medians(runs, cond).received_per_s / base)
}

fn report(reps: usize, runs: &[Run]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## OS-noise hooks: `tailprof noise` on a softirq-heavy load (loopback UDP flood)\n");
    report_method(&mut md, reps, runs);
    report_runs(&mut md, runs);
    report_medians(&mut md, reps, runs);
    report_side_by_side(&mut md, runs);
    report_programs(&mut md, runs);
    md
}

fn report_method(md: &mut String, reps: usize, runs: &[Run]) {
    let _ = writeln!(
        md,
        "Load: `udp_flood {LOAD_SECS} {LOAD_CPU} {LOAD_CPU}` (`xtask/workloads/udp_flood.c`, `gcc -O2`): a sender \
         thread sends 64-byte datagrams over UDP on 127.0.0.1 to a receiver thread as fast as it can for {LOAD_SECS} \
         s. Every datagram is a send(2) whose NET_RX softirq, run on the sender's way out of the loopback device, \
         delivers it to the receiver's socket; the receiver recv(2)s it, and what it cannot keep up with is dropped \
         at its socket. Both threads are pinned to CPU {LOAD_CPU}, where they take turns (context switches, \
         wake-ups): with a thread on each CPU, or unpinned, the throughput on this VM varies by 10 to 25% from run \
         to run, pinned to one CPU by a few percent. Throughput = datagrams received per second, as the load counts \
         them. {reps} interleaved repetitions of every condition, medians reported:\n"
    );
    let _ = writeln!(md, "| condition | command (whole host; started before the load, SIGINT after it) |");
    let _ = writeln!(md, "|---|---|");
    let _ = writeln!(md, "| no tool | |");
    let _ = writeln!(
        md,
        "| tailprof | `tailprof noise --duration 600s`: tp_btf hooks on softirq entry/exit, IRQ handler entry/exit, \
         the x86 interrupt vectors and NMIs (per-CPU osnoise accounting with handler histograms), plus sched_switch, \
         sched_wakeup, sys_enter and sys_exit (run-queue and syscall latency histograms) |"
    );
    let _ = writeln!(md, "| bpftrace | `bpftrace -e '{BPFTRACE_IRQ}'` |");
    let sys_enter_per_syscall = median(
        of(runs, Condition::with_stats(Tool::Tailprof))
            .filter_map(|r| Some(r.progs.get("sys_enter")?.run_cnt as f64 / r.load.syscalls as f64))
            .collect(),
    );
    let _ = writeln!(
        md,
        "\nThe throughput loss is measured with `kernel.bpf_stats_enabled=0` (run-time statistics add two clock reads \
         to every BPF program run); each tool then runs once more per repetition with statistics on (\"bpf_stats \
         on\" rows) to read the run time of each of its programs from /proc/PID/fdinfo. tailprof counts as ready once \
         it prints \"{TAILPROF_READY}\" (its hooks are attached and its window open), bpftrace once it printed \
         \"Attaching\" and the BPF programs it holds have not changed for {} s. Events during the load = softirqs \
         (/proc/softirqs) + hardirqs (/proc/interrupts: device IRQs and the vectors LOC, RES, CAL, TLB, …) over all \
         CPUs + context switches (`ctxt` in /proc/stat), deltas over the load's run, + the load's own system calls \
         (its send(2) and recv(2) calls, as it counts them; other processes' are left out, and are few: tailprof's \
         sys_enter hook, which sees every system call on the host, ran {sys_enter_per_syscall:.3} times per system \
         call of the load). Tool CPU during the load = CPU time of the tool's threads \
         (/proc/PID/task/*/schedstat) + the run time of its BPF programs (statistics-on runs only); CPU per million \
         events = that / events, in ms (which is also ns per event), from the statistics-on runs. Whole run = \
         user+sys of the tool's process from wait4 (start-up, the load, its report). The BPF programs run in the \
         interrupted and switching tasks, on the load's CPU, so their time is inside the throughput loss as well. \
         Tool's note: events the kernel counted (its /proc/interrupts and /proc/softirqs rows) that were not handed \
         to tailprof's hooks, as tailprof reports them at the end, summed over CPUs.\n",
        SETTLE.as_secs()
    );
}

fn report_runs(md: &mut String, runs: &[Run]) {
    let _ = writeln!(
        md,
        "| run | condition | received/s | sent/s | softirqs | hardirqs | context switches | load syscalls | events \
         | steal ms | load s | tool CPU during load ms (process + BPF) | tool CPU whole run ms | tool's note |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    for (i, r) in runs.iter().enumerate() {
        let c = r.load.counts;
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.1} + {:.1} | {:.1} | {} |",
            i / CONDITIONS.len() + 1,
            r.cond.label(),
            r.load.received_per_s(),
            r.load.sent_per_s(),
            c.softirqs,
            c.hardirqs,
            c.ctxt,
            r.load.syscalls,
            r.load.events(),
            c.steal_ticks as f64 * 1e3 / ticks_per_s,
            r.load.wall.as_secs_f64(),
            r.load_proc_ns as f64 / 1e6,
            r.load_bpf_ns as f64 / 1e6,
            ms(r.whole.total()),
            r.note,
        );
    }
}

fn report_medians(md: &mut String, reps: usize, runs: &[Run]) {
    let _ = writeln!(
        md,
        "\n| median of {reps} | received/s | throughput loss | events during load | tool process ms during load \
         | tool BPF ms during load | tool CPU per million events, ms | tool CPU, whole run ms |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for cond in CONDITIONS {
        let m = medians(runs, cond);
        let bpf_unseen = !cond.bpf_stats && cond.tool != Tool::None;
        let (bpf, per_million) = if bpf_unseen {
            ("–".to_owned(), "–".to_owned())
        } else {
            (format!("{:.1}", m.load_bpf_ms), format!("{:.1}", m.ms_per_million_events))
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.1}% | {:.0} | {:.1} | {bpf} | {per_million} | {:.1} |",
            cond.label(),
            m.received_per_s,
            loss(runs, cond),
            m.events,
            m.load_proc_ms,
            m.whole_ms,
        );
    }
}

fn report_side_by_side(md: &mut String, runs: &[Run]) {
    let none = medians(runs, Condition::without_stats(Tool::None));
    let [tp_off, bt_off] = [Tool::Tailprof, Tool::Bpftrace].map(|t| medians(runs, Condition::without_stats(t)));
    let [tp_on, bt_on] = [Tool::Tailprof, Tool::Bpftrace].map(|t| medians(runs, Condition::with_stats(t)));
    let [tp_loss, bt_loss] = [Tool::Tailprof, Tool::Bpftrace].map(|t| loss(runs, Condition::without_stats(t)));
    let _ = writeln!(md, "\nSide by side (medians):\n");
    let _ = writeln!(md, "| | no tool | tailprof | bpftrace | bpftrace / tailprof |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    let _ = writeln!(
        md,
        "| load throughput, datagrams received/s | {:.0} | {:.0} | {:.0} | |",
        none.received_per_s, tp_off.received_per_s, bt_off.received_per_s
    );
    let _ = writeln!(md, "| throughput loss | | {tp_loss:.1}% | {bt_loss:.1}% | {:.2} |", bt_loss / tp_loss);
    let tool_ms = |m: &Medians| m.load_proc_ms + m.load_bpf_ms;
    let _ = writeln!(
        md,
        "| tool CPU during the load, ms (process + BPF, bpf_stats on) | | {:.1} | {:.1} | {:.2} |",
        tool_ms(&tp_on),
        tool_ms(&bt_on),
        tool_ms(&bt_on) / tool_ms(&tp_on)
    );
    let _ = writeln!(
        md,
        "| events during the load (tools: bpf_stats on runs) | {:.0} | {:.0} | {:.0} | |",
        none.events, tp_on.events, bt_on.events
    );
    let _ = writeln!(
        md,
        "| **tool CPU per million events, ms** | | **{:.1}** | **{:.1}** | **{:.2}** |",
        tp_on.ms_per_million_events,
        bt_on.ms_per_million_events,
        bt_on.ms_per_million_events / tp_on.ms_per_million_events
    );
    let common_ms = |cond: Condition| {
        median(
            of(runs, cond)
                .map(|r| {
                    r.progs.iter().filter(|(n, _)| is_irq_hook(n)).map(|(_, p)| p.run_time_ns).sum::<u64>() as f64 / 1e6
                })
                .collect(),
        )
    };
    let [tp_common, bt_common] = [Tool::Tailprof, Tool::Bpftrace].map(|t| common_ms(Condition::with_stats(t)));
    let _ = writeln!(
        md,
        "| BPF ms on the hooks both have (softirq, IRQ handler, local timer entry/exit; bpf_stats on) | | {tp_common:.1} \
         | {bt_common:.1} | {:.2} |",
        bt_common / tp_common
    );
    let shares = |pred: &dyn Fn(&str) -> bool| {
        median(
            of(runs, Condition::with_stats(Tool::Tailprof))
                .map(|r| {
                    let part: u64 = r.progs.iter().filter(|(n, _)| pred(n)).map(|(_, p)| p.run_time_ns).sum();
                    100.0 * part as f64 / r.load_bpf_ns.max(1) as f64
                })
                .collect(),
        )
    };
    let sched_share = shares(&|n| is_latency_hook(n));
    let irq_share = shares(&|n| is_irq_hook(n));
    let met = tp_loss < 3.0;
    let none_per_s = median(
        of(runs, Condition::without_stats(Tool::None))
            .map(|r| r.load.events() as f64 / r.load.wall.as_secs_f64())
            .collect(),
    );
    let _ = writeln!(
        md,
        "\n**Goal (`tailprof noise` costs the load less than 3% of its throughput): {}.** Throughput loss tailprof \
         {tp_loss:.1}%, bpftrace {bt_loss:.1}%. tailprof hooks more than bpftrace: {sched_share:.0}% of its BPF time \
         goes to the scheduler and syscall hooks of its latency histograms (sched_switch, sched_wakeup, sys_enter, \
         sys_exit), {irq_share:.0}% to the softirq, IRQ and vector hooks that bpftrace's one-liner also has; on those \
         alone bpftrace spends {:.1}x tailprof's BPF time. The load is dense in events: alone it makes {:.0} \
         events per second, nearly all on CPU {LOAD_CPU}, which it keeps busy, i.e. one per {:.0} ns of CPU; 3% \
         of that is {:.0} ns per event for everything a tool does on it, against {:.0} ns per event of tailprof's \
         BPF programs alone.\n",
        if met { "met" } else { "not met" },
        bt_common / tp_common,
        none_per_s,
        1e9 / none_per_s,
        0.03e9 / none_per_s,
        median(
            of(runs, Condition::with_stats(Tool::Tailprof))
                .map(|r| r.load_bpf_ns as f64 / r.load.events() as f64)
                .collect()
        ),
    );
}

/// The hooks of the latency histograms and of process tracking: scheduler, syscalls, fork/exec.
fn is_latency_hook(name: &str) -> bool {
    ["sched_", "sys_enter", "sys_exit", "process_"].iter().any(|p| name.starts_with(p))
}

/// The interrupt hooks both tools have: softirq, IRQ handler and local
/// timer entry and exit (bpftrace's names are cut to 15 bytes).
fn is_irq_hook(name: &str) -> bool {
    ["softirq_", "irq_handler_", "local_timer_"].iter().any(|p| name.starts_with(p))
}

/// Where the BPF tools' time goes, by program, from the statistics-on runs.
fn report_programs(md: &mut String, runs: &[Run]) {
    let _ = writeln!(
        md,
        "BPF programs while the load ran (\"bpf_stats on\" runs, medians; names cut to 15 bytes by the kernel; per \
         datagram = divided by the datagrams received, so runs for the rest of the host are included):\n"
    );
    let _ = writeln!(
        md,
        "| tool | program | runs | runs per datagram | ns per run | BPF ms | share of the tool's BPF time |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|");
    let base = medians(runs, Condition::without_stats(Tool::None)).received_per_s;
    for tool in [Tool::Tailprof, Tool::Bpftrace] {
        let cond = Condition::with_stats(tool);
        let names: BTreeSet<&String> = of(runs, cond).flat_map(|r| r.progs.keys()).collect();
        let total_ms = medians(runs, cond).load_bpf_ms;
        let mut rows = Vec::new();
        for name in names {
            let stat = |r: &Run| r.progs.get(name).copied().unwrap_or_default();
            let m = |f: &dyn Fn(&Run) -> f64| median(of(runs, cond).map(f).collect());
            let runs_n = m(&|r| stat(r).run_cnt as f64);
            let per_datagram = m(&|r| stat(r).run_cnt as f64 / r.load.received as f64);
            let bpf_ms = m(&|r| stat(r).run_time_ns as f64 / 1e6);
            rows.push((bpf_ms, name, runs_n, per_datagram));
        }
        // Costliest first.
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        let idle: Vec<&str> = rows.iter().filter(|r| r.2 == 0.0).map(|r| r.1.as_str()).collect();
        for &(bpf_ms, name, runs_n, per_datagram) in rows.iter().filter(|r| r.2 > 0.0) {
            let ns_per_run = if runs_n > 0.0 { format!("{:.0}", bpf_ms * 1e6 / runs_n) } else { "–".into() };
            let _ = writeln!(
                md,
                "| {} | {name} | {runs_n:.0} | {per_datagram:.2} | {ns_per_run} | {bpf_ms:.1} | {:.0}% |",
                tool.label(),
                100.0 * bpf_ms / total_ms,
            );
        }
        if !idle.is_empty() {
            let _ = writeln!(md, "| {} | did not run: {} | 0 | | | | |", tool.label(), idle.join(", "));
        }
        let m = |f: &dyn Fn(&Run) -> f64| median(of(runs, cond).map(f).collect());
        let bpf_ns_per_datagram = m(&|r| r.load_bpf_ns as f64 / r.load.received as f64);
        let off = medians(runs, Condition::without_stats(tool)).received_per_s;
        let _ = writeln!(
            md,
            "| {} | **all** | | | | **{total_ms:.1}** | {bpf_ns_per_datagram:.0} ns per datagram, of {:.0} ns \
             added per datagram with statistics off |",
            tool.label(),
            1e9 / off - 1e9 / base,
        );
    }
    let _ = writeln!(
        md,
        "\nAdded ns per datagram = 1/throughput with the tool − 1/throughput without (the load keeps its CPU busy, so \
         that is CPU time per datagram received). What a tool adds beyond its programs' run time is the hooks' \
         dispatch (tracepoint and trampoline entry), and cache effects."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_totals_count_per_cpu_numbers_only() {
        let interrupts = "           CPU0       CPU1       \n \
             24:          1          0  IO-APIC   5-edge      ACPI:Ged\n \
             36:          0    4397152 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n\
             LOC:    4351504    4400819   Local timer interrupts\n\
             ERR:          7\n\
             PIW:          0          0   Posted-interrupt wakeup event\n";
        assert_eq!(table_total(interrupts), 1 + 4_397_152 + 4_351_504 + 4_400_819 + 7);
        let softirqs = "                    CPU0       CPU1       \n          HI:          0          0\n      \
             NET_RX:    1574279    2530348\n";
        assert_eq!(table_total(softirqs), 1_574_279 + 2_530_348);
    }

    #[test]
    fn missed_events_are_summed_by_source() {
        let line = "The kernel counted events its tracepoints did not hand to the hooks (hooks saw: CPU 0 LOC 1298 \
                    of 1300, CPU 1 36 127 of 128, CPU 1 LOC 1897 of 1905); their counts and times above are short.";
        assert_eq!(
            summarize_missed(line).as_deref(),
            Some("hooks missed 11 events the kernel counted (IRQ 36 1, LOC 10)")
        );
        assert_eq!(summarize_missed("something else"), None);
    }

    #[test]
    fn host_counters_move_forward() {
        let before = Counters::now().expect("procfs readable");
        let after = Counters::now().expect("procfs readable");
        assert!(after.softirqs >= before.softirqs && after.ctxt >= before.ctxt);
        assert!(before.hardirqs > 0);
    }
}
