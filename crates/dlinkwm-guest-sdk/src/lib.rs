//! The DlinkWM guest SDK: write plugins for a DlinkWM host in Rust.
//!
//! ```no_run
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Params {
//!     name: String,
//! }
//!
//! #[dlinkwm::entry]
//! fn greet(params: Params) -> Result<String, dlinkwm::Error> {
//!     let answer: String = dlinkwm::host::call("custom_greet", &params.name)?;
//!     dlinkwm::info!("greeted {}", params.name);
//!     Ok(format!("plugin says: {answer}"))
//! }
//! ```
//!
//! Build the plugin as a `cdylib` for `wasm32-wasip1` (or `wasm32-unknown-unknown`). The SDK
//! exports what the ABI requires (`dlinkwm_abi_version`, `dlinkwm_alloc`, `dlinkwm_free`),
//! installs a panic hook so a panic's message reaches the host's error, and speaks the format the
//! host chose for each call (postcard or JSON).
//!
//! Outside wasm (for example in a plugin's own unit tests) the entries can be called as plain
//! Rust functions; host calls then fail with [`ErrorKind::NotInHost`].
#![deny(missing_docs)]

mod error;
mod ffi;
pub mod host;
#[doc(hidden)]
pub mod log;
pub mod state;

pub use dlinkwm_abi::{ABI_VERSION, Format};
/// A byte buffer that travels as bytes (a length and a `memcpy` in postcard, the bytes
/// themselves in raw) where a `Vec<u8>` would be a sequence of numbers: take and return it from
/// entries that move binary data.
///
/// ```
/// #[dlinkwm::entry]
/// fn checksum(data: dlinkwm::Bytes) -> dlinkwm::Bytes {
///     let sum = data.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
///     dlinkwm::Bytes::from(vec![sum])
/// }
/// # fn main() {}
/// ```
pub use dlinkwm_codec::Bytes;
/// `#[serde(with = "dlinkwm::serde_bytes")]`, for `Vec<u8>` fields that should travel as bytes.
pub use dlinkwm_codec::serde_bytes;
pub use dlinkwm_macros::entry;
pub use error::{Error, ErrorKind};

/// Logs at error level to the host's `tracing`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)*)) };
}

/// Logs at warn level to the host's `tracing`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs at info level to the host's `tracing`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs at debug level to the host's `tracing`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)*)) };
}

/// Logs at trace level to the host's `tracing`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Trace, &::std::format!($($arg)*)) };
}

/// Declares what the plugin needs from its host, in the plugin's `dlinkwm-needs` custom section:
/// host methods it calls, environment variables and directories it uses (and, always, the ABI
/// version it was built for). The host checks them when it loads the plugin and refuses it with
/// one message listing everything missing, instead of letting the first call that needs it
/// fail.
///
/// ```
/// dlinkwm::needs!(
///     host_method = ["custom_greet"],
///     env = ["GREETING"],
///     preopen = ["/data"],
/// );
/// # fn main() {}
/// ```
///
/// Each key may be left out; a misspelt key is a compile error. Use it once per plugin.
#[macro_export]
macro_rules! needs {
    ($($key:ident = [$($value:literal),* $(,)?]),* $(,)?) => {
        const _: () = {
            $(let _ = $crate::__private::NeedKey::$key;)*
            const TEXT: &str = ::core::concat!(
                "abi 1\n",
                $($(::core::stringify!($key), " ", $value, "\n",)*)*
            );
            #[used]
            // A custom section in wasm; elsewhere (a plugin's native unit tests) a plain static:
            // Mach-O section names have another form.
            #[cfg_attr(target_family = "wasm", unsafe(link_section = "dlinkwm-needs"))]
            static NEEDS: [u8; TEXT.len()] = $crate::__private::needs_bytes::<{ TEXT.len() }>(TEXT);
        };
    };
}

// `needs!` writes "abi 1": a new ABI version must update it.
const _: () = assert!(dlinkwm_abi::ABI_VERSION == 1);

/// The ABI's required exports. They live here, in the SDK, so every plugin built with it has
/// them; the host calls them, plugin code never does.
mod exports {
    use std::alloc::Layout;

    fn layout(size: usize) -> Option<Layout> {
        // Zero-sized requests get one byte: a Rust allocator must never be asked for zero bytes,
        // and the host frees with the same rule.
        Layout::from_size_align(size.max(1), 1).ok()
    }

    #[unsafe(export_name = "dlinkwm_abi_version")]
    extern "C" fn dlinkwm_abi_version() -> i32 {
        dlinkwm_abi::ABI_VERSION
    }

    #[unsafe(export_name = "dlinkwm_alloc")]
    extern "C" fn dlinkwm_alloc(size: i32) -> i32 {
        match usize::try_from(size).ok().and_then(layout) {
            // SAFETY: the layout has a non-zero size.
            Some(layout) => unsafe { std::alloc::alloc(layout) as usize as i32 },
            None => 0,
        }
    }

    #[unsafe(export_name = "dlinkwm_free")]
    extern "C" fn dlinkwm_free(ptr: i32, size: i32) {
        if ptr == 0 {
            return;
        }
        if let Some(layout) = usize::try_from(size).ok().and_then(layout) {
            // SAFETY: the ABI requires `ptr` and `size` to be those of a `dlinkwm_alloc` call.
            unsafe { std::alloc::dealloc(ptr as u32 as usize as *mut u8, layout) }
        }
    }

    /// Frees an input buffer the host allocated for an entry.
    pub(crate) fn free(ptr: i32, size: i32) {
        dlinkwm_free(ptr, size);
    }
}

#[doc(hidden)]
pub mod __private {
    //! What `#[dlinkwm::entry]` expands to. Not a public API.

    use std::sync::Once;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use crate::{Error, Format, ffi};

    pub use crate::state::{run_state_restore, run_state_save};

    /// The keys `needs!` accepts (a misspelt one does not name a variant).
    #[allow(non_camel_case_types, missing_docs)]
    pub enum NeedKey {
        host_method,
        env,
        preopen,
    }

    /// The section's text as the array a `link_section` static needs.
    pub const fn needs_bytes<const N: usize>(text: &str) -> [u8; N] {
        let bytes = text.as_bytes();
        let mut out = [0u8; N];
        let mut i = 0;
        while i < N {
            out[i] = bytes[i];
            i += 1;
        }
        out
    }

    static PANIC_HOOK: Once = Once::new();

    /// Hands a panic's message to the host before the panic aborts the plugin, so the host's
    /// error says what went wrong instead of "unreachable executed".
    pub fn install_panic_hook() {
        PANIC_HOOK.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                ffi::set_error(&info.to_string());
            }));
        });
    }

    /// Runs one entry call: takes the input buffer, runs `body`, and reports its output or
    /// error through the ABI.
    ///
    /// # Safety
    /// `ptr` and `len` must describe a buffer from `dlinkwm_alloc` that nothing else uses, or be
    /// `0, 0`.
    pub unsafe fn run_entry(
        ptr: i32,
        len: i32,
        format: i32,
        body: impl FnOnce(&[u8], Format) -> Result<Vec<u8>, Error>,
    ) -> i32 {
        install_panic_hook();
        let input: &[u8] = if ptr == 0 || len <= 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(ptr as u32 as usize as *const u8, len as usize) }
        };
        let result = match Format::from_code(format) {
            Some(format) => body(input, format),
            None => Err(Error::new(
                crate::ErrorKind::UnsupportedFormat,
                format!("unknown format code {format}"),
            )),
        };
        crate::exports::free(ptr, len);
        match result {
            Ok(output) => {
                // No `set_output` is an empty output (ABI §1): an entry with nothing to say
                // (`()` in postcard) saves the host call.
                if !output.is_empty() {
                    ffi::set_output(&output);
                }
                dlinkwm_abi::ENTRY_OK
            }
            Err(error) => {
                ffi::set_error(&error.to_string());
                dlinkwm_abi::ENTRY_ERROR
            }
        }
    }

    /// Decodes an entry's argument.
    pub fn decode<T: DeserializeOwned>(input: &[u8], format: Format) -> Result<T, Error> {
        crate::host::decode(input, format)
    }

    /// Encodes an entry's return value.
    pub fn encode<T: Serialize + ?Sized>(value: &T, format: Format) -> Result<Vec<u8>, Error> {
        crate::host::encode(value, format)
    }

    /// Encodes an entry's `Result`: the error becomes the entry's error message.
    pub fn encode_result<T: Serialize, E: std::fmt::Display>(
        result: Result<T, E>,
        format: Format,
    ) -> Result<Vec<u8>, Error> {
        match result {
            Ok(value) => encode(&value, format),
            Err(error) => Err(Error::new(crate::ErrorKind::Entry, error.to_string())),
        }
    }
}
