//! Questions asked of a capture's data, apart from how it was collected
//! and how it is drawn. Being filled in by issue 14.

pub mod dimension;
