//! User-stack copies for unwinding code built without frame pointers
//! (`--unwind dwarf|auto`): the sampling program sends the user registers
//! and a copy of the top of the user stack; user space unwinds it with the
//! modules' `.eh_frame` / `.debug_frame`.

use crate::SampleEvent;

/// A record of the [`EVENTS_MAP`](crate::EVENTS_MAP) ring: a [`StackSample`]
/// cut after `stack_len` bytes of its stack.
pub const EVENT_SAMPLE_STACK: u32 = 4;

/// Unwinding methods, the value of [`GLOBAL_UNWIND_MODE`].
/// Frame pointers only: the kernel walks the stack, nothing is copied.
pub const UNWIND_FP: u8 = 0;
/// Copy the user stack of every sample.
pub const UNWIND_DWARF: u8 = 1;
/// Copy the user stack except for processes in [`FP_PIDS_MAP`], whose
/// code all keeps frame pointers.
pub const UNWIND_AUTO: u8 = 2;

/// Global: one of `UNWIND_*`.
pub const GLOBAL_UNWIND_MODE: &str = "UNWIND_MODE";
/// Global: bytes of user stack to copy per sample (multiple of 8, at most
/// [`MAX_USER_STACK_BYTES`]).
pub const GLOBAL_USER_STACK_BYTES: &str = "USER_STACK_BYTES";
/// Globals: byte offsets in `struct pt_regs` of the instruction pointer,
/// the stack pointer, the frame pointer and (aarch64) the link register.
pub const GLOBAL_PT_REGS_IP_OFFSET: &str = "PT_REGS_IP_OFFSET";
pub const GLOBAL_PT_REGS_SP_OFFSET: &str = "PT_REGS_SP_OFFSET";
pub const GLOBAL_PT_REGS_FP_OFFSET: &str = "PT_REGS_FP_OFFSET";
pub const GLOBAL_PT_REGS_LR_OFFSET: &str = "PT_REGS_LR_OFFSET";

/// Hash map of process ids whose stacks frame pointers walk completely
/// (`--unwind auto`): their samples carry no stack copy.
pub const FP_PIDS_MAP: &str = "FP_PIDS";
/// Bound of [`FP_PIDS_MAP`].
pub const MAX_FP_PIDS: u32 = 8192;
/// Array map, one slot per CPU, where a [`StackSample`] is assembled.
pub const STACK_SCRATCH_MAP: &str = "STACK_SCRATCH";

/// Largest user stack copy (as perf: just under 64 KiB).
pub const MAX_USER_STACK_BYTES: usize = 65528;
/// Default `--user-stack-size`.
pub const DEFAULT_USER_STACK_BYTES: u32 = 16384;

/// User-mode registers an unwinder starts from. x86_64: `fp` is rbp, `lr`
/// is 0. aarch64: `fp` is x29, `lr` is x30.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub ip: u64,
    pub sp: u64,
    pub fp: u64,
    pub lr: u64,
}

// SAFETY: #[repr(C)] integers and arrays of them.
unsafe impl crate::Record for UserRegs {}

/// The copy stopped before the requested size because the stack mapping
/// ends there (normal for shallow stacks).
pub const STACK_COPY_SHORT: u32 = 1;
/// No byte of the stack could be read.
pub const STACK_COPY_FAILED: u32 = 2;

/// An on-CPU sample with the user registers and the top of the user stack.
/// Only the first [`STACK_SAMPLE_HEADER`]` + stack_len` bytes are sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackSample {
    /// `sample.kind` is [`EVENT_SAMPLE_STACK`]; its `ustack` still holds
    /// the frame-pointer walk.
    pub sample: SampleEvent,
    pub regs: UserRegs,
    /// Bytes of `stack` that were copied, from `regs.sp` upwards.
    pub stack_len: u32,
    /// `STACK_COPY_*`.
    pub flags: u32,
    pub stack: [u8; MAX_USER_STACK_BYTES],
}

/// Bytes of a [`StackSample`] before its stack copy.
pub const STACK_SAMPLE_HEADER: usize = core::mem::offset_of!(StackSample, stack);
