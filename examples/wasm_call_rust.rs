//! The original DlinkWM example "calling Rust from WASM": the application registers the host
//! method `custom_greet`, and the plugin calls it. `call` invokes each configured entry function
//! on the latest version of the plugin; the configuration and the plugin are hot-reloaded.
//!
//! ```text
//! cargo xtask build-plugins
//! cargo run --example wasm_call_rust -- --wasm-path wasm/wasm_test.wasm
//! ```

use std::sync::Arc;

use anyhow::anyhow;
use clap::Parser as _;
use dlink_wm::wasm_manager::WasmInstanceCache;
use dlinkwm_examples::{CallMode, ExampleArgs, GreetParams, interactive};
use dlinkwm_host::{Format, HostMethods};
use serde::Deserialize;

/// The original README's parameter wrapper for JSON host calls.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonParams<T> {
    Wrapped { data: T },
    Plain(T),
}

/// Custom greeting method handler: returns a string to the plugin (the original README's shape:
/// bytes and format in, bytes out).
fn custom_greet_handler(params_bytes: &[u8], format: Format) -> anyhow::Result<Vec<u8>> {
    match format {
        Format::Json => {
            let params: JsonParams<GreetParams> = serde_json::from_slice(params_bytes)?;
            let (JsonParams::Wrapped { data: params } | JsonParams::Plain(params)) = params;
            let result = format!("Hello from custom handler, {}!", params.name);
            Ok(serde_json::to_vec(&result)?)
        }
        _ => Err(anyhow!("Format not supported for custom_greet method")),
    }
}

fn main() -> anyhow::Result<()> {
    let args = ExampleArgs::parse();
    println!("=== DlinkWM Custom Host Methods Example ===");
    println!("WASM file path: {}", args.wasm_path);
    println!("Enable hot reload: true");
    println!("Usage:");
    println!("  Enter 'call' to invoke WASM methods with the latest WASM file");
    println!("  Press Ctrl+C to exit the program");
    println!();
    println!("🔧 Registering custom host methods...");
    let mut methods = HostMethods::new();
    methods.register_raw("custom_greet", |bytes: &[u8], format| {
        custom_greet_handler(bytes, format).map_err(|error| error.to_string())
    });
    println!("✅ Successfully registered 'custom_greet' method");
    println!();
    let cache = Arc::new(WasmInstanceCache::with_host_methods(methods)?);
    println!("🎉 Custom host methods registered and available for WASM to use");
    println!("💡 Available host methods:");
    println!("   - custom_greet: Greets a user and returns a string");
    println!("💡 Tip: Changes to WASM module will take effect automatically after rebuilding");
    println!("   Changes to configuration file will also be detected");
    println!();
    interactive(&args, cache, CallMode::Each)
}
