//! Calling the methods the host application registered.
//!
//! ```no_run
//! # fn demo() -> Result<(), dlinkwm::Error> {
//! #[derive(serde::Serialize)]
//! struct GreetParams<'a> {
//!     name: &'a str,
//! }
//! let greeting: String = dlinkwm::host::call("custom_greet", &GreetParams { name: "WASM" })?;
//! # Ok(()) }
//! ```

use dlinkwm_abi::Status;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, ErrorKind, Format, ffi};

/// Calls host method `method` with `input`, in postcard, and decodes its answer.
///
/// # Errors
/// The host's answer as an [`Error`]: [`ErrorKind::UnknownMethod`],
/// [`ErrorKind::PermissionDenied`], [`ErrorKind::HostMethod`] for the method's own error, and
/// [`ErrorKind::Decode`] when the answer is not an `Out`.
pub fn call<In: Serialize + ?Sized, Out: DeserializeOwned>(
    method: &str,
    input: &In,
) -> Result<Out, Error> {
    call_with(Format::Postcard, method, input)
}

/// Calls host method `method` in `format` (postcard or JSON).
///
/// # Errors
/// As [`call`].
pub fn call_with<In: Serialize + ?Sized, Out: DeserializeOwned>(
    format: Format,
    method: &str,
    input: &In,
) -> Result<Out, Error> {
    let bytes = encode(input, format)?;
    let answer = call_raw(method, format, &bytes)?;
    decode(&answer, format)
}

/// Calls host method `method` with bytes, telling it they are in `format`, and returns its
/// answer's bytes.
///
/// # Errors
/// As [`call`], without decoding.
pub fn call_raw(method: &str, format: Format, input: &[u8]) -> Result<Vec<u8>, Error> {
    let (status, result) = ffi::host_call(method, format.code(), input);
    let kind = match Status::from_code(status) {
        Some(Status::Ok) => return Ok(result),
        Some(Status::UnknownMethod) => ErrorKind::UnknownMethod,
        Some(Status::PermissionDenied) => ErrorKind::PermissionDenied,
        Some(Status::UnsupportedFormat) => ErrorKind::UnsupportedFormat,
        _ => ErrorKind::HostMethod,
    };
    Err(Error::new(
        kind,
        String::from_utf8_lossy(&result).into_owned(),
    ))
}

/// Raw bytes carry a typed value only as text: nothing is `()` (or `None`), and bytes are a
/// UTF-8 string. Everything else needs JSON or postcard. The host follows the same rule.
const RAW_RULE: &str = "the raw format carries only a string or nothing; use json or postcard";

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, format: Format) -> Result<Vec<u8>, Error> {
    let encoded = match format {
        Format::Json => serde_json::to_vec(value).map_err(|error| error.to_string()),
        Format::Postcard => postcard::to_allocvec(value).map_err(|error| error.to_string()),
        Format::Raw => match serde_json::to_value(value) {
            Ok(serde_json::Value::Null) => Ok(Vec::new()),
            Ok(serde_json::Value::String(text)) => Ok(text.into_bytes()),
            Ok(_) => Err(RAW_RULE.to_owned()),
            Err(error) => Err(error.to_string()),
        },
        _ => Err(format!(
            "format `{}` cannot carry a typed value",
            format.name()
        )),
    };
    encoded.map_err(|message| Error::new(ErrorKind::Encode, message))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], format: Format) -> Result<T, Error> {
    let decoded = match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|error| error.to_string()),
        Format::Postcard => postcard::from_bytes(bytes).map_err(|error| error.to_string()),
        Format::Raw => {
            let value = if bytes.is_empty() {
                Ok(serde_json::Value::Null)
            } else {
                std::str::from_utf8(bytes)
                    .map(|text| serde_json::Value::String(text.to_owned()))
                    .map_err(|_| format!("{RAW_RULE} (the input is not UTF-8)"))
            };
            value.and_then(|value| {
                serde_json::from_value(value).map_err(|error| format!("{RAW_RULE}: {error}"))
            })
        }
        _ => Err(format!(
            "format `{}` cannot carry a typed value",
            format.name()
        )),
    };
    decoded.map_err(|message| {
        Error::new(
            ErrorKind::Decode,
            format!("cannot decode {} input: {message}", format.name()),
        )
    })
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;

    #[test]
    fn outside_a_host_calls_fail_with_not_in_host_message() {
        let error = call::<_, String>("custom_greet", "x").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnknownMethod);
        assert!(
            error
                .message()
                .contains("not running inside a DlinkWM host"),
            "{error}"
        );
    }

    #[test]
    fn formats_round_trip() {
        for format in [Format::Json, Format::Postcard] {
            let bytes = encode(&("a", 7u32), format).unwrap();
            let back: (String, u32) = decode(&bytes, format).unwrap();
            assert_eq!(back, ("a".to_owned(), 7));
        }
        assert_eq!(
            decode::<u32>(b"{", Format::Json).unwrap_err().kind(),
            ErrorKind::Decode
        );
        // Raw: a string is its UTF-8 bytes, nothing is `()`; numbers and structs are refused.
        assert_eq!(encode("hé", Format::Raw).unwrap(), "hé".as_bytes());
        assert_eq!(encode(&(), Format::Raw).unwrap(), b"");
        assert_eq!(
            decode::<String>("hé".as_bytes(), Format::Raw).unwrap(),
            "hé"
        );
        decode::<()>(b"", Format::Raw).unwrap();
        assert_eq!(
            encode(&1u8, Format::Raw).unwrap_err().kind(),
            ErrorKind::Encode
        );
        assert_eq!(
            decode::<u8>(b"1", Format::Raw).unwrap_err().kind(),
            ErrorKind::Decode
        );
    }
}
