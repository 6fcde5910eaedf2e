//! One loaded, validated version of a plugin and its bounded pool of instances.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crossbeam_utils::CachePadded;

use crate::config::ResolvedSettings;
use crate::engine::{Code, CompiledModule, ContentHash, Engine};
use crate::error::{Error, Result};
use crate::exports::{ExportTable, PluginKind};
use crate::instance::{Instance, PluginContext, StoreState};

/// A compiled, validated plugin version. Calls hold an `Arc` to the version they started on, so
/// a version lives until its last call ends.
pub(crate) struct Version {
    pub(crate) number: u64,
    pub(crate) module: Arc<CompiledModule>,
    pub(crate) exports: ExportTable,
    pre: Pre,
    engine: Engine,
    context: Arc<PluginContext>,
    /// State handed over from the previous version; every instance of this version starts from it.
    handover: Option<Arc<[u8]>>,
    pool: Pool,
    pub(crate) loaded_at: SystemTime,
    pub(crate) load_time: Duration,
}

/// How a version makes instances: a core module's `InstancePre`, or a component's.
enum Pre {
    Module(wasmtime::InstancePre<StoreState>),
    Component(crate::component::BindingsPre<StoreState>),
}

/// A bounded pool of instances, sharded so that threads calling at the same time do not contend:
/// each thread has a home shard (its own cache line), takes instances from it first and returns
/// them to it. The shared counters are touched only when instances are created or dropped, or
/// when a caller must wait because `max_instances` are all busy.
struct Pool {
    shards: Box<[Shard]>,
    /// Set when the version stops being current: instances returned to it are dropped rather
    /// than kept (a kept version holds only its compiled code, for rollback).
    retired: AtomicBool,
    live: AtomicUsize,
    waiters: AtomicUsize,
    wait_lock: Mutex<()>,
    available: Condvar,
}

/// Idle instances of one shard, on its own cache line.
type Shard = CachePadded<Mutex<Vec<Box<Instance>>>>;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static HOME_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn home_shard(shards: usize) -> usize {
    HOME_SHARD.with(|home| {
        if home.get() == usize::MAX {
            home.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed));
        }
        home.get() % shards
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Pool {
    fn new(live: usize) -> Self {
        let shards = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .max(1);
        Self {
            shards: (0..shards)
                .map(|_| CachePadded::new(Mutex::new(Vec::new())))
                .collect(),
            retired: AtomicBool::new(false),
            live: AtomicUsize::new(live),
            waiters: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            available: Condvar::new(),
        }
    }

    /// An idle instance from this thread's shard, else from any shard not busy right now.
    fn take_idle(&self) -> Option<Box<Instance>> {
        let count = self.shards.len();
        let home = home_shard(count);
        if let Some(instance) = lock(&self.shards[home]).pop() {
            return Some(instance);
        }
        (1..count).find_map(|offset| {
            let shard = &self.shards[(home + offset) % count];
            shard.try_lock().ok().and_then(|mut idle| idle.pop())
        })
    }

    /// Reserves a place for a new instance if fewer than `max` are alive.
    fn reserve(&self, max: usize) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < max).then_some(live + 1)
            })
            .is_ok()
    }

    fn put_back(&self, instance: Box<Instance>) {
        lock(&self.shards[home_shard(self.shards.len())]).push(instance);
        self.wake_one();
    }

    fn forget_one(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.wake_one();
    }

    /// Wakes a caller waiting for an instance, if there is one: no syscall otherwise.
    fn wake_one(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _waiting = lock(&self.wait_lock);
            self.available.notify_one();
        }
    }
}

impl Version {
    /// Compiles (or reuses) `bytes`, checks the exports the ABI and the configuration require,
    /// instantiates once (running `_initialize`) and checks the declared ABI version. Nothing is
    /// swapped in here: a failure leaves whatever serves now serving.
    pub(crate) fn load(
        engine: &Engine,
        context: &Arc<PluginContext>,
        number: u64,
        bytes: &[u8],
        hash: ContentHash,
    ) -> Result<(Self, Instance)> {
        let started = std::time::Instant::now();
        let plugin = &*context.name;
        let module = engine.module(plugin, bytes, hash)?;
        let instantiate_error = |error: wasmtime::Error| Error::Instantiate {
            plugin: plugin.to_owned(),
            reason: format!("{error:#}"),
        };
        let (pre, exports, mut first) = match &module.code {
            Code::Module(code) => {
                let exports = ExportTable::new(plugin, code)?;
                let pre = engine
                    .inner
                    .linker
                    .instantiate_pre(code)
                    .map_err(instantiate_error)?;
                let first = Instance::new(engine, &pre, &exports, context, number)?;
                (Pre::Module(pre), exports, first)
            }
            Code::Component(code) => {
                let pre = engine
                    .inner
                    .component_linker
                    .instantiate_pre(code)
                    .map_err(instantiate_error)?;
                let pre = crate::component::BindingsPre::new(pre).map_err(|error| {
                    Error::Instantiate {
                        plugin: plugin.to_owned(),
                        reason: format!(
                            "this component does not implement the DlinkWM world \
                             dlinkwm:plugin/plugin@0.1.0 (wit/plugin.wit): {error:#}"
                        ),
                    }
                })?;
                let mut first = Instance::new_component(engine, &pre, context, number)?;
                // The entries come from the component itself, asked once per version.
                let names = first.component_entries(plugin)?;
                (
                    Pre::Component(pre),
                    ExportTable::for_component(names),
                    first,
                )
            }
        };
        if matches!(exports.kind, PluginKind::Abi | PluginKind::Component) {
            let found = first.abi_version(plugin)?;
            if found != dlinkwm_abi::ABI_VERSION {
                return Err(Error::AbiVersionUnsupported {
                    plugin: plugin.to_owned(),
                    found,
                    supported: dlinkwm_abi::ABI_VERSION,
                });
            }
        }
        // Checked after the ABI version: a plugin for another ABI is reported as such, not as
        // missing an entry.
        if let Some(required) = context.settings.load().entries.as_deref() {
            for entry in required {
                exports.entry(plugin, entry)?;
            }
        }
        let version = Self {
            number,
            module,
            exports,
            pre,
            engine: engine.clone(),
            context: context.clone(),
            handover: None,
            pool: Pool::new(1),
            loaded_at: SystemTime::now(),
            load_time: started.elapsed(),
        };
        Ok((version, first))
    }

    /// Gives `first` (this version's first instance) the state saved by the previous version and
    /// remembers it for every later instance.
    pub(crate) fn adopt_state(
        &mut self,
        first: &mut Instance,
        state: Vec<u8>,
        settings: &ResolvedSettings,
    ) -> Result<bool> {
        let accepted = first.restore_state(&self.context.name, &state, settings)?;
        if accepted {
            self.handover = Some(state.into());
        }
        Ok(accepted)
    }

    /// Puts the first instance in the pool, ready for calls.
    pub(crate) fn seed(&self, first: Instance) {
        self.pool.put_back(Box::new(first));
    }

    pub(crate) fn hash(&self) -> ContentHash {
        self.module.hash
    }

    /// An idle instance, a new one while fewer than `max_instances` are alive, or the next one
    /// released.
    pub(crate) fn acquire(&self, settings: &ResolvedSettings) -> Result<Box<Instance>> {
        let pool = &self.pool;
        loop {
            if let Some(instance) = pool.take_idle() {
                return Ok(instance);
            }
            if pool.reserve(settings.max_instances) {
                return self
                    .instantiate(settings)
                    .inspect_err(|_| pool.forget_one());
            }
            // Every instance is busy: wait for one. Registering as a waiter before looking again
            // means a release either is seen by that look or sees the waiter and wakes it.
            let waiting = lock(&pool.wait_lock);
            pool.waiters.fetch_add(1, Ordering::SeqCst);
            let idle = pool.take_idle();
            let waiting =
                if idle.is_none() && pool.live.load(Ordering::Acquire) >= settings.max_instances {
                    pool.available
                        .wait_timeout(waiting, Duration::from_millis(100))
                        .map(|(guard, _)| guard)
                        .unwrap_or_else(|poison| poison.into_inner().0)
                } else {
                    waiting
                };
            pool.waiters.fetch_sub(1, Ordering::SeqCst);
            drop(waiting);
            if let Some(instance) = idle {
                return Ok(instance);
            }
        }
    }

    fn instantiate(&self, settings: &ResolvedSettings) -> Result<Box<Instance>> {
        let mut instance = match &self.pre {
            Pre::Module(pre) => {
                Instance::new(&self.engine, pre, &self.exports, &self.context, self.number)?
            }
            Pre::Component(pre) => {
                Instance::new_component(&self.engine, pre, &self.context, self.number)?
            }
        };
        if let Some(state) = &self.handover {
            instance.restore_state(&self.context.name, state, settings)?;
        }
        Ok(Box::new(instance))
    }

    /// Returns an instance after a call. A poisoned instance (after a trap or a limit) or one
    /// not meant for reuse is dropped, and the next call gets a fresh one.
    pub(crate) fn release(&self, instance: Box<Instance>, keep: bool) {
        if keep && !self.pool.retired.load(Ordering::Acquire) {
            self.pool.put_back(instance);
            // A swap may have retired this version between the check and the push, after
            // `drain` emptied the shards: look again, so no instance is left behind idle.
            if self.pool.retired.load(Ordering::Acquire) {
                self.drain();
            }
        } else {
            drop(instance);
            self.pool.forget_one();
        }
    }

    /// Drops the idle instances (their memory) of a version that no longer serves calls.
    pub(crate) fn drain(&self) {
        self.pool.retired.store(true, Ordering::Release);
        for shard in self.pool.shards.iter() {
            let idle = std::mem::take(&mut *lock(shard));
            self.pool.live.fetch_sub(idle.len(), Ordering::AcqRel);
            drop(idle);
        }
        self.pool.wake_one();
    }

    /// Makes a retired version (a rollback target) keep its instances again.
    pub(crate) fn reinstate(&self) {
        self.pool.retired.store(false, Ordering::Release);
    }

    /// Instances alive (idle or in a call).
    pub(crate) fn live_instances(&self) -> usize {
        self.pool.live.load(Ordering::Acquire)
    }

    /// The linear memory of the idle instances, in bytes.
    pub(crate) fn idle_memory_bytes(&self) -> usize {
        self.pool
            .shards
            .iter()
            .map(|shard| {
                lock(shard)
                    .iter()
                    .map(|instance| instance.memory_bytes())
                    .sum::<usize>()
            })
            .sum()
    }
}
