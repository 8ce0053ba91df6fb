//! Kernel addresses named from `/proc/kallsyms` without holding the file:
//! the kernel's function start addresses are kept sorted (8 bytes each,
//! under 1 MB for 120,000 functions), and the names of the functions a
//! batch of addresses falls in are read in one pass over the file. A
//! parsed copy with every name took 6 MB, held while kernel stacks kept
//! coming.
//!
//! kallsyms gives no sizes: an address is named after the closest function
//! that starts at or below it, as any kallsyms reader does.

use std::io::{BufRead, BufReader};

/// Where the kernel lists its symbols.
pub const PATH: &str = "/proc/kallsyms";

/// Why kallsyms could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    #[error("could not read {PATH}")]
    Read(#[source] std::io::Error),
    #[error("{PATH} lists no function addresses (kernel.kptr_restrict hides them from this user)")]
    Hidden,
}

/// The kernel's function start addresses, sorted.
pub struct Kallsyms {
    starts: Vec<u64>,
}

/// A function symbol of one kallsyms line: its address and name.
fn function(line: &str) -> Option<(u64, &str)> {
    let mut fields = line.split_ascii_whitespace();
    let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
    let kind = fields.next()?;
    let name = fields.next()?;
    matches!(kind, "t" | "T" | "w" | "W").then_some((addr, name))
}

/// Call `f` with each line of kallsyms, one line held at a time.
fn each_line(mut f: impl FnMut(&str)) -> Result<(), KallsymsError> {
    let file = std::fs::File::open(PATH).map_err(KallsymsError::Read)?;
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(KallsymsError::Read)? == 0 {
            return Ok(());
        }
        f(&line);
    }
}

impl Kallsyms {
    /// Read the function start addresses.
    pub fn read() -> Result<Self, KallsymsError> {
        let mut starts = Vec::new();
        each_line(|line| starts.extend(function(line).map(|(addr, _)| addr)))?;
        Self::of_starts(starts)
    }

    fn of_starts(mut starts: Vec<u64>) -> Result<Self, KallsymsError> {
        starts.retain(|&a| a != 0);
        if starts.is_empty() {
            return Err(KallsymsError::Hidden);
        }
        starts.sort_unstable();
        starts.dedup();
        starts.shrink_to_fit();
        Ok(Self { starts })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<u64>()
    }

    /// The start of the function `addr` falls in.
    fn start_of(&self, addr: u64) -> Option<u64> {
        let i = self.starts.partition_point(|&s| s <= addr);
        i.checked_sub(1).and_then(|i| self.starts.get(i)).copied()
    }

    /// The names of the functions `addrs` fall in, in their order (`None`
    /// below the first function, or for a function gone since the starts
    /// were read: a module unloaded), from one pass over kallsyms.
    pub fn names(&self, addrs: &[u64]) -> Result<Vec<Option<String>>, KallsymsError> {
        let mut wanted = Wanted::new(self, addrs);
        each_line(|line| wanted.line(line))?;
        Ok(wanted.finish())
    }
}

/// The functions a batch of addresses falls in, named as lines go by.
struct Wanted {
    starts: Vec<Option<u64>>,
    names: rustc_hash::FxHashMap<u64, Option<String>>,
}

impl Wanted {
    fn new(k: &Kallsyms, addrs: &[u64]) -> Self {
        let starts: Vec<Option<u64>> = addrs.iter().map(|&a| k.start_of(a)).collect();
        let names = starts.iter().flatten().map(|&s| (s, None)).collect();
        Self { starts, names }
    }

    /// The first name listed at a start is kept (aliases share addresses).
    fn line(&mut self, line: &str) {
        if let Some((addr, name)) = function(line) {
            if let Some(slot @ None) = self.names.get_mut(&addr) {
                *slot = Some(name.to_owned());
            }
        }
    }

    fn finish(self) -> Vec<Option<String>> {
        self.starts.iter().map(|s| s.and_then(|s| self.names.get(&s).cloned().flatten())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000000 T startup_64
ffffffff81001000 t do_one
ffffffff81002000 D some_data
ffffffff81003000 W weak_fn
ffffffffc0001000 t mod_fn\t[kvm]
";

    fn of(text: &str) -> Kallsyms {
        Kallsyms::of_starts(text.lines().filter_map(function).map(|(a, _)| a).collect()).unwrap()
    }

    fn names(k: &Kallsyms, addrs: &[u64]) -> Vec<Option<String>> {
        let mut w = Wanted::new(k, addrs);
        TEXT.lines().for_each(|l| w.line(l));
        w.finish()
    }

    #[test]
    fn an_address_is_named_after_the_function_it_falls_in() {
        let k = of(TEXT);
        assert_eq!(k.starts.len(), 4, "functions only, one per address");
        let got = names(&k, &[0xffffffff81000010, 0xffffffff81001fff, 0xffffffff81002500, 0xffffffffc0001234, 5]);
        let want = [Some("_stext"), Some("do_one"), Some("do_one"), Some("mod_fn"), None];
        assert_eq!(got, want.map(|n| n.map(String::from)));
    }

    #[test]
    fn hidden_addresses_are_an_error_and_a_module_gone_is_unnamed() {
        assert!(matches!(Kallsyms::of_starts(vec![0, 0]), Err(KallsymsError::Hidden)));
        let k = of(&format!("{TEXT}ffffffffc0009000 t gone\t[old]\n"));
        assert_eq!(names(&k, &[0xffffffffc0009010]), vec![None]);
    }

    #[test]
    fn the_running_kernel_names_its_own_functions() {
        let k = Kallsyms::read().unwrap();
        let first = k.starts[k.starts.len() / 2];
        let got = k.names(&[first, first + 1]).unwrap();
        assert!(got[0].is_some() && got[0] == got[1], "{got:?}");
    }
}
