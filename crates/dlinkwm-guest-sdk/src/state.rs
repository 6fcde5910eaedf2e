//! Carrying state across a hot reload.
//!
//! A plugin opts in with [`state_handover!`](crate::state_handover): the host asks the old
//! version for its state (`save`) and gives it to the new version (`restore`) before the new
//! version serves any call. If either fails, the reload does not happen and the old version keeps
//! serving. The state crosses as postcard bytes, so `save`'s return type and `restore`'s argument
//! type must stay compatible between versions.
//!
//! ```no_run
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! static COUNTER: AtomicU64 = AtomicU64::new(0);
//!
//! fn save() -> u64 {
//!     COUNTER.load(Ordering::Relaxed)
//! }
//!
//! fn restore(value: u64) -> Result<(), String> {
//!     COUNTER.store(value, Ordering::Relaxed);
//!     Ok(())
//! }
//!
//! dlinkwm::state_handover!(save = save, restore = restore);
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, ErrorKind, Format};

/// Exports `dlinkwm_state_save` and `dlinkwm_state_restore` for the given functions:
/// `save: fn() -> T` and `restore: fn(T) -> Result<(), E>` with `T: Serialize + Deserialize`
/// and `E: Display`.
#[macro_export]
macro_rules! state_handover {
    (save = $save:path, restore = $restore:path $(,)?) => {
        #[doc(hidden)]
        #[unsafe(export_name = "dlinkwm_state_save")]
        pub extern "C" fn __dlinkwm_state_save(ptr: i32, len: i32, format: i32) -> i32 {
            // SAFETY: the host passes no input (0, 0) to `dlinkwm_state_save`.
            unsafe { $crate::__private::run_state_save(ptr, len, format, $save) }
        }

        #[doc(hidden)]
        #[unsafe(export_name = "dlinkwm_state_restore")]
        pub extern "C" fn __dlinkwm_state_restore(ptr: i32, len: i32, format: i32) -> i32 {
            // SAFETY: the host passes a buffer from `dlinkwm_alloc`, as for an entry.
            unsafe { $crate::__private::run_state_restore(ptr, len, format, $restore) }
        }
    };
}

/// The body of `dlinkwm_state_save`.
///
/// # Safety
/// As [`crate::__private::run_entry`].
pub unsafe fn run_state_save<T: Serialize>(
    ptr: i32,
    len: i32,
    format: i32,
    save: fn() -> T,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::__private::run_entry(ptr, len, format, |_, _| {
            postcard::to_allocvec(&save())
                .map_err(|error| Error::new(ErrorKind::Encode, error.to_string()))
        })
    }
}

/// The body of `dlinkwm_state_restore`.
///
/// # Safety
/// As [`crate::__private::run_entry`].
pub unsafe fn run_state_restore<T: DeserializeOwned, E: std::fmt::Display>(
    ptr: i32,
    len: i32,
    format: i32,
    restore: fn(T) -> Result<(), E>,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::__private::run_entry(ptr, len, format, |input, _| {
            let state = crate::host::decode(input, Format::Postcard)?;
            restore(state)
                .map(|()| Vec::new())
                .map_err(|error| Error::msg(format!("state restore refused: {error}")))
        })
    }
}
