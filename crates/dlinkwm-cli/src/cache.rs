//! `dlinkwm cache info|clear`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use dlinkwm_host::EngineOptions;
use dlinkwm_host::disk_cache::{cache_info, clear_cache};
use serde_json::json;

use crate::call::load_config;

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Where the compiled-code cache is and how much it holds.
    ///
    /// Example: dlinkwm cache info
    Info,
    /// Delete every cached compiled module.
    ///
    /// Example: dlinkwm cache clear
    Clear,
}

fn root(config: Option<&Path>) -> anyhow::Result<PathBuf> {
    let config = load_config(config)?;
    let options = EngineOptions::from_settings(&config.engine);
    options
        .cache_dir
        .ok_or_else(|| anyhow::anyhow!("the compiled-code cache is off ([engine] cache = false), or no cache directory is known"))
}

pub fn run(args: &CacheArgs, config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let root = root(config)?;
    let (verb, info) = match args.command {
        CacheCommand::Info => ("holds", cache_info(&root)),
        CacheCommand::Clear => ("cleared", clear_cache(&root)?),
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            json!({"dir": info.root.display().to_string(), "entries": info.entries, "bytes": info.bytes, "function_entries": info.function_entries, "function_bytes": info.function_bytes, "action": verb, "untrusted": info.untrusted})
        )?;
    } else {
        writeln!(
            out,
            "{} {verb} {} compiled modules, {:.1} MiB, and {} compiled functions, {:.1} MiB",
            info.root.display(),
            info.entries,
            info.bytes as f64 / 1048576.0,
            info.function_entries,
            info.function_bytes as f64 / 1048576.0
        )?;
    }
    if let Some(reason) = &info.untrusted {
        // A closed stderr leaves no one to warn.
        let _ = writeln!(
            std::io::stderr().lock(),
            "warning: the cache is not used: {} is {reason}; it must be a directory of your own \
             that nobody else can write (see docs/security.md)",
            info.root.display()
        );
    }
    Ok(())
}
