//! The shared engine: one wasmtime engine, one linker, the in-memory compiled-module cache and
//! the epoch ticker that enforces time limits.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig};

use crate::config::EngineSettings;
use crate::engine::disk_cache::DiskCache;
use crate::error::{Error, Result};
use crate::runtime::instance::StoreState;
use crate::sync::lock;

/// How often the ticker advances the epoch. Time limits are rounded up to whole ticks, so a call
/// is interrupted between `timeout` and `timeout + EPOCH_TICK` after it started.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The BLAKE3 hash of a plugin's bytes: the key of every compiled-code cache.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The raw hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

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
        }
    }
}

/// The default of `[engine] max_module_mib`: the largest plugin file compiled, in MiB.
pub const DEFAULT_MAX_MODULE_MIB: usize = 256;

/// The default bound of the disk cache, in MiB.
pub const DEFAULT_CACHE_MAX_MIB: u64 = 1024;

impl EngineOptions {
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
        }
    }
}

fn mib_to_bytes(mib: Option<u64>, default: usize) -> usize {
    mib.map_or(default, |mib| usize::try_from(mib).unwrap_or(usize::MAX))
        .saturating_mul(1 << 20)
}

/// Compiled code: a core module, or a component (WASI preview 2).
#[derive(Clone)]
pub(crate) enum Code {
    Module(Module),
    Component(Component),
}

impl Code {
    /// wasmtime's serialized form, for the disk cache.
    pub(crate) fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Code::Module(module) => module.serialize(),
            Code::Component(component) => component.serialize(),
        }
    }
}

/// Code compiled once for its content hash and shared by every plugin version with those bytes.
pub(crate) struct CompiledModule {
    pub(crate) code: Code,
    pub(crate) hash: ContentHash,
}

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
    pub(crate) options: EngineOptions,
    modules: Mutex<HashMap<ContentHash, Weak<CompiledModule>>>,
    /// One lock per content hash being compiled: a second loader of the same bytes waits for
    /// the first one's result, while other plugins compile beside it.
    compiling: Mutex<HashMap<ContentHash, Arc<Mutex<()>>>>,
    compiles: AtomicU64,
    disk_hits: AtomicU64,
    disk: Option<DiskCache>,
    /// The epoch count, advanced with the engine's epoch: what call deadlines inside host calls
    /// are measured against (see [`crate::runtime::waits`]).
    pub(crate) ticks: crate::runtime::waits::Ticks,
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
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(options.consume_fuel);
        config.wasm_gc(options.wasm_gc);
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
        let linker = crate::runtime::linker::build(&wasmtime).map_err(|error| Error::Engine {
            reason: format!("{error:#}"),
        })?;
        let component_linker =
            crate::runtime::component::build_linker(&wasmtime).map_err(|error| Error::Engine {
                reason: format!("{error:#}"),
            })?;
        let ticks = crate::runtime::waits::Ticks::default();
        let ticker = Ticker::start(wasmtime.clone(), ticks.clone())?;
        let disk = options
            .cache_dir
            .clone()
            .and_then(|root| DiskCache::new(root, &wasmtime, options.cache_max_bytes));
        Ok(Self {
            inner: Arc::new(EngineInner {
                wasmtime,
                linker,
                component_linker,
                options,
                modules: Mutex::new(HashMap::new()),
                compiling: Mutex::new(HashMap::new()),
                compiles: AtomicU64::new(0),
                disk_hits: AtomicU64::new(0),
                disk,
                ticks,
                _ticker: ticker,
            }),
        })
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

    /// The compiled module for `bytes`, compiling only if no live module has the same hash.
    /// The compiled module for `bytes`, whose content hash the caller already computed.
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
        if let Some(reason) = crate::engine::code_limits::not_wasm(bytes) {
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
        let refused = |crate::engine::code_limits::Refused(reason)| Error::InvalidModule {
            plugin: plugin.to_owned(),
            reason,
        };
        // WAT text becomes a binary first: its kind (module or component) is known only then.
        let binary = crate::engine::code_limits::to_binary(bytes, self.inner.options.max_module_bytes)
            .map_err(refused)?;
        let component = crate::runtime::exports::is_component(&binary);
        let disk = self.inner.disk.as_ref();
        let cached = disk.and_then(|disk| disk.load(&self.inner.wasmtime, &hash, component));
        let code = match cached {
            Some(code) => {
                self.inner.disk_hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(plugin, %hash, component, elapsed = ?started.elapsed(), "loaded compiled code from the disk cache");
                code
            }
            None => {
                crate::engine::code_limits::check_nesting(&binary).map_err(refused)?;
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
        let compiled = Arc::new(CompiledModule { code, hash });
        let mut modules = self
            .inner
            .modules
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        modules.retain(|_, weak| weak.strong_count() > 0);
        modules.insert(hash, Arc::downgrade(&compiled));
        Ok(compiled)
    }

    fn cached(&self, hash: &ContentHash) -> Option<Arc<CompiledModule>> {
        self.inner
            .modules
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(hash)
            .and_then(Weak::upgrade)
    }

    /// Epoch ticks that make up `timeout`, rounded up, plus one for the tick in progress.
    pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
        const TICK_MS: u64 = EPOCH_TICK.as_millis() as u64;
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX / 2);
        millis.div_ceil(TICK_MS).saturating_add(1)
    }
}

/// One thread per engine that advances the epoch every [`EPOCH_TICK`]. Calls only set their
/// deadline in their own store; nobody is woken per call.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine, ticks: crate::runtime::waits::Ticks) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("dlinkwm-epoch".to_owned())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(EPOCH_TICK);
                        engine.increment_epoch();
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|error| Error::Engine {
                reason: format!("cannot start the epoch ticker thread: {error}"),
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The ticker never panics, and an engine dropped during a panic must not panic again.
            let _ = thread.join();
        }
    }
}
