//! The plugin host: one engine, one configuration, one set of host methods.

use std::path::Path;
use std::sync::Arc;

use dlinkwm_core::{Config, Engine, EngineOptions, PluginOptions};

use crate::{HostMethods, Plugin, Result, SerializationFormat};

/// Loads plugins that share an engine, a configuration and the application's host methods.
#[derive(Clone, Debug)]
pub struct PluginHost {
    engine: Engine,
    config: Arc<Config>,
    methods: Arc<HostMethods>,
    format: SerializationFormat,
}

/// Builds a [`PluginHost`]; see [`PluginHost::builder`].
#[derive(Debug, Default)]
#[must_use]
pub struct PluginHostBuilder {
    config: Option<Config>,
    methods: HostMethods,
    format: Option<SerializationFormat>,
    engine: Option<Engine>,
}

impl PluginHostBuilder {
    /// The configuration (entry allowlists, limits, capabilities). Default: empty, so every
    /// setting has its documented default.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// The host methods plugins can call.
    pub fn host_methods(mut self, methods: HostMethods) -> Self {
        self.methods = methods;
        self
    }

    /// The format typed calls use. Default: postcard.
    pub fn format(mut self, format: SerializationFormat) -> Self {
        self.format = Some(format);
        self
    }

    /// An engine to share with other hosts. Default: a new engine with the options of the
    /// configuration's `[engine]` table.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Creates the host.
    ///
    /// # Errors
    /// The engine cannot be created with the configured options.
    pub fn build(self) -> Result<PluginHost> {
        let config = self.config.unwrap_or_default();
        let engine = match self.engine {
            Some(engine) => engine,
            None => Engine::new(EngineOptions::from_settings(&config.engine))?,
        };
        Ok(PluginHost {
            engine,
            config: Arc::new(config),
            methods: Arc::new(self.methods),
            format: self.format.unwrap_or(SerializationFormat::Postcard),
        })
    }
}

impl PluginHost {
    /// Starts building a host.
    pub fn builder() -> PluginHostBuilder {
        PluginHostBuilder::default()
    }

    /// Loads the plugin at `path` with the settings the configuration gives that path.
    ///
    /// # Errors
    /// See [`dlinkwm_core::Plugin::load`].
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Plugin> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let options = self.options(&name);
        let plugin = dlinkwm_core::Plugin::load(&self.engine, path, options)?;
        Ok(Plugin::new(plugin, self.format))
    }

    /// Loads a plugin from bytes under `name` (which is also its configuration key).
    ///
    /// # Errors
    /// See [`dlinkwm_core::Plugin::from_bytes`].
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin> {
        let options = self.options(name);
        let plugin = dlinkwm_core::Plugin::from_bytes(&self.engine, bytes, options)?;
        Ok(Plugin::new(plugin, self.format))
    }

    fn options(&self, name: &str) -> PluginOptions {
        PluginOptions {
            name: Some(name.to_owned()),
            settings: self.config.settings_for(name),
            host: self.methods.clone(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The host methods.
    pub fn host_methods(&self) -> &HostMethods {
        &self.methods
    }
}
