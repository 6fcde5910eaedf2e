//! The idle instances of one plugin, shared by its versions.
//!
//! A call takes an idle instance, checks that it belongs to the version that serves calls now,
//! calls it, and puts it back. The pool is sharded so that threads calling at the same time do
//! not contend: each thread has a home shard (its own cache line) whose one-instance fast slot is
//! taken and refilled with a single atomic swap each; more idle instances wait in the shard's
//! list. The shared counters are touched only when instances are created or dropped, or when a
//! caller must wait because `max_instances` are all busy.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use crossbeam_utils::atomic::AtomicCell;

use crate::config::ResolvedSettings;
use crate::error::Result;
use crate::names::NameKey;
use crate::plugin::version::Version;
use crate::runtime::{Instance, PluginContext};
use crate::sync::lock;

/// An instance with what a call needs beside it: the version it belongs to (its exports), and
/// the plugin's settings as of its last call. Holding the version here means a call reads
/// neither the current version nor the settings through a shared pointer.
pub(crate) struct Pooled {
    /// The number of `version`, kept inline: a call compares it without a pointer chase.
    pub(crate) number: u64,
    /// The settings generation `settings` belongs to; see [`Pooled::refresh`].
    generation: u64,
    /// `settings` allow every entry (no allowlist), and keep instances between calls: read on
    /// every call, so kept beside the numbers above rather than behind the settings' pointer.
    pub(crate) all_entries: bool,
    pub(crate) reuse: bool,
    /// The entry this instance was last called with, and its index: a call of the same entry
    /// again (the usual case) compares one key instead of looking the name up.
    last_entry: Option<(NameKey, usize)>,
    pub(crate) instance: Instance,
    pub(crate) version: Arc<Version>,
    pub(crate) settings: Arc<ResolvedSettings>,
}

impl Pooled {
    /// Wraps an instance of `version`, counted in its live instances already.
    pub(crate) fn new(
        mut instance: Instance,
        version: Arc<Version>,
        generation: u64,
        settings: Arc<ResolvedSettings>,
    ) -> Box<Self> {
        instance.adopt_settings(&settings);
        Box::new(Self {
            number: version.number,
            all_entries: settings.entries.is_none(),
            last_entry: None,
            reuse: settings.reuse_instances,
            instance,
            version,
            settings,
            generation,
        })
    }

    /// Picks up settings replaced since this instance's last call (`context` is its
    /// plugin's): one comparison when nothing changed. Returns `false` when the new settings
    /// change the grants its WASI context was built with: it must not serve another call.
    #[inline]
    #[must_use]
    pub(crate) fn refresh(&mut self, context: &PluginContext) -> bool {
        let generation = context.settings_generation.load(Ordering::Acquire);
        if generation != self.generation {
            return self.adopt(context, generation);
        }
        true
    }

    #[cold]
    fn adopt(&mut self, context: &PluginContext, generation: u64) -> bool {
        let settings = context.settings.load_full();
        if !settings.same_grants(&self.settings) {
            return false;
        }
        self.settings = settings;
        self.generation = generation;
        self.all_entries = self.settings.entries.is_none();
        self.reuse = self.settings.reuse_instances;
        self.instance.adopt_settings(&self.settings);
        true
    }
}

impl Pooled {
    /// The index of entry `name` in this instance's version.
    #[inline]
    pub(crate) fn entry(&mut self, plugin: &str, name: &str) -> Result<usize> {
        let key = NameKey::of(name);
        if let (Some(key), Some((last, index))) = (key, self.last_entry)
            && key == last
        {
            return Ok(index);
        }
        let index = self.version.exports.entry(plugin, name)?;
        self.last_entry = key.map(|key| (key, index));
        Ok(index)
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.version.forget_one();
    }
}

/// Idle instances of one shard: a fast slot, and the rest behind a lock.
struct Shard {
    fast: AtomicCell<Option<Box<Pooled>>>,
    #[allow(
        clippy::vec_box,
        reason = "instances move between the fast slot and here as boxes, never by value"
    )]
    rest: Mutex<Vec<Box<Pooled>>>,
}

/// The idle instances of a plugin, all versions together (see the module docs).
pub(crate) struct Pool {
    shards: Box<[CachePadded<Shard>]>,
    waiters: AtomicUsize,
    wait_lock: Mutex<()>,
    available: Condvar,
    /// What async callers wait on (counted in `waiters` too).
    async_available: tokio::sync::Notify,
}

/// How a wait for an instance ended.
pub(crate) enum Waited {
    /// An idle instance was found.
    Took(Box<Pooled>),
    /// Woken (or the wait's bound passed): look again.
    Woken,
    /// `max_waiting` callers wait already: the queue is full.
    QueueFull,
}

/// An async caller counted in `waiters` while its wait future lives: dropping the future (a
/// cancelled call) takes the count back.
struct Registered<'a>(&'a AtomicUsize);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static HOME_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard among `shards` (a power of two: a mask, not a division, on every call).
#[inline]
fn home_shard(shards: usize) -> usize {
    HOME_SHARD.with(|home| {
        if home.get() == usize::MAX {
            home.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed));
        }
        home.get() & (shards - 1)
    })
}

#[cold]
fn push_rest(shard: &Shard, pooled: Box<Pooled>) {
    lock(&shard.rest).push(pooled);
}

impl Pool {
    pub(crate) fn new() -> Self {
        // Asked once per process: `available_parallelism` reads the cgroup files on every call
        // (tens of microseconds, a fifth of making a plugin from held code).
        static SHARDS: OnceLock<usize> = OnceLock::new();
        let shards = *SHARDS.get_or_init(|| {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .next_power_of_two()
        });
        debug_assert!(AtomicCell::<Option<Box<Pooled>>>::is_lock_free());
        Self {
            shards: (0..shards)
                .map(|_| {
                    CachePadded::new(Shard {
                        fast: AtomicCell::new(None),
                        rest: Mutex::new(Vec::new()),
                    })
                })
                .collect(),
            waiters: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            available: Condvar::new(),
            async_available: tokio::sync::Notify::new(),
        }
    }

    /// An idle instance from this thread's shard, else from any shard not busy right now.
    #[inline]
    pub(crate) fn take_idle(&self) -> Option<Box<Pooled>> {
        let shard = &self.shards[home_shard(self.shards.len())];
        match shard.fast.take() {
            Some(pooled) => Some(pooled),
            None => self.take_idle_slow(),
        }
    }

    #[cold]
    fn take_idle_slow(&self) -> Option<Box<Pooled>> {
        let count = self.shards.len();
        let home = home_shard(count);
        let shard = &self.shards[home];
        if let Some(pooled) = lock(&shard.rest).pop() {
            return Some(pooled);
        }
        (1..count).find_map(|offset| {
            let shard = &self.shards[(home + offset) & (count - 1)];
            shard
                .fast
                .take()
                .or_else(|| shard.rest.try_lock().ok().and_then(|mut rest| rest.pop()))
        })
    }

    /// Makes `pooled` idle in this thread's shard and wakes a caller waiting for one.
    #[inline]
    pub(crate) fn put_back(&self, pooled: Box<Pooled>) {
        let shard = &self.shards[home_shard(self.shards.len())];
        if let Some(displaced) = shard.fast.swap(Some(pooled)) {
            push_rest(shard, displaced);
        }
        self.wake_one();
    }

    /// Drops an instance (its version's live count goes down) and wakes a caller waiting for
    /// room to create one.
    pub(crate) fn discard(&self, pooled: Box<Pooled>) {
        drop(pooled);
        self.wake_one();
    }

    /// Drops every idle instance that `keep` refuses.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&Pooled) -> bool) {
        let mut dropped = Vec::new();
        for shard in self.shards.iter() {
            let mut rest = lock(&shard.rest);
            if let Some(fast) = shard.fast.take() {
                rest.push(fast);
            }
            let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut *rest)
                .into_iter()
                .partition(|p| keep(p));
            *rest = kept;
            dropped.extend(gone);
        }
        // Dropped outside the shard locks: dropping an instance frees its memory.
        drop(dropped);
        self.wake_one();
    }

    /// Calls `visit` on each idle instance (those in a call are not visited).
    pub(crate) fn for_each_idle(&self, mut visit: impl FnMut(&Pooled)) {
        for shard in self.shards.iter() {
            let mut rest = lock(&shard.rest);
            if let Some(fast) = shard.fast.take() {
                rest.push(fast);
            }
            rest.iter().for_each(|pooled| visit(pooled));
        }
    }

    /// Waits for an instance to be released while `busy` holds (checked under the wait lock,
    /// after registering as a waiter, so a release in between is not missed). Returns the idle
    /// instance found, if any.
    pub(crate) fn wait(
        &self,
        busy: impl Fn() -> bool,
        at_most: Duration,
        max_waiting: usize,
    ) -> Waited {
        let waiting = lock(&self.wait_lock);
        if self.waiters.fetch_add(1, Ordering::SeqCst) >= max_waiting {
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            return Waited::QueueFull;
        }
        let idle = self.take_idle();
        let waiting = if idle.is_none() && busy() {
            // The timeout only bounds a wake-up missed across a version swap; releases wake
            // waiters directly.
            self.available
                .wait_timeout(waiting, at_most.min(Duration::from_millis(100)))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poison| poison.into_inner().0)
        } else {
            waiting
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        drop(waiting);
        idle.map_or(Waited::Woken, Waited::Took)
    }

    /// [`Pool::wait`] for async callers: the task waits, no thread is parked. Cancellation-safe:
    /// a dropped wait leaves no count behind and passes on a wake-up it was given.
    pub(crate) async fn wait_async(
        &self,
        busy: impl Fn() -> bool,
        at_most: Duration,
        max_waiting: usize,
    ) -> Waited {
        let mut notified = std::pin::pin!(self.async_available.notified());
        // Registered before the checks below, so a release after them wakes this wait.
        notified.as_mut().enable();
        let before = self.waiters.fetch_add(1, Ordering::SeqCst);
        let _registered = Registered(&self.waiters);
        if before >= max_waiting {
            return Waited::QueueFull;
        }
        if let Some(idle) = self.take_idle() {
            return Waited::Took(idle);
        }
        if busy() {
            // As in `wait`, the timeout only bounds a wake-up missed across a version swap.
            let bound = at_most.min(Duration::from_millis(100));
            let _ = tokio::time::timeout(bound, notified).await;
        }
        Waited::Woken
    }

    /// Wakes a caller waiting for an instance, if there is one: no syscall otherwise.
    #[inline]
    pub(crate) fn wake_one(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify_one();
        }
    }

    #[cold]
    fn notify_one(&self) {
        let _waiting = lock(&self.wait_lock);
        self.available.notify_one();
        self.async_available.notify_one();
    }
}
