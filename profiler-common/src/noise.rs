//! OS noise accounting, osnoise-style, from tracepoints: per CPU, the own
//! time (nested noise excluded) of hardware interrupts, interrupt vectors,
//! softirqs, NMIs and kernel threads; per victim thread (`--pid`), what
//! interrupted it on CPU and which threads ran while it waited for one.

/// Name of the per-CPU hash map [`NoiseKey`] → [`NoiseStats`].
pub const NOISE_MAP: &str = "NOISE";
/// Bound of [`NOISE_MAP`] (sources per CPU).
pub const MAX_NOISE_SOURCES: u32 = 4096;
/// Name of the hash map [`VictimKey`] → [`NoiseStats`] (`--pid`).
pub const VICTIMS_MAP: &str = "VICTIMS";
/// Bound of [`VICTIMS_MAP`].
pub const MAX_VICTIM_ENTRIES: u32 = 16_384;

/// Global: noise events shorter than this (ns) are not counted (`--threshold`).
pub const GLOBAL_NOISE_THRESHOLD_NS: &str = "NOISE_THRESHOLD_NS";
/// Global: byte offset of `task_struct.flags` (for `PF_KTHREAD`).
pub const GLOBAL_TASK_FLAGS_OFFSET: &str = "TASK_FLAGS_OFFSET";
/// Global: non-zero when sched_switch walks blocking stacks (`record`);
/// zero for `noise`, which needs none.
pub const GLOBAL_WALK_STACKS: &str = "WALK_STACKS";
/// `task_struct.flags` bit of kernel threads.
pub const PF_KTHREAD: u32 = 0x0020_0000;

/// Kind of a noise source, [`NoiseKey::kind`].
/// A device interrupt handler; id: IRQ number.
pub const NOISE_IRQ: u32 = 1;
/// An architecture interrupt vector (local timer, IPIs); id: `VECTOR_*`.
pub const NOISE_VECTOR: u32 = 2;
/// A softirq; id: vector number, named by [`SOFTIRQ_NAMES`].
pub const NOISE_SOFTIRQ: u32 = 3;
/// A non-maskable interrupt handler; id: 0.
pub const NOISE_NMI: u32 = 4;
/// A kernel thread running on the CPU; id: 0, `comm`: its name.
pub const NOISE_THREAD: u32 = 5;

/// Softirq vectors in kernel order, named as in /proc/softirqs.
pub const SOFTIRQ_NAMES: [&str; 10] =
    ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"];

/// Interrupt vectors with tracepoints (x86 `irq_vectors`), by id; the
/// names are the rows of /proc/interrupts they are counted in (both
/// call-function IPIs are counted in CAL, together with TLB shootdowns).
pub const VECTOR_NAMES: [&str; 9] = ["LOC", "RES", "CAL", "CAL", "IWI", "PLT", "TRM", "SPU", "ERR"];
/// Tracepoints of [`VECTOR_NAMES`], `<name>_entry` / `<name>_exit`, by id.
pub const VECTOR_TRACEPOINTS: [&str; 9] = [
    "local_timer",
    "reschedule",
    "call_function",
    "call_function_single",
    "irq_work",
    "x86_platform_ipi",
    "thermal_apic",
    "spurious_apic",
    "error_apic",
];

/// One noise source on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoiseKey {
    /// `NOISE_*`.
    pub kind: u32,
    pub id: u32,
    /// Name of a kernel thread (`NOISE_THREAD`), zeros otherwise.
    pub comm: [u8; crate::TASK_COMM_LEN],
}

/// Count, total and longest single own time of a noise source (events
/// under the threshold are not in any of them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoiseStats {
    pub count: u64,
    pub ns: u64,
    pub max_ns: u64,
}

impl NoiseStats {
    #[inline(always)]
    pub fn add(&mut self, ns: u64) {
        self.count += 1;
        self.ns += ns;
        if ns > self.max_ns {
            self.max_ns = ns;
        }
    }

    pub fn merge(&mut self, other: &NoiseStats) {
        self.count += other.count;
        self.ns += other.ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }
}

/// What a victim thread lost, [`VictimKey::kind`].
/// Interrupted on CPU by a noise source: `id` and `comm` as in [`NoiseKey`],
/// `source` its `NOISE_*` kind.
pub const VICTIM_INTERRUPTED: u32 = 1;
/// Runnable while another thread ran on the CPU it then ran on: `id` is
/// that thread's tid (0: the idle task), `comm` its name.
pub const VICTIM_BEHIND_THREAD: u32 = 2;
/// Runnable time the per-CPU run log did not reach back to (more than
/// [`RUN_LOG_LEN`] switches on that CPU while the victim waited).
pub const VICTIM_BEHIND_UNKNOWN: u32 = 3;
/// Switches remembered per CPU to tell whom a victim waited behind.
pub const RUN_LOG_LEN: usize = 16;

/// One kind of loss of one victim thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VictimKey {
    pub tid: u32,
    pub tgid: u32,
    /// `VICTIM_*`.
    pub kind: u32,
    /// For `VICTIM_INTERRUPTED`: the `NOISE_*` kind of the source.
    pub source: u32,
    pub id: u32,
    pub _pad: u32,
    pub comm: [u8; crate::TASK_COMM_LEN],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] integers; any bit pattern is valid.
    unsafe impl aya::Pod for super::NoiseKey {}
    unsafe impl aya::Pod for super::NoiseStats {}
    unsafe impl aya::Pod for super::VictimKey {}
}
