//! Loading the embedded eBPF object and attaching its programs.

use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        perf_event::{PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
        BtfTracePoint,
    },
    Btf, Ebpf, EbpfLoader,
};
use profiler_common::{
    Counter, SampleEvent, ThreadTimes, COUNTERS_MAP, EVENTS_MAP, EXITS_MAP, GLOBAL_FILTER_BY_COMM, GLOBAL_FILTER_COMM,
    GLOBAL_FILTER_PIDS, GLOBAL_TASK_PID_OFFSET, GLOBAL_TASK_TGID_OFFSET, MAX_PID_FILTER, PID_FILTER_MAP, TASK_COMM_LEN,
    THREADS_MAP,
};

use crate::{Error, Result};

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
    /// Byte offsets of task_struct.pid and .tgid in this kernel.
    pub task_offsets: TaskOffsets,
}

/// Kernel struct layout the scheduler programs need, read from BTF.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskOffsets {
    pub pid: u32,
    pub tgid: u32,
}

impl TaskOffsets {
    pub fn from_btf(btf: &crate::kernel_btf::KernelBtf) -> Result<Self> {
        let off = |member: &str| btf.member_offset("task_struct", member).map_err(|e| Error::Load(e.to_string()));
        Ok(Self { pid: off("pid")?, tgid: off("tgid")? })
    }
}

/// Loaded and attached programs; dropping it detaches everything.
pub struct Loaded {
    ebpf: Ebpf,
    pub cpus: Vec<u32>,
}

/// Ring buffer size: about two seconds of samples at full rate on every
/// CPU, so that a stalled reader loses nothing for a while, bounded to
/// 1..=64 MiB and a power of two as the kernel requires.
pub fn ring_buffer_bytes(frequency_hz: u64, cpus: usize) -> u32 {
    let per_second = frequency_hz.saturating_mul(cpus as u64).saturating_mul(size_of::<SampleEvent>() as u64 + 8);
    let want = per_second.saturating_mul(2).clamp(1 << 20, 64 << 20);
    want.next_power_of_two().min(64 << 20) as u32
}

impl Loaded {
    /// `btf`: kernel BTF read from a file given with --btf; `None` keeps
    /// the loader's own parse of /sys/kernel/btf/vmlinux.
    pub fn load(btf: Option<&Btf>, config: &SamplingConfig) -> Result<Self> {
        let cpus = aya::util::online_cpus().map_err(|(what, e)| Error::Load(format!("{what}: {e}")))?;
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
            .override_global(GLOBAL_TASK_PID_OFFSET, &config.task_offsets.pid, true)
            .override_global(GLOBAL_TASK_TGID_OFFSET, &config.task_offsets.tgid, true)
            .map_max_entries(EVENTS_MAP, ring_buffer_bytes(config.frequency_hz, cpus.len()))
            .load(OBJECT)
            .map_err(|e| Error::load(&e))?;
        let mut loaded = Self { ebpf, cpus };
        loaded.fill_pid_filter(&config.pids)?;
        if config.off_cpu {
            loaded.attach_scheduler_hooks(btf)?;
        }
        loaded.attach_sampler(config.frequency_hz)?;
        Ok(loaded)
    }

    fn fill_pid_filter(&mut self, pids: &[u32]) -> Result<()> {
        let map =
            self.ebpf.map_mut(PID_FILTER_MAP).ok_or_else(|| Error::Load(format!("map {PID_FILTER_MAP} missing")))?;
        let mut filter: HashMap<_, u32, u8> = HashMap::try_from(map).map_err(|e| Error::load(&e))?;
        for pid in pids {
            filter.insert(pid, 1, 0).map_err(|e| Error::load(&e))?;
        }
        Ok(())
    }

    fn attach_sampler(&mut self, frequency_hz: u64) -> Result<()> {
        let prog: &mut PerfEvent = self
            .ebpf
            .program_mut("on_cpu_sample")
            .ok_or_else(|| Error::Load("program on_cpu_sample missing from the object".into()))?
            .try_into()
            .map_err(|e| Error::load(&e))?;
        prog.load().map_err(|e| Error::load(&e))?;
        for &cpu in &self.cpus {
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

    fn attach_scheduler_hooks(&mut self, btf: Option<&Btf>) -> Result<()> {
        let owned;
        let btf = match btf {
            Some(btf) => btf,
            None => {
                owned = Btf::from_sys_fs().map_err(|e| Error::load(&e))?;
                &owned
            }
        };
        for (program, tracepoint) in [
            ("sched_switch", "sched_switch"),
            ("sched_wakeup", "sched_wakeup"),
            ("sched_wakeup_new", "sched_wakeup_new"),
        ] {
            let prog: &mut BtfTracePoint = self
                .ebpf
                .program_mut(program)
                .ok_or_else(|| Error::Load(format!("program {program} missing from the object")))?
                .try_into()
                .map_err(|e| Error::load(&e))?;
            prog.load(tracepoint, btf)
                .map_err(|e| Error::Hook { hook: tracepoint.into(), reason: crate::error::format_chain(&e) })?;
            prog.attach()
                .map_err(|e| Error::Hook { hook: tracepoint.into(), reason: crate::error::format_chain(&e) })?;
        }
        Ok(())
    }

    /// Take the exited-thread ring buffer out of the object.
    pub fn take_exits(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map(EXITS_MAP).ok_or_else(|| Error::Load(format!("map {EXITS_MAP} missing")))?;
        RingBuf::try_from(map).map_err(|e| Error::load(&e))
    }

    /// The thread map, for seeding and for the final read.
    pub fn threads(&mut self) -> Result<HashMap<&mut MapData, u32, ThreadTimes>> {
        let map = self.ebpf.map_mut(THREADS_MAP).ok_or_else(|| Error::Load(format!("map {THREADS_MAP} missing")))?;
        HashMap::try_from(map).map_err(|e| Error::load(&e))
    }

    /// Take the sample ring buffer out of the object, for the reader task.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map(EVENTS_MAP).ok_or_else(|| Error::Load(format!("map {EVENTS_MAP} missing")))?;
        RingBuf::try_from(map).map_err(|e| Error::load(&e))
    }

    /// Sum of a counter over all CPUs.
    pub fn counter(&self, counter: Counter) -> Result<u64> {
        let map = self.ebpf.map(COUNTERS_MAP).ok_or_else(|| Error::Read(format!("map {COUNTERS_MAP} missing")))?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(|e| Error::Read(e.to_string()))?;
        let values = counters.get(&(counter as u32), 0).map_err(|e| Error::Read(e.to_string()))?;
        Ok(values.iter().sum())
    }
}
