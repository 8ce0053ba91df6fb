//! Aggregation of raw samples as they arrive. User addresses are
//! normalized to (module, file offset) the first time a stack is seen,
//! while its process still lives, so that processes which exit during the
//! capture can still be symbolized at the end: the process's executable
//! mappings are read from `/proc/PID/maps`, modules are interned (and held
//! open when deleted or replaced, see [`ModuleTable`]), and a process with
//! addresses outside any module gets its perf map opened for JIT names.

mod modules;
mod perf_map;

use std::{collections::HashMap, sync::Arc, time::Instant};

use rustc_hash::FxHashMap;

use blazesym::normalize::{NormalizeOpts, Normalizer, UserMeta};
use profiler_common::{SampleEvent, TASK_COMM_LEN};

pub use crate::enrich::maps::{AddressSpace, Mapping, MappingKind};
pub use modules::ModuleTable;
#[cfg(test)]
pub(crate) use perf_map::ns_pid;
pub use perf_map::{PerfMap, PerfMapError, PerfMaps};

/// A user frame after normalization.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserFrame {
    /// Inside a known ELF module at this file offset.
    InModule { module: usize, offset: u64 },
    /// Named directly by the normalizer (the vDSO).
    Named { name: Arc<str> },
    /// In anonymous executable memory (JIT code), or in no mapping: named
    /// from the process's perf map at the end, if it has one.
    Unknown { addr: u64 },
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
    /// CLOCK_MONOTONIC ns and governor weight of each sample.
    pub times: Vec<(u64, u32)>,
}

/// Collects samples into unique stacks.
pub struct StackAggregator {
    /// Names vDSO addresses (it reads the vDSO image from the process).
    vdso: Normalizer,
    modules: ModuleTable,
    /// Per live process: its mappings and normalized frames.
    procs: FxHashMap<u32, ProcState>,
    /// Keyed by whole raw stacks: a fast non-cryptographic hash matters here.
    stacks: FxHashMap<RawKey, Hit>,
    samples: u64,
    /// Sample times held in the window, at most [`MAX_TIMED_SAMPLES`].
    timed: usize,
    /// Samples of the window past that bound: its times are all dropped.
    untimed: u64,
    /// Address spaces forgotten between windows.
    pub evicted: u64,
}

/// Sample times one window holds (16 bytes each while it is open: 16 MiB):
/// past it, the window's samples keep their counts and lose their times.
pub const MAX_TIMED_SAMPLES: usize = 1 << 20;

/// One unique stack's normalized user frames and samples.
struct Hit {
    ustack: Box<[UserFrame]>,
    count: u64,
    /// CLOCK_MONOTONIC ns and weight of each sample.
    times: Vec<(u64, u32)>,
}

/// What is known of one process's address space.
struct ProcState {
    /// The process generation it was read for; a new one (exec, or the pid
    /// reused) starts afresh.
    generation: u32,
    space: AddressSpace,
    /// When the map was last read; bounds re-reads to one per process per
    /// [`FRESH_MAP_INTERVAL`], since stacks of code without frame pointers
    /// often hold addresses no map contains.
    read_at: Option<Instant>,
    /// Normalized frames by lookup address: most stacks share their
    /// callers, so only new addresses are looked up.
    frames: FxHashMap<u64, UserFrame>,
}

/// Generation of a process known only from its pid (off-CPU stacks).
const ANY_GENERATION: u32 = u32::MAX;

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
        Self {
            vdso: Normalizer::builder().enable_build_ids(false).build(),
            modules: ModuleTable::default(),
            procs: FxHashMap::default(),
            stacks: FxHashMap::default(),
            samples: 0,
            timed: 0,
            untimed: 0,
            evicted: 0,
        }
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Count a sample of process generation `process`.
    pub fn add(&mut self, event: &SampleEvent, process: u32) {
        // A sample the governor kept for 2^level others counts as that many.
        let weight = u64::from(event.weight.max(1));
        self.samples += weight;
        let key = RawKey {
            pid: event.pid,
            tid: event.tid,
            process,
            syscall: event.syscall,
            comm: event.comm,
            kstack: event.kernel_frames().into(),
            ustack: event.user_frames().into(),
        };
        let time = match self.timed < MAX_TIMED_SAMPLES {
            true => {
                self.timed += 1;
                Some((event.ts_ns, event.weight.max(1)))
            }
            false => {
                self.untimed += weight;
                None
            }
        };
        if let Some(hit) = self.stacks.get_mut(&key) {
            hit.count += weight;
            hit.times.extend(time);
            return;
        }
        let ustack = self.normalize_in(event.pid, process, &key.ustack);
        self.stacks.insert(key, Hit { ustack, count: weight, times: time.into_iter().collect() });
    }

    /// Normalize a user stack (innermost first) of a live process.
    pub fn normalize(&mut self, pid: u32, ustack: &[u64]) -> Box<[UserFrame]> {
        self.normalize_in(pid, ANY_GENERATION, ustack)
    }

    fn normalize_in(&mut self, pid: u32, generation: u32, ustack: &[u64]) -> Box<[UserFrame]> {
        if ustack.is_empty() {
            return Box::new([]);
        }
        let state = self.procs.entry(pid).or_insert_with(|| ProcState::new(generation));
        if generation != ANY_GENERATION && state.generation != generation {
            if state.generation != ANY_GENERATION {
                // Another program now: its mappings and frames are new.
                *state = ProcState::new(generation);
            }
            state.generation = generation;
        }
        let addrs: Vec<u64> = ustack.iter().enumerate().map(|(i, &a)| lookup_address(i, a)).collect();
        let mut new: Vec<u64> = addrs.iter().copied().filter(|a| !state.frames.contains_key(a)).collect();
        if !new.is_empty() {
            new.sort_unstable();
            new.dedup();
            let frames = normalize_addrs(pid, state, &mut self.modules, &self.vdso, &new);
            state.frames.extend(new.into_iter().zip(frames));
        }
        addrs.iter().map(|a| state.frames.get(a).cloned().unwrap_or(UserFrame::Unknown { addr: *a })).collect()
    }

    /// All unique stacks and the modules they reference.
    pub fn finish(mut self) -> (ModuleTable, Vec<AggregatedStack>) {
        self.modules.seal();
        let stacks = self.take_stacks();
        (self.modules, stacks)
    }

    /// The window's unique stacks; the modules and what is known of each
    /// process's address space stay for the next window. Their sample
    /// times are all there, or none if the window had more samples than
    /// [`MAX_TIMED_SAMPLES`] (see [`Self::untimed`]).
    pub fn take_stacks(&mut self) -> Vec<AggregatedStack> {
        self.samples = 0;
        let timed = self.untimed == 0;
        self.timed = 0;
        std::mem::take(&mut self.stacks)
            .into_iter()
            .map(|(key, Hit { ustack, count, times })| AggregatedStack {
                pid: key.pid,
                tid: key.tid,
                process: key.process,
                syscall: key.syscall,
                comm: crate::model::text::comm_string(&key.comm),
                kstack: key.kstack,
                ustack,
                count,
                times: if timed { times } else { Vec::new() },
            })
            .collect()
    }

    /// Samples past [`MAX_TIMED_SAMPLES`] since the last call, whose
    /// window's stacks were taken without times.
    pub fn take_untimed(&mut self) -> u64 {
        std::mem::take(&mut self.untimed)
    }

    /// The long-lived module table (user frames index into it).
    pub fn modules(&mut self) -> &mut ModuleTable {
        &mut self.modules
    }

    /// Between windows: forget the address spaces and perf maps of
    /// processes no longer alive (`live` tgids); returns how many.
    pub fn evict(&mut self, live: &rustc_hash::FxHashSet<u32>) -> u64 {
        let before = self.procs.len();
        self.procs.retain(|pid, _| live.contains(pid));
        let n = (before - self.procs.len()) as u64;
        self.evicted += n;
        n + self.modules.perf_maps.evict(live)
    }

    /// Modules (files) user frames have pointed into so far.
    pub fn modules_held(&self) -> u64 {
        self.modules.modules.len() as u64
    }

    /// Processes whose address spaces are held.
    pub fn processes_held(&self) -> u64 {
        self.procs.len() as u64
    }
}

impl ProcState {
    fn new(generation: u32) -> Self {
        Self { generation, space: AddressSpace::default(), read_at: None, frames: FxHashMap::default() }
    }

    /// Re-read the map unless it was read less than [`FRESH_MAP_INTERVAL`] ago.
    fn refresh(&mut self, pid: u32) -> bool {
        let now = Instant::now();
        if self.read_at.is_some_and(|t| now.duration_since(t) < FRESH_MAP_INTERVAL) {
            return false;
        }
        self.read_at = Some(now);
        match AddressSpace::read(pid) {
            Ok(space) => self.space = space,
            Err(err) => tracing::debug!(pid, %err, "could not read the memory map"),
        }
        true
    }
}

/// Normalize sorted, unique addresses of one process.
fn normalize_addrs(
    pid: u32,
    state: &mut ProcState,
    modules: &mut ModuleTable,
    vdso: &Normalizer,
    addrs: &[u64],
) -> Vec<UserFrame> {
    // An address in no mapping may be in one mapped since the last read.
    if state.read_at.is_none() || addrs.iter().any(|&a| state.space.find(a).is_none()) {
        state.refresh(pid);
    }
    let mut vdso_addrs = Vec::new();
    let mut frames: Vec<UserFrame> = addrs
        .iter()
        .map(|&addr| {
            let Some(m) = state.space.find(addr) else {
                modules.perf_maps.ensure(pid);
                return UserFrame::Unknown { addr };
            };
            match &m.kind {
                MappingKind::File { .. } => match modules.intern(pid, m) {
                    Some(module) => UserFrame::InModule { module, offset: m.file_offset(addr) },
                    None => UserFrame::Unknown { addr },
                },
                MappingKind::Vdso => {
                    vdso_addrs.push(addr);
                    UserFrame::Unknown { addr }
                }
                MappingKind::Anonymous => {
                    modules.perf_maps.ensure(pid);
                    UserFrame::Unknown { addr }
                }
                MappingKind::Other => UserFrame::Unknown { addr },
            }
        })
        .collect();
    if !vdso_addrs.is_empty() {
        let named = name_vdso(vdso, pid, &vdso_addrs);
        for f in frames.iter_mut() {
            if let UserFrame::Unknown { addr } = f {
                if let Some(name) = named.get(addr) {
                    *f = UserFrame::Named { name: name.clone() };
                }
            }
        }
    }
    frames
}

/// Names of vDSO addresses (sorted), by address.
fn name_vdso(vdso: &Normalizer, pid: u32, addrs: &[u64]) -> HashMap<u64, Arc<str>> {
    let opts = NormalizeOpts { sorted_addrs: true, ..Default::default() };
    match vdso.normalize_user_addrs_opts(blazesym::Pid::from(pid), addrs, &opts) {
        Ok(out) => out
            .outputs
            .iter()
            .zip(addrs)
            .filter_map(|(&(_, meta), &addr)| match out.meta.get(meta) {
                Some(UserMeta::Sym(sym)) => Some((addr, Arc::from(&*sym.name))),
                _ => None,
            })
            .collect(),
        Err(err) => {
            tracing::debug!(pid, %err, "could not name vDSO frames");
            HashMap::new()
        }
    }
}
