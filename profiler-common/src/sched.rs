//! Per-thread scheduler accounting kept by the sched_switch and
//! sched_wakeup programs.

/// Name of the hash map of [`ThreadRecord`] keyed by tid.
pub const THREADS_MAP: &str = "THREADS";
/// Default bound of [`THREADS_MAP`] (`--max-threads`).
pub const MAX_THREADS: u32 = 65536;
/// Name of the stack trace map of blocking stacks captured at switch-out.
pub const STACKS_MAP: &str = "STACKS";
/// Default bound of [`STACKS_MAP`] (`--max-stacks`).
pub const MAX_STACKS: u32 = 16384;
/// Name of the hash map of [`OffCpuValue`] keyed by [`OffCpuKey`].
pub const OFFCPU_MAP: &str = "OFFCPU";
/// Bound of [`OFFCPU_MAP`] per stack-map entry: aggregates are per thread,
/// and many threads share stacks.
pub const OFFCPU_KEYS_PER_STACK: u32 = 4;
/// Default bound of [`OFFCPU_MAP`].
pub const MAX_OFFCPU_KEYS: u32 = OFFCPU_KEYS_PER_STACK * MAX_STACKS;
/// A stack id that was not captured: the thread has not left a CPU since
/// it was first seen, or it is a kernel thread (no user stack).
pub const STACK_NONE: i32 = -1;
/// A stack id that could not be stored (stack map bucket taken or full).
pub const STACK_LOST: i32 = -2;
/// Not in a system call.
pub const NO_SYSCALL: i32 = -1;
/// Waker of an interval nobody woke (a preempted thread waiting for a
/// CPU). Tid 0 is a real waker: the idle task, i.e. an interrupt on an idle CPU.
pub const NO_WAKER: u32 = u32::MAX;
/// Ring buffer of [`ThreadExit`] records: totals of threads that exited.
pub const EXITS_MAP: &str = "EXITS";

/// Array map of two u64: the start and end of the accounting window
/// (CLOCK_MONOTONIC ns). User space writes the start when it has seeded the
/// thread map (time before it is not accounted; zero until then) and the
/// end when the capture stops, before it reads the maps: time after it is
/// not accounted either, so that exact times and off-CPU aggregates read a
/// moment apart still cover the same window (zero: still open).
pub const WINDOW_MAP: &str = "WINDOW";
/// Index of the window's start and end in [`WINDOW_MAP`].
pub const WINDOW_START: u32 = 0;
pub const WINDOW_END: u32 = 1;
/// Kernel frames of the tracing machinery on top of a stack taken in a
/// tp_btf program (the program itself and `bpf_trace_run*`).
pub const TRACE_FRAMES_TO_SKIP: u64 = 2;

/// Globals: byte offsets of `task_struct.pid` and `.tgid` in this kernel,
/// read from its BTF by user space.
pub const GLOBAL_TASK_PID_OFFSET: &str = "TASK_PID_OFFSET";
pub const GLOBAL_TASK_TGID_OFFSET: &str = "TASK_TGID_OFFSET";
/// Globals: offsets of `task_struct.__state`, `.on_cpu` and `.comm`, for the
/// thread-state snapshot.
pub const GLOBAL_TASK_STATE_OFFSET: &str = "TASK_STATE_OFFSET";
pub const GLOBAL_TASK_ON_CPU_OFFSET: &str = "TASK_ON_CPU_OFFSET";
pub const GLOBAL_TASK_COMM_OFFSET: &str = "TASK_COMM_OFFSET";
/// Global: byte offset of `task_struct.se.sum_exec_runtime`.
pub const GLOBAL_TASK_SUM_EXEC_OFFSET: &str = "TASK_SUM_EXEC_OFFSET";
/// Global: byte offset of `task_struct.sched_info.pcount`.
pub const GLOBAL_TASK_PCOUNT_OFFSET: &str = "TASK_PCOUNT_OFFSET";
/// Globals: offsets of `task_struct.se.cfs_rq`, `cfs_rq.rq` and `rq.clock`,
/// to stamp context switches with the run queue's clock as the kernel does.
pub const GLOBAL_TASK_CFS_RQ_OFFSET: &str = "TASK_CFS_RQ_OFFSET";
pub const GLOBAL_CFS_RQ_RQ_OFFSET: &str = "CFS_RQ_RQ_OFFSET";
pub const GLOBAL_RQ_CLOCK_OFFSET: &str = "RQ_CLOCK_OFFSET";
/// Global: offset of `rq.clock_task`.
pub const GLOBAL_RQ_CLOCK_TASK_OFFSET: &str = "RQ_CLOCK_TASK_OFFSET";
/// Global: offset in `struct pt_regs` of a system call's first argument
/// (`di` on x86_64, `regs[0]` on aarch64).
pub const GLOBAL_PT_REGS_ARG0_OFFSET: &str = "PT_REGS_ARG0_OFFSET";

/// Where a thread is. Off-CPU states index `ThreadTimes::off_cpu_ns` as `state - 1`.
pub const STATE_RUNNING: u32 = 0;
pub const STATE_RUNNABLE: u32 = 1;
pub const STATE_SLEEPING: u32 = 2;
pub const STATE_DISK: u32 = 3;
pub const STATE_OTHER: u32 = 4;
pub const OFF_CPU_STATES: usize = 4;

/// Kernel task state bits (include/linux/sched.h).
pub const TASK_INTERRUPTIBLE: u32 = 0x1;
pub const TASK_UNINTERRUPTIBLE: u32 = 0x2;
pub const TASK_DEAD: u32 = 0x80;
pub const TASK_NOLOAD: u32 = 0x400;

/// The state a thread leaves the CPU in, from `prev_state` of sched_switch.
#[inline(always)]
pub fn state_after_switch(prev_state: u32) -> u32 {
    if prev_state == 0 {
        STATE_RUNNABLE // preempted: still wants the CPU
    } else if prev_state & (TASK_INTERRUPTIBLE | TASK_NOLOAD) != 0 {
        // TASK_NOLOAD (TASK_IDLE): an idle kernel thread, not a disk wait.
        STATE_SLEEPING
    } else if prev_state & TASK_UNINTERRUPTIBLE != 0 {
        STATE_DISK
    } else {
        STATE_OTHER
    }
}

/// Exact times of one thread since it was first seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadTimes {
    pub tgid: u32,
    /// One of `STATE_*`.
    pub state: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when `state` began.
    pub since_ns: u64,
    pub on_cpu_ns: u64,
    /// Runnable, sleeping, disk, other.
    pub off_cpu_ns: [u64; OFF_CPU_STATES],
}

impl ThreadTimes {
    /// Add the time from `since_ns` to `now` to the current state, and
    /// restart the state's clock at `now`.
    #[inline(always)]
    pub fn account_until(&mut self, now: u64) {
        self.account_between(0, now)
    }

    /// [`Self::account_until`], not counting time before `window_start`.
    #[inline(always)]
    pub fn account_between(&mut self, window_start: u64, now: u64) {
        if self.since_ns < window_start {
            self.since_ns = window_start;
        }
        let elapsed = now.saturating_sub(self.since_ns);
        if self.state == STATE_RUNNING {
            self.on_cpu_ns += elapsed;
        } else {
            let i = self.state.wrapping_sub(1) as usize;
            if i < OFF_CPU_STATES {
                self.off_cpu_ns[i] += elapsed;
            }
        }
        self.since_ns = now;
    }
}

/// Everything the scheduler and syscall hooks keep about one live thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadRecord {
    pub times: ThreadTimes,
    /// Stacks at the last switch-out, ids in [`STACKS_MAP`], or `STACK_*`.
    pub kstack_id: i32,
    pub ustack_id: i32,
    /// System call the thread is in (`NO_SYSCALL` outside one).
    pub syscall: i32,
    /// Who woke the thread, from its wakeup to its next switch-out (`NO_WAKER`: none).
    pub waker_tid: u32,
    /// When `syscall` was entered, CLOCK_MONOTONIC ns.
    pub syscall_start_ns: u64,
    /// `RECORD_*` flags.
    pub flags: u32,
    /// First argument of `syscall` (a file descriptor for fd syscalls), truncated.
    pub syscall_fd: i32,
    pub waker_comm: [u8; crate::TASK_COMM_LEN],
    /// The thread's own name when its stacks were last walked.
    pub comm: [u8; crate::TASK_COMM_LEN],
    /// Whose name `waker_comm` is.
    pub waker_comm_tid: u32,
    pub _pad2: u32,
    /// The stacks last walked in the two most recent kinds of switch-out.
    pub stack_cache: [StackSlot; 2],
}

/// Stacks a thread switched out with, by syscall and by whether it was
/// preempted: a thread that alternates between blocking in one syscall
/// and being preempted in another (a pipe ping-pong) reuses both.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackSlot {
    /// When walked (0: never).
    pub walk_ns: u64,
    pub syscall: i32,
    /// 1 if the thread was preempted (runnable), 0 if it blocked.
    pub preempted: u32,
    pub kstack_id: i32,
    pub ustack_id: i32,
}

/// A thread's blocking stacks are walked at most once per this interval
/// while it keeps switching out the same way (same syscall, blocked or
/// preempted; two such ways are remembered, [`StackSlot`]); the
/// switch-outs between reuse the last walked stacks. Walking kernel and user stacks costs
/// microseconds, a context switch about as much: without this bound a
/// thread ping-ponging on a pipe would run at a third of its speed. Off-CPU
/// time stays exact; only its stack attribution is sampled for threads that
/// block more than 100 times a second in the same syscall.
pub const STACK_WALK_INTERVAL_NS: u64 = 10_000_000;

/// The snapshot already handed user space this thread's kernel stack; it
/// cannot change until the thread runs again.
pub const RECORD_STACK_SENT: u32 = 1;

impl ThreadRecord {
    /// The aggregate the thread's current off-CPU interval belongs to.
    #[inline(always)]
    pub fn off_cpu_key(&self, tid: u32) -> OffCpuKey {
        OffCpuKey {
            tgid: self.times.tgid,
            tid,
            state: self.times.state,
            syscall: self.syscall,
            kstack_id: self.kstack_id,
            ustack_id: self.ustack_id,
            waker_tid: self.waker_tid,
            _pad: 0,
        }
    }

    pub fn new(tgid: u32, state: u32, now: u64) -> Self {
        Self {
            times: ThreadTimes { tgid, state, since_ns: now, ..ThreadTimes::default() },
            kstack_id: STACK_NONE,
            ustack_id: STACK_NONE,
            syscall: NO_SYSCALL,
            waker_tid: NO_WAKER,
            syscall_start_ns: 0,
            flags: 0,
            syscall_fd: -1,
            waker_comm: [0; crate::TASK_COMM_LEN],
            comm: [0; crate::TASK_COMM_LEN],
            waker_comm_tid: NO_WAKER,
            _pad2: 0,
            stack_cache: [StackSlot {
                syscall: NO_SYSCALL,
                kstack_id: STACK_NONE,
                ustack_id: STACK_NONE,
                ..StackSlot::default()
            }; 2],
        }
    }

    /// The stack slot for a switch-out in `syscall`, and whether it holds
    /// that kind of switch-out: else it is the older slot, to be re-walked.
    #[inline(always)]
    pub fn stack_slot(&mut self, syscall: i32, preempted: u32) -> (&mut StackSlot, bool) {
        let [a, b] = &mut self.stack_cache;
        if a.syscall == syscall && a.preempted == preempted {
            (a, true)
        } else if b.syscall == syscall && b.preempted == preempted {
            (b, true)
        } else if a.walk_ns <= b.walk_ns {
            (a, false)
        } else {
            (b, false)
        }
    }
}

/// What off-CPU time is aggregated by in the kernel: one thread in one
/// state, blocked in one syscall at one stack, woken by one thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffCpuKey {
    pub tgid: u32,
    pub tid: u32,
    /// An off-CPU `STATE_*`.
    pub state: u32,
    pub syscall: i32,
    pub kstack_id: i32,
    pub ustack_id: i32,
    pub waker_tid: u32,
    pub _pad: u32,
}

/// Off-CPU time of one [`OffCpuKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffCpuValue {
    pub ns: u64,
    /// Number of off-CPU intervals added.
    pub count: u64,
    /// Name of the waker when last seen.
    pub waker_comm: [u8; crate::TASK_COMM_LEN],
    /// Name of the thread when last seen.
    pub comm: [u8; crate::TASK_COMM_LEN],
}

/// Final times of a thread that exited during the capture.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadExit {
    pub tid: u32,
    pub _pad: u32,
    pub times: ThreadTimes,
    /// Its name at its last switch.
    pub comm: [u8; crate::TASK_COMM_LEN],
}

// SAFETY: #[repr(C)] integers and arrays of them.
unsafe impl crate::Record for ThreadExit {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_goes_to_the_state_it_was_spent_in() {
        let mut t = ThreadTimes { state: STATE_RUNNING, since_ns: 100, ..Default::default() };
        t.account_until(150);
        t.state = STATE_DISK;
        t.account_until(400);
        assert_eq!((t.on_cpu_ns, t.off_cpu_ns, t.since_ns), (50, [0, 0, 250, 0], 400));
        assert_eq!(state_after_switch(0), STATE_RUNNABLE);
        assert_eq!(state_after_switch(TASK_UNINTERRUPTIBLE | TASK_NOLOAD), STATE_SLEEPING);
        assert_eq!(state_after_switch(TASK_UNINTERRUPTIBLE), STATE_DISK);
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] data without padding holes that matter; any bit pattern is valid.
    unsafe impl aya::Pod for super::ThreadTimes {}
    unsafe impl aya::Pod for super::ThreadRecord {}
    unsafe impl aya::Pod for super::OffCpuKey {}
    unsafe impl aya::Pod for super::OffCpuValue {}
}
