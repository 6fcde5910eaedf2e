//! Reload latency of the example plugins after a one-line source edit: file landed → first call
//! answered by the new version, with and without the function cache (Cranelift's incremental
//! compilation), and tiered (Winch's code first, then Cranelift's: also when Cranelift's
//! version serves), one plugin at a time. `cargo xtask bench-reload` builds the edited versions and
//! runs this.
//!
//! ```text
//! cargo run --example reload_latency -- NAME=OLD.wasm,NEW.wasm...
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dlinkwm_examples::{GreetParams, custom_greet};
use dlinkwm_host::{Config, Format, HostMethods, Plugin, PluginHost, ReloadEvent, Tier};

/// The longest any step may take.
const WAIT: Duration = Duration::from_secs(300);

struct Figures {
    first_compile: Duration,
    reload: Duration,
    /// Tiered: file landed → Cranelift's version serving.
    optimized: Option<Duration>,
    hits: u64,
    misses: u64,
    memory_bytes: u64,
}

fn main() -> anyhow::Result<()> {
    let pairs: Vec<(String, PathBuf, PathBuf)> = std::env::args()
        .skip(1)
        .map(|arg| {
            let (name, files) = arg.split_once('=').context("NAME=OLD,NEW")?;
            let (old, new) = files.split_once(',').context("NAME=OLD,NEW")?;
            Ok((name.to_owned(), old.into(), new.into()))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        !pairs.is_empty(),
        "usage: reload_latency NAME=OLD.wasm,NEW.wasm..."
    );
    println!(
        "| plugin | size | reload, whole compile | reload, function cache | reload, tiered (Winch) → Cranelift's serving | functions reused | compile never-seen: off / on | cache memory |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, old, new) in pairs {
        let size = std::fs::metadata(&new)?.len();
        let before =
            measure(&old, &new, false, false).with_context(|| format!("{name}, cache off"))?;
        let after =
            measure(&old, &new, true, false).with_context(|| format!("{name}, cache on"))?;
        let tiered = measure(&old, &new, true, true).with_context(|| format!("{name}, tiered"))?;
        let reused = after.hits as f64 / (after.hits + after.misses).max(1) as f64;
        let optimized = tiered.optimized.map_or_else(|| "not tiered".to_owned(), ms);
        println!(
            "| {name} | {:.1} MB | {} | {} | {} → {optimized} | {:.1} % ({} of {}) | {} / {} | {:.1} MB |",
            size as f64 / 1e6,
            ms(before.reload),
            ms(after.reload),
            ms(tiered.reload),
            reused * 100.0,
            after.hits,
            after.hits + after.misses,
            ms(before.first_compile),
            ms(after.first_compile),
            after.memory_bytes as f64 / 1e6,
        );
    }
    Ok(())
}

/// Loads `old` from a watched file, lands `new` over it by rename, and times the reload up to
/// the first call the new version answers. Each run has a cache folder of its own (a never-seen
/// plugin at first).
fn measure(old: &Path, new: &Path, function_cache: bool, tiered: bool) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let toml = format!(
        "[engine]\ncache_dir = {:?}\nincremental = {function_cache}\ntiered = {tiered}\n",
        dir.path().join("cache")
    );
    let mut methods = HostMethods::new();
    methods.register("custom_greet", custom_greet);
    let host = PluginHost::builder()
        .config(Config::from_toml(&toml)?)
        .host_methods(methods)
        .build()?;
    let file = dir.path().join("plugin.wasm");
    std::fs::copy(old, &file)?;
    let started = Instant::now();
    let plugin = host.load_watched(&file)?;
    let first_compile = started.elapsed();
    let events = plugin.subscribe();
    let before = greet(&plugin)?;
    let stats = host.engine().function_cache_stats();

    let landing = dir.path().join("plugin.wasm.new");
    std::fs::copy(new, &landing)?;
    let landed = Instant::now();
    std::fs::rename(&landing, &file)?;
    let tier = loop {
        match events.recv_timeout(WAIT)? {
            ReloadEvent::Reloaded { tier, .. } => break tier,
            ReloadEvent::Failed { error, .. } => {
                anyhow::bail!("the new version was refused: {error}")
            }
            _ => {}
        }
    };
    let after = greet(&plugin)?;
    let reload = landed.elapsed();
    anyhow::ensure!(
        before != after,
        "the new version answers as the old one: {after}"
    );
    let optimized = if tier == Tier::Baseline {
        loop {
            match events.recv_timeout(WAIT)? {
                ReloadEvent::Optimized { .. } => break,
                ReloadEvent::OptimizeFailed { error, .. } => {
                    anyhow::bail!("Cranelift's version was refused: {error}")
                }
                _ => {}
            }
        }
        anyhow::ensure!(
            greet(&plugin)? == after,
            "Cranelift's version answers otherwise"
        );
        Some(landed.elapsed())
    } else {
        None
    };
    let end = host.engine().function_cache_stats();
    Ok(Figures {
        first_compile,
        reload,
        optimized,
        hits: end.hits - stats.hits,
        misses: end.misses - stats.misses,
        memory_bytes: end.memory_bytes,
    })
}

/// A duration in whole milliseconds.
fn ms(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}

fn greet(plugin: &Plugin) -> anyhow::Result<String> {
    let params = GreetParams {
        name: "World".to_owned(),
    };
    Ok(plugin.call_with("greet", Format::Json, &params)?)
}
