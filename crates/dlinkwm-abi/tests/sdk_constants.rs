//! The guest SDKs in other languages copy the ABI's constants from this crate, once each
//! (`sdk/*/`). This test reads every SDK's constants and checks them against this crate, so a
//! change here that an SDK misses fails CI instead of a plugin.

use std::path::PathBuf;

use dlinkwm_abi::{ABI_VERSION, ENTRY_ERROR, ENTRY_OK, Format, LogLevel, Status, import};

fn sdk_file(path: &str) -> String {
    // The run-time variable (cargo sets it for tests), not the compile-time one: a test binary
    // built by another checkout sharing the target directory would read that checkout's files.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let file = manifest_dir.join("../../sdk").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()))
}

/// Every status, format and log level, with its name in words ("unknown method").
fn all_constants() -> Vec<(&'static str, Vec<&'static str>, i32)> {
    let mut all = Vec::new();
    for code in 0.. {
        let Some(status) = Status::from_code(code) else {
            break;
        };
        let words = match status {
            Status::Ok => vec!["ok"],
            Status::Error => vec!["error"],
            Status::UnknownMethod => vec!["unknown", "method"],
            Status::PermissionDenied => vec!["permission", "denied"],
            Status::UnsupportedFormat => vec!["unsupported", "format"],
            other => panic!("a new status, {other:?}: add it to the SDKs and to this test"),
        };
        all.push(("status", words, status.code()));
    }
    for code in 0.. {
        let Some(format) = Format::from_code(code) else {
            break;
        };
        all.push(("format", vec![format.name()], format.code()));
    }
    for (level, words) in [
        (LogLevel::Error, "error"),
        (LogLevel::Warn, "warn"),
        (LogLevel::Info, "info"),
        (LogLevel::Debug, "debug"),
        (LogLevel::Trace, "trace"),
    ] {
        all.push(("log", vec![words], level as i32));
    }
    all.push(("entry", vec!["ok"], ENTRY_OK));
    all.push(("entry", vec!["error"], ENTRY_ERROR));
    all
}

/// The value on the line that defines `name` (the last number or string literal on it).
fn value_of(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let tokens: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || matches!(c, '=' | ';' | ',' | ':'))
            .filter(|token| !token.is_empty())
            .collect();
        tokens.iter().position(|token| *token == name)?;
        tokens
            .iter()
            .rev()
            .find(|token| token.parse::<i32>().is_ok() || token.starts_with('"'))
            .map(|token| token.trim_matches('"').to_owned())
    })
}

/// The part of `text` from `start` to the next closing brace (one Zig enum or Go const block).
fn block<'a>(text: &'a str, start: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no `{start}` in the SDK"));
    let rest = &text[from..];
    &rest[..rest.find('}').unwrap_or(rest.len())]
}

fn check(sdk: &str, text: &str, name: &str, expected: impl ToString) {
    assert_eq!(
        value_of(text, name).as_deref(),
        Some(expected.to_string().as_str()),
        "{sdk}: `{name}` must equal dlinkwm-abi's value"
    );
}

fn upper(words: &[&str]) -> String {
    words.join("_").to_uppercase()
}

#[test]
fn the_c_sdk_matches() {
    let header = sdk_file("c/dlinkwm.h");
    check("C", &header, "DLINKWM_ABI_VERSION", ABI_VERSION);
    check("C", &header, "DLINKWM_IMPORT_MODULE", import::MODULE);
    for (group, words, value) in all_constants() {
        let name = format!("DLINKWM_{}_{}", group.to_uppercase(), upper(&words));
        check("C", &header, &name, value);
    }
}

#[test]
fn the_assemblyscript_sdk_matches() {
    let abi = sdk_file("assemblyscript/assembly/abi.ts");
    check("AssemblyScript", &abi, "ABI_VERSION", ABI_VERSION);
    check("AssemblyScript", &abi, "IMPORT_MODULE", import::MODULE);
    for (group, words, value) in all_constants() {
        let name = format!("{}_{}", group.to_uppercase(), upper(&words));
        check("AssemblyScript", &abi, &name, value);
    }
}

#[test]
fn the_zig_sdk_matches() {
    let abi = sdk_file("zig/abi.zig");
    check("Zig", &abi, "abi_version", ABI_VERSION);
    check("Zig", &abi, "import_module", import::MODULE);
    for (group, words, value) in all_constants() {
        let (scope, name) = match group {
            "status" => (block(&abi, "pub const Status"), words.join("_")),
            "format" => (block(&abi, "pub const Format"), words.join("_")),
            "log" => (block(&abi, "pub const LogLevel"), words.join("_")),
            _ => (abi.as_str(), format!("entry_{}", words.join("_"))),
        };
        // `error` is a keyword in Zig: it is spelled `@"error"` as an enum field, `err` as a level.
        let name = match (group, name.as_str()) {
            ("status", "error") => "@\"error\"".to_owned(),
            ("log", "error") => "err".to_owned(),
            _ => name,
        };
        check("Zig", scope, &name, value);
    }
}

#[test]
fn the_go_sdk_matches() {
    let abi = sdk_file("go/abi.go");
    check("Go", &abi, "ABIVersion", ABI_VERSION);
    check("Go", &abi, "ImportModule", import::MODULE);
    for (group, words, value) in all_constants() {
        let camel: String = words
            .iter()
            .map(|word| match *word {
                "ok" => "OK".to_owned(),
                "json" => "JSON".to_owned(),
                word => word[..1].to_uppercase() + &word[1..],
            })
            .collect();
        let prefix = match group {
            "status" => "Status",
            "format" => "Format",
            "log" => "Log",
            _ => "Entry",
        };
        check("Go", &abi, &format!("{prefix}{camel}"), value);
    }
}

#[test]
fn the_component_helpers_state_the_abi_version() {
    check(
        "Python",
        &sdk_file("python/dlinkwm.py"),
        "ABI_VERSION",
        ABI_VERSION,
    );
    check(
        "JavaScript",
        &sdk_file("javascript/dlinkwm.js"),
        "ABI_VERSION",
        ABI_VERSION,
    );
}
