//! One process's executable mappings, the modules behind them, and the
//! framehop unwinder built from them.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use framehop::{CacheNative, MayAllocateDuringUnwind, Unwinder as _, UnwinderNative};

use super::{
    maps::{self, ExecMapping},
    module_cache::{ModuleCache, Resolved},
};

/// Shortest time between two reads of one process's maps.
pub const MAPS_REREAD_INTERVAL: Duration = Duration::from_secs(1);

/// Approximate heap bytes of one framehop rule cache (509 slots).
pub const RULE_CACHE_BYTES: usize = 509 * 24 + 1024;

pub type NativeUnwinder = UnwinderNative<Arc<[u8]>, MayAllocateDuringUnwind>;
pub type NativeCache = CacheNative<MayAllocateDuringUnwind>;

pub struct AddressSpace {
    /// Executable mappings, sorted by start; `resolved` is parallel.
    pub mappings: Vec<ExecMapping>,
    pub resolved: Vec<Resolved>,
    pub unwinder: NativeUnwinder,
    /// Unique among the address spaces read: which rule cache is its own
    /// (see [`RuleCaches`]).
    pub serial: u64,
    pub read_at: Instant,
}

/// Serials of address spaces, in the order they are read.
static NEXT_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// framehop's rule caches (509 slots and a DWARF evaluation context each)
/// for the [`RULE_CACHES`] address spaces unwound most recently. One per
/// process held one for every process ever unwound: 4.7 MB under the
/// soak's exec storm. An address space given a slot gets a new cache, so
/// that no rule cached for another process is ever used for it (framehop
/// tells unwinders apart by a 16-bit generation, which wraps).
#[derive(Default)]
pub struct RuleCaches {
    slots: Vec<RuleSlot>,
    clock: u64,
    /// Caches made (a slot given to another address space).
    pub made: u64,
}

struct RuleSlot {
    serial: u64,
    used: u64,
    cache: NativeCache,
}

/// Most rule caches held.
pub const RULE_CACHES: usize = 32;

impl RuleCaches {
    /// The rule cache of the address space `serial`; the least recently
    /// used one is given to it when it has none.
    pub fn of(&mut self, serial: u64) -> &mut NativeCache {
        self.clock += 1;
        let clock = self.clock;
        let i = match self.slots.iter().position(|s| s.serial == serial) {
            Some(i) => i,
            None => {
                self.made += 1;
                let slot = RuleSlot { serial, used: clock, cache: NativeCache::new() };
                match self.slots.iter().enumerate().min_by_key(|(_, s)| s.used) {
                    Some((i, _)) if self.slots.len() >= RULE_CACHES => {
                        self.slots[i] = slot;
                        i
                    }
                    _ => {
                        self.slots.push(slot);
                        self.slots.len() - 1
                    }
                }
            }
        };
        let slot = &mut self.slots[i];
        slot.used = clock;
        &mut slot.cache
    }

    /// Approximate heap bytes held.
    pub fn bytes(&self) -> usize {
        self.slots.len() * RULE_CACHE_BYTES
    }

    /// Caches held, and how many were replaced by a newer address space's.
    pub fn counts(&self) -> (u64, u64) {
        let held = self.slots.len() as u64;
        (held, self.made - held)
    }
}

impl AddressSpace {
    /// Read `/proc/PID/maps` and resolve its executable mappings. `None` if
    /// the process is gone.
    pub fn read(pid: u32, modules: &mut ModuleCache, previous: Option<&AddressSpace>) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        Some(Self::from_maps(pid, &text, modules, previous))
    }

    /// Build from maps text. Mappings `previous` already had keep their
    /// module without a new lookup.
    pub fn from_maps(pid: u32, text: &str, modules: &mut ModuleCache, previous: Option<&AddressSpace>) -> Self {
        let mappings = maps::parse_exec_mappings(text);
        let known: HashMap<&ExecMapping, &Resolved> =
            previous.map(|p| p.mappings.iter().zip(&p.resolved).collect()).unwrap_or_default();
        let mut unwinder = NativeUnwinder::new();
        let mut resolved = Vec::with_capacity(mappings.len());
        for m in &mappings {
            let r = match known.get(m) {
                Some(&r) => r.clone(),
                None => modules.resolve(pid, m),
            };
            if let Resolved::Module(module) = &r {
                if let Some(fm) = module.framehop_module(m) {
                    unwinder.add_module(fm);
                }
            }
            resolved.push(r);
        }
        let serial = NEXT_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        AddressSpace { mappings, resolved, unwinder, serial, read_at: Instant::now() }
    }

    pub fn may_reread(&self, now: Instant) -> bool {
        now.duration_since(self.read_at) >= MAPS_REREAD_INTERVAL
    }

    /// Index of the executable mapping holding `addr`.
    pub fn mapping(&self, addr: u64) -> Option<usize> {
        maps::find(&self.mappings, addr)
    }

    /// Approximate heap bytes held for this process alone.
    pub fn bytes(&self) -> usize {
        self.mappings.capacity() * std::mem::size_of::<ExecMapping>()
            + self.resolved.capacity() * std::mem::size_of::<Resolved>()
            + self.mappings.len() * 160
    }
}
