//! Noise from on-CPU samples, for the continuous tier: no program runs on
//! an interrupt, softirq or context-switch path; instead the cpu-clock
//! sampler's kernel stacks say which samples landed in interrupt context,
//! and which ran a kernel thread.
//!
//! Each sample is classified as it arrives (its kernel frames named once
//! per address, see [`KernelSymbols`]), innermost frame first: the first
//! frame that marks a context decides it. A softirq (`handle_softirqs`,
//! `__do_softirq`, also inside `ksoftirqd`) is named by its action, the
//! function the dispatcher called (`net_rx_action` → `NET_RX`); a hard
//! interrupt vector by its `sysvec_*` entry (`LOC`, `RES`, `CAL`, …, as the
//! rows of /proc/interrupts); a device interrupt (`common_interrupt`,
//! `handle_irq_event`, …) by its handler function, since the IRQ number
//! is not on the stack; an NMI by its entry. A sample with none of them
//! that ran a kernel thread (`PF_KTHREAD`, from /proc/TID/stat when its
//! thread is first seen) is that thread's noise, by name; any other sample
//! is the workload's.
//!
//! A sample in the dispatcher itself is named by it (`handle_softirqs`):
//! it enables interrupts before each round of actions, and a sampler tick
//! held back while interrupts were off is taken right there.
//!
//! A sample stands for one sampling period: the estimated time of a
//! source is its samples × the period, with a 95% Wilson interval over the
//! sampler's periods in the window (see [`Estimate`]).
//!
//! Two blind spots, reported with every estimate: hard IRQ and NMI
//! handlers run with interrupts off, where the cpu-clock sampler (itself
//! an hrtimer interrupt) cannot land, so their samples are nearly always
//! zero; and the sampling program drops samples of the idle task unread,
//! so interrupt work done on an idle CPU is not sampled either.

use std::collections::BTreeMap;

use profiler_common::{SampleEvent, TASK_COMM_LEN};
use rustc_hash::FxHashMap;

use super::report::SourceKind;
use crate::{model::text::comm_string, symbolize::KernelSymbols};

/// Where a sample landed, from its kernel stack.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    /// A softirq: its /proc/softirqs name (`NET_RX`), or the function the
    /// dispatcher was in when the action is not a known one.
    Softirq(String),
    /// An interrupt vector by its /proc/interrupts row (`LOC`), or by its
    /// `sysvec_` entry's name when it has no known row.
    Vector(String),
    /// A device interrupt, by its handler function (`vring_interrupt`), or
    /// the innermost interrupt frame when the handler is not on the stack.
    Irq(String),
    Nmi,
    /// None of them: the running task's own work.
    Task,
}

/// Functions that dispatch softirqs; the frame they called is the action.
const SOFTIRQ_DISPATCH: [&str; 2] = ["handle_softirqs", "__do_softirq"];

/// Softirq actions and the /proc/softirqs rows they run for.
const SOFTIRQ_ACTIONS: [(&str, &str); 11] = [
    ("tasklet_hi_action", "HI"),
    ("run_timer_softirq", "TIMER"),
    ("net_tx_action", "NET_TX"),
    ("net_rx_action", "NET_RX"),
    ("blk_done_softirq", "BLOCK"),
    ("irq_poll_softirq", "IRQ_POLL"),
    ("tasklet_action", "TASKLET"),
    ("sched_balance_softirq", "SCHED"),
    ("run_rebalance_domains", "SCHED"),
    ("hrtimer_run_softirq", "HRTIMER"),
    ("rcu_core_si", "RCU"),
];

/// x86 system vectors (`sysvec_NAME`, `__sysvec_NAME`, `asm_sysvec_NAME`)
/// and their /proc/interrupts rows.
const VECTORS: [(&str, &str); 14] = [
    ("apic_timer_interrupt", "LOC"),
    ("reschedule_ipi", "RES"),
    ("call_function", "CAL"),
    ("call_function_single", "CAL"),
    ("irq_work", "IWI"),
    ("x86_platform_ipi", "PLT"),
    ("thermal", "TRM"),
    ("spurious_apic_interrupt", "SPU"),
    ("error_interrupt", "ERR"),
    ("threshold", "THR"),
    ("deferred_error", "DFR"),
    ("hyperv_callback", "HYP"),
    ("xen_hvm_callback", "HYP"),
    ("kvm_posted_intr_ipi", "PIN"),
];

/// Frames of a device interrupt's path, innermost first as they appear.
const DEVICE_IRQ: [&str; 14] = [
    "__handle_irq_event_percpu",
    "handle_irq_event_percpu",
    "handle_irq_event",
    "handle_edge_irq",
    "handle_fasteoi_irq",
    "handle_level_irq",
    "handle_percpu_irq",
    "handle_percpu_devid_irq",
    "handle_irq_desc",
    "generic_handle_irq",
    "generic_handle_domain_irq",
    "__common_interrupt",
    "common_interrupt",
    "asm_common_interrupt",
];

/// The frame that calls a device interrupt's handler.
const IRQ_HANDLER_CALLER: &str = "__handle_irq_event_percpu";

/// Other architectures' interrupt entries (no vector or handler to name).
const OTHER_IRQ_ENTRY: [&str; 4] = ["gic_handle_irq", "el1_interrupt", "el0_interrupt", "handle_arch_irq"];

/// NMI entries.
const NMI: [&str; 5] = ["asm_exc_nmi", "exc_nmi", "default_do_nmi", "nmi_handle", "do_nmi"];

/// The vector of a `sysvec_*` frame name, if it is one.
fn vector_of(frame: &str) -> Option<String> {
    let rest = frame
        .strip_prefix("asm_sysvec_")
        .or_else(|| frame.strip_prefix("__sysvec_"))
        .or_else(|| frame.strip_prefix("sysvec_"))?;
    Some(VECTORS.iter().find(|(name, _)| *name == rest).map_or_else(|| rest.to_owned(), |(_, row)| (*row).to_owned()))
}

/// A function's name without the `__pfx_` of the padding before it: an
/// indirect call enters there on kernels with FineIBT or call-depth
/// tracking, so a sample can land in `__pfx_net_rx_action`.
fn function(frame: &str) -> &str {
    frame.strip_prefix("__pfx_").unwrap_or(frame)
}

/// The context of a symbolized kernel stack, innermost frame first.
pub fn classify(frames: &[&str]) -> Context {
    let frames: Vec<&str> = frames.iter().map(|f| function(f)).collect();
    for (i, &frame) in frames.iter().enumerate() {
        if SOFTIRQ_DISPATCH.contains(&frame) {
            // The action is the frame the dispatcher called; a sample in
            // the dispatcher itself has none.
            let inner = &frames[..i];
            let known = inner.iter().rev().find_map(|f| SOFTIRQ_ACTIONS.iter().find(|(a, _)| a == f));
            return Context::Softirq(match (known, inner.last()) {
                (Some((_, row)), _) => (*row).to_owned(),
                (None, Some(called)) => (*called).to_owned(),
                (None, None) => frame.to_owned(),
            });
        }
        if let Some(vector) = vector_of(frame) {
            return Context::Vector(vector);
        }
        if DEVICE_IRQ.contains(&frame) || OTHER_IRQ_ENTRY.contains(&frame) {
            let caller = frames[i..].iter().position(|f| *f == IRQ_HANDLER_CALLER).map(|p| p + i);
            let handler = match caller {
                Some(c) if c > 0 => frames[c - 1],
                _ => frame,
            };
            return Context::Irq(handler.to_owned());
        }
        if NMI.contains(&frame) {
            return Context::Nmi;
        }
    }
    Context::Task
}

/// A noise source as the samples see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct SampledSource {
    pub kind: SourceKind,
    /// Softirq or vector row, handler function, kernel thread name; "" for NMIs.
    pub name: String,
}

impl SampledSource {
    /// `"softirq NET_RX"`, `"vector LOC"`, `"irq vring_interrupt"`,
    /// `"thread kworker/0:1"`, `"nmi"`.
    pub fn label(&self) -> String {
        match self.kind {
            SourceKind::Nmi => "nmi".into(),
            kind => format!("{} {}", kind.as_str(), self.name),
        }
    }
}

/// Samples one CPU delivered in the window: records kept by the sampling
/// program, and the periods they stand for (each stands for 2^level when
/// the cost governor keeps one in 2^level).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivered {
    pub kept: u64,
    pub weighted: u64,
}

/// What the samples of one window gave (stored in the agent's segments).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SampledRaw {
    /// The sampling period: the cpu-clock event turns `--frequency` into a
    /// fixed period of 1e9 / frequency ns.
    pub frequency_hz: u64,
    pub period_ns: u64,
    /// Per CPU, per noise source: samples (weighted).
    #[serde(with = "source_entries")]
    pub sources: BTreeMap<u32, BTreeMap<SampledSource, u64>>,
    /// Per CPU: every non-idle sample in the window, noise or not.
    pub delivered: BTreeMap<u32, Delivered>,
    /// Samples of the idle task, dropped by the program before their stacks
    /// were read (since the programs were loaded).
    pub idle_samples: u64,
    /// Samples the ring buffer had no room for.
    pub lost_samples: u64,
    /// Samples in the window whose thread could not be told kernel or user
    /// (gone before /proc/TID/stat was read): judged by their empty user stack.
    pub threads_guessed: u64,
    /// Kernel frame names dropped when the bounded name cache filled
    /// (`symbolize::MAX_KERNEL_NAMES`); they were looked up again.
    pub kernel_names_evicted: u64,
    /// Set when the sampler saw only selected threads (`record --pid`, …):
    /// the estimates then cover only the noise that hit those threads.
    pub restricted_to: Option<String>,
}

/// Per CPU, per source samples as a list of entries (JSON keys are strings).
mod source_entries {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::SampledSource;

    #[derive(Serialize, Deserialize)]
    struct Entry {
        cpu: u32,
        source: SampledSource,
        samples: u64,
    }

    pub fn serialize<S: Serializer>(m: &BTreeMap<u32, BTreeMap<SampledSource, u64>>, s: S) -> Result<S::Ok, S::Error> {
        let entries: Vec<Entry> = m
            .iter()
            .flat_map(|(cpu, sources)| {
                sources.iter().map(|(source, n)| Entry { cpu: *cpu, source: source.clone(), samples: *n })
            })
            .collect();
        entries.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u32, BTreeMap<SampledSource, u64>>, D::Error> {
        let mut m: BTreeMap<u32, BTreeMap<SampledSource, u64>> = BTreeMap::new();
        for e in Vec::<Entry>::deserialize(d)? {
            *m.entry(e.cpu).or_default().entry(e.source).or_default() += e.samples;
        }
        Ok(m)
    }
}

/// Most samples waiting to be classified (each ~200 bytes with its stack).
const MAX_PENDING: usize = 4096;

/// A sample waiting for its kernel frames to be named.
struct Pending {
    cpu: u32,
    weight: u64,
    kthread: bool,
    comm: [u8; TASK_COMM_LEN],
    kstack: Box<[u64]>,
}

/// Collects classified samples over a window, as they are drained.
pub struct NoiseSampler {
    frequency_hz: u64,
    window: std::ops::Range<u64>,
    /// Samples since the last [`flush`](Self::flush).
    pending: Vec<Pending>,
    /// tid → kernel thread (`PF_KTHREAD`), read once per thread.
    kthreads: FxHashMap<u32, bool>,
    raw: SampledRaw,
}

impl NoiseSampler {
    /// A sampler for samples taken at `frequency_hz` from `start_ns` on
    /// (CLOCK_MONOTONIC, the clock of the samples' stamps).
    pub fn new(frequency_hz: u64, start_ns: u64) -> Self {
        let frequency_hz = frequency_hz.max(1);
        Self {
            frequency_hz,
            window: start_ns..u64::MAX,
            pending: Vec::new(),
            kthreads: FxHashMap::default(),
            raw: SampledRaw { frequency_hz, period_ns: 1_000_000_000 / frequency_hz, ..SampledRaw::default() },
        }
    }

    /// Move the window's start (samples before it are not counted).
    pub fn set_start(&mut self, ns: u64) {
        self.window.start = ns;
    }

    /// Close the window: samples stamped after `ns` are not counted.
    pub fn set_end(&mut self, ns: u64) {
        self.window.end = ns;
    }

    /// Take one sample (its kernel stack is named at the next flush).
    pub fn add(&mut self, event: &SampleEvent) {
        if !self.window.contains(&event.ts_ns) {
            return;
        }
        let weight = u64::from(event.weight.max(1));
        let d = self.raw.delivered.entry(event.cpu).or_default();
        d.kept += 1;
        d.weighted += weight;
        let kthread = match self.kthreads.get(&event.tid) {
            Some(&k) => k,
            None => match kernel_thread(event.tid) {
                Some(k) => {
                    self.kthreads.insert(event.tid, k);
                    k
                }
                None => {
                    // Gone already: kernel threads have no user stack.
                    self.raw.threads_guessed += weight;
                    event.user_frames().is_empty()
                }
            },
        };
        let (cpu, comm, kstack) = (event.cpu, event.comm, event.kernel_frames().into());
        self.pending.push(Pending { cpu, weight, kthread, comm, kstack });
    }

    /// A thread exited or a pid may be reused: judge it anew when seen.
    pub fn forget(&mut self, tid: u32) {
        self.kthreads.remove(&tid);
    }

    /// Classify the pending samples once there are [`MAX_PENDING`] of
    /// them (naming new kernel addresses reads kallsyms: once per window,
    /// or per this many samples, not per drain of the ring).
    pub fn flush_if_many(&mut self, symbols: &mut KernelSymbols) {
        if self.pending.len() >= MAX_PENDING {
            self.flush(symbols);
        }
    }

    /// Name the pending samples' kernel frames and classify them.
    pub fn flush(&mut self, symbols: &mut KernelSymbols) {
        if self.pending.is_empty() {
            return;
        }
        symbols.resolve(self.pending.iter().map(|p| &*p.kstack));
        for Pending { cpu, weight, kthread, comm, kstack } in std::mem::take(&mut self.pending) {
            let frames = symbols.frames(&kstack);
            let source = match classify(&frames) {
                Context::Softirq(name) => SampledSource { kind: SourceKind::Softirq, name },
                Context::Vector(name) => SampledSource { kind: SourceKind::Vector, name },
                Context::Irq(name) => SampledSource { kind: SourceKind::Irq, name },
                Context::Nmi => SampledSource { kind: SourceKind::Nmi, name: String::new() },
                Context::Task if kthread => SampledSource { kind: SourceKind::Thread, name: comm_string(&comm) },
                Context::Task => continue,
            };
            *self.raw.sources.entry(cpu).or_default().entry(source).or_default() += weight;
        }
    }

    /// End this window at `end_ns` (every sample stamped up to it has been
    /// added) and start the next there. The sampling program's counts over
    /// the window (idle and lost samples) are for the caller to fill in.
    pub fn cut(&mut self, end_ns: u64, symbols: &mut KernelSymbols) -> SampledRaw {
        self.flush(symbols);
        let next =
            SampledRaw { frequency_hz: self.frequency_hz, period_ns: self.raw.period_ns, ..SampledRaw::default() };
        let mut raw = std::mem::replace(&mut self.raw, next);
        raw.kernel_names_evicted = symbols.evicted;
        self.window = end_ns..u64::MAX;
        raw
    }

    /// Between windows: forget what is known of threads no longer alive.
    pub fn evict(&mut self, live: &rustc_hash::FxHashSet<u32>) -> u64 {
        let before = self.kthreads.len();
        self.kthreads.retain(|tid, _| live.contains(tid));
        (before - self.kthreads.len()) as u64
    }

    /// What the window's samples gave; `idle` and `lost` are the sampling
    /// program's counters.
    pub fn finish(mut self, idle_samples: u64, lost_samples: u64, symbols: &mut KernelSymbols) -> SampledRaw {
        self.flush(symbols);
        self.raw.idle_samples = idle_samples;
        self.raw.lost_samples = lost_samples;
        self.raw.kernel_names_evicted = symbols.evicted;
        tracing::debug!(frequency_hz = self.frequency_hz, cpus = self.raw.delivered.len(), "noise samples classified");
        self.raw
    }
}

/// Whether thread `tid` is a kernel thread, from the `PF_KTHREAD` flag of
/// /proc/TID/stat; `None` when it cannot be read (the thread is gone).
fn kernel_thread(tid: u32) -> Option<bool> {
    let process = procfs::process::Process::new(i32::try_from(tid).ok()?).ok()?;
    let stat = process.stat().ok()?;
    Some(stat.flags & profiler_common::PF_KTHREAD != 0)
}

/// An estimated time from samples: `samples` × the period, with the 95%
/// interval of a binomial proportion over the sampler's periods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Estimate {
    /// Samples (weighted: each stands for 2^level under the cost governor).
    pub samples: u64,
    /// samples × sampling period.
    pub ns: u64,
    /// 95% Wilson score interval of the time, [low, high].
    pub ci95_ns: [u64; 2],
}

impl Estimate {
    /// `samples` of `periods` sampler periods of `period_ns`; `effective`
    /// is how many unweighted samples the periods are worth (fewer than
    /// `periods` when the governor kept one sample in 2^level).
    pub fn new(samples: u64, periods: u64, effective: f64, period_ns: u64) -> Self {
        let (lo, hi) = wilson95(samples, periods, effective);
        let span = periods as f64 * period_ns as f64;
        Self {
            samples,
            ns: samples.saturating_mul(period_ns),
            ci95_ns: [(lo * span).round() as u64, (hi * span).round() as u64],
        }
    }
}

/// The 95% Wilson score interval of a proportion `k / n` measured with
/// the certainty of `effective` independent trials (n unless weighted).
/// Unlike the normal approximation it is not empty at k = 0 or k = n.
pub fn wilson95(k: u64, n: u64, effective: f64) -> (f64, f64) {
    if n == 0 || effective <= 0.0 {
        return (0.0, 1.0);
    }
    const Z: f64 = 1.959_963_984_540_054;
    let p = (k as f64 / n as f64).min(1.0);
    let m = effective;
    let z2 = Z * Z;
    let denom = 1.0 + z2 / m;
    let center = (p + z2 / (2.0 * m)) / denom;
    let half = Z * (p * (1.0 - p) / m + z2 / (4.0 * m * m)).sqrt() / denom;
    // Exactly 0 and 1 at the ends, where rounding would leave a hair.
    let lo = if k == 0 { 0.0 } else { (center - half).max(0.0) };
    let hi = if k >= n { 1.0 } else { (center + half).min(1.0) };
    (lo, hi)
}

/// Sampler periods in a window of `duration_ns`, and what they are worth
/// as independent samples given the CPU's delivered samples (the governor
/// keeps one in 2^level: `kept` records stand for `weighted` periods).
pub fn periods(duration_ns: u64, period_ns: u64, delivered: Delivered) -> (u64, f64) {
    let n = duration_ns / period_ns.max(1);
    let effective = match delivered.weighted {
        0 => n as f64,
        w => n as f64 * delivered.kept as f64 / w as f64,
    };
    (n, effective)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(frames: &[&str]) -> Context {
        classify(frames)
    }

    #[test]
    fn softirqs_are_named_by_their_action() {
        // A loopback send: the softirq runs at local_bh_enable in the sender.
        let send = [
            "__netif_receive_skb_one_core",
            "process_backlog",
            "__napi_poll",
            "net_rx_action",
            "handle_softirqs",
            "do_softirq",
            "__local_bh_enable_ip",
            "__dev_queue_xmit",
            "ip_finish_output2",
            "udp_send_skb",
            "__x64_sys_sendto",
            "do_syscall_64",
            "entry_SYSCALL_64_after_hwframe",
        ];
        assert_eq!(c(&send), Context::Softirq("NET_RX".into()));
        // On interrupt exit: the softirq is inside a timer interrupt's frames.
        let on_exit = [
            "rcu_core",
            "rcu_core_si",
            "handle_softirqs",
            "__irq_exit_rcu",
            "irq_exit_rcu",
            "sysvec_apic_timer_interrupt",
            "asm_sysvec_apic_timer_interrupt",
            "finish_task_switch",
        ];
        assert_eq!(c(&on_exit), Context::Softirq("RCU".into()));
        let ksoftirqd = ["blk_mq_complete_request", "blk_done_softirq", "__do_softirq", "run_ksoftirqd", "kthread"];
        assert_eq!(c(&ksoftirqd), Context::Softirq("BLOCK".into()));
        assert_eq!(c(&["sched_balance_softirq", "handle_softirqs"]), Context::Softirq("SCHED".into()));
        assert_eq!(c(&["run_rebalance_domains", "__do_softirq"]), Context::Softirq("SCHED".into()));
        // Not inside an action: named by the function the dispatcher called.
        assert_eq!(
            c(&["rcu_softirq_qs", "handle_softirqs", "irq_exit_rcu"]),
            Context::Softirq("rcu_softirq_qs".into())
        );
        assert_eq!(c(&["handle_softirqs", "run_ksoftirqd"]), Context::Softirq("handle_softirqs".into()));
        // The padding an indirect call enters through (FineIBT) is its function's.
        assert_eq!(c(&["__pfx_net_rx_action", "handle_softirqs"]), Context::Softirq("NET_RX".into()));
        assert_eq!(c(&["__pfx_vring_interrupt", "__handle_irq_event_percpu"]), Context::Irq("vring_interrupt".into()));
    }

    #[test]
    fn hard_interrupts_by_vector_or_handler() {
        let timer = ["hrtimer_interrupt", "__sysvec_apic_timer_interrupt", "sysvec_apic_timer_interrupt"];
        assert_eq!(c(&timer), Context::Vector("LOC".into()));
        assert_eq!(c(&["asm_sysvec_reschedule_ipi"]), Context::Vector("RES".into()));
        assert_eq!(c(&["x", "__sysvec_call_function_single"]), Context::Vector("CAL".into()));
        assert_eq!(c(&["sysvec_kvm_asyncpf_interrupt"]), Context::Vector("kvm_asyncpf_interrupt".into()));
        let device = [
            "vring_interrupt",
            "__handle_irq_event_percpu",
            "handle_irq_event",
            "handle_edge_irq",
            "__common_interrupt",
            "common_interrupt",
            "asm_common_interrupt",
            "default_idle",
        ];
        assert_eq!(c(&device), Context::Irq("vring_interrupt".into()));
        assert_eq!(c(&["handle_edge_irq", "common_interrupt"]), Context::Irq("handle_edge_irq".into()));
        // An interrupt inside a softirq is the interrupt's.
        let nested =
            ["vring_interrupt", "__handle_irq_event_percpu", "common_interrupt", "net_rx_action", "handle_softirqs"];
        assert_eq!(c(&nested), Context::Irq("vring_interrupt".into()));
        assert_eq!(c(&["perf_event_nmi_handler", "nmi_handle", "default_do_nmi", "exc_nmi"]), Context::Nmi);
    }

    #[test]
    fn task_context_has_no_interrupt_frame() {
        assert_eq!(c(&[]), Context::Task);
        assert_eq!(c(&["[unknown]"]), Context::Task);
        assert_eq!(c(&["worker_thread", "kthread", "ret_from_fork"]), Context::Task);
        // irq_exit alone (no dispatcher, no entry named) is not a context.
        assert_eq!(c(&["copy_user_generic", "_copy_to_iter", "__x64_sys_read"]), Context::Task);
    }

    #[test]
    fn wilson_interval_brackets_the_share_and_is_never_empty() {
        let (lo, hi) = wilson95(0, 400, 400.0);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.005 && hi < 0.02, "{hi}");
        let (lo, hi) = wilson95(400, 400, 400.0);
        assert!(lo > 0.98 && lo < 0.995 && hi == 1.0, "{lo} {hi}");
        let (lo, hi) = wilson95(100, 400, 400.0);
        assert!(lo < 0.25 && hi > 0.25);
        // Known value: 100 of 400 → [0.2098, 0.2948].
        assert!((lo - 0.2098).abs() < 5e-4 && (hi - 0.2948).abs() < 5e-4, "{lo} {hi}");
        // Fewer effective samples: wider.
        let (lo2, hi2) = wilson95(100, 400, 100.0);
        assert!(lo2 < lo && hi2 > hi);
        assert_eq!(wilson95(3, 0, 0.0), (0.0, 1.0));
    }

    #[test]
    fn estimates_are_samples_times_the_period() {
        let period = 10_101_010;
        let (n, eff) = periods(4_000_000_000, period, Delivered { kept: 300, weighted: 300 });
        assert_eq!((n, eff), (396, 396.0));
        let e = Estimate::new(100, n, eff, period);
        assert_eq!(e.ns, 1_010_101_000);
        assert!(e.ci95_ns[0] < e.ns && e.ns < e.ci95_ns[1]);
        assert!(e.ci95_ns[1] <= n * period);
        // The governor kept one sample in 4: a quarter of the certainty.
        let (_, eff) = periods(4_000_000_000, period, Delivered { kept: 75, weighted: 300 });
        assert!((eff - 99.0).abs() < 1e-9);
        let wide = Estimate::new(100, n, eff, period);
        assert!(wide.ci95_ns[0] < e.ci95_ns[0] && wide.ci95_ns[1] > e.ci95_ns[1]);
        assert_eq!(Estimate::new(0, n, n as f64, period).ci95_ns[0], 0);
    }

    fn event(cpu: u32, tid: u32, ts_ns: u64, kstack: &[u64]) -> SampleEvent {
        // SAFETY: plain old data; zeros are valid.
        let mut e: SampleEvent = unsafe { std::mem::zeroed() };
        e.cpu = cpu;
        e.tid = tid;
        e.pid = tid;
        e.ts_ns = ts_ns;
        e.weight = 1;
        e.kstack[..kstack.len()].copy_from_slice(kstack);
        e.kstack_len = kstack.len() as u32;
        e
    }

    #[test]
    fn the_window_bounds_what_is_counted() {
        // This test's own thread: a user thread, not noise.
        let me = unsafe { libc::gettid() } as u32;
        let mut s = NoiseSampler::new(99, 1_000);
        s.add(&event(0, me, 999, &[]));
        s.add(&event(0, me, 1_000, &[]));
        s.add(&event(1, me, 1_500, &[]));
        s.set_end(2_000);
        s.add(&event(1, me, 2_000, &[]));
        let raw = s.finish(7, 1, &mut crate::symbolize::KernelSymbols::new());
        assert_eq!(raw.delivered[&0], Delivered { kept: 1, weighted: 1 });
        assert_eq!(raw.delivered[&1], Delivered { kept: 1, weighted: 1 });
        assert!(raw.sources.is_empty(), "user-thread task samples are not noise: {:?}", raw.sources);
        assert_eq!((raw.idle_samples, raw.lost_samples, raw.period_ns), (7, 1, 10_101_010));
    }

    #[test]
    fn kernel_threads_are_told_by_their_flag() {
        // kthreadd is pid 2 on every Linux system; we are a user thread.
        assert_eq!(kernel_thread(2), Some(true));
        assert_eq!(kernel_thread(std::process::id()), Some(false));
        assert_eq!(kernel_thread(u32::MAX), None);
    }
}
