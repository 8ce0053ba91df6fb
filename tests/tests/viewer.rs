//! The web viewer in a real browser: headless Chromium (Debian's), driven by
//! tests/web/viewer.mjs (npm's playwright-core), against the agent as its
//! own process serving the page at `/`, profiling a known workload (a thread
//! with a 2:1 split between two hot functions called by `tp_worker`, and a
//! thread that sleeps). The script checks what the page shows against what
//! the API answers: the total, a zoom's share, search, sandwich, a brushed
//! range, a diff against a range before the workload, the sleeping colour
//! of the wall-clock view, a deep link, every export, the noise, latency
//! and captures pages, and one sentence for a bad view, an empty range and
//! the agent stopped. The pprof export is read by the real Go pprof tool.
//! Screenshots of every view are kept under target/e2e/viewer/screenshots.

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use tailprof_e2e::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// What the browser tests need, installed by `cargo xtask setup`.
fn require_browser_tools() {
    require_root();
    assert!(
        repo().join("tests/web/node_modules/playwright-core").exists(),
        "tests/web/node_modules is missing: `cargo xtask setup` installs playwright-core there"
    );
    assert!(PathBuf::from(CHROMIUM).exists(), "Chromium is missing: `cargo xtask setup` installs Debian's chromium");
    assert!(
        repo().join("target/tools/pprof").exists(),
        "the Go pprof tool is missing: `cargo xtask setup` builds it into target/tools/pprof"
    );
}

#[test]
fn the_viewer_in_chromium_shows_what_the_api_answers() {
    require_browser_tools();
    let data = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(data.path(), &["--window", "2s"]);
    // Windows before the workload: the diff's baseline.
    let baseline_from = unix_now();
    std::thread::sleep(Duration::from_secs(5));
    let baseline_to = unix_now();
    // A whole window apart: the range's windows hold no workload.
    std::thread::sleep(Duration::from_millis(2500));
    let hot = Workload::start(&build_c_workload("hot_ratio", &[]), &["120"]);
    let sleeper = Workload::start(&build_c_workload("sleeper", &[]), &["120"]);
    let from = unix_now() + 0.5;
    std::thread::sleep(Duration::from_secs(20));
    let to = unix_now();
    // The window holding `to` closes.
    std::thread::sleep(Duration::from_secs(3));

    let out = repo().join("target/e2e/viewer");
    let range = Range { from, to, baseline_from, baseline_to };
    run_viewer_mjs(&out, &agent.addr, agent.child.id(), "agent", &range);
    pprof_reads_the_export(&out);
    // The script stopped the agent to see the page say so.
    let _ = agent.child.wait();
    drop((hot, sleeper));
}

/// The same checks over `tailprof serve`: a capture recorded with
/// `--window 2s` whose first windows precede the workload (the diff's
/// baseline); the range is the windows with the workload in them.
#[test]
fn the_viewer_over_tailprof_serve_shows_what_the_api_answers() {
    require_browser_tools();
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("capture");
    let mut record = Command::new(tailprof_bin())
        .args(["record", "--tier", "continuous", "--window", "2s", "-d", "20s", "-o"])
        .arg(&cap)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start tailprof record");
    std::thread::sleep(Duration::from_secs(7));
    let started = unix_now();
    let hot = Workload::start(&build_c_workload("hot_ratio", &[]), &["120"]);
    let sleeper = Workload::start(&build_c_workload("sleeper", &[]), &["120"]);
    assert!(record.wait().expect("wait for record").success(), "tailprof record failed");
    drop((hot, sleeper));

    let served = Served::start(&["serve", cap.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let segments = served.get("/api/v1/segments").json();
    let spans: Vec<(f64, f64)> = segments
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| (s["start_unix_ns"].as_u64().unwrap() as f64 / 1e9, s["end_unix_ns"].as_u64().unwrap() as f64 / 1e9))
        .collect();
    let (baseline_from, baseline_to) = spans[0];
    let with_workload: Vec<&(f64, f64)> = spans.iter().filter(|(a, _)| *a > started).collect();
    assert!(with_workload.len() >= 3, "windows after the workload started: {spans:?}");
    let range = Range {
        from: with_workload[0].0 + 0.01,
        to: with_workload[with_workload.len() - 1].1 - 0.01,
        baseline_from: baseline_from + 0.01,
        baseline_to: baseline_to - 0.01,
    };
    let out = repo().join("target/e2e/viewer-serve");
    let pid = served.child.id();
    run_viewer_mjs(&out, &served.addr, pid, "serve", &range);
    pprof_reads_the_export(&out);
    drop(served);
}

/// The range the script checks and the diff's baseline, Unix seconds.
struct Range {
    from: f64,
    to: f64,
    baseline_from: f64,
    baseline_to: f64,
}

/// Run tests/web/viewer.mjs against the server at `addr` (whose process
/// `pid` the script stops at the end, to see the page say so) and insist
/// that every check passed.
fn run_viewer_mjs(out: &std::path::Path, addr: &str, pid: u32, mode: &str, r: &Range) {
    let web_tests = repo().join("tests/web");
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let run = Command::new("node")
        .current_dir(&web_tests)
        .arg("viewer.mjs")
        .args(["--url", &format!("http://{addr}")])
        .arg("--out")
        .arg(out)
        .args(["--agent-pid", &pid.to_string()])
        .arg("--chromium")
        .arg(CHROMIUM)
        .args(["--mode", mode, "--timeout", "240"])
        .args(["--from", &format!("{:.3}", r.from), "--to", &format!("{:.3}", r.to)])
        .args([
            "--baseline-from",
            &format!("{:.3}", r.baseline_from),
            "--baseline-to",
            &format!("{:.3}", r.baseline_to),
        ])
        .output()
        .expect("node must be installed (cargo xtask setup installs it)");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let result: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("viewer.mjs printed no JSON ({e}); stdout: {stdout}\nstderr: {stderr}"));
    let checks = result["checks"].as_array().expect("checks");
    for c in checks {
        println!("{} {}: {}", if c["ok"] == true { "ok  " } else { "FAIL" }, c["name"], c["detail"]);
    }
    println!("perf: {}", result["perf"]);
    println!("screenshots: {}", result["screenshots"].as_array().map_or(0, Vec::len));
    let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] != true).collect();
    assert!(failed.is_empty(), "{} of {} checks failed; stderr: {stderr}", failed.len(), checks.len());
    assert!(run.status.success(), "viewer.mjs exited {}: {stderr}", run.status);
    assert!(checks.len() >= 12, "only {} checks ran", checks.len());
}

/// The pprof export, read by the real Go pprof tool.
fn pprof_reads_the_export(out: &std::path::Path) {
    let pprof = repo().join("target/tools/pprof");
    let export = out.join("export.pb.gz");
    let top = Command::new(&pprof).args(["-top", "-nodecount=20"]).arg(&export).output().expect("run pprof");
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "pprof could not read the export: {}", String::from_utf8_lossy(&top.stderr));
    assert!(text.contains("tp_hot_two_thirds"), "pprof -top of the export: {text}");
}
