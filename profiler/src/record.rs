//! `tailprof record`: preflight, load, capture, symbolize, write.

use std::time::{SystemTime, UNIX_EPOCH};

use profiler_common::Counter;

use crate::{
    bpf::{Loaded, SamplingConfig},
    capture::{self, EndReason, Snapshots},
    config::RecordConfig,
    continuous,
    enrich::cgroup_filter::{CgroupFilter, Plan},
    governor::{Governor, Policy},
    off_cpu::{self, StackResolver},
    output, preflight,
    profile::{Dropped, LimitHit, Profile, StateSamples},
    sched_times,
    snapshot_taker::SnapshotTaker,
    state_sampler::StateSampler,
    symbolize::symbolize,
    tier::Tier,
    unwinding::SampleUnwinder,
    Result,
};

/// What a finished recording produced.
pub struct Recording {
    pub profile: Profile,
    pub end: EndReason,
    pub files: Vec<std::path::PathBuf>,
}

pub async fn record(args: &RecordConfig, cancel: &crate::sys::cancel::Cancel) -> Result<Recording> {
    let state_hz = args.state_hz;
    let slos = args.slos.clone();
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
    crate::atomic_file::prepare_output_dir(&args.output)?;
    preflight::raise_memlock_limit();

    let off_cpu = args.off_cpu;
    let config = SamplingConfig {
        frequency_hz: args.frequency_hz,
        pids,
        comm: selection.comm.clone(),
        cgroup_filter: cgroup_plan.as_ref().map(|p| p.ids.clone()),
        off_cpu,
        offsets,
        max_threads: args.max_threads,
        max_stacks: args.max_stacks,
        unwind: args.unwind,
        user_stack_bytes: args.user_stack_bytes,
        tier: args.tier,
        noise: args.tier == Tier::Deep,
        syscall_hooks: crate::latency::wants_syscall_hooks(args.syscall_latency, &slos),
        ..SamplingConfig::default()
    };
    let mut loaded = Loaded::load(btf.as_ref(), &config)?;
    let ring = loaded.take_events()?;
    let cgroup_filter = match cgroup_plan {
        Some(plan) => Some(CgroupFilter::new(loaded.take_cgroup_filter(&plan.ids)?, plan)),
        None => None,
    };
    let continuous = args.tier == Tier::Continuous;
    let (exits, snapshots) = if let Some(link) = loaded.snapshot_link.take() {
        let taker = SnapshotTaker::start(link, loaded.take_snap_config()?, state_hz)
            .map_err(|source| crate::Error::Io { what: "start the snapshot thread", source })?;
        let snapshots = Snapshots {
            sampler: StateSampler::new(args.max_threads),
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
    let window_start_ns = if off_cpu && !continuous {
        sched_times::seed(&mut loaded.threads()?)
    } else {
        crate::sys::clock::monotonic_ns()
    };
    // The noise hooks count from here too.
    loaded.set_window_start(window_start_ns)?;
    let kernel_before = crate::noise::collect::KernelCounts::now();
    let start_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    tracing::info!(cpus = loaded.cpus.len(), "capturing");
    let unwinder = match args.unwind {
        crate::config::UnwindMethod::Fp => None,
        crate::config::UnwindMethod::Dwarf => Some(SampleUnwinder::new(None)),
        crate::config::UnwindMethod::Auto => Some(SampleUnwinder::new(Some(loaded.take_fp_pids()?))),
    };
    let delayacct = continuous::delay_accounting_on();
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
    let mut captured = capture::run(
        ring,
        exits,
        snapshots,
        cgroup_filter,
        unwinder,
        capture::Plan {
            duration: args.duration,
            bounds: continuous && off_cpu,
            noise_sampling_hz: continuous.then_some(args.frequency_hz),
            cancel: cancel.clone(),
        },
        governed,
    )
    .await?;
    // The continuous tier's window is that of its bound snapshots.
    let window_start_ns = captured.opening.as_ref().map_or(window_start_ns, |o| o.at_ns);
    loaded.set_window_end(captured.end_ns)?;
    let kernel_after = crate::noise::collect::KernelCounts::now();
    if off_cpu {
        // Threads that exited before the window closed.
        if let Some(ring) = captured.exits.as_mut() {
            sched_times::drain_exits(ring, &mut captured.exited);
        }
    }
    let mut unwind_report = captured.unwinder.as_ref().map(|u| crate::unwinding::UnwindReport {
        method: format!("{:?}", args.unwind).to_lowercase(),
        user_stack_bytes: args.user_stack_bytes,
        samples: u.usage,
        unwinder: u.unwinder.stats(),
        ..Default::default()
    });
    let (mut agg, elapsed, end) = (captured.stacks, captured.elapsed, captured.end);
    let mut processes = captured.processes;

    let mut profile = Profile {
        tier: args.tier,
        governor: captured.governor.take(),
        start_unix_ns,
        duration_ns: elapsed.as_nanos() as u64,
        frequency_hz: args.frequency_hz,
        window_start_ns,
        window_end_ns: captured.end_ns,
        state_hz,
        arch: std::env::consts::ARCH.to_owned(),
        group_by: args.group_by.clone(),
        lines: args.lines,
        ..Profile::default()
    };
    let mut off_cpu_raw = Vec::new();
    if let Some(mut snapshots) = captured.snapshots {
        snapshots.sampler.finish();
        for (key, frames, n) in std::mem::take(&mut snapshots.sampler.blocked_counts) {
            if let Some(b) = snapshots.blocked.as_mut() {
                b.count(key, frames.as_deref(), n);
            }
        }
        if let (Some(opening), Some(closing)) = (captured.opening.as_ref(), captured.closing.as_ref()) {
            let window = window_start_ns..captured.end_ns;
            let accounted = continuous::account(opening, closing, &snapshots.sampler, &window, delayacct);
            let mut comms: rustc_hash::FxHashMap<u32, String> =
                snapshots.sampler.threads.iter().map(|(tid, t)| (*tid, t.comm.clone())).collect();
            for e in snapshots.sampler.exits.values() {
                comms.entry(e.tid).or_insert_with(|| crate::model::text::comm_string(&e.comm));
            }
            off_cpu_raw = continuous::off_cpu_stacks(&accounted, &snapshots.sampler.sightings, &comms);
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
            let stacks = snapshots.stacks.as_mut().ok_or_else(|| crate::Error::Read("no stack map".into()))?;
            (off_cpu_raw, unwind) = off_cpu::collect(
                &loaded.off_cpu_map()?,
                &live,
                window_start_ns..captured.end_ns,
                &snapshots.sampler.kstacks,
                stacks,
                &mut agg,
                snapshots.blocked.as_ref(),
            );
            if let (Some(report), Some(b)) = (unwind_report.as_mut(), &snapshots.blocked) {
                report.blocked = b.stats;
                report.off_cpu = unwind;
            }
            profile.thread_times = sched_times::finish(&live, captured.exited.times, window_start_ns, captured.end_ns);
            profile.untrusted_times = sched_times::missed_switch_outs(&live, captured.end_ns);
        }
        // Neither their exact times nor their off-CPU time can be trusted.
        for tid in &profile.untrusted_times {
            profile.thread_times.remove(tid);
        }
        off_cpu_raw.retain(|s| !profile.untrusted_times.contains(&s.tid));
        // Names, least to most recent: off-CPU records, exits, snapshots, procfs.
        profile.comms.extend(off_cpu_raw.iter().filter(|s| !s.comm.is_empty()).map(|s| (s.tid, s.comm.clone())));
        profile.comms.extend(captured.exited.names);
        let mut sampler = snapshots.sampler;
        sampler.stats.realtime = snapshots.taker.realtime;
        profile.state_sampler = sampler.stats;
        for (tid, t) in sampler.threads {
            let [running, runnable, sleeping, disk, other] = t.states;
            profile.state_samples.insert(tid, (t.tgid, StateSamples { running, runnable, sleeping, disk, other }));
            profile.comms.insert(tid, t.comm);
        }
        // Names of live threads as they are now.
        profile.comms.extend(sched_times::proc_names(profile.thread_times.iter().map(|(tid, t)| (t.tgid, *tid))));
        profile.blocked_on = sampler.fd_waits.finish();
        // Exact times, snapshots and off-CPU time go to each process's
        // latest generation; processes not seen yet are read now.
        let threads = profile.thread_times.iter().map(|(tid, t)| (*tid, t.tgid));
        let sampled = profile.state_samples.iter().map(|(tid, (tgid, _))| (*tid, *tgid));
        let off = off_cpu_raw.iter().map(|s| (s.tid, s.tgid));
        let pairs: Vec<(u32, u32)> = threads.chain(sampled).chain(off).collect();
        for (tid, tgid) in pairs {
            let id = processes.current(tgid);
            profile.thread_process.insert(tid, id);
        }
        for s in &mut off_cpu_raw {
            s.process = profile.thread_process.get(&s.tid).copied().unwrap_or(u32::MAX);
            if s.comm.is_empty() {
                s.comm = profile.thread_name(s.tid).to_owned();
            }
        }
    }
    let window = window_start_ns..captured.end_ns;
    // Noise per source and latency histograms come from the deep tier's
    // hooks; the continuous tier's noise from procfs and the samples.
    let mut noise = match captured.noise.take() {
        Some(sampler) => {
            let mut sampled =
                sampler.finish(loaded.counter(Counter::IdleSamples)?, loaded.counter(Counter::LostSamples)?);
            if !config.pids.is_empty() || config.comm.is_some() || config.cgroup_filter.is_some() {
                sampled.restricted_to = Some(
                    "the threads selected by --pid, --comm, --cgroup or --container (filtered in the kernel)".into(),
                );
            }
            crate::noise::Measurement::Continuous(crate::noise::continuous::ContinuousRaw {
                window_start_ns: window.start,
                window_end_ns: window.end,
                cpus: loaded.cpus.clone(),
                stat: crate::noise::proc_counts::times_delta(&kernel_before.stat, &kernel_after.stat),
                kernel_interrupts: crate::noise::collect::table_delta(
                    &kernel_before.interrupts,
                    &kernel_after.interrupts,
                ),
                kernel_softirqs: crate::noise::collect::table_delta(&kernel_before.softirqs, &kernel_after.softirqs),
                stat_since_boot: kernel_after.stat,
                irq_names: crate::noise::proc_counts::irq_names(),
                sampled,
            })
        }
        None => {
            let histograms = crate::noise::collect::histograms(&loaded, &window)?;
            let names = crate::noise::collect::histogram_names(&histograms);
            crate::noise::Measurement::Deep {
                noise: crate::noise::collect::noise(
                    &loaded,
                    crate::noise::collect::Window {
                        ns: window.clone(),
                        threshold_ns: 0,
                        cpus: loaded.cpus.clone(),
                        victim_pids: config.pids.clone(),
                        kernel_before,
                        kernel_after,
                    },
                )?,
                histograms,
                names,
            }
        }
    };
    let counter = |c| loaded.counter(c);
    profile.lost_samples = counter(Counter::LostSamples)?;
    profile.dropped = Dropped {
        threads: counter(Counter::ThreadMapFull)?,
        exits: counter(Counter::LostExits)?,
        stacks: counter(Counter::StackMapFull)?,
        off_cpu_aggregates: counter(Counter::OffCpuMapFull)?,
        process_events: counter(Counter::LostProcessEvents)?,
    };
    profile.dropped_events = profile.dropped.total();
    profile.limits_hit = limits_hit(&loaded, &config)?;
    if let Some(report) = unwind_report.as_mut() {
        report.copy_errors = counter(Counter::UserStackCopyErrors)?;
    }
    profile.unwind = unwind_report;
    for (counter, what) in [(Counter::KernelStackErrors, "kernel"), (Counter::UserStackErrors, "user")] {
        let n = loaded.counter(counter)?;
        if n > 0 {
            tracing::debug!(n, "samples without a readable {what} stack");
        }
    }
    drop(loaded);

    let (modules, stacks) = agg.finish();
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
    (profile.processes, profile.enrichment) = processes.finish();
    let started = std::time::Instant::now();
    let mut profile = symbolize(modules, stacks, off_cpu_raw, profile);
    tracing::info!(elapsed = ?started.elapsed(), "symbolized");
    // The selection applies to what is reported, exact times included.
    profile.select(&selection);
    let started = std::time::Instant::now();
    let mut files = output::write_all(&args.output, &profile)?;
    if let crate::noise::Measurement::Deep { histograms, names, .. } = &mut noise {
        // Processes gone by now are named from what the capture saw.
        for (key, _) in &histograms.entries {
            if key.kind == profiler_common::HIST_RUNQ && !names.processes.contains_key(&key.id) {
                if let Some(comm) = profile.comms.get(&key.id) {
                    names.processes.insert(key.id, comm.clone());
                }
            }
        }
    }
    let rendered = crate::noise::output::render(&noise, &slos);
    files.extend(crate::noise::output::write_files(&args.output, &noise, &rendered)?);
    let samples = args.output.join(crate::samples_file::SAMPLES_FILE);
    crate::atomic_file::write_atomically(&samples, |w| crate::samples_file::write(&profile, w))?;
    files.push(samples);
    tracing::info!(elapsed = ?started.elapsed(), "wrote reports");
    Ok(Recording { profile, end, files })
}

/// Which bounds filled up during the capture, for a warning naming the flag.
fn limits_hit(loaded: &Loaded, config: &SamplingConfig) -> Result<Vec<LimitHit>> {
    let mut hits = Vec::new();
    let threads = loaded.counter(Counter::ThreadMapFull)?;
    if threads > 0 {
        hits.push(LimitHit::new("thread map", config.max_threads, "--max-threads", threads));
    }
    let stacks = loaded.counter(Counter::StackMapFull)?;
    if stacks > 0 {
        hits.push(LimitHit::new("stack map", config.max_stacks, "--max-stacks", stacks));
    }
    let keys = loaded.counter(Counter::OffCpuMapFull)?;
    if keys > 0 {
        let bound = config.max_stacks.saturating_mul(profiler_common::OFFCPU_KEYS_PER_STACK);
        hits.push(LimitHit::new("off-CPU map", bound, "--max-stacks", keys));
    }
    Ok(hits)
}
