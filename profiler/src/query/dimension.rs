//! The dimensions reports are sliced by (`--group-by`), as values: which
//! ones, in which order. What each dimension's value is for a piece of time
//! is `crate::group`'s.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// The thread's name.
    Comm,
    /// The process's name (its main thread's comm).
    Process,
    Pid,
    Tid,
    /// The process owner's user name (or uid).
    User,
    /// Cgroup v2 path, else the v1 name=systemd or cpu path.
    Cgroup,
    /// Container id.
    Container,
    /// Kubernetes pod UID.
    Pod,
    /// systemd unit, else slice.
    Unit,
    /// running, runnable, sleeping, disk, other.
    State,
    /// System call name.
    Syscall,
}

/// Every dimension, in the order the error message lists them.
pub const DIMENSIONS: [Dimension; 11] = [
    Dimension::Comm,
    Dimension::Process,
    Dimension::Pid,
    Dimension::Tid,
    Dimension::User,
    Dimension::Cgroup,
    Dimension::Container,
    Dimension::Pod,
    Dimension::Unit,
    Dimension::State,
    Dimension::Syscall,
];

/// Value of a dimension that does not apply (no container, no syscall…).
pub const NONE: &str = "[none]";

impl Dimension {
    pub fn name(self) -> &'static str {
        match self {
            Self::Comm => "comm",
            Self::Process => "process",
            Self::Pid => "pid",
            Self::Tid => "tid",
            Self::User => "user",
            Self::Cgroup => "cgroup",
            Self::Container => "container",
            Self::Pod => "pod",
            Self::Unit => "unit",
            Self::State => "state",
            Self::Syscall => "syscall",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dimension {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DIMENSIONS.into_iter().find(|d| d.name() == s).ok_or_else(|| {
            let valid: Vec<&str> = DIMENSIONS.iter().map(|d| d.name()).collect();
            format!("unknown --group-by dimension '{s}'; valid: {}", valid.join(", "))
        })
    }
}

/// The chosen dimensions, in order. Default: `comm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupBy(pub Vec<Dimension>);

impl Default for GroupBy {
    fn default() -> Self {
        Self(vec![Dimension::Comm])
    }
}

/// Parse `comm,container,state`; each dimension at most once.
pub fn parse_group_by(s: &str) -> Result<GroupBy, String> {
    let mut dims = Vec::new();
    for part in s.split(',').map(str::trim) {
        let d: Dimension = part.parse()?;
        if dims.contains(&d) {
            return Err(format!("--group-by names '{d}' twice"));
        }
        dims.push(d);
    }
    Ok(GroupBy(dims))
}
