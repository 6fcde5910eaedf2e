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
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use serde::{Deserialize, Serialize};

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

/// How a plugin's standard output and error are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stdio {
    /// Each line becomes a `tracing` event with target `dlinkwm::guest` (the default).
    #[default]
    Log,
    /// The host process's stdout and stderr.
    Inherit,
    /// Discarded.
    Null,
}

/// A host directory made visible to a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// The path the plugin sees.
    pub guest: String,
    /// Whether the plugin may only read (the default) or also write.
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

/// Per-plugin settings as written in `[defaults]` or `[plugins."path"]`: every field optional,
/// a plugin's own table overriding the defaults field by field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Maximum linear memory in MiB.
    pub max_memory_mib: Option<u64>,
    /// Maximum elements of one table.
    pub max_table_elements: Option<u64>,
    /// Time limit of one call in milliseconds (epoch interruption).
    pub timeout_ms: Option<u64>,
    /// Fuel given to each call; absent means fuel is not metered.
    pub fuel: Option<u64>,
    /// Maximum input of one call in bytes.
    pub max_input_bytes: Option<u64>,
    /// Maximum output of one call in bytes.
    pub max_output_bytes: Option<u64>,
    /// Maximum instances of one plugin version alive at once (concurrent calls).
    pub max_instances: Option<u64>,
    /// The longest a call waits for a free instance when `max_instances` are busy, in ms.
    pub queue_timeout_ms: Option<u64>,
    /// Whether instances are reused across calls (the default) or made fresh for every call.
    pub reuse_instances: Option<bool>,
    /// The host methods the plugin may call; absent means every method the host registered.
    pub host_methods: Option<Vec<String>>,
    /// Where the plugin's stdout and stderr go.
    pub stdio: Option<Stdio>,
    /// Environment variables passed through from the host, by name.
    pub env: Option<Vec<String>>,
    /// Arguments the plugin sees (WASI `args_get`).
    pub args: Option<Vec<String>>,
    /// Host directories the plugin may open.
    pub preopens: Option<Vec<Preopen>>,
    /// How many earlier good versions are kept for rollback.
    pub keep_versions: Option<u64>,
}

impl PluginSettings {
    fn overlay(&self, over: &PluginSettings) -> PluginSettings {
        macro_rules! pick {
            ($($field:ident),*) => {
                PluginSettings { $($field: over.$field.clone().or_else(|| self.$field.clone())),* }
            };
        }
        pick!(
            max_memory_mib,
            max_table_elements,
            timeout_ms,
            fuel,
            max_input_bytes,
            max_output_bytes,
            max_instances,
            queue_timeout_ms,
            reuse_instances,
            host_methods,
            stdio,
            env,
            args,
            preopens,
            keep_versions
        )
    }
}

/// The documented defaults of every per-plugin setting.
pub mod defaults {
    /// 256 MiB of linear memory: room for an interpreter-based plugin (Python), far below the
    /// 4 GiB a wasm32 memory can reach.
    pub const MAX_MEMORY_MIB: u64 = 256;
    /// Ten thousand table elements.
    pub const MAX_TABLE_ELEMENTS: u64 = 10_000;
    /// Five seconds per call.
    pub const TIMEOUT_MS: u64 = 5_000;
    /// 16 MiB of input per call.
    pub const MAX_INPUT_BYTES: u64 = 16 << 20;
    /// 16 MiB of output per call.
    pub const MAX_OUTPUT_BYTES: u64 = 16 << 20;
    /// Eight instances of one version alive at once.
    pub const MAX_INSTANCES: u64 = 8;
    /// Five seconds of waiting for a free instance.
    pub const QUEUE_TIMEOUT_MS: u64 = 5_000;
    /// Three earlier versions kept for rollback.
    pub const KEEP_VERSIONS: u64 = 3;
}

/// Settings with every default applied: what a plugin actually runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSettings {
    /// The entries the configuration lists for this plugin, in order; `None` when it lists none,
    /// in which case every entry may be called.
    pub entries: Option<Arc<[String]>>,
    /// Maximum linear memory in bytes.
    pub max_memory_bytes: usize,
    /// Maximum elements of one table.
    pub max_table_elements: usize,
    /// Time limit of one call.
    pub timeout: Duration,
    /// Fuel per call, when metered.
    pub fuel: Option<u64>,
    /// Maximum input of one call in bytes.
    pub max_input_bytes: usize,
    /// Maximum output of one call in bytes.
    pub max_output_bytes: usize,
    /// Maximum instances alive at once.
    pub max_instances: usize,
    /// The longest a call waits for a free instance.
    pub queue_timeout: Duration,
    /// Whether instances are reused across calls.
    pub reuse_instances: bool,
    /// Host methods the plugin may call (`None`: all registered).
    pub host_methods: Option<Arc<[String]>>,
    /// Where stdout and stderr go.
    pub stdio: Stdio,
    /// Environment variable names passed through.
    pub env: Vec<String>,
    /// WASI arguments.
    pub args: Vec<String>,
    /// Directories made visible.
    pub preopens: Vec<Preopen>,
    /// Earlier good versions kept for rollback.
    pub keep_versions: usize,
}

impl Default for ResolvedSettings {
    fn default() -> Self {
        PluginSettings::default().resolve(None)
    }
}

impl ResolvedSettings {
    /// Whether `entry` may be called under these settings.
    #[inline]
    pub fn allows_entry(&self, entry: &str) -> bool {
        self.entries.as_deref().is_none_or(|entries| {
            entries
                .iter()
                .any(|allowed| crate::runtime::exports::same_name(allowed, entry))
        })
    }

    /// Whether `other` grants exactly what these settings grant (stdio, environment, arguments,
    /// preopened directories): what an instance's WASI context is built from.
    pub fn same_grants(&self, other: &ResolvedSettings) -> bool {
        self.stdio == other.stdio
            && self.env == other.env
            && self.args == other.args
            && self.preopens == other.preopens
    }

    /// Whether the plugin may call host method `method`.
    pub fn allows_host_method(&self, method: &str) -> bool {
        self.host_methods
            .as_deref()
            .is_none_or(|methods| methods.iter().any(|allowed| allowed == method))
    }
}

fn clamp(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl PluginSettings {
    /// Applies the documented defaults.
    pub fn resolve(&self, entries: Option<&[String]>) -> ResolvedSettings {
        ResolvedSettings {
            entries: entries.map(Arc::from),
            max_memory_bytes: clamp(
                self.max_memory_mib
                    .unwrap_or(defaults::MAX_MEMORY_MIB)
                    .saturating_mul(1 << 20),
            ),
            max_table_elements: clamp(
                self.max_table_elements
                    .unwrap_or(defaults::MAX_TABLE_ELEMENTS),
            ),
            timeout: Duration::from_millis(self.timeout_ms.unwrap_or(defaults::TIMEOUT_MS)),
            fuel: self.fuel,
            max_input_bytes: clamp(self.max_input_bytes.unwrap_or(defaults::MAX_INPUT_BYTES)),
            max_output_bytes: clamp(self.max_output_bytes.unwrap_or(defaults::MAX_OUTPUT_BYTES)),
            max_instances: clamp(self.max_instances.unwrap_or(defaults::MAX_INSTANCES)).max(1),
            queue_timeout: Duration::from_millis(
                self.queue_timeout_ms.unwrap_or(defaults::QUEUE_TIMEOUT_MS),
            ),
            reuse_instances: self.reuse_instances.unwrap_or(true),
            host_methods: self.host_methods.as_deref().map(Arc::from),
            stdio: self.stdio.unwrap_or_default(),
            env: self.env.clone().unwrap_or_default(),
            args: self.args.clone().unwrap_or_default(),
            preopens: self.preopens.clone().unwrap_or_default(),
            keep_versions: clamp(self.keep_versions.unwrap_or(defaults::KEEP_VERSIONS)),
        }
    }
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
            .pool_max_memory_mib
            .is_some_and(|mib| mib == 0 || mib > 4096)
        {
            return Err(bad(
                "engine.pool_max_memory_mib".to_owned(),
                "must be between 1 and 4096 (a wasm32 memory cannot exceed 4 GiB)",
            ));
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
const ENV_TABLES: &[&str] = &["entry_functions", "defaults", "plugins", "engine"];

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

    #[test]
    fn allowlists() {
        let mut settings = ResolvedSettings::default();
        assert!(settings.allows_entry("anything"));
        assert!(settings.allows_host_method("anything"));
        settings.entries = Some(Arc::from(vec!["a".to_owned()]));
        settings.host_methods = Some(Arc::from(Vec::<String>::new()));
        assert!(settings.allows_entry("a"));
        assert!(!settings.allows_entry("b"));
        assert!(!settings.allows_host_method("anything"));
    }
}
