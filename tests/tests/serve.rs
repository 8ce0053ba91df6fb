//! `tailprof serve DIR` and `record --open`: the agent's API and viewer
//! over capture directories, checked against the files `record` wrote (the
//! oracle: a capture's own stacks.folded and summary.json).

use std::{collections::BTreeMap, path::Path};

use serde_json::Value;
use tailprof_e2e::*;

/// `stacks.folded`-like text as stack → value.
fn folded_map(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let (stack, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("folded line without a value: {l:?}"));
        *m.entry(stack.to_owned()).or_default() += v.parse::<u64>().unwrap_or_else(|_| panic!("bad value: {l:?}"));
    }
    m
}

fn file_map(dir: &Path, name: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for (s, v) in folded_file(dir, name) {
        *m.entry(s).or_default() += v;
    }
    m
}

/// The span of a capture as `from=…&to=…` (Unix seconds, a hair inside).
fn range_of(c: &Value) -> String {
    let from = c["started_unix_ns"].as_u64().unwrap();
    let to = c["ended_unix_ns"].as_u64().unwrap();
    format!("from={:.6}&to={:.6}", from as f64 / 1e9 + 1e-6, to as f64 / 1e9 - 1e-6)
}

#[test]
fn serve_answers_the_api_with_what_record_wrote() {
    require_root();
    let bin = build_c_workload("hot_ratio", &[]);
    let w = Workload::start(&bin, &["30"]);
    let pid = w.pid.to_string();
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    let b = root.path().join("b");
    // A windowed continuous capture (served window by window) and a deep one.
    record_ok(&a, &["--pid", &pid, "--tier", "continuous", "--window", "1s", "-d", "4s"]);
    record_ok(&b, &["--pid", &pid, "-d", "2s"]);
    // A damaged capture is skipped with its reason; a directory without one is ignored.
    std::fs::create_dir(root.path().join("bad")).unwrap();
    std::fs::write(root.path().join("bad/samples.jsonl.zst"), b"not zstd at all").unwrap();
    std::fs::create_dir(root.path().join("notes")).unwrap();
    std::fs::write(root.path().join("notes/readme.txt"), b"hello").unwrap();

    let s = Served::start(&["serve", root.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let mut c = Checks::default();
    let status = s.get("/api/v1/status").json();
    let windows = std::fs::read_dir(a.join("windows")).unwrap().count() as u64;
    c.check(status["mode"] == "serve" && status["captures"] == 2, || format!("status: {status}"));
    c.check(status["segments"].as_u64() == Some(windows + 1), || format!("{windows} windows of a + b; {status}"));
    let skipped = status["skipped"].as_array().cloned().unwrap_or_default();
    c.check(
        skipped.len() == 1
            && skipped[0]["path"].as_str().is_some_and(|p| p.ends_with("/bad"))
            && skipped[0]["reason"].as_str().is_some_and(|r| r.contains("samples.jsonl.zst")),
        || format!("the damaged capture is skipped with its reason: {skipped:?}"),
    );

    let list = s.get("/api/v1/captures").json();
    let captures = list["captures"].as_array().unwrap().clone();
    let ids: Vec<&str> = captures.iter().filter_map(|c| c["id"].as_str()).collect();
    c.check(list["read_only"] == true && ids == ["a", "b"], || format!("captures: {list}"));
    let ca = &captures[0];

    // The API's folded stacks over capture a equal the stacks.folded record
    // wrote (the merge of its windows), stack for stack.
    for (view, file) in [("cpu", "stacks.folded"), ("wall", "wallclock.folded"), ("offcpu", "offcpu.folded")] {
        let r = s.get(&format!("/api/v1/profile?{}&view={view}&format=folded", range_of(ca)));
        let api = folded_map(&r.text());
        let want = file_map(&a, file);
        let diff: Vec<_> = want.iter().filter(|(k, v)| api.get(*k) != Some(v)).take(3).collect();
        c.check(r.status == 200 && api.len() == want.len() && diff.is_empty(), || {
            format!("{view}: {} stacks served, {} in {file}; differing: {diff:?}", api.len(), want.len())
        });
    }
    // The JSON tree's total is the capture's samples; over everything, a's plus b's.
    let sa = summary(&a);
    let sb = summary(&b);
    let tree = s.get(&format!("/api/v1/profile?{}&max_nodes=100", range_of(ca))).json();
    c.check(tree["root"]["value"] == sa["samples"] && tree["windows"].as_u64() == Some(windows), || {
        format!("a: tree {} of {} windows, summary {}", tree["root"]["value"], tree["windows"], sa["samples"])
    });
    let all = s.get("/api/v1/profile?from=0&to=now&max_nodes=100").json();
    let both = sa["samples"].as_u64().unwrap() + sb["samples"].as_u64().unwrap();
    c.check(all["root"]["value"].as_u64() == Some(both), || format!("all: {} vs {both}", all["root"]["value"]));

    // The timeline has a step per window of a, and its exact CPU seconds
    // sum to the on-CPU time summary.json gives each thread.
    let tl = s.get(&format!("/api/v1/timeline?{}", range_of(ca))).json();
    let steps = tl["steps"].as_array().unwrap();
    let cpu: f64 = steps.iter().map(|s| s["cpu_s"].as_f64().unwrap()).sum();
    let want: f64 =
        sa["threads"].as_array().unwrap().iter().map(|t| t["on_cpu_ns"].as_u64().unwrap() as f64 / 1e9).sum();
    c.check(steps.len() as u64 == windows && (cpu - want).abs() < 1e-6, || {
        format!("{} steps for {windows} windows; cpu {cpu:.9} s vs summary {want:.9} s", steps.len())
    });

    // Files by name from the capture's own list, nothing else.
    let file = s.get("/api/v1/captures/a/files/stacks.folded");
    c.check(file.status == 200 && file.body == std::fs::read(a.join("stacks.folded")).unwrap(), || {
        format!("file: {}", file.status)
    });
    for bad in ["/api/v1/captures/a/files/..%2Fb%2Fstacks.folded", "/api/v1/captures/bad", "/api/v1/captures/a/files/x"]
    {
        let r = s.get(bad);
        c.check(r.status == 404 && r.json()["error"].is_string(), || format!("{bad}: {} {}", r.status, r.text()));
    }
    // The noise of a range is its newest capture's noise.json.
    let noise = s.get(&format!("/api/v1/noise?{}", range_of(&captures[1]))).json();
    c.check(noise["capture"] == "b" && noise["cpus"].is_array(), || format!("noise: {}", noise["capture"]));
    // What only an agent has: one sentence each.
    for (method, path, status) in [
        ("POST", "/api/v1/captures", 405),
        ("POST", "/api/v1/alerts/alertmanager", 405),
        ("GET", "/metrics", 404),
        ("GET", "/api/v1/config", 404),
    ] {
        let r = http(&s.addr, method, path, &[("Content-Type", "application/json")], b"{}").unwrap();
        let sentence = r.json()["error"].as_str().unwrap_or("").to_owned();
        c.check(r.status == status && sentence.contains("serve"), || {
            format!("{method} {path}: {} {sentence}", r.status)
        });
    }
    // The viewer is served.
    let page = s.get("/");
    c.check(page.status == 200 && page.text().contains("<html"), || format!("/: {}", page.status));
    let exit = s.stop();
    c.check(exit.success(), || format!("serve exited {exit} on Ctrl-C"));
    c.finish();
    drop(w);
}

#[test]
fn serve_refuses_what_it_cannot_serve_in_one_sentence() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_str().unwrap();
    let out = tailprof(&["serve", &format!("{dir}/missing")]);
    assert_clean_failure(&out, "no such directory");
    let out = tailprof(&["serve", dir]);
    assert_clean_failure(&out, "holds no capture that reads");
    std::fs::write(root.path().join("samples.jsonl.zst"), b"garbage").unwrap();
    let out = tailprof(&["serve", dir, "--listen", "127.0.0.1:0"]);
    assert_clean_failure(&out, "holds no capture that reads");
    let out = tailprof(&["serve", dir, "--listen", "0.0.0.0:0"]);
    assert_clean_failure(&out, "needs a token");
}

#[test]
fn serve_asks_for_its_token_and_record_open_serves_the_capture() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let cap = root.path().join("cap");
    let token = root.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    // record --open: the report, then the URL; Ctrl-C ends it cleanly.
    let s = Served::start(&[
        "record",
        "-d",
        "1s",
        "--tier",
        "continuous",
        "-o",
        cap.to_str().unwrap(),
        "--open",
        "--open-listen",
        "127.0.0.1:0",
    ]);
    let status = s.get("/api/v1/status").json();
    assert!(status["mode"] == "serve" && status["captures"] == 1, "{status}");
    assert!(s.printed.contains("wrote:"), "the report comes first: {}", s.printed);
    assert!(s.stop().success());

    // Behind a token, on any address.
    let s = Served::start(&[
        "serve",
        cap.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        token.to_str().unwrap(),
    ]);
    let port = s.addr.rsplit(':').next().unwrap().to_owned();
    let addr = format!("127.0.0.1:{port}");
    let without = http(&addr, "GET", "/api/v1/status", &[], b"").unwrap();
    let with = http(&addr, "GET", "/api/v1/status", &[("Authorization", "Bearer s3cret")], b"").unwrap();
    let page = http(&addr, "GET", "/", &[], b"").unwrap();
    assert_eq!(without.status, 401, "{}", without.text());
    assert_eq!(with.status, 200, "{}", with.text());
    assert_eq!(page.status, 200, "the viewer's assets hold no data");
    assert!(s.stop().success());
}
