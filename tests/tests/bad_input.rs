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
