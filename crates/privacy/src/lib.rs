//! Privacy by construction: who is asking (`Identity` from an API token), what they may do
//! (roles and SMART scopes), and the tamper-evident audit trail of every access.

pub mod audit;
pub mod jwt;
pub mod monitor;
pub mod role;
pub mod scope;
pub mod users;

pub use audit::{Access, AuditLog, Tamper, Verification};
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

pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
