//! Small wrappers over the operating system that every layer uses.

pub mod cancel;
pub mod clock;
pub mod io;
pub mod mem;
