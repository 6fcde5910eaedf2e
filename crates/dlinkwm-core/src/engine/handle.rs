//! The shared engine: one wasmtime engine, the linkers plugins are instantiated with, the
//! in-memory compiled-module cache in front of the disk cache, and the epoch ticker that enforces
//! time limits.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use wasmtime::component::Component;
use wasmtime::{InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig};

use crate::engine::code::{Code, CompiledModule, ContentHash, fingerprint, is_component};
use crate::engine::code_limits;
use crate::engine::disk_cache::DiskCache;
use crate::engine::options::{EngineOptions, Tier};
use crate::engine::ticker::Ticker;
use crate::error::{Error, Result};
use crate::runtime::{StoreState, Ticks};
use crate::sync::lock;

/// The engine every plugin of a host shares. Cheap to clone.
///
/// ```
/// let engine = dlinkwm_core::Engine::new(Default::default())?;
/// assert_eq!(engine.compile_count(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) wasmtime: wasmtime::Engine,
    pub(crate) linker: Linker<StoreState>,
    pub(crate) component_linker: wasmtime::component::Linker<StoreState>,
    /// The linkers of plugins loaded for async calls (`load_async`).
    pub(crate) linker_async: Linker<StoreState>,
    pub(crate) component_linker_async: wasmtime::component::Linker<StoreState>,
    pub(crate) options: EngineOptions,
    modules: Mutex<HashMap<ContentHash, Weak<CompiledModule>>>,
    /// The same modules by the fingerprint of their bytes (see [`Engine::content_hash`]).
    fingerprints: Mutex<HashMap<(usize, u128), Weak<CompiledModule>>>,
    /// One lock per content hash being compiled: a second loader of the same bytes waits for
    /// the first one's result, while other plugins compile beside it.
    compiling: Mutex<HashMap<ContentHash, Arc<Mutex<()>>>>,
    compiles: AtomicU64,
    disk_hits: AtomicU64,
    disk: Option<DiskCache>,
    /// Compiled functions by the hash of their code (`[engine] incremental`).
    functions: Option<std::sync::Arc<crate::engine::disk_cache::functions::FunctionCache>>,
    /// The epoch count, advanced with the engine's epoch: what call deadlines inside host calls
    /// are measured against (see [`crate::runtime::waits`]).
    pub(crate) ticks: Ticks,
    /// Which compiler this engine's code comes from.
    tier: Tier,
    /// With `tiered`, the engine of the first tier (Winch), made with this engine (`None`
    /// inside: it could not be made, and reloads compile with Cranelift).
    baseline: OnceLock<Option<Engine>>,
    // Held for its `Drop`, which stops the ticker thread with the engine.
    _ticker: Ticker,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("options", &self.inner.options)
            .field("compiles", &self.compile_count())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Creates an engine with the given options and starts its epoch ticker.
    ///
    /// # Errors
    /// [`Error::Engine`] when wasmtime rejects the configuration (for example the pooling
    /// allocator cannot reserve its memory).
    pub fn new(options: EngineOptions) -> Result<Self> {
        let engine = Self::with_tier(options, Tier::Optimized)?;
        if engine.inner.options.tiered {
            // Made now, not by the first reload, which is the one that has to be quick.
            engine.baseline();
        }
        Ok(engine)
    }

    /// The engine of the first tier: Winch, with this engine's limits, on-demand instances,
    /// and neither the disk cache nor the function cache (Winch's code is short-lived, and
    /// Winch refuses incremental compilation).
    fn make_baseline(&self) -> Result<Self> {
        let options = EngineOptions {
            pooling: false,
            cache_dir: None,
            incremental_cache_bytes: 0,
            tiered: false,
            // Winch refuses the GC proposal: a plugin that uses it compiles with Cranelift.
            wasm_gc: false,
            ..self.inner.options.clone()
        };
        Self::with_tier(options, Tier::Baseline)
    }

    fn with_tier(options: EngineOptions, tier: Tier) -> Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(options.consume_fuel);
        config.wasm_gc(options.wasm_gc);
        if tier == Tier::Baseline {
            config.strategy(wasmtime::Strategy::Winch);
            // What Cranelift still compiles for Winch's code (trampolines) is not optimised:
            // a fifth off the first tier's compile (Rust `hello`: 27 → 22 ms), code that serves
            // for seconds.
            config.cranelift_opt_level(wasmtime::OptLevel::None);
        }
        let functions = (options.incremental_cache_bytes > 0).then(|| {
            std::sync::Arc::new(crate::engine::disk_cache::functions::FunctionCache::new(
                options.incremental_cache_bytes,
            ))
        });
        if let Some(functions) = &functions {
            config
                .enable_incremental_compilation(functions.clone())
                .map_err(|error| Error::Engine {
                    reason: format!("{error:#}"),
                })?;
        }
        if options.pooling {
            let mut pooling = PoolingAllocationConfig::default();
            pooling.total_memories(256);
            pooling.total_tables(256);
            pooling.total_core_instances(256);
            pooling.max_memory_size(options.pool_max_memory_bytes);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        }
        let wasmtime = wasmtime::Engine::new(&config).map_err(|error| Error::Engine {
            reason: format!("{error:#}"),
        })?;
        let linker =
            crate::runtime::build_core_linker(&wasmtime).map_err(|error| Error::Engine {
                reason: format!("{error:#}"),
            })?;
        let component_linker =
            crate::runtime::build_component_linker(&wasmtime).map_err(|error| Error::Engine {
                reason: format!("{error:#}"),
            })?;
        let linker_async =
            crate::runtime::build_core_linker_async(&wasmtime).map_err(|error| Error::Engine {
                reason: format!("{error:#}"),
            })?;
        let component_linker_async = crate::runtime::build_component_linker_async(&wasmtime)
            .map_err(|error| Error::Engine {
                reason: format!("{error:#}"),
            })?;
        let ticks = Ticks::default();
        let ticker = Ticker::start(wasmtime.clone(), ticks.clone())?;
        let disk = options
            .cache_dir
            .clone()
            .and_then(|root| DiskCache::new(root, &wasmtime, options.cache_max_bytes));
        if let (Some(functions), Some(disk)) = (&functions, &disk) {
            // Beside the compiled-code cache, under the same trust checks, for this engine.
            functions.use_disk(
                disk.root(),
                &crate::engine::disk_cache::engine_folder(&wasmtime),
                crate::engine::disk_cache::engine_hash(&wasmtime),
                options.incremental_cache_bytes as u64,
            );
        }
        Ok(Self {
            inner: Arc::new(EngineInner {
                wasmtime,
                linker,
                component_linker,
                linker_async,
                component_linker_async,
                options,
                modules: Mutex::new(HashMap::new()),
                fingerprints: Mutex::new(HashMap::new()),
                compiling: Mutex::new(HashMap::new()),
                compiles: AtomicU64::new(0),
                disk_hits: AtomicU64::new(0),
                disk,
                functions,
                ticks,
                tier,
                baseline: OnceLock::new(),
                _ticker: ticker,
            }),
        })
    }

    /// Which compiler this engine's code comes from.
    pub(crate) fn tier(&self) -> Tier {
        self.inner.tier
    }

    /// The engine a reload of `hash` compiles with first: with `tiered`, the Winch engine when
    /// this one holds no code for it (in memory or on disk); otherwise `None` (Cranelift).
    pub(crate) fn baseline_for(&self, hash: &ContentHash) -> Option<Engine> {
        if !self.inner.options.tiered || self.inner.tier == Tier::Baseline {
            return None;
        }
        if self.cached(hash).is_some()
            || self
                .inner
                .disk
                .as_ref()
                .is_some_and(|disk| disk.contains(hash))
        {
            return None;
        }
        self.baseline()
    }

    /// The Winch engine of tiered reloads, made the first time it is asked for.
    fn baseline(&self) -> Option<Engine> {
        self.inner
            .baseline
            .get_or_init(|| {
                self.make_baseline()
                    .inspect_err(|error| {
                        tracing::warn!(%error, "cannot make the Winch engine of tiered reloads; reloads compile with Cranelift");
                    })
                    .ok()
            })
            .clone()
    }

    /// The options this engine was created with.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// How many modules this engine has compiled. Loading bytes it has already compiled (while
    /// any plugin still uses them) does not compile again.
    pub fn compile_count(&self) -> u64 {
        self.inner.compiles.load(Ordering::Relaxed)
    }

    /// What the function cache (`[engine] incremental`) did: functions reused instead of
    /// compiled, and compiled. All zero when it is off.
    pub fn function_cache_stats(&self) -> crate::FunctionCacheStats {
        self.inner
            .functions
            .as_ref()
            .map(|functions| functions.stats())
            .unwrap_or_default()
    }

    /// How many modules this engine loaded from the disk cache instead of compiling.
    pub fn disk_cache_hits(&self) -> u64 {
        self.inner.disk_hits.load(Ordering::Relaxed)
    }

    /// Whether the disk cache holds compiled code for `bytes` (for this engine's settings).
    pub fn is_cached_on_disk(&self, bytes: &[u8]) -> bool {
        self.inner
            .disk
            .as_ref()
            .is_some_and(|disk| disk.contains(&ContentHash::of(bytes)))
    }

    /// The root of the disk cache, when it is on.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.disk.as_ref().map(DiskCache::root)
    }

    /// The wasmtime engine, for hosts that need it directly.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.wasmtime
    }

    /// The content hash of `bytes`. For bytes whose compiled code the engine holds, found by
    /// a cheap fingerprint (length, first and last 8 KiB) and confirmed byte for byte against
    /// the bytes that code was compiled from (a `memcmp`, several times faster than BLAKE3; a
    /// fingerprint collision, accidental or crafted, only falls back to hashing); otherwise
    /// BLAKE3 of the bytes.
    pub fn content_hash(&self, bytes: &[u8]) -> ContentHash {
        let held = lock(&self.inner.fingerprints)
            .get(&fingerprint(bytes))
            .and_then(Weak::upgrade);
        match held {
            Some(module) if module.bytes.as_deref() == Some(bytes) => module.hash,
            _ => ContentHash::of(bytes),
        }
    }

    /// The compiled module for `bytes` (whose content hash the caller already computed),
    /// compiling only if no live module has the same hash.
    pub(crate) fn module(
        &self,
        plugin: &str,
        bytes: &[u8],
        hash: ContentHash,
    ) -> Result<Arc<CompiledModule>> {
        if bytes.len() > self.inner.options.max_module_bytes {
            return Err(Error::InvalidModule {
                plugin: plugin.to_owned(),
                reason: format!(
                    "{} bytes is over the engine's max_module_mib of {} MiB",
                    bytes.len(),
                    self.inner.options.max_module_bytes >> 20
                ),
            });
        }
        if let Some(reason) = code_limits::not_wasm(bytes) {
            let plugin = plugin.to_owned();
            return Err(Error::InvalidModule { plugin, reason });
        }
        if let Some(module) = self.cached(&hash) {
            return Ok(module);
        }
        // A second loader of the same bytes waits here and then finds the first one's result,
        // so the same bytes are never compiled twice; other bytes compile beside them.
        let slot = self.compile_slot(hash);
        let _compiling = lock(&slot);
        if let Some(module) = self.cached(&hash) {
            return Ok(module);
        }
        let result = self.compile(plugin, bytes, hash);
        lock(&self.inner.compiling).remove(&hash);
        result
    }

    fn compile_slot(&self, hash: ContentHash) -> Arc<Mutex<()>> {
        lock(&self.inner.compiling).entry(hash).or_default().clone()
    }

    fn compile(
        &self,
        plugin: &str,
        bytes: &[u8],
        hash: ContentHash,
    ) -> Result<Arc<CompiledModule>> {
        let started = std::time::Instant::now();
        let refused = |code_limits::Refused(reason)| Error::InvalidModule {
            plugin: plugin.to_owned(),
            reason,
        };
        // WAT text becomes a binary first: its kind (module or component) is known only then.
        let binary =
            code_limits::to_binary(bytes, self.inner.options.max_module_bytes).map_err(refused)?;
        let component = is_component(&binary);
        let disk = self.inner.disk.as_ref();
        let cached = disk.and_then(|disk| disk.load(&self.inner.wasmtime, &hash, component));
        let code = match cached {
            Some(code) => {
                self.inner.disk_hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(plugin, %hash, component, elapsed = ?started.elapsed(), "loaded compiled code from the disk cache");
                code
            }
            None => {
                code_limits::check_nesting(&binary, self.inner.tier == Tier::Baseline)
                    .map_err(refused)?;
                let code = if component {
                    Component::from_binary(&self.inner.wasmtime, &binary).map(Code::Component)
                } else {
                    Module::from_binary(&self.inner.wasmtime, &binary).map(Code::Module)
                }
                .map_err(|error| Error::InvalidModule {
                    plugin: plugin.to_owned(),
                    reason: format!("{error:#}"),
                })?;
                self.inner.compiles.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(plugin, %hash, component, elapsed = ?started.elapsed(), "compiled");
                if let Some(disk) = disk {
                    disk.store(&hash, &code);
                }
                code
            }
        };
        code.prepare_images().map_err(|error| Error::Instantiate {
            plugin: plugin.to_owned(),
            reason: format!("cannot make the initial image of its memory: {error:#}"),
        })?;
        let compiled = Arc::new(CompiledModule::new(code, hash, bytes));
        {
            let mut modules = lock(&self.inner.modules);
            modules.retain(|_, weak| weak.strong_count() > 0);
            modules.insert(hash, Arc::downgrade(&compiled));
        }
        if compiled.bytes.is_some() {
            let mut fingerprints = lock(&self.inner.fingerprints);
            fingerprints.retain(|_, weak| weak.strong_count() > 0);
            fingerprints.insert(fingerprint(bytes), Arc::downgrade(&compiled));
        }
        Ok(compiled)
    }

    pub(crate) fn cached(&self, hash: &ContentHash) -> Option<Arc<CompiledModule>> {
        self.inner
            .modules
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(hash)
            .and_then(Weak::upgrade)
    }
}
