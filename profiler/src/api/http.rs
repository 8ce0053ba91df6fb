//! The HTTP API (axum) of the agent and of `tailprof serve`: JSON unless a
//! format is asked for; documented in docs/api.md. A parameter that does
//! not parse gets a 400 with a sentence; a query that finds the server busy
//! a 503; what only a running agent has, a sentence under `serve`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    extract::{Path, Query, Request as HttpRequest, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use serde::{Deserialize, Serialize};

use super::{windows, Api};
use crate::agent::{
    captures::{Capture, CaptureLimits, Refused, Request},
    state::Shared,
    target::Target,
};
use crate::{
    output,
    profile::{Profile, Selection},
    query::{dimension::parse_group_by, range::parse_range, tree},
    tier::Tier,
};

/// Longest a query may take before it is answered with 503.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Most nodes a tree may be asked for.
const MAX_NODES: usize = 100_000;
const DEFAULT_NODES: usize = 2_000;
/// Largest request body (a capture request, an Alertmanager payload).
const MAX_BODY: usize = 256 * 1024;

/// An error answer: a status and one sentence.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (self.0, axum::Json(Body { error: self.1 })).into_response()
    }
}

/// The longest timeline step: a year and a day (its nanoseconds fit a u64
/// some 580 times over).
const MAX_STEP: Duration = Duration::from_secs(366 * 86_400);

/// Every error answers `{"error": sentence}`, also those made before a
/// handler runs: the router's 405 for a method a route does not take (empty),
/// and the extractors' rejections (plain text: a body over the cap, a path
/// segment that is not UTF-8).
async fn json_errors(req: HttpRequest, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let allow = parts.headers.get(header::ALLOW).cloned();
    let sentence = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let takes = allow.as_ref().and_then(|a| a.to_str().ok()).unwrap_or("other methods").to_owned();
            format!("{path} does not take {method}; it takes {takes}")
        }
        StatusCode::PAYLOAD_TOO_LARGE => format!("the request body is over the limit of {} KiB", MAX_BODY / 1024),
        _ => {
            let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text).trim().to_owned();
            match text.is_empty() {
                true => status.canonical_reason().unwrap_or("the request was refused").to_owned(),
                false => text,
            }
        }
    };
    let mut out = ApiError(status, sentence).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/config", get(config))
        .route("/api/v1/segments", get(segments))
        .route("/api/v1/profile", get(profile))
        .route("/api/v1/threads", get(threads))
        .route("/api/v1/timeline", get(timeline))
        .route("/api/v1/noise", get(noise))
        .route("/api/v1/histograms", get(histograms))
        .route("/api/v1/captures", get(list_captures).post(start_capture))
        .route("/api/v1/captures/{id}", get(one_capture))
        .route("/api/v1/captures/{id}/files/{*name}", get(capture_file))
        .route("/api/v1/alerts/alertmanager", post(alertmanager))
        .route("/metrics", get(metrics))
        // The viewer's assets at `/`; anything else is no endpoint.
        .fallback(|uri: axum::http::Uri| async move {
            match crate::web::is_asset(uri.path()) {
                true => crate::web::asset(uri).await,
                false => ApiError(StatusCode::NOT_FOUND, "no such endpoint; see docs/api.md".into()).into_response(),
            }
        })
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(api.clone(), auth))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        // gzip when asked (a 100k-node tree is mostly repeated names).
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(api)
}

/// With a token, every endpoint but `/healthz` (and the viewer's assets,
/// which hold no data) needs `Authorization: Bearer TOKEN`.
async fn auth(State(s): State<Arc<Api>>, req: HttpRequest, next: Next) -> Response {
    let Some(token) = s.token() else { return next.run(req).await };
    let path = req.uri().path();
    if path == "/healthz" || crate::web::is_asset(path) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        next.run(req).await
    } else {
        ApiError(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer TOKEN)".into())
            .into_response()
    }
}

/// Equality whose time does not depend on where the first difference is
/// (only on the lengths, which a token does not hide).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The running agent, or the sentence saying `serve` has none.
fn agent_of(s: &Api) -> Result<&Arc<Shared>, Response> {
    s.agent.as_ref().ok_or_else(|| {
        ApiError(StatusCode::NOT_FOUND, "tailprof serve shows captures: only a running agent has this".into())
            .into_response()
    })
}

async fn readyz(State(s): State<Arc<Api>>) -> Response {
    if s.agent.as_ref().is_none_or(|a| a.ready()) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "not ready: the programs are not attached yet".into()).into_response()
    }
}

async fn status(State(s): State<Arc<Api>>) -> Response {
    match (&s.agent, &s.serve_status) {
        (Some(a), _) => {
            let mut status = serde_json::to_value(a.status()).unwrap_or_default();
            if let Some(m) = status.as_object_mut() {
                m.insert("timeline_cache".into(), serde_json::to_value(s.steps.stats()).unwrap_or_default());
            }
            axum::Json(status).into_response()
        }
        (None, status) => json(status),
    }
}

async fn config(State(s): State<Arc<Api>>) -> Response {
    match agent_of(&s) {
        Ok(a) => axum::Json(a.config()).into_response(),
        Err(r) => r,
    }
}

/// OpenMetrics to those who ask for it (Prometheus does), the classic
/// text format to the rest.
async fn metrics(State(s): State<Arc<Api>>, headers: axum::http::HeaderMap) -> Response {
    let open_metrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let agent = match agent_of(&s) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match agent.metrics_text() {
        Ok(text) if open_metrics => {
            ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
                .into_response()
        }
        Ok(text) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            crate::agent::metrics::classic_text(&text),
        )
            .into_response(),
        Err(e) => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("could not encode the metrics: {e}")).into_response()
        }
    }
}

async fn segments(State(s): State<Arc<Api>>) -> Response {
    axum::Json(s.source.segments()).into_response()
}

/// Parameters of a query over a range.
struct RangeQuery {
    from: u64,
    to: u64,
    view: View,
    format: Format,
    group_by: Option<crate::query::dimension::GroupBy>,
    selection: Selection,
    max_nodes: usize,
    focus: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum View {
    Cpu,
    Offcpu,
    Wall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Folded,
    Pprof,
    Svg,
}

const KNOWN: [&str; 15] = [
    "from",
    "to",
    "view",
    "format",
    "group_by",
    "pid",
    "comm",
    "cgroup",
    "container",
    "unit",
    "pod",
    "state",
    "syscall",
    "max_nodes",
    "focus",
];

impl RangeQuery {
    fn parse(q: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(ApiError::bad(format!("unknown parameter '{k}'; known: {}", KNOWN.join(", "))));
        }
        let get = |k: &str| q.get(k).map(String::as_str);
        let (from, to) =
            parse_range(get("from"), get("to"), crate::query::range::now_unix_ns()).map_err(ApiError::bad)?;
        let view = match get("view").unwrap_or("cpu") {
            "cpu" => View::Cpu,
            "offcpu" => View::Offcpu,
            "wall" => View::Wall,
            v => return Err(ApiError::bad(format!("unknown view '{v}'; use cpu, offcpu or wall"))),
        };
        let format = match get("format").unwrap_or("json") {
            "json" => Format::Json,
            "folded" => Format::Folded,
            "pprof" => Format::Pprof,
            "svg" => Format::Svg,
            f => return Err(ApiError::bad(format!("unknown format '{f}'; use json, folded, pprof or svg"))),
        };
        let group_by = get("group_by").map(parse_group_by).transpose().map_err(ApiError::bad)?;
        let pids = match get("pid") {
            Some(p) => p
                .split(',')
                .map(|x| x.trim().parse::<u32>().map_err(|_| ApiError::bad(format!("pid '{x}' is not a process id"))))
                .collect::<Result<Vec<u32>, ApiError>>()?,
            None => Vec::new(),
        };
        let state = match get("state") {
            None => None,
            Some(s) => {
                Some(crate::profile::STATE_NAMES.iter().position(|n| *n == s).map(|i| i as u32).ok_or_else(|| {
                    ApiError::bad(format!(
                        "state '{s}' is not a thread state; use {}",
                        crate::profile::STATE_NAMES.join(", ")
                    ))
                })?)
            }
        };
        let syscall = match get("syscall") {
            None => None,
            Some(s) => Some(
                (0..1024)
                    .find(|&nr| crate::profile::syscall_name(nr) == s)
                    .ok_or_else(|| ApiError::bad(format!("syscall '{s}' is not a system call of this machine")))?,
            ),
        };
        let selection = Selection {
            pids,
            comm: get("comm").map(str::to_owned),
            cgroup: get("cgroup").map(str::to_owned),
            container: get("container").map(str::to_owned),
            unit: get("unit").map(str::to_owned),
            pod: get("pod").map(str::to_owned),
            state,
            syscall,
        };
        let max_nodes = match get("max_nodes") {
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_NODES).contains(n))
                .ok_or_else(|| ApiError::bad(format!("max_nodes '{n}' is not a number from 1 to {MAX_NODES}")))?,
            None => DEFAULT_NODES,
        };
        let focus = get("focus").map(|f| f.split(';').map(str::to_owned).collect()).unwrap_or_default();
        Ok(Self { from, to, view, format, group_by, selection, max_nodes, focus })
    }
}

/// Run `f` on the blocking pool, within the query limits.
async fn limited<T: Send + 'static>(
    s: &Arc<Api>,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let Ok(_permit) = s.queries.clone().try_acquire_owned() else {
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "too many queries at once; retry shortly".into()));
    };
    // A query parses whole segments and drops them: its thread's heap
    // arena keeps the freed pages unless they are handed back.
    let run = move || {
        let r = f();
        crate::sys::mem::release_free_memory();
        r
    };
    match tokio::time::timeout(QUERY_TIMEOUT, tokio::task::spawn_blocking(run)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("the query failed: {e}"))),
        Err(_) => {
            Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "the query took too long; ask for a shorter range".into()))
        }
    }
}

/// The merged profile of a range, selected and sliced as asked.
fn merged(s: &Api, q: &RangeQuery) -> Result<windows::Merged, ApiError> {
    let mut m = windows::merge(&*s.source, q.from, q.to).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    if let Some(g) = &q.group_by {
        m.profile.group_by = g.clone();
    }
    m.profile.select(&q.selection);
    Ok(m)
}

fn folded_of(p: &Profile, view: View) -> output::folded::Folded {
    match view {
        View::Cpu => output::folded::fold(p),
        View::Offcpu => output::wallclock::fold_offcpu(p),
        View::Wall => output::wallclock::fold_wallclock(p),
    }
}

async fn profile(State(s): State<Arc<Api>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let q = match RangeQuery::parse(&q) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let shared = s.clone();
    let result = limited(&s, move || {
        let write = |f: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
            let mut out = Vec::new();
            f(&mut out).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Ok::<_, ApiError>(out)
        };
        if q.format == Format::Pprof {
            // pprof carries the processes and modules: the merge of the range.
            let p = merged(&shared, &q)?.profile;
            let kind = match q.view {
                View::Cpu => output::pprof::Kind::Cpu,
                View::Offcpu => output::pprof::Kind::OffCpu,
                View::Wall => output::pprof::Kind::Wall,
            };
            return Ok(("application/octet-stream", write(&|w| output::pprof::write(&p, kind, w))?));
        }
        // The other formats are folded lines: summed window by window.
        let parts =
            crate::samples_file::Parts { stacks: q.view != View::Offcpu, off_cpu: q.view != View::Cpu, threads: false };
        let windows::Folded { folded, windows, covered } = windows::fold(&*shared.source, q.from, q.to, parts, |p| {
            if let Some(g) = &q.group_by {
                p.group_by = g.clone();
            }
            p.select(&q.selection);
            folded_of(p, q.view)
        })
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        Ok(match q.format {
            Format::Folded => ("text/plain; charset=utf-8", write(&|w| output::folded::write(&folded, w))?),
            Format::Svg => {
                let unit = if q.view == View::Cpu { "samples" } else { "ns" };
                ("image/svg+xml", write(&|w| output::flamegraph::write(&folded, "tailprof", unit, w))?)
            }
            // JSON (pprof was answered above).
            Format::Json | Format::Pprof => {
                #[derive(Serialize)]
                struct Body {
                    from_unix_ns: u64,
                    to_unix_ns: u64,
                    /// The windows merged, and the span they cover.
                    windows: usize,
                    covered_from_unix_ns: u64,
                    covered_to_unix_ns: u64,
                    view: View,
                    unit: &'static str,
                    root: tree::Node,
                }
                let unit = if q.view == View::Cpu { "samples" } else { "nanoseconds" };
                let (covered_from, covered_to) = covered.unwrap_or((0, 0));
                let body = Body {
                    from_unix_ns: q.from,
                    to_unix_ns: q.to,
                    windows,
                    covered_from_unix_ns: covered_from,
                    covered_to_unix_ns: covered_to,
                    view: q.view,
                    unit,
                    root: tree::build(&folded, &q.focus, q.max_nodes),
                };
                (
                    "application/json",
                    serde_json::to_vec(&body)
                        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
                )
            }
        })
    })
    .await;
    match result {
        Ok((kind, body)) => ([(header::CONTENT_TYPE, kind)], body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Per window of the range: exact CPU and run-queue seconds, sampled
/// sleeping, disk and other seconds, samples, drops and the rates in effect.
async fn timeline(State(s): State<Arc<Api>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    const KNOWN: [&str; 4] = ["from", "to", "step", "group_by"];
    if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return ApiError::bad(format!("unknown parameter '{k}'; known: {}", KNOWN.join(", "))).into_response();
    }
    let get = |k: &str| q.get(k).map(String::as_str);
    let (from, to) = match parse_range(get("from"), get("to"), crate::query::range::now_unix_ns()) {
        Ok(r) => r,
        Err(e) => return ApiError::bad(e).into_response(),
    };
    let step = match get("step").map(|v| (v, humantime::parse_duration(v))) {
        None => None,
        Some((_, Ok(d))) if d >= Duration::from_secs(1) && d <= MAX_STEP => Some(d.as_nanos() as u64),
        Some((v, _)) => {
            return ApiError::bad(format!("step '{v}' is not a duration from 1s to 366d, like 1m")).into_response()
        }
    };
    let group_by = match get("group_by").map(parse_group_by).transpose() {
        Ok(g) => g,
        Err(e) => return ApiError::bad(e).into_response(),
    };
    let shared = s.clone();
    let result = limited(&s, move || {
        let steps = windows::timeline(&*shared.source, &shared.steps, from, to, step, group_by.as_ref())
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        #[derive(Serialize)]
        struct Body {
            from_unix_ns: u64,
            to_unix_ns: u64,
            step_ns: Option<u64>,
            steps: Vec<windows::Step>,
        }
        serde_json::to_vec(&Body { from_unix_ns: from, to_unix_ns: to, step_ns: step, steps })
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await;
    match result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn threads(State(s): State<Arc<Api>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let q = match RangeQuery::parse(&q) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let shared = s.clone();
    let result = limited(&s, move || {
        let p = merged(&shared, &q)?.profile;
        let summary = output::summary::Summary::from_profile(&p);
        serde_json::to_vec(&summary).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await;
    match result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `from` and `to` of a query that takes nothing else.
fn range_only(q: &BTreeMap<String, String>) -> Result<(u64, u64), ApiError> {
    if let Some(k) = q.keys().find(|k| !["from", "to"].contains(&k.as_str())) {
        return Err(ApiError::bad(format!("unknown parameter '{k}'; known: from, to")));
    }
    let get = |k: &str| q.get(k).map(String::as_str);
    parse_range(get("from"), get("to"), crate::query::range::now_unix_ns()).map_err(ApiError::bad)
}

/// The noise report `record` writes (noise.json) over a range: the
/// continuous tier's /proc/stat times, /proc/softirqs and /proc/interrupts
/// counts, and per-source estimates from samples, summed.
async fn noise(State(s): State<Arc<Api>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let (from, to) = match range_only(&q) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let shared = s.clone();
    let result = limited(&s, move || {
        shared
            .source
            .noise(from, to)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no stored window with noise overlaps the range".into()))
    })
    .await;
    match result {
        Ok(v) => json(&v),
        Err(e) => e.into_response(),
    }
}

/// Latency histograms exist in deep captures only: those of the captures
/// overlapping the range, each as its histograms.json.
async fn histograms(State(s): State<Arc<Api>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let (from, to) = match range_only(&q) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    #[derive(Serialize)]
    struct One {
        capture: String,
        reason: String,
        started_unix_ns: u64,
        ended_unix_ns: Option<u64>,
        histograms: serde_json::Value,
    }
    // Files are read on the blocking pool, within the query limits.
    let shared = s.clone();
    let out = limited(&s, move || {
        let mut out = Vec::new();
        for c in shared.source.captures() {
            let end = c.ended_unix_ns.unwrap_or(u64::MAX);
            if c.tier != Tier::Deep || c.started_unix_ns >= to || end <= from {
                continue;
            }
            let Some(path) = shared.source.capture_file(&c.id, crate::noise::output::HISTOGRAMS_JSON) else {
                continue;
            };
            let Ok(v) = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string()))
            else {
                continue;
            };
            out.push(One {
                capture: c.id,
                reason: c.reason,
                started_unix_ns: c.started_unix_ns,
                ended_unix_ns: c.ended_unix_ns,
                histograms: v,
            });
        }
        Ok(out)
    })
    .await;
    let out = match out {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    #[derive(Serialize)]
    struct Body {
        from_unix_ns: u64,
        to_unix_ns: u64,
        /// The continuous tier has no latency histograms: only deep captures.
        note: &'static str,
        captures: Vec<One>,
    }
    json(&Body {
        from_unix_ns: from,
        to_unix_ns: to,
        note: "latency histograms come from deep captures only (POST /api/v1/captures); the continuous tier hooks no syscall or interrupt",
        captures: out,
    })
}

fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A refusal as an answer: busy 409, cooling down 429, bad request 400.
fn refused(e: &Refused) -> Response {
    let status = match e {
        Refused::Busy(_) => StatusCode::CONFLICT,
        Refused::Cooldown { .. } => StatusCode::TOO_MANY_REQUESTS,
        Refused::Invalid(_) => StatusCode::BAD_REQUEST,
        Refused::Io(_) => StatusCode::INSUFFICIENT_STORAGE,
    };
    let mut r = ApiError(status, e.to_string()).into_response();
    if let Refused::Cooldown { left, .. } = e {
        if let Ok(v) = header::HeaderValue::from_str(&left.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// A capture request's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    /// "30s", or seconds.
    duration: Option<serde_json::Value>,
    tier: Option<Tier>,
    reason: Option<String>,
    #[serde(flatten)]
    target: Target,
}

fn parse_capture(body: &[u8], limits: &CaptureLimits) -> Result<Request, ApiError> {
    let b: CaptureBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(format!(
            "the body is not a capture request ({e}); send {{\"duration\": \"30s\", \"pid\": 1234, \"reason\": \"...\"}}"
        ))
    })?;
    let duration = match &b.duration {
        None => limits.default_duration,
        Some(serde_json::Value::String(s)) => {
            humantime::parse_duration(s).map_err(|e| ApiError::bad(format!("duration '{s}' is not a duration: {e}")))?
        }
        Some(serde_json::Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| ApiError::bad(format!("duration {n} is not a number of seconds")))?,
        Some(v) => return Err(ApiError::bad(format!("duration {v} is neither \"30s\" nor a number of seconds"))),
    };
    Ok(Request {
        duration,
        tier: b.tier.unwrap_or(Tier::Deep),
        target: b.target,
        reason: b.reason.unwrap_or_else(|| "asked over the API".into()),
        trigger: "api".into(),
    })
}

/// Start a capture; its record (201) says where its files will be.
async fn start_capture(State(s): State<Arc<Api>>, body: axum::body::Bytes) -> Response {
    let Some(agent) = &s.agent else { return read_only() };
    let req = match parse_capture(&body, &agent.captures.limits()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let shared = agent.clone();
    let started = tokio::task::spawn_blocking(move || shared.start_capture(req)).await;
    match started {
        Ok(Ok(c)) => (StatusCode::CREATED, json(&c)).into_response(),
        Ok(Err(e)) => refused(&e),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// What `serve` answers to what would start a capture.
fn read_only() -> Response {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "tailprof serve is read-only: it shows captures, it cannot start one".into(),
    )
    .into_response()
}

async fn list_captures(State(s): State<Arc<Api>>) -> Response {
    #[derive(Serialize)]
    struct Body {
        /// Under `serve`: captures cannot be started.
        read_only: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        limits: Option<CaptureLimits>,
        running: bool,
        /// Deleted to keep the newest.
        deleted: u64,
        captures: Vec<Capture>,
    }
    let agent = s.agent.as_ref();
    json(&Body {
        read_only: agent.is_none(),
        limits: agent.map(|a| a.captures.limits()),
        running: agent.is_some_and(|a| a.captures.busy()),
        deleted: agent.map_or(0, |a| a.captures.deleted()),
        captures: s.source.captures(),
    })
}

async fn one_capture(State(s): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match s.source.captures().into_iter().find(|c| c.id == id) {
        Some(c) => json(&c),
        None => ApiError(StatusCode::NOT_FOUND, format!("no capture '{id}'; GET /api/v1/captures lists them"))
            .into_response(),
    }
}

async fn capture_file(State(s): State<Arc<Api>>, Path((id, name)): Path<(String, String)>) -> Response {
    let Some(path) = s.source.capture_file(&id, &name) else {
        return ApiError(StatusCode::NOT_FOUND, format!("capture '{id}' has no file '{name}'; its record lists them"))
            .into_response();
    };
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("txt") | Some("folded") => "text/plain; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    };
    match tokio::task::spawn_blocking(move || std::fs::read(path)).await.map_err(std::io::Error::other).and_then(|r| r)
    {
        Ok(body) => ([(header::CONTENT_TYPE, kind)], body).into_response(),
        Err(e) => ApiError(StatusCode::NOT_FOUND, format!("file '{name}' is gone: {e}")).into_response(),
    }
}

/// Prometheus Alertmanager's webhook: each firing alert whose labels name
/// something running here (pid, container_id, unit, pod, comm) starts a
/// capture of it, its name the reason; the rest are listed as skipped.
async fn alertmanager(State(s): State<Arc<Api>>, body: axum::body::Bytes) -> Response {
    let Some(agent) = s.agent.clone() else { return read_only() };
    let payload: crate::agent::alerts::Webhook = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return ApiError::bad(format!("the body is not an Alertmanager webhook payload: {e}")).into_response()
        }
    };
    match tokio::task::spawn_blocking(move || crate::agent::alerts::handle(&agent, &payload)).await {
        Ok(outcome) => json(&outcome),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    #[test]
    fn bad_parameters_get_a_sentence() {
        let q = |pairs: &[(&str, &str)]| {
            RangeQuery::parse(&pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
        };
        assert!(q(&[]).is_ok());
        let sel = q(&[("state", "disk"), ("syscall", "read"), ("unit", "a.service")]).unwrap().selection;
        assert_eq!(sel.state, Some(profiler_common::STATE_DISK));
        assert_eq!(sel.syscall.map(crate::profile::syscall_name).as_deref(), Some("read"));
        for (pairs, says) in [
            (&[("view", "heap")][..], "unknown view"),
            (&[("from", "-1m"), ("to", "-2m")][..], "before"),
            (&[("max_nodes", "0")][..], "max_nodes"),
            (&[("pid", "x")][..], "pid"),
            (&[("colour", "red")][..], "unknown parameter"),
            (&[("format", "png")][..], "unknown format"),
            (&[("state", "flying")][..], "not a thread state"),
            (&[("syscall", "teleport")][..], "not a system call"),
        ] {
            let e = q(pairs).err().unwrap_or_else(|| panic!("{pairs:?} accepted"));
            assert_eq!(e.0, StatusCode::BAD_REQUEST);
            assert!(e.1.contains(says), "{pairs:?}: {}", e.1);
        }
    }
}
