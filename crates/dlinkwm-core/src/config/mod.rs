//! Configuration, the bottom layer: what `dlinkwm.toml` says and what a plugin runs with. The
//! file format ([`Config`]: `[entry_functions]`, `[defaults]`, `[plugins."path"]`, `[engine]`,
//! environment overrides, validation and lookup by path) is in `file`; a plugin's settings, as
//! written ([`PluginSettings`]) and with every default applied ([`ResolvedSettings`]), are in
//! `settings`. It depends on nothing else in the crate but `names` (the entry allowlist compares
//! names the way the export table does); the configuration that follows its file
//! (`DynamicConfig`) needs plugins and a watcher, so it lives in `watch`.

mod file;
mod settings;

pub use file::{
    Config, ConfigError, DEFAULT_CONFIG_FILE, DEFAULT_CONFIG_TOML, ENV_PREFIX, EngineSettings,
    RegistrySettings, create_default_config_if_missing,
};
pub use settings::{
    PluginSettings, Preopen, ResolvedSettings, RollbackOn, Smoke, SmokeFormat, Stdio, defaults,
};
