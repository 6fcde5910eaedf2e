//! The DlinkWM plugin ABI, version 1: every name and constant that the host and the guest SDKs
//! must agree on, in one place.
//!
//! This crate has no dependencies and is `no_std`, so both the host (`dlinkwm-core`) and the
//! Rust guest SDK (`dlinkwm`) use it. The language-neutral description of the ABI, for plugin
//! authors in C, AssemblyScript, Zig or Go, is `docs/abi.md`; every constant below is quoted there.
//!
//! ```
//! assert_eq!(dlinkwm_abi::ABI_VERSION, 1);
//! assert_eq!(dlinkwm_abi::Format::from_code(1), Some(dlinkwm_abi::Format::Json));
//! ```
#![no_std]
#![deny(missing_docs)]

/// The ABI version this crate describes. A plugin declares the version it was built against by
/// exporting [`export::ABI_VERSION`]; the host refuses any other value.
pub const ABI_VERSION: i32 = 1;

/// Names of the functions a plugin exports.
pub mod export {
    /// `() -> i32`: the ABI version the plugin was built against. Required for ABI plugins.
    pub const ABI_VERSION: &str = "dlinkwm_abi_version";
    /// `(size: i32) -> i32`: allocate `size` bytes in guest memory, return the pointer, or 0 on
    /// failure. The host calls it to pass an entry's input.
    pub const ALLOC: &str = "dlinkwm_alloc";
    /// `(ptr: i32, size: i32)`: free a block returned by [`ALLOC`].
    pub const FREE: &str = "dlinkwm_free";
    /// `(in_ptr: i32, in_len: i32, format: i32) -> i32`: optional. Produce the plugin's state
    /// (through `set_output`) before a hot reload replaces it.
    pub const STATE_SAVE: &str = "dlinkwm_state_save";
    /// `(in_ptr: i32, in_len: i32, format: i32) -> i32`: optional. Receive the state saved by the
    /// previous version, before the new version serves any call.
    pub const STATE_RESTORE: &str = "dlinkwm_state_restore";
    /// The reactor initialiser (WASI reactors, C with `-mexec-model=reactor`, Go `c-shared`):
    /// called once after instantiation when present.
    pub const INITIALIZE: &str = "_initialize";
    /// The linear memory every ABI plugin exports.
    pub const MEMORY: &str = "memory";

    /// Exports that are part of the ABI machinery and never callable as entries.
    pub const RESERVED: &[&str] = &[
        ABI_VERSION,
        ALLOC,
        FREE,
        STATE_SAVE,
        STATE_RESTORE,
        INITIALIZE,
        "_start",
        MEMORY,
    ];

    /// Whether `name` is one of [`RESERVED`].
    pub fn is_reserved(name: &str) -> bool {
        RESERVED.contains(&name)
    }
}

/// Names of the functions the host provides to plugins, all in the import module [`import::MODULE`].
pub mod import {
    /// The import module of every ABI v1 host function.
    pub const MODULE: &str = "dlinkwm";
    /// `(ptr: i32, len: i32)`: the entry's output; the host copies the bytes at once, so the
    /// guest keeps ownership of the buffer.
    pub const SET_OUTPUT: &str = "set_output";
    /// `(ptr: i32, len: i32)`: a UTF-8 error message for the current entry (copied at once). An
    /// entry that sets an error should return [`crate::ENTRY_ERROR`]. A message set just before
    /// a trap is reported as the plugin's panic message.
    pub const SET_ERROR: &str = "set_error";
    /// `(name_ptr: i32, name_len: i32, format: i32, in_ptr: i32, in_len: i32) -> i32`: call a host
    /// method. Returns a [`crate::Status`] code; the answer (or the error message) is then read
    /// with [`HOST_RESULT_LEN`] and [`HOST_RESULT_READ`].
    pub const HOST_CALL: &str = "host_call";
    /// `() -> i32`: the length of the last host call's answer or error message.
    pub const HOST_RESULT_LEN: &str = "host_result_len";
    /// `(dst_ptr: i32)`: copy the last host call's answer into guest memory at `dst_ptr`, which
    /// must have room for [`HOST_RESULT_LEN`] bytes.
    pub const HOST_RESULT_READ: &str = "host_result_read";
    /// `(level: i32, ptr: i32, len: i32)`: a UTF-8 log line at a [`crate::LogLevel`].
    pub const LOG: &str = "log";
}

/// The longest host method name, in bytes. A `host_call` with a longer name is answered with
/// [`Status::UnknownMethod`] before the name is read.
pub const MAX_HOST_METHOD_NAME: usize = 256;

/// The custom section in which a plugin declares what it needs from its host (host methods,
/// environment variables, directories, the ABI version), one need per line of UTF-8 text; the
/// host refuses to load a plugin whose needs it does not grant (docs/abi.md §10).
pub const NEEDS_SECTION: &str = "dlinkwm-needs";

/// The longest error message the host keeps from a guest (`set_error`, a component's
/// `err(string)`), in bytes; longer ones are cut at a character boundary.
pub const MAX_ERROR_MESSAGE: usize = 64 * 1024;

/// The most log text one call may write (`log`, the WASI stdout and stderr of `stdio = "log"`,
/// the original `dlinkwm_host_print`), in bytes; what goes beyond is dropped with one notice.
pub const MAX_LOG_BYTES_PER_CALL: usize = 1 << 20;

/// The most arguments an Extism host function may take (each an `i64` memory handle); a plugin
/// importing one with more is refused at load.
pub const MAX_EXTISM_ARGS: usize = 16;

/// How a host method receives the arguments of an Extism host function of more than one
/// (`CallerInfo::convention` is `Convention::ExtismArgs`): one input holding their count, then
/// each argument's length and bytes, every number a little-endian `u32`. A host function of
/// none or one gets its argument's bytes as they are (`Convention::Extism`).
pub const EXTISM_ARGS_FRAME: &str = "count: u32 LE, then per argument: length: u32 LE, bytes";

/// The import the original DlinkWM offered, kept for its plugins.
pub mod legacy {
    /// The import module of the original host function.
    pub const MODULE: &str = "host";
    /// `(ptr: i32)`: print the NUL-terminated UTF-8 string at `ptr`.
    pub const PRINT: &str = "dlinkwm_host_print";
}

/// What an entry returns when it succeeded (its output was set with `set_output`, or is empty).
pub const ENTRY_OK: i32 = 0;
/// What an entry returns when it failed (its message was set with `set_error`).
pub const ENTRY_ERROR: i32 = 1;

/// How a host call ended, as returned by [`import::HOST_CALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(i32)]
pub enum Status {
    /// The method answered; the result holds its output.
    Ok = 0,
    /// The method ran and returned an error; the result holds its message.
    Error = 1,
    /// No method of that name is registered; the result holds a message.
    UnknownMethod = 2,
    /// The plugin's configuration does not allow it to call that method.
    PermissionDenied = 3,
    /// The method does not speak the requested [`Format`], or the format code is unknown.
    UnsupportedFormat = 4,
}

impl Status {
    /// The status for a code, or `None` for a code this ABI version does not define.
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Ok,
            1 => Self::Error,
            2 => Self::UnknownMethod,
            3 => Self::PermissionDenied,
            4 => Self::UnsupportedFormat,
            _ => return None,
        })
    }

    /// The code that crosses the ABI.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Serialization formats that entries and host methods can speak. The host chooses the format
/// of an entry call; the guest chooses the format of a host call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(i32)]
pub enum Format {
    /// Bytes as they are: the method interprets them.
    Raw = 0,
    /// UTF-8 JSON.
    Json = 1,
    /// postcard (<https://postcard.jamesmunns.com>): compact, not self-describing.
    Postcard = 2,
}

impl Format {
    /// The format for a code, or `None` for a code this ABI version does not define.
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Raw,
            1 => Self::Json,
            2 => Self::Postcard,
            _ => return None,
        })
    }

    /// The code that crosses the ABI.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// A lower-case name, as used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Json => "json",
            Self::Postcard => "postcard",
        }
    }
}

/// Levels of [`import::LOG`], mapped to the host's `tracing` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
#[repr(i32)]
pub enum LogLevel {
    /// `tracing::Level::ERROR`.
    Error = 0,
    /// `tracing::Level::WARN`.
    Warn = 1,
    /// `tracing::Level::INFO`.
    Info = 2,
    /// `tracing::Level::DEBUG`.
    Debug = 3,
    /// `tracing::Level::TRACE`.
    Trace = 4,
}

impl LogLevel {
    /// The level for a code; unknown codes are treated as [`LogLevel::Info`] so a newer guest's
    /// log line is never lost.
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => Self::Error,
            1 => Self::Warn,
            3 => Self::Debug,
            4 => Self::Trace,
            _ => Self::Info,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for format in [Format::Raw, Format::Json, Format::Postcard] {
            assert_eq!(Format::from_code(format.code()), Some(format));
        }
        for code in 0..5 {
            assert_eq!(Status::from_code(code).map(Status::code), Some(code));
        }
        // Code 5 (once `BadArguments`) was never returned: bad arguments are a trap.
        assert_eq!(Status::from_code(5), None);
        assert_eq!(Format::from_code(-1), None);
        assert_eq!(LogLevel::from_code(99), LogLevel::Info);
    }

    #[test]
    fn reserved_exports_are_not_entries() {
        assert!(export::is_reserved("dlinkwm_alloc"));
        assert!(export::is_reserved("_initialize"));
        assert!(!export::is_reserved("greet"));
        assert!(!export::is_reserved("dlinkwm_print_hello_wasm"));
    }
}
