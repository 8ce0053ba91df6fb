//! `tailprof record`: the pipeline with directory writers as its sinks.
//! One window (the default) is written into the output directory; with
//! `--window`, each window also goes into `windows/NNNN/` and their merge
//! into the output directory.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    capture::{EndReason, OnProgress},
    config::RecordConfig,
    model::window::Window,
    output,
    pipeline::{self, WindowSink},
    profile::Profile,
    Result,
};

/// The sub-directory of a recording that holds its windows.
pub const WINDOWS_DIR: &str = "windows";

/// What a finished recording produced.
pub struct Recording {
    /// The whole capture (all windows merged).
    pub profile: Profile,
    pub end: EndReason,
    pub windows: u64,
    pub files: Vec<PathBuf>,
}

/// Write one window's reports into `dir`: the profile's outputs, noise and
/// histograms, and the samples file `report` re-renders.
pub fn write_window(dir: &Path, window: &Window, slos: &[crate::latency::Slo]) -> Result<Vec<PathBuf>> {
    let mut files = output::write_all(dir, &window.profile)?;
    let rendered = crate::noise::output::render(&window.noise, slos);
    files.extend(crate::noise::output::write_files(dir, &window.noise, &rendered)?);
    let samples = dir.join(crate::samples_file::SAMPLES_FILE);
    crate::atomic_file::write_atomically(&samples, |w| crate::samples_file::write(&window.profile, w))?;
    files.push(samples);
    Ok(files)
}

/// Merges every window into one, to be written into the output directory.
struct Whole {
    output: PathBuf,
    merged: Option<Arc<Window>>,
}

impl WindowSink for Whole {
    fn open(&mut self) -> Result<()> {
        crate::atomic_file::prepare_output_dir(&self.output)
    }

    fn window(&mut self, window: &Arc<Window>) -> Result<()> {
        self.merged = Some(match self.merged.take() {
            None => window.clone(),
            Some(m) => Arc::new(m.merge(window).map_err(crate::Error::Merge)?),
        });
        Ok(())
    }
}

/// Writes each window into `windows/NNNN/` of the output directory.
struct WindowDirs<'a> {
    root: PathBuf,
    slos: &'a [crate::latency::Slo],
}

impl WindowSink for WindowDirs<'_> {
    fn window(&mut self, window: &Arc<Window>) -> Result<()> {
        let dir = self.root.join(format!("{:04}", window.id));
        crate::atomic_file::prepare_output_dir(&dir)?;
        write_window(&dir, window, self.slos)?;
        tracing::info!(id = window.id, dir = %dir.display(), "window written");
        Ok(())
    }
}

pub async fn record(
    args: &RecordConfig,
    progress: Option<OnProgress>,
    cancel: &crate::sys::cancel::Cancel,
) -> Result<Recording> {
    let mut whole = Whole { output: args.output.clone(), merged: None };
    let mut dirs = WindowDirs { root: args.output.join(WINDOWS_DIR), slos: &args.slos };
    let outcome = match args.window {
        Some(_) => pipeline::run(args, progress, &mut [&mut dirs, &mut whole], cancel).await?,
        None => pipeline::run(args, progress, &mut [&mut whole], cancel).await?,
    };
    let window = whole.merged.take().ok_or_else(|| crate::Error::Read("the capture produced no window".into()))?;
    let started = std::time::Instant::now();
    let files = write_window(&args.output, &window, &args.slos)?;
    tracing::info!(elapsed = ?started.elapsed(), "wrote reports");
    let window = Arc::try_unwrap(window).unwrap_or_else(|w| (*w).clone());
    Ok(Recording { profile: window.profile, end: outcome.end, windows: outcome.windows, files })
}
