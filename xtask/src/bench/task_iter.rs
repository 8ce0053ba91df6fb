//! The kernel's own cost of iterating every task: an empty task-iterator
//! program (`r0 = 0; exit`), loaded and attached with raw bpf(2) calls and
//! read the way tailprof reads its snapshot iterator (BPF_ITER_CREATE, then
//! read() to the end). bpftrace's `iter:task` would do the same, but the
//! bpftrace this benchmark was written on (0.17) reports it unavailable on
//! recent kernels; loading the program ourselves also leaves out every
//! start-up cost, so nothing has to be subtracted.

use std::{
    io::Read as _,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::Command,
};

use anyhow::{bail, Context};

use super::common::bpf_progs_of;
use crate::util::output;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_ITER: u32 = 28;
/// The kernel function whose BTF id names the task iterator target.
const TARGET: &str = "bpf_iter_task";
const PROG_NAME: &[u8] = b"empty_task_iter";

/// `union bpf_attr` for BPF_PROG_LOAD, up to `attach_btf_obj_fd`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_btf_obj_fd: u32,
    pad: u32,
}

/// `union bpf_attr` for BPF_LINK_CREATE of an iterator (no iter_info: every task).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    iter_info: u64,
    iter_info_len: u32,
    pad: u32,
}

/// `union bpf_attr` for BPF_ITER_CREATE.
#[repr(C)]
#[derive(Default)]
struct IterCreateAttr {
    link_fd: u32,
    flags: u32,
}

/// bpf(2) returning a new file descriptor.
fn bpf_fd<A>(cmd: libc::c_long, attr: &mut A) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a zero-initialised prefix of `union bpf_attr` for
    // `cmd`, passed with its exact size; pointers in it outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, size_of::<A>() as u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// CPU time of the calling thread, ns.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// BTF id of the FUNC `name` in vmlinux, from `bpftool btf dump`
/// ("[63695] FUNC 'bpf_iter_task' type_id=63694 linkage=static").
fn vmlinux_func_id(name: &str) -> anyhow::Result<u32> {
    let dump = output(Command::new("bpftool").args(["btf", "dump", "file", "/sys/kernel/btf/vmlinux"]))?;
    let needle = format!("] FUNC '{name}' ");
    dump.lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .with_context(|| format!("no FUNC '{name}' in the kernel's BTF"))
}

/// An empty task-iterator program, attached.
pub struct EmptyTaskIter {
    _prog: OwnedFd,
    link: OwnedFd,
}

impl EmptyTaskIter {
    pub fn load() -> anyhow::Result<Self> {
        // r0 = 0; exit
        let insns: [u64; 2] = [0xb7, 0x95];
        let license = c"GPL";
        let mut log = vec![0u8; 1 << 16];
        let mut name = [0u8; 16];
        name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_TRACING,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            prog_name: name,
            expected_attach_type: BPF_TRACE_ITER,
            attach_btf_id: vmlinux_func_id(TARGET)?,
            ..Default::default()
        };
        let prog = bpf_fd(BPF_PROG_LOAD, &mut attr).map_err(|e| {
            let len = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            anyhow::anyhow!("could not load an empty task iterator: {e}: {}", String::from_utf8_lossy(&log[..len]))
        })?;
        let mut attr =
            LinkCreateAttr { prog_fd: prog.as_raw_fd() as u32, attach_type: BPF_TRACE_ITER, ..Default::default() };
        let link = bpf_fd(BPF_LINK_CREATE, &mut attr).context("could not attach the empty task iterator")?;
        Ok(Self { _prog: prog, link })
    }

    /// One iteration over every task: a new iterator read to its end. Returns
    /// the CPU time it took on this thread, ns (as tailprof's snapshot thread
    /// counts its reads: creating the iterator, reading it, closing it).
    pub fn iterate(&self) -> anyhow::Result<u64> {
        let before = thread_cpu_ns();
        let mut attr = IterCreateAttr { link_fd: self.link.as_raw_fd() as u32, flags: 0 };
        let iter = bpf_fd(BPF_ITER_CREATE, &mut attr).context("could not create a task iterator")?;
        let mut bytes = Vec::new();
        std::fs::File::from(iter).read_to_end(&mut bytes).context("could not read the task iterator")?;
        let cpu = thread_cpu_ns().saturating_sub(before);
        if !bytes.is_empty() {
            bail!("the empty task iterator wrote {} bytes", bytes.len());
        }
        Ok(cpu)
    }

    /// Tasks one iteration visits, from the program's run count (which
    /// needs `kernel.bpf_stats_enabled=1`): the program runs once per task
    /// and once more, with no task, at the end.
    pub fn tasks_visited(&self) -> anyhow::Result<u64> {
        let runs = || bpf_progs_of(std::process::id()).values().map(|s| s.run_cnt).sum::<u64>();
        let before = runs();
        self.iterate()?;
        let after = runs();
        if after <= before {
            bail!("the empty task iterator's run count did not grow (kernel.bpf_stats_enabled off?)");
        }
        Ok(after - before - 1)
    }
}
