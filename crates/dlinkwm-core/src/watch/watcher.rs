//! Watching plugin files and reloading them when they change, off the call path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::error::{Error, Result};
use crate::plugin::{Plugin, ReloadEvent, WeakPlugin};

/// How long a file must be quiet before its change is acted on. Editors and cargo write in
/// several steps (truncate, write, rename); they all land inside this window and give one reload.
/// (A writer slower than this is still safe: the file is re-read until its size and time settle,
/// bytes refused while the file was still changing are neither reported nor remembered — the
/// write's own later event reloads them — and an unchanged content hash reloads nothing.)
/// Every reload waits this long, so it is kept short: 20 ms.
pub const SETTLE_TIME: Duration = Duration::from_millis(20);

/// How often the debouncer looks for settled changes: a change is acted on between
/// `SETTLE_TIME` and `SETTLE_TIME + SETTLE_TICK` after the last write.
pub const SETTLE_TICK: Duration = Duration::from_millis(5);

/// Reloads plugins when their files change.
///
/// The directory of each watched file is watched (not the file itself), so a file replaced by a
/// rename, deleted and re-created, or written in place is noticed the same way. Each settled
/// change reloads the plugin once; a change that leaves the content hash as it was does nothing.
/// Reloads run on the watcher's thread: calls keep running on the current version meanwhile.
///
/// Dropping the watcher stops watching.
pub struct PluginWatcher {
    debouncer: Mutex<Debouncer<notify::RecommendedWatcher, RecommendedCache>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PluginWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginWatcher").finish_non_exhaustive()
    }
}

/// Loads a plugin file that appeared in a watched directory.
type Loader = Arc<dyn Fn(&Path) -> Option<Plugin> + Send + Sync>;

#[derive(Default)]
struct Shared {
    /// Watched files (absolute, normalised) and the plugins loaded from them.
    files: Mutex<HashMap<PathBuf, Vec<WeakPlugin>>>,
    /// Directories watched, with how many watched files are in each.
    directories: Mutex<HashMap<PathBuf, usize>>,
    /// Directories of plugins: new `.wasm` files in them are handed to their loader.
    plugin_directories: Mutex<HashMap<PathBuf, Loader>>,
}

pub(crate) fn absolute(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    // Resolve symlinked directories (e.g. /tmp on some systems) so event paths match.
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map(|parent| parent.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}

impl PluginWatcher {
    /// Starts a watcher with no files.
    ///
    /// # Errors
    /// [`Error::Watch`] when the operating system's file watcher cannot be created.
    pub fn new() -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let handler_shared = shared.clone();
        let debouncer = new_debouncer(
            SETTLE_TIME,
            Some(SETTLE_TICK),
            move |result: DebounceEventResult| {
                handler_shared.handle(result);
            },
        )
        .map_err(|error| Error::Watch {
            path: PathBuf::new(),
            reason: error.to_string(),
        })?;
        Ok(Self {
            debouncer: Mutex::new(debouncer),
            shared,
        })
    }

    /// Watches `plugin`'s file. A plugin loaded from bytes has no file and is refused.
    ///
    /// # Errors
    /// [`Error::Watch`] when the plugin has no file or its directory cannot be watched.
    pub fn watch(&self, plugin: &Plugin) -> Result<()> {
        let path = plugin.path().ok_or_else(|| Error::Watch {
            path: PathBuf::from(plugin.name()),
            reason: "the plugin was loaded from bytes, not from a file".to_owned(),
        })?;
        let file = absolute(path);
        let directory = file
            .parent()
            .map(Path::to_owned)
            .ok_or_else(|| Error::Watch {
                path: file.clone(),
                reason: "the file has no parent directory".to_owned(),
            })?;
        self.watch_directory_events(&directory)?;
        self.shared.attach(file, plugin);
        Ok(())
    }

    /// Watches a directory of plugins: each `.wasm` file that appears in it (or changes while no
    /// plugin is loaded from it) is handed to `load`, and the plugin it returns is watched like
    /// any other. Files already there are the caller's to load.
    ///
    /// # Errors
    /// [`Error::Watch`] when the directory cannot be watched.
    pub fn watch_directory(
        &self,
        directory: &Path,
        load: impl Fn(&Path) -> Option<Plugin> + Send + Sync + 'static,
    ) -> Result<()> {
        let directory = std::path::absolute(directory)
            .and_then(|directory| directory.canonicalize())
            .map_err(|error| Error::Watch {
                path: directory.to_owned(),
                reason: error.to_string(),
            })?;
        self.watch_directory_events(&directory)?;
        self.shared
            .plugin_directories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(directory, Arc::new(load));
        Ok(())
    }

    /// Makes sure the operating system reports the events of `directory`.
    fn watch_directory_events(&self, directory: &Path) -> Result<()> {
        let mut directories = self
            .shared
            .directories
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let count = directories.entry(directory.to_owned()).or_insert(0);
        if *count == 0 {
            self.debouncer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .watch(directory, RecursiveMode::NonRecursive)
                .map_err(|error| Error::Watch {
                    path: directory.to_owned(),
                    reason: error.to_string(),
                })?;
        }
        *count += 1;
        Ok(())
    }

    /// The files being watched.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .shared
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        files.sort();
        files
    }
}

impl Shared {
    fn attach(&self, file: PathBuf, plugin: &Plugin) {
        tracing::debug!(plugin = plugin.name(), file = %file.display(), "watching plugin file");
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(file)
            .or_default()
            .push(plugin.downgrade());
    }

    /// A `.wasm` file no plugin is loaded from, in a directory of plugins: load it.
    fn discover(&self, path: &Path) {
        let is_wasm = path
            .extension()
            .is_some_and(|extension| extension == "wasm");
        let loader = path.parent().and_then(|directory| {
            self.plugin_directories
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(directory)
                .cloned()
        });
        if let (true, Some(load), true) = (is_wasm, loader, path.is_file())
            && let Some(plugin) = load(path)
        {
            self.attach(path.to_owned(), &plugin);
        }
    }

    fn handle(&self, result: DebounceEventResult) {
        let events = match result {
            Ok(events) => events,
            Err(errors) => {
                for error in errors {
                    tracing::warn!(%error, "file watcher error");
                }
                return;
            }
        };
        let mut touched: Vec<PathBuf> = events
            .iter()
            .flat_map(|event| event.paths.iter().cloned())
            .collect();
        touched.sort();
        touched.dedup();
        for path in touched {
            let plugins: Vec<Plugin> = {
                let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
                let plugins: Vec<Plugin> = files
                    .get_mut(&path)
                    .map(|plugins| {
                        plugins.retain(|weak| weak.upgrade().is_some());
                        plugins.iter().filter_map(WeakPlugin::upgrade).collect()
                    })
                    .unwrap_or_default();
                if plugins.is_empty() {
                    files.remove(&path);
                }
                plugins
            };
            if plugins.is_empty() {
                self.discover(&path);
                continue;
            }
            for plugin in plugins {
                if path.exists() {
                    plugin.reload_in_background(SETTLE_TIME);
                } else {
                    tracing::warn!(plugin = plugin.name(), file = %path.display(), "plugin file removed; the loaded version keeps serving");
                    plugin.emit(ReloadEvent::FileRemoved {
                        plugin: plugin.name().to_owned(),
                        path: path.clone(),
                    });
                }
            }
        }
    }
}
