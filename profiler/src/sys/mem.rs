//! The process's own memory use.

/// Resident memory of this process now, bytes (0 if procfs cannot say).
pub fn rss_bytes() -> u64 {
    procfs::process::Process::myself().and_then(|p| p.statm()).map(|m| m.resident * procfs::page_size()).unwrap_or(0)
}

/// The heap as malloc sees it: bytes held by live allocations, and bytes
/// free inside the heap that it has not given back to the kernel. Their
/// sum less the resident size tells fragmentation from growth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heap {
    pub in_use_bytes: u64,
    pub free_bytes: u64,
}

/// glibc's count of the heap across its arenas (`mallinfo2`), at the cost
/// of a walk of each arena's free lists: once per window.
pub fn heap() -> Heap {
    // SAFETY: mallinfo2 only reads glibc's own arenas.
    let m = unsafe { libc::mallinfo2() };
    Heap { in_use_bytes: (m.uordblks + m.hblkhd) as u64, free_bytes: m.fordblks as u64 }
}

/// Most malloc arenas glibc may make (M_ARENA_MAX).
pub const MAX_ARENAS: i32 = 2;

/// Blocks from this size up get their own mapping, unmapped when freed.
pub const MMAP_THRESHOLD: i32 = 256 << 10;

/// Bound glibc's malloc arenas to [`MAX_ARENAS`]: by default each thread
/// that meets a locked arena makes another (up to 8 per CPU), and a freed
/// window's memory sits in whichever arena built it. Few arenas keep the
/// resident size close to what is held (3-minute soak: a peak of 117–118
/// MiB with one or two arenas, 128 with glibc's default of up to 16 on two
/// CPUs); every thread keeps its own cache of small blocks, so the threads
/// seldom wait on each other's lock.
pub fn limit_arenas() {
    // SAFETY: mallopt only sets glibc's own tunables.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
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

/// Unmap the resident pages of the files mapped shared and read-only:
/// blazesym maps each ELF file it names frames from (the agent's own
/// binary, every profiled program and its debug files) and keeps the
/// mapping, and the pages a window's lookups touched would stay resident
/// for the agent's life (3-minute soak: 5–6 MiB). A shared file mapping
/// is never a private copy, so the next access reads the page back from
/// the page cache. BPF maps (`anon_inode:`) and memfds are left alone.
/// Between windows. Returns the bytes of the mappings advised.
pub fn drop_shared_file_pages() -> u64 {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return 0 };
    let mut advised = 0;
    for line in maps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        let path = fields.nth(3).unwrap_or("");
        if perms != "r--s" || !path.starts_with('/') || path.starts_with("/memfd:") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        // SAFETY: a read-only shared mapping of a file: dropping its pages
        // changes no contents, only what is resident.
        if unsafe { libc::madvise(start as *mut libc::c_void, end.saturating_sub(start), libc::MADV_DONTNEED) } == 0 {
            advised += (end - start) as u64;
        }
    }
    advised
}

/// Transient work that holds a window's worth of memory at once: building
/// a window, encoding one, reading a stored one back (a query, a merge).
static WINDOW_SIZED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Threads waiting for [`WINDOW_SIZED`].
static WINDOW_SIZED_WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The right to do window-sized work, held until dropped. Whoever waits
/// for it gets the heap's free pages handed back first: a query's thread
/// keeps the pages of the segment it just parsed in its malloc arena, and
/// a window built meanwhile in another arena would be resident on top of
/// them (3-minute soak: a 10 MiB step at every window that met a query).
pub struct WindowSized {
    _held: std::sync::MutexGuard<'static, ()>,
}

impl Drop for WindowSized {
    fn drop(&mut self) {
        // Runs before the lock is released (fields drop after this).
        if WINDOW_SIZED_WAITING.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            release_free_memory();
        }
    }
}

/// Wait for, and hold, the right to do window-sized work: one such piece at
/// a time, so that the agent's peak is its long-lived state plus one
/// window's worth, not a window being built plus every query's segment
/// (4 queries at once are allowed). A query waits at most for one window
/// to be built; disk writes and fsyncs are never done under it.
pub fn window_sized() -> WindowSized {
    use std::sync::atomic::Ordering::Relaxed;
    WINDOW_SIZED_WAITING.fetch_add(1, Relaxed);
    let held = WINDOW_SIZED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    WINDOW_SIZED_WAITING.fetch_sub(1, Relaxed);
    WindowSized { _held: held }
}
