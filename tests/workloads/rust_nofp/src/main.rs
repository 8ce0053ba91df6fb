//! One thread spinning in `tp_rust_hot_spin`, reached from `main` through
//! three functions that are never inlined:
//!   main -> tp_rust_outer -> tp_rust_middle -> tp_rust_inner -> tp_rust_hot_spin
//! Built in release mode without frame pointers, like most Rust binaries users
//! profile: only CFI (.eh_frame) unwinding finds `main` from the hot loop.
//! Announces `pid N`, `tid spin N` and `ready` on stdout, then spins for
//! SECONDS and exits (nothing is left behind if the test dies).
//! Usage: tp-rust-nofp SECONDS

use std::{
    hint::black_box,
    io::Write,
    time::{Duration, Instant},
};

/// Integer mixing the optimizer cannot fold away; checks the clock every
/// million rounds, so almost every sample lands in this function itself.
#[inline(never)]
fn tp_rust_hot_spin(until: Instant) -> u64 {
    let mut x = black_box(0x9e37_79b9_7f4a_7c15u64);
    loop {
        for _ in 0..1_000_000 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
            x ^= x >> 29;
        }
        if Instant::now() >= until {
            return x;
        }
    }
}

#[inline(never)]
fn tp_rust_inner(until: Instant) -> u64 {
    black_box(tp_rust_hot_spin(black_box(until))).wrapping_add(1)
}

#[inline(never)]
fn tp_rust_middle(until: Instant) -> u64 {
    black_box(tp_rust_inner(black_box(until))).wrapping_add(2)
}

#[inline(never)]
fn tp_rust_outer(until: Instant) -> u64 {
    black_box(tp_rust_middle(black_box(until))).wrapping_add(3)
}

fn main() {
    let seconds: u64 = match std::env::args().nth(1).map(|s| s.parse()) {
        Some(Ok(s)) => s,
        _ => {
            eprintln!("usage: tp-rust-nofp SECONDS");
            std::process::exit(2);
        }
    };
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "pid {}\ntid spin {}\nready\n", std::process::id(), std::process::id());
    let _ = out.flush();
    drop(out);
    let x = tp_rust_outer(until);
    println!("{x}");
}
