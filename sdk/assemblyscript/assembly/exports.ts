// The exports the ABI requires of every plugin. Re-export them from the plugin's entry file:
//
//     export * from "<path to>/sdk/assemblyscript/assembly/exports";
//
// Buffers that cross the ABI come from `heap.alloc`, never from a GC object, so the collector
// never moves or frees what the host is writing (docs/abi.md §2).
import { ABI_VERSION } from "./abi";

export function dlinkwm_abi_version(): i32 {
  return ABI_VERSION;
}

export function dlinkwm_alloc(size: i32): usize {
  return heap.alloc(size > 0 ? <usize>size : 1);
}

export function dlinkwm_free(ptr: usize, size: i32): void {
  if (ptr != 0) heap.free(ptr);
}
