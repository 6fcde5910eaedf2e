//! The core-module path of an `Instance`: instantiation (running `_initialize`), the exports its
//! calls use, resolved once, and ABI v1's call sequence (input copied into a buffer from
//! `dlinkwm_alloc`, the entry called, its status and output read back).

use std::sync::{Arc, OnceLock};

use dlinkwm_abi::{ENTRY_ERROR, ENTRY_OK, Format};
use wasmtime::{Extern, Store, TypedFunc};

use crate::config::ResolvedSettings;
use crate::error::{Error, Fast, Result};
use crate::runtime::exports::{EntryKind, ExportTable};
use crate::runtime::guest::guest_range;
use crate::runtime::store::{StoreState, prepare};
use crate::runtime::trap::{CallSite, check_input, classify};

enum EntryFunc {
    Abi(TypedFunc<(i32, i32, i32), i32>),
    Plain(TypedFunc<(), ()>),
    /// An Extism function and whether it is `_start` (after which the instance is not reused).
    Extism(ExtismFunc, bool),
}

/// An Extism function: `() -> i32` (its status) or `() -> ()`.
enum ExtismFunc {
    Status(TypedFunc<(), i32>),
    Unit(TypedFunc<(), ()>),
}

/// What runs once when an instance starts: `_initialize`, or an Extism plugin's choice of
/// `__wasm_call_ctors`, and GHC's `hs_init(0, 0)`.
enum Init {
    Plain(TypedFunc<(), ()>),
    HsInit(TypedFunc<(i32, i32), ()>),
}

/// The exports an instance's calls use, each resolved once: the ABI's own at instantiation,
/// an entry at its first call (a fresh instance per call resolves only the entry it calls; the
/// export table checked every entry's signature when the version loaded). Calls borrow them:
/// cloning a `TypedFunc` clones its registered type, which costs more than the call itself.
pub(crate) struct Funcs {
    instance: wasmtime::Instance,
    exports: Arc<ExportTable>,
    alloc: Option<TypedFunc<i32, i32>>,
    entries: Box<[OnceLock<EntryFunc>]>,
    abi_version: Option<TypedFunc<(), i32>>,
    state_save: Option<TypedFunc<(i32, i32, i32), i32>>,
    state_restore: Option<TypedFunc<(i32, i32, i32), i32>>,
}

impl Funcs {
    /// Instantiates the module in `store`, runs `_initialize` when it has one, and resolves every
    /// export the calls will need, once.
    pub(crate) fn instantiate(
        store: &mut Store<StoreState>,
        pre: &wasmtime::InstancePre<StoreState>,
        exports: &Arc<ExportTable>,
        plugin: &str,
        settings: &ResolvedSettings,
    ) -> Result<Self> {
        let site = CallSite {
            plugin,
            entry: "instantiation",
        };
        prepare(store);
        add_kernel(store, exports);
        let instance = pre
            .instantiate(&mut *store)
            .map_err(|error| not_instantiated(store, error, site, settings))?;
        let (funcs, inits) = Self::resolve(store, instance, exports);
        for init in inits {
            let site = CallSite {
                plugin,
                entry: dlinkwm_abi::export::INITIALIZE,
            };
            let done = match init {
                Init::Plain(func) => func.call(&mut *store, ()),
                Init::HsInit(func) => func.call(&mut *store, (0, 0)),
            };
            done.map_err(|error| classify(store, error, site, settings))?;
        }
        Ok(funcs)
    }

    /// [`Funcs::instantiate`] for a plugin called with `call_async`.
    pub(crate) async fn instantiate_async(
        store: &mut Store<StoreState>,
        pre: &wasmtime::InstancePre<StoreState>,
        exports: &Arc<ExportTable>,
        plugin: &str,
        settings: &ResolvedSettings,
    ) -> Result<Self> {
        let site = CallSite {
            plugin,
            entry: "instantiation",
        };
        prepare(store);
        add_kernel(store, exports);
        let instance = match pre.instantiate_async(&mut *store).await {
            Ok(instance) => instance,
            Err(error) => return Err(not_instantiated(store, error, site, settings)),
        };
        let (funcs, inits) = Self::resolve(store, instance, exports);
        for init in inits {
            let site = CallSite {
                plugin,
                entry: dlinkwm_abi::export::INITIALIZE,
            };
            let done = match init {
                Init::Plain(func) => func.call_async(&mut *store, ()).await,
                Init::HsInit(func) => func.call_async(&mut *store, (0, 0)).await,
            };
            done.map_err(|error| classify(store, error, site, settings))?;
        }
        Ok(funcs)
    }

    /// Resolves every export the calls will need, once; returns the initialisers too, to be
    /// run in order.
    fn resolve(
        store: &mut Store<StoreState>,
        instance: wasmtime::Instance,
        exports: &Arc<ExportTable>,
    ) -> (Self, Vec<Init>) {
        let memory = exports
            .memory
            .as_ref()
            .and_then(|export| instance.get_module_export(&mut *store, export))
            .and_then(Extern::into_memory);
        let func = |store: &mut Store<StoreState>, export: &Option<wasmtime::ModuleExport>| {
            export
                .as_ref()
                .and_then(|export| instance.get_module_export(&mut *store, export))
                .and_then(Extern::into_func)
        };
        let alloc = func(&mut *store, &exports.alloc).and_then(|f| f.typed(&*store).ok());
        let plain = |store: &mut Store<StoreState>, export: &Option<wasmtime::ModuleExport>| {
            func(store, export).and_then(|f| f.typed::<(), ()>(&*store).ok())
        };
        let initialize = plain(&mut *store, &exports.initialize);
        let mut inits = Vec::new();
        if exports.kind == crate::runtime::PluginKind::Extism {
            // Extism's order: GHC's runtime after `_initialize`; else the constructors instead
            // of `_initialize`; else `_initialize`.
            let hs_init = func(&mut *store, &exports.hs_init)
                .and_then(|f| f.typed::<(i32, i32), ()>(&*store).ok());
            let ctors = plain(&mut *store, &exports.call_ctors);
            if let Some(hs_init) = hs_init {
                inits.extend(initialize.map(Init::Plain));
                inits.push(Init::HsInit(hs_init));
            } else if let Some(ctors) = ctors {
                inits.push(Init::Plain(ctors));
            } else {
                inits.extend(initialize.map(Init::Plain));
            }
        } else {
            inits.extend(initialize.map(Init::Plain));
        }
        let abi_func = |store: &mut Store<StoreState>, export: &Option<wasmtime::ModuleExport>| {
            func(store, export).and_then(|f| f.typed::<(i32, i32, i32), i32>(&*store).ok())
        };
        let abi_version =
            func(&mut *store, &exports.abi_version).and_then(|f| f.typed::<(), i32>(&*store).ok());
        let state_save = abi_func(&mut *store, &exports.state_save);
        let state_restore = abi_func(&mut *store, &exports.state_restore);
        store.data_mut().memory = memory;
        let funcs = Self {
            instance,
            exports: exports.clone(),
            alloc,
            abi_version,
            entries: (0..exports.entries.len())
                .map(|_| OnceLock::new())
                .collect(),
            state_save,
            state_restore,
        };
        (funcs, inits)
    }

    /// Entry number `index`, resolved (and type-checked) at its first call on this instance.
    #[inline]
    fn entry(
        &self,
        store: &mut Store<StoreState>,
        index: usize,
        plugin: &str,
    ) -> Result<&EntryFunc> {
        match self.entries[index].get() {
            Some(entry) => Ok(entry),
            None => self.resolve_entry(store, index, plugin),
        }
    }

    #[cold]
    #[inline(never)]
    fn resolve_entry(
        &self,
        store: &mut Store<StoreState>,
        index: usize,
        plugin: &str,
    ) -> Result<&EntryFunc> {
        let entry = &self.exports.entries[index];
        let func = entry
            .export
            .as_ref()
            .and_then(|export| self.instance.get_module_export(&mut *store, export))
            .and_then(Extern::into_func)
            .ok_or_else(|| Error::ExportMissing {
                plugin: plugin.to_owned(),
                export: entry.name.clone(),
            })?;
        let typed = match entry.kind {
            EntryKind::Abi => func.typed(&*store).map(EntryFunc::Abi),
            EntryKind::Plain => func.typed(&*store).map(EntryFunc::Plain),
            EntryKind::Extism => {
                let start = entry.name == "_start";
                match func.typed::<(), i32>(&*store) {
                    Ok(status) => Ok(EntryFunc::Extism(ExtismFunc::Status(status), start)),
                    Err(_) => func
                        .typed(&*store)
                        .map(|unit| EntryFunc::Extism(ExtismFunc::Unit(unit), start)),
                }
            }
        };
        let typed = typed.map_err(|error| Error::Instantiate {
            plugin: plugin.to_owned(),
            reason: format!("export `{}`: {error:#}", entry.name),
        })?;
        Ok(self.entries[index].get_or_init(|| typed))
    }

    /// [`Funcs::run`], awaited: the guest runs on a fiber and yields at epoch ticks.
    pub(crate) async fn run_async(
        &self,
        store: &mut Store<StoreState>,
        index: usize,
        site: CallSite<'_>,
        format: Format,
        input: &[u8],
        settings: &ResolvedSettings,
    ) -> Result<()> {
        match self.entry(store, index, site.plugin)? {
            EntryFunc::Abi(func) => {
                call_abi_async(
                    store,
                    self.alloc.as_ref(),
                    func,
                    site,
                    format,
                    input,
                    settings,
                )
                .await
            }
            EntryFunc::Plain(func) => {
                prepare(store);
                let done = func.call_async(&mut *store, ()).await;
                done.map_err(|error| classify(store, error, site, settings))
            }
            EntryFunc::Extism(func, start) => {
                begin_extism(store, site, input, settings)?;
                store.data_mut().spent |= *start;
                let status = match func {
                    ExtismFunc::Status(func) => func.call_async(&mut *store, ()).await,
                    ExtismFunc::Unit(func) => func.call_async(&mut *store, ()).await.map(|()| 0),
                };
                finish_extism(store, site, status, settings)
            }
        }
    }

    /// [`Funcs::abi_version`], awaited.
    pub(crate) async fn abi_version_async(
        &self,
        store: &mut Store<StoreState>,
        site: CallSite<'_>,
        settings: &ResolvedSettings,
    ) -> Result<i32> {
        let func = self
            .abi_version
            .as_ref()
            .ok_or_else(|| Error::ExportMissing {
                plugin: site.plugin.to_owned(),
                export: dlinkwm_abi::export::ABI_VERSION.to_owned(),
            })?;
        let version = func.call_async(&mut *store, ()).await;
        version.map_err(|error| classify(store, error, site, settings))
    }

    /// [`Funcs::save_state`], awaited.
    pub(crate) async fn save_state_async(
        &self,
        store: &mut Store<StoreState>,
        site: CallSite<'_>,
        settings: &ResolvedSettings,
    ) -> Result<Option<Vec<u8>>> {
        if let Some(kernel) = &store.data().extism {
            return Ok(Some(kernel.save_vars()));
        }
        let Some(func) = &self.state_save else {
            return Ok(None);
        };
        let alloc = self.alloc.as_ref();
        call_abi_async(store, alloc, func, site, Format::Raw, &[], settings).await?;
        Ok(Some(store.data().call.output.clone()))
    }

    /// [`Funcs::restore_state`], awaited.
    pub(crate) async fn restore_state_async(
        &self,
        store: &mut Store<StoreState>,
        site: CallSite<'_>,
        state: &[u8],
        settings: &ResolvedSettings,
    ) -> Result<bool> {
        if store.data().extism.is_some() {
            return restore_vars(store, site, state);
        }
        let Some(func) = &self.state_restore else {
            return Ok(false);
        };
        let alloc = self.alloc.as_ref();
        call_abi_async(store, alloc, func, site, Format::Raw, state, settings).await?;
        Ok(true)
    }

    /// Calls entry number `index` with `input` in `format`, leaving its output in the store's
    /// call state.
    #[inline]
    pub(crate) fn run(
        &self,
        store: &mut Store<StoreState>,
        index: usize,
        site: CallSite<'_>,
        format: Format,
        input: &[u8],
        settings: &ResolvedSettings,
    ) -> Fast<()> {
        match self.entry(store, index, site.plugin).map_err(Box::new)? {
            EntryFunc::Abi(func) => call_abi(
                store,
                self.alloc.as_ref(),
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
            EntryFunc::Extism(func, start) => {
                begin_extism(store, site, input, settings).map_err(Box::new)?;
                store.data_mut().spent |= *start;
                let status = match func {
                    ExtismFunc::Status(func) => func.call(&mut *store, ()),
                    ExtismFunc::Unit(func) => func.call(&mut *store, ()).map(|()| 0),
                };
                finish_extism(store, site, status, settings).map_err(Box::new)
            }
        }
    }

    /// Calls the `dlinkwm_abi_version` export (the store is prepared).
    pub(crate) fn abi_version(
        &self,
        store: &mut Store<StoreState>,
        site: CallSite<'_>,
        settings: &ResolvedSettings,
    ) -> Result<i32> {
        let func = self
            .abi_version
            .as_ref()
            .ok_or_else(|| Error::ExportMissing {
                plugin: site.plugin.to_owned(),
                export: dlinkwm_abi::export::ABI_VERSION.to_owned(),
            })?;
        func.call(&mut *store, ())
            .map_err(|error| classify(store, error, site, settings))
    }

    /// Asks the instance for its state (`dlinkwm_state_save`), if it has any to hand over.
    pub(crate) fn save_state(
        &self,
        store: &mut Store<StoreState>,
        site: CallSite<'_>,
        settings: &ResolvedSettings,
    ) -> Result<Option<Vec<u8>>> {
        if let Some(kernel) = &store.data().extism {
            return Ok(Some(kernel.save_vars()));
        }
        let Some(func) = &self.state_save else {
            return Ok(None);
        };
        call_abi(
            store,
            self.alloc.as_ref(),
            func,
            site,
            Format::Raw,
            &[],
            settings,
        )
        .map_err(|error| *error)?;
        Ok(Some(store.data().call.output.clone()))
    }

    /// Gives the instance `state` (`dlinkwm_state_restore`). Returns whether it accepted it
    /// (false when it has no such export).
    pub(crate) fn restore_state(
        &self,
        store: &mut Store<StoreState>,
        site: CallSite<'_>,
        state: &[u8],
        settings: &ResolvedSettings,
    ) -> Result<bool> {
        if store.data().extism.is_some() {
            return restore_vars(store, site, state);
        }
        let Some(func) = &self.state_restore else {
            return Ok(false);
        };
        call_abi(
            store,
            self.alloc.as_ref(),
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

/// Gives an Extism plugin's instance its kernel, before anything of the plugin runs.
fn add_kernel(store: &mut Store<StoreState>, exports: &ExportTable) {
    if exports.kind == crate::runtime::PluginKind::Extism {
        store.data_mut().extism = Some(Box::default());
    }
}

/// Starts an Extism call: the input checked, the limits armed, the kernel emptied with the
/// input in its first block.
#[inline]
fn begin_extism(
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    input: &[u8],
    settings: &ResolvedSettings,
) -> Result<()> {
    check_input(site, input, settings)?;
    prepare(store);
    let StoreState {
        extism, limiter, ..
    } = store.data_mut();
    let begun = match extism.as_deref_mut() {
        Some(kernel) => kernel.begin(input, limiter),
        None => Err(crate::runtime::guest::fault(
            "this instance has no Extism kernel".to_owned(),
        )),
    };
    begun.map_err(|error| classify(store, error, site, settings))
}

/// Ends an Extism call: a trap (with the plugin's error message, if it set one, as its
/// cause), the error it set (`error_set`, which fails the call whatever its status), a status
/// other than 0, or its output copied out within `max_output_bytes`.
#[inline]
fn finish_extism(
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    status: wasmtime::Result<i32>,
    settings: &ResolvedSettings,
) -> Result<()> {
    let failed = |message: String| Error::Guest {
        plugin: site.plugin.to_owned(),
        entry: site.entry.to_owned(),
        message,
    };
    let status = match status {
        Ok(status) => status,
        // WASI `proc_exit(n)` (a Go command's `main` ends with it): status n, as in Extism;
        // the instance, exited, serves no other call.
        Err(error) if error.downcast_ref::<wasmtime_wasi::I32Exit>().is_some() => {
            store.data_mut().spent = true;
            error
                .downcast_ref::<wasmtime_wasi::I32Exit>()
                .map_or(1, |exit| exit.0)
        }
        Err(error) => {
            let state = store.data_mut();
            // The guest was unwound mid-call (a trap, or a host function that refused):
            // its instance serves no other call, whatever the error.
            state.spent = true;
            let message = state
                .extism
                .as_deref()
                .and_then(|kernel| kernel.error_message());
            if message.is_some() {
                state.call.error = message;
            }
            return Err(classify(store, error, site, settings));
        }
    };
    let StoreState { extism, call, .. } = store.data_mut();
    let Some(kernel) = extism.as_deref() else {
        return Err(failed("the instance lost its Extism kernel".to_owned()));
    };
    if let Some(message) = kernel.error_message() {
        return Err(failed(message));
    }
    if status != 0 {
        return Err(failed(format!("returned non-zero exit code {status}")));
    }
    let size = usize::try_from(kernel.output_len()).unwrap_or(usize::MAX);
    if size > settings.max_output_bytes {
        return Err(Error::OutputTooLarge {
            plugin: site.plugin.to_owned(),
            entry: site.entry.to_owned(),
            size,
            limit: settings.max_output_bytes,
        });
    }
    let output = kernel.output().map_err(|reason| Error::GuestMemory {
        plugin: site.plugin.to_owned(),
        entry: site.entry.to_owned(),
        reason,
    })?;
    call.output.clear();
    call.output.extend_from_slice(output);
    Ok(())
}

/// Gives an Extism plugin's instance the vars an earlier version handed over.
fn restore_vars(store: &mut Store<StoreState>, site: CallSite<'_>, state: &[u8]) -> Result<bool> {
    let max = store.data().settings.max_var_bytes;
    let Some(kernel) = store.data_mut().extism.as_deref_mut() else {
        return Ok(false);
    };
    kernel
        .restore_vars(state, max)
        .map_err(|message| Error::Guest {
            plugin: site.plugin.to_owned(),
            entry: site.entry.to_owned(),
            message,
        })
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

/// [`call_abi`], awaited.
async fn call_abi_async(
    store: &mut Store<StoreState>,
    alloc: Option<&TypedFunc<i32, i32>>,
    func: &TypedFunc<(i32, i32, i32), i32>,
    site: CallSite<'_>,
    format: Format,
    input: &[u8],
    settings: &ResolvedSettings,
) -> Result<()> {
    check_input(site, input, settings)?;
    prepare(store);
    let (ptr, len) = if input.is_empty() {
        (0, 0)
    } else {
        let (alloc, len) = alloc_args(alloc, site, input)?;
        let ptr = alloc.call_async(&mut *store, len).await;
        let ptr = ptr.map_err(|error| classify(store, error, site, settings))?;
        copy_input(store, ptr, len, site, input, settings)?
    };
    let status = match func
        .call_async(&mut *store, (ptr, len, format.code()))
        .await
    {
        Ok(status) => status,
        Err(error) => return Err(classify(store, error, site, settings)),
    };
    if status == ENTRY_OK && store.data().call.output_overflow.is_none() {
        return Ok(());
    }
    Err(entry_failed(store, site, status, settings))
}

/// `dlinkwm_alloc` and the input's length as the ABI carries it.
fn alloc_args<'a>(
    alloc: Option<&'a TypedFunc<i32, i32>>,
    site: CallSite<'_>,
    input: &[u8],
) -> Result<(&'a TypedFunc<i32, i32>, i32)> {
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
    Ok((alloc, len))
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
    let (alloc, len) = alloc_args(alloc, site, input)?;
    let ptr = alloc
        .call(&mut *store, len)
        .map_err(|error| classify(store, error, site, settings))?;
    copy_input(store, ptr, len, site, input, settings)
}

/// Copies `input` to `ptr`, the buffer `dlinkwm_alloc` answered, after checking it.
fn copy_input(
    store: &mut Store<StoreState>,
    ptr: i32,
    len: i32,
    site: CallSite<'_>,
    input: &[u8],
    settings: &ResolvedSettings,
) -> Result<(i32, i32)> {
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

/// The error of instantiation: a start function that traps or an import that is missing means
/// the module cannot become a plugin.
#[cold]
fn not_instantiated(
    store: &mut Store<StoreState>,
    error: wasmtime::Error,
    site: CallSite<'_>,
    settings: &ResolvedSettings,
) -> Error {
    match classify(store, error, site, settings) {
        Error::Trap { message, .. } => Error::Instantiate {
            plugin: site.plugin.to_owned(),
            reason: message,
        },
        other => other,
    }
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
