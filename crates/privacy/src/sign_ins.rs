//! Sign-ins in progress: authorization requests between their steps, authorization codes
//! until their exchange (and a while after, so a second exchange is recognised), and EHR
//! launches until an app uses them. Kept in the privacy tables rather than in one process,
//! so on a PostgreSQL record whichever server a browser or an app reaches next takes the
//! next step (no sticky sessions needed in front of several servers).
//!
//! Each entry is a JSON body under a kind and a key, with an expiry; expired entries are
//! never returned and are cleared as new ones arrive.

use database::{Database, params};
use serde_json::Value;

use crate::Error;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS oauth_sign_ins (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, key)
);";

/// What an entry is.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// An authorization request between its start and the user's decision.
    Request,
    /// An authorization code, by the hash of its value.
    Code,
    /// An EHR launch, by its id.
    Launch,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Code => "code",
            Kind::Launch => "launch",
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    fhir::datetime::epoch_millis_now()
}

/// Stores (or replaces) an entry that lasts `seconds`; clears the expired ones of its kind.
pub(crate) fn put(db: &Database, kind: Kind, key: &str, body: &Value, seconds: u64) -> Result<(), Error> {
    let now = now_ms();
    db.transaction(|handle| {
        handle.execute(
            "DELETE FROM oauth_sign_ins WHERE kind = ?1 AND expires_ms <= ?2",
            params![kind.name(), now],
        )?;
        handle.execute(
            "INSERT INTO oauth_sign_ins (kind, key, body, expires_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, expires_ms = excluded.expires_ms",
            params![kind.name(), key, body.to_string(), now + (seconds as i64).saturating_mul(1000)],
        )?;
        Ok(())
    })?;
    Ok(())
}

/// The entry, unless it is missing or expired.
pub(crate) fn get(db: &Database, kind: Kind, key: &str) -> Result<Option<Value>, Error> {
    let row = db.query_opt(
        "SELECT body FROM oauth_sign_ins WHERE kind = ?1 AND key = ?2 AND expires_ms > ?3",
        params![kind.name(), key, now_ms()],
    )?;
    match row {
        None => Ok(None),
        Some(row) => serde_json::from_str(&row.text(0)?)
            .map(Some)
            .map_err(|e| Error::Invalid(format!("a stored sign-in step is not JSON: {e}"))),
    }
}

/// Replaces an entry's body only if it is still `expected`: of two servers taking the same
/// step at once (two exchanges of one code), one succeeds. The expiry stays.
pub(crate) fn replace(
    db: &Database,
    kind: Kind,
    key: &str,
    expected: &Value,
    body: &Value,
) -> Result<bool, Error> {
    Ok(db.execute(
        "UPDATE oauth_sign_ins SET body = ?4 WHERE kind = ?1 AND key = ?2 AND body = ?3",
        params![kind.name(), key, expected.to_string(), body.to_string()],
    )? == 1)
}

pub(crate) fn remove(db: &Database, kind: Kind, key: &str) -> Result<(), Error> {
    db.execute("DELETE FROM oauth_sign_ins WHERE kind = ?1 AND key = ?2", params![kind.name(), key])?;
    Ok(())
}

/// Unexpired entries of a kind (a bound on sign-ins in progress).
pub(crate) fn count(db: &Database, kind: Kind) -> Result<i64, Error> {
    let row = db.query_opt(
        "SELECT count(*) FROM oauth_sign_ins WHERE kind = ?1 AND expires_ms > ?2",
        params![kind.name(), now_ms()],
    )?;
    Ok(row.map(|r| r.integer(0)).transpose()?.unwrap_or(0))
}
