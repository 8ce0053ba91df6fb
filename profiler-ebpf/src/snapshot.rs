//! Thread-state snapshot: a task iterator that writes one [`StateRecord`]
//! per thread on the host into the iterator's seq file. User space reads
//! the file once per snapshot (`--state-hz`). A thread's kernel stack is
//! walked only when no blocking stack id is known for it and it has not
//! run since an earlier snapshot took it, so a snapshot costs O(threads)
//! with a small constant.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{seq_file, task_struct},
    helpers::{bpf_get_task_stack, bpf_probe_read_kernel, bpf_seq_write},
    macros::map,
    maps::PerCpuArray,
};
use profiler_common::{
    state_after_switch, StateRecord, UserRegs, NO_SYSCALL, RECORD_STACK_SENT, SNAPSHOT_STACK_DEPTH,
    SNAP_STACK_SENT_BEFORE, SNAP_UNTRACKED, STACK_NONE, STATE_RUNNABLE, STATE_RUNNING, TASK_COMM_LEN,
};

use crate::{
    sched::{task_field, PREEMPTED_BY_SAMPLER, THREADS},
    shared::read_global,
    user_stack::{copies_stacks, user_regs},
};

#[unsafe(no_mangle)]
static TASK_STATE_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_ON_CPU_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_COMM_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_SUM_EXEC_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_PCOUNT_OFFSET: u32 = 0;

/// A record and room for its stack: too big for the BPF stack.
#[repr(C)]
pub struct Scratch {
    record: StateRecord,
    stack: [u64; SNAPSHOT_STACK_DEPTH],
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// `struct bpf_iter_meta`, the head of the iterator context.
#[repr(C)]
struct IterMeta {
    seq: *mut seq_file,
    session_id: u64,
    seq_num: u64,
}

/// `struct bpf_iter__task`.
#[repr(C)]
struct IterTask {
    meta: *mut IterMeta,
    task: *mut task_struct,
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub extern "C" fn thread_snapshot(ctx: *mut c_void) -> i32 {
    let _ = try_snapshot(ctx.cast());
    0
}

#[inline(always)]
fn try_snapshot(ctx: *const IterTask) -> Result<(), i32> {
    let (meta, task) = unsafe { ((*ctx).meta, (*ctx).task) };
    // The iterator calls once more with no task when it is done.
    if task.is_null() {
        return Ok(());
    }
    let seq = unsafe { (*meta).seq };
    let t = task as *const u8;
    let tid = task_field(t, read_global(&crate::sched::TASK_PID_OFFSET))?;
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return Ok(()) };
    let scratch = unsafe { &mut *scratch };
    let rec = &mut scratch.record;
    rec.tid = tid;
    rec.tgid = task_field(t, read_global(&crate::sched::TASK_TGID_OFFSET))?;
    let state = task_field(t, read_global(&TASK_STATE_OFFSET))?;
    let on_cpu = task_field(t, read_global(&TASK_ON_CPU_OFFSET))?;
    let preempted_here = PREEMPTED_BY_SAMPLER.get(0).is_some_and(|t| *t == tid && tid != 0);
    rec.state = if on_cpu != 0 || (state == 0 && preempted_here) {
        STATE_RUNNING
    } else if state == 0 {
        STATE_RUNNABLE
    } else {
        state_after_switch(state)
    };
    rec.comm =
        unsafe { bpf_probe_read_kernel(t.add(read_global(&TASK_COMM_OFFSET) as usize).cast::<[u8; TASK_COMM_LEN]>()) }?;
    rec.kstack_len = 0;
    rec.flags = 0;
    // A thread off CPU keeps its user registers and stack as they were:
    // user space can copy and unwind that stack while it stays blocked.
    // The run counters first: if the thread runs after they are read, they
    // change, and user space drops a copy made from these registers.
    let counter = |offset: &'static u32| {
        unsafe { bpf_probe_read_kernel(t.add(read_global(offset) as usize).cast::<u64>()) }.unwrap_or(0)
    };
    rec.sum_exec_ns = counter(&TASK_SUM_EXEC_OFFSET);
    rec.pcount = counter(&TASK_PCOUNT_OFFSET);
    rec.regs = match rec.state != STATE_RUNNING && copies_stacks() {
        true => user_regs(task).unwrap_or_default(),
        false => UserRegs::default(),
    };
    let thread = THREADS.get_ptr_mut(&tid).map(|r| unsafe { &mut *r });
    let mut want_stack = rec.state != STATE_RUNNING;
    match &thread {
        Some(r) => {
            rec.syscall = r.syscall;
            rec.syscall_start_ns = r.syscall_start_ns;
            rec.syscall_fd = r.syscall_fd;
            rec.kstack_id = r.kstack_id;
            rec.ustack_id = r.ustack_id;
            if r.kstack_id != STACK_NONE {
                want_stack = false;
            } else if r.flags & RECORD_STACK_SENT != 0 {
                rec.flags |= SNAP_STACK_SENT_BEFORE;
                want_stack = false;
            }
        }
        None => {
            rec.syscall = NO_SYSCALL;
            rec.syscall_start_ns = 0;
            rec.syscall_fd = -1;
            rec.kstack_id = STACK_NONE;
            rec.ustack_id = STACK_NONE;
            rec.flags |= SNAP_UNTRACKED;
        }
    }
    let mut len = size_of::<StateRecord>() as u32;
    if want_stack {
        let n = unsafe {
            bpf_get_task_stack(task, scratch.stack.as_mut_ptr().cast(), (SNAPSHOT_STACK_DEPTH * 8) as u32, 0)
        };
        if n > 0 {
            let frames = (n as u32 / 8).min(SNAPSHOT_STACK_DEPTH as u32);
            scratch.record.kstack_len = frames;
            len += frames * 8;
        }
    }
    let len = len.min(size_of::<Scratch>() as u32);
    let written = unsafe { bpf_seq_write(seq, (scratch as *const Scratch).cast(), len) };
    if written != 0 {
        // The seq buffer is full: the kernel shows this task again in the
        // next read(), so nothing is lost; just do not mark it sent.
        return Ok(());
    }
    if scratch.record.kstack_len > 0 {
        if let Some(r) = thread {
            r.flags |= RECORD_STACK_SENT;
        }
    }
    Ok(())
}
