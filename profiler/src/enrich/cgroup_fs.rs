//! The mounted cgroup hierarchies and the cgroup directories in them that a
//! filter selects, so the filter can run in the kernel on cgroup ids.
//!
//! On cgroup v2 the inode number of a cgroup's directory is the id
//! `bpf_get_current_cgroup_id()` returns, so [`v2_ids`] turns a
//! [`CgroupMatch`] into the set of ids to accept. cgroup v1 has no such id;
//! [`v1_has_match`] only tells whether a filter selects anything there (the
//! caller then has to filter in user space).
//!
//! Directory walks are bounded to [`MAX_DEPTH`] levels and skip whatever
//! cannot be read: cgroups come and go while we walk.

use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::cgroup::container_in_path;

/// How deep a walk descends below a hierarchy's root.
pub const MAX_DEPTH: usize = 32;

/// The cgroup hierarchies mounted in our mount namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    /// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
    /// `/sys/fs/cgroup/unified` on hybrid systems).
    pub v2: Option<PathBuf>,
    /// Each v1 hierarchy: its controller list as `/proc/PID/cgroup` writes
    /// it (`"cpu"`, `"cpu,cpuacct"`, `"name=systemd"`) and its mount point.
    pub v1: Vec<(String, PathBuf)>,
}

/// Which cgroups a filter selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupMatch {
    /// The cgroup's path relative to the hierarchy root (`/system.slice/…`)
    /// starts with this string.
    PathPrefix(String),
    /// The container id recognised in the cgroup's path starts with this
    /// string.
    ContainerPrefix(String),
}

impl CgroupMatch {
    /// Whether the cgroup at `cgroup_path` (relative to its hierarchy root,
    /// with a leading `/`) is selected by itself, not counting ancestors.
    pub fn matches_path(&self, cgroup_path: &str) -> bool {
        match self {
            CgroupMatch::PathPrefix(prefix) => cgroup_path.starts_with(prefix.as_str()),
            CgroupMatch::ContainerPrefix(prefix) => {
                container_in_path(cgroup_path).is_some_and(|c| c.id.starts_with(prefix.as_str()))
            }
        }
    }
}

/// The cgroup mounts of this process's mount namespace, from
/// `/proc/self/mountinfo`; empty if it cannot be read.
pub fn mounts() -> Mounts {
    std::fs::read_to_string("/proc/self/mountinfo").map(|text| parse_mountinfo(&text)).unwrap_or_default()
}

/// Parses the text of a `mountinfo` file. Among several v2 mounts the first
/// that shows the hierarchy's root wins (else the first); among several
/// mounts of one v1 hierarchy the first wins.
pub fn parse_mountinfo(text: &str) -> Mounts {
    let mut mounts = Mounts::default();
    let mut v2_is_root = false;
    for entry in text.lines().filter_map(parse_mountinfo_line) {
        match entry.fstype {
            "cgroup2" if mounts.v2.is_none() || (!v2_is_root && entry.root == "/") => {
                v2_is_root = entry.root == "/";
                mounts.v2 = Some(entry.mount_point);
            }
            "cgroup" => {
                let controllers = v1_controllers(entry.super_options);
                if !controllers.is_empty() && !mounts.v1.iter().any(|(c, _)| *c == controllers) {
                    mounts.v1.push((controllers, entry.mount_point));
                }
            }
            _ => {}
        }
    }
    mounts
}

/// The inode numbers (= cgroup ids) of every directory of the v2 hierarchy
/// mounted at `mount` that `m` selects, and of all their descendants.
/// Paths are taken relative to `mount` with a leading `/` (the root is `/`).
pub fn v2_ids(mount: &Path, m: &CgroupMatch) -> Vec<u64> {
    let mut ids = Vec::new();
    let _ = walk(mount, "/", 0, false, m, &mut |dir| {
        if let Ok(meta) = std::fs::metadata(dir) {
            ids.push(meta.ino());
        }
        ControlFlow::Continue(())
    });
    ids
}

/// Whether any mounted v1 hierarchy has a directory that `m` selects.
pub fn v1_has_match(mounts: &Mounts, m: &CgroupMatch) -> bool {
    mounts.v1.iter().any(|(_, root)| walk(root, "/", 0, false, m, &mut |_| ControlFlow::Break(())).is_break())
}

/// One mountinfo line: the fields we need.
struct MountEntry<'a> {
    root: String,
    mount_point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

/// Parses `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS`.
fn parse_mountinfo_line(line: &str) -> Option<MountEntry<'_>> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let super_options = after.nth(1).unwrap_or("");
    Some(MountEntry { root: unescape(root), mount_point: PathBuf::from(unescape(mount_point)), fstype, super_options })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for `\`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, b| acc.wrapping_mul(8).wrapping_add(b - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v1 controllers among a cgroup mount's super options, comma-joined
/// in the order written (`"rw,cpu,cpuacct"` → `"cpu,cpuacct"`,
/// `"rw,xattr,name=systemd"` → `"name=systemd"`).
fn v1_controllers(super_options: &str) -> String {
    const CONTROLLERS: &[&str] = &[
        "cpuset",
        "cpu",
        "cpuacct",
        "blkio",
        "io",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "perf_event",
        "net_prio",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
        "debug",
    ];
    super_options.split(',').filter(|o| o.starts_with("name=") || CONTROLLERS.contains(o)).collect::<Vec<_>>().join(",")
}

/// Walks the directory `dir`, whose path relative to the hierarchy root is
/// `rel`, and its subdirectories, calling `found` on each one that is
/// selected by `m` or lies below a selected one (`inherited`). Stops early
/// when `found` breaks.
fn walk(
    dir: &Path,
    rel: &str,
    depth: usize,
    inherited: bool,
    m: &CgroupMatch,
    found: &mut dyn FnMut(&Path) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let selected = inherited || m.matches_path(rel);
    if selected {
        found(dir)?;
    }
    if depth >= MAX_DEPTH {
        return ControlFlow::Continue(());
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return ControlFlow::Continue(()) };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let child_rel = child_path(rel, &name.to_string_lossy());
        walk(&entry.path(), &child_rel, depth + 1, selected, m, found)?;
    }
    ControlFlow::Continue(())
}

/// `rel` joined with one more segment.
fn child_path(rel: &str, name: &str) -> String {
    if rel == "/" {
        format!("/{name}")
    } else {
        format!("{rel}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";

    /// This machine's cgroup lines of /proc/self/mountinfo, plus noise.
    const HYBRID: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_this_machines_hybrid_mounts() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let names: Vec<&str> = m.v1.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            names,
            ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "name=systemd"]
        );
        assert_eq!(m.v1[8].1, PathBuf::from("/sys/fs/cgroup/systemd"));
    }

    #[test]
    fn parses_systemd_style_mounts_with_generic_options() {
        let text = "\
25 18 0:22 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
26 18 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,name=systemd
30 18 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
31 18 0:28 / /sys/fs/cgroup/net_cls,net_prio rw shared:11 - cgroup cgroup rw,net_cls,net_prio
32 18 0:29 / /sys/fs/cgroup/cpuset rw shared:12 - cgroup cgroup rw,cpuset,clone_children
";
        let m = parse_mountinfo(text);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            m.v1,
            vec![
                ("name=systemd".to_string(), PathBuf::from("/sys/fs/cgroup/systemd")),
                ("cpu,cpuacct".to_string(), PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")),
                ("net_cls,net_prio".to_string(), PathBuf::from("/sys/fs/cgroup/net_cls,net_prio")),
                ("cpuset".to_string(), PathBuf::from("/sys/fs/cgroup/cpuset")),
            ]
        );
    }

    #[test]
    fn pure_v2_and_root_mount_preferred() {
        let text = "\
40 30 0:26 /docker/abc /mnt/sub rw - cgroup2 cgroup2 rw
41 30 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
42 30 0:26 / /mnt/again rw - cgroup2 cgroup2 rw
43 30 0:27 / /mnt/cpu2 rw - cgroup cgroup rw,cpu
44 30 0:27 / /mnt/cpu rw - cgroup cgroup rw,cpu
";
        let m = parse_mountinfo(text);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(m.v1, vec![("cpu".to_string(), PathBuf::from("/mnt/cpu2"))]);
    }

    #[test]
    fn escaped_mount_points() {
        let m = parse_mountinfo("41 31 0:38 / /mnt/with\\040space\\134x rw - cgroup2 cgroup2 rw\n");
        assert_eq!(m.v2, Some(PathBuf::from("/mnt/with space\\x")));
        assert_eq!(unescape("a\\04"), "a\\04", "a truncated escape stays as is");
        assert_eq!(unescape("\\999"), "\\999");
    }

    #[test]
    fn garbage_mountinfo() {
        assert_eq!(parse_mountinfo(""), Mounts::default());
        assert_eq!(parse_mountinfo("x\n - \n1 2 3 - cgroup2\n1 - \n - cgroup cgroup\n"), Mounts::default());
    }

    #[test]
    fn matches_path_prefix_and_container_prefix() {
        let docker = format!("/system.slice/docker-{ID}.scope");
        assert!(CgroupMatch::PathPrefix("/system.slice/docker-".into()).matches_path(&docker));
        assert!(!CgroupMatch::PathPrefix("/user.slice".into()).matches_path(&docker));
        assert!(CgroupMatch::ContainerPrefix("3f4e5a".into()).matches_path(&docker));
        assert!(CgroupMatch::ContainerPrefix(ID.into()).matches_path(&docker));
        assert!(!CgroupMatch::ContainerPrefix("3f4e5b".into()).matches_path(&docker));
        assert!(!CgroupMatch::ContainerPrefix("".into()).matches_path("/system.slice/sshd.service"));
    }

    /// Builds a fake v2 tree under a temporary directory.
    fn fake_tree(dirs: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        for d in dirs {
            std::fs::create_dir_all(root.path().join(d)).expect("mkdir");
        }
        std::fs::write(root.path().join("system.slice/cgroup.procs"), "").expect("file");
        root
    }

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).expect("metadata").ino()
    }

    fn sorted(mut v: Vec<u64>) -> Vec<u64> {
        v.sort_unstable();
        v
    }

    #[test]
    fn v2_ids_by_path_prefix() {
        let docker = format!("system.slice/docker-{ID}.scope");
        let tree = fake_tree(&["system.slice/sshd.service", &format!("{docker}/child"), "user.slice/user-1000.slice"]);
        let root = tree.path();
        let m = CgroupMatch::PathPrefix("/system.slice/docker-".into());
        let want = sorted(vec![ino(&root.join(&docker)), ino(&root.join(&docker).join("child"))]);
        assert_eq!(sorted(v2_ids(root, &m)), want);

        let all = v2_ids(root, &CgroupMatch::PathPrefix("/".into()));
        assert_eq!(all.len(), 7, "root, 2 slices, sshd, docker scope, child, user-1000");
        assert!(all.contains(&ino(root)));

        let slice = v2_ids(root, &CgroupMatch::PathPrefix("/system.slice".into()));
        assert_eq!(slice.len(), 4);
        assert!(v2_ids(root, &CgroupMatch::PathPrefix("/nope".into())).is_empty());
    }

    #[test]
    fn v2_ids_by_container_prefix_include_descendants() {
        let scope = format!("kubepods.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope");
        let tree = fake_tree(&[&format!("{scope}/sub/deeper"), "system.slice/sshd.service"]);
        let root = tree.path();
        let m = CgroupMatch::ContainerPrefix("3f4e5a6b".into());
        let want = sorted(vec![
            ino(&root.join(&scope)),
            ino(&root.join(&scope).join("sub")),
            ino(&root.join(&scope).join("sub/deeper")),
        ]);
        assert_eq!(sorted(v2_ids(root, &m)), want);
        assert!(v2_ids(root, &CgroupMatch::ContainerPrefix("ffff".into())).is_empty());
    }

    #[test]
    fn v2_ids_of_missing_mount_is_empty() {
        let m = CgroupMatch::PathPrefix("/".into());
        assert!(v2_ids(Path::new("/nonexistent/tailprof/cgroup"), &m).is_empty());
    }

    #[test]
    fn walk_depth_is_bounded() {
        let deep: Vec<String> = (0..MAX_DEPTH + 5).map(|i| format!("d{i}")).collect();
        let tree = fake_tree(&[&deep.join("/"), "system.slice"]);
        let ids = v2_ids(tree.path(), &CgroupMatch::PathPrefix("/d0".into()));
        assert_eq!(ids.len(), MAX_DEPTH);
    }

    #[test]
    fn v1_has_match_walks_v1_hierarchies() {
        let tree = fake_tree(&[&format!("docker/{ID}"), "system.slice"]);
        let mounts = Mounts { v2: None, v1: vec![("cpu".into(), tree.path().to_path_buf())] };
        assert!(v1_has_match(&mounts, &CgroupMatch::ContainerPrefix("3f4e".into())));
        assert!(v1_has_match(&mounts, &CgroupMatch::PathPrefix("/docker/".into())));
        assert!(!v1_has_match(&mounts, &CgroupMatch::ContainerPrefix("0000".into())));
        assert!(!v1_has_match(&Mounts::default(), &CgroupMatch::PathPrefix("/".into())));
    }

    /// Reads the real cgroup mounts (cgroup directories are world-readable).
    #[test]
    fn real_mountinfo_has_a_v2_mount() {
        let m = mounts();
        let v2 = m.v2.expect("a cgroup2 mount");
        let ids = v2_ids(&v2, &CgroupMatch::PathPrefix("/".into()));
        assert!(ids.contains(&ino(&v2)), "the root cgroup is in the walk");
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
        let placement = super::super::cgroup::parse_proc_cgroup(&own);
        let path = placement.cgroup.expect("a v2 path");
        let dir = v2.join(path.trim_start_matches('/'));
        let own_ids = v2_ids(&v2, &CgroupMatch::PathPrefix(path.clone()));
        assert!(own_ids.contains(&ino(&dir)), "our own cgroup {path} is found");
    }
}
