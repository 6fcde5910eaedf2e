//! Plugins.

pub(crate) mod events;
pub(crate) mod handle;
pub(crate) mod held;
pub(crate) mod pool;
pub(crate) mod version;
