//! The plugin handle: the current version, swapped atomically on reload, and the calls.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use dlinkwm_abi::Format;

use crate::config::ResolvedSettings;
use crate::engine::{ContentHash, Engine};
use crate::error::{Error, Fast, Result};
use crate::plugin::events::{EventBus, ReloadEvent};
use crate::plugin::held::InCall;
use crate::plugin::pool::{Pool, Pooled};
use crate::plugin::version::Version;
use crate::runtime::{
    CallSite, EntryInfo, HostCallHandler, Instance, NoHostMethods, PluginContext, PluginKind,
};
use crate::sync::lock;

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
}

impl Default for PluginOptions {
    fn default() -> Self {
        Self {
            name: None,
            settings: ResolvedSettings::default(),
            host: Arc::new(NoHostMethods),
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

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// A new version is current.
    Reloaded {
        /// Its number.
        version: u64,
        /// Its content hash.
        hash: ContentHash,
    },
    /// The bytes are those of the current version: nothing happened and no event was sent.
    Unchanged,
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
    context: Arc<PluginContext>,
    path: Option<PathBuf>,
    current: ArcSwap<Version>,
    /// The number of `current`, which calls compare their instance's version with: one plain
    /// load instead of a shared-pointer read.
    current_number: AtomicU64,
    /// Idle instances, of the current version (instances of a version that stopped serving
    /// are dropped when seen).
    pool: Pool,
    /// Earlier good versions, newest last, for rollback.
    history: Mutex<VecDeque<Arc<Version>>>,
    /// Serialises reloads and rollbacks; calls never take it.
    reload_lock: Mutex<()>,
    next_number: AtomicU64,
    events: EventBus,
    /// Background reloads asked for: 0 none, 1 one running, 2 one running and another asked
    /// for while it ran (any number of requests meanwhile coalesce into that one).
    reload_requests: AtomicU8,
    /// The content hash and settings generation of the last file the watcher saw refused.
    last_refused: Mutex<Option<(ContentHash, u64)>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name())
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

/// Reads a file that a writer may still be writing: if its size or modification time changes
/// while it is read, it is read again (a few times), so a reload never compiles half a file when
/// the writer is merely slow.
fn read_settled(path: &Path, max: usize) -> Result<Vec<u8>> {
    let stamp = |path: &Path| {
        std::fs::metadata(path)
            .map(|meta| (meta.len(), meta.modified().ok()))
            .map_err(|source| Error::Read {
                path: path.to_owned(),
                source: Arc::new(source),
            })
    };
    let mut bytes = Vec::new();
    for _ in 0..5 {
        let before = stamp(path)?;
        bytes = read_file(path, max)?;
        if stamp(path)? == before && before.0 == bytes.len() as u64 {
            break;
        }
    }
    Ok(bytes)
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

/// Reads the plugin file at `path`, at most `max` bytes of it: a file over the engine's
/// `max_module_bytes` is refused without being read whole.
fn read_file(path: &Path, max: usize) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source: Arc::new(source),
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() > max {
        return Err(Error::InvalidModule {
            plugin: path.display().to_string(),
            reason: format!(
                "the file is over the engine's max_module_mib of {} MiB",
                max >> 20
            ),
        });
    }
    Ok(bytes)
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
        Self::new(engine, name, Some(path.to_owned()), &bytes, options)
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
        Self::new(engine, name, None, bytes, options)
    }

    fn new(
        engine: &Engine,
        name: String,
        path: Option<PathBuf>,
        bytes: &[u8],
        options: PluginOptions,
    ) -> Result<Self> {
        check_enforceable(engine, &name, &options.settings)?;
        let context = Arc::new(PluginContext {
            name: Arc::from(name),
            host: options.host,
            settings: ArcSwap::from_pointee(options.settings),
            settings_generation: AtomicU64::new(0),
        });
        let (version, first) = Version::load(engine, &context, 1, bytes, ContentHash::of(bytes))?;
        tracing::info!(plugin = %context.name, hash = %version.hash(), elapsed = ?version.load_time, "plugin loaded");
        let version = Arc::new(version);
        let pool = Pool::new();
        pool.put_back(Pooled::new(
            first,
            version.clone(),
            0,
            context.settings.load_full(),
        ));
        Ok(Self {
            inner: Arc::new(PluginInner {
                engine: engine.clone(),
                context,
                path,
                current_number: AtomicU64::new(version.number),
                current: ArcSwap::new(version),
                pool,
                history: Mutex::new(VecDeque::new()),
                reload_lock: Mutex::new(()),
                next_number: AtomicU64::new(2),
                events: EventBus::new(),
                reload_requests: AtomicU8::new(0),
                last_refused: Mutex::new(None),
            }),
        })
    }

    /// A handle that does not keep the plugin alive (what watchers hold).
    pub fn downgrade(&self) -> WeakPlugin {
        WeakPlugin {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.context.name
    }

    /// The file the plugin was loaded from.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The number of the version that answers calls now (1 for the first load).
    pub fn version(&self) -> u64 {
        self.inner.current.load().number
    }

    /// The content hash of the current version.
    pub fn content_hash(&self) -> ContentHash {
        self.inner.current.load().hash()
    }

    /// Whether the current version is an ABI plugin or a plain module.
    pub fn kind(&self) -> PluginKind {
        self.inner.current.load().exports.kind
    }

    /// The entries of the current version, in export order.
    pub fn entries(&self) -> Vec<EntryInfo> {
        self.inner.current.load().exports.entry_infos()
    }

    /// When the current version was loaded, and how long loading it took.
    pub fn loaded(&self) -> (SystemTime, Duration) {
        let version = self.inner.current.load();
        (version.loaded_at, version.load_time)
    }

    /// The engine the plugin runs on.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The settings the plugin runs with now.
    pub fn settings(&self) -> Arc<ResolvedSettings> {
        self.inner.context.settings.load_full()
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
        let context = &self.inner.context;
        let regrant = !context.settings.load().same_grants(&settings);
        context.set_settings(settings);
        if regrant {
            self.inner.pool.retain(|_| false);
        }
        Ok(())
    }

    /// Instances of the current version alive now (idle or in a call).
    pub fn live_instances(&self) -> usize {
        self.inner.current.load().live_instances()
    }

    /// The linear memory held by the current version's idle instances, in bytes: what the
    /// plugin's instances keep between calls (instances in a call are not counted). A plugin
    /// whose memory keeps growing over calls leaks.
    pub fn memory_bytes(&self) -> usize {
        let current = self.inner.current_number.load(Ordering::Acquire);
        let mut bytes = 0;
        self.inner.pool.for_each_idle(|pooled| {
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
        let running = self.run(entry, format, input).map_err(|error| *error)?;
        let value = read(running.pooled.instance.output());
        let fuel_consumed = self.finish(running);
        Ok(Metered {
            value,
            fuel_consumed,
        })
    }

    /// Runs `entry` on an instance of the current version and returns that instance with the
    /// entry's output in it; after an error the instance is already released. Not generic, so
    /// there is one copy of the call path whatever the caller reads the output into.
    fn run(&self, entry: &str, format: Format, input: &[u8]) -> Fast<Running> {
        // Marked until the output is read: `read` runs while this thread holds the instance.
        let Some(in_call) = InCall::enter(Arc::as_ptr(&self.inner) as usize) else {
            return Err(Box::new(self.reentrant(entry)));
        };
        let context = &self.inner.context;
        // The instance carries its version and the settings of its last call: the call reads
        // no shared pointer, only the current version's number and the settings' generation.
        let mut pooled = self.acquire()?;
        if !pooled.refresh(context) {
            pooled = self.regranted(pooled)?;
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
                let keep = *reuse && !error.is_guest_fault();
                self.release(pooled, keep);
                Err(error)
            }
        }
    }

    /// Puts the instance of a finished call back and returns the fuel the call consumed.
    #[inline(always)]
    fn finish(&self, running: Running) -> Option<u64> {
        let Running { pooled, _in_call } = running;
        let fuel_consumed = pooled.instance.fuel_consumed();
        let keep = pooled.reuse;
        self.release(pooled, keep);
        fuel_consumed
    }

    /// Drops an instance whose grants were revoked or changed, and gets one built with the
    /// current grants.
    #[cold]
    fn regranted(&self, retired: Box<Pooled>) -> Fast<Box<Pooled>> {
        self.discard(retired);
        loop {
            let mut pooled = self.acquire()?;
            if pooled.refresh(&self.inner.context) {
                return Ok(pooled);
            }
            self.discard(pooled);
        }
    }

    #[cold]
    fn reentrant(&self, entry: &str) -> Error {
        Error::Reentrant {
            plugin: self.name().to_owned(),
            entry: entry.to_owned(),
        }
    }

    /// An idle instance of the current version, a new one while fewer than `max_instances` are
    /// alive, or the next one released.
    #[inline(always)]
    fn acquire(&self) -> Fast<Box<Pooled>> {
        let inner = &*self.inner;
        if let Some(pooled) = inner.pool.take_idle() {
            if pooled.number == inner.current_number.load(Ordering::Acquire) {
                return Ok(pooled);
            }
            inner.pool.discard(pooled);
        }
        self.acquire_slow().map_err(Box::new)
    }

    #[cold]
    fn acquire_slow(&self) -> Result<Box<Pooled>> {
        let inner = &*self.inner;
        let pool = &inner.pool;
        let started = Instant::now();
        loop {
            while let Some(pooled) = pool.take_idle() {
                if pooled.number == inner.current_number.load(Ordering::Acquire) {
                    return Ok(pooled);
                }
                // An instance of a version that stopped serving while it was idle.
                pool.discard(pooled);
            }
            let version = inner.current.load_full();
            let generation = inner.context.settings_generation.load(Ordering::Acquire);
            let settings = inner.context.settings.load_full();
            if version.reserve(settings.max_instances) {
                return match version.instantiate(&settings) {
                    Ok(instance) => Ok(Pooled::new(instance, version, generation, settings)),
                    Err(error) => {
                        version.forget_one();
                        Err(error)
                    }
                };
            }
            // Every instance is busy: wait for one to be released, up to the queue deadline.
            let waited = started.elapsed();
            let Some(left) = settings
                .queue_timeout
                .checked_sub(waited)
                .filter(|left| !left.is_zero())
            else {
                return Err(Error::Busy {
                    plugin: self.name().to_owned(),
                    waited,
                    max_instances: settings.max_instances,
                });
            };
            let busy = || version.live_instances() >= settings.max_instances;
            if let Some(pooled) = pool.wait(busy, left) {
                if pooled.number == inner.current_number.load(Ordering::Acquire) {
                    return Ok(pooled);
                }
                pool.discard(pooled);
            }
        }
    }

    /// Returns an instance after a call. One of a version that no longer serves, after a guest
    /// fault, or not meant for reuse is dropped, and the next call gets a fresh one.
    #[inline(always)]
    fn release(&self, pooled: Box<Pooled>, keep: bool) {
        let inner = &*self.inner;
        let number = pooled.number;
        if keep && number == inner.current_number.load(Ordering::Acquire) {
            inner.pool.put_back(pooled);
            // A swap may have happened between the check and the put, after it dropped the
            // idle instances of the old version: look again, so none is left behind idle.
            if number != inner.current_number.load(Ordering::Acquire) {
                self.drop_stale();
            }
        } else {
            self.discard(pooled);
        }
    }

    #[cold]
    fn discard(&self, pooled: Box<Pooled>) {
        self.inner.pool.discard(pooled);
    }

    /// Drops the idle instances (their memory) of versions that no longer serve calls.
    #[cold]
    fn drop_stale(&self) {
        let current = self.inner.current_number.load(Ordering::Acquire);
        self.inner.pool.retain(|pooled| pooled.number == current);
    }

    /// Makes `version` the one that serves calls, drops the idle instances of the one it
    /// replaces and returns that one. Calls that hold an instance of it finish on it.
    fn make_current(&self, version: Arc<Version>) -> Arc<Version> {
        let number = version.number;
        let old = self.inner.current.swap(version);
        self.inner.current_number.store(number, Ordering::Release);
        self.drop_stale();
        old
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
        let settings = self.inner.context.settings.load_full();
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
        self.inner.events.subscribe()
    }

    /// Calls `callback` on the reloading thread for each reload event.
    pub fn on_event(&self, callback: impl Fn(&ReloadEvent) + Send + Sync + 'static) {
        self.inner.events.on_event(Arc::new(callback));
    }

    pub(crate) fn emit(&self, event: ReloadEvent) {
        self.inner.events.emit(event);
    }

    /// Re-reads the plugin's file and swaps it in if it is valid and different.
    ///
    /// # Errors
    /// The reason the new file was refused; the current version keeps serving and a
    /// [`ReloadEvent::Failed`] is sent.
    pub fn reload(&self) -> Result<ReloadOutcome> {
        let Some(path) = self.inner.path.clone() else {
            return Ok(ReloadOutcome::Unchanged);
        };
        let max = self.inner.engine.options().max_module_bytes;
        let result = read_settled(&path, max).and_then(|bytes| {
            // Hashed once: for the unchanged check and as the compiled-code cache key.
            let hash = ContentHash::of(&bytes);
            self.swap_in(&bytes, hash)
        });
        self.report(result, Some(path))
    }

    /// Waits until the plugin's file has not changed for [`crate::SETTLE_TIME`] (at most a
    /// second: a file written without pause is read as it is then).
    fn wait_until_quiet(&self) {
        let Some(path) = &self.inner.path else {
            return;
        };
        let stamp = || {
            std::fs::metadata(path)
                .ok()
                .map(|meta| (meta.len(), meta.modified().ok()))
        };
        let mut last = stamp();
        for _ in 0..25 {
            std::thread::sleep(crate::SETTLE_TIME);
            let now = stamp();
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// [`Plugin::reload`] for the file watcher: a file whose bytes were just refused, under
    /// the same settings, is not compiled and reported again (one write often raises several
    /// file events; they must not turn into a stream of identical refusals).
    fn reload_watched(&self) {
        let Some(path) = self.inner.path.clone() else {
            return;
        };
        let max = self.inner.engine.options().max_module_bytes;
        let stamp = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|meta| (meta.len(), meta.modified().ok()))
        };
        let before = stamp(&path);
        let bytes = match read_settled(&path, max) {
            Ok(bytes) => bytes,
            Err(error) => {
                let _ = self.report(Err(error), Some(path));
                return;
            }
        };
        let hash = ContentHash::of(&bytes);
        let generation = self
            .inner
            .context
            .settings_generation
            .load(Ordering::Acquire);
        if *lock(&self.inner.last_refused) == Some((hash, generation)) {
            tracing::debug!(plugin = self.name(), %hash, "file unchanged since it was refused");
            return;
        }
        let result = self.swap_in(&bytes, hash);
        if result.is_err() && stamp(&path) != before {
            // Refused bytes of a file that has changed since: a write in progress (a
            // truncation, then the new content). Its own file event reloads it again.
            tracing::debug!(plugin = self.name(), %hash, "file changed while it was being loaded");
            return;
        }
        // Only a refusal the bytes themselves cause is remembered: a busy pool or a failed
        // hand-over may pass, and the same bytes must then be tried again.
        let caused_by_bytes = matches!(
            result,
            Err(Error::InvalidModule { .. }
                | Error::ExportMissing { .. }
                | Error::EntryNotFound { .. }
                | Error::AbiVersionUnsupported { .. })
        );
        *lock(&self.inner.last_refused) = caused_by_bytes.then_some((hash, generation));
        let _ = self.report(result, Some(path));
    }

    /// Reloads the plugin's file on a thread of its own, so a slow compile never holds up the
    /// caller (the file watcher, which serves every plugin). Requests made while one runs
    /// coalesce into one more reload after it; outcomes arrive as events.
    pub(crate) fn reload_in_background(&self) {
        let requests = &self.inner.reload_requests;
        let (Ok(before) | Err(before)) =
            requests.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some((now + 1).min(2))
            });
        if before != 0 {
            return;
        }
        let plugin = self.clone();
        let spawned = std::thread::Builder::new()
            .name("dlinkwm-reload".to_owned())
            .spawn(move || plugin.serve_reload_requests());
        if let Err(error) = spawned {
            tracing::warn!(plugin = self.name(), %error, "cannot start a reload thread; reloading on this one");
            self.serve_reload_requests();
        }
    }

    /// Reloads until no request is left (see [`Plugin::reload_in_background`]). A panic in a
    /// reload (a host method's, during state hand-over) is logged and the requests are still
    /// served, so the plugin never stops following its file.
    fn serve_reload_requests(&self) {
        loop {
            let reloaded =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.reload_watched()));
            if reloaded.is_err() {
                tracing::error!(
                    plugin = self.name(),
                    "a reload panicked; the current version keeps serving"
                );
            }
            if self.inner.reload_requests.fetch_sub(1, Ordering::AcqRel) == 1 {
                break;
            }
            // Asked again while it ran: the file changed after it was read. The request came
            // from a settled change, but the file may be in the middle of yet another write
            // now; like the watcher, act once it has been quiet for a settle window.
            self.wait_until_quiet();
        }
    }

    /// Swaps in `bytes` as the new version if they are valid and different.
    ///
    /// # Errors
    /// As [`Plugin::reload`].
    pub fn reload_from_bytes(&self, bytes: &[u8]) -> Result<ReloadOutcome> {
        let result = self.swap_in(bytes, ContentHash::of(bytes));
        self.report(result, None)
    }

    fn report(
        &self,
        result: Result<ReloadOutcome>,
        path: Option<PathBuf>,
    ) -> Result<ReloadOutcome> {
        result.inspect_err(|error| {
            tracing::warn!(plugin = self.name(), %error, "reload refused, the current version keeps serving");
            self.emit(ReloadEvent::Failed {
                plugin: self.name().to_owned(),
                path,
                error: error.clone(),
            });
        })
    }

    /// Loads and validates `bytes` off the call path, hands the state over, then swaps.
    fn swap_in(&self, bytes: &[u8], hash: ContentHash) -> Result<ReloadOutcome> {
        let started = Instant::now();
        let _reloading = lock(&self.inner.reload_lock);
        let old = self.inner.current.load_full();
        if hash == old.hash() {
            return Ok(ReloadOutcome::Unchanged);
        }
        // Reloads are serialised by `reload_lock`, so the number is only taken when the new
        // version is swapped in: refused files do not use up version numbers.
        let number = self.inner.next_number.load(Ordering::Relaxed);
        let context = &self.inner.context;
        let (mut new, mut first) = Version::load(&self.inner.engine, context, number, bytes, hash)?;
        let generation = context.settings_generation.load(Ordering::Acquire);
        let settings = context.settings.load_full();
        let handed_over = self.hand_over(&mut new, &mut first, &settings)?;
        self.inner.next_number.store(number + 1, Ordering::Relaxed);
        let new = Arc::new(new);
        // The old version stops taking calls; the calls it is running finish on it.
        self.make_current(new.clone());
        self.inner
            .pool
            .put_back(Pooled::new(first, new, generation, settings.clone()));
        {
            let mut history = lock(&self.inner.history);
            history.push_back(old.clone());
            while history.len() > settings.keep_versions {
                history.pop_front();
            }
        }
        let elapsed = started.elapsed();
        tracing::info!(plugin = self.name(), version = number, %hash, ?elapsed, "plugin reloaded");
        self.emit(ReloadEvent::Reloaded {
            plugin: self.name().to_owned(),
            version: number,
            previous: old.number,
            hash,
            elapsed,
            state_handed_over: handed_over,
        });
        Ok(ReloadOutcome::Reloaded {
            version: number,
            hash,
        })
    }

    /// Gives the new version the state of the current one (reloads are serialised, so the
    /// current version is the one being replaced).
    fn hand_over(
        &self,
        new: &mut Version,
        first: &mut Instance,
        settings: &ResolvedSettings,
    ) -> Result<bool> {
        let plugin = self.name();
        if !new.exports.restores_state() || !self.inner.current.load().exports.saves_state() {
            return Ok(false);
        }
        let wrap = |error: Error| Error::StateHandover {
            plugin: plugin.to_owned(),
            source: Box::new(error),
        };
        // A reload started from inside one of this plugin's own calls (a host method) must not
        // wait for the instance that very call holds.
        let Some(_in_call) = InCall::enter(Arc::as_ptr(&self.inner) as usize) else {
            return Err(wrap(self.reentrant(dlinkwm_abi::export::STATE_SAVE)));
        };
        let mut pooled = self.acquire().map_err(|error| wrap(*error))?;
        if !pooled.refresh(&self.inner.context) {
            pooled = self.regranted(pooled).map_err(|error| wrap(*error))?;
        }
        let Pooled {
            instance,
            settings: old_settings,
            ..
        } = &mut *pooled;
        let saved = instance.save_state(plugin, old_settings);
        let healthy = !matches!(&saved, Err(error) if error.is_guest_fault());
        self.release(pooled, healthy);
        let Some(state) = saved.map_err(wrap)? else {
            return Ok(false);
        };
        new.adopt_state(first, state, settings).map_err(wrap)
    }

    /// Makes the previous good version current again, at once (it is still compiled).
    ///
    /// # Errors
    /// [`Error::NoRollbackTarget`] when no earlier version is kept.
    pub fn rollback(&self) -> Result<u64> {
        let _reloading = lock(&self.inner.reload_lock);
        let target =
            lock(&self.inner.history)
                .pop_back()
                .ok_or_else(|| Error::NoRollbackTarget {
                    plugin: self.name().to_owned(),
                })?;
        let to = target.number;
        let hash = target.hash();
        let from = self.make_current(target);
        tracing::info!(
            plugin = self.name(),
            from = from.number,
            to,
            "plugin rolled back"
        );
        self.emit(ReloadEvent::RolledBack {
            plugin: self.name().to_owned(),
            from: from.number,
            to,
            hash,
        });
        Ok(to)
    }

    /// Numbers of the earlier versions kept for rollback, oldest first.
    pub fn kept_versions(&self) -> Vec<u64> {
        lock(&self.inner.history)
            .iter()
            .map(|version| version.number)
            .collect()
    }
}
