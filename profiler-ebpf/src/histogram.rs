//! In-kernel latency histograms: one sparse hash entry per (histogram,
//! bucket), see `profiler_common::histogram`.

use aya_ebpf::{bindings::BPF_NOEXIST, macros::map, maps::HashMap};
use profiler_common::{bucket_index, Counter, HistKey, HistValue, MAX_HISTOGRAM_ENTRIES};

use crate::shared::bump;

#[map]
static HISTOGRAMS: HashMap<HistKey, HistValue> = HashMap::with_max_entries(MAX_HISTOGRAM_ENTRIES, 0);

/// `*slot += n` as one BPF atomic add (the target has no compare-and-swap,
/// so `AtomicU64::fetch_add` is not offered; the intrinsic with its result
/// unused lowers to `lock xadd`).
#[inline(always)]
fn atomic_add(slot: *mut u64, n: u64) {
    // SAFETY: a map value, 8-byte aligned and alive while the program runs.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(slot, n) };
}

/// Count `ns` in a bucket. Buckets are shared by all CPUs: the additions are atomic.
#[inline(always)]
fn add(key: &HistKey, ns: u64) -> bool {
    let bump = |v: *mut HistValue| {
        // SAFETY: a map value, alive while the program runs; its fields are 8-byte aligned.
        atomic_add(unsafe { &raw mut (*v).count }, 1);
        atomic_add(unsafe { &raw mut (*v).sum }, ns);
    };
    if let Some(v) = HISTOGRAMS.get_ptr_mut(key) {
        bump(v);
        return true;
    }
    if HISTOGRAMS.insert(key, &HistValue { count: 1, sum: ns }, BPF_NOEXIST as u64).is_ok() {
        return true;
    }
    // Another CPU may have created it meanwhile.
    if let Some(v) = HISTOGRAMS.get_ptr_mut(key) {
        bump(v);
        return true;
    }
    false
}

/// Count one latency `ns` in histogram (`kind`, `id`): one lookup, which
/// adds to the bucket's count and to its exact sum.
#[inline(always)]
pub fn record(kind: u32, id: u32, ns: u64) {
    let key = HistKey { kind, id, bucket: bucket_index(ns), _pad: 0 };
    if !add(&key, ns) {
        bump(Counter::HistogramMapFull);
    }
}
