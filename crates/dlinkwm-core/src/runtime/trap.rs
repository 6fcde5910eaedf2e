//! How a call fails: which call it was ([`CallSite`]), the input bound checked before any guest
//! code runs, and the classification of whatever wasmtime reports (an interrupt, fuel, a refused
//! memory growth, a guest fault, a panic the guest reported, a trap) into the [`Error`] that
//! names its cause. Only the input check runs on the success path.

use wasmtime::{Store, Trap};

use crate::config::ResolvedSettings;
use crate::error::{Error, Result};
use crate::runtime::guest::{GuestFault, Refusal};
use crate::runtime::store::StoreState;

/// Which call an error happened in, for messages.
#[derive(Clone, Copy)]
pub(crate) struct CallSite<'a> {
    pub(crate) plugin: &'a str,
    pub(crate) entry: &'a str,
}

/// Refuses an input above `max_input_bytes` before any guest code runs.
#[inline(always)]
pub(crate) fn check_input(
    site: CallSite<'_>,
    input: &[u8],
    settings: &ResolvedSettings,
) -> Result<()> {
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

/// Turns whatever wasmtime reported into the error that names its cause. Runs only on the
/// failure path.
#[cold]
pub(crate) fn classify(
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
    if let Some(Refusal(message)) = error.downcast_ref::<Refusal>() {
        return Error::Guest {
            plugin,
            entry,
            message: message.clone(),
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
