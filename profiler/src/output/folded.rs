//! Folded stacks (`comm;outermost;…;innermost COUNT`), the input format of
//! FlameGraph and inferno. Kernel frames carry the `_[k]` suffix, inlined
//! functions `_[i]`, JIT frames `_[j]`.

use std::{collections::BTreeMap, io::Write};

use crate::{
    group::Attrs,
    profile::{Frame, FrameKind, Profile, Stack},
};

/// Folded lines, merged and sorted: stack text to sample count.
pub type Folded = BTreeMap<String, u64>;

pub use crate::model::text::clean;

/// The name of a frame without annotations: its function, or for a user
/// frame no symbol covers, `module+0xOFFSET` (file name, hex file offset).
pub fn frame_name(frame: &Frame, profile: &Profile) -> String {
    let module = frame.module.and_then(|m| profile.modules.get(m));
    match (frame.is_unknown(), module) {
        (true, Some(module)) => format!("{}+{:#x}", module.short_name(), frame.address),
        _ => frame.name.to_string(),
    }
}

/// How a frame is written in folded stacks, flamegraphs and the text
/// report: its name, ` (file:line)` with `--lines` when DWARF gave one, and
/// the suffix FlameGraph and inferno colour by: `_[k]` kernel, `_[j]` JIT
/// (perf map), `_[i]` inlined.
pub fn frame_label(frame: &Frame, profile: &Profile) -> String {
    let mut label = frame_name(frame, profile);
    if profile.lines {
        if let Some(src) = &frame.line {
            match src.line {
                0 => label.push_str(&format!(" ({})", src.file_name())),
                n => label.push_str(&format!(" ({}:{n})", src.file_name())),
            }
        }
    }
    let mut label = clean(&label);
    match frame.kind {
        FrameKind::Kernel => label.push_str("_[k]"),
        FrameKind::Jit => label.push_str("_[j]"),
        FrameKind::User if frame.inlined => label.push_str("_[i]"),
        FrameKind::User => {}
    }
    label
}

/// The `--group-by` root frames of an on-CPU stack.
pub fn stack_root(profile: &Profile, stack: &Stack) -> String {
    profile.group_by.frames(&Attrs::of_stack(profile, stack))
}

pub fn fold(profile: &Profile) -> Folded {
    let mut out = Folded::new();
    for stack in &profile.stacks {
        let mut line = stack_root(profile, stack);
        for frame in stack.frames.iter() {
            line.push(';');
            line.push_str(&frame_label(frame, profile));
        }
        *out.entry(line).or_default() += stack.count;
    }
    out
}

pub fn write(folded: &Folded, w: &mut dyn Write) -> std::io::Result<()> {
    for (stack, count) in folded {
        writeln!(w, "{stack} {count}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::profile::{Module, SourceLine};

    fn profile(frames: Vec<Frame>) -> Profile {
        Profile {
            modules: vec![Module::new("/usr/lib/libc.so.6".into(), None)],
            stacks: vec![Stack {
                pid: 1,
                tid: 1,
                comm: "a;b".into(),
                process: 0,
                syscall: -1,
                frames: frames.into(),
                count: 3,
                times: Default::default(),
            }],
            ..Profile::default()
        }
    }

    #[test]
    fn kernel_frames_are_suffixed_and_unnamed_frames_show_module_and_offset() {
        let profile = profile(vec![
            Frame::new(Arc::from("main"), FrameKind::User, Some(0), 1),
            Frame::new(Arc::from("[unknown]"), FrameKind::User, Some(0), 0x10),
            Frame::new(Arc::from("[unknown]"), FrameKind::User, None, 0x7f00),
            Frame::new(Arc::from("LazyCompile:*hot /a.js:1"), FrameKind::Jit, None, 0x7f10),
            Frame::new(Arc::from("do_syscall_64"), FrameKind::Kernel, None, 2),
            Frame::new(Arc::from("[unknown]"), FrameKind::Kernel, None, 3),
        ]);
        let folded = fold(&profile);
        assert_eq!(
            folded.iter().next().unwrap(),
            (
                &"a:b;main;libc.so.6+0x10;[unknown];LazyCompile:*hot /a.js:1_[j];do_syscall_64_[k];[unknown]_[k]"
                    .to_string(),
                &3
            )
        );
    }

    #[test]
    fn inlined_frames_and_lines() {
        let line = |file: &str, line| Some(SourceLine { file: Arc::from(file), line });
        let mut profile = profile(vec![
            Frame { line: line("/src/app/main.c", 12), ..Frame::new(Arc::from("main"), FrameKind::User, Some(0), 1) },
            Frame {
                inlined: true,
                line: line("util.h", 0),
                ..Frame::new(Arc::from("helper"), FrameKind::User, Some(0), 1)
            },
        ]);
        assert_eq!(fold(&profile).keys().next().unwrap(), "a:b;main;helper_[i]");
        profile.lines = true;
        assert_eq!(fold(&profile).keys().next().unwrap(), "a:b;main (main.c:12);helper (util.h)_[i]");
    }
}
