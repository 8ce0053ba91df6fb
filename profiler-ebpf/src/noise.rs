//! OS noise, osnoise-style, from tracepoints: per CPU, the own time of
//! every hardware interrupt, interrupt vector, softirq, NMI and kernel
//! thread (time of noise nested inside it excluded), and for victim
//! threads (`--pid`) what interrupted them and whom they waited behind.
//!
//! Nesting: thread < softirq < hard interrupt < NMI. Each CPU keeps a
//! running total of the own time of interrupt-level noise (`nested_ns`);
//! a noise event's own time is its length minus the growth of that total
//! while it lasted.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map},
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
    programs::BtfTracePointContext,
};
use profiler_common::{
    Counter, NoiseKey, NoiseStats, VictimKey, HIST_IRQ, HIST_SOFTIRQ, HIST_VECTOR, MAX_NOISE_SOURCES,
    MAX_VICTIM_ENTRIES, NOISE_IRQ, NOISE_NMI, NOISE_SOFTIRQ, NOISE_THREAD, NOISE_VECTOR, PF_KTHREAD, RUN_LOG_LEN,
    TASK_COMM_LEN, VICTIM_BEHIND_THREAD, VICTIM_BEHIND_UNKNOWN, VICTIM_INTERRUPTED,
};

use crate::{
    histogram,
    on_cpu::{FILTER_PIDS, PID_FILTER},
    sched::{task_field, window_open, window_start},
    shared::{bump, read_global},
};

#[unsafe(no_mangle)]
static NOISE_THRESHOLD_NS: u64 = 0;
#[unsafe(no_mangle)]
pub(crate) static TASK_FLAGS_OFFSET: u32 = 0;

#[map]
static NOISE: PerCpuHashMap<NoiseKey, NoiseStats> = PerCpuHashMap::with_max_entries(MAX_NOISE_SOURCES, 0);

#[map]
static VICTIMS: HashMap<VictimKey, NoiseStats> = HashMap::with_max_entries(MAX_VICTIM_ENTRIES, 0);

/// One run of a thread on a CPU.
#[repr(C)]
#[derive(Clone, Copy)]
struct Run {
    tid: u32,
    _pad: u32,
    start: u64,
    end: u64,
    comm: [u8; TASK_COMM_LEN],
}

/// An interrupt-level noise event in progress.
#[repr(C)]
#[derive(Clone, Copy)]
struct Open {
    start: u64,
    /// `nested_ns` at its start.
    base: u64,
    kind: u32,
    id: u32,
}

/// Per-CPU state of the noise accounting.
#[repr(C)]
struct CpuNoise {
    /// Own time of all interrupt-level noise so far on this CPU.
    nested_ns: u64,
    /// Hard interrupt handlers run with interrupts off, so one slot is
    /// enough; an entry always replaces it (an exit missed while the hooks
    /// were being attached must not block the slot).
    hard: Open,
    soft: Open,
    /// The thread on the CPU since its last switch.
    thread: Open,
    thread_kernel: u32,
    log_head: u32,
    /// The last runs on this CPU, oldest overwritten first.
    log: [Run; RUN_LOG_LEN],
}

#[map]
static CPU_NOISE: PerCpuArray<CpuNoise> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn cpu_state() -> Option<&'static mut CpuNoise> {
    CPU_NOISE.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn is_victim(tgid: u32) -> bool {
    read_global(&FILTER_PIDS) != 0 && unsafe { PID_FILTER.get(&tgid) }.is_some()
}

/// Whether a process's latencies go into the per-thread histograms
/// (run queue, off-CPU, syscalls): all of them, or those of `--pid`.
#[inline(always)]
pub fn selected(tgid: u32) -> bool {
    read_global(&FILTER_PIDS) == 0 || unsafe { PID_FILTER.get(&tgid) }.is_some()
}

/// Count `ns` of own time of a source on this CPU, if above the threshold.
#[inline(always)]
fn count(kind: u32, id: u32, comm: [u8; TASK_COMM_LEN], ns: u64) {
    if ns < read_global(&NOISE_THRESHOLD_NS) {
        return;
    }
    let key = NoiseKey { kind, id, comm };
    if let Some(s) = NOISE.get_ptr_mut(&key) {
        // Per-CPU value: no other writer.
        unsafe { (*s).add(ns) };
        return;
    }
    let mut s = NoiseStats::default();
    s.add(ns);
    if NOISE.insert(&key, &s, BPF_NOEXIST as u64).is_err() {
        bump(Counter::NoiseMapFull);
    }
}

#[inline(always)]
fn victim_add(key: &VictimKey, ns: u64) {
    if let Some(s) = VICTIMS.get_ptr_mut(key) {
        // Keyed by the victim thread, which is on one CPU at a time.
        unsafe { (*s).add(ns) };
        return;
    }
    let mut s = NoiseStats::default();
    s.add(ns);
    if VICTIMS.insert(key, &s, BPF_NOEXIST as u64).is_err() {
        bump(Counter::VictimMapFull);
    }
}

/// The interrupted thread lost `ns` to a source, if it is a victim.
#[inline(always)]
fn charge_current(kind: u32, id: u32, ns: u64) {
    if read_global(&FILTER_PIDS) == 0 || ns < read_global(&NOISE_THRESHOLD_NS) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tid, tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
    if tid == 0 || !is_victim(tgid) {
        return;
    }
    let key = VictimKey { tid, tgid, kind: VICTIM_INTERRUPTED, source: kind, id, _pad: 0, comm: [0; TASK_COMM_LEN] };
    victim_add(&key, ns);
}

/// Close an interrupt-level event: its own time, or `None` if it began
/// before the window or was not seen beginning.
#[inline(always)]
fn close(cpu: &mut CpuNoise, open: Open, now: u64) -> Option<u64> {
    if open.start == 0 {
        return None;
    }
    let own = now.saturating_sub(open.start).saturating_sub(cpu.nested_ns.saturating_sub(open.base));
    cpu.nested_ns += own;
    if open.start < window_start() || !window_open(now) {
        return None;
    }
    Some(own)
}

#[inline(always)]
fn hard_entry(kind: u32, id: u32) {
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(cpu) = cpu_state() else { return };
    cpu.hard = Open { start: now, base: cpu.nested_ns, kind, id };
}

#[inline(always)]
fn hard_exit(kind: u32, id: u32) {
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(cpu) = cpu_state() else { return };
    let open = cpu.hard;
    cpu.hard.start = 0;
    if open.kind != kind || open.id != id {
        return;
    }
    if let Some(own) = close(cpu, open, now) {
        count(kind, id, [0; TASK_COMM_LEN], own);
        histogram::record(if kind == NOISE_IRQ { HIST_IRQ } else { HIST_VECTOR }, id, own);
        charge_current(kind, id, own);
    }
}

#[btf_tracepoint(function = "irq_handler_entry")]
pub fn irq_handler_entry(ctx: BtfTracePointContext) -> i32 {
    // (int irq, struct irqaction *action)
    let irq: i32 = ctx.arg(0);
    hard_entry(NOISE_IRQ, irq as u32);
    0
}

#[btf_tracepoint(function = "irq_handler_exit")]
pub fn irq_handler_exit(ctx: BtfTracePointContext) -> i32 {
    // (int irq, struct irqaction *action, int ret)
    let irq: i32 = ctx.arg(0);
    hard_exit(NOISE_IRQ, irq as u32);
    0
}

/// Entry and exit programs of one interrupt vector (`irq_vectors:<name>_entry/_exit`),
/// `profiler_common::VECTOR_TRACEPOINTS[$id]`.
macro_rules! vector_hooks {
    ($entry:ident, $exit:ident, $id:expr) => {
        #[btf_tracepoint]
        pub fn $entry(_ctx: BtfTracePointContext) -> i32 {
            hard_entry(NOISE_VECTOR, $id);
            0
        }

        #[btf_tracepoint]
        pub fn $exit(_ctx: BtfTracePointContext) -> i32 {
            hard_exit(NOISE_VECTOR, $id);
            0
        }
    };
}

vector_hooks!(local_timer_entry, local_timer_exit, 0);
vector_hooks!(reschedule_entry, reschedule_exit, 1);
vector_hooks!(call_function_entry, call_function_exit, 2);
vector_hooks!(call_function_single_entry, call_function_single_exit, 3);
vector_hooks!(irq_work_entry, irq_work_exit, 4);
vector_hooks!(x86_platform_ipi_entry, x86_platform_ipi_exit, 5);
vector_hooks!(thermal_apic_entry, thermal_apic_exit, 6);
vector_hooks!(spurious_apic_entry, spurious_apic_exit, 7);
vector_hooks!(error_apic_entry, error_apic_exit, 8);

#[btf_tracepoint(function = "softirq_entry")]
pub fn softirq_entry(ctx: BtfTracePointContext) -> i32 {
    // (unsigned int vec_nr)
    let vec: u32 = ctx.arg(0);
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(cpu) = cpu_state() {
        cpu.soft = Open { start: now, base: cpu.nested_ns, kind: NOISE_SOFTIRQ, id: vec };
    }
    0
}

#[btf_tracepoint(function = "softirq_exit")]
pub fn softirq_exit(ctx: BtfTracePointContext) -> i32 {
    let vec: u32 = ctx.arg(0);
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(cpu) = cpu_state() else { return 0 };
    let open = cpu.soft;
    cpu.soft.start = 0;
    if open.id != vec {
        return 0;
    }
    if let Some(own) = close(cpu, open, now) {
        count(NOISE_SOFTIRQ, vec, [0; TASK_COMM_LEN], own);
        histogram::record(HIST_SOFTIRQ, vec, own);
        charge_current(NOISE_SOFTIRQ, vec, own);
    }
    0
}

#[btf_tracepoint(function = "nmi_handler")]
pub fn nmi_handler(ctx: BtfTracePointContext) -> i32 {
    // (void *handler, s64 delta_ns, int handled): nothing nests inside an NMI.
    let delta: i64 = ctx.arg(1);
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(cpu) = cpu_state() else { return 0 };
    let own = delta.max(0) as u64;
    cpu.nested_ns += own;
    if window_open(now) && now.saturating_sub(own) >= window_start() {
        count(NOISE_NMI, 0, [0; TASK_COMM_LEN], own);
        charge_current(NOISE_NMI, 0, own);
    }
    0
}

/// Whether a task is a kernel thread.
#[inline(always)]
pub(crate) fn is_kernel_thread(task: *const u8) -> bool {
    task_field(task, &TASK_FLAGS_OFFSET).is_ok_and(|f| f & PF_KTHREAD != 0)
}

/// At a context switch on this CPU from `prev_tid` to `next`: close
/// the previous thread's run (noise if it was a kernel thread), log it,
/// and open the next one's.
#[inline(always)]
pub fn on_switch(prev_tid: u32, next: *const u8, now: u64) {
    let Some(cpu) = cpu_state() else { return };
    let run = cpu.thread;
    if run.start != 0 {
        let kernel_noise = cpu.thread_kernel != 0 && prev_tid != 0 && window_open(now) && run.start >= window_start();
        // Only victims' waits (`--pid`) read the log of runs.
        let log = read_global(&FILTER_PIDS) != 0;
        if kernel_noise || log {
            let comm = bpf_get_current_comm().unwrap_or_default();
            if kernel_noise {
                let own = now.saturating_sub(run.start).saturating_sub(cpu.nested_ns.saturating_sub(run.base));
                count(NOISE_THREAD, 0, comm, own);
            }
            if log {
                let start = if run.start < window_start() { window_start() } else { run.start };
                let i = (cpu.log_head as usize) & (RUN_LOG_LEN - 1);
                cpu.log[i] = Run { tid: prev_tid, _pad: 0, start, end: now, comm };
                cpu.log_head = cpu.log_head.wrapping_add(1);
            }
        }
    }
    cpu.thread = Open { start: now, base: cpu.nested_ns, kind: NOISE_THREAD, id: 0 };
    cpu.thread_kernel = u32::from(is_kernel_thread(next));
}

/// A victim thread runnable since `since` gets this CPU at `now`: charge
/// the wait to the threads that ran here meanwhile.
#[inline(always)]
pub fn on_victim_runs(tid: u32, tgid: u32, since: u64, now: u64) {
    if !is_victim(tgid) || !window_open(now) {
        return;
    }
    let since = if since < window_start() { window_start() } else { since };
    let Some(cpu) = cpu_state() else { return };
    let mut covered_to = now;
    for back in 0..RUN_LOG_LEN {
        if covered_to <= since {
            break;
        }
        let i = (cpu.log_head.wrapping_sub(1 + back as u32) as usize) & (RUN_LOG_LEN - 1);
        let run = cpu.log[i];
        if run.end == 0 || run.end > covered_to {
            break;
        }
        let from = if run.start > since { run.start } else { since };
        if run.end > from && run.tid != tid {
            let key =
                VictimKey { tid, tgid, kind: VICTIM_BEHIND_THREAD, source: 0, id: run.tid, _pad: 0, comm: run.comm };
            victim_add(&key, run.end - from);
        }
        covered_to = from;
    }
    if covered_to > since {
        let key =
            VictimKey { tid, tgid, kind: VICTIM_BEHIND_UNKNOWN, source: 0, id: 0, _pad: 0, comm: [0; TASK_COMM_LEN] };
        victim_add(&key, covered_to - since);
    }
}
