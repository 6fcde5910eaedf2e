//! `dlinkwm watch`: call an entry on every successful reload.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use dlinkwm_host::{Plugin, PluginHost, ReloadEvent};

use crate::call::{HostArgs, print_output};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The plugin file to watch.
    plugin: PathBuf,
    /// The entry to call after each reload.
    entry: String,
    #[command(flatten)]
    host: HostArgs,
}

fn call_and_print(plugin: &Plugin, entry: &str, input: &[u8]) {
    let version = plugin.version();
    match plugin.call_bytes(entry, plugin.format(), input) {
        Ok(output) => {
            print!("version {version}: ");
            print_output(&output);
        }
        Err(error) => println!("version {version}: error: {error}"),
    }
}

pub fn run(args: &WatchArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let input = args.host.input_bytes()?;
    let host: PluginHost = args.host.host(config)?;
    let spinner = crate::output::Spinner::start(format!("loading {}", args.plugin.display()));
    let plugin = host
        .load_watched(&args.plugin)
        .with_context(|| format!("cannot load `{}`", args.plugin.display()))?;
    drop(spinner);
    let events = plugin.core().subscribe();
    eprintln!(
        "watching {} (Ctrl-C to stop); calling `{}` after each reload",
        args.plugin.display(),
        args.entry
    );
    call_and_print(&plugin, &args.entry, &input);
    for event in events {
        match event {
            ReloadEvent::Reloaded {
                version,
                hash,
                elapsed,
                ..
            } => {
                eprintln!(
                    "reloaded: version {version}, hash {}, in {elapsed:.1?}",
                    &hash.to_string()[..12]
                );
                call_and_print(&plugin, &args.entry, &input);
            }
            ReloadEvent::Failed { error, .. } => {
                eprintln!(
                    "reload failed, version {} keeps serving: {error}",
                    plugin.version()
                );
            }
            ReloadEvent::FileRemoved { path, .. } => {
                eprintln!(
                    "{} was removed; version {} keeps serving",
                    path.display(),
                    plugin.version()
                );
            }
            ReloadEvent::RolledBack { to, .. } => eprintln!("rolled back to version {to}"),
            _ => {}
        }
    }
    Ok(())
}
