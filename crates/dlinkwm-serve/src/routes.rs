//! The routes and their handlers.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dlinkwm_host::{Format, Plugin, PluginKind};
use subtle::ConstantTimeEq as _;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Instrument as _;

use crate::server::{Server, lock};
use crate::status::{Failure, status_of};

/// The longest a client may take to send a request body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) fn router(server: Server) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/plugins", get(list))
        .route("/v1/plugins/{plugin}", get(describe))
        .route("/v1/plugins/{plugin}/rollback", post(rollback))
        .route("/v1/plugins/{plugin}/reload", post(reload))
        .route("/v1/plugins/{plugin}/{entry}", post(call))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(
            // One access-log line per request: method, path, status, latency.
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(server)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(server): State<Server>) -> Response {
    if server.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NotReady",
            "not every plugin of the folder is loaded",
        )
        .into_response()
    }
}

async fn metrics(State(server): State<Server>) -> Response {
    for name in server.plugin_names() {
        if let Some(plugin) = server.plugin(&name) {
            server
                .metrics()
                .set_live_instances(&name, plugin.live_instances());
        }
    }
    let mut response = server.metrics().encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

fn unknown_plugin(name: &str) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "UnknownPlugin",
        format!("no plugin named `{name}`"),
    )
}

fn kind_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Abi => "abi",
        PluginKind::Component => "component",
        PluginKind::Extism => "extism",
        _ => "plain",
    }
}

fn description(server: &Server, name: &str, plugin: &Plugin) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "kind": kind_name(plugin.kind()),
        "version": plugin.version(),
        "tier": plugin.tier().as_str(),
        "content_hash": plugin.content_hash().to_string(),
        "registry_digest": plugin.registry_digest(),
        "entries": plugin.entries().iter().map(|entry| entry.name.clone()).collect::<Vec<_>>(),
        "live_instances": plugin.live_instances(),
        "memory_bytes": plugin.memory_bytes(),
        "last_refusal": server.last_refusal(name),
    })
}

async fn list(State(server): State<Server>) -> Response {
    let plugins: Vec<_> = server
        .plugin_names()
        .iter()
        .filter_map(|name| {
            let plugin = server.plugin(name)?;
            Some(description(&server, name, &plugin))
        })
        .collect();
    axum::Json(serde_json::json!({ "plugins": plugins })).into_response()
}

async fn describe(State(server): State<Server>, Path(name): Path<String>) -> Response {
    match server.plugin(&name) {
        Some(plugin) => axum::Json(description(&server, &name, &plugin)).into_response(),
        None => match server.last_refusal(&name) {
            // A file that never loaded: say why.
            Some(refusal) => axum::Json(serde_json::json!({
                "name": name,
                "loaded": false,
                "last_refusal": refusal,
            }))
            .into_response(),
            None => unknown_plugin(&name).into_response(),
        },
    }
}

/// The admin routes' check: off without a token, else `Authorization: Bearer <token>`,
/// compared in constant time.
fn authorized(server: &Server, headers: &HeaderMap) -> Result<(), Failure> {
    let Some(token) = &server.inner.admin_token else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "AdminDisabled",
            "the admin routes are off (no admin token is configured)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    // Digests of equal length are compared, so neither the token nor its length leaks through
    // the comparison's time; an empty token never opens anything (`Server` refuses one).
    let matches = given.is_some_and(|given| {
        let (given, token) = (
            blake3::hash(given.as_bytes()),
            blake3::hash(token.as_bytes()),
        );
        bool::from(given.as_bytes().ct_eq(token.as_bytes()))
    });
    if matches {
        Ok(())
    } else {
        Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid bearer token is required",
        ))
    }
}

async fn rollback(
    State(server): State<Server>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorized(&server, &headers) {
        return refused.into_response();
    }
    let Some(plugin) = server.plugin(&name) else {
        return unknown_plugin(&name).into_response();
    };
    match plugin.rollback_async().await {
        Ok(version) => axum::Json(serde_json::json!({ "version": version })).into_response(),
        Err(_) => Failure::new(
            StatusCode::CONFLICT,
            "NoRollbackTarget",
            "no earlier version is kept to roll back to",
        )
        .into_response(),
    }
}

async fn reload(
    State(server): State<Server>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorized(&server, &headers) {
        return refused.into_response();
    }
    let Some(plugin) = server.plugin(&name) else {
        return unknown_plugin(&name).into_response();
    };
    match plugin.reload_async().await {
        Ok(_) => axum::Json(serde_json::json!({ "version": plugin.version() })).into_response(),
        Err(error) => {
            let refusal = crate::server::scrub(&error.to_string(), plugin.name(), &name);
            lock(&server.inner.refusals).insert(name, refusal);
            Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ReloadRefused",
                "the plugin file was refused; the current version keeps serving",
            )
            .into_response()
        }
    }
}

/// The format a request's `Content-Type` names, and the content type of the answer.
fn format_of(headers: &HeaderMap) -> Result<(Format, &'static str), Failure> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match content_type.as_deref() {
        Some("application/json") => Ok((Format::Json, "application/json")),
        Some("application/postcard") => Ok((Format::Postcard, "application/postcard")),
        None | Some("application/octet-stream") => Ok((Format::Raw, "application/octet-stream")),
        Some(other) => Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "content type `{other}` is not one of application/json, application/postcard, application/octet-stream"
            ),
        )),
    }
}

/// Reads the body, refusing it as soon as it is over `limit` bytes (by its `Content-Length`,
/// or while it streams in): a body over the limit is never read whole.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Failure> {
    let too_large = |size: Option<u64>| {
        let size = size.map_or_else(|| "more".to_owned(), |size| size.to_string());
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "InputTooLarge",
            format!("the body of {size} bytes is over the plugin's limit of {limit}"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|declared| declared > limit as u64) {
        return Err(too_large(declared));
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let over = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
            || error.into_inner().is::<http_body_util::LengthLimitError>();
        if over {
            too_large(None)
        } else {
            // The client stopped sending, or took too long.
            Failure::new(
                StatusCode::BAD_REQUEST,
                "BadBody",
                "the request body could not be read",
            )
        }
    })
}

/// The `entry` label of a call's metrics: the entry's name when the plugin has such an entry,
/// else `_unknown` (names from URLs would let any client create series without bound, and
/// put text of its choosing in the exposition).
fn entry_label<'a>(plugin: &Plugin, entry: &'a str) -> &'a str {
    if plugin.entries().iter().any(|known| known.name == entry) {
        entry
    } else {
        "_unknown"
    }
}

/// Decrements the in-flight gauge when the request ends, however it ends.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn call(
    State(server): State<Server>,
    Path((name, entry)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(plugin) = server.plugin(&name) else {
        return unknown_plugin(&name).into_response();
    };
    let (format, content_type) = match format_of(&headers) {
        Ok(format) => format,
        Err(refused) => return refused.into_response(),
    };
    let limit = plugin.settings().max_input_bytes;
    let input = match read_body(&headers, body, limit).await {
        Ok(input) => input,
        Err(refused) => {
            let label = entry_label(&plugin, &entry);
            server
                .metrics()
                .call_finished(&name, label, refused.kind, Default::default(), None);
            return refused.into_response();
        }
    };
    let gauge = server.metrics().in_flight(&name);
    gauge.inc();
    let _in_flight = InFlight(gauge);
    let span =
        tracing::info_span!("call", plugin = %name, entry = %entry, version = plugin.version());
    let result = plugin
        .call_metered_async(&entry, format, &input, <[u8]>::to_vec)
        .instrument(span)
        .await;
    match result {
        Ok(metered) => {
            let mut response = metered.value.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        Err(error) => {
            let (status, kind, message) = status_of(&entry, &error);
            Failure {
                status,
                kind,
                message,
            }
            .into_response()
        }
    }
}
