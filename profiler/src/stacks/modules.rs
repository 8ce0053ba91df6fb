//! Modules (executables and shared objects) that user frames point into,
//! and how to read each one at the end of the capture.
//!
//! A module is one file: its path as the process sees it plus the file's
//! identity (device and inode), so a binary replaced at the same path, or
//! a container's copy of a library, is a module of its own. When the file
//! at that path on the host is the mapped file, the path is read at the end.
//! Otherwise (deleted, replaced, another mount namespace) the mapped file is
//! opened through `/proc/PID/map_files/START-END` when first seen, while the
//! process lives, and the descriptor is kept so it still resolves at the end.

use std::{
    collections::HashMap,
    fs::File,
    os::unix::fs::MetadataExt,
    os::unix::io::AsRawFd,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::perf_map::PerfMaps;
use crate::enrich::maps::{Mapping, MappingKind};
use crate::profile::Module;

/// Where a module's bytes are read from at the end.
#[derive(Debug, Clone)]
enum Source {
    /// The file at this path is the mapped file (checked by device and inode).
    Path {
        path: PathBuf,
        id: Option<FileId>,
    },
    /// The mapped file itself, held open.
    Held(Arc<File>),
    Unreadable(String),
}

/// Device and inode, as `stat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        Ok(Self { dev: m.dev(), ino: m.ino() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    path: PathBuf,
    inode: u64,
    deleted: bool,
}

/// Where a module was first seen: enough to open it again while its
/// process lives.
#[derive(Debug, Clone, Copy)]
struct FirstSeen {
    pid: u32,
    start: u64,
    end: u64,
}

/// Modules seen so far, and the perf maps of processes with JIT code.
#[derive(Debug, Default)]
pub struct ModuleTable {
    by_key: HashMap<Key, usize>,
    /// Readable modules by build id: a file with the same build id has the
    /// same contents, so it is read from there without another descriptor.
    by_build_id: HashMap<String, usize>,
    pub modules: Vec<Module>,
    sources: Vec<Source>,
    first_seen: Vec<FirstSeen>,
    /// Descriptors held open, and how many may be.
    held: usize,
    held_budget: Option<usize>,
    pub perf_maps: PerfMaps,
}

impl ModuleTable {
    /// The module of a file mapping of live process `pid`; `None` for
    /// mappings that are not files.
    pub fn intern(&mut self, pid: u32, mapping: &Mapping) -> Option<usize> {
        let MappingKind::File { path, deleted } = &mapping.kind else { return None };
        let key = Key { path: path.clone(), inode: mapping.inode, deleted: *deleted };
        if let Some(&id) = self.by_key.get(&key) {
            return Some(id);
        }
        let source = self.locate(pid, mapping, path, *deleted);
        let build_id = match &source {
            Source::Path { path, .. } => read_build_id(path),
            Source::Held(f) => read_build_id(&fd_path(f)),
            Source::Unreadable(_) => None,
        };
        let id = self.modules.len();
        // Same contents already readable: share its source.
        let source = match build_id.as_ref().and_then(|b| self.by_build_id.get(b)) {
            Some(&other) if matches!(source, Source::Held(_)) => {
                self.held -= 1;
                self.sources[other].clone()
            }
            _ => source,
        };
        if let Some(b) = &build_id {
            if !matches!(source, Source::Unreadable(_)) {
                self.by_build_id.entry(b.clone()).or_insert(id);
            }
        }
        self.modules.push(Module::new(path.to_string_lossy().into_owned(), build_id));
        self.sources.push(source);
        self.first_seen.push(FirstSeen { pid, start: mapping.start, end: mapping.end });
        self.by_key.insert(key, id);
        Some(id)
    }

    fn locate(&mut self, pid: u32, mapping: &Mapping, path: &Path, deleted: bool) -> Source {
        let map_file = mapping.map_file(pid);
        let mapped = FileId::of(&map_file).ok();
        if !deleted {
            if let Ok(on_disk) = FileId::of(path) {
                // Without map_files (no CAP_SYS_ADMIN) the inode alone decides.
                if mapped.map_or(on_disk.ino == mapping.inode, |m| m == on_disk) {
                    return Source::Path { path: path.to_owned(), id: Some(on_disk) };
                }
            }
        }
        if self.held >= *self.held_budget.get_or_insert_with(held_budget) {
            // Readable while the process lives.
            let root =
                Path::new("/proc").join(pid.to_string()).join("root").join(path.strip_prefix("/").unwrap_or(path));
            tracing::debug!(path = %path.display(), "too many modules held open; reading this one through /proc/PID/root");
            return Source::Path { path: root, id: mapped };
        }
        match File::open(&map_file) {
            Ok(f) => {
                self.held += 1;
                Source::Held(Arc::new(f))
            }
            Err(err) => {
                let why = if deleted { "it was deleted" } else { "the file at its path is another one" };
                Source::Unreadable(format!("{why}, and {} could not be opened: {err}", map_file.display()))
            }
        }
    }

    /// At the end of the capture, while most processes still live: a
    /// module read by path whose file was replaced since it was first seen
    /// is opened through its mapping instead, if that still exists.
    pub fn seal(&mut self) {
        for (i, source) in self.sources.iter_mut().enumerate() {
            let Source::Path { path, id: Some(id) } = source else { continue };
            if FileId::of(path).ok() == Some(*id) {
                continue;
            }
            let seen = self.first_seen[i];
            let map_file = Mapping {
                start: seen.start,
                end: seen.end,
                offset: 0,
                dev: (0, 0),
                inode: 0,
                kind: MappingKind::Other,
            }
            .map_file(seen.pid);
            *source = match File::open(&map_file) {
                Ok(f) if f.metadata().is_ok_and(|m| FileId { dev: m.dev(), ino: m.ino() } == *id) => {
                    Source::Held(Arc::new(f))
                }
                _ => Source::Unreadable(format!(
                    "{} was replaced during the capture and its process is gone",
                    path.display()
                )),
            };
        }
        self.perf_maps.refresh_all();
    }

    /// A path to read module `id` from (possibly `/proc/self/fd/N`), or why
    /// it cannot be read.
    pub fn source(&self, id: usize) -> Result<PathBuf, String> {
        match self.sources.get(id) {
            Some(Source::Path { path, .. }) => Ok(path.clone()),
            Some(Source::Held(f)) => Ok(fd_path(f)),
            Some(Source::Unreadable(why)) => Err(why.clone()),
            None => Err("unknown module".into()),
        }
    }
}

/// The path that reopens a held file, even a deleted one.
fn fd_path(f: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

fn read_build_id(path: &Path) -> Option<String> {
    crate::enrich::elf::ElfFile::read(path).ok()?.build_id_hex()
}

/// Descriptors modules may hold: half the open-file limit, raised to its
/// hard limit first (at most 65536).
fn held_budget() -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 256;
        }
        let want = lim.rlim_max.min(65536);
        if lim.rlim_cur < want {
            let raised = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = want;
            }
        }
    }
    (lim.rlim_cur / 2).clamp(64, 32768) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::maps::AddressSpace;

    /// The mapping of this test binary's code.
    fn own_code() -> Mapping {
        let space = AddressSpace::read(std::process::id()).unwrap();
        space.find(own_code as *const () as usize as u64).unwrap().clone()
    }

    #[test]
    fn a_file_at_its_path_is_read_by_path() {
        let mut t = ModuleTable::default();
        let m = own_code();
        let id = t.intern(std::process::id(), &m).unwrap();
        assert_eq!(t.intern(std::process::id(), &m), Some(id));
        let MappingKind::File { path, .. } = &m.kind else { panic!("{m:?}") };
        assert_eq!(t.source(id).unwrap(), *path);
        assert!(t.modules[id].build_id.is_some());
        assert_eq!(t.held, 0);
    }

    #[test]
    fn a_replaced_file_is_held_open_through_map_files() {
        // Pretend the mapped file sits at another path, where another file is.
        let other = tempfile::NamedTempFile::new().unwrap();
        let mut m = own_code();
        m.kind = MappingKind::File { path: other.path().to_owned(), deleted: false };
        let mut t = ModuleTable::default();
        let id = t.intern(std::process::id(), &m).unwrap();
        assert!(
            std::fs::metadata(m.map_file(std::process::id())).is_ok(),
            "/proc/self/map_files needs CAP_SYS_ADMIN: run the tests as root (cargo xtask test does)"
        );
        let path = t.source(id).unwrap();
        assert!(path.starts_with("/proc/self/fd"), "{}", path.display());
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read("/proc/self/exe").unwrap());
        // The same file under its own path shares nothing but contents.
        let own = t.intern(std::process::id(), &own_code()).unwrap();
        assert_ne!(own, id);
        assert_eq!(t.modules[own].build_id, t.modules[id].build_id);
    }

    #[test]
    fn a_deleted_file_whose_mapping_is_gone_is_unreadable() {
        let mut t = ModuleTable::default();
        let m = Mapping {
            start: 0x1000,
            end: 0x2000,
            offset: 0,
            dev: (0, 0),
            inode: 1,
            kind: MappingKind::File { path: "/nonexistent/app".into(), deleted: true },
        };
        let id = t.intern(std::process::id(), &m).unwrap();
        let err = t.source(id).unwrap_err();
        assert!(err.contains("deleted") && err.contains("map_files"), "{err}");
        assert_eq!(t.intern(std::process::id(), &Mapping { kind: MappingKind::Anonymous, ..m }), None);
    }
}
