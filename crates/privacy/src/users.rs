//! API tokens: `chartroom user add` issues one; only its SHA-256 hash is stored, so a copy of
//! the data directory does not give anyone access. Tokens are looked up on every request, so
//! a running server accepts a new one at once. On PostgreSQL the table is shared by every
//! server of the record: a user added or revoked through one holds at all of them (a server
//! that saw a token in the last [`CACHE_SECONDS`] may accept it until then).

use std::path::Path;
use std::sync::Arc;

use database::{Database, Dialect, Handle, params};

use crate::role::{Identity, Role};
use crate::{Error, hex};

/// The users of a data directory.
pub struct Users {
    db: Arc<Database>,
    /// Recently seen tokens (by hash), so a busy server does not query for every request; an
    /// entry is trusted for [`CACHE_SECONDS`], so a replaced token stops working within that.
    cache: std::sync::RwLock<std::collections::HashMap<String, (Identity, std::time::Instant)>>,
    /// Users recently found to exist, by name, for [`Users::is_active`].
    active: std::sync::RwLock<std::collections::HashMap<String, std::time::Instant>>,
}

/// The shortest password accepted (NIST SP 800-63B asks for at least 8; staff accounts open
/// every patient's record).
const MIN_PASSWORD_CHARS: usize = 12;

/// How long an authenticated token is remembered.
const CACHE_SECONDS: u64 = 10;

/// A user as stored: name, role, the patient they are (patients), their FHIR resource.
pub type UserRecord = (String, Role, Option<String>, Option<String>);

/// The file beside the store holding users and the audit trail.
pub const PRIVACY_FILE: &str = "privacy.sqlite";

/// The tables; `{password}` and `{order}` are where the dialects differ ([`schema`]).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    patient TEXT,
    fhir_user TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL{password}
);
CREATE TABLE IF NOT EXISTS token_revocations ({order}
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    issued TEXT NOT NULL,
    revoked TEXT NOT NULL,
    why TEXT NOT NULL
);";

/// The tables in a dialect: on SQLite the password column comes by migration (it came after
/// tokens) and insertion order is the rowid; on PostgreSQL both are columns from the start.
fn schema(dialect: Dialect) -> String {
    let (password, order) = match dialect {
        Dialect::Sqlite => ("", ""),
        Dialect::Postgres => (",\n    password_hash TEXT", "\n    ord BIGSERIAL PRIMARY KEY,"),
    };
    SCHEMA.replace("{password}", password).replace("{order}", order)
}

/// A token that no longer works: whose, their role, when it was issued and ended, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub name: String,
    pub role: String,
    pub issued: String,
    pub revoked: String,
    pub why: String,
}

/// The prefix of Chartroom API tokens, so they are recognisable in logs and secret scanners.
const TOKEN_PREFIX: &str = "chr_";

impl Users {
    /// The users of a data directory (its privacy database).
    pub fn open(data_dir: &Path) -> Result<Users, Error> {
        Users::on(crate::open_directory(data_dir)?)
    }

    /// The users in `db`, making the tables if they are missing.
    pub fn on(db: Arc<Database>) -> Result<Users, Error> {
        match db.dialect() {
            Dialect::Sqlite => db.with(|handle| {
                handle.batch(&schema(Dialect::Sqlite))?;
                // Passwords came after tokens: a data directory from before has no column for them.
                let has_passwords = handle
                    .query_opt("SELECT 1 FROM pragma_table_info('users') WHERE name = 'password_hash'", &[])?
                    .is_some();
                if !has_passwords {
                    handle.batch("ALTER TABLE users ADD COLUMN password_hash TEXT")?;
                }
                Ok(())
            })?,
            Dialect::Postgres => db.create_tables(&schema(Dialect::Postgres))?,
        }
        Ok(Users { db, cache: Default::default(), active: Default::default() })
    }

    /// Sets the password a user signs in with at the authorization server (SMART apps, the
    /// workbench); `false` when there is no such user. Only a salted PBKDF2 hash is kept.
    pub fn set_password(&self, name: &str, password: &str) -> Result<bool, Error> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(Error::Invalid(format!("a password needs at least {MIN_PASSWORD_CHARS} characters")));
        }
        let hash = password::hash(password)?;
        let changed =
            self.db.execute("UPDATE users SET password_hash = ?1 WHERE name = ?2", params![hash, name])?;
        Ok(changed > 0)
    }

    /// The user, when `password` is theirs. As slow for an unknown name or a user without a
    /// password as for a wrong password, so timing does not tell which names exist.
    pub fn sign_in(&self, name: &str, password: &str) -> Result<Option<UserRecord>, Error> {
        let row = self
            .db
            .query_opt(
                "SELECT name, role, patient, fhir_user, password_hash FROM users WHERE name = ?1",
                params![name],
            )?
            .map(|r| Ok::<_, Error>((r.text(0)?, r.text(1)?, r.opt_text(2)?, r.opt_text(3)?, r.opt_text(4)?)))
            .transpose()?;
        let stored = row.as_ref().and_then(|r| r.4.clone());
        if !password::verify(password, stored.as_deref()) {
            return Ok(None);
        }
        let Some((name, role, patient, fhir_user, _)) = row else { return Ok(None) };
        Ok(Some((name, Role::parse(&role)?, patient, fhir_user)))
    }

    /// Whether the user has a password set (the administration page; never the hash).
    pub fn has_password(&self, name: &str) -> Result<bool, Error> {
        Ok(self
            .db
            .query_opt("SELECT 1 FROM users WHERE name = ?1 AND password_hash IS NOT NULL", params![name])?
            .is_some())
    }

    /// The user named, if there is one.
    pub fn record(&self, name: &str) -> Result<Option<UserRecord>, Error> {
        self.db
            .query_opt("SELECT name, role, patient, fhir_user FROM users WHERE name = ?1", params![name])?
            .map(|row| user_of(&row))
            .transpose()
    }

    /// Whether the user still exists (tokens the authorization server issued them end when
    /// they are removed); remembered for [`CACHE_SECONDS`] like API tokens.
    pub fn is_active(&self, name: &str) -> Result<bool, Error> {
        if let Ok(active) = self.active.read()
            && active.get(name).is_some_and(|seen| seen.elapsed().as_secs() < CACHE_SECONDS)
        {
            return Ok(true);
        }
        let found = self.record(name)?.is_some();
        if found && let Ok(mut active) = self.active.write() {
            if active.len() > 10_000 {
                active.clear();
            }
            active.insert(name.to_string(), std::time::Instant::now());
        }
        Ok(found)
    }

    /// Adds (or replaces) a user and returns their new token.
    pub fn add(
        &self,
        name: &str,
        role: Role,
        patient: Option<&str>,
        fhir_user: Option<&str>,
    ) -> Result<String, Error> {
        if name.trim().is_empty() {
            return Err(Error::Invalid("a user needs a name".into()));
        }
        // Client ids act under their own name in the audit trail and export jobs.
        if name.starts_with(crate::clients::CLIENT_PREFIX) {
            return Err(Error::Invalid(format!(
                "user names may not begin with {}, which names SMART clients",
                crate::clients::CLIENT_PREFIX
            )));
        }
        if role == Role::Patient && patient.is_none() {
            return Err(Error::Invalid("a patient user needs --patient ID (the Patient they are)".into()));
        }
        if let Some(patient) = patient
            && !fhir::is_valid_id(patient)
        {
            return Err(Error::Invalid(format!("'{patient}' is not a valid Patient id")));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::Invalid(format!("no randomness for a token: {e}")))?;
        let token = format!("{TOKEN_PREFIX}{}", hex(&secret));
        let created = fhir::DateTime::now_utc().to_string();
        self.db.transaction(|handle| {
            record_revocation(handle, name, "replaced by a new token")?;
            // A new token replaces the user as they were, password included.
            handle.execute(
                "INSERT INTO users (name, role, patient, fhir_user, token_hash, created, password_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)
                 ON CONFLICT (name) DO UPDATE SET role = excluded.role, patient = excluded.patient,
                    fhir_user = excluded.fhir_user, token_hash = excluded.token_hash,
                    created = excluded.created, password_hash = NULL",
                params![name, role.as_str(), patient, fhir_user, token_hash(&token), created],
            )
        })?;
        if let Ok(mut cache) = self.cache.write() {
            cache.retain(|_, (identity, _)| identity.user != name);
        }
        Ok(token)
    }

    /// Every user.
    pub fn all(&self) -> Result<Vec<UserRecord>, Error> {
        self.db.with(|handle| Ok(read_all(handle)))?
    }

    /// Every user with when their token was issued (`user list`); tokens are never shown.
    pub fn list(&self) -> Result<Vec<(UserRecord, String)>, Error> {
        let created: std::collections::HashMap<String, String> = self
            .db
            .query("SELECT name, created FROM users", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect::<Result<_, database::Error>>()?;
        Ok(self
            .all()?
            .into_iter()
            .map(|user| {
                let issued = created.get(&user.0).cloned().unwrap_or_default();
                (user, issued)
            })
            .collect())
    }

    /// Removes a user, and with them their token; `false` when there was no such user. A
    /// server that saw the token in the last [`CACHE_SECONDS`] may accept it until then.
    pub fn revoke(&self, name: &str) -> Result<bool, Error> {
        let removed = self.db.transaction(|handle| {
            record_revocation(handle, name, "revoked")?;
            handle.execute("DELETE FROM users WHERE name = ?1", params![name])
        })?;
        if let Ok(mut cache) = self.cache.write() {
            cache.retain(|_, (identity, _)| identity.user != name);
        }
        if let Ok(mut active) = self.active.write() {
            active.remove(name);
        }
        Ok(removed > 0)
    }

    /// Tokens that no longer work, newest first (the administration page).
    pub fn revocations(&self) -> Result<Vec<Revocation>, Error> {
        let order = match self.db.dialect() {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "ord",
        };
        let rows = self.db.query(
            &format!("SELECT name, role, issued, revoked, why FROM token_revocations ORDER BY {order} DESC LIMIT 500"),
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(Revocation {
                    name: r.text(0)?,
                    role: r.text(1)?,
                    issued: r.text(2)?,
                    revoked: r.text(3)?,
                    why: r.text(4)?,
                })
            })
            .collect::<Result<_, database::Error>>()?)
    }

    /// The identity a token stands for, if it is one of ours.
    pub fn authenticate(&self, token: &str) -> Result<Option<Identity>, Error> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = token_hash(token);
        if let Ok(cache) = self.cache.read()
            && let Some((identity, seen)) = cache.get(&hash)
            && seen.elapsed().as_secs() < CACHE_SECONDS
        {
            return Ok(Some(identity.clone()));
        }
        let row = self.db.query_opt(
            "SELECT name, role, patient, fhir_user FROM users WHERE token_hash = ?1",
            params![&hash],
        )?;
        let Some(row) = row else { return Ok(None) };
        let (user, role, patient, fhir_user) = user_of(&row)?;
        let identity = Identity { user, role, patient, scopes: role.scopes(), fhir_user };
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(hash, (identity.clone(), std::time::Instant::now()));
        }
        Ok(Some(identity))
    }
}

/// Every user in the table `handle` reads.
pub(crate) fn read_all(handle: &Handle<'_>) -> Result<Vec<UserRecord>, Error> {
    handle
        .query("SELECT name, role, patient, fhir_user FROM users ORDER BY name", &[])?
        .iter()
        .map(user_of)
        .collect()
}

/// A row of `name, role, patient, fhir_user`.
fn user_of(row: &database::Row) -> Result<UserRecord, Error> {
    Ok((row.text(0)?, Role::parse(&row.text(1)?)?, row.opt_text(2)?, row.opt_text(3)?))
}

fn token_hash(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// Password hashes: PBKDF2-HMAC-SHA256 (NIST SP 800-132, FIPS 140 approved) with a random
/// 16-byte salt and 600,000 iterations (OWASP's 2023 figure), kept as
/// `pbkdf2-sha256$ITERATIONS$SALT$HASH` so the count can rise later without breaking old ones.
mod password {
    use std::num::NonZeroU32;

    use ring::pbkdf2;

    use crate::Error;

    const ITERATIONS: u32 = 600_000;
    const SCHEME: &str = "pbkdf2-sha256";

    pub(super) fn hash(password: &str) -> Result<String, Error> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| Error::Invalid(format!("no randomness for a salt: {e}")))?;
        let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
        let mut out = [0u8; 32];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, password.as_bytes(), &mut out);
        Ok(format!(
            "{SCHEME}${ITERATIONS}${}${}",
            crate::jwt::base64url_encode(&salt),
            crate::jwt::base64url_encode(&out)
        ))
    }

    /// Whether `password` matches `stored`; with nothing stored, the same work is done
    /// against a made-up hash and `false` returned.
    pub(super) fn verify(password: &str, stored: Option<&str>) -> bool {
        let parsed = stored.and_then(|stored| {
            let mut parts = stored.split('$');
            let (Some(SCHEME), Some(iterations), Some(salt), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            Some((
                iterations.parse::<u32>().ok().and_then(NonZeroU32::new)?,
                crate::jwt::base64url_decode(salt)?,
                crate::jwt::base64url_decode(hash)?,
            ))
        });
        let found = parsed.is_some();
        let (iterations, salt, hash) = parsed.unwrap_or_else(|| {
            (NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN), vec![0; 16], vec![0; 32])
        });
        let matches =
            pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, password.as_bytes(), &hash).is_ok();
        found && matches
    }
}

/// Keeps a note that `name`'s current token ends, if they have one.
fn record_revocation(handle: &Handle<'_>, name: &str, why: &str) -> database::Result<()> {
    handle.execute(
        "INSERT INTO token_revocations (name, role, issued, revoked, why)
         SELECT name, role, created, ?2, ?3 FROM users WHERE name = ?1",
        params![name, fhir::DateTime::now_utc().to_string(), why],
    )?;
    Ok(())
}
