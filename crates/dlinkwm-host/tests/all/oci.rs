//! Plugins from a real OCI registry (Debian's `docker-registry`): loads by tag and digest,
//! following a tag under calls, a tampered version, the registry down, automatic rollback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dlinkwm_host::oci::{PluginRef, Registry, RegistryOptions, block_on};
use dlinkwm_host::{Config, Error, Plugin, PluginError, PluginHost, ReloadEvent};
use test_programs_artifacts::registry::TestRegistry;
use test_programs_artifacts::{SDK_TEST_A, SDK_TEST_B, SDK_TEST_FAULTY};

/// The generous bound on anything awaited (a poll, a pull, a compile).
const WAIT: Duration = Duration::from_secs(60);

struct Fixture {
    registry: TestRegistry,
    store: tempfile::TempDir,
    client: Registry,
}

impl Fixture {
    fn new() -> Self {
        let store = tempfile::tempdir().unwrap();
        Self {
            registry: TestRegistry::start(),
            client: Registry::new(RegistryOptions::default().with_store_dir(None)),
            store,
        }
    }

    fn reference(&self, tag: &str) -> String {
        format!("oci://{}/plugins/sdk_test:{tag}", self.registry.host())
    }

    fn push(&self, file: &str, tag: &str) -> String {
        let reference: PluginRef = self.reference(tag).parse().unwrap();
        let bytes = std::fs::read(file).unwrap();
        block_on(self.client.push(&bytes, &reference))
            .unwrap()
            .manifest_digest
    }

    /// A host whose store is the fixture's, polling every 200 ms, with `extra` configuration.
    fn host(&self, extra: &str) -> PluginHost {
        let toml = format!(
            "[registry]\nstore_dir = {:?}\npoll = \"200ms\"\ntimeout = \"5s\"\n{extra}",
            self.store.path()
        );
        PluginHost::builder()
            .config(Config::from_toml(&toml).unwrap())
            .build()
            .unwrap()
    }
}

fn variant(plugin: &Plugin) -> dlinkwm_host::Result<String> {
    plugin.call("variant", &())
}

/// The next event other than a `Failed` one the test does not wait for.
fn next_event(events: &crossbeam_channel::Receiver<ReloadEvent>) -> ReloadEvent {
    events
        .recv_timeout(WAIT)
        .expect("an event within the bound")
}

#[test]
fn loads_by_tag_and_by_digest() {
    let fixture = Fixture::new();
    let digest_a = fixture.push(SDK_TEST_A, "v1");
    let host = fixture.host("");
    let by_tag = host.load(fixture.reference("v1")).unwrap();
    assert_eq!(variant(&by_tag).unwrap(), "a");
    assert_eq!(by_tag.name(), fixture.reference("v1"));
    assert_eq!(by_tag.registry_digest().as_deref(), Some(digest_a.as_str()));
    let pinned = format!(
        "oci://{}/plugins/sdk_test@{digest_a}",
        fixture.registry.host()
    );
    let by_digest = host.load(&pinned).unwrap();
    assert_eq!(variant(&by_digest).unwrap(), "a");
    // A pinned digest never moves, even when watched.
    host.watch(&by_digest).unwrap();
    // An explicit reload of a tag checks it now.
    fixture.push(SDK_TEST_B, "v1");
    assert!(matches!(
        by_tag.reload().unwrap(),
        dlinkwm_host::ReloadOutcome::Reloaded { .. }
    ));
    assert_eq!(variant(&by_tag).unwrap(), "b");
    assert!(matches!(
        by_tag.reload().unwrap(),
        dlinkwm_host::ReloadOutcome::Unchanged
    ));
    // The pinned plugin did not move with the tag, watched or asked.
    assert_eq!(variant(&by_digest).unwrap(), "a");
    assert!(matches!(
        by_digest.reload().unwrap(),
        dlinkwm_host::ReloadOutcome::Unchanged
    ));
    assert_eq!(
        by_digest.registry_digest().as_deref(),
        Some(digest_a.as_str())
    );
    // Unknown tags and malformed references are typed errors.
    match host.load(fixture.reference("never-pushed")) {
        Err(Error::Registry(error)) => assert!(!error.is_unreachable(), "{error}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(matches!(
        host.load("oci://localhost:5000/UPPER"),
        Err(Error::Registry(_))
    ));
}

#[test]
fn a_followed_tag_reloads_under_calls_with_no_failed_call() {
    let fixture = Fixture::new();
    fixture.push(SDK_TEST_A, "stable");
    let host = fixture.host("");
    let plugin = host.load_watched(fixture.reference("stable")).unwrap();
    let events = plugin.subscribe();
    assert_eq!(variant(&plugin).unwrap(), "a");

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (plugin, stop, failed) = (plugin.clone(), stop.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if variant(&plugin).is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let pushed = Instant::now();
    let digest_b = fixture.push(SDK_TEST_B, "stable");
    match next_event(&events) {
        ReloadEvent::Reloaded { .. } => {}
        other => panic!("{other:?}"),
    }
    let switched = pushed.elapsed();
    assert_eq!(variant(&plugin).unwrap(), "b");
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = callers
        .into_iter()
        .map(|caller| caller.join().unwrap())
        .sum();
    assert!(calls > 0);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "of {calls} calls");
    assert_eq!(plugin.registry_digest().as_deref(), Some(digest_b.as_str()));
    eprintln!("push to serving: {switched:?} (poll 200 ms), {calls} calls, none failed");
}

#[test]
fn a_tampered_version_is_refused_and_the_current_one_keeps_serving() {
    let fixture = Fixture::new();
    fixture.push(SDK_TEST_A, "stable");
    let host = fixture.host("");
    let plugin = host.load_watched(fixture.reference("stable")).unwrap();
    let events = plugin.subscribe();
    // B is pushed under another tag, altered in the registry's storage, then promoted.
    let candidate: PluginRef = fixture.reference("candidate").parse().unwrap();
    let pushed = block_on(
        fixture
            .client
            .push(&std::fs::read(SDK_TEST_B).unwrap(), &candidate),
    )
    .unwrap();
    let blob = fixture.registry.blob_file(&pushed.layer_digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&blob, &bytes).unwrap();
    block_on(fixture.client.tag(&candidate, "stable")).unwrap();

    match next_event(&events) {
        ReloadEvent::Failed {
            error: PluginError::Source { reason, .. },
            ..
        } => assert!(reason.contains("verification"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(variant(&plugin).unwrap(), "a");
    // Asked explicitly, the same tampered version is refused again, with the registry's error.
    match plugin.reload() {
        Err(Error::Registry(error)) => assert!(error.is_tampered(), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(variant(&plugin).unwrap(), "a");
}

#[test]
fn the_registry_down_keeps_serving_and_a_restart_starts_from_the_store() {
    let mut fixture = Fixture::new();
    fixture.push(SDK_TEST_A, "stable");
    let host = fixture.host("");
    let plugin = host.load_watched(fixture.reference("stable")).unwrap();
    let events = plugin.subscribe();
    fixture.registry.stop();
    // The follower polls a dead registry; calls go on.
    for _ in 0..100 {
        assert_eq!(variant(&plugin).unwrap(), "a");
    }
    // A new process (a new host on the same store) starts from the last known good version.
    let restarted = fixture.host("").load(fixture.reference("stable")).unwrap();
    assert_eq!(variant(&restarted).unwrap(), "a");
    // Without a store, the registry being down is an error naming it.
    let bare = PluginHost::builder()
        .config(
            Config::from_toml(&format!(
                "[registry]\nstore_dir = {:?}\ntimeout = \"5s\"\n",
                tempfile::tempdir().unwrap().path()
            ))
            .unwrap(),
        )
        .build()
        .unwrap();
    match bare.load(fixture.reference("stable")) {
        Err(Error::Registry(error)) => assert!(error.is_unreachable(), "{error}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Back up, a new version is picked up by the follower that waited through the outage.
    fixture.registry.restart();
    fixture.push(SDK_TEST_B, "stable");
    match next_event(&events) {
        ReloadEvent::Reloaded { .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(variant(&plugin).unwrap(), "b");
}

#[test]
fn a_faulting_pushed_version_rolls_back_and_is_not_pulled_again() {
    let mut fixture = Fixture::new();
    let digest_a = fixture.push(SDK_TEST_A, "stable");
    let host = fixture.host("[defaults]\nrollback_on = { faults = 3, within = \"10m\" }\n");
    let plugin = host.load_watched(fixture.reference("stable")).unwrap();
    let events = plugin.subscribe();
    fixture.push(SDK_TEST_FAULTY, "stable");
    match next_event(&events) {
        ReloadEvent::Reloaded { .. } => {}
        other => panic!("{other:?}"),
    }
    for _ in 0..3 {
        assert!(variant(&plugin).unwrap_err().is_guest_fault());
    }
    match next_event(&events) {
        ReloadEvent::RolledBack {
            reason: Some(reason),
            ..
        } => assert!(reason.contains("3 guest faults"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(variant(&plugin).unwrap(), "a");
    assert_eq!(plugin.registry_digest().as_deref(), Some(digest_a.as_str()));
    // The tag still points to the faulty version: the follower does not pull it again. Five
    // polls' worth of silence.
    assert!(
        events.recv_timeout(Duration::from_secs(1)).is_err(),
        "the faulty version came back"
    );
    assert_eq!(variant(&plugin).unwrap(), "a");
    // The version rolled back to is the tag's last known good again: a restart while the
    // registry is down starts from it, not from the faulty one.
    fixture.registry.stop();
    let deadline = Instant::now() + WAIT;
    loop {
        let restarted = fixture.host("").load(fixture.reference("stable")).unwrap();
        if variant(&restarted).is_ok_and(|answer| answer == "a") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store still names the faulty version"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_load_dropped_while_the_registry_is_silent_leaves_the_host_working() {
    let fixture = Fixture::new();
    fixture.push(SDK_TEST_A, "stable");
    // A peer that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let host = fixture.host("");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hung = host.load_async(format!("oci://{address}/plugins/sdk_test:stable"));
        // Dropped mid-request.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), hung)
                .await
                .is_err()
        );
        // The same host loads, calls and follows afterwards.
        let plugin = host.load_async(fixture.reference("stable")).await.unwrap();
        assert_eq!(
            plugin
                .call_async::<(), String>("variant", &())
                .await
                .unwrap(),
            "a"
        );
    });
    drop(silent);
}
