//! Integration tests of dlinkwm-core: one binary, one module per area.
#![deny(clippy::undocumented_unsafe_blocks)]

mod cache;
mod hardening;
mod hostile;
mod limits;
mod load;
mod reload;
mod threads;
mod tiers;

use std::sync::Arc;

use dlinkwm_core::{Engine, Format, HostCallHandler, Plugin, PluginOptions, ResolvedSettings};

pub fn engine() -> Engine {
    Engine::new(Default::default()).expect("engine")
}

pub fn options(settings: ResolvedSettings) -> PluginOptions {
    PluginOptions {
        name: None,
        settings,
        host: Arc::new(dlinkwm_core::NoHostMethods),
        observer: None,
    }
}

pub fn options_with_host(settings: ResolvedSettings, host: impl HostCallHandler) -> PluginOptions {
    PluginOptions {
        name: None,
        settings,
        host: Arc::new(host),
        observer: None,
    }
}

/// Calls an SDK entry with a postcard-encoded argument and returns the raw postcard output.
pub fn call_postcard<T: serde::Serialize>(
    plugin: &Plugin,
    entry: &str,
    input: &T,
) -> dlinkwm_core::Result<Vec<u8>> {
    let bytes = postcard::to_allocvec(input).expect("encodes");
    plugin.call(entry, Format::Postcard, &bytes, <[u8]>::to_vec)
}

/// A minimal ABI v1 module in WAT with `body` as the body of entry `run`, and `extra` fields.
pub fn abi_module(version: i32, run_body: &str, extra: &str) -> String {
    format!(
        r#"(module
            (import "dlinkwm" "set_output" (func $set_output (param i32 i32)))
            (import "dlinkwm" "set_error" (func $set_error (param i32 i32)))
            (import "dlinkwm" "host_call" (func $host_call (param i32 i32 i32 i32 i32) (result i32)))
            (import "dlinkwm" "host_result_len" (func $host_result_len (result i32)))
            (import "dlinkwm" "host_result_read" (func $host_result_read (param i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "hello")
            (func (export "dlinkwm_abi_version") (result i32) i32.const {version})
            (func (export "dlinkwm_alloc") (param i32) (result i32) i32.const 1024)
            (func (export "dlinkwm_free") (param i32 i32))
            (func (export "run") (param i32 i32 i32) (result i32) {run_body})
            {extra}
        )"#
    )
}
