//! The pool's policy: which version serves a plugin's calls, and which instance a call gets.
//! `pool` keeps idle instances; this decides. A call takes an idle instance of the current
//! version (one atomic swap and one comparison), else makes one while fewer than
//! `max_instances` are alive, else waits up to `queue_timeout`; it gives the instance back
//! unless it faulted, belongs to a version that stopped serving or is not to be reused. Making a
//! version current drops the idle instances of the one it replaces.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::{ArcSwap, Guard};

use crate::error::{Error, Fast, Result};
use crate::plugin::pool::{Pool, Pooled, Waited};
use crate::plugin::version::Version;
use crate::runtime::{Instance, PluginContext, PluginKind};

/// A place reserved for an instance being made: given back if the making fails or its future is
/// dropped.
struct Reserved<'a>(&'a Version, &'a Pool);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0.forget_one();
        // The place is free again: a caller waiting for one may make an instance now.
        self.1.wake_one();
    }
}

/// A plugin's current version and its instances: what its calls are served from.
pub(crate) struct Serving {
    pub(crate) context: Arc<PluginContext>,
    current: ArcSwap<Version>,
    /// The number of `current`, which calls compare their instance's version with: one plain
    /// load instead of a shared-pointer read.
    current_number: AtomicU64,
    /// Whether `current` is an Extism plugin (typed calls encode for it), read with one load.
    current_extism: AtomicBool,
    /// Idle instances, of the current version (instances of a version that stopped serving
    /// are dropped when seen).
    pub(crate) pool: Pool,
}

impl Serving {
    /// `version` serving, with `first`, its first instance, idle in the pool.
    pub(crate) fn new(context: Arc<PluginContext>, version: Arc<Version>, first: Instance) -> Self {
        let pool = Pool::new();
        pool.put_back(Pooled::new(
            first,
            version.clone(),
            0,
            context.settings.load_full(),
        ));
        Self {
            context,
            current_number: AtomicU64::new(version.number),
            current_extism: AtomicBool::new(version.exports.kind == PluginKind::Extism),
            current: ArcSwap::new(version),
            pool,
        }
    }

    /// The version that serves calls now.
    pub(crate) fn current(&self) -> Guard<Arc<Version>> {
        self.current.load()
    }

    /// [`Serving::current`], as an `Arc` of its own.
    pub(crate) fn current_full(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// The number of the version that serves calls now.
    /// Whether the current version is an Extism plugin.
    #[inline]
    pub(crate) fn current_is_extism(&self) -> bool {
        self.current_extism.load(Ordering::Relaxed)
    }

    pub(crate) fn current_number(&self) -> u64 {
        self.current_number.load(Ordering::Acquire)
    }

    /// Drops an instance whose grants were revoked or changed, and gets one built with the
    /// current grants.
    #[cold]
    pub(crate) fn regranted(&self, retired: Box<Pooled>) -> Fast<Box<Pooled>> {
        self.discard(retired);
        loop {
            let mut pooled = self.acquire()?;
            if pooled.refresh(&self.context) {
                return Ok(pooled);
            }
            self.discard(pooled);
        }
    }

    /// An idle instance of the current version, a new one while fewer than `max_instances` are
    /// alive, or the next one released.
    #[inline(always)]
    pub(crate) fn acquire(&self) -> Fast<Box<Pooled>> {
        if let Some(pooled) = self.pool.take_idle() {
            if pooled.number == self.current_number.load(Ordering::Acquire) {
                return Ok(pooled);
            }
            self.pool.discard(pooled);
        }
        self.acquire_slow().map_err(Box::new)
    }

    #[cold]
    fn acquire_slow(&self) -> Result<Box<Pooled>> {
        let pool = &self.pool;
        let started = Instant::now();
        loop {
            while let Some(pooled) = pool.take_idle() {
                if pooled.number == self.current_number.load(Ordering::Acquire) {
                    return Ok(pooled);
                }
                // An instance of a version that stopped serving while it was idle.
                pool.discard(pooled);
            }
            let version = self.current.load_full();
            let generation = self.context.settings_generation.load(Ordering::Acquire);
            let settings = self.context.settings.load_full();
            if version.reserve(settings.max_instances) {
                let made = crate::runtime::now(&self.context.name, version.instantiate(&settings));
                return match made {
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
                    plugin: self.context.name.to_string(),
                    waited,
                    max_instances: settings.max_instances,
                });
            };
            let busy = || version.live_instances() >= settings.max_instances;
            // A queue of bounded length: past `max_queued_calls`, a call is refused at once.
            match pool.wait(busy, left, settings.max_queued_calls) {
                Waited::Took(pooled)
                    if pooled.number == self.current_number.load(Ordering::Acquire) =>
                {
                    return Ok(pooled);
                }
                Waited::Took(pooled) => pool.discard(pooled),
                Waited::Woken => {}
                Waited::QueueFull => {
                    return Err(Error::Busy {
                        plugin: self.context.name.to_string(),
                        waited,
                        max_instances: settings.max_instances,
                    });
                }
            }
        }
    }

    /// An idle instance of the current version, if one is there now: the fast path of an async
    /// call, which awaits [`Serving::acquire_async`] only without one.
    #[inline]
    pub(crate) fn take_current_idle(&self) -> Option<Box<Pooled>> {
        let pooled = self.pool.take_idle()?;
        if pooled.number == self.current_number.load(Ordering::Acquire) {
            return Some(pooled);
        }
        self.pool.discard(pooled);
        None
    }

    /// [`Serving::acquire`] for async calls: a new instance is made by awaiting, and a full
    /// pool is waited for without parking a thread, up to the queue deadline. Cancellation-safe:
    /// dropping the future gives back any place it reserved.
    pub(crate) async fn acquire_async(&self) -> Result<Box<Pooled>> {
        let pool = &self.pool;
        let started = Instant::now();
        loop {
            while let Some(pooled) = pool.take_idle() {
                if pooled.number == self.current_number.load(Ordering::Acquire) {
                    return Ok(pooled);
                }
                pool.discard(pooled);
            }
            let version = self.current.load_full();
            let generation = self.context.settings_generation.load(Ordering::Acquire);
            let settings = self.context.settings.load_full();
            if version.reserve(settings.max_instances) {
                let reserved = Reserved(&version, pool);
                let instance = version.instantiate(&settings).await?;
                std::mem::forget(reserved);
                return Ok(Pooled::new(instance, version, generation, settings));
            }
            let waited = started.elapsed();
            let Some(left) = settings
                .queue_timeout
                .checked_sub(waited)
                .filter(|left| !left.is_zero())
            else {
                return Err(Error::Busy {
                    plugin: self.context.name.to_string(),
                    waited,
                    max_instances: settings.max_instances,
                });
            };
            let busy = || version.live_instances() >= settings.max_instances;
            // A queue of bounded length: past `max_queued_calls`, a call is refused at once.
            match pool.wait_async(busy, left, settings.max_queued_calls).await {
                Waited::Took(pooled)
                    if pooled.number == self.current_number.load(Ordering::Acquire) =>
                {
                    return Ok(pooled);
                }
                Waited::Took(pooled) => pool.discard(pooled),
                Waited::Woken => {}
                Waited::QueueFull => {
                    return Err(Error::Busy {
                        plugin: self.context.name.to_string(),
                        waited,
                        max_instances: settings.max_instances,
                    });
                }
            }
        }
    }

    /// [`Serving::regranted`] for async calls.
    #[cold]
    pub(crate) async fn regranted_async(&self, retired: Box<Pooled>) -> Result<Box<Pooled>> {
        self.discard(retired);
        loop {
            let mut pooled = self.acquire_async().await?;
            if pooled.refresh(&self.context) {
                return Ok(pooled);
            }
            self.discard(pooled);
        }
    }

    /// Returns an instance after a call. One of a version that no longer serves, after a guest
    /// fault, or not meant for reuse is dropped, and the next call gets a fresh one.
    #[inline(always)]
    pub(crate) fn release(&self, pooled: Box<Pooled>, keep: bool) {
        let number = pooled.number;
        if keep && number == self.current_number.load(Ordering::Acquire) {
            self.pool.put_back(pooled);
            // A swap may have happened between the check and the put, after it dropped the
            // idle instances of the old version: look again, so none is left behind idle.
            if number != self.current_number.load(Ordering::Acquire) {
                self.drop_stale();
            }
        } else {
            self.discard(pooled);
        }
    }

    #[cold]
    pub(crate) fn discard(&self, pooled: Box<Pooled>) {
        self.pool.discard(pooled);
    }

    /// Drops the idle instances (their memory) of versions that no longer serve calls.
    #[cold]
    fn drop_stale(&self) {
        let current = self.current_number.load(Ordering::Acquire);
        self.pool.retain(|pooled| pooled.number == current);
    }

    /// Makes `version` the one that serves calls, drops the idle instances of the one it
    /// replaces and returns that one. Calls that hold an instance of it finish on it.
    pub(crate) fn make_current(&self, version: Arc<Version>) -> Arc<Version> {
        let number = version.number;
        let extism = version.exports.kind == PluginKind::Extism;
        let old = self.current.swap(version);
        self.current_extism.store(extism, Ordering::Release);
        self.current_number.store(number, Ordering::Release);
        self.drop_stale();
        old
    }
}
