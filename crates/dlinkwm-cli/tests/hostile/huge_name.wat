;; Host calls whose method name is all of a 200 MiB memory, denied by `host_methods`.
(module
  (import "dlinkwm" "host_call" (func $host_call (param i32 i32 i32 i32 i32) (result i32)))
  (import "dlinkwm" "set_output" (func $set_output (param i32 i32)))
  (memory (export "memory") 3200)
  (func (export "dlinkwm_abi_version") (result i32) i32.const 1)
  (func (export "dlinkwm_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "dlinkwm_free") (param i32 i32))
  (func (export "run") (param i32 i32 i32) (result i32)
    (local $i i32)
    (memory.fill (i32.const 0) (i32.const 97) (i32.const 209715200))
    (loop $next
      (drop (call $host_call (i32.const 0) (i32.const 209715200) (i32.const 1) (i32.const 0) (i32.const 0)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 20))))
    i32.const 0))
