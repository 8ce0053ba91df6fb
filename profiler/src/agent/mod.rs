//! `tailprof agent`: the pipeline run for weeks with the continuous tier,
//! its windows stored as segments ([`store`]) and served over HTTP
//! ([`http`]). SIGTERM (the cancel) closes the open window short, stores
//! it, and ends the run.

pub mod config;
pub mod http;
pub mod metrics;
pub mod state;
pub mod store;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::{model::window::Window, pipeline::WindowSink};
pub use config::{AgentConfig, AgentSettings, ConfigError};
use state::{Collecting, Shared, MAX_QUERIES};
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
        Shared::lock(&self.0.metrics).window(window);
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
        metrics: Mutex::new(metrics::Metrics::new()),
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
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), server).await {
        return Err(AgentError::Serve(e));
    }
    let outcome = outcome?;
    tracing::info!(windows = outcome.windows, "agent stopped");
    Ok(())
}
