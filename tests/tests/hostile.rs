//! Hostile input through the real HTTP server of `tailprof agent`.
//!
//! Every endpoint and every parameter of docs/api.md is fuzzed for a bounded
//! time by a property-based generator (proptest): malformed, huge, negative,
//! float, NaN and reversed times and ranges, unicode and control characters,
//! values up to 100 KB, lists of thousands of pids, out-of-range `max_nodes`,
//! deep `focus` paths, repeated and unknown parameters, path tricks in capture
//! ids and file names, wrong methods, bodies that are not JSON, nested 60,000
//! deep or over the body cap, and requests that are not HTTP at all. Meanwhile
//! two clients keep the query pool busy with the heaviest valid queries, a
//! real deep capture has left files to ask for, and the agent's RSS is polled.
//! The rule, per answer: no 5xx but 503 (busy), an error is a JSON
//! `{"error": sentence}`, a JSON answer parses, and it comes within the
//! request timeout; over the run: no panic in the agent's log, memory
//! bounded, the agent still healthy, and SIGTERM exits 0.
//!
//! With `--token-file`, every endpoint but /healthz (and the viewer's assets)
//! answers 401 to a request without the token or with any other one.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{json, Value};
use tailprof_e2e::*;

/// Longest wait for one answer: the API's own query cap is 30 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);
/// Wall-clock time the generated requests are sent for.
const FUZZ_BUDGET: Duration = Duration::from_secs(50);
/// Cases per fuzzing client, if the budget lasts that long.
const MAX_CASES: usize = 20_000;
/// Clients sending generated requests, and clients keeping the query pool
/// (4 at once) busy: together more than it takes, so 503s happen.
const FUZZERS: usize = 3;
const LOADERS: usize = 2;
/// Bound of the agent's resident memory over the run. It idles at 50 to
/// 130 MiB (more when the host is busy: it profiles the whole host), and
/// four queries at once over every stored window, a deep capture and the
/// buffered requests take it to 280 to 390 MiB at the peak here (with other
/// builds running on the host), back down once the load stops.
const RSS_LIMIT_KIB: u64 = 512 * 1024;
/// The API's request body cap (docs/api.md: 256 KiB, else 413).
const MAX_BODY: usize = 256 * 1024;
/// Beyond this the request line or the headers may be refused by the HTTP
/// layer itself (414, 431) before any handler runs.
const LONG_HEAD: usize = 16 * 1024;

const DIMENSIONS: [&str; 11] =
    ["comm", "process", "pid", "tid", "user", "cgroup", "container", "pod", "unit", "state", "syscall"];

// ---------------------------------------------------------------------------
// Requests, a client with a timeout, and the rule every answer must keep.

/// One request as it goes on the wire.
#[derive(Clone, Debug)]
struct Req {
    family: &'static str,
    method: String,
    /// The request target, already encoded.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes sent as they are instead (requests that are not valid HTTP).
    raw: Option<Vec<u8>>,
}

impl Req {
    fn get(family: &'static str, target: String) -> Self {
        Self { family, method: "GET".into(), target, headers: Vec::new(), body: Vec::new(), raw: None }
    }

    fn post(family: &'static str, target: &str, body: Vec<u8>) -> Self {
        Self {
            family,
            method: "POST".into(),
            target: target.into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
            raw: None,
        }
    }

    fn bytes(&self, addr: &str) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.method,
            self.target,
            self.body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// The request, cut to a readable length (with the full lengths).
    fn describe(&self) -> String {
        if let Some(raw) = &self.raw {
            return format!("raw bytes ({} B): {}", raw.len(), shown(raw, 240));
        }
        let mut s = format!("{} {}", self.method, shown(self.target.as_bytes(), 240));
        for (k, v) in &self.headers {
            s.push_str(&format!(" [{k}: {}]", shown(v.as_bytes(), 60)));
        }
        if !self.body.is_empty() || self.method == "POST" {
            s.push_str(&format!(" body ({} B): {}", self.body.len(), shown(&self.body, 200)));
        }
        s
    }
}

/// `bytes` as escaped text, at most `max` bytes of it.
fn shown(bytes: &[u8], max: usize) -> String {
    let cut = &bytes[..bytes.len().min(max)];
    let mut s: String = cut.escape_ascii().to_string();
    if bytes.len() > max {
        s.push_str(&format!("… ({} B in all)", bytes.len()));
    }
    s
}

fn header<'a>(r: &'a HttpResponse, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn describe_answer(r: &HttpResponse) -> String {
    format!(
        "{} [content-type: {}] {}",
        r.status,
        header(r, "content-type").unwrap_or("none"),
        if r.body.is_empty() { "(empty body)".to_owned() } else { shown(&r.body, 300) }
    )
}

/// What came back: an answer, or why none did.
enum Outcome {
    Answer(HttpResponse),
    /// No complete answer: the connection closed or reset, or the timeout.
    None(String),
}

/// Send `req` over a fresh connection and wait at most [`REQUEST_TIMEOUT`].
fn send(addr: &str, req: &Req) -> (Outcome, Duration) {
    let t0 = Instant::now();
    let outcome = exchange(addr, req);
    (outcome, t0.elapsed())
}

fn exchange(addr: &str, req: &Req) -> Outcome {
    let sock: SocketAddr = addr.parse().expect("a socket address");
    let mut s = match TcpStream::connect_timeout(&sock, REQUEST_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return Outcome::None(format!("connect: {e}")),
    };
    let _ = s.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = s.set_write_timeout(Some(REQUEST_TIMEOUT));
    // A server that answers before reading a whole (oversized) body may
    // close early: read its answer anyway.
    let wrote = s.write_all(&req.bytes(addr));
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    if let Err(e) = &read {
        if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
            return Outcome::None(format!("no complete answer within {REQUEST_TIMEOUT:?}"));
        }
    }
    match parse(&raw, req.method == "HEAD") {
        Some(r) => Outcome::Answer(r),
        None => Outcome::None(format!(
            "no complete answer (write: {}, read: {}, {} B received: {})",
            wrote.map_or_else(|e| e.to_string(), |_| "ok".into()),
            read.map_or_else(|e| e.to_string(), |_| "closed".into()),
            raw.len(),
            shown(&raw, 120)
        )),
    }
}

/// An HTTP/1.1 response (after any 1xx), its chunked body decoded and its
/// gzip undone; `None` unless whole.
fn parse(raw: &[u8], head_only: bool) -> Option<HttpResponse> {
    let mut rest = raw;
    loop {
        let split = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        rest = &rest[split + 4..];
        if (100..200).contains(&status) {
            continue;
        }
        let has = |k: &str, v: &str| headers.iter().any(|(hk, hv)| hk == k && hv.to_ascii_lowercase().contains(v));
        let mut body = if head_only {
            Vec::new()
        } else if has("transfer-encoding", "chunked") {
            dechunk(rest)?
        } else {
            if let Some(len) = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()) {
                if rest.len() < len {
                    return None;
                }
                rest = &rest[..len];
            }
            rest.to_vec()
        };
        if has("content-encoding", "gzip") && !body.is_empty() {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain).ok()?;
            body = plain;
        }
        return Some(HttpResponse { status, headers, body });
    }
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..eol]).ok()?.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(eol + 2..eol + 2 + size)?);
        rest = rest.get(eol + 2 + size + 2..)?;
    }
}

/// Whether an answer is `{"error": "a sentence"}`.
fn is_error_sentence(r: &HttpResponse) -> bool {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(|s| !s.trim().is_empty()))
        .unwrap_or(false)
}

/// Whether `b` is one JSON text (RFC 8259), checked without recursion:
/// serde_json stops at 128 levels, and a tree of deep stacks nests deeper.
fn is_json(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok() && json_end(b).is_some()
}

fn json_end(b: &[u8]) -> Option<()> {
    #[derive(PartialEq)]
    enum Want {
        Value,
        ValueOrEnd,
        Key,
        KeyOrEnd,
        After,
    }
    let skip_ws = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
            *i += 1;
        }
    };
    let string = |mut i: usize| -> Option<usize> {
        i += 1;
        loop {
            match *b.get(i)? {
                b'"' => return Some(i + 1),
                b'\\' => match *b.get(i + 1)? {
                    b'u' => {
                        b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit).then_some(())?;
                        i += 6;
                    }
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    _ => return None,
                },
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
    };
    let digits = |mut i: usize| {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    let number = |mut i: usize| -> Option<usize> {
        if b[i] == b'-' {
            i += 1;
        }
        i = if b.get(i) == Some(&b'0') { i + 1 } else { digits(i)? };
        if b.get(i) == Some(&b'.') {
            i = digits(i + 1)?;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            i = digits(i)?;
        }
        Some(i)
    };
    let (mut i, mut want, mut stack) = (0, Want::Value, Vec::new());
    loop {
        skip_ws(&mut i);
        match want {
            Want::Value | Want::ValueOrEnd => {
                let (c, or_end) = (*b.get(i)?, want == Want::ValueOrEnd);
                want = Want::After;
                match c {
                    b']' if or_end => {
                        stack.pop();
                        i += 1;
                    }
                    b'{' => {
                        stack.push(b'}');
                        i += 1;
                        want = Want::KeyOrEnd;
                    }
                    b'[' => {
                        stack.push(b']');
                        i += 1;
                        want = Want::ValueOrEnd;
                    }
                    b'"' => i = string(i)?,
                    b'-' | b'0'..=b'9' => i = number(i)?,
                    _ => {
                        let lit =
                            [b"true".as_slice(), b"false", b"null"].into_iter().find(|l| b[i..].starts_with(l))?;
                        i += lit.len();
                    }
                }
            }
            Want::Key | Want::KeyOrEnd => {
                if want == Want::KeyOrEnd && b.get(i) == Some(&b'}') {
                    stack.pop();
                    i += 1;
                    want = Want::After;
                    continue;
                }
                (b.get(i) == Some(&b'"')).then_some(())?;
                i = string(i)?;
                skip_ws(&mut i);
                (b.get(i) == Some(&b':')).then_some(())?;
                i += 1;
                want = Want::Value;
            }
            Want::After => match (stack.last(), b.get(i)) {
                (None, None) => return Some(()),
                (None, Some(_)) => return None,
                (Some(b'}'), Some(b',')) => {
                    i += 1;
                    want = Want::Key;
                }
                (Some(b']'), Some(b',')) => {
                    i += 1;
                    want = Want::Value;
                }
                (Some(close), Some(c)) if close == c => {
                    stack.pop();
                    i += 1;
                }
                _ => return None,
            },
        }
    }
}

/// The rule broken by this answer to `req`, if any; `Ok(Some(why))` when an
/// answer is let through for a reason that is not the API's (the HTTP layer
/// refusing what is not HTTP, or a line too long to read).
fn judge(req: &Req, outcome: &Outcome, took: Duration) -> Result<Option<&'static str>, String> {
    if took > REQUEST_TIMEOUT {
        return Err(format!("answered after {took:.1?}, over the {REQUEST_TIMEOUT:?} request timeout"));
    }
    let r = match outcome {
        Outcome::Answer(r) => r,
        // Garbage may be dropped without a word; a body over the cap may be
        // refused before it is read, and the connection reset under it.
        Outcome::None(_) if req.raw.is_some() => return Ok(Some("raw: closed without an answer")),
        Outcome::None(_) if req.body.len() > MAX_BODY => return Ok(Some("body over the cap: connection reset")),
        Outcome::None(why) => return Err(format!("no answer: {why}")),
    };
    let head_bytes: usize = req.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let protocol = match r.status {
        414 if req.target.len() > LONG_HEAD => Some("414 from the HTTP layer: request line too long"),
        // hyper answers 431 when the whole head outgrows its read buffer,
        // a long request line included.
        431 if head_bytes + req.target.len() > LONG_HEAD || req.raw.is_some() => {
            Some("431 from the HTTP layer: headers too large")
        }
        505 if req.raw.is_some() => Some("505 from the HTTP layer: not HTTP/1.x"),
        400..=499 if req.raw.is_some() && !is_error_sentence(r) => Some("raw: 4xx from the HTTP layer"),
        _ => None,
    };
    if protocol.is_some() {
        return Ok(protocol);
    }
    if r.status >= 500 && r.status != 503 {
        return Err("a 5xx other than 503".into());
    }
    let body_expected = req.method != "HEAD";
    if (400..=599).contains(&r.status) && body_expected && !is_error_sentence(r) {
        return Err("an error without a JSON {\"error\": sentence} body".into());
    }
    if (200..300).contains(&r.status)
        && body_expected
        && header(r, "content-type").is_some_and(|t| t.starts_with("application/json"))
        && !is_json(&r.body)
    {
        return Err("a 2xx JSON answer that does not parse".into());
    }
    Ok(None)
}

/// What the run saw.
#[derive(Default)]
struct Stats {
    sent: u64,
    by_status: BTreeMap<String, u64>,
    by_family: BTreeMap<&'static str, BTreeMap<String, u64>>,
    tolerated: BTreeMap<&'static str, u64>,
    slowest: (Duration, String),
    /// Per broken rule (family, method, status, rule): how often, and the
    /// first request and answer that broke it.
    problems: BTreeMap<String, (u64, String)>,
}

impl Stats {
    fn record(&mut self, req: &Req, outcome: &Outcome, took: Duration) {
        self.sent += 1;
        let status = match outcome {
            Outcome::Answer(r) => r.status.to_string(),
            Outcome::None(_) => "no answer".into(),
        };
        *self.by_status.entry(status.clone()).or_default() += 1;
        *self.by_family.entry(req.family).or_default().entry(status.clone()).or_default() += 1;
        if took > self.slowest.0 {
            self.slowest = (took, req.describe());
        }
        match judge(req, outcome, took) {
            Ok(None) => {}
            Ok(Some(why)) => *self.tolerated.entry(why).or_default() += 1,
            Err(rule) => {
                let method = if req.raw.is_some() { "raw" } else { req.method.as_str() };
                let key = format!("{} {method} → {status}: {rule}", req.family);
                let answer = match outcome {
                    Outcome::Answer(r) => describe_answer(r),
                    Outcome::None(why) => why.clone(),
                };
                let e =
                    self.problems.entry(key).or_insert_with(|| (0, format!("{}\n      ⇒ {answer}", req.describe())));
                e.0 += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The generators.

type Bytes = Vec<u8>;
/// A query parameter: name, and value (none: the name alone, no `=`).
type Pair = (Bytes, Option<Bytes>);

/// Percent-encode all but the unreserved characters and the sub-delimiters
/// a query keeps as they are (`&`, `=`, `+`, `%`, `#` are always encoded).
fn enc(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~,;:@/!$'()*".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn query_string(pairs: &[Pair]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{}={}", enc(k), enc(v)),
            None => enc(k),
        })
        .collect();
    parts.join("&")
}

fn with_query(path: &str, pairs: &[Pair]) -> String {
    if pairs.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query_string(pairs))
    }
}

fn pick(items: &[&'static str]) -> BoxedStrategy<Bytes> {
    prop::sample::select(items.to_vec()).prop_map(|s| s.as_bytes().to_vec()).boxed()
}

/// Unicode (printable and not), control characters, NUL, bytes that are not
/// UTF-8, and classics.
fn junk() -> BoxedStrategy<Bytes> {
    prop_oneof![
        3 => any::<String>().prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<char>(), 0..24).prop_map(|c| c.into_iter().collect::<String>().into_bytes()),
        2 => prop::collection::vec(any::<u8>(), 0..24),
        2 => pick(&[
            "", " ", "\0", "%", "%00", "..", "../..", "/", ";", ",", ",,,", "\u{202e}", "\u{feff}", "🦀", "ß", "İ",
            "\r\n", "\t", "'", "\"", "\\", "<script>alert(1)</script>", "${jndi:ldap://x}", "null", "[]", "{}",
            "%s%n", "../../../../etc/passwd", "\u{10ffff}", "\u{fffd}", "a\0b",
        ]),
    ]
    .boxed()
}

/// From 1 KB to 100 KB: past about 64 KB the request line is refused (414)
/// by the HTTP layer before the API sees it.
fn long() -> BoxedStrategy<Bytes> {
    let piece = prop_oneof![
        4 => pick(&["a", "0", "1,", "é", "🦀", ";", "/", "%", "\0", "ab;cd"]),
        1 => prop::collection::vec(any::<u8>(), 1..6),
    ];
    let len = prop_oneof![3 => 1_000usize..16_000, 2 => 16_000usize..60_000, 1 => 60_000usize..=100_000];
    (piece, len)
        .prop_map(|(piece, len)| {
            let n = (len / piece.len().max(1)).max(1);
            piece.iter().copied().cycle().take(n * piece.len()).collect()
        })
        .boxed()
}

/// A value of a parameter: mostly of its kind, sometimes junk or long.
fn value(specific: BoxedStrategy<Bytes>) -> BoxedStrategy<Bytes> {
    prop_oneof![12 => specific, 2 => junk(), 1 => long()].boxed()
}

const UNITS: [&str; 16] =
    ["ns", "us", "µs", "ms", "s", "sec", "m", "min", "h", "hr", "d", "day", "w", "M", "y", "years"];

/// Times: RFC 3339 (valid and not), Unix seconds of every size and sign,
/// floats including NaN and infinities, relative times of any length.
fn time(now: f64) -> BoxedStrategy<Bytes> {
    value(
        prop_oneof![
            4 => pick(&[
                "now", " now ", "NOW", "", " ", "-1m", "-15m", "-1h30m", "-1h 30m", "-0s", "-", "--1m", "+1m", "-1",
                "0", "00", "0.0", ".", "..", "1.2.3", "1.5", "1e400", "1e11", "100000000000", "100000000000.1",
                "99999999999999999999", "-99999999999999999999y", "-18446744073709551615ns", "-18446744073709551616ns",
                "-584542y", "-584543y", "-9999999999999999999999999y", "NaN", "nan", "inf", "-inf", "infinity",
                "2026-12-06T09:00:00Z", "2026-13-45T99:99:99Z", "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
                "1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2026-12-06T09:00:00+25:00", "2026-12-06",
                "2026-12-06 09:00:00", "2026-12-06T09:00:00.9999999999999Z", "now-1m", "yesterday", "-1μs", "-١m",
                "-1h-1m", "-1 m", "0x10", "1_000",
            ]),
            6 => (0u64..900).prop_map(|n| format!("-{n}s").into_bytes()),
            4 => (0.0f64..900.0).prop_map(move |ago| format!("{:.3}", now - ago).into_bytes()),
            2 => any::<u64>().prop_map(|n| n.to_string().into_bytes()),
            1 => any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            2 => any::<f64>().prop_map(|f| f.to_string().into_bytes()),
            1 => any::<f64>().prop_map(|f| format!("{f:e}").into_bytes()),
            2 => (any::<u64>(), prop::sample::select(UNITS.to_vec()))
                .prop_map(|(n, u)| format!("-{n}{u}").into_bytes()),
            1 => (0u32..10_000, 0u32..20, 0u32..40, 0u32..30, 0u32..70, 0u32..70).prop_map(|(y, mo, d, h, mi, s)| {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z").into_bytes()
            }),
        ]
        .boxed(),
    )
}

/// `from` and `to`: each may be absent, and a pair may be reversed or equal.
fn range(now: f64) -> BoxedStrategy<Vec<Pair>> {
    let p = |name: &'static str, v: Option<Bytes>| v.map(|v| (name.as_bytes().to_vec(), Some(v)));
    prop_oneof![
        4 => (prop::option::weighted(0.7, time(now)), prop::option::weighted(0.5, time(now)))
            .prop_map(move |(f, t)| [p("from", f), p("to", t)].into_iter().flatten().collect()),
        1 => (0.0f64..600.0, 0.0f64..600.0).prop_map(move |(a, b)| {
            // Reversed, or empty.
            let (from, to) = (now - a.min(b), now - a.max(b));
            vec![(b"from".to_vec(), Some(format!("{from:.3}").into_bytes())), (b"to".to_vec(), Some(format!("{to:.3}").into_bytes()))]
        }),
    ]
    .boxed()
}

fn param(name: &'static str, weight: f64, v: BoxedStrategy<Bytes>) -> BoxedStrategy<Option<Pair>> {
    prop::option::weighted(weight, v).prop_map(move |v| v.map(|v| (name.as_bytes().to_vec(), Some(v)))).boxed()
}

/// Parameters nobody knows, names alone, and a known name given twice.
fn extras(known: &'static [&'static str]) -> BoxedStrategy<Vec<Pair>> {
    let unknown = prop_oneof![
        2 => (junk(), prop::option::of(junk())),
        1 => (pick(&["colour", "from[]", "FROM", "from ", " from", "to\0", "", "=", "&", "max_nodes[0]"]), prop::option::of(junk())),
    ];
    let repeated = (prop::sample::select(known.to_vec()), junk()).prop_map(|(k, v)| (k.as_bytes().to_vec(), Some(v)));
    prop_oneof![
        6 => Just(Vec::new()),
        1 => prop::collection::vec(unknown, 1..4),
        1 => prop::collection::vec(repeated, 1..4),
        1 => prop::collection::vec(prop::sample::select(known.to_vec()).prop_map(|k| (k.as_bytes().to_vec(), None)), 1..3),
    ]
    .boxed()
}

fn group_by() -> BoxedStrategy<Bytes> {
    let dim = prop_oneof![
        4 => prop::sample::select(DIMENSIONS.to_vec()),
        1 => prop::sample::select(vec!["", " comm", "pid ", "COMM", "nope", "comm;pid", "*"]),
    ];
    value(
        prop_oneof![
            4 => prop::collection::vec(dim, 1..6).prop_map(|d| d.join(",").into_bytes()),
            1 => prop::collection::vec(prop::sample::select(DIMENSIONS.to_vec()), 1_000..5_000)
                .prop_map(|d| d.join(",").into_bytes()),
        ]
        .boxed(),
    )
}

/// Comma lists of pids: real ones, out of range, negative, floats, blanks;
/// a few items or thousands.
fn pids(real: Vec<u32>) -> BoxedStrategy<Bytes> {
    let item = prop_oneof![
        3 => (1u32..100_000).prop_map(|n| n.to_string()),
        2 => prop::sample::select(real).prop_map(|n| n.to_string()),
        1 => any::<u32>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "", " ", " 1 ", "-1", "0", "4294967295", "4294967296", "1.0", "1e3", "0x1f", "+1", "١", "NaN", "1 2", "1;2",
        ])
        .prop_map(String::from),
    ];
    let valid = (1u32..4_194_304).prop_map(|n| n.to_string());
    value(
        prop_oneof![
            4 => prop::collection::vec(item, 1..8).prop_map(|p| p.join(",").into_bytes()),
            1 => prop::collection::vec(valid, 1_000..6_000).prop_map(|p| p.join(",").into_bytes()),
        ]
        .boxed(),
    )
}

fn max_nodes() -> BoxedStrategy<Bytes> {
    value(
        prop_oneof![
            3 => pick(&[
                "0", "1", "2", "2000", "99999", "100000", "100001", "99999999999", "18446744073709551615",
                "18446744073709551616", "-1", "-0", "1e5", "0x10", " 5", "5 ", "+5", "１", "5.0", "", "NaN",
            ]),
            2 => (1usize..=100_000).prop_map(|n| n.to_string().into_bytes()),
            1 => any::<u64>().prop_map(|n| n.to_string().into_bytes()),
            1 => any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            1 => any::<u128>().prop_map(|n| n.to_string().into_bytes()),
        ]
        .boxed(),
    )
}

/// `;`-separated frames from the root: real-looking, empty, junk, or
/// thousands deep.
fn focus() -> BoxedStrategy<Bytes> {
    let frame = prop_oneof![
        3 => pick(&["all", "tailprof", "[other]", "clone3", "start_thread", "", "[none]", "swapper/0", "[kernel]"]),
        1 => junk(),
    ];
    value(
        prop_oneof![
            4 => prop::collection::vec(frame, 1..6).prop_map(|f| f.join(&b';')),
            1 => (1usize..20_000).prop_map(|n| vec![b"a".as_slice(); n].join(&b';')),
        ]
        .boxed(),
    )
}

fn text_filter() -> BoxedStrategy<Bytes> {
    value(pick(&[
        "tailprof",
        "systemd",
        "init.scope",
        "/",
        "/system.slice",
        "/user.slice",
        "system.slice",
        "-.slice",
        "0123456789ab",
        "containerd://",
        "",
        " ",
        "[none]",
        "kworker/0:0",
        "swapper/0",
    ]))
}

const PROFILE_KNOWN: [&str; 15] = [
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

/// A range that parses: relative, Unix seconds or from the epoch, in order.
fn well_formed_range(now: f64) -> BoxedStrategy<Vec<Pair>> {
    let pair = |k: &str, v: String| (k.as_bytes().to_vec(), Some(v.into_bytes()));
    prop_oneof![
        3 => (1u64..900).prop_map(move |a| vec![pair("from", format!("-{a}s"))]),
        2 => (1u64..900, 0u64..900).prop_map(move |(a, b)| {
            vec![pair("from", format!("-{}s", a.max(b + 1))), pair("to", format!("-{}s", a.min(b)))]
        }),
        2 => (0.0f64..120.0, 0.0f64..120.0).prop_map(move |(a, b)| {
            let (from, to) = (now - a.max(b) - 1.0, now - a.min(b));
            vec![pair("from", format!("{from:.3}")), pair("to", format!("{to:.9}"))]
        }),
        1 => Just(vec![pair("from", "0".into()), pair("to", "now".into())]),
        1 => Just(Vec::new()),
    ]
    .boxed()
}

/// Dimensions, each at most once, in any order.
fn well_formed_group_by() -> BoxedStrategy<Bytes> {
    prop::sample::subsequence(DIMENSIONS.to_vec(), 1..=DIMENSIONS.len())
        .prop_shuffle()
        .prop_map(|d| d.join(",").into_bytes())
        .boxed()
}

/// `/api/v1/profile` and `/api/v1/threads`: every parameter, all of them
/// valid, some extreme (100,000 nodes, thousands of pids, deep focus,
/// every dimension), so the requests get past the parsing into the query.
fn well_formed_range_query(g: &Ground, path: &'static str, family: &'static str) -> BoxedStrategy<Req> {
    let real = g.pids.clone();
    let pid_list = prop_oneof![
        3 => prop::collection::vec(prop::sample::select(real), 1..4),
        1 => prop::collection::vec(1u32..4_194_304, 1_000..6_000),
    ]
    .prop_map(|p| p.iter().map(u32::to_string).collect::<Vec<_>>().join(",").into_bytes());
    let params = vec![
        param("view", 0.6, pick(&["cpu", "offcpu", "wall"])),
        param("format", 0.6, pick(&["json", "folded", "pprof", "svg"])),
        param("group_by", 0.4, well_formed_group_by()),
        param("pid", 0.2, pid_list.boxed()),
        param("comm", 0.1, text_filter()),
        param("cgroup", 0.1, text_filter()),
        param("container", 0.05, text_filter()),
        param("unit", 0.05, text_filter()),
        param("pod", 0.05, text_filter()),
        param("state", 0.2, pick(&["running", "runnable", "sleeping", "disk", "other"])),
        param("syscall", 0.2, pick(&["read", "write", "futex", "epoll_wait", "openat", "clock_nanosleep", "ppoll"])),
        param(
            "max_nodes",
            0.5,
            prop_oneof![Just(1usize), Just(100_000usize), 1usize..=100_000]
                .prop_map(|n| n.to_string().into_bytes())
                .boxed(),
        ),
        param("focus", 0.3, focus()),
    ];
    (well_formed_range(g.now), params)
        .prop_map(move |(range, params)| {
            let pairs: Vec<Pair> = range.into_iter().chain(params.into_iter().flatten()).collect();
            Req::get(family, with_query(path, &pairs))
        })
        .boxed()
}

/// `/api/v1/profile` and `/api/v1/threads`: every parameter, with values of
/// every kind, unknown and repeated parameters; or all valid.
fn range_query(g: &Ground, path: &'static str, family: &'static str) -> BoxedStrategy<Req> {
    prop_oneof![hostile_range_query(g, path, family), well_formed_range_query(g, path, family)].boxed()
}

fn hostile_range_query(g: &Ground, path: &'static str, family: &'static str) -> BoxedStrategy<Req> {
    let params = vec![
        param("view", 0.5, value(pick(&["cpu", "offcpu", "wall", "CPU", "heap", "", "cpu,wall"]))),
        param("format", 0.5, value(pick(&["json", "folded", "pprof", "svg", "JSON", "png", "", "svg\0"]))),
        param("group_by", 0.3, group_by()),
        param("pid", 0.25, pids(g.pids.clone())),
        param("comm", 0.15, text_filter()),
        param("cgroup", 0.1, text_filter()),
        param("container", 0.1, text_filter()),
        param("unit", 0.1, text_filter()),
        param("pod", 0.1, text_filter()),
        param(
            "state",
            0.15,
            value(pick(&["running", "runnable", "sleeping", "disk", "other", "flying", "RUNNING", ""])),
        ),
        param("syscall", 0.15, value(pick(&["read", "write", "futex", "epoll_wait", "teleport", "", "sys_read", "0"]))),
        param("max_nodes", 0.35, max_nodes()),
        param("focus", 0.2, focus()),
    ];
    (range(g.now), params, extras(&PROFILE_KNOWN), any::<bool>(), headers())
        .prop_map(move |(range, params, extras, shuffle, headers)| {
            let mut pairs: Vec<Pair> = range.into_iter().chain(params.into_iter().flatten()).chain(extras).collect();
            if shuffle {
                pairs.reverse();
            }
            Req { headers, ..Req::get(family, with_query(path, &pairs)) }
        })
        .boxed()
}

fn step() -> BoxedStrategy<Bytes> {
    value(
        prop_oneof![
            3 => pick(&[
                "1s", "1m", "1h", "1d", "1ns", "999ms", "999999999ns", "0s", "0", "1", "-1s", "1 s", "1e3s", "1.5s",
                "99999999999y", "584y", "585y", "18446744073s 709551617ns", "18446744074s",
                "1000000000000000000000000s", "forever", "", "1s1s", "∞",
            ]),
            2 => (any::<u64>(), prop::sample::select(UNITS.to_vec())).prop_map(|(n, u)| format!("{n}{u}").into_bytes()),
            2 => (1u64..600, prop::sample::select(vec!["s", "m", "h"])).prop_map(|(n, u)| format!("{n}{u}").into_bytes()),
        ]
        .boxed(),
    )
}

const TIMELINE_KNOWN: [&str; 4] = ["from", "to", "step", "group_by"];
const RANGE_KNOWN: [&str; 2] = ["from", "to"];

fn timeline(g: &Ground) -> BoxedStrategy<Req> {
    let params = vec![param("step", 0.6, step()), param("group_by", 0.4, group_by())];
    let hostile =
        (range(g.now), params, extras(&TIMELINE_KNOWN), headers()).prop_map(|(range, params, extras, headers)| {
            let pairs: Vec<Pair> = range.into_iter().chain(params.into_iter().flatten()).chain(extras).collect();
            Req { headers, ..Req::get("timeline", with_query("/api/v1/timeline", &pairs)) }
        });
    let valid_step =
        (1u64..600, prop::sample::select(vec!["s", "m", "h", "d"])).prop_map(|(n, u)| format!("{n}{u}").into_bytes());
    let params = vec![param("step", 0.7, valid_step.boxed()), param("group_by", 0.5, well_formed_group_by())];
    let well_formed = (well_formed_range(g.now), params).prop_map(|(range, params)| {
        let pairs: Vec<Pair> = range.into_iter().chain(params.into_iter().flatten()).collect();
        Req::get("timeline", with_query("/api/v1/timeline", &pairs))
    });
    prop_oneof![hostile, well_formed].boxed()
}

/// `/api/v1/noise` and `/api/v1/histograms`: a range, nothing else.
fn range_only(g: &Ground, path: &'static str, family: &'static str) -> BoxedStrategy<Req> {
    (range(g.now), extras(&RANGE_KNOWN))
        .prop_map(move |(range, extras)| {
            let pairs: Vec<Pair> = range.into_iter().chain(extras).collect();
            Req::get(family, with_query(path, &pairs))
        })
        .boxed()
}

/// Optional headers: compression asked in every way, an Accept of any
/// kind, a stray Authorization, junk.
fn headers() -> BoxedStrategy<Vec<(String, String)>> {
    let printable = || "[ -~]{0,40}".prop_map(|s| s.trim().to_owned());
    let one = prop_oneof![
        2 => prop::sample::select(vec!["gzip", "identity", "gzip;q=0", "*", "br", "deflate, gzip", "zstd", "gzip;q=abc"])
            .prop_map(|v| ("Accept-Encoding".to_owned(), v.to_owned())),
        1 => prop::sample::select(vec!["application/openmetrics-text", "text/plain", "*/*", "application/json;q=0"])
            .prop_map(|v| ("Accept".to_owned(), v.to_owned())),
        1 => printable().prop_map(|v| ("Authorization".to_owned(), v)),
        1 => ("X-[A-Za-z]{1,12}", printable()).prop_map(|(k, v)| (k, v)),
    ];
    prop_oneof![4 => Just(Vec::new()), 1 => prop::collection::vec(one, 1..4)].boxed()
}

/// The endpoints that take no parameter, with some anyway.
fn plain() -> BoxedStrategy<Req> {
    let paths = vec![
        "/healthz",
        "/readyz",
        "/api/v1/status",
        "/api/v1/config",
        "/api/v1/segments",
        "/api/v1/captures",
        "/metrics",
        "/",
        "/app.js",
        "/app.css",
    ];
    let junk_pairs = prop::collection::vec((junk(), prop::option::of(junk())), 0..3);
    (prop::sample::select(paths), junk_pairs, headers())
        .prop_map(|(path, pairs, headers)| Req { headers, ..Req::get("plain", with_query(path, &pairs)) })
        .boxed()
}

/// A capture id, or a path segment standing for one.
fn capture_id(g: &Ground) -> BoxedStrategy<String> {
    let real = g.capture.as_ref().map(|(id, _)| id.clone()).unwrap_or_else(|| "c0".into());
    prop_oneof![
        3 => Just(real.clone()),
        2 => pick(&[
            "..", ".", "%2e%2e", "%2E%2E%2F%2E%2E", "c0", "c1796554955210", "c99999999999999999999999", "C0", "%00",
            "c1%00", "%FF", "%c0%ae%c0%ae", "..%2f..%2fsegments", "*", "~", "%20",
        ])
        .prop_map(|b| String::from_utf8(b).expect("ASCII")),
        2 => junk().prop_map(|b| enc(&b)),
        1 => long().prop_map(|b| enc(&b)),
        1 => Just(format!("{real}%00")),
        1 => Just(format!("{real}/..")),
    ]
    .boxed()
}

fn one_capture(g: &Ground) -> BoxedStrategy<Req> {
    capture_id(g).prop_map(|id| Req::get("capture", format!("/api/v1/captures/{id}"))).boxed()
}

/// `captures/{id}/files/{name}` with the capture's own files and every
/// trick to step out of its directory.
fn capture_file(g: &Ground) -> BoxedStrategy<Req> {
    let files = g
        .capture
        .as_ref()
        .map(|(_, f)| f.clone())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| vec!["summary.json".into()]);
    let real = prop::sample::select(files);
    let name = prop_oneof![
        3 => real.clone().prop_map(|f| enc(f.as_bytes())),
        4 => pick(&[
            "..", ".", "../capture.json", "../../segments", "../../../../../../etc/passwd", "..%2fcapture.json",
            "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2E%2E/%2E%2E/%2E%2E/etc/passwd", "/etc/passwd", "%2Fetc%2Fpasswd",
            "summary.json%00", "summary.json%00.txt", "%00", "summary.json/", "./summary.json", "summary.json/..",
            "summary.json/../summary.json", "~", "~root", "%5c..%5c..%5cetc%5cpasswd", "C:%5cWindows%5cwin.ini",
            "%252e%252e%252fcapture.json", "%c0%ae%c0%ae%2fcapture.json", "%FF", "..%00/", "capture.json",
            "SUMMARY.JSON", "summary.json;x", "summary.json?x=1", "%3F", "*", "summary.*", "/proc/self/environ",
            "..%2f..%2f..%2fproc%2fself%2fenviron", "....//....//etc/passwd", "%2e%2e%5c", "con", "aux",
            "summary.json%2f", "%2e", "%2e%2e", ".%2e/capture.json", "%u002e%u002e/capture.json",
        ])
        .prop_map(|b| String::from_utf8(b).expect("ASCII")),
        1 => (real.clone(), pick(&["/", "/..", "%00", "%2f..", ".bak", "~", "%20", "\u{0}", "/./"]))
            .prop_map(|(f, s)| format!("{}{}", enc(f.as_bytes()), String::from_utf8_lossy(&s).replace('\0', "%00"))),
        1 => (pick(&["../", "./", "%2e%2e%2f", "/", "a/../"]), real).prop_map(|(p, f)| format!("{}{}", String::from_utf8_lossy(&p), enc(f.as_bytes()))),
        2 => junk().prop_map(|b| enc(&b)),
        1 => long().prop_map(|b| enc(&b)),
    ];
    let method = prop_oneof![9 => Just("GET"), 1 => Just("HEAD")];
    (capture_id(g), name, method)
        .prop_map(|(id, name, method)| Req {
            method: method.into(),
            ..Req::get("capture-file", format!("/api/v1/captures/{id}/files/{name}"))
        })
        .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Bodies that are not JSON, or barely: truncated, doubled, a BOM, a lone
/// surrogate, numbers JSON cannot hold, duplicate keys.
const BAD_BODIES: [&str; 22] = [
    "",
    "null",
    "{",
    "}",
    "[]",
    "\"{}\"",
    "{} {}",
    "{}garbage",
    "\u{feff}{}",
    "{\"duration\": 1e400}",
    "{\"duration\": -1e400}",
    "{\"duration\": NaN}",
    "{\"duration\": Infinity}",
    "{\"pid\": 01}",
    "{\"pid\": 1, \"pid\": 2}",
    "{\"reason\": \"\\ud800\"}",
    "{\"reason\": \"\\u0000\"}",
    "{\"alerts\": [{\"status\": \"firing\", \"labels\": {\"pid\": \"1\"}}]",
    "{\"alerts\": null}",
    "{\"alerts\": {}}",
    "{'duration': '1s'}",
    "duration=1s&pid=1",
];

/// Nested arrays or objects, up to 60,000 deep.
fn nested() -> BoxedStrategy<Bytes> {
    (any::<bool>(), prop_oneof![3 => 1usize..200, 1 => 200usize..60_000])
        .prop_map(|(arrays, n)| {
            if arrays {
                format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()
            } else {
                format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()
            }
        })
        .boxed()
}

/// A JSON object of `len` bytes: at the cap, one past it, or far past it.
fn huge() -> BoxedStrategy<Bytes> {
    prop_oneof![
        1 => Just(MAX_BODY),
        1 => Just(MAX_BODY + 1),
        2 => (MAX_BODY - 2_000)..(MAX_BODY + 200_000),
    ]
    .prop_map(|len| {
        let pad = len.saturating_sub(14);
        format!("{{\"reason\":\"{}\"}}", "r".repeat(pad)).into_bytes()
    })
    .boxed()
}

fn json_of(m: serde_json::Map<String, Value>) -> Bytes {
    serde_json::to_vec(&Value::Object(m)).expect("JSON")
}

/// `POST /api/v1/captures`: every field with values of every kind, at most
/// one target or several, unknown fields; and bodies that are not requests.
fn post_capture(g: &Ground) -> BoxedStrategy<Req> {
    let duration = prop_oneof![
        3 => prop::sample::select(vec![
            "1s", "2s", "500ms", "0s", "-1s", "1ns", "999999999999999y", "30s", "forever", "", "1e400s", "2 s", "NaN",
        ])
        .prop_map(Value::from),
        2 => prop::sample::select(vec![json!(0), json!(-1), json!(1e-12), json!(1.5), json!(1e9), json!(1e308), json!(u64::MAX), json!(i64::MIN)]),
        1 => json_value(),
    ];
    let text = || {
        prop_oneof![3 => text_filter().prop_map(|b| String::from_utf8_lossy(&b).into_owned()), 1 => any::<String>()]
            .prop_map(Value::from)
    };
    let pid_values = vec![
        json!(g.agent_pid),
        json!(1),
        json!(0),
        json!(-1),
        json!(u32::MAX),
        json!(u64::MAX),
        json!(1.5),
        json!("1"),
        Value::Null,
    ];
    let pid = prop_oneof![3 => prop::sample::select(pid_values), 1 => json_value()];
    let tier = prop_oneof![
        3 => prop::sample::select(vec!["deep", "continuous", "shallow", "", "DEEP"]).prop_map(Value::from),
        1 => json_value(),
    ];
    let reason = prop_oneof![
        3 => any::<String>().prop_map(Value::from),
        1 => long().prop_map(|b| Value::from(String::from_utf8_lossy(&b).into_owned())),
    ];
    let fields = (
        prop::option::weighted(0.7, duration),
        prop::option::weighted(0.3, tier),
        prop::option::weighted(0.5, reason),
        prop::option::weighted(0.3, pid),
        prop::collection::btree_map(
            prop::sample::select(vec!["cgroup", "container", "unit", "pod", "comm"]),
            text(),
            0..3,
        ),
        prop::option::weighted(0.1, (any::<String>(), json_value())),
    )
        .prop_map(|(duration, tier, reason, pid, targets, unknown)| {
            let mut m = serde_json::Map::new();
            for (k, v) in [("duration", duration), ("tier", tier), ("reason", reason), ("pid", pid)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            for (k, v) in targets {
                m.insert(k.into(), v);
            }
            if let Some((k, v)) = unknown {
                m.insert(k, v);
            }
            json_of(m)
        });
    let body = prop_oneof![
        6 => fields,
        2 => pick(&BAD_BODIES),
        1 => nested(),
        1 => huge(),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("JSON")),
    ];
    body.prop_map(|b| Req::post("post-capture", "/api/v1/captures", b)).boxed()
}

/// `POST /api/v1/alerts/alertmanager`: alerts naming anything, firing or
/// not, with durations of every kind; thousands of them; and non-payloads.
fn post_alert(g: &Ground) -> BoxedStrategy<Req> {
    let pid = g.agent_pid.to_string();
    let label_value = prop_oneof![
        3 => prop::sample::select(vec![
            "1".to_owned(), pid, "0".into(), "-1".into(), "4294967296".into(), "containerd://".into(),
            "containerd://0123456789ab".into(), "docker://0123456789ab".into(), "init.scope".into(),
            "tailprof".into(), "systemd".into(), "".into(),
        ]),
        1 => any::<String>(),
    ];
    let label_key = prop_oneof![
        4 => prop::sample::select(vec!["alertname", "pid", "container_id", "unit", "pod", "comm", "process", "severity"])
            .prop_map(String::from),
        1 => any::<String>(),
    ];
    let status = prop_oneof![
        4 => prop::sample::select(vec!["firing", "resolved", "", "FIRING"]).prop_map(String::from),
        1 => any::<String>(),
    ];
    let duration = prop_oneof![
        3 => prop::sample::select(vec!["1s", "0s", "-1s", "99999999999y", "1e400", "x", "", "2s"]).prop_map(String::from),
        1 => any::<String>(),
    ];
    let alert =
        (status, prop::collection::btree_map(label_key, label_value, 0..6), prop::option::weighted(0.3, duration))
            .prop_map(|(status, labels, duration)| {
                let mut a = json!({"status": status, "labels": labels});
                if let Some(d) = duration {
                    a["annotations"] = json!({"tailprof_duration": d});
                }
                a
            });
    let small = any::<String>().prop_map(|c| json!({"status": "firing", "labels": {"alertname": "many", "comm": c}}));
    let body = prop_oneof![
        5 => prop::collection::vec(alert, 0..5).prop_map(|a| serde_json::to_vec(&json!({"version": "4", "alerts": a})).expect("JSON")),
        1 => prop::collection::vec(small, 300..3_000).prop_map(|a| serde_json::to_vec(&json!({"alerts": a})).expect("JSON")),
        2 => pick(&BAD_BODIES),
        1 => nested(),
        1 => huge(),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("JSON")),
    ];
    body.prop_map(|b| Req::post("post-alert", "/api/v1/alerts/alertmanager", b)).boxed()
}

/// Wrong methods on every route, and paths that are almost routes.
fn route() -> BoxedStrategy<Req> {
    let method =
        prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO", "get"]);
    let path = prop_oneof![
        3 => prop::sample::select(vec![
            "/healthz", "/readyz", "/api/v1/status", "/api/v1/config", "/api/v1/segments", "/api/v1/profile",
            "/api/v1/threads", "/api/v1/timeline", "/api/v1/noise", "/api/v1/histograms", "/api/v1/captures",
            "/api/v1/captures/c0", "/api/v1/captures/c0/files/summary.json", "/api/v1/alerts/alertmanager", "/metrics",
            "/", "/app.js",
        ])
        .prop_map(String::from),
        2 => prop::sample::select(vec![
            "/api/v1/../api/v1/status", "//api/v1/status", "/api/v1/status/", "/API/V1/STATUS", "/api/v1/status%00",
            "/api/v1/status;x", "/api/v1/%73tatus", "/api/v2/status", "/api/v1/captures/c0/files",
            "/api/v1/captures//files/x", "/./api/v1/status", "/api/v1/status/..", "/..", "/%2e%2e/%2e%2e/etc/passwd",
            "/app.js/..", "/app.js%00.css", "/index.html", "/favicon.ico", "/api/v1/", "/api", "/api/v1/captures/",
            "/api/v1/alerts/", "/api/v1/alerts/alertmanager/x", "/healthz/", "/%FF", "/api/v1/%FF",
        ])
        .prop_map(String::from),
        1 => junk().prop_map(|b| format!("/{}", enc(&b))),
    ];
    let body = prop_oneof![3 => Just(Vec::new()), 1 => junk()];
    (method, path, body)
        .prop_map(|(method, target, body)| Req { method: method.into(), ..Req::post("route", &target, body) })
        .boxed()
}

/// Requests that are not (valid) HTTP/1.1.
fn raw() -> BoxedStrategy<Req> {
    let close = "Host: x\r\nConnection: close\r\n";
    let fixed: Vec<Bytes> = vec![
        format!("BOGUS no-slash HTTP/1.1\r\n{close}\r\n").into_bytes(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"GET / HTTP/2.0\r\n\r\n".to_vec(),
        b"\x00\x01\x02\x03\r\n\r\n".to_vec(),
        format!("GET /api/v1/status HTTP/1.1\r\n{close}Content-Length: -1\r\n\r\n").into_bytes(),
        format!("GET /api/v1/status HTTP/1.1\r\n{close}Content-Length: 99999999999999999999999\r\n\r\n").into_bytes(),
        format!("GET /api/v1/status HTTP/1.1\r\nno colon here\r\n{close}\r\n").into_bytes(),
        format!("GET /api/v1/profile?comm=\x01 HTTP/1.1\r\n{close}\r\n").into_bytes(),
        b"GET /api/v1/profile?comm=\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        format!("GET /api/v1/captures/x/files/a\\b\"<>{{}}|^` HTTP/1.1\r\n{close}\r\n").into_bytes(),
        format!("POST /api/v1/captures HTTP/1.1\r\n{close}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n").into_bytes(),
        format!("POST /api/v1/captures HTTP/1.1\r\n{close}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes(),
        format!("POST /api/v1/captures HTTP/1.1\r\n{close}Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n").into_bytes(),
        format!("POST /api/v1/alerts/alertmanager HTTP/1.1\r\n{close}Content-Length: 2\r\nContent-Length: 3\r\n\r\n[]]").into_bytes(),
        format!("GET http://evil.example/api/v1/status HTTP/1.1\r\n{close}\r\n").into_bytes(),
        format!("GET * HTTP/1.1\r\n{close}\r\n").into_bytes(),
        format!("OPTIONS * HTTP/1.1\r\n{close}\r\n").into_bytes(),
        format!("CONNECT 127.0.0.1:22 HTTP/1.1\r\n{close}\r\n").into_bytes(),
        b"GET /api/v1/status HTTP/1.0\r\n\r\n".to_vec(),
        b"GET /api/v1/status\r\n\r\n".to_vec(),
        b"GET /api/v1/status HTTP/1.1\nHost: x\nConnection: close\n\n".to_vec(),
        b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n".to_vec(),
        format!("GET /api/v1/status HTTP/1.1\r\n{close}{}\r\n", "X-N: v\r\n".repeat(1_000)).into_bytes(),
        format!("GET /api/v1/status HTTP/1.1\r\n{close}X-Big: {}\r\n\r\n", "b".repeat(300_000)).into_bytes(),
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/profile?from=1e400 HTTP/1.1\r\n{close}\r\n").into_bytes(),
        format!("POST /api/v1/captures HTTP/1.1\r\n{close}Expect: 100-continue\r\nContent-Length: 2\r\n\r\n[]").into_bytes(),
        format!("GET /api/v1/status HTTP/1.1\r\n{close}Host: y\r\n\r\n").into_bytes(),
        format!("GET /api/v1/status HTTP/1.1\r\n {close}\r\n").into_bytes(),
    ];
    let generated = ("[A-Za-z]{1,10}", prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(m, target)| {
        let mut r = format!("{m} /").into_bytes();
        r.extend(target.into_iter().filter(|b| *b != b'\r' && *b != b'\n'));
        r.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        r
    });
    prop_oneof![3 => prop::sample::select(fixed), 1 => generated]
        .prop_map(|raw| Req { raw: Some(raw), ..Req::get("raw", String::new()) })
        .boxed()
}

/// What the generators know of this agent.
struct Ground {
    now: f64,
    agent_pid: u32,
    pids: Vec<u32>,
    /// A finished capture: its id and files.
    capture: Option<(String, Vec<String>)>,
}

fn every_request(g: &Ground) -> BoxedStrategy<Req> {
    prop_oneof![
        5 => range_query(g, "/api/v1/profile", "profile"),
        2 => range_query(g, "/api/v1/threads", "threads"),
        3 => timeline(g),
        1 => range_only(g, "/api/v1/noise", "noise"),
        1 => range_only(g, "/api/v1/histograms", "histograms"),
        2 => plain(),
        1 => one_capture(g),
        3 => capture_file(g),
        2 => post_capture(g),
        2 => post_alert(g),
        2 => route(),
        1 => raw(),
    ]
    .boxed()
}

/// The heaviest valid queries, over everything stored.
const LOAD: [&str; 8] = [
    "/api/v1/profile?from=0&max_nodes=100000&view=wall",
    "/api/v1/profile?from=0&format=svg&view=offcpu",
    "/api/v1/profile?from=0&format=pprof&view=wall&group_by=unit,pid,tid,state",
    "/api/v1/profile?from=0&format=folded&group_by=syscall,state,comm",
    "/api/v1/threads?from=0",
    "/api/v1/timeline?from=0&step=1s&group_by=comm",
    "/api/v1/noise?from=0",
    "/metrics",
];

// ---------------------------------------------------------------------------
// The agent.

/// `tailprof agent` as [`Agent::start`] runs it, but with its stderr in
/// `log`, to look for panics afterwards.
fn start_logged(data: &Path, log: &Path, args: &[&str]) -> Agent {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(tailprof_bin())
        .args(["agent", "--listen", &addr, "--data-dir", data.to_str().expect("utf-8 path")])
        .args(args)
        .env_remove("TAILPROF_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("create the agent's log"))
        .spawn()
        .expect("start tailprof agent");
    let mut agent = Agent { child, addr, token: None };
    agent.wait_ready();
    agent
}

/// (VmRSS, VmHWM) of `pid`, KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)?.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Wait until the agent has written `n` windows.
fn wait_windows(agent: &Agent, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let have = agent.get("/api/v1/segments").ok().and_then(|r| r.json().as_array().map(Vec::len)).unwrap_or(0);
        if have >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {have} windows stored after 20 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Start a real deep capture of the whole host and wait until it is done:
/// its id and files.
fn real_capture(agent: &Agent) -> Option<(String, Vec<String>)> {
    let r = agent.post("/api/v1/captures", br#"{"duration": "2s", "reason": "hostile input ground"}"#).ok()?;
    if r.status != 201 {
        println!("no ground capture: {}", describe_answer(&r));
        return None;
    }
    let id = r.json()["id"].as_str()?.to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let c = agent.get(&format!("/api/v1/captures/{id}")).ok()?.json();
        if c["state"] != "running" {
            let files: Vec<String> =
                c["files"].as_array()?.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect();
            println!("ground capture {id}: {} ({} files)", c["state"], files.len());
            return Some((id, files));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn hostile_requests_never_break_the_agent() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let agent = start_logged(
        &dir.path().join("data"),
        &log,
        &[
            "--window",
            "1s",
            "--capture-max-duration",
            "2s",
            "--capture-duration",
            "1s",
            "--capture-cooldown",
            "1s",
            "--captures-kept",
            "100",
        ],
    );
    let agent_pid = agent.child.id();
    let (rss_start, _) = rss_kib(agent_pid).expect("the agent's /proc status");
    wait_windows(&agent, 2);
    let capture = real_capture(&agent);
    let ground = Ground { now: unix_now(), agent_pid, pids: vec![1, agent_pid, std::process::id()], capture };

    // The agent's memory, polled all along.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut peak, mut samples, mut every_5s) = (0u64, 0u64, Vec::new());
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some((rss, _)) = rss_kib(agent_pid) {
                    peak = peak.max(rss);
                    samples += 1;
                    if t0.elapsed().as_secs() >= 5 * every_5s.len() as u64 {
                        every_5s.push(format!("{:.0}", mib(rss)));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (peak, samples, every_5s)
        })
    };

    let stats = Arc::new(Mutex::new(Stats::default()));
    let started = Instant::now();
    let deadline = started + FUZZ_BUDGET;
    let ground = Arc::new(ground);
    let mut workers = Vec::new();
    for _ in 0..FUZZERS {
        let (stats, ground, addr) = (stats.clone(), ground.clone(), agent.addr.clone());
        workers.push(std::thread::spawn(move || {
            let strategy = every_request(&ground);
            let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::default() });
            for _ in 0..MAX_CASES {
                if Instant::now() >= deadline {
                    break;
                }
                let req = strategy.new_tree(&mut runner).expect("a request").current();
                let (outcome, took) = send(&addr, &req);
                stats.lock().unwrap().record(&req, &outcome, took);
            }
        }));
    }
    for i in 0..LOADERS {
        let (stats, addr) = (stats.clone(), agent.addr.clone());
        workers.push(std::thread::spawn(move || {
            for path in LOAD.iter().cycle().skip(i * 3) {
                if Instant::now() >= deadline {
                    break;
                }
                let req = Req::get("load", (*path).to_owned());
                let (outcome, took) = send(&addr, &req);
                let busy = matches!(&outcome, Outcome::Answer(r) if r.status == 503);
                stats.lock().unwrap().record(&req, &outcome, took);
                if busy {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }));
    }
    for w in workers {
        w.join().expect("a client thread panicked");
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (rss_peak, rss_samples, rss_every_5s) = sampler.join().expect("the RSS sampler");
    let (rss_end, hwm) = rss_kib(agent_pid).unwrap_or((0, 0));

    // The agent after it all.
    let mut agent = agent;
    let mut checks = Checks::default();
    let alive = agent.child.try_wait().expect("try_wait").is_none();
    checks.check(alive, || "the agent is gone after the hostile requests".into());
    let health = agent.get("/healthz");
    checks.check(health.as_ref().is_ok_and(|r| r.status == 200 && r.text() == "ok\n"), || {
        format!(
            "/healthz after the hostile requests: {:?}",
            health.as_ref().map(describe_answer).map_err(|e| e.to_string())
        )
    });
    let status = agent.get("/api/v1/status");
    checks.check(status.as_ref().is_ok_and(|r| r.status == 200), || "/api/v1/status no longer answers 200".into());
    let captures =
        agent.get("/api/v1/captures").map(|r| r.json()["captures"].as_array().map_or(0, Vec::len)).unwrap_or(0);

    let s = stats.lock().unwrap();
    println!(
        "\nhostile: {} requests in {:.1} s ({FUZZERS} fuzzing clients, {LOADERS} loading); captures kept: {captures}",
        s.sent,
        elapsed.as_secs_f64()
    );
    println!("  statuses: {:?}", s.by_status);
    for (family, statuses) in &s.by_family {
        println!("  {family:<13} {statuses:?}");
    }
    println!("  let through (not the API's): {:?}", s.tolerated);
    println!("  slowest: {:.3} s: {}", s.slowest.0.as_secs_f64(), s.slowest.1);
    println!(
        "  agent RSS: {:.1} MiB at start, peak {:.1} MiB over {rss_samples} samples (VmHWM {:.1} MiB), {:.1} MiB at the end; bound {:.0} MiB",
        mib(rss_start),
        mib(rss_peak),
        mib(hwm),
        mib(rss_end),
        mib(RSS_LIMIT_KIB)
    );
    println!("  agent RSS every 5 s, MiB: {}", rss_every_5s.join(" "));
    checks.check(s.sent > 100, || format!("only {} requests sent", s.sent));
    checks.check(s.slowest.0 <= REQUEST_TIMEOUT, || format!("slowest answer {:?}", s.slowest.0));
    checks.check(hwm.max(rss_peak) < RSS_LIMIT_KIB, || {
        format!(
            "the agent's RSS peaked at {:.1} MiB (VmHWM), over {:.0} MiB",
            mib(hwm.max(rss_peak)),
            mib(RSS_LIMIT_KIB)
        )
    });
    for (rule, (n, example)) in &s.problems {
        checks.check(false, || format!("×{n} {rule}; e.g. {example}"));
    }
    drop(s);

    let exit = agent.stop();
    checks.check(exit.success(), || format!("SIGTERM after the hostile requests: the agent exited {exit}"));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let panics: Vec<&str> = text.lines().filter(|l| l.contains("panicked")).take(5).collect();
    checks.check(panics.is_empty(), || format!("the agent panicked: {panics:?}"));
    if !panics.is_empty() || !exit.success() || !alive {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        println!("agent log (last lines, newest first):\n{}", tail.join("\n"));
    }
    checks.finish();
}

// ---------------------------------------------------------------------------
// The token.

#[test]
fn with_a_token_every_endpoint_but_healthz_needs_it() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    const TOKEN: &str = "Hostile-T0ken-e2e-4d1f";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let agent = Agent::start(dir.path(), &["--window", "1s", "--token-file", token_file.to_str().unwrap()]);
    wait_windows(&agent, 1);

    let gets = [
        "/readyz",
        "/metrics",
        "/api/v1/status",
        "/api/v1/config",
        "/api/v1/segments",
        "/api/v1/profile",
        "/api/v1/profile?from=-1m&format=folded",
        "/api/v1/threads?from=-1m",
        "/api/v1/timeline?from=-1m&step=1s",
        "/api/v1/noise?from=-1m",
        "/api/v1/histograms",
        "/api/v1/captures",
        "/api/v1/captures/c1",
        "/api/v1/captures/c1/files/summary.json",
        "/api/v1/captures/c1/files/../../token",
        "/api/v1/nothing",
        "/api/v1/profile?from=yesterday",
    ];
    let posts: [(&str, &[u8]); 3] = [
        ("/api/v1/captures", br#"{"duration": "1s", "reason": "must not start"}"#),
        ("/api/v1/captures", b"not json"),
        (
            "/api/v1/alerts/alertmanager",
            br#"{"alerts": [{"status": "firing", "labels": {"alertname": "x", "pid": "1"}}]}"#,
        ),
    ];
    // Every wrong way to present it.
    let wrong: Vec<Option<String>> = vec![
        None,
        Some("Bearer wrong".into()),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", TOKEN.to_uppercase())),
        Some(TOKEN.into()),
        Some(format!("Basic {TOKEN}")),
        Some("Bearer".into()),
        Some(format!("Bearer  {TOKEN}")),
        Some(format!("Bearer {TOKEN},{TOKEN}")),
        Some(format!("Token {TOKEN}")),
        Some(String::new()),
    ];
    let addr = agent.addr.clone();
    let ask = |method: &str, path: &str, auth: Option<&str>, body: &[u8]| {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        http(&addr, method, path, &headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    };
    let mut checks = Checks::default();
    let mut refused = 0;
    let mut expect_401 = |checks: &mut Checks, method: &str, path: &str, auth: Option<&str>, body: &[u8]| {
        let r = ask(method, path, auth, body);
        refused += 1;
        checks.check(r.status == 401 && is_error_sentence(&r), || {
            format!(
                "{method} {path} with Authorization {auth:?}: {}, expected 401 with a sentence",
                describe_answer(&r)
            )
        });
    };
    for auth in &wrong {
        for path in gets {
            expect_401(&mut checks, "GET", path, auth.as_deref(), b"");
        }
        for (path, body) in posts {
            expect_401(&mut checks, "POST", path, auth.as_deref(), body);
        }
        for (method, path) in
            [("DELETE", "/api/v1/status"), ("PUT", "/api/v1/captures"), ("GET", "/api/v1/alerts/alertmanager")]
        {
            expect_401(&mut checks, method, path, auth.as_deref(), b"");
        }
    }
    // The token in the query string is not the token.
    expect_401(&mut checks, "GET", &format!("/api/v1/status?token={TOKEN}"), None, b"");
    expect_401(&mut checks, "GET", &format!("/api/v1/status?access_token={TOKEN}"), None, b"");

    // Any other token, generated: 401 on any endpoint.
    let mut runner = TestRunner::new(Config { cases: 64, failure_persistence: None, ..Config::default() });
    let candidates = prop_oneof![
        3 => "[!-~]{0,64}",
        1 => (0..TOKEN.len(), any::<char>().prop_filter("printable ASCII", |c| c.is_ascii_graphic()))
            .prop_map(|(i, c)| { let mut t: Vec<char> = TOKEN.chars().collect(); t[i] = c; t.into_iter().collect() }),
    ];
    let endpoints = prop::sample::select(gets.to_vec());
    let result = runner.run(&(candidates, endpoints), |(candidate, path)| {
        if candidate == TOKEN {
            return Ok(());
        }
        let r = ask("GET", path, Some(&format!("Bearer {candidate}")), b"");
        prop_assert_eq!(r.status, 401, "GET {} with token {:?}: {}", path, candidate, describe_answer(&r));
        prop_assert!(is_error_sentence(&r), "401 without a sentence: {}", describe_answer(&r));
        Ok::<(), TestCaseError>(())
    });
    checks.check(result.is_ok(), || format!("a wrong token was let in: {result:?}"));

    // What needs no token: /healthz, and the viewer's assets.
    let health = ask("GET", "/healthz", None, b"");
    checks.check(health.status == 200 && health.text() == "ok\n", || {
        format!("/healthz without the token: {}", describe_answer(&health))
    });
    let page = ask("GET", "/", None, b"");
    checks.check(page.status == 200, || format!("/ without the token: {}", describe_answer(&page)));
    let health = ask("GET", "/healthz", Some("Bearer wrong"), b"");
    checks.check(health.status == 200, || format!("/healthz with a wrong token: {}", describe_answer(&health)));

    // With the token, the same endpoints answer (the list is of endpoints
    // that exist), and nothing was started by the refused requests.
    let bearer = format!("Bearer {TOKEN}");
    for path in gets {
        let r = ask("GET", path, Some(&bearer), b"");
        checks
            .check(r.status != 401 && r.status < 500, || format!("GET {path} with the token: {}", describe_answer(&r)));
    }
    let listed = ask("GET", "/api/v1/captures", Some(&bearer), b"").json();
    checks.check(listed["captures"].as_array().is_some_and(Vec::is_empty), || {
        format!("a refused request started a capture: {listed}")
    });
    println!("token: {refused} requests without the right token refused, 64 generated tokens refused");
    assert!(agent.stop().success(), "SIGTERM: the agent must exit 0");
    checks.finish();
}

/// The check of JSON answers: any depth, and nothing that is not JSON.
#[test]
fn the_json_check_takes_any_depth_and_nothing_else() {
    let deep = format!("{}{}", "{\"children\":[".repeat(5_000), "]}".repeat(5_000));
    for ok in [
        "{}",
        "[]",
        " [1, -0.5e+3, true, false, null, \"a\\\"\\u00e9\\n\"] ",
        "{\"a\": {\"b\": []}, \"c\": 0}",
        "\"x\"",
        "0",
        &deep,
    ] {
        assert!(is_json(ok.as_bytes()), "{ok} is JSON");
        if ok.len() < 1_000 {
            assert!(serde_json::from_str::<Value>(ok).is_ok(), "{ok}: the check and serde_json disagree");
        }
    }
    for bad in [
        "",
        "{",
        "[1,]",
        "{\"a\"}",
        "{\"a\":}",
        "[1 2]",
        "01",
        "1.",
        "-",
        "tru",
        "{} {}",
        "[\"\\x\"]",
        "\"\u{1}\"",
        "{1: 2}",
        "[1]]",
        "NaN",
        "\"\\u12\"",
    ] {
        assert!(!is_json(bad.as_bytes()), "{bad:?} is not JSON");
        assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad:?}: the check and serde_json disagree");
    }
    assert!(!is_json(b"\"\xff\""), "not UTF-8");
}
