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

/// Taken shared by whoever maps or unmaps files (blazesym's symbolizers:
/// naming a module, dropping a symbolizer), exclusively by
/// [`drop_clean_file_pages`].
static FILE_MAPPINGS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The right to map and unmap files, held until dropped. Not to be taken
/// twice by one thread.
pub fn mapping_files() -> std::sync::RwLockReadGuard<'static, ()> {
    FILE_MAPPINGS.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether [`drop_clean_file_pages`] drops code too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Only data: as each module is named, when the symbolizer's own code
    /// is about to run again.
    Kept,
    /// Code too: once per window. The code the agent ran at start-up and
    /// runs rarely (loading, BTF, configuration) would stay resident for
    /// its life; what a window runs is read back in as it runs (minor
    /// faults from the page cache, as after the kernel reclaimed it).
    Dropped,
}

/// Drop the resident pages of read-only file mappings that hold nothing
/// but the file's contents. blazesym maps each ELF file it names frames
/// from (the agent's own binary, every profiled program and its debug
/// files) and keeps the mapping, and the pages a window's lookups touched
/// would stay resident for the agent's life (3-minute soak: 5–6 MiB); the
/// agent's own read-only data is mostly read at start-up, and so is much
/// of its code. A page of such a mapping is read back from the page cache
/// when next touched. Left alone: anything writable, mappings with pages
/// copied on write (the relocated read-only data of a program, whose only
/// copy they are; code a debugger or a uprobe patched), BPF maps, devices
/// and memfds. Between windows. Returns the bytes of the mappings advised.
pub fn drop_clean_file_pages(code: Code) -> u64 {
    use procfs::process::{MMPermissions as Perm, MMapPath};
    // No file is unmapped between the listing and the advice: its range
    // could meanwhile hold another thread's heap, which the advice would
    // zero.
    let _listed = FILE_MAPPINGS.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Ok(maps) = procfs::process::Process::myself().and_then(|p| p.smaps()) else { return 0 };
    let left = match code {
        Code::Kept => Perm::WRITE | Perm::EXECUTE,
        Code::Dropped => Perm::WRITE,
    };
    let mut advised = 0;
    for m in &maps {
        // Files only: a BPF ring buffer (`anon_inode:bpf-map`) has no
        // pages to read back, and its next read would fault.
        let MMapPath::Path(path) = &m.pathname else { continue };
        let file = path.is_absolute()
            && !path.as_os_str().as_encoded_bytes().starts_with(b"/memfd:")
            && !path.starts_with("/dev");
        if !file || !m.perms.contains(Perm::READ) || m.perms.intersects(left) {
            continue;
        }
        let stat = |key: &str| m.extension.map.get(key).copied();
        if stat("Rss").unwrap_or(0) == 0 || stat("Anonymous") != Some(0) {
            continue;
        }
        let (start, end) = m.address;
        // SAFETY: a read-only file mapping without a page copied on write,
        // still mapped (files are not unmapped while `_listed` is held):
        // dropping its pages changes no contents, only what is resident.
        let len = end.saturating_sub(start) as usize;
        if unsafe { libc::madvise(start as usize as *mut libc::c_void, len, libc::MADV_DONTNEED) } == 0 {
            advised += len as u64;
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

#[cfg(test)]
mod tests {
    use std::{io::Write, os::fd::AsRawFd};

    use super::*;

    const PAGES: usize = 64;

    /// A file of `PAGES` pages, mapped with `prot` and `flags`.
    fn mapped(prot: i32, flags: i32) -> (std::fs::File, *mut u8, Vec<u8>) {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..PAGES * 4096).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        // SAFETY: a fresh mapping of a file this test owns.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), data.len(), prot, flags, f.as_raw_fd(), 0) };
        assert_ne!(p, libc::MAP_FAILED);
        (f, p.cast(), data)
    }

    /// Resident bytes of the mapping that starts at `p`.
    fn resident(p: *mut u8) -> u64 {
        let maps = procfs::process::Process::myself().unwrap().smaps().unwrap();
        let m = maps.0.iter().find(|m| m.address.0 == p as u64).expect("the mapping is listed");
        m.extension.map["Rss"]
    }

    /// Map a file with `prot` and `flags`, read it whole, drop its pages
    /// (code only once a window, not as modules are named) and read it back.
    fn dropped_and_read_back(prot: i32, flags: i32) {
        let code = prot & libc::PROT_EXEC != 0;
        let (_f, p, data) = mapped(prot, flags);
        // SAFETY: `p` maps `data.len()` readable bytes until unmapped below.
        let view = unsafe { std::slice::from_raw_parts(p, data.len()) };
        {
            // No other test's drop between the reads and the count.
            let _hold = mapping_files();
            assert_eq!(view, &data[..]);
            assert!(resident(p) >= (PAGES as u64 - 4) * 4096, "every page was read");
        }
        if code {
            // Only this test drops code: nothing else drops these pages.
            drop_clean_file_pages(Code::Kept);
            assert!(resident(p) >= (PAGES as u64 - 4) * 4096, "code is kept as modules are named");
        }
        let dropping = if code { Code::Dropped } else { Code::Kept };
        assert!(drop_clean_file_pages(dropping) >= data.len() as u64);
        assert_eq!(resident(p), 0, "its pages are no longer resident");
        assert_eq!(view, &data[..], "and read back the same");
        let _mapping = mapping_files();
        // SAFETY: unmapped once, after its last use.
        unsafe { libc::munmap(p.cast(), data.len()) };
    }

    #[test]
    fn clean_file_pages_are_dropped_and_read_back_the_same() {
        dropped_and_read_back(libc::PROT_READ, libc::MAP_SHARED);
    }

    #[test]
    fn code_pages_are_dropped_only_once_a_window() {
        dropped_and_read_back(libc::PROT_READ | libc::PROT_EXEC, libc::MAP_PRIVATE);
    }

    #[test]
    fn pages_copied_on_write_are_kept() {
        // Relocated read-only data: written while writable, then made read-only.
        let (_f, p, data) = mapped(libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE);
        // SAFETY: `p` maps `data.len()` writable bytes until unmapped below.
        unsafe {
            *p.add(5) = 7;
            assert_eq!(libc::mprotect(p.cast(), data.len(), libc::PROT_READ), 0);
        }
        drop_clean_file_pages(Code::Kept);
        // SAFETY: as above.
        let view = unsafe { std::slice::from_raw_parts(p, data.len()) };
        assert_eq!(view[5], 7, "the written page keeps its contents");
        assert_eq!(&view[4096..], &data[4096..]);
        let _mapping = mapping_files();
        // SAFETY: unmapped once, after its last use.
        unsafe { libc::munmap(p.cast(), data.len()) };
    }
}
