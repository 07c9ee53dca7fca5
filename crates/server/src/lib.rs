//! The HTTP side of Chartroom: serves the FHIR API at `/fhir`.
//!
//! Thin by design: this crate deals only with what is HTTP's (media types, body size, header
//! names, status codes) and hands everything else to [`api::Api`]. Every error, including a
//! panic, leaves as an `OperationOutcome`.

mod access;
mod consent;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use access::Security;
use privacy::Role;

use api::{Api, Method, Request};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use fhir::{IssueType, OperationOutcome};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

/// Bodies above this size are processed off the async worker threads.
const LARGE_BODY_BYTES: usize = 256 * 1024;

/// The media type of every response body.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// HTTP-level settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The public base URL (`https://chartroom.example.org/fhir`). When absent, it is derived
    /// from each request's `Host`.
    pub base_url: Option<String>,
    /// Tokens and the audit trail. Without it, nothing is checked or recorded (embedding and
    /// tests).
    pub security: Option<Arc<Security>>,
    /// Whether a request needs a token. When not (`--insecure-no-auth`, `demo`), every request
    /// acts as an anonymous administrator, and is still audited.
    pub require_auth: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { max_body_bytes: 16 * 1024 * 1024, base_url: None, security: None, require_auth: true }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("base_url", &self.base_url)
            .field("secured", &self.security.is_some())
            .field("require_auth", &self.require_auth)
            .finish()
    }
}

struct AppState {
    api: Arc<Api>,
    config: ServerConfig,
    consents: consent::Consents,
    /// Who started each bulk export (by job id): only they (or an administrator) poll it and
    /// fetch its files.
    export_owners: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// The router: FHIR at `/fhir`, and an OperationOutcome 404 everywhere else.
pub fn router(api: Arc<Api>, config: ServerConfig) -> Router {
    let state = Arc::new(AppState {
        api,
        config,
        consents: consent::Consents::default(),
        export_owners: Default::default(),
    });
    Router::new()
        .route("/fhir", any(fhir_endpoint))
        .route("/fhir/", any(fhir_endpoint))
        .route("/fhir/{*path}", any(fhir_endpoint))
        .fallback(not_found)
        .layer(CatchPanicLayer::custom(|_| {
            outcome_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                "internal error: the request was not completed",
            )
        }))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

fn outcome_response(status: StatusCode, code: IssueType, message: &str) -> Response {
    let body = OperationOutcome::error(code, message).to_bytes();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))], body).into_response()
}

async fn not_found(uri: Uri) -> Response {
    outcome_response(
        StatusCode::NOT_FOUND,
        IssueType::NotFound,
        &format!("nothing at {}; the FHIR API is at /fhir", uri.path()),
    )
}

/// Media types accepted for FHIR JSON.
fn is_json_media_type(media_type: &str) -> bool {
    matches!(media_type, "application/fhir+json" | "application/json" | "application/json+fhir" | "json")
}

fn is_xml_media_type(media_type: &str) -> bool {
    media_type.contains("xml")
}

fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// A request refused at the HTTP level, before the FHIR API sees it.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal { status, message: message.into() }
    }

    fn into_response(self) -> Response {
        let code = if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            IssueType::TooLong
        } else {
            IssueType::NotSupported
        };
        outcome_response(self.status, code, &self.message)
    }
}

/// Checks `_format` and `Accept`: this server speaks JSON only, except that a view's rows
/// (`ViewDefinition/$run`) come in the `_format` asked for (the API checks it).
fn check_acceptable(path: &str, query: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    if path.starts_with("/fhir/ViewDefinition/") && path.ends_with("/$run") {
        return Ok(());
    }
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        // A literal `+` (application/fhir+json) arrives decoded as a space.
        if name == "_format" && !is_json_media_type(&media_type(&value.replace(' ', "+"))) {
            return Err(Refusal::new(
                StatusCode::NOT_ACCEPTABLE,
                format!("_format={value} is not supported; this server returns JSON only (_format=json)"),
            ));
        }
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let acceptable = accept
        .split(',')
        .map(media_type)
        .any(|t| is_json_media_type(&t) || matches!(t.as_str(), "*/*" | "application/*" | ""));
    if acceptable {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("cannot answer in {accept}; this server returns application/fhir+json only"),
        ))
    }
}

/// Checks the request's `Content-Type`: FHIR JSON only.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(media_type);
    match content_type {
        Some(t) if is_json_media_type(&t) => Ok(()),
        Some(t) if is_xml_media_type(&t) => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{t} is not supported: this server accepts FHIR JSON only; send Content-Type: application/fhir+json"
            ),
        )),
        Some(t) => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {t} is not supported; send Content-Type: application/fhir+json"),
        )),
        None => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request has a body but no Content-Type; send Content-Type: application/fhir+json",
        )),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The base URL links and `Location` are built on: the configured one, or the request's
/// `Host` (which must be a plain host[:port], as it ends up in headers and links).
fn base_url(config: &ServerConfig, headers: &HeaderMap) -> Result<String, Refusal> {
    if let Some(base) = &config.base_url {
        return Ok(base.trim_end_matches('/').to_string());
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let plain = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !plain {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, format!("invalid Host header '{host}'")));
    }
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|s| matches!(*s, "http" | "https"))
        .unwrap_or("http");
    Ok(format!("{scheme}://{host}/fhir"))
}

async fn fhir_endpoint(State(state): State<Arc<AppState>>, http_request: axum::extract::Request) -> Response {
    let (parts, body) = http_request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let query = uri.query().unwrap_or("");
    if let Err(refusal) = check_acceptable(uri.path(), query, &headers) {
        return refusal.into_response();
    }
    let method = Method::parse(method.as_str());
    let limit = state.config.max_body_bytes;
    let declared_length =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return too_large(limit);
    }
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(error) => {
            let source = error.into_inner();
            if source.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return too_large(limit);
            }
            return Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {source}"),
            )
            .into_response();
        }
    };
    // `POST [type]/_search` carries its parameters as a form.
    let form_search = method == Method::Post
        && uri.path().ends_with("/_search")
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| media_type(t) == "application/x-www-form-urlencoded");
    if !form_search
        && (matches!(method, Method::Post | Method::Put | Method::Patch) || !body.is_empty())
        && let Err(refusal) = check_content_type(&headers)
    {
        return refusal.into_response();
    }
    let base = match base_url(&state.config, &headers) {
        Ok(base) => base,
        Err(refusal) => return refusal.into_response(),
    };
    let path = uri.path().strip_prefix("/fhir").unwrap_or("").trim_matches('/').to_string();
    let mut request = Request {
        method: Some(method),
        base,
        path: path.clone(),
        query: query.to_string(),
        if_match: header_text(&headers, header::IF_MATCH),
        if_none_match: header_text(&headers, header::IF_NONE_MATCH),
        if_modified_since: header_text(&headers, header::IF_MODIFIED_SINCE),
        if_none_exist: headers.get("if-none-exist").and_then(|v| v.to_str().ok()).map(str::to_string),
        prefer: header_text(&headers, header::HeaderName::from_static("prefer")),
        body: body.into(),
    };
    let Some(security) = state.config.security.clone() else {
        return to_http(run(&state, &request).await);
    };

    // Who is asking.
    let classified = access::classify(method, &path);
    let purpose = header_text(&headers, header::HeaderName::from_static("x-purpose-of-use"));
    let break_glass = header_text(&headers, header::HeaderName::from_static("x-break-glass-reason"));
    let audit =
        |identity: Option<&privacy::Identity>, status: u16, patients: Vec<String>, why: Option<String>| {
            let mut record = access::access_record(
                identity,
                &classified,
                &path,
                query,
                status,
                patients,
                address.clone(),
                purpose.clone(),
                break_glass.clone(),
            );
            record.outcome_text = why;
            security.audit.record(record);
        };
    let identity = if state.config.require_auth {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let found = match token {
            Some(token) => security.authenticate(token),
            None => Ok(None),
        };
        match found {
            Ok(Some(identity)) => identity,
            refused => {
                // Why a JWT was refused helps its client (RFC 6750's error_description) and
                // the privacy office; it says nothing about the server's keys.
                let why = refused.err().map(|e| e.to_string());
                audit(None, 401, access::patients_touched(&path, None), why.clone());
                let message = match (&why, token) {
                    (Some(why), _) => format!("the bearer token is not valid: {why}"),
                    (None, Some(_)) => "the bearer token is not valid".to_string(),
                    (None, None) => "authentication required: send Authorization: Bearer <token> (chartroom user add issues one)".to_string(),
                };
                let mut response = outcome_response(StatusCode::UNAUTHORIZED, IssueType::Login, &message);
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"chartroom\""));
                return response;
            }
        }
    } else {
        privacy::Identity::anonymous_admin()
    };

    // What they may do.
    let own_patient = access::patient_context(&identity).map(str::to_string);
    match access::authorize(&identity, method, &path, query, &request.body, &classified) {
        Err(denied) => {
            audit(Some(&identity), denied.status, access::patients_touched(&path, None), None);
            let status = StatusCode::from_u16(denied.status).unwrap_or(StatusCode::FORBIDDEN);
            return (status, [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))], denied.body())
                .into_response();
        }
        Ok(Some(rewrite)) => {
            request.path = rewrite.path;
            request.query = rewrite.query;
        }
        Ok(None) => {}
    }

    // A view's rows are not FHIR resources the consent filter can withhold one by one, so the
    // roles consent binds run views only while no directive could withhold anything from
    // them: none on record, or the run limited to a patient without one.
    let consent_bound =
        matches!(identity.role, Role::Clinician | Role::Coder | Role::HimTechnician | Role::Analyst);
    // A bulk export's NDJSON is no more filterable than a view's rows.
    let view_run = classified.resource_type.as_deref() == Some("ViewDefinition")
        && classified.operation.as_deref() == Some("run");
    if consent_bound && (view_run || classified.operation.as_deref() == Some("export")) {
        let in_path = match request.path.split('/').collect::<Vec<_>>().as_slice() {
            ["Patient", id, "$export"] => Some(id.to_string()),
            _ => None,
        };
        let patient = in_path.or_else(|| {
            form_urlencoded::parse(request.query.as_bytes())
                .find(|(name, _)| name == "patient")
                .map(|(_, value)| value.trim_start_matches("Patient/").to_string())
        });
        if state.consents.any_directive(&state.api, &request.base, patient.as_deref()).await {
            audit(Some(&identity), 403, access::patients_touched(&path, None), None);
            return to_http(
                api::ApiError::new(
                    403,
                    IssueType::Forbidden,
                    "consent directives are on record that a view's rows or an export's files cannot honour; run it for one patient without a directive, or ask the privacy office",
                )
                .into_response(),
            );
        }
    }

    // A bulk export's status and files are its starter's (after a restart, the administrator's).
    if let ["$export-status" | "$export-file", job, ..] =
        request.path.split('/').collect::<Vec<_>>().as_slice()
    {
        let owner = state.export_owners.lock().ok().and_then(|owners| owners.get(*job).cloned());
        if identity.role != Role::Admin && owner.as_deref() != Some(identity.user.as_str()) {
            audit(Some(&identity), 403, Vec::new(), None);
            return to_http(
                api::ApiError::new(403, IssueType::Forbidden, "this export was started by someone else")
                    .into_response(),
            );
        }
    }

    // The patients a read of the audit trail is about: those its query names, not every
    // patient in the entries it returns (a review of the trail is not an access to them).
    let mut trail_patients: Option<Vec<String>> = None;
    let mut response = if classified.operation.as_deref() == Some("disclosures") {
        disclosures(&security, &request, classified.id.as_deref())
    } else if classified.resource_type.as_deref() == Some("AuditEvent") && classified.operation.is_none() {
        // SQLite reads (and the wait for the audit writer's batch) off the async workers.
        let (security, trail_request) = (security.clone(), request.clone());
        let answered = tokio::task::spawn_blocking(move || audit_trail(&security, &trail_request)).await;
        let (response, patients) = answered.unwrap_or_else(|_| {
            (api::ApiError::internal("the audit trail could not be read").into_response(), Vec::new())
        });
        trail_patients = Some(patients);
        response
    } else {
        run(&state, &request).await
    };
    if classified.operation.as_deref() == Some("export")
        && response.status == 202
        && let Some(job) = response.location.as_deref().and_then(|l| l.rsplit('/').next())
        && let Ok(mut owners) = state.export_owners.lock()
    {
        owners.insert(job.to_string(), identity.user.clone());
    }
    if let Some(own) = &own_patient
        && (200..300).contains(&response.status)
        && let Some(body) = &response.body
    {
        match access::filter_for_patient(body, own) {
            Some(filtered) => response.body = Some(filtered),
            None => {
                response = api::ApiError::new(
                    403,
                    IssueType::Forbidden,
                    "this token gives access to one patient's record only",
                )
                .into_response();
            }
        }
    }
    // The patients' consent directives, for the roles that work with records.
    let consent_applies = consent_bound;
    let glass_broken =
        identity.role == Role::Clinician && break_glass.as_deref().is_some_and(|r| !r.trim().is_empty());
    if consent_applies
        && !glass_broken
        && classified.action == "R"
        && (200..300).contains(&response.status)
        && let Some(body) = &response.body
    {
        match state.consents.enforce(&state.api, &request.base, &identity, purpose.as_deref(), body).await {
            consent::Verdict::Unchanged => {}
            consent::Verdict::Filtered(filtered) => response.body = Some(filtered),
            consent::Verdict::Withheld => {
                response = api::ApiError::new(
                    403,
                    IssueType::Forbidden,
                    "withheld by the patient's consent directive; a clinician may break the glass with an X-Break-Glass-Reason header",
                )
                .into_response();
            }
        }
    }
    if classified.action != "R"
        && (classified.resource_type.as_deref() == Some("Consent")
            || request.body.windows(9).any(|w| w == b"\"Consent\""))
    {
        state.consents.forget();
    }
    let touched = if let Some(patients) = trail_patients {
        patients
    } else if (200..300).contains(&response.status) {
        access::patients_touched(&path, response.body.as_deref())
    } else {
        access::patients_touched(&path, None)
    };
    audit(Some(&identity), response.status, touched, None);
    to_http(response)
}

/// Hands the request to the API; a large body is parsed off the async worker threads.
async fn run(state: &AppState, request: &Request) -> api::Response {
    if request.body.len() > LARGE_BODY_BYTES {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(state.api.handle(request)))
    } else {
        state.api.handle(request).await
    }
}

/// `Patient/[id]/$disclosures`: the accounting of disclosures, every audited access to the
/// patient's record (oldest first) as a Bundle of AuditEvents.
fn disclosures(security: &Security, request: &Request, patient: Option<&str>) -> api::Response {
    let Some(patient) = patient else {
        return api::ApiError::bad_request(
            IssueType::Required,
            "$disclosures runs on a Patient: Patient/[id]/$disclosures",
        )
        .into_response();
    };
    security.audit.flush();
    match privacy::audit::events_for_patient(&security.data_dir, &format!("Patient/{patient}")) {
        Ok(events) => {
            let entries: Vec<serde_json::Value> =
                events.into_iter().map(|e| serde_json::json!({ "resource": e })).collect();
            let bundle = serde_json::json!({
                "resourceType": "Bundle", "type": "collection", "total": entries.len(),
                "link": [{ "relation": "self", "url": format!("{}/{}", request.base, request.path) }],
                "entry": entries,
            });
            api::Response::json(200, serde_json::to_vec(&bundle).unwrap_or_default())
        }
        Err(error) => {
            api::ApiError::internal(format!("the audit trail cannot be read: {error}")).into_response()
        }
    }
}

/// AuditEvent reads, answered from the audit trail (the store holds no AuditEvents): read,
/// vread of the one version, and search (also as `Patient/[id]/AuditEvent`); the parameters
/// are those of [`privacy::audit_search`]. Returns the answer and the patients the request
/// names, for its own audit entry.
fn audit_trail(security: &Security, request: &Request) -> (api::Response, Vec<String>) {
    // What was recorded up to this request (the reader's own earlier requests included) is
    // committed before it is searched.
    security.audit.flush();
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    let failed = |error: privacy::Error| match error {
        privacy::Error::Search { code, message } => api::ApiError::bad_request(code, message).into_response(),
        other => api::ApiError::internal(format!("the audit trail cannot be read: {other}")).into_response(),
    };
    let form_search = request.method == Some(Method::Post) && segments.last() == Some(&"_search");
    if !matches!(request.method, Some(Method::Get | Method::Head) | None) && !form_search {
        let message = "the audit trail is read with GET (or POST [base]/AuditEvent/_search)";
        return (api::ApiError::new(405, IssueType::NotSupported, message).into_response(), Vec::new());
    }
    match segments.as_slice() {
        ["AuditEvent"] | ["AuditEvent", "_search"] => trail_search(security, request, "AuditEvent", None),
        ["Patient", id, "AuditEvent"] => {
            trail_search(security, request, &format!("Patient/{id}/AuditEvent"), Some(id))
        }
        ["AuditEvent", "_history"] | ["AuditEvent", _, "_history"] => {
            let message =
                "audit entries are never changed, so AuditEvents have no history: search them instead";
            (api::ApiError::bad_request(IssueType::NotSupported, message).into_response(), Vec::new())
        }
        ["AuditEvent", id] | ["AuditEvent", id, "_history", "1"] => {
            let response = match privacy::audit_search::read(&security.data_dir, id) {
                Ok(Some(event)) => api::Response::json(200, serde_json::to_vec(&event).unwrap_or_default()),
                Ok(None) => api::ApiError::not_found(format!("AuditEvent/{id} is not in the audit trail"))
                    .into_response(),
                Err(error) => failed(error),
            };
            (response, Vec::new())
        }
        ["AuditEvent", id, "_history", version] => {
            let message =
                format!("AuditEvent/{id} has no version {version}: audit entries are never changed");
            (api::ApiError::not_found(message).into_response(), Vec::new())
        }
        _ => {
            let message = "the audit trail answers read, vread and search of AuditEvents only";
            (api::ApiError::bad_request(IssueType::NotSupported, message).into_response(), Vec::new())
        }
    }
}

/// An AuditEvent search: a searchset Bundle, newest first unless `_sort=date`, with a `next`
/// link while more remain.
fn trail_search(
    security: &Security,
    request: &Request,
    path: &str,
    patient: Option<&str>,
) -> (api::Response, Vec<String>) {
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(request.query.as_bytes()).into_owned().collect();
    if request.method == Some(Method::Post) {
        pairs.extend(form_urlencoded::parse(&request.body).into_owned());
    }
    let mut query =
        match privacy::audit_search::Query::parse(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
            Ok(query) => query,
            Err(privacy::Error::Search { code, message }) => {
                return (api::ApiError::bad_request(code, message).into_response(), Vec::new());
            }
            Err(other) => {
                return (
                    api::ApiError::bad_request(IssueType::Invalid, other.to_string()).into_response(),
                    Vec::new(),
                );
            }
        };
    if let Some(patient) = patient {
        query.within_patient(patient);
    }
    let patients = query.patients().to_vec();
    let page = match privacy::audit_search::search(&security.data_dir, &query) {
        Ok(page) => page,
        Err(privacy::Error::Search { code, message }) => {
            return (api::ApiError::bad_request(code, message).into_response(), patients);
        }
        Err(error) => {
            let message = format!("the audit trail cannot be read: {error}");
            return (api::ApiError::internal(message).into_response(), patients);
        }
    };
    let link = |cursor: Option<&str>| {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (name, value) in query.params() {
            serializer.append_pair(name, value);
        }
        if let Some(cursor) = cursor {
            serializer.append_pair("_cursor", cursor);
        }
        let encoded = serializer.finish();
        if encoded.is_empty() {
            format!("{}/{path}", request.base)
        } else {
            format!("{}/{path}?{encoded}", request.base)
        }
    };
    let mut links = vec![serde_json::json!({ "relation": "self", "url": link(query.cursor().as_deref()) })];
    if let Some(next) = &page.next {
        links.push(serde_json::json!({ "relation": "next", "url": link(Some(next)) }));
    }
    let entries: Vec<serde_json::Value> = page
        .events
        .into_iter()
        .map(|event| {
            let full_url =
                format!("{}/AuditEvent/{}", request.base, event["id"].as_str().unwrap_or_default());
            serde_json::json!({ "fullUrl": full_url, "resource": event, "search": { "mode": "match" } })
        })
        .collect();
    let mut bundle = serde_json::json!({ "resourceType": "Bundle", "type": "searchset" });
    if let Some(total) = page.total {
        bundle["total"] = serde_json::Value::from(total);
    }
    bundle["link"] = serde_json::Value::Array(links);
    bundle["entry"] = serde_json::Value::Array(entries);
    (api::Response::json(200, serde_json::to_vec(&bundle).unwrap_or_default()), patients)
}

fn too_large(limit: usize) -> Response {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
    .into_response()
}

fn to_http(response: api::Response) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = axum::http::Response::builder().status(status);
    if let Some(etag) = &response.etag {
        builder = builder.header(header::ETAG, etag);
    }
    if let Some(millis) = response.last_modified {
        builder =
            builder.header(header::LAST_MODIFIED, fhir::DateTime::from_epoch_millis(millis).to_http_date());
    }
    if let Some(location) = &response.location
        && let Ok(value) = HeaderValue::from_str(location)
    {
        builder = builder.header(header::LOCATION, value.clone()).header(header::CONTENT_LOCATION, value);
    }
    let body = match response.body {
        Some(body) => {
            builder = builder.header(header::CONTENT_TYPE, response.content_type.unwrap_or(FHIR_JSON));
            Body::from(body)
        }
        None => Body::empty(),
    };
    builder.body(body).unwrap_or_else(|_| {
        outcome_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            "could not build the response",
        )
    })
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
}
