//! User registers and user-stack copies for unwinding without frame
//! pointers (`--unwind dwarf|auto`). The copy is all or nothing per read
//! (`bpf_probe_read_user` zeroes its buffer on a fault), so its length is
//! clipped to where the stack mapping ends: remembered per thread once
//! found, found by a short search over whole pages otherwise.

use aya_ebpf::{
    bindings::task_struct,
    helpers::{bpf_probe_read_kernel, bpf_task_pt_regs, generated::bpf_probe_read_user},
    macros::map,
    maps::{HashMap, LruHashMap},
};
use profiler_common::{UserRegs, MAX_FP_PIDS, MAX_USER_STACK_BYTES, UNWIND_AUTO, UNWIND_FP};

use crate::shared::read_global;

#[unsafe(no_mangle)]
static UNWIND_MODE: u8 = UNWIND_FP;
#[unsafe(no_mangle)]
pub(crate) static USER_STACK_BYTES: u32 = 0;
#[unsafe(no_mangle)]
static PT_REGS_IP_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static PT_REGS_SP_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static PT_REGS_FP_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static PT_REGS_LR_OFFSET: u32 = 0;

/// Processes whose code all keeps frame pointers (`--unwind auto`).
#[map]
static FP_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_FP_PIDS, 0);

/// Per thread: the end of its stack mapping, found by an earlier copy.
#[map]
static STACK_ENDS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

const PAGE: u64 = 4096;
/// Highest user address plus one on every supported architecture (47-bit
/// user space on x86_64, 48-bit on aarch64).
const USER_TOP: u64 = 1 << 48;

/// A process exec'd or its pid was reused: copy its stacks until user
/// space judges it again.
#[inline(always)]
pub fn forget_process(pid: u32) {
    if copies_stacks() {
        let _ = FP_PIDS.remove(&pid);
    }
}

/// Whether user stacks are unwound from copies (`--unwind dwarf|auto`).
#[inline(always)]
pub fn copies_stacks() -> bool {
    read_global(&UNWIND_MODE) != UNWIND_FP
}

/// Whether this process's samples carry a stack copy.
#[inline(always)]
pub fn wants_copy(pid: u32) -> bool {
    match read_global(&UNWIND_MODE) {
        UNWIND_FP => false,
        UNWIND_AUTO => unsafe { FP_PIDS.get(&pid) }.is_none(),
        _ => true,
    }
}

#[inline(always)]
fn reg(regs: *const u8, offset: &'static u32) -> u64 {
    unsafe { bpf_probe_read_kernel(regs.add(read_global(offset) as usize).cast::<u64>()) }.unwrap_or(0)
}

/// The user-mode registers `task` saved when it entered the kernel (from
/// an interrupt of user code, the registers at the interrupt). `None`
/// for kernel threads, whose saved registers are zero.
#[inline(always)]
pub fn user_regs(task: *mut task_struct) -> Option<UserRegs> {
    let regs = unsafe { bpf_task_pt_regs(task) } as *const u8;
    if regs.is_null() {
        return None;
    }
    let r = UserRegs {
        ip: reg(regs, &PT_REGS_IP_OFFSET),
        sp: reg(regs, &PT_REGS_SP_OFFSET),
        fp: reg(regs, &PT_REGS_FP_OFFSET),
        lr: if read_global(&PT_REGS_LR_OFFSET) == 0 { 0 } else { reg(regs, &PT_REGS_LR_OFFSET) },
    };
    if r.sp == 0 || r.sp >= USER_TOP || r.ip >= USER_TOP {
        return None;
    }
    Some(r)
}

/// Copy `len` bytes from user `sp` into `dst` (bounded for the verifier).
#[inline(always)]
fn read(dst: *mut u8, sp: u64, len: u64) -> bool {
    let len = if len > MAX_USER_STACK_BYTES as u64 { MAX_USER_STACK_BYTES as u64 } else { len };
    unsafe { bpf_probe_read_user(dst.cast(), len as u32, sp as *const _) == 0 }
}

/// Copy up to `want` bytes of thread `tid`'s user stack from `sp` into
/// `dst` (room for [`MAX_USER_STACK_BYTES`]). Returns the bytes copied (0:
/// nothing readable) and whether the copy was cut by the mapping's end.
#[inline(always)]
pub fn copy_stack(tid: u32, dst: *mut u8, sp: u64, want: u32) -> (u32, bool) {
    let want = if want as usize > MAX_USER_STACK_BYTES { MAX_USER_STACK_BYTES as u64 } else { want as u64 };
    if want == 0 {
        return (0, false);
    }
    // Known end of this thread's stack: one read, plus one that must fail
    // past the end. A page that merely was not present when the end was
    // found (swapped out, NUMA hinting) reads now: forget that end.
    if let Some(&end) = unsafe { STACK_ENDS.get(&tid) } {
        if end > sp {
            let len = if end - sp < want { end - sp } else { want };
            let mut probe = 0u8;
            let past_end_reads =
                len < want && unsafe { bpf_probe_read_user((&raw mut probe).cast(), 1, end as *const _) == 0 };
            if !past_end_reads && read(dst, sp, len) {
                return (len as u32, len < want);
            }
        }
        let _ = STACK_ENDS.remove(&tid);
    }
    if read(dst, sp, want) {
        return (want as u32, false);
    }
    // The mapping ends within `want`: sizes ending on page boundaries,
    // size(k) = bytes to the end of sp's page + k pages. size(hi) fails.
    let first = PAGE - (sp & (PAGE - 1));
    let size = |k: u64| -> u64 {
        let s = first + k * PAGE;
        if s < want {
            s
        } else {
            want
        }
    };
    let mut hi = if want > first { (want - first).div_ceil(PAGE) } else { 0 };
    let mut lo: i64 = -1;
    let mut last_ok = false;
    let mut i = 0;
    // 2^5 pages: enough for a 64 KiB copy.
    while i < 5 {
        i += 1;
        if hi as i64 - lo <= 1 {
            break;
        }
        let mid = ((lo + hi as i64) / 2) as u64;
        last_ok = read(dst, sp, size(mid));
        if last_ok {
            lo = mid as i64;
        } else {
            hi = mid;
        }
    }
    if lo < 0 {
        return (0, false);
    }
    let len = size(lo as u64);
    if !last_ok && !read(dst, sp, len) {
        return (0, false);
    }
    let _ = STACK_ENDS.insert(&tid, &(sp + len), 0);
    (len as u32, true)
}
