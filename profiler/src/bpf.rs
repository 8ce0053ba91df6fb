//! Loading the embedded eBPF object and attaching its programs.

use std::os::fd::{AsFd as _, OwnedFd};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf, StackTraceMap},
    programs::{
        links::FdLink,
        perf_event::{PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
        BtfTracePoint, Iter,
    },
    Btf, Ebpf, EbpfLoader,
};
use profiler_common::{
    Counter, HistKey, HistValue, NoiseKey, NoiseStats, OffCpuKey, OffCpuValue, SampleEvent, ThreadRecord, VictimKey,
    CGROUP_FILTER_MAP, COUNTERS_MAP, EVENTS_MAP, EXITS_MAP, FP_PIDS_MAP, GLOBAL_BPRM_FILENAME_OFFSET,
    GLOBAL_CFS_RQ_RQ_OFFSET, GLOBAL_DELAYS_BLKIO_OFFSET, GLOBAL_FILTER_BY_COMM, GLOBAL_FILTER_CGROUPS,
    GLOBAL_FILTER_COMM, GLOBAL_FILTER_PIDS, GLOBAL_NOISE_THRESHOLD_NS, GLOBAL_PT_REGS_ARG0_OFFSET,
    GLOBAL_PT_REGS_FP_OFFSET, GLOBAL_PT_REGS_IP_OFFSET, GLOBAL_PT_REGS_LR_OFFSET, GLOBAL_PT_REGS_SP_OFFSET,
    GLOBAL_PT_REGS_SYSCALL_OFFSET, GLOBAL_RQ_CLOCK_OFFSET, GLOBAL_SYSCALL_FROM_REGS, GLOBAL_TASK_CFS_RQ_OFFSET,
    GLOBAL_TASK_COMM_OFFSET, GLOBAL_TASK_CPU_OFFSET, GLOBAL_TASK_DELAYS_OFFSET, GLOBAL_TASK_FLAGS_OFFSET,
    GLOBAL_TASK_LAST_ARRIVAL_OFFSET, GLOBAL_TASK_LAST_QUEUED_OFFSET, GLOBAL_TASK_NIVCSW_OFFSET,
    GLOBAL_TASK_NVCSW_OFFSET, GLOBAL_TASK_ON_CPU_OFFSET, GLOBAL_TASK_PCOUNT_OFFSET, GLOBAL_TASK_PID_OFFSET,
    GLOBAL_TASK_RUN_DELAY_OFFSET, GLOBAL_TASK_START_TIME_OFFSET, GLOBAL_TASK_STATE_OFFSET, GLOBAL_TASK_SUM_EXEC_OFFSET,
    GLOBAL_TASK_TGID_OFFSET, GLOBAL_UNWIND_MODE, GLOBAL_USER_STACK_BYTES, GLOBAL_WALK_STACKS, HISTOGRAMS_MAP,
    HIST_SUM_BUCKET, MAX_PID_FILTER, NOISE_MAP, OFFCPU_MAP, PID_FILTER_MAP, RATES_MAP, SNAPSHOT_PROGRAM, SNAP_SEEN_MAP,
    STACKS_MAP, TASK_COMM_LEN, TASK_EXITS_MAP, THREADS_MAP, VICTIMS_MAP, WINDOW_MAP,
};

use crate::{error::HookNeed, Error, Result};

/// The eBPF object built by `build.rs`, embedded in the binary.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// What to sample and how often.
#[derive(Debug, Clone)]
pub struct SamplingConfig {
    pub frequency_hz: u64,
    /// Process ids to restrict sampling to; empty means every process.
    pub pids: Vec<u32>,
    /// Exact thread name to restrict sampling to.
    pub comm: Option<String>,
    /// Track every thread's on/off-CPU time with the scheduler hooks.
    pub off_cpu: bool,
    /// Byte offsets of task_struct fields in this kernel.
    pub offsets: KernelOffsets,
    /// Cgroup v2 ids to restrict sampling to (`--cgroup`, `--container`), if
    /// the filter can be applied in the kernel; more are added during the capture.
    pub cgroup_filter: Option<Vec<u64>>,
    /// Bounds of the per-thread map and of the blocking-stack map.
    pub max_threads: u32,
    pub max_stacks: u32,
    /// How user stacks are walked (`--unwind`).
    pub unwind: crate::config::UnwindMethod,
    /// Bytes of user stack copied per sample when unwinding from copies.
    pub user_stack_bytes: u32,
    /// Sample on-CPU stacks (`record`; `noise` does not).
    pub sample_on_cpu: bool,
    /// Walk blocking stacks at switch-out (`record`; `noise` needs none).
    pub walk_stacks: bool,
    /// Attach the interrupt, softirq and NMI hooks (OS noise and their histograms).
    pub noise: bool,
    /// Noise events shorter than this are not counted (`--threshold`).
    pub noise_threshold_ns: u64,
    /// Continuous: no scheduler, syscall or interrupt hooks; snapshots
    /// read the kernel's counters and exits report them.
    pub tier: crate::tier::Tier,
    /// Hook every syscall's entry and exit (syscall latency histograms).
    pub syscall_hooks: bool,
    /// Fail, or go on without, a program that does not load or attach.
    pub programs: crate::config::ProgramPolicy,
}

/// A program that could not be loaded or attached, and what goes unseen
/// without it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unavailable {
    pub program: String,
    /// The kernel hook it attaches to.
    pub hook: String,
    /// What tailprof cannot show without it, one sentence.
    pub cannot_show: &'static str,
    /// Why it is not there.
    pub reason: String,
}

/// What goes unseen without each program that can be missed.
fn cannot_show(program: &str) -> Option<&'static str> {
    Some(match program {
        "process_exec" | "process_fork" => {
            "process exec and fork events: processes are read from procfs when first seen, so one that starts and \
             ends between two looks goes unnamed, and an exec is noticed late"
        }
        "task_exit" => {
            "the final counters of threads that exit: a thread's time since the last snapshot before its exit goes \
             unaccounted"
        }
        "on_cpu_sample" => "on-CPU stacks: no samples, so no on-CPU flame graph; exact thread times still are shown",
        _ => return None,
    })
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            frequency_hz: 99,
            pids: Vec::new(),
            comm: None,
            off_cpu: true,
            offsets: KernelOffsets::default(),
            cgroup_filter: None,
            max_threads: profiler_common::MAX_THREADS,
            max_stacks: profiler_common::MAX_STACKS,
            unwind: crate::config::UnwindMethod::Auto,
            user_stack_bytes: profiler_common::DEFAULT_USER_STACK_BYTES,
            sample_on_cpu: true,
            walk_stacks: true,
            noise: true,
            noise_threshold_ns: 0,
            tier: crate::tier::Tier::Deep,
            syscall_hooks: false,
            programs: Default::default(),
        }
    }
}

impl SamplingConfig {
    /// Bytes one sample record takes in the ring buffer.
    fn record_bytes(&self) -> u64 {
        match self.unwind {
            crate::config::UnwindMethod::Fp => size_of::<SampleEvent>() as u64,
            _ => (profiler_common::STACK_SAMPLE_HEADER as u64) + u64::from(self.user_stack_bytes),
        }
    }
}

/// Kernel struct layout the programs need, read from BTF: `task_struct`
/// fields, `linux_binprm.filename` and a syscall's first argument in `pt_regs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelOffsets {
    pub pid: u32,
    pub tgid: u32,
    pub state: u32,
    pub on_cpu: u32,
    pub comm: u32,
    pub bprm_filename: u32,
    pub pt_regs_arg0: u32,
    /// User registers in `pt_regs`: instruction, stack and frame pointers,
    /// link register (aarch64; 0 elsewhere).
    pub pt_regs_ip: u32,
    pub pt_regs_sp: u32,
    pub pt_regs_fp: u32,
    pub pt_regs_lr: u32,
    pub sum_exec: u32,
    pub pcount: u32,
    /// `task_struct.flags` (kernel threads are OS noise).
    pub flags: u32,
    /// The kernel's cumulative counters and stamps the snapshots read:
    /// `sched_info.run_delay`, `.last_arrival`, `.last_queued`, `nvcsw`,
    /// `nivcsw`, `start_time`, the CPU a task last ran on.
    pub run_delay: u32,
    pub last_arrival: u32,
    pub last_queued: u32,
    /// `se.exec_start`: tells a thread the snapshot preempted from one
    /// woken just before it (see `thread_snapshot`).
    pub exec_start: u32,
    pub nvcsw: u32,
    pub nivcsw: u32,
    pub start_time: u32,
    pub cpu: u32,
    /// `task_struct.delays` (0: no delay accounting) and `task_delay_info.blkio_delay`.
    pub delays: u32,
    pub delays_blkio: u32,
    /// The system call number in `pt_regs`.
    pub pt_regs_syscall: u32,
    /// `task_struct.se.cfs_rq`, `cfs_rq.rq`, `rq.clock` (0: without
    /// CONFIG_FAIR_GROUP_SCHED switches are stamped with the tracepoint's time).
    pub cfs_rq: u32,
    pub cfs_rq_rq: u32,
    pub rq_clock: u32,
    /// `rq.clock_task` (0: unknown; with `rq.clock`, tells a thread the
    /// snapshot preempted from one woken just before it).
    pub rq_clock_task: u32,
    /// Bit offset of the `task_struct.in_iowait` bitfield (0: unknown).
    pub in_iowait_bit: u32,
}

/// Member of `struct pt_regs` that holds a system call's first argument.
#[cfg(target_arch = "x86_64")]
const PT_REGS_ARG0: &str = "di";
#[cfg(target_arch = "aarch64")]
const PT_REGS_ARG0: &str = "regs";

/// Member of `struct pt_regs` that holds the system call number.
#[cfg(target_arch = "x86_64")]
const PT_REGS_SYSCALL: &str = "orig_ax";
#[cfg(target_arch = "aarch64")]
const PT_REGS_SYSCALL: &str = "syscallno";

/// `pt_regs` members of the user registers an unwinder starts from, and
/// the byte offsets to add: (ip, sp, fp, lr).
#[cfg(target_arch = "x86_64")]
const PT_REGS_USER: [(&str, u32); 4] = [("ip", 0), ("sp", 0), ("bp", 0), ("", 0)];
#[cfg(target_arch = "aarch64")]
const PT_REGS_USER: [(&str, u32); 4] = [("pc", 0), ("sp", 0), ("regs", 29 * 8), ("regs", 30 * 8)];

impl KernelOffsets {
    pub fn from_btf(btf: &crate::kernel_btf::KernelBtf) -> Result<Self> {
        let off = |strukt: &str, member: &str| btf.member_offset(strukt, member).map_err(Error::KernelLayout);
        let task = |member: &str| off("task_struct", member);
        let user_reg = |i: usize| match PT_REGS_USER[i] {
            ("", _) => Ok(0),
            (member, extra) => off("pt_regs", member).map(|o| o + extra),
        };
        Ok(Self {
            pid: task("pid")?,
            tgid: task("tgid")?,
            state: task("__state")?,
            on_cpu: task("on_cpu")?,
            comm: task("comm")?,
            bprm_filename: off("linux_binprm", "filename")?,
            pt_regs_arg0: off("pt_regs", PT_REGS_ARG0)?,
            pt_regs_ip: user_reg(0)?,
            pt_regs_sp: user_reg(1)?,
            pt_regs_fp: user_reg(2)?,
            pt_regs_lr: user_reg(3)?,
            sum_exec: task("se.sum_exec_runtime")?,
            pcount: task("sched_info.pcount")?,
            flags: task("flags")?,
            run_delay: task("sched_info.run_delay")?,
            last_arrival: task("sched_info.last_arrival")?,
            last_queued: task("sched_info.last_queued")?,
            exec_start: task("se.exec_start")?,
            nvcsw: task("nvcsw")?,
            nivcsw: task("nivcsw")?,
            start_time: task("start_time")?,
            // With THREAD_INFO_IN_TASK the CPU is in thread_info (x86_64 and
            // aarch64 since 5.16), else in task_struct itself.
            cpu: task("thread_info.cpu").or_else(|_| task("cpu"))?,
            // Without CONFIG_TASK_DELAY_ACCT there is no block-I/O delay to read.
            delays: task("delays").unwrap_or(0),
            delays_blkio: off("task_delay_info", "blkio_delay").unwrap_or(0),
            pt_regs_syscall: off("pt_regs", PT_REGS_SYSCALL)?,
            cfs_rq: task("se.cfs_rq").unwrap_or(0),
            cfs_rq_rq: off("cfs_rq", "rq").unwrap_or(0),
            rq_clock: off("rq", "clock").unwrap_or(0),
            rq_clock_task: off("rq", "clock_task").unwrap_or(0),
            in_iowait_bit: btf.member_bit_offset("task_struct", "in_iowait").unwrap_or(0),
        }
        .with_run_queue_clock())
    }

    /// The run queue's clock is read only if all three offsets are known.
    fn with_run_queue_clock(mut self) -> Self {
        if self.cfs_rq == 0 || self.cfs_rq_rq == 0 || self.rq_clock == 0 {
            (self.cfs_rq, self.cfs_rq_rq, self.rq_clock, self.rq_clock_task) = (0, 0, 0, 0);
        }
        self
    }
}

/// The scheduler hooks: (program, tracepoint).
const SCHEDULER_HOOKS: &[(&str, &str)] =
    &[("sched_switch", "sched_switch"), ("sched_wakeup", "sched_wakeup"), ("sched_wakeup_new", "sched_wakeup_new")];

/// The syscall hooks, for syscall latency histograms (`--syscall-latency`).
const SYSCALL_HOOKS: &[(&str, &str)] = &[("sys_enter", "sys_enter"), ("sys_exit", "sys_exit")];

/// The continuous tier's one thread hook, off the switch path: a thread's
/// final counters at its exit.
const CONTINUOUS_HOOKS: &[(&str, &str)] = &[("task_exit", "sched_process_exit")];

/// Process lifecycle hooks, always attached: (program, tracepoint).
const PROCESS_HOOKS: &[(&str, &str)] =
    &[("process_exec", "sched_process_exec"), ("process_fork", "sched_process_fork")];

/// Interrupt and softirq hooks of the noise report, on every architecture.
const NOISE_HOOKS: &[(&str, &str)] = &[
    ("irq_handler_entry", "irq_handler_entry"),
    ("irq_handler_exit", "irq_handler_exit"),
    ("softirq_entry", "softirq_entry"),
    ("softirq_exit", "softirq_exit"),
];

/// Loaded and attached programs; dropping it detaches everything.
pub struct Loaded {
    ebpf: Ebpf,
    pub cpus: Vec<u32>,
    /// Links of the snapshot iterator (with the scheduler hooks): one over
    /// every task, or with `--pid` one per process.
    pub snapshot_link: Option<Vec<OwnedFd>>,
    /// Architecture-specific noise hooks this kernel lacks (their sources go unreported).
    pub missing_hooks: Vec<String>,
    /// Programs gone without (`ProgramPolicy::degrade`).
    pub unavailable: Vec<Unavailable>,
    policy: crate::config::ProgramPolicy,
}

/// Ring buffer size: about half a second of samples at full rate on every
/// CPU (the reader drains it every [`profiler_common::DRAIN_INTERVAL_MS`]
/// and when half full), so that a reader busy closing a window (tens of
/// milliseconds) loses nothing, bounded to 1..=64 MiB and a power of two
/// as the kernel requires. Its pages are mapped twice into the process and
/// count twice in its RSS.
pub fn ring_buffer_bytes(frequency_hz: u64, cpus: usize, record_bytes: u64) -> u32 {
    let per_second = frequency_hz.saturating_mul(cpus as u64).saturating_mul(record_bytes + 8);
    let want = (per_second / 2).clamp(1 << 20, 64 << 20);
    want.next_power_of_two().min(64 << 20) as u32
}

impl Loaded {
    /// `btf`: kernel BTF read from a file given with --btf; `None` keeps
    /// the loader's own parse of /sys/kernel/btf/vmlinux.
    pub fn load(btf: Option<&Btf>, config: &SamplingConfig) -> Result<Self> {
        let filter_cgroups = u8::from(config.cgroup_filter.is_some());
        let cpus =
            aya::util::online_cpus().map_err(|(_, source)| Error::Io { what: "read the online CPUs", source })?;
        let filter_pids = u8::from(!config.pids.is_empty());
        let mut comm = [0u8; TASK_COMM_LEN];
        let filter_comm = match &config.comm {
            Some(name) => {
                let n = name.len().min(TASK_COMM_LEN - 1);
                comm[..n].copy_from_slice(&name.as_bytes()[..n]);
                1u8
            }
            None => 0u8,
        };
        let continuous = config.tier == crate::tier::Tier::Continuous;
        if config.pids.len() > MAX_PID_FILTER as usize {
            return Err(Error::TooManyPids { given: config.pids.len(), max: MAX_PID_FILTER });
        }

        let mut loader = EbpfLoader::new();
        if let Some(btf) = btf {
            loader.btf(Some(btf));
        }
        let ebpf = loader
            .override_global(GLOBAL_FILTER_PIDS, &filter_pids, true)
            .override_global(GLOBAL_FILTER_BY_COMM, &filter_comm, true)
            .override_global(GLOBAL_FILTER_COMM, &comm, true)
            .override_global(GLOBAL_TASK_PID_OFFSET, &config.offsets.pid, true)
            .override_global(GLOBAL_TASK_TGID_OFFSET, &config.offsets.tgid, true)
            .override_global(GLOBAL_TASK_STATE_OFFSET, &config.offsets.state, true)
            .override_global(GLOBAL_TASK_ON_CPU_OFFSET, &config.offsets.on_cpu, true)
            .override_global(GLOBAL_TASK_COMM_OFFSET, &config.offsets.comm, true)
            .override_global(GLOBAL_BPRM_FILENAME_OFFSET, &config.offsets.bprm_filename, true)
            .override_global(GLOBAL_PT_REGS_ARG0_OFFSET, &config.offsets.pt_regs_arg0, true)
            .override_global(GLOBAL_FILTER_CGROUPS, &filter_cgroups, true)
            .override_global(GLOBAL_TASK_SUM_EXEC_OFFSET, &config.offsets.sum_exec, true)
            .override_global(GLOBAL_TASK_PCOUNT_OFFSET, &config.offsets.pcount, true)
            .override_global(GLOBAL_UNWIND_MODE, &config.unwind.mode(), true)
            .override_global(GLOBAL_USER_STACK_BYTES, &config.user_stack_bytes, true)
            .override_global(GLOBAL_PT_REGS_IP_OFFSET, &config.offsets.pt_regs_ip, true)
            .override_global(GLOBAL_PT_REGS_SP_OFFSET, &config.offsets.pt_regs_sp, true)
            .override_global(GLOBAL_PT_REGS_FP_OFFSET, &config.offsets.pt_regs_fp, true)
            .override_global(GLOBAL_PT_REGS_LR_OFFSET, &config.offsets.pt_regs_lr, true)
            .override_global(GLOBAL_TASK_FLAGS_OFFSET, &config.offsets.flags, true)
            .override_global(GLOBAL_WALK_STACKS, &u8::from(config.walk_stacks), true)
            .override_global(GLOBAL_NOISE_THRESHOLD_NS, &config.noise_threshold_ns, true)
            .override_global(GLOBAL_TASK_RUN_DELAY_OFFSET, &config.offsets.run_delay, true)
            .override_global(GLOBAL_TASK_LAST_ARRIVAL_OFFSET, &config.offsets.last_arrival, true)
            .override_global(GLOBAL_TASK_LAST_QUEUED_OFFSET, &config.offsets.last_queued, true)
            .override_global(profiler_common::GLOBAL_TASK_EXEC_START_OFFSET, &config.offsets.exec_start, true)
            .override_global(GLOBAL_TASK_NVCSW_OFFSET, &config.offsets.nvcsw, true)
            .override_global(GLOBAL_TASK_NIVCSW_OFFSET, &config.offsets.nivcsw, true)
            .override_global(GLOBAL_TASK_START_TIME_OFFSET, &config.offsets.start_time, true)
            .override_global(GLOBAL_TASK_CPU_OFFSET, &config.offsets.cpu, true)
            .override_global(GLOBAL_TASK_DELAYS_OFFSET, &config.offsets.delays, true)
            .override_global(GLOBAL_DELAYS_BLKIO_OFFSET, &config.offsets.delays_blkio, true)
            .override_global(GLOBAL_PT_REGS_SYSCALL_OFFSET, &config.offsets.pt_regs_syscall, true)
            .override_global(GLOBAL_SYSCALL_FROM_REGS, &u8::from(continuous || !config.syscall_hooks), true)
            .override_global(GLOBAL_TASK_CFS_RQ_OFFSET, &config.offsets.cfs_rq, true)
            .override_global(profiler_common::GLOBAL_RQ_CLOCK_TASK_OFFSET, &config.offsets.rq_clock_task, true)
            .override_global(GLOBAL_CFS_RQ_RQ_OFFSET, &config.offsets.cfs_rq_rq, true)
            .override_global(GLOBAL_RQ_CLOCK_OFFSET, &config.offsets.rq_clock, true)
            .override_global(profiler_common::GLOBAL_TASK_IN_IOWAIT_BIT, &config.offsets.in_iowait_bit, true)
            .map_max_entries(EVENTS_MAP, ring_buffer_bytes(config.frequency_hz, cpus.len(), config.record_bytes()))
            .map_max_entries(THREADS_MAP, config.max_threads)
            .map_max_entries(SNAP_SEEN_MAP, config.max_threads)
            .map_max_entries(STACKS_MAP, config.max_stacks)
            .map_max_entries(OFFCPU_MAP, config.max_stacks.saturating_mul(profiler_common::OFFCPU_KEYS_PER_STACK))
            .load(OBJECT)
            .map_err(|e| Error::load(&e))?;
        let mut loaded = Self {
            ebpf,
            cpus,
            snapshot_link: None,
            missing_hooks: Vec::new(),
            unavailable: Vec::new(),
            policy: config.programs.clone(),
        };
        loaded.fill_pid_filter(&config.pids)?;
        let owned;
        let btf = match btf {
            Some(btf) => btf,
            None => {
                owned = Btf::from_sys_fs().map_err(|e| Error::load(&e))?;
                &owned
            }
        };
        loaded.attach_tracepoints(btf, PROCESS_HOOKS, HookNeed::Processes)?;
        if config.off_cpu && continuous {
            loaded.attach_tracepoints(btf, CONTINUOUS_HOOKS, HookNeed::OffCpu)?;
            loaded.snapshot_link = Some(loaded.attach_snapshot_iterator(btf, &config.pids)?);
        } else if config.off_cpu {
            loaded.attach_tracepoints(btf, SCHEDULER_HOOKS, HookNeed::OffCpu)?;
            if config.syscall_hooks {
                loaded.attach_tracepoints(btf, SYSCALL_HOOKS, HookNeed::OffCpu)?;
            }
            if config.walk_stacks {
                loaded.snapshot_link = Some(loaded.attach_snapshot_iterator(btf, &config.pids)?);
            }
        }
        if config.noise && !continuous {
            loaded.attach_tracepoints(btf, NOISE_HOOKS, HookNeed::Noise)?;
            loaded.attach_optional_noise_hooks(btf);
        }
        if config.sample_on_cpu {
            let attached = loaded.attach_sampler(config.frequency_hz);
            loaded.degrade("on_cpu_sample", "perf_event cpu-clock", attached)?;
        }
        for u in &loaded.unavailable {
            tracing::warn!(program = %u.program, hook = %u.hook, reason = %u.reason, "going on without a program: {}", u.cannot_show);
        }
        Ok(loaded)
    }

    /// Take the cgroup filter map out of the object, filled with `ids`, so
    /// that the capture loop can add cgroups created during the capture.
    pub fn take_cgroup_filter(&mut self, ids: &[u64]) -> Result<HashMap<MapData, u64, u8>> {
        let map = self
            .ebpf
            .take_map(CGROUP_FILTER_MAP)
            .ok_or_else(|| Error::ObjectMissing(format!("map {CGROUP_FILTER_MAP}")))?;
        let mut filter: HashMap<MapData, u64, u8> = HashMap::try_from(map).map_err(|e| Error::load(&e))?;
        for id in ids {
            filter.insert(id, 1, 0).map_err(|e| Error::load(&e))?;
        }
        Ok(filter)
    }

    fn fill_pid_filter(&mut self, pids: &[u32]) -> Result<()> {
        let map =
            self.ebpf.map_mut(PID_FILTER_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {PID_FILTER_MAP}")))?;
        let mut filter: HashMap<_, u32, u8> = HashMap::try_from(map).map_err(|e| Error::load(&e))?;
        for pid in pids {
            filter.insert(pid, 1, 0).map_err(|e| Error::load(&e))?;
        }
        Ok(())
    }

    /// A program of the object, as its type.
    fn program<'a, T>(&'a mut self, name: &str) -> Result<&'a mut T>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| Error::ObjectMissing(format!("program {name}")))?
            .try_into()
            .map_err(|e| Error::load(&e))
    }

    /// Test-only: the program `TAILPROF_TEST_BREAK_PROGRAM` names fails.
    fn broken(&self, program: &str, hook: &str, need: HookNeed) -> Result<()> {
        match self.policy.break_program.as_deref() == Some(program) {
            true => Err(Error::Hook {
                hook: hook.into(),
                reason: "disabled by the test switch TAILPROF_TEST_BREAK_PROGRAM".into(),
                need,
            }),
            false => Ok(()),
        }
    }

    /// A program's attach result under the policy: an error, or with
    /// `degrade` a program that can be missed noted as unavailable.
    fn degrade(&mut self, program: &str, hook: &str, attached: Result<()>) -> Result<()> {
        match (attached, cannot_show(program)) {
            (Ok(()), _) => Ok(()),
            (Err(e), Some(cannot_show)) if self.policy.degrade => {
                let reason = crate::error::format_chain(&e);
                self.unavailable.push(Unavailable { program: program.into(), hook: hook.into(), cannot_show, reason });
                Ok(())
            }
            (Err(e), _) => Err(e),
        }
    }

    fn attach_sampler(&mut self, frequency_hz: u64) -> Result<()> {
        if self.policy.break_program.as_deref() == Some("on_cpu_sample") {
            let reason = "disabled by the test switch TAILPROF_TEST_BREAK_PROGRAM".into();
            return Err(Error::PerfEventOpen { cpu: 0, reason });
        }
        let cpus = self.cpus.clone();
        let prog: &mut PerfEvent = self.program("on_cpu_sample")?;
        prog.load().map_err(|e| Error::load(&e))?;
        for cpu in cpus {
            prog.attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Frequency(frequency_hz),
                false,
            )
            .map_err(|e| Error::PerfEventOpen { cpu, reason: crate::error::format_chain(&e) })?;
        }
        Ok(())
    }

    /// Load and attach tp_btf programs: (program, tracepoint) pairs.
    fn attach_tracepoints(&mut self, btf: &Btf, hooks: &[(&str, &str)], need: HookNeed) -> Result<()> {
        for &(program, tracepoint) in hooks {
            let attached = self.broken(program, tracepoint, need).and_then(|()| {
                let prog: &mut BtfTracePoint = self.program(program)?;
                prog.load(tracepoint, btf).map_err(|e| Error::hook(tracepoint, need, &e))?;
                prog.attach().map(|_| ()).map_err(|e| Error::hook(tracepoint, need, &e))
            });
            self.degrade(program, tracepoint, attached)?;
        }
        Ok(())
    }

    /// Interrupt-vector hooks (x86 `irq_vectors`) and the NMI hook: a
    /// kernel without one reports its sources as missing instead of failing.
    fn attach_optional_noise_hooks(&mut self, btf: &Btf) {
        let mut hooks: Vec<String> = vec!["nmi_handler".into()];
        for name in profiler_common::VECTOR_TRACEPOINTS {
            hooks.push(format!("{name}_entry"));
            hooks.push(format!("{name}_exit"));
        }
        for hook in hooks {
            let attached = self.program::<BtfTracePoint>(&hook).and_then(|prog| {
                prog.load(&hook, btf).map_err(|e| Error::hook(&hook, HookNeed::Noise, &e))?;
                prog.attach().map(|_| ()).map_err(|e| Error::hook(&hook, HookNeed::Noise, &e))
            });
            if let Err(err) = attached {
                tracing::info!(%err, "noise hook not attached");
                self.missing_hooks.push(hook);
            }
        }
    }

    /// Load and attach the thread-state snapshot iterator; returns the link
    /// fds from which each snapshot is created (see `state_sampler`): one
    /// over every task, or one per process of `pids`.
    fn attach_snapshot_iterator(&mut self, btf: &Btf, pids: &[u32]) -> Result<Vec<OwnedFd>> {
        let hook = |e: &(dyn std::error::Error + 'static)| Error::hook("iter/task", HookNeed::OffCpu, e);
        let prog: &mut Iter = self.program(SNAPSHOT_PROGRAM)?;
        prog.load("task", btf).map_err(|e| hook(&e))?;
        if !pids.is_empty() {
            let fd = prog.fd().map_err(|e| hook(&e))?;
            return pids
                .iter()
                .map(|&pid| crate::snapshot_taker::process_iterator_link(fd.as_fd(), pid).map_err(|e| hook(&e)))
                .collect();
        }
        let id = prog.attach().map_err(|e| hook(&e))?;
        let link = FdLink::try_from(prog.take_link(id).map_err(|e| hook(&e))?).map_err(|e| hook(&e))?;
        let link_id = link.info().map_err(|e| hook(&e))?.id();
        // aya does not lend out a link's fd; take our own reference by id.
        crate::snapshot_taker::link_fd_by_id(link_id).map(|fd| vec![fd]).map_err(|e| hook(&e))
    }

    /// Start the accounting window: the hooks count no time before `ns`.
    pub fn set_window_start(&mut self, ns: u64) -> Result<()> {
        self.set_array(WINDOW_MAP, profiler_common::WINDOW_START, ns)
    }

    /// Close the window: the hooks count no time after `ns`. Done before
    /// the maps are read, so that what is read a moment apart agrees.
    pub fn set_window_end(&mut self, ns: u64) -> Result<()> {
        self.set_array(WINDOW_MAP, profiler_common::WINDOW_END, ns)
    }

    fn set_array<V: aya::Pod>(&mut self, name: &str, index: u32, value: V) -> Result<()> {
        let map = self.ebpf.map_mut(name).ok_or_else(|| Error::ObjectMissing(format!("map {name}")))?;
        let mut array: Array<_, V> = Array::try_from(map).map_err(|e| Error::load(&e))?;
        array.set(index, value, 0).map_err(|e| Error::load(&e))
    }

    /// The off-CPU aggregation map, read at the end.
    pub fn off_cpu_map(&self) -> Result<HashMap<&MapData, OffCpuKey, OffCpuValue>> {
        let map = self.ebpf.map(OFFCPU_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {OFFCPU_MAP}")))?;
        HashMap::try_from(map).map_err(Error::Map)
    }

    /// Take the blocking-stack map out of the object.
    pub fn take_stacks(&mut self) -> Result<StackTraceMap<MapData>> {
        let map = self.ebpf.take_map(STACKS_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {STACKS_MAP}")))?;
        StackTraceMap::try_from(map).map_err(Error::Map)
    }

    /// Take the map of processes whose stacks frame pointers walk
    /// completely (`--unwind auto`: their samples carry no stack copy).
    pub fn take_fp_pids(&mut self) -> Result<HashMap<MapData, u32, u8>> {
        let map = self.ebpf.take_map(FP_PIDS_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {FP_PIDS_MAP}")))?;
        HashMap::try_from(map).map_err(|e| Error::load(&e))
    }

    /// Take the map of run-time rates (the cost governor's sample level).
    pub fn take_rates(&mut self) -> Result<Array<MapData, u32>> {
        let map = self.ebpf.take_map(RATES_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {RATES_MAP}")))?;
        Array::try_from(map).map_err(|e| Error::load(&e))
    }

    /// Fds of the loaded programs that run in other tasks' context (all
    /// but the snapshot iterator, which runs inside our own read()).
    pub fn outside_program_fds(&self) -> Vec<i32> {
        use std::os::fd::{AsFd, AsRawFd};
        self.ebpf
            .programs()
            .filter(|(name, _)| *name != SNAPSHOT_PROGRAM)
            .filter_map(|(_, p)| p.fd().ok().map(|fd| fd.as_fd().as_raw_fd()))
            .collect()
    }

    /// Take the snapshot iterator's config array.
    pub fn take_snap_config(&mut self) -> Result<Array<MapData, u32>> {
        let name = profiler_common::SNAP_CONFIG_MAP;
        let map = self.ebpf.take_map(name).ok_or_else(|| Error::ObjectMissing(format!("map {name}")))?;
        Array::try_from(map).map_err(|e| Error::load(&e))
    }

    /// Take the snapshot iterator's memory of each thread.
    pub fn take_snap_seen(&mut self) -> Result<HashMap<MapData, u32, profiler_common::SnapSeen>> {
        let map =
            self.ebpf.take_map(SNAP_SEEN_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {SNAP_SEEN_MAP}")))?;
        HashMap::try_from(map).map_err(|e| Error::load(&e))
    }

    /// Take the ring buffer of exiting threads' counters (continuous tier).
    pub fn take_task_exits(&mut self) -> Result<RingBuf<MapData>> {
        let map =
            self.ebpf.take_map(TASK_EXITS_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {TASK_EXITS_MAP}")))?;
        RingBuf::try_from(map).map_err(|e| Error::load(&e))
    }

    /// Take the exited-thread ring buffer out of the object.
    pub fn take_exits(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map(EXITS_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {EXITS_MAP}")))?;
        RingBuf::try_from(map).map_err(|e| Error::load(&e))
    }

    /// The thread map, for seeding and for the final read.
    pub fn threads(&mut self) -> Result<HashMap<&mut MapData, u32, ThreadRecord>> {
        let map = self.ebpf.map_mut(THREADS_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {THREADS_MAP}")))?;
        HashMap::try_from(map).map_err(|e| Error::load(&e))
    }

    /// Take the sample ring buffer out of the object, for the reader task.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map(EVENTS_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {EVENTS_MAP}")))?;
        RingBuf::try_from(map).map_err(|e| Error::load(&e))
    }

    /// Per CPU: every noise source seen on it, as (cpu, source, stats).
    pub fn noise_sources(&self) -> Result<Vec<(u32, NoiseKey, NoiseStats)>> {
        let map = self.ebpf.map(NOISE_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {NOISE_MAP}")))?;
        let noise: PerCpuHashMap<_, NoiseKey, NoiseStats> = PerCpuHashMap::try_from(map).map_err(Error::Map)?;
        let mut out = Vec::new();
        for entry in noise.iter() {
            let (key, values) = entry.map_err(Error::Map)?;
            for (i, stats) in values.iter().enumerate() {
                if stats.count > 0 {
                    // Per-CPU values come in the order of the possible CPUs.
                    out.push((i as u32, key, *stats));
                }
            }
        }
        Ok(out)
    }

    /// What victim threads (`--pid`) lost, by kind.
    pub fn victims(&self) -> Result<Vec<(VictimKey, NoiseStats)>> {
        let map = self.ebpf.map(VICTIMS_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {VICTIMS_MAP}")))?;
        let victims: HashMap<_, VictimKey, NoiseStats> = HashMap::try_from(map).map_err(Error::Map)?;
        victims.iter().map(|e| e.map_err(Error::Map)).collect()
    }

    /// Every histogram bucket's count so far, and under `HIST_SUM_BUCKET`
    /// each histogram's exact sum (the sum of its buckets' sums).
    pub fn histogram_entries(&self) -> Result<Vec<(HistKey, u64)>> {
        let map = self.ebpf.map(HISTOGRAMS_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {HISTOGRAMS_MAP}")))?;
        let hist: HashMap<_, HistKey, HistValue> = HashMap::try_from(map).map_err(Error::Map)?;
        let mut entries = Vec::new();
        let mut sums = std::collections::BTreeMap::<(u32, u32), u64>::new();
        for entry in hist.iter() {
            let (key, value) = entry.map_err(Error::Map)?;
            *sums.entry((key.kind, key.id)).or_default() += value.sum;
            entries.push((key, value.count));
        }
        entries.extend(
            sums.into_iter().map(|((kind, id), sum)| (HistKey { kind, id, bucket: HIST_SUM_BUCKET, _pad: 0 }, sum)),
        );
        Ok(entries)
    }

    /// Sum of a counter over all CPUs.
    pub fn counter(&self, counter: Counter) -> Result<u64> {
        let map = self.ebpf.map(COUNTERS_MAP).ok_or_else(|| Error::ObjectMissing(format!("map {COUNTERS_MAP}")))?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(Error::Map)?;
        let values = counters.get(&(counter as u32), 0).map_err(Error::Map)?;
        Ok(values.iter().sum())
    }
}
