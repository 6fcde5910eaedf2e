//! The disk cache of compiled code.

use std::path::{Path, PathBuf};

use dlinkwm_core::disk_cache::{cache_info, clear_cache};
use dlinkwm_core::{Engine, EngineOptions, Plugin, PluginOptions};
use test_programs_artifacts::{HELLO, SDK_TEST_A};

use crate::call_postcard;

fn engine_with_cache(dir: &Path) -> Engine {
    Engine::new(EngineOptions::default().with_cache_dir(Some(dir.to_owned()))).expect("engine")
}

fn load(engine: &Engine, path: &str) -> Plugin {
    Plugin::load(engine, path, PluginOptions::default()).expect("loads")
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
    let mut foreign_payload = b"DLWMC001".to_vec();
    let garbage = vec![0x7fu8; 4096];
    foreign_payload.extend_from_slice(blake3::hash(&garbage).as_bytes());
    foreign_payload.extend_from_slice(&garbage);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("corrupt", flipped),
        ("truncated", good[..good.len() / 3].to_vec()),
        ("empty", Vec::new()),
        ("foreign (valid checksum, not wasmtime's)", foreign_payload),
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
    let options = EngineOptions::default().with_cache_dir(Some(dir.path().to_owned()));
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
        let engine = Engine::new(EngineOptions::default())?;
        assert!(engine.cache_dir().is_none());
        load(&engine, SDK_TEST_A);
        assert_eq!((engine.compile_count(), engine.disk_cache_hits()), (1, 0));
    }
    Ok(())
}
