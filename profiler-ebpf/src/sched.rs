//! Exact per-thread scheduler accounting: sched_switch and sched_wakeup
//! (tp_btf) move each thread between running, runnable and its off-CPU
//! state, adding the time spent in the state it leaves. Off-CPU time is
//! also aggregated in the kernel by (thread, state, syscall, blocking
//! stacks, waker), like offcputime and offwaketime in one pass.

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map},
    maps::{Array, HashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{tracing::StackIdContext, BtfTracePointContext},
};
use profiler_common::{
    state_after_switch, Counter, OffCpuKey, OffCpuValue, StackSlot, ThreadExit, ThreadRecord, HIST_OFF_CPU, HIST_RUNQ,
    HIST_SYSCALL, MAX_OFFCPU_KEYS, MAX_STACKS, MAX_THREADS, NO_WAKER, RECORD_STACK_SENT, STACK_LOST, STACK_NONE,
    STACK_WALK_INTERVAL_NS, STATE_RUNNABLE, STATE_RUNNING, STATE_SLEEPING, TASK_DEAD, TRACE_FRAMES_TO_SKIP,
};

use crate::{
    histogram, noise,
    shared::{bump, read_global},
};

#[unsafe(no_mangle)]
pub(crate) static TASK_PID_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
pub(crate) static TASK_TGID_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
pub(crate) static PT_REGS_ARG0_OFFSET: u32 = 0;
/// Offsets of `task_struct.se.cfs_rq`, `cfs_rq.rq` and `rq.clock`: the run
/// queue clock a context switch is stamped with (0: not in this kernel).
#[unsafe(no_mangle)]
pub(crate) static TASK_CFS_RQ_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
pub(crate) static CFS_RQ_RQ_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
pub(crate) static RQ_CLOCK_OFFSET: u32 = 0;
/// Offset of `rq.clock_task` (0: unknown).
#[unsafe(no_mangle)]
pub(crate) static RQ_CLOCK_TASK_OFFSET: u32 = 0;
/// Non-zero when switch-outs walk blocking stacks (`record`, not `noise`).
#[unsafe(no_mangle)]
static WALK_STACKS: u8 = 1;

/// Sized by user space (`--max-threads`).
#[map]
pub(crate) static THREADS: HashMap<u32, ThreadRecord> = HashMap::with_max_entries(MAX_THREADS, 0);

/// Start of the accounting window, set by user space when it seeds THREADS.
#[map]
static WINDOW: Array<u64> = Array::with_max_entries(2, 0);

#[inline(always)]
pub(crate) fn window_start() -> u64 {
    WINDOW.get(profiler_common::WINDOW_START).copied().unwrap_or(0)
}

/// Whether `now` lies in the accounting window (opened and not yet closed).
#[inline(always)]
pub(crate) fn window_open(now: u64) -> bool {
    let start = window_start();
    let end = WINDOW.get(profiler_common::WINDOW_END).copied().unwrap_or(0);
    start != 0 && now >= start && (end == 0 || now <= end)
}

/// Per CPU: `bpf_ktime_get_ns()` minus the run queue clock (sched_clock),
/// as the smallest difference seen: a run queue clock is either fresh or
/// stale, and stale only makes the difference larger. It may rise by
/// [`OFFSET_DRIFT_PPM`] of the time since it was last lowered, for the
/// two clocks drift apart (measured here: 340 ppm).
#[map]
static CLOCK_OFFSET: PerCpuArray<ClockOffset> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct ClockOffset {
    /// ktime - rq clock, as an i64 (either clock may be ahead).
    offset: i64,
    /// When it was last set (ktime); 0: never.
    at: u64,
}

const OFFSET_DRIFT_PPM: u64 = 1000;

/// Take a sample `now - clock` of the offset; returns the offset.
#[inline(always)]
fn clock_offset(now: u64, clock: u64) -> Option<i64> {
    let slot = CLOCK_OFFSET.get_ptr_mut(0)?;
    let c = unsafe { &mut *slot };
    let sample = now.wrapping_sub(clock) as i64;
    let allowed = c.offset.saturating_add((now.saturating_sub(c.at) / 1_000_000 * OFFSET_DRIFT_PPM) as i64);
    if c.at == 0 || sample <= allowed {
        c.offset = sample;
        c.at = now;
    }
    Some(c.offset)
}

/// The run queue clock `clock`, in ktime, if that lands in the 10 ms
/// before `now`; else `now`.
#[inline(always)]
fn to_ktime(clock: u64, offset: i64, now: u64) -> u64 {
    let t = clock.wrapping_add(offset as u64);
    if t <= now && now - t < 10_000_000 {
        t
    } else {
        now
    }
}

#[map]
static EXITS: RingBuf = RingBuf::with_byte_size(256 << 10, 0);

/// Blocking stacks, kernel and user. Sized by user space (`--max-stacks`).
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

/// Off-CPU ns by (thread, state, syscall, stacks, waker).
#[map]
static OFFCPU: HashMap<OffCpuKey, OffCpuValue> = HashMap::with_max_entries(MAX_OFFCPU_KEYS, 0);

/// A u32 field of a BTF-typed task (see [`crate::task::btf_field`]).
#[inline(always)]
pub(crate) fn task_field(task: *const u8, offset: &'static u32) -> Result<u32, i32> {
    Ok(crate::task::btf_field(task, offset))
}

/// The thread's record, created in `state` if it is new.
#[inline(always)]
fn record(tid: u32, tgid: u32, state: u32, now: u64) -> Option<&'static mut ThreadRecord> {
    if let Some(r) = THREADS.get_ptr_mut(&tid) {
        return Some(unsafe { &mut *r });
    }
    if THREADS.insert(&tid, &ThreadRecord::new(tgid, state, now), BPF_NOEXIST as u64).is_err() {
        bump(Counter::ThreadMapFull);
        return None;
    }
    THREADS.get_ptr_mut(&tid).map(|r| unsafe { &mut *r })
}

/// Add an off-CPU interval to its aggregate.
#[inline(always)]
fn aggregate(tid: u32, r: &ThreadRecord, ns: u64) {
    let key = r.off_cpu_key(tid);
    if let Some(v) = OFFCPU.get_ptr_mut(&key) {
        // Keys carry the tid and a thread's transitions are serialised by
        // the scheduler, so no other CPU updates this value concurrently.
        let v = unsafe { &mut *v };
        v.ns += ns;
        v.count += 1;
        return;
    }
    let v = OffCpuValue { ns, count: 1, waker_comm: r.waker_comm, comm: r.comm };
    if OFFCPU.insert(&key, &v, BPF_NOEXIST as u64).is_err() {
        bump(Counter::OffCpuMapFull);
    }
}

/// Move a thread to `state` at `now`, accounting the state it leaves.
#[inline(always)]
fn transition(tid: u32, r: &mut ThreadRecord, state: u32, now: u64) {
    // Nothing counts before user space opens the window (after seeding);
    // until then only the state is followed.
    let start = window_start();
    if start == 0 {
        r.times.since_ns = now;
        r.times.state = state;
        return;
    }
    // After the window closes the record is left as it was at the close:
    // user space adds each live thread's open interval up to the close
    // itself. Accounting it here too would count it twice whenever the
    // thread switched between user space's reads of THREADS and OFFCPU.
    let end = WINDOW.get(profiler_common::WINDOW_END).copied().unwrap_or(0);
    if end != 0 && now >= end {
        return;
    }
    // Intervals cut by the window are not latencies.
    let whole = r.times.since_ns >= start;
    if r.times.since_ns < start {
        r.times.since_ns = start;
    }
    let elapsed = now.saturating_sub(r.times.since_ns);
    if r.times.state != STATE_RUNNING && elapsed > 0 {
        aggregate(tid, r, elapsed);
    }
    if whole && r.times.state != STATE_RUNNING && noise::selected(r.times.tgid) {
        if r.times.state == STATE_RUNNABLE {
            histogram::record(HIST_RUNQ, r.times.tgid, elapsed);
        } else {
            histogram::record(HIST_OFF_CPU, r.times.state, elapsed);
        }
    }
    r.times.account_until(now);
    r.times.state = state;
}

/// The thread's last switch: hand its totals to user space and forget it.
#[inline(always)]
fn retire(tid: u32, now: u64) {
    // After the window closes a dying thread stays in THREADS as it was at
    // the close, so that it is read once, as live, and not also as exited.
    let end = WINDOW.get(profiler_common::WINDOW_END).copied().unwrap_or(0);
    if end != 0 && now >= end {
        return;
    }
    let Some(r) = THREADS.get_ptr_mut(&tid) else { return };
    let r = unsafe { &mut *r };
    transition(tid, r, STATE_RUNNING, now);
    match EXITS.reserve::<ThreadExit>(0) {
        Some(mut entry) => {
            entry.write(ThreadExit { tid, _pad: 0, times: r.times, comm: bpf_get_current_comm().unwrap_or_default() });
            entry.submit(0);
        }
        None => bump(Counter::LostExits),
    }
    let _ = THREADS.remove(&tid);
}

#[inline(always)]
fn stack_id(ctx: &BtfTracePointContext, flags: u64) -> i32 {
    match ctx.get_stackid(&STACKS, flags) {
        Ok(id) => id as i32,
        // No user stack: a kernel thread, or nothing readable.
        Err(e) if e == -14 => STACK_NONE,
        Err(_) => {
            bump(Counter::StackMapFull);
            STACK_LOST
        }
    }
}

/// The stacks `r` (still `current`) blocks or waits in, walked at most
/// every STACK_WALK_INTERVAL_NS per kind of switch-out (syscall, and
/// whether preempted), else the ones last walked for that kind. Its name is
/// refreshed with them.
#[inline(always)]
fn walk_stacks(ctx: &BtfTracePointContext, r: &mut ThreadRecord, preempted: u32, now: u64) {
    let syscall = r.syscall;
    let (slot, hit) = r.stack_slot(syscall, preempted);
    let walk = !hit || slot.kstack_id < 0 || now.saturating_sub(slot.walk_ns) >= STACK_WALK_INTERVAL_NS;
    if walk {
        *slot = StackSlot {
            walk_ns: now,
            syscall,
            preempted,
            kstack_id: stack_id(ctx, TRACE_FRAMES_TO_SKIP),
            ustack_id: stack_id(ctx, BPF_F_USER_STACK as u64),
        };
    }
    let (kstack_id, ustack_id) = (slot.kstack_id, slot.ustack_id);
    (r.kstack_id, r.ustack_id) = (kstack_id, ustack_id);
    if walk {
        r.comm = bpf_get_current_comm().unwrap_or_default();
    }
}

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sched_switch(&ctx);
    0
}

/// When the kernel switched from `prev`, in `bpf_ktime_get_ns()` time.
///
/// The kernel stamps a context switch with its run queue's clock, and a
/// wake-up that asks to preempt the running task (the idle task included)
/// makes the switch that follows skip the clock update: the switch is
/// stamped with the wake-up's clock, often tens of microseconds before the
/// tracepoint fires. The kernel charges the woken task running from then,
/// and none of that gap to its run-queue wait (`se.sum_exec_runtime`,
/// `sched_info.run_delay`). So do we: the run queue's clock, moved into
/// ktime by the offset the last wake-up measured, if it is at most 10 ms
/// old; the tracepoint's own time otherwise.
#[inline(always)]
fn switch_time(prev: *const u8, now: u64) -> u64 {
    let (se, rq, clock) =
        (read_global(&TASK_CFS_RQ_OFFSET), read_global(&CFS_RQ_RQ_OFFSET), read_global(&RQ_CLOCK_OFFSET));
    if se == 0 {
        return now;
    }
    let _ = (rq, clock);
    let cfs_rq: *const u8 = crate::task::btf_field(prev, &TASK_CFS_RQ_OFFSET);
    if cfs_rq.is_null() {
        return now;
    }
    let rq: *const u8 = crate::task::btf_field(cfs_rq, &CFS_RQ_RQ_OFFSET);
    if rq.is_null() {
        return now;
    }
    let clock: u64 = crate::task::btf_field(rq, &RQ_CLOCK_OFFSET);
    match clock_offset(now, clock) {
        Some(offset) if clock != 0 => to_ktime(clock, offset, now),
        _ => now,
    }
}

fn try_sched_switch(ctx: &BtfTracePointContext) -> Result<(), i32> {
    // (bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
    let prev: *const u8 = ctx.arg(1);
    let now = switch_time(prev, unsafe { bpf_ktime_get_ns() });
    let next: *const u8 = ctx.arg(2);
    let prev_state: u32 = ctx.arg(3);
    let pid_tgid = bpf_get_current_pid_tgid();
    let (prev_tid, prev_tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
    if prev_tid != 0 {
        if prev_state & TASK_DEAD != 0 {
            retire(prev_tid, now);
        } else if let Some(r) = record(prev_tid, prev_tgid, STATE_RUNNING, now) {
            let state = state_after_switch(prev_state);
            transition(prev_tid, r, state, now);
            // Without the syscall hooks, the syscall it blocks in comes from
            // its saved registers (as /proc/PID/task/TID/syscall reads it).
            if crate::task::syscalls_from_regs() {
                (r.syscall, r.syscall_fd) = crate::task::syscall_of(prev as *mut _);
                r.syscall_start_ns = 0;
            }
            if read_global(&WALK_STACKS) != 0 {
                walk_stacks(ctx, r, u32::from(state == STATE_RUNNABLE), now);
            } else if r.comm[0] == 0 {
                r.comm = bpf_get_current_comm().unwrap_or_default();
            }
            r.waker_tid = NO_WAKER;
            r.flags &= !RECORD_STACK_SENT;
        }
    }
    noise::on_switch(prev_tid, next, now);
    let next_tid = task_field(next, &TASK_PID_OFFSET)?;
    if next_tid != 0 {
        let next_tgid = task_field(next, &TASK_TGID_OFFSET)?;
        if let Some(r) = record(next_tid, next_tgid, STATE_RUNNABLE, now) {
            if r.times.state == STATE_RUNNABLE {
                noise::on_victim_runs(next_tid, next_tgid, r.times.since_ns, now);
            }
            transition(next_tid, r, STATE_RUNNING, now);
        }
    }
    Ok(())
}

#[inline(always)]
fn on_wakeup(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let now = unsafe { bpf_ktime_get_ns() };
    let task: *const u8 = ctx.arg(0);
    let tid = task_field(task, &TASK_PID_OFFSET)?;
    if tid == 0 {
        return Ok(());
    }
    let tgid = task_field(task, &TASK_TGID_OFFSET)?;
    // The wake-up just updated the run queue's clock and queued the task
    // with it: measure the offset between that clock and ours.
    // The run-queue wait starts where the kernel starts it: when the task
    // was queued, by the run queue's clock.
    let queued = crate::task::last_queued(task);
    let now = match (queued, CLOCK_OFFSET.get(0)) {
        (0, _) | (_, None) => now,
        (_, Some(c)) if c.at == 0 => now,
        (q, Some(c)) => to_ktime(q, c.offset, now),
    };
    let Some(r) = record(tid, tgid, STATE_SLEEPING, now) else { return Ok(()) };
    // A wakeup ends a sleep; a thread already running or runnable stays so.
    if r.times.state == STATE_RUNNING || r.times.state == STATE_RUNNABLE {
        return Ok(());
    }
    // The waker is the current task (in interrupt context, whichever task
    // was interrupted; tid 0 is the idle task).
    r.waker_tid = bpf_get_current_pid_tgid() as u32;
    // Its name is read when the waker changes.
    if r.waker_tid != r.waker_comm_tid {
        r.waker_comm = bpf_get_current_comm().unwrap_or_default();
        r.waker_comm_tid = r.waker_tid;
    }
    transition(tid, r, STATE_RUNNABLE, now);
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

/// Entering a system call: remember which one and since when.
#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> i32 {
    // (struct pt_regs *regs, long id)
    let id: i64 = ctx.arg(1);
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(r) = THREADS.get_ptr_mut(&tid) {
        let r = unsafe { &mut *r };
        r.syscall = id as i32;
        let regs: *const u8 = ctx.arg(0);
        r.syscall_fd =
            unsafe { bpf_probe_read_kernel(regs.add(read_global(&PT_REGS_ARG0_OFFSET) as usize).cast::<u64>()) }
                .map_or(-1, |a| a as i32);
        r.syscall_start_ns = unsafe { bpf_ktime_get_ns() };
    }
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(_ctx: BtfTracePointContext) -> i32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(r) = THREADS.get_ptr_mut(&tid) {
        let r = unsafe { &mut *r };
        let now = unsafe { bpf_ktime_get_ns() };
        if r.syscall >= 0 && r.syscall_start_ns >= window_start() && window_open(now) && noise::selected(r.times.tgid) {
            histogram::record(HIST_SYSCALL, r.syscall as u32, now - r.syscall_start_ns);
        }
        r.syscall = profiler_common::NO_SYSCALL;
    }
    0
}
