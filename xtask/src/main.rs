//! `cargo xtask`: project tasks that are more than one cargo command.
//!
//! - `cargo xtask build-plugins [--release]`: build the example plugins (Rust for wasm32-wasip1,
//!   and C, AssemblyScript, Zig, Go) into `wasm/`, installing a missing toolchain first.
//! - `cargo xtask toolchains [language...]`: install the guest-language toolchains that are
//!   missing (all of them without arguments), by the routes in `crates/guest-toolchains`.
//! - `cargo xtask demo`: build the plugins (release) and run the `hello_host` example on them.
//! - `cargo xtask test [args]`: install what the tests need (the wasm32-wasip1 target and the
//!   guest toolchains), then `cargo test --workspace [args]`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use guest_toolchains::{Language, Toolchains};

const TARGET: &str = "wasm32-wasip1";
/// The example plugins: package name, and the file it becomes in `wasm/`.
const PLUGINS: &[&str] = &["hello", "wasm_test"];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("build-plugins") => build_plugins(rest.iter().any(|arg| arg == "--release")),
        Some("toolchains") => toolchains(&rest),
        Some("demo") => demo(),
        Some("test") => test(&rest),
        Some("bench-reload") => bench_reload(),
        Some("bench-extism") => bench_extism(),
        _ => {
            eprintln!(
                "usage: cargo xtask <build-plugins [--release] | toolchains [c|assemblyscript|zig|go]... | demo | test [cargo test args] | bench-reload | bench-extism>"
            );
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    // `cargo run` sets the variable for the process too: the checkout it runs in, even when a
    // shared target directory holds an xtask built from another checkout of the repository.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
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

/// Installs `language`'s toolchain when it is missing, saying what it installs.
fn ensure_toolchain(tools: &Toolchains, language: Language) -> anyhow::Result<()> {
    if tools.check(language).is_ok() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing the {language} toolchain into {} ({})",
        tools.dir().display(),
        language.install_route()
    );
    tools
        .install(language)
        .and_then(|()| tools.check(language))
        .with_context(|| format!("cannot install the {language} toolchain"))
}

fn toolchains(names: &[String]) -> anyhow::Result<()> {
    let languages = if names.is_empty() {
        Language::ALL.to_vec()
    } else {
        names
            .iter()
            .map(|name| {
                Language::parse(name).with_context(|| {
                    format!("unknown language `{name}` (c, assemblyscript, zig, go)")
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let tools = Toolchains::from_env();
    for language in languages {
        ensure_toolchain(&tools, language)?;
        eprintln!("xtask: the {language} toolchain is ready");
    }
    Ok(())
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
    // The same example in every other language, by the commands the tests use.
    let tools = Toolchains::from_env();
    for language in Language::ALL {
        ensure_toolchain(&tools, language)?;
        let project = root.join("examples/plugins").join(language.name());
        let destination = out.join(format!("hello_{}.wasm", language.name()));
        tools
            .build(language, &project, &root.join("sdk"), &destination)
            .with_context(|| format!("cannot build the {language} example"))?;
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
    toolchains(&[])?;
    ensure_registry()?;
    run(cargo()
        .current_dir(root())
        .args(["test", "--workspace"])
        .args(args))
}

/// The OCI registry the registry tests start: Debian's `docker-registry` package (the CNCF
/// distribution registry), installed with apt (as root, or with `sudo -n`) when missing.
fn ensure_registry() -> anyhow::Result<()> {
    const PROGRAM: &str = "docker-registry";
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    if std::env::var_os("DLINKWM_TEST_REGISTRY").is_some() || on_path(PROGRAM) {
        return Ok(());
    }
    eprintln!("xtask: installing the OCI registry for the tests (apt: docker-registry)");
    guest_toolchains::apt_install(&[PROGRAM])?;
    anyhow::ensure!(on_path(PROGRAM), "apt-get installed no `{PROGRAM}` on PATH");
    Ok(())
}

/// The one-line edit of the reload benchmark: every example's greeting is one line.
const GREETING: &str = "hello plugin greets";

/// Reload latency after a one-line edit, for the example plugin of every language: builds each
/// example as it is and with its greeting line edited (release builds, each language's own
/// toolchain), then runs `examples/reload_latency.rs` on the pairs.
/// Extism plugins on DlinkWM and on Extism itself, in one run (docs/performance.md). The
/// comparison is a crate of its own outside the workspace: Extism brings a second wasmtime,
/// which nothing else compiles.
fn bench_extism() -> anyhow::Result<()> {
    ensure_target()?;
    let manifest = root().join("benches/extism/Cargo.toml");
    run(cargo()
        .args(["run", "--release", "--manifest-path"])
        .arg(&manifest))
}

fn bench_reload() -> anyhow::Result<()> {
    ensure_target()?;
    let root = root();
    let out = root.join("target").join("reload-bench");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let edit = |text: &str| text.replacen(GREETING, "hello plugin (edited) greets", 1);
    let mut pairs = Vec::new();

    // Rust: the `hello` crate is a member of the examples' workspace, so it is edited in place
    // and put back.
    let source = root.join("examples/plugins/hello/src/lib.rs");
    let original = std::fs::read_to_string(&source)?;
    anyhow::ensure!(
        original.contains(GREETING),
        "{} has no greeting line",
        source.display()
    );
    let build_rust = |destination: &Path| -> anyhow::Result<()> {
        let target_dir = root.join("target").join("plugins");
        run(cargo()
            .current_dir(&root)
            .args(["build", "--release", "--target", TARGET, "-p", "hello"])
            .args(["--manifest-path", "examples/plugins/Cargo.toml"])
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("CARGO_TARGET_DIR"))?;
        let built = target_dir.join(TARGET).join("release").join("hello.wasm");
        std::fs::copy(&built, destination)
            .with_context(|| format!("cannot copy {}", built.display()))?;
        Ok(())
    };
    let (v1, v2) = (out.join("rust-v1.wasm"), out.join("rust-v2.wasm"));
    build_rust(&v1)?;
    std::fs::write(&source, edit(&original))?;
    let built = build_rust(&v2);
    std::fs::write(&source, &original)
        .with_context(|| format!("cannot restore {}", source.display()))?;
    built?;
    pairs.push(format!("rust={},{}", v1.display(), v2.display()));

    // The others: a copy of the project with the line edited.
    let tools = Toolchains::from_env();
    let sdk = root.join("sdk");
    for language in Language::ALL {
        ensure_toolchain(&tools, language)?;
        let project = root.join("examples/plugins").join(language.name());
        let name = language.name();
        let (v1, v2) = (
            out.join(format!("{name}-v1.wasm")),
            out.join(format!("{name}-v2.wasm")),
        );
        tools
            .build(language, &project, &sdk, &v1)
            .with_context(|| format!("cannot build the {language} example"))?;
        let copy = out.join(format!("{name}-edited"));
        let _ = std::fs::remove_dir_all(&copy);
        copy_edited(&project, &copy, &edit)?;
        tools
            .build(language, &copy, &sdk, &v2)
            .with_context(|| format!("cannot build the edited {language} example"))?;
        pairs.push(format!("{name}={},{}", v1.display(), v2.display()));
        eprintln!("xtask: built {} and {}", v1.display(), v2.display());
    }
    run(cargo()
        .current_dir(&root)
        .args([
            "run",
            "--release",
            "-p",
            "dlinkwm-examples",
            "--example",
            "reload_latency",
            "--",
        ])
        .args(&pairs))
}

/// Copies the project folder `from` to `to`, with `edit` applied to every text file holding the
/// greeting (caches such as `__pycache__` are left out).
fn copy_edited(from: &Path, to: &Path, edit: &dyn Fn(&str) -> String) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("__") || name == "node_modules" {
            continue;
        }
        let (source, destination) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_edited(&source, &destination, edit)?;
        } else {
            match std::fs::read_to_string(&source) {
                Ok(text) if text.contains(GREETING) => std::fs::write(&destination, edit(&text))?,
                _ => {
                    std::fs::copy(&source, &destination)?;
                }
            }
        }
    }
    Ok(())
}
