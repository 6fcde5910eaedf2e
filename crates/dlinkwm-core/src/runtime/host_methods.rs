//! The boundary between core and the host-method registry: core moves bytes and a format tag,
//! the registry (in `dlinkwm-host`) knows what the bytes mean.

use std::future::Future;
use std::pin::Pin;

use dlinkwm_abi::Format;

/// The answer of a host method that finishes later (an async method): its bytes, or why it
/// failed. The guest's call waits for it on its fiber while the executor runs other tasks.
pub type HostCallFuture =
    Pin<Box<dyn Future<Output = Result<Vec<u8>, HostCallError>> + Send + 'static>>;

/// Why a host method did not answer. Each variant reaches the guest as a status value it can
/// handle; none of them traps the guest or disturbs the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostCallError {
    /// No method of that name is registered.
    #[error("unknown host method `{0}`")]
    UnknownMethod(String),
    /// The plugin's configuration does not allow it to call the method.
    #[error("plugin is not allowed to call host method `{0}`")]
    PermissionDenied(String),
    /// The method does not speak the format, or the format code is unknown.
    #[error("host method `{method}` does not accept format code {format}")]
    UnsupportedFormat {
        /// The method.
        method: String,
        /// The format code the guest sent.
        format: i32,
    },
    /// The method ran and failed; the message is for the guest.
    #[error("{0}")]
    Failed(String),
}

/// How the plugin calling a host method passes values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Convention {
    /// DlinkWM's ABI (and the WIT world): the format code says how the input and the answer
    /// are encoded.
    #[default]
    Dlinkwm,
    /// An Extism host function of none or one argument: bytes in, bytes out, with no format
    /// (the call arrives as [`Format::Raw`]). Typed methods read values as Extism's
    /// `extism-convert` writes them (a string or bytes as they are, `i32`/`u32`/`i64`/`u64`/
    /// `f32`/`f64` little-endian, `bool` as one byte, anything else as JSON), and answer the
    /// same way.
    Extism,
    /// An Extism host function of several arguments: the input is their frame
    /// ([`dlinkwm_abi::EXTISM_ARGS_FRAME`]); typed methods take a tuple (or a struct, field by
    /// field in order) whose elements follow [`Convention::Extism`], and answer as it does.
    ExtismArgs,
}

/// Who is calling a host method.
#[derive(Debug, Clone, Copy)]
pub struct CallerInfo<'a> {
    /// The plugin's name (its path, or the name it was loaded under).
    pub plugin: &'a str,
    /// The version of the plugin that is calling.
    pub version: u64,
    /// How the plugin passes values.
    pub convention: Convention,
}

/// The host methods a plugin can reach through the ABI's `host_call`.
///
/// Implemented by the `dlinkwm_host::HostMethods` registry; core never interprets the bytes.
pub trait HostCallHandler: Send + Sync + 'static {
    /// Runs `method` on `input` (in `format`), appending the answer to `output`, which is empty
    /// on entry.
    ///
    /// # Errors
    /// A [`HostCallError`], which the guest receives as a value.
    fn call(
        &self,
        caller: CallerInfo<'_>,
        method: &str,
        format: Format,
        input: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<(), HostCallError>;

    /// The host call of a plugin called with `call_async`: answers now (into `output`, returning
    /// `Ok(None)`) as [`HostCallHandler::call`] does, or returns the future of an answer that
    /// comes later. The default answers now.
    ///
    /// # Errors
    /// A [`HostCallError`], which the guest receives as a value.
    fn call_async(
        &self,
        caller: CallerInfo<'_>,
        method: &str,
        format: Format,
        input: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<Option<HostCallFuture>, HostCallError> {
        self.call(caller, method, format, input, output)
            .map(|()| None)
    }

    /// Whether a method of this name exists, for checking a plugin's declared needs at load:
    /// `Some(false)` refuses a plugin that declares it; `None` (the default) means the handler
    /// cannot tell, and only the plugin's `host_methods` allowlist is checked.
    fn provides(&self, method: &str) -> Option<bool> {
        let _ = method;
        None
    }
}

/// A shared handler serves calls too, so one handler can be given to several plugins and kept
/// by the application.
impl<T: HostCallHandler + ?Sized> HostCallHandler for std::sync::Arc<T> {
    fn call(
        &self,
        caller: CallerInfo<'_>,
        method: &str,
        format: Format,
        input: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<(), HostCallError> {
        (**self).call(caller, method, format, input, output)
    }

    fn call_async(
        &self,
        caller: CallerInfo<'_>,
        method: &str,
        format: Format,
        input: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<Option<HostCallFuture>, HostCallError> {
        (**self).call_async(caller, method, format, input, output)
    }

    fn provides(&self, method: &str) -> Option<bool> {
        (**self).provides(method)
    }
}

/// No host methods at all: every call is answered with [`HostCallError::UnknownMethod`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHostMethods;

impl HostCallHandler for NoHostMethods {
    fn call(
        &self,
        _caller: CallerInfo<'_>,
        method: &str,
        _format: Format,
        _input: &[u8],
        _output: &mut Vec<u8>,
    ) -> Result<(), HostCallError> {
        Err(HostCallError::UnknownMethod(method.to_owned()))
    }

    fn provides(&self, _method: &str) -> Option<bool> {
        Some(false)
    }
}
