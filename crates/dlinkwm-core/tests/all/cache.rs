//! The disk cache of compiled code (Unix only: elsewhere it is always off).
#![cfg(unix)]

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dlinkwm_core::disk_cache::{CacheError, cache_info, clear_cache};
use dlinkwm_core::{ContentHash, Engine, EngineOptions, Plugin, PluginOptions, ResolvedSettings};
use test_programs_artifacts::{HELLO, SDK_TEST_A};

use crate::{abi_module, call_postcard, options};

fn engine_with_cache(dir: &Path) -> Engine {
    Engine::new(
        EngineOptions::default()
            .with_incremental_cache_bytes(0)
            .with_cache_dir(Some(dir.to_owned())),
    )
    .expect("engine")
}

fn load(engine: &Engine, path: &str) -> Plugin {
    Plugin::load(engine, path, PluginOptions::default()).expect("loads")
}

/// The layout of an entry: the payload, then a trailer of magic (8), content hash (32), engine
/// hash (32) and the checksum (XXH3-128, 16).
const KEYS: usize = 72;
const TRAILER: usize = KEYS + 16;

/// An entry with these keys and payload and a valid checksum.
fn with_checksum(keys: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(keys);
    hasher.update(payload);
    [payload, keys, &hasher.digest128().to_le_bytes()[..]].concat()
}

fn the_entry(dir: &Path) -> PathBuf {
    let configurations: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(configurations.len(), 1, "{configurations:?}");
    let entries: Vec<_> = std::fs::read_dir(&configurations[0])
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[test]
fn a_new_engine_loads_a_seen_plugin_without_compiling() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = engine_with_cache(dir.path());
    load(&first, SDK_TEST_A);
    assert_eq!((first.compile_count(), first.disk_cache_hits()), (1, 0));
    assert_eq!(cache_info(dir.path()).entries, 1);

    let second = engine_with_cache(dir.path());
    let plugin = load(&second, SDK_TEST_A);
    assert_eq!((second.compile_count(), second.disk_cache_hits()), (0, 1));
    assert_eq!(
        postcard::from_bytes::<String>(&call_postcard(&plugin, "echo", &"cached")?)?,
        "cached"
    );
    Ok(())
}

#[test]
fn corrupt_truncated_and_foreign_entries_are_recompiled_never_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    load(&engine_with_cache(dir.path()), SDK_TEST_A);
    let entry = the_entry(dir.path());
    let good = std::fs::read(&entry)?;

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    // Valid headers (keys and checksum), with a payload that is not wasmtime's, or keys that name
    // another engine configuration.
    let garbage = vec![0x7fu8; 4096];
    let (payload, trailer) = good.split_at(good.len() - TRAILER);
    let foreign_payload = with_checksum(&trailer[..KEYS], &garbage);
    let mut other_engine = trailer[..KEYS].to_vec();
    other_engine[KEYS - 1] ^= 1;
    let other_engine = with_checksum(&other_engine, payload);
    assert_eq!(
        with_checksum(&trailer[..KEYS], payload),
        good,
        "the layout above"
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("corrupt", flipped),
        ("truncated", good[..good.len() / 3].to_vec()),
        ("empty", Vec::new()),
        ("foreign (valid checksum, not wasmtime's)", foreign_payload),
        ("another engine's (valid checksum)", other_engine),
    ];
    for (what, bytes) in cases {
        std::fs::write(&entry, &bytes)?;
        let engine = engine_with_cache(dir.path());
        let plugin = load(&engine, SDK_TEST_A);
        assert_eq!(
            (engine.compile_count(), engine.disk_cache_hits()),
            (1, 0),
            "{what}"
        );
        assert_eq!(
            postcard::from_bytes::<String>(&call_postcard(&plugin, "echo", &what)?)?,
            what
        );
        // The refused entry was replaced by a good one.
        let engine = engine_with_cache(dir.path());
        load(&engine, SDK_TEST_A);
        assert_eq!(engine.disk_cache_hits(), 1, "{what}");
    }
    Ok(())
}

#[test]
fn the_cache_is_bounded_cleared_and_can_be_off() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = EngineOptions::default()
        .with_incremental_cache_bytes(0)
        .with_cache_dir(Some(dir.path().to_owned()));
    let mut bounded = options.clone();
    bounded.cache_max_bytes = 1;
    let engine = Engine::new(bounded)?;
    load(&engine, SDK_TEST_A);
    load(&engine, HELLO);
    // A bound smaller than one entry keeps at most the newest.
    assert!(cache_info(dir.path()).entries <= 1);

    let engine = Engine::new(options)?;
    load(&engine, SDK_TEST_A);
    load(&engine, HELLO);
    let info = cache_info(dir.path());
    assert_eq!(info.entries, 2);
    assert!(info.bytes > 0);
    assert_eq!(clear_cache(dir.path())?.entries, 2);
    assert_eq!(cache_info(dir.path()).entries, 0);

    // Off: a second engine compiles again.
    for _ in 0..2 {
        let engine = Engine::new(EngineOptions::default().with_incremental_cache_bytes(0))?;
        assert!(engine.cache_dir().is_none());
        load(&engine, SDK_TEST_A);
        assert_eq!((engine.compile_count(), engine.disk_cache_hits()), (1, 0));
    }
    Ok(())
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("exists").mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The name of the engine folder of `EngineOptions::default().with_incremental_cache_bytes(0)`, from a cache of its own.
fn engine_folder_name() -> OsString {
    let dir = tempfile::tempdir().expect("tempdir");
    load(&engine_with_cache(dir.path()), HELLO);
    let entry = the_entry(dir.path());
    entry
        .parent()
        .and_then(Path::file_name)
        .expect("engine folder")
        .to_owned()
}

fn entry_name(plugin: &[u8]) -> String {
    format!("{}.cwasm", ContentHash::of(plugin))
}

/// Every `.cwasm` under `dir`, without following symbolic links.
fn cwasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.is_dir() {
            found.extend(cwasm_files(&path));
        } else if meta.is_file() && path.extension().is_some_and(|ext| ext == "cwasm") {
            found.push(path);
        }
    }
    found
}

/// A uid that is not this process's, when this process may give files to it (root).
fn another_uid(euid: u32) -> Option<u32> {
    (euid == 0).then_some(65534)
}

/// This process's effective uid, as the owner of a file it just created.
fn euid() -> u32 {
    tempfile::tempdir()
        .expect("tempdir")
        .path()
        .metadata()
        .expect("metadata")
        .uid()
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Runs `body` and returns what it logged at `warn` and above on this thread.
fn warnings<T>(body: impl FnOnce() -> T) -> (T, String) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, body);
    let text = String::from_utf8_lossy(&logs.0.lock().expect("logs")).into_owned();
    (result, text)
}

#[test]
fn cache_folders_are_0700_and_entries_0600() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("missing").join("compiled");
    load(&engine_with_cache(&root), SDK_TEST_A);
    let entry = the_entry(&root);
    assert_eq!(mode(&root), 0o700, "root");
    assert_eq!(
        mode(entry.parent().expect("folder")),
        0o700,
        "engine folder"
    );
    assert_eq!(mode(&entry), 0o600, "entry");
    // No temporary file is left behind.
    assert_eq!(
        std::fs::read_dir(entry.parent().expect("folder"))?.count(),
        1
    );
    Ok(())
}

#[test]
fn untrusted_cache_folders_are_refused_and_bypassed() -> anyhow::Result<()> {
    let euid = euid();
    let folder = engine_folder_name();
    type Setup = Box<dyn Fn(&Path, &Path) -> std::io::Result<()>>;
    let private = |path: &Path| -> std::io::Result<()> {
        std::fs::create_dir(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
    };
    let with_mode = move |mode: u32| -> Setup {
        Box::new(move |_, root| {
            private(root)?;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode))
        })
    };
    let engine_folder_mode = |folder: OsString, mode: u32| -> Setup {
        Box::new(move |_, root| {
            private(root)?;
            private(&root.join(&folder))?;
            std::fs::set_permissions(root.join(&folder), std::fs::Permissions::from_mode(mode))
        })
    };
    let mut cases: Vec<(&str, &str, Setup)> = vec![
        (
            "root writable by group",
            "writable by group or others",
            with_mode(0o770),
        ),
        (
            "root writable by others",
            "writable by group or others",
            with_mode(0o707),
        ),
        (
            "root like /tmp",
            "writable by group or others (mode 1777)",
            with_mode(0o1777),
        ),
        (
            "root is a symbolic link",
            "a symbolic link",
            Box::new(move |dir, root| {
                private(&dir.join("real"))?;
                symlink(dir.join("real"), root)
            }),
        ),
        (
            "root is a file",
            "not a directory",
            Box::new(|_, root| std::fs::write(root, b"")),
        ),
        (
            "engine folder writable by others",
            "writable by group or others",
            engine_folder_mode(folder.clone(), 0o777),
        ),
        (
            "engine folder writable by group",
            "writable by group or others",
            engine_folder_mode(folder.clone(), 0o770),
        ),
        (
            "engine folder is a symbolic link",
            "a symbolic link",
            Box::new({
                let folder = folder.clone();
                move |dir, root| {
                    private(root)?;
                    private(&dir.join("elsewhere"))?;
                    symlink(dir.join("elsewhere"), root.join(&folder))
                }
            }),
        ),
    ];
    if let Some(other) = another_uid(euid) {
        cases.push((
            "root owned by another user",
            "owned by uid 65534",
            Box::new(move |_, root| {
                private(root)?;
                std::os::unix::fs::chown(root, Some(other), None)
            }),
        ));
        let folder = folder.clone();
        cases.push((
            "engine folder owned by another user",
            "owned by uid 65534",
            Box::new(move |_, root| {
                private(root)?;
                private(&root.join(&folder))?;
                std::os::unix::fs::chown(root.join(&folder), Some(other), None)
            }),
        ));
    } else {
        eprintln!("not root: the cases of folders owned by another user are skipped");
    }
    for (what, reason, setup) in cases {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("cache");
        setup(dir.path(), &root)?;
        for _ in 0..2 {
            let (engine, logs) = warnings(|| engine_with_cache(&root));
            assert!(engine.cache_dir().is_none(), "{what}: the cache is off");
            assert!(
                logs.contains("refusing the compiled-code cache folder") && logs.contains(reason),
                "{what}: {logs}"
            );
            let plugin = load(&engine, SDK_TEST_A);
            assert_eq!(
                (engine.compile_count(), engine.disk_cache_hits()),
                (1, 0),
                "{what}"
            );
            assert_eq!(
                postcard::from_bytes::<String>(&call_postcard(&plugin, "echo", &what)?)?,
                what
            );
            assert!(
                !engine.is_cached_on_disk(&std::fs::read(SDK_TEST_A)?),
                "{what}"
            );
        }
        assert_eq!(cwasm_files(dir.path()), Vec::<PathBuf>::new(), "{what}");
        // `clear_cache` refuses an untrusted root, and skips an untrusted engine folder.
        let cleared = clear_cache(&root);
        if what.starts_with("root") {
            assert!(
                matches!(cleared, Err(CacheError::Untrusted { .. })),
                "{what}: {cleared:?}"
            );
        } else {
            assert_eq!(cleared?.entries, 0, "{what}");
        }
    }
    Ok(())
}

#[test]
fn a_cache_folder_that_turns_untrusted_is_bypassed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    load(&engine_with_cache(dir.path()), SDK_TEST_A);
    let engine = engine_with_cache(dir.path());
    assert!(engine.cache_dir().is_some());
    set_mode(dir.path(), 0o777);
    let (_, logs) = warnings(|| {
        load(&engine, SDK_TEST_A);
        load(&engine, HELLO);
    });
    assert!(logs.contains("writable by group or others"), "{logs}");
    // The entry of SDK_TEST_A was not used, and HELLO's was not written.
    assert_eq!((engine.compile_count(), engine.disk_cache_hits()), (2, 0));
    set_mode(dir.path(), 0o700);
    assert_eq!(cache_info(dir.path()).entries, 1);
    Ok(())
}

#[test]
fn a_planted_symlink_at_a_temporary_name_never_truncates_its_target() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let victims = tempfile::tempdir()?;
    load(&engine_with_cache(dir.path()), HELLO);
    let folder = the_entry(dir.path()).parent().expect("folder").to_owned();
    let victim = victims.path().join("precious.txt");
    std::fs::write(&victim, b"precious")?;
    // The names the cache used to give its temporary files: `.<hash>.<pid>.<counter>.tmp`.
    let hash = ContentHash::of(&std::fs::read(SDK_TEST_A)?);
    for counter in 0..4 {
        symlink(
            &victim,
            folder.join(format!(".{hash}.{}.{counter}.tmp", std::process::id())),
        )?;
    }
    load(&engine_with_cache(dir.path()), SDK_TEST_A);
    assert!(
        std::fs::read(&victim)? == b"precious",
        "the victim was overwritten"
    );
    let entry = folder.join(entry_name(&std::fs::read(SDK_TEST_A)?));
    assert!(std::fs::symlink_metadata(&entry)?.file_type().is_file());
    let engine = engine_with_cache(dir.path());
    load(&engine, SDK_TEST_A);
    assert_eq!((engine.compile_count(), engine.disk_cache_hits()), (0, 1));
    Ok(())
}

#[test]
fn a_symlink_at_an_entry_name_is_never_followed() -> anyhow::Result<()> {
    // The victim is a valid entry for SDK_TEST_A, outside the cache, last modified long ago.
    let elsewhere = tempfile::tempdir()?;
    load(&engine_with_cache(elsewhere.path()), SDK_TEST_A);
    let victims = tempfile::tempdir()?;
    let victim = victims.path().join("victim.cwasm");
    std::fs::copy(the_entry(elsewhere.path()), &victim)?;
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .append(true)
        .open(&victim)?
        .set_modified(long_ago)?;
    let before = std::fs::read(&victim)?;

    let dir = tempfile::tempdir()?;
    load(&engine_with_cache(dir.path()), HELLO);
    let folder = the_entry(dir.path()).parent().expect("folder").to_owned();
    let entry = folder.join(entry_name(&std::fs::read(SDK_TEST_A)?));
    symlink(&victim, &entry)?;
    let engine = engine_with_cache(dir.path());
    assert!(!engine.is_cached_on_disk(&std::fs::read(SDK_TEST_A)?));
    let (plugin, logs) = warnings(|| load(&engine, SDK_TEST_A));
    assert!(logs.contains("a symbolic link"), "{logs}");
    assert_eq!((engine.compile_count(), engine.disk_cache_hits()), (1, 0));
    assert_eq!(
        postcard::from_bytes::<String>(&call_postcard(&plugin, "echo", &"linked")?)?,
        "linked"
    );
    // The victim is untouched, and the entry's name now holds a regular file of the cache's own.
    assert!(std::fs::read(&victim)? == before, "the victim changed");
    assert_eq!(std::fs::metadata(&victim)?.modified()?, long_ago);
    assert!(std::fs::symlink_metadata(&entry)?.file_type().is_file());
    Ok(())
}

/// An ABI module whose entry `run` answers the first `len` bytes of "hello".
fn answering(len: u32) -> String {
    abi_module(
        1,
        &format!("(call $set_output (i32.const 16) (i32.const {len})) i32.const 0"),
        "",
    )
}

fn load_bytes(engine: &Engine, bytes: &[u8]) -> Plugin {
    Plugin::from_bytes(engine, bytes, options(ResolvedSettings::default())).expect("loads")
}

#[test]
fn an_entry_copied_under_another_content_hash_is_refused_and_recompiled() -> anyhow::Result<()> {
    let (a, b) = (answering(5), answering(4));
    let dir = tempfile::tempdir()?;
    let engine = engine_with_cache(dir.path());
    assert_eq!(
        load_bytes(&engine, a.as_bytes()).call_raw("run", &[])?,
        b"hello"
    );
    assert_eq!(
        load_bytes(&engine, b.as_bytes()).call_raw("run", &[])?,
        b"hell"
    );
    assert_eq!(engine.compile_count(), 2);
    let entry_a = dir
        .path()
        .join(engine_folder_name())
        .join(entry_name(a.as_bytes()));
    let entry_b = entry_a.with_file_name(entry_name(b.as_bytes()));
    std::fs::copy(&entry_a, &entry_b)?;

    let engine = engine_with_cache(dir.path());
    let (plugin, logs) = warnings(|| load_bytes(&engine, b.as_bytes()));
    assert_eq!(plugin.call_raw("run", &[])?, b"hell");
    assert_eq!((engine.compile_count(), engine.disk_cache_hits()), (1, 0));
    assert!(logs.contains("another content hash"), "{logs}");
    // The misplaced entry was deleted and replaced by B's own; A's is still good.
    let engine = engine_with_cache(dir.path());
    assert_eq!(
        load_bytes(&engine, b.as_bytes()).call_raw("run", &[])?,
        b"hell"
    );
    assert_eq!(
        load_bytes(&engine, a.as_bytes()).call_raw("run", &[])?,
        b"hello"
    );
    assert_eq!((engine.compile_count(), engine.disk_cache_hits()), (0, 2));
    Ok(())
}

#[test]
fn clear_and_the_size_bound_touch_only_the_caches_own_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let victims = tempfile::tempdir()?;
    let root = dir.path();
    load(&engine_with_cache(root), SDK_TEST_A);
    let folder = the_entry(root).parent().expect("folder").to_owned();

    // A victim directory holding a file named like an entry, reached through a symlinked engine
    // folder and a symlinked entry; and files of the cache's folders that are not entries.
    let victim = victims.path().join(format!("{}.cwasm", "ab".repeat(32)));
    std::fs::write(&victim, b"victim")?;
    symlink(victims.path(), root.join("engine-0123456789abcdef"))?;
    symlink(&victim, folder.join(format!("{}.cwasm", "cd".repeat(32))))?;
    let others = [
        folder.join("notes.cwasm"),
        folder.join("README"),
        root.join("README.cwasm"),
    ];
    for other in &others {
        std::fs::write(other, b"not an entry")?;
    }
    let survivors = || {
        assert_eq!(std::fs::read(&victim).expect("victim survives"), b"victim");
        for other in &others {
            assert!(other.is_file(), "{} survives", other.display());
        }
    };
    // Only the real entry is counted.
    assert_eq!(cache_info(root).entries, 1);

    // The size bound: a bound of one byte deletes every entry it can reach.
    let mut bounded = EngineOptions::default()
        .with_incremental_cache_bytes(0)
        .with_cache_dir(Some(root.to_owned()));
    bounded.cache_max_bytes = 1;
    load(&Engine::new(bounded)?, HELLO);
    survivors();
    assert_eq!(cache_info(root).entries, 0);

    load(&engine_with_cache(root), SDK_TEST_A);
    assert_eq!(clear_cache(root)?.entries, 1);
    assert_eq!(cache_info(root).entries, 0);
    survivors();

    // An untrusted root is not cleared at all.
    load(&engine_with_cache(root), SDK_TEST_A);
    set_mode(root, 0o777);
    let error = clear_cache(root).unwrap_err();
    assert!(matches!(error, CacheError::Untrusted { .. }), "{error:?}");
    assert!(cache_info(root).untrusted.is_some());
    set_mode(root, 0o700);
    assert_eq!(cache_info(root).entries, 1);
    Ok(())
}
