//! The epoch ticker: one thread per engine that enforces every time limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::runtime::{EPOCH_TICK, Ticks};

/// One thread per engine that advances the epoch every [`EPOCH_TICK`]. Calls only set their
/// deadline in their own store; nobody is woken per call.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(engine: wasmtime::Engine, ticks: Ticks) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("dlinkwm-epoch".to_owned())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(EPOCH_TICK);
                        engine.increment_epoch();
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|error| Error::Engine {
                reason: format!("cannot start the epoch ticker thread: {error}"),
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The ticker never panics, and an engine dropped during a panic must not panic again.
            let _ = thread.join();
        }
    }
}
