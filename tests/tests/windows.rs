//! A capture cut into windows (`record --window 1s`), continuous tier at its
//! default settings, real kernel, against the kernel's own per-thread
//! accounting (/proc/PID/task/TID/schedstat polled every 2 ms, interpolated
//! at tailprof's window bounds):
//! - the windows are contiguous: each starts where the one before ended;
//! - per thread, the sum over the windows of exact on-CPU and runnable time
//!   is within 1 point of schedstat over the whole span; each window's is
//!   within 1 point of schedstat over that window;
//! - no thread's time in a window exceeds 100% of the window's span;
//! - the merged capture in the output directory conserves every window's
//!   totals exactly (samples, exact times, snapshots).
//!
//! The workload is the tier truth test's (workloads/tier_truth.c).

use std::time::Duration;

use serde_json::Value;
use tailprof_e2e::*;

const NAMES: [&str; 8] = ["mix21", "duty37", "pin-a", "pin-b", "fsync", "reader", "writer", "sleep"];
const STATES: [&str; 4] = ["runnable", "sleeping", "disk", "other"];

fn off(t: &Value, state: &str) -> u64 {
    t["off_cpu_ns"][state].as_u64().unwrap_or(0)
}

#[test]
fn one_second_windows_add_up_to_schedstat_and_to_their_merge() {
    require_root();
    let bin = build_c_workload("tier_truth", &[]);
    let disk = disk_backed_dir();
    let mut w = Workload::start(&bin, &["60", disk.to_str().expect("utf-8 path")]);
    let tids: Vec<(&'static str, u32)> = NAMES.iter().map(|n| (*n, w.tid(n))).collect();
    let poller = SchedstatPoller::start(w.pid, tids.iter().map(|(_, t)| *t).collect(), Duration::from_millis(2));
    let dir = tempfile::tempdir().unwrap();
    let pid = w.pid.to_string();
    record_ok(dir.path(), &["--tier", "continuous", "--pid", &pid, "-d", "6s", "--window", "1s"]);
    let polled = poller.finish();
    let _ = w.child.kill();

    let mut windows: Vec<Value> = Vec::new();
    let mut entries: Vec<_> =
        std::fs::read_dir(dir.path().join("windows")).expect("windows/ written").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        windows.push(summary(&e.path()));
    }
    let whole = summary(dir.path());
    let mut c = Checks::default();
    c.check((5..=7).contains(&windows.len()), || format!("{} windows for 6 s of 1 s windows", windows.len()));
    let bounds: Vec<(u64, u64)> = windows
        .iter()
        .map(|s| (num(s, &["window_start_ns"], "window"), num(s, &["window_end_ns"], "window")))
        .collect();
    for pair in bounds.windows(2) {
        c.check(pair[0].1 == pair[1].0, || format!("windows not contiguous: {:?} then {:?}", pair[0], pair[1]));
    }
    let (start, end) = (bounds[0].0, bounds[bounds.len() - 1].1);
    c.check(
        (num(&whole, &["window_start_ns"], "whole"), num(&whole, &["window_end_ns"], "whole")) == (start, end),
        || format!("the merged window is not the union of the windows {start}..{end}"),
    );
    let span = (end - start) as f64;
    println!("{} windows over {:.3} s", windows.len(), span / 1e9);
    println!(
        "{:>7} | {:>17} | {:>17} | worst window: on CPU, runnable (pts off); most of a span",
        "thread", "on CPU %", "runnable %"
    );
    for &(name, tid) in &tids {
        let what = format!("tt-{name}");
        let pts = &polled[&tid];
        let (mut on, mut runnable, mut worst_on, mut worst_runnable, mut fullest) = (0.0, 0.0, 0.0f64, 0.0f64, 0.0f64);
        for (s, &(ws, we)) in windows.iter().zip(&bounds) {
            let Some(t) = thread_entry(s, tid) else {
                c.check(false, || format!("{what} missing from window {ws}..{we}"));
                continue;
            };
            let len = (we - ws) as f64;
            let (w_on, w_runnable) = (num(t, &["on_cpu_ns"], &what) as f64, off(t, "runnable") as f64);
            let (r0, q0) = at_time(pts, ws);
            let (r1, q1) = at_time(pts, we);
            worst_on = worst_on.max((w_on - (r1 - r0)).abs() / len);
            worst_runnable = worst_runnable.max((w_runnable - (q1 - q0)).abs() / len);
            let total = w_on + STATES.iter().map(|st| off(t, st) as f64).sum::<f64>();
            fullest = fullest.max(total / len);
            on += w_on;
            runnable += w_runnable;
        }
        let (r0, q0) = at_time(pts, start);
        let (r1, q1) = at_time(pts, end);
        let (run_ns, wait_ns) = (r1 - r0, q1 - q0);
        println!(
            "{name:>7} | {:6.2} ({:6.2}) | {:6.2} ({:6.2}) | {:.2}, {:.2}; {:.3}%",
            100.0 * on / span,
            100.0 * run_ns / span,
            100.0 * runnable / span,
            100.0 * wait_ns / span,
            100.0 * worst_on,
            100.0 * worst_runnable,
            100.0 * fullest
        );
        c.check((on - run_ns).abs() <= 0.01 * span, || {
            format!(
                "{what}: on-CPU summed over windows {:.2}% vs schedstat {:.2}%",
                100.0 * on / span,
                100.0 * run_ns / span
            )
        });
        c.check((runnable - wait_ns).abs() <= 0.01 * span, || {
            format!(
                "{what}: runnable summed over windows {:.2}% vs schedstat {:.2}%",
                100.0 * runnable / span,
                100.0 * wait_ns / span
            )
        });
        c.check(worst_on <= 0.01 && worst_runnable <= 0.01, || {
            format!(
                "{what}: a window off schedstat by {:.2} (on CPU) / {:.2} (runnable) points",
                100.0 * worst_on,
                100.0 * worst_runnable
            )
        });
        c.check(fullest <= 1.0 + 1e-9, || format!("{what}: {:.4}% of a window's span accounted", 100.0 * fullest));
        // The merge conserves the windows' exact times.
        let t = thread_entry(&whole, tid).unwrap_or_else(|| panic!("{what} missing from the merged summary"));
        c.check(num(t, &["on_cpu_ns"], &what) as f64 == on && off(t, "runnable") as f64 == runnable, || {
            format!("{what}: the merged capture's times differ from the sum of its windows'")
        });
    }
    let total = |key: &[&str]| windows.iter().map(|s| num(s, key, "window")).sum::<u64>();
    for key in [&["samples"][..], &["state_sampler", "snapshots"], &["lost_samples"]] {
        let (sum, merged) = (total(key), num(&whole, key, "whole"));
        c.check(sum == merged, || format!("{}: windows sum to {sum}, the merge says {merged}", key.join(".")));
    }
    let caches = &whole["caches"];
    c.check(caches["windows"].as_u64() == Some(windows.len() as u64), || format!("caches.windows: {caches}"));
    c.check(caches["caches"]["processes"]["held"].as_u64().is_some(), || format!("caches without processes: {caches}"));
    c.finish();
}
