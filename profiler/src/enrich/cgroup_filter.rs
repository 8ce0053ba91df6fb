//! `--cgroup` and `--container` in the kernel: the on-CPU sampler drops
//! samples whose cgroup v2 id is not in a map of selected cgroups.
//!
//! The kernel only knows a task's v2 cgroup id, so the filter goes into
//! the kernel only when the selection is decided by the v2 hierarchy: a
//! prefix that also matches a v1 directory is applied in user space
//! alone. Cgroups created during the capture (a container started later)
//! are added by a rescan once a second; samples taken before the rescan
//! that finds their cgroup are dropped. User space applies the same
//! selection to everything else (exact times, snapshots, off-CPU time).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::maps::{HashMap, MapData};
use rustc_hash::FxHashSet;

use super::cgroup_fs::{mounts, v1_has_match, v2_ids, CgroupMatch};
use crate::profile::Selection;

/// How often the v2 hierarchy is walked for new matching cgroups.
const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Where an in-kernel filter applies and what it selects at the start.
#[derive(Debug, Clone)]
pub struct Plan {
    mount: PathBuf,
    matcher: CgroupMatch,
    pub ids: Vec<u64>,
}

impl Plan {
    /// The in-kernel part of a selection, if it has one.
    pub fn for_selection(sel: &Selection) -> Option<Plan> {
        let matcher = match (&sel.cgroup, &sel.container) {
            (Some(prefix), None) => CgroupMatch::PathPrefix(prefix.clone()),
            (None, Some(prefix)) => CgroupMatch::ContainerPrefix(prefix.clone()),
            // Both: user space intersects them.
            _ => return None,
        };
        let mounts = mounts();
        let mount = mounts.v2.clone()?;
        if v1_has_match(&mounts, &matcher) {
            tracing::info!(?matcher, "the selection matches cgroup v1 directories: filtering in user space only");
            return None;
        }
        let ids = v2_ids(&mount, &matcher);
        if ids.is_empty() {
            tracing::warn!(?matcher, "no cgroup matches yet; samples are kept only once one does");
        }
        Some(Plan { mount, matcher, ids })
    }
}

/// The kernel's map of selected cgroups, kept up to date during the capture.
pub struct CgroupFilter {
    map: HashMap<MapData, u64, u8>,
    plan: Plan,
    known: FxHashSet<u64>,
    last_scan: Instant,
}

impl CgroupFilter {
    /// `map` already holds `plan.ids`.
    pub fn new(map: HashMap<MapData, u64, u8>, plan: Plan) -> Self {
        let known = plan.ids.iter().copied().collect();
        Self { map, plan, known, last_scan: Instant::now() }
    }

    /// Add cgroups created since the last scan, at most once per [`RESCAN_INTERVAL`].
    pub fn rescan_if_due(&mut self) {
        if self.last_scan.elapsed() < RESCAN_INTERVAL {
            return;
        }
        self.last_scan = Instant::now();
        for id in v2_ids(&self.plan.mount, &self.plan.matcher) {
            if self.known.insert(id) {
                if let Err(err) = self.map.insert(id, 1, 0) {
                    tracing::warn!(%err, id, "could not add a cgroup to the in-kernel filter");
                }
            }
        }
    }
}
