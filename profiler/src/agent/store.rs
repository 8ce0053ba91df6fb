//! The agent's segments: one immutable file per window, in
//! `DATA_DIR/segments/`. A segment is a samples file (the format `record`
//! writes, docs/samples-file.md: a header, its own module, process and frame
//! dictionaries, the stacks and threads, an end record) followed by a
//! 16-byte footer: the samples file's length (u64), its CRC-32 (u32) and
//! the magic `TPSG`, little-endian. It is written to a temporary file,
//! fsynced, renamed into place, and the directory fsynced.
//!
//! On start every segment is checked (length and CRC-32); one that fails,
//! or a temporary file left by a crash, is moved to `DATA_DIR/quarantine/`,
//! reported, and never served. Retention is enforced on every write: by
//! age, by total size, and by a floor of free space on the file system.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::profile::Profile;

const MAGIC: &[u8; 4] = b"TPSG";
const FOOTER: usize = 16;
const SUFFIX: &str = ".tpseg";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("segment {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("could not read segment {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: Box<crate::Error>,
    },
}

/// One segment on disk.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    #[serde(skip)]
    pub path: PathBuf,
    pub name: String,
    /// Its window, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub bytes: u64,
}

/// What the store did, for the status endpoint and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStats {
    pub segments: u64,
    pub bytes: u64,
    pub written: u64,
    pub write_errors: u64,
    /// Windows not written because the disk was full (or under its floor).
    pub windows_not_written: u64,
    pub deleted_by_age: u64,
    pub deleted_by_size: u64,
    pub deleted_by_free_space: u64,
    pub quarantined: u64,
    /// What was quarantined, and why (the most recent 32).
    pub quarantine: Vec<String>,
    /// The last write error, if writing has stopped.
    pub last_error: Option<String>,
}

/// Limits the store keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
    pub min_free_bytes: u64,
}

pub struct Store {
    dir: PathBuf,
    quarantine: PathBuf,
    /// By window start.
    segments: BTreeMap<(u64, u64), Segment>,
    retention: Retention,
    pub stats: StoreStats,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { what, path: path.to_owned(), source }
}

/// The footer of `len` bytes of samples with checksum `crc`.
fn footer(len: u64, crc: u32) -> [u8; FOOTER] {
    let mut f = [0u8; FOOTER];
    f[..8].copy_from_slice(&len.to_le_bytes());
    f[8..12].copy_from_slice(&crc.to_le_bytes());
    f[12..].copy_from_slice(MAGIC);
    f
}

/// The samples part of a segment's bytes, checked against its footer.
pub fn check(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < FOOTER {
        return Err(format!("{} bytes, shorter than its footer", bytes.len()));
    }
    let (body, f) = bytes.split_at(bytes.len() - FOOTER);
    if &f[12..] != MAGIC {
        return Err("no footer (the write did not finish)".into());
    }
    let len = u64::from_le_bytes(f[..8].try_into().unwrap_or_default());
    if len != body.len() as u64 {
        return Err(format!("the footer says {len} bytes, the file holds {}", body.len()));
    }
    let crc = u32::from_le_bytes(f[8..12].try_into().unwrap_or_default());
    if crc32fast::hash(body) != crc {
        return Err("its checksum does not match".into());
    }
    Ok(body)
}

fn now_unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Free bytes of the file system holding `dir` (for unprivileged users).
fn free_bytes(dir: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct it is given.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// A segment's window from its name: `START-END.tpseg` (Unix ns).
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (a, b) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Store {
    /// Open (creating) `data_dir`'s store, checking every segment.
    pub fn open(data_dir: &Path, retention: Retention) -> Result<Self, StoreError> {
        let dir = data_dir.join("segments");
        let quarantine = data_dir.join("quarantine");
        for d in [data_dir, &dir, &quarantine] {
            std::fs::create_dir_all(d).map_err(io("create", d))?;
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(io("restrict", d))?;
        }
        let mut store =
            Self { dir: dir.clone(), quarantine, segments: BTreeMap::new(), retention, stats: StoreStats::default() };
        for entry in std::fs::read_dir(&dir).map_err(io("list", &dir))?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let verdict = match parse_name(&name) {
                None => Err("not a segment's name (a write interrupted by a crash leaves such files)".to_owned()),
                Some(span) => std::fs::read(&path).map_err(|e| e.to_string()).and_then(|b| {
                    check(&b)?;
                    Ok((span, b.len() as u64))
                }),
            };
            match verdict {
                Ok(((start, end), bytes)) => {
                    store
                        .segments
                        .insert((start, end), Segment { path, name, start_unix_ns: start, end_unix_ns: end, bytes });
                }
                Err(reason) => store.quarantine(&path, &name, &reason),
            }
        }
        store.recount();
        Ok(store)
    }

    fn quarantine(&mut self, path: &Path, name: &str, reason: &str) {
        let to = self.quarantine.join(name);
        match std::fs::rename(path, &to) {
            Ok(()) => tracing::warn!(segment = name, reason, "damaged segment moved to quarantine, not served"),
            Err(e) => tracing::warn!(segment = name, reason, %e, "damaged segment could not be moved; not served"),
        }
        self.stats.quarantined += 1;
        self.stats.quarantine.push(format!("{name}: {reason}"));
        if self.stats.quarantine.len() > 32 {
            self.stats.quarantine.remove(0);
        }
    }

    fn recount(&mut self) {
        self.stats.segments = self.segments.len() as u64;
        self.stats.bytes = self.segments.values().map(|s| s.bytes).sum();
    }

    /// Write one window as a segment, then enforce retention. A failure to
    /// write is counted and returned; the store stays usable.
    pub fn write(&mut self, profile: &Profile) -> Result<(), StoreError> {
        let start = profile.start_unix_ns;
        let end = start + profile.window_end_ns.saturating_sub(profile.window_start_ns);
        self.enforce(now_unix_ns());
        if free_bytes(&self.dir).is_some_and(|f| f < self.retention.min_free_bytes) {
            self.stats.windows_not_written += 1;
            let reason =
                "the disk is under its free-space floor; collecting goes on, writing resumes when space returns";
            self.stats.last_error = Some(reason.into());
            return Err(StoreError::Io {
                what: "write a segment into",
                path: self.dir.clone(),
                source: std::io::Error::other(reason),
            });
        }
        let mut body = Vec::new();
        crate::samples_file::write(profile, &mut body).map_err(io("encode a segment for", &self.dir))?;
        let name = format!("{start}-{end}{SUFFIX}");
        let path = self.dir.join(&name);
        let result = self.put(&path, &body);
        match result {
            Ok(bytes) => {
                self.stats.written += 1;
                self.stats.last_error = None;
                self.segments
                    .insert((start, end), Segment { path, name, start_unix_ns: start, end_unix_ns: end, bytes });
                self.recount();
                Ok(())
            }
            Err(e) => {
                self.stats.write_errors += 1;
                self.stats.windows_not_written += 1;
                self.stats.last_error = Some(crate::error::format_chain(&e));
                Err(e)
            }
        }
    }

    fn put(&self, path: &Path, body: &[u8]) -> Result<u64, StoreError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".segment-")
            .suffix(".partial")
            .tempfile_in(&self.dir)
            .map_err(io("create a segment in", &self.dir))?;
        tmp.write_all(body).map_err(io("write", path))?;
        tmp.write_all(&footer(body.len() as u64, crc32fast::hash(body))).map_err(io("write", path))?;
        tmp.as_file().sync_all().map_err(io("sync", path))?;
        tmp.persist(path).map_err(|e| StoreError::Io {
            what: "rename into",
            path: path.to_owned(),
            source: e.error,
        })?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io("sync", &self.dir))?;
        Ok((body.len() + FOOTER) as u64)
    }

    /// Delete what retention no longer keeps: too old, over the size
    /// bound, under the free-space floor. Oldest first.
    fn enforce(&mut self, now_ns: u64) {
        let oldest_kept = now_ns.saturating_sub(self.retention.max_age.as_nanos() as u64);
        while let Some((&key, seg)) = self.segments.first_key_value() {
            let why = if seg.end_unix_ns < oldest_kept {
                &mut self.stats.deleted_by_age
            } else if self.stats.bytes > self.retention.max_bytes {
                &mut self.stats.deleted_by_size
            } else if free_bytes(&self.dir).is_some_and(|f| f < self.retention.min_free_bytes) {
                &mut self.stats.deleted_by_free_space
            } else {
                break;
            };
            *why += 1;
            if let Err(e) = std::fs::remove_file(&seg.path) {
                tracing::warn!(segment = %seg.name, %e, "could not delete a segment retention dropped");
            }
            self.segments.remove(&key);
            self.recount();
        }
    }

    /// New limits (a reloaded configuration); enforced from the next write.
    pub fn set_retention(&mut self, retention: Retention) {
        self.retention = retention;
    }

    /// Segments whose windows overlap `from..to` (Unix ns), oldest first.
    pub fn range(&self, from_ns: u64, to_ns: u64) -> Vec<Segment> {
        self.segments.values().filter(|s| s.end_unix_ns > from_ns && s.start_unix_ns < to_ns).cloned().collect()
    }

    /// Every segment, oldest first.
    pub fn all(&self) -> Vec<Segment> {
        self.segments.values().cloned().collect()
    }
}

/// Read a segment (checked again: the file may have changed since).
pub fn read(seg: &Segment) -> Result<Profile, StoreError> {
    let bytes = std::fs::read(&seg.path).map_err(io("read", &seg.path))?;
    let body = check(&bytes).map_err(|reason| StoreError::Damaged { path: seg.path.clone(), reason })?;
    crate::samples_file::read_from(body, &seg.path)
        .map_err(|e| StoreError::Read { path: seg.path.clone(), source: Box::new(e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start_s: u64) -> Profile {
        Profile {
            start_unix_ns: start_s * 1_000_000_000,
            window_start_ns: 0,
            window_end_ns: 1_000_000_000,
            frequency_hz: 99,
            ..Profile::default()
        }
    }

    fn retention(max_bytes: u64) -> Retention {
        Retention { max_age: Duration::from_secs(1 << 40), max_bytes, min_free_bytes: 0 }
    }

    #[test]
    fn segments_survive_a_reopen_and_damaged_ones_are_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), retention(u64::MAX)).unwrap();
        let now = now_unix_ns() / 1_000_000_000;
        for i in 0..3 {
            s.write(&window(now + i)).unwrap();
        }
        let all = s.all();
        assert_eq!(all.len(), 3);
        // Tear one, and leave a temporary file as a crash would.
        let torn = &all[1];
        let b = std::fs::read(&torn.path).unwrap();
        std::fs::write(&torn.path, &b[..b.len() - 5]).unwrap();
        std::fs::write(dir.path().join("segments/.segment-x.partial"), b"half").unwrap();
        let s = Store::open(dir.path(), retention(u64::MAX)).unwrap();
        assert_eq!(s.all().len(), 2);
        assert_eq!(s.stats.quarantined, 2, "{:?}", s.stats.quarantine);
        assert!(dir.path().join("quarantine").join(&torn.name).exists());
        for seg in s.all() {
            assert_eq!(read(&seg).unwrap().start_unix_ns, seg.start_unix_ns);
        }
    }

    #[test]
    fn size_retention_drops_the_oldest_first_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), retention(1)).unwrap();
        let now = now_unix_ns() / 1_000_000_000;
        for i in 0..4 {
            s.write(&window(now + i)).unwrap();
        }
        // Each write first drops what is over the bound: one segment stays.
        let all = s.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].start_unix_ns, (now + 3) * 1_000_000_000);
        assert_eq!(s.stats.deleted_by_size, 3);
    }
}
