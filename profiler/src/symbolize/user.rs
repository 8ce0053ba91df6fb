//! Naming user frames: per module, every offset the stacks hold, looked up
//! once with blazesym, in two passes that share the parsed symbol table.
//! The module's own symbol tables name functions as the module exports
//! them; DWARF, when the module carries it or a separate debug file is
//! installed, adds inlined functions (as frames of their own), source lines
//! and names of functions the symbol tables lack (static functions of a
//! stripped binary). A module without DWARF costs only the first pass and a
//! repeat of its lookups.
//!
//! Separate debug files: `/usr/lib/debug/.build-id/NN/REST.debug` by build
//! id (what Debian's -dbgsym and Fedora's -debuginfo packages install),
//! checked to carry the same build id; otherwise blazesym follows the
//! module's `.gnu_debuglink` (the build-id directory, /usr/lib/debug + the
//! module's directory, the module's directory and its `.debug/`).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use blazesym::symbolize::{
    source::{Elf, Source},
    CodeInfo, Input, Sym, Symbolized, Symbolizer,
};

use crate::enrich::elf::ElfFile;
use crate::{
    profile::{Frame, FrameKind, Module, SourceLine},
    stacks::ModuleTable,
};

/// Where separate debug files are looked for.
const DEBUG_DIRS: [&str; 2] = ["/usr/lib/debug", "/lib/debug"];

/// Frames of each (module, offset): the function, then the functions
/// inlined into it at that offset, innermost last. Offsets no symbol
/// covers are absent.
pub type UserNames = HashMap<(usize, u64), Arc<[Frame]>>;

/// Name the offsets of every module in `wanted`; what could not be read
/// is noted in the module.
#[cfg(test)]
pub fn name_modules(modules: &mut ModuleTable, wanted: HashMap<usize, Vec<u64>>, debug_dirs: &[PathBuf]) -> UserNames {
    name_modules_with(None, modules, wanted, debug_dirs, true)
}

/// A symbolizer for user modules: it keeps every file it parsed (symbol
/// tables, DWARF, decompressed debug sections) until it is dropped.
pub fn new_symbolizer() -> Symbolizer {
    Symbolizer::builder().enable_code_info(true).enable_inlined_fns(true).build()
}

/// [`name_modules`] with `kept`, a symbolizer that keeps what it parsed
/// for later windows (a collector of many windows), or `None` for a
/// symbolizer per module, dropped when the module is done (one window: the
/// memory peak is then that of the largest module, not of all of them).
/// Without `dwarf` only symbol tables name: the module's, and its
/// build-id debug file's (which names the static functions a stripped
/// module lacks); no inlined functions, no source lines.
pub fn name_modules_with(
    kept: Option<&Symbolizer>,
    modules: &mut ModuleTable,
    wanted: HashMap<usize, Vec<u64>>,
    debug_dirs: &[PathBuf],
    dwarf: bool,
) -> UserNames {
    let mut files = FileNames::default();
    let mut names = UserNames::new();
    let mut wanted: Vec<_> = wanted.into_iter().collect();
    wanted.sort_unstable_by_key(|(m, _)| *m);
    for (module, offsets) in wanted {
        let source = modules.source(module);
        let Some(info) = modules.modules.get_mut(module) else { continue };
        let started = std::time::Instant::now();
        {
            // Dropped last: the symbolizer made here unmaps its files under it.
            let _mapping = crate::sys::mem::mapping_files();
            // Both passes share the module's parsed symbol table and DWARF.
            let own;
            let symbolizer = match kept {
                Some(s) => s,
                None => {
                    own = new_symbolizer();
                    &own
                }
            };
            let Some(found) = symbolize_module(symbolizer, info, source, &offsets, debug_dirs, dwarf) else { continue };
            for (&offset, (basic, detailed)) in offsets.iter().zip(found) {
                let frames = match (basic, detailed) {
                    (basic, Some(Symbolized::Sym(sym))) => {
                        let mut frames = frames_of(&sym, module, offset, &mut files);
                        // The module's own name for the same function (the
                        // exported one rather than a debug file's local alias).
                        if let Some(Symbolized::Sym(b)) = &basic {
                            if b.addr == sym.addr {
                                frames[0].name = Arc::from(&*b.name);
                            }
                        }
                        frames
                    }
                    (Some(Symbolized::Sym(sym)), _) => frames_of(&sym, module, offset, &mut files),
                    _ => continue,
                };
                names.insert((module, offset), frames.into());
            }
        }
        tracing::debug!(module = %info.path, offsets = offsets.len(), debug_file = ?info.debug_file, elapsed = ?started.elapsed(), "symbolized");
        // The symbol tables just read stay mapped, not resident: the
        // first window reads every module's (7 MiB under the soak).
        crate::sys::mem::drop_clean_file_pages(crate::sys::mem::Code::Kept);
    }
    names
}

/// Per offset of one module: what its own symbol tables say, and what
/// DWARF (its own or a debug file's) says; `None` when the module cannot
/// be read at all.
type Found<'a> = Vec<(Option<Symbolized<'a>>, Option<Symbolized<'a>>)>;

fn symbolize_module<'a>(
    symbolizer: &'a Symbolizer,
    info: &mut Module,
    source: Result<PathBuf, String>,
    offsets: &[u64],
    debug_dirs: &[PathBuf],
    dwarf: bool,
) -> Option<Found<'a>> {
    let path = match source {
        Ok(p) => p,
        Err(reason) => {
            info.unreadable = Some(reason);
            return None;
        }
    };
    let elf = match ElfFile::read(&path) {
        Ok(elf) => elf,
        Err(err) => {
            info.unreadable = Some(err.to_string());
            return None;
        }
    };
    let basic = match symbolize_file(symbolizer, &path, offsets, false) {
        Ok(s) => s,
        Err(err) => {
            info.unreadable = Some(err.to_string());
            return None;
        }
    };
    let mut detailed = None;
    if let Some(debug) = info.build_id.as_deref().and_then(|b| debug_file_by_build_id(b, debug_dirs)) {
        // The debug file has the module's addresses but not its file layout.
        let virt: Vec<Option<u64>> = offsets.iter().map(|&o| elf.virt_offset(o)).collect();
        let known: Vec<u64> = virt.iter().flatten().copied().collect();
        let mut src = Elf::new(&debug);
        src.debug_syms = dwarf;
        match symbolizer.symbolize(&Source::Elf(src), Input::VirtOffset(&known)) {
            Ok(found) => {
                info.debug_file = Some(debug.to_string_lossy().into_owned());
                let mut found = found.into_iter();
                detailed = Some(virt.iter().map(|v| v.and_then(|_| found.next())).collect());
            }
            Err(err) => info.debug_info_unreadable = Some(format!("{}: {err}", debug.display())),
        }
    }
    if detailed.is_none() && dwarf {
        // The module's own DWARF, or a debug file its .gnu_debuglink names;
        // without either this only repeats the symbol table lookups.
        match symbolize_file(symbolizer, &path, offsets, true) {
            Ok(s) => detailed = Some(s.into_iter().map(Some).collect()),
            // Corrupt DWARF or a stale debug link: the symbol table still names.
            Err(err) => {
                info.debug_info_unreadable.get_or_insert_with(|| err.to_string());
            }
        }
    }
    let detailed: Vec<Option<Symbolized<'a>>> = detailed.unwrap_or_else(|| offsets.iter().map(|_| None).collect());
    Some(basic.into_iter().map(Some).zip(detailed).collect())
}

fn symbolize_file<'a>(
    symbolizer: &'a Symbolizer,
    path: &Path,
    offsets: &[u64],
    debug_syms: bool,
) -> blazesym::Result<Vec<Symbolized<'a>>> {
    let mut src = Elf::new(path);
    src.debug_syms = debug_syms;
    symbolizer.symbolize(&Source::Elf(src), Input::FileOffset(offsets))
}

/// The installed debug file of build id `hex`, if its build id matches.
pub fn debug_file_by_build_id(hex: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (head, rest) = hex.split_at(2);
    dirs.iter()
        .map(|d| d.join(".build-id").join(head).join(format!("{rest}.debug")))
        .find(|p| ElfFile::read(p).ok().and_then(|f| f.build_id_hex()).is_some_and(|id| id == hex))
}

/// The default directories of separate debug files.
pub fn default_debug_dirs() -> Vec<PathBuf> {
    DEBUG_DIRS.iter().map(PathBuf::from).collect()
}

/// Source file names, shared between frames.
#[derive(Default)]
struct FileNames(HashMap<PathBuf, Arc<str>>);

impl FileNames {
    fn line(&mut self, info: &CodeInfo<'_>) -> SourceLine {
        let path = match &info.dir {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(&info.file),
            _ => PathBuf::from(&info.file),
        };
        let file = self.0.entry(path).or_insert_with_key(|p| Arc::from(p.to_string_lossy())).clone();
        SourceLine { file, line: info.line.unwrap_or(0) }
    }
}

/// The function at `offset` and the functions inlined into it there.
fn frames_of(sym: &Sym<'_>, module: usize, offset: u64, files: &mut FileNames) -> Vec<Frame> {
    let frame = |name: &str, inlined: bool, line: Option<SourceLine>| Frame {
        name: Arc::from(name),
        kind: FrameKind::User,
        module: Some(module),
        address: offset,
        inlined,
        line,
    };
    let mut frames = Vec::with_capacity(1 + sym.inlined.len());
    frames.push(frame(&sym.name, false, sym.code_info.as_deref().map(|c| files.line(c))));
    for f in sym.inlined.iter() {
        frames.push(frame(&f.name, true, f.code_info.as_ref().map(|c| files.line(c))));
    }
    frames
}

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use super::*;
    use crate::stacks::{Mapping, MappingKind};

    const SOURCE: &str = r#"
static volatile unsigned long sink;
static inline __attribute__((always_inline)) void mix(unsigned long i) { sink += i * 2654435761u; }
static inline __attribute__((always_inline)) void inner_loop(void) { for (unsigned long i = 0; i < 1000; i++) mix(i); }
__attribute__((noinline)) void hot_outer(void) { inner_loop(); }
int main(void) { hot_outer(); return 0; }
"#;

    fn run(cmd: &mut Command) {
        let out = cmd.output().expect("gcc and binutils are needed (cargo xtask setup installs them)");
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Offsets of every byte of `hot_outer` in `bin` (built with symbols).
    fn hot_outer_offsets(bin: &Path) -> Vec<u64> {
        let out = Command::new("nm").arg("-S").arg(bin).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text.lines().find(|l| l.ends_with(" hot_outer")).expect("nm lists hot_outer");
        let mut f = line.split_whitespace().map(|x| u64::from_str_radix(x, 16));
        let (addr, size) = (f.next().unwrap().unwrap(), f.next().unwrap().unwrap());
        let elf = ElfFile::read(bin).unwrap();
        (addr..addr + size).map(|a| elf.file_offset(a).unwrap()).collect()
    }

    /// A module table holding `path` (read by path, as for a live process).
    fn table_with(path: &Path) -> (ModuleTable, usize) {
        use std::os::unix::fs::MetadataExt;
        let mut t = ModuleTable::default();
        let inode = std::fs::metadata(path).unwrap().ino();
        let m = Mapping {
            start: 1,
            end: 2,
            offset: 0,
            dev: (0, 0),
            inode,
            kind: MappingKind::File { path: path.into(), deleted: false },
        };
        let id = t.intern(std::process::id(), &m).unwrap();
        (t, id)
    }

    fn names(frames: &[Frame]) -> Vec<String> {
        frames.iter().map(|f| if f.inlined { format!("{}_[i]", f.name) } else { f.name.to_string() }).collect()
    }

    #[test]
    fn inlined_functions_and_lines_from_the_binary_or_its_build_id_debug_file() {
        let dir = tempfile::tempdir().unwrap();
        let (src, bin) = (dir.path().join("t.c"), dir.path().join("t"));
        std::fs::write(&src, SOURCE).unwrap();
        run(Command::new("gcc").args(["-O2", "-g", "-o"]).arg(&bin).arg(&src));
        let offsets = hot_outer_offsets(&bin);

        let check = |names_: &UserNames, module: usize| {
            let all: Vec<Vec<String>> =
                offsets.iter().filter_map(|o| names_.get(&(module, *o))).map(|f| names(f)).collect();
            assert_eq!(all.len(), offsets.len(), "every byte of hot_outer is named");
            assert!(all.iter().all(|f| f[0] == "hot_outer"), "{all:?}");
            assert!(all.contains(&vec!["hot_outer".into(), "inner_loop_[i]".into(), "mix_[i]".into()]), "{all:?}");
            let mixed = offsets.iter().map(|o| &names_[&(module, *o)]).find(|f| f.len() == 3).unwrap();
            let lines: Vec<(String, u32)> =
                mixed.iter().map(|f| f.line.as_ref().map(|l| (l.file_name().to_owned(), l.line)).unwrap()).collect();
            assert_eq!(lines, [("t.c".into(), 5), ("t.c".into(), 4), ("t.c".into(), 3)]);
        };

        // DWARF in the binary itself.
        let (mut t, id) = table_with(&bin);
        let found = name_modules(&mut t, HashMap::from([(id, offsets.clone())]), &[]);
        check(&found, id);
        assert_eq!(t.modules[id].debug_file, None);
        // Symbol tables only (the agent's default): the function, nothing inlined, no lines.
        let symbols_only = |t: &mut ModuleTable, id: usize, dirs: &[PathBuf]| {
            let found = name_modules_with(None, t, HashMap::from([(id, offsets.clone())]), dirs, false);
            let all: Vec<&Arc<[Frame]>> = offsets.iter().filter_map(|o| found.get(&(id, *o))).collect();
            assert_eq!(all.len(), offsets.len(), "every byte of hot_outer is named");
            assert!(all.iter().all(|f| f.len() == 1 && &*f[0].name == "hot_outer" && f[0].line.is_none()), "{all:?}");
        };
        symbols_only(&mut t, id, &[]);

        // Stripped, with its debug file under a build-id directory and no debug link.
        let debug_dir = dir.path().join("debug");
        let build_id = t.modules[id].build_id.clone().expect("gcc writes a build id");
        let debug = debug_dir.join(".build-id").join(&build_id[..2]).join(format!("{}.debug", &build_id[2..]));
        std::fs::create_dir_all(debug.parent().unwrap()).unwrap();
        run(Command::new("objcopy").arg("--only-keep-debug").arg(&bin).arg(&debug));
        let stripped = dir.path().join("t.stripped");
        run(Command::new("strip").arg("--strip-all").arg("-o").arg(&stripped).arg(&bin));
        let (mut t, id) = table_with(&stripped);
        let found = name_modules(&mut t, HashMap::from([(id, offsets.clone())]), std::slice::from_ref(&debug_dir));
        check(&found, id);
        assert_eq!(t.modules[id].debug_file.as_deref(), Some(debug.to_str().unwrap()));
        // Symbol tables only: the debug file's names a stripped binary lacks.
        let (mut t, id) = table_with(&stripped);
        symbols_only(&mut t, id, std::slice::from_ref(&debug_dir));
        assert_eq!(t.modules[id].debug_file.as_deref(), Some(debug.to_str().unwrap()));

        // Without it: unnamed, not guessed.
        let (mut t, id) = table_with(&stripped);
        let found = name_modules(&mut t, HashMap::from([(id, offsets.clone())]), &[dir.path().join("none")]);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!((t.modules[id].unreadable.as_ref(), t.modules[id].debug_file.as_ref()), (None, None));

        // A debug file of another build is refused.
        std::fs::write(&debug, b"not this one").unwrap();
        assert_eq!(debug_file_by_build_id(&build_id, &[debug_dir]), None);
    }

    #[test]
    fn a_module_that_is_not_elf_is_unreadable_and_named_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("code.bin");
        std::fs::write(&path, [0x90u8; 4096]).unwrap();
        let (mut t, id) = table_with(&path);
        let found = name_modules(&mut t, HashMap::from([(id, vec![0x10])]), &[]);
        assert!(found.is_empty());
        assert_eq!(t.modules[id].unreadable.as_deref(), Some("not an ELF file"));
    }
}
