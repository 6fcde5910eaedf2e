//! Load, call and hot-reload WebAssembly plugins from a Rust application.
//!
//! ```no_run
//! use dlinkwm_host::{HostMethods, PluginHost};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct GreetParams {
//!     name: String,
//! }
//!
//! let mut methods = HostMethods::new();
//! methods.register("custom_greet", |params: GreetParams| {
//!     Ok::<_, std::convert::Infallible>(format!("Hello from custom handler, {}!", params.name))
//! });
//! let host = PluginHost::builder().host_methods(methods).build()?;
//! let plugin = host.load("wasm/hello.wasm")?;
//! let greeting: String = plugin.call("greet", &GreetParams { name: "World".into() })?;
//! println!("{greeting}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate adds typed calls (postcard by default, JSON on request) and the host-method
//! registry to `dlinkwm-core`, and re-exports what a host needs from it.
#![deny(missing_docs)]

mod codec;
pub mod config;
mod directory;
mod host;
pub mod host_import;
mod methods;
mod plugin;
pub mod wasm_manager;

pub use directory::PluginDirectory;
/// The engine layer, for what this crate does not re-export.
pub use dlinkwm_core as core;
/// The formats entries and host methods speak.
pub use dlinkwm_core::Format as SerializationFormat;
pub use dlinkwm_core::{
    CallerInfo, Config, ConfigError, ConfigEvent, ContentHash, DEFAULT_CONFIG_FILE,
    DEFAULT_CONFIG_TOML, DynamicConfig, Engine, EngineOptions, EntryInfo, EntryKind, HostCallError,
    PluginKind, PluginSettings, ReloadEvent, ReloadOutcome, ResolvedSettings, Stdio,
    create_default_config_if_missing,
};
pub use host::{PluginHost, PluginHostBuilder};
pub use methods::HostMethods;
pub use plugin::Plugin;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of typed calls: the plugin's, or encoding and decoding at the host's edge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading, validating or calling the plugin failed.
    #[error(transparent)]
    Plugin(#[from] dlinkwm_core::Error),
    /// The input could not be encoded in the call's format.
    #[error("cannot encode the input of `{entry}` as {format}: {reason}")]
    Encode {
        /// The entry.
        entry: String,
        /// The format's name.
        format: &'static str,
        /// Why.
        reason: String,
    },
    /// The entry's output is not the type the host asked for.
    #[error("cannot decode the output of `{entry}` as {format}: {reason}")]
    Decode {
        /// The entry.
        entry: String,
        /// The format's name.
        format: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The engine-level error, when this is one.
    pub fn as_plugin_error(&self) -> Option<&dlinkwm_core::Error> {
        match self {
            Error::Plugin(error) => Some(error),
            _ => None,
        }
    }
}
