//! Logging to the host's `tracing`. Use the macros [`crate::info!`] and friends.

pub use dlinkwm_abi::LogLevel as Level;

/// Sends one log line to the host.
pub fn write(level: Level, message: &str) {
    crate::ffi::log(level as i32, message);
}
