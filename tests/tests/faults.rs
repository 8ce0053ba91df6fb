//! Faults the always-on agent must survive: crashes in the middle of
//! writes, the wall clock stepped, a process of 100,000 threads appearing
//! and vanishing, maps filled on purpose, and a program the kernel will
//! not attach. Each runs a real agent with its real BPF programs.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;
use tailprof_e2e::*;

fn status(a: &Agent) -> Value {
    let r = a.get("/api/v1/status").expect("status answers");
    assert_eq!(r.status, 200, "status: {}", r.text());
    r.json()
}

fn windows(a: &Agent) -> u64 {
    status(a)["collecting"]["windows"].as_u64().unwrap_or(0)
}

/// Wait up to `secs` for `ok` on the status.
fn wait_status(a: &Agent, what: &str, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(a);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The segments the agent serves: (name, start, end).
fn segments(a: &Agent) -> Vec<(String, u64, u64)> {
    let r = a.get("/api/v1/segments").expect("segments answer");
    assert_eq!(r.status, 200, "segments: {}", r.text());
    r.json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["start_unix_ns"].as_u64().unwrap_or(0),
                s["end_unix_ns"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A request that must not fail on the server's side: 200, or a 4xx with
/// a sentence.
fn answers(a: &Agent, path: &str) -> u16 {
    let r = a.get(path).unwrap_or_else(|e| panic!("{path}: no answer: {e}"));
    assert!(r.status < 500, "{path}: {} {}", r.status, r.text());
    if r.status != 200 {
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {} {}", r.status, r.text());
    }
    r.status
}

/// A small deterministic generator (xorshift), seeded from the clock and
/// printed, so that a failing sequence of kill moments can be replayed
/// with `TAILPROF_FAULT_SEED`.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("TAILPROF_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
        });
        println!("seed {seed} (TAILPROF_FAULT_SEED={seed} replays it)");
        Self(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `kill -9` at random moments, 20 times, while the agent writes a window
/// every second (and its merger compacts them after 2 s): after each restart every
/// segment served before the kill is served again and whole, nothing torn
/// is served, and what was torn is reported.
#[test]
fn kill_9_at_random_moments_loses_nothing_but_the_open_window() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let mut rng = Rng::seeded();
    let args = ["--window", "1s", "--compact-after", "2s"];
    let mut served_before: Vec<(String, u64, u64)> = Vec::new();
    let mut quarantined = 0;
    for round in 0..20 {
        let agent = Agent::start(data.path(), &args);
        let now = segments(&agent);
        // Every window served before the kill is still covered: by its
        // segment, or by a merged one that holds its whole span.
        for (name, start, end) in &served_before {
            let kept = now.iter().any(|(_, s, e)| s <= start && end <= e);
            assert!(kept, "round {round}: {name} was served before the kill and is gone");
        }
        let r = agent.get("/api/v1/profile?from=0&to=now&format=folded").unwrap();
        assert!(r.status == 200 || r.status == 404, "round {round}: a range query failed: {} {}", r.status, r.text());
        let storage = status(&agent)["storage"].clone();
        quarantined = storage["quarantined"].as_u64().unwrap_or(0).max(quarantined);
        // Let it write for a while, then kill it mid-stride.
        std::thread::sleep(Duration::from_millis(500 + rng.below(2500)));
        served_before = segments(&agent);
        drop(agent);
    }
    // Whatever is on disk now reads whole or is quarantined at the next start.
    let agent = Agent::start(data.path(), &args);
    let storage = status(&agent)["storage"].clone();
    let listed = segments(&agent);
    for (name, start, end) in &served_before {
        let kept = listed.iter().any(|(_, s, e)| s <= start && end <= e);
        assert!(kept, "after the last kill: {name} was served before it and is gone");
    }
    for (name, start, end) in &listed {
        let at = |ns: u64| format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
        let q = format!("/api/v1/profile?from={}&to={}&format=folded", at(start + 1), at(end.saturating_sub(1)));
        let r = agent.get(&q).unwrap();
        assert_eq!(r.status, 200, "segment {name} does not read whole: {}", r.text());
    }
    let in_quarantine = std::fs::read_dir(data.path().join("quarantine")).map_or(0, |d| d.count());
    println!(
        "after 20 kills: {} segments served, each read whole; {} files quarantined (status says {})",
        listed.len(),
        in_quarantine,
        storage["quarantined"]
    );
    // Merges fold the rounds' windows together, and a round killed before
    // its first window closed wrote none: how many segments is not fixed.
    assert!(!listed.is_empty(), "no segment after 20 rounds");
    let _ = quarantined;
    assert!(agent.stop().success());
}

/// A sysctl set for a test, restored when dropped.
struct Sysctl {
    path: &'static str,
    was: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Self {
        let was = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        std::fs::write(path, value).unwrap_or_else(|e| panic!("write {path}: {e}"));
        Self { path, was }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, self.was.trim());
    }
}

/// Steps the wall clock and restores it (the time spent stepped is added
/// back from the monotonic clock) when dropped, even after a failed check.
struct ClockStep {
    wall: SystemTime,
    mono: Instant,
}

impl ClockStep {
    fn new() -> Self {
        Self { wall: SystemTime::now(), mono: Instant::now() }
    }

    /// Set the wall clock `by` seconds away from true time.
    fn set(&self, by: i64) {
        let truth = self.wall + self.mono.elapsed();
        let t = match by >= 0 {
            true => truth + Duration::from_secs(by as u64),
            false => truth - Duration::from_secs(by.unsigned_abs()),
        };
        let d = t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
        let ts = libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long };
        // SAFETY: a valid timespec; CLOCK_REALTIME is settable by root.
        let rc = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
        assert_eq!(rc, 0, "clock_settime: {}", std::io::Error::last_os_error());
    }
}

impl Drop for ClockStep {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// The wall clock stepped back 5 minutes, then forward to 5 minutes
/// ahead, then restored: windows stay ordered without overlap, collecting
/// goes on, and no range query breaks.
#[test]
fn clock_steps_keep_windows_ordered_and_queries_whole() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--window", "1s"]);
    wait_status(&agent, "two windows", 20, |s| s["collecting"]["windows"].as_u64() >= Some(2));
    let clock = ClockStep::new();
    let queries = [
        "/api/v1/profile?from=0&to=now&format=folded",
        "/api/v1/profile?from=-1m&format=json",
        "/api/v1/profile?from=-10m&to=-5m&format=json",
        "/api/v1/timeline?from=-15m&to=now&step=1s",
        "/api/v1/timeline?from=-1m",
        "/api/v1/segments",
        "/api/v1/noise?from=-1m",
    ];
    let mut seen = Vec::new();
    for by in [-300, 300, 0] {
        clock.set(by);
        let before = windows(&agent);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(windows(&agent) > before, "collecting stopped with the clock {by:+} s away");
        for q in queries {
            seen.push((by, q, answers(&agent, q)));
        }
    }
    drop(clock);
    let listed = segments(&agent);
    for pair in listed.windows(2) {
        let ((a, _, a_end), (b, b_start, _)) = (&pair[0], &pair[1]);
        assert!(a_end <= b_start, "segments {a} and {b} overlap or are out of order");
    }
    println!("{} segments in order; answers by step: {seen:?}", listed.len());
    assert!(agent.stop().success());
}

/// A process of 100,000 threads appears, holds them 4 s and vanishes, under
/// the agent's defaults: the agent stays up, its memory stays bounded,
/// what did not fit is counted, and windows go on after.
#[test]
fn a_process_of_100000_threads_appearing_and_vanishing() {
    require_root();
    let bin = build_c_workload("thread_flood", &[]);
    // Room for 100,000 more thread ids (this VM's pid_max is 32768) and
    // their stacks (two mappings each; vm.max_map_count is 65530).
    let _pid_max = Sysctl::set("/proc/sys/kernel/pid_max", "4194304");
    let _maps = Sysctl::set("/proc/sys/vm/max_map_count", "1048576");
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--window", "1s"]);
    wait_status(&agent, "a window", 20, |s| s["collecting"]["windows"].as_u64() >= Some(1));
    let base_rss = rss_kib(agent.pid());
    let started = Instant::now();
    let flood = Workload::start(&bin, &["100000", "4"]);
    let made_at = started.elapsed();
    let threads = std::fs::read_to_string(format!("/proc/{}/status", flood.pid))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse::<u64>().unwrap_or(0)))
        .unwrap_or(0);
    assert!(threads > 100_000, "thread_flood made {threads} threads");
    let mut peak = base_rss;
    let mut child = flood;
    let done = loop {
        peak = peak.max(rss_kib(agent.pid()));
        if let Ok(Some(st)) = child.child.try_wait() {
            break st;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the flood did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(done.success(), "thread_flood: {done}");
    let after = windows(&agent);
    let s =
        wait_status(&agent, "windows after the flood", 30, |s| s["collecting"]["windows"].as_u64() >= Some(after + 2));
    for _ in 0..10 {
        peak = peak.max(rss_kib(agent.pid()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let end_rss = rss_kib(agent.pid());
    println!(
        "threads made in {made_at:?}; agent RSS {base_rss} KiB before, peak {peak} KiB, {end_rss} KiB after; \
         dropped {}; governor {}",
        s["collecting"]["dropped"], s["collecting"]["governor"]
    );
    answers(&agent, "/api/v1/profile?from=-1m&format=json");
    answers(&agent, "/api/v1/timeline?from=-1m");
    assert!(peak < 512 * 1024, "agent RSS peaked at {peak} KiB with 100,000 threads");
    assert!(agent.stop().success(), "the agent must exit 0 after the flood");
}

/// A thread map far smaller than the host's threads: what does not fit is
/// counted in the status and the metrics, warned of once, and the agent
/// keeps collecting and serving.
#[test]
fn full_maps_are_counted_and_warned_once() {
    require_root();
    let bin = build_c_workload("thread_flood", &[]);
    let _flood = Workload::start(&bin, &["500", "60"]);
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("agent.log");
    let agent = Agent::start_with(data.path(), &["--window", "1s", "--max-threads", "64"], &[], Some(&log));
    let s = wait_status(&agent, "threads dropped", 30, |s| {
        let d = &s["collecting"]["dropped"];
        let dropped = d["threads"].as_u64().unwrap_or(0) + d["snapshot_threads"].as_u64().unwrap_or(0);
        dropped > 0 && s["collecting"]["windows"].as_u64() >= Some(4)
    });
    let metrics = agent.get("/metrics").unwrap().text();
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("tailprof_dropped_events_total{") && l.contains("thread") && !l.ends_with(" 0"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    answers(&agent, "/api/v1/profile?from=-1m&format=json");
    assert!(agent.stop().success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let warnings = text.lines().filter(|l| l.contains("filled up at its bound")).count();
    println!("dropped {}; metric {counted}; warnings {warnings}", s["collecting"]["dropped"]);
    assert!(counted > 0.0, "tailprof_dropped_events_total has no thread drops:\n{metrics}");
    assert_eq!(warnings, 1, "expected one warning of the full thread map, the log says:\n{text}");
}

/// A program the kernel will not attach (made to fail by the test-only
/// switch, as a kernel without its hook would): the agent starts without
/// it, says what it cannot show, and keeps what still works.
#[test]
fn a_program_that_fails_to_attach_degrades_the_agent_instead_of_stopping_it() {
    require_root();
    let spinner = build_c_workload("spinner", &[]);
    let _spin = Workload::start(&spinner, &["faultspin", "60"]);
    for program in ["on_cpu_sample", "process_fork"] {
        let data = tempfile::tempdir().unwrap();
        let agent =
            Agent::start_with(data.path(), &["--window", "1s"], &[("TAILPROF_TEST_BREAK_PROGRAM", program)], None);
        let s = wait_status(&agent, "three windows", 30, |s| s["collecting"]["windows"].as_u64() >= Some(3));
        let unavailable = s["collecting"]["unavailable"].as_array().cloned().unwrap_or_default();
        let names: BTreeSet<&str> = unavailable.iter().filter_map(|u| u["program"].as_str()).collect();
        assert_eq!(names, BTreeSet::from([program]), "status: {}", s["collecting"]);
        assert!(unavailable[0]["cannot_show"].as_str().is_some_and(|c| c.len() > 20), "{}", unavailable[0]);
        assert!(unavailable[0]["reason"].as_str().is_some_and(|r| r.contains("TAILPROF_TEST_BREAK_PROGRAM")));
        let metrics = agent.get("/metrics").unwrap().text();
        assert!(
            metrics.contains(&format!("tailprof_program_unavailable{{program=\"{program}\"}} 1")),
            "metrics lack the unavailable program:\n{metrics}"
        );
        // Exact thread times still come from the snapshots.
        let t = agent.get("/api/v1/timeline?from=-1m").unwrap();
        assert_eq!(t.status, 200, "{}", t.text());
        let cpu: f64 = t.json()["steps"]
            .as_array()
            .map(|steps| steps.iter().filter_map(|s| s["cpu_s"].as_f64()).sum())
            .unwrap_or(0.0);
        assert!(cpu > 0.5, "no exact CPU seconds without {program}: {}", t.text());
        let samples = s["collecting"]["samples"].as_u64().unwrap_or(0);
        match program {
            "on_cpu_sample" => assert_eq!(samples, 0, "samples without the sampler"),
            _ => assert!(samples > 0, "no samples without {program}"),
        }
        println!("without {program}: {} windows, {samples} samples, {cpu:.2} CPU s", s["collecting"]["windows"]);
        assert!(agent.stop().success());
    }
}
