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
//! This crate is the whole API a host needs: [`PluginHost`] loads plugins (and watches their
//! files), [`Plugin`] calls them (typed, in postcard by default or JSON; or as bytes), reloads,
//! rolls back, reports events and figures, and [`HostMethods`] is the registry of the methods
//! plugins may call back. [`Error`] is the one error type to match on.
#![deny(missing_docs)]

mod directory;
mod host;
mod methods;
#[cfg(feature = "oci")]
pub mod oci;
mod plugin;

pub use directory::PluginDirectory;
/// A byte buffer that travels as bytes in typed calls (a length and a `memcpy` in postcard, the
/// bytes themselves in raw), where a `Vec<u8>` would be a sequence of numbers. See
/// `dlinkwm-codec`.
pub use dlinkwm_codec::Bytes;
/// `#[serde(with = "serde_bytes")]`, for `Vec<u8>` fields that should travel as bytes.
pub use dlinkwm_codec::serde_bytes;
/// How values travel (`dlinkwm-codec`): for hosts that read host-method bytes themselves, by
/// a format or by Extism's convention ([`Convention::Extism`], [`Convention::ExtismArgs`]).
pub mod codec {
    pub use dlinkwm_codec::{
        CodecError, decode, decode_extism, decode_extism_args, encode_extism_into, encode_into,
        frame_extism_args,
    };
}
/// The engine layer under this crate. Everything a host needs is re-exported here; this is for
/// DlinkWM's own crates.
#[doc(hidden)]
pub use dlinkwm_core as core;
/// The engine's error: what loading, validating, reloading and calling a plugin can end in.
/// [`Error::Plugin`] carries it.
pub use dlinkwm_core::Error as PluginError;
/// The name the original DlinkWM API gave [`Format`].
#[doc(hidden)]
pub use dlinkwm_core::Format as SerializationFormat;
/// The ABI constants (`dlinkwm-abi`): import and export names, status codes, limits.
pub use dlinkwm_core::abi;
/// The on-disk cache of compiled code: where it is, what it holds, clearing it.
pub use dlinkwm_core::disk_cache;
/// The wasmtime release DlinkWM runs on, for hosts that need its types (module introspection,
/// their own engine configuration).
pub use dlinkwm_core::wasmtime;
pub use dlinkwm_core::{
    CallObserver, CallRecord, CallerInfo, Config, ConfigError, ConfigEvent, ContentHash,
    Convention, DEFAULT_CONFIG_FILE, DEFAULT_CONFIG_TOML, DynamicConfig, EPOCH_TICK, Engine,
    EngineOptions, EntryInfo, EntryKind, Format, FunctionCacheStats, HostCallError, HostCallFuture,
    Metered, PluginKind, PluginSettings, RegistrySettings, ReloadEvent, ReloadOutcome,
    ResolvedSettings, RollbackOn, Smoke, SmokeFormat, Stdio, Tier,
    create_default_config_if_missing, is_component,
};
pub use host::{PluginHost, PluginHostBuilder};
pub use methods::HostMethods;
pub use plugin::Plugin;

/// The Rust snippets of the README, compiled as doctests so the documentation cannot drift from
/// the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of typed calls: the plugin's, or encoding and decoding at the host's edge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading, validating or calling the plugin failed.
    #[error(transparent)]
    Plugin(#[from] dlinkwm_core::Error),
    /// A plugin could not be fetched from its registry (see [`PluginHost::load`]).
    #[cfg(feature = "oci")]
    #[error(transparent)]
    Registry(#[from] oci::OciError),
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
    pub fn as_plugin_error(&self) -> Option<&PluginError> {
        match self {
            Error::Plugin(error) => Some(error),
            _ => None,
        }
    }

    /// Whether the guest misbehaved at run time (a trap, a panic, a limit, a bad pointer): the
    /// instance that produced it was discarded, and the next call gets a fresh one.
    pub fn is_guest_fault(&self) -> bool {
        self.as_plugin_error()
            .is_some_and(PluginError::is_guest_fault)
    }

    /// Whether a configured limit ended the call: time, fuel, memory, input or output size,
    /// or every instance busy past the queue deadline.
    pub fn is_limit(&self) -> bool {
        self.as_plugin_error().is_some_and(PluginError::is_limit)
    }
}
