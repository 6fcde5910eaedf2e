//! A store's WASI context, built from a plugin's grants: stdio, environment variables,
//! arguments and preopened directories; never sockets or name lookup.

use std::sync::Arc;

use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::config::{ResolvedSettings, Stdio};
use crate::error::{Error, Result};
use crate::runtime::stdio::{LogBudget, LogStream, StreamKind};

/// The WASI context of a new store for plugin `name` with `settings`' grants, and its stdout
/// stream when `stdio = "log"` (which `host.dlinkwm_host_print` writes to as well).
pub(crate) fn build_wasi(
    name: &Arc<str>,
    settings: &ResolvedSettings,
    budget: &Arc<LogBudget>,
) -> Result<(WasiP1Ctx, Option<LogStream>)> {
    let mut builder = WasiCtxBuilder::new();
    // Never granted (docs/security.md): no sockets, no name lookup, for any plugin. wasmtime-wasi
    // 48 defaults to this already; said here so that no upgrade changes it silently.
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    let mut stdout = None;
    match settings.stdio {
        Stdio::Inherit => {
            builder.inherit_stdout().inherit_stderr();
        }
        Stdio::Log => {
            let out = LogStream::new(name.clone(), StreamKind::Stdout, budget.clone());
            builder.stdout(out.clone()).stderr(LogStream::new(
                name.clone(),
                StreamKind::Stderr,
                budget.clone(),
            ));
            stdout = Some(out);
        }
        Stdio::Null => {}
    }
    for variable in &settings.env {
        if let Ok(value) = std::env::var(variable) {
            builder.env(variable, value);
        }
    }
    let mut args = vec![name.to_string()];
    args.extend(settings.args.iter().cloned());
    builder.args(&args);
    for preopen in &settings.preopens {
        let perms = if preopen.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&preopen.host, &preopen.guest, perms)
            .map_err(|error| Error::Instantiate {
                plugin: name.to_string(),
                reason: format!(
                    "cannot preopen `{}` as `{}`: {error:#}",
                    preopen.host.display(),
                    preopen.guest
                ),
            })?;
    }
    Ok((builder.build_p1(), stdout))
}
