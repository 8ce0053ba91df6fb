//! The short report printed on stdout after a capture.

use std::{collections::HashMap, fmt::Write as _};

use super::folded::frame_label;
use crate::profile::Profile;

/// Where a process runs, for a thread row: its program, and its
/// container, pod or systemd unit when it has one.
fn placement(profile: &Profile, process: u32) -> String {
    let Some(p) = profile.process(process) else { return String::new() };
    let mut parts = Vec::new();
    if let Some(exe) = p.exe.as_deref() {
        parts.push(exe.to_owned());
    }
    if let Some(c) = &p.placement.container {
        parts.push(format!("{} {}", c.runtime, &c.id[..c.id.len().min(12)]));
    }
    if let Some(pod) = &p.placement.pod {
        parts.push(format!("pod {}", pod.uid));
    }
    if let Some(unit) = p.placement.unit.as_deref().or(p.placement.slice.as_deref()) {
        parts.push(unit.to_owned());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("  [{}]", parts.join(", "))
    }
}

/// The busiest `--group-by` groups.
fn groups_table(profile: &Profile, top: usize, out: &mut String) {
    let dims: Vec<&str> = profile.group_by.0.iter().map(|d| d.name()).collect();
    let _ = writeln!(
        out,
        "\nby {} (s):\n  {:>8} {:>8} {:>8} {:>8}  group",
        dims.join(", "),
        "on-CPU",
        "runnable",
        "blocked",
        "samples"
    );
    let s = |ns: u64| ns as f64 / 1e9;
    for g in crate::group::groups(profile).iter().take(top) {
        let off = g.off_cpu_ns.unwrap_or_default();
        let on = g.on_cpu_ns.unwrap_or(g.on_cpu_samples * profile.period_ns());
        let key: Vec<&str> = dims.iter().map(|d| g.key.get(*d).and_then(|v| v.as_str()).unwrap_or("")).collect();
        let _ = writeln!(
            out,
            "  {:>8.3} {:>8.3} {:>8.3} {:>8}  {}",
            s(on),
            s(off.runnable),
            s(off.sleeping + off.disk + off.other),
            g.on_cpu_samples,
            key.join(" / ")
        );
    }
}

/// Busiest threads and hottest functions (self samples), as text.
pub fn report(profile: &Profile, top: usize) -> String {
    let mut out = String::new();
    let total = profile.samples.max(1) as f64;
    let _ = writeln!(
        out,
        "{} samples over {:.1}s at {} Hz per CPU, {} lost (tier {})",
        profile.samples,
        profile.duration_ns as f64 / 1e9,
        profile.frequency_hz,
        profile.lost_samples,
        profile.tier.name()
    );
    let _ = writeln!(out, "\nbusiest threads:\n  {:>7} {:>7} {:>8}  comm (where)", "pid", "tid", "samples");
    for t in profile.threads().iter().take(top) {
        let _ = writeln!(
            out,
            "  {:>7} {:>7} {:>8}  {} ({:.1}%){}",
            t.pid,
            t.tid,
            t.on_cpu_samples,
            t.comm,
            100.0 * t.on_cpu_samples as f64 / total,
            placement(profile, t.process)
        );
    }
    if profile.group_by != crate::group::GroupBy::default() {
        groups_table(profile, top, &mut out);
    }
    if profile.state_hz > 0 {
        let how = match profile.tier {
            crate::tier::Tier::Deep => "exact",
            crate::tier::Tier::Continuous => "running and runnable exact, the rest split by sampled states",
        };
        let _ = writeln!(
            out,
            "\nwall-clock time by state ({how}, s):\n  {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}  comm",
            "pid", "tid", "running", "runnable", "sleeping", "disk", "other"
        );
        let s = |ns: u64| ns as f64 / 1e9;
        let mut threads: Vec<_> = profile.threads().into_iter().filter(|t| t.on_cpu_ns.is_some()).collect();
        // Most wanted CPU: running plus waiting for it.
        threads.sort_by_key(|t| {
            std::cmp::Reverse(t.on_cpu_ns.unwrap_or(0) + t.off_cpu_ns.map_or(0, |o| o.runnable + o.disk))
        });
        for t in threads.iter().take(top) {
            let (on, off) = (t.on_cpu_ns.unwrap_or(0), t.off_cpu_ns.unwrap_or_default());
            let _ = writeln!(
                out,
                "  {:>7} {:>7} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}  {}",
                t.pid,
                t.tid,
                s(on),
                s(off.runnable),
                s(off.sleeping),
                s(off.disk),
                s(off.other),
                t.comm
            );
        }
    }
    if let Some(g) = &profile.governor {
        let _ = writeln!(
            out,
            "\ncost governor: budget {}% of one CPU, measured {:.2}% (BPF outside the process {:.2}%); rates in effect: snapshots {} Hz, sampling {} Hz ({} change(s))",
            g.budget_percent,
            g.measured_percent,
            g.bpf_percent,
            g.state_hz,
            g.frequency_hz,
            g.changes.len()
        );
        for c in &g.changes {
            let _ = writeln!(
                out,
                "  at {:.1} s: snapshots {} Hz, sampling {} Hz ({}: {:.2}%)",
                c.at_s, c.state_hz, c.frequency_hz, c.reason, c.measured_percent
            );
        }
    }
    if !profile.tier.cannot_show().is_empty() {
        let _ = writeln!(out, "\ntier {}: what it cannot show:", profile.tier.name());
        for line in profile.tier.cannot_show() {
            let _ = writeln!(out, "  - {line}");
        }
    }
    if !profile.untrusted_times.is_empty() {
        let (what, how) = match profile.tier {
            crate::tier::Tier::Continuous => {
                ("ended during the capture without handing over their final counters (exit ring full)", "short")
            }
            crate::tier::Tier::Deep => {
                ("were never seen by sched_switch leaving a CPU although they are not running now", "wrong")
            }
        };
        let _ = writeln!(
            out,
            "\nwarning: {} thread(s) {what} (tids {:?}); their exact times are left out rather than reported {how}.",
            profile.untrusted_times.len(),
            profile.untrusted_times
        );
    }
    for hit in &profile.limits_hit {
        let _ = writeln!(
            out,
            "\nwarning: the {} filled up at its bound of {} entries; {} events were dropped (counted in dropped_events). Raise it with {}.",
            hit.what, hit.bound, hit.dropped, hit.flag
        );
    }
    let unreadable = crate::profile::SymbolizationStats::of(profile).modules_unreadable;
    if !unreadable.is_empty() {
        let _ = writeln!(
            out,
            "\nwarning: {} module(s) could not be read; their frames show as module+0xOFFSET:",
            unreadable.len()
        );
        for m in unreadable.iter().take(top) {
            let _ = writeln!(out, "  {}: {}", m.path, m.reason);
        }
    }
    let mut self_samples: HashMap<String, u64> = HashMap::new();
    for stack in &profile.stacks {
        if let Some(leaf) = stack.frames.last() {
            *self_samples.entry(frame_label(leaf, profile)).or_default() += stack.count;
        }
    }
    let mut hot: Vec<_> = self_samples.into_iter().collect();
    hot.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let _ = writeln!(out, "\nhottest functions (self):\n  {:>8}  function", "samples");
    for (name, n) in hot.iter().take(top) {
        let _ = writeln!(out, "  {:>8}  {} ({:.1}%)", n, name, 100.0 * *n as f64 / total);
    }
    out
}
