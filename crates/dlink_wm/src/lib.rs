//! The original DlinkWM API, so code written for the original README compiles and runs with no
//! edit at all: [`wasm_manager`] (`WasmInstanceCache`, `WasmHotReloader`, `call_wasm_function`)
//! and [`config`] (`DynamicConfig`, `create_default_config_if_missing`).
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
//!
//! It is a thin layer over `dlinkwm-host`, whose API is the one to use for new code: typed
//! calls, typed host methods, events, rollback, async. Differences from the original: plugins
//! are [`dlinkwm_host::Plugin`]s (the original handed out a wasmtime `Instance`), and errors are
//! typed ([`dlinkwm_host::Error`]) rather than `anyhow`.
//!
//! The original `host_import::register_host_functions(&mut Linker<WasmtimeStoreData>)` is not
//! here: DlinkWM links its host functions into every plugin itself, and a hand-made wasmtime
//! linker cannot make a DlinkWM store, so the function could never be called. Host functions
//! are registered by name with [`dlinkwm_host::HostMethods`] instead.
#![deny(missing_docs)]

pub mod config;
pub mod wasm_manager;

pub use dlinkwm_host::{Error, HostMethods, Plugin, PluginHost, Result};
