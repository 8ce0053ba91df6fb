//! Thread-state snapshot records written by the task iterator: one per
//! thread on the host. A thread that changed since the snapshot before (it
//! was switched in, changed state, or is on a CPU) gets a whole
//! [`StateRecord`], optionally followed by its kernel stack; one that did
//! not gets only the [`SnapHead`] that starts every record, flagged
//! [`SNAP_UNCHANGED`]: user space keeps what it last read of it.

use crate::{UserRegs, TASK_COMM_LEN};

/// Name of the task iterator program.
pub const SNAPSHOT_PROGRAM: &str = "thread_snapshot";
/// Name of the LRU hash map in which the iterator remembers, per thread,
/// what the last snapshot read ([`SnapSeen`]).
pub const SNAP_SEEN_MAP: &str = "SNAP_SEEN";

/// The kernel's cumulative counters of one thread, as schedstat, `/proc/PID/task/TID/status`
/// and delay accounting print them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCounters {
    /// `se.sum_exec_runtime`: ns on a CPU (schedstat's first field).
    pub sum_exec_ns: u64,
    /// `sched_info.run_delay`: ns runnable waiting for a CPU (schedstat's second field).
    pub run_delay_ns: u64,
    /// `sched_info.pcount`: times switched in (schedstat's third field).
    pub pcount: u64,
    /// `nvcsw`, `nivcsw`: voluntary and involuntary context switches.
    pub nvcsw: u64,
    pub nivcsw: u64,
    /// `delays->blkio_delay`: ns waiting for block I/O (delay accounting;
    /// zero unless `kernel.task_delayacct=1`, or without CONFIG_TASK_DELAY_ACCT).
    pub blkio_delay_ns: u64,
}

/// The start of every snapshot record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapHead {
    pub tid: u32,
    /// `SNAP_*` flags. With [`SNAP_UNCHANGED`] the record is this head alone.
    pub flags: u32,
}

// SAFETY: #[repr(C)] integers and arrays of them.
unsafe impl crate::Record for SnapHead {}

/// One thread at the instant of a snapshot. `kstack_len` kernel
/// instruction pointers (u64, innermost first) follow the record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateRecord {
    pub head: SnapHead,
    pub tgid: u32,
    /// One of `STATE_*`, from the task's own state and `on_cpu` at this instant.
    pub state: u32,
    /// System call the thread is in (`NO_SYSCALL` outside one or unknown):
    /// from the scheduler hooks when they run, else from the thread's saved
    /// registers, as /proc/PID/task/TID/syscall reads it.
    pub syscall: i32,
    /// Stacks at its last switch-out (`STACK_NONE` if it has not left a CPU
    /// since first seen, or without the scheduler hooks). Meaningful while
    /// the thread is off-CPU.
    pub kstack_id: i32,
    pub ustack_id: i32,
    /// Number of u64 kernel frames following this record.
    pub kstack_len: u32,
    /// When the syscall was entered, CLOCK_MONOTONIC ns (0 if unknown).
    pub syscall_start_ns: u64,
    /// The syscall's first argument (a file descriptor for fd syscalls).
    pub syscall_fd: i32,
    /// The CPU the thread last ran on.
    pub cpu: u32,
    /// `task_struct.start_time`: CLOCK_MONOTONIC ns when the thread was
    /// created; with the tid, it names a thread even across tid reuse.
    pub start_ns: u64,
    pub comm: [u8; TASK_COMM_LEN],
    /// User registers saved when the thread entered the kernel, for
    /// unwinding its user stack from user space; zero for running threads
    /// and kernel threads.
    pub regs: UserRegs,
    /// Read before the registers: if the thread runs after, `sum_exec_ns`
    /// and `pcount` change, and user space drops a stack copied from them.
    pub counters: TaskCounters,
}

// SAFETY: #[repr(C)] integers and arrays of them.
unsafe impl crate::Record for StateRecord {}

/// What the iterator remembers of a thread between snapshots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapSeen {
    pub pcount: u64,
    pub start_ns: u64,
    pub state: u32,
    pub _pad: u32,
}

/// Name of the snapshot's one-entry config array; non-zero at
/// [`SNAP_CONFIG_FULL`]: list unchanged threads too ([`SNAP_UNCHANGED`]
/// heads), for window bounds and the periodic check of who is alive.
/// Otherwise an unchanged thread costs no byte.
pub const SNAP_CONFIG_MAP: &str = "SNAP_CONFIG";
pub const SNAP_CONFIG_FULL: u32 = 0;

/// The thread's kernel stack was taken by an earlier snapshot and has not
/// changed since (the thread has not run).
pub const SNAP_STACK_SENT_BEFORE: u32 = 1;
/// The scheduler hooks do not track this thread (map full, just born, or
/// the continuous tier, which has no scheduler hooks).
pub const SNAP_UNTRACKED: u32 = 2;
/// Nothing changed since the last snapshot read this thread: not switched
/// in, same state, not on a CPU. The record is the [`SnapHead`] alone.
pub const SNAP_UNCHANGED: u32 = 4;
/// The thread was running when the snapshot taker preempted it on this
/// CPU: it reads as running.
pub const SNAP_PREEMPTED_BY_SNAPSHOT: u32 = 8;

/// The thread was woken onto the snapshot taker's CPU while the snapshot
/// ran, and could not run before the iterator reached it: it reads in the
/// state it was woken from (disk if it waited in I/O, else sleeping).
pub const SNAP_WOKEN_DURING_SNAPSHOT: u32 = 16;

/// Deepest kernel stack a snapshot record carries.
pub const SNAPSHOT_STACK_DEPTH: usize = 64;

/// A thread's final counters, sent by the `sched_process_exit` hook of the
/// continuous tier so that a thread that exits between two snapshots is
/// counted to its end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskExit {
    pub tid: u32,
    pub tgid: u32,
    pub start_ns: u64,
    /// `bpf_ktime_get_ns()` at the exit.
    pub ts_ns: u64,
    pub counters: TaskCounters,
    pub comm: [u8; TASK_COMM_LEN],
}

// SAFETY: #[repr(C)] integers and arrays of them.
unsafe impl crate::Record for TaskExit {}

/// Name of the ring buffer of [`TaskExit`] records.
pub const TASK_EXITS_MAP: &str = "TASK_EXITS";

/// Globals: offsets in `task_struct` of the counters, read from BTF.
pub const GLOBAL_TASK_RUN_DELAY_OFFSET: &str = "TASK_RUN_DELAY_OFFSET";
pub const GLOBAL_TASK_LAST_ARRIVAL_OFFSET: &str = "TASK_LAST_ARRIVAL_OFFSET";
pub const GLOBAL_TASK_LAST_QUEUED_OFFSET: &str = "TASK_LAST_QUEUED_OFFSET";
/// Global: offset of `task_struct.se.exec_start` (run queue task clock when
/// the task last started, or was last charged for, running).
pub const GLOBAL_TASK_EXEC_START_OFFSET: &str = "TASK_EXEC_START_OFFSET";
pub const GLOBAL_TASK_NVCSW_OFFSET: &str = "TASK_NVCSW_OFFSET";
pub const GLOBAL_TASK_NIVCSW_OFFSET: &str = "TASK_NIVCSW_OFFSET";
pub const GLOBAL_TASK_START_TIME_OFFSET: &str = "TASK_START_TIME_OFFSET";
/// `task_struct.thread_info.cpu` (or `.cpu`): the CPU a thread last ran on.
pub const GLOBAL_TASK_CPU_OFFSET: &str = "TASK_CPU_OFFSET";
/// `task_struct.delays` (0: no delay accounting in this kernel) and
/// `task_delay_info.blkio_delay`.
pub const GLOBAL_TASK_DELAYS_OFFSET: &str = "TASK_DELAYS_OFFSET";
pub const GLOBAL_DELAYS_BLKIO_OFFSET: &str = "DELAYS_BLKIO_OFFSET";
/// Offset in `struct pt_regs` of the system call number (`orig_ax` on
/// x86_64, `syscallno` on aarch64, an i32 there).
pub const GLOBAL_PT_REGS_SYSCALL_OFFSET: &str = "PT_REGS_SYSCALL_OFFSET";
/// Global: bit offset of `task_struct.in_iowait` (0: unknown).
pub const GLOBAL_TASK_IN_IOWAIT_BIT: &str = "TASK_IN_IOWAIT_BIT";
/// Global: non-zero when the iterator reads syscalls from the saved
/// registers (no `sys_enter` hook: the continuous tier).
pub const GLOBAL_SYSCALL_FROM_REGS: &str = "SYSCALL_FROM_REGS";

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] data of integers; any bit pattern is valid.
    unsafe impl aya::Pod for super::SnapSeen {}
}
