//! Who a piece of a profile belongs to in a fleet backend: its service
//! (one series per service and kind) and the labels of that series.

use std::collections::BTreeMap;

use crate::{enrich::process::ProcessInfo, profile::Profile};

/// The name of the series holding kernel threads.
pub const KERNEL_SERVICE: &str = "kernel";

/// A series' identity, beside its kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Service {
    /// `service_name`: never empty, never `unknown_service`.
    pub name: String,
    /// Group labels: `unit`, `container_id`, `pod_uid`, where known.
    pub labels: BTreeMap<&'static str, String>,
}

/// The service of a process. A systemd service unit names it (`nginx`
/// from `nginx.service`); elsewhere, in containers and pods too, the
/// process's name does, which replicas share across hosts (container and
/// pod ids, which they do not share, are labels); kernel threads are one
/// service, [`KERNEL_SERVICE`].
pub fn service_of(p: Option<&ProcessInfo>) -> Service {
    let mut labels = BTreeMap::new();
    let Some(p) = p else { return Service { name: "unknown_process".into(), labels } };
    let placement = &p.placement;
    if let Some(u) = &placement.unit {
        labels.insert("unit", u.clone());
    }
    if let Some(c) = &placement.container {
        labels.insert("container_id", c.id.clone());
    }
    if let Some(pod) = &placement.pod {
        labels.insert("pod_uid", pod.uid.clone());
    }
    let unit = placement.unit.as_deref().and_then(|u| u.strip_suffix(".service")).filter(|u| !u.is_empty());
    let kernel = p.pid == 2 || p.ppid == Some(2);
    let name = match (unit, kernel) {
        (_, true) => KERNEL_SERVICE.to_owned(),
        (Some(u), _) => u.replace('@', "_"),
        (None, _) if !p.comm.is_empty() => p.comm.clone(),
        (None, _) => format!("pid-{}", p.pid),
    };
    if kernel {
        labels.clear();
    }
    Service { name, labels }
}

/// The processes (indices into `profile`'s process table) that have
/// stacks or off-CPU time, by their service.
pub fn services(profile: &Profile) -> BTreeMap<Service, std::collections::BTreeSet<u32>> {
    let mut out: BTreeMap<Service, std::collections::BTreeSet<u32>> = BTreeMap::new();
    let used: std::collections::BTreeSet<u32> =
        profile.stacks.iter().map(|s| s.process).chain(profile.off_cpu.iter().map(|s| s.process)).collect();
    for idx in used {
        out.entry(service_of(profile.process(idx))).or_default().insert(idx);
    }
    out
}
