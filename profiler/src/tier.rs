//! What a capture hangs in the kernel (`--tier`; its command-line values
//! are in cli/).

/// How thread states are tracked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Cheap enough to leave on: on-CPU sampling, fork/exec events and
    /// task-iterator snapshots that read the kernel's cumulative per-thread
    /// counters. Nothing on the context-switch, wake-up or syscall path.
    /// Exact on-CPU and run-queue time per thread; sleeping, disk and other
    /// time and off-CPU stacks are sampled.
    Continuous,
    /// Scheduler, syscall and interrupt hooks: exact off-CPU time by stack
    /// and waker, latency histograms and exact noise per source, at a cost
    /// on every context switch. For bounded captures.
    #[default]
    Deep,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Self::Continuous => "continuous",
            Self::Deep => "deep",
        }
    }

    /// What this tier cannot show, one line each, for the text report.
    pub fn cannot_show(self) -> &'static [&'static str] {
        match self {
            Self::Continuous => &[
                "sleeping, disk and other time are split by sampled thread states (their 95% confidence half-widths: counters.sampled_ci95_ns in summary.json)",
                "off-CPU stacks are sampled: each snapshot sighting weighs its share of the thread's exact or estimated state time",
                "no wakers, no latency histograms (histograms.json says absent), no exact noise per source: noise.json has procfs times and counts and per-source estimates from samples (run with --tier deep for those)",
            ],
            Self::Deep => &[],
        }
    }

    /// What this tier's noise report cannot show, one line each (noise.json
    /// `cannot_show` and the text report).
    pub fn noise_cannot_show(self) -> &'static [&'static str] {
        match self {
            Self::Continuous => &[
                "exact own time per source (IRQ line, vector, softirq vector, kernel thread): per-source time is estimated from on-CPU samples",
                "exact hard IRQ and NMI time: their handlers run with interrupts off, where the sampler cannot land; /proc/stat has hard IRQ time only with CONFIG_IRQ_TIME_ACCOUNTING",
                "the longest single event per source and per CPU (max_ns, max_single_ns): no event's start or end is seen",
                "latency histograms (run queue, off-CPU, syscalls, handler own time) and --slo misery counts: histograms.json says absent",
                "victims' time lost to interrupts and waits behind other threads (the --pid victim view)",
                "events the tracepoints missed (missed_by_hooks): there are no hooks; counts come from procfs itself",
            ],
            Self::Deep => &[],
        }
    }
}
