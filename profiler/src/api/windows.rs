//! Questions asked of a source's stored windows over a range: their
//! merge, their noise, and the timeline of their totals.

use serde::Serialize;

use super::source::Source;
use crate::{
    agent::store::{Segment, Stored},
    profile::Profile,
};

/// Read every stored window overlapping `from..to`, oldest first, and hand
/// it to `f`; a window gone meanwhile (retention, a merge) is skipped.
fn each_window(source: &dyn Source, from: u64, to: u64, mut f: impl FnMut(&Segment, Stored)) -> Result<(), String> {
    for seg in &source.range(from, to) {
        let _one = crate::sys::mem::window_sized();
        if let Some(stored) = source.read(seg)? {
            f(seg, stored);
        }
    }
    Ok(())
}

/// The merge of the windows overlapping a range.
#[derive(Default)]
pub struct Merged {
    pub profile: Profile,
    /// How many windows.
    pub windows: usize,
    /// The span from the first window's start to the last one's end.
    pub covered: Option<(u64, u64)>,
}

/// `covered` widened by `seg`'s span.
fn cover(covered: &mut Option<(u64, u64)>, seg: &Segment) {
    let (a, b) = covered.unwrap_or((seg.start_unix_ns, seg.end_unix_ns));
    *covered = Some((a.min(seg.start_unix_ns), b.max(seg.end_unix_ns)));
}

/// The merge of the windows overlapping `from..to`.
pub fn merge(source: &dyn Source, from: u64, to: u64) -> Result<Merged, String> {
    let mut merger: Option<crate::model::window::ProfileMerger> = None;
    let mut n = 0;
    let mut covered: Option<(u64, u64)> = None;
    each_window(source, from, to, |seg, s| {
        let p = s.profile;
        n += 1;
        cover(&mut covered, seg);
        match merger.as_mut() {
            None => merger = Some(crate::model::window::ProfileMerger::new(p)),
            Some(m) => m.add(&p),
        }
    })?;
    Ok(Merged { profile: merger.map(|m| m.finish()).unwrap_or_default(), windows: n, covered })
}

/// The folded stacks of the windows overlapping `from..to`, summed window
/// by window: a query holds one window at a time and the lines, never the
/// merge of the range (under an exec storm a minute is 120,000 process
/// generations). Each line's value is a sum over stacks, so the sum of the
/// windows' folds is the fold of their merge; in the wall view each
/// window's samples count at that window's own sampling period, where a
/// merge would apply the last one to all. `parts`: the records the view
/// folds (the rest are not parsed).
pub fn fold(
    source: &dyn Source,
    from: u64,
    to: u64,
    parts: crate::samples_file::Parts,
    mut fold_one: impl FnMut(&mut Profile) -> crate::output::folded::Folded,
) -> Result<Folded, String> {
    let mut out = Folded::default();
    for seg in &source.range(from, to) {
        let _one = crate::sys::mem::window_sized();
        let Some(mut s) = source.read_parts(seg, parts, false)? else { continue };
        out.windows += 1;
        cover(&mut out.covered, seg);
        for (line, v) in fold_one(&mut s.profile) {
            *out.folded.entry(line).or_default() += v;
        }
    }
    Ok(out)
}

/// The folded stacks of a range.
#[derive(Default)]
pub struct Folded {
    pub folded: crate::output::folded::Folded,
    /// How many windows.
    pub windows: usize,
    /// The span from the first window's start to the last one's end.
    pub covered: Option<(u64, u64)>,
}

/// The noise of the windows overlapping `from..to`, merged, and how many
/// windows had none stored.
pub fn noise(
    source: &dyn Source,
    from: u64,
    to: u64,
) -> Result<(Option<crate::noise::continuous::ContinuousRaw>, u64), String> {
    let mut merged: Option<crate::noise::continuous::ContinuousRaw> = None;
    let mut without = 0;
    each_window(source, from, to, |_, s| match (s.noise, merged.as_mut()) {
        (None, _) => without += 1,
        (Some(n), None) => merged = Some(n),
        (Some(n), Some(m)) => *m = crate::model::window::merge_noise(m, &n),
    })?;
    Ok((merged, without))
}

/// The timeline of `from..to`: per stored segment (`step` none), or per
/// `step` from `from` (each segment in the step its start falls in).
/// Without `group_by`, each segment's totals come from `cache` once read.
pub fn timeline(
    source: &dyn Source,
    cache: &StepCache,
    from: u64,
    to: u64,
    step: Option<u64>,
    group_by: Option<&crate::query::dimension::GroupBy>,
) -> Result<Vec<Step>, String> {
    let mut steps: Vec<Step> = Vec::new();
    let mut add = |seg: &Segment, one: Step| {
        let Some(len) = step.filter(|l| *l > 0) else { return steps.push(one) };
        let bucket = from + (seg.start_unix_ns.saturating_sub(from) / len) * len;
        match steps.last_mut() {
            Some(last) if last.start_unix_ns == bucket => last.absorb(one),
            _ => steps.push(Step { start_unix_ns: bucket, ..one }),
        }
    };
    match group_by {
        Some(g) => each_window(source, from, to, |seg, s| add(seg, Step::of(seg, &s, Some(g))))?,
        None => {
            for seg in &source.range(from, to) {
                let one = match cache.get(seg) {
                    Some(one) => one,
                    None => {
                        let _one = crate::sys::mem::window_sized();
                        // Totals and noise: the exact times, not the stacks
                        // (under an exec storm a segment parsed whole is
                        // 20 MB, its threads alone a fifth of that).
                        let parts = crate::samples_file::Parts { stacks: false, off_cpu: false, threads: true };
                        match source.read_parts(seg, parts, true)? {
                            Some(stored) => cache.put(seg, Step::of(seg, &stored, None)),
                            None => continue,
                        }
                    }
                };
                add(seg, one);
            }
        }
    }
    Ok(steps)
}

/// Each stored segment's timeline step (totals, no groups). Segments never
/// change once written, so a timeline parses a segment once, not at every
/// query: under an exec storm a 5-minute timeline is 30 windows of over a
/// megabyte each. Bounded by [`MAX_CACHED_STEPS`]; past it the oldest
/// segments' steps go first (retention deletes those first too).
#[derive(Default)]
pub struct StepCache {
    inner: std::sync::Mutex<StepCacheInner>,
}

/// Most segments whose steps are kept (a step with its noise by source is
/// a few KB). A week of an ordinary host's merged segments is ~300; an exec
/// storm's windows stay unmerged, and the oldest go first.
pub const MAX_CACHED_STEPS: usize = 1024;

#[derive(Default)]
struct StepCacheInner {
    /// By the segment's start, path and size (a file of the same name
    /// written again differs in one of them).
    steps: std::collections::BTreeMap<(u64, std::path::PathBuf, u64), Step>,
    stats: StepCacheStats,
}

/// What the cache did, for the status endpoint.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StepCacheStats {
    pub entries: u64,
    pub capacity: u64,
    pub hits: u64,
    pub misses: u64,
    pub evicted: u64,
}

impl StepCache {
    fn key(seg: &Segment) -> (u64, std::path::PathBuf, u64) {
        (seg.start_unix_ns, seg.path.clone(), seg.bytes)
    }

    fn get(&self, seg: &Segment) -> Option<Step> {
        let mut c = crate::sys::lock(&self.inner);
        let step = c.steps.get(&Self::key(seg)).cloned();
        match step.is_some() {
            true => c.stats.hits += 1,
            false => c.stats.misses += 1,
        }
        step
    }

    fn put(&self, seg: &Segment, step: Step) -> Step {
        let mut c = crate::sys::lock(&self.inner);
        c.steps.insert(Self::key(seg), step.clone());
        while c.steps.len() > MAX_CACHED_STEPS {
            c.steps.pop_first();
            c.stats.evicted += 1;
        }
        step
    }

    pub fn stats(&self) -> StepCacheStats {
        let c = crate::sys::lock(&self.inner);
        StepCacheStats { entries: c.steps.len() as u64, capacity: MAX_CACHED_STEPS as u64, ..c.stats }
    }
}

/// One step of the timeline: the totals of the segments that start in it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Step {
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// Stored segments the step holds (windows, or merged segments).
    pub segments: u64,
    #[serde(flatten)]
    pub totals: Totals,
    pub threads: u64,
    pub samples: u64,
    pub lost_samples: u64,
    pub dropped_events: u64,
    /// Rates in effect at the step's end (the cost governor's).
    pub state_hz: Option<f64>,
    pub frequency_hz: Option<f64>,
    /// Noise seconds by CPU (/proc/stat) and by source (estimated from
    /// on-CPU samples); absent where a segment did not store its noise.
    pub noise: Option<StepNoise>,
    /// Per group, when asked (`group_by`): the largest by wall-clock time,
    /// at most [`MAX_STEP_GROUPS`]; the rest summed as `other`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupStep>,
}

/// Most groups per step.
pub const MAX_STEP_GROUPS: usize = 20;

/// Seconds by thread state.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    /// Exact, from the kernel's counters.
    pub cpu_s: f64,
    pub runqueue_s: f64,
    /// Sampled: the rest of each thread's time split by the states its
    /// snapshots saw.
    pub sleeping_s: f64,
    pub disk_s: f64,
    pub other_s: f64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.cpu_s += o.cpu_s;
        self.runqueue_s += o.runqueue_s;
        self.sleeping_s += o.sleeping_s;
        self.disk_s += o.disk_s;
        self.other_s += o.other_s;
    }

    fn of(on_cpu_ns: u64, off: [u64; 4]) -> Self {
        let s = |ns: u64| ns as f64 / 1e9;
        Self {
            cpu_s: s(on_cpu_ns),
            runqueue_s: s(off[0]),
            sleeping_s: s(off[1]),
            disk_s: s(off[2]),
            other_s: s(off[3]),
        }
    }

    fn wall(&self) -> f64 {
        self.cpu_s + self.runqueue_s + self.sleeping_s + self.disk_s + self.other_s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupStep {
    pub group: serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StepNoise {
    /// Per CPU, from /proc/stat.
    pub cpus: std::collections::BTreeMap<u32, CpuNoise>,
    /// Per source (`softirq NET_RX`, `irq …`, `thread kworker/0:1`), summed
    /// over CPUs: samples × the sampling period.
    pub sources: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuNoise {
    pub softirq_s: f64,
    /// Absent where the kernel does not account hard IRQ time.
    pub irq_s: Option<f64>,
    pub steal_s: f64,
}

impl StepNoise {
    fn of(n: &crate::noise::continuous::ContinuousRaw) -> Self {
        let s = |ns: u64| ns as f64 / 1e9;
        let accounted = n.hardirq_accounting() == crate::noise::proc_counts::HardirqAccounting::Accounted;
        let cpus = n
            .stat
            .iter()
            .map(|(cpu, t)| {
                (
                    *cpu,
                    CpuNoise {
                        softirq_s: s(t.softirq_ns),
                        irq_s: accounted.then(|| s(t.irq_ns)),
                        steal_s: s(t.steal_ns),
                    },
                )
            })
            .collect();
        let mut sources = std::collections::BTreeMap::new();
        for per_cpu in n.sampled.sources.values() {
            for (source, samples) in per_cpu {
                *sources.entry(source.label()).or_insert(0.0) += s(samples.saturating_mul(n.sampled.period_ns));
            }
        }
        Self { cpus, sources }
    }

    fn add(&mut self, o: &StepNoise) {
        for (cpu, c) in &o.cpus {
            match self.cpus.get_mut(cpu) {
                None => {
                    self.cpus.insert(*cpu, *c);
                }
                Some(e) => {
                    e.softirq_s += c.softirq_s;
                    e.steal_s += c.steal_s;
                    e.irq_s = e.irq_s.zip(c.irq_s).map(|(a, b)| a + b);
                }
            }
        }
        for (k, v) in &o.sources {
            *self.sources.entry(k.clone()).or_insert(0.0) += v;
        }
    }
}

impl Step {
    /// A segment's step; with `group_by`, its groups too.
    fn of(seg: &Segment, stored: &Stored, group_by: Option<&crate::query::dimension::GroupBy>) -> Self {
        let p = &stored.profile;
        let mut totals = Totals::default();
        for t in p.thread_times.values() {
            totals.add(&Totals::of(t.on_cpu_ns, t.off_cpu_ns));
        }
        let groups = match group_by {
            Some(g) => {
                let grouped = crate::profile::Profile { group_by: g.clone(), ..p.clone() };
                crate::group::groups(&grouped)
                    .into_iter()
                    .map(|t| {
                        let off = t.off_cpu_ns.unwrap_or_default();
                        GroupStep {
                            group: t.key,
                            totals: Totals::of(
                                t.on_cpu_ns.unwrap_or(0),
                                [off.runnable, off.sleeping, off.disk, off.other],
                            ),
                        }
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        Self {
            start_unix_ns: seg.start_unix_ns,
            end_unix_ns: seg.end_unix_ns,
            segments: 1,
            totals,
            threads: p.thread_times.len() as u64,
            samples: p.samples,
            lost_samples: p.lost_samples,
            dropped_events: p.dropped_events,
            state_hz: p.governor.as_ref().map(|g| g.state_hz),
            frequency_hz: p.governor.as_ref().map(|g| g.frequency_hz),
            noise: stored.noise.as_ref().map(StepNoise::of),
            groups: cap_groups(groups),
        }
    }

    /// `o`, the next segment of the same step, added in.
    fn absorb(&mut self, o: Step) {
        self.end_unix_ns = self.end_unix_ns.max(o.end_unix_ns);
        self.segments += o.segments;
        self.totals.add(&o.totals);
        self.threads = self.threads.max(o.threads);
        self.samples += o.samples;
        self.lost_samples += o.lost_samples;
        self.dropped_events += o.dropped_events;
        self.state_hz = o.state_hz.or(self.state_hz);
        self.frequency_hz = o.frequency_hz.or(self.frequency_hz);
        self.noise = match (self.noise.take(), o.noise) {
            (Some(mut a), Some(b)) => {
                a.add(&b);
                Some(a)
            }
            _ => None,
        };
        let mut groups = std::mem::take(&mut self.groups);
        for g in o.groups {
            match groups.iter_mut().find(|x| x.group == g.group) {
                Some(x) => x.totals.add(&g.totals),
                None => groups.push(g),
            }
        }
        self.groups = cap_groups(groups);
    }
}

/// The largest groups by wall-clock time, the rest as `other`.
fn cap_groups(mut groups: Vec<GroupStep>) -> Vec<GroupStep> {
    groups.sort_by(|a, b| b.totals.wall().total_cmp(&a.totals.wall()));
    if groups.len() > MAX_STEP_GROUPS {
        let mut other = Totals::default();
        for g in groups.drain(MAX_STEP_GROUPS - 1..) {
            other.add(&g.totals);
        }
        let mut key = serde_json::Map::new();
        key.insert("other".into(), serde_json::Value::Bool(true));
        groups.push(GroupStep { group: key, totals: other });
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: u64) -> Segment {
        Segment {
            path: format!("/nonexistent/{start}.tpseg").into(),
            name: format!("{start}.tpseg"),
            start_unix_ns: start,
            end_unix_ns: start + 1,
            bytes: 10,
        }
    }

    #[test]
    fn the_step_cache_is_bounded_and_forgets_the_oldest_segments_first() {
        let cache = StepCache::default();
        let n = MAX_CACHED_STEPS as u64 + 10;
        for start in 0..n {
            assert!(cache.get(&seg(start)).is_none());
            cache.put(&seg(start), Step { start_unix_ns: start, samples: start, ..Step::default() });
        }
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.evicted, stats.misses, stats.hits), (MAX_CACHED_STEPS as u64, 10, n, 0));
        assert!(cache.get(&seg(9)).is_none(), "the oldest went first");
        assert_eq!(cache.get(&seg(n - 1)).map(|s| s.samples), Some(n - 1));
        // A file of the same span written again (another size) is another entry.
        assert!(cache.get(&Segment { bytes: 11, ..seg(n - 1) }).is_none());
    }
}
