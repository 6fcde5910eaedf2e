//! Watching.

pub(crate) mod dynamic;
pub(crate) mod watcher;
