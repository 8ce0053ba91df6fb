//! What the agent's HTTP handlers and its store sink share.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use serde::Serialize;

use super::{
    config::AgentConfig,
    store::{Store, StoreStats},
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
    /// Programs the kernel would not load or attach, and what goes unseen
    /// without them: the agent goes on with the rest.
    pub unavailable: Vec<crate::bpf::Unavailable>,
}

/// The status endpoint's answer.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `agent` (a `tailprof serve` answers `serve`).
    pub mode: &'static str,
    pub tier: &'static str,
    pub ready: bool,
    pub started_unix_ns: u64,
    pub window_s: f64,
    pub collecting: Collecting,
    pub storage: StoreStats,
    pub rules: Vec<super::rules::RuleStatus>,
    /// Per push backend: its watermark, what it delivered, retried and gave up.
    pub push: Vec<crate::export::PushStatus>,
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
    /// Each push backend's status.
    pub(crate) push: Mutex<Vec<Arc<Mutex<crate::export::PushStatus>>>>,
    /// What captures run with, but for their duration, tier and target.
    pub(crate) capture_base: crate::config::RecordConfig,
}

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
            mode: "agent",
            tier: "continuous",
            ready: self.ready(),
            started_unix_ns: self.started_unix_ns,
            window_s: self.config().window.as_secs_f64(),
            collecting: Self::lock(&self.collecting).clone(),
            storage: Self::lock(&self.store).stats.clone(),
            rules: Self::lock(&self.rules).status(&self.config().rules, std::time::Instant::now()),
            push: Self::lock(&self.push).iter().map(|p| Self::lock(p).clone()).collect(),
        }
    }

    /// The metrics as OpenMetrics text.
    pub fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        let (segments, bytes) = {
            let s = Self::lock(&self.store);
            (s.stats.segments, s.stats.bytes)
        };
        let push: Vec<crate::export::PushStatus> =
            Self::lock(&self.push).iter().map(|p| Self::lock(p).clone()).collect();
        let m = Self::lock(&self.metrics);
        m.storage(segments, bytes);
        m.push(&push, crate::query::range::now_unix_ns());
        m.encode()
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
}
