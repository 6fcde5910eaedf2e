//! Guest stdout and stderr routed to `tracing`, one event per line, and the per-call budget of
//! log text that bounds how much a guest can make the host log.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How much log text an instance's current call may still write: every way a guest logs through
/// the host (`log`, WASI stdout and stderr with `stdio = "log"`, `dlinkwm_host_print`) takes from
/// it. Reset at the start of each call; past it, lines are dropped with one notice per call.
#[derive(Debug)]
pub(crate) struct LogBudget {
    remaining: AtomicUsize,
    noticed: AtomicBool,
}

impl LogBudget {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicUsize::new(dlinkwm_abi::MAX_LOG_BYTES_PER_CALL),
            noticed: AtomicBool::new(false),
        })
    }

    /// Gives the next call its whole budget.
    #[inline]
    pub(crate) fn reset(&self) {
        if self.remaining.load(Ordering::Relaxed) != dlinkwm_abi::MAX_LOG_BYTES_PER_CALL {
            self.refill();
        }
    }

    #[cold]
    fn refill(&self) {
        self.remaining
            .store(dlinkwm_abi::MAX_LOG_BYTES_PER_CALL, Ordering::Relaxed);
        self.noticed.store(false, Ordering::Relaxed);
    }

    /// Takes `bytes` from the budget; `false` (and one notice per call) when they do not fit.
    pub(crate) fn take(&self, plugin: &str, bytes: usize) -> bool {
        let taken = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .is_ok();
        if !taken {
            // Nothing more this call, not even a smaller line, and the next call's `reset`
            // sees the budget used.
            self.remaining.store(0, Ordering::Relaxed);
        }
        if !taken && !self.noticed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "dlinkwm::guest",
                plugin,
                limit = dlinkwm_abi::MAX_LOG_BYTES_PER_CALL,
                "the plugin logged more than the limit in one call; the rest of this call's log is dropped"
            );
        }
        taken
    }
}

/// Which guest stream a [`LogStream`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Stdout,
    Stderr,
}

/// A line-buffered stream that emits each complete line as a `tracing` event with target
/// `dlinkwm::guest`. A partial last line is emitted when the stream is dropped (with its store).
#[derive(Clone)]
pub(crate) struct LogStream {
    inner: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    plugin: Arc<str>,
    kind: StreamKind,
    pending: Vec<u8>,
    budget: Arc<LogBudget>,
}

/// Lines longer than this are emitted in pieces, so a guest cannot make the host buffer
/// unbounded output.
const MAX_LINE: usize = 64 * 1024;

impl LineBuffer {
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|&byte| byte == b'\n') {
            self.pending.extend_from_slice(&bytes[..newline]);
            self.emit();
            bytes = &bytes[newline + 1..];
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= MAX_LINE {
            self.emit();
        }
    }

    fn emit(&mut self) {
        if !self.budget.take(&self.plugin, self.pending.len()) {
            self.pending.clear();
            return;
        }
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.trim_end_matches('\r');
        match self.kind {
            StreamKind::Stdout => {
                tracing::info!(target: "dlinkwm::guest", plugin = %self.plugin, stream = "stdout", "{line}")
            }
            StreamKind::Stderr => {
                tracing::warn!(target: "dlinkwm::guest", plugin = %self.plugin, stream = "stderr", "{line}")
            }
        }
        self.pending.clear();
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl LogStream {
    pub(crate) fn new(plugin: Arc<str>, kind: StreamKind, budget: Arc<LogBudget>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LineBuffer {
                plugin,
                kind,
                pending: Vec::new(),
                budget,
            })),
        }
    }

    pub(crate) fn write_bytes(&self, bytes: &[u8]) {
        // A poisoned lock only means another thread panicked mid-write; the buffer is still
        // usable, so keep logging rather than lose the guest's output.
        let mut buffer = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        buffer.write(bytes);
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_LINE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
