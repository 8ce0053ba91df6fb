//! Small wrappers over the operating system that every layer uses.

pub mod io;
