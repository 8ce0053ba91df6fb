//! The executable mappings of a process, from `/proc/PID/maps`.

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
/// address. Lines that do not parse are skipped (the kernel writes them,
/// but a short read of a changing file may cut the last one).
pub fn parse_exec_mappings(text: &str) -> Vec<ExecMapping> {
    let mut out: Vec<ExecMapping> = text.lines().filter_map(parse_line).collect();
    out.sort_by_key(|m| m.start);
    out
}

fn parse_line(line: &str) -> Option<ExecMapping> {
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_start_matches(' ');
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (f, r) = trimmed.split_at(end);
        rest = r;
        (!f.is_empty()).then_some(f)
    };
    let range = field()?;
    let perms = field()?;
    let offset = field()?;
    let dev = field()?;
    let inode = field()?;
    let path = rest.trim_start_matches(' ');

    if perms.as_bytes().get(2) != Some(&b'x') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end <= start {
        return None;
    }
    let offset = u64::from_str_radix(offset, 16).ok()?;
    let inode: u64 = inode.parse().ok()?;
    let backing = if path == "[vdso]" {
        Backing::Vdso
    } else if inode != 0 && path.starts_with('/') {
        let (path, deleted) = match path.strip_suffix(" (deleted)") {
            Some(p) => (p, true),
            None => (path, false),
        };
        Backing::File { path: Arc::from(path), deleted }
    } else {
        Backing::Anonymous
    };
    Some(ExecMapping { start, end, offset, dev: Arc::from(dev), inode, backing })
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
