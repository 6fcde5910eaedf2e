//! The plugin layer: a loaded plugin and its versions, built on the engine's compiled code and
//! the runtime's instances. [`Plugin`] (`handle`) is what applications hold and call; a call
//! marks its thread (`held`, so a plugin called from inside its own call is refused rather than
//! deadlocked), takes an instance from the pool through its policy (`policy` decides which
//! instance may serve and when one is made, dropped or waited for; `pool` keeps the idle ones,
//! sharded per thread), and runs it. A `version` is compiled code with its export table and
//! live-instance count; `reload` loads new versions off the call path, hands state over, swaps
//! them in atomically and rolls back, and `events` tells subscribers. Nothing here knows about
//! files being watched: the watch layer above asks for reloads.

mod events;
mod handle;
mod held;
mod policy;
mod pool;
mod reload;
mod version;

pub use events::ReloadEvent;
pub(crate) use events::Subscribers;
pub use handle::{CallObserver, CallRecord, Metered, Plugin, PluginOptions, WeakPlugin};
pub use reload::ReloadOutcome;
pub(crate) use reload::wait_while_empty;
