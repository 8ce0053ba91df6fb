//! The agent's stored windows and captures as a source of the API.

use super::{
    captures::Capture,
    state::Shared,
    store::{self, Segment, Stored},
};
use crate::api::Source;

impl Shared {
    fn read_parts_with(
        &self,
        seg: &Segment,
        parts: crate::samples_file::Parts,
        with_noise: bool,
    ) -> Result<Option<Stored>, String> {
        match store::read_parts(seg, parts, with_noise) {
            Ok(s) => Ok(Some(s)),
            // Deleted by retention or replaced by a merge meanwhile.
            Err(store::StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::error::format_chain(&e)),
        }
    }
}

/// The agent's stored windows and captures, as the API reads them.
impl Source for Shared {
    fn range(&self, from: u64, to: u64) -> Vec<Segment> {
        crate::sys::lock(&self.store).range(from, to)
    }

    fn segments(&self) -> Vec<Segment> {
        crate::sys::lock(&self.store).all()
    }

    fn read(&self, seg: &Segment) -> Result<Option<Stored>, String> {
        self.read_parts_with(seg, crate::samples_file::Parts::ALL, true)
    }

    fn read_parts(
        &self,
        seg: &Segment,
        parts: crate::samples_file::Parts,
        with_noise: bool,
    ) -> Result<Option<Stored>, String> {
        self.read_parts_with(seg, parts, with_noise)
    }

    fn captures(&self) -> Vec<Capture> {
        self.captures.list()
    }

    fn capture_file(&self, id: &str, name: &str) -> Option<std::path::PathBuf> {
        self.captures.file(id, name)
    }

    fn noise(&self, from: u64, to: u64) -> Result<Option<serde_json::Value>, String> {
        let (merged, without) = crate::api::windows::noise(self, from, to)?;
        let Some(raw) = merged else { return Ok(None) };
        let rendered = crate::noise::output::render(&crate::noise::Measurement::Continuous(raw), &[]);
        let doc = crate::noise::output::json_document(&rendered).map_err(|e| e.to_string())?;
        let mut v: serde_json::Value = serde_json::from_str(&doc).map_err(|e| e.to_string())?;
        if let Some(m) = v.as_object_mut() {
            m.insert("windows_without_noise".into(), without.into());
        }
        Ok(Some(v))
    }
}
