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
    model::window::{ProfileMerger, Window},
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
/// A single window is kept as it is. Of several, only the noise is merged
/// as they come (a few KiB); their profiles, which grow with every process
/// and thread a window saw, are read back from `windows/` at the end, so
/// that memory stays flat however long the recording.
struct Whole {
    output: PathBuf,
    first: Option<Arc<Window>>,
    noise: Option<crate::noise::Measurement>,
    windows: u64,
}

impl WindowSink for Whole {
    fn open(&mut self) -> Result<()> {
        crate::atomic_file::prepare_output_dir(&self.output)
    }

    fn window(&mut self, window: &Arc<Window>) -> Result<()> {
        self.windows += 1;
        match self.first.take() {
            None if self.windows == 1 => self.first = Some(window.clone()),
            first => {
                let so_far = match (first, self.noise.take()) {
                    (Some(f), _) => f.noise.clone(),
                    (None, Some(n)) => n,
                    (None, None) => window.noise.clone(),
                };
                self.noise = Some(merge_noise(&so_far, &window.noise)?);
            }
        }
        Ok(())
    }
}

fn merge_noise(a: &crate::noise::Measurement, b: &crate::noise::Measurement) -> Result<crate::noise::Measurement> {
    use crate::{model::window::MergeError, noise::Measurement};
    match (a, b) {
        (Measurement::Continuous(a), Measurement::Continuous(b)) => {
            Ok(Measurement::Continuous(crate::model::window::merge_noise(a, b)))
        }
        _ => Err(crate::Error::Merge(MergeError::Deep)),
    }
}

impl Whole {
    /// The merge of every window.
    fn finish(self, windows_dir: &Path) -> Result<Window> {
        if let Some(first) = self.first {
            return Ok(Arc::try_unwrap(first).unwrap_or_else(|w| (*w).clone()));
        }
        let noise = self.noise.ok_or(crate::Error::Internal("a capture without a window"))?;
        let mut merger: Option<ProfileMerger> = None;
        for id in 0..self.windows {
            let p = crate::samples_file::read(&windows_dir.join(window_dir_name(id)))?;
            match merger.as_mut() {
                None => merger = Some(ProfileMerger::new(p)),
                Some(m) => m.add(&p),
            }
        }
        let profile = merger.ok_or(crate::Error::Internal("a capture without a window"))?.finish();
        Ok(Window { id: 0, profile, noise })
    }
}

fn window_dir_name(id: u64) -> String {
    format!("{id:04}")
}

/// Writes each window into `windows/NNNN/` of the output directory.
struct WindowDirs<'a> {
    root: PathBuf,
    slos: &'a [crate::latency::Slo],
}

impl WindowSink for WindowDirs<'_> {
    fn window(&mut self, window: &Arc<Window>) -> Result<()> {
        let dir = self.root.join(window_dir_name(window.id));
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
    let mut whole = Whole { output: args.output.clone(), first: None, noise: None, windows: 0 };
    let mut dirs = WindowDirs { root: args.output.join(WINDOWS_DIR), slos: &args.slos };
    let outcome = match args.window {
        Some(_) => pipeline::run(args, progress, &mut [&mut dirs, &mut whole], cancel).await?,
        None => pipeline::run(args, progress, &mut [&mut whole], cancel).await?,
    };
    let started = std::time::Instant::now();
    let window = whole.finish(&dirs.root)?;
    let files = write_window(&args.output, &window, &args.slos)?;
    tracing::info!(elapsed = ?started.elapsed(), rss_kib = crate::sys::mem::rss_bytes() >> 10, "wrote reports");
    Ok(Recording { profile: window.profile, end: outcome.end, windows: outcome.windows, files })
}
