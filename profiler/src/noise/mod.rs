//! `tailprof noise`: what stole time from each CPU and from victim
//! threads. The deep tier measures it osnoise-style, from the tracepoint
//! hooks' per-CPU maps ([`NoiseRaw`], [`report`]); the continuous tier
//! hangs nothing on those paths and reports procfs times and counts and
//! estimates from on-CPU samples ([`continuous`], [`sampled`]).

pub mod collect;
pub mod continuous;
pub mod cpu_list;
pub mod flame;
pub mod measurement;
pub mod output;
pub mod proc_counts;
pub mod raw;
pub mod report;
pub mod run;
pub mod sampled;
pub mod table;

pub use measurement::Measurement;
pub use raw::{NoiseDropped, NoiseRaw};
