//! Helpers for the end-to-end tests: they run the real `tailprof` binary
//! (built by `cargo xtask test`, named by `TAILPROF_BIN`) as root against
//! workloads of known behaviour.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
};

/// The tailprof binary under test.
pub fn tailprof_bin() -> PathBuf {
    let bin = std::env::var_os("TAILPROF_BIN").map(PathBuf::from).expect(
        "TAILPROF_BIN is not set: run the end-to-end tests with `cargo xtask test`, which builds tailprof and points them at it",
    );
    assert!(bin.exists(), "TAILPROF_BIN={} does not exist", bin.display());
    bin
}

/// Fails loudly unless we are root: these tests load real BPF programs.
pub fn require_root() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the end-to-end tests load BPF programs and must run as root");
}

fn workload_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tailprof-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create workload dir");
        dir
    })
}

/// Compile `workloads/NAME.c` with gcc (frame pointers on) and return the binary.
pub fn build_c_workload(name: &str, extra_flags: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads").join(format!("{name}.c"));
    let out = workload_dir().join(name);
    let status = Command::new("gcc")
        .args(["-O2", "-g", "-fno-omit-frame-pointer", "-fno-ipa-icf", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .args(extra_flags)
        .status()
        .expect("gcc must be installed (cargo xtask setup installs it)");
    assert!(status.success(), "gcc failed on {}", src.display());
    out
}

/// A running workload that announced its pid and thread ids on stdout.
pub struct Workload {
    pub child: Child,
    pub pid: u32,
    pub tids: HashMap<String, u32>,
}

impl Workload {
    /// Start `bin args` and read `pid N`, `tid NAME N` lines until `ready`.
    pub fn start(bin: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(bin).args(args).stdout(Stdio::piped()).spawn().expect("start workload");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let (mut pid, mut tids) = (0, HashMap::new());
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).expect("read workload stdout") == 0 {
                panic!("workload {} ended before it was ready", bin.display());
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["pid", n] => pid = n.parse().expect("pid"),
                ["tid", name, n] => {
                    tids.insert(name.to_string(), n.parse().expect("tid"));
                }
                ["ready"] => break,
                _ => {}
            }
        }
        // Keep draining stdout so the workload never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        Self { child, pid, tids }
    }

    pub fn tid(&self, name: &str) -> u32 {
        *self.tids.get(name).unwrap_or_else(|| panic!("workload announced no thread {name}"))
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `tailprof ARGS` to completion.
pub fn tailprof(args: &[&str]) -> Output {
    Command::new(tailprof_bin()).args(args).output().expect("run tailprof")
}

/// Run `tailprof record ARGS -o DIR` and insist that it succeeded.
pub fn record_ok(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["record", "-o", dir.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let out = tailprof(&all);
    assert!(out.status.success(), "tailprof {all:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// A failure must be one clear sentence on stderr, a non-zero exit and no panic.
pub fn assert_clean_failure(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "tailprof panicked: {stderr}");
    assert!(stderr.contains(expected), "stderr lacks {expected:?}: {stderr}");
}

pub fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

/// `stacks.folded` as (stack, count) pairs.
pub fn folded(dir: &Path) -> Vec<(String, u64)> {
    folded_file(dir, "stacks.folded")
}

/// Any folded file of `dir` (`stacks.folded`, `wallclock.folded`, `offcpu.folded`) as
/// (stack, value) pairs. The value is the last space-separated word: frames may hold
/// spaces (`[woken by tp-writer]`).
pub fn folded_file(dir: &Path, name: &str) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    text.lines()
        .map(|l| {
            let (stack, count) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{name}: line without a value: {l:?}"));
            (stack.to_owned(), count.parse().unwrap_or_else(|_| panic!("{name}: value is not a number: {l:?}")))
        })
        .collect()
}

/// The thread entry of `summary.json` for `tid`.
pub fn thread_entry(summary: &serde_json::Value, tid: u32) -> Option<&serde_json::Value> {
    summary["threads"].as_array()?.iter().find(|t| t["tid"].as_u64() == Some(tid as u64))
}

/// Files left in `dir` whose names mark them as unfinished.
pub fn partial_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".partial") || n.starts_with(".tailprof-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Run `tailprof report ARGS` and insist that it succeeded.
pub fn report_ok(args: &[&str]) -> Output {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    let out = tailprof(&all);
    assert!(out.status.success(), "tailprof {all:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// One line of /proc/self/mountinfo: where a file system is mounted, its type
/// and its super-block options (for cgroup v1: the controllers, `name=systemd`).
#[derive(Debug, Clone)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: Vec<String>,
}

/// The mounts of this process's mount namespace, from /proc/self/mountinfo.
pub fn mounts() -> Vec<Mount> {
    // Octal escapes (`\040` for a space) in paths.
    fn unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
            let (before, after) = line.split_once(" - ")?;
            let mount_point = before.split(' ').nth(4)?;
            let mut after = after.split(' ');
            let fstype = after.next()?.to_owned();
            let _source = after.next()?;
            let super_options = after.next().unwrap_or("").split(',').map(str::to_owned).collect();
            Some(Mount { mount_point: PathBuf::from(unescape(mount_point)), fstype, super_options })
        })
        .collect()
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on a pure v2
/// host, `/sys/fs/cgroup/unified` on a hybrid one), if it is.
pub fn cgroup2_mount() -> Option<PathBuf> {
    mounts().into_iter().find(|m| m.fstype == "cgroup2").map(|m| m.mount_point)
}

/// Where the cgroup v1 hierarchy holding `controller` (`cpu`, `memory`,
/// `name=systemd`) is mounted, if it is.
pub fn cgroup1_mount(controller: &str) -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == controller))
        .map(|m| m.mount_point)
}

/// Failed checks, gathered so that one run reports all of them.
#[derive(Default)]
pub struct Checks(Vec<String>);

impl Checks {
    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            let m = msg();
            println!("FAILED: {m}");
            self.0.push(m);
        }
    }

    pub fn finish(self) {
        assert!(self.0.is_empty(), "{} checks failed:\n  {}", self.0.len(), self.0.join("\n  "));
    }
}

/// CLOCK_MONOTONIC in ns: the clock of the window in summary.json.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Compile `workloads/SRC.c` like [`build_c_workload`] (its flags come after
/// the defaults, so `-fomit-frame-pointer` wins), into a binary named `out`:
/// one source, several builds.
pub fn build_c_workload_as(src: &str, out: &str, extra_flags: &[&str]) -> PathBuf {
    let src_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads").join(format!("{src}.c"));
    let out_path = workload_dir().join(out);
    let status = Command::new("gcc")
        .args(["-O2", "-g", "-fno-omit-frame-pointer", "-fno-ipa-icf", "-pthread", "-o"])
        .arg(&out_path)
        .arg(&src_path)
        .args(extra_flags)
        .status()
        .expect("gcc must be installed (cargo xtask setup installs it)");
    assert!(status.success(), "gcc {extra_flags:?} failed on {}", src_path.display());
    out_path
}

/// Build the standalone cargo project `workloads/DIR` (its own workspace, no
/// dependencies) in release mode with `rustflags`, and return its binary
/// `bin`. The target directory is a fixed cache under the temp dir, keyed by
/// the flags, so later runs only relink what changed. Flags inherited from the
/// cargo that runs the tests are dropped: the test decides how it is built.
pub fn build_cargo_workload(dir: &str, bin: &str, rustflags: &str) -> PathBuf {
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads").join(dir);
    let key: String = rustflags.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let target = std::env::temp_dir().join("tailprof-e2e-cargo").join(format!("{dir}-{key}"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--offline", "--quiet", "--manifest-path"])
        .arg(project.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .current_dir(&project)
        .env("RUSTFLAGS", rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run cargo to build a workload");
    assert!(
        out.status.success(),
        "cargo build of workloads/{dir} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target.join("release").join(bin);
    assert!(bin.exists(), "cargo built workloads/{dir} but {} is missing", bin.display());
    bin
}

/// A running `tailprof noise`, whose stderr announces when its accounting
/// window opens (`measuring noise`) and closes (`measured`), so that a test
/// reads its oracles (procfs counters) at the same moments.
pub struct NoiseRun {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
    log: String,
}

impl NoiseRun {
    /// Start `tailprof noise ARGS` and wait until its window is open.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(tailprof_bin())
            .arg("noise")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tailprof noise");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut run = Self { child, stderr, log: String::new() };
        run.wait_for("measuring noise");
        run
    }

    fn wait_for(&mut self, what: &str) {
        loop {
            let mut line = String::new();
            let n = self.stderr.read_line(&mut line).expect("read tailprof stderr");
            self.log.push_str(&line);
            if n == 0 {
                let _ = self.child.wait();
                panic!("tailprof noise ended before printing {what:?}: {}", self.log);
            }
            if line.contains(what) {
                return;
            }
        }
    }

    /// The tailprof process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until the window has closed.
    pub fn wait_closed(&mut self) {
        self.wait_for("tailprof: measured");
    }

    /// Wait for the exit and parse the JSON document on stdout (`--json`).
    pub fn json(mut self) -> serde_json::Value {
        let mut out = String::new();
        self.child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read stdout");
        let mut rest = String::new();
        let _ = self.stderr.read_to_string(&mut rest);
        self.log.push_str(&rest);
        let status = self.child.wait().expect("wait for tailprof noise");
        assert!(status.success(), "tailprof noise failed: {status}\n{}", self.log);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out}"))
    }
}

/// Per-CPU counters of a procfs table (/proc/softirqs, /proc/interrupts):
/// (row label, cpu) → count. Rows with fewer columns than CPUs (ERR, MIS)
/// are keyed with cpu u32::MAX.
pub fn proc_counter_table(path: &str) -> HashMap<(String, u32), u64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let cpus: Vec<u32> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(|c| c.trim_start_matches("CPU").parse().expect("CPUn header"))
        .collect();
    let mut table = HashMap::new();
    for line in lines {
        let Some((label, rest)) = line.split_once(':') else { continue };
        let values: Vec<u64> = rest.split_whitespace().map_while(|v| v.parse().ok()).collect();
        if values.len() < cpus.len() {
            table.insert((label.trim().to_owned(), u32::MAX), values.first().copied().unwrap_or(0));
            continue;
        }
        for (cpu, v) in cpus.iter().zip(values) {
            table.insert((label.trim().to_owned(), *cpu), v);
        }
    }
    table
}

// Ground truth from the kernel's own per-thread accounting, for the truth tests.

pub const TMPFS_MAGIC: i64 = 0x0102_1994;

/// (run ns, wait ns) from /proc/PID/task/TID/schedstat.
pub fn schedstat(pid: u32, tid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

/// Linear interpolation of polled (time, value) points at `at`.
pub fn at_time(points: &[(u64, (u64, u64))], at: u64) -> (f64, f64) {
    let i = points.partition_point(|(t, _)| *t <= at).clamp(1, points.len() - 1);
    let ((t0, (r0, w0)), (t1, (r1, w1))) = (points[i - 1], points[i]);
    let f = (at as f64 - t0 as f64) / (t1 as f64 - t0 as f64).max(1.0);
    (r0 as f64 + f * (r1 as f64 - r0 as f64), w0 as f64 + f * (w1 as f64 - w0 as f64))
}

pub fn is_tmpfs(dir: &std::path::Path) -> bool {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut fs) };
    assert_eq!(rc, 0, "statfs {}: {}", dir.display(), std::io::Error::last_os_error());
    fs.f_type as i64 == TMPFS_MAGIC
}

/// A disk-backed directory for the fsync thread: fdatasync on tmpfs never
/// waits, so it would never be in D state. The temporary directory when it is
/// on a disk (here /tmp is ext4 on virtio vda), else /var/tmp.
pub fn disk_backed_dir() -> PathBuf {
    let candidates = [std::env::temp_dir(), PathBuf::from("/var/tmp")];
    for dir in &candidates {
        if !is_tmpfs(dir) {
            return dir.clone();
        }
    }
    panic!("{candidates:?} are all tmpfs: the fsync thread needs a disk-backed directory to block in D state")
}

/// A u64 field of summary.json, or a panic naming it.
pub fn num(v: &serde_json::Value, path: &[&str], what: &str) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{what}: summary.json field {} missing or not an integer: {v}", path.join(".")))
}

/// Polls /proc/PID/task/TID/schedstat of some threads every `every`, each
/// read stamped with CLOCK_MONOTONIC (the clock of tailprof's windows), until
/// stopped: the oracle of exact on-CPU and run-queue times, interpolated at
/// the window bounds tailprof reports.
pub struct SchedstatPoller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Polled>>,
}

/// Per tid, the (CLOCK_MONOTONIC ns, (run ns, wait ns)) schedstat points.
pub type Polled = HashMap<u32, Vec<(u64, (u64, u64))>>;

impl SchedstatPoller {
    pub fn start(pid: u32, tids: Vec<u32>, every: std::time::Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut polled = Polled::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for tid in &tids {
                    let t = monotonic_ns();
                    if let Some(v) = schedstat(pid, *tid) {
                        polled.entry(*tid).or_default().push((t, v));
                    }
                }
                std::thread::sleep(every);
            }
            polled
        });
        Self { stop, thread: Some(thread) }
    }

    /// Stop and return, per tid, the (time, (run ns, wait ns)) points.
    pub fn finish(mut self) -> Polled {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map(|t| t.join().expect("poller")).unwrap_or_default()
    }
}

/// Names of the BPF programs process `pid` holds a file descriptor of
/// (ids from /proc/PID/fdinfo, names from `bpftool prog show`, cut to 15
/// bytes by the kernel), sorted.
pub fn bpf_programs_of(pid: u32) -> Vec<String> {
    let mut ids = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the process's fds").flatten() {
        if std::fs::read_link(fd.path()).map(|t| t.as_os_str() == "anon_inode:bpf-prog").unwrap_or(false) {
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
                .expect("read fdinfo");
            let id = info.lines().find_map(|l| l.strip_prefix("prog_id:")?.trim().parse::<u64>().ok());
            ids.push(id.expect("a BPF program's fdinfo has a prog_id"));
        }
    }
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .expect("bpftool must be installed (cargo xtask setup installs it)");
    assert!(out.status.success(), "bpftool prog show failed: {}", String::from_utf8_lossy(&out.stderr));
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool prog show -j prints JSON");
    let mut names: Vec<String> = ids
        .iter()
        .map(|id| {
            progs
                .as_array()
                .expect("a JSON array")
                .iter()
                .find(|p| p["id"].as_u64() == Some(*id))
                .and_then(|p| p["name"].as_str())
                .unwrap_or_else(|| panic!("bpftool does not list program {id}"))
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

// The agent as its own process, talked to over real HTTP.

/// A response: status code, headers (lower-cased names) and body.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request over a fresh connection to `addr` (a minimal client:
/// the test talks to the real server, and decodes chunked bodies itself).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Ok(HttpResponse { status, headers, body })
}

/// A free port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `tailprof agent` running as its own process.
pub struct Agent {
    pub child: std::process::Child,
    pub addr: String,
    pub token: Option<String>,
}

impl Agent {
    /// Start `tailprof agent --listen ADDR --data-dir DIR ARGS` and wait until it is ready.
    pub fn start(data_dir: &Path, args: &[&str]) -> Self {
        Self::start_with(data_dir, args, &[], None)
    }

    /// [`Agent::start`] with environment variables, its stderr (its log)
    /// appended to `log` if given.
    pub fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)], log: Option<&Path>) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut all = vec!["agent", "--listen", &addr, "--data-dir", data_dir.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the agent's log"),
            ),
            None => Stdio::inherit(),
        };
        let child = Command::new(tailprof_bin())
            .args(&all)
            .env_remove("TAILPROF_CONFIG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start tailprof agent");
        // With a token file, readiness is asked with the token.
        let token = args
            .iter()
            .position(|a| *a == "--token-file")
            .and_then(|i| args.get(i + 1))
            .map(|f| std::fs::read_to_string(f).expect("token file").trim().to_owned());
        let mut agent = Self { child, addr, token };
        agent.wait_ready();
        agent
    }

    pub fn wait_ready(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tailprof agent exited before it was ready: {status}");
            }
            if let Ok(r) = self.get("/readyz") {
                if r.status == 200 {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "tailprof agent not ready after 30 s");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn get(&self, path: &str) -> std::io::Result<HttpResponse> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        http(&self.addr, "GET", path, &headers, b"")
    }

    pub fn post(&self, path: &str, body: &[u8]) -> std::io::Result<HttpResponse> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        headers.push(("Content-Type", "application/json"));
        http(&self.addr, "POST", path, &headers, body)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for the agent");
        std::mem::forget(self);
        status
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `tailprof serve` (or `record --open`) running as its own process: its
/// address is read from the line it prints once it listens.
pub struct Served {
    pub child: std::process::Child,
    pub addr: String,
    /// What it printed before it listened (`record`'s report).
    pub printed: String,
}

impl Served {
    /// Run `tailprof ARGS` and wait for its `serving DIR at http://ADDR/` line.
    pub fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(tailprof_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tailprof");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut printed = String::new();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("serving ") {
                        let url = rest.split(" at http://").nth(1).expect("serving … at http://ADDR/");
                        break url.split('/').next().expect("ADDR").to_owned();
                    }
                    printed.push_str(&line);
                    printed.push('\n');
                }
                _ => {
                    let status = child.wait().expect("wait");
                    panic!("tailprof {args:?} exited ({status}) before serving; it printed: {printed}");
                }
            }
        };
        // Keep draining stdout so that the child never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Self { child, addr, printed }
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http(&self.addr, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// SIGINT (Ctrl-C), and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().expect("wait for tailprof");
        std::mem::forget(self);
        status
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cgroup made by a test, with the workload in it: the workload is
/// stopped and the cgroup removed on drop.
pub struct TestCgroup {
    pub dir: std::path::PathBuf,
    pub workload: Option<Workload>,
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        drop(self.workload.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::fs::remove_dir(&self.dir).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
