//! What the library runs with, as plain data: the command line (cli.rs)
//! turns its arguments into these, and the agent's configuration will too.
//! Nothing here knows clap, signals or the terminal.

use std::{path::PathBuf, time::Duration};

use crate::{latency::Slo, profile::Selection, query::dimension::GroupBy, tier::Tier};

/// What `record` captures and where it writes it.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    pub duration: Duration,
    /// Cut the capture into windows this long (`None`: one window).
    pub window: Option<Duration>,
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
    /// Name user frames from DWARF too (inlined functions, source lines,
    /// functions only DWARF names), not only from symbol tables.
    pub debug_info: bool,
    /// Syscall latency histograms (hooks on every syscall).
    pub syscall_latency: bool,
    pub slos: Vec<Slo>,
    /// Kernel BTF to read type layouts from.
    pub btf: PathBuf,
    /// What to do when a program fails to load or attach.
    pub programs: ProgramPolicy,
}

/// What a capture does when one of its programs fails to load or attach.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgramPolicy {
    /// Go on without the programs that can be missed (process events,
    /// thread exits, on-CPU sampling), saying what cannot be shown; the
    /// agent does. `record` fails instead, naming the hook.
    pub degrade: bool,
    /// Test-only: make this program's attach fail as a kernel without its
    /// hook would (`TAILPROF_TEST_BREAK_PROGRAM`).
    pub break_program: Option<String>,
}

/// What `noise` measures and where it writes it.
#[derive(Debug, Clone)]
pub struct NoiseConfig {
    pub duration: Duration,
    pub tier: Tier,
    /// On-CPU sampling frequency of the continuous tier's estimates, Hz (0 for deep).
    pub frequency_hz: u64,
    /// CPUs to report, as given (for messages) and parsed (`None`: every online CPU).
    pub cpus: Option<(String, Vec<u32>)>,
    /// Victim view: these processes (pids or tids, resolved at start).
    pub pids: Vec<u32>,
    /// Events shorter than this are not counted, ns.
    pub threshold_ns: u64,
    pub slos: Vec<Slo>,
    /// Syscall latency histograms (hooks on every syscall).
    pub syscall_latency: bool,
    /// Also write the reports into this directory.
    pub output: Option<PathBuf>,
    pub max_threads: u32,
    /// Kernel BTF to read type layouts from.
    pub btf: PathBuf,
}

/// What `report` re-renders, and how.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// A directory written by `record`.
    pub dir: PathBuf,
    /// Where to write (`None`: the directory itself).
    pub output: Option<PathBuf>,
    /// Slice anew (`None`: as recorded).
    pub group_by: Option<GroupBy>,
    pub selection: Selection,
    /// Show source lines even if the capture was recorded without.
    pub lines: bool,
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
