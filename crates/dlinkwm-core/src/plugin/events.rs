//! Reload events, delivered to every subscriber by channel or callback.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::{ContentHash, Tier};
use crate::error::Error;

/// Something that happened to a plugin's loaded version.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ReloadEvent {
    /// A new version was validated and is now current.
    Reloaded {
        /// The plugin.
        plugin: String,
        /// The new version's number.
        version: u64,
        /// The version it replaced.
        previous: u64,
        /// The new version's content hash.
        hash: ContentHash,
        /// From reading the file to the swap.
        elapsed: Duration,
        /// Whether the previous version's state was handed over.
        state_handed_over: bool,
        /// Which compiler's code it runs: [`Tier::Baseline`] with tiered reloads (then an
        /// [`ReloadEvent::Optimized`] follows), otherwise [`Tier::Optimized`].
        tier: Tier,
    },
    /// Tiered reloads: a version of the same bytes with Cranelift's code replaced the
    /// first-tier version (validated, smoke-called and given its state like a reload).
    Optimized {
        /// The plugin.
        plugin: String,
        /// The new version's number.
        version: u64,
        /// The first-tier version it replaced.
        previous: u64,
        /// The content hash (the same as the first tier's).
        hash: ContentHash,
        /// From the start of Cranelift's compile to the swap.
        elapsed: Duration,
        /// Whether the first-tier version's state was handed over.
        state_handed_over: bool,
    },
    /// Tiered reloads: Cranelift's version could not replace the first-tier version, which
    /// keeps serving.
    OptimizeFailed {
        /// The plugin.
        plugin: String,
        /// The first-tier version that keeps serving.
        version: u64,
        /// Why.
        error: Error,
    },
    /// A new file was refused; the current version keeps serving.
    Failed {
        /// The plugin.
        plugin: String,
        /// The file that was refused, when it came from one.
        path: Option<PathBuf>,
        /// Why.
        error: Error,
    },
    /// An earlier version was made current again.
    RolledBack {
        /// The plugin.
        plugin: String,
        /// The version that answered before.
        from: u64,
        /// The version that answers now.
        to: u64,
        /// Its content hash.
        hash: ContentHash,
        /// Why, when DlinkWM rolled back by itself (`rollback_on`); `None` for a rollback the
        /// application asked for.
        reason: Option<String>,
    },
    /// A new plugin file appeared in a watched directory and was loaded.
    Added {
        /// The new plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
    },
    /// The plugin's file was removed; the loaded version keeps serving.
    FileRemoved {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
    },
}

impl ReloadEvent {
    /// The plugin the event is about.
    pub fn plugin(&self) -> &str {
        match self {
            ReloadEvent::Reloaded { plugin, .. }
            | ReloadEvent::Optimized { plugin, .. }
            | ReloadEvent::OptimizeFailed { plugin, .. }
            | ReloadEvent::Failed { plugin, .. }
            | ReloadEvent::RolledBack { plugin, .. }
            | ReloadEvent::Added { plugin, .. }
            | ReloadEvent::FileRemoved { plugin, .. } => plugin,
        }
    }
}

/// A subscriber's callback.
pub(crate) type Callback<E> = Arc<dyn Fn(&E) + Send + Sync>;

/// The subscribers of one plugin (or one configuration).
#[derive(Default)]
pub(crate) struct Subscribers<E> {
    channels: Mutex<Vec<crossbeam_channel::Sender<E>>>,
    callbacks: Mutex<Vec<Callback<E>>>,
}

pub(crate) type EventBus = Subscribers<ReloadEvent>;

impl<E: Clone> Subscribers<E> {
    pub(crate) fn new() -> Self {
        Self {
            channels: Mutex::new(Vec::new()),
            callbacks: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn subscribe(&self) -> crossbeam_channel::Receiver<E> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        self.channels
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(sender);
        receiver
    }

    pub(crate) fn on_event(&self, callback: Callback<E>) {
        self.callbacks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(callback);
    }

    pub(crate) fn emit(&self, event: E) {
        self.channels
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .retain(|sender| sender.send(event.clone()).is_ok());
        let callbacks = self
            .callbacks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        for callback in callbacks {
            // A subscriber's panic must not stop the others or the reload worker.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(&event))).is_err()
            {
                tracing::error!("a reload event callback panicked");
            }
        }
    }
}
