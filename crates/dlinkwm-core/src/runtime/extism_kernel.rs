//! The Extism kernel's state in one instance (`Kernel`): its heap of blocks at 64-bit addresses,
//! counted in the instance's memory budget, the current call's input, output and error, its vars
//! (and their hand-over), and the last HTTP response. The host functions that expose it to the
//! plugin are in `extism`; this file knows nothing of wasmtime's linker or of the store.
//!
//! Every length here is a guest's `u64` converted with `try_from`, or a host length widened
//! (`clippy::cast_possible_truncation` is denied in this module).
#![deny(clippy::cast_possible_truncation)]

use std::collections::BTreeMap;
use std::ops::Range;

use crate::runtime::guest::{bounded_message, fault, refusal};
use crate::runtime::limits::Limiter;

/// The address of the heap's first byte: 0 is "no block".
pub(crate) const BASE: u64 = 1;
/// The heap grows in steps of this many bytes.
pub(crate) const PAGE: usize = 64 * 1024;
/// What one var costs beyond its key and value (the host's own bookkeeping, as Extism counts).
pub(crate) const VAR_OVERHEAD: usize = 48;
/// The first bytes of a hand-over of vars.
pub(crate) const VARS_MAGIC: &[u8] = b"dlinkwm-extism-vars/2\0";
/// Heap bytes each block costs beyond its own (a gap after it): the host's bookkeeping of the
/// block is paid from the memory budget too, so a plugin cannot make millions of one-byte
/// blocks outside it.
pub(crate) const BLOCK_COST: usize = 64;
/// Freed blocks looked at for reuse, the most recent first: a pattern of frees cannot make one
/// allocation scan them all.
pub(crate) const REUSE_SCAN: usize = 64;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Block {
    pub(crate) len: u64,
    pub(crate) capacity: u64,
    pub(crate) active: bool,
}

/// One instance's Extism kernel: its heap of blocks, the current call's input, output and
/// error, its vars, and the last HTTP response's status and headers.
#[derive(Debug, Default)]
pub(crate) struct Kernel {
    /// Address `a` is `heap[a - BASE]`; `heap.len()` is the end of the last block.
    pub(crate) heap: Vec<u8>,
    /// Bytes of heap counted in the instance's memory budget (the heap never uses more).
    pub(crate) counted: usize,
    /// Every block of this call, in address order (allocation order: the heap only grows
    /// within a call).
    pub(crate) blocks: Vec<(u64, Block)>,
    /// Addresses of freed blocks, reused before the heap grows.
    pub(crate) freed: Vec<u64>,
    pub(crate) input: (u64, u64),
    pub(crate) output: (u64, u64),
    pub(crate) error: u64,
    pub(crate) vars: BTreeMap<String, Vec<u8>>,
    pub(crate) var_bytes: usize,
    pub(crate) http_status: i32,
    pub(crate) http_headers: Option<Vec<u8>>,
}

/// The growth the budget refused, as wasmtime reports a refused memory growth.
#[cold]
pub(crate) fn out_of_memory(limiter: &mut Limiter, total: usize) -> wasmtime::Error {
    limiter.refused(total);
    wasmtime::Error::msg("the Extism kernel's heap cannot grow within the memory limit")
}

/// `value` as a host size, or `None` when it cannot be one.
pub(crate) fn size(value: u64) -> Option<usize> {
    usize::try_from(value).ok()
}

/// A host size as a kernel length (a `usize` always fits a `u64` on the hosts wasmtime runs on).
pub(crate) fn wide(value: usize) -> u64 {
    value as u64
}

impl Kernel {
    /// Empties the heap (keeping its capacity) and forgets the call's input, output and error.
    pub(crate) fn reset(&mut self) {
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
    pub(crate) fn range(&self, address: u64, len: u64) -> Option<Range<usize>> {
        let start = size(address.checked_sub(BASE)?)?;
        let end = start.checked_add(size(len)?)?;
        (end <= self.heap.len()).then_some(start..end)
    }

    /// The checked range, or the fault naming what the plugin handed over.
    pub(crate) fn checked(
        &self,
        address: u64,
        len: u64,
        what: &str,
    ) -> wasmtime::Result<Range<usize>> {
        self.range(address, len).ok_or_else(|| {
            fault(format!(
                "{what} at {address:#x} with length {len} is outside the Extism kernel's heap of {} bytes",
                self.heap.len()
            ))
        })
    }

    /// The byte at the start of `range` (checked to be in the heap).
    pub(crate) fn byte_at(&self, range: Range<usize>) -> i32 {
        i32::from(self.heap[range.start])
    }

    /// The little-endian word of the 8 bytes of `range` (checked to be in the heap).
    pub(crate) fn word_at(&self, range: Range<usize>) -> i64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.heap[range]);
        i64::from_le_bytes(bytes)
    }

    /// The index of the block at `handle`.
    pub(crate) fn find(&self, handle: u64) -> Option<usize> {
        self.blocks
            .binary_search_by_key(&handle, |(start, _)| *start)
            .ok()
    }

    /// The live block at `handle`.
    pub(crate) fn live(&self, handle: u64) -> Option<&Block> {
        self.find(handle)
            .map(|index| &self.blocks[index].1)
            .filter(|block| block.active)
    }

    /// The bytes of the live block at `handle`.
    pub(crate) fn block(&self, handle: u64) -> Option<&[u8]> {
        let block = self.live(handle)?;
        self.range(handle, block.len).map(|range| &self.heap[range])
    }

    /// The bytes of the live block at `handle` (0: none), or the fault naming it.
    pub(crate) fn bytes(&self, handle: u64, what: &str) -> wasmtime::Result<&[u8]> {
        if handle == 0 {
            return Ok(&[]);
        }
        self.block(handle)
            .ok_or_else(|| fault(format!("{what} handle {handle:#x} is not a live block")))
    }

    /// The UTF-8 text of the block at `handle` (0: empty).
    pub(crate) fn text(&self, handle: u64, what: &str) -> wasmtime::Result<String> {
        let bytes = self.bytes(handle, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|error| fault(format!("{what} is not UTF-8: {error}")))
    }

    /// The length of the live block at `handle`, else 0.
    pub(crate) fn length(&self, handle: u64) -> u64 {
        self.live(handle).map_or(0, |block| block.len)
    }

    /// A new block of `len` bytes (0 for none), zeroed: a freed block large enough, else the
    /// heap's end, grown within the memory budget.
    pub(crate) fn alloc(&mut self, len: u64, limiter: &mut Limiter) -> wasmtime::Result<u64> {
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
    pub(crate) fn reuse(&mut self, len: u64) -> Option<u64> {
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
    pub(crate) fn reserve(&mut self, end: usize, limiter: &mut Limiter) -> wasmtime::Result<()> {
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
    pub(crate) fn free(&mut self, handle: u64) {
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
    pub(crate) fn new_block(
        &mut self,
        bytes: &[u8],
        limiter: &mut Limiter,
    ) -> wasmtime::Result<u64> {
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
    pub(crate) fn var_total(&self, key: &str, len: usize, max: usize) -> wasmtime::Result<usize> {
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

    pub(crate) fn set_var(
        &mut self,
        key: String,
        value: Vec<u8>,
        max: usize,
    ) -> wasmtime::Result<()> {
        let total = self.var_total(&key, value.len(), max)?;
        self.vars.insert(key, value);
        self.var_bytes = total;
        Ok(())
    }

    pub(crate) fn remove_var(&mut self, key: &str) {
        if let Some(old) = self.vars.remove(key) {
            self.var_bytes -= key.len() + old.len() + VAR_OVERHEAD;
        }
    }
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
