//! Types shared by the eBPF programs and user space. One definition each,
//! `#[repr(C)]`, `no_std`.
#![no_std]

pub mod histogram;
pub mod noise;
pub mod process;
pub mod sample;
pub mod sched;
pub mod snapshot;
pub mod unwind;

pub use histogram::*;
pub use noise::*;
pub use process::*;
pub use sample::*;
pub use sched::*;
pub use snapshot::*;
pub use unwind::*;
