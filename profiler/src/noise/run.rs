//! `tailprof noise`: open a window, wait, close it and read what was
//! counted. The deep tier loads the interrupt, softirq, NMI and scheduler
//! hooks (no on-CPU sampling, no stack walks) and reads their maps; the
//! continuous tier loads only the on-CPU sampler (and the fork/exec hooks
//! every load has), classifies its samples as they arrive, and reads
//! /proc/stat, /proc/softirqs and /proc/interrupts at the window's bounds.

use std::time::Instant;

use profiler_common::Counter;

use super::{
    collect::{self, KernelCounts},
    continuous::ContinuousRaw,
    proc_counts, Measurement,
};
use crate::{
    bpf::{Loaded, SamplingConfig},
    capture::{self, EndReason},
    config::NoiseConfig,
    preflight, sched_times,
    tier::Tier,
    Error, Result,
};

/// What one noise window measured.
pub struct Measured {
    pub measurement: Measurement,
    pub end: EndReason,
}

/// Inputs checked before anything is loaded.
struct Checked {
    cpus: Vec<u32>,
    pids: Vec<u32>,
    /// On-CPU sampling frequency (continuous tier; 0 for deep).
    frequency: u64,
}

fn check(args: &NoiseConfig) -> Result<Checked> {
    let frequency = args.frequency_hz;
    let online = aya::util::online_cpus().map_err(|(_, source)| Error::Io { what: "read the online CPUs", source })?;
    let cpus = match &args.cpus {
        Some((list, cpus)) => {
            super::cpu_list::check_online(cpus).map_err(|e| Error::Usage(format!("--cpus {list}: {e}")))?;
            cpus.clone()
        }
        None => online,
    };
    let mut pids = Vec::with_capacity(args.pids.len());
    for &pid in &args.pids {
        pids.push(preflight::resolve_pid(pid)?);
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(Checked { cpus, pids, frequency })
}

/// What a noise run tells its caller as it goes (the command line prints it).
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// The window opened over this many CPUs.
    Opened { cpus: usize },
    /// The window closed after this many seconds; the maps are read next.
    Closed { seconds: f64 },
}

/// Measure one noise window as `args` say, telling `on` when the window
/// opens and closes.
pub async fn run(
    args: &NoiseConfig,
    on: &mut dyn FnMut(Progress),
    cancel: &crate::sys::cancel::Cancel,
) -> Result<Measured> {
    let checked = check(args)?;
    let slos = &args.slos;
    let (btf, offsets) = preflight::kernel_layout(&args.btf)?;
    if args.tier == Tier::Continuous {
        preflight::check_perf_events()?;
    }
    if let Some(dir) = &args.output {
        crate::atomic_file::prepare_output_dir(dir)?;
    }
    preflight::raise_memlock_limit();
    if args.tier == Tier::Continuous {
        let config = SamplingConfig {
            frequency_hz: checked.frequency,
            offsets,
            max_threads: args.max_threads,
            unwind: crate::config::UnwindMethod::Fp,
            sample_on_cpu: true,
            walk_stacks: false,
            off_cpu: false,
            noise: false,
            tier: Tier::Continuous,
            ..SamplingConfig::default()
        };
        let loaded = Loaded::load(btf.as_ref(), &config)?;
        return continuous(loaded, checked, args.duration, on, cancel).await;
    }
    let threshold_ns = args.threshold_ns;
    let config = SamplingConfig {
        pids: checked.pids.clone(),
        offsets,
        max_threads: args.max_threads,
        unwind: crate::config::UnwindMethod::Fp,
        sample_on_cpu: false,
        walk_stacks: false,
        noise_threshold_ns: threshold_ns,
        syscall_hooks: crate::latency::wants_syscall_hooks(args.syscall_latency, slos),
        ..SamplingConfig::default()
    };
    let mut loaded = Loaded::load(btf.as_ref(), &config)?;
    let start = sched_times::seed(&mut loaded.threads()?);
    loaded.set_window_start(start)?;
    let kernel_before = KernelCounts::now();
    on(Progress::Opened { cpus: checked.cpus.len() });
    let end = wait(args.duration, cancel).await?;
    let end_ns = crate::sys::clock::monotonic_ns();
    loaded.set_window_end(end_ns)?;
    let kernel_after = KernelCounts::now();
    on(Progress::Closed { seconds: (end_ns - start) as f64 / 1e9 });
    tracing::debug!(start, end_ns, "noise window closed");
    let window = start..end_ns;
    let noise = collect::noise(
        &loaded,
        collect::Window {
            ns: window.clone(),
            threshold_ns,
            cpus: checked.cpus,
            victim_pids: checked.pids,
            kernel_before,
            kernel_after,
        },
    )?;
    let histograms = collect::histograms(&loaded, &window)?;
    let names = collect::histogram_names(&histograms);
    Ok(Measured { measurement: Measurement::Deep { noise, histograms, names }, end })
}

/// The continuous tier's window: procfs at both bounds, the samples in
/// between, classified by the capture loop's noise sampler (the pipeline's
/// collector, with nothing but the noise sampler behind it).
async fn continuous(
    mut loaded: Loaded,
    checked: Checked,
    duration: std::time::Duration,
    on: &mut dyn FnMut(Progress),
    cancel: &crate::sys::cancel::Cancel,
) -> Result<Measured> {
    let ring = loaded.take_events()?;
    let kernel_before = KernelCounts::now();
    let plan = capture::Plan {
        duration,
        bounds: false,
        noise_sampling_hz: Some(checked.frequency),
        cancel: cancel.clone(),
        progress: None,
        profile: false,
    };
    let mut collector = capture::Collector::start(ring, None, None, None, None, plan, None).await?;
    let start = collector.window_start_ns();
    on(Progress::Opened { cpus: checked.cpus.len() });
    let end = match collector.collect_until(Instant::now() + duration).await? {
        capture::Cut::End(reason) => reason,
        capture::Cut::Boundary => EndReason::Elapsed,
    };
    let taken = collector.close_window().await?;
    let kernel_after = KernelCounts::now();
    on(Progress::Closed { seconds: taken.end_ns.saturating_sub(start) as f64 / 1e9 });
    let mut sampled = taken.noise.ok_or(Error::Internal("a noise window without its sampler"))?;
    sampled.idle_samples = loaded.counter(Counter::IdleSamples)?;
    sampled.lost_samples = loaded.counter(Counter::LostSamples)?;
    let interrupts = collect::table_delta(&kernel_before.interrupts, &kernel_after.interrupts);
    let raw = ContinuousRaw {
        window_start_ns: start,
        window_end_ns: taken.end_ns,
        cpus: checked.cpus,
        stat: proc_counts::times_delta(&kernel_before.stat, &kernel_after.stat),
        stat_since_boot: kernel_after.stat,
        kernel_interrupts: interrupts,
        kernel_softirqs: collect::table_delta(&kernel_before.softirqs, &kernel_after.softirqs),
        irq_names: proc_counts::irq_names(),
        sampled,
    };
    Ok(Measured { measurement: Measurement::Continuous(raw), end })
}

/// Wait for the duration, or until cancelled.
async fn wait(duration: std::time::Duration, cancel: &crate::sys::cancel::Cancel) -> Result<EndReason> {
    let deadline = tokio::time::Instant::from_std(Instant::now() + duration);
    Ok(tokio::select! {
        _ = tokio::time::sleep_until(deadline) => EndReason::Elapsed,
        _ = cancel.cancelled() => EndReason::Interrupted,
    })
}
