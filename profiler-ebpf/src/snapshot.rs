//! Thread-state snapshot: a task iterator that writes one record per
//! thread on the host into the iterator's seq file. User space reads the
//! file once per snapshot (`--state-hz`).
//!
//! A thread that has not been switched in since the last snapshot read it,
//! is in the same state and is not on a CPU cannot have changed: its
//! counters, stacks and syscall are what the last snapshot read. It gets
//! an 8-byte record ([`SNAP_UNCHANGED`]) and no further work, as xcapture
//! does. Every other thread gets a whole record with the kernel's
//! cumulative counters; an off-CPU one also gets its user registers, and
//! its kernel stack when no blocking stack is known for it.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{seq_file, task_struct},
    helpers::{bpf_get_task_stack, bpf_probe_read_kernel, bpf_seq_write},
    macros::{btf_tracepoint, map},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use profiler_common::{
    state_after_switch, SnapHead, SnapSeen, StateRecord, TaskExit, UserRegs, MAX_THREADS, RECORD_STACK_SENT,
    SNAPSHOT_STACK_DEPTH, SNAP_CONFIG_FULL, SNAP_PREEMPTED_BY_SNAPSHOT, SNAP_STACK_SENT_BEFORE, SNAP_UNCHANGED,
    SNAP_UNTRACKED, SNAP_WOKEN_DURING_SNAPSHOT, STACK_NONE, STATE_DISK, STATE_RUNNABLE, STATE_RUNNING, STATE_SLEEPING,
    TASK_COMM_LEN,
};

use crate::{
    noise::is_kernel_thread,
    sched::{task_field, THREADS},
    shared::{bump, read_global},
    task,
    user_stack::{copies_stacks, user_regs},
};

#[unsafe(no_mangle)]
static TASK_STATE_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_ON_CPU_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_COMM_OFFSET: u32 = 0;

/// A record and room for its stack: too big for the BPF stack.
#[repr(C)]
pub struct Scratch {
    record: StateRecord,
    stack: [u64; SNAPSHOT_STACK_DEPTH],
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Per thread, what the last snapshot read. Sized by user space
/// (`--max-threads`); a thread evicted from it only costs a whole record.
#[map]
static SNAP_SEEN: LruHashMap<u32, SnapSeen> = LruHashMap::with_max_entries(MAX_THREADS, 0);

/// Set by the snapshot thread before each read: [`SNAP_CONFIG_FULL`].
#[map]
static SNAP_CONFIG: Array<u32> = Array::with_max_entries(1, 0);

/// Final counters of exiting threads (continuous tier).
#[map]
static TASK_EXITS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

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

/// The state a snapshot sees `t` in, as of the moment the snapshot taker
/// (the current task) got this CPU. A runnable thread queued at that very
/// instant, by the run queue's clock, was running until the taker preempted
/// it (`sched_info_depart` of the one, `sched_info_arrive` of the other, in
/// one context switch), if it was also last charged for running then
/// ([`task::was_preempted_at`]). Otherwise it was woken between the
/// taker's wake-up and its arrival: a wake-up that preempts makes the
/// switch skip the clock update, so it carries the same stamp (measured: a
/// thread in fdatasync sharing the taker's CPU read running in 48% of
/// snapshots against 24% exact). Such a thread, and one queued on this CPU
/// later, was woken while the snapshot ran and could not run only because
/// the snapshot holds the CPU: it reads in the state it was woken from.
#[inline(always)]
fn snapshot_state(t: *const u8, on_cpu: u32, state: u32) -> (u32, u32) {
    if on_cpu != 0 {
        return (STATE_RUNNING, 0);
    }
    if state != 0 {
        return (state_after_switch(state), 0);
    }
    let queued = task::last_queued(t);
    if queued != 0 {
        let arrival = task::current_last_arrival();
        if queued == arrival && task::was_preempted_at(t, queued) {
            return (STATE_RUNNING, SNAP_PREEMPTED_BY_SNAPSHOT);
        }
        if queued >= arrival && task::cpu(t) == task::this_cpu() {
            let was = if task::in_iowait(t) { STATE_DISK } else { STATE_SLEEPING };
            return (was, SNAP_WOKEN_DURING_SNAPSHOT);
        }
    }
    (STATE_RUNNABLE, 0)
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
    // The fields every thread needs, by plain loads from the BTF-typed task.
    let tid: u32 = task::btf_field(t, &crate::sched::TASK_PID_OFFSET);
    let tgid: u32 = task::btf_field(t, &crate::sched::TASK_TGID_OFFSET);
    // With --pid, other processes' threads are not reported: not a byte for them.
    if read_global(&crate::on_cpu::FILTER_PIDS) != 0 && unsafe { crate::on_cpu::PID_FILTER.get(&tgid) }.is_none() {
        return Ok(());
    }
    let raw_state: u32 = task::btf_field(t, &TASK_STATE_OFFSET);
    let on_cpu: u32 = task::btf_field(t, &TASK_ON_CPU_OFFSET);
    let (state, preempted) = snapshot_state(t, on_cpu, raw_state);
    let (pcount, start_ns) = task::pcount_and_start(t);
    let seen = SnapSeen { pcount, start_ns, state, _pad: 0 };
    if state != STATE_RUNNING {
        if let Some(last) = unsafe { SNAP_SEEN.get(&tid) } {
            if *last == seen {
                // Nothing at all, unless user space asked for a full list
                // (a window bound, or a periodic check of who is alive).
                if SNAP_CONFIG.get(SNAP_CONFIG_FULL).is_some_and(|f| *f != 0) {
                    let head = SnapHead { tid, flags: SNAP_UNCHANGED };
                    let _ = unsafe { bpf_seq_write(seq, (&raw const head).cast(), size_of::<SnapHead>() as u32) };
                }
                return Ok(());
            }
        }
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return Ok(()) };
    let scratch = unsafe { &mut *scratch };
    let rec = &mut scratch.record;
    rec.head = SnapHead { tid, flags: preempted };
    rec.tgid = tgid;
    rec.state = state;
    rec.comm =
        unsafe { bpf_probe_read_kernel(t.add(read_global(&TASK_COMM_OFFSET) as usize).cast::<[u8; TASK_COMM_LEN]>()) }?;
    rec.kstack_len = 0;
    rec.cpu = task::cpu(t);
    rec.start_ns = start_ns;
    // A thread off CPU keeps its user registers and stack as they were:
    // user space can copy and unwind that stack while it stays blocked.
    // The run counters first: if the thread runs after they are read, they
    // change, and user space drops a copy made from these registers.
    rec.counters = task::counters(t);
    let kernel_thread = is_kernel_thread(t);
    rec.regs = match state != STATE_RUNNING && !kernel_thread && copies_stacks() {
        true => user_regs(task).unwrap_or_default(),
        false => UserRegs::default(),
    };
    let thread = THREADS.get_ptr_mut(&tid).map(|r| unsafe { &mut *r });
    let mut want_stack = state != STATE_RUNNING;
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
                rec.head.flags |= SNAP_STACK_SENT_BEFORE;
                want_stack = false;
            }
        }
        None => {
            (rec.syscall, rec.syscall_fd) = task::syscall_untracked(task);
            rec.syscall_start_ns = 0;
            rec.kstack_id = STACK_NONE;
            rec.ustack_id = STACK_NONE;
            rec.head.flags |= SNAP_UNTRACKED;
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
    // Remembered only once user space has the whole record.
    if state != STATE_RUNNING {
        let _ = SNAP_SEEN.insert(&tid, &seen, 0);
    }
    if scratch.record.kstack_len > 0 {
        if let Some(r) = thread {
            r.flags |= RECORD_STACK_SENT;
        }
    }
    Ok(())
}

/// A thread exits (continuous tier): hand user space its final counters,
/// so that its time up to the exit is counted, and forget it.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn task_exit(ctx: BtfTracePointContext) -> i32 {
    // (struct task_struct *p, ...)
    let task: *const u8 = ctx.arg(0);
    let Ok(tid) = task_field(task, &crate::sched::TASK_PID_OFFSET) else { return 0 };
    let _ = SNAP_SEEN.remove(&tid);
    let Some(mut entry) = TASK_EXITS.reserve::<TaskExit>(0) else {
        bump(profiler_common::Counter::LostExits);
        return 0;
    };
    let e = entry.as_mut_ptr();
    unsafe {
        (*e).tid = tid;
        (*e).tgid = task_field(task, &crate::sched::TASK_TGID_OFFSET).unwrap_or(0);
        (*e).start_ns = task::start_ns(task);
        (*e).ts_ns = aya_ebpf::helpers::bpf_ktime_get_ns();
        (*e).counters = task::counters(task);
        (*e).comm =
            bpf_probe_read_kernel(task.add(read_global(&TASK_COMM_OFFSET) as usize).cast::<[u8; TASK_COMM_LEN]>())
                .unwrap_or_default();
    }
    // Drained on user space's timer: a fork storm must not wake it per exit.
    entry.submit(aya_ebpf::bindings::BPF_RB_NO_WAKEUP as u64);
    0
}
