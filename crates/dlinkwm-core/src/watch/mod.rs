//! The watch layer, at the top: what follows files on disk. [`PluginWatcher`] (`watcher`)
//! watches plugin files and directories of plugins and asks each changed plugin for a
//! background reload once its file has been quiet for [`SETTLE_TIME`]; [`DynamicConfig`]
//! (`dynamic`) follows a configuration file and pushes each valid edit to the plugins that follow
//! it. Nothing below depends on this layer.

mod dynamic;
mod watcher;

pub use dynamic::{ConfigEvent, DynamicConfig};
pub use watcher::{PluginWatcher, SETTLE_TICK, SETTLE_TIME};
