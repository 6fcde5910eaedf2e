//! The server: a folder of plugins, what it learned about them, and running it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dlinkwm_host::{Plugin, PluginDirectory, PluginHost, ReloadEvent};

use crate::metrics::Metrics;

/// How the server runs.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The bearer token of the admin routes (rollback, reload); `None` turns them off.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret.
        f.debug_struct("ServeOptions")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl ServeOptions {
    /// These options with the admin routes behind `token` (or off, with `None`).
    #[must_use]
    pub fn with_admin_token(mut self, token: Option<String>) -> Self {
        self.admin_token = token;
        self
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The folder could not be read or watched, or the runtime is missing.
    #[error(transparent)]
    Host(#[from] dlinkwm_host::Error),
    /// The listener failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
    /// A plugin cannot be served under the name asked for.
    #[error("cannot serve a plugin as `{name}`: {reason}")]
    Name {
        /// The route name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A folder of plugins served over HTTP. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Server {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) directory: PluginDirectory,
    /// Plugins served beside the folder's (from a registry, say), by route name.
    pub(crate) added: Mutex<BTreeMap<String, Plugin>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) admin_token: Option<String>,
    /// The plugins (by route name) the folder held at start and still holds: ready once all
    /// are loaded.
    pub(crate) expected: Mutex<BTreeSet<String>>,
    /// The last refusal of each plugin's file (a bad build), by route name.
    pub(crate) refusals: Mutex<BTreeMap<String, String>>,
}

/// The route name of a plugin file: its name without `.wasm`.
pub(crate) fn route_name(file: &str) -> &str {
    file.strip_suffix(".wasm").unwrap_or(file)
}

impl Server {
    /// Loads every `.wasm` file of `directory` for async calls with `host`'s configuration and
    /// host methods, and follows the folder from then on.
    ///
    /// # Errors
    /// [`ServeError::Host`] when the folder cannot be read or watched, or outside a tokio
    /// runtime. A plugin file that cannot be loaded is not an error: it is reported (log,
    /// metric, `GET /v1/plugins/{plugin}`) and `/readyz` answers 503 until it loads.
    pub async fn from_directory(
        host: &PluginHost,
        directory: impl AsRef<Path>,
        options: ServeOptions,
    ) -> Result<Self, ServeError> {
        let directory = directory.as_ref();
        let expected = std::fs::read_dir(directory)
            .map_err(|source| {
                dlinkwm_host::Error::Plugin(dlinkwm_host::PluginError::Watch {
                    path: directory.to_owned(),
                    reason: source.to_string(),
                })
            })?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            // The files the directory loads: regular files named `*.wasm`.
            .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "wasm"))
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?;
                Some(route_name(name).to_owned())
            })
            .collect();
        // Calls are counted by the host's call observer, so they are counted however they are
        // made (the router, or the application calling a served plugin itself).
        let metrics = Arc::new(Metrics::new());
        let host = host.with_observer(Arc::new(crate::metrics::Recorder(metrics.clone())));
        let plugins = host.load_directory_async(directory).await?;
        let inner = Arc::new(Inner {
            directory: plugins,
            metrics,
            // An empty token would open the admin routes to a request without one.
            admin_token: options.admin_token.filter(|token| !token.is_empty()),
            added: Mutex::new(BTreeMap::new()),
            expected: Mutex::new(expected),
            refusals: Mutex::new(BTreeMap::new()),
        });
        follow_events(&inner);
        Ok(Self { inner })
    }

    /// The router: mount it in an axum app, or run it with [`serve`].
    pub fn router(&self) -> axum::Router {
        crate::routes::router(self.clone())
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The plugin served under `name` (its file name without `.wasm`, or the name it was
    /// [added](Server::add_plugin) under).
    pub fn plugin(&self, name: &str) -> Option<Plugin> {
        if let Some(plugin) = lock(&self.inner.added).get(name) {
            return Some(plugin.clone());
        }
        self.inner.directory.get(&format!("{name}.wasm"))
    }

    /// The route names of the plugins served now, sorted.
    pub fn plugin_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self
            .inner
            .directory
            .names()
            .iter()
            .map(|file| route_name(file).to_owned())
            .collect();
        names.extend(lock(&self.inner.added).keys().cloned());
        names.into_iter().collect()
    }

    /// Serves `plugin` as `/v1/plugins/{name}/…` beside the folder's plugins: a plugin loaded
    /// from a registry (`oci://…`, followed with [`PluginHost::watch`]), or one the application
    /// loaded itself. Its reloads, refusals and rollbacks are recorded like the folder's; its
    /// calls are counted in the metrics when it was loaded with [`Server::host`].
    ///
    /// # Errors
    /// [`ServeError::Name`] when `name` is not 1 to 128 letters, digits, `_`, `-` and `.`, or a
    /// plugin is served under it already.
    pub fn add_plugin(&self, name: &str, plugin: Plugin) -> Result<(), ServeError> {
        let refuse = |reason: &str| ServeError::Name {
            name: name.chars().take(140).collect(),
            reason: reason.to_owned(),
        };
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(refuse(
                "a name is 1 to 128 letters, digits, `_`, `-` and `.`",
            ));
        }
        let mut added = lock(&self.inner.added);
        if added.contains_key(name) || self.inner.directory.get(&format!("{name}.wasm")).is_some() {
            return Err(refuse("a plugin is served under this name already"));
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let (route, plugin_name) = (name.to_owned(), plugin.name().to_owned());
        plugin.on_event(move |event| {
            if let Some(inner) = weak.upgrade() {
                plugin_event(&inner, &route, &plugin_name, event);
            }
        });
        added.insert(name.to_owned(), plugin);
        Ok(())
    }

    /// A host whose plugins' calls are counted in this server's metrics: load plugins to
    /// [add](Server::add_plugin) with it.
    pub fn host(&self, host: &PluginHost) -> PluginHost {
        host.with_observer(Arc::new(crate::metrics::Recorder(
            self.inner.metrics.clone(),
        )))
    }

    /// Whether every plugin the folder held at start is loaded.
    pub fn ready(&self) -> bool {
        let names: BTreeSet<String> = self.plugin_names().into_iter().collect();
        lock(&self.inner.expected).is_subset(&names)
    }

    /// The last refusal of `name`'s file, if a bad build was refused.
    pub fn last_refusal(&self, name: &str) -> Option<String> {
        lock(&self.inner.refusals).get(name).cloned()
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Records what happens to the folder's plugins: files added or refused, and each plugin's
/// reloads, refusals and rollbacks (as metrics and as the last refusal). On a thread of its own,
/// which ends when the server is dropped.
fn follow_events(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let events = inner.directory.events().clone();
    let spawned = std::thread::Builder::new()
        .name("dlinkwm-serve-events".to_owned())
        .spawn(move || {
            loop {
                match events.recv_timeout(Duration::from_millis(500)) {
                    Ok(event) => {
                        let Some(inner) = weak.upgrade() else { return };
                        directory_event(&inner, &event);
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        if weak.strong_count() == 0 {
                            return;
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the thread that records plugin events");
    }
}

fn file_route(path: Option<&Path>, fallback: &str) -> String {
    path.and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .map_or_else(
            || route_name(fallback).to_owned(),
            |name| route_name(name).to_owned(),
        )
}

fn directory_event(inner: &Arc<Inner>, event: &ReloadEvent) {
    match event {
        ReloadEvent::Added { path, .. } => {
            let route = file_route(Some(path), "");
            lock(&inner.refusals).remove(&route);
            let Some(plugin) = inner.directory.get(&format!("{route}.wasm")) else {
                return;
            };
            let weak: Weak<Inner> = Arc::downgrade(inner);
            let name = plugin.name().to_owned();
            plugin.on_event(move |event| {
                if let Some(inner) = weak.upgrade() {
                    plugin_event(&inner, &route, &name, event);
                }
            });
        }
        ReloadEvent::Failed {
            path,
            plugin,
            error,
        } => {
            let route = file_route(path.as_deref(), plugin);
            tracing::warn!(plugin = %route, %error, "plugin file refused");
            inner.metrics.reloaded(&route, false);
            let shown = path
                .as_deref()
                .map_or_else(|| plugin.clone(), |path| path.display().to_string());
            let refusal = scrub(&error.to_string(), &shown, &route);
            lock(&inner.refusals).insert(route, refusal);
        }
        _ => {}
    }
}

fn plugin_event(inner: &Inner, route: &str, name: &str, event: &ReloadEvent) {
    match event {
        ReloadEvent::Reloaded { .. } => {
            inner.metrics.reloaded(route, true);
            lock(&inner.refusals).remove(route);
        }
        ReloadEvent::Failed { error, .. } => {
            inner.metrics.reloaded(route, false);
            let refusal = match error {
                // The registry's answer and the local store's paths stay in the server's log.
                dlinkwm_host::PluginError::Source { .. } => {
                    "a new version from the registry was refused (see the server's log)".to_owned()
                }
                error => scrub(&error.to_string(), name, route),
            };
            lock(&inner.refusals).insert(route.to_owned(), refusal);
        }
        ReloadEvent::RolledBack { .. } => inner.metrics.rolled_back(route),
        // The first tier keeps serving: the plugin answers, more slowly (status: "tier").
        ReloadEvent::OptimizeFailed { error, .. } => {
            tracing::warn!(plugin = %route, %error, "Cranelift's version was not swapped in; Winch's code serves on");
        }
        // A removed file is no longer expected for readiness.
        ReloadEvent::FileRemoved { .. } => {
            lock(&inner.expected).remove(route);
        }
        _ => {}
    }
}

/// An error's text for clients: the plugin's file path (its name inside the host) replaced by
/// its route name, so no host path reaches a response.
pub(crate) fn scrub(message: &str, path: &str, route: &str) -> String {
    if path.is_empty() {
        return message.to_owned();
    }
    message.replace(path, route)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting connections
/// and lets the requests in flight finish, for at most `drain`.
///
/// # Errors
/// [`ServeError::Io`] when the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> Result<(), ServeError> {
    let (draining, drained) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!(
            ?drain,
            "shutting down: no new connections, finishing requests in flight"
        );
        let _ = draining.send(());
    };
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);
    let deadline = async move {
        if drained.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = &mut server => Ok(served?),
        () = deadline => {
            tracing::warn!(?drain, "requests still running after the drain timeout; stopping");
            Ok(())
        }
    }
}
