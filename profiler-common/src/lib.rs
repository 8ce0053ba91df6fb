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

/// A plain `#[repr(C)]` record that the programs write into a ring buffer
/// or the snapshot iterator into its seq file, decoded by user space right
/// next to where it is defined.
///
/// # Safety
/// Only for `#[repr(C)]` types made of integers (and arrays of them), for
/// which every bit pattern is a valid value.
pub unsafe trait Record: Copy {
    /// The record at the start of `bytes`; `None` if they are too short to
    /// hold one. Any alignment is fine.
    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: the length is checked; the trait's contract makes every
        // bit pattern valid; the read tolerates any alignment.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}
