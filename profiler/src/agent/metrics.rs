//! `/metrics`: OpenMetrics text (prometheus-client). Label sets stay
//! bounded: per group (the systemd unit, else the container, else the
//! cgroup, of each thread's process; at most [`MAX_GROUPS`], the rest under
//! `other`), per CPU and per state, never per pid or tid.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use crate::{model::window::Window, noise::Measurement, profile::Profile};

/// Most distinct groups labelled; threads of others count under `other`.
pub const MAX_GROUPS: usize = 200;
const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Group {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupState {
    group: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cpu {
    cpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Program {
    program: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Backend {
    backend: String,
    url: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendReason {
    backend: String,
    url: String,
    reason: String,
}

type Seconds = Counter<f64, AtomicU64>;

/// The agent's metrics, updated once per window.
pub struct Metrics {
    registry: Registry,
    groups: std::collections::HashSet<String>,
    cpu: Family<Group, Seconds>,
    runqueue: Family<Group, Seconds>,
    off_cpu: Family<GroupState, Seconds>,
    threads: Family<State, Gauge>,
    softirq: Family<Cpu, Seconds>,
    steal: Family<Cpu, Seconds>,
    samples: Counter,
    lost_samples: Counter,
    dropped: Family<Reason, Counter>,
    windows: Counter,
    rss: Gauge,
    heap: Gauge,
    segments: Gauge,
    storage: Gauge,
    process_cpu: Seconds,
    captures: Family<Trigger, Counter>,
    captures_refused: Family<Reason, Counter>,
    rule_fires: Family<RuleName, Counter>,
    cost: Family<Part, Gauge<f64, AtomicU64>>,
    noise: Family<CpuSource, Seconds>,
    rates: Family<Rate, Gauge<f64, AtomicU64>>,
    push_segments: Family<Backend, Counter>,
    push_profiles: Family<Backend, Counter>,
    push_bytes: Family<Backend, Counter>,
    push_retries: Family<Backend, Counter>,
    push_given_up: Family<BackendReason, Counter>,
    push_lag: Family<Backend, Gauge<f64, AtomicU64>>,
    unavailable: Family<Program, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CpuSource {
    cpu: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Part {
    part: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rate {
    rate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleName {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Trigger {
    trigger: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("tailprof");
        let m = Self {
            groups: Default::default(),
            cpu: Family::default(),
            runqueue: Family::default(),
            off_cpu: Family::default(),
            threads: Family::default(),
            softirq: Family::default(),
            steal: Family::default(),
            samples: Counter::default(),
            lost_samples: Counter::default(),
            dropped: Family::default(),
            windows: Counter::default(),
            rss: Gauge::default(),
            heap: Gauge::default(),
            segments: Gauge::default(),
            storage: Gauge::default(),
            process_cpu: Seconds::default(),
            captures: Family::default(),
            captures_refused: Family::default(),
            rule_fires: Family::default(),
            cost: Family::default(),
            noise: Family::default(),
            rates: Family::default(),
            push_segments: Family::default(),
            push_profiles: Family::default(),
            push_bytes: Family::default(),
            push_retries: Family::default(),
            push_given_up: Family::default(),
            push_lag: Family::default(),
            unavailable: Family::default(),
            registry: Registry::default(),
        };
        r.register_with_unit("cpu", "Exact on-CPU time of the group's threads", Unit::Seconds, m.cpu.clone());
        r.register_with_unit(
            "runqueue_wait",
            "Exact time the group's threads waited for a CPU",
            Unit::Seconds,
            m.runqueue.clone(),
        );
        r.register_with_unit(
            "off_cpu",
            "Off-CPU time of the group's threads by sampled state (sleeping, disk, other)",
            Unit::Seconds,
            m.off_cpu.clone(),
        );
        r.register("threads", "Threads by state at the last window's end (snapshots)", m.threads.clone());
        r.register_with_unit("softirq", "Softirq time per CPU (/proc/stat)", Unit::Seconds, m.softirq.clone());
        r.register_with_unit("steal", "Hypervisor steal time per CPU (/proc/stat)", Unit::Seconds, m.steal.clone());
        r.register("samples", "On-CPU samples received", m.samples.clone());
        r.register("lost_samples", "Samples the ring buffer had no room for", m.lost_samples.clone());
        r.register("dropped_events", "Events dropped, by reason", m.dropped.clone());
        r.register("windows", "Windows closed", m.windows.clone());
        r.register_with_unit("resident_memory", "Resident memory of the agent", Unit::Bytes, m.rss.clone());
        r.register_with_unit(
            "heap_in_use",
            "Bytes of the agent's heap held by live allocations when the last window closed",
            Unit::Bytes,
            m.heap.clone(),
        );
        r.register("segments", "Segments stored", m.segments.clone());
        r.register_with_unit("storage", "Disk the segments take", Unit::Bytes, m.storage.clone());
        r.register_with_unit("process_cpu", "CPU time of the agent's process", Unit::Seconds, m.process_cpu.clone());
        r.register("push_segments", "Segments delivered to a push backend", m.push_segments.clone());
        r.register("push_profiles", "Profiles delivered to a push backend", m.push_profiles.clone());
        r.register_with_unit("push", "Request bodies delivered to a push backend", Unit::Bytes, m.push_bytes.clone());
        r.register("push_retries", "Push requests that failed and were retried", m.push_retries.clone());
        r.register(
            "push_given_up",
            "Segments given up by a push backend, by reason (too_old, rejected, unreadable)",
            m.push_given_up.clone(),
        );
        r.register_with_unit(
            "push_lag",
            "How far behind now a push backend's watermark is",
            Unit::Seconds,
            m.push_lag.clone(),
        );
        r.register("captures", "Deep captures started, by trigger (api, alertmanager, rule)", m.captures.clone());
        r.register("captures_refused", "Captures not started, by reason", m.captures_refused.clone());
        r.register_with_unit(
            "noise",
            "Time stolen from threads per CPU by kind of source (irq, vector, softirq, nmi, thread), estimated from on-CPU samples",
            Unit::Seconds,
            m.noise.clone(),
        );
        r.register(
            "cost_ratio",
            "The agent's cost over the last window as the cost governor measured it, share of one CPU (total: process plus BPF programs; bpf: the programs; budget)",
            m.cost.clone(),
        );
        r.register_with_unit(
            "rate",
            "Rates in effect (the cost governor's): on-CPU samples and thread-state snapshots per second",
            Unit::Other("hertz".into()),
            m.rates.clone(),
        );
        r.register(
            "program_unavailable",
            "1 for each program the kernel would not load or attach: the agent goes on without what it shows (see /api/v1/status)",
            m.unavailable.clone(),
        );
        r.register("rule_fires", "Times a local rule tripped (started a capture or was refused)", m.rule_fires.clone());
        Self { registry: r, ..m }
    }

    /// A capture started; rules count as `rule`, whatever their name.
    pub fn capture_started(&self, trigger: &str) {
        let trigger = if trigger.starts_with("rule:") { "rule" } else { trigger };
        self.captures.get_or_create(&Trigger { trigger: trigger.to_owned() }).inc();
    }

    /// Rules are named in the configuration: a bounded set.
    pub fn rule_fired(&self, rule: &str) {
        self.rule_fires.get_or_create(&RuleName { rule: rule.to_owned() }).inc();
    }

    /// Programs gone without, a bounded set (the programs that can be missed).
    pub fn unavailable(&self, programs: &[crate::bpf::Unavailable]) {
        for u in programs {
            self.unavailable.get_or_create(&Program { program: u.program.clone() }).set(1);
        }
    }

    pub fn capture_refused(&self, reason: &str) {
        self.captures_refused.get_or_create(&Reason { reason: reason.to_owned() }).inc();
    }

    /// The group label of a process generation: its unit, container or cgroup.
    fn group_of(&mut self, p: &Profile, process: Option<u32>) -> String {
        let placement = process.and_then(|id| p.process(id)).map(|i| &i.placement);
        let name =
            placement.and_then(super::target::group_of).map(|t| t.label()).unwrap_or_else(|| "unknown".to_owned());
        if self.groups.contains(&name) {
            return name;
        }
        if self.groups.len() < MAX_GROUPS {
            self.groups.insert(name.clone());
            return name;
        }
        OTHER.to_owned()
    }

    /// Count one window.
    pub fn window(&mut self, w: &Window) {
        let p = &w.profile;
        self.windows.inc();
        self.samples.inc_by(p.samples);
        self.lost_samples.inc_by(p.lost_samples);
        let d = &p.dropped;
        for (reason, n) in [
            ("thread_map_full", d.threads),
            ("exit_ring_full", d.exits),
            ("stack_map_full", d.stacks),
            ("off_cpu_map_full", d.off_cpu_aggregates),
            ("process_events_lost", d.process_events),
            ("snapshot_thread_table_full", d.snapshot_threads),
        ] {
            self.dropped.get_or_create(&Reason { reason: reason.into() }).inc_by(n);
        }
        for (tid, t) in &p.thread_times {
            let group = self.group_of(p, p.thread_process.get(tid).copied());
            self.cpu.get_or_create(&Group { group: group.clone() }).inc_by(t.on_cpu_ns as f64 / 1e9);
            let [runnable, sleeping, disk, other] = t.off_cpu_ns;
            self.runqueue.get_or_create(&Group { group: group.clone() }).inc_by(runnable as f64 / 1e9);
            for (state, ns) in [("sleeping", sleeping), ("disk", disk), ("other", other)] {
                let key = GroupState { group: group.clone(), state: state.into() };
                self.off_cpu.get_or_create(&key).inc_by(ns as f64 / 1e9);
            }
        }
        // Threads by the state snapshots saw them in most in the window.
        let mut by_state = [0i64; 5];
        for (_, s) in p.state_samples.values() {
            let counts = [s.running, s.runnable, s.sleeping, s.disk, s.other];
            if let Some((i, _)) = counts.iter().enumerate().filter(|(_, n)| **n > 0).max_by_key(|(_, n)| **n) {
                by_state[i] += 1;
            }
        }
        for (name, n) in crate::profile::STATE_NAMES.iter().zip(by_state) {
            self.threads.get_or_create(&State { state: (*name).into() }).set(n);
        }
        if let Measurement::Continuous(n) = &w.noise {
            for (cpu, t) in &n.stat {
                let key = Cpu { cpu: cpu.to_string() };
                self.softirq.get_or_create(&key).inc_by(t.softirq_ns as f64 / 1e9);
                self.steal.get_or_create(&key).inc_by(t.steal_ns as f64 / 1e9);
            }
            // Estimated from on-CPU samples, by kind of source (bounded).
            for (cpu, sources) in &n.sampled.sources {
                for (source, samples) in sources {
                    let key = CpuSource { cpu: cpu.to_string(), source: source.kind.as_str().into() };
                    let secs = samples.saturating_mul(n.sampled.period_ns) as f64 / 1e9;
                    self.noise.get_or_create(&key).inc_by(secs);
                }
            }
        }
        if let Some(c) = &p.caches {
            self.rss.set(c.rss_bytes as i64);
            self.heap.set(c.heap_in_use_bytes as i64);
        }
        if let Some(g) = &p.governor {
            for (part, pct) in [("total", g.measured_percent), ("bpf", g.bpf_percent), ("budget", g.budget_percent)] {
                self.cost.get_or_create(&Part { part: part.into() }).set(pct / 100.0);
            }
            for (rate, hz) in [("samples", g.frequency_hz), ("snapshots", g.state_hz)] {
                self.rates.get_or_create(&Rate { rate: rate.into() }).set(hz);
            }
        }
    }

    /// Storage and the process's own CPU, read when scraped.
    pub fn storage(&self, segments: u64, bytes: u64) {
        self.segments.set(segments as i64);
        self.storage.set(bytes as i64);
        let cpu = crate::sys::clock::clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID) as f64 / 1e9;
        let seen = self.process_cpu.get();
        if cpu > seen {
            self.process_cpu.inc_by(cpu - seen);
        }
    }

    /// The push backends' counters, brought up to their statuses.
    pub fn push(&self, statuses: &[crate::export::PushStatus], now_unix_ns: u64) {
        fn up_to(c: &Counter, total: u64) {
            let seen = c.get();
            if total > seen {
                c.inc_by(total - seen);
            }
        }
        for s in statuses {
            let b = Backend { backend: s.backend.to_owned(), url: s.url.clone() };
            up_to(&self.push_segments.get_or_create(&b), s.segments_pushed);
            up_to(&self.push_profiles.get_or_create(&b), s.profiles_pushed);
            up_to(&self.push_bytes.get_or_create(&b), s.bytes_pushed);
            up_to(&self.push_retries.get_or_create(&b), s.retries);
            for (reason, n) in &s.given_up {
                let r = BackendReason { backend: b.backend.clone(), url: b.url.clone(), reason: (*reason).to_owned() };
                up_to(&self.push_given_up.get_or_create(&r), *n);
            }
            self.push_lag.get_or_create(&b).set(now_unix_ns.saturating_sub(s.watermark_unix_ns) as f64 / 1e9);
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The OpenMetrics text as Prometheus' classic text format (0.0.4), for
/// clients that do not ask for OpenMetrics (`promtool check metrics`,
/// curl): a counter's HELP and TYPE name its `_total` series, and there are
/// no UNIT lines and no `# EOF`.
pub fn classic_text(open_metrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_owned());
            }
        }
    }
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_by_their_total() {
        let m = Metrics::new();
        m.windows.inc();
        let open = m.encode().unwrap();
        assert!(open.contains("# TYPE tailprof_windows counter") && open.ends_with("# EOF\n"), "{open}");
        let classic = classic_text(&open);
        assert!(classic.contains("# HELP tailprof_windows_total Windows closed"), "{classic}");
        assert!(classic.contains("# TYPE tailprof_windows_total counter"), "{classic}");
        assert!(classic.contains("tailprof_windows_total 1"), "{classic}");
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"), "{classic}");
        assert!(classic.contains("# TYPE tailprof_resident_memory_bytes gauge"), "{classic}");
    }
}
