//! Deep captures on demand: a bounded `record` run alongside the
//! continuous tier (which keeps its windows flowing), started by the API,
//! an Alertmanager webhook or a local rule. Each writes what `record`
//! writes into `DATA_DIR/captures/ID/`, with `capture.json` describing it.
//!
//! Limits: one at a time, a longest duration and a cooldown after each; the
//! newest [`CaptureLimits::keep`] captures are kept, older ones deleted.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub use super::config::CaptureLimits;
use super::target::Target;
use crate::{
    config::RecordConfig,
    sys::{cancel::Cancel, lock},
    tier::Tier,
};

/// The file describing a capture, in its directory.
pub const CAPTURE_FILE: &str = "capture.json";

/// What a capture is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub duration: Duration,
    pub tier: Tier,
    pub target: Target,
    pub reason: String,
    /// `api`, `alertmanager` or `rule:NAME`.
    pub trigger: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureState {
    Running,
    /// Ran its duration.
    Done,
    /// Ended early (the agent stopped): what it saw is written.
    Interrupted,
    Failed,
}

/// One capture, as listed and as `capture.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capture {
    pub id: String,
    pub reason: String,
    pub trigger: String,
    pub tier: Tier,
    pub target: Target,
    pub duration_s: f64,
    pub started_unix_ns: u64,
    #[serde(default)]
    pub ended_unix_ns: Option<u64>,
    pub state: CaptureState,
    #[serde(default)]
    pub error: Option<String>,
    /// The files written, relative to the capture's directory.
    #[serde(default)]
    pub files: Vec<String>,
}

/// Why a capture was not started.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("capture {0} is running; one runs at a time")]
    Busy(String),
    #[error("captures cool down for {}s after each; retry in {}s", .cooldown.as_secs(), .left.as_secs().max(1))]
    Cooldown { cooldown: Duration, left: Duration },
    #[error("{0}")]
    Invalid(String),
    #[error("could not prepare the capture's directory: {0}")]
    Io(String),
}

impl Refused {
    /// The label of the refusals metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Busy(_) => "busy",
            Refused::Cooldown { .. } => "cooldown",
            Refused::Invalid(_) => "invalid",
            Refused::Io(_) => "io",
        }
    }
}

struct Inner {
    /// Newest last.
    list: VecDeque<Capture>,
    running: Option<(String, Cancel, std::thread::JoinHandle<()>)>,
    last_end: Option<Instant>,
    deleted: u64,
}

/// The captures of this agent: those on disk and the one running.
pub struct Captures {
    dir: PathBuf,
    limits: Mutex<CaptureLimits>,
    inner: Arc<Mutex<Inner>>,
}

fn write_description(dir: &Path, c: &Capture) {
    let r = crate::atomic_file::write_atomically(&dir.join(CAPTURE_FILE), |w| {
        serde_json::to_writer_pretty(&mut *w, c).map_err(std::io::Error::other)
    });
    if let Err(e) = r {
        tracing::warn!(id = %c.id, error = %crate::error::format_chain(&e), "capture description not written");
    }
}

impl Captures {
    /// The captures under `dir` (created if needed). One that was running
    /// when the agent last stopped is marked interrupted.
    pub fn open(dir: PathBuf, limits: CaptureLimits) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut list: Vec<Capture> = std::fs::read_dir(&dir)?
            .filter_map(|e| {
                let path = e.ok()?.path().join(CAPTURE_FILE);
                let mut c: Capture = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
                if c.state == CaptureState::Running {
                    c.state = CaptureState::Interrupted;
                    c.error = Some("the agent stopped during the capture".into());
                    write_description(&dir.join(&c.id), &c);
                }
                Some(c)
            })
            .collect();
        list.sort_by_key(|c| c.started_unix_ns);
        let inner = Inner { list: list.into(), running: None, last_end: None, deleted: 0 };
        Ok(Self { dir, limits: Mutex::new(limits), inner: Arc::new(Mutex::new(inner)) })
    }

    pub fn set_limits(&self, limits: CaptureLimits) {
        *lock(&self.limits) = limits;
    }

    pub fn limits(&self) -> CaptureLimits {
        *lock(&self.limits)
    }

    /// Every capture, oldest first.
    pub fn list(&self) -> Vec<Capture> {
        lock(&self.inner).list.iter().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Capture> {
        lock(&self.inner).list.iter().find(|c| c.id == id).cloned()
    }

    /// The captures deleted to keep the newest.
    pub fn deleted(&self) -> u64 {
        lock(&self.inner).deleted
    }

    /// A file of a capture, if the capture lists it: names are looked up
    /// in its own list, never joined onto a path as given.
    pub fn file(&self, id: &str, name: &str) -> Option<PathBuf> {
        let c = self.get(id)?;
        let listed = c.files.iter().find(|f| f.as_str() == name)?;
        Some(self.dir.join(&c.id).join(listed))
    }

    /// Start a capture as `req` asks, with `base`'s settings (the agent's),
    /// unless a limit says no.
    pub fn start(&self, req: Request, base: &RecordConfig) -> Result<Capture, Refused> {
        let limits = self.limits();
        if req.duration < Duration::from_secs(1) || req.duration > limits.max_duration {
            return Err(Refused::Invalid(format!(
                "a capture lasts from 1s to {}",
                humantime::format_duration(limits.max_duration)
            )));
        }
        let selection = req.target.resolve().map_err(Refused::Invalid)?;
        let mut inner = lock(&self.inner);
        if let Some((id, _, handle)) = &inner.running {
            if !handle.is_finished() {
                return Err(Refused::Busy(id.clone()));
            }
        }
        if let Some(left) = inner.last_end.and_then(|t| limits.cooldown.checked_sub(t.elapsed())) {
            return Err(Refused::Cooldown { cooldown: limits.cooldown, left });
        }
        if let Some((_, _, handle)) = inner.running.take() {
            let _ = handle.join();
        }
        let now = crate::query::range::now_unix_ns();
        let mut id = format!("c{}", now / 1_000_000);
        while inner.list.iter().any(|c| c.id == id) {
            id.push('x');
        }
        let out = self.dir.join(&id);
        crate::atomic_file::prepare_output_dir(&out).map_err(|e| Refused::Io(crate::error::format_chain(&e)))?;
        let capture = Capture {
            id: id.clone(),
            reason: req.reason,
            trigger: req.trigger,
            tier: req.tier,
            target: req.target,
            duration_s: req.duration.as_secs_f64(),
            started_unix_ns: now,
            ended_unix_ns: None,
            state: CaptureState::Running,
            error: None,
            files: Vec::new(),
        };
        write_description(&out, &capture);
        let config = RecordConfig {
            duration: req.duration,
            window: None,
            selection,
            output: out.clone(),
            tier: req.tier,
            // A deep capture is bounded: it also times every syscall.
            syscall_latency: req.tier == Tier::Deep,
            // One window, its symbolizer dropped module by module.
            debug_info: true,
            cpu_budget: match req.tier {
                Tier::Continuous => base.cpu_budget,
                Tier::Deep => None,
            },
            ..base.clone()
        };
        let cancel = Cancel::new();
        let stop = cancel.clone();
        let shared = self.inner.clone();
        let entry = capture.clone();
        let handle = std::thread::Builder::new()
            .name("tailprof-capture".into())
            .spawn(move || {
                let done = run(&config, &stop);
                finish(&shared, entry, &out, done);
            })
            .map_err(|e| Refused::Io(e.to_string()))?;
        tracing::info!(id = %capture.id, reason = %capture.reason, target = %capture.target.describe(),
            duration = ?req.duration, "capture started");
        inner.list.push_back(capture.clone());
        inner.running = Some((id, cancel, handle));
        self.trim(&mut inner, limits.keep);
        Ok(capture)
    }

    /// Delete the oldest finished captures beyond `keep`.
    fn trim(&self, inner: &mut Inner, keep: usize) {
        while inner.list.len() > keep.max(1) {
            let Some(pos) = inner.list.iter().position(|c| c.state != CaptureState::Running) else { break };
            let Some(old) = inner.list.remove(pos) else { break };
            match std::fs::remove_dir_all(self.dir.join(&old.id)) {
                Ok(()) => inner.deleted += 1,
                Err(e) => tracing::warn!(id = %old.id, %e, "old capture not deleted"),
            }
        }
    }

    /// Stop the running capture (it writes what it saw) and wait for it.
    pub fn stop(&self) {
        let running = lock(&self.inner).running.take();
        if let Some((id, cancel, handle)) = running {
            tracing::info!(%id, "stopping the running capture");
            cancel.cancel();
            let _ = handle.join();
        }
    }

    /// Whether a capture runs now.
    pub fn busy(&self) -> bool {
        lock(&self.inner).running.as_ref().is_some_and(|(_, _, h)| !h.is_finished())
    }
}

/// Run one capture on this thread, with a runtime of its own (the agent's
/// workers keep serving and collecting).
fn run(config: &RecordConfig, cancel: &Cancel) -> Result<crate::record::Recording, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the capture's runtime: {e}"))?;
    rt.block_on(crate::record::record(config, None, cancel)).map_err(|e| crate::error::format_chain(&e))
}

fn finish(shared: &Mutex<Inner>, mut entry: Capture, dir: &Path, done: Result<crate::record::Recording, String>) {
    entry.ended_unix_ns = Some(crate::query::range::now_unix_ns());
    match done {
        Ok(rec) => {
            entry.state = match rec.end {
                crate::capture::EndReason::Elapsed => CaptureState::Done,
                crate::capture::EndReason::Interrupted => CaptureState::Interrupted,
            };
            entry.files =
                rec.files.iter().filter_map(|f| f.strip_prefix(dir).ok()?.to_str().map(str::to_owned)).collect();
            entry.files.sort();
        }
        Err(e) => {
            tracing::warn!(id = %entry.id, error = %e, "capture failed");
            entry.state = CaptureState::Failed;
            entry.error = Some(e);
        }
    }
    tracing::info!(id = %entry.id, state = ?entry.state, files = entry.files.len(), "capture ended");
    write_description(dir, &entry);
    let mut inner = lock(shared);
    inner.last_end = Some(Instant::now());
    if let Some(c) = inner.list.iter_mut().find(|c| c.id == entry.id) {
        *c = entry;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CaptureLimits {
        CaptureLimits {
            max_duration: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
            default_duration: Duration::from_secs(10),
            keep: 2,
        }
    }

    #[test]
    fn names_are_looked_up_never_joined() {
        let dir = tempfile::tempdir().unwrap();
        let c = Capture {
            id: "c1".into(),
            reason: "r".into(),
            trigger: "api".into(),
            tier: Tier::Deep,
            target: Target::default(),
            duration_s: 1.0,
            started_unix_ns: 1,
            ended_unix_ns: Some(2),
            state: CaptureState::Running,
            error: None,
            files: vec!["summary.json".into()],
        };
        std::fs::create_dir_all(dir.path().join("c1")).unwrap();
        write_description(&dir.path().join("c1"), &c);
        let caps = Captures::open(dir.path().to_owned(), limits()).unwrap();
        // Running when the agent stopped: interrupted now.
        assert_eq!(caps.get("c1").unwrap().state, CaptureState::Interrupted);
        assert!(caps.file("c1", "summary.json").is_some());
        assert!(caps.file("c1", "../c1/summary.json").is_none());
        assert!(caps.file("c1", "capture.json").is_none());
        assert!(caps.file("../c1", "summary.json").is_none());
    }

    #[test]
    fn durations_beyond_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let caps = Captures::open(dir.path().to_owned(), limits()).unwrap();
        let req = Request {
            duration: Duration::from_secs(61),
            tier: Tier::Deep,
            target: Target::default(),
            reason: "x".into(),
            trigger: "api".into(),
        };
        let base =
            crate::agent::config::AgentConfig::resolve(Default::default()).unwrap().capture(dir.path().to_owned());
        assert!(matches!(caps.start(req, &base), Err(Refused::Invalid(_))));
    }
}
