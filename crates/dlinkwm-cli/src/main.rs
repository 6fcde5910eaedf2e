//! `dlinkwm`: initialise a configuration, call plugins, and try them without their application.

mod call;
mod init;
mod output;
mod run;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load, call and hot-reload WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "dlinkwm", version, about, long_about = None, propagate_version = true)]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logging(&cli.log_level, cli.verbose);
    let result = match &cli.command {
        Command::Init(args) => init::run(args, cli.config.as_deref()),
        Command::Call(args) => call::run(args, cli.config.as_deref()),
        Command::Watch(args) => watch::run(args, cli.config.as_deref()),
        Command::Run(args) => run::run(args, cli.config.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => output::report(&error),
    }
}
