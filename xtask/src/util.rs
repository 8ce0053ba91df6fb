use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use anyhow::{bail, Context};

/// The workspace root, found at run time (not where xtask was compiled, so
/// that a copied xtask binary drives the checkout it is run in): the first
/// directory, from the current directory upwards, whose Cargo.toml declares
/// `[workspace]` and which has an `xtask/` directory; failing that, the same
/// search from the xtask executable's directory. Exits with an error when
/// neither finds one.
pub fn root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        find_root().unwrap_or_else(|| {
            eprintln!(
                "Error: no tailprof checkout found (a directory with a [workspace] Cargo.toml and an xtask/ \
                 directory) above the current directory or the xtask executable; run xtask from inside the checkout."
            );
            std::process::exit(1)
        })
    })
    .clone()
}

fn find_root() -> Option<PathBuf> {
    let is_root = |dir: &Path| {
        dir.join("xtask").is_dir()
            && std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.lines().any(|line| line.trim() == "[workspace]"))
    };
    let cwd = std::env::current_dir().ok();
    let exe_dir = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf));
    [cwd, exe_dir]
        .into_iter()
        .flatten()
        .find_map(|start| start.ancestors().find(|dir| is_root(dir)).map(Path::to_path_buf))
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

/// Build the web viewer into web/dist (npm and esbuild; `npm ci` when
/// node_modules is missing or older than the lock file), which the
/// release binary embeds.
pub fn build_web() -> anyhow::Result<()> {
    let web = root().join("web");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (modified(&web.join("node_modules/.package-lock.json")), modified(&web.join("package-lock.json")))
    {
        (Some(installed), Some(lock)) => installed < lock,
        _ => true,
    };
    if stale {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&web))?;
    }
    // Rebuilt only when a source is newer than the bundle: a rebuild
    // touches web/dist, which makes cargo rebuild the binary.
    let built = modified(&web.join("dist/app.js"));
    let newest = ["src", "build.mjs", "package-lock.json"].iter().flat_map(|p| newest_under(&web.join(p))).max();
    if built.is_some() && newest.is_some_and(|n| Some(n) <= built) {
        return Ok(());
    }
    run(Command::new("npm").args(["run", "--silent", "build"]).current_dir(&web))
}

/// The latest modification time of a file, or of the files under a directory.
fn newest_under(p: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(p).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(p).ok()?.flatten().filter_map(|e| newest_under(&e.path())).max()
}

/// Build the viewer, then the release binary (which embeds it); returns its path.
pub fn build_release() -> anyhow::Result<PathBuf> {
    build_web()?;
    run(cargo().args(["build", "--release", "-p", "tailprof"]))?;
    let bin = root().join("target/release/tailprof");
    if !bin.exists() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}
