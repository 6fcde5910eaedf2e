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
        // The world, through a link to the repository's `wit/plugin.wit` (packaged as a file).
        path: "wit",
        world: "plugin",
    });
}

/// The same world for components called with `call_async`: the host imports are async (a host
/// call awaits the method while the guest's fiber is suspended) and so are the exports.
mod bindings_async {
    wasmtime::component::bindgen!({
        // The world, through a link to the repository's `wit/plugin.wit` (packaged as a file).
        path: "wit",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "dlinkwm:plugin/types": super::bindings::dlinkwm::plugin::types },
    });
}

pub(crate) use bindings::Plugin as Bindings;
pub(crate) use bindings::PluginPre as BindingsPre;
use bindings::dlinkwm::plugin::types;
pub(crate) use bindings_async::Plugin as AsyncBindings;
pub(crate) use bindings_async::PluginPre as AsyncBindingsPre;

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
            return Err(name_too_long(&method));
        }
        let status = crate::runtime::linker::host_call(
            self,
            &method,
            to_format(format).code(),
            &input,
            crate::runtime::Convention::Dlinkwm,
        );
        host_answer(self, status)
    }

    fn log(&mut self, level: types::LogLevel, message: String) {
        log_line(self, level, &message);
    }
}

impl bindings_async::PluginImports for StoreState {
    async fn host_call(
        &mut self,
        method: String,
        format: types::Format,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, types::HostError>> {
        if method.len() > dlinkwm_abi::MAX_HOST_METHOD_NAME {
            return Ok(Err(name_too_long(&method)));
        }
        let status = crate::runtime::linker::host_call_async(
            self,
            &method,
            to_format(format).code(),
            &input,
            crate::runtime::Convention::Dlinkwm,
        )
        .await?;
        Ok(host_answer(self, status))
    }

    async fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
        log_line(self, level, &message);
        Ok(())
    }
}

#[cold]
fn name_too_long(method: &str) -> types::HostError {
    types::HostError::UnknownMethod(format!(
        "host method name of {} bytes is longer than the maximum of {} bytes",
        method.len(),
        dlinkwm_abi::MAX_HOST_METHOD_NAME
    ))
}

/// A host call's answer as the world's result: the bytes, or the error with its message.
fn host_answer(state: &mut StoreState, status: Status) -> Result<Vec<u8>, types::HostError> {
    let answer = std::mem::take(&mut state.call.host_result);
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

/// A component's log line, within the call's log budget.
fn log_line(state: &StoreState, level: types::LogLevel, message: &str) {
    let level = match level {
        types::LogLevel::Error => LogLevel::Error,
        types::LogLevel::Warn => LogLevel::Warn,
        types::LogLevel::Info => LogLevel::Info,
        types::LogLevel::Debug => LogLevel::Debug,
        types::LogLevel::Trace => LogLevel::Trace,
    };
    if state.log_budget.take(&state.context.name, message.len()) {
        crate::runtime::linker::guest_log(&state.context.name, level, message.as_bytes());
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

/// The linker of components called with `call_async`: WASI preview 2's async host functions and
/// the world's async imports.
pub(crate) fn build_linker_async(
    engine: &wasmtime::Engine,
) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    crate::runtime::waits::add_p2_async(&mut linker)?;
    AsyncBindings::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    use arc_swap::ArcSwap;
    use wasmtime::component::Component;

    use crate::config::ResolvedSettings;
    use crate::runtime::deadline::{EPOCH_TICK, Ticks};
    use crate::runtime::store::{PluginContext, new_store, prepare};

    /// A component whose `run(ns)` sleeps through `wasi:clocks` and `wasi:io/poll`, as every
    /// component's `sleep` does.
    pub(super) const SLEEPING_COMPONENT: &str = r#"(component
        (type $poll-type (instance
            (export "pollable" (type $pollable (sub resource)))
            (type $block (func (param "self" (borrow $pollable))))
            (export "[method]pollable.block" (func (type $block)))))
        (import "wasi:io/poll@0.2.12" (instance $poll (type $poll-type)))
        (alias export $poll "pollable" (type $pollable))
        (type $clock-type (instance
            (alias outer 1 $pollable (type $outer-pollable))
            (export "pollable" (type $p (eq $outer-pollable)))
            (type $subscribe (func (param "when" u64) (result (own $p))))
            (export "subscribe-duration" (func (type $subscribe)))))
        (import "wasi:clocks/monotonic-clock@0.2.12" (instance $clock (type $clock-type)))
        (core func $subscribe (canon lower (func $clock "subscribe-duration")))
        (core func $block (canon lower (func $poll "[method]pollable.block")))
        (core module $m
            (import "clock" "subscribe" (func $subscribe (param i64) (result i32)))
            (import "poll" "block" (func $block (param i32)))
            (func (export "run") (param i64)
                (call $block (call $subscribe (local.get 0)))))
        (core instance $i (instantiate $m
            (with "clock" (instance (export "subscribe" (func $subscribe))))
            (with "poll" (instance (export "block" (func $block))))))
        (func (export "run") (param "ns" u64) (canon lift (core func $i "run"))))"#;

    #[test]
    fn a_component_sleep_past_the_timeout_ends_at_the_timeout() {
        // The engine's epoch ticker, as `engine::Ticker` runs it (runtime/ sits below engine/).
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let ticks = Ticks::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = std::thread::spawn({
            let (engine, ticks, stop) = (engine.clone(), ticks.clone(), stop.clone());
            move || {
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let linker = super::build_linker(&engine).unwrap();
        let component = Component::new(&engine, SLEEPING_COMPONENT).unwrap();
        let settings = ResolvedSettings {
            timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let context = Arc::new(PluginContext {
            name: Arc::from("sleeper"),
            host: Arc::new(crate::NoHostMethods),
            settings: ArcSwap::from_pointee(settings.clone()),
            settings_generation: AtomicU64::new(0),
            asynchronous: None,
        });
        let mut store = new_store(&engine, &ticks, &context, 1, &settings).unwrap();
        prepare(&mut store);
        let instance = linker.instantiate(&mut store, &component).unwrap();
        let run = instance
            .get_typed_func::<(u64,), ()>(&mut store, "run")
            .unwrap();
        // A short sleep answers.
        prepare(&mut store);
        run.call(&mut store, (10_000_000,)).unwrap();
        // A sleep of a minute ends at the 200 ms deadline, as an interrupt.
        prepare(&mut store);
        let started = Instant::now();
        let error = run.call(&mut store, (60_000_000_000,)).unwrap_err();
        let took = started.elapsed();
        assert_eq!(
            error.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt),
            "{error:?}"
        );
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        stop.store(true, std::sync::atomic::Ordering::Release);
        ticker.join().unwrap();
    }
}

#[cfg(test)]
mod async_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use arc_swap::ArcSwap;
    use wasmtime::component::Component;

    use crate::config::ResolvedSettings;
    use crate::runtime::deadline::{EPOCH_TICK, Ticks};
    use crate::runtime::store::{Asynchronous, PluginContext, new_store, prepare};

    #[test]
    fn an_async_component_sleep_is_awaited_and_ends_at_the_timeout() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let ticks = Ticks::default();
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = std::thread::spawn({
            let (engine, ticks, stop) = (engine.clone(), ticks.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let linker = super::build_linker_async(&engine).unwrap();
        let component = Component::new(&engine, super::tests::SLEEPING_COMPONENT).unwrap();
        let settings = ResolvedSettings {
            timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let context = Arc::new(PluginContext {
            name: Arc::from("sleeper"),
            host: Arc::new(crate::NoHostMethods),
            settings: ArcSwap::from_pointee(settings.clone()),
            settings_generation: AtomicU64::new(0),
            asynchronous: Some(Asynchronous {
                runtime: runtime.handle().clone(),
                yield_ticks: 1,
            }),
        });
        runtime.block_on(async {
            let mut store = new_store(&engine, &ticks, &context, 1, &settings).unwrap();
            prepare(&mut store);
            let instance = linker
                .instantiate_async(&mut store, &component)
                .await
                .unwrap();
            let run = instance
                .get_typed_func::<(u64,), ()>(&mut store, "run")
                .unwrap();
            // Another task on the only thread counts while the guest sleeps.
            let counted = Arc::new(AtomicU64::new(0));
            let counter = tokio::spawn({
                let counted = counted.clone();
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            prepare(&mut store);
            run.call_async(&mut store, (10_000_000,)).await.unwrap();
            prepare(&mut store);
            let started = Instant::now();
            let error = run
                .call_async(&mut store, (60_000_000_000,))
                .await
                .unwrap_err();
            let took = started.elapsed();
            counter.abort();
            assert_eq!(
                error.downcast_ref::<wasmtime::Trap>(),
                Some(&wasmtime::Trap::Interrupt),
                "{error:?}"
            );
            assert!(took >= Duration::from_millis(190), "{took:?}");
            assert!(took < Duration::from_secs(10), "{took:?}");
            let counted = counted.load(Ordering::SeqCst);
            assert!(counted >= 5, "the other task ran {counted} times");
        });
        stop.store(true, Ordering::Release);
        ticker.join().unwrap();
    }
}
