//! The runtime.

pub(crate) mod component;
pub(crate) mod exports;
pub(crate) mod host_methods;
pub(crate) mod instance;
pub(crate) mod limits;
pub(crate) mod linker;
pub(crate) mod stdio;
pub(crate) mod waits;
