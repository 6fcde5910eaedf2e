//! A directory of plugins: every `.wasm` file in it loaded, watched and reloaded, and new files
//! picked up as they appear.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use dlinkwm_core::{ContentHash, ReloadEvent};

use crate::{Plugin, PluginHost, Result};

type Plugins = Arc<Mutex<BTreeMap<String, Plugin>>>;

/// The plugins of one directory, by file name. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PluginDirectory {
    plugins: Plugins,
    events: crossbeam_channel::Receiver<ReloadEvent>,
}

impl PluginDirectory {
    /// The plugin loaded from `file_name` (e.g. `"hello.wasm"`).
    pub fn get(&self, file_name: &str) -> Option<Plugin> {
        self.plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(file_name)
            .cloned()
    }

    /// The file names of the loaded plugins, sorted.
    pub fn names(&self) -> Vec<String> {
        self.plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Files that appeared and were loaded ([`ReloadEvent::Added`]) or could not be
    /// ([`ReloadEvent::Failed`]). Each plugin's own reloads are on
    /// [`dlinkwm_core::Plugin::subscribe`].
    pub fn events(&self) -> &crossbeam_channel::Receiver<ReloadEvent> {
        &self.events
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl PluginHost {
    /// Loads every `.wasm` file in `directory`, watches each, and loads the files that appear
    /// later. A file that cannot be loaded is reported as a [`ReloadEvent::Failed`] on
    /// [`PluginDirectory::events`] and picked up when it changes again.
    ///
    /// # Errors
    /// When the directory cannot be read or watched.
    pub fn load_directory(&self, directory: impl AsRef<Path>) -> Result<PluginDirectory> {
        let directory = directory.as_ref();
        let plugins: Plugins = Arc::default();
        let (sender, events) = crossbeam_channel::unbounded();
        let load = {
            let host = self.clone();
            let plugins = plugins.clone();
            // Files refused before, by content hash: an unchanged bad file is not reported again.
            let refused: Mutex<HashMap<std::path::PathBuf, ContentHash>> = Mutex::default();
            move |path: &Path| -> Option<dlinkwm_core::Plugin> {
                let hash = std::fs::read(path)
                    .ok()
                    .map(|bytes| ContentHash::of(&bytes));
                let mut refused = refused.lock().unwrap_or_else(|p| p.into_inner());
                if hash.is_some() && refused.get(path) == hash.as_ref() {
                    return None;
                }
                match host.load(path) {
                    Ok(plugin) => {
                        let name = file_name(path);
                        plugins
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(name.clone(), plugin.clone());
                        let _ = sender.send(ReloadEvent::Added {
                            plugin: plugin.name().to_owned(),
                            path: path.to_owned(),
                        });
                        Some(plugin.core().clone())
                    }
                    Err(error) => {
                        if let Some(hash) = hash {
                            refused.insert(path.to_owned(), hash);
                        }
                        tracing::warn!(file = %path.display(), %error, "plugin in a watched directory could not be loaded");
                        if let crate::Error::Plugin(error) = error {
                            let _ = sender.send(ReloadEvent::Failed {
                                plugin: file_name(path),
                                path: Some(path.to_owned()),
                                error,
                            });
                        }
                        None
                    }
                }
            }
        };
        let entries =
            std::fs::read_dir(directory).map_err(|source| dlinkwm_core::Error::Watch {
                path: directory.to_owned(),
                reason: source.to_string(),
            })?;
        let mut existing: Vec<_> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.is_file()
                    && path
                        .extension()
                        .is_some_and(|extension| extension == "wasm")
            })
            .collect();
        existing.sort();
        let watcher = self.watcher()?;
        for path in existing {
            if let Some(plugin) = load(&path) {
                watcher.watch(&plugin)?;
            }
        }
        watcher.watch_directory(directory, load)?;
        Ok(PluginDirectory { plugins, events })
    }
}
