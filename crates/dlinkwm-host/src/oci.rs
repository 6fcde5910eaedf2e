//! Plugins from OCI registries: `oci://REGISTRY/REPOSITORY:TAG` (or `@sha256:…`) wherever a
//! plugin path goes, the last known good version of each tag kept locally, and tags followed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dlinkwm_core::{ContentHash, ReloadOutcome, WeakPlugin};
pub use dlinkwm_oci::{
    OciError, PASSWORD_VARIABLE, PluginRef, Pulled, Pushed, Registry, RegistryOptions, SCHEME,
    USERNAME_VARIABLE, block_on,
};

use crate::{Plugin, PluginHost, Result};

/// How often a followed tag is checked by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(30);

/// Whether `text` names a plugin in a registry (`oci://…`) rather than a file.
pub fn is_reference(text: &str) -> bool {
    text.starts_with(SCHEME)
}

/// Where a plugin from a registry came from, and the manifest digest of each version of it
/// loaded (so the digest serving is known after reloads and rollbacks alike).
#[derive(Debug)]
pub(crate) struct Origin {
    reference: PluginRef,
    registry: Registry,
    /// Manifest digest by content hash, of every version loaded from the registry.
    digests: Mutex<HashMap<ContentHash, String>>,
    /// The digest the tag pointed to when last looked at.
    seen: Mutex<String>,
    /// The digest last recorded in the store as the tag's last known good version.
    remembered: Mutex<String>,
    following: std::sync::atomic::AtomicBool,
}

impl Origin {
    fn digest_of(&self, hash: &ContentHash) -> Option<String> {
        lock(&self.digests).get(hash).cloned()
    }

    /// What fetching `digest` (the tag's new target) gave: verified bytes, whose digest is
    /// recorded, or an error. A refusal (tampered, too large, not wasm) is reported as a
    /// [`crate::ReloadEvent::Failed`] and the digest is not tried again by the follower; an
    /// unreachable registry is tried again.
    fn received(
        &self,
        plugin: &dlinkwm_core::Plugin,
        digest: &str,
        pulled: std::result::Result<Pulled, OciError>,
    ) -> Result<Pulled> {
        match pulled {
            Ok(pulled) => {
                let hash = plugin.engine().content_hash(&pulled.bytes);
                let mut digests = lock(&self.digests);
                if digests.len() >= 256 {
                    // Bounded: only the version serving needs its digest known from here on.
                    let serving = plugin.content_hash();
                    digests.retain(|known, _| *known == serving);
                }
                digests.insert(hash, digest.to_owned());
                drop(digests);
                *lock(&self.seen) = digest.to_owned();
                Ok(pulled)
            }
            Err(error) if error.is_unreachable() => Err(error.into()),
            Err(error) => {
                plugin.report_source_failure(error.to_string());
                *lock(&self.seen) = digest.to_owned();
                Err(error.into())
            }
        }
    }

    /// After a reload to `digest`: a version that swapped in is the tag's last known good.
    fn reloaded(&self, plugin: &dlinkwm_core::Plugin, outcome: &ReloadOutcome, digest: &str) {
        if matches!(outcome, ReloadOutcome::Reloaded { .. }) {
            self.remember(plugin, digest);
        }
    }

    /// Records `digest` as the tag's last known good version, unless it already is.
    fn remember(&self, plugin: &dlinkwm_core::Plugin, digest: &str) {
        let mut remembered = lock(&self.remembered);
        if *remembered == digest {
            return;
        }
        match self.registry.remember(&self.reference, digest) {
            Ok(()) => digest.clone_into(&mut remembered),
            Err(error) => {
                tracing::warn!(plugin = plugin.name(), %error, "cannot record the last known good version");
            }
        }
    }

    /// Whether the tag's `digest` is the version serving.
    fn serves(&self, plugin: &dlinkwm_core::Plugin, digest: &str) -> bool {
        self.digest_of(&plugin.content_hash()).as_deref() == Some(digest)
    }
}

impl Plugin {
    /// For a plugin loaded from a registry tag: checks the tag now and, if it points to
    /// another version than the one serving, pulls, verifies and reloads it.
    pub(crate) fn reload_from_registry(&self, origin: &Origin) -> Result<ReloadOutcome> {
        let core = self.core();
        let digest = block_on(origin.registry.resolve(&origin.reference))?;
        if origin.serves(core, &digest) {
            return Ok(ReloadOutcome::Unchanged);
        }
        let pinned = origin.reference.pinned(&digest)?;
        let pulled = origin.received(core, &digest, block_on(origin.registry.fetch(&pinned)))?;
        let outcome = core.reload_from_bytes(&pulled.bytes)?;
        origin.reloaded(core, &outcome, &digest);
        Ok(outcome)
    }

    /// [`Plugin::reload_from_registry`] for async code.
    pub(crate) async fn reload_from_registry_async(
        &self,
        origin: &Origin,
    ) -> Result<ReloadOutcome> {
        let core = self.core();
        let digest = origin.registry.resolve(&origin.reference).await?;
        if origin.serves(core, &digest) {
            return Ok(ReloadOutcome::Unchanged);
        }
        let pinned = origin.reference.pinned(&digest)?;
        let pulled = origin.received(core, &digest, origin.registry.fetch(&pinned).await)?;
        let outcome = core.reload_from_bytes_async(&pulled.bytes).await?;
        origin.reloaded(core, &outcome, &digest);
        Ok(outcome)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl PluginHost {
    /// A registry client configured by the host's `[registry]` table, refusing plugins larger
    /// than the engine compiles: what `oci://` loads use, and what `dlinkwm push`/`pull` use.
    pub fn registry(&self) -> Registry {
        let config = self.config();
        let settings = &config.registry;
        let mut options = RegistryOptions::default()
            .with_max_bytes(self.engine().options().max_module_bytes as u64)
            .with_timeout(settings.timeout.unwrap_or(dlinkwm_oci::DEFAULT_TIMEOUT));
        if let Some(dir) = &settings.store_dir {
            // Relative to the configuration file, like plugin keys.
            let base = config.source.as_deref().and_then(std::path::Path::parent);
            let dir = match base {
                Some(base) if dir.is_relative() => base.join(dir),
                _ => dir.clone(),
            };
            options = options.with_store_dir(Some(dir));
        }
        for registry in &settings.insecure {
            options = options.with_insecure(registry.clone());
        }
        Registry::new(options)
    }

    /// How often followed tags are checked (`[registry] poll`).
    fn poll_interval(&self) -> Duration {
        self.config().registry.poll.unwrap_or(DEFAULT_POLL)
    }

    pub(crate) fn load_reference(&self, text: &str) -> Result<Plugin> {
        let reference: PluginRef = text.parse()?;
        let registry = self.registry();
        let pulled = block_on(registry.fetch(&reference))?;
        let options = self.options(text);
        let core = dlinkwm_core::Plugin::from_bytes(self.engine(), &pulled.bytes, options)?;
        self.follow_config(&core)?;
        Ok(self.loaded_from_registry(core, reference, registry, &pulled))
    }

    pub(crate) async fn load_reference_async(&self, text: &str) -> Result<Plugin> {
        let reference: PluginRef = text.parse()?;
        let registry = self.registry();
        let pulled = registry.fetch(&reference).await?;
        let options = self.options(text);
        let core =
            dlinkwm_core::Plugin::from_bytes_async(self.engine(), &pulled.bytes, options).await?;
        self.follow_config(&core)?;
        Ok(self.loaded_from_registry(core, reference, registry, &pulled))
    }

    fn loaded_from_registry(
        &self,
        core: dlinkwm_core::Plugin,
        reference: PluginRef,
        registry: Registry,
        pulled: &Pulled,
    ) -> Plugin {
        if pulled.from_store {
            tracing::warn!(
                plugin = core.name(),
                digest = %pulled.manifest_digest,
                "registry unreachable: serving the last known good version from the local store"
            );
        } else if let Err(error) = registry.remember(&reference, &pulled.manifest_digest) {
            tracing::warn!(plugin = core.name(), %error, "cannot record the last known good version");
        }
        let origin = Origin {
            digests: Mutex::new(HashMap::from([(
                core.content_hash(),
                pulled.manifest_digest.clone(),
            )])),
            // From the store, the tag may have moved: the first poll that reaches the registry
            // decides.
            seen: Mutex::new(if pulled.from_store {
                String::new()
            } else {
                pulled.manifest_digest.clone()
            }),
            remembered: Mutex::new(pulled.manifest_digest.clone()),
            reference,
            registry,
            following: std::sync::atomic::AtomicBool::new(false),
        };
        Plugin::new(core, self.format).with_origin(Arc::new(origin))
    }

    /// Follows the tag of a plugin loaded from a registry: see [`PluginHost::watch`].
    pub(crate) fn follow_tag(&self, plugin: &Plugin, origin: &Arc<Origin>) -> Result<()> {
        if origin.reference.is_pinned()
            || origin
                .following
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            // A digest never moves; a tag is followed once.
            return Ok(());
        }
        let follower = Follower {
            origin: origin.clone(),
            plugin: plugin.core().downgrade(),
            poll: self.poll_interval(),
        };
        std::thread::Builder::new()
            .name("dlinkwm-follow".to_owned())
            .spawn(move || follower.run())
            .map_err(|error| {
                origin
                    .following
                    .store(false, std::sync::atomic::Ordering::Release);
                dlinkwm_core::Error::Watch {
                    path: origin.reference.to_string().into(),
                    reason: format!("cannot start the thread following the tag: {error}"),
                }
            })?;
        Ok(())
    }
}

impl Plugin {
    /// For a plugin loaded from a registry, the manifest digest of the version serving now
    /// (`sha256:…`); `None` for a plugin from a file or bytes.
    pub fn registry_digest(&self) -> Option<String> {
        let origin = self.origin()?;
        origin.digest_of(&self.content_hash())
    }
}

/// Polls one tag and reloads its plugin when the tag moves: through the same checks, smoke call
/// and canary as a new file. Ends once the plugin is dropped (within one poll interval).
struct Follower {
    origin: Arc<Origin>,
    plugin: WeakPlugin,
    poll: Duration,
}

impl Follower {
    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(reference = %self.origin.reference, %error, "cannot follow the tag: no runtime");
                return;
            }
        };
        let origin = &*self.origin;
        let mut unreachable = false;
        loop {
            // ± 10 %, so replicas started together do not all ask at once.
            let jitter = 0.9 + fastrand::f64() * 0.2;
            std::thread::sleep(self.poll.mul_f64(jitter));
            let Some(plugin) = self.plugin.upgrade() else {
                return;
            };
            // The last known good version follows the version serving: a reload, an automatic
            // rollback, an application's rollback.
            if let Some(serving) = origin.digest_of(&plugin.content_hash()) {
                origin.remember(&plugin, &serving);
            }
            let digest = match runtime.block_on(origin.registry.resolve(&origin.reference)) {
                Ok(digest) => digest,
                Err(error) => {
                    // Said once per outage, not every poll.
                    if !unreachable {
                        tracing::warn!(plugin = plugin.name(), %error, "cannot check the tag; the current version keeps serving");
                    }
                    unreachable = error.is_unreachable();
                    continue;
                }
            };
            if unreachable {
                tracing::info!(plugin = plugin.name(), "the registry answers again");
                unreachable = false;
            }
            if *lock(&origin.seen) == digest {
                continue;
            }
            self.update(&runtime, &plugin, &digest);
        }
    }

    /// The tag points to `digest`, which this process has not tried: pull it and reload.
    fn update(
        &self,
        runtime: &tokio::runtime::Runtime,
        plugin: &dlinkwm_core::Plugin,
        digest: &str,
    ) {
        let origin = &*self.origin;
        let pulled = origin
            .reference
            .pinned(digest)
            .and_then(|pinned| runtime.block_on(origin.registry.fetch(&pinned)));
        let Ok(pulled) = origin.received(plugin, digest, pulled) else {
            // Reported (refused) or tried again at the next poll (unreachable).
            return;
        };
        tracing::info!(plugin = plugin.name(), digest, "the tag moved; reloading");
        // Refusals and swaps are reported as reload events by the plugin itself.
        if let Ok(outcome) = plugin.reload_from_bytes(&pulled.bytes) {
            origin.reloaded(plugin, &outcome, digest);
        }
    }
}
