//! gzipped pprof (`perftools.profiles.Profile`), readable by `go tool pprof`,
//! Pyroscope, Grafana and friends.

use std::{collections::HashMap, io::Write};

use flate2::{write::GzEncoder, Compression};
use prost::Message;

use crate::{
    pprof_proto as pb,
    profile::{Frame, FrameKind, Profile},
};

/// Interns strings into the profile's string table (index 0 is "").
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Self::default();
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

const KERNEL_MAPPING: &str = "[kernel.kallsyms]";

/// Dimensions every sample carries as a pprof label (when they apply).
const LABEL_DIMENSIONS: [crate::group::Dimension; 7] = {
    use crate::group::Dimension::*;
    [Process, User, Cgroup, Container, Pod, Unit, Syscall]
};

/// Build the pprof message. Sample values are `[samples, cpu ns]`; locations
/// of user frames use file offsets as addresses, so that one module has one
/// mapping whatever address each process loaded it at. Functions inlined at
/// an address are lines of its location (innermost first), with their
/// source file and line when DWARF gave them, whatever `--lines` says:
/// `pprof -lines` chooses at view time. Kernel functions keep the `_[k]`
/// suffix; JIT frames have no mapping.
pub fn build(profile: &Profile) -> pb::Profile {
    let mut strings = Strings::new();
    let period = profile.period_ns() as i64;
    let sample_type = vec![
        pb::ValueType { r#type: strings.get("samples"), unit: strings.get("count") },
        pb::ValueType { r#type: strings.get("cpu"), unit: strings.get("nanoseconds") },
    ];
    let period_type = Some(pb::ValueType { r#type: strings.get("cpu"), unit: strings.get("nanoseconds") });

    // Mappings: one per module, and one for the kernel; ids start at 1.
    let mut mappings: Vec<pb::Mapping> = profile
        .modules
        .iter()
        .enumerate()
        .map(|(i, m)| pb::Mapping {
            id: i as u64 + 1,
            filename: strings.get(&m.path),
            build_id: m.build_id.as_deref().map_or(0, |b| strings.get(b)),
            has_functions: true,
            ..Default::default()
        })
        .collect();
    let kernel_mapping_id = mappings.len() as u64 + 1;
    mappings.push(pb::Mapping {
        id: kernel_mapping_id,
        filename: strings.get(KERNEL_MAPPING),
        has_functions: true,
        ..Default::default()
    });

    let mut functions: Vec<pb::Function> = Vec::new();
    let mut function_ids: HashMap<(String, i64), u64> = HashMap::new();
    let mut locations: Vec<pb::Location> = Vec::new();
    // By (mapping, address, (function, line) innermost first).
    type LocationKey = (u64, u64, Vec<(u64, i64)>);
    let mut location_ids: HashMap<LocationKey, u64> = HashMap::new();
    let mut samples = Vec::with_capacity(profile.stacks.len());
    let (k_pid, k_tid, k_thread) = (strings.get("pid"), strings.get("tid"), strings.get("thread"));

    for stack in &profile.stacks {
        let mut ids = Vec::with_capacity(stack.frames.len());
        // pprof wants the leaf first; a location holds a frame and the
        // functions inlined into it, innermost first.
        for group in locations_of(&stack.frames).iter().rev() {
            let head = &group[0];
            let mapping_id = match head.kind {
                FrameKind::Kernel => kernel_mapping_id,
                FrameKind::User => head.module.map_or(0, |m| m as u64 + 1),
                FrameKind::Jit => 0,
            };
            let lines: Vec<pb::Line> = group
                .iter()
                .rev()
                .map(|frame| {
                    let mut name = super::folded::frame_name(frame, profile);
                    if frame.kind == FrameKind::Kernel {
                        name.push_str("_[k]");
                    }
                    let file = frame.line.as_ref().map_or(0, |l| strings.get(&l.file));
                    let function_id = *function_ids.entry((name, file)).or_insert_with_key(|(name, file)| {
                        let id = functions.len() as u64 + 1;
                        let n = strings.get(name);
                        functions.push(pb::Function { id, name: n, system_name: n, filename: *file, start_line: 0 });
                        id
                    });
                    pb::Line { function_id, line: frame.line.as_ref().map_or(0, |l| l.line.into()) }
                })
                .collect();
            let next_id = locations.len() as u64 + 1;
            let key = lines.iter().map(|l| (l.function_id, l.line)).collect();
            let id = *location_ids.entry((mapping_id, head.address, key)).or_insert_with(|| {
                locations.push(pb::Location {
                    id: next_id,
                    mapping_id,
                    address: head.address,
                    line: lines,
                    is_folded: false,
                });
                next_id
            });
            ids.push(id);
        }
        let thread = strings.get(&stack.comm);
        let mut label = vec![
            pb::Label { key: k_pid, num: stack.pid as i64, ..Default::default() },
            pb::Label { key: k_tid, num: stack.tid as i64, ..Default::default() },
            pb::Label { key: k_thread, str: thread, ..Default::default() },
        ];
        // What the sample belongs to, as string labels pprof can filter and group by.
        let attrs = crate::group::Attrs::of_stack(profile, stack);
        for d in LABEL_DIMENSIONS {
            if let Some(v) = attrs.value(d) {
                label.push(pb::Label { key: strings.get(d.name()), str: strings.get(&v), ..Default::default() });
            }
        }
        if let Some(exe) = profile.process(stack.process).and_then(|p| p.exe.as_deref()) {
            label.push(pb::Label { key: strings.get("exe"), str: strings.get(exe), ..Default::default() });
        }
        samples.push(pb::Sample {
            location_id: ids,
            value: vec![stack.count as i64, stack.count as i64 * period],
            label,
        });
    }

    pb::Profile {
        sample_type,
        sample: samples,
        mapping: mappings,
        location: locations,
        function: functions,
        string_table: strings.table,
        time_nanos: profile.start_unix_ns as i64,
        duration_nanos: profile.duration_ns as i64,
        period_type,
        period,
        ..Default::default()
    }
}

/// Frames (outermost first) cut into locations: each frame with the
/// frames inlined into it.
fn locations_of(frames: &[Frame]) -> Vec<&[Frame]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=frames.len() {
        let ends = frames.get(i).is_none_or(|f| {
            let head = &frames[start];
            !f.inlined || f.module != head.module || f.address != head.address
        });
        if ends {
            out.push(&frames[start..i]);
            start = i;
        }
    }
    out
}

pub fn write(profile: &Profile, w: &mut dyn Write) -> std::io::Result<()> {
    let bytes = build(profile).encode_to_vec();
    let mut gz = GzEncoder::new(w, Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{io::Read, sync::Arc};

    use super::*;
    use crate::profile::{Module, SourceLine, Stack};

    fn sample_profile() -> Profile {
        let f = |name: &str, kind, module| Frame::new(Arc::from(name), kind, module, 0x42);
        Profile {
            frequency_hz: 100,
            duration_ns: 1_000_000_000,
            modules: vec![Module::new("/bin/app".into(), Some("abcd".into()))],
            stacks: vec![
                Stack {
                    pid: 10,
                    tid: 11,
                    comm: "app".into(),
                    process: 0,
                    syscall: -1,
                    frames: vec![f("main", FrameKind::User, Some(0)), f("hot", FrameKind::User, Some(0))],
                    count: 5,
                },
                Stack {
                    pid: 10,
                    tid: 12,
                    comm: "app".into(),
                    process: 0,
                    syscall: -1,
                    frames: vec![f("main", FrameKind::User, Some(0)), f("schedule", FrameKind::Kernel, None)],
                    count: 2,
                },
            ],
            ..Profile::default()
        }
    }

    #[test]
    fn round_trips_and_totals_match() {
        let profile = sample_profile();
        let mut buf = Vec::new();
        write(&profile, &mut buf).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&buf[..]).read_to_end(&mut raw).unwrap();
        let decoded = pb::Profile::decode(&raw[..]).unwrap();
        assert_eq!(decoded, build(&profile));
        assert_eq!(decoded.string_table[0], "");
        let total: i64 = decoded.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!(total, 7);
        let cpu: i64 = decoded.sample.iter().map(|s| s.value[1]).sum();
        assert_eq!(cpu, 7 * 10_000_000);
        // Leaf first: the first sample's leaf is `hot`.
        let leaf = decoded.location.iter().find(|l| l.id == decoded.sample[0].location_id[0]).unwrap();
        let func = decoded.function.iter().find(|f| f.id == leaf.line[0].function_id).unwrap();
        assert_eq!(decoded.string_table[func.name as usize], "hot");
        // Every location points at an existing mapping and function.
        for loc in &decoded.location {
            assert!(decoded.mapping.iter().any(|m| m.id == loc.mapping_id));
            assert!(decoded.function.iter().any(|f| f.id == loc.line[0].function_id));
        }
    }

    #[test]
    fn inlined_functions_share_their_callers_location() {
        let mut profile = sample_profile();
        let src = |line| Some(SourceLine { file: Arc::from("/src/app.c"), line });
        profile.stacks[0].frames = vec![
            Frame { line: src(10), ..Frame::new(Arc::from("main"), FrameKind::User, Some(0), 0x10) },
            Frame { line: src(20), ..Frame::new(Arc::from("outer"), FrameKind::User, Some(0), 0x42) },
            Frame { inlined: true, line: src(30), ..Frame::new(Arc::from("inner"), FrameKind::User, Some(0), 0x42) },
            Frame::new(Arc::from("[unknown]"), FrameKind::User, Some(0), 0x99),
            Frame::new(Arc::from("LazyCompile:*hot"), FrameKind::Jit, None, 0x7f00),
        ];
        let p = build(&profile);
        let st = |i: i64| p.string_table[i as usize].as_str();
        let loc = |id: u64| p.location.iter().find(|l| l.id == id).unwrap();
        let func = |id: u64| p.function.iter().find(|f| f.id == id).unwrap();
        let leaf_first = &p.sample[0].location_id;
        assert_eq!(leaf_first.len(), 4, "{p:#?}");
        let jit = loc(leaf_first[0]);
        assert_eq!((jit.mapping_id, jit.address), (0, 0x7f00));
        assert_eq!(st(func(jit.line[0].function_id).name), "LazyCompile:*hot");
        assert_eq!(st(func(loc(leaf_first[1]).line[0].function_id).name), "app+0x99");
        let inl = loc(leaf_first[2]);
        let names: Vec<(&str, i64)> = inl.line.iter().map(|l| (st(func(l.function_id).name), l.line)).collect();
        assert_eq!(names, [("inner", 30), ("outer", 20)]);
        assert_eq!(st(func(inl.line[0].function_id).filename), "/src/app.c");
        assert_eq!((inl.mapping_id, inl.address), (1, 0x42));
    }
}
