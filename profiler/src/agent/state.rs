//! What the agent's HTTP handlers and its store sink share.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use serde::Serialize;

use super::{
    config::AgentConfig,
    store::{self, Store, StoreStats},
};
use crate::{model::stats::CacheReport, profile::Profile};

/// What the status endpoint shows of the collector.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Collecting {
    pub windows: u64,
    pub last_window_start_unix_ns: u64,
    pub last_window_end_unix_ns: u64,
    /// The cost governor after the last window: rates in effect, budget use.
    pub governor: Option<crate::governor::GovernorReport>,
    pub caches: Option<CacheReport>,
    pub samples: u64,
    pub lost_samples: u64,
    pub dropped: crate::profile::Dropped,
}

/// The status endpoint's answer.
#[derive(Debug, Serialize)]
pub struct Status {
    pub tier: &'static str,
    pub ready: bool,
    pub started_unix_ns: u64,
    pub window_s: f64,
    pub collecting: Collecting,
    pub storage: StoreStats,
    pub rules: Vec<super::rules::RuleStatus>,
}

/// What the HTTP handlers and the store sink share.
pub struct Shared {
    /// The effective configuration (replaced by a reload).
    pub(crate) config: std::sync::RwLock<AgentConfig>,
    pub(crate) store: Mutex<Store>,
    pub(crate) metrics: Mutex<super::metrics::Metrics>,
    pub(crate) collecting: Mutex<Collecting>,
    pub(crate) ready: AtomicBool,
    pub(crate) started_unix_ns: u64,
    pub(crate) token: std::sync::RwLock<Option<String>>,
    pub(crate) captures: super::captures::Captures,
    pub(crate) rules: Mutex<super::rules::Rules>,
    /// Wakes the merger after each window (gone once the agent stops).
    pub(crate) merger: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// What captures run with, but for their duration, tier and target.
    pub(crate) capture_base: crate::config::RecordConfig,
    /// Queries running at once (the rest get 503).
    pub(crate) queries: Arc<tokio::sync::Semaphore>,
}

/// Most queries served at once.
pub const MAX_QUERIES: usize = 4;

impl Shared {
    pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        crate::sys::lock(m)
    }

    /// The configuration in effect.
    pub fn config(&self) -> AgentConfig {
        self.config.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The bearer token in effect, if any.
    pub fn token(&self) -> Option<String> {
        self.token.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> Status {
        Status {
            tier: "continuous",
            ready: self.ready(),
            started_unix_ns: self.started_unix_ns,
            window_s: self.config().window.as_secs_f64(),
            collecting: Self::lock(&self.collecting).clone(),
            storage: Self::lock(&self.store).stats.clone(),
            rules: Self::lock(&self.rules).status(&self.config().rules, std::time::Instant::now()),
        }
    }

    /// The metrics as OpenMetrics text.
    pub fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        let (segments, bytes) = {
            let s = Self::lock(&self.store);
            (s.stats.segments, s.stats.bytes)
        };
        let m = Self::lock(&self.metrics);
        m.storage(segments, bytes);
        m.encode()
    }

    pub fn segments(&self) -> Vec<store::Segment> {
        Self::lock(&self.store).all()
    }

    /// Read every stored window overlapping `from..to`, oldest first, and
    /// hand it to `f`; a segment retention deleted meanwhile is skipped.
    fn each_window(&self, from: u64, to: u64, mut f: impl FnMut(&store::Segment, store::Stored)) -> Result<(), String> {
        let segments = Self::lock(&self.store).range(from, to);
        for seg in &segments {
            match store::read(seg) {
                Ok(p) => f(seg, p),
                Err(store::StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::error::format_chain(&e)),
            }
        }
        Ok(())
    }

    /// Check the local rules against a closed window; start what they ask.
    pub fn check_rules(&self, p: &Profile) {
        let rules = self.config().rules;
        if rules.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        let window_ns = p.window_end_ns.saturating_sub(p.window_start_ns);
        let fires = Self::lock(&self.rules).check(&rules, p, window_ns, now);
        for fire in fires {
            Self::lock(&self.metrics).rule_fired(&fire.rule);
            let refused = match self.start_capture(fire.request) {
                Ok(c) => {
                    tracing::info!(rule = %fire.rule, capture = %c.id, reason = %c.reason, "rule started a capture");
                    None
                }
                Err(e) => {
                    tracing::info!(rule = %fire.rule, "rule tripped, no capture: {e}");
                    Some(e.to_string())
                }
            };
            Self::lock(&self.rules).fired(&fire.rule, refused, now);
        }
    }

    /// Tell the merger a window was stored.
    pub fn wake_merger(&self) {
        if let Some(tx) = Self::lock(&self.merger).as_ref() {
            let _ = tx.send(());
        }
    }

    /// Start a capture, counting it (or its refusal) in the metrics.
    pub fn start_capture(
        &self,
        req: super::captures::Request,
    ) -> Result<super::captures::Capture, super::captures::Refused> {
        let trigger = req.trigger.clone();
        let r = self.captures.start(req, &self.capture_base);
        let m = Self::lock(&self.metrics);
        match &r {
            Ok(_) => m.capture_started(&trigger),
            Err(e) => m.capture_refused(e.reason()),
        }
        r
    }

    /// The timeline of `from..to`: per stored segment (`step` none), or
    /// per `step` from `from` (each segment in the step its start falls in).
    pub fn timeline(
        &self,
        from: u64,
        to: u64,
        step: Option<u64>,
        group_by: Option<&crate::query::dimension::GroupBy>,
    ) -> Result<Vec<Step>, String> {
        let mut steps: Vec<Step> = Vec::new();
        self.each_window(from, to, |seg, s| {
            let one = Step::of(seg, &s, group_by);
            let Some(len) = step.filter(|l| *l > 0) else { return steps.push(one) };
            let bucket = from + (seg.start_unix_ns.saturating_sub(from) / len) * len;
            match steps.last_mut() {
                Some(last) if last.start_unix_ns == bucket => last.absorb(one),
                _ => steps.push(Step { start_unix_ns: bucket, ..one }),
            }
        })?;
        Ok(steps)
    }

    /// The noise of the windows overlapping `from..to`, merged, and how
    /// many windows had none stored.
    pub fn noise(&self, from: u64, to: u64) -> Result<(Option<crate::noise::continuous::ContinuousRaw>, u64), String> {
        let mut merged: Option<crate::noise::continuous::ContinuousRaw> = None;
        let mut without = 0;
        self.each_window(from, to, |_, s| match (s.noise, merged.as_mut()) {
            (None, _) => without += 1,
            (Some(n), None) => merged = Some(n),
            (Some(n), Some(m)) => *m = crate::model::window::merge_noise(m, &n),
        })?;
        Ok((merged, without))
    }

    /// The merge of the windows overlapping `from..to`, and how many.
    pub fn merge(&self, from: u64, to: u64) -> Result<(Profile, usize), String> {
        let mut merger: Option<crate::model::window::ProfileMerger> = None;
        let mut n = 0;
        self.each_window(from, to, |_, s| {
            let p = s.profile;
            n += 1;
            match merger.as_mut() {
                None => merger = Some(crate::model::window::ProfileMerger::new(p)),
                Some(m) => m.add(&p),
            }
        })?;
        Ok((merger.map(|m| m.finish()).unwrap_or_default(), n))
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
    fn of(seg: &store::Segment, stored: &store::Stored, group_by: Option<&crate::query::dimension::GroupBy>) -> Self {
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
