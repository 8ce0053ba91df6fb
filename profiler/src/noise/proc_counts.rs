//! What procfs counts about interrupts and the time they take: IRQ names
//! and per-CPU counts from /proc/interrupts, softirq counts from
//! /proc/softirqs, and per-CPU hard IRQ, softirq and hypervisor steal time
//! from /proc/stat.
//!
//! The files are parsed here rather than with the procfs crate: procfs
//! 0.18 does not parse /proc/interrupts or /proc/softirqs, and its
//! `KernelStats::cpu_time` drops the CPU numbers of /proc/stat, which
//! lists online CPUs only, so with a CPU offline its positions are not
//! CPU numbers. Only `procfs::ticks_per_second` (`sysconf(_SC_CLK_TCK)`)
//! is used, to turn /proc/stat's USER_HZ ticks into ns.
//!
//! Every reader returns an empty map when its file cannot be read (no
//! procfs, a kernel without the file): names and steal are then unknown,
//! not wrong.

use std::collections::BTreeMap;

const INTERRUPTS: &str = "/proc/interrupts";
const SOFTIRQS: &str = "/proc/softirqs";
const STAT: &str = "/proc/stat";

/// IRQ number → action name(s) of the numbered rows of /proc/interrupts
/// (`"virtio1-req.0"`, or `"PCIe PME, aerdrv"` for a shared line).
pub fn irq_names() -> BTreeMap<u32, String> {
    parse_irq_names(&read(INTERRUPTS))
}

/// The time columns of one `cpuN` row of /proc/stat that noise is made
/// of, in ns: hard IRQ (`irq`), softirq and hypervisor steal. Cumulative
/// since boot in a read, the growth over a window in a [`times_delta`].
///
/// The kernel keeps them in ns and prints USER_HZ ticks (10 ms at the
/// usual 100), so every value is a multiple of the tick. Without
/// `CONFIG_IRQ_TIME_ACCOUNTING` the kernel charges each scheduler tick
/// wholly to the context it interrupted: `softirq` is then sampled at
/// `CONFIG_HZ` by the kernel itself, and `irq` stays 0 (the tick is itself
/// a hard IRQ and is not charged to one), see [`hardirq_accounting`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuTimes {
    pub irq_ns: u64,
    pub softirq_ns: u64,
    pub steal_ns: u64,
}

/// Cumulative hard IRQ, softirq and steal time per CPU (ns since boot)
/// from the `cpuN` rows of /proc/stat; take [`times_delta`] of two reads
/// for a window.
pub fn cpu_times() -> BTreeMap<u32, CpuTimes> {
    let hz = procfs::ticks_per_second();
    parse_cpu_ticks(&read(STAT))
        .into_iter()
        .map(|(cpu, t)| {
            (
                cpu,
                CpuTimes {
                    irq_ns: ticks_to_ns(t.irq_ns, hz),
                    softirq_ns: ticks_to_ns(t.softirq_ns, hz),
                    steal_ns: ticks_to_ns(t.steal_ns, hz),
                },
            )
        })
        .collect()
}

/// Growth of every CPU's times between two reads (a column that went
/// backwards, or a CPU missing from `before`, counts from zero).
pub fn times_delta(before: &BTreeMap<u32, CpuTimes>, after: &BTreeMap<u32, CpuTimes>) -> BTreeMap<u32, CpuTimes> {
    after
        .iter()
        .map(|(cpu, a)| {
            let b = before.get(cpu).copied().unwrap_or_default();
            let d = CpuTimes {
                irq_ns: a.irq_ns.saturating_sub(b.irq_ns),
                softirq_ns: a.softirq_ns.saturating_sub(b.softirq_ns),
                steal_ns: a.steal_ns.saturating_sub(b.steal_ns),
            };
            (*cpu, d)
        })
        .collect()
}

/// Whether /proc/stat's `irq` column holds hard IRQ time on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HardirqAccounting {
    /// Some CPU has hard IRQ time since boot: the column is kept
    /// (`CONFIG_IRQ_TIME_ACCOUNTING`), and so is softirq time, in ns.
    Accounted,
    /// The column is 0 on every CPU since boot while /proc/interrupts
    /// counted interrupts in the window: this kernel does not account
    /// hard IRQ time (no `CONFIG_IRQ_TIME_ACCOUNTING`); its softirq time
    /// is the kernel's tick-based charge.
    NotAccounted,
    /// The column is 0 everywhere and no interrupt was counted in the
    /// window either: nothing tells the two apart.
    Unknown,
}

impl HardirqAccounting {
    /// Judge from the cumulative times of a read (since boot) and the
    /// interrupts /proc/interrupts counted over the window.
    pub fn judge(since_boot: &BTreeMap<u32, CpuTimes>, interrupts_in_window: u64) -> Self {
        if since_boot.values().any(|t| t.irq_ns > 0) {
            Self::Accounted
        } else if interrupts_in_window > 0 {
            Self::NotAccounted
        } else {
            Self::Unknown
        }
    }
}

/// Per-row, per-CPU counts of /proc/interrupts: row name (`"36"`, `"LOC"`)
/// → CPU → count. Rows without a count per CPU (`ERR`, `MIS`) are left out.
pub fn interrupt_counts() -> BTreeMap<String, BTreeMap<u32, u64>> {
    parse_per_cpu_table(&read(INTERRUPTS))
}

/// Per-vector, per-CPU counts of /proc/softirqs: vector name (`"NET_RX"`)
/// → CPU → count.
pub fn softirq_counts() -> BTreeMap<String, BTreeMap<u32, u64>> {
    parse_per_cpu_table(&read(SOFTIRQS))
}

/// The difference `after - before` per CPU (counters that went backwards,
/// or CPUs missing from `before`, count from zero).
pub fn delta(before: &BTreeMap<u32, u64>, after: &BTreeMap<u32, u64>) -> BTreeMap<u32, u64> {
    after.iter().map(|(cpu, a)| (*cpu, a.saturating_sub(before.get(cpu).copied().unwrap_or(0)))).collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        tracing::debug!("cannot read {path}: {e}");
        String::new()
    })
}

/// USER_HZ ticks to ns, without overflow.
fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(hz.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The CPU numbers of a `CPU0 CPU1 …` header (offline CPUs have no column).
fn header_cpus(header: &str) -> Vec<u32> {
    header.split_whitespace().filter_map(|t| t.strip_prefix("CPU")?.parse().ok()).collect()
}

/// A row `NAME: c0 c1 … rest` as its name, its leading counts (at most
/// `columns`) and what follows them.
fn split_row(line: &str, columns: usize) -> Option<(&str, Vec<u64>, &str)> {
    let (name, mut rest) = line.split_once(':')?;
    let mut counts = Vec::with_capacity(columns);
    while counts.len() < columns {
        let trimmed = rest.trim_start();
        let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
        match trimmed[..end].parse::<u64>() {
            Ok(n) => counts.push(n),
            Err(_) => break,
        }
        rest = &trimmed[end..];
    }
    Some((name.trim(), counts, rest))
}

/// Row name → CPU → count of /proc/interrupts or /proc/softirqs text.
fn parse_per_cpu_table(text: &str) -> BTreeMap<String, BTreeMap<u32, u64>> {
    let mut lines = text.lines();
    let cpus = lines.next().map(header_cpus).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in lines {
        let Some((name, counts, _)) = split_row(line, cpus.len()) else { continue };
        if !name.is_empty() && counts.len() == cpus.len() {
            out.insert(name.to_owned(), cpus.iter().copied().zip(counts).collect());
        }
    }
    out
}

/// The action names of the numbered rows of /proc/interrupts text.
///
/// After the counts the kernel prints the chip, the hardware IRQ and flow
/// type, padded, then two spaces and the actions joined by `", "` (see
/// `show_interrupts` in kernel/irq/proc.c), so the names are what follows
/// the last run of two or more blanks. A row without an action leaves
/// only the hwirq-type (`5-edge`) or `Edge`/`Level` there and is skipped.
pub fn parse_irq_names(text: &str) -> BTreeMap<u32, String> {
    let mut lines = text.lines();
    let columns = lines.next().map(header_cpus).unwrap_or_default().len();
    let mut out = BTreeMap::new();
    for line in lines {
        let Some((name, _, rest)) = split_row(line, columns) else { continue };
        let Ok(irq) = name.parse::<u32>() else { continue };
        let rest = rest.trim();
        let actions = match rest.rfind("  ") {
            Some(i) => rest[i..].trim(),
            None => continue, // only a chip name: no action
        };
        if !actions.is_empty() && !is_flow_type(actions) {
            out.insert(irq, actions.to_owned());
        }
    }
    out
}

/// `5-edge`, `27-fasteoi`, `Edge`, `Level`: what ends a row without an action.
fn is_flow_type(s: &str) -> bool {
    if s == "Edge" || s == "Level" {
        return true;
    }
    match s.split_once('-') {
        Some((hwirq, flow)) => {
            !hwirq.is_empty()
                && hwirq.bytes().all(|b| b.is_ascii_digit())
                && !flow.is_empty()
                && flow.bytes().all(|b| b.is_ascii_lowercase())
        }
        None => false,
    }
}

/// CPU → (irq, softirq, steal) ticks of the `cpuN` rows of /proc/stat
/// text: the 6th, 7th and 8th values (`user nice system idle iowait irq
/// softirq steal …`). A row with fewer values (steal came with 2.6.11) or
/// a value that is not a number gives no entry.
fn parse_cpu_ticks(text: &str) -> BTreeMap<u32, CpuTimes> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields.next().and_then(|f| f.strip_prefix("cpu")).and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let values: Vec<u64> = fields.take(8).map_while(|f| f.parse().ok()).collect();
        if let [_, _, _, _, _, irq, softirq, steal] = values[..] {
            out.insert(cpu, CpuTimes { irq_ns: irq, softirq_ns: softirq, steal_ns: steal });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERRUPTS_TEXT: &str = "           CPU0       CPU1       
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
 28:          0          0 PCI-MSIX-0000:00:01.0   0-edge      virtio0-config
 36:          0    4205180 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 40:          7          0  IR-PCI-MSI 458752-edge      PCIe PME, aerdrv
 41:          0          0  IO-APIC   9-fasteoi
 42:          3          4     GICv3  27 Level     arch_timer
NMI:          0          0   Non-maskable interrupts
LOC:    4264785    4301763   Local timer interrupts
ERR:          0
";

    #[test]
    fn irq_names_are_the_action_column() {
        let names = parse_irq_names(INTERRUPTS_TEXT);
        assert_eq!(names.get(&24).map(String::as_str), Some("ACPI:Ged"));
        assert_eq!(names.get(&28).map(String::as_str), Some("virtio0-config"));
        assert_eq!(names.get(&36).map(String::as_str), Some("virtio1-req.0"));
        assert_eq!(names.get(&40).map(String::as_str), Some("PCIe PME, aerdrv"));
        assert_eq!(names.get(&41), None, "no action");
        assert_eq!(names.get(&42).map(String::as_str), Some("arch_timer"));
        assert_eq!(names.len(), 5, "named rows only: {names:?}");
    }

    #[test]
    fn per_cpu_counts_follow_the_header() {
        let text = "       CPU0       CPU2\n  0:   5   6  IO-APIC 2-edge timer\nLOC:  10  20  Local timer\nERR:  0\n";
        let counts = parse_per_cpu_table(text);
        assert_eq!(counts["0"], BTreeMap::from([(0, 5), (2, 6)]));
        assert_eq!(counts["LOC"], BTreeMap::from([(0, 10), (2, 20)]));
        assert!(!counts.contains_key("ERR"));
        let softirqs = "                    CPU0       CPU1\n          HI:          0          0\n      NET_RX:       4603       6372\n";
        assert_eq!(parse_per_cpu_table(softirqs)["NET_RX"], BTreeMap::from([(0, 4603), (1, 6372)]));
        assert!(parse_per_cpu_table("").is_empty());
    }

    fn times(irq: u64, softirq: u64, steal: u64) -> CpuTimes {
        CpuTimes { irq_ns: irq, softirq_ns: softirq, steal_ns: steal }
    }

    #[test]
    fn irq_softirq_and_steal_are_the_sixth_to_eighth_values_of_cpu_rows() {
        let text = "cpu  1 2 3 4 5 6 7 99 0 0\ncpu0 970800 15440 144521 736884 3601 0 238 4573 0 0\n\
                    cpu3 1 1 1 1 1 9 8 12 0 0\ncpu4 1 1 1 1\ncpu5 1 1 1 1 1 x 1 1\ncpu6 1 1 1 1 1 1 1\n\
                    intr 5 0\nsoftirq 9 9\n";
        assert_eq!(parse_cpu_ticks(text), BTreeMap::from([(0, times(0, 238, 4573)), (3, times(9, 8, 12))]));
        assert_eq!(ticks_to_ns(12, 100), 120_000_000);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn times_grow_per_column_from_zero() {
        let before = BTreeMap::from([(0, times(1, 10, 100)), (1, times(5, 5, 5))]);
        let after = BTreeMap::from([(0, times(1, 30, 150)), (1, times(4, 6, 5)), (2, times(0, 7, 0))]);
        assert_eq!(
            times_delta(&before, &after),
            BTreeMap::from([(0, times(0, 20, 50)), (1, times(0, 1, 0)), (2, times(0, 7, 0))])
        );
    }

    #[test]
    fn hardirq_time_is_unaccounted_when_irq_is_zero_everywhere_while_interrupts_arrive() {
        let zero = BTreeMap::from([(0, times(0, 500, 0)), (1, times(0, 900, 3))]);
        assert_eq!(HardirqAccounting::judge(&zero, 1234), HardirqAccounting::NotAccounted);
        assert_eq!(HardirqAccounting::judge(&zero, 0), HardirqAccounting::Unknown);
        let kept = BTreeMap::from([(0, times(0, 500, 0)), (1, times(10_000_000, 900, 3))]);
        assert_eq!(HardirqAccounting::judge(&kept, 0), HardirqAccounting::Accounted);
        assert_eq!(HardirqAccounting::judge(&BTreeMap::new(), 0), HardirqAccounting::Unknown);
    }

    #[test]
    fn delta_counts_from_zero() {
        let before = BTreeMap::from([(0, 10), (1, 50)]);
        let after = BTreeMap::from([(0, 15), (1, 40), (2, 7)]);
        assert_eq!(delta(&before, &after), BTreeMap::from([(0, 5), (1, 0), (2, 7)]));
    }

    #[test]
    fn reads_this_machine() {
        // Every machine has a local timer or at least one CPU in /proc/stat.
        assert!(!cpu_times().is_empty());
        assert!(!softirq_counts().is_empty());
    }
}
