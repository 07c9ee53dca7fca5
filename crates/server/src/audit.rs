//! The outermost layer: every request leaves an audit entry, whoever answered it (the edge,
//! authentication, the API, or the panic handler), with what the inner layers learned about
//! it (the identity, the route, the patients the answer carried). Under strict durability the
//! response waits for the entry's commit; an access that cannot be recorded is not answered.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use api::{Audited, Method};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::http::header::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use fhir::IssueType;
use privacy::{Access, Identity};

use crate::{AppState, outcome_response};

/// Longest header value copied into an entry (purpose, break-the-glass reason, request id).
const MAX_RECORDED_HEADER: usize = 512;

/// What the inner layers learned about a request, for its entry.
#[derive(Default)]
pub(crate) struct Slot(Mutex<Learned>);

#[derive(Default)]
struct Learned {
    identity: Option<Identity>,
    audited: Option<Audited>,
    why: Option<String>,
}

impl Slot {
    pub(crate) fn set_identity(&self, identity: Identity) {
        if let Ok(mut learned) = self.0.lock() {
            learned.identity = Some(identity);
        }
    }

    pub(crate) fn set_audited(&self, audited: Audited) {
        if let Ok(mut learned) = self.0.lock() {
            learned.audited = Some(audited);
        }
    }

    /// Why authentication refused the request (for the privacy office).
    pub(crate) fn refused_because(&self, why: Option<String>) {
        if let Ok(mut learned) = self.0.lock() {
            learned.why = why;
        }
    }
}

fn header(request: &Request, name: &str) -> Option<String> {
    let value = request.headers().get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.chars().take(MAX_RECORDED_HEADER).collect())
}

/// The audit middleware.
pub(crate) async fn audited(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(security) = state.config.security.clone() else { return next.run(request).await };
    let slot = Arc::new(Slot::default());
    request.extensions_mut().insert(slot.clone());
    let method = Method::parse(request.method().as_str());
    let path = request
        .uri()
        .path()
        .strip_prefix("/fhir")
        .unwrap_or(request.uri().path())
        .trim_matches('/')
        .to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let purpose = header(&request, "x-purpose-of-use");
    let break_glass = header(&request, "x-break-glass-reason");
    let request_id = header(&request, "x-request-id");

    let mut response = next.run(request).await;

    let learned = std::mem::take(&mut *slot.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    // A request the API never saw is described by its route all the same (for the
    // interaction and the patient it names), without any decision being taken on it.
    let audited = learned.audited.unwrap_or_else(|| Audited::describe(method, &path, &query));
    let access = Access {
        user: learned.identity.as_ref().map_or_else(|| "unauthenticated".to_string(), |i| i.user.clone()),
        role: learned.identity.as_ref().map_or_else(String::new, |i| i.role.as_str().to_string()),
        interaction: audited.interaction.to_string(),
        action: audited.action,
        status: response.status().as_u16(),
        outcome_text: learned.why.or(audited.disclosure),
        patients: audited.patients,
        resources: std::iter::once(if audited.subject.is_empty() { path } else { audited.subject })
            .chain(audited.written)
            .collect(),
        query: (!query.is_empty()).then_some(query),
        purpose,
        address,
        request_id: request_id.clone(),
        break_glass_reason: break_glass,
    };
    if !security.audit.record(access).durable().await {
        return outcome_response(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            "the access could not be recorded in the audit trail, so it is not answered; try again",
        );
    }
    if let Some(id) = request_id
        && let Ok(value) = HeaderValue::from_str(&id)
    {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
