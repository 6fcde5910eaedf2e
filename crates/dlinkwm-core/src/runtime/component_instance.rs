//! The component path of an `Instance`: instantiation through the world's bindings, and the
//! calls on the world's exports (`call`, `entries`, `abi-version`, `save-state`,
//! `restore-state`), with the same limits and errors as core modules.

use dlinkwm_abi::Format;
use wasmtime::Store;

use crate::config::ResolvedSettings;
use crate::error::{Error, Result};
use crate::runtime::component::{
    AsyncBindings, AsyncBindingsPre, Bindings, BindingsPre, from_format,
};
use crate::runtime::guest::bounded_message;
use crate::runtime::store::{StoreState, prepare};
use crate::runtime::trap::{CallSite, check_input, classify};

/// Instantiates a component plugin in `store`.
pub(crate) fn instantiate(
    store: &mut Store<StoreState>,
    pre: &BindingsPre<StoreState>,
    plugin: &str,
    settings: &ResolvedSettings,
) -> Result<Bindings> {
    let site = CallSite {
        plugin,
        entry: "instantiation",
    };
    prepare(store);
    pre.instantiate(&mut *store)
        .map_err(|error| match classify(store, error, site, settings) {
            Error::Trap { message, .. } => Error::Instantiate {
                plugin: plugin.to_owned(),
                reason: message,
            },
            other => other,
        })
}

/// A component's entries (its `entries` export).
pub(crate) fn entries(
    bindings: &Bindings,
    store: &mut Store<StoreState>,
    plugin: &str,
) -> Result<Vec<String>> {
    let settings = store.data().context.settings.load_full();
    prepare(store);
    let site = CallSite {
        plugin,
        entry: "entries",
    };
    bindings
        .call_entries(&mut *store)
        .map_err(|error| classify(store, error, site, &settings))
}

/// Calls the `abi-version` export (the store is prepared).
pub(crate) fn abi_version(
    bindings: &Bindings,
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    settings: &ResolvedSettings,
) -> Result<i32> {
    let version = bindings
        .call_abi_version(&mut *store)
        .map_err(|error| classify(store, error, site, settings))?;
    Ok(i32::try_from(version).unwrap_or(i32::MAX))
}

/// Calls a component's entry through its `call` export, by name; its output replaces the
/// call's output buffer.
pub(crate) fn call(
    bindings: &Bindings,
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
    take_answer(store, site, answer, settings)
}

/// An entry's answer: its output becomes the call's output, within the output limit.
fn take_answer(
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    answer: Result<Vec<u8>, String>,
    settings: &ResolvedSettings,
) -> Result<()> {
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
            message: bounded_message(message.as_bytes()),
        }),
    }
}

/// Asks the component for its state (`save-state`).
pub(crate) fn save_state(
    bindings: &Bindings,
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    settings: &ResolvedSettings,
) -> Result<Option<Vec<u8>>> {
    prepare(store);
    bindings
        .call_save_state(&mut *store)
        .map_err(|error| classify(store, error, site, settings))
}

/// Gives the component `state` (`restore-state`). Returns whether it accepted it; its refusal
/// is the error it gave.
pub(crate) fn restore_state(
    bindings: &Bindings,
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    state: &[u8],
    settings: &ResolvedSettings,
) -> Result<bool> {
    prepare(store);
    let answer = bindings.call_restore_state(&mut *store, state);
    restored(store, site, answer, settings)
}

/// What `restore-state` answered: accepted, refused with the guest's error, or a fault.
fn restored(
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    answer: wasmtime::Result<Result<(), String>>,
    settings: &ResolvedSettings,
) -> Result<bool> {
    match answer {
        Ok(Ok(())) => Ok(true),
        Ok(Err(message)) => Err(Error::Guest {
            plugin: site.plugin.to_owned(),
            entry: site.entry.to_owned(),
            message,
        }),
        Err(error) => Err(classify(store, error, site, settings)),
    }
}

/// [`instantiate`] for a component called with `call_async`.
pub(crate) async fn instantiate_async(
    store: &mut Store<StoreState>,
    pre: &AsyncBindingsPre<StoreState>,
    plugin: &str,
    settings: &ResolvedSettings,
) -> Result<AsyncBindings> {
    let site = CallSite {
        plugin,
        entry: "instantiation",
    };
    prepare(store);
    match pre.instantiate_async(&mut *store).await {
        Ok(bindings) => Ok(bindings),
        Err(error) => Err(match classify(store, error, site, settings) {
            Error::Trap { message, .. } => Error::Instantiate {
                plugin: plugin.to_owned(),
                reason: message,
            },
            other => other,
        }),
    }
}

/// [`entries`], awaited.
pub(crate) async fn entries_async(
    bindings: &AsyncBindings,
    store: &mut Store<StoreState>,
    plugin: &str,
) -> Result<Vec<String>> {
    let settings = store.data().context.settings.load_full();
    prepare(store);
    let site = CallSite {
        plugin,
        entry: "entries",
    };
    let answer = bindings.call_entries(&mut *store).await;
    answer.map_err(|error| classify(store, error, site, &settings))
}

/// [`abi_version`], awaited (the store is prepared).
pub(crate) async fn abi_version_async(
    bindings: &AsyncBindings,
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    settings: &ResolvedSettings,
) -> Result<i32> {
    let answer = bindings.call_abi_version(&mut *store).await;
    let version = answer.map_err(|error| classify(store, error, site, settings))?;
    Ok(i32::try_from(version).unwrap_or(i32::MAX))
}

/// [`call`], awaited.
pub(crate) async fn call_async(
    bindings: &AsyncBindings,
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    format: Format,
    input: &[u8],
    settings: &ResolvedSettings,
) -> Result<()> {
    check_input(site, input, settings)?;
    prepare(store);
    let answer = bindings
        .call_call(&mut *store, site.entry, from_format(format), input)
        .await;
    let answer = answer.map_err(|error| classify(store, error, site, settings))?;
    take_answer(store, site, answer, settings)
}

/// [`save_state`], awaited.
pub(crate) async fn save_state_async(
    bindings: &AsyncBindings,
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    settings: &ResolvedSettings,
) -> Result<Option<Vec<u8>>> {
    prepare(store);
    let answer = bindings.call_save_state(&mut *store).await;
    answer.map_err(|error| classify(store, error, site, settings))
}

/// [`restore_state`], awaited.
pub(crate) async fn restore_state_async(
    bindings: &AsyncBindings,
    store: &mut Store<StoreState>,
    site: CallSite<'_>,
    state: &[u8],
    settings: &ResolvedSettings,
) -> Result<bool> {
    prepare(store);
    let answer = bindings.call_restore_state(&mut *store, state).await;
    restored(store, site, answer, settings)
}
