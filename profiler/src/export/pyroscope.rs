//! A window as a Pyroscope push (`push.v1.PusherService/Push`): one series
//! per service and kind, each holding the gzipped pprof of that service's
//! share of the window. Pyroscope's limits are kept: a profile larger than
//! [`MAX_PROFILE_BYTES`] uncompressed or [`MAX_PROFILE_SAMPLES`] samples is
//! split by process, and a process's still too large by its samples; a
//! series has at most [`MAX_LABELS`] labels.

use std::{collections::BTreeSet, io::Write};

use prost::Message;

use super::{
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

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec does not fail.
    let _ = gz.write_all(bytes);
    gz.finish().unwrap_or_default()
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
