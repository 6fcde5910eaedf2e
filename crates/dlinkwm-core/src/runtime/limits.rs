//! The store limiter: one memory budget per instance, across all of its linear memories and
//! tables, that remembers being hit so a failed growth becomes [`crate::Error::MemoryLimit`]
//! rather than an anonymous trap.
//!
//! wasmtime asks the limiter about each memory and each table on its own (`current` and
//! `desired` are that memory's sizes). A plugin with many memories, each just under the limit,
//! would pass a per-memory check; the limiter therefore keeps the sum of everything it allowed
//! and checks the sum. A component's core instances share the store, so the budget covers all of
//! them together.

use wasmtime::ResourceLimiter;

/// The most linear memories (and, separately, tables) one instance may create. The byte budget
/// bounds what they hold; this bounds the address space each reserves.
pub(crate) const MAX_MEMORIES: usize = 64;
/// See [`MAX_MEMORIES`].
pub(crate) const MAX_TABLES: usize = 64;
/// What one table element costs wasmtime: a pointer.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

#[derive(Debug)]
pub(crate) struct Limiter {
    /// The budget of the whole instance: every linear memory plus every table, in bytes.
    pub(crate) max_memory_bytes: usize,
    /// The largest single table, in elements.
    pub(crate) max_table_elements: usize,
    /// What the instance's memories and tables hold now, in bytes. A growth the limiter
    /// allowed and wasmtime then failed stays counted: wasmtime may report a failure without
    /// asking first (a table64 size overflow), so giving bytes back on a failure report could be
    /// played to grow past the budget. The budget errs on the strict side instead (failures
    /// after an allowed growth are rare: the pool's slot size is checked against the budget).
    used: usize,
    /// The largest size refused during the current call, in bytes (the instance's total).
    pub(crate) memory_refused: Option<usize>,
}

impl Limiter {
    pub(crate) fn new(max_memory_bytes: usize, max_table_elements: usize) -> Self {
        Self {
            max_memory_bytes,
            max_table_elements,
            used: 0,
            memory_refused: None,
        }
    }

    /// The bytes every memory and table of the instance holds.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// Bytes the instance may still grow by.
    pub(crate) fn room(&self) -> usize {
        self.max_memory_bytes.saturating_sub(self.used)
    }

    /// Counts `delta` bytes the host holds for the instance (the Extism kernel's heap) if the
    /// total stays within the budget; a refusal is remembered as a memory growth's is.
    pub(crate) fn grow_host(&mut self, delta: usize) -> bool {
        self.grow(delta)
    }

    /// Whether the host may hold `delta` more bytes for the instance for a moment (within the
    /// budget, not counted); a refusal is remembered as a memory growth's is.
    pub(crate) fn fits_for_a_moment(&mut self, delta: usize) -> bool {
        self.total_within(delta).is_some()
    }

    /// Remembers a refused growth to `total` bytes the limiter was not asked about (a host
    /// allocation that failed).
    pub(crate) fn refused(&mut self, total: usize) {
        self.memory_refused = Some(self.memory_refused.unwrap_or(0).max(total));
    }

    /// Allows growing by `delta` bytes if the instance's total stays within the budget.
    fn grow(&mut self, delta: usize) -> bool {
        let total = self.total_within(delta);
        if let Some(total) = total {
            self.used = total;
        }
        total.is_some()
    }

    /// The instance's total after `delta` more bytes, if it stays within the budget; a refusal
    /// is remembered.
    fn total_within(&mut self, delta: usize) -> Option<usize> {
        match self.used.checked_add(delta) {
            Some(total) if total <= self.max_memory_bytes => Some(total),
            total => {
                self.refused(total.unwrap_or(usize::MAX));
                None
            }
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            // wasmtime fails this growth itself; nothing to count.
            return Ok(true);
        }
        Ok(self.grow(desired.saturating_sub(current)))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Still counted: see `used`.
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(true);
        }
        if desired > self.max_table_elements {
            return Ok(false);
        }
        let delta = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.grow(delta))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Still counted: see `used`.
        Ok(())
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_budget_is_the_sum_of_every_memory_and_table() {
        let mut limiter = Limiter::new(10 * MIB, 1000);
        // Two memories of 4 MiB each fit; a third does not, although it alone would.
        assert!(limiter.memory_growing(0, 4 * MIB, None).unwrap());
        assert!(limiter.memory_growing(0, 4 * MIB, None).unwrap());
        assert!(!limiter.memory_growing(0, 4 * MIB, None).unwrap());
        assert_eq!(limiter.memory_refused, Some(12 * MIB));
        // Growing one of them by 2 MiB reaches the budget exactly.
        assert!(limiter.memory_growing(4 * MIB, 6 * MIB, None).unwrap());
        assert_eq!(limiter.used(), 10 * MIB);
        // Tables count too.
        assert!(!limiter.table_growing(0, 10, None).unwrap());
    }

    #[test]
    fn failure_reports_give_nothing_back() {
        // wasmtime can report a failed table growth it never asked about (a table64 size
        // overflow): if failure reports gave bytes back, a guest could alternate real growths
        // and such reports to grow without bound.
        let mut limiter = Limiter::new(10 * MIB, 1000);
        assert!(limiter.memory_growing(0, 8 * MIB, None).unwrap());
        limiter
            .table_grow_failed(wasmtime::Error::msg("table size overflow"))
            .unwrap();
        limiter
            .memory_grow_failed(wasmtime::Error::msg("no memory"))
            .unwrap();
        assert_eq!(limiter.used(), 8 * MIB);
        assert!(!limiter.memory_growing(0, 8 * MIB, None).unwrap());
    }

    #[test]
    fn tables_are_bounded_by_elements_and_bytes() {
        let mut limiter = Limiter::new(MIB, 100);
        assert!(!limiter.table_growing(0, 101, None).unwrap());
        assert!(limiter.table_growing(0, 100, None).unwrap());
        assert_eq!(limiter.used(), 100 * TABLE_ELEMENT_BYTES);
    }
}
