//! An Extism plugin built with the Extism Rust PDK (`extism-pdk`), nothing of DlinkWM in it:
//! count vowels (config and vars as in Extism's own example, and with a host key-value store as
//! in its `count_vowels_kvstore`), echo, host functions, an error,
//! logging, HTTP, a trap, an endless loop and a memory hog.

use extism_pdk::*;
use serde::Serialize;

const DEFAULT_VOWELS: &str = "aeiouAEIOU";

#[derive(Serialize)]
struct VowelReport {
    count: i32,
    total: i32,
    vowels: String,
}

/// Counts the vowels of the input (the vowels from config `vowels`), keeping a running total in
/// the var `total`.
#[plugin_fn]
pub fn count_vowels(input: String) -> FnResult<Json<VowelReport>> {
    let vowels = config::get("vowels")?.unwrap_or_else(|| DEFAULT_VOWELS.to_string());
    let count = input.chars().filter(|c| vowels.contains(*c)).count() as i32;
    let total = var::get::<i32>("total")?.unwrap_or(0) + count;
    var::set("total", total)?;
    Ok(Json(VowelReport {
        count,
        total,
        vowels,
    }))
}

/// The input, unchanged.
#[plugin_fn]
pub fn echo(input: Vec<u8>) -> FnResult<Vec<u8>> {
    Ok(input)
}

/// Which build this is.
#[plugin_fn]
pub fn variant() -> FnResult<String> {
    Ok(if cfg!(feature = "variant_b") { "b" } else { "a" }.to_string())
}

/// How many times `calls` ran on this instance (a var kept across calls and reloads).
#[plugin_fn]
pub fn calls() -> FnResult<String> {
    let calls = var::get::<String>("calls")?
        .and_then(|calls| calls.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    var::set("calls", calls.to_string())?;
    Ok(calls.to_string())
}

#[host_fn]
extern "ExtismHost" {
    fn hello_world(input: String) -> String;
    fn kv_read(key: String) -> u32;
    fn kv_write(key: String, value: u32);
}

/// Extism's own `count_vowels_kvstore` example: a running count of vowels kept in the host's
/// key-value store, through two host functions, one of two arguments, with the count passed as
/// Extism passes numbers (4 little-endian bytes).
#[plugin_fn]
pub fn count_vowels_kv(input: String) -> FnResult<String> {
    let count = input.chars().filter(|c| DEFAULT_VOWELS.contains(*c)).count() as u32;
    let total = unsafe { kv_read("count-vowels".to_string())? } + count;
    unsafe { kv_write("count-vowels".to_string(), total)? };
    Ok(total.to_string())
}

/// Asks the host function `hello_world`.
#[plugin_fn]
pub fn greet(name: String) -> FnResult<String> {
    let answer = unsafe { hello_world(name)? };
    Ok(format!("the host said: {answer}"))
}

/// Fails with a message (Extism's `error_set`).
#[plugin_fn]
pub fn fail(input: String) -> FnResult<()> {
    Err(Error::msg(format!("failed on purpose: {input}")).into())
}

/// Logs one line at each level.
#[plugin_fn]
pub fn log_lines(input: String) -> FnResult<()> {
    info!("info from the plugin: {input}");
    warn!("warn from the plugin: {input}");
    debug!("debug from the plugin: {input}");
    Ok(())
}

/// Fetches the URL it is given and answers the status and the body.
#[plugin_fn]
pub fn fetch(url: String) -> FnResult<String> {
    let request = HttpRequest::new(&url);
    let response = http::request::<()>(&request, None)?;
    let body = String::from_utf8_lossy(&response.body()).into_owned();
    Ok(format!("{} {}", response.status_code(), body))
}

/// Traps (a panic aborts in wasm).
#[plugin_fn]
pub fn trap() -> FnResult<()> {
    panic!("the plugin panicked on purpose")
}

/// Never returns.
#[plugin_fn]
pub fn spin() -> FnResult<()> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates the given number of MiB in its own memory.
#[plugin_fn]
pub fn hog(mib: String) -> FnResult<String> {
    let mib: usize = mib.trim().parse()?;
    let block = vec![1u8; mib << 20];
    Ok(std::hint::black_box(block).len().to_string())
}
