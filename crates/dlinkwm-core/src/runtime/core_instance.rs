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
        let instance = pre
            .instantiate(&mut *store)
            .map_err(|error| not_instantiated(store, error, site, settings))?;
        let (funcs, initialize) = Self::resolve(store, instance, exports);
        if let Some(initialize) = initialize {
            let site = CallSite {
                plugin,
                entry: dlinkwm_abi::export::INITIALIZE,
            };
            initialize
                .call(&mut *store, ())
                .map_err(|error| classify(store, error, site, settings))?;
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
        let instance = match pre.instantiate_async(&mut *store).await {
            Ok(instance) => instance,
            Err(error) => return Err(not_instantiated(store, error, site, settings)),
        };
        let (funcs, initialize) = Self::resolve(store, instance, exports);
        if let Some(initialize) = initialize {
            let site = CallSite {
                plugin,
                entry: dlinkwm_abi::export::INITIALIZE,
            };
            let done = initialize.call_async(&mut *store, ()).await;
            done.map_err(|error| classify(store, error, site, settings))?;
        }
        Ok(funcs)
    }

    /// Resolves every export the calls will need, once; returns `_initialize` too, to be run.
    fn resolve(
        store: &mut Store<StoreState>,
        instance: wasmtime::Instance,
        exports: &Arc<ExportTable>,
    ) -> (Self, Option<TypedFunc<(), ()>>) {
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
        let initialize =
            func(&mut *store, &exports.initialize).and_then(|f| f.typed::<(), ()>(&*store).ok());
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
        (funcs, initialize)
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
