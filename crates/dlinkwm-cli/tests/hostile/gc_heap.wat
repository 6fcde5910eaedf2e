;; A linear memory of 244 MiB, filled, and 400 MiB of GC arrays kept alive beside it (needs
;; `[engine] gc = true`; refused at load otherwise).
(module
  (type $block (array (mut i8)))
  (memory 3900)
  (table $keep 400 (ref null $block))
  (func (export "run")
    (local $i i32)
    (memory.fill (i32.const 0) (i32.const 1) (i32.const 255590400))
    (loop $next
      (table.set $keep (local.get $i) (array.new $block (i32.const 1) (i32.const 1048576)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 400))))))
