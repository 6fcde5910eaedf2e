//! DlinkWM against the same work hand-written on raw wasmtime, measured in one run.
//!
//! `cargo bench -p dlinkwm-host --bench calls` prints criterion's figures, then a table of
//! medians with the ratio DlinkWM / raw for each row. The guests are the same on both sides: a
//! minimal ABI module in WAT (so host overhead dominates) and the SDK test plugin for typed
//! struct calls.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dlinkwm_host::{Bytes, Config, Engine, EngineOptions, Format, HostMethods, PluginHost};
use serde::{Deserialize, Serialize};
use wasmtime::{Caller, Linker, Module, Store, TypedFunc};

/// A guest whose entries do almost nothing, so each row measures the host's overhead.
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
    (func (export "echo") (param i32 i32 i32) (result i32)
        (call $set_output (local.get 0) (local.get 1)) i32.const 0)
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

static SAMPLES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// Times `iterations` runs of `work` and records the per-iteration time under `name`.
fn timed(name: &str, iterations: u64, mut work: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..iterations {
        work();
    }
    let elapsed = started.elapsed();
    SAMPLES
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_default()
        .push(elapsed.as_nanos() as f64 / iterations as f64);
    elapsed
}

fn bench_pair(c: &mut Criterion, row: &str, mut dlinkwm: impl FnMut(), mut raw: impl FnMut()) {
    let mut group = c.benchmark_group(row);
    group.bench_function("dlinkwm", |b| {
        b.iter_custom(|n| timed(&format!("{row}|dlinkwm"), n, &mut dlinkwm))
    });
    group.bench_function("raw wasmtime", |b| {
        b.iter_custom(|n| timed(&format!("{row}|raw"), n, &mut raw))
    });
    group.finish();
}

/// The hand-written host: what an application would write on raw wasmtime for this ABI.
struct RawState {
    wasi: wasmtime_wasi::p1::WasiP1Ctx,
    memory: Option<wasmtime::Memory>,
    output: Vec<u8>,
    result: Vec<u8>,
}

/// The checked slice a hand-written host reads from guest memory.
fn guest_bytes(data: &[u8], ptr: i32, len: i32) -> wasmtime::Result<&[u8]> {
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    start
        .checked_add(len)
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| wasmtime::format_err!("out of bounds"))
}

fn raw_linker(engine: &wasmtime::Engine) -> Linker<RawState> {
    let mut linker: Linker<RawState> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut RawState| &mut state.wasi)
        .unwrap();
    linker
        .func_wrap(
            "dlinkwm",
            "set_output",
            |mut caller: Caller<'_, RawState>, ptr: i32, len: i32| {
                let memory = caller.data().memory.unwrap();
                let (data, state) = memory.data_and_store_mut(&mut caller);
                let bytes = guest_bytes(data, ptr, len)?;
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
            |mut caller: Caller<'_, RawState>,
             _name: i32,
             _name_len: i32,
             _format: i32,
             ptr: i32,
             len: i32| {
                let memory = caller.data().memory.unwrap();
                let (data, state) = memory.data_and_store_mut(&mut caller);
                let bytes = guest_bytes(data, ptr, len)?;
                state.result.clear();
                state.result.extend_from_slice(bytes);
                Ok(0)
            },
        )
        .unwrap();
    linker
        .func_wrap(
            "dlinkwm",
            "host_result_len",
            |caller: Caller<'_, RawState>| caller.data().result.len() as i32,
        )
        .unwrap();
    linker
        .func_wrap(
            "dlinkwm",
            "host_result_read",
            |mut caller: Caller<'_, RawState>, ptr: i32| {
                let memory = caller.data().memory.unwrap();
                let (data, state) = memory.data_and_store_mut(&mut caller);
                let start = ptr as u32 as usize;
                data.get_mut(start..start + state.result.len())
                    .ok_or_else(|| wasmtime::format_err!("out of bounds"))?
                    .copy_from_slice(&state.result);
                Ok(())
            },
        )
        .unwrap();
    linker
}

struct RawPlugin {
    store: Store<RawState>,
    alloc: TypedFunc<i32, i32>,
    entries: BTreeMap<&'static str, TypedFunc<(i32, i32, i32), i32>>,
    memory: wasmtime::Memory,
}

impl RawPlugin {
    fn new(engine: &wasmtime::Engine, module: &Module, entries: &[&'static str]) -> Self {
        let linker = raw_linker(engine);
        let pre = linker.instantiate_pre(module).unwrap();
        let mut store = raw_store(engine);
        let instance = pre.instantiate(&mut store).unwrap();
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ()).unwrap();
        }
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        store.data_mut().memory = Some(memory);
        let alloc = instance
            .get_typed_func(&mut store, "dlinkwm_alloc")
            .unwrap();
        let entries = entries
            .iter()
            .map(|name| (*name, instance.get_typed_func(&mut store, name).unwrap()))
            .collect();
        Self {
            store,
            alloc,
            entries,
            memory,
        }
    }

    /// alloc, write, call, read: the hand-written round trip. The ABI makes the entry the owner
    /// of its input buffer (the SDK's entries free it), so the host does not free it, on either
    /// side.
    fn round_trip<R>(
        &mut self,
        entry: &str,
        format: i32,
        input: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> R {
        // Borrowed, not cloned: a hand-written host keeps its `TypedFunc`s.
        let func = &self.entries[entry];
        let len = input.len() as i32;
        let ptr = if input.is_empty() {
            0
        } else {
            self.alloc.call(&mut self.store, len).unwrap()
        };
        self.memory.data_mut(&mut self.store)[ptr as usize..ptr as usize + input.len()]
            .copy_from_slice(input);
        let status = func.call(&mut self.store, (ptr, len, format)).unwrap();
        assert_eq!(status, 0);
        read(&self.store.data().output)
    }
}

fn bench(c: &mut Criterion) {
    let mut methods = HostMethods::new();
    methods.register_raw("ping", |input: &[u8], _| Ok::<_, String>(input.to_vec()));
    let mut config = Config::default();
    config.engine.cache = Some(false);
    let host = PluginHost::builder()
        .config(config)
        .host_methods(methods)
        .build()
        .unwrap();
    let guest = host.load_bytes("bench", BENCH_GUEST.as_bytes()).unwrap();
    let sdk = host.load(test_programs_artifacts::SDK_TEST_A).unwrap();
    let wasmtime_engine = host.engine().wasmtime().clone();
    let bench_module = Module::new(&wasmtime_engine, BENCH_GUEST).unwrap();
    let sdk_bytes = std::fs::read(test_programs_artifacts::SDK_TEST_A).unwrap();
    let sdk_module = Module::new(&wasmtime_engine, &sdk_bytes).unwrap();
    let mut raw = RawPlugin::new(&wasmtime_engine, &bench_module, &["noop", "echo", "ping"]);
    let mut raw_sdk = RawPlugin::new(&wasmtime_engine, &sdk_module, &["flip"]);

    // First, before criterion's statistics start their worker threads, which would compete for
    // this machine's cores.
    threads(&sdk);

    // No-arg entry: a call by name whose (empty) output is read in place, like the echo rows,
    // vs a raw TypedFunc::call. `call_bytes` (which also allocates the output `Vec`) is the
    // row after.
    let noop = raw.entries["noop"].clone();
    bench_pair(
        c,
        "no-arg entry call",
        || {
            guest
                .core()
                .call("noop", Format::Raw, &[], <[u8]>::is_empty)
                .map(|empty| assert!(empty))
                .unwrap()
        },
        || assert_eq!(noop.call(&mut raw.store, (0, 0, 0)).unwrap(), 0),
    );
    bench_pair(
        c,
        "no-arg call_bytes",
        || {
            guest
                .call_bytes("noop", Format::Raw, &[])
                .map(drop)
                .unwrap()
        },
        || assert_eq!(noop.call(&mut raw.store, (0, 0, 0)).unwrap(), 0),
    );

    for size in [64usize, 64 * 1024] {
        let input = vec![0x5au8; size];
        let row = if size == 64 {
            "echo 64 B".to_owned()
        } else {
            "echo 64 KiB".to_owned()
        };
        let raw = &mut raw;
        bench_pair(
            c,
            &row,
            || {
                assert_eq!(
                    guest
                        .core()
                        .call("echo", Format::Raw, &input, <[u8]>::len)
                        .unwrap(),
                    size
                )
            },
            || assert_eq!(raw.round_trip("echo", 0, &input, <[u8]>::len), size),
        );
    }

    for format in [Format::Postcard, Format::Json] {
        let row = format!("small struct ({})", format.name());
        let raw_sdk = &mut raw_sdk;
        let expected = Point {
            x: -4,
            y: 3,
            label: point().label,
        };
        bench_pair(
            c,
            &row,
            || {
                assert_eq!(
                    sdk.call_with::<_, Point>("flip", format, &point()).unwrap(),
                    expected
                )
            },
            || {
                let (input, decoded) = match format {
                    Format::Json => {
                        let input = serde_json::to_vec(&point()).unwrap();
                        (
                            input.clone(),
                            raw_sdk.round_trip("flip", 1, &input, |out| {
                                serde_json::from_slice::<Point>(out).unwrap()
                            }),
                        )
                    }
                    _ => {
                        let input = postcard::to_allocvec(&point()).unwrap();
                        (
                            input.clone(),
                            raw_sdk.round_trip("flip", 2, &input, |out| {
                                postcard::from_bytes::<Point>(out).unwrap()
                            }),
                        )
                    }
                };
                drop(input);
                assert_eq!(decoded, expected);
            },
        );
    }

    // What users call: the typed API on an SDK entry, against the same SDK entry called by hand
    // (postcard, the host's default format; `()` is no bytes either way).
    let raw_sdk_all =
        &mut RawPlugin::new(&wasmtime_engine, &sdk_module, &["noop", "echo", "echo_buf"]);
    bench_pair(
        c,
        "typed no-arg call",
        || sdk.call::<(), ()>("noop", &()).unwrap(),
        || {
            raw_sdk_all.round_trip("noop", 2, &[], |out| {
                postcard::from_bytes::<()>(out).unwrap()
            })
        },
    );
    // 64 KiB through a typed entry, beside the raw byte echo of the WAT guest with its output
    // copied out (what a caller needs to own the answer).
    let data = Bytes::from(vec![0x5au8; 64 * 1024]);
    let text = "z".repeat(64 * 1024);
    let sdk_raw = sdk.with_format(Format::Raw);
    bench_pair(
        c,
        "typed 64 KiB Bytes (postcard)",
        || {
            assert_eq!(
                sdk.call::<Bytes, Bytes>("echo_buf", &data).unwrap().len(),
                data.len()
            )
        },
        || {
            assert_eq!(
                raw.round_trip("echo", 0, &data, <[u8]>::to_vec).len(),
                data.len()
            )
        },
    );
    bench_pair(
        c,
        "typed 64 KiB String (raw)",
        || {
            assert_eq!(
                sdk_raw.call::<str, String>("echo", &text).unwrap().len(),
                text.len()
            )
        },
        || {
            let out = raw.round_trip("echo", 0, text.as_bytes(), <[u8]>::to_vec);
            assert_eq!(String::from_utf8(out).unwrap().len(), text.len())
        },
    );
    let vec = vec![0x5au8; 64 * 1024];
    bench_pair(
        c,
        "typed 64 KiB Vec<u8> (postcard)",
        || {
            assert_eq!(
                sdk.call::<Vec<u8>, Vec<u8>>("echo_bytes", &vec)
                    .unwrap()
                    .len(),
                vec.len()
            )
        },
        || {
            assert_eq!(
                raw.round_trip("echo", 0, &vec, <[u8]>::to_vec).len(),
                vec.len()
            )
        },
    );

    let input = [7u8; 16];
    bench_pair(
        c,
        "guest -> host method call",
        || {
            assert_eq!(
                guest
                    .core()
                    .call("ping", Format::Raw, &input, <[u8]>::len)
                    .unwrap(),
                16
            )
        },
        || assert_eq!(raw.round_trip("ping", 0, &input, <[u8]>::len), 16),
    );

    // Instantiation: a fresh instance for every call, vs InstancePre::instantiate + call.
    let mut fresh_config = Config::default();
    fresh_config.engine.cache = Some(false);
    fresh_config.defaults.reuse_instances = Some(false);
    let fresh_host = PluginHost::builder()
        .config(fresh_config)
        .engine(host.engine().clone())
        .build()
        .unwrap();
    let fresh = fresh_host
        .load_bytes("bench-fresh", BENCH_GUEST.as_bytes())
        .unwrap();
    let raw_pre = raw_linker(&wasmtime_engine)
        .instantiate_pre(&bench_module)
        .unwrap();
    bench_pair(
        c,
        "instantiate + no-arg call",
        || {
            fresh
                .call_bytes("noop", Format::Raw, &[])
                .map(drop)
                .unwrap()
        },
        || raw_fresh_call(&wasmtime_engine, &raw_pre),
    );

    // The same with the pooling allocator on both sides.
    let pooled_host = PluginHost::builder()
        .config(fresh_config_pooled())
        .engine(Engine::new(EngineOptions::default().with_pooling(true)).unwrap())
        .build()
        .unwrap();
    let pooled = pooled_host
        .load_bytes("bench-pooled", BENCH_GUEST.as_bytes())
        .unwrap();
    let pooled_engine = raw_pooling_engine();
    let pooled_module = Module::new(&pooled_engine, BENCH_GUEST).unwrap();
    let pooled_pre = raw_linker(&pooled_engine)
        .instantiate_pre(&pooled_module)
        .unwrap();
    bench_pair(
        c,
        "instantiate + no-arg call (pooling)",
        || {
            pooled
                .call_bytes("noop", Format::Raw, &[])
                .map(drop)
                .unwrap()
        },
        || raw_fresh_call(&pooled_engine, &pooled_pre),
    );

    // A new plugin of bytes whose compiled code the engine already holds (`sdk` keeps it alive),
    // ready to call, vs linking and instantiating the held module by hand.
    // The hand-written host builds its linker once, like DlinkWM's engine.
    let held_linker = raw_linker(&wasmtime_engine);
    bench_pair(
        c,
        "new plugin from a held module",
        || drop(host.load_bytes("again", &sdk_bytes).unwrap()),
        || {
            let pre = held_linker.instantiate_pre(&sdk_module).unwrap();
            let mut store = raw_store(&wasmtime_engine);
            let instance = pre.instantiate(&mut store).unwrap();
            if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
                init.call(&mut store, ()).unwrap();
            }
        },
    );
    assert_eq!(
        host.engine().compile_count(),
        2,
        "the loads reused the held module"
    );

    cold_load(c, &sdk_bytes);
    knobs(c);
    components(c);
    report();
}

/// A host configuration with a fresh instance for every call.
fn fresh_config_pooled() -> Config {
    let mut config = Config::default();
    config.engine.cache = Some(false);
    config.defaults.reuse_instances = Some(false);
    config
}

/// A raw engine with the pooling allocator, configured like DlinkWM's pooling engine.
fn raw_pooling_engine() -> wasmtime::Engine {
    let mut pooling = wasmtime::PoolingAllocationConfig::default();
    pooling.total_memories(256);
    pooling.total_tables(256);
    pooling.total_core_instances(256);
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
    wasmtime::Engine::new(&config).unwrap()
}

fn raw_store(engine: &wasmtime::Engine) -> Store<RawState> {
    let state = RawState {
        wasi: wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
        memory: None,
        output: Vec::new(),
        result: Vec::new(),
    };
    let mut store = Store::new(engine, state);
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

/// A fresh instance and one no-arg call, by hand.
fn raw_fresh_call(engine: &wasmtime::Engine, pre: &wasmtime::InstancePre<RawState>) {
    let mut store = raw_store(engine);
    let instance = pre.instantiate(&mut store).unwrap();
    let memory = instance.get_memory(&mut store, "memory");
    store.data_mut().memory = memory;
    let func = instance
        .get_typed_func::<(i32, i32, i32), i32>(&mut store, "noop")
        .unwrap();
    assert_eq!(func.call(&mut store, (0, 0, 0)).unwrap(), 0);
}

/// The `greet` example (JSON in, a host method call, JSON out) as a core module (C, Rust) and as
/// components (JavaScript on QuickJS, Python on CPython): the same behaviour through the same
/// API. The component rows include their language's interpreter, so they bound the component
/// boundary's cost from above rather than isolating it.
#[derive(Serialize, Deserialize)]
struct GreetParams {
    name: String,
}

fn components(c: &mut Criterion) {
    let mut methods = HostMethods::new();
    methods.register("custom_greet", |params: GreetParams| {
        Ok::<_, String>(format!("Hello, {}!", params.name))
    });
    let host = PluginHost::builder()
        .host_methods(methods)
        .format(Format::Json)
        .build()
        .unwrap();
    let params = GreetParams {
        name: "World".to_owned(),
    };
    let mut group = c.benchmark_group("greet, core module vs component");
    let mut plugins = vec![("Rust core module", test_programs_artifacts::HELLO)];
    for plugin in test_programs_languages::PLUGINS {
        let label = match plugin.language {
            "c" => "C core module",
            "javascript" => "JavaScript component",
            "python" => "Python component",
            _ => continue,
        };
        plugins.push((label, plugin.path));
    }
    for (label, path) in plugins {
        let plugin = host.load(path).unwrap();
        let name = format!("component|greet, {label}");
        group.bench_function(label, |b| {
            b.iter_custom(|n| {
                timed(&name, n, || {
                    let _: String = plugin.call("greet", &params).unwrap();
                })
            })
        });
    }
    group.finish();
}

/// What each knob costs: fuel metering, the pooling allocator, a fresh instance per call, and
/// epoch interruption (measured on raw wasmtime, with and without it, on a compute loop).
fn knobs(c: &mut Criterion) {
    let mut group = c.benchmark_group("knobs");
    let host_with = |toml: &str, options: EngineOptions| {
        let config = Config::from_toml(toml).unwrap();
        let engine = Engine::new(options).unwrap();
        let host = PluginHost::builder()
            .config(config)
            .engine(engine)
            .build()
            .unwrap();
        host.load_bytes("knob", BENCH_GUEST.as_bytes()).unwrap()
    };
    let fuel = host_with(
        "[defaults]\nfuel = 1000000000\n",
        EngineOptions::default().with_consume_fuel(true),
    );
    group.bench_function("no-arg call, fuel metered", |b| {
        b.iter_custom(|n| {
            timed("knob|no-arg call, fuel metered", n, || {
                fuel.call_bytes("noop", Format::Raw, &[]).map(drop).unwrap()
            })
        })
    });
    let fresh = host_with(
        "[defaults]\nreuse_instances = false\n",
        EngineOptions::default(),
    );
    group.bench_function("fresh instance per call (on-demand allocator)", |b| {
        b.iter_custom(|n| {
            timed(
                "knob|fresh instance per call, on-demand allocator",
                n,
                || {
                    fresh
                        .call_bytes("noop", Format::Raw, &[])
                        .map(drop)
                        .unwrap()
                },
            )
        })
    });
    let pooled = host_with(
        "[defaults]\nreuse_instances = false\n",
        EngineOptions::default().with_pooling(true),
    );
    group.bench_function("fresh instance per call (pooling allocator)", |b| {
        b.iter_custom(|n| {
            timed("knob|fresh instance per call, pooling allocator", n, || {
                pooled
                    .call_bytes("noop", Format::Raw, &[])
                    .map(drop)
                    .unwrap()
            })
        })
    });
    const LOOP: &str = r#"(module (func (export "count") (param $n i32) (result i32) (local $i i32)
        (loop $again (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (local.get $n)))) (local.get $i)))"#;
    for epoch in [false, true] {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(epoch);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let module = Module::new(&engine, LOOP).unwrap();
        let mut store = Store::new(&engine, ());
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let count = instance
            .get_typed_func::<i32, i32>(&mut store, "count")
            .unwrap();
        let name = format!(
            "knob|1e6-iteration loop, epoch interruption {}",
            if epoch { "on" } else { "off" }
        );
        group.bench_function(&name["knob|".len()..], |b| {
            b.iter_custom(|n| {
                timed(&name, n, || {
                    assert_eq!(count.call(&mut store, 1_000_000).unwrap(), 1_000_000)
                })
            })
        });
    }
    group.finish();
}

/// Loading an already-seen plugin in a new engine (disk cache) vs `Module::deserialize_file`
/// of the same compiled code; compiling a never-seen plugin (the disk cache and the function
/// cache on, in a new folder each time, as in a real host seeing it first) vs `Module::new`.
fn cold_load(c: &mut Criterion, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions::default().with_cache_dir(Some(dir.path().to_owned()));
    let path = dir.path().join("sdk_test.wasm");
    std::fs::write(&path, bytes).unwrap();
    let config = || {
        let mut config = Config::default();
        config.engine.cache = Some(true);
        config
    };
    let host_on = |engine: Engine| {
        PluginHost::builder()
            .config(config())
            .engine(engine)
            .build()
            .unwrap()
    };
    host_on(Engine::new(options.clone()).unwrap())
        .load(&path)
        .unwrap();
    let mut group = c.benchmark_group("cold load");
    group.sample_size(10);
    group.bench_function("dlinkwm (disk cache, new engine)", |b| {
        b.iter_custom(|n| {
            let hosts: Vec<PluginHost> = (0..n)
                .map(|_| host_on(Engine::new(options.clone()).unwrap()))
                .collect();
            let started = Instant::now();
            for host in &hosts {
                drop(host.load(&path).unwrap());
            }
            let elapsed = started.elapsed();
            for host in &hosts {
                assert_eq!(host.engine().compile_count(), 0);
            }
            record("cold load|dlinkwm", elapsed, n);
            elapsed
        })
    });
    // The raw twin's engine keeps no compiled functions: each `Module::new` compiles all.
    let engine = Engine::new(EngineOptions::default().with_incremental_cache_bytes(0)).unwrap();
    let serialized = dir.path().join("raw.cwasm");
    std::fs::write(
        &serialized,
        Module::new(engine.wasmtime(), bytes)
            .unwrap()
            .serialize()
            .unwrap(),
    )
    .unwrap();
    group.bench_function("raw (Module::deserialize_file)", |b| {
        b.iter_custom(|n| {
            timed("cold load|raw", n, || {
                // SAFETY: the file was written by `Module::serialize` just above.
                drop(unsafe { Module::deserialize_file(engine.wasmtime(), &serialized) }.unwrap())
            })
        })
    });
    group.bench_function("dlinkwm (compile a never-seen plugin)", |b| {
        b.iter_custom(|n| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..n {
                let cache = tempfile::tempdir().unwrap();
                let host = host_on(
                    Engine::new(
                        EngineOptions::default().with_cache_dir(Some(cache.path().to_owned())),
                    )
                    .unwrap(),
                );
                let started = Instant::now();
                let plugin = host.load(&path).unwrap();
                elapsed += started.elapsed();
                assert_eq!(host.engine().compile_count(), 1);
                drop(plugin);
            }
            record("compile|dlinkwm", elapsed, n);
            elapsed
        })
    });
    group.bench_function("raw (Module::new)", |b| {
        b.iter_custom(|n| {
            timed("compile|raw", n, || {
                drop(Module::new(engine.wasmtime(), bytes).unwrap())
            })
        })
    });
    group.finish();
}

fn record(name: &str, elapsed: Duration, iterations: u64) {
    SAMPLES
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_default()
        .push(elapsed.as_nanos() as f64 / iterations as f64);
}

/// Calls per second on one plugin with one and with two threads.
fn threads(plugin: &dlinkwm_host::Plugin) {
    // Enough calls that each run lasts a few hundred milliseconds: thread start-up and the
    // scheduler's noise stay small beside it.
    const CALLS: usize = 2_000_000;
    let run = |threads: usize| -> f64 {
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..CALLS / threads {
                        plugin.call_bytes("noop", Format::Raw, &[]).unwrap();
                    }
                });
            }
        });
        CALLS as f64 / started.elapsed().as_secs_f64()
    };
    run(2);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        one.push(run(1));
        two.push(run(2));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (one, two) = (median(one), median(two));
    let mut samples = SAMPLES.lock().unwrap();
    samples.insert("calls/s, 1 thread|dlinkwm".into(), vec![one]);
    samples.insert("calls/s, 2 threads|dlinkwm".into(), vec![two]);
}

fn report() {
    let samples = SAMPLES.lock().unwrap();
    let median = |name: &str| -> Option<f64> {
        let mut values = samples.get(name)?.clone();
        values.sort_by(f64::total_cmp);
        Some(values[values.len() / 2])
    };
    println!();
    println!(
        "{:<36} {:>14} {:>14} {:>8}  target",
        "row", "dlinkwm", "raw wasmtime", "ratio"
    );
    let rows = [
        ("typed no-arg call", "<= 2.0"),
        ("no-arg entry call", "<= 2.0"),
        ("no-arg call_bytes", ""),
        ("echo 64 B", "<= 1.3"),
        ("echo 64 KiB", "<= 1.1"),
        ("small struct (postcard)", "<= 1.2"),
        ("small struct (json)", "<= 1.2"),
        ("typed 64 KiB Bytes (postcard)", "<= 1.2"),
        ("typed 64 KiB String (raw)", ""),
        ("typed 64 KiB Vec<u8> (postcard)", ""),
        ("guest -> host method call", ""),
        ("instantiate + no-arg call", "<= 1.5"),
        ("instantiate + no-arg call (pooling)", "<= 1.3"),
        ("new plugin from a held module", "<= 2.0"),
        ("cold load", "<= 2.0"),
        ("compile", "<= 1.1"),
    ];
    for (row, target) in rows {
        if let (Some(ours), Some(raw)) = (
            median(&format!("{row}|dlinkwm")),
            median(&format!("{row}|raw")),
        ) {
            println!(
                "{row:<36} {:>11.0} ns {:>11.0} ns {:>8.3}  {target}",
                ours,
                raw,
                ours / raw
            );
        }
    }
    if let (Some(one), Some(two)) = (
        median("calls/s, 1 thread|dlinkwm"),
        median("calls/s, 2 threads|dlinkwm"),
    ) {
        println!(
            "{:<32} {:>11.0}/s {:>11.0}/s {:>8.2}  >= 1.5 (2 threads / 1)",
            "calls/s 1 vs 2 threads",
            one,
            two,
            two / one
        );
    }
    if let Some(core) = median("component|greet, C core module") {
        println!();
        println!("greet (JSON, one host call) per language, ratio to the C core module:");
        for (name, values) in samples
            .iter()
            .filter(|(name, _)| name.starts_with("component|"))
        {
            let mut values = values.clone();
            values.sort_by(f64::total_cmp);
            let value = values[values.len() / 2];
            println!(
                "  {:<40} {:>12.0} ns {:>8.2}",
                &name["component|".len()..],
                value,
                value / core
            );
        }
    }
    println!();
    println!("knobs (median per iteration):");
    for (name, values) in samples.iter().filter(|(name, _)| name.starts_with("knob|")) {
        let mut values = values.clone();
        values.sort_by(f64::total_cmp);
        println!(
            "  {:<56} {:>12.0} ns",
            &name["knob|".len()..],
            values[values.len() / 2]
        );
    }
}

criterion_group! {
    name = calls;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(calls);
