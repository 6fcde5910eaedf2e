//! A plugin exercising every corner of the SDK and the ABI, for the host's tests.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

#[cfg(not(feature = "variant_b"))]
const VARIANT: &str = "a";
#[cfg(feature = "variant_b")]
const VARIANT: &str = "b";

/// Which build this is.
#[dlinkwm::entry]
fn variant() -> String {
    if cfg!(feature = "faulty") {
        panic!("this build of variant faults on every call");
    }
    VARIANT.to_owned()
}

#[cfg(feature = "needs")]
dlinkwm::needs!(
    host_method = ["custom_greet"],
    env = ["DLINKWM_TEST_NEED"],
    preopen = ["/needed"],
);

#[dlinkwm::entry]
fn noop() {}

#[dlinkwm::entry]
fn echo(text: String) -> String {
    text
}

#[dlinkwm::entry]
fn echo_bytes(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// Bytes that travel as bytes (a length and a copy in postcard, the bytes themselves in raw).
#[dlinkwm::entry]
fn echo_buf(bytes: dlinkwm::Bytes) -> dlinkwm::Bytes {
    bytes
}

#[derive(Debug, Serialize, Deserialize)]
struct Point {
    x: i64,
    y: i64,
    label: String,
}

/// A small struct round trip.
#[dlinkwm::entry]
fn flip(point: Point) -> Point {
    Point {
        x: point.y,
        y: point.x,
        label: point.label,
    }
}

#[dlinkwm::entry]
fn add(pair: (i64, i64)) -> i64 {
    pair.0 + pair.1
}

#[dlinkwm::entry]
fn fail(message: String) -> Result<(), String> {
    Err(message)
}

#[dlinkwm::entry]
fn panic_now(message: String) -> String {
    panic!("{message}")
}

#[derive(Deserialize)]
struct HostCall {
    method: String,
    arg: String,
}

/// Calls a host method and propagates its error as the entry's error.
#[dlinkwm::entry]
fn call_host(call: HostCall) -> Result<String, dlinkwm::Error> {
    let answer: String = dlinkwm::host::call(&call.method, &call.arg)?;
    Ok(answer)
}

/// Calls a host method and answers with what happened, error included, as a value.
#[dlinkwm::entry]
fn call_host_report(call: HostCall) -> String {
    match dlinkwm::host::call::<_, String>(&call.method, &call.arg) {
        Ok(answer) => format!("ok: {answer}"),
        Err(error) => format!("{:?}: {}", error.kind(), error.message()),
    }
}

/// Calls a host method in JSON.
#[dlinkwm::entry]
fn call_host_json(call: HostCall) -> Result<String, dlinkwm::Error> {
    dlinkwm::host::call_with(dlinkwm::Format::Json, &call.method, &call.arg)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Counts calls; the count survives a hot reload through the state hand-over.
#[dlinkwm::entry]
fn count() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed) + 1
}

fn save() -> u64 {
    COUNTER.load(Ordering::Relaxed)
}

fn restore(value: u64) -> Result<(), String> {
    if value == u64::MAX {
        return Err("refusing the poisoned counter value".to_owned());
    }
    COUNTER.store(value, Ordering::Relaxed);
    Ok(())
}

dlinkwm::state_handover!(save = save, restore = restore);

/// Sets the counter, e.g. to the value `restore` refuses.
#[dlinkwm::entry]
fn set_count(value: u64) {
    COUNTER.store(value, Ordering::Relaxed);
}

/// Never returns.
#[dlinkwm::entry]
fn spin() {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates `mib` MiB.
#[dlinkwm::entry]
fn grow(mib: u32) -> u64 {
    let block = vec![1u8; (mib as usize) << 20];
    black_box(&block).len() as u64
}

fn depth(n: u64) -> u64 {
    if n == 0 { 0 } else { black_box(depth(black_box(n - 1))) + 1 }
}

/// Recurses `n` deep.
#[dlinkwm::entry]
fn recurse(n: u64) -> u64 {
    depth(n)
}

/// Answers `len` bytes.
#[dlinkwm::entry]
fn output_of(len: u32) -> Vec<u8> {
    vec![7u8; len as usize]
}

#[dlinkwm::entry]
fn read_file(path: String) -> Result<String, String> {
    std::fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))
}

#[dlinkwm::entry]
fn write_file(path: String) -> Result<(), String> {
    std::fs::write(&path, b"written by a plugin").map_err(|error| format!("cannot write {path}: {error}"))
}

#[dlinkwm::entry]
fn read_env(name: String) -> Option<String> {
    std::env::var(name).ok()
}

/// Logs through the SDK and prints to stdout and stderr.
#[dlinkwm::entry]
fn chatter(n: u32) {
    for i in 0..n {
        dlinkwm::info!("log line {i}");
    }
    println!("stdout line");
    eprintln!("stderr line");
}

/// Calls host method `method` (which may block), then answers which build this is: shows which
/// version a call that was in flight during a swap finished on.
#[dlinkwm::entry]
fn variant_after_host(method: String) -> Result<String, dlinkwm::Error> {
    dlinkwm::host::call::<_, ()>(&method, &())?;
    Ok(VARIANT.to_owned())
}

/// The arguments the plugin sees (WASI `args_get`).
#[dlinkwm::entry]
fn args() -> Vec<String> {
    std::env::args().collect()
}
