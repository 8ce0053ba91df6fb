//! perf_event cpu-clock sampling: one record per sample with both stacks.

use crate::shared::{bump, read_global};
use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task_btf,
        bpf_get_prandom_u32, bpf_get_smp_processor_id, bpf_get_stack, bpf_ktime_get_ns,
    },
    macros::{map, perf_event},
    maps::{Array, HashMap, LruHashMap, RingBuf},
    programs::PerfEventContext,
    EbpfContext,
};
use profiler_common::{
    Counter, SampleEvent, StackSample, UserRegs, EVENT_SAMPLE, EVENT_SAMPLE_STACK, MAX_CGROUP_FILTER, MAX_PID_FILTER,
    MAX_SAMPLE_LEVEL, MAX_STACK_DEPTH, MAX_USER_STACK_BYTES, RATE_SAMPLE_LEVEL, SEEN_PIDS_SLOTS, STACK_COPY_FAILED,
    STACK_COPY_SHORT, STACK_SAMPLE_HEADER, TASK_COMM_LEN,
};

use crate::{
    sched::THREADS,
    user_stack::{copy_stack, user_regs, wants_copy, USER_STACK_BYTES},
};

/// Set by user space before load; see `profiler_common::GLOBAL_*`.
#[unsafe(no_mangle)]
pub(crate) static FILTER_PIDS: u8 = 0;
#[unsafe(no_mangle)]
static FILTER_BY_COMM: u8 = 0;
#[unsafe(no_mangle)]
static FILTER_COMM: [u8; TASK_COMM_LEN] = [0; TASK_COMM_LEN];
#[unsafe(no_mangle)]
static FILTER_CGROUPS: u8 = 0;

/// Sized by user space from frequency and CPU count before load.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Run-time rates set by user space (the cost governor).
#[map]
static RATES: Array<u32> = Array::with_max_entries(4, 0);

#[map]
pub(crate) static PID_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(MAX_PID_FILTER, 0);

/// Cgroup v2 ids selected by `--cgroup` / `--container`; user space adds
/// new matching cgroups while the capture runs.
#[map]
static CGROUP_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(MAX_CGROUP_FILTER, 0);

/// Processes sampled recently. The first sample of a process wakes user
/// space at once, so that it reads the process's memory map while the
/// process still lives; other samples are batched (see `wakeup_flags`).
#[map]
static SEEN_PIDS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(SEEN_PIDS_SLOTS, 0);

/// Wake user space for a new process or when the ring is a quarter
/// full; otherwise it drains on its own timer. This saves one wakeup per sample.
#[inline(always)]
fn wakeup_flags(pid: u32) -> u64 {
    if unsafe { SEEN_PIDS.get(&pid) }.is_none() {
        let _ = SEEN_PIDS.insert(&pid, &1, 0);
        return BPF_RB_FORCE_WAKEUP as u64;
    }
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let size = EVENTS.query(BPF_RB_RING_SIZE as u64);
    if avail > size / 4 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn comm_matches(comm: &[u8; TASK_COMM_LEN]) -> bool {
    let want = read_global(&FILTER_COMM);
    let mut i = 0;
    while i < TASK_COMM_LEN {
        if comm[i] != want[i] {
            return false;
        }
        if comm[i] == 0 {
            return true;
        }
        i += 1;
    }
    true
}

#[perf_event]
pub fn on_cpu_sample(ctx: PerfEventContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let pid = (pid_tgid >> 32) as u32;
    if tid == 0 {
        bump(Counter::IdleSamples);
        return 0;
    }
    if read_global(&FILTER_PIDS) != 0 && unsafe { PID_FILTER.get(&pid) }.is_none() {
        return 0;
    }
    if read_global(&FILTER_CGROUPS) != 0 {
        let id = unsafe { bpf_get_current_cgroup_id() };
        if unsafe { CGROUP_FILTER.get(&id) }.is_none() {
            return 0;
        }
    }
    let comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
    if read_global(&FILTER_BY_COMM) != 0 && !comm_matches(&comm) {
        return 0;
    }
    // Over its CPU budget, the governor keeps one sample in 2^level, at
    // random (a fixed pattern could alias with the workload); each kept
    // one stands for 2^level.
    let level = RATES.get(RATE_SAMPLE_LEVEL).copied().unwrap_or(0).min(MAX_SAMPLE_LEVEL);
    if level > 0 && unsafe { bpf_get_prandom_u32() } & ((1 << level) - 1) != 0 {
        return 0;
    }
    let weight = 1u32 << level;

    if wants_copy(pid) {
        // Kernel threads have no user registers: they take the small record.
        if let Some(regs) = user_regs(unsafe { bpf_get_current_task_btf() }) {
            sample_with_stack(&ctx, pid, tid, &comm, regs, weight);
            return 0;
        }
    }
    let Some(mut entry) = EVENTS.reserve::<SampleEvent>(0) else {
        bump(Counter::LostSamples);
        return 0;
    };
    unsafe { fill(&ctx, entry.as_mut_ptr(), EVENT_SAMPLE, pid, tid, &comm, weight) };
    entry.submit(wakeup_flags(pid));
    0
}

/// A sample with the user registers and a copy of the top of the user
/// stack. The record's size is fixed at load (`USER_STACK_BYTES` is a
/// read-only global, a constant to the verifier); user space reads only
/// the `stack_len` bytes that were copied.
#[inline(always)]
fn sample_with_stack(
    ctx: &PerfEventContext,
    pid: u32,
    tid: u32,
    comm: &[u8; TASK_COMM_LEN],
    regs: UserRegs,
    weight: u32,
) {
    let want = read_global(&USER_STACK_BYTES);
    let want = if want as usize > MAX_USER_STACK_BYTES { MAX_USER_STACK_BYTES as u32 } else { want };
    let Some(mut buf) = EVENTS.reserve_bytes(STACK_SAMPLE_HEADER + want as usize, 0) else {
        bump(Counter::LostSamples);
        return;
    };
    let rec = buf.as_mut_ptr().cast::<StackSample>();
    unsafe {
        fill(ctx, &raw mut (*rec).sample, EVENT_SAMPLE_STACK, pid, tid, comm, weight);
        (*rec).regs = regs;
        let (len, short) = copy_stack(tid, (&raw mut (*rec).stack).cast::<u8>(), regs.sp, want);
        (*rec).stack_len = len;
        (*rec).flags = if len == 0 {
            bump(Counter::UserStackCopyErrors);
            STACK_COPY_FAILED
        } else if short {
            STACK_COPY_SHORT
        } else {
            0
        };
    }
    buf.submit(wakeup_flags(pid));
}

/// Fill a sample's header and both frame-pointer stacks.
#[inline(always)]
unsafe fn fill(
    ctx: &PerfEventContext,
    event: *mut SampleEvent,
    kind: u32,
    pid: u32,
    tid: u32,
    comm: &[u8; TASK_COMM_LEN],
    weight: u32,
) {
    const STACK_BYTES: u32 = (MAX_STACK_DEPTH * 8) as u32;
    unsafe {
        (*event).kind = kind;
        (*event).cpu = bpf_get_smp_processor_id();
        (*event).ts_ns = bpf_ktime_get_ns();
        (*event).pid = pid;
        (*event).tid = tid;
        // The scheduler hooks know which syscall the thread is in (empty map without them).
        // The syscall hooks know which syscall the thread is in; without
        // them its saved registers say.
        (*event).syscall = match crate::task::syscalls_from_regs() {
            true => crate::task::syscall_of(bpf_get_current_task_btf()).0,
            false => THREADS.get(&tid).map_or(profiler_common::NO_SYSCALL, |r| r.syscall),
        };
        (*event).weight = weight;
        (*event).comm = *comm;

        let n = bpf_get_stack(ctx.as_ptr(), (*event).kstack.as_mut_ptr().cast(), STACK_BYTES, 0);
        (*event).kstack_len = if n > 0 { (n / 8) as u32 } else { 0 };
        if n < 0 {
            bump(Counter::KernelStackErrors);
        }
        let n = bpf_get_stack(ctx.as_ptr(), (*event).ustack.as_mut_ptr().cast(), STACK_BYTES, BPF_F_USER_STACK as u64);
        (*event).ustack_len = if n > 0 { (n / 8) as u32 } else { 0 };
        if n < 0 {
            bump(Counter::UserStackErrors);
        }
    }
}
