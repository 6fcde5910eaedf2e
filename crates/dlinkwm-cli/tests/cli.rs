//! Runs the real `dlinkwm` binary.

use assert_cmd::Command;
use predicates::prelude::*;
use test_programs_artifacts::{HELLO, SDK_TEST_A, WASM_TEST};

fn dlinkwm(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dlinkwm"));
    command.current_dir(dir).env_remove("DLINKWM_LOG");
    command
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
