//! Does a module keep frame pointers? Judged from its CFI, once per module.
//!
//! # The heuristic
//!
//! Every function with CFI has an FDE whose instructions say, address by
//! address, how to find the caller's frame (the CFA). A function compiled
//! with frame pointers saves the caller's frame pointer and makes its own
//! frame pointer the base of the CFA (x86_64: `DW_CFA_def_cfa_register rbp`
//! after `push rbp; mov rbp, rsp`; aarch64: the frame record — `x29` saved
//! and the CFA defined from it, or at least `x29` stored with `x30`).
//! A function compiled without them describes the CFA from the stack pointer
//! for its whole body.
//!
//! Functions whose FDE never moves the CFA (leaf functions that push
//! nothing, most hand-written string routines) are left out, and so are
//! FDEs that compute the CFA with an expression (PLT stubs): they cannot
//! break the frame-pointer chain of their callers, and no method recovers
//! the caller of a leaf interrupted before its prologue better than the
//! other. Of the rest, the share that set up a frame pointer decides: at
//! least [`KEEPS_FRAME_POINTERS_SHARE`] means the module keeps frame
//! pointers. Distributions that build with `-fno-omit-frame-pointer` land
//! near 100% (a few hand-written assembly functions miss), builds without it
//! near 0–10% (only functions with variable-sized stack frames, which need
//! one anyway). A module with no CFI at all cannot be unwound any other way
//! than with frame pointers, so it does not argue against them.

use std::collections::HashMap;

use gimli::{
    BaseAddresses, CallFrameInstruction, CieOrFde, CommonInformationEntry, EndianSlice, LittleEndian, Reader, Register,
    UnwindOffset, UnwindSection,
};
use serde::Serialize;

/// Share of stack-adjusting functions that must set up a frame pointer for
/// a module to count as keeping frame pointers.
pub const KEEPS_FRAME_POINTERS_SHARE: f64 = 0.98;

/// FDE counts of one module's CFI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FpCensus {
    /// Functions with CFI.
    pub fdes: u32,
    /// Of them, functions whose CFA moves: they push or allocate.
    pub stack_frames: u32,
    /// Of them, functions that set up a frame pointer.
    pub frame_pointers: u32,
}

impl FpCensus {
    /// See the module documentation.
    pub fn keeps_frame_pointers(&self) -> bool {
        self.stack_frames == 0
            || f64::from(self.frame_pointers) >= KEEPS_FRAME_POINTERS_SHARE * f64::from(self.stack_frames)
    }
}

/// The frame-pointer register's DWARF number.
#[cfg(target_arch = "x86_64")]
const FRAME_POINTER: Register = gimli::X86_64::RBP;
#[cfg(target_arch = "aarch64")]
const FRAME_POINTER: Register = gimli::AArch64::X29;

/// Count the FDEs of an `.eh_frame` section. Fails on the first entry that
/// does not parse: CFI that is corrupt anywhere is not trusted anywhere.
pub fn census_eh_frame(data: &[u8], bases: &BaseAddresses) -> gimli::Result<FpCensus> {
    let mut section = gimli::EhFrame::new(data, LittleEndian);
    section.set_address_size(8);
    census(&section, bases)
}

/// Count the FDEs of a `.debug_frame` section.
pub fn census_debug_frame(data: &[u8], bases: &BaseAddresses) -> gimli::Result<FpCensus> {
    let mut section = gimli::DebugFrame::new(data, LittleEndian);
    section.set_address_size(8);
    census(&section, bases)
}

fn census<'a, S>(section: &S, bases: &BaseAddresses) -> gimli::Result<FpCensus>
where
    S: UnwindSection<EndianSlice<'a, LittleEndian>>,
{
    let mut cies: HashMap<usize, CommonInformationEntry<EndianSlice<'a, LittleEndian>>> = HashMap::new();
    let mut cie_frame_pointer: HashMap<usize, bool> = HashMap::new();
    let mut out = FpCensus::default();
    let mut entries = section.entries(bases);
    while let Some(entry) = entries.next()? {
        let partial = match entry {
            CieOrFde::Cie(_) => continue,
            CieOrFde::Fde(partial) => partial,
        };
        let fde = partial.parse(|section, bases, offset| {
            let key: usize = UnwindOffset::into(offset);
            if let Some(cie) = cies.get(&key) {
                return Ok(cie.clone());
            }
            let cie = section.cie_from_offset(bases, offset)?;
            cies.insert(key, cie.clone());
            Ok(cie)
        })?;
        let cie_offset = fde.cie().offset();
        let cie_sets_fp = match cie_frame_pointer.get(&cie_offset) {
            Some(&v) => v,
            None => {
                let v = scan(fde.cie().instructions(section, bases))?.1;
                cie_frame_pointer.insert(cie_offset, v);
                v
            }
        };
        let (moves_cfa, sets_fp) = scan(fde.instructions(section, bases))?;
        out.fdes = out.fdes.saturating_add(1);
        if moves_cfa || sets_fp {
            out.stack_frames = out.stack_frames.saturating_add(1);
            if sets_fp || cie_sets_fp {
                out.frame_pointers = out.frame_pointers.saturating_add(1);
            }
        }
    }
    Ok(out)
}

/// (the CFA moves, a frame pointer is set up) over one instruction stream.
fn scan<R: Reader>(mut insns: gimli::CallFrameInstructionIter<'_, R>) -> gimli::Result<(bool, bool)> {
    let mut moves_cfa = false;
    let mut sets_fp = false;
    #[cfg(target_arch = "aarch64")]
    let (mut saves_fp, mut saves_lr) = (false, false);
    while let Some(insn) = insns.next()? {
        match insn {
            CallFrameInstruction::DefCfa { register, .. }
            | CallFrameInstruction::DefCfaSf { register, .. }
            | CallFrameInstruction::DefCfaRegister { register } => {
                moves_cfa = true;
                sets_fp |= register == FRAME_POINTER;
            }
            CallFrameInstruction::DefCfaOffset { .. } | CallFrameInstruction::DefCfaOffsetSf { .. } => moves_cfa = true,
            // A computed CFA: PLT stubs and other trampolines, not
            // compiled functions. Not judged.
            CallFrameInstruction::DefCfaExpression { .. } => return Ok((false, false)),
            #[cfg(target_arch = "aarch64")]
            CallFrameInstruction::Offset { register, .. } | CallFrameInstruction::OffsetExtendedSf { register, .. } => {
                saves_fp |= register == FRAME_POINTER;
                saves_lr |= register == gimli::AArch64::X30;
            }
            _ => {}
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        sets_fp |= saves_fp && saves_lr;
    }
    Ok((moves_cfa, sets_fp))
}
