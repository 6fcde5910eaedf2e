//! The example DlinkWM plugin: `greet` takes `{"name": ...}`, asks the host method
//! `custom_greet` for a greeting, and answers with a sentence built from it.

use serde::{Deserialize, Serialize};

/// The input of `greet`, and the parameters of the host method `custom_greet`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GreetParams {
    /// Who to greet.
    pub name: String,
}

/// Greets `params.name` with the host's help.
#[dlinkwm::entry]
pub fn greet(params: GreetParams) -> Result<String, dlinkwm::Error> {
    dlinkwm::debug!("greet called for {}", params.name);
    let answer: String = dlinkwm::host::call("custom_greet", &params)?;
    Ok(format!("hello plugin greets {}; the host said: {answer}", params.name))
}
