//! The bpf(2) calls aya 0.14 does not offer: a BPF iterator's read, a
//! link by id, and the ids of the loaded programs.

use std::os::fd::{FromRawFd, OwnedFd};

/// `enum bpf_cmd`.
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;

/// `bpf(cmd, attr)`: its return value; `attr` is a `#[repr(C)]` prefix of
/// `union bpf_attr` for `cmd` (the kernel zero-fills the rest).
fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a plain-data prefix of bpf_attr for `cmd`, alive for the call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<A>() as u32) };
    match ret < 0 {
        true => Err(std::io::Error::last_os_error()),
        false => Ok(ret),
    }
}

/// `bpf(cmd, attr)` returning a new fd.
pub fn bpf_fd<A>(cmd: libc::c_long, attr: &mut A) -> std::io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The ids of the BPF programs loaded now, ascending (none if the kernel
/// refuses to list them). A call per program, no fd opened.
pub fn program_ids() -> impl Iterator<Item = u32> {
    let mut id = 0u32;
    std::iter::from_fn(move || {
        // `start_id`, then `next_id`, written by the kernel.
        let mut attr = [id, 0u32, 0u32];
        bpf(BPF_PROG_GET_NEXT_ID, &mut attr).ok()?;
        id = attr[1];
        Some(id)
    })
}

#[cfg(test)]
mod tests {
    /// Programs loaded here (the test process's own socket filter, loaded
    /// raw) are listed, and the list ends.
    #[test]
    fn the_loaded_programs_are_listed() {
        const BPF_PROG_LOAD: libc::c_long = 5;
        const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
        // r0 = 0; exit
        let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
        let license = c"GPL";
        let mut attr = [0u8; 48];
        attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SOCKET_FILTER.to_ne_bytes());
        attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        let before: Vec<u32> = super::program_ids().collect();
        let prog = super::bpf_fd(BPF_PROG_LOAD, &mut attr).expect("load a socket filter (tests run as root)");
        let with: Vec<u32> = super::program_ids().collect();
        drop(prog);
        assert!(with.windows(2).all(|w| w[0] < w[1]), "{with:?}");
        assert!(with.iter().any(|id| !before.contains(id)), "no new id: before {before:?}, with {with:?}");
    }
}
