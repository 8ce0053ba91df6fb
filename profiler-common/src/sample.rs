//! On-CPU sample records sent from the perf_event program to user space.

/// Deepest stack the kernel hands to BPF by default (`kernel.perf_event_max_stack`).
pub const MAX_STACK_DEPTH: usize = 127;

/// Length of a task's `comm` in the kernel, NUL included.
pub const TASK_COMM_LEN: usize = 16;

/// A NUL-padded kernel comm up to its first NUL.
pub fn comm_bytes(comm: &[u8; TASK_COMM_LEN]) -> &[u8] {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(TASK_COMM_LEN);
    &comm[..end]
}

/// Name of the ring buffer map that carries [`SampleEvent`]s.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU counter array, indexed by [`Counter`].
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Name of the hash map of selected process ids (`--pid`).
pub const PID_FILTER_MAP: &str = "PID_FILTER";
/// Bound of [`PID_FILTER_MAP`].
pub const MAX_PID_FILTER: u32 = 1024;

/// Bound of the LRU map of recently sampled processes.
pub const SEEN_PIDS_SLOTS: u32 = 8192;

/// How often user space drains the sample ring buffer when the kernel does
/// not wake it (it wakes it for new processes and a quarter-full ring).
pub const DRAIN_INTERVAL_MS: u64 = 250;

/// Global: non-zero when only the tgids in [`PID_FILTER_MAP`] are sampled.
pub const GLOBAL_FILTER_PIDS: &str = "FILTER_PIDS";
/// Global: non-zero when only threads whose comm equals [`GLOBAL_FILTER_COMM`] are sampled.
pub const GLOBAL_FILTER_BY_COMM: &str = "FILTER_BY_COMM";
/// Global: the comm to match, NUL padded.
pub const GLOBAL_FILTER_COMM: &str = "FILTER_COMM";
/// Global: non-zero when only threads in the cgroup v2 ids of [`CGROUP_FILTER_MAP`] are sampled.
pub const GLOBAL_FILTER_CGROUPS: &str = "FILTER_CGROUPS";
/// Name of the hash map of selected cgroup v2 ids (`--cgroup`, `--container`).
pub const CGROUP_FILTER_MAP: &str = "CGROUP_FILTER";
/// Bound of [`CGROUP_FILTER_MAP`].
pub const MAX_CGROUP_FILTER: u32 = 16384;

/// Array map of run-time rates set by user space (the cost governor): at
/// [`RATE_SAMPLE_LEVEL`], keep one on-CPU sample in 2^level.
pub const RATES_MAP: &str = "RATES";
pub const RATE_SAMPLE_LEVEL: u32 = 0;
/// Highest sample level the governor may set.
pub const MAX_SAMPLE_LEVEL: u32 = 6;

/// Slots of the per-CPU counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Samples taken but not delivered because the ring buffer was full.
    LostSamples = 0,
    /// Samples whose kernel stack could not be read.
    KernelStackErrors = 1,
    /// Samples whose user stack could not be read (kernel threads excluded).
    UserStackErrors = 2,
    /// Samples of the idle task, which are not reported.
    IdleSamples = 3,
    /// Threads not tracked because the thread map was full.
    ThreadMapFull = 4,
    /// Exited threads whose totals could not be handed over (ring full).
    LostExits = 5,
    /// Blocking stacks not stored: the stack map's bucket was taken or it was full.
    StackMapFull = 6,
    /// Off-CPU intervals not aggregated because the off-CPU map was full.
    OffCpuMapFull = 7,
    /// Fork and exec records not delivered because the ring buffer was full.
    LostProcessEvents = 8,
    /// Samples whose user stack copy failed (`--unwind dwarf|auto`).
    UserStackCopyErrors = 9,
    /// Noise events not counted because the per-CPU noise map was full.
    NoiseMapFull = 10,
    /// Latency events not counted because the histogram map was full.
    HistogramMapFull = 11,
    /// Victim-view events not counted because the victim map was full.
    VictimMapFull = 12,
}

/// Number of slots in [`COUNTERS_MAP`].
pub const COUNTER_SLOTS: u32 = 13;

/// One on-CPU sample: who ran and both stacks, innermost frame first.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SampleEvent {
    /// [`EVENT_SAMPLE`](crate::EVENT_SAMPLE): tells samples from process events in the ring.
    pub kind: u32,
    /// CPU the sample was taken on.
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` at the sample.
    pub ts_ns: u64,
    /// Process id (kernel tgid).
    pub pid: u32,
    /// Thread id (kernel pid).
    pub tid: u32,
    /// Valid entries in `kstack`.
    pub kstack_len: u32,
    /// Valid entries in `ustack`.
    pub ustack_len: u32,
    /// System call the thread was in (`NO_SYSCALL`: none, or not tracked
    /// because the scheduler hooks are off).
    pub syscall: i32,
    /// Samples this one stands for: 2^level when the cost governor keeps
    /// one sample in 2^level ([`RATES_MAP`]), else 1.
    pub weight: u32,
    /// Thread comm, NUL padded.
    pub comm: [u8; TASK_COMM_LEN],
    /// Kernel instruction pointers, innermost first.
    pub kstack: [u64; MAX_STACK_DEPTH],
    /// User instruction pointers, innermost first.
    pub ustack: [u64; MAX_STACK_DEPTH],
}

// SAFETY: #[repr(C)] integers and arrays of them.
unsafe impl crate::Record for SampleEvent {}

impl SampleEvent {
    /// The valid part of the kernel stack.
    pub fn kernel_frames(&self) -> &[u64] {
        let n = (self.kstack_len as usize).min(MAX_STACK_DEPTH);
        &self.kstack[..n]
    }

    /// The valid part of the user stack.
    pub fn user_frames(&self) -> &[u64] {
        let n = (self.ustack_len as usize).min(MAX_STACK_DEPTH);
        &self.ustack[..n]
    }

    /// The comm up to its first NUL.
    pub fn comm_bytes(&self) -> &[u8] {
        comm_bytes(&self.comm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Record;

    #[test]
    fn a_record_decodes_from_any_alignment_and_short_bytes_are_rejected() {
        assert!(SampleEvent::decode(&[0u8; 16]).is_none());
        let mut bytes = [0u8; size_of::<SampleEvent>() + 1];
        bytes[1..].copy_from_slice(&[0u8; size_of::<SampleEvent>()]);
        let ev = SampleEvent::decode(&bytes[1..]).unwrap();
        assert_eq!(ev.kernel_frames().len(), 0);
    }
}
