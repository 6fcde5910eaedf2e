//! What registry operations end in.

use std::path::PathBuf;

/// Why a plugin could not be pushed, resolved or pulled. Every variant names the reference or
/// registry and says why in words; none is ever a panic.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// The text is not a plugin reference.
    #[error("`{reference}` is not a plugin reference: {reason}")]
    Reference {
        /// The text.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The registry did not answer, or failed in a way that may pass (refused, reset, timed
    /// out, rate-limited, a server error).
    #[error("registry `{registry}` cannot be reached: {reason}")]
    Unreachable {
        /// The registry (`host:port`).
        registry: String,
        /// Why.
        reason: String,
    },
    /// The registry answered with an error (unknown tag or repository, denied).
    #[error("registry refused `{reference}`: {reason}")]
    Registry {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// What the reference points to is not a wasm artifact (no `application/wasm` layer,
    /// several, a malformed descriptor), or the file pushed is not WebAssembly.
    #[error("`{reference}` is not a wasm plugin artifact: {reason}")]
    NotAWasmArtifact {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The wasm layer is larger than the largest plugin allowed.
    #[error(
        "`{reference}` is {size} bytes, more than the {max} allowed (`[engine] max_module_mib`)"
    )]
    TooLarge {
        /// The reference.
        reference: String,
        /// The layer's size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The bytes received are not those the digest names: the blob or manifest was tampered
    /// with or damaged. Nothing of it is used or kept.
    #[error("`{reference}` failed verification: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// The digest asked for.
        expected: String,
        /// What arrived instead.
        actual: String,
    },
    /// Writing what was downloaded failed.
    #[error("cannot receive `{reference}`: {reason}")]
    Io {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The local store could not be read or written.
    #[error("the local plugin store at {} failed: {reason}", path.display())]
    Store {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl OciError {
    /// Whether this is a failure to reach the registry, which may pass (then a host keeps
    /// serving what it has and tries again later).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, OciError::Unreachable { .. })
    }

    /// Whether what the reference points to is refused for good: tampered, too large, not a
    /// wasm artifact, or a malformed reference. Asking again cannot change these; every other
    /// error may pass.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OciError::DigestMismatch { .. }
                | OciError::TooLarge { .. }
                | OciError::NotAWasmArtifact { .. }
                | OciError::Reference { .. }
        )
    }

    /// Whether the bytes failed verification (tampered or damaged).
    pub fn is_tampered(&self) -> bool {
        matches!(self, OciError::DigestMismatch { .. })
    }
}
