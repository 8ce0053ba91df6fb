//! System call names, from the per-architecture tables of the
//! syscall-numbers crate.

/// Name of a system call number of this machine's architecture.
pub fn syscall_name(nr: i32) -> String {
    syscall_name_of(std::env::consts::ARCH, nr)
}

/// Name of a system call number of `arch` (`x86_64` or `aarch64`; others
/// use this machine's table). The tables are generated from the kernel's
/// by the syscall-numbers crate.
pub fn syscall_name_of(arch: &str, nr: i32) -> String {
    let nr = nr.into();
    let name = match arch {
        "x86_64" => syscall_numbers::x86_64::sys_call_name(nr),
        "aarch64" => syscall_numbers::aarch64::sys_call_name(nr),
        _ => syscall_numbers::native::sys_call_name(nr),
    };
    name.map(str::to_owned).unwrap_or_else(|| format!("syscall_{nr}"))
}
