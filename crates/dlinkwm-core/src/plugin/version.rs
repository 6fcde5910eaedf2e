//! One loaded, validated version of a plugin and its bounded pool of instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{ResolvedSettings, RollbackOn};
use crate::engine::{Code, CompiledModule, ContentHash, Engine, Prepared, Tier};
use crate::error::{Error, Result};
use crate::runtime::{
    AsyncBindingsPre, BindingsPre, ExportTable, Instance, PluginContext, PluginKind, StoreState,
    extism,
};

/// A compiled, validated plugin version. Each of its instances holds an `Arc` to it, so a version
/// lives until its last call ends; its idle instances wait in the plugin's pool.
pub(crate) struct Version {
    pub(crate) number: u64,
    pub(crate) module: Arc<CompiledModule>,
    pub(crate) exports: Arc<ExportTable>,
    pre: Pre,
    engine: Engine,
    context: Arc<PluginContext>,
    /// State handed over from the previous version; every instance of this version starts from it.
    pub(crate) handover: Option<Arc<[u8]>>,
    /// Instances of this version alive (idle or in a call), bounded by `max_instances`.
    live: AtomicUsize,
    pub(crate) loaded_at: SystemTime,
    pub(crate) load_time: Duration,
    /// Set on a version a reload made current while `rollback_on` is set: its faults in the
    /// window after the swap. Shared with the version of the second tier that replaces it (one
    /// probation for the same bytes).
    pub(crate) canary: Option<Arc<Canary>>,
    /// Which compiler's code this version runs.
    pub(crate) tier: Tier,
    /// A first-tier version's bytes, which the second tier compiles again.
    pub(crate) source: Option<Arc<[u8]>>,
    /// Set once the second tier has been started for this (first-tier) version.
    pub(crate) optimizing: AtomicBool,
}

/// A reloaded version on probation (`rollback_on`): how many guest faults it may have, until
/// when, and how many it had.
pub(crate) struct Canary {
    /// The end of the window (`None`: a window too long to represent never ends).
    until: Option<Instant>,
    allowed: u64,
    within: Duration,
    faults: AtomicU64,
    tripped: AtomicBool,
}

impl Canary {
    /// Ends the probation: a version that stops being current (replaced, or rolled back to)
    /// is never rolled back by its old window.
    pub(crate) fn disarm(&self) {
        self.tripped.store(true, Ordering::Release);
    }

    /// Whether the version is still on probation: its window runs and it has not tripped.
    pub(crate) fn on_probation(&self) -> bool {
        !self.tripped.load(Ordering::Acquire)
            && self.until.is_none_or(|until| Instant::now() <= until)
    }

    pub(crate) fn new(rule: RollbackOn) -> Self {
        Self {
            until: Instant::now().checked_add(rule.within),
            allowed: rule.faults.max(1),
            within: rule.within,
            faults: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
        }
    }

    /// Counts `error` if the guest caused it within the window. Returns the reason to roll back
    /// when this is the fault that reaches the limit (once per version).
    pub(crate) fn fault(&self, error: &Error, tier: Tier) -> Option<String> {
        // Guest faults only: an entry's error value may be the caller's bad input. A timeout
        // of Winch's slower code (the first tier) may not happen on Cranelift's.
        if !error.is_guest_fault()
            || (tier == Tier::Baseline && matches!(error, Error::Timeout { .. }))
            || self.tripped.load(Ordering::Acquire)
        {
            return None;
        }
        if self.until.is_some_and(|until| Instant::now() > until) {
            return None;
        }
        let faults = self.faults.fetch_add(1, Ordering::AcqRel) + 1;
        if faults < self.allowed || self.tripped.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(format!(
            "{faults} guest faults within {:?} of the swap (rollback_on); the last: {error}",
            self.within
        ))
    }
}

/// How a version makes instances: a core module's `InstancePre` (from the sync or the async
/// linker, as the plugin was loaded), or a component's bindings.
enum Pre {
    Module(wasmtime::InstancePre<StoreState>),
    Component(BindingsPre<StoreState>),
    AsyncComponent(AsyncBindingsPre<StoreState>),
}

/// The error of a component that does not implement the world.
#[cold]
fn not_the_world(plugin: &str, error: &wasmtime::Error) -> Error {
    Error::Instantiate {
        plugin: plugin.to_owned(),
        reason: format!(
            "this component does not implement the DlinkWM world \
             dlinkwm:plugin/plugin@0.1.0 (wit/plugin.wit): {error:#}"
        ),
    }
}

/// Compiles (or reuses) `bytes`: on the caller's thread for a sync plugin, on the runtime's
/// blocking threads for an async one (Cranelift never runs on an executor thread).
async fn compile(
    engine: &Engine,
    context: &PluginContext,
    bytes: &[u8],
    hash: ContentHash,
) -> Result<Arc<CompiledModule>> {
    let Some(asynchronous) = &context.asynchronous else {
        return engine.module(&context.name, bytes, hash);
    };
    if let Some(module) = engine.cached(&hash) {
        return Ok(module);
    }
    let (engine, name, bytes) = (engine.clone(), context.name.clone(), bytes.to_vec());
    asynchronous
        .runtime
        .spawn_blocking(move || engine.module(&name, &bytes, hash))
        .await
        .unwrap_or_else(|joined| {
            Err(Error::Engine {
                reason: format!(
                    "the compile thread of plugin `{}` failed: {joined}",
                    context.name
                ),
            })
        })
}

/// Warns of an Extism plugin's host functions the host does not register: the plugin loads
/// (its other functions work, as under `dlinkwm call`), and a call of one of them fails with
/// the method's error.
fn check_host_functions(
    plugin: &str,
    code: &wasmtime::Module,
    context: &PluginContext,
) -> Result<()> {
    for (namespace, name, _) in extism::host_functions(plugin, code)? {
        if context.host.provides(&name) == Some(false) {
            tracing::warn!(
                plugin,
                function = %format_args!("{namespace}.{name}"),
                "the Extism plugin imports a host function the host does not register; calls that use it fail"
            );
        }
    }
    Ok(())
}

impl Version {
    /// Compiles (or reuses) `bytes`, checks the exports the ABI and the configuration require,
    /// instantiates once (running `_initialize`) and checks the declared ABI version. Nothing is
    /// swapped in here: a failure leaves whatever serves now serving.
    pub(crate) async fn load(
        engine: &Engine,
        context: &Arc<PluginContext>,
        number: u64,
        bytes: &[u8],
        hash: ContentHash,
    ) -> Result<(Self, Instance)> {
        let started = std::time::Instant::now();
        let plugin = &*context.name;
        let module = compile(engine, context, bytes, hash).await?;
        match module.needs() {
            Ok(needs) => {
                let settings = context.settings.load();
                crate::engine::needs::check(plugin, needs, &settings, &*context.host)?;
            }
            Err(reason) => {
                return Err(Error::InvalidModule {
                    plugin: plugin.to_owned(),
                    reason: reason.clone(),
                });
            }
        }
        let instantiate_error = |error: wasmtime::Error| Error::Instantiate {
            plugin: plugin.to_owned(),
            reason: format!("{error:#}"),
        };
        let asynchronous = context.asynchronous.is_some();
        let (wasmtime, ticks) = (engine.wasmtime(), &engine.inner.ticks);
        let (pre, exports, mut first) = match &module.code {
            Code::Module(code) => {
                let Prepared { exports, pre } = module.prepared(asynchronous, || {
                    let exports = Arc::new(ExportTable::new(plugin, code)?);
                    let linker = if asynchronous {
                        &engine.inner.linker_async
                    } else {
                        &engine.inner.linker
                    };
                    let pre = if exports.kind == PluginKind::Extism {
                        // An Extism plugin's host functions are linked by the names it
                        // imports, on a copy of the engine's linker.
                        let functions = extism::host_functions(plugin, code)?;
                        let mut linker = linker.clone();
                        extism::define_host_functions(&mut linker, functions, asynchronous)
                            .map_err(instantiate_error)?;
                        linker.instantiate_pre(code)
                    } else {
                        linker.instantiate_pre(code)
                    };
                    let pre = pre.map_err(instantiate_error)?;
                    Ok::<_, Error>(Prepared { exports, pre })
                })?;
                if exports.kind == PluginKind::Extism {
                    check_host_functions(plugin, code, context)?;
                }
                let first = if asynchronous {
                    Instance::new_async(wasmtime, ticks, &pre, &exports, context, number).await?
                } else {
                    Instance::new(wasmtime, ticks, &pre, &exports, context, number)?
                };
                (Pre::Module(pre), exports, first)
            }
            Code::Component(code) if asynchronous => {
                let pre = engine
                    .inner
                    .component_linker_async
                    .instantiate_pre(code)
                    .map_err(instantiate_error)?;
                let pre = AsyncBindingsPre::new(pre).map_err(|e| not_the_world(plugin, &e))?;
                let mut first =
                    Instance::new_component_async(wasmtime, ticks, &pre, context, number).await?;
                let names = first.component_entries(plugin).await?;
                (
                    Pre::AsyncComponent(pre),
                    Arc::new(ExportTable::for_component(names)),
                    first,
                )
            }
            Code::Component(code) => {
                let pre = engine
                    .inner
                    .component_linker
                    .instantiate_pre(code)
                    .map_err(instantiate_error)?;
                let pre = BindingsPre::new(pre).map_err(|e| not_the_world(plugin, &e))?;
                let mut first = Instance::new_component(wasmtime, ticks, &pre, context, number)?;
                // The entries come from the component itself, asked once per version.
                let names = first.component_entries(plugin).await?;
                (
                    Pre::Component(pre),
                    Arc::new(ExportTable::for_component(names)),
                    first,
                )
            }
        };
        if matches!(exports.kind, PluginKind::Abi | PluginKind::Component) {
            let found = first.abi_version(plugin).await?;
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

        // The compiled code keeps small plugins' bytes already: shared, not copied again.
        let source = (engine.tier() == Tier::Baseline)
            .then(|| module.bytes.clone().unwrap_or_else(|| Arc::from(bytes)));
        let version = Self {
            number,
            module,
            exports,
            pre,
            engine: engine.clone(),
            context: context.clone(),
            handover: None,
            live: AtomicUsize::new(1),
            loaded_at: SystemTime::now(),
            load_time: started.elapsed(),
            canary: None,
            tier: engine.tier(),
            source,
            optimizing: AtomicBool::new(false),
        };
        // On an instance of its own, dropped after: no call ever sees what the smoke call did.
        let settings = context.settings.load_full();
        if let Some(smoke) = &settings.smoke {
            let smoked = async {
                let mut probe = version.instantiate(&settings).await?;
                probe
                    .smoke(plugin, &version.exports, smoke, &settings)
                    .await
            };
            smoked.await.map_err(|error| Error::SmokeFailed {
                plugin: plugin.to_owned(),
                entry: smoke.entry.clone(),
                source: Box::new(error),
            })?;
        }
        Ok((version, first))
    }

    /// Gives `first` (this version's first instance) the state saved by the previous version and
    /// remembers it for every later instance.
    pub(crate) async fn adopt_state(
        &mut self,
        first: &mut Instance,
        state: Vec<u8>,
        settings: &ResolvedSettings,
    ) -> Result<bool> {
        let accepted = first
            .restore_state(&self.context.name, &state, settings)
            .await?;
        if accepted {
            self.handover = Some(state.into());
        }
        Ok(accepted)
    }

    pub(crate) fn hash(&self) -> ContentHash {
        self.module.hash
    }

    /// Reserves a place for a new instance if fewer than `max` are alive.
    pub(crate) fn reserve(&self, max: usize) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < max).then_some(live + 1)
            })
            .is_ok()
    }

    /// Gives back a place: an instance was dropped, or reserved and never made.
    pub(crate) fn forget_one(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// A new instance, in a place already reserved, with the state handed over to this version:
    /// made synchronously for a sync plugin, awaited for an async one.
    pub(crate) async fn instantiate(&self, settings: &ResolvedSettings) -> Result<Instance> {
        let (wasmtime, ticks) = (self.engine.wasmtime(), &self.engine.inner.ticks);
        let (context, number) = (&self.context, self.number);
        let mut instance = match &self.pre {
            Pre::Module(pre) if context.asynchronous.is_some() => {
                Instance::new_async(wasmtime, ticks, pre, &self.exports, context, number).await?
            }
            Pre::Module(pre) => {
                Instance::new(wasmtime, ticks, pre, &self.exports, context, number)?
            }
            Pre::Component(pre) => Instance::new_component(wasmtime, ticks, pre, context, number)?,
            Pre::AsyncComponent(pre) => {
                Instance::new_component_async(wasmtime, ticks, pre, context, number).await?
            }
        };
        if let Some(state) = &self.handover {
            instance
                .restore_state(&self.context.name, state, settings)
                .await?;
        }
        Ok(instance)
    }

    /// Instances alive (idle or in a call).
    pub(crate) fn live_instances(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}
