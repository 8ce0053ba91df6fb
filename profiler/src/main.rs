use std::process::ExitCode;

use clap::Parser;
use tailprof::{
    capture::EndReason,
    cli::{Cli, Command},
    output, record, report,
    sys::cancel::Cancel,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tailprof: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A cancel that Ctrl-C (SIGINT) or SIGTERM triggers: the capture then
/// ends early and still writes what it has.
fn cancel_on_signals(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Cancel> {
    use tokio::signal::unix::{signal, SignalKind};
    let cancel = Cancel::new();
    let mut sigterm = runtime.block_on(async { signal(SignalKind::terminate()) })?;
    let on_signal = cancel.clone();
    runtime.spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
        on_signal.cancel();
    });
    Ok(cancel)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Command::Record(args) => {
            let config = args.to_config()?;
            let cancel = cancel_on_signals(&runtime)?;
            let recording = runtime.block_on(record::record(&config, &cancel))?;
            if recording.end == EndReason::Interrupted {
                eprintln!("tailprof: interrupted; wrote what was captured");
            }
            print_report(&recording.profile, &recording.files);
            Ok(())
        }
        Command::Noise(args) => {
            let slos = tailprof::latency::parse_slos_arg(args.slo.as_deref())?;
            let cancel = cancel_on_signals(&runtime)?;
            let measured = runtime.block_on(tailprof::noise::run::run(&args, &cancel))?;
            let rendered = tailprof::noise::output::render(&measured.measurement, &slos);
            let files = match &args.output {
                Some(dir) => tailprof::noise::output::write_files(dir, &measured.measurement, &rendered)?,
                None => Vec::new(),
            };
            if args.json {
                println!("{}", tailprof::noise::output::json_document(&rendered)?);
            } else {
                print!("{}", tailprof::noise::output::text(&rendered));
                if !files.is_empty() {
                    println!("\nwrote:");
                    for f in &files {
                        println!("  {}", f.display());
                    }
                }
            }
            if measured.end == EndReason::Interrupted {
                eprintln!("tailprof: interrupted; reported what was measured");
            }
            Ok(())
        }
        Command::Report(args) => {
            let report = report::report(&args)?;
            print_report(&report.profile, &report.files);
            Ok(())
        }
    }
}

fn print_report(profile: &tailprof::profile::Profile, files: &[std::path::PathBuf]) {
    print!("{}", output::text::report(profile, 10));
    println!("\nwrote:");
    for f in files {
        println!("  {}", f.display());
    }
}
