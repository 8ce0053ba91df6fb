//! `tailprof serve DIR`: the viewer and the API (the agent's handlers, see
//! [`crate::api`]) over capture directories that `record` wrote, or that
//! the agent's deep captures left in its data directory. DIR is one
//! capture, or a directory of them (`DIR/*/`, and `DIR/captures/*/` of an
//! agent's data directory). A capture recorded with `--window` is served
//! as its windows, so the timeline has a step per window.
//!
//! Every capture is read and checked once at start: one that does not
//! read is listed as skipped, with why; a DIR with none readable is an
//! error. Captures written later are seen after a restart.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Serialize;

use crate::{
    agent::{
        captures::{Capture, CaptureState, CAPTURE_FILE},
        store::{self, Segment, Stored},
    },
    api::{Api, Source, MAX_QUERIES},
    record::WINDOWS_DIR,
    samples_file::SAMPLES_FILE,
};

/// What `serve` is asked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// Asked of every request but the viewer's assets and `/healthz`.
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{dir} holds no capture that reads: {reason}")]
    NoCapture { dir: PathBuf, reason: String },
    #[error("could not read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving on {0}, which is not loopback, needs a token (--token-file)")]
    NeedsToken(SocketAddr),
    #[error("could not listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server stopped")]
    Serve(#[source] std::io::Error),
}

/// A capture directory that was not served, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Captures found under a directory, read and checked.
pub struct CaptureDirs {
    root: PathBuf,
    /// Oldest first, with their directories.
    captures: Vec<(Capture, PathBuf)>,
    /// Every capture's windows (or the capture whole), by start.
    segments: Vec<Segment>,
    pub skipped: Vec<Skipped>,
}

fn is_capture(dir: &Path) -> bool {
    dir.join(SAMPLES_FILE).is_file()
}

/// Immediate sub-directories, by name.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, ServeError> {
    let io = |source| ServeError::Io { path: dir.to_owned(), source };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// A segment for the samples file in `dir`, checked by reading it whole,
/// and the tier it was recorded with.
fn segment_of(dir: &Path, name: String) -> Result<(Segment, crate::tier::Tier), String> {
    let profile = crate::samples_file::read(dir).map_err(|e| crate::error::format_chain(&e))?;
    let (start, mut end) = store::span(&profile);
    if end == start {
        end = start + profile.duration_ns;
    }
    let bytes = std::fs::metadata(dir.join(SAMPLES_FILE)).map_or(0, |m| m.len());
    Ok((Segment { path: dir.to_owned(), name, start_unix_ns: start, end_unix_ns: end, bytes }, profile.tier))
}

/// The files at the top of a capture directory, by name.
fn files_of(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    files.sort();
    files
}

impl CaptureDirs {
    /// Find and check the captures under `root`.
    pub fn open(root: &Path) -> Result<Self, ServeError> {
        let candidates = if is_capture(root) {
            vec![root.to_owned()]
        } else if root.is_dir() {
            let mut c = subdirs(root)?;
            // An agent's data directory keeps its captures one level down.
            let agent_captures = root.join("captures");
            if agent_captures.is_dir() {
                c.retain(|d| *d != agent_captures);
                c.extend(subdirs(&agent_captures)?);
            }
            c
        } else {
            return Err(ServeError::NoCapture { dir: root.to_owned(), reason: "no such directory".into() });
        };
        let mut me = Self { root: root.to_owned(), captures: Vec::new(), segments: Vec::new(), skipped: Vec::new() };
        for dir in candidates {
            if !is_capture(&dir) {
                // An agent's capture that failed before writing anything
                // has only its description: listed, not served.
                if !dir.join(CAPTURE_FILE).is_file() {
                    continue;
                }
            }
            me.add(&dir);
        }
        if me.segments.is_empty() {
            let reason = match me.skipped.first() {
                Some(s) => format!("{}: {}", s.path.display(), s.reason),
                None => format!("no {SAMPLES_FILE} in it or in its sub-directories"),
            };
            return Err(ServeError::NoCapture { dir: root.to_owned(), reason });
        }
        me.captures.sort_by_key(|(c, _)| c.started_unix_ns);
        me.segments.sort_by_key(|s| (s.start_unix_ns, s.end_unix_ns));
        Ok(me)
    }

    fn add(&mut self, dir: &Path) {
        let id = dir.file_name().map_or_else(|| "capture".into(), |n| n.to_string_lossy().into_owned());
        if self.captures.iter().any(|(c, _)| c.id == id) {
            self.skipped.push(Skipped { path: dir.to_owned(), reason: format!("a capture named '{id}' is served") });
            return;
        }
        // Its windows if it was recorded with --window, else it whole.
        let windows = subdirs(&dir.join(WINDOWS_DIR)).unwrap_or_default();
        let mut segments = Vec::new();
        let mut tier = crate::tier::Tier::default();
        for w in windows.iter().filter(|w| is_capture(w)) {
            let name = format!("{id}/{WINDOWS_DIR}/{}", w.file_name().unwrap_or_default().to_string_lossy());
            match segment_of(w, name) {
                Ok((s, t)) => {
                    segments.push(s);
                    tier = t;
                }
                Err(reason) => self.skipped.push(Skipped { path: w.clone(), reason }),
            }
        }
        if segments.is_empty() && is_capture(dir) {
            match segment_of(dir, id.clone()) {
                Ok((s, t)) => {
                    segments.push(s);
                    tier = t;
                }
                Err(reason) => {
                    self.skipped.push(Skipped { path: dir.to_owned(), reason });
                    return;
                }
            }
        }
        let described: Option<Capture> =
            std::fs::read(dir.join(CAPTURE_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let start = segments.iter().map(|s| s.start_unix_ns).min();
        let end = segments.iter().map(|s| s.end_unix_ns).max();
        let capture = match described {
            Some(c) => Capture { id: id.clone(), files: files_of(dir), ..c },
            None => {
                let (Some(start), Some(end)) = (start, end) else { return };
                Capture {
                    id: id.clone(),
                    reason: "recorded with tailprof record".into(),
                    trigger: "record".into(),
                    tier,
                    target: Default::default(),
                    duration_s: (end - start) as f64 / 1e9,
                    started_unix_ns: start,
                    ended_unix_ns: Some(end),
                    state: CaptureState::Done,
                    error: None,
                    files: files_of(dir),
                }
            }
        };
        self.captures.push((capture, dir.to_owned()));
        self.segments.extend(segments);
    }

    /// What `/api/v1/status` answers.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": "serve",
            "dir": self.root,
            "from_unix_ns": self.segments.iter().map(|s| s.start_unix_ns).min(),
            "to_unix_ns": self.segments.iter().map(|s| s.end_unix_ns).max(),
            "captures": self.captures.len(),
            "segments": self.segments.len(),
            "skipped": self.skipped,
        })
    }
}

impl Source for CaptureDirs {
    fn range(&self, from: u64, to: u64) -> Vec<Segment> {
        self.segments.iter().filter(|s| s.start_unix_ns < to && s.end_unix_ns > from).cloned().collect()
    }

    fn segments(&self) -> Vec<Segment> {
        self.segments.clone()
    }

    fn read(&self, seg: &Segment) -> Result<Option<Stored>, String> {
        match crate::samples_file::read(&seg.path) {
            Ok(profile) => Ok(Some(Stored { profile, noise: None })),
            Err(e) => Err(crate::error::format_chain(&e)),
        }
    }

    fn captures(&self) -> Vec<Capture> {
        self.captures.iter().map(|(c, _)| c.clone()).collect()
    }

    fn capture_file(&self, id: &str, name: &str) -> Option<PathBuf> {
        let (c, dir) = self.captures.iter().find(|(c, _)| c.id == id)?;
        let listed = c.files.iter().find(|f| f.as_str() == name)?;
        Some(dir.join(listed))
    }

    /// The noise report of the newest capture overlapping the range (the
    /// reports of several captures are not merged).
    fn noise(&self, from: u64, to: u64) -> Result<Option<serde_json::Value>, String> {
        let newest = self.captures.iter().rev().find(|(c, _)| {
            c.started_unix_ns < to
                && c.ended_unix_ns.unwrap_or(u64::MAX) > from
                && c.files.iter().any(|f| f == crate::noise::output::NOISE_JSON)
        });
        let Some((c, dir)) = newest else { return Ok(None) };
        let path = dir.join(crate::noise::output::NOISE_JSON);
        let bytes = std::fs::read(&path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
        let mut v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{} does not parse: {e}", path.display()))?;
        if let Some(m) = v.as_object_mut() {
            m.insert("capture".into(), c.id.clone().into());
        }
        Ok(Some(v))
    }
}

/// Read the captures under `config.dir` and serve them until `cancel`;
/// `on_listening` is told the address once the socket is bound.
pub async fn run(
    config: &ServeConfig,
    on_listening: impl FnOnce(SocketAddr),
    cancel: &crate::sys::cancel::Cancel,
) -> Result<(), ServeError> {
    if !config.listen.ip().is_loopback() && config.token.is_none() {
        return Err(ServeError::NeedsToken(config.listen));
    }
    let dir = config.dir.clone();
    let dirs = tokio::task::spawn_blocking(move || CaptureDirs::open(&dir))
        .await
        .map_err(|e| ServeError::Serve(std::io::Error::other(e)))??;
    for s in &dirs.skipped {
        tracing::warn!(path = %s.path.display(), reason = %s.reason, "capture not served");
    }
    let api = Api {
        serve_status: Some(dirs.status()),
        source: Arc::new(dirs),
        agent: None,
        serve_token: config.token.clone(),
        queries: Arc::new(tokio::sync::Semaphore::new(MAX_QUERIES)),
        steps: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: config.listen, source })?;
    on_listening(addr);
    let app = crate::api::http::router(Arc::new(api));
    let stop = cancel.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(ServeError::Serve)
}
