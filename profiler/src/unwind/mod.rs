//! User-space stack unwinding from a copy of the stack (`--unwind dwarf`
//! and `auto`): the sampling program sends a thread's user registers and
//! the top of its stack; [`Unwinder`] walks it with the CFI (`.eh_frame`,
//! `.debug_frame`) of the modules the process maps, through the `framehop`
//! crate. Code with no CFI (JIT code, stripped-of-CFI modules, modules that
//! could not be read) is walked with frame pointers.
//!
//! - Each process has an address space read from `/proc/PID/maps` on its
//!   first sample, and again (at most once per [`MAPS_REREAD_INTERVAL`])
//!   when a sample holds an address in no known executable mapping.
//! - Modules are read once and shared by every process mapping them
//!   ([`module_cache`]); their memory is bounded ([`Limits`]).
//! - A module that cannot be used is recorded once in
//!   [`UnwindStats::modules_failed`]; its frames degrade to frame-pointer
//!   unwinding.

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("tailprof's stack unwinder supports x86_64 and aarch64 only");

mod address_space;
mod elf;
pub mod frame_pointers;
mod maps;
pub mod module_cache;
pub mod ptrace_sample;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, time::Instant};

use framehop::Unwinder as _;
use profiler_common::UserRegs;
use serde::Serialize;

use address_space::{AddressSpace, NativeCache, NativeUnwinder, RuleCaches};
pub use address_space::{MAPS_REREAD_INTERVAL, RULE_CACHES};
pub use module_cache::{Limits, ModuleFailure};
use module_cache::{ModuleCache, Resolved};

pub use crate::model::stats::StopCounts;

pub use crate::model::stats::UnwindStats;

/// Why an unwind stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Reached the outermost frame (`_start`, a thread's start routine, or a
    /// zero frame pointer / return address).
    Complete,
    /// The next frame lies beyond the copied stack.
    StackCopyEnd,
    /// Frame-pointer unwinding of code without CFI (JIT code, modules with
    /// no or unusable unwind information) failed.
    NoUnwindInfo,
    /// The CFI led to an impossible frame (stack moving backwards, an
    /// unreadable address below the stack pointer, a loop).
    BadFrame,
    /// `out` is full.
    DepthLimit,
    /// The instruction pointer, or a return address found, lies in no
    /// executable mapping of the process (or the process is gone).
    NotMapped,
}

/// The result of one unwind: `frames` addresses were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwound {
    pub frames: usize,
    pub stop: StopReason,
}

impl StopCounts {
    fn count(&mut self, stop: StopReason) {
        let c = match stop {
            StopReason::Complete => &mut self.complete,
            StopReason::StackCopyEnd => &mut self.stack_copy_end,
            StopReason::NoUnwindInfo => &mut self.no_unwind_info,
            StopReason::BadFrame => &mut self.bad_frame,
            StopReason::DepthLimit => &mut self.depth_limit,
            StopReason::NotMapped => &mut self.not_mapped,
        };
        *c += 1;
    }
}

/// One per capture; see the module documentation.
pub struct Unwinder {
    modules: ModuleCache,
    spaces: HashMap<u32, AddressSpace>,
    caches: RuleCaches,
    stats: UnwindStats,
}

impl Default for Unwinder {
    fn default() -> Self {
        Self::new()
    }
}

impl Unwinder {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        Unwinder {
            modules: ModuleCache::new(limits),
            spaces: HashMap::new(),
            caches: RuleCaches::default(),
            stats: UnwindStats::default(),
        }
    }

    /// Unwind one sample of live process `pid` (tgid) whose user registers
    /// were `regs` and whose stack from `regs.sp` upwards is `stack`.
    /// Writes instruction addresses into `out`, innermost first:
    /// `out[0] = regs.ip`, then return addresses exactly as the calls pushed
    /// them (the address after the call; subtract 1 to look them up).
    ///
    /// The first sample of a process reads its maps, and the first use of a
    /// module reads and checks its unwind tables (measured: 1 ms for a C
    /// program with its 4 modules, 9 ms for python3 with its 7); a process
    /// whose modules are all cached costs one maps read (~0.1 ms). Later
    /// samples touch no file.
    pub fn unwind(&mut self, pid: u32, regs: &UserRegs, stack: &[u8], out: &mut [u64]) -> Unwound {
        let started = Instant::now();
        let r = self.unwind_inner(pid, regs, stack, out, started);
        self.stats.samples += 1;
        self.stats.frames += r.frames as u64;
        self.stats.stops.count(r.stop);
        self.stats.unwind_ns += started.elapsed().as_nanos() as u64;
        r
    }

    /// The process exited or exec'd: drop its address space (the modules
    /// stay cached for other processes).
    pub fn forget(&mut self, pid: u32) {
        self.spaces.remove(&pid);
    }

    /// Between windows: drop the address spaces of processes not in `live`.
    pub fn evict(&mut self, live: &rustc_hash::FxHashSet<u32>) -> u64 {
        let before = self.spaces.len();
        self.spaces.retain(|pid, _| live.contains(pid));
        (before - self.spaces.len()) as u64 + self.modules.trim()
    }

    /// framehop rule caches held (at most [`address_space::RULE_CACHES`]),
    /// and how many were given to another process.
    pub fn rule_caches(&self) -> (u64, u64) {
        self.caches.counts()
    }

    /// Modules whose unwind tables are held, and how many were dropped.
    pub fn modules_held(&self) -> (u64, u64) {
        (self.modules.held() as u64, self.modules.evicted())
    }

    /// For `--unwind auto`: `Some(true)` when every module `pid` maps keeps
    /// frame pointers (judged from its CFI, see [`frame_pointers`]; the
    /// judgement is made once per module), `Some(false)` when one does not,
    /// `None` when that is unknown (the process is gone, or a module could
    /// not be read). Anonymous executable memory (JIT code) is not judged.
    pub fn frame_pointers_suffice(&mut self, pid: u32) -> Option<bool> {
        let space = self.space(pid)?;
        let mut unknown = false;
        for r in &space.resolved {
            match r {
                Resolved::Module(m) if !m.keeps_frame_pointers() => return Some(false),
                Resolved::Module(_) | Resolved::Anonymous => {}
                Resolved::Failed => unknown = true,
            }
        }
        (!unknown).then_some(true)
    }

    pub fn stats(&self) -> UnwindStats {
        let per_process: usize = self.spaces.values().map(AddressSpace::bytes).sum();
        UnwindStats {
            modules_loaded: self.modules.loaded(),
            modules_failed: self.modules.failures().to_vec(),
            cache_bytes: (self.modules.bytes() + per_process + self.caches.bytes()) as u64,
            processes: self.spaces.len() as u64,
            ..self.stats.clone()
        }
    }

    /// The address space of `pid`, read on first use.
    fn space(&mut self, pid: u32) -> Option<&mut AddressSpace> {
        if !self.spaces.contains_key(&pid) {
            self.stats.maps_reads += 1;
            let space = AddressSpace::read(pid, &mut self.modules, None)?;
            self.spaces.insert(pid, space);
        }
        self.spaces.get_mut(&pid)
    }

    /// Read the maps of `pid` again if the last read is old enough.
    fn refresh(&mut self, pid: u32, now: Instant) -> bool {
        let Some(old) = self.spaces.get_mut(&pid) else { return false };
        if !old.may_reread(now) {
            return false;
        }
        self.stats.maps_reads += 1;
        match AddressSpace::read(pid, &mut self.modules, Some(old)) {
            Some(new) => {
                *old = new;
                true
            }
            None => {
                // Gone: keep what we had, and do not try again for a while.
                old.read_at = now;
                false
            }
        }
    }

    fn unwind_inner(&mut self, pid: u32, regs: &UserRegs, stack: &[u8], out: &mut [u64], now: Instant) -> Unwound {
        let Some(first) = out.first_mut() else {
            return Unwound { frames: 0, stop: StopReason::DepthLimit };
        };
        *first = regs.ip;
        let Some(space) = self.space(pid) else {
            return Unwound { frames: 1, stop: StopReason::NotMapped };
        };
        if space.mapping(regs.ip).is_none() {
            self.refresh(pid, now);
        }
        let Some(space) = self.spaces.get_mut(&pid) else {
            return Unwound { frames: 1, stop: StopReason::NotMapped };
        };
        let walked = walk(space, self.caches.of(space.serial), regs, stack, out);
        if walked.stop == StopReason::NotMapped && self.refresh(pid, now) {
            if let Some(space) = self.spaces.get_mut(&pid) {
                return walk(space, self.caches.of(space.serial), regs, stack, out);
            }
        }
        walked
    }
}

/// Walk the stack.
fn walk(space: &AddressSpace, cache: &mut NativeCache, regs: &UserRegs, stack: &[u8], out: &mut [u64]) -> Unwound {
    let Some(first) = out.first_mut() else {
        return Unwound { frames: 0, stop: StopReason::DepthLimit };
    };
    *first = regs.ip;
    if space.mapping(regs.ip).is_none() {
        return Unwound { frames: 1, stop: StopReason::NotMapped };
    }
    let sp = regs.sp;
    let stack_end = sp.saturating_add(stack.len() as u64);
    let mut read_stack = |addr: u64| -> Result<u64, ()> {
        let off = usize::try_from(addr.checked_sub(sp).ok_or(())?).map_err(|_| ())?;
        let bytes = stack.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
        Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
    };
    let AddressSpace { mappings, resolved, unwinder, .. } = space;
    let has_cfi_at = |addr: u64| {
        maps::find(mappings, addr)
            .and_then(|i| resolved.get(i))
            .is_some_and(|r| matches!(r, Resolved::Module(m) if m.has_cfi()))
    };
    let native = native_regs(regs, unwinder);
    let mut frames = unwinder.iter_frames(regs.ip, native, cache, &mut read_stack);
    // The first frame is the instruction pointer itself.
    let _ = frames.next();
    let mut n = 1;
    let mut last = regs.ip;
    let stop = loop {
        match frames.next() {
            Ok(Some(frame)) => {
                let lookup = frame.address_for_lookup();
                if maps::find(mappings, lookup).is_none() {
                    break StopReason::NotMapped;
                }
                let Some(slot) = out.get_mut(n) else { break StopReason::DepthLimit };
                *slot = frame.address();
                n += 1;
                last = lookup;
            }
            Ok(None) => break StopReason::Complete,
            Err(_) if !has_cfi_at(last) => break StopReason::NoUnwindInfo,
            Err(framehop::Error::CouldNotReadStack(addr)) if addr >= stack_end => break StopReason::StackCopyEnd,
            Err(_) => break StopReason::BadFrame,
        }
    };
    Unwound { frames: n, stop }
}

#[cfg(target_arch = "x86_64")]
fn native_regs(regs: &UserRegs, _: &NativeUnwinder) -> framehop::UnwindRegsNative {
    framehop::x86_64::UnwindRegsX86_64::new(regs.ip, regs.sp, regs.fp)
}

#[cfg(target_arch = "aarch64")]
fn native_regs(regs: &UserRegs, unwinder: &NativeUnwinder) -> framehop::UnwindRegsNative {
    let mask = framehop::aarch64::PtrAuthMask::from_max_known_address(unwinder.max_known_code_address());
    framehop::aarch64::UnwindRegsAarch64::new_with_ptr_auth_mask(mask, regs.lr, regs.sp, regs.fp)
}
