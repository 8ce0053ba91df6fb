//! `tailprof record`: preflight, load, capture, symbolize, write.

use std::time::{SystemTime, UNIX_EPOCH};

use profiler_common::Counter;

use crate::{
    bpf::{Loaded, SamplingConfig, TaskOffsets},
    capture::{self, EndReason, Snapshots},
    cli::RecordArgs,
    off_cpu::{self, StackResolver},
    output, preflight,
    profile::{Dropped, LimitHit, Profile, StateSamples},
    sched_times,
    state_sampler::StateSampler,
    symbolize::symbolize,
    Result,
};

/// What a finished recording produced.
pub struct Recording {
    pub profile: Profile,
    pub end: EndReason,
    pub files: Vec<std::path::PathBuf>,
}

pub async fn record(args: &RecordArgs) -> Result<Recording> {
    let state_hz = args.state_hz().map_err(crate::Error::Usage)?;
    preflight::check_privileges()?;
    preflight::check_perf_events()?;
    let btf = preflight::check_btf(&args.btf)?;
    // Only the scheduler hooks need kernel struct offsets; reading all of
    // the kernel's BTF costs tens of milliseconds.
    let task_offsets = if args.no_off_cpu {
        TaskOffsets::default()
    } else {
        let kernel_btf = crate::kernel_btf::KernelBtf::from_file(&args.btf)
            .map_err(|e| crate::Error::MissingBtf { path: args.btf.clone(), reason: e.to_string() })?;
        TaskOffsets::from_btf(&kernel_btf)?
    };
    let mut pids = Vec::with_capacity(args.pids.len());
    for &pid in &args.pids {
        pids.push(preflight::resolve_pid(pid)?);
    }
    pids.sort_unstable();
    pids.dedup();
    crate::atomic_file::prepare_output_dir(&args.output)?;
    preflight::raise_memlock_limit();

    let off_cpu = !args.no_off_cpu;
    let config = SamplingConfig {
        frequency_hz: args.frequency,
        pids,
        comm: args.comm.clone(),
        off_cpu,
        task_offsets,
        max_threads: args.max_threads,
        max_stacks: args.max_stacks,
    };
    let mut loaded = Loaded::load(btf.as_ref(), &config)?;
    let ring = loaded.take_events()?;
    let (exits, snapshots) = if let Some(link) = loaded.snapshot_link.take() {
        let snapshots = Snapshots {
            sampler: StateSampler::new(link),
            stacks: StackResolver::new(loaded.take_stacks()?),
            hz: state_hz,
        };
        (Some(loaded.take_exits()?), Some(snapshots))
    } else {
        (None, None)
    };
    let window_start_ns = if off_cpu {
        let start = sched_times::seed(&mut loaded.threads()?);
        loaded.set_window_start(start)?;
        loaded.set_sampler_tid(crate::state_sampler::gettid())?;
        start
    } else {
        sched_times::monotonic_ns()
    };
    let start_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    tracing::info!(cpus = loaded.cpus.len(), "capturing");
    let captured = capture::run(ring, exits, snapshots, args.duration).await?;
    let (mut agg, elapsed, end) = (captured.stacks, captured.elapsed, captured.end);

    let mut profile = Profile {
        start_unix_ns,
        duration_ns: elapsed.as_nanos() as u64,
        frequency_hz: args.frequency,
        window_start_ns,
        window_end_ns: captured.end_ns,
        state_hz,
        ..Profile::default()
    };
    let mut off_cpu_raw = Vec::new();
    if let Some(mut snapshots) = captured.snapshots {
        let live = sched_times::live(&loaded.threads()?);
        off_cpu_raw = off_cpu::collect(
            &loaded.off_cpu_map()?,
            &live,
            window_start_ns,
            captured.end_ns,
            &snapshots.sampler.kstacks,
            &mut snapshots.stacks,
            &mut agg,
        );
        profile.thread_times = sched_times::finish(&live, captured.exited.times, window_start_ns, captured.end_ns);
        profile.untrusted_times = sched_times::missed_switch_outs(&live, captured.end_ns);
        for tid in &profile.untrusted_times {
            profile.thread_times.remove(tid);
        }
        // Names, least to most recent: off-CPU records, exits, snapshots, procfs.
        profile.comms.extend(off_cpu_raw.iter().filter(|s| !s.comm.is_empty()).map(|s| (s.tid, s.comm.clone())));
        profile.comms.extend(captured.exited.names);
        let sampler = snapshots.sampler;
        profile.state_sampler = sampler.stats;
        for (tid, t) in sampler.threads {
            let [running, runnable, sleeping, disk, other] = t.states;
            profile.state_samples.insert(tid, (t.tgid, StateSamples { running, runnable, sleeping, disk, other }));
            profile.comms.insert(tid, t.comm);
        }
        // Names of live threads as they are now.
        profile.comms.extend(sched_times::proc_names(profile.thread_times.iter().map(|(tid, t)| (t.tgid, *tid))));
    }
    let counter = |c| loaded.counter(c);
    profile.lost_samples = counter(Counter::LostSamples)?;
    profile.dropped = Dropped {
        threads: counter(Counter::ThreadMapFull)?,
        exits: counter(Counter::LostExits)?,
        stacks: counter(Counter::StackMapFull)?,
        off_cpu_aggregates: counter(Counter::OffCpuMapFull)?,
    };
    profile.dropped_events = profile.dropped.total();
    profile.limits_hit = limits_hit(&loaded, &config)?;
    for (counter, what) in [(Counter::KernelStackErrors, "kernel"), (Counter::UserStackErrors, "user")] {
        let n = loaded.counter(counter)?;
        if n > 0 {
            tracing::debug!(n, "samples without a readable {what} stack");
        }
    }
    drop(loaded);

    let (modules, stacks) = agg.finish();
    let started = std::time::Instant::now();
    let mut profile = symbolize(modules, stacks, off_cpu_raw, profile);
    tracing::info!(elapsed = ?started.elapsed(), "symbolized");
    // --pid and --comm select what is reported, exact times included.
    profile.select(&config.pids, args.comm.as_deref());
    let started = std::time::Instant::now();
    let files = output::write_all(&args.output, &profile)?;
    tracing::info!(elapsed = ?started.elapsed(), "wrote reports");
    Ok(Recording { profile, end, files })
}

/// Which bounds filled up during the capture, for a warning naming the flag.
fn limits_hit(loaded: &Loaded, config: &SamplingConfig) -> Result<Vec<LimitHit>> {
    let mut hits = Vec::new();
    let threads = loaded.counter(Counter::ThreadMapFull)?;
    if threads > 0 {
        hits.push(LimitHit { what: "thread map", bound: config.max_threads, flag: "--max-threads", dropped: threads });
    }
    let stacks = loaded.counter(Counter::StackMapFull)?;
    if stacks > 0 {
        hits.push(LimitHit { what: "stack map", bound: config.max_stacks, flag: "--max-stacks", dropped: stacks });
    }
    let keys = loaded.counter(Counter::OffCpuMapFull)?;
    if keys > 0 {
        let bound = config.max_stacks.saturating_mul(profiler_common::OFFCPU_KEYS_PER_STACK);
        hits.push(LimitHit { what: "off-CPU map", bound, flag: "--max-stacks", dropped: keys });
    }
    Ok(hits)
}
