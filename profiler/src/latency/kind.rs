//! Which latency a histogram holds.

use profiler_common::{HIST_IRQ, HIST_OFF_CPU, HIST_RUNQ, HIST_SOFTIRQ, HIST_SYSCALL, HIST_VECTOR};
use serde::Serialize;

/// Which latency a histogram holds, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Run-queue latency (wakeup or preemption to on-CPU), per process.
    Runq,
    /// Off-CPU interval, per state (sleeping, disk, other).
    OffCpu,
    /// System call latency, per syscall.
    Syscall,
    /// Hardware interrupt handler own time, per IRQ line.
    Irq,
    /// Architecture interrupt vector own time (local timer, IPIs).
    Vector,
    /// Softirq handler own time, per vector.
    Softirq,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 6] = [Kind::Runq, Kind::OffCpu, Kind::Syscall, Kind::Irq, Kind::Vector, Kind::Softirq];

    /// The kind of a kernel `HIST_*` value, `None` for unknown ones.
    pub fn from_raw(kind: u32) -> Option<Kind> {
        match kind {
            HIST_RUNQ => Some(Kind::Runq),
            HIST_OFF_CPU => Some(Kind::OffCpu),
            HIST_SYSCALL => Some(Kind::Syscall),
            HIST_IRQ => Some(Kind::Irq),
            HIST_VECTOR => Some(Kind::Vector),
            HIST_SOFTIRQ => Some(Kind::Softirq),
            _ => None,
        }
    }

    /// The JSON name: `runq`, `off_cpu`, `syscall`, `irq`, `vector`, `softirq`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Runq => "runq",
            Kind::OffCpu => "off_cpu",
            Kind::Syscall => "syscall",
            Kind::Irq => "irq",
            Kind::Vector => "vector",
            Kind::Softirq => "softirq",
        }
    }

    /// A heading for tables and plots.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Runq => "Run-queue latency (wakeup or preemption to on-CPU)",
            Kind::OffCpu => "Off-CPU time by state",
            Kind::Syscall => "System call latency",
            Kind::Irq => "Hardware interrupt handlers (own time)",
            Kind::Vector => "Interrupt vectors (own time)",
            Kind::Softirq => "Softirq handlers (own time)",
        }
    }
}
