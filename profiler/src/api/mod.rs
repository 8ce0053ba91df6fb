//! The HTTP API and the viewer, over any [`Source`] of stored windows and
//! captures: the agent's store (`tailprof agent`), or capture directories
//! that `record` wrote (`tailprof serve`). The same handlers answer both;
//! what only a running agent has (its configuration, metrics, starting a
//! capture, alerts) answers with a sentence where there is none.

pub mod http;
pub mod source;
pub mod windows;

use std::sync::Arc;

pub use source::Source;

use crate::agent::state::Shared;

/// What the HTTP handlers share.
pub struct Api {
    pub source: Arc<dyn Source>,
    /// The running agent, under `tailprof agent`; none under `serve`.
    pub agent: Option<Arc<Shared>>,
    /// What `/api/v1/status` answers under `serve`.
    pub serve_status: Option<serde_json::Value>,
    /// The bearer token under `serve` (the agent's is its own, reloadable).
    pub serve_token: Option<String>,
    /// Queries running at once (the rest get 503).
    pub queries: Arc<tokio::sync::Semaphore>,
    /// Each segment's timeline totals, once read.
    pub steps: windows::StepCache,
}

/// Most queries served at once.
pub const MAX_QUERIES: usize = 4;

impl Api {
    /// The API of a running agent.
    pub fn of_agent(shared: Arc<Shared>) -> Self {
        Self {
            source: shared.clone(),
            agent: Some(shared),
            serve_status: None,
            serve_token: None,
            queries: Arc::new(tokio::sync::Semaphore::new(MAX_QUERIES)),
            steps: Default::default(),
        }
    }

    /// The bearer token in effect, if any.
    pub fn token(&self) -> Option<String> {
        match &self.agent {
            Some(a) => a.token(),
            None => self.serve_token.clone(),
        }
    }
}
