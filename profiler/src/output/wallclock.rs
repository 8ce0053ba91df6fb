//! Wall-clock and off-CPU folded stacks, in nanoseconds.
//!
//! `wallclock.folded`: `comm;[state];frames… NS` for every state: running
//! time from on-CPU samples (each stands for one sampling period), off-CPU
//! time exact from the scheduler hooks. `offcpu.folded`: exact off-CPU
//! time only, with the waker as the last frame: `…;[woken by COMM]`.

use crate::{
    group::{Attrs, Dimension},
    profile::{Profile, STATE_NAMES},
};

use super::folded::{clean, frame_label, stack_root, Folded};

fn state_frame(state: u32) -> String {
    let name = STATE_NAMES.get(state as usize).copied().unwrap_or("other");
    format!("[{name}]")
}

/// Root frames, then the state frame unless it is one of them.
fn root_and_state(profile: &Profile, root: String, state: u32) -> String {
    if profile.group_by.has(Dimension::State) {
        root
    } else {
        format!("{root};{}", state_frame(state))
    }
}

/// Off-CPU lines, optionally with the waker frame.
fn fold_off_cpu(profile: &Profile, with_waker: bool, out: &mut Folded) {
    for s in &profile.off_cpu {
        let root = profile.group_by.frames(&Attrs::of_off_cpu(profile, s));
        let mut line = root_and_state(profile, root, s.state);
        if s.stack_lost {
            line.push_str(";[stack lost]");
        }
        for frame in s.frames.iter() {
            line.push(';');
            line.push_str(&frame_label(frame, profile));
        }
        if with_waker && s.waker_tid != profiler_common::NO_WAKER {
            line.push_str(";[woken by ");
            line.push_str(&clean(&s.waker_comm));
            line.push(']');
        }
        *out.entry(line).or_default() += s.ns;
    }
}

pub fn fold_wallclock(profile: &Profile) -> Folded {
    let mut out = Folded::new();
    let period = profile.period_ns();
    for stack in &profile.stacks {
        let mut line = root_and_state(profile, stack_root(profile, stack), profiler_common::STATE_RUNNING);
        for frame in stack.frames.iter() {
            line.push(';');
            line.push_str(&frame_label(frame, profile));
        }
        *out.entry(line).or_default() += stack.count * period;
    }
    fold_off_cpu(profile, false, &mut out);
    out
}

pub fn fold_offcpu(profile: &Profile) -> Folded {
    let mut out = Folded::new();
    fold_off_cpu(profile, true, &mut out);
    out
}
