//! The linkers core-module plugins are instantiated with: what `linker` provides (WASI preview
//! 1, ABI v1's `dlinkwm` module, the legacy print), WASI's bounded waits, and the Extism kernel
//! of `extism`.

use wasmtime::Linker;

use crate::runtime::store::StoreState;
use crate::runtime::{extism, linker};

/// Adds every function DlinkWM provides to plugins to `linker`: WASI preview 1, ABI v1's
/// `dlinkwm` module, the original `host.dlinkwm_host_print`, and the Extism kernel.
///
/// Every [`crate::Engine`] builds its linker with this; hosts that assemble their own wasmtime
/// linker can call it too.
///
/// # Errors
/// When a function of the same name is already defined in `linker`.
pub fn register_host_functions(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |state: &mut StoreState| &mut state.wasi)?;
    crate::runtime::waits::add_p1(linker)?;
    linker::add_abi(linker)?;
    linker::add_host_call(linker)?;
    linker::add_legacy(linker)?;
    extism::add_env(linker, false)?;
    Ok(())
}

/// Builds the linker every sync plugin of an engine is instantiated with.
pub(crate) fn build(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    register_host_functions(&mut linker)?;
    Ok(linker)
}

/// Builds the linker of plugins loaded for async calls: the same functions, but WASI's waits
/// and I/O and the host call suspend the guest's fiber instead of blocking the thread.
pub(crate) fn build_async(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut StoreState| &mut state.wasi)?;
    crate::runtime::waits::add_p1_async(&mut linker)?;
    linker::add_abi(&mut linker)?;
    linker::add_host_call_async(&mut linker)?;
    linker::add_legacy(&mut linker)?;
    extism::add_env(&mut linker, true)?;
    Ok(linker)
}
