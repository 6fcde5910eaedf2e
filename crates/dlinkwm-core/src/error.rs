//! The error type of `dlinkwm-core`.

use std::path::PathBuf;
use std::time::Duration;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The result of the functions on a call's success path: the error boxed, so that a success
/// travels in registers (an [`Error`] is 80 bytes) and the box is made only on failure.
pub(crate) type Fast<T> = std::result::Result<T, Box<Error>>;

/// Everything that can go wrong while loading, validating or calling a plugin.
///
/// Every variant names the plugin it is about; callers match on the variant, never on the
/// message. A guest can cause any of these but none of them panics the host.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The plugin file could not be read.
    #[error("cannot read plugin `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (shared, so errors can be cloned into events).
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },

    /// The bytes are not a valid WebAssembly module (garbage, truncated, unsupported feature).
    #[error("plugin `{plugin}` is not a valid wasm module: {reason}")]
    InvalidModule {
        /// The plugin.
        plugin: String,
        /// What the compiler said.
        reason: String,
    },

    /// The plugin declares an ABI version this host does not speak.
    #[error(
        "plugin `{plugin}` was built for DlinkWM ABI version {found}, but this host supports version {supported}"
    )]
    AbiVersionUnsupported {
        /// The plugin.
        plugin: String,
        /// The version it declared.
        found: i32,
        /// The version this host speaks.
        supported: i32,
    },

    /// The plugin imports DlinkWM host functions but lacks an export the ABI requires.
    #[error("plugin `{plugin}` does not export `{export}`, which DlinkWM ABI plugins must export")]
    ExportMissing {
        /// The plugin.
        plugin: String,
        /// The missing export.
        export: String,
    },

    /// The module could not be instantiated: an import the host does not provide, a start
    /// function or `_initialize` that trapped.
    #[error("cannot instantiate plugin `{plugin}`: {reason}")]
    Instantiate {
        /// The plugin.
        plugin: String,
        /// What went wrong.
        reason: String,
    },

    /// No export of that name is callable as an entry.
    #[error(
        "plugin `{plugin}` has no entry `{entry}` (entries: {})",
        list(available)
    )]
    EntryNotFound {
        /// The plugin.
        plugin: String,
        /// The entry asked for.
        entry: String,
        /// The entries the plugin has.
        available: Vec<String>,
    },

    /// The configuration lists the entries of this plugin and this one is not among them.
    #[error(
        "entry `{entry}` not allowed for plugin `{plugin}` (config allows: {})",
        list(allowed)
    )]
    EntryNotAllowed {
        /// The plugin.
        plugin: String,
        /// The entry asked for.
        entry: String,
        /// The entries the configuration allows.
        allowed: Vec<String>,
    },

    /// The entry exists but the input cannot be given to it (a plain `() -> ()` export called
    /// with a non-empty input is fine; this is about the ABI's input size limit).
    #[error(
        "input of {size} bytes for `{entry}` of plugin `{plugin}` exceeds the limit of {limit} bytes"
    )]
    InputTooLarge {
        /// The plugin.
        plugin: String,
        /// The entry.
        entry: String,
        /// The input's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The entry's output exceeded the configured limit.
    #[error(
        "output of {size} bytes from `{entry}` of plugin `{plugin}` exceeds the limit of {limit} bytes"
    )]
    OutputTooLarge {
        /// The plugin.
        plugin: String,
        /// The entry.
        entry: String,
        /// The output's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The entry returned an error value (through `set_error`).
    #[error("entry `{entry}` of plugin `{plugin}` failed: {message}")]
    Guest {
        /// The plugin.
        plugin: String,
        /// The entry.
        entry: String,
        /// The guest's message.
        message: String,
    },

    /// The guest panicked: it set an error message and then trapped.
    #[error("plugin `{plugin}` panicked in `{entry}`: {message}")]
    GuestPanic {
        /// The plugin.
        plugin: String,
        /// The entry.
        entry: String,
        /// The panic message.
        message: String,
    },

    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...).
    #[error("plugin `{plugin}` trapped in `{entry}`: {message}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The entry.
        entry: String,
        /// The trap code, when wasmtime reported one.
        code: Option<wasmtime::Trap>,
        /// wasmtime's description, with the guest backtrace when there is one.
        message: String,
    },

    /// The call ran past its time limit and was interrupted.
    #[error("entry `{entry}` of plugin `{plugin}` exceeded its time limit of {limit:?}")]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The entry.
        entry: String,
        /// The configured limit.
        limit: Duration,
    },

    /// The call consumed all the fuel it was given.
    #[error("entry `{entry}` of plugin `{plugin}` ran out of fuel ({fuel} units)")]
    OutOfFuel {
        /// The plugin.
        plugin: String,
        /// The entry.
        entry: String,
        /// The fuel given to the call.
        fuel: u64,
    },

    /// The guest tried to grow a memory (or a table) so that the instance's memories and
    /// tables together would exceed the configured limit, and failed because of it.
    #[error(
        "plugin `{plugin}` hit its memory limit in `{entry}`: its memories and tables would hold {requested} bytes, limit is {limit} bytes"
    )]
    MemoryLimit {
        /// The plugin.
        plugin: String,
        /// The entry.
        entry: String,
        /// The instance's total (all memories and tables) the refused growth would have made.
        requested: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The guest handed the host a pointer, length or string that is not valid.
    #[error("plugin `{plugin}` handed the host an invalid value in `{entry}`: {reason}")]
    GuestMemory {
        /// The plugin.
        plugin: String,
        /// The entry (or `_initialize`, `dlinkwm_abi_version`).
        entry: String,
        /// What was wrong with it.
        reason: String,
    },

    /// The configuration lists no entries for this plugin, so it cannot be called "by config".
    #[error(
        "no entry functions are configured for plugin `{plugin}` (add it to [entry_functions])"
    )]
    NoEntriesConfigured {
        /// The plugin.
        plugin: String,
    },

    /// Every configured entry was tried and each failed.
    #[error(
        "every configured entry of plugin `{plugin}` failed: {}",
        attempts_list(attempts)
    )]
    AllEntriesFailed {
        /// The plugin.
        plugin: String,
        /// Each entry tried, in order, with its error.
        attempts: Vec<(String, Error)>,
    },

    /// The plugin was called from inside one of its own calls, on the same thread: from a host
    /// method it called, or from the closure reading its output. Refused rather than risking a
    /// deadlock on the plugin's instance pool.
    #[error(
        "plugin `{plugin}` was called re-entrantly from inside its own call on this thread, \
         from a host method or the reader of its output (entry `{entry}`)"
    )]
    Reentrant {
        /// The plugin.
        plugin: String,
        /// The entry asked for.
        entry: String,
    },

    /// Every instance the plugin may have (`max_instances`) stayed busy for the whole
    /// `queue_timeout`: the call was not started (backpressure, not an unbounded queue).
    #[error(
        "plugin `{plugin}` is busy: all {max_instances} instances stayed in use for {waited:?} (queue_timeout_ms)"
    )]
    Busy {
        /// The plugin.
        plugin: String,
        /// How long the call waited.
        waited: Duration,
        /// The plugin's `max_instances`.
        max_instances: usize,
    },

    /// A call, load or reload that does not match how the plugin was loaded: a plugin loaded
    /// with `load_async` is called with `call_async` (its host calls and WASI waits suspend a
    /// fiber), a plugin loaded with `load` with the sync calls.
    #[error("plugin `{plugin}`: {reason}")]
    WrongCallMode {
        /// The plugin.
        plugin: String,
        /// What to do instead.
        reason: String,
    },

    /// There is no earlier version to roll back to.
    #[error("plugin `{plugin}` has no earlier version to roll back to")]
    NoRollbackTarget {
        /// The plugin.
        plugin: String,
    },

    /// The plugin declares needs (its `dlinkwm-needs` custom section) that the host or the
    /// plugin's settings do not grant; it was refused before its first call.
    #[error(
        "plugin `{plugin}` needs what it is not granted: {}; grant them in its settings (dlinkwm.toml) or register the methods",
        missing.join(", ")
    )]
    NeedsNotGranted {
        /// The plugin.
        plugin: String,
        /// Each missing need, with what is missing.
        missing: Vec<String>,
    },

    /// A new version failed the plugin's smoke call (`smoke` in its settings): it was refused
    /// and does not serve.
    #[error("plugin `{plugin}` failed its smoke call of `{entry}`: {source}")]
    SmokeFailed {
        /// The plugin.
        plugin: String,
        /// The smoke call's entry.
        entry: String,
        /// What the call ended in.
        #[source]
        source: Box<Error>,
    },

    /// The new version refused the state handed over by the old one, or the old one could not
    /// produce it.
    #[error("state hand-over for plugin `{plugin}` failed: {source}")]
    StateHandover {
        /// The plugin.
        plugin: String,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },

    /// A configuration file or override is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    /// A file watcher could not be started.
    #[error("cannot watch `{}`: {reason}", path.display())]
    Watch {
        /// What was to be watched.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },

    /// A new version could not be fetched from where the plugin comes from (a registry): not
    /// reachable, refused, or failing verification. The current version keeps serving.
    #[error("cannot fetch a new version of `{plugin}`: {reason}")]
    Source {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },

    /// The engine could not be created with the requested options.
    #[error("cannot create the engine: {reason}")]
    Engine {
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Whether this is the read of a plugin file that is gone ([`Error::Read`]: not found, and
    /// nothing at its path now, so not a permission or symlink problem): for a watcher, a file
    /// removed between the event that asked for it and its read.
    pub fn is_file_gone(&self) -> bool {
        let not_found = |error: &std::io::Error| error.kind() == std::io::ErrorKind::NotFound;
        matches!(self, Error::Read { path, source } if not_found(source)
            && std::fs::symlink_metadata(path).is_err_and(|error| not_found(&error)))
    }

    /// Whether this error came from the guest misbehaving at run time (a trap, a limit, bad
    /// memory): the instance that produced it was discarded.
    pub fn is_guest_fault(&self) -> bool {
        matches!(
            self,
            Error::GuestPanic { .. }
                | Error::Trap { .. }
                | Error::Timeout { .. }
                | Error::OutOfFuel { .. }
                | Error::MemoryLimit { .. }
                | Error::GuestMemory { .. }
                | Error::OutputTooLarge { .. }
        )
    }
}

impl Error {
    /// Whether a configured limit ended the call: time, fuel, memory, input or output size,
    /// or every instance busy past the queue deadline.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::OutOfFuel { .. }
                | Error::MemoryLimit { .. }
                | Error::InputTooLarge { .. }
                | Error::OutputTooLarge { .. }
                | Error::Busy { .. }
        )
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items
            .iter()
            .map(|item| format!("`{item}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn attempts_list(attempts: &[(String, Error)]) -> String {
    attempts
        .iter()
        .map(|(entry, error)| format!("`{entry}`: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}
