//! Peak memory of a 10 s `tailprof record` on an idle host, both tiers; and
//! memory over a long multi-window recording under fork/exec/thread churn.

use std::{fmt::Write as _, path::Path, thread::sleep, time::Duration};

use super::common::{has_exited, median, spawn_record, wait_record, Tier};

const SECONDS: u64 = 10;
/// Issue 14's goal for the deep tier's default capture.
const GOAL_MB: f64 = 40.0;

struct Peak {
    tier: Tier,
    /// VmHWM at the last poll before the process exited, MiB.
    hwm_mib: f64,
    /// RssAnon and RssFile at that poll, MiB.
    anon_mib: f64,
    file_mib: f64,
    cpu_ms: f64,
}

/// `Vm…`/`Rss…` fields of /proc/PID/status, kB.
pub(crate) fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

fn measure(bin: &Path, scratch: &Path, tier: Tier) -> anyhow::Result<Peak> {
    let out = scratch.join(format!("memory-{}", tier.name()));
    let seconds = format!("{SECONDS}s");
    let recording = spawn_record(bin, &["record", "--tier", tier.name(), "--duration", &seconds], &out)?;
    let pid = recording.child.id();
    let (mut hwm, mut anon, mut file) = (0, 0, 0);
    // Polled until it exits: the peak may come while it writes its outputs.
    while !has_exited(pid) {
        if let Some(h) = status_kb(pid, "VmHWM") {
            hwm = hwm.max(h);
            anon = status_kb(pid, "RssAnon").unwrap_or(anon);
            file = status_kb(pid, "RssFile").unwrap_or(file);
        }
        sleep(Duration::from_millis(10));
    }
    let cost = wait_record(recording, &format!("tailprof record --tier {}", tier.name()))?;
    let _ = std::fs::remove_dir_all(&out);
    let mib = |kb: u64| kb as f64 / 1024.0;
    Ok(Peak {
        tier,
        hwm_mib: mib(hwm),
        anon_mib: mib(anon),
        file_mib: mib(file),
        cpu_ms: cost.total().as_secs_f64() * 1e3,
    })
}

pub fn run(bin: &Path, scratch: &Path, reps: usize) -> anyhow::Result<String> {
    let mut peaks = Vec::new();
    for rep in 0..reps {
        for tier in Tier::ALL {
            eprintln!("xtask bench: memory, repetition {} of {reps}: tailprof record --tier {}", rep + 1, tier.name());
            peaks.push(measure(bin, scratch, tier)?);
        }
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Memory: peak RSS of a {SECONDS} s `tailprof record` on an idle host\n\n\
         `tailprof record --tier T --duration {SECONDS}s -o DIR`, every other setting default, the whole host; \
         {reps} repetitions. Peak RSS is the process's `VmHWM` (/proc/PID/status) at the last of its 10 ms polls \
         before it exited (after exec: the benchmark's own memory is not in it); `RssAnon`/`RssFile` are at that \
         poll, the outputs written. CPU is user+sys from wait4.\n\n\
         | run | tier | peak RSS MiB | anonymous MiB | file-backed MiB | CPU ms |\n|---:|---|---:|---:|---:|---:|"
    );
    for (i, p) in peaks.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            i / Tier::ALL.len() + 1,
            p.tier.name(),
            p.hwm_mib,
            p.anon_mib,
            p.file_mib,
            p.cpu_ms
        );
    }
    for tier in Tier::ALL {
        let hwm = median(peaks.iter().filter(|p| p.tier == tier).map(|p| p.hwm_mib).collect());
        let met = if hwm <= GOAL_MB { "met" } else { "not met" };
        let _ =
            writeln!(md, "\n**{}: median peak RSS {hwm:.1} MiB** (goal: at most {GOAL_MB} MB: {met}).", tier.name());
    }
    md.push_str(&churn(bin, scratch)?);
    Ok(md)
}

/// Minutes of the churn run (`TAILPROF_CHURN_MINUTES`, default 10).
fn churn_minutes() -> u64 {
    std::env::var("TAILPROF_CHURN_MINUTES").ok().and_then(|m| m.parse().ok()).filter(|&m| m >= 3).unwrap_or(10)
}

/// Least-squares slope of (seconds, MiB) points, MiB per minute.
pub(crate) fn slope_per_minute(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    60.0 * sxy / sxx.max(f64::MIN_POSITIVE)
}

/// A multi-window continuous recording under `stress-ng --fork 2 --exec 2
/// --pthread 2`: RSS every second, its slope over all but the first two
/// minutes, and the collector's caches after the last full window.
fn churn(bin: &Path, scratch: &Path) -> anyhow::Result<String> {
    let minutes = churn_minutes();
    let out = scratch.join("memory-churn");
    let mut stress = std::process::Command::new("stress-ng")
        .args(["--fork", "2", "--exec", "2", "--pthread", "2", "--timeout"])
        .arg(format!("{}s", minutes * 60 + 60))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("could not start stress-ng: {e}"))?;
    sleep(Duration::from_secs(2));
    eprintln!("xtask bench: memory, {minutes} min of 10 s windows under fork/exec/thread churn");
    let duration = format!("{minutes}m");
    let args = ["record", "--tier", "continuous", "--duration", &duration, "--window", "10s"];
    let recording = spawn_record(bin, &args, &out)?;
    let pid = recording.child.id();
    let started = std::time::Instant::now();
    let mut points: Vec<(f64, f64)> = Vec::new();
    while !has_exited(pid) {
        if let Some(kb) = status_kb(pid, "VmRSS").filter(|&kb| kb > 0) {
            points.push((started.elapsed().as_secs_f64(), kb as f64 / 1024.0));
        }
        sleep(Duration::from_secs(1));
    }
    let cost = wait_record(recording, "tailprof record --window 10s under churn");
    let _ = stress.kill();
    let _ = stress.wait();
    let cost = cost?;
    // The run proper: until the last window closed (then the merge is written).
    let capture = (minutes * 60) as f64;
    // The first seconds are start-up (and the process before its exec).
    let run: Vec<(f64, f64)> = points.iter().copied().filter(|(t, _)| (2.0..=capture).contains(t)).collect();
    let steady: Vec<(f64, f64)> = run.iter().copied().filter(|(t, _)| *t >= 120.0).collect();
    let slope = slope_per_minute(&steady);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n## Memory under churn: {minutes} min of 10 s windows\n\n\
         `stress-ng --fork 2 --exec 2 --pthread 2` while `tailprof record --tier continuous --duration {minutes}m \
         --window 10s -o DIR` runs, every other setting default, the whole host. VmRSS polled every second; the \
         slope is a least-squares fit over minute 2 to the end of the capture (the merge written after it is not \
         in it). CPU {:.1} s over the run.\n\n| minute | RSS min MiB | RSS max MiB |\n|---:|---:|---:|",
        cost.total().as_secs_f64()
    );
    for m in 0..minutes {
        let in_minute: Vec<f64> = run.iter().filter(|(t, _)| (*t / 60.0) as u64 == m).map(|(_, r)| *r).collect();
        if in_minute.is_empty() {
            continue;
        }
        let (lo, hi) = in_minute.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        let _ = writeln!(md, "| {} | {lo:.1} | {hi:.1} |", m + 1);
    }
    let met = if slope < 1.0 { "met" } else { "not met" };
    let _ = writeln!(md, "\n**RSS slope from minute 2 on: {slope:+.2} MiB/min** (goal: below 1 MiB/min: {met}).");
    // The last window closed at a boundary: its caches are trimmed.
    let windows = out.join("windows");
    let mut last: Vec<_> =
        std::fs::read_dir(&windows).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    last.sort();
    if let Some(dir) = last.iter().rev().nth(1) {
        let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json"))?)?;
        let caches = &summary["caches"];
        let _ = writeln!(
            md,
            "\nThe collector's caches after window {} of {} (`caches` in its summary.json; `held` after the window's \
             trim, `evicted` since the start):\n\n| cache | held | evicted | bound |\n|---|---:|---:|---:|",
            caches["windows"],
            last.len()
        );
        if let Some(map) = caches["caches"].as_object() {
            for (name, c) in map {
                let bound = c["bound"].as_u64().map_or_else(|| "live processes/threads".to_owned(), |b| b.to_string());
                let _ = writeln!(md, "| {name} | {} | {} | {bound} |", c["held"], c["evicted"]);
            }
        }
        let threads = summary["threads"].as_array().map_or(0, Vec::len);
        let processes = summary["processes"].as_array().map_or(0, Vec::len);
        let _ = writeln!(md, "\nThat window reported {threads} threads and {processes} process generations.");
    }
    let _ = std::fs::remove_dir_all(&out);
    Ok(md)
}
