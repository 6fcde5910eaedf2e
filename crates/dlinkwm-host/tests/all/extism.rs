//! Extism plugins, built with the Extism Rust PDK (`extism-pdk` from crates.io, nothing of
//! DlinkWM in them), run unchanged: calls raw and typed, config, vars, host functions, errors,
//! logging, HTTP, limits, hot reload; and WAT fixtures that hand the kernel bad values.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dlinkwm_host::core::Error as CoreError;
use dlinkwm_host::{Config, HostMethods, PluginHost, PluginKind};
use serde::Deserialize;
use test_programs_artifacts::{EXTISM_A, EXTISM_B};

#[derive(Debug, Deserialize, PartialEq)]
struct Report {
    count: i32,
    total: i32,
    vowels: String,
}

fn methods() -> HostMethods {
    let mut methods = HostMethods::new();
    methods.register("hello_world", |name: String| {
        Ok::<_, String>(format!("Hello, {name}!"))
    });
    methods.register("pair", |(a, b): (String, String)| {
        Ok::<_, String>(format!("{a}+{b}"))
    });
    methods
}

fn host_with(toml: &str) -> PluginHost {
    PluginHost::builder()
        .host_methods(methods())
        .config(Config::from_toml(toml).expect("valid configuration"))
        .build()
        .expect("host builds")
}

fn plugin_error(error: &dlinkwm_host::Error) -> &CoreError {
    error.as_plugin_error().expect("an error of the plugin")
}

#[test]
fn count_vowels_answers_what_extism_answers_and_keeps_its_total_in_a_var() -> anyhow::Result<()> {
    let host = host_with("");
    let plugin = host.load(EXTISM_A)?;
    assert_eq!(plugin.kind(), PluginKind::Extism);
    let names: Vec<String> = plugin.entries().into_iter().map(|e| e.name).collect();
    for expected in ["count_vowels", "echo", "greet", "fail", "calls"] {
        assert!(names.iter().any(|name| name == expected), "{names:?}");
    }
    // Raw bytes in, Extism's JSON out.
    let output = plugin.call_raw("count_vowels", b"Hello, world!")?;
    assert_eq!(
        String::from_utf8(output)?,
        r#"{"count":3,"total":3,"vowels":"aeiouAEIOU"}"#
    );
    // Typed: a string goes as its bytes, the report comes back from JSON; the var `total`
    // persists on the instance between calls, as in Extism.
    let report: Report = plugin.call("count_vowels", "aeiou")?;
    assert_eq!(
        report,
        Report {
            count: 5,
            total: 8,
            vowels: "aeiouAEIOU".to_owned()
        }
    );
    assert_eq!(
        plugin.call::<_, String>("echo", "bytes as they are")?,
        "bytes as they are"
    );
    // A self-describing target reads the JSON, not the text.
    let value: serde_json::Value = plugin.call("count_vowels", "aa")?;
    assert_eq!(value["count"], 2);
    let big = vec![7u8; 300_000];
    assert_eq!(plugin.call_raw("echo", &big)?, big);
    assert_eq!(plugin.call_raw("echo", b"")?, b"");
    Ok(())
}

#[test]
fn config_comes_from_the_plugins_settings() -> anyhow::Result<()> {
    let host = host_with(&format!(
        "[plugins.{:?}]\nconfig = {{ vowels = \"o\" }}\n",
        EXTISM_A
    ));
    let plugin = host.load(EXTISM_A)?;
    let report: Report = plugin.call("count_vowels", "Hello, world!")?;
    assert_eq!((report.count, report.vowels.as_str()), (2, "o"));
    Ok(())
}

#[test]
fn host_functions_are_host_methods_and_their_permissions_apply() -> anyhow::Result<()> {
    let host = host_with("");
    let plugin = host.load(EXTISM_A)?;
    assert_eq!(
        plugin.call::<_, String>("greet", "Ada")?,
        "the host said: Hello, Ada!"
    );
    // Not in the plugin's allowlist: the call fails, the host carries on.
    let denied = host_with(&format!(
        "[plugins.{:?}]\nhost_methods = [\"something_else\"]\n",
        EXTISM_A
    ));
    let plugin = denied.load(EXTISM_A)?;
    let error = plugin.call::<_, String>("greet", "Ada").unwrap_err();
    match plugin_error(&error) {
        CoreError::Guest { message, .. } => {
            assert!(
                message.contains("hello_world") && message.contains("not allowed"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A host without the method loads the plugin (its other functions work) and the call
    // that needs it fails with a message naming it.
    let bare = PluginHost::builder().build()?;
    let plugin = bare.load(EXTISM_A)?;
    assert_eq!(plugin.call::<_, String>("variant", &())?, "a");
    let error = plugin.call::<_, String>("greet", "Ada").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown host method `hello_world`"),
        "{error}"
    );
    Ok(())
}

#[test]
fn an_error_a_trap_and_the_limits_end_the_call_and_the_plugin_serves_on() -> anyhow::Result<()> {
    let host = host_with(&format!(
        "[plugins.{:?}]\ntimeout_ms = 300\nmax_memory_mib = 64\n",
        EXTISM_A
    ));
    let plugin = host.load(EXTISM_A)?;
    let error = plugin.call::<_, ()>("fail", "on purpose").unwrap_err();
    match plugin_error(&error) {
        CoreError::Guest { message, .. } => {
            assert!(
                message.contains("failed on purpose: on purpose"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let error = plugin.call::<_, ()>("trap", &()).unwrap_err();
    assert!(
        matches!(plugin_error(&error), CoreError::Trap { .. }),
        "{error:?}"
    );
    let error = plugin.call::<_, ()>("spin", &()).unwrap_err();
    assert!(
        matches!(plugin_error(&error), CoreError::Timeout { .. }),
        "{error:?}"
    );
    let error = plugin.call::<_, String>("hog", "100").unwrap_err();
    assert!(
        matches!(plugin_error(&error), CoreError::MemoryLimit { .. }),
        "{error:?}"
    );
    assert_eq!(plugin.call::<_, String>("hog", "8")?, (8 << 20).to_string());
    assert_eq!(plugin.call::<_, String>("variant", &())?, "a");
    Ok(())
}

#[test]
fn an_http_request_is_refused_unless_its_host_is_allowed() -> anyhow::Result<()> {
    let server = HttpServer::start()?;
    let url = format!("http://127.0.0.1:{}/hello", server.port);
    // Denied by default.
    let plugin = host_with("").load(EXTISM_A)?;
    let error = plugin.call::<_, String>("fetch", &url).unwrap_err();
    match plugin_error(&error) {
        CoreError::Guest { message, .. } => assert!(message.contains("not allowed"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
    // A glob that does not match is still a refusal.
    let plugin = host_with(&format!(
        "[plugins.{:?}]\nallowed_hosts = [\"*.example.com\"]\n",
        EXTISM_A
    ))
    .load(EXTISM_A)?;
    assert!(plugin.call::<_, String>("fetch", &url).is_err());
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
    // Allowed: a real request to a real server.
    let plugin = host_with(&format!(
        "[plugins.{:?}]\nallowed_hosts = [\"127.0.0.1\"]\n",
        EXTISM_A
    ))
    .load(EXTISM_A)?;
    assert_eq!(
        plugin.call::<_, String>("fetch", &url)?,
        "200 hello from the server"
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // A redirect is answered, not followed (its target could be a host not allowed).
    let moved = format!("http://127.0.0.1:{}/moved", server.port);
    assert_eq!(plugin.call::<_, String>("fetch", &moved)?, "302 ");
    Ok(())
}

#[test]
fn log_lines_reach_tracing_at_their_levels() -> anyhow::Result<()> {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let plugin = host_with("").load(EXTISM_A)?;
    tracing::subscriber::with_default(subscriber, || plugin.call::<_, ()>("log_lines", "hi"))?;
    let text = String::from_utf8(lines.0.lock().unwrap().clone())?;
    assert!(
        text.contains("INFO") && text.contains("info from the plugin: hi"),
        "{text}"
    );
    assert!(
        text.contains("WARN") && text.contains("warn from the plugin: hi"),
        "{text}"
    );
    // Below the subscriber's level: the plugin does not even send it (get_log_level).
    assert!(!text.contains("debug from the plugin"), "{text}");
    Ok(())
}

#[test]
fn a_hot_reload_under_calls_fails_none_and_hands_the_vars_over() -> anyhow::Result<()> {
    let host = host_with("");
    let plugin = host.load(EXTISM_A)?;
    for expected in 1..=3 {
        assert_eq!(
            plugin.call::<_, String>("calls", &())?,
            expected.to_string()
        );
    }
    let (a, b) = (std::fs::read(EXTISM_A)?, std::fs::read(EXTISM_B)?);
    plugin.reload_from_bytes(&b)?;
    assert_eq!(plugin.call::<_, String>("variant", &())?, "b");
    // The var `calls` came over with the reload.
    assert_eq!(plugin.call::<_, String>("calls", &())?, "4");

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (plugin, stop) = (plugin.clone(), stop.clone());
            let (failed, answered) = (failed.clone(), answered.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match plugin.call::<_, String>("variant", &()) {
                        Ok(variant) if variant == "a" || variant == "b" => {
                            answered.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for round in 0..20 {
        // Each reload lands while the callers are calling: it waits for their next answers.
        let seen = answered.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while answered.load(Ordering::Relaxed) < seen + 2 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        let bytes = if round % 2 == 0 { &a } else { &b };
        plugin.reload_from_bytes(bytes)?;
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.join().expect("the caller does not panic");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(answered.load(Ordering::Relaxed) > 0);
    assert_eq!(plugin.call::<_, String>("variant", &())?, "b");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_await_async_host_methods_and_http() -> anyhow::Result<()> {
    let server = HttpServer::start()?;
    let mut methods = HostMethods::new();
    methods.register_async("hello_world", |name: String| async move {
        tokio::task::yield_now().await;
        Ok::<_, String>(format!("later, {name}"))
    });
    let host = PluginHost::builder()
        .host_methods(methods)
        .config(Config::from_toml(&format!(
            "[plugins.{:?}]\nallowed_hosts = [\"127.0.0.1\"]\n",
            EXTISM_A
        ))?)
        .build()?;
    let plugin = host.load_async(EXTISM_A).await?;
    let report: Report = plugin.call_async("count_vowels", "Hello, world!").await?;
    assert_eq!(report.count, 3);
    assert_eq!(
        plugin.call_async::<_, String>("greet", "Ada").await?,
        "the host said: later, Ada"
    );
    let url = format!("http://127.0.0.1:{}/hello", server.port);
    assert_eq!(
        plugin.call_async::<_, String>("fetch", &url).await?,
        "200 hello from the server"
    );
    Ok(())
}

/// An Extism plugin that hands the kernel bad values, one function each.
const HOSTILE: &str = r#"
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "free" (func $free (param i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "load_u64" (func $load_u64 (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "var_set" (func $var_set (param i64 i64)))
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (import "extism:host/env" "http_request" (func $http (param i64 i64) (result i64)))
  (import "extism:host/user" "pair" (func $pair (param i64 i64) (result i64)))
  (import "extism:host/user" "sixteen" (func $sixteen (param i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64) (result i64)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (global $n (mut i64) (i64.const 0))
  (func (export "pair_with_garbage") (result i32)
    (drop (call $pair (call $alloc (i64.const 4)) (i64.const 0x123456789))) (i32.const 0))
  (func (export "one_block_sixteen_times") (result i32) (local $b i64)
    (local.set $b (call $alloc (i64.const 2097152)))
    (drop (call $sixteen (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b) (local.get $b))) (i32.const 0))
  (func (export "load_far") (result i32)
    (drop (call $load_u64 (i64.const 0x7fffffffffff))) (i32.const 0))
  (func (export "load_negative") (result i32)
    (drop (call $load_u64 (i64.const -1))) (i32.const 0))
  (func (export "store_past_the_end") (result i32) (local $b i64)
    (local.set $b (call $alloc (i64.const 8)))
    (call $store_u8 (i64.add (local.get $b) (i64.const 1000000)) (i32.const 1)) (i32.const 0))
  (func (export "output_outside") (result i32)
    (call $output_set (i64.const 1) (i64.const 0x100000000)) (i32.const 0))
  (func (export "input_past_its_end") (result i32)
    (drop (call $input_load_u8 (call $input_length))) (i32.const 0))
  (func (export "config_of_garbage") (result i32)
    (drop (call $config_get (i64.const 0x123456789))) (i32.const 0))
  (func (export "alloc_huge") (result i32)
    (drop (call $alloc (i64.const -1))) (i32.const 0))
  (func (export "alloc_forever") (result i32)
    (loop $again (drop (call $alloc (i64.const 1048576))) (br $again)) (i32.const 0))
  (func (export "garbage_handles") (result i32)
    (call $free (i64.const 0)) (call $free (i64.const 99999)) (call $free (i64.const -1))
    (i32.wrap_i64 (i64.add (call $length (i64.const 12345))
      (i64.add (call $length (i64.const 0)) (call $length (i64.const -1))))))
  (func (export "vars_forever") (result i32) (local $key i64) (local $i i64)
    (loop $again
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (local.set $key (call $alloc (i64.const 8)))
      (call $store_u64 (local.get $key) (i64.add (local.get $i) (i64.const 0x4141414141414100)))
      (call $var_set (local.get $key) (call $alloc (i64.const 65536)))
      (br $again))
    (i32.const 0))
  (func $emit (result i32) (local $b i64)
    (global.set $n (i64.add (global.get $n) (i64.const 1)))
    (local.set $b (call $alloc (i64.const 8)))
    (call $store_u64 (local.get $b) (global.get $n))
    (call $output_set (local.get $b) (i64.const 8))
    (i32.const 0))
  (func (export "count") (result i32) (call $emit))
  (func (export "_start") (drop (call $emit)))
  (func (export "status_seven") (result i32) (i32.const 7))
  (func (export "output_then_none") (result i32)
    (drop (call $emit)) (call $output_set (i64.const 0) (i64.const 0)) (i32.const 0))
  (func (export "exit_zero") (result i32)
    (drop (call $emit)) (call $proc_exit (i32.const 0)) (i32.const 9))
  (func (export "exit_three") (result i32)
    (call $proc_exit (i32.const 3)) (i32.const 0))
  (func (export "huge_request") (result i32)
    (drop (call $http (call $alloc (i64.const 2097152)) (i64.const 0))) (i32.const 0))
  (func (export "tiny_blocks_forever") (result i32)
    (loop $again (drop (call $alloc (i64.const 1))) (br $again)) (i32.const 0))
)
"#;

#[test]
fn bad_offsets_and_lengths_are_typed_errors_and_limits_hold() -> anyhow::Result<()> {
    let host = host_with("[plugins.hostile]\nmax_memory_mib = 16\n");
    let plugin = host.load_bytes("hostile", HOSTILE.as_bytes())?;
    assert_eq!(plugin.kind(), PluginKind::Extism);
    for entry in [
        "load_far",
        "load_negative",
        "store_past_the_end",
        "output_outside",
        "input_past_its_end",
        "config_of_garbage",
        "pair_with_garbage",
    ] {
        let error = plugin.call_raw(entry, b"abc").unwrap_err();
        assert!(
            matches!(plugin_error(&error), CoreError::GuestMemory { .. }),
            "{entry}: {error:?}"
        );
    }
    // One 2 MiB block passed sixteen times: its frame (32 MiB) is held only within the limit.
    for entry in [
        "alloc_huge",
        "alloc_forever",
        "tiny_blocks_forever",
        "one_block_sixteen_times",
    ] {
        let error = plugin.call_raw(entry, b"").unwrap_err();
        assert!(
            matches!(plugin_error(&error), CoreError::MemoryLimit { .. }),
            "{entry}: {error:?}"
        );
    }
    // Freeing or measuring what is not a block is harmless (PDKs do it), and says 0.
    assert_eq!(plugin.call_raw("garbage_handles", b"")?, b"");
    // Vars are bounded (1 MiB by default): the store fills and the call ends with a message.
    let error = plugin.call_raw("vars_forever", b"").unwrap_err();
    match plugin_error(&error) {
        CoreError::Guest { message, .. } => {
            assert!(message.contains("var store is full"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let error = plugin.call_raw("status_seven", b"").unwrap_err();
    assert!(
        error.to_string().contains("non-zero exit code 7"),
        "{error}"
    );
    // WASI `proc_exit(n)` is status n; an empty output after one keeps the first (Extism's
    // kernel ignores `output_set(0, 0)`, which every PDK sends for a `()` result).
    let error = plugin.call_raw("exit_three", b"").unwrap_err();
    assert!(
        error.to_string().contains("non-zero exit code 3"),
        "{error}"
    );
    assert_eq!(plugin.call_raw("exit_zero", b"")?.len(), 8);
    assert_eq!(plugin.call_raw("output_then_none", b"")?.len(), 8);
    // A request description larger than any URL and headers needs is refused unread.
    let error = plugin.call_raw("huge_request", b"").unwrap_err();
    assert!(
        error.to_string().contains("HTTP request description"),
        "{error}"
    );
    // Globals persist between calls of an instance; `_start` starts afresh each time.
    let count = |entry: &str| -> anyhow::Result<u64> {
        let output = plugin.call_raw(entry, b"")?;
        Ok(u64::from_le_bytes(output.as_slice().try_into()?))
    };
    let first = count("count")?;
    assert_eq!(count("count")?, first + 1);
    // `_start` runs on the instance as it is, which then serves no other call.
    assert_eq!(count("_start")?, first + 2);
    assert_eq!(count("count")?, 1);
    assert_eq!(count("_start")?, 2);
    assert_eq!(count("_start")?, 1);
    Ok(())
}

#[test]
fn host_functions_that_do_not_map_are_refused_at_load() {
    let too_many = format!("(param{})", " i64".repeat(17));
    for (what, signature) in [
        ("a number, not a handle", "(param i64 i32) (result i64)"),
        ("two results", "(param i64) (result i64 i64)"),
        ("seventeen handles", too_many.as_str()),
    ] {
        let module = format!(
            r#"(module
                (import "extism:host/env" "alloc" (func (param i64) (result i64)))
                (import "extism:host/user" "odd" (func {signature}))
                (memory (export "memory") 1)
                (func (export "run") (result i32) (i32.const 0)))"#
        );
        let error = host_with("")
            .load_bytes("odd", module.as_bytes())
            .unwrap_err();
        assert!(
            matches!(plugin_error(&error), CoreError::Instantiate { reason, .. } if reason.contains("odd") && reason.contains("up to 16 handle arguments")),
            "{what}: {error:?}"
        );
    }
}

/// Extism's `count_vowels_kvstore` example, unchanged: `kv_read(key) -> u32` and
/// `kv_write(key, value: u32)`, numbers as 4 little-endian bytes, a host function of two
/// arguments served by a typed host method that takes a tuple.
#[test]
fn a_host_function_of_two_arguments_and_numbers_as_extism_passes_them() -> anyhow::Result<()> {
    let store: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
    let mut methods = methods();
    let read = store.clone();
    methods.register("kv_read", move |key: String| {
        Ok::<_, String>(read.lock().expect("store").get(&key).copied().unwrap_or(0))
    });
    let written = store.clone();
    methods.register("kv_write", move |(key, value): (String, u32)| {
        written.lock().expect("store").insert(key, value);
        Ok::<_, String>(())
    });
    let host = PluginHost::builder().host_methods(methods).build()?;
    let plugin = host.load(EXTISM_A)?;
    assert_eq!(plugin.call_raw("count_vowels_kv", b"Hello, World!")?, b"3");
    assert_eq!(plugin.call_raw("count_vowels_kv", b"aeiou")?, b"8");
    assert_eq!(store.lock().expect("store").get("count-vowels"), Some(&8));
    Ok(())
}

/// A real HTTP server on a free port: `/hello` answers a greeting, `/moved` redirects
/// elsewhere; it counts the requests it serves.
struct HttpServer {
    port: u16,
    hits: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    fn start() -> anyhow::Result<Self> {
        use axum::routing::get;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let hits = Arc::new(AtomicU64::new(0));
        let counted = hits.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let app = axum::Router::new()
                    .route(
                        "/hello",
                        get(move || {
                            counted.fetch_add(1, Ordering::SeqCst);
                            async { "hello from the server" }
                        }),
                    )
                    .route(
                        "/moved",
                        get(|| async {
                            (
                                axum::http::StatusCode::FOUND,
                                [(axum::http::header::LOCATION, "http://not-allowed.invalid/")],
                            )
                        }),
                    );
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the server runs");
            });
        });
        Ok(Self {
            port,
            hits,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn requests_wait_no_longer_than_the_call() -> anyhow::Result<()> {
    // A server that accepts and never answers: the request ends at the call's deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://127.0.0.1:{}/", silent.local_addr()?.port());
    let plugin = host_with(&format!(
        "[plugins.{:?}]\nallowed_hosts = [\"127.0.0.1\"]\ntimeout_ms = 500\n",
        EXTISM_A
    ))
    .load(EXTISM_A)?;
    let started = std::time::Instant::now();
    let error = plugin.call::<_, String>("fetch", &url).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The call's own deadline, reported as such (not as a failed request).
    assert!(
        matches!(plugin_error(&error), CoreError::Timeout { .. }),
        "{error:?}"
    );
    Ok(())
}

#[test]
fn a_faulting_new_build_rolls_back_by_itself() -> anyhow::Result<()> {
    let host = host_with(&format!(
        "[plugins.{:?}]\nrollback_on = {{ faults = 2, within = \"10m\" }}\n",
        EXTISM_A
    ));
    let plugin = host.load(EXTISM_A)?;
    let events = plugin.subscribe();
    plugin.reload_from_bytes(&std::fs::read(EXTISM_B)?)?;
    assert_eq!(plugin.call::<_, String>("variant", &())?, "b");
    // Two traps of the new build within its probation: it rolls back to the first.
    for _ in 0..2 {
        let error = plugin.call::<_, ()>("trap", &()).unwrap_err();
        assert!(
            matches!(plugin_error(&error), CoreError::Trap { .. }),
            "{error:?}"
        );
    }
    loop {
        match events.recv_timeout(Duration::from_secs(60))? {
            dlinkwm_host::ReloadEvent::RolledBack { reason, .. } => {
                assert!(reason.is_some_and(|reason| reason.contains("2 guest faults")));
                break;
            }
            dlinkwm_host::ReloadEvent::Reloaded { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(plugin.call::<_, String>("variant", &())?, "a");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_call_dropped_during_an_http_request_leaves_no_instance_behind()
-> anyhow::Result<()> {
    // A server that accepts and never answers: the request waits until the call is dropped.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://127.0.0.1:{}/", silent.local_addr()?.port());
    let host = PluginHost::builder()
        .config(Config::from_toml(&format!(
            "[plugins.{:?}]\nallowed_hosts = [\"127.0.0.1\"]\ntimeout_ms = 20000\nmax_instances = 1\nqueue_timeout_ms = 20000\n",
            EXTISM_A
        ))?)
        .build()?;
    let plugin = host.load_async(EXTISM_A).await?;
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        plugin.call_async::<_, String>("fetch", &url),
    )
    .await;
    assert!(dropped.is_err(), "the request answered: {dropped:?}");
    // The only instance's place was given back: the next call is served at once.
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        plugin.call_async::<_, String>("variant", &()),
    )
    .await??;
    assert_eq!(answer, "a");
    Ok(())
}
