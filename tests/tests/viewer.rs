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

#[test]
fn the_viewer_in_chromium_shows_what_the_api_answers() {
    require_root();
    let web_tests = repo().join("tests/web");
    assert!(
        web_tests.join("node_modules/playwright-core").exists(),
        "tests/web/node_modules is missing: `cargo xtask setup` installs playwright-core there"
    );
    let chromium = PathBuf::from("/usr/bin/chromium");
    assert!(chromium.exists(), "Chromium is missing: `cargo xtask setup` installs Debian's chromium");
    let pprof = repo().join("target/tools/pprof");
    assert!(pprof.exists(), "the Go pprof tool is missing: `cargo xtask setup` builds it into target/tools/pprof");

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
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let run = Command::new("node")
        .current_dir(&web_tests)
        .arg("viewer.mjs")
        .args(["--url", &format!("http://{}", agent.addr)])
        .arg("--out")
        .arg(&out)
        .args(["--agent-pid", &agent.child.id().to_string()])
        .arg("--chromium")
        .arg(&chromium)
        .args(["--mode", "agent", "--timeout", "240"])
        .args(["--from", &format!("{from:.3}"), "--to", &format!("{to:.3}")])
        .args(["--baseline-from", &format!("{baseline_from:.3}"), "--baseline-to", &format!("{baseline_to:.3}")])
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

    // The pprof export, read by the real Go pprof tool.
    let export = out.join("export.pb.gz");
    let top = Command::new(&pprof).args(["-top", "-nodecount=20"]).arg(&export).output().expect("run pprof");
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "pprof could not read the export: {}", String::from_utf8_lossy(&top.stderr));
    assert!(text.contains("tp_hot_two_thirds"), "pprof -top of the export: {text}");
    // The script stopped the agent to see the page say so.
    let _ = agent.child.wait();
    drop((hot, sleeper));
}
