use which::which;

/// Rebuild when bpf-linker changes, as aya's template does.
fn main() {
    if let Ok(path) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
