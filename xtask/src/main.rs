//! `cargo xtask`: project tasks that are more than one cargo command.
//!
//! - `cargo xtask build-plugins [--release]`: build the example plugins for wasm32-wasip1 and
//!   copy them to `wasm/`.
//! - `cargo xtask demo`: build the plugins (release) and run the `hello_host` example on them.
//! - `cargo xtask test [args]`: install what the tests need (the wasm32-wasip1 target), then
//!   `cargo test --workspace [args]`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

const TARGET: &str = "wasm32-wasip1";
/// The example plugins: package name, and the file it becomes in `wasm/`.
const PLUGINS: &[&str] = &["hello", "wasm_test"];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("build-plugins") => build_plugins(rest.iter().any(|arg| arg == "--release")),
        Some("demo") => demo(),
        Some("test") => test(&rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <build-plugins [--release] | demo | test [cargo test args]>"
            );
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository root")
        .to_owned()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// Installs the wasm32-wasip1 target through rustup when it is missing.
fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup to check for the wasm32-wasip1 target; install it with your toolchain manager")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("xtask: installing the Rust target {TARGET} (rustup target add {TARGET})");
    run(Command::new("rustup").args(["target", "add", TARGET])).with_context(|| {
        format!("cannot install the {TARGET} target; run `rustup target add {TARGET}`")
    })
}

fn build_plugins(release: bool) -> anyhow::Result<()> {
    ensure_target()?;
    let root = root();
    let target_dir = root.join("target").join("plugins");
    let mut command = cargo();
    command
        .current_dir(&root)
        .args([
            "build",
            "--target",
            TARGET,
            "--manifest-path",
            "examples/plugins/Cargo.toml",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR");
    if release {
        command.arg("--release");
    }
    run(&mut command)?;
    let profile = if release { "release" } else { "debug" };
    let out = root.join("wasm");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for plugin in PLUGINS {
        let built = target_dir
            .join(TARGET)
            .join(profile)
            .join(format!("{plugin}.wasm"));
        let destination = out.join(format!("{plugin}.wasm"));
        std::fs::copy(&built, &destination).with_context(|| {
            format!(
                "cannot copy {} to {}",
                built.display(),
                destination.display()
            )
        })?;
        eprintln!("xtask: built {}", destination.display());
    }
    Ok(())
}

fn demo() -> anyhow::Result<()> {
    build_plugins(true)?;
    run(cargo().current_dir(root()).args([
        "run",
        "--quiet",
        "--package",
        "dlinkwm-examples",
        "--example",
        "hello_host",
        "--",
        "wasm",
    ]))
}

fn test(args: &[String]) -> anyhow::Result<()> {
    ensure_target()?;
    run(cargo()
        .current_dir(root())
        .args(["test", "--workspace"])
        .args(args))
}
