use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Run a command, failing with its description if it does not succeed.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Passed and failed test counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
}

/// Run `cargo test …`, echoing its output, and add up its `test result:` lines.
pub fn run_tests(cmd: &mut Command, counts: &mut TestCounts) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).spawn().with_context(|| format!("could not start {cmd:?}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            // "ok. 11 passed; 0 failed; 0 ignored; …"
            for part in rest.split(['.', ';']) {
                let mut words = part.split_whitespace();
                match (words.next().and_then(|n| n.parse::<u64>().ok()), words.next()) {
                    (Some(n), Some("passed")) => counts.passed += n,
                    (Some(n), Some("failed")) => counts.failed += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("{} passed, {} failed", counts.passed, counts.failed.max(1));
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Run a command and capture its stdout as text.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Build the release binary; returns its path.
pub fn build_release() -> anyhow::Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "tailprof"]))?;
    let bin = root().join("target/release/tailprof");
    if !bin.exists() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}
