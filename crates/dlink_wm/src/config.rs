//! The original DlinkWM configuration API: [`DynamicConfig`] and
//! [`create_default_config_if_missing`].

pub use dlinkwm_host::{ConfigEvent, DynamicConfig};

use dlinkwm_host::{ConfigError, DEFAULT_CONFIG_FILE};

/// Writes the commented default configuration to `./dlinkwm.toml` unless the file exists.
///
/// # Errors
/// When the file cannot be written.
pub fn create_default_config_if_missing() -> Result<(), ConfigError> {
    dlinkwm_host::create_default_config_if_missing(DEFAULT_CONFIG_FILE).map(|_| ())
}
