//! The authorization server's pages as responses: `web::authorize` renders them; this adds
//! the headers every such page carries (no caching, no framing, no script).

use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use privacy::oauth::Pending;

pub(crate) use web::authorize::PatientChoice;

/// A page with its headers.
pub(crate) fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            // The pages are never framed (clickjacking a consent) and run no script.
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
            ),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        html,
    )
        .into_response()
}

/// A request that cannot go on and cannot be sent back to the app.
pub(crate) fn refusal(why: &str) -> Response {
    page(StatusCode::BAD_REQUEST, web::authorize::refusal(why))
}

/// The sign-in form.
pub(crate) fn sign_in(pending: &Pending, message: Option<&str>) -> Response {
    page(StatusCode::OK, web::authorize::sign_in(&pending.client.name, &pending.id, message))
}

/// The consent screen, with the picker when the user must choose the patient.
pub(crate) fn consent(pending: &Pending, patients: &[PatientChoice], message: Option<&str>) -> Response {
    let granted: Vec<String> = pending.grant.as_ref().map(|g| g.scopes.clone()).unwrap_or_default();
    let user = pending.user.as_ref().map(|u| u.0.as_str()).unwrap_or("");
    let picker = pending.needs_patient_picked().then_some(patients);
    page(
        StatusCode::OK,
        web::authorize::consent(user, &pending.client.name, &pending.id, &granted, picker, message),
    )
}
