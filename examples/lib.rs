//! Shared pieces of the example host applications.

use serde::{Deserialize, Serialize};

/// The parameters of the `greet` entry and of the `custom_greet` host method.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GreetParams {
    /// Who to greet.
    pub name: String,
}

/// The host method `custom_greet`, as the original DlinkWM README defines it.
pub fn custom_greet(params: GreetParams) -> Result<String, std::convert::Infallible> {
    Ok(format!("Hello from custom handler, {}!", params.name))
}
