//! Encoding and decoding in the formats DlinkWM speaks, kept off the error path until a
//! failure happens.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::SerializationFormat;

pub(crate) enum CodecError {
    /// The format cannot carry a typed value (raw bytes).
    Unsupported,
    /// The bytes or the value are invalid for the format.
    Invalid(String),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Unsupported => f.write_str("raw bytes cannot carry a typed value"),
            CodecError::Invalid(reason) => f.write_str(reason),
        }
    }
}

pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    format: SerializationFormat,
) -> Result<T, CodecError> {
    match format {
        SerializationFormat::Json => {
            serde_json::from_slice(bytes).map_err(|error| CodecError::Invalid(error.to_string()))
        }
        SerializationFormat::Postcard => {
            postcard::from_bytes(bytes).map_err(|error| CodecError::Invalid(error.to_string()))
        }
        _ => Err(CodecError::Unsupported),
    }
}

/// Appends `value` encoded in `format` to `output`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    format: SerializationFormat,
    output: &mut Vec<u8>,
) -> Result<(), CodecError> {
    match format {
        SerializationFormat::Json => serde_json::to_writer(&mut *output, value)
            .map_err(|error| CodecError::Invalid(error.to_string())),
        SerializationFormat::Postcard => {
            let buffer = std::mem::take(output);
            *output = postcard::to_extend(value, buffer)
                .map_err(|error| CodecError::Invalid(error.to_string()))?;
            Ok(())
        }
        _ => Err(CodecError::Unsupported),
    }
}
