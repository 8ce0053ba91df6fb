//! `tailprof agent`: the pipeline run for weeks with the continuous tier,
//! its windows stored as segments ([`store`]) and served over HTTP
//! ([`crate::api`]). SIGTERM (the cancel) closes the open window short, stores
//! it, and ends the run.

pub mod alerts;
pub mod captures;
pub mod config;
pub mod merge;
pub mod metrics;
pub mod push;
pub mod rules;
pub mod source;
pub mod state;
pub mod store;
pub mod target;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::{model::window::Window, pipeline::WindowSink};
pub use config::{AgentConfig, AgentSettings, ConfigError};
use state::{Collecting, Shared};
use store::{Retention, Store};

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("could not read the token file {path}")]
    Token {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {0} is empty")]
    EmptyToken(String),
    #[error("could not listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server stopped")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Capture(#[from] crate::Error),
    #[error("could not start pushing: {0}")]
    Push(String),
    #[error("could not start the merger thread")]
    Thread(#[source] std::io::Error),
    #[error("could not open the captures directory {path}")]
    Captures {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The sink that stores each window and keeps the status current.
struct StoreSink(Arc<Shared>, Warned, Option<Unwritten>);

/// A window encoded and given its place in the store, to be written once
/// the window itself is freed.
type Unwritten = (store::Pending, store::Encoded);

/// The bounds a window has filled, each warned of once per run (they are
/// counted in /metrics and /api/v1/status every window).
#[derive(Default)]
struct Warned(std::collections::HashSet<String>);

impl Warned {
    fn limits(&mut self, p: &crate::profile::Profile) {
        for hit in &p.limits_hit {
            if self.0.insert(hit.what.clone()) {
                tracing::warn!(
                    dropped = hit.dropped,
                    "the {} filled up at its bound of {} entries: what did not fit is dropped and counted \
                     (tailprof_dropped_events); raise it with {}. Warned once.",
                    hit.what,
                    hit.bound,
                    hit.flag
                );
            }
        }
    }
}

impl WindowSink for StoreSink {
    fn collecting(&mut self, unavailable: &[crate::bpf::Unavailable]) {
        Shared::lock(&self.0.collecting).unavailable = unavailable.to_vec();
        Shared::lock(&self.0.metrics).unavailable(unavailable);
        self.0.ready.store(true, Ordering::Relaxed);
        // Under systemd (Type=notify): started.
        if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            tracing::warn!(%e, "could not tell systemd the agent is ready");
        }
    }

    fn window(&mut self, window: &Arc<Window>) -> crate::Result<()> {
        let p = &window.profile;
        {
            let mut c = Shared::lock(&self.0.collecting);
            c.windows += 1;
            c.last_window_start_unix_ns = p.start_unix_ns;
            c.last_window_end_unix_ns = p.start_unix_ns + p.window_end_ns.saturating_sub(p.window_start_ns);
            c.governor = p.governor.clone();
            c.caches = p.caches.clone();
            c.samples += p.samples;
            c.lost_samples += p.lost_samples;
            c.dropped = c.dropped.plus(&p.dropped);
        }
        Shared::lock(&self.0.metrics).window(window);
        self.1.limits(p);
        // A full or read-only disk stops writing, not collecting.
        let noise = match &window.noise {
            crate::noise::Measurement::Continuous(n) => Some(n),
            crate::noise::Measurement::Deep { .. } => None,
        };
        match encode_window(&self.0, p, noise) {
            Ok(unwritten) => self.2 = Some(unwritten),
            Err(e) => not_stored(&e),
        }
        self.0.check_rules(p);
        Ok(())
    }

    fn window_done(&mut self) -> crate::Result<()> {
        let Some((pending, encoded)) = self.2.take() else { return Ok(()) };
        let result = pending.put(&encoded);
        let written = Shared::lock(&self.0.store).written(pending, result);
        // The merger may have a bucket to merge now.
        self.0.wake_merger();
        if let Err(e) = written {
            not_stored(&e);
        }
        Ok(())
    }
}

fn not_stored(e: &store::StoreError) {
    tracing::warn!(error = %crate::error::format_chain(e), "window not stored; collecting goes on");
}

/// Encode a window and make room for it in the store. The file is written
/// later ([`WindowSink::window_done`]), without the store's lock and once
/// the window is freed, so that queries never wait on the disk (an fsync
/// under heavy write-back can take seconds); only making room and
/// registering the segment take the lock.
fn encode_window(
    shared: &Shared,
    p: &crate::profile::Profile,
    noise: Option<&crate::noise::continuous::ContinuousRaw>,
) -> Result<Unwritten, store::StoreError> {
    let (start, end) = store::span(p);
    let encoded = match store::Encoded::window(p, noise) {
        Ok(e) => e,
        Err(source) => {
            let dir = Shared::lock(&shared.store).dir().to_owned();
            return Err(store::StoreError::Io { what: "encode a segment for", path: dir, source });
        }
    };
    let pending = Shared::lock(&shared.store).prepare(start, end, encoded.file_bytes())?;
    Ok((pending, encoded))
}

fn read_token(config: &AgentConfig) -> Result<Option<String>, AgentError> {
    let Some(path) = &config.token_file else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .map_err(|source| AgentError::Token { path: path.display().to_string(), source })?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(AgentError::EmptyToken(path.display().to_string()));
    }
    Ok(Some(token))
}

/// Check what the agent needs (kernel, BTF, permissions, data directory)
/// without starting it.
pub fn check(config: &AgentConfig) -> Result<(), AgentError> {
    read_token(config)?;
    push::Auth::load(&config.push).map_err(AgentError::Push)?;
    Store::open(&config.data_dir, retention(config))?;
    crate::preflight::kernel_layout(&std::path::PathBuf::from(crate::kernel_btf::SYSFS_BTF))?;
    crate::preflight::check_perf_events()?;
    Ok(())
}

fn retention(c: &AgentConfig) -> Retention {
    Retention { max_age: c.retention, max_bytes: c.max_disk_bytes, min_free_bytes: c.min_free_disk_bytes }
}

/// Under systemd with `WatchdogSec=`, a ping from the collector loop (its
/// drain tick) at least twice per watchdog period: a stalled collector
/// stops pinging and systemd restarts it.
fn watchdog() -> Option<crate::capture::OnProgress> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) {
        return None;
    }
    let every = Duration::from_micros(usec / 2);
    let mut last: Option<std::time::Instant> = None;
    Some(Box::new(move |_, _| {
        if last.is_none_or(|l| l.elapsed() >= every) {
            last = Some(std::time::Instant::now());
            if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]) {
                tracing::debug!(%e, "watchdog ping not sent");
            }
        }
    }))
}

/// Reads the configuration again (the command line's flags and
/// environment over the file) when the agent is told to reload (SIGHUP).
pub type Reload = Box<dyn Fn() -> Result<AgentConfig, ConfigError> + Send + Sync>;

/// Apply a reloaded configuration: retention and the token change at once;
/// what the running collector or listener was built with is said to need a
/// restart. A configuration that does not load keeps the old one.
fn reload(shared: &Shared, load: &Reload) {
    let new = match load() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("configuration not reloaded, the old one stays: {e}");
            return;
        }
    };
    let token = match read_token(&new) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("configuration not reloaded, the old one stays: {}", crate::error::format_chain(&e));
            return;
        }
    };
    let old = shared.config();
    let needs_restart: Vec<&str> = [
        ("listen", old.listen != new.listen),
        ("data-dir", old.data_dir != new.data_dir),
        ("window", old.window != new.window),
        ("frequency", old.frequency_hz != new.frequency_hz),
        ("cpu-budget", old.cpu_budget_percent != new.cpu_budget_percent),
        ("state-hz", old.state_hz != new.state_hz),
        ("max-threads", old.max_threads != new.max_threads),
        ("debug-info", old.debug_info != new.debug_info),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect();
    if !needs_restart.is_empty() {
        tracing::warn!(settings = ?needs_restart, "these settings take effect at the next restart");
    }
    Shared::lock(&shared.store).set_retention(retention(&new));
    shared.captures.set_limits(new.captures);
    *shared.token.write().unwrap_or_else(std::sync::PoisonError::into_inner) = token;
    // What is shown is what is in effect: the restart-only settings stay.
    let effective = AgentConfig {
        listen: old.listen,
        data_dir: old.data_dir,
        window: old.window,
        frequency_hz: old.frequency_hz,
        cpu_budget_percent: old.cpu_budget_percent,
        state_hz: old.state_hz,
        max_threads: old.max_threads,
        debug_info: old.debug_info,
        ..new
    };
    *shared.config.write().unwrap_or_else(std::sync::PoisonError::into_inner) = effective;
    tracing::info!("configuration reloaded");
}

/// Run the agent until `cancel`; every message on `reloads` reloads the
/// configuration with `load`.
pub async fn run(
    config: AgentConfig,
    load: Reload,
    mut reloads: tokio::sync::mpsc::UnboundedReceiver<()>,
    cancel: &crate::sys::cancel::Cancel,
) -> Result<(), AgentError> {
    let token = read_token(&config)?;
    let store = Store::open(&config.data_dir, retention(&config))?;
    if store.stats.quarantined > 0 {
        tracing::warn!(quarantined = store.stats.quarantined, "damaged segments were moved to quarantine");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Listen { addr: config.listen, source })?;
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), "agent listening");
    let captures_dir = config.data_dir.join("captures");
    let captures = captures::Captures::open(captures_dir.clone(), config.captures)
        .map_err(|source| AgentError::Captures { path: captures_dir.display().to_string(), source })?;
    let shared = Arc::new(Shared {
        captures,
        merger: Mutex::new(None),
        push: Mutex::new(Vec::new()),
        rules: Mutex::new(rules::Rules::default()),
        capture_base: config.capture(config.data_dir.clone()),
        store: Mutex::new(store),
        metrics: Mutex::new(metrics::Metrics::new()),
        collecting: Mutex::new(Collecting::default()),
        ready: AtomicBool::new(false),
        started_unix_ns: crate::query::range::now_unix_ns(),
        token: std::sync::RwLock::new(token),
        config: std::sync::RwLock::new(config),
    });
    let (wake, woken) = std::sync::mpsc::channel();
    *Shared::lock(&shared.merger) = Some(wake);
    // The pushers first: the merger leaves alone what they have yet to deliver.
    let pushers = push::spawn(&shared, &shared.config().push, cancel).map_err(AgentError::Push)?;
    let merger = merge::spawn(shared.clone(), woken).map_err(AgentError::Thread)?;
    let app = crate::api::http::router(Arc::new(crate::api::Api::of_agent(shared.clone())));
    let stop = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    let on_reload = shared.clone();
    tokio::spawn(async move {
        while reloads.recv().await.is_some() {
            reload(&on_reload, &load);
        }
    });
    let config = shared.config();
    let capture = config.capture(config.data_dir.clone());
    let mut sink = StoreSink(shared.clone(), Warned::default(), None);
    let outcome = crate::pipeline::run(&capture, watchdog(), &mut [&mut sink], cancel).await;
    // The pipeline ended (stopped, or failed): so do the server and a capture.
    cancel.cancel();
    let running = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        running.captures.stop();
        // The merger ends with its last wake sender.
        Shared::lock(&running.merger).take();
        let _ = merger.join();
        for p in pushers {
            let _ = p.join();
        }
    })
    .await;
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), server).await {
        return Err(AgentError::Serve(e));
    }
    let outcome = outcome?;
    tracing::info!(windows = outcome.windows, "agent stopped");
    Ok(())
}
