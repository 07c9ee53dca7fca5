//! SMART clients, registered by an administrator (`chartroom client add`): which apps and
//! backend services may ask the authorization server for tokens, and where it may send a
//! user back. A redirect is only ever to a URI registered here, compared exactly (OAuth 2.1):
//! an authorization request naming any other is refused without redirecting, so the server is
//! never an open redirector.

use std::path::Path;
use std::sync::Arc;

use database::{Database, Dialect, params};

use crate::{Error, hex};

/// How a client proves who it is at the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// An app that cannot keep a secret (in a browser or on a phone): PKCE binds its code.
    Public,
    /// A signed JWT assertion (`private_key_jwt`), checked against these public keys: backend
    /// services, and apps with a server of their own.
    PrivateKeyJwt { jwks: String },
}

/// A registered client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub auth: ClientAuth,
    pub created: String,
}

impl Client {
    /// Whether `uri` is one of the client's redirect URIs, character for character.
    pub fn redirects_to(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|registered| registered == uri)
    }
}

/// The clients of a data directory (in its privacy database, beside the users).
pub struct Clients {
    db: Arc<Database>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    jwks TEXT,
    created TEXT NOT NULL
);";

/// The same on PostgreSQL, where registration order is a column (SQLite has its rowid).
const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    jwks TEXT,
    created TEXT NOT NULL,
    ord BIGSERIAL
);";

/// The prefix of client ids, so they are recognisable beside user tokens.
pub(crate) const CLIENT_PREFIX: &str = "cl_";

impl Clients {
    /// The clients of a data directory (its privacy database).
    pub fn open(data_dir: &Path) -> Result<Clients, Error> {
        Clients::on(crate::open_directory(data_dir)?)
    }

    /// The clients in `db`, making the table if it is missing.
    pub fn on(db: Arc<Database>) -> Result<Clients, Error> {
        db.create_tables(match db.dialect() {
            Dialect::Sqlite => SCHEMA,
            Dialect::Postgres => POSTGRES_SCHEMA,
        })?;
        Ok(Clients { db })
    }

    /// Registers a client and returns it with its new id. A public client needs a redirect
    /// URI (it can only use the authorization code flow); a client with keys may have none
    /// (a backend service).
    pub fn add(&self, name: &str, redirect_uris: &[String], auth: ClientAuth) -> Result<Client, Error> {
        if name.trim().is_empty() {
            return Err(Error::Invalid("a client needs a name".into()));
        }
        for uri in redirect_uris {
            check_redirect_uri(uri)?;
        }
        if auth == ClientAuth::Public && redirect_uris.is_empty() {
            return Err(Error::Invalid(
                "a public client signs users in through the browser and needs at least one --redirect-uri"
                    .into(),
            ));
        }
        let jwks = match &auth {
            ClientAuth::Public => None,
            ClientAuth::PrivateKeyJwt { jwks } => {
                // Refused now rather than at its first token request.
                crate::jwt::Jwks::from_json(jwks.as_bytes())?;
                Some(jwks.clone())
            }
        };
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .map_err(|e| Error::Invalid(format!("no randomness for a client id: {e}")))?;
        let client = Client {
            id: format!("{CLIENT_PREFIX}{}", hex(&random)),
            name: name.to_string(),
            redirect_uris: redirect_uris.to_vec(),
            auth,
            created: fhir::DateTime::now_utc().to_string(),
        };
        let uris = serde_json::to_string(&client.redirect_uris).map_err(|e| Error::Invalid(e.to_string()))?;
        self.db.execute(
            "INSERT INTO clients (client_id, name, redirect_uris, jwks, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![&client.id, &client.name, uris, jwks, &client.created],
        )?;
        Ok(client)
    }

    /// Every client, oldest first (in the order they were added: two added in the same second
    /// keep it).
    pub fn list(&self) -> Result<Vec<Client>, Error> {
        let order = match self.db.dialect() {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "ord",
        };
        self.db
            .query(
                &format!(
                    "SELECT client_id, name, redirect_uris, jwks, created FROM clients ORDER BY {order}"
                ),
                &[],
            )?
            .iter()
            .map(client_of)
            .collect()
    }

    /// The client with this id, if it is registered.
    pub fn get(&self, id: &str) -> Result<Option<Client>, Error> {
        self.db
            .query_opt(
                "SELECT client_id, name, redirect_uris, jwks, created FROM clients WHERE client_id = ?1",
                params![id],
            )?
            .as_ref()
            .map(client_of)
            .transpose()
    }

    /// Removes a client: it can obtain no further token. `false` when there was none.
    pub fn revoke(&self, id: &str) -> Result<bool, Error> {
        Ok(self.db.execute("DELETE FROM clients WHERE client_id = ?1", params![id])? > 0)
    }
}

/// A row of `client_id, name, redirect_uris, jwks, created`.
fn client_of(row: &database::Row) -> Result<Client, Error> {
    let (id, name, uris, jwks, created) =
        (row.text(0)?, row.text(1)?, row.text(2)?, row.opt_text(3)?, row.text(4)?);
    let redirect_uris: Vec<String> = serde_json::from_str(&uris)
        .map_err(|e| Error::Invalid(format!("client {id}: stored redirect URIs are not a JSON list: {e}")))?;
    let auth = match jwks {
        Some(jwks) => ClientAuth::PrivateKeyJwt { jwks },
        None => ClientAuth::Public,
    };
    Ok(Client { id, name, redirect_uris, auth, created })
}

/// A redirect URI a client may register: absolute, `https`, or `http` only to the machine
/// itself (a native app's loopback listener, RFC 8252); no fragment (RFC 6749 3.1.2), no user
/// information, nothing that is not plain visible ASCII.
pub fn check_redirect_uri(uri: &str) -> Result<(), Error> {
    let refuse = |why: &str| Err(Error::Invalid(format!("redirect URI '{uri}': {why}")));
    if uri.is_empty() || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return refuse("must be plain ASCII without spaces");
    }
    if uri.contains('#') {
        return refuse("must not have a fragment (#)");
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return refuse("must be absolute (https://...)");
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() {
        return refuse("has no host");
    }
    if authority.contains('@') {
        return refuse("must not carry user information (@)");
    }
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if matches!(host.to_ascii_lowercase().as_str(), "localhost" | "127.0.0.1" | "::1") => Ok(()),
        "http" => refuse("plain http is allowed only to localhost, 127.0.0.1 or [::1]; use https"),
        _ => refuse("must use https (or http to the machine itself)"),
    }
}
