//! The process's own memory use.

/// Resident memory of this process now, bytes (0 if procfs cannot say).
pub fn rss_bytes() -> u64 {
    procfs::process::Process::myself().and_then(|p| p.statm()).map(|m| m.resident * procfs::page_size()).unwrap_or(0)
}
