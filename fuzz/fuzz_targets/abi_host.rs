//! The host side of the ABI under a hostile guest: the guest runs the fuzz input as a program of
//! host-import calls (`set_output`, `set_error`, `host_call`, `host_result_read`, `log`) with
//! arbitrary pointers, lengths, method names and format codes. Whatever it does, the host must
//! answer with a value or a typed error, never panic, and never hand back more output than the
//! limit allows.

#![no_main]

use std::sync::{Arc, OnceLock};

use dlinkwm_core::{
    CallerInfo, Config, Engine, Error, Format, HostCallError, HostMethods, Plugin, PluginOptions,
};
use libfuzzer_sys::fuzz_target;

/// Each operation is 21 bytes of input: an opcode byte and five little-endian i32 arguments.
const GUEST: &str = r#"(module
  (import "dlinkwm" "set_output" (func $set_output (param i32 i32)))
  (import "dlinkwm" "set_error" (func $set_error (param i32 i32)))
  (import "dlinkwm" "host_call" (func $host_call (param i32 i32 i32 i32 i32) (result i32)))
  (import "dlinkwm" "host_result_len" (func $host_result_len (result i32)))
  (import "dlinkwm" "host_result_read" (func $host_result_read (param i32)))
  (import "dlinkwm" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "echo")
  (func (export "dlinkwm_abi_version") (result i32) i32.const 1)
  (func (export "dlinkwm_alloc") (param i32) (result i32) i32.const 65536)
  (func (export "dlinkwm_free") (param i32 i32))
  (func $arg (param $pc i32) (param $n i32) (result i32)
    (i32.load (i32.add (i32.add (local.get $pc) (i32.const 1)) (i32.mul (local.get $n) (i32.const 4)))))
  (func (export "run") (param $ptr i32) (param $len i32) (param $format i32) (result i32)
    (local $pc i32) (local $end i32) (local $op i32)
    (local.set $pc (local.get $ptr))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (block $done
      (loop $next
        (br_if $done (i32.gt_u (i32.add (local.get $pc) (i32.const 21)) (local.get $end)))
        (local.set $op (i32.rem_u (i32.load8_u (local.get $pc)) (i32.const 6)))
        (if (i32.eq (local.get $op) (i32.const 0)) (then
          (call $set_output (call $arg (local.get $pc) (i32.const 0)) (call $arg (local.get $pc) (i32.const 1)))))
        (if (i32.eq (local.get $op) (i32.const 1)) (then
          (call $set_error (call $arg (local.get $pc) (i32.const 0)) (call $arg (local.get $pc) (i32.const 1)))))
        (if (i32.eq (local.get $op) (i32.const 2)) (then
          (drop (call $host_call (call $arg (local.get $pc) (i32.const 0)) (call $arg (local.get $pc) (i32.const 1))
            (call $arg (local.get $pc) (i32.const 2)) (call $arg (local.get $pc) (i32.const 3)) (call $arg (local.get $pc) (i32.const 4))))))
        (if (i32.eq (local.get $op) (i32.const 3)) (then
          (call $host_result_read (call $arg (local.get $pc) (i32.const 0)))))
        (if (i32.eq (local.get $op) (i32.const 4)) (then
          (call $log (call $arg (local.get $pc) (i32.const 0)) (call $arg (local.get $pc) (i32.const 1)) (call $arg (local.get $pc) (i32.const 2)))))
        (if (i32.eq (local.get $op) (i32.const 5)) (then
          (call $set_output (i32.and (call $arg (local.get $pc) (i32.const 0)) (i32.const 0xffff))
                            (i32.and (call $arg (local.get $pc) (i32.const 1)) (i32.const 0x1fff)))))
        (local.set $pc (i32.add (local.get $pc) (i32.const 21)))
        (br $next)))
    (i32.const 0)))"#;

const MAX_OUTPUT: usize = 4096;

/// `echo` answers its input; everything else is unknown.
struct Echo;

impl HostMethods for Echo {
    fn call(&self, _: CallerInfo<'_>, method: &str, _: Format, input: &[u8], output: &mut Vec<u8>) -> Result<(), HostCallError> {
        match method {
            "echo" => {
                output.extend_from_slice(input);
                Ok(())
            }
            _ => Err(HostCallError::UnknownMethod(method.to_owned())),
        }
    }
}

fn plugin() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let engine = Engine::new(Default::default()).expect("engine");
        let config = Config::from_toml(&format!(
            "[defaults]\nmax_input_bytes = 65536\nmax_output_bytes = {MAX_OUTPUT}\ntimeout_ms = 2000\nstdio = \"null\"\n"
        ))
        .expect("config");
        let options = PluginOptions {
            name: Some("fuzz".to_owned()),
            settings: config.settings_for("fuzz"),
            host: Arc::new(Echo),
        };
        Plugin::from_bytes(&engine, GUEST.as_bytes(), options).expect("the fuzz guest loads")
    })
}

fuzz_target!(|data: &[u8]| {
    match plugin().call("run", Format::Raw, data, <[u8]>::len) {
        Ok(len) => assert!(len <= MAX_OUTPUT),
        Err(
            Error::GuestMemory { .. }
            | Error::OutputTooLarge { .. }
            | Error::InputTooLarge { .. }
            | Error::Guest { .. },
        ) => {}
        Err(other) => panic!("unexpected error from a hostile guest: {other:?}"),
    }
});
