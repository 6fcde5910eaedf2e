//! `dlinkwm init`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use dlinkwm_host::{DEFAULT_CONFIG_FILE, DEFAULT_CONFIG_TOML};

use crate::output::UsageError;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the configuration (default: --config, or ./dlinkwm.toml).
    path: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &InitArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let path = args
        .path
        .as_deref()
        .or(config)
        .unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
    if path.exists() && !args.force {
        return Err(UsageError(format!(
            "`{}` already exists; use --force to overwrite it",
            path.display()
        ))
        .into());
    }
    std::fs::write(path, DEFAULT_CONFIG_TOML)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    writeln!(std::io::stdout().lock(), "wrote {}", path.display())?;
    Ok(())
}
