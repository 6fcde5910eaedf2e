//! The local content-addressed store: every plugin pulled, by digest, and each tag's last known
//! good digest.
//!
//! ```text
//! <root>/blobs/sha256/<hex>       a wasm layer, named by the SHA-256 of its bytes
//! <root>/manifests/sha256/<hex>   the layer digest of a manifest
//! <root>/tags/<hex>               a tag's last known good manifest digest (file named by the
//!                                 SHA-256 of the reference, which is on its second line)
//! ```
//!
//! Files are written whole to a temporary name and renamed, so a reader sees all of a file or
//! none of it; a blob is hashed again each time it is read, so a damaged one is never returned
//! (it is removed and pulled again). The records (manifest → layer, tag → manifest) are trusted
//! as the folder is: it is made readable and writable by its user only, and whoever can write
//! it can choose which stored plugin a record names (as with the compiled-code cache, trust
//! comes from ownership). Only plugins that loaded are kept (`Registry::keep`), up to
//! [`MAX_BLOB_BYTES`]: older blobs go first, never a tag's last known good version.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::reference::check_digest;
use crate::{OciError, PluginRef, Pulled};

/// The largest manifest or tag record read from the store (they hold one digest each).
const MAX_RECORD_BYTES: u64 = 4096;
/// The blobs kept at most, in bytes, beyond each tag's last known good version and the newest.
pub const MAX_BLOB_BYTES: u64 = 1 << 30;

/// The local store of pulled plugins (see the module documentation for its layout).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// `sha256:` and the hex SHA-256 of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in hash {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

impl Store {
    /// A store in `root` (made when first written).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The per-user default: `$XDG_CACHE_HOME/dlinkwm/oci`, else `~/.cache/dlinkwm/oci`.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .map(|dir| dir.join("dlinkwm").join("oci"))
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn digest_path(&self, kind: &str, digest: &str) -> Result<PathBuf, OciError> {
        check_digest(digest).map_err(|reason| OciError::Store {
            path: self.root.clone(),
            reason,
        })?;
        let hex = &digest["sha256:".len()..];
        Ok(self.root.join(kind).join("sha256").join(hex))
    }

    fn tag_path(&self, reference: &PluginRef) -> PathBuf {
        let name = sha256_digest(reference.to_string().as_bytes());
        self.root.join("tags").join(&name["sha256:".len()..])
    }

    /// Keeps a verified pull: its blob and its manifest's layer digest.
    pub(crate) fn keep(&self, pulled: &Pulled) -> Result<(), OciError> {
        let blob = self.digest_path("blobs", &pulled.layer_digest)?;
        // Written even when present: a damaged copy is replaced by the verified bytes (the
        // rename is atomic, so a reader sees one or the other).
        self.write(&blob, &pulled.bytes)?;
        let manifest = self.digest_path("manifests", &pulled.manifest_digest)?;
        self.write(&manifest, pulled.layer_digest.as_bytes())?;
        self.prune(&pulled.layer_digest);
        Ok(())
    }

    /// Removes the least recently written blobs beyond [`MAX_BLOB_BYTES`], except `keep` and
    /// every tag's last known good version, so a tag that moves often does not fill the disk.
    /// Failures are only warned about.
    fn prune(&self, keep: &str) {
        let blobs = self.root.join("blobs").join("sha256");
        let Ok(files) = std::fs::read_dir(&blobs) else {
            return;
        };
        let mut found: Vec<(PathBuf, u64, std::time::SystemTime)> = files
            .filter_map(Result::ok)
            .filter_map(|file| {
                let meta = file.metadata().ok()?;
                meta.file_type().is_file().then(|| {
                    let written = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    (file.path(), meta.len(), written)
                })
            })
            .collect();
        let mut total: u64 = found.iter().map(|(_, len, _)| len).sum();
        if total <= MAX_BLOB_BYTES {
            return;
        }
        let protected = self.protected_blobs(keep);
        found.sort_unstable_by_key(|(_, _, written)| *written);
        for (path, len, _) in found {
            if total <= MAX_BLOB_BYTES {
                break;
            }
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            if protected.iter().any(|digest| digest.ends_with(name)) {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => total -= len,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot prune the local plugin store");
                }
            }
        }
    }

    /// The layer digests pruning must not remove: `keep`, and each tag's last known good.
    fn protected_blobs(&self, keep: &str) -> Vec<String> {
        let mut protected = vec![keep.to_owned()];
        let Ok(tags) = std::fs::read_dir(self.root.join("tags")) else {
            return protected;
        };
        for tag in tags.filter_map(Result::ok) {
            let Ok(Some(record)) = self.read(&tag.path(), MAX_RECORD_BYTES) else {
                continue;
            };
            let record = String::from_utf8_lossy(&record);
            let Some(manifest) = record.lines().next() else {
                continue;
            };
            let Ok(path) = self.digest_path("manifests", manifest) else {
                continue;
            };
            if let Ok(Some(layer)) = self.read(&path, MAX_RECORD_BYTES) {
                protected.push(String::from_utf8_lossy(&layer).trim().to_owned());
            }
        }
        protected
    }

    /// Records `manifest_digest` as `reference`'s last known good version.
    pub(crate) fn remember(
        &self,
        reference: &PluginRef,
        manifest_digest: &str,
    ) -> Result<(), OciError> {
        // A well-formed digest only: it becomes a file name when read back.
        self.digest_path("manifests", manifest_digest)?;
        let record = format!("{manifest_digest}\n{reference}\n");
        self.write(&self.tag_path(reference), record.as_bytes())
    }

    /// The plugin of `manifest_digest`, if the store holds it whole and intact.
    pub(crate) fn load_manifest(
        &self,
        reference: &PluginRef,
        manifest_digest: &str,
        max_bytes: u64,
    ) -> Result<Option<Pulled>, OciError> {
        let manifest = self.digest_path("manifests", manifest_digest)?;
        let Some(record) = self.read(&manifest, MAX_RECORD_BYTES)? else {
            return Ok(None);
        };
        let layer_digest = String::from_utf8_lossy(&record).trim().to_owned();
        let Ok(blob) = self.digest_path("blobs", &layer_digest) else {
            tracing::warn!(path = %manifest.display(), "a malformed record in the local plugin store; ignored");
            return Ok(None);
        };
        let Some(bytes) = self.read(&blob, max_bytes)? else {
            return Ok(None);
        };
        if sha256_digest(&bytes) != layer_digest {
            tracing::warn!(path = %blob.display(), "a damaged blob in the local plugin store; removed");
            let _ = std::fs::remove_file(&blob);
            return Ok(None);
        }
        Ok(Some(Pulled {
            reference: reference.clone(),
            manifest_digest: manifest_digest.to_owned(),
            layer_digest,
            bytes,
            from_store: false,
        }))
    }

    /// The last known good version of `reference`, if the store holds it.
    pub(crate) fn last_known_good(
        &self,
        reference: &PluginRef,
        max_bytes: u64,
    ) -> Result<Option<Pulled>, OciError> {
        let Some(record) = self.read(&self.tag_path(reference), MAX_RECORD_BYTES)? else {
            return Ok(None);
        };
        let record = String::from_utf8_lossy(&record);
        let mut lines = record.lines();
        let (Some(digest), Some(name)) = (lines.next(), lines.next()) else {
            return Ok(None);
        };
        // The file name is a hash of the reference; the reference itself rules out a collision.
        if name != reference.to_string() || check_digest(digest).is_err() {
            return Ok(None);
        }
        self.load_manifest(reference, digest, max_bytes)
    }

    /// The bytes of `path`, or `None` when it does not exist or is larger than `max`.
    fn read(&self, path: &Path, max: u64) -> Result<Option<Vec<u8>>, OciError> {
        let fail = |error: std::io::Error| OciError::Store {
            path: path.to_owned(),
            reason: error.to_string(),
        };
        // Regular files only: a FIFO would block `open`, a link could point anywhere.
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(_) => {
                tracing::warn!(path = %path.display(), "not a regular file in the local plugin store; ignored");
                return Ok(None);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(fail(error)),
        }
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(fail(error)),
        };
        let len = file.metadata().map_err(fail)?.len();
        if len > max {
            tracing::warn!(path = %path.display(), len, max, "a file in the local plugin store is too large; ignored");
            return Ok(None);
        }
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(len as usize)
            .map_err(|_| fail(std::io::Error::from(std::io::ErrorKind::OutOfMemory)))?;
        std::io::Read::read_to_end(&mut std::io::Read::take(file, max), &mut bytes)
            .map_err(fail)?;
        Ok(Some(bytes))
    }

    /// Writes `bytes` to `path` whole: to a temporary file beside it, then renamed.
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), OciError> {
        let fail = |path: &Path, error: std::io::Error| OciError::Store {
            path: path.to_owned(),
            reason: error.to_string(),
        };
        let dir = path.parent().unwrap_or(&self.root);
        create_private_dir(dir).map_err(|error| fail(dir, error))?;
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|error| fail(dir, error))?;
        file.write_all(bytes).map_err(|error| fail(path, error))?;
        file.as_file()
            .sync_all()
            .map_err(|error| fail(path, error))?;
        file.persist(path)
            .map_err(|error| fail(path, error.error))?;
        Ok(())
    }
}

/// Creates `dir` and its parents, readable by this user only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulled(reference: &PluginRef, bytes: &[u8]) -> Pulled {
        Pulled {
            reference: reference.clone(),
            manifest_digest: sha256_digest(b"manifest"),
            layer_digest: sha256_digest(bytes),
            bytes: bytes.to_vec(),
            from_store: false,
        }
    }

    #[test]
    fn keeps_remembers_and_verifies_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_owned());
        let reference: PluginRef = "localhost:5000/hello:v1".parse().unwrap();
        let other: PluginRef = "localhost:5000/hello:v2".parse().unwrap();
        let plugin = pulled(&reference, b"\0asm\x01\0\0\0");
        assert!(
            store
                .last_known_good(&reference, 1 << 20)
                .unwrap()
                .is_none()
        );
        store.keep(&plugin).unwrap();
        // Kept but not yet known good.
        assert!(
            store
                .last_known_good(&reference, 1 << 20)
                .unwrap()
                .is_none()
        );
        store.remember(&reference, &plugin.manifest_digest).unwrap();
        let back = store.last_known_good(&reference, 1 << 20).unwrap().unwrap();
        assert_eq!(back.bytes, plugin.bytes);
        assert!(store.last_known_good(&other, 1 << 20).unwrap().is_none());
        // Larger than allowed: not read.
        assert!(store.last_known_good(&reference, 4).unwrap().is_none());
        // A blob altered on disk is never returned, and is removed.
        let blob = store.digest_path("blobs", &plugin.layer_digest).unwrap();
        std::fs::write(&blob, b"\0asm\x01\0\0\x01").unwrap();
        assert!(
            store
                .last_known_good(&reference, 1 << 20)
                .unwrap()
                .is_none()
        );
        assert!(!blob.exists());
    }

    #[test]
    fn old_blobs_are_pruned_but_never_a_last_known_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_owned());
        let reference: PluginRef = "localhost:5000/hello:v1".parse().unwrap();
        // Three blobs of 400 MiB each (sparse files, so the test writes little): the first is
        // the tag's last known good, the second is only old.
        let mut digests = Vec::new();
        for n in 0..3u8 {
            let mut plugin = pulled(&reference, &[n]);
            plugin.manifest_digest = sha256_digest(&[b'm', n]);
            store.keep(&plugin).unwrap();
            let blob = store.digest_path("blobs", &plugin.layer_digest).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&blob)
                .unwrap()
                .set_len(400 << 20)
                .unwrap();
            if n == 0 {
                store.remember(&reference, &plugin.manifest_digest).unwrap();
            }
            digests.push(blob);
        }
        // Beyond 1 GiB now: the next keep prunes the oldest blob that no tag needs.
        let newest = pulled(&reference, b"newest");
        store.keep(&newest).unwrap();
        assert!(digests[0].exists(), "the last known good blob was removed");
        assert!(!digests[1].exists(), "the oldest unneeded blob was kept");
        assert!(digests[2].exists());
    }

    #[test]
    fn refuses_digests_that_are_not_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_owned());
        let reference: PluginRef = "localhost:5000/hello:v1".parse().unwrap();
        let mut plugin = pulled(&reference, b"x");
        plugin.layer_digest = "sha256:../../../../etc/passwd".to_owned();
        assert!(matches!(store.keep(&plugin), Err(OciError::Store { .. })));
        assert!(store.remember(&reference, "sha256:..").is_err());
    }
}
