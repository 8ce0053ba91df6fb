//! The agent's configuration: every setting is a flag, an environment
//! variable and a key of a TOML file. Precedence: flag over environment over
//! file over default (the command line resolves the first two, see cli/).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// Where the configuration file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/tailprof/agent.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9740";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/tailprof";

/// Settings as a file (or the command line) gives them: every one optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentSettings {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// e.g. "10s".
    pub window: Option<String>,
    /// e.g. "7d".
    pub retention: Option<String>,
    /// e.g. "1GiB", "500MB", or bytes.
    pub max_disk: Option<String>,
    /// Free space the data directory's file system keeps, e.g. "1GiB".
    pub min_free_disk: Option<String>,
    pub token_file: Option<PathBuf>,
    /// On-CPU sampling frequency per CPU, Hz.
    pub frequency: Option<u64>,
    /// Share of one CPU the agent may spend, percent.
    pub cpu_budget: Option<f64>,
    pub state_hz: Option<u64>,
    pub max_threads: Option<u32>,
    /// Name the windows' user frames from DWARF too.
    pub debug_info: Option<bool>,
    /// Longest deep capture, e.g. "2m".
    pub capture_max_duration: Option<String>,
    /// Pause after a capture before the next may start, e.g. "1m".
    pub capture_cooldown: Option<String>,
    /// Length of the captures alerts and rules start, e.g. "10s".
    pub capture_duration: Option<String>,
    /// Captures kept on disk; older ones are deleted.
    pub captures_kept: Option<usize>,
    /// Age after which windows are merged into 5-minute segments (those
    /// 36 times as old into hours), e.g. "10m".
    pub compact_after: Option<String>,
    /// Local rules that start captures on the continuous tier's own
    /// signals (`[[rules]]` tables; the file only).
    pub rules: Option<Vec<RuleSettings>>,
    /// Pyroscope servers to push every window to (their base URLs).
    pub push_pyroscope: Option<Vec<String>>,
    /// OTLP/HTTP endpoints to push every window to as OTLP profiles (base URLs).
    pub push_otlp: Option<Vec<String>>,
    /// The OTLP profiles proto version spoken (the signal is in development).
    pub otlp_profiles_version: Option<String>,
    /// How often pushes go out, e.g. "15s".
    pub push_interval: Option<String>,
    /// `__name__` of the off-CPU series: `off_cpu`, or `offcpu` as Alloy names it.
    pub push_offcpu_name: Option<String>,
    /// How far back a backend that was down is caught up, e.g. "1h".
    pub push_replay: Option<String>,
    /// A file holding `user:password` for HTTP basic auth of pushes.
    pub push_basic_auth_file: Option<PathBuf>,
    /// A file holding a bearer token for pushes.
    pub push_bearer_token_file: Option<PathBuf>,
    /// The tenant (`X-Scope-OrgID`) pushes are for.
    pub push_tenant: Option<String>,
}

/// One `[[rules]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleSettings {
    pub name: String,
    /// `runqueue-share` (of a group's demand, on-CPU plus waiting for a
    /// CPU, the share spent waiting; 0 to 1) or `disk-threads` (threads
    /// the window's snapshots saw mostly in disk wait).
    pub when: String,
    pub above: f64,
    /// Consecutive windows the signal must stay above.
    pub for_windows: Option<u32>,
    /// Capture length [default: --capture-duration].
    pub duration: Option<String>,
    /// Pause after this rule started a capture [default: 10m].
    pub cooldown: Option<String>,
    /// Most captures this rule starts per hour [default: 4].
    pub max_per_hour: Option<u32>,
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    RunqueueShare,
    DiskThreads,
}

/// A rule, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub name: String,
    pub when: Signal,
    pub above: f64,
    pub for_windows: u32,
    #[serde(with = "humantime_serde_secs")]
    pub duration: Duration,
    #[serde(with = "humantime_serde_secs")]
    pub cooldown: Duration,
    pub max_per_hour: u32,
}

impl AgentSettings {
    /// `self`, with what it leaves unset taken from `under`.
    pub fn over(self, under: AgentSettings) -> AgentSettings {
        AgentSettings {
            listen: self.listen.or(under.listen),
            data_dir: self.data_dir.or(under.data_dir),
            window: self.window.or(under.window),
            retention: self.retention.or(under.retention),
            max_disk: self.max_disk.or(under.max_disk),
            min_free_disk: self.min_free_disk.or(under.min_free_disk),
            token_file: self.token_file.or(under.token_file),
            frequency: self.frequency.or(under.frequency),
            cpu_budget: self.cpu_budget.or(under.cpu_budget),
            state_hz: self.state_hz.or(under.state_hz),
            max_threads: self.max_threads.or(under.max_threads),
            debug_info: self.debug_info.or(under.debug_info),
            capture_max_duration: self.capture_max_duration.or(under.capture_max_duration),
            capture_cooldown: self.capture_cooldown.or(under.capture_cooldown),
            capture_duration: self.capture_duration.or(under.capture_duration),
            captures_kept: self.captures_kept.or(under.captures_kept),
            compact_after: self.compact_after.or(under.compact_after),
            rules: self.rules.or(under.rules),
            push_pyroscope: self.push_pyroscope.or(under.push_pyroscope),
            push_otlp: self.push_otlp.or(under.push_otlp),
            otlp_profiles_version: self.otlp_profiles_version.or(under.otlp_profiles_version),
            push_interval: self.push_interval.or(under.push_interval),
            push_offcpu_name: self.push_offcpu_name.or(under.push_offcpu_name),
            push_replay: self.push_replay.or(under.push_replay),
            push_basic_auth_file: self.push_basic_auth_file.or(under.push_basic_auth_file),
            push_bearer_token_file: self.push_bearer_token_file.or(under.push_bearer_token_file),
            push_tenant: self.push_tenant.or(under.push_tenant),
        }
    }

    /// Parse a TOML file's text; `what` names it in the error.
    pub fn from_toml(text: &str, what: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::File { what: what.to_owned(), reason: e.message().to_owned() })
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    #[serde(with = "humantime_serde_secs")]
    pub window: Duration,
    #[serde(with = "humantime_serde_secs")]
    pub retention: Duration,
    pub max_disk_bytes: u64,
    pub min_free_disk_bytes: u64,
    /// Shown as the path only: the token itself is never shown.
    pub token_file: Option<PathBuf>,
    pub frequency_hz: u64,
    pub cpu_budget_percent: f64,
    pub state_hz: u64,
    pub max_threads: u32,
    /// Windows name user frames from DWARF too (captures always do).
    pub debug_info: bool,
    pub captures: CaptureLimits,
    /// Fleet backends profiles are pushed to.
    pub push: PushConfig,
    #[serde(with = "humantime_serde_secs")]
    pub compact_after: Duration,
    pub rules: Vec<Rule>,
    /// Test-only: a program whose attach is made to fail (see
    /// [`crate::config::ProgramPolicy::break_program`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_program: Option<String>,
}

/// Limits on captures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CaptureLimits {
    #[serde(with = "humantime_serde_secs")]
    pub max_duration: Duration,
    #[serde(with = "humantime_serde_secs")]
    pub cooldown: Duration,
    /// Of alerts and rules, which give none.
    #[serde(with = "humantime_serde_secs")]
    pub default_duration: Duration,
    /// Captures kept on disk (the oldest are deleted).
    pub keep: usize,
}

/// Durations as humantime text in the shown configuration.
pub(crate) mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// A setting that does not parse, or a file that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("the configuration file {what} is not valid: {reason}")]
    File { what: String, reason: String },
    #[error("could not read the configuration file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{key} = {value:?} is not valid: {reason}")]
    Value { key: &'static str, value: String, reason: String },
    #[error("listening on {0} without --token-file would let anyone on the network read the host's profiles; give --token-file FILE, or listen on 127.0.0.1")]
    OpenWithoutToken(SocketAddr),
}

/// Where and how profiles are pushed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PushConfig {
    pub pyroscope: Vec<String>,
    pub otlp: Vec<String>,
    pub otlp_profiles_version: String,
    #[serde(with = "humantime_serde_secs")]
    pub interval: Duration,
    #[serde(with = "humantime_serde_secs")]
    pub replay: Duration,
    pub offcpu_name: String,
    /// Shown as paths only: their contents are never shown.
    pub basic_auth_file: Option<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
    pub tenant: Option<String>,
}

/// A backend's base URL, checked: http or https, with a host.
fn push_url(key: &'static str, u: String) -> Result<String, ConfigError> {
    let bad = |reason: &str| ConfigError::Value { key, value: u.clone(), reason: reason.into() };
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| bad("it is not an http:// or https:// URL"))?;
    if rest.split('/').next().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    Ok(u.trim_end_matches('/').to_owned())
}

/// Bytes from "1GiB", "500MB", "64MiB", "1024".
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a size; write it like 512MiB, 1GiB or 1000000"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => return Err(format!("'{other}' is not a unit of size; use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    Ok((n * mult) as u64)
}

impl AgentConfig {
    /// The effective configuration from merged settings; defaults fill the rest.
    pub fn resolve(s: AgentSettings) -> Result<Self, ConfigError> {
        let dur = |key: &'static str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.to_owned());
            humantime::parse_duration(&v).map_err(|e| ConfigError::Value {
                key,
                value: v.clone(),
                reason: e.to_string(),
            })
        };
        let bytes = |key: &'static str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.to_owned());
            parse_bytes(&v).map_err(|reason| ConfigError::Value { key, value: v.clone(), reason })
        };
        let window = dur("window", s.window, "10s")?;
        let capture_duration = dur("capture-duration", s.capture_duration.clone(), "10s")?;
        if window < Duration::from_secs(1) {
            return Err(ConfigError::Value {
                key: "window",
                value: humantime::format_duration(window).to_string(),
                reason: "windows shorter than 1s cost more than they show".into(),
            });
        }
        let listen = match s.listen {
            Some(l) => l,
            None => DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Value {
                key: "listen",
                value: DEFAULT_LISTEN.into(),
                reason: "not an address".into(),
            })?,
        };
        if !listen.ip().is_loopback() && s.token_file.is_none() {
            return Err(ConfigError::OpenWithoutToken(listen));
        }
        Ok(Self {
            listen,
            data_dir: s.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            window,
            retention: dur("retention", s.retention, "7d")?,
            max_disk_bytes: bytes("max-disk", s.max_disk, "1GiB")?,
            min_free_disk_bytes: bytes("min-free-disk", s.min_free_disk, "1GiB")?,
            token_file: s.token_file,
            frequency_hz: s.frequency.unwrap_or(99),
            cpu_budget_percent: s.cpu_budget.unwrap_or(1.0),
            state_hz: s.state_hz.unwrap_or(20),
            max_threads: s.max_threads.unwrap_or(profiler_common::MAX_THREADS),
            debug_info: s.debug_info.unwrap_or(false),
            captures: CaptureLimits {
                max_duration: dur("capture-max-duration", s.capture_max_duration, "2m")?,
                cooldown: dur("capture-cooldown", s.capture_cooldown, "1m")?,
                default_duration: capture_duration,
                keep: s.captures_kept.unwrap_or(20),
            },
            compact_after: dur("compact-after", s.compact_after, "10m")?,
            push: PushConfig {
                pyroscope: s
                    .push_pyroscope
                    .unwrap_or_default()
                    .into_iter()
                    .map(|u| push_url("push-pyroscope", u))
                    .collect::<Result<_, _>>()?,
                otlp: s
                    .push_otlp
                    .unwrap_or_default()
                    .into_iter()
                    .map(|u| push_url("push-otlp", u))
                    .collect::<Result<_, _>>()?,
                otlp_profiles_version: match s.otlp_profiles_version.as_deref() {
                    None => crate::export::otlp_proto::VERSION.to_owned(),
                    Some(v) if v == crate::export::otlp_proto::VERSION => v.to_owned(),
                    Some(v) => {
                        return Err(ConfigError::Value {
                            key: "otlp-profiles-version",
                            value: v.to_owned(),
                            reason: format!(
                                "this build speaks the OTLP profiles signal of opentelemetry-proto {} only",
                                crate::export::otlp_proto::VERSION
                            ),
                        })
                    }
                },
                interval: dur("push-interval", s.push_interval, "15s")?,
                replay: dur("push-replay", s.push_replay, "1h")?,
                offcpu_name: match s.push_offcpu_name.as_deref().unwrap_or("off_cpu") {
                    n @ ("off_cpu" | "offcpu") => n.to_owned(),
                    other => {
                        return Err(ConfigError::Value {
                            key: "push-offcpu-name",
                            value: other.to_owned(),
                            reason: "it is off_cpu or offcpu".into(),
                        })
                    }
                },
                basic_auth_file: s.push_basic_auth_file,
                bearer_token_file: s.push_bearer_token_file,
                tenant: s.push_tenant,
            },
            rules: s
                .rules
                .unwrap_or_default()
                .into_iter()
                .map(|r| rule(r, capture_duration))
                .collect::<Result<_, _>>()?,
            break_program: None,
        })
    }

    /// The capture settings the pipeline runs with.
    pub fn capture(&self, output: PathBuf) -> crate::config::RecordConfig {
        crate::config::RecordConfig {
            // An agent runs until it is stopped.
            duration: Duration::from_secs(100 * 365 * 86_400),
            window: Some(self.window),
            frequency_hz: self.frequency_hz,
            selection: Default::default(),
            group_by: Default::default(),
            output,
            tier: crate::tier::Tier::Continuous,
            cpu_budget: Some(self.cpu_budget_percent),
            off_cpu: true,
            state_hz: self.state_hz,
            max_threads: self.max_threads,
            max_stacks: profiler_common::MAX_STACKS,
            unwind: crate::config::UnwindMethod::Auto,
            user_stack_bytes: profiler_common::DEFAULT_USER_STACK_BYTES,
            lines: false,
            debug_info: self.debug_info,
            syscall_latency: false,
            slos: Vec::new(),
            btf: PathBuf::from(crate::kernel_btf::SYSFS_BTF),
            programs: crate::config::ProgramPolicy { degrade: true, break_program: self.break_program.clone() },
        }
    }
}

/// A rule's table, checked: one sentence naming the rule and the key if not.
fn rule(r: RuleSettings, default_duration: Duration) -> Result<Rule, ConfigError> {
    let bad = |reason: String| ConfigError::Value { key: "rules", value: r.name.clone(), reason };
    if r.name.is_empty() || !r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(bad("a rule's name is letters, digits, - and _".into()));
    }
    let when = match r.when.as_str() {
        "runqueue-share" => Signal::RunqueueShare,
        "disk-threads" => Signal::DiskThreads,
        w => return Err(bad(format!("when = \"{w}\" is not a signal; use runqueue-share or disk-threads"))),
    };
    let limit = match when {
        Signal::RunqueueShare => 0.0..1.0,
        Signal::DiskThreads => 0.0..1e9,
    };
    if !limit.contains(&r.above) {
        return Err(bad(format!("above = {} is out of range for {}", r.above, r.when)));
    }
    let d = |v: &Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s).map_err(|e| bad(format!("'{s}' is not a duration: {e}"))),
    };
    Ok(Rule {
        when,
        above: r.above,
        for_windows: r.for_windows.unwrap_or(3).max(1),
        duration: d(&r.duration, default_duration)?,
        cooldown: d(&r.cooldown, Duration::from_secs(600))?,
        max_per_hour: r.max_per_hour.unwrap_or(4),
        name: r.name,
    })
}

/// Read a configuration file; a missing default file is no error.
pub fn read_file(path: Option<&std::path::Path>) -> Result<AgentSettings, ConfigError> {
    let (path, must) = match path {
        Some(p) => (p.to_owned(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => AgentSettings::from_toml(&text, &path.display().to_string()),
        Err(e) if !must && e.kind() == std::io::ErrorKind::NotFound => Ok(AgentSettings::default()),
        Err(e) => Err(ConfigError::Read { path: path.display().to_string(), reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_over_environment_over_file_over_defaults() {
        let file =
            AgentSettings::from_toml("window = \"5s\"\nretention = \"1d\"\nmax-disk = \"64MiB\"\n", "t").unwrap();
        let given = AgentSettings { window: Some("2s".into()), ..Default::default() };
        let c = AgentConfig::resolve(given.over(file)).unwrap();
        assert_eq!(c.window, Duration::from_secs(2));
        assert_eq!(c.retention, Duration::from_secs(86_400));
        assert_eq!(c.max_disk_bytes, 64 << 20);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn bad_settings_say_which_and_why() {
        let e = AgentSettings::from_toml("windw = \"5s\"", "agent.toml").unwrap_err();
        assert!(e.to_string().contains("agent.toml") && e.to_string().contains("windw"), "{e}");
        let e =
            AgentConfig::resolve(AgentSettings { max_disk: Some("lots".into()), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("max-disk"), "{e}");
        let open = AgentSettings { listen: Some("0.0.0.0:9740".parse().unwrap()), ..Default::default() };
        assert!(matches!(AgentConfig::resolve(open), Err(ConfigError::OpenWithoutToken(_))));
        let r = AgentSettings::from_toml("[[rules]]\nname = \"x\"\nwhen = \"load\"\nabove = 1.0\n", "t").unwrap();
        let e = AgentConfig::resolve(r).unwrap_err();
        assert!(e.to_string().contains("not a signal"), "{e}");
        let r =
            AgentSettings::from_toml("[[rules]]\nname = \"x\"\nwhen = \"runqueue-share\"\nabove = 2.0\n", "t").unwrap();
        assert!(AgentConfig::resolve(r).unwrap_err().to_string().contains("out of range"));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
    }

    #[test]
    fn the_shipped_example_file_loads() {
        let text = include_str!("../../../dist/agent.toml");
        let c = AgentConfig::resolve(AgentSettings::from_toml(text, "dist/agent.toml").unwrap()).unwrap();
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[0].when, Signal::RunqueueShare);
        assert_eq!(c.window, Duration::from_secs(10));
    }
}
