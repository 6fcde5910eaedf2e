//! What the engine compiles and caches: [`Code`] (a core module or a component, told apart by
//! [`is_component`]), keyed by the [`ContentHash`] of the plugin's bytes.

use std::fmt;
use std::sync::{Arc, OnceLock};

use wasmtime::component::Component;
use wasmtime::{InstancePre, Module};

use crate::engine::needs::Needs;
use crate::runtime::{ExportTable, StoreState};

/// Whether `bytes` are a WebAssembly component (binary header with layer 1) rather than a core
/// module (layer 0).
///
/// ```
/// assert!(!dlinkwm_core::is_component(b"\0asm\x01\0\0\0"));
/// assert!(dlinkwm_core::is_component(b"\0asm\x0d\0\x01\0"));
/// ```
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[6..8] == [1, 0]
}

/// The largest plugin whose bytes are kept beside its compiled code: above it, a second load of
/// the same bytes hashes them again (BLAKE3, a few milliseconds) rather than holding a copy.
pub(crate) const KEEP_BYTES_UP_TO: usize = 4 << 20;

/// A cheap fingerprint of a plugin's bytes: their length and an XXH3-128 of their first and last
/// 8 KiB. How the engine finds code it holds for the same bytes; never trusted alone: a match is
/// confirmed by comparing the bytes themselves (two different plugins with one fingerprint only
/// cost the later one the full hash).
pub(crate) fn fingerprint(bytes: &[u8]) -> (usize, u128) {
    const EDGE: usize = 8 * 1024;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    if bytes.len() <= 2 * EDGE {
        hasher.update(bytes);
    } else {
        hasher.update(&bytes[..EDGE]);
        hasher.update(&bytes[bytes.len() - EDGE..]);
    }
    (bytes.len(), hasher.digest128())
}

/// The BLAKE3 hash of a plugin's bytes: the key of every compiled-code cache.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hashes `bytes` (on this thread: handing a few hundred kilobytes to rayon's pool costs
    /// more in wake-ups than it saves — measured, new plugin of held code 64 µs → 99 µs).
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The raw hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// Compiled code: a core module, or a component (WASI preview 2).
#[derive(Clone)]
pub(crate) enum Code {
    Module(Module),
    Component(Component),
}

impl Code {
    /// wasmtime's serialized form, for the disk cache.
    pub(crate) fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Code::Module(module) => module.serialize(),
            Code::Component(component) => component.serialize(),
        }
    }

    /// Makes the copy-on-write images of the code's memories now rather than at its first
    /// instantiation, so that a transient failure is retried here, where nothing is half made.
    ///
    /// On Linux each image is a sealed memfd, and the kernel refuses to seal one (`EBUSY`) while
    /// something else briefly holds a reference to its pages (page migration or compaction
    /// under load): seen once in CI, instantiating an 18 MB component. A failed attempt
    /// leaves nothing behind (wasmtime keeps the image only once it is made), so it is retried
    /// a few times with a short pause; only a persistent failure is returned.
    pub(crate) fn prepare_images(&self) -> wasmtime::Result<()> {
        const PAUSES_MS: [u64; 4] = [5, 20, 50, 100];
        let mut pauses = PAUSES_MS.iter();
        loop {
            let attempt = match self {
                Code::Module(module) => module.initialize_copy_on_write_image(),
                Code::Component(component) => component.initialize_copy_on_write_image(),
            };
            match (attempt, pauses.next()) {
                (Ok(()), _) => return Ok(()),
                (Err(error), Some(&pause)) => {
                    tracing::debug!(error = %format_args!("{error:#}"), pause_ms = pause, "cannot make a memory image yet; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(pause));
                }
                (Err(error), None) => return Err(error),
            }
        }
    }
}

/// Code compiled once for its content hash and shared by every plugin version with those bytes.
pub(crate) struct CompiledModule {
    pub(crate) code: Code,
    pub(crate) hash: ContentHash,
    /// The bytes this was compiled from, kept while the code is held (up to
    /// [`KEEP_BYTES_UP_TO`]): a later load of the same bytes is recognised by a fast fingerprint
    /// and a comparison with these, instead of hashing them again (`Engine::content_hash`).
    pub(crate) bytes: Option<Arc<[u8]>>,
    /// A core module's export table and pre-instantiation, made by the first version that needs
    /// them (one for sync plugins, one for async ones: they link differently) and shared by every
    /// later version and plugin of this code.
    pub(crate) prepared: [OnceLock<Prepared>; 2],
    /// The needs its bytes declare, read once when the code is made (`engine::needs`).
    pub(crate) needs: Result<Needs, String>,
}

/// What making instances of a core module needs, worked out once per compiled module.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) exports: Arc<ExportTable>,
    pub(crate) pre: InstancePre<StoreState>,
}

impl CompiledModule {
    /// Compiled code for `bytes`, which are kept when small enough.
    pub(crate) fn new(code: Code, hash: ContentHash, bytes: &[u8]) -> Self {
        Self {
            code,
            hash,
            needs: Needs::of(bytes),
            bytes: (bytes.len() <= KEEP_BYTES_UP_TO).then(|| Arc::from(bytes)),
            prepared: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The needs the bytes declare.
    pub(crate) fn needs(&self) -> &Result<Needs, String> {
        &self.needs
    }

    /// The prepared export table and pre-instantiation for sync (`false`) or async (`true`)
    /// plugins, made by `prepare` the first time (an error is returned, never kept).
    pub(crate) fn prepared<E>(
        &self,
        asynchronous: bool,
        prepare: impl FnOnce() -> Result<Prepared, E>,
    ) -> Result<Prepared, E> {
        let slot = &self.prepared[usize::from(asynchronous)];
        if let Some(prepared) = slot.get() {
            return Ok(prepared.clone());
        }
        let prepared = prepare()?;
        // Two first loads racing both prepare; the first to finish is kept.
        Ok(slot.get_or_init(|| prepared).clone())
    }
}
