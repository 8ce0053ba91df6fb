//! `unwind-microbench [SECONDS]`: the cost of tailprof's user-space stack
//! unwinder (`tailprof::unwind`) on real stacks. Prints one JSON object per
//! workload.
//!
//! For each workload — Debian's `python3` running a pure-Python busy loop,
//! and a C program built with `-O2 -fomit-frame-pointer` whose comparator
//! spins under glibc's `qsort` (skipped without `gcc`) — it takes 200
//! samples of the live process (ptrace: registers and 16 KiB of stack, as
//! the sampling program copies them), then:
//!
//! - `first_unwind_us`: the first unwind with an empty cache (maps read,
//!   every module's unwind tables read);
//! - `new_process_us`: the first unwind of a process whose modules are
//!   cached (only its maps read);
//! - `samples_per_sec`: unwinds per second on one core, cycling through
//!   the 200 samples for SECONDS (default 3);
//! - `cache_bytes` (the unwinder's own count) and `heap_bytes` (every byte
//!   the unwinder allocated and still holds, by a counting allocator).
//!
//! Needs root (ptrace). Built only with `--features unwind-microbench`.

use std::{
    hint::black_box,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use profiler_common::DEFAULT_USER_STACK_BYTES;
use tailprof::unwind::{ptrace_sample::sample_thread, ptrace_sample::Sample, Unwinder};

#[path = "../counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::LIVE;

const SAMPLES: usize = 200;

const PYTHON: &str = r#"
def work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
def rec(d):
    if d == 0:
        while True:
            work(1000)
    return rec(d - 1)
print("ready", flush=True)
rec(8)
"#;

const QSORT: &str = r#"
#include <stdio.h>
#include <stdlib.h>
static volatile unsigned long sink;
static int cmp(const void *a, const void *b) {
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    for (int i = 0; i < 200; i++) sink += i;
    return x < y ? -1 : x > y;
}
int main(void) {
    enum { N = 100000 };
    static unsigned long v[N];
    puts("ready");
    fflush(stdout);
    for (;;) {
        for (int i = 0; i < N; i++) v[i] = (unsigned long)rand();
        qsort(v, N, sizeof v[0], cmp);
    }
}
"#;

/// A workload process, killed when dropped.
struct Workload(Child);

impl Workload {
    fn start(mut cmd: Command) -> Option<Self> {
        let mut child = cmd.stdout(Stdio::piped()).spawn().ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take()?).read_line(&mut line).ok()?;
        Some(Workload(child))
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn qsort_program(dir: &std::path::Path) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let src = dir.join("qsort.c");
    let exe = dir.join("qsort");
    std::fs::write(&src, QSORT).ok()?;
    let ok =
        Command::new("gcc").args(["-O2", "-fomit-frame-pointer", "-o"]).arg(&exe).arg(&src).status().ok()?.success();
    ok.then_some(exe)
}

fn bench(name: &str, workload: &Workload, seconds: f64) -> serde_json::Value {
    let pid = workload.0.id();
    std::thread::sleep(Duration::from_millis(200));
    let mut samples: Vec<Sample> = Vec::with_capacity(SAMPLES);
    while samples.len() < SAMPLES {
        match sample_thread(pid, pid, DEFAULT_USER_STACK_BYTES as usize) {
            Ok(s) => samples.push(s),
            Err(e) => return serde_json::json!({ "workload": name, "error": e.to_string() }),
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    let heap_before = LIVE.load(Ordering::Relaxed);
    let mut unwinder = Unwinder::new();
    let mut out = [0u64; 128];
    let s0 = &samples[0];
    let t = Instant::now();
    unwinder.unwind(pid, &s0.regs, &s0.stack, &mut out);
    let first_unwind_us = t.elapsed().as_secs_f64() * 1e6;
    unwinder.forget(pid);
    let t = Instant::now();
    unwinder.unwind(pid, &s0.regs, &s0.stack, &mut out);
    let new_process_us = t.elapsed().as_secs_f64() * 1e6;

    let warm = unwinder.stats();
    let begin = Instant::now();
    let mut n = 0u64;
    while begin.elapsed().as_secs_f64() < seconds {
        for s in &samples {
            black_box(unwinder.unwind(pid, black_box(&s.regs), &s.stack, &mut out));
        }
        n += SAMPLES as u64;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    let stats = unwinder.stats();
    let heap_bytes = LIVE.load(Ordering::Relaxed) - heap_before;
    let timed = stats.samples - warm.samples;
    serde_json::json!({
        "workload": name,
        "samples_per_sec": n as f64 / elapsed,
        "ns_per_sample": elapsed * 1e9 / n as f64,
        "frames_per_sample": (stats.frames - warm.frames) as f64 / timed as f64,
        "first_unwind_us": first_unwind_us,
        "new_process_us": new_process_us,
        "stops": stats.stops,
        "modules_loaded": stats.modules_loaded,
        "modules_failed": stats.modules_failed,
        "cache_bytes": stats.cache_bytes,
        "heap_bytes": heap_bytes,
    })
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let mut python = Command::new("/usr/bin/python3");
    python.args(["-c", PYTHON]);
    match Workload::start(python) {
        Some(w) => println!("{}", bench("python3", &w, seconds)),
        None => eprintln!("unwind-microbench: could not start /usr/bin/python3"),
    }
    let dir = std::env::temp_dir().join(format!("unwind-microbench-{}", std::process::id()));
    match qsort_program(&dir).and_then(|exe| Workload::start(Command::new(exe))) {
        Some(w) => println!("{}", bench("qsort", &w, seconds)),
        None => {
            eprintln!(
                "unwind-microbench: could not build or start the qsort workload (gcc missing? run cargo xtask setup)"
            );
            std::process::exit(1);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
