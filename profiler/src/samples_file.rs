//! `samples.jsonl.zst`: everything a capture measured, so that `tailprof
//! report` can re-slice it without re-recording.
//!
//! Format (documented in docs/samples-file.md): a zstd stream (with a
//! content checksum) of JSON lines, one record each, `{"KIND": {...}}`:
//! first a `header`, then `module`, `process`, `frame` (interned: stacks
//! refer to frames by their order), `stack`, `off_cpu` and `thread`
//! records, and last an `end` record with the number of records before
//! it. On-CPU samples are kept aggregated by (process generation, thread,
//! comm, syscall, stack), which is every attribute a `--group-by`
//! dimension can ask for; off-CPU time as the kernel aggregated it.
//! A stream that ends early, fails its checksum, or lacks its header or
//! end record is refused as a whole.

use std::{
    collections::{BTreeSet, HashMap},
    io::{BufRead, BufReader, Write},
    path::Path,
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::{
    enrich::{fd_target::BlockedOn, process::ProcessInfo, processes::EnrichStats},
    group::GroupBy,
    profile::{
        Dropped, Frame, FrameKind, Frames, LimitHit, Module, OffCpuStack, Profile, SampleTimes, SourceLine, Stack,
        StateSamples,
    },
    state_sampler::SamplerStats,
    Error, Result,
};

pub const SAMPLES_FILE: &str = "samples.jsonl.zst";
const FORMAT: &str = "tailprof-samples";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    arch: String,
    start_unix_ns: u64,
    duration_ns: u64,
    frequency_hz: u64,
    samples: u64,
    lost_samples: u64,
    dropped_events: u64,
    dropped: Dropped,
    window_start_ns: u64,
    window_end_ns: u64,
    state_hz: u64,
    state_sampler: SamplerStats,
    untrusted_times: Vec<u32>,
    limits_hit: Vec<LimitHit>,
    enrichment: EnrichStats,
    group_by: GroupBy,
    /// `--lines` at record time (absent in older files).
    #[serde(default)]
    lines: bool,
    /// Absent in older files.
    #[serde(default)]
    symbolize_ns: u64,
    /// Absent in older files and with `--unwind fp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unwind: Option<crate::unwinding::UnwindReport>,
    /// Absent in older files, which were all deep.
    #[serde(default)]
    tier: crate::tier::Tier,
    /// Absent without `--cpu-budget` and in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    governor: Option<crate::governor::GovernorReport>,
    /// The collector's caches after the window; absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caches: Option<crate::model::stats::CacheReport>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FrameRec {
    name: String,
    kernel: bool,
    module: Option<usize>,
    address: u64,
    /// Named from a perf map. The fields below are absent when false or
    /// unknown (and in older files).
    #[serde(default, skip_serializing_if = "is_false")]
    jit: bool,
    /// Inlined into the frame before it.
    #[serde(default, skip_serializing_if = "is_false")]
    inlined: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    line: u32,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Serialize, Deserialize)]
struct StackRec {
    pid: u32,
    tid: u32,
    comm: String,
    process: u32,
    syscall: i32,
    count: u64,
    /// Frame ids, outermost first.
    frames: Vec<u32>,
    /// Sample times in order, to the microsecond: the first in µs after
    /// the header's `start_unix_ns`, each next one in µs after the one
    /// before (absent in older files).
    #[serde(default, rename = "t", skip_serializing_if = "Vec::is_empty")]
    times: Vec<u64>,
    /// Each time's governor weight, absent while all are 1.
    #[serde(default, rename = "w", skip_serializing_if = "Vec::is_empty")]
    weights: Vec<u32>,
}

impl StackRec {
    /// Times as (offset-then-delta) µs and weights. Microseconds keep a
    /// 10 ms sampling period's times exact enough and cost a third less
    /// than nanoseconds once compressed.
    fn encode_times(times: &SampleTimes, count: u64, start_unix_ns: u64) -> (Vec<u64>, Vec<u32>) {
        if times.weight() != count {
            // Times that do not account for every sample are not kept.
            return (Vec::new(), Vec::new());
        }
        let sorted = times.sorted();
        let mut prev = 0;
        let mut ts = Vec::with_capacity(sorted.len());
        let mut ws = Vec::new();
        for (t, w) in sorted.iter() {
            // A sample a moment before the window's start counts at its start.
            let us = t.saturating_sub(start_unix_ns) / 1_000;
            ts.push(us - prev);
            prev = us;
            ws.push(w);
        }
        if !sorted.has_weights() {
            ws.clear();
        }
        (ts, ws)
    }

    /// The times back, checked against the count they stand for.
    fn decode_times(&self, start_unix_ns: u64) -> std::result::Result<SampleTimes, String> {
        if !self.weights.is_empty() && self.weights.len() != self.times.len() {
            return Err(format!("a stack has {} sample times but {} weights", self.times.len(), self.weights.len()));
        }
        let mut out = SampleTimes::default();
        let mut us: u64 = 0;
        for (i, &d) in self.times.iter().enumerate() {
            let at = us
                .checked_add(d)
                .inspect(|&sum| us = sum)
                .and_then(|sum| sum.checked_mul(1_000))
                .and_then(|ns| ns.checked_add(start_unix_ns))
                .ok_or_else(|| "a sample time overflows".to_owned())?;
            out.push(at, self.weights.get(i).copied().unwrap_or(1));
        }
        if !out.is_empty() && out.weight() != self.count {
            return Err(format!(
                "a stack's {} sample times stand for {} samples, not its count {}",
                out.len(),
                out.weight(),
                self.count
            ));
        }
        Ok(out)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct OffCpuRec {
    pid: u32,
    tid: u32,
    comm: String,
    process: u32,
    state: u32,
    syscall: i32,
    waker_tid: u32,
    waker_comm: String,
    stack_lost: bool,
    ns: u64,
    count: u64,
    frames: Vec<u32>,
}

/// Exact times of a thread (`profiler_common::ThreadTimes`).
#[derive(Debug, Serialize, Deserialize)]
struct TimesRec {
    tgid: u32,
    state: u32,
    since_ns: u64,
    on_cpu_ns: u64,
    off_cpu_ns: [u64; profiler_common::OFF_CPU_STATES],
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ThreadRec {
    tid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    process: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    times: Option<TimesRec>,
    /// (tgid, snapshots by state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_samples: Option<(u32, StateSamples)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    blocked_on: Vec<BlockedOn>,
    /// Continuous tier (absent otherwise and in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    counters: Option<crate::continuous::CounterExtras>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Header(Box<Header>),
    Module(Module),
    Process(Box<ProcessInfo>),
    Frame(FrameRec),
    Stack(StackRec),
    OffCpu(OffCpuRec),
    Thread(ThreadRec),
    End { records: u64 },
}

/// The writer: counts records and interns frames (ids are the order of first use).
struct Out<'a> {
    z: zstd::Encoder<'static, &'a mut dyn Write>,
    records: u64,
    frame_ids: HashMap<Frame, u32>,
}

impl Out<'_> {
    fn put(&mut self, r: &Record) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.z, r)?;
        self.z.write_all(b"\n")?;
        self.records += 1;
        Ok(())
    }

    /// Frame ids of a stack, writing frames not seen before.
    fn frames(&mut self, list: &[Frame]) -> std::io::Result<Vec<u32>> {
        let mut out = Vec::with_capacity(list.len());
        for f in list {
            let next = self.frame_ids.len() as u32;
            let id = *self.frame_ids.entry(f.clone()).or_insert(next);
            if id == next {
                let rec = FrameRec {
                    name: f.name.to_string(),
                    kernel: f.kind == FrameKind::Kernel,
                    module: f.module,
                    address: f.address,
                    jit: f.kind == FrameKind::Jit,
                    inlined: f.inlined,
                    file: f.line.as_ref().map(|l| l.file.to_string()),
                    line: f.line.as_ref().map_or(0, |l| l.line),
                };
                self.put(&Record::Frame(rec))?;
            }
            out.push(id);
        }
        Ok(out)
    }
}

/// Write `profile` as a samples file into `w`.
pub fn write(profile: &Profile, w: &mut dyn Write) -> std::io::Result<()> {
    let mut z = zstd::Encoder::new(w, 3)?;
    z.include_checksum(true)?;
    // A 512 KiB match window, not level 3's 2 MiB: the encoder's and every
    // reader's buffers are a quarter of the size, for a file a few percent larger.
    z.window_log(19)?;
    let mut out = Out { z, records: 0, frame_ids: HashMap::new() };
    let p = profile;
    out.put(&Record::Header(Box::new(Header {
        format: FORMAT.into(),
        version: VERSION,
        arch: p.arch.clone(),
        start_unix_ns: p.start_unix_ns,
        duration_ns: p.duration_ns,
        frequency_hz: p.frequency_hz,
        samples: p.samples,
        lost_samples: p.lost_samples,
        dropped_events: p.dropped_events,
        dropped: p.dropped,
        window_start_ns: p.window_start_ns,
        window_end_ns: p.window_end_ns,
        state_hz: p.state_hz,
        state_sampler: p.state_sampler,
        untrusted_times: p.untrusted_times.clone(),
        limits_hit: p.limits_hit.clone(),
        enrichment: p.enrichment,
        group_by: p.group_by.clone(),
        lines: p.lines,
        symbolize_ns: p.symbolize_ns,
        unwind: p.unwind.clone(),
        tier: p.tier,
        governor: p.governor.clone(),
        caches: p.caches.clone(),
    })))?;
    for m in &p.modules {
        out.put(&Record::Module(m.clone()))?;
    }
    for info in &p.processes {
        out.put(&Record::Process(Box::new(info.clone())))?;
    }
    for s in &p.stacks {
        let frames = out.frames(&s.frames)?;
        let (times, weights) = StackRec::encode_times(&s.times, s.count, p.start_unix_ns);
        let rec = StackRec {
            pid: s.pid,
            tid: s.tid,
            comm: s.comm.clone(),
            process: s.process,
            syscall: s.syscall,
            count: s.count,
            frames,
            times,
            weights,
        };
        out.put(&Record::Stack(rec))?;
    }
    for s in &p.off_cpu {
        let frames = out.frames(&s.frames)?;
        let rec = OffCpuRec {
            pid: s.pid,
            tid: s.tid,
            comm: s.comm.to_string(),
            process: s.process,
            state: s.state,
            syscall: s.syscall,
            waker_tid: s.waker_tid,
            waker_comm: s.waker_comm.to_string(),
            stack_lost: s.stack_lost,
            ns: s.ns,
            count: s.count,
            frames,
        };
        out.put(&Record::OffCpu(rec))?;
    }
    let tids: BTreeSet<u32> = p
        .comms
        .keys()
        .chain(p.thread_process.keys())
        .chain(p.thread_times.keys())
        .chain(p.state_samples.keys())
        .chain(p.blocked_on.keys())
        .copied()
        .collect();
    for tid in tids {
        let rec = ThreadRec {
            tid,
            comm: p.comms.get(&tid).map(|c| c.to_string()),
            process: p.thread_process.get(&tid).copied(),
            times: p.thread_times.get(&tid).map(|t| TimesRec {
                tgid: t.tgid,
                state: t.state,
                since_ns: t.since_ns,
                on_cpu_ns: t.on_cpu_ns,
                off_cpu_ns: t.off_cpu_ns,
            }),
            state_samples: p.state_samples.get(&tid).copied(),
            blocked_on: p.blocked_on.get(&tid).cloned().unwrap_or_default(),
            counters: p.counter_extras.get(&tid).copied(),
        };
        out.put(&Record::Thread(rec))?;
    }
    let end = Record::End { records: out.records };
    out.put(&end)?;
    out.z.finish()?;
    Ok(())
}

/// Read the samples file of capture directory `dir`.
pub fn read(dir: &Path) -> Result<Profile> {
    let path = dir.join(SAMPLES_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let reason = if dir.is_dir() { format!("it has no {SAMPLES_FILE}") } else { "no such directory".into() };
            return Err(Error::NotACapture { dir: dir.to_owned(), reason });
        }
        Err(e) => return Err(Error::NotACapture { dir: dir.to_owned(), reason: format!("{SAMPLES_FILE}: {e}") }),
    };
    read_from(file, &path)
}

/// What a reader needs of a samples file. The records it does not need are
/// counted (the end record still checks their number) but not parsed: a
/// flame graph of an exec storm's window needs its stacks and processes,
/// not the exact times of its 30,000 threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub stacks: bool,
    pub off_cpu: bool,
    /// Per-thread records: exact times, names, snapshots, what they were blocked on.
    pub threads: bool,
}

impl Parts {
    pub const ALL: Parts = Parts { stacks: true, off_cpu: true, threads: true };

    /// A record line this reader skips.
    fn skips(&self, line: &str) -> bool {
        (!self.threads && line.starts_with("{\"thread\":"))
            || (!self.off_cpu && line.starts_with("{\"off_cpu\":"))
            || (!self.stacks && line.starts_with("{\"stack\":"))
    }
}

/// Read and check a samples file (a capture's, or an agent's segment),
/// already open; `path` names it in errors.
pub fn read_from(file: impl std::io::Read, path: &Path) -> Result<Profile> {
    read_parts_from(file, path, Parts::ALL)
}

/// [`read_from`], keeping only `parts` (the other records are empty).
pub fn read_parts_from(file: impl std::io::Read, path: &Path, parts: Parts) -> Result<Profile> {
    let path = path.to_owned();
    let corrupt = |reason: String| Error::CorruptCapture { path: path.clone(), reason };
    let decoder = zstd::Decoder::new(file).map_err(|e| corrupt(e.to_string()))?;
    let mut profile = Profile::default();
    let mut frames: Vec<Frame> = Vec::new();
    let mut last_comm: Option<(u32, Arc<str>)> = None;
    let mut threads = ThreadColumns::default();
    let mut header_seen = false;
    let mut ended = false;
    // Stacks with the same frames share them (the blocked stacks of a
    // pool's idle threads are one stack many times).
    let mut shared: HashMap<Vec<u32>, Frames> = HashMap::new();
    let mut resolve = |frames: &[Frame], ids: Vec<u32>| -> Result<Frames, String> {
        if let Some(f) = shared.get(&ids) {
            return Ok(f.clone());
        }
        let resolved: Frames = ids
            .iter()
            .map(|&i| frames.get(i as usize).cloned().ok_or_else(|| format!("frame {i} is not defined")))
            .collect::<Result<_, String>>()?;
        shared.insert(ids, resolved.clone());
        Ok(resolved)
    };
    for (n, line) in BufReader::new(decoder).lines().enumerate() {
        // Records before this one.
        let records = n as u64;
        let line = line.map_err(|e| corrupt(e.to_string()))?;
        if ended {
            return Err(corrupt(format!("line {}: data after the end record", n + 1)));
        }
        if header_seen && parts.skips(&line) {
            continue;
        }
        let record: Record = serde_json::from_str(&line).map_err(|e| corrupt(format!("line {}: {e}", n + 1)))?;
        if !header_seen && !matches!(record, Record::Header(_)) {
            return Err(corrupt("it does not start with a header".into()));
        }
        match record {
            Record::Header(h) => {
                if header_seen {
                    return Err(corrupt(format!("line {}: a second header", n + 1)));
                }
                if h.format != FORMAT || h.version != VERSION {
                    return Err(corrupt(format!(
                        "it is {} version {}, this tailprof reads {FORMAT} version {VERSION}",
                        h.format, h.version
                    )));
                }
                header_seen = true;
                profile = Profile {
                    arch: h.arch,
                    start_unix_ns: h.start_unix_ns,
                    duration_ns: h.duration_ns,
                    frequency_hz: h.frequency_hz,
                    samples: h.samples,
                    lost_samples: h.lost_samples,
                    dropped_events: h.dropped_events,
                    dropped: h.dropped,
                    window_start_ns: h.window_start_ns,
                    window_end_ns: h.window_end_ns,
                    state_hz: h.state_hz,
                    state_sampler: h.state_sampler,
                    untrusted_times: h.untrusted_times,
                    limits_hit: h.limits_hit,
                    enrichment: h.enrichment,
                    group_by: h.group_by,
                    lines: h.lines,
                    symbolize_ns: h.symbolize_ns,
                    unwind: h.unwind,
                    tier: h.tier,
                    governor: h.governor,
                    caches: h.caches,
                    ..Profile::default()
                };
            }
            Record::Module(m) => profile.modules.push(m),
            Record::Process(p) => profile.processes.push(*p),
            Record::Frame(f) => frames.push(Frame {
                name: Arc::from(f.name),
                kind: match (f.kernel, f.jit) {
                    (true, _) => FrameKind::Kernel,
                    (false, true) => FrameKind::Jit,
                    (false, false) => FrameKind::User,
                },
                module: f.module,
                address: f.address,
                inlined: f.inlined,
                line: f.file.map(|file| SourceLine { file: Arc::from(file), line: f.line }),
            }),
            Record::Stack(mut s) => profile.stacks.push(Stack {
                frames: resolve(&frames, std::mem::take(&mut s.frames)).map_err(corrupt)?,
                times: s.decode_times(profile.start_unix_ns).map_err(corrupt)?,
                pid: s.pid,
                tid: s.tid,
                comm: s.comm,
                process: s.process,
                syscall: s.syscall,
                count: s.count,
            }),
            Record::OffCpu(mut s) => {
                // A thread's lines are written one after another: one name for them all.
                let comm = match &last_comm {
                    Some((tid, comm)) if *tid == s.tid && **comm == *s.comm => comm.clone(),
                    _ => threads.names.get(&s.comm),
                };
                last_comm = Some((s.tid, comm.clone()));
                profile.off_cpu.push(OffCpuStack {
                    frames: resolve(&frames, std::mem::take(&mut s.frames)).map_err(corrupt)?,
                    pid: s.pid,
                    tid: s.tid,
                    comm,
                    process: s.process,
                    state: s.state,
                    syscall: s.syscall,
                    waker_tid: s.waker_tid,
                    waker_comm: s.waker_comm.into(),
                    stack_lost: s.stack_lost,
                    ns: s.ns,
                    count: s.count,
                });
            }
            Record::Thread(t) => {
                if let Some(c) = t.comm {
                    let name = threads.names.get(&c);
                    threads.comms.push((t.tid, name));
                }
                if let Some(p) = t.process {
                    threads.process.push((t.tid, p));
                }
                if let Some(x) = t.times {
                    let times = profiler_common::ThreadTimes {
                        tgid: x.tgid,
                        state: x.state,
                        since_ns: x.since_ns,
                        on_cpu_ns: x.on_cpu_ns,
                        off_cpu_ns: x.off_cpu_ns,
                    };
                    threads.times.push((t.tid, times));
                }
                if let Some(s) = t.state_samples {
                    threads.state_samples.push((t.tid, s));
                }
                if !t.blocked_on.is_empty() {
                    threads.blocked_on.push((t.tid, t.blocked_on));
                }
                if let Some(c) = t.counters {
                    threads.counters.push((t.tid, c));
                }
            }
            Record::End { records: expected } => {
                if expected != records {
                    return Err(corrupt(format!("the end record counts {expected} records, the file has {records}")));
                }
                ended = true;
            }
        }
    }
    if !ended {
        return Err(corrupt("it ends before its end record".into()));
    }
    threads.into_profile(&mut profile);
    let processes = profile.processes.len() as u32;
    let bad = profile.stacks.iter().map(|s| s.process).chain(profile.off_cpu.iter().map(|s| s.process));
    if let Some(id) = bad.filter(|&id| id != u32::MAX).find(|&id| id >= processes) {
        return Err(corrupt(format!("a stack refers to process {id}, which is not defined")));
    }
    Ok(profile)
}

/// A file's per-thread fields as read, in file order (by tid), built into
/// the profile's maps in bulk at the end: maps filled one insert at a time
/// in key order keep their nodes half empty.
#[derive(Default)]
struct ThreadColumns {
    comms: Vec<(u32, crate::model::text::Name)>,
    /// One copy of each name, for the table and the off-CPU lines.
    names: crate::model::text::Names,
    process: Vec<(u32, u32)>,
    times: Vec<(u32, profiler_common::ThreadTimes)>,
    state_samples: Vec<(u32, (u32, StateSamples))>,
    blocked_on: Vec<(u32, Vec<BlockedOn>)>,
    counters: Vec<(u32, crate::continuous::CounterExtras)>,
}

impl ThreadColumns {
    /// A tid given twice keeps its last value, as inserts would.
    fn into_profile(self, p: &mut Profile) {
        p.comms = self.comms.into_iter().collect();
        p.thread_process = self.process.into_iter().collect();
        p.thread_times = self.times.into_iter().collect();
        p.state_samples = self.state_samples.into_iter().collect();
        p.blocked_on = self.blocked_on.into_iter().collect();
        p.counter_extras = self.counters.into_iter().collect();
    }
}

/// Samples file records as a map, for tests.
#[cfg(test)]
fn kinds(bytes: &[u8]) -> std::collections::BTreeMap<String, usize> {
    let text = zstd::decode_all(bytes).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for line in String::from_utf8(text).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = v.as_object().unwrap().keys().next().unwrap().clone();
        *out.entry(kind).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Profile {
        let f = |name: &str, kind| Frame::new(Arc::from(name), kind, None, 1);
        let mut p = Profile {
            arch: "x86_64".into(),
            frequency_hz: 99,
            samples: 3,
            state_hz: 20,
            processes: vec![ProcessInfo { pid: 5, comm: "app".into(), ..Default::default() }],
            stacks: vec![Stack {
                pid: 5,
                tid: 6,
                comm: "app".into(),
                process: 0,
                syscall: -1,
                count: 3,
                frames: vec![
                    f("main", FrameKind::User),
                    Frame {
                        inlined: true,
                        line: Some(SourceLine { file: Arc::from("/src/a.c"), line: 7 }),
                        ..f("helper", FrameKind::User)
                    },
                    f("LazyCompile:*hot", FrameKind::Jit),
                    f("do_sys", FrameKind::Kernel),
                ]
                .into(),
                times: Default::default(),
            }],
            start_unix_ns: 1_000,
            ..Profile::default()
        };
        // The governor kept one sample for two; the other came a moment
        // before the window opened and counts at its start.
        p.stacks[0].times.push(2_500_999, 2);
        p.stacks[0].times.push(990, 1);
        p.comms.insert(6, "app".into());
        p.thread_process.insert(6, 0);
        p
    }

    fn bytes(p: &Profile) -> Vec<u8> {
        let mut out = Vec::new();
        write(p, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample();
        let b = bytes(&p);
        assert_eq!(kinds(&b).get("frame"), Some(&4));
        std::fs::write(dir.path().join(SAMPLES_FILE), &b).unwrap();
        let back = read(dir.path()).unwrap();
        assert_eq!(back.stacks[0].frames, p.stacks[0].frames);
        assert_eq!(back.stacks[0].times.iter().collect::<Vec<_>>(), [(1_000, 1), (2_500_000, 2)]);
        assert_eq!(back.processes, p.processes);
        assert_eq!(back.comms, p.comms);
        assert_eq!((back.samples, back.state_hz), (3, 20));
    }

    #[test]
    fn a_reader_of_some_parts_skips_the_rest_but_still_counts_them() {
        let p = sample();
        let b = bytes(&p);
        let parts = Parts { stacks: true, off_cpu: false, threads: false };
        let back = read_parts_from(&b[..], Path::new("x"), parts).unwrap();
        assert_eq!(back.stacks[0].frames, p.stacks[0].frames);
        assert_eq!(back.processes, p.processes);
        assert!(back.comms.is_empty() && back.thread_process.is_empty());
        // A thread record lost: the end record's count still tells.
        let text = String::from_utf8(zstd::decode_all(&b[..]).unwrap()).unwrap();
        let cut: String = text.lines().filter(|l| !l.starts_with("{\"thread\":")).map(|l| format!("{l}\n")).collect();
        let cut = zstd::encode_all(cut.as_bytes(), 1).unwrap();
        let err = read_parts_from(&cut[..], Path::new("x"), parts).unwrap_err().to_string();
        assert!(err.contains("the end record counts"), "{err}");
    }

    #[test]
    fn refuses_sample_times_that_disagree_with_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let text = String::from_utf8(zstd::decode_all(&bytes(&sample())[..]).unwrap()).unwrap();
        assert!(text.contains(r#""w":[1,2]"#), "{text}");
        let bad = zstd::encode_all(text.replace(r#""w":[1,2]"#, r#""w":[1,1]"#).as_bytes(), 3).unwrap();
        std::fs::write(dir.path().join(SAMPLES_FILE), bad).unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("stand for 2 samples, not its count 3"), "{err}");
        // The writer never writes times that do not account for every sample.
        let mut p = sample();
        p.stacks[0].times = Default::default();
        p.stacks[0].times.push(1_200, 1);
        std::fs::write(dir.path().join(SAMPLES_FILE), bytes(&p)).unwrap();
        assert!(read(dir.path()).unwrap().stacks[0].times.is_empty());
    }

    #[test]
    fn reads_frames_written_before_inlining_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let b = bytes(&sample());
        // Strip the new fields, as an older tailprof wrote them.
        let text = String::from_utf8(zstd::decode_all(&b[..]).unwrap()).unwrap();
        let old: String = text
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                if let Some(f) = v.get_mut("frame").and_then(|f| f.as_object_mut()) {
                    for k in ["jit", "inlined", "file", "line"] {
                        f.remove(k);
                    }
                }
                if let Some(h) = v.get_mut("header").and_then(|h| h.as_object_mut()) {
                    h.remove("lines");
                    h.remove("symbolize_ns");
                }
                format!("{v}\n")
            })
            .collect();
        assert!(old.len() < text.len());
        std::fs::write(dir.path().join(SAMPLES_FILE), zstd::encode_all(old.as_bytes(), 3).unwrap()).unwrap();
        let back = read(dir.path()).unwrap();
        let names: Vec<&str> = back.stacks[0].frames.iter().map(|f| &*f.name).collect();
        assert_eq!(names, ["main", "helper", "LazyCompile:*hot", "do_sys"]);
        assert!(back.stacks[0].frames.iter().all(|f| !f.inlined && f.line.is_none()));
    }

    #[test]
    fn refuses_truncated_corrupt_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a tailprof capture") && err.contains(SAMPLES_FILE), "{err}");
        let b = bytes(&sample());
        std::fs::write(dir.path().join(SAMPLES_FILE), &b[..b.len() / 2]).unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("truncated or corrupt"), "{err}");
        let mut bad = b.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        std::fs::write(dir.path().join(SAMPLES_FILE), &bad).unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains("truncated or corrupt"));
        // A valid stream of JSON without an end record.
        let mut z = zstd::Encoder::new(Vec::new(), 3).unwrap();
        let text = zstd::decode_all(&b[..]).unwrap();
        let cut = text.iter().rposition(|&c| c == b'{').unwrap();
        z.write_all(&text[..cut]).unwrap();
        std::fs::write(dir.path().join(SAMPLES_FILE), z.finish().unwrap()).unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains("truncated or corrupt"));
    }
}
