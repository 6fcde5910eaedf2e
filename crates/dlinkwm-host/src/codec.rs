//! Encoding and decoding in the formats DlinkWM speaks, kept off the error path until a
//! failure happens.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Format;

/// Raw bytes carry a typed value only as text: nothing is `()` (or `None`), and bytes are a
/// UTF-8 string. The guest SDK follows the same rule.
const RAW_RULE: &str = "the raw format carries only a string or nothing; use json or postcard";

pub(crate) enum CodecError {
    /// The format cannot carry a typed value (a format code this version does not know).
    Unsupported,
    /// The bytes or the value are invalid for the format.
    Invalid(String),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Unsupported => f.write_str("this format cannot carry a typed value"),
            CodecError::Invalid(reason) => f.write_str(reason),
        }
    }
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], format: Format) -> Result<T, CodecError> {
    match format {
        Format::Json => {
            serde_json::from_slice(bytes).map_err(|error| CodecError::Invalid(error.to_string()))
        }
        Format::Postcard => {
            postcard::from_bytes(bytes).map_err(|error| CodecError::Invalid(error.to_string()))
        }
        Format::Raw => {
            let value = if bytes.is_empty() {
                serde_json::Value::Null
            } else {
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    CodecError::Invalid(format!("{RAW_RULE} (the input is not UTF-8)"))
                })?;
                serde_json::Value::String(text.to_owned())
            };
            serde_json::from_value(value)
                .map_err(|error| CodecError::Invalid(format!("{RAW_RULE}: {error}")))
        }
        _ => Err(CodecError::Unsupported),
    }
}

/// Appends `value` encoded in `format` to `output`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    format: Format,
    output: &mut Vec<u8>,
) -> Result<(), CodecError> {
    match format {
        Format::Json => serde_json::to_writer(&mut *output, value)
            .map_err(|error| CodecError::Invalid(error.to_string())),
        Format::Postcard => {
            let buffer = std::mem::take(output);
            *output = postcard::to_extend(value, buffer)
                .map_err(|error| CodecError::Invalid(error.to_string()))?;
            Ok(())
        }
        Format::Raw => match serde_json::to_value(value) {
            Ok(serde_json::Value::Null) => Ok(()),
            Ok(serde_json::Value::String(text)) => {
                output.extend_from_slice(text.as_bytes());
                Ok(())
            }
            Ok(_) => Err(CodecError::Invalid(RAW_RULE.to_owned())),
            Err(error) => Err(CodecError::Invalid(error.to_string())),
        },
        _ => Err(CodecError::Unsupported),
    }
}
