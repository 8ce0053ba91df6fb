//! Exact per-thread scheduler accounting: sched_switch and sched_wakeup
//! (tp_btf) move each thread between running, runnable and its off-CPU
//! state, adding the time spent in the state it leaves.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map},
    maps::{HashMap, RingBuf},
    programs::BtfTracePointContext,
};
use profiler_common::{
    state_after_switch, Counter, ThreadExit, ThreadTimes, MAX_THREADS, STATE_RUNNABLE, STATE_RUNNING, TASK_DEAD,
};

use crate::shared::{bump, read_global};

#[unsafe(no_mangle)]
static TASK_PID_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_TGID_OFFSET: u32 = 0;

#[map]
static THREADS: HashMap<u32, ThreadTimes> = HashMap::with_max_entries(MAX_THREADS, 0);

#[map]
static EXITS: RingBuf = RingBuf::with_byte_size(256 << 10, 0);

#[inline(always)]
fn task_field(task: *const u8, offset: u32) -> Result<u32, i32> {
    unsafe { bpf_probe_read_kernel(task.add(offset as usize).cast::<u32>()) }
}

#[inline(always)]
fn enter_state(tid: u32, tgid: u32, state: u32, now: u64) {
    match THREADS.get_ptr_mut(&tid) {
        Some(t) => {
            let t = unsafe { &mut *t };
            t.account_until(now);
            t.state = state;
            t.tgid = tgid;
        }
        None => {
            let t = ThreadTimes { tgid, state, since_ns: now, ..ThreadTimes::default() };
            if THREADS.insert(&tid, &t, BPF_NOEXIST as u64).is_err() {
                bump(Counter::ThreadMapFull);
            }
        }
    }
}

/// The thread's last switch: hand its totals to user space and forget it.
#[inline(always)]
fn retire(tid: u32, now: u64) {
    let Some(t) = THREADS.get_ptr_mut(&tid) else { return };
    let t = unsafe { &mut *t };
    t.account_until(now);
    match EXITS.reserve::<ThreadExit>(0) {
        Some(mut entry) => {
            entry.write(ThreadExit { tid, _pad: 0, times: *t });
            entry.submit(0);
        }
        None => bump(Counter::LostExits),
    }
    let _ = THREADS.remove(&tid);
}

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sched_switch(&ctx);
    0
}

fn try_sched_switch(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let now = unsafe { bpf_ktime_get_ns() };
    // (bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
    let next: *const u8 = ctx.arg(2);
    let prev_state: u32 = ctx.arg(3);
    let pid_tgid = bpf_get_current_pid_tgid();
    let (prev_tid, prev_tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
    if prev_tid != 0 {
        if prev_state & TASK_DEAD != 0 {
            retire(prev_tid, now);
        } else {
            enter_state(prev_tid, prev_tgid, state_after_switch(prev_state), now);
        }
    }
    let next_tid = task_field(next, read_global(&TASK_PID_OFFSET))?;
    if next_tid != 0 {
        let next_tgid = task_field(next, read_global(&TASK_TGID_OFFSET))?;
        enter_state(next_tid, next_tgid, STATE_RUNNING, now);
    }
    Ok(())
}

#[inline(always)]
fn on_wakeup(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let now = unsafe { bpf_ktime_get_ns() };
    let task: *const u8 = ctx.arg(0);
    let tid = task_field(task, read_global(&TASK_PID_OFFSET))?;
    if tid == 0 {
        return Ok(());
    }
    let tgid = task_field(task, read_global(&TASK_TGID_OFFSET))?;
    // A wakeup ends a sleep; a thread already running or runnable stays so.
    if let Some(t) = THREADS.get_ptr_mut(&tid) {
        let t = unsafe { &mut *t };
        if t.state == STATE_RUNNING || t.state == STATE_RUNNABLE {
            return Ok(());
        }
    }
    enter_state(tid, tgid, STATE_RUNNABLE, now);
    Ok(())
}

#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    let _ = on_wakeup(&ctx);
    0
}

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    let _ = on_wakeup(&ctx);
    0
}
