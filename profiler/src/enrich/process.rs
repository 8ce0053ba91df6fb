//! What is known of one process: identity, program, owner and placement,
//! read from procfs once per process generation (a pid between a fork or
//! exec and the next one).
//!
//! Reads go through one open `/proc/PID` directory (the `procfs` crate keeps
//! its fd): if the process exits while it is read, the remaining reads fail
//! rather than return a recycled pid's data, and the info keeps what was
//! read before.

use std::io::Read;

use serde::{Deserialize, Serialize};

use super::cgroup::{parse_proc_cgroup, Placement};
use crate::sys::clock::clock_ns;

/// Longest command line kept, in bytes.
pub const CMDLINE_MAX: usize = 4096;

/// How a process's metadata was obtained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Read from procfs while the process lived.
    #[default]
    Procfs,
    /// From the exec event only (the process was gone before procfs was read).
    Exec,
    /// Inherited from the parent at fork (never read on its own).
    Fork,
}

/// One process generation. Serialized as a `processes[]` entry of
/// summary.json and a `process` record of the samples file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredProcess")]
pub struct ProcessInfo {
    /// Index in the capture's process table.
    pub id: u32,
    pub pid: u32,
    pub ppid: Option<u32>,
    /// The process's (group leader's) comm.
    pub comm: String,
    pub exe: Option<String>,
    /// Arguments joined by spaces, at most [`CMDLINE_MAX`] bytes. Shared:
    /// a fork's generation starts with its parent's (a shell's loop forks
    /// hundreds a second, each with the loop's whole command line).
    pub cmdline: Option<std::sync::Arc<str>>,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub start_time_unix_ns: Option<u64>,
    #[serde(flatten)]
    pub placement: Placement,
    /// CLOCK_MONOTONIC ns at which this generation began (its fork or exec
    /// during the capture); 0 if it existed before.
    pub since_ns: u64,
    pub source: Source,
}

/// [`ProcessInfo`] as written, its placement's fields inline. Read through
/// this rather than with `#[serde(flatten)]`, which first copies each record
/// into a generic tree of its own: a query of an exec storm's window reads
/// tens of thousands of processes (a quarter of its memory went there).
#[derive(Deserialize)]
struct StoredProcess {
    id: u32,
    pid: u32,
    ppid: Option<u32>,
    comm: String,
    exe: Option<String>,
    cmdline: Option<String>,
    uid: Option<u32>,
    user: Option<String>,
    start_time_unix_ns: Option<u64>,
    #[serde(default)]
    cgroup: Option<String>,
    #[serde(default)]
    cgroup_v1: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    container: Option<super::cgroup::Container>,
    #[serde(default)]
    pod: Option<super::cgroup::Pod>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    slice: Option<String>,
    since_ns: u64,
    source: Source,
}

impl From<StoredProcess> for ProcessInfo {
    fn from(s: StoredProcess) -> Self {
        let StoredProcess {
            id,
            pid,
            ppid,
            comm,
            exe,
            cmdline,
            uid,
            user,
            start_time_unix_ns,
            cgroup,
            cgroup_v1,
            container,
            pod,
            unit,
            slice,
            since_ns,
            source,
        } = s;
        let placement = Placement { cgroup, cgroup_v1: cgroup_v1.into(), container, pod, unit, slice };
        let cmdline = cmdline.map(Into::into);
        Self { id, pid, ppid, comm, exe, cmdline, uid, user, start_time_unix_ns, placement, since_ns, source }
    }
}

/// What procfs said of a process; each field is `None` if its read failed.
#[derive(Debug, Default)]
pub struct ProcRead {
    pub comm: Option<String>,
    pub ppid: Option<u32>,
    /// Start time after boot, ns (CLOCK_BOOTTIME).
    pub start_boot_ns: Option<u64>,
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    pub uid: Option<u32>,
    pub placement: Option<Placement>,
}

impl ProcRead {
    /// Read `/proc/PID`. `None` if the process is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let p = procfs::process::Process::new(pid as i32).ok()?;
        let mut r = ProcRead::default();
        // Stat first: it names the process every later read must be.
        let stat = p.stat().ok()?;
        r.comm = Some(stat.comm);
        r.ppid = u32::try_from(stat.ppid).ok();
        let tps = procfs::ticks_per_second().max(1);
        r.start_boot_ns = Some(stat.starttime.saturating_mul(1_000_000_000) / tps);
        r.uid = p.uid().ok();
        r.exe = p.exe().ok().map(|e| e.to_string_lossy().into_owned());
        r.cmdline = p.cmdline().ok().filter(|a| !a.is_empty()).map(|args| bounded(&args.join(" "), CMDLINE_MAX));
        r.placement = p.open_relative("cgroup").ok().and_then(|mut f| {
            let mut text = String::new();
            f.read_to_string(&mut text).ok()?;
            Some(parse_proc_cgroup(&text))
        });
        Some(r)
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Converts boot-relative times (procfs start times) to Unix time.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    /// Unix ns at boot.
    boot_unix_ns: u64,
}

impl BootClock {
    pub fn now() -> Self {
        let boot_unix_ns = clock_ns(libc::CLOCK_REALTIME).saturating_sub(clock_ns(libc::CLOCK_BOOTTIME));
        Self { boot_unix_ns }
    }

    pub fn unix_ns(&self, boot_ns: u64) -> u64 {
        self.boot_unix_ns + boot_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_process_reads_back_the_same() {
        let mut cgroup_v1 = std::collections::BTreeMap::new();
        cgroup_v1.insert("cpu,cpuacct".to_owned(), "/system.slice/x.service".to_owned());
        let p = ProcessInfo {
            id: 3,
            pid: 42,
            ppid: Some(1),
            comm: "x".into(),
            exe: Some("/usr/bin/x".into()),
            cmdline: Some("x --y".into()),
            uid: Some(0),
            user: Some("root".into()),
            start_time_unix_ns: Some(7),
            placement: Placement {
                cgroup: Some("/kubepods/pod0f1e/abc".into()),
                cgroup_v1: cgroup_v1.into(),
                container: Some(super::super::cgroup::Container { id: "abc".into(), runtime: "containerd".into() }),
                pod: Some(super::super::cgroup::Pod { uid: "0f1e".into(), qos: "burstable".into() }),
                unit: Some("x.service".into()),
                slice: Some("system.slice".into()),
            },
            since_ns: 9,
            source: Source::Fork,
        };
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""unit":"x.service""#), "placement is written inline: {text}");
        assert_eq!(serde_json::from_str::<ProcessInfo>(&text).unwrap(), p);
        // Placement fields are optional, and unknown ones are ignored, as before.
        let bare = r#"{"id":0,"pid":1,"comm":"init","since_ns":0,"source":"procfs","later":true}"#;
        let read: ProcessInfo = serde_json::from_str(bare).unwrap();
        assert_eq!((read.pid, read.placement), (1, Placement::default()));
    }

    #[test]
    fn reads_our_own_process() {
        let me = ProcRead::read(std::process::id()).expect("we are alive");
        assert!(me.exe.as_deref().is_some_and(|e| e.contains("tailprof")), "{:?}", me.exe);
        assert!(me.cmdline.is_some());
        assert!(me.start_boot_ns.is_some());
        assert!(me.placement.is_some_and(|p| p.cgroup.is_some() || !p.cgroup_v1.is_empty()));
        let start = BootClock::now().unix_ns(me.start_boot_ns.unwrap_or(0));
        let now = clock_ns(libc::CLOCK_REALTIME);
        assert!(start <= now && now - start < 3_600_000_000_000, "start {start} now {now}");
    }

    #[test]
    fn a_gone_process_reads_as_none() {
        // pid_max is at most 2^22: this pid never exists.
        assert!(ProcRead::read(u32::MAX / 2).is_none());
    }

    #[test]
    fn bounded_cuts_at_char_boundaries() {
        assert_eq!(bounded("héllo", 2), "h");
        assert_eq!(bounded("abc", 10), "abc");
    }
}
