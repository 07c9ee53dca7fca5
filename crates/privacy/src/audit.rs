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
//!
//! Beside the chain lies a search index (`audit_terms`: one row per entry and term,
//! `user|dr-grey`, `entity|Patient/pa`, `action|R`, ..., plus `*` for every entry, each
//! keyed by time recorded and position), so that AuditEvent searches over a trail of
//! millions of entries read only what they return ([`crate::audit_search`]). The writer
//! indexes when no accesses are waiting, so at peak load the appends alone take its time
//! and the index catches up afterwards; a search first indexes whatever is still behind. The
//! index is derived from the chained line and deliberately left outside the hash: the
//! chain's format stays as it was, and an index can be rebuilt from the lines (which
//! happens for entries written before it existed). What the index says is never trusted on
//! its own: a search re-derives the terms of every entry it returns from the line and drops
//! any that does not match, so an edited index row cannot make a search return the wrong
//! entry; and `verify` checks that each entry's index rows are exactly those its line gives,
//! so removing rows to hide accesses from searches is reported as tampering.

use std::hash::BuildHasher as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

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
CREATE TABLE IF NOT EXISTS audit_terms (
    term TEXT NOT NULL,
    recorded_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (term, recorded_ms, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_agents (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_anchor (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT NOT NULL
) WITHOUT ROWID;";

/// `audit_meta` row: the last entry whose index rows are written.
const INDEXED: &str = "indexed";
/// The index term every entry has (walks of the whole trail in time order).
pub(crate) const EVERY_ENTRY: &str = "*";

const KEY_FILE: &str = "audit.key";
/// Entries indexed per transaction while catching up, so the appending writer (or a search)
/// never waits long for the other.
const INDEX_CHUNK: i64 = 2_000;
/// Entries indexed per transaction between commits under strict durability.
const STRICT_INDEX_CHUNK: i64 = 64;
/// How long the writer gathers entries into one commit.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(20);
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
    /// The client's `X-Request-Id`, so a client can find the entry of each of its requests.
    pub request_id: Option<String>,
    pub break_glass_reason: Option<String>,
}

/// Tab-separated fields of a stored entry; tabs, newlines and backslashes escaped. Entries
/// written before the request id was recorded have one field fewer.
const LINE_FIELDS: usize = 13;

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Access {
    /// The stored form: one line of tab-separated fields, cheap to write on every request
    /// (the AuditEvent is rendered when the trail is read).
    pub fn to_line(&self) -> String {
        let mut line = String::with_capacity(256);
        let fields: [&str; 4] = [&self.user, &self.role, &self.interaction, self.action];
        for field in fields {
            escape(field, &mut line);
            line.push('\t');
        }
        line.push_str(&self.status.to_string());
        for list in [&self.patients, &self.resources] {
            line.push('\t');
            escape(&list.join(" "), &mut line);
        }
        for optional in [
            &self.query,
            &self.purpose,
            &self.address,
            &self.break_glass_reason,
            &self.outcome_text,
            &self.request_id,
        ] {
            line.push('\t');
            if let Some(value) = optional {
                escape(value, &mut line);
            }
        }
        line
    }

    /// Reads a stored line back.
    pub fn from_line(line: &str) -> Option<Access> {
        let fields: Vec<String> = line.split('\t').map(unescape).collect();
        if fields.len() != LINE_FIELDS && fields.len() != LINE_FIELDS - 1 {
            return None;
        }
        let list = |text: &str| -> Vec<String> {
            text.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect()
        };
        let optional = |text: &String| (!text.is_empty()).then(|| text.clone());
        let action = match fields[3].as_str() {
            "C" => "C",
            "R" => "R",
            "U" => "U",
            "D" => "D",
            _ => "E",
        };
        Some(Access {
            user: fields[0].clone(),
            role: fields[1].clone(),
            interaction: fields[2].clone(),
            action,
            status: fields[4].parse().ok()?,
            patients: list(&fields[5]),
            resources: list(&fields[6]),
            query: optional(&fields[7]),
            purpose: optional(&fields[8]),
            address: optional(&fields[9]),
            break_glass_reason: optional(&fields[10]),
            outcome_text: optional(&fields[11]),
            request_id: fields.get(12).and_then(optional),
        })
    }

    /// `AuditEvent.outcome` for the answer's status: success, minor failure (the request was
    /// refused or wrong), serious failure (the server failed).
    pub fn outcome_code(&self) -> &'static str {
        match self.status {
            0..=399 => "0",
            400..=499 => "4",
            _ => "8",
        }
    }

    /// The search index terms of the access (see the module documentation).
    pub(crate) fn index_terms(&self) -> Vec<String> {
        let mut terms = vec![
            EVERY_ENTRY.to_string(),
            format!("user|{}", self.user),
            format!("action|{}", self.action),
            format!("outcome|{}", self.outcome_code()),
            format!("subtype|{}", self.interaction),
        ];
        // The entities with a `what` reference in the AuditEvent (`to_audit_event`).
        for entity in self.patients.iter().chain(self.resources.iter().filter(|r| r.contains('/'))) {
            let term = format!("entity|{entity}");
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        terms
    }

    /// The AuditEvent resource (BALP shape: RESTful interaction, agent, source, entities).
    pub fn to_audit_event(&self, recorded: &str) -> Value {
        let outcome = self.outcome_code();
        let mut agent = json!({
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                                    "code": "humanuser", "display": "human user" }] },
            "role": [{ "text": self.role }],
            "who": { "identifier": { "system": "urn:chartroom:user", "value": self.user } },
            "name": self.user,
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
                                  "query": fhir::base64_encode(query.as_bytes()) }));
        }
        if let Some(reason) = &self.break_glass_reason {
            entities.push(json!({ "name": "break-the-glass", "description": reason }));
        }
        if let Some(request_id) = &self.request_id {
            entities.push(json!({ "what": { "identifier": { "value": request_id } },
                                  "type": { "system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType", "code": "XrequestId" } }));
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

/// The AuditEvent of trail entry `seq`, with its stable id (`audit-{seq}`).
pub fn event(seq: i64, recorded: &str, access: &Access) -> Value {
    let mut event = access.to_audit_event(recorded);
    if let Some(object) = event.as_object_mut() {
        // `id` and `meta` first, as in every stored resource.
        let mut ordered = serde_json::Map::with_capacity(object.len() + 2);
        ordered.insert("resourceType".into(), Value::from("AuditEvent"));
        ordered.insert("id".into(), Value::from(event_id(seq)));
        ordered.insert("meta".into(), json!({ "versionId": "1", "lastUpdated": recorded }));
        for (name, value) in std::mem::take(object) {
            ordered.entry(name).or_insert(value);
        }
        *object = ordered;
    }
    event
}

/// The id of the AuditEvent of entry `seq`.
pub fn event_id(seq: i64) -> String {
    format!("audit-{seq}")
}

/// The entry an AuditEvent id names.
pub fn parse_event_id(id: &str) -> Option<i64> {
    id.strip_prefix("audit-")
        .filter(|n| !n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
}

/// Milliseconds since the epoch of a stored `recorded` instant (0 if it does not read: such
/// an entry fails `verify` anyway).
pub(crate) fn recorded_millis(recorded: &str) -> i64 {
    fhir::DateTime::parse(recorded, fhir::DateTimeKind::Instant).map_or(0, |t| t.lower_bound_millis())
}

/// Writes the index rows of one entry (in the caller's transaction).
fn index_entry(connection: &Connection, seq: i64, recorded_ms: i64, access: &Access) -> Result<(), Error> {
    let mut term = connection
        .prepare_cached("INSERT OR IGNORE INTO audit_terms (term, recorded_ms, seq) VALUES (?1, ?2, ?3)")?;
    for text in access.index_terms() {
        term.execute(params![text, recorded_ms, seq])?;
    }
    connection
        .prepare_cached("INSERT OR IGNORE INTO audit_agents (name) VALUES (?1)")?
        .execute(params![access.user])?;
    Ok(())
}

pub(crate) fn indexed_through(connection: &Connection) -> Result<i64, Error> {
    Ok(connection
        .query_row("SELECT value FROM audit_meta WHERE name = ?1", params![INDEXED], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn set_indexed_through(connection: &Connection, seq: i64) -> Result<(), Error> {
    connection
        .prepare_cached("INSERT INTO audit_meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = ?2")?
        .execute(params![INDEXED, seq])?;
    Ok(())
}

/// Indexes the entries written without an index (by a version before it, while the writer
/// was busy appending, or when the index rows of the last entries were removed), in chunks.
fn catch_up(connection: &Connection) -> Result<(), Error> {
    while index_chunk(connection, INDEX_CHUNK)? {}
    Ok(())
}

/// Indexes up to `chunk` of the entries not yet indexed; says whether any remain.
fn index_chunk(connection: &Connection, chunk: i64) -> Result<bool, Error> {
    let last = || -> Result<i64, Error> {
        Ok(connection.query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))?)
    };
    if indexed_through(connection)? >= last()? {
        return Ok(false);
    }
    // IMMEDIATE: the writer and a search may both be catching up; whoever is second starts
    // where the first stopped.
    let transaction =
        rusqlite::Transaction::new_unchecked(connection, rusqlite::TransactionBehavior::Immediate)?;
    let from = indexed_through(&transaction)?;
    let through = last()?.min(from + chunk);
    {
        let mut statement = transaction.prepare_cached(
            "SELECT seq, recorded, event FROM audit WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
        )?;
        let mut rows = statement.query(params![from, through])?;
        while let Some(row) = rows.next()? {
            let (seq, recorded, line): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            // An entry that does not read back is left to `verify` to report.
            if let Some(access) = Access::from_line(&line) {
                index_entry(&transaction, seq, recorded_millis(&recorded), &access)?;
            }
        }
    }
    set_indexed_through(&transaction, through)?;
    let remaining = through < last()?;
    transaction.commit()?;
    Ok(remaining)
}

/// A connection for reading the trail, its index current.
pub(crate) fn open_reader(data_dir: &Path) -> Result<Connection, Error> {
    let connection = open_table(data_dir)?;
    catch_up(&connection)?;
    Ok(connection)
}

/// A data directory's trail as of one moment, for reading only: what `chartroom audit`
/// reads while the server goes on appending to it.
///
/// The connection is opened with `SQLITE_OPEN_READ_ONLY` (it creates and changes nothing,
/// not even the search index: entries the index has not reached are read from their lines)
/// and holds one read transaction, begun by [`TrailSnapshot::open`], so everything read
/// through it agrees. A WAL reader never blocks the server's appends, but while it holds
/// its snapshot the log cannot be reset past it: hold one for one report and drop it.
pub struct TrailSnapshot {
    connection: Connection,
}

impl TrailSnapshot {
    /// The trail of `data_dir` as of now; an error naming the directory when it has none.
    pub fn open(data_dir: &Path) -> Result<TrailSnapshot, Error> {
        let path = data_dir.join(PRIVACY_FILE);
        let no_trail = || {
            Error::Invalid(format!(
                "{} has no audit trail ({PRIVACY_FILE}); the trail is started by the first `chartroom serve` \
                 on a data directory",
                data_dir.display()
            ))
        };
        if !path.is_file() {
            return Err(no_trail());
        }
        let connection = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.execute_batch("BEGIN DEFERRED")?;
        // The first read fixes the snapshot.
        if !has_table(&connection, "audit")? {
            return Err(no_trail());
        }
        Ok(TrailSnapshot { connection })
    }

    /// Every entry: position, time recorded, and the access.
    pub fn entries(&self) -> Result<Vec<(i64, String, Access)>, Error> {
        let mut statement = self.connection.prepare("SELECT seq, recorded, event FROM audit ORDER BY seq")?;
        let rows = statement
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        let mut entries = Vec::new();
        for row in rows {
            let (seq, recorded, line) = row?;
            let access = Access::from_line(&line)
                .ok_or_else(|| Error::Invalid(format!("audit entry {seq} does not read back")))?;
            entries.push((seq, recorded, access));
        }
        Ok(entries)
    }

    /// The AuditEvents touching `patient` (`Patient/id`), oldest first: the accounting of
    /// disclosures.
    pub fn events_for_patient(&self, patient: &str) -> Result<Vec<Value>, Error> {
        crate::audit_search::entity_events(&self.connection, patient)
    }

    /// The users (none when the directory never had any).
    pub fn users(&self) -> Result<Vec<crate::users::UserRecord>, Error> {
        if !has_table(&self.connection, "users")? {
            return Ok(Vec::new());
        }
        crate::users::read_all(&database::Handle::Sqlite(&self.connection))
    }
}

fn has_table(connection: &Connection, name: &str) -> Result<bool, Error> {
    Ok(connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )?)
}

/// When a response may leave relative to its audit entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// The entry is committed before the response leaves ([`Receipt::durable`]): a delivered
    /// response always has its entry, even if the process is killed right after. Entries
    /// arriving together share one commit.
    #[default]
    Strict,
    /// Entries are gathered for 20 ms and committed together, and nobody waits: a killed
    /// process loses the entries of its last moments (detected and recorded at the next
    /// start).
    Fast,
}

/// How the trail is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditOptions {
    pub durability: Durability,
    /// Whether every commit is synced to disk (SQLite `synchronous=FULL`), so that entries
    /// survive power loss too; otherwise a commit survives the process being killed.
    pub sync_full: bool,
}

/// A recorded access, for waiting until its entry is committed.
pub struct Receipt(Option<tokio::sync::oneshot::Receiver<bool>>);

impl Receipt {
    /// Whether the entry is committed: waits for the commit under [`Durability::Strict`];
    /// `true` at once under [`Durability::Fast`]; `false` if the trail could not be written.
    pub async fn durable(self) -> bool {
        match self.0 {
            Some(receiver) => receiver.await.unwrap_or(false),
            None => true,
        }
    }
}

enum Message {
    Append(Box<Access>, Option<tokio::sync::oneshot::Sender<bool>>),
    Flush(SyncSender<()>),
}

/// The audit trail of a data directory.
pub struct AuditLog {
    sender: Mutex<Option<SyncSender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    durability: Durability,
    /// Entries recorded and not yet committed (the administration page's audit backlog).
    backlog: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl AuditLog {
    /// Opens the trail (creating its key on first use) and starts its writer, with strict
    /// durability.
    pub fn open(data_dir: &Path) -> Result<AuditLog, Error> {
        AuditLog::open_with(data_dir, AuditOptions::default())
    }

    /// Opens the trail with `options`. What the previous run left is checked first: an end
    /// that no longer matches its anchors, and a run that ended without closing the trail,
    /// are each recorded as an entry of their own.
    pub fn open_with(data_dir: &Path, options: AuditOptions) -> Result<AuditLog, Error> {
        std::fs::create_dir_all(data_dir)?;
        let (key, created) = load_or_create_key(data_dir)?;
        let connection = open_reader(data_dir)?;
        if options.sync_full {
            connection.execute_batch("PRAGMA synchronous = FULL;")?;
        }
        let head = data_dir.join(HEAD_FILE);
        let start = start_run(&connection, &key, &head, created)?;
        let (sender, receiver) = sync_channel(65_536);
        let durability = options.durability;
        let backlog = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let written = backlog.clone();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(connection, key, head, receiver, durability, start, &written))?;
        Ok(AuditLog {
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            durability,
            backlog,
        })
    }

    /// Records an access. Under strict durability the returned receipt says when its entry
    /// is committed; the caller holds the response until then.
    pub fn record(&self, access: Access) -> Receipt {
        let (reply, receipt) = match self.durability {
            Durability::Strict => {
                let (sender, receiver) = tokio::sync::oneshot::channel();
                (Some(sender), Receipt(Some(receiver)))
            }
            Durability::Fast => (None, Receipt(None)),
        };
        if let Ok(guard) = self.sender.lock()
            && let Some(sender) = guard.as_ref()
        {
            self.backlog.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if sender.send(Message::Append(Box::new(access), reply)).is_err() {
                self.backlog.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        receipt
    }

    /// Entries recorded and not yet committed to the trail.
    pub fn backlog(&self) -> usize {
        self.backlog.load(std::sync::atomic::Ordering::Relaxed)
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

    /// Commits what is pending, marks the run as closed, and stops the writer.
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
    // WAL with NORMAL sync: a committed entry survives the process being killed; on power
    // loss the last batch (well under a second) may be lost, as with the store's import mode
    // (`AuditOptions::sync_full` syncs every commit instead).
    // Appends rewrite the same last pages batch after batch; checkpointing every 40 MB
    // instead of 4 MB copies each of them back far less often.
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 10000; PRAGMA cache_size = -32000;",
    )?;
    connection.execute_batch(SCHEMA)?;
    Ok(connection)
}

/// The key, and whether it was created now (a new trail).
fn load_or_create_key(data_dir: &Path) -> Result<([u8; 32], bool), Error> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_key(text.trim())
            .map(|key| (key, false))
            .ok_or_else(|| Error::Invalid(format!("{} is not a 64-digit hex key", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| Error::Invalid(format!("no randomness for the audit key: {e}")))?;
            write_private(&path, &hex(&key))?;
            Ok((key, true))
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
    crate::jwt::hmac(key, message)
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

/// The keyed tag of the database's anchor (not the file's: neither can stand in for the
/// other).
fn database_anchor_mac(key: &[u8; 32], seq: i64, hash: &str) -> String {
    hex(&hmac(key, format!("database-head\n{seq}\n{hash}").as_bytes()))
}

/// The chain's end as the database records it, in the commit that wrote the end.
fn write_database_anchor(connection: &Connection, key: &[u8; 32], seq: i64, hash: &str) -> Result<(), Error> {
    connection
        .prepare_cached(
            "INSERT INTO audit_anchor (name, seq, hash, mac) VALUES ('head', ?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET seq = ?1, hash = ?2, mac = ?3",
        )?
        .execute(params![seq, hash, database_anchor_mac(key, seq, hash)])?;
    Ok(())
}

/// An anchor as read back: (position, hash), or why it cannot be trusted.
type ReadAnchor = Result<Option<(i64, String)>, String>;

fn read_file_anchor(key: &[u8; 32], head: &Path) -> ReadAnchor {
    match std::fs::read_to_string(head) {
        Ok(text) => {
            let parts: Vec<&str> = text.split_whitespace().collect();
            let seq = parts.first().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
            let hash = parts.get(1).copied().unwrap_or_default();
            if head_line(key, seq, hash) != text.trim() {
                return Err(format!("{HEAD_FILE} was altered"));
            }
            Ok(Some((seq, hash.to_string())))
        }
        Err(_) => Ok(None),
    }
}

fn read_database_anchor(connection: &Connection, key: &[u8; 32]) -> Result<ReadAnchor, Error> {
    let row: Option<(i64, String, String)> = connection
        .query_row("SELECT seq, hash, mac FROM audit_anchor WHERE name = 'head'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(match row {
        None => Ok(None),
        Some((seq, hash, mac)) if database_anchor_mac(key, seq, &hash) == mac => Ok(Some((seq, hash))),
        Some(_) => Err("the database's anchor was altered".to_string()),
    })
}

/// The last entry: (position, hash), the genesis for an empty trail.
fn last_entry(connection: &Connection) -> (i64, String) {
    connection
        .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap_or((0, GENESIS.to_string()))
}

/// Why the chain's end disagrees with its anchors, if it does: the checks [`verify`] makes of
/// the end, also made when a run starts.
fn end_problems(connection: &Connection, key: &[u8; 32], head: &Path) -> Result<Vec<String>, Error> {
    let (last_seq, last_hash) = last_entry(connection);
    let hash_at = |seq: i64| -> Result<Option<String>, Error> {
        if seq == 0 {
            return Ok(Some(GENESIS.to_string()));
        }
        Ok(connection
            .query_row("SELECT hash FROM audit WHERE seq = ?1", params![seq], |r| r.get(0))
            .optional()?)
    };
    let mut problems = Vec::new();
    match read_database_anchor(connection, key)? {
        Err(why) => problems.push(why),
        Ok(None) => problems.push(format!(
            "the database's anchor is missing (the trail ends at entry {last_seq}): entries may have been removed from the end"
        )),
        Ok(Some((seq, hash))) if (seq, hash.as_str()) != (last_seq, last_hash.as_str()) => problems.push(format!(
            "the database's anchor names entry {seq} as the last, but the trail ends at entry {last_seq}: {}",
            if seq > last_seq { "entries were removed from the end" } else { "the trail's end was rolled back or extended outside Chartroom" }
        )),
        Ok(Some(_)) => {}
    }
    match read_file_anchor(key, head) {
        Err(why) => problems.push(why),
        Ok(None) => problems.push(format!(
            "{HEAD_FILE} is missing (the trail ends at entry {last_seq}): entries may have been removed from the end"
        )),
        // The file is written at most every 200 ms, so it may lag the database; it must still
        // name an entry that is there, with its hash.
        Ok(Some((seq, hash))) => {
            if seq > last_seq {
                problems.push(format!(
                    "{HEAD_FILE} names entry {seq} as written, but the trail ends at entry {last_seq}: entries were removed from the end"
                ));
            } else if hash_at(seq)?.as_deref() != Some(hash.as_str()) {
                problems.push(format!("{HEAD_FILE} names entry {seq} with a hash the trail does not hold there"));
            }
        }
    }
    Ok(problems)
}

/// The interaction code of the entry recording that a trail's end disagreed with its anchors
/// when a run started.
pub const END_MISMATCH: &str = "audit-end-mismatch";
/// The interaction code of the entry recording that the previous run ended without closing
/// the trail (killed, crashed, or the machine stopped).
pub const UNCLEAN_SHUTDOWN: &str = "unclean-shutdown";

/// `audit_meta` row: the run writing the trail now (a random number), removed when it closes.
const RUNNING: &str = "running";
/// `audit_meta` row: when that run started, in ms since the epoch.
const RUNNING_SINCE: &str = "running-since";

/// What a run starts with: its id, and the entries it must write first.
struct RunStart {
    run: i64,
    notes: Vec<Access>,
}

fn system_note(interaction: &str, status: u16, text: String) -> Access {
    Access {
        user: "chartroom".into(),
        role: "system".into(),
        interaction: interaction.into(),
        action: "E",
        status,
        outcome_text: Some(text),
        ..Access::default()
    }
}

/// Checks what the previous run left and claims the trail for this run.
fn start_run(connection: &Connection, key: &[u8; 32], head: &Path, created: bool) -> Result<RunStart, Error> {
    let mut notes = Vec::new();
    let (last_seq, last_hash) = last_entry(connection);
    let legacy = !created
        && read_database_anchor(connection, key)?.is_ok_and(|a| a.is_none())
        && read_file_anchor(key, head).is_ok_and(|a| {
            a.is_some_and(|(seq, hash)| (seq, hash.as_str()) == (last_seq, last_hash.as_str()))
        });
    if created || legacy {
        // A new trail, or one written before the database kept its anchor: anchored where it
        // ends now.
        write_database_anchor(connection, key, last_seq, &last_hash)?;
        write_private(head, &head_line(key, last_seq, &last_hash))?;
    } else {
        let problems = end_problems(connection, key, head)?;
        if !problems.is_empty() {
            notes.push(system_note(
                END_MISMATCH,
                500,
                format!(
                    "when the trail was opened its end did not match its anchors: {}",
                    problems.join("; ")
                ),
            ));
            // Anchored again where it ends, so that what comes after is checked; the note
            // keeps what was found, and `verify` reports it.
            write_database_anchor(connection, key, last_seq, &last_hash)?;
            write_private(head, &head_line(key, last_seq, &last_hash))?;
        }
    }
    let meta = |name: &str| -> Result<Option<i64>, Error> {
        Ok(connection
            .query_row("SELECT value FROM audit_meta WHERE name = ?1", params![name], |r| r.get(0))
            .optional()?)
    };
    if meta(RUNNING)?.is_some() {
        let since = meta(RUNNING_SINCE)?.map_or_else(
            || "an unknown time".to_string(),
            |ms| fhir::DateTime::from_epoch_millis(ms).to_string(),
        );
        let last = connection
            .query_row("SELECT recorded FROM audit ORDER BY seq DESC LIMIT 1", [], |r| r.get::<_, String>(0))
            .optional()?
            .unwrap_or_else(|| "none".to_string());
        notes.push(system_note(
            UNCLEAN_SHUTDOWN,
            200,
            format!(
                "the run started at {since} ended without closing the audit trail (killed, crashed or the machine stopped); its last entry is {last_seq}, recorded {last}. Under strict durability every response it delivered has its entry; under fast durability the entries of its last moments may be missing"
            ),
        ));
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::Invalid(format!("no randomness for the run id: {e}")))?;
    let run = (i64::from_le_bytes(bytes) & i64::MAX).max(1);
    for (name, value) in [(RUNNING, run), (RUNNING_SINCE, fhir::datetime::epoch_millis_now())] {
        connection.execute(
            "INSERT INTO audit_meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = ?2",
            params![name, value],
        )?;
    }
    Ok(RunStart { run, notes })
}

/// Appends `accesses` after (`seq`, `prev`) in one transaction, anchoring the new end in the
/// same commit; returns the new end.
fn append(
    connection: &mut Connection,
    key: &[u8; 32],
    mut seq: i64,
    mut prev: String,
    accesses: &[Box<Access>],
) -> Result<(i64, String), Error> {
    let transaction = connection.transaction()?;
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO audit (seq, recorded, user, patients, event, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for access in accesses {
            let recorded_ms = fhir::datetime::epoch_millis_now();
            let recorded = fhir::DateTime::from_epoch_millis(recorded_ms).to_string();
            let event = access.to_line();
            let patients = access.patients.join(" ");
            let next = seq + 1;
            let hash = entry_hash(key, next, &recorded, &access.user, &patients, &event, &prev);
            insert.execute(params![next, recorded, access.user, patients, event, prev, hash])?;
            seq = next;
            prev = hash;
        }
    }
    write_database_anchor(&transaction, key, seq, &prev)?;
    transaction.commit()?;
    Ok((seq, prev))
}

fn write_loop(
    mut connection: Connection,
    key: [u8; 32],
    head: PathBuf,
    receiver: Receiver<Message>,
    durability: Durability,
    start: RunStart,
    backlog: &std::sync::atomic::AtomicUsize,
) {
    let (mut seq, mut prev) = last_entry(&connection);
    if !start.notes.is_empty() {
        let notes: Vec<Box<Access>> = start.notes.into_iter().map(Box::new).collect();
        match append(&mut connection, &key, seq, prev.clone(), &notes) {
            Ok(end) => (seq, prev) = end,
            Err(error) => {
                tracing_like_warning(&format!("the audit trail could not note how it was found: {error}"))
            }
        }
    }
    // The anchor file is rewritten at most this often (and on flush and close): renaming a
    // file per batch would cost more than the batch. The database's anchor is exact.
    let anchor_every = std::time::Duration::from_millis(200);
    let mut anchored = std::time::Instant::now() - anchor_every;
    let mut anchored_seq = -1;
    // An access that arrived while the writer looked for idle time to index.
    let mut carried = None;
    // Under strict durability someone may be waiting for the next commit at any moment: the
    // index is caught up in small steps between commits, so none waits behind a long one.
    let idle_chunk = match durability {
        Durability::Strict => STRICT_INDEX_CHUNK,
        Durability::Fast => INDEX_CHUNK,
    };
    loop {
        let first = match carried.take() {
            Some(message) => message,
            None => match receiver.recv() {
                Ok(message) => message,
                Err(_) => break,
            },
        };
        // Fast: gather for a moment before committing, as a commit (and a wake-up of this
        // thread) per request costs more than the request; sleeping, not waiting on the
        // channel, lets senders hand over entries without waking it. Strict: whoever waits
        // is waiting for this commit, and what arrives during it goes into the next one.
        if durability == Durability::Fast && !matches!(first, Message::Flush(_)) {
            std::thread::sleep(BATCH_WINDOW);
        }
        let mut batch = vec![first];
        while let Ok(message) = receiver.try_recv() {
            batch.push(message);
        }
        let mut waiting = Vec::new();
        let mut accesses = Vec::new();
        let mut receipts = Vec::new();
        for message in batch {
            match message {
                Message::Flush(done) => waiting.push(done),
                Message::Append(access, receipt) => {
                    accesses.push(access);
                    receipts.extend(receipt);
                }
            }
        }
        // A failed commit leaves nothing behind, so the chain's end stays where it was and the
        // batch is tried again: every access must leave its entry, and a position counted but
        // not written would show as a gap.
        let mut committed = accesses.is_empty();
        for attempt in 1..=5 {
            if committed {
                break;
            }
            match append(&mut connection, &key, seq, prev.clone(), &accesses) {
                Ok(end) => {
                    (seq, prev) = end;
                    committed = true;
                }
                Err(error) if attempt == 5 => tracing_like_warning(&format!(
                    "the audit trail could not be written ({error}); {} entries are lost",
                    accesses.len()
                )),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(50 * attempt)),
            }
        }
        // Under strict durability a response leaves only once its entry is committed; one
        // whose entry could not be written is not delivered as a success.
        backlog.fetch_sub(
            accesses.len().min(backlog.load(std::sync::atomic::Ordering::Relaxed)),
            std::sync::atomic::Ordering::Relaxed,
        );
        for receipt in receipts {
            let _ = receipt.send(committed);
        }
        if seq != anchored_seq && (!waiting.is_empty() || anchored.elapsed() >= anchor_every) {
            match write_private(&head, &head_line(&key, seq, &prev)) {
                Ok(()) => {
                    anchored = std::time::Instant::now();
                    anchored_seq = seq;
                }
                Err(error) => {
                    tracing_like_warning(&format!("the audit trail's anchor could not be written: {error}"))
                }
            }
        }
        // Whoever flushes finds the index current too.
        if !waiting.is_empty()
            && let Err(error) = catch_up(&connection)
        {
            tracing_like_warning(&format!("the audit index could not be written: {error}"));
        }
        for done in waiting {
            let _ = done.send(());
        }
        // Index while nobody is waiting to be appended, a chunk at a time.
        loop {
            match receiver.try_recv() {
                Ok(message) => {
                    carried = Some(message);
                    break;
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                Err(std::sync::mpsc::TryRecvError::Empty) => match index_chunk(&connection, idle_chunk) {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(error) => {
                        tracing_like_warning(&format!("the audit index could not be written: {error}"));
                        break;
                    }
                },
            }
        }
    }
    // Closing: the anchor records the last entry, and the run is over.
    if seq != anchored_seq
        && let Err(error) = write_private(&head, &head_line(&key, seq, &prev))
    {
        tracing_like_warning(&format!("the audit trail's anchor could not be written: {error}"));
    }
    let closed = connection.execute(
        "DELETE FROM audit_meta WHERE name IN (?1, ?2) AND (SELECT value FROM audit_meta WHERE name = ?1) = ?3",
        params![RUNNING, RUNNING_SINCE, start.run],
    );
    if let Err(error) = closed {
        tracing_like_warning(&format!("the audit trail could not be marked closed: {error}"));
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
    /// A genuine entry whose search index rows were removed or altered, so AuditEvent
    /// searches may not find it (or may be led to it by what another entry holds).
    Unindexed { seq: i64 },
    /// One of the two records of the chain's end (`audit.head`, the database's anchor) is
    /// gone: entries removed from the end could go unnoticed by it.
    AnchorMissing { which: &'static str },
    /// A run found, when it started, that the chain's end did not match its anchors (its
    /// entry `seq` says how); the anchors were set again so that later entries are checked.
    FoundAtStart { seq: i64, detail: String },
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tamper::Edited { seq } => write!(f, "entry {seq}: edited (its content does not match its hash)"),
            Tamper::Missing { from, to } if from == to => write!(f, "entry {from}: deleted"),
            Tamper::Missing { from, to } => write!(f, "entries {from} to {to}: deleted"),
            Tamper::Inserted { seq } => write!(f, "entry {seq}: inserted (not written by Chartroom)"),
            Tamper::Moved { seq, from } => write!(f, "entry {seq}: moved (written as entry {from})"),
            Tamper::Unindexed { seq } => {
                write!(f, "entry {seq}: its search index rows were removed or altered (searches may miss it)")
            }
            Tamper::AnchorMissing { which } => {
                write!(f, "{which} is missing: the chain's end is vouched for by the other anchor only")
            }
            Tamper::FoundAtStart { seq, detail } => write!(f, "entry {seq}: {detail}"),
        }
    }
}

/// The result of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub entries: u64,
    pub problems: Vec<Tamper>,
    /// Not tampering, but what the privacy office should know of: the entries recording a
    /// run that ended without closing the trail (under fast durability its last moments may
    /// lack entries): position, time recorded, and what the entry says.
    pub unclean_runs: Vec<(i64, String, String)>,
}

/// Walks the chain of a data directory's audit trail, read-only and as of one moment (a
/// server may go on appending meanwhile).
pub fn verify(data_dir: &Path) -> Result<Verification, Error> {
    let key = load_key(data_dir)?;
    // The chain's end is kept twice, where one truncation cannot reach both: the anchor file
    // beside the database (written every 200 ms and on close) and the database's own anchor
    // (in the commit that wrote the end). Either, if present, must be genuine; the further
    // of the two bounds the trail. The file is read before the snapshot is taken: it is
    // written after the commit it names, so the snapshot holds that entry even while a
    // server appends.
    let file_anchor = read_file_anchor(&key, &data_dir.join(HEAD_FILE))
        .map_err(|why| Error::Invalid(format!("{why}: the chain's end cannot be trusted")))?;
    let snapshot = TrailSnapshot::open(data_dir)?;
    let connection = &snapshot.connection;
    let database_anchor = read_database_anchor(connection, &key)?
        .map_err(|why| Error::Invalid(format!("{why}: the chain's end cannot be trusted")))?;
    let head_seq = match (&file_anchor, &database_anchor) {
        (Some((a, _)), Some((b, _))) => Some(*a.max(b)),
        (Some((seq, _)), None) | (None, Some((seq, _))) => Some(*seq),
        (None, None) => None,
    };
    let mut statement = connection
        .prepare("SELECT seq, recorded, user, patients, event, prev, hash FROM audit ORDER BY seq")?;
    let rows: Vec<(i64, String, String, String, String, String, String)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?
        .collect::<Result<_, _>>()?;
    let last_written = head_seq.unwrap_or(0).max(rows.last().map_or(0, |r| r.0));
    // Whether each row is genuine where it is stored, and each stored hash by its row (what a
    // moved entry's `prev` names).
    let genuine: Vec<bool> = rows
        .iter()
        .map(|(seq, recorded, user, patients, event, prev, hash)| {
            entry_hash(&key, *seq, recorded, user, patients, event, prev) == *hash
        })
        .collect();
    let by_hash: std::collections::HashMap<&str, usize> =
        rows.iter().enumerate().map(|(i, r)| (r.6.as_str(), i)).collect();
    // Where an entry was written: one after its predecessor (named by `prev`), whose own
    // place is where it is stored if genuine, else found the same way; the genesis is before
    // position 1. One candidate per entry: a full search would be a hash per position, and a
    // forged position could make it endless.
    let written_at = |prev: &str| -> Option<i64> {
        let mut prev = prev;
        // At most one step per stored entry (and one to the genesis): a cycle of forged
        // predecessors ends the walk.
        for steps in 1..=rows.len() as i64 + 1 {
            if prev == GENESIS {
                return Some(steps);
            }
            let &index = by_hash.get(prev)?;
            if genuine[index] {
                return Some(rows[index].0 + steps);
            }
            prev = rows[index].5.as_str();
        }
        None
    };
    // Entries past this are indexed when the trail is next opened for writing or searching.
    let indexed = indexed_through(connection)?;
    // The index: the rows each genuine entry should have, as a sum of keyed hashes, against
    // the rows the table holds, in one pass over it (not a lookup per row: a trail of a
    // million entries has seven million). A removed, altered or added row unbalances the
    // sum of the entry it belongs to; the key is random, so no substitute rows balance it.
    let keyed = std::hash::RandomState::new();
    let row_hash = |term: &str, recorded_ms: i64| keyed.hash_one((term, recorded_ms));
    // (position, sum, rows, agent known), in order of position: looked up by binary search,
    // as positions can be anything in an altered table.
    let mut balance: Vec<(i64, u64, i64, bool)> = Vec::new();
    let mut agent_row = connection.prepare("SELECT 1 FROM audit_agents WHERE name = ?1")?;
    let mut agents_found: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut problems = Vec::new();
    let mut expected = 1;
    for (index, (seq, recorded, user, patients, event, prev, hash)) in rows.iter().enumerate() {
        let seq = *seq;
        if seq > expected {
            problems.push(Tamper::Missing { from: expected, to: seq - 1 });
        }
        let genuine = genuine[index];
        if genuine
            && (1..=indexed).contains(&seq)
            && let Some(access) = Access::from_line(event)
        {
            let recorded_ms = recorded_millis(recorded);
            let terms = access.index_terms();
            let sum = terms.iter().fold(0u64, |sum, term| sum.wrapping_add(row_hash(term, recorded_ms)));
            let mut agent_known = agents_found.contains(&access.user);
            if !agent_known && agent_row.exists(params![access.user])? {
                agents_found.insert(access.user.clone());
                agent_known = true;
            }
            balance.push((seq, sum, terms.len() as i64, agent_known));
        }
        // The hash covers the position, so an entry is genuine only where it was written.
        if !genuine {
            let moved_from = written_at(prev)
                .filter(|s| *s != seq && *s <= last_written + 1)
                .filter(|s| entry_hash(&key, *s, recorded, user, patients, event, prev) == *hash);
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
    let mut statement = connection.prepare("SELECT term, recorded_ms, seq FROM audit_terms")?;
    let mut index_rows = statement.query([])?;
    while let Some(row) = index_rows.next()? {
        let seq: i64 = row.get(2)?;
        if let Ok(at) = balance.binary_search_by_key(&seq, |entry| entry.0) {
            let term: String = row.get(0)?;
            let entry = &mut balance[at];
            entry.1 = entry.1.wrapping_sub(row_hash(&term, row.get(1)?));
            entry.2 -= 1;
        }
    }
    for (seq, sum, rows, agent_known) in balance {
        if !agent_known || (sum, rows) != (0, 0) {
            problems.push(Tamper::Unindexed { seq });
        }
    }
    // A trail whose key exists has both anchors from its first opening on.
    if file_anchor.is_none() {
        problems.push(Tamper::AnchorMissing { which: HEAD_FILE });
    }
    if database_anchor.is_none() {
        problems.push(Tamper::AnchorMissing { which: "the database's anchor" });
    }
    // What earlier runs found when they started.
    let mut unclean_runs = Vec::new();
    for (seq, recorded, _, _, event, _, _) in &rows {
        let Some(access) = Access::from_line(event) else { continue };
        if access.user != "chartroom" {
            continue;
        }
        if access.interaction == END_MISMATCH {
            problems
                .push(Tamper::FoundAtStart { seq: *seq, detail: access.outcome_text.unwrap_or_default() });
        } else if access.interaction == UNCLEAN_SHUTDOWN {
            let note = access.outcome_text.unwrap_or_else(|| "a run ended without closing the trail".into());
            unclean_runs.push((*seq, recorded.clone(), note));
        }
    }
    // In the order of the trail.
    problems.sort_by_key(|problem| match problem {
        Tamper::Missing { from, .. } => *from,
        Tamper::Edited { seq }
        | Tamper::Inserted { seq }
        | Tamper::Moved { seq, .. }
        | Tamper::Unindexed { seq }
        | Tamper::FoundAtStart { seq, .. } => *seq,
        Tamper::AnchorMissing { .. } => i64::MAX,
    });
    Ok(Verification { entries: rows.len() as u64, problems, unclean_runs })
}

/// Every entry of a data directory's trail (read-only, as of now): position, time recorded,
/// and the access.
pub fn entries(data_dir: &Path) -> Result<Vec<(i64, String, Access)>, Error> {
    TrailSnapshot::open(data_dir)?.entries()
}

/// The AuditEvents of a data directory's trail that touch `patient` (`Patient/id`), oldest
/// first: the accounting of disclosures.
pub fn events_for_patient(data_dir: &Path, patient: &str) -> Result<Vec<Value>, Error> {
    crate::audit_search::events_for_entity(data_dir, patient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_hash_is_standard_hmac_sha256_as_before() {
        // Computed outside Chartroom (`openssl dgst -sha256 -mac HMAC`), so trails written by
        // earlier versions (a hand-written HMAC) still verify with ring's.
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let line = "dr-grey\tclinician\tread\tR\t200\tPatient/pa\tPatient/pa\t\t\t\t\t";
        let hash = entry_hash(&key, 1, "2025-01-01T00:00:00.000Z", "dr-grey", "Patient/pa", line, GENESIS);
        assert_eq!(hash, "aa3fab933070156a1d958a843845373cf3313daec943e563c833088cc811834a");
    }

    #[test]
    fn a_stored_line_reads_back_as_the_access() {
        let access = Access {
            user: "dr\tgrey".into(),
            role: "clinician".into(),
            interaction: "search-type".into(),
            action: "R",
            status: 200,
            outcome_text: None,
            patients: vec!["Patient/a".into(), "Patient/b".into()],
            resources: vec!["Observation".into()],
            query: Some("code=x\\y&name=a\nb".into()),
            purpose: Some("TREAT".into()),
            address: Some("10.0.0.1".into()),
            request_id: Some("req-7".into()),
            break_glass_reason: Some("unconscious patient".into()),
        };
        let back = Access::from_line(&access.to_line()).unwrap();
        assert_eq!(back.user, access.user);
        assert_eq!(back.patients, access.patients);
        assert_eq!(back.query, access.query);
        assert_eq!(back.break_glass_reason, access.break_glass_reason);
        assert_eq!(back.request_id, access.request_id);
        assert_eq!(back.status, 200);
        assert_eq!(back.action, "R");
    }
}
