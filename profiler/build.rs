//! Builds the eBPF programs with aya-build so that `cargo build` yields one
//! self-contained `tailprof` binary (the object is embedded with
//! `include_bytes_aligned!`), as aya's template does.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root_dir = format!("{manifest_dir}/../profiler-ebpf");
    let ebpf = aya_build::Package { name: "profiler-ebpf", root_dir: &root_dir, ..Default::default() };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
