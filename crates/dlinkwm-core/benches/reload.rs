//! Reload latency: from a new plugin file being renamed into place to the first call answered
//! by the new version, beside the compile time of that same module measured in the same run.
//!
//! `cargo bench -p dlinkwm-core --bench reload`
#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dlinkwm_core::{Engine, Format, Plugin, PluginOptions, PluginWatcher, ReloadEvent};
use test_programs_artifacts::{SDK_TEST_A, SDK_TEST_B, with_custom_section};

static COMPILES: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
static RELOADS: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

fn unique(module: &[u8], counter: &mut u64) -> Vec<u8> {
    *counter += 1;
    with_custom_section(module, &counter.to_le_bytes())
}

fn median(samples: &Mutex<Vec<Duration>>) -> Duration {
    let mut samples = samples.lock().unwrap().clone();
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn variant(plugin: &Plugin) -> String {
    plugin
        .call("variant", Format::Postcard, &[], |out| {
            postcard::from_bytes::<String>(out).unwrap()
        })
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let a = std::fs::read(SDK_TEST_A).unwrap();
    let b = std::fs::read(SDK_TEST_B).unwrap();
    let engine = Engine::new(Default::default()).unwrap();
    let mut counter = 0u64;

    c.bench_function("compile sdk_test (wasmtime Module::new)", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let bytes = unique(&a, &mut counter);
                let started = Instant::now();
                let module = wasmtime::Module::new(engine.wasmtime(), &bytes).unwrap();
                let elapsed = started.elapsed();
                drop(module);
                COMPILES.lock().unwrap().push(elapsed);
                total += elapsed;
            }
            total
        });
    });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugin.wasm");
    std::fs::write(&path, &a).unwrap();
    let plugin = Plugin::load(&engine, &path, PluginOptions::default()).unwrap();
    let watcher = PluginWatcher::new().unwrap();
    watcher.watch(&plugin).unwrap();
    let events = plugin.subscribe();
    let staging = dir.path().join("staging.wasm");
    let mut next_is_b = true;

    c.bench_function(
        "reload latency (rename -> first call on the new version)",
        |bencher| {
            bencher.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let (source, expected) = if next_is_b { (&b, "b") } else { (&a, "a") };
                    next_is_b = !next_is_b;
                    std::fs::write(&staging, unique(source, &mut counter)).unwrap();
                    let started = Instant::now();
                    std::fs::rename(&staging, &path).unwrap();
                    match events.recv_timeout(Duration::from_secs(60)).unwrap() {
                        ReloadEvent::Reloaded { .. } => {}
                        other => panic!("{other:?}"),
                    }
                    assert_eq!(variant(&plugin), expected);
                    let elapsed = started.elapsed();
                    RELOADS.lock().unwrap().push(elapsed);
                    total += elapsed;
                }
                total
            });
        },
    );

    let (compile, reload) = (median(&COMPILES), median(&RELOADS));
    let overhead = reload.saturating_sub(compile);
    println!();
    println!("reload summary (medians of this run):");
    println!("  compile of the same module: {compile:>10.2?}");
    println!("  reload latency:             {reload:>10.2?}");
    println!(
        "  latency - compile:          {overhead:>10.2?}  (target <= 60 ms: {})",
        if overhead <= Duration::from_millis(60) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  ratio latency / compile:    {:>10.2}",
        reload.as_secs_f64() / compile.as_secs_f64()
    );
    drop(watcher);
    let _ = Path::new(&path);
}

criterion_group! {
    name = reload;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(reload);
