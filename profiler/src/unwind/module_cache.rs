//! Modules (ELF files and the vDSO) with their unwind tables, read once and
//! shared by every process that maps them.
//!
//! A mapping's file is opened through `/proc/PID/map_files/START-END`
//! (the very inode mapped, even if it was deleted or lives in another mount
//! namespace), else `/proc/PID/root/PATH` (checked to be the inode mapped).
//! Its identity (device, inode, size, mtime) finds it again without reading;
//! a file read for the first time is looked up by build id before its tables
//! are kept, so copies of one library in several containers share them.
//!
//! Memory is bounded twice: unwind sections over [`Limits::module_bytes`]
//! fail the module, and when the tables held would pass
//! [`Limits::total_bytes`] the modules no process maps any more are dropped
//! first, then the new module fails.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::unix::fs::{FileExt as _, MetadataExt as _},
    sync::Arc,
};

use framehop::ExplicitModuleSectionInfo;

use super::{
    elf::{read_unwind_info, ElfUnwindInfo},
    maps::{Backing, ExecMapping},
};

pub use crate::model::stats::ModuleFailure;

/// Memory bounds of the module cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest unwind tables (`.eh_frame` + `.eh_frame_hdr`, or
    /// `.debug_frame`) of one module, bytes.
    pub module_bytes: u64,
    /// Largest total of unwind tables held, bytes.
    pub total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { module_bytes: 64 << 20, total_bytes: 512 << 20 }
    }
}

/// Largest vDSO image read.
const VDSO_MAX_BYTES: u64 = 1 << 20;
/// Failures recorded in the stats at most (the rest are only logged).
const MAX_FAILURES: usize = 1024;

/// A module whose unwind information is loaded.
#[derive(Debug)]
pub struct Module {
    /// The path it was first read under.
    pub name: Arc<str>,
    pub info: ElfUnwindInfo,
}

impl Module {
    /// Whether it has CFI (otherwise framehop walks frame pointers in it).
    pub fn has_cfi(&self) -> bool {
        self.info.census.is_some()
    }

    /// Whether frame pointers walk its code as well as its CFI would (see
    /// [`super::frame_pointers`]).
    pub fn keeps_frame_pointers(&self) -> bool {
        self.info.census.is_none_or(|c| c.keeps_frame_pointers())
    }

    /// The framehop module for one executable mapping of this module, or
    /// `None` if the mapping's offset lies in no executable segment.
    pub fn framehop_module(&self, m: &ExecMapping) -> Option<framehop::Module<Arc<[u8]>>> {
        let bias = self.info.bias(m.start, m.end, m.offset)?;
        if bias > m.start {
            return None;
        }
        let info = &self.info;
        let svma = |s: &Option<super::elf::Section>| s.as_ref().map(|s| s.svma.clone());
        let data = |s: &Option<super::elf::Section>| s.as_ref().map(|s| Arc::clone(&s.data));
        let sections = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: info.text_svma.clone(),
            got_svma: info.got_svma.clone(),
            eh_frame_svma: svma(&info.eh_frame),
            eh_frame: data(&info.eh_frame),
            eh_frame_hdr_svma: svma(&info.eh_frame_hdr),
            eh_frame_hdr: data(&info.eh_frame_hdr),
            debug_frame: data(&info.debug_frame),
            ..ExplicitModuleSectionInfo::default()
        };
        Some(framehop::Module::new(m.name().to_owned(), m.start..m.end, bias, sections))
    }
}

/// What an executable mapping resolved to.
#[derive(Debug, Clone)]
pub enum Resolved {
    Module(Arc<Module>),
    /// A file whose unwind information could not be used (recorded in
    /// [`ModuleCache::failures`]).
    Failed,
    /// No file: JIT code, `[vsyscall]`.
    Anonymous,
}

/// Identity of an opened file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Loaded(u64),
    Failed,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ModuleCache {
    limits: Limits,
    modules: HashMap<u64, Arc<Module>>,
    next_id: u64,
    by_file: HashMap<FileId, Slot>,
    by_build_id: HashMap<Vec<u8>, u64>,
    bytes: usize,
    loaded: u64,
    failures: Vec<ModuleFailure>,
    failures_seen: HashSet<ModuleFailure>,
    /// Modules dropped because no process mapped them any more.
    evicted: u64,
}

impl ModuleCache {
    pub fn new(limits: Limits) -> Self {
        ModuleCache { limits, ..ModuleCache::default() }
    }

    /// Bytes of unwind tables held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Modules held now.
    pub fn held(&self) -> usize {
        self.modules.len()
    }

    /// Modules dropped so far because no process mapped them any more.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Between windows: drop the modules no address space holds (their
    /// processes exited); a program that runs again reads them again.
    pub fn trim(&mut self) -> u64 {
        self.evict_unused()
    }

    /// Modules read successfully (each file or vDSO image once).
    pub fn loaded(&self) -> u64 {
        self.loaded
    }

    pub fn failures(&self) -> &[ModuleFailure] {
        &self.failures
    }

    /// The module of executable mapping `m` of process `pid`, read if this
    /// is its first use.
    pub fn resolve(&mut self, pid: u32, m: &ExecMapping) -> Resolved {
        match &m.backing {
            Backing::Anonymous => Resolved::Anonymous,
            Backing::Vdso => self.resolve_vdso(pid, m),
            Backing::File { path, deleted } => self.resolve_file(pid, m, path, *deleted),
        }
    }

    fn resolve_file(&mut self, pid: u32, m: &ExecMapping, path: &Arc<str>, deleted: bool) -> Resolved {
        let map_files = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
        let file = match File::open(&map_files) {
            Ok(f) => f,
            Err(e) if deleted => {
                return self.fail(path, format!("deleted from disk and {map_files} unreadable ({e})"));
            }
            Err(e1) => {
                let root = format!("/proc/{pid}/root{path}");
                match File::open(&root).and_then(|f| f.metadata().map(|md| (f, md))) {
                    Ok((f, md)) if md.ino() == m.inode => f,
                    Ok(_) => return self.fail(path, "replaced on disk since it was mapped".into()),
                    Err(e2) => {
                        return self.fail(path, format!("cannot open it: {e1} (map_files), {e2} (/proc/PID/root)"))
                    }
                }
            }
        };
        let md = match file.metadata() {
            Ok(md) => md,
            Err(e) => return self.fail(path, format!("cannot stat it: {e}")),
        };
        let id =
            FileId { dev: md.dev(), ino: md.ino(), size: md.size(), mtime: md.mtime(), mtime_nsec: md.mtime_nsec() };
        match self.by_file.get(&id) {
            Some(Slot::Loaded(k)) => {
                if let Some(module) = self.modules.get(k) {
                    return Resolved::Module(Arc::clone(module));
                }
            }
            Some(Slot::Failed) => return Resolved::Failed,
            None => {}
        }
        let started = std::time::Instant::now();
        let read = {
            let cache = object::ReadCache::new(&file);
            read_unwind_info(&cache, self.limits.module_bytes)
        };
        tracing::debug!(path = %path, us = started.elapsed().as_micros() as u64, ok = read.is_ok(), "read unwind tables");
        match read {
            Ok(info) => match self.insert(path, info) {
                Ok(k) => {
                    self.by_file.insert(id, Slot::Loaded(k));
                    match self.modules.get(&k) {
                        Some(module) => Resolved::Module(Arc::clone(module)),
                        None => Resolved::Failed,
                    }
                }
                Err(reason) => self.fail(path, reason),
            },
            Err(e) => {
                self.by_file.insert(id, Slot::Failed);
                self.fail(path, e.to_string())
            }
        }
    }

    fn resolve_vdso(&mut self, pid: u32, m: &ExecMapping) -> Resolved {
        let name: Arc<str> = Arc::from("[vdso]");
        let len = m.end - m.start;
        if len > VDSO_MAX_BYTES {
            return self.fail(&name, format!("{len} bytes, larger than any vDSO"));
        }
        let mut image = vec![0u8; len as usize];
        let read = File::open(format!("/proc/{pid}/mem")).and_then(|f| f.read_exact_at(&mut image, m.start));
        if let Err(e) = read {
            return self.fail(&name, format!("cannot read it from /proc/PID/mem: {e}"));
        }
        match read_unwind_info(&image[..], self.limits.module_bytes) {
            Ok(info) => match self.insert(&name, info) {
                Ok(k) => match self.modules.get(&k) {
                    Some(module) => Resolved::Module(Arc::clone(module)),
                    None => Resolved::Failed,
                },
                Err(reason) => self.fail(&name, reason),
            },
            Err(e) => self.fail(&name, e.to_string()),
        }
    }

    /// Keep a module just read, or the one already kept with its build id.
    /// Errs with a reason when the cache is full.
    fn insert(&mut self, path: &Arc<str>, info: ElfUnwindInfo) -> Result<u64, String> {
        if let Some(k) = info.build_id.as_ref().and_then(|b| self.by_build_id.get(b)) {
            if self.modules.contains_key(k) {
                return Ok(*k);
            }
        }
        let bytes = info.bytes();
        if (self.bytes + bytes) as u64 > self.limits.total_bytes {
            self.evict_unused();
        }
        if (self.bytes + bytes) as u64 > self.limits.total_bytes {
            return Err(format!(
                "unwind tables of {bytes} bytes do not fit the {}-byte cache limit",
                self.limits.total_bytes
            ));
        }
        let k = self.next_id;
        self.next_id += 1;
        if let Some(b) = &info.build_id {
            self.by_build_id.insert(b.clone(), k);
        }
        self.bytes += bytes;
        self.loaded += 1;
        self.modules.insert(k, Arc::new(Module { name: Arc::clone(path), info }));
        Ok(k)
    }

    /// Drop the modules that no address space holds; returns how many.
    fn evict_unused(&mut self) -> u64 {
        let before = self.modules.len();
        self.modules.retain(|_, m| Arc::strong_count(m) > 1);
        if self.modules.len() == before {
            return 0;
        }
        let dropped = (before - self.modules.len()) as u64;
        self.evicted += dropped;
        self.bytes = self.modules.values().map(|m| m.info.bytes()).sum();
        let modules = &self.modules;
        self.by_file.retain(|_, s| match s {
            Slot::Loaded(k) => modules.contains_key(k),
            Slot::Failed => true,
        });
        self.by_build_id.retain(|_, k| modules.contains_key(k));
        tracing::debug!(dropped, "dropped unwind tables no process maps");
        dropped
    }

    fn fail(&mut self, path: &Arc<str>, reason: String) -> Resolved {
        let failure = ModuleFailure { path: path.to_string(), reason };
        if !self.failures_seen.contains(&failure) {
            tracing::debug!(path = %failure.path, reason = %failure.reason, "module unusable for unwinding");
            if self.failures.len() < MAX_FAILURES {
                self.failures_seen.insert(failure.clone());
                self.failures.push(failure);
            }
        }
        Resolved::Failed
    }
}
