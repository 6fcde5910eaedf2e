//! Component plugins (WASI preview 2): the WIT world `dlinkwm:plugin/plugin@0.1.0`
//! (`wit/plugin.wit`), its host imports, and the calls on its exports. The same stores, limits,
//! host methods and WASI grants as core modules.

use dlinkwm_abi::{Format, LogLevel, Status};
use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::{WasiCtxView, WasiView};

use crate::runtime::store::StoreState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plugin",
    });
}

pub(crate) use bindings::Plugin as Bindings;
pub(crate) use bindings::PluginPre as BindingsPre;
use bindings::dlinkwm::plugin::types;

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.ctx()
    }
}

impl types::Host for StoreState {}

impl bindings::PluginImports for StoreState {
    fn host_call(
        &mut self,
        method: String,
        format: types::Format,
        input: Vec<u8>,
    ) -> Result<Vec<u8>, types::HostError> {
        if method.len() > dlinkwm_abi::MAX_HOST_METHOD_NAME {
            return Err(types::HostError::UnknownMethod(format!(
                "host method name of {} bytes is longer than the maximum of {} bytes",
                method.len(),
                dlinkwm_abi::MAX_HOST_METHOD_NAME
            )));
        }
        let status =
            crate::runtime::linker::host_call(self, &method, to_format(format).code(), &input);
        let answer = std::mem::take(&mut self.call.host_result);
        if status == Status::Ok {
            return Ok(answer);
        }
        let message = String::from_utf8_lossy(&answer).into_owned();
        Err(match status {
            Status::UnknownMethod => types::HostError::UnknownMethod(message),
            Status::PermissionDenied => types::HostError::PermissionDenied(message),
            Status::UnsupportedFormat => types::HostError::UnsupportedFormat(message),
            _ => types::HostError::Failed(message),
        })
    }

    fn log(&mut self, level: types::LogLevel, message: String) {
        let level = match level {
            types::LogLevel::Error => LogLevel::Error,
            types::LogLevel::Warn => LogLevel::Warn,
            types::LogLevel::Info => LogLevel::Info,
            types::LogLevel::Debug => LogLevel::Debug,
            types::LogLevel::Trace => LogLevel::Trace,
        };
        if self.log_budget.take(&self.context.name, message.len()) {
            crate::runtime::linker::guest_log(&self.context.name, level, message.as_bytes());
        }
    }
}

pub(crate) fn to_format(format: types::Format) -> Format {
    match format {
        types::Format::Raw => Format::Raw,
        types::Format::Json => Format::Json,
        types::Format::Postcard => Format::Postcard,
    }
}

pub(crate) fn from_format(format: Format) -> types::Format {
    match format {
        Format::Json => types::Format::Json,
        Format::Postcard => types::Format::Postcard,
        _ => types::Format::Raw,
    }
}

/// The linker of component plugins: WASI preview 2 (granting only what each store's
/// `WasiCtx` grants) and the world's imports.
pub(crate) fn build_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    crate::runtime::waits::add_p2(&mut linker)?;
    Bindings::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    Ok(linker)
}

/// Calls `call(entry, format, input)`: the guest's answer, its error message, or what trapped.
pub(crate) fn call(
    bindings: &Bindings,
    store: &mut Store<StoreState>,
    entry: &str,
    format: Format,
    input: &[u8],
) -> wasmtime::Result<Result<Vec<u8>, String>> {
    bindings.call_call(store, entry, from_format(format), input)
}
