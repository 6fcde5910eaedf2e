//! Any text as `dlinkwm.toml`: parsing and resolving never panic, and an error names a reason.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match dlinkwm_core::Config::from_toml(text) {
        Ok(config) => {
            for plugin in config.entry_functions.keys().chain(config.plugins.keys()) {
                let settings = config.settings_for(plugin);
                assert!(settings.max_instances >= 1);
            }
            let _ = config.settings_for("wasm/a.wasm");
        }
        Err(error) => assert!(!error.reason.is_empty()),
    }
});
