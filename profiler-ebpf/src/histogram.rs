//! In-kernel latency histograms: one sparse hash entry per (histogram,
//! bucket), see `profiler_common::histogram`.

use aya_ebpf::{bindings::BPF_NOEXIST, macros::map, maps::HashMap};
use profiler_common::{bucket_index, Counter, HistKey, HIST_SUM_BUCKET, MAX_HISTOGRAM_ENTRIES};

use crate::shared::bump;

#[map]
static HISTOGRAMS: HashMap<HistKey, u64> = HashMap::with_max_entries(MAX_HISTOGRAM_ENTRIES, 0);

/// `*slot += n` as one BPF atomic add (the target has no compare-and-swap,
/// so `AtomicU64::fetch_add` is not offered; the intrinsic with its result
/// unused lowers to `lock xadd`).
#[inline(always)]
fn atomic_add(slot: *mut u64, n: u64) {
    // SAFETY: a map value, 8-byte aligned and alive while the program runs.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(slot, n) };
}

/// Add `n` to a bucket. Buckets are shared by all CPUs: the addition is atomic.
#[inline(always)]
fn add(key: &HistKey, n: u64) -> bool {
    if let Some(slot) = HISTOGRAMS.get_ptr_mut(key) {
        atomic_add(slot, n);
        return true;
    }
    if HISTOGRAMS.insert(key, &n, BPF_NOEXIST as u64).is_ok() {
        return true;
    }
    // Another CPU may have created it meanwhile.
    if let Some(slot) = HISTOGRAMS.get_ptr_mut(key) {
        atomic_add(slot, n);
        return true;
    }
    false
}

/// Count one latency `ns` in histogram (`kind`, `id`), and add it to the histogram's exact sum.
#[inline(always)]
pub fn record(kind: u32, id: u32, ns: u64) {
    let mut key = HistKey { kind, id, bucket: bucket_index(ns), _pad: 0 };
    if !add(&key, 1) {
        bump(Counter::HistogramMapFull);
        return;
    }
    key.bucket = HIST_SUM_BUCKET;
    if !add(&key, ns) {
        bump(Counter::HistogramMapFull);
    }
}
