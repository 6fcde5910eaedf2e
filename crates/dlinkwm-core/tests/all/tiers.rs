//! Tiered reloads (`[engine] tiered`): Winch's code serves a reloaded version first, then
//! Cranelift's replaces it through the same validation and state hand-over as a reload.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use dlinkwm_core::{
    CallerInfo, Config, Engine, EngineOptions, Error, Format, HostCallError, HostCallHandler,
    Plugin, ReloadEvent, ResolvedSettings, Tier,
};
use test_programs_artifacts::{SDK_TEST_A, SDK_TEST_B};

use crate::{abi_module, call_postcard, options, options_with_host};

/// Generous: Cranelift compiles the test plugin in well under a second.
const WAIT: Duration = Duration::from_secs(60);

fn tiered_engine() -> Engine {
    Engine::new(EngineOptions::default().with_tiered(true)).expect("engine")
}

fn next_event(events: &Receiver<ReloadEvent>) -> ReloadEvent {
    events
        .recv_timeout(WAIT)
        .expect("a reload event within the wait")
}

fn variant(plugin: &Plugin) -> String {
    postcard::from_bytes(&call_postcard(plugin, "variant", &()).expect("variant answers"))
        .expect("a string")
}

fn count(plugin: &Plugin) -> u64 {
    postcard::from_bytes(&call_postcard(plugin, "count", &()).expect("count answers"))
        .expect("a number")
}

/// A host method `gate` that answers as the test says, once per call: the smoke call of every
/// new version goes through it, so the test decides when (and whether) each version passes.
struct Gate {
    entered: Sender<()>,
    verdicts: Mutex<Receiver<bool>>,
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
        let _ = self.entered.send(());
        let open = self
            .verdicts
            .lock()
            .unwrap()
            .recv_timeout(WAIT)
            .unwrap_or(false);
        if !open {
            return Err(HostCallError::Failed("the gate stays shut".into()));
        }
        if format == Format::Json {
            output.extend_from_slice(b"null");
        }
        Ok(())
    }
}

struct Gated {
    plugin: Plugin,
    entered: Receiver<()>,
    verdicts: Sender<bool>,
}

/// SDK_TEST_A on a tiered engine, every version smoke-called through the gate (the first
/// load's smoke call is let through).
fn gated() -> anyhow::Result<Gated> {
    let (entered_tx, entered) = crossbeam_channel::unbounded();
    let (verdicts, verdicts_rx) = crossbeam_channel::unbounded();
    let gate = Gate {
        entered: entered_tx,
        verdicts: Mutex::new(verdicts_rx),
    };
    let settings = Config::from_toml(
        "[plugins.\"plugin\"]\nmax_instances = 1\ntimeout_ms = 60000\n\
         smoke = { entry = \"variant_after_host\", input = '\"gate\"', format = \"json\" }\n",
    )?
    .settings_for("plugin");
    verdicts.send(true)?;
    let plugin = Plugin::from_bytes(
        &tiered_engine(),
        &std::fs::read(SDK_TEST_A)?,
        options_with_host(settings, gate),
    )?;
    entered.recv_timeout(WAIT)?;
    Ok(Gated {
        plugin,
        entered,
        verdicts,
    })
}

#[test]
fn a_tiered_reload_serves_winchs_code_then_cranelifts_with_the_state_handed_over()
-> anyhow::Result<()> {
    let Gated {
        plugin,
        entered,
        verdicts,
    } = gated()?;
    // A first load is compiled by Cranelift.
    assert_eq!(plugin.tier(), Tier::Optimized);
    assert_eq!((count(&plugin), count(&plugin), count(&plugin)), (1, 2, 3));
    let events = plugin.subscribe();

    // The reload serves Winch's code, validated (smoke call) and given the state.
    verdicts.send(true)?;
    plugin.reload_from_bytes(&std::fs::read(SDK_TEST_B)?)?;
    entered.recv_timeout(WAIT)?;
    match next_event(&events) {
        ReloadEvent::Reloaded {
            version: 2,
            previous: 1,
            tier: Tier::Baseline,
            state_handed_over: true,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    // Cranelift's version is held at its own smoke call, so Winch's answers now.
    entered.recv_timeout(WAIT)?;
    assert_eq!((plugin.version(), plugin.tier()), (2, Tier::Baseline));
    assert_eq!(variant(&plugin), "b");
    assert_eq!(count(&plugin), 4);

    // Let it through: it takes over with the first tier's state.
    verdicts.send(true)?;
    match next_event(&events) {
        ReloadEvent::Optimized {
            version: 3,
            previous: 2,
            state_handed_over: true,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!((plugin.version(), plugin.tier()), (3, Tier::Optimized));
    assert_eq!(variant(&plugin), "b");
    assert_eq!(count(&plugin), 5);

    // Bytes whose Cranelift code the engine holds (version 1, kept for rollback) are not tiered.
    verdicts.send(true)?;
    plugin.reload_from_bytes(&std::fs::read(SDK_TEST_A)?)?;
    entered.recv_timeout(WAIT)?;
    match next_event(&events) {
        ReloadEvent::Reloaded {
            version: 4,
            tier: Tier::Optimized,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (variant(&plugin), plugin.tier()),
        ("a".to_owned(), Tier::Optimized)
    );

    // The first tier is not a rollback target: a rollback goes to Cranelift's version.
    assert_eq!(plugin.kept_versions(), vec![1, 3]);
    assert_eq!(plugin.rollback()?, 3);
    assert_eq!(
        (variant(&plugin), plugin.tier()),
        ("b".to_owned(), Tier::Optimized)
    );
    assert!(matches!(
        next_event(&events),
        ReloadEvent::RolledBack { from: 4, to: 3, .. }
    ));
    assert!(events.try_recv().is_err(), "no second swap follows");
    Ok(())
}

#[test]
fn a_failed_second_tier_keeps_the_first_tier_serving() -> anyhow::Result<()> {
    let Gated {
        plugin,
        entered,
        verdicts,
    } = gated()?;
    let events = plugin.subscribe();
    verdicts.send(true)?;
    plugin.reload_from_bytes(&std::fs::read(SDK_TEST_B)?)?;
    entered.recv_timeout(WAIT)?;
    assert!(matches!(
        next_event(&events),
        ReloadEvent::Reloaded {
            version: 2,
            tier: Tier::Baseline,
            ..
        }
    ));
    // Cranelift's version fails its smoke call.
    entered.recv_timeout(WAIT)?;
    verdicts.send(false)?;
    match next_event(&events) {
        ReloadEvent::OptimizeFailed {
            version: 2,
            error: Error::SmokeFailed { .. },
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!((plugin.version(), plugin.tier()), (2, Tier::Baseline));
    assert_eq!(variant(&plugin), "b");
    assert_eq!(count(&plugin), 1);
    assert_eq!(count(&plugin), 2);
    Ok(())
}

#[test]
fn two_threads_calling_through_tiered_reloads_and_their_second_swaps_see_no_failure()
-> anyhow::Result<()> {
    let plugin = Plugin::from_bytes(
        &tiered_engine(),
        &std::fs::read(SDK_TEST_A)?,
        options(ResolvedSettings::default()),
    )?;
    let events = plugin.subscribe();
    let stop = Arc::new(AtomicBool::new(false));
    let baseline_calls = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (plugin, stop, baseline_calls) =
                (plugin.clone(), stop.clone(), baseline_calls.clone());
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let (mut calls, mut last_version) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let (version, tier) = (plugin.version(), plugin.tier());
                    anyhow::ensure!(
                        version >= last_version,
                        "version went back from {last_version} to {version}"
                    );
                    last_version = version;
                    let answer: String =
                        postcard::from_bytes(&call_postcard(&plugin, "variant", &())?)?;
                    anyhow::ensure!(answer == "a" || answer == "b", "answer {answer:?}");
                    if tier == Tier::Baseline {
                        baseline_calls.fetch_add(1, Ordering::Relaxed);
                    }
                    calls += 1;
                }
                Ok(calls)
            })
        })
        .collect();
    // Different bytes every round (a custom section), so each reload is compiled anew.
    let (a, b) = (std::fs::read(SDK_TEST_A)?, std::fs::read(SDK_TEST_B)?);
    for round in 0..6u64 {
        let mut bytes = if round % 2 == 0 { b.clone() } else { a.clone() };
        append_custom_section(&mut bytes, round);
        plugin.reload_from_bytes(&bytes)?;
        let (first, second) = (round * 2 + 2, round * 2 + 3);
        match next_event(&events) {
            ReloadEvent::Reloaded {
                version,
                tier: Tier::Baseline,
                ..
            } if version == first => {}
            other => panic!("round {round}: {other:?}"),
        }
        match next_event(&events) {
            ReloadEvent::Optimized {
                version, previous, ..
            } if version == second && previous == first => {}
            other => panic!("round {round}: {other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        assert!(caller.join().expect("no panic")? > 0);
    }
    assert_eq!((plugin.version(), plugin.tier()), (13, Tier::Optimized));
    eprintln!(
        "calls that started on a first-tier version: {}",
        baseline_calls.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Appends a custom section holding `tag`: other bytes, the same code.
fn append_custom_section(bytes: &mut Vec<u8>, tag: u64) {
    let name = b"dlinkwm-test";
    let payload = tag.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    bytes.push(0);
    bytes.push(u8::try_from(size).expect("small"));
    bytes.push(u8::try_from(name.len()).expect("small"));
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(&payload);
}

#[test]
fn a_module_winch_refuses_is_reloaded_with_cranelift_alone() -> anyhow::Result<()> {
    let plugin = Plugin::from_bytes(
        &tiered_engine(),
        abi_module(1, "i32.const 0", "").as_bytes(),
        options(ResolvedSettings::default()),
    )?;
    let events = plugin.subscribe();
    // Tail calls: Cranelift compiles them, Winch in wasmtime 48 does not.
    let tail_calls = abi_module(
        1,
        "i32.const 0",
        r#"(func $again (param i32) (result i32) local.get 0 return_call $done)
           (func $done (param i32) (result i32) local.get 0)
           (func (export "tail") (param i32 i32 i32) (result i32) i32.const 0 return_call $again)"#,
    );
    plugin.reload_from_bytes(tail_calls.as_bytes())?;
    assert!(matches!(
        next_event(&events),
        ReloadEvent::Reloaded {
            version: 2,
            tier: Tier::Optimized,
            ..
        }
    ));
    assert_eq!(plugin.tier(), Tier::Optimized);
    plugin.call("tail", Format::Raw, b"", |_| ())?;
    // Bytes that are no module are refused with Cranelift's message, and version 2 serves.
    let error = plugin
        .reload_from_bytes(b"\0asm\x01\0\0\0\x05junk")
        .unwrap_err();
    assert!(matches!(error, Error::InvalidModule { .. }), "{error:?}");
    assert_eq!(plugin.version(), 2);
    assert!(
        events
            .try_recv()
            .is_ok_and(|event| matches!(event, ReloadEvent::Failed { .. }))
    );
    Ok(())
}

#[test]
fn a_tiered_version_that_faults_rolls_back_with_its_second_tier() -> anyhow::Result<()> {
    let settings = Config::from_toml(
        "[plugins.\"plugin\"]\nrollback_on = { faults = 2, within = \"10m\" }\n",
    )?
    .settings_for("plugin");
    let plugin = Plugin::from_bytes(
        &tiered_engine(),
        &std::fs::read(SDK_TEST_A)?,
        options(settings),
    )?;
    let events = plugin.subscribe();
    plugin.reload_from_bytes(&std::fs::read(SDK_TEST_B)?)?;
    assert!(matches!(
        next_event(&events),
        ReloadEvent::Reloaded {
            version: 2,
            tier: Tier::Baseline,
            ..
        }
    ));
    // One fault (on the first tier unless Cranelift was quicker than this call)...
    assert!(call_postcard(&plugin, "panic_now", &"one").is_err());
    assert!(matches!(
        next_event(&events),
        ReloadEvent::Optimized { version: 3, .. }
    ));
    // ...and one on the second tier: the same probation, so the version rolls back.
    assert!(call_postcard(&plugin, "panic_now", &"two").is_err());
    match next_event(&events) {
        ReloadEvent::RolledBack {
            from: 3,
            to: 1,
            reason: Some(_),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(variant(&plugin), "a");
    Ok(())
}
