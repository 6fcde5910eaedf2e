//! Runs the real `dlinkwm` binary.

use assert_cmd::Command;
use predicates::prelude::*;
use test_programs_artifacts::{HELLO, SDK_TEST_A, SDK_TEST_B, WASM_TEST};

fn dlinkwm(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dlinkwm"));
    // Each test's compiled-code cache is its own, never the user's.
    command
        .current_dir(dir)
        .env_remove("DLINKWM_LOG")
        .env("XDG_CACHE_HOME", dir.join("xdg-cache"));
    command
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
    use std::io::BufRead as _;
    use std::process::Stdio;
    use std::time::Duration;

    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("plugin.wasm");
    std::fs::copy(SDK_TEST_A, &plugin)?;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dlinkwm"))
        .current_dir(dir.path())
        .args(["watch", "plugin.wasm", "variant"])
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
    let wait_for = |needle: &str| -> anyhow::Result<()> {
        loop {
            let line = lines.recv_timeout(Duration::from_secs(60))?;
            if line.contains(needle) {
                return Ok(());
            }
        }
    };
    let result = (|| -> anyhow::Result<()> {
        wait_for("version 1: \"a\"")?;
        std::fs::write(dir.path().join("next.wasm"), b"garbage")?;
        std::fs::rename(dir.path().join("next.wasm"), &plugin)?;
        wait_for("reload failed, version 1 keeps serving")?;
        std::fs::copy(SDK_TEST_B, dir.path().join("next.wasm"))?;
        std::fs::rename(dir.path().join("next.wasm"), &plugin)?;
        wait_for("version 2: \"b\"")?;
        Ok(())
    })();
    child.kill()?;
    child.wait()?;
    result
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

/// `new --lang` scaffolds the language's example with the SDK copied in; it builds (with the
/// toolchain the tests use, by the command the SDK's README gives) and answers through the CLI.
#[test]
fn new_scaffolds_a_plugin_in_every_other_language() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tools = guest_toolchains::Toolchains::from_env();
    for language in guest_toolchains::Language::ALL {
        let name = format!("my_{}_plugin", language.name());
        dlinkwm(dir.path())
            .args(["new", &name, "--lang", language.name()])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "dlinkwm call {name}/plugin.wasm"
            )));
        let project = dir.path().join(&name);
        assert!(
            !std::fs::read_dir(&project)?
                .filter_map(Result::ok)
                .any(|entry| entry.path().extension().is_some_and(|ext| ext == "wasm")),
            "nothing is built yet"
        );
        tools.build(
            language,
            &project,
            &project.join("sdk"),
            &project.join("plugin.wasm"),
        )?;
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
