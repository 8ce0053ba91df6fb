//! tailprof: an always-on latency profiler for Linux.
//!
//! The library holds everything the `tailprof` binary does; `main.rs` only
//! parses the command line and turns errors into one sentence.

pub mod agent;
pub mod api;
pub mod atomic_file;
pub mod blocked_stacks;
pub mod bpf;
pub mod capture;
pub mod cli;
pub mod config;
pub mod continuous;
pub mod enrich;
pub mod error;
pub mod export;
pub mod governor;
pub mod group;
pub mod kernel_btf;
pub mod latency;
pub mod model;
pub mod noise;
pub mod off_cpu;
pub mod output;
pub mod pipeline;
pub mod pprof_proto;
pub mod preflight;
pub mod profile;
pub mod query;
pub mod record;
pub mod report;
pub mod samples_file;
pub mod sched_times;
pub mod serve;
pub mod snapshot_taker;
pub mod stacks;
pub mod state_sampler;
pub mod symbolize;
pub mod sys;
pub mod tier;
pub mod unwind;
pub mod unwinding;
pub mod web;

pub use error::{Error, Result};
