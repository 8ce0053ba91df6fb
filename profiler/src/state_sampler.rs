//! Thread-state snapshots: each one reads a fresh instance of the task
//! iterator (one [`StateRecord`] per thread on the host) and counts, per
//! thread, the state it was seen in. Kernel stacks that snapshots carry
//! (threads with no blocking stack id yet) are kept for the off-CPU report.

use std::{
    io::Read,
    os::fd::{FromRawFd, OwnedFd},
};

use rustc_hash::FxHashMap;

use profiler_common::{StateRecord, SNAPSHOT_STACK_DEPTH};

use crate::capture::decode;

const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_ITER_CREATE: libc::c_long = 33;

/// Number of `STATE_*` values.
pub const STATES: usize = 5;

/// `bpf(cmd, attr)` returning a new fd.
fn bpf_fd(cmd: libc::c_long, attr: &mut [u32; 4]) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a zeroed, large-enough bpf_attr prefix for `cmd`.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size_of::<[u32; 4]>() as u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Our own fd of a BPF link, by id.
pub fn link_fd_by_id(id: u32) -> std::io::Result<OwnedFd> {
    bpf_fd(BPF_LINK_GET_FD_BY_ID, &mut [id, 0, 0, 0])
}

/// What the snapshots saw of one thread.
#[derive(Debug, Clone, Default)]
pub struct ThreadSamples {
    pub tgid: u32,
    pub comm: String,
    /// Snapshots that saw the thread in each `STATE_*`.
    pub states: [u64; STATES],
}

/// Cost and volume of the snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SamplerStats {
    pub snapshots: u64,
    /// Thread records read over all snapshots.
    pub records: u64,
    /// CPU time of the snapshotting thread inside snapshots: the kernel's
    /// iteration and BPF program (run inside read()) plus parsing.
    pub cpu_ns: u64,
}

pub struct StateSampler {
    link: OwnedFd,
    buf: Vec<u8>,
    pub stats: SamplerStats,
    pub threads: FxHashMap<u32, ThreadSamples>,
    /// Latest kernel stack a snapshot carried per thread (innermost first).
    pub kstacks: FxHashMap<u32, Box<[u64]>>,
    /// (tgid, user stack id) pairs seen, in order of first sight, for
    /// normalizing user stacks while their process lives.
    pub new_user_stacks: Vec<(u32, i32)>,
    seen_user_stacks: rustc_hash::FxHashSet<(u32, i32)>,
    /// Processes seen for the first time, in order, for the process table.
    pub new_processes: Vec<u32>,
    seen_processes: rustc_hash::FxHashSet<u32>,
    /// What off-CPU threads in fd syscalls wait on.
    pub fd_waits: crate::enrich::fd_target::FdWaits,
    /// Off-CPU threads with user registers (`--unwind dwarf|auto`), to
    /// copy and unwind their stacks while they stay blocked.
    pub blocked: Vec<crate::blocked_stacks::BlockedThread>,
}

/// The calling thread's id (snapshots are taken on the thread that records).
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

fn thread_cpu_ns() -> u64 {
    crate::sched_times::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

impl StateSampler {
    pub fn new(link: OwnedFd) -> Self {
        Self {
            link,
            buf: Vec::with_capacity(1 << 20),
            stats: SamplerStats::default(),
            threads: FxHashMap::default(),
            kstacks: FxHashMap::default(),
            new_user_stacks: Vec::new(),
            seen_user_stacks: Default::default(),
            new_processes: Vec::new(),
            seen_processes: Default::default(),
            fd_waits: crate::enrich::fd_target::FdWaits::new(),
            blocked: Vec::new(),
        }
    }

    /// Take one snapshot of every thread on the host.
    pub fn snapshot(&mut self) -> std::io::Result<()> {
        let started = thread_cpu_ns();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.link) as u32;
        let iter = bpf_fd(BPF_ITER_CREATE, &mut [fd, 0, 0, 0])?;
        self.buf.clear();
        std::fs::File::from(iter).read_to_end(&mut self.buf)?;
        let buf = std::mem::take(&mut self.buf);
        self.parse(&buf);
        self.buf = buf;
        self.stats.snapshots += 1;
        self.stats.cpu_ns += thread_cpu_ns().saturating_sub(started);
        Ok(())
    }

    fn parse(&mut self, mut bytes: &[u8]) {
        const HEAD: usize = size_of::<StateRecord>();
        while let Some(rec) = decode::<StateRecord>(bytes) {
            let frames = (rec.kstack_len as usize).min(SNAPSHOT_STACK_DEPTH);
            let end = HEAD + frames * 8;
            let Some(stack) = bytes.get(HEAD..end) else { break };
            self.add(&rec, stack);
            bytes = &bytes[end..];
        }
    }

    fn add(&mut self, rec: &StateRecord, stack: &[u8]) {
        self.stats.records += 1;
        if self.stats.snapshots == 0 {
            tracing::trace!(tid = rec.tid, tgid = rec.tgid, state = rec.state, "snapshot record");
        }
        if rec.tgid != 0 && self.seen_processes.insert(rec.tgid) {
            self.new_processes.push(rec.tgid);
        }
        if rec.state != profiler_common::STATE_RUNNING && rec.syscall >= 0 {
            self.fd_waits.observe(rec.tgid, rec.tid, rec.syscall, rec.syscall_fd, rec.syscall_start_ns);
        }
        let t = self.threads.entry(rec.tid).or_default();
        t.tgid = rec.tgid;
        if t.comm.as_bytes() != profiler_common::comm_bytes(&rec.comm) {
            t.comm = crate::sched_times::comm_string(&rec.comm);
        }
        if let Some(n) = t.states.get_mut(rec.state as usize) {
            *n += 1;
        }
        if !stack.is_empty() {
            let frames: Box<[u64]> =
                stack.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default())).collect();
            self.kstacks.insert(rec.tid, frames);
        }
        if let Some(b) = crate::blocked_stacks::BlockedThread::of(rec) {
            self.blocked.push(b);
        }
        if rec.ustack_id >= 0 && self.seen_user_stacks.insert((rec.tgid, rec.ustack_id)) {
            self.new_user_stacks.push((rec.tgid, rec.ustack_id));
        }
    }
}
