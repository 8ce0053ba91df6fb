//! Exact on/off-CPU times from the scheduler hooks against the kernel's own
//! per-thread schedstat (run time, run-queue wait), over the same window.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use tailprof_e2e::*;

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// (run ns, wait ns) from /proc/PID/task/TID/schedstat.
fn schedstat(pid: u32, tid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

/// Linear interpolation of polled (time, value) points at `at`.
fn at_time(points: &[(u64, (u64, u64))], at: u64) -> (f64, f64) {
    let i = points.partition_point(|(t, _)| *t <= at).clamp(1, points.len() - 1);
    let ((t0, (r0, w0)), (t1, (r1, w1))) = (points[i - 1], points[i]);
    let f = (at as f64 - t0 as f64) / (t1 as f64 - t0 as f64).max(1.0);
    (r0 as f64 + f * (r1 as f64 - r0 as f64), w0 as f64 + f * (w1 as f64 - w0 as f64))
}

#[test]
fn thread_times_match_schedstat() {
    require_root();
    let bin = build_c_workload("thread_states", &[]);
    let w = Workload::start(&bin, &["12"]);
    let names = ["spin", "sleep", "pin-a", "pin-b", "duty"];
    let tids: Vec<(String, u32)> = names.iter().map(|n| (n.to_string(), w.tid(n))).collect();

    // Poll schedstat every 5 ms, stamped with CLOCK_MONOTONIC (the clock of the window).
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (stop, tids, pid) = (stop.clone(), tids.clone(), w.pid);
        std::thread::spawn(move || {
            let mut points: HashMap<u32, Vec<(u64, (u64, u64))>> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                for (_, tid) in &tids {
                    let t = monotonic_ns();
                    if let Some(v) = schedstat(pid, *tid) {
                        points.entry(*tid).or_default().push((t, v));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            points
        })
    };
    let dir = tempfile::tempdir().unwrap();
    record_ok(dir.path(), &["--pid", &w.pid.to_string(), "-d", "4s"]);
    stop.store(true, Ordering::Relaxed);
    let points = poller.join().unwrap();

    let summary = summary(dir.path());
    let (start, end) = (summary["window_start_ns"].as_u64().unwrap(), summary["window_end_ns"].as_u64().unwrap());
    let window = (end - start) as f64;
    assert!(window > 3.5e9, "window {window} ns for a 4 s capture");
    assert_eq!(summary["dropped_events"].as_u64(), Some(0));
    let tolerance = 0.03 * window;
    let mut shares = HashMap::new();
    for (name, tid) in &tids {
        let t = thread_entry(&summary, *tid).unwrap_or_else(|| panic!("thread {name} missing"));
        let pts = &points[tid];
        let (r0, w0) = at_time(pts, start);
        let (r1, w1) = at_time(pts, end);
        let (run, wait) = (r1 - r0, w1 - w0);
        let on = t["on_cpu_ns"].as_u64().unwrap() as f64;
        let off = &t["off_cpu_ns"];
        let runnable = off["runnable"].as_u64().unwrap() as f64;
        let sleeping = off["sleeping"].as_u64().unwrap() as f64;
        println!(
            "{name:>6}: on {:.3}s (schedstat {:.3}s), runnable {:.3}s (schedstat {:.3}s), sleeping {:.3}s",
            on / 1e9,
            run / 1e9,
            runnable / 1e9,
            wait / 1e9,
            sleeping / 1e9
        );
        assert!((on - run).abs() <= tolerance, "{name}: on_cpu_ns {on} vs schedstat run {run}");
        assert!((runnable - wait).abs() <= tolerance, "{name}: runnable {runnable} vs schedstat wait {wait}");
        let total =
            on + runnable + sleeping + off["disk"].as_u64().unwrap() as f64 + off["other"].as_u64().unwrap() as f64;
        assert!((total - window).abs() <= tolerance, "{name}: states add up to {total}, window {window}");
        shares.insert(name.clone(), (on / window, runnable / window, sleeping / window));
    }
    // Known behaviour, independently of schedstat. Four threads want CPU on
    // a 2-CPU host, so a spinner is on CPU or runnable, never asleep.
    assert!(shares["spin"].0 + shares["spin"].1 > 0.97, "spinner on CPU or runnable {:?}", shares["spin"]);
    assert!(shares["sleep"].2 > 0.97, "sleeper asleep {:.2}", shares["sleep"].2);
    for pin in ["pin-a", "pin-b"] {
        assert!(
            (0.35..0.65).contains(&shares[pin].1),
            "{pin} runnable share {:.2}, expected about half",
            shares[pin].1
        );
    }
    // Sleeps 7 ms per cycle of at least 10 ms.
    assert!((0.4..0.72).contains(&shares["duty"].2), "duty asleep {:.2}, expected at most 0.7", shares["duty"].2);
}
