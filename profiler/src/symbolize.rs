//! Naming addresses at the end of a capture: kernel frames from kallsyms,
//! user frames from their ELF files (symbol tables; DWARF, from the module
//! or a separate debug file, for inlined functions and source lines),
//! demangled, JIT frames from perf maps. Each unique address is looked up
//! once.

mod kallsyms;
mod user;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use blazesym::symbolize::Symbolizer;

pub use crate::enrich::elf::{ElfError, ElfFile};
pub use user::{debug_file_by_build_id, default_debug_dirs};

use crate::{
    off_cpu::RawOffCpu,
    profile::{Frame, FrameKind, Frames, OffCpuStack, Profile, Stack, UNKNOWN},
    stacks::{lookup_address, AggregatedStack, ModuleTable, UserFrame},
};

/// Build the symbolized [`Profile`] from aggregated on-CPU and off-CPU
/// stacks, with a symbolizer of its own (one window).
pub fn symbolize(
    mut modules: ModuleTable,
    stacks: Vec<AggregatedStack>,
    off_cpu: Vec<RawOffCpu>,
    profile: Profile,
) -> Profile {
    Names::default().window(&mut modules, stacks, off_cpu, profile)
}

/// Most (module, offset) pairs whose names are kept between windows; the
/// cache is emptied when it outgrows it. Kernel names are bounded by
/// [`MAX_KERNEL_NAMES`]. An entry is about 200 bytes, and under the soak
/// the agent adds ~90 a minute (a day: 130,000): the bound keeps a week's
/// agent at ~13 MB for them, not 200.
pub const MAX_USER_CACHE: usize = 65_536;

/// Windows after which the kept symbolizer is dropped with what it parsed.
const RENEW_SYMBOLIZER_WINDOWS: u64 = 360;

/// Sizes and evictions of the symbol caches, for summary.json.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NameCacheStats {
    /// Kernel addresses named and kept.
    pub kernel: u64,
    /// (module, offset) pairs named (or found unnamed) and kept.
    pub user: u64,
    /// Entries dropped when a cache outgrew its bound.
    pub evicted: u64,
    /// Of those, user frames.
    pub user_evicted: u64,
    /// Addresses looked up in this window (the rest came from the caches).
    pub looked_up: u64,
}

/// Names of addresses, kept for the collector's life: a window looks up
/// only addresses no earlier window named. User frames are keyed by the
/// long-lived module table's index and file offset (a module is one file,
/// so the key stands for its build id and offset).
#[derive(Default)]
pub struct Names {
    /// Kernel addresses named so far (shared with the continuous tier's
    /// noise sampler).
    kernel: KernelSymbols,
    /// `None`: no symbol covers the offset.
    user: HashMap<(usize, u64), Option<Arc<[Frame]>>>,
    /// Keep parsed modules (symbol tables, DWARF, decompressed debug
    /// sections) between windows: a collector of many windows names new
    /// addresses of a module every window, and parsing a large debug file
    /// anew each time (libc's: 20 ms) would be most of its cost.
    pub keep_parsed: bool,
    /// Name user frames from symbol tables only (the module's and its
    /// build-id debug file's), not DWARF: no inlined functions or source
    /// lines, and none of the memory DWARF takes (the agent's default).
    pub symbols_only: bool,
    user_symbolizer: Option<Symbolizer>,
    /// Windows since `user_symbolizer` was made.
    symbolizer_windows: u64,
    pub stats: NameCacheStats,
}

impl Drop for Names {
    fn drop(&mut self) {
        // The kept symbolizer unmaps the files it parsed.
        let _mapping = crate::sys::mem::mapping_files();
        self.user_symbolizer.take();
    }
}

impl Names {
    /// Symbolize one window's stacks into `profile`.
    pub fn window(
        &mut self,
        modules: &mut ModuleTable,
        stacks: Vec<AggregatedStack>,
        off_cpu: Vec<RawOffCpu>,
        mut profile: Profile,
    ) -> Profile {
        let started = std::time::Instant::now();
        let all = || {
            stacks
                .iter()
                .map(|s| (s.pid, &*s.kstack, &*s.ustack))
                .chain(off_cpu.iter().map(|s| (s.tgid, &*s.kstack, &*s.ustack)))
        };
        let symbols = self.resolve(modules, &default_debug_dirs(), all);
        // Stacks of one process with the same frames share them: the
        // blocked stacks of a pool's idle threads are one stack many times.
        // Lines without a stack (most off-CPU lines under thread churn:
        // time in a state no snapshot saw) share one empty list.
        let (stack_frames, off_cpu_frames) = {
            let mut shared: HashMap<(u32, &[u64], &[crate::stacks::UserFrame]), Frames> = HashMap::new();
            let none: Frames = Frames::from([]);
            let mut on: Vec<Frames> = Vec::with_capacity(stacks.len());
            let mut off: Vec<Frames> = Vec::with_capacity(off_cpu.len());
            let keys = stacks.iter().map(|s| (true, s.pid, &*s.kstack, &*s.ustack));
            for (is_on, pid, kstack, ustack) in
                keys.chain(off_cpu.iter().map(|s| (false, s.tgid, &*s.kstack, &*s.ustack)))
            {
                let frames = match kstack.is_empty() && ustack.is_empty() {
                    true => none.clone(),
                    false => shared
                        .entry((pid, kstack, ustack))
                        .or_insert_with(|| symbols.frames(self, pid, kstack, ustack).into())
                        .clone(),
                };
                match is_on {
                    true => on.push(frames),
                    false => off.push(frames),
                }
            }
            (on, off)
        };
        profile.samples = stacks.iter().map(|s| s.count).sum();
        profile.modules = modules.modules.clone();
        // Sample times from the monotonic clock to the Unix epoch, by the
        // window's own pair of start times.
        let (mono0, unix0) = (profile.window_start_ns, profile.start_unix_ns);
        profile.stacks = stacks
            .into_iter()
            .zip(stack_frames)
            .map(|(s, frames)| {
                let mut times = crate::profile::SampleTimes::default();
                for (t, w) in s.times {
                    times.push(unix0 + t.saturating_sub(mono0), w);
                }
                Stack {
                    frames,
                    pid: s.pid,
                    tid: s.tid,
                    comm: s.comm,
                    process: s.process,
                    syscall: s.syscall,
                    count: s.count,
                    times,
                }
            })
            .collect();
        profile.off_cpu = off_cpu
            .into_iter()
            .zip(off_cpu_frames)
            .map(|(s, frames)| OffCpuStack {
                frames,
                pid: s.tgid,
                tid: s.tid,
                comm: s.comm,
                process: s.process,
                state: s.state,
                syscall: s.syscall,
                waker_tid: s.waker_tid,
                waker_comm: s.waker_comm,
                stack_lost: s.stack_lost,
                ns: s.ns,
                count: s.count,
            })
            .collect();
        profile.symbolize_ns = started.elapsed().as_nanos() as u64;
        self.bound();
        profile
    }

    /// The kernel's names, for frames named as they arrive.
    pub fn kernel_mut(&mut self) -> &mut KernelSymbols {
        &mut self.kernel
    }

    /// Empty a cache that outgrew its bound (between windows).
    fn bound(&mut self) {
        // Parsed modules of programs long gone go with the symbolizer, now
        // and then; the names it gave stay in `user`.
        self.symbolizer_windows += 1;
        if self.symbolizer_windows >= RENEW_SYMBOLIZER_WINDOWS {
            let _mapping = crate::sys::mem::mapping_files();
            self.user_symbolizer = None;
            self.symbolizer_windows = 0;
        }
        if self.user.len() > MAX_USER_CACHE {
            self.stats.user_evicted += self.user.len() as u64;
            self.user.clear();
        }
        self.stats.kernel = self.kernel.names.len() as u64;
        self.stats.user = self.user.len() as u64;
        self.stats.evicted = self.kernel.evicted + self.stats.user_evicted;
    }

    /// Look up every address the stacks hold that is not named yet.
    fn resolve<'a, I>(
        &mut self,
        modules: &mut ModuleTable,
        debug_dirs: &[std::path::PathBuf],
        stacks: impl Fn() -> I,
    ) -> Jit
    where
        I: Iterator<Item = (u32, &'a [u64], &'a [UserFrame])>,
    {
        let unknown: Arc<str> = Arc::from(UNKNOWN);
        let before = self.kernel.names.len();
        self.kernel.resolve(stacks().map(|(_, k, _)| k));
        let mut looked_up = self.kernel.names.len().saturating_sub(before) as u64;
        let mut wanted: HashMap<usize, HashSet<u64>> = HashMap::new();
        let mut anonymous: HashSet<(u32, u64)> = HashSet::new();
        for (pid, _, ustack) in stacks() {
            for f in ustack {
                match f {
                    UserFrame::InModule { module, offset } if !self.user.contains_key(&(*module, *offset)) => {
                        wanted.entry(*module).or_default().insert(*offset);
                    }
                    UserFrame::Unknown { addr } => {
                        anonymous.insert((pid, *addr));
                    }
                    _ => {}
                }
            }
        }
        if !wanted.is_empty() {
            // Modules replaced since they were first seen are reopened
            // through their mappings while those still exist.
            modules.seal();
        }
        let wanted: HashMap<usize, Vec<u64>> = wanted.into_iter().map(|(m, o)| (m, sorted(o))).collect();
        looked_up += wanted.values().map(|o| o.len() as u64).sum::<u64>();
        tracing::debug!(rss_kib = crate::sys::mem::rss_bytes() >> 10, "kernel frames named");
        let kept = match self.keep_parsed {
            true => Some(&*self.user_symbolizer.get_or_insert_with(user::new_symbolizer)),
            false => None,
        };
        let mut named = user::name_modules_with(kept, modules, wanted.clone(), debug_dirs, !self.symbols_only);
        for (module, offsets) in wanted {
            for offset in offsets {
                self.user.insert((module, offset), named.remove(&(module, offset)));
            }
        }
        if !anonymous.is_empty() {
            modules.perf_maps.refresh_all();
        }
        let jit = anonymous
            .into_iter()
            .filter_map(|(pid, addr)| Some(((pid, addr), modules.perf_maps.lookup(pid, addr)?)))
            .collect();
        tracing::debug!(perf_maps = modules.perf_maps.count(), looked_up, "frames named");
        self.stats.looked_up = looked_up;
        Jit { names: jit, unknown }
    }
}

/// JIT frames of one window by (pid, address), from perf maps (which
/// grow as the runtime compiles, so they are looked up every window).
struct Jit {
    names: HashMap<(u32, u64), Arc<str>>,
    unknown: Arc<str>,
}

impl Jit {
    /// Frames of process `pid`, outermost first: user frames, then kernel frames.
    fn frames(&self, names: &Names, pid: u32, kstack: &[u64], ustack: &[UserFrame]) -> Vec<Frame> {
        let unknown = &self.unknown;
        let mut frames = Vec::with_capacity(ustack.len() + kstack.len());
        for f in ustack.iter().rev() {
            match f {
                UserFrame::InModule { module, offset } => match names.user.get(&(*module, *offset)) {
                    Some(Some(named)) => frames.extend(named.iter().cloned()),
                    _ => frames.push(Frame::new(unknown.clone(), FrameKind::User, Some(*module), *offset)),
                },
                UserFrame::Named { name } => frames.push(Frame::new(name.clone(), FrameKind::User, None, 0)),
                UserFrame::Unknown { addr } => frames.push(match self.names.get(&(pid, *addr)) {
                    Some(name) => Frame::new(name.clone(), FrameKind::Jit, None, *addr),
                    None => Frame::new(unknown.clone(), FrameKind::User, None, *addr),
                }),
            }
        }
        for (i, &addr) in kstack.iter().enumerate().rev() {
            let addr = lookup_address(i, addr);
            let name = names.kernel.names.get(&addr).cloned().unwrap_or_else(|| unknown.clone());
            frames.push(Frame::new(name, FrameKind::Kernel, None, addr));
        }
        frames
    }
}

fn sorted(set: HashSet<u64>) -> Vec<u64> {
    let mut v: Vec<u64> = set.into_iter().collect();
    v.sort_unstable();
    v
}

/// Bound of [`KernelSymbols`]' names.
pub const MAX_KERNEL_NAMES: usize = 65_536;

/// Kallsyms is read again at most this often (a read costs 40 ms).
const KALLSYMS_REREAD: std::time::Duration = std::time::Duration::from_secs(30);

/// Kernel addresses named as they arrive, each looked up once and kept,
/// from an index of kallsyms ([`kallsyms::Index`], about 1 MB) read when
/// first needed, and again, at most every 30 s, when the kernel's code has
/// changed since: a module or a BPF program loaded or gone. While the code
/// is what the index listed, every address is named from it, past the last
/// symbol of a run too (nothing was loaded there since). When it changed
/// and the index cannot be read again yet, new addresses are `[unknown]`
/// and asked again: a name is never given from a listing that may be stale.
pub struct KernelSymbols {
    /// At most [`MAX_KERNEL_NAMES`]; emptied when full (kernel text holds
    /// far fewer return addresses than that on a normal host).
    names: HashMap<u64, Arc<str>>,
    /// Names dropped by emptying `names`.
    pub evicted: u64,
    unknown: Arc<str>,
    /// A lookup failed: logged once, its addresses stay unknown.
    failed: bool,
    index: Option<kallsyms::Index>,
    /// When kallsyms was last read (or its read failed), and the kernel's
    /// loaded code then ([`loaded_code`]).
    read_at: Option<std::time::Instant>,
    code: u64,
    /// Reads of kallsyms so far.
    pub reads: u64,
}

impl Default for KernelSymbols {
    fn default() -> Self {
        Self::new()
    }
}

/// A fingerprint of the code the kernel holds beyond its own: the loaded
/// modules (their names and addresses) and the ids of the loaded BPF
/// programs. A few microseconds, where a read of kallsyms is 40 ms.
fn loaded_code() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    std::fs::read("/proc/modules").unwrap_or_default().hash(&mut h);
    for id in crate::sys::bpf::program_ids() {
        id.hash(&mut h);
    }
    h.finish()
}

impl KernelSymbols {
    pub fn new() -> Self {
        Self {
            names: HashMap::new(),
            evicted: 0,
            unknown: Arc::from(UNKNOWN),
            failed: false,
            index: None,
            read_at: None,
            code: 0,
            reads: 0,
        }
    }

    /// Look up, in one batch, the addresses of a kernel stack (innermost
    /// first, as the kernel returns it) not named yet.
    pub fn resolve<'a>(&mut self, stacks: impl Iterator<Item = &'a [u64]>) {
        let mut all: Vec<u64> = stacks.flat_map(|s| s.iter().enumerate().map(|(i, &a)| lookup_address(i, a))).collect();
        all.sort_unstable();
        all.dedup();
        let mut new: Vec<u64> = all.iter().copied().filter(|a| !self.names.contains_key(a)).collect();
        if new.is_empty() {
            return;
        }
        if self.names.len() + new.len() > MAX_KERNEL_NAMES {
            self.evicted += self.names.len() as u64;
            tracing::info!(evicted = self.evicted, "kernel symbol cache full: emptied");
            self.names.clear();
            // Every address of these stacks is to be named again.
            new = all;
        }
        let code = loaded_code();
        let may_read = self.read_at.is_none_or(|t| t.elapsed() >= KALLSYMS_REREAD);
        if (self.index.is_none() || code != self.code) && may_read {
            if self.index.is_some() {
                tracing::debug!("kallsyms to be read again: a module or BPF program was loaded or unloaded");
            }
            self.read(code);
        }
        let Some(named) = self.lookup(&new) else { return };
        // Code loaded since the read may lie anywhere: asked again at the next read.
        if code != self.code {
            return;
        }
        let unknown = &self.unknown;
        for (addr, named) in new.into_iter().zip(named) {
            self.names.insert(addr, named.map_or_else(|| unknown.clone(), |n| n.name));
        }
    }

    /// Read kallsyms now if it was not read yet.
    pub fn prepare(&mut self) {
        if self.read_at.is_none() {
            self.read(loaded_code());
        }
    }

    /// Read kallsyms anew.
    fn read(&mut self, code: u64) {
        let started = std::time::Instant::now();
        self.read_at = Some(started);
        self.code = code;
        self.reads += 1;
        // The old index goes first, and its size makes room for the new one.
        let expect = self.index.take().map_or(0, |i| i.len());
        match kallsyms::read_expecting(expect) {
            Ok(index) => {
                tracing::debug!(symbols = index.len(), bytes = index.bytes(), elapsed = ?started.elapsed(), "kallsyms read");
                self.index = Some(index);
                self.failed = false;
            }
            Err(err) => self.fail(&err),
        }
    }

    fn fail(&mut self, err: &kallsyms::KallsymsError) {
        if !self.failed {
            tracing::warn!(err = %crate::error::format_chain(err), "could not name kernel frames; they show as [unknown]");
            self.failed = true;
        }
    }

    /// The index's symbols of `addrs` (sorted); `None` without an index.
    fn lookup(&mut self, addrs: &[u64]) -> Option<Vec<Option<kallsyms::Named>>> {
        let found = self.index.as_ref()?.names(addrs);
        match found {
            Ok(named) => Some(named),
            Err(err) => {
                self.fail(&err);
                None
            }
        }
    }

    /// The function names of a kernel stack, innermost first (`[unknown]`
    /// for an address not resolved or not covered by a symbol).
    pub fn frames<'s>(&'s self, kstack: &[u64]) -> Vec<&'s str> {
        kstack
            .iter()
            .enumerate()
            .map(|(i, &a)| self.names.get(&lookup_address(i, a)).map_or(&*self.unknown, |n| &**n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::stacks::StackAggregator;

    /// Removes the perf map it names when dropped.
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Kallsyms is read once, not per batch of new addresses (a read is
    /// 40 ms of kernel time: per window, several times the 1% budget).
    #[test]
    fn kernel_addresses_are_named_from_one_read_of_kallsyms() {
        let index = kallsyms::read().unwrap();
        let text = std::fs::read_to_string(kallsyms::PATH).unwrap();
        let core: Vec<u64> = text
            .lines()
            .filter(|l| l.contains(" T ") && !l.contains('['))
            .filter_map(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok())
            .filter(|&a| a != 0)
            .collect();
        assert!(core.len() > 1000);
        let mut symbols = KernelSymbols::new();
        for batch in core.chunks(core.len() / 4).take(3) {
            // Return addresses: one byte past, as the kernel reports callers.
            let stack: Vec<u64> = batch.iter().map(|a| a + 1).collect();
            symbols.resolve(std::iter::once(&stack[..]));
            let mut want: Vec<u64> = stack.iter().enumerate().map(|(i, &a)| lookup_address(i, a)).collect();
            want.sort_unstable();
            let names = index.names(&want).unwrap();
            for (addr, name) in want.iter().zip(names) {
                let name = name.unwrap();
                let got = symbols.names.get(addr).map(|n| n.to_string());
                assert_eq!(got.as_deref(), Some(&*name.name), "{addr:#x}");
            }
        }
        assert_eq!(symbols.reads, 1);
    }

    #[test]
    fn names_own_code_and_jit_code_from_a_perf_map_appended_during_the_run() {
        // Anonymous executable memory, where a JIT puts its code.
        // SAFETY: a fresh private anonymous mapping; only its address is used.
        let jit = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(jit, libc::MAP_FAILED);
        let jit = jit as u64;
        let pid = std::process::id();
        let ns_pid = crate::stacks::ns_pid(pid).unwrap_or(pid);
        let map_path = std::path::PathBuf::from(format!("/tmp/perf-{ns_pid}.map"));
        let _cleanup = Cleanup(map_path.clone());
        let mut map = std::fs::File::create(&map_path).unwrap();
        writeln!(map, "{:x} 10 JS:*early /app.js:1", jit + 0x100).unwrap();

        let here = names_own_code_and_jit_code_from_a_perf_map_appended_during_the_run as *const () as u64;
        let mut agg = StackAggregator::new();
        // Innermost first; the caller's return address is looked up one byte before.
        let ustack = agg.normalize(pid, &[jit + 0x10, jit + 0x105, here + 1]);
        // The runtime compiles more while the capture runs.
        writeln!(map, "{:x} 40 JS:*veryHot /app.js:7", jit).unwrap();
        let (modules, _) = agg.finish();
        let stack = AggregatedStack {
            pid,
            tid: pid,
            process: 0,
            syscall: -1,
            comm: "test".into(),
            kstack: Box::new([]),
            ustack,
            count: 1,
            times: vec![(0, 1)],
        };
        let profile = symbolize(modules, vec![stack], vec![], Profile::default());
        let frames = &profile.stacks[0].frames;
        let own = &frames[0];
        assert!(own.name.contains("names_own_code_and_jit_code_from_a_perf_map"), "{own:?}");
        assert_eq!((own.kind, own.inlined), (FrameKind::User, false));
        assert!(profile.modules[own.module.unwrap()]
            .path
            .ends_with(std::fs::canonicalize("/proc/self/exe").unwrap().file_name().unwrap().to_str().unwrap()));
        let jit_frames: Vec<(&str, FrameKind, u64)> =
            frames[frames.len() - 2..].iter().map(|f| (&*f.name, f.kind, f.address)).collect();
        assert_eq!(
            jit_frames,
            [
                ("JS:*early /app.js:1", FrameKind::Jit, jit + 0x104),
                ("JS:*veryHot /app.js:7", FrameKind::Jit, jit + 0x10)
            ]
        );
        let stats = crate::profile::SymbolizationStats::of(&profile);
        assert_eq!((stats.frames_jit, stats.frames_unknown), (2, 0));
        assert!(stats.frames_named >= 1);
    }
}
