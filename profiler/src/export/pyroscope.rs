//! A window as a Pyroscope push (`push.v1.PusherService/Push`): one series
//! per service and kind, each holding the gzipped pprof of that service's
//! share of the window. Pyroscope's limits are kept: a profile larger than
//! [`MAX_PROFILE_BYTES`] uncompressed or [`MAX_PROFILE_SAMPLES`] samples is
//! split by process, and a process's still too large by its samples; a
//! series has at most [`MAX_LABELS`] labels.

use std::collections::BTreeSet;

use prost::Message;

use super::{
    gzip,
    push_proto::{LabelPair, PushRequest, RawProfileSeries, RawSample},
    service::services,
};
use crate::{
    output::pprof::{build_where, Kind},
    pprof_proto as pb,
    profile::Profile,
};

pub const MAX_PROFILE_BYTES: usize = 4 << 20;
pub const MAX_PROFILE_SAMPLES: usize = 16_000;
pub const MAX_LABELS: usize = 30;

/// What the series are named and labelled with.
#[derive(Debug, Clone)]
pub struct PyroscopeOptions {
    /// The `host` label.
    pub host: String,
    /// `__name__` of off-CPU series: `off_cpu`, or `offcpu` as Alloy names it.
    pub offcpu_name: String,
}

/// A window's push, and what it took.
#[derive(Debug, Default)]
pub struct Encoded {
    pub request: PushRequest,
    /// Profiles in it (raw samples, over every series).
    pub profiles: usize,
    /// Series whose profile was split to fit the limits.
    pub split: usize,
}

impl Kind {
    fn series_name(self, opts: &PyroscopeOptions) -> &str {
        match self {
            Kind::Cpu => "process_cpu",
            Kind::OffCpu => &opts.offcpu_name,
            Kind::Wall => "wall",
        }
    }
}

fn fits(p: &pb::Profile) -> bool {
    p.sample.len() <= MAX_PROFILE_SAMPLES && p.encoded_len() <= MAX_PROFILE_BYTES
}

/// `p`'s samples in pieces of at most [`MAX_PROFILE_SAMPLES`] and about
/// [`MAX_PROFILE_BYTES`], each with the whole tables (Pyroscope sums the
/// profiles of one series and time).
fn pieces(p: pb::Profile) -> Vec<pb::Profile> {
    if fits(&p) {
        return vec![p];
    }
    let tables = pb::Profile { sample: Vec::new(), ..p.clone() };
    let room = MAX_PROFILE_BYTES.saturating_sub(tables.encoded_len()).max(1);
    let mut out = Vec::new();
    let mut piece = tables.clone();
    let mut bytes = 0;
    for s in p.sample {
        let len = s.encoded_len() + 4;
        if !piece.sample.is_empty() && (piece.sample.len() >= MAX_PROFILE_SAMPLES || bytes + len > room) {
            out.push(std::mem::replace(&mut piece, tables.clone()));
            bytes = 0;
        }
        bytes += len;
        piece.sample.push(s);
    }
    out.push(piece);
    out
}

/// The kinds a window has: on-CPU always; off-CPU and wall-clock where
/// thread states were sampled or traced.
pub fn kinds_of(profile: &Profile) -> &'static [Kind] {
    if profile.state_hz > 0 || !profile.off_cpu.is_empty() {
        &Kind::ALL
    } else {
        &[Kind::Cpu]
    }
}

/// The push of one window.
pub fn encode(profile: &Profile, opts: &PyroscopeOptions) -> Encoded {
    let mut out = Encoded::default();
    for (service, procs) in services(profile) {
        for &kind in kinds_of(profile) {
            let whole = build_where(profile, kind, &|p| procs.contains(&p));
            if whole.sample.is_empty() {
                continue;
            }
            let parts = if fits(&whole) {
                vec![whole]
            } else {
                out.split += 1;
                // By process (pid), then by samples.
                let pids: BTreeSet<u32> = procs.iter().filter_map(|&i| profile.process(i)).map(|p| p.pid).collect();
                pids.into_iter()
                    .flat_map(|pid| {
                        let keep = |i: u32| profile.process(i).is_some_and(|p| p.pid == pid) && procs.contains(&i);
                        pieces(build_where(profile, kind, &keep))
                    })
                    .filter(|p| !p.sample.is_empty())
                    .collect()
            };
            let mut labels = vec![
                LabelPair { name: "__name__".into(), value: kind.series_name(opts).into() },
                LabelPair { name: "service_name".into(), value: service.name.clone() },
                LabelPair { name: "host".into(), value: opts.host.clone() },
            ];
            labels.extend(service.labels.iter().map(|(k, v)| LabelPair { name: (*k).into(), value: v.clone() }));
            labels.truncate(MAX_LABELS);
            let samples: Vec<RawSample> = parts
                .iter()
                .enumerate()
                .map(|(n, p)| RawSample {
                    raw_profile: gzip(&p.encode_to_vec()),
                    id: format!(
                        "{}-{}-{}-{}-{n}",
                        opts.host,
                        profile.start_unix_ns,
                        service.name,
                        kind.series_name(opts)
                    ),
                })
                .collect();
            out.profiles += samples.len();
            out.request.series.push(RawProfileSeries { labels, samples });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        enrich::process::ProcessInfo,
        profile::{Frame, FrameKind, Stack},
    };

    fn opts() -> PyroscopeOptions {
        PyroscopeOptions { host: "h".into(), offcpu_name: "off_cpu".into() }
    }

    /// Two processes of one service (same name, no unit), with `per` distinct stacks each.
    fn profile(per: usize) -> Profile {
        let mut p = Profile { frequency_hz: 100, duration_ns: 1_000_000_000, ..Profile::default() };
        for (id, pid) in [(0u32, 10u32), (1, 11)] {
            p.processes.push(ProcessInfo { id, pid, comm: "app".into(), ..Default::default() });
            for i in 0..per {
                let name: Arc<str> = Arc::from(format!("f{i}"));
                p.stacks.push(Stack {
                    pid,
                    tid: pid,
                    comm: "app".into(),
                    process: id,
                    syscall: -1,
                    frames: vec![Frame::new(name, FrameKind::User, None, i as u64)].into(),
                    count: 1,
                    times: Default::default(),
                });
            }
        }
        p
    }

    fn decode(raw: &[u8]) -> pb::Profile {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(raw), &mut plain).unwrap();
        pb::Profile::decode(&plain[..]).unwrap()
    }

    #[test]
    fn one_series_per_service_and_kind_named_as_pyroscope_expects() {
        let e = encode(&profile(3), &opts());
        assert_eq!(e.request.series.len(), 1, "on-CPU only: no states were sampled");
        let labels: Vec<(&str, &str)> =
            e.request.series[0].labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
        assert_eq!(labels, [("__name__", "process_cpu"), ("service_name", "app"), ("host", "h")]);
        assert_eq!(e.split, 0);
        let p = decode(&e.request.series[0].samples[0].raw_profile);
        assert_eq!(p.sample.iter().map(|s| s.value[0]).sum::<i64>(), 6);
    }

    #[test]
    fn a_profile_over_the_limits_is_split_by_process_then_by_samples() {
        // 2 × 9,000 samples: over 16,000 together, under it per process.
        let e = encode(&profile(9_000), &opts());
        assert_eq!(e.split, 1);
        let parts: Vec<pb::Profile> = e.request.series[0].samples.iter().map(|s| decode(&s.raw_profile)).collect();
        assert_eq!(parts.len(), 2, "one per process");
        assert!(parts.iter().all(|p| p.sample.len() <= MAX_PROFILE_SAMPLES && p.encoded_len() <= MAX_PROFILE_BYTES));
        assert_eq!(parts.iter().map(|p| p.sample.len()).sum::<usize>(), 18_000, "nothing lost");
        // 2 × 20,000: each process is cut by samples too.
        let e = encode(&profile(20_000), &opts());
        let parts: Vec<pb::Profile> = e.request.series[0].samples.iter().map(|s| decode(&s.raw_profile)).collect();
        assert!(parts.len() >= 4, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.sample.len() <= MAX_PROFILE_SAMPLES && p.encoded_len() <= MAX_PROFILE_BYTES));
        assert_eq!(parts.iter().map(|p| p.sample.len()).sum::<usize>(), 40_000, "nothing lost");
        let ids: std::collections::BTreeSet<&str> = e.request.series[0].samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids.len(), parts.len(), "each part has an id of its own");
    }

    #[test]
    fn service_names_come_from_the_unit_and_never_say_unknown() {
        use super::super::service::service_of;
        let mut p = ProcessInfo { pid: 7, comm: "nginx".into(), ..Default::default() };
        assert_eq!(service_of(Some(&p)).name, "nginx");
        p.placement.unit = Some("web-frontend.service".into());
        assert_eq!(service_of(Some(&p)).name, "web-frontend");
        p.placement.unit = Some("docker-abc.scope".into());
        let s = service_of(Some(&p));
        assert_eq!((s.name.as_str(), s.labels.get("unit").map(String::as_str)), ("nginx", Some("docker-abc.scope")));
        let k = ProcessInfo { pid: 40, ppid: Some(2), comm: "kworker/0:1".into(), ..Default::default() };
        assert_eq!(service_of(Some(&k)).name, "kernel");
        let nameless = ProcessInfo { pid: 9, ..Default::default() };
        assert_eq!(service_of(Some(&nameless)).name, "pid-9");
        assert_ne!(service_of(None).name, "unknown_service");
    }
}
