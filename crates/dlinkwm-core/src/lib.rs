//! The DlinkWM engine: compiled-module cache, plugin instances, calls, hot reload, limits and
//! configuration.
//!
//! Host applications normally use `dlinkwm-host`, which adds typed calls and the host-method
//! registry on top of this crate and re-exports what a host needs from it. This crate moves
//! bytes: it knows nothing of serialization formats, and it never prints (it logs through
//! `tracing`).
//!
//! ```
//! use dlinkwm_core::{Engine, Plugin, PluginOptions};
//!
//! let engine = Engine::new(Default::default())?;
//! // A plain module: its `() -> ()` exports are entries.
//! let plugin = Plugin::from_bytes(
//!     &engine,
//!     br#"(module (func (export "hello")))"#,
//!     PluginOptions::default(),
//! )?;
//! plugin.call_raw("hello", &[])?;
//! assert_eq!(plugin.version(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The ABI plugins speak is described in `docs/abi.md`; its constants are in `dlinkwm-abi`.
#![deny(missing_docs)]
// Every `unsafe` block says why it is sound in a `// SAFETY:` comment.
#![deny(clippy::undocumented_unsafe_blocks)]

mod config;
mod engine;
mod error;
mod names;
mod plugin;
mod runtime;
mod sync;
mod watch;

pub use config::{
    Config, ConfigError, DEFAULT_CONFIG_FILE, DEFAULT_CONFIG_TOML, ENV_PREFIX, EngineSettings,
    PluginSettings, Preopen, RegistrySettings, ResolvedSettings, RollbackOn, Smoke, SmokeFormat,
    Stdio, create_default_config_if_missing, defaults,
};
pub use dlinkwm_abi as abi;
pub use dlinkwm_abi::Format;
pub use engine::{
    ContentHash, DEFAULT_CACHE_MAX_MIB, DEFAULT_INCREMENTAL_CACHE_MIB, DEFAULT_MAX_MODULE_MIB,
    Engine, EngineOptions, FunctionCacheStats, MAX_NESTING, Tier, disk_cache, is_component,
};
pub use error::{Error, Result};
pub use plugin::{
    CallObserver, CallRecord, Metered, Plugin, PluginOptions, ReloadEvent, ReloadOutcome,
    WeakPlugin,
};
pub use runtime::{
    CallerInfo, Convention, EPOCH_TICK, EntryInfo, EntryKind, HostCallError, HostCallFuture,
    HostCallHandler, NoHostMethods, PluginKind, StoreState, register_host_functions,
};
/// The wasmtime this crate is built on, for hosts that need its types.
pub use wasmtime;
pub use watch::{ConfigEvent, DynamicConfig, PluginWatcher, SETTLE_TICK, SETTLE_TIME};
