//! `tailprof record` against a workload of known behaviour, loading the
//! real eBPF programs.

use std::{io::Read, time::Duration};

use prost::Message;
use tailprof::pprof_proto;
use tailprof_e2e::*;

const FREQ: u64 = 499;

/// Samples of the folded lines of `comm` whose stack contains `frame`.
fn samples_with(folded: &[(String, u64)], comm: &str, frame: &str) -> u64 {
    folded
        .iter()
        .filter(|(s, _)| s.starts_with(&format!("{comm};")) && s.split(';').any(|f| f == frame))
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn finds_known_functions_in_their_ratio_for_the_right_thread() {
    require_root();
    let bin = build_c_workload("hot_ratio", &[]);
    let w = Workload::start(&bin, &["10"]);
    let tid = w.tid("ratio");
    let dir = tempfile::tempdir().unwrap();
    let pid = w.pid.to_string();
    record_ok(dir.path(), &["--pid", &pid, "-F", &FREQ.to_string(), "-d", "4s"]);

    let summary = summary(dir.path());
    let thread = thread_entry(&summary, tid).expect("the spinning thread is in summary.json");
    assert_eq!(thread["pid"].as_u64(), Some(w.pid as u64));
    assert_eq!(thread["comm"].as_str(), Some("tp-ratio"));
    // The thread spins all the time: about 4 s x 499 Hz samples (±15%).
    let on_cpu = thread["on_cpu_samples"].as_u64().unwrap();
    let expected = 4 * FREQ;
    assert!(
        on_cpu as f64 > expected as f64 * 0.85 && (on_cpu as f64) < expected as f64 * 1.15,
        "{on_cpu} samples, expected about {expected}"
    );
    // --pid selects this process only.
    for t in summary["threads"].as_array().unwrap() {
        assert_eq!(t["pid"].as_u64(), Some(w.pid as u64), "a thread of another process was sampled: {t}");
    }

    let folded = folded(dir.path());
    let two = samples_with(&folded, "tp-ratio", "tp_hot_two_thirds");
    let one = samples_with(&folded, "tp-ratio", "tp_hot_one_third");
    assert!(one > 0, "tp_hot_one_third was never seen");
    let ratio = two as f64 / one as f64;
    println!(
        "tp_hot_two_thirds : tp_hot_one_third = {ratio:.3} ({two}:{one}), {on_cpu} samples of {expected} expected"
    );
    assert!((2.0 * 0.85..=2.0 * 1.15).contains(&ratio), "ratio {ratio:.2} ({two}:{one}), expected 2 ±15%");
    assert!((two + one) as f64 >= on_cpu as f64 * 0.9, "hot functions cover {} of {on_cpu} samples", two + one);
    // Frame-pointer unwinding reaches the thread's entry function.
    let through_worker = samples_with(&folded, "tp-ratio", "tp_worker");
    assert!(through_worker as f64 >= (two + one) as f64 * 0.9, "{through_worker} of {} reach tp_worker", two + one);

    // pprof decodes and agrees with the folded total and summary.
    let folded_total: u64 = folded.iter().map(|(_, n)| n).sum();
    assert_eq!(summary["samples"].as_u64(), Some(folded_total));
    let mut raw = Vec::new();
    let gz = std::fs::read(dir.path().join("profile.pb.gz")).unwrap();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut raw).expect("profile.pb.gz is gzip");
    let profile = pprof_proto::Profile::decode(&raw[..]).expect("profile.pb.gz is a pprof Profile");
    let st = |i: i64| profile.string_table[i as usize].as_str();
    assert_eq!(st(0), "");
    let types: Vec<(&str, &str)> = profile.sample_type.iter().map(|v| (st(v.r#type), st(v.unit))).collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    let pprof_total: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(pprof_total as u64, folded_total);
    assert!(profile.function.iter().any(|f| st(f.name) == "tp_hot_two_thirds"));
    // Every location names an existing mapping, or none (0) when its module is unknown.
    for loc in &profile.location {
        assert!(
            loc.mapping_id == 0 || profile.mapping.iter().any(|m| m.id == loc.mapping_id),
            "location {} names a missing mapping",
            loc.id
        );
        assert!(profile.function.iter().any(|f| f.id == loc.line[0].function_id));
    }

    // The SVG is well-formed XML and names the hot function.
    let svg = std::fs::read_to_string(dir.path().join("flamegraph.svg")).unwrap();
    let opts = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    roxmltree::Document::parse_with_options(&svg, opts).expect("flamegraph.svg is valid XML");
    assert!(svg.contains("tp_hot_two_thirds"));
}

#[test]
fn host_wide_capture_symbolizes_a_process_that_exited_during_it() {
    require_root();
    let bin = build_c_workload("hot_ratio", &[]);
    let dir = tempfile::tempdir().unwrap();
    // The 1 s workload starts only once tailprof has attached: with the
    // pipeline's info log on, it says `capturing` on stderr right after
    // loading and attaching its programs.
    let mut record = std::process::Command::new(tailprof_bin())
        .args(["record", "--log", "tailprof::pipeline=info", "-o"])
        .arg(dir.path())
        .args(["-F", &FREQ.to_string(), "-d", "3s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(record.stderr.take().unwrap());
    let mut log = String::new();
    loop {
        let before = log.len();
        if std::io::BufRead::read_line(&mut stderr, &mut log).unwrap() == 0 {
            panic!("tailprof record ended before it was capturing: {}\n{log}", record.wait().unwrap());
        }
        if log[before..].contains("capturing") {
            break;
        }
    }
    let rest = std::thread::spawn(move || {
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let mut w = Workload::start(&bin, &["1"]);
    let status = record.wait().unwrap();
    let log = rest.join().unwrap();
    assert!(status.success(), "tailprof record failed: {status}\n{log}");
    assert!(w.child.try_wait().unwrap().is_some(), "the workload should have exited during the capture");

    let folded = folded(dir.path());
    let named =
        samples_with(&folded, "tp-ratio", "tp_hot_two_thirds") + samples_with(&folded, "tp-ratio", "tp_hot_one_third");
    let all: u64 = folded.iter().filter(|(s, _)| s.starts_with("tp-ratio;")).map(|(_, n)| n).sum();
    assert!(all > FREQ / 2, "only {all} samples of the workload");
    assert!(named as f64 >= all as f64 * 0.9, "{named} of {all} samples name the hot functions after exit");
    // Host-wide: other processes are there too, and the idle task is not.
    let summary = summary(dir.path());
    let threads = summary["threads"].as_array().unwrap();
    assert!(threads.iter().all(|t| t["tid"].as_u64() != Some(0)));
}

#[test]
fn comm_filter_keeps_only_that_thread_name() {
    require_root();
    let bin = build_c_workload("hot_ratio", &[]);
    let w = Workload::start(&bin, &["6"]);
    let dir = tempfile::tempdir().unwrap();
    record_ok(dir.path(), &["--comm", "tp-ratio", "-d", "2s"]);
    let summary = summary(dir.path());
    let threads = summary["threads"].as_array().unwrap();
    assert!(!threads.is_empty());
    for t in threads {
        assert_eq!(t["comm"].as_str(), Some("tp-ratio"), "unexpected thread {t}");
        assert_eq!(t["tid"].as_u64(), Some(w.tid("ratio") as u64));
    }
}

#[test]
fn interrupt_ends_early_and_still_writes_everything() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = std::process::Command::new(tailprof_bin())
        .args(["record", "-d", "60s", "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "interrupted record exited with {status}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?} to finish after SIGINT", started.elapsed());
    for f in ["flamegraph.svg", "stacks.folded", "profile.pb.gz", "summary.json"] {
        assert!(out.join(f).exists(), "{f} missing after interrupt");
    }
    assert!(partial_files(&out).is_empty(), "left unfinished files: {:?}", partial_files(&out));
    let duration = summary(&out)["duration_ns"].as_u64().unwrap();
    assert!((1_000_000_000..10_000_000_000).contains(&duration), "duration_ns {duration} after a 2 s run");
}

#[test]
fn progress_line_only_on_a_terminal() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tty");
    // `script` gives tailprof a real pseudo-terminal as stderr.
    let cmd = format!("{} record -d 2s -o {}", tailprof_bin().display(), out.display());
    let tty =
        std::process::Command::new("script").args(["-qfec", &cmd, "/dev/null"]).output().expect("script (util-linux)");
    assert!(tty.status.success(), "{}", String::from_utf8_lossy(&tty.stderr));
    let screen = String::from_utf8_lossy(&tty.stdout);
    assert!(screen.contains("s left") && screen.contains("samples"), "no progress line on a terminal: {screen}");

    let piped = record_ok(&dir.path().join("piped"), &["-d", "1s"]);
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(!stderr.contains("s left"), "progress written to a pipe: {stderr}");
}
