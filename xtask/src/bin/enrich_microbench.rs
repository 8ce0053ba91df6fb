//! `enrich-microbench [MAX_PROCESSES]`: the user-space cost of enrichment,
//! measured on tailprof's own code (the `tailprof` library), for the
//! `enrichment` section of `cargo xtask bench`. Prints one JSON object.
//!
//! - Fills a `ProcessTable` with the live processes of the host (at most
//!   MAX_PROCESSES, lowest pids first), as tailprof does when it first sees
//!   them: one procfs read each. Reports the reads' time and the heap the
//!   table holds afterwards (a counting global allocator).
//! - Per sample, tailprof looks the sample's pid up in that table
//!   (`ProcessTable::current`) before aggregating it
//!   (`StackAggregator::add`): both are timed over millions of calls, the
//!   lookups cycling through the known pids in a pseudo-random order, the
//!   aggregation on one repeated stack.
//!
//! Built only with `--features enrich-microbench` (the `tailprof` library
//! needs the eBPF toolchain that `cargo xtask setup` installs, so plain
//! `cargo xtask` must not depend on it).

use std::{hint::black_box, sync::atomic::Ordering, time::Instant};

use profiler_common::{SampleEvent, EVENT_SAMPLE, MAX_STACK_DEPTH, NO_SYSCALL, TASK_COMM_LEN};
use tailprof::{enrich::processes::ProcessTable, stacks::StackAggregator};

#[path = "../counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::LIVE;

/// Lookups timed per round, and aggregations.
const LOOKUPS: usize = 4_000_000;
const ADDS: usize = 1_000_000;
const ROUNDS: usize = 5;
/// Depth of the repeated stack: kernel frames, user frames.
const KERNEL_FRAMES: usize = 12;
const USER_FRAMES: usize = 24;

fn live_pids(max: usize) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    pids.truncate(max);
    pids
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A sample of this process with a fixed stack of made-up addresses.
fn sample() -> Box<SampleEvent> {
    let mut comm = [0u8; TASK_COMM_LEN];
    comm[..5].copy_from_slice(b"bench");
    let mut ev = Box::new(SampleEvent {
        kind: EVENT_SAMPLE,
        cpu: 0,
        ts_ns: 0,
        pid: std::process::id(),
        tid: std::process::id(),
        kstack_len: KERNEL_FRAMES as u32,
        ustack_len: USER_FRAMES as u32,
        syscall: NO_SYSCALL,
        _pad: 0,
        comm,
        kstack: [0; MAX_STACK_DEPTH],
        ustack: [0; MAX_STACK_DEPTH],
    });
    for (i, a) in ev.kstack.iter_mut().take(KERNEL_FRAMES).enumerate() {
        *a = 0xffff_ffff_8100_0000 + 0x1234 * i as u64;
    }
    for (i, a) in ev.ustack.iter_mut().take(USER_FRAMES).enumerate() {
        *a = 0x5555_5555_0000 + 0x321 * i as u64;
    }
    ev
}

fn main() {
    let max = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(usize::MAX);
    let pids = live_pids(max);
    if pids.is_empty() {
        eprintln!("enrich-microbench: no process found in /proc");
        std::process::exit(1);
    }

    // The table as tailprof fills it: one procfs read per process first seen.
    let before = LIVE.load(Ordering::Relaxed);
    let fill = Instant::now();
    let mut table = ProcessTable::new();
    for &pid in &pids {
        table.current(pid);
    }
    let fill_ns = fill.elapsed().as_nanos() as u64;
    let heap_bytes = LIVE.load(Ordering::Relaxed) - before;
    let stats = table.stats;

    // Lookups of known pids in a pseudo-random order (xorshift).
    let mut order = Vec::with_capacity(LOOKUPS);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..LOOKUPS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.push(pids[(x % pids.len() as u64) as usize]);
    }
    let mut lookup_ns = Vec::new();
    for _ in 0..ROUNDS {
        let begin = Instant::now();
        let mut sum = 0u64;
        for &pid in &order {
            sum = sum.wrapping_add(u64::from(table.current(black_box(pid))));
        }
        black_box(sum);
        lookup_ns.push(begin.elapsed().as_nanos() as f64 / LOOKUPS as f64);
    }
    if table.stats != stats {
        eprintln!("enrich-microbench: a lookup of a known pid read procfs");
        std::process::exit(1);
    }

    // Aggregation of one repeated stack, as the samples of a hot loop are.
    let event = sample();
    let process = table.current(event.pid);
    let mut agg = StackAggregator::new();
    agg.add(&event, process);
    let mut add_ns = Vec::new();
    for _ in 0..ROUNDS {
        let begin = Instant::now();
        for _ in 0..ADDS {
            agg.add(black_box(&event), black_box(process));
        }
        add_ns.push(begin.elapsed().as_nanos() as f64 / ADDS as f64);
    }
    black_box(agg.samples());

    let out = serde_json::json!({
        "processes": pids.len(),
        "procfs_reads": stats.procfs_reads,
        "procfs_misses": stats.procfs_misses,
        "procfs_ns": stats.procfs_ns,
        "fill_ns": fill_ns,
        "heap_bytes": heap_bytes,
        "lookup_ns": median(lookup_ns),
        "add_ns": median(add_ns),
        "kernel_frames": KERNEL_FRAMES,
        "user_frames": USER_FRAMES,
        "info_bytes": std::mem::size_of::<tailprof::enrich::process::ProcessInfo>(),
    });
    println!("{out}");
}
