//! `tailprof agent`: its CPU on an idle host with 1,000 extra threads
//! (beside `perf record -F 99 -a -g` over the same span), RSS, disk and
//! window-to-queryable time under fork/exec/thread churn, and the time
//! `/api/v1/profile` takes over 1 h of 10 s windows and over 24 h of merged
//! segments (built from the churn run's real windows, copied along the
//! time axis).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::common::{bpf_run_time_ns_of, median, process_cpu_ns, start_ready_helper, stop_ready_helper};
use crate::util::{output, root};

const IDLE_THREADS: usize = 1_000;
const IDLE_SECONDS: u64 = 60;
const WINDOW_S: u64 = 10;

/// A running agent on a port of its own, stopped (SIGTERM) on drop.
pub(crate) struct Agent {
    child: Child,
    port: u16,
    stderr: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Agent {
    pub(crate) fn start(bin: &Path, data: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let port = free_port()?;
        let stderr = data.with_extension("stderr");
        let child = Command::new(bin)
            .args(["agent", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data)
            .args(extra)
            .env_remove("TAILPROF_CONFIG")
            .envs(std::env::var("XTASK_AGENT_PRELOAD").ok().map(|p| ("LD_PRELOAD", p)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .context("could not start tailprof agent")?;
        let mut agent = Agent { child, port, stderr };
        let begin = Instant::now();
        while agent.get_status("/readyz").ok() != Some(200) {
            if let Some(s) = agent.child.try_wait()? {
                bail!("tailprof agent exited ({s}): {}", std::fs::read_to_string(&agent.stderr).unwrap_or_default());
            }
            if begin.elapsed() > Duration::from_secs(60) {
                bail!("tailprof agent not ready after 60 s");
            }
            sleep(Duration::from_millis(100));
        }
        Ok(agent)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn get_status(&self, path: &str) -> anyhow::Result<u16> {
        let code = output(Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &self.url(path)]))?;
        Ok(code.trim().parse()?)
    }

    pub(crate) fn json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let body = output(Command::new("curl").args(["-sf", &self.url(path)]))?;
        serde_json::from_str(&body).with_context(|| format!("{path} gave no JSON"))
    }

    /// Seconds one GET takes, the body discarded, and its size.
    pub(crate) fn timed(&self, path: &str) -> anyhow::Result<(f64, u64)> {
        let out = output(Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total} %{size_download}",
            &self.url(path),
        ]))?;
        let f: Vec<&str> = out.split_whitespace().collect();
        if f.first() != Some(&"200") {
            bail!("{path}: HTTP {}", f.first().unwrap_or(&"?"));
        }
        Ok((
            f.get(1).and_then(|t| t.parse().ok()).unwrap_or(f64::NAN),
            f.get(2).and_then(|t| t.parse().ok()).unwrap_or(0),
        ))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        if !status.success() {
            bail!("tailprof agent exited {status} on SIGTERM");
        }
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// xtask/workloads/idle_threads.c, compiled into `scratch`.
pub(crate) fn idle_threads_helper(scratch: &Path) -> anyhow::Result<PathBuf> {
    let src = root().join("xtask/workloads/idle_threads.c");
    let helper = scratch.join("idle_threads");
    output(Command::new("gcc").args(["-O2", "-Wall", "-pthread", "-o"]).arg(&helper).arg(&src))
        .with_context(|| format!("could not compile {}", src.display()))?;
    Ok(helper)
}

pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    super::memory::status_kb(pid, "VmRSS").map(|kb| kb as f64 / 1024.0)
}

/// CPU of the agent's process plus its BPF programs over `seconds`, after
/// `warm` of warm-up; percent of one CPU. And perf's, over the same span.
fn idle(bin: &Path, scratch: &Path) -> anyhow::Result<String> {
    let threads = start_ready_helper(&idle_threads_helper(scratch)?, IDLE_THREADS)?;
    let data = scratch.join("agent-idle");
    eprintln!("xtask bench: agent, idle host + {IDLE_THREADS} threads, {IDLE_SECONDS} s");
    let agent = Agent::start(bin, &data, &[])?;
    sleep(Duration::from_secs(20));
    let (cpu0, bpf0, t0) = (process_cpu_ns(agent.pid()), bpf_run_time_ns_of(agent.pid()), Instant::now());
    sleep(Duration::from_secs(IDLE_SECONDS));
    let (cpu1, bpf1) = (process_cpu_ns(agent.pid()), bpf_run_time_ns_of(agent.pid()));
    let span = t0.elapsed().as_secs_f64() * 1e9;
    let status = agent.json("/api/v1/status")?;
    let rss = rss_mib(agent.pid()).unwrap_or(f64::NAN);
    agent.stop()?;
    // The peer over the same span: perf's on-CPU sampling of the host.
    let perf_data = scratch.join("agent-idle-perf.data");
    let mut perf = Command::new("perf")
        .args(["record", "-F", "99", "-a", "-g", "-q", "-o"])
        .arg(&perf_data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start perf record")?;
    sleep(Duration::from_secs(5));
    let p0 = (process_cpu_ns(perf.id()), Instant::now());
    sleep(Duration::from_secs(IDLE_SECONDS));
    let p1 = process_cpu_ns(perf.id());
    let perf_span = p0.1.elapsed().as_secs_f64() * 1e9;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
    let _ = perf.wait();
    let _ = std::fs::remove_file(&perf_data);
    stop_ready_helper(threads)?;
    let pct = |ns: u64, span: f64| 100.0 * ns as f64 / span;
    let (proc_pct, bpf_pct) = (pct(cpu1 - cpu0, span), pct(bpf1 - bpf0, span));
    let total = proc_pct + bpf_pct;
    let perf_pct = pct(p1 - p0.0, perf_span);
    let gov = &status["collecting"]["governor"];
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## The agent on an idle host\n\n\
         `tailprof agent` with every default (10 s windows, 99 Hz, 20 snapshots/s, 1% budget) on an idle host \
         with {IDLE_THREADS} extra threads blocked in a condition-variable wait (`xtask/workloads/idle_threads.c`); \
         its CPU (every thread's schedstat) and its BPF programs' run time over {IDLE_SECONDS} s after 20 s of \
         warm-up. Beside it over {IDLE_SECONDS} s: `perf record -F 99 -a -g` (on-CPU stacks only, no thread \
         times, no off-CPU, nothing served).\n\n\
         | | process % of one CPU | BPF % | total % |\n|---|---:|---:|---:|\n\
         | tailprof agent | {proc_pct:.3} | {bpf_pct:.3} | **{total:.3}** |\n\
         | perf record -F 99 -a -g | {perf_pct:.3} | — | {perf_pct:.3} |\n\n\
         Rates the governor had in effect: {} snapshots/s, {} Hz; RSS {rss:.1} MiB. **Goal: at most 0.5% of one \
         CPU: {}.**",
        gov["state_hz"].as_f64().map_or_else(|| "?".into(), |v| format!("{v:.1}")),
        gov["frequency_hz"].as_f64().map_or_else(|| "?".into(), |v| format!("{v:.1}")),
        if total <= 0.5 { "met" } else { "not met" }
    );
    let _ = std::fs::remove_dir_all(&data);
    Ok(md)
}

/// Minutes of the churn run (`TAILPROF_CHURN_MINUTES`, default 10).
fn churn_minutes() -> u64 {
    std::env::var("TAILPROF_CHURN_MINUTES").ok().and_then(|m| m.parse().ok()).filter(|&m| m >= 3).unwrap_or(10)
}

/// The churn run: RSS, disk per hour, time from a window's end until it
/// is listed; its data directory is kept for the query benchmark.
fn churn(bin: &Path, scratch: &Path) -> anyhow::Result<String> {
    let minutes = churn_minutes();
    let data = scratch.join("agent-churn");
    let mut stress = Command::new("stress-ng")
        .args(["--fork", "2", "--exec", "2", "--pthread", "2", "--cpu", "2", "--cpu-load", "50", "--timeout"])
        .arg(format!("{}s", minutes * 60 + 60))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start stress-ng")?;
    sleep(Duration::from_secs(2));
    eprintln!("xtask bench: agent, {minutes} min under stress-ng churn");
    // No merging during the run: its windows are the query benchmark's.
    let agent = Agent::start(bin, &data, &["--compact-after", "1000d"])?;
    let started = Instant::now();
    let mut rss: Vec<(f64, f64)> = Vec::new();
    let mut seen: std::collections::BTreeMap<String, f64> = Default::default();
    let mut lag: Vec<f64> = Vec::new();
    let mut last_rss = Instant::now() - Duration::from_secs(1);
    while started.elapsed() < Duration::from_secs(minutes * 60) {
        if last_rss.elapsed() >= Duration::from_secs(1) {
            last_rss = Instant::now();
            if let Some(r) = rss_mib(agent.pid()) {
                rss.push((started.elapsed().as_secs_f64(), r));
            }
        }
        // Window-to-queryable: when a segment is first listed, against its end.
        if let Ok(segs) = agent.json("/api/v1/segments") {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
            for s in segs.as_array().into_iter().flatten() {
                let name = s["name"].as_str().unwrap_or_default().to_owned();
                if !seen.contains_key(&name) {
                    let end = s["end_unix_ns"].as_f64().unwrap_or(0.0) / 1e9;
                    if !seen.is_empty() {
                        lag.push(now - end);
                    }
                    seen.insert(name, end);
                }
            }
        }
        sleep(Duration::from_millis(100));
    }
    let status = agent.json("/api/v1/status")?;
    let cpu_s = process_cpu_ns(agent.pid()) as f64 / 1e9;
    agent.stop()?;
    let _ = stress.kill();
    let _ = stress.wait();
    let bytes = status["storage"]["bytes"].as_f64().unwrap_or(0.0);
    let windows = status["collecting"]["windows"].as_f64().unwrap_or(0.0);
    let samples = status["collecting"]["samples"].as_u64().unwrap_or(0);
    let hours = windows * WINDOW_S as f64 / 3600.0;
    let mib = bytes / (1 << 20) as f64;
    let per_hour = bytes / hours.max(1e-9) / (1 << 20) as f64;
    let steady: Vec<(f64, f64)> = rss.iter().copied().filter(|(t, _)| *t >= 120.0).collect();
    let slope = super::memory::slope_per_minute(&steady);
    let max_rss = rss.iter().map(|r| r.1).fold(0.0, f64::max);
    let last_rss = rss.last().map_or(f64::NAN, |r| r.1);
    lag.sort_by(|a, b| a.total_cmp(b));
    let worst = lag.last().copied().unwrap_or(f64::NAN);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## The agent under churn: {minutes} min on a busy host\n\n\
         `stress-ng --fork 2 --exec 2 --pthread 2 --cpu 2 --cpu-load 50` while `tailprof agent` runs with every \
         default but `--compact-after 1000d` (its windows are kept unmerged for the query below). VmRSS \
         polled every second; `/api/v1/segments` polled every 100 ms: a window's lag is the time from its end to \
         the first poll that lists it (the poll interval included). CPU {cpu_s:.1} s over the run.\n\n\
         | figure | value | goal |\n|---|---:|---|\n\
         | RSS at the end | {last_rss:.1} MiB | ≤ 64 MiB: {} |\n\
         | RSS, highest | {max_rss:.1} MiB | |\n\
         | RSS slope from minute 2 | {slope:+.2} MiB/min | flat |\n\
         | disk per hour ({windows:.0} windows, {mib:.1} MiB, {samples} samples held) | {per_hour:.1} MiB/h | ≤ 50 MiB: {} |\n\
         | window end → queryable, median / worst of {} | {:.2} s / {worst:.2} s | ≤ 2 s: {} |",
        if last_rss <= 64.0 { "met" } else { "not met" },
        if per_hour <= 50.0 { "met" } else { "not met" },
        lag.len(),
        median(lag.clone()),
        if worst <= 2.0 { "met" } else { "not met" },
    );
    let (churn_n, churn_t, churn_mib) = churn_query(bin, &data)?;
    let churn_kinds = segments_of(&data)?.first().map(|p| record_kinds(p)).transpose()?.unwrap_or_default();
    let _ = writeln!(
        md,
        "\nUnder the exec storm a window is another thing: {churn_mib:.1} MiB on disk, every one of its process \
         generations and threads with their exact times and sampled off-CPU stacks. `/api/v1/profile` over \
         {churn_n} such windows takes {:.0} ms ({:.0} ms a window), so an hour of them would take about {:.0} s \
         and meet the 30 s query cap: **the query goal is not met under an exec storm**. The time goes to \
         decompressing and parsing records the CPU tree does not use; one window's records by kind (count, MB \
         of JSON lines): {churn_kinds}. Reading only what a view needs is the next step.",
        churn_t * 1e3,
        churn_t * 1e3 / churn_n as f64,
        churn_t / churn_n as f64 * 360.0,
    );
    let _ = std::fs::remove_dir_all(&data);
    Ok(md)
}

/// Copy `windows` (the churn run's segments) along the time axis into a
/// fresh data directory: `n` windows of `WINDOW_S` from `start_s`.
fn lay_out(windows: &[PathBuf], data: &Path, start_s: u64, n: u64, len_s: u64) -> anyhow::Result<()> {
    let dir = data.join("segments");
    std::fs::create_dir_all(&dir)?;
    for k in 0..n {
        let src = &windows[(k as usize) % windows.len()];
        let (a, b) = ((start_s + k * len_s) * 1_000_000_000, (start_s + (k + 1) * len_s) * 1_000_000_000);
        std::fs::copy(src, dir.join(format!("{a}-{b}.tpseg")))?;
    }
    Ok(())
}

fn segments_of(data: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("segments"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tpseg"))
        .collect();
    v.sort();
    Ok(v)
}

/// Median of five timings of one query.
fn time_query(agent: &Agent, path: &str) -> anyhow::Result<(f64, u64)> {
    let mut t = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let (s, n) = agent.timed(path)?;
        t.push(s);
        size = n;
    }
    Ok((median(t), size))
}

/// Two minutes of windows on a busy host without an exec storm: the
/// query benchmark's material.
fn busy_windows(bin: &Path, scratch: &Path) -> anyhow::Result<PathBuf> {
    let data = scratch.join("agent-busy");
    let mut stress = Command::new("stress-ng")
        .args(["--cpu", "2", "--cpu-load", "50", "--io", "1", "--timeout", "150s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start stress-ng")?;
    eprintln!("xtask bench: agent, 2 min of windows on a busy host for the queries");
    let agent = Agent::start(bin, &data, &["--compact-after", "1000d"])?;
    sleep(Duration::from_secs(125));
    agent.stop()?;
    let _ = stress.kill();
    let _ = stress.wait();
    Ok(data)
}

/// `/api/v1/profile` over the first `n` windows of the churn run, and the
/// raw size of one: what an exec storm costs a query.
fn churn_query(bin: &Path, churn_data: &Path) -> anyhow::Result<(usize, f64, f64)> {
    let segs = segments_of(churn_data)?;
    let n = segs.len().min(6);
    let span = |p: &PathBuf| -> Option<(u64, u64)> {
        let name = p.file_name()?.to_str()?.strip_suffix(".tpseg")?;
        let (a, b) = name.split_once('-')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let (Some((from, _)), Some((_, to))) = (segs.first().and_then(span), segs.get(n - 1).and_then(span)) else {
        bail!("the churn run left no windows");
    };
    let agent = Agent::start(bin, churn_data, &["--compact-after", "1000d"])?;
    let range = format!("from={:.3}&to={:.3}", from as f64 / 1e9 + 0.001, to as f64 / 1e9 - 0.001);
    let (t, _) = time_query(&agent, &format!("/api/v1/profile?{range}"))?;
    agent.stop()?;
    let mib = segs.iter().take(n).filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum::<u64>() as f64
        / n as f64
        / (1 << 20) as f64;
    Ok((n, t, mib))
}

/// A segment's samples-file records by kind: count and MB, largest first.
fn record_kinds(seg: &Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    let bytes = std::fs::read(seg)?;
    let footer = bytes.len().checked_sub(16).context("a segment shorter than its footer")?;
    let len = u64::from_le_bytes(bytes[footer..footer + 8].try_into()?) as usize;
    let mut zstd = Command::new("zstd")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("could not run zstd")?;
    let mut stdin = zstd.stdin.take().context("zstd's stdin")?;
    let body = bytes[..len.min(footer)].to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let raw = zstd.wait_with_output()?.stdout;
    let _ = writer.join();
    let mut kinds: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for line in raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let kind =
            line.split(|b| *b == b'"').nth(1).map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        let e = kinds.entry(kind).or_default();
        e.0 += 1;
        e.1 += line.len() as u64;
    }
    let mut v: Vec<_> = kinds.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1 .1));
    Ok(v.iter().map(|(k, (n, b))| format!("{k} {n} / {:.2}", *b as f64 / 1e6)).collect::<Vec<_>>().join(", "))
}

fn queries(bin: &Path, scratch: &Path) -> anyhow::Result<String> {
    let busy = busy_windows(bin, scratch)?;
    let windows = segments_of(&busy)?;
    if windows.len() < 10 {
        bail!("the busy run left {} windows", windows.len());
    }
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    // An hour two hours back, on an hour's boundary (so that it merges whole).
    let hour = (now_s / 3600 - 2) * 3600;
    let data = scratch.join("agent-query");
    lay_out(&windows, &data, hour, 3600 / WINDOW_S, WINDOW_S)?;
    eprintln!("xtask bench: agent, queries over 1 h of windows");
    let agent = Agent::start(bin, &data, &["--compact-after", "1000d"])?;
    let range = format!("from={hour}&to={}", hour + 3600);
    let (tree_1h, tree_bytes) = time_query(&agent, &format!("/api/v1/profile?{range}"))?;
    let (folded_1h, _) = time_query(&agent, &format!("/api/v1/profile?{range}&format=folded"))?;
    let (timeline_1h, _) = time_query(&agent, &format!("/api/v1/timeline?{range}&step=1m"))?;
    agent.stop()?;
    // Merge the hour: 5-minute segments after 1 s, the hour after 36 s.
    eprintln!("xtask bench: agent, merging the hour");
    let agent = Agent::start(bin, &data, &["--compact-after", "1s"])?;
    let begin = Instant::now();
    let merged_at = loop {
        let st = agent.json("/api/v1/status")?;
        let segs = agent.json("/api/v1/segments")?;
        let in_hour = segs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["start_unix_ns"].as_u64().is_some_and(|t| t / 1_000_000_000 < hour + 3600))
            .count();
        if in_hour == 1 {
            break (begin.elapsed().as_secs_f64(), st["storage"]["merges"].clone());
        }
        if begin.elapsed() > Duration::from_secs(300) {
            bail!("the hour was not merged in 5 min: {in_hour} segments left");
        }
        sleep(Duration::from_millis(500));
    };
    let merge_rss = rss_mib(agent.pid()).unwrap_or(f64::NAN);
    let (tree_1h_merged, _) = time_query(&agent, &format!("/api/v1/profile?{range}"))?;
    agent.stop()?;
    // 24 h: the merged hour, copied to the 23 hours before it.
    let hour_seg = segments_of(&data)?
        .into_iter()
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{hour}"))))
        .context("no merged hour segment")?;
    let hour_bytes = std::fs::metadata(&hour_seg)?.len();
    let day = data.join("day");
    lay_out(&[hour_seg], &day, hour - 23 * 3600, 24, 3600)?;
    eprintln!("xtask bench: agent, queries over 24 h of merged hours");
    let agent = Agent::start(bin, &day, &["--compact-after", "1000d"])?;
    let day_range = format!("from={}&to={}", hour - 23 * 3600, hour + 3600);
    let (tree_24h, _) = time_query(&agent, &format!("/api/v1/profile?{day_range}"))?;
    let (timeline_24h, _) = time_query(&agent, &format!("/api/v1/timeline?{day_range}&step=1h"))?;
    agent.stop()?;
    let _ = std::fs::remove_dir_all(&data);
    let met = |s: f64, goal: f64| if s <= goal { "met" } else { "not met" };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## The agent's queries\n\n\
         Two minutes of `tailprof agent` (defaults) on a host kept busy by `stress-ng --cpu 2 --cpu-load 50 --io 1` \
         give {} real 10 s windows, copied along the time axis into 360 windows (one hour, two hours \
         back on an hour's boundary); an agent started on that directory answers each query five times (median, \
         curl's `time_total`, the agent collecting meanwhile). Then an agent with `--compact-after 1s` merges the \
         hour into one segment ({:.1} s after its start, {} merges; RSS {merge_rss:.1} MiB just after), and that \
         hour segment ({:.1} MiB) is copied to the 23 hours before it for the 24 h queries.\n\n\
         | query | time | goal |\n|---|---:|---|\n\
         | `/api/v1/profile` over 1 h of 10 s windows (JSON tree, 2,000 nodes, {:.0} KiB) | {:.0} ms | ≤ 300 ms: {} |\n\
         | the same, `format=folded` | {:.0} ms | |\n\
         | `/api/v1/timeline?step=1m` over the hour | {:.0} ms | |\n\
         | `/api/v1/profile` over the merged hour | {:.0} ms | |\n\
         | `/api/v1/profile` over 24 h of merged hours | {:.0} ms | ≤ 2 s: {} |\n\
         | `/api/v1/timeline?step=1h` over 24 h | {:.0} ms | |",
        windows.len(),
        merged_at.0,
        merged_at.1,
        hour_bytes as f64 / (1 << 20) as f64,
        tree_bytes as f64 / 1024.0,
        tree_1h * 1e3,
        met(tree_1h, 0.3),
        folded_1h * 1e3,
        timeline_1h * 1e3,
        tree_1h_merged * 1e3,
        tree_24h * 1e3,
        met(tree_24h, 2.0),
        timeline_24h * 1e3,
    );
    let _ = std::fs::remove_dir_all(&busy);
    Ok(md)
}

/// `agent-idle`: the agent's CPU on an idle host.
pub fn run_idle(bin: &Path, scratch: &Path) -> anyhow::Result<String> {
    idle(bin, scratch)
}

/// `agent-push`: what pushing to Pyroscope and OTLP adds to the agent's CPU.
pub fn run_push(bin: &Path, scratch: &Path) -> anyhow::Result<String> {
    push(bin, scratch)
}

/// The agent's process CPU (percent of one CPU) over [`IDLE_SECONDS`] after
/// 20 s of warm-up, and its status at the end.
fn agent_cpu(bin: &Path, data: &Path, extra: &[&str]) -> anyhow::Result<(f64, serde_json::Value)> {
    let agent = Agent::start(bin, data, extra)?;
    sleep(Duration::from_secs(20));
    let (cpu0, t0) = (process_cpu_ns(agent.pid()), Instant::now());
    sleep(Duration::from_secs(IDLE_SECONDS));
    let cpu1 = process_cpu_ns(agent.pid());
    let pct = 100.0 * (cpu1 - cpu0) as f64 / (t0.elapsed().as_secs_f64() * 1e9);
    let status = agent.json("/api/v1/status")?;
    agent.stop()?;
    let _ = std::fs::remove_dir_all(data);
    Ok((pct, status))
}

/// The agent with every default, without and then with pushes to both
/// kinds of backend (tests/receiver/receiver.py, on loopback), on a host
/// with [`IDLE_THREADS`] idle threads.
fn push(bin: &Path, scratch: &Path) -> anyhow::Result<String> {
    let threads = start_ready_helper(&idle_threads_helper(scratch)?, IDLE_THREADS)?;
    let port = free_port()?;
    let out = scratch.join("receiver");
    std::fs::create_dir_all(&out)?;
    let protos = std::fs::read_dir(cargo_registry())
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("opentelemetry-proto-0.33.1/src/proto/opentelemetry-proto"))
        .find(|p| p.exists())
        .context(
            "the opentelemetry-proto crate's protos are not in the cargo registry (cargo fetch the tests crate)",
        )?;
    let mut receiver = Command::new("/usr/bin/python3")
        .arg(root().join("tests/receiver/receiver.py"))
        .args(["--port", &port.to_string()])
        .arg("--out")
        .arg(&out)
        .arg("--otlp-protos")
        .arg(&protos)
        .stdout(Stdio::null())
        .spawn()
        .context("could not start the receiver (/usr/bin/python3 with python3-protobuf)")?;
    sleep(Duration::from_secs(2));
    eprintln!("xtask bench: agent without and with pushes, {IDLE_SECONDS} s each");
    let url = format!("http://127.0.0.1:{port}");
    let without = agent_cpu(bin, &scratch.join("agent-nopush"), &[]);
    let with = agent_cpu(bin, &scratch.join("agent-push"), &["--push-pyroscope", &url, "--push-otlp", &url]);
    let _ = receiver.kill();
    let _ = receiver.wait();
    stop_ready_helper(threads)?;
    let ((without, _), (with, status)) = (without?, with?);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## The agent pushing to fleet backends\n\n\
         `tailprof agent` with every default (10 s windows, pushes every 15 s) on a host with {IDLE_THREADS} idle \
         threads, its process CPU over {IDLE_SECONDS} s after 20 s of warm-up: without pushes, then pushing every \
         window both to Pyroscope's API and as OTLP profiles (`tests/receiver/receiver.py` on loopback stands in \
         for both; its own CPU is not counted). BPF run time does not change with pushes and is left out. The two \
         runs follow each other, so host noise between them is in the difference.\n\n\
         | | agent process % of one CPU |\n|---|---:|\n\
         | without pushes | {without:.3} |\n| pushing to Pyroscope and OTLP | {with:.3} |\n\
         | **added by the pushes** | **{:.3}** |\n",
        with - without
    );
    let _ = writeln!(md, "| backend | windows | profiles | bytes per window |\n|---|---:|---:|---:|");
    for p in status["push"].as_array().cloned().unwrap_or_default() {
        let n = p["segments_pushed"].as_u64().unwrap_or(0);
        let bytes = p["bytes_pushed"].as_u64().unwrap_or(0);
        let _ = writeln!(
            md,
            "| {} | {n} | {} | {} |",
            p["backend"].as_str().unwrap_or("?"),
            p["profiles_pushed"],
            if n > 0 { format!("{:.1} KB", bytes as f64 / n as f64 / 1000.0) } else { "—".into() }
        );
    }
    Ok(md)
}

/// Where cargo unpacks the crates it downloads.
fn cargo_registry() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("registry/src")
}

/// `agent-churn`: RSS, disk, lag and query cost under an exec storm.
pub fn run_churn(bin: &Path, scratch: &Path) -> anyhow::Result<String> {
    churn(bin, scratch)
}

/// `agent-queries`: query times over 1 h of windows and 24 h of merged hours.
pub fn run_queries(bin: &Path, scratch: &Path) -> anyhow::Result<String> {
    queries(bin, scratch)
}

/// `--qualify`: the agent's CPU with every default on an idle host with
/// [`IDLE_THREADS`] extra threads (process plus BPF, percent of one CPU,
/// over `seconds` after 15 s of warm-up), then the median time of
/// `/api/v1/profile` over its last minute, ms.
pub(crate) fn qualify(bin: &Path, scratch: &Path, seconds: u64) -> anyhow::Result<(f64, f64)> {
    let threads = start_ready_helper(&idle_threads_helper(scratch)?, IDLE_THREADS)?;
    let data = scratch.join("qualify-agent");
    super::common::set_bpf_stats(true)?;
    let measured = (|| {
        let agent = Agent::start(bin, &data, &[])?;
        sleep(Duration::from_secs(15));
        let (cpu0, bpf0, t0) = (process_cpu_ns(agent.pid()), bpf_run_time_ns_of(agent.pid()), Instant::now());
        sleep(Duration::from_secs(seconds));
        let (cpu1, bpf1) = (process_cpu_ns(agent.pid()), bpf_run_time_ns_of(agent.pid()));
        let pct = 100.0 * (cpu1 - cpu0 + bpf1.saturating_sub(bpf0)) as f64 / (t0.elapsed().as_secs_f64() * 1e9);
        let mut times = Vec::new();
        for _ in 0..5 {
            times.push(time_query(&agent, "/api/v1/profile?from=-1m&format=json")?.0 * 1e3);
        }
        agent.stop()?;
        Ok::<_, anyhow::Error>((pct, median(times)))
    })();
    stop_ready_helper(threads)?;
    let _ = std::fs::remove_dir_all(&data);
    measured
}
