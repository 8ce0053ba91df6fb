//! Real tests: this very process, C programs compiled here with and
//! without frame pointers, and real unreadable or corrupt modules.

use std::{
    hint::black_box,
    io::{BufRead as _, BufReader},
    os::unix::io::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use blazesym::symbolize::{source::Process, source::Source, Input, Symbolized, Symbolizer};
use profiler_common::{UserRegs, MAX_USER_STACK_BYTES};

use super::{
    address_space::AddressSpace,
    elf::read_unwind_info,
    module_cache::{ModuleCache, Resolved},
    ptrace_sample::{read_stack, sample_thread},
    *,
};

/// Held by tests that map files into this process, and by tests that
/// expect this process's set of modules not to change under them.
static OWN_MAPPINGS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn own_mappings() -> std::sync::MutexGuard<'static, ()> {
    OWN_MAPPINGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Function names of unwound frames, looked up in the live process `pid`.
fn names(pid: u32, frames: &[u64]) -> Vec<String> {
    let lookup: Vec<u64> = frames.iter().enumerate().map(|(i, &a)| if i == 0 { a } else { a - 1 }).collect();
    let src = Source::Process(Process::new(pid.into()));
    // The symbolizer maps files, and unmaps them when dropped.
    let _mapping = crate::sys::mem::mapping_files();
    let symbolizer = Symbolizer::new();
    let symbolized = symbolizer.symbolize(&src, Input::AbsAddr(&lookup)).expect("symbolize");
    symbolized
        .iter()
        .map(|s| match s {
            Symbolized::Sym(sym) => sym.name.to_string(),
            Symbolized::Unknown(_) => "?".to_string(),
        })
        .collect()
}

/// Position of the first frame whose name contains `needle`.
fn position(names: &[String], needle: &str) -> Option<usize> {
    names.iter().position(|n| n.contains(needle))
}

// ---------------------------------------------------------------------------
// This process.

/// The registers of this very function and a copy of the stack above them.
#[inline(never)]
fn capture_here() -> (UserRegs, Vec<u8>) {
    let regs = own_regs();
    let stack = read_stack(std::process::id(), regs.sp, MAX_USER_STACK_BYTES).expect("copy own stack");
    (regs, stack)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn own_regs() -> UserRegs {
    let (ip, sp, fp): (u64, u64, u64);
    // SAFETY: reads three registers into outputs; touches no memory.
    unsafe {
        std::arch::asm!(
            "lea {ip}, [rip]",
            "mov {sp}, rsp",
            "mov {fp}, rbp",
            ip = out(reg) ip,
            sp = out(reg) sp,
            fp = out(reg) fp,
            options(nomem, nostack, preserves_flags),
        );
    }
    UserRegs { ip, sp, fp, lr: 0 }
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn own_regs() -> UserRegs {
    let (ip, sp, fp, lr): (u64, u64, u64, u64);
    // SAFETY: reads four registers into outputs; touches no memory.
    unsafe {
        std::arch::asm!(
            "adr {ip}, .",
            "mov {sp}, sp",
            "mov {fp}, x29",
            "mov {lr}, x30",
            ip = out(reg) ip,
            sp = out(reg) sp,
            fp = out(reg) fp,
            lr = out(reg) lr,
            options(nomem, nostack, preserves_flags),
        );
    }
    UserRegs { ip, sp, fp, lr }
}

// Each level does work after its call, so that no call is a tail call.
#[inline(never)]
fn chain_inner(out: &mut Option<(UserRegs, Vec<u8>)>, x: u64) -> u64 {
    *out = Some(capture_here());
    black_box(x) + 1
}

#[inline(never)]
fn chain_middle(out: &mut Option<(UserRegs, Vec<u8>)>, x: u64) -> u64 {
    black_box(chain_inner(out, x + 1)) * 3
}

#[inline(never)]
fn chain_outer(out: &mut Option<(UserRegs, Vec<u8>)>, x: u64) -> u64 {
    black_box(chain_middle(out, x + 2)) + 5
}

#[test]
fn unwinds_this_process_through_a_known_chain() {
    unwind_a_known_chain();
}

/// The test's body in a frame of its own: the test function itself may be
/// inlined into the harness's closure, depending on the crate's codegen.
#[inline(never)]
fn unwind_a_known_chain() {
    let _own = own_mappings();
    let mut captured = None;
    black_box(chain_outer(&mut captured, 1));
    let (regs, stack) = captured.expect("captured");
    let pid = std::process::id();

    let mut unwinder = Unwinder::new();
    let mut out = [0u64; 128];
    let r = unwinder.unwind(pid, &regs, &stack, &mut out);
    let frames = &out[..r.frames];
    let names = names(pid, frames);
    eprintln!("{r:?}\n{names:#?}");

    assert_eq!(frames[0], regs.ip);
    let at = |n| position(&names, n).unwrap_or_else(|| panic!("{n} not unwound: {names:#?}"));
    assert_eq!(at("capture_here"), 0);
    assert_eq!(at("chain_inner"), 1);
    assert_eq!(at("chain_middle"), 2);
    assert_eq!(at("chain_outer"), 3);
    assert_eq!(at("unwind_a_known_chain"), 4);
    // The test thread's outermost frame is glibc's clone3, whose CFI marks
    // the end of the stack.
    assert_eq!(r.stop, StopReason::Complete, "{names:#?}");

    let stats = unwinder.stats();
    assert_eq!(stats.samples, 1);
    assert_eq!(stats.frames, r.frames as u64);
    assert_eq!(stats.stops.complete, 1);
    assert!(stats.modules_loaded >= 2, "{stats:?}");
    assert!(stats.modules_failed.is_empty(), "{stats:?}");
    assert!(stats.cache_bytes > 0 && stats.unwind_ns > 0);

    // A second sample from the same place reads nothing and gives the same.
    let mut again = [0u64; 128];
    let r2 = unwinder.unwind(pid, &regs, &stack, &mut again);
    assert_eq!(r2, r);
    assert_eq!(&again[..r2.frames], frames);
    assert_eq!(unwinder.stats().maps_reads, 1);
    assert_eq!(unwinder.stats().modules_loaded, stats.modules_loaded);

    // A short `out` stops at the depth limit, a short copy at its end.
    let mut three = [0u64; 3];
    assert_eq!(unwinder.unwind(pid, &regs, &stack, &mut three), Unwound { frames: 3, stop: StopReason::DepthLimit });
    assert_eq!(&three, &frames[..3]);
    let r3 = unwinder.unwind(pid, &regs, &stack[..256], &mut out);
    assert_eq!(r3.stop, StopReason::StackCopyEnd);
    assert!(r3.frames >= 1 && r3.frames < r.frames);
    assert_eq!(unwinder.unwind(pid, &regs, &stack, &mut []), Unwound { frames: 0, stop: StopReason::DepthLimit });

    unwinder.forget(pid);
    assert_eq!(unwinder.stats().processes, 0);
    assert_eq!(unwinder.unwind(pid, &regs, &stack, &mut out), r);
    assert_eq!(unwinder.stats().modules_loaded, stats.modules_loaded, "modules stay cached after forget");
}

#[test]
fn addresses_in_no_mapping_stop_and_rate_limit_maps_reads() {
    let pid = std::process::id();
    let (regs, stack) = capture_here();
    let mut unwinder = Unwinder::new();
    let mut out = [0u64; 64];
    let bogus = UserRegs { ip: 0x10, ..regs };
    for _ in 0..100 {
        assert_eq!(unwinder.unwind(pid, &bogus, &stack, &mut out), Unwound { frames: 1, stop: StopReason::NotMapped });
        assert_eq!(out[0], 0x10);
    }
    // One read at first use; the unknown address re-reads at most once a second.
    assert_eq!(unwinder.stats().maps_reads, 1);
    std::thread::sleep(MAPS_REREAD_INTERVAL);
    unwinder.unwind(pid, &bogus, &stack, &mut out);
    assert_eq!(unwinder.stats().maps_reads, 2);
    assert_eq!(unwinder.stats().stops.not_mapped, 101);
}

#[test]
fn code_mapped_after_the_first_read_is_found_on_the_next_read() {
    let _own = own_mappings();
    let pid = std::process::id();
    let (regs, stack) = capture_here();
    let mut unwinder = Unwinder::new();
    let mut out = [0u64; 64];
    assert_eq!(unwinder.unwind(pid, &regs, &stack, &mut out).stop, StopReason::Complete);

    let dir = tempfile::tempdir().expect("tempdir");
    let lib = compile(dir.path(), "late", PROGRAM, &["-O2", "-fomit-frame-pointer"]);
    let mapped = MappedExec::new(&lib);
    std::thread::sleep(MAPS_REREAD_INTERVAL);
    // An instruction pointer in the new mapping: the maps are read again and
    // the module loaded (the walk from there is garbage).
    let loaded = unwinder.stats().modules_loaded;
    unwinder.unwind(pid, &UserRegs { ip: mapped.start + 0x10, ..regs }, &stack, &mut out);
    assert_eq!(unwinder.stats().maps_reads, 2);
    assert_eq!(unwinder.stats().modules_loaded, loaded + 1);
    assert!(unwinder.stats().modules_failed.is_empty(), "{:?}", unwinder.stats().modules_failed);
}

// ---------------------------------------------------------------------------
// A C program without frame pointers.

/// Spins three calls deep below `main`, with `rbp` overwritten so that only
/// the CFI can walk the stack. Prints `ready` once spinning.
const PROGRAM: &str = r#"
#include <stdio.h>
volatile int stop_spinning;
volatile unsigned long sink;
__attribute__((noipa)) unsigned long c_level(unsigned long x) {
    puts("ready");
    fflush(stdout);
#if defined(__x86_64__) && defined(CLOBBER_FP)
    __asm__ volatile("mov $0x1234, %%rbp" ::: "rbp");
#endif
    while (!stop_spinning)
        sink += x;
    return sink;
}
__attribute__((noipa)) unsigned long b_level(unsigned long x) {
    unsigned long buf[8];
    for (int i = 0; i < 8; i++)
        buf[i] = sink + x + i;
    return c_level(buf[x & 7]) + buf[3];
}
__attribute__((noipa)) unsigned long a_level(unsigned long x) { return b_level(x * 3) + 1; }
__attribute__((noipa)) unsigned long d1(unsigned long x) { unsigned long v[4] = {x, x+1, x+2, x+3}; sink += v[x & 3]; return a_level(v[1]) + v[2]; }
__attribute__((noipa)) unsigned long d2(unsigned long x) { unsigned long v[4] = {x, x+2, x+4, x+6}; sink += v[x & 3]; return d1(v[1]) + v[2]; }
__attribute__((noipa)) unsigned long d3(unsigned long x) { unsigned long v[4] = {x, x+3, x+6, x+9}; sink += v[x & 3]; return d2(v[1]) + v[2]; }
int main(int argc, char **argv) { (void)argv; return (int)d3((unsigned long)argc); }
"#;

fn compile(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, source).expect("write C source");
    let status = Command::new("gcc").args(flags).arg("-o").arg(&exe).arg(&src).status().expect("run gcc");
    assert!(status.success(), "gcc {flags:?} failed");
    exe
}

/// A child killed when dropped.
struct Spinner(Child);

impl Spinner {
    fn start(exe: &Path) -> Self {
        let mut child = Command::new(exe).stdout(Stdio::piped()).spawn().expect("start the C program");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read ready");
        assert_eq!(line.trim(), "ready");
        Spinner(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn unwinds_a_c_program_without_frame_pointers_from_main_to_the_leaf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile(dir.path(), "nofp", PROGRAM, &["-O2", "-fomit-frame-pointer", "-DCLOBBER_FP"]);
    let child = Spinner::start(&exe);
    let pid = child.pid();

    let mut unwinder = Unwinder::new();
    let mut out = [0u64; 128];
    for _ in 0..5 {
        let sample = sample_thread(pid, pid, 16384).expect("ptrace sample");
        let r = unwinder.unwind(pid, &sample.regs, &sample.stack, &mut out);
        let names = names(pid, &out[..r.frames]);
        eprintln!("{r:?} {names:?}");
        let want = ["c_level", "b_level", "a_level", "d1", "d2", "d3", "main"];
        let got: Vec<usize> = want
            .iter()
            .map(|w| names.iter().position(|n| n == w).unwrap_or_else(|| panic!("{w} missing: {names:?}")))
            .collect();
        // In order and adjacent; the sample may also catch c_level inside
        // libc, finishing its fflush.
        assert_eq!(got, (got[0]..got[0] + want.len()).collect::<Vec<_>>(), "{names:?}");
        assert_eq!(r.stop, StopReason::Complete, "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some("_start"), "{names:?}");
    }
    // This Debian's libc is built without frame pointers, and so is the program.
    assert_eq!(unwinder.frame_pointers_suffice(pid), Some(false));

    // With no CFI usable (every module over a zero-byte limit) the same
    // stack falls back to frame pointers, which the program broke: the
    // walk stops early. This is what the test above proves CFI does.
    let mut fp_only = Unwinder::with_limits(Limits { module_bytes: 0, ..Limits::default() });
    let sample = sample_thread(pid, pid, 16384).expect("ptrace sample");
    let r = fp_only.unwind(pid, &sample.regs, &sample.stack, &mut out);
    let names = names(pid, &out[..r.frames]);
    assert!(!names.iter().any(|n| n == "main"), "{names:?}");
    assert_eq!(r.stop, StopReason::NoUnwindInfo, "{names:?}");
    let stats = fp_only.stats();
    assert!(
        stats.modules_failed.iter().any(|f| f.path == exe.to_string_lossy() && f.reason.contains("limit")),
        "{:?}",
        stats.modules_failed
    );
    assert_eq!(fp_only.frame_pointers_suffice(pid), None);
}

#[test]
fn judges_frame_pointers_from_the_cfi() {
    let _own = own_mappings();
    let dir = tempfile::tempdir().expect("tempdir");
    let with = compile(dir.path(), "fp", PROGRAM, &["-O2", "-fno-omit-frame-pointer"]);
    let without = compile(dir.path(), "nofp", PROGRAM, &["-O2", "-fomit-frame-pointer"]);
    let census = |path: &Path| {
        let file = std::fs::File::open(path).expect("open");
        let cache = object::ReadCache::new(&file);
        read_unwind_info(&cache, u64::MAX).expect("read").census.expect("has CFI")
    };
    let fp = census(&with);
    let nofp = census(&without);
    eprintln!("-fno-omit-frame-pointer: {fp:?}\n-fomit-frame-pointer: {nofp:?}");
    assert!(fp.keeps_frame_pointers(), "{fp:?}");
    assert!(!nofp.keeps_frame_pointers(), "{nofp:?}");
    // What this machine's system modules look like (informative).
    for path in ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/python3.11", "/lib64/ld-linux-x86-64.so.2"] {
        if let Ok(file) = std::fs::File::open(path) {
            let cache = object::ReadCache::new(&file);
            if let Ok(info) = read_unwind_info(&cache, u64::MAX) {
                eprintln!("{path}: {:?}", info.census);
            }
        }
    }
    // The judgement of a whole process: defined for this one.
    let mut unwinder = Unwinder::new();
    let pid = std::process::id();
    assert!(unwinder.frame_pointers_suffice(pid).is_some());
    for (m, r) in unwinder.spaces[&pid].mappings.iter().zip(&unwinder.spaces[&pid].resolved) {
        if let Resolved::Module(module) = r {
            eprintln!("{}: {:?}", m.name(), module.info.census);
        }
    }
    assert!(unwinder.stats().modules_failed.is_empty(), "{:?}", unwinder.stats().modules_failed);
}

// ---------------------------------------------------------------------------
// Modules that cannot be used.

/// A file mapped executable into this process, unmapped when dropped.
struct MappedExec {
    start: u64,
    len: usize,
}

impl MappedExec {
    /// Map the first executable segment of `path` (or its first page if it
    /// is no ELF file).
    fn new(path: &Path) -> Self {
        let bytes = std::fs::read(path).expect("read");
        let offset = object::read::elf::ElfFile64::<object::Endianness>::parse(&bytes[..])
            .ok()
            .and_then(|f| {
                use object::read::elf::ProgramHeader as _;
                let e = f.endian();
                f.elf_program_headers()
                    .iter()
                    .find(|p| p.p_type(e) == object::elf::PT_LOAD && p.p_flags(e) & object::elf::PF_X != 0)
                    .map(|p| p.p_offset(e) & !0xfff)
            })
            .unwrap_or(0);
        let file = std::fs::File::open(path).expect("open");
        let len = 4096;
        // SAFETY: a fresh private mapping of a file we own; nothing else
        // refers to that address range.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap {}", path.display());
        MappedExec { start: p as u64, len }
    }
}

impl Drop for MappedExec {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.start as *mut libc::c_void, self.len) };
    }
}

#[test]
fn corrupt_modules_mapped_executable_are_recorded_not_fatal() {
    let _own = own_mappings();
    let dir = tempfile::tempdir().expect("tempdir");
    // Not an ELF file at all.
    let junk = dir.path().join("junk.so");
    std::fs::write(&junk, vec![0xabu8; 8192]).expect("write");
    // A real ELF file whose .eh_frame is garbage.
    let exe = compile(dir.path(), "victim", PROGRAM, &["-O2", "-fomit-frame-pointer"]);
    let mut bytes = std::fs::read(&exe).expect("read");
    let (off, size) = {
        use object::{Object as _, ObjectSection as _};
        let f = object::File::parse(&bytes[..]).expect("parse");
        let s = f.section_by_name(".eh_frame").expect(".eh_frame");
        let (o, n) = s.file_range().expect("in file");
        (o as usize, n as usize)
    };
    bytes[off..off + size].fill(0xff);
    let bad_cfi = dir.path().join("bad_cfi");
    std::fs::write(&bad_cfi, &bytes).expect("write");

    let junk_map = MappedExec::new(&junk);
    let bad_map = MappedExec::new(&bad_cfi);
    let pid = std::process::id();
    let (regs, stack) = capture_here();
    let mut unwinder = Unwinder::new();
    let mut out = [0u64; 64];
    // Samples "in" the broken modules walk with frame pointers, whatever
    // that gives, without panicking.
    for ip in [junk_map.start + 0x10, bad_map.start + 0x10] {
        let r = unwinder.unwind(pid, &UserRegs { ip, ..regs }, &stack, &mut out);
        assert!(r.frames >= 1);
        assert_eq!(out[0], ip, "{r:?}");
        // How far the frame-pointer fallback gets depends on whether this
        // test binary keeps frame pointers (debug) or not (release): a
        // garbage return address ends the walk as `NotMapped`, which is fine.
    }
    // Unknown while a module is unreadable, unless another module (this
    // Debian's libc) says no.
    assert_ne!(unwinder.frame_pointers_suffice(pid), Some(true));
    let failed = unwinder.stats().modules_failed;
    eprintln!("{failed:#?}");
    let reason = |p: &Path| {
        failed
            .iter()
            .find(|f| f.path == p.to_string_lossy())
            .map(|f| f.reason.clone())
            .unwrap_or_else(|| panic!("{} not recorded: {failed:?}", p.display()))
    };
    assert!(reason(&junk).contains("not an ELF file"), "{failed:?}");
    assert!(reason(&bad_cfi).contains("corrupt .eh_frame"), "{failed:?}");
    // Recorded once, however often they are met.
    unwinder.forget(pid);
    unwinder.frame_pointers_suffice(pid);
    assert_eq!(unwinder.stats().modules_failed.len(), failed.len());
    // The rest of the process still unwinds.
    assert_eq!(unwinder.unwind(pid, &regs, &stack, &mut out).stop, StopReason::Complete);
}

#[test]
fn modules_of_a_process_that_exited_are_recorded_not_fatal() {
    let mut child = Command::new("sleep").arg("30").spawn().expect("spawn sleep");
    let pid = child.id();
    // Wait for the dynamic loader to map libc.
    let mut maps = String::new();
    for _ in 0..500 {
        maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
        if maps.contains("libc.so") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");

    // The maps were read, then the process went away before its modules
    // were opened.
    let mut modules = ModuleCache::new(Limits::default());
    let space = AddressSpace::from_maps(pid, &maps, &mut modules, None);
    let files = space.mappings.iter().filter(|m| matches!(m.backing, maps::Backing::File { .. })).count();
    assert!(files >= 2, "{maps}");
    assert!(space.resolved.iter().all(|r| !matches!(r, Resolved::Module(_))));
    assert_eq!(modules.failures().len(), files + 1, "files and the vDSO: {:?}", modules.failures());
    for f in modules.failures() {
        assert!(f.reason.contains("cannot"), "{f:?}");
    }

    // A pid that is gone entirely.
    let mut unwinder = Unwinder::new();
    let mut out = [0u64; 8];
    let regs = UserRegs { ip: 0x401000, sp: 0x7fff0000, fp: 0, lr: 0 };
    assert_eq!(unwinder.unwind(pid, &regs, &[0; 64], &mut out), Unwound { frames: 1, stop: StopReason::NotMapped });
    assert_eq!(unwinder.frame_pointers_suffice(pid), None);
}

#[test]
fn a_deleted_or_replaced_file_is_never_read_under_its_old_path() {
    let mut modules = ModuleCache::new(Limits::default());
    let pid = std::process::id();
    // Ranges this process does not map, so map_files has no such entry.
    let text = "\
10000-11000 r-xp 00000000 fe:01 424242 /bin/sh (deleted)
20000-21000 r-xp 00000000 fe:01 424242 /bin/sh
30000-31000 r-xp 00000000 fe:01 424242 /nonexistent/libgone.so
";
    let space = AddressSpace::from_maps(pid, text, &mut modules, None);
    assert!(space.resolved.iter().all(|r| matches!(r, Resolved::Failed)));
    let reasons: Vec<&str> = modules.failures().iter().map(|f| f.reason.as_str()).collect();
    assert!(reasons[0].contains("deleted"), "{reasons:?}");
    assert!(reasons[1].contains("replaced"), "{reasons:?}");
    assert!(reasons[2].contains("cannot open"), "{reasons:?}");
}

#[test]
fn the_cache_limit_fails_new_modules_and_frees_unused_ones() {
    let _own = own_mappings();
    let pid = std::process::id();
    let (regs, stack) = capture_here();
    let mut out = [0u64; 128];
    // Room for nothing: every module fails, unwinding degrades to frame pointers.
    let mut tiny = Unwinder::with_limits(Limits { module_bytes: 64 << 20, total_bytes: 1 });
    let r = tiny.unwind(pid, &regs, &stack, &mut out);
    assert!(r.frames >= 1);
    let failed = tiny.stats().modules_failed;
    assert!(!failed.is_empty() && failed.iter().all(|f| f.reason.contains("cache limit")), "{failed:?}");
    assert_eq!(tiny.stats().modules_loaded, 0);

    // Room for this process's modules: after it is forgotten they make
    // room for others.
    let mut unwinder = Unwinder::new();
    unwinder.unwind(pid, &regs, &stack, &mut out);
    let bytes = unwinder.modules.bytes() as u64;
    let mut bounded = Unwinder::with_limits(Limits { module_bytes: 64 << 20, total_bytes: bytes });
    assert_eq!(bounded.unwind(pid, &regs, &stack, &mut out).stop, StopReason::Complete);
    bounded.forget(pid);
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile(dir.path(), "other", PROGRAM, &["-O2", "-fomit-frame-pointer", "-DCLOBBER_FP"]);
    let child = Spinner::start(&exe);
    let sample = sample_thread(child.pid(), child.pid(), 16384).expect("sample");
    let r = bounded.unwind(child.pid(), &sample.regs, &sample.stack, &mut out);
    assert_eq!(r.stop, StopReason::Complete, "{:?}", bounded.stats());
    assert!(bounded.modules.bytes() as u64 <= bytes);
    assert!(bounded.stats().modules_failed.is_empty(), "{:?}", bounded.stats().modules_failed);
}
