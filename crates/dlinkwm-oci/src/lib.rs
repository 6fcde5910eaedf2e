//! DlinkWM plugins in OCI registries: push a plugin, pull it back verified, keep what was pulled
//! in a local content-addressed store, and tell which digest a tag points to now.
//!
//! Plugins travel in the wasm OCI artifact layout that Spin, wasmCloud and `wkg` use: one layer
//! of media type `application/wasm` and a config of media type
//! `application/vnd.wasm.config.v0+json`. The registry protocol is `oci-client`'s; this crate adds
//! the checks a host needs against a registry it does not control (digests, sizes, time), the
//! local store that lets a host start while the registry is down, and credentials as docker
//! keeps them.
//!
//! ```no_run
//! use dlinkwm_oci::{PluginRef, Registry, RegistryOptions};
//!
//! let registry = Registry::new(RegistryOptions::default());
//! let reference: PluginRef = "oci://localhost:5000/plugins/hello:v1".parse()?;
//! let pushed = dlinkwm_oci::block_on(registry.push(&std::fs::read("hello.wasm")?, &reference))?;
//! let pulled = dlinkwm_oci::block_on(registry.fetch(&reference))?;
//! assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod auth;
mod error;
mod reference;
mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, SystemTime};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::{OciDescriptor, OciImageManifest};

pub use auth::{HOST_VARIABLE, PASSWORD_VARIABLE, USERNAME_VARIABLE};
pub use error::OciError;
pub use reference::{PluginRef, SCHEME};
pub use store::Store;

/// The media type of a wasm layer (the wasm OCI artifact layout).
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The media type of the artifact's config.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type of older wasm artifacts (`wasm-to-oci`), accepted when pulling.
const LEGACY_WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The default largest plugin pulled, in bytes (the engine's default `max_module_mib`).
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// The default longest time of one registry operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How a [`Registry`] reaches registries and where it keeps what it pulled.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// The local store (default: [`Store::default_dir`]); `None` there and here keeps nothing.
    pub store_dir: Option<PathBuf>,
    /// Registries (`host:port`) reached over plain HTTP. `localhost`, `127.0.0.1` and `[::1]`
    /// always are; every other registry is reached over HTTPS only.
    pub insecure: Vec<String>,
    /// Longest time of each step of an operation (the credential lookup, a manifest request,
    /// a blob transfer), connecting included: a pull is at most three such steps.
    pub timeout: Duration,
    /// The largest plugin pulled; a larger layer is refused before it is downloaded.
    pub max_bytes: u64,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            store_dir: Store::default_dir(),
            insecure: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl RegistryOptions {
    /// These options with the local store in `dir` (or none).
    #[must_use]
    pub fn with_store_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.store_dir = dir;
        self
    }

    /// These options with `registry` (`host:port`) reached over plain HTTP.
    #[must_use]
    pub fn with_insecure(mut self, registry: impl Into<String>) -> Self {
        self.insecure.push(registry.into());
        self
    }

    /// These options with each operation bounded by `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// These options with plugins larger than `bytes` refused.
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }
}

/// A plugin fetched from a registry or the local store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pulled {
    /// The reference it was fetched by.
    pub reference: PluginRef,
    /// The digest of its manifest (what a tag points to; what `@sha256:…` pins).
    pub manifest_digest: String,
    /// The digest of its wasm layer, checked against the bytes.
    pub layer_digest: String,
    /// The plugin.
    pub bytes: Vec<u8>,
    /// Whether it came from the local store because the registry could not be reached (the
    /// tag may have moved since).
    pub from_store: bool,
}

/// A plugin pushed to a registry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pushed {
    /// The digest of the manifest the tag now points to.
    pub manifest_digest: String,
    /// The digest of the wasm layer.
    pub layer_digest: String,
}

/// Pushes, resolves and pulls plugins. Cheap to clone; each operation opens its own
/// connections, so a `Registry` can be used on any tokio runtime with its IO and time drivers
/// (`enable_all`), or from sync code through [`block_on`].
#[derive(Debug, Clone)]
pub struct Registry {
    options: RegistryOptions,
    store: Option<Store>,
}

impl Registry {
    /// A registry client with `options`.
    pub fn new(options: RegistryOptions) -> Self {
        let store = options.store_dir.clone().map(Store::new);
        Self { options, store }
    }

    /// The options.
    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// The local store, if there is one.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// The digest of the manifest `reference` points to now (one `HEAD` request; a pinned
    /// reference answers its own digest without asking).
    ///
    /// # Errors
    /// [`OciError::Unreachable`], [`OciError::Registry`] (unknown tag, denied), or
    /// [`OciError::DigestMismatch`] when the registry answers another digest than the pinned one.
    pub async fn resolve(&self, reference: &PluginRef) -> Result<String, OciError> {
        if let Some(digest) = reference.digest() {
            return Ok(digest.to_owned());
        }
        let client = self.client(reference)?;
        let auth = self.auth(reference).await;
        let digest = self
            .bounded(
                reference,
                client.fetch_manifest_digest(reference.oci(), &auth),
            )
            .await?;
        reference::check_digest(&digest).map_err(|reason| OciError::Registry {
            reference: reference.to_string(),
            reason: format!("the registry answered a malformed digest: {reason}"),
        })?;
        Ok(digest)
    }

    /// The plugin `reference` names, with its digests checked: from the local store when the
    /// reference is pinned to a digest the store holds, else from the registry (and then kept
    /// in the store). When the registry cannot be reached, a tag falls back to the digest last
    /// [`remember`](Registry::remember)ed for it, with a warning; [`Pulled::from_store`] says so.
    ///
    /// # Errors
    /// [`OciError::Unreachable`] with nothing in the store for the reference;
    /// [`OciError::DigestMismatch`] for a tampered blob or manifest; [`OciError::TooLarge`];
    /// [`OciError::NotAWasmArtifact`]; [`OciError::Registry`].
    pub async fn fetch(&self, reference: &PluginRef) -> Result<Pulled, OciError> {
        if let (Some(digest), Some(store)) = (reference.digest(), &self.store) {
            let (store, reference, digest, max) = (
                store.clone(),
                reference.clone(),
                digest.to_owned(),
                self.options.max_bytes,
            );
            let stored =
                off_the_executor(move || store.load_manifest(&reference, &digest, max)).await;
            if let Some(pulled) = store_miss_on_error(stored) {
                return Ok(pulled);
            }
        }
        let error = match self.pull(reference).await {
            Ok(pulled) => return Ok(pulled),
            // Verification failures are never papered over with an older version.
            Err(error) if error.is_final() => return Err(error),
            Err(error) => error,
        };
        let Some(store) = &self.store else {
            return Err(error);
        };
        let (store, owned, max) = (store.clone(), reference.clone(), self.options.max_bytes);
        let stored = off_the_executor(move || store.last_known_good(&owned, max)).await;
        match store_miss_on_error(stored) {
            Some(mut pulled) => {
                tracing::warn!(
                    reference = %reference,
                    digest = %pulled.manifest_digest,
                    %error,
                    "registry unavailable: starting from the last known good version in the local store"
                );
                pulled.from_store = true;
                Ok(pulled)
            }
            None => Err(error),
        }
    }

    /// Pulls `reference` from the registry: its manifest, then its one wasm layer (its size
    /// checked before downloading, its digest while downloading), and keeps it in the store.
    ///
    /// # Errors
    /// As [`Registry::fetch`], without the store fallback.
    pub async fn pull(&self, reference: &PluginRef) -> Result<Pulled, OciError> {
        let client = self.client(reference)?;
        let auth = self.auth(reference).await;
        let (manifest, manifest_digest) = self
            .bounded(
                reference,
                client.pull_image_manifest(reference.oci(), &auth),
            )
            .await?;
        reference::check_digest(&manifest_digest).map_err(|reason| OciError::Registry {
            reference: reference.to_string(),
            reason: format!("the registry answered a malformed manifest digest: {reason}"),
        })?;
        if let Some(pinned) = reference.digest()
            && pinned != manifest_digest
        {
            return Err(OciError::DigestMismatch {
                reference: reference.to_string(),
                expected: pinned.to_owned(),
                actual: manifest_digest,
            });
        }
        let layer = wasm_layer(reference, &manifest)?;
        let size = u64::try_from(layer.size).map_err(|_| OciError::NotAWasmArtifact {
            reference: reference.to_string(),
            reason: format!("its wasm layer has a negative size ({})", layer.size),
        })?;
        if size > self.options.max_bytes {
            return Err(OciError::TooLarge {
                reference: reference.to_string(),
                size,
                max: self.options.max_bytes,
            });
        }
        let mut sink = Capped {
            bytes: Vec::new(),
            max: size,
        };
        let pulled = self
            .bounded(
                reference,
                client.pull_blob(reference.oci(), layer, &mut sink),
            )
            .await;
        match pulled {
            Ok(()) => {}
            Err(OciError::Io { .. }) if sink.bytes.len() as u64 >= size => {
                return Err(OciError::DigestMismatch {
                    reference: reference.to_string(),
                    expected: layer.digest.clone(),
                    actual: format!("a blob longer than the {size} bytes its manifest declares"),
                });
            }
            Err(error) => return Err(error),
        }
        let bytes = sink.bytes;
        if bytes.len() as u64 != size {
            return Err(OciError::DigestMismatch {
                reference: reference.to_string(),
                expected: layer.digest.clone(),
                actual: format!(
                    "a blob of {} bytes where its manifest declares {size}",
                    bytes.len()
                ),
            });
        }
        // oci-client checked the digest while downloading; check it again on the bytes kept,
        // so nothing but verified bytes ever leaves this function.
        let (bytes, actual) = off_the_executor(move || {
            let digest = store::sha256_digest(&bytes);
            Ok((bytes, digest))
        })
        .await?;
        if actual != layer.digest {
            return Err(OciError::DigestMismatch {
                reference: reference.to_string(),
                expected: layer.digest.clone(),
                actual,
            });
        }
        Ok(Pulled {
            reference: reference.clone(),
            manifest_digest,
            layer_digest: layer.digest.clone(),
            bytes,
            from_store: false,
        })
    }

    /// Keeps `pulled` in the local store (a version that loaded: only such versions are kept,
    /// so a registry cannot fill the disk with versions that never load). Blocking file I/O.
    ///
    /// # Errors
    /// [`OciError::Store`] when the store cannot be written.
    pub fn keep(&self, pulled: &Pulled) -> Result<(), OciError> {
        match &self.store {
            Some(store) => store.keep(pulled),
            None => Ok(()),
        }
    }

    /// Records `manifest_digest`, [kept](Registry::keep) before, as the last known good version
    /// of `reference`: a later [`Registry::fetch`] that cannot reach the registry starts from
    /// it. A host calls this once the version has served past its probation. Blocking file I/O.
    ///
    /// # Errors
    /// [`OciError::Store`] when the store cannot be written.
    pub fn remember(&self, reference: &PluginRef, manifest_digest: &str) -> Result<(), OciError> {
        match &self.store {
            Some(store) => store.remember(reference, manifest_digest),
            None => Ok(()),
        }
    }

    /// Pushes `wasm` (a core module or a component) to `reference` in the wasm OCI artifact
    /// layout, and answers the digest the tag now points to.
    ///
    /// # Errors
    /// [`OciError::NotAWasmArtifact`] when `wasm` is not a wasm binary,
    /// [`OciError::Unreachable`], [`OciError::Registry`] (denied, unknown repository).
    pub async fn push(&self, wasm: &[u8], reference: &PluginRef) -> Result<Pushed, OciError> {
        if reference.digest().is_some() {
            return Err(OciError::Reference {
                reference: reference.to_string(),
                reason: "a push names a tag (`REPO:TAG`), not a digest: the digest is the \
                         pushed content's own"
                    .to_owned(),
            });
        }
        if !wasm.starts_with(b"\0asm") || wasm.len() < 8 {
            return Err(OciError::NotAWasmArtifact {
                reference: reference.to_string(),
                reason: "the file is not a WebAssembly binary (no `\\0asm` header)".to_owned(),
            });
        }
        let layer_digest = store::sha256_digest(wasm);
        // A component's version field is 0x0d, layer 1; a core module's is 1.
        let component = wasm[4..8] == [0x0d, 0x00, 0x01, 0x00];
        let config = serde_json::json!({
            "created": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            "architecture": "wasm",
            "os": if component { "wasip2" } else { "wasip1" },
            "layerDigests": [layer_digest],
        });
        let config = Config::new(
            config.to_string().into_bytes(),
            WASM_CONFIG_MEDIA_TYPE.to_owned(),
            None,
        );
        let layer = ImageLayer::new(wasm.to_vec(), WASM_LAYER_MEDIA_TYPE.to_owned(), None);
        let mut manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
        manifest.media_type = Some(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned());
        // The manifest is pushed as these bytes, so its digest is known here: not read back
        // from the tag, which another push may have moved meanwhile.
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|error| OciError::Registry {
            reference: reference.to_string(),
            reason: format!("cannot write the manifest: {error}"),
        })?;
        let manifest_digest = store::sha256_digest(&manifest_bytes);
        let content_type = image_media_type(reference)?;
        let client = self.client(reference)?;
        let auth = self.auth(reference).await;
        client
            .store_auth_if_needed(reference.registry_host(), &auth)
            .await;
        let oci = reference.oci();
        self.bounded(
            reference,
            client.push_blob(oci, layer.data, &manifest.layers[0].digest),
        )
        .await?;
        self.bounded(
            reference,
            client.push_blob(oci, config.data, &manifest.config.digest),
        )
        .await?;
        self.bounded(
            reference,
            client.push_manifest_raw(oci, manifest_bytes, content_type),
        )
        .await?;
        Ok(Pushed {
            manifest_digest,
            layer_digest,
        })
    }

    /// Points `tag` of `source`'s repository at the manifest `source` names now (promotes a
    /// tested version, `:candidate` to `:stable`), without moving any blob; answers its digest.
    ///
    /// # Errors
    /// [`OciError::Reference`] for a malformed tag, and as [`Registry::resolve`].
    pub async fn tag(&self, source: &PluginRef, tag: &str) -> Result<String, OciError> {
        let target = source.with_tag(tag)?;
        let client = self.client(source)?;
        let auth = self.auth(source).await;
        let (manifest, digest) = self
            .bounded(
                source,
                client.pull_manifest_raw(
                    source.oci(),
                    &auth,
                    &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE],
                ),
            )
            .await?;
        let content_type = image_media_type(source)?;
        client
            .store_auth_if_needed(target.registry_host(), &auth)
            .await;
        self.bounded(
            &target,
            client.push_manifest_raw(target.oci(), manifest, content_type),
        )
        .await?;
        Ok(digest)
    }

    fn client(&self, reference: &PluginRef) -> Result<oci_client::Client, OciError> {
        install_crypto_provider();
        let registry = reference.registry_host();
        let plain = reference.is_loopback()
            || self
                .options
                .insecure
                .iter()
                .any(|insecure| insecure == registry);
        let protocol = if plain {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(self.options.timeout),
            read_timeout: Some(self.options.timeout),
            // An image index is not a wasm artifact: refused, never resolved to a platform.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        oci_client::Client::try_from(config).map_err(|error| OciError::Unreachable {
            registry: registry.to_owned(),
            reason: clean(&format!(
                "cannot make an HTTP client: {}",
                error_chain(&error)
            )),
        })
    }

    /// The credentials for `reference`'s registry, looked up within the timeout (a credential
    /// helper may wait for a prompt nobody answers): anonymous when it does not answer.
    async fn auth(&self, reference: &PluginRef) -> oci_client::secrets::RegistryAuth {
        let registry = reference.registry_host();
        match tokio::time::timeout(self.options.timeout, auth::for_registry(registry)).await {
            Ok(auth) => auth,
            Err(_) => {
                tracing::warn!(
                    registry,
                    "the credential lookup did not answer; asking anonymously"
                );
                oci_client::secrets::RegistryAuth::Anonymous
            }
        }
    }

    /// `operation`, bounded by the options' timeout and with its error made ours.
    async fn bounded<T>(
        &self,
        reference: &PluginRef,
        operation: impl Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<T, OciError> {
        match tokio::time::timeout(self.options.timeout, operation).await {
            Ok(result) => result.map_err(|error| OciError::from_client(reference, error)),
            Err(_) => Err(OciError::Unreachable {
                registry: reference.registry_host().to_owned(),
                reason: format!("no answer within {:?}", self.options.timeout),
            }),
        }
    }
}

/// The OCI image manifest media type as the header value a manifest is pushed with.
fn image_media_type<T: std::str::FromStr>(reference: &PluginRef) -> Result<T, OciError> {
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE
        .parse()
        .map_err(|_| OciError::Registry {
            reference: reference.to_string(),
            reason: "unrepresentable media type".to_owned(),
        })
}

/// The one wasm layer of `manifest`.
fn wasm_layer<'m>(
    reference: &PluginRef,
    manifest: &'m OciImageManifest,
) -> Result<&'m OciDescriptor, OciError> {
    let mut wasm = manifest.layers.iter().filter(|layer| {
        layer.media_type == WASM_LAYER_MEDIA_TYPE
            || layer.media_type == LEGACY_WASM_LAYER_MEDIA_TYPE
    });
    let not_wasm = |reason: String| OciError::NotAWasmArtifact {
        reference: reference.to_string(),
        reason,
    };
    let layer = wasm.next().ok_or_else(|| {
        let types: Vec<&str> = manifest
            .layers
            .iter()
            .map(|layer| layer.media_type.as_str())
            .collect();
        not_wasm(clean(&format!(
            "no `{WASM_LAYER_MEDIA_TYPE}` layer (its layers: {types:?})"
        )))
    })?;
    if wasm.next().is_some() {
        return Err(not_wasm("more than one wasm layer".to_owned()));
    }
    reference::check_digest(&layer.digest)
        .map_err(|reason| not_wasm(format!("its wasm layer's digest is malformed: {reason}")))?;
    Ok(layer)
}

/// A download target that refuses more than `max` bytes.
struct Capped {
    bytes: Vec<u8>,
    max: u64,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let room = self.max.saturating_sub(self.bytes.len() as u64);
        if buf.len() as u64 > room {
            return std::task::Poll::Ready(Err(std::io::Error::other(
                "the blob is longer than its manifest declares",
            )));
        }
        if self.bytes.try_reserve(buf.len()).is_err() {
            return std::task::Poll::Ready(Err(std::io::Error::from(
                std::io::ErrorKind::OutOfMemory,
            )));
        }
        self.bytes.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// reqwest's rustls needs a process-wide crypto provider: ring's, unless the application
/// installed one already.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err: another provider is installed, which reqwest then uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Runs `future` to completion from sync code, on a thread of its own with a runtime of its
/// own: callable from anywhere, inside an async runtime too (where blocking the calling thread
/// is the caller's choice).
///
/// # Errors
/// [`OciError::Unreachable`] when the thread or its runtime cannot be started.
pub fn block_on<T: Send>(
    future: impl Future<Output = Result<T, OciError>> + Send,
) -> Result<T, OciError> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("dlinkwm-registry".to_owned())
            .spawn_scoped(scope, || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| OciError::Unreachable {
                        registry: String::new(),
                        reason: format!("cannot start a runtime for registry requests: {error}"),
                    })?;
                runtime.block_on(future)
            })
            .map_err(|error| OciError::Unreachable {
                registry: String::new(),
                reason: format!("cannot start a thread for registry requests: {error}"),
            })?;
        worker.join().unwrap_or_else(|_| {
            Err(OciError::Unreachable {
                registry: String::new(),
                reason: "the registry request thread panicked".to_owned(),
            })
        })
    })
}

impl OciError {
    fn from_client(reference: &PluginRef, error: OciDistributionError) -> Self {
        let registry = || reference.registry_host().to_owned();
        match error {
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => OciError::DigestMismatch {
                reference: reference.to_string(),
                // Either may come from a registry's header.
                expected: clean(&expected),
                actual: clean(&actual),
            },
            // Anything on the way (connect, reset, timeout, redirects, a body cut short) may pass.
            OciDistributionError::RequestError(error) => OciError::Unreachable {
                registry: registry(),
                reason: clean(&error_chain(&error)),
            },
            // Server errors, rate limits and request timeouts pass too.
            OciDistributionError::ServerError { code, .. }
                if code >= 500 || code == 429 || code == 408 =>
            {
                OciError::Unreachable {
                    registry: registry(),
                    reason: clean(&error.to_string()),
                }
            }
            OciDistributionError::IoError(error) => OciError::Io {
                reference: reference.to_string(),
                reason: clean(&error.to_string()),
            },
            OciDistributionError::IncompatibleLayerMediaTypeError(_)
            | OciDistributionError::PullNoLayersError
            | OciDistributionError::ImageIndexParsingNoPlatformResolverError => {
                OciError::NotAWasmArtifact {
                    reference: reference.to_string(),
                    reason: clean(&error.to_string()),
                }
            }
            error => OciError::Registry {
                reference: reference.to_string(),
                reason: clean(&error_chain(&error)),
            },
        }
    }
}

/// Registry-sent text made safe to log and show: control characters replaced, at most 512
/// bytes kept (an error body can be anything a registry sends).
fn clean(text: &str) -> String {
    const MAX: usize = 512;
    let mut cleaned = String::with_capacity(text.len().min(MAX + 3));
    for c in text.chars() {
        if cleaned.len() + c.len_utf8() > MAX {
            cleaned.push('…');
            break;
        }
        cleaned.push(if c.is_control() { ' ' } else { c });
    }
    cleaned
}

/// A store read that failed is a miss (with a warning): the registry is asked instead.
fn store_miss_on_error(stored: Result<Option<Pulled>, OciError>) -> Option<Pulled> {
    stored.unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read the local plugin store; asking the registry");
        None
    })
}

/// Runs blocking `work` (file I/O, hashing) on the runtime's blocking threads.
async fn off_the_executor<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, OciError> + Send + 'static,
) -> Result<T, OciError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|joined| {
            Err(OciError::Io {
                reference: String::new(),
                reason: format!("a blocking task failed: {joined}"),
            })
        })
}

/// `error` and its sources, joined: reqwest's top-level message alone rarely says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
