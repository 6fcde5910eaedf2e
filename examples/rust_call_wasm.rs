//! The original DlinkWM example "calling WASM from Rust": an interactive prompt whose `call`
//! invokes the configured entry functions (falling back to the next when one fails) on the latest
//! version of the plugin; the configuration and the plugin are hot-reloaded.
//!
//! ```text
//! cargo xtask build-plugins
//! cargo run --example rust_call_wasm -- --wasm-path wasm/wasm_test.wasm
//! ```

use std::sync::Arc;

use clap::Parser as _;
use dlink_wm::wasm_manager::WasmInstanceCache;
use dlinkwm_examples::{CallMode, ExampleArgs, interactive};

fn main() -> anyhow::Result<()> {
    let args = ExampleArgs::parse();
    println!("=== DlinkWM Interactive WASM Call Example ===");
    println!("WASM file path: {}", args.wasm_path);
    println!("Usage:");
    println!("  Enter 'call' to invoke WASM methods with the latest WASM file");
    println!("  Press Ctrl+C to exit the program");
    println!();
    let cache = Arc::new(WasmInstanceCache::new());
    interactive(&args, cache, CallMode::FirstSuccess)
}
