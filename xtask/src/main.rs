//! `cargo xtask`: set-up, build, run, test and bench for tailprof.

mod bench;
mod cycles;
mod setup;
mod soak;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what a fresh machine lacks: llvm-22-dev, bpf-linker 0.13.0, rust-src for nightly, test and bench tools.
    Setup,
    /// Set up and build the release `tailprof` binary (eBPF object embedded).
    Build,
    /// Set up, build and run `tailprof` as root with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build and run the whole test suite: formatting, clippy and the import-cycle check, unit
    /// tests, end-to-end tests loading real programs, a 3-minute soak and the performance gate.
    Test,
    /// Check that the files of profiler/src import each other without a cycle (else print the cycles).
    Cycles {
        /// Also print the imports inside each cycle.
        #[arg(long)]
        edges: bool,
    },
    /// Set up, build and run the overhead benchmarks side by side with perf; writes BENCHMARKS.md.
    Bench {
        /// Seconds per measured phase.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Interleaved repetitions of every phase; medians are reported.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Run the short qualification instead (about 5 minutes): each key ratio against its limit in
        /// qualify/limits.toml, failing on a regression beyond the measured noise band.
        #[arg(long)]
        qualify: bool,
    },
    /// Run the agent under combined load (fork/exec storms, thread churn, sched-pipe, a UDP flood, fsync,
    /// 10,000 idle threads, constant API queries) and report per minute; writes SOAK.md.
    Soak {
        /// Minutes of load.
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// Write the report here instead of SOAK.md (CI's short run writes under target/).
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::setup(),
        Command::Build => {
            setup::setup()?;
            util::build_release()?;
            Ok(())
        }
        Command::Run { args } => {
            setup::setup()?;
            let bin = util::build_release()?;
            util::run(std::process::Command::new(bin).args(args))
        }
        Command::Cycles { edges } => cycles::check(&util::root(), edges),
        Command::Test => {
            setup::setup()?;
            let bin = util::build_release()?;
            // Style and structure first: they fail in seconds.
            util::run(util::cargo().args(["fmt", "--all", "--check"]))?;
            let clippy = ["clippy", "--release", "-p", "tailprof", "-p", "profiler-common", "-p", "xtask"];
            util::run(util::cargo().args(clippy).args([
                "-p",
                "tailprof-e2e",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))?;
            cycles::check(&util::root(), false)?;
            // The viewer: strict types, then its unit tests (node's runner).
            let web = util::root().join("web");
            util::run(std::process::Command::new("npm").args(["run", "--silent", "check"]).current_dir(&web))?;
            util::run(std::process::Command::new("npm").args(["test"]).current_dir(&web))?;
            let mut counts = util::TestCounts::default();
            // The eBPF crate is not a host crate: name the host packages.
            let unit = ["test", "--release", "-p", "tailprof", "-p", "profiler-common", "-p", "xtask"];
            util::run_tests(util::cargo().args(unit), &mut counts)?;
            // End-to-end tests load real programs and measure the whole host: one at a time.
            // Build them first and flush the build's dirty pages, so that writeback does not
            // stall the workloads whose disk waits (fdatasync) the tests time.
            util::run(util::cargo().args(["test", "--release", "-p", "tailprof-e2e", "--no-run"]))?;
            // SAFETY: sync has no preconditions.
            unsafe { libc::sync() };
            let e2e = ["test", "--release", "-p", "tailprof-e2e", "--", "--test-threads=1"];
            util::run_tests(util::cargo().args(e2e).env("TAILPROF_BIN", &bin), &mut counts)?;
            println!("{} passed, {} failed", counts.passed, counts.failed);
            // The agent under combined load for 3 minutes (the 30-minute run is SOAK.md), then the
            // performance gate: each key ratio against its limit.
            let soak = soak::run(&bin, 3, &util::root().join("target/soak-ci.md"))?;
            // The soak's loads are gone; let its data directory's deletion write back and
            // the host settle before timing anything (the snapshot figure read 707 ns
            // against a baseline of 571 right after it).
            // SAFETY: sync has no preconditions.
            unsafe { libc::sync() };
            std::thread::sleep(std::time::Duration::from_secs(20));
            bench::qualify(&bin, &[("soak_3min_peak_rss_mib", soak.peak_rss_mib)])
        }
        Command::Bench { seconds, reps, qualify } => {
            setup::setup()?;
            let bin = util::build_release()?;
            match qualify {
                true => bench::qualify(&bin, &[]),
                false => bench::run(&bin, seconds, reps.max(1)),
            }
        }
        Command::Soak { minutes, report } => {
            setup::setup()?;
            let bin = util::build_release()?;
            let report = report.unwrap_or_else(|| util::root().join("SOAK.md"));
            soak::run(&bin, minutes.max(1), &report).map(drop)
        }
    }
}
