//! The kernel's sparse buckets, named and summarized: percentiles through
//! HdrHistogram, exact sums, aggregates and misery counts (`histograms.json`).
//!
//! The kernel's buckets (`profiler_common::histogram`) have the layout of an
//! HdrHistogram with `lowest = 1`, two significant digits: values below 256
//! ns have a bucket each, above, each power of two is cut into 128 buckets.
//! Each bucket's count is recorded at its midpoint, `low + (high - low) / 2`,
//! which lands in the same HdrHistogram bucket, so the percentiles HdrHistogram
//! reports are the upper bounds (`high`) of the kernel buckets they fall in:
//! never below the true value and at most 1/128 (0.8%) above it.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use profiler_common::histogram::{bucket_bounds, bucket_count};
use profiler_common::noise::{SOFTIRQ_NAMES, VECTOR_NAMES};
use profiler_common::sched::{STATE_DISK, STATE_OTHER, STATE_SLEEPING};
use profiler_common::HIST_SUM_BUCKET;
use serde::Serialize;

use super::raw::{HistogramNames, HistogramsRaw};
use super::slo::Slo;

/// What the `precision` field of `histograms.json` says.
pub const PRECISION: &str = "log-linear buckets with 2 significant digits: exact below 256 ns, \
     above at most 1/128 (0.8%) of their values wide; percentiles and max_ns are the upper bounds \
     of their buckets, sum_ns and mean_ns are exact";

/// Largest value the HdrHistograms track (the kernel clamps to just below it).
const HDR_HIGHEST: u64 = 1 << 42;
/// Significant digits of the HdrHistograms, as in the kernel.
const HDR_SIGFIG: u8 = 2;

pub use super::kind::Kind;

/// `histograms.json`: every latency histogram of a window and the misery
/// counts of the `--slo` thresholds.
#[derive(Clone, Debug, Serialize)]
pub struct Histograms {
    /// Length of the window.
    pub duration_ns: u64,
    /// How exact the numbers are ([`PRECISION`]).
    pub precision: &'static str,
    /// Events not counted because the kernel's histogram map was full.
    pub dropped: u64,
    /// By kind (in [`Kind::ALL`] order), aggregates first, then by count descending.
    pub histograms: Vec<LatencyHistogram>,
    /// One per `--slo` threshold, in the order given.
    pub slo: Vec<SloResult>,
}

/// One histogram with its summary.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyHistogram {
    pub kind: Kind,
    /// tgid, off-CPU `STATE_*`, syscall number, IRQ number, `VECTOR_*` or
    /// softirq vector; 0 for the aggregates.
    pub id: u32,
    /// `COMM (pid N)`, `sleeping`, `read`, `36 virtio1-req.0`, `LOC`, `NET_RX`, ...
    pub name: String,
    /// True for "all processes" and "all syscalls", the sums of their kind.
    pub aggregate: bool,
    /// Number of values.
    pub count: u64,
    /// Exact sum of the values (estimated from bucket midpoints if the
    /// kernel's sum entry is missing).
    pub sum_ns: u64,
    /// `sum_ns / count`, rounded.
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    /// Upper bound of the highest bucket hit.
    pub max_ns: u64,
    /// `[low, high, count]` of every bucket hit (bounds inclusive, ns), ascending.
    pub buckets: Vec<(u64, u64, u64)>,
}

/// Misery count of one `--slo` threshold.
#[derive(Clone, Debug, Serialize)]
pub struct SloResult {
    /// As written, e.g. `syscall:read=10ms`.
    pub spec: String,
    /// The histogram kind the threshold applies to.
    pub kind: Kind,
    /// The part before `=`, e.g. `syscall:read`.
    pub target: String,
    pub threshold_ns: u64,
    /// Values in the histograms the target selects.
    pub events: u64,
    /// Values above the threshold. A bucket counts iff its low bound is
    /// above the threshold, so the bucket that straddles the threshold (at
    /// most 1/128 of the threshold wide) is left out: the count is exact or
    /// low by at most that one bucket's count.
    pub exceeding: u64,
    /// `exceeding / events`, 0 without events.
    pub fraction: f64,
}

/// Buckets and sum of one histogram while it is assembled.
#[derive(Clone, Debug, Default)]
struct Group {
    /// Bucket index → count.
    buckets: BTreeMap<u32, u64>,
    /// The kernel's `HIST_SUM_BUCKET`, if present.
    sum: Option<u64>,
}

impl Group {
    /// Adds `other`'s counts and sum (its estimate if it has no sum entry).
    fn merge(&mut self, other: &Group) {
        let sum = self.sum_or_estimate().saturating_add(other.sum_or_estimate());
        for (&b, &n) in &other.buckets {
            let c = self.buckets.entry(b).or_default();
            *c = c.saturating_add(n);
        }
        self.sum = Some(sum);
    }

    /// The kernel's sum, or the sum of the bucket midpoints without one
    /// (its entry can be lost to a full map).
    fn sum_or_estimate(&self) -> u64 {
        self.sum.unwrap_or_else(|| {
            self.buckets.iter().fold(0u64, |acc, (&index, &n)| {
                let (low, high) = bucket_bounds(index);
                acc.saturating_add(representative(low, high).saturating_mul(n))
            })
        })
    }
}

/// A histogram with what `--slo` targets match against.
struct Built {
    hist: LatencyHistogram,
    /// Process comm (runq), state name (off_cpu), syscall, IRQ number,
    /// vector or softirq name; `None` for unnamed processes and aggregates.
    key: Option<String>,
}

/// Names, sums and summarizes the kernel's histograms and evaluates `slos`.
pub fn build(raw: &HistogramsRaw, names: &HistogramNames, slos: &[Slo]) -> Histograms {
    let mut groups: BTreeMap<(Kind, u32), Group> = BTreeMap::new();
    let last = bucket_count() - 1;
    for (key, value) in &raw.entries {
        let Some(kind) = Kind::from_raw(key.kind) else { continue };
        // Both call-function vectors are counted in /proc/interrupts' CAL row: one histogram.
        let id = if kind == Kind::Vector { canonical_vector(key.id) } else { key.id };
        let group = groups.entry((kind, id)).or_default();
        if key.bucket == HIST_SUM_BUCKET {
            group.sum = Some(group.sum.unwrap_or(0).saturating_add(*value));
        } else {
            let c = group.buckets.entry(key.bucket.min(last)).or_default();
            *c = c.saturating_add(*value);
        }
    }

    let mut built = Vec::new();
    for kind in [Kind::Runq, Kind::Syscall] {
        let mut all = Group::default();
        let mut any = false;
        for (_, g) in groups.range((kind, 0)..=(kind, u32::MAX)) {
            all.merge(g);
            any = true;
        }
        let name = if kind == Kind::Runq { "all processes" } else { "all syscalls" };
        if let Some(mut hist) = any.then(|| summarize(kind, 0, name.to_owned(), &all)).flatten() {
            hist.aggregate = true;
            built.push(Built { hist, key: None });
        }
    }
    for (&(kind, id), group) in &groups {
        let (name, key) = name_of(kind, id, names);
        if let Some(hist) = summarize(kind, id, name, group) {
            built.push(Built { hist, key });
        }
    }
    built.sort_by_key(|b| (b.hist.kind, !b.hist.aggregate, std::cmp::Reverse(b.hist.count), b.hist.id));

    let slo = slos.iter().map(|s| evaluate(s, &built)).collect();
    Histograms {
        duration_ns: raw.duration_ns,
        precision: PRECISION,
        dropped: raw.dropped,
        histograms: built.into_iter().map(|b| b.hist).collect(),
        slo,
    }
}

/// The first vector id with the same /proc/interrupts name as `id`.
fn canonical_vector(id: u32) -> u32 {
    let Some(name) = VECTOR_NAMES.get(id as usize) else { return id };
    VECTOR_NAMES.iter().position(|n| n == name).map_or(id, |i| i as u32)
}

/// Display name and `--slo` match key of a histogram.
fn name_of(kind: Kind, id: u32, names: &HistogramNames) -> (String, Option<String>) {
    match kind {
        Kind::Runq => match names.processes.get(&id) {
            Some(comm) => (format!("{comm} (pid {id})"), Some(comm.clone())),
            None => (format!("pid {id}"), None),
        },
        Kind::OffCpu => {
            let name = match id {
                STATE_SLEEPING => "sleeping".to_owned(),
                STATE_DISK => "disk".to_owned(),
                STATE_OTHER => "other".to_owned(),
                _ => format!("state {id}"),
            };
            (name.clone(), Some(name))
        }
        Kind::Syscall => {
            let name = crate::profile::syscall_name_of(&names.arch, id as i32);
            (name.clone(), Some(name))
        }
        Kind::Irq => match names.irqs.get(&id) {
            Some(action) if !action.is_empty() => (format!("{id} {action}"), Some(id.to_string())),
            _ => (format!("IRQ {id}"), Some(id.to_string())),
        },
        Kind::Vector => {
            let name = VECTOR_NAMES.get(id as usize).map_or_else(|| format!("vector {id}"), |n| (*n).to_owned());
            (name.clone(), Some(name))
        }
        Kind::Softirq => {
            let name = SOFTIRQ_NAMES.get(id as usize).map_or_else(|| format!("softirq {id}"), |n| (*n).to_owned());
            (name.clone(), Some(name))
        }
    }
}

/// A fresh HdrHistogram with the kernel's bucket layout.
fn new_hdr() -> Histogram<u64> {
    // Constant, valid bounds: creation cannot fail.
    Histogram::new_with_bounds(1, HDR_HIGHEST, HDR_SIGFIG).expect("valid HdrHistogram bounds")
}

/// The value a bucket's count is recorded at in the HdrHistogram: its midpoint.
pub fn representative(low: u64, high: u64) -> u64 {
    low + (high - low) / 2
}

/// Summary of one group, `None` if it holds no values.
fn summarize(kind: Kind, id: u32, name: String, group: &Group) -> Option<LatencyHistogram> {
    let mut hdr = new_hdr();
    let mut buckets = Vec::with_capacity(group.buckets.len());
    let mut count = 0u64;
    for (&index, &n) in &group.buckets {
        if n == 0 {
            continue;
        }
        let (low, high) = bucket_bounds(index);
        let rep = representative(low, high);
        hdr.saturating_record_n(rep, n);
        buckets.push((low, high, n));
        count = count.saturating_add(n);
    }
    if count == 0 {
        return None;
    }
    let sum_ns = group.sum_or_estimate();
    let q = |q: f64| hdr.value_at_quantile(q);
    Some(LatencyHistogram {
        kind,
        id,
        name,
        aggregate: false,
        count,
        sum_ns,
        mean_ns: ((u128::from(sum_ns) + u128::from(count) / 2) / u128::from(count)) as u64,
        p50_ns: q(0.5),
        p90_ns: q(0.9),
        p99_ns: q(0.99),
        p999_ns: q(0.999),
        p9999_ns: q(0.9999),
        max_ns: buckets.last().map_or(0, |b| b.1),
        buckets,
    })
}

impl LatencyHistogram {
    /// The value at quantile `q` (0..=1) from the buckets, as HdrHistogram
    /// computes it: the high bound of the bucket holding the
    /// `ceil(q * count)`-th value (the low bound for `q == 0`).
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        let q = q.clamp(0.0, 1.0);
        let target = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for &(low, high, n) in &self.buckets {
            seen = seen.saturating_add(n);
            if seen >= target {
                return if q == 0.0 { low } else { high };
            }
        }
        self.max_ns
    }
}

/// Misery count of one threshold over the histograms its target selects.
fn evaluate(slo: &Slo, built: &[Built]) -> SloResult {
    let mut events = 0u64;
    let mut exceeding = 0u64;
    for b in built {
        if b.hist.aggregate || b.hist.kind != slo.kind {
            continue;
        }
        if let Some(want) = &slo.name {
            if !b.key.as_deref().is_some_and(|key| slo_name_matches(slo.kind, want, key)) {
                continue;
            }
        }
        events = events.saturating_add(b.hist.count);
        let above: u64 = b.hist.buckets.iter().filter(|bk| bk.0 > slo.threshold_ns).map(|bk| bk.2).sum();
        exceeding = exceeding.saturating_add(above);
    }
    SloResult {
        spec: slo.spec.clone(),
        kind: slo.kind,
        target: slo.target().to_owned(),
        threshold_ns: slo.threshold_ns,
        events,
        exceeding,
        fraction: if events == 0 { 0.0 } else { exceeding as f64 / events as f64 },
    }
}

/// Whether a `--slo` target's name selects a histogram with match key `key`.
/// Process names match the kernel's comm, which is cut to 15 bytes.
fn slo_name_matches(kind: Kind, want: &str, key: &str) -> bool {
    match kind {
        Kind::Runq => want == key || (key.len() >= 15 && want.starts_with(key)),
        _ => want.eq_ignore_ascii_case(key),
    }
}

#[cfg(test)]
mod tests {
    use profiler_common::histogram::bucket_index;
    use profiler_common::{HistKey, HIST_IRQ, HIST_OFF_CPU, HIST_RUNQ, HIST_SOFTIRQ, HIST_SYSCALL, HIST_VECTOR};

    use super::*;
    use crate::latency::slo::parse_slos;

    fn key(kind: u32, id: u32, bucket: u32) -> HistKey {
        HistKey { kind, id, bucket, _pad: 0 }
    }

    /// Raw entries for `values` recorded into histogram (kind, id), like the kernel does.
    fn record(entries: &mut Vec<(HistKey, u64)>, kind: u32, id: u32, values: &[u64]) {
        let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
        for &v in values {
            *counts.entry(bucket_index(v)).or_default() += 1;
        }
        entries.extend(counts.into_iter().map(|(b, n)| (key(kind, id, b), n)));
        entries.push((key(kind, id, HIST_SUM_BUCKET), values.iter().sum()));
    }

    fn raw(entries: Vec<(HistKey, u64)>) -> HistogramsRaw {
        HistogramsRaw { duration_ns: 1_000_000_000, entries, dropped: 0 }
    }

    fn names() -> HistogramNames {
        HistogramNames {
            processes: BTreeMap::from([(100, "spinner".to_owned()), (200, "postgres".to_owned())]),
            irqs: BTreeMap::from([(36, "virtio1-req.0".to_owned())]),
            arch: "x86_64".to_owned(),
        }
    }

    #[test]
    fn kernel_buckets_are_hdr_buckets() {
        // Every kernel bucket maps onto one HdrHistogram bucket with the same bounds.
        let hdr = new_hdr();
        for index in 0..bucket_count() {
            let (low, high) = bucket_bounds(index);
            let rep = representative(low, high);
            assert!(low <= rep && rep <= high);
            assert_eq!(hdr.lowest_equivalent(rep), low, "bucket {index}");
            assert_eq!(hdr.highest_equivalent(rep), high, "bucket {index}");
        }
    }

    #[test]
    fn bucket_round_trip_known_values() {
        let values = [0, 1, 255, 256, 257, 1000, 10_000_000, 10_049_999, (1 << 42) - 1];
        let mut entries = Vec::new();
        record(&mut entries, HIST_RUNQ, 100, &values);
        let h = build(&raw(entries), &names(), &[]);
        let runq: Vec<_> = h.histograms.iter().filter(|h| !h.aggregate).collect();
        assert_eq!(runq.len(), 1);
        let r = runq[0];
        assert_eq!(r.count, values.len() as u64);
        assert_eq!(r.sum_ns, values.iter().sum::<u64>());
        // Exact below 256; 256 and 257 share a 2-wide bucket.
        assert_eq!(r.buckets[0], (0, 0, 1));
        assert_eq!(r.buckets[1], (1, 1, 1));
        assert_eq!(r.buckets[2], (255, 255, 1));
        assert_eq!(r.buckets[3], (256, 257, 2));
        assert_eq!(r.buckets[4], (1000, 1003, 1));
        // 10 ms and 10.05 ms fall in one bucket 65536 ns wide.
        assert_eq!(r.buckets[5], (9_961_472, 10_027_007, 1));
        assert_eq!(r.buckets[6], (10_027_008, 10_092_543, 1));
        assert_eq!(r.max_ns, (1 << 42) - 1);
        // Median: the 5th of 9 values, 257 ns → its bucket's upper bound; p90: the 9th.
        assert_eq!(r.p50_ns, 257);
        assert_eq!(r.value_at_quantile(0.5), 257);
        assert_eq!(r.p90_ns, (1 << 42) - 1);
        assert_eq!(r.value_at_quantile(0.0), 0);
        assert_eq!(r.value_at_quantile(1.0), r.max_ns);
    }

    #[test]
    fn percentiles_of_a_synthetic_distribution() {
        // 1..=100_000 ns uniformly: p(q) ≈ q * 100_000, within one bucket (1/128) above.
        let values: Vec<u64> = (1..=100_000).collect();
        let mut entries = Vec::new();
        record(&mut entries, HIST_SYSCALL, 0, &values);
        let h = build(&raw(entries), &names(), &[]);
        let s = h.histograms.iter().find(|h| !h.aggregate).expect("read histogram");
        assert_eq!(s.name, "read");
        for (got, q) in [(s.p50_ns, 0.5), (s.p90_ns, 0.9), (s.p99_ns, 0.99), (s.p999_ns, 0.999), (s.p9999_ns, 0.9999)] {
            let exact = (q * 100_000.0_f64).ceil() as u64;
            assert!(got >= exact && got <= exact + exact / 128 + 1, "p{q}: {got} vs {exact}");
            assert_eq!(s.value_at_quantile(q), got, "bucket walk agrees with HdrHistogram at {q}");
        }
        assert_eq!(s.mean_ns, 50_001); // 50_000.5 rounded
        assert!(s.max_ns >= 100_000 && s.max_ns <= 100_000 + 100_000 / 128);
    }

    #[test]
    fn names_aggregates_and_order() {
        let mut e = Vec::new();
        record(&mut e, HIST_RUNQ, 100, &[1000; 5]);
        record(&mut e, HIST_RUNQ, 200, &[2000; 10]);
        record(&mut e, HIST_RUNQ, 300, &[3000; 1]);
        record(&mut e, HIST_SOFTIRQ, 3, &[500]);
        record(&mut e, HIST_IRQ, 36, &[500]);
        record(&mut e, HIST_IRQ, 37, &[500, 600]);
        record(&mut e, HIST_VECTOR, 2, &[700]);
        record(&mut e, HIST_VECTOR, 3, &[800]);
        record(&mut e, HIST_OFF_CPU, STATE_DISK, &[1_000_000]);
        record(&mut e, HIST_SYSCALL, 1, &[100, 200]);
        record(&mut e, HIST_SYSCALL, 0, &[100]);
        record(&mut e, 99, 0, &[1]); // unknown kind: ignored
        let h = build(&raw(e), &names(), &[]);
        let got: Vec<(&str, &str, u64)> =
            h.histograms.iter().map(|h| (h.kind.as_str(), h.name.as_str(), h.count)).collect();
        assert_eq!(
            got,
            [
                ("runq", "all processes", 16),
                ("runq", "postgres (pid 200)", 10),
                ("runq", "spinner (pid 100)", 5),
                ("runq", "pid 300", 1),
                ("off_cpu", "disk", 1),
                ("syscall", "all syscalls", 3),
                ("syscall", "write", 2),
                ("syscall", "read", 1),
                ("irq", "IRQ 37", 2),
                ("irq", "36 virtio1-req.0", 1),
                ("vector", "CAL", 2),
                ("softirq", "NET_RX", 1),
            ]
        );
        let all = &h.histograms[0];
        assert!(all.aggregate);
        assert_eq!(all.id, 0);
        assert_eq!(all.sum_ns, 5 * 1000 + 10 * 2000 + 3000);
        assert_eq!(h.histograms[10].sum_ns, 1500);
    }

    #[test]
    fn missing_sum_is_estimated_and_bad_buckets_are_clamped() {
        let e = vec![(key(HIST_RUNQ, 1, 1000), 2), (key(HIST_RUNQ, 1, u32::MAX - 1), 1), (key(HIST_RUNQ, 2, 5), 0)];
        let h = build(&raw(e), &HistogramNames::default(), &[]);
        let r = h.histograms.iter().find(|h| h.id == 1 && !h.aggregate).expect("pid 1");
        let (low, high) = bucket_bounds(1000);
        assert_eq!(r.count, 3);
        assert_eq!(r.max_ns, (1 << 42) - 1);
        assert!(r.sum_ns >= 2 * low + (1 << 41) && r.sum_ns <= 2 * high + (1 << 42));
        // pid 2 has no values: no histogram.
        assert!(!h.histograms.iter().any(|h| h.id == 2));
        // The aggregate adds the estimate to the exact sums of the others.
        let mut e = vec![(key(HIST_RUNQ, 1, 1000), 2)];
        record(&mut e, HIST_RUNQ, 3, &[5000, 7000]);
        let h = build(&raw(e), &HistogramNames::default(), &[]);
        let estimate = 2 * representative(low, high);
        assert_eq!(h.histograms[0].name, "all processes");
        assert_eq!(h.histograms[0].sum_ns, estimate + 12_000);
    }

    #[test]
    fn misery_counts() {
        let mut e = Vec::new();
        // 10 values at 500 µs, 3 at 2 ms, 1 exactly in the bucket holding 1 ms.
        let mut values = vec![500_000; 10];
        values.extend([2_000_000; 3]);
        values.push(1_000_000);
        record(&mut e, HIST_RUNQ, 100, &values);
        record(&mut e, HIST_RUNQ, 200, &[5_000_000; 4]);
        record(&mut e, HIST_SYSCALL, 0, &[20_000_000, 1_000]);
        record(&mut e, HIST_OFF_CPU, STATE_DISK, &[30_000_000]);
        let slos = parse_slos("runq=1ms,runq:spinner=1ms,runq:nobody=1ms,syscall:read=10ms,disk=20ms,sleeping=1s")
            .expect("valid slos");
        let h = build(&raw(e), &names(), &slos);
        let got: Vec<(&str, u64, u64)> = h.slo.iter().map(|s| (s.target.as_str(), s.events, s.exceeding)).collect();
        assert_eq!(
            got,
            [
                ("runq", 18, 7),
                ("runq:spinner", 14, 3),
                ("runq:nobody", 0, 0),
                ("syscall:read", 2, 1),
                ("disk", 1, 1),
                ("sleeping", 0, 0),
            ]
        );
        assert!((h.slo[0].fraction - 7.0 / 18.0).abs() < 1e-12);
        assert_eq!(h.slo[0].kind, Kind::Runq);
        assert_eq!(h.slo[0].threshold_ns, 1_000_000);
        assert_eq!(h.slo[2].fraction, 0.0);
    }

    #[test]
    fn json_field_names() {
        let mut e = Vec::new();
        record(&mut e, HIST_OFF_CPU, STATE_SLEEPING, &[10_000_000]);
        let slos = parse_slos("sleeping=5ms").expect("valid slo");
        let mut r = raw(e);
        r.dropped = 7;
        let v = serde_json::to_value(build(&r, &names(), &slos)).expect("serializable");
        assert_eq!(v["duration_ns"], 1_000_000_000);
        assert_eq!(v["dropped"], 7);
        assert!(v["precision"].as_str().is_some_and(|s| s.contains("2 significant digits")));
        let h = &v["histograms"][0];
        for field in [
            "kind",
            "id",
            "name",
            "aggregate",
            "count",
            "sum_ns",
            "mean_ns",
            "p50_ns",
            "p90_ns",
            "p99_ns",
            "p999_ns",
            "p9999_ns",
            "max_ns",
            "buckets",
        ] {
            assert!(h.get(field).is_some(), "missing {field}");
        }
        assert_eq!(h["kind"], "off_cpu");
        assert_eq!(h["name"], "sleeping");
        assert_eq!(h["buckets"][0], serde_json::json!([9_961_472, 10_027_007, 1]));
        let s = &v["slo"][0];
        assert_eq!(s["spec"], "sleeping=5ms");
        assert_eq!(s["kind"], "off_cpu");
        assert_eq!(s["threshold_ns"], 5_000_000);
        assert_eq!(s["events"], 1);
        assert_eq!(s["exceeding"], 1);
        assert_eq!(s["fraction"], 1.0);
    }
}
