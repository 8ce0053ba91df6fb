//! Overhead benchmarks, side by side with peers in the same run; writes
//! BENCHMARKS.md at the workspace root.
//!
//! Sections (all by default; `TAILPROF_BENCH_ONLY=sched-pipe,snapshot` runs
//! some and replaces only theirs in an existing BENCHMARKS.md):
//! - `on-cpu`: on-CPU sampling cost against `perf record -F 99 -g -a`;
//! - `sched-pipe`: slowdown of `perf bench sched pipe` under `tailprof record`
//!   in both tiers, `perf record -e sched:sched_switch -g` and a bpftrace
//!   off-CPU one-liner;
//! - `snapshot`: cost per thread of thread-state snapshots in both tiers at
//!   100 to 10,000 idle threads, beside the kernel's own cost of iterating
//!   the tasks with an empty task-iterator program;
//! - `enrichment`: CPU per new process under an exec storm against
//!   `perf record -a -g`, per-sample process lookup, memory per 1,000
//!   tracked processes;
//! - `unwind`: CPU of a capture with `--unwind dwarf` against
//!   `perf record --call-graph dwarf` + `perf script` on code without frame
//!   pointers, the stacks both produce, the unwinder's own statistics;
//! - `noise`: throughput loss of a softirq-heavy loopback UDP load under
//!   `tailprof noise` and under a bpftrace IRQ/softirq one-liner, CPU per
//!   million events, per-program BPF run time;
//! - `memory`: peak RSS of `record`, and RSS under churn;
//! - `agent-idle`: `tailprof agent`'s CPU on an idle host beside `perf record`;
//! - `agent-churn`: its RSS, disk per hour, window-to-queryable time and a
//!   query's cost under an exec storm;
//! - `agent-queries`: query times over 1 h of windows and 24 h of merged
//!   segments of a busy host;
//! - `agent-push`: the agent's CPU without and with pushes to Pyroscope and
//!   OTLP, and the bytes a window takes;
//! - `viewer`: the web viewer in headless Chromium: first render of a
//!   100k-node profile, draw times at 16k/64k/100k nodes, bytes on the wire.

pub(crate) mod agent;
pub(crate) mod common;
mod enrichment;
mod governor;
pub(crate) mod memory;
mod noise;
mod on_cpu;
mod qualify;
mod sched_pipe;
mod snapshot;
mod task_iter;
mod unwind;
mod viewer;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

use crate::util::{root, run as run_cmd};

/// Environment variable naming the sections to run, comma-separated.
const ONLY_ENV: &str = "TAILPROF_BENCH_ONLY";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    OnCpu,
    SchedPipe,
    Snapshot,
    Enrichment,
    Unwind,
    Noise,
    Memory,
    AgentIdle,
    AgentChurn,
    AgentQueries,
    AgentPush,
    Viewer,
}

impl Section {
    const ALL: [Section; 12] = [
        Section::OnCpu,
        Section::SchedPipe,
        Section::Snapshot,
        Section::Enrichment,
        Section::Unwind,
        Section::Noise,
        Section::Memory,
        Section::AgentIdle,
        Section::AgentChurn,
        Section::AgentQueries,
        Section::AgentPush,
        Section::Viewer,
    ];

    fn key(self) -> &'static str {
        match self {
            Section::OnCpu => "on-cpu",
            Section::SchedPipe => "sched-pipe",
            Section::Snapshot => "snapshot",
            Section::Enrichment => "enrichment",
            Section::Unwind => "unwind",
            Section::Noise => "noise",
            Section::Memory => "memory",
            Section::AgentIdle => "agent-idle",
            Section::AgentChurn => "agent-churn",
            Section::AgentQueries => "agent-queries",
            Section::AgentPush => "agent-push",
            Section::Viewer => "viewer",
        }
    }

    fn begin_marker(self) -> String {
        format!("<!-- bench:{} -->", self.key())
    }

    fn end_marker(self) -> String {
        format!("<!-- /bench:{} -->", self.key())
    }
}

/// The sections named by `TAILPROF_BENCH_ONLY`, or all of them.
fn selected_sections() -> anyhow::Result<Vec<Section>> {
    let Ok(only) = std::env::var(ONLY_ENV) else {
        return Ok(Section::ALL.to_vec());
    };
    let mut sections = Vec::new();
    for key in only.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let Some(section) = Section::ALL.into_iter().find(|s| s.key() == key) else {
            let keys: Vec<&str> = Section::ALL.iter().map(|s| s.key()).collect();
            bail!("{ONLY_ENV}: unknown section {key:?}; known: {}", keys.join(", "));
        };
        if !sections.contains(&section) {
            sections.push(section);
        }
    }
    if sections.is_empty() {
        bail!("{ONLY_ENV} is set but names no section");
    }
    Ok(sections)
}

/// Host settings the benchmarks change, put back on drop: BPF run-time
/// statistics, a tracefs mount (perf's and bpftrace's tracepoints need it),
/// the scratch directory.
struct HostGuard {
    stats_before: String,
    mounted_tracefs: bool,
    scratch: PathBuf,
}

const TRACEFS: &str = "/sys/kernel/tracing";

impl HostGuard {
    fn new(need_tracefs: bool) -> anyhow::Result<Self> {
        let scratch = std::env::temp_dir().join(format!("tailprof-bench-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).with_context(|| format!("could not create {}", scratch.display()))?;
        let stats_before = common::bpf_stats();
        let mut guard = HostGuard { stats_before, mounted_tracefs: false, scratch };
        common::set_bpf_stats(true)?;
        if need_tracefs && !Path::new(TRACEFS).join("events").exists() {
            run_cmd(Command::new("mount").args(["-t", "tracefs", "nodev", TRACEFS]))
                .context("could not mount tracefs, which perf's and bpftrace's tracepoints need")?;
            guard.mounted_tracefs = true;
        }
        Ok(guard)
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        if !self.stats_before.is_empty() {
            let _ = common::set_bpf_stats(self.stats_before != "0");
        }
        if self.mounted_tracefs {
            let _ = Command::new("umount").arg(TRACEFS).status();
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// `cargo xtask bench --qualify`: see `bench/qualify.rs`. `measured`:
/// figures measured before (the CI soak's), checked with the rest.
pub fn qualify(bin: &Path, measured: &[(&'static str, f64)]) -> anyhow::Result<()> {
    let sections = selected_sections()?;
    let guard = HostGuard::new(true)?;
    let result = qualify::run(bin, &guard.scratch, &sections, measured);
    drop(guard);
    result
}

pub fn run(bin: &Path, seconds: u64, reps: usize) -> anyhow::Result<()> {
    let sections = selected_sections()?;
    let guard = HostGuard::new(sections.contains(&Section::SchedPipe) || sections.contains(&Section::Noise))?;
    let mut written = Vec::new();
    for section in &sections {
        let md = match section {
            Section::OnCpu => on_cpu::run(bin, &guard.scratch, seconds, reps)?,
            Section::SchedPipe => sched_pipe::run(bin, &guard.scratch, reps)?,
            Section::Snapshot => snapshot::run(bin, &guard.scratch, reps)?,
            Section::Enrichment => enrichment::run(bin, &guard.scratch, reps)?,
            Section::Unwind => unwind::run(bin, &guard.scratch, seconds, reps)?,
            Section::Noise => noise::run(bin, &guard.scratch, reps)?,
            Section::Memory => memory::run(bin, &guard.scratch, reps)?,
            Section::AgentIdle => agent::run_idle(bin, &guard.scratch)?,
            Section::AgentChurn => agent::run_churn(bin, &guard.scratch)?,
            Section::AgentQueries => agent::run_queries(bin, &guard.scratch)?,
            Section::AgentPush => agent::run_push(bin, &guard.scratch)?,
            Section::Viewer => viewer::run(&guard.scratch)?,
        };
        written.push((*section, md));
    }
    drop(guard);
    let path = root().join("BENCHMARKS.md");
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let md = assemble(&previous, &written);
    std::fs::write(&path, &md).with_context(|| format!("could not write {}", path.display()))?;
    println!("wrote {}", path.display());
    print!("{md}");
    Ok(())
}

fn header() -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench` (do not edit by hand; `{ONLY_ENV}=sched-pipe` or a comma-separated list of \
         `on-cpu`, `sched-pipe`, `snapshot`, `enrichment`, `unwind`, `noise`, `memory`, `agent-idle`, `agent-churn`, `agent-queries`, `agent-push`, `viewer` re-runs some sections and keeps the others). Machine: {}, kernel {}.\n",
        machine(),
        common::kernel_release()
    );
    md
}

/// "2 vCPUs (AMD EPYC), a VM, 23.5 GiB": CPU count and model, whether the
/// CPU flags say a hypervisor is underneath, memory.
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown model".into());
    let vm = cpuinfo.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        })
        .map(|kb: f64| kb / (1024.0 * 1024.0))
        .unwrap_or(f64::NAN);
    let kind = if vm { "vCPUs" } else { "CPUs" };
    let host = if vm { "a VM" } else { "bare metal" };
    format!("{cpus} {kind} ({model}), {host}, {mem_gib:.1} GiB")
}

/// The report: the header, then every section in the fixed order, each the
/// one just measured or else the one in `previous` (between its markers).
fn assemble(previous: &str, written: &[(Section, String)]) -> String {
    let mut md = header();
    for section in Section::ALL {
        let body = written
            .iter()
            .find(|(s, _)| *s == section)
            .map(|(_, body)| body.trim_end().to_owned())
            .or_else(|| previous_section(previous, section));
        if let Some(body) = body {
            let _ = writeln!(md, "{}\n{body}\n{}\n", section.begin_marker(), section.end_marker());
        }
    }
    md
}

/// A section's text in an earlier report, between its markers. A report
/// from before the markers held only the on-CPU section, after the header.
fn previous_section(previous: &str, section: Section) -> Option<String> {
    if !previous.contains("<!-- bench:") {
        let start = previous.find("## On-CPU sampling").filter(|_| section == Section::OnCpu)?;
        return Some(previous[start..].trim().to_owned());
    }
    let begin = section.begin_marker();
    let start = previous.find(&begin)? + begin.len();
    let len = previous[start..].find(&section.end_marker())?;
    Some(previous[start..start + len].trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_keeps_sections_not_rerun_and_replaces_the_rest() {
        let first = assemble("", &[(Section::OnCpu, "## A\nold a".into()), (Section::Snapshot, "## C\nold c".into())]);
        let second = assemble(&first, &[(Section::Snapshot, "## C\nnew c".into())]);
        assert!(second.contains("old a"));
        assert!(second.contains("new c"));
        assert!(!second.contains("old c"));
        let a = second.find("## A").unwrap_or(usize::MAX);
        let c = second.find("## C").unwrap_or(0);
        assert!(a < c, "sections keep their order:\n{second}");
        assert_eq!(previous_section(&second, Section::SchedPipe), None);
    }

    #[test]
    fn a_report_without_markers_keeps_its_on_cpu_section() {
        let legacy = "# Benchmarks\n\nMachine: x.\n\n## On-CPU sampling: 30 s\n\n| a |\n";
        let md = assemble(legacy, &[(Section::SchedPipe, "## B\nnew b".into())]);
        assert!(md.contains("## On-CPU sampling: 30 s\n\n| a |"), "{md}");
        assert!(md.contains("new b"));
        assert_eq!(md.matches("# Benchmarks").count(), 1);
    }
}
