//! Thread-state snapshot records written by the task iterator: one per
//! thread on the host, each optionally followed by its kernel stack.

use crate::{UserRegs, TASK_COMM_LEN};

/// Name of the task iterator program.
pub const SNAPSHOT_PROGRAM: &str = "thread_snapshot";

/// One thread at the instant of a snapshot. `kstack_len` kernel
/// instruction pointers (u64, innermost first) follow the record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateRecord {
    pub tid: u32,
    pub tgid: u32,
    /// One of `STATE_*`, from the task's own state and `on_cpu` at this instant.
    pub state: u32,
    /// System call the thread is in (`NO_SYSCALL` outside one or unknown).
    pub syscall: i32,
    /// Stacks at its last switch-out (`STACK_NONE` if it has not left a CPU
    /// since first seen). Meaningful while the thread is off-CPU.
    pub kstack_id: i32,
    pub ustack_id: i32,
    /// Number of u64 kernel frames following this record.
    pub kstack_len: u32,
    /// `SNAP_*` flags.
    pub flags: u32,
    /// When the syscall was entered, CLOCK_MONOTONIC ns (0 if unknown).
    pub syscall_start_ns: u64,
    /// The syscall's first argument (a file descriptor for fd syscalls).
    pub syscall_fd: i32,
    pub _pad: u32,
    pub comm: [u8; TASK_COMM_LEN],
    /// User registers saved when the thread entered the kernel, for
    /// unwinding its user stack from user space; zero for running threads
    /// and kernel threads.
    pub regs: UserRegs,
    /// The thread's total CPU time (`se.sum_exec_runtime`, as the first
    /// field of /proc/PID/task/TID/schedstat) at the snapshot: unchanged
    /// later means it has not run since.
    pub sum_exec_ns: u64,
    /// Times the thread was switched in (`sched_info.pcount`, the third
    /// field of schedstat) at the snapshot. Both counters are read before
    /// the registers.
    pub pcount: u64,
}

/// The thread's kernel stack was taken by an earlier snapshot and has not
/// changed since (the thread has not run).
pub const SNAP_STACK_SENT_BEFORE: u32 = 1;
/// The scheduler hooks do not track this thread (map full or just born).
pub const SNAP_UNTRACKED: u32 = 2;

/// Deepest kernel stack a snapshot record carries.
pub const SNAPSHOT_STACK_DEPTH: usize = 64;
