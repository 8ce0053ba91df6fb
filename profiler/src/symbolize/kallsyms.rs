//! Kernel addresses named from `/proc/kallsyms`, read start to end once
//! per batch of addresses and not kept: the parsed table (120,000 symbols
//! on this kernel) would hold 6 MB for the agent's life, where the names
//! asked for are a few thousand, kept by [`super::KernelSymbols`].
//!
//! A symbol covers the addresses from its own to the next symbol's. The
//! file is sorted by address in runs (the kernel's own symbols, then each
//! module's, then BPF programs'), so each symbol claims the wanted
//! addresses up to the next symbol of its run, or all above it at a run's
//! end; an address keeps the highest symbol at or below it, whatever the
//! order of the runs. Of symbols at one address (aliases) the first listed
//! names it.

use std::{io::BufRead, sync::Arc};

/// Where the kernel lists its symbols.
pub const PATH: &str = "/proc/kallsyms";

/// Why kallsyms could not name addresses.
#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    #[error("could not read {PATH}")]
    Read(#[source] std::io::Error),
    #[error("{PATH} lists no symbol addresses (kernel.kptr_restrict hides them from this user)")]
    Hidden,
}

/// Symbol types that name code: text, and weak symbols.
fn is_code(kind: &str) -> bool {
    matches!(kind, "t" | "T" | "w" | "W")
}

/// The names of `addrs` (sorted, distinct) from a kallsyms listing: for
/// each, the code symbol with the highest address at or below it, `None`
/// below every symbol.
pub fn floor_names(mut listing: impl BufRead, addrs: &[u64]) -> Result<Vec<Option<Arc<str>>>, KallsymsError> {
    debug_assert!(addrs.windows(2).all(|w| w[0] < w[1]));
    let mut best: Vec<(u64, Option<Arc<str>>)> = vec![(0, None); addrs.len()];
    // The symbol read last, whose span ends at the next one's address.
    let mut open: Option<u64> = None;
    let mut open_name = String::new();
    let mut line = String::new();
    let mut any = false;
    loop {
        line.clear();
        if listing.read_line(&mut line).map_err(KallsymsError::Read)? == 0 {
            break;
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
        if addr == 0 || !is_code(kind) {
            continue;
        }
        any = true;
        match open {
            // An alias of the open symbol: the first one names.
            Some(at) if at == addr => continue,
            Some(at) => claim(addrs, &mut best, at, if addr > at { addr } else { u64::MAX }, &open_name),
            None => {}
        }
        open = Some(addr);
        open_name.clear();
        open_name.push_str(name);
    }
    if let Some(at) = open {
        claim(addrs, &mut best, at, u64::MAX, &open_name);
    }
    if !any && !addrs.is_empty() {
        return Err(KallsymsError::Hidden);
    }
    Ok(best.into_iter().map(|(_, name)| name).collect())
}

/// Symbol `name` at `lo` covers `lo..hi`: it names the wanted addresses
/// there that no higher symbol below them names.
fn claim(addrs: &[u64], best: &mut [(u64, Option<Arc<str>>)], lo: u64, hi: u64, name: &str) {
    let mut shared: Option<Arc<str>> = None;
    let from = addrs.partition_point(|&a| a < lo);
    for (addr, slot) in addrs[from..].iter().zip(&mut best[from..]) {
        if *addr >= hi {
            break;
        }
        if slot.1.is_none() || slot.0 < lo {
            *slot = (lo, Some(shared.get_or_insert_with(|| Arc::from(name)).clone()));
        }
    }
}

/// [`floor_names`] of the running kernel.
pub fn names(addrs: &[u64]) -> Result<Vec<Option<Arc<str>>>, KallsymsError> {
    let file = std::fs::File::open(PATH).map_err(KallsymsError::Read)?;
    floor_names(std::io::BufReader::with_capacity(1 << 16, file), addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(listing: &str, addrs: &[u64]) -> Vec<Option<String>> {
        floor_names(listing.as_bytes(), addrs).unwrap().into_iter().map(|n| n.map(|n| n.to_string())).collect()
    }

    #[test]
    fn each_address_gets_the_highest_symbol_below_it_across_unsorted_runs() {
        let listing = "\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000000 T startup_64
ffffffff81000100 t helper
ffffffff81000200 D some_data
ffffffff81000300 T last_core
ffffffffc0002000 t mod_b_fn\t[mod_b]
ffffffffc0001000 t mod_a_fn\t[mod_a]
ffffffffc0001800 t mod_a_other\t[mod_a]
";
        let addrs = [
            0x10,
            0xffffffff81000000,
            0xffffffff810000ff,
            0xffffffff81000250,
            0xffffffff81000400,
            0xffffffffc0001100,
            0xffffffffc0001900,
            0xffffffffc0002010,
        ];
        let got = named(listing, &addrs);
        let want = [
            None,
            Some("_stext"),
            Some("_stext"),
            Some("helper"),
            Some("last_core"),
            Some("mod_a_fn"),
            Some("mod_a_other"),
            Some("mod_b_fn"),
        ];
        assert_eq!(got, want.map(|w| w.map(str::to_owned)));
    }

    #[test]
    fn a_listing_without_addresses_is_an_error() {
        let listing = "0000000000000000 T _stext\n0000000000000000 t helper\n";
        assert!(matches!(floor_names(listing.as_bytes(), &[0xffffffff81000000]), Err(KallsymsError::Hidden)));
        // Nothing asked: nothing to say.
        assert!(floor_names(listing.as_bytes(), &[]).unwrap().is_empty());
    }

    /// The running kernel's kallsyms against blazesym's reading of it (an
    /// independent parser): the same function for every address, but for
    /// aliases (two names at one address).
    #[test]
    fn names_of_the_running_kernel_match_blazesym() {
        let text = std::fs::read_to_string(PATH).expect("read /proc/kallsyms");
        let mut syms: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_ascii_whitespace();
                let (a, k, n) = (f.next()?, f.next()?, f.next()?);
                Some((u64::from_str_radix(a, 16).ok()?, k, n))
            })
            .filter(|(a, k, _)| *a != 0 && is_code(k))
            .map(|(a, _, n)| (a, n))
            .collect();
        assert!(syms.len() > 1000, "kallsyms shows {} code symbols", syms.len());
        syms.sort_unstable();
        // Addresses inside functions: 3 bytes past every 37th symbol.
        let mut addrs: Vec<u64> = syms.iter().step_by(37).map(|(a, _)| a + 3).collect();
        addrs.sort_unstable();
        addrs.dedup();
        let ours = names(&addrs).unwrap();
        let symbolizer = blazesym::symbolize::Symbolizer::new();
        let src = blazesym::symbolize::source::Source::Kernel(blazesym::symbolize::source::Kernel::default());
        let theirs = symbolizer.symbolize(&src, blazesym::symbolize::Input::AbsAddr(&addrs)).unwrap();
        let address_of = |name: &str| syms.iter().filter(|(_, n)| *n == name).map(|(a, _)| *a).collect::<Vec<_>>();
        let mut differ = 0;
        for ((addr, ours), theirs) in addrs.iter().zip(&ours).zip(&theirs) {
            let ours = ours.as_deref().expect("every address is above the first symbol");
            let theirs = match theirs {
                blazesym::symbolize::Symbolized::Sym(s) => s.name.to_string(),
                blazesym::symbolize::Symbolized::Unknown(_) => continue,
            };
            if ours != theirs {
                // Aliases: both names at the same address.
                let (a, b) = (address_of(ours), address_of(&theirs));
                assert!(a.iter().any(|x| b.contains(x)), "{addr:#x}: ours {ours} ({a:x?}), blazesym {theirs} ({b:x?})");
                differ += 1;
            }
        }
        assert!(differ * 20 < addrs.len(), "{differ} of {} addresses named by another alias", addrs.len());
    }
}
