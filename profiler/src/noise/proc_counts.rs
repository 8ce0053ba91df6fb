//! What procfs counts about interrupts and steal: IRQ names and per-CPU
//! counts from /proc/interrupts, softirq counts from /proc/softirqs and
//! hypervisor steal from /proc/stat.
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

/// Cumulative hypervisor steal per CPU (ns since boot) from the `cpuN`
/// rows of /proc/stat; take the difference of two reads for a window.
pub fn steal_ns() -> BTreeMap<u32, u64> {
    let hz = procfs::ticks_per_second();
    parse_steal_ticks(&read(STAT)).into_iter().map(|(cpu, ticks)| (cpu, ticks_to_ns(ticks, hz))).collect()
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

/// CPU → steal ticks of the `cpuN` rows of /proc/stat text (the eighth
/// value; kernels before 2.6.11 have none and give no entry).
fn parse_steal_ticks(text: &str) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields.next().and_then(|f| f.strip_prefix("cpu")).and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(Ok(steal)) = fields.nth(7).map(str::parse::<u64>) {
            out.insert(cpu, steal);
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

    #[test]
    fn steal_is_the_eighth_value_of_cpu_rows() {
        let text = "cpu  1 2 3 4 5 6 7 99 0 0\ncpu0 970800 15440 144521 736884 3601 0 238 4573 0 0\n\
                    cpu3 1 1 1 1 1 1 1 12 0 0\ncpu4 1 1 1 1\nintr 5 0\n";
        assert_eq!(parse_steal_ticks(text), BTreeMap::from([(0, 4573), (3, 12)]));
        assert_eq!(ticks_to_ns(12, 100), 120_000_000);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
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
        assert!(!steal_ns().is_empty());
        assert!(!softirq_counts().is_empty());
    }
}
