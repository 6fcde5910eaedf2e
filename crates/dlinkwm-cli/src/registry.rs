//! `dlinkwm push`, `pull` and `tag`: plugins in OCI registries (`dlinkwm_host::oci`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use dlinkwm_host::PluginHost;
use dlinkwm_host::oci::{PluginRef, Registry, block_on};

use crate::output::{UsageError, note};

/// What every registry command takes.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Reach the registry over plain HTTP (localhost always is; never use this across a network
    /// you do not trust).
    #[arg(long)]
    insecure: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The plugin file (a core module or a component).
    file: PathBuf,
    /// Where to: REGISTRY/REPOSITORY:TAG, with or without oci:// in front.
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// What: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST.
    reference: String,
    /// The file to write (default: the repository's last part, .wasm, in this folder). It is
    /// written whole and renamed into place, so a served folder never sees half a plugin.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The version to point the tag at: REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST.
    source: String,
    /// The tag to move, in the same repository (e.g. `stable`).
    tag: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

fn parse(reference: &str) -> anyhow::Result<PluginRef> {
    reference
        .parse()
        .map_err(|error: dlinkwm_host::oci::OciError| UsageError(error.to_string()).into())
}

/// The registry client of the configuration's `[registry]` table, with `--insecure` applied.
fn registry(
    config: Option<&Path>,
    args: &RegistryArgs,
    reference: &PluginRef,
) -> anyhow::Result<Registry> {
    let config = crate::call::load_config(config)?;
    let host = PluginHost::builder().config(config).build()?;
    let mut options = host.registry().options().clone();
    if args.insecure {
        options = options.with_insecure(reference.registry_host());
    }
    Ok(Registry::new(options))
}

pub fn push(args: &PushArgs, config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let reference = parse(&args.reference)?;
    let registry = registry(config, &args.registry, &reference)?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let pushed = block_on(registry.push(&bytes, &reference))
        .with_context(|| format!("cannot push `{}`", args.file.display()))?;
    report(
        json,
        "pushed",
        &reference,
        &pushed.manifest_digest,
        bytes.len(),
    )
}

pub fn pull(args: &PullArgs, config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let reference = parse(&args.reference)?;
    let registry = registry(config, &args.registry, &reference)?;
    // `pull` asks the registry: no fallback to the local store.
    let pulled = block_on(registry.pull(&reference))
        .with_context(|| format!("cannot pull `{reference}`"))?;
    let output = match &args.output {
        Some(output) => output.clone(),
        None => {
            let last = reference
                .repository()
                .rsplit('/')
                .next()
                .unwrap_or("plugin");
            PathBuf::from(format!("{last}.wasm"))
        }
    };
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in `{}`", dir.display()))?;
    file.write_all(&pulled.bytes)?;
    file.as_file().sync_all()?;
    // A plugin file others may read, like one `cp` would write (the temporary file is 0600).
    #[cfg(unix)]
    file.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    file.persist(&output)
        .with_context(|| format!("cannot write `{}`", output.display()))?;
    if !json {
        note(format_args!("wrote {}", output.display()));
    }
    report(
        json,
        "pulled",
        &reference,
        &pulled.manifest_digest,
        pulled.bytes.len(),
    )
}

pub fn tag(args: &TagArgs, config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let source = parse(&args.source)?;
    let registry = registry(config, &args.registry, &source)?;
    let target = source
        .with_tag(&args.tag)
        .map_err(|error| UsageError(error.to_string()))?;
    let digest = block_on(registry.tag(&source, &args.tag))
        .with_context(|| format!("cannot tag `{source}` as `{}`", args.tag))?;
    report(json, "tagged", &target, &digest, 0)
}

fn report(
    json: bool,
    what: &str,
    reference: &PluginRef,
    digest: &str,
    size: usize,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let mut report = serde_json::json!({
            "reference": reference.to_string(),
            "digest": digest,
        });
        if size > 0 {
            report["size"] = size.into();
        }
        writeln!(out, "{report}")?;
    } else {
        writeln!(out, "{what} {reference}@{digest}")?;
    }
    out.flush()?;
    Ok(())
}
