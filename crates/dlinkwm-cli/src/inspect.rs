//! `dlinkwm inspect`: what a plugin file is, exports, imports and needs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use dlinkwm_host::wasmtime::{ExternType, FuncType, Module};
use dlinkwm_host::{Config, PluginHost, PluginSettings, Stdio};
use dlinkwm_host::{ContentHash, Engine, EngineOptions, PluginError as CoreError, PluginKind};
use serde_json::json;

use crate::call::load_config;
use crate::escape;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The plugin file.
    plugin: PathBuf,
}

fn signature(ty: &FuncType) -> String {
    let list = |types: Vec<String>| types.join(", ");
    format!(
        "({}) -> ({})",
        list(ty.params().map(|t| t.to_string()).collect()),
        list(ty.results().map(|t| t.to_string()).collect())
    )
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(func) => format!("func {}", signature(func)),
        ExternType::Memory(memory) => format!("memory (min {} pages)", memory.minimum()),
        ExternType::Table(table) => format!("table (min {})", table.minimum()),
        ExternType::Global(global) => format!("global {}", global.content()),
        _ => "other".to_owned(),
    }
}

pub fn run(args: &InspectArgs, config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.plugin)
        .with_context(|| format!("cannot read `{}`", args.plugin.display()))?;
    let hash = ContentHash::of(&bytes);
    let is_component = dlinkwm_host::is_component(&bytes);
    let config: Config = load_config(config)?;
    let engine = Engine::new(EngineOptions::from_settings(&config.engine))?;
    let cached = engine.is_cached_on_disk(&bytes);
    // Loading runs guest code (`_initialize`, the ABI version, a component's `entries`) in the
    // sandbox, with no grants and no host methods: only the engine settings of the
    // configuration are used, none of its `[defaults]` or `[plugins]` grants.
    let sandbox = Config {
        engine: config.engine,
        defaults: PluginSettings {
            stdio: Some(Stdio::Null),
            host_methods: Some(Vec::new()),
            env: Some(Vec::new()),
            args: Some(Vec::new()),
            preopens: Some(Vec::new()),
            ..PluginSettings::default()
        },
        ..Config::default()
    };
    let host = PluginHost::builder()
        .config(sandbox)
        .engine(engine)
        .build()?;
    if is_component {
        let loaded = host.load(&args.plugin);
        let mut value = json!({
            "plugin": args.plugin.display().to_string(),
            "kind": "component (WIT world dlinkwm:plugin/plugin@0.1.0, WASI preview 2)",
            "size": bytes.len(),
            "content_hash": hash.to_string(),
            "cached": cached,
        });
        match loaded {
            Ok(plugin) => {
                value["abi_version"] = json!(dlinkwm_host::abi::ABI_VERSION);
                value["entries"] = json!(
                    plugin
                        .entries()
                        .into_iter()
                        .map(|entry| entry.name)
                        .collect::<Vec<_>>()
                );
            }
            Err(error) => value["load_error"] = json!(error.to_string()),
        }
        return print(&value, json);
    }
    let loaded = match host.load(&args.plugin) {
        // Bytes that do not compile have nothing more to show; the loader says why (in one line
        // for a file that is neither wasm nor WAT).
        Err(error)
            if matches!(
                error.as_plugin_error(),
                Some(CoreError::InvalidModule { .. })
            ) =>
        {
            return Err(error.into());
        }
        loaded => loaded,
    };
    let module = Module::new(host.engine().wasmtime(), &bytes).map_err(|error| {
        anyhow::anyhow!(
            "`{}` is not a valid wasm module: {error:#}",
            args.plugin.display()
        )
    })?;
    let entries: Vec<String> = loaded
        .as_ref()
        .map(|plugin| {
            plugin
                .entries()
                .into_iter()
                .map(|entry| entry.name)
                .collect()
        })
        .unwrap_or_default();
    let exports: Vec<serde_json::Value> = module
        .exports()
        .map(|export| {
            json!({
                "name": export.name(),
                "type": describe(&export.ty()),
                "entry": entries.iter().any(|entry| entry == export.name()),
            })
        })
        .collect();
    let mut imports: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for import in module.imports() {
        imports
            .entry(import.module().to_owned())
            .or_default()
            .push(format!("{}: {}", import.name(), describe(&import.ty())));
    }
    let wasi: Vec<String> = module
        .imports()
        .filter(|import| import.module() == "wasi_snapshot_preview1")
        .map(|import| import.name().to_owned())
        .collect();
    let (kind, abi, load_error) = match &loaded {
        Ok(plugin) => match plugin.kind() {
            PluginKind::Abi => (
                "module (DlinkWM ABI)",
                Some(dlinkwm_host::abi::ABI_VERSION),
                None,
            ),
            PluginKind::Extism => (
                "module (Extism plugin: its functions run on DlinkWM's Extism kernel)",
                None,
                None,
            ),
            _ => ("module (plain: () -> () exports are entries)", None, None),
        },
        Err(error) => ("module (does not load)", None, Some(error.to_string())),
    };
    let value = json!({
        "plugin": args.plugin.display().to_string(),
        "kind": kind,
        "abi_version": abi,
        "size": bytes.len(),
        "content_hash": hash.to_string(),
        "cached": cached,
        "entries": entries,
        "exports": exports,
        "imports": imports,
        "wasi": wasi,
        "load_error": load_error,
    });
    print(&value, json)
}

fn print(value: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
        return Ok(());
    }
    // Every string shown comes from the plugin file (names, types, load errors) or the user:
    // printed with control characters escaped.
    let show = |value: &serde_json::Value| match value.as_str() {
        Some(text) => escape::guest_text(text).into_owned(),
        None if value.is_null() => String::new(),
        None => value.to_string(),
    };
    writeln!(out, "plugin        {}", show(&value["plugin"]))?;
    writeln!(out, "kind          {}", show(&value["kind"]))?;
    if !value["abi_version"].is_null() {
        writeln!(out, "ABI version   {}", show(&value["abi_version"]))?;
    }
    writeln!(out, "size          {} bytes", show(&value["size"]))?;
    writeln!(out, "content hash  {}", show(&value["content_hash"]))?;
    writeln!(
        out,
        "disk cache    {}",
        if value["cached"] == true {
            "compiled code cached"
        } else {
            "not cached"
        }
    )?;
    if !value["load_error"].is_null() {
        writeln!(out, "load error    {}", show(&value["load_error"]))?;
    }
    if let Some(entries) = value["entries"].as_array() {
        let names: Vec<String> = entries.iter().map(show).collect();
        writeln!(out, "entries       {}", names.join(", "))?;
    }
    if let Some(exports) = value["exports"].as_array() {
        writeln!(out, "exports:")?;
        for export in exports {
            let marker = if export["entry"] == true {
                "  (entry)"
            } else {
                ""
            };
            writeln!(
                out,
                "  {:<28} {}{marker}",
                show(&export["name"]),
                show(&export["type"])
            )?;
        }
    }
    if let Some(imports) = value["imports"].as_object() {
        writeln!(out, "imports:")?;
        for (module, names) in imports {
            writeln!(out, "  {}", escape::guest_text(module))?;
            for name in names.as_array().into_iter().flatten() {
                writeln!(out, "    {}", show(name))?;
            }
        }
    }
    if !value["note"].is_null() {
        writeln!(out, "note          {}", show(&value["note"]))?;
    }
    Ok(())
}
