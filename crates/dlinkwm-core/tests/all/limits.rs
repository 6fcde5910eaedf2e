use std::time::{Duration, Instant};

use dlinkwm_core::{Config, Engine, EngineOptions, Error, Plugin, ResolvedSettings};
use test_programs_artifacts::SDK_TEST_A;

use crate::{call_postcard, engine, options};

fn sdk_plugin(settings: ResolvedSettings) -> Plugin {
    Plugin::load(&engine(), SDK_TEST_A, options(settings)).expect("sdk_test loads")
}

fn settings(toml: &str) -> ResolvedSettings {
    Config::from_toml(toml)
        .expect("valid config")
        .settings_for("any.wasm")
}

#[test]
fn an_infinite_loop_times_out_and_the_plugin_stays_usable() -> anyhow::Result<()> {
    let plugin = sdk_plugin(settings("[defaults]\ntimeout_ms = 200\n"));
    let started = Instant::now();
    let error = call_postcard(&plugin, "spin", &()).unwrap_err();
    // Generous upper bound: only checks that the loop was stopped, not how fast.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        matches!(error, Error::Timeout { limit, .. } if limit == Duration::from_millis(200)),
        "{error:?}"
    );
    assert_eq!(
        postcard::from_bytes::<String>(&call_postcard(&plugin, "echo", &"ok")?)?,
        "ok"
    );
    Ok(())
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() -> anyhow::Result<()> {
    let plugin = sdk_plugin(settings("[defaults]\nmax_memory_mib = 32\n"));
    let error = call_postcard(&plugin, "grow", &64u32).unwrap_err();
    match error {
        Error::MemoryLimit {
            limit, requested, ..
        } => {
            assert_eq!(limit, 32 << 20);
            assert!(requested > limit);
        }
        other => panic!("{other:?}"),
    }
    // Within the limit it works, on a fresh instance.
    assert_eq!(
        postcard::from_bytes::<u64>(&call_postcard(&plugin, "grow", &4u32)?)?,
        4 << 20
    );
    Ok(())
}

#[test]
fn deep_recursion_is_a_stack_overflow_trap() -> anyhow::Result<()> {
    let plugin = sdk_plugin(ResolvedSettings::default());
    let error = call_postcard(&plugin, "recurse", &100_000_000u64).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Trap {
                code: Some(wasmtime::Trap::StackOverflow),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        postcard::from_bytes::<u64>(&call_postcard(&plugin, "recurse", &10u64)?)?,
        10
    );
    Ok(())
}

#[test]
fn output_and_input_limits_are_typed_errors() -> anyhow::Result<()> {
    let plugin = sdk_plugin(settings(
        "[defaults]\nmax_output_bytes = 1000\nmax_input_bytes = 100\n",
    ));
    let error = call_postcard(&plugin, "output_of", &5000u32).unwrap_err();
    assert!(
        matches!(error, Error::OutputTooLarge { limit: 1000, .. }),
        "{error:?}"
    );
    let error = call_postcard(&plugin, "echo", &"x".repeat(200)).unwrap_err();
    assert!(
        matches!(error, Error::InputTooLarge { limit: 100, .. }),
        "{error:?}"
    );
    assert_eq!(call_postcard(&plugin, "output_of", &10u32)?.len(), 11);
    Ok(())
}

#[test]
fn fuel_limits_a_call_when_the_engine_meters_it() -> anyhow::Result<()> {
    let engine = Engine::new(EngineOptions::default().with_consume_fuel(true))?;
    let plugin = Plugin::load(
        &engine,
        SDK_TEST_A,
        options(settings("[defaults]\nfuel = 100000\n")),
    )?;
    let error = call_postcard(&plugin, "spin", &()).unwrap_err();
    assert!(
        matches!(error, Error::OutOfFuel { fuel: 100_000, .. }),
        "{error:?}"
    );
    assert_eq!(
        postcard::from_bytes::<i64>(&call_postcard(&plugin, "add", &(1i64, 2i64))?)?,
        3
    );
    // A fuel setting on an engine that does not meter fuel is refused up front.
    let error = Plugin::load(
        &crate::engine(),
        SDK_TEST_A,
        options(settings("[defaults]\nfuel = 10\n")),
    )
    .unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error:?}");
    Ok(())
}

#[test]
fn wasi_grants_nothing_by_default() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("secret.txt");
    std::fs::write(&file, "secret")?;
    // SAFETY: the variable is unique to this test and set before any thread reads it.
    unsafe { std::env::set_var("DLINKWM_TEST_SECRET", "hunter2") };
    let plugin = sdk_plugin(ResolvedSettings::default());
    let error = call_postcard(&plugin, "read_file", &file.display().to_string()).unwrap_err();
    assert!(matches!(error, Error::Guest { .. }), "{error:?}");
    let env = call_postcard(&plugin, "read_env", &"DLINKWM_TEST_SECRET")?;
    assert_eq!(postcard::from_bytes::<Option<String>>(&env)?, None);

    let granted = settings(&format!(
        "[defaults]\nenv = [\"DLINKWM_TEST_SECRET\"]\npreopens = [{{ host = {:?}, guest = \"/data\" }}]\n",
        dir.path().display().to_string()
    ));
    let plugin = sdk_plugin(granted);
    let read = call_postcard(&plugin, "read_file", &"/data/secret.txt")?;
    assert_eq!(postcard::from_bytes::<String>(&read)?, "secret");
    let env = call_postcard(&plugin, "read_env", &"DLINKWM_TEST_SECRET")?;
    assert_eq!(
        postcard::from_bytes::<Option<String>>(&env)?,
        Some("hunter2".to_owned())
    );
    // Read-only by default: writing is refused.
    let error = call_postcard(&plugin, "write_file", &"/data/new.txt").unwrap_err();
    assert!(matches!(error, Error::Guest { .. }), "{error:?}");
    assert!(!dir.path().join("new.txt").exists());
    Ok(())
}

#[test]
fn fuel_consumed_is_reported_per_call() -> anyhow::Result<()> {
    let engine = Engine::new(EngineOptions::default().with_consume_fuel(true))?;
    let plugin = Plugin::load(
        &engine,
        SDK_TEST_A,
        options(settings("[defaults]\nfuel = 10000000\n")),
    )?;
    let input = postcard::to_allocvec(&1000u64)?;
    let deep = plugin.call_metered("recurse", dlinkwm_core::Format::Postcard, &input, |_| ())?;
    let input = postcard::to_allocvec(&10u64)?;
    let shallow = plugin.call_metered("recurse", dlinkwm_core::Format::Postcard, &input, |_| ())?;
    let (deep, shallow) = (deep.fuel_consumed.unwrap(), shallow.fuel_consumed.unwrap());
    assert!(
        shallow > 0 && deep > shallow,
        "deep {deep}, shallow {shallow}"
    );
    // Without fuel metering nothing is reported.
    let plain = sdk_plugin(ResolvedSettings::default());
    let metered = plain.call_metered("noop", dlinkwm_core::Format::Postcard, &[], |_| ())?;
    assert_eq!(metered.fuel_consumed, None);
    Ok(())
}

#[test]
fn a_table_growth_beyond_the_limit_fails_inside_the_guest() -> anyhow::Result<()> {
    let wat = r#"(module
        (table $t 1 funcref)
        (func (export "grow_table") (result i32)
            (table.grow $t (ref.null func) (i32.const 100000)))
        (global $result (mut i32) (i32.const 0))
        (func (export "run") (global.set $result (call 0))
            (if (i32.ne (global.get $result) (i32.const -1)) (then unreachable))))"#;
    let plugin = Plugin::from_bytes(
        &engine(),
        wat.as_bytes(),
        options(settings("[defaults]\nmax_table_elements = 1000\n")),
    )?;
    // table.grow returns -1 when the limiter refuses, so `run` completes without trapping.
    plugin.call_raw("run", &[])?;
    let generous = Plugin::from_bytes(
        &engine(),
        wat.as_bytes(),
        options(settings("[defaults]\nmax_table_elements = 1000000\n")),
    )?;
    assert!(matches!(
        generous.call_raw("run", &[]),
        Err(Error::Trap { .. })
    ));
    Ok(())
}

#[test]
fn arguments_are_only_the_plugin_name_unless_granted() -> anyhow::Result<()> {
    let plugin = sdk_plugin(ResolvedSettings::default());
    let args: Vec<String> = postcard::from_bytes(&call_postcard(&plugin, "args", &())?)?;
    assert_eq!(args, vec![SDK_TEST_A.to_owned()]);
    let plugin = sdk_plugin(settings("[defaults]\nargs = [\"--verbose\", \"x\"]\n"));
    let args: Vec<String> = postcard::from_bytes(&call_postcard(&plugin, "args", &())?)?;
    assert_eq!(
        args,
        vec![
            SDK_TEST_A.to_owned(),
            "--verbose".to_owned(),
            "x".to_owned()
        ]
    );
    Ok(())
}
