//! Async hosts: `call_async`, async host methods, epoch yielding, async waits for instances,
//! cancellation, reloads under async load, and the wrong-mode errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dlinkwm_host::core::Error as CoreError;
use dlinkwm_host::{Config, Error, HostMethods, PluginHost};
use serde::Serialize;
use test_programs_artifacts::{SDK_TEST_A, SDK_TEST_B};
use tokio::sync::Notify;

/// What the SDK test guest's `call_host` entries take: the method to call and its argument.
#[derive(Serialize)]
struct HostCall<'a> {
    method: &'a str,
    arg: &'a str,
}

/// Sets a flag when dropped: shows that a host method's future was dropped.
struct DropFlag(Arc<Gates>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

/// What the tests hold to steer the async host methods.
#[derive(Default)]
struct Gates {
    /// `wait` signals it when it starts waiting.
    entered: Notify,
    /// What `wait` waits for.
    release: Notify,
    /// Set when a `forever` future is dropped.
    dropped: AtomicBool,
}

/// Async host methods: `nap` sleeps 100 ms, `wait` waits for the gates' `release`, `forever`
/// never answers (and flags `dropped` when its future is dropped), `async_fails` and
/// `async_panics`.
fn methods(gates: Arc<Gates>) -> HostMethods {
    let mut methods = crate::methods();
    methods.register_async("nap", |arg: String| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, String>(format!("rested {arg}"))
    });
    let waiting = gates.clone();
    methods.register_async("wait", move |arg: String| {
        let gates = waiting.clone();
        async move {
            gates.entered.notify_one();
            gates.release.notified().await;
            Ok::<_, String>(format!("released {arg}"))
        }
    });
    methods.register_async("forever", move |_: String| {
        let flag = DropFlag(gates.clone());
        async move {
            let _flag = flag;
            std::future::pending::<()>().await;
            Ok::<String, String>(String::new())
        }
    });
    methods.register_async("async_fails", |_: String| async {
        Err::<String, _>("the async database is down")
    });
    methods.register_async("async_panics", |_: String| async {
        if true {
            panic!("async host method bug");
        }
        Ok::<String, String>(String::new())
    });
    methods
}

fn host(configure: impl FnOnce(&mut Config)) -> PluginHost {
    host_with(configure, Arc::default())
}

fn host_with(configure: impl FnOnce(&mut Config), gates: Arc<Gates>) -> PluginHost {
    let mut config = Config::default();
    configure(&mut config);
    PluginHost::builder()
        .config(config)
        .host_methods(methods(gates))
        .build()
        .expect("host builds")
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime builds")
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime builds")
}

#[test]
fn two_hundred_calls_awaiting_a_host_method_run_at_once() -> anyhow::Result<()> {
    runtime(2).block_on(async {
        let host = host(|config| config.defaults.max_instances = Some(200));
        let plugin = host.load_async(SDK_TEST_A).await?;
        let started = Instant::now();
        let calls: Vec<_> = (0..200)
            .map(|n| {
                let plugin = plugin.clone();
                tokio::spawn(async move {
                    let arg = n.to_string();
                    let call = HostCall {
                        method: "nap",
                        arg: &arg,
                    };
                    plugin.call_async::<_, String>("call_host", &call).await
                })
            })
            .collect();
        for (n, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await??, format!("rested {n}"));
        }
        let took = started.elapsed();
        // One after another they would take 200 × 100 ms = 20 s; on two workers whose threads
        // never block they overlap (the bound leaves room for making 200 instances in a debug
        // build on a loaded machine).
        assert!(took < Duration::from_secs(8), "{took:?}");
        Ok(())
    })
}

#[test]
fn a_spinning_guest_yields_to_other_tasks_and_ends_at_its_timeout() -> anyhow::Result<()> {
    current_thread().block_on(async {
        let host = host(|config| config.defaults.timeout_ms = Some(500));
        let plugin = host.load_async(SDK_TEST_A).await?;
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let before = ticks.load(Ordering::SeqCst);
        let result = plugin.call_async::<_, ()>("spin", &()).await;
        let during = ticks.load(Ordering::SeqCst) - before;
        ticker.abort();
        assert!(
            matches!(result, Err(Error::Plugin(CoreError::Timeout { .. }))),
            "{result:?}"
        );
        // Without yielding, the only thread would spin for the whole 500 ms and the ticker
        // would not tick once.
        assert!(
            during >= 5,
            "the ticker ticked {during} times during the call"
        );
        Ok(())
    })
}

#[test]
fn dropping_a_call_inside_the_guest_discards_its_instance() -> anyhow::Result<()> {
    runtime(2).block_on(async {
        let host = host(|_| {});
        let plugin = host.load_async(SDK_TEST_A).await?;
        let before = plugin.live_instances();
        let spin = plugin.call_async::<_, ()>("spin", &());
        assert!(
            tokio::time::timeout(Duration::from_millis(200), spin)
                .await
                .is_err()
        );
        // The spinning instance is gone, not back in the pool; its place is free.
        assert_eq!(plugin.live_instances(), before - 1);
        assert_eq!(
            plugin.call_async::<_, i64>("add", &(2_i64, 3_i64)).await?,
            5
        );
        assert_eq!(plugin.live_instances(), before);
        Ok(())
    })
}

#[test]
fn dropping_a_call_inside_an_async_host_method_drops_its_future() -> anyhow::Result<()> {
    runtime(2).block_on(async {
        let gates = Arc::new(Gates::default());
        let host = host_with(|_| {}, gates.clone());
        let plugin = host.load_async(SDK_TEST_A).await?;
        let before = plugin.live_instances();
        let call = HostCall {
            method: "forever",
            arg: "x",
        };
        let pending = plugin.call_async::<_, String>("call_host", &call);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), pending)
                .await
                .is_err()
        );
        assert!(
            gates.dropped.load(Ordering::SeqCst),
            "the host method's future was dropped"
        );
        let call = HostCall {
            method: "greet_str",
            arg: "again",
        };
        assert_eq!(
            plugin.call_async::<_, String>("call_host", &call).await?,
            "hi again"
        );
        assert_eq!(plugin.live_instances(), before);
        Ok(())
    })
}

#[test]
fn a_host_method_that_never_answers_ends_at_the_call_timeout() -> anyhow::Result<()> {
    runtime(2).block_on(async {
        let host = host(|config| config.defaults.timeout_ms = Some(300));
        let plugin = host.load_async(SDK_TEST_A).await?;
        let started = Instant::now();
        let call = HostCall {
            method: "forever",
            arg: "x",
        };
        let result = plugin.call_async::<_, String>("call_host", &call).await;
        assert!(
            matches!(result, Err(Error::Plugin(CoreError::Timeout { .. }))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            plugin.call_async::<_, i64>("add", &(1_i64, 1_i64)).await?,
            2
        );
        Ok(())
    })
}

#[test]
fn a_full_pool_is_waited_for_and_the_queue_deadline_ends_the_wait() -> anyhow::Result<()> {
    runtime(2).block_on(async {
        let gates = Arc::new(Gates::default());
        let host = host_with(
            |config| {
                config.defaults.max_instances = Some(1);
                config.defaults.queue_timeout_ms = Some(60_000);
            },
            gates.clone(),
        );
        let plugin = host.load_async(SDK_TEST_A).await?;
        let held = tokio::spawn({
            let plugin = plugin.clone();
            async move {
                let call = HostCall {
                    method: "wait",
                    arg: "first",
                };
                plugin.call_async::<_, String>("call_host", &call).await
            }
        });
        gates.entered.notified().await;
        // The second call waits for the only instance, without a thread parked.
        let second = tokio::spawn({
            let plugin = plugin.clone();
            async move { plugin.call_async::<_, i64>("add", &(20_i64, 22_i64)).await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        gates.release.notify_one();
        assert_eq!(held.await??, "released first");
        assert_eq!(second.await??, 42);

        // With a short queue deadline, the waiting call ends in `Busy`.
        let mut settings = (*plugin.settings()).clone();
        settings.queue_timeout = Duration::from_millis(100);
        plugin.set_settings(settings)?;
        let held = tokio::spawn({
            let plugin = plugin.clone();
            async move {
                let call = HostCall {
                    method: "wait",
                    arg: "again",
                };
                plugin.call_async::<_, String>("call_host", &call).await
            }
        });
        gates.entered.notified().await;
        let busy = plugin.call_async::<_, i64>("add", &(1_i64, 2_i64)).await;
        assert!(
            matches!(busy, Err(Error::Plugin(CoreError::Busy { .. }))),
            "{busy:?}"
        );
        gates.release.notify_one();
        assert_eq!(held.await??, "released again");
        Ok(())
    })
}

#[test]
fn async_host_method_errors_panics_and_permissions_reach_the_guest_as_values() -> anyhow::Result<()>
{
    runtime(2).block_on(async {
        let host = host(|config| {
            config.defaults.host_methods = Some(vec![
                "async_fails".to_owned(),
                "async_panics".to_owned(),
                "greet_str".to_owned(),
            ]);
        });
        let plugin = host.load_async(SDK_TEST_A).await?;
        let report = |method: &'static str| {
            let plugin = plugin.clone();
            async move {
                let call = HostCall { method, arg: "x" };
                plugin
                    .call_async::<_, String>("call_host_report", &call)
                    .await
            }
        };
        let failed = report("async_fails").await?;
        assert!(failed.contains("the async database is down"), "{failed}");
        let panicked = report("async_panics").await?;
        assert!(panicked.contains("async host method bug"), "{panicked}");
        // `nap` is async too, and not in the allowlist.
        let denied = report("nap").await?;
        assert!(denied.starts_with("PermissionDenied"), "{denied}");
        // The plugin carries on after all of them.
        assert_eq!(report("greet_str").await?, "ok: hi x");
        Ok(())
    })
}

#[test]
fn calls_that_do_not_match_how_a_plugin_was_loaded_are_refused() -> anyhow::Result<()> {
    let host = host(|_| {});
    let sync = host.load(SDK_TEST_A)?;
    let rt = runtime(1);
    let asynchronous = rt.block_on(host.load_async(SDK_TEST_A))?;
    assert!(asynchronous.is_async() && !sync.is_async());
    let refused = asynchronous.call::<_, i64>("add", &(1_i64, 2_i64));
    assert!(
        matches!(refused, Err(Error::Plugin(CoreError::WrongCallMode { .. }))),
        "{refused:?}"
    );
    let refused = rt.block_on(sync.call_async::<_, i64>("add", &(1_i64, 2_i64)));
    assert!(
        matches!(refused, Err(Error::Plugin(CoreError::WrongCallMode { .. }))),
        "{refused:?}"
    );
    // An async method called from a sync call is an error value for the guest.
    let call = HostCall {
        method: "nap",
        arg: "x",
    };
    let report = sync.call::<_, String>("call_host_report", &call)?;
    assert!(report.contains("load_async"), "{report}");
    // Outside a runtime there is nothing to run an async plugin on.
    let outside = pollster::block_on(host.load_async(SDK_TEST_A));
    assert!(
        matches!(outside, Err(Error::Plugin(CoreError::WrongCallMode { .. }))),
        "{outside:?}"
    );
    Ok(())
}

#[test]
fn reloads_under_continuous_async_calls_lose_no_call_and_hand_the_state_over() -> anyhow::Result<()>
{
    runtime(2).block_on(async {
        let host = host(|_| {});
        let plugin = host.load_async(SDK_TEST_A).await?;
        let a = std::fs::read(SDK_TEST_A)?;
        let b = std::fs::read(SDK_TEST_B)?;
        // The state hand-over of an async plugin: the count goes to the new version.
        plugin.call_async::<_, ()>("set_count", &100_u64).await?;
        plugin.reload_from_bytes_async(&b).await?;
        assert_eq!(plugin.call_async::<_, u64>("count", &()).await?, 101);
        let stop = Arc::new(AtomicBool::new(false));
        // Calls answered by each caller: every reload waits until both have made calls since
        // the last one, so the reloads really interleave with calls.
        let answered: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let callers: Vec<_> = (0..2)
            .map(|index| {
                let (plugin, stop, answered) = (plugin.clone(), stop.clone(), answered.clone());
                tokio::spawn(async move {
                    let (mut calls, mut last_version) = (0_u64, 0_u64);
                    while !stop.load(Ordering::SeqCst) {
                        let variant = plugin.call_async::<_, String>("variant", &()).await?;
                        assert!(variant == "a" || variant == "b", "{variant}");
                        let version = plugin.version();
                        assert!(version >= last_version, "{version} after {last_version}");
                        last_version = version;
                        calls += 1;
                        answered[index].fetch_add(1, Ordering::SeqCst);
                    }
                    anyhow::Ok(calls)
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = [0_u64; 2];
        for round in 0..6 {
            // Bounded wait until each caller has answered again since the last reload.
            loop {
                let now = [
                    answered[0].load(Ordering::SeqCst),
                    answered[1].load(Ordering::SeqCst),
                ];
                if now[0] > seen[0] && now[1] > seen[1] {
                    seen = now;
                    break;
                }
                assert!(Instant::now() < deadline, "the callers stopped answering");
                tokio::task::yield_now().await;
            }
            let bytes = if round % 2 == 0 { &a } else { &b };
            plugin.reload_from_bytes_async(bytes).await?;
        }
        stop.store(true, Ordering::SeqCst);
        for caller in callers {
            assert!(caller.await?? > 0);
        }
        assert_eq!(plugin.version(), 8);
        // Rollback works on an async plugin too.
        assert_eq!(plugin.rollback()?, 7);
        assert_eq!(plugin.call_async::<_, String>("variant", &()).await?, "a");
        Ok(())
    })
}

#[test]
fn a_tiered_reload_of_an_async_plugin_goes_from_winchs_code_to_cranelifts_with_its_state()
-> anyhow::Result<()> {
    use dlinkwm_host::{ReloadEvent, Tier};
    runtime(2).block_on(async {
        let host = host(|config| {
            config.engine.tiered = Some(true);
            // Never-seen code for every run: no disk cache.
            config.engine.cache = Some(false);
        });
        let plugin = host.load_async(SDK_TEST_A).await?;
        let events = plugin.subscribe();
        plugin.call_async::<_, ()>("set_count", &100_u64).await?;
        plugin
            .reload_from_bytes_async(&std::fs::read(SDK_TEST_B)?)
            .await?;
        let next = || {
            let events = events.clone();
            tokio::task::spawn_blocking(move || events.recv_timeout(Duration::from_secs(60)))
        };
        match next().await?? {
            ReloadEvent::Reloaded {
                version: 2,
                tier: Tier::Baseline,
                state_handed_over: true,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        // Whichever tier answers, the state went along.
        assert_eq!(plugin.call_async::<_, u64>("count", &()).await?, 101);
        match next().await?? {
            ReloadEvent::Optimized {
                version: 3,
                previous: 2,
                state_handed_over: true,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!((plugin.version(), plugin.tier()), (3, Tier::Optimized));
        assert_eq!(plugin.call_async::<_, u64>("count", &()).await?, 102);
        assert_eq!(plugin.call_async::<_, String>("variant", &()).await?, "b");
        Ok(())
    })
}

/// A plain module whose `sleep` asks WASI's `poll_oneoff` for a minute on the monotonic clock.
const SLEEPER: &str = r#"(module
    (import "wasi_snapshot_preview1" "poll_oneoff"
        (func $poll (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "sleep")
        (i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24) (i64.const 60000000000))
        (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#;

#[test]
fn a_wasi_sleep_suspends_the_guest_and_ends_at_the_timeout() -> anyhow::Result<()> {
    current_thread().block_on(async {
        let host = host(|config| config.defaults.timeout_ms = Some(300));
        let plugin = host.load_bytes_async("sleeper", SLEEPER.as_bytes()).await?;
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let started = Instant::now();
        let result = plugin
            .call_bytes_async("sleep", dlinkwm_host::Format::Raw, &[])
            .await;
        let during = ticks.load(Ordering::SeqCst);
        ticker.abort();
        assert!(
            matches!(result, Err(Error::Plugin(CoreError::Timeout { .. }))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        // The sleep awaited a timer: the only thread kept running the ticker meanwhile.
        assert!(
            during >= 5,
            "the ticker ticked {during} times during the call"
        );
        Ok(())
    })
}

#[test]
fn the_queue_of_waiting_calls_is_bounded() -> anyhow::Result<()> {
    runtime(2).block_on(async {
        let gates = Arc::new(Gates::default());
        let host = host_with(
            |config| {
                config.defaults.max_instances = Some(1);
                config.defaults.max_queued_calls = Some(1);
                config.defaults.queue_timeout_ms = Some(60_000);
            },
            gates.clone(),
        );
        let plugin = host.load_async(SDK_TEST_A).await?;
        let held = tokio::spawn({
            let plugin = plugin.clone();
            async move {
                let call = HostCall {
                    method: "wait",
                    arg: "held",
                };
                plugin.call_async::<_, String>("call_host", &call).await
            }
        });
        gates.entered.notified().await;
        // Two more calls: the queue holds one, the other is refused at once.
        let add = |pair: (i64, i64)| {
            let plugin = plugin.clone();
            tokio::spawn(async move { plugin.call_async::<_, i64>("add", &pair).await })
        };
        let (first, second) = (add((1, 2)), add((3, 4)));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !first.is_finished() && !second.is_finished() {
            assert!(Instant::now() < deadline, "neither call was refused");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (refused, queued, queued_sum) = if first.is_finished() {
            (first.await?, second, 7)
        } else {
            (second.await?, first, 3)
        };
        let Err(Error::Plugin(CoreError::Busy { waited, .. })) = refused else {
            panic!("expected Busy, got {refused:?}");
        };
        // Refused at once, not after the 60 s queue deadline; the queued call still waits.
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert!(!queued.is_finished());
        gates.release.notify_one();
        assert_eq!(held.await??, "released held");
        assert_eq!(queued.await??, queued_sum);
        Ok(())
    })
}

#[test]
fn reloads_and_rollbacks_from_async_code_never_block_the_executor() -> anyhow::Result<()> {
    current_thread().block_on(async {
        let host = host(|_| {});
        let b = std::fs::read(SDK_TEST_B)?;
        // An async plugin: the sync reload is refused inside a runtime, the async one works.
        let plugin = host.load_async(SDK_TEST_A).await?;
        let refused = plugin.reload_from_bytes(&b);
        assert!(
            matches!(refused, Err(Error::Plugin(CoreError::WrongCallMode { .. }))),
            "{refused:?}"
        );
        plugin.reload_from_bytes_async(&b).await?;
        assert_eq!(plugin.call_async::<_, String>("variant", &()).await?, "b");
        assert_eq!(plugin.rollback_async().await?, 1);
        assert_eq!(plugin.call_async::<_, String>("variant", &()).await?, "a");
        // A sync plugin reloaded from async code: its compile and instantiation run on the
        // blocking threads (the only executor thread here keeps running).
        let sync = host.load(SDK_TEST_A)?;
        sync.reload_from_bytes_async(&b).await?;
        assert_eq!(sync.call::<_, String>("variant", &())?, "b");
        Ok(())
    })
}

/// What a call observer saw: entry, version, whether it succeeded.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<(String, u64, bool)>>);

impl dlinkwm_host::CallObserver for Seen {
    fn call_finished(&self, call: &dlinkwm_host::CallRecord<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((call.entry.to_owned(), call.version, call.outcome.is_ok()));
    }
}

#[test]
fn a_call_observer_sees_every_sync_and_async_call() -> anyhow::Result<()> {
    let seen = Arc::new(Seen::default());
    let host = PluginHost::builder()
        .host_methods(crate::methods())
        .observer(seen.clone())
        .build()?;
    let sync = host.load(SDK_TEST_A)?;
    assert_eq!(sync.call::<_, i64>("add", &(1_i64, 2_i64))?, 3);
    assert!(sync.call::<_, ()>("nope", &()).is_err());
    runtime(1).block_on(async {
        let plugin = host.load_async(SDK_TEST_A).await?;
        assert_eq!(
            plugin.call_async::<_, i64>("add", &(2_i64, 2_i64)).await?,
            4
        );
        anyhow::Ok(())
    })?;
    // A host without an observer reports nothing (and pays nothing).
    let quiet = PluginHost::builder().build()?.load(SDK_TEST_A)?;
    quiet.call::<_, i64>("add", &(0_i64, 0_i64))?;
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("add".to_owned(), 1, true),
            ("nope".to_owned(), 1, false),
            ("add".to_owned(), 1, true),
        ]
    );
    Ok(())
}

#[test]
fn the_queue_bound_holds_for_sync_callers_too() -> anyhow::Result<()> {
    let (entered, entered_rx) = std::sync::mpsc::channel::<()>();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let entered = std::sync::Mutex::new(entered);
    let mut methods = crate::methods();
    methods.register("block", move |_: String| {
        let _ = entered.lock().unwrap().send(());
        let _ = release_rx.lock().unwrap().recv_timeout(WAIT_LIMIT);
        Ok::<_, String>("released".to_owned())
    });
    let mut config = Config::default();
    config.defaults.max_instances = Some(1);
    config.defaults.max_queued_calls = Some(1);
    config.defaults.queue_timeout_ms = Some(60_000);
    let host = PluginHost::builder()
        .config(config)
        .host_methods(methods)
        .build()?;
    let plugin = host.load(SDK_TEST_A)?;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let held = scope.spawn(|| {
            let call = HostCall {
                method: "block",
                arg: "x",
            };
            plugin.call::<_, String>("call_host", &call)
        });
        entered_rx.recv_timeout(WAIT_LIMIT)?;
        // Two more sync callers: the queue holds one, the other is refused at once.
        let first = scope.spawn(|| plugin.call::<_, i64>("add", &(1_i64, 2_i64)));
        let second = scope.spawn(|| plugin.call::<_, i64>("add", &(3_i64, 4_i64)));
        let deadline = Instant::now() + WAIT_LIMIT;
        while !first.is_finished() && !second.is_finished() {
            assert!(Instant::now() < deadline, "neither call was refused");
            std::thread::yield_now();
        }
        let (refused, queued) = if first.is_finished() {
            (first.join().expect("no panic"), second)
        } else {
            (second.join().expect("no panic"), first)
        };
        assert!(
            matches!(refused, Err(Error::Plugin(CoreError::Busy { .. }))),
            "{refused:?}"
        );
        release.send(())?;
        assert_eq!(held.join().expect("no panic")?, "released");
        assert!(queued.join().expect("no panic").is_ok());
        Ok(())
    })
}

/// The longest a test waits for an event.
const WAIT_LIMIT: Duration = Duration::from_secs(60);
