use std::path::Path;

use dlinkwm_core::{Error, Plugin, PluginKind, ResolvedSettings};
use test_programs_artifacts::{HELLO, SDK_TEST_A};

use crate::{abi_module, engine, options};

fn load_bytes(bytes: &[u8]) -> Result<Plugin, Error> {
    Plugin::from_bytes(&engine(), bytes, options(ResolvedSettings::default()))
}

#[test]
fn garbage_bytes_are_an_invalid_module() {
    let error = load_bytes(b"this is not wasm at all").unwrap_err();
    assert!(matches!(error, Error::InvalidModule { .. }), "{error:?}");
}

#[test]
fn a_component_of_another_world_is_refused_with_a_message_that_names_ours() {
    // An empty component (the binary header: version 0x0d, layer 1) exports nothing.
    let error = load_bytes(b"\0asm\x0d\0\x01\0").unwrap_err();
    assert!(
        matches!(&error, Error::Instantiate { reason, .. }
            if reason.contains("dlinkwm:plugin/plugin@0.1.0") && reason.contains("abi-version")),
        "{error:?}"
    );
    // A truncated component is not a component at all.
    let error = load_bytes(b"\0asm\x0d\0\x01\0\x01\x05").unwrap_err();
    assert!(matches!(error, Error::InvalidModule { .. }), "{error:?}");
}

#[test]
fn a_truncated_module_is_an_invalid_module() {
    let bytes = std::fs::read(HELLO).unwrap();
    // (A cut at 8 bytes would leave the bare header: a valid, empty module.)
    for cut in [6, 9, bytes.len() / 2, bytes.len() - 1] {
        let error = load_bytes(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(error, Error::InvalidModule { .. }),
            "cut at {cut}: {error:?}"
        );
    }
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let error = Plugin::load(
        &engine(),
        "no/such/plugin.wasm",
        options(ResolvedSettings::default()),
    )
    .unwrap_err();
    match &error {
        Error::Read { path, source } => {
            assert_eq!(path, Path::new("no/such/plugin.wasm"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "cannot read plugin `no/such/plugin.wasm`"
    );
}

#[test]
fn an_unknown_abi_version_is_refused_with_both_versions() {
    let error = load_bytes(abi_module(2, "i32.const 0", "").as_bytes()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::AbiVersionUnsupported {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("ABI version 2"), "{error}");
}

#[test]
fn an_abi_module_without_alloc_is_refused() {
    let wat = r#"(module
        (import "dlinkwm" "set_output" (func (param i32 i32)))
        (memory (export "memory") 1)
        (func (export "dlinkwm_abi_version") (result i32) i32.const 1))"#;
    let error = load_bytes(wat.as_bytes()).unwrap_err();
    assert!(
        matches!(&error, Error::ExportMissing { export, .. } if export == "dlinkwm_alloc"),
        "{error:?}"
    );
}

#[test]
fn an_import_the_host_does_not_provide_is_an_instantiate_error() {
    let error = load_bytes(br#"(module (import "env" "mystery" (func)))"#).unwrap_err();
    match error {
        Error::Instantiate { reason, .. } => assert!(reason.contains("mystery"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_start_function_that_traps_is_an_instantiate_error() {
    let error = load_bytes(br#"(module (func $start unreachable) (start $start))"#).unwrap_err();
    assert!(matches!(error, Error::Instantiate { .. }), "{error:?}");
}

#[test]
fn an_initialize_that_traps_is_refused() {
    let error = load_bytes(br#"(module (func (export "_initialize") unreachable))"#).unwrap_err();
    assert!(
        matches!(&error, Error::Trap { entry, .. } if entry == "_initialize"),
        "{error:?}"
    );
}

#[test]
fn initialize_runs_once_per_instance_before_any_call() -> anyhow::Result<()> {
    let wat = r#"(module
        (global $inits (mut i32) (i32.const 0))
        (func (export "_initialize") global.get $inits i32.const 1 i32.add global.set $inits)
        (func (export "check") global.get $inits i32.const 1 i32.ne if unreachable end))"#;
    let plugin = load_bytes(wat.as_bytes())?;
    assert_eq!(plugin.kind(), PluginKind::Plain);
    plugin.call_raw("check", &[])?;
    plugin.call_raw("check", &[])?;
    Ok(())
}

#[test]
fn the_same_bytes_are_compiled_once() -> anyhow::Result<()> {
    let engine = engine();
    let first = Plugin::load(&engine, SDK_TEST_A, options(ResolvedSettings::default()))?;
    let second = Plugin::load(&engine, SDK_TEST_A, options(ResolvedSettings::default()))?;
    assert_eq!(engine.compile_count(), 1);
    assert_eq!(first.content_hash(), second.content_hash());
    Plugin::load(&engine, HELLO, options(ResolvedSettings::default()))?;
    assert_eq!(engine.compile_count(), 2);
    Ok(())
}

#[test]
fn entries_are_listed_and_unknown_entries_name_them() -> anyhow::Result<()> {
    let plugin = Plugin::load(&engine(), HELLO, options(ResolvedSettings::default()))?;
    assert_eq!(plugin.kind(), PluginKind::Abi);
    let names: Vec<String> = plugin
        .entries()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    assert_eq!(names, vec!["greet".to_owned()]);
    let error = plugin.call_raw("gret", &[]).unwrap_err();
    assert!(
        matches!(&error, Error::EntryNotFound { entry, available, .. } if entry == "gret" && available == &names),
        "{error:?}"
    );
    assert!(error.to_string().contains("(entries: `greet`)"), "{error}");
    Ok(())
}

#[test]
fn plain_exports_are_callable_as_entries() -> anyhow::Result<()> {
    let plugin = load_bytes(br#"(module (func (export "dlinkwm_print_hello_wasm")) (func (export "add") (param i32 i32) (result i32) i32.const 0))"#)?;
    let names: Vec<String> = plugin
        .entries()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    assert_eq!(names, vec!["dlinkwm_print_hello_wasm".to_owned()]);
    assert_eq!(
        plugin.call_raw("dlinkwm_print_hello_wasm", b"ignored")?,
        Vec::<u8>::new()
    );
    Ok(())
}

#[test]
fn the_original_host_print_import_is_provided() -> anyhow::Result<()> {
    let wat = r#"(module
        (import "host" "dlinkwm_host_print" (func $print (param i32)))
        (memory (export "memory") 1)
        (data (i32.const 8) "printed by the host\00")
        (data (i32.const 65535) "x")
        (func (export "say") i32.const 8 call $print)
        (func (export "unterminated") i32.const 65535 call $print)
        (func (export "outside") i32.const 70000 call $print))"#;
    let plugin = load_bytes(wat.as_bytes())?;
    plugin.call_raw("say", &[])?;
    // A last byte that is not NUL and a pointer past the end are faults, not crashes.
    let error = plugin.call_raw("unterminated", &[]).unwrap_err();
    assert!(
        matches!(&error, Error::GuestMemory { reason, .. } if reason.contains("NUL")),
        "{error:?}"
    );
    let error = plugin.call_raw("outside", &[]).unwrap_err();
    assert!(matches!(error, Error::GuestMemory { .. }), "{error:?}");
    plugin.call_raw("say", &[])?;
    Ok(())
}

/// An ABI module whose entries `names` each answer their own index (one byte).
fn numbered_entries(names: &[String]) -> String {
    let entries: String = names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            format!(
                r#"(func (export "{name}") (param i32 i32 i32) (result i32)
                    (i32.store8 (i32.const 2048) (i32.const {index}))
                    (call $set_output (i32.const 2048) (i32.const 1))
                    i32.const 0)"#
            )
        })
        .collect();
    abi_module(1, "i32.const 0", &entries)
}

#[test]
fn entries_are_found_by_exact_name_whatever_their_length_and_number() -> anyhow::Result<()> {
    // Names of every length up to 24 bytes, and pairs that differ in one middle byte only: the
    // short-name keys and the hash map for long names must tell each one apart.
    // With `run`, the module's own entry, the first 15 make 16 entries, found by key; all of
    // them are too many for keys and are found by the hash map.
    let alphabet = "abcdefghijklmnopqrstuvwx";
    let mut names: Vec<String> = ["abc", "abcdXfgh", "abcdefghijkXmnop"]
        .map(String::from)
        .into();
    names.extend(
        (1..=12)
            .filter(|&len| len != 3)
            .map(|len| alphabet[..len].to_owned()),
    );
    names.push("abcdefghijklmnop".to_owned());
    names.extend((17..=24).map(|len| alphabet[..len].to_owned()));
    names.push("abcdefghijklmnopqrXtuvwx".to_owned());
    for count in [3, 15, names.len()] {
        let names = &names[..count];
        let plugin = load_bytes(numbered_entries(names).as_bytes())?;
        for (index, name) in names.iter().enumerate() {
            assert_eq!(
                plugin.call_raw(name, &[])?,
                vec![index as u8],
                "entry `{name}`"
            );
        }
        for missing in ["abcY", "abcdefghijklmnopqrstuvwxy", ""] {
            assert!(
                matches!(
                    plugin.call_raw(missing, &[]),
                    Err(Error::EntryNotFound { .. })
                ),
                "`{missing}` with {count} entries"
            );
        }
    }
    Ok(())
}

#[test]
fn held_code_is_found_again_by_its_bytes_and_reports_the_same_content_hash() {
    use dlinkwm_core::ContentHash;
    let engine = engine();
    let bytes = std::fs::read(SDK_TEST_A).unwrap();
    let expected = ContentHash::of(&bytes);
    // Nothing held yet: the hash is computed.
    assert_eq!(engine.content_hash(&bytes), expected);
    let first = Plugin::from_bytes(&engine, &bytes, options(ResolvedSettings::default())).unwrap();
    // Held: found by fingerprint, confirmed against the bytes, the same hash and no compile.
    assert_eq!(engine.content_hash(&bytes), expected);
    let second = Plugin::from_bytes(&engine, &bytes, options(ResolvedSettings::default())).unwrap();
    assert_eq!(second.content_hash(), expected);
    assert_eq!(engine.compile_count(), 1);
    // Other bytes (one byte changed in a custom section's worth of trailing data) are other
    // content: hashed, never mistaken for the held code.
    let mut other = bytes.clone();
    other.extend_from_slice(&[0, 3, 1, b'x']);
    assert_eq!(engine.content_hash(&other), ContentHash::of(&other));
    assert_ne!(engine.content_hash(&other), expected);
    // Same length, same first and last 8 KiB (the fingerprint matches the held code's), one
    // byte different in the middle: the byte comparison catches it.
    assert!(bytes.len() > 64 * 1024);
    let mut middle = bytes.clone();
    middle[bytes.len() / 2] ^= 1;
    assert_eq!(engine.content_hash(&middle), ContentHash::of(&middle));
    assert_ne!(engine.content_hash(&middle), expected);
    drop((first, second));
    // Released: hashed again, still the same value.
    assert_eq!(engine.content_hash(&bytes), expected);
}
