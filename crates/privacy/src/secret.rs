//! The small primitives every secret here is made and checked with: session ids, CSRF and
//! OAuth tokens are random text; only their SHA-256 is kept; comparisons take the same time
//! whatever matched.

use crate::{Error, jwt};

/// `bytes` random bytes as base64url text (a token, a code, a session id).
pub fn random_text(bytes: usize) -> Result<String, Error> {
    let mut random = vec![0u8; bytes];
    getrandom::fill(&mut random).map_err(|e| Error::Invalid(format!("no randomness: {e}")))?;
    Ok(jwt::base64url_encode(&random))
}

/// The SHA-256 of `text` in lowercase hex: what is kept instead of a secret.
pub fn sha256_hex(text: &str) -> String {
    crate::hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

/// Whether two byte strings are equal, every byte compared, so the time taken does not tell
/// how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
