//! A window as an OTLP profiles export (`POST /v1development/profiles`):
//! one ResourceProfiles per service (`service.name`, `host.name`, and
//! `container.id`, `k8s.pod.uid` where known), one Profile per sample type
//! (on-CPU samples, off-CPU and wall-clock nanoseconds), every table in the
//! request's one dictionary. Sample attributes follow the semantic
//! conventions where they name the thing (`thread.name`, `thread.id`,
//! `process.pid`, `process.command`, `process.executable.name`/`.path`,
//! `process.owner`,
//! `container.id`, `k8s.pod.uid`); the rest are `tailprof.*` (state,
//! syscall, waker, unit, cgroup). Samples are aggregated per window
//! (values without timestamps: the pipeline counts samples per stack).

use std::collections::HashMap;

use super::{otlp_proto as ot, pyroscope::kinds_of, service::services};
use crate::{
    output::pprof::{build_where, Kind},
    pprof_proto as pb,
    profile::Profile,
};

/// What every resource is labelled with.
#[derive(Debug, Clone)]
pub struct OtlpOptions {
    pub host: String,
}

/// A window's export, and what it holds.
#[derive(Debug, Default)]
pub struct Encoded {
    pub request: ot::ExportProfilesServiceRequest,
    pub profiles: usize,
}

/// An attribute's value, as interned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Value {
    Str(String),
    Int(i64),
}

/// The request's dictionary, every table interned; index 0 of each is its
/// zero value, as the protocol wants.
struct Dict {
    d: ot::ProfilesDictionary,
    strings: HashMap<String, i32>,
    mappings: HashMap<ot::Mapping, i32>,
    functions: HashMap<ot::Function, i32>,
    locations: HashMap<ot::Location, i32>,
    stacks: HashMap<ot::Stack, i32>,
    attributes: HashMap<(i32, Value), i32>,
}

fn intern<T: Clone + Eq + std::hash::Hash>(table: &mut Vec<T>, index: &mut HashMap<T, i32>, v: T) -> i32 {
    if let Some(&i) = index.get(&v) {
        return i;
    }
    let i = table.len() as i32;
    table.push(v.clone());
    index.insert(v, i);
    i
}

impl Dict {
    fn new() -> Self {
        let mut me = Self {
            d: ot::ProfilesDictionary {
                mapping_table: vec![Default::default()],
                location_table: vec![Default::default()],
                function_table: vec![Default::default()],
                link_table: vec![Default::default()],
                string_table: Vec::new(),
                attribute_table: vec![Default::default()],
                stack_table: vec![Default::default()],
            },
            strings: HashMap::new(),
            mappings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            stacks: HashMap::new(),
            attributes: HashMap::new(),
        };
        me.string("");
        me.mappings.insert(Default::default(), 0);
        me.functions.insert(Default::default(), 0);
        me.locations.insert(Default::default(), 0);
        me.stacks.insert(Default::default(), 0);
        me
    }

    fn string(&mut self, s: &str) -> i32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.d.string_table.len() as i32;
        self.d.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn attribute(&mut self, key: &str, v: Value) -> i32 {
        let key_strindex = self.string(key);
        if let Some(&i) = self.attributes.get(&(key_strindex, v.clone())) {
            return i;
        }
        let value = Some(ot::AnyValue {
            value: Some(match &v {
                Value::Str(s) => ot::any_value::Value::StringValue(s.clone()),
                Value::Int(n) => ot::any_value::Value::IntValue(*n),
            }),
        });
        let i = self.d.attribute_table.len() as i32;
        self.d.attribute_table.push(ot::KeyValueAndUnit { key_strindex, value, unit_strindex: 0 });
        self.attributes.insert((key_strindex, v), i);
        i
    }

    /// A pprof profile's samples, their tables moved into the dictionary.
    fn samples(&mut self, p: &pb::Profile) -> Vec<ot::Sample> {
        let s = |i: i64| p.string_table.get(i as usize).map_or("", String::as_str);
        let mut mapping_of: HashMap<u64, i32> = HashMap::new();
        for m in &p.mapping {
            let filename_strindex = self.string(s(m.filename));
            let mut attribute_indices = Vec::new();
            if m.build_id != 0 {
                attribute_indices
                    .push(self.attribute("process.executable.build_id.gnu", Value::Str(s(m.build_id).into())));
            }
            let om = ot::Mapping { filename_strindex, attribute_indices, ..Default::default() };
            mapping_of.insert(m.id, intern(&mut self.d.mapping_table, &mut self.mappings, om));
        }
        let mut function_of: HashMap<u64, i32> = HashMap::new();
        for f in &p.function {
            let of = ot::Function {
                name_strindex: self.string(s(f.name)),
                system_name_strindex: self.string(s(f.system_name)),
                filename_strindex: self.string(s(f.filename)),
                start_line: f.start_line,
            };
            function_of.insert(f.id, intern(&mut self.d.function_table, &mut self.functions, of));
        }
        let mut location_of: HashMap<u64, i32> = HashMap::new();
        for l in &p.location {
            let ol = ot::Location {
                mapping_index: mapping_of.get(&l.mapping_id).copied().unwrap_or(0),
                address: l.address,
                lines: l
                    .line
                    .iter()
                    .map(|ln| ot::Line {
                        function_index: function_of.get(&ln.function_id).copied().unwrap_or(0),
                        line: ln.line,
                        column: 0,
                    })
                    .collect(),
                attribute_indices: Vec::new(),
            };
            location_of.insert(l.id, intern(&mut self.d.location_table, &mut self.locations, ol));
        }
        // One sample per (stack, attributes): pprof samples that differ only
        // by a label OTLP does not carry are summed.
        let mut out: Vec<ot::Sample> = Vec::new();
        let mut index: HashMap<(i32, Vec<i32>), usize> = HashMap::new();
        for smp in &p.sample {
            let stack = ot::Stack {
                location_indices: smp.location_id.iter().map(|id| location_of.get(id).copied().unwrap_or(0)).collect(),
            };
            let stack_index = intern(&mut self.d.stack_table, &mut self.stacks, stack);
            let mut attrs: Vec<i32> = Vec::new();
            for l in &smp.label {
                let (key, value) = match (s(l.key), l.str) {
                    ("pid", _) => ("process.pid", Value::Int(l.num)),
                    ("tid", _) => ("thread.id", Value::Int(l.num)),
                    ("thread", v) => ("thread.name", Value::Str(s(v).into())),
                    ("exe", v) => {
                        let path = s(v);
                        let name = path.rsplit('/').next().unwrap_or(path);
                        attrs.push(self.attribute("process.executable.path", Value::Str(path.into())));
                        ("process.executable.name", Value::Str(name.into()))
                    }
                    ("user", v) => ("process.owner", Value::Str(s(v).into())),
                    ("container", v) => ("container.id", Value::Str(s(v).into())),
                    ("pod", v) => ("k8s.pod.uid", Value::Str(s(v).into())),
                    ("process", v) => ("process.command", Value::Str(s(v).into())),
                    (other, v) => {
                        let key = format!("tailprof.{other}");
                        attrs.push(self.attribute(&key, Value::Str(s(v).into())));
                        continue;
                    }
                };
                attrs.push(self.attribute(key, value));
            }
            attrs.sort_unstable();
            attrs.dedup();
            match index.get(&(stack_index, attrs.clone())) {
                Some(&i) => {
                    for (a, b) in out[i].values.iter_mut().zip(&smp.value) {
                        *a += b;
                    }
                }
                None => {
                    index.insert((stack_index, attrs.clone()), out.len());
                    out.push(ot::Sample {
                        stack_index,
                        attribute_indices: attrs,
                        link_index: 0,
                        values: smp.value.iter().take(1).copied().collect(),
                        timestamps_unix_nano: Vec::new(),
                    });
                }
            }
        }
        out
    }
}

/// The export of one window.
pub fn encode(profile: &Profile, opts: &OtlpOptions) -> Encoded {
    let mut dict = Dict::new();
    let mut out = Encoded::default();
    let scope = ot::InstrumentationScope { name: "tailprof".into(), version: env!("CARGO_PKG_VERSION").into() };
    for (service, procs) in services(profile) {
        let mut profiles = Vec::new();
        for &kind in kinds_of(profile) {
            let p = build_where(profile, kind, &|i| procs.contains(&i));
            if p.sample.is_empty() {
                continue;
            }
            // One sample type per profile: on-CPU samples counted, with the
            // sampling period (cpu nanoseconds); off-CPU and wall in ns.
            let (ty, unit) = match kind {
                Kind::Cpu => ("samples", "count"),
                Kind::OffCpu => ("off_cpu", "nanoseconds"),
                Kind::Wall => ("wall", "nanoseconds"),
            };
            let sample_type = Some(ot::ValueType { type_strindex: dict.string(ty), unit_strindex: dict.string(unit) });
            let period_type = (kind == Kind::Cpu).then(|| ot::ValueType {
                type_strindex: dict.string("cpu"),
                unit_strindex: dict.string("nanoseconds"),
            });
            let samples = dict.samples(&p);
            profiles.push(ot::Profile {
                sample_type,
                samples,
                time_unix_nano: profile.start_unix_ns,
                duration_nano: profile.duration_ns,
                period_type,
                period: if kind == Kind::Cpu { p.period } else { 0 },
                ..Default::default()
            });
        }
        if profiles.is_empty() {
            continue;
        }
        out.profiles += profiles.len();
        let kv = |key: &str, v: &str| ot::KeyValue {
            key: key.into(),
            value: Some(ot::AnyValue { value: Some(ot::any_value::Value::StringValue(v.into())) }),
        };
        let mut attributes = vec![kv("service.name", &service.name), kv("host.name", &opts.host)];
        if let Some(c) = service.labels.get("container_id") {
            attributes.push(kv("container.id", c));
        }
        if let Some(p) = service.labels.get("pod_uid") {
            attributes.push(kv("k8s.pod.uid", p));
        }
        out.request.resource_profiles.push(ot::ResourceProfiles {
            resource: Some(ot::Resource { attributes }),
            scope_profiles: vec![ot::ScopeProfiles { scope: Some(scope.clone()), profiles, schema_url: String::new() }],
            schema_url: String::new(),
        });
    }
    out.request.dictionary = Some(dict.d);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        enrich::process::ProcessInfo,
        profile::{Frame, FrameKind, OffCpuStack, Stack},
    };

    fn profile() -> Profile {
        let f = |n: &str, kind| Frame::new(Arc::from(n), kind, None, 1);
        let mut p = Profile {
            frequency_hz: 100,
            duration_ns: 1_000_000_000,
            start_unix_ns: 5,
            state_hz: 20,
            ..Profile::default()
        };
        p.processes.push(ProcessInfo {
            id: 0,
            pid: 10,
            comm: "app".into(),
            exe: Some("/bin/app".into()),
            ..Default::default()
        });
        for (tid, count) in [(10, 3), (11, 4)] {
            p.stacks.push(Stack {
                pid: 10,
                tid,
                comm: "app".into(),
                process: 0,
                syscall: -1,
                frames: vec![f("main", FrameKind::User), f("hot", FrameKind::User)],
                count,
            });
        }
        p.off_cpu.push(OffCpuStack {
            pid: 10,
            tid: 11,
            comm: "app".into(),
            process: 0,
            state: profiler_common::STATE_SLEEPING,
            syscall: -1,
            waker_tid: profiler_common::NO_WAKER,
            waker_comm: String::new(),
            frames: vec![f("main", FrameKind::User), f("schedule", FrameKind::Kernel)],
            stack_lost: false,
            ns: 777,
            count: 1,
        });
        p
    }

    #[test]
    fn one_dictionary_with_zero_entries_and_one_profile_per_sample_type() {
        let e = encode(&profile(), &OtlpOptions { host: "h".into() });
        let d = e.request.dictionary.as_ref().unwrap();
        assert_eq!(d.string_table[0], "");
        assert_eq!(d.mapping_table[0], ot::Mapping::default());
        assert_eq!(d.location_table[0], ot::Location::default());
        assert_eq!(d.function_table[0], ot::Function::default());
        assert_eq!(d.stack_table[0], ot::Stack::default());
        assert_eq!(d.attribute_table[0], ot::KeyValueAndUnit::default());
        assert_eq!(e.request.resource_profiles.len(), 1);
        let profiles = &e.request.resource_profiles[0].scope_profiles[0].profiles;
        let s = |i: i32| d.string_table[i as usize].as_str();
        let kinds: Vec<(&str, i64)> = profiles
            .iter()
            .map(|p| (s(p.sample_type.as_ref().unwrap().type_strindex), p.samples.iter().map(|x| x.values[0]).sum()))
            .collect();
        assert_eq!(kinds, [("samples", 7), ("off_cpu", 777), ("wall", 7 * 10_000_000 + 777)]);
        assert_eq!(profiles[0].period, 10_000_000);
        // Kernel names carry no suffix; samples carry semantic-convention attributes.
        assert!(d.function_table.iter().any(|f| s(f.name_strindex) == "schedule"));
        let keys: Vec<&str> = d.attribute_table.iter().skip(1).map(|a| s(a.key_strindex)).collect();
        for k in ["process.pid", "thread.id", "thread.name", "process.executable.name", "tailprof.state"] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
        let res = e.request.resource_profiles[0].resource.as_ref().unwrap();
        assert!(res.attributes.iter().any(|kv| kv.key == "service.name"));
    }
}
