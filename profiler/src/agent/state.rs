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
    /// What captures run with, but for their duration, tier and target.
    pub(crate) capture_base: crate::config::RecordConfig,
    /// Queries running at once (the rest get 503).
    pub(crate) queries: Arc<tokio::sync::Semaphore>,
}

/// Most queries served at once.
pub const MAX_QUERIES: usize = 4;

impl Shared {
    pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
    fn each_window(&self, from: u64, to: u64, mut f: impl FnMut(&store::Segment, Profile)) -> Result<(), String> {
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

    /// Per window overlapping `from..to`: its span and totals.
    pub fn timeline(&self, from: u64, to: u64) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        self.each_window(from, to, |seg, p| steps.push(Step::of(seg, &p)))?;
        Ok(steps)
    }

    /// The merge of the windows overlapping `from..to`, and how many.
    pub fn merge(&self, from: u64, to: u64) -> Result<(Profile, usize), String> {
        let mut merger: Option<crate::model::window::ProfileMerger> = None;
        let mut n = 0;
        self.each_window(from, to, |_, p| {
            n += 1;
            match merger.as_mut() {
                None => merger = Some(crate::model::window::ProfileMerger::new(p)),
                Some(m) => m.add(&p),
            }
        })?;
        Ok((merger.map(|m| m.finish()).unwrap_or_default(), n))
    }
}

/// One step of the timeline: one window's totals over every thread.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// Exact, from the kernel's counters.
    pub cpu_s: f64,
    pub runqueue_s: f64,
    /// Sampled: the rest of each thread's time split by the states its
    /// snapshots saw.
    pub sleeping_s: f64,
    pub disk_s: f64,
    pub other_s: f64,
    pub threads: u64,
    pub samples: u64,
    pub lost_samples: u64,
    pub dropped_events: u64,
    /// Rates in effect at the window's end (the cost governor's).
    pub state_hz: Option<f64>,
    pub frequency_hz: Option<f64>,
}

impl Step {
    fn of(seg: &store::Segment, p: &Profile) -> Self {
        let s = |ns: u64| ns as f64 / 1e9;
        let (mut cpu, mut off) = (0u64, [0u64; 4]);
        for t in p.thread_times.values() {
            cpu += t.on_cpu_ns;
            for (o, n) in off.iter_mut().zip(t.off_cpu_ns) {
                *o += n;
            }
        }
        Self {
            start_unix_ns: seg.start_unix_ns,
            end_unix_ns: seg.end_unix_ns,
            cpu_s: s(cpu),
            runqueue_s: s(off[0]),
            sleeping_s: s(off[1]),
            disk_s: s(off[2]),
            other_s: s(off[3]),
            threads: p.thread_times.len() as u64,
            samples: p.samples,
            lost_samples: p.lost_samples,
            dropped_events: p.dropped_events,
            state_hz: p.governor.as_ref().map(|g| g.state_hz),
            frequency_hz: p.governor.as_ref().map(|g| g.frequency_hz),
        }
    }
}
