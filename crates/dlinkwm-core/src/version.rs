//! One loaded, validated version of a plugin and its bounded pool of instances.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::config::ResolvedSettings;
use crate::engine::{CompiledModule, ContentHash, Engine};
use crate::error::{Error, Result};
use crate::exports::{ExportTable, PluginKind};
use crate::instance::{Instance, PluginContext, StoreState};

/// A compiled, validated plugin version. Calls hold an `Arc` to the version they started on, so
/// a version lives until its last call ends.
pub(crate) struct Version {
    pub(crate) number: u64,
    pub(crate) module: Arc<CompiledModule>,
    pub(crate) exports: ExportTable,
    pre: wasmtime::InstancePre<StoreState>,
    engine: Engine,
    context: Arc<PluginContext>,
    /// State handed over from the previous version; every instance of this version starts from it.
    handover: Option<Arc<[u8]>>,
    pool: Pool,
    pub(crate) loaded_at: SystemTime,
    pub(crate) load_time: Duration,
}

struct Pool {
    state: Mutex<PoolState>,
    available: Condvar,
}

struct PoolState {
    idle: Vec<Instance>,
    live: usize,
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
    ) -> Result<(Self, Instance)> {
        let started = std::time::Instant::now();
        let plugin = &*context.name;
        let module = engine.module(plugin, bytes)?;
        let exports = ExportTable::new(plugin, &module.module)?;
        let pre = engine
            .inner
            .linker
            .instantiate_pre(&module.module)
            .map_err(|error| Error::Instantiate {
                plugin: plugin.to_owned(),
                reason: format!("{error:#}"),
            })?;
        let mut first = Instance::new(engine, &pre, &exports, context, number)?;
        if exports.kind == PluginKind::Abi {
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
            pool: Pool {
                state: Mutex::new(PoolState {
                    idle: Vec::new(),
                    live: 1,
                }),
                available: Condvar::new(),
            },
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
        self.lock().idle.push(first);
    }

    pub(crate) fn hash(&self) -> ContentHash {
        self.module.hash
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.pool
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// An idle instance, a new one while fewer than `max_instances` are alive, or the next one
    /// released.
    pub(crate) fn acquire(&self, settings: &ResolvedSettings) -> Result<Instance> {
        let mut pool = self.lock();
        loop {
            if let Some(instance) = pool.idle.pop() {
                return Ok(instance);
            }
            if pool.live < settings.max_instances {
                pool.live += 1;
                drop(pool);
                return self.instantiate(settings).inspect_err(|_| {
                    self.lock().live -= 1;
                    self.pool.available.notify_one();
                });
            }
            pool = self
                .pool
                .available
                .wait(pool)
                .unwrap_or_else(|poison| poison.into_inner());
        }
    }

    fn instantiate(&self, settings: &ResolvedSettings) -> Result<Instance> {
        let mut instance = Instance::new(
            &self.engine,
            &self.pre,
            &self.exports,
            &self.context,
            self.number,
        )?;
        if let Some(state) = &self.handover {
            instance.restore_state(&self.context.name, state, settings)?;
        }
        Ok(instance)
    }

    /// Returns an instance after a call. A poisoned instance (after a trap or a limit) or one
    /// not meant for reuse is dropped, and the next call gets a fresh one.
    pub(crate) fn release(&self, instance: Instance, keep: bool) {
        let mut pool = self.lock();
        if keep {
            pool.idle.push(instance);
        } else {
            pool.live -= 1;
            drop(pool);
            drop(instance);
        }
        self.pool.available.notify_one();
    }

    /// Drops the idle instances (their memory) of a version that no longer serves calls.
    pub(crate) fn drain(&self) {
        let idle = {
            let mut pool = self.lock();
            let idle = std::mem::take(&mut pool.idle);
            pool.live -= idle.len();
            idle
        };
        drop(idle);
    }

    /// Instances alive (idle or in a call).
    pub(crate) fn live_instances(&self) -> usize {
        self.lock().live
    }
}
