//! Pushing stored windows to fleet backends (Pyroscope's push API, OTLP
//! profiles over HTTP). Each
//! backend has a thread of its own and a watermark over the agent's
//! segments, kept in `DATA_DIR/push/`: every `--push-interval` it sends the
//! segments that closed since, oldest first, one at a time, so memory stays
//! one window's push however long a backend is down. After an outage (or a
//! restart) it replays from the segments, up to `--push-replay` (1 h) back;
//! older ones are given up and counted. Retries back off from 500 ms to 5
//! min, retrying transport errors, 408, 429 and 5xx and honouring
//! `Retry-After`; another 4xx gives the segment up as rejected. The merger
//! leaves segments a backend has not delivered alone (see [`floor`]).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use prost::Message;

use super::{config::PushConfig, state::Shared, store::Segment};
use crate::{
    api::Source,
    export::{
        otlp::{self, OtlpOptions},
        pyroscope::{self, PyroscopeOptions},
        PushStatus,
    },
    profile::Profile,
    sys::{cancel::Cancel, lock},
};

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const LAST_BACKOFF: Duration = Duration::from_secs(300);
/// Longest a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How pushes authenticate.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    basic: Option<String>,
    bearer: Option<String>,
    tenant: Option<String>,
}

fn read_secret(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
    let t = text.trim().to_owned();
    if t.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(t)
}

impl Auth {
    /// Read the secrets the configuration names.
    pub fn load(c: &PushConfig) -> Result<Self, String> {
        use base64::Engine as _;
        let basic = match &c.basic_auth_file {
            None => None,
            Some(p) => {
                let up = read_secret(p)?;
                if !up.contains(':') {
                    return Err(format!("{} does not hold user:password", p.display()));
                }
                Some(base64::engine::general_purpose::STANDARD.encode(up))
            }
        };
        let bearer = c.bearer_token_file.as_deref().map(read_secret).transpose()?;
        Ok(Self { basic, bearer, tenant: c.tenant.clone() })
    }
}

/// Why a segment was not delivered.
enum Failed {
    /// The agent is stopping.
    Cancelled,
    /// Given up, with the reason counted.
    GaveUp(&'static str, String),
}

/// What a backend speaks.
#[derive(Debug, Clone)]
enum Backend {
    Pyroscope(PyroscopeOptions),
    Otlp(OtlpOptions),
}

/// A window's request body, the profiles in it and the series split.
struct Body {
    bytes: Vec<u8>,
    profiles: usize,
    split: usize,
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Pyroscope(_) => "pyroscope",
            Backend::Otlp(_) => "otlp",
        }
    }

    /// The endpoint under the backend's base URL, and the body's type.
    fn endpoint(&self) -> (&'static str, &'static str) {
        match self {
            // Connect's unary protocol, binary protobuf.
            Backend::Pyroscope(_) => ("/push.v1.PusherService/Push", "application/proto"),
            Backend::Otlp(_) => ("/v1development/profiles", "application/x-protobuf"),
        }
    }

    fn encode(&self, p: &Profile) -> Body {
        match self {
            Backend::Pyroscope(o) => {
                let e = pyroscope::encode(p, o);
                Body { profiles: e.profiles, split: e.split, bytes: e.request.encode_to_vec() }
            }
            // OTLP/HTTP takes gzip (its tables repeat names and paths);
            // Pyroscope's pprof bodies are gzipped inside the envelope.
            Backend::Otlp(o) => {
                let e = otlp::encode(p, o);
                Body { profiles: e.profiles, split: 0, bytes: crate::export::gzip(&e.request.encode_to_vec()) }
            }
        }
    }
}

/// One backend.
pub struct Pusher {
    shared: Arc<Shared>,
    url: String,
    backend: Backend,
    auth: Auth,
    interval: Duration,
    replay: Duration,
    status: Arc<Mutex<PushStatus>>,
    watermark_file: PathBuf,
    agent: ureq::Agent,
}

/// The watermark file of a backend: the URL, then the watermark (ns).
fn watermark_file(dir: &std::path::Path, backend: &str, url: &str) -> PathBuf {
    let name: String = url.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    dir.join(format!("{backend}-{name}.watermark"))
}

fn now_ns() -> u64 {
    crate::query::range::now_unix_ns()
}

/// The watermark kept in `file`, if it is `url`'s.
fn load_watermark(file: &std::path::Path, url: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut lines = text.lines();
    (lines.next()? == url).then_some(())?;
    lines.next()?.trim().parse().ok()
}

/// Sleep `d` unless cancelled first; false when cancelled.
fn pause(cancel: &Cancel, d: Duration) -> bool {
    let until = std::time::Instant::now() + d;
    while std::time::Instant::now() < until {
        if cancel.is_cancelled() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100).min(until - std::time::Instant::now()));
    }
    !cancel.is_cancelled()
}

impl Pusher {
    /// A pusher to the backend at `url` (its base URL).
    fn new(shared: Arc<Shared>, url: String, backend: Backend, config: &PushConfig, auth: Auth) -> Self {
        let data_dir = shared.config().data_dir;
        let watermark_file = watermark_file(&data_dir.join("push"), backend.name(), &url);
        // A backend new to this data directory starts at the agent's start:
        // it is not sent the history.
        let watermark_unix_ns = load_watermark(&watermark_file, &url).unwrap_or(shared.started_unix_ns);
        let status = Arc::new(Mutex::new(PushStatus {
            backend: backend.name(),
            url: url.clone(),
            watermark_unix_ns,
            ..Default::default()
        }));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self {
            shared,
            url,
            backend,
            auth,
            interval: config.interval,
            replay: config.replay,
            status,
            watermark_file,
            agent,
        }
    }

    pub fn status(&self) -> Arc<Mutex<PushStatus>> {
        self.status.clone()
    }

    fn save_watermark(&self, wm: u64) {
        let text = format!("{}\n{wm}\n", self.url);
        let dir = self.watermark_file.parent().unwrap_or(std::path::Path::new("."));
        let r = std::fs::create_dir_all(dir).map_err(|e| e.to_string()).and_then(|()| {
            crate::atomic_file::write_atomically(&self.watermark_file, |w| w.write_all(text.as_bytes()))
                .map_err(|e| crate::error::format_chain(&e))
        });
        if let Err(e) = r {
            tracing::warn!(url = %self.url, error = %e, "push watermark not saved");
        }
    }

    fn set_watermark(&self, wm: u64) {
        lock(&self.status).watermark_unix_ns = wm;
        self.save_watermark(wm);
    }

    fn give_up(&self, reason: &'static str, why: String) {
        let mut s = lock(&self.status);
        *s.given_up.entry(reason).or_default() += 1;
        s.last_error = Some(why);
    }

    /// Run until `cancel`.
    pub fn run(self, cancel: &Cancel) {
        let mut wm = lock(&self.status).watermark_unix_ns;
        while pause(cancel, self.interval) {
            let segments: Vec<Segment> =
                self.shared.range(wm, now_ns()).into_iter().filter(|s| s.end_unix_ns > wm).collect();
            for seg in segments {
                match self.deliver(&seg, cancel) {
                    Ok(()) => {}
                    Err(Failed::Cancelled) => return,
                    Err(Failed::GaveUp(reason, why)) => {
                        tracing::warn!(url = %self.url, segment = %seg.name, reason, "push given up: {why}");
                        self.give_up(reason, why);
                    }
                }
                wm = wm.max(seg.end_unix_ns);
                self.set_watermark(wm);
            }
        }
    }

    /// Send one segment, retrying as long as it is within the replay window.
    fn deliver(&self, seg: &Segment, cancel: &Cancel) -> Result<(), Failed> {
        let too_old = || seg.end_unix_ns.saturating_add(self.replay.as_nanos() as u64) < now_ns();
        if too_old() {
            return Err(Failed::GaveUp("too_old", format!("{} is older than the replay window", seg.name)));
        }
        let stored = match self.shared.read(seg) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Failed::GaveUp("unreadable", e)),
        };
        let body = self.backend.encode(&stored.profile);
        drop(stored);
        if body.profiles == 0 {
            return Ok(());
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            let wait = match self.send(&body.bytes) {
                Ok(()) => {
                    let mut s = lock(&self.status);
                    s.segments_pushed += 1;
                    s.profiles_pushed += body.profiles as u64;
                    s.bytes_pushed += body.bytes.len() as u64;
                    s.series_split += body.split as u64;
                    s.last_error = None;
                    return Ok(());
                }
                Err(Attempt::Retry(why, after)) => {
                    let mut s = lock(&self.status);
                    s.retries += 1;
                    s.last_error = Some(why);
                    after.unwrap_or(backoff).min(LAST_BACKOFF)
                }
                Err(Attempt::Reject(why)) => return Err(Failed::GaveUp("rejected", why)),
            };
            if !pause(cancel, wait) {
                return Err(Failed::Cancelled);
            }
            if too_old() {
                return Err(Failed::GaveUp(
                    "too_old",
                    format!("{} aged past the replay window while retrying", seg.name),
                ));
            }
            backoff = (backoff * 2).min(LAST_BACKOFF);
        }
    }

    /// One request.
    fn send(&self, body: &[u8]) -> Result<(), Attempt> {
        let (path, content_type) = self.backend.endpoint();
        let url = format!("{}{path}", self.url);
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", content_type)
            .header("User-Agent", concat!("tailprof/", env!("CARGO_PKG_VERSION")));
        match self.backend {
            Backend::Pyroscope(_) => req = req.header("Connect-Protocol-Version", "1"),
            Backend::Otlp(_) => req = req.header("Content-Encoding", "gzip"),
        }
        if let Some(b) = &self.auth.basic {
            req = req.header("Authorization", &format!("Basic {b}"));
        } else if let Some(t) = &self.auth.bearer {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        if let Some(t) = &self.auth.tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        let mut resp = match req.send(body) {
            Ok(r) => r,
            Err(e) => return Err(Attempt::Retry(format!("{url}: {e}"), None)),
        };
        let code = resp.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
        let why = format!("{url} answered {code}: {}", text.trim());
        match code {
            408 | 429 | 500..=599 => Err(Attempt::Retry(why, retry_after)),
            _ => Err(Attempt::Reject(why)),
        }
    }
}

enum Attempt {
    Retry(String, Option<Duration>),
    Reject(String),
}

/// Start a pusher per configured backend; their statuses, and the threads.
pub fn spawn(
    shared: &Arc<Shared>,
    config: &PushConfig,
    cancel: &Cancel,
) -> Result<Vec<std::thread::JoinHandle<()>>, String> {
    if config.pyroscope.is_empty() && config.otlp.is_empty() {
        return Ok(Vec::new());
    }
    let auth = Auth::load(config)?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let pyroscope =
        Backend::Pyroscope(PyroscopeOptions { host: host.clone(), offcpu_name: config.offcpu_name.clone() });
    let backends = config
        .pyroscope
        .iter()
        .map(|u| (u, pyroscope.clone()))
        .chain(config.otlp.iter().map(|u| (u, Backend::Otlp(OtlpOptions { host: host.clone() }))));
    let mut threads = Vec::new();
    for (url, backend) in backends {
        let p = Pusher::new(shared.clone(), url.clone(), backend, config, auth.clone());
        lock(&shared.push).push(p.status());
        let cancel = cancel.clone();
        let t = std::thread::Builder::new()
            .name("tailprof-push".into())
            .spawn(move || p.run(&cancel))
            .map_err(|e| format!("could not start a push thread: {e}"))?;
        threads.push(t);
    }
    Ok(threads)
}

/// The oldest watermark of the backends (none: `u64::MAX`).
pub fn floor(shared: &Shared) -> u64 {
    lock(&shared.push).iter().map(|s| lock(s).watermark_unix_ns).min().unwrap_or(u64::MAX)
}
