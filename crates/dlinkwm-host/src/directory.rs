//! A directory of plugins: every `.wasm` file in it loaded, watched and reloaded, and new files
//! picked up as they appear.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
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

/// What a directory's loader shares: the plugins by file name, where events go, and the files
/// refused before (by content hash: an unchanged bad file is not reported again).
#[derive(Clone)]
struct Loaded {
    plugins: Plugins,
    sender: crossbeam_channel::Sender<ReloadEvent>,
    refused: Arc<Mutex<HashMap<PathBuf, ContentHash>>>,
    /// The engine's `max_module_bytes`: a larger file is not read to be hashed.
    max_bytes: u64,
}

impl Loaded {
    /// Whether `path` holds the bytes that were refused last time (then it is not loaded again).
    fn refused_before(&self, path: &Path) -> Option<ContentHash> {
        let too_large = std::fs::metadata(path).is_ok_and(|meta| meta.len() > self.max_bytes);
        if too_large {
            // Loading refuses it without reading it whole.
            return Some(ContentHash::of(&[]));
        }
        let hash = std::fs::read(path)
            .ok()
            .map(|bytes| ContentHash::of(&bytes));
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        match hash {
            Some(hash) if refused.get(path) == Some(&hash) => None,
            other => Some(other.unwrap_or_else(|| ContentHash::of(&[]))),
        }
    }

    /// Records how loading `path` ended; returns the plugin to watch.
    fn admit(
        &self,
        path: &Path,
        hash: ContentHash,
        loaded: Result<Plugin>,
    ) -> Option<dlinkwm_core::Plugin> {
        match loaded {
            Ok(plugin) => {
                let name = file_name(path);
                self.plugins
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.clone(), plugin.clone());
                // A removed file takes its plugin out of the directory: new lookups miss it,
                // calls that hold it finish, and a file of that name appearing later loads anew.
                let plugins = Arc::downgrade(&self.plugins);
                plugin.on_event(move |event| {
                    if let ReloadEvent::FileRemoved { .. } = event
                        && let Some(plugins) = plugins.upgrade()
                    {
                        plugins
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&name);
                    }
                });
                let _ = self.sender.send(ReloadEvent::Added {
                    plugin: plugin.name().to_owned(),
                    path: path.to_owned(),
                });
                Some(plugin.core().clone())
            }
            // Removed between its event and its read: nothing to load, nothing to report.
            Err(crate::Error::Plugin(error)) if error.is_file_gone() => {
                tracing::debug!(file = %path.display(), "plugin file removed before it was read");
                None
            }
            Err(error) => {
                self.refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(path.to_owned(), hash);
                tracing::warn!(file = %path.display(), %error, "plugin in a watched directory could not be loaded");
                if let crate::Error::Plugin(error) = error {
                    let _ = self.sender.send(ReloadEvent::Failed {
                        plugin: file_name(path),
                        path: Some(path.to_owned()),
                        error,
                    });
                }
                None
            }
        }
    }
}

/// The `.wasm` files in `directory`, sorted.
fn wasm_files(directory: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(directory).map_err(|source| dlinkwm_core::Error::Watch {
        path: directory.to_owned(),
        reason: source.to_string(),
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|extension| extension == "wasm")
        })
        .collect();
    files.sort();
    Ok(files)
}

impl PluginHost {
    /// Loads every `.wasm` file in `directory`, watches each, and loads the files that appear
    /// later. A file that cannot be loaded is reported as a [`ReloadEvent::Failed`] on
    /// [`PluginDirectory::events`] and picked up when it changes again; a removed file's plugin
    /// leaves the directory (calls holding it finish).
    ///
    /// # Errors
    /// When the directory cannot be read or watched.
    pub fn load_directory(&self, directory: impl AsRef<Path>) -> Result<PluginDirectory> {
        let directory = directory.as_ref();
        let (loaded, events) = self.new_directory();
        let load = {
            let (host, loaded) = (self.clone(), loaded.clone());
            move |path: &Path| -> Option<dlinkwm_core::Plugin> {
                let hash = loaded.refused_before(path)?;
                loaded.admit(path, hash, host.load(path))
            }
        };
        let watcher = self.watcher()?;
        for path in wasm_files(directory)? {
            if let Some(plugin) = load(&path) {
                watcher.watch(&plugin)?;
            }
        }
        watcher.watch_directory(directory, load)?;
        Ok(PluginDirectory {
            plugins: loaded.plugins,
            events,
        })
    }

    /// [`PluginHost::load_directory`] with every plugin loaded for async calls
    /// ([`PluginHost::load_async`]) on the tokio runtime this runs on; files that appear later
    /// are loaded on that runtime too.
    ///
    /// # Errors
    /// As [`PluginHost::load_directory`], and [`crate::core::Error::WrongCallMode`] outside a
    /// tokio runtime.
    pub async fn load_directory_async(
        &self,
        directory: impl AsRef<Path>,
    ) -> Result<PluginDirectory> {
        let directory = directory.as_ref();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            dlinkwm_core::Error::WrongCallMode {
                plugin: directory.display().to_string(),
                reason: "a directory of async plugins is loaded inside a tokio runtime".to_owned(),
            }
        })?;
        let (loaded, events) = self.new_directory();
        let watcher = self.watcher()?;
        for path in wasm_files(directory)? {
            let Some(hash) = loaded.refused_before(&path) else {
                continue;
            };
            let plugin = self.load_async(&path).await;
            if let Some(plugin) = loaded.admit(&path, hash, plugin) {
                watcher.watch(&plugin)?;
            }
        }
        let load = {
            let (host, loaded) = (self.clone(), loaded.clone());
            // The watcher's thread is outside the runtime: it may wait for the load there.
            move |path: &Path| -> Option<dlinkwm_core::Plugin> {
                let hash = loaded.refused_before(path)?;
                loaded.admit(path, hash, runtime.block_on(host.load_async(path)))
            }
        };
        watcher.watch_directory(directory, load)?;
        Ok(PluginDirectory {
            plugins: loaded.plugins,
            events,
        })
    }

    fn new_directory(&self) -> (Loaded, crossbeam_channel::Receiver<ReloadEvent>) {
        let (sender, events) = crossbeam_channel::unbounded();
        let max_bytes = self.engine().options().max_module_bytes;
        let loaded = Loaded {
            plugins: Arc::default(),
            sender,
            refused: Arc::default(),
            max_bytes: u64::try_from(max_bytes).unwrap_or(u64::MAX),
        };
        (loaded, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that was there when its event came and is gone when it is read (a removal right
    /// after an add): not loaded, not reported as refused, not remembered.
    #[test]
    fn a_file_removed_before_it_is_read_is_not_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = PluginHost::builder().build().expect("host");
        let (loaded, events) = host.new_directory();
        let path = dir.path().join("gone.wasm");
        let hash = loaded.refused_before(&path).expect("never refused");
        assert!(loaded.admit(&path, hash, host.load(&path)).is_none());
        assert!(events.try_recv().is_err());
        assert!(loaded.refused.lock().expect("lock").is_empty());
        // A file that is there and bad is reported.
        std::fs::write(&path, b"garbage").expect("write");
        let hash = loaded.refused_before(&path).expect("never refused");
        assert!(loaded.admit(&path, hash, host.load(&path)).is_none());
        assert!(matches!(events.try_recv(), Ok(ReloadEvent::Failed { .. })));
    }
}
