//! Measuring helpers shared by the benchmark sections: CPU time of a child
//! (wait4 and per-thread schedstat), run time of the BPF programs a process
//! holds (fdinfo, with `kernel.bpf_stats_enabled=1`), readiness polling.

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::util::output;

/// tailprof's `record --tier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Continuous,
    Deep,
}

impl Tier {
    pub const ALL: [Tier; 2] = [Tier::Continuous, Tier::Deep];

    /// The `--tier` value, also summary.json's `tier`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Continuous => "continuous",
            Tier::Deep => "deep",
        }
    }

    /// Snapshots a capture takes besides the periodic ones: the continuous
    /// tier opens and closes its window with one each. They count in
    /// `state_sampler.records` and `cpu_ns`, not in `snapshots`.
    pub fn bound_snapshots(self) -> u64 {
        match self {
            Tier::Continuous => 2,
            Tier::Deep => 0,
        }
    }
}

/// tailprof's snapshot iterator program as the kernel names it. It runs
/// inside tailprof's own read() of the iterator, so its run time is already
/// in the CPU time of tailprof's snapshot thread, not in other tasks'.
pub const SNAPSHOT_ITER_PROG: &str = "thread_snapshot";

/// A capture's summary.json.
pub fn summary(out: &Path) -> anyhow::Result<serde_json::Value> {
    let path = out.join("summary.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("could not read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// A capture's summary.json, checked to come from a capture of `tier`.
pub fn tier_summary(out: &Path, tier: Tier) -> anyhow::Result<serde_json::Value> {
    let json = summary(out)?;
    if json["tier"].as_str() != Some(tier.name()) {
        bail!(
            "{}: tier {} where --tier {} was asked for",
            out.join("summary.json").display(),
            json["tier"],
            tier.name()
        );
    }
    Ok(json)
}

/// True once `pid` is a zombie or gone (its BPF programs are then released),
/// without reaping it, so that wait4 still gets its CPU time.
pub fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z"),
        Err(_) => true,
    }
}

/// A peer tool of a section, named in its tables.
pub trait Tool: Copy {
    fn label(self) -> &'static str;
}

/// A tool, with BPF run-time statistics on or off. Statistics cost each BPF
/// program run two clock reads, so slowdowns are measured with them off and
/// the BPF tools run once more with them on to see where their time goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition<T> {
    pub tool: T,
    pub bpf_stats: bool,
}

impl<T: Tool> Condition<T> {
    pub fn label(self) -> String {
        if self.bpf_stats {
            format!("{}, bpf_stats on", self.tool.label())
        } else {
            self.tool.label().to_owned()
        }
    }

    pub fn with_stats(tool: T) -> Self {
        Condition { tool, bpf_stats: true }
    }

    pub fn without_stats(tool: T) -> Self {
        Condition { tool, bpf_stats: false }
    }
}

/// A tool started in the background, its output captured in files.
pub struct Started {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// Start `cmd` for `cond` with stdin closed and stdout and stderr in
/// `BASE.stdout` / `BASE.stderr`.
pub fn spawn_tool<T: Tool>(mut cmd: Command, cond: Condition<T>, base: &Path) -> anyhow::Result<Started> {
    let stdout = base.with_extension("stdout");
    let stderr = base.with_extension("stderr");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&stdout)?)
        .stderr(File::create(&stderr)?)
        .spawn()
        .with_context(|| format!("could not start {}", cond.tool.label()))?;
    Ok(Started { child, stdout, stderr })
}

/// CPU time of a finished child, from wait4.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub user: Duration,
    pub sys: Duration,
}

impl Cost {
    pub fn total(&self) -> Duration {
        self.user + self.sys
    }
}

/// Reap `child` and return its CPU time. A tool stopped with SIGINT may exit
/// 0, 128+SIGINT (perf does) or die of the signal: all count as success when
/// `interrupted`; anything else is an error naming `what`.
pub fn wait_with_cost(child: Child, what: &str, interrupted: bool) -> anyhow::Result<Cost> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: we own the child and reap it exactly once here.
    let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if ret != pid {
        bail!("wait4 for {what} ({pid}) failed: {}", std::io::Error::last_os_error());
    }
    std::mem::forget(child);
    let exited_ok = libc::WIFEXITED(status)
        && (libc::WEXITSTATUS(status) == 0 || (interrupted && libc::WEXITSTATUS(status) == 128 + libc::SIGINT));
    let killed_by_int = interrupted && libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGINT;
    if !(exited_ok || killed_by_int) {
        bail!("{what} ({pid}) failed with wait status {status:#x}");
    }
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Ok(Cost { user: tv(usage.ru_utime), sys: tv(usage.ru_stime) })
}

/// `tailprof ARGS -o OUT` started with no terminal, its stderr kept in
/// OUT.stderr for [`wait_record`] to quote if it fails.
pub struct Recording {
    pub child: Child,
    pub stderr: PathBuf,
}

pub fn spawn_record(bin: &Path, args: &[&str], out: &Path) -> anyhow::Result<Recording> {
    let stderr = out.with_extension("stderr");
    let child = Command::new(bin)
        .args(args)
        .arg("-o")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr)?)
        .spawn()
        .context("could not start tailprof")?;
    Ok(Recording { child, stderr })
}

/// Reap a [`Recording`] that ends by itself; its cost, or an error quoting what it said.
pub fn wait_record(r: Recording, what: &str) -> anyhow::Result<Cost> {
    wait_with_cost(r.child, what, false).map_err(|e| {
        let said = std::fs::read_to_string(&r.stderr).unwrap_or_default();
        e.context(format!("{what} failed; it said: {}", said.trim()))
    })
}

/// Send SIGINT, as Ctrl-C would.
pub fn interrupt(child: &Child) -> anyhow::Result<()> {
    // SAFETY: plain kill(2) on a child we have not reaped yet.
    if unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) } != 0 {
        bail!("could not send SIGINT to {}: {}", child.id(), std::io::Error::last_os_error());
    }
    Ok(())
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Current `kernel.bpf_stats_enabled` (empty if unreadable).
pub fn bpf_stats() -> String {
    std::fs::read_to_string(BPF_STATS).unwrap_or_default().trim().to_owned()
}

/// Turn BPF run-time statistics (run_time_ns, run_cnt) on or off.
pub fn set_bpf_stats(on: bool) -> anyhow::Result<()> {
    std::fs::write(BPF_STATS, if on { "1" } else { "0" })
        .with_context(|| format!("could not write {BPF_STATS} (kernel.bpf_stats_enabled)"))
}

/// Run statistics of one BPF program (kernel.bpf_stats_enabled=1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgStats {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The BPF programs `pid` holds a file descriptor of, by program id, read
/// from /proc/PID/fdinfo. Only that process's programs count, whatever else
/// runs on the host (another tailprof, the test suite). Empty once it exits.
pub fn bpf_progs_of(pid: u32) -> BTreeMap<u32, ProgStats> {
    let mut progs = BTreeMap::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return progs;
    };
    for fd in fds.flatten() {
        let is_prog = std::fs::read_link(fd.path()).map(|t| t.as_os_str() == "anon_inode:bpf-prog").unwrap_or(false);
        if !is_prog {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
        else {
            continue;
        };
        let field =
            |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok());
        if let Some(id) = field("prog_id") {
            let stats =
                ProgStats { run_time_ns: field("run_time_ns").unwrap_or(0), run_cnt: field("run_cnt").unwrap_or(0) };
            progs.insert(id as u32, stats);
        }
    }
    progs
}

/// Total BPF run time of the programs `pid` holds, nanoseconds.
pub fn bpf_run_time_ns_of(pid: u32) -> u64 {
    bpf_progs_of(pid).values().map(|s| s.run_time_ns).sum()
}

/// Names of loaded BPF programs by id (`bpftool prog show`; names are cut to
/// 15 bytes by the kernel).
pub fn bpf_prog_names() -> anyhow::Result<BTreeMap<u32, String>> {
    let json = output(Command::new("bpftool").args(["prog", "show", "-j"]))?;
    let progs: serde_json::Value = serde_json::from_str(&json).context("bpftool prog show -j printed no JSON")?;
    let list = progs.as_array().context("bpftool prog show -j did not print a JSON array")?;
    Ok(list
        .iter()
        .filter_map(|p| Some((p["id"].as_u64()? as u32, p["name"].as_str().unwrap_or("").to_owned())))
        .collect())
}

/// CPU time so far of the live threads of `pid` (sum of the first field of
/// /proc/PID/task/*/schedstat, nanoseconds; precise, unlike ticks).
pub fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Number of perf_event file descriptors `pid` holds.
pub fn perf_event_fds(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| std::fs::read_link(fd.path()).map(|t| t.as_os_str() == "anon_inode:[perf_event]").unwrap_or(false))
        .count()
}

/// Poll `ready` every 50 ms until it holds, failing early if `child` exits
/// (its stderr, captured in `stderr_file`, goes into the error) or after
/// `timeout`.
pub fn wait_ready(
    child: &mut Child,
    what: &str,
    stderr_file: &Path,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let begin = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let stderr = std::fs::read_to_string(stderr_file).unwrap_or_default();
            bail!("{what} exited before it was ready ({status}): {}", stderr.trim());
        }
        if begin.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} was not ready after {timeout:?}");
        }
        sleep(Duration::from_millis(50));
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Per-program run statistics gained between two readings, by program name.
pub fn prog_deltas(
    before: &BTreeMap<u32, ProgStats>,
    after: &BTreeMap<u32, ProgStats>,
    names: &BTreeMap<u32, String>,
) -> BTreeMap<String, ProgStats> {
    let mut by_name: BTreeMap<String, ProgStats> = BTreeMap::new();
    for (id, a) in after {
        let b = before.get(id).copied().unwrap_or_default();
        let name = names.get(id).cloned().unwrap_or_else(|| format!("prog {id}"));
        let e = by_name.entry(name).or_default();
        e.run_time_ns += a.run_time_ns.saturating_sub(b.run_time_ns);
        e.run_cnt += a.run_cnt.saturating_sub(b.run_cnt);
    }
    by_name
}

/// Start a workload helper (`idle_threads N`, `idle_procs N`) and wait for
/// its "ready". It exits when the returned child's stdin is closed
/// (dropping it or [`stop_ready_helper`]).
pub fn start_ready_helper(bin: &Path, n: usize) -> anyhow::Result<Child> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin)
        .arg(n.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {}", bin.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().context("the helper has no stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        bail!("{} {n} did not get ready: {}", bin.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(child)
}

/// Close a helper's stdin and check that it exited cleanly.
pub fn stop_ready_helper(mut child: Child) -> anyhow::Result<()> {
    drop(child.stdin.take());
    let status = child.wait()?;
    if !status.success() {
        bail!("{status} from a benchmark helper");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn own_process_holds_no_bpf_programs_and_has_cpu_time() {
        assert!(bpf_progs_of(std::process::id()).is_empty());
        assert!(process_cpu_ns(std::process::id()) > 0);
    }
}
