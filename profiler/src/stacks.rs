//! Aggregation of raw samples as they arrive. User addresses are
//! normalized to (module, file offset) the first time a stack is seen,
//! while its process still lives, so that processes which exit during the
//! capture can still be symbolized at the end.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use rustc_hash::FxHashMap;

use blazesym::normalize::{NormalizeOpts, Normalizer, UserMeta};
use profiler_common::{SampleEvent, TASK_COMM_LEN};

use crate::profile::Module;

/// A user frame after normalization.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserFrame {
    /// Inside a known ELF module at this file offset.
    InModule { module: usize, offset: u64 },
    /// Named directly by the normalizer (for example the vDSO).
    Named { name: Arc<str> },
    /// The address belongs to no mapping we could read.
    Unknown { addr: u64 },
}

/// Modules seen so far, interned by path.
#[derive(Debug, Default)]
pub struct ModuleTable {
    by_path: HashMap<PathBuf, usize>,
    pub modules: Vec<Module>,
}

impl ModuleTable {
    /// The module's id; its build id is read once, when first seen.
    fn intern(&mut self, path: &std::path::Path) -> usize {
        if let Some(&id) = self.by_path.get(path) {
            return id;
        }
        let build_id = blazesym::helper::read_elf_build_id(path)
            .ok()
            .flatten()
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect());
        let id = self.modules.len();
        self.modules.push(Module { path: path.to_string_lossy().into_owned(), build_id });
        self.by_path.insert(path.to_owned(), id);
        id
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RawKey {
    pid: u32,
    tid: u32,
    process: u32,
    syscall: i32,
    comm: [u8; TASK_COMM_LEN],
    kstack: Box<[u64]>,
    ustack: Box<[u64]>,
}

/// A unique (thread, kernel stack, user stack) and its sample count.
/// Stacks are innermost first, as the kernel returns them.
#[derive(Debug, Clone)]
pub struct AggregatedStack {
    pub pid: u32,
    pub tid: u32,
    /// Process generation (see `enrich::processes`).
    pub process: u32,
    pub syscall: i32,
    pub comm: String,
    pub kstack: Box<[u64]>,
    pub ustack: Box<[UserFrame]>,
    pub count: u64,
}

/// Collects samples into unique stacks.
pub struct StackAggregator {
    /// Reads each process's memory map once and keeps it for the capture.
    cached: Normalizer,
    /// Reads the map afresh: used when the cached map misses an address
    /// (a library loaded after the process was first seen).
    fresh: Normalizer,
    modules: ModuleTable,
    /// When each process's map was last read afresh; bounds re-reads to
    /// one per process per [`FRESH_MAP_INTERVAL`], since stacks of code
    /// without frame pointers often hold addresses no map contains.
    last_fresh: HashMap<u32, std::time::Instant>,
    /// Normalized frames by (pid, lookup address): most stacks share their
    /// callers, so only new addresses reach the normalizer.
    frames: FxHashMap<(u32, u64), UserFrame>,
    /// Keyed by whole raw stacks: a fast non-cryptographic hash matters here.
    stacks: FxHashMap<RawKey, (Box<[UserFrame]>, u64)>,
    samples: u64,
}

/// Minimum time between two fresh reads of one process's memory map.
const FRESH_MAP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Default for StackAggregator {
    fn default() -> Self {
        Self::new()
    }
}

/// A return address points after its call instruction, which may belong to
/// the next function; look up the byte before it for every frame but the
/// innermost, as perf does.
pub fn lookup_address(index: usize, addr: u64) -> u64 {
    if index == 0 {
        addr
    } else {
        addr.saturating_sub(1)
    }
}

impl StackAggregator {
    pub fn new() -> Self {
        // Build ids are read once per module by `ModuleTable::intern`.
        let builder = || Normalizer::builder().enable_build_ids(false);
        let cached = builder().enable_vma_caching(true).build();
        let fresh = builder().build();
        Self {
            cached,
            fresh,
            last_fresh: HashMap::new(),
            frames: FxHashMap::default(),
            modules: ModuleTable::default(),
            stacks: FxHashMap::default(),
            samples: 0,
        }
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Count a sample of process generation `process`.
    pub fn add(&mut self, event: &SampleEvent, process: u32) {
        self.samples += 1;
        let key = RawKey {
            pid: event.pid,
            tid: event.tid,
            process,
            syscall: event.syscall,
            comm: event.comm,
            kstack: event.kernel_frames().into(),
            ustack: event.user_frames().into(),
        };
        if let Some((_, count)) = self.stacks.get_mut(&key) {
            *count += 1;
            return;
        }
        let user = self.normalize(event.pid, &key.ustack);
        self.stacks.insert(key, (user, 1));
    }

    /// Normalize a user stack (innermost first) of a live process.
    pub fn normalize(&mut self, pid: u32, ustack: &[u64]) -> Box<[UserFrame]> {
        if ustack.is_empty() {
            return Box::new([]);
        }
        let addrs: Vec<u64> = ustack.iter().enumerate().map(|(i, &a)| lookup_address(i, a)).collect();
        let mut new: Vec<u64> = addrs.iter().copied().filter(|a| !self.frames.contains_key(&(pid, *a))).collect();
        if !new.is_empty() {
            new.sort_unstable();
            new.dedup();
            // Unknown frames are kept too: `normalize_addrs` has already
            // re-read the map once for them, if the rate limit allowed.
            let frames = self.normalize_addrs(pid, &new);
            self.frames.extend(new.iter().map(|&a| (pid, a)).zip(frames));
        }
        addrs.iter().map(|a| self.frames.get(&(pid, *a)).cloned().unwrap_or(UserFrame::Unknown { addr: *a })).collect()
    }

    /// Normalize sorted, unique addresses of one process.
    fn normalize_addrs(&mut self, pid: u32, addrs: &[u64]) -> Vec<UserFrame> {
        let opts = NormalizeOpts { sorted_addrs: true, map_files: false, ..Default::default() };
        let misses = |o: &blazesym::normalize::UserOutput<'_>| {
            o.outputs.iter().any(|&(_, m)| matches!(o.meta.get(m), Some(UserMeta::Unknown(_)) | None))
        };
        let now = std::time::Instant::now();
        let may_refresh = self.last_fresh.get(&pid).is_none_or(|t| now.duration_since(*t) >= FRESH_MAP_INTERVAL);
        let bpid = blazesym::Pid::from(pid);
        let output = match self.cached.normalize_user_addrs_opts(bpid, addrs, &opts) {
            Ok(output) if !(may_refresh && misses(&output)) => Ok(output),
            cached => {
                if may_refresh {
                    self.last_fresh.insert(pid, now);
                    self.fresh.normalize_user_addrs_opts(bpid, addrs, &opts)
                } else {
                    cached
                }
            }
        };
        let output = match output {
            Ok(output) => output,
            Err(err) => {
                tracing::debug!(%pid, %err, "could not normalize user stack");
                return addrs.iter().map(|&addr| UserFrame::Unknown { addr }).collect();
            }
        };
        let frames =
            output.outputs.iter().zip(addrs).map(|(&(offset, meta_idx), &addr)| match output.meta.get(meta_idx) {
                Some(UserMeta::Elf(elf)) => UserFrame::InModule { module: self.modules.intern(&elf.path), offset },
                Some(UserMeta::Sym(sym)) => UserFrame::Named { name: Arc::from(&*sym.name) },
                _ => UserFrame::Unknown { addr },
            });
        frames.collect()
    }
    /// All unique stacks and the modules they reference.
    pub fn finish(self) -> (ModuleTable, Vec<AggregatedStack>) {
        let stacks = self
            .stacks
            .into_iter()
            .map(|(key, (ustack, count))| AggregatedStack {
                pid: key.pid,
                tid: key.tid,
                process: key.process,
                syscall: key.syscall,
                comm: crate::sched_times::comm_string(&key.comm),
                kstack: key.kstack,
                ustack,
                count,
            })
            .collect();
        (self.modules, stacks)
    }
}
