//! `tailprof noise`: load the interrupt, softirq, NMI and scheduler
//! hooks (no on-CPU sampling, no stack walks), open a window, wait, close
//! it and read what the kernel counted.

use std::time::Instant;

use tokio::signal::unix::{signal, SignalKind};

use super::{collect, NoiseRaw};
use crate::{
    bpf::{Loaded, SamplingConfig},
    capture::EndReason,
    cli::NoiseArgs,
    latency::HistogramsRaw,
    preflight, sched_times, Error, Result,
};

/// What one noise window measured.
pub struct Measured {
    pub noise: NoiseRaw,
    pub histograms: HistogramsRaw,
    pub histogram_names: crate::latency::HistogramNames,
    pub end: EndReason,
}

/// Inputs checked before anything is loaded.
struct Checked {
    cpus: Vec<u32>,
    pids: Vec<u32>,
}

fn check(args: &NoiseArgs) -> Result<Checked> {
    let online = aya::util::online_cpus().map_err(|(what, e)| Error::Load(format!("{what}: {e}")))?;
    let cpus = match &args.cpus {
        Some(list) => {
            let cpus =
                super::cpu_list::parse_cpu_list(list).map_err(|e| Error::Usage(format!("--cpus {list}: {e}")))?;
            super::cpu_list::check_online(&cpus).map_err(|e| Error::Usage(format!("--cpus {list}: {e}")))?;
            cpus
        }
        None => online,
    };
    let mut pids = Vec::with_capacity(args.pids.len());
    for &pid in &args.pids {
        pids.push(preflight::resolve_pid(pid)?);
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(Checked { cpus, pids })
}

pub async fn run(args: &NoiseArgs) -> Result<Measured> {
    let checked = check(args)?;
    let slos = crate::latency::parse_slos_arg(args.slo.as_deref())?;
    let (btf, offsets) = preflight::kernel_layout(&args.btf)?;
    if let Some(dir) = &args.output {
        crate::atomic_file::prepare_output_dir(dir)?;
    }
    preflight::raise_memlock_limit();
    let threshold_ns = args.threshold.map_or(0, |t| t.as_nanos().min(u128::from(u64::MAX)) as u64);
    let config = SamplingConfig {
        pids: checked.pids.clone(),
        offsets,
        max_threads: args.max_threads,
        unwind: crate::cli::UnwindMethod::Fp,
        sample_on_cpu: false,
        walk_stacks: false,
        noise_threshold_ns: threshold_ns,
        syscall_hooks: crate::latency::wants_syscall_hooks(args.syscall_latency, &slos),
        ..SamplingConfig::default()
    };
    let mut loaded = Loaded::load(btf.as_ref(), &config)?;
    let steal_before = super::proc_counts::steal_ns();
    let start = sched_times::seed(&mut loaded.threads()?);
    loaded.set_window_start(start)?;
    let kernel_before = collect::KernelCounts::now();
    eprintln!(
        "tailprof: measuring noise on {} CPU{} for {} (Ctrl-C ends early)",
        checked.cpus.len(),
        if checked.cpus.len() == 1 { "" } else { "s" },
        humantime::format_duration(args.duration)
    );
    let end = wait(args.duration).await?;
    let end_ns = sched_times::monotonic_ns();
    loaded.set_window_end(end_ns)?;
    let kernel_after = collect::KernelCounts::now();
    let steal_after = super::proc_counts::steal_ns();
    eprintln!("tailprof: measured {:.2}s", (end_ns - start) as f64 / 1e9);
    tracing::debug!(start, end_ns, "noise window closed");
    let window = start..end_ns;
    let noise = collect::noise(
        &loaded,
        collect::Window {
            ns: window.clone(),
            threshold_ns,
            cpus: checked.cpus,
            victim_pids: checked.pids,
            steal_before,
            steal_after,
            kernel_before,
            kernel_after,
        },
    )?;
    let histograms = collect::histograms(&loaded, &window)?;
    let histogram_names = collect::histogram_names(&histograms);
    Ok(Measured { noise, histograms, histogram_names, end })
}

/// Wait for the duration, Ctrl-C or SIGTERM.
async fn wait(duration: std::time::Duration) -> Result<EndReason> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::Read(e.to_string()))?;
    let deadline = tokio::time::Instant::from_std(Instant::now() + duration);
    Ok(tokio::select! {
        _ = tokio::time::sleep_until(deadline) => EndReason::Elapsed,
        _ = tokio::signal::ctrl_c() => EndReason::Interrupted,
        _ = sigterm.recv() => EndReason::Interrupted,
    })
}
