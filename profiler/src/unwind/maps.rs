//! The executable mappings of a process as the unwinder keys them (from
//! `/proc/PID/maps`, read by [`crate::enrich::maps`]).

use std::sync::Arc;

/// What backs an executable mapping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Backing {
    /// A file; `path` as the kernel shows it, without a ` (deleted)` suffix.
    File { path: Arc<str>, deleted: bool },
    /// The kernel's vDSO.
    Vdso,
    /// Anything else: anonymous memory (JIT code), `[vsyscall]`.
    Anonymous,
}

/// One executable mapping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecMapping {
    pub start: u64,
    pub end: u64,
    /// Offset in the file of the byte mapped at `start`.
    pub offset: u64,
    /// Device (`major:minor` as printed) and inode of the file, 0 if none.
    pub dev: Arc<str>,
    pub inode: u64,
    pub backing: Backing,
}

impl ExecMapping {
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The name frames in it are reported under: the file's path, `[vdso]`,
    /// or `[anon]`.
    pub fn name(&self) -> &str {
        match &self.backing {
            Backing::File { path, .. } => path,
            Backing::Vdso => "[vdso]",
            Backing::Anonymous => "[anon]",
        }
    }
}

/// The executable mappings of `/proc/PID/maps` text, sorted by start
/// address, as the unwinder keys them. Parsed by the one maps parser
/// ([`crate::enrich::maps`]); lines that do not parse are skipped (a short
/// read of a changing file may cut the last one).
pub fn parse_exec_mappings(text: &str) -> Vec<ExecMapping> {
    crate::enrich::maps::AddressSpace::parse(text.as_bytes()).into_mappings().into_iter().map(exec_mapping).collect()
}

fn exec_mapping(m: crate::enrich::maps::Mapping) -> ExecMapping {
    use crate::enrich::maps::MappingKind;
    let backing = match m.kind {
        MappingKind::Vdso => Backing::Vdso,
        MappingKind::File { path, deleted } if m.inode != 0 => {
            Backing::File { path: Arc::from(path.to_string_lossy().as_ref()), deleted }
        }
        _ => Backing::Anonymous,
    };
    let dev = Arc::from(format!("{:02x}:{:02x}", m.dev.0, m.dev.1));
    ExecMapping { start: m.start, end: m.end, offset: m.offset, dev, inode: m.inode, backing }
}

/// The mapping containing `addr`, in mappings sorted by start.
pub fn find(mappings: &[ExecMapping], addr: u64) -> Option<usize> {
    let i = mappings.partition_point(|m| m.start <= addr);
    let i = i.checked_sub(1)?;
    mappings[i].contains(addr).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_format() {
        let text = "\
55d4c0a00000-55d4c0a28000 r--p 00000000 fe:01 1234   /usr/bin/python3.11
55d4c0a28000-55d4c0d00000 r-xp 00028000 fe:01 1234   /usr/bin/python3.11
7f0000000000-7f0000001000 rwxp 00000000 00:00 0 
7f1000000000-7f1000002000 r-xp 00001000 08:02 99     /tmp/a b (deleted)
7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
garbage line
";
        let m = parse_exec_mappings(text);
        assert_eq!(m.len(), 5, "{m:?}");
        assert_eq!(m[0].start, 0x7ffd1000);
        assert_eq!(m[0].backing, Backing::Vdso);
        assert_eq!(m[1].offset, 0x28000);
        assert_eq!(m[1].backing, Backing::File { path: "/usr/bin/python3.11".into(), deleted: false });
        assert_eq!(m[1].inode, 1234);
        assert_eq!(&*m[1].dev, "fe:01");
        assert_eq!(m[2].backing, Backing::Anonymous);
        assert_eq!(m[3].backing, Backing::File { path: "/tmp/a b".into(), deleted: true });
        assert_eq!(m[4].backing, Backing::Anonymous);
        assert_eq!(find(&m, 0x55d4c0a28000), Some(1));
        assert_eq!(find(&m, 0x55d4c0cfffff), Some(1));
        assert_eq!(find(&m, 0x55d4c0d00000), None);
        assert_eq!(find(&m, 0), None);
    }
}
