//! `dlinkwm watch`: call an entry on every successful reload.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use dlinkwm_host::{Plugin, PluginHost, ReloadEvent, Tier};

use crate::call::{HostArgs, print_output};
use crate::output::{self, note};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The plugin file to watch.
    plugin: PathBuf,
    /// The entry to call after each reload.
    entry: String,
    #[command(flatten)]
    host: HostArgs,
}

/// Calls `entry` and prints what it answered; only a failed write to stdout is an error.
fn call_and_print(plugin: &Plugin, entry: &str, input: &[u8]) -> std::io::Result<()> {
    let version = plugin.version();
    let mut out = std::io::stdout().lock();
    match plugin.call_bytes(entry, plugin.format(), input) {
        Ok(output) => {
            write!(out, "version {version}: ")?;
            print_output(&mut out, &output)?;
        }
        Err(error) => writeln!(out, "version {version}: error: {}", output::message(&error))?,
    }
    out.flush()
}

pub fn run(args: &WatchArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let input = args.host.input_bytes()?;
    let host: PluginHost = args.host.tiered_host(config)?;
    let spinner = crate::output::Spinner::start(format!("loading {}", args.plugin.display()));
    let plugin = host
        .load_watched(&args.plugin)
        .with_context(|| format!("cannot load `{}`", args.plugin.display()))?;
    drop(spinner);
    let events = plugin.subscribe();
    note(format_args!(
        "watching {} (Ctrl-C to stop); calling `{}` after each reload",
        args.plugin.display(),
        args.entry
    ));
    call_and_print(&plugin, &args.entry, &input)?;
    for event in events {
        match event {
            ReloadEvent::Reloaded {
                version,
                hash,
                elapsed,
                tier,
                ..
            } => {
                let tier = match tier {
                    Tier::Baseline => " (Winch's code; Cranelift's follows)",
                    _ => "",
                };
                note(format_args!(
                    "reloaded: version {version}, hash {}, in {elapsed:.1?}{tier}",
                    &hash.to_string()[..12]
                ));
                call_and_print(&plugin, &args.entry, &input)?;
            }
            ReloadEvent::Optimized {
                version, elapsed, ..
            } => {
                note(format_args!(
                    "version {version}: the same plugin compiled by Cranelift, in {elapsed:.1?}"
                ));
            }
            ReloadEvent::OptimizeFailed { version, error, .. } => {
                note(format_args!(
                    "Cranelift's code did not replace version {version}'s (Winch's code serves on): {}",
                    output::message(&error)
                ));
            }
            ReloadEvent::Failed { error, .. } => {
                note(format_args!(
                    "reload failed, version {} keeps serving: {}",
                    plugin.version(),
                    output::message(&error)
                ));
            }
            ReloadEvent::FileRemoved { path, .. } => {
                note(format_args!(
                    "{} was removed; version {} keeps serving",
                    path.display(),
                    plugin.version()
                ));
            }
            ReloadEvent::RolledBack { to, reason, .. } => match reason {
                Some(reason) => note(format_args!(
                    "rolled back to version {to} by itself: {reason}"
                )),
                None => note(format_args!("rolled back to version {to}")),
            },
            _ => {}
        }
    }
    Ok(())
}
