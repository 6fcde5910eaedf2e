//! `dlinkwm new`: scaffold a Rust plugin crate against the SDK.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::output::UsageError;

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name (a Rust crate name); the crate is created in ./NAME.
    name: String,
    /// The guest SDK to depend on (default: the SDK beside this dlinkwm's sources).
    #[arg(long, value_name = "PATH")]
    sdk_path: Option<PathBuf>,
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
    let sdk = match &args.sdk_path {
        Some(path) => path.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../dlinkwm-guest-sdk"),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "cannot find the guest SDK at `{}`; pass --sdk-path",
            sdk.display()
        )
    })?;
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
dlinkwm = {{ package = "dlinkwm-guest-sdk", path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
opt-level = "s"
strip = true

# Its own workspace, so it builds wherever it is created.
[workspace]
"#,
        sdk = sdk.display().to_string()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), LIB)?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    let file = name.replace('-', "_");
    println!("created {name}/. Build it with:");
    println!("  cd {name} && cargo build --release --target wasm32-wasip1");
    println!("and try it with:");
    println!(
        "  dlinkwm call {name}/target/wasm32-wasip1/release/{file}.wasm greet --input '{{\"name\":\"World\"}}' --mock custom_greet='\"hi\"'"
    );
    Ok(())
}
