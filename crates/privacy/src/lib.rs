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
pub mod users;

pub use audit::{Access, AuditLog, AuditOptions, Durability, Receipt, Tamper, TrailSnapshot, Verification};
pub use clients::{Client, ClientAuth, Clients};
pub use oauth::AuthorizationServer;
pub use policy::{Caller, Grant, Refusal, ResourceFacts, Sight};
pub use role::{Identity, Role};
pub use scope::{Context, Interaction, Scope, Scopes};
pub use users::Users;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("privacy database: {0}")]
    Database(#[from] rusqlite::Error),
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 15) as usize] as char);
    }
    out
}
