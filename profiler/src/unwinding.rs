//! Turning stack-copy samples into complete user stacks (`--unwind
//! dwarf|auto`): each sample's copy is unwound with the modules' CFI by
//! [`Unwinder`] and the result replaces the frame-pointer walk the kernel
//! also sent. With `auto`, processes whose code all keeps frame pointers
//! are told to the kernel, which then stops copying their stacks.

use aya::maps::{HashMap, MapData};
use profiler_common::Record as _;
use profiler_common::{SampleEvent, StackSample, UserRegs, MAX_STACK_DEPTH, STACK_COPY_FAILED, STACK_SAMPLE_HEADER};
use rustc_hash::FxHashSet;

use crate::unwind::{StopReason, Unwinder};

pub use crate::model::stats::UnwindUse;

pub use crate::model::stats::UnwindReport;

/// A stack-copy record split into its sample, registers and copied bytes.
pub struct StackRecord<'a> {
    pub sample: SampleEvent,
    pub regs: UserRegs,
    pub flags: u32,
    pub stack: &'a [u8],
}

/// Decode an `EVENT_SAMPLE_STACK` record; `None` if it is malformed.
pub fn decode_stack_record(bytes: &[u8]) -> Option<StackRecord<'_>> {
    let head = bytes.get(..STACK_SAMPLE_HEADER)?;
    let sample = SampleEvent::decode(head)?;
    let regs_at = std::mem::offset_of!(StackSample, regs);
    let regs = UserRegs::decode(head.get(regs_at..)?)?;
    let word = |at: usize| Some(u32::from_ne_bytes(head.get(at..at + 4)?.try_into().ok()?));
    let len = word(std::mem::offset_of!(StackSample, stack_len))? as usize;
    let flags = word(std::mem::offset_of!(StackSample, flags))?;
    let stack = bytes.get(STACK_SAMPLE_HEADER..STACK_SAMPLE_HEADER.checked_add(len)?)?;
    Some(StackRecord { sample, regs, flags, stack })
}

/// Unwinds stack copies as they arrive; owns the unwinder's caches.
pub struct SampleUnwinder {
    pub unwinder: Unwinder,
    /// `auto` only: the kernel's map of processes walked with frame pointers.
    fp_pids: Option<HashMap<MapData, u32, u8>>,
    /// Processes `auto` has judged since their last exec.
    judged: FxHashSet<u32>,
    /// Of those, the ones walked with frame pointers.
    fp_ok: FxHashSet<u32>,
    pub usage: UnwindUse,
    out: Vec<u64>,
    /// Processes forgotten between windows.
    pub evicted: u64,
}

impl SampleUnwinder {
    /// `fp_pids`: given for `--unwind auto`.
    pub fn new(fp_pids: Option<HashMap<MapData, u32, u8>>) -> Self {
        Self {
            unwinder: Unwinder::new(),
            fp_pids,
            judged: FxHashSet::default(),
            fp_ok: FxHashSet::default(),
            usage: UnwindUse::default(),
            out: vec![0; MAX_STACK_DEPTH],
            evicted: 0,
        }
    }

    /// A sample without a copy.
    pub fn count_frame_pointer_sample(&mut self) {
        self.usage.frame_pointers += 1;
    }

    /// Replace `rec.sample`'s user stack with the one unwound from its copy
    /// and return the sample.
    pub fn apply(&mut self, rec: StackRecord<'_>) -> SampleEvent {
        let mut event = rec.sample;
        if rec.regs.sp == 0 {
            // A kernel thread: no user stack at all.
            self.usage.frame_pointers += 1;
            return event;
        }
        self.usage.copied += 1;
        self.judge(event.pid);
        if rec.flags & STACK_COPY_FAILED != 0 || rec.stack.is_empty() {
            self.usage.fell_back += 1;
            return event;
        }
        let unwound = self.unwinder.unwind(event.pid, &rec.regs, rec.stack, &mut self.out);
        let n = unwound.frames.min(self.out.len());
        if n <= 1 && event.ustack_len > 1 {
            self.usage.fell_back += 1;
            return event;
        }
        let mut frames: Vec<u64> = self.out[..n].to_vec();
        match unwound.stop {
            StopReason::Complete => self.usage.complete += 1,
            StopReason::StackCopyEnd if splice(&mut frames, event.user_frames()) => self.usage.spliced += 1,
            _ => self.usage.partial += 1,
        }
        let len = frames.len().min(MAX_STACK_DEPTH);
        event.ustack[..len].copy_from_slice(&frames[..len]);
        event.ustack_len = len as u32;
        event
    }

    /// `auto`: when a process is first sampled, tell the kernel whether
    /// frame pointers walk its stacks completely.
    fn judge(&mut self, pid: u32) {
        let Some(map) = self.fp_pids.as_mut() else { return };
        if !self.judged.insert(pid) {
            return;
        }
        if self.unwinder.frame_pointers_suffice(pid) == Some(true) {
            match map.insert(pid, 1, 0) {
                Ok(()) => {
                    self.usage.fp_pids += 1;
                    self.fp_ok.insert(pid);
                }
                Err(err) => tracing::debug!(pid, %err, "could not mark a process for frame-pointer walks"),
            }
        }
    }

    /// `auto` walks this process with frame pointers only.
    pub fn walks_with_frame_pointers(&self, pid: u32) -> bool {
        self.fp_ok.contains(&pid)
    }

    /// Between windows: forget processes not in `live` (tgids).
    pub fn evict(&mut self, live: &FxHashSet<u32>) -> u64 {
        let gone: Vec<u32> = self.judged.iter().filter(|pid| !live.contains(pid)).copied().collect();
        for pid in &gone {
            self.forget(*pid);
        }
        self.fp_ok.retain(|pid| live.contains(pid));
        let n = self.unwinder.evict(live) + gone.len() as u64;
        self.evicted += n;
        n
    }

    /// A process exec'd or a pid was reused: its code changed.
    pub fn forget(&mut self, pid: u32) {
        self.unwinder.forget(pid);
        self.fp_ok.remove(&pid);
        if self.judged.remove(&pid) {
            if let Some(map) = self.fp_pids.as_mut() {
                let _ = map.remove(&pid);
            }
        }
    }
}

/// The copy ended before the outermost frame: if the kernel's
/// frame-pointer walk passed through the last frame the copy reached,
/// continue with the frames the walk found beyond it. Returns whether it did.
fn splice(frames: &mut Vec<u64>, fp: &[u64]) -> bool {
    let Some(&last) = frames.last() else { return false };
    if frames.len() < 2 {
        return false;
    }
    // Under recursion the same return address recurs at several depths:
    // splice only where the match is unique.
    let mut matches = fp.iter().enumerate().skip(1).filter(|&(_, &a)| a == last).map(|(i, _)| i);
    match (matches.next(), matches.next()) {
        (Some(i), None) if i + 1 < fp.len() => {
            frames.extend_from_slice(&fp[i + 1..]);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_continues_past_the_shared_frame() {
        let mut frames = vec![0x10, 0x20, 0x30];
        assert!(splice(&mut frames, &[0x11, 0x99, 0x30, 0x40, 0x50]));
        assert_eq!(frames, vec![0x10, 0x20, 0x30, 0x40, 0x50]);
        let mut frames = vec![0x10, 0x20, 0x30];
        assert!(!splice(&mut frames, &[0x11, 0x99]));
        assert_eq!(frames.len(), 3);
        // Recursion: the address is at two depths, which one is unknown.
        assert!(!splice(&mut frames, &[0x11, 0x30, 0x40, 0x30, 0x50]));
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn records_are_checked_against_their_length() {
        let mut bytes = vec![0u8; STACK_SAMPLE_HEADER + 64];
        let at = std::mem::offset_of!(StackSample, stack_len);
        bytes[at..at + 4].copy_from_slice(&64u32.to_ne_bytes());
        assert_eq!(decode_stack_record(&bytes).map(|r| r.stack.len()), Some(64));
        bytes[at..at + 4].copy_from_slice(&65u32.to_ne_bytes());
        assert!(decode_stack_record(&bytes).is_none());
        assert!(decode_stack_record(&bytes[..100]).is_none());
    }
}
