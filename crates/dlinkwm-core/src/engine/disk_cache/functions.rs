//! Cranelift's incremental compilation cache, kept by DlinkWM in memory and beside the
//! compiled-code cache on disk: a rebuilt plugin is mostly the functions of the version it
//! replaces, and a function whose body did not change is not compiled again.
//!
//! Keys are Cranelift's (a SHA-256 of a function's IR and the target's flags, 32 bytes); values
//! are its compiled functions. On disk each entry is `functions-<engine>/<hex key>`: a magic
//! number, an XXH3-128 checksum of the value, the value. An entry that does not verify is
//! removed and the function compiled again; entries are trusted as the compiled-code cache's are
//! (a folder of the user's own that nobody else can write). Both tiers are bounded: the least
//! recently used entries go first.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use super::{platform, untrusted};
use crate::sync::lock;

const MAGIC: &[u8; 8] = b"DLWMF001";
/// Magic and checksum.
const HEADER: usize = 8 + 16;
/// Cranelift's keys are SHA-256 hashes.
const KEY_LEN: usize = 32;
/// The largest entry read back (a single function's compiled code and its tables).
const MAX_ENTRY: u64 = 64 << 20;
/// Entries waiting for the writer thread at most.
const WRITE_QUEUE: usize = 16 * 1024;

/// A key and its compiled function.
type Entry = ([u8; KEY_LEN], std::sync::Arc<[u8]>);

/// What the function cache did, for figures and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionCacheStats {
    /// Functions not compiled because the cache had them (memory or disk).
    pub hits: u64,
    /// Functions compiled and added to the cache.
    pub misses: u64,
    /// Of the hits, those read from disk.
    pub disk_hits: u64,
    /// Bytes held in memory.
    pub memory_bytes: u64,
}

/// The cache handed to wasmtime (`Config::enable_incremental_compilation`).
pub(crate) struct FunctionCache {
    memory: Mutex<Memory>,
    /// Set once the engine exists (its folder is named by the engine's compatibility hash).
    disk: OnceLock<std::sync::Arc<Disk>>,
    /// New entries on their way to disk: written by a thread of their own, so compiling never
    /// waits for the file system (thousands of small files for a large plugin). Bounded: when
    /// the writer falls behind, entries are kept in memory only.
    writes: OnceLock<std::sync::mpsc::SyncSender<Entry>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    disk_hits: AtomicU64,
}

struct Memory {
    entries: HashMap<[u8; KEY_LEN], (std::sync::Arc<[u8]>, u64)>,
    bytes: usize,
    max: usize,
    clock: u64,
}

struct Disk {
    root: PathBuf,
    dir: PathBuf,
    max: u64,
    euid: u32,
    /// Bytes on disk, counted at the first insert, then kept up to date (approximately: other
    /// processes write too; the count is redone at each pruning).
    bytes: OnceLock<AtomicU64>,
    pruning: Mutex<()>,
}

impl std::fmt::Debug for FunctionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionCache")
            .field("stats", &self.stats())
            .field("dir", &self.disk.get().map(|disk| &disk.dir))
            .finish()
    }
}

impl FunctionCache {
    /// A cache holding at most `max_bytes` in memory, and as much on disk once
    /// [`FunctionCache::use_disk`] is called.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            memory: Mutex::new(Memory {
                entries: HashMap::new(),
                bytes: 0,
                max: max_bytes,
                clock: 0,
            }),
            disk: OnceLock::new(),
            writes: OnceLock::new(),
            writer: Mutex::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
        }
    }

    /// Keeps entries in `root/functions-<engine_folder>` too (the compiled-code cache's root and
    /// the engine's folder name), bounded by `max_bytes`.
    pub(crate) fn use_disk(&self, root: &Path, engine_folder: &str, max_bytes: u64) {
        let disk = std::sync::Arc::new(Disk {
            root: root.to_owned(),
            dir: root.join(format!("functions-{engine_folder}")),
            max: max_bytes,
            euid: platform::euid(),
            bytes: OnceLock::new(),
            pruning: Mutex::new(()),
        });
        if self.disk.set(disk.clone()).is_err() {
            return;
        }
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Entry>(WRITE_QUEUE);
        let writer = std::thread::Builder::new()
            .name("dlinkwm-function-cache".to_owned())
            // Ends when the cache (the sender) is dropped with its engine.
            .spawn(move || {
                for (key, value) in receiver {
                    disk.write(&key, &value);
                }
            });
        match writer {
            Ok(writer) => {
                let _ = self.writes.set(sender);
                *lock(&self.writer) = Some(writer);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot start the function cache's writer; functions are kept in memory only");
            }
        }
    }

    /// Waits until every entry queued so far is on disk (tests, benchmarks).
    #[cfg(test)]
    fn flush(&self) {
        if let Some(writes) = self.writes.get() {
            // A zero-length entry under a key no function has marks the end of the queue.
            let marker = [0xff; KEY_LEN];
            let _ = writes.send((marker, std::sync::Arc::from(Vec::new())));
            let disk = self.disk.get().expect("a writer has a disk");
            let path = disk.path(&marker);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !path.exists() && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            let _ = std::fs::remove_file(path);
        }
    }

    pub(crate) fn stats(&self) -> FunctionCacheStats {
        FunctionCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            memory_bytes: lock(&self.memory).bytes as u64,
        }
    }

    fn remember(&self, key: [u8; KEY_LEN], value: std::sync::Arc<[u8]>) {
        let mut memory = lock(&self.memory);
        if value.len() > memory.max {
            return;
        }
        memory.clock += 1;
        let tick = memory.clock;
        let len = value.len();
        if let Some((old, _)) = memory.entries.insert(key, (value, tick)) {
            memory.bytes -= old.len();
        }
        memory.bytes += len;
        if memory.bytes > memory.max {
            // Down to three quarters, least recently used first: eviction runs rarely.
            let mut by_age: Vec<([u8; KEY_LEN], u64, usize)> = memory
                .entries
                .iter()
                .map(|(key, (value, tick))| (*key, *tick, value.len()))
                .collect();
            by_age.sort_unstable_by_key(|(_, tick, _)| *tick);
            let target = memory.max / 4 * 3;
            for (key, _, len) in by_age {
                if memory.bytes <= target {
                    break;
                }
                memory.entries.remove(&key);
                memory.bytes -= len;
            }
        }
    }

    fn in_memory(&self, key: &[u8; KEY_LEN]) -> Option<std::sync::Arc<[u8]>> {
        let mut memory = lock(&self.memory);
        memory.clock += 1;
        let tick = memory.clock;
        let (value, used) = memory.entries.get_mut(key)?;
        *used = tick;
        Some(value.clone())
    }
}

impl Drop for FunctionCache {
    /// Lets the writer finish what is queued (at most [`WRITE_QUEUE`] entries), so the next
    /// process finds every function this one compiled.
    fn drop(&mut self) {
        drop(self.writes.take());
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}

impl Disk {
    /// Whether the root and this cache's folder are (still) the user's own and private.
    fn trusted(&self) -> bool {
        untrusted(&self.root, self.euid).is_none() && untrusted(&self.dir, self.euid).is_none()
    }

    fn path(&self, key: &[u8; KEY_LEN]) -> PathBuf {
        let hex: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
        self.dir.join(hex)
    }

    /// The verified value of `key`, or `None` (a damaged entry is removed).
    fn read(&self, key: &[u8; KEY_LEN]) -> Option<Vec<u8>> {
        if !self.trusted() {
            return None;
        }
        let path = self.path(key);
        let file = platform::open_entry(&path).ok()?;
        let meta = file.metadata().ok()?;
        if platform::file_refusal(&meta, self.euid).is_some() || meta.len() > MAX_ENTRY {
            return None;
        }
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(meta.len() as usize).ok()?;
        file.take(MAX_ENTRY).read_to_end(&mut bytes).ok()?;
        let verified = bytes.len() >= HEADER
            && bytes[..8] == MAGIC[..]
            && bytes[8..HEADER] == xxhash_rust::xxh3::xxh3_128(&bytes[HEADER..]).to_le_bytes();
        if !verified {
            tracing::warn!(path = %path.display(), "a damaged entry of the function cache; removed, the function is compiled again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        bytes.drain(..HEADER);
        Some(bytes)
    }

    /// Writes `value` under `key`, whole (a temporary file renamed), then prunes if the folder
    /// grew past its bound. Failures only cost a later compile.
    fn write(&self, key: &[u8; KEY_LEN], value: &[u8]) {
        if !self.trusted() || platform::create_private_dir(&self.dir).is_err() {
            return;
        }
        let Ok(mut file) = platform::create_temporary(&self.dir) else {
            return;
        };
        let checksum = xxhash_rust::xxh3::xxh3_128(value).to_le_bytes();
        let written = file
            .write_all(MAGIC)
            .and_then(|()| file.write_all(&checksum))
            .and_then(|()| file.write_all(value));
        if written.is_err() || file.persist(self.path(key)).is_err() {
            return;
        }
        let bytes = self.bytes.get_or_init(|| AtomicU64::new(self.count()));
        let total = bytes.fetch_add((HEADER + value.len()) as u64, Ordering::Relaxed);
        if total > self.max {
            self.prune(bytes);
        }
    }

    /// The bytes of the folder's entries.
    fn count(&self) -> u64 {
        self.entries().iter().map(|(_, len, _)| len).sum()
    }

    /// The folder's entries: path, size, last modification.
    fn entries(&self) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let Ok(files) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        files
            .filter_map(Result::ok)
            .filter(|file| {
                file.file_name()
                    .to_str()
                    .is_some_and(|name| super::is_lower_hex(name, 2 * KEY_LEN))
            })
            .filter_map(|file| {
                let meta = file.metadata().ok()?;
                meta.file_type().is_file().then(|| {
                    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    (file.path(), meta.len(), modified)
                })
            })
            .collect()
    }

    /// Removes the oldest entries until the folder holds three quarters of its bound.
    fn prune(&self, bytes: &AtomicU64) {
        let Ok(_pruning) = self.pruning.try_lock() else {
            // Another thread prunes.
            return;
        };
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort_unstable_by_key(|(_, _, modified)| *modified);
        let target = self.max / 4 * 3;
        for (path, len, _) in entries {
            if total <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
        bytes.store(total, Ordering::Relaxed);
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let key: &[u8; KEY_LEN] = key.try_into().ok()?;
        if let Some(value) = self.in_memory(key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Some(Cow::Owned(value.to_vec()));
        }
        let value = self.disk.get()?.read(key)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.disk_hits.fetch_add(1, Ordering::Relaxed);
        let shared: std::sync::Arc<[u8]> = value.into();
        self.remember(*key, shared.clone());
        Some(Cow::Owned(shared.to_vec()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let Ok(key) = <[u8; KEY_LEN]>::try_from(key) else {
            return false;
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        let value: std::sync::Arc<[u8]> = value.into();
        if let Some(writes) = self.writes.get() {
            // Full: the writer is behind; this entry stays in memory only.
            let _ = writes.try_send((key, value.clone()));
        }
        self.remember(key, value);
        true
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::CacheStore as _;

    use super::*;

    #[test]
    fn keeps_in_memory_and_on_disk_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let cache = FunctionCache::new(1 << 20);
        cache.use_disk(&root, "0123456789abcdef", 1 << 20);
        let key = [7u8; KEY_LEN];
        assert!(cache.get(&key).is_none());
        assert!(cache.insert(&key, b"compiled".to_vec()));
        assert_eq!(cache.get(&key).as_deref(), Some(&b"compiled"[..]));
        cache.flush();
        // A new process: the disk tier answers.
        let fresh = FunctionCache::new(1 << 20);
        fresh.use_disk(&root, "0123456789abcdef", 1 << 20);
        assert_eq!(fresh.get(&key).as_deref(), Some(&b"compiled"[..]));
        assert_eq!(fresh.stats().disk_hits, 1);
        // A damaged entry is never returned, and is removed.
        let path = fresh.disk.get().unwrap().path(&key);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let third = FunctionCache::new(1 << 20);
        third.use_disk(&root, "0123456789abcdef", 1 << 20);
        assert!(third.get(&key).is_none());
        assert!(!path.exists());
        // Keys that are not Cranelift's are ignored.
        assert!(third.get(b"short").is_none());
        assert!(!third.insert(b"short", vec![1]));
    }

    #[test]
    fn both_tiers_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FunctionCache::new(4096);
        cache.use_disk(dir.path(), "0123456789abcdef", 8192);
        for n in 0..64u8 {
            cache.insert(&[n; KEY_LEN], vec![n; 1000]);
        }
        cache.flush();
        assert!(cache.stats().memory_bytes <= 4096);
        let disk = cache.disk.get().unwrap();
        assert!(disk.count() <= 8192 + 1024, "{}", disk.count());
        // The most recent entry survives in memory.
        assert!(cache.get(&[63; KEY_LEN]).is_some());
    }
}
