use std::time::Duration;

use dlinkwm_host::core::Error as CoreError;
use dlinkwm_host::{ConfigEvent, DynamicConfig, PluginHost, ReloadEvent};
use test_programs_artifacts::{SDK_TEST_A, SDK_TEST_B};

use crate::methods;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_directory_of_plugins_is_loaded_watched_and_grows() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(SDK_TEST_A, dir.path().join("a.wasm"))?;
    std::fs::write(dir.path().join("broken.wasm"), b"not yet")?;
    std::fs::write(dir.path().join("notes.txt"), b"not a plugin")?;
    let host = PluginHost::builder().host_methods(methods()).build()?;
    let directory = host.load_directory(dir.path())?;
    assert_eq!(directory.names(), vec!["a.wasm".to_owned()]);
    assert!(matches!(
        directory.events().recv_timeout(WAIT)?,
        ReloadEvent::Added { .. }
    ));
    match directory.events().recv_timeout(WAIT)? {
        ReloadEvent::Failed { plugin, error, .. } => {
            assert_eq!(plugin, "broken.wasm");
            assert!(
                matches!(error, CoreError::InvalidModule { .. }),
                "{error:?}"
            );
        }
        other => panic!("{other:?}"),
    }

    // A new file appears (renamed into place).
    std::fs::copy(SDK_TEST_B, dir.path().join("staging"))?;
    std::fs::rename(dir.path().join("staging"), dir.path().join("c.wasm"))?;
    match directory.events().recv_timeout(WAIT)? {
        ReloadEvent::Added { path, .. } => assert!(path.ends_with("c.wasm")),
        other => panic!("{other:?}"),
    }
    let c = directory.get("c.wasm").expect("loaded");
    assert_eq!(c.call::<_, String>("variant", &())?, "b");

    // The broken file is fixed: it is picked up.
    std::fs::copy(SDK_TEST_A, dir.path().join("staging"))?;
    std::fs::rename(dir.path().join("staging"), dir.path().join("broken.wasm"))?;
    assert!(matches!(
        directory.events().recv_timeout(WAIT)?,
        ReloadEvent::Added { .. }
    ));
    assert_eq!(directory.names(), vec!["a.wasm", "broken.wasm", "c.wasm"]);

    // A known file changes: that plugin reloads.
    let a = directory.get("a.wasm").expect("loaded");
    let events = a.subscribe();
    std::fs::copy(SDK_TEST_B, dir.path().join("staging"))?;
    std::fs::rename(dir.path().join("staging"), dir.path().join("a.wasm"))?;
    assert!(matches!(
        events.recv_timeout(WAIT)?,
        ReloadEvent::Reloaded { version: 2, .. }
    ));
    assert_eq!(a.call::<_, String>("variant", &())?, "b");
    Ok(())
}

#[test]
fn plugins_of_a_host_follow_its_dynamic_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("dlinkwm.toml");
    std::fs::write(&config_path, "[defaults]\nmax_output_bytes = 1000000\n")?;
    let mut config = DynamicConfig::new(&config_path)?;
    config.start_watching()?;
    let events = config.subscribe();
    let host = PluginHost::builder()
        .dynamic_config(config)
        .host_methods(methods())
        .build()?;
    let plugin = host.load_watched(SDK_TEST_A)?;
    assert_eq!(plugin.call::<_, Vec<u8>>("output_of", &100u32)?.len(), 100);
    std::fs::write(&config_path, "[defaults]\nmax_output_bytes = 10\n")?;
    assert!(matches!(
        events.recv_timeout(WAIT)?,
        ConfigEvent::Reloaded { .. }
    ));
    let error = plugin.call::<_, Vec<u8>>("output_of", &100u32).unwrap_err();
    assert!(
        matches!(
            error.as_plugin_error(),
            Some(CoreError::OutputTooLarge { limit: 10, .. })
        ),
        "{error:?}"
    );
    assert_eq!(host.config().defaults.max_output_bytes, Some(10));
    Ok(())
}
