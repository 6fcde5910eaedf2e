//! The original DlinkWM README's Quick Start and Hot Reload snippets, verbatim (`dlink_wm`
//! paths and all), run for real. One test in its own binary: the snippets use paths relative to the
//! current directory, which this test sets.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use dlink_wm::config::{DynamicConfig, create_default_config_if_missing};
use dlink_wm::wasm_manager::{WasmHotReloader, WasmInstanceCache, call_wasm_function};
use dlinkwm_host::{HostMethods, PluginError as CoreError, ReloadEvent};
use serde::Deserialize;

/// The Quick Start's `main`, verbatim.
fn quick_start() -> Result<()> {
    // Initialize configuration
    create_default_config_if_missing()?;
    let mut dynamic_config = DynamicConfig::new("dlinkwm.toml")?;
    dynamic_config.start_watching()?;

    // Create WASM instance cache
    let instance_cache = Arc::new(WasmInstanceCache::new());

    // Call WASM function with validation
    call_wasm_function(
        "wasm/wasm_test.wasm",
        "dlinkwm_print_hello_wasm",
        &instance_cache,
        &dynamic_config,
    )?;

    Ok(())
}

#[test]
fn the_original_snippets_run_as_described() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("wasm"))?;
    let wasm_test = std::fs::read(test_programs_artifacts::WASM_TEST)?;
    std::fs::write(dir.path().join("wasm/wasm_test.wasm"), &wasm_test)?;
    std::env::set_current_dir(dir.path())?;

    quick_start()?;
    assert!(std::fs::read_to_string("dlinkwm.toml")?.contains("[entry_functions]"));

    // Validation against the configuration: wasm_test.wasm is listed, so only its listed
    // entries may be called.
    let config = DynamicConfig::new("dlinkwm.toml")?;
    assert_eq!(
        config.get_entry_functions("wasm/wasm_test.wasm"),
        Some(vec![
            "dlinkwm_print_hello_wasm".to_owned(),
            "dlinkwm_call_host_method".to_owned()
        ])
    );
    let cache = Arc::new(WasmInstanceCache::new());
    let error = call_wasm_function(
        "wasm/wasm_test.wasm",
        "dlinkwm_abi_version",
        &cache,
        &config,
    )
    .unwrap_err();
    assert!(
        matches!(
            error.as_plugin_error(),
            Some(CoreError::EntryNotAllowed { .. })
        ),
        "{error:?}"
    );
    // Without the application's host method, the entry that needs it fails as a value...
    let error = call_wasm_function(
        "wasm/wasm_test.wasm",
        "dlinkwm_call_host_method",
        &cache,
        &config,
    )
    .unwrap_err();
    assert!(
        format!("{error}").contains("unknown host method `custom_greet`"),
        "{error}"
    );
    // ...and with it registered, it succeeds.
    #[derive(Deserialize)]
    struct GreetParams {
        name: String,
    }
    let mut methods = HostMethods::new();
    methods.register("custom_greet", |params: GreetParams| {
        Ok::<_, String>(format!("Hello from custom handler, {}!", params.name))
    });
    let cache = Arc::new(WasmInstanceCache::with_host_methods(methods)?);
    call_wasm_function(
        "wasm/wasm_test.wasm",
        "dlinkwm_call_host_method",
        &cache,
        &config,
    )?;

    // The Hot Reload snippet, bounded instead of looping forever.
    let reloader = WasmHotReloader::new(cache.clone(), config.clone());
    reloader.start_watching()?;
    let plugin = cache.get_or_load("wasm/wasm_test.wasm", &config)?;
    let events = plugin.subscribe();
    // A file without the configured entries is refused; the loaded version keeps serving.
    std::fs::copy(test_programs_artifacts::HELLO, "wasm/next.wasm")?;
    std::fs::rename("wasm/next.wasm", "wasm/wasm_test.wasm")?;
    match events.recv_timeout(Duration::from_secs(60))? {
        ReloadEvent::Failed { error, .. } => assert!(
            matches!(error, CoreError::EntryNotFound { .. }),
            "{error:?}"
        ),
        other => panic!("{other:?}"),
    }
    call_wasm_function(
        "wasm/wasm_test.wasm",
        "dlinkwm_print_hello_wasm",
        &cache,
        &config,
    )?;
    // A good new build is picked up.
    std::fs::write(
        "wasm/next.wasm",
        test_programs_artifacts::with_custom_section(&wasm_test, b"v2"),
    )?;
    std::fs::rename("wasm/next.wasm", "wasm/wasm_test.wasm")?;
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(60))?,
        ReloadEvent::Reloaded { version: 2, .. }
    ));
    assert_eq!(plugin.version(), 2);
    call_wasm_function(
        "wasm/wasm_test.wasm",
        "dlinkwm_call_host_method",
        &cache,
        &config,
    )?;
    Ok(())
}
