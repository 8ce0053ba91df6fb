//! `tailprof report DIR`: re-render a finished capture from its samples
//! file, sliced by other dimensions and filtered anew.

use std::path::PathBuf;

use crate::{config::ReportConfig, output, profile::Profile, samples_file, Result};

/// What a report produced.
pub struct Report {
    pub profile: Profile,
    pub files: Vec<PathBuf>,
}

pub fn report(args: &ReportConfig) -> Result<Report> {
    // Read and check everything before writing anything.
    let mut profile = samples_file::read(&args.dir)?;
    let out = args.output.clone().unwrap_or_else(|| args.dir.clone());
    crate::atomic_file::prepare_output_dir(&out)?;
    if let Some(g) = &args.group_by {
        profile.group_by = g.clone();
    }
    profile.lines |= args.lines;
    profile.select(&args.selection);
    let files = output::write_all(&out, &profile)?;
    Ok(Report { profile, files })
}
