//! Reading `task_struct` fields at offsets user space found in the
//! kernel's BTF (Rust eBPF has no CO-RE relocations): ids, the kernel's
//! cumulative scheduler counters, and the system call a thread is in.

use aya_ebpf::{
    bindings::task_struct,
    helpers::{bpf_get_current_task_btf, bpf_task_pt_regs},
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
static TASK_EXEC_START_OFFSET: u32 = 0;
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
#[unsafe(no_mangle)]
static TASK_IN_IOWAIT_BIT: u32 = 0;
/// Non-zero without the syscall hooks (continuous tier): syscalls come
/// from the saved registers.
#[unsafe(no_mangle)]
static SYSCALL_FROM_REGS: u8 = 0;

/// A field of a kernel object the verifier knows by its BTF type (a
/// tracing program's argument, the task iterator's task, a pointer loaded
/// from such an object's field), read by a plain load: `offset` comes from
/// a read-only global, a constant to the verifier, which checks it against
/// the kernel's BTF and makes the load fault-safe (a fault reads zero).
/// Much cheaper than `bpf_probe_read_kernel` on hot paths.
#[inline(always)]
pub fn btf_field<T: Copy>(object: *const u8, offset: &'static u32) -> T {
    unsafe { core::ptr::read_volatile(object.add(read_global(offset) as usize).cast::<T>()) }
}

/// `sched_info.pcount` and `start_time`.
#[inline(always)]
pub fn pcount_and_start(task: *const u8) -> (u64, u64) {
    (btf_field(task, &TASK_PCOUNT_OFFSET), btf_field(task, &TASK_START_TIME_OFFSET))
}

#[inline(always)]
pub fn start_ns(task: *const u8) -> u64 {
    btf_field(task, &TASK_START_TIME_OFFSET)
}

#[inline(always)]
pub fn cpu(task: *const u8) -> u32 {
    btf_field(task, &TASK_CPU_OFFSET)
}

/// `sched_info.last_queued`: when a runnable task was queued (0 once it runs).
#[inline(always)]
pub fn last_queued(task: *const u8) -> u64 {
    btf_field(task, &TASK_LAST_QUEUED_OFFSET)
}

/// Whether `task` waits in I/O (`in_iowait`, a bitfield; false if unknown).
#[inline(always)]
pub fn in_iowait(task: *const u8) -> bool {
    let bit = read_global(&TASK_IN_IOWAIT_BIT);
    if bit == 0 {
        return false;
    }
    let byte = unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(task.add((bit / 8) as usize)) }.unwrap_or(0u8);
    byte & (1 << (bit % 8)) != 0
}

/// The CPU running this program.
#[inline(always)]
pub fn this_cpu() -> u32 {
    unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() }
}

/// `sched_info.last_arrival` of the current task: when it last got its CPU.
#[inline(always)]
pub fn current_last_arrival() -> u64 {
    let current = unsafe { bpf_get_current_task_btf() } as *const u8;
    btf_field(current, &TASK_LAST_ARRIVAL_OFFSET)
}

/// Whether runnable `task`, queued at `queued` (run queue clock), was
/// charged for running up to then, i.e. was preempted at `queued` rather
/// than woken. A preempted task's `se.exec_start` is the run queue's task
/// clock of the same switch, so `queued - exec_start` is the run queue's
/// `clock - clock_task` then (interrupt and steal time so far), which can
/// only have grown since. A woken task last ran before its sleep: the
/// difference is larger by the sleep, less any interrupt and steal time
/// in it. Unknown offsets: preempted.
#[inline(always)]
pub fn was_preempted_at(task: *const u8, queued: u64) -> bool {
    use crate::sched::{CFS_RQ_RQ_OFFSET, RQ_CLOCK_OFFSET, RQ_CLOCK_TASK_OFFSET, TASK_CFS_RQ_OFFSET};
    if read_global(&RQ_CLOCK_TASK_OFFSET) == 0 || read_global(&TASK_CFS_RQ_OFFSET) == 0 {
        return true;
    }
    let cfs_rq: *const u8 = btf_field(task, &TASK_CFS_RQ_OFFSET);
    if cfs_rq.is_null() {
        return true;
    }
    let rq: *const u8 = btf_field(cfs_rq, &CFS_RQ_RQ_OFFSET);
    if rq.is_null() {
        return true;
    }
    let (clock, clock_task): (u64, u64) = (btf_field(rq, &RQ_CLOCK_OFFSET), btf_field(rq, &RQ_CLOCK_TASK_OFFSET));
    let exec_start: u64 = btf_field(task, &TASK_EXEC_START_OFFSET);
    queued.wrapping_sub(exec_start) <= clock.wrapping_sub(clock_task)
}

/// The kernel's cumulative counters of `task`.
#[inline(always)]
pub fn counters(task: *const u8) -> TaskCounters {
    let blkio_delay_ns = match read_global(&TASK_DELAYS_OFFSET) {
        0 => 0,
        _ => {
            let delays: *const u8 = btf_field(task, &TASK_DELAYS_OFFSET);
            if delays.is_null() {
                0
            } else {
                btf_field(delays, &DELAYS_BLKIO_OFFSET)
            }
        }
    };
    TaskCounters {
        sum_exec_ns: btf_field(task, &TASK_SUM_EXEC_OFFSET),
        run_delay_ns: btf_field(task, &TASK_RUN_DELAY_OFFSET),
        pcount: btf_field(task, &TASK_PCOUNT_OFFSET),
        nvcsw: btf_field(task, &TASK_NVCSW_OFFSET),
        nivcsw: btf_field(task, &TASK_NIVCSW_OFFSET),
        blkio_delay_ns,
    }
}

/// The system call of a thread the scheduler hooks do not track, and its
/// first argument: from its saved registers without the syscall hooks,
/// unknown with them (they track every thread but a new one).
#[inline(always)]
pub fn syscall_untracked(task: *mut task_struct) -> (i32, i32) {
    if read_global(&SYSCALL_FROM_REGS) == 0 {
        return (NO_SYSCALL, -1);
    }
    syscall_of(task)
}

/// Whether syscalls come from the saved registers (no syscall hooks).
#[inline(always)]
pub fn syscalls_from_regs() -> bool {
    read_global(&SYSCALL_FROM_REGS) != 0
}

/// The syscall `task` is in, from its saved registers.
#[inline(always)]
pub fn syscall_of(task: *mut task_struct) -> (i32, i32) {
    // Kernel threads make no syscalls; their saved registers are zero.
    if crate::noise::is_kernel_thread(task as *const u8) {
        return (NO_SYSCALL, -1);
    }
    syscall_from_regs(task, &crate::sched::PT_REGS_ARG0_OFFSET)
}

/// The system call `task` is in and its first argument, from the registers
/// it saved on entering the kernel, as /proc/PID/task/TID/syscall reads
/// them: `NO_SYSCALL` outside one (an interrupt of user code saves a
/// negative number there) and for kernel threads.
#[inline(always)]
fn syscall_from_regs(task: *mut task_struct, arg0_offset: &'static u32) -> (i32, i32) {
    let regs = unsafe { bpf_task_pt_regs(task) } as *const u8;
    if regs.is_null() {
        return (NO_SYSCALL, -1);
    }
    // orig_ax is a u64 on x86_64, syscallno an s32 on aarch64: either way
    // its low 32 bits, as a signed number, are the syscall or negative.
    let nr = btf_field::<u32>(regs, &PT_REGS_SYSCALL_OFFSET) as i32;
    if nr < 0 {
        return (NO_SYSCALL, -1);
    }
    (nr, btf_field::<u64>(regs, arg0_offset) as i32)
}
