//! One instance of a plugin version in its own store: the one type the plugin layer calls,
//! dispatching each call to the core-module path (`core_instance`) or the component path
//! (`component_instance`).

use std::sync::Arc;

use dlinkwm_abi::Format;
use wasmtime::Store;

use crate::config::ResolvedSettings;
use crate::error::{Error, Fast, Result};
use crate::runtime::component::{AsyncBindings, AsyncBindingsPre, Bindings, BindingsPre};
use crate::runtime::component_instance;
use crate::runtime::core_instance::Funcs;
use crate::runtime::deadline::Ticks;
use crate::runtime::exports::ExportTable;
use crate::runtime::store::{PluginContext, StoreState, new_store, prepare};
use crate::runtime::trap::CallSite;

/// A live instance of one plugin version.
pub(crate) struct Instance {
    store: Store<StoreState>,
    calls: Calls,
}

/// How calls reach the instance: a core module's resolved exports, or a component's bindings.
#[allow(
    clippy::large_enum_variant,
    reason = "core calls are the hot path: their exports stay inline, one pointer chase fewer"
)]
enum Calls {
    Core(Funcs),
    Component(Box<Bindings>),
    /// A component called with `call_async` (its bindings await).
    AsyncComponent(Box<AsyncBindings>),
}

/// The error of a sync operation on an instance of an async plugin (which the plugin layer does
/// not start: it checks the plugin's mode first).
#[cold]
fn needs_async(plugin: &str) -> Error {
    Error::WrongCallMode {
        plugin: plugin.to_owned(),
        reason: "it was loaded for async calls (load_async): use the async methods".to_owned(),
    }
}

impl Instance {
    /// Makes `settings` the ones this instance's calls and host calls run with.
    pub(crate) fn adopt_settings(&mut self, settings: &Arc<ResolvedSettings>) {
        self.store.data_mut().adopt(settings.clone());
    }

    /// The size of the instance's linear memory `memory` (and of an Extism plugin's kernel
    /// heap), in bytes (0 without one).
    pub(crate) fn memory_bytes(&self) -> usize {
        let state = self.store.data();
        let heap = state
            .extism
            .as_ref()
            .map_or(0, |kernel| kernel.heap_bytes());
        state
            .memory
            .map_or(0, |memory| memory.data_size(&self.store))
            .saturating_add(heap)
    }

    /// Whether the instance must not serve another call (an Extism plugin's `_start` ran).
    #[inline]
    pub(crate) fn spent(&self) -> bool {
        self.store.data().spent
    }

    /// Instantiates the module in a new store of `wasmtime` (whose epoch count is `ticks`), runs
    /// `_initialize` when it has one, and resolves every export the calls will need, once.
    pub(crate) fn new(
        wasmtime: &wasmtime::Engine,
        ticks: &Ticks,
        pre: &wasmtime::InstancePre<StoreState>,
        exports: &Arc<ExportTable>,
        context: &Arc<PluginContext>,
        version: u64,
    ) -> Result<Self> {
        let settings = context.settings.load();
        let mut store = new_store(wasmtime, ticks, context, version, &settings)?;
        let funcs = Funcs::instantiate(&mut store, pre, exports, &context.name, &settings)?;
        Ok(Self {
            store,
            calls: Calls::Core(funcs),
        })
    }

    /// Instantiates a component plugin in a new store with the same limits and grants.
    pub(crate) fn new_component(
        wasmtime: &wasmtime::Engine,
        ticks: &Ticks,
        pre: &BindingsPre<StoreState>,
        context: &Arc<PluginContext>,
        version: u64,
    ) -> Result<Self> {
        let settings = context.settings.load();
        let mut store = new_store(wasmtime, ticks, context, version, &settings)?;
        let bindings = component_instance::instantiate(&mut store, pre, &context.name, &settings)?;
        Ok(Self {
            store,
            calls: Calls::Component(Box::new(bindings)),
        })
    }

    /// [`Instance::new`] for a plugin called with `call_async`: the store's host calls and WASI
    /// waits suspend the guest's fiber, and its calls yield at epoch ticks.
    pub(crate) async fn new_async(
        wasmtime: &wasmtime::Engine,
        ticks: &Ticks,
        pre: &wasmtime::InstancePre<StoreState>,
        exports: &Arc<ExportTable>,
        context: &Arc<PluginContext>,
        version: u64,
    ) -> Result<Self> {
        let settings = context.settings.load_full();
        let mut store = new_store(wasmtime, ticks, context, version, &settings)?;
        let funcs =
            Funcs::instantiate_async(&mut store, pre, exports, &context.name, &settings).await?;
        Ok(Self {
            store,
            calls: Calls::Core(funcs),
        })
    }

    /// [`Instance::new_component`] for a component called with `call_async`.
    pub(crate) async fn new_component_async(
        wasmtime: &wasmtime::Engine,
        ticks: &Ticks,
        pre: &AsyncBindingsPre<StoreState>,
        context: &Arc<PluginContext>,
        version: u64,
    ) -> Result<Self> {
        let settings = context.settings.load_full();
        let mut store = new_store(wasmtime, ticks, context, version, &settings)?;
        let bindings =
            component_instance::instantiate_async(&mut store, pre, &context.name, &settings)
                .await?;
        Ok(Self {
            store,
            calls: Calls::AsyncComponent(Box::new(bindings)),
        })
    }

    /// A component's entries (its `entries` export).
    pub(crate) async fn component_entries(&mut self, plugin: &str) -> Result<Vec<String>> {
        match &self.calls {
            Calls::Core(_) => Ok(Vec::new()),
            Calls::Component(bindings) => {
                component_instance::entries(bindings, &mut self.store, plugin)
            }
            Calls::AsyncComponent(bindings) => {
                component_instance::entries_async(bindings, &mut self.store, plugin).await
            }
        }
    }

    /// Whether this instance is called with the async methods.
    fn is_async(&self) -> bool {
        self.store.data().yield_ticks != 0
    }

    /// Calls the `dlinkwm_abi_version` export.
    pub(crate) async fn abi_version(&mut self, plugin: &str) -> Result<i32> {
        let settings = self.store.data().context.settings.load_full();
        prepare(&mut self.store);
        let site = CallSite {
            plugin,
            entry: dlinkwm_abi::export::ABI_VERSION,
        };
        let asynchronous = self.is_async();
        match &self.calls {
            Calls::Core(funcs) if asynchronous => {
                funcs
                    .abi_version_async(&mut self.store, site, &settings)
                    .await
            }
            Calls::Core(funcs) => funcs.abi_version(&mut self.store, site, &settings),
            Calls::Component(bindings) => {
                component_instance::abi_version(bindings, &mut self.store, site, &settings)
            }
            Calls::AsyncComponent(bindings) => {
                component_instance::abi_version_async(bindings, &mut self.store, site, &settings)
                    .await
            }
        }
    }

    /// Runs the plugin's smoke call on this (new, not yet serving) instance: the entry must
    /// exist and answer without an error, within the plugin's limits.
    pub(crate) async fn smoke(
        &mut self,
        plugin: &str,
        exports: &ExportTable,
        smoke: &crate::config::Smoke,
        settings: &ResolvedSettings,
    ) -> Result<()> {
        let index = exports.entry(plugin, &smoke.entry)?;
        let site = CallSite {
            plugin,
            entry: &smoke.entry,
        };
        let (format, input) = (smoke.format.format(), smoke.input.as_bytes());
        if self.is_async() {
            self.run_async(index, site, format, input, settings).await
        } else {
            self.run(index, site, format, input, settings)
                .map_err(|error| *error)
        }
    }

    /// Calls entry number `index` with `input` in `format`, leaving its output in
    /// [`Instance::output`].
    #[inline]
    pub(crate) fn run(
        &mut self,
        index: usize,
        site: CallSite<'_>,
        format: Format,
        input: &[u8],
        settings: &ResolvedSettings,
    ) -> Fast<()> {
        let Self { store, calls } = self;
        match calls {
            Calls::Core(funcs) => funcs.run(store, index, site, format, input, settings),
            Calls::Component(bindings) => {
                component_instance::call(bindings, store, site, format, input, settings)
                    .map_err(Box::new)
            }
            Calls::AsyncComponent(_) => Err(Box::new(needs_async(site.plugin))),
        }
    }

    /// [`Instance::run`] for a plugin called with `call_async`: the guest runs on a fiber,
    /// yields to the executor at epoch ticks, and its host calls may await.
    pub(crate) async fn run_async(
        &mut self,
        index: usize,
        site: CallSite<'_>,
        format: Format,
        input: &[u8],
        settings: &ResolvedSettings,
    ) -> Result<()> {
        let Self { store, calls } = self;
        match calls {
            Calls::Core(funcs) => {
                funcs
                    .run_async(store, index, site, format, input, settings)
                    .await
            }
            // Boxed: a component call's future is large, and would otherwise be part of every
            // core module's call future.
            Calls::AsyncComponent(bindings) => {
                Box::pin(component_instance::call_async(
                    bindings, store, site, format, input, settings,
                ))
                .await
            }
            Calls::Component(_) => Err(Error::WrongCallMode {
                plugin: site.plugin.to_owned(),
                reason: "it was loaded for sync calls: load it with load_async to call it with \
                         call_async"
                    .to_owned(),
            }),
        }
    }

    /// The output of the last call.
    #[inline]
    pub(crate) fn output(&self) -> &[u8] {
        &self.store.data().call.output
    }

    /// Fuel consumed by the last call, when the adopted settings meter fuel.
    #[inline]
    pub(crate) fn fuel_consumed(&self) -> Option<u64> {
        let given = self.store.data().settings.fuel?;
        let left = self.store.get_fuel().ok()?;
        Some(given.saturating_sub(left))
    }

    /// Asks this instance for its state (`dlinkwm_state_save`), if it has any to hand over.
    pub(crate) async fn save_state(
        &mut self,
        plugin: &str,
        settings: &ResolvedSettings,
    ) -> Result<Option<Vec<u8>>> {
        let asynchronous = self.is_async();
        let Self { store, calls } = self;
        let site = CallSite {
            plugin,
            entry: dlinkwm_abi::export::STATE_SAVE,
        };
        match calls {
            Calls::Core(funcs) if asynchronous => {
                funcs.save_state_async(store, site, settings).await
            }
            Calls::Core(funcs) => funcs.save_state(store, site, settings),
            Calls::Component(bindings) => {
                component_instance::save_state(bindings, store, site, settings)
            }
            Calls::AsyncComponent(bindings) => {
                component_instance::save_state_async(bindings, store, site, settings).await
            }
        }
    }

    /// Gives this instance the state saved by the previous version (`dlinkwm_state_restore`).
    /// Returns whether it accepted it (false when it has no such export).
    pub(crate) async fn restore_state(
        &mut self,
        plugin: &str,
        state: &[u8],
        settings: &ResolvedSettings,
    ) -> Result<bool> {
        let asynchronous = self.is_async();
        let Self { store, calls } = self;
        let site = CallSite {
            plugin,
            entry: dlinkwm_abi::export::STATE_RESTORE,
        };
        match calls {
            Calls::Core(funcs) if asynchronous => {
                funcs
                    .restore_state_async(store, site, state, settings)
                    .await
            }
            Calls::Core(funcs) => funcs.restore_state(store, site, state, settings),
            Calls::Component(bindings) => {
                component_instance::restore_state(bindings, store, site, state, settings)
            }
            Calls::AsyncComponent(bindings) => {
                component_instance::restore_state_async(bindings, store, site, state, settings)
                    .await
            }
        }
    }
}
