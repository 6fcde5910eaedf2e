use dlinkwm_host::core::Error as CoreError;
use dlinkwm_host::{Config, Error, Format, PluginHost};
use serde::{Deserialize, Serialize};
use test_programs_artifacts::{HELLO, SDK_TEST_A, WASM_TEST};

use crate::{GreetParams, host, methods};

#[test]
fn hello_greets_through_the_host_method_in_both_formats() -> anyhow::Result<()> {
    let host = host();
    let plugin = host.load(HELLO)?;
    let params = GreetParams {
        name: "World".into(),
    };
    let greeting: String = plugin.call("greet", &params)?;
    assert_eq!(
        greeting,
        "hello plugin greets World; the host said: Hello from custom handler, World!"
    );
    let json: String = plugin.call_with("greet", Format::Json, &params)?;
    assert_eq!(json, greeting);
    Ok(())
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Point {
    x: i64,
    y: i64,
    label: String,
}

#[test]
fn typed_struct_round_trip_and_zero_arg_entries() -> anyhow::Result<()> {
    let plugin = host().load(SDK_TEST_A)?;
    let point = Point {
        x: 1,
        y: -2,
        label: "p".into(),
    };
    for format in [Format::Postcard, Format::Json] {
        let flipped: Point = plugin.call_with("flip", format, &point)?;
        assert_eq!(
            flipped,
            Point {
                x: -2,
                y: 1,
                label: "p".into()
            }
        );
        let variant: String = plugin.call_with("variant", format, &())?;
        assert_eq!(variant, "a");
        let unit: () = plugin.call_with("noop", format, &())?;
        assert_eq!(unit, ());
    }
    let sum: i64 = plugin.call("add", &(40i64, 2i64))?;
    assert_eq!(sum, 42);
    Ok(())
}

#[test]
fn bytes_travel_as_bytes_in_every_format() -> anyhow::Result<()> {
    use dlinkwm_host::Bytes;
    let plugin = host().load(SDK_TEST_A)?;
    // Every byte value, not UTF-8: the raw format carries it as it is.
    let data = Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<_>>());
    for format in [Format::Postcard, Format::Raw, Format::Json] {
        let echoed: Bytes = plugin.call_with("echo_buf", format, &data)?;
        assert_eq!(echoed, data, "{format:?}");
    }
    // What crosses the boundary in postcard: a varint length and the bytes, nothing per byte.
    let encoded = plugin.call_bytes("echo_buf", Format::Postcard, &[3, 0, 255, 7])?;
    assert_eq!(encoded, [3, 0, 255, 7]);
    let raw = plugin.call_bytes("echo_buf", Format::Raw, &[0, 255, 7])?;
    assert_eq!(raw, [0, 255, 7]);
    // A string in raw is its bytes, the empty string included.
    let raw = plugin.with_format(Format::Raw);
    let text: String = raw.call("echo", "hé")?;
    assert_eq!(text, "hé");
    let empty: String = raw.call("echo", "")?;
    assert_eq!(empty, "");
    Ok(())
}

#[test]
fn a_guest_error_is_a_typed_error_and_the_plugin_carries_on() -> anyhow::Result<()> {
    let plugin = host().load(SDK_TEST_A)?;
    let error = plugin.call::<_, ()>("fail", "no such user").unwrap_err();
    match error.as_plugin_error() {
        Some(CoreError::Guest { entry, message, .. }) => {
            assert_eq!(entry, "fail");
            assert_eq!(message, "no such user");
        }
        other => panic!("expected a guest error, got {other:?}"),
    }
    let echoed: String = plugin.call("echo", "still here")?;
    assert_eq!(echoed, "still here");
    Ok(())
}

#[test]
fn a_panic_carries_its_message_and_the_next_call_succeeds() -> anyhow::Result<()> {
    let plugin = host().load(SDK_TEST_A)?;
    let error = plugin
        .call::<_, String>("panic_now", "boom at line 7")
        .unwrap_err();
    match error.as_plugin_error() {
        Some(CoreError::GuestPanic { message, .. }) => {
            assert!(message.contains("boom at line 7"), "{message}")
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    let echoed: String = plugin.call("echo", "after the panic")?;
    assert_eq!(echoed, "after the panic");
    Ok(())
}

/// The argument of the test plugin's `call_host*` entries.
#[derive(Serialize)]
struct HostCall<'a> {
    method: &'a str,
    arg: &'a str,
}

#[test]
fn unknown_host_method_reaches_the_guest_as_a_value() -> anyhow::Result<()> {
    let plugin = host().load(SDK_TEST_A)?;
    let report: String = plugin.call(
        "call_host_report",
        &HostCall {
            method: "nope",
            arg: "x",
        },
    )?;
    assert_eq!(report, "UnknownMethod: unknown host method `nope`");
    let report: String = plugin.call(
        "call_host_report",
        &HostCall {
            method: "greet_str",
            arg: "bob",
        },
    )?;
    assert_eq!(report, "ok: hi bob");
    Ok(())
}

#[test]
fn a_host_method_error_reaches_the_guest_which_answers_with_it() -> anyhow::Result<()> {
    let plugin = host().load(SDK_TEST_A)?;
    let report: String = plugin.call(
        "call_host_report",
        &HostCall {
            method: "fails",
            arg: "x",
        },
    )?;
    assert_eq!(report, "HostMethod: the database is down");
    // The guest propagates it with `?`: the host sees the guest's error carrying the message.
    let error = plugin
        .call::<_, String>(
            "call_host",
            &HostCall {
                method: "fails",
                arg: "x",
            },
        )
        .unwrap_err();
    assert!(
        matches!(error.as_plugin_error(), Some(CoreError::Guest { message, .. }) if message == "the database is down"),
        "{error:?}"
    );
    // JSON host calls work the same way.
    let answer: String = plugin.call(
        "call_host_json",
        &HostCall {
            method: "greet_str",
            arg: "ann",
        },
    )?;
    assert_eq!(answer, "hi ann");
    Ok(())
}

#[test]
fn a_panicking_host_method_is_an_error_for_the_guest() -> anyhow::Result<()> {
    let plugin = host().load(SDK_TEST_A)?;
    let report: String = plugin.call(
        "call_host_report",
        &HostCall {
            method: "panics",
            arg: "x",
        },
    )?;
    assert_eq!(
        report,
        "HostMethod: host method `panics` panicked: host method bug"
    );
    Ok(())
}

#[test]
fn decoding_the_wrong_output_type_is_a_decode_error() -> anyhow::Result<()> {
    let plugin = host().load(SDK_TEST_A)?;
    let error = plugin
        .call_with::<_, u64>("echo", Format::Json, "text")
        .unwrap_err();
    assert!(
        matches!(error, Error::Decode { ref entry, .. } if entry == "echo"),
        "{error:?}"
    );
    Ok(())
}

#[test]
fn config_allowlist_and_call_by_config_fallback() -> anyhow::Result<()> {
    let config = Config::from_toml(&format!(
        "[entry_functions]\n{WASM_TEST:?} = [\"missing_entry_is_refused_at_load\"]\n"
    ));
    // A configured entry that the plugin lacks is refused when the plugin is loaded.
    let host = PluginHost::builder()
        .config(config?)
        .host_methods(methods())
        .build()?;
    let error = host.load(WASM_TEST).unwrap_err();
    assert!(
        matches!(
            error.as_plugin_error(),
            Some(CoreError::EntryNotFound { .. })
        ),
        "{error:?}"
    );

    let config = Config::from_toml(&format!(
        "[entry_functions]\n{SDK_TEST_A:?} = [\"fail\", \"variant\"]\n"
    ))?;
    let host = PluginHost::builder()
        .config(config)
        .host_methods(methods())
        .build()?;
    let plugin = host.load(SDK_TEST_A)?;
    let error = plugin.call::<_, String>("echo", "x").unwrap_err();
    assert!(
        matches!(error.as_plugin_error(), Some(CoreError::EntryNotAllowed { entry, allowed, .. }) if entry == "echo" && allowed.len() == 2),
        "{error:?}"
    );
    // "fail" fails (it cannot even decode empty input), so the next configured entry answers.
    let (entry, output) = plugin.call_configured(&[])?;
    assert_eq!(entry, "variant");
    assert_eq!(postcard::from_bytes::<String>(&output)?, "a");
    Ok(())
}

#[test]
fn the_original_wasm_test_module_runs_both_entries() -> anyhow::Result<()> {
    let plugin = host().load(WASM_TEST)?;
    plugin.call_raw("dlinkwm_print_hello_wasm", &[])?;
    let result: String = plugin.call("dlinkwm_call_host_method", &())?;
    assert_eq!(result, "Hello from custom handler, WASM!");
    let names: Vec<String> = plugin
        .entries()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    assert!(
        names.contains(&"dlinkwm_print_hello_wasm".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"dlinkwm_call_host_method".to_owned()),
        "{names:?}"
    );
    Ok(())
}
