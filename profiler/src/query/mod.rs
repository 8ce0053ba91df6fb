//! Questions asked of a capture's data, apart from how it was collected
//! and how it is drawn: dimensions to slice by, time ranges, trees.

pub mod dimension;
pub mod range;
pub mod tree;
