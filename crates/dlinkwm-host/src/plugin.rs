//! Typed calls on a loaded plugin.

use std::cell::Cell;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::{Error, Result, SerializationFormat};

thread_local! {
    /// The encoded input of the call in progress on this thread, reused so a call allocates
    /// nothing once the buffer has grown.
    static INPUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Buffers above this size are not kept between calls.
const KEEP_BUFFER: usize = 1 << 20;

/// A loaded plugin with typed calls. Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Plugin {
    inner: dlinkwm_core::Plugin,
    format: SerializationFormat,
}

impl Plugin {
    pub(crate) fn new(inner: dlinkwm_core::Plugin, format: SerializationFormat) -> Self {
        Self { inner, format }
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
        self.call_with(self.format, entry, input)
    }

    /// Calls `entry` in `format` (JSON or postcard).
    ///
    /// # Errors
    /// As [`Plugin::call`].
    pub fn call_with<In, Out>(
        &self,
        format: SerializationFormat,
        entry: &str,
        input: &In,
    ) -> Result<Out>
    where
        In: Serialize + ?Sized,
        Out: DeserializeOwned,
    {
        let mut buffer = INPUT.take();
        buffer.clear();
        let result = match codec::encode_into(input, format, &mut buffer) {
            Ok(()) => self
                .inner
                .call(entry, format, &buffer, |output| {
                    decode_output::<Out>(output, format)
                })
                .map_err(Error::from)
                .and_then(|decoded| {
                    decoded.map_err(|reason| Error::Decode {
                        entry: entry.to_owned(),
                        format: format.name(),
                        reason,
                    })
                }),
            Err(reason) => Err(Error::Encode {
                entry: entry.to_owned(),
                format: format.name(),
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
    pub fn call_bytes(
        &self,
        entry: &str,
        format: SerializationFormat,
        input: &[u8],
    ) -> Result<Vec<u8>> {
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
    pub fn format(&self) -> SerializationFormat {
        self.format
    }

    /// This plugin with typed calls in `format`.
    #[must_use]
    pub fn with_format(&self, format: SerializationFormat) -> Self {
        Self {
            inner: self.inner.clone(),
            format,
        }
    }

    /// The engine-level plugin: versions, reload, rollback, events, settings.
    pub fn core(&self) -> &dlinkwm_core::Plugin {
        &self.inner
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The number of the version that answers calls now.
    pub fn version(&self) -> u64 {
        self.inner.version()
    }

    /// The entries of the current version.
    pub fn entries(&self) -> Vec<dlinkwm_core::EntryInfo> {
        self.inner.entries()
    }
}

/// Decodes an entry's output; an empty JSON output (a plain entry, or an SDK entry returning
/// `()` in postcard) reads as `null`, so `()` and `Option` work for every entry kind.
fn decode_output<T: DeserializeOwned>(
    bytes: &[u8],
    format: SerializationFormat,
) -> Result<T, String> {
    let bytes = if bytes.is_empty() && format == SerializationFormat::Json {
        b"null".as_slice()
    } else {
        bytes
    };
    codec::decode(bytes, format).map_err(|error| error.to_string())
}
