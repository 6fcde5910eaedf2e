//! `dlinkwm new`: scaffold a plugin: a Rust crate against the SDK, or, with `--lang`, a C,
//! AssemblyScript, Zig, Go, Python or JavaScript project made from the same files as that
//! language's example (`examples/plugins/<lang>`), with the SDK copied in under `sdk/<lang>/`
//! (and the WIT world under `wit/` for the component languages).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use guest_toolchains::{Language, Toolchains};

use crate::output::UsageError;

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name (a Rust crate name); the crate is created in ./NAME.
    name: String,
    /// The guest SDK to depend on, for Rust (default: the SDK beside this dlinkwm's sources).
    #[arg(long, value_name = "PATH")]
    sdk_path: Option<PathBuf>,
    /// The plugin's language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
}

/// The languages `new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate with the `dlinkwm` SDK.
    Rust,
    /// C with the single-header SDK (clang and wasi-libc).
    C,
    /// AssemblyScript (npm's assemblyscript).
    #[value(alias = "as")]
    Assemblyscript,
    /// Zig (0.17).
    Zig,
    /// Go (1.24 or later).
    Go,
    /// Python, as a component (componentize-py).
    Python,
    /// JavaScript, as a component (componentize-qjs).
    #[value(alias = "js")]
    Javascript,
}

/// How a new Rust plugin depends on the guest SDK: the `--sdk-path` given; else, when this
/// `dlinkwm` was built from a source checkout that is still there, that checkout's SDK (a path
/// dependency, so the plugin and the host speak the same unreleased ABI); else the released
/// SDK of this version from crates.io.
fn sdk_dependency(sdk_path: Option<&Path>) -> anyhow::Result<String> {
    if let Some(path) = sdk_path {
        let path = path
            .canonicalize()
            .with_context(|| format!("cannot find the guest SDK at `{}`", path.display()))?;
        return Ok(format!(
            "{{ package = \"dlinkwm-guest-sdk\", path = {:?} }}",
            path.display().to_string()
        ));
    }
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dlinkwm-guest-sdk");
    match checkout
        .join("Cargo.toml")
        .is_file()
        .then(|| checkout.canonicalize())
    {
        Some(Ok(path)) => Ok(format!(
            "{{ package = \"dlinkwm-guest-sdk\", path = {:?} }}",
            path.display().to_string()
        )),
        _ => Ok(format!(
            "{{ package = \"dlinkwm-guest-sdk\", version = \"{}\" }}",
            env!("CARGO_PKG_VERSION")
        )),
    }
}

/// A file of a scaffold: where it goes in the project, and its text.
struct Template {
    path: &'static str,
    text: &'static str,
}

macro_rules! template {
    ($path:literal, $source:literal) => {
        Template {
            path: $path,
            text: include_str!(concat!("../templates/", $source)),
        }
    };
}

/// Each language's example and SDK files. The examples refer to the SDK as `../../../sdk/`
/// (from `examples/plugins/<lang>/`); in a scaffold the SDK is `sdk/` inside the project.
fn templates(lang: Lang) -> Vec<Template> {
    match lang {
        Lang::Rust => Vec::new(),
        Lang::C => vec![
            template!("plugin.c", "examples/plugins/c/plugin.c"),
            template!("sdk/c/dlinkwm.h", "sdk/c/dlinkwm.h"),
            template!("sdk/c/README.md", "sdk/c/README.md"),
        ],
        Lang::Assemblyscript => vec![
            template!(
                "assembly/index.ts",
                "examples/plugins/assemblyscript/assembly/index.ts"
            ),
            template!(
                "asconfig.json",
                "examples/plugins/assemblyscript/asconfig.json"
            ),
            template!(
                "package.json",
                "examples/plugins/assemblyscript/package.json"
            ),
            template!(
                "sdk/assemblyscript/assembly/index.ts",
                "sdk/assemblyscript/assembly/index.ts"
            ),
            template!(
                "sdk/assemblyscript/assembly/abi.ts",
                "sdk/assemblyscript/assembly/abi.ts"
            ),
            template!(
                "sdk/assemblyscript/assembly/exports.ts",
                "sdk/assemblyscript/assembly/exports.ts"
            ),
            template!(
                "sdk/assemblyscript/package.json",
                "sdk/assemblyscript/package.json"
            ),
            template!(
                "sdk/assemblyscript/README.md",
                "sdk/assemblyscript/README.md"
            ),
        ],
        Lang::Zig => vec![
            template!("plugin.zig", "examples/plugins/zig/plugin.zig"),
            template!("sdk/zig/dlinkwm.zig", "sdk/zig/dlinkwm.zig"),
            template!("sdk/zig/abi.zig", "sdk/zig/abi.zig"),
            template!("sdk/zig/README.md", "sdk/zig/README.md"),
        ],
        Lang::Go => vec![
            template!("main.go", "examples/plugins/go/main.go"),
            template!("go.mod", "examples/plugins/go/go.mod"),
            template!("sdk/go/go.mod", "sdk/go/go.mod"),
            template!("sdk/go/abi.go", "sdk/go/abi.go"),
            template!("sdk/go/dlinkwm.go", "sdk/go/dlinkwm.go"),
            template!("sdk/go/README.md", "sdk/go/README.md"),
        ],
        Lang::Python => vec![
            template!("app.py", "examples/plugins/python/app.py"),
            template!("sdk/python/dlinkwm.py", "sdk/python/dlinkwm.py"),
            template!("sdk/python/README.md", "sdk/python/README.md"),
            template!("wit/plugin.wit", "wit/plugin.wit"),
        ],
        Lang::Javascript => vec![
            template!("plugin.js", "examples/plugins/javascript/plugin.js"),
            template!("sdk/javascript/dlinkwm.js", "sdk/javascript/dlinkwm.js"),
            template!("sdk/javascript/README.md", "sdk/javascript/README.md"),
            template!("wit/plugin.wit", "wit/plugin.wit"),
        ],
    }
}

impl Lang {
    /// The toolchain that builds this language (none for Rust, which cargo builds).
    fn toolchain(self) -> Option<Language> {
        Some(match self {
            Lang::Rust => return None,
            Lang::C => Language::C,
            Lang::Assemblyscript => Language::AssemblyScript,
            Lang::Zig => Language::Zig,
            Lang::Go => Language::Go,
            Lang::Python => Language::Python,
            Lang::Javascript => Language::JavaScript,
        })
    }
}

/// Prints how to build the scaffold in `name/` with `language`'s toolchain, exactly as the
/// tests build the examples: the tools pip and npm install live under DlinkWM's tools directory,
/// on no `PATH`, so the command names them by their full paths, and says how to install them
/// first when they are not there yet.
fn print_build(name: &str, language: Language) -> anyhow::Result<()> {
    let tools = Toolchains::from_env();
    let build = tools.build_line(language, Path::new("./sdk"), Path::new("plugin.wasm"));
    let mut out = std::io::stdout().lock();
    writeln!(out, "created {name}/.")?;
    if tools.check(language).is_err() {
        writeln!(
            out,
            "The {language} toolchain is not installed yet; install it with:"
        )?;
        writeln!(out, "  {}", tools.install_line(language))?;
    }
    writeln!(out, "Build it with:")?;
    writeln!(out, "  cd {name} && {build}")?;
    writeln!(out, "and try it with:")?;
    writeln!(
        out,
        "  dlinkwm call {name}/plugin.wasm greet --input '{{\"name\":\"World\"}}' --mock custom_greet='\"hi\"'"
    )?;
    Ok(())
}

/// Writes the scaffold of `lang` into `dir`, moving the SDK paths into the project.
fn scaffold_other(lang: Lang, language: Language, name: &str, dir: &Path) -> anyhow::Result<()> {
    for template in templates(lang) {
        let target = dir.join(template.path);
        let depth = template.path.matches('/').count();
        let text = if template.path.starts_with("sdk/") || template.path.starts_with("wit/") {
            template.text.to_owned()
        } else {
            // `../../../sdk/` seen from the project root is `./sdk/`; one folder down, `../sdk/`.
            let from = format!("{}sdk/", "../".repeat(3 + depth));
            let to = if depth == 0 {
                "./sdk/".to_owned()
            } else {
                format!("{}sdk/", "../".repeat(depth))
            };
            let mut text = if template.path == "asconfig.json" {
                // asc names elements (`--use abort=...`) by paths without a leading `./`.
                template.text.replace(&from, "sdk/")
            } else {
                template.text.replace(&from, &to)
            };
            if template.path == "go.mod" {
                text = text.replace("module example.com/hello", &format!("module {name}"));
            }
            if template.path == "package.json" {
                text = text.replace("\"dlinkwm-example-assemblyscript\"", &format!("{name:?}"));
            }
            text
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write `{}`", target.display()))?;
    }
    std::fs::write(
        dir.join(".gitignore"),
        "/plugin.wasm\n/build/\nnode_modules/\n",
    )?;
    print_build(name, language)
}

const LIB: &str = r#"//! A DlinkWM plugin.

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct GreetParams {
    pub name: String,
}

/// Greets `params.name`, with the help of the host method `custom_greet`.
#[dlinkwm::entry]
pub fn greet(params: GreetParams) -> Result<String, dlinkwm::Error> {
    dlinkwm::info!("greet called for {}", params.name);
    let answer: String = dlinkwm::host::call("custom_greet", &params)?;
    Ok(format!("{} says: {answer}", env!("CARGO_PKG_NAME")))
}
"#;

pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(UsageError(format!("`{name}` is not a valid crate name")).into());
    }
    let dir = Path::new(name);
    if dir.exists() {
        return Err(UsageError(format!("`{}` already exists", dir.display())).into());
    }
    if let Some(language) = args.lang.toolchain() {
        return scaffold_other(args.lang, language, name, dir);
    }
    let sdk = sdk_dependency(args.sdk_path.as_deref())?;
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create `{}`", dir.display()))?;
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
dlinkwm = {sdk}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
opt-level = "s"
strip = true

# Its own workspace, so it builds wherever it is created.
[workspace]
"#,
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), LIB)?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    let file = name.replace('-', "_");
    let mut out = std::io::stdout().lock();
    writeln!(out, "created {name}/. Build it with:")?;
    writeln!(
        out,
        "  cd {name} && cargo build --release --target wasm32-wasip1"
    )?;
    writeln!(out, "and try it with:")?;
    writeln!(
        out,
        "  dlinkwm call {name}/target/wasm32-wasip1/release/{file}.wasm greet --input '{{\"name\":\"World\"}}' --mock custom_greet='\"hi\"'"
    )?;
    Ok(())
}
