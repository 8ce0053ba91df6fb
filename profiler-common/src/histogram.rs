//! Latency histograms kept in the kernel: log-linear buckets with two
//! significant digits, like HdrHistogram's (`sigfig = 2`): values below 256
//! ns have their own bucket; above, each power of two is cut into 128
//! buckets, so a bucket is at most 1/128 (0.8%) of its values wide.
//!
//! The map is sparse: one entry per (histogram, bucket) that was hit, so a
//! histogram costs only the buckets it uses.

/// Name of the hash map of buckets, [`HistKey`] → [`HistValue`].
pub const HISTOGRAMS_MAP: &str = "HISTOGRAMS";
/// Bound of [`HISTOGRAMS_MAP`]; events beyond it are counted in
/// `Counter::HistogramMapFull`.
pub const MAX_HISTOGRAM_ENTRIES: u32 = 131_072;

/// Which latency a histogram holds; `HistKey::id` says of what.
/// Run-queue latency (wakeup or preemption to on-CPU); id: tgid.
pub const HIST_RUNQ: u32 = 1;
/// Off-CPU interval by state; id: an off-CPU `STATE_*` (sleeping, disk, other).
pub const HIST_OFF_CPU: u32 = 2;
/// System call latency (entry to exit); id: syscall number.
pub const HIST_SYSCALL: u32 = 3;
/// Hardware interrupt handler (own time, nested noise excluded); id: IRQ number.
pub const HIST_IRQ: u32 = 4;
/// Architecture interrupt vector (local timer, IPIs); id: `VECTOR_*`.
pub const HIST_VECTOR: u32 = 5;
/// Softirq handler (own time); id: vector number (`SOFTIRQ_NAMES`).
pub const HIST_SOFTIRQ: u32 = 6;

/// Key under which user space keeps a histogram's exact sum (the sum of
/// its buckets' [`HistValue::sum`]); the kernel never writes it.
pub const HIST_SUM_BUCKET: u32 = u32::MAX;

/// One bucket: how many values fell in it and their exact sum, side by
/// side so that counting a value is one map lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistValue {
    pub count: u64,
    pub sum: u64,
}

/// Values at or above `1 << HIST_VALUE_BITS` ns (about 73 minutes) fall in the last bucket.
pub const HIST_VALUE_BITS: u32 = 42;
/// Values below this have a bucket each.
const LINEAR: u64 = 256;
/// Buckets per power of two above [`LINEAR`] (and the shift that gives them).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

/// Key of one bucket of one histogram.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HistKey {
    /// `HIST_*`.
    pub kind: u32,
    pub id: u32,
    /// [`bucket_index`] of the values counted ([`HIST_SUM_BUCKET`] in user space only).
    pub bucket: u32,
    pub _pad: u32,
}

/// Index of the most significant set bit of a non-zero `v`, without a
/// loop or `leading_zeros` (which BPF lacks).
#[inline(always)]
fn msb(mut v: u64) -> u32 {
    let mut n = 0;
    if v >= 1 << 32 {
        v >>= 32;
        n += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        n += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        n += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        n += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        n += 2;
    }
    if v >= 1 << 1 {
        n += 1;
    }
    n
}

/// The bucket of a value in ns.
#[inline(always)]
pub fn bucket_index(v: u64) -> u32 {
    let v = if v >= 1 << HIST_VALUE_BITS { (1 << HIST_VALUE_BITS) - 1 } else { v };
    if v < LINEAR {
        return v as u32;
    }
    // msb >= 8: keep the top SUB_BITS + 1 bits.
    let shift = msb(v) - SUB_BITS;
    let mantissa = (v >> shift) - SUB; // 0..SUB
    (LINEAR + (shift as u64 - 1) * SUB + mantissa) as u32
}

/// Lowest and highest value (inclusive) of a bucket.
pub fn bucket_bounds(index: u32) -> (u64, u64) {
    let i = u64::from(index);
    if i < LINEAR {
        return (i, i);
    }
    let shift = (i - LINEAR) / SUB + 1;
    let mantissa = (i - LINEAR) % SUB + SUB;
    let low = mantissa << shift;
    (low, low + (1 << shift) - 1)
}

/// Number of buckets: every index is below it.
pub fn bucket_count() -> u32 {
    bucket_index((1 << HIST_VALUE_BITS) - 1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut next = 0;
        for i in 0..bucket_count() {
            let (low, high) = bucket_bounds(i);
            assert_eq!(low, next, "bucket {i}");
            assert!(high >= low);
            // Two significant digits: a bucket is at most 1/128 of its values wide.
            assert!(low < LINEAR || (high - low + 1) * 128 <= low, "bucket {i} too wide");
            assert_eq!(bucket_index(low), i);
            assert_eq!(bucket_index(high), i);
            next = high + 1;
        }
        assert_eq!(next, 1 << HIST_VALUE_BITS);
        assert_eq!(bucket_index(u64::MAX), bucket_count() - 1);
        assert_eq!(bucket_index(10_000_000), bucket_index(10_000_001));
        assert_ne!(bucket_index(10_000_000), bucket_index(10_100_000));
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] integers; any bit pattern is valid.
    unsafe impl aya::Pod for super::HistKey {}
    unsafe impl aya::Pod for super::HistValue {}
}
