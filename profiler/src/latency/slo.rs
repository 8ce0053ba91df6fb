//! `--slo runq=1ms,disk=20ms,syscall:read=10ms`: latency thresholds whose
//! misery counts (events above them) the histogram report gives.

use profiler_common::noise::{SOFTIRQ_NAMES, VECTOR_NAMES};

use super::kind::Kind;

/// The targets `--slo` accepts, for error messages.
const TARGETS: &str = "runq, runq:COMM, sleeping, disk, other, syscall, syscall:NAME, irq, irq:N, \
     softirq, softirq:NAME, vector, vector:NAME";

/// Syscall numbers searched for a name (every table in syscall-numbers is below this).
const MAX_SYSCALL_NR: i32 = 1024;

/// One latency threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slo {
    /// As written (trimmed), e.g. `syscall:read=10ms`.
    pub spec: String,
    /// Histogram kind the threshold applies to.
    pub kind: Kind,
    /// Which histograms of the kind: a process comm (runq), `sleeping` /
    /// `disk` / `other` (off_cpu, always set), a syscall name (lowercase),
    /// an IRQ number, a softirq or vector name (uppercase, as in
    /// `SOFTIRQ_NAMES` / `VECTOR_NAMES`). `None`: all of the kind.
    pub name: Option<String>,
    /// Events longer than this (ns) exceed it.
    pub threshold_ns: u64,
}

impl Slo {
    /// The part of [`Slo::spec`] before `=`, e.g. `syscall:read`.
    pub fn target(&self) -> &str {
        self.spec.split_once('=').map_or(self.spec.as_str(), |(t, _)| t.trim())
    }
}

/// Parses a comma-separated list of `TARGET=DURATION`, naming syscalls
/// with this machine's syscall table.
pub fn parse_slos(s: &str) -> Result<Vec<Slo>, String> {
    parse_slos_for_arch(s, std::env::consts::ARCH)
}

/// [`parse_slos`] for the syscall table of `arch` (`x86_64`, `aarch64`; others: this machine's).
pub fn parse_slos_for_arch(s: &str, arch: &str) -> Result<Vec<Slo>, String> {
    if s.trim().is_empty() {
        return Err("--slo needs at least one TARGET=DURATION, like runq=1ms".to_owned());
    }
    s.split(',').map(|item| parse_one(item.trim(), arch)).collect()
}

/// One `TARGET=DURATION`.
fn parse_one(spec: &str, arch: &str) -> Result<Slo, String> {
    if spec.is_empty() {
        return Err("empty SLO between commas; write TARGET=DURATION, like runq=1ms".to_owned());
    }
    let Some((target, duration)) = spec.split_once('=') else {
        return Err(format!("'{spec}': expected TARGET=DURATION, like runq=1ms"));
    };
    let (target, duration) = (target.trim(), duration.trim());
    let threshold = humantime::parse_duration(duration)
        .map_err(|_| format!("'{spec}': '{duration}' is not a duration like 1ms"))?;
    let threshold_ns = u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX);
    let (base, name) = match target.split_once(':') {
        Some((b, n)) => (b.trim(), Some(n.trim())),
        None => (target, None),
    };
    let unknown = || format!("'{spec}': unknown target '{target}'; use one of {TARGETS}");
    if name == Some("") {
        return Err(format!("'{spec}': '{base}:' needs a name after the colon"));
    }
    let (kind, name) = match (base.to_ascii_lowercase().as_str(), name) {
        ("runq", name) => (Kind::Runq, name.map(str::to_owned)),
        (state @ ("sleeping" | "disk" | "other"), None) => (Kind::OffCpu, Some(state.to_owned())),
        ("syscall", None) => (Kind::Syscall, None),
        ("syscall", Some(n)) => {
            let n = n.to_ascii_lowercase();
            if syscall_number(arch, &n).is_none() {
                return Err(format!("'{spec}': '{n}' is not a system call on {arch}"));
            }
            (Kind::Syscall, Some(n))
        }
        ("irq", None) => (Kind::Irq, None),
        ("irq", Some(n)) => {
            let nr: u32 = n.parse().map_err(|_| format!("'{spec}': '{n}' is not an IRQ number"))?;
            (Kind::Irq, Some(nr.to_string()))
        }
        ("softirq", None) => (Kind::Softirq, None),
        ("softirq", Some(n)) => (Kind::Softirq, Some(known_name(spec, "softirq", n, &SOFTIRQ_NAMES)?)),
        ("vector", None) => (Kind::Vector, None),
        ("vector", Some(n)) => (Kind::Vector, Some(known_name(spec, "interrupt vector", n, &VECTOR_NAMES)?)),
        _ => return Err(unknown()),
    };
    Ok(Slo { spec: spec.to_owned(), kind, name, threshold_ns })
}

/// `name` as spelled in `names` (case-insensitive), or an error listing them.
fn known_name(spec: &str, what: &str, name: &str, names: &[&str]) -> Result<String, String> {
    match names.iter().find(|n| n.eq_ignore_ascii_case(name)) {
        Some(n) => Ok((*n).to_owned()),
        None => {
            let mut list: Vec<&str> = names.to_vec();
            list.dedup();
            Err(format!("'{spec}': unknown {what} '{name}'; use one of {}", list.join(", ")))
        }
    }
}

/// The number of the system call `name` on `arch`, as named by
/// `crate::profile::syscall_name_of` (so `syscall_N` names the unnamed numbers).
pub fn syscall_number(arch: &str, name: &str) -> Option<u32> {
    (0..MAX_SYSCALL_NR).find(|&nr| crate::profile::syscall_name_of(arch, nr) == name).map(|nr| nr as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<Slo>, String> {
        parse_slos_for_arch(s, "x86_64")
    }

    #[test]
    fn parses_every_target() {
        let slos = parse(
            "runq=1ms, runq:postgres=250us,sleeping=2s,disk=20ms,other=1s,syscall=5ms,syscall:READ=10ms,\
             irq=50us,irq:36=20us,softirq=1ms,softirq:net_rx=100us,vector=1ms,vector:loc=10us",
        )
        .expect("valid");
        let got: Vec<(Kind, Option<&str>, u64)> =
            slos.iter().map(|s| (s.kind, s.name.as_deref(), s.threshold_ns)).collect();
        assert_eq!(
            got,
            [
                (Kind::Runq, None, 1_000_000),
                (Kind::Runq, Some("postgres"), 250_000),
                (Kind::OffCpu, Some("sleeping"), 2_000_000_000),
                (Kind::OffCpu, Some("disk"), 20_000_000),
                (Kind::OffCpu, Some("other"), 1_000_000_000),
                (Kind::Syscall, None, 5_000_000),
                (Kind::Syscall, Some("read"), 10_000_000),
                (Kind::Irq, None, 50_000),
                (Kind::Irq, Some("36"), 20_000),
                (Kind::Softirq, None, 1_000_000),
                (Kind::Softirq, Some("NET_RX"), 100_000),
                (Kind::Vector, None, 1_000_000),
                (Kind::Vector, Some("LOC"), 10_000),
            ]
        );
        assert_eq!(slos[1].spec, "runq:postgres=250us");
        assert_eq!(slos[1].target(), "runq:postgres");
        assert_eq!(slos[6].target(), "syscall:READ");
    }

    #[test]
    fn bad_input_is_one_clear_sentence() {
        let cases = [
            ("", "--slo needs at least one TARGET=DURATION, like runq=1ms"),
            ("runq=1ms,", "empty SLO between commas; write TARGET=DURATION, like runq=1ms"),
            ("runq", "'runq': expected TARGET=DURATION, like runq=1ms"),
            ("runq=fast", "'runq=fast': 'fast' is not a duration like 1ms"),
            ("runq=", "'runq=': '' is not a duration like 1ms"),
            ("dsk=20ms", &format!("'dsk=20ms': unknown target 'dsk'; use one of {TARGETS}")),
            ("disk:sda=20ms", &format!("'disk:sda=20ms': unknown target 'disk:sda'; use one of {TARGETS}")),
            ("syscall:raed=10ms", "'syscall:raed=10ms': 'raed' is not a system call on x86_64"),
            ("irq:eth0=1ms", "'irq:eth0=1ms': 'eth0' is not an IRQ number"),
            ("runq:=1ms", "'runq:=1ms': 'runq:' needs a name after the colon"),
            (
                "softirq:NETRX=1ms",
                "'softirq:NETRX=1ms': unknown softirq 'NETRX'; use one of HI, TIMER, NET_TX, NET_RX, BLOCK, \
                 IRQ_POLL, TASKLET, SCHED, HRTIMER, RCU",
            ),
            (
                "vector:TLB=1ms",
                "'vector:TLB=1ms': unknown interrupt vector 'TLB'; use one of LOC, RES, CAL, IWI, PLT, TRM, SPU, ERR",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).expect_err(input), want, "{input}");
        }
    }

    #[test]
    fn syscall_reverse_lookup() {
        assert_eq!(syscall_number("x86_64", "read"), Some(0));
        assert_eq!(syscall_number("x86_64", "write"), Some(1));
        assert_eq!(syscall_number("aarch64", "read"), Some(63));
        assert_eq!(syscall_number("x86_64", "no_such_call"), None);
        for nr in [0, 1, 59, 202, 435] {
            let name = crate::profile::syscall_name_of("x86_64", nr);
            assert_eq!(syscall_number("x86_64", &name), Some(nr as u32), "{name}");
        }
    }
}
