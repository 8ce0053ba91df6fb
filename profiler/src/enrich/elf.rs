//! Just enough of an ELF file to check that it is one, read its build id
//! (the `GNU` build-id note) and turn file offsets into the virtual
//! addresses its separate debug file uses. Only headers and notes are read.

use std::{fs::File, io, path::Path};

use crate::sys::io::read_at_most;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not an ELF file")]
    NotElf,
    #[error("corrupt ELF file: {0}")]
    Corrupt(&'static str),
}

/// A loadable segment: file bytes `offset..offset + size` at `vaddr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    offset: u64,
    vaddr: u64,
    size: u64,
}

/// The loadable segments and build id of an ELF file.
#[derive(Debug)]
pub struct ElfFile {
    loads: Vec<Load>,
    build_id: Option<Vec<u8>>,
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;
const NT_GNU_BUILD_ID: u32 = 3;
/// More program or section headers than this is not a real binary.
const MAX_HEADERS: u64 = 65535;
/// Note sections larger than this are not looked into.
const MAX_NOTES: u64 = 1 << 16;

impl ElfFile {
    pub fn read(path: &Path) -> Result<Self, ElfError> {
        let file = File::open(path)?;
        let mut ident = [0u8; 64];
        let n = read_at_most(&file, &mut ident, 0)?;
        let ident = &ident[..n];
        if ident.len() < 16 || &ident[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        let wide = match ident[4] {
            1 => false,
            2 => true,
            _ => return Err(ElfError::Corrupt("unknown ELF class")),
        };
        let big = match ident[5] {
            1 => false,
            2 => true,
            _ => return Err(ElfError::Corrupt("unknown byte order")),
        };
        let r = Reader { big };
        let header_len = if wide { 64 } else { 52 };
        if ident.len() < header_len {
            return Err(ElfError::Corrupt("truncated header"));
        }
        let (phoff, phentsize, phnum) = if wide {
            (r.u64(ident, 0x20), r.u16(ident, 0x36), r.u16(ident, 0x38))
        } else {
            (r.u32(ident, 0x1c).map(u64::from), r.u16(ident, 0x2a), r.u16(ident, 0x2c))
        };
        let (phoff, phentsize, phnum) = (
            phoff.ok_or(ElfError::Corrupt("truncated header"))?,
            u64::from(phentsize.ok_or(ElfError::Corrupt("truncated header"))?),
            u64::from(phnum.ok_or(ElfError::Corrupt("truncated header"))?),
        );
        let table = read_table(&file, phoff, phentsize, phnum, if wide { 56 } else { 32 }, "program")?;
        let mut loads = Vec::new();
        let mut note_segments = Vec::new();
        for ph in table.chunks_exact(phentsize.max(1) as usize) {
            let field = |at64, at32| if wide { r.u64(ph, at64) } else { r.u32(ph, at32).map(u64::from) };
            let (Some(kind), Some(offset), Some(vaddr), Some(size)) =
                (r.u32(ph, 0), field(8, 4), field(16, 8), field(32, 16))
            else {
                continue;
            };
            match kind {
                PT_LOAD => loads.push(Load { offset, vaddr, size }),
                PT_NOTE => note_segments.push((offset, size, 4)),
                _ => {}
            }
        }
        // Notes by section, else by segment (debug files keep the sections
        // but not the segments' file contents).
        let (shoff, shentsize, shnum) = if wide {
            (r.u64(ident, 0x28), r.u16(ident, 0x3a), r.u16(ident, 0x3c))
        } else {
            (r.u32(ident, 0x20).map(u64::from), r.u16(ident, 0x2e), r.u16(ident, 0x30))
        };
        let (shoff, shentsize, shnum) =
            (shoff.unwrap_or(0), u64::from(shentsize.unwrap_or(0)), u64::from(shnum.unwrap_or(0)));
        let mut notes = Vec::new();
        if shoff > 0 && shnum > 0 {
            let table = read_table(&file, shoff, shentsize, shnum, if wide { 64 } else { 40 }, "section")?;
            for sh in table.chunks_exact(shentsize.max(1) as usize) {
                let field = |at64, at32| if wide { r.u64(sh, at64) } else { r.u32(sh, at32).map(u64::from) };
                if let (Some(SHT_NOTE), Some(offset), Some(size), Some(align)) =
                    (r.u32(sh, 4), field(24, 16), field(32, 20), field(48, 32))
                {
                    notes.push((offset, size, align));
                }
            }
        }
        if notes.is_empty() {
            notes = note_segments;
        }
        let mut build_id = None;
        for (offset, size, align) in notes {
            if size > MAX_NOTES {
                continue;
            }
            let mut buf = vec![0u8; size as usize];
            let n = read_at_most(&file, &mut buf, offset)?;
            if let Some(id) = find_build_id(&r, &buf[..n], align) {
                build_id = Some(id.to_vec());
                break;
            }
        }
        Ok(Self { loads, build_id })
    }

    /// The file offset of virtual address `vaddr`.
    #[cfg(test)]
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        let l = self.loads.iter().find(|l| vaddr >= l.vaddr && vaddr - l.vaddr < l.size)?;
        Some(l.offset + (vaddr - l.vaddr))
    }

    /// The GNU build id, if the file has one.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// The build id in lowercase hex.
    pub fn build_id_hex(&self) -> Option<String> {
        Some(self.build_id()?.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The virtual address of file offset `offset`, if a loadable segment holds it.
    pub fn virt_offset(&self, offset: u64) -> Option<u64> {
        let l = self.loads.iter().find(|l| offset >= l.offset && offset - l.offset < l.size)?;
        l.vaddr.checked_add(offset - l.offset)
    }
}

/// A header table of `count` entries of `size` bytes (at least `min`).
fn read_table(
    file: &File,
    offset: u64,
    size: u64,
    count: u64,
    min: u64,
    what: &'static str,
) -> Result<Vec<u8>, ElfError> {
    if count > MAX_HEADERS || (count > 0 && size < min) {
        return Err(ElfError::Corrupt(if what == "program" {
            "bad program header table"
        } else {
            "bad section header table"
        }));
    }
    let mut table = vec![0u8; (count * size) as usize];
    if read_at_most(file, &mut table, offset)? < table.len() {
        return Err(ElfError::Corrupt(if what == "program" {
            "program headers beyond the end of the file"
        } else {
            "section headers beyond the end of the file"
        }));
    }
    Ok(table)
}

/// The descriptor of the `GNU` build-id note among `notes`.
fn find_build_id<'a>(r: &Reader, mut notes: &'a [u8], align: u64) -> Option<&'a [u8]> {
    let pad = |n: usize| if align == 8 { n.next_multiple_of(8) } else { n.next_multiple_of(4) };
    while notes.len() >= 12 {
        let namesz = r.u32(notes, 0)? as usize;
        let descsz = r.u32(notes, 4)? as usize;
        let kind = r.u32(notes, 8)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = 12usize.checked_add(pad(namesz))?;
        let desc_end = desc_start.checked_add(descsz)?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_start..desc_end)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc);
        }
        notes = notes.get(desc_start.checked_add(pad(descsz))?..)?;
    }
    None
}

/// Fixed-size fields of either byte order.
struct Reader {
    big: bool,
}

impl Reader {
    fn bytes<const N: usize>(&self, b: &[u8], at: usize) -> Option<[u8; N]> {
        b.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, b: &[u8], at: usize) -> Option<u16> {
        let x = self.bytes(b, at)?;
        Some(if self.big { u16::from_be_bytes(x) } else { u16::from_le_bytes(x) })
    }
    fn u32(&self, b: &[u8], at: usize) -> Option<u32> {
        let x = self.bytes(b, at)?;
        Some(if self.big { u32::from_be_bytes(x) } else { u32::from_le_bytes(x) })
    }
    fn u64(&self, b: &[u8], at: usize) -> Option<u64> {
        let x = self.bytes(b, at)?;
        Some(if self.big { u64::from_be_bytes(x) } else { u64::from_le_bytes(x) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_offsets_of_this_binary_like_its_mapping() {
        let exe = std::fs::canonicalize("/proc/self/exe").unwrap();
        let elf = ElfFile::read(&exe).unwrap();
        assert!(!elf.loads.is_empty());
        // The build id readelf shows.
        let out = std::process::Command::new("readelf").arg("-n").arg(&exe).output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            let id = text.lines().find_map(|l| l.trim().strip_prefix("Build ID: ")).map(str::to_owned);
            assert_eq!(elf.build_id_hex(), id);
        }
        // Where this function is mapped: its file offset, and the load bias.
        let here = translates_offsets_of_this_binary_like_its_mapping as *const () as usize as u64;
        // Its mapping in /proc/self/maps: `start-end perms offset dev inode path`.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let offset = maps
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                let (start, end) = f.next()?.split_once('-')?;
                let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
                let file_offset = u64::from_str_radix(f.nth(1)?, 16).ok()?;
                (start..end).contains(&here).then(|| here - start + file_offset)
            })
            .unwrap();
        let vaddr = elf.virt_offset(offset).unwrap();
        // The bias is a multiple of the page size: the page offsets agree.
        assert_eq!(vaddr % 4096, here % 4096);
        assert_eq!(elf.virt_offset(u64::MAX), None);
    }

    #[test]
    fn refuses_what_is_not_an_elf_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"#!/bin/sh\n").unwrap();
        assert!(matches!(ElfFile::read(&p), Err(ElfError::NotElf)));
        let mut exe = std::fs::read("/proc/self/exe").unwrap();
        exe.truncate(40);
        std::fs::write(&p, &exe).unwrap();
        assert!(matches!(ElfFile::read(&p), Err(ElfError::Corrupt(_))));
        let mut exe = std::fs::read("/proc/self/exe").unwrap();
        exe.truncate(64);
        std::fs::write(&p, &exe).unwrap();
        let err = ElfFile::read(&p).unwrap_err().to_string();
        assert!(err.contains("beyond the end"), "{err}");
        assert!(matches!(ElfFile::read(&dir.path().join("gone")), Err(ElfError::Io(_))));
    }

    #[test]
    fn only_the_gnu_note_is_the_build_id() {
        let r = Reader { big: false };
        let note = |name: &[u8], kind: u32, desc: &[u8]| {
            let mut v = Vec::new();
            v.extend((name.len() as u32).to_le_bytes());
            v.extend((desc.len() as u32).to_le_bytes());
            v.extend(kind.to_le_bytes());
            v.extend(name);
            v.resize(v.len().next_multiple_of(4), 0);
            v.extend(desc);
            v.resize(v.len().next_multiple_of(4), 0);
            v
        };
        // A SystemTap probe note has type 3 too (libstdc++ carries them).
        let mut notes = note(b"stapsdt\0", 3, b"probe descriptor");
        assert_eq!(find_build_id(&r, &notes, 4), None);
        notes.extend(note(b"GNU\0", 3, &[0xab, 0xcd, 0xef]));
        assert_eq!(find_build_id(&r, &notes, 4), Some(&[0xab, 0xcd, 0xef][..]));
        // Truncated: nothing, no panic.
        assert_eq!(find_build_id(&r, &notes[..notes.len() - 4], 4), None);
        assert_eq!(find_build_id(&r, &[0xff; 12], 4), None);
    }
}
