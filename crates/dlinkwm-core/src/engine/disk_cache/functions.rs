//! Cranelift's incremental compilation cache, kept by DlinkWM in memory and beside the
//! compiled-code cache on disk: a rebuilt plugin is mostly the functions of the version it
//! replaces, and a function whose code did not change is not compiled again.
//!
//! Keys are Cranelift's (a SHA-256 of a function's IR and the target's flags, 32 bytes); values
//! are its compiled functions, which Cranelift uses as they are (it checks only their version).
//! On disk each entry is `functions-<engine>/<hex key>`: a magic number, then an XXH3-128
//! checksum of the key, the engine's full compatibility hash and the value, then the value. An
//! entry that does not verify — damaged, or a file copied under another key or into another
//! engine's folder — is removed and the function compiled again. Entries are trusted as the
//! compiled-code cache's are (a folder of the user's own that nobody else can write). Both tiers
//! are bounded, least recently used first; the disk bound covers every engine's folder.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use super::{platform, untrusted};
use crate::sync::lock;

const MAGIC: &[u8; 8] = b"DLWMF002";
/// Magic and checksum.
const HEADER: usize = 8 + 16;
/// Cranelift's keys are SHA-256 hashes.
const KEY_LEN: usize = 32;
/// The largest entry written or read back (a single function's compiled code and its tables).
const MAX_ENTRY: u64 = 64 << 20;
/// Entries waiting for the writer thread at most.
const WRITE_QUEUE: usize = 16 * 1024;
/// How long dropping the cache waits for the writer to finish what is queued.
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// A key and its compiled function.
type Entry = ([u8; KEY_LEN], Arc<[u8]>);

/// What the writer thread is asked to do.
enum Message {
    Write(Entry),
    /// Answer once everything queued before is written (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Flush(SyncSender<()>),
}

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
    disk: OnceLock<Arc<Disk>>,
    /// New entries on their way to disk: written by a thread of their own, so compiling never
    /// waits for the file system (thousands of small files for a large plugin). Bounded in
    /// entries and bytes: when the writer falls behind, entries are kept in memory only.
    writes: Mutex<Option<SyncSender<Message>>>,
    /// Bytes waiting in the queue.
    queued: Arc<AtomicU64>,
    /// Told when the writer has written everything and stopped.
    finished: Mutex<Option<Receiver<()>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    disk_hits: AtomicU64,
}

struct Memory {
    entries: HashMap<[u8; KEY_LEN], (Arc<[u8]>, u64)>,
    bytes: usize,
    max: usize,
    clock: u64,
}

struct Disk {
    root: PathBuf,
    dir: PathBuf,
    engine_hash: [u8; 32],
    max: u64,
    euid: u32,
    /// Bytes in every engine's folder, counted at the first write, then kept up to date
    /// (approximately: other processes write too; the count is redone at each pruning).
    bytes: OnceLock<AtomicU64>,
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
            writes: Mutex::new(None),
            queued: Arc::new(AtomicU64::new(0)),
            finished: Mutex::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
        }
    }

    /// Keeps entries in `root/functions-<engine_folder>` too (the compiled-code cache's root and
    /// the engine's folder name; `engine_hash` its full compatibility hash), all such folders
    /// bounded together by `max_bytes`.
    pub(crate) fn use_disk(
        &self,
        root: &Path,
        engine_folder: &str,
        engine_hash: [u8; 32],
        max_bytes: u64,
    ) {
        let disk = Arc::new(Disk {
            root: root.to_owned(),
            dir: root.join(format!("functions-{engine_folder}")),
            engine_hash,
            max: max_bytes,
            euid: platform::euid(),
            bytes: OnceLock::new(),
        });
        if let Some(reason) = untrusted(root, disk.euid).or_else(|| untrusted(&disk.dir, disk.euid))
        {
            tracing::warn!(dir = %disk.dir.display(), reason, "the function cache's folder is not trusted; functions are kept in memory only");
            return;
        }
        if self.disk.set(disk.clone()).is_err() {
            return;
        }
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Message>(WRITE_QUEUE);
        let (finish, finished) = std::sync::mpsc::channel();
        let queued = self.queued.clone();
        let writer = std::thread::Builder::new()
            .name("dlinkwm-function-cache".to_owned())
            // Ends when the cache (the sender) is dropped with its engine.
            .spawn(move || {
                for message in receiver {
                    match message {
                        Message::Write((key, value)) => {
                            disk.write(&key, &value);
                            queued.fetch_sub(value.len() as u64, Ordering::Relaxed);
                        }
                        Message::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
                let _ = finish.send(());
            });
        match writer {
            Ok(_) => {
                *lock(&self.writes) = Some(sender);
                *lock(&self.finished) = Some(finished);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot start the function cache's writer; functions are kept in memory only");
            }
        }
    }

    /// Waits until every entry queued so far is on disk (tests).
    #[cfg(test)]
    fn flush(&self) {
        let writes = lock(&self.writes).clone();
        if let Some(writes) = writes {
            let (done, wait) = std::sync::mpsc::sync_channel(1);
            writes.send(Message::Flush(done)).expect("the writer runs");
            wait.recv_timeout(Duration::from_secs(60))
                .expect("the writer answers");
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

    fn remember(&self, key: [u8; KEY_LEN], value: Arc<[u8]>) {
        let mut memory = lock(&self.memory);
        if value.len() > memory.max / 2 {
            return;
        }
        memory.clock += 1;
        let tick = memory.clock;
        let len = value.len();
        if let Some((old, _)) = memory.entries.insert(key, (value, tick)) {
            memory.bytes = memory.bytes.saturating_sub(old.len());
        }
        memory.bytes += len;
        if memory.bytes > memory.max {
            // Down to three quarters, least recently used first (never the entry just added):
            // eviction runs rarely.
            let mut by_age: Vec<([u8; KEY_LEN], u64, usize)> = memory
                .entries
                .iter()
                .filter(|(known, _)| **known != key)
                .map(|(key, (value, tick))| (*key, *tick, value.len()))
                .collect();
            by_age.sort_unstable_by_key(|(_, tick, _)| *tick);
            let target = memory.max / 4 * 3;
            for (old, _, len) in by_age {
                if memory.bytes <= target {
                    break;
                }
                memory.entries.remove(&old);
                memory.bytes = memory.bytes.saturating_sub(len);
            }
        }
    }

    fn in_memory(&self, key: &[u8; KEY_LEN]) -> Option<Arc<[u8]>> {
        let mut memory = lock(&self.memory);
        memory.clock += 1;
        let tick = memory.clock;
        let (value, used) = memory.entries.get_mut(key)?;
        *used = tick;
        Some(value.clone())
    }
}

impl Drop for FunctionCache {
    /// Lets the writer finish what is queued, so the next process finds the functions this one
    /// compiled — for 30 seconds at most: a stalled disk never hangs the engine's drop (the
    /// writer then finishes on its own, or with the process).
    fn drop(&mut self) {
        drop(lock(&self.writes).take());
        if let Some(finished) = lock(&self.finished).take() {
            let _ = finished.recv_timeout(DRAIN_WAIT);
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

    /// The checksum of an entry: its key, this engine, its value.
    fn checksum(&self, key: &[u8; KEY_LEN], value: &[u8]) -> [u8; 16] {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(key);
        hasher.update(&self.engine_hash);
        hasher.update(value);
        hasher.digest128().to_le_bytes()
    }

    /// The verified value of `key`, or `None` (an entry that does not verify is removed).
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
        (&file).take(MAX_ENTRY).read_to_end(&mut bytes).ok()?;
        let verified = bytes.len() >= HEADER
            && bytes[..8] == MAGIC[..]
            && bytes[8..HEADER] == self.checksum(key, &bytes[HEADER..]);
        if !verified {
            tracing::warn!(path = %path.display(), "an entry of the function cache does not verify; removed, the function is compiled again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // Used: the size bound removes least recently used entries first.
        let _ = file.set_modified(SystemTime::now());
        bytes.drain(..HEADER);
        Some(bytes)
    }

    /// Writes `value` under `key`, whole (a temporary file renamed), then prunes if the folders
    /// grew past their bound. Failures only cost a later compile.
    fn write(&self, key: &[u8; KEY_LEN], value: &[u8]) {
        if !self.trusted() || platform::create_private_dir(&self.dir).is_err() || !self.trusted() {
            return;
        }
        let bytes = self.bytes.get_or_init(|| AtomicU64::new(self.count()));
        let Ok(mut file) = platform::create_temporary(&self.dir) else {
            return;
        };
        let checksum = self.checksum(key, value);
        let written = file
            .write_all(MAGIC)
            .and_then(|()| file.write_all(&checksum))
            .and_then(|()| file.write_all(value));
        if written.is_err() || file.persist(self.path(key)).is_err() {
            return;
        }
        let size = (HEADER + value.len()) as u64;
        if bytes.fetch_add(size, Ordering::Relaxed) + size > self.max {
            self.prune(bytes);
        }
    }

    /// The bytes of every engine's entries.
    fn count(&self) -> u64 {
        self.entries().iter().map(|(_, len, _)| len).sum()
    }

    /// The entries of every trusted `functions-*` folder under the root: path, size, last use.
    fn entries(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let Ok(folders) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for folder in folders.filter_map(Result::ok) {
            if !super::is_functions_folder(&folder.file_name()) {
                continue;
            }
            let folder = folder.path();
            if untrusted(&folder, self.euid).is_some() {
                continue;
            }
            let Ok(files) = std::fs::read_dir(&folder) else {
                continue;
            };
            for file in files.filter_map(Result::ok) {
                let named = file
                    .file_name()
                    .to_str()
                    .is_some_and(|name| super::is_lower_hex(name, 2 * KEY_LEN));
                // `DirEntry::metadata` does not follow a symbolic link.
                if let (true, Ok(meta)) = (named, file.metadata())
                    && meta.file_type().is_file()
                {
                    let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    found.push((file.path(), meta.len(), used));
                }
            }
        }
        found
    }

    /// Removes the least recently used entries until the folders hold three quarters of the
    /// bound (only the writer thread prunes).
    fn prune(&self, bytes: &AtomicU64) {
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort_unstable_by_key(|(_, _, used)| *used);
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
        let shared: Arc<[u8]> = value.into();
        self.remember(*key, shared.clone());
        Some(Cow::Owned(shared.to_vec()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let Ok(key) = <[u8; KEY_LEN]>::try_from(key) else {
            return false;
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        let value: Arc<[u8]> = value.into();
        let len = value.len() as u64;
        let room = lock(&self.memory).max as u64 / 4;
        if len <= MAX_ENTRY && self.queued.load(Ordering::Relaxed) + len <= room {
            let writes = lock(&self.writes).clone();
            if let Some(writes) = writes {
                self.queued.fetch_add(len, Ordering::Relaxed);
                // Full: the writer is behind; this entry stays in memory only.
                if writes
                    .try_send(Message::Write((key, value.clone())))
                    .is_err()
                {
                    self.queued.fetch_sub(len, Ordering::Relaxed);
                }
            }
        }
        self.remember(key, value);
        true
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::CacheStore as _;

    use super::*;

    const FOLDER: &str = "0123456789abcdef";

    fn cache_in(root: &Path, engine: u8) -> FunctionCache {
        let cache = FunctionCache::new(1 << 20);
        cache.use_disk(root, FOLDER, [engine; 32], 1 << 20);
        cache
    }

    #[test]
    fn keeps_in_memory_and_on_disk_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let cache = cache_in(&root, 1);
        let key = [7u8; KEY_LEN];
        assert!(cache.get(&key).is_none());
        assert!(cache.insert(&key, b"compiled".to_vec()));
        assert_eq!(cache.get(&key).as_deref(), Some(&b"compiled"[..]));
        cache.flush();
        // A new process: the disk tier answers.
        let fresh = cache_in(&root, 1);
        assert_eq!(fresh.get(&key).as_deref(), Some(&b"compiled"[..]));
        assert_eq!(fresh.stats().disk_hits, 1);
        // An entry copied under another key, or read by another engine, does not verify.
        let path = fresh.disk.get().unwrap().path(&key);
        let other = [8u8; KEY_LEN];
        std::fs::copy(&path, fresh.disk.get().unwrap().path(&other)).unwrap();
        assert!(cache_in(&root, 1).get(&other).is_none());
        assert!(cache_in(&root, 2).get(&key).is_none());
        // (the second engine removed the entry it could not verify)
        assert!(!path.exists());
        // A damaged entry is never returned, and is removed.
        cache.insert(&key, b"compiled".to_vec());
        cache.flush();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(cache_in(&root, 1).get(&key).is_none());
        assert!(!path.exists());
        // Keys that are not Cranelift's are ignored.
        assert!(cache.get(b"short").is_none());
        assert!(!cache.insert(b"short", vec![1]));
    }

    #[test]
    fn both_tiers_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FunctionCache::new(8192);
        cache.use_disk(dir.path(), FOLDER, [1; 32], 8192);
        for n in 0..64u8 {
            cache.insert(&[n; KEY_LEN], vec![n; 1000]);
            // One at a time, so none is dropped for a full queue.
            cache.flush();
        }
        assert!(cache.stats().memory_bytes <= 8192);
        let disk = cache.disk.get().unwrap();
        assert!(disk.count() <= 8192, "{}", disk.count());
        assert!(disk.count() > 0);
        // The most recent entry survives in memory.
        assert!(cache.get(&[63; KEY_LEN]).is_some());
    }
}
