//! Executable mappings of a process, from `/proc/PID/maps`: the one parser
//! of that file (the stack normalizer and the DWARF unwinder both read it
//! through here).

use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// What backs an executable mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingKind {
    /// A file. `deleted`: the kernel marks it ` (deleted)`: unlinked, or
    /// replaced by another file at the same path.
    File { path: PathBuf, deleted: bool },
    /// The vDSO.
    Vdso,
    /// Anonymous executable memory, where JIT compilers put their code
    /// (also `[anon:NAME]`, `/dev/zero`, `/anon_hugepage` and .NET's
    /// `/memfd:doublemapper`, as perf treats them).
    Anonymous,
    /// Other kernel pseudo-mappings (`[vsyscall]`, …): nothing to read.
    Other,
}

/// One executable mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// Device as the kernel prints it (`major:minor` in hex) and inode.
    pub dev: (u32, u32),
    pub inode: u64,
    pub kind: MappingKind,
}

impl Mapping {
    /// The file offset of `addr`, which must lie in the mapping.
    pub fn file_offset(&self, addr: u64) -> u64 {
        addr.saturating_sub(self.start).saturating_add(self.offset)
    }

    /// `/proc/PID/map_files/START-END`: the mapped file itself, even when
    /// deleted or in another mount namespace (needs CAP_SYS_ADMIN).
    pub fn map_file(&self, pid: u32) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", self.start, self.end))
    }
}

/// The executable mappings of one process, sorted by address.
#[derive(Debug, Default)]
pub struct AddressSpace {
    mappings: Vec<Mapping>,
}

impl AddressSpace {
    /// Read `/proc/PID/maps`.
    pub fn read(pid: u32) -> std::io::Result<Self> {
        let text = std::fs::read(format!("/proc/{pid}/maps"))?;
        Ok(Self::parse(&text))
    }

    /// Executable mappings of maps text; lines that do not parse are skipped.
    pub fn parse(text: &[u8]) -> Self {
        let mut mappings: Vec<Mapping> = text.split(|&b| b == b'\n').filter_map(parse_line).collect();
        mappings.sort_by_key(|m| m.start);
        Self { mappings }
    }

    /// The mappings, by start address.
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    pub fn into_mappings(self) -> Vec<Mapping> {
        self.mappings
    }

    /// The mapping that holds `addr`.
    pub fn find(&self, addr: u64) -> Option<&Mapping> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        (addr < m.end).then_some(m)
    }
}

/// `START-END PERMS OFFSET MAJ:MIN INODE   PATH`; `None` for mappings that
/// are not executable or lines that do not parse.
fn parse_line(line: &[u8]) -> Option<Mapping> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let dev = fields.next()?;
    let inode = fields.next()?;
    // The path follows padding spaces; it may itself contain spaces.
    let path = fields.next().map(|p| p.trim_ascii_start()).unwrap_or_default();
    if perms.get(2) != Some(&b'x') {
        return None;
    }
    let (start, end) = split_once(range, b'-')?;
    let hex = |s: &[u8]| u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok();
    let (start, end, offset) = (hex(start)?, hex(end)?, hex(offset)?);
    let inode = std::str::from_utf8(inode).ok()?.parse().ok()?;
    if start >= end {
        return None;
    }
    let (major, minor) = split_once(dev, b':')?;
    let dev = (hex(major)? as u32, hex(minor)? as u32);
    Some(Mapping { start, end, offset, dev, inode, kind: kind_of(path) })
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

const DELETED: &[u8] = b" (deleted)";

fn kind_of(path: &[u8]) -> MappingKind {
    let anonymous = [&b"/dev/zero"[..], b"/anon_hugepage", b"/memfd:doublemapper", b"//anon"];
    match path {
        [] => MappingKind::Anonymous,
        b"[vdso]" => MappingKind::Vdso,
        p if p.starts_with(b"[anon:") => MappingKind::Anonymous,
        p if anonymous.iter().any(|a| p.starts_with(a)) => MappingKind::Anonymous,
        [b'/', ..] => {
            let deleted = path.ends_with(DELETED);
            let path = if deleted { &path[..path.len() - DELETED.len()] } else { path };
            MappingKind::File { path: Path::new(OsStr::from_bytes(path)).to_owned(), deleted }
        }
        _ => MappingKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 fe:01 1234                       /usr/bin/app
55d0c0a02000-55d0c0a05000 r-xp 00002000 fe:01 1234                       /usr/bin/app
7f0000000000-7f0000001000 rwxp 00000000 00:00 0 
7f0000100000-7f0000200000 r-xp 00010000 fe:01 99                         /tmp/my app (deleted)
7f0000300000-7f0000301000 r-xp 00000000 00:00 0                          [anon:v8 code]
7f0000400000-7f0000401000 r-xp 00000000 00:01 77                         /memfd:doublemapper (deleted)
7f0000500000-7f0000501000 r-xp 00000000 00:01 78                         /memfd:jit-image (deleted)
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
garbage line
7f0000600000-7f0000500000 r-xp 00000000 00:00 0 
";

    #[test]
    fn parses_executable_mappings_of_every_kind() {
        let space = AddressSpace::parse(MAPS.as_bytes());
        assert_eq!(space.mappings.len(), 8, "{:#?}", space.mappings);
        let app = space.find(0x55d0c0a02010).unwrap();
        assert_eq!(app.kind, MappingKind::File { path: "/usr/bin/app".into(), deleted: false });
        assert_eq!((app.file_offset(0x55d0c0a02010), app.inode, app.dev), (0x2010, 1234, (0xfe, 1)));
        assert_eq!(app.map_file(7), Path::new("/proc/7/map_files/55d0c0a02000-55d0c0a05000"));
        // Not executable: not kept.
        assert!(space.find(0x55d0c0a00010).is_none());
        let deleted = space.find(0x7f0000100000).unwrap();
        assert_eq!(deleted.kind, MappingKind::File { path: "/tmp/my app".into(), deleted: true });
        for jit in [0x7f0000000010, 0x7f0000300000, 0x7f0000400000] {
            assert_eq!(space.find(jit).unwrap().kind, MappingKind::Anonymous, "{jit:#x}");
        }
        let memfd = space.find(0x7f0000500000).unwrap();
        assert_eq!(memfd.kind, MappingKind::File { path: "/memfd:jit-image".into(), deleted: true });
        assert_eq!(space.find(0x7ffd00000100).unwrap().kind, MappingKind::Vdso);
        assert_eq!(space.find(0xffffffffff600000).unwrap().kind, MappingKind::Other);
        // Ends are exclusive; gaps hold nothing.
        assert!(space.find(0x55d0c0a05000).is_none());
        assert!(space.find(0x1000).is_none());
    }

    #[test]
    fn reads_this_process() {
        let space = AddressSpace::read(std::process::id()).unwrap();
        let here = reads_this_process as *const () as usize as u64;
        let m = space.find(here).expect("this function is mapped");
        let exe = std::fs::canonicalize("/proc/self/exe").unwrap();
        assert_eq!(m.kind, MappingKind::File { path: exe, deleted: false });
    }
}
