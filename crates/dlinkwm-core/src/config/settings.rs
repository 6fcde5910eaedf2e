//! A plugin's settings: as written in `[defaults]` and `[plugins."path"]` (every field
//! optional), and resolved (every default applied), which is what a plugin runs with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names::same_name;

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

/// A smoke call: an entry and an input every new version of the plugin must answer without an
/// error before it serves (at load and at every reload). It runs on an instance of its own,
/// dropped after, so no call sees what it did (nor does it see state handed over by a reload). A version that fails it is refused like
/// a bad file, with the call's error, and the current version keeps serving.
///
/// ```toml
/// [plugins."greeter.wasm"]
/// smoke = { entry = "greet", input = '{"name":"smoke test"}', format = "json" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smoke {
    /// The entry to call.
    pub entry: String,
    /// Its input, as text (sent as its UTF-8 bytes). Default: empty.
    #[serde(default)]
    pub input: String,
    /// The format the input is in: `"raw"` (the default), `"json"` or `"postcard"`.
    #[serde(default)]
    pub format: SmokeFormat,
}

/// Automatic rollback: a version made current by a reload that has `faults` guest faults
/// (traps, panics, limits — not the error values its entries return, which may be the
/// caller's bad input) within `within` of its swap is rolled back by itself to the version before it (a
/// `RolledBack` event with the reason), and the same content is not loaded again from the
/// plugin's file until different bytes arrive. Off unless set.
///
/// ```toml
/// [plugins."greeter.wasm"]
/// rollback_on = { faults = 5, within = "30s" }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackOn {
    /// How many guest faults (traps, panics, limits) roll the version back:
    /// the call that makes this many does. At least 1.
    pub faults: u64,
    /// How long after the swap they count: `"30s"`, `"500ms"`, `"2m"`.
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}

/// The format of a smoke call's input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmokeFormat {
    /// The bytes as they are.
    #[default]
    Raw,
    /// JSON text.
    Json,
    /// postcard (an empty input is `()`).
    Postcard,
}

impl SmokeFormat {
    /// The ABI format.
    pub fn format(self) -> dlinkwm_abi::Format {
        match self {
            Self::Raw => dlinkwm_abi::Format::Raw,
            Self::Json => dlinkwm_abi::Format::Json,
            Self::Postcard => dlinkwm_abi::Format::Postcard,
        }
    }
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
    /// The most calls waiting for a free instance at once; the next one is refused with `Busy`
    /// at once (a bounded queue: async callers cost no thread, so nothing else bounds them).
    pub max_queued_calls: Option<u64>,
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
    /// A call every new version must pass before it serves; see [`Smoke`].
    pub smoke: Option<Smoke>,
    /// Roll a new version back by itself when it faults; see [`RollbackOn`].
    pub rollback_on: Option<RollbackOn>,
    /// Extism plugins: the values `config_get` answers (Extism's manifest `config`).
    pub config: Option<BTreeMap<String, String>>,
    /// Extism plugins: the hosts `http_request` may reach, as globs (`*.example.com`); absent
    /// or empty, every request is refused.
    pub allowed_hosts: Option<Vec<String>>,
    /// Extism plugins: the most bytes of vars one instance keeps (keys and values); 0 turns
    /// vars off.
    pub max_var_bytes: Option<u64>,
    /// Extism plugins: the largest HTTP response body `http_request` reads.
    pub max_http_response_bytes: Option<u64>,
}

impl PluginSettings {
    pub(super) fn overlay(&self, over: &PluginSettings) -> PluginSettings {
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
            max_queued_calls,
            reuse_instances,
            host_methods,
            stdio,
            env,
            args,
            preopens,
            keep_versions,
            smoke,
            rollback_on,
            config,
            allowed_hosts,
            max_var_bytes,
            max_http_response_bytes
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
    /// A thousand calls waiting for a free instance.
    pub const MAX_QUEUED_CALLS: u64 = 1_000;
    /// Three earlier versions kept for rollback.
    pub const KEEP_VERSIONS: u64 = 3;
    /// 1 MiB of vars per Extism instance (Extism's default).
    pub const MAX_VAR_BYTES: u64 = 1 << 20;
    /// 50 MiB of HTTP response body (Extism's default).
    pub const MAX_HTTP_RESPONSE_BYTES: u64 = 50 << 20;
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
    /// The most calls waiting for a free instance at once.
    pub max_queued_calls: usize,
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
    /// The smoke call a new version must pass before it serves.
    pub smoke: Option<Smoke>,
    /// When a reloaded version rolls back by itself.
    pub rollback_on: Option<RollbackOn>,
    /// Extism plugins' config values.
    pub config: Arc<BTreeMap<String, String>>,
    /// Hosts Extism plugins may reach over HTTP (globs; empty: none).
    pub allowed_hosts: Arc<[String]>,
    /// The most bytes of vars an Extism instance keeps (0: vars off).
    pub max_var_bytes: usize,
    /// The largest HTTP response body an Extism plugin reads.
    pub max_http_response_bytes: usize,
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
        self.entries
            .as_deref()
            .is_none_or(|entries| entries.iter().any(|allowed| same_name(allowed, entry)))
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
            max_queued_calls: clamp(self.max_queued_calls.unwrap_or(defaults::MAX_QUEUED_CALLS)),
            reuse_instances: self.reuse_instances.unwrap_or(true),
            host_methods: self.host_methods.as_deref().map(Arc::from),
            stdio: self.stdio.unwrap_or_default(),
            env: self.env.clone().unwrap_or_default(),
            args: self.args.clone().unwrap_or_default(),
            preopens: self.preopens.clone().unwrap_or_default(),
            keep_versions: clamp(self.keep_versions.unwrap_or(defaults::KEEP_VERSIONS)),
            smoke: self.smoke.clone(),
            rollback_on: self.rollback_on.map(|rule| RollbackOn {
                faults: rule.faults.max(1),
                ..rule
            }),
            config: Arc::new(self.config.clone().unwrap_or_default()),
            allowed_hosts: self.allowed_hosts.as_deref().unwrap_or_default().into(),
            max_var_bytes: clamp(self.max_var_bytes.unwrap_or(defaults::MAX_VAR_BYTES)),
            max_http_response_bytes: clamp(
                self.max_http_response_bytes
                    .unwrap_or(defaults::MAX_HTTP_RESPONSE_BYTES),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::ResolvedSettings;

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
