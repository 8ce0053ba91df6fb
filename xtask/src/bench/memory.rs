//! Peak memory of a 10 s `tailprof record` on an idle host, both tiers.

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
fn status_kb(pid: u32, field: &str) -> Option<u64> {
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
    Ok(md)
}
