//! The cost governor (`--cpu-budget PERCENT`): keeps tailprof's own CPU,
//! its process plus the run time of its BPF programs that run in other
//! tasks, under a share of one CPU.
//!
//! Every [`DECIDE_EVERY`] it measures the last interval's cost. The
//! snapshots are set in proportion: one snapshot every `stride` periods of
//! `--state-hz`, the stride that makes the snapshots' cost (a smoothed CPU
//! time per snapshot times their rate) fill what the rest of tailprof
//! leaves of [`AIM`] of the budget, never below [`MIN_STATE_HZ`]; it moves
//! only while the mean whole cost since the last change, over at least
//! [`JUDGE_INTERVALS`], is outside [`BAND`] of the budget, so that the
//! lumpy cost of snapshots seconds apart (every 16th lists every thread)
//! and one-off work do not make it flap; far over the budget it moves at once.
//! When the rest alone is over budget with the snapshots at their floor,
//! the on-CPU sampling rate goes down (the sampling program keeps one
//! sample in 2^level, each kept one standing for 2^level), one level per
//! interval, never below [`MIN_SAMPLE_HZ`]; under [`RAISE_BELOW`] of the
//! budget it comes back, one level per interval, not in the interval right
//! after a cut, before the snapshots speed up. Each kept sample and each
//! snapshot carries its weight, so times stay true across changes.
//!
//! BPF time outside our process (the sampling program, the fork, exec and
//! exit hooks; the deep tier's scheduler and interrupt hooks) is not in our
//! CPU clock. The kernel counts program run time only while statistics are
//! enabled, which adds two clock reads to every run of every program, so the
//! governor turns them on (BPF_ENABLE_STATS, held as an fd) for
//! [`STATS_ON`] out of every [`STATS_EVERY`] and takes the rate it measured
//! as the estimate until the next measurement. The snapshot iterator runs
//! inside our read(), so its time is already in our CPU clock.

use std::{os::fd::OwnedFd, time::Duration};

use crate::sys::clock::clock_ns;

/// How often the governor decides.
pub const DECIDE_EVERY: Duration = Duration::from_secs(2);
/// BPF run-time statistics are on for this long ...
pub const STATS_ON: Duration = Duration::from_millis(500);
/// ... once in this long.
pub const STATS_EVERY: Duration = Duration::from_secs(10);
/// Intervals at the start that are neither judged nor counted: tailprof
/// reads every process and unwind table once when it first sees them.
pub const WARM_UP_INTERVALS: u64 = 1;
/// Floors: the governor never takes fewer snapshots or samples than these.
pub const MIN_STATE_HZ: f64 = 0.1;
pub const MIN_SAMPLE_HZ: f64 = 10.0;

/// Raising the sampling rate doubles its cost: only when the whole cost
/// is under this share of the budget.
const RAISE_BELOW: f64 = 0.45;
/// The snapshots' stride aims the whole cost at this share of the budget.
const AIM: f64 = 0.97;
/// The stride moves only while the mean whole cost since the last change
/// is outside this band around the budget.
const BAND: (f64, f64) = (0.85, 1.1);
/// Intervals that mean must cover before it is judged (2 s each), unless
/// it is more than twice the budget.
const JUDGE_INTERVALS: u32 = 3;
/// Weight of the newest interval in the smoothed CPU time per snapshot
/// and cost of the rest.
const SMOOTHING: f64 = 0.5;

/// The rates a governor can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Levels {
    /// One snapshot in this many periods of `--state-hz` (at least 1).
    pub snapshot_stride: u32,
    /// The sampling program keeps one sample in 2^sample.
    pub sample: u32,
}

impl Default for Levels {
    fn default() -> Self {
        Self { snapshot_stride: 1, sample: 0 }
    }
}

/// A change of rates, for the log and the reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateChange {
    /// Seconds since the capture began.
    pub at_s: f64,
    pub state_hz: f64,
    pub frequency_hz: f64,
    /// The cost that prompted it, percent of one CPU.
    pub measured_percent: f64,
    pub reason: String,
}

/// What the governor did, for summary.json and the text report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GovernorReport {
    pub budget_percent: f64,
    /// The rates in effect at the end.
    pub state_hz: f64,
    pub frequency_hz: f64,
    /// Mean cost over the intervals it measured (start-up, the first
    /// interval's warm-up and the end's symbolizing and writing excluded),
    /// percent of one CPU.
    pub measured_percent: f64,
    /// Of which BPF programs running outside the process (estimated).
    pub bpf_percent: f64,
    pub changes: Vec<RateChange>,
    /// How the BPF time was measured and what that cost.
    pub bpf_time_method: String,
}

/// One interval's cost, ns.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub wall_ns: u64,
    /// Our process's CPU (every thread).
    pub process_ns: u64,
    /// Of which snapshots (their thread's read and the parsing).
    pub snapshot_ns: u64,
    /// Periodic snapshots taken in the interval.
    pub snapshots: u64,
    /// Our BPF programs' run time outside our process (estimated).
    pub bpf_ns: u64,
}

impl Cost {
    fn percent(&self, ns: u64) -> f64 {
        100.0 * ns as f64 / self.wall_ns.max(1) as f64
    }
    fn total_percent(&self) -> f64 {
        self.percent(self.process_ns + self.bpf_ns)
    }
}

/// The decisions, apart from any measuring.
#[derive(Debug, Clone)]
pub struct Policy {
    pub budget_percent: f64,
    pub state_hz: u64,
    pub frequency_hz: u64,
    pub levels: Levels,
    max: Levels,
    just_cut: bool,
    /// Smoothed CPU time of one snapshot, ns (0: none measured yet).
    per_snapshot_ns: f64,
    /// Smoothed cost of everything but the snapshots, percent of one CPU.
    rest_percent: Option<f64>,
    /// Whole cost since the last change: ns spent and ns of wall time, and
    /// the intervals they cover.
    since_change: (u64, u64),
    intervals_since_change: u32,
}

/// Highest level keeping `base / 2^level >= floor`.
fn max_level(base: f64, floor: f64, cap: u32) -> u32 {
    let mut level = 0;
    while level < cap && base / f64::from(1u32 << (level + 1)) >= floor {
        level += 1;
    }
    level
}

impl Policy {
    pub fn new(budget_percent: f64, state_hz: u64, frequency_hz: u64) -> Self {
        let max = Levels {
            snapshot_stride: ((state_hz as f64 / MIN_STATE_HZ).floor() as u32)
                .clamp(1, crate::snapshot_taker::MAX_SNAPSHOT_STRIDE),
            sample: max_level(frequency_hz as f64, MIN_SAMPLE_HZ, profiler_common::MAX_SAMPLE_LEVEL),
        };
        Self {
            budget_percent,
            state_hz,
            frequency_hz,
            levels: Levels::default(),
            max,
            just_cut: false,
            per_snapshot_ns: 0.0,
            rest_percent: None,
            since_change: (0, 0),
            intervals_since_change: 0,
        }
    }

    pub fn state_hz(&self) -> f64 {
        self.state_hz as f64 / f64::from(self.levels.snapshot_stride)
    }

    pub fn frequency_hz(&self) -> f64 {
        self.frequency_hz as f64 / f64::from(1u32 << self.levels.sample)
    }

    /// New levels for the next interval, with the reason, or `None`.
    pub fn decide(&mut self, cost: &Cost) -> Option<(Levels, &'static str)> {
        let total = cost.total_percent();
        let budget = self.budget_percent;
        let was = self.levels;
        let cut = std::mem::take(&mut self.just_cut);
        if cost.snapshots > 0 {
            let per = cost.snapshot_ns as f64 / cost.snapshots as f64;
            self.per_snapshot_ns = match self.per_snapshot_ns {
                0.0 => per,
                old => (1.0 - SMOOTHING) * old + SMOOTHING * per,
            };
        }
        // What everything but the snapshots costs, percent of one CPU.
        let rest = total - cost.percent(cost.snapshot_ns);
        let rest = match self.rest_percent {
            None => rest,
            Some(old) => (1.0 - SMOOTHING) * old + SMOOTHING * rest,
        };
        self.rest_percent = Some(rest);
        self.since_change.0 += cost.process_ns + cost.bpf_ns;
        self.since_change.1 += cost.wall_ns;
        self.intervals_since_change += 1;
        // The mean cost since the last change, percent of one CPU.
        let mean = 100.0 * self.since_change.0 as f64 / self.since_change.1.max(1) as f64;
        let judged = mean > 2.0 * budget || self.intervals_since_change >= JUDGE_INTERVALS;
        let over = mean > BAND.1 * budget && judged;
        let outside = over || (mean < BAND.0 * budget && judged);
        let room = AIM * budget - rest;
        if self.per_snapshot_ns > 0.0 && (self.levels.sample == 0 || room <= 0.0) {
            // Snapshots a second the room pays for, and the stride that gives them.
            let right = match room > 0.0 {
                true => {
                    let per_second = room / 100.0 * 1e9 / self.per_snapshot_ns;
                    (self.state_hz as f64 / per_second).round().clamp(1.0, f64::from(self.max.snapshot_stride)) as u32
                }
                false => self.max.snapshot_stride,
            };
            if outside {
                self.levels.snapshot_stride = right;
            }
        }
        if over && room <= 0.0 && was.snapshot_stride == self.max.snapshot_stride {
            self.levels.sample = (self.levels.sample + 1).min(self.max.sample);
        } else if mean < RAISE_BELOW * budget && judged && !cut && self.levels.sample > 0 {
            self.levels.sample -= 1;
        }
        let slower = self.levels.snapshot_stride > was.snapshot_stride || self.levels.sample > was.sample;
        self.just_cut = slower;
        if self.levels != was {
            // Judge the new rates on their own cost.
            self.since_change = (0, 0);
            self.intervals_since_change = 0;
        }
        match self.levels == was {
            true => None,
            false if slower => Some((self.levels, "over budget")),
            false => Some((self.levels, "room under budget")),
        }
    }
}

/// Run time of our BPF programs that run outside our process, sampled.
struct BpfTime {
    /// Our programs' fds, the snapshot iterator's left out.
    fds: Vec<i32>,
    stats: Option<OwnedFd>,
    /// When statistics were turned on, and the run time then.
    on_since: Option<(u64, u64)>,
    last_on: u64,
    /// Measured share of wall time (ns of BPF per ns).
    rate: f64,
    measured: bool,
    error: Option<String>,
}

impl BpfTime {
    /// Sum of run_time_ns over our programs, from /proc/self/fdinfo.
    fn run_time_ns(&self) -> u64 {
        self.fds.iter().filter_map(|fd| fdinfo_field(*fd, "run_time_ns")).sum()
    }

    fn poll(&mut self, now: u64) {
        match self.on_since {
            Some((since, before)) if now.saturating_sub(since) >= STATS_ON.as_nanos() as u64 => {
                let ran = self.run_time_ns().saturating_sub(before);
                self.rate = ran as f64 / now.saturating_sub(since).max(1) as f64;
                self.measured = true;
                self.stats = None;
                self.on_since = None;
            }
            Some(_) => {}
            None if self.last_on == 0 || now.saturating_sub(self.last_on) >= STATS_EVERY.as_nanos() as u64 => {
                match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                    Ok(fd) => {
                        self.stats = Some(fd);
                        self.on_since = Some((now, self.run_time_ns()));
                    }
                    Err(e) if self.error.is_none() => {
                        tracing::warn!(%e, "could not turn on BPF run-time statistics: the governor counts only this process's CPU");
                        self.error = Some(e.to_string());
                    }
                    Err(_) => {}
                }
                self.last_on = now;
            }
            None => {}
        }
    }
}

/// A field of /proc/self/fdinfo/FD.
fn fdinfo_field(fd: i32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

/// What the capture loop applies when the governor changes the rates.
pub trait Apply {
    fn apply(&mut self, levels: Levels);
}

pub struct Governor {
    pub policy: Policy,
    bpf: BpfTime,
    started_ns: u64,
    /// Intervals measured so far; the first is warm-up (first sight of
    /// every process and module, first stack copies) and not judged.
    intervals: u64,
    /// At the last judgement: when, our CPU, the snapshots' CPU and count.
    last: Option<(u64, u64, u64, u64)>,
    measured: Cost,
    changes: Vec<RateChange>,
}

/// This process's CPU time, every thread, ns.
fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

impl Governor {
    /// `program_fds`: our BPF programs that run outside this process.
    pub fn new(policy: Policy, program_fds: Vec<i32>) -> Self {
        Self {
            policy,
            bpf: BpfTime {
                fds: program_fds,
                stats: None,
                on_since: None,
                last_on: 0,
                rate: 0.0,
                measured: false,
                error: None,
            },
            started_ns: crate::sys::clock::monotonic_ns(),
            intervals: 0,
            last: None,
            measured: Cost::default(),
            changes: Vec::new(),
        }
    }

    /// Called often (every drain tick) with the snapshots' CPU so far and
    /// the number of periodic snapshots taken; decides every [`DECIDE_EVERY`].
    pub fn poll(&mut self, snapshot_cpu_ns: u64, snapshots: u64, apply: &mut dyn Apply) {
        let now = crate::sys::clock::monotonic_ns();
        self.bpf.poll(now);
        let process = process_cpu_ns();
        let Some((at, process_then, snapshot_cpu_then, snapshots_then)) = self.last else {
            self.last = Some((now, process, snapshot_cpu_ns, snapshots));
            return;
        };
        let wall_ns = now.saturating_sub(at);
        if wall_ns < DECIDE_EVERY.as_nanos() as u64 {
            return;
        }
        self.last = Some((now, process, snapshot_cpu_ns, snapshots));
        self.intervals += 1;
        if self.intervals <= WARM_UP_INTERVALS {
            return;
        }
        let cost = Cost {
            wall_ns,
            process_ns: process.saturating_sub(process_then),
            snapshot_ns: snapshot_cpu_ns.saturating_sub(snapshot_cpu_then),
            snapshots: snapshots.saturating_sub(snapshots_then),
            bpf_ns: (self.bpf.rate * wall_ns as f64) as u64,
        };
        tracing::debug!(
            process_ms = cost.process_ns as f64 / 1e6,
            snapshot_ms = cost.snapshot_ns as f64 / 1e6,
            bpf_ms = cost.bpf_ns as f64 / 1e6,
            percent = cost.total_percent(),
            "cost governor interval"
        );
        self.measured.wall_ns += cost.wall_ns;
        self.measured.process_ns += cost.process_ns;
        self.measured.bpf_ns += cost.bpf_ns;
        if let Some((levels, reason)) = self.policy.decide(&cost) {
            let change = RateChange {
                at_s: now.saturating_sub(self.started_ns) as f64 / 1e9,
                state_hz: self.policy.state_hz(),
                frequency_hz: self.policy.frequency_hz(),
                measured_percent: cost.total_percent(),
                reason: reason.to_owned(),
            };
            tracing::info!(
                state_hz = change.state_hz,
                frequency_hz = change.frequency_hz,
                measured_percent = change.measured_percent,
                budget_percent = self.policy.budget_percent,
                reason,
                "cost governor changed the rates"
            );
            self.changes.push(change);
            apply.apply(levels);
        }
    }

    pub fn report(&self) -> GovernorReport {
        let m = &self.measured;
        GovernorReport {
            budget_percent: self.policy.budget_percent,
            state_hz: self.policy.state_hz(),
            frequency_hz: self.policy.frequency_hz(),
            measured_percent: m.total_percent(),
            bpf_percent: m.percent(m.bpf_ns),
            changes: self.changes.clone(),
            bpf_time_method: match (&self.bpf.error, self.bpf.measured) {
                (Some(e), _) => format!("not measured ({e}): the process's CPU only"),
                (None, false) => "not measured yet: the process's CPU only".into(),
                (None, true) => format!(
                    "BPF run-time statistics on for {} ms every {} s (BPF_ENABLE_STATS), the rate measured then held until the next measurement",
                    STATS_ON.as_millis(),
                    STATS_EVERY.as_secs()
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One second's cost with `snapshots` snapshots in it.
    fn cost(total_pct: f64, snapshot_pct: f64, snapshots: u64) -> Cost {
        let wall_ns = 1_000_000_000;
        let ns = |pct: f64| (pct / 100.0 * wall_ns as f64) as u64;
        Cost { wall_ns, process_ns: ns(total_pct), snapshot_ns: ns(snapshot_pct), snapshots, bpf_ns: 0 }
    }

    fn levels(snapshot_stride: u32, sample: u32) -> Option<Levels> {
        Some(Levels { snapshot_stride, sample })
    }

    #[test]
    fn floors_follow_the_base_rates() {
        assert_eq!(max_level(99.0, MIN_SAMPLE_HZ, 6), 3, "99 Hz halved 3 times is 12.4 Hz >= 10 Hz");
        assert_eq!(max_level(5.0, MIN_SAMPLE_HZ, 6), 0);
        assert_eq!(Policy::new(1.0, 20, 99).max, Levels { snapshot_stride: 200, sample: 3 }, "20 Hz / 200 = 0.1 Hz");
    }

    #[test]
    fn snapshots_get_the_stride_the_room_pays_for_then_sampling_goes_down() {
        let mut p = Policy::new(1.0, 20, 99);
        // 20 snapshots of 13 ms each (26% of a CPU) and 0.2% for the rest:
        // far over, so at once: 0.97% - 0.2% pays for 0.59 snapshots a
        // second, one in 34 periods.
        assert_eq!(p.decide(&cost(26.2, 26.0, 20)).map(|d| d.0), levels(34, 0));
        assert!((p.state_hz() - 20.0 / 34.0).abs() < 1e-9);
        // Inside the band around the budget, or not yet judged: nothing moves.
        assert_eq!(p.decide(&cost(0.9, 0.7, 0)), None);
        assert_eq!(p.decide(&cost(0.3, 0.1, 1)), None, "one cheap interval is not judged");
        // Cheaper snapshots (5.5 ms smoothed): the mean over three
        // intervals (0.6%) is under the band: more of them.
        assert_eq!(p.decide(&cost(0.6, 0.4, 1)).map(|d| d.0), levels(14, 0));
        // The rest grows far over the budget: at once, snapshots to their
        // floor; then sampling goes down, one level per judged stretch.
        assert_eq!(p.decide(&cost(3.0, 0.1, 1)).map(|d| d.0), levels(200, 0));
        assert_eq!(p.decide(&cost(2.5, 0.05, 0)).map(|d| d.0), levels(200, 1));
        assert_eq!(p.decide(&cost(2.5, 0.05, 0)).map(|d| d.0), levels(200, 2));
        assert_eq!(p.decide(&cost(2.5, 0.05, 0)).map(|d| d.0), levels(200, 3));
        assert_eq!(p.decide(&cost(2.5, 0.05, 0)), None, "at both floors");
        // Room again: sampling comes back first, once judged, then the snapshots.
        let mut p = Policy::new(1.0, 20, 99);
        p.levels = Levels { snapshot_stride: 200, sample: 1 };
        p.per_snapshot_ns = 13e6;
        assert_eq!(p.decide(&cost(0.2, 0.1, 0)), None);
        assert_eq!(p.decide(&cost(0.2, 0.1, 0)), None);
        assert_eq!(p.decide(&cost(0.2, 0.1, 0)).map(|d| d.0), levels(200, 0));
        assert_eq!(p.decide(&cost(0.2, 0.1, 0)), None);
        assert_eq!(p.decide(&cost(0.2, 0.1, 0)), None);
        assert_eq!(p.decide(&cost(0.2, 0.1, 0)).map(|d| d.0), levels(30, 0), "0.87% pays for 0.67 snapshots a second");
    }

    #[test]
    fn fdinfo_of_a_plain_file_has_no_run_time() {
        use std::os::fd::AsRawFd;
        let f = tempfile::tempfile().unwrap();
        assert_eq!(fdinfo_field(f.as_raw_fd(), "pos"), Some(0));
        assert_eq!(fdinfo_field(f.as_raw_fd(), "run_time_ns"), None);
    }
}
