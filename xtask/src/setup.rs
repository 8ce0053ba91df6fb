//! Idempotent set-up of a fresh machine of this kind; a quick no-op when
//! everything is present.

use std::process::Command;

use anyhow::{bail, Context};

use crate::util::{output, run};

const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Debian packages: the LLVM bpf-linker links against, and the peers and
/// oracles used by tests and benchmarks.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "linux-perf",
    "bpftool",
    "bpftrace",
    "stress-ng",
    "gcc",
    "prometheus",
    "curl",
    "zstd",
    // The viewer's browser tests, and the Go pprof tool that reads its export.
    "chromium",
    "golang-go",
    "golang-github-google-pprof-dev",
    // The fleet-export tests' receiver: Debian's Python decodes the pushes
    // with protobuf classes protoc compiles from the protos.
    "python3-protobuf",
    "protobuf-compiler",
];

pub fn setup() -> anyhow::Result<()> {
    apt_packages()?;
    node()?;
    browser_tests()?;
    pprof_tool()?;
    rust_src()?;
    bpf_linker()?;
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask setup: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Node.js and npm build the web viewer (web/): Debian's, unless some are there.
fn node() -> anyhow::Result<()> {
    let has = |bin: &str| Command::new(bin).arg("--version").output().is_ok_and(|o| o.status.success());
    if has("node") && has("npm") {
        return Ok(());
    }
    eprintln!("xtask setup: installing nodejs and npm (they build the web viewer)");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "nodejs", "npm"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// playwright-core for tests/web (it drives Debian's chromium; it downloads no browser).
fn browser_tests() -> anyhow::Result<()> {
    let dir = crate::util::root().join("tests/web");
    if dir.join("node_modules/playwright-core/package.json").exists() {
        return Ok(());
    }
    eprintln!("xtask setup: installing playwright-core for the browser tests");
    run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir))
}

/// The Go pprof tool, built offline from Debian's sources into target/tools/pprof.
fn pprof_tool() -> anyhow::Result<()> {
    let out = crate::util::root().join("target/tools/pprof");
    if out.exists() {
        return Ok(());
    }
    eprintln!("xtask setup: building the Go pprof tool (it reads the viewer's pprof export in the tests)");
    run(Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg("github.com/google/pprof")
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOCACHE", crate::util::root().join("target/tools/go-cache")))
    .context("could not build the Go pprof tool")
}

fn rust_src() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        bail!("the `nightly` Rust toolchain is missing; the eBPF programs are built with it (rustup toolchain install nightly)");
    }
    let components =
        output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask setup: adding rust-src to the nightly toolchain");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let current = Command::new("bpf-linker").arg("--version").output().ok().filter(|o| o.status.success());
    if let Some(out) = current {
        if String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION) {
            return Ok(());
        }
    }
    eprintln!("xtask setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    run(Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", LLVM_PREFIX))
    .context("could not build bpf-linker")
}
