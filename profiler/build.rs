//! Builds the eBPF programs with aya-build so that `cargo build` yields one
//! self-contained `tailprof` binary (the object is embedded with
//! `include_bytes_aligned!`), as aya's template does; and puts the web
//! viewer's built assets (`web/dist`, made by `cargo xtask`) where
//! `web.rs` embeds them from, or a page that says how to build them.
//!
//! aya-build relays every line the eBPF cargo prints (`Compiling …`,
//! `Finished …`) as a `cargo:warning`, which buries real warnings: its
//! output is caught in a file and only the rest is relayed.
use std::io::{Seek as _, Write as _};

use anyhow::Context as _;

/// What the page says when `web/dist` was not built.
const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>tailprof</title>\n<p>The viewer was not built into this binary: run <code>cargo xtask build</code> (it builds <code>web/</code> with npm), then rebuild. The API is at <a href=/api/v1/status>/api/v1/status</a>.</p>\n";

fn web_assets(manifest_dir: &str) -> anyhow::Result<()> {
    let dist = std::path::PathBuf::from(format!("{manifest_dir}/../web/dist"));
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR not set")?).join("web");
    println!("cargo:rerun-if-changed={}", dist.display());
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).with_context(|| format!("could not create {}", out.display()))?;
    let mut copied = 0;
    if let Ok(entries) = std::fs::read_dir(&dist) {
        for e in entries.flatten().filter(|e| e.path().is_file()) {
            std::fs::copy(e.path(), out.join(e.file_name()))
                .with_context(|| format!("could not copy {}", e.path().display()))?;
            copied += 1;
        }
    }
    if copied == 0 {
        std::fs::write(out.join("index.html"), NOT_BUILT)?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    web_assets(&manifest_dir)?;
    let root_dir = format!("{manifest_dir}/../profiler-ebpf");
    let ebpf = aya_build::Package { name: "profiler-ebpf", root_dir: &root_dir, ..Default::default() };
    let (built, printed) = catch_stdout(|| aya_build::build_ebpf([ebpf], aya_build::Toolchain::default()))?;
    let mut out = std::io::stdout().lock();
    for line in printed.lines() {
        if !is_progress(line) {
            writeln!(out, "{line}")?;
        }
    }
    built
}

/// A relayed line of cargo's progress, not a diagnostic.
fn is_progress(line: &str) -> bool {
    let Some(text) = line.strip_prefix("cargo:warning=") else { return false };
    let text = text.trim_start();
    [
        "Compiling ",
        "Finished ",
        "Checking ",
        "Fresh ",
        "Running ",
        "Building ",
        "Blocking ",
        "Updating ",
        "Locking ",
        "Downloading ",
        "Downloaded ",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

/// Run `f` with this process's stdout (where build scripts speak to cargo)
/// going to a file; the result and what it printed.
fn catch_stdout<T>(f: impl FnOnce() -> T) -> anyhow::Result<(T, String)> {
    use std::os::fd::AsRawFd as _;
    let out = std::env::var("OUT_DIR").context("OUT_DIR not set")?;
    let path = std::path::Path::new(&out).join("aya-build.stdout");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("could not create {}", path.display()))?;
    std::io::stdout().flush()?;
    // SAFETY: plain descriptor calls on this process's own stdout and on a
    // file it holds open; stdout is restored before anything else prints.
    let saved = unsafe { libc_dup(1) };
    anyhow::ensure!(saved >= 0, "could not duplicate stdout");
    unsafe { libc_dup2(file.as_raw_fd(), 1) };
    let result = f();
    std::io::stdout().flush()?;
    unsafe {
        libc_dup2(saved, 1);
        libc_close(saved);
    }
    file.rewind()?;
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut file, &mut printed)?;
    Ok((result, printed))
}

extern "C" {
    #[link_name = "dup"]
    fn libc_dup(fd: i32) -> i32;
    #[link_name = "dup2"]
    fn libc_dup2(fd: i32, to: i32) -> i32;
    #[link_name = "close"]
    fn libc_close(fd: i32) -> i32;
}
