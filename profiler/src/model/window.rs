//! A window: what one stretch of a capture measured, symbolized, with
//! the processes and modules it names. `record` writes one (or, with
//! `--window`, one per stretch and their merge); the agent stores and
//! merges many.
//!
//! Windows merge into one: the span is the union, and every total (samples,
//! exact on-CPU and off-CPU time, snapshots, noise counts, drops) is the
//! sum. Merging is associative. Processes are matched by their identity
//! ([`ProcessKey`]) and modules by theirs ([`ModuleKey`]), so windows of
//! different collectors merge too: the indices inside one window are its
//! own and are renumbered.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{Hash, Hasher},
    sync::Arc,
};

use crate::{
    enrich::{fd_target::BlockedOn, process::ProcessInfo},
    model::stats::{CounterExtras, SamplerStats},
    noise::{continuous::ContinuousRaw, Measurement},
    profile::{Frame, Frames, LimitHit, Module, OffCpuStack, Profile, Stack, StateSamples},
};

/// One window of a capture.
#[derive(Debug, Clone)]
pub struct Window {
    /// 0, 1, 2, … in the collector's order; a merge keeps the first's.
    pub id: u64,
    pub profile: Profile,
    /// Noise (and the deep tier's latency histograms).
    pub noise: Measurement,
}

/// Why two windows cannot be merged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("windows of a deep capture do not merge: a deep capture is one window")]
    Deep,
    #[error("a window of the {0} tier cannot be merged with one of the {1} tier")]
    Tiers(String, String),
}

impl Window {
    /// `self` followed by `later`.
    pub fn merge(&self, later: &Window) -> Result<Window, MergeError> {
        if self.profile.tier != later.profile.tier {
            return Err(MergeError::Tiers(self.profile.tier.name().into(), later.profile.tier.name().into()));
        }
        let noise = match (&self.noise, &later.noise) {
            (Measurement::Continuous(a), Measurement::Continuous(b)) => Measurement::Continuous(merge_noise(a, b)),
            _ => return Err(MergeError::Deep),
        };
        Ok(Window { id: self.id.min(later.id), profile: merge_profiles(&self.profile, &later.profile), noise })
    }
}

/// What identifies a process generation across windows and collectors: its
/// pid, and when its generation began (a fork or exec seen, CLOCK_MONOTONIC,
/// unique per boot), or for one that existed before, its start time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessKey {
    pub pid: u32,
    pub since_ns: u64,
    pub start_s: Option<u64>,
}

impl ProcessKey {
    pub fn of(p: &ProcessInfo) -> Self {
        let start_s = (p.since_ns == 0).then(|| p.start_time_unix_ns.map(|ns| ns / 1_000_000_000)).flatten();
        Self { pid: p.pid, since_ns: p.since_ns, start_s }
    }
}

/// What identifies a module across windows: its path and build id (a
/// file's contents, when it has one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModuleKey {
    pub path: String,
    pub build_id: Option<String>,
}

impl ModuleKey {
    pub fn of(m: &Module) -> Self {
        Self { path: m.path.clone(), build_id: m.build_id.clone() }
    }
}

fn remap_frames(frames: &[Frame], modules: &[u32]) -> Vec<Frame> {
    frames
        .iter()
        .map(|f| Frame { module: f.module.and_then(|m| modules.get(m).map(|&i| i as usize)), ..f.clone() })
        .collect()
}

/// Index of process `id` of a window after the union (`u32::MAX`: unknown).
fn remap_process(id: u32, processes: &[u32]) -> u32 {
    processes.get(id as usize).copied().unwrap_or(u32::MAX)
}

/// Sum entries with equal keys, keeping the first one's place.
fn dedup_by<T, K: Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K, add: impl Fn(&mut T, &T)) -> Vec<T> {
    let mut at: HashMap<K, usize> = HashMap::with_capacity(items.len());
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        match at.get(&key(&item)) {
            Some(&i) => add(&mut out[i], &item),
            None => {
                at.insert(key(&item), out.len());
                out.push(item);
            }
        }
    }
    out
}

fn sum_maps<K: Ord + Clone, V: Clone>(
    a: &BTreeMap<K, V>,
    b: &BTreeMap<K, V>,
    add: impl Fn(&mut V, &V),
) -> BTreeMap<K, V> {
    let mut out = a.clone();
    for (k, v) in b {
        match out.get_mut(k) {
            Some(o) => add(o, v),
            None => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn add_extras(a: &mut CounterExtras, b: &CounterExtras) {
    a.voluntary_switches += b.voluntary_switches;
    a.involuntary_switches += b.involuntary_switches;
    a.blkio_delay_ns = match (a.blkio_delay_ns, b.blkio_delay_ns) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0) + y.unwrap_or(0)),
    };
    // Independent estimates: their errors add in quadrature.
    for (x, y) in a.sampled_ci95_ns.iter_mut().zip(b.sampled_ci95_ns) {
        *x = ((*x as f64).powi(2) + (y as f64).powi(2)).sqrt().round() as u64;
    }
}

fn add_sampler_stats(a: &SamplerStats, b: &SamplerStats) -> SamplerStats {
    let weight_sum = a.weight_sum + b.weight_sum;
    let weight_square_sum = a.weight_square_sum + b.weight_square_sum;
    SamplerStats {
        snapshots: a.snapshots + b.snapshots,
        records: a.records + b.records,
        unchanged: a.unchanged + b.unchanged,
        cpu_ns: a.cpu_ns + b.cpu_ns,
        read_cpu_ns: a.read_cpu_ns + b.read_cpu_ns,
        skipped: a.skipped + b.skipped,
        threads_dropped: a.threads_dropped + b.threads_dropped,
        weight_sum,
        weight_square_sum,
        effective_snapshots: (weight_sum as f64).powi(2) / weight_square_sum.max(1) as f64,
        realtime: a.realtime || b.realtime,
    }
}

fn merge_limits(a: &[LimitHit], b: &[LimitHit]) -> Vec<LimitHit> {
    let all: Vec<LimitHit> = a.iter().chain(b).cloned().collect();
    dedup_by(all, |l| (l.what.clone(), l.flag.clone()), |x, y| x.dropped += y.dropped)
}

fn merge_blocked_on(a: &[BlockedOn], b: &[BlockedOn]) -> Vec<BlockedOn> {
    let all: Vec<BlockedOn> = a.iter().chain(b).cloned().collect();
    let mut v = dedup_by(all, |o| (o.syscall.clone(), o.target.clone()), |x, y| x.snapshots += y.snapshots);
    v.sort_by(|x, y| y.snapshots.cmp(&x.snapshots).then_with(|| x.target.cmp(&y.target)));
    v
}

/// `a` followed by `b`.
pub fn merge_profiles(a: &Profile, b: &Profile) -> Profile {
    let mut m = ProfileMerger::new(a.clone());
    m.add(b);
    m.finish()
}

/// Identity of an on-CPU stack entry within a merge.
fn stack_key(s: &Stack) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    (s.process, s.pid, s.tid, &s.comm, s.syscall, &s.frames).hash(&mut h);
    h.finish()
}

fn same_stack(x: &Stack, y: &Stack) -> bool {
    (x.process, x.pid, x.tid, x.syscall) == (y.process, y.pid, y.tid, y.syscall)
        && x.comm == y.comm
        && x.frames == y.frames
}

fn off_cpu_key(s: &OffCpuStack) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    (s.process, s.pid, s.tid, &s.comm, s.state, s.syscall).hash(&mut h);
    (s.waker_tid, &s.waker_comm, s.stack_lost, &s.frames).hash(&mut h);
    h.finish()
}

fn same_off_cpu(x: &OffCpuStack, y: &OffCpuStack) -> bool {
    (x.process, x.pid, x.tid, x.state, x.syscall, x.waker_tid, x.stack_lost)
        == (y.process, y.pid, y.tid, y.state, y.syscall, y.waker_tid, y.stack_lost)
        && x.comm == y.comm
        && x.waker_comm == y.waker_comm
        && x.frames == y.frames
}

/// Merges profiles one after another in place, keeping its indices of
/// processes, modules and stacks between additions: adding a window costs
/// in proportion to that window, however many came before.
pub struct ProfileMerger {
    p: Profile,
    modules: HashMap<ModuleKey, u32>,
    processes: HashMap<ProcessKey, u32>,
    /// Stack hash → indices of entries with that hash.
    stacks: HashMap<u64, Vec<usize>>,
    off_cpu: HashMap<u64, Vec<usize>>,
}

impl ProfileMerger {
    pub fn new(first: Profile) -> Self {
        let mut m = Self {
            p: Profile { stacks: Vec::new(), off_cpu: Vec::new(), modules: Vec::new(), processes: Vec::new(), ..first },
            modules: HashMap::new(),
            processes: HashMap::new(),
            stacks: HashMap::new(),
            off_cpu: HashMap::new(),
        };
        // The first profile's entries go through the same union, so that its
        // own duplicates (if any) are summed as a later profile's would be.
        let first = Profile {
            stacks: first.stacks,
            off_cpu: first.off_cpu,
            modules: first.modules,
            processes: first.processes,
            ..Profile::default()
        };
        m.absorb_entries(&first);
        m
    }

    /// The union of this profile's processes and modules with `b`'s, and
    /// `b`'s stacks renumbered into it.
    fn absorb_entries(&mut self, b: &Profile) {
        let module_map: Vec<u32> = b
            .modules
            .iter()
            .map(|m| {
                *self.modules.entry(ModuleKey::of(m)).or_insert_with(|| {
                    self.p.modules.push(m.clone());
                    (self.p.modules.len() - 1) as u32
                })
            })
            .collect();
        // b's stacks that share frames share them here too.
        let mut remapped: HashMap<*const Frame, Frames> = HashMap::new();
        let mut remap = |frames: &Frames| -> Frames {
            remapped
                .entry(Arc::as_ptr(frames).cast())
                .or_insert_with(|| remap_frames(frames, &module_map).into())
                .clone()
        };
        let process_map: Vec<u32> = b
            .processes
            .iter()
            .map(|p| {
                *self.processes.entry(ProcessKey::of(p)).or_insert_with(|| {
                    let id = self.p.processes.len() as u32;
                    self.p.processes.push(ProcessInfo { id, ..p.clone() });
                    id
                })
            })
            .collect();
        for s in &b.stacks {
            let s = Stack { frames: remap(&s.frames), process: remap_process(s.process, &process_map), ..s.clone() };
            let bucket = self.stacks.entry(stack_key(&s)).or_default();
            match bucket.iter().find(|&&i| same_stack(&self.p.stacks[i], &s)) {
                Some(&i) => {
                    let o = &mut self.p.stacks[i];
                    // Times stay only while they account for every sample.
                    if o.times.weight() == o.count && s.times.weight() == s.count {
                        o.times.extend(&s.times);
                    } else {
                        o.times = Default::default();
                    }
                    o.count += s.count;
                }
                None => {
                    bucket.push(self.p.stacks.len());
                    self.p.stacks.push(s);
                }
            }
        }
        for s in &b.off_cpu {
            let s =
                OffCpuStack { frames: remap(&s.frames), process: remap_process(s.process, &process_map), ..s.clone() };
            let bucket = self.off_cpu.entry(off_cpu_key(&s)).or_default();
            match bucket.iter().find(|&&i| same_off_cpu(&self.p.off_cpu[i], &s)) {
                Some(&i) => {
                    let o = &mut self.p.off_cpu[i];
                    o.ns += s.ns;
                    o.count += s.count;
                }
                None => {
                    bucket.push(self.p.off_cpu.len());
                    self.p.off_cpu.push(s);
                }
            }
        }
        for (tid, id) in &b.thread_process {
            self.p.thread_process.insert(*tid, remap_process(*id, &process_map));
        }
    }

    /// Add `b`, which follows everything added so far. Sample times are
    /// a window's own: a merge of several keeps none, so that a day's
    /// query holds counts, not every sample (one window's times feed OTLP).
    pub fn add(&mut self, b: &Profile) {
        for s in &mut self.p.stacks {
            s.times = Default::default();
        }
        self.absorb_entries(b);
        for s in &mut self.p.stacks {
            s.times = Default::default();
        }
        let a = &mut self.p;
        add_into(&mut a.thread_times, &b.thread_times, |x, y| {
            x.on_cpu_ns += y.on_cpu_ns;
            for (o, p) in x.off_cpu_ns.iter_mut().zip(y.off_cpu_ns) {
                *o += p;
            }
            // Where the thread was at the later window's end.
            (x.tgid, x.state, x.since_ns) = (y.tgid, y.state, y.since_ns);
        });
        add_into(&mut a.state_samples, &b.state_samples, |x, y| {
            let (s, t) = (&mut x.1, &y.1);
            x.0 = y.0;
            *s = StateSamples {
                running: s.running + t.running,
                runnable: s.runnable + t.runnable,
                sleeping: s.sleeping + t.sleeping,
                disk: s.disk + t.disk,
                other: s.other + t.other,
            };
        });
        add_into(&mut a.counter_extras, &b.counter_extras, add_extras);
        a.comms.extend(b.comms.iter().map(|(k, v)| (*k, v.clone())));
        for t in &b.untrusted_times {
            if !a.untrusted_times.contains(t) {
                a.untrusted_times.push(*t);
            }
        }
        for (tid, v) in &b.blocked_on {
            let merged = merge_blocked_on(a.blocked_on.get(tid).map_or(&[][..], Vec::as_slice), v);
            a.blocked_on.insert(*tid, merged);
        }
        a.governor = b.governor.clone().or_else(|| a.governor.take());
        a.start_unix_ns = a.start_unix_ns.min(b.start_unix_ns);
        a.duration_ns += b.duration_ns;
        a.lost_samples += b.lost_samples;
        a.dropped_events += b.dropped_events;
        a.dropped = a.dropped.plus(&b.dropped);
        a.window_start_ns = a.window_start_ns.min(b.window_start_ns);
        a.window_end_ns = a.window_end_ns.max(b.window_end_ns);
        a.state_sampler = add_sampler_stats(&a.state_sampler, &b.state_sampler);
        a.limits_hit = merge_limits(&a.limits_hit, &b.limits_hit);
        // Counts of the collector's life so far: the later window's.
        a.enrichment = b.enrichment;
        a.symbolize_ns += b.symbolize_ns;
        a.unwind = b.unwind.clone().or_else(|| a.unwind.take());
        a.caches = b.caches.clone().or_else(|| a.caches.take());
    }

    pub fn finish(mut self) -> Profile {
        self.p.samples = self.p.stacks.iter().map(|s| s.count).sum();
        self.p
    }
}

fn add_into<K: Ord + Clone, V: Clone>(a: &mut BTreeMap<K, V>, b: &BTreeMap<K, V>, add: impl Fn(&mut V, &V)) {
    for (k, v) in b {
        match a.get_mut(k) {
            Some(o) => add(o, v),
            None => {
                a.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The continuous tier's noise of `a` followed by `b`.
pub fn merge_noise(a: &ContinuousRaw, b: &ContinuousRaw) -> ContinuousRaw {
    use crate::noise::sampled::{Delivered, SampledRaw};
    let add_table = |x: &BTreeMap<String, BTreeMap<u32, u64>>, y: &BTreeMap<String, BTreeMap<u32, u64>>| {
        sum_maps(x, y, |p, q| *p = sum_maps(p, q, |m, n| *m += n))
    };
    let (s, t) = (&a.sampled, &b.sampled);
    let sampled = SampledRaw {
        frequency_hz: s.frequency_hz,
        period_ns: s.period_ns,
        sources: sum_maps(&s.sources, &t.sources, |p, q| *p = sum_maps(p, q, |m, n| *m += n)),
        delivered: sum_maps(&s.delivered, &t.delivered, |p: &mut Delivered, q| {
            p.kept += q.kept;
            p.weighted += q.weighted;
        }),
        idle_samples: s.idle_samples + t.idle_samples,
        lost_samples: s.lost_samples + t.lost_samples,
        threads_guessed: s.threads_guessed + t.threads_guessed,
        kernel_names_evicted: t.kernel_names_evicted.max(s.kernel_names_evicted),
        restricted_to: s.restricted_to.clone().or_else(|| t.restricted_to.clone()),
    };
    let mut irq_names = a.irq_names.clone();
    irq_names.extend(b.irq_names.iter().map(|(k, v)| (*k, v.clone())));
    ContinuousRaw {
        window_start_ns: a.window_start_ns.min(b.window_start_ns),
        window_end_ns: a.window_end_ns.max(b.window_end_ns),
        cpus: a.cpus.clone(),
        stat: sum_maps(&a.stat, &b.stat, |x, y| {
            x.irq_ns += y.irq_ns;
            x.softirq_ns += y.softirq_ns;
            x.steal_ns += y.steal_ns;
        }),
        stat_since_boot: b.stat_since_boot.clone(),
        kernel_interrupts: add_table(&a.kernel_interrupts, &b.kernel_interrupts),
        kernel_softirqs: add_table(&a.kernel_softirqs, &b.kernel_softirqs),
        irq_names,
        sampled,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use profiler_common::ThreadTimes;

    use super::*;
    use crate::profile::FrameKind;

    fn frame(name: &str, module: Option<usize>) -> Frame {
        Frame::new(Arc::from(name), if module.is_some() { FrameKind::User } else { FrameKind::Kernel }, module, 0x10)
    }

    fn process(id: u32, pid: u32, since_ns: u64) -> ProcessInfo {
        ProcessInfo { id, pid, since_ns, comm: format!("p{pid}"), ..ProcessInfo::default() }
    }

    /// A window of `tag`: modules and processes in an order of its own,
    /// some shared with the other windows, some not.
    fn window(tag: u64, modules: &[&str], procs: &[(u32, u64)]) -> Window {
        let modules: Vec<Module> = modules.iter().map(|p| Module::new((*p).into(), Some(format!("id-{p}")))).collect();
        let processes: Vec<ProcessInfo> =
            procs.iter().enumerate().map(|(i, &(pid, since))| process(i as u32, pid, since)).collect();
        let mut p = Profile {
            modules,
            processes,
            start_unix_ns: 1_000 * tag,
            duration_ns: 1_000,
            window_start_ns: 1_000 * tag,
            window_end_ns: 1_000 * (tag + 1),
            frequency_hz: 99,
            state_hz: 20,
            ..Profile::default()
        };
        for (i, proc_) in procs.iter().enumerate() {
            let (pid, tid) = (proc_.0, proc_.0 + 1);
            p.stacks.push(Stack {
                pid,
                tid,
                comm: "worker".into(),
                process: i as u32,
                syscall: -1,
                frames: vec![frame("main", Some(i % p.modules.len())), frame("schedule", None)].into(),
                count: 3 + tag,
                times: Default::default(),
            });
            let s = p.stacks.last_mut().expect("just pushed");
            for k in 0..s.count {
                s.times.push(1_000 * tag + k, 1);
            }
            p.off_cpu.push(OffCpuStack {
                pid,
                tid,
                comm: "worker".into(),
                process: i as u32,
                state: profiler_common::STATE_SLEEPING,
                syscall: 0,
                waker_tid: profiler_common::NO_WAKER,
                waker_comm: Box::default(),
                frames: vec![frame("read", Some(0))].into(),
                stack_lost: false,
                ns: 100 * (tag + 1),
                count: 1,
            });
            p.thread_times.insert(
                tid,
                ThreadTimes { tgid: pid, state: 0, since_ns: 0, on_cpu_ns: 10 * (tag + 1), off_cpu_ns: [1, 2, 3, 4] },
            );
            p.state_samples.insert(tid, (pid, StateSamples { running: 1, sleeping: tag, ..StateSamples::default() }));
            p.thread_process.insert(tid, i as u32);
            p.comms.insert(tid, format!("worker-{tag}").into());
            p.blocked_on
                .insert(tid, vec![BlockedOn { syscall: "read".into(), target: "pipe:[1]".into(), snapshots: tag + 1 }]);
        }
        p.samples = p.stacks.iter().map(|s| s.count).sum();
        p.lost_samples = tag;
        p.dropped.stacks = tag;
        p.state_sampler.snapshots = 20;
        p.state_sampler.weight_sum = 20;
        p.state_sampler.weight_square_sum = 20;
        let mut noise =
            ContinuousRaw { window_start_ns: 1_000 * tag, window_end_ns: 1_000 * (tag + 1), ..Default::default() };
        noise.kernel_interrupts.entry("LOC".into()).or_default().insert(0, 250 + tag);
        noise.sampled.sources.entry(1).or_default().insert(
            crate::noise::sampled::SampledSource {
                kind: crate::noise::report::SourceKind::Softirq,
                name: "NET_RX".into(),
            },
            tag + 1,
        );
        Window { id: tag, profile: p, noise: Measurement::Continuous(noise) }
    }

    fn three() -> (Window, Window, Window) {
        (
            window(0, &["/bin/a", "/lib/c"], &[(100, 0), (200, 0)]),
            // A new generation of pid 100 (exec at 1500), and module order reversed.
            window(1, &["/lib/c", "/bin/a", "/lib/d"], &[(200, 0), (100, 1_500)]),
            window(2, &["/lib/d"], &[(100, 1_500), (300, 0), (200, 0)]),
        )
    }

    const TOTALS: [&str; 8] = [
        "samples",
        "stack counts",
        "exact times",
        "off-CPU stack time",
        "snapshots by state",
        "drops and snapshots",
        "interrupt counts",
        "sampled noise",
    ];

    /// Every total a window reports, in the order of [`TOTALS`].
    fn totals(w: &Window) -> [u64; 8] {
        let p = &w.profile;
        let Measurement::Continuous(n) = &w.noise else { unreachable!("continuous windows") };
        let off: u64 = p.thread_times.values().map(|t| t.off_cpu_ns.iter().sum::<u64>()).sum();
        [
            p.samples,
            p.stacks.iter().map(|s| s.count).sum(),
            p.thread_times.values().map(|t| t.on_cpu_ns).sum::<u64>() + off,
            p.off_cpu.iter().map(|s| s.ns).sum(),
            p.state_samples.values().map(|(_, s)| s.running + s.sleeping).sum(),
            p.lost_samples + p.dropped.total() + p.state_sampler.snapshots,
            n.kernel_interrupts.values().flat_map(|c| c.values()).sum(),
            n.sampled.sources.values().flat_map(|c| c.values()).sum(),
        ]
    }

    #[test]
    fn merging_is_associative() {
        let (a, b, c) = three();
        let left = a.merge(&b).unwrap().merge(&c).unwrap();
        let right = a.merge(&b.merge(&c).unwrap()).unwrap();
        assert_eq!(format!("{:?}", left), format!("{:?}", right));
    }

    #[test]
    fn merging_conserves_every_total_and_keeps_identities() {
        let (a, b, c) = three();
        let m = a.merge(&b).unwrap().merge(&c).unwrap();
        let merged = totals(&m);
        for (i, what) in TOTALS.iter().enumerate() {
            let sum: u64 = [&a, &b, &c].iter().map(|w| totals(w)[i]).sum();
            assert_eq!(merged[i], sum, "{what}");
        }
        let p = &m.profile;
        assert_eq!((p.window_start_ns, p.window_end_ns, p.duration_ns), (0, 3_000, 3_000));
        // Pid 100 before and after its exec, 200 and 300: four generations.
        let keys: Vec<(u32, u64)> = p.processes.iter().map(|p| (p.pid, p.since_ns)).collect();
        assert_eq!(keys, [(100, 0), (200, 0), (100, 1_500), (300, 0)]);
        assert_eq!(p.modules.len(), 3, "modules matched by path and build id");
        // Every stack names the right process and module after renumbering.
        for s in &p.stacks {
            let proc_ = &p.processes[s.process as usize];
            assert_eq!(proc_.pid, s.pid);
            let m = s.frames[0].module.expect("user frame");
            assert!(p.modules.get(m).is_some());
        }
        // Same thread, same process generation, same stack: one entry per window set.
        let of_300: Vec<&Stack> = p.stacks.iter().filter(|s| s.pid == 300).collect();
        assert_eq!(of_300.len(), 1);
        // Sample times are one window's: a merge keeps none.
        assert!(p.stacks.iter().all(|s| s.times.is_empty()), "a merge of windows holds no sample times");
        let one = ProfileMerger::new(a.profile.clone()).finish();
        assert_eq!(
            one.stacks.iter().map(|s| s.times.clone()).collect::<Vec<_>>(),
            a.profile.stacks.iter().map(|s| s.times.clone()).collect::<Vec<_>>(),
            "one window keeps its times"
        );
        let blocked = &p.blocked_on[&201];
        assert_eq!(blocked[0].snapshots, 1 + 2 + 3, "blocked-on sightings add up");
        assert_eq!(&*p.comms[&101], "worker-2", "the latest name wins");
    }

    #[test]
    fn deep_windows_and_mixed_tiers_do_not_merge() {
        let (a, _, _) = three();
        let mut deep = a.clone();
        deep.noise =
            Measurement::Deep { noise: Default::default(), histograms: Default::default(), names: Default::default() };
        assert_eq!(a.merge(&deep).unwrap_err(), MergeError::Deep);
        let mut other = a.clone();
        other.profile.tier = crate::tier::Tier::Continuous;
        assert!(matches!(a.merge(&other), Err(MergeError::Tiers(..))));
    }
}
