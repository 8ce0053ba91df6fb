//! Exact per-thread times from the scheduler hooks: seeding the threads
//! that exist when the capture starts, and closing the books at its end.

use std::collections::BTreeMap;

use aya::maps::{HashMap, MapData, RingBuf};
use profiler_common::{
    ThreadExit, ThreadTimes, OFF_CPU_STATES, STATE_DISK, STATE_OTHER, STATE_RUNNING, STATE_SLEEPING,
};

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Thread state letter of /proc/PID/task/TID/stat to our state.
fn state_from_proc(letter: char) -> u32 {
    match letter {
        'R' => STATE_RUNNING,
        'S' | 'I' => STATE_SLEEPING,
        'D' => STATE_DISK,
        _ => STATE_OTHER,
    }
}

/// Every thread of the host with its state letter, from procfs. Threads
/// that vanish while being read are skipped.
fn proc_threads() -> Vec<(u32, u32, char)> {
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
            out.push((pid, tid, letter));
        }
    }
    out
}

/// Insert threads the hooks have not seen yet, in their current state from
/// now on. Returns the start of the accounting window.
pub fn seed(threads: &mut HashMap<&mut MapData, u32, ThreadTimes>) -> u64 {
    let now = monotonic_ns();
    for (pid, tid, letter) in proc_threads() {
        let t = ThreadTimes { tgid: pid, state: state_from_proc(letter), since_ns: now, ..Default::default() };
        // BPF_NOEXIST: a thread the hooks already track keeps its record.
        let _ = threads.insert(tid, t, 1);
    }
    now
}

/// Drain exit records into `exited`.
pub fn drain_exits(ring: &mut RingBuf<MapData>, exited: &mut BTreeMap<u32, ThreadTimes>) {
    while let Some(item) = ring.next() {
        if let Some(e) = crate::capture::decode::<ThreadExit>(&item) {
            exited.insert(e.tid, e.times);
        }
    }
}

/// Per-thread totals at `end_ns`: live threads get the time of their
/// current state up to the end added.
pub fn finish(
    threads: &HashMap<&mut MapData, u32, ThreadTimes>,
    mut exited: BTreeMap<u32, ThreadTimes>,
    end_ns: u64,
) -> BTreeMap<u32, ThreadTimes> {
    for (tid, mut t) in threads.iter().flatten() {
        t.account_until(end_ns);
        exited.insert(tid, t);
    }
    exited
}

/// Keep the times of the threads `--pid` and `--comm` select; returns them
/// with the names of those still alive (read once from procfs).
pub fn select(
    mut times: BTreeMap<u32, ThreadTimes>,
    pids: &[u32],
    comm: Option<&str>,
) -> (BTreeMap<u32, ThreadTimes>, BTreeMap<u32, String>) {
    if !pids.is_empty() {
        times.retain(|_, t| pids.contains(&t.tgid));
    }
    let comms: BTreeMap<u32, String> = times
        .iter()
        .filter_map(|(tid, t)| {
            let name = std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", t.tgid)).ok()?;
            Some((*tid, name.trim_end().to_owned()))
        })
        .collect();
    if let Some(comm) = comm {
        times.retain(|tid, _| comms.get(tid).map(String::as_str) == Some(comm));
    }
    (times, comms)
}

/// Names of the off-CPU states in `ThreadTimes::off_cpu_ns` order.
pub const OFF_CPU_NAMES: [&str; OFF_CPU_STATES] = ["runnable", "sleeping", "disk", "other"];
