//! The host side of the ABI under a hostile guest: the guest runs a program of host-import calls
//! (`set_output`, `set_error`, `host_call`, `host_result_read`, `log`, WASI `poll_oneoff`,
//! `memory.grow`) with arbitrary pointers, lengths, method names, format codes and timeouts.
//! The fuzzer builds the program with structure (`arbitrary`): a sequence of operations whose
//! arguments are either fully arbitrary or steered near the interesting edges (the end of
//! memory, lengths around the caps, the method names the host knows). Whatever the guest does,
//! the host must answer with a value or a typed error, never panic, and never hand back more
//! output than the limit allows.

#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use dlinkwm_core::{
    CallerInfo, Config, Engine, Error, Format, HostCallError, HostCallHandler, Plugin, PluginOptions,
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
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
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
        (local.set $op (i32.rem_u (i32.load8_u (local.get $pc)) (i32.const 8)))
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
        (if (i32.eq (local.get $op) (i32.const 6)) (then
          (drop (call $poll (call $arg (local.get $pc) (i32.const 0)) (call $arg (local.get $pc) (i32.const 1))
            (call $arg (local.get $pc) (i32.const 2)) (call $arg (local.get $pc) (i32.const 3))))))
        (if (i32.eq (local.get $op) (i32.const 7)) (then
          (drop (memory.grow (i32.and (call $arg (local.get $pc) (i32.const 0)) (i32.const 0xff))))))
        (local.set $pc (i32.add (local.get $pc) (i32.const 21)))
        (br $next)))
    (i32.const 0)))"#;

const MAX_OUTPUT: usize = 4096;

/// `echo` answers its input; everything else is unknown.
struct Echo;

impl HostCallHandler for Echo {
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
            "[defaults]\nmax_input_bytes = 65536\nmax_output_bytes = {MAX_OUTPUT}\ntimeout_ms = 200\nstdio = \"null\"\nhost_methods = [\"echo\", \"other\"]\nmax_memory_mib = 4\n"
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

/// An argument: arbitrary, or near an edge the host checks.
#[derive(Debug, Arbitrary)]
enum Arg {
    Any(i32),
    /// An offset from the end of the guest's first two pages (where memory ends unless grown).
    NearEnd(u8),
    /// A length around a cap: the method name maximum, the output limit, 4 GiB.
    NearCap(u8, i8),
    /// The address of a known method name (`echo` at 0) or of the scratch area.
    Known(bool),
}

impl Arg {
    fn value(&self) -> i32 {
        match *self {
            Arg::Any(value) => value,
            Arg::NearEnd(back) => 131_072 - i32::from(back),
            Arg::NearCap(which, delta) => {
                let cap: i64 = match which % 4 {
                    0 => 256,
                    1 => MAX_OUTPUT as i64,
                    2 => 65_536,
                    _ => 1 << 32,
                };
                (cap + i64::from(delta)) as i32
            }
            Arg::Known(true) => 0,
            Arg::Known(false) => 4096,
        }
    }
}

/// One host-import call of the guest program.
#[derive(Debug, Arbitrary)]
enum Op {
    SetOutput(Arg, Arg),
    SetError(Arg, Arg),
    HostCall { name: Arg, name_len: Arg, format: Arg, input: Arg, input_len: Arg },
    HostResultRead(Arg),
    Log(Arg, Arg, Arg),
    /// Output within the guest's first pages (the host must copy it exactly).
    SmallOutput(u16, u16),
    Poll { subscriptions: Arg, events: Arg, count: Arg, written: Arg },
    Grow(u8),
}

impl Op {
    fn encode(&self, out: &mut Vec<u8>) {
        let (code, args): (u8, [i32; 5]) = match self {
            Op::SetOutput(a, b) => (0, [a.value(), b.value(), 0, 0, 0]),
            Op::SetError(a, b) => (1, [a.value(), b.value(), 0, 0, 0]),
            Op::HostCall { name, name_len, format, input, input_len } => (
                2,
                [name.value(), name_len.value(), format.value(), input.value(), input_len.value()],
            ),
            Op::HostResultRead(a) => (3, [a.value(), 0, 0, 0, 0]),
            Op::Log(a, b, c) => (4, [a.value(), b.value(), c.value(), 0, 0]),
            Op::SmallOutput(a, b) => (5, [i32::from(*a), i32::from(*b), 0, 0, 0]),
            Op::Poll { subscriptions, events, count, written } => (
                6,
                [subscriptions.value(), events.value(), count.value(), written.value(), 0],
            ),
            Op::Grow(pages) => (7, [i32::from(*pages), 0, 0, 0, 0]),
        };
        out.push(code);
        for arg in args {
            out.extend_from_slice(&arg.to_le_bytes());
        }
    }
}

fuzz_target!(|program: Vec<Op>| {
    let mut data = Vec::with_capacity(program.len() * 21);
    for op in &program {
        op.encode(&mut data);
    }
    match plugin().call("run", Format::Raw, &data, <[u8]>::len) {
        Ok(len) => assert!(len <= MAX_OUTPUT),
        Err(
            Error::GuestMemory { .. }
            | Error::OutputTooLarge { .. }
            | Error::InputTooLarge { .. }
            | Error::Guest { .. }
            | Error::Timeout { .. },
        ) => {}
        Err(other) => panic!("unexpected error from a hostile guest: {other:?}"),
    }
});
