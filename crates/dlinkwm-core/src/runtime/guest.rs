//! The checks on every value a guest hands the host: pointers and lengths into its memory,
//! strings, and error messages. A value that fails them raises a [`GuestFault`], which ends the
//! call as [`crate::Error::GuestMemory`]; messages are kept, cut to a bound.
//!
//! Every length here is a guest's `u32` (carried in an `i32`) or a host length checked before it
//! crosses; none is converted with a bare `as` that could truncate
//! (`clippy::cast_possible_truncation` is denied in this module).
#![deny(clippy::cast_possible_truncation)]

/// A guest handed the host something invalid. Raised as a trap, it ends the call and becomes
/// [`crate::Error::GuestMemory`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GuestFault(pub(crate) String);

pub(crate) fn fault(reason: String) -> wasmtime::Error {
    wasmtime::Error::new(GuestFault(reason))
}

/// The host refused or failed what a plugin asked of it where the plugin's ABI has no error
/// value to answer with (an Extism host function, a var store that is full, an HTTP request to
/// a host not allowed): the call ends as [`crate::Error::Guest`] with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refusal(pub(crate) String);

pub(crate) fn refusal(message: String) -> wasmtime::Error {
    wasmtime::Error::new(Refusal(message))
}

/// The byte range `ptr..ptr + len` of guest memory, checked. Pointers and lengths are `u32` in
/// wasm32, whatever the sign of the `i32` that carried them.
pub(crate) fn guest_range(
    memory_len: usize,
    ptr: i32,
    len: usize,
    what: &str,
) -> Result<std::ops::Range<usize>, wasmtime::Error> {
    let start = guest_len(ptr);
    match start.checked_add(len) {
        Some(end) if end <= memory_len => Ok(start..end),
        _ => Err(fault(format!(
            "{what} at {start:#x} with length {len} is outside guest memory of {memory_len} bytes"
        ))),
    }
}

/// A guest's `u32` (pointer or length) carried in an `i32`, as a host size.
#[inline]
pub(crate) fn guest_len(value: i32) -> usize {
    // A u32 always fits a usize on the 32- and 64-bit hosts wasmtime runs on.
    value.cast_unsigned() as usize
}

/// A host length as the guest's `u32`, carried in an `i32`; `None` when it does not fit.
#[inline]
pub(crate) fn abi_len(len: usize) -> Option<i32> {
    u32::try_from(len).ok().map(u32::cast_signed)
}

pub(crate) fn guest_str<'a>(
    data: &'a [u8],
    ptr: i32,
    len: i32,
    what: &str,
) -> wasmtime::Result<&'a str> {
    let range = guest_range(data.len(), ptr, guest_len(len), what)?;
    std::str::from_utf8(&data[range])
        .map_err(|error| fault(format!("{what} is not UTF-8: {error}")))
}

/// `text` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A guest's error message as the host keeps it: invalid UTF-8 replaced (a guest's error is
/// never lost for its encoding), at most [`dlinkwm_abi::MAX_ERROR_MESSAGE`] bytes.
pub(crate) fn bounded_message(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(dlinkwm_abi::MAX_ERROR_MESSAGE)];
    let message = String::from_utf8_lossy(head);
    truncate(&message, dlinkwm_abi::MAX_ERROR_MESSAGE).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_range_rejects_everything_outside_memory() {
        assert_eq!(guest_range(100, 10, 20, "x").unwrap(), 10..30);
        assert_eq!(guest_range(100, 100, 0, "x").unwrap(), 100..100);
        assert!(guest_range(100, 90, 11, "x").is_err());
        assert!(guest_range(100, -1, 1, "x").is_err());
        assert!(guest_range(100, 0, guest_len(-1), "x").is_err());
        // A length of 4 GiB - 1 (the guest's -1) never fits.
        assert!(guest_range(1 << 20, 0, guest_len(-1), "x").is_err());
        // Nor does a host length past the address space.
        assert!(guest_range(1 << 20, 1, usize::MAX, "x").is_err());
        let error = guest_range(16, 8, 9, "output").unwrap_err();
        assert!(error.downcast_ref::<GuestFault>().is_some());
    }

    #[test]
    fn lengths_cross_the_abi_as_u32_or_not_at_all() {
        assert_eq!(abi_len(0), Some(0));
        assert_eq!(abi_len(u32::MAX as usize), Some(-1));
        assert_eq!(abi_len(u32::MAX as usize + 1), None);
        assert_eq!(guest_len(-1), u32::MAX as usize);
    }
}
