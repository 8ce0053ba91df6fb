//! Report writers. Each output is produced from the symbolized
//! [`Profile`](crate::profile::Profile) and written atomically.

pub mod flamegraph;
pub mod folded;
pub mod pprof;
pub mod summary;
pub mod text;
pub mod wallclock;

use std::path::{Path, PathBuf};

use crate::{atomic_file::write_atomically, profile::Profile, Result};

pub const FLAMEGRAPH_SVG: &str = "flamegraph.svg";
pub const STACKS_FOLDED: &str = "stacks.folded";
pub const PROFILE_PB_GZ: &str = "profile.pb.gz";
pub const OFFCPU_PB_GZ: &str = "offcpu.pb.gz";
pub const WALL_PB_GZ: &str = "wall.pb.gz";
pub const SUMMARY_JSON: &str = "summary.json";
pub const WALLCLOCK_FOLDED: &str = "wallclock.folded";
pub const WALLCLOCK_SVG: &str = "wallclock.svg";
pub const OFFCPU_FOLDED: &str = "offcpu.folded";
pub const OFFCPU_SVG: &str = "offcpu.svg";

/// The file `record` writes a pprof profile of `kind` into.
pub fn pprof_file(kind: pprof::Kind) -> &'static str {
    match kind {
        pprof::Kind::Cpu => PROFILE_PB_GZ,
        pprof::Kind::OffCpu => OFFCPU_PB_GZ,
        pprof::Kind::Wall => WALL_PB_GZ,
    }
}

/// Files written atomically into one directory, remembered in order.
pub struct Files<'a> {
    dir: &'a Path,
    pub written: Vec<PathBuf>,
}

impl<'a> Files<'a> {
    pub fn new(dir: &'a Path) -> Self {
        Self { dir, written: Vec::new() }
    }

    /// Write `dir/name` atomically with `fill`.
    pub fn write(
        &mut self,
        name: &str,
        fill: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<()> {
        let path = self.dir.join(name);
        write_atomically(&path, |w| fill(w))?;
        self.written.push(path);
        Ok(())
    }
}

/// Write every report into `dir`; returns the paths written.
pub fn write_all(dir: &Path, profile: &Profile) -> Result<Vec<PathBuf>> {
    let folded = folded::fold(profile);
    let mut files = Files::new(dir);
    let mut write =
        |name: &str, fill: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>| files.write(name, fill);
    write(STACKS_FOLDED, &mut |w| folded::write(&folded, w))?;
    write(FLAMEGRAPH_SVG, &mut |w| flamegraph::write(&folded, "tailprof: on-CPU samples", "samples", w))?;
    // Without the scheduler hooks there is no off-CPU time to show.
    if profile.state_hz > 0 {
        let wall = wallclock::fold_wallclock(profile);
        write(WALLCLOCK_FOLDED, &mut |w| folded::write(&wall, w))?;
        write(WALLCLOCK_SVG, &mut |w| flamegraph::write(&wall, "tailprof: wall-clock time by state", "ns", w))?;
        let off = wallclock::fold_offcpu(profile);
        write(OFFCPU_FOLDED, &mut |w| folded::write(&off, w))?;
        write(OFFCPU_SVG, &mut |w| flamegraph::write(&off, "tailprof: off-CPU time and wakers", "ns", w))?;
        for kind in [pprof::Kind::OffCpu, pprof::Kind::Wall] {
            write(pprof_file(kind), &mut |w| pprof::write(profile, kind, w))?;
        }
    }
    write(PROFILE_PB_GZ, &mut |w| pprof::write(profile, pprof::Kind::Cpu, w))?;
    write(SUMMARY_JSON, &mut |w| summary::write(profile, w))?;
    Ok(files.written)
}
