//! The original DlinkWM `host_import` API: the host functions plugins import.
//!
//! [`PluginHost`](crate::PluginHost) links them for you. Use this when assembling a wasmtime
//! linker by hand, then add your own functions to the same linker.

/// The store data of DlinkWM's stores (the original name).
pub type WasmtimeStoreData = dlinkwm_core::StoreState;

/// Adds WASI preview 1, ABI v1's `dlinkwm` module and the original `host.dlinkwm_host_print` to
/// `linker`.
///
/// # Errors
/// When `linker` already defines one of them.
pub fn register_host_functions(
    linker: &mut dlinkwm_core::wasmtime::Linker<WasmtimeStoreData>,
) -> dlinkwm_core::wasmtime::Result<()> {
    dlinkwm_core::register_host_functions(linker)
}
