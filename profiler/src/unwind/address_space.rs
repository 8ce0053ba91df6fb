//! One process's executable mappings, the modules behind them, and the
//! framehop unwinder and rule cache built from them.

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

/// Approximate heap bytes of framehop's per-process rule cache (509 slots).
pub const RULE_CACHE_BYTES: usize = 509 * 24 + 1024;

pub type NativeUnwinder = UnwinderNative<Arc<[u8]>, MayAllocateDuringUnwind>;
pub type NativeCache = CacheNative<MayAllocateDuringUnwind>;

pub struct AddressSpace {
    /// Executable mappings, sorted by start; `resolved` is parallel.
    pub mappings: Vec<ExecMapping>,
    pub resolved: Vec<Resolved>,
    pub unwinder: NativeUnwinder,
    pub cache: NativeCache,
    pub read_at: Instant,
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
        AddressSpace { mappings, resolved, unwinder, cache: NativeCache::new(), read_at: Instant::now() }
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
        RULE_CACHE_BYTES
            + self.mappings.capacity() * std::mem::size_of::<ExecMapping>()
            + self.resolved.capacity() * std::mem::size_of::<Resolved>()
            + self.mappings.len() * 160
    }
}
