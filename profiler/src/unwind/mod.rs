//! PLACEHOLDER until the unwinder lands (branch `unwind`): unwinds nothing.
use profiler_common::UserRegs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Complete,
    StackCopyEnd,
    NoUnwindInfo,
    BadFrame,
    DepthLimit,
    NotMapped,
}
pub struct Unwound {
    pub frames: usize,
    pub stop: StopReason,
}
#[derive(Debug, Default, serde::Serialize)]
pub struct UnwindStats {}
#[derive(Default)]
pub struct Unwinder;
impl Unwinder {
    pub fn new() -> Self {
        Self
    }
    pub fn unwind(&mut self, _pid: u32, regs: &UserRegs, _stack: &[u8], out: &mut [u64]) -> Unwound {
        if let Some(o) = out.first_mut() {
            *o = regs.ip;
        }
        Unwound { frames: 1, stop: StopReason::NoUnwindInfo }
    }
    pub fn forget(&mut self, _pid: u32) {}
    pub fn frame_pointers_suffice(&mut self, _pid: u32) -> Option<bool> {
        None
    }
    pub fn stats(&self) -> UnwindStats {
        UnwindStats {}
    }
}
