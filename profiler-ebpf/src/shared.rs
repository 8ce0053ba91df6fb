//! Maps and helpers used by several programs.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use profiler_common::{Counter, COUNTER_SLOTS};

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[inline(always)]
pub fn bump(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Per-CPU slot: no other writer can race with us.
        unsafe { *slot += 1 };
    }
}

/// Read a global set by user space before load.
#[inline(always)]
pub fn read_global<T: Copy>(global: &'static T) -> T {
    unsafe { core::ptr::read_volatile(global) }
}
