//! Unwinding cost: `tailprof record --unwind dwarf` (default settings, and
//! again with `--no-off-cpu`) against `perf record --call-graph dwarf -F 99
//! -a` followed by `perf script`, on code built without frame pointers.
//!
//! Workload, in every phase: `xtask/workloads/unwind_qsort.c` (built with
//! `-O2 -fomit-frame-pointer`; its hot function is a comparator that libc's
//! qsort calls) pinned to one CPU, and `xtask/workloads/unwind_loop.py`
//! (Debian's /usr/bin/python3) pinned to another: every CPU of a 2-CPU host
//! is busy with code a frame-pointer walk cannot get through, and both tools
//! take the same number of samples of the same stacks.
//!
//! Both tools must end with symbolized stacks, so perf's cost is `perf
//! record` plus `perf script`. Besides the CPU, the section reports how
//! complete the stacks both produced are (share of the workload's samples
//! whose stack reaches `main`), and the unwinder's own statistics from
//! tailprof's summary.json (`unwind`; fields it lacks show as n/a).

use std::{
    fmt::Write as _,
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::common::{
    bpf_progs_of, bpf_run_time_ns_of, median, ms, perf_event_fds, process_cpu_ns, set_bpf_stats, wait_ready,
    wait_with_cost, Cost,
};
use crate::util::{output, root};

const FREQ: u64 = 99;
/// The comms of the two workloads (the Python one renames itself).
const QSORT_COMM: &str = "unwind_qsort";
const PY_COMM: &str = "unwind-py";
/// A stack "reaches main" when one of its frames is one of these: the C
/// program's `main`, or, for python3 (whose own `main` is not in its dynamic
/// symbols), the exported entry points `main` calls, or libc's start-up.
const OUTER_FRAMES: [&str; 6] =
    ["main", "Py_BytesMain", "Py_RunMain", "__libc_start_call_main", "__libc_start_main", "_start"];
/// How long a tool may take to load its programs or open its events.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a tool may take to write its output after the capture.
const FINISH_TIMEOUT: Duration = Duration::from_secs(300);
/// The "during capture" reading is taken this long before the capture ends.
const CAPTURE_MARGIN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    /// `tailprof record --unwind dwarf`, default settings otherwise.
    Tailprof,
    /// The same with `--no-off-cpu`: no scheduler hooks, no snapshots.
    TailprofOnCpu,
    /// `perf record --call-graph dwarf -F 99 -a`, then `perf script`.
    Perf,
}

impl Tool {
    const ALL: [Tool; 3] = [Tool::Tailprof, Tool::TailprofOnCpu, Tool::Perf];

    fn label(self) -> &'static str {
        match self {
            Tool::Tailprof => "tailprof --unwind dwarf",
            Tool::TailprofOnCpu => "tailprof --unwind dwarf --no-off-cpu",
            Tool::Perf => "perf record --call-graph dwarf + perf script",
        }
    }
}

/// How complete one workload's stacks are in one tool's output.
#[derive(Debug, Clone, Copy, Default)]
struct Stacks {
    samples: u64,
    /// Samples with a frame in [`OUTER_FRAMES`].
    reach_main: u64,
    /// User frames, summed over the samples.
    user_frames: u64,
}

impl Stacks {
    fn add(&mut self, frames: &[&str], user_frames: u64, count: u64) {
        self.samples += count;
        self.user_frames += user_frames * count;
        if frames.iter().any(|f| OUTER_FRAMES.contains(f)) {
            self.reach_main += count;
        }
    }
    fn reach_pct(&self) -> f64 {
        100.0 * self.reach_main as f64 / self.samples as f64
    }
    fn mean_frames(&self) -> f64 {
        self.user_frames as f64 / self.samples as f64
    }
}

/// One phase: one tool capturing the host while the workload runs.
struct Run {
    tool: Tool,
    /// user+sys of `tailprof record` or `perf record` (wait4).
    record: Cost,
    /// CPU of its threads once it was ready (programs loaded, events open),
    /// and [`CAPTURE_MARGIN`] before the capture's end (schedstat).
    startup_ns: u64,
    capture_ns: u64,
    capture_s: f64,
    /// Run time of tailprof's BPF programs.
    bpf_ns: u64,
    /// user+sys of `perf script` (default settings: inlined functions shown,
    /// found with addr2line when perf is built without libbfd), and of
    /// `perf script --no-inline`.
    script: Option<Cost>,
    script_no_inline: Option<Cost>,
    /// Samples in the output, all processes.
    samples: u64,
    qsort: Stacks,
    py: Stacks,
    /// The workloads' rounds per second over the phase.
    qsort_rate: f64,
    py_rate: f64,
    /// perf.data, or tailprof's output directory.
    output_bytes: u64,
    /// tailprof's summary.json `unwind` object (Null when absent).
    unwind: serde_json::Value,
    lost: Option<u64>,
}

impl Run {
    fn total_ms(&self) -> f64 {
        ms(self.record.total()) + self.bpf_ns as f64 / 1e6 + self.script.map_or(0.0, |c| ms(c.total()))
    }
    /// perf's total with `perf script --no-inline` (tailprof's total for tailprof).
    fn total_no_inline_ms(&self) -> f64 {
        ms(self.record.total()) + self.bpf_ns as f64 / 1e6 + self.script_no_inline.map_or(0.0, |c| ms(c.total()))
    }
    fn after_ms(&self) -> f64 {
        ms(self.record.total()) - (self.startup_ns + self.capture_ns) as f64 / 1e6
    }
}

/// A running workload process and its stdout.
struct Workload {
    child: Child,
    stdout: BufReader<ChildStdout>,
    what: &'static str,
}

impl Workload {
    /// Start `cmd` pinned to `cpu` and wait for its "ready".
    fn start(what: &'static str, cpu: usize, program: &Path, args: &[&Path]) -> anyhow::Result<Self> {
        let mut child = Command::new("taskset")
            .args(["-c", &cpu.to_string()])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("could not start {what}"))?;
        let mut stdout = BufReader::new(child.stdout.take().context("the workload has no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not get ready (it said {line:?})");
        }
        Ok(Workload { child, stdout, what })
    }

    /// SIGTERM, then its rounds per second.
    fn stop(mut self) -> anyhow::Result<f64> {
        // SAFETY: plain kill(2) on a child we have not reaped yet.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) } != 0 {
            bail!("could not stop {}: {}", self.what, std::io::Error::last_os_error());
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{} failed: {status}", self.what);
        }
        let fields: Vec<f64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        match fields[..] {
            [rounds, secs] if secs > 0.0 => Ok(rounds / secs),
            _ => bail!("{} printed {line:?}, not \"ROUNDS SECONDS\"", self.what),
        }
    }
}

/// The first two CPUs this process may run on (the same one twice on a
/// 1-CPU host).
fn workload_cpus() -> [usize; 2] {
    // SAFETY: a zeroed cpu_set_t is a valid out-parameter.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size is that of `set`.
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    let allowed: Vec<usize> = if ok {
        // SAFETY: CPU_ISSET reads the set within its size.
        (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
    } else {
        vec![0]
    };
    let first = allowed.first().copied().unwrap_or(0);
    [first, allowed.get(1).copied().unwrap_or(first)]
}

/// True once `pid` is a zombie or gone, without reaping it (so that wait4
/// still reports its CPU).
fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z"),
        Err(_) => true,
    }
}

fn bytes_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map(|d| d.flatten().map(|e| bytes_of(&e.path())).sum()).unwrap_or(0)
}

struct Setup<'a> {
    bin: &'a Path,
    scratch: &'a Path,
    qsort: PathBuf,
    py: PathBuf,
    cpus: [usize; 2],
    seconds: u64,
}

fn spawn_tool(s: &Setup, tool: Tool, out: &Path, stderr: &Path) -> anyhow::Result<Child> {
    let secs = s.seconds.to_string();
    let mut cmd = match tool {
        Tool::Tailprof | Tool::TailprofOnCpu => {
            let mut cmd = Command::new(s.bin);
            cmd.args(["record", "--unwind", "dwarf", "--duration", &format!("{secs}s")]);
            if tool == Tool::TailprofOnCpu {
                cmd.arg("--no-off-cpu");
            }
            cmd.arg("-o").arg(out);
            cmd
        }
        Tool::Perf => {
            let mut cmd = Command::new("perf");
            cmd.args(["record", "--call-graph", "dwarf", "-F", &FREQ.to_string(), "-a", "-q", "-o"])
                .arg(out)
                .args(["--", "sleep", &secs]);
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(stderr)?)
        .spawn()
        .with_context(|| format!("could not start {}", tool.label()))
}

fn measure(s: &Setup, tool: Tool) -> anyhow::Result<Run> {
    let qsort = Workload::start("unwind_qsort", s.cpus[0], &s.qsort, &[])?;
    let py = Workload::start("unwind_loop.py", s.cpus[1], Path::new("/usr/bin/python3"), &[s.py.as_path()])?;
    let out = s.scratch.join(match tool {
        Tool::Perf => "unwind-perf.data",
        Tool::Tailprof => "unwind-tailprof",
        Tool::TailprofOnCpu => "unwind-tailprof-on-cpu",
    });
    let stderr = s.scratch.join("unwind-tool.stderr");
    let mut child = spawn_tool(s, tool, &out, &stderr)?;
    let pid = child.id();
    let is_perf = tool == Tool::Perf;
    wait_ready(&mut child, tool.label(), &stderr, READY_TIMEOUT, || {
        if is_perf {
            perf_event_fds(pid) > 0
        } else {
            !bpf_progs_of(pid).is_empty()
        }
    })?;
    let ready = Instant::now();
    let startup_ns = process_cpu_ns(pid);
    let capture_until = ready + Duration::from_secs(s.seconds).saturating_sub(CAPTURE_MARGIN);
    let mut capture_ns = None;
    let mut bpf_ns = 0;
    // Programs unload when the tool exits: keep the last reading.
    while !has_exited(pid) {
        if ready.elapsed() > Duration::from_secs(s.seconds) + FINISH_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not finish within {FINISH_TIMEOUT:?} after its capture", tool.label());
        }
        if !is_perf {
            bpf_ns = bpf_ns.max(bpf_run_time_ns_of(pid));
        }
        if capture_ns.is_none() && Instant::now() >= capture_until {
            capture_ns = Some(process_cpu_ns(pid).saturating_sub(startup_ns));
        }
        sleep(Duration::from_millis(100));
    }
    let capture_s = capture_until.saturating_duration_since(ready).as_secs_f64();
    let record = wait_with_cost(child, tool.label(), false).map_err(|e| {
        let said = std::fs::read_to_string(&stderr).unwrap_or_default();
        e.context(format!("it said: {}", said.trim()))
    })?;
    let Some(capture_ns) = capture_ns else {
        bail!("{} exited before its {} s capture ended", tool.label(), s.seconds);
    };
    // The workloads outlive the capture: tailprof reads their modules while
    // they live. perf script reads perf.data and the files on disk.
    let qsort_rate = qsort.stop()?;
    let py_rate = py.stop()?;
    let output_bytes = bytes_of(&out);
    let mut run = Run {
        tool,
        record,
        startup_ns,
        capture_ns,
        capture_s,
        bpf_ns,
        script: None,
        script_no_inline: None,
        samples: 0,
        qsort: Stacks::default(),
        py: Stacks::default(),
        qsort_rate,
        py_rate,
        output_bytes,
        unwind: serde_json::Value::Null,
        lost: None,
    };
    if is_perf {
        let text = s.scratch.join("unwind-perf-script.txt");
        run.script = Some(perf_script(&out, &[], File::create(&text)?, &stderr)?);
        run.script_no_inline = Some(perf_script(&out, &["--no-inline"], File::create("/dev/null")?, &stderr)?);
        (run.samples, run.qsort, run.py) = perf_script_stacks(&text)?;
        let _ = std::fs::remove_file(&text);
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(out.with_extension("data.old"));
    } else {
        let summary = out.join("summary.json");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&summary).with_context(|| format!("could not read {}", summary.display()))?,
        )
        .with_context(|| format!("{} is not JSON", summary.display()))?;
        run.samples = json["samples"].as_u64().unwrap_or(0);
        run.lost = json["lost_samples"].as_u64();
        run.unwind = json["unwind"]["unwinder"].clone();
        (run.qsort, run.py) = folded_stacks(&out.join("stacks.folded"))?;
        let _ = std::fs::remove_dir_all(&out);
    }
    Ok(run)
}

/// Run `perf script -i DATA ARGS > stdout`; its CPU (with its children's:
/// addr2line).
fn perf_script(data: &Path, args: &[&str], stdout: File, stderr: &Path) -> anyhow::Result<Cost> {
    let child = Command::new("perf")
        .arg("script")
        .args(args)
        .arg("-i")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(File::create(stderr)?)
        .spawn()
        .context("could not start perf script")?;
    wait_with_cost(child, "perf script", false).map_err(|e| {
        let said = std::fs::read_to_string(stderr).unwrap_or_default();
        e.context(format!("it said: {}", said.trim()))
    })
}

/// The workloads' stacks in tailprof's stacks.folded
/// (`comm;outermost;…;innermost COUNT`, kernel frames suffixed `_[k]`).
fn folded_stacks(path: &Path) -> anyhow::Result<(Stacks, Stacks)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    let (mut qsort, mut py) = (Stacks::default(), Stacks::default());
    for line in text.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else { continue };
        let Ok(count) = count.parse::<u64>() else { continue };
        let mut frames = stack.split(';');
        let target = match frames.next() {
            Some(QSORT_COMM) => &mut qsort,
            Some(PY_COMM) => &mut py,
            _ => continue,
        };
        let user: Vec<&str> = frames.filter(|f| !f.ends_with("_[k]")).collect();
        target.add(&user, user.len() as u64, count);
    }
    Ok((qsort, py))
}

/// All samples, and the workloads' stacks, in `perf script`'s default
/// output: a header line per sample (`comm tid [cpu] time: period event:`,
/// the comm right-aligned), then one line per frame, tab-indented
/// (`\t    ADDRESS SYMBOL+OFFSET (DSO)`), then a blank line.
fn perf_script_stacks(path: &Path) -> anyhow::Result<(u64, Stacks, Stacks)> {
    let file = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let (mut samples, mut qsort, mut py) = (0, Stacks::default(), Stacks::default());
    let mut buf = Vec::new();
    let mut current: Option<u8> = None; // 0: qsort, 1: py, 2: another process
    let mut names: Vec<String> = Vec::new();
    let mut user = 0;
    let mut flush = |current: &mut Option<u8>, names: &mut Vec<String>, user: &mut u64| {
        let frames: Vec<&str> = names.iter().map(String::as_str).collect();
        match current.take() {
            Some(0) => qsort.add(&frames, *user, 1),
            Some(1) => py.add(&frames, *user, 1),
            _ => {}
        }
        names.clear();
        *user = 0;
    };
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if line.is_empty() {
            flush(&mut current, &mut names, &mut user);
        } else if line.starts_with('\t') {
            let Some((symbol, dso)) = perf_frame(line) else { continue };
            if dso != "[kernel.kallsyms]" && !dso.starts_with("[guest.kernel") {
                user += 1;
            }
            names.push(symbol.to_owned());
        } else {
            flush(&mut current, &mut names, &mut user);
            samples += 1;
            current = Some(match line.split_whitespace().next() {
                Some(QSORT_COMM) => 0,
                Some(PY_COMM) => 1,
                _ => 2,
            });
        }
    }
    flush(&mut current, &mut names, &mut user);
    Ok((samples, qsort, py))
}

/// `\t    55d0c1a2b3c4 compare+0x14 (/tmp/x/unwind_qsort)`: the symbol
/// without its offset, and the DSO.
fn perf_frame(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start();
    let (_address, rest) = rest.split_once(' ')?;
    let open = rest.rfind(" (")?;
    let dso = rest[open + 2..].strip_suffix(')')?;
    let symbol = rest[..open].trim();
    let symbol = match symbol.rsplit_once("+0x") {
        Some((name, off)) if off.chars().all(|c| c.is_ascii_hexdigit()) => name,
        _ => symbol,
    };
    Some((symbol, dso))
}

/// Run the section; returns its markdown.
pub fn run(bin: &Path, scratch: &Path, seconds: u64, reps: usize) -> anyhow::Result<String> {
    // The BPF run time of tailprof's programs is part of its cost.
    set_bpf_stats(true)?;
    let src = root().join("xtask/workloads/unwind_qsort.c");
    let qsort = scratch.join(QSORT_COMM);
    output(Command::new("gcc").args(["-O2", "-fomit-frame-pointer", "-Wall", "-o"]).arg(&qsort).arg(&src))
        .with_context(|| format!("could not compile {}", src.display()))?;
    let setup = Setup {
        bin,
        scratch,
        qsort,
        py: root().join("xtask/workloads/unwind_loop.py"),
        cpus: workload_cpus(),
        seconds,
    };
    let mut runs = Vec::new();
    // Interleaved repetitions, each starting with the next tool, so that
    // drift of the host and the position in a repetition hit every tool alike.
    for rep in 0..reps {
        for i in 0..Tool::ALL.len() {
            let tool = Tool::ALL[(rep + i) % Tool::ALL.len()];
            eprintln!("xtask bench: unwinding, repetition {} of {reps}: {}", rep + 1, tool.label());
            runs.push(measure(&setup, tool)?);
        }
    }
    Ok(report(&setup, reps, &runs))
}

fn of(runs: &[Run], tool: Tool) -> impl Iterator<Item = &Run> {
    runs.iter().filter(move |r| r.tool == tool)
}

fn med(runs: &[Run], tool: Tool, f: impl Fn(&Run) -> f64) -> f64 {
    median(of(runs, tool).map(f).collect())
}

/// A number from the `unwind` object, the first of `names` it has.
fn unwind_field(unwind: &serde_json::Value, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|n| {
        let v = &unwind[*n];
        v.as_f64().or_else(|| v.as_array().map(|a| a.len() as f64))
    })
}

/// Samples whose unwinding reached the outermost frame: a `complete` count
/// in a stop-reason object, whatever its name.
fn unwind_complete(unwind: &serde_json::Value) -> Option<f64> {
    if let Some(v) = unwind_field(unwind, &["complete", "stop_complete", "stops_complete"]) {
        return Some(v);
    }
    ["stops", "stop_reasons", "stop"].iter().find_map(|n| {
        unwind[*n].as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case("complete")).and_then(|(_, v)| v.as_f64())
    })
}

/// The unwinder's statistics of one run.
#[derive(Debug, Clone, Copy)]
struct UnwindFigures {
    samples: Option<f64>,
    frames: Option<f64>,
    ns: Option<f64>,
    cache_bytes: Option<f64>,
    modules: Option<f64>,
    failed: Option<f64>,
    complete: Option<f64>,
}

impl UnwindFigures {
    fn of(u: &serde_json::Value) -> Self {
        UnwindFigures {
            samples: unwind_field(u, &["samples", "samples_unwound", "unwound"]),
            frames: unwind_field(u, &["frames", "frames_unwound"]),
            ns: unwind_field(u, &["unwind_ns", "time_ns", "cpu_ns", "ns"]),
            cache_bytes: unwind_field(u, &["cache_bytes", "cache_memory_bytes", "memory_bytes"]),
            modules: unwind_field(u, &["modules_loaded", "modules"]),
            failed: unwind_field(u, &["modules_failed", "failed_modules"]),
            complete: unwind_complete(u),
        }
    }
    fn per_core_rate(&self) -> Option<f64> {
        Some(self.samples? / (self.ns? / 1e9)).filter(|r| r.is_finite())
    }
    fn us_per_sample(&self) -> Option<f64> {
        Some(self.ns? / 1e3 / self.samples?).filter(|r| r.is_finite())
    }
    fn frames_per_sample(&self) -> Option<f64> {
        Some(self.frames? / self.samples?).filter(|r| r.is_finite())
    }
    fn complete_pct(&self) -> Option<f64> {
        Some(100.0 * self.complete? / self.samples?).filter(|r| r.is_finite())
    }
    fn cache_mib(&self) -> Option<f64> {
        Some(self.cache_bytes? / (1024.0 * 1024.0))
    }
}

fn or_na(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

fn pct(s: &Stacks) -> String {
    if s.samples == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", s.reach_pct())
    }
}

fn frames(s: &Stacks) -> String {
    if s.samples == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}", s.mean_frames())
    }
}

fn report(s: &Setup, reps: usize, runs: &[Run]) -> String {
    let secs = s.seconds;
    let mut md = String::new();
    let _ = writeln!(md, "## Unwinding without frame pointers: {secs} s, `--unwind dwarf` against perf\n");
    let _ = writeln!(
        md,
        "Workload, in every phase: `xtask/workloads/unwind_qsort.c` built with `gcc -O2 -fomit-frame-pointer` \
         (a loop sorting 20,000 integers with libc's `qsort`; the hot function is its comparator, called from \
         libc's merge sort: the stacks run main → sort_round → qsort → msort_with_tmp … → compare) pinned to CPU \
         {}, and `xtask/workloads/unwind_loop.py` (a Python function summing squares in a loop) run by Debian's \
         `/usr/bin/python3` pinned to CPU {}. Neither libc, python3 nor the C program keeps frame pointers. Pinned, \
         each keeps one CPU of this 2-CPU host busy: both tools sample the same two busy stacks at the same rate, \
         and no run depends on where the scheduler put them; the tools themselves run unpinned, wherever the \
         scheduler puts them, as they would in production. The capture is whole-host, so whatever else runs is \
         sampled too (samples of other processes = all samples − the workloads' in the stacks table): on a busy \
         host, perf script's cost grows with their binaries' debug information.\n",
        s.cpus[0], s.cpus[1]
    );
    let _ = writeln!(
        md,
        "Tools, each capturing the whole host for {secs} s while the workload runs: `tailprof record --unwind dwarf \
         --duration {secs}s -o DIR` (default settings otherwise: {FREQ} Hz, scheduler hooks, thread-state snapshots, \
         16 KiB of user stack copied per sample), the same with `--no-off-cpu` (on-CPU sampling only, like perf), and \
         `perf record --call-graph dwarf -F {FREQ} -a -o FILE -- sleep {secs}` (8 KiB of user stack per sample, \
         perf's default) followed by `perf script -i FILE` (default settings; its output written to a file the bench \
         then reads to count the stacks) and, on the same perf.data, `perf script --no-inline -i FILE > /dev/null`. \
         perf script shows inlined functions by default and, when perf is built without libbfd (as Debian's is: \
         `perf version --build-options`), finds them by running addr2line, whose CPU is counted with perf script's \
         (wait4 includes the children it reaped); `--no-inline` is perf's cheapest way to symbolized stacks. Both \
         tools must end with symbolized stacks: tailprof's figure includes unwinding, symbolizing and writing \
         flamegraph.svg, stacks.folded, profile.pb.gz and summary.json; perf's is `perf record` (which also reads \
         perf.data back at the end for build ids) plus `perf script` (unwinding and symbolizing every sample). \
         {reps} interleaved repetition{}, each starting with the next tool; medians reported.\n",
        if reps == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        md,
        "Cost is the user+sys time of the tool's processes (wait4) plus, for tailprof, the run time of its BPF \
         programs (`kernel.bpf_stats_enabled=1`, read from the process's BPF file descriptors). Start-up = CPU of the \
         tool's threads (/proc/PID/task/*/schedstat) when it was ready (programs loaded, or perf's events open); \
         during capture = CPU from then until {:.1} s before the capture's end; after = the rest of its run (writing \
         the output). Both tools copy every sample's user stack in the kernel, in the context of the interrupted \
         task: perf's copy (in the perf_event overflow handler) is charged to the sampled task and counted nowhere \
         here; tailprof's copy is in its BPF program and counted in its BPF time, so the comparison is, if anything, \
         tilted against tailprof. Both show in the workloads' rounds per second (no baseline run without a tool: \
         compare the tools with each other).\n",
        CAPTURE_MARGIN.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| run | tool | start-up ms | during capture ms | after ms | BPF ms | perf script ms | perf script \
         --no-inline ms | total CPU ms | % of one CPU over {secs} s | output MiB | qsort rounds/s | python rounds/s |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let script_ms = |c: Option<Cost>| c.map_or_else(|| "–".to_owned(), |c| format!("{:.1}", ms(c.total())));
    for (i, r) in runs.iter().enumerate() {
        let tp = r.tool != Tool::Perf;
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.1} | {:.2}% | {:.1} | {:.1} | {:.1} |",
            i / Tool::ALL.len() + 1,
            r.tool.label(),
            r.startup_ns as f64 / 1e6,
            r.capture_ns as f64 / 1e6,
            r.after_ms(),
            if tp { format!("{:.1}", r.bpf_ns as f64 / 1e6) } else { "–".into() },
            script_ms(r.script),
            script_ms(r.script_no_inline),
            r.total_ms(),
            100.0 * r.total_ms() / (secs as f64 * 1e3),
            r.output_bytes as f64 / (1024.0 * 1024.0),
            r.qsort_rate,
            r.py_rate,
        );
    }

    let perf = med(runs, Tool::Perf, Run::total_ms);
    let perf_lean = med(runs, Tool::Perf, Run::total_no_inline_ms);
    let _ = writeln!(
        md,
        "\n| median of {reps} | total CPU ms | of which BPF ms | during capture ms per s | perf (default perf \
         script) / this | perf (perf script --no-inline) / this | qsort rounds/s | python rounds/s |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let rows = [
        (Tool::Tailprof, Tool::Tailprof.label(), Run::total_ms as fn(&Run) -> f64),
        (Tool::TailprofOnCpu, Tool::TailprofOnCpu.label(), Run::total_ms),
        (Tool::Perf, "perf record --call-graph dwarf + perf script", Run::total_ms),
        (Tool::Perf, "perf record --call-graph dwarf + perf script --no-inline", Run::total_no_inline_ms),
    ];
    for (tool, label, total) in rows {
        let total = med(runs, tool, total);
        let bpf = med(runs, tool, |r| r.bpf_ns as f64 / 1e6);
        let _ = writeln!(
            md,
            "| {label} | {total:.1} | {} | {:.1} | {:.2}× | {:.2}× | {:.1} | {:.1} |",
            if tool == Tool::Perf { "–".to_owned() } else { format!("{bpf:.1}") },
            med(runs, tool, |r| r.capture_ns as f64 / 1e6 / r.capture_s),
            perf / total,
            perf_lean / total,
            med(runs, tool, |r| r.qsort_rate),
            med(runs, tool, |r| r.py_rate),
        );
    }
    let tp = med(runs, Tool::Tailprof, Run::total_ms);
    let tp_bpf = med(runs, Tool::Tailprof, |r| r.bpf_ns as f64 / 1e6);
    let on_cpu = med(runs, Tool::TailprofOnCpu, Run::total_ms);
    let verdict = |ratio: f64| if ratio >= 5.0 { "met" } else { "not met" };
    let _ = writeln!(
        md,
        "\n**perf / tailprof CPU cost (medians), `--unwind dwarf` with default settings: {:.2}** (tailprof \
         {tp:.0} ms against {perf:.0} ms for `perf record` + `perf script`; goal: at least 5, i.e. tailprof at least \
         5× cheaper: {}). Against perf's cheapest symbolized stacks (`perf script --no-inline`, {perf_lean:.0} ms): \
         {:.2} ({}). With `--no-off-cpu`: {:.2} and {:.2} (against the same two perf figures); the scheduler hooks \
         and snapshots cost {:.0} ms of the {tp:.0} ms. Without tailprof's BPF time (its stack copies, which perf's \
         kernel side also makes, uncounted), default settings: {:.2} and {:.2}.\n",
        perf / tp,
        verdict(perf / tp),
        perf_lean / tp,
        verdict(perf_lean / tp),
        perf / on_cpu,
        perf_lean / on_cpu,
        tp - on_cpu,
        perf / (tp - tp_bpf),
        perf_lean / (tp - tp_bpf),
    );
    report_stacks(&mut md, runs);
    report_unwinder(&mut md, runs);
    md
}

fn report_stacks(md: &mut String, runs: &[Run]) {
    let _ = writeln!(md, "### Stacks produced\n");
    let _ = writeln!(
        md,
        "A cheaper tool with worse stacks must not look better: per run, the samples each tool produced (all \
         processes), and for each workload its samples, the share whose stack reaches the program's entry (a frame \
         named `main`, `Py_BytesMain`, `Py_RunMain` or libc's `__libc_start_call_main`, `__libc_start_main`, \
         `_start`: python3's own `main` is not in its dynamic symbols) and the mean number of user frames per \
         sample, read from tailprof's stacks.folded and from the default perf script's output (which shows \
         inlined functions as frames of their own). Frame counts also depend on how each tool presents inlined \
         functions; the share reaching main does not.\n"
    );
    let _ = writeln!(
        md,
        "| run | tool | samples (lost) | qsort samples | reach main | user frames | python samples | reach main \
         | user frames |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in runs.iter().enumerate() {
        let lost = r.lost.map_or_else(String::new, |l| format!(" ({l})"));
        let _ = writeln!(
            md,
            "| {} | {} | {}{lost} | {} | {} | {} | {} | {} | {} |",
            i / Tool::ALL.len() + 1,
            r.tool.label(),
            r.samples,
            r.qsort.samples,
            pct(&r.qsort),
            frames(&r.qsort),
            r.py.samples,
            pct(&r.py),
            frames(&r.py),
        );
    }
    let _ = writeln!(md, "\n| median of the runs | qsort reach main | python reach main |");
    let _ = writeln!(md, "|---|---:|---:|");
    for tool in Tool::ALL {
        let share = |f: fn(&Run) -> &Stacks| {
            let v: Vec<f64> = of(runs, tool).map(f).filter(|s| s.samples > 0).map(Stacks::reach_pct).collect();
            if v.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.1}%", median(v))
            }
        };
        let _ = writeln!(md, "| {} | {} | {} |", tool.label(), share(|r| &r.qsort), share(|r| &r.py));
    }
    let _ = writeln!(md);
}

fn report_unwinder(md: &mut String, runs: &[Run]) {
    let _ = writeln!(md, "### tailprof's unwinder\n");
    let _ = writeln!(
        md,
        "From summary.json's `unwind` object, per tailprof run (all processes on the host, on-CPU samples and, with \
         default settings, the blocked threads' stacks the snapshots copied): samples unwound, time spent \
         unwinding, samples per second of one core (samples / unwinding time: the unwinder runs on one thread), \
         frames per sample, share of samples unwound to the outermost frame, memory held by the module cache \
         (unwind tables and ELF data), modules loaded and failed. n/a: the field is not in summary.json.\n"
    );
    let _ = writeln!(
        md,
        "| run | tool | samples unwound | unwinding ms | µs per sample | samples/s per core | frames per sample \
         | complete | cache MiB | modules loaded | modules failed |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut all = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if r.tool == Tool::Perf {
            continue;
        }
        let u = UnwindFigures::of(&r.unwind);
        all.push(u);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            i / Tool::ALL.len() + 1,
            r.tool.label(),
            or_na(u.samples, 0),
            or_na(u.ns.map(|n| n / 1e6), 1),
            or_na(u.us_per_sample(), 1),
            or_na(u.per_core_rate(), 0),
            or_na(u.frames_per_sample(), 1),
            u.complete_pct().map_or_else(|| "n/a".to_owned(), |p| format!("{p:.1}%")),
            or_na(u.cache_mib(), 1),
            or_na(u.modules, 0),
            or_na(u.failed, 0),
        );
    }
    let med_of = |f: fn(&UnwindFigures) -> Option<f64>| {
        let v: Vec<f64> = all.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    };
    let _ = writeln!(
        md,
        "\n**Unwinder: {} samples per second per core, {} MiB of cache** (medians over the tailprof runs).",
        or_na(med_of(UnwindFigures::per_core_rate), 0),
        or_na(med_of(UnwindFigures::cache_mib), 1),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_frames_lose_offsets_and_keep_dsos() {
        assert_eq!(
            perf_frame("\t    55d0c1a2b3c4 compare+0x14 (/tmp/x/unwind_qsort)"),
            Some(("compare", "/tmp/x/unwind_qsort"))
        );
        assert_eq!(perf_frame("\t ffffffff81000000 [unknown] ([unknown])"), Some(("[unknown]", "[unknown]")));
        assert_eq!(
            perf_frame("\t    7f00 std::vector<int, std::allocator<int> >::push_back+0x1 (/a b/lib.so)"),
            Some(("std::vector<int, std::allocator<int> >::push_back", "/a b/lib.so"))
        );
    }

    #[test]
    fn unwind_fields_missing_are_none() {
        let u: serde_json::Value = serde_json::json!({
            "samples": 100, "unwind_ns": 2_000_000, "modules_failed": [{"path": "x", "reason": "y"}],
            "stops": {"Complete": 90, "StackCopyEnd": 10}
        });
        let f = UnwindFigures::of(&u);
        assert_eq!(f.per_core_rate(), Some(50_000.0));
        assert_eq!(f.failed, Some(1.0));
        assert_eq!(f.complete_pct(), Some(90.0));
        assert_eq!(f.cache_mib(), None);
        let none = UnwindFigures::of(&serde_json::Value::Null);
        assert_eq!(none.per_core_rate(), None);
    }
}
