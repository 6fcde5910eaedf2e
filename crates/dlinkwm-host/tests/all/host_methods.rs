use dlinkwm_host::core::{CallerInfo, Convention, HostCallError, HostCallHandler as _};
use dlinkwm_host::{Format, HostMethods, PluginHost};

use crate::{GreetParams, methods};

fn caller() -> CallerInfo<'static> {
    CallerInfo {
        plugin: "test",
        version: 1,
        convention: Convention::Dlinkwm,
    }
}

#[test]
fn extism_host_functions_get_strings_raw_and_everything_else_as_json() {
    let mut methods = methods();
    methods.register("report", |name: String| {
        Ok::<_, String>(GreetParams { name })
    });
    let extism = CallerInfo {
        convention: Convention::Extism,
        ..caller()
    };
    let mut output = Vec::new();
    // A string method: raw bytes in, raw bytes out.
    methods
        .call(extism, "greet_str", Format::Raw, b"Ada", &mut output)
        .unwrap();
    assert_eq!(output, b"hi Ada");
    // Struct parameters come as JSON; a struct answer goes as JSON.
    output.clear();
    methods
        .call(
            extism,
            "custom_greet",
            Format::Raw,
            br#"{"name":"Ada"}"#,
            &mut output,
        )
        .unwrap();
    assert_eq!(
        output,
        br#""Hello from custom handler, Ada!""#.as_slice()[1..32].to_vec()
    );
    output.clear();
    methods
        .call(extism, "report", Format::Raw, b"Ada", &mut output)
        .unwrap();
    assert_eq!(output, br#"{"name":"Ada"}"#);
    // Neither raw nor JSON: an error value, not a panic.
    output.clear();
    assert!(
        methods
            .call(
                extism,
                "custom_greet",
                Format::Raw,
                b"not json",
                &mut output
            )
            .is_err()
    );
    // Numbers travel as Extism's `ToBytes` writes them: little-endian, of their width.
    methods.register("double", |n: u32| Ok::<_, String>(n * 2));
    output.clear();
    methods
        .call(
            extism,
            "double",
            Format::Raw,
            &21u32.to_le_bytes(),
            &mut output,
        )
        .unwrap();
    assert_eq!(output, 42u32.to_le_bytes());
    output.clear();
    assert!(
        methods
            .call(extism, "double", Format::Raw, b"21", &mut output)
            .is_err()
    );
    // Several arguments come framed and are read as a tuple, each by the same convention.
    methods.register("scale", |(name, n, factor): (String, u32, f64)| {
        Ok::<_, String>(format!("{name}: {}", f64::from(n) * factor))
    });
    let several = CallerInfo {
        convention: Convention::ExtismArgs,
        ..caller()
    };
    let mut frame = Vec::new();
    dlinkwm_host::codec::frame_extism_args(
        &[b"x", &4u32.to_le_bytes(), &2.5f64.to_le_bytes()],
        &mut frame,
    );
    output.clear();
    methods
        .call(several, "scale", Format::Raw, &frame, &mut output)
        .unwrap();
    assert_eq!(output, b"x: 10");
    // A frame of another count of arguments, or a malformed one: an error, not a panic.
    for bad in [&frame[..frame.len() - 1], &frame[..4], b"".as_slice()] {
        output.clear();
        assert!(
            methods
                .call(several, "scale", Format::Raw, bad, &mut output)
                .is_err()
        );
    }
    let mut two = Vec::new();
    dlinkwm_host::codec::frame_extism_args(&[b"x", &4u32.to_le_bytes()], &mut two);
    assert!(
        methods
            .call(several, "scale", Format::Raw, &two, &mut output)
            .is_err()
    );
}

fn call(
    methods: &HostMethods,
    name: &str,
    format: Format,
    input: &[u8],
) -> Result<Vec<u8>, HostCallError> {
    let mut output = Vec::new();
    methods.call(caller(), name, format, input, &mut output)?;
    Ok(output)
}

#[test]
fn one_typed_method_serves_json_and_postcard() -> anyhow::Result<()> {
    let methods = methods();
    let json = call(&methods, "custom_greet", Format::Json, br#"{"name":"Ann"}"#)?;
    assert_eq!(
        serde_json::from_slice::<String>(&json)?,
        "Hello from custom handler, Ann!"
    );
    let input = postcard::to_allocvec(&GreetParams { name: "Bo".into() })?;
    let answer = call(&methods, "custom_greet", Format::Postcard, &input)?;
    assert_eq!(
        postcard::from_bytes::<String>(&answer)?,
        "Hello from custom handler, Bo!"
    );
    Ok(())
}

#[test]
fn typed_methods_take_raw_text_and_refuse_bad_input_as_values() {
    let methods = methods();
    // Raw carries a string as its UTF-8 bytes: fine for a method taking a String...
    assert_eq!(
        call(&methods, "greet_str", Format::Raw, b"zed"),
        Ok(b"hi zed".to_vec())
    );
    // ...refused, as a value, for one taking a struct.
    match call(&methods, "custom_greet", Format::Raw, b"x") {
        Err(HostCallError::Failed(message)) => {
            assert!(
                message.contains("raw format carries only a string"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    match call(&methods, "custom_greet", Format::Json, b"{not json") {
        Err(HostCallError::Failed(message)) => assert!(
            message.starts_with("invalid parameters for host method `custom_greet`"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        call(&methods, "nope", Format::Json, b"1"),
        Err(HostCallError::UnknownMethod("nope".into()))
    );
}

#[test]
fn raw_methods_get_bytes_and_format() -> anyhow::Result<()> {
    let mut methods = HostMethods::new();
    methods.register_raw("shout", |bytes: &[u8], format: Format| {
        if format != Format::Raw {
            return Err(format!("only raw, not {}", format.name()));
        }
        Ok(bytes.to_ascii_uppercase())
    });
    assert_eq!(call(&methods, "shout", Format::Raw, b"hey")?, b"HEY");
    assert_eq!(
        call(&methods, "shout", Format::Json, b"1"),
        Err(HostCallError::Failed("only raw, not json".into()))
    );
    assert_eq!(methods.names(), vec!["shout".to_owned()]);
    Ok(())
}

#[test]
fn declared_needs_are_checked_at_load_with_one_message_listing_what_is_missing()
-> anyhow::Result<()> {
    use dlinkwm_host::{Config, PluginError};
    use test_programs_artifacts::SDK_TEST_NEEDS;
    // Nothing granted, no methods: refused before any call, everything missing named at once.
    let bare = PluginHost::builder().build()?;
    let error = bare.load(SDK_TEST_NEEDS).unwrap_err();
    match error.as_plugin_error() {
        Some(PluginError::NeedsNotGranted { missing, .. }) => {
            assert_eq!(missing.len(), 3, "{missing:?}");
            assert!(missing[0].contains("custom_greet") && missing[0].contains("no such method"));
            assert!(missing[1].contains("DLINKWM_TEST_NEED"));
            assert!(missing[2].contains("/needed"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().contains("needs what it is not granted"),
        "{error}"
    );

    // The method registered but not allowed for this plugin.
    let dir = tempfile::tempdir()?;
    let granted = |host_methods: &str| -> anyhow::Result<Config> {
        Ok(Config::from_toml(&format!(
            "[defaults]\nenv = [\"DLINKWM_TEST_NEED\"]\nhost_methods = {host_methods}\n\
             preopens = [{{ host = {:?}, guest = \"/needed\" }}]\n",
            dir.path().display().to_string()
        ))?)
    };
    let host = PluginHost::builder()
        .host_methods(methods())
        .config(granted("[\"fails\"]")?)
        .build()?;
    let error = host.load(SDK_TEST_NEEDS).unwrap_err();
    match error.as_plugin_error() {
        Some(PluginError::NeedsNotGranted { missing, .. }) => {
            assert_eq!(missing.len(), 1, "{missing:?}");
            assert!(missing[0].contains("not in the plugin's `host_methods`"));
        }
        other => panic!("{other:?}"),
    }

    // Everything granted: it loads and answers.
    let host = PluginHost::builder()
        .host_methods(methods())
        .config(granted("[\"custom_greet\"]")?)
        .build()?;
    let plugin = host.load(SDK_TEST_NEEDS)?;
    let echoed: String = plugin.call("echo", "granted")?;
    assert_eq!(echoed, "granted");
    Ok(())
}
