//! The store limiter: memory and table limits that remember being hit, so a failed growth
//! becomes [`crate::Error::MemoryLimit`] rather than an anonymous trap.

use wasmtime::ResourceLimiter;

#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) max_memory_bytes: usize,
    pub(crate) max_table_elements: usize,
    /// The largest size refused during the current call, in bytes.
    pub(crate) memory_refused: Option<usize>,
}

impl Limiter {
    pub(crate) fn new(max_memory_bytes: usize, max_table_elements: usize) -> Self {
        Self {
            max_memory_bytes,
            max_table_elements,
            memory_refused: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.memory_refused = Some(self.memory_refused.unwrap_or(0).max(desired));
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }
}
