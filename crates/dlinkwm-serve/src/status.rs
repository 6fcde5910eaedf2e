//! How a call's error becomes an HTTP answer: a status, and a JSON body `{ "error", "kind" }`
//! that says what happened without host internals (no file paths, no backtraces).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dlinkwm_host::{Error, PluginError};

/// An error answer: status, the message for the client and the error's kind.
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "kind": self.kind });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Saturated: the client may try again shortly.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The status, kind and client message of a call's error: 404 unknown entry, 403 entry not
/// allowed, 413 input over `max_input_bytes`, 422 the guest's own error, 504 timeout, 503 every
/// instance busy past the queue deadline, 500 for the rest (traps, panics, memory, fuel and
/// output limits: the plugin failed, not the request).
pub fn status_of(entry: &str, error: &Error) -> (StatusCode, &'static str, String) {
    let Error::Plugin(error) = error else {
        // Encoding errors do not happen on the byte calls the server makes.
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            "the call failed".to_owned(),
        );
    };
    plugin_status(entry, error)
}

/// [`status_of`] for the engine's error.
pub(crate) fn plugin_status(
    entry: &str,
    error: &PluginError,
) -> (StatusCode, &'static str, String) {
    let (status, kind, message) = match error {
        PluginError::EntryNotFound { .. } => (
            StatusCode::NOT_FOUND,
            "EntryNotFound",
            format!("the plugin has no entry `{entry}`"),
        ),
        PluginError::EntryNotAllowed { .. } => (
            StatusCode::FORBIDDEN,
            "EntryNotAllowed",
            format!("entry `{entry}` is not allowed by the configuration"),
        ),
        PluginError::InputTooLarge { size, limit, .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "InputTooLarge",
            format!("the input of {size} bytes is over the limit of {limit}"),
        ),
        PluginError::Guest { message, .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "Guest", message.clone())
        }
        PluginError::Timeout { limit, .. } => (
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!("entry `{entry}` exceeded its time limit of {limit:?}"),
        ),
        PluginError::Busy { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "every instance of the plugin is busy; try again".to_owned(),
        ),
        PluginError::GuestPanic { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "GuestPanic",
            format!("entry `{entry}` panicked"),
        ),
        PluginError::Trap { .. } | PluginError::GuestMemory { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Trap",
            format!("entry `{entry}` trapped"),
        ),
        PluginError::MemoryLimit { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "MemoryLimit",
            format!("entry `{entry}` went over its memory limit"),
        ),
        PluginError::OutOfFuel { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "OutOfFuel",
            format!("entry `{entry}` ran out of fuel"),
        ),
        PluginError::OutputTooLarge { size, limit, .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "OutputTooLarge",
            format!("entry `{entry}` answered {size} bytes, over the limit of {limit}"),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            format!("entry `{entry}` failed"),
        ),
    };
    (status, kind, message)
}
