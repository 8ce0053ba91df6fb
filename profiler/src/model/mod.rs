//! What a capture found, as plain data and the names of its values: no
//! kernel, no procfs, no rendering. Being filled in by issue 14 (the
//! pipeline of windows); today it holds the helpers that every layer
//! above names.

pub mod stats;
pub mod syscall;
pub mod text;
