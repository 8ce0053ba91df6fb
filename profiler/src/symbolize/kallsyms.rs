//! Kernel addresses named from `/proc/kallsyms`, kept as a compact index
//! read once: symbol addresses as 32-bit offsets from a block's base, names
//! zstd-compressed 256 to a block. On this kernel, 120,000 code symbols take
//! about 1.1 MB, where the parsed listing takes 6 MB; a lookup decompresses
//! one block (microseconds), where a read of the file costs 40 ms of kernel
//! time, too much to spend per window under a 1% budget.
//!
//! A symbol covers the addresses from its own to the next symbol's. The
//! file is sorted by address in runs (the kernel's own symbols, then each
//! module's, then BPF programs'), so an address gets the highest symbol at
//! or below it, whatever the order of the runs. Of symbols at one address
//! (aliases) the first listed names it. The last symbol of a run, and a
//! BPF program's, has no known end: an address there may belong to code
//! loaded after the index was read, and [`Named::open`] says so.

use std::{io::BufRead, sync::Arc};

/// Where the kernel lists its symbols.
pub const PATH: &str = "/proc/kallsyms";

/// Symbols per block of names.
const BLOCK: usize = 256;

/// Why kallsyms could not name addresses.
#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    #[error("could not read {PATH}")]
    Read(#[source] std::io::Error),
    #[error("{PATH} lists no symbol addresses (kernel.kptr_restrict hides them from this user)")]
    Hidden,
    #[error("could not compress or decompress the kernel's symbol names")]
    Compression(#[source] std::io::Error),
}

/// Symbol types that name code: text, and weak symbols.
fn is_code(kind: &str) -> bool {
    matches!(kind, "t" | "T" | "w" | "W")
}

/// The code symbols of a kallsyms listing, compact.
pub struct Index {
    /// In address order; each block's symbols run to the next block's first.
    blocks: Vec<Block>,
    /// Each symbol's address less its block's base.
    offsets: Vec<u32>,
    /// Each block's names, block for block.
    names: Packed,
    /// Symbols without a known end (sorted indices).
    open: Vec<u32>,
}

struct Block {
    base: u64,
    /// Index of its first symbol.
    first: u32,
}

/// Blocks of names, newline-separated, each compressed, back to back: the
/// index's (in address order) and, while a listing is read, the listing's.
#[derive(Default)]
struct Packed {
    bytes: Vec<u8>,
    /// Each block's bytes in `bytes` and their size decompressed.
    blocks: Vec<(u32, u32, u32)>,
}

impl Packed {
    /// Add a block of names.
    fn push(&mut self, zstd: &mut zstd::bulk::Compressor, raw: &[u8]) -> Result<(), KallsymsError> {
        let packed = zstd.compress(raw).map_err(KallsymsError::Compression)?;
        self.blocks.push((self.bytes.len() as u32, packed.len() as u32, raw.len() as u32));
        self.bytes.extend_from_slice(&packed);
        Ok(())
    }

    /// Block `b`'s names.
    fn unpack(&self, b: usize, zstd: &mut zstd::bulk::Decompressor) -> Result<Vec<u8>, KallsymsError> {
        let missing = || KallsymsError::Compression(std::io::Error::other("a block of names past the last"));
        let &(at, len, raw) = self.blocks.get(b).ok_or_else(missing)?;
        let packed = self.bytes.get(at as usize..(at + len) as usize).ok_or_else(missing)?;
        zstd.decompress(packed, raw as usize).map_err(KallsymsError::Compression)
    }

    fn capacity_bytes(&self) -> usize {
        self.bytes.capacity() + self.blocks.capacity() * std::mem::size_of::<(u32, u32, u32)>()
    }
}

/// An address's symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: Arc<str>,
    /// The symbol has no known end: the last of its run, or a BPF
    /// program's. The address may lie in code loaded since the listing was
    /// read.
    pub open: bool,
}

/// A symbol while the listing is read: its place in the listing, where
/// its name is.
struct Parsed {
    addr: u64,
    seq: u32,
    open: bool,
}

/// The names of a listing being read, in listing order, compressed a
/// block at a time as they come: the listing's text is never held whole
/// (it is 5 MB; a read that held it, its symbols' names in one string,
/// and a stable sort's scratch made 10 MB at once, the agent's peak heap
/// when it came during a window's build).
struct Listed {
    /// One context for every block (a context per call was a fifth of the read).
    zstd: zstd::bulk::Compressor<'static>,
    packed: Packed,
    raw: Vec<u8>,
    in_raw: usize,
}

impl Listed {
    fn new() -> Result<Self, KallsymsError> {
        Ok(Self {
            zstd: zstd::bulk::Compressor::new(1).map_err(KallsymsError::Compression)?,
            packed: Packed::default(),
            raw: Vec::new(),
            in_raw: 0,
        })
    }

    fn push(&mut self, name: &str) -> Result<(), KallsymsError> {
        if self.in_raw > 0 {
            self.raw.push(b'\n');
        }
        self.raw.extend_from_slice(name.as_bytes());
        self.in_raw += 1;
        if self.in_raw == BLOCK {
            self.seal()?;
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<(), KallsymsError> {
        if self.in_raw == 0 {
            return Ok(());
        }
        self.packed.push(&mut self.zstd, &self.raw)?;
        self.raw.clear();
        self.in_raw = 0;
        Ok(())
    }
}

/// Names of [`Listed`] by place, a few blocks decompressed at a time (the
/// kernel's own symbols come in address order, one block after another;
/// a module's may not).
struct Unpacked<'a> {
    listed: &'a Listed,
    zstd: zstd::bulk::Decompressor<'static>,
    /// (block, its names, where each starts), most recently used last.
    cache: Vec<(usize, Vec<u8>, Vec<u32>)>,
}

impl<'a> Unpacked<'a> {
    const CACHED: usize = 32;

    fn new(listed: &'a Listed) -> Result<Self, KallsymsError> {
        let zstd = zstd::bulk::Decompressor::new().map_err(KallsymsError::Compression)?;
        Ok(Self { listed, zstd, cache: Vec::with_capacity(Self::CACHED) })
    }

    fn name(&mut self, seq: u32) -> Result<&[u8], KallsymsError> {
        let (b, k) = (seq as usize / BLOCK, seq as usize % BLOCK);
        let at = match self.cache.iter().position(|(cached, _, _)| *cached == b) {
            Some(at) => at,
            None => {
                let names = self.listed.packed.unpack(b, &mut self.zstd)?;
                let mut starts = vec![0u32];
                starts.extend(names.iter().enumerate().filter(|(_, &c)| c == b'\n').map(|(i, _)| i as u32 + 1));
                if self.cache.len() == Self::CACHED {
                    self.cache.remove(0);
                }
                self.cache.push((b, names, starts));
                self.cache.len() - 1
            }
        };
        let (_, names, starts) = &self.cache[at];
        let from = starts.get(k).map_or(names.len(), |&s| s as usize);
        let to = starts.get(k + 1).map_or(names.len(), |&s| s as usize - 1);
        Ok(&names[from..to.max(from)])
    }
}

impl Index {
    /// Index the code symbols of a kallsyms listing.
    #[cfg(test)]
    pub fn parse(listing: impl BufRead) -> Result<Self, KallsymsError> {
        Self::parse_expecting(listing, 0)
    }

    /// [`Self::parse`], with room made for about `expect` symbols at once
    /// (the last index's count: no vector doubled past what it needs).
    pub fn parse_expecting(mut listing: impl BufRead, expect: usize) -> Result<Self, KallsymsError> {
        let mut syms: Vec<Parsed> = Vec::with_capacity(expect + expect / 32);
        let mut listed = Listed::new()?;
        let mut line = String::new();
        // The run being read: its module and last address.
        let mut run: Option<(String, u64)> = None;
        loop {
            line.clear();
            if listing.read_line(&mut line).map_err(KallsymsError::Read)? == 0 {
                break;
            }
            let mut fields = line.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (fields.next(), fields.next(), fields.next()) else { continue };
            let module = fields.next().unwrap_or("");
            let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
            if addr == 0 || !is_code(kind) {
                continue;
            }
            match &mut run {
                // An alias of the symbol before: the first one names.
                Some((m, last)) if *m == module && *last == addr => continue,
                Some((m, last)) if *m == module && *last < addr => *last = addr,
                _ => {
                    if let Some(before) = syms.last_mut() {
                        before.open = true;
                    }
                    run = Some((module.to_owned(), addr));
                }
            }
            let Ok(seq) = u32::try_from(syms.len()) else { break };
            // A name holds no newline: it separates them in a block.
            listed.push(name)?;
            syms.push(Parsed { addr, seq, open: module == "[bpf]" });
        }
        listed.seal()?;
        let Some(last) = syms.last_mut() else { return Err(KallsymsError::Hidden) };
        last.open = true;
        // Runs in address order; of equal addresses in two runs, the first
        // listed (no stable sort: its scratch would be half the vector again).
        syms.sort_unstable_by_key(|s| (s.addr, s.seq));
        syms.dedup_by(|later, first| {
            let same = later.addr == first.addr;
            first.open |= same && later.open;
            same
        });
        let mut index = Index {
            blocks: Vec::with_capacity(syms.len() / BLOCK + 1),
            offsets: Vec::with_capacity(syms.len()),
            names: Packed {
                bytes: Vec::with_capacity(listed.packed.bytes.len() + listed.packed.bytes.len() / 8),
                blocks: Vec::with_capacity(syms.len() / BLOCK + 1),
            },
            open: Vec::new(),
        };
        let mut unpacked = Unpacked::new(&listed)?;
        let mut zstd = zstd::bulk::Compressor::new(3).map_err(KallsymsError::Compression)?;
        let mut raw = String::new();
        let mut base = 0;
        for (i, s) in syms.iter().enumerate() {
            let full = index
                .blocks
                .last()
                .is_none_or(|b| i - b.first as usize >= BLOCK || s.addr - b.base > u64::from(u32::MAX));
            if full {
                index.seal(&mut zstd, &mut raw)?;
                base = s.addr;
                index.blocks.push(Block { base, first: i as u32 });
            }
            index.offsets.push((s.addr - base) as u32);
            if s.open {
                index.open.push(i as u32);
            }
            if !raw.is_empty() {
                raw.push('\n');
            }
            raw.push_str(&String::from_utf8_lossy(unpacked.name(s.seq)?));
        }
        index.seal(&mut zstd, &mut raw)?;
        index.names.bytes.shrink_to_fit();
        index.open.shrink_to_fit();
        Ok(index)
    }

    /// Compress the last block's names (none before the first block).
    fn seal(&mut self, zstd: &mut zstd::bulk::Compressor, raw: &mut String) -> Result<(), KallsymsError> {
        if self.names.blocks.len() < self.blocks.len() {
            self.names.push(zstd, raw.as_bytes())?;
        }
        raw.clear();
        Ok(())
    }

    /// Symbols indexed.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Bytes the index holds.
    pub fn bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block>()
            + self.offsets.capacity() * 4
            + self.names.capacity_bytes()
            + self.open.capacity() * 4
    }

    /// The symbol at or below `addr`: (block, index).
    fn floor(&self, addr: u64) -> Option<(usize, usize)> {
        let b = self.blocks.partition_point(|b| b.base <= addr).checked_sub(1)?;
        let block = &self.blocks[b];
        let end = self.blocks.get(b + 1).map_or(self.offsets.len(), |n| n.first as usize);
        let within = &self.offsets[block.first as usize..end];
        let rel = addr - block.base;
        let k = within.partition_point(|&o| u64::from(o) <= rel).checked_sub(1)?;
        Some((b, block.first as usize + k))
    }

    /// The symbols of `addrs` (sorted): for each, the code symbol with the
    /// highest address at or below it, `None` below every symbol. Each
    /// block of names is decompressed once.
    pub fn names(&self, addrs: &[u64]) -> Result<Vec<Option<Named>>, KallsymsError> {
        debug_assert!(addrs.windows(2).all(|w| w[0] <= w[1]));
        let mut out = Vec::with_capacity(addrs.len());
        let mut unpacked: Option<(usize, Vec<u8>)> = None;
        let mut last: Option<(usize, Named)> = None;
        let mut zstd: Option<zstd::bulk::Decompressor> = None;
        for &addr in addrs {
            let Some((b, i)) = self.floor(addr) else {
                out.push(None);
                continue;
            };
            if let Some((at, named)) = &last {
                if *at == i {
                    out.push(Some(named.clone()));
                    continue;
                }
            }
            if unpacked.as_ref().is_none_or(|(at, _)| *at != b) {
                let zstd = match &mut zstd {
                    Some(z) => z,
                    None => zstd.insert(zstd::bulk::Decompressor::new().map_err(KallsymsError::Compression)?),
                };
                unpacked = Some((b, self.names.unpack(b, zstd)?));
            }
            let raw = unpacked.as_ref().map_or(&[][..], |(_, raw)| raw.as_slice());
            let k = i - self.blocks[b].first as usize;
            let name = raw.split(|&c| c == b'\n').nth(k).unwrap_or_default();
            let named = Named {
                name: Arc::from(String::from_utf8_lossy(name).as_ref()),
                open: self.open.binary_search(&(i as u32)).is_ok(),
            };
            last = Some((i, named.clone()));
            out.push(Some(named));
        }
        Ok(out)
    }
}

/// The running kernel's index.
#[cfg(test)]
pub fn read() -> Result<Index, KallsymsError> {
    read_expecting(0)
}

/// [`read`], with room made for about `expect` symbols.
pub fn read_expecting(expect: usize) -> Result<Index, KallsymsError> {
    let file = std::fs::File::open(PATH).map_err(KallsymsError::Read)?;
    Index::parse_expecting(std::io::BufReader::with_capacity(1 << 16, file), expect)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(listing: &str, addrs: &[u64]) -> Vec<Option<String>> {
        let index = Index::parse(listing.as_bytes()).unwrap();
        index.names(addrs).unwrap().into_iter().map(|n| n.map(|n| n.name.to_string())).collect()
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
        assert!(matches!(Index::parse(listing.as_bytes()), Err(KallsymsError::Hidden)));
    }

    #[test]
    fn the_last_symbol_of_each_run_and_every_bpf_program_has_no_known_end() {
        let listing = "\
ffffffff81000000 T _stext
ffffffff81000100 t core_mid
ffffffff81000300 T core_last
ffffffffc0001000 t mod_a_fn\t[mod_a]
ffffffffc0001800 t mod_a_last\t[mod_a]
ffffffffa0000000 t bpf_prog_1_x\t[bpf]
ffffffffa0001000 t bpf_prog_2_y\t[bpf]
";
        let index = Index::parse(listing.as_bytes()).unwrap();
        let addrs = [
            0xffffffff81000110,
            0xffffffff81000310,
            0xffffffffa0000010,
            0xffffffffa0001010,
            0xffffffffc0001010,
            0xffffffffc0001810,
        ];
        let got: Vec<(String, bool)> = index
            .names(&addrs)
            .unwrap()
            .into_iter()
            .map(|n| n.map(|n| (n.name.to_string(), n.open)).unwrap())
            .collect();
        let want = [
            ("core_mid", false),
            ("core_last", true),
            ("bpf_prog_1_x", true),
            ("bpf_prog_2_y", true),
            ("mod_a_fn", false),
            ("mod_a_last", true),
        ];
        assert_eq!(got, want.map(|(n, o)| (n.to_owned(), o)));
    }

    /// Many blocks, and two runs further apart than a block's 32-bit
    /// offsets reach: every symbol's own address and one inside it.
    #[test]
    fn every_symbol_of_many_blocks_is_found_across_a_wide_gap() {
        let mut listing = String::new();
        let mut want = Vec::new();
        for (base, run) in [(0x1000_0000u64, "lo"), (0xffff_0000_0000_0000u64, "hi")] {
            for i in 0..1000u64 {
                let addr = base + i * 0x40;
                listing.push_str(&format!("{addr:016x} t {run}_{i}\n"));
                want.push((addr, format!("{run}_{i}")));
                want.push((addr + 0x3f, format!("{run}_{i}")));
            }
        }
        let index = Index::parse(listing.as_bytes()).unwrap();
        assert_eq!(index.len(), 2000);
        assert!(index.blocks.len() >= 8, "{} blocks", index.blocks.len());
        let addrs: Vec<u64> = want.iter().map(|(a, _)| *a).collect();
        let got = named(&listing, &addrs);
        for ((addr, want), got) in want.iter().zip(got) {
            assert_eq!(got.as_deref(), Some(want.as_str()), "{addr:#x}");
        }
        assert_eq!(named(&listing, &[0xfff]), [None]);
    }

    /// A module's symbols listed out of address order, over more blocks
    /// than the build keeps decompressed at once, between two sorted runs:
    /// every name is still found at its address.
    #[test]
    fn a_module_listed_out_of_order_over_many_blocks_is_named_whole() {
        let mut listing = String::new();
        let mut want = Vec::new();
        let mut add = |listing: &mut String, addr: u64, name: String, module: &str| {
            listing.push_str(&format!("{addr:016x} t {name}{module}\n"));
            want.push((addr + 1, name));
        };
        for i in 0..600u64 {
            add(&mut listing, 0xffff_ffff_8100_0000 + i * 0x10, format!("core_{i}"), "");
        }
        // 40 blocks' worth, each step jumping far through the module's range.
        let n = 40 * BLOCK as u64;
        for i in 0..n {
            let k = (i * 7919) % n;
            add(&mut listing, 0xffff_ffff_c000_0000 + k * 0x20, format!("mod_{k}"), "\t[big]");
        }
        add(&mut listing, 0xffff_ffff_a000_0000, "bpf_prog_1_x".into(), "\t[bpf]");
        let index = Index::parse(listing.as_bytes()).unwrap();
        assert_eq!(index.len(), want.len());
        want.sort_unstable();
        let addrs: Vec<u64> = want.iter().map(|(a, _)| *a).collect();
        for ((addr, want), got) in want.iter().zip(named(&listing, &addrs)) {
            assert_eq!(got.as_deref(), Some(want.as_str()), "{addr:#x}");
        }
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
        let index = read().unwrap();
        let ours: Vec<Option<String>> =
            index.names(&addrs).unwrap().into_iter().map(|n| n.map(|n| n.name.to_string())).collect();
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
        // Compact: well under the 6 MB the parsed listing takes.
        assert!(index.bytes() < 24 * index.len(), "{} bytes for {} symbols", index.bytes(), index.len());
    }
}
