//! Declared needs: what a plugin says it needs from its host, checked when it loads (Zed's
//! extension model), so a missing grant is one clear refusal instead of a failing first call.
//!
//! A plugin declares them in a custom section named `dlinkwm-needs`
//! ([`dlinkwm_abi::NEEDS_SECTION`]): UTF-8 text,
//! one need per line, `#` comments and blank lines ignored:
//!
//! ```text
//! abi 1                  # the ABI version it was built for
//! host_method custom_greet
//! env HOME               # an environment variable passed through
//! preopen /data          # a directory it opens (its path inside the plugin)
//! ```
//!
//! The Rust SDK writes the section with `dlinkwm::needs!`; other languages put the same text in a
//! custom section (docs/abi.md §10). Keys this version does not know are ignored (a later
//! DlinkWM may check more). The section is untrusted input: bounded in size, lines and name
//! length, and refused as an invalid module when it breaks those bounds.

use wasmparser::{Parser, Payload};

use crate::config::ResolvedSettings;
use crate::error::{Error, Result};
use crate::runtime::HostCallHandler;

/// The custom section's name.
const SECTION: &str = dlinkwm_abi::NEEDS_SECTION;
/// The largest section read.
const MAX_BYTES: usize = 64 * 1024;
/// The most needs in one section.
const MAX_NEEDS: usize = 1024;
/// The longest name of one need.
const MAX_NAME: usize = 256;

/// One declared need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need {
    Abi(i32),
    HostMethod(String),
    Env(String),
    Preopen(String),
}

/// The needs a plugin's bytes declare (none without the section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Needs(Vec<Need>);

impl Needs {
    /// Reads the `dlinkwm-needs` sections of `bytes` (a module or a component, binary; WAT text
    /// declares none). A section that breaks the bounds, or that is not UTF-8, is refused.
    pub(crate) fn of(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut needs = Vec::new();
        let mut read = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            // Malformed wasm is reported by the compiler, with its own message.
            let Ok(payload) = payload else { break };
            let Payload::CustomSection(section) = payload else {
                continue;
            };
            if section.name() != SECTION {
                continue;
            }
            read = read.saturating_add(section.data().len());
            if read > MAX_BYTES {
                return Err(format!(
                    "its `{SECTION}` custom section is over {MAX_BYTES} bytes"
                ));
            }
            let text = std::str::from_utf8(section.data())
                .map_err(|_| format!("its `{SECTION}` custom section is not UTF-8 text"))?;
            parse(text, &mut needs)?;
        }
        Ok(Self(needs))
    }

    /// What the host and `settings` do not grant of these needs, one line each; empty when
    /// everything is granted.
    pub(crate) fn missing(
        &self,
        settings: &ResolvedSettings,
        host: &dyn HostCallHandler,
    ) -> Vec<String> {
        let mut missing = Vec::new();
        for need in &self.0 {
            match need {
                Need::Abi(version) if *version != dlinkwm_abi::ABI_VERSION => {
                    missing.push(format!(
                        "ABI version {version} (this host speaks {})",
                        dlinkwm_abi::ABI_VERSION
                    ))
                }
                Need::Abi(_) => {}
                Need::HostMethod(name) => {
                    if host.provides(name) == Some(false) {
                        missing.push(format!(
                            "host method `{name}` (the host has no such method)"
                        ));
                    } else if !settings.allows_host_method(name) {
                        missing.push(format!(
                            "host method `{name}` (not in the plugin's `host_methods`)"
                        ));
                    }
                }
                Need::Env(name) => {
                    if !settings.env.iter().any(|granted| granted == name) {
                        missing.push(format!("environment variable `{name}` (not in `env`)"));
                    }
                }
                Need::Preopen(path) => {
                    if !settings
                        .preopens
                        .iter()
                        .any(|granted| granted.guest == *path)
                    {
                        missing.push(format!("directory `{path}` (not in `preopens`)"));
                    }
                }
            }
        }
        missing
    }
}

fn parse(text: &str, needs: &mut Vec<Need>) -> std::result::Result<(), String> {
    // Every line counts, known or not (an earlier section's known ones too).
    let mut lines = needs.len();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        lines += 1;
        if lines > MAX_NEEDS {
            return Err(format!(
                "its `{SECTION}` section declares over {MAX_NEEDS} needs"
            ));
        }
        let (key, value) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(key, value)| (key, value.trim()));
        if value.is_empty() || value.len() > MAX_NAME || key.len() > MAX_NAME {
            return Err(format!(
                "its `{SECTION}` section has a line `{}` without a value of 1 to {MAX_NAME} bytes",
                line.chars().take(80).collect::<String>()
            ));
        }
        let need = match key {
            "abi" => Need::Abi(value.parse().map_err(|_| {
                format!("its `{SECTION}` section names ABI version `{value}`, not a number")
            })?),
            "host_method" => Need::HostMethod(value.to_owned()),
            "env" => Need::Env(value.to_owned()),
            "preopen" => Need::Preopen(value.to_owned()),
            other => {
                tracing::debug!(key = other, "ignoring a need this version does not know");
                continue;
            }
        };
        needs.push(need);
    }
    Ok(())
}

/// Refuses `plugin` when its declared `needs` are not all granted, with one message listing
/// every missing one.
pub(crate) fn check(
    plugin: &str,
    needs: &Needs,
    settings: &ResolvedSettings,
    host: &dyn HostCallHandler,
) -> Result<()> {
    let missing = needs.missing(settings, host);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::NeedsNotGranted {
        plugin: plugin.to_owned(),
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_unknown_keys() {
        let mut needs = Vec::new();
        parse(
            "# needs\nabi 1\n\nhost_method  greet \nenv HOME # home\nfuture_key x\npreopen /data\n",
            &mut needs,
        )
        .unwrap();
        assert_eq!(
            needs,
            [
                Need::Abi(1),
                Need::HostMethod("greet".into()),
                Need::Env("HOME".into()),
                Need::Preopen("/data".into())
            ]
        );
        assert!(parse("abi one", &mut Vec::new()).is_err());
        assert!(parse("host_method", &mut Vec::new()).is_err());
        assert!(
            parse(
                &format!("env {}", "x".repeat(MAX_NAME + 1)),
                &mut Vec::new()
            )
            .is_err()
        );
        let many = "env X\n".repeat(MAX_NEEDS + 1);
        assert!(parse(&many, &mut Vec::new()).is_err());
        let unknown = "later_key X\n".repeat(MAX_NEEDS + 1);
        assert!(
            parse(&unknown, &mut Vec::new()).is_err(),
            "unknown keys count too"
        );
    }
}
