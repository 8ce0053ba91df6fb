//! `tailprof record`: preflight, load, capture, symbolize, write.

use std::time::{SystemTime, UNIX_EPOCH};

use profiler_common::Counter;

use crate::{
    bpf::{Loaded, SamplingConfig, TaskOffsets},
    capture::{self, EndReason},
    cli::RecordArgs,
    output, preflight,
    profile::Profile,
    sched_times,
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
    let config = SamplingConfig { frequency_hz: args.frequency, pids, comm: args.comm.clone(), off_cpu, task_offsets };
    let mut loaded = Loaded::load(btf.as_ref(), &config)?;
    let ring = loaded.take_events()?;
    let exits = if off_cpu { Some(loaded.take_exits()?) } else { None };
    let window_start_ns = if off_cpu { sched_times::seed(&mut loaded.threads()?) } else { sched_times::monotonic_ns() };
    let start_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    tracing::info!(cpus = loaded.cpus.len(), "capturing");
    let captured = capture::run(ring, exits, args.duration).await?;
    let (agg, elapsed, end) = (captured.stacks, captured.elapsed, captured.end);
    let thread_times = if off_cpu {
        sched_times::finish(&loaded.threads()?, captured.exited, captured.end_ns)
    } else {
        Default::default()
    };
    // --pid and --comm select what is reported, exact times included.
    let (thread_times, comms) = sched_times::select(thread_times, &config.pids, args.comm.as_deref());
    let dropped_events = loaded.counter(Counter::ThreadMapFull)? + loaded.counter(Counter::LostExits)?;
    if dropped_events > 0 {
        tracing::warn!(
            dropped_events,
            "some threads were not tracked: the thread map (65536 threads) was full or exits were lost"
        );
    }
    let lost_samples = loaded.counter(Counter::LostSamples)?;
    for (counter, what) in [(Counter::KernelStackErrors, "kernel"), (Counter::UserStackErrors, "user")] {
        let n = loaded.counter(counter)?;
        if n > 0 {
            tracing::debug!(n, "samples without a readable {what} stack");
        }
    }
    drop(loaded);

    let (modules, stacks) = agg.finish();
    let profile = Profile {
        start_unix_ns,
        duration_ns: elapsed.as_nanos() as u64,
        frequency_hz: args.frequency,
        lost_samples,
        dropped_events,
        window_start_ns,
        window_end_ns: captured.end_ns,
        comms,
        thread_times,
        ..Profile::default()
    };
    let started = std::time::Instant::now();
    let profile = symbolize(modules, stacks, profile);
    tracing::info!(elapsed = ?started.elapsed(), "symbolized");
    let started = std::time::Instant::now();
    let files = output::write_all(&args.output, &profile)?;
    tracing::info!(elapsed = ?started.elapsed(), "wrote reports");
    Ok(Recording { profile, end, files })
}
