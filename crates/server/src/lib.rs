//! The HTTP side of Chartroom: serves the FHIR API at `/fhir`.
//!
//! Thin by design: this crate deals only with what is HTTP's and hands everything else to
//! [`api::Api`], which parses the route and asks the access policy. Layers, outermost first:
//!
//! 1. **audit** ([`audit`]): every request leaves an entry, whatever answers it: a refusal
//!    at the HTTP edge, a failed authentication, the API, a panicking handler. Under strict
//!    audit durability the response leaves only once its entry is committed.
//! 2. **panics** become a 500 `OperationOutcome` (inside the audit layer, so they are audited).
//! 3. **the edge** ([`edge`]): header values, media types, body size and arrival time, Host.
//! 4. **authentication**: who is asking, from the bearer token (401 otherwise).
//! 5. **the API**: route, authorization by the one policy (`privacy::policy`), the interaction.
//!
//! Every answer, including the HTTP layer's own refusals, is an `OperationOutcome`. The
//! connections are served by [`serve`] with limits that let oversized request heads reach
//! the edge layer (which answers them properly) rather than hyper's bare refusals.

mod audit;
mod edge;
mod listen;
mod mllp;
pub mod oauth;
mod pages;
mod workbench;

use std::sync::Arc;
use std::time::Duration;

use api::{Api, Method, Request};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use fhir::{IssueType, OperationOutcome};
use privacy::{AuditLog, Identity, Users};
use tower_http::catch_panic::CatchPanicLayer;

pub use listen::serve;
pub use mllp::{MllpConfig, serve_mllp};

/// Bodies above this size are processed off the async worker threads.
const LARGE_BODY_BYTES: usize = 256 * 1024;

/// The media type of every response body.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// Authentication and the audit trail of a served data directory.
pub struct Security {
    pub users: Users,
    pub audit: Arc<AuditLog>,
    pub data_dir: std::path::PathBuf,
    /// JWT bearer tokens accepted besides API tokens, when configured: HS256 with a shared
    /// secret, RS256 / ES256 with an authorization server's JWKS, or both.
    pub jwt: Option<privacy::jwt::Verifier>,
    /// The built-in authorization server (SMART App Launch, Backend Services), whose access
    /// tokens are accepted too; `None` when the deployment trusts an outside one only.
    pub oauth: Option<Arc<privacy::AuthorizationServer>>,
    /// An outside authorization server's SMART discovery document, served as this server's
    /// `.well-known/smart-configuration` (with `oauth` off).
    pub smart_configuration: Option<serde_json::Value>,
}

impl Security {
    /// Opens the users and the audit trail with strict durability.
    pub fn open(data_dir: &std::path::Path) -> Result<Security, privacy::Error> {
        Security::open_with(data_dir, privacy::AuditOptions::default())
    }

    pub fn open_with(
        data_dir: &std::path::Path,
        audit: privacy::AuditOptions,
    ) -> Result<Security, privacy::Error> {
        Security::open_on(data_dir, privacy::open_directory(data_dir)?, audit)
    }

    /// The audit trail of `data_dir`, with the users, clients and tokens in `tables`: the
    /// directory's own database, or a PostgreSQL record's, shared by all its servers.
    pub fn open_on(
        data_dir: &std::path::Path,
        tables: Arc<privacy::Database>,
        audit: privacy::AuditOptions,
    ) -> Result<Security, privacy::Error> {
        Ok(Security {
            users: Users::on(tables.clone())?,
            audit: Arc::new(AuditLog::open_with(data_dir, audit)?),
            data_dir: data_dir.to_path_buf(),
            jwt: None,
            oauth: Some(Arc::new(privacy::AuthorizationServer::on(data_dir, tables)?)),
            smart_configuration: None,
        })
    }

    /// Trusts an outside authorization server instead of the built-in one: its discovery
    /// document is served, and its tokens are checked by `jwt`.
    pub fn with_outside_authorization_server(mut self, smart_configuration: serde_json::Value) -> Security {
        self.oauth = None;
        self.smart_configuration = Some(smart_configuration);
        self
    }

    /// The identity a bearer token stands for: an API token, an access token of the built-in
    /// authorization server, or an outside JWT if configured; `Ok(None)` for a token of none
    /// of these kinds, an error saying why a JWT is refused.
    pub fn authenticate(&self, token: &str) -> Result<Option<Identity>, privacy::Error> {
        if let Some(identity) = self.users.authenticate(token).ok().flatten() {
            return Ok(Some(identity));
        }
        if let Some(oauth) = &self.oauth
            && let Some(identity) = oauth.authenticate(&self.users, token)?
        {
            return Ok(Some(identity));
        }
        let Some(jwt) = &self.jwt else { return Ok(None) };
        jwt.authenticate(token, fhir::datetime::epoch_millis_now() / 1000)
    }
}

/// HTTP-level settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers) accepted, in bytes.
    pub max_header_bytes: usize,
    /// How long a request body may take to arrive once its headers have.
    pub body_timeout: Duration,
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
        ServerConfig {
            max_body_bytes: 16 * 1024 * 1024,
            max_header_bytes: edge::MAX_HEADER_BYTES,
            body_timeout: Duration::from_secs(30),
            base_url: None,
            security: None,
            require_auth: true,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("body_timeout", &self.body_timeout)
            .field("base_url", &self.base_url)
            .field("secured", &self.security.is_some())
            .field("require_auth", &self.require_auth)
            .finish()
    }
}

struct AppState {
    api: Arc<Api>,
    config: ServerConfig,
    /// The workbench's signed-in users.
    sessions: workbench::Sessions,
}

/// The router: FHIR at `/fhir`, and an OperationOutcome 404 everywhere else; every request
/// audited when there is a trail.
pub fn router(api: Arc<Api>, config: ServerConfig) -> Router {
    // The API answers AuditEvent reads from the trail this server writes.
    let api = match &config.security {
        Some(security) => Arc::new((*api).clone().with_audit_trail(Arc::new(api::AuditTrail::new(
            security.audit.clone(),
            security.data_dir.clone(),
        )))),
        None => api,
    };
    let state = Arc::new(AppState { api, config, sessions: Default::default() });
    let routes = oauth::routes()
        .merge(workbench::routes())
        .route("/fhir", any(fhir_endpoint))
        .route("/fhir/", any(fhir_endpoint))
        .route("/fhir/{*path}", any(fhir_endpoint))
        .fallback(not_found);
    layered(routes, state)
}

/// The layers every route is served through: panics become an OperationOutcome inside the
/// audit layer, which is outermost.
fn layered(routes: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    routes
        .layer(CatchPanicLayer::custom(|_| {
            outcome_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                "internal error: the request was not completed",
            )
        }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit::audited))
        .with_state(state)
}

pub(crate) fn outcome_response(status: StatusCode, code: IssueType, message: &str) -> Response {
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

async fn fhir_endpoint(State(state): State<Arc<AppState>>, http_request: axum::extract::Request) -> Response {
    let slot = http_request.extensions().get::<Arc<audit::Slot>>().cloned().unwrap_or_default();
    let (parts, body) = http_request.into_parts();
    let headers = &parts.headers;
    if let Err(refusal) = edge::check_head(&state.config, headers) {
        return refusal.into_response();
    }

    // Who is asking.
    let identity = match &state.config.security {
        None => None,
        Some(_) if !state.config.require_auth => Some(Identity::anonymous_admin()),
        Some(security) => match authenticate(security, headers) {
            Ok(identity) => Some(identity),
            // No token at all, for what the policy opens to anyone (discovery).
            Err(_) if !headers.contains_key(header::AUTHORIZATION) && open_to_anyone(&parts) => {
                Some(Identity::unauthenticated())
            }
            Err(refused) => {
                let (why, response) = *refused;
                slot.refused_because(why);
                return response;
            }
        },
    };
    if let Some(identity) = &identity {
        slot.set_identity(identity.clone());
    }

    // What HTTP says about the request.
    let query = parts.uri.query().unwrap_or("");
    if let Err(refusal) = edge::check_acceptable(parts.uri.path(), query, headers) {
        return refusal.into_response();
    }
    let method = Method::parse(parts.method.as_str());
    let body = match edge::read_body(&state.config, headers, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = edge::check_content_type(method, parts.uri.path(), headers, &body) {
        return refusal.into_response();
    }
    let base = match edge::base_url(&state.config, headers) {
        Ok(base) => base,
        Err(refusal) => return refusal.into_response(),
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let request = Request {
        method: Some(method),
        base,
        path: parts.uri.path().strip_prefix("/fhir").unwrap_or("").trim_matches('/').to_string(),
        query: query.to_string(),
        if_match: text("if-match"),
        if_none_match: text("if-none-match"),
        if_modified_since: text("if-modified-since"),
        if_none_exist: text("if-none-exist"),
        prefer: text("prefer"),
        accept: text("accept"),
        content_type: text("content-type").map(|value| edge::media_type(&value)).filter(|t| !t.is_empty()),
        body: body.into(),
        caller: identity.map(|identity| {
            Arc::new(api::Caller {
                identity,
                purpose: text("x-purpose-of-use"),
                break_glass: text("x-break-glass-reason"),
            })
        }),
    };
    let mut response = run(&state, &request).await;
    slot.set_audited(std::mem::take(&mut response.audit));
    to_http(response)
}

/// Whether the policy opens the request's route to anyone (no token needed).
fn open_to_anyone(parts: &axum::http::request::Parts) -> bool {
    let path = parts.uri.path().strip_prefix("/fhir").unwrap_or("").trim_matches('/');
    let query = parts.uri.query().unwrap_or("");
    fhir::rest::Target::from_path(path, query)
        .and_then(|target| fhir::rest::Route::parse(Method::parse(parts.method.as_str()), &target))
        .is_ok_and(|route| privacy::policy::open_to_anyone(&route))
}

/// The identity of the request's bearer token; otherwise why not, and the 401 to answer.
fn authenticate(
    security: &Security,
    headers: &axum::http::HeaderMap,
) -> Result<Identity, Box<(Option<String>, Response)>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let found = match token {
        Some(token) => security.authenticate(token),
        None => Ok(None),
    };
    let why = match found {
        // A patient's token must name its patient (the policy refuses it too).
        Ok(Some(identity)) => match privacy::policy::confinement(&identity) {
            Ok(_) => return Ok(identity),
            Err(refusal) => Some(refusal.message),
        },
        Ok(None) => None,
        // Why a JWT was refused helps its client (RFC 6750's error_description) and the
        // privacy office; it says nothing about the server's keys.
        Err(error) => Some(error.to_string()),
    };
    let message = match (&why, token) {
        (Some(why), _) => format!("the bearer token is not valid: {why}"),
        (None, Some(_)) => "the bearer token is not valid".to_string(),
        (None, None) => {
            "authentication required: send Authorization: Bearer <token> (chartroom user add issues one)"
                .to_string()
        }
    };
    let mut response = outcome_response(StatusCode::UNAUTHORIZED, IssueType::Login, &message);
    // RFC 6750 §3.1: a token that was sent and refused is `invalid_token`; a request with
    // none gets the challenge alone.
    let challenge = match token {
        Some(_) => HeaderValue::from_static("Bearer realm=\"chartroom\", error=\"invalid_token\""),
        None => HeaderValue::from_static("Bearer realm=\"chartroom\""),
    };
    response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    Err(Box::new((why, response)))
}

/// Hands the request to the API. The API reads the store synchronously: a read by id takes
/// microseconds and runs on the async worker, but anything that may take longer (a search, an
/// operation, a Bundle, a large body) gives its worker thread up to the others first, so that
/// two heavy requests cannot stall every other client on a two-core machine.
async fn run(state: &AppState, request: &Request) -> api::Response {
    let light = matches!(request.method, Some(Method::Get | Method::Head))
        && request.query.is_empty()
        && request.body.is_empty()
        && !request.path.contains('$');
    let multi_thread =
        tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread;
    if (light && request.body.len() <= LARGE_BODY_BYTES) || !multi_thread {
        state.api.handle(request).await
    } else {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(state.api.handle(request)))
    }
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
    for (name, value) in &response.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            builder = builder.header(*name, value);
        }
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

    /// A handler that panics still leaves its audit entry (the panic is answered inside the
    /// audit layer).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_handler_is_audited() {
        let dir = testkit::temp_dir("server-panic-audit");
        let security = Arc::new(Security::open(&dir).expect("open the trail"));
        let store = Arc::new(
            store::SqliteStore::open(&dir.join("store"), store::StoreOptions::default()).expect("store"),
        );
        let api = Arc::new(Api::new(store, api::ApiConfig::default()));
        let config =
            ServerConfig { security: Some(security.clone()), require_auth: false, ..Default::default() };
        let state = Arc::new(AppState { api, config, sessions: Default::default() });
        let routes: Router<Arc<AppState>> =
            Router::new().route("/fhir/boom", any(|| async { panic!("a handler failed") as Response }));
        let app = layered(routes, state);
        let request = axum::http::Request::builder()
            .uri("/fhir/boom")
            .header("x-request-id", "boom-1")
            .body(Body::empty())
            .expect("request");
        let response = tower::ServiceExt::oneshot(app, request).await.expect("answered");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        security.audit.flush();
        let entries = privacy::audit::entries(&dir).expect("entries");
        assert!(
            entries.iter().any(|(_, _, a)| a.status == 500 && a.request_id.as_deref() == Some("boom-1")),
            "{:?}",
            entries.iter().map(|(_, _, a)| (a.status, a.request_id.clone())).collect::<Vec<_>>()
        );
    }
}
