//! What the library runs with, as plain data: the command line (cli.rs)
//! turns its arguments into these, and the agent's configuration will too.
//! Nothing here knows clap, signals or the terminal.

use std::{path::PathBuf, time::Duration};

use crate::{latency::Slo, profile::Selection, query::dimension::GroupBy, tier::Tier};

/// What `record` captures and where it writes it.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    pub duration: Duration,
    /// On-CPU sampling frequency per CPU, Hz.
    pub frequency_hz: u64,
    /// Which processes and threads (pids resolved at start).
    pub selection: Selection,
    pub group_by: GroupBy,
    /// Output directory.
    pub output: PathBuf,
    pub tier: Tier,
    /// Share of one CPU the capture may spend, percent (`None`: no governor).
    pub cpu_budget: Option<f64>,
    /// Scheduler hooks or snapshots for off-CPU time.
    pub off_cpu: bool,
    /// Thread-state snapshots per second (0 without the off-CPU view).
    pub state_hz: u64,
    pub max_threads: u32,
    pub max_stacks: u32,
    pub unwind: UnwindMethod,
    /// Bytes of user stack copied per sample for DWARF unwinding.
    pub user_stack_bytes: u32,
    /// Source lines of user frames in the reports.
    pub lines: bool,
    /// Syscall latency histograms (hooks on every syscall).
    pub syscall_latency: bool,
    pub slos: Vec<Slo>,
    /// Kernel BTF to read type layouts from.
    pub btf: PathBuf,
}

/// How user stacks are walked (`--unwind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnwindMethod {
    /// DWARF where a process's code lacks frame pointers, frame pointers elsewhere.
    Auto,
    /// Frame pointers, walked in the kernel.
    Fp,
    /// Copy the user stack and unwind it with the modules' CFI.
    Dwarf,
}

impl UnwindMethod {
    /// The kernel's `UNWIND_*` value.
    pub fn mode(self) -> u8 {
        match self {
            Self::Auto => profiler_common::UNWIND_AUTO,
            Self::Fp => profiler_common::UNWIND_FP,
            Self::Dwarf => profiler_common::UNWIND_DWARF,
        }
    }
}
