//! The host-method registry: methods the application registers and plugins call by name, each
//! serving every format the plugin may choose.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use std::future::Future;

use dlinkwm_core::{CallerInfo, Convention, HostCallError, HostCallFuture};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Format;

type Handler =
    dyn Fn(CallerInfo<'_>, Format, &[u8], &mut Vec<u8>) -> Result<(), HostCallError> + Send + Sync;

type AsyncHandler =
    dyn Fn(CallerInfo<'_>, Format, &[u8]) -> Result<HostCallFuture, HostCallError> + Send + Sync;

/// A registered method: one that answers at once, or one that answers later.
#[derive(Clone)]
enum Method {
    Sync(Arc<Handler>),
    Async(Arc<AsyncHandler>),
}

/// The parameters of a typed method, decoded from the format the plugin chose.
fn decode_params<P: DeserializeOwned>(
    method: &str,
    input: &[u8],
    format: Format,
    convention: Convention,
) -> Result<P, HostCallError> {
    let decoded = match convention {
        Convention::Extism => dlinkwm_codec::decode_extism(input),
        Convention::ExtismArgs => dlinkwm_codec::decode_extism_args(input),
        _ => dlinkwm_codec::decode(input, format),
    };
    decoded.map_err(|reason| match reason {
        dlinkwm_codec::CodecError::Invalid(reason) => HostCallError::Failed(format!(
            "invalid parameters for host method `{method}`: {reason}"
        )),
        _ => HostCallError::UnsupportedFormat {
            method: method.to_owned(),
            format: format.code(),
        },
    })
}

/// A typed method's answer, encoded in the format the plugin chose.
fn encode_answer<R: Serialize>(
    method: &str,
    answer: &R,
    format: Format,
    convention: Convention,
    output: &mut Vec<u8>,
) -> Result<(), HostCallError> {
    let encoded = match convention {
        Convention::Extism | Convention::ExtismArgs => {
            dlinkwm_codec::encode_extism_into(answer, output)
        }
        _ => dlinkwm_codec::encode_into(answer, format, output),
    };
    encoded.map_err(|reason| {
        HostCallError::Failed(format!("cannot encode the answer of `{method}`: {reason}"))
    })
}

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
    methods: HashMap<String, Method, foldhash::fast::RandomState>,
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
            move |caller: CallerInfo<'_>, format: Format, input: &[u8], output: &mut Vec<u8>| {
                let convention = caller.convention;
                let params: P = decode_params(&method_name, input, format, convention)?;
                let answer =
                    method(params).map_err(|error| HostCallError::Failed(error.to_string()))?;
                encode_answer(&method_name, &answer, format, convention, output)
            };
        self.methods.insert(name, Method::Sync(Arc::new(handler)));
        self
    }

    /// Registers an async method: like [`HostMethods::register`], but it returns a future the
    /// host awaits (a database query, an HTTP request, a file read with `tokio::fs`) while the
    /// calling plugin's fiber is suspended and the executor runs other tasks. To the plugin it
    /// is an ordinary host call. Its error, and a panic, reach the plugin as error values; the
    /// calling entry's time limit bounds it, and a cancelled call drops its future.
    ///
    /// Async methods answer plugins loaded for async calls
    /// ([`crate::PluginHost::load_async`]); a sync call's plugin gets an error value naming
    /// the method.
    ///
    /// ```
    /// use dlinkwm_host::HostMethods;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Lookup {
    ///     id: u32,
    /// }
    ///
    /// let mut methods = HostMethods::new();
    /// methods.register_async("fetch_user", |params: Lookup| async move {
    ///     tokio::task::yield_now().await;
    ///     Ok::<_, std::convert::Infallible>(format!("user {}", params.id))
    /// });
    /// assert!(methods.contains("fetch_user"));
    /// ```
    pub fn register_async<P, R, E, F, Fut>(
        &mut self,
        name: impl Into<String>,
        method: F,
    ) -> &mut Self
    where
        P: DeserializeOwned,
        R: Serialize + 'static,
        E: fmt::Display + 'static,
        F: Fn(P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let name = name.into();
        let method_name: Arc<str> = Arc::from(name.as_str());
        let handler = move |caller: CallerInfo<'_>, format: Format, input: &[u8]| {
            let convention = caller.convention;
            let params: P = decode_params(&method_name, input, format, convention)?;
            let answering = method(params);
            let method_name = method_name.clone();
            let later: HostCallFuture = Box::pin(async move {
                let answer = answering
                    .await
                    .map_err(|error| HostCallError::Failed(error.to_string()))?;
                let mut output = Vec::new();
                encode_answer(&method_name, &answer, format, convention, &mut output)?;
                Ok(output)
            });
            Ok(later)
        };
        self.methods.insert(name, Method::Async(Arc::new(handler)));
        self
    }

    /// Registers an async raw method: it gets the bytes and the format the plugin sent, and
    /// its future answers bytes (see [`HostMethods::register_async`]).
    pub fn register_raw_async<E, F, Fut>(&mut self, name: impl Into<String>, method: F) -> &mut Self
    where
        E: fmt::Display + 'static,
        F: Fn(Vec<u8>, Format) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, E>> + Send + 'static,
    {
        let handler = move |_: CallerInfo<'_>, format: Format, input: &[u8]| {
            let answering = method(input.to_vec(), format);
            let later: HostCallFuture = Box::pin(async move {
                answering
                    .await
                    .map_err(|error| HostCallError::Failed(error.to_string()))
            });
            Ok(later)
        };
        self.methods
            .insert(name.into(), Method::Async(Arc::new(handler)));
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
        self.methods
            .insert(name.into(), Method::Sync(Arc::new(handler)));
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
        self.methods
            .insert(name.into(), Method::Sync(Arc::new(handler)));
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
        match self.methods.get(method) {
            Some(Method::Sync(handler)) => handler(caller, format, input, output),
            Some(Method::Async(_)) => Err(HostCallError::Failed(format!(
                "host method `{method}` is async: it answers plugins the host loaded for async \
                 calls (load_async, call_async)"
            ))),
            None => Err(HostCallError::UnknownMethod(method.to_owned())),
        }
    }

    fn call_async(
        &self,
        caller: CallerInfo<'_>,
        method: &str,
        format: Format,
        input: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<Option<HostCallFuture>, HostCallError> {
        match self.methods.get(method) {
            Some(Method::Sync(handler)) => handler(caller, format, input, output).map(|()| None),
            Some(Method::Async(handler)) => handler(caller, format, input).map(Some),
            None => Err(HostCallError::UnknownMethod(method.to_owned())),
        }
    }

    fn provides(&self, method: &str) -> Option<bool> {
        Some(self.methods.contains_key(method))
    }
}
