//! Integration tests of dlinkwm-host: one binary, one module per area.

mod asynchronous;
mod calls;
mod extism;
mod host_methods;
mod oci;
mod reload;

use dlinkwm_host::{HostMethods, PluginHost};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct GreetParams {
    pub name: String,
}

/// The host methods every test host has: `custom_greet` as in the original README, and `fails`,
/// which always returns an error.
pub fn methods() -> HostMethods {
    let mut methods = HostMethods::new();
    methods.register("custom_greet", |params: GreetParams| {
        Ok::<_, String>(format!("Hello from custom handler, {}!", params.name))
    });
    methods.register("greet_str", |name: String| {
        Ok::<_, String>(format!("hi {name}"))
    });
    methods.register("fails", |_: String| {
        Err::<String, _>("the database is down")
    });
    methods.register("panics", |_: String| -> Result<String, String> {
        panic!("host method bug")
    });
    methods
}

pub fn host() -> PluginHost {
    PluginHost::builder()
        .host_methods(methods())
        .build()
        .expect("host builds")
}
