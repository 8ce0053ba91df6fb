//! What a deep capture is of: a process, a cgroup, a container, a systemd
//! unit or a Kubernetes pod, resolved on this host into the [`Selection`]
//! a capture runs with. A target that names nothing running here is an
//! error with a sentence, never an empty capture.

use serde::{Deserialize, Serialize};

use crate::{enrich::cgroup::parse_proc_cgroup, profile::Selection};

/// One of these names what to capture (none: the whole host).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// A cgroup path prefix, absolute within its hierarchy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// A container id prefix (12 hex digits or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// A systemd unit, e.g. `nginx.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// A Kubernetes pod: its uid, or its name (the `HOSTNAME` its
    /// containers run with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// A process name (comm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
}

impl Target {
    /// How many things it names (a capture takes at most one).
    fn named(&self) -> usize {
        [
            self.pid.is_some(),
            self.cgroup.is_some(),
            self.container.is_some(),
            self.unit.is_some(),
            self.pod.is_some(),
            self.comm.is_some(),
        ]
        .into_iter()
        .filter(|b| *b)
        .count()
    }

    /// The selection a capture of this target runs with, resolved against
    /// the processes running now.
    pub fn resolve(&self) -> Result<Selection, String> {
        if self.named() > 1 {
            return Err("name one of pid, cgroup, container, unit, pod or comm, not several".into());
        }
        let mut sel = Selection::default();
        if let Some(pid) = self.pid {
            sel.pids = vec![crate::preflight::resolve_pid(pid).map_err(|_| format!("pid {pid} is not running"))?];
        } else if let Some(c) = &self.cgroup {
            if !c.starts_with('/') {
                return Err(format!(
                    "cgroup '{c}' is not a path; give it from the hierarchy's root, like /system.slice"
                ));
            }
            sel.cgroup = Some(c.clone());
        } else if let Some(c) = &self.container {
            let id = c.rsplit("://").next().unwrap_or(c);
            if id.len() < 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("container '{c}' is not a container id (12 hex digits or more)"));
            }
            sel.container = Some(id.to_owned());
        } else if let Some(unit) = &self.unit {
            sel.cgroup = Some(unit_cgroup(unit).ok_or_else(|| format!("no process of unit '{unit}' runs here"))?);
        } else if let Some(pod) = &self.pod {
            sel.pids = pod_pids(pod);
            if sel.pids.is_empty() {
                return Err(format!("no process of pod '{pod}' runs here"));
            }
        } else if let Some(comm) = &self.comm {
            if !processes().any(|pid| comm_of(pid).as_deref() == Some(comm.as_str())) {
                return Err(format!("no process named '{comm}' runs here"));
            }
            sel.comm = Some(comm.clone());
        }
        Ok(sel)
    }

    /// Words for logs and the capture's listing.
    pub fn describe(&self) -> String {
        match self {
            Target { pid: Some(p), .. } => format!("pid {p}"),
            Target { cgroup: Some(c), .. } => format!("cgroup {c}"),
            Target { container: Some(c), .. } => format!("container {c}"),
            Target { unit: Some(u), .. } => format!("unit {u}"),
            Target { pod: Some(p), .. } => format!("pod {p}"),
            Target { comm: Some(c), .. } => format!("comm {c}"),
            _ => "the whole host".into(),
        }
    }
}

/// The group a process belongs to, as metrics and rules name groups: its
/// systemd unit, else its container, else its cgroup.
pub fn group_of(placement: &crate::enrich::cgroup::Placement) -> Option<Target> {
    if let Some(u) = &placement.unit {
        return Some(Target { unit: Some(u.clone()), ..Default::default() });
    }
    if let Some(c) = &placement.container {
        return Some(Target { container: Some(c.id.clone()), ..Default::default() });
    }
    placement.cgroup.as_ref().map(|c| Target { cgroup: Some(c.clone()), ..Default::default() })
}

impl Target {
    /// The group's label in metrics: the unit, the container id's first
    /// 12 digits, or the cgroup path.
    pub fn label(&self) -> String {
        match self {
            Target { unit: Some(u), .. } => u.clone(),
            Target { container: Some(c), .. } => c.chars().take(12).collect(),
            Target { cgroup: Some(c), .. } => c.clone(),
            other => other.describe(),
        }
    }
}

fn processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc").into_iter().flatten().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
}

fn comm_of(pid: u32) -> Option<String> {
    Some(std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim_end().to_owned())
}

/// The cgroup of a unit: the v2 path of one of its processes, cut after
/// the segment that names the unit (a service's sub-cgroups included).
fn unit_cgroup(unit: &str) -> Option<String> {
    processes().find_map(|pid| {
        let placement = parse_proc_cgroup(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?);
        if placement.unit.as_deref() != Some(unit) {
            return None;
        }
        let path = placement.cgroup?;
        let end = path.find(&format!("/{unit}"))? + unit.len() + 1;
        Some(path[..end].to_owned())
    })
}

/// The processes of a pod, by uid (from their cgroup) or by name (the
/// `HOSTNAME` Kubernetes gives its containers).
fn pod_pids(pod: &str) -> Vec<u32> {
    processes()
        .filter(|&pid| {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { return false };
            let Some(found) = parse_proc_cgroup(&text).pod else { return false };
            found.uid == pod
                || std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == format!("HOSTNAME={pod}").as_bytes()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_or_say_why_not() {
        let me = Target { pid: Some(std::process::id()), ..Default::default() };
        assert_eq!(me.resolve().unwrap().pids, vec![std::process::id()]);
        let gone = Target { pid: Some(u32::MAX - 1), ..Default::default() };
        assert!(gone.resolve().unwrap_err().contains("not running"));
        let two = Target { pid: Some(1), comm: Some("x".into()), ..Default::default() };
        assert!(two.resolve().unwrap_err().contains("not several"));
        let bad = Target { container: Some("nginx".into()), ..Default::default() };
        assert!(bad.resolve().unwrap_err().contains("not a container id"));
        let id = Target { container: Some("containerd://0123456789abcdef".into()), ..Default::default() };
        assert_eq!(id.resolve().unwrap().container.as_deref(), Some("0123456789abcdef"));
        let unit = Target { unit: Some("no-such-unit-here.service".into()), ..Default::default() };
        assert!(unit.resolve().unwrap_err().contains("no process of unit"));
        assert!(Target::default().resolve().unwrap().is_empty());
    }
}
