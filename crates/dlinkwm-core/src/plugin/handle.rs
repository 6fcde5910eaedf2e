//! The plugin handle, what applications hold: loading, the call path (take an instance from the
//! pool policy, run the entry, let the caller read the output in place, give the instance back),
//! settings, and the public face of reloads, rollback and events (`reload`, `events`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use dlinkwm_abi::Format;

use crate::config::ResolvedSettings;
use crate::engine::{ContentHash, Engine, Tier};
use crate::error::{Error, Fast, Result};
use crate::plugin::events::ReloadEvent;
use crate::plugin::held::{InCall, reentrant};
use crate::plugin::policy::Serving;
use crate::plugin::pool::Pooled;
use crate::plugin::reload::{ReloadOutcome, Reloads, read_file};
use crate::plugin::version::Version;
use crate::runtime::{
    Asynchronous, CallSite, EntryInfo, HostCallHandler, NoHostMethods, PluginContext, PluginKind,
};

/// How often the second tier of a tiered reload is tried when its swap fails for a reason
/// that may pass (a busy pool during the state hand-over), and how long it waits before the
/// next try (once, twice this...).
const OPTIMIZE_ATTEMPTS: u32 = 3;
const OPTIMIZE_BACKOFF: Duration = Duration::from_secs(1);

/// How a plugin is loaded: its name, settings and host methods.
#[derive(Clone)]
pub struct PluginOptions {
    /// The name used in errors, logs and configuration lookups. Defaults to the path as given,
    /// or `"plugin"` for bytes.
    pub name: Option<String>,
    /// The settings the plugin runs with.
    pub settings: ResolvedSettings,
    /// The host methods the plugin can call.
    pub host: Arc<dyn HostCallHandler>,
    /// Told of every call that ends (metrics, tracing); `None` costs nothing.
    pub observer: Option<Arc<dyn CallObserver>>,
}

/// One call that ended, as a [`CallObserver`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct CallRecord<'a> {
    /// The plugin's name.
    pub plugin: &'a str,
    /// The entry called, as the caller named it (it may not exist: see `outcome`).
    pub entry: &'a str,
    /// The version that was current when the call started.
    pub version: u64,
    /// How it ended.
    pub outcome: std::result::Result<(), &'a Error>,
    /// From the call's start (including any wait for an instance) to its end.
    pub duration: Duration,
    /// Fuel the call consumed, when fuel is metered.
    pub fuel_consumed: Option<u64>,
}

/// Told of every call of the plugins it is given to (`PluginOptions::observer`): how an
/// application keeps per-plugin figures without wrapping every call. Called on the calling
/// thread or task after the call ends; an async call whose future is dropped is not reported.
pub trait CallObserver: Send + Sync + 'static {
    /// A call ended.
    fn call_finished(&self, call: &CallRecord<'_>);
}

impl Default for PluginOptions {
    fn default() -> Self {
        Self {
            name: None,
            settings: ResolvedSettings::default(),
            host: Arc::new(NoHostMethods),
            observer: None,
        }
    }
}

impl std::fmt::Debug for PluginOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginOptions")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// An entry's result with what the call consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metered<R> {
    /// What `read` returned.
    pub value: R,
    /// Fuel the call consumed, when the plugin's settings meter fuel.
    pub fuel_consumed: Option<u64>,
}

/// The instance of an async call: dropped (never reused) unless the call released it, so a
/// cancelled call leaves no half-used instance and no count behind.
struct Held<'a> {
    serving: &'a Serving,
    pooled: Option<Box<Pooled>>,
}

impl Held<'_> {
    fn pooled(&mut self) -> &mut Pooled {
        self.pooled
            .as_deref_mut()
            .expect("an instance is held until released")
    }

    fn take(&mut self) -> Box<Pooled> {
        self.pooled
            .take()
            .expect("an instance is held until released")
    }

    fn release(mut self, keep: bool) {
        if let Some(pooled) = self.pooled.take() {
            self.serving.release(pooled, keep);
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(pooled) = self.pooled.take() {
            self.serving.discard(pooled);
        }
    }
}

/// The error of a call that does not match how the plugin was loaded.
#[cold]
fn wrong_mode(plugin: &str, loaded_async: bool) -> Error {
    let reason = if loaded_async {
        "it was loaded for async calls (load_async): call it with call_async"
    } else {
        "it was loaded for sync calls: load it with load_async to call it with call_async"
    };
    Error::WrongCallMode {
        plugin: plugin.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cold]
fn not_allowed(site: CallSite<'_>, settings: &ResolvedSettings) -> Error {
    Error::EntryNotAllowed {
        plugin: site.plugin.to_owned(),
        entry: site.entry.to_owned(),
        allowed: settings.entries.as_deref().unwrap_or_default().to_vec(),
    }
}

/// A call whose entry has returned: its instance, with the output in it, and the mark that this
/// thread is inside the call until the output is read.
struct Running {
    pooled: Box<Pooled>,
    _in_call: InCall,
}

/// A handle that does not keep a plugin alive; see [`Plugin::downgrade`].
#[derive(Clone)]
pub struct WeakPlugin {
    inner: std::sync::Weak<PluginInner>,
}

impl WeakPlugin {
    /// The plugin, if it is still alive.
    pub fn upgrade(&self) -> Option<Plugin> {
        self.inner.upgrade().map(|inner| Plugin { inner })
    }
}

/// A loaded plugin. Cheap to clone, `Send + Sync`: any number of threads can call it at once,
/// each on its own instance from a bounded pool.
///
/// Reloading swaps in a new version in one step. Calls that started before the swap finish on
/// the version they started on; calls that start after it use the new one.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    engine: Engine,
    /// The current version and the pool: what calls are served from.
    serving: Serving,
    /// The file, the versions kept for rollback, the events.
    reloads: Reloads,
    observer: Option<Arc<dyn CallObserver>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name())
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

/// Refuses settings this engine cannot enforce, naming the key: a limit that would silently not
/// hold is worse than none.
fn check_enforceable(engine: &Engine, plugin: &str, settings: &ResolvedSettings) -> Result<()> {
    let refuse = |key: &str, reason: String| {
        Err(Error::Config(crate::config::ConfigError {
            file: None,
            key: Some(key.to_owned()),
            reason,
        }))
    };
    let options = engine.options();
    if settings.fuel.is_some() && !options.consume_fuel {
        return refuse(
            "fuel",
            format!(
                "plugin `{plugin}` has a fuel limit but the engine does not meter fuel (set [engine] consume_fuel = true)"
            ),
        );
    }
    if options.pooling && settings.max_memory_bytes > options.pool_max_memory_bytes {
        return refuse(
            "max_memory_mib",
            format!(
                "plugin `{plugin}` may use {} MiB of memory but the pooling allocator gives each instance {} MiB (raise [engine] pool_max_memory_mib)",
                settings.max_memory_bytes >> 20,
                options.pool_max_memory_bytes >> 20
            ),
        );
    }
    Ok(())
}

impl Plugin {
    /// Loads the plugin at `path`.
    ///
    /// # Errors
    /// [`Error::Read`] for a missing or unreadable file, and every error of
    /// [`Plugin::from_bytes`].
    pub fn load(engine: &Engine, path: impl AsRef<Path>, options: PluginOptions) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_file(path, engine.options().max_module_bytes)?;
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| path.display().to_string());
        let loading = Self::new(
            engine,
            name.clone(),
            Some(path.to_owned()),
            &bytes,
            options,
            None,
        );
        crate::runtime::now(&name, loading)
    }

    /// Loads the plugin at `path` for async calls ([`Plugin::call_async`]) on the tokio runtime
    /// this runs on: the file is read and the code compiled on the runtime's blocking threads,
    /// never on an executor thread.
    ///
    /// The plugin's host calls may await ([`HostCallHandler::call_async`]), its WASI waits
    /// suspend its fiber, and a long call yields to the executor every
    /// [`crate::EngineOptions::async_yield_interval`]. The runtime needs its time driver
    /// (`enable_time`, on in `#[tokio::main]`): call deadlines are tokio timers too.
    ///
    /// # Errors
    /// [`Error::WrongCallMode`] outside a tokio runtime, and every error of [`Plugin::load`].
    pub async fn load_async(
        engine: &Engine,
        path: impl AsRef<Path>,
        options: PluginOptions,
    ) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| path.display().to_string());
        let asynchronous = Self::asynchronous(engine, &name)?;
        let max = engine.options().max_module_bytes;
        let read = {
            let path = path.clone();
            asynchronous
                .runtime
                .spawn_blocking(move || read_file(&path, max))
        };
        let bytes = read.await.unwrap_or_else(|joined| {
            Err(Error::Engine {
                reason: format!("the thread reading plugin `{name}` failed: {joined}"),
            })
        })?;
        Self::new(
            engine,
            name,
            Some(path),
            &bytes,
            options,
            Some(asynchronous),
        )
        .await
    }

    /// [`Plugin::from_bytes`] for async calls (see [`Plugin::load_async`]).
    ///
    /// # Errors
    /// [`Error::WrongCallMode`] outside a tokio runtime, and every error of
    /// [`Plugin::from_bytes`].
    pub async fn from_bytes_async(
        engine: &Engine,
        bytes: &[u8],
        options: PluginOptions,
    ) -> Result<Self> {
        let name = options.name.clone().unwrap_or_else(|| "plugin".to_owned());
        let asynchronous = Self::asynchronous(engine, &name)?;
        Self::new(engine, name, None, bytes, options, Some(asynchronous)).await
    }

    /// How an async plugin runs: on the current tokio runtime.
    fn asynchronous(engine: &Engine, plugin: &str) -> Result<Asynchronous> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::WrongCallMode {
            plugin: plugin.to_owned(),
            reason: "a plugin for async calls is loaded inside a tokio runtime".to_owned(),
        })?;
        Ok(Asynchronous {
            runtime,
            yield_ticks: engine.options().async_yield_ticks(),
        })
    }

    /// Loads a plugin from its bytes (a wasm binary, or WAT text).
    ///
    /// # Errors
    /// [`Error::InvalidModule`] for bytes that are not wasm, [`Error::ExportMissing`] for an ABI
    /// plugin without its required exports or a configured entry that does not exist,
    /// [`Error::Instantiate`] for imports the host does not provide or an `_initialize` that
    /// traps, [`Error::AbiVersionUnsupported`] for an ABI version this host does not speak.
    pub fn from_bytes(engine: &Engine, bytes: &[u8], options: PluginOptions) -> Result<Self> {
        let name = options.name.clone().unwrap_or_else(|| "plugin".to_owned());
        let loading = Self::new(engine, name.clone(), None, bytes, options, None);
        crate::runtime::now(&name, loading)
    }

    async fn new(
        engine: &Engine,
        name: String,
        path: Option<PathBuf>,
        bytes: &[u8],
        options: PluginOptions,
        asynchronous: Option<Asynchronous>,
    ) -> Result<Self> {
        check_enforceable(engine, &name, &options.settings)?;
        let observer = options.observer;
        let context = Arc::new(PluginContext {
            name: Arc::from(name),
            host: options.host,
            settings: ArcSwap::from_pointee(options.settings),
            settings_generation: AtomicU64::new(0),
            asynchronous,
        });
        let hash = engine.content_hash(bytes);
        let (version, first) = Version::load(engine, &context, 1, bytes, hash).await?;
        tracing::info!(plugin = %context.name, hash = %version.hash(), elapsed = ?version.load_time, "plugin loaded");
        let version = Arc::new(version);
        Ok(Self {
            inner: Arc::new(PluginInner {
                engine: engine.clone(),
                serving: Serving::new(context, version, first),
                reloads: Reloads::new(path),
                observer,
            }),
        })
    }

    /// What identifies this plugin to the re-entrancy check: the address of its shared state.
    #[inline(always)]
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// A handle that does not keep the plugin alive (what watchers hold).
    pub fn downgrade(&self) -> WeakPlugin {
        WeakPlugin {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.serving.context.name
    }

    /// The file the plugin was loaded from.
    pub fn path(&self) -> Option<&Path> {
        self.inner.reloads.path()
    }

    /// The number of the version that answers calls now (1 for the first load).
    pub fn version(&self) -> u64 {
        self.inner.serving.current().number
    }

    /// Which compiler's code the current version runs: [`Tier::Baseline`] between a tiered
    /// reload and the swap to Cranelift's code ([`crate::EngineOptions::tiered`]).
    pub fn tier(&self) -> Tier {
        self.inner.serving.current().tier
    }

    /// The content hash of the current version.
    pub fn content_hash(&self) -> ContentHash {
        self.inner.serving.current().hash()
    }

    /// Whether the current version is an ABI plugin, a plain module, a component or an Extism
    /// plugin.
    pub fn kind(&self) -> PluginKind {
        self.inner.serving.current().exports.kind
    }

    /// Whether the current version is an Extism plugin ([`Plugin::kind`] in one atomic load,
    /// for the call path).
    #[inline]
    pub fn is_extism(&self) -> bool {
        self.inner.serving.current_is_extism()
    }

    /// The entries of the current version, in export order.
    pub fn entries(&self) -> Vec<EntryInfo> {
        self.inner.serving.current().exports.entry_infos()
    }

    /// When the current version was loaded, and how long loading it took.
    pub fn loaded(&self) -> (SystemTime, Duration) {
        let version = self.inner.serving.current();
        (version.loaded_at, version.load_time)
    }

    /// The engine the plugin runs on.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The settings the plugin runs with now.
    pub fn settings(&self) -> Arc<ResolvedSettings> {
        self.inner.serving.context.settings.load_full()
    }

    /// Replaces the settings; the next call uses them. Limits of instances already alive are
    /// updated at their next call. When the grants change (stdio, env, args, preopens), no
    /// instance built with the old ones serves another call: idle ones are dropped now, busy
    /// ones when their call ends.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key when the engine cannot enforce the settings (`fuel`
    /// without fuel metering, `max_memory_mib` above the pooling allocator's slots); the old
    /// settings stay.
    pub fn set_settings(&self, settings: ResolvedSettings) -> Result<()> {
        check_enforceable(&self.inner.engine, self.name(), &settings)?;
        let context = &self.inner.serving.context;
        let regrant = !context.settings.load().same_grants(&settings);
        context.set_settings(settings);
        if regrant {
            self.inner.serving.pool.retain(|_| false);
        }
        Ok(())
    }

    /// Instances of the current version alive now (idle or in a call).
    pub fn live_instances(&self) -> usize {
        self.inner.serving.current().live_instances()
    }

    /// The linear memory held by the current version's idle instances, in bytes: what the
    /// plugin's instances keep between calls (instances in a call are not counted). A plugin
    /// whose memory keeps growing over calls leaks.
    pub fn memory_bytes(&self) -> usize {
        let current = self.inner.serving.current_number();
        let mut bytes = 0;
        self.inner.serving.pool.for_each_idle(|pooled| {
            if pooled.number == current {
                bytes += pooled.instance.memory_bytes();
            }
        });
        bytes
    }

    /// Calls `entry` with `input` encoded in `format` and hands the output bytes to `read`,
    /// which runs while the output is still in the instance's buffer (no copy).
    ///
    /// # Errors
    /// [`Error::EntryNotAllowed`], [`Error::EntryNotFound`], [`Error::InputTooLarge`],
    /// [`Error::Guest`] for an error the entry returned, and the guest faults
    /// ([`Error::is_guest_fault`]) after which the instance is discarded and the next call gets
    /// a fresh one.
    pub fn call<R>(
        &self,
        entry: &str,
        format: Format,
        input: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.call_metered(entry, format, input, read)
            .map(|metered| metered.value)
    }

    /// [`Plugin::call`], also reporting the fuel the call consumed when fuel is metered.
    ///
    /// # Errors
    /// As [`Plugin::call`], and [`Error::Reentrant`] when called from inside one of this
    /// plugin's own host calls on the same thread.
    pub fn call_metered<R>(
        &self,
        entry: &str,
        format: Format,
        input: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<Metered<R>> {
        if let Some(observer) = &self.inner.observer {
            return self.call_observed(observer, entry, format, input, read);
        }
        let running = self.run(entry, format, input).map_err(|error| *error)?;
        let value = read(running.pooled.instance.output());
        let fuel_consumed = self.finish(running);
        Ok(Metered {
            value,
            fuel_consumed,
        })
    }

    /// [`Plugin::call_metered`], timed and reported to the plugin's observer.
    #[inline(never)]
    fn call_observed<R>(
        &self,
        observer: &Arc<dyn CallObserver>,
        entry: &str,
        format: Format,
        input: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<Metered<R>> {
        let (started, version) = (Instant::now(), self.version());
        let result = self
            .run(entry, format, input)
            .map_err(|error| *error)
            .map(|running| {
                let value = read(running.pooled.instance.output());
                let fuel_consumed = self.finish(running);
                Metered {
                    value,
                    fuel_consumed,
                }
            });
        self.report(observer, entry, version, started, &result);
        result
    }

    fn report<R>(
        &self,
        observer: &Arc<dyn CallObserver>,
        entry: &str,
        version: u64,
        started: Instant,
        result: &Result<Metered<R>>,
    ) {
        observer.call_finished(&CallRecord {
            plugin: self.name(),
            entry,
            version,
            outcome: result.as_ref().map(|_| ()),
            duration: started.elapsed(),
            fuel_consumed: result
                .as_ref()
                .ok()
                .and_then(|metered| metered.fuel_consumed),
        });
    }

    /// Runs `entry` on an instance of the current version and returns that instance with the
    /// entry's output in it; after an error the instance is already released. Not generic, so
    /// there is one copy of the call path whatever the caller reads the output into.
    fn run(&self, entry: &str, format: Format, input: &[u8]) -> Fast<Running> {
        let serving = &self.inner.serving;
        let context = &serving.context;
        if context.asynchronous.is_some() {
            return Err(Box::new(wrong_mode(self.name(), true)));
        }
        // Marked until the output is read: `read` runs while this thread holds the instance.
        let Some(in_call) = InCall::enter(self.id()) else {
            return Err(Box::new(reentrant(self.name(), entry)));
        };
        // The instance carries its version and the settings of its last call: the call reads
        // no shared pointer, only the current version's number and the settings' generation.
        let mut pooled = serving.acquire()?;
        if !pooled.refresh(context) {
            pooled = serving.regranted(pooled)?;
        }
        let site = CallSite {
            plugin: &context.name,
            entry,
        };
        let index = if pooled.all_entries || pooled.settings.allows_entry(entry) {
            pooled.entry(site.plugin, entry).map_err(Box::new)
        } else {
            Err(Box::new(not_allowed(site, &pooled.settings)))
        };
        let Pooled {
            instance,
            settings,
            reuse,
            ..
        } = &mut *pooled;
        let result = index.and_then(|index| instance.run(index, site, format, input, settings));
        match result {
            Ok(()) => Ok(Running {
                pooled,
                _in_call: in_call,
            }),
            Err(error) => {
                let keep = *reuse && !error.is_guest_fault() && !instance.spent();
                self.note_fault(&pooled.version, &error);
                serving.release(pooled, keep);
                Err(error)
            }
        }
    }

    /// Counts a failed call against its version's probation (`rollback_on`); the fault that
    /// reaches the limit starts the automatic rollback on a thread of its own (this call, and
    /// any other in flight, end as they would have: the rollback fails none of them).
    #[inline]
    fn note_fault(&self, version: &Arc<Version>, error: &Error) {
        if let Some(canary) = &version.canary
            && let Some(reason) = canary.fault(error, version.tier)
        {
            self.roll_back_faulty(version.clone(), reason);
        }
    }

    #[cold]
    fn roll_back_faulty(&self, version: Arc<Version>, reason: String) {
        let plugin = self.downgrade();
        let spawned = std::thread::Builder::new()
            .name("dlinkwm-rollback".to_owned())
            .spawn(move || {
                if let Some(plugin) = plugin.upgrade() {
                    let inner = &*plugin.inner;
                    inner
                        .reloads
                        .roll_back_faulty(&inner.serving, &version, reason);
                    plugin.optimize_in_background();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(plugin = self.name(), %error, "cannot start the automatic rollback");
        }
    }

    /// Puts the instance of a finished call back and returns the fuel the call consumed.
    #[inline(always)]
    fn finish(&self, running: Running) -> Option<u64> {
        let Running { pooled, _in_call } = running;
        let fuel_consumed = pooled.instance.fuel_consumed();
        let keep = pooled.reuse && !pooled.instance.spent();
        self.inner.serving.release(pooled, keep);
        fuel_consumed
    }

    /// Calls `entry` of a plugin loaded with [`Plugin::load_async`] and hands the output bytes
    /// to `read`, with what the call consumed. The guest runs on a fiber: it yields to the
    /// executor at epoch ticks, its host calls may await, and waiting for a free instance parks
    /// no thread. The same limits, allowlists and errors as [`Plugin::call`]; the call's time
    /// limit also bounds the time spent awaiting host methods.
    ///
    /// Cancellation-safe: dropping the future at any point (waiting for an instance, inside the
    /// guest, inside an async host method) drops the host method's future and the instance the
    /// call held (never reused half-way), gives back its place among `max_instances`, and
    /// leaves the plugin ready for the next call.
    ///
    /// # Errors
    /// As [`Plugin::call`]; [`Error::WrongCallMode`] for a plugin loaded for sync calls.
    pub async fn call_async<R>(
        &self,
        entry: &str,
        format: Format,
        input: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<Metered<R>> {
        let Some(observer) = &self.inner.observer else {
            return self.call_async_unobserved(entry, format, input, read).await;
        };
        let (started, version) = (Instant::now(), self.version());
        let result = self.call_async_unobserved(entry, format, input, read).await;
        self.report(observer, entry, version, started, &result);
        result
    }

    async fn call_async_unobserved<R>(
        &self,
        entry: &str,
        format: Format,
        input: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<Metered<R>> {
        let serving = &self.inner.serving;
        let context = &serving.context;
        if context.asynchronous.is_none() {
            return Err(wrong_mode(self.name(), false));
        }
        // The slow path (making an instance, waiting for one) is boxed: its large future would
        // otherwise be part of every call's future.
        let pooled = match serving.take_current_idle() {
            Some(pooled) => pooled,
            None => Box::pin(serving.acquire_async()).await?,
        };
        let mut held = Held {
            serving,
            pooled: Some(pooled),
        };
        if !held.pooled().refresh(context) {
            let retired = held.take();
            held.pooled = Some(Box::pin(serving.regranted_async(retired)).await?);
        }
        let site = CallSite {
            plugin: &context.name,
            entry,
        };
        let pooled = held.pooled();
        let index = if pooled.all_entries || pooled.settings.allows_entry(entry) {
            pooled.entry(site.plugin, entry)
        } else {
            Err(not_allowed(site, &pooled.settings))
        };
        let index = match index {
            Ok(index) => index,
            Err(error) => {
                let keep = pooled.reuse;
                held.release(keep);
                return Err(error);
            }
        };
        let Pooled {
            instance, settings, ..
        } = &mut *pooled;
        let settings = settings.clone();
        // The deadline holds without a timer per call: the epoch ends a guest that computes past
        // it, and an async host method or a WASI wait is awaited only until it.
        match instance
            .run_async(index, site, format, input, &settings)
            .await
        {
            Ok(()) => {
                let pooled = held.pooled();
                let value = read(pooled.instance.output());
                let fuel_consumed = pooled.instance.fuel_consumed();
                let keep = pooled.reuse && !pooled.instance.spent();
                held.release(keep);
                Ok(Metered {
                    value,
                    fuel_consumed,
                })
            }
            Err(error) => {
                let pooled = held.pooled();
                let keep = pooled.reuse && !error.is_guest_fault() && !pooled.instance.spent();
                self.note_fault(&held.pooled().version, &error);
                held.release(keep);
                Err(error)
            }
        }
    }

    /// Calls `entry` with raw bytes and returns its output.
    ///
    /// # Errors
    /// As [`Plugin::call`].
    pub fn call_raw(&self, entry: &str, input: &[u8]) -> Result<Vec<u8>> {
        self.call(entry, Format::Raw, input, <[u8]>::to_vec)
    }

    /// Calls the plugin "by config": tries each configured entry in order and returns the first
    /// one that succeeds, with its name.
    ///
    /// # Errors
    /// [`Error::NoEntriesConfigured`] when the configuration lists none,
    /// [`Error::AllEntriesFailed`] with every attempt's error when none succeeds.
    pub fn call_configured(&self, format: Format, input: &[u8]) -> Result<(String, Vec<u8>)> {
        let settings = self.inner.serving.context.settings.load_full();
        let entries = settings
            .entries
            .as_deref()
            .ok_or_else(|| Error::NoEntriesConfigured {
                plugin: self.name().to_owned(),
            })?;
        let mut attempts = Vec::new();
        for entry in entries {
            match self.call(entry, format, input, <[u8]>::to_vec) {
                Ok(output) => return Ok((entry.clone(), output)),
                Err(error) => {
                    tracing::debug!(plugin = self.name(), entry = %entry, %error, "configured entry failed, trying the next");
                    attempts.push((entry.clone(), error));
                }
            }
        }
        Err(Error::AllEntriesFailed {
            plugin: self.name().to_owned(),
            attempts,
        })
    }

    /// Subscribes to this plugin's reload events.
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<ReloadEvent> {
        self.inner.reloads.events.subscribe()
    }

    /// Calls `callback` on the reloading thread for each reload event.
    pub fn on_event(&self, callback: impl Fn(&ReloadEvent) + Send + Sync + 'static) {
        self.inner.reloads.events.on_event(Arc::new(callback));
    }

    pub(crate) fn emit(&self, event: ReloadEvent) {
        self.inner.reloads.events.emit(event);
    }

    /// Re-reads the plugin's file and swaps it in if it is valid and different.
    ///
    /// # Errors
    /// The reason the new file was refused; the current version keeps serving and a
    /// [`ReloadEvent::Failed`] is sent.
    pub fn reload(&self) -> Result<ReloadOutcome> {
        let inner = &*self.inner;
        let reload = inner
            .reloads
            .reload(&inner.engine, &inner.serving, self.id());
        let result = crate::runtime::block_on(&inner.serving.context, reload);
        self.optimize_in_background();
        result
    }

    /// [`Plugin::reload`] for async code: the new version's code is compiled on the runtime's
    /// blocking threads and its instances are made by awaiting (for a plugin loaded with
    /// [`Plugin::load_async`]; a sync plugin's reload runs on this task).
    ///
    /// # Errors
    /// As [`Plugin::reload`].
    pub async fn reload_async(&self) -> Result<ReloadOutcome> {
        if !self.is_async() {
            let plugin = self.clone();
            return self.off_the_executor(move || plugin.reload()).await;
        }
        let inner = &*self.inner;
        let result = inner
            .reloads
            .reload(&inner.engine, &inner.serving, self.id())
            .await;
        self.optimize_in_background();
        result
    }

    /// Runs a sync plugin's reload from async code: on the runtime's blocking threads (its
    /// compile, instantiation and WASI calls block), or here outside a runtime.
    async fn off_the_executor(
        &self,
        work: impl FnOnce() -> Result<ReloadOutcome> + Send + 'static,
    ) -> Result<ReloadOutcome> {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime.spawn_blocking(work).await.unwrap_or_else(|joined| {
                Err(Error::Engine {
                    reason: format!(
                        "the reload thread of plugin `{}` failed: {joined}",
                        self.name()
                    ),
                })
            }),
            Err(_) => work(),
        }
    }

    /// [`Plugin::reload_from_bytes`] for async code (see [`Plugin::reload_async`]).
    ///
    /// # Errors
    /// As [`Plugin::reload`].
    pub async fn reload_from_bytes_async(&self, bytes: &[u8]) -> Result<ReloadOutcome> {
        if !self.is_async() {
            let (plugin, bytes) = (self.clone(), bytes.to_vec());
            return self
                .off_the_executor(move || plugin.reload_from_bytes(&bytes))
                .await;
        }
        let inner = &*self.inner;
        let result = inner
            .reloads
            .reload_from_bytes(&inner.engine, &inner.serving, self.id(), bytes)
            .await;
        self.optimize_in_background();
        result
    }

    /// Whether the plugin was loaded for async calls ([`Plugin::load_async`]).
    pub fn is_async(&self) -> bool {
        self.inner.serving.context.asynchronous.is_some()
    }

    /// Reloads the plugin's file on a thread of its own, so a slow compile never holds up the
    /// caller (the file watcher, which serves every plugin). Requests made while one runs
    /// coalesce into one more reload after it, once the file has been quiet for `settle`; outcomes
    /// arrive as events.
    pub(crate) fn reload_in_background(&self, settle: Duration) {
        let inner = &*self.inner;
        if !inner.reloads.request_background() {
            return;
        }
        let plugin = self.clone();
        let work = move || {
            let inner = &*plugin.inner;
            inner
                .reloads
                .run_requested(&inner.engine, &inner.serving, plugin.id(), settle);
            plugin.optimize_in_background();
        };
        let spawned = std::thread::Builder::new()
            .name("dlinkwm-reload".to_owned())
            .spawn(work);
        if let Err(error) = spawned {
            tracing::warn!(plugin = self.name(), %error, "cannot start a reload thread; reloading on this one");
            inner
                .reloads
                .run_requested(&inner.engine, &inner.serving, self.id(), settle);
            self.optimize_in_background();
        }
    }

    /// Tiered reloads: when the current version runs Winch's code, compiles its bytes with
    /// Cranelift on a thread of its own and swaps that version in like a reload
    /// (`Reloads::optimize`); the outcome arrives as [`ReloadEvent::Optimized`] or
    /// [`ReloadEvent::OptimizeFailed`]. Once per first-tier version; nothing for any other.
    fn optimize_in_background(&self) {
        let version = self.inner.serving.current_full();
        if version.tier != Tier::Baseline
            || version
                .optimizing
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let Some(bytes) = version.source.clone() else {
            return;
        };
        let (engine, name, plugin, id) = (
            self.inner.engine.clone(),
            self.name().to_owned(),
            self.downgrade(),
            self.id(),
        );
        let work = move || {
            let started = Instant::now();
            // The plugin, while `version` still serves it (nothing to do otherwise).
            let serving = || {
                plugin
                    .upgrade()
                    .filter(|plugin| Arc::ptr_eq(&plugin.inner.serving.current_full(), &version))
            };
            let give_up = || {
                version
                    .optimizing
                    .store(false, std::sync::atomic::Ordering::Release);
            };
            if serving().is_none() {
                return give_up();
            }
            // Held while the swap runs, so the swap finds the code in the engine's cache.
            let compiled = engine.module(&name, &bytes, version.hash());
            for attempt in 1..=OPTIMIZE_ATTEMPTS {
                let Some(plugin) = serving() else {
                    return give_up();
                };
                let inner = &*plugin.inner;
                let swapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _code = compiled.as_ref().map_err(Clone::clone)?;
                    let swap = inner.reloads.optimize(
                        &inner.engine,
                        &inner.serving,
                        id,
                        &version,
                        started,
                    );
                    crate::runtime::block_on(&inner.serving.context, swap)
                }))
                .unwrap_or_else(|_| {
                    Err(Error::Engine {
                        reason: "a host method panicked during the second tier's swap".to_owned(),
                    })
                });
                let Err(error) = swapped else {
                    return;
                };
                // What the bytes or the plugin's own smoke call refuse is final; a busy pool
                // or a failed hand-over may pass a little later.
                let last = attempt == OPTIMIZE_ATTEMPTS
                    || crate::plugin::reload::caused_by_bytes(&error)
                    || matches!(error, Error::SmokeFailed { .. });
                tracing::warn!(plugin = &*name, version = version.number, %error, retry = !last, "Cranelift's version could not replace Winch's; the first tier keeps serving");
                inner.reloads.events.emit(ReloadEvent::OptimizeFailed {
                    plugin: name.clone(),
                    version: version.number,
                    error,
                });
                if last {
                    // Tried again when something next asks (a reload, a rollback to it).
                    return give_up();
                }
                drop(plugin);
                std::thread::sleep(OPTIMIZE_BACKOFF * attempt);
            }
        };
        let spawned = std::thread::Builder::new()
            .name("dlinkwm-optimize".to_owned())
            .spawn(work);
        if let Err(error) = spawned {
            tracing::warn!(plugin = self.name(), %error, "cannot start Cranelift's compile; the first tier keeps serving");
        }
    }

    /// Whether the version serving is on probation: a reload made it current, `rollback_on` is
    /// set, and its window has not ended without reaching the fault limit. A host that records a
    /// "last known good" version waits until this is false.
    pub fn on_probation(&self) -> bool {
        self.inner
            .serving
            .current()
            .canary
            .as_ref()
            .is_some_and(|canary| canary.on_probation())
    }

    /// Reports that a new version could not be fetched from where the plugin comes from (a
    /// registry that refused it or sent bytes failing verification): subscribers get a
    /// [`ReloadEvent::Failed`] with [`Error::Source`], and the current version keeps serving.
    /// For hosts that fetch new versions themselves and hand them to
    /// [`Plugin::reload_from_bytes`].
    pub fn report_source_failure(&self, reason: impl Into<String>) {
        let error = Error::Source {
            plugin: self.name().to_owned(),
            reason: reason.into(),
        };
        tracing::warn!(plugin = self.name(), %error, "new version refused");
        self.emit(ReloadEvent::Failed {
            plugin: self.name().to_owned(),
            path: None,
            error,
        });
    }

    /// Swaps in `bytes` as the new version if they are valid and different.
    ///
    /// # Errors
    /// As [`Plugin::reload`].
    pub fn reload_from_bytes(&self, bytes: &[u8]) -> Result<ReloadOutcome> {
        let inner = &*self.inner;
        let reload =
            inner
                .reloads
                .reload_from_bytes(&inner.engine, &inner.serving, self.id(), bytes);
        let result = crate::runtime::block_on(&inner.serving.context, reload);
        self.optimize_in_background();
        result
    }

    /// Makes the previous good version current again, at once (it is still compiled).
    ///
    /// # Errors
    /// [`Error::NoRollbackTarget`] when no earlier version is kept.
    pub fn rollback(&self) -> Result<u64> {
        let result = self.inner.reloads.rollback(&self.inner.serving);
        self.optimize_in_background();
        result
    }

    /// [`Plugin::rollback`] for async code: waits for a reload in progress without blocking
    /// the executor.
    ///
    /// # Errors
    /// As [`Plugin::rollback`].
    pub async fn rollback_async(&self) -> Result<u64> {
        let result = self.inner.reloads.rollback_async(&self.inner.serving).await;
        self.optimize_in_background();
        result
    }

    /// Numbers of the earlier versions kept for rollback, oldest first.
    pub fn kept_versions(&self) -> Vec<u64> {
        self.inner.reloads.kept_versions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload asked for by a file event, of a file removed before the reload reads it (an
    /// event that arrives late, then a removal): no refusal is reported — the watcher reports
    /// the removal — and the loaded version keeps serving.
    #[test]
    fn a_file_removed_before_its_reload_reads_it_is_not_a_refusal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("plugin.wasm");
        std::fs::copy(test_programs_artifacts::SDK_TEST_A, &path).expect("copy plugin");
        let engine = Engine::new(Default::default()).expect("engine");
        let options = crate::PluginOptions {
            name: None,
            settings: ResolvedSettings::default(),
            host: Arc::new(crate::NoHostMethods),
            observer: None,
        };
        let plugin = Plugin::load(&engine, &path, options).expect("loads");
        let events = plugin.subscribe();
        std::fs::remove_file(&path).expect("remove");
        let inner = &*plugin.inner;
        assert!(inner.reloads.request_background());
        inner
            .reloads
            .run_requested(&inner.engine, &inner.serving, plugin.id(), Duration::ZERO);
        assert!(events.try_recv().is_err(), "{:?}", events.try_recv());
        assert_eq!(plugin.version(), 1);
        // An explicit reload still says why it cannot read the file.
        assert!(matches!(plugin.reload(), Err(Error::Read { .. })));
    }
}
