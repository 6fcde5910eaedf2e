//! Shared pieces of the example host applications.

use serde::{Deserialize, Serialize};

/// The parameters of the `greet` entry and of the `custom_greet` host method.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GreetParams {
    /// Who to greet.
    pub name: String,
}

/// The host method `custom_greet`, as the original DlinkWM README defines it.
pub fn custom_greet(params: GreetParams) -> Result<String, std::convert::Infallible> {
    Ok(format!("Hello from custom handler, {}!", params.name))
}

use std::io::{BufRead as _, Write as _};
use std::sync::Arc;

use dlink_wm::config::{DynamicConfig, create_default_config_if_missing};
use dlink_wm::wasm_manager::{WasmHotReloader, WasmInstanceCache, call_wasm_function};

/// Command-line arguments of the interactive examples.
#[derive(Debug, clap::Parser)]
pub struct ExampleArgs {
    /// The plugin to call.
    #[arg(long, default_value = "wasm/wasm_test.wasm")]
    pub wasm_path: String,
    /// The configuration file (created with the defaults when missing).
    #[arg(long, default_value = "dlinkwm.toml")]
    pub config: String,
}

/// What `call` does with the configured entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// Try them in order; stop at the first that succeeds (the configuration's fallback).
    FirstSuccess,
    /// Call each of them.
    Each,
}

/// The prompt of the original examples: `call` invokes the configured entry functions on the
/// latest version of the plugin; the configuration and the plugin file are watched; end of input
/// (or Ctrl-C) exits.
pub fn interactive(
    args: &ExampleArgs,
    cache: Arc<WasmInstanceCache>,
    mode: CallMode,
) -> anyhow::Result<()> {
    println!("Using configuration file: {}", args.config);
    if args.config == dlinkwm_host::DEFAULT_CONFIG_FILE {
        create_default_config_if_missing()?;
    } else {
        dlinkwm_host::create_default_config_if_missing(&args.config)?;
    }
    println!("✅ Default configuration created if missing");
    let mut config = DynamicConfig::new(&args.config)?;
    println!("✅ Dynamic configuration created");
    config.start_watching()?;
    println!("✅ Configuration watcher started");
    println!();
    println!("✅ WASM instance cache created");
    let reloader = WasmHotReloader::new(cache.clone(), config.clone());
    reloader.start_watching()?;
    println!("✅ Hot reload monitoring started");
    println!();

    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("Enter command: ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next() else {
            println!();
            return Ok(());
        };
        match line?.trim() {
            "" => continue,
            "call" => call(args, &cache, &config, mode),
            "exit" | "quit" => return Ok(()),
            other => println!("❓ Unknown command `{other}`: enter 'call', or Ctrl+C to exit"),
        }
        println!();
    }
}

fn call(args: &ExampleArgs, cache: &WasmInstanceCache, config: &DynamicConfig, mode: CallMode) {
    println!();
    println!("📞 Calling WASM methods with latest WASM file...");
    let Some(entries) = config.get_entry_functions(&args.wasm_path) else {
        println!(
            "❌ No entry functions configured for {} in {}",
            args.wasm_path, args.config
        );
        return;
    };
    println!("🔍 Trying entry functions from config: {entries:?}");
    println!("📞 Attempting to call WASM entry functions...");
    let mut succeeded = false;
    for entry in &entries {
        match call_wasm_function(&args.wasm_path, entry, cache, config) {
            Ok(()) => {
                println!();
                println!("✅ Successfully called {entry}");
                succeeded = true;
                if mode == CallMode::FirstSuccess {
                    return;
                }
            }
            Err(error) => println!("⚠️  {entry} failed: {error}"),
        }
    }
    if !succeeded {
        println!("❌ Every configured entry function failed");
    }
}
