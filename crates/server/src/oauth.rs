//! The authorization server's HTTP side (SMART App Launch 2.0, SMART Backend Services):
//! discovery, the sign-in and consent pages, and the token, introspection, revocation and
//! launch endpoints. The decisions are `privacy::oauth`'s; this module reads forms and
//! writes pages, redirects and JSON. Every request here passes the audit layer like any
//! other, and says what it granted or why it refused in its entry.
//!
//! These endpoints are open without a bearer token by nature (they are where tokens come
//! from); each authenticates what it needs itself: the user by password, the client by its
//! registration, PKCE or signed assertion. Nothing here reads or returns a resource except
//! through the API as the signed-in user (the patient picker), so the one policy applies.

use std::sync::Arc;

use api::{Audited, Method};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use privacy::oauth::{AuthorizationServer, AuthorizeError, AuthorizeRequest, Form, OAuthError, Pending};
use privacy::{Identity, Role};
use serde_json::{Value, json};

use crate::audit::Slot;
use crate::{AppState, Security, edge, pages};

/// The cookie binding an authorization request to the browser that started it.
const BROWSER_COOKIE: &str = "chartroom_authorize";

/// The paths of the endpoints, under the server's root (the FHIR base without `/fhir`).
pub const AUTHORIZE_PATH: &str = web::authorize::AUTHORIZE_PATH;
pub const TOKEN_PATH: &str = "/oauth/token";
pub const INTROSPECT_PATH: &str = "/oauth/introspect";
pub const REVOKE_PATH: &str = "/oauth/revoke";
pub const JWKS_PATH: &str = "/oauth/jwks";
pub const LAUNCH_PATH: &str = "/oauth/launch";

/// What the CapabilityStatement advertises of the built-in authorization server.
pub fn capability_uris() -> api::OAuthUris {
    api::OAuthUris {
        authorize: AUTHORIZE_PATH.into(),
        token: TOKEN_PATH.into(),
        introspect: Some(INTROSPECT_PATH.into()),
        revoke: Some(REVOKE_PATH.into()),
    }
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/fhir/.well-known/smart-configuration", get(smart_configuration))
        .route(AUTHORIZE_PATH, get(authorize_start).post(authorize_step))
        .route(TOKEN_PATH, post(token))
        .route(INTROSPECT_PATH, post(introspect))
        .route(REVOKE_PATH, post(revoke))
        .route(JWKS_PATH, get(jwks))
        .route(LAUNCH_PATH, post(launch))
}

/// The server root (`https://host[/prefix]`) of a FHIR base ending in `/fhir`.
fn root_of(base: &str) -> &str {
    base.strip_suffix("/fhir").unwrap_or(base)
}

fn slot(parts: &Parts) -> Arc<Slot> {
    parts.extensions.get::<Arc<Slot>>().cloned().unwrap_or_default()
}

/// Records what an OAuth request was, for its audit entry.
fn note(slot: &Slot, interaction: &'static str, subject: String, patient: Option<&str>, outcome: String) {
    let mut audited = Audited {
        interaction,
        action: "E",
        subject,
        patients: Vec::new(),
        written: Vec::new(),
        disclosure: None,
    };
    if let Some(patient) = patient {
        audited.patients.push(format!("Patient/{patient}"));
    }
    slot.set_audited(audited);
    slot.refused_because(Some(outcome));
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            // RFC 6749 §5.1: token responses are not cached.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        body.to_string(),
    )
        .into_response()
}

fn oauth_error(error: &OAuthError) -> Response {
    let mut response = json_response(error.status, &error.body());
    if error.status == 401 {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"chartroom\""));
    }
    response
}

fn not_offered() -> Response {
    json_response(
        404,
        &json!({ "error": "not_found", "error_description": "this server has no built-in authorization server (it runs without authentication, or trusts an outside one)" }),
    )
}

fn security(state: &AppState) -> Option<&Arc<Security>> {
    state.config.security.as_ref().filter(|_| state.config.require_auth)
}

fn authorization_server(state: &AppState) -> Option<(&Arc<Security>, &AuthorizationServer)> {
    let security = security(state)?;
    let server = security.oauth.as_deref()?;
    Some((security, server))
}

/// The FHIR base of the request, or the edge's refusal.
fn base(state: &AppState, headers: &HeaderMap) -> Result<String, edge::Refusal> {
    edge::base_url(&state.config, headers)
}

// ---- discovery --------------------------------------------------------------------------

async fn smart_configuration(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(security) = security(&state) else { return not_offered() };
    if let Some(outside) = &security.smart_configuration {
        return json_response(200, outside);
    }
    if security.oauth.is_none() {
        return not_offered();
    }
    let base = match base(&state, &headers) {
        Ok(base) => base,
        Err(refusal) => return refusal.into_response(),
    };
    let mut response = json_response(200, &smart_configuration_document(&base));
    // Discovery is public and changes only with the deployment.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

/// The SMART App Launch 2.0 discovery document of the built-in authorization server.
pub fn smart_configuration_document(base: &str) -> Value {
    let root = root_of(base);
    let mut scopes: Vec<String> =
        ["openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access"]
            .map(String::from)
            .to_vec();
    scopes.extend(
        [
            "patient/*.rs",
            "patient/*.read",
            "user/*.rs",
            "user/*.cruds",
            "user/*.read",
            "system/*.rs",
            "system/*.read",
        ]
        .map(String::from),
    );
    json!({
        "issuer": base,
        "jwks_uri": format!("{root}{JWKS_PATH}"),
        "authorization_endpoint": format!("{root}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{root}{TOKEN_PATH}"),
        "introspection_endpoint": format!("{root}{INTROSPECT_PATH}"),
        "revocation_endpoint": format!("{root}{REVOKE_PATH}"),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384", "RS256", "ES256"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": [
            "launch-standalone", "launch-ehr",
            "client-public", "client-confidential-asymmetric",
            "context-standalone-patient", "context-ehr-patient", "context-ehr-encounter",
            "permission-patient", "permission-user", "permission-offline", "permission-online",
            "permission-v1", "permission-v2",
            "sso-openid-connect"
        ]
    })
}

async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    match authorization_server(&state) {
        Some((_, server)) => json_response(200, &server.jwks()),
        None => not_offered(),
    }
}

// ---- the authorization endpoint -----------------------------------------------------

fn query_pairs(query: &str) -> Result<Form, String> {
    let mut form = Form::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if form.insert(name.to_string(), value.to_string()).is_some() {
            // RFC 6749 §3.1: parameters must not be repeated.
            return Err(format!("the parameter {name} is given more than once"));
        }
    }
    Ok(form)
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(_) => pages::refusal("The app's address cannot be used."),
    }
}

/// The answer to a refused authorization request: back to the app when it can be trusted,
/// else a page saying why.
fn authorize_refused(slot: &Slot, client: &str, error: &AuthorizeError) -> Response {
    note(
        slot,
        "oauth-authorize",
        format!("authorize {client}"),
        None,
        format!(
            "refused: {}{}",
            error.code().map(|c| format!("{c}: ")).unwrap_or_default(),
            error.description()
        ),
    );
    match error.location() {
        Some(location) => redirect(&location),
        None => pages::refusal(error.description()),
    }
}

async fn authorize_start(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let slot = slot(&parts);
    let Some((_, server)) = authorization_server(&state) else { return not_offered() };
    let base = match base(&state, &parts.headers) {
        Ok(base) => base,
        Err(refusal) => return refusal.into_response(),
    };
    let query = match query_pairs(parts.uri.query().unwrap_or("")) {
        Ok(query) => query,
        Err(why) => return authorize_refused(&slot, "", &AuthorizeError::NoRedirect(why)),
    };
    let get = |name: &str| query.get(name).cloned();
    let request = AuthorizeRequest {
        response_type: get("response_type"),
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        scope: get("scope"),
        state: get("state"),
        aud: get("aud"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        launch: get("launch"),
        nonce: get("nonce"),
    };
    let client = request.client_id.clone().unwrap_or_default();
    match server.begin(&request, &base) {
        Ok(pending) => {
            note(
                &slot,
                "oauth-authorize",
                format!("authorize {}", pending.client.id),
                None,
                format!("sign-in page for {} asking {}", pending.client.name, pending.scopes.join(" ")),
            );
            let mut response = pages::sign_in(&pending, None);
            let secure = if base.starts_with("https://") { "; Secure" } else { "" };
            let cookie = format!(
                "{BROWSER_COOKIE}={}; Path={AUTHORIZE_PATH}; HttpOnly; SameSite=Strict; Max-Age=600{secure}",
                pending.browser
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => authorize_refused(&slot, &client, &error),
    }
}

async fn authorize_step(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let slot = slot(&parts);
    let Some((security, server)) = authorization_server(&state) else { return not_offered() };
    let form = match read_form(&state, &parts.headers, body).await {
        Ok(form) => form,
        Err(error) => return pages::refusal(&error.description),
    };
    let field = |name: &str| form.get(name).map(String::as_str);
    let browser = crate::workbench::cookie_value(&parts.headers, BROWSER_COOKIE);
    let Some(pending) = field("request").and_then(|id| server.pending(id, browser.as_deref())) else {
        note(
            &slot,
            "oauth-authorize",
            "authorize".into(),
            None,
            "refused: no such sign-in in progress".into(),
        );
        return pages::refusal(
            "This sign-in has expired or was started in another browser. Go back to the app and start again.",
        );
    };
    let client = pending.client.id.clone();
    // After the sign-in: a patient search in the picker, or the user's decision.
    if let Some((name, ..)) = &pending.user {
        let subject = format!("authorize {client} for {name}");
        let decision = field("decision");
        let patient = field("patient").map(str::to_string).filter(|p| !p.is_empty());
        if field("search").is_some() || decision.is_none() {
            if pending.needs_patient_picked() {
                return picker(&state, &parts, &slot, &pending, field("name"), None).await;
            }
            return pages::consent(&pending, &[], None);
        }
        let approve = decision == Some("approve");
        if approve && pending.needs_patient_picked() {
            // The patient must be one the user may see: read through the API as them.
            let visible = match &patient {
                Some(id) if fhir::is_valid_id(id) => {
                    read_as(&state, &parts, &user_identity(&pending), &format!("Patient/{id}")).await == 200
                }
                _ => false,
            };
            if !visible {
                return picker(
                    &state,
                    &parts,
                    &slot,
                    &pending,
                    field("name"),
                    Some("Pick a patient from the list."),
                )
                .await;
            }
        }
        return match server.decide(&pending, approve, patient.as_deref()) {
            Ok(location) => {
                let granted = pending.grant.as_ref().map(|g| g.scopes.join(" ")).unwrap_or_default();
                let patient = patient.or_else(|| pending.grant.as_ref().and_then(|g| g.patient.clone()));
                note(
                    &slot,
                    "oauth-authorize",
                    subject,
                    patient.as_deref(),
                    format!("granted {granted} to {} (code issued)", pending.client.name),
                );
                redirect(&location)
            }
            Err(error) => {
                note(&slot, "oauth-authorize", subject, None, format!("refused: {}", error.description()));
                match error.location() {
                    Some(location) => redirect(&location),
                    None => pages::refusal(error.description()),
                }
            }
        };
    }
    // Step 1: the sign-in.
    let name = field("username").unwrap_or("").trim().to_string();
    let password = field("password").unwrap_or("");
    let users = &security.users;
    let outcome = {
        let (server, pending, name, password) = (server, pending.clone(), name.clone(), password.to_string());
        // PBKDF2 takes a noticeable fraction of a second: off the async workers.
        tokio::task::block_in_place(|| server.sign_in(users, &pending, &name, &password))
    };
    match outcome {
        Ok(Ok(signed_in)) => {
            slot.set_identity(user_identity(&signed_in));
            note(
                &slot,
                "oauth-sign-in",
                format!("authorize {client}"),
                None,
                format!("{name} signed in for {}", signed_in.client.name),
            );
            if signed_in.needs_patient_picked() {
                return picker(&state, &parts, &slot, &signed_in, None, None).await;
            }
            pages::consent(&signed_in, &[], None)
        }
        Ok(Err(message)) => {
            note(
                &slot,
                "oauth-sign-in",
                format!("authorize {client}"),
                None,
                format!("refused: sign-in as {name:?}: {message}"),
            );
            let mut response = pages::sign_in(&pending, Some(&message));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
        Err(error) => authorize_refused(&slot, &client, &error),
    }
}

/// The identity the signed-in user has in the API (their role's scopes).
fn user_identity(pending: &Pending) -> Identity {
    match &pending.user {
        Some((name, role, patient, fhir_user)) => Identity {
            user: name.clone(),
            role: *role,
            patient: patient.clone(),
            scopes: role.scopes(),
            fhir_user: fhir_user.clone(),
        },
        None => Identity::unauthenticated(),
    }
}

/// Runs a GET through the API as `identity`; the status.
async fn read_as(state: &AppState, parts: &Parts, identity: &Identity, path: &str) -> u16 {
    let Ok(base) = edge::base_url(&state.config, &parts.headers) else { return 400 };
    let request = api::Request {
        method: Some(Method::Get),
        base,
        path: path.to_string(),
        caller: Some(Arc::new(api::Caller { identity: identity.clone(), purpose: None, break_glass: None })),
        ..Default::default()
    };
    state.api.handle(&request).await.status
}

/// The consent page with the patient picker: patients the user may see, found by name
/// through the API as the user (the patients shown go into the audit entry).
async fn picker(
    state: &AppState,
    parts: &Parts,
    slot: &Slot,
    pending: &Pending,
    name: Option<&str>,
    message: Option<&str>,
) -> Response {
    let identity = user_identity(pending);
    // Built apart: the serializer is not Send, and must not live across an await.
    let query = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("_count", "50").append_pair("_sort", "family,given");
        if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) {
            query.append_pair("name", name);
        }
        query.finish()
    };
    let Ok(base) = edge::base_url(&state.config, &parts.headers) else {
        return pages::refusal("the request's Host is not usable");
    };
    let request = api::Request {
        method: Some(Method::Get),
        base,
        path: "Patient".into(),
        query,
        caller: Some(Arc::new(api::Caller { identity, purpose: None, break_glass: None })),
        ..Default::default()
    };
    let mut response = state.api.handle(&request).await;
    let mut patients = Vec::new();
    if response.status == 200
        && let Some(body) = &response.body
        && let Ok(bundle) = serde_json::from_slice::<Value>(body)
    {
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let resource = &entry["resource"];
            let Some(id) = resource["id"].as_str() else { continue };
            patients.push(pages::PatientChoice {
                id: id.to_string(),
                name: web::chart::patient_name(resource),
                birth_date: resource["birthDate"].as_str().unwrap_or("").to_string(),
            });
        }
    }
    let mut audited = std::mem::take(&mut response.audit);
    audited.interaction = "oauth-patient-picker";
    slot.set_audited(audited);
    slot.refused_because(Some(format!("patient picker shown for {}", pending.client.name)));
    pages::consent(pending, &patients, message)
}

// ---- the token, introspection, revocation and launch endpoints -------------------------

async fn read_form(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Form, OAuthError> {
    let invalid = |why: String| OAuthError { status: 400, error: "invalid_request", description: why };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(edge::media_type);
    if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(invalid("send the parameters as application/x-www-form-urlencoded".into()));
    }
    let config = crate::ServerConfig { max_body_bytes: 64 * 1024, ..state.config.clone() };
    let body = edge::read_body(&config, headers, body)
        .await
        .map_err(|_| invalid("the form is too large or did not arrive".into()))?;
    let text = std::str::from_utf8(&body).map_err(|_| invalid("the form is not UTF-8".into()))?;
    query_pairs(text).map_err(invalid)
}

fn endpoint(base: &str, path: &str) -> String {
    format!("{}{path}", root_of(base))
}

/// What the token, introspection and revocation endpoints each start from: the audit slot,
/// the authorization server, the FHIR base and the posted form; the answer to give instead
/// when there is none (a form that cannot be read is recorded as `interaction`'s refusal).
struct Posted<'a> {
    slot: Arc<Slot>,
    security: &'a Security,
    server: &'a AuthorizationServer,
    base: String,
    form: Form,
}

async fn posted<'a>(
    state: &'a AppState,
    parts: &Parts,
    body: Body,
    interaction: &'static str,
) -> Result<Posted<'a>, Response> {
    let slot = slot(parts);
    let Some((security, server)) = authorization_server(state) else { return Err(not_offered()) };
    let base = base(state, &parts.headers).map_err(edge::Refusal::into_response)?;
    let form = read_form(state, &parts.headers, body).await.map_err(|error| {
        note(
            &slot,
            interaction,
            interaction.trim_start_matches("oauth-").into(),
            None,
            format!("refused: {}: {}", error.error, error.description),
        );
        oauth_error(&error)
    })?;
    Ok(Posted { slot, security, server, base, form })
}

async fn token(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let Posted { slot, security, server, base, form } =
        match posted(&state, &parts, body, "oauth-token").await {
            Ok(posted) => posted,
            Err(response) => return response,
        };
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    match server.token(&security.users, &form, &endpoint(&base, TOKEN_PATH), &base) {
        Ok(issued) => {
            note(
                &slot,
                "oauth-token",
                format!("token {} ({grant_type})", issued.client_id),
                issued.patient.as_deref(),
                format!("issued {} to {} for {}", issued.scope, issued.client_id, issued.subject),
            );
            json_response(200, &issued.body)
        }
        Err(error) => {
            let client = form.get("client_id").cloned().unwrap_or_default();
            note(
                &slot,
                "oauth-token",
                format!("token {client} ({grant_type})").replace("  ", " "),
                None,
                format!("refused: {}: {}", error.error, error.description),
            );
            oauth_error(&error)
        }
    }
}

/// Who calls introspection: a bearer token of this server (an API token or an access token),
/// or a registered client authenticating as at the token endpoint.
fn introspection_caller(
    security: &Security,
    server: &AuthorizationServer,
    headers: &HeaderMap,
    form: &Form,
    token_endpoint: &str,
) -> Result<String, OAuthError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    if let Some(bearer) = bearer {
        return match security.authenticate(bearer.trim()) {
            Ok(Some(identity)) => Ok(identity.user),
            _ => Err(OAuthError {
                status: 401,
                error: "invalid_token",
                description: "the bearer token is not valid".into(),
            }),
        };
    }
    if form.contains_key("client_assertion") {
        return server.authenticate_client(form, token_endpoint).map(|client| client.id);
    }
    Err(OAuthError {
        status: 401,
        error: "invalid_client",
        description: "introspection needs a bearer token or a client assertion".into(),
    })
}

async fn introspect(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let Posted { slot, security, server, base, form } =
        match posted(&state, &parts, body, "oauth-introspect").await {
            Ok(posted) => posted,
            Err(response) => return response,
        };
    let caller =
        match introspection_caller(security, server, &parts.headers, &form, &endpoint(&base, TOKEN_PATH)) {
            Ok(caller) => caller,
            Err(error) => {
                note(
                    &slot,
                    "oauth-introspect",
                    "introspect".into(),
                    None,
                    format!("refused: {}: {}", error.error, error.description),
                );
                return oauth_error(&error);
            }
        };
    let Some(token) = form.get("token") else {
        return oauth_error(&OAuthError {
            status: 400,
            error: "invalid_request",
            description: "token is missing".into(),
        });
    };
    let answer = server.introspect(&security.users, token);
    note(
        &slot,
        "oauth-introspect",
        format!("introspect by {caller}"),
        answer["patient"].as_str(),
        format!("token {}", if answer["active"] == true { "active" } else { "inactive" }),
    );
    json_response(200, &answer)
}

async fn revoke(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let Posted { slot, server, base, form, .. } = match posted(&state, &parts, body, "oauth-revoke").await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    match server.revoke(&form, &endpoint(&base, TOKEN_PATH)) {
        Ok(revoked) => {
            let client = form.get("client_id").cloned().unwrap_or_default();
            note(
                &slot,
                "oauth-revoke",
                format!("revoke {client}"),
                None,
                format!("token {}", if revoked { "revoked" } else { "not one of the client's" }),
            );
            // RFC 7009 §2.2: the same answer whether or not the token was known.
            json_response(200, &json!({}))
        }
        Err(error) => {
            note(
                &slot,
                "oauth-revoke",
                "revoke".into(),
                None,
                format!("refused: {}: {}", error.error, error.description),
            );
            oauth_error(&error)
        }
    }
}

/// Opens an EHR launch: staff (by bearer token) name the patient (and encounter) an app they
/// open is to be given; the answer's `launch` goes to the app's launch URL.
async fn launch(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let slot = slot(&parts);
    let Some((security, server)) = authorization_server(&state) else { return not_offered() };
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let identity = match bearer.map(|token| security.authenticate(token.trim())) {
        Some(Ok(Some(identity))) => identity,
        _ => {
            note(&slot, "oauth-launch", "launch".into(), None, "refused: no valid bearer token".into());
            return oauth_error(&OAuthError {
                status: 401,
                error: "invalid_token",
                description: "send the staff member's bearer token".into(),
            });
        }
    };
    slot.set_identity(identity.clone());
    let form = match read_form(&state, &parts.headers, body).await {
        Ok(form) => form,
        Err(error) => return oauth_error(&error),
    };
    let patient = form.get("patient").map(String::as_str);
    if let Some(patient) = patient
        && (!fhir::is_valid_id(patient)
            || read_as(&state, &parts, &identity, &format!("Patient/{patient}")).await != 200)
    {
        note(
            &slot,
            "oauth-launch",
            "launch".into(),
            Some(patient),
            "refused: the patient is not one the user may see".into(),
        );
        return oauth_error(&OAuthError {
            status: 400,
            error: "invalid_request",
            description: format!("Patient/{patient} is not one you may see"),
        });
    }
    match server.open_launch(&identity, patient, form.get("encounter").map(String::as_str)) {
        Ok(id) => {
            note(
                &slot,
                "oauth-launch",
                "launch".into(),
                patient,
                format!("launch opened by {}", identity.user),
            );
            json_response(200, &json!({ "launch": id, "expires_in": 300 }))
        }
        Err(error) => {
            note(&slot, "oauth-launch", "launch".into(), patient, format!("refused: {}", error.description));
            let status = if identity.role == Role::Patient { 403 } else { error.status };
            oauth_error(&OAuthError { status, ..error })
        }
    }
}
