//! The error type of the guest SDK.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A host method ran and returned an error.
    HostMethod,
    /// No host method of that name is registered.
    UnknownMethod,
    /// The plugin's configuration does not allow it to call that host method.
    PermissionDenied,
    /// The format is not supported by the receiver.
    UnsupportedFormat,
    /// Input could not be decoded.
    Decode,
    /// Output could not be encoded.
    Encode,
    /// An entry returned an error.
    Entry,
    /// The code runs outside a DlinkWM host (a native build, e.g. a unit test).
    NotInHost,
}

/// An error in a plugin: a host method's failure, a decoding problem, or the plugin's own.
///
/// Entries return it (or any error that implements `Display`); its message becomes the host's
/// `Error::Guest` message.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A plugin's own error with `message`.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Entry, message.to_string())
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, as the host or the plugin wrote it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}: {})", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::msg(message)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::new(ErrorKind::Entry, message)
    }
}
