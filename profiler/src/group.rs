//! `--group-by`: the dimensions reports are sliced by. Each chosen
//! dimension becomes a root frame of every flamegraph and a key of the
//! `groups` table of summary.json.

use serde::Serialize;

use crate::{enrich::process::ProcessInfo, profile::STATE_NAMES};

pub use crate::query::dimension::{parse_group_by, Dimension, GroupBy, DIMENSIONS, NONE};

/// Characters of a container id shown in flamegraph frames, as docker does.
const SHORT_ID: usize = 12;

/// What one piece of time is known to belong to.
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'a> {
    pub process: Option<&'a ProcessInfo>,
    pub pid: u32,
    pub tid: u32,
    /// The thread's name.
    pub comm: &'a str,
    /// A `STATE_*`.
    pub state: u32,
    /// `NO_SYSCALL` outside one.
    pub syscall: i32,
    /// Architecture whose table names `syscall`.
    pub arch: &'a str,
}

impl Attrs<'_> {
    /// The full value of a dimension; `None` where it does not apply.
    pub fn value(&self, d: Dimension) -> Option<String> {
        let p = self.process;
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        match d {
            Dimension::Comm => nonempty(self.comm),
            Dimension::Process => p.and_then(|p| nonempty(&p.comm)),
            Dimension::Pid => Some(self.pid.to_string()),
            Dimension::Tid => Some(self.tid.to_string()),
            Dimension::User => p.and_then(|p| p.user.clone().or_else(|| p.uid.map(|u| u.to_string()))),
            Dimension::Cgroup => p.and_then(|p| crate::enrich::cgroup::cgroup_label(&p.placement).map(str::to_owned)),
            Dimension::Container => p.and_then(|p| p.placement.container.as_ref()).map(|c| c.id.clone()),
            Dimension::Pod => p.and_then(|p| p.placement.pod.as_ref()).map(|pod| pod.uid.clone()),
            Dimension::Unit => p.and_then(|p| p.placement.unit.clone().or_else(|| p.placement.slice.clone())),
            Dimension::State => Some(STATE_NAMES.get(self.state as usize).copied().unwrap_or("other").to_owned()),
            Dimension::Syscall => (self.syscall >= 0).then(|| crate::profile::syscall_name(self.syscall)),
        }
    }
}

impl<'a> Attrs<'a> {
    /// What an on-CPU stack of `profile` belongs to.
    pub fn of_stack(profile: &'a crate::profile::Profile, s: &'a crate::profile::Stack) -> Self {
        let state = profiler_common::STATE_RUNNING;
        let (pid, tid, syscall, arch) = (s.pid, s.tid, s.syscall, profile.arch.as_str());
        Self { process: profile.process(s.process), pid, tid, comm: &s.comm, state, syscall, arch }
    }

    /// What an off-CPU aggregate of `profile` belongs to.
    pub fn of_off_cpu(profile: &'a crate::profile::Profile, s: &'a crate::profile::OffCpuStack) -> Self {
        Self {
            process: profile.process(s.process),
            pid: s.pid,
            tid: s.tid,
            comm: &s.comm,
            state: s.state,
            syscall: s.syscall,
            arch: &profile.arch,
        }
    }
}

impl GroupBy {
    pub fn has(&self, d: Dimension) -> bool {
        self.0.contains(&d)
    }

    /// The group's key: one value per dimension (`[none]` where none applies).
    pub fn key(&self, a: &Attrs) -> Vec<String> {
        self.0.iter().map(|&d| a.value(d).unwrap_or_else(|| NONE.to_owned())).collect()
    }

    /// Root frames of a folded line, `;`-separated, without a trailing `;`.
    pub fn frames(&self, a: &Attrs) -> String {
        let frames: Vec<String> = self.0.iter().map(|&d| frame(d, a)).collect();
        frames.join(";")
    }
}

/// How a dimension's value is shown as a flamegraph frame.
fn frame(d: Dimension, a: &Attrs) -> String {
    let clean = crate::model::text::clean;
    match (d, a.value(d)) {
        (Dimension::Comm, Some(v)) => clean(&v),
        (Dimension::Comm, None) => "[unknown]".to_owned(),
        (Dimension::State, Some(v)) => format!("[{v}]"),
        (Dimension::Container, Some(v)) => format!("container={}", &v[..v.len().min(SHORT_ID)]),
        (d, v) => format!("{d}={}", clean(v.as_deref().unwrap_or(NONE))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse_group_by("comm").unwrap(), GroupBy::default());
        assert_eq!(
            parse_group_by("container, pod,state").unwrap().0,
            vec![Dimension::Container, Dimension::Pod, Dimension::State]
        );
        let err = parse_group_by("comm,bogus").unwrap_err();
        assert!(err.contains("unknown --group-by dimension 'bogus'; valid: comm, process, pid, tid"), "{err}");
        assert!(parse_group_by("pid,pid").unwrap_err().contains("twice"));
        assert!(parse_group_by("").is_err());
    }

    #[test]
    fn frames_and_keys() {
        let mut p = ProcessInfo { pid: 7, comm: "nginx".into(), ..Default::default() };
        p.placement.container =
            Some(crate::enrich::cgroup::Container { id: "0123456789abcdef".into(), runtime: "docker".into() });
        let a = Attrs { process: Some(&p), pid: 7, tid: 8, comm: "worker;1", state: 2, syscall: -1, arch: "x86_64" };
        let g = parse_group_by("container,pod,state,comm,syscall,pid").unwrap();
        assert_eq!(g.frames(&a), "container=0123456789ab;pod=[none];[sleeping];worker:1;syscall=[none];pid=7");
        assert_eq!(g.key(&a), vec!["0123456789abcdef", NONE, "sleeping", "worker;1", NONE, "7"]);
    }
}

/// Totals of one group: a `groups[]` entry of summary.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupTotal {
    /// Dimension name to value, for every chosen dimension.
    pub key: serde_json::Map<String, serde_json::Value>,
    /// Threads (per process generation) with any time in the group.
    pub threads: u64,
    pub on_cpu_samples: u64,
    /// Exact on-CPU ns (absent with --no-off-cpu, and when grouped by
    /// syscall: exact on-CPU time is kept per thread, not per syscall).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_cpu_ns: Option<u64>,
    /// Exact off-CPU ns by state (absent with --no-off-cpu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_cpu_ns: Option<crate::profile::OffCpuNs>,
    /// Thread-state snapshots by state (absent with --no-off-cpu, and when
    /// grouped by syscall).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_samples: Option<crate::profile::StateSamples>,
}

/// The group of `a`, created empty if new. `exact`: the capture has exact
/// times; `per_thread`: per-thread exact totals can be split by this grouping.
fn group_entry<'t>(
    totals: &'t mut Totals,
    g: &GroupBy,
    per_thread: bool,
    exact: bool,
    a: &Attrs,
) -> &'t mut GroupTotal {
    let key = g.key(a);
    let e = totals.entry(key.clone()).or_insert_with(|| {
        let mut t = GroupTotal::default();
        for (d, v) in g.0.iter().zip(key) {
            t.key.insert(d.name().to_owned(), serde_json::Value::String(v));
        }
        if exact {
            t.off_cpu_ns = Some(Default::default());
        }
        if per_thread {
            t.on_cpu_ns = Some(0);
            t.state_samples = Some(Default::default());
        }
        (t, Default::default())
    });
    e.1.insert((a.process.map_or(u32::MAX, |p| p.id), a.tid));
    &mut e.0
}

/// Groups by key, with the (process, tid) pairs seen in each.
type Totals = std::collections::BTreeMap<Vec<String>, (GroupTotal, std::collections::BTreeSet<(u32, u32)>)>;

/// Totals of every group of `profile.group_by`, most wall-clock time first.
pub fn groups(profile: &crate::profile::Profile) -> Vec<GroupTotal> {
    use std::collections::BTreeMap;

    use profiler_common::{NO_SYSCALL, STATE_DISK, STATE_OTHER, STATE_RUNNABLE, STATE_RUNNING, STATE_SLEEPING};

    let g = &profile.group_by;
    let exact = profile.state_hz > 0;
    let by_syscall = g.has(Dimension::Syscall);
    let mut totals: Totals = BTreeMap::new();
    let per_thread = exact && !by_syscall;
    for s in &profile.stacks {
        let a = Attrs::of_stack(profile, s);
        group_entry(&mut totals, g, per_thread, exact, &a).on_cpu_samples += s.count;
    }
    // Grouped by thread-level dimensions only, off-CPU time comes from the
    // per-thread totals, so that groups add up to `threads[]` exactly; by
    // state or syscall, from the kernel's aggregates, which split it so.
    let thread_level = per_thread && !g.has(Dimension::State);
    for s in profile.off_cpu.iter().filter(|_| !thread_level) {
        let a = Attrs::of_off_cpu(profile, s);
        if let Some(off) = group_entry(&mut totals, g, per_thread, exact, &a).off_cpu_ns.as_mut() {
            match s.state {
                STATE_RUNNABLE => off.runnable += s.ns,
                STATE_SLEEPING => off.sleeping += s.ns,
                STATE_DISK => off.disk += s.ns,
                _ => off.other += s.ns,
            }
        }
    }
    if exact && !by_syscall {
        let thread = |tid: u32, tgid: u32, state: u32| Attrs {
            process: profile.thread_process.get(&tid).and_then(|&id| profile.process(id)),
            pid: tgid,
            tid,
            comm: profile.thread_name(tid),
            state,
            syscall: NO_SYSCALL,
            arch: &profile.arch,
        };
        for (&tid, t) in &profile.thread_times {
            let e = group_entry(&mut totals, g, per_thread, exact, &thread(tid, t.tgid, STATE_RUNNING));
            if let Some(ns) = e.on_cpu_ns.as_mut() {
                *ns += t.on_cpu_ns;
            }
            if let (true, Some(off)) = (thread_level, e.off_cpu_ns.as_mut()) {
                let [runnable, sleeping, disk, other] = t.off_cpu_ns;
                off.runnable += runnable;
                off.sleeping += sleeping;
                off.disk += disk;
                off.other += other;
            }
        }
        for (&tid, (tgid, s)) in &profile.state_samples {
            let split = g.has(Dimension::State);
            let parts = [
                (STATE_RUNNING, s.running),
                (STATE_RUNNABLE, s.runnable),
                (STATE_SLEEPING, s.sleeping),
                (STATE_DISK, s.disk),
                (STATE_OTHER, s.other),
            ];
            for (state, n) in parts {
                if n == 0 && (split || state != STATE_RUNNING) {
                    continue;
                }
                let e = group_entry(&mut totals, g, per_thread, exact, &thread(tid, *tgid, state));
                if let Some(out) = e.state_samples.as_mut() {
                    let slot = match state {
                        STATE_RUNNING => &mut out.running,
                        STATE_RUNNABLE => &mut out.runnable,
                        STATE_SLEEPING => &mut out.sleeping,
                        STATE_DISK => &mut out.disk,
                        _ => &mut out.other,
                    };
                    *slot += n;
                }
            }
        }
    }
    let mut out: Vec<GroupTotal> = totals
        .into_values()
        .map(|(mut t, threads)| {
            t.threads = threads.len() as u64;
            t
        })
        .collect();
    let wall = |t: &GroupTotal| {
        let off = t.off_cpu_ns.map_or(0, |o| o.runnable + o.sleeping + o.disk + o.other);
        t.on_cpu_ns.unwrap_or(t.on_cpu_samples * profile.period_ns()) + off
    };
    out.sort_by_key(|t| std::cmp::Reverse(wall(t)));
    out
}
