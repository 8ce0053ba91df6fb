//! Folded stacks (`comm;outermost;…;innermost COUNT`), the input format of
//! FlameGraph and inferno. Kernel frames carry the `_[k]` suffix.

use std::{collections::BTreeMap, io::Write};

use crate::{
    group::Attrs,
    profile::{Frame, FrameKind, Profile, Stack},
};

/// Folded lines, merged and sorted: stack text to sample count.
pub type Folded = BTreeMap<String, u64>;

/// Characters that would break the folded format are replaced.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ';' => ':',
            '\n' | '\r' | '\t' => ' ',
            c => c,
        })
        .collect()
}

/// How a frame is written in folded stacks and flamegraphs.
pub fn frame_label(frame: &Frame, profile: &Profile) -> String {
    let module = frame.module.and_then(|m| profile.modules.get(m));
    let name = match (frame.is_unknown(), module) {
        (true, Some(module)) => format!("[unknown]({}+{:#x})", module.short_name(), frame.address),
        _ => frame.name.to_string(),
    };
    match frame.kind {
        FrameKind::Kernel => format!("{}_[k]", clean(&name)),
        FrameKind::User => clean(&name),
    }
}

/// The `--group-by` root frames of an on-CPU stack.
pub fn stack_root(profile: &Profile, stack: &Stack) -> String {
    profile.group_by.frames(&Attrs::of_stack(profile, stack))
}

pub fn fold(profile: &Profile) -> Folded {
    let mut out = Folded::new();
    for stack in &profile.stacks {
        let mut line = stack_root(profile, stack);
        for frame in &stack.frames {
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
    use crate::profile::Module;

    #[test]
    fn kernel_frames_are_suffixed_and_unknowns_keep_their_module() {
        let profile = Profile {
            modules: vec![Module { path: "/usr/lib/libc.so.6".into(), build_id: None }],
            stacks: vec![Stack {
                pid: 1,
                tid: 1,
                comm: "a;b".into(),
                process: 0,
                syscall: -1,
                frames: vec![
                    Frame { name: Arc::from("main"), kind: FrameKind::User, module: Some(0), address: 1 },
                    Frame { name: Arc::from("[unknown]"), kind: FrameKind::User, module: Some(0), address: 0x10 },
                    Frame { name: Arc::from("do_syscall_64"), kind: FrameKind::Kernel, module: None, address: 2 },
                ],
                count: 3,
            }],
            ..Profile::default()
        };
        let folded = fold(&profile);
        assert_eq!(
            folded.iter().next().unwrap(),
            (&"a:b;main;[unknown](libc.so.6+0x10);do_syscall_64_[k]".to_string(), &3)
        );
    }
}
