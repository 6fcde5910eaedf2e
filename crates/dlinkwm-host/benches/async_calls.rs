//! Async calls against raw wasmtime's `call_async` and against DlinkWM's own sync calls, and the
//! throughput of concurrent calls whose host method awaits a timer, measured in one run.
//!
//! `cargo bench -p dlinkwm-host --bench async_calls` prints a table of medians (of 11 runs)
//! with the ratios. Every row runs on a tokio runtime; the raw side is what an application
//! would hand-write on wasmtime for the same guest work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dlinkwm_host::{Config, Format, HostMethods, Plugin, PluginHost};
use serde::{Deserialize, Serialize};
use wasmtime::{Caller, Linker, Module, Store, TypedFunc};

/// A guest whose entries do almost nothing: `noop`, and `ping`, which calls the host method
/// `ping` once.
const BENCH_GUEST: &str = r#"(module
    (import "dlinkwm" "set_output" (func $set_output (param i32 i32)))
    (import "dlinkwm" "host_call" (func $host_call (param i32 i32 i32 i32 i32) (result i32)))
    (import "dlinkwm" "host_result_len" (func $host_result_len (result i32)))
    (import "dlinkwm" "host_result_read" (func $host_result_read (param i32)))
    (memory (export "memory") 4)
    (data (i32.const 16) "ping")
    (func (export "dlinkwm_abi_version") (result i32) i32.const 1)
    (func (export "dlinkwm_alloc") (param i32) (result i32) i32.const 4096)
    (func (export "dlinkwm_free") (param i32 i32))
    (func (export "noop") (param i32 i32 i32) (result i32) i32.const 0)
    (func (export "ping") (param i32 i32 i32) (result i32)
        (drop (call $host_call (i32.const 16) (i32.const 4) (i32.const 0) (local.get 0) (local.get 1)))
        (call $host_result_read (i32.const 131072))
        (call $set_output (i32.const 131072) (call $host_result_len))
        i32.const 0))"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i64,
    y: i64,
    label: String,
}

fn point() -> Point {
    Point {
        x: 3,
        y: -4,
        label: "a small struct".into(),
    }
}

fn flipped() -> Point {
    Point {
        x: -4,
        y: 3,
        label: "a small struct".into(),
    }
}

/// The median of 11 runs of `run`, each returning the time of `iterations` iterations, per
/// iteration in nanoseconds.
fn median_ns(iterations: u32, mut run: impl FnMut(u32) -> Duration) -> f64 {
    run(iterations / 10 + 1);
    let mut samples: Vec<f64> = (0..11)
        .map(|_| run(iterations).as_nanos() as f64 / f64::from(iterations))
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// What a hand-written host keeps per store.
struct RawState {
    wasi: wasmtime_wasi::p1::WasiP1Ctx,
    memory: Option<wasmtime::Memory>,
    output: Vec<u8>,
}

fn raw_linker(engine: &wasmtime::Engine) -> Linker<RawState> {
    let mut linker: Linker<RawState> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut RawState| &mut state.wasi)
        .unwrap();
    linker
        .func_wrap(
            "dlinkwm",
            "set_output",
            |mut caller: Caller<'_, RawState>, ptr: i32, len: i32| {
                let memory = caller.data().memory.unwrap();
                let (data, state) = memory.data_and_store_mut(&mut caller);
                let (start, len) = (ptr as u32 as usize, len as u32 as usize);
                let bytes = start
                    .checked_add(len)
                    .and_then(|end| data.get(start..end))
                    .ok_or_else(|| wasmtime::format_err!("out of bounds"))?;
                state.output.clear();
                state.output.extend_from_slice(bytes);
                Ok(())
            },
        )
        .unwrap();
    linker
        .func_wrap(
            "dlinkwm",
            "set_error",
            |_: Caller<'_, RawState>, _: i32, _: i32| {},
        )
        .unwrap();
    linker
        .func_wrap(
            "dlinkwm",
            "log",
            |_: Caller<'_, RawState>, _: i32, _: i32, _: i32| {},
        )
        .unwrap();
    linker
        .func_wrap(
            "dlinkwm",
            "host_call",
            |_: Caller<'_, RawState>, _: i32, _: i32, _: i32, _: i32, _: i32| 0,
        )
        .unwrap();
    linker
        .func_wrap("dlinkwm", "host_result_len", |_: Caller<'_, RawState>| 0)
        .unwrap();
    linker
        .func_wrap(
            "dlinkwm",
            "host_result_read",
            |_: Caller<'_, RawState>, _: i32| {},
        )
        .unwrap();
    linker
}

/// One raw store with the exports a row calls.
struct Raw {
    store: Store<RawState>,
    alloc: TypedFunc<i32, i32>,
    entry: TypedFunc<(i32, i32, i32), i32>,
    memory: wasmtime::Memory,
}

impl Raw {
    async fn new(engine: &wasmtime::Engine, module: &Module, entry: &str) -> Self {
        let state = RawState {
            wasi: wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
            memory: None,
            output: Vec::new(),
        };
        let mut store = Store::new(engine, state);
        // As DlinkWM's async calls do: yield to the executor at each epoch tick.
        store.epoch_deadline_async_yield_and_update(1);
        let instance = raw_linker(engine)
            .instantiate_async(&mut store, module)
            .await
            .unwrap();
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call_async(&mut store, ()).await.unwrap();
        }
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        store.data_mut().memory = Some(memory);
        let alloc = instance
            .get_typed_func(&mut store, "dlinkwm_alloc")
            .unwrap();
        let entry = instance.get_typed_func(&mut store, entry).unwrap();
        Self {
            store,
            alloc,
            entry,
            memory,
        }
    }

    /// alloc, write, call, read, awaited: the hand-written async round trip.
    async fn round_trip(&mut self, format: i32, input: &[u8]) -> &[u8] {
        let len = input.len() as i32;
        let ptr = if input.is_empty() {
            0
        } else {
            self.alloc.call_async(&mut self.store, len).await.unwrap()
        };
        self.memory.data_mut(&mut self.store)[ptr as usize..ptr as usize + input.len()]
            .copy_from_slice(input);
        let status = self
            .entry
            .call_async(&mut self.store, (ptr, len, format))
            .await
            .unwrap();
        assert_eq!(status, 0);
        &self.store.data().output
    }
}

fn print_row(row: &str, ours: f64, baseline: f64, baseline_name: &str, target: &str) {
    println!(
        "{row:<44} {ours:>10.0} ns  {baseline_name:<22} {baseline:>10.0} ns  {:>6.2}  {target}",
        ours / baseline
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = Config::default();
    config.engine.cache = Some(false);
    let host = PluginHost::builder().config(config).build().unwrap();
    let sdk_bytes = std::fs::read(test_programs_artifacts::SDK_TEST_A).unwrap();
    let (guest, sdk) = runtime.block_on(async {
        (
            host.load_bytes_async("bench", BENCH_GUEST.as_bytes())
                .await
                .unwrap(),
            host.load_bytes_async("sdk", &sdk_bytes).await.unwrap(),
        )
    });
    let sync_guest = host.load_bytes("bench", BENCH_GUEST.as_bytes()).unwrap();
    let sync_sdk = host.load_bytes("sdk", &sdk_bytes).unwrap();
    let engine = host.engine().wasmtime().clone();
    let bench_module = Module::new(&engine, BENCH_GUEST).unwrap();
    let sdk_module = Module::new(&engine, &sdk_bytes).unwrap();
    let (mut raw_noop, mut raw_flip) = runtime.block_on(async {
        (
            Raw::new(&engine, &bench_module, "noop").await,
            Raw::new(&engine, &sdk_module, "flip").await,
        )
    });

    println!();
    println!(
        "{:<44} {:>13}  {:<22} {:>13}  {:>6}  target",
        "row", "dlinkwm", "baseline", "", "ratio"
    );

    // No-arg entry, output read in place.
    let ours = median_ns(200_000, |n| {
        runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..n {
                let empty = guest
                    .call_metered_async("noop", Format::Raw, &[], <[u8]>::is_empty)
                    .await
                    .unwrap();
                assert!(empty.value);
            }
            started.elapsed()
        })
    });
    let raw = median_ns(200_000, |n| {
        runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..n {
                assert!(raw_noop.round_trip(0, &[]).await.is_empty());
            }
            started.elapsed()
        })
    });
    let sync = median_ns(200_000, |n| {
        let started = Instant::now();
        for _ in 0..n {
            let empty = sync_guest
                .call_metered("noop", Format::Raw, &[], <[u8]>::is_empty)
                .unwrap();
            assert!(empty.value);
        }
        started.elapsed()
    });
    print_row(
        "call_async, no-arg entry",
        ours,
        raw,
        "raw call_async",
        "<= 1.3",
    );
    print_row(
        "call_async, no-arg entry",
        ours,
        sync,
        "dlinkwm sync call",
        "",
    );

    // A small struct in JSON, host encode and decode included on both sides.
    let ours = median_ns(50_000, |n| {
        runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..n {
                let answer = sdk
                    .call_with_async::<_, Point>("flip", Format::Json, &point())
                    .await
                    .unwrap();
                assert_eq!(answer, flipped());
            }
            started.elapsed()
        })
    });
    let raw = median_ns(50_000, |n| {
        runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..n {
                let input = serde_json::to_vec(&point()).unwrap();
                let output = raw_flip.round_trip(1, &input).await;
                let answer: Point = serde_json::from_slice(output).unwrap();
                assert_eq!(answer, flipped());
            }
            started.elapsed()
        })
    });
    let sync = median_ns(50_000, |n| {
        let started = Instant::now();
        for _ in 0..n {
            let answer = sync_sdk
                .call_with::<_, Point>("flip", Format::Json, &point())
                .unwrap();
            assert_eq!(answer, flipped());
        }
        started.elapsed()
    });
    print_row(
        "call_async, small struct (json)",
        ours,
        raw,
        "raw call_async",
        "<= 1.3",
    );
    print_row(
        "call_async, small struct (json)",
        ours,
        sync,
        "dlinkwm sync call",
        "",
    );

    throughput();
}

/// Calls per second of `calls` calls, `concurrency` at a time, whose host method waits 1 ms:
/// async calls awaiting a tokio timer, and sync calls on `spawn_blocking` sleeping the thread
/// (the comparison a user of a sync plugin host would make).
fn throughput() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut methods = HostMethods::new();
    methods.register_raw_async("ping", |input: Vec<u8>, _| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok::<_, String>(input)
    });
    let mut sync_methods = HostMethods::new();
    sync_methods.register_raw("ping", |input: &[u8], _| {
        std::thread::sleep(Duration::from_millis(1));
        Ok::<_, String>(input.to_vec())
    });
    let mut config = Config::default();
    config.engine.cache = Some(false);
    config.defaults.max_instances = Some(256);
    let async_host = PluginHost::builder()
        .config(config.clone())
        .host_methods(methods)
        .build()
        .unwrap();
    let sync_host = PluginHost::builder()
        .config(config)
        .host_methods(sync_methods)
        .build()
        .unwrap();
    let plugin = runtime.block_on(async {
        async_host
            .load_bytes_async("ping", BENCH_GUEST.as_bytes())
            .await
            .unwrap()
    });
    let sync_plugin = Arc::new(
        sync_host
            .load_bytes("ping", BENCH_GUEST.as_bytes())
            .unwrap(),
    );

    println!();
    println!("calls/s of calls whose host method waits 1 ms (2 worker threads):");
    println!(
        "{:>12} {:>16} {:>28} {:>8}",
        "concurrent", "call_async", "sync call on spawn_blocking", "ratio"
    );
    for concurrency in [1usize, 16, 256] {
        let calls = (concurrency * 40).max(400);
        let rate = |work: &dyn Fn() -> Duration| {
            let mut rates: Vec<f64> = (0..5)
                .map(|_| calls as f64 / work().as_secs_f64())
                .collect();
            rates.sort_by(f64::total_cmp);
            rates[rates.len() / 2]
        };
        let ours = rate(&|| runtime.block_on(run_async(&plugin, concurrency, calls)));
        let blocking = rate(&|| runtime.block_on(run_blocking(&sync_plugin, concurrency, calls)));
        println!(
            "{concurrency:>12} {ours:>14.0}/s {blocking:>26.0}/s {:>8.2}",
            ours / blocking
        );
    }
}

async fn run_async(plugin: &Plugin, concurrency: usize, calls: usize) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let plugin = plugin.clone();
            tokio::spawn(async move {
                for _ in 0..calls / concurrency {
                    let answer = plugin
                        .call_bytes_async("ping", Format::Raw, b"x")
                        .await
                        .unwrap();
                    assert_eq!(answer, b"x");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

async fn run_blocking(plugin: &Arc<Plugin>, concurrency: usize, calls: usize) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let plugin = plugin.clone();
            tokio::spawn(async move {
                for _ in 0..calls / concurrency {
                    let plugin = plugin.clone();
                    let answer = tokio::task::spawn_blocking(move || {
                        plugin.call_bytes("ping", Format::Raw, b"x")
                    })
                    .await
                    .unwrap()
                    .unwrap();
                    assert_eq!(answer, b"x");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}
