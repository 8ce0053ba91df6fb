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
    off_cpu::RawOffCpu,
    profile::{Frame, FrameKind, OffCpuStack, Profile, Stack, UNKNOWN},
    stacks::{lookup_address, AggregatedStack, ModuleTable, UserFrame},
};

/// Build the symbolized [`Profile`] from aggregated on-CPU and off-CPU stacks.
pub fn symbolize(
    modules: ModuleTable,
    stacks: Vec<AggregatedStack>,
    off_cpu: Vec<RawOffCpu>,
    mut profile: Profile,
) -> Profile {
    let all =
        || stacks.iter().map(|s| (&*s.kstack, &*s.ustack)).chain(off_cpu.iter().map(|s| (&*s.kstack, &*s.ustack)));
    let symbols = Symbols::resolve(&modules, all);
    profile.samples = stacks.iter().map(|s| s.count).sum();
    profile.modules = modules.modules;
    profile.stacks = stacks
        .into_iter()
        .map(|s| Stack {
            frames: symbols.frames(&s.kstack, &s.ustack),
            pid: s.pid,
            tid: s.tid,
            comm: s.comm,
            process: s.process,
            syscall: s.syscall,
            count: s.count,
        })
        .collect();
    profile.off_cpu = off_cpu
        .into_iter()
        .map(|s| OffCpuStack {
            frames: symbols.frames(&s.kstack, &s.ustack),
            pid: s.tgid,
            tid: s.tid,
            comm: s.comm,
            process: s.process,
            state: s.state,
            syscall: s.syscall,
            waker_tid: s.waker_tid,
            waker_comm: s.waker_comm,
            stack_lost: s.stack_lost,
            ns: s.ns,
            count: s.count,
        })
        .collect();
    profile
}

/// Names of every address the stacks hold, each looked up once.
struct Symbols {
    kernel: HashMap<u64, Arc<str>>,
    user: HashMap<(usize, u64), Arc<str>>,
    unknown: Arc<str>,
}

impl Symbols {
    fn resolve<'a, I>(modules: &ModuleTable, stacks: impl Fn() -> I) -> Self
    where
        I: Iterator<Item = (&'a [u64], &'a [UserFrame])>,
    {
        let symbolizer = Symbolizer::builder().enable_code_info(false).enable_inlined_fns(false).build();
        let unknown: Arc<str> = Arc::from(UNKNOWN);
        let kernel = symbolize_kernel(&symbolizer, stacks().map(|(k, _)| k), &unknown);
        let user = symbolize_user(&symbolizer, modules, stacks().map(|(_, u)| u), &unknown);
        Self { kernel, user, unknown }
    }

    /// Frames outermost first: user frames, then kernel frames.
    fn frames(&self, kstack: &[u64], ustack: &[UserFrame]) -> Vec<Frame> {
        let unknown = &self.unknown;
        let mut frames = Vec::with_capacity(ustack.len() + kstack.len());
        for f in ustack.iter().rev() {
            frames.push(match f {
                UserFrame::InModule { module, offset } => Frame {
                    name: self.user.get(&(*module, *offset)).cloned().unwrap_or_else(|| unknown.clone()),
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
        for (i, &addr) in kstack.iter().enumerate().rev() {
            let addr = lookup_address(i, addr);
            frames.push(Frame {
                name: self.kernel.get(&addr).cloned().unwrap_or_else(|| unknown.clone()),
                kind: FrameKind::Kernel,
                module: None,
                address: addr,
            });
        }
        frames
    }
}

fn name_of(sym: &Symbolized<'_>, unknown: &Arc<str>) -> Arc<str> {
    match sym {
        Symbolized::Sym(sym) => Arc::from(&*sym.name),
        Symbolized::Unknown(_) => unknown.clone(),
    }
}

fn symbolize_kernel<'a>(
    symbolizer: &Symbolizer,
    stacks: impl Iterator<Item = &'a [u64]>,
    unknown: &Arc<str>,
) -> HashMap<u64, Arc<str>> {
    let addrs: Vec<u64> = stacks
        .flat_map(|s| s.iter().enumerate().map(|(i, &a)| lookup_address(i, a)))
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

fn symbolize_user<'a>(
    symbolizer: &Symbolizer,
    modules: &ModuleTable,
    stacks: impl Iterator<Item = &'a [UserFrame]>,
    unknown: &Arc<str>,
) -> HashMap<(usize, u64), Arc<str>> {
    let mut by_module: HashMap<usize, HashSet<u64>> = HashMap::new();
    for s in stacks {
        for f in s.iter() {
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
