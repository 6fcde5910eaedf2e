//! Running an instance's work (instantiation, state hand-over, a reload) from sync code. The work
//! is written once, as `async` functions that call a sync plugin's instances synchronously and
//! await an async plugin's: for a sync plugin the future is done at its first poll ([`now`]); an
//! async plugin's is driven on the tokio runtime it was loaded on ([`block_on`]).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::runtime::store::PluginContext;

/// The result of work on a sync plugin's instances, which never waits: it is ready at the first
/// poll.
pub(crate) fn now<T>(plugin: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
    match pin!(work).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        // Only an async plugin's instances suspend, and those are driven by `block_on`.
        Poll::Pending => Err(not_ready(plugin)),
    }
}

#[cold]
fn not_ready(plugin: &str) -> Error {
    Error::Engine {
        reason: format!("plugin `{plugin}`: a synchronous instance suspended its work"),
    }
}

/// Runs `work` to its end on this thread, parking the thread while it waits.
pub(crate) fn wait<F: Future>(work: F) -> F::Output {
    pollster::block_on(work)
}

/// Runs `work` to its end from sync code: at once for a sync plugin, on the runtime an async
/// plugin was loaded on otherwise (on a thread of its own when this thread is inside a runtime,
/// where blocking on another future is not allowed).
pub(crate) fn block_on<T: Send>(
    context: &PluginContext,
    work: impl Future<Output = Result<T>> + Send,
) -> Result<T> {
    let Some(asynchronous) = &context.asynchronous else {
        // A sync plugin's work waits only for the reload lock, which wakes it.
        return wait(work);
    };
    let runtime = &asynchronous.runtime;
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(work);
    }
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("dlinkwm-async-work".to_owned())
            .spawn_scoped(scope, || runtime.block_on(work));
        match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(error) => Err(Error::Engine {
                reason: format!(
                    "plugin `{}`: cannot start a thread to drive its work: {error}",
                    context.name
                ),
            }),
        }
    })
}
