//! A configuration that follows its file: edits apply to the next call, bad edits are kept out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::config::{Config, ConfigError, ResolvedSettings};
use crate::error::{Error, Result};
use crate::plugin::{Plugin, Subscribers, WeakPlugin};
use crate::watch::watcher::{SETTLE_TICK, SETTLE_TIME, absolute};

/// What happened to a watched configuration file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConfigEvent {
    /// The file changed and the new configuration is in force.
    Reloaded {
        /// The file.
        path: PathBuf,
    },
    /// The file changed but is invalid; the last good configuration stays in force.
    Failed {
        /// The file.
        path: PathBuf,
        /// The file, the key and the reason.
        error: ConfigError,
    },
    /// The configuration is in force, but one plugin's new settings cannot be enforced by its
    /// engine (for example `fuel` without fuel metering); that plugin keeps its old settings.
    Refused {
        /// The file.
        path: PathBuf,
        /// The plugin.
        plugin: String,
        /// The key and the reason.
        error: Error,
    },
}

/// A follower's own rule applied to the settings a configuration gives it.
type Adjust = Arc<dyn Fn(&Config, ResolvedSettings) -> ResolvedSettings + Send + Sync>;

/// `dlinkwm.toml` plus `DLINKWM_` environment overrides, reloaded when the file changes.
///
/// Cheap to clone; clones share the configuration and the watcher. Plugins that
/// [`follow`](DynamicConfig::follow) it get their new settings (entry allowlists, limits,
/// permissions) for their next call.
#[derive(Clone)]
pub struct DynamicConfig {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    current: ArcSwap<Config>,
    watcher: Mutex<Option<Debouncer<notify::RecommendedWatcher, RecommendedCache>>>,
    followers: Mutex<Vec<(WeakPlugin, Option<Adjust>)>>,
    events: Subscribers<ConfigEvent>,
}

impl std::fmt::Debug for DynamicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicConfig")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl DynamicConfig {
    /// Loads `path` (which must exist and be valid).
    ///
    /// # Errors
    /// The [`ConfigError`] naming the file and key.
    pub fn new(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref().to_owned();
        let config = Config::load(&path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                current: ArcSwap::from_pointee(config),
                watcher: Mutex::new(None),
                followers: Mutex::new(Vec::new()),
                events: Subscribers::new(),
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.inner.current.load_full()
    }

    /// The entries configured for `wasm_path`, in order (the original DlinkWM API; it returns an
    /// owned list because the configuration can change at any moment).
    pub fn get_entry_functions(&self, wasm_path: &str) -> Option<Vec<String>> {
        self.inner
            .current
            .load()
            .entry_functions(wasm_path)
            .cloned()
    }

    /// Starts watching the file: each settled change is re-read; a valid one is put in force and
    /// pushed to the following plugins, an invalid one is reported and kept out. Calling it again
    /// does nothing.
    ///
    /// # Errors
    /// [`Error::Watch`] when the directory cannot be watched.
    pub fn start_watching(&mut self) -> Result<()> {
        let mut watcher = self.inner.watcher.lock().unwrap_or_else(|p| p.into_inner());
        if watcher.is_some() {
            return Ok(());
        }
        let file = absolute(&self.inner.path);
        let directory = file.parent().map(Path::to_owned).unwrap_or_default();
        let weak = Arc::downgrade(&self.inner);
        let mut debouncer = new_debouncer(
            SETTLE_TIME,
            Some(SETTLE_TICK),
            move |result: DebounceEventResult| {
                let Ok(events) = result else { return };
                let touched = events
                    .iter()
                    .any(|event| event.paths.iter().any(|path| path == &file));
                if let (true, Some(inner)) = (touched, weak.upgrade()) {
                    let config = DynamicConfig { inner };
                    // An empty file is most likely one being written (truncated, not yet
                    // written): read too soon, it would put the defaults in force for a moment.
                    crate::plugin::wait_while_empty(&file);
                    // A missing file (mid-rename, or deleted) is an edit like any other: the last
                    // good configuration stays, and subscribers hear why.
                    let _ = config.reload();
                }
            },
        )
        .map_err(|error| Error::Watch {
            path: self.inner.path.clone(),
            reason: error.to_string(),
        })?;
        debouncer
            .watch(&directory, RecursiveMode::NonRecursive)
            .map_err(|error| Error::Watch {
                path: directory.clone(),
                reason: error.to_string(),
            })?;
        *watcher = Some(debouncer);
        Ok(())
    }

    /// Re-reads the file now. On success the new configuration is in force and pushed to the
    /// following plugins; on failure the last good one stays.
    ///
    /// # Errors
    /// The [`ConfigError`], also sent as [`ConfigEvent::Failed`].
    pub fn reload(&self) -> Result<(), ConfigError> {
        let path = self.inner.path.clone();
        match Config::load(&path) {
            Ok(config) => {
                let config = Arc::new(config);
                if *config == **self.inner.current.load() {
                    return Ok(());
                }
                self.inner.current.store(config.clone());
                let followers: Vec<(Plugin, Option<Adjust>)> = {
                    let mut followers = self
                        .inner
                        .followers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    followers.retain(|(weak, _)| weak.upgrade().is_some());
                    followers
                        .iter()
                        .filter_map(|(weak, adjust)| Some((weak.upgrade()?, adjust.clone())))
                        .collect()
                };
                let mut refused = Vec::new();
                for (plugin, adjust) in followers {
                    let settings = Self::settings(&config, &plugin, adjust.as_ref());
                    if let Err(error) = plugin.set_settings(settings) {
                        tracing::warn!(plugin = plugin.name(), %error, "settings refused; the plugin keeps its old ones");
                        refused.push(ConfigEvent::Refused {
                            path: path.clone(),
                            plugin: plugin.name().to_owned(),
                            error,
                        });
                    }
                }
                tracing::info!(path = %path.display(), "configuration reloaded");
                self.inner.events.emit(ConfigEvent::Reloaded { path });
                for event in refused {
                    self.inner.events.emit(event);
                }
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "configuration edit refused; the last good configuration stays");
                self.inner.events.emit(ConfigEvent::Failed {
                    path,
                    error: error.clone(),
                });
                Err(error)
            }
        }
    }

    /// Keeps `plugin`'s settings in step with this configuration (by the plugin's name).
    ///
    /// # Errors
    /// As [`Plugin::set_settings`]: the plugin's engine cannot enforce its settings in the
    /// current configuration. The plugin is not followed then.
    pub fn follow(&self, plugin: &Plugin) -> Result<()> {
        self.follow_adjusted(plugin, None)
    }

    /// [`DynamicConfig::follow`], with `adjust` applied to the settings each configuration
    /// gives the plugin (an application's own defaults, for example), now and after each edit.
    ///
    /// # Errors
    /// As [`DynamicConfig::follow`].
    pub fn follow_with(
        &self,
        plugin: &Plugin,
        adjust: impl Fn(&Config, ResolvedSettings) -> ResolvedSettings + Send + Sync + 'static,
    ) -> Result<()> {
        self.follow_adjusted(plugin, Some(Arc::new(adjust)))
    }

    fn follow_adjusted(&self, plugin: &Plugin, adjust: Option<Adjust>) -> Result<()> {
        plugin.set_settings(Self::settings(&self.current(), plugin, adjust.as_ref()))?;
        self.inner
            .followers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((plugin.downgrade(), adjust));
        Ok(())
    }

    fn settings(config: &Config, plugin: &Plugin, adjust: Option<&Adjust>) -> ResolvedSettings {
        let settings = config.settings_for(plugin.name());
        match adjust {
            Some(adjust) => adjust(config, settings),
            None => settings,
        }
    }

    /// Subscribes to configuration events.
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<ConfigEvent> {
        self.inner.events.subscribe()
    }

    /// Calls `callback` for each configuration event.
    pub fn on_event(&self, callback: impl Fn(&ConfigEvent) + Send + Sync + 'static) {
        self.inner.events.on_event(Arc::new(callback));
    }
}
