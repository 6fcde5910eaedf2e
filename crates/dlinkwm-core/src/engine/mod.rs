//! The engine layer: what turns a plugin's bytes into code that can be instantiated, once per
//! content. [`Engine`] (in `handle`) holds the wasmtime engine, the two linkers built from the
//! runtime's host functions, the in-memory cache of compiled code by [`ContentHash`] (`code`) and
//! the epoch ticker (`ticker`); `code_limits` checks bytes before Cranelift sees them, and
//! [`disk_cache`] keeps compiled code across processes. It sits above `runtime` (the linkers are
//! typed by the runtime's store and filled with its host functions) and below `plugin`, which
//! makes versions out of its compiled code.

mod code;
mod code_limits;
pub mod disk_cache;
mod handle;
pub(crate) mod needs;
mod options;
mod ticker;

pub(crate) use code::{Code, CompiledModule, Prepared};
pub use code::{ContentHash, is_component};
pub use code_limits::MAX_NESTING;
pub use disk_cache::functions::FunctionCacheStats;
pub use handle::Engine;
pub use options::{
    DEFAULT_CACHE_MAX_MIB, DEFAULT_INCREMENTAL_CACHE_MIB, DEFAULT_MAX_MODULE_MIB, EngineOptions,
    Tier,
};
