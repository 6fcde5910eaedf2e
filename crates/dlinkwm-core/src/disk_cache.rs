//! The on-disk cache of compiled code, so a new process loads an already-seen plugin without
//! compiling it.
//!
//! Entries live in `<root>/engine-<compatibility hash>/<content hash>.cwasm`, where the
//! compatibility hash is wasmtime's `Engine::precompile_compatibility_hash` (target, compiler
//! flags, enabled features and the wasmtime version): an engine with other settings, or another
//! wasmtime, never sees them. Each file is
//! `MAGIC ‖ BLAKE3(payload) ‖ payload`, where the payload is `Module::serialize`'s output; it is
//! written to a temporary file and renamed into place, so readers see whole entries only. A file
//! whose magic or checksum does not match, or that wasmtime refuses, is deleted and the module is
//! compiled again: a corrupt, truncated or foreign entry is never run.
//!
//! The cache directory must be as trusted as the program itself: whoever can write a file there
//! with a matching checksum can make the host run native code (as with wasmtime's own cache).

use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Module;
use wasmtime::component::Component;

use crate::engine::{Code, ContentHash};

const MAGIC: &[u8; 8] = b"DLWMC001";
const HEADER: usize = MAGIC.len() + 32;

/// What a cache directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheInfo {
    /// The root directory.
    pub root: PathBuf,
    /// Cached modules, across every engine configuration.
    pub entries: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// The per-user default cache directory: `$XDG_CACHE_HOME/dlinkwm`, else `~/.cache/dlinkwm`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|dir| dir.join("dlinkwm").join("compiled"))
}

pub(crate) struct DiskCache {
    root: PathBuf,
    dir: PathBuf,
    max_bytes: u64,
    temporary: AtomicU64,
}

fn entries(root: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let Ok(configurations) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    configurations
        .filter_map(Result::ok)
        .filter_map(|configuration| std::fs::read_dir(configuration.path()).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .path()
                .extension()
                .is_some_and(|extension| extension == "cwasm")
        })
        .filter_map(|entry| entry.metadata().ok().map(|meta| (entry.path(), meta)))
        .collect()
}

/// Counts what `root` holds.
pub fn cache_info(root: &Path) -> CacheInfo {
    let entries = entries(root);
    CacheInfo {
        root: root.to_owned(),
        entries: entries.len() as u64,
        bytes: entries.iter().map(|(_, meta)| meta.len()).sum(),
    }
}

/// Deletes every cached module under `root` and returns what was there.
///
/// # Errors
/// The first file that could not be removed.
pub fn clear_cache(root: &Path) -> std::io::Result<CacheInfo> {
    let info = cache_info(root);
    for (path, _) in entries(root) {
        std::fs::remove_file(&path)?;
    }
    Ok(info)
}

impl DiskCache {
    pub(crate) fn new(root: PathBuf, engine: &wasmtime::Engine, max_bytes: u64) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let configuration = format!("engine-{:016x}", hasher.finish());
        let dir = root.join(configuration);
        Self {
            root,
            dir,
            max_bytes,
            temporary: AtomicU64::new(0),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, hash: &ContentHash) -> PathBuf {
        self.dir.join(format!("{hash}.cwasm"))
    }

    pub(crate) fn contains(&self, hash: &ContentHash) -> bool {
        self.path(hash).is_file()
    }

    /// The cached code for `hash` (a component when `component`), or `None` (absent, or
    /// refused and deleted).
    pub(crate) fn load(
        &self,
        engine: &wasmtime::Engine,
        hash: &ContentHash,
        component: bool,
    ) -> Option<Code> {
        let path = self.path(hash);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot read a compiled-code cache entry; compiling");
                return None;
            }
        };
        let refuse = |reason: &str| {
            tracing::warn!(file = %path.display(), reason, "refusing a compiled-code cache entry; compiling again");
            // A file that cannot be removed is refused again next time: still never run.
            let _ = std::fs::remove_file(&path);
            None
        };
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return refuse("not a DlinkWM cache entry, or truncated");
        }
        let payload = &bytes[HEADER..];
        if blake3::hash(payload).as_bytes() != &bytes[MAGIC.len()..HEADER] {
            return refuse("checksum mismatch (corrupt or truncated)");
        }
        // SAFETY: the payload is, byte for byte (checksum verified), what `Module::serialize` or
        // `Component::serialize` wrote for an engine with this compatibility hash; wasmtime
        // checks its header again (a module's entry does not deserialize as a component).
        let code = if component {
            unsafe { Component::deserialize(engine, payload) }.map(Code::Component)
        } else {
            unsafe { Module::deserialize(engine, payload) }.map(Code::Module)
        };
        match code {
            Ok(code) => {
                // Mark it recently used, for the size bound (best effort).
                let _ = std::fs::File::options()
                    .append(true)
                    .open(&path)
                    .and_then(|file| file.set_modified(std::time::SystemTime::now()));
                Some(code)
            }
            Err(error) => refuse(&format!("wasmtime refused it: {error:#}")),
        }
    }

    /// Stores `code` for `hash`, atomically; failures are logged, never fatal.
    pub(crate) fn store(&self, hash: &ContentHash, code: &Code) {
        if let Err(error) = self.try_store(hash, code) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot write the compiled-code cache");
        }
    }

    fn try_store(&self, hash: &ContentHash, code: &Code) -> std::io::Result<()> {
        let payload = code
            .serialize()
            .map_err(|error| std::io::Error::other(format!("{error:#}")))?;
        std::fs::create_dir_all(&self.dir)?;
        let temporary = self.dir.join(format!(
            ".{hash}.{}.{}.tmp",
            std::process::id(),
            self.temporary.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(MAGIC)?;
            file.write_all(blake3::hash(&payload).as_bytes())?;
            file.write_all(&payload)?;
            file.sync_data()?;
            std::fs::rename(&temporary, self.path(hash))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        result?;
        self.enforce_bound();
        Ok(())
    }

    /// Deletes the least recently used entries until the cache fits its bound.
    fn enforce_bound(&self) {
        let mut entries = entries(&self.root);
        let mut total: u64 = entries.iter().map(|(_, meta)| meta.len()).sum();
        if total <= self.max_bytes {
            return;
        }
        entries.sort_by_key(|(_, meta)| meta.modified().ok());
        for (path, meta) in entries {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(meta.len());
            }
        }
    }
}
