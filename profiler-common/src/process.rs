//! Process lifecycle records: the fork and exec hooks write them into the
//! same ring buffer as on-CPU samples, so that user space sees a process's
//! exec before the samples taken after it, and can tell a recycled pid's
//! new process from the old one.

use crate::TASK_COMM_LEN;

/// What a record of the [`EVENTS_MAP`](crate::EVENTS_MAP) ring buffer is:
/// every record starts with one of these as a `u32`.
pub const EVENT_SAMPLE: u32 = 1;
/// A process called execve: [`ProcessEvent`].
pub const EVENT_EXEC: u32 = 2;
/// A new process (not a thread) was forked: [`ProcessEvent`].
pub const EVENT_FORK: u32 = 3;

/// Bytes of the exec'd file name a [`ProcessEvent`] carries, NUL included.
pub const EXEC_FILENAME_LEN: usize = 256;

/// Global: byte offset of `linux_binprm.filename` in this kernel, from BTF.
pub const GLOBAL_BPRM_FILENAME_OFFSET: &str = "BPRM_FILENAME_OFFSET";

/// A fork of a new process or an exec.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessEvent {
    /// [`EVENT_EXEC`] or [`EVENT_FORK`].
    pub kind: u32,
    /// The process: the exec'ing process, or the new child.
    pub pid: u32,
    /// Exec: the thread that called execve (the pid after it). Fork: the parent's tid.
    pub tid: u32,
    /// Fork: the parent process. Exec: 0.
    pub ppid: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Exec: the new comm. Fork: the parent's (and so the child's) comm.
    pub comm: [u8; TASK_COMM_LEN],
    /// Exec: the file name given to execve, NUL terminated. Fork: empty.
    pub filename: [u8; EXEC_FILENAME_LEN],
}

// SAFETY: #[repr(C)] integers and arrays of them.
unsafe impl crate::Record for ProcessEvent {}

impl ProcessEvent {
    /// The file name up to its first NUL.
    pub fn filename_bytes(&self) -> &[u8] {
        let end = self.filename.iter().position(|&b| b == 0).unwrap_or(EXEC_FILENAME_LEN);
        &self.filename[..end]
    }
}
