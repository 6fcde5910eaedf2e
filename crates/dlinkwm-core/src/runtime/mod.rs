//! The runtime layer: one plugin instance in its own wasmtime store, and everything the guest
//! meets there. `store` holds the data of every store (the plugin's shared context, the per-call
//! state, the limiter of `limits`, the log streams of `stdio`, the WASI context `wasi` builds from
//! the plugin's grants) and arms each call's limits; `linker` (core modules: ABI v1, WASI preview
//! 1, the legacy print) and `component` (the WIT world's bindings and imports) are the host
//! functions a guest imports, checking every value it hands them (`guest`), with the waits of
//! `waits` bounded by the call's deadline (`deadline`). `Instance` (in `instance`) is the one
//! type the layers above call: it dispatches to the core-module path (`core_instance`) or the
//! component path (`component_instance`), looks entries up in the version's `exports`, and turns
//! whatever wasmtime reports into an error naming its cause (`trap`). `host_methods` is the
//! boundary with the application's host methods. `extism` is the Extism kernel's host
//! functions and Extism host functions for Extism plugins (`extism_kernel` the kernel's state,
//! `extism_http` their HTTP requests); `linkers` assembles the core linkers. The runtime knows wasmtime and the layers below
//! (`config`, `error`, `names`), never DlinkWM's `Engine`: it is handed a `wasmtime::Engine` and
//! the epoch count.

mod component;
mod component_instance;
mod core_instance;
mod deadline;
mod drive;
mod exports;
pub(crate) mod extism;
mod extism_http;
mod extism_kernel;
mod guest;
mod host_methods;
mod instance;
mod limits;
mod linker;
mod linkers;
mod stdio;
mod store;
mod trap;
mod waits;
mod wasi;

pub use deadline::EPOCH_TICK;
pub use exports::{EntryInfo, EntryKind, PluginKind};
pub use host_methods::{
    CallerInfo, Convention, HostCallError, HostCallFuture, HostCallHandler, NoHostMethods,
};
pub use linkers::register_host_functions;
pub use store::StoreState;

pub(crate) use component::build_linker as build_component_linker;
pub(crate) use component::build_linker_async as build_component_linker_async;
pub(crate) use component::{AsyncBindingsPre, BindingsPre};
pub(crate) use deadline::Ticks;
pub(crate) use drive::{block_on, now, wait};
pub(crate) use exports::ExportTable;
pub(crate) use instance::Instance;
pub(crate) use linkers::build as build_core_linker;
pub(crate) use linkers::build_async as build_core_linker_async;
pub(crate) use store::{Asynchronous, PluginContext};
pub(crate) use trap::CallSite;
