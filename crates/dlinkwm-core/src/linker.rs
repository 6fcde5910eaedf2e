//! The functions DlinkWM provides to plugins (ABI v1's `dlinkwm` module, WASI preview 1 and the
//! original `host.dlinkwm_host_print`), and the checks on every value a guest hands them.

use std::io::Write as _;
use std::panic::AssertUnwindSafe;

use dlinkwm_abi::{Format, LogLevel, Status, import, legacy};
use wasmtime::{Caller, Linker};

use crate::config::Stdio;
use crate::host_methods::{CallerInfo, HostCallError};
use crate::instance::StoreState;

/// A guest handed the host something invalid. Raised as a trap, it ends the call and becomes
/// [`crate::Error::GuestMemory`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GuestFault(pub(crate) String);

fn fault(reason: String) -> wasmtime::Error {
    wasmtime::Error::new(GuestFault(reason))
}

/// The byte range `ptr..ptr + len` of guest memory, checked. Pointers and lengths are `u32` in
/// wasm32, whatever the sign of the `i32` that carried them.
pub(crate) fn guest_range(
    memory_len: usize,
    ptr: i32,
    len: i32,
    what: &str,
) -> Result<std::ops::Range<usize>, wasmtime::Error> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    match start.checked_add(len) {
        Some(end) if end <= memory_len => Ok(start..end),
        _ => Err(fault(format!(
            "{what} at {start:#x} with length {len} is outside guest memory of {memory_len} bytes"
        ))),
    }
}

fn guest_str<'a>(data: &'a [u8], ptr: i32, len: i32, what: &str) -> wasmtime::Result<&'a str> {
    let range = guest_range(data.len(), ptr, len, what)?;
    std::str::from_utf8(&data[range])
        .map_err(|error| fault(format!("{what} is not UTF-8: {error}")))
}

fn memory_and_state<'a>(
    caller: &'a mut Caller<'_, StoreState>,
) -> wasmtime::Result<(&'a mut [u8], &'a mut StoreState)> {
    let memory = caller
        .data()
        .memory
        .ok_or_else(|| fault("the plugin exports no memory named `memory`".to_owned()))?;
    Ok(memory.data_and_store_mut(caller))
}

/// Adds every function DlinkWM provides to plugins to `linker`: WASI preview 1, ABI v1's
/// `dlinkwm` module, and the original `host.dlinkwm_host_print`.
///
/// Every [`crate::Engine`] builds its linker with this; hosts that assemble their own wasmtime
/// linker can call it too.
///
/// # Errors
/// When a function of the same name is already defined in `linker`.
pub fn register_host_functions(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |state: &mut StoreState| &mut state.wasi)?;
    add_abi(linker)?;
    add_legacy(linker)?;
    Ok(())
}

/// Builds the linker every plugin of an engine is instantiated with.
pub(crate) fn build(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    register_host_functions(&mut linker)?;
    Ok(linker)
}

fn add_abi(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        import::MODULE,
        import::SET_OUTPUT,
        |mut caller: Caller<'_, StoreState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let (data, state) = memory_and_state(&mut caller)?;
            let range = guest_range(data.len(), ptr, len, "output")?;
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
            let range = guest_range(data.len(), ptr, len, "error message")?;
            let limit = range.len().min(state.call.max_output_bytes);
            let message = String::from_utf8_lossy(&data[range.start..range.start + limit]);
            state.call.error = Some(message.into_owned());
            Ok(())
        },
    )?;
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
            let method = guest_str(data, name_ptr, name_len, "host method name")?;
            let input = &data[guest_range(data.len(), input_ptr, input_len, "host call input")?];
            Ok(host_call(state, method, format, input).code())
        },
    )?;
    linker.func_wrap(
        import::MODULE,
        import::HOST_RESULT_LEN,
        |caller: Caller<'_, StoreState>| -> i32 {
            // The answer was bounded by `max_output_bytes` when it was produced.
            caller.data().call.host_result.len() as i32
        },
    )?;
    linker.func_wrap(
        import::MODULE,
        import::HOST_RESULT_READ,
        |mut caller: Caller<'_, StoreState>, ptr: i32| -> wasmtime::Result<()> {
            let (data, state) = memory_and_state(&mut caller)?;
            let result = &state.call.host_result;
            let range = guest_range(data.len(), ptr, result.len() as i32, "host result buffer")?;
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
            let range = guest_range(data.len(), ptr, len, "log message")?;
            guest_log(
                &state.context.name,
                LogLevel::from_code(level),
                &data[range],
            );
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
pub(crate) fn host_call(state: &mut StoreState, method: &str, format: i32, input: &[u8]) -> Status {
    let result = &mut state.call.host_result;
    result.clear();
    let context = &state.context;
    let settings = &state.settings;
    let outcome = if !settings.allows_host_method(method) {
        tracing::warn!(plugin = %context.name, method, "host method call denied by configuration");
        Err(HostCallError::PermissionDenied(method.to_owned()))
    } else if let Some(format) = Format::from_code(format) {
        let caller = CallerInfo {
            plugin: &context.name,
            version: state.version,
        };
        // A panicking host method is the application's bug, not the guest's: the guest gets an
        // error value and the host carries on.
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            context.host.call(caller, method, format, input, result)
        }))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(plugin = %context.name, method, %message, "host method panicked");
            Err(HostCallError::Failed(format!(
                "host method `{method}` panicked: {message}"
            )))
        })
    } else {
        Err(HostCallError::UnsupportedFormat {
            method: method.to_owned(),
            format,
        })
    };
    let status = match outcome {
        Ok(()) if result.len() <= settings.max_output_bytes => return Status::Ok,
        Ok(()) => Status::Error,
        Err(HostCallError::UnknownMethod(_)) => Status::UnknownMethod,
        Err(HostCallError::PermissionDenied(_)) => Status::PermissionDenied,
        Err(HostCallError::UnsupportedFormat { .. }) => Status::UnsupportedFormat,
        Err(_) => Status::Error,
    };
    let message = match outcome {
        Ok(()) => format!(
            "host method `{method}` answered {} bytes, over the limit of {}",
            result.len(),
            settings.max_output_bytes
        ),
        Err(error) => error.to_string(),
    };
    result.clear();
    result.extend_from_slice(message.as_bytes());
    status
}

/// The longest string `host.dlinkwm_host_print` reads before giving up on finding its NUL.
const MAX_PRINT: usize = 64 * 1024;

fn add_legacy(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        legacy::MODULE,
        legacy::PRINT,
        |mut caller: Caller<'_, StoreState>, ptr: i32| -> wasmtime::Result<()> {
            let (data, state) = memory_and_state(&mut caller)?;
            let start = ptr as u32 as usize;
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
    fn guest_range_rejects_everything_outside_memory() {
        assert_eq!(guest_range(100, 10, 20, "x").unwrap(), 10..30);
        assert_eq!(guest_range(100, 100, 0, "x").unwrap(), 100..100);
        assert!(guest_range(100, 90, 11, "x").is_err());
        assert!(guest_range(100, -1, 1, "x").is_err());
        assert!(guest_range(100, 0, -1, "x").is_err());
        // A length of 4 GiB - 1 (the guest's -1) never fits.
        assert!(guest_range(1 << 20, 0, -1, "x").is_err());
        let error = guest_range(16, 8, 9, "output").unwrap_err();
        assert!(error.downcast_ref::<GuestFault>().is_some());
    }
}
