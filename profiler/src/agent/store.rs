//! The agent's segments: immutable files in `DATA_DIR/segments/`, named
//! `START-END.tpseg` (Unix ns), one per window until merged. A segment is a
//! samples file (the format `record` writes, docs/samples-file.md: a header,
//! its own module, process and frame dictionaries, the stacks and threads,
//! an end record), then the window's noise measurement as JSON (may be
//! empty), then a 16-byte footer: the samples file's length (u64), the
//! CRC-32 of everything before the footer (u32) and the magic `TPSG`,
//! little-endian. It is written to a temporary file, fsynced, renamed into
//! place, and the directory fsynced.
//!
//! On start every segment is checked (length and CRC-32); one that fails,
//! or a temporary file left by a crash, is moved to `DATA_DIR/quarantine/`,
//! reported, and never served. A segment whose span another covers is the
//! source of a merge a crash interrupted after the merged one was in place:
//! it is deleted. Retention is enforced on every write: by age, by total
//! size, and by a floor of free space on the file system.
//!
//! Merging ([`Store::due_merge`], [`Store::replace`]): contiguous windows
//! of a bucket of [`LEVELS`] are merged into one segment once the bucket is
//! old enough, so that long ranges read few files and their count stays
//! bounded.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::{noise::continuous::ContinuousRaw, profile::Profile};

/// Merge levels: windows per bucket, and the bucket's age before it is
/// merged as a multiple of the `compact-after` setting. With 10 s windows
/// and the default 10 min: 5-minute segments after 10 minutes, 1-hour
/// segments after 6 hours.
pub const LEVELS: [(u64, u64); 2] = [(30, 1), (360, 36)];

/// Most bytes on disk one merge reads: a merge holds its sources' union in
/// memory, about 16 times their size on disk when they are windows of an
/// exec storm (1–2 MB each, every short-lived process and thread in them).
/// Such windows gain little from a merge and stay as they are; windows of
/// an ordinary host (tens of KB) merge whole into 5-minute segments.
pub const MAX_MERGE_BYTES: u64 = 2 << 20;

/// What a segment holds.
#[derive(Debug)]
pub struct Stored {
    pub profile: Profile,
    /// The continuous tier's noise of the span (absent in segments of
    /// versions that did not store it).
    pub noise: Option<ContinuousRaw>,
}

const MAGIC: &[u8; 4] = b"TPSG";
const FOOTER: usize = 16;
const SUFFIX: &str = ".tpseg";
/// Files kept in quarantine (the oldest beyond are deleted).
const MAX_QUARANTINED: usize = 32;

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
    /// Quarantined files deleted to keep the newest [`MAX_QUARANTINED`].
    pub quarantine_deleted: u64,
    /// Segments merged into larger ones, and the merged segments written.
    pub merged_sources: u64,
    pub merges: u64,
    /// Sources of an interrupted merge found on start, deleted.
    pub superseded: u64,
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

/// The samples and noise parts of a segment's bytes, checked against its footer.
pub fn check(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if bytes.len() < FOOTER {
        return Err(format!("{} bytes, shorter than its footer", bytes.len()));
    }
    let (body, f) = bytes.split_at(bytes.len() - FOOTER);
    if &f[12..] != MAGIC {
        return Err("no footer (the write did not finish)".into());
    }
    let len = u64::from_le_bytes(f[..8].try_into().unwrap_or_default());
    if len > body.len() as u64 {
        return Err(format!("the footer says {len} bytes of samples, the file holds {}", body.len()));
    }
    let crc = u32::from_le_bytes(f[8..12].try_into().unwrap_or_default());
    if crc32fast::hash(body) != crc {
        return Err("its checksum does not match".into());
    }
    Ok(body.split_at(len as usize))
}

/// A segment's body: the samples file, then the noise as JSON.
fn encode(profile: &Profile, noise: Option<&ContinuousRaw>) -> std::io::Result<(Vec<u8>, u64)> {
    let mut body = Vec::new();
    crate::samples_file::write(profile, &mut body)?;
    let samples = body.len() as u64;
    if let Some(n) = noise {
        serde_json::to_writer(&mut body, n).map_err(std::io::Error::other)?;
    }
    Ok((body, samples))
}

/// A segment's contents, encoded before the store is locked: a merge's
/// encoding takes seconds under an exec storm, and queries list segments.
pub struct Encoded {
    body: Vec<u8>,
    samples: u64,
}

impl Encoded {
    pub fn of(stored: &Stored) -> std::io::Result<Self> {
        Self::window(&stored.profile, stored.noise.as_ref())
    }

    pub fn window(profile: &Profile, noise: Option<&ContinuousRaw>) -> std::io::Result<Self> {
        let (body, samples) = encode(profile, noise)?;
        Ok(Self { body, samples })
    }

    /// Bytes of the file it becomes.
    pub fn file_bytes(&self) -> u64 {
        (self.body.len() + FOOTER) as u64
    }
}

/// Where a segment is about to be written: the store made room for it
/// ([`Store::prepare`]); the file is written without the store's lock
/// ([`Pending::put`]), so that queries never wait on the disk's fsync, and
/// then registered ([`Store::written`]).
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    name: String,
    start: u64,
    end: u64,
}

impl Pending {
    /// Write the segment and its footer to a temporary file beside its
    /// path, fsync it, rename it into place and fsync the directory: the
    /// file's size, or why not.
    pub fn put(&self, encoded: &Encoded) -> Result<u64, StoreError> {
        let (path, body, samples) = (&self.path, &encoded.body, encoded.samples);
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".segment-")
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(io("create a segment in", dir))?;
        tmp.write_all(body).map_err(io("write", path))?;
        tmp.write_all(&footer(samples, crc32fast::hash(body))).map_err(io("write", path))?;
        tmp.as_file().sync_all().map_err(io("sync", path))?;
        tmp.persist(path).map_err(|e| StoreError::Io {
            what: "rename into",
            path: path.to_owned(),
            source: e.error,
        })?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync", dir))?;
        Ok(encoded.file_bytes())
    }
}

/// The span a window covers, Unix ns.
pub fn span(profile: &Profile) -> (u64, u64) {
    let start = profile.start_unix_ns;
    (start, start + profile.window_end_ns.saturating_sub(profile.window_start_ns))
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
        store.drop_superseded();
        store.recount();
        Ok(store)
    }

    /// Delete segments whose span another covers (sources of a merge
    /// interrupted after the merged segment was in place).
    fn drop_superseded(&mut self) {
        let mut keys: Vec<(u64, u64)> = self.segments.keys().copied().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut reach = 0u64;
        for key in keys {
            if key.1 <= reach {
                if let Some(seg) = self.segments.remove(&key) {
                    tracing::info!(segment = %seg.name, "already merged into a larger segment; deleted");
                    if let Err(e) = std::fs::remove_file(&seg.path) {
                        tracing::warn!(segment = %seg.name, %e, "could not delete a merged segment's source");
                    }
                    self.stats.superseded += 1;
                }
            } else {
                reach = key.1;
            }
        }
    }

    fn quarantine(&mut self, path: &Path, name: &str, reason: &str) {
        let to = self.quarantine.join(name);
        match std::fs::rename(path, &to) {
            Ok(()) => tracing::warn!(segment = name, reason, "damaged segment moved to quarantine, not served"),
            Err(e) => tracing::warn!(segment = name, reason, %e, "damaged segment could not be moved; not served"),
        }
        self.stats.quarantined += 1;
        self.stats.quarantine.push(format!("{name}: {reason}"));
        if self.stats.quarantine.len() > MAX_QUARANTINED {
            self.stats.quarantine.remove(0);
        }
        self.trim_quarantine();
    }

    /// Keep the newest [`MAX_QUARANTINED`] files set aside: enough to look
    /// into, never a disk filled by a crash loop.
    fn trim_quarantine(&mut self) {
        let Ok(dir) = std::fs::read_dir(&self.quarantine) else { return };
        let mut files: Vec<(SystemTime, PathBuf)> =
            dir.flatten().filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path()))).collect();
        if files.len() <= MAX_QUARANTINED {
            return;
        }
        files.sort();
        for (_, path) in &files[..files.len() - MAX_QUARANTINED] {
            if std::fs::remove_file(path).is_ok() {
                self.stats.quarantine_deleted += 1;
            }
        }
    }

    fn recount(&mut self) {
        self.stats.segments = self.segments.len() as u64;
        self.stats.bytes = self.segments.values().map(|s| s.bytes).sum();
    }

    /// Write one window as a segment, then enforce retention, all under
    /// `&mut self` (the agent does the three steps apart: encoding and the
    /// file's write go without the store's lock).
    #[cfg(test)]
    pub fn write(&mut self, profile: &Profile, noise: Option<&ContinuousRaw>) -> Result<(), StoreError> {
        let encoded = Encoded::window(profile, noise).map_err(io("encode a segment for", &self.dir))?;
        let (start, end) = span(profile);
        let pending = self.prepare(start, end, encoded.file_bytes())?;
        let result = pending.put(&encoded);
        self.written(pending, result)
    }

    /// Make room for a window's segment of `incoming` bytes covering
    /// `start..end`: enforce retention, and refuse (counted) under the
    /// free-space floor.
    pub fn prepare(&mut self, start: u64, end: u64, incoming: u64) -> Result<Pending, StoreError> {
        self.enforce(now_unix_ns(), incoming);
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
        let name = format!("{start}-{end}{SUFFIX}");
        Ok(Pending { path: self.dir.join(&name), name, start, end })
    }

    /// Register what [`Pending::put`] did: the segment, or a counted
    /// failure (the store stays usable).
    pub fn written(&mut self, pending: Pending, result: Result<u64, StoreError>) -> Result<(), StoreError> {
        match result {
            Ok(bytes) => {
                let Pending { path, name, start, end } = pending;
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

    /// Delete what retention no longer keeps: too old, over the size bound
    /// once `incoming` bytes are written, under the free-space floor (a
    /// disk filled by others is not a reason to delete history: writing
    /// stops instead). Oldest first.
    fn enforce(&mut self, now_ns: u64, incoming: u64) {
        let oldest_kept = now_ns.saturating_sub(self.retention.max_age.as_nanos() as u64);
        while let Some((&key, seg)) = self.segments.first_key_value() {
            let why = if seg.end_unix_ns < oldest_kept {
                &mut self.stats.deleted_by_age
            } else if self.stats.bytes.saturating_add(incoming) > self.retention.max_bytes {
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

    /// The next run of segments to merge: contiguous windows of one bucket
    /// of a [`LEVELS`] entry old enough, the coarsest level first.
    pub fn due_merge(&self, window: Duration, after: Duration, now_ns: u64) -> Option<Vec<Segment>> {
        for &(per, age) in LEVELS.iter().rev() {
            let bucket = (window.as_nanos() as u64).saturating_mul(per).max(1);
            let min_age = (after.as_nanos() as u64).saturating_mul(age);
            let mut run: Vec<&Segment> = Vec::new();
            for seg in self.segments.values() {
                let b = seg.start_unix_ns / bucket;
                if (b + 1).saturating_mul(bucket).saturating_add(min_age) > now_ns {
                    break;
                }
                let bytes: u64 = run.iter().map(|s| s.bytes).sum();
                let continues = run.last().is_some_and(|l| {
                    l.end_unix_ns == seg.start_unix_ns
                        && l.start_unix_ns / bucket == b
                        && bytes.saturating_add(seg.bytes) <= MAX_MERGE_BYTES
                });
                if !continues {
                    if run.len() > 1 {
                        break;
                    }
                    run.clear();
                }
                run.push(seg);
            }
            if run.len() > 1 {
                return Some(run.into_iter().cloned().collect());
            }
        }
        None
    }

    /// Where the merge of `sources` goes, if retention left them all.
    pub fn merge_target(&self, sources: &[Segment]) -> Option<Pending> {
        if !self.holds_all(sources) {
            return None;
        }
        // The span of the sources, as the store knows them.
        let (start, end) = (sources.first()?.start_unix_ns, sources.last()?.end_unix_ns);
        let name = format!("{start}-{end}{SUFFIX}");
        Some(Pending { path: self.dir.join(&name), name, start, end })
    }

    fn holds_all(&self, sources: &[Segment]) -> bool {
        sources.iter().all(|s| self.segments.contains_key(&(s.start_unix_ns, s.end_unix_ns)))
    }

    /// Put the merged segment [`Pending::put`] wrote in place of `sources`
    /// (if retention left them all while it was written; if not, the file
    /// goes): it is in place before any source goes.
    pub fn replace(&mut self, sources: &[Segment], target: Pending, bytes: u64) -> bool {
        let Pending { path, name, start, end } = target;
        if !self.holds_all(sources) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(segment = %name, %e, "could not delete a merge whose sources retention dropped");
            }
            return false;
        }
        for s in sources {
            self.segments.remove(&(s.start_unix_ns, s.end_unix_ns));
            if s.path != path {
                if let Err(e) = std::fs::remove_file(&s.path) {
                    tracing::warn!(segment = %s.name, %e, "could not delete a merged segment's source");
                }
            }
        }
        self.segments.insert((start, end), Segment { path, name, start_unix_ns: start, end_unix_ns: end, bytes });
        self.stats.merges += 1;
        self.stats.merged_sources += sources.len() as u64;
        self.recount();
        true
    }

    /// Move a segment that no longer reads to quarantine.
    pub fn set_aside(&mut self, seg: &Segment, reason: &str) {
        if self.segments.remove(&(seg.start_unix_ns, seg.end_unix_ns)).is_some() {
            self.quarantine(&seg.path, &seg.name, reason);
            self.recount();
        }
    }

    /// The directory segments are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every segment, oldest first.
    pub fn all(&self) -> Vec<Segment> {
        self.segments.values().cloned().collect()
    }
}

/// Read a segment (checked again: the file may have changed since).
pub fn read(seg: &Segment) -> Result<Stored, StoreError> {
    read_parts(seg, crate::samples_file::Parts::ALL, true)
}

/// Read the `parts` of a segment's samples that a reader needs, and its
/// noise if `with_noise`.
pub fn read_parts(seg: &Segment, parts: crate::samples_file::Parts, with_noise: bool) -> Result<Stored, StoreError> {
    let bytes = std::fs::read(&seg.path).map_err(io("read", &seg.path))?;
    let damaged = |reason: String| StoreError::Damaged { path: seg.path.clone(), reason };
    let (samples, noise) = check(&bytes).map_err(damaged)?;
    let profile = crate::samples_file::read_parts_from(samples, &seg.path, parts)
        .map_err(|e| StoreError::Read { path: seg.path.clone(), source: Box::new(e) })?;
    let noise = match noise.is_empty() || !with_noise {
        true => None,
        false => Some(serde_json::from_slice(noise).map_err(|e| damaged(format!("its noise does not parse: {e}")))?),
    };
    Ok(Stored { profile, noise })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start_s: u64) -> Profile {
        Profile {
            start_unix_ns: start_s * 1_000_000_000,
            // CLOCK_MONOTONIC in a real window; any clock that advances will do.
            window_start_ns: start_s * 1_000_000_000,
            window_end_ns: (start_s + 1) * 1_000_000_000,
            duration_ns: 1_000_000_000,
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
            s.write(&window(now + i), None).unwrap();
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
            assert_eq!(read(&seg).unwrap().profile.start_unix_ns, seg.start_unix_ns);
        }
    }

    #[test]
    fn size_retention_drops_the_oldest_first_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), retention(1)).unwrap();
        let now = now_unix_ns() / 1_000_000_000;
        for i in 0..4 {
            s.write(&window(now + i), None).unwrap();
        }
        // Each write first drops what is over the bound: one segment stays.
        let all = s.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].start_unix_ns, (now + 3) * 1_000_000_000);
        assert_eq!(s.stats.deleted_by_size, 3);
    }

    #[test]
    fn old_buckets_merge_and_a_crash_between_leaves_no_double() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), retention(u64::MAX)).unwrap();
        // 1 s windows: level-0 buckets of 30 s. Two full buckets, contiguous.
        let base = (now_unix_ns() / 1_000_000_000 / 3600 - 2) * 3600;
        for i in 0..60 {
            s.write(&window(base + i), None).unwrap();
        }
        let (w, after) = (Duration::from_secs(1), Duration::from_secs(1));
        // Not due yet by age.
        assert!(s.due_merge(w, Duration::from_secs(1 << 30), now_unix_ns()).is_none());
        let run = s.due_merge(w, after, now_unix_ns()).expect("a bucket is due");
        // The coarsest level first: an hour bucket holds all 60.
        assert_eq!(run.len(), 60);
        let first = run.iter().map(|seg| read(seg).unwrap().profile);
        let mut merger: Option<crate::model::window::ProfileMerger> = None;
        for p in first {
            match merger.as_mut() {
                None => merger = Some(crate::model::window::ProfileMerger::new(p)),
                Some(m) => m.add(&p),
            }
        }
        let merged = Stored { profile: merger.unwrap().finish(), noise: None };
        // A crash after the merged segment is in place, before the sources go.
        let keep: Vec<Vec<u8>> = run.iter().map(|seg| std::fs::read(&seg.path).unwrap()).collect();
        // Written without the store's lock; meanwhile a source went (set
        // aside here, as retention could): the merge is dropped, the rest stays.
        let target = s.merge_target(&run).expect("the store holds every source");
        let path = target.path.clone();
        let bytes = target.put(&Encoded::of(&merged).unwrap()).unwrap();
        let mut gone = s.all()[59].clone();
        s.set_aside(&gone, "test");
        assert!(!s.replace(&run, target, bytes));
        assert!(!path.exists(), "the merge of a run retention broke is deleted");
        assert_eq!(s.all().len(), 59);
        assert!(s.merge_target(&run).is_none());
        // Put back, and merged.
        std::fs::rename(s.quarantine.join(&gone.name), &gone.path).unwrap();
        gone.bytes = std::fs::metadata(&gone.path).unwrap().len();
        s.segments.insert((gone.start_unix_ns, gone.end_unix_ns), gone);
        let target = s.merge_target(&run).expect("the store holds every source");
        let bytes = target.put(&Encoded::of(&merged).unwrap()).unwrap();
        assert!(s.replace(&run, target, bytes));
        assert_eq!(s.all().len(), 1);
        assert_eq!(
            (s.all()[0].start_unix_ns, s.all()[0].end_unix_ns),
            (base * 1_000_000_000, (base + 60) * 1_000_000_000)
        );
        assert!(s.due_merge(w, after, now_unix_ns()).is_none(), "nothing left to merge");
        for (seg, bytes) in run.iter().zip(&keep) {
            std::fs::write(&seg.path, bytes).unwrap();
        }
        let s = Store::open(dir.path(), retention(u64::MAX)).unwrap();
        assert_eq!(s.all().len(), 1, "the sources of the merge are deleted on start");
        assert_eq!(s.stats.superseded, 60);
        assert_eq!(read(&s.all()[0]).unwrap().profile.duration_ns, 60 * 1_000_000_000);
    }
}
