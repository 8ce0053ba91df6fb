//! `tailprof record`: preflight, load, capture, symbolize, write.

use std::time::{SystemTime, UNIX_EPOCH};

use profiler_common::Counter;

use crate::{
    bpf::{Loaded, SamplingConfig},
    capture::{self, EndReason},
    cli::RecordArgs,
    output, preflight,
    profile::Profile,
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
    let mut pids = Vec::with_capacity(args.pids.len());
    for &pid in &args.pids {
        pids.push(preflight::resolve_pid(pid)?);
    }
    pids.sort_unstable();
    pids.dedup();
    crate::atomic_file::prepare_output_dir(&args.output)?;
    preflight::raise_memlock_limit();

    let config = SamplingConfig { frequency_hz: args.frequency, pids, comm: args.comm.clone() };
    let mut loaded = Loaded::load(btf.as_ref(), &config)?;
    let ring = loaded.take_events()?;
    let start_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    tracing::info!(cpus = loaded.cpus.len(), "capturing");
    let (agg, elapsed, end) = capture::run(ring, args.duration).await?;
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
