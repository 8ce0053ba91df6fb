//! Naming addresses at the end of a capture: kernel frames from kallsyms,
//! user frames from their ELF files (symbol tables, DWARF when present),
//! demangled. Each unique address is looked up once.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use blazesym::symbolize::{
    source::{Elf, Kernel, Source},
    Input, Symbolized, Symbolizer,
};

use crate::{
    profile::{Frame, FrameKind, Profile, Stack, UNKNOWN},
    stacks::{lookup_address, AggregatedStack, ModuleTable, UserFrame},
};

/// Build the symbolized [`Profile`] from aggregated stacks.
pub fn symbolize(modules: ModuleTable, stacks: Vec<AggregatedStack>, mut profile: Profile) -> Profile {
    let symbolizer = Symbolizer::builder().enable_code_info(false).enable_inlined_fns(false).build();
    let unknown: Arc<str> = Arc::from(UNKNOWN);

    let kernel_names = symbolize_kernel(&symbolizer, &stacks, &unknown);
    let user_names = symbolize_user(&symbolizer, &modules, &stacks, &unknown);

    profile.samples = stacks.iter().map(|s| s.count).sum();
    profile.modules = modules.modules;
    profile.stacks = stacks
        .into_iter()
        .map(|s| {
            let mut frames = Vec::with_capacity(s.ustack.len() + s.kstack.len());
            for f in s.ustack.iter().rev() {
                frames.push(match f {
                    UserFrame::InModule { module, offset } => Frame {
                        name: user_names.get(&(*module, *offset)).cloned().unwrap_or_else(|| unknown.clone()),
                        kind: FrameKind::User,
                        module: Some(*module),
                        address: *offset,
                    },
                    UserFrame::Named { name } => {
                        Frame { name: name.clone(), kind: FrameKind::User, module: None, address: 0 }
                    }
                    UserFrame::Unknown { addr } => {
                        Frame { name: unknown.clone(), kind: FrameKind::User, module: None, address: *addr }
                    }
                });
            }
            for (i, &addr) in s.kstack.iter().enumerate().rev() {
                let addr = lookup_address(i, addr);
                frames.push(Frame {
                    name: kernel_names.get(&addr).cloned().unwrap_or_else(|| unknown.clone()),
                    kind: FrameKind::Kernel,
                    module: None,
                    address: addr,
                });
            }
            Stack { pid: s.pid, tid: s.tid, comm: s.comm, frames, count: s.count }
        })
        .collect();
    profile
}

fn name_of(sym: &Symbolized<'_>, unknown: &Arc<str>) -> Arc<str> {
    match sym {
        Symbolized::Sym(sym) => Arc::from(&*sym.name),
        Symbolized::Unknown(_) => unknown.clone(),
    }
}

fn symbolize_kernel(symbolizer: &Symbolizer, stacks: &[AggregatedStack], unknown: &Arc<str>) -> HashMap<u64, Arc<str>> {
    let addrs: Vec<u64> = stacks
        .iter()
        .flat_map(|s| s.kstack.iter().enumerate().map(|(i, &a)| lookup_address(i, a)))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if addrs.is_empty() {
        return HashMap::new();
    }
    let src = Source::Kernel(Kernel::default());
    match symbolizer.symbolize(&src, Input::AbsAddr(&addrs)) {
        Ok(syms) => addrs.iter().copied().zip(syms.iter().map(|s| name_of(s, unknown))).collect(),
        Err(err) => {
            tracing::warn!(%err, "could not symbolize kernel frames; they show as [unknown]");
            HashMap::new()
        }
    }
}

fn symbolize_user(
    symbolizer: &Symbolizer,
    modules: &ModuleTable,
    stacks: &[AggregatedStack],
    unknown: &Arc<str>,
) -> HashMap<(usize, u64), Arc<str>> {
    let mut by_module: HashMap<usize, HashSet<u64>> = HashMap::new();
    for s in stacks {
        for f in s.ustack.iter() {
            if let UserFrame::InModule { module, offset } = f {
                by_module.entry(*module).or_default().insert(*offset);
            }
        }
    }
    let mut names = HashMap::new();
    for (module, offsets) in by_module {
        let Some(info) = modules.modules.get(module) else {
            continue;
        };
        // The symbol table is cheap to read and names most frames; DWARF
        // (including separate debug files) is read only for what it missed.
        let mut left: Vec<u64> = offsets.into_iter().collect();
        for debug_syms in [false, true] {
            if left.is_empty() {
                break;
            }
            let mut src = Elf::new(&info.path);
            src.debug_syms = debug_syms;
            match symbolizer.symbolize(&Source::Elf(src), Input::FileOffset(&left)) {
                Ok(syms) => {
                    let mut missed = Vec::new();
                    for (offset, sym) in left.iter().zip(syms.iter()) {
                        match sym {
                            Symbolized::Sym(_) => {
                                names.insert((module, *offset), name_of(sym, unknown));
                            }
                            Symbolized::Unknown(_) => missed.push(*offset),
                        }
                    }
                    left = missed;
                }
                Err(err) => {
                    // Anonymous executable memory (memfd, JIT) has no file to read.
                    tracing::debug!(module = %info.path, %err, "could not read symbols; its frames show as [unknown]");
                    break;
                }
            }
        }
    }
    names
}
