//! `dlinkwm call`.

use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use dlinkwm_host::{Config, Format, HostMethods, PluginHost, Stdio};

use crate::escape;
use crate::output::UsageError;

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The plugin file.
    plugin: PathBuf,
    /// The entry to call.
    entry: String,
    #[command(flatten)]
    host: HostArgs,
}

/// What every command that runs a plugin takes: its input and the mocked host methods.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// The input, as JSON (omit for entries without input).
    #[arg(long, value_name = "JSON", conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the input from a file (`-` for stdin). Without --input or --input-file, input piped
    /// on stdin is used.
    #[arg(long, value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// How the input is sent and the output shown: json (pretty JSON out), postcard (JSON in,
    /// converted: structs as JSON arrays in field order, and integers travel unsigned unless
    /// negative, so entries taking signed integers want json; raw postcard bytes out) or raw
    /// (bytes in and out).
    #[arg(long, value_enum, default_value_t = CliFormat::Json)]
    format: CliFormat,
    /// Answer host method METHOD with a fixed JSON value, so the plugin can be tried without its
    /// application (repeatable): --mock custom_greet='"hello"'.
    #[arg(long, value_name = "METHOD=JSON")]
    mock: Vec<String>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CliFormat {
    /// JSON in, pretty JSON out.
    Json,
    /// JSON in (converted to postcard), raw postcard bytes out.
    Postcard,
    /// Bytes in, bytes out.
    Raw,
}

impl CliFormat {
    pub fn serialization(self) -> Format {
        match self {
            CliFormat::Json => Format::Json,
            CliFormat::Postcard => Format::Postcard,
            CliFormat::Raw => Format::Raw,
        }
    }
}

impl HostArgs {
    /// The input, encoded in `--format` (empty when there is none).
    pub fn input_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let (text, source): (Option<Vec<u8>>, String) = match (&self.input, &self.input_file) {
            (Some(text), _) => (Some(text.clone().into_bytes()), "--input".to_owned()),
            (None, Some(path)) if path.as_os_str() == "-" => {
                (Some(read_stdin()?), "stdin".to_owned())
            }
            (None, Some(path)) => (
                Some(std::fs::read(path).map_err(|error| {
                    UsageError(format!(
                        "cannot read --input-file `{}`: {error}",
                        path.display()
                    ))
                })?),
                format!("--input-file `{}`", path.display()),
            ),
            (None, None) if !std::io::stdin().is_terminal() => (
                Some(read_stdin()?).filter(|bytes| !bytes.is_empty()),
                "stdin".to_owned(),
            ),
            (None, None) => (None, String::new()),
        };
        let Some(bytes) = text else {
            return Ok(Vec::new());
        };
        match self.format {
            CliFormat::Raw => Ok(bytes),
            CliFormat::Json | CliFormat::Postcard => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| UsageError(format!("{source} is not UTF-8 JSON")))?;
                let value = parse_json(&text, &source)?;
                Ok(match self.format {
                    CliFormat::Postcard => postcard::to_allocvec(&value)?,
                    _ => serde_json::to_vec(&value)?,
                })
            }
        }
    }

    /// The format calls use.
    pub fn format(&self) -> Format {
        self.format.serialization()
    }

    /// A host with the configuration and the mocks, speaking JSON; guest output goes through
    /// tracing to stderr unless the configuration says otherwise.
    pub fn host(&self, config: Option<&Path>) -> anyhow::Result<PluginHost> {
        self.host_with(load_config(config)?)
    }

    /// [`HostArgs::host`] with tiered reloads on unless the configuration turns them off: what
    /// `dlinkwm watch` runs, where every save is a reload.
    pub fn tiered_host(&self, config: Option<&Path>) -> anyhow::Result<PluginHost> {
        let mut config = load_config(config)?;
        config.engine.tiered.get_or_insert(true);
        self.host_with(config)
    }

    fn host_with(&self, mut config: Config) -> anyhow::Result<PluginHost> {
        if config.defaults.stdio.is_none() {
            config.defaults.stdio = Some(Stdio::Log);
        }
        Ok(PluginHost::builder()
            .config(config)
            .host_methods(mocks(&self.mock)?)
            .format(self.format())
            .build()?)
    }
}

/// Prints an entry's JSON output pretty, or as (escaped) text when it is not JSON.
pub fn print_output(out: &mut impl Write, output: &[u8]) -> std::io::Result<()> {
    if output.is_empty() {
        return writeln!(out, "(no output)");
    }
    print_json_or_text(out, output)
}

/// Pretty JSON when `output` is JSON (serde_json escapes what strings hold); otherwise the text,
/// with the guest's control characters escaped.
fn print_json_or_text(out: &mut impl Write, output: &[u8]) -> std::io::Result<()> {
    match serde_json::from_slice::<serde_json::Value>(output) {
        Ok(value) => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ),
        Err(_) => writeln!(
            out,
            "{}",
            escape::guest_text(&String::from_utf8_lossy(output))
        ),
    }
}

/// Reads the configuration the user pointed at, or `./dlinkwm.toml` when it exists.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let default = Path::new(dlinkwm_host::DEFAULT_CONFIG_FILE);
    let config = match path {
        Some(path) => Config::load(path)?,
        None if default.exists() => Config::load(default)?,
        None => Config::from_toml_with_env("", None)?,
    };
    Ok(config)
}

fn parse_json(text: &str, what: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|error| UsageError(format!("{what} is not valid JSON: {error}")).into())
}

/// Registers one mock per `--mock METHOD=JSON`: it answers the value in whatever format the
/// plugin asked in.
pub fn mocks(specs: &[String]) -> anyhow::Result<HostMethods> {
    let mut methods = HostMethods::new();
    for spec in specs {
        let (method, json) = spec
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--mock `{spec}` is not METHOD=JSON")))?;
        let value = parse_json(json, &format!("the value of --mock {method}"))?;
        methods.register_raw(method, move |_: &[u8], format: Format| match format {
            Format::Postcard => postcard::to_allocvec(&value).map_err(|error| error.to_string()),
            _ => serde_json::to_vec(&value).map_err(|error| error.to_string()),
        });
    }
    Ok(methods)
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)?;
    Ok(bytes)
}

pub fn run(args: &CallArgs, config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let bytes = args.host.input_bytes()?;
    // Guest output goes through tracing to stderr, so stdout carries only the result.
    let host = args.host.host(config)?;
    let spinner = crate::output::Spinner::start(format!("loading {}", args.plugin.display()));
    let plugin = host
        .load(&args.plugin)
        .with_context(|| format!("cannot load `{}`", args.plugin.display()));
    drop(spinner);
    let plugin = plugin?;
    let format = args.host.format();
    let output = plugin.call_bytes(&args.entry, format, &bytes)?;
    let mut out = std::io::stdout().lock();
    if json {
        let result = match serde_json::from_slice::<serde_json::Value>(&output) {
            Ok(value) if format == Format::Json => value,
            _ if output.is_empty() => serde_json::Value::Null,
            _ => serde_json::Value::String(String::from_utf8_lossy(&output).into_owned()),
        };
        let report = serde_json::json!({
            "plugin": args.plugin.display().to_string(),
            "entry": args.entry,
            "version": plugin.version(),
            "result": result,
        });
        writeln!(out, "{report}")?;
    } else if format != Format::Json {
        // Bytes as they are for a pipe or a file; a terminal gets them as escaped text.
        if out.is_terminal() {
            write!(
                out,
                "{}",
                escape::guest_text(&String::from_utf8_lossy(&output))
            )?;
        } else {
            out.write_all(&output)?;
        }
    } else if !output.is_empty() {
        print_json_or_text(&mut out, &output)?;
    }
    out.flush()?;
    Ok(())
}
