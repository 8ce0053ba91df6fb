//! Process lifecycle: forks of new processes and execs, written into the
//! sample ring buffer so that user space orders them with the samples.

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use profiler_common::{ProcessEvent, EVENT_EXEC, EVENT_FORK, TASK_COMM_LEN};

use crate::{
    on_cpu::EVENTS,
    sched::{task_field, TASK_PID_OFFSET, TASK_TGID_OFFSET},
    shared::{bump, read_global},
};

#[unsafe(no_mangle)]
static BPRM_FILENAME_OFFSET: u32 = 0;

/// Reserve a process event; `None` (counted as a lost sample) if the ring is full.
#[inline(always)]
fn reserve(kind: u32, pid: u32, tid: u32, ppid: u32) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<ProcessEvent>> {
    let Some(mut entry) = EVENTS.reserve::<ProcessEvent>(0) else {
        bump(profiler_common::Counter::LostProcessEvents);
        return None;
    };
    let e = entry.as_mut_ptr();
    unsafe {
        (*e).kind = kind;
        (*e).pid = pid;
        (*e).tid = tid;
        (*e).ppid = ppid;
        (*e).ts_ns = bpf_ktime_get_ns();
        (*e).comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
        (*e).filename[0] = 0;
    }
    Some(entry)
}

/// (struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm); `current` is `p`.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn process_exec(ctx: BtfTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tid, pid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
    let bprm: *const u8 = ctx.arg(2);
    // New code: `auto` judges it afresh (user space may miss this record).
    crate::user_stack::forget_process(pid);
    let Some(mut entry) = reserve(EVENT_EXEC, pid, tid, 0) else { return 0 };
    let e = entry.as_mut_ptr();
    unsafe {
        let name: Result<*const u8, _> =
            bpf_probe_read_kernel(bprm.add(read_global(&BPRM_FILENAME_OFFSET) as usize).cast::<*const u8>());
        if let Ok(name) = name {
            let _ = bpf_probe_read_kernel_str_bytes(name, &mut (*e).filename);
        }
    }
    // User space reads the new program's /proc entries at once, before a
    // short-lived process is gone.
    entry.submit(BPF_RB_FORCE_WAKEUP as u64);
    0
}

/// (struct task_struct *parent, struct task_struct *child): only new
/// processes are reported, not new threads.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn process_fork(ctx: BtfTracePointContext) -> i32 {
    let child: *const u8 = ctx.arg(1);
    let (Ok(tid), Ok(tgid)) = (task_field(child, &TASK_PID_OFFSET), task_field(child, &TASK_TGID_OFFSET)) else {
        return 0;
    };
    if tid != tgid {
        return 0;
    }
    // A reused pid: whatever was judged of the old process does not hold.
    crate::user_stack::forget_process(tgid);
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(entry) = reserve(EVENT_FORK, tgid, pid_tgid as u32, (pid_tgid >> 32) as u32) {
        entry.submit(BPF_RB_NO_WAKEUP as u64);
    }
    0
}
