//! Reading `task_struct` fields at offsets user space found in the
//! kernel's BTF (Rust eBPF has no CO-RE relocations): ids, the kernel's
//! cumulative scheduler counters, and the system call a thread is in.

use aya_ebpf::{
    bindings::task_struct,
    helpers::{bpf_get_current_task, bpf_probe_read_kernel, bpf_task_pt_regs},
};
use profiler_common::{TaskCounters, NO_SYSCALL};

use crate::shared::read_global;

#[unsafe(no_mangle)]
static TASK_SUM_EXEC_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_PCOUNT_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_RUN_DELAY_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_LAST_ARRIVAL_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_LAST_QUEUED_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_NVCSW_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_NIVCSW_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_START_TIME_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_CPU_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_DELAYS_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static DELAYS_BLKIO_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static PT_REGS_SYSCALL_OFFSET: u32 = 0;
/// Non-zero without the syscall hooks (continuous tier): syscalls come
/// from the saved registers.
#[unsafe(no_mangle)]
static SYSCALL_FROM_REGS: u8 = 0;

/// A u64 at `offset` in `task`, 0 if unreadable.
#[inline(always)]
pub fn u64_at(task: *const u8, offset: &'static u32) -> u64 {
    unsafe { bpf_probe_read_kernel(task.add(read_global(offset) as usize).cast::<u64>()) }.unwrap_or(0)
}

/// A u32 at `offset` in `task`, 0 if unreadable.
#[inline(always)]
pub fn u32_at(task: *const u8, offset: &'static u32) -> u32 {
    unsafe { bpf_probe_read_kernel(task.add(read_global(offset) as usize).cast::<u32>()) }.unwrap_or(0)
}

#[inline(always)]
pub fn pcount(task: *const u8) -> u64 {
    u64_at(task, &TASK_PCOUNT_OFFSET)
}

#[inline(always)]
pub fn start_ns(task: *const u8) -> u64 {
    u64_at(task, &TASK_START_TIME_OFFSET)
}

#[inline(always)]
pub fn cpu(task: *const u8) -> u32 {
    u32_at(task, &TASK_CPU_OFFSET)
}

/// `sched_info.last_queued`: when a runnable task was queued (0 once it runs).
#[inline(always)]
pub fn last_queued(task: *const u8) -> u64 {
    u64_at(task, &TASK_LAST_QUEUED_OFFSET)
}

/// `sched_info.last_arrival` of the current task: when it last got its CPU.
#[inline(always)]
pub fn current_last_arrival() -> u64 {
    let current = unsafe { bpf_get_current_task() } as *const u8;
    u64_at(current, &TASK_LAST_ARRIVAL_OFFSET)
}

/// The kernel's cumulative counters of `task`.
#[inline(always)]
pub fn counters(task: *const u8) -> TaskCounters {
    let delays = match read_global(&TASK_DELAYS_OFFSET) {
        0 => 0,
        _ => u64_at(task, &TASK_DELAYS_OFFSET),
    };
    let blkio_delay_ns = match delays {
        0 => 0,
        p => u64_at(p as *const u8, &DELAYS_BLKIO_OFFSET),
    };
    TaskCounters {
        sum_exec_ns: u64_at(task, &TASK_SUM_EXEC_OFFSET),
        run_delay_ns: u64_at(task, &TASK_RUN_DELAY_OFFSET),
        pcount: pcount(task),
        nvcsw: u64_at(task, &TASK_NVCSW_OFFSET),
        nivcsw: u64_at(task, &TASK_NIVCSW_OFFSET),
        blkio_delay_ns,
    }
}

/// The system call of a thread the syscall hooks do not track, and its
/// first argument: from its saved registers in the continuous tier, unknown
/// in the deep one (the hooks track every thread there but a new one).
#[inline(always)]
pub fn syscall_untracked(task: *mut task_struct) -> (i32, i32) {
    // Kernel threads make no syscalls; their saved registers are zero.
    if read_global(&SYSCALL_FROM_REGS) == 0 || crate::noise::is_kernel_thread(task as *const u8) {
        return (NO_SYSCALL, -1);
    }
    syscall_from_regs(task, read_global(&crate::sched::PT_REGS_ARG0_OFFSET))
}

/// The system call `task` is in and its first argument, from the registers
/// it saved on entering the kernel, as /proc/PID/task/TID/syscall reads
/// them: `NO_SYSCALL` outside one (an interrupt of user code saves a
/// negative number there) and for kernel threads.
#[inline(always)]
fn syscall_from_regs(task: *mut task_struct, arg0_offset: u32) -> (i32, i32) {
    let regs = unsafe { bpf_task_pt_regs(task) } as *const u8;
    if regs.is_null() {
        return (NO_SYSCALL, -1);
    }
    // orig_ax is a u64 on x86_64, syscallno an s32 on aarch64: either way
    // its low 32 bits, as a signed number, are the syscall or negative.
    let nr = u32_at(regs, &PT_REGS_SYSCALL_OFFSET) as i32;
    if nr < 0 {
        return (NO_SYSCALL, -1);
    }
    let arg0 = unsafe { bpf_probe_read_kernel(regs.add(arg0_offset as usize).cast::<u64>()) }.map_or(-1, |a| a as i32);
    (nr, arg0)
}
