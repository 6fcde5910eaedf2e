//! Hot reload: watched files, bad files, rollback, state hand-over, concurrency, config edits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use dlinkwm_core::{
    CallerInfo, Config, ConfigEvent, DynamicConfig, Engine, EngineOptions, Error, Format,
    HostCallError, HostCallHandler, Plugin, PluginWatcher, ReloadEvent, ResolvedSettings,
};
use test_programs_artifacts::{HELLO, SDK_TEST_A, SDK_TEST_B};

use crate::{abi_module, call_postcard, engine, options, options_with_host};

/// Generous: a reload on a loaded 2-core machine takes well under a second.
const WAIT: Duration = Duration::from_secs(60);

fn variant(plugin: &Plugin) -> String {
    postcard::from_bytes(&call_postcard(plugin, "variant", &()).expect("variant answers"))
        .expect("a string")
}

fn next_event(events: &Receiver<ReloadEvent>) -> ReloadEvent {
    events
        .recv_timeout(WAIT)
        .expect("a reload event within the wait")
}

/// Replaces `path` the way cargo and most editors do: write a temporary file, rename it over.
fn replace_by_rename(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("wasm.tmp");
    std::fs::write(&temporary, bytes).expect("write temporary");
    std::fs::rename(&temporary, path).expect("rename into place");
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    plugin: Plugin,
    watcher: PluginWatcher,
    events: Receiver<ReloadEvent>,
}

fn watched(initial: &str, settings: ResolvedSettings) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plugin.wasm");
    std::fs::copy(initial, &path).expect("copy plugin");
    let plugin = Plugin::load(&engine(), &path, options(settings)).expect("loads");
    let events = plugin.subscribe();
    let watcher = PluginWatcher::new().expect("watcher");
    watcher.watch(&plugin).expect("watch");
    Fixture {
        _dir: dir,
        path,
        plugin,
        watcher,
        events,
    }
}

#[test]
fn a_rename_and_an_in_place_write_each_give_exactly_one_reload() -> anyhow::Result<()> {
    let fixture = watched(SDK_TEST_A, ResolvedSettings::default());
    assert_eq!(variant(&fixture.plugin), "a");
    assert_eq!(fixture.watcher.files().len(), 1);

    replace_by_rename(&fixture.path, &std::fs::read(SDK_TEST_B)?);
    match next_event(&fixture.events) {
        ReloadEvent::Reloaded {
            version: 2,
            previous: 1,
            hash,
            ..
        } => {
            assert_eq!(
                hash,
                dlinkwm_core::ContentHash::of(&std::fs::read(SDK_TEST_B)?)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(variant(&fixture.plugin), "b");
    assert_eq!(fixture.plugin.version(), 2);

    // In place: truncate and write. The next event must be this reload: nothing came in between.
    std::fs::write(&fixture.path, std::fs::read(SDK_TEST_A)?)?;
    let event = next_event(&fixture.events);
    assert!(
        matches!(event, ReloadEvent::Reloaded { version: 3, .. }),
        "{event:?}"
    );
    assert_eq!(variant(&fixture.plugin), "a");

    // Touching the file without changing it reloads nothing; the next event is the next change.
    std::fs::write(&fixture.path, std::fs::read(SDK_TEST_A)?)?;
    replace_by_rename(&fixture.path, &std::fs::read(SDK_TEST_B)?);
    assert!(matches!(
        next_event(&fixture.events),
        ReloadEvent::Reloaded { version: 4, .. }
    ));
    Ok(())
}

#[test]
fn bad_files_never_replace_a_good_one_and_a_fix_reloads() -> anyhow::Result<()> {
    let config = Config::from_toml("[entry_functions]\n\"plugin\" = [\"variant\", \"echo\"]\n")?;
    let fixture = watched(SDK_TEST_A, config.settings_for("plugin"));
    let good = std::fs::read(SDK_TEST_A)?;
    let bad_files: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"definitely not wasm".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("wrong ABI version", abi_module(7, "i32.const 0", "").into_bytes()),
        ("missing a configured entry", std::fs::read(HELLO)?),
        ("an init that traps", br#"(module (func (export "_initialize") unreachable) (func (export "variant")) (func (export "echo")))"#.to_vec()),
    ];
    for (what, bytes) in bad_files {
        replace_by_rename(&fixture.path, &bytes);
        match next_event(&fixture.events) {
            ReloadEvent::Failed { path, error, .. } => {
                assert_eq!(path.as_deref(), Some(fixture.path.as_path()), "{what}");
                let expected = match what {
                    "garbage" | "truncated" => matches!(error, Error::InvalidModule { .. }),
                    "wrong ABI version" => {
                        matches!(error, Error::AbiVersionUnsupported { found: 7, .. })
                    }
                    "missing a configured entry" => matches!(error, Error::EntryNotFound { .. }),
                    _ => matches!(error, Error::Trap { .. }),
                };
                assert!(expected, "{what}: {error:?}");
            }
            other => panic!("{what}: expected a failed reload, got {other:?}"),
        }
        assert_eq!(fixture.plugin.version(), 1, "{what}");
        assert_eq!(variant(&fixture.plugin), "a", "{what}");
    }
    replace_by_rename(&fixture.path, &std::fs::read(SDK_TEST_B)?);
    // Refused files used up no version numbers.
    assert!(matches!(
        next_event(&fixture.events),
        ReloadEvent::Reloaded { version: 2, .. }
    ));
    assert_eq!(variant(&fixture.plugin), "b");
    Ok(())
}

#[test]
fn a_deleted_file_keeps_the_loaded_version_serving() -> anyhow::Result<()> {
    let fixture = watched(SDK_TEST_A, ResolvedSettings::default());
    std::fs::remove_file(&fixture.path)?;
    match next_event(&fixture.events) {
        ReloadEvent::FileRemoved { path, .. } => assert_eq!(path, fixture.path),
        other => panic!("{other:?}"),
    }
    assert_eq!(variant(&fixture.plugin), "a");
    // It comes back: a normal reload.
    std::fs::write(&fixture.path, std::fs::read(SDK_TEST_B)?)?;
    assert!(matches!(
        next_event(&fixture.events),
        ReloadEvent::Reloaded { .. }
    ));
    assert_eq!(variant(&fixture.plugin), "b");
    Ok(())
}

#[test]
fn rollback_restores_the_previous_version_without_compiling() -> anyhow::Result<()> {
    let engine = engine();
    let plugin = Plugin::load(&engine, SDK_TEST_A, options(ResolvedSettings::default()))?;
    let events = plugin.subscribe();
    plugin.reload_from_bytes(&std::fs::read(SDK_TEST_B)?)?;
    assert!(matches!(
        next_event(&events),
        ReloadEvent::Reloaded { version: 2, .. }
    ));
    let compiles = engine.compile_count();
    assert_eq!(plugin.kept_versions(), vec![1]);
    assert_eq!(plugin.rollback()?, 1);
    assert!(matches!(
        next_event(&events),
        ReloadEvent::RolledBack { from: 2, to: 1, .. }
    ));
    assert_eq!(variant(&plugin), "a");
    assert_eq!(plugin.version(), 1);
    assert_eq!(engine.compile_count(), compiles);
    assert!(matches!(
        plugin.rollback(),
        Err(Error::NoRollbackTarget { .. })
    ));
    Ok(())
}

#[test]
fn the_number_of_kept_versions_is_bounded() -> anyhow::Result<()> {
    let settings = ResolvedSettings {
        keep_versions: 2,
        ..Default::default()
    };
    let plugin = Plugin::load(&engine(), SDK_TEST_A, options(settings))?;
    let (a, b) = (std::fs::read(SDK_TEST_A)?, std::fs::read(SDK_TEST_B)?);
    for bytes in [&b, &a, &b, &a] {
        plugin.reload_from_bytes(bytes)?;
    }
    assert_eq!(plugin.version(), 5);
    assert_eq!(plugin.kept_versions(), vec![3, 4]);
    Ok(())
}

#[test]
fn a_counter_survives_a_reload_and_a_refused_hand_over_keeps_the_old_version() -> anyhow::Result<()>
{
    let settings = ResolvedSettings {
        max_instances: 1,
        ..Default::default()
    };
    let plugin = Plugin::load(&engine(), SDK_TEST_A, options(settings))?;
    let count = |plugin: &Plugin| -> u64 {
        postcard::from_bytes(&call_postcard(plugin, "count", &()).unwrap()).unwrap()
    };
    assert_eq!((count(&plugin), count(&plugin), count(&plugin)), (1, 2, 3));
    let events = plugin.subscribe();
    plugin.reload_from_bytes(&std::fs::read(SDK_TEST_B)?)?;
    assert!(matches!(
        next_event(&events),
        ReloadEvent::Reloaded {
            state_handed_over: true,
            ..
        }
    ));
    assert_eq!(variant(&plugin), "b");
    assert_eq!(count(&plugin), 4);

    // The new version's restore refuses this value: the reload must not happen.
    call_postcard(&plugin, "set_count", &u64::MAX)?;
    let error = plugin
        .reload_from_bytes(&std::fs::read(SDK_TEST_A)?)
        .unwrap_err();
    assert!(
        matches!(&error, Error::StateHandover { source, .. } if matches!(**source, Error::Guest { .. })),
        "{error:?}"
    );
    assert!(matches!(next_event(&events), ReloadEvent::Failed { .. }));
    assert_eq!(plugin.version(), 2);
    assert_eq!(variant(&plugin), "b");
    Ok(())
}

/// A host method that blocks until the test releases it, so a call can be held in flight.
struct Gate {
    entered: Sender<()>,
    release: Mutex<Receiver<()>>,
}

impl HostCallHandler for Gate {
    fn call(
        &self,
        _: CallerInfo<'_>,
        method: &str,
        format: Format,
        _: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<(), HostCallError> {
        if method != "gate" {
            return Err(HostCallError::UnknownMethod(method.to_owned()));
        }
        self.entered.send(()).expect("the test listens");
        self.release
            .lock()
            .unwrap()
            .recv_timeout(WAIT)
            .map_err(|_| HostCallError::Failed("the gate was never opened".into()))?;
        assert_eq!(format, Format::Postcard);
        output.extend_from_slice(&postcard::to_allocvec(&()).unwrap());
        Ok(())
    }
}

#[test]
fn a_call_in_flight_during_a_swap_finishes_on_the_old_version() -> anyhow::Result<()> {
    let (entered_tx, entered) = crossbeam_channel::unbounded();
    let (release, release_rx) = crossbeam_channel::unbounded();
    let gate = Gate {
        entered: entered_tx,
        release: Mutex::new(release_rx),
    };
    let plugin = Plugin::load(
        &engine(),
        SDK_TEST_A,
        options_with_host(ResolvedSettings::default(), gate),
    )?;
    let in_flight = std::thread::spawn({
        let plugin = plugin.clone();
        move || -> String {
            postcard::from_bytes(&call_postcard(&plugin, "variant_after_host", &"gate").unwrap())
                .unwrap()
        }
    });
    entered.recv_timeout(WAIT)?;
    // The swap does not wait for the call in flight.
    plugin.reload_from_bytes(&std::fs::read(SDK_TEST_B)?)?;
    assert_eq!(variant(&plugin), "b");
    release.send(())?;
    assert_eq!(in_flight.join().expect("no panic"), "a");
    // The old version, kept for rollback, did not keep the instance the call returned.
    assert_eq!(plugin.rollback()?, 1);
    assert_eq!(plugin.live_instances(), 0);
    assert_eq!(variant(&plugin), "a");
    assert_eq!(plugin.live_instances(), 1);
    Ok(())
}

#[test]
fn two_threads_calling_through_fifty_alternating_reloads_see_no_failure() -> anyhow::Result<()> {
    let fixture = watched(SDK_TEST_A, ResolvedSettings::default());
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let plugin = fixture.plugin.clone();
            let stop = stop.clone();
            std::thread::spawn(move || -> anyhow::Result<(usize, usize)> {
                let (mut calls, mut last_version, mut answers_b) = (0usize, 0u64, 0usize);
                while !stop.load(Ordering::Relaxed) {
                    let version = plugin.version();
                    anyhow::ensure!(
                        version >= last_version,
                        "version went back from {last_version} to {version}"
                    );
                    last_version = version;
                    let answer: String =
                        postcard::from_bytes(&call_postcard(&plugin, "variant", &())?)?;
                    anyhow::ensure!(
                        answer == "a" || answer == "b",
                        "answer {answer:?} is from no whole version"
                    );
                    answers_b += usize::from(answer == "b");
                    calls += 1;
                }
                Ok((calls, answers_b))
            })
        })
        .collect();
    let (a, b) = (std::fs::read(SDK_TEST_A)?, std::fs::read(SDK_TEST_B)?);
    for round in 0..50u64 {
        replace_by_rename(&fixture.path, if round % 2 == 0 { &b } else { &a });
        match next_event(&fixture.events) {
            ReloadEvent::Reloaded { version, .. } => assert_eq!(version, round + 2),
            other => panic!("round {round}: {other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        let (calls, answers_b) = caller.join().expect("no panic")?;
        assert!(calls > 0);
        assert!(
            answers_b > 0 || calls < 50,
            "a caller never saw version b in {calls} calls"
        );
    }
    assert_eq!(fixture.plugin.version(), 51);
    Ok(())
}

#[test]
fn config_edits_apply_to_the_next_call_and_bad_edits_are_kept_out() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("dlinkwm.toml");
    std::fs::write(
        &path,
        "[entry_functions]\n\"plugin\" = [\"variant\", \"echo\"]\n",
    )?;
    let mut config = DynamicConfig::new(&path)?;
    config.start_watching()?;
    let events = config.subscribe();
    let plugin = Plugin::load(&engine(), SDK_TEST_A, {
        let mut options = options(config.current().settings_for("plugin"));
        options.name = Some("plugin".to_owned());
        options
    })?;
    config.follow(&plugin)?;
    call_postcard(&plugin, "echo", &"x")?;
    assert_eq!(
        config.get_entry_functions("plugin"),
        Some(vec!["variant".to_owned(), "echo".to_owned()])
    );

    std::fs::write(&path, "[entry_functions]\n\"plugin\" = [\"variant\"]\n")?;
    assert!(matches!(
        events.recv_timeout(WAIT)?,
        ConfigEvent::Reloaded { .. }
    ));
    assert!(matches!(
        call_postcard(&plugin, "echo", &"x"),
        Err(Error::EntryNotAllowed { .. })
    ));
    assert_eq!(variant(&plugin), "a");

    std::fs::write(&path, "[entry_functions\n")?;
    match events.recv_timeout(WAIT)? {
        ConfigEvent::Failed {
            path: failed,
            error,
        } => {
            assert_eq!(failed, path);
            assert_eq!(error.file.as_deref(), Some(path.as_path()));
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(&path, "[defaults]\ntimeout_ms = \"soon\"\n")?;
    match events.recv_timeout(WAIT)? {
        ConfigEvent::Failed { error, .. } => {
            assert_eq!(error.key.as_deref(), Some("defaults.timeout_ms"))
        }
        other => panic!("{other:?}"),
    }
    // The last good configuration is still in force.
    assert!(matches!(
        call_postcard(&plugin, "echo", &"x"),
        Err(Error::EntryNotAllowed { .. })
    ));
    assert_eq!(
        config.get_entry_functions("plugin"),
        Some(vec!["variant".to_owned()])
    );
    Ok(())
}

#[test]
fn a_version_that_fails_the_smoke_call_is_refused_and_the_current_one_keeps_serving()
-> anyhow::Result<()> {
    let smoke = |entry: &str, input: &str| -> anyhow::Result<ResolvedSettings> {
        let toml = format!(
            "[plugins.\"plugin\"]\nsmoke = {{ entry = \"{entry}\", input = \"{input}\" }}\n"
        );
        Ok(Config::from_toml(&toml)?.settings_for("plugin"))
    };
    // A first version that fails it never loads; the error is the smoke call's.
    let error = Plugin::from_bytes(
        &engine(),
        &std::fs::read(SDK_TEST_A)?,
        options(smoke("fail", "not today")?),
    )
    .unwrap_err();
    match &error {
        Error::SmokeFailed { entry, source, .. } => {
            assert_eq!(entry, "fail");
            assert!(
                matches!(&**source, Error::Guest { message, .. } if message == "not today"),
                "{source:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().contains("smoke call of `fail`"),
        "{error}"
    );
    // An entry the version does not have fails it too.
    let missing = Plugin::from_bytes(
        &engine(),
        &std::fs::read(SDK_TEST_A)?,
        options(smoke("no_such_entry", "")?),
    )
    .unwrap_err();
    assert!(
        matches!(&missing, Error::SmokeFailed { source, .. }
            if matches!(**source, Error::EntryNotFound { .. })),
        "{missing:?}"
    );

    // Passing versions load and reload; one whose `echo` traps is refused.
    let plugin = Plugin::from_bytes(
        &engine(),
        &std::fs::read(SDK_TEST_A)?,
        options(smoke("echo", "still alive")?),
    )?;
    let events = plugin.subscribe();
    let trapping = abi_module(
        1,
        "i32.const 0",
        r#"(func (export "echo") (param i32 i32 i32) (result i32) unreachable)"#,
    );
    let refused = plugin.reload_from_bytes(trapping.as_bytes()).unwrap_err();
    assert!(
        matches!(&refused, Error::SmokeFailed { source, .. } if matches!(**source, Error::Trap { .. })),
        "{refused:?}"
    );
    assert!(matches!(
        next_event(&events),
        ReloadEvent::Failed {
            error: Error::SmokeFailed { .. },
            ..
        }
    ));
    assert_eq!(plugin.version(), 1);
    assert_eq!(variant(&plugin), "a");
    plugin.reload_from_bytes(&std::fs::read(SDK_TEST_B)?)?;
    assert_eq!(plugin.version(), 2);
    assert_eq!(variant(&plugin), "b");
    Ok(())
}

#[test]
fn a_faulting_new_version_rolls_back_by_itself_and_does_not_come_back() -> anyhow::Result<()> {
    let config = Config::from_toml(
        "[plugins.\"plugin\"]\nrollback_on = { faults = 3, within = \"10m\" }\n",
    )?;
    let fixture = watched(SDK_TEST_A, config.settings_for("plugin"));
    let faulty = abi_module(
        1,
        "i32.const 0",
        r#"(func (export "variant") (param i32 i32 i32) (result i32) unreachable)"#,
    );
    replace_by_rename(&fixture.path, faulty.as_bytes());
    assert!(matches!(
        next_event(&fixture.events),
        ReloadEvent::Reloaded { version: 2, .. }
    ));
    // Two faults: still on probation, still serving.
    for _ in 0..2 {
        assert!(matches!(
            call_postcard(&fixture.plugin, "variant", &()),
            Err(Error::Trap { .. })
        ));
    }
    assert_eq!(fixture.plugin.version(), 2);
    // The third fails like the others (the rollback fails no call), then the version rolls back.
    assert!(matches!(
        call_postcard(&fixture.plugin, "variant", &()),
        Err(Error::Trap { .. })
    ));
    match next_event(&fixture.events) {
        ReloadEvent::RolledBack {
            from: 2,
            to: 1,
            reason: Some(reason),
            ..
        } => assert!(reason.contains("3 guest faults"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fixture.plugin.version(), 1);
    assert_eq!(variant(&fixture.plugin), "a");
    // The faulty bytes written again are not loaded again (no flapping); different bytes are.
    std::fs::write(&fixture.path, faulty.as_bytes())?;
    replace_by_rename(&fixture.path, &std::fs::read(SDK_TEST_B)?);
    match next_event(&fixture.events) {
        ReloadEvent::Reloaded { hash, .. } => {
            assert_eq!(
                hash,
                dlinkwm_core::ContentHash::of(&std::fs::read(SDK_TEST_B)?)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(variant(&fixture.plugin), "b");
    Ok(())
}

/// An engine whose compiled-code cache and function cache are in `dir`.
fn engine_in(dir: &Path) -> Engine {
    Engine::new(EngineOptions::default().with_cache_dir(Some(dir.to_owned()))).unwrap()
}

#[test]
fn a_small_change_reuses_the_compiled_functions_of_the_version_it_replaces() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = engine_in(dir.path());
    let plugin = Plugin::load(&engine, SDK_TEST_A, options(ResolvedSettings::default()))?;
    let loaded = engine.function_cache_stats();
    assert!(loaded.misses > 0, "{loaded:?}");
    // Build B differs from A in one function's constant: nearly everything is reused.
    plugin.reload_from_bytes(&std::fs::read(SDK_TEST_B)?)?;
    let reloaded = engine.function_cache_stats();
    let (hits, misses) = (reloaded.hits - loaded.hits, reloaded.misses - loaded.misses);
    // (Measured: 773 of 854 reused. Some trampolines are compiled anew every time.)
    assert!(hits > 5 * misses.max(1), "hits {hits}, misses {misses}");
    assert_eq!(variant(&plugin), "b");
    // Off: every function is compiled.
    let off = Engine::new(
        EngineOptions::default()
            .with_cache_dir(None)
            .with_incremental_cache_bytes(0),
    )?;
    Plugin::load(&off, SDK_TEST_A, options(ResolvedSettings::default()))?;
    assert_eq!(off.function_cache_stats(), Default::default());
    Ok(())
}

#[test]
fn the_function_cache_survives_a_restart_and_a_damaged_entry_is_compiled_again()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let a = std::fs::read(SDK_TEST_A)?;
    let first = engine_in(dir.path());
    drop(Plugin::from_bytes(
        &first,
        &a,
        options(ResolvedSettings::default()),
    )?);
    assert!(first.function_cache_stats().misses > 0);
    // The process ends: dropping the engine waits for its writer to put every function on disk
    // (while it runs, the writer may still be behind).
    drop(first);
    // A new process: the same code under a new content hash (so the compiled-code cache misses)
    // finds every function on disk.
    let second = engine_in(dir.path());
    let renamed = test_programs_artifacts::with_custom_section(&a, b"second");
    let plugin = Plugin::from_bytes(&second, &renamed, options(ResolvedSettings::default()))?;
    let stats = second.function_cache_stats();
    assert!(stats.disk_hits > 0, "{stats:?}");
    assert!(stats.hits > 5 * stats.misses.max(1), "{stats:?}");
    assert_eq!(variant(&plugin), "a");
    // (Its writer is done before the files are damaged.)
    drop(plugin);
    drop(second);
    // Every entry damaged on disk: none is used, every function is compiled again and runs.
    let mut damaged = 0;
    for folder in std::fs::read_dir(dir.path())? {
        let folder = folder?.path();
        if !folder
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("functions-"))
        {
            continue;
        }
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            let mut bytes = std::fs::read(&path)?;
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
            std::fs::write(&path, &bytes)?;
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let third = engine_in(dir.path());
    let again = test_programs_artifacts::with_custom_section(&a, b"third");
    let plugin = Plugin::from_bytes(&third, &again, options(ResolvedSettings::default()))?;
    let stats = third.function_cache_stats();
    // (A function body that occurs twice may be found in memory once compiled: no disk hit.)
    assert_eq!(stats.disk_hits, 0, "{stats:?}");
    assert!(stats.misses > 0, "{stats:?}");
    assert_eq!(variant(&plugin), "a");
    Ok(())
}
