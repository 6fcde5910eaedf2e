//! Component plugins (WASI preview 2) behind the same API as core modules: grants, limits,
//! permissions, entry allowlists and state hand-over, with a Python probe component built from
//! source (`crates/test-programs/components/python_probe`).

use dlinkwm_host::core::{Error as CoreError, Preopen};
use dlinkwm_host::{Config, Error, Format, HostMethods, PluginHost, ReloadOutcome};
use serde::{Deserialize, Serialize};
use test_programs_languages::{PLUGINS, PYTHON_PROBE};

#[derive(Debug, Serialize, Deserialize)]
struct GreetParams {
    name: String,
}

fn host(configure: impl FnOnce(&mut Config)) -> PluginHost {
    let mut config = Config::default();
    configure(&mut config);
    let mut methods = HostMethods::new();
    methods.register("custom_greet", |params: GreetParams| {
        Ok::<_, String>(format!("Hello from custom handler, {}!", params.name))
    });
    PluginHost::builder()
        .config(config)
        .host_methods(methods)
        .format(Format::Json)
        .build()
        .expect("host builds")
}

fn guest_message(result: dlinkwm_host::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::Plugin(CoreError::Guest { message, .. })) => message,
        other => panic!("expected the plugin's error, got {other:?}"),
    }
}

#[test]
fn a_component_reads_files_only_when_granted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("secret.txt"), "the plans")?;

    let denied = host(|_| {}).load(PYTHON_PROBE)?;
    let message = guest_message(denied.call::<_, String>("read_file", &"/data/secret.txt"));
    assert!(message.contains("Error"), "{message}");

    let granted = host(|config| {
        config.defaults.preopens = Some(vec![Preopen {
            host: dir.path().to_owned(),
            guest: "/data".to_owned(),
            read_only: true,
        }]);
    })
    .load(PYTHON_PROBE)?;
    assert_eq!(
        granted.call::<_, String>("read_file", &"/data/secret.txt")?,
        "the plans"
    );
    // Nothing outside the grant.
    guest_message(granted.call::<_, String>("read_file", &"/etc/hostname"));
    Ok(())
}

#[test]
fn a_component_sees_environment_variables_only_when_granted() -> anyhow::Result<()> {
    // PATH is set in every test process; the plugin sees it only by name, when granted.
    let path = std::env::var("PATH")?;
    let denied = host(|_| {}).load(PYTHON_PROBE)?;
    assert_eq!(denied.call::<_, Option<String>>("env", &"PATH")?, None);
    let granted =
        host(|config| config.defaults.env = Some(vec!["PATH".to_owned()])).load(PYTHON_PROBE)?;
    assert_eq!(
        granted.call::<_, Option<String>>("env", &"PATH")?,
        Some(path)
    );
    assert_eq!(granted.call::<_, Option<String>>("env", &"HOME")?, None);
    Ok(())
}

#[test]
fn a_component_that_loops_forever_times_out_and_the_next_call_works() -> anyhow::Result<()> {
    let plugin = host(|config| config.defaults.timeout_ms = Some(300)).load(PYTHON_PROBE)?;
    match plugin.call::<_, ()>("spin", &()) {
        Err(Error::Plugin(CoreError::Timeout { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(plugin.call::<_, u32>("count", &())?, 1);
    Ok(())
}

#[test]
fn a_component_that_eats_memory_hits_the_limit_and_the_host_carries_on() -> anyhow::Result<()> {
    let plugin = host(|config| config.defaults.max_memory_mib = Some(64)).load(PYTHON_PROBE)?;
    match plugin.call::<_, u64>("allocate", &200u32) {
        // Python sees the refused growth as a MemoryError (a value), or the growth traps.
        Err(Error::Plugin(CoreError::Guest { message, .. })) => {
            assert!(message.contains("MemoryError"), "{message}");
        }
        Err(Error::Plugin(CoreError::MemoryLimit { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(plugin.call::<_, u64>("allocate", &1u32)?, 1 << 20);
    Ok(())
}

#[test]
fn host_method_permissions_and_entry_allowlists_apply_to_components() -> anyhow::Result<()> {
    for example in PLUGINS.iter().filter(|plugin| plugin.component) {
        let plugin = host(|config| {
            config.defaults.host_methods = Some(vec!["something_else".to_owned()]);
        })
        .load(example.path)?;
        let message = guest_message(plugin.call::<_, String>(
            "greet",
            &GreetParams {
                name: "World".to_owned(),
            },
        ));
        assert_eq!(
            message, "plugin is not allowed to call host method `custom_greet`",
            "{}",
            example.language
        );
    }
    let probe = host(|config| {
        config
            .entry_functions
            .insert(PYTHON_PROBE.to_owned(), vec!["count".to_owned()]);
    })
    .load(PYTHON_PROBE)?;
    assert_eq!(probe.call::<_, u32>("count", &())?, 1);
    match probe.call::<_, ()>("spin", &()) {
        Err(Error::Plugin(CoreError::EntryNotAllowed { .. })) => {}
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn a_component_hands_its_state_over_on_reload_and_rolls_back() -> anyhow::Result<()> {
    let plugin = host(|_| {}).load(PYTHON_PROBE)?;
    assert_eq!(plugin.call::<_, u32>("count", &())?, 1);
    assert_eq!(plugin.call::<_, u32>("count", &())?, 2);
    let bytes = std::fs::read(PYTHON_PROBE)?;
    let changed = test_programs_artifacts::with_custom_section(&bytes, b"second build");
    assert!(matches!(
        plugin.reload_from_bytes(&changed)?,
        ReloadOutcome::Reloaded { version: 2, .. }
    ));
    assert_eq!(plugin.call::<_, u32>("count", &())?, 3);
    assert_eq!(plugin.rollback()?, 1);
    // Garbage never replaces a component that works.
    assert!(plugin.reload_from_bytes(&bytes[..bytes.len() / 2]).is_err());
    assert!(plugin.call::<_, u32>("count", &()).is_ok());
    Ok(())
}

#[test]
fn components_are_listed_with_their_entries() -> anyhow::Result<()> {
    let plugin = host(|_| {}).load(PYTHON_PROBE)?;
    let mut names: Vec<String> = plugin
        .entries()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    names.sort();
    assert_eq!(names, ["allocate", "count", "env", "read_file", "spin"]);
    match plugin.call::<_, ()>("nope", &()) {
        Err(Error::Plugin(CoreError::EntryNotFound { available, .. })) => {
            assert_eq!(available.len(), 5);
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn a_component_called_async_yields_while_it_spins_and_ends_at_its_timeout() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let host = host(|config| config.defaults.timeout_ms = Some(500));
        let plugin = host.load_async(PYTHON_PROBE).await?;
        assert_eq!(plugin.call_async::<_, u64>("count", &()).await?, 1);
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        let result = plugin.call_async::<_, ()>("spin", &()).await;
        let during = ticks.load(std::sync::atomic::Ordering::SeqCst);
        ticker.abort();
        assert!(
            matches!(result, Err(Error::Plugin(CoreError::Timeout { .. }))),
            "{result:?}"
        );
        assert!(
            during >= 5,
            "the ticker ticked {during} times during the call"
        );
        // A fresh instance answers the next call.
        assert_eq!(plugin.call_async::<_, u64>("count", &()).await?, 1);
        anyhow::Ok(())
    })
}
