//! `dlinkwm serve` as a real process: it serves a folder over HTTP and exits 0 on SIGTERM.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request with `Connection: close`; returns the whole answer.
fn http(address: &str, request_line: &str, body: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(WAIT))?;
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[cfg(unix)]
#[test]
fn serve_answers_over_http_and_exits_cleanly_on_sigterm() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(
        test_programs_artifacts::SDK_TEST_A,
        dir.path().join("sdk.wasm"),
    )?;
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("dlinkwm"))
        .arg("serve")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("DLINKWM_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let address = loop {
        let line = received.recv_timeout(WAIT)?;
        if let Some(rest) = line.split_once(" on http://").map(|(_, rest)| rest) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    let answer = http(&address, "POST /v1/plugins/sdk/echo", "\"over http\"")?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\"over http\""), "{answer}");
    let health = http(&address, "GET /healthz", "")?;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Admin routes are off without a token.
    let refused = http(&address, "POST /v1/plugins/sdk/rollback", "")?;
    assert!(refused.starts_with("HTTP/1.1 404"), "{refused}");

    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(terminated.success());
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        anyhow::ensure!(Instant::now() < deadline, "dlinkwm serve did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    Ok(())
}
