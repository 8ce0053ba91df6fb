//! Command-line interface (clap). Values are validated here so that bad
//! input is rejected before anything is loaded.

pub mod progress;
pub mod signals;

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tailprof", version, about = "Where did every thread spend its wall-clock time?")]
pub struct Cli {
    /// Log verbosity for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "TAILPROF_LOG")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture on-CPU stacks of the whole host (or selected processes) and write reports.
    Record(RecordArgs),
    /// Re-render the reports of a finished capture, sliced and filtered anew, without re-recording.
    Report(ReportArgs),
    /// Measure OS noise per CPU (IRQs, softirqs, NMIs, kernel threads, steal) and latency histograms.
    Noise(NoiseArgs),
    /// Run always on: the continuous tier in windows, stored with bounded retention, served over HTTP.
    Agent(Box<AgentArgs>),
    /// Serve the web viewer and the agent's API over capture directories that record wrote.
    Serve(ServeArgs),
}

/// Where `serve` and `record --open` listen unless told.
pub const DEFAULT_SERVE_LISTEN: &str = "127.0.0.1:9741";

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// A directory written by `tailprof record -o DIR`, a directory of them, or an agent's data directory
    /// (its captures).
    pub dir: PathBuf,

    /// Address to serve on; another than loopback needs --token-file.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_SERVE_LISTEN)]
    pub listen: std::net::SocketAddr,

    /// File holding a bearer token that every API request must carry.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl ServeArgs {
    pub fn to_config(&self) -> anyhow::Result<crate::serve::ServeConfig> {
        let token = match &self.token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("could not read the token file {}: {e}", path.display()))?;
                let token = text.trim().to_owned();
                anyhow::ensure!(!token.is_empty(), "the token file {} is empty", path.display());
                Some(token)
            }
        };
        Ok(crate::serve::ServeConfig { dir: self.dir.clone(), listen: self.listen, token })
    }
}

/// Every setting is also a key of the configuration file and an environment
/// variable; a flag wins over the environment, which wins over the file.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// TOML configuration file [default: /etc/tailprof/agent.toml if it exists].
    #[arg(long, value_name = "FILE", env = "TAILPROF_CONFIG")]
    pub config: Option<PathBuf>,

    /// Check the kernel, BTF, permissions, data directory and the token and push secrets, then exit.
    #[arg(long)]
    pub check: bool,

    /// Address of the HTTP API [default: 127.0.0.1:9740]; another than loopback needs --token-file.
    #[arg(long, value_name = "ADDR", env = "TAILPROF_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,

    /// Where segments are kept, created 0700 [default: /var/lib/tailprof].
    #[arg(long, value_name = "DIR", env = "TAILPROF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Length of a window, e.g. 10s [default: 10s].
    #[arg(long, value_name = "DURATION", env = "TAILPROF_WINDOW")]
    pub window: Option<String>,

    /// Segments older than this are deleted, e.g. 7d [default: 7d].
    #[arg(long, value_name = "DURATION", env = "TAILPROF_RETENTION")]
    pub retention: Option<String>,

    /// Most disk the segments may take, e.g. 1GiB [default: 1GiB].
    #[arg(long, value_name = "SIZE", env = "TAILPROF_MAX_DISK")]
    pub max_disk: Option<String>,

    /// Free space the data directory's file system keeps, e.g. 1GiB [default: 1GiB].
    #[arg(long, value_name = "SIZE", env = "TAILPROF_MIN_FREE_DISK")]
    pub min_free_disk: Option<String>,

    /// File holding the bearer token every endpoint but /healthz then requires.
    #[arg(long, value_name = "FILE", env = "TAILPROF_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// On-CPU sampling frequency per CPU, Hz [default: 99].
    #[arg(short = 'F', long, env = "TAILPROF_FREQUENCY", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub frequency: Option<u64>,

    /// Share of one CPU the agent may spend, percent [default: 1].
    #[arg(long, value_name = "PERCENT", env = "TAILPROF_CPU_BUDGET", value_parser = parse_cpu_budget)]
    pub cpu_budget: Option<f64>,

    /// Thread-state snapshots per second [default: 20].
    #[arg(long, value_name = "HZ", env = "TAILPROF_STATE_HZ", value_parser = parse_state_hz)]
    pub state_hz: Option<u64>,

    /// Bound of the per-thread tables [default: 65536].
    #[arg(long, value_name = "N", env = "TAILPROF_MAX_THREADS", value_parser = clap::value_parser!(u32).range(16..=4_194_304))]
    pub max_threads: Option<u32>,

    /// Name user frames from DWARF too: inlined functions and source lines in the windows, at
    /// the memory DWARF takes (tens of MB per large binary) [default: symbol tables only].
    #[arg(long, env = "TAILPROF_DEBUG_INFO")]
    pub debug_info: bool,

    /// Longest deep capture the API, alerts and rules may start [default: 2m].
    #[arg(long, value_name = "DURATION", env = "TAILPROF_CAPTURE_MAX_DURATION")]
    pub capture_max_duration: Option<String>,

    /// Pause after a capture before the next may start [default: 1m].
    #[arg(long, value_name = "DURATION", env = "TAILPROF_CAPTURE_COOLDOWN")]
    pub capture_cooldown: Option<String>,

    /// Length of the captures alerts and rules start [default: 10s].
    #[arg(long, value_name = "DURATION", env = "TAILPROF_CAPTURE_DURATION")]
    pub capture_duration: Option<String>,

    /// Captures kept on disk; older ones are deleted [default: 20].
    #[arg(long, value_name = "N", env = "TAILPROF_CAPTURES_KEPT")]
    pub captures_kept: Option<usize>,

    /// Age after which windows are merged into segments of 30 windows, and 36 times that into
    /// segments of 360 windows [default: 10m].
    #[arg(long, value_name = "DURATION", env = "TAILPROF_COMPACT_AFTER")]
    pub compact_after: Option<String>,

    /// Push every window to this Pyroscope server (its base URL, e.g. http://pyroscope:4040); repeatable.
    #[arg(long, value_name = "URL", env = "TAILPROF_PUSH_PYROSCOPE", value_delimiter = ',')]
    pub push_pyroscope: Vec<String>,

    /// Push every window as OTLP profiles to this OTLP/HTTP endpoint (its base URL, e.g.
    /// http://collector:4318; the path /v1development/profiles is added); repeatable.
    #[arg(long, value_name = "URL", env = "TAILPROF_PUSH_OTLP", value_delimiter = ',')]
    pub push_otlp: Vec<String>,

    /// The OTLP profiles proto version to speak (the signal is in development) [default: 1.10.0, the only one].
    #[arg(long, value_name = "VERSION", env = "TAILPROF_OTLP_PROFILES_VERSION")]
    pub otlp_profiles_version: Option<String>,

    /// How often pushes go out, e.g. 15s [default: 15s].
    #[arg(long, value_name = "DURATION", env = "TAILPROF_PUSH_INTERVAL")]
    pub push_interval: Option<String>,

    /// `__name__` of the off-CPU series: off_cpu, or offcpu as Grafana Alloy names it [default: off_cpu].
    #[arg(long, value_name = "NAME", env = "TAILPROF_PUSH_OFFCPU_NAME")]
    pub push_offcpu_name: Option<String>,

    /// How far back a backend that was down is caught up from the stored windows, e.g. 1h [default: 1h].
    #[arg(long, value_name = "DURATION", env = "TAILPROF_PUSH_REPLAY")]
    pub push_replay: Option<String>,

    /// File holding `user:password` for HTTP basic auth of pushes.
    #[arg(long, value_name = "FILE", env = "TAILPROF_PUSH_BASIC_AUTH_FILE")]
    pub push_basic_auth_file: Option<PathBuf>,

    /// File holding a bearer token for pushes.
    #[arg(long, value_name = "FILE", env = "TAILPROF_PUSH_BEARER_TOKEN_FILE")]
    pub push_bearer_token_file: Option<PathBuf>,

    /// Tenant the pushes are for (the X-Scope-OrgID header).
    #[arg(long, value_name = "ID", env = "TAILPROF_PUSH_TENANT")]
    pub push_tenant: Option<String>,
}

impl AgentArgs {
    /// What the command line (flags and environment) sets.
    pub fn settings(&self) -> crate::agent::AgentSettings {
        crate::agent::AgentSettings {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            window: self.window.clone(),
            retention: self.retention.clone(),
            max_disk: self.max_disk.clone(),
            min_free_disk: self.min_free_disk.clone(),
            token_file: self.token_file.clone(),
            frequency: self.frequency,
            cpu_budget: self.cpu_budget,
            state_hz: self.state_hz,
            max_threads: self.max_threads,
            debug_info: self.debug_info.then_some(true),
            capture_max_duration: self.capture_max_duration.clone(),
            capture_cooldown: self.capture_cooldown.clone(),
            capture_duration: self.capture_duration.clone(),
            captures_kept: self.captures_kept,
            compact_after: self.compact_after.clone(),
            // The file only: a list of tables has no flag.
            rules: None,
            push_pyroscope: (!self.push_pyroscope.is_empty()).then(|| self.push_pyroscope.clone()),
            push_otlp: (!self.push_otlp.is_empty()).then(|| self.push_otlp.clone()),
            otlp_profiles_version: self.otlp_profiles_version.clone(),
            push_interval: self.push_interval.clone(),
            push_offcpu_name: self.push_offcpu_name.clone(),
            push_replay: self.push_replay.clone(),
            push_basic_auth_file: self.push_basic_auth_file.clone(),
            push_bearer_token_file: self.push_bearer_token_file.clone(),
            push_tenant: self.push_tenant.clone(),
        }
    }

    /// The effective configuration: the command line over the file over defaults.
    pub fn to_config(&self) -> Result<crate::agent::AgentConfig, crate::agent::ConfigError> {
        let file = crate::agent::config::read_file(self.config.as_deref())?;
        let mut config = crate::agent::AgentConfig::resolve(self.settings().over(file))?;
        // Test-only: a program made to fail, as a kernel without its hook would.
        config.break_program = std::env::var("TAILPROF_TEST_BREAK_PROGRAM").ok().filter(|p| !p.is_empty());
        Ok(config)
    }
}

#[derive(Debug, Clone, Args)]
pub struct NoiseArgs {
    /// How long to measure, e.g. 10s, 500ms, 2m. Ctrl-C ends early and still reports.
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// deep: interrupt, softirq, NMI and scheduler hooks for exact own time per source, the
    /// longest events, victims and latency histograms. continuous: no program on those paths;
    /// per-CPU softirq, hard IRQ and steal time from /proc/stat, event counts from
    /// /proc/softirqs and /proc/interrupts, time per source estimated from on-CPU samples.
    #[arg(long, value_enum, default_value_t = crate::tier::Tier::Deep)]
    pub tier: crate::tier::Tier,

    /// On-CPU sampling frequency per CPU, in Hz, of the continuous tier's estimates
    /// [default: 99].
    #[arg(short = 'F', long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub frequency: Option<u64>,

    /// Only report these CPUs, e.g. 0-3,6 [default: every online CPU].
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,

    /// Victim view: what stole time from this process's threads; repeatable. A thread id selects its process.
    #[arg(short, long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Do not count noise events shorter than this, e.g. 5us [default: 0, count everything].
    #[arg(long, value_name = "DURATION", value_parser = parse_threshold)]
    pub threshold: Option<Duration>,

    /// Latency objectives to count misery against, e.g. runq=1ms,disk=20ms,syscall:read=10ms.
    #[arg(long, value_name = "SPECS")]
    pub slo: Option<String>,

    /// Keep syscall latency histograms: hooks on every system call's entry and exit, which cost
    /// on every syscall (implied by an --slo on syscall targets). Without them a blocked
    /// thread's syscall is read from its saved registers at switch-out.
    #[arg(long)]
    pub syscall_latency: bool,

    /// Print one JSON document (noise and histograms) on stdout instead of tables.
    #[arg(long)]
    pub json: bool,

    /// Also write noise.json, noise.svg, histograms.json, histograms.svg (and with --pid
    /// interference.svg and .folded) into this directory; created if missing.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Bound of the per-thread map (run-queue and syscall latency per thread).
    #[arg(long, value_name = "N", default_value_t = profiler_common::MAX_THREADS,
          value_parser = clap::value_parser!(u32).range(16..=4_194_304))]
    pub max_threads: u32,

    /// Kernel BTF to read kernel type layouts from.
    #[arg(long, default_value = crate::preflight::SYSFS_BTF)]
    pub btf: PathBuf,
}

/// `--threshold`: a duration, zero allowed (count everything).
pub fn parse_threshold(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("'{s}' is not a duration ({e}); write it like 5us, 100us or 1ms"))
}

/// What to report on and how to slice it; shared by `record` and `report`.
#[derive(Debug, Clone, Args)]
pub struct SliceArgs {
    /// Only this process (all its threads); repeatable. A thread id selects its process.
    #[arg(short, long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Only threads whose name (comm, at most 15 bytes) is exactly NAME.
    #[arg(long, value_name = "NAME", value_parser = parse_comm)]
    pub comm: Option<String>,

    /// Only processes whose cgroup path (v2, or any v1 hierarchy) starts with PATH-PREFIX,
    /// e.g. /system.slice/nginx.service or /kubepods.slice.
    #[arg(long, value_name = "PATH-PREFIX", value_parser = parse_cgroup_prefix)]
    pub cgroup: Option<String>,

    /// Only processes in a container whose id starts with ID-PREFIX (docker, containerd, cri-o, podman).
    #[arg(long, value_name = "ID-PREFIX", value_parser = parse_container_prefix)]
    pub container: Option<String>,

    /// Slice reports by these dimensions, outermost first: a comma list of comm, process, pid,
    /// tid, user, cgroup, container, pod, unit, state, syscall [default: comm for record, the
    /// capture's own for report].
    #[arg(long, value_name = "DIMS", value_parser = crate::group::parse_group_by)]
    pub group_by: Option<crate::group::GroupBy>,
}

impl SliceArgs {
    /// The selection, with pids as given (thread ids not yet resolved).
    pub fn selection(&self) -> crate::profile::Selection {
        crate::profile::Selection {
            pids: self.pids.clone(),
            comm: self.comm.clone(),
            cgroup: self.cgroup.clone(),
            container: self.container.clone(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A directory written by `tailprof record -o DIR`.
    pub dir: PathBuf,

    #[command(flatten)]
    pub slice: SliceArgs,

    /// Directory for the re-rendered reports [default: DIR itself; samples.jsonl.zst is never rewritten].
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Show the source file and line of user frames (from DWARF) in the reports
    /// [default: as the capture was recorded].
    #[arg(long)]
    pub lines: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// How long to capture, e.g. 10s, 500ms, 2m. Ctrl-C ends early and still writes everything.
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Cut the capture into windows this long, e.g. 1s (continuous tier): each window is
    /// written into windows/NNNN/ of the output directory, and their merge into the directory.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub window: Option<Duration>,

    /// On-CPU sampling frequency per CPU, in Hz.
    #[arg(short = 'F', long, default_value_t = 99, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub frequency: u64,

    #[command(flatten)]
    pub slice: SliceArgs,

    /// Directory for the reports; created if missing.
    #[arg(short, long, default_value = "tailprof-out")]
    pub output: PathBuf,

    /// When written, serve the capture in the web viewer (as `tailprof serve`) and print its URL;
    /// Ctrl-C stops serving.
    #[arg(long)]
    pub open: bool,

    /// Address `--open` serves on [default: 127.0.0.1:9741, or any free port if that is taken].
    #[arg(long, value_name = "ADDR", requires = "open")]
    pub open_listen: Option<std::net::SocketAddr>,

    /// continuous: nothing on the context-switch path; exact on-CPU and run-queue time per
    /// thread from the kernel's own counters, sampled sleeping/disk states and off-CPU stacks.
    /// deep: scheduler, syscall and interrupt hooks for exact off-CPU time by stack and waker,
    /// latency histograms and noise, at a cost on every context switch.
    #[arg(long, value_enum, default_value_t = crate::tier::Tier::Deep)]
    pub tier: crate::tier::Tier,

    /// Share of one CPU tailprof may spend (its process plus its BPF programs), e.g. 1 or 0.5%:
    /// over it, snapshots and then samples are taken less often, down to floors
    /// [default: 1 with --tier continuous, none with --tier deep].
    #[arg(long, value_name = "PERCENT", value_parser = parse_cpu_budget)]
    pub cpu_budget: Option<f64>,

    /// Skip the scheduler hooks and thread-state snapshots (on/off-CPU time of every thread)
    /// for the cheapest capture.
    #[arg(long)]
    pub no_off_cpu: bool,

    /// Thread-state snapshots of every thread on the host per second (1..=1000) [default: 20].
    #[arg(long, value_name = "HZ", value_parser = parse_state_hz)]
    pub state_hz: Option<u64>,

    /// Bound of the per-thread map; threads beyond it are counted in dropped_events.
    #[arg(long, value_name = "N", default_value_t = profiler_common::MAX_THREADS,
          value_parser = clap::value_parser!(u32).range(16..=4_194_304))]
    pub max_threads: u32,

    /// Bound of the blocking-stack map (the off-CPU aggregation map gets four times as many entries).
    #[arg(long, value_name = "N", default_value_t = profiler_common::MAX_STACKS,
          value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    pub max_stacks: u32,

    /// How user stacks are walked: fp (frame pointers, in the kernel), dwarf (copy the top of
    /// the user stack and unwind it with .eh_frame/.debug_frame), auto (dwarf except for
    /// processes whose code all keeps frame pointers).
    #[arg(long, value_enum, default_value_t = UnwindMethod::Auto)]
    pub unwind: UnwindMethod,

    /// Bytes of user stack copied per sample for dwarf unwinding (multiple of 8, 512..=65528).
    #[arg(long, value_name = "BYTES", default_value_t = profiler_common::DEFAULT_USER_STACK_BYTES,
          value_parser = parse_user_stack_size)]
    pub user_stack_size: u32,

    /// Show the source file and line of user frames in the reports, as `function (file.c:42)`,
    /// where DWARF (in the binary or an installed debug file) gives them.
    #[arg(long)]
    pub lines: bool,

    /// Keep syscall latency histograms: hooks on every system call's entry and exit, which cost
    /// on every syscall (implied by an --slo on syscall targets). Without them a blocked
    /// thread's syscall is read from its saved registers at switch-out.
    #[arg(long)]
    pub syscall_latency: bool,

    /// Latency objectives to count misery against in histograms.json, e.g.
    /// runq=1ms,disk=20ms,syscall:read=10ms.
    #[arg(long, value_name = "SPECS")]
    pub slo: Option<String>,

    /// Kernel BTF to read kernel type layouts from.
    #[arg(long, default_value = crate::preflight::SYSFS_BTF)]
    pub btf: PathBuf,
}

pub use crate::config::UnwindMethod;

/// `--unwind`'s values: the command line's view of the library's enum.
impl clap::ValueEnum for UnwindMethod {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Auto, Self::Fp, Self::Dwarf]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            Self::Auto => PossibleValue::new("auto")
                .help("DWARF where a process's code lacks frame pointers, frame pointers elsewhere"),
            Self::Fp => PossibleValue::new("fp").help("Frame pointers, walked in the kernel"),
            Self::Dwarf => PossibleValue::new("dwarf").help("Copy the user stack and unwind it with the modules' CFI"),
        })
    }
}

impl clap::ValueEnum for crate::tier::Tier {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Continuous, Self::Deep]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            Self::Continuous => PossibleValue::new("continuous").help(
                "Cheap enough to leave on: on-CPU sampling, fork/exec events and task-iterator snapshots of the \
                 kernel's cumulative per-thread counters; nothing on the context-switch, wake-up or syscall path",
            ),
            Self::Deep => PossibleValue::new("deep").help(
                "Scheduler, syscall and interrupt hooks: exact off-CPU time by stack and waker, latency \
                 histograms and exact noise per source, at a cost on every context switch; for bounded captures",
            ),
        })
    }
}

/// `--user-stack-size`: bytes, a multiple of 8 in 512..=65528.
pub fn parse_user_stack_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a whole number of bytes"))?;
    let max = profiler_common::MAX_USER_STACK_BYTES as u32;
    if !(512..=max).contains(&n) || !n.is_multiple_of(8) {
        return Err(format!("{n} is not a multiple of 8 between 512 and {max}"));
    }
    Ok(n)
}

/// Parse `10s`, `500ms`, `2m`, `1h30m`; zero is rejected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}); write it like 10s, 500ms or 2m"))?;
    if d.is_zero() {
        return Err(format!("'{s}' is zero; give a positive duration like 10s"));
    }
    Ok(d)
}

/// `--cpu-budget`: a percentage of one CPU, above 0 and at most 100.
pub fn parse_cpu_budget(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage of one CPU; write it like 1 or 0.5%"))?;
    if !(n > 0.0 && n <= 100.0) {
        return Err(format!(
            "{n}% is out of range; --cpu-budget takes more than 0 and at most 100 (percent of one CPU)"
        ));
    }
    Ok(n)
}

/// Default `--cpu-budget` of the continuous tier, percent of one CPU.
pub const DEFAULT_CONTINUOUS_BUDGET: f64 = 1.0;

/// Default of `--state-hz`.
pub const DEFAULT_STATE_HZ: u64 = 20;

/// Snapshots per second: 1..=1000.
pub fn parse_state_hz(s: &str) -> Result<u64, String> {
    let hz: u64 = s.parse().map_err(|_| format!("'{s}' is not a whole number of snapshots per second"))?;
    if hz == 0 || hz > 1000 {
        return Err(format!(
            "{hz} is out of range; --state-hz takes 1 to 1000 (use --no-off-cpu to turn snapshots off)"
        ));
    }
    Ok(hz)
}

/// Default on-CPU sampling frequency of `noise --tier continuous`.
pub const DEFAULT_NOISE_FREQUENCY: u64 = 99;

impl NoiseArgs {
    /// The plain configuration `noise` runs with; rejects options the
    /// chosen tier cannot honour and malformed lists, in one sentence.
    pub fn to_config(&self) -> crate::Result<crate::config::NoiseConfig> {
        let frequency_hz = self.checked_frequency().map_err(crate::Error::Usage)?;
        let cpus = match &self.cpus {
            Some(list) => Some((
                list.clone(),
                crate::noise::cpu_list::parse_cpu_list(list)
                    .map_err(|e| crate::Error::Usage(format!("--cpus {list}: {e}")))?,
            )),
            None => None,
        };
        Ok(crate::config::NoiseConfig {
            duration: self.duration,
            tier: self.tier,
            frequency_hz,
            cpus,
            pids: self.pids.clone(),
            threshold_ns: self.threshold.map_or(0, |t| t.as_nanos().min(u128::from(u64::MAX)) as u64),
            slos: crate::latency::parse_slos_arg(self.slo.as_deref())?,
            syscall_latency: self.syscall_latency,
            output: self.output.clone(),
            max_threads: self.max_threads,
            btf: self.btf.clone(),
        })
    }

    /// The sampling frequency of the continuous tier; rejects options the
    /// chosen tier cannot honour, naming the tier that can.
    pub fn checked_frequency(&self) -> Result<u64, String> {
        use crate::tier::Tier;
        match self.tier {
            Tier::Deep => match self.frequency {
                Some(_) => Err("--frequency sets the continuous tier's on-CPU sampling; the deep tier measures noise \
                                with hooks and samples nothing: drop --frequency or add --tier continuous"
                    .into()),
                None => Ok(0),
            },
            Tier::Continuous => {
                let deep_only = [
                    (!self.pids.is_empty(), "--pid (the victim view needs the scheduler hooks)"),
                    (self.threshold.is_some(), "--threshold (sampling sees no event's length)"),
                    (self.slo.is_some(), "--slo (there are no latency histograms)"),
                    (self.syscall_latency, "--syscall-latency (there are no syscall hooks)"),
                ];
                if let Some((_, what)) = deep_only.iter().find(|(given, _)| *given) {
                    return Err(format!("{what} works only with --tier deep; drop it or measure with --tier deep"));
                }
                Ok(self.frequency.unwrap_or(DEFAULT_NOISE_FREQUENCY))
            }
        }
    }
}

impl ReportArgs {
    /// The plain configuration `report` runs with.
    pub fn to_config(&self) -> crate::config::ReportConfig {
        crate::config::ReportConfig {
            dir: self.dir.clone(),
            output: self.output.clone(),
            group_by: self.slice.group_by.clone(),
            selection: self.slice.selection(),
            lines: self.lines,
        }
    }
}

impl RecordArgs {
    /// The plain configuration `record` runs with; rejects combinations
    /// that cannot work, in one sentence.
    pub fn to_config(&self) -> crate::Result<crate::config::RecordConfig> {
        if self.window.is_some() && (self.tier != crate::tier::Tier::Continuous || self.no_off_cpu) {
            return Err(crate::Error::Usage(
                "--window needs --tier continuous with the off-CPU view: a deep capture is one window, as its hooks' maps are read at its end".into(),
            ));
        }
        if self.window.is_some_and(|w| w < Duration::from_millis(100)) {
            return Err(crate::Error::Usage("--window must be at least 100ms".into()));
        }
        Ok(crate::config::RecordConfig {
            duration: self.duration,
            window: self.window,
            frequency_hz: self.frequency,
            selection: self.slice.selection(),
            group_by: self.slice.group_by.clone().unwrap_or_default(),
            output: self.output.clone(),
            tier: self.tier,
            cpu_budget: self.cpu_budget(),
            off_cpu: !self.no_off_cpu,
            state_hz: self.state_hz().map_err(crate::Error::Usage)?,
            max_threads: self.max_threads,
            max_stacks: self.max_stacks,
            unwind: self.unwind,
            user_stack_bytes: self.user_stack_size,
            lines: self.lines,
            debug_info: true,
            syscall_latency: self.syscall_latency,
            slos: crate::latency::parse_slos_arg(self.slo.as_deref())?,
            btf: self.btf.clone(),
            programs: Default::default(),
        })
    }

    /// The CPU budget in effect: as given, or the tier's default.
    pub fn cpu_budget(&self) -> Option<f64> {
        match self.tier {
            crate::tier::Tier::Continuous => Some(self.cpu_budget.unwrap_or(DEFAULT_CONTINUOUS_BUDGET)),
            crate::tier::Tier::Deep => self.cpu_budget,
        }
    }

    /// Snapshots per second, 0 when the off-CPU view is off. Rejects
    /// combinations that cannot work.
    pub fn state_hz(&self) -> Result<u64, String> {
        match (self.no_off_cpu, self.state_hz) {
            (true, Some(_)) => {
                Err("--state-hz needs the scheduler hooks, which --no-off-cpu turns off; drop one of the two".into())
            }
            (true, None) => Ok(0),
            (false, hz) => Ok(hz.unwrap_or(DEFAULT_STATE_HZ)),
        }
    }
}

/// A cgroup path prefix is absolute within its hierarchy.
pub fn parse_cgroup_prefix(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!(
            "'{s}' is not a cgroup path; give it as in /proc/PID/cgroup, starting with '/', e.g. /system.slice"
        ));
    }
    Ok(s.to_owned())
}

/// Container ids are lowercase hex.
pub fn parse_container_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "'{s}' is not the start of a container id; give hex digits, e.g. the 12 `docker ps` shows"
        ));
    }
    Ok(s.to_ascii_lowercase())
}

/// Thread names are at most 15 bytes in the kernel; a longer name can never match.
pub fn parse_comm(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the name is empty".into());
    }
    if s.len() > profiler_common::TASK_COMM_LEN - 1 {
        return Err(format!(
            "'{s}' is {} bytes long, but the kernel keeps at most 15 bytes of a thread name; give the first 15",
            s.len()
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("abc").unwrap_err().contains("not a duration"));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_threshold("5us").unwrap(), Duration::from_micros(5));
        assert_eq!(parse_threshold("0s").unwrap(), Duration::ZERO);
        assert!(parse_threshold("5 parsecs").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn state_hz_limits() {
        assert_eq!(parse_state_hz("20"), Ok(20));
        assert!(parse_state_hz("0").unwrap_err().contains("--state-hz"));
        assert!(parse_state_hz("1001").unwrap_err().contains("--state-hz"));
        assert!(parse_state_hz("x").is_err());
        let args = |v: &[&str]| match Cli::parse_from([&["tailprof", "record"], v].concat()).command {
            Command::Record(a) => a,
            _ => unreachable!("parsed a record command"),
        };
        assert_eq!(args(&[]).state_hz(), Ok(DEFAULT_STATE_HZ));
        assert_eq!(args(&["--no-off-cpu"]).state_hz(), Ok(0));
        assert!(args(&["--no-off-cpu", "--state-hz", "5"]).state_hz().unwrap_err().contains("--no-off-cpu"));
    }

    #[test]
    fn cpu_budgets() {
        assert_eq!(parse_cpu_budget("0.5"), Ok(0.5));
        assert_eq!(parse_cpu_budget("2%"), Ok(2.0));
        assert!(parse_cpu_budget("0").unwrap_err().contains("--cpu-budget"));
        assert!(parse_cpu_budget("150").is_err());
        assert!(parse_cpu_budget("lots").unwrap_err().contains("percentage"));
        let args = |v: &[&str]| match Cli::parse_from([&["tailprof", "record"], v].concat()).command {
            Command::Record(a) => a,
            _ => unreachable!("parsed a record command"),
        };
        assert_eq!(args(&["--tier", "continuous"]).cpu_budget(), Some(DEFAULT_CONTINUOUS_BUDGET));
        assert_eq!(args(&[]).cpu_budget(), None);
        assert_eq!(args(&["--cpu-budget", "3"]).cpu_budget(), Some(3.0));
    }

    #[test]
    fn noise_tiers_take_their_own_options() {
        let args = |v: &[&str]| match Cli::parse_from([&["tailprof", "noise"], v].concat()).command {
            Command::Noise(a) => a,
            _ => unreachable!("parsed a noise command"),
        };
        assert_eq!(args(&[]).tier, crate::tier::Tier::Deep, "deep is the default");
        assert_eq!(args(&[]).checked_frequency(), Ok(0));
        assert!(args(&["-F", "199"]).checked_frequency().unwrap_err().contains("--tier continuous"));
        let continuous = |v: &[&str]| args(&[&["--tier", "continuous"], v].concat()).checked_frequency();
        assert_eq!(continuous(&[]), Ok(DEFAULT_NOISE_FREQUENCY));
        assert_eq!(continuous(&["--frequency", "499"]), Ok(499));
        for deep_only in [&["--pid", "1"][..], &["--threshold", "5us"], &["--slo", "runq=1ms"], &["--syscall-latency"]]
        {
            let err = continuous(deep_only).unwrap_err();
            assert!(err.contains(deep_only[0]) && err.contains("--tier deep"), "{err}");
        }
    }

    #[test]
    fn filters_are_checked() {
        assert!(parse_cgroup_prefix("/system.slice").is_ok());
        assert!(parse_cgroup_prefix("system.slice").is_err());
        assert_eq!(parse_container_prefix("3F4e").as_deref(), Ok("3f4e"));
        assert!(parse_container_prefix("nginx").is_err());
    }

    #[test]
    fn comm_limits() {
        assert!(parse_comm("python3").is_ok());
        assert!(parse_comm("a-very-long-thread-name").is_err());
        assert!(parse_comm("").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
