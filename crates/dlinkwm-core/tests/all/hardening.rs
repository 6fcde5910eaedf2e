//! Hostile plugins against the limits of docs/security.md: each test is an attack that got
//! through once (memory across many memories, unbounded names and logs, blocking waits,
//! compiles that never end, grants that outlived their revocation).

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use dlinkwm_core::{
    CallerInfo, Engine, EngineOptions, Error, Format, HostCallError, HostCallHandler, Plugin,
    ResolvedSettings,
};

use crate::{engine, options, options_with_host};

const MIB: usize = 1 << 20;

fn load_with(engine: &Engine, wat: &str, settings: ResolvedSettings) -> Plugin {
    Plugin::from_bytes(engine, wat.as_bytes(), options(settings)).expect("module loads")
}

/// Eight memories, each grown by 15 MiB: every one alone is under the 16 MiB limit.
#[test]
fn many_memories_share_one_budget() {
    let memories: String = (0..8).map(|i| format!("(memory $m{i} 0)")).collect();
    let grows: String = (0..8)
        .map(|i| {
            format!("(if (i32.eq (memory.grow $m{i} (i32.const 240)) (i32.const -1)) (then unreachable))")
        })
        .collect();
    let wat = format!(r#"(module {memories} (func (export "run") {grows}))"#);
    let settings = ResolvedSettings {
        max_memory_bytes: 16 * MIB,
        ..Default::default()
    };
    let plugin = load_with(&engine(), &wat, settings);
    match plugin.call_raw("run", &[]) {
        Err(Error::MemoryLimit {
            requested, limit, ..
        }) => {
            assert_eq!(limit, 16 * MIB);
            // The second memory's growth is the one refused: 2 × 15 MiB in all.
            assert_eq!(requested, 30 * MIB);
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
}

#[test]
fn the_gc_proposal_is_refused_unless_the_engine_turns_it_on() {
    let wat = r#"(module
        (type $point (struct (field i32)))
        (func (export "run") (drop (struct.new $point (i32.const 1)))))"#;
    match Plugin::from_bytes(&engine(), wat.as_bytes(), options(Default::default())) {
        Err(Error::InvalidModule { reason, .. }) => {
            assert!(reason.to_lowercase().contains("gc"), "{reason}");
        }
        other => panic!("expected the GC proposal refused, got {other:?}"),
    }
    let gc = Engine::new(EngineOptions::default().with_wasm_gc(true)).unwrap();
    let plugin = load_with(&gc, wat, Default::default());
    assert_eq!(plugin.call_raw("run", &[]).unwrap(), Vec::<u8>::new());
}

/// A module that calls a host method whose name is all of its 16 MiB memory, then `log`s 64
/// KiB lines and calls a denied method in a loop.
fn flooding_module() -> String {
    r#"(module
        (import "dlinkwm" "set_output" (func $set_output (param i32 i32)))
        (import "dlinkwm" "host_call" (func $host_call (param i32 i32 i32 i32 i32) (result i32)))
        (import "dlinkwm" "host_result_len" (func $host_result_len (result i32)))
        (import "dlinkwm" "log" (func $log (param i32 i32 i32)))
        (memory (export "memory") 256)
        (data (i32.const 0) "denied_method")
        (func (export "dlinkwm_abi_version") (result i32) i32.const 1)
        (func (export "dlinkwm_alloc") (param i32) (result i32) i32.const 1024)
        (func (export "dlinkwm_free") (param i32 i32))
        (func (export "huge_name") (param i32 i32 i32) (result i32)
            (local $status i32)
            ;; name = all 16 MiB of memory
            (local.set $status
                (call $host_call (i32.const 0) (i32.const 16777216) (i32.const 1) (i32.const 0) (i32.const 0)))
            ;; output: the status and the length of the message, as two little-endian i32s
            (i32.store (i32.const 100) (local.get $status))
            (i32.store (i32.const 104) (call $host_result_len))
            (call $set_output (i32.const 100) (i32.const 8))
            i32.const 0)
        (func (export "flood") (param i32 i32 i32) (result i32)
            (local $i i32)
            (loop $again
                (drop (call $host_call (i32.const 0) (i32.const 13) (i32.const 1) (i32.const 0) (i32.const 0)))
                (call $log (i32.const 2) (i32.const 0) (i32.const 65536))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
            i32.const 0))"#
        .to_owned()
}

#[derive(Clone, Default)]
struct Counted(Arc<AtomicUsize>);

impl std::io::Write for Counted {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(bytes.len(), Ordering::Relaxed);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn denying_settings() -> ResolvedSettings {
    ResolvedSettings {
        host_methods: Some(Arc::from(Vec::<String>::new())),
        ..Default::default()
    }
}

#[test]
fn a_method_name_as_large_as_memory_is_never_copied() {
    let plugin = load_with(&engine(), &flooding_module(), denying_settings());
    let output = plugin.call_raw("huge_name", &[]).unwrap();
    let status = i32::from_le_bytes(output[..4].try_into().unwrap());
    let message_len = i32::from_le_bytes(output[4..].try_into().unwrap());
    assert_eq!(status, dlinkwm_core::abi::Status::UnknownMethod.code());
    assert!(
        (1..200).contains(&message_len),
        "the message is {message_len} bytes"
    );
}

#[test]
fn a_plugin_cannot_flood_the_log() {
    let written = Counted::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let written = written.clone();
            move || written.clone()
        })
        .finish();
    let plugin = load_with(&engine(), &flooding_module(), denying_settings());
    tracing::subscriber::with_default(subscriber, || {
        plugin.call_raw("flood", &[]).unwrap();
    });
    let bytes = written.0.load(Ordering::Relaxed);
    // 1,000 lines of 64 KiB (64 MB) and 1,000 denied calls asked for; one call may log 1 MiB,
    // plus the notices.
    assert!(
        bytes < dlinkwm_core::abi::MAX_LOG_BYTES_PER_CALL + 64 * 1024,
        "{bytes} bytes logged"
    );
    assert!(bytes > 512 * 1024, "the budget itself is logged: {bytes}");
}

/// A WASI module whose `count` entry outputs how many environment variables it sees.
const ENV_COUNTER: &str = r#"(module
    (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
    (import "dlinkwm" "set_output" (func $set_output (param i32 i32)))
    (memory (export "memory") 1)
    (func (export "dlinkwm_abi_version") (result i32) i32.const 1)
    (func (export "dlinkwm_alloc") (param i32) (result i32) i32.const 1024)
    (func (export "dlinkwm_free") (param i32 i32))
    (func (export "count") (param i32 i32 i32) (result i32)
        (drop (call $sizes (i32.const 100) (i32.const 104)))
        (call $set_output (i32.const 100) (i32.const 1))
        i32.const 0))"#;

#[test]
fn a_revoked_grant_applies_to_the_next_call() {
    // PATH is set in every test environment.
    assert!(std::env::var_os("PATH").is_some());
    let granted = ResolvedSettings {
        env: vec!["PATH".to_owned()],
        ..Default::default()
    };
    let plugin = load_with(&engine(), ENV_COUNTER, granted.clone());
    assert_eq!(plugin.call_raw("count", &[]).unwrap(), [1]);
    assert_eq!(plugin.call_raw("count", &[]).unwrap(), [1]);
    plugin
        .set_settings(ResolvedSettings {
            env: Vec::new(),
            ..granted.clone()
        })
        .unwrap();
    assert_eq!(plugin.call_raw("count", &[]).unwrap(), [0]);
    plugin.set_settings(granted).unwrap();
    assert_eq!(plugin.call_raw("count", &[]).unwrap(), [1]);
}

#[test]
fn unenforceable_settings_are_refused_naming_the_key() {
    let plugin = load_with(&engine(), ENV_COUNTER, Default::default());
    match plugin.set_settings(ResolvedSettings {
        fuel: Some(1000),
        ..Default::default()
    }) {
        Err(Error::Config(error)) => assert_eq!(error.key.as_deref(), Some("fuel")),
        other => panic!("expected the fuel setting refused, got {other:?}"),
    }
    // The old settings stay.
    assert_eq!(plugin.settings().fuel, None);
    assert_eq!(plugin.call_raw("count", &[]).unwrap(), [0]);

    let pooled = Engine::new(EngineOptions::default().with_pooling(true)).unwrap();
    let large = ResolvedSettings {
        max_memory_bytes: 512 * MIB,
        ..Default::default()
    };
    match Plugin::from_bytes(&pooled, ENV_COUNTER.as_bytes(), options(large)) {
        Err(Error::Config(error)) => {
            assert_eq!(error.key.as_deref(), Some("max_memory_mib"));
            assert!(error.reason.contains("pool_max_memory_mib"), "{error}");
        }
        other => panic!("expected the memory limit refused, got {other:?}"),
    }
}

/// A host method that calls its own plugin from another thread and waits for the answer.
struct WaitsOnAnotherThread {
    plugin: OnceLock<Plugin>,
    seen: Mutex<Option<String>>,
}

impl HostCallHandler for WaitsOnAnotherThread {
    fn call(
        &self,
        _: CallerInfo<'_>,
        _: &str,
        _: Format,
        _: &[u8],
        _: &mut Vec<u8>,
    ) -> Result<(), HostCallError> {
        let plugin = self.plugin.get().expect("set after loading").clone();
        let answer = std::thread::spawn(move || plugin.call_raw("noop", &[]))
            .join()
            .expect("no panic");
        *self.seen.lock().unwrap() = Some(format!("{answer:?}"));
        Ok(())
    }
}

#[test]
fn waiting_for_an_instance_ends_at_the_queue_deadline() {
    let host = Arc::new(WaitsOnAnotherThread {
        plugin: OnceLock::new(),
        seen: Mutex::new(None),
    });
    let settings = ResolvedSettings {
        max_instances: 1,
        queue_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let wat = crate::abi_module(
        1,
        "i32.const 16 i32.const 5 i32.const 1 i32.const 0 i32.const 0 call $host_call drop i32.const 0",
        r#"(func (export "noop") (param i32 i32 i32) (result i32) i32.const 0)"#,
    );
    let plugin = Plugin::from_bytes(
        &engine(),
        wat.as_bytes(),
        options_with_host(settings, host.clone()),
    )
    .unwrap();
    host.plugin.set(plugin.clone()).ok();
    let started = Instant::now();
    plugin.call_raw("run", &[]).unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    let seen = host.seen.lock().unwrap().clone().unwrap();
    assert!(seen.contains("Busy"), "{seen}");
    // Nothing was lost: the next call is served.
    assert_eq!(plugin.call_raw("noop", &[]).unwrap(), Vec::<u8>::new());
    assert_eq!(plugin.live_instances(), 1);
}

/// A host method that reloads its own plugin with state hand-over, from inside the call.
struct ReloadsItself {
    plugin: OnceLock<Plugin>,
    bytes: String,
    seen: Mutex<Option<String>>,
}

impl HostCallHandler for ReloadsItself {
    fn call(
        &self,
        _: CallerInfo<'_>,
        _: &str,
        _: Format,
        _: &[u8],
        _: &mut Vec<u8>,
    ) -> Result<(), HostCallError> {
        let plugin = self.plugin.get().expect("set after loading");
        let outcome = plugin.reload_from_bytes(self.bytes.as_bytes());
        *self.seen.lock().unwrap() = Some(format!("{outcome:?}"));
        Ok(())
    }
}

#[test]
fn a_reload_from_inside_a_call_never_waits_for_that_call() {
    let state_exports = |tag: &str| {
        format!(
            r#"(func (export "dlinkwm_state_save") (param i32 i32 i32) (result i32)
                   (call $set_output (i32.const 16) (i32.const 5)) i32.const 0)
               (func (export "dlinkwm_state_restore") (param i32 i32 i32) (result i32) i32.const 0)
               (func (export "tag") (param i32 i32 i32) (result i32) i32.const {tag})"#
        )
    };
    let call_host = "i32.const 16 i32.const 5 i32.const 1 i32.const 0 i32.const 0 call $host_call drop i32.const 0";
    let v1 = crate::abi_module(1, call_host, &state_exports("0"));
    let v2 = crate::abi_module(1, call_host, &state_exports("1"));
    let host = Arc::new(ReloadsItself {
        plugin: OnceLock::new(),
        bytes: v2,
        seen: Mutex::new(None),
    });
    let settings = ResolvedSettings {
        max_instances: 1,
        ..Default::default()
    };
    let plugin = Plugin::from_bytes(
        &engine(),
        v1.as_bytes(),
        options_with_host(settings, host.clone()),
    )
    .unwrap();
    host.plugin.set(plugin.clone()).ok();
    plugin.call_raw("run", &[]).unwrap();
    let seen = host.seen.lock().unwrap().clone().unwrap();
    assert!(
        seen.contains("StateHandover") && seen.contains("Reentrant"),
        "{seen}"
    );
    // The refused reload left version 1 serving, and a reload from outside works.
    assert_eq!(plugin.version(), 1);
    plugin.reload_from_bytes(host.bytes.as_bytes()).unwrap();
    assert_eq!(plugin.version(), 2);
}

/// A module whose one function is `depth` nested blocks, as a binary (WAT text this deep
/// would test the text parser, not the compiler).
fn nested_blocks(depth: usize) -> Vec<u8> {
    let mut body = vec![0x00]; // no locals
    body.extend(std::iter::repeat_n([0x02, 0x40], depth).flatten()); // block (empty type)
    body.extend(std::iter::repeat_n(0x0b, depth + 1)); // the ends, and the function's
    let mut code = Vec::new();
    leb128(&mut code, 1); // one body
    leb128(&mut code, body.len());
    code.extend(body);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // type: () -> ()
    module.extend([0x03, 0x02, 0x01, 0x00]); // one function of type 0
    module.push(0x0a);
    leb128(&mut module, code.len());
    module.extend(code);
    module
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn a_module_of_a_million_nested_blocks_is_refused_before_compiling() {
    let bytes = nested_blocks(1_000_000);
    let engine = engine();
    let started = Instant::now();
    match Plugin::from_bytes(&engine, &bytes, options(Default::default())) {
        Err(Error::InvalidModule { reason, .. }) => {
            assert!(reason.contains("nests blocks deeper"), "{reason}")
        }
        other => panic!("expected the module refused, got {other:?}"),
    }
    assert_eq!(engine.compile_count(), 0);
    assert!(started.elapsed() < Duration::from_secs(30));
    // A normal depth compiles.
    Plugin::from_bytes(&engine, &nested_blocks(100), options(Default::default())).unwrap();
}

#[test]
fn a_module_over_the_size_limit_is_refused_and_a_file_is_not_read_whole() {
    let engine = Engine::new(EngineOptions::default().with_max_module_bytes(4096)).unwrap();
    let big = nested_blocks(4000);
    match Plugin::from_bytes(&engine, &big, options(Default::default())) {
        Err(Error::InvalidModule { reason, .. }) => {
            assert!(reason.contains("max_module_mib"), "{reason}")
        }
        other => panic!("expected the module refused, got {other:?}"),
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&big).unwrap();
    match Plugin::load(&engine, file.path(), options(Default::default())) {
        Err(Error::InvalidModule { reason, .. }) => {
            assert!(reason.contains("max_module_mib"), "{reason}")
        }
        other => panic!("expected the file refused, got {other:?}"),
    }
}

#[test]
fn a_file_that_is_not_wasm_gets_one_plain_sentence() {
    match Plugin::from_bytes(&engine(), b"garbage\n", options(Default::default())) {
        Err(Error::InvalidModule { reason, .. }) => assert!(
            reason.starts_with("it starts with bytes 67 61 72")
                && reason.ends_with("neither the wasm magic `\\0asm` nor WAT text"),
            "{reason}"
        ),
        other => panic!("expected the bytes refused, got {other:?}"),
    }
}

/// A WASI module whose `sleep` entry polls one relative monotonic clock for the number of
/// milliseconds in its input (a little-endian u32) and outputs the event count and the
/// event's userdata.
const SLEEPER: &str = r#"(module
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (import "dlinkwm" "set_output" (func $set_output (param i32 i32)))
    (import "dlinkwm" "set_error" (func $set_error (param i32 i32)))
    (memory (export "memory") 1)
    (func (export "dlinkwm_abi_version") (result i32) i32.const 1)
    (func (export "dlinkwm_alloc") (param i32) (result i32) i32.const 1024)
    (func (export "dlinkwm_free") (param i32 i32))
    (func (export "sleep") (param $ptr i32) (param $len i32) (param i32) (result i32)
        ;; subscription at 0: userdata -1 (the host's own deadline must not be confused with
        ;; it), tag 0 (clock), monotonic, timeout in ns, relative
        (i64.store (i32.const 0) (i64.const -1))
        (i32.store8 (i32.const 8) (i32.const 0))
        (i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24)
            (i64.mul (i64.extend_i32_u (i32.load (local.get $ptr))) (i64.const 1000000)))
        (i64.store (i32.const 32) (i64.const 0))
        (i32.store16 (i32.const 40) (i32.const 0))
        ;; events at 64, count at 200
        (if (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 200))
            (then (call $set_error (i32.const 0) (i32.const 4)) (return (i32.const 1))))
        (i64.store (i32.const 204) (i64.load (i32.const 64)))
        (call $set_output (i32.const 200) (i32.const 12))
        i32.const 0))"#;

#[test]
fn a_wasi_sleep_past_the_timeout_ends_at_the_timeout() {
    let settings = ResolvedSettings {
        timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let plugin = load_with(&engine(), SLEEPER, settings);
    // Sleeps shorter than the timeout answer as WASI does.
    let output = plugin.call_raw("sleep", &20u32.to_le_bytes()).unwrap();
    assert_eq!(u32::from_le_bytes(output[..4].try_into().unwrap()), 1);
    assert_eq!(
        u64::from_le_bytes(output[4..].try_into().unwrap()),
        u64::MAX
    );
    // 20 s and "forever" (u32::MAX ms, 50 days) both end at the 200 ms timeout.
    for millis in [20_000u32, u32::MAX] {
        let started = Instant::now();
        match plugin.call_raw("sleep", &millis.to_le_bytes()) {
            Err(Error::Timeout { limit, .. }) => assert_eq!(limit, Duration::from_millis(200)),
            other => panic!("expected a timeout, got {other:?}"),
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    // The instance that timed out was discarded; the next call is served.
    assert!(plugin.call_raw("sleep", &1u32.to_le_bytes()).is_ok());
}

#[test]
fn poll_oneoff_arguments_are_checked() {
    // More subscriptions than the host copies, and none at all: EINVAL, nothing read.
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
        (import "dlinkwm" "set_output" (func $set_output (param i32 i32)))
        (memory (export "memory") 1)
        (func (export "dlinkwm_abi_version") (result i32) i32.const 1)
        (func (export "dlinkwm_alloc") (param i32) (result i32) i32.const 1024)
        (func (export "dlinkwm_free") (param i32 i32))
        (func (export "run") (param i32 i32 i32) (result i32)
            (i32.store (i32.const 0) (call $poll (i32.const 0) (i32.const 0) (i32.const 100000) (i32.const 0)))
            (i32.store (i32.const 4) (call $poll (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
            ;; subscriptions past the end of memory: EFAULT
            (i32.store (i32.const 8) (call $poll (i32.const 65500) (i32.const 0) (i32.const 1) (i32.const 0)))
            (call $set_output (i32.const 0) (i32.const 12))
            i32.const 0))"#;
    let plugin = load_with(&engine(), wat, Default::default());
    let output = plugin.call_raw("run", &[]).unwrap();
    let errnos: Vec<u32> = output
        .chunks(4)
        .map(|chunk| u32::from_le_bytes(chunk.try_into().unwrap()))
        .collect();
    assert_eq!(errnos, [28, 28, 21]);
}
