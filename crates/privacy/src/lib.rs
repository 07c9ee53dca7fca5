//! Privacy by construction: who is asking (`Identity` from an API token), what they may do
//! (roles and SMART scopes), and the tamper-evident audit trail of every access.

pub mod audit;
pub mod audit_search;
pub mod clients;
pub mod jwt;
pub mod monitor;
pub mod oauth;
pub mod policy;
pub mod role;
pub mod scope;
pub mod secret;
mod sign_ins;
pub mod users;

pub use audit::{Access, AuditLog, AuditOptions, Durability, Receipt, Tamper, TrailSnapshot, Verification};
pub use clients::{Client, ClientAuth, Clients};
pub use database::Database;
pub use oauth::AuthorizationServer;
pub use policy::{Caller, Grant, Refusal, ResourceFacts, Sight};
pub use role::{Identity, Role};
pub use scope::{Context, Interaction, Scope, Scopes};
pub use users::Users;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("privacy database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The shared tables (users, clients, tokens), on SQLite or PostgreSQL.
    #[error("privacy tables: {0}")]
    Tables(#[from] database::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid scope {0}")]
    Scope(String),
    #[error("{0}")]
    Role(String),
    #[error("{0}")]
    Invalid(String),
    /// An AuditEvent search that cannot be run as asked (unsupported or malformed).
    #[error("{message}")]
    Search { code: fhir::IssueType, message: String },
    /// A bearer JWT that is refused, and why.
    #[error("{0}")]
    Jwt(String),
}

/// The privacy database of a data directory (made with the directory if missing): where the
/// users, clients and tokens of a server on an SQLite record are kept. On a PostgreSQL record
/// they are in its database instead ([`database::Database::postgres`]), shared by its servers.
pub fn open_directory(data_dir: &std::path::Path) -> Result<std::sync::Arc<database::Database>, Error> {
    std::fs::create_dir_all(data_dir)?;
    Ok(database::Database::sqlite(&data_dir.join(users::PRIVACY_FILE))?)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 15) as usize] as char);
    }
    out
}
