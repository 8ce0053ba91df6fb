//! Fleet export: the agent pushes to a Pyroscope stand-in (no Pyroscope
//! server can be installed here). tests/receiver/receiver.py decodes every
//! envelope with Python's protobuf (classes compiled from the protos by
//! protoc) and saves each pprof body; the real Go pprof tool reads them.
//! The oracle for the totals is the agent's own API over the same windows.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tailprof_e2e::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pprof_tool() -> PathBuf {
    let p = repo().join("target/tools/pprof");
    assert!(p.exists(), "the Go pprof tool is missing: `cargo xtask setup` builds it into target/tools/pprof");
    p
}

/// The receiver as its own process (Debian's Python, which has python3-protobuf).
struct Receiver {
    child: Child,
    addr: String,
    out: tempfile::TempDir,
}

/// The published OTLP protos, as the opentelemetry-proto crate ships them
/// (a dependency of this crate for that reason).
fn otlp_protos() -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(repo().join("tests/Cargo.toml"))
        .output()
        .expect("cargo metadata");
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON");
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "opentelemetry-proto")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("opentelemetry-proto among the packages");
    let dir = Path::new(manifest).parent().unwrap().join("src/proto/opentelemetry-proto");
    assert!(dir.join("opentelemetry/proto/profiles/v1development/profiles.proto").exists(), "{}", dir.display());
    dir
}

impl Receiver {
    fn start() -> Self {
        let out = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new("/usr/bin/python3")
            .arg(repo().join("tests/receiver/receiver.py"))
            .args(["--port", &port.to_string()])
            .arg("--out")
            .arg(out.path())
            .arg("--otlp-protos")
            .arg(otlp_protos())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/usr/bin/python3 (cargo xtask setup installs python3-protobuf and protoc)");
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        assert!(line.starts_with("listening"), "the receiver did not start: {line:?}");
        Self { child, addr: format!("127.0.0.1:{port}"), out }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, mode: &str, retry_after: Option<u64>) {
        let body = serde_json::json!({"mode": mode, "retry_after": retry_after}).to_string();
        let r = http(&self.addr, "POST", "/control", &[], body.as_bytes()).unwrap();
        assert_eq!(r.status, 200);
    }

    fn requests(&self) -> Vec<Value> {
        http(&self.addr, "GET", "/requests", &[], b"").unwrap().json().as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.out;
    }
}

/// Wait until `f` is true of the agent's push status, or panic after `secs`.
fn wait_push(agent: &Agent, secs: u64, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let status = agent.get("/api/v1/status").unwrap().json();
        let push = status["push"][0].clone();
        if f(&push) {
            return push;
        }
        assert!(Instant::now() < deadline, "{what}: push status {push}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `pprof -raw` of a profile: the sum of each sample's first value, and the
/// function names.
fn pprof_raw(file: &Path, extra: &[&str]) -> (i64, Vec<String>) {
    let out = Command::new(pprof_tool()).arg("-raw").args(extra).arg(file).output().expect("run pprof");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pprof -raw {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    let mut total = 0;
    let mut section = "";
    let mut names = Vec::new();
    for line in text.lines() {
        match line.trim_end() {
            "Samples:" => section = "samples",
            "Locations" => section = "locations",
            "Mappings" => section = "mappings",
            _ => {}
        }
        let t = line.trim();
        if section == "samples" {
            if let Some((values, _)) = t.split_once(':') {
                if let Some(Ok(v)) = values.split_whitespace().next().map(str::parse::<i64>) {
                    total += v;
                }
            }
        } else if section == "locations" {
            // `   1: 0x1234 M=1 name file:line s=0` and `             name file:line s=0` (inlined)
            let rest = t.split_once(": ").map_or(t, |(_, r)| r);
            let mut words = rest.split_whitespace().skip_while(|w| w.starts_with("0x") || w.starts_with("M="));
            if let Some(name) = words.next() {
                names.push(name.to_owned());
            }
        }
    }
    (total, names)
}

/// The segment start in a raw sample's id (`HOST-START-SERVICE-KIND-N`).
fn start_of(id: &str) -> u64 {
    id.split('-').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("id {id}"))
}

fn folded_total(text: &str) -> i64 {
    text.lines().filter_map(|l| l.rsplit_once(' ')).map(|(_, v)| v.parse::<i64>().unwrap_or(0)).sum()
}

#[test]
fn pyroscope_pushes_read_right_in_pprof_and_match_the_agent() {
    require_root();
    let pprof = pprof_tool();
    // The workload runs in a cgroup named as docker names a container's.
    let mount = cgroup2_mount().expect("a cgroup v2 hierarchy");
    let id: String = format!("{:064x}", std::process::id() as u128 * 0x9e37_79b9_7f4a_7c15);
    let id = id[id.len() - 64..].to_owned();
    let parent = mount.join(format!("tailprof-e2e-push-{}", std::process::id()));
    std::fs::create_dir(&parent).unwrap();
    let dir = parent.join(format!("docker-{id}.scope"));
    std::fs::create_dir(&dir).unwrap();
    let w = Workload::start(&build_c_workload("hot_ratio", &[]), &["120"]);
    std::fs::write(dir.join("cgroup.procs"), w.pid.to_string()).expect("move the workload into the container");
    let pid = w.pid;
    let cg = TestCgroup { dir, workload: Some(w) };
    let _sleeper = Workload::start(&build_c_workload("sleeper", &[]), &["120"]);

    let rx = Receiver::start();
    let data = tempfile::tempdir().unwrap();
    let auth = data.path().join("auth");
    std::fs::write(&auth, "alice:s3cret\n").unwrap();
    let agent = Agent::start(
        data.path(),
        &[
            "--window",
            "2s",
            "--push-pyroscope",
            &rx.url(),
            "--push-interval",
            "1s",
            "--push-basic-auth-file",
            auth.to_str().unwrap(),
            "--push-tenant",
            "team-a",
        ],
    );
    wait_push(&agent, 60, "four windows pushed", |p| p["segments_pushed"].as_u64() >= Some(4));
    let mut c = Checks::default();
    let requests = rx.requests();
    // The envelope: Connect, binary protobuf, the credentials, the tenant.
    for r in &requests {
        c.check(
            r["answered"] == 200
                && r["content_type"] == "application/proto"
                && r["connect_protocol_version"] == "1"
                && r["authorization"] == "Basic YWxpY2U6czNjcmV0"
                && r["tenant"] == "team-a"
                && r["problems"].as_array().is_some_and(Vec::is_empty),
            || format!("request: {}", serde_json::json!({"answered": r["answered"], "type": r["content_type"], "auth": r["authorization"], "tenant": r["tenant"], "problems": r["problems"]})),
        );
    }
    // Series: named by kind, by service, never unknown; the workload's own.
    let mut files: BTreeMap<&str, Vec<(u64, PathBuf)>> = BTreeMap::new();
    for s in requests.iter().flat_map(|r| r["series"].as_array().cloned().unwrap_or_default()) {
        let l = &s["labels"];
        let name = l["__name__"].as_str().unwrap_or("");
        let service = l["service_name"].as_str().unwrap_or("");
        c.check(["process_cpu", "off_cpu", "wall"].contains(&name), || format!("series name {name}"));
        c.check(!service.is_empty() && service != "unknown_service" && l["host"].is_string(), || {
            format!("series labels {l}")
        });
        if service == "hot_ratio" {
            c.check(l["container_id"] == id.as_str(), || format!("the container is a label: {l}"));
            let kind = match name {
                "process_cpu" => "cpu",
                "off_cpu" => "offcpu",
                _ => "wall",
            };
            for smp in s["samples"].as_array().unwrap() {
                let start = start_of(smp["id"].as_str().unwrap());
                files.entry(kind).or_default().push((start, PathBuf::from(smp["file"].as_str().unwrap())));
            }
        }
    }
    // Totals: the pushed profiles of the workload, read by pprof, equal the
    // agent's own totals for its pid over the same windows, to the sample
    // and to the nanosecond.
    for kind in ["cpu", "offcpu", "wall"] {
        let pushed = files.get(kind).cloned().unwrap_or_default();
        c.check(!pushed.is_empty(), || format!("no {kind} profile of the workload was pushed"));
        if pushed.is_empty() {
            continue;
        }
        let starts: BTreeSet<u64> = pushed.iter().map(|(s, _)| *s).collect();
        let mut total = 0;
        let mut suffixed = Vec::new();
        for (_, f) in &pushed {
            let (t, names) = pprof_raw(f, &[]);
            total += t;
            suffixed.extend(
                names.into_iter().filter(|n| n.ends_with("_[k]") || n.ends_with("_[i]") || n.ends_with("_[j]")),
            );
        }
        let mut api = 0;
        for s in &starts {
            // A microsecond into the window: the one window that overlaps.
            let at = |ns: u64| format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
            let q = format!(
                "/api/v1/profile?view={kind}&format=folded&pid={pid}&from={}&to={}",
                at(s + 1_000),
                at(s + 2_000)
            );
            api += folded_total(&agent.get(&q).unwrap().text());
        }
        println!("{kind}: pushed {total} over {} windows, the agent's API {api}", starts.len());
        c.check(total == api && total > 0, || format!("{kind}: pushed {total}, the API says {api}"));
        c.check(suffixed.is_empty(), || format!("{kind}: names with a bracketed suffix: {suffixed:?}"));
    }
    // pprof -top reads them; -tagfocus on the container keeps its samples only.
    let (_, some) = files["cpu"][0].clone();
    let top = Command::new(&pprof).args(["-top", "-nodecount=5"]).arg(&some).output().unwrap();
    c.check(top.status.success() && String::from_utf8_lossy(&top.stdout).contains("tp_hot"), || {
        format!("pprof -top: {}", String::from_utf8_lossy(&top.stdout))
    });
    let whole = data.path().join("whole.pb.gz");
    let range = "from=-30s&to=now";
    std::fs::write(&whole, agent.get(&format!("/api/v1/profile?{range}&format=pprof")).unwrap().body).unwrap();
    let (all, _) = pprof_raw(&whole, &[]);
    let (focused, _) = pprof_raw(&whole, &[&format!("-tagfocus=container={id}")]);
    let (theirs, _) = pprof_raw(&whole, &[&format!("-tagfocus=pid={pid}")]);
    c.check(focused > 0 && focused == theirs && focused < all, || {
        format!("tagfocus container: {focused}, the pid's {theirs}, all {all}")
    });
    // Every agent metric the shipped Grafana dashboard asks for exists.
    let metrics = agent.get("/metrics").unwrap().text();
    let dashboard = std::fs::read_to_string(repo().join("dist/tailprof-grafana-dashboard.json")).unwrap();
    let dash: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    let names: BTreeSet<String> = exprs
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map(str::to_owned).collect::<Vec<_>>()
        })
        .filter(|w| w.starts_with("tailprof_"))
        .collect();
    c.check(names.len() >= 10, || format!("dashboard metrics: {names:?}"));
    // A labelled family shows once it has a label set (nothing given up
    // yet: no `tailprof_push_given_up_total`); those must be documented.
    let documented = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    for m in &names {
        let base = m.strip_suffix("_total").unwrap_or(m);
        let present = metrics.lines().any(|l| {
            l.starts_with(&format!("{m}{{"))
                || l.starts_with(&format!("{m} "))
                || l.starts_with(&format!("# TYPE {base} "))
        });
        let listed = documented.contains(&format!("`{m}{{")) || documented.contains(&format!("`{m}`"));
        c.check(present || listed, || {
            format!("the dashboard asks for {m}, which the agent neither exports nor documents")
        });
    }
    drop(agent);
    drop(cg);
    let _ = std::fs::remove_dir(&parent);
    c.finish();
}

#[test]
fn pushes_catch_up_after_an_outage_and_a_restart_without_loss_or_repeat() {
    require_root();
    let rx = Receiver::start();
    // Down from the start, asking to come back in a second.
    rx.set("down", Some(1));
    let data = tempfile::tempdir().unwrap();
    let args = ["--window", "1s", "--push-pyroscope", &rx.url(), "--push-interval", "1s"];
    let agent = Agent::start(data.path(), &args);
    wait_push(&agent, 30, "retries while the receiver is down", |p| p["retries"].as_u64() >= Some(3));
    std::thread::sleep(Duration::from_secs(3));
    rx.set("up", None);
    // Caught up: the watermark reaches the last stored window.
    let caught = |a: &Agent| {
        let end = a
            .get("/api/v1/segments")
            .unwrap()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["end_unix_ns"].as_u64().unwrap())
            .max()
            .unwrap();
        wait_push(a, 30, "caught up", |p| p["watermark_unix_ns"].as_u64() >= Some(end))
    };
    let first = caught(&agent);
    assert!(first["given_up"].as_object().is_some_and(|g| g.is_empty()), "nothing given up: {first}");
    assert!(agent.stop().success());
    // A restart resumes from the watermark kept on disk.
    let agent = Agent::start(data.path(), &args);
    std::thread::sleep(Duration::from_secs(3));
    let second = caught(&agent);
    let watermark = second["watermark_unix_ns"].as_u64().unwrap();
    let segments = agent.get("/api/v1/segments").unwrap().json();
    let want: BTreeSet<u64> = segments
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["end_unix_ns"].as_u64().unwrap() <= watermark)
        .map(|s| s["start_unix_ns"].as_u64().unwrap())
        .collect();
    // Every window pushed once per series, none missing.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut starts = BTreeSet::new();
    for r in rx.requests().iter().filter(|r| r["answered"] == 200) {
        for s in r["series"].as_array().unwrap() {
            for smp in s["samples"].as_array().unwrap() {
                let id = smp["id"].as_str().unwrap().to_owned();
                starts.insert(start_of(&id));
                *seen.entry(id).or_default() += 1;
            }
        }
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "pushed more than once: {repeated:?}");
    let missing: Vec<_> = want.difference(&starts).collect();
    assert!(missing.is_empty(), "windows never pushed: {missing:?} of {}", want.len());
    // A backend that rejects (a 4xx): given up, counted, in /metrics too.
    rx.set("reject", None);
    wait_push(&agent, 30, "rejected windows counted", |p| p["given_up"]["rejected"].as_u64() >= Some(1));
    let metrics = agent.get("/metrics").unwrap().text();
    assert!(
        metrics.lines().any(|l| l.starts_with("tailprof_push_given_up_total{") && l.contains("reason=\"rejected\"")),
        "{metrics}"
    );
    assert!(metrics.contains("tailprof_push_segments_total{"), "{metrics}");
}

/// The pprof files `record` writes, in both tiers: the real Go pprof tool
/// reads each, its totals are those of the folded files beside it (to the
/// sample, to the nanosecond), and no function name carries inferno's
/// `_[k]`/`_[i]`/`_[j]` suffix (the folded files keep theirs).
#[test]
fn record_writes_cpu_off_cpu_and_wall_pprof_that_pprof_reads() {
    require_root();
    let w = Workload::start(&build_c_workload("hot_ratio", &[]), &["30"]);
    let pid = w.pid.to_string();
    for tier in ["deep", "continuous"] {
        let dir = tempfile::tempdir().unwrap();
        record_ok(dir.path(), &["--pid", &pid, "--tier", tier, "-d", "2s"]);
        for (pb, folded) in
            [("profile.pb.gz", "stacks.folded"), ("offcpu.pb.gz", "offcpu.folded"), ("wall.pb.gz", "wallclock.folded")]
        {
            let (total, names) = pprof_raw(&dir.path().join(pb), &[]);
            let want: i64 = folded_file(dir.path(), folded).iter().map(|(_, v)| *v as i64).sum();
            println!("{tier} {pb}: pprof {total}, {folded} {want}");
            assert_eq!(total, want, "{tier}: {pb} against {folded}");
            assert!(total > 0, "{tier}: {pb} is empty");
            let suffixed: Vec<&String> = names.iter().filter(|n| n.ends_with("_[k]") || n.ends_with("_[i]")).collect();
            assert!(suffixed.is_empty(), "{tier} {pb}: {suffixed:?}");
            let top =
                Command::new(pprof_tool()).args(["-top", "-nodecount=3"]).arg(dir.path().join(pb)).output().unwrap();
            assert!(top.status.success(), "pprof -top {pb}: {}", String::from_utf8_lossy(&top.stderr));
        }
        let folded = std::fs::read_to_string(dir.path().join("wallclock.folded")).unwrap();
        assert!(folded.contains("_[k]"), "the folded file keeps its kernel suffixes");
    }
}

/// OTLP profiles: the receiver decodes every request with Python's protobuf
/// compiled from the published protos, checks the dictionary's rules and
/// that on-CPU sample timestamps (one value each) lie in their profile's
/// range, and sums each profile; the workload's totals per window equal the
/// agent's.
#[test]
fn otlp_pushes_decode_with_the_published_protos_and_match_the_agent() {
    require_root();
    let w = Workload::start(&build_c_workload("hot_ratio", &[]), &["60"]);
    let pid = w.pid;
    let rx = Receiver::start();
    let data = tempfile::tempdir().unwrap();
    let token = data.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let agent = Agent::start(
        data.path(),
        &[
            "--window",
            "2s",
            "--push-otlp",
            &rx.url(),
            "--push-interval",
            "1s",
            "--push-bearer-token-file",
            token.to_str().unwrap(),
        ],
    );
    wait_push(&agent, 60, "three windows pushed", |p| p["segments_pushed"].as_u64() >= Some(3));
    let mut c = Checks::default();
    let mut per_window: BTreeMap<(u64, String), i64> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for r in rx.requests() {
        c.check(
            r["answered"] == 200
                && r["content_type"] == "application/x-protobuf"
                && r["content_encoding"] == "gzip"
                && r["authorization"] == "Bearer t0ken"
                && r["problems"].as_array().is_some_and(Vec::is_empty),
            || format!("request: {} {} {} {}", r["answered"], r["content_type"], r["authorization"], r["problems"]),
        );
        for res in r["resources"].as_array().cloned().unwrap_or_default() {
            let service = res["attributes"]["service.name"].as_str().unwrap_or("").to_owned();
            c.check(
                !service.is_empty()
                    && service != "unknown_service"
                    && res["attributes"]["host.name"].is_string()
                    && res["scope"] == "tailprof",
                || format!("resource {}", res["attributes"]),
            );
            for p in res["profiles"].as_array().unwrap() {
                let ty = p["type"].as_str().unwrap_or("").to_owned();
                c.check(["samples", "off_cpu", "wall"].contains(&ty.as_str()), || format!("sample type {ty}"));
                c.check(p["suffixed_names"].as_array().is_some_and(Vec::is_empty), || {
                    format!("names {}", p["suffixed_names"])
                });
                if service == "hot_ratio" {
                    // Every on-CPU sample carries its sample times.
                    if ty == "samples" {
                        c.check(p["timed_samples"] == p["samples"], || {
                            format!("{} of {} on-CPU samples carry timestamps", p["timed_samples"], p["samples"])
                        });
                        // A CPU-bound thread is sampled all through the window.
                        let (span, window) =
                            (p["stamp_span"].as_u64().unwrap_or(0), p["duration_nano"].as_u64().unwrap_or(0));
                        c.check(span * 10 >= window * 8, || {
                            format!("on-CPU sample times span {span} ns of a {window} ns window")
                        });
                    }
                    keys.extend(
                        p["attribute_keys"].as_array().unwrap().iter().filter_map(|k| k.as_str().map(str::to_owned)),
                    );
                    *per_window.entry((p["time_unix_nano"].as_u64().unwrap(), ty)).or_default() +=
                        p["total"].as_i64().unwrap();
                }
            }
        }
    }
    for k in ["thread.name", "thread.id", "process.pid", "process.executable.name", "tailprof.state"] {
        c.check(keys.contains(k), || format!("attribute {k} missing: {keys:?}"));
    }
    c.check(!per_window.is_empty(), || "no profile of the workload".into());
    let at = |ns: u64| format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
    for ((start, ty), total) in &per_window {
        let view = match ty.as_str() {
            "samples" => "cpu",
            "off_cpu" => "offcpu",
            _ => "wall",
        };
        let q = format!(
            "/api/v1/profile?view={view}&format=folded&pid={pid}&from={}&to={}",
            at(start + 1_000),
            at(start + 2_000)
        );
        let api = folded_total(&agent.get(&q).unwrap().text());
        c.check(*total == api, || format!("{ty} of the window at {start}: pushed {total}, the API says {api}"));
    }
    println!("{} (window, kind) totals of the workload equal the API's", per_window.len());
    c.finish();
    drop(w);
}

/// A backend down longer than `--push-replay`: the windows that aged past
/// it are given up as `too_old` and counted; delivery resumes after.
#[test]
fn windows_older_than_the_replay_window_are_given_up_and_counted() {
    require_root();
    let rx = Receiver::start();
    rx.set("down", Some(1));
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        data.path(),
        &["--window", "1s", "--push-pyroscope", &rx.url(), "--push-interval", "1s", "--push-replay", "3s"],
    );
    let gave_up =
        wait_push(&agent, 40, "windows given up as too old", |p| p["given_up"]["too_old"].as_u64() >= Some(2));
    rx.set("up", None);
    let delivered = wait_push(&agent, 30, "delivery resumes", |p| p["segments_pushed"].as_u64() >= Some(2));
    println!("given up: {}; then delivered {}", gave_up["given_up"], delivered["segments_pushed"]);
    let metrics = agent.get("/metrics").unwrap().text();
    assert!(
        metrics.lines().any(|l| l.starts_with("tailprof_push_given_up_total{") && l.contains("reason=\"too_old\"")),
        "{metrics}"
    );
}
