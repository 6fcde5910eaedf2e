//! Extism plugins: DlinkWM's own implementation of the Extism kernel (`extism:host/env`) on the
//! host side, and Extism host functions (`extism:host/user`) served by the host-method registry.
//! Written from Extism's specification and documented behaviour (docs/extism.md), not from its
//! code.
//!
//! The kernel's memory is a heap the host keeps per instance: a block is a run of bytes at a
//! 64-bit address (0 is "no block"), and a plugin reads and writes it through `load_*`/`store_*`.
//! The heap counts in the instance's memory budget (`max_memory_bytes`) with its linear memory;
//! it is emptied at the start of every call (Extism's `reset`), keeps its capacity, and is
//! dropped with the instance. Vars live beside it, kept across calls and handed over on a reload.
//!
//! Every address and length a plugin hands over is checked: one outside the heap, or a handle
//! that is not a live block where one is needed, ends the call with
//! [`crate::Error::GuestMemory`] (Extism's kernel answers 0 or ignores it; a plugin that does it
//! has a bug either way). `length` of anything but a live block is 0, and `free` of it does
//! nothing, as in Extism: the PDKs rely on both.
#![deny(clippy::cast_possible_truncation)]

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use dlinkwm_abi::{Format, LogLevel, Status};
use wasmtime::{Caller, Linker, Val, ValType};

use crate::error::{Error, Result};
use crate::runtime::guest::{bounded_message, fault, refusal};
use crate::runtime::host_methods::Convention;
use crate::runtime::limits::Limiter;
use crate::runtime::store::StoreState;

/// The import module of the Extism kernel and its host functions.
pub(crate) const ENV_MODULE: &str = "extism:host/env";
/// The C/Rust constructors, which Extism runs instead of `_initialize` when exported.
pub(crate) const CALL_CTORS: &str = "__wasm_call_ctors";
/// GHC's runtime initialiser (Haskell PDK).
pub(crate) const HS_INIT: &str = "hs_init";

/// Whether export `name` initialises an instance (run once, never called as a function).
pub(crate) fn is_initializer(name: &str) -> bool {
    matches!(name, "_initialize" | CALL_CTORS | HS_INIT)
}

/// The address of the heap's first byte: 0 is "no block".
const BASE: u64 = 1;
/// The heap grows in steps of this many bytes.
const PAGE: usize = 64 * 1024;
/// What one var costs beyond its key and value (the host's own bookkeeping, as Extism counts).
const VAR_OVERHEAD: usize = 48;
/// The first bytes of a hand-over of vars.
const VARS_MAGIC: &[u8] = b"dlinkwm-extism-vars/2\0";
/// Heap bytes each block costs beyond its own (a gap after it): the host's bookkeeping of the
/// block is paid from the memory budget too, so a plugin cannot make millions of one-byte
/// blocks outside it.
const BLOCK_COST: usize = 64;
/// Freed blocks looked at for reuse, the most recent first: a pattern of frees cannot make one
/// allocation scan them all.
const REUSE_SCAN: usize = 64;
/// The largest HTTP request description (`{"url", "method", "headers"}`) read.
const MAX_HTTP_REQUEST: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct Block {
    len: u64,
    capacity: u64,
    active: bool,
}

/// One instance's Extism kernel: its heap of blocks, the current call's input, output and
/// error, its vars, and the last HTTP response's status and headers.
#[derive(Debug, Default)]
pub(crate) struct Kernel {
    /// Address `a` is `heap[a - BASE]`; `heap.len()` is the end of the last block.
    heap: Vec<u8>,
    /// Bytes of heap counted in the instance's memory budget (the heap never uses more).
    counted: usize,
    /// Every block of this call, in address order (allocation order: the heap only grows
    /// within a call).
    blocks: Vec<(u64, Block)>,
    /// Addresses of freed blocks, reused before the heap grows.
    freed: Vec<u64>,
    input: (u64, u64),
    output: (u64, u64),
    error: u64,
    vars: BTreeMap<String, Vec<u8>>,
    var_bytes: usize,
    http_status: i32,
    http_headers: Option<Vec<u8>>,
}

/// The growth the budget refused, as wasmtime reports a refused memory growth.
#[cold]
fn out_of_memory(limiter: &mut Limiter, total: usize) -> wasmtime::Error {
    limiter.refused(total);
    wasmtime::Error::msg("the Extism kernel's heap cannot grow within the memory limit")
}

/// `value` as a host size, or `None` when it cannot be one.
fn size(value: u64) -> Option<usize> {
    usize::try_from(value).ok()
}

/// A host size as a kernel length (a `usize` always fits a `u64` on the hosts wasmtime runs on).
fn wide(value: usize) -> u64 {
    value as u64
}

impl Kernel {
    /// Empties the heap (keeping its capacity) and forgets the call's input, output and error.
    fn reset(&mut self) {
        self.heap.clear();
        self.blocks.clear();
        self.freed.clear();
        self.input = (0, 0);
        self.output = (0, 0);
        self.error = 0;
    }

    /// Starts a call: an empty heap with `input` in its first block.
    pub(crate) fn begin(&mut self, input: &[u8], limiter: &mut Limiter) -> wasmtime::Result<()> {
        self.reset();
        if !input.is_empty() {
            let start = self.alloc(wide(input.len()), limiter)?;
            let range = self
                .range(start, wide(input.len()))
                .ok_or_else(|| fault("the input block is outside the kernel's heap".to_owned()))?;
            self.heap[range].copy_from_slice(input);
            self.input = (start, wide(input.len()));
        }
        Ok(())
    }

    /// The heap bytes `address..address + len`, if they are inside the heap.
    fn range(&self, address: u64, len: u64) -> Option<Range<usize>> {
        let start = size(address.checked_sub(BASE)?)?;
        let end = start.checked_add(size(len)?)?;
        (end <= self.heap.len()).then_some(start..end)
    }

    /// The checked range, or the fault naming what the plugin handed over.
    fn checked(&self, address: u64, len: u64, what: &str) -> wasmtime::Result<Range<usize>> {
        self.range(address, len).ok_or_else(|| {
            fault(format!(
                "{what} at {address:#x} with length {len} is outside the Extism kernel's heap of {} bytes",
                self.heap.len()
            ))
        })
    }

    /// The byte at the start of `range` (checked to be in the heap).
    fn byte_at(&self, range: Range<usize>) -> i32 {
        i32::from(self.heap[range.start])
    }

    /// The little-endian word of the 8 bytes of `range` (checked to be in the heap).
    fn word_at(&self, range: Range<usize>) -> i64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.heap[range]);
        i64::from_le_bytes(bytes)
    }

    /// The index of the block at `handle`.
    fn find(&self, handle: u64) -> Option<usize> {
        self.blocks
            .binary_search_by_key(&handle, |(start, _)| *start)
            .ok()
    }

    /// The live block at `handle`.
    fn live(&self, handle: u64) -> Option<&Block> {
        self.find(handle)
            .map(|index| &self.blocks[index].1)
            .filter(|block| block.active)
    }

    /// The bytes of the live block at `handle`.
    fn block(&self, handle: u64) -> Option<&[u8]> {
        let block = self.live(handle)?;
        self.range(handle, block.len).map(|range| &self.heap[range])
    }

    /// The bytes of the live block at `handle` (0: none), or the fault naming it.
    fn bytes(&self, handle: u64, what: &str) -> wasmtime::Result<&[u8]> {
        if handle == 0 {
            return Ok(&[]);
        }
        self.block(handle)
            .ok_or_else(|| fault(format!("{what} handle {handle:#x} is not a live block")))
    }

    /// The UTF-8 text of the block at `handle` (0: empty).
    fn text(&self, handle: u64, what: &str) -> wasmtime::Result<String> {
        let bytes = self.bytes(handle, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|error| fault(format!("{what} is not UTF-8: {error}")))
    }

    /// The length of the live block at `handle`, else 0.
    fn length(&self, handle: u64) -> u64 {
        self.live(handle).map_or(0, |block| block.len)
    }

    /// A new block of `len` bytes (0 for none), zeroed: a freed block large enough, else the
    /// heap's end, grown within the memory budget.
    fn alloc(&mut self, len: u64, limiter: &mut Limiter) -> wasmtime::Result<u64> {
        if len == 0 {
            return Ok(0);
        }
        let Some(end) = size(len)
            .and_then(|len| self.heap.len().checked_add(len))
            .and_then(|end| end.checked_add(BLOCK_COST))
        else {
            return Err(out_of_memory(limiter, usize::MAX));
        };
        if end > self.counted {
            if let Some(start) = self.reuse(len) {
                return Ok(start);
            }
            self.reserve(end, limiter)?;
        }
        let start = BASE + wide(self.heap.len());
        self.heap.resize(end, 0);
        self.blocks.push((
            start,
            Block {
                len,
                capacity: len,
                active: true,
            },
        ));
        Ok(start)
    }

    /// A freed block of at least `len` bytes, made live again and zeroed.
    fn reuse(&mut self, len: u64) -> Option<u64> {
        let fits = |start: &u64| {
            self.find(*start)
                .is_some_and(|index| self.blocks[index].1.capacity >= len)
        };
        let back = self.freed.iter().rev().take(REUSE_SCAN).position(fits)?;
        let start = self.freed.swap_remove(self.freed.len() - 1 - back);
        let index = self.find(start)?;
        let block = &mut self.blocks[index].1;
        block.active = true;
        block.len = len;
        let range = self.range(start, len)?;
        self.heap[range].fill(0);
        Some(start)
    }

    /// Makes room for a heap of `end` bytes: doubled when the budget allows (growth stays
    /// amortised), else exactly what is needed, else the call ends with `MemoryLimit`.
    fn reserve(&mut self, end: usize, limiter: &mut Limiter) -> wasmtime::Result<()> {
        let Some(needed) = end.checked_next_multiple_of(PAGE) else {
            return Err(out_of_memory(limiter, usize::MAX));
        };
        let doubled = self
            .counted
            .saturating_mul(2)
            .checked_next_multiple_of(PAGE)
            .unwrap_or(needed);
        let target = if doubled > needed && doubled - self.counted <= limiter.room() {
            doubled
        } else {
            needed
        };
        if !limiter.grow_host(target - self.counted) {
            return Err(out_of_memory(limiter, 0));
        }
        // Counted before it is reserved: a failed reservation keeps it counted (the budget
        // errs on the strict side, as for linear memories).
        self.counted = target;
        if self
            .heap
            .try_reserve_exact(target - self.heap.len())
            .is_err()
        {
            return Err(out_of_memory(limiter, target));
        }
        Ok(())
    }

    /// Frees the live block at `handle`; anything else is ignored (PDKs free twice).
    fn free(&mut self, handle: u64) {
        let Some(index) = self.find(handle) else {
            return;
        };
        let block = &mut self.blocks[index].1;
        if block.active {
            block.active = false;
            self.freed.push(handle);
            if handle == self.input.0 {
                self.input.1 = 0;
            }
        }
    }

    /// A new block holding `bytes` (0 when empty).
    fn new_block(&mut self, bytes: &[u8], limiter: &mut Limiter) -> wasmtime::Result<u64> {
        let start = self.alloc(wide(bytes.len()), limiter)?;
        if let Some(range) = self.range(start, wide(bytes.len())) {
            self.heap[range].copy_from_slice(bytes);
        }
        Ok(start)
    }

    /// The error the call set (`error_set`), if it names a live, non-empty block.
    pub(crate) fn error_message(&self) -> Option<String> {
        if self.error == 0 {
            return None;
        }
        let bytes = self.block(self.error).filter(|bytes| !bytes.is_empty())?;
        Some(bounded_message(bytes))
    }

    /// The output the call set (`output_set`): the bytes, checked again (a `reset` may have
    /// emptied the heap since).
    pub(crate) fn output(&self) -> std::result::Result<&[u8], String> {
        let (start, len) = self.output;
        if len == 0 {
            return Ok(&[]);
        }
        let range = self.range(start, len).ok_or_else(|| {
            format!(
                "output at {start:#x} with length {len} is outside the Extism kernel's heap of {} bytes",
                self.heap.len()
            )
        })?;
        Ok(&self.heap[range])
    }

    /// The length of the output the call set.
    pub(crate) fn output_len(&self) -> u64 {
        self.output.1
    }

    /// The bytes the heap holds (its capacity), for figures.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.counted
    }

    /// The vars, for the next version: a header, then each key and value with a `u64`
    /// little-endian length before it.
    pub(crate) fn save_vars(&self) -> Vec<u8> {
        let mut state = VARS_MAGIC.to_vec();
        for (key, value) in &self.vars {
            for part in [key.as_bytes(), value.as_slice()] {
                state.extend_from_slice(&wide(part.len()).to_le_bytes());
                state.extend_from_slice(part);
            }
        }
        state
    }

    /// Takes the vars an earlier version saved; `Ok(false)` when `state` is not a hand-over of
    /// vars. Every length is checked, and the vars stay within `max_var_bytes`.
    pub(crate) fn restore_vars(
        &mut self,
        state: &[u8],
        max_var_bytes: usize,
    ) -> std::result::Result<bool, String> {
        let Some(mut rest) = state.strip_prefix(VARS_MAGIC) else {
            return Ok(false);
        };
        let take = |rest: &mut &[u8], what: &str| -> std::result::Result<Vec<u8>, String> {
            let (len, tail) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| format!("the handed-over vars end inside a {what}'s length"))?;
            let len = size(u64::from_le_bytes(*len)).unwrap_or(usize::MAX);
            if len > tail.len() {
                return Err(format!(
                    "a handed-over {what} of {len} bytes is longer than the {} bytes left",
                    tail.len()
                ));
            }
            let (part, tail) = tail.split_at(len);
            *rest = tail;
            Ok(part.to_vec())
        };
        let mut vars = BTreeMap::new();
        let mut bytes = 0usize;
        loop {
            if rest.is_empty() {
                break;
            }
            let key = String::from_utf8(take(&mut rest, "key")?)
                .map_err(|_| "a handed-over var key is not UTF-8".to_owned())?;
            let value = take(&mut rest, "value")?;
            bytes = bytes
                .saturating_add(key.len())
                .saturating_add(value.len())
                .saturating_add(VAR_OVERHEAD);
            if bytes > max_var_bytes {
                return Err(format!(
                    "the handed-over vars need more than max_var_bytes ({max_var_bytes})"
                ));
            }
            vars.insert(key, value);
        }
        self.vars = vars;
        self.var_bytes = bytes;
        Ok(true)
    }

    /// What the vars would hold with `key` set to a value of `len` bytes, checked against
    /// `max` before the value is copied.
    fn var_total(&self, key: &str, len: usize, max: usize) -> wasmtime::Result<usize> {
        let old = self
            .vars
            .get(key)
            .map_or(0, |old| key.len() + old.len() + VAR_OVERHEAD);
        let total = (self.var_bytes - old)
            .saturating_add(key.len())
            .saturating_add(len)
            .saturating_add(VAR_OVERHEAD);
        if total > max {
            return Err(refusal(format!(
                "the var store is full: var `{}` would make it {total} bytes, over max_var_bytes ({max})",
                key.chars().take(64).collect::<String>()
            )));
        }
        Ok(total)
    }

    fn set_var(&mut self, key: String, value: Vec<u8>, max: usize) -> wasmtime::Result<()> {
        let total = self.var_total(&key, value.len(), max)?;
        self.vars.insert(key, value);
        self.var_bytes = total;
        Ok(())
    }

    fn remove_var(&mut self, key: &str) {
        if let Some(old) = self.vars.remove(key) {
            self.var_bytes -= key.len() + old.len() + VAR_OVERHEAD;
        }
    }
}

/// The kernel and the memory budget of the store, or the fault of a store without a kernel
/// (an instance of another kind of plugin, which cannot import these functions).
fn parts(state: &mut StoreState) -> wasmtime::Result<(&mut Kernel, &mut Limiter)> {
    let StoreState {
        extism, limiter, ..
    } = state;
    let kernel = extism
        .as_deref_mut()
        .ok_or_else(|| fault("this instance has no Extism kernel".to_owned()))?;
    Ok((kernel, limiter))
}

fn kernel(state: &mut StoreState) -> wasmtime::Result<&mut Kernel> {
    parts(state).map(|(kernel, _)| kernel)
}

/// A kernel value of the guest (`i64`) as the unsigned address or length it carries.
fn unsigned(value: i64) -> u64 {
    value.cast_unsigned()
}

/// An address or length as the guest's `i64`.
fn signed(value: u64) -> i64 {
    value.cast_signed()
}

/// The lowest level a subscriber takes from plugins, in Extism's numbering (trace 0 ..
/// error 4), or `i32::MAX` when it takes none.
fn log_level() -> i32 {
    use tracing::Level;
    if tracing::enabled!(target: "dlinkwm::guest", Level::TRACE) {
        0
    } else if tracing::enabled!(target: "dlinkwm::guest", Level::DEBUG) {
        1
    } else if tracing::enabled!(target: "dlinkwm::guest", Level::INFO) {
        2
    } else if tracing::enabled!(target: "dlinkwm::guest", Level::WARN) {
        3
    } else if tracing::enabled!(target: "dlinkwm::guest", Level::ERROR) {
        4
    } else {
        i32::MAX
    }
}

/// Logs the text of block `handle` at `level` (within the call's log budget) and frees it.
fn log(state: &mut StoreState, level: LogLevel, handle: u64) -> wasmtime::Result<()> {
    let StoreState {
        extism,
        log_budget,
        context,
        ..
    } = state;
    let kernel = extism
        .as_deref_mut()
        .ok_or_else(|| fault("this instance has no Extism kernel".to_owned()))?;
    if !level_enabled(level) {
        // Nobody reads it: freed unread, as Extism does.
        kernel.free(handle);
        return Ok(());
    }
    let line = kernel.bytes(handle, "log message")?;
    if log_budget.take(&context.name, line.len()) {
        crate::runtime::linker::guest_log(&context.name, level, line);
    }
    kernel.free(handle);
    Ok(())
}

/// Whether a subscriber takes plugin log lines at `level`.
fn level_enabled(level: LogLevel) -> bool {
    use tracing::Level;
    match level {
        LogLevel::Error => tracing::enabled!(target: "dlinkwm::guest", Level::ERROR),
        LogLevel::Warn => tracing::enabled!(target: "dlinkwm::guest", Level::WARN),
        LogLevel::Info => tracing::enabled!(target: "dlinkwm::guest", Level::INFO),
        LogLevel::Debug => tracing::enabled!(target: "dlinkwm::guest", Level::DEBUG),
        _ => tracing::enabled!(target: "dlinkwm::guest", Level::TRACE),
    }
}

/// Adds the Extism kernel (`extism:host/env`) to `linker`; `asynchronous` for the linker of
/// async plugins (an HTTP request then waits on a blocking thread, not the executor's).
pub(crate) fn add_env(linker: &mut Linker<StoreState>, asynchronous: bool) -> wasmtime::Result<()> {
    type C<'a> = Caller<'a, StoreState>;
    linker.func_wrap(ENV_MODULE, "alloc", |mut c: C<'_>, len: i64| {
        let (kernel, limiter) = parts(c.data_mut())?;
        kernel.alloc(unsigned(len), limiter).map(signed)
    })?;
    linker.func_wrap(ENV_MODULE, "free", |mut c: C<'_>, handle: i64| {
        kernel(c.data_mut())?.free(unsigned(handle));
        Ok(())
    })?;
    for name in ["length", "length_unsafe"] {
        linker.func_wrap(ENV_MODULE, name, |mut c: C<'_>, handle: i64| {
            Ok(signed(kernel(c.data_mut())?.length(unsigned(handle))))
        })?;
    }
    linker.func_wrap(ENV_MODULE, "load_u8", |mut c: C<'_>, address: i64| {
        let kernel = kernel(c.data_mut())?;
        let range = kernel.checked(unsigned(address), 1, "load_u8")?;
        Ok(kernel.byte_at(range))
    })?;
    linker.func_wrap(ENV_MODULE, "load_u64", |mut c: C<'_>, address: i64| {
        let kernel = kernel(c.data_mut())?;
        let range = kernel.checked(unsigned(address), 8, "load_u64")?;
        Ok(kernel.word_at(range))
    })?;
    linker.func_wrap(
        ENV_MODULE,
        "store_u8",
        |mut c: C<'_>, address: i64, byte: i32| {
            let kernel = kernel(c.data_mut())?;
            let range = kernel.checked(unsigned(address), 1, "store_u8")?;
            kernel.heap[range.start] = byte.to_le_bytes()[0];
            Ok(())
        },
    )?;
    linker.func_wrap(
        ENV_MODULE,
        "store_u64",
        |mut c: C<'_>, address: i64, value: i64| {
            let kernel = kernel(c.data_mut())?;
            let range = kernel.checked(unsigned(address), 8, "store_u64")?;
            kernel.heap[range].copy_from_slice(&value.to_le_bytes());
            Ok(())
        },
    )?;
    linker.func_wrap(ENV_MODULE, "input_length", |mut c: C<'_>| {
        Ok(signed(kernel(c.data_mut())?.input.1))
    })?;
    linker.func_wrap(ENV_MODULE, "input_offset", |mut c: C<'_>| {
        let kernel = kernel(c.data_mut())?;
        Ok(if kernel.input.1 == 0 {
            0
        } else {
            signed(kernel.input.0)
        })
    })?;
    linker.func_wrap(ENV_MODULE, "input_load_u8", |mut c: C<'_>, index: i64| {
        let kernel = kernel(c.data_mut())?;
        let range = input_range(kernel, unsigned(index), 1, "input_load_u8")?;
        Ok(kernel.byte_at(range))
    })?;
    linker.func_wrap(ENV_MODULE, "input_load_u64", |mut c: C<'_>, index: i64| {
        let kernel = kernel(c.data_mut())?;
        let range = input_range(kernel, unsigned(index), 8, "input_load_u64")?;
        Ok(kernel.word_at(range))
    })?;
    linker.func_wrap(
        ENV_MODULE,
        "input_set",
        |mut c: C<'_>, address: i64, len: i64| {
            let kernel = kernel(c.data_mut())?;
            let (address, len) = (unsigned(address), unsigned(len));
            kernel.checked(address, len, "input")?;
            kernel.input = (address, len);
            Ok(())
        },
    )?;
    linker.func_wrap(
        ENV_MODULE,
        "output_set",
        |mut c: C<'_>, address: i64, len: i64| {
            let kernel = kernel(c.data_mut())?;
            let (address, len) = (unsigned(address), unsigned(len));
            if address == 0 {
                // No block (a PDK's empty output after an earlier one): ignored, as in Extism.
                return Ok(());
            }
            if len == 0 {
                kernel.output = (0, 0);
                return Ok(());
            }
            kernel.checked(address, len, "output")?;
            kernel.output = (address, len);
            Ok(())
        },
    )?;
    linker.func_wrap(ENV_MODULE, "output_offset", |mut c: C<'_>| {
        Ok(signed(kernel(c.data_mut())?.output.0))
    })?;
    linker.func_wrap(ENV_MODULE, "output_length", |mut c: C<'_>| {
        Ok(signed(kernel(c.data_mut())?.output.1))
    })?;
    linker.func_wrap(ENV_MODULE, "error_set", |mut c: C<'_>, handle: i64| {
        kernel(c.data_mut())?.error = unsigned(handle);
        Ok(())
    })?;
    linker.func_wrap(ENV_MODULE, "error_get", |mut c: C<'_>| {
        Ok(signed(kernel(c.data_mut())?.error))
    })?;
    linker.func_wrap(ENV_MODULE, "reset", |mut c: C<'_>| {
        kernel(c.data_mut())?.reset();
        Ok(())
    })?;
    linker.func_wrap(ENV_MODULE, "memory_bytes", |mut c: C<'_>| {
        Ok(signed(wide(kernel(c.data_mut())?.counted)))
    })?;
    linker.func_wrap(ENV_MODULE, "config_get", |mut c: C<'_>, key: i64| {
        let state = c.data_mut();
        let settings = state.settings.clone();
        let (kernel, limiter) = parts(state)?;
        let name = kernel.text(unsigned(key), "config key")?;
        kernel.free(unsigned(key));
        match settings.config.get(&name) {
            Some(value) => kernel.new_block(value.as_bytes(), limiter).map(signed),
            None => Ok(0),
        }
    })?;
    linker.func_wrap(ENV_MODULE, "var_get", |mut c: C<'_>, key: i64| {
        let (kernel, limiter) = parts(c.data_mut())?;
        let name = kernel.text(unsigned(key), "var key")?;
        kernel.free(unsigned(key));
        let Some(value) = kernel.vars.get(&name) else {
            return Ok(0);
        };
        // (Cloned out: the block is allocated in the heap the vars sit beside.)
        let value = value.clone();
        kernel.new_block(&value, limiter).map(signed)
    })?;
    linker.func_wrap(
        ENV_MODULE,
        "var_set",
        |mut c: C<'_>, key: i64, value: i64| {
            let state = c.data_mut();
            let max = state.settings.max_var_bytes;
            let kernel = kernel(state)?;
            if max == 0 {
                return Err(refusal(
                    "vars are off for this plugin (max_var_bytes = 0)".to_owned(),
                ));
            }
            let (key, value) = (unsigned(key), unsigned(value));
            let name = kernel.text(key, "var key")?;
            if value == 0 {
                kernel.remove_var(&name);
            } else {
                // Checked against the bound before the value is copied.
                let len = size(kernel.length(value)).unwrap_or(usize::MAX);
                kernel.var_total(&name, len, max)?;
                let bytes = kernel.bytes(value, "var value")?.to_vec();
                kernel.set_var(name, bytes, max)?;
                kernel.free(value);
            }
            kernel.free(key);
            Ok(())
        },
    )?;
    for (name, level) in [
        ("log_trace", LogLevel::Trace),
        ("log_debug", LogLevel::Debug),
        ("log_info", LogLevel::Info),
        ("log_warn", LogLevel::Warn),
        ("log_error", LogLevel::Error),
    ] {
        linker.func_wrap(ENV_MODULE, name, move |mut c: C<'_>, handle: i64| {
            log(c.data_mut(), level, unsigned(handle))
        })?;
    }
    linker.func_wrap(ENV_MODULE, "get_log_level", |_: C<'_>| Ok(log_level()))?;
    linker.func_wrap(ENV_MODULE, "http_status_code", |mut c: C<'_>| {
        Ok(kernel(c.data_mut())?.http_status)
    })?;
    linker.func_wrap(ENV_MODULE, "http_headers", |mut c: C<'_>| {
        let (kernel, limiter) = parts(c.data_mut())?;
        match kernel.http_headers.take() {
            Some(headers) => {
                let handle = kernel.new_block(&headers, limiter);
                kernel.http_headers = Some(headers);
                handle.map(signed)
            }
            None => Ok(0),
        }
    })?;
    if asynchronous {
        linker.func_wrap_async(
            ENV_MODULE,
            "http_request",
            |mut c: C<'_>, (request, body): (i64, i64)| {
                Box::new(async move {
                    let prepared = http_prepare(c.data_mut(), unsigned(request), unsigned(body))?;
                    let Some(left) = crate::runtime::waits::time_left(c.data()) else {
                        return Err(crate::runtime::waits::interrupted());
                    };
                    let url = prepared.url.clone();
                    let sent = tokio::task::spawn_blocking(move || {
                        crate::runtime::extism_http::send(prepared, left)
                    });
                    let response = match tokio::time::timeout(left, sent).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(joined)) => Err(format!("the request thread failed: {joined}")),
                        Err(_elapsed) => return Err(crate::runtime::waits::interrupted()),
                    };
                    http_finish(c.data_mut(), &url, response)
                })
            },
        )?;
    } else {
        linker.func_wrap(
            ENV_MODULE,
            "http_request",
            |mut c: C<'_>, request: i64, body: i64| {
                let prepared = http_prepare(c.data_mut(), unsigned(request), unsigned(body))?;
                let Some(left) = crate::runtime::waits::time_left(c.data()) else {
                    return Err(crate::runtime::waits::interrupted());
                };
                let url = prepared.url.clone();
                let response = crate::runtime::extism_http::send(prepared, left);
                http_finish(c.data_mut(), &url, response)
            },
        )?;
    }
    Ok(())
}

/// The heap range of input bytes `index..index + len`.
fn input_range(
    kernel: &Kernel,
    index: u64,
    len: u64,
    what: &str,
) -> wasmtime::Result<Range<usize>> {
    let (start, input_len) = kernel.input;
    match index.checked_add(len) {
        Some(end) if end <= input_len => kernel.checked(start + index, len, what),
        _ => Err(fault(format!(
            "{what} at input index {index} is outside the input of {input_len} bytes"
        ))),
    }
}

/// Reads an `http_request`'s request and body blocks (freeing both) and checks the URL's host
/// against `allowed_hosts`.
fn http_prepare(
    state: &mut StoreState,
    request: u64,
    body: u64,
) -> wasmtime::Result<crate::runtime::extism_http::Request> {
    let settings = state.settings.clone();
    let (kernel, limiter) = parts(state)?;
    let json = kernel.bytes(request, "HTTP request")?;
    if json.len() > MAX_HTTP_REQUEST {
        return Err(refusal(format!(
            "the plugin's HTTP request description is {} bytes, over {MAX_HTTP_REQUEST}",
            json.len()
        )));
    }
    // The body is read only as far as the memory budget could hold it.
    let max_body = settings.max_http_response_bytes.min(limiter.room());
    let mut prepared =
        crate::runtime::extism_http::Request::parse(json, max_body).map_err(refusal)?;
    kernel.free(request);
    if body != 0 {
        prepared.body = Some(kernel.bytes(body, "HTTP request body")?.to_vec());
        kernel.free(body);
    }
    kernel.http_status = 0;
    kernel.http_headers = None;
    prepared
        .check_allowed(&settings.allowed_hosts)
        .map_err(refusal)?;
    Ok(prepared)
}

/// Puts a response in the kernel: its status, its headers, its body in a new block (0 when
/// empty); a failed request ends the call.
fn http_finish(
    state: &mut StoreState,
    url: &str,
    response: std::result::Result<crate::runtime::extism_http::Response, String>,
) -> wasmtime::Result<i64> {
    let response = response.map_err(|error| {
        if error == crate::runtime::extism_http::TIMEOUT {
            // The call's time ran out while it waited: `Error::Timeout`, as for a guest loop.
            crate::runtime::waits::interrupted()
        } else {
            refusal(format!("HTTP request to {url} failed: {error}"))
        }
    })?;
    let (kernel, limiter) = parts(state)?;
    kernel.http_status = i32::from(response.status);
    kernel.http_headers = Some(response.headers);
    kernel.new_block(&response.body, limiter).map(signed)
}

/// The host functions an Extism plugin imports from modules other than the kernel
/// (`extism:host/user`, or a namespace of its own), each checked to be one DlinkWM maps: handle
/// arguments (`i64`), none or one, and no result or one handle.
pub(crate) fn host_functions(
    plugin: &str,
    module: &wasmtime::Module,
) -> Result<Vec<(String, String, wasmtime::FuncType)>> {
    let mut functions = Vec::new();
    for import in module.imports() {
        let namespace = import.module();
        if namespace == ENV_MODULE
            || namespace == "wasi_snapshot_preview1"
            || namespace == dlinkwm_abi::import::MODULE
        {
            continue;
        }
        let wasmtime::ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let handle = |ty: ValType| matches!(ty, ValType::I64);
        if ty.params().len() > 1
            || ty.results().len() > 1
            || !ty.params().all(handle)
            || !ty.results().all(handle)
        {
            return Err(Error::Instantiate {
                plugin: plugin.to_owned(),
                reason: format!(
                    "Extism host function `{namespace}.{}` has the signature {ty}; DlinkWM maps \
                     host functions of at most one handle argument (i64) and at most one handle \
                     result (docs/extism.md)",
                    import.name()
                ),
            });
        }
        functions.push((namespace.to_owned(), import.name().to_owned(), ty));
    }
    Ok(functions)
}

/// Defines the host functions `functions` (from [`host_functions`]) in `linker`: each calls
/// the host method of its name with the bytes of its argument's block, subject to the plugin's
/// `host_methods` allowlist, and answers a new block with the answer.
pub(crate) fn define_host_functions(
    linker: &mut Linker<StoreState>,
    functions: Vec<(String, String, wasmtime::FuncType)>,
    asynchronous: bool,
) -> wasmtime::Result<()> {
    for (namespace, name, ty) in functions {
        let name: Arc<str> = Arc::from(name);
        if asynchronous {
            linker.func_new_async(
                &namespace,
                &name.clone(),
                ty,
                move |mut caller, params, results| {
                    let name = name.clone();
                    Box::new(async move {
                        let (taken, input) = take_input(caller.data_mut(), params)?;
                        let state = caller.data_mut();
                        let status = crate::runtime::linker::host_call_async(
                            state,
                            &name,
                            Format::Raw.code(),
                            &taken.heap[input],
                            Convention::Extism,
                        )
                        .await;
                        state.extism = Some(taken);
                        answer(state, &name, status?, results)
                    })
                },
            )?;
        } else {
            linker.func_new(
                &namespace,
                &name.clone(),
                ty,
                move |mut caller, params, results| {
                    let (taken, input) = take_input(caller.data_mut(), params)?;
                    let state = caller.data_mut();
                    let status = crate::runtime::linker::host_call(
                        state,
                        &name,
                        Format::Raw.code(),
                        &taken.heap[input],
                        Convention::Extism,
                    );
                    state.extism = Some(taken);
                    answer(state, &name, status, results)
                },
            )?;
        }
    }
    Ok(())
}

/// Takes the kernel out of the store while a host method reads its argument from the heap
/// (the method cannot reach this instance), with the argument's range.
fn take_input(
    state: &mut StoreState,
    params: &[Val],
) -> wasmtime::Result<(Box<Kernel>, Range<usize>)> {
    let handle = match params.first() {
        Some(Val::I64(handle)) => unsigned(*handle),
        _ => 0,
    };
    let range = {
        let kernel = kernel(state)?;
        if handle == 0 {
            0..0
        } else {
            kernel
                .live(handle)
                .and_then(|block| kernel.range(handle, block.len))
                .ok_or_else(|| {
                    fault(format!(
                        "host function argument handle {handle:#x} is not a live block"
                    ))
                })?
        }
    };
    let kernel = state
        .extism
        .take()
        .ok_or_else(|| fault("this instance has no Extism kernel".to_owned()))?;
    Ok((kernel, range))
}

/// The answer of a host function: a new block with the method's answer, or the end of the
/// call with its error.
fn answer(
    state: &mut StoreState,
    name: &str,
    status: Status,
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let result = std::mem::take(&mut state.call.host_result);
    if status != Status::Ok {
        let message = String::from_utf8_lossy(&result).into_owned();
        state.call.host_result = result;
        return Err(refusal(format!("host function `{name}` failed: {message}")));
    }
    let (kernel, limiter) = parts(state)?;
    let written = match results.first_mut() {
        Some(slot) => kernel
            .new_block(&result, limiter)
            .map(|handle| *slot = Val::I64(signed(handle))),
        None => Ok(()),
    };
    // (The buffer is kept for the next host call.)
    state.call.host_result = result;
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max: usize) -> Limiter {
        Limiter::new(max, 1000)
    }

    #[test]
    fn blocks_have_lengths_only_where_they_start_and_freed_ones_are_reused() {
        let mut limiter = limiter(64 << 20);
        let mut kernel = Kernel::default();
        kernel.begin(b"input!", &mut limiter).unwrap();
        let input = kernel.input.0;
        assert_eq!(kernel.length(input), 6);
        assert_eq!(kernel.alloc(0, &mut limiter).unwrap(), 0);
        let a = kernel.alloc(100, &mut limiter).unwrap();
        let b = kernel.alloc(100, &mut limiter).unwrap();
        assert_eq!(
            (kernel.length(a), kernel.length(a + 1), kernel.length(0)),
            (100, 0, 0)
        );
        assert_eq!(b, a + 100 + wide(BLOCK_COST));
        kernel.free(a);
        kernel.free(a);
        kernel.free(12345);
        assert_eq!(kernel.length(a), 0);
        // Freed blocks wait until the heap would have to grow.
        let heap = kernel.counted;
        let mut last = b;
        while kernel.heap.len() + 100 + BLOCK_COST <= heap {
            last = kernel.alloc(100, &mut limiter).unwrap();
        }
        assert!(last > b);
        assert_eq!(kernel.alloc(50, &mut limiter).unwrap(), a);
        assert_eq!(kernel.length(a), 50);
        // Freeing the input empties it.
        kernel.free(input);
        assert_eq!(kernel.input.1, 0);
        // A new call starts with an empty heap: old handles are no blocks.
        kernel.begin(b"", &mut limiter).unwrap();
        assert_eq!((kernel.length(a), kernel.length(b)), (0, 0));
    }

    #[test]
    fn every_block_costs_heap_so_their_number_is_bounded() {
        let mut limiter = limiter(1 << 20);
        let mut kernel = Kernel::default();
        kernel.begin(b"", &mut limiter).unwrap();
        let mut made = 0usize;
        while kernel.alloc(1, &mut limiter).is_ok() {
            made += 1;
        }
        assert!(made > 1000 && made <= (1 << 20) / BLOCK_COST, "{made}");
        assert_eq!(kernel.blocks.len(), made);
    }

    #[test]
    fn the_heap_counts_in_the_memory_budget() {
        let mut limiter = limiter(1 << 20);
        let mut kernel = Kernel::default();
        kernel.begin(b"", &mut limiter).unwrap();
        kernel.alloc(512 << 10, &mut limiter).unwrap();
        assert!(kernel.alloc(600 << 10, &mut limiter).is_err());
        assert!(limiter.memory_refused.is_some());
        assert!(kernel.alloc(u64::MAX, &mut limiter).is_err());
        assert!(kernel.heap_bytes() <= 1 << 20);
    }

    #[test]
    fn vars_round_trip_and_hostile_hand_overs_are_refused() {
        let mut kernel = Kernel::default();
        kernel.set_var("a".into(), b"1".to_vec(), 1 << 20).unwrap();
        kernel.set_var("b".into(), vec![2; 300], 1 << 20).unwrap();
        assert!(kernel.set_var("c".into(), vec![0; 2000], 1000).is_err());
        let saved = kernel.save_vars();
        let mut next = Kernel::default();
        assert_eq!(next.restore_vars(&saved, 1 << 20), Ok(true));
        assert_eq!(next.vars, kernel.vars);
        assert_eq!(next.var_bytes, kernel.var_bytes);
        // Not a hand-over of vars: nothing taken.
        assert_eq!(next.restore_vars(b"something else", 1 << 20), Ok(false));
        // Over the bound, cut short, or a length past the end: refused.
        assert!(next.restore_vars(&saved, 10).is_err());
        assert!(
            next.restore_vars(&saved[..saved.len() - 1], 1 << 20)
                .is_err()
        );
        let mut lying = VARS_MAGIC.to_vec();
        lying.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(next.restore_vars(&lying, usize::MAX).is_err());
        kernel.remove_var("a");
        kernel.remove_var("a");
        assert_eq!(kernel.vars.len(), 1);
    }
}
