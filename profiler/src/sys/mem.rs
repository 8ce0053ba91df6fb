//! The process's own memory use.

/// Resident memory of this process now, bytes (0 if procfs cannot say).
pub fn rss_bytes() -> u64 {
    procfs::process::Process::myself().and_then(|p| p.statm()).map(|m| m.resident * procfs::page_size()).unwrap_or(0)
}

/// Give the heap's free pages back to the kernel (glibc keeps freed memory
/// for reuse): after loading, whose BTF parse is large and short-lived, and
/// after each window, so that the resident size follows what is held.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
