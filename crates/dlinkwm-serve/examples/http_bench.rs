//! HTTP load on `dlinkwm serve` against a plain axum handler doing the same serde work natively,
//! measured with `wrk` in one run (`crates/dlinkwm-serve/bench/http.sh` installs wrk and runs
//! this in release mode).
//!
//! Rows: requests/s and p50/p99 latency of a JSON struct round trip (`flip`: deserialize a
//! struct, swap two fields, serialize) at 1, 16 and 64 connections, the ratio sandbox / native,
//! and the same load while the plugin file is replaced 20 times (zero non-2xx expected).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use axum::routing::post;
use dlinkwm_host::{Config, PluginHost};
use dlinkwm_serve::{ServeOptions, Server};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Point {
    x: i64,
    y: i64,
    label: String,
}

async fn flip(axum::Json(point): axum::Json<Point>) -> axum::Json<Point> {
    axum::Json(Point {
        x: point.y,
        y: point.x,
        label: point.label,
    })
}

/// What wrk measured.
struct Load {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn millis(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        _ => return None,
    })
}

/// Runs wrk with `connections` connections for `seconds` against `url` (POST of `script`).
fn wrk(url: &str, connections: u32, seconds: u32, script: &Path) -> anyhow::Result<Load> {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()?;
    anyhow::ensure!(output.status.success(), "wrk failed: {:?}", output);
    let text = String::from_utf8(output.stdout)?;
    let field = |prefix: &str| {
        text.lines().find_map(|line| {
            line.trim()
                .strip_prefix(prefix)
                .map(str::trim)
                .map(str::to_owned)
        })
    };
    let requests_per_second = field("Requests/sec:")
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in:\n{text}"))?;
    let p50_ms = field("50%")
        .and_then(|value| millis(&value))
        .unwrap_or(f64::NAN);
    let p99_ms = field("99%")
        .and_then(|value| millis(&value))
        .unwrap_or(f64::NAN);
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    Ok(Load {
        requests_per_second,
        p50_ms,
        p99_ms,
        non_2xx,
    })
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let plugin_file = dir.path().join("sdk.wasm");
    std::fs::copy(test_programs_artifacts::SDK_TEST_A, &plugin_file)?;
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        r#"wrk.method = "POST"
wrk.body = '{"x":3,"y":-4,"label":"a small struct"}'
wrk.headers["Content-Type"] = "application/json"
"#,
    )?;
    let (sandbox, native) = runtime.block_on(async {
        let mut config = Config::default();
        config.engine.cache = Some(false);
        config.defaults.max_instances = Some(64);
        let host = PluginHost::builder().config(config).build()?;
        let server = Server::from_directory(&host, dir.path(), ServeOptions::default()).await?;
        let sandbox = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let native = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addresses = (sandbox.local_addr()?, native.local_addr()?);
        tokio::spawn(dlinkwm_serve::serve(
            sandbox,
            server.router(),
            std::future::pending(),
            Duration::from_secs(1),
        ));
        tokio::spawn(async move {
            let app = axum::Router::new().route("/flip", post(flip));
            axum::serve(native, app).await
        });
        anyhow::Ok(addresses)
    })?;
    let sandbox_url = format!("http://{sandbox}/v1/plugins/sdk/flip");
    let native_url = format!("http://{native}/flip");
    // Warm up both.
    wrk(&sandbox_url, 4, 1, &script)?;
    wrk(&native_url, 4, 1, &script)?;

    println!();
    println!("JSON struct round trip over HTTP (wrk -t1, 5 s per row; server: 1 worker thread)");
    println!(
        "{:>11} {:>14} {:>9} {:>9}   {:>14} {:>9} {:>9}   {:>6}",
        "connections",
        "dlinkwm req/s",
        "p50 ms",
        "p99 ms",
        "native req/s",
        "p50 ms",
        "p99 ms",
        "ratio"
    );
    for connections in [1, 16, 64] {
        let ours = wrk(&sandbox_url, connections, 5, &script)?;
        let theirs = wrk(&native_url, connections, 5, &script)?;
        anyhow::ensure!(ours.non_2xx == 0 && theirs.non_2xx == 0, "non-2xx answers");
        println!(
            "{connections:>11} {:>14.0} {:>9.3} {:>9.3}   {:>14.0} {:>9.3} {:>9.3}   {:>6.2}",
            ours.requests_per_second,
            ours.p50_ms,
            ours.p99_ms,
            theirs.requests_per_second,
            theirs.p50_ms,
            theirs.p99_ms,
            theirs.requests_per_second / ours.requests_per_second,
        );
    }

    // The same load while the file is replaced 20 times (two builds, alternating, by rename).
    let quiet = wrk(&sandbox_url, 16, 5, &script)?;
    let (a, b) = (
        std::fs::read(test_programs_artifacts::SDK_TEST_A)?,
        std::fs::read(test_programs_artifacts::SDK_TEST_B)?,
    );
    let swapper = std::thread::spawn(move || -> anyhow::Result<()> {
        for round in 0..20 {
            std::thread::sleep(Duration::from_millis(200));
            let staged = plugin_file.with_extension("staged");
            std::fs::write(&staged, if round % 2 == 0 { &b } else { &a })?;
            std::fs::rename(&staged, &plugin_file)?;
        }
        Ok(())
    });
    let swapping = wrk(&sandbox_url, 16, 5, &script)?;
    swapper
        .join()
        .map_err(|_| anyhow::anyhow!("the swapping thread panicked"))??;
    println!();
    println!("16 connections, 5 s, while the plugin file is replaced 20 times:");
    println!(
        "  quiet: {:.0} req/s, p99 {:.3} ms; swapping: {:.0} req/s, p99 {:.3} ms, non-2xx answers: {}",
        quiet.requests_per_second,
        quiet.p99_ms,
        swapping.requests_per_second,
        swapping.p99_ms,
        swapping.non_2xx
    );
    anyhow::ensure!(swapping.non_2xx == 0, "answers failed during the swaps");
    drop(dir);
    Ok(())
}
