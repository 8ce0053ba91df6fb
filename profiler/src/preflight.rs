//! Checks run before anything is loaded, so that a run that cannot work
//! fails in one sentence instead of half-way through.

use std::path::Path;

use crate::{Error, Result};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability mask of this process, from /proc/self/status.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Root, or CAP_BPF with CAP_PERFMON (or CAP_SYS_ADMIN, which implies both).
pub fn check_privileges() -> Result<()> {
    let caps = effective_caps().unwrap_or(0);
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

pub use crate::kernel_btf::SYSFS_BTF;

/// The kernel must describe itself in BTF (later programs read kernel type
/// layouts from it). The default file is only checked for its magic here;
/// a file given with --btf is parsed and returned for the loader.
pub fn check_btf(path: &Path) -> Result<Option<aya::Btf>> {
    let err = |reason: String| Error::MissingBtf { path: path.to_owned(), reason };
    if path != Path::new(SYSFS_BTF) {
        return aya::Btf::parse_file(path, aya::Endianness::default())
            .map(Some)
            .map_err(|e| err(crate::error::format_chain(&e)));
    }
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .map_err(|e| err(e.to_string()))?;
    if u16::from_ne_bytes(magic) != crate::kernel_btf::BTF_MAGIC {
        return Err(err("the file does not start with the BTF magic".into()));
    }
    Ok(None)
}

/// Privileges, the kernel's BTF and the kernel struct layout the programs
/// need, checked before anything is loaded: the BTF to hand the loader
/// (when given with --btf) and the offsets.
pub fn kernel_layout(btf_path: &Path) -> Result<(Option<aya::Btf>, crate::bpf::KernelOffsets)> {
    check_privileges()?;
    let btf = check_btf(btf_path)?;
    let kernel_btf = crate::kernel_btf::KernelBtf::from_file(btf_path)
        .map_err(|e| Error::MissingBtf { path: btf_path.to_owned(), reason: e.to_string() })?;
    let offsets = crate::bpf::KernelOffsets::from_btf(&kernel_btf)?;
    Ok((btf, offsets))
}

pub fn check_perf_events() -> Result<()> {
    check_perf_events_at(Path::new("/proc/sys/kernel/perf_event_paranoid"))
}

fn check_perf_events_at(paranoid: &Path) -> Result<()> {
    if paranoid.exists() {
        Ok(())
    } else {
        Err(Error::NoPerfEvents)
    }
}

/// Resolve a user-given pid (or tid) to its process id, failing if it does
/// not exist.
pub fn resolve_pid(pid: u32) -> Result<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| Error::NoSuchPid(pid))?;
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Error::NoSuchPid(pid))?;
    Ok(tgid)
}

/// Raise RLIMIT_MEMLOCK for kernels that still charge BPF maps to it.
pub fn raise_memlock_limit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK: {}", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_perf_events_is_named() {
        let err = check_perf_events_at(Path::new("/nonexistent/perf_event_paranoid")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_PERF_EVENTS"));
    }

    #[test]
    fn a_file_that_is_not_btf_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"not btf at all").unwrap();
        assert!(matches!(check_btf(f.path()), Err(Error::MissingBtf { .. })));
        assert!(matches!(check_btf(Path::new("/nonexistent/vmlinux")), Err(Error::MissingBtf { .. })));
    }

    #[test]
    fn own_pid_resolves_to_itself_and_a_thread_to_its_process() {
        let me = std::process::id();
        assert_eq!(resolve_pid(me).unwrap(), me);
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            done_rx.recv().ok();
        });
        let tid = rx.recv().unwrap();
        assert_ne!(tid, me);
        assert_eq!(resolve_pid(tid).unwrap(), me);
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(matches!(resolve_pid(u32::MAX - 1), Err(Error::NoSuchPid(_))));
    }
}
