//! Runs the real `dlinkwm` binary.

use assert_cmd::Command;
use predicates::prelude::*;
use test_programs_artifacts::{HELLO, SDK_TEST_A, SDK_TEST_B, WASM_TEST};

fn dlinkwm(dir: &std::path::Path) -> Command {
    Command::from_std(dlinkwm_std(dir))
}

/// The binary as a `std::process::Command`, for tests that choose its stdout and stderr.
fn dlinkwm_std(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dlinkwm"));
    // Each test's compiled-code cache is its own, never the user's.
    command
        .current_dir(dir)
        .env_remove("DLINKWM_LOG")
        .env("XDG_CACHE_HOME", dir.join("xdg-cache"));
    command
}

/// `dlinkwm watch` running in a folder, its stdout and stderr read line by line; killed when
/// dropped. Its notes (stderr) and the answers of its calls (stdout) are read by two threads,
/// so lines of the two streams can arrive in either order: tests wait for what the lines seen so
/// far hold, never for an order across streams.
struct Watch {
    child: std::process::Child,
    lines: crossbeam_channel::Receiver<String>,
    seen: std::cell::RefCell<Vec<String>>,
}

impl Watch {
    fn start(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<Self> {
        use std::io::BufRead as _;
        use std::process::Stdio;
        let mut child = dlinkwm_std(dir)
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (lines_tx, lines) = crossbeam_channel::unbounded::<String>();
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let lines_tx = lines_tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = lines_tx.send(line);
                }
            });
        }
        Ok(Self {
            child,
            lines,
            seen: Default::default(),
        })
    }

    /// Waits (a generous minute at most after the last line) until the lines seen so far
    /// satisfy `done`, and answers them.
    fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&[String]) -> bool,
    ) -> anyhow::Result<Vec<String>> {
        loop {
            if done(&self.seen.borrow()) {
                return Ok(self.seen.borrow().clone());
            }
            let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(60)) else {
                anyhow::bail!(
                    "{what}: not within a minute; lines: {:#?}",
                    self.seen.borrow()
                );
            };
            self.seen.borrow_mut().push(line);
        }
    }

    /// A line holding `needle`, among those seen so far.
    fn wait_for(&self, needle: &str) -> anyhow::Result<String> {
        let lines = self.wait_until(needle, |lines| {
            lines.iter().any(|line| line.contains(needle))
        })?;
        Ok(lines
            .into_iter()
            .find(|line| line.contains(needle))
            .unwrap_or_default())
    }
}

/// Whether `line` is an answer after a reload: `version N: <answer>` for any N after 1. With
/// tiered reloads (on in `watch`) Cranelift's version can replace Winch's before `watch` calls
/// the new version, so the answer may come from version 2 or 3.
fn new_answer(line: &str, answer: &str) -> bool {
    line.strip_prefix("version ")
        .and_then(|rest| rest.split_once(": "))
        .is_some_and(|(number, said)| {
            number.parse::<u64>().is_ok_and(|number| number > 1) && said == answer
        })
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Points the directory's configuration at a compiled-code cache of its own.
fn with_private_cache(dir: &std::path::Path) -> anyhow::Result<()> {
    let cache = dir.join("cache");
    std::fs::write(
        dir.join("dlinkwm.toml"),
        format!("[engine]\ncache_dir = {:?}\n", cache.display().to_string()),
    )?;
    Ok(())
}

#[test]
fn call_prints_the_json_result_with_a_mocked_host_method() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path())
        .args([
            "call",
            HELLO,
            "greet",
            "--input",
            r#"{"name":"World"}"#,
            "--mock",
            r#"custom_greet="hi from the mock""#,
        ])
        .assert()
        .success()
        .stdout("\"hello plugin greets World; the host said: hi from the mock\"\n");
    Ok(())
}

#[test]
fn an_unmocked_host_method_reaches_the_plugin_as_unknown() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path())
        .args(["call", HELLO, "greet", "--input", r#"{"name":"World"}"#])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::contains("error: entry `greet`").and(predicate::str::contains(
                "unknown host method `custom_greet`",
            )),
        );
    Ok(())
}

#[test]
fn guest_output_goes_to_stderr_and_the_result_to_stdout() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path())
        .args(["call", WASM_TEST, "dlinkwm_call_host_method", "--mock", r#"custom_greet="mocked""#])
        .assert()
        .success()
        .stdout("\"mocked\"\n")
        .stderr(predicate::str::contains("Hello from WASM!\nCalling host method from WASM!\nCalling custom host method...\nResult from custom host method: mocked"));
    Ok(())
}

#[test]
fn invalid_json_input_is_a_usage_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path())
        .args(["call", HELLO, "greet", "--input", "{name"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(
            "error: --input is not valid JSON",
        ));
    dlinkwm(dir.path())
        .args(["call", HELLO, "greet", "--mock", "custom_greet"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not METHOD=JSON"));
    Ok(())
}

#[test]
fn bad_plugins_and_entries_fail_with_one_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("garbage.wasm"), b"not wasm")?;
    dlinkwm(dir.path())
        .args(["call", "missing.wasm", "greet"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error: cannot load `missing.wasm`\ncaused by: cannot read plugin",
        ));
    dlinkwm(dir.path())
        .args(["call", "garbage.wasm", "greet"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not a valid wasm module"));
    dlinkwm(dir.path())
        .args(["call", HELLO, "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "has no entry `nope` (entries: `greet`)",
        ));
    Ok(())
}

#[test]
fn traps_and_limits_have_their_exit_codes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("dlinkwm.toml"),
        "[defaults]\ntimeout_ms = 100\n",
    )?;
    dlinkwm(dir.path())
        .args(["call", SDK_TEST_A, "spin"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("exceeded its time limit of 100ms"));
    dlinkwm(dir.path())
        .args(["call", SDK_TEST_A, "panic_now", "--input", r#""oh no""#])
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("panicked in `panic_now`")
                .and(predicate::str::contains("oh no")),
        );
    Ok(())
}

#[test]
fn the_config_allowlist_applies_and_bad_config_names_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("custom.toml");
    std::fs::write(
        &config,
        format!("[entry_functions]\n{SDK_TEST_A:?} = [\"variant\"]\n"),
    )?;
    dlinkwm(dir.path())
        .args(["--config", "custom.toml", "call", SDK_TEST_A, "variant"])
        .assert()
        .success()
        .stdout("\"a\"\n");
    dlinkwm(dir.path())
        .args([
            "--config",
            "custom.toml",
            "call",
            SDK_TEST_A,
            "echo",
            "--input",
            "\"x\"",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("entry `echo` not allowed"));
    std::fs::write(&config, "[defaults]\ntimeout_ms = \"soon\"\n")?;
    dlinkwm(dir.path())
        .args(["--config", "custom.toml", "call", SDK_TEST_A, "variant"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("at key `defaults.timeout_ms`"));
    Ok(())
}

#[test]
fn init_writes_the_default_config_and_refuses_to_overwrite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path()).arg("init").assert().success();
    let written = std::fs::read_to_string(dir.path().join("dlinkwm.toml"))?;
    assert_eq!(written, dlinkwm_host::DEFAULT_CONFIG_TOML);
    std::fs::write(dir.path().join("dlinkwm.toml"), "# mine\n")?;
    dlinkwm(dir.path())
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists; use --force"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("dlinkwm.toml"))?,
        "# mine\n"
    );
    dlinkwm(dir.path())
        .args(["init", "--force"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("dlinkwm.toml"))?,
        dlinkwm_host::DEFAULT_CONFIG_TOML
    );
    Ok(())
}

#[test]
fn run_is_an_interactive_prompt_on_stdin() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("dlinkwm.toml"),
        format!("[entry_functions]\n{SDK_TEST_A:?} = [\"fail\", \"variant\", \"echo\"]\n"),
    )?;
    let output = dlinkwm(dir.path())
        .args(["run", "--wasm-path", SDK_TEST_A])
        .write_stdin(
            "help\nentries\ncall\ncall echo \"hey\"\nlast\ncall noop_not_allowed\nbogus\nquit\n",
        )
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let stdout = String::from_utf8(output)?;
    assert!(stdout.contains("call ENTRY [JSON]"), "{stdout}");
    assert!(stdout.contains("  variant (Abi)"), "{stdout}");
    // `call` falls back from `fail` to `variant`.
    assert!(
        stdout.contains("called variant (version 1)\n\"a\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"hey\"\n> \"hey\""),
        "`last` repeats the result: {stdout}"
    );
    assert!(
        stdout.contains("error: entry `noop_not_allowed` not allowed"),
        "{stdout}"
    );
    assert!(stdout.contains("unknown command `bogus`"), "{stdout}");
    Ok(())
}

#[test]
fn run_ends_at_end_of_input() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path())
        .args(["run", "--wasm-path", SDK_TEST_A])
        .write_stdin("call variant\n")
        .assert()
        .success()
        .stdout(predicate::str::contains("\"a\""));
    Ok(())
}

#[test]
fn watch_calls_the_entry_after_each_reload_and_survives_bad_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("plugin.wasm");
    std::fs::copy(SDK_TEST_A, &plugin)?;
    let watch = Watch::start(dir.path(), &["plugin.wasm", "variant"])?;
    watch.wait_for("version 1: \"a\"")?;
    std::fs::write(dir.path().join("next.wasm"), b"garbage")?;
    std::fs::rename(dir.path().join("next.wasm"), &plugin)?;
    watch.wait_for("reload failed, version 1 keeps serving")?;
    std::fs::copy(SDK_TEST_B, dir.path().join("next.wasm"))?;
    std::fs::rename(dir.path().join("next.wasm"), &plugin)?;
    watch.wait_until("the new build's answer", |lines| {
        lines.iter().any(|line| new_answer(line, "\"b\""))
    })?;
    Ok(())
}

#[test]
fn watch_serves_winchs_code_at_once_then_cranelifts() -> anyhow::Result<()> {
    // The test's own, empty compiled-code cache: the new build is never-seen code, which is
    // what tiering is for.
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("plugin.wasm");
    std::fs::copy(SDK_TEST_A, &plugin)?;
    let watch = Watch::start(dir.path(), &["plugin.wasm", "variant"])?;
    watch.wait_for("version 1: \"a\"")?;
    std::fs::copy(SDK_TEST_B, dir.path().join("next.wasm"))?;
    std::fs::rename(dir.path().join("next.wasm"), &plugin)?;
    let reloaded = watch.wait_for("reloaded: version 2")?;
    anyhow::ensure!(
        reloaded.contains("Winch's code; Cranelift's follows"),
        "{reloaded}"
    );
    // The new build answers, and Cranelift's version follows.
    watch.wait_until("the new build's answer and Cranelift's version", |lines| {
        lines.iter().any(|line| new_answer(line, "\"b\""))
            && lines
                .iter()
                .any(|line| line.contains("version 3: the same plugin compiled by Cranelift"))
    })?;
    Ok(())
}

#[test]
fn call_json_reports_entry_version_and_result() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = dlinkwm(dir.path())
        .args(["--json", "call", SDK_TEST_A, "add", "--input", "[40, 2]"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&output)?;
    assert_eq!(report["entry"], "add");
    assert_eq!(report["version"], 1);
    assert_eq!(report["result"], 42);
    Ok(())
}

#[test]
fn inspect_shows_kind_entries_imports_and_cache_state() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    with_private_cache(dir.path())?;
    let output = dlinkwm(dir.path())
        .args(["--json", "inspect", HELLO])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&output)?;
    assert_eq!(report["kind"], "module (DlinkWM ABI)");
    assert_eq!(report["abi_version"], 1);
    assert_eq!(report["entries"], serde_json::json!(["greet"]));
    let greet = report["exports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|export| export["name"] == "greet")
        .unwrap();
    assert_eq!(greet["type"], "func (i32, i32, i32) -> (i32)");
    assert_eq!(greet["entry"], true);
    assert!(
        report["imports"]["dlinkwm"]
            .as_array()
            .unwrap()
            .iter()
            .any(|import| import.as_str().unwrap().starts_with("host_call"))
    );
    assert_eq!(report["content_hash"].as_str().unwrap().len(), 64);
    // Inspecting compiled it once, through the cache: now the cache has it.
    assert_eq!(report["cached"], false);
    dlinkwm(dir.path())
        .args(["inspect", HELLO])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("disk cache    compiled code cached")
                .and(predicate::str::contains("greet").and(predicate::str::contains("(entry)"))),
        );
    dlinkwm(dir.path())
        .args(["inspect", WASM_TEST])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("dlinkwm_host_print")
                .and(predicate::str::contains("wasi_snapshot_preview1")),
        );
    std::fs::write(dir.path().join("bad.wasm"), b"nope")?;
    dlinkwm(dir.path())
        .args(["inspect", "bad.wasm"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not a valid wasm module"));
    Ok(())
}

#[test]
fn config_check_accepts_good_files_and_names_the_bad_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path()).arg("init").assert().success();
    dlinkwm(dir.path())
        .args(["config", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("dlinkwm.toml: ok"));
    std::fs::write(
        dir.path().join("bad.toml"),
        "[plugins.\"a.wasm\"]\ntimeout_ms = -5\n",
    )?;
    dlinkwm(dir.path())
        .args(["config", "check", "bad.toml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "at key `plugins.\"a.wasm\".timeout_ms`",
        ));
    let output = dlinkwm(dir.path())
        .args(["--json", "config", "check", "bad.toml"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&output)?;
    assert_eq!(report["ok"], false);
    assert_eq!(report["key"], "plugins.\"a.wasm\".timeout_ms");
    dlinkwm(dir.path())
        .args(["config", "check", "missing.toml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("missing.toml"));
    Ok(())
}

#[test]
fn cache_info_and_clear() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    with_private_cache(dir.path())?;
    dlinkwm(dir.path())
        .args(["call", SDK_TEST_A, "variant"])
        .assert()
        .success();
    dlinkwm(dir.path())
        .args(["cache", "info"])
        .assert()
        .success()
        .stdout(predicate::str::contains("holds 1 compiled modules"));
    dlinkwm(dir.path())
        .args(["cache", "clear"])
        .assert()
        .success()
        .stdout(predicate::str::contains("cleared 1 compiled modules"));
    let output = dlinkwm(dir.path())
        .args(["--json", "cache", "info"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&output)?;
    assert_eq!(report["entries"], 0);
    std::fs::write(dir.path().join("dlinkwm.toml"), "[engine]\ncache = false\n")?;
    dlinkwm(dir.path())
        .args(["cache", "info"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cache is off"));
    Ok(())
}

#[test]
fn completions_and_help_with_examples() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path())
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("_dlinkwm()").and(predicate::str::contains("inspect")));
    dlinkwm(dir.path()).arg("--help").assert().success().stdout(
        predicate::str::contains("Exit codes:")
            .and(predicate::str::contains("3  the plugin trapped")),
    );
    for command in [
        "init",
        "call",
        "watch",
        "run",
        "inspect",
        "new",
        "config",
        "cache",
        "completions",
    ] {
        dlinkwm(dir.path())
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example: dlinkwm"));
    }
    dlinkwm(dir.path()).arg("frobnicate").assert().code(2);
    Ok(())
}

#[test]
fn new_scaffolds_a_plugin_that_builds_and_answers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path())
        .args(["new", "my_plugin"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "cargo build --release --target wasm32-wasip1",
        ));
    dlinkwm(dir.path())
        .args(["new", "my_plugin"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    dlinkwm(dir.path()).args(["new", "9lives"]).assert().code(2);
    // The one command the scaffold names builds it.
    let status = std::process::Command::new(env!("CARGO"))
        .current_dir(dir.path().join("my_plugin"))
        .args(["build", "--release", "--target", "wasm32-wasip1", "--quiet"])
        .env("CARGO_TARGET_DIR", dir.path().join("my_plugin/target"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .status()?;
    assert!(status.success());
    dlinkwm(dir.path())
        .args([
            "call",
            "my_plugin/target/wasm32-wasip1/release/my_plugin.wasm",
            "greet",
            "--input",
            r#"{"name":"World"}"#,
            "--mock",
            r#"custom_greet="hi""#,
        ])
        .assert()
        .success()
        .stdout("\"my_plugin says: hi\"\n");
    Ok(())
}

/// `new --lang` scaffolds the language's example with the SDK copied in; it builds by the
/// command `new` prints, run as printed by a shell (with the toolchains the tests use), and
/// answers through the CLI.
#[test]
fn new_scaffolds_a_plugin_in_every_other_language() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tools = guest_toolchains::Toolchains::from_env();
    for language in guest_toolchains::Language::ALL {
        tools.check(language)?;
        let name = format!("my_{}_plugin", language.name());
        let stdout = dlinkwm(dir.path())
            .env("DLINKWM_TOOLS_DIR", tools.dir())
            .args(["new", &name, "--lang", language.name()])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "dlinkwm call {name}/plugin.wasm"
            )))
            .get_output()
            .stdout
            .clone();
        let project = dir.path().join(&name);
        assert!(
            !std::fs::read_dir(&project)?
                .filter_map(Result::ok)
                .any(|entry| entry.path().extension().is_some_and(|ext| ext == "wasm")),
            "nothing is built yet"
        );
        let build = printed_after(&String::from_utf8(stdout)?, "Build it with:")?;
        let built = std::process::Command::new("sh")
            .current_dir(dir.path())
            .args(["-c", &build])
            .output()?;
        assert!(
            built.status.success(),
            "{build}\n{}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        dlinkwm(dir.path())
            .args([
                "call",
                &format!("{name}/plugin.wasm"),
                "greet",
                "--input",
                r#"{"name":"World"}"#,
                "--mock",
                r#"custom_greet="hi""#,
            ])
            .assert()
            .success()
            .stdout("\"hello plugin greets World; the host said: hi\"\n");
    }
    dlinkwm(dir.path())
        .args(["new", "x", "--lang", "cobol"])
        .assert()
        .code(2);
    Ok(())
}

/// The command `new` printed on the line after the one ending with `heading` (without its
/// indent).
fn printed_after(stdout: &str, heading: &str) -> anyhow::Result<String> {
    let mut lines = stdout
        .lines()
        .skip_while(|line| !line.ends_with(heading))
        .skip(1);
    let line = lines
        .next()
        .ok_or_else(|| anyhow::anyhow!("no `{heading}` line in {stdout:?}"))?;
    Ok(line.trim_start().to_owned())
}

/// The program a simple shell command runs: its first word past `cd DIR &&` and `NAME=value`
/// assignments, with single quotes removed.
fn program_of(command: &str) -> String {
    let command = match command.split_once(" && ") {
        Some((cd, rest)) if cd.starts_with("cd ") => rest,
        _ => command,
    };
    let mut word = String::new();
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted && (word.is_empty() || is_assignment(&word)) => word.clear(),
            ' ' if !quoted => break,
            c => word.push(c),
        }
    }
    word
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Whether a shell finds `program`: an absolute path to a file, or a name on `PATH`.
fn resolves(program: &str) -> bool {
    let path = std::path::Path::new(program);
    if path.is_absolute() {
        return path.is_file();
    }
    !program.contains('/')
        && std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())
        })
}

/// Regression: `new --lang python` printed `componentize-py ...` (and `--lang zig` `python -m
/// ziglang`, `--lang go` `go build`), tools that live only in DlinkWM's tools directory, so the
/// printed command failed everywhere but in a shell set up by hand. Each printed program must
/// exist; where the tools are not installed yet, the command that installs them comes first,
/// and it starts with a program that exists.
#[test]
fn new_prints_build_commands_whose_programs_exist() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tools = guest_toolchains::Toolchains::from_env();
    let no_tools = dir.path().join("no-tools");
    for language in guest_toolchains::Language::ALL {
        tools.check(language)?;
        let name = format!("resolves_{}", language.name());
        let stdout = dlinkwm(dir.path())
            .env("DLINKWM_TOOLS_DIR", tools.dir())
            .args(["new", &name, "--lang", language.name()])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let stdout = String::from_utf8(stdout)?;
        assert!(!stdout.contains("not installed"), "{stdout}");
        let build = printed_after(&stdout, "Build it with:")?;
        assert!(build.starts_with(&format!("cd {name} && ")), "{build}");
        let program = program_of(&build);
        assert!(resolves(&program), "`{program}` does not exist: {build}");

        // A machine without the tools (only clang comes from the system, not the tools folder).
        if language == guest_toolchains::Language::C {
            continue;
        }
        let name = format!("fresh_{}", language.name());
        let stdout = dlinkwm(dir.path())
            .env("DLINKWM_TOOLS_DIR", &no_tools)
            .args(["new", &name, "--lang", language.name()])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let stdout = String::from_utf8(stdout)?;
        let heading = format!("The {language} toolchain is not installed yet; install it with:");
        let install = printed_after(&stdout, &heading)?;
        let program = program_of(&install);
        assert!(resolves(&program), "`{program}` does not exist: {install}");
        let build = printed_after(&stdout, "Build it with:")?;
        let program = program_of(&build);
        assert!(
            std::path::Path::new(&program).starts_with(&no_tools),
            "{build}"
        );
    }
    Ok(())
}

#[test]
fn input_comes_from_a_file_or_stdin_and_formats_are_selectable() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("input.json"), "\"from a file\"")?;
    dlinkwm(dir.path())
        .args(["call", SDK_TEST_A, "echo", "--input-file", "input.json"])
        .assert()
        .success()
        .stdout("\"from a file\"\n");
    dlinkwm(dir.path())
        .args(["call", SDK_TEST_A, "echo", "--input-file", "-"])
        .write_stdin("\"from stdin, explicitly\"")
        .assert()
        .success()
        .stdout("\"from stdin, explicitly\"\n");
    dlinkwm(dir.path())
        .args(["call", SDK_TEST_A, "echo"])
        .write_stdin("\"piped\"")
        .assert()
        .success()
        .stdout("\"piped\"\n");
    // Raw: bytes in, bytes out (the SDK reads raw input as a UTF-8 string).
    dlinkwm(dir.path())
        .args([
            "call",
            SDK_TEST_A,
            "echo",
            "--format",
            "raw",
            "--input",
            "plain text",
        ])
        .assert()
        .success()
        .stdout("plain text");
    // Postcard: JSON in, converted; the raw postcard answer out.
    let output = dlinkwm(dir.path())
        .args([
            "call",
            SDK_TEST_A,
            "echo",
            "--format",
            "postcard",
            "--input",
            "\"via postcard\"",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(postcard::from_bytes::<String>(&output)?, "via postcard");
    dlinkwm(dir.path())
        .args(["call", SDK_TEST_A, "echo", "--input-file", "missing.json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read --input-file `missing.json`",
        ));
    dlinkwm(dir.path())
        .args(["call", SDK_TEST_A, "echo", "--format", "yaml"])
        .assert()
        .code(2);
    Ok(())
}

/// The component examples answer through `dlinkwm call` like the core ones, and a second process
/// loads the 18 MB Python component from the disk cache instead of compiling it.
#[test]
fn components_answer_and_a_second_process_loads_python_from_the_disk_cache() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for plugin in test_programs_languages::PLUGINS
        .iter()
        .filter(|plugin| plugin.component)
    {
        // One `dlinkwm call` in a new process: its stderr and how long the process took.
        let call = || {
            let started = std::time::Instant::now();
            let output = dlinkwm(dir.path())
                .args([
                    "--log-level",
                    "debug",
                    "call",
                    plugin.path,
                    "greet",
                    "--input",
                    r#"{"name":"World"}"#,
                    "--mock",
                    r#"custom_greet="hi""#,
                ])
                .assert()
                .success()
                .stdout("\"hello plugin greets World; the host said: hi\"\n");
            let stderr = String::from_utf8_lossy(&output.get_output().stderr).into_owned();
            (stderr, started.elapsed())
        };
        let (stderr, first_time) = call();
        // "compiled" alone would also match the cache's "loaded compiled code" line.
        assert!(
            !stderr.contains("from the disk cache") && stderr.contains("compiled"),
            "{stderr}"
        );
        let (stderr, second_time) = call();
        assert!(
            stderr.contains("loaded compiled code from the disk cache"),
            "{stderr}"
        );
        eprintln!(
            "{}: {} bytes; first process (compiles) {first_time:?}, second process (disk cache) {second_time:?}",
            plugin.language,
            std::fs::metadata(plugin.path)?.len()
        );
        dlinkwm(dir.path())
            .args(["inspect", plugin.path])
            .assert()
            .success()
            .stdout(
                predicate::str::contains("component (WIT world dlinkwm:plugin/plugin@0.1.0")
                    .and(predicate::str::contains("entries       greet"))
                    .and(predicate::str::contains("compiled code cached")),
            );
    }
    Ok(())
}

/// The write end of a pipe whose read end is already closed: every write to it fails with
/// `BrokenPipe`, as when the reader (`dlinkwm call ... | head -c1`) has gone away, without a
/// race on when it goes.
fn closed_pipe() -> std::io::Result<std::process::Stdio> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    Ok(writer.into())
}

/// Regression: `println!` panicked (exit 101, "failed printing to stdout") when the reader of
/// stdout had gone away; now the command ends quietly with success, as ripgrep does.
#[test]
fn a_closed_stdout_ends_the_command_quietly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path()).arg("init").assert().success();
    let commands: &[&[&str]] = &[
        &["call", SDK_TEST_A, "echo", "--input", "\"x\""],
        &["--json", "call", SDK_TEST_A, "echo", "--input", "\"x\""],
        &[
            "call", SDK_TEST_A, "echo", "--format", "raw", "--input", "x",
        ],
        &["inspect", HELLO],
        &["--json", "inspect", HELLO],
        &["run", "--wasm-path", SDK_TEST_A],
        &["watch", SDK_TEST_A, "variant"],
        &["config", "check"],
        &["init", "other.toml"],
        &["new", "quiet_plugin"],
        &["completions", "bash"],
        &["--help"],
    ];
    for args in commands {
        let output = dlinkwm_std(dir.path())
            .args(*args)
            .stdin(std::process::Stdio::null())
            .stdout(closed_pipe()?)
            .stderr(std::process::Stdio::piped())
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    Ok(())
}

/// Regression: `eprintln!` (the error report) and the tracing subscriber's own `eprintln!` on a
/// failed write panicked when stderr was closed (exit 101); now what cannot be told is dropped
/// and the exit code and stdout are the same as with a stderr.
#[test]
fn a_closed_stderr_neither_panics_nor_changes_the_outcome() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases: &[(&[&str], i32, &str)] = &[
        // The error report.
        (
            &["call", HELLO, "greet", "--input", r#"{"name":"World"}"#],
            1,
            "",
        ),
        // DlinkWM's own log lines, through the tracing subscriber.
        (
            &["--log-level", "debug", "call", SDK_TEST_A, "variant"],
            0,
            "\"a\"\n",
        ),
        // Guest output.
        (
            &[
                "call",
                WASM_TEST,
                "dlinkwm_call_host_method",
                "--mock",
                r#"custom_greet="mocked""#,
            ],
            0,
            "\"mocked\"\n",
        ),
    ];
    for (args, code, stdout) in cases {
        let output = dlinkwm_std(dir.path())
            .args(*args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(closed_pipe()?)
            .output()?;
        assert_eq!(output.status.code(), Some(*code), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), *stdout, "{args:?}");
    }
    Ok(())
}

/// `text` as a WAT string literal: every byte as a `\hh` escape.
fn wat_string(text: &str) -> String {
    text.bytes().map(|byte| format!("\\{byte:02x}")).collect()
}

/// An ANSI escape sequence (red text): what a hostile or careless plugin puts in its text.
const RED: &str = "\x1b[31mred";

/// Writes `hostile.wat`: an ABI plugin whose error message, log line, text output and one
/// export name carry [`RED`] (and the error message a newline that would forge a line).
fn write_hostile_plugin(dir: &std::path::Path) -> anyhow::Result<()> {
    let error = format!("bad {RED}\nerror: forged line");
    let log = format!("log {RED}");
    let text = format!("out {RED}");
    let wat = format!(
        r#"(module
            (import "dlinkwm" "set_output" (func $set_output (param i32 i32)))
            (import "dlinkwm" "set_error" (func $set_error (param i32 i32)))
            (import "dlinkwm" "log" (func $log (param i32 i32 i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "{error_data}")
            (data (i32.const 256) "{log_data}")
            (data (i32.const 512) "{text_data}")
            (func (export "dlinkwm_abi_version") (result i32) i32.const 1)
            (func (export "dlinkwm_alloc") (param i32) (result i32) i32.const 1024)
            (func (export "dlinkwm_free") (param i32 i32))
            (func (export "fail") (param i32 i32 i32) (result i32)
                i32.const 0 i32.const {error_len} call $set_error i32.const 1)
            (func (export "logs") (param i32 i32 i32) (result i32)
                i32.const 2 i32.const 256 i32.const {log_len} call $log i32.const 0)
            (func (export "text") (param i32 i32 i32) (result i32)
                i32.const 512 i32.const {text_len} call $set_output i32.const 0)
            (func (export "{name}") (param i32 i32 i32) (result i32) i32.const 0))"#,
        error_data = wat_string(&error),
        log_data = wat_string(&log),
        text_data = wat_string(&text),
        error_len = error.len(),
        log_len = log.len(),
        text_len = text.len(),
        name = wat_string(RED),
    );
    std::fs::write(dir.join("hostile.wat"), wat)?;
    Ok(())
}

/// Regression: guest text reached the terminal raw, so a plugin could recolour or rewrite the
/// user's terminal and forge lines. Now control characters in it are escaped as `\u{1b}` (and a
/// newline inside one message as `\n`) everywhere guest text is printed.
#[test]
fn guest_text_is_printed_with_control_characters_escaped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_hostile_plugin(dir.path())?;
    let escaped_red = r"\u{1b}[31mred";
    let no_raw_escape = |bytes: &[u8], what: &str| {
        assert!(
            !bytes.contains(&0x1b),
            "{what}: {}",
            String::from_utf8_lossy(bytes)
        );
    };
    let run = |args: &[&str], stdin: &str, code: i32| {
        let output = dlinkwm(dir.path())
            .args(args)
            .write_stdin(stdin)
            .assert()
            .code(code)
            .get_output()
            .clone();
        no_raw_escape(&output.stdout, &format!("stdout of {args:?}"));
        no_raw_escape(&output.stderr, &format!("stderr of {args:?}"));
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    // An error message, with a newline that would have started a line of its own.
    let (_, stderr) = run(&["call", "hostile.wat", "fail"], "", 1);
    assert!(
        stderr.contains(&format!(r"bad {escaped_red}\nerror: forged line")),
        "{stderr}"
    );
    assert!(
        !stderr.lines().any(|line| line.starts_with("error: forged")),
        "{stderr}"
    );
    // A log line.
    let (_, stderr) = run(&["call", "hostile.wat", "logs"], "", 0);
    assert!(stderr.contains(&format!("log {escaped_red}")), "{stderr}");
    // Text output (not JSON).
    let (stdout, _) = run(&["call", "hostile.wat", "text"], "", 0);
    assert_eq!(stdout, format!("out {escaped_red}\n"));
    // Export names: in the list of entries of an error, and shown by `inspect`.
    let (_, stderr) = run(&["call", "hostile.wat", "nope"], "", 1);
    assert!(stderr.contains(escaped_red), "{stderr}");
    let (stdout, _) = run(&["inspect", "hostile.wat"], "", 0);
    assert!(stdout.contains(escaped_red), "{stdout}");
    // JSON output was already escaped by serde_json, and stays so.
    let (stdout, _) = run(&["--json", "inspect", "hostile.wat"], "", 0);
    assert!(stdout.contains(r"\u001b[31mred"), "{stdout}");
    // The interactive prompt: entries, error messages, text results.
    let (stdout, _) = run(
        &["run", "--wasm-path", "hostile.wat"],
        "entries\ncall fail\ncall text\n",
        0,
    );
    assert!(
        stdout.contains(escaped_red) && stdout.contains(&format!("out {escaped_red}")),
        "{stdout}"
    );
    Ok(())
}

/// Regression: a file that is neither wasm nor WAT text got the WAT parser's caret under its
/// first character ("expected `(`"); now one line names its first bytes. WAT text (after white
/// space and comments, a `(`) keeps the WAT parser's own error.
#[test]
fn a_file_that_is_neither_wasm_nor_wat_is_named_by_its_first_bytes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("garbage.wasm"), "garbage!\n(module)")?;
    std::fs::write(dir.path().join("empty.wasm"), "")?;
    let garbage = "plugin `garbage.wasm` is not a valid wasm module: it starts with bytes \
                   67 61 72 62 61 67 65 21, neither the wasm magic `\\0asm` nor WAT text";
    let stderr_of = |args: &[&str]| -> anyhow::Result<String> {
        let output = dlinkwm(dir.path())
            .args(args)
            .assert()
            .code(1)
            .get_output()
            .clone();
        Ok(String::from_utf8(output.stderr)?)
    };
    assert_eq!(
        stderr_of(&["call", "garbage.wasm", "greet"])?,
        format!("error: cannot load `garbage.wasm`\ncaused by: {garbage}\n")
    );
    assert_eq!(
        stderr_of(&["inspect", "garbage.wasm"])?,
        format!("error: {garbage}\n")
    );
    assert!(
        stderr_of(&["inspect", "empty.wasm"])?
            .contains("it is empty, neither the wasm magic `\\0asm` nor WAT text")
    );

    // WAT after comments (a nested block comment too) loads...
    let comments = ";; a plugin\n(; a block (; nested ;) comment ;)\n\t";
    std::fs::write(
        dir.path().join("good.wat"),
        format!("{comments}(module (func (export \"f\")))"),
    )?;
    dlinkwm(dir.path())
        .args(["call", "good.wat", "f"])
        .assert()
        .success();
    // ...and WAT with a mistake keeps the WAT parser's error, which points at it.
    std::fs::write(
        dir.path().join("bad.wat"),
        format!("{comments}(module (func (export \"f\") i32.bogus))"),
    )?;
    let stderr = stderr_of(&["call", "bad.wat", "f"])?;
    assert!(
        stderr.contains("i32.bogus") && !stderr.contains("neither the wasm magic"),
        "{stderr}"
    );
    Ok(())
}

/// `inspect` runs a plugin's `_initialize`, but never with the configuration's grants: this
/// plugin traps in `_initialize` when it sees any environment variable.
#[test]
fn inspect_runs_guest_code_without_the_configurations_grants() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("snoop.wat"),
        r#"(module
            (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_initialize")
                (drop (call $sizes (i32.const 0) (i32.const 4)))
                (if (i32.load (i32.const 0)) (then unreachable)))
            (func (export "run")))"#,
    )?;
    std::fs::write(
        dir.path().join("dlinkwm.toml"),
        "[defaults]\nenv = [\"PATH\"]\n[plugins.\"snoop.wat\"]\nenv = [\"PATH\"]\n",
    )?;
    // With the grant, loading the plugin for a call traps in `_initialize`...
    dlinkwm(dir.path())
        .args(["call", "snoop.wat", "run"])
        .assert()
        .failure();
    // ...while inspect loads it in a sandbox with no grants.
    let output = dlinkwm(dir.path())
        .args(["--json", "inspect", "snoop.wat"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let value: serde_json::Value = serde_json::from_slice(&output)?;
    assert!(value["load_error"].is_null(), "{value}");
    Ok(())
}

#[test]
fn call_runs_an_extism_plugin_as_extism_does() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    dlinkwm(dir.path())
        .args([
            "call",
            test_programs_artifacts::EXTISM_A,
            "count_vowels",
            "--format",
            "raw",
            "--input",
            "Hello, world!",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            r#"{"count":3,"total":3,"vowels":"aeiouAEIOU"}"#,
        ));
    dlinkwm(dir.path())
        .args(["inspect", test_programs_artifacts::EXTISM_A])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Extism plugin").and(predicate::str::contains("count_vowels")),
        );
    // Its error (Extism's `error_set`) is the call's error.
    dlinkwm(dir.path())
        .args([
            "call",
            test_programs_artifacts::EXTISM_A,
            "fail",
            "--format",
            "raw",
            "--input",
            "x",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("failed on purpose: x"));
    Ok(())
}

#[test]
fn watch_follows_an_extism_plugin() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("plugin.wasm");
    std::fs::copy(test_programs_artifacts::EXTISM_A, &plugin)?;
    let watch = Watch::start(dir.path(), &["plugin.wasm", "variant", "--format", "raw"])?;
    watch.wait_for("version 1")?;
    std::fs::copy(
        test_programs_artifacts::EXTISM_B,
        dir.path().join("next.wasm"),
    )?;
    std::fs::rename(dir.path().join("next.wasm"), &plugin)?;
    watch.wait_until("the new build's answer", |lines| {
        lines.iter().any(|line| new_answer(line, "b"))
    })?;
    Ok(())
}
