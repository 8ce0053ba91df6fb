//! The web viewer in headless Chromium (tests/web/viewer.mjs --perf-only):
//! first render of a 100,000-node profile after its data arrives, draw
//! times while zooming and panning at 16k, 64k and 100k nodes, the bytes a
//! 100k-node tree takes on the wire (gzip, as the agent answers), and the
//! size of the assets. The profiles come from the mock API of
//! `web/scripts/serve.mjs --mock`, which serves the built `web/dist`.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::util::root;

/// The mock server, killed on drop.
struct Mock(Child);

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_mock(port: u16) -> anyhow::Result<Mock> {
    let child = Command::new("node")
        .current_dir(root().join("web"))
        .args(["scripts/serve.mjs", "--mock", "--nodes", "100000", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("could not start node (cargo xtask setup installs it)")?;
    let mock = Mock(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("the viewer's mock server did not listen on {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(mock)
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_f64)
}

pub fn run(scratch: &Path) -> anyhow::Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _mock = start_mock(port)?;
    let out = scratch.join("viewer");
    std::fs::create_dir_all(&out)?;
    let run = Command::new("node")
        .current_dir(root().join("tests/web"))
        .args(["viewer.mjs", "--perf-only", "--url", &format!("http://127.0.0.1:{port}"), "--timeout", "300"])
        .arg("--out")
        .arg(&out)
        .args(["--chromium", "/usr/bin/chromium"])
        .output()
        .context("could not run tests/web/viewer.mjs")?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let result: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("viewer.mjs printed no JSON: {stdout}\n{}", String::from_utf8_lossy(&run.stderr)))?;
    if !run.status.success() {
        bail!("viewer.mjs failed: {}", result["checks"]);
    }
    let perf = &result["perf"];
    let syn = &perf["synthetic"];
    let fmt = |x: Option<f64>, unit: &str| x.map_or("n/a".to_owned(), |x| format!("{x:.1} {unit}"));
    let kb = |x: Option<f64>| x.map_or("n/a".to_owned(), |x| format!("{:.1} KB", x / 1000.0));
    let mut md = String::new();
    writeln!(md, "## The web viewer in headless Chromium")?;
    writeln!(md)?;
    writeln!(
        md,
        "`tests/web/viewer.mjs --perf-only` in Debian's Chromium (headless, no GPU, 1400×1000) against the mock API of \
         `web/scripts/serve.mjs --mock --nodes 100000`, which serves the built `web/dist`: a synthetic tree with a long \
         tail and a few very deep stacks; the page's node budget (`max_nodes`) trims it to 16k and 64k. Zooming clicks \
         the largest frames in turn and back (Esc); panning scrolls the graph top to bottom. Draw time is the page's \
         own measure of a render (`renderStats().renderMs`). Measured, not asserted: no test fails on a time."
    )?;
    writeln!(md)?;
    writeln!(md, "| figure | goal | measured |")?;
    writeln!(md, "|---|---|---|")?;
    let first = &syn["nodes100000"]["firstLoad"];
    writeln!(
        md,
        "| first render of a 100,000-node profile, from its data's arrival to drawn (parse {}, build {}, draw {}) | ≤ 300 ms | {} |",
        fmt(f(first, &["profile", "parseMs"]), "ms"),
        fmt(f(first, &["rebuildMs"]), "ms"),
        fmt(f(first, &["renderMs"]), "ms"),
        fmt(f(first, &["loadToRenderMs"]), "ms"),
    )?;
    for (n, key, goal) in
        [("16k", "nodes16000", "≤ 16 ms"), ("64k", "nodes64000", "≤ 50 ms"), ("100k", "nodes100000", "")]
    {
        let i = &syn[key]["interaction"];
        writeln!(
            md,
            "| draw while zooming at {n} nodes: median / p95 (panning p95; click to drawn median) | {goal} | {} / {} ({}; {}) |",
            fmt(f(i, &["drawMs", "median"]), "ms"),
            fmt(f(i, &["drawMs", "p95"]), "ms"),
            fmt(f(i, &["panDrawMs", "p95"]), "ms"),
            fmt(f(i, &["clickToDrawnMs", "median"]), "ms"),
        )?;
    }
    let tree = &syn["tree100k"];
    writeln!(
        md,
        "| a 100k-node tree on the wire, gzip (uncompressed {}) | ≤ 2 MB | {} |",
        kb(f(tree, &["rawBytes"])),
        kb(f(tree, &["gzipBytes"])),
    )?;
    writeln!(
        md,
        "| the viewer's assets (index.html, app.js, app.css), gzip -9 (raw {}) | ≤ 300 KB | {} |",
        kb(f(&perf["assets"], &["raw"])),
        kb(f(&perf["assets"], &["gzip"])),
    )?;
    Ok(md)
}
