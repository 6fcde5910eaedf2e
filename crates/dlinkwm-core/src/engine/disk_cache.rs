//! The on-disk cache of compiled code, so a new process loads an already-seen plugin without
//! compiling it.
//!
//! # Layout
//!
//! Entries live in `<root>/engine-<engine hash>/<content hash>.cwasm`. The engine hash is the
//! BLAKE3 hash of wasmtime's `Engine::precompile_compatibility_hash` (target, compiler flags,
//! enabled features and the wasmtime version; the folder name holds its first 8 bytes in hex): an
//! engine with other settings, or another wasmtime, never sees another's entries. Each file is
//!
//! ```text
//! payload ‖ MAGIC ‖ content hash (32) ‖ engine hash (32) ‖ XXH3-128(MAGIC ‖ both hashes ‖ payload)
//! ```
//!
//! where the payload is `Module::serialize`'s (or `Component::serialize`'s) output. The keys and
//! checksum are a *trailer*, so a verified core-module entry is handed to wasmtime as the file
//! itself (`Module::deserialize_open_file`: the code is mapped from the page cache, not copied into
//! fresh memory; wasmtime ignores bytes after its image). Components are deserialized from the
//! bytes read (wasmtime 48 has no open-file variant for them). An entry is written to a temporary
//! file with an unpredictable name, created exclusively (`O_EXCL`), and renamed into place, so
//! readers see whole entries only, and an entry's file is never modified in place afterwards
//! (only replaced by a rename, or unlinked), as a mapped file must not be.
//!
//! The checksum detects damage (a torn or truncated write, a flipped bit); it is not what makes
//! an entry trusted — ownership and permissions are (below): whoever can write an entry can also
//! write a matching checksum, whatever the hash. So it is XXH3-128, which reads the payload about
//! five times faster than BLAKE3 and misses random damage with odds of 2^-128.
//!
//! # Trust
//!
//! Deserializing an entry maps native code that the host then runs, as the host's user: whoever
//! can write an entry can run code as that user. The cache is therefore used only where nobody
//! else can write (see `docs/security.md`, "The compiled-code cache"):
//!
//! - the root and the engine's folder are created with mode `0700`, entries with `0600` (set
//!   explicitly, whatever the umask);
//! - the root and the engine's folder must be real directories (not symbolic links), owned by the
//!   process's effective user and not writable by group or others. A folder that fails this is
//!   refused with a warning and the cache is off for that engine: loads still work, by compiling.
//!   The check is made when the engine is created and again before every load and store;
//! - an entry is opened without following symbolic links (`O_NOFOLLOW`) and must be a regular
//!   file owned by the effective user and not writable by group or others;
//! - an entry binds its key: its trailer names the content hash and the engine hash, and a load
//!   compares them with the ones it looked up;
//! - a file whose magic, checksum or key does not match, or that wasmtime refuses, is deleted and
//!   the module is compiled again: a corrupt, truncated, misplaced or foreign entry is never run;
//! - [`clear_cache`] and the size bound delete only regular files named like entries
//!   (`<64 hex>.cwasm`) in real `engine-<16 hex>` folders, never following symbolic links.
//!
//! The cache is implemented for Unix; elsewhere it is always off.

pub(crate) mod functions;

use std::ffi::OsStr;
use std::hash::{Hash as _, Hasher};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::Module;
use wasmtime::component::Component;

use crate::engine::code::{Code, ContentHash};

const MAGIC: &[u8; 8] = b"DLWMC004";
/// Where the content hash ends and the engine hash begins.
const CONTENT_END: usize = MAGIC.len() + 32;
/// The magic and both keys: what the checksum covers besides the payload.
const KEYS: usize = CONTENT_END + 32;
/// The whole trailer: the keys and the checksum.
const TRAILER: usize = KEYS + 16;

/// The checksum of an entry: XXH3-128 of its keys and payload, little-endian.
fn checksum(keys: &[u8], payload: &[u8]) -> [u8; 16] {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(keys);
    hasher.update(payload);
    hasher.digest128().to_le_bytes()
}

/// An error of [`clear_cache`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The cache folder is not one only this user can write (another owner, writable by group or
    /// others, a symbolic link, not a directory): nothing in it is touched.
    #[error("the compiled-code cache folder `{}` is not trusted: it is {reason}", dir.display())]
    Untrusted {
        /// The folder.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file of the cache could not be removed.
    #[error("cannot remove `{}` from the compiled-code cache", path.display())]
    Remove {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a cache directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheInfo {
    /// The root directory.
    pub root: PathBuf,
    /// Cached modules, across every engine configuration.
    pub entries: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Compiled functions of the function cache (`[engine] incremental`), every engine's.
    pub function_entries: u64,
    /// Their total size in bytes.
    pub function_bytes: u64,
    /// Why an engine would refuse this root (its owner, its permissions, a symbolic link), or
    /// `None` when it would use it (or it does not exist yet).
    pub untrusted: Option<String>,
}

/// The per-user default cache directory: `$XDG_CACHE_HOME/dlinkwm`, else `~/.cache/dlinkwm`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|dir| dir.join("dlinkwm").join("compiled"))
}

/// Counts what `root` holds: the entries that [`clear_cache`] would delete.
pub fn cache_info(root: &Path) -> CacheInfo {
    let root = normalize(root);
    let euid = platform::euid();
    let untrusted = untrusted(&root, euid);
    let all = entries(&root, euid, true);
    let (functions, modules): (Vec<_>, Vec<_>) = all.iter().partition(|(path, _)| {
        path.parent()
            .and_then(Path::file_name)
            .is_some_and(is_functions_folder)
    });
    CacheInfo {
        entries: modules.len() as u64,
        bytes: modules.iter().map(|(_, meta)| meta.len()).sum(),
        function_entries: functions.len() as u64,
        function_bytes: functions.iter().map(|(_, meta)| meta.len()).sum(),
        root,
        untrusted,
    }
}

/// Deletes every cached module under `root` and returns what was there.
///
/// Only regular files named like entries (`<64 hex>.cwasm`) in the `engine-<16 hex>` folders,
/// and like function-cache entries (`<64 hex>`) in the `functions-<16 hex>` folders, that pass
/// the trust check are deleted; symbolic links are never followed.
///
/// # Errors
/// [`CacheError::Untrusted`] when `root` is not trusted (then nothing is deleted), or
/// [`CacheError::Remove`] for the first file that could not be removed.
pub fn clear_cache(root: &Path) -> Result<CacheInfo, CacheError> {
    let info = cache_info(root);
    if let Some(reason) = info.untrusted.clone() {
        return Err(CacheError::Untrusted {
            dir: info.root,
            reason,
        });
    }
    for (path, _) in entries(&info.root, platform::euid(), true) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CacheError::Remove { path, source }),
        }
    }
    Ok(info)
}

/// `path` without a trailing `/` or `.` components, so that looking at it never resolves a
/// symbolic link in its last component.
fn normalize(path: &Path) -> PathBuf {
    path.components().collect()
}

/// Why the folder `dir` is not trusted, or `None` (trusted, or it does not exist).
fn untrusted(dir: &Path, euid: u32) -> Option<String> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => platform::dir_refusal(&meta, euid),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => Some(format!("impossible to inspect ({error})")),
    }
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_engine_folder(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|name| name.strip_prefix("engine-"))
        .is_some_and(|hex| is_lower_hex(hex, 16))
}

fn is_functions_folder(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|name| name.strip_prefix("functions-"))
        .is_some_and(|hex| is_lower_hex(hex, 16))
}

/// The name of `engine`'s folders under the cache root: the first 8 bytes of a BLAKE3 hash of
/// its compatibility hash, in hex (`engine-<this>` for modules, `functions-<this>` for the
/// function cache).
pub(crate) fn engine_folder(engine: &wasmtime::Engine) -> String {
    engine_hash(engine)[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A BLAKE3 hash of `engine`'s compatibility hash (what its compiled code needs to run).
pub(crate) fn engine_hash(engine: &wasmtime::Engine) -> [u8; 32] {
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    *hasher.0.finalize().as_bytes()
}

fn is_entry_file(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|name| name.strip_suffix(".cwasm"))
        .is_some_and(|hex| is_lower_hex(hex, 64))
}

/// The cache's own files under `root`: regular files named like entries in trusted folders named
/// like engine folders. Nothing is reached through a symbolic link.
fn entries(root: &Path, euid: u32, with_functions: bool) -> Vec<(PathBuf, std::fs::Metadata)> {
    // `symlink_metadata`: a root that is a symbolic link is not listed.
    if !std::fs::symlink_metadata(root).is_ok_and(|meta| meta.is_dir()) {
        return Vec::new();
    }
    let Ok(folders) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for folder in folders.filter_map(Result::ok) {
        let name = folder.file_name();
        let functions = with_functions && is_functions_folder(&name);
        if !is_engine_folder(&name) && !functions {
            continue;
        }
        let folder = folder.path();
        if let Some(reason) = untrusted(&folder, euid) {
            tracing::warn!(dir = %folder.display(), reason, "skipping an untrusted folder of the compiled-code cache");
            continue;
        }
        let Ok(files) = std::fs::read_dir(&folder) else {
            continue;
        };
        for file in files.filter_map(Result::ok) {
            let name = file.file_name();
            let entry = if functions {
                name.to_str().is_some_and(|name| is_lower_hex(name, 64))
            } else {
                is_entry_file(&name)
            };
            if !entry {
                continue;
            }
            // `DirEntry::metadata` does not follow a symbolic link.
            if let Ok(meta) = file.metadata()
                && meta.file_type().is_file()
            {
                found.push((file.path(), meta));
            }
        }
    }
    found
}

/// A [`Hasher`] feeding BLAKE3, to reduce wasmtime's compatibility hash to 32 stable bytes.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let mut first = [0; 8];
        first.copy_from_slice(&self.0.finalize().as_bytes()[..8]);
        u64::from_le_bytes(first)
    }
}

pub(crate) struct DiskCache {
    root: PathBuf,
    dir: PathBuf,
    engine_hash: [u8; 32],
    max_bytes: u64,
    euid: u32,
    /// Set when a folder failed the trust check: the cache is off for this engine.
    refused: AtomicBool,
    /// Whether core modules are mapped from their entries' files (cleared when the file system
    /// refuses executable mappings).
    map_files: AtomicBool,
}

fn warn_refused(dir: &Path, reason: &str) {
    tracing::warn!(
        dir = %dir.display(),
        reason,
        "refusing the compiled-code cache folder: it must be a directory of this user's own that \
         nobody else can write; the disk cache is off for this engine"
    );
}

impl DiskCache {
    /// The cache in `root` for `engine`, or `None` (with a warning) when the root or the engine's
    /// folder exists and is not trusted. Nothing is created until the first store.
    pub(crate) fn new(root: PathBuf, engine: &wasmtime::Engine, max_bytes: u64) -> Option<Self> {
        let root = normalize(&root);
        if !platform::SUPPORTED {
            warn_refused(&root, platform::UNSUPPORTED);
            return None;
        }
        let engine_hash = engine_hash(engine);
        let folder = engine_folder(engine);
        let cache = Self {
            dir: root.join(format!("engine-{folder}")),
            root,
            engine_hash,
            max_bytes,
            euid: platform::euid(),
            refused: AtomicBool::new(false),
            map_files: AtomicBool::new(true),
        };
        cache.usable().then_some(cache)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, hash: &ContentHash) -> PathBuf {
        self.dir.join(format!("{hash}.cwasm"))
    }

    /// Whether the root and the engine's folder are (still) trusted; the first failure warns and
    /// turns the cache off for good.
    fn usable(&self) -> bool {
        if self.refused.load(Ordering::Relaxed) {
            return false;
        }
        for folder in [&self.root, &self.dir] {
            if let Some(reason) = untrusted(folder, self.euid) {
                if !self.refused.swap(true, Ordering::Relaxed) {
                    warn_refused(folder, &reason);
                }
                return false;
            }
        }
        true
    }

    pub(crate) fn contains(&self, hash: &ContentHash) -> bool {
        self.usable()
            && std::fs::symlink_metadata(self.path(hash))
                .is_ok_and(|meta| meta.file_type().is_file())
    }

    /// The cached code for `hash` (a component when `component`), or `None` (absent, refused and
    /// deleted, or the cache is not trusted).
    pub(crate) fn load(
        &self,
        engine: &wasmtime::Engine,
        hash: &ContentHash,
        component: bool,
    ) -> Option<Code> {
        if !self.usable() {
            return None;
        }
        let path = self.path(hash);
        let refuse = |reason: &str| {
            tracing::warn!(file = %path.display(), reason, "refusing a compiled-code cache entry; compiling again");
            // `remove_file` removes a symbolic link itself, never its target. A file that cannot
            // be removed is refused again next time: still never run.
            let _ = std::fs::remove_file(&path);
            None
        };
        let file = match platform::open_entry(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                if std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink())
                {
                    return refuse("a symbolic link");
                }
                tracing::warn!(file = %path.display(), %error, "cannot read a compiled-code cache entry; compiling");
                return None;
            }
        };
        // The checks below are on the file opened (`fstat`), not on whatever the path names now.
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot read a compiled-code cache entry; compiling");
                return None;
            }
        };
        if let Some(reason) = platform::file_refusal(&meta, self.euid) {
            return refuse(&reason);
        }
        // Sized from `fstat` up front: growing the buffer while reading would copy it again
        // and again (an entry is megabytes). `read_to_end` still reads to the real end.
        let mut bytes = Vec::new();
        // Best effort: an entry too large to allocate at once is left to `read_to_end`, whose
        // failure is an error value, never an abort.
        let _ = bytes.try_reserve_exact(usize::try_from(meta.len()).unwrap_or(0).saturating_add(1));
        if let Err(error) = (&file).read_to_end(&mut bytes) {
            tracing::warn!(file = %path.display(), %error, "cannot read a compiled-code cache entry; compiling");
            return None;
        }
        let Some((payload, trailer)) = bytes
            .len()
            .checked_sub(TRAILER)
            .and_then(|split| bytes.split_at_checked(split))
        else {
            return refuse("truncated");
        };
        if &trailer[..MAGIC.len()] != MAGIC {
            return refuse("not a DlinkWM cache entry of this format");
        }
        if checksum(&trailer[..KEYS], payload)[..] != trailer[KEYS..] {
            return refuse("checksum mismatch (corrupt or truncated)");
        }
        if trailer[MAGIC.len()..CONTENT_END] != hash.as_bytes()[..] {
            return refuse(
                "it holds the code of other content (its trailer names another content hash)",
            );
        }
        if trailer[CONTENT_END..KEYS] != self.engine_hash {
            return refuse("it was written for another engine configuration");
        }
        // Mark it recently used, for the size bound (best effort), through the file descriptor
        // that was checked: it is ours, so no write access is needed.
        let _ = file.set_modified(std::time::SystemTime::now());
        // Why deserializing is sound: the payload is, byte for byte (checksum verified), what
        // `Module::serialize` or `Component::serialize` wrote for these very bytes (content hash
        // in the trailer) and an engine with this compatibility hash (engine hash in the
        // trailer), read from a regular file of this user's own that nobody else can write, in
        // folders nobody else can write; wasmtime checks its own header again (a module's entry
        // does not deserialize as a component).
        let code = if component {
            // SAFETY: a verified entry, written by `Component::serialize` (see above).
            unsafe { Component::deserialize(engine, payload) }.map(Code::Component)
        } else {
            self.module(engine, file, payload).map(Code::Module)
        };
        match code {
            Ok(code) => Some(code),
            Err(error) => refuse(&format!("wasmtime refused it: {error:#}")),
        }
    }

    /// A verified core-module entry as a module: mapped from its file, else (a cache on a
    /// `noexec` mount refuses executable mappings; from then on this engine does not try) from
    /// the bytes read. The mapping keeps the file open while the module lives (wasmtime also
    /// maps linear-memory images from it): one descriptor per cached module in use.
    fn module(
        &self,
        engine: &wasmtime::Engine,
        file: std::fs::File,
        payload: &[u8],
    ) -> wasmtime::Result<Module> {
        if self.map_files.load(Ordering::Relaxed) {
            // SAFETY: a verified entry, written by `Module::serialize` (see `load`). The file is
            // the one just read and verified (the descriptor pins its inode), and DlinkWM never
            // modifies an entry's file in place (it replaces entries by renaming new files over
            // them and unlinks them), so the mapped code stays what was verified.
            match unsafe { Module::deserialize_open_file(engine, file) } {
                Ok(module) => return Ok(module),
                Err(error) => {
                    self.map_files.store(false, Ordering::Relaxed);
                    tracing::debug!(dir = %self.dir.display(), error = %format!("{error:#}"), "cannot map compiled code from the cache's files; copying it instead");
                }
            }
        }
        // SAFETY: as above; the payload is the verified bytes.
        unsafe { Module::deserialize(engine, payload) }
    }

    /// Stores `code` for `hash`, atomically; failures are logged, never fatal.
    pub(crate) fn store(&self, hash: &ContentHash, code: &Code) {
        if let Err(error) = self.try_store(hash, code) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot write the compiled-code cache");
        }
    }

    fn try_store(&self, hash: &ContentHash, code: &Code) -> std::io::Result<()> {
        if !self.usable() {
            return Ok(());
        }
        let payload = code
            .serialize()
            .map_err(|error| std::io::Error::other(format!("{error:#}")))?;
        // Each folder is checked before anything is created in it.
        platform::create_private_dir(&self.root)?;
        if !self.usable() {
            return Ok(());
        }
        platform::create_private_dir(&self.dir)?;
        if !self.usable() {
            return Ok(());
        }
        let mut keys = [0; KEYS];
        keys[..MAGIC.len()].copy_from_slice(MAGIC);
        keys[MAGIC.len()..CONTENT_END].copy_from_slice(hash.as_bytes());
        keys[CONTENT_END..].copy_from_slice(&self.engine_hash);
        let checksum = checksum(&keys, &payload);
        // Deleted when dropped, on any error below.
        let mut file = platform::create_temporary(&self.dir)?;
        file.write_all(&payload)?;
        file.write_all(&keys)?;
        file.write_all(&checksum)?;
        file.as_file().sync_data()?;
        // `rename` replaces whatever the entry's name held (a symbolic link itself, never its
        // target).
        file.persist(self.path(hash)).map_err(|error| error.error)?;
        self.enforce_bound();
        Ok(())
    }

    /// Deletes the least recently used entries until the cache fits its bound.
    fn enforce_bound(&self) {
        let mut entries = entries(&self.root, self.euid, false);
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

#[cfg(unix)]
mod platform {
    use std::fs::{DirBuilder, File, Metadata, Permissions};
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    use std::path::Path;

    pub(super) const SUPPORTED: bool = true;
    pub(super) const UNSUPPORTED: &str = "";

    /// The process's effective user id.
    pub(super) fn euid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    fn ownership_refusal(meta: &Metadata, euid: u32) -> Option<String> {
        if meta.uid() != euid {
            return Some(format!(
                "owned by uid {}, not by this process's effective uid {euid}",
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Some(format!(
                "writable by group or others (mode {:04o})",
                meta.mode() & 0o7777
            ));
        }
        None
    }

    /// Why a folder with `meta` (from `symlink_metadata`) is not trusted, or `None`.
    pub(super) fn dir_refusal(meta: &Metadata, euid: u32) -> Option<String> {
        if meta.file_type().is_symlink() {
            return Some("a symbolic link".to_owned());
        }
        if !meta.is_dir() {
            return Some("not a directory".to_owned());
        }
        ownership_refusal(meta, euid)
    }

    /// Why an entry with `meta` (from the open file) is not trusted, or `None`.
    pub(super) fn file_refusal(meta: &Metadata, euid: u32) -> Option<String> {
        if !meta.is_file() {
            return Some("not a regular file".to_owned());
        }
        ownership_refusal(meta, euid)
    }

    /// Creates `dir` with mode 0700 unless it exists (missing parents too, 0700 as the XDG base
    /// directory specification asks); an existing one is left as it is, for the trust check.
    pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
        if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        match DirBuilder::new().mode(0o700).create(dir) {
            // The mode given to `mkdir` is masked by the umask: set it explicitly.
            Ok(()) => std::fs::set_permissions(dir, Permissions::from_mode(0o700)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// A new temporary file in `dir`, mode 0600, with a random name and created with `O_EXCL`:
    /// nothing planted in advance (a symbolic link at a name the cache would use) is opened.
    pub(super) fn create_temporary(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
        let file = tempfile::Builder::new()
            .prefix(".")
            .suffix(".tmp")
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(dir)?;
        // The mode given at creation is masked by the umask: set it explicitly.
        file.as_file()
            .set_permissions(Permissions::from_mode(0o600))?;
        Ok(file)
    }

    /// Opens an entry for reading without following a symbolic link (`O_NOFOLLOW`), and without
    /// blocking on a FIFO (`O_NONBLOCK`).
    pub(super) fn open_entry(path: &Path) -> std::io::Result<File> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }
}

/// Without Unix ownership and permissions the folder cannot be checked: the cache is off.
#[cfg(not(unix))]
mod platform {
    use std::fs::{File, Metadata};
    use std::path::Path;

    pub(super) const SUPPORTED: bool = false;
    pub(super) const UNSUPPORTED: &str =
        "the compiled-code cache needs Unix file ownership and permissions";

    fn unsupported() -> std::io::Error {
        std::io::Error::other(UNSUPPORTED)
    }

    pub(super) fn euid() -> u32 {
        0
    }

    pub(super) fn dir_refusal(_: &Metadata, _: u32) -> Option<String> {
        Some(UNSUPPORTED.to_owned())
    }

    pub(super) fn file_refusal(_: &Metadata, _: u32) -> Option<String> {
        Some(UNSUPPORTED.to_owned())
    }

    pub(super) fn create_private_dir(_: &Path) -> std::io::Result<()> {
        Err(unsupported())
    }

    pub(super) fn create_temporary(_: &Path) -> std::io::Result<tempfile::NamedTempFile> {
        Err(unsupported())
    }

    pub(super) fn open_entry(_: &Path) -> std::io::Result<File> {
        Err(unsupported())
    }
}
