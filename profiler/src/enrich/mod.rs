//! Context for every sample: which process, program, user, cgroup,
//! container, pod and systemd unit it belongs to, and what a blocked
//! thread waits on.

pub mod cgroup;
pub mod cgroup_filter;
pub mod cgroup_fs;
pub mod elf;
pub mod fd_target;
pub mod maps;
pub mod process;
pub mod processes;
