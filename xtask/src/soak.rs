//! `cargo xtask soak`: `tailprof agent` (every default but its data
//! directory and port) for N minutes under combined load: a fork/exec
//! storm, thread churn, a sched-pipe ping-pong, a loopback UDP flood,
//! fdatasync writes, 10,000 idle threads and constant API queries. It
//! reports per minute the agent's RSS, CPU and BPF run time, the occupancy
//! of its BPF maps, drops by cause, its caches, its storage and the API's
//! latency, then the summary against issue 18's goals. A missed goal is
//! reported, not an error: the command fails only when the agent dies or
//! the run cannot be done.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs::File,
    os::unix::{fs::FileExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Mutex,
    },
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::bench::agent::{rss_mib, Agent};
use crate::bench::common::{
    bpf_progs_of, bpf_run_time_ns_of, bpf_stats, has_exited, kernel_release, median, process_cpu_ns, set_bpf_stats,
    start_ready_helper, stop_ready_helper,
};
use crate::bench::memory::{slope_per_minute, status_kb};
use crate::util::{output, root};

const IDLE_THREADS: usize = 10_000;
/// Every load runs at this nice value: the agent (nice 0) gets a CPU when
/// it asks for one on this 2-CPU VM.
const NICE: i32 = 10;
/// The API queries, one every [`QUERY_PERIOD`], in turn.
const QUERIES: [&str; 4] =
    ["/api/v1/profile?from=-1m&format=json", "/api/v1/timeline?from=-5m", "/api/v1/status", "/metrics"];
const QUERY_PERIOD: Duration = Duration::from_millis(250);
/// 4 KiB writes, each followed by fdatasync, per second, over a 1 MiB file.
const FSYNC_PER_S: u32 = 200;
const FSYNC_BLOCKS: u64 = 256;
/// The exec storm: this many `/bin/true` forked and executed one after
/// another, then a 100 ms pause (a few hundred processes a second).
const EXEC_BATCH: u32 = 40;
/// `perf bench sched pipe` loops per run (about 2 µs each unloaded), restarted when it ends.
const PIPE_LOOPS: u64 = 50_000_000;
/// Issue 18's goals.
const RSS_GOAL_MIB: f64 = 64.0;
const SLOPE_GOAL_MIB_PER_MIN: f64 = 0.5;
const SLOPE_SPAN_MIN: u64 = 20;
/// status.collecting.dropped.* and their `reason` in `tailprof_dropped_events_total`
/// (profiler/src/agent/metrics.rs).
const DROP_REASONS: [(&str, &str); 6] = [
    ("threads", "thread_map_full"),
    ("exits", "exit_ring_full"),
    ("stacks", "stack_map_full"),
    ("off_cpu_aggregates", "off_cpu_map_full"),
    ("process_events", "process_events_lost"),
    ("snapshot_threads", "snapshot_thread_table_full"),
];

/// What a soak showed, for a caller that gates on it (`cargo xtask test`).
pub struct Outcome {
    /// VmHWM at the end, or the highest sample, MiB.
    pub peak_rss_mib: f64,
}

/// Run the soak and write its report. An error: the agent died or did not
/// stop cleanly, an API query failed, or a drop counter of the status is not
/// in `/metrics` with the same total (the report says which).
pub fn run(bin: &Path, minutes: u64, report: &Path) -> anyhow::Result<Outcome> {
    for tool in ["stress-ng", "perf", "bpftool", "curl", "gcc"] {
        output(Command::new("sh").args(["-c", &format!("command -v {tool}")]))
            .with_context(|| format!("{tool} is not installed (cargo xtask setup installs it)"))?;
    }
    let scratch = root().join("target/soak");
    let data = scratch.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("could not clear {}", data.display()))?;
    }
    std::fs::create_dir_all(&scratch).with_context(|| format!("could not create {}", scratch.display()))?;
    let idle_bin = compile(&scratch, "idle_threads")?;
    let udp_bin = compile(&scratch, "udp_flood")?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _stats = BpfStats::on()?;

    eprintln!("xtask soak: starting tailprof agent (data in {})", data.display());
    let agent = Agent::start(bin, &data, &[])?;
    let pid = agent.pid();
    let version = output(Command::new(bin).arg("--version")).map(|v| v.trim().to_owned()).unwrap_or_default();

    let seconds = minutes * 60;
    let mut idle = Helper(Some(start_ready_helper(&idle_bin, IDLE_THREADS)?));
    let udp_cpu = udp_cpu();
    let mut loads = Loads::start(&scratch, &udp_bin, udp_cpu, seconds)?;
    let fsync_file = scratch.join("fsync.dat");
    let stop = AtomicBool::new(false);
    let fsyncs = AtomicU64::new(0);
    let fsync_error: Mutex<Option<String>> = Mutex::new(None);
    let queries: Mutex<Vec<Query>> = Mutex::new(Vec::new());
    let t0 = Instant::now();
    eprintln!("xtask soak: loads started; {minutes} min of load");

    let watched = std::thread::scope(|s| -> anyhow::Result<Watched> {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            if let Err(e) = fsync_loop(&fsync_file, &stop, &fsyncs) {
                *fsync_error.lock().unwrap() = Some(format!("{e:#}"));
            }
        });
        s.spawn(|| query_loop(&agent, t0, &stop, &queries));
        // Map occupancy is counted beside the per-second sampling: bpftool's dumps may take seconds.
        let (req, jobs) = mpsc::channel::<usize>();
        let (done, counted) = mpsc::channel::<(usize, Vec<MapOcc>, f64)>();
        s.spawn(move || {
            for i in jobs {
                let began = Instant::now();
                let maps = agent_maps(pid);
                if done.send((i, maps, began.elapsed().as_secs_f64())).is_err() {
                    break;
                }
            }
        });
        watch(&agent, t0, seconds, &mut loads, &fsyncs, MapCounter { req, counted })
    })?;
    let wall_s = t0.elapsed().as_secs_f64();
    let hwm_mib = status_kb(pid, "VmHWM").map(|kb| kb as f64 / 1024.0);
    let starts = loads.starts();
    drop(loads);
    let idle_result = idle.0.take().map(stop_ready_helper).transpose();
    let _ = std::fs::remove_file(&fsync_file);
    let drop_check = match &watched.death {
        None => Some(check_drops(&agent)),
        Some(_) => None,
    };
    let stderr_path = data.with_extension("stderr");
    let stop_result = match &watched.death {
        None => agent.stop().err().map(|e| format!("{e:#}")),
        Some(_) => {
            drop(agent);
            None
        }
    };
    let agent_log = std::fs::read_to_string(&stderr_path).unwrap_or_default();

    let mut notes = Vec::new();
    if let Some(e) = fsync_error.lock().unwrap().take() {
        notes.push(format!("The fsync load stopped early: {e}."));
    }
    if let Err(e) = idle_result {
        notes.push(format!("The idle-thread helper did not exit cleanly: {e:#}."));
    }
    let run = Run {
        minutes,
        udp_cpu,
        wall_s,
        version,
        load_before,
        snaps: watched.snaps,
        rss: watched.rss,
        hwm_mib,
        queries: queries.into_inner().unwrap(),
        starts,
        drop_check,
        death: watched.death.clone(),
        stop_error: stop_result.clone(),
        agent_log,
        notes,
    };
    let (md, summary) = write_report(&run);
    if let Some(dir) = report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(report, md).with_context(|| format!("could not write {}", report.display()))?;
    println!("{summary}");
    println!("wrote {}", report.display());
    if watched.death.is_none() && stop_result.is_none() {
        let _ = std::fs::remove_dir_all(&data);
    }
    if let Some(death) = watched.death {
        bail!("{death} (report: {})", report.display());
    }
    if let Some(e) = stop_result {
        bail!("the agent did not stop cleanly at the end of the soak: {e}");
    }
    let failed = run.queries.iter().filter(|q| q.error.is_some()).count();
    if failed > 0 {
        bail!("{failed} API queries failed during the soak (report: {})", report.display());
    }
    if !run.drop_check.as_ref().is_some_and(DropCheck::met) {
        bail!("a drop the status counts is not in /metrics with the same total (report: {})", report.display());
    }
    let rss_max = max_of(run.rss.iter().map(|p| p.1));
    Ok(Outcome { peak_rss_mib: run.hwm_mib.map_or(rss_max, |h| h.max(rss_max)) })
}

/// `gcc -O2` a workload of xtask/workloads into the scratch directory.
fn compile(scratch: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let src = root().join(format!("xtask/workloads/{name}.c"));
    let bin = scratch.join(name);
    output(Command::new("gcc").args(["-O2", "-Wall", "-pthread", "-o"]).arg(&bin).arg(&src))
        .with_context(|| format!("could not compile {}", src.display()))?;
    Ok(bin)
}

/// kernel.bpf_stats_enabled on for the soak, put back as it was on drop.
struct BpfStats(String);

impl BpfStats {
    fn on() -> anyhow::Result<Self> {
        let before = bpf_stats();
        set_bpf_stats(true)?;
        Ok(BpfStats(before))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = set_bpf_stats(self.0 == "1");
    }
}

/// A ready helper (idle_threads), told to exit and reaped on drop.
struct Helper(Option<Child>);

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            drop(child.stdin.take());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sets the flag the load threads poll when the scope's body ends, however it ends.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One external load: a command in a process group of its own at nice
/// [`NICE`], killed (the whole group) on drop, restarted when it ends.
struct Load {
    name: &'static str,
    argv: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    started: Instant,
    starts: u32,
    quick_exits: u32,
}

impl Load {
    fn new(name: &'static str, argv: Vec<String>, scratch: &Path) -> Self {
        let log = scratch.join(format!("{name}.log"));
        Load { name, argv, log, child: None, started: Instant::now(), starts: 0, quick_exits: 0 }
    }

    fn spawn(&mut self, dir: &Path) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        cmd.process_group(0);
        // SAFETY: prctl(2) and nice(2) are async-signal-safe and touch no
        // memory of the parent. The parent-death signal ends the load if
        // xtask dies without its guards (Ctrl-C, kill): it is sent when
        // the spawning thread (the main thread) exits, and kept across exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::nice(NICE);
                Ok(())
            });
        }
        self.child =
            Some(cmd.spawn().with_context(|| format!("could not start the {} load ({})", self.name, self.argv[0]))?);
        self.started = Instant::now();
        self.starts += 1;
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the process group this load leads.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// Restart the load if it ended; fail if it keeps ending right away.
    fn keep_up(&mut self, dir: &Path) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else { return Ok(()) };
        let Some(status) = child.try_wait()? else { return Ok(()) };
        self.quick_exits = if self.started.elapsed() < Duration::from_secs(2) { self.quick_exits + 1 } else { 0 };
        if self.quick_exits >= 3 {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            bail!("the {} load keeps exiting ({status}): {}", self.name, tail.join(" / "));
        }
        self.kill();
        self.spawn(dir)
    }
}

struct Loads {
    dir: PathBuf,
    list: Vec<Load>,
}

impl Loads {
    fn start(scratch: &Path, udp_bin: &Path, udp_cpu: usize, seconds: u64) -> anyhow::Result<Self> {
        // stress-ng's own timeout and udp_flood's span outlive the soak by
        // two minutes: a bound should everything else fail to stop them.
        let timeout = format!("{}s", seconds + 120);
        let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<String>>();
        let exec_loop =
            format!("while :; do i=0; while [ $i -lt {EXEC_BATCH} ]; do /bin/true; i=$((i+1)); done; sleep 0.1; done");
        let udp_cpu = udp_cpu.to_string();
        let mut loads = Loads {
            dir: scratch.to_owned(),
            list: vec![
                Load::new("exec", s(&["sh", "-c", &exec_loop]), scratch),
                Load::new(
                    "pthread",
                    s(&["stress-ng", "--pthread", "1", "--pthread-max", "32", "--timeout", &timeout, "--quiet"]),
                    scratch,
                ),
                Load::new("sched-pipe", s(&["perf", "bench", "sched", "pipe", "-l", &PIPE_LOOPS.to_string()]), scratch),
                Load::new(
                    "udp",
                    vec![udp_bin.display().to_string(), (seconds + 120).to_string(), udp_cpu.clone(), udp_cpu.clone()],
                    scratch,
                ),
            ],
        };
        for load in &mut loads.list {
            load.spawn(scratch)?;
        }
        Ok(loads)
    }

    fn keep_up(&mut self) -> anyhow::Result<()> {
        for load in &mut self.list {
            load.keep_up(&self.dir)?;
        }
        Ok(())
    }

    fn starts(&self) -> Vec<(&'static str, u32)> {
        self.list.iter().map(|l| (l.name, l.starts)).collect()
    }
}

impl Drop for Loads {
    fn drop(&mut self) {
        for load in &mut self.list {
            load.kill();
        }
    }
}

/// The CPU for the UDP flood: the one serving the fewest block-device
/// interrupts (virtio-blk's `-req` queues, NVMe, AHCI) in /proc/interrupts.
/// The flood's softirqs hold a CPU; on the CPU that completes disk I/O they
/// starve the completions (the fsync load fell from hundreds to a few
/// writes a second with the flood on this VM's disk-interrupt CPU).
fn udp_cpu() -> usize {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    let mut lines = text.lines();
    let cpus = lines.next().map_or(1, |h| h.split_whitespace().count()).max(1);
    let mut per_cpu = vec![0u64; cpus];
    for line in lines.filter(|l| l.contains("-req") || l.contains("nvme") || l.contains("ahci")) {
        for (cpu, n) in line.split_whitespace().skip(1).take(cpus).enumerate() {
            per_cpu[cpu] += n.parse::<u64>().unwrap_or(0);
        }
    }
    (0..cpus).min_by_key(|&c| per_cpu[c]).unwrap_or(0)
}

/// 4 KiB pwrite + fdatasync, [`FSYNC_PER_S`] a second, until `stop`.
fn fsync_loop(path: &Path, stop: &AtomicBool, ops: &AtomicU64) -> anyhow::Result<()> {
    let file = File::options().create(true).truncate(true).write(true).read(true).open(path)?;
    let block = [0x5au8; 4096];
    let period = Duration::from_secs(1) / FSYNC_PER_S;
    let mut next = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        file.write_all_at(&block, (i % FSYNC_BLOCKS) * 4096)?;
        file.sync_data()?;
        ops.fetch_add(1, Ordering::Relaxed);
        i += 1;
        next += period;
        let now = Instant::now();
        match next.checked_duration_since(now) {
            Some(wait) => sleep(wait),
            // Behind by more than a second (a slow disk): do not burst to catch up.
            None if now - next > Duration::from_secs(1) => next = now,
            None => {}
        }
    }
    Ok(())
}

/// One API request: when it started (s since the loads started), which
/// of [`QUERIES`], curl's time_total (or the wall time of a failure).
struct Query {
    at: f64,
    which: usize,
    secs: f64,
    error: Option<String>,
}

fn query_loop(agent: &Agent, t0: Instant, stop: &AtomicBool, out: &Mutex<Vec<Query>>) {
    let mut next = Instant::now();
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let which = k % QUERIES.len();
        k += 1;
        let began = Instant::now();
        let at = t0.elapsed().as_secs_f64();
        let q = match agent.timed(QUERIES[which]) {
            Ok((secs, _)) => Query { at, which, secs, error: None },
            Err(e) => Query { at, which, secs: began.elapsed().as_secs_f64(), error: Some(short_error(&e)) },
        };
        out.lock().unwrap().push(q);
        next += QUERY_PERIOD;
        let now = Instant::now();
        match next.checked_duration_since(now) {
            Some(wait) => sleep(wait),
            None => next = now,
        }
    }
}

/// An HTTP failure as "HTTP 503", anything else (curl could not connect) in one short line.
fn short_error(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    if let Some(i) = text.find("HTTP ") {
        return text[i..].split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    }
    match text.rsplit_once("failed: ") {
        Some((_, why)) => {
            format!("curl failed: {}", why.trim_end_matches([':', ' ']).chars().take(80).collect::<String>())
        }
        None => text.chars().take(100).collect(),
    }
}

/// What the watch loop measured.
struct Watched {
    snaps: Vec<Snap>,
    rss: Vec<(f64, f64)>,
    /// Why the run ended early: the agent died.
    death: Option<String>,
}

/// A reading at the start and at the end of every minute.
struct Snap {
    at: f64,
    /// utime + stime from /proc/PID/stat (exited threads included).
    stat_cpu_ns: u64,
    /// Live threads' schedstat (bench::common::process_cpu_ns).
    live_cpu_ns: u64,
    bpf_ns: u64,
    status: Option<Value>,
    maps: Vec<MapOcc>,
    /// Seconds counting the maps took.
    maps_took_s: f64,
    forks: u64,
    ctxt: u64,
    fsyncs: u64,
    /// The agent's threads: tid -> (name, utime + stime ns).
    threads: BTreeMap<u64, (String, u64)>,
    took_s: f64,
}

/// One BPF map of the agent and its entries (None: not countable or the dump failed).
#[derive(Clone)]
struct MapOcc {
    id: u64,
    name: String,
    kind: String,
    max: u64,
    held: Option<u64>,
}

/// Every second: RSS, the agent alive, the loads running; every minute a
/// [`Snap`]. Stops early (with `death` set) when the agent dies.
fn watch(
    agent: &Agent,
    t0: Instant,
    seconds: u64,
    loads: &mut Loads,
    fsyncs: &AtomicU64,
    maps: MapCounter,
) -> anyhow::Result<Watched> {
    let pid = agent.pid();
    let mut w = Watched { snaps: vec![snap(agent, t0, fsyncs)], rss: Vec::new(), death: None };
    let _ = maps.req.send(0);
    if let Some(r) = rss_mib(pid) {
        w.rss.push((t0.elapsed().as_secs_f64(), r));
    }
    for sec in 1..=seconds {
        let due = t0 + Duration::from_secs(sec);
        let now = Instant::now();
        match due.checked_duration_since(now) {
            Some(wait) => sleep(wait),
            // Late: skip the seconds missed, not a minute's end.
            None if now - due > Duration::from_millis(500) && sec % 60 != 0 => continue,
            None => {}
        }
        while let Ok((i, m, took)) = maps.counted.try_recv() {
            (w.snaps[i].maps, w.snaps[i].maps_took_s) = (m, took);
        }
        if has_exited(pid) {
            w.death = Some(format!("the agent died {:.0} s into the soak", t0.elapsed().as_secs_f64()));
            break;
        }
        if let Some(r) = rss_mib(pid) {
            w.rss.push((t0.elapsed().as_secs_f64(), r));
        }
        loads.keep_up()?;
        if sec % 60 == 0 {
            let s = snap(agent, t0, fsyncs);
            let prev = &w.snaps[w.snaps.len() - 1];
            let pct = |a: u64, b: u64| 100.0 * a.saturating_sub(b) as f64 / ((s.at - prev.at) * 1e9);
            eprintln!(
                "xtask soak: minute {}/{}: RSS {:.1} MiB, CPU {:.2}% + BPF {:.2}% of one CPU, {} segments",
                sec / 60,
                seconds / 60,
                w.rss.last().map_or(f64::NAN, |r| r.1),
                pct(s.stat_cpu_ns, prev.stat_cpu_ns),
                pct(s.bpf_ns, prev.bpf_ns),
                s.status.as_ref().and_then(|v| v["storage"]["segments"].as_u64()).unwrap_or(0),
            );
            w.snaps.push(s);
            let _ = maps.req.send(w.snaps.len() - 1);
        }
    }
    // The last counts: the counting thread ends once no more are asked for.
    drop(maps.req);
    for (i, m, took) in maps.counted.iter() {
        (w.snaps[i].maps, w.snaps[i].maps_took_s) = (m, took);
    }
    Ok(w)
}

/// Asks the map-counting thread for a count (the index of a [`Snap`]) and receives it.
struct MapCounter {
    req: mpsc::Sender<usize>,
    counted: mpsc::Receiver<(usize, Vec<MapOcc>, f64)>,
}

fn snap(agent: &Agent, t0: Instant, fsyncs: &AtomicU64) -> Snap {
    let began = Instant::now();
    let pid = agent.pid();
    let at = t0.elapsed().as_secs_f64();
    let (stat_cpu_ns, live_cpu_ns, bpf_ns) = (stat_cpu_ns(pid), process_cpu_ns(pid), bpf_run_time_ns_of(pid));
    let (forks, ctxt) = host_counts();
    let fsyncs = fsyncs.load(Ordering::Relaxed);
    let threads = thread_cpu_ns(pid);
    let status = agent.json("/api/v1/status").ok();
    Snap {
        at,
        stat_cpu_ns,
        live_cpu_ns,
        bpf_ns,
        status,
        maps: Vec::new(),
        maps_took_s: f64::NAN,
        forks,
        ctxt,
        fsyncs,
        threads,
        took_s: began.elapsed().as_secs_f64(),
    }
}

/// utime + stime of a process (its exited threads included), nanoseconds.
fn stat_cpu_ns(pid: u32) -> u64 {
    stat_times(&format!("/proc/{pid}/stat")).map_or(0, |(_, ns)| ns)
}

/// The name and utime + stime (nanoseconds) in a /proc stat file.
fn stat_times(path: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // "pid (comm) S ppid ...": utime and stime are fields 14 and 15, the 12th and 13th after the comm.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(').map_or("?", |(_, n)| n).to_owned();
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((name, f.iter().sum::<u64>() * 1_000_000_000 / hz))
}

/// Each live thread of `pid`: its name and utime + stime.
fn thread_cpu_ns(pid: u32) -> BTreeMap<u64, (String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return BTreeMap::new() };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_string_lossy().parse().ok()?;
            Some((tid, stat_times(&format!("{}/stat", t.path().display()))?))
        })
        .collect()
}

/// CPU by thread name between two readings, % of one CPU, largest first
/// (threads that exited between them are not in it).
fn cpu_by_thread(a: &Snap, b: &Snap) -> Vec<(String, usize, f64)> {
    let mut by: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for (tid, (name, ns)) in &b.threads {
        let before = a.threads.get(tid).map_or(0, |t| t.1);
        let e = by.entry(name.as_str()).or_default();
        e.0 += 1;
        e.1 += ns.saturating_sub(before);
    }
    let span = (b.at - a.at).max(1e-9) * 1e9;
    let mut v: Vec<(String, usize, f64)> =
        by.into_iter().map(|(n, (k, ns))| (n.to_owned(), k, 100.0 * ns as f64 / span)).collect();
    v.sort_by(|x, y| y.2.total_cmp(&x.2));
    v
}

/// Host-wide processes and threads created, and context switches, since boot (/proc/stat).
fn host_counts() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let field = |name: &str| stat.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok()).unwrap_or(0);
    (field("processes "), field("ctxt "))
}

/// Ids named by a field of the fdinfo of `pid`'s descriptors of some kinds.
fn fdinfo_ids(pid: u32, kinds: &[&str], field: &str) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return ids };
    for fd in fds.flatten() {
        let kind = std::fs::read_link(fd.path()).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
        if !kinds.contains(&kind.as_str()) {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
            .unwrap_or_default();
        if let Some(id) = info.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().parse().ok()) {
            ids.insert(id);
        }
    }
    ids
}

/// The maps the agent holds (its map descriptors, and the maps of the
/// programs it holds directly or through links), each with its entries.
fn agent_maps(pid: u32) -> Vec<MapOcc> {
    let mut map_ids = fdinfo_ids(pid, &["anon_inode:bpf-map"], "map_id");
    let mut prog_ids: BTreeSet<u64> = bpf_progs_of(pid).keys().map(|&id| u64::from(id)).collect();
    prog_ids.extend(fdinfo_ids(pid, &["anon_inode:bpf-link", "anon_inode:bpf_link"], "prog_id"));
    let json = |args: &[&str]| -> Vec<Value> {
        output(Command::new("bpftool").args(args))
            .ok()
            .and_then(|o| serde_json::from_str::<Value>(&o).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    for p in json(&["-j", "prog", "show"]) {
        if p["id"].as_u64().is_some_and(|id| prog_ids.contains(&id)) {
            map_ids.extend(p["map_ids"].as_array().into_iter().flatten().filter_map(Value::as_u64));
        }
    }
    let mut maps = Vec::new();
    for m in json(&["-j", "map", "show"]) {
        let Some(id) = m["id"].as_u64().filter(|id| map_ids.contains(id)) else { continue };
        let kind = m["type"].as_str().unwrap_or("?").to_owned();
        let held = count_entries(id, &kind);
        maps.push(MapOcc {
            id,
            name: m["name"].as_str().unwrap_or("?").to_owned(),
            kind,
            max: m["max_entries"].as_u64().unwrap_or(0),
            held,
        });
    }
    maps
}

/// Map kinds whose entries are not countable: reported as n/a.
fn uncountable(kind: &str) -> bool {
    matches!(kind, "ringbuf" | "user_ringbuf" | "perf_event_array")
}

fn is_array(kind: &str) -> bool {
    matches!(kind, "array" | "percpu_array")
}

/// Entries of a map (`bpftool -j map dump`): the keys of a hash-like map,
/// the entries with a non-zero value of an array (whose every key exists).
fn count_entries(id: u64, kind: &str) -> Option<u64> {
    if uncountable(kind) {
        return None;
    }
    let dump = output(Command::new("bpftool").args(["-j", "map", "dump", "id", &id.to_string()])).ok()?;
    if is_array(kind) {
        let v: Value = serde_json::from_str(&dump).ok()?;
        let nonzero =
            |v: &Value| v.as_array().is_some_and(|b| b.iter().any(|x| x.as_str().is_some_and(|s| s != "0x00")));
        let n = v
            .as_array()?
            .iter()
            .filter(|e| {
                nonzero(&e["value"]) || e["values"].as_array().is_some_and(|c| c.iter().any(|c| nonzero(&c["value"])))
            })
            .count();
        return Some(n as u64);
    }
    // Elements open with {"key": after the array's [ or the previous element's comma
    // (a BTF-formatted copy of the key, inside "formatted":{...}, follows a colon).
    let bytes = dump.as_bytes();
    Some(dump.match_indices("{\"key\":").filter(|(i, _)| *i > 0 && matches!(bytes[i - 1], b'[' | b',')).count() as u64)
}

/// The drop counters of the status against `/metrics`, read at the same window.
struct DropCheck {
    /// status field, its value, the metric naming it, the metric's value.
    rows: Vec<(String, u64, String, Option<u64>)>,
    note: Option<String>,
}

impl DropCheck {
    fn met(&self) -> bool {
        self.note.is_none() && self.rows.iter().all(|(_, s, _, m)| *m == Some(*s))
    }
}

fn check_drops(agent: &Agent) -> DropCheck {
    let mut last_note = String::from("no reading");
    for _ in 0..10 {
        let metrics = output(Command::new("curl").args(["-sf", &agent.url("/metrics")]));
        let status = agent.json("/api/v1/status");
        let (Ok(metrics), Ok(status)) = (metrics, status) else {
            last_note = "/metrics or /api/v1/status did not answer".into();
            sleep(Duration::from_millis(500));
            continue;
        };
        let metric = |line_start: &str| -> Option<u64> {
            metrics.lines().find_map(|l| l.strip_prefix(line_start)?.trim().parse::<f64>().ok()).map(|v| v as u64)
        };
        let windows = status["collecting"]["windows"].as_u64();
        if windows != metric("tailprof_windows_total ") {
            last_note = "a window closed between the two readings".into();
            sleep(Duration::from_millis(300));
            continue;
        }
        let mut rows = Vec::new();
        for (cause, v) in status["collecting"]["dropped"].as_object().into_iter().flatten() {
            let reason = DROP_REASONS.iter().find(|(c, _)| *c == cause.as_str()).map_or(cause.as_str(), |(_, r)| r);
            let name = format!("tailprof_dropped_events_total{{reason=\"{reason}\"}}");
            let m = metric(&format!("{name} "));
            rows.push((format!("collecting.dropped.{cause}"), v.as_u64().unwrap_or(0), name, m));
        }
        let lost = status["collecting"]["lost_samples"].as_u64().unwrap_or(0);
        rows.push((
            "collecting.lost_samples".into(),
            lost,
            "tailprof_lost_samples_total".into(),
            metric("tailprof_lost_samples_total "),
        ));
        let note = rows.is_empty().then(|| "the status lists no drop counter".to_owned());
        return DropCheck { rows, note };
    }
    DropCheck { rows: Vec::new(), note: Some(format!("could not read both at one window: {last_note}")) }
}

/// Everything the report is written from.
struct Run {
    minutes: u64,
    udp_cpu: usize,
    wall_s: f64,
    version: String,
    load_before: String,
    snaps: Vec<Snap>,
    rss: Vec<(f64, f64)>,
    hwm_mib: Option<f64>,
    queries: Vec<Query>,
    starts: Vec<(&'static str, u32)>,
    drop_check: Option<DropCheck>,
    death: Option<String>,
    stop_error: Option<String>,
    agent_log: String,
    notes: Vec<String>,
}

fn max_of(v: impl IntoIterator<Item = f64>) -> f64 {
    v.into_iter().fold(f64::NAN, f64::max)
}

fn ms(s: f64) -> String {
    if s.is_nan() {
        "—".into()
    } else {
        format!("{:.0}", s * 1e3)
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

fn goal(met: bool, miss: String) -> String {
    if met {
        "**met**".into()
    } else {
        format!("**not met**, {miss}")
    }
}

/// The report, and its summary (also printed).
fn write_report(r: &Run) -> (String, String) {
    let snaps = &r.snaps;
    let done_min = snaps.len().saturating_sub(1);
    let fsync_total = snaps.last().map_or(0, |s| s.fsyncs);
    let span_s = snaps.last().map_or(0.0, |s| s.at).max(1e-9);
    let forks_s = snaps.last().zip(snaps.first()).map_or(0.0, |(b, a)| (b.forks - a.forks) as f64 / span_s);
    let ctxt_s = snaps.last().zip(snaps.first()).map_or(0.0, |(b, a)| (b.ctxt - a.ctxt) as f64 / span_s);
    let restarts = r.starts.iter().map(|(n, s)| format!("{n} {}", s.saturating_sub(1))).collect::<Vec<_>>().join(", ");
    let mut md = String::new();
    let _ = writeln!(md, "# Soak: `tailprof agent` under combined load\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask soak --minutes {}` (`xtask/src/soak.rs`). Machine: {}, kernel {}. Agent: {} \
         (release build). Load average before the loads: {}. {} min of load ({:.0} s wall), {done_min} minute(s) \
         measured.\n",
        r.minutes,
        crate::bench::machine(),
        kernel_release(),
        if r.version.is_empty() { "tailprof" } else { &r.version },
        r.load_before.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        r.minutes,
        r.wall_s,
    );
    let _ = writeln!(
        md,
        "The agent ran with every default (continuous tier, 10 s windows, the 1% cost governor) but its data \
         directory (`target/soak/data`, deleted after a clean run) and its port (a free one on 127.0.0.1), \
         `kernel.bpf_stats_enabled=1` for the run. Once it was ready, these loads started, each external one at \
         nice {NICE} in a process group of its own (killed at the end, restarted if it ended; restarts: {restarts}):\n\n\
         - fork/exec storm: `sh -c 'while :; do <{EXEC_BATCH}× /bin/true>; sleep 0.1; done'`;\n\
         - thread churn: `stress-ng --pthread 1 --pthread-max 32`;\n\
         - sched-pipe: `perf bench sched pipe -l {PIPE_LOOPS}`, restarted when it ends;\n\
         - UDP flood on 127.0.0.1: `udp_flood` (`xtask/workloads/udp_flood.c`), both threads on CPU {} \
         (the CPU serving fewer disk interrupts);\n\
         - disk: a thread writing 4 KiB at a time into a 1 MiB file in `target/soak`, each write followed by \
         `fdatasync`, {FSYNC_PER_S} a second ({:.0}/s achieved);\n\
         - 10,000 idle threads (`xtask/workloads/idle_threads.c`);\n\
         - API queries, one every {} ms in turn: {}; curl's `time_total`, any answer but 200 an error.\n\n\
         Host-wide over the run: {forks_s:.0} processes and threads created per second, {ctxt_s:.0} context \
         switches per second (/proc/stat).\n",
        r.udp_cpu,
        fsync_total as f64 / span_s,
        QUERY_PERIOD.as_millis(),
        QUERIES.iter().map(|q| format!("`{q}`")).collect::<Vec<_>>().join(", "),
    );

    // The summary.
    let rss_end = r.rss.last().map_or(f64::NAN, |p| p.1);
    let rss_start = r.rss.first().map_or(f64::NAN, |p| p.1);
    let rss_max = max_of(r.rss.iter().map(|p| p.1));
    let peak = r.hwm_mib.map_or(rss_max, |h| h.max(rss_max));
    let end_s = r.rss.last().map_or(0.0, |p| p.0);
    let span_min = if r.minutes >= SLOPE_SPAN_MIN { SLOPE_SPAN_MIN as f64 } else { r.minutes as f64 / 2.0 };
    let tail: Vec<(f64, f64)> = r.rss.iter().copied().filter(|p| p.0 >= end_s - span_min * 60.0).collect();
    let slope = slope_per_minute(&tail);
    let first_last =
        |f: fn(&Snap) -> u64| snaps.last().zip(snaps.first()).map_or(0, |(b, a)| f(b).saturating_sub(f(a)));
    let cpu_pct = 100.0 * first_last(|s| s.stat_cpu_ns) as f64 / (span_s * 1e9);
    let live_pct = 100.0 * first_last(|s| s.live_cpu_ns) as f64 / (span_s * 1e9);
    let bpf_pct = 100.0 * first_last(|s| s.bpf_ns) as f64 / (span_s * 1e9);
    let errors: Vec<&Query> = r.queries.iter().filter(|q| q.error.is_some()).collect();
    let lat: Vec<f64> = r.queries.iter().filter(|q| q.error.is_none()).map(|q| q.secs).collect();
    let mut sum = String::new();
    let _ = writeln!(sum, "## Summary\n");
    if let Some(d) = &r.death {
        let _ = writeln!(sum, "**The run failed: {d}.** The figures below cover the minutes before.\n");
    }
    if let Some(e) = &r.stop_error {
        let _ = writeln!(sum, "**The agent did not stop cleanly on SIGTERM at the end:** {e}\n");
    }
    let _ = writeln!(sum, "| goal | measured | result |\n|---|---|---|");
    let slope_label = if r.minutes >= SLOPE_SPAN_MIN {
        format!("RSS slope over the last {SLOPE_SPAN_MIN} min")
    } else {
        format!("RSS slope over the second half ({span_min:.1} min; a run under {SLOPE_SPAN_MIN} min)")
    };
    let _ = writeln!(
        sum,
        "| {slope_label} ≤ {SLOPE_GOAL_MIB_PER_MIN} MiB/min (least squares, {} per-second samples) | {slope:+.3} MiB/min | {} |",
        tail.len(),
        goal(slope <= SLOPE_GOAL_MIB_PER_MIN, format!("by {:.3} MiB/min", slope - SLOPE_GOAL_MIB_PER_MIN)),
    );
    let _ = writeln!(
        sum,
        "| peak RSS ≤ {RSS_GOAL_MIB:.0} MiB (VmHWM at the end, or the highest sample) | {peak:.1} MiB | {} |",
        goal(
            peak <= RSS_GOAL_MIB,
            format!("by {:.1} MiB ({:.0}% over)", peak - RSS_GOAL_MIB, 100.0 * (peak / RSS_GOAL_MIB - 1.0))
        ),
    );
    match &r.drop_check {
        Some(d) => {
            let differ: Vec<&str> =
                d.rows.iter().filter(|(_, s, _, m)| *m != Some(*s)).map(|(c, _, _, _)| c.as_str()).collect();
            let measured = match &d.note {
                Some(n) => n.clone(),
                None => format!(
                    "{} counters, {} dropped in all; {} differ",
                    d.rows.len(),
                    d.rows.iter().map(|r| r.1).sum::<u64>(),
                    differ.len()
                ),
            };
            let _ = writeln!(
                sum,
                "| no drop left unreported: every drop counter of `/api/v1/status` in `/metrics` with the same total at the end | {measured} | {} |",
                goal(d.met(), format!("unreported or different: {}", differ.join(", ")))
            );
        }
        None => {
            let _ = writeln!(sum, "| no drop left unreported | not checked (the agent died) | — |");
        }
    }
    let _ = writeln!(
        sum,
        "| no API error | {} of {} requests failed | {} |",
        errors.len(),
        r.queries.len(),
        goal(errors.is_empty(), format!("{} requests failed", errors.len())),
    );
    let _ = writeln!(
        sum,
        "\nRSS: {rss_start:.1} MiB at the start of the load, {rss_end:.1} MiB at the end, highest 1 s sample \
         {rss_max:.1} MiB, VmHWM {}; slope over the whole run {:+.3} MiB/min. CPU of one CPU over the run: process \
         {cpu_pct:.2}% (utime+stime, /proc/PID/stat; live threads' schedstat gives {live_pct:.2}%), BPF programs \
         {bpf_pct:.2}%, total {:.2}%.",
        r.hwm_mib.map_or_else(|| "?".into(), |h| format!("{h:.1} MiB")),
        slope_per_minute(&r.rss),
        cpu_pct + bpf_pct,
    );
    if let (Some(a), Some(b)) = (snaps.first(), snaps.last()) {
        let list: Vec<String> = cpu_by_thread(a, b)
            .iter()
            .filter(|t| t.2 >= 0.05)
            .take(8)
            .map(|(n, k, pct)| format!("{n} ×{k} {pct:.2}%"))
            .collect();
        let _ = writeln!(
            sum,
            "The agent's CPU by thread name over the run (threads alive at the end): {}.",
            list.join(", ")
        );
    }
    if let Some(last) = snaps.last().and_then(|s| s.status.as_ref()) {
        let c = &last["collecting"];
        let dropped: Vec<String> = c["dropped"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k} {}", v.as_u64().unwrap_or(0)))
            .collect();
        let _ = writeln!(
            sum,
            "Drops at the end, since the agent's start: {}; lost samples {} of {}. Storage: {} segments, {:.1} MiB, \
             {} windows written, {} merges, {} write errors.",
            dropped.join(", "),
            opt(c["lost_samples"].as_u64()),
            opt(c["samples"].as_u64()),
            opt(last["storage"]["segments"].as_u64()),
            last["storage"]["bytes"].as_f64().unwrap_or(f64::NAN) / (1 << 20) as f64,
            opt(last["storage"]["written"].as_u64()),
            opt(last["storage"]["merges"].as_u64()),
            opt(last["storage"]["write_errors"].as_u64()),
        );
    }
    let _ = writeln!(
        sum,
        "Queries: {} in all, p50 {} ms, max {} ms.\n",
        r.queries.len(),
        ms(median(lat.clone())),
        ms(max_of(lat.iter().copied()))
    );
    let _ = writeln!(sum, "| query | requests | p50 ms | max ms | errors |\n|---|---:|---:|---:|---:|");
    for (i, q) in QUERIES.iter().enumerate() {
        let of: Vec<&Query> = r.queries.iter().filter(|x| x.which == i).collect();
        let ok: Vec<f64> = of.iter().filter(|x| x.error.is_none()).map(|x| x.secs).collect();
        let _ = writeln!(
            sum,
            "| `{q}` | {} | {} | {} | {} |",
            of.len(),
            ms(median(ok.clone())),
            ms(max_of(ok)),
            of.len() - of.iter().filter(|x| x.error.is_none()).count()
        );
    }
    if !errors.is_empty() {
        let mut kinds: BTreeMap<(usize, &str), usize> = BTreeMap::new();
        for q in &errors {
            *kinds.entry((q.which, q.error.as_deref().unwrap_or(""))).or_default() += 1;
        }
        let list: Vec<String> = kinds.iter().map(|((w, e), n)| format!("`{}`: {e} ×{n}", QUERIES[*w])).collect();
        let _ = writeln!(sum, "\nErrors: {}.", list.join("; "));
    }
    if let Some(d) = &r.drop_check {
        if !d.rows.is_empty() {
            let _ = writeln!(sum, "\n| status counter | value | in `/metrics` | value |\n|---|---:|---|---:|");
            for (c, s, m, mv) in &d.rows {
                let _ = writeln!(
                    sum,
                    "| `{c}` | {s} | `{m}` | {} |",
                    mv.map_or_else(|| "absent".into(), |v| v.to_string())
                );
            }
        }
    }
    let log_lines: Vec<&str> = r.agent_log.lines().filter(|l| !l.trim().is_empty()).collect();
    let notable: BTreeSet<&str> = log_lines
        .iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("warn") || l.contains("error"))
        .map(|l| l.trim())
        .collect();
    let _ = writeln!(
        sum,
        "\nThe agent's stderr (`target/soak/data.stderr`): {} lines, {} distinct warning or error lines{}",
        log_lines.len(),
        notable.len(),
        if notable.is_empty() { ".".to_owned() } else { ":".to_owned() }
    );
    for l in notable.iter().take(8) {
        let _ = writeln!(sum, "- `{}`", l.chars().take(200).collect::<String>().replace('`', "'"));
    }
    for n in &r.notes {
        let _ = writeln!(sum, "\n{n}");
    }
    md.push_str(&sum);
    md.push('\n');
    per_minute(&mut md, r);
    (md, sum)
}

fn per_minute(md: &mut String, r: &Run) {
    let snaps = &r.snaps;
    if snaps.len() < 2 {
        return;
    }
    let _ = writeln!(
        md,
        "## Per minute\n\n\
         RSS is VmRSS sampled every second: at the minute's end and the minute's highest. CPU is the agent's \
         process (utime+stime) and its BPF programs' run time (their fdinfo), % of one CPU. Segments and disk \
         from `/api/v1/status` at the minute's end, with the governor's rates in effect (thread-state snapshots \
         per second, on-CPU samples Hz). Host-wide processes and threads created and context switches per second \
         (/proc/stat); fdatasync writes per second. Queries started in the minute: count, p50 and max of the \
         successful ones, errors.\n"
    );
    let _ = writeln!(
        md,
        "| min | RSS end MiB | RSS max MiB | CPU % | BPF % | segments | disk MiB | snaps/s · Hz | new tasks/s | ctxt/s | fsync/s | queries | p50 ms | max ms | errors |\n\
         |---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for m in 1..snaps.len() {
        let (a, b) = (&snaps[m - 1], &snaps[m]);
        let dt = (b.at - a.at).max(1e-9);
        let in_min: Vec<f64> = r.rss.iter().filter(|p| p.0 > a.at - 0.5 && p.0 <= b.at + 0.5).map(|p| p.1).collect();
        let rss_end = r.rss.iter().rfind(|p| p.0 <= b.at + 0.5).map_or(f64::NAN, |p| p.1);
        let qs: Vec<&Query> =
            r.queries.iter().filter(|q| q.at >= (m - 1) as f64 * 60.0 && q.at < m as f64 * 60.0).collect();
        let ok: Vec<f64> = qs.iter().filter(|q| q.error.is_none()).map(|q| q.secs).collect();
        let st = b.status.as_ref();
        let gov = st.map(|s| &s["collecting"]["governor"]);
        let _ = writeln!(
            md,
            "| {m} | {rss_end:.1} | {:.1} | {:.2} | {:.2} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
            max_of(in_min),
            100.0 * b.stat_cpu_ns.saturating_sub(a.stat_cpu_ns) as f64 / (dt * 1e9),
            100.0 * b.bpf_ns.saturating_sub(a.bpf_ns) as f64 / (dt * 1e9),
            opt(st.and_then(|s| s["storage"]["segments"].as_u64())),
            st.and_then(|s| s["storage"]["bytes"].as_f64())
                .map_or_else(|| "?".into(), |b| format!("{:.1}", b / (1 << 20) as f64)),
            gov.map_or_else(
                || "?".into(),
                |g| format!("{} · {}", fmt_rate(g["state_hz"].as_f64()), fmt_rate(g["frequency_hz"].as_f64()))
            ),
            (b.forks - a.forks) as f64 / dt,
            (b.ctxt - a.ctxt) as f64 / dt,
            (b.fsyncs - a.fsyncs) as f64 / dt,
            qs.len(),
            ms(median(ok.clone())),
            ms(max_of(ok)),
            qs.len() - qs.iter().filter(|q| q.error.is_none()).count(),
        );
    }
    let took = max_of(snaps.iter().map(|s| s.took_s));
    let maps_took = max_of(snaps.iter().map(|s| s.maps_took_s));
    let _ = writeln!(
        md,
        "\n(Each minute's reading of CPU and status took at most {took:.1} s; counting the maps, beside it, at most \
         {maps_took:.1} s.)\n"
    );

    // Queries by endpoint, per minute.
    let _ = writeln!(
        md,
        "### Queries per minute, by endpoint\n\nRequests started in the minute: count, p50 / max ms of the successful \
         ones, and errors (after a slash when there are any). The queries run one after another: a slow one \
         delays the next.\n"
    );
    let short = |q: &str| q.split('?').next().unwrap_or(q).trim_start_matches("/api/v1/").to_owned();
    let names: Vec<String> = QUERIES.iter().map(|q| format!("`{}`", short(q))).collect();
    let _ = writeln!(md, "| min | {} |\n|---:|{}", names.join(" | "), "---:|".repeat(QUERIES.len()));
    for m in 1..snaps.len() {
        let cells: Vec<String> = (0..QUERIES.len())
            .map(|i| {
                let qs: Vec<&Query> = r
                    .queries
                    .iter()
                    .filter(|q| q.which == i && q.at >= (m - 1) as f64 * 60.0 && q.at < m as f64 * 60.0)
                    .collect();
                let ok: Vec<f64> = qs.iter().filter(|q| q.error.is_none()).map(|q| q.secs).collect();
                let errors = qs.len() - ok.len();
                let e = if errors > 0 { format!(" / {errors} errors") } else { String::new() };
                format!("{}: {} / {}{e}", qs.len(), ms(median(ok.clone())), ms(max_of(ok)))
            })
            .collect();
        let _ = writeln!(md, "| {m} | {} |", cells.join(" | "));
    }
    let _ = writeln!(md);

    // Drops by cause, per minute.
    let drop_keys: BTreeSet<String> = snaps
        .iter()
        .filter_map(|s| {
            s.status.as_ref()?["collecting"]["dropped"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>())
        })
        .flatten()
        .collect();
    let _ = writeln!(
        md,
        "### Drops per minute\n\nIncrease over the minute of `collecting.dropped.*` and `collecting.lost_samples` \
         (`/api/v1/status`).\n"
    );
    let _ = writeln!(
        md,
        "| min | {} | lost_samples |\n|---:|{}---:|",
        drop_keys.iter().cloned().collect::<Vec<_>>().join(" | "),
        "---:|".repeat(drop_keys.len())
    );
    let counter = |s: &Snap, path: &[&str]| -> Option<u64> {
        let mut v = s.status.as_ref()?;
        for p in path {
            v = &v[*p];
        }
        v.as_u64()
    };
    for m in 1..snaps.len() {
        let (a, b) = (&snaps[m - 1], &snaps[m]);
        let delta = |path: &[&str]| match (counter(a, path), counter(b, path)) {
            (Some(x), Some(y)) => y.saturating_sub(x).to_string(),
            _ => "?".into(),
        };
        let cells: Vec<String> = drop_keys.iter().map(|k| delta(&["collecting", "dropped", k])).collect();
        let _ = writeln!(md, "| {m} | {} | {} |", cells.join(" | "), delta(&["collecting", "lost_samples"]));
    }

    // Caches, per minute.
    let last_caches =
        snaps.iter().rev().find_map(|s| s.status.as_ref()?["collecting"]["caches"]["caches"].as_object().cloned());
    if let Some(caches) = last_caches {
        let names: Vec<&String> = caches.keys().collect();
        let _ = writeln!(
            md,
            "\n### The collector's caches\n\n`collecting.caches.caches.*` of `/api/v1/status` at the minute's end \
             (after the last closed window): entries held and, after +, the evictions during the minute \
             (`unwind_tables_bytes` in MiB); the bound under each name where there is one. Then the heap \
             when that window closed (`heap_in_use_bytes`, `heap_free_bytes`, glibc's `mallinfo2`, MiB): \
             held by live allocations, and free but not given back to the kernel.\n"
        );
        let header: Vec<String> = names
            .iter()
            .map(|n| match caches[*n]["bound"].as_u64() {
                Some(b) if n.ends_with("_bytes") => format!("{n} ≤{:.0} MiB", b as f64 / (1 << 20) as f64),
                Some(b) => format!("{n} ≤{b}"),
                None => (*n).clone(),
            })
            .collect();
        let _ = writeln!(
            md,
            "| min | {} | heap in use | heap free |\n|---:|{}",
            header.join(" | "),
            "---:|".repeat(names.len() + 2)
        );
        for (m, s) in snaps.iter().enumerate() {
            let mut cells: Vec<String> = names
                .iter()
                .map(|n| {
                    let c = |s: &Snap, f: &str| {
                        s.status.as_ref().and_then(|v| v["collecting"]["caches"]["caches"][n.as_str()][f].as_u64())
                    };
                    let scale = |v: u64| {
                        if n.ends_with("_bytes") {
                            format!("{:.1}", v as f64 / (1 << 20) as f64)
                        } else {
                            v.to_string()
                        }
                    };
                    let held = c(s, "held").map_or_else(|| "?".into(), scale);
                    // Evictions are counted from the agent's start: none before its first window.
                    match (m.checked_sub(1).map(|p| c(&snaps[p], "evicted").unwrap_or(0)), c(s, "evicted")) {
                        (Some(x), Some(y)) => format!("{held} +{}", scale(y.saturating_sub(x))),
                        _ => held,
                    }
                })
                .collect();
            if m == 0 && cells.iter().all(|c| c == "?") {
                continue;
            }
            for f in ["heap_in_use_bytes", "heap_free_bytes"] {
                let v = s.status.as_ref().and_then(|v| v["collecting"]["caches"][f].as_u64());
                cells.push(v.map_or_else(|| "?".into(), |b| format!("{:.1}", b as f64 / (1 << 20) as f64)));
            }
            let _ = writeln!(md, "| {m} | {} |", cells.join(" | "));
        }
    }

    // BPF maps, per minute.
    let mut maps: BTreeMap<u64, MapOcc> = BTreeMap::new();
    for s in snaps {
        for m in &s.maps {
            maps.entry(m.id).or_insert_with(|| m.clone());
        }
    }
    let held = |s: &Snap, id: u64| s.maps.iter().find(|m| m.id == id).and_then(|m| m.held);
    let (mut varying, mut steady, mut rings) = (Vec::new(), Vec::new(), Vec::new());
    let mut by_name: Vec<(&u64, &MapOcc)> = maps.iter().collect();
    by_name.sort_by(|a, b| (a.1.name.to_lowercase(), a.0).cmp(&(b.1.name.to_lowercase(), b.0)));
    for (id, m) in by_name {
        if uncountable(&m.kind) {
            rings.push(format!("{} ({}, {} bytes): n/a", m.name, m.kind, m.max));
            continue;
        }
        let values: BTreeSet<Option<u64>> = snaps.iter().skip(1).map(|s| held(s, *id)).collect();
        if values.len() == 1 {
            let what = if is_array(&m.kind) { "non-zero" } else { "entries" };
            let at_start = held(&snaps[0], *id);
            let value = values.into_iter().next().flatten();
            let start = if at_start != value { format!(", {} at the start", opt(at_start)) } else { String::new() };
            steady.push(format!("{} ({}) {}/{} {what}{start}", m.name, m.kind, opt(value), m.max));
        } else {
            varying.push(m);
        }
    }
    let _ = writeln!(
        md,
        "\n### BPF maps\n\nEvery map the agent holds (its map descriptors and its programs' maps, `bpftool -j map \
         show`), counted with `bpftool -j map dump` at the start (0) and at each minute's end: entries of \
         hash-like maps, entries with a non-zero value of arrays; ring buffers are not countable. {} maps. Maps \
         whose count changed during the load, entries / max_entries in the header:\n",
        maps.len()
    );
    if !varying.is_empty() {
        let header: Vec<String> = varying.iter().map(|m| format!("{} /{}", m.name, m.max)).collect();
        let _ = writeln!(md, "| min | {} |\n|---:|{}", header.join(" | "), "---:|".repeat(varying.len()));
        for (m, s) in snaps.iter().enumerate() {
            let cells: Vec<String> = varying.iter().map(|v| opt(held(s, v.id))).collect();
            let _ = writeln!(md, "| {m} | {} |", cells.join(" | "));
        }
    }
    let _ = writeln!(
        md,
        "\nThe same at every minute's end: {}.",
        if steady.is_empty() { "none".into() } else { steady.join("; ") }
    );
    let _ = writeln!(md, "\nRing buffers: {}.", if rings.is_empty() { "none".into() } else { rings.join("; ") });
}

fn fmt_rate(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_errors() {
        assert_eq!(short_error(&anyhow::anyhow!("/api/v1/status: HTTP 503")), "HTTP 503");
    }
}
