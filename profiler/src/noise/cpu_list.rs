//! CPU lists as the kernel writes them (`0-3,6`): `--cpus` parsing, the
//! check against the CPUs this machine has and has online, and the
//! compact form reports print.

/// The kernel's list of CPUs that are online now.
const ONLINE: &str = "/sys/devices/system/cpu/online";
/// The kernel's list of CPUs that can ever exist on this machine.
const POSSIBLE: &str = "/sys/devices/system/cpu/possible";
/// CPU numbers are below this (the kernel's `NR_CPUS` is at most 8192);
/// it also keeps a range like `0-4000000000` from allocating gigabytes.
pub const MAX_CPUS: u32 = 1 << 16;

/// Parse a CPU list like `0-3,6` into ascending CPU numbers without
/// duplicates. Blanks around items are allowed, empty items are not.
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, String> {
    if s.trim().is_empty() {
        return Err("the CPU list is empty; give CPUs like 0-3,6".into());
    }
    let mut cpus = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (cpu_number(s, item, a)?, cpu_number(s, item, b)?),
            None => {
                let n = cpu_number(s, item, item)?;
                (n, n)
            }
        };
        if first > last {
            return Err(format!("'{item}' in CPU list '{s}' is a backwards range; write it as {last}-{first}"));
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// One CPU number of `item` in `list`, for error messages naming both.
fn cpu_number(list: &str, item: &str, s: &str) -> Result<u32, String> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{item}' in CPU list '{list}' is not a CPU number or a range like 0-3"));
    }
    match s.parse::<u32>() {
        Ok(n) if n < MAX_CPUS => Ok(n),
        _ => Err(format!("CPU {s} in CPU list '{list}' is out of range; CPU numbers are below {MAX_CPUS}")),
    }
}

/// The compact form of ascending CPU numbers: `[0, 1, 4, 5, 6, 7]` → `0-1,4-7`.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let first = cpus[i];
        let mut last = first;
        while i + 1 < cpus.len() && cpus[i + 1] == last.saturating_add(1) {
            i += 1;
            last = cpus[i];
        }
        out.push(if first == last { first.to_string() } else { format!("{first}-{last}") });
        i += 1;
    }
    out.join(",")
}

/// Check that every CPU exists on this machine and is online, from
/// /sys/devices/system/cpu/{possible,online}.
pub fn check_online(cpus: &[u32]) -> Result<(), String> {
    let possible = read_sys_list(POSSIBLE)?;
    let online = read_sys_list(ONLINE)?;
    check_against(cpus, &possible, &online)
}

fn read_sys_list(path: &str) -> Result<Vec<u32>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the CPUs of this machine from {path}: {e}"))?;
    parse_cpu_list(text.trim()).map_err(|e| format!("{path} is not a CPU list as expected: {e}"))
}

/// [`check_online`] against given `possible` and `online` lists: the first
/// CPU that is missing from either is named.
pub fn check_against(cpus: &[u32], possible: &[u32], online: &[u32]) -> Result<(), String> {
    for cpu in cpus {
        if possible.binary_search(cpu).is_err() {
            return Err(format!("CPU {cpu} does not exist (this machine has CPUs {})", format_cpu_list(possible)));
        }
        if online.binary_search(cpu).is_err() {
            return Err(format!("CPU {cpu} is offline (online: {})", format_cpu_list(online)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles_sorted_and_deduplicated() {
        assert_eq!(parse_cpu_list("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("6, 2-3 ,3,0").unwrap(), vec![0, 2, 3, 6]);
        assert_eq!(parse_cpu_list("5").unwrap(), vec![5]);
        assert_eq!(parse_cpu_list("4-4").unwrap(), vec![4]);
        assert_eq!(parse_cpu_list("0-1\n".trim()).unwrap(), vec![0, 1]);
    }

    #[test]
    fn syntax_errors_name_the_bad_part() {
        let e = parse_cpu_list("0-3,x").unwrap_err();
        assert_eq!(e, "'x' in CPU list '0-3,x' is not a CPU number or a range like 0-3");
        assert!(parse_cpu_list("0-").unwrap_err().contains("'0-'"));
        assert!(parse_cpu_list("1,,2").unwrap_err().contains("'' in CPU list '1,,2'"));
        assert!(parse_cpu_list("-1").unwrap_err().contains("'-1'"));
        assert!(parse_cpu_list("+1").unwrap_err().contains("'+1'"));
        assert!(parse_cpu_list("").unwrap_err().contains("empty"));
        assert!(parse_cpu_list("3-1").unwrap_err().contains("write it as 1-3"));
        assert!(parse_cpu_list("0-4000000000").unwrap_err().contains("CPU 4000000000"));
        assert!(parse_cpu_list("99999999999999999999").unwrap_err().contains("out of range"));
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_cpu_list(&[0, 1, 4, 5, 6, 7]), "0-1,4-7");
        assert_eq!(format_cpu_list(&[3]), "3");
        assert_eq!(format_cpu_list(&[0, 2, 4]), "0,2,4");
        assert_eq!(format_cpu_list(&[]), "");
        let cpus = parse_cpu_list("0-2,5,7-9").unwrap();
        assert_eq!(format_cpu_list(&cpus), "0-2,5,7-9");
    }

    #[test]
    fn names_missing_and_offline_cpus() {
        let possible = parse_cpu_list("0-7").unwrap();
        let online = parse_cpu_list("0-1,4-7").unwrap();
        assert!(check_against(&[0, 5], &possible, &online).is_ok());
        assert_eq!(check_against(&[0, 3], &possible, &online).unwrap_err(), "CPU 3 is offline (online: 0-1,4-7)");
        let two = [0, 1];
        assert_eq!(check_against(&[7], &two, &two).unwrap_err(), "CPU 7 does not exist (this machine has CPUs 0-1)");
    }

    #[test]
    fn this_machine_has_cpu_0_online() {
        check_online(&[0]).unwrap();
        assert!(check_online(&[MAX_CPUS - 1]).unwrap_err().contains("does not exist"));
    }
}
