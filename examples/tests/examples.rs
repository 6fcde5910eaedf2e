//! The original examples, run as the real example binaries with commands piped in.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `cargo test` builds this package's examples into `target/<profile>/examples/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

fn run(name: &str, stdin: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("wasm"))?;
    std::fs::copy(
        test_programs_artifacts::WASM_TEST,
        dir.path().join("wasm/wasm_test.wasm"),
    )?;
    let mut child = Command::new(example(name))
        .current_dir(dir.path())
        .args(["--wasm-path", "wasm/wasm_test.wasm"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        dir.path().join("dlinkwm.toml").exists(),
        "the default configuration was created"
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn rust_call_wasm_calls_the_first_configured_entry_that_succeeds() -> anyhow::Result<()> {
    let stdout = run("rust_call_wasm", "call\n")?;
    for line in [
        "=== DlinkWM Interactive WASM Call Example ===",
        "WASM file path: wasm/wasm_test.wasm",
        "✅ Configuration watcher started",
        "🔍 Trying entry functions from config: [\"dlinkwm_print_hello_wasm\", \"dlinkwm_call_host_method\"]",
        "Hello from WASM!\nCalling host method from WASM!\n",
        "✅ Successfully called dlinkwm_print_hello_wasm",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains("Successfully called dlinkwm_call_host_method"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn wasm_call_rust_registers_custom_greet_which_the_plugin_calls() -> anyhow::Result<()> {
    let stdout = run("wasm_call_rust", "call\nbogus\n")?;
    for line in [
        "=== DlinkWM Custom Host Methods Example ===",
        "✅ Successfully registered 'custom_greet' method",
        "   - custom_greet: Greets a user and returns a string",
        "Calling custom host method...\nResult from custom host method: Hello from custom handler, WASM!\n",
        "✅ Successfully called dlinkwm_call_host_method",
        "❓ Unknown command `bogus`",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    Ok(())
}

#[test]
fn async_host_serves_concurrent_calls_whose_host_method_awaits_tcp() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(
        test_programs_artifacts::HELLO,
        dir.path().join("hello.wasm"),
    )?;
    let output = Command::new(example("async_host"))
        .arg(dir.path())
        .arg("50")
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "async_host failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout)?;
    for line in [
        "hello.wasm greet -> hello plugin greets caller 0; the host said: Hello from the greeting service, caller 0!",
        "50 concurrent async calls, each awaiting a TCP round trip in its host method",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    Ok(())
}
