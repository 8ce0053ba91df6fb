//! `tailprof agent`: the pipeline run for weeks with the continuous tier,
//! its windows stored as segments ([`store`]) and served over HTTP
//! ([`http`]). SIGTERM (the cancel) closes the open window short, stores
//! it, and ends the run.

pub mod config;
pub mod http;
pub mod store;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde::Serialize;

use crate::{
    model::{stats::CacheReport, window::Window},
    pipeline::WindowSink,
    profile::Profile,
};
pub use config::{AgentConfig, AgentSettings, ConfigError};
use store::{Retention, Store, StoreStats};

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
}

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
    pub config: AgentConfig,
    store: Mutex<Store>,
    collecting: Mutex<Collecting>,
    ready: AtomicBool,
    started_unix_ns: u64,
    pub(crate) token: Option<String>,
    /// Queries running at once (the rest get 503).
    pub(crate) queries: Arc<tokio::sync::Semaphore>,
}

/// Most queries served at once.
const MAX_QUERIES: usize = 4;

impl Shared {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> Status {
        Status {
            tier: "continuous",
            ready: self.ready(),
            started_unix_ns: self.started_unix_ns,
            window_s: self.config.window.as_secs_f64(),
            collecting: Self::lock(&self.collecting).clone(),
            storage: Self::lock(&self.store).stats.clone(),
        }
    }

    pub fn segments(&self) -> Vec<store::Segment> {
        Self::lock(&self.store).all()
    }

    /// The merge of the windows overlapping `from..to`, and how many.
    pub fn merge(&self, from: u64, to: u64) -> Result<(Profile, usize), String> {
        let segments = Self::lock(&self.store).range(from, to);
        let mut merger: Option<crate::model::window::ProfileMerger> = None;
        let mut n = 0;
        for seg in &segments {
            // A segment deleted by retention meanwhile is skipped.
            let p = match store::read(seg) {
                Ok(p) => p,
                Err(store::StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(crate::error::format_chain(&e)),
            };
            n += 1;
            match merger.as_mut() {
                None => merger = Some(crate::model::window::ProfileMerger::new(p)),
                Some(m) => m.add(&p),
            }
        }
        Ok((merger.map(|m| m.finish()).unwrap_or_default(), n))
    }
}

/// The sink that stores each window and keeps the status current.
struct StoreSink(Arc<Shared>);

impl WindowSink for StoreSink {
    fn collecting(&mut self) {
        self.0.ready.store(true, Ordering::Relaxed);
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
            c.dropped = add_dropped(&c.dropped, &p.dropped);
        }
        // A full or read-only disk stops writing, not collecting.
        if let Err(e) = Shared::lock(&self.0.store).write(p) {
            tracing::warn!(error = %crate::error::format_chain(&e), "window not stored; collecting goes on");
        }
        Ok(())
    }
}

fn add_dropped(a: &crate::profile::Dropped, b: &crate::profile::Dropped) -> crate::profile::Dropped {
    crate::profile::Dropped {
        threads: a.threads + b.threads,
        exits: a.exits + b.exits,
        stacks: a.stacks + b.stacks,
        off_cpu_aggregates: a.off_cpu_aggregates + b.off_cpu_aggregates,
        process_events: a.process_events + b.process_events,
    }
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
    Store::open(&config.data_dir, retention(config))?;
    crate::preflight::kernel_layout(&std::path::PathBuf::from(crate::kernel_btf::SYSFS_BTF))?;
    crate::preflight::check_perf_events()?;
    Ok(())
}

fn retention(c: &AgentConfig) -> Retention {
    Retention { max_age: c.retention, max_bytes: c.max_disk_bytes, min_free_bytes: c.min_free_disk_bytes }
}

/// Run the agent until `cancel`.
pub async fn run(config: AgentConfig, cancel: &crate::sys::cancel::Cancel) -> Result<(), AgentError> {
    let token = read_token(&config)?;
    let store = Store::open(&config.data_dir, retention(&config))?;
    if store.stats.quarantined > 0 {
        tracing::warn!(quarantined = store.stats.quarantined, "damaged segments were moved to quarantine");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Listen { addr: config.listen, source })?;
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), "agent listening");
    let shared = Arc::new(Shared {
        store: Mutex::new(store),
        collecting: Mutex::new(Collecting::default()),
        ready: AtomicBool::new(false),
        started_unix_ns: crate::query::range::now_unix_ns(),
        token,
        queries: Arc::new(tokio::sync::Semaphore::new(MAX_QUERIES)),
        config,
    });
    let app = http::router(shared.clone());
    let stop = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    let capture = shared.config.capture(shared.config.data_dir.clone());
    let mut sink = StoreSink(shared.clone());
    let outcome = crate::pipeline::run(&capture, None, &mut [&mut sink], cancel).await;
    // The pipeline ended (stopped, or failed): so does the server.
    cancel.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => return Err(AgentError::Serve(e)),
        Ok(_) | Err(_) => {}
    }
    let outcome = outcome?;
    tracing::info!(windows = outcome.windows, "agent stopped");
    Ok(())
}
