//! `dlinkwm config check`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use dlinkwm_host::{Config, DEFAULT_CONFIG_FILE};
use serde_json::json;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration (and DLINKWM_ overrides); a bad one names the key.
    ///
    /// Example: dlinkwm config check dlinkwm.toml
    Check {
        /// The file (default: --config, or ./dlinkwm.toml).
        path: Option<PathBuf>,
    },
}

pub fn run(args: &ConfigArgs, config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let ConfigCommand::Check { path } = &args.command;
    let path = path
        .as_deref()
        .or(config)
        .unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
    let mut out = std::io::stdout().lock();
    match Config::load(path) {
        Ok(config) => {
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"ok": true, "file": path.display().to_string(), "plugins": config.entry_functions.len() + config.plugins.len()})
                )?;
            } else {
                writeln!(
                    out,
                    "{}: ok ({} plugins with entry lists, {} with their own settings)",
                    path.display(),
                    config.entry_functions.len(),
                    config.plugins.len()
                )?;
            }
            Ok(())
        }
        Err(error) => {
            if json {
                // The exit code tells of the bad file even when no one reads stdout.
                let _ = writeln!(
                    out,
                    "{}",
                    json!({"ok": false, "file": path.display().to_string(), "key": error.key, "reason": error.reason})
                );
            }
            Err(error.into())
        }
    }
}
