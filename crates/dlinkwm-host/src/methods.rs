//! The host-method registry: methods the application registers and plugins call by name, each
//! serving every format the plugin may choose.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use dlinkwm_core::{CallerInfo, HostCallError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Format;

type Handler =
    dyn Fn(CallerInfo<'_>, Format, &[u8], &mut Vec<u8>) -> Result<(), HostCallError> + Send + Sync;

/// Host methods by name. Register them before building a [`crate::PluginHost`].
///
/// ```
/// use dlinkwm_host::HostMethods;
///
/// #[derive(serde::Deserialize)]
/// struct GreetParams {
///     name: String,
/// }
///
/// let mut methods = HostMethods::new();
/// methods.register("custom_greet", |params: GreetParams| {
///     Ok::<_, std::convert::Infallible>(format!("Hello from custom handler, {}!", params.name))
/// });
/// assert!(methods.contains("custom_greet"));
/// ```
#[derive(Clone, Default)]
pub struct HostMethods {
    /// Looked up on every host call with a name from guest memory: foldhash hashes a short name
    /// in a few nanoseconds where std's SipHash takes about twenty. (Not hardened against
    /// collision flooding; the names are the host's own, the guest only picks among them.)
    methods: HashMap<String, Arc<Handler>, foldhash::fast::RandomState>,
}

impl fmt::Debug for HostMethods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.methods.keys().collect();
        names.sort();
        f.debug_struct("HostMethods")
            .field("methods", &names)
            .finish()
    }
}

impl HostMethods {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a typed method: its parameters are decoded from, and its answer encoded in,
    /// whichever format the plugin called it with (JSON or postcard). An `Err` reaches the
    /// plugin as an error value with the error's message. Replaces a method of the same name.
    pub fn register<P, R, E, F>(&mut self, name: impl Into<String>, method: F) -> &mut Self
    where
        P: DeserializeOwned,
        R: Serialize,
        E: fmt::Display,
        F: Fn(P) -> Result<R, E> + Send + Sync + 'static,
    {
        let name = name.into();
        let method_name = name.clone();
        let handler =
            move |_: CallerInfo<'_>, format: Format, input: &[u8], output: &mut Vec<u8>| {
                let params: P =
                    dlinkwm_codec::decode(input, format).map_err(|reason| match reason {
                        dlinkwm_codec::CodecError::Invalid(reason) => HostCallError::Failed(
                            format!("invalid parameters for host method `{method_name}`: {reason}"),
                        ),
                        _ => HostCallError::UnsupportedFormat {
                            method: method_name.clone(),
                            format: format.code(),
                        },
                    })?;
                let answer =
                    method(params).map_err(|error| HostCallError::Failed(error.to_string()))?;
                dlinkwm_codec::encode_into(&answer, format, output).map_err(|reason| {
                    HostCallError::Failed(format!(
                        "cannot encode the answer of `{method_name}`: {reason}"
                    ))
                })
            };
        self.methods.insert(name, Arc::new(handler));
        self
    }

    /// Registers a raw method: it gets the bytes and the format the plugin sent, and answers
    /// bytes (the original DlinkWM `custom_greet_handler` shape).
    pub fn register_raw<E, F>(&mut self, name: impl Into<String>, method: F) -> &mut Self
    where
        E: fmt::Display,
        F: Fn(&[u8], Format) -> Result<Vec<u8>, E> + Send + Sync + 'static,
    {
        let handler =
            move |_: CallerInfo<'_>, format: Format, input: &[u8], output: &mut Vec<u8>| {
                let answer = method(input, format)
                    .map_err(|error| HostCallError::Failed(error.to_string()))?;
                output.extend_from_slice(&answer);
                Ok(())
            };
        self.methods.insert(name.into(), Arc::new(handler));
        self
    }

    /// Registers a method that also learns which plugin (and version) is calling.
    pub fn register_with_caller<F>(&mut self, name: impl Into<String>, method: F) -> &mut Self
    where
        F: Fn(CallerInfo<'_>, &[u8], Format) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    {
        let handler =
            move |caller: CallerInfo<'_>, format: Format, input: &[u8], output: &mut Vec<u8>| {
                let answer = method(caller, input, format).map_err(HostCallError::Failed)?;
                output.extend_from_slice(&answer);
                Ok(())
            };
        self.methods.insert(name.into(), Arc::new(handler));
        self
    }

    /// Whether a method of that name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.methods.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.methods.keys().cloned().collect();
        names.sort();
        names
    }
}

impl dlinkwm_core::HostCallHandler for HostMethods {
    fn call(
        &self,
        caller: CallerInfo<'_>,
        method: &str,
        format: Format,
        input: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<(), HostCallError> {
        let handler = self
            .methods
            .get(method)
            .ok_or_else(|| HostCallError::UnknownMethod(method.to_owned()))?;
        handler(caller, format, input, output)
    }
}
