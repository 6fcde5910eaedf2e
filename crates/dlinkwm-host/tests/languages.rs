//! The example plugins in every guest language, against one table: C, AssemblyScript, Zig, Go
//! (core modules), Python and JavaScript (components), all built from source by
//! `test-programs-languages`, must behave like the Rust `hello` example.

use std::time::Duration;

use dlinkwm_host::core::Error as CoreError;
use dlinkwm_host::{Error, Format, HostMethods, Plugin, PluginHost, PluginKind, ReloadEvent};
use serde::{Deserialize, Serialize};
use test_programs_languages::PLUGINS;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
struct GreetParams {
    name: String,
}

fn host() -> PluginHost {
    let mut methods = HostMethods::new();
    methods.register("custom_greet", |params: GreetParams| {
        if params.name == "nobody" {
            Err("no greeting for nobody".to_owned())
        } else {
            Ok(format!("Hello from custom handler, {}!", params.name))
        }
    });
    PluginHost::builder()
        .host_methods(methods)
        .format(Format::Json)
        .build()
        .expect("host builds")
}

/// Every example plugin: the Rust one and one per language.
fn examples() -> Vec<(&'static str, &'static str)> {
    let mut all = vec![("rust", test_programs_artifacts::HELLO)];
    all.extend(PLUGINS.iter().map(|plugin| (plugin.language, plugin.path)));
    all
}

fn greet(plugin: &Plugin, name: &str) -> dlinkwm_host::Result<String> {
    plugin.call(
        "greet",
        &GreetParams {
            name: name.to_owned(),
        },
    )
}

#[test]
fn every_language_greets_like_the_rust_example() -> anyhow::Result<()> {
    let host = host();
    for (language, path) in examples() {
        let plugin = host.load(path)?;
        for name in ["World", "Wö\"rld 😀\n\\"] {
            assert_eq!(
                greet(&plugin, name)?,
                format!(
                    "hello plugin greets {name}; the host said: Hello from custom handler, {name}!"
                ),
                "{language}"
            );
        }
        let component = PLUGINS
            .iter()
            .any(|plugin| plugin.language == language && plugin.component);
        let kind = if component {
            PluginKind::Component
        } else {
            PluginKind::Abi
        };
        assert_eq!(plugin.kind(), kind, "{language}");
    }
    Ok(())
}

#[test]
fn a_host_method_error_reaches_every_plugin_as_a_value() -> anyhow::Result<()> {
    let host = host();
    for (language, path) in examples() {
        let plugin = host.load(path)?;
        match greet(&plugin, "nobody") {
            Err(Error::Plugin(CoreError::Guest { message, .. })) => {
                assert_eq!(message, "no greeting for nobody", "{language}");
            }
            other => panic!("{language}: {other:?}"),
        }
        // The plugin handled it: the same instance keeps answering.
        assert!(greet(&plugin, "again")?.contains("again"), "{language}");
    }
    Ok(())
}

#[test]
fn bad_input_is_an_error_from_every_plugin_not_a_trap() -> anyhow::Result<()> {
    let host = host();
    for (language, path) in examples() {
        let plugin = host.load(path)?;
        // (A missing field is not in the list: Go's encoding/json decodes it as the zero value.)
        for input in [&b"{\"name\":5}"[..], b"[1,2", b"\"just a string\"", b""] {
            match plugin.call_bytes("greet", Format::Json, input) {
                Err(Error::Plugin(CoreError::Guest { .. })) => {}
                other => panic!("{language} with {input:?}: {other:?}"),
            }
        }
        assert!(greet(&plugin, "after")?.contains("after"), "{language}");
    }
    Ok(())
}

#[test]
fn every_language_hot_reloads_to_its_second_build() -> anyhow::Result<()> {
    let host = host();
    for plugin_files in PLUGINS {
        let language = plugin_files.language;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(format!("hello_{language}.wasm"));
        std::fs::copy(plugin_files.path, &path)?;
        let plugin = host.load_watched(&path)?;
        let events = plugin.subscribe();
        assert!(greet(&plugin, "World")?.starts_with("hello plugin greets"));

        std::fs::copy(plugin_files.v2, dir.path().join("staging"))?;
        std::fs::rename(dir.path().join("staging"), &path)?;
        match events.recv_timeout(WAIT)? {
            ReloadEvent::Reloaded { version: 2, .. } => {}
            other => panic!("{language}: {other:?}"),
        }
        assert_eq!(
            greet(&plugin, "World")?,
            "hello plugin v2 greets World; the host said: Hello from custom handler, World!",
            "{language}"
        );
    }
    Ok(())
}

/// 5,000 calls with 64 KiB inputs after a warm-up: a plugin that leaked even 200 bytes a call
/// would grow its linear memory by a mebibyte (one that leaked its input, by 312 MiB). The host
/// side is kept cheap (input encoded once, `custom_greet` answers without decoding) so that the
/// time goes to the guests.
#[test]
fn every_language_keeps_its_memory_flat_over_5000_calls_of_64_kib() -> anyhow::Result<()> {
    const GROWTH_ALLOWED: usize = 1 << 20;
    let mut methods = HostMethods::new();
    methods.register_raw("custom_greet", |_: &[u8], format| {
        Ok::<_, String>(match format {
            Format::Json => b"\"hi\"".to_vec(),
            // The Rust example asks in postcard: a string is its length, then its bytes.
            _ => b"\x02hi".to_vec(),
        })
    });
    let host = PluginHost::builder().host_methods(methods).build()?;
    let input = serde_json::to_vec(&GreetParams {
        name: "n".repeat(64 * 1024),
    })?;
    // Core modules: a component's memory is the interpreter's (Python, QuickJS), not the ABI's.
    let core_modules = examples().into_iter().filter(|(language, _)| {
        PLUGINS
            .iter()
            .all(|plugin| plugin.language != *language || !plugin.component)
    });
    for (language, path) in core_modules {
        let plugin = host.load(path)?;
        let started = std::time::Instant::now();
        let call = || plugin.call_bytes("greet", Format::Json, &input);
        for _ in 0..500 {
            call()?;
        }
        let warm = plugin.memory_bytes();
        for _ in 0..5_000 {
            assert!(call()?.len() > 64 * 1024, "{language}");
        }
        let after = plugin.memory_bytes();
        eprintln!(
            "{language}: linear memory {warm} bytes after warm-up, {after} after 5,000 calls \
             ({:?})",
            started.elapsed()
        );
        assert!(warm > 0, "{language}");
        assert!(
            after <= warm + GROWTH_ALLOWED,
            "{language}: linear memory grew from {warm} to {after} bytes"
        );
    }
    Ok(())
}

#[test]
fn every_language_is_called_async_and_awaits_an_async_host_method() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut methods = HostMethods::new();
        methods.register_async("custom_greet", |params: GreetParams| async move {
            // Real async work before answering: the guest's fiber waits, the thread does not.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, String>(format!("Hello from custom handler, {}!", params.name))
        });
        let host = PluginHost::builder()
            .host_methods(methods)
            .format(Format::Json)
            .build()?;
        for (language, path) in examples() {
            let plugin = host.load_async(path).await?;
            let calls: Vec<_> = (0..4)
                .map(|n| {
                    let plugin = plugin.clone();
                    tokio::spawn(async move {
                        let params = GreetParams {
                            name: format!("async {n}"),
                        };
                        plugin.call_async::<_, String>("greet", &params).await
                    })
                })
                .collect();
            for (n, call) in calls.into_iter().enumerate() {
                assert_eq!(
                    call.await??,
                    format!(
                        "hello plugin greets async {n}; the host said: Hello from custom handler, async {n}!"
                    ),
                    "{language}"
                );
            }
        }
        anyhow::Ok(())
    })
}
