//! The capture's process table: one [`ProcessInfo`] per process generation.
//!
//! - A process is read from procfs when it is first seen (a sample, a
//!   snapshot, or the end of the capture), once.
//! - An exec starts a new generation, read from procfs at once (the exec
//!   event wakes user space); if the process is already gone, what the
//!   event carried (comm, file name) and what the previous generation knew
//!   (owner, placement) are kept.
//! - A fork of a new process starts a generation that inherits its
//!   parent's metadata; it is read from procfs only if a sample or
//!   snapshot needs it before its exec.
//! - Generations are never dropped before the capture ends, so samples of
//!   short-lived processes stay attributed; a recycled pid gets a new
//!   generation from its fork, never the old process's data.

use std::time::Instant;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use profiler_common::{ProcessEvent, EVENT_EXEC, EVENT_FORK};

use super::process::{BootClock, ProcRead, ProcessInfo, Source};
use crate::model::text::comm_string;

/// Largest difference between a fork event's time and the start time
/// procfs gives for the process: procfs counts in clock ticks (4 ms at
/// HZ=250) and CLOCK_BOOTTIME runs ahead of CLOCK_MONOTONIC by any time
/// the machine was suspended.
const FORK_START_SLACK_NS: u64 = 50_000_000;

/// Most user names (uid → name) kept; the cache is emptied when full.
const MAX_USERS: usize = 4_096;

/// Cost and volume of enrichment, for summary.json and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EnrichStats {
    /// Process generations known at the end.
    pub processes: u64,
    /// Fork and exec events received.
    pub events: u64,
    /// procfs reads of a process (each reads stat, exe, cmdline, cgroup and the owner).
    pub procfs_reads: u64,
    /// Reads that found the process gone, or another program in its place.
    pub procfs_misses: u64,
    /// Wall-clock time spent in those reads.
    pub procfs_ns: u64,
}

pub struct ProcessTable {
    /// Generations by id; ids grow for the table's life. Boxed: the table
    /// keeps the room of its fullest window (an exec storm's thousands of
    /// generations), and a slot of a generation inline is 350 bytes.
    infos: FxHashMap<u32, Box<ProcessInfo>>,
    next_id: u32,
    /// Generations forgotten between windows (superseded or gone).
    pub evicted: u64,
    /// Generations moved out by [`ProcessTable::window`] ahead of the
    /// eviction that follows it, counted there.
    moved_out: u64,
    /// pid to its latest generation.
    current: FxHashMap<u32, u32>,
    /// Fork generations not read from procfs yet.
    unread: FxHashSet<u32>,
    users: FxHashMap<u32, Option<String>>,
    boot: BootClock,
    pub stats: EnrichStats,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessTable {
    pub fn new() -> Self {
        Self {
            infos: FxHashMap::default(),
            next_id: 0,
            evicted: 0,
            moved_out: 0,
            current: FxHashMap::default(),
            unread: FxHashSet::default(),
            users: FxHashMap::default(),
            boot: BootClock::now(),
            stats: EnrichStats::default(),
        }
    }

    fn push(&mut self, mut info: ProcessInfo) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        info.id = id;
        self.current.insert(info.pid, id);
        self.infos.insert(id, Box::new(info));
        id
    }

    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| uzers::get_user_by_uid(uid).map(|u| u.name().to_string_lossy().into_owned()))
            .clone()
    }

    fn read(&mut self, pid: u32) -> Option<ProcRead> {
        let started = Instant::now();
        let read = ProcRead::read(pid);
        self.stats.procfs_reads += 1;
        self.stats.procfs_ns += started.elapsed().as_nanos() as u64;
        if read.is_none() {
            self.stats.procfs_misses += 1;
        }
        read
    }

    /// Fill `info` from a read of the same process.
    fn apply(&mut self, info: &mut ProcessInfo, read: ProcRead) {
        if let Some(comm) = read.comm {
            info.comm = comm;
        }
        info.ppid = read.ppid.or(info.ppid);
        if let Some(ns) = read.start_boot_ns {
            info.start_time_unix_ns = Some(self.boot.unix_ns(ns));
        }
        info.exe = read.exe.or(info.exe.take());
        info.cmdline = read.cmdline.map(Into::into).or(info.cmdline.take());
        if let Some(uid) = read.uid {
            info.uid = Some(uid);
            info.user = self.user(uid);
        }
        if let Some(p) = read.placement {
            info.placement = p;
        }
        info.source = Source::Procfs;
    }

    /// A fork or exec from the kernel.
    pub fn on_event(&mut self, ev: &ProcessEvent) {
        self.stats.events += 1;
        match ev.kind {
            EVENT_FORK => {
                let parent = self.current.get(&ev.ppid).and_then(|id| self.infos.get(id));
                let mut info = parent.map(|p| ProcessInfo::clone(p)).unwrap_or_default();
                info.pid = ev.pid;
                info.ppid = Some(ev.ppid);
                info.comm = comm_string(&ev.comm);
                info.start_time_unix_ns = Some(self.boot.unix_ns(ev.ts_ns));
                info.since_ns = ev.ts_ns;
                info.source = Source::Fork;
                let id = self.push(info);
                self.unread.insert(id);
            }
            EVENT_EXEC => {
                // Owner, placement, parent and start time survive an exec.
                let mut info = match self.current.get(&ev.pid) {
                    Some(id) => self.infos.get(id).map(|p| ProcessInfo::clone(p)).unwrap_or_default(),
                    None => ProcessInfo::default(),
                };
                info.pid = ev.pid;
                info.comm = comm_string(&ev.comm);
                info.exe = Some(String::from_utf8_lossy(ev.filename_bytes()).into_owned()).filter(|f| !f.is_empty());
                info.cmdline = None;
                info.since_ns = ev.ts_ns;
                info.source = Source::Exec;
                // Only a read that still shows this exec's program counts.
                if let Some(read) = self.read(ev.pid) {
                    if read.comm.as_deref() == Some(info.comm.as_str()) {
                        self.apply(&mut info, read);
                    } else {
                        self.stats.procfs_misses += 1;
                    }
                }
                self.push(info);
            }
            _ => {}
        }
    }

    /// The generation a sample or snapshot of `pid` belongs to now, read
    /// from procfs if it is first seen.
    pub fn current(&mut self, pid: u32) -> u32 {
        match self.current.get(&pid) {
            Some(&id) => {
                if self.unread.remove(&id) {
                    self.read_forked(id);
                }
                id
            }
            None => self.first_seen(pid),
        }
    }

    /// The latest generation of `pid`, if any, without reading procfs.
    pub fn latest(&self, pid: u32) -> Option<u32> {
        self.current.get(&pid).copied()
    }

    fn first_seen(&mut self, pid: u32) -> u32 {
        let mut info = ProcessInfo { pid, ..ProcessInfo::default() };
        match self.read(pid) {
            Some(read) => self.apply(&mut info, read),
            // Gone already: only the pid, and names from the threads, are known.
            None => info.source = Source::Exec,
        }
        self.push(info)
    }

    /// Read a forked child whose metadata so far is its parent's, if
    /// procfs still shows that child (same start, same program).
    fn read_forked(&mut self, id: u32) {
        let Some(info) = self.infos.get(&id) else { return };
        let (pid, since, comm) = (info.pid, info.since_ns, info.comm.clone());
        let Some(read) = self.read(pid) else { return };
        let same_start = read.start_boot_ns.is_some_and(|s| s.abs_diff(since) <= FORK_START_SLACK_NS);
        if !same_start || read.comm.as_deref() != Some(comm.as_str()) {
            self.stats.procfs_misses += 1;
            return;
        }
        let Some(mut info) = self.infos.remove(&id) else { return };
        self.apply(&mut info, read);
        info.source = Source::Fork;
        self.infos.insert(id, info);
    }

    /// Give a generation a name if it has none (the process was gone).
    pub fn name_if_unknown(&mut self, id: u32, comm: &str) {
        if let Some(info) = self.infos.get_mut(&id) {
            if info.comm.is_empty() {
                info.comm = comm.to_owned();
            }
        }
    }

    pub fn finish(mut self) -> (Vec<ProcessInfo>, EnrichStats) {
        // Every generation moved out: the table goes with this call.
        let (infos, _, stats) = self.window(Some(&FxHashSet::default()));
        (infos, stats)
    }

    /// The generations known now as one window's table: in id order,
    /// renumbered densely (`ProcessInfo::id` is the index), with each
    /// generation's index. Without evictions the indices are the ids.
    ///
    /// `evicting`: the processes alive at the window's end, when the table
    /// is trimmed to them right after ([`ProcessTable::evict`]). The
    /// generations that trim would forget are moved into the window rather
    /// than copied (under an exec storm, tens of thousands per window).
    pub fn window(
        &mut self,
        evicting: Option<&FxHashSet<u32>>,
    ) -> (Vec<ProcessInfo>, FxHashMap<u32, u32>, EnrichStats) {
        let mut ids: Vec<u32> = self.infos.keys().copied().collect();
        ids.sort_unstable();
        let mut index = FxHashMap::default();
        let mut infos = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(info) = self.infos.get(&id) else { continue };
            let kept = evicting.is_none_or(|live| self.current.get(&info.pid) == Some(&id) && live.contains(&info.pid));
            let info = match kept {
                true => ProcessInfo::clone(info),
                false => match self.infos.remove(&id) {
                    Some(info) => {
                        self.moved_out += 1;
                        *info
                    }
                    None => continue,
                },
            };
            index.insert(id, infos.len() as u32);
            infos.push(ProcessInfo { id: infos.len() as u32, ..info });
        }
        let stats = EnrichStats { processes: infos.len() as u64, ..self.stats };
        (infos, index, stats)
    }

    /// Between windows: forget generations that a later one replaced and
    /// processes no longer alive (`live` holds the tgids the window's
    /// closing snapshot listed). Returns how many were forgotten.
    pub fn evict(&mut self, live: &FxHashSet<u32>) -> u64 {
        let before = self.infos.len();
        let current = &self.current;
        self.infos.retain(|id, info| current.get(&info.pid) == Some(id) && live.contains(&info.pid));
        self.current.retain(|pid, _| live.contains(pid));
        let infos = &self.infos;
        self.unread.retain(|id| infos.contains_key(id));
        if self.users.len() > MAX_USERS {
            self.users.clear();
        }
        let evicted = (before - self.infos.len()) as u64 + std::mem::take(&mut self.moved_out);
        self.evicted += evicted;
        evicted
    }

    /// Generations held now.
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use profiler_common::{EXEC_FILENAME_LEN, TASK_COMM_LEN};

    use super::*;

    fn event(kind: u32, pid: u32, ppid: u32, comm: &str, filename: &str, ts_ns: u64) -> ProcessEvent {
        let mut c = [0u8; TASK_COMM_LEN];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        let mut f = [0u8; EXEC_FILENAME_LEN];
        f[..filename.len()].copy_from_slice(filename.as_bytes());
        ProcessEvent { kind, pid, tid: pid, ppid, ts_ns, comm: c, filename: f }
    }

    #[test]
    fn generations_follow_fork_and_exec_of_gone_processes() {
        let mut t = ProcessTable::new();
        let me = std::process::id();
        let parent = t.current(me);
        // A child that is gone by the time we look (pid never valid).
        let child = u32::MAX / 2;
        t.on_event(&event(EVENT_FORK, child, me, "sh", "", 10));
        let forked = t.latest(child).unwrap();
        assert_ne!(forked, parent);
        t.on_event(&event(EVENT_EXEC, child, 0, "storm-7", "/tmp/storm-7", 20));
        let execd = t.current(child);
        assert_ne!(execd, forked);
        // A recycled pid: a new fork, a new generation.
        t.on_event(&event(EVENT_FORK, child, me, "other", "", 30));
        let recycled = t.current(child);
        let (infos, stats) = t.finish();
        let (p, f, e, r) =
            (&infos[parent as usize], &infos[forked as usize], &infos[execd as usize], &infos[recycled as usize]);
        assert_eq!(p.source, Source::Procfs);
        assert_eq!((f.source, f.comm.as_str(), f.exe.as_deref()), (Source::Fork, "sh", p.exe.as_deref()));
        assert_eq!((e.source, e.comm.as_str(), e.exe.as_deref()), (Source::Exec, "storm-7", Some("/tmp/storm-7")));
        assert_eq!(e.placement, p.placement, "placement survives the exec");
        assert_eq!((r.comm.as_str(), r.exe.as_deref()), ("other", p.exe.as_deref()));
        assert_eq!(stats.events, 3);
        assert_eq!(stats.processes, 4);
    }
}
