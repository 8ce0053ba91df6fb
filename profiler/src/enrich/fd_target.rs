//! What a blocked thread waits on: for threads that snapshots find off-CPU
//! in a file-descriptor system call (read, write, recvfrom, fsync,
//! epoll_wait, …), the target of that descriptor.
//!
//! Covered, and cheap: the fd is the syscall's first argument, recorded by
//! the sys_enter hook; it is resolved by `readlink(/proc/PID/fd/N)` once
//! per blocking call a snapshot sees (a thread blocked in one call for the
//! whole capture costs one readlink), and at most once per (process, fd)
//! per [`RESOLVE_INTERVAL`] (a thread that blocks on the same fd thousands
//! of times a second costs one readlink a second; an fd closed and reopened
//! on another file within that second is reported under the old name). Files and named pipes give their path;
//! anonymous pipes `pipe:[INODE]`; sockets `socket:[INODE]`, which the end
//! of the capture turns into `tcp LOCAL -> REMOTE`, `udp LOCAL -> REMOTE`
//! or `unix PATH` from the process's own /proc/PID/net tables (its network
//! namespace) if the socket still exists then. Not covered: syscalls whose
//! fd is not the first argument (splice's second fd, poll/select sets) and
//! io_uring.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::model::syscall::syscall_name;

/// System calls whose first argument is the file descriptor they block on.
const FD_SYSCALLS: &[&str] = &[
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "recvmmsg",
    "sendmmsg",
    "accept",
    "accept4",
    "connect",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "flock",
    "fcntl",
    "ioctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "sendfile",
    "splice",
    "tee",
    "copy_file_range",
    "fallocate",
    "ftruncate",
    "getdents64",
];

/// How long a resolved (process, fd) target is reused.
pub const RESOLVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Most distinct fd targets named over a collector's life.
pub const MAX_TARGETS: usize = 65_536;

/// Highest syscall number looked at when building the set.
const MAX_SYSCALL_NR: i32 = 1024;

/// One thing a thread was seen blocked on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedOn {
    pub syscall: String,
    /// File path, `pipe:[INODE]`, or a socket endpoint.
    pub target: String,
    /// Snapshots that saw the thread blocked there.
    pub snapshots: u64,
}

/// One blocking call of a thread: (syscall start ns, syscall, fd).
type Call = (u64, i32, i32);

/// Blocking calls seen by snapshots, with their targets.
pub struct FdWaits {
    fd_syscalls: FxHashSet<i32>,
    /// Per (tgid, fd): its target (`None`: unreadable) and when it was read.
    resolved: FxHashMap<(u32, i32), (Option<u32>, std::time::Instant)>,
    /// Per thread: the call last seen, (syscall start, syscall, fd), and its target.
    calls: FxHashMap<u32, (Call, Option<u32>)>,
    targets: Vec<String>,
    target_ids: FxHashMap<String, u32>,
    /// (tgid, tid, syscall, target) to snapshots.
    counts: FxHashMap<(u32, u32, i32, u32), u64>,
    /// fd readlinks done: one per blocking call seen.
    pub resolutions: u64,
    /// Targets not named because [`MAX_TARGETS`] were.
    pub targets_refused: u64,
}

impl Default for FdWaits {
    fn default() -> Self {
        Self::new()
    }
}

impl FdWaits {
    pub fn new() -> Self {
        let fd_syscalls = (0..MAX_SYSCALL_NR).filter(|&nr| FD_SYSCALLS.contains(&syscall_name(nr).as_str())).collect();
        Self {
            fd_syscalls,
            resolved: FxHashMap::default(),
            calls: FxHashMap::default(),
            targets: Vec::new(),
            target_ids: FxHashMap::default(),
            counts: FxHashMap::default(),
            resolutions: 0,
            targets_refused: 0,
        }
    }

    fn intern(&mut self, target: String) -> Option<u32> {
        if let Some(&id) = self.target_ids.get(&target) {
            return Some(id);
        }
        if self.targets.len() >= MAX_TARGETS {
            // Named targets are few (files, sockets, pipes); a flood of new
            // ones is not followed further.
            self.targets_refused += 1;
            return None;
        }
        let id = self.targets.len() as u32;
        self.target_ids.insert(target.clone(), id);
        self.targets.push(target);
        Some(id)
    }

    /// What thread `tid` of `tgid`, seen off-CPU by a snapshot in
    /// `syscall(fd, …)` entered at `start_ns`, waits on (an interned
    /// target), read while it still waits.
    pub fn target(&mut self, tgid: u32, tid: u32, syscall: i32, fd: i32, start_ns: u64) -> Option<u32> {
        if fd < 0 || !self.fd_syscalls.contains(&syscall) {
            return None;
        }
        let call = (start_ns, syscall, fd);
        match self.calls.get(&tid) {
            Some((c, target)) if *c == call => *target,
            _ => {
                let target = self.resolve(tgid, fd);
                self.calls.insert(tid, (call, target));
                target
            }
        }
    }

    /// One snapshot saw the thread so: [`Self::target`] and [`Self::count`].
    pub fn observe(&mut self, tgid: u32, tid: u32, syscall: i32, fd: i32, start_ns: u64) {
        if let Some(target) = self.target(tgid, tid, syscall, fd, start_ns) {
            self.count(tgid, tid, syscall, target, 1);
        }
    }

    /// `n` snapshots saw the thread waiting on `target`.
    pub fn count(&mut self, tgid: u32, tid: u32, syscall: i32, target: u32, n: u64) {
        *self.counts.entry((tgid, tid, syscall, target)).or_default() += n;
    }

    /// The target of `fd` in `tgid`, read again if older than [`RESOLVE_INTERVAL`].
    fn resolve(&mut self, tgid: u32, fd: i32) -> Option<u32> {
        let now = std::time::Instant::now();
        match self.resolved.get(&(tgid, fd)) {
            Some((target, at)) if now.duration_since(*at) < RESOLVE_INTERVAL => *target,
            _ => {
                self.resolutions += 1;
                let link = std::fs::read_link(format!("/proc/{tgid}/fd/{fd}")).ok();
                let target = link.and_then(|l| self.intern(l.to_string_lossy().into_owned()));
                self.resolved.insert((tgid, fd), (target, now));
                target
            }
        }
    }

    /// The window's counts, named; targets and calls are kept for the next.
    pub fn take_counts(&mut self) -> BTreeMap<u32, Vec<BlockedOn>> {
        let counts = std::mem::take(&mut self.counts);
        Self::named(&self.targets, counts)
    }

    /// Forget calls of threads and fds of processes no longer alive, and
    /// resolutions older than [`RESOLVE_INTERVAL`]; returns how many.
    pub fn evict(&mut self, live_tids: &FxHashSet<u32>) -> u64 {
        let before = self.calls.len() + self.resolved.len();
        self.calls.retain(|tid, _| live_tids.contains(tid));
        let now = std::time::Instant::now();
        self.resolved.retain(|_, (_, at)| now.duration_since(*at) < RESOLVE_INTERVAL);
        (before - self.calls.len() - self.resolved.len()) as u64
    }

    /// Per thread, what it was blocked on, most snapshots first.
    pub fn finish(self) -> BTreeMap<u32, Vec<BlockedOn>> {
        Self::named(&self.targets, self.counts)
    }

    fn named(targets: &[String], counts: FxHashMap<(u32, u32, i32, u32), u64>) -> BTreeMap<u32, Vec<BlockedOn>> {
        let mut sockets: FxHashMap<u32, FxHashMap<u64, String>> = FxHashMap::default();
        let mut out: BTreeMap<u32, Vec<BlockedOn>> = BTreeMap::new();
        for ((tgid, tid, syscall, target), snapshots) in counts {
            let Some(raw) = targets.get(target as usize) else { continue };
            let target = match socket_inode(raw) {
                Some(ino) => sockets
                    .entry(tgid)
                    .or_insert_with(|| socket_endpoints(tgid))
                    .get(&ino)
                    .cloned()
                    .unwrap_or_else(|| raw.clone()),
                None => raw.clone(),
            };
            out.entry(tid).or_default().push(BlockedOn { syscall: syscall_name(syscall), target, snapshots });
        }
        for v in out.values_mut() {
            v.sort_by(|a, b| b.snapshots.cmp(&a.snapshots).then_with(|| a.target.cmp(&b.target)));
        }
        out
    }
}

/// `socket:[123]` to 123.
fn socket_inode(target: &str) -> Option<u64> {
    target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Socket inodes of the network namespace of `pid` to their endpoints.
fn socket_endpoints(pid: u32) -> FxHashMap<u64, String> {
    let mut out = FxHashMap::default();
    let Ok(p) = procfs::process::Process::new(pid as i32) else { return out };
    for tcp in [p.tcp(), p.tcp6()].into_iter().flatten().flatten() {
        out.insert(tcp.inode, format!("tcp {} -> {}", tcp.local_address, tcp.remote_address));
    }
    for udp in [p.udp(), p.udp6()].into_iter().flatten().flatten() {
        out.insert(udp.inode, format!("udp {} -> {}", udp.local_address, udp.remote_address));
    }
    for unix in p.unix().into_iter().flatten() {
        let path = unix.path.map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|| "(unnamed)".into());
        out.insert(unix.inode, format!("unix {path}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn resolves_a_file_once_per_call() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let fd = file.as_file().as_raw_fd();
        let read = (0..MAX_SYSCALL_NR).find(|&nr| syscall_name(nr) == "read").unwrap();
        let me = std::process::id();
        let mut w = FdWaits::new();
        w.observe(me, me, read, fd, 1);
        w.observe(me, me, read, fd, 1);
        // A new call on the same fd within RESOLVE_INTERVAL reuses the target.
        w.observe(me, me, read, fd, 2);
        w.observe(me, me, read, 9999, 3);
        w.observe(me, me, read, 9999, 3);
        assert_eq!(w.resolutions, 2, "one readlink per fd, unreadable ones included");
        let blocked = w.finish();
        let want = file.path().to_string_lossy().into_owned();
        assert_eq!(blocked[&me], vec![BlockedOn { syscall: "read".into(), target: want, snapshots: 3 }]);
    }

    #[test]
    fn sockets_are_named_by_their_endpoints() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = listener.as_raw_fd();
        let accept = (0..MAX_SYSCALL_NR).find(|&nr| syscall_name(nr) == "accept4").unwrap();
        let me = std::process::id();
        let mut w = FdWaits::new();
        w.observe(me, me, accept, fd, 1);
        let blocked = w.finish();
        let addr = listener.local_addr().unwrap();
        assert!(blocked[&me][0].target.starts_with(&format!("tcp {addr} -> ")), "{:?}", blocked[&me]);
        assert_eq!(socket_inode("socket:[42]"), Some(42));
        assert_eq!(socket_inode("pipe:[42]"), None);
    }

    /// xcapture #24: a blocked thread's registers may hold anything. Garbage
    /// syscall numbers and fds, for a live process, a gone one and pid 0,
    /// name nothing and break nothing.
    #[test]
    fn garbage_syscall_numbers_and_fds_name_nothing_and_break_nothing() {
        let read = (0..MAX_SYSCALL_NR).find(|&nr| syscall_name(nr) == "read").unwrap();
        let me = std::process::id();
        let garbage_nrs = [i32::MIN, -1, MAX_SYSCALL_NR, 4_096, 1 << 30, i32::MAX];
        let garbage_fds = [i32::MIN, -1, 1 << 20, i32::MAX];
        let mut w = FdWaits::new();
        for pid in [me, u32::MAX, 0] {
            for &nr in garbage_nrs.iter().chain([read].iter()) {
                for &fd in &garbage_fds {
                    w.observe(pid, pid, nr, fd, 7);
                    assert!(w.target(pid, pid, nr, fd, 8).is_none(), "pid {pid} syscall {nr} fd {fd}");
                }
            }
        }
        assert!(w.finish().is_empty());
        for nr in garbage_nrs {
            assert_eq!(syscall_name(nr), format!("syscall_{nr}"));
            assert_eq!(crate::model::syscall::syscall_name_of("aarch64", nr), format!("syscall_{nr}"));
        }
    }
}
