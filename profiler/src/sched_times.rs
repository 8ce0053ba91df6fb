//! Exact per-thread times from the scheduler hooks: seeding the threads
//! that exist when the capture starts, and closing the books at its end.

use profiler_common::Record as _;
use std::collections::BTreeMap;

use aya::maps::{HashMap, MapData, RingBuf};
use profiler_common::{
    ThreadExit, ThreadRecord, ThreadTimes, NO_SYSCALL, OFF_CPU_STATES, STATE_DISK, STATE_OTHER, STATE_RUNNING,
    STATE_SLEEPING,
};

use crate::{model::text::comm_string, sys::clock::monotonic_ns};

/// Thread state letter of /proc/PID/task/TID/stat to our state.
fn state_from_proc(letter: char) -> u32 {
    match letter {
        'R' => STATE_RUNNING,
        'S' | 'I' => STATE_SLEEPING,
        'D' => STATE_DISK,
        _ => STATE_OTHER,
    }
}

/// The system call a blocked thread is in and its first argument, from
/// /proc/PID/task/TID/syscall ("NR ARG0 ARG1 …" with hex arguments, or
/// "running", or "-1 …" outside one).
fn proc_syscall(task: &std::path::Path) -> (i32, i32) {
    let text = std::fs::read_to_string(task.join("syscall")).unwrap_or_default();
    let mut words = text.split_whitespace();
    let nr = words.next().and_then(|nr| nr.parse::<i32>().ok()).filter(|nr| *nr >= 0).unwrap_or(NO_SYSCALL);
    let arg0 =
        words.next().and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok()).map_or(-1, |a| a as i32);
    (nr, if nr == NO_SYSCALL { -1 } else { arg0 })
}

/// A thread found in procfs.
struct ProcThread {
    pid: u32,
    tid: u32,
    state: char,
    syscall: i32,
    /// The syscall's first argument (an fd for fd syscalls).
    syscall_fd: i32,
}

/// Every thread of the host with its state letter, from procfs. Threads
/// that vanish while being read are skipped.
fn proc_threads() -> Vec<ProcThread> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else { continue };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
            // "tid (comm) S ...": the state follows the last ')'.
            let Some(letter) = stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next()) else {
                continue;
            };
            // Only a blocked thread's syscall stays put until the hooks see it.
            let (syscall, syscall_fd) = if letter == 'R' { (NO_SYSCALL, -1) } else { proc_syscall(&t.path()) };
            out.push(ProcThread { pid, tid, state: letter, syscall, syscall_fd });
        }
    }
    out
}

/// Insert threads the hooks have not seen yet, in their current state from
/// now on. Returns the start of the accounting window: the moment seeding
/// ended, not when it began. Reading procfs takes a while on a host with
/// many threads (half a second at 10,000), and a thread the hooks move
/// meanwhile restarts its clock at that move while the window is not open
/// yet: the window must not claim that time.
pub fn seed(threads: &mut HashMap<&mut MapData, u32, ThreadRecord>) -> u64 {
    let now = monotonic_ns();
    for t in proc_threads() {
        let mut r = ThreadRecord::new(t.pid, state_from_proc(t.state), now);
        r.syscall = t.syscall;
        r.syscall_fd = t.syscall_fd;
        // BPF_NOEXIST: a thread the hooks already track keeps its record.
        let _ = threads.insert(t.tid, r, 1);
    }
    monotonic_ns()
}

/// Exited threads' final times and names, by tid.
#[derive(Debug, Default)]
pub struct Exited {
    pub times: BTreeMap<u32, ThreadTimes>,
    pub names: BTreeMap<u32, String>,
    /// Processes whose main thread exited since this was last taken, for
    /// dropping per-process caches.
    pub processes_gone: Vec<u32>,
    /// Threads that exited since this was last taken, for the snapshots.
    pub threads_gone: Vec<u32>,
}

/// Drain exit records into `exited`.
pub fn drain_exits(ring: &mut RingBuf<MapData>, exited: &mut Exited) {
    while let Some(item) = ring.next() {
        if let Some(e) = ThreadExit::decode(&item) {
            if e.tid == e.times.tgid {
                exited.processes_gone.push(e.tid);
            }
            exited.threads_gone.push(e.tid);
            exited.times.insert(e.tid, e.times);
            exited.names.insert(e.tid, comm_string(&e.comm));
        }
    }
}

/// Threads whose record says they have been running for more than
/// `SUSPECT_RUN_NS` at `end_ns` while procfs says they are not running: the
/// hooks did not see them leave a CPU, so their exact times cannot be
/// trusted. (Seen on this machine kind for the threads of pid 1.)
pub fn missed_switch_outs(live: &[(u32, ThreadRecord)], end_ns: u64) -> Vec<u32> {
    live.iter()
        .filter(|(_, r)| r.times.state == STATE_RUNNING && end_ns.saturating_sub(r.times.since_ns) > SUSPECT_RUN_NS)
        .filter(|(tid, r)| {
            let stat = std::fs::read_to_string(format!("/proc/{}/task/{tid}/stat", r.times.tgid)).unwrap_or_default();
            let letter = stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next());
            matches!(letter, Some(c) if c != 'R')
        })
        .map(|(tid, _)| *tid)
        .collect()
}

/// See [`missed_switch_outs`].
const SUSPECT_RUN_NS: u64 = 100_000_000;

/// The records of the threads alive at the end.
pub fn live(threads: &HashMap<&mut MapData, u32, ThreadRecord>) -> Vec<(u32, ThreadRecord)> {
    threads.iter().flatten().collect()
}

/// Per-thread totals at `end_ns`: live threads get the time of their
/// current state up to the end added.
pub fn finish(
    live: &[(u32, ThreadRecord)],
    mut exited: BTreeMap<u32, ThreadTimes>,
    window_start_ns: u64,
    end_ns: u64,
) -> BTreeMap<u32, ThreadTimes> {
    for (tid, r) in live {
        let mut t = r.times;
        t.account_between(window_start_ns, end_ns);
        exited.insert(*tid, t);
    }
    exited
}

/// Names of these threads that are still alive, read once from procfs.
pub fn proc_names(threads: impl Iterator<Item = (u32, u32)>) -> impl Iterator<Item = (u32, String)> {
    threads.filter_map(|(tgid, tid)| {
        let name = std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/comm")).ok()?;
        Some((tid, name.trim_end().to_owned()))
    })
}

/// Names of the off-CPU states in `ThreadTimes::off_cpu_ns` order.
pub const OFF_CPU_NAMES: [&str; OFF_CPU_STATES] = ["runnable", "sleeping", "disk", "other"];
