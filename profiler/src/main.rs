use std::process::ExitCode;

use clap::Parser;
use tailprof::{
    capture::EndReason,
    cli::{progress::Progress, signals::cancel_on_signals, Cli, Command},
    output, record, report,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tailprof::sys::mem::limit_arenas();
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

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Command::Record(args) => {
            let config = args.to_config()?;
            let cancel = cancel_on_signals(&runtime)?;
            let mut line = Progress::new();
            let progress = Box::new(move |left, samples| line.update(left, samples));
            let recording = runtime.block_on(record::record(&config, Some(progress), &cancel))?;
            if recording.end == EndReason::Interrupted {
                eprintln!("tailprof: interrupted; wrote what was captured");
            }
            print_report(&recording.profile, &recording.files);
            if args.open {
                let listen = match args.open_listen {
                    Some(a) => a,
                    None => free_or_default(tailprof::cli::DEFAULT_SERVE_LISTEN.parse()?),
                };
                serve(&runtime, tailprof::serve::ServeConfig { dir: config.output.clone(), listen, token: None })?;
            }
            Ok(())
        }
        Command::Serve(args) => serve(&runtime, args.to_config()?),
        Command::Noise(args) => {
            let config = args.to_config()?;
            let cancel = cancel_on_signals(&runtime)?;
            let duration = humantime::format_duration(config.duration);
            let mut announce = |p: tailprof::noise::run::Progress| match p {
                tailprof::noise::run::Progress::Opened { cpus } => {
                    let s = if cpus == 1 { "" } else { "s" };
                    eprintln!("tailprof: measuring noise on {cpus} CPU{s} for {duration} (Ctrl-C ends early)");
                }
                tailprof::noise::run::Progress::Closed { seconds } => eprintln!("tailprof: measured {seconds:.2}s"),
            };
            let measured = runtime.block_on(tailprof::noise::run::run(&config, &mut announce, &cancel))?;
            let slos = &config.slos;
            let rendered = tailprof::noise::output::render(&measured.measurement, slos);
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
        Command::Agent(args) => {
            let config = args.to_config()?;
            if args.check {
                tailprof::agent::check(&config)?;
                println!("tailprof agent: kernel, BTF, permissions and {} are fine", config.data_dir.display());
                return Ok(());
            }
            // Queries are served by the runtime's workers while the
            // collector works on this thread.
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            let cancel = cancel_on_signals(&runtime)?;
            let reloads = tailprof::cli::signals::reload_on_sighup(&runtime)?;
            let load: tailprof::agent::Reload = Box::new(move || args.to_config());
            runtime.block_on(tailprof::agent::run(config, load, reloads, &cancel))?;
            Ok(())
        }
        Command::Report(args) => {
            let report = report::report(&args.to_config())?;
            print_report(&report.profile, &report.files);
            Ok(())
        }
    }
}

/// Serve capture directories until Ctrl-C or SIGTERM, printing the URL.
fn serve(runtime: &tokio::runtime::Runtime, config: tailprof::serve::ServeConfig) -> anyhow::Result<()> {
    let cancel = cancel_on_signals(runtime)?;
    let dir = config.dir.display().to_string();
    let announce = |addr: std::net::SocketAddr| {
        println!("\nserving {dir} at http://{addr}/ (Ctrl-C stops)");
    };
    runtime.block_on(tailprof::serve::run(&config, announce, &cancel))?;
    Ok(())
}

/// `addr` if it is free, else the same host on a port the kernel picks.
fn free_or_default(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => addr,
        Err(_) => std::net::SocketAddr::new(addr.ip(), 0),
    }
}

fn print_report(profile: &tailprof::profile::Profile, files: &[std::path::PathBuf]) {
    print!("{}", output::text::report(profile, 10));
    println!("\nwrote:");
    for f in files {
        println!("  {}", f.display());
    }
}
