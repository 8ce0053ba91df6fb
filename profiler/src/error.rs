//! The library's one error type. Every variant renders as one sentence that
//! says what is wrong and what to do.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "tailprof needs root, or the capabilities CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH and CAP_SYS_NICE (as dist/tailprof-agent.service grants), to load its eBPF programs; run it with sudo"
    )]
    NotPrivileged,

    #[error(
        "this kernel exposes no BTF at {path} ({reason}); use a kernel built with CONFIG_DEBUG_INFO_BTF=y or pass --btf FILE"
    )]
    MissingBtf { path: PathBuf, reason: String },

    #[error(
        "this kernel offers no perf events (no /proc/sys/kernel/perf_event_paranoid); use a kernel built with CONFIG_PERF_EVENTS=y"
    )]
    NoPerfEvents,

    #[error("could not open a cpu-clock perf event on CPU {cpu}: {reason}; check kernel.perf_event_paranoid and that the CPU is online")]
    PerfEventOpen { cpu: u32, reason: String },

    #[error("no process with pid {0} exists; check the pid with `ps -p {0}`")]
    NoSuchPid(u32),

    #[error("too many --pid values ({given}); at most {max} are supported")]
    TooManyPids { given: usize, max: u32 },

    #[error("cannot write to the output directory {path}: {reason}; choose another with -o")]
    OutputDir { path: PathBuf, reason: String },

    #[error("could not write {path}: {reason}")]
    WriteOutput { path: PathBuf, reason: String },

    #[error("could not attach to the kernel hook {hook}: {reason}; this kernel may lack it ({})", .need.advice())]
    Hook { hook: String, reason: String, need: HookNeed },

    /// A combination of options that cannot work; the text says which and what to do.
    #[error("{0}")]
    Usage(String),

    #[error("could not load the eBPF programs into the kernel: {0}")]
    Load(String),

    #[error("the snapshot thread stopped; the capture cannot go on")]
    SnapshotThreadStopped,

    /// A state the code rules out; the text names it.
    #[error("internal error: {0}; please report it")]
    Internal(&'static str),

    /// The embedded eBPF object lacks a map or program this binary names.
    #[error("the embedded eBPF object has no {0}; this tailprof was built from mismatched sources, rebuild it")]
    ObjectMissing(String),

    #[error("this kernel's BTF does not describe a kernel structure the way tailprof reads it")]
    KernelLayout(#[source] crate::kernel_btf::BtfError),

    #[error("could not read a kernel map")]
    Map(#[source] aya::maps::MapError),

    #[error("could not merge windows")]
    Merge(#[source] crate::model::window::MergeError),

    #[error("could not write {what} as JSON")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("could not {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{dir} is not a tailprof capture: {reason}; give a directory written by `tailprof record -o DIR`")]
    NotACapture { dir: PathBuf, reason: String },

    #[error("{path} is truncated or corrupt ({reason}); nothing was rendered; record the capture again")]
    CorruptCapture { path: PathBuf, reason: String },
}

/// What a hook is for, which says what to do when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookNeed {
    /// Process lifecycle: always needed.
    Processes,
    /// Scheduler hooks and snapshots of `record`, which --no-off-cpu turns off.
    OffCpu,
    /// Interrupt and softirq hooks of `noise` (and of `record`'s noise report).
    Noise,
}

impl HookNeed {
    fn advice(self) -> &'static str {
        match self {
            Self::Processes => "tailprof needs it to tell processes apart",
            Self::OffCpu => "use --no-off-cpu to capture without scheduler hooks",
            Self::Noise => {
                "the noise report needs the irq and softirq tracepoints; use a kernel with CONFIG_TRACEPOINTS and BTF"
            }
        }
    }
}

impl Error {
    pub(crate) fn load(err: &(dyn std::error::Error + 'static)) -> Self {
        Self::Load(format_chain(err))
    }

    /// A hook that would not attach, and what it was needed for.
    pub(crate) fn hook(hook: &str, need: HookNeed, err: &(dyn std::error::Error + 'static)) -> Self {
        Self::Hook { hook: hook.into(), reason: format_chain(err), need }
    }
}

/// Render an error with its `source()` chain on one line: `a: b: c`.
pub fn format_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}
