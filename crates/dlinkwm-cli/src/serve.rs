//! `dlinkwm serve`: a folder of plugins as HTTP services (the `dlinkwm-serve` library).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use dlinkwm_host::{PluginHost, Stdio};
use dlinkwm_serve::{ServeOptions, Server};

use crate::output::note;

/// The environment variable holding the admin routes' bearer token (not an argument: command
/// lines are visible to every user of the machine).
const TOKEN_VARIABLE: &str = "DLINKWM_ADMIN_TOKEN";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The folder of plugins: every `.wasm` file in it, served as /v1/plugins/{name}/{entry}
    /// (name: the file name without .wasm). New, replaced and removed files are picked up while
    /// serving.
    dir: PathBuf,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Also serve a plugin from an OCI registry as /v1/plugins/{NAME}/{entry}, following its
    /// tag (checked every `[registry] poll`, default 30 s; a new version is verified, smoke-tested
    /// and swapped in like a new file). Repeatable.
    #[arg(long = "plugin", value_name = "NAME=oci://REGISTRY/REPOSITORY:TAG")]
    plugins: Vec<String>,
    /// After SIGTERM or SIGINT, how long requests in flight may run before the process exits,
    /// in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    drain_secs: u64,
}

pub fn run(args: &ServeArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let mut config = crate::call::load_config(config)?;
    // A deploy serves Winch's code within a fraction of Cranelift's compile time, then
    // Cranelift's (`[engine] tiered = false` turns it off).
    config.engine.tiered.get_or_insert(true);
    if config.defaults.stdio.is_none() {
        config.defaults.stdio = Some(Stdio::Log);
    }
    let token = std::env::var(TOKEN_VARIABLE)
        .ok()
        .filter(|token| !token.is_empty());
    let admin = if token.is_some() {
        "on (bearer token from DLINKWM_ADMIN_TOKEN)"
    } else {
        "off (set DLINKWM_ADMIN_TOKEN to turn them on)"
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let host = PluginHost::builder().config(config).build()?;
        let options = ServeOptions::default().with_admin_token(token);
        let server = Server::from_directory(&host, &args.dir, options)
            .await
            .with_context(|| format!("cannot serve `{}`", args.dir.display()))?;
        let counted = server.host(&host);
        for spec in &args.plugins {
            let (name, reference) = spec.split_once('=').ok_or_else(|| {
                crate::output::UsageError(format!("--plugin `{spec}` is not NAME=oci://REFERENCE"))
            })?;
            let plugin = counted
                .load_async(reference)
                .await
                .with_context(|| format!("cannot load `{reference}`"))?;
            counted
                .watch(&plugin)
                .with_context(|| format!("cannot follow `{reference}`"))?;
            server.add_plugin(name, plugin)?;
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        note(format_args!(
            "serving {} plugin(s) from {} on http://{address} (admin routes {admin})",
            server.plugin_names().len(),
            args.dir.display(),
        ));
        let drain = Duration::from_secs(args.drain_secs);
        dlinkwm_serve::serve(listener, server.router(), shutdown_signal(), drain).await?;
        note(format_args!("stopped"));
        anyhow::Ok(())
    })
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
