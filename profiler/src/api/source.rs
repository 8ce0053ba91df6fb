//! Where the API's data comes from.

use std::path::PathBuf;

use crate::agent::{
    captures::Capture,
    store::{Segment, Stored},
};

/// Where the API's data comes from.
pub trait Source: Send + Sync {
    /// The segments overlapping `from..to` (Unix ns), oldest first.
    fn range(&self, from: u64, to: u64) -> Vec<Segment>;
    /// Every segment, oldest first.
    fn segments(&self) -> Vec<Segment>;
    /// A segment's contents; `None` if it is gone since it was listed.
    fn read(&self, seg: &Segment) -> Result<Option<Stored>, String>;
    /// The `parts` of a segment's samples, and its noise if `with_noise`
    /// (a source may read more).
    fn read_parts(
        &self,
        seg: &Segment,
        parts: crate::samples_file::Parts,
        with_noise: bool,
    ) -> Result<Option<Stored>, String> {
        let _ = (parts, with_noise);
        self.read(seg)
    }
    /// The captures, oldest first.
    fn captures(&self) -> Vec<Capture>;
    /// A file of a capture, if the capture lists it (never a path as given).
    fn capture_file(&self, id: &str, name: &str) -> Option<PathBuf>;
    /// The noise report (noise.json's shape) of `from..to`, if any.
    fn noise(&self, from: u64, to: u64) -> Result<Option<serde_json::Value>, String>;
}
