//! gzipped pprof (`perftools.profiles.Profile`), readable by `go tool pprof`,
//! Pyroscope, Grafana and friends.

use std::{collections::HashMap, io::Write};

use flate2::{write::GzEncoder, Compression};
use prost::Message;

use crate::{
    pprof_proto as pb,
    profile::{FrameKind, Profile},
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
/// mapping whatever address each process loaded it at.
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
    let mut function_ids: HashMap<String, u64> = HashMap::new();
    let mut locations: Vec<pb::Location> = Vec::new();
    let mut location_ids: HashMap<(u64, u64, String), u64> = HashMap::new();
    let mut samples = Vec::with_capacity(profile.stacks.len());
    let (k_pid, k_tid, k_thread) = (strings.get("pid"), strings.get("tid"), strings.get("thread"));

    for stack in &profile.stacks {
        let mut ids = Vec::with_capacity(stack.frames.len());
        // pprof wants the leaf first.
        for frame in stack.frames.iter().rev() {
            let mapping_id = match frame.kind {
                FrameKind::Kernel => kernel_mapping_id,
                FrameKind::User => frame.module.map_or(0, |m| m as u64 + 1),
            };
            let name = super::folded::frame_label(frame, profile);
            let key = (mapping_id, frame.address, name);
            let next_id = locations.len() as u64 + 1;
            let id = *location_ids.entry(key.clone()).or_insert_with(|| {
                let fid = *function_ids.entry(key.2.clone()).or_insert_with(|| {
                    let id = functions.len() as u64 + 1;
                    let n = strings.get(&key.2);
                    functions.push(pb::Function { id, name: n, system_name: n, ..Default::default() });
                    id
                });
                locations.push(pb::Location {
                    id: next_id,
                    mapping_id,
                    address: frame.address,
                    line: vec![pb::Line { function_id: fid, line: 0 }],
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
    use crate::profile::{Frame, Module, Stack};

    fn sample_profile() -> Profile {
        let f = |name: &str, kind, module| Frame { name: Arc::from(name), kind, module, address: 0x42 };
        Profile {
            frequency_hz: 100,
            duration_ns: 1_000_000_000,
            modules: vec![Module { path: "/bin/app".into(), build_id: Some("abcd".into()) }],
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
}
