//! The original DlinkWM API: `WasmInstanceCache`, `WasmHotReloader` and `call_wasm_function`.
//!
//! A thin layer over [`PluginHost`] and [`Plugin`]. Differences from the original:
//! `get_or_load` and `reload` return a [`Plugin`] (the original returned a wasmtime
//! `Instance`), and errors are typed ([`crate::Error`]) rather than `anyhow`.
//!
//! ```no_run
//! use dlink_wm::config::{DynamicConfig, create_default_config_if_missing};
//! use dlink_wm::wasm_manager::{WasmInstanceCache, call_wasm_function};
//! use std::sync::Arc;
//!
//! create_default_config_if_missing()?;
//! let mut dynamic_config = DynamicConfig::new("dlinkwm.toml")?;
//! dynamic_config.start_watching()?;
//! let instance_cache = Arc::new(WasmInstanceCache::new());
//! call_wasm_function("wasm/wasm_test.wasm", "dlinkwm_print_hello_wasm", &instance_cache, &dynamic_config)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use dlinkwm_host::{
    Config, DynamicConfig, HostMethods, Plugin, PluginHost, ResolvedSettings, Result, Stdio,
};

/// Loaded plugins by path, sharing one engine and one set of host methods.
#[derive(Debug)]
pub struct WasmInstanceCache {
    host: PluginHost,
    plugins: Mutex<HashMap<String, Plugin>>,
    watching: Mutex<bool>,
}

impl Default for WasmInstanceCache {
    fn default() -> Self {
        Self::new()
    }
}

impl WasmInstanceCache {
    /// A cache whose plugins have no host methods, and print to this process's stdout as the
    /// original did.
    ///
    /// # Panics
    /// When the engine cannot be created (its epoch thread cannot start); use
    /// [`WasmInstanceCache::with_host_methods`] to get that as an error.
    pub fn new() -> Self {
        Self::with_host_methods(HostMethods::new()).expect("the DlinkWM engine can be created")
    }

    /// A cache whose plugins can call `methods`.
    ///
    /// # Errors
    /// When the engine cannot be created.
    pub fn with_host_methods(methods: HostMethods) -> Result<Self> {
        let mut config = Config::default();
        config.defaults.stdio = Some(Stdio::Inherit);
        let host = PluginHost::builder()
            .config(config)
            .host_methods(methods)
            .build()?;
        Ok(Self {
            host,
            plugins: Mutex::new(HashMap::new()),
            watching: Mutex::new(false),
        })
    }

    /// The settings `config` gives `wasm_path`; unless `[defaults]` chooses otherwise, plugin
    /// output goes to this process's stdout, as it did in the original DlinkWM.
    fn settings(config: &DynamicConfig, wasm_path: &str) -> ResolvedSettings {
        let current = config.current();
        Self::original_stdio(&current, current.settings_for(wasm_path))
    }

    fn original_stdio(config: &Config, mut settings: ResolvedSettings) -> ResolvedSettings {
        if config.defaults.stdio.is_none() && settings.stdio == Stdio::Log {
            settings.stdio = Stdio::Inherit;
        }
        settings
    }

    /// The plugin at `wasm_path`, loading it the first time. Its entry allowlist and limits
    /// follow `config`.
    ///
    /// # Errors
    /// As [`PluginHost::load`].
    pub fn get_or_load(&self, wasm_path: &str, config: &DynamicConfig) -> Result<Plugin> {
        if let Some(plugin) = self
            .plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(wasm_path)
        {
            return Ok(plugin.clone());
        }
        let plugin = self
            .host
            .load_with_settings(Path::new(wasm_path), Self::settings(config, wasm_path))?;
        plugin.follow(config, Self::original_stdio)?;
        if *self.watching.lock().unwrap_or_else(|p| p.into_inner()) {
            self.host.watch(&plugin)?;
        }
        let mut plugins = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        Ok(plugins
            .entry(wasm_path.to_owned())
            .or_insert(plugin)
            .clone())
    }

    /// Re-reads `wasm_path` now: a valid, changed file becomes the current version; an invalid
    /// one is refused and the loaded version keeps serving.
    ///
    /// # Errors
    /// The reason the file was refused.
    pub fn reload(&self, wasm_path: &str, config: &DynamicConfig) -> Result<Plugin> {
        let plugin = self.get_or_load(wasm_path, config)?;
        plugin.reload()?;
        Ok(plugin)
    }

    /// The host behind this cache.
    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    fn watch_all(&self) -> Result<()> {
        *self.watching.lock().unwrap_or_else(|p| p.into_inner()) = true;
        let plugins: Vec<Plugin> = self
            .plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for plugin in plugins {
            self.host.watch(&plugin)?;
        }
        Ok(())
    }
}

/// Reloads the plugins of a [`WasmInstanceCache`] when their files change.
#[derive(Debug, Clone)]
pub struct WasmHotReloader {
    cache: Arc<WasmInstanceCache>,
    config: DynamicConfig,
}

impl WasmHotReloader {
    /// A reloader for `cache`'s plugins.
    pub fn new(cache: Arc<WasmInstanceCache>, config: DynamicConfig) -> Self {
        Self { cache, config }
    }

    /// Watches every plugin the cache has loaded, and every plugin it loads from now on.
    ///
    /// # Errors
    /// When a plugin's directory cannot be watched.
    pub fn start_watching(&self) -> Result<()> {
        self.cache.watch_all()
    }

    /// The configuration the reloader was given.
    pub fn config(&self) -> &DynamicConfig {
        &self.config
    }
}

/// Calls `entry` of the plugin at `wasm_path` with no input, loading it if needed. The entry
/// must be allowed by `config` (when `config` lists entries for that plugin).
///
/// # Errors
/// [`dlinkwm_host::PluginError::EntryNotAllowed`] and every loading and calling error.
pub fn call_wasm_function(
    wasm_path: &str,
    entry: &str,
    cache: &WasmInstanceCache,
    config: &DynamicConfig,
) -> Result<()> {
    let plugin = cache.get_or_load(wasm_path, config)?;
    plugin.call_raw(entry, &[])?;
    Ok(())
}
