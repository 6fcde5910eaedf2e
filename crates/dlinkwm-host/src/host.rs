//! The plugin host: one engine, one configuration, one set of host methods.

use std::path::Path;
use std::sync::{Arc, Mutex};

use dlinkwm_core::{
    CallObserver, Config, DynamicConfig, Engine, EngineOptions, PluginOptions, PluginWatcher,
};

use crate::{Format, HostMethods, Plugin, Result};

/// Loads plugins that share an engine, a configuration and the application's host methods.
#[derive(Clone, Debug)]
pub struct PluginHost {
    engine: Engine,
    config: ConfigSource,
    methods: Arc<HostMethods>,
    pub(crate) format: Format,
    watcher: Arc<Mutex<Option<Arc<PluginWatcher>>>>,
    observer: Observer,
}

#[derive(Clone, Debug)]
enum ConfigSource {
    Fixed(Arc<Config>),
    Dynamic(DynamicConfig),
}

/// Builds a [`PluginHost`]; see [`PluginHost::builder`].
#[derive(Debug, Default)]
#[must_use]
pub struct PluginHostBuilder {
    config: Option<Config>,
    dynamic: Option<DynamicConfig>,
    methods: HostMethods,
    format: Option<Format>,
    engine: Option<Engine>,
    observer: Observer,
}

/// The call observer of a host, if any (not `Debug` itself).
#[derive(Clone, Default)]
struct Observer(Option<Arc<dyn CallObserver>>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

impl PluginHostBuilder {
    /// The configuration (entry allowlists, limits, capabilities). Default: empty, so every
    /// setting has its documented default.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// A configuration that follows its file: plugins loaded by this host get new settings
    /// (entry allowlists, limits, permissions) when it changes. Call
    /// [`DynamicConfig::start_watching`] to watch the file.
    pub fn dynamic_config(mut self, config: DynamicConfig) -> Self {
        self.dynamic = Some(config);
        self
    }

    /// The host methods plugins can call.
    pub fn host_methods(mut self, methods: HostMethods) -> Self {
        self.methods = methods;
        self
    }

    /// The format typed calls use. Default: postcard.
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// An engine to share with other hosts. Default: a new engine with the options of the
    /// configuration's `[engine]` table.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Told of every call of every plugin this host loads (plugin, entry, version, outcome,
    /// duration, fuel): metrics without wrapping calls. Default: none, which costs nothing.
    pub fn observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Observer(Some(observer));
        self
    }

    /// Creates the host.
    ///
    /// # Errors
    /// The engine cannot be created with the configured options.
    pub fn build(self) -> Result<PluginHost> {
        let config = match self.dynamic {
            Some(dynamic) => ConfigSource::Dynamic(dynamic),
            None => ConfigSource::Fixed(Arc::new(self.config.unwrap_or_default())),
        };
        let engine = match self.engine {
            Some(engine) => engine,
            None => Engine::new(EngineOptions::from_settings(&config.current().engine))?,
        };
        Ok(PluginHost {
            engine,
            config,
            methods: Arc::new(self.methods),
            format: self.format.unwrap_or(Format::Postcard),
            watcher: Arc::new(Mutex::new(None)),
            observer: self.observer,
        })
    }
}

impl ConfigSource {
    fn current(&self) -> Arc<Config> {
        match self {
            ConfigSource::Fixed(config) => config.clone(),
            ConfigSource::Dynamic(dynamic) => dynamic.current(),
        }
    }
}

impl PluginHost {
    /// Starts building a host.
    pub fn builder() -> PluginHostBuilder {
        PluginHostBuilder::default()
    }

    /// Loads the plugin at `path` with the settings the configuration gives that path.
    ///
    /// `path` may also be a plugin in an OCI registry, `oci://REGISTRY/REPOSITORY:TAG` or
    /// `oci://REGISTRY/REPOSITORY@sha256:…` (configured in `[plugins."oci://…"]` under that
    /// same text): its digests are verified, it is kept in the local store (`[registry]`), and
    /// when the registry cannot be reached a tag starts from the last version that loaded
    /// from it, with a warning. [`PluginHost::load_watched`] then follows the tag.
    ///
    /// # Errors
    /// See [`dlinkwm_core::Plugin::load`]; for a registry plugin also [`Error::Registry`]
    /// (unreachable with nothing stored, refused, tampered, too large).
    ///
    /// [`Error::Registry`]: crate::Error::Registry
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Plugin> {
        let path = path.as_ref();
        #[cfg(feature = "oci")]
        if let Some(text) = path.to_str().filter(|text| crate::oci::is_reference(text)) {
            return self.load_reference(text);
        }
        let name = path.display().to_string();
        let options = self.options(&name);
        let plugin = dlinkwm_core::Plugin::load(&self.engine, path, options)?;
        self.follow_config(&plugin)?;
        Ok(Plugin::new(plugin, self.format))
    }

    /// Loads the plugin at `path` for async calls ([`Plugin::call_async`]) on the tokio runtime
    /// this runs on, with its settings from the host's configuration. Reading and compiling
    /// run on the runtime's blocking threads, never on an executor thread. The plugin's host
    /// calls may await methods registered with [`HostMethods::register_async`], its WASI waits
    /// suspend it, and a long call yields to the executor at every epoch tick
    /// (`[engine] async_yield_ms`). The runtime needs its time driver (`enable_time`, on in
    /// `#[tokio::main]`).
    ///
    /// A plugin is loaded for sync or for async calls: the sync calls of an async plugin (and
    /// `call_async` on a sync one) are refused with
    /// [`crate::core::Error::WrongCallMode`].
    ///
    /// # Errors
    /// As [`PluginHost::load`], and [`crate::core::Error::WrongCallMode`] outside a tokio
    /// runtime.
    pub async fn load_async(&self, path: impl AsRef<Path>) -> Result<Plugin> {
        let path = path.as_ref();
        #[cfg(feature = "oci")]
        if let Some(text) = path.to_str().filter(|text| crate::oci::is_reference(text)) {
            return self.load_reference_async(text).await;
        }
        let name = path.display().to_string();
        let options = self.options(&name);
        let plugin = dlinkwm_core::Plugin::load_async(&self.engine, path, options).await?;
        self.follow_config(&plugin)?;
        Ok(Plugin::new(plugin, self.format))
    }

    /// [`PluginHost::load_bytes`] for async calls (see [`PluginHost::load_async`]).
    ///
    /// # Errors
    /// As [`PluginHost::load_async`].
    pub async fn load_bytes_async(&self, name: &str, bytes: &[u8]) -> Result<Plugin> {
        let options = self.options(name);
        let plugin = dlinkwm_core::Plugin::from_bytes_async(&self.engine, bytes, options).await?;
        self.follow_config(&plugin)?;
        Ok(Plugin::new(plugin, self.format))
    }

    /// Loads the plugin at `path` and watches its file: each settled change is compiled and
    /// validated off the call path and swapped in, or refused with a
    /// [`crate::ReloadEvent::Failed`] while the current version keeps serving.
    ///
    /// # Errors
    /// As [`PluginHost::load`], and [`dlinkwm_core::Error::Watch`].
    pub fn load_watched(&self, path: impl AsRef<Path>) -> Result<Plugin> {
        let plugin = self.load(path)?;
        self.watch(&plugin)?;
        Ok(plugin)
    }

    /// Watches `plugin`'s file (see [`PluginHost::load_watched`]).
    ///
    /// A plugin loaded from a registry tag is followed instead: the tag is checked every
    /// `[registry] poll` (± 10 %), and when it points to a new digest that version is pulled,
    /// verified and reloaded through the same checks, smoke call and canary as a new file
    /// (a tampered or refused version is reported as a [`crate::ReloadEvent::Failed`] and never
    /// tried again; the current version keeps serving). A plugin pinned to a digest never moves.
    ///
    /// # Errors
    /// [`dlinkwm_core::Error::Watch`].
    pub fn watch(&self, plugin: &Plugin) -> Result<()> {
        #[cfg(feature = "oci")]
        if let Some(origin) = plugin.origin() {
            return self.follow_tag(plugin, origin);
        }
        self.watcher()?.watch(plugin.core())?;
        Ok(())
    }

    /// The host's file watcher, started on first use.
    pub(crate) fn watcher(&self) -> Result<Arc<PluginWatcher>> {
        let mut slot = self
            .watcher
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match &*slot {
            Some(watcher) => Ok(watcher.clone()),
            None => {
                let watcher = Arc::new(PluginWatcher::new()?);
                *slot = Some(watcher.clone());
                Ok(watcher)
            }
        }
    }

    pub(crate) fn follow_config(&self, plugin: &dlinkwm_core::Plugin) -> dlinkwm_core::Result<()> {
        if let ConfigSource::Dynamic(dynamic) = &self.config {
            dynamic.follow(plugin)?;
        }
        Ok(())
    }

    /// Loads a plugin from bytes under `name` (which is also its configuration key).
    ///
    /// # Errors
    /// See [`dlinkwm_core::Plugin::from_bytes`].
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin> {
        let options = self.options(name);
        let plugin = dlinkwm_core::Plugin::from_bytes(&self.engine, bytes, options)?;
        self.follow_config(&plugin)?;
        Ok(Plugin::new(plugin, self.format))
    }

    /// Loads the plugin at `path` with `settings` instead of those the host's configuration
    /// gives it (and without following that configuration).
    ///
    /// # Errors
    /// As [`PluginHost::load`].
    pub fn load_with_settings(
        &self,
        path: impl AsRef<Path>,
        settings: dlinkwm_core::ResolvedSettings,
    ) -> Result<Plugin> {
        let path = path.as_ref();
        let mut options = self.options(&path.display().to_string());
        options.settings = settings;
        let plugin = dlinkwm_core::Plugin::load(&self.engine, path, options)?;
        Ok(Plugin::new(plugin, self.format))
    }

    pub(crate) fn options(&self, name: &str) -> PluginOptions {
        PluginOptions {
            name: Some(name.to_owned()),
            settings: self.config.current().settings_for(name),
            host: self.methods.clone(),
            observer: self.observer.0.clone(),
        }
    }

    /// This host, with `observer` told of every call of the plugins it loads from now on
    /// (see [`PluginHostBuilder::observer`]); the engine, configuration, host methods and file
    /// watcher are shared.
    #[must_use]
    pub fn with_observer(&self, observer: Arc<dyn CallObserver>) -> Self {
        Self {
            observer: Observer(Some(observer)),
            ..self.clone()
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.current()
    }

    /// The host methods.
    pub fn host_methods(&self) -> &HostMethods {
        &self.methods
    }
}
