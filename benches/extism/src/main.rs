//! Extism plugins called on DlinkWM and on Extism itself (1.30), in one run: the same `.wasm`
//! files (built with the Extism Rust PDK by `test-programs-artifacts`), the same inputs, each
//! call's output read in place. Prints nanoseconds per call and the ratio Extism / DlinkWM.
//!
//! `cargo xtask bench-extism` (release build; the first run compiles Extism's wasmtime).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dlinkwm_host::{Format, HostMethods, PluginHost};
use extism::{CurrentPlugin, Function, Manifest, PTR, UserData, Val, Wasm};
use test_programs_artifacts::EXTISM_A;

/// The median time of one call over seven rounds, each long enough (≥ 100 ms) to measure.
fn per_call(mut call: impl FnMut()) -> Duration {
    for _ in 0..1_000 {
        call();
    }
    let mut iterations: u32 = 1_000;
    loop {
        let started = Instant::now();
        for _ in 0..iterations {
            call();
        }
        if started.elapsed() >= Duration::from_millis(100) || iterations >= 1 << 24 {
            break;
        }
        iterations *= 2;
    }
    let mut rounds: Vec<Duration> = (0..7)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iterations {
                call();
            }
            started.elapsed() / iterations
        })
        .collect();
    rounds.sort();
    rounds[3]
}

fn hello_world(
    plugin: &mut CurrentPlugin,
    inputs: &[Val],
    outputs: &mut [Val],
    _: UserData<()>,
) -> Result<(), extism::Error> {
    let name: String = plugin.memory_get_val(&inputs[0])?;
    let answer = format!("Hello, {name}!");
    let handle = plugin.memory_new(&answer)?;
    outputs[0] = plugin.memory_to_val(handle);
    Ok(())
}

/// The key-value store behind `kv_read` and `kv_write` (Extism's `count_vowels_kvstore`).
type Store = HashMap<String, u32>;

fn kv_read(
    plugin: &mut CurrentPlugin,
    inputs: &[Val],
    outputs: &mut [Val],
    store: UserData<Store>,
) -> Result<(), extism::Error> {
    let key: String = plugin.memory_get_val(&inputs[0])?;
    let store = store.get()?;
    let value = store.lock().unwrap().get(&key).copied().unwrap_or(0);
    let handle = plugin.memory_new(value)?;
    outputs[0] = plugin.memory_to_val(handle);
    Ok(())
}

fn kv_write(
    plugin: &mut CurrentPlugin,
    inputs: &[Val],
    _: &mut [Val],
    store: UserData<Store>,
) -> Result<(), extism::Error> {
    let key: String = plugin.memory_get_val(&inputs[0])?;
    let value: u32 = plugin.memory_get_val(&inputs[1])?;
    let store = store.get()?;
    store.lock().unwrap().insert(key, value);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut methods = HostMethods::new();
    methods.register("hello_world", |name: String| {
        Ok::<_, String>(format!("Hello, {name}!"))
    });
    let store: Arc<Mutex<Store>> = Arc::default();
    let read = store.clone();
    methods.register("kv_read", move |key: String| {
        Ok::<_, String>(read.lock().unwrap().get(&key).copied().unwrap_or(0))
    });
    let written = store.clone();
    methods.register("kv_write", move |(key, value): (String, u32)| {
        written.lock().unwrap().insert(key, value);
        Ok::<_, String>(())
    });
    let host = PluginHost::builder().host_methods(methods).build()?;
    let dlinkwm = host.load(EXTISM_A)?;
    let extism_store = UserData::new(Store::default());
    let functions = [
        Function::new("hello_world", [PTR], [PTR], UserData::new(()), hello_world),
        Function::new("kv_read", [PTR], [PTR], extism_store.clone(), kv_read),
        Function::new("kv_write", [PTR, PTR], [], extism_store, kv_write),
    ];
    let bytes = std::fs::read(EXTISM_A)?;
    let mut extism = extism::Plugin::new(Manifest::new([Wasm::data(bytes)]), functions, true)
        .context("Extism loads the plugin")?;

    let small = vec![b'x'; 64];
    let large = vec![b'x'; 64 << 10];
    let rows: [(&str, &str, &[u8]); 5] = [
        ("echo 64 B", "echo", &small),
        ("echo 64 KiB", "echo", &large),
        ("count_vowels \"Hello, world!\"", "count_vowels", b"Hello, world!"),
        ("greet (one host function call)", "greet", b"Ada"),
        ("count_vowels_kv (kv_read, kv_write)", "count_vowels_kv", b"Hello, world!"),
    ];
    println!("Extism plugin (extism-pdk 1.4.1), one process, median of 7 rounds");
    println!("{:<34} {:>12} {:>12} {:>16}", "call", "DlinkWM", "Extism 1.30", "Extism / DlinkWM");
    for (label, entry, input) in rows {
        // Both answer the same before they are timed.
        let ours = dlinkwm.call_bytes(entry, Format::Raw, input)?;
        let theirs: Vec<u8> = extism.call::<&[u8], &[u8]>(entry, input)?.to_vec();
        if entry != "count_vowels" {
            anyhow::ensure!(ours == theirs, "{entry}: the two hosts answer differently");
        }
        let on_dlinkwm = per_call(|| {
            let read = dlinkwm
                .call_metered(entry, Format::Raw, input, |output| black_box(output.len()))
                .expect("DlinkWM call");
            black_box(read);
        });
        let on_extism = per_call(|| {
            let output = extism
                .call::<&[u8], &[u8]>(entry, input)
                .expect("Extism call");
            black_box(output.len());
        });
        println!(
            "{label:<34} {:>9} ns {:>9} ns {:>15.1}x",
            on_dlinkwm.as_nanos(),
            on_extism.as_nanos(),
            on_extism.as_secs_f64() / on_dlinkwm.as_secs_f64()
        );
    }
    Ok(())
}
