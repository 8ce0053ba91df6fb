//! Bad input: one clear sentence, a non-zero exit, no panic, and no file
//! left pretending to be whole.

use std::{os::unix::fs::PermissionsExt, process::Command};

use tailprof_e2e::*;

#[test]
fn bad_duration() {
    assert_clean_failure(&tailprof(&["record", "--duration", "abc"]), "not a duration");
    assert_clean_failure(&tailprof(&["record", "--duration", "0s"]), "zero");
}

#[test]
fn bad_frequency() {
    assert_clean_failure(&tailprof(&["record", "--frequency", "0"]), "frequency");
}

#[test]
fn comm_longer_than_the_kernel_keeps() {
    assert_clean_failure(&tailprof(&["record", "--comm", "a-very-long-thread-name"]), "15 bytes");
}

#[test]
fn pid_that_does_not_exist() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = tailprof(&["record", "--pid", "999999999", "-d", "1s", "-o", out.to_str().unwrap()]);
    assert_clean_failure(&o, "no process with pid 999999999");
    assert!(!out.exists(), "an output directory was created for a run that could not start");
}

#[test]
fn output_directory_that_cannot_be_written() {
    require_root();
    // /proc refuses new directories, even to root.
    assert_clean_failure(
        &tailprof(&["record", "-d", "1s", "-o", "/proc/tailprof-out"]),
        "cannot write to the output directory",
    );
    // A read-only file system.
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "ro,size=1m", "tailprof-test"]).arg(&ro).status().unwrap();
    assert!(mounted.success(), "could not mount a read-only tmpfs");
    let o = tailprof(&["record", "-d", "1s", "-o", ro.to_str().unwrap()]);
    let _ = Command::new("umount").arg(&ro).status();
    assert_clean_failure(&o, "cannot write to the output directory");
}

#[test]
fn missing_btf() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let o = tailprof(&["record", "-d", "1s", "--btf", "/nonexistent/vmlinux", "-o", dir.path().to_str().unwrap()]);
    assert_clean_failure(&o, "no BTF");
}

#[test]
fn not_root() {
    require_root();
    // Copy the binary where an unprivileged user can run it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("tailprof");
    std::fs::copy(tailprof_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(&bin)
        .args(["record", "-d", "1s", "-o", "/tmp/tailprof-not-root"])
        .output()
        .expect("setpriv (util-linux) runs the binary as nobody");
    assert_clean_failure(&o, "needs root");
}

#[test]
fn bad_state_hz() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for hz in ["0", "1001"] {
        assert_clean_failure(&tailprof(&["record", "--state-hz", hz, "-d", "1s", "-o", out]), "--state-hz");
    }
    // Snapshots need the scheduler hooks that --no-off-cpu turns off.
    assert_clean_failure(
        &tailprof(&["record", "--no-off-cpu", "--state-hz", "50", "-d", "1s", "-o", out]),
        "--no-off-cpu",
    );
}

#[test]
fn unknown_group_by_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = tailprof(&["record", "--group-by", "comm,bogus", "-d", "1s", "-o", out.to_str().unwrap()]);
    assert_clean_failure(&o, "unknown --group-by dimension 'bogus'");
    assert_clean_failure(&o, "valid: comm, process, pid");
    assert!(!out.exists(), "an output directory was created for a run that could not start");
}

/// Names of the files in `dir` (none when it does not exist).
fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn report_on_a_directory_that_is_not_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    assert_clean_failure(&tailprof(&["report", dir.path().to_str().unwrap()]), "samples.jsonl.zst");
    let left = files_in(dir.path());
    assert!(left.is_empty(), "a failed report wrote into the directory: {left:?}");
}

/// Record a short capture, copy it, let `damage` spoil the copy's
/// samples.jsonl.zst, and expect `report COPY -o OUT` to refuse it and write nothing.
fn report_on_damaged_samples(damage: impl FnOnce(&std::path::Path)) {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let (orig, copy, out) = (tmp.path().join("orig"), tmp.path().join("copy"), tmp.path().join("out"));
    record_ok(&orig, &["-d", "1s", "--no-off-cpu"]);
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(&orig).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let samples = copy.join("samples.jsonl.zst");
    assert!(samples.exists(), "record wrote no samples.jsonl.zst: {:?}", files_in(&orig));
    damage(&samples);
    let o = tailprof(&["report", copy.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_clean_failure(&o, "samples.jsonl.zst");
    assert_clean_failure(&o, "truncated or corrupt");
    let left = files_in(&out);
    assert!(left.is_empty(), "a failed report left files in its output directory: {left:?}");
}

#[test]
fn report_on_a_truncated_samples_file() {
    report_on_damaged_samples(|samples| {
        let len = std::fs::metadata(samples).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(samples).unwrap().set_len(len / 2).unwrap();
    });
}

#[test]
fn report_on_a_corrupt_samples_file() {
    report_on_damaged_samples(|samples| {
        let mut bytes = std::fs::read(samples).unwrap();
        // A one-second host-wide capture holds stacks and symbols: kilobytes.
        assert!(bytes.len() >= 256, "samples.jsonl.zst is only {} bytes", bytes.len());
        let mid = bytes.len() / 2 - 32;
        let mut x: u32 = 0x9e37_79b9;
        for b in &mut bytes[mid..mid + 64] {
            // xorshift32: fixed garbage, the same every run.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        std::fs::write(samples, bytes).unwrap();
    });
}

#[test]
fn noise_cpus_that_do_not_exist_or_are_malformed() {
    require_root();
    assert_clean_failure(&tailprof(&["noise", "-d", "1s", "--cpus", "4096"]), "CPU 4096 does not exist");
    assert_clean_failure(&tailprof(&["noise", "-d", "1s", "--cpus", "0-x"]), "--cpus 0-x");
    assert_clean_failure(&tailprof(&["noise", "-d", "1s", "--cpus", "3-1"]), "--cpus 3-1");
}

#[test]
fn noise_threshold_and_slo_that_are_malformed() {
    require_root();
    assert_clean_failure(
        &tailprof(&["noise", "-d", "1s", "--threshold", "5 parsecs"]),
        "'5 parsecs' is not a duration",
    );
    assert_clean_failure(&tailprof(&["noise", "-d", "1s", "--slo", "dsk=20ms"]), "dsk");
    assert_clean_failure(&tailprof(&["noise", "-d", "1s", "--slo", "runq=fast"]), "fast");
    assert_clean_failure(&tailprof(&["noise", "-d", "1s", "--slo", "syscall:nosuchcall=1ms"]), "nosuchcall");
    assert_clean_failure(&tailprof(&["record", "-d", "1s", "--slo", "runq"]), "runq");
}

#[test]
fn noise_options_of_the_other_tier_are_refused() {
    require_root();
    let continuous = |extra: &[&str]| tailprof(&[&["noise", "-d", "1s", "--tier", "continuous"], extra].concat());
    assert_clean_failure(
        &continuous(&["--pid", "1"]),
        "--pid (the victim view needs the scheduler hooks) works only with --tier deep",
    );
    assert_clean_failure(&continuous(&["--threshold", "5us"]), "--threshold");
    assert_clean_failure(&continuous(&["--slo", "runq=1ms"]), "--slo");
    assert_clean_failure(&continuous(&["--syscall-latency"]), "--syscall-latency");
    assert_clean_failure(&tailprof(&["noise", "-d", "1s", "-F", "199"]), "--tier continuous");
    assert_clean_failure(&tailprof(&["noise", "-d", "1s", "--tier", "shallow"]), "shallow");
}
