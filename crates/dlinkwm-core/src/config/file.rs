//! Configuration: `dlinkwm.toml` plus `DLINKWM_` environment overrides, through figment.
//!
//! The format is the original DlinkWM one, extended with per-plugin settings:
//!
//! ```toml
//! [entry_functions]
//! "wasm/wasm_test.wasm" = ["dlinkwm_print_hello_wasm", "dlinkwm_call_host_method"]
//!
//! [defaults]
//! timeout_ms = 5000
//!
//! [plugins."wasm/hello.wasm"]
//! host_methods = ["custom_greet"]
//! ```
//!
//! Plugin keys are paths, relative to the directory of the configuration file (which is the
//! current directory for the usual `dlinkwm.toml`), or absolute. Environment variables override
//! the file: `DLINKWM_DEFAULTS__TIMEOUT_MS=100` sets `defaults.timeout_ms` (`__` separates keys).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use serde::{Deserialize, Serialize};

use crate::config::settings::{PluginSettings, ResolvedSettings};

/// The prefix of environment variables that override the configuration file.
pub const ENV_PREFIX: &str = "DLINKWM_";

/// The configuration file name used when none is given.
pub const DEFAULT_CONFIG_FILE: &str = "dlinkwm.toml";

/// The commented default configuration that `dlinkwm init` and
/// [`create_default_config_if_missing`] write.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

/// An invalid configuration: which file, which key and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid configuration{}{}: {reason}", file_part(file.as_deref()), key_part(key.as_deref()))]
pub struct ConfigError {
    /// The file, when the error comes from one.
    pub file: Option<PathBuf>,
    /// The dotted key that is wrong, when known (`plugins."a.wasm".timeout_ms`).
    pub key: Option<String>,
    /// What is wrong with it.
    pub reason: String,
}

fn file_part(file: Option<&Path>) -> String {
    file.map(|file| format!(" in `{}`", file.display()))
        .unwrap_or_default()
}

fn key_part(key: Option<&str>) -> String {
    key.map(|key| format!(" at key `{key}`"))
        .unwrap_or_default()
}

/// Engine-wide settings, `[engine]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Use wasmtime's pooling instance allocator (faster instantiation, memory reserved up front).
    pub pooling: Option<bool>,
    /// Meter fuel (needed for any plugin's `fuel` setting; costs some speed on every call).
    pub consume_fuel: Option<bool>,
    /// Keep compiled code on disk so later processes skip compiling (default: true).
    pub cache: Option<bool>,
    /// Where (default: `$XDG_CACHE_HOME/dlinkwm/compiled` or `~/.cache/dlinkwm/compiled`).
    pub cache_dir: Option<PathBuf>,
    /// Bound of the disk cache in MiB; least recently used entries go first (default: 1024).
    pub cache_max_mib: Option<u64>,
    /// The largest plugin file compiled, in MiB (default: 256).
    pub max_module_mib: Option<u64>,
    /// With `pooling`, the linear memory of every instance slot in MiB (default: 256); a plugin
    /// whose `max_memory_mib` is larger is refused.
    pub pool_max_memory_mib: Option<u64>,
    /// Accept plugins that use the WebAssembly GC proposal (default: false). Their GC heap
    /// counts in `max_memory_mib` with their linear memories.
    pub gc: Option<bool>,
    /// How long a guest called with `call_async` runs before it yields to the executor, in
    /// milliseconds, rounded up to the epoch tick of 10 ms (default: 10).
    pub async_yield_ms: Option<u64>,
    /// Keep every compiled function by the hash of its code (Cranelift's incremental
    /// compilation), so a changed plugin compiles only the functions that changed
    /// (default: true). In memory, and beside the compiled-code cache on disk when it is on.
    pub incremental: Option<bool>,
    /// The bound of that function cache, in MiB, in memory and again on disk (default: 256).
    pub incremental_cache_mib: Option<u64>,
    /// Tiered reloads: a reloaded plugin serves from Winch's code (compiled in a fraction of
    /// Cranelift's time) until Cranelift's code replaces it (default: false for hosts, true
    /// for `dlinkwm watch` and `dlinkwm serve`).
    pub tiered: Option<bool>,
}

/// Plugins from OCI registries, `[registry]` (used by `dlinkwm-host` for `oci://` plugins).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Where pulled plugins are kept by digest, the last known good version of each tag with
    /// them; relative to the configuration file (default: `$XDG_CACHE_HOME/dlinkwm/oci` or
    /// `~/.cache/dlinkwm/oci`).
    pub store_dir: Option<PathBuf>,
    /// How often a followed tag is checked (default: 30 s); each wait is this ± 10 %, so
    /// replicas do not all ask at once.
    #[serde(default, with = "humantime_serde")]
    pub poll: Option<std::time::Duration>,
    /// The longest one registry operation (resolve, pull, push) may take (default: 60 s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<std::time::Duration>,
    /// Registries (`host:port`) reached over plain HTTP. `localhost`, `127.0.0.1` and `[::1]`
    /// always are; every other registry only over HTTPS.
    #[serde(default)]
    pub insecure: Vec<String>,
}

/// A parsed configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Plugin path → the entries that may be called, in the order "call by config" tries them.
    #[serde(default)]
    pub entry_functions: BTreeMap<String, Vec<String>>,
    /// Settings for every plugin.
    #[serde(default)]
    pub defaults: PluginSettings,
    /// Settings for one plugin, by path.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Engine-wide settings.
    #[serde(default)]
    pub engine: EngineSettings,
    /// Plugins from OCI registries.
    #[serde(default)]
    pub registry: RegistrySettings,
    /// The file this came from; relative plugin keys are relative to its directory.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Config {
    /// Reads `path` and applies `DLINKWM_` environment overrides.
    ///
    /// # Errors
    /// [`ConfigError`] when the file is missing or unreadable, is not valid TOML, or a key has
    /// the wrong type or is unknown; the error names the key.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            file: Some(path.to_owned()),
            key: None,
            reason: error.to_string(),
        })?;
        Self::from_toml_with_env(&text, Some(path))
    }

    /// Parses TOML text (no file) and applies `DLINKWM_` environment overrides.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml_with_env(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
        let figment = Figment::new()
            .merge(Toml::string(text))
            .merge(env_overrides());
        Self::extract(figment, source)
    }

    /// Parses TOML text alone, without environment overrides.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::extract(Figment::new().merge(Toml::string(text)), None)
    }

    fn extract(figment: Figment, source: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(|error| {
            let key = (!error.path.is_empty()).then(|| dotted_key(&error.path));
            ConfigError {
                file: source.map(Path::to_owned),
                key,
                reason: error.kind.to_string(),
            }
        })?;
        config.source = source.map(Path::to_owned);
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: String, reason: &str| ConfigError {
            file: self.source.clone(),
            key: Some(key),
            reason: reason.to_owned(),
        };
        let tables = std::iter::once(("defaults".to_owned(), &self.defaults)).chain(
            self.plugins
                .iter()
                .map(|(name, settings)| (format!("plugins.\"{name}\""), settings)),
        );
        for (table, settings) in tables {
            if settings.max_instances == Some(0) {
                return Err(bad(format!("{table}.max_instances"), "must be at least 1"));
            }
            if settings.timeout_ms == Some(0) {
                return Err(bad(format!("{table}.timeout_ms"), "must be at least 1"));
            }
            for (key, value) in [
                ("max_input_bytes", settings.max_input_bytes),
                ("max_output_bytes", settings.max_output_bytes),
            ] {
                if value.is_some_and(|bytes| bytes > u64::from(u32::MAX)) {
                    return Err(bad(
                        format!("{table}.{key}"),
                        "must be at most 4294967295 (a wasm32 plugin cannot address more)",
                    ));
                }
            }
            if settings
                .max_memory_mib
                .is_some_and(|mib| mib == 0 || mib > 4096)
            {
                return Err(bad(
                    format!("{table}.max_memory_mib"),
                    "must be between 1 and 4096 (a wasm32 memory cannot exceed 4 GiB)",
                ));
            }
        }
        if self.engine.max_module_mib == Some(0) {
            return Err(bad(
                "engine.max_module_mib".to_owned(),
                "must be at least 1",
            ));
        }
        if self
            .engine
            .incremental_cache_mib
            .is_some_and(|mib| mib == 0 || mib > 1 << 20)
        {
            return Err(bad(
                "engine.incremental_cache_mib".to_owned(),
                "must be between 1 and 1048576",
            ));
        }
        if self.engine.async_yield_ms == Some(0) {
            return Err(bad(
                "engine.async_yield_ms".to_owned(),
                "must be at least 1",
            ));
        }
        if self
            .engine
            .pool_max_memory_mib
            .is_some_and(|mib| mib == 0 || mib > 4096)
        {
            return Err(bad(
                "engine.pool_max_memory_mib".to_owned(),
                "must be between 1 and 4096 (a wasm32 memory cannot exceed 4 GiB)",
            ));
        }
        for (key, value) in [
            ("registry.poll", self.registry.poll),
            ("registry.timeout", self.registry.timeout),
        ] {
            if value.is_some_and(|value| {
                value < std::time::Duration::from_millis(100)
                    || value > std::time::Duration::from_secs(7 * 24 * 3600)
            }) {
                return Err(bad(key.to_owned(), "must be between 100ms and 7days"));
            }
        }
        for (plugin, entries) in &self.entry_functions {
            if entries.is_empty() {
                return Err(bad(
                    format!("entry_functions.\"{plugin}\""),
                    "lists no entries (remove the line to allow every entry)",
                ));
            }
        }
        Ok(())
    }

    /// The entries configured for `plugin` (a path or a plugin name), in order.
    pub fn entry_functions(&self, plugin: &str) -> Option<&Vec<String>> {
        self.lookup(&self.entry_functions, plugin)
    }

    /// The settings `plugin` runs with: `[defaults]`, overlaid with `[plugins."plugin"]`, with
    /// the documented defaults for whatever neither sets.
    pub fn settings_for(&self, plugin: &str) -> ResolvedSettings {
        let merged = match self.lookup(&self.plugins, plugin) {
            Some(own) => self.defaults.overlay(own),
            None => self.defaults.clone(),
        };
        merged.resolve(self.entry_functions(plugin).map(Vec::as_slice))
    }

    fn lookup<'a, V>(&self, table: &'a BTreeMap<String, V>, plugin: &str) -> Option<&'a V> {
        if let Some(value) = table.get(plugin) {
            return Some(value);
        }
        let wanted = normalize(&absolute(Path::new(plugin), None));
        let base = self.source.as_deref().and_then(Path::parent);
        table
            .iter()
            .find(|(key, _)| normalize(&absolute(Path::new(key), base)) == wanted)
            .map(|(_, value)| value)
    }
}

/// The top-level tables environment variables may override. Other `DLINKWM_` variables (such as
/// the CLI's `DLINKWM_LOG`) are not configuration and are left alone.
const ENV_TABLES: &[&str] = &[
    "entry_functions",
    "defaults",
    "plugins",
    "engine",
    "registry",
];

fn env_overrides() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| {
            let table = key.as_str().split("__").next().unwrap_or_default();
            ENV_TABLES
                .iter()
                .any(|allowed| table.eq_ignore_ascii_case(allowed))
        })
        .split("__")
}

fn dotted_key(path: &[String]) -> String {
    path.iter()
        .map(|part| {
            if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                part.clone()
            } else {
                format!("\"{part}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn absolute(path: &Path, base: Option<&Path>) -> PathBuf {
    let joined = match base {
        Some(base) if path.is_relative() && !base.as_os_str().is_empty() => base.join(path),
        _ => path.to_owned(),
    };
    std::path::absolute(&joined).unwrap_or(joined)
}

/// Removes `.` and resolves `..` lexically, so `./wasm/a.wasm` and `wasm/x/../a.wasm` match.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Writes [`DEFAULT_CONFIG_TOML`] to `path` unless a file is already there.
///
/// Returns whether it wrote the file.
///
/// # Errors
/// The I/O error, as a [`ConfigError`] naming the file.
pub fn create_default_config_if_missing(path: impl AsRef<Path>) -> Result<bool, ConfigError> {
    let path = path.as_ref();
    let io_error = |error: std::io::Error| ConfigError {
        file: Some(path.to_owned()),
        key: None,
        reason: error.to_string(),
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, DEFAULT_CONFIG_TOML.as_bytes())
                .map_err(io_error)?;
            Ok(true)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(io_error(error)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn default_config_parses_and_lists_the_original_entries() {
        let config = Config::from_toml(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(
            config.entry_functions("wasm/wasm_test.wasm").unwrap(),
            &["dlinkwm_print_hello_wasm", "dlinkwm_call_host_method"]
        );
        assert_eq!(
            config.settings_for("x.wasm").timeout,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn keys_match_by_normalized_path() {
        let config =
            Config::from_toml("[entry_functions]\n\"./wasm/a.wasm\" = [\"go\"]\n").unwrap();
        assert!(config.entry_functions("wasm/a.wasm").is_some());
        assert!(config.entry_functions("wasm/x/../a.wasm").is_some());
        let absolute = std::path::absolute("wasm/a.wasm").unwrap();
        assert!(config.entry_functions(absolute.to_str().unwrap()).is_some());
        assert!(config.entry_functions("wasm/b.wasm").is_none());
    }

    #[test]
    fn plugin_settings_overlay_defaults() {
        let config = Config::from_toml(
            "[defaults]\ntimeout_ms = 100\nmax_instances = 2\n[plugins.\"a.wasm\"]\ntimeout_ms = 7\n",
        )
        .unwrap();
        let a = config.settings_for("a.wasm");
        assert_eq!(a.timeout, Duration::from_millis(7));
        assert_eq!(a.max_instances, 2);
        assert_eq!(
            config.settings_for("b.wasm").timeout,
            Duration::from_millis(100)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let error = Config::from_toml("[defaults]\ntimeout_ms = \"soon\"\n").unwrap_err();
        assert_eq!(error.key.as_deref(), Some("defaults.timeout_ms"));
        let error = Config::from_toml("[defaults]\ntimeout = 1\n").unwrap_err();
        assert!(error.reason.contains("unknown field"), "{error}");
        let error = Config::from_toml("[defaults]\nmax_instances = 0\n").unwrap_err();
        assert_eq!(error.key.as_deref(), Some("defaults.max_instances"));
        let error =
            Config::from_toml("[plugins.\"a.wasm\"]\nmax_input_bytes = 8589934592\n").unwrap_err();
        assert_eq!(
            error.key.as_deref(),
            Some("plugins.\"a.wasm\".max_input_bytes")
        );
        let error = Config::from_toml("entry_functions = [").unwrap_err();
        assert!(error.key.is_none());
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail API fixes the closure's error type"
    )]
    fn env_overrides_apply_and_unrelated_variables_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DLINKWM_DEFAULTS__TIMEOUT_MS", "123");
            jail.set_env("DLINKWM_LOG", "debug");
            jail.set_env("DLINKWM_SOMETHING_ELSE", "x");
            let config = Config::from_toml_with_env("[defaults]\ntimeout_ms = 5\n", None).unwrap();
            assert_eq!(
                config.settings_for("a.wasm").timeout,
                Duration::from_millis(123)
            );
            jail.set_env("DLINKWM_DEFAULTS__TIMEOUT_MS", "soon");
            let error = Config::from_toml_with_env("", None).unwrap_err();
            assert_eq!(error.key.as_deref(), Some("defaults.timeout_ms"));
            Ok(())
        });
    }
}
