//! Which plugins this thread is inside a call of, so that a plugin called again from inside its
//! own call (from a host method it called, or from the closure reading its output) gets
//! [`Error::Reentrant`] instead of waiting for the instance this very thread holds.
//!
//! A call costs a few thread-local reads and writes and no allocation: the first eight nested
//! calls are kept in a fixed array, deeper ones in a vector.

use std::cell::{Cell, RefCell};

use crate::error::Error;

const INLINE: usize = 8;

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    static INLINE_PLUGINS: [Cell<usize>; INLINE] = const { [const { Cell::new(0) }; INLINE] };
    static DEEPER_PLUGINS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks this thread as inside a call of one plugin until dropped.
pub(crate) struct InCall(());

impl InCall {
    /// Marks this thread as inside a call of `plugin` (an address that identifies it), unless it
    /// already is.
    #[inline]
    pub(crate) fn enter(plugin: usize) -> Option<Self> {
        let depth = DEPTH.get();
        if depth > 0 && Self::inside(plugin, depth) {
            return None;
        }
        if depth < INLINE {
            INLINE_PLUGINS.with(|plugins| plugins[depth].set(plugin));
        } else {
            DEEPER_PLUGINS.with_borrow_mut(|plugins| plugins.push(plugin));
        }
        DEPTH.set(depth + 1);
        Some(Self(()))
    }

    #[cold]
    fn inside(plugin: usize, depth: usize) -> bool {
        INLINE_PLUGINS.with(|plugins| {
            plugins[..depth.min(INLINE)]
                .iter()
                .any(|inside| inside.get() == plugin)
        }) || (depth > INLINE && DEEPER_PLUGINS.with_borrow(|plugins| plugins.contains(&plugin)))
    }
}

impl Drop for InCall {
    #[inline]
    fn drop(&mut self) {
        let depth = DEPTH.get() - 1;
        if depth >= INLINE {
            DEEPER_PLUGINS.with_borrow_mut(|plugins| plugins.pop());
        }
        DEPTH.set(depth);
    }
}

/// The error of a call of `plugin`'s `entry` made from inside one of its own calls.
#[cold]
pub(crate) fn reentrant(plugin: &str, entry: &str) -> Error {
    Error::Reentrant {
        plugin: plugin.to_owned(),
        entry: entry.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::InCall;

    #[test]
    fn a_plugin_is_refused_exactly_while_this_thread_is_inside_its_call_at_any_depth() {
        let mut guards = Vec::new();
        for plugin in 1..=20 {
            guards.push(InCall::enter(plugin).expect("not inside yet"));
            for inside in 1..=plugin {
                assert!(
                    InCall::enter(inside).is_none(),
                    "{inside} at depth {plugin}"
                );
            }
        }
        while let Some(guard) = guards.pop() {
            let plugin = guards.len() + 1;
            drop(guard);
            let again = InCall::enter(plugin).expect("left");
            drop(again);
            if plugin > 1 {
                assert!(InCall::enter(plugin - 1).is_none());
            }
        }
        assert!(InCall::enter(1).is_some());
        // Another thread is inside nothing.
        let _inside = InCall::enter(7);
        std::thread::spawn(|| assert!(InCall::enter(7).is_some()))
            .join()
            .unwrap();
    }
}
