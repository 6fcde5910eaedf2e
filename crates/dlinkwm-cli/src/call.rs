//! `dlinkwm call`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use dlinkwm_host::{Config, HostMethods, PluginHost, SerializationFormat, Stdio};

use crate::output::UsageError;

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The plugin file.
    plugin: PathBuf,
    /// The entry to call.
    entry: String,
    /// The input, as JSON (omit for entries without input).
    #[arg(long, value_name = "JSON")]
    input: Option<String>,
    /// Answer host method METHOD with a fixed JSON value, so the plugin can be tried without its
    /// application (repeatable): --mock custom_greet='"hello"'.
    #[arg(long, value_name = "METHOD=JSON")]
    mock: Vec<String>,
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
        methods.register_raw(
            method,
            move |_: &[u8], format: SerializationFormat| match format {
                SerializationFormat::Postcard => {
                    postcard::to_allocvec(&value).map_err(|error| error.to_string())
                }
                _ => serde_json::to_vec(&value).map_err(|error| error.to_string()),
            },
        );
    }
    Ok(methods)
}

pub fn run(args: &CallArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let input = args
        .input
        .as_deref()
        .map(|text| parse_json(text, "--input"))
        .transpose()?;
    let mut config = load_config(config)?;
    // Guest output goes through tracing to stderr, so stdout carries only the result.
    if config.defaults.stdio.is_none() {
        config.defaults.stdio = Some(Stdio::Log);
    }
    let host = PluginHost::builder()
        .config(config)
        .host_methods(mocks(&args.mock)?)
        .format(SerializationFormat::Json)
        .build()?;
    let plugin = host
        .load(&args.plugin)
        .with_context(|| format!("cannot load `{}`", args.plugin.display()))?;
    let bytes = match &input {
        Some(value) => serde_json::to_vec(value)?,
        None => Vec::new(),
    };
    let output = plugin.call_bytes(&args.entry, SerializationFormat::Json, &bytes)?;
    if output.is_empty() {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(&output) {
        Ok(value) => println!("{}", serde_json::to_string_pretty(&value)?),
        Err(_) => println!("{}", String::from_utf8_lossy(&output)),
    }
    Ok(())
}
