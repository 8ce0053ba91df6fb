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
const LABEL_DIMENSIONS: [crate::group::Dimension; 8] = {
    use crate::group::Dimension::*;
    [Process, User, Cgroup, Container, Pod, Unit, Syscall, State]
};

/// Which time a profile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// On-CPU samples: `samples/count` and `cpu/nanoseconds` (count × period).
    Cpu,
    /// Off-CPU time by blocking stack: `off_cpu/nanoseconds`, its waker as
    /// the label `waker`.
    OffCpu,
    /// Every thread's time in every state: `wall/nanoseconds`, running time
    /// from on-CPU samples and the rest off-CPU; the state is a label.
    Wall,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Cpu, Kind::OffCpu, Kind::Wall];

    /// Its sample types, as (type, unit).
    pub fn sample_types(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Cpu => &[("samples", "count"), ("cpu", "nanoseconds")],
            Kind::OffCpu => &[("off_cpu", "nanoseconds")],
            Kind::Wall => &[("wall", "nanoseconds")],
        }
    }
}

/// The tables of a profile being built: strings, mappings, functions and
/// locations, each interned; a mapping is added when a location first uses it.
struct Tables<'p> {
    profile: &'p Profile,
    strings: Strings,
    mappings: Vec<pb::Mapping>,
    /// Mapping ids by module index (`None`: the kernel) or JIT pid.
    mapping_ids: HashMap<MappingKey, u64>,
    functions: Vec<pb::Function>,
    function_ids: HashMap<(String, i64), u64>,
    locations: Vec<pb::Location>,
    location_ids: HashMap<LocationKey, u64>,
}

/// What a mapping stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MappingKey {
    Module(usize),
    Kernel,
    /// A process's perf map (JIT frames), by pid.
    Jit(u32),
}

/// A location by (mapping, address, (function, line) innermost first).
type LocationKey = (u64, u64, Vec<(u64, i64)>);

impl<'p> Tables<'p> {
    fn new(profile: &'p Profile) -> Self {
        Self {
            profile,
            strings: Strings::new(),
            mappings: Vec::new(),
            mapping_ids: HashMap::new(),
            functions: Vec::new(),
            function_ids: HashMap::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
        }
    }

    /// The id of a mapping (ids start at 1); 0 for a frame of no module.
    /// User modules are their files; the kernel is `[kernel.kallsyms]`, a
    /// process's JIT code its perf map, as perf names them.
    fn mapping(&mut self, key: MappingKey) -> u64 {
        if let Some(&id) = self.mapping_ids.get(&key) {
            return id;
        }
        let id = self.mappings.len() as u64 + 1;
        let s = &mut self.strings;
        let mapping = match key {
            MappingKey::Module(m) => {
                let Some(module) = self.profile.modules.get(m) else { return 0 };
                pb::Mapping {
                    filename: s.get(&module.path),
                    build_id: module.build_id.as_deref().map_or(0, |b| s.get(b)),
                    ..Default::default()
                }
            }
            MappingKey::Kernel => pb::Mapping { filename: s.get(KERNEL_MAPPING), ..Default::default() },
            MappingKey::Jit(pid) => {
                pb::Mapping { filename: s.get(&format!("/tmp/perf-{pid}.map")), ..Default::default() }
            }
        };
        self.mappings.push(pb::Mapping { id, has_functions: true, ..mapping });
        self.mapping_ids.insert(key, id);
        id
    }

    /// Location ids of a stack (outermost first), leaf first as pprof wants.
    /// A location holds a frame and the functions inlined into it,
    /// innermost first; names are the symbols alone (kernel-ness is the
    /// mapping's, not a suffix's).
    fn stack(&mut self, pid: u32, frames: &[Frame]) -> Vec<u64> {
        let mut ids = Vec::with_capacity(frames.len());
        for group in locations_of(frames).iter().rev() {
            let head = &group[0];
            let mapping_id = match (head.kind, head.module) {
                (FrameKind::Kernel, _) => self.mapping(MappingKey::Kernel),
                (FrameKind::User, Some(m)) => self.mapping(MappingKey::Module(m)),
                (FrameKind::User, None) => 0,
                (FrameKind::Jit, _) => self.mapping(MappingKey::Jit(pid)),
            };
            let lines: Vec<pb::Line> = group
                .iter()
                .rev()
                .map(|frame| {
                    let name = super::folded::frame_name(frame, self.profile);
                    let file = frame.line.as_ref().map_or(0, |l| self.strings.get(&l.file));
                    let (functions, strings) = (&mut self.functions, &mut self.strings);
                    let function_id = *self.function_ids.entry((name, file)).or_insert_with_key(|(name, file)| {
                        let id = functions.len() as u64 + 1;
                        let n = strings.get(name);
                        functions.push(pb::Function { id, name: n, system_name: n, filename: *file, start_line: 0 });
                        id
                    });
                    pb::Line { function_id, line: frame.line.as_ref().map_or(0, |l| l.line.into()) }
                })
                .collect();
            let next_id = self.locations.len() as u64 + 1;
            let key = lines.iter().map(|l| (l.function_id, l.line)).collect();
            let locations = &mut self.locations;
            let id = *self.location_ids.entry((mapping_id, head.address, key)).or_insert_with(|| {
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
        ids
    }

    /// A location for time that has no stack (a thread waiting for a CPU
    /// has none in the continuous tier; a stack map may have had no room),
    /// named as the folded outputs name it: `[runnable]`, `[stack lost]`.
    /// Without one, pprof consumers drop the sample and its time.
    fn pseudo(&mut self, name: &str) -> u64 {
        let function_id = {
            let (functions, strings) = (&mut self.functions, &mut self.strings);
            *self.function_ids.entry((name.to_owned(), 0)).or_insert_with(|| {
                let id = functions.len() as u64 + 1;
                let n = strings.get(name);
                functions.push(pb::Function { id, name: n, system_name: n, filename: 0, start_line: 0 });
                id
            })
        };
        let next_id = self.locations.len() as u64 + 1;
        let locations = &mut self.locations;
        *self.location_ids.entry((0, 0, vec![(function_id, 0)])).or_insert_with(|| {
            locations.push(pb::Location {
                id: next_id,
                line: vec![pb::Line { function_id, line: 0 }],
                ..Default::default()
            });
            next_id
        })
    }

    /// What a sample belongs to: pid, tid and thread as always, then every
    /// dimension that applies as a string label pprof can filter and group
    /// by (process, user, cgroup, container, pod, unit, syscall, state), and
    /// the executable.
    fn labels(&mut self, attrs: &crate::group::Attrs, comm: &str, process: u32) -> Vec<pb::Label> {
        let s = &mut self.strings;
        let mut label = vec![
            pb::Label { key: s.get("pid"), num: attrs.pid as i64, ..Default::default() },
            pb::Label { key: s.get("tid"), num: attrs.tid as i64, ..Default::default() },
            pb::Label { key: s.get("thread"), str: s.get(comm), ..Default::default() },
        ];
        for d in LABEL_DIMENSIONS {
            if let Some(v) = attrs.value(d) {
                label.push(pb::Label { key: s.get(d.name()), str: s.get(&v), ..Default::default() });
            }
        }
        if let Some(exe) = self.profile.process(process).and_then(|p| p.exe.as_deref()) {
            label.push(pb::Label { key: s.get("exe"), str: s.get(exe), ..Default::default() });
        }
        label
    }
}

/// Build the pprof message of one kind. Locations of user frames use file
/// offsets as addresses, so that one module has one mapping whatever
/// address each process loaded it at. Functions inlined at an address are
/// lines of its location (innermost first), with their source file and
/// line when DWARF gave them, whatever `--lines` says: `pprof -lines`
/// chooses at view time. Kernel frames map to `[kernel.kallsyms]`, JIT
/// frames to their process's perf map (`/tmp/perf-PID.map`).
pub fn build(profile: &Profile, kind: Kind) -> pb::Profile {
    build_where(profile, kind, &|_| true)
}

/// [`build`] of the stacks and off-CPU aggregates whose process (index
/// into the profile's process table) `keep` keeps.
pub fn build_where(profile: &Profile, kind: Kind, keep: &dyn Fn(u32) -> bool) -> pb::Profile {
    let mut t = Tables::new(profile);
    let period = profile.period_ns() as i64;
    let sample_type: Vec<pb::ValueType> = kind
        .sample_types()
        .iter()
        .map(|(ty, unit)| pb::ValueType { r#type: t.strings.get(ty), unit: t.strings.get(unit) })
        .collect();
    // Only on-CPU samples have a sampling period; the other kinds are times.
    let (period_type, profile_period) = match kind {
        Kind::Cpu => (Some(pb::ValueType { r#type: t.strings.get("cpu"), unit: t.strings.get("nanoseconds") }), period),
        Kind::OffCpu | Kind::Wall => (None, 0),
    };
    let mut samples = Vec::new();
    if kind != Kind::OffCpu {
        for stack in cpu_stacks(profile, keep) {
            let mut location_id = t.stack(stack.pid, &stack.frames);
            if location_id.is_empty() {
                location_id.push(t.pseudo("[no stack]"));
            }
            let label = t.labels(&crate::group::Attrs::of_stack(profile, stack), &stack.comm, stack.process);
            let ns = stack.count as i64 * period;
            let value = if kind == Kind::Cpu { vec![stack.count as i64, ns] } else { vec![ns] };
            samples.push(pb::Sample { location_id, value, label });
        }
    }
    if kind != Kind::Cpu {
        let k_waker = t.strings.get("waker");
        for s in profile.off_cpu.iter().filter(|s| keep(s.process)) {
            let mut location_id = t.stack(s.pid, &s.frames);
            if s.stack_lost {
                location_id.insert(0, t.pseudo("[stack lost]"));
            } else if location_id.is_empty() {
                let state = crate::profile::STATE_NAMES.get(s.state as usize).copied().unwrap_or("other");
                location_id.push(t.pseudo(&format!("[{state}]")));
            }
            let mut label = t.labels(&crate::group::Attrs::of_off_cpu(profile, s), &s.comm, s.process);
            if kind == Kind::OffCpu && s.waker_tid != profiler_common::NO_WAKER {
                label.push(pb::Label { key: k_waker, str: t.strings.get(&s.waker_comm), ..Default::default() });
            }
            samples.push(pb::Sample { location_id, value: vec![s.ns as i64], label });
        }
    }
    pb::Profile {
        sample_type,
        sample: samples,
        mapping: t.mappings,
        location: t.locations,
        function: t.functions,
        string_table: t.strings.table,
        time_nanos: profile.start_unix_ns as i64,
        duration_nanos: profile.duration_ns as i64,
        period_type,
        period: profile_period,
        ..Default::default()
    }
}

/// The on-CPU stacks [`build_where`] turns into samples, in its order: the
/// `Kind::Cpu` profile's samples are these, one each.
pub fn cpu_stacks<'a>(
    profile: &'a Profile,
    keep: &'a dyn Fn(u32) -> bool,
) -> impl Iterator<Item = &'a crate::profile::Stack> + 'a {
    profile.stacks.iter().filter(move |s| keep(s.process))
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

/// Write the gzipped profile of `kind`.
pub fn write(profile: &Profile, kind: Kind, w: &mut dyn Write) -> std::io::Result<()> {
    let bytes = build(profile, kind).encode_to_vec();
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
                    frames: vec![f("main", FrameKind::User, Some(0)), f("hot", FrameKind::User, Some(0))].into(),
                    count: 5,
                    times: Default::default(),
                },
                Stack {
                    pid: 10,
                    tid: 12,
                    comm: "app".into(),
                    process: 0,
                    syscall: -1,
                    frames: vec![f("main", FrameKind::User, Some(0)), f("schedule", FrameKind::Kernel, None)].into(),
                    count: 2,
                    times: Default::default(),
                },
            ],
            ..Profile::default()
        }
    }

    #[test]
    fn round_trips_and_totals_match() {
        let profile = sample_profile();
        let mut buf = Vec::new();
        write(&profile, Kind::Cpu, &mut buf).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&buf[..]).read_to_end(&mut raw).unwrap();
        let decoded = pb::Profile::decode(&raw[..]).unwrap();
        assert_eq!(decoded, build(&profile, Kind::Cpu));
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
        ]
        .into();
        let p = build(&profile, Kind::Cpu);
        let st = |i: i64| p.string_table[i as usize].as_str();
        let loc = |id: u64| p.location.iter().find(|l| l.id == id).unwrap();
        let func = |id: u64| p.function.iter().find(|f| f.id == id).unwrap();
        let leaf_first = &p.sample[0].location_id;
        assert_eq!(leaf_first.len(), 4, "{p:#?}");
        let jit = loc(leaf_first[0]);
        assert_eq!(jit.address, 0x7f00);
        let jit_map = p.mapping.iter().find(|m| m.id == jit.mapping_id).unwrap();
        assert_eq!(st(jit_map.filename), "/tmp/perf-10.map");
        assert_eq!(st(func(jit.line[0].function_id).name), "LazyCompile:*hot");
        assert_eq!(st(func(loc(leaf_first[1]).line[0].function_id).name), "app+0x99");
        let inl = loc(leaf_first[2]);
        let names: Vec<(&str, i64)> = inl.line.iter().map(|l| (st(func(l.function_id).name), l.line)).collect();
        assert_eq!(names, [("inner", 30), ("outer", 20)]);
        assert_eq!(st(func(inl.line[0].function_id).filename), "/src/app.c");
        let app = p.mapping.iter().find(|m| m.id == inl.mapping_id).unwrap();
        assert_eq!((st(app.filename), inl.address), ("/bin/app", 0x42));
    }

    #[test]
    fn kernel_frames_are_named_alone_and_mapped_to_the_kernel() {
        let p = build(&sample_profile(), Kind::Cpu);
        let st = |i: i64| p.string_table[i as usize].as_str();
        let f = p.function.iter().find(|f| st(f.name) == "schedule").expect("schedule, no suffix");
        let loc = p.location.iter().find(|l| l.line[0].function_id == f.id).unwrap();
        let m = p.mapping.iter().find(|m| m.id == loc.mapping_id).unwrap();
        assert_eq!(st(m.filename), KERNEL_MAPPING);
        assert!(p.function.iter().all(|f| !st(f.name).ends_with(']')), "no bracketed suffix");
        assert!(p.time_nanos >= 0 && p.duration_nanos == 1_000_000_000);
    }

    #[test]
    fn off_cpu_and_wall_hold_the_exact_times_with_state_labels() {
        let mut profile = sample_profile();
        let frames = profile.stacks[1].frames.clone();
        let off = |state, ns, waker_tid| crate::profile::OffCpuStack {
            pid: 10,
            tid: 12,
            comm: "app".into(),
            process: 0,
            state,
            syscall: -1,
            waker_tid,
            waker_comm: "waker".into(),
            frames: frames.clone(),
            stack_lost: false,
            ns,
            count: 1,
        };
        profile.off_cpu = vec![
            off(profiler_common::STATE_SLEEPING, 3_000, 7),
            off(profiler_common::STATE_RUNNABLE, 500, profiler_common::NO_WAKER),
        ];
        let st = |p: &pb::Profile, i: i64| p.string_table[i as usize].clone();
        let label =
            |p: &pb::Profile, s: &pb::Sample, k: &str| s.label.iter().find(|l| st(p, l.key) == k).map(|l| st(p, l.str));
        let o = build(&profile, Kind::OffCpu);
        assert_eq!(st(&o, o.sample_type[0].r#type), "off_cpu");
        assert_eq!(o.sample.iter().map(|s| s.value[0]).sum::<i64>(), 3_500);
        assert_eq!(label(&o, &o.sample[0], "state").as_deref(), Some("sleeping"));
        assert_eq!(label(&o, &o.sample[0], "waker").as_deref(), Some("waker"));
        assert_eq!(label(&o, &o.sample[1], "waker"), None, "preempted: no waker");
        let w = build(&profile, Kind::Wall);
        assert_eq!(st(&w, w.sample_type[0].r#type), "wall");
        assert_eq!(w.sample.iter().map(|s| s.value[0]).sum::<i64>(), 7 * 10_000_000 + 3_500);
        assert_eq!(label(&w, &w.sample[0], "state").as_deref(), Some("running"));
        assert_eq!(label(&w, &w.sample[3], "state").as_deref(), Some("runnable"));
    }
}
