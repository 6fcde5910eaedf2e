//! What the engine compiles and caches: [`Code`] (a core module or a component, told apart by
//! [`is_component`]), keyed by the [`ContentHash`] of the plugin's bytes.

use std::fmt;

use wasmtime::Module;
use wasmtime::component::Component;

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

/// The BLAKE3 hash of a plugin's bytes: the key of every compiled-code cache.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hashes `bytes`.
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
}

/// Code compiled once for its content hash and shared by every plugin version with those bytes.
pub(crate) struct CompiledModule {
    pub(crate) code: Code,
    pub(crate) hash: ContentHash,
}
