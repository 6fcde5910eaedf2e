//! Extism plugins: DlinkWM's own implementation of the Extism kernel (`extism:host/env`) on the
//! host side, and Extism host functions (`extism:host/user`) served by the host-method registry.
//! Written from Extism's specification and documented behaviour (docs/extism.md), not from its
//! code.
//!
//! The kernel's memory is a heap the host keeps per instance: a block is a run of bytes at a
//! 64-bit address (0 is "no block"), and a plugin reads and writes it through `load_*`/`store_*`.
//! The heap counts in the instance's memory budget (`max_memory_bytes`) with its linear memory;
//! it is emptied at the start of every call (Extism's `reset`), keeps its capacity, and is
//! dropped with the instance. Vars live beside it, kept across calls and handed over on a reload.
//!
//! Every address and length a plugin hands over is checked: one outside the heap, or a handle
//! that is not a live block where one is needed, ends the call with
//! [`crate::Error::GuestMemory`] (Extism's kernel answers 0 or ignores it; a plugin that does it
//! has a bug either way). `length` of anything but a live block is 0, and `free` of it does
//! nothing, as in Extism: the PDKs rely on both.
#![deny(clippy::cast_possible_truncation)]

use std::ops::Range;
use std::sync::Arc;

use dlinkwm_abi::{Format, LogLevel, Status};
use wasmtime::{Caller, Linker, Val, ValType};

use crate::error::{Error, Result};
use crate::runtime::extism_kernel::{Kernel, size, wide};
use crate::runtime::guest::{fault, refusal};
use crate::runtime::host_methods::Convention;
use crate::runtime::limits::Limiter;
use crate::runtime::store::StoreState;

/// The import module of the Extism kernel and its host functions.
pub(crate) const ENV_MODULE: &str = "extism:host/env";
/// The C/Rust constructors, which Extism runs instead of `_initialize` when exported.
pub(crate) const CALL_CTORS: &str = "__wasm_call_ctors";
/// GHC's runtime initialiser (Haskell PDK).
pub(crate) const HS_INIT: &str = "hs_init";

/// Whether export `name` initialises an instance (run once, never called as a function).
pub(crate) fn is_initializer(name: &str) -> bool {
    matches!(name, "_initialize" | CALL_CTORS | HS_INIT)
}

/// The largest HTTP request description (`{"url", "method", "headers"}`) read.
const MAX_HTTP_REQUEST: usize = 1 << 20;

/// The kernel and the memory budget of the store, or the fault of a store without a kernel
/// (an instance of another kind of plugin, which cannot import these functions).
fn parts(state: &mut StoreState) -> wasmtime::Result<(&mut Kernel, &mut Limiter)> {
    let StoreState {
        extism, limiter, ..
    } = state;
    let kernel = extism
        .as_deref_mut()
        .ok_or_else(|| fault("this instance has no Extism kernel".to_owned()))?;
    Ok((kernel, limiter))
}

fn kernel(state: &mut StoreState) -> wasmtime::Result<&mut Kernel> {
    parts(state).map(|(kernel, _)| kernel)
}

/// A kernel value of the guest (`i64`) as the unsigned address or length it carries.
fn unsigned(value: i64) -> u64 {
    value.cast_unsigned()
}

/// An address or length as the guest's `i64`.
fn signed(value: u64) -> i64 {
    value.cast_signed()
}

/// The lowest level a subscriber takes from plugins, in Extism's numbering (trace 0 ..
/// error 4), or `i32::MAX` when it takes none.
fn log_level() -> i32 {
    [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ]
    .into_iter()
    .zip(0..)
    .find(|(level, _)| level_enabled(*level))
    .map_or(i32::MAX, |(_, number)| number)
}

/// Logs the text of block `handle` at `level` (within the call's log budget) and frees it.
fn log(state: &mut StoreState, level: LogLevel, handle: u64) -> wasmtime::Result<()> {
    let StoreState {
        extism,
        log_budget,
        context,
        ..
    } = state;
    let kernel = extism
        .as_deref_mut()
        .ok_or_else(|| fault("this instance has no Extism kernel".to_owned()))?;
    if !level_enabled(level) {
        // Nobody reads it: freed unread, as Extism does.
        kernel.free(handle);
        return Ok(());
    }
    let line = kernel.bytes(handle, "log message")?;
    if log_budget.take(&context.name, line.len()) {
        crate::runtime::linker::guest_log(&context.name, level, line);
    }
    kernel.free(handle);
    Ok(())
}

/// Whether a subscriber takes plugin log lines at `level`.
fn level_enabled(level: LogLevel) -> bool {
    use tracing::Level;
    match level {
        LogLevel::Error => tracing::enabled!(target: "dlinkwm::guest", Level::ERROR),
        LogLevel::Warn => tracing::enabled!(target: "dlinkwm::guest", Level::WARN),
        LogLevel::Info => tracing::enabled!(target: "dlinkwm::guest", Level::INFO),
        LogLevel::Debug => tracing::enabled!(target: "dlinkwm::guest", Level::DEBUG),
        _ => tracing::enabled!(target: "dlinkwm::guest", Level::TRACE),
    }
}

/// Adds the Extism kernel (`extism:host/env`) to `linker`; `asynchronous` for the linker of
/// async plugins (an HTTP request then waits on a blocking thread, not the executor's).
pub(crate) fn add_env(linker: &mut Linker<StoreState>, asynchronous: bool) -> wasmtime::Result<()> {
    type C<'a> = Caller<'a, StoreState>;
    linker.func_wrap(ENV_MODULE, "alloc", |mut c: C<'_>, len: i64| {
        let (kernel, limiter) = parts(c.data_mut())?;
        kernel.alloc(unsigned(len), limiter).map(signed)
    })?;
    linker.func_wrap(ENV_MODULE, "free", |mut c: C<'_>, handle: i64| {
        kernel(c.data_mut())?.free(unsigned(handle));
        Ok(())
    })?;
    for name in ["length", "length_unsafe"] {
        linker.func_wrap(ENV_MODULE, name, |mut c: C<'_>, handle: i64| {
            Ok(signed(kernel(c.data_mut())?.length(unsigned(handle))))
        })?;
    }
    linker.func_wrap(ENV_MODULE, "load_u8", |mut c: C<'_>, address: i64| {
        let kernel = kernel(c.data_mut())?;
        let range = kernel.checked(unsigned(address), 1, "load_u8")?;
        Ok(kernel.byte_at(range))
    })?;
    linker.func_wrap(ENV_MODULE, "load_u64", |mut c: C<'_>, address: i64| {
        let kernel = kernel(c.data_mut())?;
        let range = kernel.checked(unsigned(address), 8, "load_u64")?;
        Ok(kernel.word_at(range))
    })?;
    linker.func_wrap(
        ENV_MODULE,
        "store_u8",
        |mut c: C<'_>, address: i64, byte: i32| {
            let kernel = kernel(c.data_mut())?;
            let range = kernel.checked(unsigned(address), 1, "store_u8")?;
            kernel.heap[range.start] = byte.to_le_bytes()[0];
            Ok(())
        },
    )?;
    linker.func_wrap(
        ENV_MODULE,
        "store_u64",
        |mut c: C<'_>, address: i64, value: i64| {
            let kernel = kernel(c.data_mut())?;
            let range = kernel.checked(unsigned(address), 8, "store_u64")?;
            kernel.heap[range].copy_from_slice(&value.to_le_bytes());
            Ok(())
        },
    )?;
    linker.func_wrap(ENV_MODULE, "input_length", |mut c: C<'_>| {
        Ok(signed(kernel(c.data_mut())?.input.1))
    })?;
    linker.func_wrap(ENV_MODULE, "input_offset", |mut c: C<'_>| {
        let kernel = kernel(c.data_mut())?;
        Ok(if kernel.input.1 == 0 {
            0
        } else {
            signed(kernel.input.0)
        })
    })?;
    linker.func_wrap(ENV_MODULE, "input_load_u8", |mut c: C<'_>, index: i64| {
        let kernel = kernel(c.data_mut())?;
        let range = input_range(kernel, unsigned(index), 1, "input_load_u8")?;
        Ok(kernel.byte_at(range))
    })?;
    linker.func_wrap(ENV_MODULE, "input_load_u64", |mut c: C<'_>, index: i64| {
        let kernel = kernel(c.data_mut())?;
        let range = input_range(kernel, unsigned(index), 8, "input_load_u64")?;
        Ok(kernel.word_at(range))
    })?;
    linker.func_wrap(
        ENV_MODULE,
        "input_set",
        |mut c: C<'_>, address: i64, len: i64| {
            let kernel = kernel(c.data_mut())?;
            let (address, len) = (unsigned(address), unsigned(len));
            kernel.checked(address, len, "input")?;
            kernel.input = (address, len);
            Ok(())
        },
    )?;
    linker.func_wrap(
        ENV_MODULE,
        "output_set",
        |mut c: C<'_>, address: i64, len: i64| {
            let kernel = kernel(c.data_mut())?;
            let (address, len) = (unsigned(address), unsigned(len));
            if address == 0 {
                // No block (a PDK's empty output after an earlier one): ignored, as in Extism.
                return Ok(());
            }
            if len == 0 {
                kernel.output = (0, 0);
                return Ok(());
            }
            kernel.checked(address, len, "output")?;
            kernel.output = (address, len);
            Ok(())
        },
    )?;
    linker.func_wrap(ENV_MODULE, "output_offset", |mut c: C<'_>| {
        Ok(signed(kernel(c.data_mut())?.output.0))
    })?;
    linker.func_wrap(ENV_MODULE, "output_length", |mut c: C<'_>| {
        Ok(signed(kernel(c.data_mut())?.output.1))
    })?;
    linker.func_wrap(ENV_MODULE, "error_set", |mut c: C<'_>, handle: i64| {
        kernel(c.data_mut())?.error = unsigned(handle);
        Ok(())
    })?;
    linker.func_wrap(ENV_MODULE, "error_get", |mut c: C<'_>| {
        Ok(signed(kernel(c.data_mut())?.error))
    })?;
    linker.func_wrap(ENV_MODULE, "reset", |mut c: C<'_>| {
        kernel(c.data_mut())?.reset();
        Ok(())
    })?;
    linker.func_wrap(ENV_MODULE, "memory_bytes", |mut c: C<'_>| {
        Ok(signed(wide(kernel(c.data_mut())?.counted)))
    })?;
    linker.func_wrap(ENV_MODULE, "config_get", |mut c: C<'_>, key: i64| {
        let state = c.data_mut();
        let settings = state.settings.clone();
        let (kernel, limiter) = parts(state)?;
        let name = kernel.text(unsigned(key), "config key")?;
        kernel.free(unsigned(key));
        match settings.config.get(&name) {
            Some(value) => kernel.new_block(value.as_bytes(), limiter).map(signed),
            None => Ok(0),
        }
    })?;
    linker.func_wrap(ENV_MODULE, "var_get", |mut c: C<'_>, key: i64| {
        let (kernel, limiter) = parts(c.data_mut())?;
        let name = kernel.text(unsigned(key), "var key")?;
        kernel.free(unsigned(key));
        let Some(value) = kernel.vars.get(&name) else {
            return Ok(0);
        };
        // (Cloned out: the block is allocated in the heap the vars sit beside.)
        let value = value.clone();
        kernel.new_block(&value, limiter).map(signed)
    })?;
    linker.func_wrap(
        ENV_MODULE,
        "var_set",
        |mut c: C<'_>, key: i64, value: i64| {
            let state = c.data_mut();
            let max = state.settings.max_var_bytes;
            let kernel = kernel(state)?;
            if max == 0 {
                return Err(refusal(
                    "vars are off for this plugin (max_var_bytes = 0)".to_owned(),
                ));
            }
            let (key, value) = (unsigned(key), unsigned(value));
            let name = kernel.text(key, "var key")?;
            if value == 0 {
                kernel.remove_var(&name);
            } else {
                // Checked against the bound before the value is copied.
                let len = size(kernel.length(value)).unwrap_or(usize::MAX);
                kernel.var_total(&name, len, max)?;
                let bytes = kernel.bytes(value, "var value")?.to_vec();
                kernel.set_var(name, bytes, max)?;
                kernel.free(value);
            }
            kernel.free(key);
            Ok(())
        },
    )?;
    for (name, level) in [
        ("log_trace", LogLevel::Trace),
        ("log_debug", LogLevel::Debug),
        ("log_info", LogLevel::Info),
        ("log_warn", LogLevel::Warn),
        ("log_error", LogLevel::Error),
    ] {
        linker.func_wrap(ENV_MODULE, name, move |mut c: C<'_>, handle: i64| {
            log(c.data_mut(), level, unsigned(handle))
        })?;
    }
    linker.func_wrap(ENV_MODULE, "get_log_level", |_: C<'_>| Ok(log_level()))?;
    linker.func_wrap(ENV_MODULE, "http_status_code", |mut c: C<'_>| {
        Ok(kernel(c.data_mut())?.http_status)
    })?;
    linker.func_wrap(ENV_MODULE, "http_headers", |mut c: C<'_>| {
        let (kernel, limiter) = parts(c.data_mut())?;
        match kernel.http_headers.take() {
            Some(headers) => {
                let handle = kernel.new_block(&headers, limiter);
                kernel.http_headers = Some(headers);
                handle.map(signed)
            }
            None => Ok(0),
        }
    })?;
    if asynchronous {
        linker.func_wrap_async(
            ENV_MODULE,
            "http_request",
            |mut c: C<'_>, (request, body): (i64, i64)| {
                Box::new(async move {
                    let prepared = http_prepare(c.data_mut(), unsigned(request), unsigned(body))?;
                    let Some(left) = crate::runtime::waits::time_left(c.data()) else {
                        return Err(crate::runtime::waits::interrupted());
                    };
                    let url = prepared.url.clone();
                    let sent = tokio::task::spawn_blocking(move || {
                        crate::runtime::extism_http::send(prepared, left)
                    });
                    let response = match tokio::time::timeout(left, sent).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(joined)) => Err(format!("the request thread failed: {joined}")),
                        Err(_elapsed) => return Err(crate::runtime::waits::interrupted()),
                    };
                    http_finish(c.data_mut(), &url, response)
                })
            },
        )?;
    } else {
        linker.func_wrap(
            ENV_MODULE,
            "http_request",
            |mut c: C<'_>, request: i64, body: i64| {
                let prepared = http_prepare(c.data_mut(), unsigned(request), unsigned(body))?;
                let Some(left) = crate::runtime::waits::time_left(c.data()) else {
                    return Err(crate::runtime::waits::interrupted());
                };
                let url = prepared.url.clone();
                let response = crate::runtime::extism_http::send(prepared, left);
                http_finish(c.data_mut(), &url, response)
            },
        )?;
    }
    Ok(())
}

/// The heap range of input bytes `index..index + len`.
fn input_range(
    kernel: &Kernel,
    index: u64,
    len: u64,
    what: &str,
) -> wasmtime::Result<Range<usize>> {
    let (start, input_len) = kernel.input;
    match index.checked_add(len) {
        Some(end) if end <= input_len => kernel.checked(start + index, len, what),
        _ => Err(fault(format!(
            "{what} at input index {index} is outside the input of {input_len} bytes"
        ))),
    }
}

/// Reads an `http_request`'s request and body blocks (freeing both) and checks the URL's host
/// against `allowed_hosts`.
fn http_prepare(
    state: &mut StoreState,
    request: u64,
    body: u64,
) -> wasmtime::Result<crate::runtime::extism_http::Request> {
    let settings = state.settings.clone();
    let (kernel, limiter) = parts(state)?;
    let json = kernel.bytes(request, "HTTP request")?;
    if json.len() > MAX_HTTP_REQUEST {
        return Err(refusal(format!(
            "the plugin's HTTP request description is {} bytes, over {MAX_HTTP_REQUEST}",
            json.len()
        )));
    }
    // The body is read only as far as the memory budget could hold it.
    let max_body = settings.max_http_response_bytes.min(limiter.room());
    let mut prepared =
        crate::runtime::extism_http::Request::parse(json, max_body).map_err(refusal)?;
    kernel.free(request);
    if body != 0 {
        prepared.body = Some(kernel.bytes(body, "HTTP request body")?.to_vec());
        kernel.free(body);
    }
    kernel.http_status = 0;
    kernel.http_headers = None;
    prepared
        .check_allowed(&settings.allowed_hosts)
        .map_err(refusal)?;
    Ok(prepared)
}

/// Puts a response in the kernel: its status, its headers, its body in a new block (0 when
/// empty); a failed request ends the call.
fn http_finish(
    state: &mut StoreState,
    url: &str,
    response: std::result::Result<crate::runtime::extism_http::Response, String>,
) -> wasmtime::Result<i64> {
    let response = response.map_err(|error| {
        if error == crate::runtime::extism_http::TIMEOUT {
            // The call's time ran out while it waited: `Error::Timeout`, as for a guest loop.
            crate::runtime::waits::interrupted()
        } else {
            refusal(format!("HTTP request to {url} failed: {error}"))
        }
    })?;
    let (kernel, limiter) = parts(state)?;
    kernel.http_status = i32::from(response.status);
    kernel.http_headers = Some(response.headers);
    kernel.new_block(&response.body, limiter).map(signed)
}

/// The host functions an Extism plugin imports from modules other than the kernel
/// (`extism:host/user`, or a namespace of its own), each checked to be one DlinkWM maps: handle
/// arguments (`i64`, up to [`dlinkwm_abi::MAX_EXTISM_ARGS`]), and no result or one handle.
pub(crate) fn host_functions(
    plugin: &str,
    module: &wasmtime::Module,
) -> Result<Vec<(String, String, wasmtime::FuncType)>> {
    let mut functions = Vec::new();
    for import in module.imports() {
        let namespace = import.module();
        if namespace == ENV_MODULE
            || namespace == "wasi_snapshot_preview1"
            || namespace == dlinkwm_abi::import::MODULE
        {
            continue;
        }
        let wasmtime::ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let handle = |ty: ValType| matches!(ty, ValType::I64);
        if ty.params().len() > dlinkwm_abi::MAX_EXTISM_ARGS
            || ty.results().len() > 1
            || !ty.params().all(handle)
            || !ty.results().all(handle)
        {
            return Err(Error::Instantiate {
                plugin: plugin.to_owned(),
                reason: format!(
                    "Extism host function `{namespace}.{}` has the signature {ty}; DlinkWM maps \
                     host functions of up to {} handle arguments (i64) and at most one handle \
                     result (docs/extism.md)",
                    import.name(),
                    dlinkwm_abi::MAX_EXTISM_ARGS
                ),
            });
        }
        functions.push((namespace.to_owned(), import.name().to_owned(), ty));
    }
    Ok(functions)
}

/// Defines the host functions `functions` (from [`host_functions`]) in `linker`: each calls
/// the host method of its name with the bytes of its argument's block (the frame of its
/// arguments' blocks when it has several: [`dlinkwm_abi::EXTISM_ARGS_FRAME`]), subject to the
/// plugin's `host_methods` allowlist, and answers a new block with the answer.
pub(crate) fn define_host_functions(
    linker: &mut Linker<StoreState>,
    functions: Vec<(String, String, wasmtime::FuncType)>,
    asynchronous: bool,
) -> wasmtime::Result<()> {
    for (namespace, name, ty) in functions {
        let name: Arc<str> = Arc::from(name);
        if asynchronous {
            linker.func_new_async(
                &namespace,
                &name.clone(),
                ty,
                move |mut caller, params, results| {
                    let name = name.clone();
                    Box::new(async move {
                        let (taken, input) = take_input(caller.data_mut(), &name, params)?;
                        let state = caller.data_mut();
                        let status = crate::runtime::linker::host_call_async(
                            state,
                            &name,
                            Format::Raw.code(),
                            input.bytes(&taken),
                            input.convention(),
                        )
                        .await;
                        state.extism = Some(taken);
                        answer(state, &name, status?, results)
                    })
                },
            )?;
        } else {
            linker.func_new(
                &namespace,
                &name.clone(),
                ty,
                move |mut caller, params, results| {
                    let (taken, input) = take_input(caller.data_mut(), &name, params)?;
                    let state = caller.data_mut();
                    let status = crate::runtime::linker::host_call(
                        state,
                        &name,
                        Format::Raw.code(),
                        input.bytes(&taken),
                        input.convention(),
                    );
                    state.extism = Some(taken);
                    answer(state, &name, status, results)
                },
            )?;
        }
    }
    Ok(())
}

/// What a host method is given: one argument's block in the heap, or the frame of several.
enum Input {
    Block(Range<usize>),
    Frame(Vec<u8>),
}

impl Input {
    fn bytes<'a>(&'a self, kernel: &'a Kernel) -> &'a [u8] {
        match self {
            Input::Block(range) => &kernel.heap[range.clone()],
            Input::Frame(frame) => frame,
        }
    }

    fn convention(&self) -> Convention {
        match self {
            Input::Block(_) => Convention::Extism,
            Input::Frame(_) => Convention::ExtismArgs,
        }
    }
}

/// Takes the kernel out of the store while a host method reads its arguments (the method cannot
/// reach this instance), with what the method is given. Every handle must be a live block (or
/// 0, no bytes). The frame of several arguments is made only for a method the plugin may call
/// (a denied one is refused by `host_call` without it), and only within the memory the
/// instance has left: a handle may be passed many times, so the frame is not bounded by the
/// heap alone.
fn take_input(
    state: &mut StoreState,
    method: &str,
    params: &[Val],
) -> wasmtime::Result<(Box<Kernel>, Input)> {
    let allowed = state.settings.allows_host_method(method);
    let input = {
        let (kernel, limiter) = parts(state)?;
        let block = |param: &Val| -> wasmtime::Result<Range<usize>> {
            let handle = match param {
                Val::I64(handle) => unsigned(*handle),
                _ => 0,
            };
            if handle == 0 {
                return Ok(0..0);
            }
            kernel
                .live(handle)
                .and_then(|block| kernel.range(handle, block.len))
                .ok_or_else(|| {
                    fault(format!(
                        "host function argument handle {handle:#x} is not a live block"
                    ))
                })
        };
        match params {
            [] => Input::Block(0..0),
            [one] => Input::Block(block(one)?),
            several => {
                let ranges = several
                    .iter()
                    .map(block)
                    .collect::<wasmtime::Result<Vec<_>>>()?;
                if !allowed {
                    Input::Block(0..0)
                } else {
                    let size = ranges
                        .iter()
                        .try_fold(4usize, |size, range| {
                            size.checked_add(4)?.checked_add(range.len())
                        })
                        .unwrap_or(usize::MAX);
                    let mut frame = Vec::new();
                    if !limiter.fits_for_a_moment(size) || frame.try_reserve_exact(size).is_err() {
                        return Err(frame_out_of_memory(limiter));
                    }
                    frame.extend_from_slice(&frame_length(ranges.len())?.to_le_bytes());
                    for range in ranges {
                        frame.extend_from_slice(&frame_length(range.len())?.to_le_bytes());
                        frame.extend_from_slice(&kernel.heap[range]);
                    }
                    Input::Frame(frame)
                }
            }
        }
    };
    let kernel = state
        .extism
        .take()
        .ok_or_else(|| fault("this instance has no Extism kernel".to_owned()))?;
    Ok((kernel, input))
}

/// The error of a frame of arguments the memory limit has no room for.
#[cold]
fn frame_out_of_memory(limiter: &mut Limiter) -> wasmtime::Error {
    if limiter.memory_refused.is_none() {
        limiter.refused(usize::MAX);
    }
    wasmtime::Error::msg("the host function's arguments do not fit in the memory limit")
}

/// A count or a length in an arguments frame.
fn frame_length(len: usize) -> wasmtime::Result<u32> {
    u32::try_from(len).map_err(|_| fault(format!("a host function argument of {len} bytes")))
}

/// The answer of a host function: a new block with the method's answer, or the end of the
/// call with its error.
fn answer(
    state: &mut StoreState,
    name: &str,
    status: Status,
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let result = std::mem::take(&mut state.call.host_result);
    if status != Status::Ok {
        let message = String::from_utf8_lossy(&result).into_owned();
        state.call.host_result = result;
        return Err(refusal(format!("host function `{name}` failed: {message}")));
    }
    let (kernel, limiter) = parts(state)?;
    let written = match results.first_mut() {
        Some(slot) => kernel
            .new_block(&result, limiter)
            .map(|handle| *slot = Val::I64(signed(handle))),
        None => Ok(()),
    };
    // (The buffer is kept for the next host call.)
    state.call.host_result = result;
    written
}
