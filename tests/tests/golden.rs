//! Golden outputs: a small capture committed as its samples file
//! (tests/golden/thread_states/capture, 2 s of the thread_states workload
//! with `--pid`), re-rendered with `tailprof report`, gives byte-identical
//! folded stacks, pprof profile and summary.json. The user side is being
//! reshaped into a pipeline of windows (issue 14); what it renders from the
//! same data must not move.
//!
//! After an intended change of an output, rewrite the expected files with
//! `TAILPROF_BLESS=1` and commit them with the change that explains it.

use std::path::Path;

use tailprof_e2e::tailprof_bin;

/// The files compared, as `report -o DIR` writes them.
const FILES: [&str; 5] = ["stacks.folded", "wallclock.folded", "offcpu.folded", "profile.pb.gz", "summary.json"];

#[test]
fn report_of_a_committed_capture_renders_byte_identical_outputs() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/thread_states");
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(tailprof_bin())
        .arg("report")
        .arg(golden.join("capture"))
        .arg("-o")
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "tailprof report of the golden capture failed: {status}");
    let bless = std::env::var_os("TAILPROF_BLESS").is_some();
    let mut differ = Vec::new();
    for f in FILES {
        let got = std::fs::read(out.path().join(f)).unwrap_or_else(|e| panic!("report wrote no {f}: {e}"));
        let expected_path = golden.join("expected").join(f);
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read(&expected_path).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if got != expected {
            differ.push(format!(
                "{f}: {} bytes rendered, {} expected (first difference at byte {})",
                got.len(),
                expected.len(),
                got.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(got.len().min(expected.len()))
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "the golden capture renders differently (TAILPROF_BLESS=1 rewrites the expected files after an intended change):\n{}",
        differ.join("\n")
    );
}
