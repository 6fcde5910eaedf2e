;; WASI preview 1 poll_oneoff on a monotonic clock: `run` sleeps ~584 years, `sleep20` 20 s.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $sleep (param $ns i64)
    (i64.store (i32.const 0) (i64.const 1))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (local.get $ns))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 200))))
  (func (export "run") (call $sleep (i64.const -1)))
  (func (export "sleep20") (call $sleep (i64.const 20000000000))))
