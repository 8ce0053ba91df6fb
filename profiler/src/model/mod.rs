//! What a capture found, as plain data and the names of its values: no
//! kernel, no procfs, no rendering. A [`window::Window`] is the unit the
//! pipeline hands to its sinks.

pub mod stats;
pub mod syscall;
pub mod text;
pub mod window;
