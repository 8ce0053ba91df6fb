//! Per-thread scheduler accounting kept by the sched_switch and
//! sched_wakeup programs.

/// Name of the hash map of [`ThreadTimes`] keyed by tid.
pub const THREADS_MAP: &str = "THREADS";
/// Default bound of [`THREADS_MAP`].
pub const MAX_THREADS: u32 = 65536;
/// Ring buffer of [`ThreadExit`] records: totals of threads that exited.
pub const EXITS_MAP: &str = "EXITS";

/// Globals: byte offsets of `task_struct.pid` and `.tgid` in this kernel,
/// read from its BTF by user space.
pub const GLOBAL_TASK_PID_OFFSET: &str = "TASK_PID_OFFSET";
pub const GLOBAL_TASK_TGID_OFFSET: &str = "TASK_TGID_OFFSET";

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
    } else if prev_state & TASK_NOLOAD != 0 {
        STATE_SLEEPING // TASK_IDLE: an idle kernel thread, not a disk wait
    } else if prev_state & TASK_INTERRUPTIBLE != 0 {
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

/// Final times of a thread that exited during the capture.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadExit {
    pub tid: u32,
    pub _pad: u32,
    pub times: ThreadTimes,
}

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
}
