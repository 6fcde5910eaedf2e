//! `dlinkwm`: initialise a configuration, call, watch and inspect plugins, and try them without
//! their application.

mod cache;
mod call;
mod config_cmd;
mod escape;
mod init;
mod inspect;
mod new;
mod output;
mod registry;
mod run;
mod serve;
mod watch;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

const EXIT_CODES: &str = "Exit codes:
  0  success
  1  the plugin could not be loaded, or returned an error; a bad configuration
  2  bad arguments or input
  3  the plugin trapped or panicked
  4  the plugin hit a limit (time, memory, fuel, input or output size)";

/// Load, call and hot-reload WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "dlinkwm", version, about, long_about = None, propagate_version = true, after_help = EXIT_CODES)]
struct Cli {
    /// The configuration file (default: ./dlinkwm.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Log level of DlinkWM itself: error, warn, info, debug or trace (guest output is always shown).
    #[arg(long, global = true, value_name = "LEVEL", default_value = "warn")]
    log_level: String,

    /// Raise the log level (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Machine-readable JSON output (call, inspect, config check, cache); JSON log lines (serve).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a commented default dlinkwm.toml.
    ///
    /// Example: dlinkwm init
    Init(init::InitArgs),
    /// Load a plugin, call one entry with JSON input, and print the result as JSON.
    ///
    /// Example: dlinkwm call wasm/hello.wasm greet --input '{"name":"World"}' --mock custom_greet='"hi"'
    Call(call::CallArgs),
    /// Watch a plugin file and call an entry after every reload; failed reloads are reported and
    /// the loaded version keeps serving.
    ///
    /// Example: dlinkwm watch wasm/hello.wasm greet --input '{"name":"World"}' --mock custom_greet='"hi"'
    Watch(watch::WatchArgs),
    /// The interactive prompt of the original DlinkWM examples: `call` runs the configured
    /// entries on the latest version; the plugin file is watched and reloaded.
    ///
    /// Example: dlinkwm run --wasm-path wasm/wasm_test.wasm --mock custom_greet='"hi"'
    Run(run::RunArgs),
    /// Show what a plugin is: kind, ABI version, exports (and which are entries), imports, WASI
    /// needs, size, content hash, whether its compiled code is cached.
    ///
    /// Example: dlinkwm inspect wasm/hello.wasm
    Inspect(inspect::InspectArgs),
    /// Create a plugin project (Rust, C, AssemblyScript, Zig, Go, Python or JavaScript) that
    /// builds with one command.
    ///
    /// Example: dlinkwm new my_plugin --lang zig
    New(new::NewArgs),
    /// Validate configuration files.
    ///
    /// Example: dlinkwm config check dlinkwm.toml
    Config(config_cmd::ConfigArgs),
    /// Inspect or clear the compiled-code cache.
    ///
    /// Example: dlinkwm cache info
    Cache(cache::CacheArgs),
    /// Serve a folder of plugins over HTTP: POST /v1/plugins/{plugin}/{entry}, hot-swapped when
    /// their files change, with /metrics, /healthz and /readyz.
    Serve(serve::ServeArgs),
    /// Push a plugin to an OCI registry (the wasm artifact layout: an `application/wasm` layer).
    /// Credentials: DLINKWM_REGISTRY_USERNAME and DLINKWM_REGISTRY_PASSWORD for the registry
    /// DLINKWM_REGISTRY_HOST names, else docker's.
    ///
    /// Example: dlinkwm push hello.wasm ghcr.io/acme/hello:1.2.0
    Push(registry::PushArgs),
    /// Pull a plugin from an OCI registry, its digests verified.
    ///
    /// Example: dlinkwm pull ghcr.io/acme/hello:1.2.0 -o plugins/hello.wasm
    Pull(registry::PullArgs),
    /// Point a tag at a version already in the registry (promote `candidate` to `stable`);
    /// hosts following the tag pick it up.
    ///
    /// Example: dlinkwm tag ghcr.io/acme/hello:candidate stable
    Tag(registry::TagArgs),
    /// Print shell completions.
    ///
    /// Example: dlinkwm completions bash > /etc/bash_completion.d/dlinkwm
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server's access log is its INFO lines: on by default for `serve`, in JSON with --json.
    let serving = matches!(cli.command, Command::Serve(_));
    let level = if serving && cli.log_level == "warn" {
        "info"
    } else {
        &cli.log_level
    };
    output::init_logging(level, cli.verbose, serving && cli.json);
    let config = cli.config.as_deref();
    let result = match &cli.command {
        Command::Init(args) => init::run(args, config),
        Command::Call(args) => call::run(args, config, cli.json),
        Command::Watch(args) => watch::run(args, config),
        Command::Run(args) => run::run(args, config),
        Command::Inspect(args) => inspect::run(args, config, cli.json),
        Command::New(args) => new::run(args),
        Command::Config(args) => config_cmd::run(args, config, cli.json),
        Command::Cache(args) => cache::run(args, config, cli.json),
        Command::Serve(args) => serve::run(args, config),
        Command::Push(args) => registry::push(args, config, cli.json),
        Command::Pull(args) => registry::pull(args, config, cli.json),
        Command::Tag(args) => registry::tag(args, config, cli.json),
        Command::Completions { shell } => completions(*shell),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if output::is_closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => output::report(&error),
    }
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    // Generated in memory: clap_complete panics when its writer fails (a closed stdout).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dlinkwm", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()?;
    Ok(())
}
