//! The HIM workbench at `/`: sign-in and sessions, and each page's handler. A page asks the
//! FHIR API what it shows, as the signed-in user (`Api::handle` with their identity), so the
//! one policy decides what they may see and the page's audit entry names the patients whose
//! records it showed, as the API's would; `web` renders the answers. Nothing here decides
//! access: an area is offered when `Api::permits` says the API would take its route.
//!
//! Sessions: a random id in an HttpOnly SameSite=Strict cookie (only its hash is kept, in
//! memory), 30 minutes idle and 12 hours at most; every form that changes something carries
//! the session's CSRF token, and the sign-in form a token doubled in a cookie. Every page is
//! `no-store`, not framable, and under a Content-Security-Policy with no inline script.

// A page's way out is its response, returned at once by the handler: boxing it to make the
// `Err` of `visit` smaller would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use api::{Audited, Method};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use privacy::{Identity, Role};
use serde_json::{Value, json};
use web::Area;

use crate::audit::Slot;
use crate::{AppState, edge};

mod amendments;
mod completion;
mod duplicates;
mod interfaces;
mod requests;
mod retention;

const SESSION_COOKIE: &str = "chartroom_session";
const SIGN_IN_COOKIE: &str = "chartroom_signin";
const IDLE_SECONDS: u64 = 30 * 60;
const MOST_SECONDS: u64 = 12 * 3600;
const MOST_SESSIONS: usize = 100_000;

/// A signed-in user.
#[derive(Clone)]
pub(crate) struct Session {
    identity: Identity,
    csrf: String,
    created: Instant,
    seen: Instant,
}

/// The sessions of a running server, and what pages keep a while because it reads the whole
/// record: the administration page's counts, each user's last data-quality report.
#[derive(Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, Session>>,
    counts: Mutex<Option<Counted>>,
    /// By user: the report is theirs, computed through the API as them.
    quality: Mutex<HashMap<String, (Instant, Value)>>,
    /// The access review's findings, kept as long (it reads the trail and the patients).
    review: Mutex<Option<(Instant, Vec<privacy::monitor::Finding>)>>,
}

/// How long a data-quality report is shown before it is run again (a run reads every
/// resource; "Run now" runs it at once).
const QUALITY_SECONDS: u64 = 600;

/// Resources by type, and when they were counted.
type Counted = (Instant, Vec<(String, u64)>);

/// How long the resource counts on the administration page are kept.
const COUNTS_SECONDS: u64 = 60;

fn random_token() -> String {
    // Without randomness no session can be made; an empty token is refused by every check.
    privacy::secret::random_text(32).unwrap_or_default()
}

fn hash(token: &str) -> String {
    privacy::secret::sha256_hex(token)
}

/// A token the visitor sent against the session's: never equal when empty.
fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && privacy::secret::constant_time_eq(a.as_bytes(), b.as_bytes())
}

impl Sessions {
    fn open(&self, identity: Identity) -> Option<(String, Session)> {
        let token = random_token();
        if token.is_empty() {
            return None;
        }
        let now = Instant::now();
        let session = Session { identity, csrf: random_token(), created: now, seen: now };
        let mut all = self.open.lock().ok()?;
        all.retain(|_, s| {
            s.seen.elapsed().as_secs() < IDLE_SECONDS && s.created.elapsed().as_secs() < MOST_SECONDS
        });
        if all.len() >= MOST_SESSIONS {
            return None;
        }
        all.insert(hash(&token), session.clone());
        Some((token, session))
    }

    fn find(&self, token: &str) -> Option<Session> {
        let mut all = self.open.lock().ok()?;
        let key = hash(token);
        let session = all.get_mut(&key)?;
        if session.seen.elapsed().as_secs() >= IDLE_SECONDS
            || session.created.elapsed().as_secs() >= MOST_SECONDS
        {
            all.remove(&key);
            return None;
        }
        session.seen = Instant::now();
        Some(session.clone())
    }

    fn close(&self, token: &str) {
        if let Ok(mut all) = self.open.lock() {
            all.remove(&hash(token));
        }
    }
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(home))
        .route(web::STYLESHEET_PATH, get(stylesheet))
        .route("/signin", get(sign_in_page).post(sign_in))
        .route("/signout", post(sign_out))
        .route("/patients", get(patients))
        .route("/patients/{id}", get(chart))
        .route("/patients/{id}/history/{kind}/{rid}", get(history))
        .route("/patients/{id}/viewers", get(viewers))
        .route("/privacy", get(|| async { see_other("/privacy/audit") }))
        .route("/privacy/audit", get(audit))
        .route("/privacy/disclosures", get(disclosures))
        .route("/privacy/verify", post(verify))
        .route("/privacy/monitor", get(monitor))
        .route("/privacy/monitor/run", post(monitor_run))
        .route("/quality", get(quality))
        .route("/quality/run", post(quality_run))
        .route("/quality/{check}", get(quality_check))
        .route("/records/{kind}/{id}", get(record))
        .route("/duplicates", get(duplicates::queue))
        .route("/duplicates/decide", post(duplicates::decide))
        .route("/duplicates/merge", get(duplicates::merge_form).post(duplicates::merge))
        .route("/duplicates/unmerge", post(duplicates::unmerge))
        .route("/coding", get(worklist))
        .route("/coding/encounters/{id}", get(encounter).post(assign))
        .route("/coding/billing", get(billing_audit))
        .route("/requests", get(requests::list).post(requests::intake))
        .route("/requests/amendments", get(amendments::list).post(amendments::intake))
        .route("/requests/amendments/{id}/{action}", post(amendments::act))
        .route("/retention", get(retention::show))
        .route("/retention/holds", post(retention::place))
        .route("/retention/holds/{id}/release", post(retention::release))
        .route("/retention/purge", post(retention::purge))
        .route("/interfaces", get(interfaces::show))
        .route("/interfaces/hl7v2", post(interfaces::message))
        .route("/interfaces/extract", post(interfaces::extract))
        .route("/interfaces/import", post(interfaces::import))
        .route("/interfaces/{kind}/{job}", get(interfaces::job))
        .route("/completion", get(completion::report))
        .route("/completion/scan", post(completion::scan))
        .route("/requests/{id}/extend", post(requests::extend))
        .route("/requests/{id}/release", post(requests::release))
        .route("/analytics", get(analytics))
        .route("/analytics/sql", get(sql))
        .route("/analytics/surveillance", get(surveillance))
        .route("/analytics/cohort", get(cohort_form).post(cohort_compare))
        .route("/analytics/high-risk", get(high_risk))
        .route("/analytics/operations", get(operations_report))
        .route("/analytics/views/{name}", get(view_rows))
        .route("/analytics/views/{name}/download", get(view_download))
        .route("/admin", get(admin))
}

// ---- responses ------------------------------------------------------------------------------

/// An HTML page with the headers every workbench page carries.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(headers);
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    // Pages show patient data: never kept by the browser or a proxy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    secure_headers(response.headers_mut());
    response
}

fn cookie(name: &str, value: &str, max_age: u64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// The value of cookie `name` in the request (the workbench's session, the authorization
/// server's browser binding).
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|cookies| {
        cookies.split(';').find_map(|c| {
            let (n, v) = c.trim().split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    })
}

fn is_https(state: &AppState, headers: &HeaderMap) -> bool {
    edge::base_url(&state.config, headers).is_ok_and(|b| b.starts_with("https://"))
}

fn slot(parts: &Parts) -> Arc<Slot> {
    parts.extensions.get::<Arc<Slot>>().cloned().unwrap_or_default()
}

/// Records a change made from a page, as the API's audit entry describes it.
fn record_change(
    visit: &Visit,
    interaction: &'static str,
    subject: String,
    patients: Vec<String>,
    answer: &api::Response,
) {
    visit.slot.set_audited(Audited {
        interaction,
        action: "U",
        subject,
        patients,
        written: answer.audit.written.clone(),
        disclosure: answer.audit.disclosure.clone(),
    });
}

/// Records what a page was and whose records it showed, for its audit entry.
fn note(
    slot: &Slot,
    interaction: &'static str,
    action: &'static str,
    subject: String,
    patients: Vec<String>,
) {
    let mut unique: Vec<String> = Vec::new();
    for patient in patients {
        if !unique.contains(&patient) {
            unique.push(patient);
        }
    }
    slot.set_audited(Audited {
        interaction,
        action,
        subject,
        patients: unique,
        written: Vec::new(),
        disclosure: None,
    });
}

/// Records a page that changed the record: its audit entry also names every version written.
fn note_change(
    slot: &Slot,
    interaction: &'static str,
    subject: String,
    patients: Vec<String>,
    written: Vec<String>,
) {
    let mut unique: Vec<String> = Vec::new();
    for patient in patients {
        if !unique.contains(&patient) {
            unique.push(patient);
        }
    }
    slot.set_audited(Audited {
        interaction,
        action: "U",
        subject,
        patients: unique,
        written,
        disclosure: None,
    });
}

// ---- who is asking ----------------------------------------------------------------------------

/// The signed-in user of a request, with the frame's facts.
struct Visit {
    session: Session,
    areas: Vec<Area>,
    slot: Arc<Slot>,
    base: String,
}

impl Visit {
    fn viewer(&self, current: Area) -> web::Viewer<'_> {
        web::Viewer {
            user: &self.session.identity.user,
            role: self.session.identity.role.as_str(),
            areas: &self.areas,
            csrf: &self.session.csrf,
            current,
        }
    }

    fn identity(&self) -> &Identity {
        &self.session.identity
    }

    /// A refusal page for an area the role may not use.
    fn refused(&self, current: Area, why: &str) -> Response {
        self.slot.refused_because(Some(why.to_string()));
        html(StatusCode::FORBIDDEN, web::not_permitted(Some(&self.viewer(current)), why))
    }
}

/// The areas whose route the policy opens to `identity`.
fn areas(identity: &Identity) -> Vec<Area> {
    let permits = |path: &str| api::Api::permits(identity, Method::Get, path, "");
    Area::ALL
        .into_iter()
        .filter(|area| match area {
            Area::Home => true,
            Area::Patients => permits("Patient"),
            Area::Duplicates => permits("Patient/$duplicates"),
            Area::Coding => permits("$coding-worklist"),
            Area::Requests => permits("$roi-overdue"),
            Area::Completion => permits("Task/$completion-report"),
            Area::Retention => permits("$retention-report"),
            Area::Interfaces => permits("$import-status"),
            Area::Quality => permits("$data-quality"),
            Area::Privacy => permits("AuditEvent"),
            Area::Analytics => permits("ViewDefinition"),
            Area::Admin => privacy::policy::administers(identity),
        })
        .collect()
}

/// The session of the request, or the way to sign in.
fn visit(state: &AppState, parts: &Parts) -> Result<Visit, Response> {
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let to_sign_in = || {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("next", path_and_query);
        see_other(&format!("/signin?{}", query.finish()))
    };
    let Some(security) = &state.config.security else { return Err(to_sign_in()) };
    let Some(session) = cookie_value(&parts.headers, SESSION_COOKIE).and_then(|t| state.sessions.find(&t))
    else {
        // Served without authentication (`--insecure-no-auth`, the demo), the workbench acts
        // as the API does: an anonymous administrator, in a session of its own (for the
        // forms' CSRF tokens), made here and used from the next request on.
        if !state.config.require_auth
            && let Some((token, _)) = state.sessions.open(Identity::anonymous_admin())
        {
            let mut again = see_other(path_and_query);
            if let Some(value) = cookie(SESSION_COOKIE, &token, MOST_SECONDS, is_https(state, &parts.headers))
            {
                again.headers_mut().insert(header::SET_COOKIE, value);
            }
            return Err(again);
        }
        return Err(to_sign_in());
    };
    // A user removed since signing in is signed out.
    let user = &session.identity.user;
    if !user.starts_with("jwt:")
        && session.identity.user != "anonymous"
        && !security.users.is_active(user).unwrap_or(false)
    {
        return Err(to_sign_in());
    }
    let slot = slot(parts);
    slot.set_identity(session.identity.clone());
    let base = edge::base_url(&state.config, &parts.headers).unwrap_or_default();
    Ok(Visit { areas: areas(&session.identity), session, slot, base })
}

/// A request a page makes of the API.
struct Call<'a> {
    method: Method,
    path: &'a str,
    query: &'a str,
    body: Option<Vec<u8>>,
    accept: Option<&'a str>,
    /// `Prefer` (`respond-async` for a Bulk Data kick-off).
    prefer: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn get(path: &'a str, query: &'a str) -> Call<'a> {
        Call { method: Method::Get, path, query, body: None, accept: None, prefer: None }
    }

    fn post(path: &'a str, body: Vec<u8>) -> Call<'a> {
        Call { method: Method::Post, path, query: "", body: Some(body), accept: None, prefer: None }
    }

    fn accept(self, accept: &'a str) -> Call<'a> {
        Call { accept: Some(accept), ..self }
    }

    fn prefer(self, prefer: &'a str) -> Call<'a> {
        Call { prefer: Some(prefer), ..self }
    }
}

/// Asks the API as the visitor; the patients its answer carried join the page's audit.
async fn ask(state: &AppState, visit: &Visit, call: Call<'_>, patients: &mut Vec<String>) -> api::Response {
    let request = api::Request {
        method: Some(call.method),
        base: visit.base.clone(),
        path: call.path.to_string(),
        query: call.query.to_string(),
        accept: call.accept.map(str::to_string),
        prefer: call.prefer.map(str::to_string),
        content_type: call.body.as_ref().map(|_| "application/fhir+json".to_string()),
        body: call.body.unwrap_or_default(),
        caller: Some(Arc::new(api::Caller {
            identity: visit.session.identity.clone(),
            purpose: None,
            break_glass: None,
        })),
        ..Default::default()
    };
    let response = crate::run(state, &request).await;
    patients.extend(response.audit.patients.iter().cloned());
    response
}

/// A page that shows one API answer: the visit (refused when the area is not the role's),
/// the answer as JSON, and the page's audit entry; the page for a refused or failed answer.
async fn one_answer(
    state: &AppState,
    parts: &Parts,
    area: Area,
    interaction: &'static str,
    call: Call<'_>,
) -> Result<(Visit, Value), Response> {
    let visit = visit_area(state, parts, area)?;
    let mut patients = Vec::new();
    let subject = call.path.to_string();
    let response = ask(state, &visit, call, &mut patients).await;
    note(&visit.slot, interaction, "R", subject, patients);
    if response.status != 200 {
        return Err(failed(&visit, area, &response));
    }
    let answer = body_json(&response);
    Ok((visit, answer))
}

fn body_json(response: &api::Response) -> Value {
    response.body.as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null)
}

fn outcome_message(response: &api::Response) -> String {
    let outcome = body_json(response);
    outcome["issue"][0]["diagnostics"].as_str().unwrap_or("the request was refused").to_string()
}

/// The page for an API answer that is not a success: refused, not found, or bad.
fn failed(visit: &Visit, current: Area, response: &api::Response) -> Response {
    let why = outcome_message(response);
    match response.status {
        401 | 403 => visit.refused(current, &why),
        404 | 410 => html(StatusCode::NOT_FOUND, web::not_found(Some(&visit.viewer(current)), &why)),
        _ => html(
            StatusCode::BAD_REQUEST,
            web::message(
                &visit.viewer(current),
                "Could not be shown",
                false,
                &why,
                ("/", "Back to the workbench"),
            ),
        ),
    }
}

fn query_map(parts: &Parts) -> HashMap<String, String> {
    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect()
}

async fn read_form(state: &AppState, headers: &HeaderMap, body: Body) -> Option<HashMap<String, String>> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(edge::media_type);
    if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return None;
    }
    let config = crate::ServerConfig { max_body_bytes: 64 * 1024, ..state.config.clone() };
    let bytes = edge::read_body(&config, headers, body).await.ok()?;
    Some(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// The form of a signed-in visitor, if its CSRF token is the session's.
async fn checked_form(
    state: &AppState,
    visit: &Visit,
    headers: &HeaderMap,
    body: Body,
) -> Result<HashMap<String, String>, Response> {
    match read_form(state, headers, body).await {
        Some(form) if form.get("csrf").is_some_and(|t| same(t, &visit.session.csrf)) => Ok(form),
        _ => {
            visit.slot.refused_because(Some("refused: the form's CSRF token is missing or wrong".into()));
            Err(html(
                StatusCode::FORBIDDEN,
                web::not_permitted(
                    Some(&visit.viewer(Area::Home)),
                    "This form was not sent from the workbench page it belongs to (its CSRF token is missing or wrong). Reload the page and try again.",
                ),
            ))
        }
    }
}

// ---- sign-in ----------------------------------------------------------------------------------

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        web::STYLESHEET,
    )
        .into_response()
}

/// Where to go after signing in: a path of this site only (never `//host`).
fn local_next(next: Option<&String>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next.clone()
        }
        _ => "/".to_string(),
    }
}

async fn sign_in_page(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let query = query_map(&parts);
    sign_in_form(&state, &parts.headers, &local_next(query.get("next")), None, StatusCode::OK)
}

fn sign_in_form(
    state: &AppState,
    headers: &HeaderMap,
    next: &str,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let token = random_token();
    let mut response = html(status, web::sign_in(&token, next, message));
    if let Some(value) = cookie(SIGN_IN_COOKIE, &token, 600, is_https(state, headers)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn sign_in(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let slot = slot(&parts);
    let Some(security) = state.config.security.clone() else {
        return html(StatusCode::NOT_FOUND, web::not_found(None, "this server has no users"));
    };
    let form = read_form(&state, &parts.headers, body).await.unwrap_or_default();
    let next = local_next(form.get("next"));
    let doubled = cookie_value(&parts.headers, SIGN_IN_COOKIE).unwrap_or_default();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let refuse = |why: &str, status: StatusCode| {
        slot.refused_because(Some(format!("refused: workbench sign-in: {why}")));
        note(&slot, "workbench-sign-in", "E", "signin".into(), Vec::new());
        sign_in_form(&state, &parts.headers, &next, Some(why), status)
    };
    if !same(field("csrf"), &doubled) {
        return refuse("the sign-in form expired; try again", StatusCode::FORBIDDEN);
    }
    let identity = if !field("token").is_empty() {
        match security.authenticate(field("token").trim()) {
            Ok(Some(identity)) => identity,
            _ => return refuse("the API token is not valid", StatusCode::UNAUTHORIZED),
        }
    } else {
        let Some(server) = security.oauth.as_deref() else {
            return refuse("passwords are not accepted here; use an API token", StatusCode::UNAUTHORIZED);
        };
        let (name, password) = (field("username").to_string(), field("password").to_string());
        let checked =
            tokio::task::block_in_place(|| server.check_password(&security.users, &name, &password));
        match checked {
            Ok(Ok((user, role, patient, fhir_user))) => {
                Identity { scopes: role.scopes(), user, role, patient, fhir_user }
            }
            Ok(Err(message)) => return refuse(&message, StatusCode::UNAUTHORIZED),
            Err(_) => return refuse("the user table is unavailable", StatusCode::SERVICE_UNAVAILABLE),
        }
    };
    if privacy::policy::confinement(&identity).is_err() {
        return refuse("this account names no patient", StatusCode::FORBIDDEN);
    }
    let Some((token, session)) = state.sessions.open(identity) else {
        return refuse("no session could be opened; try again", StatusCode::SERVICE_UNAVAILABLE);
    };
    slot.set_identity(session.identity.clone());
    slot.refused_because(Some(format!("{} signed in to the workbench", session.identity.user)));
    note(&slot, "workbench-sign-in", "E", "signin".into(), Vec::new());
    let mut response = see_other(&next);
    let secure = is_https(&state, &parts.headers);
    if let Some(value) = cookie(SESSION_COOKIE, &token, MOST_SECONDS, secure) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    if let Some(value) = cookie(SIGN_IN_COOKIE, "", 0, secure) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn sign_out(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit(&state, &parts) {
        Ok(visit) => visit,
        Err(_) => return see_other("/signin"),
    };
    if let Err(refused) = checked_form(&state, &visit, &parts.headers, body).await {
        return refused;
    }
    if let Some(token) = cookie_value(&parts.headers, SESSION_COOKIE) {
        state.sessions.close(&token);
    }
    visit.slot.refused_because(Some(format!("{} signed out", visit.identity().user)));
    note(&visit.slot, "workbench-sign-out", "E", "signout".into(), Vec::new());
    let mut response = see_other("/signin");
    if let Some(value) = cookie(SESSION_COOKIE, "", 0, is_https(&state, &parts.headers)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn home(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit(&state, &parts) {
        Ok(visit) => visit,
        Err(to_sign_in) => return to_sign_in,
    };
    note(&visit.slot, "workbench-home", "R", "home".into(), Vec::new());
    html(StatusCode::OK, web::home(&visit.viewer(Area::Home)))
}

/// The visit, when its role may use `area`.
fn visit_area(state: &AppState, parts: &Parts, area: Area) -> Result<Visit, Response> {
    let visit = visit(state, parts)?;
    if !visit.areas.contains(&area) {
        note(&visit.slot, "workbench-page", "R", parts.uri.path().to_string(), Vec::new());
        return Err(visit.refused(
            area,
            &format!("The {} role may not use {}.", visit.identity().role.as_str(), area.label()),
        ));
    }
    Ok(visit)
}

// ---- patients ---------------------------------------------------------------------------------

async fn patients(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Patients) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let query = query_map(&parts);
    let form = web::chart::PatientQuery {
        name: query.get("name").cloned().unwrap_or_default(),
        birthdate: query.get("birthdate").cloned().unwrap_or_default(),
        identifier: query.get("identifier").cloned().unwrap_or_default(),
    };
    let mut patients = Vec::new();
    let asked = !(form.name.is_empty() && form.birthdate.is_empty() && form.identifier.is_empty());
    // A patient's own search is their record; staff see results once they search.
    let search = asked || visit.identity().role == Role::Patient;
    let mut results = None;
    let mut problem = None;
    if search {
        // Built apart: the serializer is not Send, and must not live across an await.
        let fhir_query = {
            let mut fhir_query = form_urlencoded::Serializer::new(String::new());
            fhir_query.append_pair("_count", "50").append_pair("_sort", "family,given");
            for (name, value) in
                [("name", &form.name), ("birthdate", &form.birthdate), ("identifier", &form.identifier)]
            {
                if !value.trim().is_empty() {
                    fhir_query.append_pair(name, value.trim());
                }
            }
            fhir_query.finish()
        };
        let response = ask(&state, &visit, Call::get("Patient", &fhir_query), &mut patients).await;
        if response.status == 200 {
            let bundle = body_json(&response);
            results = Some(
                bundle["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"].clone())
                    .collect::<Vec<_>>(),
            );
        } else {
            problem = Some(outcome_message(&response));
        }
    }
    note(&visit.slot, "workbench-patient-search", "R", "patients".into(), patients);
    html(
        StatusCode::OK,
        web::chart::search(&visit.viewer(Area::Patients), &form, results.as_deref(), problem.as_deref()),
    )
}

async fn chart(State(state): State<Arc<AppState>>, Path(id): Path<String>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Patients) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let mut patients = Vec::new();
    let path = format!("Patient/{id}");
    let read = ask(&state, &visit, Call::get(&path, ""), &mut patients).await;
    if read.status != 200 {
        note(&visit.slot, "workbench-chart", "R", path, vec![format!("Patient/{id}")]);
        return failed(&visit, Area::Patients, &read);
    }
    let patient = body_json(&read);
    let everything =
        ask(&state, &visit, Call::get(&format!("Patient/{id}/$everything"), "_count=1000"), &mut patients)
            .await;
    let record: Vec<Value> = body_json(&everything)["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect();
    let comorbidity_path = format!("Patient/{id}/$comorbidity");
    let comorbidity = if api::Api::permits(visit.identity(), Method::Get, &comorbidity_path, "") {
        let answer = ask(&state, &visit, Call::get(&comorbidity_path, ""), &mut patients).await;
        (answer.status == 200).then(|| body_json(&answer))
    } else {
        None
    };
    let links = web::chart::ChartLinks {
        viewers: api::Api::permits(visit.identity(), Method::Get, &format!("Patient/{id}/$disclosures"), ""),
        coding: visit.areas.contains(&Area::Coding),
        comorbidity,
    };
    note(&visit.slot, "workbench-chart", "R", path, patients);
    html(StatusCode::OK, web::chart::chart(&visit.viewer(Area::Patients), &patient, &record, &links))
}

async fn history(
    State(state): State<Arc<AppState>>,
    Path((id, kind, rid)): Path<(String, String, String)>,
    parts: Parts,
) -> Response {
    let path = format!("{kind}/{rid}/_history");
    let (visit, answer) =
        match one_answer(&state, &parts, Area::Patients, "workbench-history", Call::get(&path, "_count=100"))
            .await
        {
            Ok(found) => found,
            Err(response) => return response,
        };
    let versions: Vec<Value> = answer["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["resource"].is_object())
        .map(|e| e["resource"].clone())
        .collect();
    html(
        StatusCode::OK,
        web::chart::history(&visit.viewer(Area::Patients), &id, &format!("{kind}/{rid}"), &versions),
    )
}

async fn viewers(State(state): State<Arc<AppState>>, Path(id): Path<String>, parts: Parts) -> Response {
    let visit = match visit(&state, &parts) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let mut patients = Vec::new();
    let response =
        ask(&state, &visit, Call::get(&format!("Patient/{id}/$disclosures"), ""), &mut patients).await;
    note(&visit.slot, "workbench-disclosures", "R", format!("Patient/{id}"), vec![format!("Patient/{id}")]);
    if response.status != 200 {
        return failed(&visit, Area::Patients, &response);
    }
    let events: Vec<Value> = body_json(&response)["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect();
    html(StatusCode::OK, web::chart::viewers(&visit.viewer(Area::Patients), &id, &events))
}

// ---- privacy ----------------------------------------------------------------------------------

async fn audit(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Privacy) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let query = query_map(&parts);
    let get = |name: &str| query.get(name).cloned().unwrap_or_default();
    let form = web::views::AuditQuery {
        user: get("user"),
        patient: get("patient"),
        from: get("from"),
        to: get("to"),
        action: get("action"),
        outcome: get("outcome"),
    };
    let fhir_query = {
        let mut fhir_query = form_urlencoded::Serializer::new(String::new());
        fhir_query.append_pair("_count", "100");
        let pairs = [
            ("agent", form.user.clone()),
            ("patient", form.patient.clone()),
            ("date", if form.from.is_empty() { String::new() } else { format!("ge{}", form.from) }),
            ("date", if form.to.is_empty() { String::new() } else { format!("le{}", form.to) }),
            ("action", form.action.clone()),
            ("outcome", form.outcome.clone()),
        ];
        for (name, value) in &pairs {
            if !value.trim().is_empty() {
                fhir_query.append_pair(name, value.trim());
            }
        }
        fhir_query.finish()
    };
    let mut patients = Vec::new();
    let response = ask(&state, &visit, Call::get("AuditEvent", &fhir_query), &mut patients).await;
    note(&visit.slot, "workbench-audit-search", "R", "AuditEvent".into(), patients);
    let (events, problem) = if response.status == 200 {
        let mut events: Vec<Value> = body_json(&response)["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"].clone())
            .collect();
        events.sort_by(|a, b| b["recorded"].as_str().cmp(&a["recorded"].as_str()));
        (Some(events), None)
    } else {
        (None, Some(outcome_message(&response)))
    };
    html(
        StatusCode::OK,
        web::views::audit(&visit.viewer(Area::Privacy), &form, events.as_deref(), problem.as_deref()),
    )
}

async fn disclosures(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    if let Err(response) = visit_area(&state, &parts, Area::Privacy) {
        return response;
    }
    let query = query_map(&parts);
    match query
        .get("patient")
        .map(|p| p.trim().trim_start_matches("Patient/"))
        .filter(|p| fhir::is_valid_id(p))
    {
        Some(patient) => see_other(&format!("/patients/{patient}/viewers")),
        None => see_other("/privacy/audit"),
    }
}

async fn verify(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Privacy) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    if let Err(refused) = checked_form(&state, &visit, &parts.headers, body).await {
        return refused;
    }
    let Some(security) = &state.config.security else { return see_other("/privacy/audit") };
    security.audit.flush();
    let data_dir = security.data_dir.clone();
    let result = tokio::task::block_in_place(|| privacy::audit::verify(&data_dir));
    let (ok, text) = match result {
        Ok(result) if result.problems.is_empty() => {
            (true, format!("{} entries checked: the chain is intact.", result.entries))
        }
        Ok(result) => (
            false,
            format!(
                "{} entries checked: {} problems: {}",
                result.entries,
                result.problems.len(),
                result.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
            ),
        ),
        Err(error) => (false, format!("the trail could not be verified: {error}")),
    };
    visit.slot.refused_because(Some(format!("audit chain verified: {text}")));
    note(&visit.slot, "workbench-audit-verify", "E", "audit".into(), Vec::new());
    html(
        StatusCode::OK,
        web::message(
            &visit.viewer(Area::Privacy),
            "Audit chain",
            ok,
            &text,
            ("/privacy/audit", "Back to the audit trail"),
        ),
    )
}

/// The access review (`chartroom audit report`): accesses worth a look, grouped by kind, user
/// and patient; `?kind=break-the-glass` is the break-the-glass review.
async fn monitor(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Privacy) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let Some(security) = &state.config.security else { return see_other("/privacy/audit") };
    security.audit.flush();
    let kind = query_map(&parts).get("kind").cloned().filter(|k| !k.is_empty());
    let data_dir = security.data_dir.clone();
    // The users of the server (its data directory's, or a PostgreSQL record's).
    let users = security.users.all();
    let store = state.api.store().clone();
    let kept = state
        .sessions
        .review
        .lock()
        .ok()
        .and_then(|kept| kept.clone())
        .filter(|(at, _)| at.elapsed().as_secs() < QUALITY_SECONDS);
    let reviewed = match kept {
        Some((_, findings)) => Ok(findings),
        None => tokio::task::block_in_place(|| -> Result<Vec<privacy::monitor::Finding>, String> {
            let trail = privacy::TrailSnapshot::open(&data_dir).map_err(|e| e.to_string())?;
            let entries = trail.entries().map_err(|e| e.to_string())?;
            let mut builder = privacy::monitor::FactsBuilder::new(&users.map_err(|e| e.to_string())?);
            drop(trail);
            for resource_type in privacy::monitor::FactsBuilder::TYPES {
                store
                    .scan_type(resource_type, None, &mut |resource_type, id, body| {
                        if let Ok(resource) = serde_json::from_slice::<Value>(body) {
                            builder.add(resource_type, id, &resource);
                        }
                        Ok(())
                    })
                    .map_err(|e| e.to_string())?;
            }
            Ok(privacy::monitor::review(&entries, &builder.finish()))
        }),
    };
    let findings = match reviewed {
        Ok(findings) => {
            if let Ok(mut kept) = state.sessions.review.lock() {
                *kept = Some((Instant::now(), findings.clone()));
            }
            findings
        }
        Err(why) => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                web::message(
                    &visit.viewer(Area::Privacy),
                    "Access review",
                    false,
                    &why,
                    ("/privacy/audit", "Back"),
                ),
            );
        }
    };
    // One row per kind, user and patient: how many accesses, first and last.
    // (kind, user, patient) → (accesses, first, last, detail)
    type Group = (usize, String, String, String);
    let mut groups: std::collections::BTreeMap<(String, String, String), Group> = Default::default();
    for finding in findings.iter().filter(|f| kind.as_deref().is_none_or(|k| f.kind.as_str() == k)) {
        let key = (
            finding.kind.as_str().to_string(),
            finding.user.clone(),
            finding.patient.clone().unwrap_or_default(),
        );
        let group = groups.entry(key).or_insert((
            0,
            finding.recorded.clone(),
            finding.recorded.clone(),
            finding.detail.clone(),
        ));
        group.0 += 1;
        if finding.recorded < group.1 {
            group.1 = finding.recorded.clone();
        }
        if finding.recorded > group.2 {
            group.2 = finding.recorded.clone();
        }
    }
    let patients: Vec<String> = groups.keys().map(|(_, _, p)| p.clone()).filter(|p| !p.is_empty()).collect();
    let rows: Vec<(String, String, String, String)> = groups
        .into_iter()
        .map(|((kind, user, patient), (count, first, last, detail))| {
            (kind, user, patient, format!("{count} accesses, {first} to {last}: {detail}"))
        })
        .collect();
    note(&visit.slot, "workbench-access-review", "R", "audit".into(), patients);
    html(StatusCode::OK, web::views::monitor(&visit.viewer(Area::Privacy), &rows, kind.as_deref()))
}

/// Reviews the trail again now (the review is otherwise kept ten minutes).
async fn monitor_run(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Privacy) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    if let Err(refused) = checked_form(&state, &visit, &parts.headers, body).await {
        return refused;
    }
    if let Ok(mut kept) = state.sessions.review.lock() {
        *kept = None;
    }
    note(&visit.slot, "workbench-access-review-run", "E", "audit".into(), Vec::new());
    see_other("/privacy/monitor")
}

// ---- data quality -----------------------------------------------------------------------------

/// The checks of a `$data-quality` answer, with each one's shares in the runs recorded.
fn checks_of(report: &Value, runs: &[quality::RunSummary]) -> Vec<web::views::CheckRow> {
    let mut rows: Vec<web::views::CheckRow> = web::views::parameter_parts(report, "check")
        .into_iter()
        .map(|part| {
            let id = part.get("id").and_then(Value::as_str).unwrap_or("").to_string();
            let percent = part.get("percent").and_then(Value::as_f64).unwrap_or(0.0);
            let examples: Vec<String> = match part.get("example") {
                Some(Value::Array(list)) => {
                    list.iter().filter_map(|e| e["reference"].as_str().map(str::to_string)).collect()
                }
                Some(one) => one["reference"].as_str().map(str::to_string).into_iter().collect(),
                None => Vec::new(),
            };
            // Shares for the chart, 0 to 1; the report's are percents.
            let mut trend: Vec<f64> =
                runs.iter().filter_map(|run| run.percent(&id)).map(|p| p / 100.0).collect();
            trend.push(percent / 100.0);
            let definition =
                quality::checks::CheckId::ALL.iter().map(|c| c.definition()).find(|d| d.id == id);
            web::views::CheckRow {
                name: part.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                description: definition.map(|d| d.description.to_string()).unwrap_or_default(),
                resource_type: definition.map(|d| d.resource_type.to_string()).unwrap_or_default(),
                numerator: part.get("numerator").and_then(Value::as_u64).unwrap_or(0),
                denominator: part.get("denominator").and_then(Value::as_u64).unwrap_or(0),
                threshold: part.get("threshold").and_then(Value::as_f64),
                passed: part.get("passed").and_then(Value::as_bool).unwrap_or(false),
                id,
                percent,
                examples,
                trend,
            }
        })
        .collect();
    rows.sort_by_key(|row| row.passed);
    rows
}

async fn quality_report(
    state: &AppState,
    visit: &Visit,
    patients: &mut Vec<String>,
) -> Result<Vec<web::views::CheckRow>, Response> {
    let user = visit.identity().user.clone();
    let kept = state
        .sessions
        .quality
        .lock()
        .ok()
        .and_then(|kept| kept.get(&user).cloned())
        .filter(|(at, _)| at.elapsed().as_secs() < QUALITY_SECONDS);
    let report = match kept {
        Some((_, report)) => report,
        None => {
            let response = ask(state, visit, Call::get("$data-quality", ""), patients).await;
            if response.status != 200 {
                return Err(failed(visit, Area::Quality, &response));
            }
            let report = body_json(&response);
            if let Ok(mut kept) = state.sessions.quality.lock() {
                kept.insert(user, (Instant::now(), report.clone()));
            }
            report
        }
    };
    let runs = state
        .config
        .security
        .as_ref()
        .and_then(|s| {
            quality::load_runs(&s.data_dir.join("store"))
                .ok()
                .or_else(|| quality::load_runs(&s.data_dir).ok())
        })
        .unwrap_or_default();
    Ok(checks_of(&report, &runs))
}

async fn quality(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Quality) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let mut patients = Vec::new();
    let checks = match quality_report(&state, &visit, &mut patients).await {
        Ok(checks) => checks,
        Err(response) => return response,
    };
    note(&visit.slot, "workbench-data-quality", "R", "$data-quality".into(), patients);
    let runs = checks.first().map_or(1, |c| c.trend.len());
    html(StatusCode::OK, web::views::quality(&visit.viewer(Area::Quality), &checks, runs))
}

/// Runs the data-quality checks again now (the report is otherwise kept ten minutes).
async fn quality_run(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Quality) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    if let Err(refused) = checked_form(&state, &visit, &parts.headers, body).await {
        return refused;
    }
    if let Ok(mut kept) = state.sessions.quality.lock() {
        kept.remove(&visit.identity().user);
    }
    note(&visit.slot, "workbench-data-quality-run", "E", "$data-quality".into(), Vec::new());
    see_other("/quality")
}

async fn quality_check(
    State(state): State<Arc<AppState>>,
    Path(check): Path<String>,
    parts: Parts,
) -> Response {
    let visit = match visit_area(&state, &parts, Area::Quality) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let mut patients = Vec::new();
    let checks = match quality_report(&state, &visit, &mut patients).await {
        Ok(checks) => checks,
        Err(response) => return response,
    };
    note(&visit.slot, "workbench-data-quality", "R", format!("$data-quality/{check}"), patients);
    let Some(row) = checks.iter().find(|c| c.id == check) else {
        return html(
            StatusCode::NOT_FOUND,
            web::not_found(Some(&visit.viewer(Area::Quality)), &format!("no data-quality check {check}")),
        );
    };
    // Each failing record opens where it can be read: the chart for a patient's, else its
    // versions under its patient when it names one.
    let links: Vec<(String, String)> = row
        .examples
        .iter()
        .map(|reference| {
            let href = match reference.split_once('/') {
                Some(("Patient", id)) => format!("/patients/{id}"),
                _ => format!("/records/{reference}"),
            };
            (reference.clone(), href)
        })
        .collect();
    html(StatusCode::OK, web::views::quality_check(&visit.viewer(Area::Quality), row, &links))
}

/// One record as stored (where a data-quality drill-down ends), read through the API.
async fn record(
    State(state): State<Arc<AppState>>,
    Path((kind, id)): Path<(String, String)>,
    parts: Parts,
) -> Response {
    let visit = match visit(&state, &parts) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let mut patients = Vec::new();
    let reference = format!("{kind}/{id}");
    let response = ask(&state, &visit, Call::get(&reference, ""), &mut patients).await;
    note(&visit.slot, "workbench-record", "R", reference.clone(), patients);
    if response.status != 200 {
        return failed(&visit, Area::Patients, &response);
    }
    let resource = body_json(&response);
    let patient = ["subject", "patient", "beneficiary"]
        .iter()
        .find_map(|field| resource[field]["reference"].as_str()?.strip_prefix("Patient/"))
        .map(str::to_string);
    html(
        StatusCode::OK,
        web::views::record(&visit.viewer(Area::Quality), &reference, &resource, patient.as_deref()),
    )
}

// ---- coding -----------------------------------------------------------------------------------

async fn worklist(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let (visit, answer) = match one_answer(
        &state,
        &parts,
        Area::Coding,
        "workbench-coding-worklist",
        Call::get("$coding-worklist", "_count=100"),
    )
    .await
    {
        Ok(found) => found,
        Err(response) => return response,
    };
    let items: Vec<web::views::WorkItem> = answer["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "item")
        .map(|item| {
            let part = |name: &str| web::views::part(item, name);
            let reasons = item["part"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["name"] == "reason")
                .map(|reason| {
                    reason["part"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| p["name"] == "message")
                        .and_then(|m| m["valueString"].as_str())
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            web::views::WorkItem {
                encounter: part("encounter")["valueReference"]["reference"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("Encounter/")
                    .to_string(),
                patient: part("patient")["valueReference"]["reference"].as_str().unwrap_or("").to_string(),
                discharged: part("discharged")["valueDateTime"].as_str().unwrap_or("").to_string(),
                class: part("class")["valueCode"].as_str().unwrap_or("").to_string(),
                reasons,
            }
        })
        .collect();
    html(StatusCode::OK, web::views::worklist(&visit.viewer(Area::Coding), &items))
}

const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

/// The coding screen's facts: the encounter, its note, suggestions, edits and coded diagnoses.
async fn encounter_page(
    state: &AppState,
    visit: &Visit,
    id: &str,
    message: Option<(bool, &str)>,
) -> Response {
    let mut patients = Vec::new();
    let path = format!("Encounter/{id}");
    let read = ask(state, visit, Call::get(&path, ""), &mut patients).await;
    if read.status != 200 {
        note(&visit.slot, "workbench-coding", "R", path, patients);
        return failed(visit, Area::Coding, &read);
    }
    let encounter = body_json(&read);
    // The note: a DocumentReference of the encounter, its text/plain attachment.
    let documents = ask(
        state,
        visit,
        Call::get("DocumentReference", &format!("encounter=Encounter/{id}&_count=5")),
        &mut patients,
    )
    .await;
    let document = body_json(&documents)["entry"][0]["resource"].clone();
    let note_text = document["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["attachment"]["data"].as_str())
        .find_map(|data| fhir::base64_decode(data).and_then(|bytes| String::from_utf8(bytes).ok()));
    let mut suggestions = Vec::new();
    if let Some(document_id) = document["id"].as_str() {
        let suggested = ask(
            state,
            visit,
            Call::get(&format!("DocumentReference/{document_id}/$suggest-codes"), "count=8"),
            &mut patients,
        )
        .await;
        for part in body_json(&suggested)["parameter"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == "suggestion")
        {
            let parts = part["part"].as_array().cloned().unwrap_or_default();
            let coding = parts
                .iter()
                .find(|p| p["name"] == "code")
                .map(|p| p["valueCoding"].clone())
                .unwrap_or(Value::Null);
            suggestions.push(web::views::Suggestion {
                code: coding["code"].as_str().unwrap_or("").to_string(),
                display: coding["display"].as_str().unwrap_or("").to_string(),
                score: parts
                    .iter()
                    .find(|p| p["name"] == "score")
                    .and_then(|p| p["valueDecimal"].as_f64())
                    .unwrap_or(0.0),
                evidence: parts
                    .iter()
                    .filter(|p| p["name"] == "evidence" || p["name"] == "matchedWord")
                    .filter_map(|p| p["valueString"].as_str().map(str::to_string))
                    .collect(),
            });
        }
    }
    let edits_answer =
        ask(state, visit, Call::get(&format!("Encounter/{id}/$coding-edits"), ""), &mut patients).await;
    let edits: Vec<String> = body_json(&edits_answer)["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["severity"] != "information")
        .filter_map(|i| i["diagnostics"].as_str().map(str::to_string))
        .collect();
    let conditions = ask(
        state,
        visit,
        Call::get("Condition", &format!("encounter=Encounter/{id}&_count=50")),
        &mut patients,
    )
    .await;
    let coded: Vec<(String, String, String)> = body_json(&conditions)["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .flat_map(|condition| {
            let reference = format!("Condition/{}", condition["id"].as_str().unwrap_or(""));
            condition["code"]["coding"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c["system"] == ICD10CM)
                .map(move |c| {
                    (
                        c["code"].as_str().unwrap_or("").to_string(),
                        c["display"].as_str().unwrap_or("").to_string(),
                        reference.clone(),
                    )
                })
        })
        .collect();
    note(&visit.slot, "workbench-coding", "R", path, patients);
    html(
        StatusCode::OK,
        web::views::encounter(
            &visit.viewer(Area::Coding),
            &encounter,
            note_text.as_deref(),
            &suggestions,
            &edits,
            &coded,
            message,
        ),
    )
}

async fn encounter(State(state): State<Arc<AppState>>, Path(id): Path<String>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Coding) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    encounter_page(&state, &visit, &id, None).await
}

/// Assigns an ICD-10-CM code to the encounter: a new Condition written through the API, so
/// validation, the policy and the audit apply as to any write.
async fn assign(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    parts: Parts,
    body: Body,
) -> Response {
    let visit = match visit_area(&state, &parts, Area::Coding) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let code = form.get("code").map(|c| c.trim().to_ascii_uppercase()).unwrap_or_default();
    let mut patients = Vec::new();
    let read = ask(&state, &visit, Call::get(&format!("Encounter/{id}"), ""), &mut patients).await;
    if read.status != 200 {
        return failed(&visit, Area::Coding, &read);
    }
    let encounter = body_json(&read);
    let lookup = ask(
        &state,
        &visit,
        Call::get(
            "CodeSystem/$lookup",
            &format!(
                "system={ICD10CM}&code={}",
                form_urlencoded::byte_serialize(code.as_bytes()).collect::<String>()
            ),
        ),
        &mut patients,
    )
    .await;
    let display = body_json(&lookup)["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "display")
        .and_then(|p| p["valueString"].as_str())
        .map(str::to_string);
    let Some(display) = display else {
        return encounter_page(
            &state,
            &visit,
            &id,
            Some((false, &format!("{code} is not an ICD-10-CM code"))),
        )
        .await;
    };
    let condition = json!({
        "resourceType": "Condition",
        "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
        "verificationStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed" }] },
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis" }] }],
        "code": { "coding": [{ "system": ICD10CM, "code": code, "display": display }], "text": display },
        "subject": encounter["subject"].clone(),
        "encounter": { "reference": format!("Encounter/{id}") },
        "recorder": visit.identity().fhir_user.as_ref().map(|r| json!({ "reference": r })),
    });
    let mut condition = condition;
    if condition["recorder"].is_null()
        && let Some(object) = condition.as_object_mut()
    {
        object.remove("recorder");
    }
    let written =
        ask(&state, &visit, Call::post("Condition", condition.to_string().into_bytes()), &mut patients).await;
    let location = written.location.clone().unwrap_or_default();
    let (ok, message) = if written.status == 201 {
        (true, format!("{code} {display} assigned ({location})"))
    } else {
        (false, format!("{code} was not assigned: {}", outcome_message(&written)))
    };
    let page = encounter_page(&state, &visit, &id, Some((ok, &message))).await;
    // The entry is the write's, whatever the page read to show its result.
    note(&visit.slot, "workbench-coding-assign", "C", format!("Encounter/{id}"), patients);
    visit.slot.refused_because(Some(if ok {
        format!("assigned {code} to Encounter/{id} as {location}")
    } else {
        message
    }));
    page
}

// ---- analytics and administration ---------------------------------------------------------

/// How resources are used over a period (the last twelve months by default), from
/// `$operations-report`.
async fn operations_report(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Analytics) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let query = query_map(&parts);
    let today = fhir::DateTime::now_utc().to_string()[..10].to_string();
    // 365 days back (not the same date a year ago, which 29 February lacks).
    let year_ago = fhir::DateTime::parse(&today, fhir::DateTimeKind::Date)
        .map(|d| {
            let (y, m, day) =
                fhir::datetime::civil_from_days(d.lower_bound_millis().div_euclid(86_400_000) - 365);
            format!("{y:04}-{m:02}-{day:02}")
        })
        .unwrap_or_else(|_| today.clone());
    let from = query.get("from").cloned().unwrap_or(year_ago);
    let to = query.get("to").cloned().unwrap_or(today);
    let by = if query.get("by").map(String::as_str) == Some("service") { "service" } else { "facility" };
    let call_query = {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        serializer.append_pair("from", &from).append_pair("to", &to).append_pair("by", by);
        serializer.finish()
    };
    let mut patients = Vec::new();
    let answer = ask(&state, &visit, Call::get("$operations-report", &call_query), &mut patients).await;
    note(&visit.slot, "workbench-operations", "R", "$operations-report".into(), patients);
    let viewer = visit.viewer(Area::Analytics);
    match answer.status {
        200 => html(
            StatusCode::OK,
            web::operations::operations_page(&viewer, (&from, &to, by), Some(&body_json(&answer)), None),
        ),
        401 | 403 => failed(&visit, Area::Analytics, &answer),
        _ => html(
            StatusCode::BAD_REQUEST,
            web::operations::operations_page(
                &viewer,
                (&from, &to, by),
                None,
                Some(&outcome_message(&answer)),
            ),
        ),
    }
}

/// Accurate bills: the revenue-cycle figures and the claims audit as of a day (today by
/// default), from `$billing-audit`.
async fn billing_audit(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Coding) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let query = query_map(&parts);
    let today = fhir::DateTime::now_utc().to_string()[..10].to_string();
    let as_of = query.get("asOf").cloned().unwrap_or(today);
    let hold = query.get("billHold").cloned().unwrap_or_else(|| "3".to_string());
    let call_query = {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        serializer.append_pair("asOf", &as_of).append_pair("billHold", &hold).append_pair("_count", "200");
        serializer.finish()
    };
    let mut patients = Vec::new();
    let answer = ask(&state, &visit, Call::get("$billing-audit", &call_query), &mut patients).await;
    note(&visit.slot, "workbench-billing-audit", "R", "$billing-audit".into(), patients);
    let viewer = visit.viewer(Area::Coding);
    match answer.status {
        200 => html(
            StatusCode::OK,
            web::billing::billing_page(&viewer, (&as_of, &hold), Some(&body_json(&answer)), None),
        ),
        401 | 403 => failed(&visit, Area::Coding, &answer),
        _ => html(
            StatusCode::BAD_REQUEST,
            web::billing::billing_page(&viewer, (&as_of, &hold), None, Some(&outcome_message(&answer))),
        ),
    }
}

/// The care managers' worklist of likely readmissions, from `$high-risk`.
async fn high_risk(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let (visit, answer) = match one_answer(
        &state,
        &parts,
        Area::Analytics,
        "workbench-high-risk",
        Call::get("$high-risk", "_count=50"),
    )
    .await
    {
        Ok(found) => found,
        Err(response) => return response,
    };
    html(StatusCode::OK, web::analytics::high_risk_page(&visit.viewer(Area::Analytics), &answer))
}

async fn analytics(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let (visit, answer) = match one_answer(
        &state,
        &parts,
        Area::Analytics,
        "workbench-analytics",
        Call::get("ViewDefinition", ""),
    )
    .await
    {
        Ok(found) => found,
        Err(response) => return response,
    };
    let views: Vec<(String, String)> = answer["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .map(|v| {
            (
                v["name"].as_str().or(v["id"].as_str()).unwrap_or("").to_string(),
                v["description"].as_str().or(v["title"].as_str()).unwrap_or("").to_string(),
            )
        })
        .collect();
    let sql = api::Api::permits(visit.identity(), Method::Get, "$sql", "");
    html(StatusCode::OK, web::views::analytics(&visit.viewer(Area::Analytics), &views, sql))
}

/// Outbreak early warning: the form, and once submitted every series through
/// `$surveillance`, as the visitor.
async fn surveillance(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Analytics) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let query = query_map(&parts);
    let value = |name: &str, default: &str| query.get(name).cloned().unwrap_or_else(|| default.to_string());
    let form = web::analytics::SurveillanceForm {
        syndromes: analytics::syndromes::builtin().into_iter().map(|s| (s.name, s.title)).collect(),
        syndrome: value("syndrome", ""),
        by: value("by", "week"),
        place: value("place", "city"),
        method: value("method", "ears-c2"),
    };
    let viewer = visit.viewer(Area::Analytics);
    if !query.contains_key("by") {
        return html(StatusCode::OK, web::analytics::surveillance_page(&viewer, &form, None, None));
    }
    let encoded: String = {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        serializer
            .append_pair("by", &form.by)
            .append_pair("place", &form.place)
            .append_pair("method", &form.method);
        if !form.syndrome.is_empty() {
            serializer.append_pair("syndrome", &form.syndrome);
        }
        serializer.finish()
    };
    let mut patients = Vec::new();
    let response = ask(&state, &visit, Call::get("$surveillance", &encoded), &mut patients).await;
    note(&visit.slot, "workbench-surveillance", "R", "$surveillance".into(), patients);
    match response.status {
        200 => {
            let bundle = body_json(&response);
            html(StatusCode::OK, web::analytics::surveillance_page(&viewer, &form, Some(&bundle), None))
        }
        403 => failed(&visit, Area::Analytics, &response),
        _ => html(
            StatusCode::OK,
            web::analytics::surveillance_page(&viewer, &form, None, Some(&outcome_message(&response))),
        ),
    }
}

async fn cohort_form(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Analytics) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    html(
        StatusCode::OK,
        web::analytics::cohort_page(
            &visit.viewer(Area::Analytics),
            &visit.session.csrf,
            analytics::record::cohort::EXAMPLE_STUDY,
            None,
            None,
        ),
    )
}

/// Treatment comparison: the study posted through `$cohort-compare`, as the visitor.
async fn cohort_compare(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Analytics) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let study = form.get("study").cloned().unwrap_or_default();
    let viewer = visit.viewer(Area::Analytics);
    let mut patients = Vec::new();
    let parameters =
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "study", "valueString": study }] });
    let response = ask(
        &state,
        &visit,
        Call::post("$cohort-compare", parameters.to_string().into_bytes()),
        &mut patients,
    )
    .await;
    note(&visit.slot, "workbench-cohort-compare", "R", "$cohort-compare".into(), patients);
    match response.status {
        200 => {
            let answer = body_json(&response);
            html(
                StatusCode::OK,
                web::analytics::cohort_page(&viewer, &visit.session.csrf, &study, Some(&answer), None),
            )
        }
        403 => failed(&visit, Area::Analytics, &response),
        _ => html(
            StatusCode::OK,
            web::analytics::cohort_page(
                &viewer,
                &visit.session.csrf,
                &study,
                None,
                Some(&outcome_message(&response)),
            ),
        ),
    }
}

const VIEW_PAGE_ROWS: usize = 100;
/// Rows of a SQL answer shown on the page.
const SQL_PAGE_ROWS: usize = 500;

/// The SQL box: one statement through `$sql`, as the visitor.
async fn sql(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Analytics) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let query = query_map(&parts).get("query").cloned().unwrap_or_default();
    let encoded: String =
        form_urlencoded::Serializer::new(String::new()).append_pair("query", &query).finish();
    let mut patients = Vec::new();
    let response = ask(&state, &visit, Call::get("$sql", &encoded), &mut patients).await;
    note(&visit.slot, "workbench-sql", "R", "$sql".into(), patients);
    if response.status == 403 {
        return failed(&visit, Area::Analytics, &response);
    }
    let (header, rows, problem) = if response.status == 200 {
        let answer = body_json(&response);
        let rows: Vec<&serde_json::Map<String, Value>> =
            answer.as_array().into_iter().flatten().filter_map(Value::as_object).collect();
        let header: Vec<String> = rows.first().map(|r| r.keys().cloned().collect()).unwrap_or_default();
        let cells: Vec<Vec<String>> = rows
            .iter()
            .take(SQL_PAGE_ROWS)
            .map(|row| header.iter().map(|h| web::text(&row[h])).collect())
            .collect();
        (header, cells, None)
    } else {
        (Vec::new(), Vec::new(), Some(outcome_message(&response)))
    };
    html(
        StatusCode::OK,
        web::views::sql_answer(&visit.viewer(Area::Analytics), &query, &header, &rows, problem.as_deref()),
    )
}

async fn view_rows(State(state): State<Arc<AppState>>, Path(name): Path<String>, parts: Parts) -> Response {
    let (path, limit) = (format!("ViewDefinition/{name}/$run"), format!("_limit={VIEW_PAGE_ROWS}"));
    let call = Call::get(&path, &limit).accept("application/json");
    let (visit, rows) = match one_answer(&state, &parts, Area::Analytics, "workbench-view", call).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let rows: Vec<&serde_json::Map<String, Value>> =
        rows.as_array().into_iter().flatten().filter_map(Value::as_object).collect();
    let header: Vec<String> = rows.first().map(|r| r.keys().cloned().collect()).unwrap_or_default();
    let cells: Vec<Vec<String>> =
        rows.iter().map(|row| header.iter().map(|h| web::text(&row[h])).collect()).collect();
    html(
        StatusCode::OK,
        web::views::view_rows(&visit.viewer(Area::Analytics), &name, &header, &cells, VIEW_PAGE_ROWS),
    )
}

async fn view_download(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    parts: Parts,
) -> Response {
    let visit = match visit_area(&state, &parts, Area::Analytics) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let format = query_map(&parts).get("format").cloned().unwrap_or_else(|| "csv".into());
    let (accept, extension) = match format.as_str() {
        "parquet" => ("application/vnd.apache.parquet", "parquet"),
        _ => ("text/csv", "csv"),
    };
    let mut patients = Vec::new();
    let response = ask(
        &state,
        &visit,
        Call::get(&format!("ViewDefinition/{name}/$run"), "").accept(accept),
        &mut patients,
    )
    .await;
    note(&visit.slot, "workbench-view-download", "R", format!("ViewDefinition/{name}"), patients);
    if response.status != 200 {
        return failed(&visit, Area::Analytics, &response);
    }
    let mut http = (StatusCode::OK, response.body.unwrap_or_default()).into_response();
    let headers = http.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(response.content_type.unwrap_or("application/octet-stream")),
    );
    secure_headers(headers);
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.{extension}\"",
        name.replace(['"', '\\'], "")
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    http
}

async fn admin(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Admin) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let Some(security) = &state.config.security else { return see_other("/") };
    let users: Vec<Vec<String>> = security
        .users
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|((name, role, patient, fhir_user), issued)| {
            let is = patient.map(|p| format!("Patient/{p}")).or(fhir_user).unwrap_or_else(|| "-".into());
            let password = if security.users.has_password(&name).unwrap_or(false) { "set" } else { "none" };
            vec![name, role.as_str().to_string(), is, issued, password.to_string()]
        })
        .collect();
    let cached = state
        .sessions
        .counts
        .lock()
        .ok()
        .and_then(|c| c.clone())
        .filter(|(at, _)| at.elapsed().as_secs() < COUNTS_SECONDS);
    let counts = match cached {
        Some((_, counts)) => counts,
        None => {
            let store = state.api.store().clone();
            let counts = tokio::task::block_in_place(|| store.count_by_type()).unwrap_or_default();
            if let Ok(mut cache) = state.sessions.counts.lock() {
                *cache = Some((Instant::now(), counts.clone()));
            }
            counts
        }
    };
    let total = counts.iter().map(|(_, n)| n).sum::<u64>().to_string();
    let status = vec![
        ("Version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("Data directory".to_string(), security.data_dir.display().to_string()),
        ("Resources".to_string(), total),
        (
            "Data directory size".to_string(),
            format!("{:.1} MiB", directory_bytes(&security.data_dir) as f64 / 1_048_576.0),
        ),
        (
            "Search index".to_string(),
            if state.api.store().index_is_stale() {
                "stale: run chartroom reindex".into()
            } else {
                "current".into()
            },
        ),
        (
            "Audit backlog".to_string(),
            format!("{} entries waiting to be committed", security.audit.backlog()),
        ),
        (
            "Workbench sessions".to_string(),
            state.sessions.open.lock().map(|s| s.len()).unwrap_or(0).to_string(),
        ),
    ];
    note(&visit.slot, "workbench-admin", "R", "admin".into(), Vec::new());
    let revoked: Vec<Vec<String>> = security
        .users
        .revocations()
        .unwrap_or_default()
        .into_iter()
        .map(|r| vec![r.name, r.role, r.issued, r.revoked, r.why])
        .collect();
    html(StatusCode::OK, web::views::admin(&visit.viewer(Area::Admin), &users, &revoked, &status, &counts))
}

/// Bytes of the files in a data directory and the folders in it (exports, views), one level
/// down: the store, the privacy database and their journals.
fn directory_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => std::fs::read_dir(entry.path())
                .map(|inner| {
                    inner.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
                })
                .unwrap_or(0),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
