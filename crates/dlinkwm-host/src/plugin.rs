//! Typed calls on a loaded plugin.

use std::cell::Cell;
use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::Error;
use crate::{
    ContentHash, EntryInfo, Format, Metered, PluginKind, ReloadEvent, ReloadOutcome,
    ResolvedSettings, Result, Tier,
};
use dlinkwm_codec as codec;

thread_local! {
    /// The encoded input of the call in progress on this thread, reused so a call allocates
    /// nothing once the buffer has grown.
    static INPUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Buffers above this size are not kept between calls.
const KEEP_BUFFER: usize = 1 << 20;

/// A loaded plugin: typed and byte calls, versions, hot reload and rollback, events, settings
/// and figures. Cheap to clone, `Send + Sync`: any number of threads can call it at once, each
/// on its own instance from a bounded pool.
///
/// Calls take their arguments in one order: the entry, then (where it is chosen per call) the
/// format, then the input. Reloading swaps in a new version in one step: calls that started
/// before the swap finish on the version they started on.
#[derive(Clone, Debug)]
pub struct Plugin {
    inner: dlinkwm_core::Plugin,
    format: Format,
    /// Where a plugin from a registry came from.
    #[cfg(feature = "oci")]
    origin: Option<std::sync::Arc<crate::oci::Origin>>,
}

impl Plugin {
    pub(crate) fn new(inner: dlinkwm_core::Plugin, format: Format) -> Self {
        Self {
            inner,
            format,
            #[cfg(feature = "oci")]
            origin: None,
        }
    }

    #[cfg(feature = "oci")]
    pub(crate) fn with_origin(mut self, origin: std::sync::Arc<crate::oci::Origin>) -> Self {
        self.origin = Some(origin);
        self
    }

    #[cfg(feature = "oci")]
    pub(crate) fn origin(&self) -> Option<&std::sync::Arc<crate::oci::Origin>> {
        self.origin.as_ref()
    }

    /// Calls `entry` with `input` in the host's format and decodes its output.
    ///
    /// # Errors
    /// [`Error::Plugin`] with the engine's error (entry missing or not allowed, guest error,
    /// trap, limit), [`Error::Encode`] or [`Error::Decode`] at the edges.
    pub fn call<In, Out>(&self, entry: &str, input: &In) -> Result<Out>
    where
        In: Serialize + ?Sized,
        Out: DeserializeOwned,
    {
        self.call_with(entry, self.format, input)
    }

    /// Calls `entry` in `format` (JSON or postcard).
    ///
    /// # Errors
    /// As [`Plugin::call`].
    pub fn call_with<In, Out>(&self, entry: &str, format: Format, input: &In) -> Result<Out>
    where
        In: Serialize + ?Sized,
        Out: DeserializeOwned,
    {
        let mut buffer = INPUT.take();
        buffer.clear();
        let codec = Codec::of(&self.inner, format);
        let result = match codec.encode(input, &mut buffer) {
            Ok(()) => self
                .inner
                .call(entry, format, &buffer, |output| codec.decode::<Out>(output))
                .map_err(Error::from)
                .and_then(|decoded| {
                    decoded.map_err(|reason| Error::Decode {
                        entry: entry.to_owned(),
                        format: codec.name(),
                        reason,
                    })
                }),
            Err(reason) => Err(Error::Encode {
                entry: entry.to_owned(),
                format: codec.name(),
                reason: reason.to_string(),
            }),
        };
        if buffer.capacity() <= KEEP_BUFFER {
            INPUT.set(buffer);
        }
        result
    }

    /// Calls `entry` with raw bytes and returns its raw output.
    ///
    /// # Errors
    /// [`Error::Plugin`].
    pub fn call_raw(&self, entry: &str, input: &[u8]) -> Result<Vec<u8>> {
        Ok(self.inner.call_raw(entry, input)?)
    }

    /// Calls `entry` with bytes already encoded in `format`, returning the output bytes.
    ///
    /// # Errors
    /// [`Error::Plugin`].
    #[inline]
    pub fn call_bytes(&self, entry: &str, format: Format, input: &[u8]) -> Result<Vec<u8>> {
        Ok(self.inner.call(entry, format, input, <[u8]>::to_vec)?)
    }

    /// Calls the plugin "by config": each configured entry in order until one succeeds. Returns
    /// the entry that answered and its output bytes.
    ///
    /// # Errors
    /// [`dlinkwm_core::Error::NoEntriesConfigured`] or
    /// [`dlinkwm_core::Error::AllEntriesFailed`], as [`Error::Plugin`].
    pub fn call_configured(&self, input: &[u8]) -> Result<(String, Vec<u8>)> {
        Ok(self.inner.call_configured(self.format, input)?)
    }

    /// The format typed calls use.
    pub fn format(&self) -> Format {
        self.format
    }

    /// This plugin with typed calls in `format`.
    #[must_use]
    pub fn with_format(&self, format: Format) -> Self {
        Self {
            format,
            ..self.clone()
        }
    }

    /// Calls `entry` with bytes in `format` and hands the output to `read` while it is still
    /// in the instance's buffer (no copy), also reporting the fuel the call consumed when the
    /// plugin's settings meter fuel.
    ///
    /// # Errors
    /// [`Error::Plugin`].
    pub fn call_metered<R>(
        &self,
        entry: &str,
        format: Format,
        input: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<Metered<R>> {
        Ok(self.inner.call_metered(entry, format, input, read)?)
    }

    /// Calls `entry` of a plugin loaded with [`crate::PluginHost::load_async`] with `input` in
    /// the host's format and decodes its output: [`Plugin::call`] for async code. The input is
    /// encoded before the future is returned, so it need not outlive the call. The future is
    /// `Send` and cancellation-safe (see [`Plugin::call_metered_async`]).
    ///
    /// # Errors
    /// As [`Plugin::call`]; [`crate::core::Error::WrongCallMode`] (as [`Error::Plugin`]) for a
    /// plugin loaded for sync calls.
    pub fn call_async<'a, In, Out>(
        &'a self,
        entry: &'a str,
        input: &In,
    ) -> impl Future<Output = Result<Out>> + Send + 'a
    where
        In: Serialize + ?Sized,
        Out: DeserializeOwned + 'a,
    {
        self.call_with_async(entry, self.format, input)
    }

    /// [`Plugin::call_async`] in `format` (JSON or postcard).
    ///
    /// # Errors
    /// As [`Plugin::call_async`].
    pub fn call_with_async<'a, In, Out>(
        &'a self,
        entry: &'a str,
        format: Format,
        input: &In,
    ) -> impl Future<Output = Result<Out>> + Send + 'a
    where
        In: Serialize + ?Sized,
        Out: DeserializeOwned + 'a,
    {
        let mut buffer = Vec::new();
        let codec = Codec::of(&self.inner, format);
        let encoded = codec
            .encode(input, &mut buffer)
            .map_err(|reason| Error::Encode {
                entry: entry.to_owned(),
                format: codec.name(),
                reason: reason.to_string(),
            });
        async move {
            encoded?;
            let decoded = self
                .inner
                .call_async(entry, format, &buffer, |output| codec.decode::<Out>(output))
                .await?;
            decoded.value.map_err(|reason| Error::Decode {
                entry: entry.to_owned(),
                format: codec.name(),
                reason,
            })
        }
    }

    /// [`Plugin::call_bytes`] for a plugin loaded for async calls.
    ///
    /// # Errors
    /// As [`Plugin::call_async`].
    pub async fn call_bytes_async(
        &self,
        entry: &str,
        format: Format,
        input: &[u8],
    ) -> Result<Vec<u8>> {
        let output = self
            .inner
            .call_async(entry, format, input, <[u8]>::to_vec)
            .await?;
        Ok(output.value)
    }

    /// [`Plugin::call_raw`] for a plugin loaded for async calls.
    ///
    /// # Errors
    /// As [`Plugin::call_async`].
    pub async fn call_raw_async(&self, entry: &str, input: &[u8]) -> Result<Vec<u8>> {
        self.call_bytes_async(entry, Format::Raw, input).await
    }

    /// [`Plugin::call_metered`] for a plugin loaded for async calls: the guest runs on a fiber,
    /// yields to the executor at epoch ticks, and its host calls may await.
    ///
    /// Cancellation-safe: dropping the future at any point (waiting for a free instance, inside
    /// the guest, inside an async host method) drops the host method's future and the
    /// instance the call held (never reused half-way), gives back its place among
    /// `max_instances`, and leaves the plugin ready for the next call.
    ///
    /// # Errors
    /// As [`Plugin::call_async`].
    pub async fn call_metered_async<R>(
        &self,
        entry: &str,
        format: Format,
        input: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<Metered<R>> {
        Ok(self.inner.call_async(entry, format, input, read).await?)
    }

    /// Whether the plugin was loaded for async calls ([`crate::PluginHost::load_async`]).
    pub fn is_async(&self) -> bool {
        self.inner.is_async()
    }

    /// The plugin's name (its path as given, or the name it was loaded under).
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The file the plugin was loaded from.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path()
    }

    /// The number of the version that answers calls now (1 for the first load).
    pub fn version(&self) -> u64 {
        self.inner.version()
    }

    /// Which compiler's code the current version runs: [`Tier::Baseline`] (Winch) between a
    /// tiered reload and the swap to Cranelift's code (`[engine] tiered`), otherwise
    /// [`Tier::Optimized`].
    pub fn tier(&self) -> Tier {
        self.inner.tier()
    }

    /// Numbers of the earlier versions kept for [`Plugin::rollback`], oldest first.
    pub fn versions(&self) -> Vec<u64> {
        self.inner.kept_versions()
    }

    /// The content hash of the current version.
    pub fn content_hash(&self) -> ContentHash {
        self.inner.content_hash()
    }

    /// Whether the current version is an ABI plugin, a plain module or a component.
    pub fn kind(&self) -> PluginKind {
        self.inner.kind()
    }

    /// The entries of the current version, in export order.
    pub fn entries(&self) -> Vec<EntryInfo> {
        self.inner.entries()
    }

    /// When the current version was loaded, and how long loading it took.
    pub fn loaded(&self) -> (SystemTime, Duration) {
        self.inner.loaded()
    }

    /// Instances of the current version alive now (idle or in a call).
    pub fn live_instances(&self) -> usize {
        self.inner.live_instances()
    }

    /// The linear memory held by the current version's idle instances, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    /// The settings the plugin runs with now.
    pub fn settings(&self) -> Arc<ResolvedSettings> {
        self.inner.settings()
    }

    /// Replaces the settings; the next call uses them (see `dlinkwm_core::Plugin::set_settings`
    /// for how grants are renewed).
    ///
    /// # Errors
    /// [`Error::Plugin`] with a configuration error naming the key the engine cannot enforce;
    /// the old settings stay.
    pub fn set_settings(&self, settings: ResolvedSettings) -> Result<()> {
        Ok(self.inner.set_settings(settings)?)
    }

    /// Re-reads the plugin's file and swaps it in if it is valid and different.
    ///
    /// For a plugin loaded from a registry tag: checks the tag now, and pulls, verifies and
    /// swaps in the version it points to if that is not the one serving.
    ///
    /// # Errors
    /// Why the file was refused; the current version keeps serving and a
    /// [`ReloadEvent::Failed`] is sent. For a registry plugin also [`crate::Error::Registry`].
    pub fn reload(&self) -> Result<ReloadOutcome> {
        #[cfg(feature = "oci")]
        if let Some(origin) = &self.origin {
            return self.reload_from_registry(origin);
        }
        Ok(self.inner.reload()?)
    }

    /// [`Plugin::reload`] for async code: the new code is compiled on the runtime's blocking
    /// threads (for a plugin loaded for async calls) and nothing blocks the executor.
    ///
    /// # Errors
    /// As [`Plugin::reload`].
    pub async fn reload_async(&self) -> Result<ReloadOutcome> {
        #[cfg(feature = "oci")]
        if let Some(origin) = &self.origin {
            return self.reload_from_registry_async(origin).await;
        }
        Ok(self.inner.reload_async().await?)
    }

    /// [`Plugin::reload_from_bytes`] for async code (see [`Plugin::reload_async`]).
    ///
    /// # Errors
    /// As [`Plugin::reload`].
    pub async fn reload_from_bytes_async(&self, bytes: &[u8]) -> Result<ReloadOutcome> {
        Ok(self.inner.reload_from_bytes_async(bytes).await?)
    }

    /// Swaps in `bytes` (a wasm binary or WAT text) as the new version if they are valid and
    /// different.
    ///
    /// # Errors
    /// As [`Plugin::reload`].
    pub fn reload_from_bytes(&self, bytes: &[u8]) -> Result<ReloadOutcome> {
        Ok(self.inner.reload_from_bytes(bytes)?)
    }

    /// Swaps in the plugin file at `path` (another file than the one the plugin was loaded
    /// from, such as a new build) as the new version if it is valid and different.
    ///
    /// # Errors
    /// [`crate::core::Error::Read`] for a file that cannot be read, and as [`Plugin::reload`].
    pub fn reload_from(&self, path: impl AsRef<Path>) -> Result<ReloadOutcome> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| {
            Error::Plugin(dlinkwm_core::Error::Read {
                path: path.to_owned(),
                source: Arc::new(source),
            })
        })?;
        self.reload_from_bytes(&bytes)
    }

    /// [`Plugin::rollback`] for async code: waits for a reload in progress without blocking
    /// the executor (the sync `rollback` refuses to wait inside a tokio runtime).
    ///
    /// # Errors
    /// As [`Plugin::rollback`].
    pub async fn rollback_async(&self) -> Result<u64> {
        Ok(self.inner.rollback_async().await?)
    }

    /// Makes the previous good version current again, at once; returns its number.
    ///
    /// # Errors
    /// [`crate::core::Error::NoRollbackTarget`] when no earlier version is kept.
    pub fn rollback(&self) -> Result<u64> {
        Ok(self.inner.rollback()?)
    }

    /// Subscribes to this plugin's reload events (reloaded, refused, rolled back, file removed).
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<ReloadEvent> {
        self.inner.subscribe()
    }

    /// Calls `callback` on the reloading thread for each reload event.
    pub fn on_event(&self, callback: impl Fn(&ReloadEvent) + Send + Sync + 'static) {
        self.inner.on_event(callback);
    }

    /// Keeps this plugin's settings in step with `config` (by the plugin's name), with `adjust`
    /// applied to what each version of the configuration gives it (an application's own
    /// defaults, for example).
    ///
    /// # Errors
    /// [`Error::Plugin`] when the plugin's engine cannot enforce its settings in the current
    /// configuration; the plugin is not followed then.
    pub fn follow(
        &self,
        config: &crate::DynamicConfig,
        adjust: impl Fn(&crate::Config, ResolvedSettings) -> ResolvedSettings + Send + Sync + 'static,
    ) -> Result<()> {
        Ok(config.follow_with(&self.inner, adjust)?)
    }

    /// The engine-level plugin. Everything a host does with a plugin is on this type; this is
    /// for DlinkWM's own crates.
    #[doc(hidden)]
    pub fn core(&self) -> &dlinkwm_core::Plugin {
        &self.inner
    }
}

/// Decodes an entry's output; an empty JSON output (a plain entry, or an SDK entry returning
/// `()` in postcard) reads as `null`, so `()` and `Option` work for every entry kind.
/// How a typed call encodes its input and decodes its output: in the host's format, or, for an
/// Extism plugin (which takes bytes with no format), by Extism's convention: a string or bytes as
/// they are, anything else as JSON.
#[derive(Clone, Copy)]
enum Codec {
    Format(Format),
    Extism,
}

impl Codec {
    #[inline]
    fn of(plugin: &dlinkwm_core::Plugin, format: Format) -> Self {
        if plugin.is_extism() {
            Codec::Extism
        } else {
            Codec::Format(format)
        }
    }

    fn name(self) -> &'static str {
        match self {
            Codec::Format(format) => format.name(),
            Codec::Extism => "extism (raw or json)",
        }
    }

    #[inline]
    fn encode<T: Serialize + ?Sized>(
        self,
        value: &T,
        output: &mut Vec<u8>,
    ) -> std::result::Result<(), codec::CodecError> {
        match self {
            Codec::Format(format) => codec::encode_into(value, format, output),
            Codec::Extism => codec::encode_extism_into(value, output),
        }
    }

    #[inline]
    fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> std::result::Result<T, String> {
        match self {
            Codec::Format(format) => {
                let bytes = if bytes.is_empty() && format == Format::Json {
                    b"null".as_slice()
                } else {
                    bytes
                };
                codec::decode(bytes, format).map_err(|error| error.to_string())
            }
            Codec::Extism => codec::decode_extism(bytes).map_err(|error| error.to_string()),
        }
    }
}
