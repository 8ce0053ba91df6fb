//! One sample of a live thread taken from user space, as the sampling
//! program would send it: stop the thread with ptrace, read its user
//! registers and the top of its stack, let it run again. For tests and
//! benchmarks of the unwinder (it needs the right to ptrace the thread).

use std::{fs::File, io, os::unix::fs::FileExt as _};

use profiler_common::UserRegs;

/// A thread's user registers and its stack from `regs.sp` upwards.
#[derive(Debug, Clone)]
pub struct Sample {
    pub regs: UserRegs,
    pub stack: Vec<u8>,
}

/// Stop thread `tid` of process `pid`, read its registers and up to
/// `max_stack` bytes of stack (fewer where the stack mapping ends), and
/// detach.
pub fn sample_thread(pid: u32, tid: u32, max_stack: usize) -> io::Result<Sample> {
    let t = tid as libc::pid_t;
    // SAFETY: plain ptrace requests on a thread id; no memory is shared.
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, t, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let result = stopped(pid, t, max_stack);
    // SAFETY: as above; detaching resumes the thread.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, t, 0, 0) };
    result
}

fn stopped(pid: u32, t: libc::pid_t, max_stack: usize) -> io::Result<Sample> {
    // SAFETY: as above.
    if unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, t, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut status = 0;
    // SAFETY: waitpid writes only `status`.
    if unsafe { libc::waitpid(t, &mut status, libc::__WALL) } != t {
        return Err(io::Error::last_os_error());
    }
    let regs = read_regs(t)?;
    let stack = read_stack(pid, regs.sp, max_stack)?;
    Ok(Sample { regs, stack })
}

/// Up to `max` bytes of the memory of process `pid` from `sp` upwards,
/// fewer where the mapping holding `sp` ends.
pub fn read_stack(pid: u32, sp: u64, max: usize) -> io::Result<Vec<u8>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let end = maps
        .lines()
        .filter_map(|l| {
            let (start, end) = l.split_whitespace().next()?.split_once('-')?;
            Some((u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?))
        })
        .find(|&(s, e)| s <= sp && sp < e)
        .map(|(_, e)| e)
        .ok_or_else(|| io::Error::other("the stack pointer is in no mapping"))?;
    let len = usize::try_from(end - sp).unwrap_or(usize::MAX).min(max);
    let mut stack = vec![0u8; len];
    File::open(format!("/proc/{pid}/mem"))?.read_exact_at(&mut stack, sp)?;
    Ok(stack)
}

#[cfg(target_arch = "x86_64")]
fn read_regs(t: libc::pid_t) -> io::Result<UserRegs> {
    // SAFETY: user_regs_struct is plain integers; PTRACE_GETREGS fills it.
    let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    if unsafe { libc::ptrace(libc::PTRACE_GETREGS, t, 0, &mut r as *mut _) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UserRegs { ip: r.rip, sp: r.rsp, fp: r.rbp, lr: 0 })
}

#[cfg(target_arch = "aarch64")]
fn read_regs(t: libc::pid_t) -> io::Result<UserRegs> {
    // SAFETY: user_regs_struct is plain integers; PTRACE_GETREGSET with
    // NT_PRSTATUS fills at most iov_len bytes of it.
    let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: &mut r as *mut _ as *mut libc::c_void, iov_len: std::mem::size_of_val(&r) };
    if unsafe { libc::ptrace(libc::PTRACE_GETREGSET, t, libc::NT_PRSTATUS, &mut iov as *mut _) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UserRegs { ip: r.pc, sp: r.sp, fp: r.regs[29], lr: r.regs[30] })
}
