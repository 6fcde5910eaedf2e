//! `dlinkwm serve` as a real process: it serves a folder over HTTP and exits 0 on SIGTERM.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// A `dlinkwm serve` process on a free port; killed when dropped.
struct Serving {
    child: Child,
    address: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `dlinkwm GLOBAL… serve DIR --listen 127.0.0.1:0 OPTIONS…` and waits for the address
/// it prints.
fn serve(dir: &Path, global: &[&str], options: &[&str]) -> anyhow::Result<Serving> {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("dlinkwm"))
        .args(global)
        .arg("serve")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(options)
        .current_dir(dir)
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
        let line = match received.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(error) => {
                let _ = child.kill();
                anyhow::bail!("dlinkwm serve printed no address: {error}");
            }
        };
        if let Some(rest) = line.split_once(" on http://").map(|(_, rest)| rest) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    // The rest of its log is not read; draining it keeps the process from blocking on a pipe.
    std::thread::spawn(move || for _ in received {});
    Ok(Serving { child, address })
}

#[cfg(unix)]
#[test]
fn serve_answers_over_http_and_exits_cleanly_on_sigterm() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(
        test_programs_artifacts::SDK_TEST_A,
        dir.path().join("sdk.wasm"),
    )?;
    let mut serving = serve(dir.path(), &[], &[])?;
    let address = serving.address.clone();
    let child = &mut serving.child;
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

/// The body of an HTTP answer.
fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// Runs the `dlinkwm` binary with `args`; its stdout, or an error with its stderr.
fn dlinkwm(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(assert_cmd::cargo::cargo_bin("dlinkwm"))
        .args(args)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "dlinkwm {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// Calls `variant` on one replica over and over; counts failures while `counting`, and records
/// when each answer was first seen.
struct Client {
    stop: Arc<AtomicBool>,
    counting: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    /// Each change of answer, and when it was seen.
    last: Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(address: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counting = Arc::new(AtomicBool::new(true));
        let failed = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        let last = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, counting, failed, calls, last) = (
                stop.clone(),
                counting.clone(),
                failed.clone(),
                calls.clone(),
                last.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let answer =
                        http(&address, "POST /v1/plugins/sdk/variant", "null").unwrap_or_default();
                    calls.fetch_add(1, Ordering::Relaxed);
                    let now = if answer.starts_with("HTTP/1.1 200") {
                        body(&answer).to_owned()
                    } else {
                        "error".to_owned()
                    };
                    {
                        let mut changes = last.lock().unwrap();
                        if changes.last().is_none_or(|(_, last)| *last != now) {
                            changes.push((Instant::now(), now.clone()));
                        }
                    }
                    if now == "error" && counting.load(Ordering::Relaxed) {
                        eprintln!("failed request: {answer}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Self {
            stop,
            counting,
            failed,
            calls,
            last,
            thread: Some(thread),
        }
    }

    /// Waits until this replica's answers, from `since` on, went through `expected` in order;
    /// when each was first seen, from `since`.
    fn wait_for(&self, expected: &[&str], since: Instant) -> anyhow::Result<Vec<Duration>> {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let changes = self.last.lock().unwrap();
                // The answer current at `since` counts as seen then.
                let start = changes
                    .iter()
                    .rposition(|(at, _)| *at <= since)
                    .unwrap_or(0);
                let mut seen = Vec::new();
                for (at, answer) in &changes[start..] {
                    if seen.len() < expected.len() && answer == expected[seen.len()] {
                        seen.push(at.saturating_duration_since(since));
                    }
                }
                if seen.len() == expected.len() {
                    return Ok(seen);
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the replica never answered {expected:?}: {:?}",
                self.last.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(unix)]
#[test]
fn push_pull_tag_and_call_from_a_registry() -> anyhow::Result<()> {
    let registry = test_programs_artifacts::registry::TestRegistry::start();
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("dlinkwm.toml");
    std::fs::write(
        &config,
        format!("[registry]\nstore_dir = {:?}\n", dir.path().join("store")),
    )?;
    let config = config.to_str().unwrap();
    let reference = format!("{}/plugins/sdk", registry.host());
    let pushed = dlinkwm(&[
        "--config",
        config,
        "push",
        test_programs_artifacts::SDK_TEST_A,
        &format!("{reference}:v1"),
    ])?;
    assert!(
        pushed.starts_with(&format!("pushed oci://{reference}:v1@sha256:")),
        "{pushed}"
    );
    let out = dir.path().join("pulled.wasm");
    dlinkwm(&[
        "--config",
        config,
        "pull",
        &format!("oci://{reference}:v1"),
        "-o",
        out.to_str().unwrap(),
    ])?;
    assert_eq!(
        std::fs::read(&out)?,
        std::fs::read(test_programs_artifacts::SDK_TEST_A)?
    );
    let tagged = dlinkwm(&[
        "--config",
        config,
        "--json",
        "tag",
        &format!("{reference}:v1"),
        "stable",
    ])?;
    let tagged: serde_json::Value = serde_json::from_str(&tagged)?;
    assert_eq!(tagged["reference"], format!("oci://{reference}:stable"));
    let answer = dlinkwm(&[
        "--config",
        config,
        "call",
        &format!("oci://{reference}:stable"),
        "variant",
    ])?;
    assert_eq!(answer.trim(), "\"a\"");
    // A file that is not wasm is refused before anything is sent.
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a plugin")?;
    let refused = Command::new(assert_cmd::cargo::cargo_bin("dlinkwm"))
        .args([
            "--config",
            config,
            "push",
            text.to_str().unwrap(),
            &format!("{reference}:v2"),
        ])
        .output()?;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not a WebAssembly binary"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    Ok(())
}

#[cfg(unix)]
#[test]
fn two_replicas_follow_a_tag_switch_with_no_failed_request_and_roll_back_on_their_own()
-> anyhow::Result<()> {
    let registry = test_programs_artifacts::registry::TestRegistry::start();
    let dir = tempfile::tempdir()?;
    let tag = format!("oci://{}/plugins/sdk:stable", registry.host());
    dlinkwm(&["push", test_programs_artifacts::SDK_TEST_A, &tag])?;
    let replicas: Vec<Serving> = (0..2)
        .map(|replica| {
            let home = dir.path().join(format!("replica{replica}"));
            std::fs::create_dir_all(home.join("plugins"))?;
            let config = home.join("dlinkwm.toml");
            std::fs::write(
                &config,
                format!(
                    "[registry]\nstore_dir = {:?}\npoll = \"250ms\"\n\n\
                     [defaults]\nrollback_on = {{ faults = 3, within = \"10m\" }}\n",
                    home.join("store")
                ),
            )?;
            // An empty folder: the one plugin comes from the registry.
            serve(
                &home.join("plugins"),
                &["--config", config.to_str().unwrap()],
                &["--plugin", &format!("sdk={tag}")],
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let clients: Vec<Client> = replicas
        .iter()
        .map(|replica| Client::start(replica.address.clone()))
        .collect();
    let started = Instant::now();
    for client in &clients {
        client.wait_for(&["\"a\""], started)?;
    }

    // A new version: both replicas switch, no request fails.
    let pushed = Instant::now();
    let pushed_b = dlinkwm(&["push", test_programs_artifacts::SDK_TEST_B, &tag])?;
    let digest_b = pushed_b
        .trim()
        .rsplit_once('@')
        .map(|(_, digest)| digest.to_owned());
    for (replica, client) in clients.iter().enumerate() {
        let took = client.wait_for(&["\"b\""], pushed)?[0];
        eprintln!("replica {replica}: push to serving b in {took:?} (poll 250 ms ± 10 %)");
    }
    for client in &clients {
        assert_eq!(
            client.failed.load(Ordering::Relaxed),
            0,
            "a request failed during the switch"
        );
    }

    // Tiered reloads: a never-seen b first serves Winch's code, then Cranelift's (a new
    // version number); the version b ends on is the one a rollback must come back to.
    let mut b_versions = Vec::new();
    for replica in &replicas {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            let status = http(&replica.address, "GET /v1/plugins/sdk", "")?;
            let status: serde_json::Value = serde_json::from_str(body(&status))?;
            if status["tier"] == "optimized" {
                break status;
            }
            anyhow::ensure!(Instant::now() < deadline, "never optimized: {status}");
            std::thread::sleep(Duration::from_millis(20));
        };
        b_versions.push(status["version"].clone());
    }

    // A faulting version: each replica fails the requests that make it roll back (3 faults),
    // then serves b again by itself.
    for client in &clients {
        client.counting.store(false, Ordering::Relaxed);
    }
    let faulty = Instant::now();
    dlinkwm(&["push", test_programs_artifacts::SDK_TEST_FAULTY, &tag])?;
    for (replica, client) in clients.iter().enumerate() {
        let seen = client.wait_for(&["error", "\"b\""], faulty)?;
        let (serving, took) = (seen[0], seen[1]);
        eprintln!(
            "replica {replica}: faulty version serving {serving:?} after the push, rolled back {took:?} after it"
        );
    }
    for (replica, b_version) in replicas.iter().zip(&b_versions) {
        let status = http(&replica.address, "GET /v1/plugins/sdk", "")?;
        let status: serde_json::Value = serde_json::from_str(body(&status))?;
        assert_eq!(&status["version"], b_version, "{status}");
        assert_eq!(status["tier"], "optimized", "{status}");
        assert_eq!(
            status["registry_digest"].as_str(),
            digest_b.as_deref(),
            "{status}"
        );
        let metrics = http(&replica.address, "GET /metrics", "")?;
        assert!(
            metrics.contains("dlinkwm_rollbacks_total{plugin=\"sdk\"} 1"),
            "{metrics}"
        );
    }
    let calls: u64 = clients
        .iter()
        .map(|client| client.calls.load(Ordering::Relaxed))
        .sum();
    eprintln!("{calls} requests in all");
    Ok(())
}

#[test]
fn serve_answers_an_extism_plugin_and_reloads_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("vowels.wasm");
    std::fs::copy(test_programs_artifacts::EXTISM_A, &plugin)?;
    let serving = serve(dir.path(), &[], &[])?;
    let address = serving.address.clone();
    let answer = http(
        &address,
        "POST /v1/plugins/vowels/count_vowels",
        "Hello, world!",
    )?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""count":3"#), "{answer}");
    let status = http(&address, "GET /v1/plugins/vowels", "")?;
    assert!(status.contains(r#""kind":"extism""#), "{status}");
    // A new build lands: the next calls are answered by it.
    std::fs::copy(test_programs_artifacts::EXTISM_B, dir.path().join("next"))?;
    std::fs::rename(dir.path().join("next"), &plugin)?;
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = http(&address, "POST /v1/plugins/vowels/variant", "")?;
        if answer.ends_with("\r\n\r\nb") {
            break;
        }
        assert!(Instant::now() < deadline, "still not reloaded: {answer}");
        std::thread::yield_now();
    }
    Ok(())
}
