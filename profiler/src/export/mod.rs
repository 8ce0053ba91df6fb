//! Profiles for the fleet backends users already run: Pyroscope's push API
//! (pprof bodies in its protobuf envelope). Pure encoders from a window's
//! [`Profile`](crate::profile::Profile); delivery, retries and watermarks
//! are the agent's (`agent/push.rs`).

pub mod otlp;
pub mod otlp_proto;
pub mod push_proto;
pub mod pyroscope;
pub mod service;

/// `bytes` gzipped, fast: bodies go out every window.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec does not fail.
    let _ = std::io::Write::write_all(&mut gz, bytes);
    gz.finish().unwrap_or_default()
}

/// What one backend's pusher did, for `/api/v1/status` and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PushStatus {
    pub backend: &'static str,
    pub url: String,
    /// Every segment ending at or before it was delivered or given up.
    pub watermark_unix_ns: u64,
    pub segments_pushed: u64,
    pub profiles_pushed: u64,
    pub bytes_pushed: u64,
    /// Series split by process (or samples) to fit the backend's limits.
    pub series_split: u64,
    /// Requests that failed and were retried.
    pub retries: u64,
    /// Segments given up, by reason: `too_old` (older than the replay
    /// window), `rejected` (a 4xx other than 408 and 429), `unreadable`.
    pub given_up: std::collections::BTreeMap<&'static str, u64>,
    pub last_error: Option<String>,
}
