//! `tailprof agent` as its own process, over real HTTP, on the real kernel:
//! - a 2:1 split between two hot functions, profiled in 2 s windows for 8 s,
//!   reads 2:1 (±15%) from /api/v1/profile; per thread, exact on-CPU and
//!   runnable time over the range match schedstat within 1 point;
//! - SIGTERM stores the open window and exits 0; a restart still serves the
//!   ranges from before; a torn segment planted by a "crash" is moved to
//!   quarantine, reported, and never served; `--max-disk` drops the oldest
//!   segments first and counts it;
//! - bad input gets the right 4xx and a sentence, and the agent keeps serving;
//!   a token guards every endpoint but /healthz; a non-loopback address
//!   without a token is refused.

use std::time::Duration;

use serde_json::Value;
use tailprof_e2e::*;

fn samples_with(folded: &str, frame: &str) -> u64 {
    folded
        .lines()
        .filter(|l| l.split(' ').next().is_some_and(|s| s.split(';').any(|f| f == frame)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn windows_served_over_http_keep_the_ratio_and_the_exact_times() {
    require_root();
    let bin = build_c_workload("hot_ratio", &[]);
    let w = Workload::start(&bin, &["60"]);
    let tid = w.tid("ratio");
    let poller = SchedstatPoller::start(w.pid, vec![tid], Duration::from_millis(2));
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--window", "2s"]);
    let from = unix_now();
    std::thread::sleep(Duration::from_secs(8));
    let to = unix_now();
    // The window holding `to` closes within 2 s.
    std::thread::sleep(Duration::from_secs(3));
    let q = format!("from={from:.3}&to={to:.3}&pid={}", w.pid);
    let r = agent.get(&format!("/api/v1/profile?{q}&format=folded")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let folded = r.text();
    let (two, one) = (samples_with(&folded, "tp_hot_two_thirds"), samples_with(&folded, "tp_hot_one_third"));
    assert!(one > 0, "tp_hot_one_third never seen: {folded}");
    let ratio = two as f64 / one as f64;
    println!("over HTTP: tp_hot_two_thirds : tp_hot_one_third = {ratio:.3} ({two}:{one})");
    assert!((2.0 * 0.85..=2.0 * 1.15).contains(&ratio), "ratio {ratio:.2}, expected 2 ±15%");

    let tree = agent.get(&format!("/api/v1/profile?{q}&max_nodes=50")).unwrap().json();
    assert!(tree["windows"].as_u64().unwrap_or(0) >= 4, "{}", tree["windows"]);
    let total: u64 = folded.lines().filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum();
    assert_eq!(tree["root"]["value"].as_u64(), Some(total), "the tree's root holds every sample of the range");

    // The timeline's steps are the windows, and their exact CPU adds up to the range's.
    let timeline = agent.get(&format!("/api/v1/timeline?from={from:.3}&to={to:.3}")).unwrap().json();
    let steps = timeline["steps"].as_array().expect("steps");
    assert!(steps.len() >= 4, "{} steps for 8 s of 2 s windows", steps.len());
    for pair in steps.windows(2) {
        assert_eq!(pair[0]["end_unix_ns"], pair[1]["start_unix_ns"], "the windows are contiguous");
    }
    let step_cpu: f64 = steps.iter().filter_map(|s| s["cpu_s"].as_f64()).sum();
    let all = agent.get(&format!("/api/v1/threads?from={from:.3}&to={to:.3}")).unwrap().json();
    let range_cpu: f64 =
        all["threads"].as_array().unwrap().iter().filter_map(|t| t["on_cpu_ns"].as_u64()).sum::<u64>() as f64 / 1e9;
    println!("timeline: {} steps, {step_cpu:.3} CPU s; threads over the range: {range_cpu:.3} CPU s", steps.len());
    assert!((step_cpu - range_cpu).abs() <= 1e-3 * range_cpu.max(1.0), "{step_cpu} vs {range_cpu}");
    let summary = agent.get(&format!("/api/v1/threads?{q}")).unwrap().json();
    let polled = poller.finish();
    let t = thread_entry(&summary, tid).unwrap_or_else(|| panic!("tp-ratio missing from /api/v1/threads"));
    let (start, end) = (num(&summary, &["window_start_ns"], "range"), num(&summary, &["window_end_ns"], "range"));
    let span = (end - start) as f64;
    let (r0, q0) = at_time(&polled[&tid], start);
    let (r1, q1) = at_time(&polled[&tid], end);
    let on = num(t, &["on_cpu_ns"], "tp-ratio") as f64;
    let runnable = num(t, &["off_cpu_ns", "runnable"], "tp-ratio") as f64;
    println!(
        "over {:.1} s: on CPU {:.2}% (schedstat {:.2}%), runnable {:.2}% (schedstat {:.2}%)",
        span / 1e9,
        100.0 * on / span,
        100.0 * (r1 - r0) / span,
        100.0 * runnable / span,
        100.0 * (q1 - q0) / span
    );
    assert!((on - (r1 - r0)).abs() <= 0.01 * span, "on-CPU off schedstat by more than 1 point");
    assert!((runnable - (q1 - q0)).abs() <= 0.01 * span, "runnable off schedstat by more than 1 point");
    assert!(agent.stop().success(), "SIGTERM: the agent must exit 0");
}

#[test]
fn restarts_crashes_and_retention_lose_nothing_served() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    // A first run, stopped cleanly: its windows are served after a restart.
    let first = Agent::start(data.path(), &["--window", "1s"]);
    let from = unix_now();
    std::thread::sleep(Duration::from_secs(4));
    let stopped = unix_now();
    assert!(first.stop().success(), "SIGTERM: the agent must exit 0");
    let second = Agent::start(data.path(), &["--window", "1s"]);
    let r = second.get(&format!("/api/v1/profile?from={from:.3}&to={stopped:.3}&format=json")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let before = r.json()["windows"].as_u64().unwrap_or(0);
    assert!(before >= 3, "{before} windows of the first run served after the restart");

    // A crash (kill -9), and a segment torn as a crash mid-write would leave it.
    std::thread::sleep(Duration::from_secs(2));
    drop(second);
    let segments: Vec<std::path::PathBuf> = std::fs::read_dir(data.path().join("segments"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tpseg"))
        .collect();
    let whole = std::fs::read(&segments[0]).unwrap();
    let torn = data.path().join("segments/1000000000-2000000000.tpseg");
    std::fs::write(&torn, &whole[..whole.len() / 2]).unwrap();
    let third = Agent::start(data.path(), &["--window", "1s"]);
    let status = third.get("/api/v1/status").unwrap().json();
    let storage = &status["storage"];
    assert!(storage["quarantined"].as_u64().unwrap_or(0) >= 1, "torn segment not reported: {storage}");
    assert!(data.path().join("quarantine/1000000000-2000000000.tpseg").exists());
    let listed = third.get("/api/v1/segments").unwrap().json();
    assert!(
        listed.as_array().unwrap().iter().all(|s| s["name"] != "1000000000-2000000000.tpseg"),
        "the torn segment is listed"
    );
    let r = third.get("/api/v1/profile?from=0&to=now&format=folded").unwrap();
    assert_eq!(r.status, 200, "every segment served is whole: {}", r.text());
    drop(third);

    // Retention by size: 40 KiB hold only the newest few windows.
    let fourth = Agent::start(data.path(), &["--window", "1s", "--max-disk", "40KiB"]);
    std::thread::sleep(Duration::from_secs(3));
    let storage = fourth.get("/api/v1/status").unwrap().json()["storage"].clone();
    println!("storage after size retention: {storage}");
    assert!(storage["deleted_by_size"].as_u64().unwrap_or(0) >= 1, "{storage}");
    // The bound is enforced before each write: one segment may be over it.
    assert!(storage["bytes"].as_u64().unwrap_or(u64::MAX) <= 40 * 1024 + 64 * 1024, "{storage}");
    let listed: Vec<Value> = fourth.get("/api/v1/segments").unwrap().json().as_array().unwrap().clone();
    let oldest_left = listed.first().and_then(|s| s["start_unix_ns"].as_u64()).unwrap_or(0);
    assert!(oldest_left as f64 / 1e9 > from, "the oldest segments went first");
    assert!(fourth.stop().success());
}

#[test]
fn bad_requests_get_a_sentence_and_the_agent_keeps_serving() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let token_file = data.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let mut agent = Agent::start(data.path(), &["--window", "1s", "--token-file", token_file.to_str().unwrap()]);
    // Without the token: 401, but /healthz answers.
    agent.token = None;
    assert_eq!(agent.get("/healthz").unwrap().status, 200);
    // The viewer's page holds no data: served without the token.
    let page = agent.get("/").unwrap();
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<html") || page.text().contains("<!doctype"), "{}", page.text());
    assert_eq!(agent.get("/api/v1/status").unwrap().status, 401);
    agent.token = Some("wrong".into());
    assert_eq!(agent.get("/api/v1/status").unwrap().status, 401);
    agent.token = Some("s3cret-token".into());
    assert_eq!(agent.get("/api/v1/status").unwrap().status, 200);
    for (path, status, says) in [
        ("/api/v1/profile?view=heap", 400, "unknown view"),
        ("/api/v1/profile?from=-1m&to=-2m", 400, "before"),
        ("/api/v1/profile?from=yesterday", 400, "not a time"),
        ("/api/v1/profile?max_nodes=99999999999", 400, "max_nodes"),
        ("/api/v1/profile?colour=red", 400, "unknown parameter"),
        ("/api/v1/profile?format=png", 400, "unknown format"),
        ("/api/v1/profile?pid=12ab", 400, "pid"),
        ("/api/v1/../../etc/passwd", 404, "no such endpoint"),
        ("/api/v1/nothing", 404, "no such endpoint"),
    ] {
        let r = agent.get(path).unwrap();
        assert_eq!(r.status, status, "{path}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(says), "{path}: {msg}");
    }
    // A request that is not HTTP at all.
    let _ = http(&agent.addr, "BOGUS", "no-slash", &[], b"");
    assert_eq!(agent.get("/api/v1/status").unwrap().status, 200, "the agent keeps serving");
    assert!(agent.stop().success());

    // A non-loopback address without a token is refused in one sentence.
    let open = format!("0.0.0.0:{}", free_port());
    let out = tailprof(&["agent", "--listen", &open, "--data-dir", data.path().to_str().unwrap()]);
    assert_clean_failure(&out, "without --token-file");
    let out = tailprof(&["agent", "--window", "forever", "--data-dir", data.path().to_str().unwrap()]);
    assert_clean_failure(&out, "window");
}

/// A real Prometheus server (Debian's package) scrapes `/metrics` every
/// second; its own API then returns tailprof's series, with counters that
/// grow; `promtool check metrics` accepts the exposition.
#[test]
fn a_real_prometheus_scrapes_the_metrics() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--window", "1s"]);
    let open = http(&agent.addr, "GET", "/metrics", &[("Accept", "application/openmetrics-text; version=1.0.0")], b"")
        .unwrap();
    let kind = |r: &HttpResponse| r.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone());
    assert!(kind(&open).unwrap_or_default().starts_with("application/openmetrics-text"), "{:?}", kind(&open));
    assert!(open.text().ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let text = agent.get("/metrics").unwrap();
    assert_eq!(text.status, 200);
    assert!(kind(&text).unwrap_or_default().starts_with("text/plain; version=0.0.4"), "{:?}", kind(&text));
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(&text.body);
    assert!(check.status.success(), "promtool check metrics: {}", String::from_utf8_lossy(&check.stderr));
    check.stdout.clear();

    let prom_port = free_port();
    let config = data.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tailprof\n    static_configs:\n      - targets: ['{}']\n",
            agent.addr
        ),
    )
    .unwrap();
    let tsdb = data.path().join("tsdb");
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus (Debian package prometheus, installed by cargo xtask setup)");
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let query = |q: &str| -> Option<f64> {
        let r = http(&prom_addr, "GET", &format!("/api/v1/query?query={q}"), &[], b"").ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        v["data"]["result"]
            .as_array()?
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .reduce(f64::max)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let first = loop {
        if let Some(v) = query("tailprof_windows_total") {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "Prometheus never returned tailprof_windows_total");
        std::thread::sleep(Duration::from_millis(500));
    };
    std::thread::sleep(Duration::from_secs(4));
    let later = query("tailprof_windows_total").expect("tailprof_windows_total");
    println!("tailprof_windows_total in Prometheus: {first} then {later}");
    assert!(later > first, "the windows counter did not grow: {first} then {later}");
    for series in
        ["tailprof_cpu_seconds_total", "tailprof_samples_total", "tailprof_threads", "tailprof_softirq_seconds_total"]
    {
        assert!(query(series).is_some(), "Prometheus has no {series}");
    }
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(agent.stop().success());
}

/// `Command::output` with bytes on stdin.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the command");
        child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
        child.wait_with_output().expect("wait")
    }
}

/// SIGHUP reloads the configuration file: a bad file keeps the old
/// configuration (and the agent serving), a good one takes effect; a flag
/// still wins over the file.
#[test]
fn sighup_reloads_the_file_and_a_bad_one_changes_nothing() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("agent.toml");
    std::fs::write(&file, "retention = \"2d\"\nmax-disk = \"64MiB\"\n").unwrap();
    let agent =
        Agent::start(data.path(), &["--config", file.to_str().unwrap(), "--window", "1s", "--min-free-disk", "1MiB"]);
    let config = |a: &Agent| a.get("/api/v1/config").unwrap().json();
    let c = config(&agent);
    assert_eq!(c["max_disk_bytes"].as_u64(), Some(64 << 20), "{c}");
    assert_eq!(c["retention"].as_str(), Some("2days"), "{c}");
    assert_eq!(c["min_free_disk_bytes"].as_u64(), Some(1 << 20), "the flag wins over the default: {c}");
    let hup = |a: &Agent| {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(a.child.id() as i32, libc::SIGHUP) };
        std::thread::sleep(Duration::from_millis(500));
    };
    std::fs::write(&file, "retention = \"forever and ever\"\n").unwrap();
    hup(&agent);
    assert_eq!(config(&agent), c, "a bad file changed the configuration");
    std::fs::write(&file, "retention = \"3h\"\nmax-disk = \"32MiB\"\nmin-free-disk = \"5MiB\"\n").unwrap();
    hup(&agent);
    let c = config(&agent);
    assert_eq!(c["max_disk_bytes"].as_u64(), Some(32 << 20), "{c}");
    assert_eq!(c["retention"].as_str(), Some("3h"), "{c}");
    assert_eq!(c["min_free_disk_bytes"].as_u64(), Some(1 << 20), "the flag still wins over the file: {c}");
    assert!(agent.stop().success());
}

/// Under systemd (Type=notify, WatchdogSec=): READY=1 once collecting, then
/// WATCHDOG=1 pings from the collector loop. The notify socket here is the
/// test's own, speaking systemd's datagram protocol.
#[test]
fn tells_systemd_it_is_ready_and_pings_the_watchdog() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    // systemd names the watched process in WATCHDOG_PID: the shell's pid,
    // which the agent keeps through exec.
    let child = std::process::Command::new("sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
        .arg(tailprof_bin())
        .args(["agent", "--listen", &addr, "--data-dir", data.path().to_str().unwrap(), "--window", "1s"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("TAILPROF_CONFIG")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(child);
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while got.iter().filter(|m: &&String| m.contains("WATCHDOG=1")).count() < 3 {
        let n = sock.recv(&mut buf).expect("a notification within 30 s");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    drop(child);
    let ready = got.iter().position(|m| m.contains("READY=1"));
    let first_ping = got.iter().position(|m| m.contains("WATCHDOG=1"));
    println!("notifications: {got:?}");
    assert!(ready.is_some(), "no READY=1 in {got:?}");
    assert!(ready < first_ping, "READY=1 must come before the watchdog pings: {got:?}");
}

/// Unmounts a tmpfs when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tailprof-test", dir.to_str().unwrap()])
            .status()
            .expect("run mount");
        assert!(st.success(), "could not mount a tmpfs on {}", dir.display());
        Self(dir.to_owned())
    }

    fn remount(&self, how: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{how}"), self.0.to_str().unwrap()])
            .status()
            .expect("run mount");
        assert!(st.success(), "could not remount {} {how}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk, then a read-only one: the agent keeps collecting and
/// serving, says in /api/v1/status that it cannot write, and resumes
/// writing when space (or write access) returns.
#[test]
fn a_full_or_read_only_disk_stops_writing_not_collecting() {
    require_root();
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("data");
    let fs = Tmpfs::mount(&dir, "2m");
    let agent = Agent::start(&dir, &["--window", "1s", "--min-free-disk", "0"]);
    let storage = |a: &Agent| a.get("/api/v1/status").unwrap().json()["storage"].clone();
    let windows = |a: &Agent| a.get("/api/v1/status").unwrap().json()["collecting"]["windows"].as_u64().unwrap_or(0);
    let wait_for = |what: &str, ok: &dyn Fn(&Value) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let s = storage(&agent);
            if ok(&s) {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {s}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    wait_for("a first segment", &|s| s["written"].as_u64().unwrap_or(0) >= 1);
    // Fill the file system to the last byte.
    let filler = dir.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
    }
    let full =
        wait_for("a window not written on a full disk", &|s| s["windows_not_written"].as_u64().unwrap_or(0) >= 1);
    println!("disk full: {full}");
    assert!(full["last_error"].as_str().is_some_and(|e| !e.is_empty()), "status says nothing: {full}");
    let before = windows(&agent);
    std::thread::sleep(Duration::from_secs(2));
    assert!(windows(&agent) > before, "collecting stopped with the disk full");
    assert_eq!(agent.get("/readyz").unwrap().status, 200);
    assert_eq!(agent.get("/api/v1/profile?from=-1m&format=folded").unwrap().status, 200, "serving stopped");
    // Space returns: writing resumes.
    std::fs::remove_file(&filler).unwrap();
    let written = full["written"].as_u64().unwrap_or(0);
    let resumed =
        wait_for("writing resumed", &|s| s["written"].as_u64().unwrap_or(0) > written && s["last_error"].is_null());
    println!("space back: {resumed}");

    // Read-only, then writable again.
    fs.remount("ro");
    let not_written = resumed["windows_not_written"].as_u64().unwrap_or(0);
    let ro =
        wait_for("a window not written read-only", &|s| s["windows_not_written"].as_u64().unwrap_or(0) > not_written);
    println!("read-only: {ro}");
    let before = windows(&agent);
    std::thread::sleep(Duration::from_secs(2));
    assert!(windows(&agent) > before, "collecting stopped with the disk read-only");
    fs.remount("rw");
    let written = ro["written"].as_u64().unwrap_or(0);
    wait_for("writing resumed after rw", &|s| {
        s["written"].as_u64().unwrap_or(0) > written && s["last_error"].is_null()
    });
    assert!(agent.stop().success());
}

/// Wait until capture `id` has ended; its record.
fn wait_capture(agent: &Agent, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = agent.get(&format!("/api/v1/captures/{id}")).unwrap().json();
        if c["state"] != "running" {
            return c;
        }
        assert!(std::time::Instant::now() < deadline, "capture {id} still running after 60 s: {c}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A deep capture asked over the API, then one from an Alertmanager
/// webhook payload: each writes `record`'s outputs, served by name, while
/// the continuous windows keep flowing without gap or overlap.
#[test]
fn deep_captures_from_the_api_and_alertmanager_without_a_gap() {
    require_root();
    let bin = build_c_workload("hot_ratio", &[]);
    let w = Workload::start(&bin, &["90"]);
    let data = tempfile::tempdir().unwrap();
    let agent =
        Agent::start(data.path(), &["--window", "2s", "--capture-cooldown", "2s", "--capture-max-duration", "30s"]);
    let body = format!(r#"{{"duration": "4s", "tier": "deep", "pid": {}, "reason": "p99 jumped"}}"#, w.pid);
    let r = agent.post("/api/v1/captures", body.as_bytes()).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().expect("an id").to_owned();
    // One at a time.
    let busy = agent.post("/api/v1/captures", body.as_bytes()).unwrap();
    assert_eq!(busy.status, 409, "{}", busy.text());
    assert!(busy.json()["error"].as_str().unwrap_or_default().contains("one runs at a time"));
    let c = wait_capture(&agent, &id);
    assert_eq!(c["state"], "done", "{c}");
    assert_eq!(c["reason"], "p99 jumped");
    let files: Vec<&str> = c["files"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for f in ["summary.json", "stacks.folded", "flamegraph.svg", "profile.pb.gz", "offcpu.folded", "noise.json"] {
        assert!(files.contains(&f), "{f} missing from {files:?}");
    }
    let summary = agent.get(&format!("/api/v1/captures/{id}/files/summary.json")).unwrap().json();
    assert_eq!(summary["tier"], "deep", "a deep capture");
    let threads = summary["threads"].as_array().unwrap();
    assert!(!threads.is_empty() && threads.iter().all(|t| t["pid"].as_u64() == Some(u64::from(w.pid))), "only the pid");
    let folded = agent.get(&format!("/api/v1/captures/{id}/files/stacks.folded")).unwrap().text();
    let (two, one) = (samples_with(&folded, "tp_hot_two_thirds"), samples_with(&folded, "tp_hot_one_third"));
    println!("deep capture: tp_hot_two_thirds : tp_hot_one_third = {two}:{one}");
    assert!(one > 0 && two > one, "{two}:{one}");
    for name in ["../capture.json", "..%2F..%2Fsegments", "capture.json", "nothing.txt"] {
        let r = agent.get(&format!("/api/v1/captures/{id}/files/{name}")).unwrap();
        assert_eq!(r.status, 404, "{name}: {}", r.text());
    }

    // Bad requests: a sentence and a 4xx each.
    for (body, status, says) in [
        (r#"{"duration": "10m"}"#.to_owned(), 400, "a capture lasts"),
        (r#"{"duration": "4s", "pid": 4000000000}"#.to_owned(), 400, "not running"),
        (r#"{"duration": "4s", "colour": "red"}"#.to_owned(), 400, "not a capture request"),
        (r#"{"duration": "soon"}"#.to_owned(), 400, "not a duration"),
        ("not json".to_owned(), 400, "not a capture request"),
        (format!(r#"{{"reason": "{}"}}"#, "x".repeat(400_000)), 413, ""),
    ] {
        let r = agent.post("/api/v1/captures", body.as_bytes()).unwrap();
        assert_eq!(r.status, status, "{}: {}", &body[..body.len().min(40)], r.text());
        if !says.is_empty() {
            assert!(r.json()["error"].as_str().unwrap_or_default().contains(says), "{}", r.text());
        }
    }
    let r = agent.post("/api/v1/alerts/alertmanager", b"{\"alerts\": 3}").unwrap();
    assert_eq!(r.status, 400, "{}", r.text());

    // Alertmanager: the firing alert naming the pid starts a capture, the
    // resolved one and the one naming nothing here are skipped.
    std::thread::sleep(Duration::from_secs(3));
    let payload = format!(
        r#"{{"version": "4", "status": "firing", "receiver": "tailprof", "groupLabels": {{}}, "commonLabels": {{}},
            "alerts": [
              {{"status": "resolved", "labels": {{"alertname": "Old", "pid": "{pid}"}}, "annotations": {{}}}},
              {{"status": "firing", "labels": {{"alertname": "HighLatency", "pid": "{pid}"}},
                "annotations": {{"tailprof_duration": "3s"}}, "startsAt": "2026-12-06T10:00:00Z", "fingerprint": "ab"}},
              {{"status": "firing", "labels": {{"alertname": "Elsewhere", "severity": "page"}}, "annotations": {{}}}}
            ]}}"#,
        pid = w.pid
    );
    let r = agent.post("/api/v1/alerts/alertmanager", payload.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json();
    assert_eq!(out["started"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(out["skipped"].as_array().map(Vec::len), Some(2), "{out}");
    let id2 = out["started"][0]["capture"].as_str().unwrap().to_owned();
    let c2 = wait_capture(&agent, &id2);
    assert_eq!(
        (c2["state"].as_str(), c2["reason"].as_str(), c2["trigger"].as_str()),
        (Some("done"), Some("HighLatency"), Some("alertmanager"))
    );
    assert_eq!(agent.get(&format!("/api/v1/captures/{id2}/files/stacks.folded")).unwrap().status, 200);
    let list = agent.get("/api/v1/captures").unwrap().json();
    assert_eq!(list["captures"].as_array().map(Vec::len), Some(2), "{list}");
    // Latency histograms: those of the deep captures in the range.
    let h = agent.get("/api/v1/histograms?from=-5m").unwrap().json();
    let hs = h["captures"].as_array().expect("captures");
    assert_eq!(hs.len(), 2, "{h}");
    assert!(hs.iter().all(|c| c["histograms"].is_object() && c["histograms"]["absent"].is_null()), "{h}");
    assert_eq!(agent.get("/api/v1/histograms?from=-5m&to=-4m").unwrap().json()["captures"], serde_json::json!([]));
    let metrics = agent.get("/metrics").unwrap().text();
    assert!(metrics.contains("tailprof_captures_total{trigger=\"alertmanager\"} 1"), "{metrics}");
    assert!(metrics.contains("tailprof_captures_total{trigger=\"api\"} 1"), "{metrics}");

    // The continuous windows around both captures: contiguous.
    std::thread::sleep(Duration::from_secs(3));
    let segs = agent.get("/api/v1/segments").unwrap().json();
    let segs = segs.as_array().expect("segments");
    let first_start = c["started_unix_ns"].as_u64().unwrap();
    let last_end = c2["ended_unix_ns"].as_u64().unwrap();
    assert!(segs.first().and_then(|s| s["start_unix_ns"].as_u64()).unwrap() < first_start);
    assert!(segs.last().and_then(|s| s["end_unix_ns"].as_u64()).unwrap() > last_end);
    for pair in segs.windows(2) {
        assert_eq!(pair[0]["end_unix_ns"], pair[1]["start_unix_ns"], "no gap, no overlap");
    }
    println!("{} contiguous windows around both captures", segs.len());
    assert!(agent.stop().success());
}

/// Sum of a field over the steps of a timeline.
fn step_sum(timeline: &Value, field: &str) -> f64 {
    timeline["steps"].as_array().expect("steps").iter().filter_map(|s| s[field].as_f64()).sum()
}

/// Old windows are merged in the background into larger segments; the
/// same range then reads the same: every sample and stack, exact CPU and
/// run-queue time per thread, noise.
#[test]
fn merged_segments_read_the_same_as_their_windows() {
    require_root();
    let bin = build_c_workload("hot_ratio", &[]);
    let w = Workload::start(&bin, &["120"]);
    let data = tempfile::tempdir().unwrap();
    // 1 s windows merge in buckets of 30 s, 8 s after a bucket ends.
    let agent = Agent::start(data.path(), &["--window", "1s", "--compact-after", "8s"]);
    let started = unix_now();
    let bucket = ((started / 30.0).floor() as u64 + 1) * 30;
    let (b0, b1) = (bucket as f64 * 1e9, (bucket + 30) as f64 * 1e9);
    // Wait until the window after the bucket is stored, then take the
    // windows that start in it.
    let windows = loop {
        let segs = agent.get("/api/v1/segments").unwrap().json();
        let segs = segs.as_array().unwrap().clone();
        if segs.iter().any(|s| s["start_unix_ns"].as_f64().unwrap() >= b1) {
            break segs
                .into_iter()
                .filter(|s| (b0..b1).contains(&s["start_unix_ns"].as_f64().unwrap()))
                .collect::<Vec<_>>();
        }
        assert!(unix_now() < started + 80.0, "no window after the bucket yet");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(windows.len() >= 25, "{} windows in a 30 s bucket", windows.len());
    // Strictly inside the bucket's windows: the same windows before and after.
    let from = windows[0]["start_unix_ns"].as_u64().unwrap() as f64 / 1e9 + 0.001;
    let to = windows.last().unwrap()["end_unix_ns"].as_u64().unwrap() as f64 / 1e9 - 0.001;
    let range = format!("from={from:.6}&to={to:.6}");
    let read = |agent: &Agent| {
        let timeline = agent.get(&format!("/api/v1/timeline?{range}")).unwrap().json();
        let folded = agent.get(&format!("/api/v1/profile?{range}&format=folded")).unwrap().text();
        let threads = agent.get(&format!("/api/v1/threads?{range}&pid={}", w.pid)).unwrap().json();
        let noise = agent.get(&format!("/api/v1/timeline?{range}&step=1h")).unwrap().json();
        (timeline, folded, threads, noise)
    };
    let before = read(&agent);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let segs = agent.get("/api/v1/segments").unwrap().json();
        let merged = segs.as_array().unwrap().iter().any(|s| {
            s["start_unix_ns"] == windows[0]["start_unix_ns"]
                && s["end_unix_ns"] == windows.last().unwrap()["end_unix_ns"]
        });
        if merged {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the bucket was not merged: {segs}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = read(&agent);
    let steps = |t: &Value| t["steps"].as_array().map_or(0, Vec::len);
    println!("{} windows read as {} segment(s) once merged", steps(&before.0), steps(&after.0));
    assert_eq!(steps(&before.0), windows.len());
    assert_eq!(steps(&after.0), 1, "one merged segment");
    for field in ["cpu_s", "runqueue_s", "sleeping_s", "disk_s", "other_s", "samples"] {
        let (a, b) = (step_sum(&before.0, field), step_sum(&after.0, field));
        assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{field}: {a} before, {b} merged");
    }
    let lines = |f: &str| {
        let mut v: Vec<String> = f.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(lines(&before.1), lines(&after.1), "the same stacks and counts");
    assert!(!before.1.is_empty());
    let per_thread = |t: &Value| {
        let mut v: Vec<(u64, u64, u64)> = t["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["tid"].as_u64().unwrap(),
                    t["on_cpu_ns"].as_u64().unwrap(),
                    t["off_cpu_ns"]["runnable"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(per_thread(&before.2), per_thread(&after.2), "exact times per thread");
    // Noise: the one-step timeline's per-CPU softirq and per-source seconds.
    let noise = |t: &Value| t["steps"][0]["noise"].clone();
    let (nb, na) = (noise(&before.3), noise(&after.3));
    for (cpu, c) in nb["cpus"].as_object().expect("noise per CPU") {
        for field in ["softirq_s", "steal_s"] {
            let (a, b) = (c[field].as_f64().unwrap(), na["cpus"][cpu][field].as_f64().unwrap());
            assert!((a - b).abs() < 1e-9, "cpu {cpu} {field}: {a} before, {b} merged");
        }
    }
    for (source, secs) in nb["sources"].as_object().expect("noise per source") {
        let (a, b) = (secs.as_f64().unwrap(), na["sources"][source].as_f64().unwrap_or(-1.0));
        assert!((a - b).abs() < 1e-9, "{source}: {a} before, {b} merged");
    }
    // Filters by state: off-CPU stacks in that state only.
    let f = agent.get(&format!("/api/v1/profile?{range}&view=offcpu&state=sleeping&format=folded")).unwrap().text();
    assert!(!f.is_empty() && f.lines().all(|l| l.contains("[sleeping]")), "state=sleeping: {f}");
    // The noise report over the range, as `record` writes it.
    let report = agent.get(&format!("/api/v1/noise?{range}")).unwrap().json();
    assert_eq!(report["tier"], "continuous", "{report}");
    assert_eq!(report["windows_without_noise"], 0);
    let status = agent.get("/api/v1/status").unwrap().json();
    assert!(status["storage"]["merged_sources"].as_u64().unwrap() >= windows.len() as u64, "{status}");
    assert!(agent.stop().success());
}

/// A cgroup v2 directory of the test's own, removed (after its processes
/// are gone) on drop.
/// A local rule in the configuration file: two threads spinning on one CPU
/// in a cgroup of their own wait half their demand in the run queue; after
/// two such windows the rule starts a deep capture of that cgroup.
#[test]
fn a_local_rule_captures_the_group_that_tripped_it() {
    require_root();
    let mount = cgroup2_mount().expect("a cgroup v2 hierarchy (the kernel of CI has one)");
    let name = format!("tailprof-e2e-rule-{}", std::process::id());
    let dir = mount.join(&name);
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let mut cg = TestCgroup { dir: dir.clone(), workload: None };
    let bin = build_c_workload("pinned_spinners", &["-pthread"]);
    let w = Workload::start(&bin, &["0", "60"]);
    std::fs::write(dir.join("cgroup.procs"), w.pid.to_string()).expect("move the spinners into the cgroup");
    let pid = w.pid;
    cg.workload = Some(w);

    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("agent.toml");
    std::fs::write(
        &config,
        "[[rules]]\nname = \"rq\"\nwhen = \"runqueue-share\"\nabove = 0.3\nfor-windows = 2\nduration = \"2s\"\ncooldown = \"1h\"\n",
    )
    .unwrap();
    let agent = Agent::start(data.path(), &["--window", "1s", "--config", config.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let capture = loop {
        let list = agent.get("/api/v1/captures").unwrap().json();
        if let Some(c) = list["captures"].as_array().and_then(|a| a.first()).cloned() {
            if c["state"] != "running" {
                break c;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rule started no capture: {}",
            agent.get("/api/v1/status").unwrap().text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    println!("rule capture: {}", capture["reason"]);
    assert_eq!(capture["trigger"], "rule:rq", "{capture}");
    assert_eq!(capture["state"], "done", "{capture}");
    assert_eq!(capture["target"]["cgroup"].as_str(), Some(format!("/{name}").as_str()), "{capture}");
    let id = capture["id"].as_str().unwrap();
    let summary = agent.get(&format!("/api/v1/captures/{id}/files/summary.json")).unwrap().json();
    let threads = summary["threads"].as_array().unwrap();
    assert!(
        !threads.is_empty() && threads.iter().all(|t| t["pid"].as_u64() == Some(u64::from(pid))),
        "only the cgroup's threads"
    );
    let status = agent.get("/api/v1/status").unwrap().json();
    assert_eq!(status["rules"][0]["fired_total"], 1, "{status}");
    let metrics = agent.get("/metrics").unwrap().text();
    assert!(metrics.contains("tailprof_rule_fires_total{rule=\"rq\"}"), "{metrics}");
    assert!(agent.stop().success());
}

/// The capability set of dist/tailprof-agent.service, found by trying, is
/// kept honest by trying: under exactly that set (setpriv) the agent
/// collects, names the frames of a binary another user keeps in a directory
/// closed to others, and runs a deep capture, with no warning about a
/// permission; without CAP_SYS_ADMIN it stops with one sentence, without
/// CAP_DAC_READ_SEARCH that binary's frames stay unnamed, without
/// CAP_SYS_PTRACE its stacks are not walked whole, and without
/// CAP_SYS_NICE the snapshots say they run at a normal priority.
#[test]
fn the_service_capability_set_is_the_smallest_that_works() {
    require_root();
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/tailprof-agent.service")).unwrap();
    let set: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit has a CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect();
    println!("the unit's set: {set:?}");
    // A spinner of user nobody, in a directory only nobody may enter.
    let home = tempfile::tempdir().unwrap();
    let closed = home.path().join("closed");
    std::fs::create_dir(&closed).unwrap();
    let bin = build_c_workload("spinner", &[]);
    let spin = closed.join("tp-closed-spin");
    std::fs::copy(&bin, &spin).unwrap();
    let chown = |p: &std::path::Path| {
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
    };
    chown(&closed);
    chown(&spin);
    std::fs::set_permissions(&closed, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut spinner = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", spin.to_str().unwrap(), "tp-closed", "60"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("setpriv (util-linux)");

    let run = |caps: &[String]| {
        let list = caps.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(",");
        let data = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = data.path().join("log");
        let mut child = std::process::Command::new("setpriv")
            .arg("--reuid=0")
            .arg(format!("--inh-caps=-all,{list}"))
            .arg(format!("--ambient-caps=-all,{list}"))
            .arg(format!("--bounding-set=-all,{list}"))
            .arg(tailprof_bin())
            .args(["agent", "--window", "1s", "--capture-cooldown", "1s", "--listen", &addr, "--data-dir"])
            .arg(data.path().join("data"))
            .env("TAILPROF_LOG", "warn")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let ready = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            if http(&addr, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200) {
                break true;
            }
            assert!(std::time::Instant::now() < deadline, "not ready in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut out = (ready, String::new(), None);
        if ready {
            std::thread::sleep(Duration::from_secs(3));
            out.1 =
                http(&addr, "GET", "/api/v1/profile?from=-10s&format=folded&comm=tp-closed", &[], b"").unwrap().text();
            let r =
                http(&addr, "POST", "/api/v1/captures", &[], br#"{"duration": "2s", "comm": "tp-closed"}"#).unwrap();
            let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
            std::thread::sleep(Duration::from_secs(4));
            out.2 = Some(http(&addr, "GET", &format!("/api/v1/captures/{id}"), &[], b"").unwrap().json());
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let status = child.wait().unwrap();
        (out, status, std::fs::read_to_string(&log).unwrap_or_default())
    };

    let ((ready, folded, capture), status, log) = run(&set);
    assert!(ready && status.success(), "under the unit's set: {log}");
    assert!(folded.contains(";main;tp_spin"), "the closed binary's frames are named, its stacks whole: {folded}");
    let capture = capture.unwrap();
    assert_eq!(capture["state"], "done", "{capture}");
    for warning in ["Permission denied", "not permitted", "normal priority"] {
        assert!(!log.contains(warning), "a permission warning under the unit's set: {log}");
    }
    let without = |cap: &str| set.iter().filter(|c| *c != cap).cloned().collect::<Vec<_>>();
    let ((ready, _, _), status, log) = run(&without("sys_admin"));
    assert!(!ready && !status.success() && log.contains("CAP_SYS_ADMIN"), "without CAP_SYS_ADMIN: {log}");
    let ((_, folded, _), _, _) = run(&without("dac_read_search"));
    assert!(!folded.is_empty() && !folded.contains("tp_spin"), "without CAP_DAC_READ_SEARCH: {folded}");
    let (_, _, log) = run(&without("sys_nice"));
    assert!(log.contains("normal priority"), "without CAP_SYS_NICE: {log}");
    let ((_, folded, _), _, _) = run(&without("sys_ptrace"));
    // Another user's /proc/PID/maps: without it the stack is not walked whole.
    assert!(!folded.is_empty() && !folded.contains(";main;tp_spin"), "without CAP_SYS_PTRACE: {folded}");
    let _ = spinner.kill();
    let _ = spinner.wait();
}
