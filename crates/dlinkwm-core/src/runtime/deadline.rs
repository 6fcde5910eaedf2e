//! Call deadlines, counted in ticks of the engine's epoch. The engine's ticker thread advances
//! the epoch and [`Ticks`] every [`EPOCH_TICK`]; a call arms its store's epoch deadline (which
//! interrupts wasm code) and records the same deadline as a tick count (which bounds the waits
//! inside host calls, see `waits`), so nothing reads a clock on the call path.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// How often the ticker advances the epoch. Time limits are rounded up to whole ticks, so a call
/// is interrupted between `timeout` and `timeout + EPOCH_TICK` after it started.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine's epoch count as the ticker advances it, shared with every store.
pub(crate) type Ticks = Arc<AtomicU64>;

/// Where the current call's deadline is, in ticks; `None` outside calls with a deadline.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Deadline {
    pub(crate) tick: u64,
}

/// Epoch ticks that make up `timeout`, rounded up, plus one for the tick in progress.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    const TICK_MS: u64 = EPOCH_TICK.as_millis() as u64;
    let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX / 2);
    millis.div_ceil(TICK_MS).saturating_add(1)
}
