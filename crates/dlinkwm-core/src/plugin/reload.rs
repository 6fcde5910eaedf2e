//! The reload and rollback path. A new version is compiled, instantiated, initialised,
//! version-checked and given the current version's state off the call path, then swapped in with
//! one atomic store; a refusal at any step leaves the current version serving and is reported as
//! an event. Earlier good versions are kept for rollback. Reloads asked for by the file watcher
//! run on a thread of their own, coalesced, and do not report the same refused file twice.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::ResolvedSettings;
use crate::engine::{ContentHash, Engine};
use crate::error::{Error, Result};
use crate::plugin::events::{EventBus, ReloadEvent};
use crate::plugin::held::{InCall, reentrant};
use crate::plugin::policy::Serving;
use crate::plugin::pool::Pooled;
use crate::plugin::version::{Canary, Version};
use crate::runtime::{Instance, PluginKind};
use crate::sync::lock;

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

/// How long a watched file's reader waits, each time, for an empty file to be written: a writer
/// that truncates and then writes (`std::fs::write`, most editors) may be descheduled between
/// the two for longer than the settle window when the machine is busy. 150 ms in all; a file
/// still empty after them is taken as it is.
const EMPTY_FILE_WAITS_MS: [u64; 4] = [10, 20, 40, 80];

/// Waits (at most [`EMPTY_FILE_WAITS_MS`]) while the file at `path` is there and empty: a plugin
/// or configuration file caught between its writer's truncation and its write.
pub(crate) fn wait_while_empty(path: &Path) {
    for &wait in &EMPTY_FILE_WAITS_MS {
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() == 0 => {
                std::thread::sleep(std::time::Duration::from_millis(wait));
            }
            _ => return,
        }
    }
}

/// Reads a file that a writer may still be writing: an empty file is waited for a little
/// ([`wait_while_empty`]), and if its size or modification time changes while it is read, it
/// is read again (a few times), so a reload never compiles half a file when the writer is
/// merely slow.
fn read_settled(path: &Path, max: usize) -> Result<Vec<u8>> {
    wait_while_empty(path);
    read_stable(path, max)
}

/// [`read_settled`]'s reads: again while the size or time changes under the read.
fn read_stable(path: &Path, max: usize) -> Result<Vec<u8>> {
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

/// Reads the plugin file at `path`, at most `max` bytes of it: a file over the engine's
/// `max_module_bytes` is refused without being read whole.
pub(crate) fn read_file(path: &Path, max: usize) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source: Arc::new(source),
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    // Sized up front (capped by the limit, fallibly): growing the buffer while reading copies it
    // again at every doubling.
    if let Ok(meta) = file.metadata() {
        let expected = meta.len().saturating_add(1).min(limit);
        let _ = bytes.try_reserve_exact(usize::try_from(expected).unwrap_or(0));
    }
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

/// A plugin's reload state: its file, the versions kept for rollback, the lock that serialises
/// reloads and rollbacks, its events, and the watcher's requests.
pub(crate) struct Reloads {
    path: Option<PathBuf>,
    /// Earlier good versions, newest last, for rollback.
    history: Mutex<VecDeque<Arc<Version>>>,
    /// Serialises reloads and rollbacks; calls never take it. An async lock: an async plugin's
    /// reload holds it across awaits, and a waiting `reload_async` parks no thread.
    reload_lock: tokio::sync::Mutex<()>,
    next_number: AtomicU64,
    pub(crate) events: EventBus,
    /// Background reloads asked for: 0 none, 1 one running, 2 one running and another asked
    /// for while it ran (any number of requests meanwhile coalesce into that one).
    reload_requests: AtomicU8,
    /// The content hash and settings generation of the last file the watcher saw refused.
    last_refused: Mutex<Option<(ContentHash, u64)>>,
}

impl Reloads {
    /// The reload state of a plugin loaded from `path` (or from bytes), at version 1.
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            history: Mutex::new(VecDeque::new()),
            reload_lock: tokio::sync::Mutex::const_new(()),
            next_number: AtomicU64::new(2),
            events: EventBus::new(),
            reload_requests: AtomicU8::new(0),
            last_refused: Mutex::new(None),
        }
    }

    /// The file the plugin was loaded from.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Re-reads the plugin's file and swaps it in if it is valid and different (see
    /// `Plugin::reload`). `id` identifies the plugin for the re-entrancy check.
    pub(crate) async fn reload(
        &self,
        engine: &Engine,
        serving: &Serving,
        id: usize,
    ) -> Result<ReloadOutcome> {
        let Some(path) = self.path.clone() else {
            return Ok(ReloadOutcome::Unchanged);
        };
        let max = engine.options().max_module_bytes;
        // Hashed once: for the unchanged check and as the compiled-code cache key.
        let hasher = engine.clone();
        let read = move |path: &Path| {
            read_settled(path, max).map(|bytes| {
                let hash = hasher.content_hash(&bytes);
                (bytes, hash)
            })
        };
        let read = match &serving.context.asynchronous {
            // An async plugin's file is read and hashed off the executor.
            Some(asynchronous) => {
                let path = path.clone();
                asynchronous
                    .runtime
                    .spawn_blocking(move || read(&path))
                    .await
                    .unwrap_or_else(|joined| {
                        Err(Error::Engine {
                            reason: format!("the thread reading a plugin file failed: {joined}"),
                        })
                    })
            }
            None => read(&path),
        };
        let result = match read {
            Ok((bytes, hash)) => self.swap_in(engine, serving, id, &bytes, hash, false).await,
            Err(error) => Err(error),
        };
        self.report(serving, result, Some(path))
    }

    /// Waits until the plugin's file has not changed for `settle`, the watcher's `SETTLE_TIME`
    /// (at most a second: a file written without pause is read as it is then).
    fn wait_until_quiet(&self, settle: Duration) {
        let Some(path) = &self.path else {
            return;
        };
        let stamp = || {
            std::fs::metadata(path)
                .ok()
                .map(|meta| (meta.len(), meta.modified().ok()))
        };
        let mut last = stamp();
        for _ in 0..25 {
            std::thread::sleep(settle);
            let now = stamp();
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// [`Reloads::reload`] for the file watcher: a file whose bytes were just refused, under
    /// the same settings, is not compiled and reported again (one write often raises several
    /// file events; they must not turn into a stream of identical refusals).
    fn reload_watched(&self, engine: &Engine, serving: &Serving, id: usize) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let name: &str = &serving.context.name;
        let max = engine.options().max_module_bytes;
        let stamp = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|meta| (meta.len(), meta.modified().ok()))
        };
        let before = stamp(&path);
        let bytes = match read_settled(&path, max) {
            Ok(bytes) => bytes,
            // Removed between the event that asked for this reload and the read: no refusal
            // to report (the watcher reports the removal; the loaded version keeps serving).
            Err(error) if error.is_file_gone() => {
                tracing::debug!(plugin = name, file = %path.display(), "file removed before it was read");
                return;
            }
            Err(error) => {
                let _ = self.report(serving, Err(error), Some(path));
                return;
            }
        };
        let hash = engine.content_hash(&bytes);
        let generation = serving.context.settings_generation.load(Ordering::Acquire);
        if *lock(&self.last_refused) == Some((hash, generation)) {
            tracing::debug!(plugin = name, %hash, "file unchanged since it was refused");
            return;
        }
        let result = crate::runtime::block_on(
            &serving.context,
            self.swap_in(engine, serving, id, &bytes, hash, true),
        );
        if result.is_err() && stamp(&path) != before {
            // Refused bytes of a file that has changed since: a write in progress (a
            // truncation, then the new content). Its own file event reloads it again.
            tracing::debug!(plugin = name, %hash, "file changed while it was being loaded");
            return;
        }
        // Only a refusal the bytes themselves cause is remembered: a busy pool or a failed
        // hand-over may pass, and the same bytes must then be tried again.
        let refused_for_good = result.as_ref().is_err_and(caused_by_bytes);
        *lock(&self.last_refused) = refused_for_good.then_some((hash, generation));
        let _ = self.report(serving, result, Some(path));
    }

    /// Counts a request for a background reload. Returns whether the caller is to start the
    /// reload thread: `false` when one runs already (it reloads once more after its current
    /// reload, however many requests arrive meanwhile).
    pub(crate) fn request_background(&self) -> bool {
        let (Ok(before) | Err(before)) =
            self.reload_requests
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                    Some((now + 1).min(2))
                });
        before == 0
    }

    /// The reload thread: reloads the file until no request is left. `settle` is the watcher's
    /// quiet window. A panic in a reload (a host method's, during state hand-over) is logged and
    /// the requests are still served, so the plugin never stops following its file.
    pub(crate) fn run_requested(
        &self,
        engine: &Engine,
        serving: &Serving,
        id: usize,
        settle: Duration,
    ) {
        loop {
            let reloaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.reload_watched(engine, serving, id);
            }));
            if reloaded.is_err() {
                tracing::error!(
                    plugin = &*serving.context.name,
                    "a reload panicked; the current version keeps serving"
                );
            }
            if self.reload_requests.fetch_sub(1, Ordering::AcqRel) == 1 {
                break;
            }
            // Asked again while it ran: the file changed after it was read. The request came
            // from a settled change, but the file may be in the middle of yet another write
            // now; like the watcher, act once it has been quiet for a settle window.
            self.wait_until_quiet(settle);
        }
    }

    /// Swaps in `bytes` as the new version if they are valid and different.
    pub(crate) async fn reload_from_bytes(
        &self,
        engine: &Engine,
        serving: &Serving,
        id: usize,
        bytes: &[u8],
    ) -> Result<ReloadOutcome> {
        let result = self
            .swap_in(
                engine,
                serving,
                id,
                bytes,
                engine.content_hash(bytes),
                false,
            )
            .await;
        self.report(serving, result, None)
    }

    fn report(
        &self,
        serving: &Serving,
        result: Result<ReloadOutcome>,
        path: Option<PathBuf>,
    ) -> Result<ReloadOutcome> {
        let name: &str = &serving.context.name;
        result.inspect_err(|error| {
            tracing::warn!(plugin = name, %error, "reload refused, the current version keeps serving");
            self.events.emit(ReloadEvent::Failed {
                plugin: name.to_owned(),
                path,
                error: error.clone(),
            });
        })
    }

    /// Loads and validates `bytes` off the call path, hands the state over, then swaps.
    async fn swap_in(
        &self,
        engine: &Engine,
        serving: &Serving,
        id: usize,
        bytes: &[u8],
        hash: ContentHash,
        skip_refused: bool,
    ) -> Result<ReloadOutcome> {
        let started = Instant::now();
        let _reloading = self.reload_lock.lock().await;
        let old = serving.current_full();
        if hash == old.hash() {
            return Ok(ReloadOutcome::Unchanged);
        }
        // Checked again under the lock: an automatic rollback may have refused these bytes
        // while this reload waited for it.
        let generation = serving.context.settings_generation.load(Ordering::Acquire);
        if skip_refused && *lock(&self.last_refused) == Some((hash, generation)) {
            return Ok(ReloadOutcome::Unchanged);
        }
        let name: &str = &serving.context.name;
        // Reloads are serialised by `reload_lock`, so the number is only taken when the new
        // version is swapped in: refused files do not use up version numbers.
        let number = self.next_number.load(Ordering::Relaxed);
        let context = &serving.context;
        let (mut new, mut first) = match engine.baseline_for(&hash) {
            // Tiered: Winch's code serves first; the plugin layer starts Cranelift's after
            // the swap (`Plugin::optimize_in_background`).
            Some(baseline) => match Version::load(&baseline, context, number, bytes, hash).await {
                // Winch refuses some valid modules (tail calls, parts of SIMD), and its slower
                // code may fail a smoke call near a limit: Cranelift's version decides. What
                // the bytes alone cause (needs, ABI version, entries) is the same on both.
                Err(error)
                    if matches!(error, Error::InvalidModule { .. }) || !caused_by_bytes(&error) =>
                {
                    tracing::debug!(plugin = name, %hash, %error, "the first tier failed; loading Cranelift's code");
                    Version::load(engine, context, number, bytes, hash).await?
                }
                loaded => loaded?,
            },
            None => Version::load(engine, context, number, bytes, hash).await?,
        };
        let generation = context.settings_generation.load(Ordering::Acquire);
        let settings = context.settings.load_full();
        let handed_over = hand_over(serving, id, &mut new, &mut first, &settings).await?;
        self.next_number.store(number + 1, Ordering::Relaxed);
        new.canary = settings.rollback_on.map(|rule| Arc::new(Canary::new(rule)));
        let tier = new.tier;
        let new = Arc::new(new);
        // The old version stops taking calls; the calls it is running finish on it.
        serving.make_current(new.clone());
        if let Some(canary) = &old.canary {
            canary.disarm();
        }
        serving
            .pool
            .put_back(Pooled::new(first, new, generation, settings.clone()));
        {
            let mut history = lock(&self.history);
            history.push_back(old.clone());
            while history.len() > settings.keep_versions {
                history.pop_front();
            }
        }
        let elapsed = started.elapsed();
        tracing::info!(plugin = name, version = number, %hash, ?elapsed, %tier, "plugin reloaded");
        self.events.emit(ReloadEvent::Reloaded {
            plugin: name.to_owned(),
            version: number,
            previous: old.number,
            hash,
            elapsed,
            state_handed_over: handed_over,
            tier,
        });
        Ok(ReloadOutcome::Reloaded {
            version: number,
            hash,
        })
    }

    /// The second tier's swap: `baseline` (a first-tier version, whose bytes Cranelift has
    /// compiled by now) is replaced by a version of the same bytes with Cranelift's code, through
    /// the same validation, smoke call and state hand-over as a reload. Nothing happens (`None`)
    /// when another version became current meanwhile. The new version keeps the baseline's
    /// probation, and history is left as it is: a rollback goes to the version before.
    pub(crate) async fn optimize(
        &self,
        engine: &Engine,
        serving: &Serving,
        id: usize,
        baseline: &Arc<Version>,
        started: Instant,
    ) -> Result<Option<u64>> {
        let _reloading = self.reload_lock.lock().await;
        let old = serving.current_full();
        let Some(bytes) = baseline.source.as_deref() else {
            return Ok(None);
        };
        if !Arc::ptr_eq(&old, baseline) {
            // A later reload or a rollback: if this version serves again one day, it may
            // be optimised then.
            baseline.optimizing.store(false, Ordering::Release);
            return Ok(None);
        }
        let (name, context) = (&*serving.context.name, &serving.context);
        let number = self.next_number.load(Ordering::Relaxed);
        let hash = baseline.hash();
        let (mut new, mut first) = Version::load(engine, context, number, bytes, hash).await?;
        let generation = context.settings_generation.load(Ordering::Acquire);
        let settings = context.settings.load_full();
        let mut handed_over = hand_over(serving, id, &mut new, &mut first, &settings).await?;
        if !handed_over && let Some(state) = &old.handover {
            // The first tier took state over but gives none (it restores, never saves): its
            // instances all started from that state, and so do the second tier's.
            handed_over = new
                .adopt_state(&mut first, state.to_vec(), &settings)
                .await
                .map_err(|error| Error::StateHandover {
                    plugin: name.to_owned(),
                    source: Box::new(error),
                })?;
        }
        self.next_number.store(number + 1, Ordering::Relaxed);
        new.canary = old.canary.clone();
        let new = Arc::new(new);
        serving.make_current(new.clone());
        serving
            .pool
            .put_back(Pooled::new(first, new, generation, settings));
        let elapsed = started.elapsed();
        tracing::info!(plugin = name, version = number, previous = old.number, %hash, ?elapsed, "Cranelift's code replaces Winch's");
        self.events.emit(ReloadEvent::Optimized {
            plugin: name.to_owned(),
            version: number,
            previous: old.number,
            hash,
            elapsed,
            state_handed_over: handed_over,
        });
        Ok(Some(number))
    }

    /// Makes the previous good version current again, at once (it is still compiled).
    pub(crate) fn rollback(&self, serving: &Serving) -> Result<u64> {
        let name: &str = &serving.context.name;
        // A reload in progress is waited for, parking this thread; inside a tokio runtime that
        // could be the thread the reload needs, so the caller is sent to `rollback_async`.
        let _reloading = match self.reload_lock.try_lock() {
            Ok(reloading) => reloading,
            Err(_) if tokio::runtime::Handle::try_current().is_ok() => {
                return Err(Error::WrongCallMode {
                    plugin: name.to_owned(),
                    reason: "a reload is in progress: use rollback_async to wait for it from \
                             async code"
                        .to_owned(),
                });
            }
            Err(_) => crate::runtime::wait(self.reload_lock.lock()),
        };
        self.roll_back_locked(serving, None)
    }

    /// [`Reloads::rollback`], waiting for a reload in progress without parking a thread.
    pub(crate) async fn rollback_async(&self, serving: &Serving) -> Result<u64> {
        let _reloading = self.reload_lock.lock().await;
        self.roll_back_locked(serving, None)
    }

    /// The automatic rollback of version `from` (`rollback_on`), on a thread of its own: only if
    /// `from` still serves. Its bytes are then refused as the file's content until different
    /// bytes arrive, so the watcher does not load them again.
    pub(crate) fn roll_back_faulty(&self, serving: &Serving, from: &Version, reason: String) {
        let name: &str = &serving.context.name;
        let _reloading = crate::runtime::wait(self.reload_lock.lock());
        // Only while the same probation runs: `from`, or the second tier's version of the same
        // bytes, which shares its canary.
        let same_probation = match (&serving.current().canary, &from.canary) {
            (Some(now), Some(then)) => Arc::ptr_eq(now, then),
            _ => false,
        };
        if !same_probation {
            return;
        }
        let generation = serving.context.settings_generation.load(Ordering::Acquire);
        match self.roll_back_locked(serving, Some(reason)) {
            Ok(_) => *lock(&self.last_refused) = Some((from.hash(), generation)),
            Err(error) => {
                tracing::warn!(plugin = name, %error, "cannot roll a faulting version back");
            }
        }
    }

    /// Rolls back, with the reload lock held.
    fn roll_back_locked(&self, serving: &Serving, reason: Option<String>) -> Result<u64> {
        let name: &str = &serving.context.name;
        let target = lock(&self.history)
            .pop_back()
            .ok_or_else(|| Error::NoRollbackTarget {
                plugin: name.to_owned(),
            })?;
        let to = target.number;
        let hash = target.hash();
        if let Some(canary) = &target.canary {
            canary.disarm();
        }
        let from = serving.make_current(target);
        match &reason {
            Some(reason) => tracing::warn!(
                plugin = name,
                from = from.number,
                to,
                reason,
                "plugin rolled back by itself"
            ),
            None => tracing::info!(plugin = name, from = from.number, to, "plugin rolled back"),
        }
        self.events.emit(ReloadEvent::RolledBack {
            plugin: name.to_owned(),
            from: from.number,
            to,
            hash,
            reason,
        });
        Ok(to)
    }

    /// Numbers of the earlier versions kept for rollback, oldest first.
    pub(crate) fn kept_versions(&self) -> Vec<u64> {
        lock(&self.history)
            .iter()
            .map(|version| version.number)
            .collect()
    }
}

/// Whether `error` refuses bytes whatever compiles them and whenever they are tried: they are
/// no module, lack an export or entry, are for another ABI, or need what is not granted.
pub(crate) fn caused_by_bytes(error: &Error) -> bool {
    matches!(
        error,
        Error::InvalidModule { .. }
            | Error::ExportMissing { .. }
            | Error::EntryNotFound { .. }
            | Error::AbiVersionUnsupported { .. }
            | Error::NeedsNotGranted { .. }
    )
}

/// Gives the new version the state of the current one (reloads are serialised, so the current
/// version is the one being replaced).
async fn hand_over(
    serving: &Serving,
    id: usize,
    new: &mut Version,
    first: &mut Instance,
    settings: &ResolvedSettings,
) -> Result<bool> {
    let plugin: &str = &serving.context.name;
    if !new.exports.restores_state() || !serving.current().exports.saves_state() {
        return Ok(false);
    }
    // An Extism plugin's vars are not an ABI plugin's state, nor the other way round.
    let kinds = (new.exports.kind, serving.current().exports.kind);
    if (kinds.0 == PluginKind::Extism) != (kinds.1 == PluginKind::Extism) {
        return Ok(false);
    }
    let wrap = |error: Error| Error::StateHandover {
        plugin: plugin.to_owned(),
        source: Box::new(error),
    };
    let mut pooled = if serving.context.asynchronous.is_some() {
        // An async plugin's instance is waited for up to the queue deadline (a reload from
        // inside its own call ends in `Busy` rather than a deadlock).
        let pooled = serving.acquire_async().await.map_err(wrap)?;
        refreshed_async(serving, pooled).await.map_err(wrap)?
    } else {
        // A reload started from inside one of this plugin's own calls (a host method) must not
        // wait for the instance that very call holds.
        let Some(_in_call) = InCall::enter(id) else {
            return Err(wrap(reentrant(plugin, dlinkwm_abi::export::STATE_SAVE)));
        };
        let mut pooled = serving.acquire().map_err(|error| wrap(*error))?;
        if !pooled.refresh(&serving.context) {
            pooled = serving.regranted(pooled).map_err(|error| wrap(*error))?;
        }
        pooled
    };
    let Pooled {
        instance,
        settings: old_settings,
        ..
    } = &mut *pooled;
    let saved = instance.save_state(plugin, old_settings).await;
    let healthy = !matches!(&saved, Err(error) if error.is_guest_fault());
    serving.release(pooled, healthy);
    let Some(state) = saved.map_err(wrap)? else {
        return Ok(false);
    };
    new.adopt_state(first, state, settings).await.map_err(wrap)
}

/// `pooled` with the plugin's current settings, or an instance built with its current grants.
async fn refreshed_async(serving: &Serving, mut pooled: Box<Pooled>) -> Result<Box<Pooled>> {
    if pooled.refresh(&serving.context) {
        Ok(pooled)
    } else {
        serving.regranted_async(pooled).await
    }
}
