//! What HTTP itself says about a request, checked before the FHIR API sees it: header values,
//! the size of the head, media types (JSON only, and JSON Patch for PATCH: 406, 415), the
//! body's size (413) and arrival time (408), and the `Host` links are built on. Each refusal
//! is an `OperationOutcome`.

use std::time::Duration;

use api::Method;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::Response;
use fhir::IssueType;
use http_body_util::BodyExt;

use crate::{ServerConfig, outcome_response};

/// Largest request head accepted by default (request line and header fields).
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most header fields in one request.
pub(crate) const MAX_HEADER_FIELDS: usize = 100;
/// A body over the limit is read and thrown away up to this much, so that a client that
/// sends the whole body before reading (most do) sees the 413 rather than a broken pipe;
/// beyond it the connection is closed at once.
const DISCARD_BYTES: u64 = 64 * 1024 * 1024;

/// Header fields FHIR (or Chartroom) gives meaning to: their values must be visible ASCII, as
/// RFC 9110 asks of new fields, so that none is read one way here and another way elsewhere
/// (a lost-update guard silently skipped, a condition matching the wrong resource).
const MEANINGFUL_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "accept",
    "content-type",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-none-exist",
    "prefer",
    "x-purpose-of-use",
    "x-break-glass-reason",
    "x-request-id",
    "x-forwarded-proto",
];

/// A request refused at the HTTP level, before the FHIR API sees it.
pub(crate) struct Refusal {
    status: StatusCode,
    code: IssueType,
    message: String,
    /// Whether the connection cannot carry another request (a body left unread).
    close: bool,
}

impl Refusal {
    fn new(status: StatusCode, code: IssueType, message: impl Into<String>) -> Self {
        Refusal { status, code, message: message.into(), close: false }
    }

    pub(crate) fn into_response(self) -> Response {
        let mut response = outcome_response(self.status, self.code, &self.message);
        if self.close {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Whether a header value is visible ASCII (and spaces and tabs between).
fn visible_ascii(value: &HeaderValue) -> bool {
    value.as_bytes().iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// The request head: its size, and the values of the headers FHIR gives meaning to.
pub(crate) fn check_head(config: &ServerConfig, headers: &HeaderMap) -> Result<(), Refusal> {
    let size: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if size > config.max_header_bytes || headers.len() > MAX_HEADER_FIELDS {
        return Err(Refusal::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            IssueType::TooLong,
            format!(
                "the request's headers are too large ({} fields, {size} bytes); at most {MAX_HEADER_FIELDS} fields and {} bytes are accepted",
                headers.len(),
                config.max_header_bytes
            ),
        ));
    }
    for name in MEANINGFUL_HEADERS {
        for value in headers.get_all(*name) {
            if !visible_ascii(value) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::Value,
                    format!(
                        "the {name} header holds bytes that are not visible ASCII; percent-encode them (an If-None-Exist query) or leave them out"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Media types accepted for FHIR JSON.
fn is_json_media_type(media_type: &str) -> bool {
    matches!(media_type, "application/fhir+json" | "application/json" | "application/json+fhir" | "json")
}

fn is_xml_media_type(media_type: &str) -> bool {
    media_type.contains("xml")
}

pub(crate) fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Checks `_format` and `Accept`: this server speaks JSON only, except that a view's rows
/// (`ViewDefinition/$run`) come in the `_format` asked for, and the operations report and a
/// release of information also as HTML (the API checks both).
pub(crate) fn check_acceptable(path: &str, query: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    if (path.starts_with("/fhir/ViewDefinition/") && path.ends_with("/$run"))
        || path == "/fhir/$operations-report"
        || (path.starts_with("/fhir/Task/") && path.ends_with("/$roi-release"))
    {
        return Ok(());
    }
    let not_acceptable =
        |message: String| Refusal::new(StatusCode::NOT_ACCEPTABLE, IssueType::NotSupported, message);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        // A literal `+` (application/fhir+json) arrives decoded as a space.
        if name == "_format" && !is_json_media_type(&media_type(&value.replace(' ', "+"))) {
            return Err(not_acceptable(format!(
                "_format={value} is not supported; this server returns JSON only (_format=json)"
            )));
        }
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    // A bulk export's files are NDJSON, which Bulk Data clients ask for by name.
    let export_file = path.starts_with("/fhir/$export-file/");
    let acceptable = accept.split(',').map(media_type).any(|t| {
        is_json_media_type(&t)
            || matches!(t.as_str(), "*/*" | "application/*" | "")
            || (export_file
                && matches!(
                    t.as_str(),
                    "application/fhir+ndjson" | "application/ndjson" | "application/x-ndjson"
                ))
    });
    if acceptable {
        Ok(())
    } else {
        Err(not_acceptable(format!(
            "cannot answer in {accept}; this server returns application/fhir+json only"
        )))
    }
}

/// Checks the request's `Content-Type`: FHIR JSON, a form for `POST [type]/_search`, or a
/// JSON Patch for `PATCH`.
pub(crate) fn check_content_type(
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(), Refusal> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(media_type);
    let form_search = method == Method::Post
        && path.ends_with("/_search")
        && content_type.as_deref() == Some("application/x-www-form-urlencoded");
    // Only a request that carries something says what it is: an operation POSTed without a
    // body and without a Content-Type (`Task/1/$roi-release`) has nothing to describe. One that
    // names a media type is held to it, so an empty cross-site form post is still refused.
    let carries_body = !body.is_empty() || content_type.is_some();
    if form_search || !carries_body {
        return Ok(());
    }
    let unsupported =
        |message: String| Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, IssueType::NotSupported, message);
    let patch = method == Method::Patch;
    let expected = if patch {
        format!(
            "send Content-Type: {} (JSON Patch), {} (JSON Merge Patch) or application/fhir+json (FHIRPath Patch, a Parameters resource)",
            api::JSON_PATCH,
            api::MERGE_PATCH
        )
    } else {
        "send Content-Type: application/fhir+json".to_string()
    };
    match content_type {
        Some(t) if is_json_media_type(&t) => Ok(()),
        Some(t) if (t == api::JSON_PATCH || t == api::MERGE_PATCH) && patch => Ok(()),
        Some(t) if t == api::JSON_PATCH => Err(unsupported(format!(
            "{t} (JSON Patch) is accepted for PATCH only; send this request as application/fhir+json"
        ))),
        Some(t) if is_xml_media_type(&t) => {
            Err(unsupported(format!("{t} is not supported: this server accepts FHIR JSON only; {expected}")))
        }
        Some(t) => Err(unsupported(format!("Content-Type {t} is not supported; {expected}"))),
        None => Err(unsupported(format!("the request has a body but no Content-Type; {expected}"))),
    }
}

/// Reads the body: at most `max_body_bytes` (413), within `body_timeout` (408).
pub(crate) async fn read_body(
    config: &ServerConfig,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Refusal> {
    let limit = config.max_body_bytes;
    let too_large = |close: bool| Refusal {
        close,
        ..Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooLong,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    let timed_out = || Refusal {
        close: true,
        ..Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            IssueType::Timeout,
            format!("the request body did not arrive within {} seconds", config.body_timeout.as_secs_f64()),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > limit as u64
    {
        if length > DISCARD_BYTES {
            return Err(too_large(true));
        }
        discard(body, DISCARD_BYTES, config.body_timeout).await;
        return Err(too_large(true));
    }
    let mut body = body;
    let mut collected: Vec<u8> = Vec::with_capacity(declared.map_or(0, |l| l as usize));
    let deadline = tokio::time::Instant::now() + config.body_timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(timed_out()),
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(Refusal {
                    close: true,
                    ..Refusal::new(
                        StatusCode::BAD_REQUEST,
                        IssueType::Invalid,
                        format!("the request body could not be read: {error}"),
                    )
                });
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                discard(body, DISCARD_BYTES, remaining).await;
                return Err(too_large(true));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(collected))
}

/// Reads and drops up to `bound` bytes of a body, for at most `within`.
async fn discard(mut body: Body, bound: u64, within: Duration) {
    let mut read = 0u64;
    let _ = tokio::time::timeout(within, async {
        while read < bound {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                _ => break,
            }
        }
    })
    .await;
}

/// The base URL links and `Location` are built on: the configured one, or the request's
/// `Host` (which must be a plain host[:port], as it ends up in headers and links).
pub(crate) fn base_url(config: &ServerConfig, headers: &HeaderMap) -> Result<String, Refusal> {
    if let Some(base) = &config.base_url {
        return Ok(base.trim_end_matches('/').to_string());
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let plain = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !plain {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            IssueType::Value,
            format!("invalid Host header '{host}'"),
        ));
    }
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|s| matches!(*s, "http" | "https"))
        .unwrap_or("http");
    Ok(format!("{scheme}://{host}/fhir"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert!(is_json_media_type(&media_type("application/fhir+json; charset=UTF-8")));
        assert!(is_json_media_type(&media_type("application/json")));
        assert!(!is_json_media_type(&media_type("application/fhir+xml")));
        assert!(is_xml_media_type("application/fhir+xml"));
    }

    #[test]
    fn header_values_must_be_visible_ascii() {
        assert!(visible_ascii(&HeaderValue::from_static("W/\"1\"")));
        assert!(!visible_ascii(&HeaderValue::from_bytes("W/\"1\u{e9}\"".as_bytes()).unwrap()));
    }
}
