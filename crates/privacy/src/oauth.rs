//! The built-in authorization server (SMART App Launch 2.0 and SMART Backend Services): how
//! apps and services obtain the tokens the rest of Chartroom checks. HTTP-free: the server
//! crate turns requests into these calls and their results into pages, redirects and JSON.
//!
//! Invariants:
//! - A redirect is only ever to a URI registered for the client, compared exactly; a request
//!   naming any other is refused without redirecting ([`AuthorizeError::NoRedirect`]).
//! - An authorization code is bound to its client, its redirect URI and a PKCE S256
//!   challenge; it lives [`CODE_SECONDS`] and is spent at its first exchange. A second
//!   exchange is refused and revokes what the first one issued (RFC 6749 §4.1.2).
//! - What is granted is never more than the signed-in user's role permits
//!   ([`Role::scopes`]), and a patient's app gets only patient scopes for that patient: the
//!   policy then applies the same rules to these tokens as to any other.
//! - Access tokens are ES256 JWTs signed with the server's own key (kept beside the privacy
//!   database, created at first start; on a PostgreSQL record, in its database, so every
//!   server of the record signs with one key and accepts the others' tokens); each names its
//!   `jti`, so it can be revoked, and ends when its user or client is removed. A revocation
//!   through one server of a PostgreSQL record holds at the others within
//!   [`REVOCATIONS_RELOAD`].
//! - A refresh token is spent by one atomic update: two refreshes with the same token, through
//!   one server or two, issue one new token.
//! - A client assertion (backend services, confidential apps) is used once: its `jti` is
//!   remembered until its `exp`, which may be at most [`ASSERTION_MAX_SECONDS`] away.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use database::{Database, Dialect, params};
use serde_json::{Map, Value, json};

use crate::Error;
use crate::clients::{Client, ClientAuth, Clients};
use crate::jwt::{self, Signer, Subjects, Verifier};
use crate::role::{Identity, Role};
use crate::scope::{Context, Scope};
use crate::secret::{constant_time_eq, random_text, sha256_hex};
use crate::sign_ins::{self, Kind};
use crate::users::{UserRecord, Users};

/// How long an authorization code may wait for its exchange.
pub const CODE_SECONDS: u64 = 60;
/// How long an access token lasts.
pub const ACCESS_TOKEN_SECONDS: i64 = 3600;
/// How long a sign-in and consent may take.
const PENDING_SECONDS: u64 = 600;
/// How long an EHR launch context waits for its app.
const LAUNCH_SECONDS: u64 = 300;
/// How far ahead a client assertion's `exp` may be (SMART Backend Services: five minutes).
pub const ASSERTION_MAX_SECONDS: i64 = 300;
/// Refresh tokens: `offline_access` lasts this long, `online_access` [`ONLINE_SECONDS`].
const OFFLINE_SECONDS: i64 = 90 * 24 * 3600;
const ONLINE_SECONDS: i64 = 12 * 3600;
/// Failed sign-ins for one user name before it is locked for [`LOCK_SECONDS`].
const MAX_FAILURES: u32 = 5;
const LOCK_SECONDS: u64 = 900;
/// Most authorization requests in progress at once.
const MAX_PENDING: usize = 10_000;

/// The file holding the server's signing key (PKCS#8).
pub const SIGNING_KEY_FILE: &str = "oauth-signing-key.p8";

/// The assertion type of `private_key_jwt` (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Scopes that are not about resources, and which this server understands.
const CONTEXT_SCOPES: [&str; 8] = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
];

/// An OAuth error (RFC 6749 §5.2): its code, what to tell the client, the HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        let status = if error == "invalid_client" { 401 } else { 400 };
        OAuthError { status, error, description: description.into() }
    }

    /// The JSON body (`error`, `error_description`).
    pub fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
}

/// Why an authorization request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Not sent back to the client: the client or its redirect URI cannot be trusted. Shown
    /// to the user.
    NoRedirect(String),
    /// Sent back to the client's redirect URI with `error`, `error_description` and `state`.
    Redirect { redirect_uri: String, error: &'static str, description: String, state: Option<String> },
}

impl AuthorizeError {
    /// The OAuth error code, or `None` for a refusal shown to the user.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            AuthorizeError::NoRedirect(_) => None,
            AuthorizeError::Redirect { error, .. } => Some(error),
        }
    }

    pub fn description(&self) -> &str {
        match self {
            AuthorizeError::NoRedirect(why) => why,
            AuthorizeError::Redirect { description, .. } => description,
        }
    }

    /// Where the browser goes, for a redirected error.
    pub fn location(&self) -> Option<String> {
        match self {
            AuthorizeError::NoRedirect(_) => None,
            AuthorizeError::Redirect { redirect_uri, error, description, state } => {
                let mut query =
                    vec![("error", error.to_string()), ("error_description", description.clone())];
                if let Some(state) = state {
                    query.push(("state", state.clone()));
                }
                Some(with_query(redirect_uri, &query))
            }
        }
    }
}

/// The parameters of an authorization request (the query of `GET authorize`).
#[derive(Clone, Debug, Default)]
pub struct AuthorizeRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub aud: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub launch: Option<String>,
    pub nonce: Option<String>,
}

/// An authorization request between its start and the user's decision.
#[derive(Clone, Debug)]
pub struct Pending {
    pub id: String,
    /// A value kept in the browser's cookie: the sign-in and the decision must come from the
    /// browser that started the request, not from a page that learned its id.
    pub browser: String,
    pub client: Client,
    pub redirect_uri: String,
    /// The scopes asked for, as asked.
    pub scopes: Vec<String>,
    pub state: String,
    code_challenge: String,
    nonce: Option<String>,
    pub launch: Option<Launch>,
    /// Who signed in, once they have.
    pub user: Option<UserRecord>,
    /// What the user would grant (computed at sign-in).
    pub grant: Option<Grant>,
}

impl Pending {
    /// Whether the app asks to be given a patient (`launch/patient`) and the user must pick
    /// one: staff, without an EHR launch that names one.
    pub fn needs_patient_picked(&self) -> bool {
        self.grant.as_ref().is_some_and(|grant| grant.patient.is_none() && grant.wants_patient)
    }

    fn redirect(&self, error: &'static str, description: impl Into<String>) -> AuthorizeError {
        AuthorizeError::Redirect {
            redirect_uri: self.redirect_uri.clone(),
            error,
            description: description.into(),
            state: Some(self.state.clone()),
        }
    }
}

/// What a user grants an app: the scopes, and the patient in context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Granted scopes, clinical ones in v2 form, in the order asked.
    pub scopes: Vec<String>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// Whether a patient context was asked for (`launch/patient`, or patient scopes).
    wants_patient: bool,
}

/// An EHR launch: the context an app opened from the workbench is given.
#[derive(Clone, Debug)]
pub struct Launch {
    pub id: String,
    /// The user who opened the app: only they may complete its launch.
    pub user: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
}

/// An authorization code until its exchange, as stored ([`sign_ins`]): its request's client,
/// redirect URI, PKCE challenge and nonce, the user and their grant, when it was issued
/// (`created_ms`), and `issued`: null until exchanged, then what the exchange issued
/// (`[jti, refresh hash or null]`), so a second exchange revokes it.
type Code = Value;

fn user_json((name, role, patient, fhir_user): &UserRecord) -> Value {
    json!([name, role.as_str(), patient, fhir_user])
}

fn user_of(value: &Value) -> Option<UserRecord> {
    let text = |i: usize| value.get(i).and_then(Value::as_str).map(str::to_string);
    Some((text(0)?, Role::parse(&text(1)?).ok()?, text(2), text(3)))
}

fn grant_json(grant: &Grant) -> Value {
    json!({ "scopes": grant.scopes, "patient": grant.patient, "encounter": grant.encounter,
            "wants_patient": grant.wants_patient })
}

fn grant_of(value: &Value) -> Option<Grant> {
    Some(Grant {
        scopes: value["scopes"].as_array()?.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
        patient: value["patient"].as_str().map(str::to_string),
        encounter: value["encounter"].as_str().map(str::to_string),
        wants_patient: value["wants_patient"].as_bool()?,
    })
}

fn launch_json(launch: &Launch) -> Value {
    json!({ "id": launch.id, "user": launch.user, "patient": launch.patient, "encounter": launch.encounter })
}

fn launch_of(value: &Value) -> Option<Launch> {
    Some(Launch {
        id: value["id"].as_str()?.to_string(),
        user: value["user"].as_str()?.to_string(),
        patient: value["patient"].as_str().map(str::to_string),
        encounter: value["encounter"].as_str().map(str::to_string),
    })
}

impl Pending {
    fn to_json(&self) -> Value {
        // The browser's value only as a hash: whoever reads the tables cannot continue a
        // sign-in with it.
        json!({ "id": self.id, "browser_hash": sha256_hex(&self.browser), "client": self.client.id,
                "redirect_uri": self.redirect_uri, "scopes": self.scopes, "state": self.state,
                "code_challenge": self.code_challenge, "nonce": self.nonce,
                "launch": self.launch.as_ref().map(launch_json),
                "user": self.user.as_ref().map(user_json), "grant": self.grant.as_ref().map(grant_json) })
    }

    /// A stored request, presented by `browser` (checked against its hash by the caller),
    /// with its client as registered now (none when it was removed).
    fn from_json(value: &Value, browser: &str, client: Client) -> Option<Pending> {
        let text = |name: &str| value[name].as_str().map(str::to_string);
        Some(Pending {
            id: text("id")?,
            browser: browser.to_string(),
            client,
            redirect_uri: text("redirect_uri")?,
            scopes: value["scopes"]
                .as_array()?
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            state: text("state")?,
            code_challenge: text("code_challenge")?,
            nonce: text("nonce"),
            launch: if value["launch"].is_null() { None } else { Some(launch_of(&value["launch"])?) },
            user: if value["user"].is_null() { None } else { Some(user_of(&value["user"])?) },
            grant: if value["grant"].is_null() { None } else { Some(grant_of(&value["grant"])?) },
        })
    }
}

/// A token endpoint request's form, parameter by parameter.
pub type Form = HashMap<String, String>;

/// What the token endpoint answers, and for whom (the audit).
#[derive(Debug)]
pub struct Issued {
    pub body: Value,
    pub client_id: String,
    pub subject: String,
    pub scope: String,
    pub patient: Option<String>,
}

/// The built-in authorization server of a data directory.
pub struct AuthorizationServer {
    signer: Signer,
    own: Verifier,
    clients: Clients,
    db: Arc<Database>,
    revoked: RwLock<HashSet<String>>,
    /// When `revoked` was last read from a shared (PostgreSQL) database.
    revoked_read: Mutex<Instant>,
    /// Clients recently found to be registered (tokens end when their client is revoked).
    active_clients: RwLock<HashMap<String, Instant>>,
    /// How long a code may wait for its exchange ([`CODE_SECONDS`] unless set).
    code_seconds: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS oauth_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    \"user\" TEXT NOT NULL,
    scope TEXT NOT NULL,
    patient TEXT,
    encounter TEXT,
    expires BIGINT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS oauth_revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_failed_sign_ins (
    name TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    first_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS oauth_failed_sign_ins_first ON oauth_failed_sign_ins (first_ms);
CREATE TABLE IF NOT EXISTS oauth_client_assertions (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);";

/// The signing key every server of a PostgreSQL record shares (one row).
const POSTGRES_KEY_TABLE: &str = "
CREATE TABLE IF NOT EXISTS oauth_signing_key (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    pkcs8 BYTEA NOT NULL
);";

/// How often a server of a PostgreSQL record reads the access tokens revoked through the
/// others.
pub const REVOCATIONS_RELOAD: Duration = Duration::from_secs(2);

fn now_seconds() -> i64 {
    fhir::datetime::epoch_millis_now() / 1000
}

/// `uri` with `query` added (after any query it already has).
fn with_query(uri: &str, query: &[(&str, String)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in query {
        serializer.append_pair(name, value);
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{}", serializer.finish())
}

impl AuthorizationServer {
    /// Opens the server of a data directory, creating its signing key at first start.
    pub fn open(data_dir: &Path) -> Result<AuthorizationServer, Error> {
        AuthorizationServer::on(data_dir, crate::open_directory(data_dir)?)
    }

    /// The server whose tables are in `db`: the data directory's own database, or a
    /// PostgreSQL record's (whose signing key is then the one in the database).
    pub fn on(data_dir: &Path, db: Arc<Database>) -> Result<AuthorizationServer, Error> {
        std::fs::create_dir_all(data_dir)?;
        let signer = match db.dialect() {
            Dialect::Sqlite => load_or_create_key(&data_dir.join(SIGNING_KEY_FILE))?,
            Dialect::Postgres => shared_key(&db)?,
        };
        let own_keys = jwt::Jwks::from_json(json!({ "keys": [signer.public_jwk()] }).to_string().as_bytes())?;
        db.create_tables(SCHEMA)?;
        db.create_tables(crate::sign_ins::SCHEMA)?;
        db.execute("DELETE FROM oauth_revoked_tokens WHERE expires < ?1", params![now_seconds()])?;
        let revoked = read_revoked(&db)?;
        Ok(AuthorizationServer {
            signer,
            own: Verifier::from(own_keys),
            clients: Clients::on(db.clone())?,
            db,
            revoked: RwLock::new(revoked),
            revoked_read: Mutex::new(Instant::now()),
            active_clients: RwLock::default(),
            code_seconds: CODE_SECONDS,
        })
    }

    /// Sets how long authorization codes last (tests of expiry use a second).
    pub fn with_code_lifetime(mut self, seconds: u64) -> AuthorizationServer {
        self.code_seconds = seconds;
        self
    }

    /// Whether an access token was revoked, through this server or (on a shared database,
    /// read again every [`REVOCATIONS_RELOAD`]) another.
    fn is_revoked(&self, jti: &str) -> Result<bool, Error> {
        if self.db.dialect() == Dialect::Postgres {
            let stale =
                self.revoked_read.lock().map(|read| read.elapsed() >= REVOCATIONS_RELOAD).unwrap_or(true);
            if stale {
                let fresh = read_revoked(&self.db)?;
                if let Ok(mut revoked) = self.revoked.write() {
                    *revoked = fresh;
                }
                if let Ok(mut read) = self.revoked_read.lock() {
                    *read = Instant::now();
                }
            }
        }
        Ok(self.revoked.read().is_ok_and(|revoked| revoked.contains(jti)))
    }

    /// The public signing key, as the JWKS clients verify tokens with.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.signer.public_jwk()] })
    }

    /// The registered clients.
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    // ---- authorization requests -------------------------------------------------------

    /// Starts an authorization request: checks the client and its redirect URI first (a
    /// failure there is shown, never redirected), then everything else (a failure there goes
    /// back to the client). `fhir_base` is what `aud` must name.
    pub fn begin(&self, request: &AuthorizeRequest, fhir_base: &str) -> Result<Pending, AuthorizeError> {
        let client_id = request
            .client_id
            .as_deref()
            .ok_or_else(|| AuthorizeError::NoRedirect("the request names no client_id".into()))?;
        let client = self
            .clients
            .get(client_id)
            .map_err(|e| AuthorizeError::NoRedirect(format!("the client registry is unavailable: {e}")))?
            .ok_or_else(|| AuthorizeError::NoRedirect(format!("no client {client_id} is registered here")))?;
        let redirect_uri = match request.redirect_uri.as_deref() {
            Some(uri) if client.redirects_to(uri) => uri.to_string(),
            Some(uri) => {
                return Err(AuthorizeError::NoRedirect(format!(
                    "{uri} is not a redirect URI registered for {}; nothing is sent there",
                    client.name
                )));
            }
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => {
                return Err(AuthorizeError::NoRedirect(
                    "the request names no redirect_uri, and the client has several".into(),
                ));
            }
        };
        let state = request.state.clone().filter(|s| !s.is_empty());
        let refuse = |error: &'static str, description: String| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            error,
            description,
            state: state.clone(),
        };
        match request.response_type.as_deref() {
            Some("code") => {}
            Some(other) => {
                return Err(refuse(
                    "unsupported_response_type",
                    format!("response_type {other} is not supported; use code"),
                ));
            }
            None => return Err(refuse("invalid_request", "response_type is missing; use code".into())),
        }
        let Some(state) = state.clone() else {
            return Err(refuse("invalid_request", "state is missing: SMART apps must send one".into()));
        };
        let code_challenge =
            match (request.code_challenge.as_deref(), request.code_challenge_method.as_deref()) {
                (Some(challenge), Some("S256")) if is_s256_challenge(challenge) => challenge.to_string(),
                (Some(_), Some("S256")) => {
                    return Err(refuse(
                        "invalid_request",
                        "code_challenge is not an S256 challenge (43 base64url characters)".into(),
                    ));
                }
                (Some(_), Some(method)) => {
                    return Err(refuse(
                        "invalid_request",
                        format!("code_challenge_method {method} is not supported; use S256"),
                    ));
                }
                _ => {
                    return Err(refuse(
                        "invalid_request",
                        "PKCE is required: send code_challenge with code_challenge_method=S256".into(),
                    ));
                }
            };
        match request.aud.as_deref() {
            Some(aud) if same_base(aud, fhir_base) => {}
            Some(aud) => {
                return Err(refuse(
                    "invalid_request",
                    format!("aud {aud} is not this server's FHIR base ({fhir_base})"),
                ));
            }
            None => {
                return Err(refuse(
                    "invalid_request",
                    format!("aud is missing: name the FHIR base {fhir_base}"),
                ));
            }
        }
        let scopes: Vec<String> =
            request.scope.as_deref().unwrap_or("").split_whitespace().map(str::to_string).collect();
        if scopes.is_empty() {
            return Err(refuse("invalid_scope", "no scope was asked for".into()));
        }
        for scope in &scopes {
            if let Err(error) = Scope::parse(scope) {
                return Err(refuse("invalid_scope", error.to_string()));
            }
        }
        let launch = match request.launch.as_deref() {
            None => None,
            Some(id) => {
                let launch = self.launch(id).ok_or_else(|| {
                    refuse(
                        "invalid_request",
                        "the launch has expired or is unknown; open the app again".into(),
                    )
                })?;
                Some(launch)
            }
        };
        let pending = Pending {
            id: random_text(24).map_err(|e| refuse("server_error", e.to_string()))?,
            browser: random_text(24).map_err(|e| refuse("server_error", e.to_string()))?,
            client,
            redirect_uri: redirect_uri.clone(),
            scopes,
            state,
            code_challenge,
            nonce: request.nonce.clone(),
            launch,
            user: None,
            grant: None,
        };
        let in_progress =
            sign_ins::count(&self.db, Kind::Request).map_err(|e| refuse("server_error", e.to_string()))?;
        if in_progress >= MAX_PENDING as i64 {
            return Err(refuse(
                "temporarily_unavailable",
                "too many sign-ins are in progress; try again".into(),
            ));
        }
        sign_ins::put(&self.db, Kind::Request, &pending.id, &pending.to_json(), PENDING_SECONDS)
            .map_err(|e| refuse("server_error", e.to_string()))?;
        Ok(pending)
    }

    /// The request in progress with this id, from the browser that started it.
    pub fn pending(&self, id: &str, browser: Option<&str>) -> Option<Pending> {
        let stored = sign_ins::get(&self.db, Kind::Request, id).ok()??;
        let browser = browser?;
        let expected = stored["browser_hash"].as_str().unwrap_or("");
        if !constant_time_eq(sha256_hex(browser).as_bytes(), expected.as_bytes()) {
            return None;
        }
        let client = self.clients.get(stored["client"].as_str()?).ok()??;
        Pending::from_json(&stored, browser, client)
    }

    fn update_pending(&self, pending: &Pending) -> Result<(), Error> {
        sign_ins::put(&self.db, Kind::Request, &pending.id, &pending.to_json(), PENDING_SECONDS)
    }

    fn end_pending(&self, id: &str) {
        let _ = sign_ins::remove(&self.db, Kind::Request, id);
    }

    /// Signs a user in to a pending request. `Ok(Err(message))` for a wrong name or password
    /// or a locked name (the page asks again); `Err` for a request that goes back to the
    /// client refused (the user may not grant what the app asks).
    pub fn sign_in(
        &self,
        users: &Users,
        pending: &Pending,
        name: &str,
        password: &str,
    ) -> Result<Result<Pending, String>, AuthorizeError> {
        let user = match self.check_password(users, name, password) {
            Ok(Ok(user)) => user,
            Ok(Err(message)) => return Ok(Err(message)),
            Err(error) => return Err(pending.redirect("server_error", error.to_string())),
        };
        if let Some(launch) = &pending.launch
            && launch.user != user.0
        {
            return Err(pending.redirect("access_denied", "this launch was opened by another user"));
        }
        let grant = grant_for(&user, &pending.scopes, pending.launch.as_ref())
            .map_err(|(error, why)| pending.redirect(error, why))?;
        let mut signed_in = pending.clone();
        signed_in.user = Some(user);
        signed_in.grant = Some(grant);
        self.update_pending(&signed_in).map_err(|e| pending.redirect("server_error", e.to_string()))?;
        Ok(Ok(signed_in))
    }

    /// Checks a user's password, locking the name for a while after repeated failures: the
    /// one sign-in of the authorization server and the workbench. `Ok(Err(message))` for a
    /// wrong name or password, or a locked name (what the sign-in page says).
    pub fn check_password(
        &self,
        users: &Users,
        name: &str,
        password: &str,
    ) -> Result<Result<UserRecord, String>, Error> {
        let name = name.trim();
        if let Some(minutes) = self.locked_minutes(name) {
            return Ok(Err(format!(
                "too many failed sign-ins for this user name; try again in {minutes} minutes"
            )));
        }
        let Some(user) = users.sign_in(name, password)? else {
            self.count_failure(name);
            return Ok(Err("the user name or password is not right".into()));
        };
        let _ = self.db.execute("DELETE FROM oauth_failed_sign_ins WHERE name = ?1", params![name]);
        Ok(Ok(user))
    }

    /// Minutes a name stays locked, if it is: failures are counted in the tables, so on a
    /// PostgreSQL record a guesser spreading attempts over the servers meets one count.
    fn locked_minutes(&self, name: &str) -> Option<u64> {
        let row = self
            .db
            .query_opt("SELECT failures, first_ms FROM oauth_failed_sign_ins WHERE name = ?1", params![name])
            .ok()??;
        let (count, first_ms) = (row.integer(0).ok()?, row.integer(1).ok()?);
        let elapsed = (sign_ins::now_ms().saturating_sub(first_ms) / 1000).max(0) as u64;
        (count >= i64::from(MAX_FAILURES) && elapsed < LOCK_SECONDS)
            .then(|| (LOCK_SECONDS - elapsed).div_ceil(60))
    }

    /// Counts a failed sign-in for a name: a new count once the last one is older than the lock.
    fn count_failure(&self, name: &str) {
        let now = sign_ins::now_ms();
        let stale = now - (LOCK_SECONDS as i64) * 1000;
        let _ = self.db.transaction(|handle| {
            handle.execute("DELETE FROM oauth_failed_sign_ins WHERE first_ms <= ?1", params![stale])?;
            handle.execute(
                "INSERT INTO oauth_failed_sign_ins (name, failures, first_ms) VALUES (?1, 1, ?2)
                 ON CONFLICT (name) DO UPDATE SET failures = oauth_failed_sign_ins.failures + 1",
                params![name, now],
            )
        });
    }

    /// The user's decision on a signed-in request: the redirect with a code, or with
    /// `access_denied`. `patient` is the one picked, when the request needs one (its
    /// existence and visibility to the user checked by the caller).
    pub fn decide(
        &self,
        pending: &Pending,
        approve: bool,
        patient: Option<&str>,
    ) -> Result<String, AuthorizeError> {
        self.end_pending(&pending.id);
        let (Some(user), Some(grant)) = (pending.user.clone(), pending.grant.clone()) else {
            return Err(pending.redirect("access_denied", "nobody signed in"));
        };
        if !approve {
            return Err(pending.redirect("access_denied", "the user did not grant the app access"));
        }
        let mut grant = grant;
        if pending.needs_patient_picked() {
            match patient.filter(|p| fhir::is_valid_id(p)) {
                Some(patient) => grant.patient = Some(patient.to_string()),
                None => return Err(pending.redirect("access_denied", "no patient was picked")),
            }
        }
        let code = random_text(32).map_err(|e| pending.redirect("server_error", e.to_string()))?;
        let entry: Code = json!({
            "client_id": pending.client.id, "redirect_uri": pending.redirect_uri,
            "code_challenge": pending.code_challenge, "nonce": pending.nonce,
            "user": user_json(&user), "grant": grant_json(&grant),
            "created_ms": sign_ins::now_ms(), "issued": null,
        });
        // Spent codes are kept a while, so that a second exchange is recognised as such.
        sign_ins::put(
            &self.db,
            Kind::Code,
            &sha256_hex(&code),
            &entry,
            10 * CODE_SECONDS.max(self.code_seconds),
        )
        .map_err(|e| pending.redirect("server_error", e.to_string()))?;
        Ok(with_query(&pending.redirect_uri, &[("code", code), ("state", pending.state.clone())]))
    }

    // ---- EHR launch ---------------------------------------------------------------------

    /// Opens an EHR launch for `identity` (staff, from the workbench): the `launch` value the
    /// app is given. The caller checks the patient exists and is visible to them.
    pub fn open_launch(
        &self,
        identity: &Identity,
        patient: Option<&str>,
        encounter: Option<&str>,
    ) -> Result<String, OAuthError> {
        if identity.role == Role::Patient || identity.patient.is_some() {
            return Err(OAuthError::new("access_denied", "apps are launched by staff"));
        }
        for id in [patient, encounter].into_iter().flatten() {
            if !fhir::is_valid_id(id) {
                return Err(OAuthError::new("invalid_request", format!("'{id}' is not a valid id")));
            }
        }
        let id = random_text(24).map_err(|e| OAuthError::new("server_error", e.to_string()))?;
        let launch = Launch {
            id: id.clone(),
            user: identity.user.clone(),
            patient: patient.map(str::to_string),
            encounter: encounter.map(str::to_string),
        };
        sign_ins::put(&self.db, Kind::Launch, &id, &launch_json(&launch), LAUNCH_SECONDS)
            .map_err(|e| OAuthError::new("server_error", e.to_string()))?;
        Ok(id)
    }

    fn launch(&self, id: &str) -> Option<Launch> {
        launch_of(&sign_ins::get(&self.db, Kind::Launch, id).ok()??)
    }

    // ---- the token endpoint ---------------------------------------------------------------

    /// Answers a token request. `token_endpoint` is the URL client assertions must name as
    /// their audience; `fhir_base` the audience of the tokens issued.
    pub fn token(
        &self,
        users: &Users,
        form: &Form,
        token_endpoint: &str,
        fhir_base: &str,
    ) -> Result<Issued, OAuthError> {
        let client = self.authenticate_client(form, token_endpoint)?;
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.exchange_code(users, &client, form, fhir_base),
            Some("refresh_token") => self.refresh(users, &client, form, fhir_base),
            Some("client_credentials") => self.client_credentials(&client, form, fhir_base),
            Some(other) => Err(OAuthError::new(
                "unsupported_grant_type",
                format!(
                    "grant_type {other} is not supported (authorization_code, refresh_token, client_credentials)"
                ),
            )),
            None => Err(OAuthError::new("invalid_request", "grant_type is missing")),
        }
    }

    /// Who the client is: by a signed assertion (`private_key_jwt`), or, for a public
    /// client, by its `client_id` alone.
    pub fn authenticate_client(&self, form: &Form, token_endpoint: &str) -> Result<Client, OAuthError> {
        let named = form.get("client_id").map(String::as_str);
        let Some(assertion) = form.get("client_assertion") else {
            let id = named.ok_or_else(|| {
                OAuthError::new(
                    "invalid_client",
                    "the client is not identified (client_id or client_assertion)",
                )
            })?;
            let client = self.registered(id)?;
            if client.auth != ClientAuth::Public {
                return Err(OAuthError::new(
                    "invalid_client",
                    format!("client {id} authenticates with a signed assertion (private_key_jwt)"),
                ));
            }
            return Ok(client);
        };
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return Err(OAuthError::new(
                "invalid_client",
                format!("client_assertion_type must be {JWT_BEARER}"),
            ));
        }
        // The issuer, read before verifying, only picks which keys to verify with.
        let claimed = unverified_claims(assertion)
            .and_then(|claims| claims.get("iss").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| OAuthError::new("invalid_client", "the client assertion names no issuer (iss)"))?;
        let client = self.registered(&claimed)?;
        if named.is_some_and(|named| named != client.id) {
            return Err(OAuthError::new("invalid_client", "client_id and the assertion's issuer differ"));
        }
        let ClientAuth::PrivateKeyJwt { jwks } = &client.auth else {
            return Err(OAuthError::new(
                "invalid_client",
                format!("client {} is public and has no keys", client.id),
            ));
        };
        let keys = jwt::Jwks::from_json(jwks.as_bytes())
            .map_err(|e| OAuthError::new("invalid_client", format!("the client's keys are unusable: {e}")))?;
        let now = now_seconds();
        let claims = Verifier::from(keys)
            .with_audience(token_endpoint)
            .verify(assertion, now)
            .map_err(|e| OAuthError::new("invalid_client", format!("the client assertion is refused: {e}")))?
            .ok_or_else(|| OAuthError::new("invalid_client", "the client assertion is not a JWT"))?;
        if claims.get("sub").and_then(Value::as_str) != Some(client.id.as_str()) {
            return Err(OAuthError::new(
                "invalid_client",
                "the client assertion's sub must be the client id",
            ));
        }
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if exp > now + ASSERTION_MAX_SECONDS + 5 {
            return Err(OAuthError::new(
                "invalid_client",
                format!("the client assertion's exp is more than {ASSERTION_MAX_SECONDS} seconds away"),
            ));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| OAuthError::new("invalid_client", "the client assertion has no jti"))?;
        let _ = self.db.execute("DELETE FROM oauth_client_assertions WHERE expires < ?1", params![now]);
        let fresh = self
            .db
            .execute(
                "INSERT INTO oauth_client_assertions (client_id, jti, expires) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![&client.id, jti, exp],
            )
            .map_err(|e| OAuthError::new("server_error", e.to_string()))?;
        if fresh == 0 {
            return Err(OAuthError::new(
                "invalid_client",
                "the client assertion was already used (its jti was seen); sign a new one for each request",
            ));
        }
        Ok(client)
    }

    fn registered(&self, id: &str) -> Result<Client, OAuthError> {
        self.clients
            .get(id)
            .map_err(|e| OAuthError::new("server_error", e.to_string()))?
            .ok_or_else(|| OAuthError::new("invalid_client", format!("no client {id} is registered here")))
    }

    fn exchange_code(
        &self,
        users: &Users,
        client: &Client,
        form: &Form,
        fhir_base: &str,
    ) -> Result<Issued, OAuthError> {
        let code = form.get("code").ok_or_else(|| OAuthError::new("invalid_request", "code is missing"))?;
        let verifier = form.get("code_verifier").ok_or_else(|| {
            OAuthError::new("invalid_request", "code_verifier is missing (PKCE is required)")
        })?;
        let server_error = |e: Error| OAuthError::new("server_error", e.to_string());
        let key = sha256_hex(code);
        let unknown = || OAuthError::new("invalid_grant", "the authorization code is unknown or has expired");
        let Some(entry) = sign_ins::get(&self.db, Kind::Code, &key).map_err(server_error)? else {
            return Err(unknown());
        };
        let already_used = |entry: &Code| {
            let jti = entry["issued"][0].as_str().unwrap_or("");
            self.revoke_issued(jti, entry["issued"][1].as_str());
            OAuthError::new(
                "invalid_grant",
                "the authorization code was already used; the tokens issued for it are revoked",
            )
        };
        if !entry["issued"].is_null() {
            return Err(already_used(&entry));
        }
        let created_ms = entry["created_ms"].as_i64().unwrap_or(0);
        if (sign_ins::now_ms() - created_ms) as f64 >= self.code_seconds as f64 * 1000.0 {
            return Err(OAuthError::new("invalid_grant", "the authorization code has expired"));
        }
        let text = |name: &str| entry[name].as_str().unwrap_or("").to_string();
        if text("client_id") != client.id {
            return Err(OAuthError::new(
                "invalid_grant",
                "the authorization code was issued to another client",
            ));
        }
        if form.get("redirect_uri") != Some(&text("redirect_uri")) {
            return Err(OAuthError::new(
                "invalid_grant",
                "redirect_uri differs from the authorization request's",
            ));
        }
        if !pkce_matches(verifier, &text("code_challenge")) {
            return Err(OAuthError::new(
                "invalid_grant",
                "the PKCE code_verifier does not match the code_challenge",
            ));
        }
        let (Some(user), Some(grant)) = (user_of(&entry["user"]), grant_of(&entry["grant"])) else {
            return Err(unknown());
        };
        let nonce = entry["nonce"].as_str().map(str::to_string);
        // Spent now, whatever follows: of two exchanges at once (through one server or two),
        // one spends it and the other finds it spent.
        let mut spent = entry.clone();
        spent["issued"] = json!(["", null]);
        if !sign_ins::replace(&self.db, Kind::Code, &key, &entry, &spent).map_err(server_error)? {
            return Err(match sign_ins::get(&self.db, Kind::Code, &key).map_err(server_error)? {
                Some(now) => already_used(&now),
                None => unknown(),
            });
        }
        if !users.is_active(&user.0).unwrap_or(false) {
            return Err(OAuthError::new("invalid_grant", "the user who granted access no longer exists"));
        }
        let issued = self.issue(client, &user, &grant, fhir_base, nonce.as_deref(), None)?;
        let mut exchanged = spent.clone();
        exchanged["issued"] = json!([issued.1, issued.2]);
        // Recorded so that a second exchange revokes what this one issued.
        let _ = sign_ins::replace(&self.db, Kind::Code, &key, &spent, &exchanged);
        Ok(issued.0)
    }

    fn refresh(
        &self,
        users: &Users,
        client: &Client,
        form: &Form,
        fhir_base: &str,
    ) -> Result<Issued, OAuthError> {
        let token = form
            .get("refresh_token")
            .ok_or_else(|| OAuthError::new("invalid_request", "refresh_token is missing"))?;
        let hash = sha256_hex(token);
        let now = now_seconds();
        let server_error = |e: database::Error| OAuthError::new("server_error", e.to_string());
        let row = self
            .db
            .query_opt(
                "SELECT client_id, \"user\", scope, patient, encounter, expires, revoked FROM oauth_refresh_tokens WHERE token_hash = ?1",
                params![&hash],
            )
            .and_then(|found| {
                found
                    .map(|r| {
                        Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.opt_text(3)?, r.opt_text(4)?, r.integer(5)?, r.integer(6)? != 0))
                    })
                    .transpose()
            })
            .map_err(server_error)?;
        let Some((client_id, user, scope, patient, encounter, expires, revoked)) = row else {
            return Err(OAuthError::new("invalid_grant", "the refresh token is unknown"));
        };
        if revoked {
            return Err(OAuthError::new("invalid_grant", "the refresh token was revoked or already used"));
        }
        if expires <= now {
            return Err(OAuthError::new("invalid_grant", "the refresh token has expired"));
        }
        if client_id != client.id {
            return Err(OAuthError::new("invalid_grant", "the refresh token was issued to another client"));
        }
        let user =
            users.record(&user).map_err(|e| OAuthError::new("server_error", e.to_string()))?.ok_or_else(
                || OAuthError::new("invalid_grant", "the user who granted access no longer exists"),
            )?;
        let granted: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
        let scopes = match form.get("scope") {
            None => granted,
            Some(asked) => {
                let asked: Vec<String> = asked.split_whitespace().map(str::to_string).collect();
                if let Some(beyond) = asked.iter().find(|s| !granted.contains(s)) {
                    return Err(OAuthError::new(
                        "invalid_scope",
                        format!("{beyond} was not granted; a refresh may only narrow the scopes"),
                    ));
                }
                asked
            }
        };
        // Rotated: the one presented is spent, by one update, so of two refreshes at once
        // (through one server or two) only one goes on.
        let spent = self
            .db
            .execute(
                "UPDATE oauth_refresh_tokens SET revoked = 1 WHERE token_hash = ?1 AND revoked = 0",
                params![&hash],
            )
            .map_err(server_error)?;
        if spent == 0 {
            return Err(OAuthError::new("invalid_grant", "the refresh token was revoked or already used"));
        }
        let grant = Grant { scopes, patient, encounter, wants_patient: false };
        Ok(self.issue(client, &user, &grant, fhir_base, None, Some(expires))?.0)
    }

    fn client_credentials(
        &self,
        client: &Client,
        form: &Form,
        fhir_base: &str,
    ) -> Result<Issued, OAuthError> {
        if client.auth == ClientAuth::Public {
            return Err(OAuthError::new(
                "unauthorized_client",
                "client_credentials is for clients that authenticate with keys",
            ));
        }
        let asked = form.get("scope").map(String::as_str).unwrap_or("");
        let mut granted = Vec::new();
        for text in asked.split_whitespace() {
            let scope = Scope::parse(text).map_err(|e| OAuthError::new("invalid_scope", e.to_string()))?;
            let Some(scope) = scope else { continue };
            if scope.context != Context::System {
                return Err(OAuthError::new(
                    "invalid_scope",
                    format!("{text}: backend services are granted system/ scopes only"),
                ));
            }
            // Backend services read and search; writes come through users.
            let permissions: String = scope.permissions.chars().filter(|c| "rs".contains(*c)).collect();
            if permissions.is_empty() {
                return Err(OAuthError::new(
                    "invalid_scope",
                    format!("{text}: backend services may read and search (system/TYPE.rs) only"),
                ));
            }
            granted.push(format_scope(&Scope { permissions, ..scope }));
        }
        if granted.is_empty() {
            return Err(OAuthError::new("invalid_scope", "ask for system/ scopes (e.g. system/*.rs)"));
        }
        let now = now_seconds();
        let jti = random_text(16).map_err(|e| OAuthError::new("server_error", e.to_string()))?;
        let scope = granted.join(" ");
        let claims = json!({
            "iss": fhir_base, "sub": client.id, "aud": fhir_base, "client_id": client.id,
            "iat": now, "exp": now + ACCESS_TOKEN_SECONDS, "jti": jti,
            "scope": scope, "role": Role::Analyst.as_str(),
        });
        let access = self.signer.sign(&claims).map_err(|e| OAuthError::new("server_error", e.to_string()))?;
        Ok(Issued {
            body: json!({ "access_token": access, "token_type": "Bearer",
                          "expires_in": ACCESS_TOKEN_SECONDS, "scope": scope }),
            client_id: client.id.clone(),
            subject: client.id.clone(),
            scope,
            patient: None,
        })
    }

    /// Issues an access token (and a refresh token when asked for, an id token for
    /// `openid`); also returns the access token's jti and the refresh token's hash.
    fn issue(
        &self,
        client: &Client,
        user: &UserRecord,
        grant: &Grant,
        fhir_base: &str,
        nonce: Option<&str>,
        refresh_expires: Option<i64>,
    ) -> Result<(Issued, String, Option<String>), OAuthError> {
        let fail = |e: Error| OAuthError::new("server_error", e.to_string());
        let (name, role, own_patient, fhir_user) = user;
        // A patient is their Patient resource, whether or not it was named when they were added.
        let fhir_user = &fhir_user.clone().or_else(|| {
            own_patient.as_ref().filter(|_| *role == Role::Patient).map(|id| format!("Patient/{id}"))
        });
        let now = now_seconds();
        let jti = random_text(16).map_err(fail)?;
        let scope = grant.scopes.join(" ");
        let mut claims = json!({
            "iss": fhir_base, "sub": name, "aud": fhir_base, "client_id": client.id,
            "iat": now, "exp": now + ACCESS_TOKEN_SECONDS, "jti": jti,
            "scope": scope, "role": role.as_str(),
        });
        if let Some(patient) = &grant.patient {
            claims["patient"] = Value::from(patient.as_str());
        }
        if let Some(fhir_user) = fhir_user {
            claims["fhirUser"] = Value::from(fhir_user.as_str());
        }
        let access = self.signer.sign(&claims).map_err(fail)?;
        let mut body = json!({
            "access_token": access, "token_type": "Bearer", "expires_in": ACCESS_TOKEN_SECONDS,
            "scope": scope, "need_patient_banner": false,
        });
        if let Some(patient) = &grant.patient {
            body["patient"] = Value::from(patient.as_str());
        }
        if let Some(encounter) = &grant.encounter {
            body["encounter"] = Value::from(encounter.as_str());
        }
        let has = |s: &str| grant.scopes.iter().any(|g| g == s);
        if has("openid") && (has("fhirUser") || has("profile")) {
            let mut id_claims = json!({
                "iss": fhir_base, "sub": name, "aud": client.id, "iat": now,
                "exp": now + ACCESS_TOKEN_SECONDS,
            });
            if let Some(fhir_user) = fhir_user {
                id_claims["fhirUser"] = Value::from(absolute_reference(fhir_base, fhir_user));
            }
            if let Some(nonce) = nonce {
                id_claims["nonce"] = Value::from(nonce);
            }
            body["id_token"] = Value::from(self.signer.sign(&id_claims).map_err(fail)?);
        }
        let lifetime = if has("offline_access") {
            Some(OFFLINE_SECONDS)
        } else if has("online_access") {
            Some(ONLINE_SECONDS)
        } else {
            None
        };
        let mut refresh_hash = None;
        if let Some(lifetime) = lifetime {
            let refresh = format!("crr_{}", random_text(32).map_err(fail)?);
            let hash = sha256_hex(&refresh);
            self.db
                .execute(
                    "INSERT INTO oauth_refresh_tokens (token_hash, client_id, \"user\", scope, patient, encounter, expires)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        &hash,
                        &client.id,
                        name,
                        &scope,
                        grant.patient.as_deref(),
                        grant.encounter.as_deref(),
                        refresh_expires.unwrap_or(now + lifetime)
                    ],
                )
                .map_err(|e| fail(e.into()))?;
            body["refresh_token"] = Value::from(refresh);
            refresh_hash = Some(hash);
        }
        let issued = Issued {
            body,
            client_id: client.id.clone(),
            subject: name.clone(),
            scope,
            patient: grant.patient.clone(),
        };
        Ok((issued, jti, refresh_hash))
    }

    fn revoke_issued(&self, jti: &str, refresh_hash: Option<&str>) {
        if !jti.is_empty() {
            self.revoke_jti(jti, now_seconds() + ACCESS_TOKEN_SECONDS);
        }
        if let Some(hash) = refresh_hash {
            let _ = self
                .db
                .execute("UPDATE oauth_refresh_tokens SET revoked = 1 WHERE token_hash = ?1", params![hash]);
        }
    }

    fn revoke_jti(&self, jti: &str, expires: i64) {
        if let Ok(mut revoked) = self.revoked.write() {
            revoked.insert(jti.to_string());
        }
        let _ = self.db.execute(
            "INSERT INTO oauth_revoked_tokens (jti, expires) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![jti, expires],
        );
    }

    // ---- tokens in use ---------------------------------------------------------------------

    /// The identity of an access token this server issued; `Ok(None)` for a token that is
    /// not one of its JWTs (another verifier may know it); an error for one of its own that
    /// is no longer good (expired, tampered, revoked, its user or client removed).
    pub fn authenticate(&self, users: &Users, token: &str) -> Result<Option<Identity>, Error> {
        let Some(claims) = self.own_claims(token)? else { return Ok(None) };
        self.check_in_force(users, &claims)?;
        jwt::identity(&claims, Subjects::Local).map(Some)
    }

    /// Claims of a JWT signed with this server's key, checked; `Ok(None)` if the token is not
    /// a JWT or names another key.
    fn own_claims(&self, token: &str) -> Result<Option<Map<String, Value>>, Error> {
        let Some(header) = unverified_header(token) else { return Ok(None) };
        if header.get("kid").and_then(Value::as_str) != Some(self.signer.kid()) {
            return Ok(None);
        }
        self.own.verify(token, now_seconds())
    }

    fn check_in_force(&self, users: &Users, claims: &Map<String, Value>) -> Result<(), Error> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
        if self.is_revoked(text("jti"))? {
            return Err(Error::Jwt("the token was revoked".into()));
        }
        let client_id = text("client_id");
        if !self.client_in_force(client_id)? {
            return Err(Error::Jwt(format!("the token's client {client_id} is no longer registered")));
        }
        let subject = text("sub");
        if subject != client_id && !users.is_active(subject)? {
            return Err(Error::Jwt("the token's user no longer exists".into()));
        }
        Ok(())
    }

    fn client_in_force(&self, id: &str) -> Result<bool, Error> {
        if self.active_clients.read().is_ok_and(|a| a.get(id).is_some_and(|t| t.elapsed().as_secs() < 10)) {
            return Ok(true);
        }
        let found = self.clients.get(id)?.is_some();
        if found && let Ok(mut active) = self.active_clients.write() {
            active.insert(id.to_string(), Instant::now());
        }
        Ok(found)
    }

    /// Token introspection (RFC 7662): what an access or refresh token stands for, or
    /// `{"active": false}`.
    pub fn introspect(&self, users: &Users, token: &str) -> Value {
        let inactive = json!({ "active": false });
        if let Ok(Some(claims)) = self.own_claims(token) {
            if self.check_in_force(users, &claims).is_err() {
                return inactive;
            }
            let mut answer = json!({ "active": true, "token_type": "Bearer" });
            for name in
                ["scope", "client_id", "sub", "exp", "iat", "iss", "aud", "patient", "fhirUser", "jti"]
            {
                if let Some(value) = claims.get(name) {
                    answer[name] = value.clone();
                }
            }
            if let Some(sub) = claims.get("sub") {
                answer["username"] = sub.clone();
            }
            return answer;
        }
        let row = self
            .db
            .query_opt(
                "SELECT client_id, \"user\", scope, patient, expires, revoked FROM oauth_refresh_tokens WHERE token_hash = ?1",
                params![sha256_hex(token)],
            )
            .ok()
            .flatten()
            .and_then(|r| {
                Some((
                    r.text(0).ok()?,
                    r.text(1).ok()?,
                    r.text(2).ok()?,
                    r.opt_text(3).ok()?,
                    r.integer(4).ok()?,
                    r.integer(5).ok()? != 0,
                ))
            });
        match row {
            Some((client_id, user, scope, patient, expires, false))
                if expires > now_seconds() && users.is_active(&user).unwrap_or(false) =>
            {
                let mut answer = json!({ "active": true, "token_type": "refresh_token", "client_id": client_id,
                                         "sub": user, "username": user, "scope": scope, "exp": expires });
                if let Some(patient) = patient {
                    answer["patient"] = Value::from(patient);
                }
                answer
            }
            _ => inactive,
        }
    }

    /// Token revocation (RFC 7009) by the client the token was issued to: an access token
    /// stops working at once, a refresh token can no longer be used. Unknown tokens, and
    /// another client's, are left as they are (the answer is the same, so it tells nothing).
    pub fn revoke(&self, form: &Form, token_endpoint: &str) -> Result<bool, OAuthError> {
        let client = self.authenticate_client(form, token_endpoint)?;
        let token =
            form.get("token").ok_or_else(|| OAuthError::new("invalid_request", "token is missing"))?;
        if let Ok(Some(claims)) = self.own_claims(token) {
            if claims.get("client_id").and_then(Value::as_str) != Some(client.id.as_str()) {
                return Ok(false);
            }
            let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
            let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
            self.revoke_jti(jti, exp);
            return Ok(true);
        }
        let changed = self
            .db
            .execute(
                "UPDATE oauth_refresh_tokens SET revoked = 1 WHERE token_hash = ?1 AND client_id = ?2",
                params![sha256_hex(token), &client.id],
            )
            .map_err(|e| OAuthError::new("server_error", e.to_string()))?;
        Ok(changed > 0)
    }
}

/// What a user may grant an app that asks for `asked`: the scopes narrowed to what their
/// role permits, and the patient in context. Errors: the OAuth error and why.
fn grant_for(
    user: &UserRecord,
    asked: &[String],
    launch: Option<&Launch>,
) -> Result<Grant, (&'static str, String)> {
    let (_, role, own_patient, _) = user;
    let role_scopes = role.scopes();
    let mut scopes: Vec<String> = Vec::new();
    let mut clinical_asked = false;
    let mut wants_patient = false;
    for text in asked {
        match Scope::parse(text) {
            Ok(Some(scope)) => {
                clinical_asked = true;
                if *role == Role::Patient && scope.context != Context::Patient {
                    return Err((
                        "invalid_scope",
                        format!("{text}: a patient's app may ask for patient/ scopes only"),
                    ));
                }
                if scope.context == Context::Patient {
                    wants_patient = true;
                }
                for held in &role_scopes.0 {
                    if let Some(narrowed) = intersect(&scope, held) {
                        let narrowed = format_scope(&narrowed);
                        if !scopes.contains(&narrowed) {
                            scopes.push(narrowed);
                        }
                    }
                }
            }
            Ok(None) if CONTEXT_SCOPES.contains(&text.as_str()) => {
                if text == "launch/patient" {
                    wants_patient = true;
                }
                let allowed = match text.as_str() {
                    // The EHR launch's context, only with a launch.
                    "launch" | "launch/encounter" => launch.is_some(),
                    _ => true,
                };
                if allowed && !scopes.contains(text) {
                    scopes.push(text.clone());
                }
            }
            // Scopes this server does not know are not granted (RFC 6749 §3.3).
            Ok(None) => {}
            Err(error) => return Err(("invalid_scope", error.to_string())),
        }
    }
    if clinical_asked && !scopes.iter().any(|s| matches!(Scope::parse(s), Ok(Some(_)))) {
        return Err((
            "invalid_scope",
            format!("none of the scopes asked for are open to the {} role", role.as_str()),
        ));
    }
    let patient =
        if *role == Role::Patient { own_patient.clone() } else { launch.and_then(|l| l.patient.clone()) };
    let encounter = launch.and_then(|l| l.encounter.clone());
    Ok(Grant { scopes, patient, encounter, wants_patient: wants_patient && *role != Role::Patient })
}

/// The part of `asked` that `held` permits: `None` if nothing. A `user/` or `system/` scope
/// held covers narrower contexts (`patient/` within it).
fn intersect(asked: &Scope, held: &Scope) -> Option<Scope> {
    let rank = |c: Context| match c {
        Context::Patient => 0,
        Context::User => 1,
        Context::System => 2,
    };
    // A patient's own scopes are patient scopes; staff hold user/ or system/ scopes.
    if rank(held.context) < rank(asked.context) {
        return None;
    }
    let resource_type = match (&asked.resource_type, &held.resource_type) {
        (None, other) | (other, None) => other.clone(),
        (Some(a), Some(h)) if a == h => Some(a.clone()),
        _ => return None,
    };
    let permissions: String =
        "cruds".chars().filter(|c| asked.permissions.contains(*c) && held.permissions.contains(*c)).collect();
    (!permissions.is_empty()).then_some(Scope { context: asked.context, resource_type, permissions })
}

fn format_scope(scope: &Scope) -> String {
    let context = match scope.context {
        Context::Patient => "patient",
        Context::User => "user",
        Context::System => "system",
    };
    format!("{context}/{}.{}", scope.resource_type.as_deref().unwrap_or("*"), scope.permissions)
}

/// A `fhirUser` reference made absolute against the FHIR base (OpenID Connect wants a URL).
fn absolute_reference(fhir_base: &str, reference: &str) -> String {
    if reference.contains("://") {
        reference.to_string()
    } else {
        format!("{}/{reference}", fhir_base.trim_end_matches('/'))
    }
}

/// Whether two spellings name the same FHIR base (a trailing slash aside).
fn same_base(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// An S256 challenge: the base64url SHA-256 of a verifier, 43 characters.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) equals the challenge; verifiers are 43 to 128
/// unreserved characters.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    well_formed && constant_time_eq(jwt::base64url_encode(digest.as_ref()).as_bytes(), challenge.as_bytes())
}

fn unverified_part(token: &str, index: usize) -> Option<Map<String, Value>> {
    let part = token.split('.').nth(index)?;
    match serde_json::from_slice(&jwt::base64url_decode(part)?) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

fn unverified_header(token: &str) -> Option<Map<String, Value>> {
    (token.split('.').count() == 3).then(|| unverified_part(token, 0)).flatten()
}

fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    (token.split('.').count() == 3).then(|| unverified_part(token, 1)).flatten()
}

/// The key id of a signing key: derived from its public point, so every server holding the
/// key names it alike.
fn kid_of(signer: &Signer) -> String {
    let jwk = signer.public_jwk();
    let point = format!("{}{}", jwk["x"].as_str().unwrap_or(""), jwk["y"].as_str().unwrap_or(""));
    sha256_hex(&point)[..16].to_string()
}

/// The access tokens revoked and not yet expired.
fn read_revoked(db: &Database) -> Result<HashSet<String>, Error> {
    db.query("SELECT jti FROM oauth_revoked_tokens WHERE expires >= ?1", params![now_seconds()])?
        .iter()
        .map(|row| Ok(row.text(0)?))
        .collect()
}

/// The signing key of a shared database: the one stored, or this server's new one when it
/// is the first (of several starting at once, the first insert wins and all read it back).
fn shared_key(db: &Database) -> Result<Signer, Error> {
    db.create_tables(POSTGRES_KEY_TABLE)?;
    let (_, fresh) = Signer::generate_es256("probe")?;
    db.execute(
        "INSERT INTO oauth_signing_key (one, pkcs8) VALUES (1, ?1) ON CONFLICT DO NOTHING",
        &[database::Value::Blob(fresh)],
    )?;
    let stored = db
        .query_opt("SELECT pkcs8 FROM oauth_signing_key WHERE one = 1", &[])?
        .ok_or_else(|| Error::Invalid("the shared signing key is missing".into()))?
        .blob(0)?;
    let probe = Signer::es256("probe", &stored)?;
    Signer::es256(&kid_of(&probe), &stored)
}

/// The server's signing key: read, or created at first start (readable by its owner only).
fn load_or_create_key(path: &Path) -> Result<Signer, Error> {
    if let Ok(pkcs8) = std::fs::read(path) {
        let probe =
            Signer::es256("probe", &pkcs8).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        return Signer::es256(&kid_of(&probe), &pkcs8);
    }
    let (probe, pkcs8) = Signer::generate_es256("probe")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, &pkcs8)?;
    file.sync_all()?;
    Signer::es256(&kid_of(&probe), &pkcs8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> Scope {
        Scope::parse(text).unwrap().unwrap()
    }

    #[test]
    fn staff_grants_narrow_to_their_role_and_patients_get_patient_scopes_only() {
        let analyst: UserRecord = ("ana".into(), Role::Analyst, None, None);
        let asked: Vec<String> =
            ["launch/patient", "patient/*.cruds", "user/Observation.rs", "openid", "made-up"]
                .map(String::from)
                .to_vec();
        let grant = grant_for(&analyst, &asked, None).unwrap();
        assert_eq!(grant.scopes, ["launch/patient", "patient/*.rs", "user/Observation.rs", "openid"]);
        assert!(grant.wants_patient && grant.patient.is_none());
        let patient: UserRecord = ("pat".into(), Role::Patient, Some("p1".into()), None);
        let grant = grant_for(&patient, &["patient/*.read".to_string()], None).unwrap();
        assert_eq!((grant.scopes, grant.patient), (vec!["patient/*.rs".to_string()], Some("p1".to_string())));
        let refused = grant_for(&patient, &["user/*.rs".to_string()], None).unwrap_err();
        assert_eq!(refused.0, "invalid_scope");
        let coder: UserRecord = ("cody".into(), Role::Coder, None, None);
        assert_eq!(grant_for(&coder, &["system/*.rs".to_string()], None).unwrap_err().0, "invalid_scope");
        assert_eq!(
            intersect(&scope("user/Condition.cruds"), &scope("user/Condition.cu")).map(|s| format_scope(&s)),
            Some("user/Condition.cu".to_string())
        );
        assert!(intersect(&scope("user/Claim.r"), &scope("user/Condition.cu")).is_none());
    }

    #[test]
    fn pkce_follows_rfc_7636() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        assert!(!pkce_matches("short", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    }
}
