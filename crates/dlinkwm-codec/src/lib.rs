//! How typed values travel in the formats DlinkWM speaks: the one rule the host
//! (`dlinkwm-host`, for typed calls and typed host methods) and the Rust guest SDK
//! (`dlinkwm`, for entries and host calls) both follow, so the two sides can never disagree.
//!
//! - **JSON** (`serde_json`) and **postcard** carry any `serde` value.
//! - **Raw** bytes carry a typed value only as text: nothing is `()` (or `None`), and bytes
//!   are a UTF-8 string. Everything else needs JSON or postcard.
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

pub use dlinkwm_abi::Format;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What the raw format can carry, for messages.
pub const RAW_RULE: &str = "the raw format carries only a string or nothing; use json or postcard";

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
        Format::Raw => {
            let value = if bytes.is_empty() {
                serde_json::Value::Null
            } else {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| invalid(format_args!("{RAW_RULE} (the input is not UTF-8)")))?;
                serde_json::Value::String(text.to_owned())
            };
            serde_json::from_value(value)
                .map_err(|error| invalid(format_args!("{RAW_RULE}: {error}")))
        }
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
        Format::Json => serde_json::to_writer(&mut *output, value).map_err(invalid),
        Format::Postcard => {
            let buffer = std::mem::take(output);
            *output = postcard::to_extend(value, buffer).map_err(invalid)?;
            Ok(())
        }
        Format::Raw => match serde_json::to_value(value) {
            Ok(serde_json::Value::Null) => Ok(()),
            Ok(serde_json::Value::String(text)) => {
                output.extend_from_slice(text.as_bytes());
                Ok(())
            }
            Ok(_) => Err(invalid(RAW_RULE)),
            Err(error) => Err(invalid(error)),
        },
        other => Err(CodecError::Unsupported(other)),
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
    }

    #[test]
    fn appending_keeps_what_was_there() {
        let mut output = b"x".to_vec();
        encode_into(&7u8, Format::Postcard, &mut output).unwrap();
        assert_eq!(output, [b'x', 7]);
    }
}
