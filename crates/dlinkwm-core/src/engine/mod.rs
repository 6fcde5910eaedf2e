//! The engine.

pub(crate) mod code_limits;
pub mod disk_cache;
pub(crate) mod handle;
