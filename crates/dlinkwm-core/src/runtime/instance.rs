//! One instance of a plugin version in its own store, and the ABI's call sequence on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use dlinkwm_abi::{ENTRY_ERROR, ENTRY_OK, Format};
use wasmtime::{Extern, Memory, Store, Trap, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::config::{ResolvedSettings, Stdio};
use crate::engine::handle::Engine;
use crate::error::{Error, Fast, Result};
use crate::runtime::exports::{EntryKind, ExportTable};
use crate::runtime::host_methods::HostCallHandler;
use crate::runtime::limits::Limiter;
use crate::runtime::linker::{GuestFault, guest_range};
use crate::runtime::stdio::{LogBudget, LogStream, StreamKind};

/// What every store of one plugin shares: its name, the host methods it may call and its
/// current settings (replaced when the configuration changes).
pub(crate) struct PluginContext {
    pub(crate) name: Arc<str>,
    pub(crate) host: Arc<dyn HostCallHandler>,
    pub(crate) settings: ArcSwap<ResolvedSettings>,
    /// Bumped after each replacement of `settings`, so instances notice it with one load.
    pub(crate) settings_generation: AtomicU64,
}

impl PluginContext {
    /// Replaces the settings; every instance picks them up at its next call.
    pub(crate) fn set_settings(&self, settings: ResolvedSettings) {
        self.settings.store(Arc::new(settings));
        self.settings_generation.fetch_add(1, Ordering::Release);
    }
}

/// Per-call scratch space, reset at the start of each call and reused, so a call allocates
/// nothing once its buffers have grown.
#[derive(Default)]
pub(crate) struct CallState {
    pub(crate) output: Vec<u8>,
    pub(crate) error: Option<String>,
    pub(crate) output_overflow: Option<usize>,
    pub(crate) host_result: Vec<u8>,
    pub(crate) max_output_bytes: usize,
    /// Host calls refused by the allowlist in this call: the first is logged, the rest counted.
    pub(crate) host_calls_denied: u32,
    /// When the current call must end, for host functions that wait.
    pub(crate) deadline: crate::runtime::waits::Deadline,
}

/// The data of every store.
pub struct StoreState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: Limiter,
    pub(crate) memory: Option<Memory>,
    pub(crate) call: CallState,
    pub(crate) context: Arc<PluginContext>,
    /// The plugin's settings as of this instance's current call (what host calls check).
    pub(crate) settings: Arc<ResolvedSettings>,
    /// `settings.timeout` in epoch ticks, worked out once per settings change.
    deadline_ticks: u64,
    pub(crate) version: u64,
    pub(crate) stdio: Stdio,
    pub(crate) stdout: Option<LogStream>,
    /// The log text the current call may still write (shared with the WASI log streams).
    pub(crate) log_budget: Arc<LogBudget>,
    /// The engine's epoch count, which the current call's deadline is measured in.
    pub(crate) ticks: crate::runtime::waits::Ticks,
}

impl StoreState {
    /// Takes `settings` for the calls to come: the limits each call arms are worked out here,
    /// once per settings change, not on every call.
    fn adopt(&mut self, settings: Arc<ResolvedSettings>) {
        self.deadline_ticks = Engine::deadline_ticks(settings.timeout);
        self.call.max_output_bytes = settings.max_output_bytes;
        self.limiter.max_memory_bytes = settings.max_memory_bytes;
        self.limiter.max_table_elements = settings.max_table_elements;
        self.settings = settings;
    }
}

enum EntryFunc {
    Abi(TypedFunc<(i32, i32, i32), i32>),
    Plain(TypedFunc<(), ()>),
}

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
    Component(Box<crate::runtime::component::Bindings>),
}

/// The exports an instance's calls use, resolved once at instantiation. Calls borrow them:
/// cloning a `TypedFunc` clones its registered type, which costs more than the call itself.
struct Funcs {
    alloc: Option<TypedFunc<i32, i32>>,
    entries: Box<[EntryFunc]>,
    abi_version: Option<TypedFunc<(), i32>>,
    state_save: Option<TypedFunc<(i32, i32, i32), i32>>,
    state_restore: Option<TypedFunc<(i32, i32, i32), i32>>,
}

/// Which call an error happened in, for messages.
#[derive(Clone, Copy)]
pub(crate) struct CallSite<'a> {
    pub(crate) plugin: &'a str,
    pub(crate) entry: &'a str,
}

fn build_wasi(
    name: &Arc<str>,
    settings: &ResolvedSettings,
    budget: &Arc<LogBudget>,
) -> Result<(WasiP1Ctx, Option<LogStream>)> {
    let mut builder = WasiCtxBuilder::new();
    // Never granted (docs/security.md): no sockets, no name lookup, for any plugin. wasmtime-wasi
    // 48 defaults to this already; said here so that no upgrade changes it silently.
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    let mut stdout = None;
    match settings.stdio {
        Stdio::Inherit => {
            builder.inherit_stdout().inherit_stderr();
        }
        Stdio::Log => {
            let out = LogStream::new(name.clone(), StreamKind::Stdout, budget.clone());
            builder.stdout(out.clone()).stderr(LogStream::new(
                name.clone(),
                StreamKind::Stderr,
                budget.clone(),
            ));
            stdout = Some(out);
        }
        Stdio::Null => {}
    }
    for variable in &settings.env {
        if let Ok(value) = std::env::var(variable) {
            builder.env(variable, value);
        }
    }
    let mut args = vec![name.to_string()];
    args.extend(settings.args.iter().cloned());
    builder.args(&args);
    for preopen in &settings.preopens {
        let perms = if preopen.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&preopen.host, &preopen.guest, perms)
            .map_err(|error| Error::Instantiate {
                plugin: name.to_string(),
                reason: format!(
                    "cannot preopen `{}` as `{}`: {error:#}",
                    preopen.host.display(),
                    preopen.guest
                ),
            })?;
    }
    Ok((builder.build_p1(), stdout))
}

impl Instance {
    /// Makes `settings` the ones this instance's calls and host calls run with.
    pub(crate) fn adopt_settings(&mut self, settings: &Arc<ResolvedSettings>) {
        self.store.data_mut().adopt(settings.clone());
    }

    /// The size of the instance's linear memory `memory`, in bytes (0 without one).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |memory| memory.data_size(&self.store))
    }

    /// Instantiates the module, runs `_initialize` when it has one, and resolves every export
    /// the calls will need, once.
    pub(crate) fn new(
        engine: &Engine,
        pre: &wasmtime::InstancePre<StoreState>,
        exports: &ExportTable,
        context: &Arc<PluginContext>,
        version: u64,
    ) -> Result<Self> {
        let settings = context.settings.load();
        let mut store = new_store(engine, context, version, &settings)?;
        let plugin = &*context.name;
        let site = CallSite {
            plugin,
            entry: "instantiation",
        };
        prepare(&mut store);
        let instance = pre.instantiate(&mut store).map_err(|error| {
            match classify(&mut store, error, site, &settings) {
                // A start function that traps or an import that is missing: the module cannot
                // become a plugin.
                Error::Trap { message, .. } => Error::Instantiate {
                    plugin: plugin.to_owned(),
                    reason: message,
                },
                other => other,
            }
        })?;
        let memory = exports
            .memory
            .as_ref()
            .and_then(|export| instance.get_module_export(&mut store, export))
            .and_then(Extern::into_memory);
        let func = |store: &mut Store<StoreState>, export: &Option<wasmtime::ModuleExport>| {
            export
                .as_ref()
                .and_then(|export| instance.get_module_export(&mut *store, export))
                .and_then(Extern::into_func)
        };
        let alloc = func(&mut store, &exports.alloc).and_then(|f| f.typed(&store).ok());
        let initialize =
            func(&mut store, &exports.initialize).and_then(|f| f.typed::<(), ()>(&store).ok());
        let abi_func = |store: &mut Store<StoreState>, export: &Option<wasmtime::ModuleExport>| {
            func(store, export).and_then(|f| f.typed::<(i32, i32, i32), i32>(&*store).ok())
        };
        let abi_version =
            func(&mut store, &exports.abi_version).and_then(|f| f.typed::<(), i32>(&store).ok());
        let state_save = abi_func(&mut store, &exports.state_save);
        let state_restore = abi_func(&mut store, &exports.state_restore);
        let mut entries = Vec::with_capacity(exports.entries.len());
        for entry in &exports.entries {
            let func = entry
                .export
                .as_ref()
                .and_then(|export| instance.get_module_export(&mut store, export))
                .and_then(Extern::into_func)
                .ok_or_else(|| Error::ExportMissing {
                    plugin: plugin.to_owned(),
                    export: entry.name.clone(),
                })?;
            let typed = match entry.kind {
                EntryKind::Abi => func.typed(&store).map(EntryFunc::Abi),
                EntryKind::Plain => func.typed(&store).map(EntryFunc::Plain),
            };
            entries.push(typed.map_err(|error| Error::Instantiate {
                plugin: plugin.to_owned(),
                reason: format!("export `{}`: {error:#}", entry.name),
            })?);
        }
        store.data_mut().memory = memory;
        if let Some(initialize) = initialize {
            let site = CallSite {
                plugin,
                entry: dlinkwm_abi::export::INITIALIZE,
            };
            initialize
                .call(&mut store, ())
                .map_err(|error| classify(&mut store, error, site, &settings))?;
        }
        Ok(Self {
            store,
            calls: Calls::Core(Funcs {
                alloc,
                abi_version,
                entries: entries.into_boxed_slice(),
                state_save,
                state_restore,
            }),
        })
    }

    /// Instantiates a component plugin in a new store with the same limits and grants.
    pub(crate) fn new_component(
        engine: &Engine,
        pre: &crate::runtime::component::BindingsPre<StoreState>,
        context: &Arc<PluginContext>,
        version: u64,
    ) -> Result<Self> {
        let settings = context.settings.load();
        let mut store = new_store(engine, context, version, &settings)?;
        let site = CallSite {
            plugin: &context.name,
            entry: "instantiation",
        };
        prepare(&mut store);
        let bindings = pre.instantiate(&mut store).map_err(|error| {
            match classify(&mut store, error, site, &settings) {
                Error::Trap { message, .. } => Error::Instantiate {
                    plugin: context.name.to_string(),
                    reason: message,
                },
                other => other,
            }
        })?;
        Ok(Self {
            store,
            calls: Calls::Component(Box::new(bindings)),
        })
    }

    /// A component's entries (its `entries` export).
    pub(crate) fn component_entries(&mut self, plugin: &str) -> Result<Vec<String>> {
        let Calls::Component(bindings) = &self.calls else {
            return Ok(Vec::new());
        };
        let settings = self.store.data().context.settings.load_full();
        prepare(&mut self.store);
        let site = CallSite {
            plugin,
            entry: "entries",
        };
        bindings
            .call_entries(&mut self.store)
            .map_err(|error| classify(&mut self.store, error, site, &settings))
    }

    /// Calls the `dlinkwm_abi_version` export.
    pub(crate) fn abi_version(&mut self, plugin: &str) -> Result<i32> {
        let settings = self.store.data().context.settings.load_full();
        prepare(&mut self.store);
        let site = CallSite {
            plugin,
            entry: dlinkwm_abi::export::ABI_VERSION,
        };
        let funcs = match &self.calls {
            Calls::Core(funcs) => funcs,
            Calls::Component(bindings) => {
                let version = bindings
                    .call_abi_version(&mut self.store)
                    .map_err(|error| classify(&mut self.store, error, site, &settings))?;
                return Ok(i32::try_from(version).unwrap_or(i32::MAX));
            }
        };
        let func = funcs
            .abi_version
            .as_ref()
            .ok_or_else(|| Error::ExportMissing {
                plugin: plugin.to_owned(),
                export: dlinkwm_abi::export::ABI_VERSION.to_owned(),
            })?;
        func.call(&mut self.store, ())
            .map_err(|error| classify(&mut self.store, error, site, &settings))
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
        let funcs = match calls {
            Calls::Core(funcs) => funcs,
            Calls::Component(bindings) => {
                return call_component(bindings, store, site, format, input, settings)
                    .map_err(Box::new);
            }
        };
        match &funcs.entries[index] {
            EntryFunc::Abi(func) => call_abi(
                store,
                funcs.alloc.as_ref(),
                func,
                site,
                format,
                input,
                settings,
            ),
            EntryFunc::Plain(func) => {
                prepare(store);
                func.call(&mut *store, ())
                    .map_err(|error| Box::new(classify(store, error, site, settings)))
            }
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
    pub(crate) fn save_state(
        &mut self,
        plugin: &str,
        settings: &ResolvedSettings,
    ) -> Result<Option<Vec<u8>>> {
        let Self { store, calls } = self;
        let site = CallSite {
            plugin,
            entry: dlinkwm_abi::export::STATE_SAVE,
        };
        let funcs = match calls {
            Calls::Core(funcs) => funcs,
            Calls::Component(bindings) => {
                prepare(store);
                return bindings
                    .call_save_state(&mut *store)
                    .map_err(|error| classify(store, error, site, settings));
            }
        };
        let Some(func) = &funcs.state_save else {
            return Ok(None);
        };
        call_abi(
            store,
            funcs.alloc.as_ref(),
            func,
            site,
            Format::Raw,
            &[],
            settings,
        )
        .map_err(|error| *error)?;
        Ok(Some(store.data().call.output.clone()))
    }

    /// Gives this instance the state saved by the previous version (`dlinkwm_state_restore`).
    /// Returns whether it accepted it (false when it has no such export).
    pub(crate) fn restore_state(
        &mut self,
        plugin: &str,
        state: &[u8],
        settings: &ResolvedSettings,
    ) -> Result<bool> {
        let Self { store, calls } = self;
        let site = CallSite {
            plugin,
            entry: dlinkwm_abi::export::STATE_RESTORE,
        };
        let funcs = match calls {
            Calls::Core(funcs) => funcs,
            Calls::Component(bindings) => {
                prepare(store);
                return match bindings.call_restore_state(&mut *store, state) {
                    Ok(Ok(())) => Ok(true),
                    Ok(Err(message)) => Err(Error::Guest {
                        plugin: plugin.to_owned(),
                        entry: site.entry.to_owned(),
                        message,
                    }),
                    Err(error) => Err(classify(store, error, site, settings)),
                };
            }
        };
        let Some(func) = &funcs.state_restore else {
            return Ok(false);
        };
        call_abi(
            store,
            funcs.alloc.as_ref(),
            func,
            site,
            Format::Raw,
            state,
            settings,
        )
        .map_err(|error| *error)?;
        Ok(true)
    }
}

/// A new store for one instance: WASI with the settings' grants, the limits, the epoch deadline.
pub(crate) fn new_store(
    engine: &Engine,
    context: &Arc<PluginContext>,
    version: u64,
    settings: &ResolvedSettings,
) -> Result<Store<StoreState>> {
    let log_budget = LogBudget::new();
    let (wasi, stdout) = build_wasi(&context.name, settings, &log_budget)?;
    let adopted = context.settings.load_full();
    let mut state = StoreState {
        wasi,
        limiter: Limiter::new(settings.max_memory_bytes, settings.max_table_elements),
        memory: None,
        call: CallState::default(),
        context: context.clone(),
        settings: adopted.clone(),
        deadline_ticks: 0,
        version,
        stdio: settings.stdio,
        stdout,
        log_budget,
        ticks: engine.inner.ticks.clone(),
    };
    state.adopt(adopted);
    let mut store = Store::new(&engine.inner.wasmtime, state);
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_trap();
    Ok(store)
}

/// Refuses an input above `max_input_bytes` before any guest code runs.
#[inline(always)]
fn check_input(site: CallSite<'_>, input: &[u8], settings: &ResolvedSettings) -> Result<()> {
    let limit = settings.max_input_bytes;
    if input.len() > limit {
        return Err(input_too_large(site, input.len(), limit));
    }
    Ok(())
}

#[cold]
fn input_too_large(site: CallSite<'_>, size: usize, limit: usize) -> Error {
    Error::InputTooLarge {
        plugin: site.plugin.to_owned(),
        entry: site.entry.to_owned(),
        size,
        limit,
    }
}

/// Calls a component's entry through its `call` export, by name; its output replaces the
/// call's output buffer.
fn call_component(
    bindings: &crate::runtime::component::Bindings,
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    format: Format,
    input: &[u8],
    settings: &ResolvedSettings,
) -> Result<()> {
    check_input(site, input, settings)?;
    prepare(store);
    let answer = crate::runtime::component::call(bindings, store, site.entry, format, input)
        .map_err(|error| classify(store, error, site, settings))?;
    match answer {
        Ok(output) if output.len() > settings.max_output_bytes => Err(Error::OutputTooLarge {
            plugin: site.plugin.to_owned(),
            entry: site.entry.to_owned(),
            size: output.len(),
            limit: settings.max_output_bytes,
        }),
        Ok(output) => {
            store.data_mut().call.output = output;
            Ok(())
        }
        Err(message) => Err(Error::Guest {
            plugin: site.plugin.to_owned(),
            entry: site.entry.to_owned(),
            message: crate::runtime::linker::bounded_message(message.as_bytes()),
        }),
    }
}

fn call_abi(
    store: &mut Store<StoreState>,
    alloc: Option<&TypedFunc<i32, i32>>,
    func: &TypedFunc<(i32, i32, i32), i32>,
    site: CallSite<'_>,
    format: Format,
    input: &[u8],
    settings: &ResolvedSettings,
) -> Fast<()> {
    check_input(site, input, settings).map_err(Box::new)?;
    prepare(store);
    let (ptr, len) = if input.is_empty() {
        (0, 0)
    } else {
        write_input(store, alloc, site, input, settings).map_err(Box::new)?
    };
    let status = match func.call(&mut *store, (ptr, len, format.code())) {
        Ok(status) => status,
        Err(error) => return Err(Box::new(classify(store, error, site, settings))),
    };
    if status == ENTRY_OK && store.data().call.output_overflow.is_none() {
        return Ok(());
    }
    Err(Box::new(entry_failed(store, site, status, settings)))
}

/// Copies `input` into a buffer from the guest's `dlinkwm_alloc`; returns its address and length.
#[inline(never)]
fn write_input(
    store: &mut Store<StoreState>,
    alloc: Option<&TypedFunc<i32, i32>>,
    site: CallSite<'_>,
    input: &[u8],
    settings: &ResolvedSettings,
) -> Result<(i32, i32)> {
    let alloc = alloc.ok_or_else(|| Error::ExportMissing {
        plugin: site.plugin.to_owned(),
        export: dlinkwm_abi::export::ALLOC.to_owned(),
    })?;
    // Lengths cross the ABI as unsigned 32-bit values (carried in an i32).
    let len = u32::try_from(input.len())
        .map_err(|_| Error::InputTooLarge {
            plugin: site.plugin.to_owned(),
            entry: site.entry.to_owned(),
            size: input.len(),
            limit: u32::MAX as usize,
        })?
        .cast_signed();
    let ptr = alloc
        .call(&mut *store, len)
        .map_err(|error| classify(store, error, site, settings))?;
    let memory = store.data().memory.ok_or_else(|| Error::ExportMissing {
        plugin: site.plugin.to_owned(),
        export: dlinkwm_abi::export::MEMORY.to_owned(),
    })?;
    let data = memory.data_mut(&mut *store);
    let range = match guest_range(
        data.len(),
        ptr,
        input.len(),
        "input buffer from `dlinkwm_alloc`",
    ) {
        Ok(range) if ptr != 0 => range,
        Ok(_) => {
            return Err(Error::GuestMemory {
                plugin: site.plugin.to_owned(),
                entry: site.entry.to_owned(),
                reason: format!("`dlinkwm_alloc` returned 0 (out of memory) for {len} bytes"),
            });
        }
        Err(error) => return Err(classify(store, error, site, settings)),
    };
    data[range].copy_from_slice(input);
    Ok((ptr, len))
}

/// The error of an entry that returned without a trap but did not succeed: output over the
/// limit, an error it set, or a status the ABI does not define.
#[cold]
fn entry_failed(
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    status: i32,
    settings: &ResolvedSettings,
) -> Error {
    let call = &mut store.data_mut().call;
    if let Some(size) = call.output_overflow {
        return Error::OutputTooLarge {
            plugin: site.plugin.to_owned(),
            entry: site.entry.to_owned(),
            size,
            limit: settings.max_output_bytes,
        };
    }
    let message = match status {
        ENTRY_ERROR => call
            .error
            .take()
            .unwrap_or_else(|| "the entry returned an error without a message".to_owned()),
        other => format!("the entry returned unknown status {other}"),
    };
    Error::Guest {
        plugin: site.plugin.to_owned(),
        entry: site.entry.to_owned(),
        message,
    }
}

/// Resets the per-call state and arms the time and fuel limits of the store's adopted settings.
/// No allocation, no syscall.
#[inline]
pub(crate) fn prepare(store: &mut Store<StoreState>) {
    let (ticks, fuel) = (store.data().deadline_ticks, store.data().settings.fuel);
    store.set_epoch_deadline(ticks);
    if let Some(fuel) = fuel {
        // Only fails when the engine does not meter fuel, which `Plugin::load` checks first.
        let _ = store.set_fuel(fuel);
    }
    let state = store.data_mut();
    state.call.output.clear();
    state.call.error = None;
    state.call.output_overflow = None;
    state.limiter.memory_refused = None;
    state.call.host_calls_denied = 0;
    state.call.deadline.tick = state.ticks.load(Ordering::Relaxed).saturating_add(ticks);
    state.log_budget.reset();
}

/// Turns whatever wasmtime reported into the error that names its cause. Runs only on the
/// failure path.
#[cold]
fn classify(
    store: &mut Store<StoreState>,
    error: wasmtime::Error,
    site: CallSite<'_>,
    settings: &ResolvedSettings,
) -> Error {
    let plugin = site.plugin.to_owned();
    let entry = site.entry.to_owned();
    tracing::debug!(plugin = site.plugin, entry = site.entry, error = ?error, "plugin call failed");
    if let Some(GuestFault(reason)) = error.downcast_ref::<GuestFault>() {
        return Error::GuestMemory {
            plugin,
            entry,
            reason: reason.clone(),
        };
    }
    let code = error.downcast_ref::<Trap>().copied();
    match code {
        Some(Trap::Interrupt) => {
            return Error::Timeout {
                plugin,
                entry,
                limit: settings.timeout,
            };
        }
        Some(Trap::OutOfFuel) => {
            return Error::OutOfFuel {
                plugin,
                entry,
                fuel: settings.fuel.unwrap_or(0),
            };
        }
        _ => {}
    }
    let state = store.data_mut();
    if let Some(requested) = state.limiter.memory_refused {
        return Error::MemoryLimit {
            plugin,
            entry,
            requested,
            limit: state.limiter.max_memory_bytes,
        };
    }
    if let Some(message) = state.call.error.take() {
        return Error::GuestPanic {
            plugin,
            entry,
            message,
        };
    }
    let message = match code {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    Error::Trap {
        plugin,
        entry,
        code,
        message,
    }
}
