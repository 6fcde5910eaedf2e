//! The options an engine is created with, and the `[engine]` settings they come from.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::EngineSettings;

/// Options fixed when an engine is created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineOptions {
    /// Use wasmtime's pooling instance allocator.
    pub pooling: bool,
    /// Meter fuel, so plugins with a `fuel` setting can be limited by it.
    pub consume_fuel: bool,
    /// The on-disk cache of compiled code (`None`: off). See [`crate::disk_cache`].
    pub cache_dir: Option<PathBuf>,
    /// Bound of the disk cache in bytes.
    pub cache_max_bytes: u64,
    /// The largest plugin file (binary or WAT text) this engine compiles, in bytes.
    pub max_module_bytes: usize,
    /// Linear memory of one instance with the pooling allocator, in bytes: every slot is this
    /// size, and a plugin whose `max_memory_mib` is larger is refused.
    pub pool_max_memory_bytes: usize,
    /// Accept the WebAssembly GC proposal (`struct`, `array`, `i31`). Off by default: no plugin
    /// DlinkWM's SDKs build needs it. When on, the GC heap counts in the instance's memory
    /// budget (wasmtime grows it through the same limiter as linear memories).
    pub wasm_gc: bool,
    /// How long a guest called with `call_async` runs before it yields to the executor (rounded
    /// up to whole [`crate::EPOCH_TICK`]s).
    pub async_yield_interval: Duration,
    /// The bound of the function cache (Cranelift's incremental compilation) in bytes, in
    /// memory and again beside the disk cache; `0` turns it off. A changed plugin compiles only
    /// the functions whose code changed.
    pub incremental_cache_bytes: usize,
    /// Tiered reloads: a reloaded plugin whose code the engine does not hold (in memory or on
    /// disk) is first compiled with Winch, wasmtime's baseline compiler, and serves at once;
    /// Cranelift compiles it again on a thread of its own and that version replaces it like a
    /// reload (same validation and state hand-over). First loads always use Cranelift. Off by
    /// default; `dlinkwm watch` and `dlinkwm serve` turn it on (`[engine] tiered`).
    pub tiered: bool,
}

/// Which compiler's code a plugin version runs (see [`EngineOptions::tiered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tier {
    /// Winch's code: compiled in a fraction of Cranelift's time, runs slower; serves a reloaded
    /// version until Cranelift's code replaces it.
    Baseline,
    /// Cranelift's code: what every version runs once compiled.
    Optimized,
}

impl Tier {
    /// `"baseline"` or `"optimized"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            pooling: false,
            consume_fuel: false,
            cache_dir: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_MIB << 20,
            max_module_bytes: DEFAULT_MAX_MODULE_MIB << 20,
            pool_max_memory_bytes: (crate::config::defaults::MAX_MEMORY_MIB as usize) << 20,
            wasm_gc: false,
            async_yield_interval: crate::EPOCH_TICK,
            incremental_cache_bytes: DEFAULT_INCREMENTAL_CACHE_MIB << 20,
            tiered: false,
        }
    }
}

/// The default of `[engine] incremental_cache_mib`.
pub const DEFAULT_INCREMENTAL_CACHE_MIB: usize = 256;

/// The default of `[engine] max_module_mib`: the largest plugin file compiled, in MiB.
pub const DEFAULT_MAX_MODULE_MIB: usize = 256;

/// The default bound of the disk cache, in MiB.
pub const DEFAULT_CACHE_MAX_MIB: u64 = 1024;

impl EngineOptions {
    /// These options with the function cache bounded by `bytes` (`0`: off).
    #[must_use]
    pub fn with_incremental_cache_bytes(mut self, bytes: usize) -> Self {
        self.incremental_cache_bytes = bytes;
        self
    }

    /// These options with tiered reloads on or off (see [`EngineOptions::tiered`]).
    #[must_use]
    pub fn with_tiered(mut self, tiered: bool) -> Self {
        self.tiered = tiered;
        self
    }

    /// These options with the pooling allocator on or off.
    #[must_use]
    pub fn with_pooling(mut self, pooling: bool) -> Self {
        self.pooling = pooling;
        self
    }

    /// These options with the disk cache of compiled code in `dir` (or off, with `None`).
    #[must_use]
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// These options with the largest plugin file compiled set to `bytes`.
    #[must_use]
    pub fn with_max_module_bytes(mut self, bytes: usize) -> Self {
        self.max_module_bytes = bytes;
        self
    }

    /// These options with the WebAssembly GC proposal accepted or refused.
    #[must_use]
    pub fn with_wasm_gc(mut self, enable: bool) -> Self {
        self.wasm_gc = enable;
        self
    }

    /// These options with the pooling allocator's memory per instance set to `bytes`.
    #[must_use]
    pub fn with_pool_max_memory_bytes(mut self, bytes: usize) -> Self {
        self.pool_max_memory_bytes = bytes;
        self
    }

    /// These options with async calls yielding to the executor every `interval` (at least one
    /// [`crate::EPOCH_TICK`]).
    #[must_use]
    pub fn with_async_yield_interval(mut self, interval: Duration) -> Self {
        self.async_yield_interval = interval;
        self
    }

    /// The epoch ticks between two yields of an async call.
    pub(crate) fn async_yield_ticks(&self) -> u64 {
        let tick = crate::EPOCH_TICK.as_nanos();
        let ticks = self.async_yield_interval.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }

    /// These options with fuel metering on or off.
    #[must_use]
    pub fn with_consume_fuel(mut self, consume_fuel: bool) -> Self {
        self.consume_fuel = consume_fuel;
        self
    }

    /// The options `[engine]` of a configuration asks for.
    /// The disk cache is on unless `cache = false`, in `cache_dir` or the per-user default.
    pub fn from_settings(settings: &EngineSettings) -> Self {
        let cache_dir = if settings.cache.unwrap_or(true) {
            settings
                .cache_dir
                .clone()
                .or_else(crate::engine::disk_cache::default_cache_dir)
        } else {
            None
        };
        Self {
            pooling: settings.pooling.unwrap_or(false),
            consume_fuel: settings.consume_fuel.unwrap_or(false),
            cache_dir,
            cache_max_bytes: settings
                .cache_max_mib
                .unwrap_or(DEFAULT_CACHE_MAX_MIB)
                .saturating_mul(1 << 20),
            max_module_bytes: mib_to_bytes(settings.max_module_mib, DEFAULT_MAX_MODULE_MIB),
            pool_max_memory_bytes: mib_to_bytes(
                settings.pool_max_memory_mib,
                crate::config::defaults::MAX_MEMORY_MIB as usize,
            ),
            wasm_gc: settings.gc.unwrap_or(false),
            async_yield_interval: settings
                .async_yield_ms
                .map_or(crate::EPOCH_TICK, Duration::from_millis),
            incremental_cache_bytes: if settings.incremental.unwrap_or(true) {
                mib_to_bytes(
                    settings.incremental_cache_mib,
                    DEFAULT_INCREMENTAL_CACHE_MIB,
                )
            } else {
                0
            },
            tiered: settings.tiered.unwrap_or(false),
        }
    }
}

fn mib_to_bytes(mib: Option<u64>, default: usize) -> usize {
    mib.map_or(default, |mib| usize::try_from(mib).unwrap_or(usize::MAX))
        .saturating_mul(1 << 20)
}
