//! The functions DlinkWM provides to core-module plugins (ABI v1's `dlinkwm` module, WASI preview
//! 1 and the original `host.dlinkwm_host_print`), and what both kinds of plugin's imports share:
//! a host call and a guest's log line. Every value a guest hands them is checked (`guest`).
//!
//! Every length here is a guest's `u32` (carried in an `i32`) or a host buffer bounded before it
//! is filled; none is converted with a bare `as` that could truncate
//! (`clippy::cast_possible_truncation` is denied in this module).
#![deny(clippy::cast_possible_truncation)]

use std::io::Write as _;
use std::panic::AssertUnwindSafe;

use dlinkwm_abi::{Format, LogLevel, Status, import, legacy};
use wasmtime::{Caller, Linker};

use crate::config::Stdio;
use crate::runtime::guest::{
    abi_len, bounded_message, fault, guest_len, guest_range, guest_str, truncate,
};
use crate::runtime::host_methods::{CallerInfo, Convention, HostCallError};
use crate::runtime::store::StoreState;

fn memory_and_state<'a>(
    caller: &'a mut Caller<'_, StoreState>,
) -> wasmtime::Result<(&'a mut [u8], &'a mut StoreState)> {
    let memory = caller
        .data()
        .memory
        .ok_or_else(|| fault("the plugin exports no memory named `memory`".to_owned()))?;
    Ok(memory.data_and_store_mut(caller))
}

pub(crate) fn add_host_call(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        import::MODULE,
        import::HOST_CALL,
        |mut caller: Caller<'_, StoreState>,
         name_ptr: i32,
         name_len: i32,
         format: i32,
         input_ptr: i32,
         input_len: i32|
         -> wasmtime::Result<i32> {
            let (data, state) = memory_and_state(&mut caller)?;
            // Checked before the name is read: a name as large as guest memory is never copied,
            // decoded or logged.
            if guest_len(name_len) > dlinkwm_abi::MAX_HOST_METHOD_NAME {
                return Ok(name_too_long(state, guest_len(name_len)).code());
            }
            let method = guest_str(data, name_ptr, name_len, "host method name")?;
            let input_range = guest_range(
                data.len(),
                input_ptr,
                guest_len(input_len),
                "host call input",
            )?;
            Ok(host_call(
                state,
                method,
                format,
                &data[input_range],
                Convention::Dlinkwm,
            )
            .code())
        },
    )?;
    Ok(())
}

pub(crate) fn add_host_call_async(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        import::MODULE,
        import::HOST_CALL,
        |mut caller: Caller<'_, StoreState>,
         (name_ptr, name_len, format, input_ptr, input_len): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let (data, state) = memory_and_state(&mut caller)?;
                // The same checks as the sync host call; the guest's memory is borrowed, not
                // copied, while the method runs (the guest is suspended meanwhile).
                if guest_len(name_len) > dlinkwm_abi::MAX_HOST_METHOD_NAME {
                    return Ok(name_too_long(state, guest_len(name_len)).code());
                }
                let method = guest_str(data, name_ptr, name_len, "host method name")?;
                let input_range = guest_range(
                    data.len(),
                    input_ptr,
                    guest_len(input_len),
                    "host call input",
                )?;
                let status = host_call_async(
                    state,
                    method,
                    format,
                    &data[input_range],
                    Convention::Dlinkwm,
                )
                .await?;
                Ok(status.code())
            })
        },
    )?;
    Ok(())
}

pub(crate) fn add_abi(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        import::MODULE,
        import::SET_OUTPUT,
        |mut caller: Caller<'_, StoreState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let (data, state) = memory_and_state(&mut caller)?;
            let range = guest_range(data.len(), ptr, guest_len(len), "output")?;
            if range.len() > state.call.max_output_bytes {
                state.call.output_overflow = Some(range.len());
                return Ok(());
            }
            state.call.output.clear();
            state.call.output.extend_from_slice(&data[range]);
            Ok(())
        },
    )?;
    linker.func_wrap(
        import::MODULE,
        import::SET_ERROR,
        |mut caller: Caller<'_, StoreState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let (data, state) = memory_and_state(&mut caller)?;
            // An error message is for people: invalid UTF-8 is replaced rather than refused, so
            // a guest's error is never lost.
            let range = guest_range(data.len(), ptr, guest_len(len), "error message")?;
            state.call.error = Some(bounded_message(&data[range]));
            Ok(())
        },
    )?;
    linker.func_wrap(
        import::MODULE,
        import::HOST_RESULT_LEN,
        |caller: Caller<'_, StoreState>| -> wasmtime::Result<i32> {
            // `host_call` bounds every answer and message to a u32 length when it stores it.
            let len = caller.data().call.host_result.len();
            abi_len(len).ok_or_else(|| fault(format!("host result of {len} bytes")))
        },
    )?;
    linker.func_wrap(
        import::MODULE,
        import::HOST_RESULT_READ,
        |mut caller: Caller<'_, StoreState>, ptr: i32| -> wasmtime::Result<()> {
            let (data, state) = memory_and_state(&mut caller)?;
            let result = &state.call.host_result;
            let range = guest_range(data.len(), ptr, result.len(), "host result buffer")?;
            data[range].copy_from_slice(result);
            Ok(())
        },
    )?;
    linker.func_wrap(
        import::MODULE,
        import::LOG,
        |mut caller: Caller<'_, StoreState>,
         level: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<()> {
            let (data, state) = memory_and_state(&mut caller)?;
            let range = guest_range(data.len(), ptr, guest_len(len), "log message")?;
            if state.log_budget.take(&state.context.name, range.len()) {
                guest_log(
                    &state.context.name,
                    LogLevel::from_code(level),
                    &data[range],
                );
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// Logs one line of a guest as a `tracing` event (target `dlinkwm::guest`). At most 64 KiB of
/// it; a line no subscriber wants is not even decoded.
pub(crate) fn guest_log(plugin: &str, level: LogLevel, line: &[u8]) {
    let line = &line[..line.len().min(MAX_PRINT)];
    macro_rules! guest_event {
        ($level:expr) => {
            if tracing::enabled!(target: "dlinkwm::guest", $level) {
                let message = String::from_utf8_lossy(line);
                tracing::event!(target: "dlinkwm::guest", $level, plugin, "{message}");
            }
        };
    }
    match level {
        LogLevel::Error => guest_event!(tracing::Level::ERROR),
        LogLevel::Warn => guest_event!(tracing::Level::WARN),
        LogLevel::Info => guest_event!(tracing::Level::INFO),
        LogLevel::Debug => guest_event!(tracing::Level::DEBUG),
        _ => guest_event!(tracing::Level::TRACE),
    }
}

/// Runs one host call for the guest, leaving the answer or the error message in
/// `state.call.host_result`.
pub(crate) fn host_call(
    state: &mut StoreState,
    method: &str,
    format: i32,
    input: &[u8],
    convention: Convention,
) -> Status {
    state.call.host_result.clear();
    let outcome = admit(state, method, format).and_then(|format| {
        let context = &state.context;
        let caller = CallerInfo {
            plugin: &context.name,
            version: state.version,
            convention,
        };
        let result = &mut state.call.host_result;
        // A panicking host method is the application's bug, not the guest's: the guest gets an
        // error value and the host carries on.
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            context.host.call(caller, method, format, input, result)
        }))
        .unwrap_or_else(|panic| Err(panicked(&context.name, method, &*panic)))
    });
    conclude(state, method, outcome)
}

/// [`host_call`] for an async call: a method that answers later is awaited while the guest's
/// fiber is suspended. Its panic, like a sync method's, reaches the guest as an error value.
///
/// # Errors
/// [`wasmtime::Trap::Interrupt`] when the call's deadline passes while the method is awaited
/// (the epoch cannot interrupt a guest suspended here): the call ends with `Timeout`.
pub(crate) async fn host_call_async(
    state: &mut StoreState,
    method: &str,
    format: i32,
    input: &[u8],
    convention: Convention,
) -> wasmtime::Result<Status> {
    use futures_util::FutureExt as _;
    state.call.host_result.clear();
    let outcome = match admit(state, method, format) {
        Err(refused) => Err(refused),
        Ok(format) => {
            let Some(left) = crate::runtime::waits::time_left(state) else {
                return Err(crate::runtime::waits::interrupted());
            };
            let context = state.context.clone();
            let caller = CallerInfo {
                plugin: &context.name,
                version: state.version,
                convention,
            };
            let result = &mut state.call.host_result;
            let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
                context
                    .host
                    .call_async(caller, method, format, input, result)
            }))
            .unwrap_or_else(|panic| Err(panicked(&context.name, method, &*panic)));
            match started {
                Ok(Some(later)) => {
                    let answered =
                        tokio::time::timeout(left, AssertUnwindSafe(later).catch_unwind()).await;
                    match answered {
                        Ok(Ok(Ok(answer))) => {
                            *result = answer;
                            Ok(())
                        }
                        Ok(Ok(Err(error))) => Err(error),
                        Ok(Err(panic)) => Err(panicked(&context.name, method, &*panic)),
                        // The method's future is dropped with the call.
                        Err(_elapsed) => return Err(crate::runtime::waits::interrupted()),
                    }
                }
                Ok(None) => Ok(()),
                Err(error) => Err(error),
            }
        }
    };
    Ok(conclude(state, method, outcome))
}

/// The checks before a host method runs: the plugin may call it, and the format is known.
fn admit(state: &mut StoreState, method: &str, format: i32) -> Result<Format, HostCallError> {
    if !state.settings.allows_host_method(method) {
        // Logged once per call: a guest looping over denied calls cannot flood the log.
        if state.call.host_calls_denied == 0 {
            tracing::warn!(plugin = %state.context.name, method, "host method call denied by configuration");
        }
        state.call.host_calls_denied = state.call.host_calls_denied.saturating_add(1);
        return Err(HostCallError::PermissionDenied(method.to_owned()));
    }
    Format::from_code(format).ok_or_else(|| HostCallError::UnsupportedFormat {
        method: method.to_owned(),
        format,
    })
}

/// The error value a guest gets for a host method that panicked.
#[cold]
fn panicked(plugin: &str, method: &str, panic: &(dyn std::any::Any + Send)) -> HostCallError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    tracing::error!(plugin, method, %message, "host method panicked");
    HostCallError::Failed(format!("host method `{method}` panicked: {message}"))
}

/// The status of a host call; its answer (bounded) or its error message is left in
/// `state.call.host_result`.
fn conclude(state: &mut StoreState, method: &str, outcome: Result<(), HostCallError>) -> Status {
    let result = &mut state.call.host_result;
    // Every answer the guest may read fits the ABI's u32 length.
    let limit = state.settings.max_output_bytes.min(u32::MAX as usize);
    let status = match outcome {
        Ok(()) if result.len() <= limit => return Status::Ok,
        Ok(()) => Status::Error,
        Err(HostCallError::UnknownMethod(_)) => Status::UnknownMethod,
        Err(HostCallError::PermissionDenied(_)) => Status::PermissionDenied,
        Err(HostCallError::UnsupportedFormat { .. }) => Status::UnsupportedFormat,
        Err(_) => Status::Error,
    };
    let message = match outcome {
        Ok(()) => format!(
            "host method `{method}` answered {} bytes, over the limit of {limit}",
            result.len(),
        ),
        Err(error) => error.to_string(),
    };
    set_message(result, &message, limit);
    status
}

/// Answers a host call whose method name is longer than any method can have.
#[cold]
fn name_too_long(state: &mut StoreState, len: usize) -> Status {
    let message = format!(
        "host method name of {len} bytes is longer than the maximum of {} bytes",
        dlinkwm_abi::MAX_HOST_METHOD_NAME
    );
    let limit = state.settings.max_output_bytes.min(u32::MAX as usize);
    set_message(&mut state.call.host_result, &message, limit);
    Status::UnknownMethod
}

/// Leaves `message` as a host call's answer, cut to [`dlinkwm_abi::MAX_ERROR_MESSAGE`] and to
/// `limit` bytes at a character boundary.
fn set_message(result: &mut Vec<u8>, message: &str, limit: usize) {
    let message = truncate(message, limit.min(dlinkwm_abi::MAX_ERROR_MESSAGE));
    result.clear();
    result.extend_from_slice(message.as_bytes());
}

/// The longest string `host.dlinkwm_host_print` reads before giving up on finding its NUL.
const MAX_PRINT: usize = 64 * 1024;

pub(crate) fn add_legacy(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        legacy::MODULE,
        legacy::PRINT,
        |mut caller: Caller<'_, StoreState>, ptr: i32| -> wasmtime::Result<()> {
            let (data, state) = memory_and_state(&mut caller)?;
            let start = guest_len(ptr);
            let tail = data.get(start..).ok_or_else(|| {
                fault(format!(
                    "string pointer {start:#x} is outside guest memory of {} bytes",
                    data.len()
                ))
            })?;
            let window = &tail[..tail.len().min(MAX_PRINT)];
            let end = window.iter().position(|&byte| byte == 0).ok_or_else(|| {
                fault(format!(
                    "string at {start:#x} has no NUL terminator within {MAX_PRINT} bytes"
                ))
            })?;
            // Printing to an inherited stdout is like a guest's own WASI write there: the
            // operator's grant, not a log line, so it is not counted.
            if state.stdio == Stdio::Log && !state.log_budget.take(&state.context.name, end) {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&window[..end]);
            match state.stdio {
                Stdio::Inherit => {
                    let mut stdout = std::io::stdout().lock();
                    // Like a guest's own write to an inherited stdout, a closed pipe is the
                    // reader's business, not a reason to fail the plugin.
                    let _ = writeln!(stdout, "{text}");
                }
                Stdio::Log => {
                    if let Some(stdout) = &state.stdout {
                        stdout.write_bytes(text.as_bytes());
                        stdout.write_bytes(b"\n");
                    }
                }
                Stdio::Null => {}
            }
            Ok(())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        let huge = "é".repeat(dlinkwm_abi::MAX_ERROR_MESSAGE);
        let kept = bounded_message(huge.as_bytes());
        assert!(kept.len() <= dlinkwm_abi::MAX_ERROR_MESSAGE);
        assert!(kept.chars().all(|c| c == 'é'));
        let mut result = Vec::new();
        set_message(&mut result, &huge, 10);
        assert_eq!(result, "ééééé".as_bytes());
    }
}
