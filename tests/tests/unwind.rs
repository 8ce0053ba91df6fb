//! Truth tests for complete user stacks without frame pointers (`--unwind`)
//! and for naming their frames the way the user's own tools do.
//!
//! Ground truth, checked with `perf record --call-graph dwarf` on Debian 12
//! (glibc 2.36, python 3.11, node 20) when these tests were written:
//! - qsort_nofp (gcc -O2 -fomit-frame-pointer), ~97% of perf's samples:
//!   `_start; __libc_start_main_impl; __libc_start_call_main; main;
//!   tp_sort_rounds; __qsort_r (qsort_r); msort_with_tmp (x ~17 levels,
//!   static: `msort_with_tmp.part.0` in libc6-dbg, plus inlined copies);
//!   tp_qsort_cmp`. `qsort` itself tail-calls `qsort_r` and is not on the
//!   stack. The rest are samples in msort_with_tmp's merge and memcpy.
//!   With frame pointers perf gets `tp_qsort_cmp` alone; with an 8 KiB
//!   stack copy all of the above, with 512 bytes ~12% reach main.
//! - /usr/bin/python3.11 (stripped, no frame pointers), 100%: `_start;
//!   __libc_start_call_main; Py_BytesMain; Py_RunMain; _PyRun_AnyFileObject;
//!   ...; PyEval_EvalCode; _PyEval_EvalFrameDefault`. Debian's `main`
//!   tail-calls Py_BytesMain, so it is never on the stack; Py_RunMain is.
//! - tp-rust-nofp (release, force-frame-pointers=no), 100%: `main;
//!   std::rt::lang_start_internal; ...; tp_rust_nofp::main;
//!   tp_rust_nofp::tp_rust_outer; ::tp_rust_middle; ::tp_rust_inner;
//!   ::tp_rust_hot_spin`.
//! - node --perf-basic-prof, 100%: the leaf is named from /tmp/perf-PID.map,
//!   `JS:*tpHotJsFunction /path/hot_js.js:11:25` (`~`/`^` for its
//!   interpreted and baseline code).
//!
//! Each capture is 3 s; each test measures one process (`--pid`). The
//! harness runs end-to-end tests one at a time (`--test-threads=1`).

use std::path::{Path, PathBuf};

use tailprof_e2e::*;

const FREQ: &str = "199";
const CAPTURE: &str = "3s";
/// A spinning process gives ~600 samples in CAPTURE at FREQ; fewer than this
/// means the capture missed it (a loaded 2-core CI machine still gives ~370).
const MIN_SAMPLES: u64 = 100;

/// The function name of a folded frame: without a symbol version (`@GLIBC_..`),
/// an annotation after a space (` (inlined)`, a source line) or the hash
/// of a legacy-mangled Rust symbol (`::h0123456789abcdef`).
fn func(frame: &str) -> &str {
    let name = frame.split([' ', '@']).next().unwrap_or(frame);
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => head,
        _ => name,
    }
}

/// The frames of a folded stack below its group root (the comm), outermost first.
fn frames(stack: &str) -> Vec<&str> {
    stack.split(';').skip(1).collect()
}

/// Whether `frames` holds, in this order (outermost first, gaps allowed), one
/// frame matching each of `steps`.
fn in_order(frames: &[&str], steps: &[&dyn Fn(&str) -> bool]) -> bool {
    let mut rest = frames.iter();
    steps.iter().all(|step| rest.any(|f| step(f)))
}

/// (samples whose stack satisfies `pred`, all samples) over a folded file.
fn share(folded: &[(String, u64)], pred: impl Fn(&[&str]) -> bool) -> (u64, u64) {
    folded.iter().fold((0, 0), |(hit, all), (stack, n)| (if pred(&frames(stack)) { hit + n } else { hit }, all + n))
}

fn pct(hit: u64, all: u64) -> f64 {
    if all == 0 {
        0.0
    } else {
        100.0 * hit as f64 / all as f64
    }
}

/// The most frequent stacks, for failure messages.
fn top_stacks(folded: &[(String, u64)], n: usize) -> String {
    let mut v: Vec<&(String, u64)> = folded.iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    v.iter().take(n).map(|(s, c)| format!("    {c} {s}")).collect::<Vec<_>>().join("\n")
}

/// Record `pid` for CAPTURE at FREQ with `extra` options; the output directory.
fn record_pid(pid: u32, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pid = pid.to_string();
    let mut args = vec!["--pid", &pid, "-F", FREQ, "--duration", CAPTURE];
    args.extend_from_slice(extra);
    record_ok(dir.path(), &args);
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ---------------------------------------------------------------- qsort

fn qsort_bin() -> PathBuf {
    build_c_workload_as("qsort_nofp", "qsort_nofp", &["-fomit-frame-pointer"])
}

/// Where a C program's own frames begin: `main`, or the start-up code that
/// calls it (`_start`, glibc's `__libc_start_main` and its internal names).
fn program_entry(f: &str) -> bool {
    matches!(func(f), "main" | "_start" | "__libc_start_main" | "__libc_start_main_impl" | "__libc_start_call_main")
}

/// glibc's qsort family as its symbols name it: the exported `qsort` and
/// `qsort_r`, their internal aliases (libc6-dbg: `__qsort_r`, `__GI___qsort_r`,
/// `__GI_qsort`) and the static sorters (`msort_with_tmp`, also as the
/// compiler's `msort_with_tmp.part.0` clone, and the `_quicksort` fallback).
/// `libc.so.6+0x...` (an unnamed frame) is not one: the test wants a name.
fn qsort_family(f: &str) -> bool {
    let f = func(f);
    matches!(f, "qsort" | "qsort_r" | "__qsort_r" | "__GI___qsort_r" | "__GI_qsort" | "_quicksort" | "msort_with_tmp")
        || f.starts_with("msort_with_tmp.")
}

fn comparator(f: &str) -> bool {
    func(f) == "tp_qsort_cmp"
}

/// Samples of a qsort capture whose stack runs from main (or `_start`)
/// through the qsort family to the comparator, and all samples.
fn qsort_complete(folded: &[(String, u64)]) -> (u64, u64) {
    share(folded, |fr| in_order(fr, &[&program_entry, &qsort_family, &comparator]))
}

/// Tolerance: at least 90% of the process's samples (perf: ~97%; the rest is
/// qsort's own merging and memcpy, which have no comparator frame). The
/// denominator is every sample of the capture (only this pid is recorded).
fn assert_qsort_complete(mode: &str) {
    require_root();
    let w = Workload::start(&qsort_bin(), &["30"]);
    let dir = record_pid(w.pid, &["--unwind", mode]);
    let folded = folded(dir.path());
    let (hit, all) = qsort_complete(&folded);
    println!("--unwind {mode}: {hit} of {all} samples ({:.1}%) run main -> qsort -> tp_qsort_cmp", pct(hit, all));
    let summary = summary(dir.path());
    println!("summary.json unwind: {}", summary["unwind"]);
    assert!(all >= MIN_SAMPLES, "only {all} samples in a {CAPTURE} capture at {FREQ} Hz of a spinning process");
    assert!(
        hit as f64 >= 0.9 * all as f64,
        "--unwind {mode}: only {hit} of {all} samples ({:.1}%) run from main through qsort to tp_qsort_cmp; most frequent stacks:\n{}",
        pct(hit, all),
        top_stacks(&folded, 8)
    );
    if mode == "dwarf" {
        assert!(summary["unwind"].is_object(), "summary.json has no `unwind` statistics after --unwind dwarf");
    }
}

#[test]
fn qsort_without_frame_pointers_dwarf() {
    assert_qsort_complete("dwarf");
}

#[test]
fn qsort_without_frame_pointers_auto() {
    // The other tests here leave --unwind at its default, `auto`.
    assert_qsort_complete("auto");
}

/// What `dwarf` needs, shown by taking it away: frame pointers cannot walk
/// this program, and a 512-byte stack copy (`--user-stack-size 512`) does
/// not hold the frames up to main at most depths of the sort's recursion
/// (it needs ~2 KiB). Tolerance: none needed, only each share of complete
/// stacks below dwarf's with the default copy (perf: fp 0%, dwarf with 512
/// bytes ~12%, dwarf with 16 KiB ~97%); all three numbers are printed.
#[test]
fn qsort_frame_pointers_and_a_short_stack_copy_fall_short_of_dwarf() {
    require_root();
    let w = Workload::start(&qsort_bin(), &["30"]);
    let complete = |extra: &[&str]| {
        let folded = folded(record_pid(w.pid, extra).path());
        let (hit, all) = qsort_complete(&folded);
        println!(
            "{extra:?}: {hit} of {all} samples ({:.1}%) complete; most frequent stacks:\n{}",
            pct(hit, all),
            top_stacks(&folded, 3)
        );
        (hit, all)
    };
    let (dh, da) = complete(&["--unwind", "dwarf"]);
    let (fh, fa) = complete(&["--unwind", "fp"]);
    let (sh, sa) = complete(&["--unwind", "dwarf", "--user-stack-size", "512"]);
    let (dwarf, fp, short) = (pct(dh, da), pct(fh, fa), pct(sh, sa));
    let mut checks = Checks::default();
    checks.check(da >= MIN_SAMPLES && fa >= MIN_SAMPLES && sa >= MIN_SAMPLES, || {
        format!("too few samples: dwarf {da}, fp {fa}, dwarf with 512 bytes {sa}")
    });
    checks.check(fp < dwarf, || {
        format!("frame pointers ({fp:.1}%) did as well as dwarf ({dwarf:.1}%) on a program without them")
    });
    checks.check(short < dwarf, || {
        format!("a 512-byte stack copy ({short:.1}%) did as well as the default 16 KiB ({dwarf:.1}%): --user-stack-size is not applied")
    });
    checks.finish();
}

// ---------------------------------------------------------------- python

/// Debian's python3, not a pyenv or venv one earlier on PATH: Debian builds it
/// without frame pointers and strips it.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// Tolerance: at least 90% of the samples reach `Py_RunMain` or `main`
/// (perf: 100% reach Py_RunMain; Debian's main tail-calls Py_BytesMain).
#[test]
fn debian_python_reaches_py_runmain() {
    require_root();
    assert!(Path::new(DEBIAN_PYTHON).exists(), "{DEBIAN_PYTHON} is missing: install Debian's python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/busy_loop.py");
    let w = Workload::start(Path::new(DEBIAN_PYTHON), &[path_str(&script), "30"]);
    let dir = record_pid(w.pid, &[]);
    let folded = folded(dir.path());
    let (hit, all) = share(&folded, |fr| fr.iter().any(|f| matches!(func(f), "Py_RunMain" | "main")));
    println!("python3: {hit} of {all} samples ({:.1}%) reach Py_RunMain or main", pct(hit, all));
    assert!(all >= MIN_SAMPLES, "only {all} samples");
    assert!(
        hit as f64 >= 0.9 * all as f64,
        "only {hit} of {all} samples ({:.1}%) reach Py_RunMain or main; most frequent stacks:\n{}",
        pct(hit, all),
        top_stacks(&folded, 8)
    );
}

// ---------------------------------------------------------------- rust

/// Tolerance: at least 90% of the samples hold `tp_rust_nofp::main` and,
/// below it, the non-inlined chain down to `tp_rust_hot_spin` (perf: 100%).
/// Names are demangled (a trailing legacy hash is allowed).
#[test]
fn rust_release_without_frame_pointers() {
    require_root();
    let bin = build_cargo_workload("rust_nofp", "tp-rust-nofp", "-C force-frame-pointers=no");
    let w = Workload::start(&bin, &["30"]);
    let dir = record_pid(w.pid, &[]);
    let folded = folded(dir.path());
    let named = |want: &'static str| move |f: &str| func(f) == want;
    let main = named("tp_rust_nofp::main");
    let hot = named("tp_rust_nofp::tp_rust_hot_spin");
    let (both, all) = share(&folded, |fr| in_order(fr, &[&main, &hot]));
    let (chain, _) = share(&folded, |fr| {
        in_order(
            fr,
            &[
                &main,
                &named("tp_rust_nofp::tp_rust_outer"),
                &named("tp_rust_nofp::tp_rust_middle"),
                &named("tp_rust_nofp::tp_rust_inner"),
                &hot,
            ],
        )
    });
    println!(
        "rust: main..hot in {both} of {all} samples ({:.1}%), the whole chain in {chain} ({:.1}%)",
        pct(both, all),
        pct(chain, all)
    );
    assert!(all >= MIN_SAMPLES, "only {all} samples");
    let msg = |what: &str, n: u64| {
        format!(
            "{what} in only {n} of {all} samples ({:.1}%); most frequent stacks:\n{}",
            pct(n, all),
            top_stacks(&folded, 8)
        )
    };
    assert!(both as f64 >= 0.9 * all as f64, "{}", msg("tp_rust_nofp::main above tp_rust_hot_spin", both));
    assert!(chain as f64 >= 0.9 * all as f64, "{}", msg("main -> outer -> middle -> inner -> hot", chain));
}

// ---------------------------------------------------------------- node

const NODE: &str = "/usr/bin/node";

/// The JIT-compiled function is named from /tmp/perf-PID.map, in
/// stacks.folded and in flamegraph.svg. Tolerance: the name is in at least
/// half of the process's samples (perf: 100%; the margin is for V8's own
/// threads and compiles).
#[test]
fn node_perf_map_names_the_hot_js_function() {
    require_root();
    assert!(Path::new(NODE).exists(), "{NODE} is missing: install Node.js");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/hot_js.js");
    // --perf-basic-prof also makes V8 write a code log, by default into the
    // working directory: keep it in a temporary one.
    let v8_log = tempfile::tempdir().unwrap();
    let logfile = format!("--logfile={}", path_str(&v8_log.path().join("v8.log")));
    let w = Workload::start(
        Path::new(NODE),
        &["--perf-basic-prof", "--no-logfile-per-isolate", &logfile, path_str(&script), "30"],
    );
    // node leaves its map behind: removed when the test ends, passed or not.
    struct RemoveOnDrop(PathBuf);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _map = RemoveOnDrop(PathBuf::from(format!("/tmp/perf-{}.map", w.pid)));
    let dir = record_pid(w.pid, &[]);
    drop(w);
    let folded = folded(dir.path());
    let (hit, all) = share(&folded, |fr| fr.iter().any(|f| f.contains("tpHotJsFunction")));
    println!("node: tpHotJsFunction in {hit} of {all} samples ({:.1}%)", pct(hit, all));
    assert!(all >= MIN_SAMPLES, "only {all} samples");
    assert!(
        hit as f64 >= 0.5 * all as f64,
        "tpHotJsFunction in only {hit} of {all} samples ({:.1}%); most frequent stacks:\n{}",
        pct(hit, all),
        top_stacks(&folded, 8)
    );
    let svg = std::fs::read_to_string(dir.path().join("flamegraph.svg")).expect("flamegraph.svg");
    assert!(svg.contains("tpHotJsFunction"), "flamegraph.svg does not name tpHotJsFunction");
}

// ---------------------------------------------------------------- replaced binary

/// A binary deleted and replaced by another one at the same path while it
/// runs still resolves from what is mapped, not from what is on disk. The
/// impostor has the same code with the hot function renamed, at the same
/// offset. Tolerance: the original name in at least 90% of the samples (the
/// process only spins in it), the impostor's in none.
#[test]
fn deleted_and_replaced_binary_still_resolves() {
    require_root();
    let original = build_c_workload_as("replaced", "replaced_original", &["-DTP_HOT=tp_original_hot"]);
    let impostor = build_c_workload_as("replaced", "replaced_impostor", &["-DTP_HOT=tp_impostor_hot"]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tp-replaced");
    std::fs::copy(&original, &path).unwrap();
    let w = Workload::start(&path, &["30"]);
    std::fs::remove_file(&path).unwrap();
    std::fs::copy(&impostor, &path).unwrap();
    // The set-up, as the kernel sees it.
    let exe = std::fs::read_link(format!("/proc/{}/exe", w.pid)).unwrap();
    assert!(exe.to_string_lossy().ends_with(" (deleted)"), "test set-up: /proc/{}/exe is {}", w.pid, exe.display());

    let dir = record_pid(w.pid, &[]);
    let folded = folded(dir.path());
    let (hit, all) = share(&folded, |fr| fr.iter().any(|f| func(f) == "tp_original_hot"));
    let (wrong, _) = share(&folded, |fr| fr.iter().any(|f| func(f) == "tp_impostor_hot"));
    println!(
        "replaced binary: tp_original_hot in {hit} of {all} samples ({:.1}%), tp_impostor_hot in {wrong}",
        pct(hit, all)
    );
    assert!(all >= MIN_SAMPLES, "only {all} samples");
    assert_eq!(
        wrong,
        0,
        "frames named from the replacement on disk, not the running binary:\n{}",
        top_stacks(&folded, 8)
    );
    assert!(
        hit as f64 >= 0.9 * all as f64,
        "tp_original_hot in only {hit} of {all} samples ({:.1}%); most frequent stacks:\n{}",
        pct(hit, all),
        top_stacks(&folded, 8)
    );
}

// ---------------------------------------------------------------- bad input

/// An unknown method: a non-zero exit naming the bad value, one line listing
/// every valid method, no panic, no output directory.
#[test]
fn unknown_unwind_method() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = tailprof(&["record", "--unwind", "nope", "--duration", "1s", "-o", path_str(&out)]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "--unwind nope succeeded; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "tailprof panicked: {stderr}");
    let words = |l: &str| -> Vec<String> {
        l.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
    };
    assert!(stderr.contains("nope"), "stderr does not name the bad value: {stderr}");
    assert!(
        stderr.lines().any(|l| {
            let w = words(l);
            ["auto", "fp", "dwarf"].iter().all(|want| w.iter().any(|x| x == want))
        }),
        "no line of stderr lists the valid methods auto, fp, dwarf: {stderr}"
    );
    assert!(!out.exists(), "an output directory was created for a run that could not start");
}

// ---------------------------------------------------------------- the helpers themselves

#[test]
fn frame_matching_helpers() {
    assert_eq!(func("qsort_r@@GLIBC_2.8"), "qsort_r");
    assert_eq!(func("msort_with_tmp (inlined)"), "msort_with_tmp");
    assert_eq!(func("tp_rust_nofp::main::h38804547a49d67a3"), "tp_rust_nofp::main");
    assert_eq!(func("tp_rust_nofp::main"), "tp_rust_nofp::main");
    assert!(qsort_family("msort_with_tmp.part.0") && qsort_family("__GI___qsort_r") && !qsort_family("tp_qsort_cmp"));
    assert!(!qsort_family("libc.so.6+0x3f9c0"));
    let complete = "tp-qsort;_start;__libc_start_main_impl;__libc_start_call_main;main;tp_sort_rounds;qsort_r;\
                    msort_with_tmp;msort_with_tmp;tp_qsort_cmp;asm_sysvec_apic_timer_interrupt_[k]";
    let cut = "tp-qsort;msort_with_tmp;tp_qsort_cmp";
    let reversed = "tp-qsort;tp_qsort_cmp;qsort_r;main";
    let folded = vec![(complete.to_owned(), 7), (cut.to_owned(), 2), (reversed.to_owned(), 1)];
    assert_eq!(qsort_complete(&folded), (7, 10));
    assert_eq!(frames("comm;a;b"), ["a", "b"]);
}

// ---------------------------------------------------------------- off-CPU

/// Off-CPU stacks of code without frame pointers come from the snapshots'
/// copies of blocked threads' stacks (README, "Off-CPU stacks").
/// Ground truth: tp-reader is blocked all the time, half of it under
/// tp_wait_alpha and half under tp_wait_beta, in 200 ms waits (four
/// snapshot periods at the default 20 Hz). Tolerances: at least 80% of its
/// sleeping time in offcpu.folded has a complete stack main ->
/// tp_wait_alpha|tp_wait_beta -> read (the rest: the parts of waits the
/// snapshots could not vouch for, which keep the frame-pointer stack), and
/// alpha's share of the two lies within 50% ± 15 points.
#[test]
fn blocked_stacks_without_frame_pointers() {
    require_root();
    let bin = build_c_workload_as("blocked_nofp", "blocked_nofp", &["-fomit-frame-pointer"]);
    let w = Workload::start(&bin, &[]);
    let dir = tempfile::tempdir().unwrap();
    let pid = w.pid.to_string();
    record_ok(dir.path(), &["--pid", &pid, "--duration", "4s"]);
    let off = folded_file(dir.path(), "offcpu.folded");
    let reader: Vec<&(String, u64)> =
        off.iter().filter(|(s, _)| s.starts_with("tp-reader;") && s.contains("[sleeping]")).collect();
    let total: u64 = reader.iter().map(|(_, n)| n).sum();
    let is_read = |f: &str| func(f) == "read" || func(f).ends_with("_libc_read");
    let under = |wait: &str| -> u64 {
        reader
            .iter()
            .filter(|(s, _)| in_order(&frames(s), &[&|f| func(f) == "main", &|f| func(f) == wait, &is_read]))
            .map(|(_, n)| n)
            .sum()
    };
    let (alpha, beta) = (under("tp_wait_alpha"), under("tp_wait_beta"));
    let list: Vec<(String, u64)> = reader.iter().map(|(s, n)| (s.clone(), *n)).collect();
    println!(
        "tp-reader sleeping {} ms: alpha {} ms, beta {} ms ({:.1}% complete)",
        total / 1_000_000,
        alpha / 1_000_000,
        beta / 1_000_000,
        pct(alpha + beta, total)
    );
    assert!(total >= 3_000_000_000, "tp-reader slept only {total} ns in a 4 s capture:\n{}", top_stacks(&list, 8));
    assert!(
        (alpha + beta) as f64 >= 0.8 * total as f64,
        "only {:.1}% of tp-reader's sleeping time has a complete stack; stacks:\n{}",
        pct(alpha + beta, total),
        top_stacks(&list, 8)
    );
    let alpha_share = pct(alpha, alpha + beta);
    assert!((35.0..=65.0).contains(&alpha_share), "alpha has {alpha_share:.1}% of the complete time, not 50% ± 15");
    let summary = summary(dir.path());
    let unwound = &summary["unwind"]["off_cpu"];
    assert!(
        unwound["unwound_ns"].as_u64().unwrap_or(0) + unwound["estimated_ns"].as_u64().unwrap_or(0) > 0,
        "summary.json unwind.off_cpu says nothing was unwound: {unwound}"
    );
}
