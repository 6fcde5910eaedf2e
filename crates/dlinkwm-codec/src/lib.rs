//! How typed values travel in the formats DlinkWM speaks: the one rule the host
//! (`dlinkwm-host`, for typed calls and typed host methods) and the Rust guest SDK
//! (`dlinkwm`, for entries and host calls) both follow, so the two sides can never disagree.
//!
//! - **JSON** (`serde_json`) and **postcard** carry any `serde` value.
//! - **Raw** bytes carry one string, one byte buffer or nothing: a `String`/`&str` is its UTF-8
//!   bytes, a [`Bytes`] is its bytes as they are, and no bytes is `()` (or `None`). Everything
//!   else needs JSON or postcard.
//!
//! # Bytes that stay bytes
//!
//! serde encodes a `Vec<u8>` as a *sequence of numbers*: postcard spends a loop per byte on it
//! and JSON writes `[104,105,...]`, several bytes per byte. [`Bytes`] (serde_bytes' `ByteBuf`)
//! is a byte buffer serde encodes as bytes: in postcard a length and one `memcpy`, in the raw
//! format the bytes themselves. (JSON has no bytes: it still writes an array of numbers, so move
//! large binary data in postcard or raw.) A field of a struct gets the same treatment with
//! `#[serde(with = "serde_bytes")]`.
//!
//! ```
//! use dlinkwm_codec::{Bytes, Format, decode, encode};
//!
//! let data = Bytes::from(vec![0u8, 255, 7]);
//! assert_eq!(encode(&data, Format::Postcard)?, [3, 0, 255, 7]);
//! assert_eq!(encode(&data, Format::Raw)?, [0, 255, 7]);
//! assert_eq!(decode::<Bytes>(&[0, 255, 7], Format::Raw)?, data);
//! # Ok::<(), dlinkwm_codec::CodecError>(())
//! ```
//!
//! ```
//! use dlinkwm_codec::{Format, decode, encode};
//!
//! let bytes = encode(&("a", 7u32), Format::Postcard)?;
//! let back: (String, u32) = decode(&bytes, Format::Postcard)?;
//! assert_eq!(back, ("a".to_owned(), 7));
//! assert_eq!(encode("hé", Format::Raw)?, "hé".as_bytes());
//! assert!(encode(&1u8, Format::Raw).is_err());
//! # Ok::<(), dlinkwm_codec::CodecError>(())
//! ```
#![deny(missing_docs)]

mod extism;
mod raw;

pub use dlinkwm_abi::Format;
use serde::Serialize;
use serde::de::DeserializeOwned;
/// `#[serde(with = "serde_bytes")]` for a `Vec<u8>` field that should travel as bytes.
pub use serde_bytes;
/// A byte buffer that serde encodes as bytes (a length and the bytes), not as a sequence of
/// numbers: the type for binary entry arguments, results and host-method values.
pub use serde_bytes::ByteBuf as Bytes;

/// What the raw format can carry, for messages.
pub const RAW_RULE: &str =
    "the raw format carries only a string, a byte buffer (Bytes) or nothing; use json or postcard";

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The format cannot carry a typed value (a format code this version does not know).
    #[error("format `{}` cannot carry a typed value", .0.name())]
    Unsupported(Format),
    /// The bytes or the value are invalid for the format.
    #[error("{0}")]
    Invalid(String),
}

#[cold]
fn invalid(error: impl std::fmt::Display) -> CodecError {
    CodecError::Invalid(error.to_string())
}

/// Decodes a `T` from `bytes` in `format`.
///
/// # Errors
/// [`CodecError::Invalid`] for bytes that are not a `T` in `format`,
/// [`CodecError::Unsupported`] for a format that carries no typed value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], format: Format) -> Result<T, CodecError> {
    match format {
        Format::Json => serde_json::from_slice(bytes).map_err(invalid),
        Format::Postcard => postcard::from_bytes(bytes).map_err(invalid),
        Format::Raw => raw::decode(bytes).map_err(invalid),
        other => Err(CodecError::Unsupported(other)),
    }
}

/// Appends `value` encoded in `format` to `output`.
///
/// # Errors
/// [`CodecError::Invalid`] for a value `format` cannot carry, [`CodecError::Unsupported`] for
/// a format that carries no typed value.
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    format: Format,
    output: &mut Vec<u8>,
) -> Result<(), CodecError> {
    match format {
        Format::Json => {
            let before = output.len();
            serde_json::to_writer(&mut *output, value).map_err(|error| {
                output.truncate(before);
                invalid(error)
            })
        }
        Format::Postcard => {
            let before = output.len();
            postcard::serialize_with_flavor(value, Append(&mut *output)).map_err(|error| {
                output.truncate(before);
                invalid(error)
            })
        }
        Format::Raw => raw::encode_into(value, output).map_err(invalid),
        other => Err(CodecError::Unsupported(other)),
    }
}

/// Decodes a `T` from `bytes` by Extism's convention (its `extism-convert` crate), for Extism
/// plugins and their host functions, which pass bytes with no format: a string or a byte buffer
/// is the bytes themselves, nothing (`()`, `None`) is no bytes, an `i32`/`u32`/`f32` is 4
/// little-endian bytes and an `i64`/`u64`/`f64` 8, a `bool` is 1 byte, and anything else is
/// JSON (Extism's `Json<T>`), self-describing targets (`serde_json::Value`) included.
///
/// ```
/// use dlinkwm_codec::decode_extism;
///
/// assert_eq!(decode_extism::<String>(b"Ada")?, "Ada");
/// assert_eq!(decode_extism::<u32>(&7u32.to_le_bytes())?, 7);
/// assert_eq!(decode_extism::<Vec<u32>>(b"[1,2]")?, [1, 2]);
/// assert!(decode_extism::<u32>(b"7").is_err());
/// # Ok::<(), dlinkwm_codec::CodecError>(())
/// ```
///
/// # Errors
/// [`CodecError::Invalid`] for bytes that are not a `T` by the convention.
pub fn decode_extism<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    raw::decode_extism(bytes).map_err(invalid)
}

/// Decodes the arguments of an Extism host function of several (framed as
/// [`dlinkwm_abi::EXTISM_ARGS_FRAME`] says; [`frame_extism_args`] writes the frame) as a tuple,
/// or a struct field by field in order, each argument by Extism's convention
/// ([`decode_extism`]).
///
/// ```
/// use dlinkwm_codec::{decode_extism_args, frame_extism_args};
///
/// let mut frame = Vec::new();
/// frame_extism_args(&[b"count", &7u32.to_le_bytes()], &mut frame);
/// let (key, value): (String, u32) = decode_extism_args(&frame)?;
/// assert_eq!((key.as_str(), value), ("count", 7));
/// assert!(decode_extism_args::<(String,)>(&frame).is_err());
/// # Ok::<(), dlinkwm_codec::CodecError>(())
/// ```
///
/// # Errors
/// [`CodecError::Invalid`] for a malformed frame, a count of arguments the target does not
/// take, or an argument that is not its element by the convention.
pub fn decode_extism_args<T: DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    raw::decode_extism_args(frame).map_err(invalid)
}

/// Appends the frame of an Extism host function's arguments `args` to `output`
/// ([`dlinkwm_abi::EXTISM_ARGS_FRAME`]).
///
/// # Panics
/// When there are more than [`dlinkwm_abi::MAX_EXTISM_ARGS`] arguments, or one is 4 GiB or
/// more: the host never frames such arguments (a guest's are checked before).
pub fn frame_extism_args(args: &[&[u8]], output: &mut Vec<u8>) {
    assert!(
        args.len() <= dlinkwm_abi::MAX_EXTISM_ARGS,
        "too many Extism arguments"
    );
    let length = |len: usize| u32::try_from(len).expect("an argument under 4 GiB");
    output.reserve(4 + args.iter().map(|arg| 4 + arg.len()).sum::<usize>());
    output.extend_from_slice(&length(args.len()).to_le_bytes());
    for arg in args {
        output.extend_from_slice(&length(arg.len()).to_le_bytes());
        output.extend_from_slice(arg);
    }
}

/// Appends `value` to `output` by Extism's convention (see [`decode_extism`]): a string or a
/// byte buffer as it is, a number Extism has bytes for little-endian, a `bool` as one byte,
/// anything else as JSON.
///
/// # Errors
/// [`CodecError::Invalid`] for a value JSON cannot carry.
pub fn encode_extism_into<T: Serialize + ?Sized>(
    value: &T,
    output: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let before = output.len();
    if raw::encode_extism_into(value, output).is_ok() {
        return Ok(());
    }
    output.truncate(before);
    encode_into(value, Format::Json, output)
}

/// postcard's output into a `Vec` that copies slices with `extend_from_slice` (one `memcpy`;
/// postcard's own `to_extend` pushes them byte by byte).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// `value` encoded in `format`.
///
/// # Errors
/// As [`encode_into`].
pub fn encode<T: Serialize + ?Sized>(value: &T, format: Format) -> Result<Vec<u8>, CodecError> {
    let mut output = Vec::new();
    encode_into(value, format, &mut output)?;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_and_raw_carries_only_text() {
        for format in [Format::Json, Format::Postcard] {
            let bytes = encode(&("a", 7u32), format).unwrap();
            let back: (String, u32) = decode(&bytes, format).unwrap();
            assert_eq!(back, ("a".to_owned(), 7));
        }
        assert!(matches!(
            decode::<u32>(b"{", Format::Json),
            Err(CodecError::Invalid(_))
        ));
        assert_eq!(encode("hé", Format::Raw).unwrap(), "hé".as_bytes());
        assert_eq!(encode(&(), Format::Raw).unwrap(), b"");
        assert_eq!(
            decode::<String>("hé".as_bytes(), Format::Raw).unwrap(),
            "hé"
        );
        decode::<()>(b"", Format::Raw).unwrap();
        decode::<Option<String>>(b"", Format::Raw).unwrap();
        let error = encode(&1u8, Format::Raw).unwrap_err();
        assert_eq!(error, CodecError::Invalid(RAW_RULE.to_owned()));
        assert!(decode::<u8>(b"1", Format::Raw).is_err());
        assert!(decode::<String>(&[0xff], Format::Raw).is_err());
        assert_eq!(decode::<String>(b"", Format::Raw).unwrap(), "");
        assert_eq!(
            decode::<Option<String>>(b"x", Format::Raw)
                .unwrap()
                .as_deref(),
            Some("x")
        );
        assert!(decode::<()>(b"x", Format::Raw).is_err());
        assert!(encode(&[1u8, 2], Format::Raw).is_err());
        assert!(encode(&vec![1u8, 2], Format::Raw).is_err());
    }

    #[test]
    fn bytes_stay_bytes() {
        let data = Bytes::from((0..=255u8).collect::<Vec<_>>());
        for format in [Format::Json, Format::Postcard, Format::Raw] {
            let encoded = encode(&data, format).unwrap();
            assert_eq!(
                decode::<Bytes>(&encoded, format).unwrap(),
                data,
                "{format:?}"
            );
        }
        let postcard = encode(&data, Format::Postcard).unwrap();
        assert_eq!(&postcard[..2], [0x80, 0x02], "a varint length");
        assert_eq!(&postcard[2..], &data[..], "then the bytes themselves");
        assert_eq!(encode(&data, Format::Raw).unwrap(), &data[..]);
        // A failed encode leaves the buffer as it was.
        let mut output = b"kept".to_vec();
        assert!(encode_into(&(1u8, 2u8), Format::Raw, &mut output).is_err());
        assert_eq!(output, b"kept");
    }

    #[test]
    fn appending_keeps_what_was_there() {
        let mut output = b"x".to_vec();
        encode_into(&7u8, Format::Postcard, &mut output).unwrap();
        assert_eq!(output, [b'x', 7]);
    }
}
