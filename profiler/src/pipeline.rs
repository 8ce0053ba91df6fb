//! The pipeline every capture runs: load the kernel side, collect window
//! by window, and hand each symbolized [`Window`] to the sinks.
//!
//! ```text
//! bpf.rs (load) → capture.rs (collect: ring, snapshots, exits, governor)
//!   → enrich/, unwind/, stacks.rs (processes, modules, user stacks, long-lived)
//!   → continuous.rs | off_cpu.rs + sched_times.rs (thread times and off-CPU stacks of the window)
//!   → symbolize.rs (names, cached for the collector's life)
//!   → model/window.rs (the Window) → sinks (record's directories, the agent's store)
//! ```
//!
//! `record` is the case of one window (or, with `--window`, of several and
//! their merge). The continuous tier's windows roll over without stopping
//! anything: each ends with a snapshot of every thread's cumulative counters,
//! which is the next one's start. A deep capture is one window, as its hooks'
//! maps are read once, at its end.

use std::{
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use profiler_common::Counter;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::{
    bpf::{Loaded, SamplingConfig},
    capture::{self, Collector, Cut, EndReason, OnProgress, Snapshots, WindowTaken},
    config::RecordConfig,
    continuous,
    enrich::cgroup_filter::{CgroupFilter, Plan},
    governor::{Governor, Policy},
    model::{
        stats::{CacheReport, CacheUse},
        window::Window,
    },
    noise::{collect::KernelCounts, Measurement},
    off_cpu::{self, RawOffCpu, StackResolver},
    preflight,
    profile::{Dropped, LimitHit, Profile, Selection, StateSamples},
    sched_times,
    snapshot_taker::SnapshotTaker,
    state_sampler::StateSampler,
    symbolize::{MAX_KERNEL_NAMES, MAX_USER_CACHE},
    tier::Tier,
    unwinding::SampleUnwinder,
    Result,
};

/// A consumer of windows: `record`'s directory writers, the agent's store,
/// metrics and pushers.
pub trait WindowSink {
    /// The capture can start (its settings are checked): make ready, e.g.
    /// create an output directory. Nothing is loaded yet.
    fn open(&mut self) -> Result<()> {
        Ok(())
    }

    /// The programs are attached and the first window is open; those in
    /// `unavailable` could not be (the policy let the capture go on).
    fn collecting(&mut self, _unavailable: &[crate::bpf::Unavailable]) {}

    fn window(&mut self, window: &Arc<Window>) -> Result<()>;

    /// The window is freed: finish what may wait on the disk (the store's
    /// write and fsync), which no query should wait on.
    fn window_done(&mut self) -> Result<()> {
        Ok(())
    }
}

/// How a pipeline run ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub end: EndReason,
    pub windows: u64,
}

/// Cumulative counters of the kernel side, read at each window's end: a
/// window's are the growth since the last.
#[derive(Debug, Clone, Copy, Default)]
struct KernelCounters {
    lost_samples: u64,
    idle_samples: u64,
    dropped: Dropped,
}

impl KernelCounters {
    fn read(loaded: &Loaded) -> Result<Self> {
        let c = |c| loaded.counter(c);
        Ok(Self {
            lost_samples: c(Counter::LostSamples)?,
            idle_samples: c(Counter::IdleSamples)?,
            dropped: Dropped {
                threads: c(Counter::ThreadMapFull)?,
                exits: c(Counter::LostExits)?,
                stacks: c(Counter::StackMapFull)?,
                off_cpu_aggregates: c(Counter::OffCpuMapFull)?,
                process_events: c(Counter::LostProcessEvents)?,
                // Counted in user space, per window.
                snapshot_threads: 0,
            },
        })
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            lost_samples: self.lost_samples.saturating_sub(before.lost_samples),
            idle_samples: self.idle_samples.saturating_sub(before.idle_samples),
            dropped: self.dropped.since(&before.dropped),
        }
    }
}

/// What stays the same for every window of a run.
struct Run<'a> {
    args: &'a RecordConfig,
    config: SamplingConfig,
    selection: Selection,
    continuous: bool,
    delayacct: bool,
    /// Wall-clock and CLOCK_MONOTONIC time of the first window's start.
    start_unix_ns: u64,
    first_start_ns: u64,
}

/// Where the open window began, and the counts read there.
struct Open {
    start_ns: u64,
    kernel: KernelCounts,
    counters: KernelCounters,
    started: Instant,
}

/// Run a capture as `args` say, window by window, handing each window to
/// every sink in turn. Ends when the duration is up or `cancel` fires (the
/// open window is then closed short and handed on).
pub async fn run(
    args: &RecordConfig,
    progress: Option<OnProgress>,
    sinks: &mut [&mut dyn WindowSink],
    cancel: &crate::sys::cancel::Cancel,
) -> Result<Outcome> {
    let state_hz = args.state_hz;
    let (btf, offsets) = preflight::kernel_layout(&args.btf)?;
    preflight::check_perf_events()?;
    let mut selection = args.selection.clone();
    let mut pids = Vec::with_capacity(selection.pids.len());
    for &pid in &selection.pids {
        pids.push(preflight::resolve_pid(pid)?);
    }
    pids.sort_unstable();
    pids.dedup();
    selection.pids = pids.clone();
    let cgroup_plan = Plan::for_selection(&selection);
    for sink in sinks.iter_mut() {
        sink.open()?;
    }
    preflight::raise_memlock_limit();

    let continuous = args.tier == Tier::Continuous;
    let config = SamplingConfig {
        frequency_hz: args.frequency_hz,
        pids,
        comm: selection.comm.clone(),
        cgroup_filter: cgroup_plan.as_ref().map(|p| p.ids.clone()),
        off_cpu: args.off_cpu,
        offsets,
        max_threads: args.max_threads,
        max_stacks: args.max_stacks,
        unwind: args.unwind,
        user_stack_bytes: args.user_stack_bytes,
        tier: args.tier,
        noise: args.tier == Tier::Deep,
        syscall_hooks: crate::latency::wants_syscall_hooks(args.syscall_latency, &args.slos),
        programs: args.programs.clone(),
        ..SamplingConfig::default()
    };
    let mut loaded = Loaded::load(btf.as_ref(), &config)?;
    drop(btf);
    crate::sys::mem::release_free_memory();
    let ring = loaded.take_events()?;
    let cgroup_filter = match cgroup_plan {
        Some(plan) => Some(CgroupFilter::new(loaded.take_cgroup_filter(&plan.ids)?, plan)),
        None => None,
    };
    let (exits, snapshots) = if let Some(link) = loaded.snapshot_link.take() {
        let taker = SnapshotTaker::start(link, loaded.take_snap_config()?, state_hz)
            .map_err(|source| crate::Error::Io { what: "start the snapshot thread", source })?;
        let snapshots = Snapshots {
            sampler: match continuous {
                true => StateSampler::new(args.max_threads),
                false => StateSampler::new(args.max_threads).with_hook_keys(),
            },
            taker,
            stacks: match continuous {
                true => None,
                false => Some(StackResolver::new(loaded.take_stacks()?)),
            },
            hz: state_hz,
            blocked: (args.unwind != crate::config::UnwindMethod::Fp)
                .then(|| crate::blocked_stacks::BlockedStacks::new(args.user_stack_bytes, &config.pids, state_hz)),
            copy_all: continuous,
            task_exits: continuous.then(|| loaded.take_task_exits()).transpose()?,
            seen: Some(loaded.take_snap_seen()?),
        };
        let exits = match continuous {
            true => None,
            false => Some(loaded.take_exits()?),
        };
        (exits, Some(snapshots))
    } else {
        (None, None)
    };
    let seeded_ns = if args.off_cpu && !continuous {
        sched_times::seed(&mut loaded.threads()?)
    } else {
        crate::sys::clock::monotonic_ns()
    };
    // The noise hooks count from here too.
    loaded.set_window_start(seeded_ns)?;
    let kernel_before = KernelCounts::now();
    let start_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    tracing::info!(cpus = loaded.cpus.len(), "capturing");
    let unwinder = match args.unwind {
        crate::config::UnwindMethod::Fp => None,
        crate::config::UnwindMethod::Dwarf => Some(SampleUnwinder::new(None)),
        crate::config::UnwindMethod::Auto => Some(SampleUnwinder::new(Some(loaded.take_fp_pids()?))),
    };
    let governed = match args.cpu_budget {
        Some(budget) => Some(capture::Governed {
            governor: Governor::new(
                Policy::new(budget, state_hz.max(1), args.frequency_hz),
                loaded.outside_program_fds(),
            ),
            rates: loaded.take_rates()?,
        }),
        None => None,
    };
    let mut collector = Collector::start(
        ring,
        exits,
        snapshots,
        cgroup_filter,
        unwinder,
        capture::Plan {
            duration: args.duration,
            bounds: continuous && args.off_cpu,
            noise_sampling_hz: continuous.then_some(args.frequency_hz),
            cancel: cancel.clone(),
            progress,
            profile: true,
        },
        governed,
    )
    .await?;
    // A collector of many windows keeps the modules it parsed.
    collector.sinks.names.keep_parsed = args.window.is_some_and(|w| w < args.duration);
    collector.sinks.names.symbols_only = !args.debug_info;
    for sink in sinks.iter_mut() {
        sink.collecting(&loaded.unavailable);
    }
    // The continuous tier's windows are those of its bound snapshots.
    let first_start_ns = collector.opening.as_ref().map_or(seeded_ns, |o| o.at_ns);
    let run = Run {
        args,
        config,
        selection,
        continuous,
        delayacct: continuous::delay_accounting_on(),
        start_unix_ns,
        first_start_ns,
    };
    // Deep captures are one window: their hooks' maps are read at the end.
    let window_len = match args.window {
        Some(w) if continuous => w,
        _ => args.duration,
    };
    let mut open = Open {
        start_ns: first_start_ns,
        kernel: kernel_before,
        counters: KernelCounters::default(),
        started: collector.started(),
    };
    let mut id = 0u64;
    let end = loop {
        let cut = collector.collect_until(open.started + window_len).await?;
        tracing::debug!(rss_kib = crate::sys::mem::rss_bytes() >> 10, "closing a window");
        // What the window's build runs is all the code resident at its peak.
        crate::sys::mem::drop_clean_file_pages(crate::sys::mem::Code::Dropped);
        let taken = collector.close_window().await?;
        let kernel_after = KernelCounts::now();
        let counters = KernelCounters::read(&loaded)?;
        let next = Open { start_ns: taken.end_ns, kernel: kernel_after.clone(), counters, started: Instant::now() };
        let single = id == 0 && cut != Cut::Boundary;
        let live = live_sets(taken.closing.as_deref());
        {
            // From its build until the sinks are done with it, the window is
            // the one piece of window-sized work.
            let _one = crate::sys::mem::window_sized();
            // The processes the eviction after it keeps.
            let evicting = live.as_ref().filter(|_| cut == Cut::Boundary).map(|(_, tgids)| tgids);
            let mut window = build_window(
                &run,
                &mut loaded,
                &mut collector,
                taken,
                &open,
                (kernel_after, counters),
                single,
                evicting,
            )?;
            window.id = id;
            if let Some((tids, tgids)) = live.as_ref().filter(|_| cut == Cut::Boundary) {
                // Between windows, never inside one.
                let n = collector.evict(tids, tgids);
                tracing::debug!(evicted = n, "caches trimmed between windows");
            }
            window.profile.caches = Some(cache_report(&collector, id + 1));
            let window = Arc::new(window);
            for sink in sinks.iter_mut() {
                sink.window(&window)?;
            }
        }
        crate::sys::mem::release_free_memory();
        for sink in sinks.iter_mut() {
            sink.window_done()?;
        }
        if let Cut::End(reason) = cut {
            break reason;
        }
        open = next;
        id += 1;
    };
    Ok(Outcome { end, windows: id + 1 })
}

/// The threads and processes a closing snapshot listed.
fn live_sets(closing: Option<&crate::state_sampler::CounterRead>) -> Option<(FxHashSet<u32>, FxHashSet<u32>)> {
    let c = closing?;
    Some((c.threads().iter().map(|t| t.tid).collect(), c.threads().iter().map(|t| t.tgid).collect()))
}

/// Sizes and evictions of the collector's long-lived caches.
fn cache_report(collector: &Collector, windows: u64) -> CacheReport {
    let mut caches = std::collections::BTreeMap::new();
    let mut put = |name: &str, held: u64, evicted: u64, bound: Option<u64>| {
        caches.insert(name.to_owned(), CacheUse { held, evicted, bound });
    };
    let sinks = &collector.sinks;
    let names = &sinks.names;
    put("processes", sinks.processes.len() as u64, sinks.processes.evicted, None);
    put("address_spaces", sinks.stacks.processes_held(), sinks.stacks.evicted, None);
    put("modules", sinks.stacks.modules_held(), 0, None);
    put(
        "kernel_names",
        names.stats.kernel,
        names.stats.evicted - names.stats.user_evicted,
        Some(MAX_KERNEL_NAMES as u64),
    );
    put("user_names", names.stats.user, names.stats.user_evicted, Some(MAX_USER_CACHE as u64));
    if let Some(u) = sinks.unwinder.as_ref() {
        let s = u.unwinder.stats();
        let (modules, dropped) = u.unwinder.modules_held();
        put("unwind_modules", modules, dropped, None);
        put("unwind_tables_bytes", s.cache_bytes, 0, Some(crate::unwind::Limits::default().total_bytes));
        put("unwind_processes", s.processes, u.evicted, None);
        let (held, replaced) = u.unwinder.rule_caches();
        put("unwind_rule_caches", held, replaced, Some(crate::unwind::RULE_CACHES as u64));
    }
    if let Some(s) = collector.snapshots.as_ref() {
        put("threads", s.sampler.held(), s.sampler.evicted, Some(u64::from(s.sampler.max_threads())));
        // Held only while a live thread's entry holds them: bounded by those tables.
        let (kernel, kernel_dropped) = s.sampler.shared_stacks();
        let (user, user_dropped) = s.blocked.as_ref().map_or((0, 0), |b| b.shared_stacks());
        put("shared_stacks", kernel + user, kernel_dropped + user_dropped, None);
    }
    let heap = crate::sys::mem::heap();
    CacheReport {
        windows,
        caches,
        rss_bytes: crate::sys::mem::rss_bytes(),
        heap_in_use_bytes: heap.in_use_bytes,
        heap_free_bytes: heap.free_bytes,
    }
}

/// The last of each run of a thread's off-CPU lines: what a map filled
/// from them all would keep.
fn last_of_runs<'a>(lines: impl Iterator<Item = &'a RawOffCpu>) -> impl Iterator<Item = &'a RawOffCpu> {
    let mut lines = lines.peekable();
    std::iter::from_fn(move || loop {
        let s = lines.next()?;
        if lines.peek().is_none_or(|next| next.tid != s.tid) {
            return Some(s);
        }
    })
}

/// Turn what one window gathered into a symbolized [`Window`].
#[allow(clippy::too_many_arguments)]
fn build_window(
    run: &Run,
    loaded: &mut Loaded,
    collector: &mut Collector,
    taken: WindowTaken,
    open: &Open,
    (kernel_after, counters_now): (KernelCounts, KernelCounters),
    single: bool,
    evicting: Option<&FxHashSet<u32>>,
) -> Result<Window> {
    let args = run.args;
    let WindowTaken { stacks, untimed_samples, sampled, noise: sampled_noise, opening, closing, end_ns } = taken;
    let window = open.start_ns..end_ns;
    let counters = counters_now.since(&open.counters);
    if !run.continuous {
        // The deep tier's hooks stop counting here; threads that exited
        // before are in the exit ring.
        loaded.set_window_end(end_ns)?;
        collector.drain_exits();
    }
    let mut unwind_report = collector.sinks.unwinder.as_ref().map(|u| crate::unwinding::UnwindReport {
        method: format!("{:?}", args.unwind).to_lowercase(),
        user_stack_bytes: args.user_stack_bytes,
        samples: u.usage,
        unwinder: u.unwinder.stats(),
        ..Default::default()
    });
    let duration_ns = match single {
        // One window: the time the capture ran, as always reported.
        true => collector.elapsed().as_nanos() as u64,
        false => window.end.saturating_sub(window.start),
    };
    let mut profile = Profile {
        tier: args.tier,
        governor: collector.governor(),
        start_unix_ns: run.start_unix_ns + window.start.saturating_sub(run.first_start_ns),
        duration_ns,
        frequency_hz: args.frequency_hz,
        window_start_ns: window.start,
        window_end_ns: window.end,
        state_hz: args.state_hz,
        arch: std::env::consts::ARCH.to_owned(),
        group_by: args.group_by.clone(),
        lines: args.lines,
        ..Profile::default()
    };
    let mut off_cpu_raw: Vec<RawOffCpu> = Vec::new();
    if let (Some(snapshots), Some(mut sampled)) = (collector.snapshots.as_mut(), sampled) {
        // Every name of the window is held once, by lines and table alike.
        let mut interned = crate::model::text::Names::default();
        if let (Some(opening), Some(closing)) = (opening, closing) {
            let accounted = continuous::account(&opening, &closing, &sampled, &window, run.delayacct);
            // What the lines need of the bounds and the exit records is taken:
            // they are freed before the lines are made (the window's peak).
            drop((opening, closing));
            let exit_names: Vec<(u32, crate::model::text::Name)> =
                sampled.exits.iter().map(|e| (e.tid, interned.get(&crate::model::text::comm_str(&e.comm)))).collect();
            drop(std::mem::take(&mut sampled.exits));
            // A thread's name: what the snapshots saw, else its exit record's.
            let comm_of = |tid: u32| match sampled.threads.get(&tid) {
                Some(t) => interned.get(&t.comm),
                None => match exit_names.binary_search_by_key(&tid, |(tid, _)| *tid) {
                    Ok(i) => exit_names[i].1.clone(),
                    Err(_) => interned.get(""),
                },
            };
            off_cpu_raw = continuous::off_cpu_stacks(&accounted, &sampled.sightings, comm_of);
            drop(exit_names);
            // Freed before the window is built: every thread's sightings.
            drop(std::mem::take(&mut sampled.sightings));
            if let (Some(report), Some(b)) = (unwind_report.as_mut(), &snapshots.blocked) {
                report.blocked = b.stats;
                report.off_cpu = continuous::unwind_sources(&off_cpu_raw);
            }
            profile.thread_times = accounted.times;
            profile.counter_extras = accounted.extras;
            profile.untrusted_times = accounted.unaccounted;
        } else {
            let live = sched_times::live(&loaded.threads()?);
            let unwind;
            let stacks =
                snapshots.stacks.as_mut().ok_or(crate::Error::Internal("a deep capture without its stack map"))?;
            (off_cpu_raw, unwind) = off_cpu::collect(
                &loaded.off_cpu_map()?,
                &live,
                window.clone(),
                &snapshots.sampler.kstacks,
                stacks,
                &mut collector.sinks.stacks,
                snapshots.blocked.as_ref(),
            );
            if let (Some(report), Some(b)) = (unwind_report.as_mut(), &snapshots.blocked) {
                report.blocked = b.stats;
                report.off_cpu = unwind;
            }
            let exited = std::mem::take(&mut collector.exited.times);
            profile.thread_times = sched_times::finish(&live, exited, window.start, window.end);
            profile.untrusted_times = sched_times::missed_switch_outs(&live, window.end);
        }
        // Neither their exact times nor their off-CPU time can be trusted.
        for tid in &profile.untrusted_times {
            profile.thread_times.remove(tid);
        }
        off_cpu_raw.retain(|s| !profile.untrusted_times.contains(&s.tid));
        // Names, most to least recent: procfs now, snapshots, exits, off-CPU
        // records. Each thread's name is kept from the most recent source
        // that has one, the others never copied (under churn a window names
        // 30,000 threads from each source), then built into a map in bulk.
        let mut names: FxHashMap<u32, crate::model::text::Name> =
            FxHashMap::with_capacity_and_hasher(profile.thread_times.len(), Default::default());
        // Names of live threads as they are now.
        let now = sched_times::proc_names(profile.thread_times.iter().map(|(tid, t)| (t.tgid, *tid)));
        names.extend(now.map(|(tid, name)| (tid, interned.get(&name))));
        let mut stats = sampled.stats;
        stats.realtime = snapshots.taker.realtime;
        profile.state_sampler = stats;
        let mut state_samples = Vec::with_capacity(sampled.threads.len());
        for (tid, t) in sampled.threads {
            let [running, runnable, sleeping, disk, other] = t.states;
            state_samples.push((tid, (t.tgid, StateSamples { running, runnable, sleeping, disk, other })));
            names.entry(tid).or_insert_with(|| interned.get(&t.comm));
        }
        profile.state_samples = state_samples.into_iter().collect();
        for (tid, name) in std::mem::take(&mut collector.exited.names) {
            names.entry(tid).or_insert_with(|| interned.get(&name));
        }
        // A thread's off-CPU lines follow each other: one name for them.
        for s in last_of_runs(off_cpu_raw.iter().filter(|s| !s.comm.is_empty())) {
            names.entry(s.tid).or_insert_with(|| s.comm.clone());
        }
        let mut comms: Vec<(u32, crate::model::text::Name)> = names.into_iter().collect();
        comms.sort_unstable_by_key(|(tid, _)| *tid);
        profile.comms = comms.into_iter().collect();
        profile.blocked_on = sampled.fd_waits;
        // Exact times, snapshots and off-CPU time go to each process's
        // latest generation; processes not seen yet are read now.
        let threads = profile.thread_times.iter().map(|(tid, t)| (*tid, t.tgid));
        let seen = profile.state_samples.iter().map(|(tid, (tgid, _))| (*tid, *tgid));
        let off = last_of_runs(off_cpu_raw.iter()).map(|s| (s.tid, s.tgid));
        let pairs: Vec<(u32, u32)> = threads.chain(seen).chain(off).collect();
        let processes = &mut collector.sinks.processes;
        profile.thread_process = pairs.into_iter().map(|(tid, tgid)| (tid, processes.current(tgid))).collect();
        for s in &mut off_cpu_raw {
            s.process = profile.thread_process.get(&s.tid).copied().unwrap_or(u32::MAX);
            if let Some(name) = profile.comms.get(&s.tid).filter(|_| s.comm.is_empty()) {
                s.comm = name.clone();
            }
        }
    }
    // Noise per source and latency histograms come from the deep tier's
    // hooks; the continuous tier's noise from procfs and the samples.
    let mut noise = match sampled_noise {
        Some(mut sampled) => {
            sampled.idle_samples = counters.idle_samples;
            sampled.lost_samples = counters.lost_samples;
            let c = &run.config;
            if !c.pids.is_empty() || c.comm.is_some() || c.cgroup_filter.is_some() {
                sampled.restricted_to = Some(
                    "the threads selected by --pid, --comm, --cgroup or --container (filtered in the kernel)".into(),
                );
            }
            let before = &open.kernel;
            Measurement::Continuous(crate::noise::continuous::ContinuousRaw {
                window_start_ns: window.start,
                window_end_ns: window.end,
                cpus: loaded.cpus.clone(),
                stat: crate::noise::proc_counts::times_delta(&before.stat, &kernel_after.stat),
                kernel_interrupts: crate::noise::collect::table_delta(&before.interrupts, &kernel_after.interrupts),
                kernel_softirqs: crate::noise::collect::table_delta(&before.softirqs, &kernel_after.softirqs),
                stat_since_boot: kernel_after.stat,
                irq_names: crate::noise::proc_counts::irq_names(),
                sampled,
            })
        }
        None => {
            let histograms = crate::noise::collect::histograms(loaded, &window)?;
            let names = crate::noise::collect::histogram_names(&histograms);
            Measurement::Deep {
                noise: crate::noise::collect::noise(
                    loaded,
                    crate::noise::collect::Window {
                        ns: window.clone(),
                        threshold_ns: 0,
                        cpus: loaded.cpus.clone(),
                        victim_pids: run.config.pids.clone(),
                        kernel_before: open.kernel.clone(),
                        kernel_after,
                    },
                )?,
                histograms,
                names,
            }
        }
    };
    profile.lost_samples = counters.lost_samples;
    profile.dropped = Dropped { snapshot_threads: profile.state_sampler.threads_dropped, ..counters.dropped };
    profile.dropped_events = profile.dropped.total();
    profile.limits_hit = limits_hit(&profile.dropped, &run.config);
    if untimed_samples > 0 {
        // Counts stay exact; only the window's sample times (for OTLP) go.
        tracing::warn!(
            samples = untimed_samples,
            bound = crate::stacks::MAX_TIMED_SAMPLES,
            "the window held more samples than its bound on sample times: its samples keep their counts but carry \
             no times; a shorter --window keeps them"
        );
    }
    if let Some(report) = unwind_report.as_mut() {
        report.copy_errors = loaded.counter(Counter::UserStackCopyErrors)?;
    }
    profile.unwind = unwind_report;

    let processes = &mut collector.sinks.processes;
    // A process gone before it could be read is named after its main thread.
    for s in &stacks {
        if s.tid == s.pid {
            processes.name_if_unknown(s.process, &s.comm);
        }
    }
    for (&tid, comm) in &profile.comms {
        if let Some(&id) = profile.thread_process.get(&tid) {
            if profile.thread_times.get(&tid).is_some_and(|t| t.tgid == tid) {
                processes.name_if_unknown(id, comm);
            }
        }
    }
    // The window's process table, indexed densely.
    let index;
    (profile.processes, index, profile.enrichment) = processes.window(evicting);
    let local = |id: u32| index.get(&id).copied().unwrap_or(u32::MAX);
    let mut stacks = stacks;
    for s in &mut stacks {
        s.process = local(s.process);
    }
    for s in &mut off_cpu_raw {
        s.process = local(s.process);
    }
    for p in profile.thread_process.values_mut() {
        *p = local(*p);
    }
    let started = Instant::now();
    tracing::debug!(
        rss_kib = crate::sys::mem::rss_bytes() >> 10,
        threads = profile.thread_times.len(),
        names = profile.comms.len(),
        sampled = profile.state_samples.len(),
        processes = profile.processes.len(),
        on_cpu_lines = stacks.len(),
        off_cpu_lines = off_cpu_raw.len(),
        "window built, symbolizing"
    );
    let sinks = &mut collector.sinks;
    let mut profile = sinks.names.window(sinks.stacks.modules(), stacks, off_cpu_raw, profile);
    // The files symbolization read stay mapped, not resident.
    let advised = crate::sys::mem::drop_clean_file_pages(crate::sys::mem::Code::Dropped);
    tracing::debug!(elapsed = ?started.elapsed(), advised, rss_kib = crate::sys::mem::rss_bytes() >> 10, "symbolized");
    // The selection applies to what is reported, exact times included.
    profile.select(&run.selection);
    if let Measurement::Deep { histograms, names, .. } = &mut noise {
        // Processes gone by now are named from what the capture saw.
        for (key, _) in &histograms.entries {
            if key.kind == profiler_common::HIST_RUNQ && !names.processes.contains_key(&key.id) {
                if let Some(comm) = profile.comms.get(&key.id) {
                    names.processes.insert(key.id, comm.to_string());
                }
            }
        }
    }
    Ok(Window { id: 0, profile, noise })
}

/// Which bounds filled up in the window, for a warning naming the flag.
fn limits_hit(dropped: &Dropped, config: &SamplingConfig) -> Vec<LimitHit> {
    let mut hits = Vec::new();
    // Both bounds --max-threads sets, in one warning.
    let what = match (dropped.threads > 0, dropped.snapshot_threads > 0) {
        (true, true) => Some("thread map and the snapshots' thread table"),
        (true, false) => Some("thread map"),
        (false, true) => Some("snapshots' thread table"),
        (false, false) => None,
    };
    if let Some(what) = what {
        let n = dropped.threads + dropped.snapshot_threads;
        hits.push(LimitHit::new(what, config.max_threads, "--max-threads", n));
    }
    if dropped.stacks > 0 {
        hits.push(LimitHit::new("stack map", config.max_stacks, "--max-stacks", dropped.stacks));
    }
    if dropped.off_cpu_aggregates > 0 {
        let bound = config.max_stacks.saturating_mul(profiler_common::OFFCPU_KEYS_PER_STACK);
        hits.push(LimitHit::new("off-CPU map", bound, "--max-stacks", dropped.off_cpu_aggregates));
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_of_each_thread_run_is_kept() {
        let line = |tid, comm: &str| RawOffCpu { tid, comm: comm.into(), ..Default::default() };
        let lines = [line(1, "a"), line(1, "b"), line(2, "c"), line(1, "d"), line(3, "e"), line(3, "f")];
        let kept: Vec<(u32, &str)> = last_of_runs(lines.iter()).map(|s| (s.tid, &*s.comm)).collect();
        assert_eq!(kept, [(1, "b"), (2, "c"), (1, "d"), (3, "f")]);
        assert_eq!(last_of_runs([].iter()).count(), 0);
    }
}
