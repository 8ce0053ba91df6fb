//! perf map files: JIT runtimes (`node --perf-basic-prof`, JVM agents, …)
//! write `START SIZE NAME` lines (hex) to `/tmp/perf-PID.map` for the code
//! they generate in anonymous memory. The file is opened the first time a
//! process shows an address outside any module, while it still lives, and
//! read again at the end: runtimes append to it as they compile.
//!
//! It is read through `/proc/PID/root`, with the pid the process has in its
//! own pid namespace (`NSpid`), so processes in containers are covered.

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    io,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::PathBuf,
    sync::Arc,
};

/// A map larger than this is read only up to it.
const MAX_BYTES: u64 = 256 << 20;

/// Why a perf map was not used.
#[derive(Debug, thiserror::Error)]
pub enum PerfMapError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} is owned by uid {owner}, neither root nor the process's owner (uid {process_owner})")]
    Owner { path: PathBuf, owner: u32, process_owner: u32 },
}

/// One process's perf map.
#[derive(Debug)]
pub struct PerfMap {
    file: File,
    path: PathBuf,
    /// Bytes of complete lines read so far.
    pos: u64,
    /// By start address: (end, name). A line that overlaps earlier ones
    /// replaces them: runtimes reuse the memory of code they discard.
    symbols: BTreeMap<u64, (u64, Arc<str>)>,
}

impl PerfMap {
    /// The perf map of live process `pid`; `Ok(None)` when it has none.
    pub fn open(pid: u32) -> Result<Option<Self>, PerfMapError> {
        let nspid = ns_pid(pid).unwrap_or(pid);
        let path = PathBuf::from(format!("/proc/{pid}/root/tmp/perf-{nspid}.map"));
        let io_err = |source| PerfMapError::Io { path: path.clone(), source };
        // Neither follow a planted symlink nor block on a FIFO.
        let file = match std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(PerfMapError::NotAFile { path });
        }
        // Like perf: names only from the process's own user or root.
        let process_owner = std::fs::metadata(format!("/proc/{pid}")).map_err(io_err)?.uid();
        if meta.uid() != 0 && meta.uid() != process_owner {
            return Err(PerfMapError::Owner { path, owner: meta.uid(), process_owner });
        }
        let mut map = Self { file, path: path.clone(), pos: 0, symbols: BTreeMap::new() };
        map.refresh().map_err(io_err)?;
        Ok(Some(map))
    }

    /// Read lines appended since the last read.
    pub fn refresh(&mut self) -> io::Result<()> {
        let size = self.file.metadata()?.len();
        if size < self.pos {
            // Truncated: the runtime started over (a new program in this process).
            self.pos = 0;
            self.symbols.clear();
        }
        let end = size.min(MAX_BYTES);
        if end <= self.pos {
            if size > MAX_BYTES && self.pos > 0 {
                tracing::debug!(path = %self.path.display(), size, "perf map read up to its size limit");
            }
            return Ok(());
        }
        let mut buf = vec![0; (end - self.pos) as usize];
        let n = crate::sys::io::read_at_most(&self.file, &mut buf, self.pos)?;
        buf.truncate(n);
        // Only complete lines: the runtime may be writing the last one.
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in buf[..complete].split(|&b| b == b'\n') {
            if let Some((start, size, name)) = parse_line(line) {
                self.insert(start, start.saturating_add(size), Arc::from(name));
            }
        }
        self.pos += complete as u64;
        Ok(())
    }

    fn insert(&mut self, start: u64, end: u64, name: Arc<str>) {
        let covered: Vec<u64> = self.symbols.range(start..end).map(|(&s, _)| s).collect();
        for s in covered {
            self.symbols.remove(&s);
        }
        if let Some((_, (prev_end, _))) = self.symbols.range_mut(..start).next_back() {
            *prev_end = (*prev_end).min(start);
        }
        self.symbols.insert(start, (end, name));
    }

    /// The name of the code at `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&Arc<str>> {
        let (_, (end, name)) = self.symbols.range(..=addr).next_back()?;
        (addr < *end).then_some(name)
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}

/// `START SIZE NAME`, hex numbers with or without `0x`.
fn parse_line(line: &[u8]) -> Option<(u64, u64, &str)> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let start = hex(parts.next()?)?;
    let size = hex(parts.next()?)?;
    let name = parts.next()?.trim();
    (size > 0 && !name.is_empty()).then_some((start, size, name))
}

/// The pid `pid` has in its own (innermost) pid namespace.
pub(crate) fn ns_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// The perf maps of every process that showed JIT addresses.
#[derive(Debug, Default)]
pub struct PerfMaps {
    /// `None`: looked for and not found (or refused).
    maps: HashMap<u32, Option<PerfMap>>,
}

impl PerfMaps {
    /// Open `pid`'s perf map if this is the first time it is asked for.
    pub fn ensure(&mut self, pid: u32) {
        self.maps.entry(pid).or_insert_with(|| match PerfMap::open(pid) {
            Ok(map) => {
                if let Some(m) = &map {
                    tracing::debug!(pid, path = %m.path.display(), symbols = m.len(), "perf map opened");
                }
                map
            }
            Err(err) => {
                tracing::warn!(pid, %err, "perf map not used; JIT frames of this process stay unnamed");
                None
            }
        });
    }

    /// Read what every runtime appended since; at the end of the capture.
    pub fn refresh_all(&mut self) {
        for (pid, map) in self.maps.iter_mut() {
            if let Some(m) = map {
                if let Err(err) = m.refresh() {
                    tracing::debug!(pid, path = %m.path.display(), %err, "could not read the rest of a perf map");
                }
            }
        }
    }

    /// The name of `pid`'s JIT code at `addr`.
    pub fn lookup(&self, pid: u32, addr: u64) -> Option<Arc<str>> {
        self.maps.get(&pid)?.as_ref()?.lookup(addr).cloned()
    }

    /// Forget the maps of processes no longer alive; returns how many.
    pub fn evict(&mut self, live: &rustc_hash::FxHashSet<u32>) -> u64 {
        let before = self.maps.len();
        self.maps.retain(|pid, _| live.contains(pid));
        (before - self.maps.len()) as u64
    }

    /// Perf maps found.
    pub fn count(&self) -> usize {
        self.maps.values().filter(|m| m.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn parses_lines_and_later_lines_replace_overlapping_ones() {
        assert_eq!(parse_line(b"7f00 20 LazyCompile:*hot /x.js:3"), Some((0x7f00, 0x20, "LazyCompile:*hot /x.js:3")));
        assert_eq!(parse_line(b"0x10 0x8 a\r"), Some((0x10, 8, "a")));
        for bad in [&b"zz 10 a"[..], b"10 0 empty", b"10 8", b"", b"10 8 \xff"] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perf-1.map");
        let mut f = std::fs::File::create(&path).unwrap();
        let mut map = PerfMap { file: File::open(&path).unwrap(), path, pos: 0, symbols: BTreeMap::new() };
        write!(f, "1000 100 old\n2000 10 other\n1100 1").unwrap();
        map.refresh().unwrap();
        // The incomplete last line waits for its end.
        assert_eq!(map.len(), 2);
        assert_eq!(map.lookup(0x10ff).map(|s| &**s), Some("old"));
        assert_eq!(map.lookup(0x1100), None);
        write!(f, "0 new\n1080 10 moved\n").unwrap();
        map.refresh().unwrap();
        assert_eq!(map.lookup(0x1100).map(|s| &**s), Some("new"));
        assert_eq!(map.lookup(0x1085).map(|s| &**s), Some("moved"));
        // `old` now ends where `moved` begins.
        assert_eq!(map.lookup(0x1000).map(|s| &**s), Some("old"));
        assert_eq!(map.lookup(0x1090), None);
        assert_eq!(map.lookup(0x2009).map(|s| &**s), Some("other"));
        // Truncated and rewritten: starts over.
        f.set_len(0).unwrap();
        let mut f = std::fs::File::options().write(true).open(&map.path).unwrap();
        writeln!(f, "3000 10 fresh").unwrap();
        map.refresh().unwrap();
        assert_eq!(map.lookup(0x1000), None);
        assert_eq!(map.lookup(0x3000).map(|s| &**s), Some("fresh"));
    }

    #[test]
    fn ns_pid_of_this_process() {
        // Outside containers the innermost pid is the pid itself.
        let me = std::process::id();
        assert!(ns_pid(me).is_some());
        assert_eq!(PerfMap::open(me).unwrap().map(|m| m.len()), None);
    }
}
