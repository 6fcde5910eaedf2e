//! Extism's `http_request` for plugins: the request a plugin describes (Extism's JSON), the
//! `allowed_hosts` check (globs on the URL's host; nothing is allowed unless listed), and the
//! request itself with `ureq`, bounded by the time left in the call and by
//! `max_http_response_bytes`. Redirects are not followed: a redirect to a host not allowed
//! could otherwise bypass the list (the plugin sees the 3xx and its `location`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// The request a plugin describes, as Extism's PDKs write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Described {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    method: Option<String>,
}

/// A request, checked and ready to send.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) url: String,
    method: String,
    headers: BTreeMap<String, String>,
    pub(crate) body: Option<Vec<u8>>,
    host: String,
    max_body: usize,
}

/// What came back.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// The headers as a JSON object (lower-case names; a repeated name keeps its last value).
    pub(crate) headers: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

/// What [`send`] answers when the time ran out.
pub(crate) const TIMEOUT: &str = "timeout";

/// The longest URL or text of a plugin's request kept in a message.
const SHOWN: usize = 256;

fn shown(text: &str) -> String {
    crate::runtime::guest::truncate(text, SHOWN)
        .escape_debug()
        .to_string()
}

impl Request {
    /// The request described by `json` (Extism's `{"url", "method", "headers"}`).
    pub(crate) fn parse(json: &[u8], max_body: usize) -> Result<Self, String> {
        let described: Described = serde_json::from_slice(json)
            .map_err(|error| format!("the plugin's HTTP request is not valid: {error}"))?;
        let uri: ureq::http::Uri = described
            .url
            .parse()
            .map_err(|error| format!("invalid URL `{}`: {error}", shown(&described.url)))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(format!(
                    "URL `{}` is not an http or https URL",
                    shown(&described.url)
                ));
            }
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("URL `{}` has no host", shown(&described.url)))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let method = described
            .method
            .unwrap_or_else(|| "GET".to_owned())
            .to_ascii_uppercase();
        Ok(Self {
            url: described.url,
            method,
            headers: described.headers,
            body: None,
            host,
            max_body,
        })
    }

    /// Whether the URL's host matches one of `allowed` (globs such as `*.example.com`; a
    /// pattern that is not a valid glob must equal the host).
    pub(crate) fn check_allowed(&self, allowed: &[String]) -> Result<(), String> {
        let matches = |pattern: &String| match glob::Pattern::new(&pattern.to_ascii_lowercase()) {
            Ok(glob) => glob.matches(&self.host),
            Err(_) => pattern.eq_ignore_ascii_case(&self.host),
        };
        if allowed.iter().any(matches) {
            return Ok(());
        }
        Err(format!(
            "HTTP request to {} is not allowed: host `{}` is not in the plugin's allowed_hosts",
            shown(&self.url),
            shown(&self.host)
        ))
    }
}

/// Sends `request`, giving up after `timeout`. 4xx and 5xx are answers, not errors.
pub(crate) fn send(request: Request, timeout: Duration) -> Result<Response, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(request.method.as_str())
        .uri(request.url.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let built = builder
        .body(request.body.unwrap_or_default())
        .map_err(|error| format!("invalid request: {error}"))?;
    let mut response = agent.run(built).map_err(|error| match error {
        ureq::Error::Timeout(_) => TIMEOUT.to_owned(),
        other => other.to_string(),
    })?;
    let status = response.status().as_u16();
    let mut headers = serde_json::Map::new();
    for (name, value) in response.headers() {
        headers.insert(
            name.as_str().to_owned(),
            serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    let limit = u64::try_from(request.max_body).unwrap_or(u64::MAX);
    let body = response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|error| match error {
            ureq::Error::BodyExceedsLimit(_) => format!(
                "the response body is larger than max_http_response_bytes ({})",
                request.max_body
            ),
            ureq::Error::Timeout(_) => TIMEOUT.to_owned(),
            other => other.to_string(),
        })?;
    let headers = serde_json::to_vec(&headers).unwrap_or_default();
    Ok(Response {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> Request {
        Request::parse(format!(r#"{{"url":"{url}"}}"#).as_bytes(), 1024).unwrap()
    }

    #[test]
    fn hosts_are_allowed_only_when_listed() {
        let list = |hosts: &[&str]| hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
        assert!(
            request("http://api.example.com/x")
                .check_allowed(&[])
                .is_err()
        );
        assert!(
            request("http://api.example.com/x")
                .check_allowed(&list(&["*.example.com"]))
                .is_ok()
        );
        assert!(
            request("http://example.com/x")
                .check_allowed(&list(&["*.example.com"]))
                .is_err()
        );
        assert!(
            request("http://API.Example.com:8080/x")
                .check_allowed(&list(&["api.example.com"]))
                .is_ok()
        );
        assert!(
            request("http://[::1]:80/")
                .check_allowed(&list(&["::1"]))
                .is_ok()
        );
        assert!(
            request("http://x.org/")
                .check_allowed(&list(&["*"]))
                .is_ok()
        );
        // The host, not the path or the user part, is what is matched.
        assert!(
            request("http://evil.org/api.example.com")
                .check_allowed(&list(&["api.example.com"]))
                .is_err()
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_message() {
        assert!(Request::parse(b"not json", 1).is_err());
        assert!(Request::parse(br#"{"url":"ftp://x.org/"}"#, 1).is_err());
        assert!(Request::parse(br#"{"url":"http://x.org/","extra":1}"#, 1).is_err());
        assert!(Request::parse(br#"{"url":"/relative"}"#, 1).is_err());
        let long = format!(r#"{{"url":"{}"}}"#, "x".repeat(100_000));
        let error = Request::parse(long.as_bytes(), 1).unwrap_err();
        assert!(error.len() < 1024, "{}", error.len());
        let parsed = Request::parse(
            br#"{"url":"http://x.org/","method":"post","headers":{"a":"b"}}"#,
            1,
        )
        .unwrap();
        assert_eq!(parsed.method, "POST");
    }
}
