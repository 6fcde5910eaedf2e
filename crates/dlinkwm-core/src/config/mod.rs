//! Configuration.

mod file;

pub use file::*;
