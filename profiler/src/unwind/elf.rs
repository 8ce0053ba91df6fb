//! What the unwinder needs of an ELF file: its executable load segments (to
//! place it in an address space), its build id, and copies of its unwind
//! sections (`.eh_frame`, `.eh_frame_hdr`, or `.debug_frame` when there is
//! no `.eh_frame`), checked and counted (see [`super::frame_pointers`]).
//!
//! The file is read with positioned reads of just the headers and those
//! sections, never mapped: a file truncated under us fails a read instead of
//! killing the profiler with SIGBUS, and a 1 GiB binary costs what its unwind
//! tables weigh.

use std::{ops::Range, sync::Arc};

use gimli::BaseAddresses;
use object::{
    elf,
    read::elf::{ElfFile64, ProgramHeader as _},
    Endianness, Object as _, ObjectSection as _, ReadRef,
};

use super::frame_pointers::{census_debug_frame, census_eh_frame, FpCensus};

#[cfg(target_arch = "x86_64")]
const NATIVE_MACHINE: u16 = elf::EM_X86_64;
#[cfg(target_arch = "aarch64")]
const NATIVE_MACHINE: u16 = elf::EM_AARCH64;

/// Why a module's unwind information could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file this unwinder reads: {0}")]
    Format(String),
    #[error("{section} is {bytes} bytes, over the per-module limit of {limit} bytes")]
    TooLarge { section: &'static str, bytes: u64, limit: u64 },
    #[error("could not read {section}: {reason}")]
    Read { section: &'static str, reason: String },
    #[error("corrupt {section}: {reason}")]
    CorruptCfi { section: &'static str, reason: String },
}

/// An unwind section's address in the file's own address space and its
/// bytes.
#[derive(Debug, Clone)]
pub struct Section {
    pub svma: Range<u64>,
    pub data: Arc<[u8]>,
}

/// A `PT_LOAD` segment with execute permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
}

/// The parts of an ELF file the unwinder keeps.
#[derive(Debug, Clone, Default)]
pub struct ElfUnwindInfo {
    pub build_id: Option<Vec<u8>>,
    pub exec_segments: Vec<LoadSegment>,
    pub eh_frame: Option<Section>,
    pub eh_frame_hdr: Option<Section>,
    pub debug_frame: Option<Section>,
    pub text_svma: Option<Range<u64>>,
    pub got_svma: Option<Range<u64>>,
    /// `None` when the file has no CFI.
    pub census: Option<FpCensus>,
}

impl ElfUnwindInfo {
    /// Bytes of unwind tables held.
    pub fn bytes(&self) -> usize {
        [&self.eh_frame, &self.eh_frame_hdr, &self.debug_frame]
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.data.len()))
            .sum()
    }

    /// The load bias of a mapping of this file that maps file offset
    /// `offset` at `start` and ends at `end`: the address where the file's
    /// virtual address 0 lands. `None` if no executable segment lies in
    /// that mapping.
    pub fn bias(&self, start: u64, end: u64, offset: u64) -> Option<u64> {
        let mapped_end = offset.saturating_add(end.saturating_sub(start));
        let seg =
            self.exec_segments.iter().find(|s| s.offset < mapped_end && offset < s.offset.saturating_add(s.filesz))?;
        Some(start.wrapping_sub(offset).wrapping_add(seg.offset).wrapping_sub(seg.vaddr))
    }

    pub fn base_addresses(&self) -> BaseAddresses {
        let start = |s: &Option<Range<u64>>| s.as_ref().map_or(0, |r| r.start);
        BaseAddresses::default()
            .set_eh_frame(start(&self.eh_frame.as_ref().map(|s| s.svma.clone())))
            .set_eh_frame_hdr(start(&self.eh_frame_hdr.as_ref().map(|s| s.svma.clone())))
            .set_text(start(&self.text_svma))
            .set_got(start(&self.got_svma))
    }
}

/// Read what the unwinder needs from the ELF file in `data`, copying at
/// most `limit` bytes of unwind sections.
pub fn read_unwind_info<'d, R: ReadRef<'d>>(data: R, limit: u64) -> Result<ElfUnwindInfo, ElfError> {
    let file = ElfFile64::<Endianness, R>::parse(data).map_err(|e| ElfError::Format(e.to_string()))?;
    let endian = file.endian();
    if endian != Endianness::Little {
        return Err(ElfError::Format("big-endian".into()));
    }
    let machine = file.elf_header().e_machine.get(endian);
    if machine != NATIVE_MACHINE {
        return Err(ElfError::Format(format!("built for machine {machine}, not this CPU")));
    }

    let mut info =
        ElfUnwindInfo { build_id: file.build_id().ok().flatten().map(<[u8]>::to_vec), ..ElfUnwindInfo::default() };
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == elf::PT_LOAD && ph.p_flags(endian) & elf::PF_X != 0 {
            info.exec_segments.push(LoadSegment {
                offset: ph.p_offset(endian),
                vaddr: ph.p_vaddr(endian),
                filesz: ph.p_filesz(endian),
            });
        }
    }
    if info.exec_segments.is_empty() {
        return Err(ElfError::Format("no executable segment".into()));
    }
    let range = |name: &str| file.section_by_name(name).map(|s| s.address()..s.address().saturating_add(s.size()));
    info.text_svma = range(".text");
    info.got_svma = range(".got");

    let mut budget = limit;
    let mut section = |name: &'static str| -> Result<Option<Section>, ElfError> {
        let Some(s) = file.section_by_name(name) else { return Ok(None) };
        let size = s.size();
        if size == 0 || s.kind() == object::SectionKind::UninitializedData {
            return Ok(None);
        }
        if size > budget {
            return Err(ElfError::TooLarge { section: name, bytes: size, limit });
        }
        budget -= size;
        // Compressed sections (only ever .debug_frame) are not supported:
        // `data` returns their compressed bytes, which would not parse.
        if let Ok(object::CompressedFileRange { format, .. }) = s.compressed_file_range() {
            if format != object::CompressionFormat::None {
                return Ok(None);
            }
        }
        let data = s.data().map_err(|e| ElfError::Read { section: name, reason: e.to_string() })?;
        Ok(Some(Section { svma: s.address()..s.address().saturating_add(size), data: Arc::from(data) }))
    };
    info.eh_frame = section(".eh_frame")?;
    if info.eh_frame.is_some() {
        info.eh_frame_hdr = section(".eh_frame_hdr")?;
    } else {
        info.debug_frame = section(".debug_frame")?;
    }

    let bases = info.base_addresses();
    info.census = if let Some(s) = &info.eh_frame {
        Some(
            census_eh_frame(&s.data, &bases)
                .map_err(|e| ElfError::CorruptCfi { section: ".eh_frame", reason: e.to_string() })?,
        )
    } else if let Some(s) = &info.debug_frame {
        Some(
            census_debug_frame(&s.data, &bases)
                .map_err(|e| ElfError::CorruptCfi { section: ".debug_frame", reason: e.to_string() })?,
        )
    } else {
        None
    };
    if let Some(hdr) = &info.eh_frame_hdr {
        // Without a usable search table framehop would find no FDE through
        // the header: let it index .eh_frame itself instead.
        let usable = match gimli::EhFrameHdr::new(&hdr.data, gimli::LittleEndian).parse(&bases, 8) {
            Ok(parsed) => parsed.table().is_some(),
            Err(e) => {
                tracing::debug!(error = %e, "unusable .eh_frame_hdr, indexing .eh_frame instead");
                false
            }
        };
        if !usable {
            info.eh_frame_hdr = None;
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_places_position_dependent_and_independent_files() {
        // A non-PIE executable whose text segment does not start on a page.
        let exe = ElfUnwindInfo {
            exec_segments: vec![LoadSegment { offset: 0x1234, vaddr: 0x401234, filesz: 0x100 }],
            ..ElfUnwindInfo::default()
        };
        assert_eq!(exe.bias(0x401000, 0x402000, 0x1000), Some(0));
        // A shared library mapped at some base.
        let lib = ElfUnwindInfo {
            exec_segments: vec![LoadSegment { offset: 0x1000, vaddr: 0x1000, filesz: 0x5000 }],
            ..ElfUnwindInfo::default()
        };
        assert_eq!(lib.bias(0x7f00_0000_1000, 0x7f00_0000_6000, 0x1000), Some(0x7f00_0000_0000));
        // A mapping of the file that holds no executable segment.
        assert_eq!(lib.bias(0x7f00_0001_0000, 0x7f00_0001_1000, 0x10000), None);
    }
}
