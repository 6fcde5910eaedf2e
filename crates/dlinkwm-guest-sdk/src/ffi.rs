//! The host functions of ABI v1, wrapped in safe functions over slices.
//!
//! In wasm they are the `dlinkwm` imports. Elsewhere (a native build of a plugin's unit tests)
//! there is no host: output is discarded and host calls answer that no host is attached.

#[cfg(target_family = "wasm")]
mod imports {
    #[link(wasm_import_module = "dlinkwm")]
    unsafe extern "C" {
        pub(super) fn set_output(ptr: i32, len: i32);
        pub(super) fn set_error(ptr: i32, len: i32);
        pub(super) fn host_call(
            name_ptr: i32,
            name_len: i32,
            format: i32,
            input_ptr: i32,
            input_len: i32,
        ) -> i32;
        pub(super) fn host_result_len() -> i32;
        pub(super) fn host_result_read(dst: i32);
        pub(super) fn log(level: i32, ptr: i32, len: i32);
    }
}

/// wasm32 pointers and lengths as the ABI's `i32`s.
#[cfg(target_family = "wasm")]
fn raw(bytes: &[u8]) -> (i32, i32) {
    (bytes.as_ptr() as usize as i32, bytes.len() as i32)
}

pub(crate) fn set_output(bytes: &[u8]) {
    #[cfg(target_family = "wasm")]
    {
        let (ptr, len) = raw(bytes);
        // SAFETY: the host copies the bytes during the call.
        unsafe { imports::set_output(ptr, len) }
    }
    #[cfg(not(target_family = "wasm"))]
    let _ = bytes;
}

pub(crate) fn set_error(message: &str) {
    #[cfg(target_family = "wasm")]
    {
        let (ptr, len) = raw(message.as_bytes());
        // SAFETY: the host copies the bytes during the call.
        unsafe { imports::set_error(ptr, len) }
    }
    #[cfg(not(target_family = "wasm"))]
    let _ = message;
}

pub(crate) fn log(level: i32, message: &str) {
    #[cfg(target_family = "wasm")]
    {
        let (ptr, len) = raw(message.as_bytes());
        // SAFETY: the host copies the bytes during the call.
        unsafe { imports::log(level, ptr, len) }
    }
    #[cfg(not(target_family = "wasm"))]
    let _ = (level, message);
}

/// Calls a host method; returns the raw status code and the answer (or error message).
pub(crate) fn host_call(method: &str, format: i32, input: &[u8]) -> (i32, Vec<u8>) {
    #[cfg(target_family = "wasm")]
    {
        let (name_ptr, name_len) = raw(method.as_bytes());
        let (input_ptr, input_len) = raw(input);
        // SAFETY: the host only reads the two buffers during the call.
        let status =
            unsafe { imports::host_call(name_ptr, name_len, format, input_ptr, input_len) };
        // SAFETY: no arguments.
        let len = unsafe { imports::host_result_len() } as u32 as usize;
        let mut result = vec![0u8; len];
        // SAFETY: `result` has room for exactly `len` bytes, as the ABI requires.
        unsafe { imports::host_result_read(result.as_mut_ptr() as usize as i32) };
        (status, result)
    }
    #[cfg(not(target_family = "wasm"))]
    {
        let _ = (format, input);
        (
            dlinkwm_abi::Status::UnknownMethod.code(),
            format!("cannot call host method `{method}`: not running inside a DlinkWM host")
                .into_bytes(),
        )
    }
}
