//! A window as an OTLP profiles export (`POST /v1development/profiles`):
//! one ResourceProfiles per service (`service.name`, `host.name`, and
//! `container.id`, `k8s.pod.uid` where known), one Profile per sample type
//! (on-CPU samples, off-CPU and wall-clock nanoseconds), every table in the
//! request's one dictionary. Sample attributes follow the semantic
//! conventions where they name the thing (`thread.name`, `thread.id`,
//! `process.pid`, `process.command`, `process.executable.name`/`.path`,
//! `process.owner`,
//! `container.id`, `k8s.pod.uid`); the rest are `tailprof.*` (state,
//! syscall, waker, unit, cgroup). On-CPU samples carry the time of each
//! sample taken (`timestamps_unix_nano`, with one value per timestamp: 1, or
//! the weight the cost governor gave a sample it kept for others); off-CPU
//! and wall-clock times are exact sums over the window, without timestamps.

use std::collections::HashMap;

use super::{otlp_proto as ot, pyroscope::kinds_of, service::services};
use crate::{
    output::pprof::{build_where, cpu_stacks, Kind},
    pprof_proto as pb,
    profile::{Profile, SampleTimes},
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

    /// A pprof profile's samples, their tables moved into the dictionary;
    /// `times`, when given, holds each pprof sample's sample times.
    fn samples(&mut self, p: &pb::Profile, times: Option<&[&SampleTimes]>) -> Vec<ot::Sample> {
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
        for (n, smp) in p.sample.iter().enumerate() {
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
            let i = *index.entry((stack_index, attrs.clone())).or_insert_with(|| {
                out.push(ot::Sample { stack_index, attribute_indices: attrs, ..Default::default() });
                out.len() - 1
            });
            let sample = &mut out[i];
            match times.and_then(|t| t.get(n)) {
                Some(t) => {
                    for (at, weight) in t.iter() {
                        sample.timestamps_unix_nano.push(at);
                        sample.values.push(i64::from(weight));
                    }
                }
                None => match sample.values.first_mut() {
                    Some(v) => *v += smp.value.first().copied().unwrap_or(0),
                    None => sample.values.extend(smp.value.iter().take(1)),
                },
            }
        }
        // Times in order within each sample.
        for sample in out.iter_mut().filter(|s| !s.timestamps_unix_nano.is_empty()) {
            let mut pairs: Vec<(u64, i64)> =
                sample.timestamps_unix_nano.iter().copied().zip(sample.values.iter().copied()).collect();
            pairs.sort_unstable();
            (sample.timestamps_unix_nano, sample.values) = pairs.into_iter().unzip();
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
            let keep = |i| procs.contains(&i);
            let p = build_where(profile, kind, &keep);
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
            // pprof's on-CPU samples are the kept stacks in order; their
            // times go out when every stack has them (older segments lack
            // them) and they account for every sample.
            let stacks: Vec<&SampleTimes> = match kind {
                Kind::Cpu => cpu_stacks(profile, &keep).map(|s| &s.times).collect(),
                Kind::OffCpu | Kind::Wall => Vec::new(),
            };
            let timed = kind == Kind::Cpu
                && stacks.len() == p.sample.len()
                && stacks
                    .iter()
                    .zip(&p.sample)
                    .all(|(t, s)| !t.is_empty() && Some(t.weight() as i64) == s.value.first().copied());
            let mut samples = dict.samples(&p, timed.then_some(&stacks[..]));
            // A window takes the samples that arrive while it is open: one
            // taken just before it opened, read a moment later, counts in it
            // at its start, as the protocol wants every time inside the
            // profile's range.
            let (first, last) =
                (profile.start_unix_ns, (profile.start_unix_ns + profile.duration_ns).saturating_sub(1));
            for t in samples.iter_mut().flat_map(|s| s.timestamps_unix_nano.iter_mut()) {
                *t = (*t).clamp(first, last.max(first));
            }
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
                frames: vec![f("main", FrameKind::User), f("hot", FrameKind::User)].into(),
                count,
                times: Default::default(),
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
            waker_comm: Box::default(),
            frames: vec![f("main", FrameKind::User), f("schedule", FrameKind::Kernel)].into(),
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

    #[test]
    fn on_cpu_samples_carry_each_sample_time_with_its_weight() {
        let mut p = profile();
        // tid 10: three samples; tid 11: two, one of them kept by the
        // governor for three (weight 3).
        for t in [30, 10, 20] {
            p.stacks[0].times.push(t, 1);
        }
        p.stacks[1].times.push(40, 1);
        p.stacks[1].times.push(50, 3);
        let e = encode(&p, &OtlpOptions { host: "h".into() });
        let cpu = &e.request.resource_profiles[0].scope_profiles[0].profiles[0];
        let mut got: Vec<(Vec<u64>, Vec<i64>)> =
            cpu.samples.iter().map(|s| (s.timestamps_unix_nano.clone(), s.values.clone())).collect();
        got.sort();
        assert_eq!(got, [(vec![10, 20, 30], vec![1, 1, 1]), (vec![40, 50], vec![1, 3])]);
        // Off-CPU and wall times are sums, not timed samples.
        for other in &e.request.resource_profiles[0].scope_profiles[0].profiles[1..] {
            assert!(other.samples.iter().all(|s| s.timestamps_unix_nano.is_empty() && s.values.len() == 1));
        }
        // A stack without times (an older segment) sends counts for all.
        p.stacks[1].times = SampleTimes::default();
        let e = encode(&p, &OtlpOptions { host: "h".into() });
        let cpu = &e.request.resource_profiles[0].scope_profiles[0].profiles[0];
        assert!(cpu.samples.iter().all(|s| s.timestamps_unix_nano.is_empty() && s.values.len() == 1));
        assert_eq!(cpu.samples.iter().map(|s| s.values[0]).sum::<i64>(), 7);
    }
}
