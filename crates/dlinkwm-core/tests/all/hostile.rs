//! Guests that hand the host bad pointers, lengths and strings.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dlinkwm_core::{
    CallerInfo, Error, Format, HostCallError, HostCallHandler, Plugin, ResolvedSettings,
};

use crate::{abi_module, engine, options, options_with_host};

fn load(wat: &str) -> Plugin {
    Plugin::from_bytes(
        &engine(),
        wat.as_bytes(),
        options(ResolvedSettings::default()),
    )
    .expect("module loads")
}

fn assert_guest_memory(result: dlinkwm_core::Result<Vec<u8>>, needle: &str) {
    match result {
        Err(Error::GuestMemory { reason, .. }) => assert!(reason.contains(needle), "{reason}"),
        other => panic!("expected a guest memory error about {needle}, got {other:?}"),
    }
}

#[test]
fn an_output_pointer_outside_memory_is_refused() {
    let plugin = load(&abi_module(
        1,
        "i32.const 65530 i32.const 100 call $set_output i32.const 0",
        "",
    ));
    assert_guest_memory(plugin.call_raw("run", &[]), "output");
}

#[test]
fn a_four_gib_length_is_refused() {
    let plugin = load(&abi_module(
        1,
        "i32.const 16 i32.const -1 call $set_output i32.const 0",
        "",
    ));
    assert_guest_memory(plugin.call_raw("run", &[]), "length 4294967295");
}

#[test]
fn a_method_name_that_is_not_utf8_is_refused() {
    let body = "i32.const 200 i32.const 2 i32.const 1 i32.const 0 i32.const 0 call $host_call";
    let plugin = load(&abi_module(1, body, r#"(data (i32.const 200) "\ff\fe")"#));
    assert_guest_memory(plugin.call_raw("run", &[]), "not UTF-8");
}

#[test]
fn a_host_result_buffer_outside_memory_is_refused() {
    // Calls an unknown method (the error message is the result), then asks for it at the very
    // end of memory.
    let body = "i32.const 16 i32.const 5 i32.const 1 i32.const 0 i32.const 0 call $host_call drop
                i32.const 65535 call $host_result_read i32.const 0";
    let plugin = load(&abi_module(1, body, ""));
    assert_guest_memory(plugin.call_raw("run", &[]), "host result buffer");
}

#[test]
fn an_alloc_that_returns_a_bad_pointer_is_refused() {
    let wat = r#"(module
        (import "dlinkwm" "set_output" (func (param i32 i32)))
        (memory (export "memory") 1)
        (func (export "dlinkwm_abi_version") (result i32) i32.const 1)
        (func (export "dlinkwm_alloc") (param i32) (result i32) i32.const -16)
        (func (export "run") (param i32 i32 i32) (result i32) i32.const 0))"#;
    let plugin = load(wat);
    assert_guest_memory(plugin.call_raw("run", b"input"), "input buffer");
    // Empty input needs no allocation, so the entry still runs.
    assert_eq!(plugin.call_raw("run", &[]).unwrap(), Vec::<u8>::new());
}

#[test]
fn an_unknown_entry_status_is_a_guest_error() {
    let plugin = load(&abi_module(1, "i32.const 77", ""));
    let error = plugin.call_raw("run", &[]).unwrap_err();
    assert!(
        matches!(&error, Error::Guest { message, .. } if message.contains("unknown status 77")),
        "{error:?}"
    );
}

#[test]
fn an_error_status_without_a_message_still_says_so() {
    let plugin = load(&abi_module(1, "i32.const 1", ""));
    let error = plugin.call_raw("run", &[]).unwrap_err();
    assert!(
        matches!(&error, Error::Guest { message, .. } if message.contains("without a message")),
        "{error:?}"
    );
}

/// A host method that counts how often it ran.
struct Counting(Arc<AtomicUsize>);

impl HostCallHandler for Counting {
    fn call(
        &self,
        _: CallerInfo<'_>,
        method: &str,
        _: Format,
        input: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<(), HostCallError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        if method != "hello" {
            return Err(HostCallError::UnknownMethod(method.to_owned()));
        }
        output.extend_from_slice(input);
        Ok(())
    }
}

#[test]
fn host_method_permissions_deny_as_a_value_and_skip_the_method() -> anyhow::Result<()> {
    // Calls "hello" and returns the status as the first output byte.
    let body = "i32.const 16 i32.const 5 i32.const 0 i32.const 16 i32.const 5 call $host_call
                i32.store8 (i32.const 300) (i32.const 300) i32.const 300 i32.const 1 call $set_output i32.const 0";
    let body = body.replace(
        "i32.store8 (i32.const 300) (i32.const 300)",
        "local.set 0 i32.const 300 local.get 0 i32.store8",
    );
    let wat = abi_module(1, &body, "");
    let count = Arc::new(AtomicUsize::new(0));
    let mut settings = ResolvedSettings::default();
    let plugin = Plugin::from_bytes(
        &engine(),
        wat.as_bytes(),
        options_with_host(settings.clone(), Counting(count.clone())),
    )?;
    assert_eq!(
        plugin.call_raw("run", &[])?,
        vec![dlinkwm_core::abi::Status::Ok.code() as u8]
    );
    assert_eq!(count.load(Ordering::Relaxed), 1);
    settings.host_methods = Some(Arc::from(vec!["other".to_owned()]));
    plugin.set_settings(settings)?;
    assert_eq!(
        plugin.call_raw("run", &[])?,
        vec![dlinkwm_core::abi::Status::PermissionDenied.code() as u8]
    );
    assert_eq!(
        count.load(Ordering::Relaxed),
        1,
        "a denied method must not run"
    );
    Ok(())
}

#[test]
fn a_trap_discards_the_instance_and_the_next_call_gets_a_fresh_one() -> anyhow::Result<()> {
    let wat = r#"(module
        (global $calls (mut i32) (i32.const 0))
        (func (export "bump") global.get $calls i32.const 1 i32.add global.set $calls
            global.get $calls i32.const 2 i32.eq if unreachable end)
        (func (export "boom") unreachable))"#;
    let plugin = load(wat);
    plugin.call_raw("bump", &[])?;
    // The second call on the same instance traps, which shows the instance is reused...
    let error = plugin.call_raw("bump", &[]).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Trap {
                code: Some(wasmtime::Trap::UnreachableCodeReached),
                ..
            }
        ),
        "{error:?}"
    );
    // ...and after the trap a fresh instance starts from zero again.
    plugin.call_raw("bump", &[])?;
    assert!(plugin.call_raw("boom", &[]).is_err());
    assert_eq!(plugin.live_instances(), 0);
    plugin.call_raw("bump", &[])?;
    assert_eq!(plugin.live_instances(), 1);
    Ok(())
}

#[test]
fn a_needs_section_too_large_or_not_text_is_refused_as_an_invalid_module() {
    let module = |section: &str| {
        format!(r#"(module (@custom "dlinkwm-needs" "{section}") (func (export "run")))"#)
    };
    let load = |wat: String| {
        let bytes = wat::parse_str(&wat).expect("valid wat");
        Plugin::from_bytes(&engine(), &bytes, options(ResolvedSettings::default()))
    };
    let big = "env X\\0a".repeat(12 * 1024);
    for (what, wat) in [
        ("over 64 KiB", module(&big)),
        ("not UTF-8", module("env \\ff\\fe")),
        ("an ABI version that is not a number", module("abi one")),
    ] {
        match load(wat) {
            Err(Error::InvalidModule { reason, .. }) => {
                assert!(reason.contains("dlinkwm-needs"), "{what}: {reason}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // A plain module declaring an environment variable it is not granted is refused with it.
    match load(module("abi 1\\0aenv SECRET_TOKEN\\0a")) {
        Err(Error::NeedsNotGranted { missing, .. }) => {
            assert_eq!(
                missing,
                ["environment variable `SECRET_TOKEN` (not in `env`)"]
            )
        }
        other => panic!("{other:?}"),
    }
    // A wrong ABI version is named too.
    match load(module("abi 9")) {
        Err(Error::NeedsNotGranted { missing, .. }) => {
            assert!(missing[0].contains("ABI version 9"))
        }
        other => panic!("{other:?}"),
    }
}
