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
    if cfg!(not(target_family = "wasm")) {
        return Err(Error::new(
            ErrorKind::NotInHost,
            format!("cannot call host method `{method}`: not running inside a DlinkWM host"),
        ));
    }
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

/// Encodes a value for the host, by the rule the host decodes with (`dlinkwm-codec`).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, format: Format) -> Result<Vec<u8>, Error> {
    dlinkwm_codec::encode(value, format)
        .map_err(|error| Error::new(ErrorKind::Encode, error.to_string()))
}

/// Decodes what the host sent, by the rule the host encodes with (`dlinkwm-codec`).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], format: Format) -> Result<T, Error> {
    dlinkwm_codec::decode(bytes, format).map_err(|error| {
        Error::new(
            ErrorKind::Decode,
            format!("cannot decode {} input: {error}", format.name()),
        )
    })
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;

    #[test]
    fn outside_a_host_calls_fail_with_not_in_host_message() {
        let error = call::<_, String>("custom_greet", "x").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotInHost);
        assert!(
            error
                .message()
                .contains("not running inside a DlinkWM host"),
            "{error}"
        );
    }

    #[test]
    fn codec_failures_keep_their_kind() {
        // The rule itself is dlinkwm-codec's (and tested there); this side maps its failures.
        assert_eq!(
            decode::<u32>(b"{", Format::Json).unwrap_err().kind(),
            ErrorKind::Decode
        );
        assert_eq!(
            encode(&1u8, Format::Raw).unwrap_err().kind(),
            ErrorKind::Encode
        );
        assert_eq!(
            decode::<String>("hé".as_bytes(), Format::Raw).unwrap(),
            "hé"
        );
    }
}
