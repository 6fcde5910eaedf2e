//! Plugins from OCI registries: `oci://REGISTRY/REPOSITORY:TAG` (or `@sha256:…`) wherever a
//! plugin path goes, the last known good version of each tag kept locally, and tags followed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dlinkwm_core::{ContentHash, ReloadOutcome, WeakPlugin};
pub use dlinkwm_oci::{
    HOST_VARIABLE, OciError, PASSWORD_VARIABLE, PluginRef, Pulled, Pushed, Registry,
    RegistryOptions, SCHEME, USERNAME_VARIABLE, block_on,
};

use crate::{Plugin, PluginHost, Result};

/// How often a followed tag is checked by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(30);

/// How many refused or rolled-back digests a followed tag remembers (not pulled again).
const REFUSED_KEPT: usize = 64;

/// Whether `text` names a plugin in a registry (`oci://…`) rather than a file.
pub fn is_reference(text: &str) -> bool {
    text.starts_with(SCHEME)
}

/// Where a plugin from a registry came from, the manifest digest of each version of it loaded
/// (so the digest serving is known after reloads and rollbacks alike), and what following its
/// tag has learned.
#[derive(Debug)]
pub(crate) struct Origin {
    reference: PluginRef,
    registry: Registry,
    /// Manifest digest by content hash, of the versions loaded from the registry.
    digests: Mutex<HashMap<ContentHash, String>>,
    follow: Mutex<FollowState>,
    following: AtomicBool,
}

#[derive(Debug, Default)]
struct FollowState {
    /// The digest the tag pointed to when last acted on.
    seen: String,
    /// Digests refused (bad bytes, failed checks or smoke call) or rolled back: never pulled
    /// again by the follower, so a bad version cannot flap back in.
    refused: VecDeque<String>,
    /// The digest this follower last swapped in, until it is settled (kept or rolled back).
    swapped: Option<String>,
    /// The digest last recorded in the store as the tag's last known good version.
    remembered: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Origin {
    fn digest_of(&self, hash: &ContentHash) -> Option<String> {
        lock(&self.digests).get(hash).cloned()
    }

    /// Whether the tag's `digest` is the version serving.
    fn serves(&self, plugin: &dlinkwm_core::Plugin, digest: &str) -> bool {
        self.digest_of(&plugin.content_hash()).as_deref() == Some(digest)
    }

    fn refuse(&self, digest: &str) {
        let mut follow = lock(&self.follow);
        if !follow.refused.iter().any(|refused| refused == digest) {
            if follow.refused.len() >= REFUSED_KEPT {
                follow.refused.pop_front();
            }
            follow.refused.push_back(digest.to_owned());
        }
    }

    /// Whether the follower should leave `digest` alone: acted on already, or refused before.
    fn settled(&self, digest: &str) -> bool {
        let follow = lock(&self.follow);
        follow.seen == digest || follow.refused.iter().any(|refused| refused == digest)
    }

    /// What fetching `digest` (the tag's target) gave: verified bytes, whose digest is recorded,
    /// or an error. A final refusal (tampered, too large, not wasm) is reported as a
    /// [`crate::ReloadEvent::Failed`] and the digest is not pulled again by the follower; any
    /// other error (the registry unavailable) is tried again at the next poll.
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
                Ok(pulled)
            }
            Err(error) if error.is_final() => {
                plugin.report_source_failure(error.to_string());
                self.refuse(digest);
                lock(&self.follow).seen = digest.to_owned();
                Err(error.into())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// After a reload to `digest` ended in `outcome`: a refused version is not pulled again; a
    /// version that swapped in is kept in the store, and is the tag's last known good once its
    /// probation (`rollback_on`) is over. Blocking file I/O.
    fn reloaded(
        &self,
        plugin: &dlinkwm_core::Plugin,
        digest: &str,
        pulled: &Pulled,
        outcome: &dlinkwm_core::Result<ReloadOutcome>,
    ) {
        lock(&self.follow).seen = digest.to_owned();
        match outcome {
            Ok(ReloadOutcome::Reloaded { .. }) => {
                if let Err(error) = self.registry.keep(pulled) {
                    tracing::warn!(plugin = plugin.name(), %error, "cannot keep the new version in the local store");
                }
                lock(&self.follow).swapped = Some(digest.to_owned());
                self.settle(plugin);
            }
            Ok(_) => {}
            Err(_) => self.refuse(digest),
        }
    }

    /// Brings the bookkeeping in line with the version serving: a version this follower swapped
    /// in that no longer serves was rolled back (refused from now on); the version serving,
    /// once off probation, is the tag's last known good. Blocking file I/O.
    fn settle(&self, plugin: &dlinkwm_core::Plugin) {
        let serving = self.digest_of(&plugin.content_hash());
        let rolled_back = {
            let mut follow = lock(&self.follow);
            match &follow.swapped {
                Some(swapped) if serving.as_ref() != Some(swapped) => follow.swapped.take(),
                _ => None,
            }
        };
        if let Some(rolled_back) = rolled_back {
            tracing::info!(plugin = plugin.name(), digest = %rolled_back, "rolled back; that version is not pulled again");
            self.refuse(&rolled_back);
        }
        let Some(serving) = serving else { return };
        if plugin.on_probation() {
            return;
        }
        let mut follow = lock(&self.follow);
        if follow.remembered.as_ref() == Some(&serving) {
            return;
        }
        match self.registry.remember(&self.reference, &serving) {
            Ok(()) => follow.remembered = Some(serving),
            Err(error) => {
                tracing::warn!(plugin = plugin.name(), %error, "cannot record the last known good version");
            }
        }
    }
}

impl Plugin {
    /// For a plugin loaded from a registry tag: checks the tag now and, if it points to
    /// another version than the one serving, pulls, verifies and reloads it (a version refused
    /// before is tried again: this is an explicit request).
    pub(crate) fn reload_from_registry(&self, origin: &Origin) -> Result<ReloadOutcome> {
        let core = self.core();
        let digest = block_on(origin.registry.resolve(&origin.reference))?;
        if origin.serves(core, &digest) {
            return Ok(ReloadOutcome::Unchanged);
        }
        let pinned = origin.reference.pinned(&digest)?;
        let pulled = origin.received(core, &digest, block_on(origin.registry.fetch(&pinned)))?;
        let outcome = core.reload_from_bytes(&pulled.bytes);
        origin.reloaded(core, &digest, &pulled, &outcome);
        Ok(outcome?)
    }

    /// [`Plugin::reload_from_registry`] for async code: the store's file I/O runs on the
    /// runtime's blocking threads.
    pub(crate) async fn reload_from_registry_async(
        &self,
        origin: &Arc<Origin>,
    ) -> Result<ReloadOutcome> {
        let core = self.core();
        let digest = origin.registry.resolve(&origin.reference).await?;
        if origin.serves(core, &digest) {
            return Ok(ReloadOutcome::Unchanged);
        }
        let pinned = origin.reference.pinned(&digest)?;
        let pulled = origin.received(core, &digest, origin.registry.fetch(&pinned).await)?;
        let outcome = core.reload_from_bytes_async(&pulled.bytes).await;
        let (origin, plugin, bookkept) = (origin.clone(), core.clone(), outcome.clone());
        // Detached: the bookkeeping completes even if this future is dropped now.
        let _ = tokio::task::spawn_blocking(move || {
            origin.reloaded(&plugin, &digest, &pulled, &bookkept);
        })
        .await;
        Ok(outcome?)
    }

    /// For a plugin loaded from a registry, the manifest digest of the version serving now
    /// (`sha256:…`); `None` for a plugin from a file or bytes.
    pub fn registry_digest(&self) -> Option<String> {
        let origin = self.origin()?;
        origin.digest_of(&self.content_hash())
    }
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
        let origin = Arc::new(Origin::new(&core, reference, registry, &pulled));
        origin.loaded(&core, &pulled);
        Ok(Plugin::new(core, self.format).with_origin(origin))
    }

    pub(crate) async fn load_reference_async(&self, text: &str) -> Result<Plugin> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(dlinkwm_core::Error::WrongCallMode {
                plugin: text.to_owned(),
                reason: "loading for async calls needs a tokio runtime (with its IO and time \
                         drivers, for the registry)"
                    .to_owned(),
            }
            .into());
        }
        let reference: PluginRef = text.parse()?;
        let registry = self.registry();
        let pulled = registry.fetch(&reference).await?;
        let options = self.options(text);
        let core =
            dlinkwm_core::Plugin::from_bytes_async(self.engine(), &pulled.bytes, options).await?;
        self.follow_config(&core)?;
        let origin = Arc::new(Origin::new(&core, reference, registry, &pulled));
        let (bookkeeping, plugin) = (origin.clone(), core.clone());
        let _ = tokio::task::spawn_blocking(move || bookkeeping.loaded(&plugin, &pulled)).await;
        Ok(Plugin::new(core, self.format).with_origin(origin))
    }

    /// Follows the tag of a plugin loaded from a registry: see [`PluginHost::watch`].
    pub(crate) fn follow_tag(&self, plugin: &Plugin, origin: &Arc<Origin>) -> Result<()> {
        if origin.reference.is_pinned() || origin.following.swap(true, Ordering::AcqRel) {
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
                origin.following.store(false, Ordering::Release);
                dlinkwm_core::Error::Watch {
                    path: origin.reference.to_string().into(),
                    reason: format!("cannot start the thread following the tag: {error}"),
                }
            })?;
        Ok(())
    }
}

impl Origin {
    fn new(
        core: &dlinkwm_core::Plugin,
        reference: PluginRef,
        registry: Registry,
        pulled: &Pulled,
    ) -> Self {
        Self {
            digests: Mutex::new(HashMap::from([(
                core.content_hash(),
                pulled.manifest_digest.clone(),
            )])),
            follow: Mutex::new(FollowState {
                // From the store, the tag may have moved: the first poll that reaches the
                // registry decides.
                seen: if pulled.from_store {
                    String::new()
                } else {
                    pulled.manifest_digest.clone()
                },
                ..FollowState::default()
            }),
            reference,
            registry,
            following: AtomicBool::new(false),
        }
    }

    /// After the first load: the version is kept and is the tag's last known good (a first
    /// load is on no probation). Blocking file I/O.
    fn loaded(&self, core: &dlinkwm_core::Plugin, pulled: &Pulled) {
        if pulled.from_store {
            tracing::warn!(
                plugin = core.name(),
                digest = %pulled.manifest_digest,
                "registry unavailable: serving the last known good version from the local store"
            );
        } else if let Err(error) = self.registry.keep(pulled) {
            tracing::warn!(plugin = core.name(), %error, "cannot keep the plugin in the local store");
        }
        self.settle(core);
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
        let mut unavailable = false;
        loop {
            // ± 10 %, so replicas started together do not all ask at once (the configuration
            // bounds `poll` to a week, so this cannot overflow).
            let jitter = 0.9 + fastrand::f64() * 0.2;
            std::thread::sleep(self.poll.mul_f64(jitter));
            let Some(plugin) = self.plugin.upgrade() else {
                return;
            };
            origin.settle(&plugin);
            let digest = match runtime.block_on(origin.registry.resolve(&origin.reference)) {
                Ok(digest) => digest,
                Err(error) => {
                    // Said once per outage, not every poll.
                    if !unavailable {
                        tracing::warn!(plugin = plugin.name(), %error, "cannot check the tag; the current version keeps serving");
                    }
                    unavailable = true;
                    continue;
                }
            };
            if unavailable {
                tracing::info!(plugin = plugin.name(), "the registry answers again");
                unavailable = false;
            }
            if origin.settled(&digest) {
                continue;
            }
            let pulled = origin
                .reference
                .pinned(&digest)
                .and_then(|pinned| runtime.block_on(origin.registry.fetch(&pinned)));
            let pulled = match origin.received(&plugin, &digest, pulled) {
                Ok(pulled) => pulled,
                Err(error) => {
                    // Refused for good (reported), or tried again at the next poll.
                    tracing::debug!(plugin = plugin.name(), %error, "the new version was not pulled");
                    continue;
                }
            };
            tracing::info!(plugin = plugin.name(), %digest, "the tag moved; reloading");
            // Refusals and swaps are reported as reload events by the plugin itself.
            let outcome = plugin.reload_from_bytes(&pulled.bytes);
            origin.reloaded(&plugin, &digest, &pulled, &outcome);
        }
    }
}
