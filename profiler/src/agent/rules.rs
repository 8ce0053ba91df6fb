//! Local rules: deep captures started by the continuous tier's own
//! signals, checked as each window closes.
//!
//! - `runqueue-share`: per group (unit, container or cgroup, as in the
//!   metrics), the share of its demand (on-CPU plus run-queue time, both
//!   exact) spent waiting for a CPU. Groups whose demand is under 10% of
//!   one CPU over the window are not judged: a share of nothing says
//!   nothing.
//! - `disk-threads`: threads the window's snapshots saw mostly in disk
//!   wait, over the host.
//!
//! A rule fires once its signal stayed above its threshold for
//! `for-windows` windows in a row; it captures the group that tripped it
//! (for disk-threads, the group with most threads in disk wait). Each rule
//! has a cooldown and a cap per hour.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    captures::Request,
    config::{Rule, Signal},
    target::{group_of, Target},
};
use crate::{profile::Profile, tier::Tier};

/// Smallest demand judged, as a share of the window on one CPU.
const MIN_DEMAND: f64 = 0.10;

/// What a rule remembers between windows.
#[derive(Debug, Default)]
struct RuleState {
    /// Consecutive windows above, per group label ("" for host-wide).
    streaks: HashMap<String, u32>,
    /// When it started captures in the last hour.
    fired: VecDeque<Instant>,
}

/// What the status endpoint shows of a rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleStatus {
    pub name: String,
    /// The longest streak of windows above the threshold now.
    pub streak: u32,
    pub fired_last_hour: u32,
    pub fired_total: u64,
    pub last_refusal: Option<String>,
}

#[derive(Debug, Default)]
pub struct Rules {
    state: HashMap<String, RuleState>,
    totals: HashMap<String, (u64, Option<String>)>,
}

/// A rule that tripped: what to capture, and why.
#[derive(Debug)]
pub struct Fire {
    pub rule: String,
    pub request: Request,
}

/// One group's signal in one window.
#[derive(Debug, Default, Clone, Copy)]
struct GroupSignal {
    on_cpu_ns: u64,
    runqueue_ns: u64,
    disk_threads: u64,
}

type Groups = HashMap<String, (Option<Target>, GroupSignal)>;

/// The signals of thread `tid`'s group ("" when its process is unknown).
fn slot<'a>(out: &'a mut Groups, p: &Profile, tid: u32) -> &'a mut GroupSignal {
    let target = p.thread_process.get(&tid).and_then(|&id| p.process(id)).and_then(|i| group_of(&i.placement));
    let label = target.as_ref().map_or_else(String::new, Target::label);
    &mut out.entry(label).or_insert_with(|| (target, GroupSignal::default())).1
}

/// Per group: its target and signals in `p`.
fn signals(p: &Profile) -> Groups {
    let mut out = Groups::new();
    for (tid, t) in &p.thread_times {
        let g = slot(&mut out, p, *tid);
        g.on_cpu_ns += t.on_cpu_ns;
        g.runqueue_ns += t.off_cpu_ns[0];
    }
    for (tid, (_, s)) in &p.state_samples {
        let counts = [s.running, s.runnable, s.sleeping, s.disk, s.other];
        let most = counts.iter().enumerate().filter(|(_, n)| **n > 0).max_by_key(|(_, n)| **n).map(|(i, _)| i);
        if most == Some(3) {
            slot(&mut out, p, *tid).disk_threads += 1;
        }
    }
    out
}

impl Rules {
    /// Check every rule against window `p` (of `window_ns`); the captures
    /// to start. `now` is the caller's clock (tests pass their own).
    pub fn check(&mut self, rules: &[Rule], p: &Profile, window_ns: u64, now: Instant) -> Vec<Fire> {
        let groups = signals(p);
        let mut fires = Vec::new();
        for rule in rules {
            let state = self.state.entry(rule.name.clone()).or_default();
            // Which groups are above, with how far above (to pick one).
            let above: Vec<(String, f64)> = match rule.when {
                Signal::RunqueueShare => groups
                    .iter()
                    .filter_map(|(label, (_, g))| {
                        let demand = (g.on_cpu_ns + g.runqueue_ns) as f64;
                        (demand >= MIN_DEMAND * window_ns as f64)
                            .then(|| (label.clone(), g.runqueue_ns as f64 / demand))
                            .filter(|(_, share)| *share > rule.above)
                    })
                    .collect(),
                Signal::DiskThreads => {
                    let total: u64 = groups.values().map(|(_, g)| g.disk_threads).sum();
                    match total as f64 > rule.above {
                        true => vec![(String::new(), total as f64)],
                        false => Vec::new(),
                    }
                }
            };
            state.streaks.retain(|label, _| above.iter().any(|(l, _)| l == label));
            for (label, _) in &above {
                *state.streaks.entry(label.clone()).or_default() += 1;
            }
            let due = above
                .iter()
                .filter(|(label, _)| state.streaks.get(label).copied().unwrap_or(0) >= rule.for_windows)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let Some((label, _)) = due else { continue };
            while state.fired.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600)) {
                state.fired.pop_front();
            }
            let cooling = state.fired.back().is_some_and(|t| now.duration_since(*t) < rule.cooldown);
            if cooling || state.fired.len() as u32 >= rule.max_per_hour {
                continue;
            }
            let target = match rule.when {
                Signal::RunqueueShare => groups.get(label).and_then(|(t, _)| t.clone()),
                // The group with most threads in disk wait.
                Signal::DiskThreads => groups
                    .values()
                    .filter(|(_, g)| g.disk_threads > 0)
                    .max_by_key(|(_, g)| g.disk_threads)
                    .and_then(|(t, _)| t.clone()),
            }
            .unwrap_or_default();
            let reason = match rule.when {
                Signal::RunqueueShare => format!(
                    "rule {}: {} waited for a CPU over {:.0}% of its demand for {} windows",
                    rule.name,
                    target.describe(),
                    100.0 * rule.above,
                    rule.for_windows
                ),
                Signal::DiskThreads => format!(
                    "rule {}: more than {} threads in disk wait for {} windows",
                    rule.name, rule.above, rule.for_windows
                ),
            };
            state.streaks.clear();
            fires.push(Fire {
                rule: rule.name.clone(),
                request: Request {
                    duration: rule.duration,
                    tier: Tier::Deep,
                    target,
                    reason,
                    trigger: format!("rule:{}", rule.name),
                },
            });
        }
        fires
    }

    /// Note what became of a fire: started (counts against the cooldown
    /// and the cap) or refused, and why.
    pub fn fired(&mut self, rule: &str, refused: Option<String>, now: Instant) {
        let totals = self.totals.entry(rule.to_owned()).or_default();
        match refused {
            None => {
                totals.0 += 1;
                self.state.entry(rule.to_owned()).or_default().fired.push_back(now);
            }
            Some(why) => totals.1 = Some(why),
        }
    }

    pub fn status(&self, rules: &[Rule], now: Instant) -> Vec<RuleStatus> {
        rules
            .iter()
            .map(|r| {
                let state = self.state.get(&r.name);
                let totals = self.totals.get(&r.name);
                RuleStatus {
                    name: r.name.clone(),
                    streak: state.and_then(|s| s.streaks.values().max().copied()).unwrap_or(0),
                    fired_last_hour: state.map_or(0, |s| {
                        s.fired.iter().filter(|t| now.duration_since(**t) < Duration::from_secs(3600)).count() as u32
                    }),
                    fired_total: totals.map_or(0, |t| t.0),
                    last_refusal: totals.and_then(|t| t.1.clone()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::ThreadTimes;

    use crate::enrich::{cgroup::Placement, process::ProcessInfo};

    fn window(runqueue_ms: u64) -> Profile {
        let mut p = Profile::default();
        p.processes.push(ProcessInfo {
            id: 0,
            placement: Placement { unit: Some("web.service".into()), ..Default::default() },
            ..Default::default()
        });
        p.thread_process.insert(7, 0);
        p.thread_times.insert(
            7,
            ThreadTimes {
                on_cpu_ns: 500_000_000,
                off_cpu_ns: [runqueue_ms * 1_000_000, 0, 0, 0],
                ..Default::default()
            },
        );
        p
    }

    fn rule() -> Rule {
        Rule {
            name: "rq".into(),
            when: Signal::RunqueueShare,
            above: 0.3,
            for_windows: 2,
            duration: Duration::from_secs(5),
            cooldown: Duration::from_secs(60),
            max_per_hour: 2,
        }
    }

    #[test]
    fn fires_after_its_streak_then_cools_down_and_caps() {
        let (mut rules, t0, w) = (Rules::default(), Instant::now(), 1_000_000_000);
        let r = [rule()];
        assert!(rules.check(&r, &window(400), w, t0).is_empty(), "one window is not a streak");
        assert!(rules.check(&r, &window(100), w, t0).is_empty(), "the streak broke");
        assert!(rules.check(&r, &window(400), w, t0).is_empty());
        let fire = rules.check(&r, &window(400), w, t0);
        assert_eq!(fire.len(), 1);
        assert_eq!(fire[0].request.target.unit.as_deref(), Some("web.service"));
        assert_eq!(fire[0].request.trigger, "rule:rq");
        rules.fired("rq", None, t0);
        // Cooling down.
        for _ in 0..3 {
            assert!(rules.check(&r, &window(400), w, t0 + Duration::from_secs(10)).is_empty());
        }
        assert_eq!(rules.check(&r, &window(400), w, t0 + Duration::from_secs(61)).len(), 1);
        rules.fired("rq", None, t0 + Duration::from_secs(61));
        // Capped at 2 an hour.
        rules.check(&r, &window(400), w, t0 + Duration::from_secs(200));
        assert!(rules.check(&r, &window(400), w, t0 + Duration::from_secs(201)).is_empty());
        assert_eq!(rules.status(&r, t0 + Duration::from_secs(201))[0].fired_last_hour, 2);
        // A group with too little demand is not judged.
        let mut idle = window(400);
        idle.thread_times.get_mut(&7).unwrap().on_cpu_ns = 1_000;
        idle.thread_times.get_mut(&7).unwrap().off_cpu_ns[0] = 50_000;
        let mut fresh = Rules::default();
        fresh.check(&r, &idle, w, t0);
        assert!(fresh.check(&r, &idle, w, t0).is_empty());
    }
}
