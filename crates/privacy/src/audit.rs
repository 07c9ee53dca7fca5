//! The audit trail: every access as a FHIR `AuditEvent` (the shape of IHE Basic Audit Log
//! Patterns), in an append-only table whose entries are chained by a keyed hash.
//!
//! Entry `n` stores `hash = HMAC-SHA256(key, n, recorded, user, patients, event, hash of n-1)`.
//! The key (`audit.key`) lives beside the database, not in it, so someone who can edit the
//! database file cannot forge a consistent chain; `audit.head` (also keyed) records the last
//! entry, so removing entries from the end is caught too. `verify` walks the chain and
//! reports each entry that was edited, removed, inserted or moved, at its position.
//!
//! Appends go through a channel to one writer thread that commits them in batches, so
//! auditing a read costs the reader a channel send.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rusqlite::{Connection, params};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::users::PRIVACY_FILE;
use crate::{Error, hex};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    recorded TEXT NOT NULL,
    user TEXT NOT NULL,
    patients TEXT NOT NULL,
    event TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_user ON audit(user, seq);";

const KEY_FILE: &str = "audit.key";
const HEAD_FILE: &str = "audit.head";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One access, as the audit trail records it.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub user: String,
    pub role: String,
    /// `read`, `vread`, `search-type`, `create`, `update`, `delete`, `operation`, `login`, ...
    pub interaction: String,
    /// C, R, U, D or E.
    pub action: &'static str,
    /// The HTTP status of the answer.
    pub status: u16,
    pub outcome_text: Option<String>,
    /// `Patient/...` whose record was touched.
    pub patients: Vec<String>,
    /// Other resources touched (`Type/id`), or the type searched.
    pub resources: Vec<String>,
    pub query: Option<String>,
    /// Purpose of use (a v3-ActReason code, e.g. TREAT, ETREAT).
    pub purpose: Option<String>,
    pub address: Option<String>,
    pub client: Option<String>,
    pub break_glass_reason: Option<String>,
}

impl Access {
    /// The AuditEvent resource (BALP shape: RESTful interaction, agent, source, entities).
    pub fn to_audit_event(&self, recorded: &str) -> Value {
        let outcome = match self.status {
            0..=399 => "0",
            401 | 403 => "4",
            400..=499 => "4",
            _ => "8",
        };
        let mut agent = json!({
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                                    "code": "humanuser", "display": "human user" }] },
            "role": [{ "text": self.role }],
            "who": { "identifier": { "system": "urn:chartroom:user", "value": self.user } },
            "requestor": true,
        });
        if let Some(address) = &self.address {
            agent["network"] = json!({ "address": address, "type": "2" });
        }
        if let Some(purpose) = &self.purpose {
            agent["purposeOfUse"] = json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose }] }]);
        }
        let mut entities: Vec<Value> = self
            .patients
            .iter()
            .map(|p| {
                json!({ "what": { "reference": p },
                        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" },
                        "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient" } })
            })
            .collect();
        for resource in &self.resources {
            let mut entity = json!({ "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" },
                                     "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4", "display": "Domain Resource" } });
            if resource.contains('/') {
                entity["what"] = json!({ "reference": resource });
            } else {
                entity["name"] = Value::from(resource.as_str());
            }
            entities.push(entity);
        }
        if let Some(query) = &self.query {
            entities.push(json!({ "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query" },
                                  "query": crate::base64(query.as_bytes()) }));
        }
        if let Some(reason) = &self.break_glass_reason {
            entities.push(json!({ "name": "break-the-glass", "description": reason }));
        }
        let mut event = json!({
            "resourceType": "AuditEvent",
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "Restful Operation" },
            "subtype": [{ "system": "http://hl7.org/fhir/restful-interaction", "code": self.interaction }],
            "action": self.action,
            "recorded": recorded,
            "outcome": outcome,
            "agent": [agent],
            "source": { "observer": { "display": "Chartroom" },
                        "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server" }] },
        });
        if let Some(text) = &self.outcome_text {
            event["outcomeDesc"] = Value::from(text.as_str());
        }
        if !entities.is_empty() {
            event["entity"] = Value::Array(entities);
        }
        event
    }
}

enum Message {
    Append(Box<Access>),
    Flush(SyncSender<()>),
}

/// The audit trail of a data directory.
pub struct AuditLog {
    sender: Mutex<Option<SyncSender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Opens the trail (creating its key on first use) and starts its writer.
    pub fn open(data_dir: &Path) -> Result<AuditLog, Error> {
        std::fs::create_dir_all(data_dir)?;
        let key = load_or_create_key(data_dir)?;
        let connection = open_table(data_dir)?;
        let (sender, receiver) = sync_channel(65_536);
        let head = data_dir.join(HEAD_FILE);
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(connection, key, head, receiver))?;
        Ok(AuditLog { sender: Mutex::new(Some(sender)), writer: Mutex::new(Some(writer)) })
    }

    /// Records an access (returns at once; the writer commits it with the next batch).
    pub fn record(&self, access: Access) {
        if let Ok(guard) = self.sender.lock()
            && let Some(sender) = guard.as_ref()
        {
            let _ = sender.send(Message::Append(Box::new(access)));
        }
    }

    /// Waits until everything recorded so far is committed.
    pub fn flush(&self) {
        let (done, wait) = sync_channel(1);
        let sent =
            self.sender.lock().ok().and_then(|g| g.as_ref().map(|s| s.send(Message::Flush(done)).is_ok()));
        if sent == Some(true) {
            let _ = wait.recv();
        }
    }

    /// Commits what is pending and stops the writer.
    pub fn close(&self) {
        if let Ok(mut guard) = self.sender.lock() {
            guard.take();
        }
        if let Ok(mut guard) = self.writer.lock()
            && let Some(handle) = guard.take()
        {
            let _ = handle.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn open_table(data_dir: &Path) -> Result<Connection, Error> {
    let connection = Connection::open(data_dir.join(PRIVACY_FILE))?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.execute_batch("PRAGMA journal_mode = WAL;")?;
    connection.execute_batch(SCHEMA)?;
    Ok(connection)
}

fn load_or_create_key(data_dir: &Path) -> Result<[u8; 32], Error> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_key(text.trim())
            .ok_or_else(|| Error::Invalid(format!("{} is not a 64-digit hex key", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| Error::Invalid(format!("no randomness for the audit key: {e}")))?;
            write_private(&path, &hex(&key))?;
            Ok(key)
        }
        Err(error) => Err(error.into()),
    }
}

fn load_key(data_dir: &Path) -> Result<[u8; 32], Error> {
    let path = data_dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display())))?;
    parse_key(text.trim())
        .ok_or_else(|| Error::Invalid(format!("{} is not a 64-digit hex key", path.display())))
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&temporary, path)?;
    Ok(())
}

fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for (i, byte) in key.iter().enumerate() {
        inner_pad[i] ^= byte;
        outer_pad[i] ^= byte;
    }
    let inner = Sha256::new().chain_update(inner_pad).chain_update(message).finalize();
    Sha256::new().chain_update(outer_pad).chain_update(inner).finalize().into()
}

fn entry_hash(
    key: &[u8; 32],
    seq: i64,
    recorded: &str,
    user: &str,
    patients: &str,
    event: &str,
    prev: &str,
) -> String {
    let message = format!("{seq}\n{recorded}\n{user}\n{patients}\n{prev}\n{event}");
    hex(&hmac(key, message.as_bytes()))
}

fn head_line(key: &[u8; 32], seq: i64, hash: &str) -> String {
    format!("{seq} {hash} {}", hex(&hmac(key, format!("head\n{seq}\n{hash}").as_bytes())))
}

fn write_loop(mut connection: Connection, key: [u8; 32], head: PathBuf, receiver: Receiver<Message>) {
    let last: (i64, String) = connection
        .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap_or((0, GENESIS.to_string()));
    let (mut seq, mut prev) = last;
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match receiver.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let mut waiting = Vec::new();
        let committed = (|| -> Result<(), Error> {
            let transaction = connection.transaction()?;
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO audit (seq, recorded, user, patients, event, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for message in batch {
                    match message {
                        Message::Flush(done) => waiting.push(done),
                        Message::Append(access) => {
                            let recorded = fhir::DateTime::now_utc().to_string();
                            let event = access.to_audit_event(&recorded).to_string();
                            let patients = access.patients.join(" ");
                            let next = seq + 1;
                            let hash =
                                entry_hash(&key, next, &recorded, &access.user, &patients, &event, &prev);
                            insert.execute(params![
                                next,
                                recorded,
                                access.user,
                                patients,
                                event,
                                prev,
                                hash
                            ])?;
                            seq = next;
                            prev = hash;
                        }
                    }
                }
            }
            transaction.commit()?;
            write_private(&head, &head_line(&key, seq, &prev))?;
            Ok(())
        })();
        if let Err(error) = committed {
            tracing_like_warning(&format!("the audit trail could not be written: {error}"));
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// The audit writer has no caller to return an error to; it says so on standard error.
fn tracing_like_warning(message: &str) {
    eprintln!("chartroom: {message}");
}

/// What is wrong with one entry of the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// The entry's content no longer matches its hash.
    Edited { seq: i64 },
    /// Entries that were written are gone.
    Missing { from: i64, to: i64 },
    /// An entry Chartroom did not write.
    Inserted { seq: i64 },
    /// An entry written at another position.
    Moved { seq: i64, from: i64 },
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tamper::Edited { seq } => write!(f, "entry {seq}: edited (its content does not match its hash)"),
            Tamper::Missing { from, to } if from == to => write!(f, "entry {from}: deleted"),
            Tamper::Missing { from, to } => write!(f, "entries {from} to {to}: deleted"),
            Tamper::Inserted { seq } => write!(f, "entry {seq}: inserted (not written by Chartroom)"),
            Tamper::Moved { seq, from } => write!(f, "entry {seq}: moved (written as entry {from})"),
        }
    }
}

/// The result of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub entries: u64,
    pub problems: Vec<Tamper>,
}

/// Walks the chain of a data directory's audit trail.
pub fn verify(data_dir: &Path) -> Result<Verification, Error> {
    let key = load_key(data_dir)?;
    let connection = open_table(data_dir)?;
    let head_seq = match std::fs::read_to_string(data_dir.join(HEAD_FILE)) {
        Ok(text) => {
            let parts: Vec<&str> = text.split_whitespace().collect();
            let seq = parts.first().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
            let hash = parts.get(1).copied().unwrap_or_default();
            if head_line(&key, seq, hash) != text.trim() {
                return Err(Error::Invalid(format!(
                    "{HEAD_FILE} was altered: the chain's end cannot be trusted"
                )));
            }
            Some(seq)
        }
        Err(_) => None,
    };
    let mut statement = connection
        .prepare("SELECT seq, recorded, user, patients, event, prev, hash FROM audit ORDER BY seq")?;
    let rows: Vec<(i64, String, String, String, String, String, String)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?
        .collect::<Result<_, _>>()?;
    let last_written = head_seq.unwrap_or(0).max(rows.last().map_or(0, |r| r.0));
    let mut problems = Vec::new();
    let mut expected = 1;
    for (seq, recorded, user, patients, event, prev, hash) in &rows {
        let seq = *seq;
        if seq > expected {
            problems.push(Tamper::Missing { from: expected, to: seq - 1 });
        }
        // The hash covers the position, so an entry is genuine only where it was written.
        if entry_hash(&key, seq, recorded, user, patients, event, prev) != *hash {
            let moved_from = (1..=last_written + 1)
                .filter(|s| *s != seq)
                .find(|s| entry_hash(&key, *s, recorded, user, patients, event, prev) == *hash);
            problems.push(match moved_from {
                Some(from) => Tamper::Moved { seq, from },
                None if head_seq.is_some_and(|h| seq > h) => Tamper::Inserted { seq },
                None => Tamper::Edited { seq },
            });
        }
        expected = seq + 1;
    }
    if let Some(head) = head_seq
        && expected <= head
    {
        problems.push(Tamper::Missing { from: expected, to: head });
    }
    Ok(Verification { entries: rows.len() as u64, problems })
}

/// The AuditEvents of a data directory's trail that touch `patient` (`Patient/id`), oldest
/// first: the accounting of disclosures.
pub fn events_for_patient(data_dir: &Path, patient: &str) -> Result<Vec<Value>, Error> {
    let connection = open_table(data_dir)?;
    let mut statement = connection.prepare("SELECT patients, event FROM audit ORDER BY seq")?;
    let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut events = Vec::new();
    for row in rows {
        let (patients, event) = row?;
        if patients.split(' ').any(|p| p == patient) {
            events.push(
                serde_json::from_str(&event)
                    .map_err(|e| Error::Invalid(format!("an audit entry does not parse: {e}")))?,
            );
        }
    }
    Ok(events)
}
