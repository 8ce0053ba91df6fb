//! Where a process sits in the cgroup hierarchies, parsed from the text of
//! `/proc/PID/cgroup`.
//!
//! # Input
//!
//! Each line is `ID:CONTROLLERS:PATH`. The line `0::PATH` is the cgroup v2
//! (unified) path and becomes [`Placement::cgroup`]. Every other line with a
//! non-empty controller list is a v1 hierarchy and goes into
//! [`Placement::cgroup_v1`], keyed by the controller list exactly as written
//! (`"cpu,cpuacct"`, `"memory"`, `"name=systemd"`). Lines with a
//! non-numeric id, an empty controller list on a hierarchy other than 0, or a
//! path that does not start with `/` are skipped; garbage never panics and at
//! worst yields [`Placement::default()`]. The first line for a key wins.
//!
//! # Containers
//!
//! A container id is a run of at least 12 lowercase hex digits (normally 64).
//! It is looked for in every path, the v2 path first, then `name=systemd`,
//! then the other v1 hierarchies in key order; within one path the deepest
//! segment that names a container wins (so nested containers report the
//! innermost). Recognised segment namings, with or without a `.scope`
//! suffix:
//!
//! | segment | runtime |
//! |---|---|
//! | `docker-<id>` (e.g. `/system.slice/docker-<id>.scope`) | `docker` |
//! | `<id>` directly under a `docker` segment (`/docker/<id>`) | `docker` |
//! | `cri-containerd-<id>`, `containerd-<id>` | `containerd` |
//! | `<id>` anywhere below a `kubepods` segment (cgroupfs driver, `/kubepods/<qos>/pod<uid>/<id>`) | `containerd` |
//! | `crio-<id>`, `crio-conmon-<id>` (the conmon of that container: same id) | `cri-o` |
//! | `libpod-<id>`, `libpod-conmon-<id>` (e.g. `/machine.slice/libpod-<id>.scope/container`) | `podman` |
//! | `<id>` directly under a `libpod_parent` segment | `podman` |
//!
//! A bare hex segment anywhere else (e.g. `/process_api/e652…`) is not taken
//! for a container: without a known parent its runtime is unknowable.
//!
//! # Kubernetes pods
//!
//! Looked for in the same order as containers; the pod uid and QoS class
//! (`guaranteed`, `burstable`, `besteffort`) come from
//! - the systemd driver: a slice segment whose `-`-separated name contains
//!   `kubepods`, then optionally `burstable`/`besteffort`, then
//!   `pod<uid>` with `_` in place of `-` (converted back), e.g.
//!   `kubepods-burstable-pod0f1e…_….slice`; guaranteed pods have no QoS part
//!   (`kubepods-pod<uid>.slice`). Slices nested under other slices
//!   (`/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod<uid>.slice`)
//!   are covered.
//! - the cgroupfs driver: a `pod<uid>` segment directly under `kubepods`
//!   (guaranteed) or under `kubepods/burstable` / `kubepods/besteffort`.
//!
//! # systemd unit and slice
//!
//! The unit is the last segment ending in `.service`, `.scope`, `.socket`,
//! `.mount`, `.swap`, `.timer`, `.device`, `.target` or `.path`; the slice is
//! the last segment ending in `.slice`. Both come from the v2 path; when it
//! yields neither (absent, `/`, or not systemd-managed) they come from the
//! `name=systemd` v1 path. A container scope (`docker-<id>.scope`) counts as
//! a unit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a process sits in the cgroup hierarchies, and what that says about
/// its container, Kubernetes pod and systemd unit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(default)]
pub struct Placement {
    /// The cgroup v2 path (the `0::` line).
    pub cgroup: Option<String>,
    /// v1 controller list as written (`"cpu,cpuacct"`, `"name=systemd"`) to path.
    /// Shared: a fork's process generation starts as a copy of its
    /// parent's, and a v1 host lists ten hierarchies (1 KB a copy).
    pub cgroup_v1: std::sync::Arc<BTreeMap<String, String>>,
    pub container: Option<Container>,
    pub pod: Option<Pod>,
    /// The systemd unit (`nginx.service`, `docker-<id>.scope`).
    pub unit: Option<String>,
    /// The innermost systemd slice (`system.slice`).
    pub slice: Option<String>,
}

/// A container recognised from a cgroup path.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The id as found in the path (normally 64 hex digits).
    pub id: String,
    /// `docker`, `containerd`, `cri-o` or `podman`.
    pub runtime: String,
}

/// A Kubernetes pod recognised from a cgroup path.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// The pod uid with dashes (`0f1e2d3c-…`).
    pub uid: String,
    /// `guaranteed`, `burstable` or `besteffort`.
    pub qos: String,
}

/// The v1 key of systemd's named hierarchy.
const SYSTEMD_V1: &str = "name=systemd";

/// Shortest hex run taken for a container id.
const MIN_ID_LEN: usize = 12;

/// Segment prefixes that name a container, with their runtime. Longer
/// prefixes first where one extends another.
const PREFIXES: &[(&str, &str)] = &[
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("containerd-", "containerd"),
    ("crio-conmon-", "cri-o"),
    ("crio-", "cri-o"),
    ("libpod-conmon-", "podman"),
    ("libpod-", "podman"),
];

/// Suffixes of systemd unit names that can own a cgroup or appear in one.
const UNIT_SUFFIXES: &[&str] =
    &[".service", ".scope", ".socket", ".mount", ".swap", ".timer", ".device", ".target", ".path"];

/// Parses the text of `/proc/PID/cgroup`. Never fails: unreadable lines are
/// skipped.
pub fn parse_proc_cgroup(text: &str) -> Placement {
    let mut placement = Placement::default();
    for line in text.lines() {
        let Some((hierarchy, controllers, path)) = parse_line(line) else { continue };
        if hierarchy == 0 && controllers.is_empty() {
            placement.cgroup.get_or_insert_with(|| path.to_string());
        } else if !controllers.is_empty() {
            std::sync::Arc::make_mut(&mut placement.cgroup_v1)
                .entry(controllers.to_string())
                .or_insert_with(|| path.to_string());
        }
    }
    let paths = search_order(&placement);
    let container = paths.iter().find_map(|p| container_in_path(p));
    let pod = paths.iter().find_map(|p| pod_in_path(p));
    placement.container = container;
    placement.pod = pod;
    let (unit, slice) = systemd_paths(&placement)
        .map(unit_and_slice)
        .find(|(unit, slice)| unit.is_some() || slice.is_some())
        .unwrap_or_default();
    placement.unit = unit;
    placement.slice = slice;
    placement
}

/// The path that best names a process's cgroup: the v2 path, else the
/// `name=systemd` v1 path, else the v1 path of the hierarchy that has the
/// `cpu` controller (`"cpu"`, `"cpu,cpuacct"`); a path other than the root
/// `/` is preferred in that order.
pub fn cgroup_label(placement: &Placement) -> Option<&str> {
    // On hybrid hosts the v2 hierarchy often holds everything at its root:
    // a more specific v1 path says more.
    let candidates = [placement.cgroup.as_deref(), systemd_v1(placement), cpu_v1(placement)];
    let known = || candidates.into_iter().flatten();
    known().find(|p| *p != "/").or_else(|| known().next())
}

/// The container named by one cgroup path (absolute within its
/// hierarchy), if any: the deepest segment that names one.
pub fn container_in_path(path: &str) -> Option<Container> {
    let segments = segments(path);
    (0..segments.len()).rev().find_map(|i| container_in_segment(&segments[..i], segments[i]))
}

/// Splits one line into hierarchy id, controller list and path.
fn parse_line(line: &str) -> Option<(u32, &str, &str)> {
    let mut fields = line.splitn(3, ':');
    let hierarchy = fields.next()?.trim().parse().ok()?;
    let controllers = fields.next()?;
    let path = fields.next()?.trim_end_matches(['\r', '\n']);
    path.starts_with('/').then_some((hierarchy, controllers, path))
}

/// Every path of a placement in the order ids are searched: v2, then
/// `name=systemd`, then the other v1 hierarchies in key order.
fn search_order(placement: &Placement) -> Vec<&str> {
    let v1_others = placement.cgroup_v1.iter().filter(|(key, _)| *key != SYSTEMD_V1).map(|(_, path)| path.as_str());
    placement.cgroup.as_deref().into_iter().chain(systemd_v1(placement)).chain(v1_others).collect()
}

/// The paths systemd manages, in the order unit and slice are taken from.
fn systemd_paths(placement: &Placement) -> impl Iterator<Item = &str> {
    placement.cgroup.as_deref().into_iter().chain(systemd_v1(placement))
}

fn systemd_v1(placement: &Placement) -> Option<&str> {
    placement.cgroup_v1.get(SYSTEMD_V1).map(String::as_str)
}

/// The v1 path of the hierarchy with the `cpu` controller (not `cpuset`).
fn cpu_v1(placement: &Placement) -> Option<&str> {
    let mut v1 = placement.cgroup_v1.iter();
    v1.find(|(key, _)| key.split(',').any(|c| c == "cpu")).map(|(_, path)| path.as_str())
}

/// The non-empty segments of a path.
fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The container named by `segment`, whose ancestors are `parents`.
fn container_in_segment(parents: &[&str], segment: &str) -> Option<Container> {
    let name = segment.strip_suffix(".scope").unwrap_or(segment);
    let prefixed = PREFIXES
        .iter()
        .find_map(|(prefix, runtime)| name.strip_prefix(prefix).filter(|id| is_id(id)).map(|id| (id, *runtime)));
    let (id, runtime) = match prefixed {
        Some(found) => found,
        None if is_id(segment) => (segment, bare_id_runtime(parents)?),
        None => return None,
    };
    Some(Container { id: id.to_string(), runtime: runtime.to_string() })
}

/// The runtime of a bare hex segment, from where it sits.
fn bare_id_runtime(parents: &[&str]) -> Option<&'static str> {
    match parents.last() {
        Some(&"docker") => Some("docker"),
        Some(&"libpod_parent") => Some("podman"),
        _ if parents.contains(&"kubepods") => Some("containerd"),
        _ => None,
    }
}

/// Whether `s` looks like a container id: at least 12 lowercase hex digits.
fn is_id(s: &str) -> bool {
    s.len() >= MIN_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The Kubernetes pod named by one cgroup path, if any: the deepest
/// segment that names one.
fn pod_in_path(path: &str) -> Option<Pod> {
    let segments = segments(path);
    (0..segments.len())
        .rev()
        .find_map(|i| systemd_pod(segments[i]).or_else(|| cgroupfs_pod(&segments[..i], segments[i])))
}

/// A pod slice of the systemd cgroup driver:
/// `[prefix-]kubepods[-burstable|-besteffort]-pod<uid with _>.slice`.
fn systemd_pod(segment: &str) -> Option<Pod> {
    let name = segment.strip_suffix(".slice")?;
    let parts: Vec<&str> = name.split('-').collect();
    let kubepods = parts.iter().position(|p| *p == "kubepods")?;
    let (qos, pod) = match &parts[kubepods + 1..] {
        [pod] => ("guaranteed", *pod),
        [qos @ ("burstable" | "besteffort"), pod] => (*qos, *pod),
        _ => return None,
    };
    pod_from(pod.strip_prefix("pod")?.replace('_', "-"), qos)
}

/// A pod directory of the cgroupfs cgroup driver:
/// `kubepods/pod<uid>` or `kubepods/<qos>/pod<uid>`.
fn cgroupfs_pod(parents: &[&str], segment: &str) -> Option<Pod> {
    let uid = segment.strip_prefix("pod")?;
    let qos = match parents {
        [.., "kubepods"] => "guaranteed",
        [.., "kubepods", qos @ ("burstable" | "besteffort")] => qos,
        _ => return None,
    };
    pod_from(uid.to_string(), qos)
}

/// A pod if `uid` looks like one (hex digits and dashes, at least 8 long).
fn pod_from(uid: String, qos: &str) -> Option<Pod> {
    let valid = uid.len() >= 8 && uid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'));
    valid.then(|| Pod { uid, qos: qos.to_string() })
}

/// The last unit segment and the last slice segment of one path.
fn unit_and_slice(path: &str) -> (Option<String>, Option<String>) {
    let segments = segments(path);
    let last = |pred: &dyn Fn(&str) -> bool| segments.iter().rev().find(|s| pred(s)).map(|s| s.to_string());
    let unit = last(&|s| UNIT_SUFFIXES.iter().any(|suffix| s.len() > suffix.len() && s.ends_with(suffix)));
    let slice = last(&|s| s.len() > ".slice".len() && s.ends_with(".slice"));
    (unit, slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";
    const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    fn uid_underscored() -> String {
        UID.replace('-', "_")
    }

    fn container(id: &str, runtime: &str) -> Option<Container> {
        Some(Container { id: id.into(), runtime: runtime.into() })
    }

    fn pod(uid: &str, qos: &str) -> Option<Pod> {
        Some(Pod { uid: uid.into(), qos: qos.into() })
    }

    fn v2(path: &str) -> Placement {
        parse_proc_cgroup(&format!("0::{path}\n"))
    }

    #[test]
    fn this_machines_hybrid_layout() {
        let text = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n\
                    4:memory:/process_api/e652292aa137c82c7138b7e2ef6745ec\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let p = parse_proc_cgroup(text);
        assert_eq!(p.cgroup.as_deref(), Some("/"));
        assert_eq!(p.cgroup_v1.len(), 9);
        assert_eq!(p.cgroup_v1["memory"], "/process_api/e652292aa137c82c7138b7e2ef6745ec");
        assert_eq!(p.cgroup_v1["name=systemd"], "/");
        assert_eq!(p.container, None, "a bare hex segment under an unknown parent is no container");
        assert_eq!((p.pod, p.unit, p.slice), (None, None, None));
        assert_eq!(cgroup_label(&parse_proc_cgroup(text)), Some("/"));
    }

    #[test]
    fn pure_v2_systemd_service() {
        let p = v2("/system.slice/nginx.service");
        assert_eq!(p.cgroup.as_deref(), Some("/system.slice/nginx.service"));
        assert!(p.cgroup_v1.is_empty());
        assert_eq!(p.unit.as_deref(), Some("nginx.service"));
        assert_eq!(p.slice.as_deref(), Some("system.slice"));
        assert_eq!(p.container, None);
    }

    #[test]
    fn user_session_units() {
        let p = v2("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope");
        assert_eq!(p.unit.as_deref(), Some("app-gnome-firefox-1234.scope"));
        assert_eq!(p.slice.as_deref(), Some("app.slice"));
        let p = v2("/user.slice/user-1000.slice/session-3.scope");
        assert_eq!(p.unit.as_deref(), Some("session-3.scope"));
        assert_eq!(p.slice.as_deref(), Some("user-1000.slice"));
    }

    #[test]
    fn docker_systemd_driver() {
        let p = v2(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(p.container, container(ID, "docker"));
        assert_eq!(p.unit, Some(format!("docker-{ID}.scope")));
        assert_eq!(p.slice.as_deref(), Some("system.slice"));
        assert_eq!(container_in_path(&format!("docker-{ID}.scope")), container(ID, "docker"));
    }

    #[test]
    fn docker_cgroupfs_driver_on_v1() {
        let text = format!(
            "12:pids:/docker/{ID}\n4:cpu,cpuacct:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/system.slice/containerd.service\n"
        );
        let p = parse_proc_cgroup(&text);
        assert_eq!(p.container, container(ID, "docker"));
        assert_eq!(p.cgroup_v1["cpu,cpuacct"], format!("/docker/{ID}"));
        assert_eq!(p.unit.as_deref(), Some("containerd.service"), "unit comes from the v2 path first");
    }

    #[test]
    fn docker_in_docker_reports_the_innermost() {
        let inner = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111";
        assert_eq!(container_in_path(&format!("/docker/{ID}/docker/{inner}")), container(inner, "docker"));
    }

    #[test]
    fn short_ids_are_accepted_too_short_are_not() {
        assert_eq!(container_in_path("/docker/3f4e5a6b7c8d"), container("3f4e5a6b7c8d", "docker"));
        assert_eq!(container_in_path("/docker/3f4e5a6b7c8"), None);
        assert_eq!(container_in_path("/docker/3F4E5A6B7C8D9E0F"), None, "ids are lowercase");
        assert_eq!(container_in_path("/system.slice/docker-notanid.scope"), None);
        assert_eq!(container_in_path("/system.slice/docker.service"), None);
    }

    #[test]
    fn containerd_kubernetes_systemd_driver() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            uid_underscored()
        );
        let p = v2(&path);
        assert_eq!(p.container, container(ID, "containerd"));
        assert_eq!(p.pod, pod(UID, "burstable"));
        assert_eq!(p.unit, Some(format!("cri-containerd-{ID}.scope")));
        assert_eq!(p.slice, Some(format!("kubepods-burstable-pod{}.slice", uid_underscored())));
    }

    #[test]
    fn containerd_kubernetes_cgroupfs_driver() {
        let p = v2(&format!("/kubepods/burstable/pod{UID}/{ID}"));
        assert_eq!(p.container, container(ID, "containerd"));
        assert_eq!(p.pod, pod(UID, "burstable"));
        assert_eq!((p.unit, p.slice), (None, None));
        let p = v2(&format!("/kubepods/besteffort/pod{UID}/{ID}"));
        assert_eq!(p.pod, pod(UID, "besteffort"));
        let p = v2(&format!("/kubepods/pod{UID}/{ID}"));
        assert_eq!(p.pod, pod(UID, "guaranteed"));
        assert_eq!(p.container, container(ID, "containerd"));
    }

    #[test]
    fn pod_level_cgroup_has_pod_but_no_container() {
        let p = v2(&format!("/kubepods/burstable/pod{UID}"));
        assert_eq!(p.pod, pod(UID, "burstable"));
        assert_eq!(p.container, None);
    }

    #[test]
    fn containerd_scope_outside_kubernetes() {
        assert_eq!(container_in_path(&format!("/system.slice/containerd-{ID}.scope")), container(ID, "containerd"));
    }

    #[test]
    fn guaranteed_pod_systemd_driver() {
        let p = v2(&format!("/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{ID}.scope", uid_underscored()));
        assert_eq!(p.pod, pod(UID, "guaranteed"));
        assert_eq!(p.container, container(ID, "containerd"));
    }

    #[test]
    fn besteffort_pod_nested_under_kubelet_slice() {
        let u = uid_underscored();
        let p = v2(&format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
             kubelet-kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(p.pod, pod(UID, "besteffort"));
        assert_eq!(p.container, container(ID, "containerd"));
    }

    #[test]
    fn qos_slices_alone_are_no_pod() {
        assert_eq!(v2("/kubepods.slice/kubepods-burstable.slice").pod, None);
        assert_eq!(v2("/kubepods.slice").pod, None);
        assert_eq!(v2("/kubepods/burstable").pod, None);
    }

    #[test]
    fn static_pod_uid_without_dashes() {
        let p =
            v2("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6a8bd1e3c2f94e0bb1d2c3e4f5a6b7c8.slice");
        assert_eq!(p.pod, pod("6a8bd1e3c2f94e0bb1d2c3e4f5a6b7c8", "burstable"));
    }

    #[test]
    fn crio_systemd_driver_and_conmon() {
        let u = uid_underscored();
        let base = format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice");
        let p = v2(&format!("{base}/crio-{ID}.scope"));
        assert_eq!(p.container, container(ID, "cri-o"));
        assert_eq!(p.pod, pod(UID, "besteffort"));
        let p = v2(&format!("{base}/crio-conmon-{ID}.scope"));
        assert_eq!(p.container, container(ID, "cri-o"));
        assert_eq!(p.unit, Some(format!("crio-conmon-{ID}.scope")));
        let p = v2(&format!("{base}/crio-{ID}.scope/container"));
        assert_eq!(p.container, container(ID, "cri-o"));
    }

    #[test]
    fn crio_cgroupfs_driver() {
        let p = v2(&format!("/kubepods/burstable/pod{UID}/crio-{ID}"));
        assert_eq!(p.container, container(ID, "cri-o"));
        assert_eq!(p.pod, pod(UID, "burstable"));
    }

    #[test]
    fn podman_namings() {
        let p = v2(&format!("/machine.slice/libpod-{ID}.scope/container"));
        assert_eq!(p.container, container(ID, "podman"));
        assert_eq!(p.unit, Some(format!("libpod-{ID}.scope")));
        assert_eq!(p.slice.as_deref(), Some("machine.slice"));
        assert_eq!(container_in_path(&format!("/machine.slice/libpod-conmon-{ID}.scope")), container(ID, "podman"));
        assert_eq!(container_in_path(&format!("/libpod_parent/libpod-{ID}")), container(ID, "podman"));
        assert_eq!(container_in_path(&format!("/libpod_parent/{ID}")), container(ID, "podman"));
        let rootless = format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container");
        assert_eq!(container_in_path(&rootless), container(ID, "podman"));
    }

    #[test]
    fn container_is_found_in_v1_when_v2_has_none() {
        let text = format!("5:memory:/docker/{ID}\n1:name=systemd:/system.slice/docker.service\n0::/\n");
        let p = parse_proc_cgroup(&text);
        assert_eq!(p.container, container(ID, "docker"));
        assert_eq!(p.unit.as_deref(), Some("docker.service"), "unit falls back to name=systemd");
        assert_eq!(p.slice.as_deref(), Some("system.slice"));
    }

    #[test]
    fn v2_container_wins_over_v1() {
        let other = "bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222";
        let text = format!("1:name=systemd:/docker/{other}\n0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(parse_proc_cgroup(&text).container, container(ID, "docker"));
    }

    #[test]
    fn empty_and_garbage_input() {
        assert_eq!(parse_proc_cgroup(""), Placement::default());
        assert_eq!(parse_proc_cgroup("\n\n"), Placement::default());
        assert_eq!(parse_proc_cgroup("garbage\nx:y:z\n:::\n0:\n1:cpu\n-1:cpu:/a\n1::/a\n"), Placement::default());
        assert_eq!(parse_proc_cgroup("\u{0}\u{ff}::::::"), Placement::default());
        assert_eq!(cgroup_label(&Placement::default()), None);
    }

    #[test]
    fn trailing_newlines_and_crlf_do_not_leak_into_paths() {
        let p = parse_proc_cgroup("0::/system.slice/sshd.service\r\n");
        assert_eq!(p.cgroup.as_deref(), Some("/system.slice/sshd.service"));
        assert_eq!(p.unit.as_deref(), Some("sshd.service"));
        let p = parse_proc_cgroup("0::/system.slice/sshd.service");
        assert_eq!(p.cgroup.as_deref(), Some("/system.slice/sshd.service"), "no final newline");
    }

    #[test]
    fn paths_with_colons_are_kept_whole() {
        let p = parse_proc_cgroup("0::/weird:name/x.service\n");
        assert_eq!(p.cgroup.as_deref(), Some("/weird:name/x.service"));
    }

    #[test]
    fn first_line_per_key_wins() {
        let p = parse_proc_cgroup("0::/a\n0::/b\n3:cpu:/x\n4:cpu:/y\n");
        assert_eq!(p.cgroup.as_deref(), Some("/a"));
        assert_eq!(p.cgroup_v1["cpu"], "/x");
    }

    #[test]
    fn bare_unit_suffixes_are_not_units() {
        let p = v2("/.service/.slice");
        assert_eq!((p.unit, p.slice), (None, None));
    }

    #[test]
    fn every_unit_suffix_counts() {
        for unit in
            ["a.service", "a.scope", "a.socket", "a.mount", "a.swap", "a.timer", "a.device", "a.target", "a.path"]
        {
            assert_eq!(v2(&format!("/x.slice/{unit}")).unit.as_deref(), Some(unit));
        }
        assert_eq!(v2("/x.slice/a.other").unit, None);
    }

    #[test]
    fn label_prefers_v2_then_systemd_then_cpu() {
        let p = parse_proc_cgroup("4:cpuset:/s\n3:cpu,cpuacct:/c\n2:name=systemd:/n\n0::/v\n");
        assert_eq!(cgroup_label(&p), Some("/v"));
        let p = parse_proc_cgroup("4:cpuset:/s\n3:cpu,cpuacct:/c\n2:name=systemd:/n\n");
        assert_eq!(cgroup_label(&p), Some("/n"));
        let p = parse_proc_cgroup("4:cpuset:/s\n3:cpu,cpuacct:/c\n");
        assert_eq!(cgroup_label(&p), Some("/c"));
        let p = parse_proc_cgroup("4:cpuset:/s\n5:memory:/m\n");
        assert_eq!(cgroup_label(&p), None, "cpuset is not the cpu controller");
    }

    #[test]
    fn serde_round_trip_and_field_names() {
        let p = v2(&format!("/kubepods/burstable/pod{UID}/{ID}"));
        let json = serde_json::to_value(&p).expect("serialize");
        assert_eq!(json["container"]["runtime"], "containerd");
        assert_eq!(json["pod"]["qos"], "burstable");
        assert!(json["unit"].is_null());
        let back: Placement = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, p);
        let partial: Placement = serde_json::from_str(r#"{"cgroup":"/x"}"#).expect("missing fields default");
        assert_eq!(partial.cgroup.as_deref(), Some("/x"));
    }

    #[test]
    fn reads_own_proc_cgroup_without_panicking() {
        if let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") {
            let p = parse_proc_cgroup(&text);
            assert!(p.cgroup.is_some() || !p.cgroup_v1.is_empty());
        }
    }
}
