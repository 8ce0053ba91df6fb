//! Builds the eBPF programs with aya-build so that `cargo build` yields one
//! self-contained `tailprof` binary (the object is embedded with
//! `include_bytes_aligned!`), as aya's template does; and puts the web
//! viewer's built assets (`web/dist`, made by `cargo xtask`) where
//! `web.rs` embeds them from, or a page that says how to build them.
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
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
