//! `dlinkwm run`: the interactive prompt of the original DlinkWM examples.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use dlinkwm_host::{Format, PluginHost};

use crate::call::{HostArgs, print_output};
use crate::escape;
use crate::output;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plugin file (watched: each change is reloaded).
    #[arg(long)]
    wasm_path: PathBuf,
    #[command(flatten)]
    host: HostArgs,
}

const HELP: &str = "commands:
  call                  call the configured entries in order (the first that succeeds answers)
  call ENTRY [JSON]     call one entry, with optional JSON input
  entries               list the plugin's entries
  reload                re-read the plugin file now
  rollback              go back to the previous version
  last                  show the last result again
  help                  this text
  quit                  leave (Ctrl-D too)";

pub fn run(args: &RunArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let host: PluginHost = args.host.host(config)?;
    let spinner = crate::output::Spinner::start(format!("loading {}", args.wasm_path.display()));
    let plugin = host
        .load_watched(&args.wasm_path)
        .with_context(|| format!("cannot load `{}`", args.wasm_path.display()))?;
    drop(spinner);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "DlinkWM interactive prompt: {} (version {})",
        args.wasm_path.display(),
        plugin.version()
    )?;
    writeln!(out, "type `help` for commands")?;
    let mut last: Option<Vec<u8>> = None;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        write!(out, "> ")?;
        out.flush()?;
        let Some(line) = lines.next() else {
            writeln!(out)?;
            return Ok(());
        };
        let line = line?;
        let mut words = line.trim().splitn(3, char::is_whitespace);
        let result = match (words.next().unwrap_or(""), words.next(), words.next()) {
            ("", _, _) => continue,
            ("quit" | "exit", _, _) => return Ok(()),
            ("help", _, _) => {
                writeln!(out, "{HELP}")?;
                continue;
            }
            ("entries", _, _) => {
                for entry in plugin.entries() {
                    writeln!(
                        out,
                        "  {} ({:?})",
                        escape::guest_text(&entry.name),
                        entry.kind
                    )?;
                }
                continue;
            }
            ("last", _, _) => {
                match &last {
                    Some(output) => print_output(&mut out, output)?,
                    None => writeln!(out, "no result yet")?,
                }
                continue;
            }
            ("reload", _, _) => match plugin.reload() {
                Ok(outcome) => {
                    writeln!(out, "{outcome:?}; version {} answers", plugin.version())?;
                    Ok(None)
                }
                Err(error) => Err(anyhow::Error::from(error)),
            },
            ("rollback", _, _) => match plugin.rollback() {
                Ok(version) => {
                    writeln!(out, "version {version} answers")?;
                    Ok(None)
                }
                Err(error) => Err(anyhow::Error::from(error)),
            },
            ("call", None, _) => match plugin.call_configured(b"") {
                Ok((entry, output)) => {
                    writeln!(
                        out,
                        "called {} (version {})",
                        escape::guest_text(&entry),
                        plugin.version()
                    )?;
                    Ok(Some(output))
                }
                Err(error) => Err(error.into()),
            },
            ("call", Some(entry), input) => {
                let input = match input
                    .map(serde_json::from_str::<serde_json::Value>)
                    .transpose()
                {
                    Ok(value) => value
                        .map(|value| value.to_string().into_bytes())
                        .unwrap_or_default(),
                    Err(error) => {
                        writeln!(out, "error: the input is not valid JSON: {error}")?;
                        continue;
                    }
                };
                plugin
                    .call_bytes(entry, Format::Json, &input)
                    .map(Some)
                    .map_err(anyhow::Error::from)
            }
            (other, _, _) => {
                writeln!(
                    out,
                    "unknown command `{}`; type `help`",
                    escape::guest_text(other)
                )?;
                continue;
            }
        };
        match result {
            Ok(Some(output)) => {
                print_output(&mut out, &output)?;
                last = Some(output);
            }
            Ok(None) => {}
            Err(error) => writeln!(out, "error: {}", output::message(error.as_ref()))?,
        }
    }
}
