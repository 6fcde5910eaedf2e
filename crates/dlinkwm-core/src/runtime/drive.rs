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

/// Runs `work` to its end from sync code: on this thread for a sync plugin, with the runtime an
/// async plugin was loaded on otherwise (its timers and I/O are driven by that runtime's
/// threads; the file watcher's reload thread is the usual caller). Inside a tokio runtime an
/// async plugin's work is refused: blocking an executor thread on it could stop the very thread
/// it needs (the async methods are for that).
pub(crate) fn block_on<T>(
    context: &PluginContext,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let Some(asynchronous) = &context.asynchronous else {
        // A sync plugin's work waits only for the reload lock, which wakes it.
        return wait(work);
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::WrongCallMode {
            plugin: context.name.to_string(),
            reason: "it was loaded for async calls: inside a tokio runtime, use the async \
                     methods (reload_async, reload_from_bytes_async)"
                .to_owned(),
        });
    }
    asynchronous.runtime.block_on(work)
}
