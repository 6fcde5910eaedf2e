//! An async host: a tokio application whose plugin calls an async host method doing real I/O.
//!
//! The application starts a small TCP "greeting service" of its own on localhost. The host
//! method `custom_greet` asks that service for the greeting over TCP (`tokio::net`), so every
//! host call the plugin makes awaits network I/O; the plugin (`hello.wasm`, whose `greet` calls
//! `custom_greet`) neither knows nor cares. Many calls run at once on two worker threads: while
//! one plugin waits for the service, the threads run the others.
//!
//! ```text
//! cargo xtask build-plugins
//! cargo run --example async_host -- [wasm-dir] [calls]
//! ```

use std::time::Instant;

use anyhow::Context as _;
use dlinkwm_examples::GreetParams;
use dlinkwm_host::{Config, HostMethods, PluginHost};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "wasm".to_owned());
    let calls: usize = match args.next() {
        Some(calls) => calls.parse().context("the number of calls")?,
        None => 100,
    };

    // The greeting service: one line in (a name), one line out (the greeting).
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let service = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut name = String::new();
                if BufReader::new(reader).read_line(&mut name).await.is_ok() {
                    let reply = format!("Hello from the greeting service, {}!\n", name.trim());
                    let _ = writer.write_all(reply.as_bytes()).await;
                }
            });
        }
    });

    let mut methods = HostMethods::new();
    methods.register_async("custom_greet", move |params: GreetParams| async move {
        // Real async I/O inside a host method: the plugin's call is suspended meanwhile.
        let stream = TcpStream::connect(service)
            .await
            .map_err(|error| format!("greeting service: {error}"))?;
        let (reader, mut writer) = stream.into_split();
        writer
            .write_all(format!("{}\n", params.name).as_bytes())
            .await
            .map_err(|error| format!("greeting service: {error}"))?;
        let mut greeting = String::new();
        BufReader::new(reader)
            .read_line(&mut greeting)
            .await
            .map_err(|error| format!("greeting service: {error}"))?;
        Ok::<_, String>(greeting.trim_end().to_owned())
    });
    let mut config = Config::default();
    // Enough instances for every call to run at once.
    config.defaults.max_instances = Some(u64::try_from(calls)?.max(1));
    let host = PluginHost::builder()
        .config(config)
        .host_methods(methods)
        .build()?;

    let path = format!("{dir}/hello.wasm");
    let plugin = host.load_async(&path).await.with_context(|| {
        format!("cannot load {path} (build it with `cargo xtask build-plugins`)")
    })?;

    let started = Instant::now();
    let tasks: Vec<_> = (0..calls)
        .map(|n| {
            let plugin = plugin.clone();
            tokio::spawn(async move {
                let params = GreetParams {
                    name: format!("caller {n}"),
                };
                plugin.call_async::<_, String>("greet", &params).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(calls);
    for task in tasks {
        answers.push(task.await??);
    }
    let took = started.elapsed();
    if let Some(first) = answers.first() {
        println!("hello.wasm greet -> {first}");
    }
    println!(
        "{} concurrent async calls, each awaiting a TCP round trip in its host method: {took:.2?}",
        answers.len()
    );
    Ok(())
}
