//! The scale-out backend: the record in a PostgreSQL database that several Chartroom
//! processes share.
//!
//! The tables are the embedded backend's (`resources`, `versions`, one index table per
//! search-parameter type) in one schema, and searches run the same planner and executor
//! ([`crate::search`]): only the spelling of the SQL differs ([`Sql::postgres_text`]).
//!
//! What changes with several writers:
//! - **Conflicts are decided by the database.** Each process has one writer thread with group
//!   commit, as on SQLite, but a unit reads the current version with `SELECT ... FOR UPDATE`:
//!   of two processes updating one resource, the second waits for the first to commit and
//!   then sees its version (an `If-Match` on the old one is a conflict). Two processes creating
//!   the same id meet at the unique index; the loser's unit runs again and finds the winner's.
//! - **Conditional creates** (and conditional updates and deletes) take a transaction-scoped
//!   advisory lock on their type and query before searching, so two processes creating "the
//!   patient with this identifier" create one.
//! - **Holds bind every process.** Each commit reads the holds counter `FOR SHARE`; a unit that
//!   writes a hold Task bumps it (which waits for the other processes' commits under way), and
//!   a process reloads the active holds whenever the counter moved.
//! - **Commit order.** `seq` comes from one database sequence: unique and increasing in the
//!   order versions were written, not necessarily the order their transactions committed, so
//!   history paging by `seq` is exact for what is committed when the page is read.
//!
//! A unit that meets a lock another process holds (a row `FOR UPDATE NOWAIT`, a try-lock) or
//! loses a race (a deadlock, a key taken meanwhile) is set aside and runs again in the next
//! transaction, after this one has committed and released its locks; its last attempt waits
//! for the locks. A unit that still cannot commit fails alone.
//!
//! The connection is plain TCP (`NoTls`): PostgreSQL on loopback or a private network, or
//! behind a TLS-terminating proxy.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use database::{block_on, redact as redacted};
use fhir::DateTime;
use fhir::datetime::epoch_millis_now;
use fhir::search_parameters::ParamKey;
use rusqlite::types::Value as SqlValue;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use crate::index::IndexEntries;
use crate::search::sql::{Bound, Sql};
use crate::search::{self, SearchPage, SearchQuery, SortValue};
use crate::write::{Current, check_if_match, describe, multiple};
use crate::{
    Error, HistoryPage, HistoryQuery, HistoryScope, PendingWrite, Precondition, PreparedResource, Result,
    Store, VersionRecord, WriteMethod, WriteOp, WriteOutcome, WriteUnit, Written,
};

/// The schema version this build writes (`store_meta.schema_version`).
const SCHEMA_VERSION: i64 = 1;
const MAX_IDLE_READERS: usize = 32;
/// Times a unit runs again (each time in a new transaction) after losing a race to another
/// process (a deadlock, a unique key taken meanwhile) before it fails.
const RETRIES: usize = 5;

/// Where the record is and how to reach it.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// `postgres://user@host:port/database` (or the key=value form).
    pub url: String,
    /// The schema the store's tables live in (one database can hold several records, as the
    /// tests do). Letters, digits and `_` only.
    pub schema: String,
    /// Upper bound on operations gathered into one commit.
    pub max_ops_per_commit: usize,
    /// Whether a missing schema is made. Off for commands that only work on an existing record.
    pub create: bool,
    /// A streaming replica of the database that searches are served from, once it has
    /// replayed everything this process has committed (so the process reads its own writes);
    /// until then they go to the primary.
    pub replica_url: Option<String>,
}

impl PostgresOptions {
    /// The record at `url`, in schema `chartroom`.
    pub fn new(url: &str) -> Self {
        PostgresOptions {
            url: url.to_string(),
            schema: "chartroom".into(),
            max_ops_per_commit: 5_000,
            create: true,
            replica_url: None,
        }
    }
}

/// Whether a store location names a PostgreSQL database rather than a data directory.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

struct Job {
    unit: WriteUnit,
    reply: oneshot::Sender<Result<Vec<Written>>>,
}

/// The PostgreSQL store.
pub struct PostgresStore {
    options: PostgresOptions,
    /// Drives the connections' I/O; the store's callers block on their own threads.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    readers: Mutex<Vec<Connection>>,
    /// Connections to the replica (`PostgresOptions::replica_url`).
    replicas: Mutex<Vec<Connection>>,
    /// The WAL position after this process's latest commit (0 before any; kept only with a
    /// replica): a search may go to the replica once it has replayed this far.
    committed_lsn: Arc<AtomicU64>,
    /// Searches the replica answered (the rest went to the primary).
    replica_searches: AtomicU64,
    sender: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    index_stale: Arc<AtomicBool>,
    created: bool,
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => Error::Postgres {
                code: db.code().code().to_string(),
                message: match db.detail() {
                    Some(detail) => format!("{} ({detail})", db.message()),
                    None => db.message().to_string(),
                },
            },
            None => Error::Postgres { code: String::new(), message: error.to_string() },
        }
    }
}

/// The types whose writes move a change counter ([`Store::changes_of`]): the ones another
/// process caches (Consents, as the API's consent directives).
const STAMPED_TYPES: &[&str] = &["Consent"];

fn stamp_name(resource_type: &str) -> String {
    format!("changes:{resource_type}")
}

/// Whether a search's error on the replica is the replica's (connection lost, server shutting
/// down, a query cancelled by a conflict with recovery) rather than the search's own.
fn replica_trouble(error: &Error) -> bool {
    matches!(error, Error::Postgres { code, .. }
        if code.is_empty() || code.starts_with("08") || code.starts_with("57P") || code == "40001")
}

/// SQLSTATE of a lock another transaction holds (`NOWAIT`, a failed try-lock).
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Whether an error is a lost race with another process, which running the unit again
/// resolves: a deadlock, a serialization failure, a unique key taken meanwhile.
fn lost_race(error: &Error) -> bool {
    matches!(error, Error::Postgres { code, .. }
        if code == "40P01" || code == "40001" || code == "23505" || code == LOCK_NOT_AVAILABLE)
}

/// One connection, with the statements it has prepared.
struct Connection {
    client: tokio_postgres::Client,
    statements: RefCell<HashMap<String, Statement>>,
    /// Set when the connection is left in an unknown state: it is not pooled again.
    broken: std::cell::Cell<bool>,
}

/// A value bound for PostgreSQL.
type Param = Box<dyn ToSql + Sync + Send>;

/// Text as PostgreSQL can hold it: a NUL character (which FHIR strings may carry, and
/// SQLite keeps) becomes U+FFFD, in the index rows and in the values searched for alike, so a
/// search matches what it matched on SQLite. (Bodies are bytes and keep it.)
fn text(value: &str) -> String {
    if value.contains('\0') { value.replace('\0', "\u{FFFD}") } else { value.to_string() }
}

fn param_of(bound: &Bound) -> Param {
    match bound {
        Bound::One(SqlValue::Integer(i)) => Box::new(*i),
        Bound::One(SqlValue::Real(f)) => Box::new(*f),
        Bound::One(SqlValue::Text(t)) => Box::new(text(t)),
        Bound::One(SqlValue::Blob(b)) => Box::new(b.clone()),
        Bound::One(SqlValue::Null) => Box::new(None::<String>),
        Bound::List(values) => match values.first() {
            Some(SqlValue::Text(_)) => Box::new(
                values
                    .iter()
                    .filter_map(|v| if let SqlValue::Text(t) = v { Some(text(t)) } else { None })
                    .collect::<Vec<String>>(),
            ),
            Some(SqlValue::Real(_)) => Box::new(
                values
                    .iter()
                    .filter_map(|v| if let SqlValue::Real(f) = v { Some(*f) } else { None })
                    .collect::<Vec<f64>>(),
            ),
            _ => Box::new(
                values
                    .iter()
                    .filter_map(|v| if let SqlValue::Integer(i) = v { Some(*i) } else { None })
                    .collect::<Vec<i64>>(),
            ),
        },
    }
}

impl Connection {
    fn prepared(&self, text: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.borrow().get(text) {
            return Ok(statement.clone());
        }
        let statement = block_on(self.client.prepare(text))?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() > 256 {
            cache.clear();
        }
        cache.insert(text.to_string(), statement.clone());
        Ok(statement)
    }

    fn query(&self, text: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let statement = self.prepared(text)?;
        Ok(block_on(self.client.query(&statement, params))?)
    }

    fn query_opt(&self, text: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        Ok(self.query(text, params)?.into_iter().next())
    }

    fn execute(&self, text: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = self.prepared(text)?;
        Ok(block_on(self.client.execute(&statement, params))?)
    }

    fn batch(&self, text: &str) -> Result<()> {
        Ok(block_on(self.client.batch_execute(text))?)
    }

    fn query_sql(&self, sql: &Sql) -> Result<Vec<Row>> {
        let text = sql.postgres_text();
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(sql = %text, "search query (PostgreSQL)");
        }
        let params: Vec<Param> = sql.values.iter().map(param_of).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        self.query(&text, &refs)
    }
}

/// The shared search executor over a PostgreSQL connection.
impl search::Db for Connection {
    fn integers(&self, sql: &Sql) -> Result<Vec<i64>> {
        self.query_sql(sql)?.iter().map(|row| Ok(row.try_get::<_, i64>(0)?)).collect()
    }

    fn keyed_values(&self, sql: &Sql) -> Result<Vec<(i64, SortValue)>> {
        let rows = self.query_sql(sql)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let kind = row.columns()[1].type_();
            let value = if *kind == tokio_postgres::types::Type::INT8 {
                row.try_get::<_, Option<i64>>(1)?.map(SortValue::Integer)
            } else if *kind == tokio_postgres::types::Type::FLOAT8 {
                row.try_get::<_, Option<f64>>(1)?.map(SortValue::Real)
            } else {
                row.try_get::<_, Option<String>>(1)?.map(SortValue::Text)
            };
            out.push((row.try_get(0)?, value.unwrap_or(SortValue::Missing)));
        }
        Ok(out)
    }

    fn versions(&self, sql: &Sql) -> Result<Vec<(i64, VersionRecord)>> {
        self.query_sql(sql)?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    VersionRecord {
                        resource_type: row.try_get(1)?,
                        id: row.try_get(2)?,
                        version: row.try_get::<_, i64>(3)? as u64,
                        last_updated: row.try_get(4)?,
                        method: WriteMethod::from_code(row.try_get(5)?),
                        body: row.try_get(6)?,
                        seq: row.try_get(7)?,
                    },
                ))
            })
            .collect()
    }
}

/// The tables, as on SQLite, with text compared byte by byte (`COLLATE "C"`, SQLite's
/// `BINARY`: prefix ranges and sort order agree between the backends) and an `rkey` index on
/// every index table (a resource's rows are deleted by rkey in one statement).
const SCHEMA: &str = r#"
CREATE SEQUENCE IF NOT EXISTS resource_keys;
CREATE SEQUENCE IF NOT EXISTS version_seq;
CREATE TABLE IF NOT EXISTS resources (
    rkey BIGINT PRIMARY KEY,
    res_type TEXT COLLATE "C" NOT NULL,
    res_id TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS resources_identity ON resources(res_type, res_id);
CREATE INDEX IF NOT EXISTS resources_type ON resources(res_type, rkey);
CREATE INDEX IF NOT EXISTS resources_type_updated ON resources(res_type, last_updated);
CREATE TABLE IF NOT EXISTS versions (
    seq BIGINT PRIMARY KEY,
    rkey BIGINT NOT NULL,
    res_type TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    method BIGINT NOT NULL,
    body BYTEA
);
CREATE UNIQUE INDEX IF NOT EXISTS versions_instance ON versions(rkey, version);
CREATE INDEX IF NOT EXISTS versions_type ON versions(res_type, seq);
CREATE INDEX IF NOT EXISTS versions_updated ON versions(last_updated);

CREATE TABLE IF NOT EXISTS idx_string (
    param BIGINT NOT NULL, norm TEXT COLLATE "C" NOT NULL, rkey BIGINT NOT NULL, exact TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (param, norm, rkey, exact));
CREATE TABLE IF NOT EXISTS idx_token (
    param BIGINT NOT NULL, code TEXT COLLATE "C" NOT NULL, rkey BIGINT NOT NULL, system TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (param, code, rkey, system));
CREATE TABLE IF NOT EXISTS idx_token_text (
    param BIGINT NOT NULL, text TEXT COLLATE "C" NOT NULL, rkey BIGINT NOT NULL,
    PRIMARY KEY (param, text, rkey));
CREATE TABLE IF NOT EXISTS idx_identifier_type (
    param BIGINT NOT NULL, value TEXT COLLATE "C" NOT NULL, rkey BIGINT NOT NULL,
    type_system TEXT COLLATE "C" NOT NULL, type_code TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (param, value, rkey, type_system, type_code));
CREATE TABLE IF NOT EXISTS idx_date (
    param BIGINT NOT NULL, low BIGINT NOT NULL, high BIGINT NOT NULL, rkey BIGINT NOT NULL,
    PRIMARY KEY (param, low, high, rkey));
CREATE TABLE IF NOT EXISTS idx_number (
    param BIGINT NOT NULL, low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL, rkey BIGINT NOT NULL,
    PRIMARY KEY (param, low, high, rkey));
CREATE TABLE IF NOT EXISTS idx_quantity (
    param BIGINT NOT NULL,
    dimension TEXT COLLATE "C" NOT NULL, canonical_low DOUBLE PRECISION NOT NULL, canonical_high DOUBLE PRECISION NOT NULL,
    rkey BIGINT NOT NULL, system TEXT COLLATE "C" NOT NULL, code TEXT COLLATE "C" NOT NULL,
    low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (param, dimension, canonical_low, canonical_high, rkey, system, code, low, high));
CREATE TABLE IF NOT EXISTS idx_date_wide (
    param BIGINT NOT NULL, rkey BIGINT NOT NULL, wide BIGINT NOT NULL, multi BIGINT NOT NULL,
    PRIMARY KEY (param, rkey));
CREATE TABLE IF NOT EXISTS idx_reference (
    param BIGINT NOT NULL, target_type TEXT COLLATE "C" NOT NULL, target TEXT COLLATE "C" NOT NULL, rkey BIGINT NOT NULL,
    PRIMARY KEY (param, target_type, target, rkey));
CREATE TABLE IF NOT EXISTS idx_uri (
    param BIGINT NOT NULL, value TEXT COLLATE "C" NOT NULL, rkey BIGINT NOT NULL,
    PRIMARY KEY (param, value, rkey));
CREATE TABLE IF NOT EXISTS idx_composite (
    param BIGINT NOT NULL, code TEXT COLLATE "C" NOT NULL, rkey BIGINT NOT NULL, system TEXT COLLATE "C" NOT NULL,
    second_system TEXT COLLATE "C" NOT NULL, second_text TEXT COLLATE "C" NOT NULL,
    second_low DOUBLE PRECISION NOT NULL, second_high DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (param, code, rkey, system, second_system, second_text, second_low, second_high));
CREATE INDEX IF NOT EXISTS idx_string_rkey ON idx_string(rkey);
CREATE INDEX IF NOT EXISTS idx_token_rkey ON idx_token(rkey);
CREATE INDEX IF NOT EXISTS idx_token_text_rkey ON idx_token_text(rkey);
CREATE INDEX IF NOT EXISTS idx_identifier_type_rkey ON idx_identifier_type(rkey);
CREATE INDEX IF NOT EXISTS idx_date_rkey ON idx_date(rkey, param);
CREATE INDEX IF NOT EXISTS idx_number_rkey ON idx_number(rkey, param);
CREATE INDEX IF NOT EXISTS idx_quantity_rkey ON idx_quantity(rkey, param);
CREATE INDEX IF NOT EXISTS idx_date_wide_rkey ON idx_date_wide(rkey);
CREATE INDEX IF NOT EXISTS idx_reference_rkey ON idx_reference(rkey, param);
CREATE INDEX IF NOT EXISTS idx_uri_rkey ON idx_uri(rkey);
CREATE INDEX IF NOT EXISTS idx_composite_rkey ON idx_composite(rkey);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS store_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO store_counters (name, value) VALUES ('holds', 0) ON CONFLICT (name) DO NOTHING;
"#;

/// Every index table.
const ALL_INDEX_TABLES: &[&str] = &[
    "idx_string",
    "idx_token",
    "idx_token_text",
    "idx_identifier_type",
    "idx_date",
    "idx_date_wide",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_uri",
    "idx_composite",
];

/// Deletes every index row of one resource (`$1`) in one statement.
fn clear_index_statement() -> String {
    let deletes: Vec<String> = ALL_INDEX_TABLES
        .iter()
        .enumerate()
        .map(|(i, table)| format!("d{i} AS (DELETE FROM {table} WHERE rkey = $1)"))
        .collect();
    format!("WITH {} SELECT 1", deletes.join(", "))
}

/// The key of the advisory lock migrations take, so two processes starting together do not
/// create the same tables at once (the administrative tables take it too).
use database::MIGRATION_LOCK;

impl PostgresStore {
    /// Connects to the database, makes or migrates the schema (unless `options.create` is off
    /// and there is none), and starts the writer.
    pub fn open(options: PostgresOptions) -> Result<Self> {
        if options.schema.is_empty()
            || !options.schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(Error::Postgres {
                code: String::new(),
                message: format!("schema name {:?}: only lowercase letters, digits and _", options.schema),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("chartroom-postgres-io")
            .enable_all()
            .build()
            .map_err(|cause| Error::DataDirectory { path: options.url.clone(), cause })?;
        let handle = runtime.handle().clone();
        let first = connect(&handle, &options.url, None)?;
        let schema = &options.schema;
        let exists: bool = first
            .query_opt("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[schema])?
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or(false);
        let has_store = exists
            && first
                .query_opt(
                    "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'store_meta')",
                    &[schema],
                )?
                .map(|row| row.try_get::<_, bool>(0))
                .transpose()?
                .unwrap_or(false);
        if !has_store && !options.create {
            return Err(Error::NotADataDirectory {
                path: redacted(&options.url),
                reason: format!("the database holds no Chartroom store in schema {schema}"),
            });
        }
        first.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
        let migrated = migrate(&first, schema);
        first.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
        migrated?;
        first.batch(&format!("SET search_path TO {schema}"))?;
        let stored_format: Option<String> = first
            .query_opt("SELECT value FROM store_meta WHERE key = 'index_format'", &[])?
            .map(|row| row.try_get(0))
            .transpose()?;
        let has_resources: bool = first
            .query_opt("SELECT EXISTS (SELECT 1 FROM resources)", &[])?
            .map_or(Ok(false), |r| r.try_get(0))?;
        let index_stale = match stored_format {
            Some(format) => format != crate::sqlite::index_format(),
            None if has_resources => true,
            None => {
                write_index_format(&first)?;
                false
            }
        };
        let index_stale = Arc::new(AtomicBool::new(index_stale));
        let writer_connection = connect(&handle, &options.url, Some(schema))?;
        let committed_lsn = Arc::new(AtomicU64::new(0));
        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            committed_lsn: options.replica_url.is_some().then(|| committed_lsn.clone()),
            connection: writer_connection,
            handle: handle.clone(),
            url: options.url.clone(),
            schema: options.schema.clone(),
            receiver,
            last_updated: 0,
            max_ops_per_commit: options.max_ops_per_commit.max(1),
            index_stale: index_stale.clone(),
            index_now_current: false,
            holds: Vec::new(),
            holds_counter: None,
            clear_index: clear_index_statement(),
            wait_for_locks: false,
        };
        let thread = std::thread::Builder::new()
            .name("chartroom-pg-writer".into())
            .spawn(move || writer.run())
            .map_err(|cause| Error::DataDirectory { path: redacted(&options.url), cause })?;
        Ok(PostgresStore {
            options,
            runtime: Mutex::new(Some(runtime)),
            handle,
            readers: Mutex::new(vec![first]),
            replicas: Mutex::new(Vec::new()),
            committed_lsn,
            replica_searches: AtomicU64::new(0),
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(thread)),
            index_stale,
            created: !has_store,
        })
    }

    /// Whether `open` made the schema (a new record).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether the search index must be rebuilt (`reindex`) before searches can run.
    pub fn index_is_stale(&self) -> bool {
        self.index_stale.load(AtomicOrdering::Acquire)
    }

    fn check_index(&self) -> Result<()> {
        if self.index_is_stale() { Err(Error::IndexStale) } else { Ok(()) }
    }

    /// Drops the store's schema and everything in it (the tests' clean-up).
    pub fn drop_schema(options: &PostgresOptions) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|cause| Error::DataDirectory { path: options.url.clone(), cause })?;
        let connection = connect(runtime.handle(), &options.url, None)?;
        let result = connection.batch(&format!("DROP SCHEMA IF EXISTS {} CASCADE", options.schema));
        drop(connection);
        runtime.shutdown_background();
        result
    }

    /// Stops accepting writes, lets the writer finish what is queued, and waits for it.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let thread = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        if let Ok(mut readers) = self.readers.lock() {
            readers.clear();
        }
        if let Some(runtime) = self.runtime.lock().ok().and_then(|mut r| r.take()) {
            runtime.shutdown_background();
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        let connection = match pooled {
            Some(connection) => connection,
            None => connect(&self.handle, &self.options.url, Some(&self.options.schema))?,
        };
        let result = f(&connection);
        // A connection that broke, or whose transaction could not be ended, is not reused.
        if !connection.broken.get()
            && !connection.client.is_closed()
            && let Ok(mut pool) = self.readers.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(connection);
        }
        result
    }

    /// Reads inside one REPEATABLE READ transaction: a page, its cursor and its total agree.
    fn with_snapshot<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.with_reader(|connection| {
            connection.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
            let result = f(connection);
            let end = connection.batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
            if end.is_err() {
                connection.broken.set(true);
            }
            let value = result?;
            end.map(|()| value)
        })
    }

    /// How many searches the replica has answered.
    pub fn replica_searches(&self) -> u64 {
        self.replica_searches.load(AtomicOrdering::Relaxed)
    }

    /// A snapshot for a search (and the reads of its page's includes): on the replica when it
    /// has replayed this process's latest commit, so the process reads its own writes;
    /// otherwise, or when the replica cannot be reached, on the primary.
    fn with_search_snapshot<T>(&self, f: impl Fn(&Connection) -> Result<T>) -> Result<T> {
        let Some(url) = &self.options.replica_url else { return self.with_snapshot(f) };
        let pooled = self.replicas.lock().ok().and_then(|mut pool| pool.pop());
        let connection = match pooled {
            Some(connection) => connection,
            None => match connect(&self.handle, url, Some(&self.options.schema)) {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!("the replica cannot be reached ({error}); searching the primary");
                    return self.with_snapshot(f);
                }
            },
        };
        let replayed = connection
            .query_opt("SELECT pg_last_wal_replay_lsn()::text", &[])
            .ok()
            .flatten()
            .and_then(|row| row.try_get::<_, Option<String>>(0).ok().flatten())
            .as_deref()
            .and_then(parse_lsn);
        let caught_up = replayed.is_some_and(|lsn| lsn >= self.committed_lsn.load(AtomicOrdering::Acquire));
        let result = if caught_up {
            let result = (|| {
                connection.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
                let result = f(&connection);
                let end = connection.batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
                if end.is_err() {
                    connection.broken.set(true);
                }
                let value = result?;
                end.map(|()| value)
            })();
            self.replica_searches.fetch_add(1, AtomicOrdering::Relaxed);
            Some(result)
        } else {
            None
        };
        if !connection.broken.get()
            && !connection.client.is_closed()
            && let Ok(mut pool) = self.replicas.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(connection);
        }
        match result {
            // The replica failed as a replica (its connection, its shutdown, a query
            // cancelled by a conflict with recovery): the primary answers instead.
            Some(Err(error)) if replica_trouble(&error) => {
                tracing::warn!("the replica failed a search ({error}); searching the primary");
                self.with_snapshot(f)
            }
            Some(result) => result,
            None => self.with_snapshot(f),
        }
    }

    /// Streams the rows of `query` (type, id, body) to `visit` through a cursor, a batch at a
    /// time, from one snapshot.
    fn scan(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
        visit: &mut crate::ScanVisitor<'_>,
    ) -> Result<u64> {
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        let mut connection = match pooled {
            Some(connection) => connection,
            None => connect(&self.handle, &self.options.url, Some(&self.options.schema))?,
        };
        let statement = connection.prepared(query)?;
        let visited = (|| {
            let transaction = block_on(
                connection
                    .client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start(),
            )?;
            let portal = block_on(transaction.bind(&statement, params))?;
            let mut visited = 0;
            loop {
                let rows = block_on(transaction.query_portal(&portal, 2_000))?;
                if rows.is_empty() {
                    break;
                }
                for row in &rows {
                    let resource_type: &str = row.try_get(0)?;
                    let id: &str = row.try_get(1)?;
                    let body: Option<&[u8]> = row.try_get(2)?;
                    visit(resource_type, id, body.unwrap_or_default())?;
                    visited += 1;
                }
            }
            block_on(transaction.commit())?;
            Ok(visited)
        })();
        // A transaction left open (the visitor stopped the scan) is rolled back when dropped,
        // before the connection serves anything else.
        if visited.is_ok()
            && !connection.client.is_closed()
            && let Ok(mut pool) = self.readers.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(connection);
        }
        visited
    }
}

/// The match of a conditional operation was deleted or purged by another process between
/// the search and the lock on its row: a lost race, so the unit runs again and searches again.
fn changed_meanwhile(resource_type: &str, id: &str) -> Error {
    Error::Postgres {
        code: "40001".into(),
        message: format!("{resource_type}/{id} changed in another process while this operation ran"),
    }
}

/// A WAL position as PostgreSQL writes it (`16/B374D848`).
fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

fn connect(handle: &tokio::runtime::Handle, url: &str, schema: Option<&str>) -> Result<Connection> {
    let url = url.to_string();
    // Measured at a million resources: statements are prepared once and run with every
    // kind of value, and after five runs PostgreSQL may switch a statement to one generic
    // plan, blind to the values (a sorted search went from 1.4 ms to 530 ms): each run is
    // planned for its values. Searches are short first pages: JIT compilation (20-30 ms a
    // query past jit_above_cost) and parallel workers (ms to start) cost more than they save.
    const SESSION: &str =
        "SET plan_cache_mode = force_custom_plan; SET jit = off; SET max_parallel_workers_per_gather = 0";
    let setup = Some(match schema {
        Some(schema) => format!("SET search_path TO {schema}; {SESSION}"),
        None => SESSION.to_string(),
    });
    let task = handle.spawn(async move {
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!("PostgreSQL connection ended: {error}");
            }
        });
        if let Some(setup) = setup {
            client.batch_execute(&setup).await?;
        }
        Ok::<_, tokio_postgres::Error>(client)
    });
    let client = block_on(task)
        .map_err(|error| Error::Postgres { code: String::new(), message: error.to_string() })??;
    Ok(Connection { client, statements: RefCell::new(HashMap::new()), broken: std::cell::Cell::new(false) })
}

/// Makes the schema, or brings it to this build's version.
fn migrate(connection: &Connection, schema: &str) -> Result<()> {
    connection.batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"))?;
    connection.batch("CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")?;
    let version: Option<i64> = connection
        .query_opt("SELECT value FROM store_meta WHERE key = 'schema_version'", &[])?
        .map(|row| row.try_get::<_, String>(0))
        .transpose()?
        .and_then(|v| v.parse().ok());
    if let Some(version) = version
        && version > SCHEMA_VERSION
    {
        return Err(Error::Corrupt(format!(
            "the database has store schema version {version}; this build knows {SCHEMA_VERSION}"
        )));
    }
    connection.batch(SCHEMA)?;
    connection.execute(
        "INSERT INTO store_meta (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&SCHEMA_VERSION.to_string()],
    )?;
    Ok(())
}

fn write_index_format(connection: &Connection) -> Result<()> {
    connection.execute(
        "INSERT INTO store_meta (key, value) VALUES ('index_format', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&crate::sqlite::index_format()],
    )?;
    Ok(())
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn record_from_row(row: &Row, resource_type: String, id: String) -> Result<VersionRecord> {
    Ok(VersionRecord {
        resource_type,
        id,
        version: row.try_get::<_, i64>(0)? as u64,
        last_updated: row.try_get(1)?,
        method: WriteMethod::from_code(row.try_get(2)?),
        body: row.try_get(3)?,
        seq: row.try_get(4)?,
    })
}

impl Store for PostgresStore {
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<VersionRecord>> {
        self.with_reader(|connection| {
            connection
                .query_opt(
                    "SELECT r.version, r.last_updated, v.method, v.body, r.seq
                       FROM resources r JOIN versions v ON v.seq = r.seq
                      WHERE r.res_type = $1 AND r.res_id = $2",
                    &[&resource_type, &id],
                )?
                .map(|row| record_from_row(&row, resource_type.to_string(), id.to_string()))
                .transpose()
        })
    }

    fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<VersionRecord>> {
        self.with_reader(|connection| {
            connection
                .query_opt(
                    "SELECT v.version, v.last_updated, v.method, v.body, v.seq
                       FROM resources r JOIN versions v ON v.rkey = r.rkey AND v.version = $3
                      WHERE r.res_type = $1 AND r.res_id = $2",
                    &[&resource_type, &id, &(version as i64)],
                )?
                .map(|row| record_from_row(&row, resource_type.to_string(), id.to_string()))
                .transpose()
        })
    }

    fn history(&self, scope: &HistoryScope, query: &HistoryQuery) -> Result<HistoryPage> {
        self.with_snapshot(|connection| {
            let since = query.since.unwrap_or(i64::MIN);
            let before_seq = query.before_seq.unwrap_or(i64::MAX);
            let limit = query.count as i64 + 1;
            let mut versions: Vec<VersionRecord> = match scope {
                HistoryScope::Instance { resource_type, id } => connection
                    .query(
                        "SELECT v.version, v.last_updated, v.method, v.body, v.seq
                           FROM resources r JOIN versions v ON v.rkey = r.rkey
                          WHERE r.res_type = $1 AND r.res_id = $2 AND v.last_updated >= $3 AND v.seq < $4
                          ORDER BY v.seq DESC LIMIT $5",
                        &[resource_type, id, &since, &before_seq, &limit],
                    )?
                    .iter()
                    .map(|row| record_from_row(row, resource_type.clone(), id.clone()))
                    .collect::<Result<_>>()?,
                HistoryScope::Type(resource_type) => connection
                    .query(
                        "SELECT v.version, v.last_updated, v.method, v.body, v.seq, r.res_id
                           FROM versions v JOIN resources r ON r.rkey = v.rkey
                          WHERE v.res_type = $1 AND v.last_updated >= $2 AND v.seq < $3
                          ORDER BY v.seq DESC LIMIT $4",
                        &[resource_type, &since, &before_seq, &limit],
                    )?
                    .iter()
                    .map(|row| record_from_row(row, resource_type.clone(), row.try_get(5)?))
                    .collect::<Result<_>>()?,
                HistoryScope::System => connection
                    .query(
                        "SELECT v.version, v.last_updated, v.method, v.body, v.seq, r.res_id, r.res_type
                           FROM versions v JOIN resources r ON r.rkey = v.rkey
                          WHERE v.last_updated >= $1 AND v.seq < $2
                          ORDER BY v.seq DESC LIMIT $3",
                        &[&since, &before_seq, &limit],
                    )?
                    .iter()
                    .map(|row| record_from_row(row, row.try_get(6)?, row.try_get(5)?))
                    .collect::<Result<_>>()?,
            };
            let next_before_seq = if versions.len() > query.count {
                versions.truncate(query.count);
                versions.last().map(|v| v.seq)
            } else {
                None
            };
            let total = match scope {
                HistoryScope::Instance { resource_type, id } => connection
                    .query_opt(
                        "SELECT count(*) FROM resources r JOIN versions v ON v.rkey = r.rkey
                          WHERE r.res_type = $1 AND r.res_id = $2 AND v.last_updated >= $3",
                        &[resource_type, id, &since],
                    )?
                    .map(|row| row.try_get::<_, i64>(0))
                    .transpose()?
                    .map(|n| n as u64),
                _ => None,
            };
            Ok(HistoryPage { versions, next_before_seq, total })
        })
    }

    fn submit(&self, unit: WriteUnit) -> PendingWrite {
        let (reply, receiver) = oneshot::channel();
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        match sender {
            Some(sender) => {
                if let Err(mpsc::SendError(job)) = sender.send(Job { unit, reply }) {
                    let _ = job.reply.send(Err(Error::Closed));
                }
            }
            None => {
                let _ = reply.send(Err(Error::Closed));
            }
        }
        PendingWrite(receiver)
    }

    fn count_live(&self) -> Result<u64> {
        self.with_reader(|connection| {
            let row = connection.query_opt("SELECT count(*) FROM resources WHERE deleted = 0", &[])?;
            Ok(row.map(|r| r.try_get::<_, i64>(0)).transpose()?.unwrap_or(0) as u64)
        })
    }

    fn index_is_stale(&self) -> bool {
        PostgresStore::index_is_stale(self)
    }

    /// The change counter of a type in [`STAMPED_TYPES`], which the transaction writing one
    /// moves: a reader that sees the counter moved sees that write (the largest `seq` would
    /// not do: a transaction holding a smaller one may commit after it is read).
    fn changes_of(&self, resource_type: &str) -> Result<Option<i64>> {
        if !STAMPED_TYPES.contains(&resource_type) {
            return Ok(None);
        }
        self.with_reader(|connection| {
            let row = connection.query_opt(
                "SELECT value FROM store_counters WHERE name = $1",
                &[&stamp_name(resource_type)],
            )?;
            Ok(Some(row.map(|r| r.try_get::<_, i64>(0)).transpose()?.unwrap_or(0)))
        })
    }

    fn count_by_type(&self) -> Result<Vec<(String, u64)>> {
        self.with_reader(|connection| {
            connection
                .query(
                    "SELECT res_type, count(*) FROM resources WHERE deleted = 0 GROUP BY res_type ORDER BY res_type",
                    &[],
                )?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)? as u64)))
                .collect()
        })
    }

    fn scan_current(&self, visit: &mut crate::ScanVisitor<'_>) -> Result<u64> {
        self.scan(
            "SELECT r.res_type, r.res_id, v.body
               FROM resources r JOIN versions v ON v.seq = r.seq
              WHERE r.deleted = 0
              ORDER BY r.res_type, r.rkey",
            &[],
            visit,
        )
    }

    fn scan_type(
        &self,
        resource_type: &str,
        since: Option<i64>,
        visit: &mut crate::ScanVisitor<'_>,
    ) -> Result<u64> {
        let since = since.unwrap_or(i64::MIN);
        self.scan(
            "SELECT r.res_type, r.res_id, v.body
               FROM resources r JOIN versions v ON v.seq = r.seq
              WHERE r.res_type = $1 AND r.deleted = 0 AND r.last_updated >= $2
              ORDER BY r.rkey",
            &[&resource_type, &since],
            visit,
        )
    }

    fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        self.check_index()?;
        self.with_search_snapshot(|connection| search::search(connection, query))
    }

    fn read_many(&self, identities: &[(String, String)]) -> Result<Vec<VersionRecord>> {
        self.with_search_snapshot(|connection| {
            let rkeys = search::rkeys_of(connection, identities)?;
            search::fetch(connection, &rkeys)
        })
    }

    fn referencing(&self, keys: &[ParamKey], targets: &[(String, String)]) -> Result<Vec<VersionRecord>> {
        self.check_index()?;
        self.with_search_snapshot(|connection| {
            let mut rkeys = search::referencing(connection, keys, targets)?;
            rkeys.sort_unstable();
            rkeys.dedup();
            search::fetch(connection, &rkeys)
        })
    }

    fn reindex(&self) -> Result<u64> {
        self.index_stale.store(true, AtomicOrdering::Release);
        let mut after = 0;
        let mut total = 0;
        loop {
            let written = self
                .submit(WriteUnit::single(WriteOp::Reindex { after_rkey: after, limit: 5000 }))
                .wait_blocking()?;
            match written.first().map(|w| &w.outcome) {
                Some(WriteOutcome::Reindexed { last_rkey, count }) if *count > 0 => {
                    after = *last_rkey;
                    total += count;
                }
                _ => return Ok(total),
            }
        }
    }
}

struct Writer {
    connection: Connection,
    /// Where to note the WAL position after each commit, when searches may go to a replica.
    committed_lsn: Option<Arc<AtomicU64>>,
    handle: tokio::runtime::Handle,
    url: String,
    schema: String,
    receiver: Receiver<Job>,
    /// The latest `lastUpdated` this process has written: its clock never runs backwards.
    last_updated: i64,
    max_ops_per_commit: usize,
    index_stale: Arc<AtomicBool>,
    index_now_current: bool,
    /// The active holds as of `holds_counter`.
    holds: Vec<crate::hold::Hold>,
    holds_counter: Option<i64>,
    clear_index: String,
    /// Whether this attempt waits for locks other processes hold. Earlier attempts do not:
    /// a unit that meets a held lock is set aside at once (no deadlock to wait a second for)
    /// and runs again after this commit; only the last attempt waits.
    wait_for_locks: bool,
}

impl Writer {
    fn run(mut self) {
        while let Ok(first) = self.receiver.recv() {
            let mut ops = first.unit.ops.len();
            let mut jobs = vec![first];
            while ops < self.max_ops_per_commit {
                match self.receiver.try_recv() {
                    Ok(job) => {
                        ops += job.unit.ops.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(jobs)));
            if committed.is_err() {
                tracing::error!("the store writer panicked; that commit was abandoned");
                let _ = self.connection.batch("ROLLBACK");
                self.holds_counter = None;
            }
        }
    }

    /// After a commit, with a replica: the WAL position the replica must reach before this
    /// process's searches go to it (taken after the commit, so at or past its record).
    fn note_commit_position(&self) {
        let Some(committed) = &self.committed_lsn else { return };
        match self.connection.query_opt("SELECT pg_current_wal_insert_lsn()::text", &[]) {
            Ok(Some(row)) => {
                if let Some(lsn) = row.try_get::<_, String>(0).ok().as_deref().and_then(parse_lsn) {
                    // Positions only grow; an unknown one (MAX, below) is replaced by the next
                    // one known, which is past it.
                    let _ = committed.fetch_update(AtomicOrdering::AcqRel, AtomicOrdering::Acquire, |seen| {
                        Some(if seen == u64::MAX { lsn } else { seen.max(lsn) })
                    });
                }
            }
            // Unknown: searches stay on the primary until a later commit says.
            _ => committed.store(u64::MAX, AtomicOrdering::Release),
        }
    }

    /// Answers the jobs of a COMMIT that failed: refused by the database (nothing stored), or
    /// unanswered (the connection lost: the outcome unknown, said so).
    fn fail_unknown(&mut self, jobs: Vec<Job>, error: &Error) {
        let unanswered =
            matches!(error, Error::Postgres { code, .. } if code.is_empty() || code.starts_with("08"));
        if !unanswered {
            return self.fail_all(jobs, &error.to_string());
        }
        tracing::error!("commit outcome unknown: {error}");
        self.index_now_current = false;
        self.holds_counter = None;
        for job in jobs {
            let _ = job.reply.send(Err(Error::CommitUnknown(error.to_string())));
        }
    }

    fn fail_all(&mut self, jobs: Vec<Job>, message: &str) {
        tracing::error!("commit failed: {message}");
        // A reindex's last range rolled back with the rest: the index is not whole yet.
        self.index_now_current = false;
        let _ = self.connection.batch("ROLLBACK");
        self.holds_counter = None;
        for job in jobs {
            let _ = job.reply.send(Err(Error::CommitFailed(message.to_string())));
        }
    }

    /// The active holds, reloaded when another commit (of any process) has changed them.
    /// Reading the counter `FOR SHARE` makes a hold placed meanwhile wait for this commit.
    fn refresh_holds(&mut self) -> Result<()> {
        let counter: i64 = self
            .connection
            .query_opt("SELECT value FROM store_counters WHERE name = 'holds' FOR SHARE", &[])?
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or(0);
        if self.holds_counter != Some(counter) {
            self.holds = load_holds(&self.connection)?;
            self.holds_counter = Some(counter);
        }
        Ok(())
    }

    /// Commits a group of units, each in its own savepoint. A unit that lost a race with
    /// another process (a deadlock, a key taken meanwhile) is set aside and runs again in the
    /// next transaction, once this one has committed and released its locks: run again inside
    /// the same transaction, it would meet the same locks the earlier units still hold.
    fn commit(&mut self, jobs: Vec<Job>) {
        // A connection lost (the server restarted, the network dropped) is made again.
        if self.connection.client.is_closed() {
            match connect(&self.handle, &self.url, Some(&self.schema)) {
                Ok(connection) => {
                    self.connection = connection;
                    self.holds_counter = None;
                }
                Err(error) => return self.fail_all(jobs, &error.to_string()),
            }
        }
        // Units normally all succeed: the group runs first without savepoints (two round trips
        // fewer per unit). If one fails, the transaction is rolled back and the group runs
        // again a unit per savepoint, so that unit fails alone.
        let jobs = match self.commit_without_savepoints(jobs) {
            Ok(()) => return,
            Err(jobs) => jobs,
        };
        let mut pending = jobs;
        for attempt in 0..=RETRIES {
            let timestamp = epoch_millis_now().max(self.last_updated);
            let timestamp_text = DateTime::from_epoch_millis(timestamp).to_string();
            if let Err(error) = self.connection.batch("BEGIN") {
                return self.fail_all(pending, &error.to_string());
            }
            if let Err(error) = self.refresh_holds() {
                return self.fail_all(pending, &error.to_string());
            }
            let holds_before = (self.holds.clone(), self.holds_counter);
            let mut done = Vec::with_capacity(pending.len());
            let mut again = Vec::new();
            let last_attempt = attempt == RETRIES;
            self.wait_for_locks = last_attempt;
            let mut untried = pending.into_iter();
            while let Some(job) = untried.next() {
                match self.apply_in_savepoint(&job.unit, timestamp, &timestamp_text) {
                    Ok(Err(error)) if lost_race(&error) && !last_attempt => again.push(job),
                    Ok(result) => done.push((job, result)),
                    Err(message) => {
                        // Every job of the group is answered: the ones done, set aside, this
                        // one and the ones not tried.
                        let jobs = done
                            .into_iter()
                            .map(|(job, _)| job)
                            .chain(again)
                            .chain(std::iter::once(job))
                            .chain(untried)
                            .collect();
                        return self.fail_all(jobs, &message);
                    }
                }
            }
            if let Err(error) = self.connection.batch("COMMIT") {
                (self.holds, self.holds_counter) = holds_before;
                self.holds_counter = None;
                // The units set aside were not in this transaction: they failed outright.
                let again: Vec<Job> = again;
                self.fail_unknown(done.into_iter().map(|(job, _)| job).collect(), &error);
                return self.fail_all(again, "the transaction before it failed to commit");
            }
            self.last_updated = timestamp;
            self.note_commit_position();
            if std::mem::take(&mut self.index_now_current) {
                self.index_stale.store(false, AtomicOrdering::Release);
            }
            for (job, result) in done {
                let _ = job.reply.send(result);
            }
            if again.is_empty() {
                return;
            }
            pending = again;
        }
    }

    /// The group in one transaction without savepoints; the jobs back if a unit failed (the
    /// transaction rolled back, nothing answered).
    fn commit_without_savepoints(&mut self, jobs: Vec<Job>) -> std::result::Result<(), Vec<Job>> {
        let timestamp = epoch_millis_now().max(self.last_updated);
        let timestamp_text = DateTime::from_epoch_millis(timestamp).to_string();
        if self.connection.batch("BEGIN").is_err() || self.refresh_holds().is_err() {
            let _ = self.connection.batch("ROLLBACK");
            return Err(jobs);
        }
        let holds_before = (self.holds.clone(), self.holds_counter);
        self.wait_for_locks = false;
        let mut results = Vec::with_capacity(jobs.len());
        for job in &jobs {
            match self.apply(&job.unit, timestamp, &timestamp_text) {
                Ok(written) => results.push(written),
                Err(_) => break,
            }
        }
        if results.len() < jobs.len() {
            let _ = self.connection.batch("ROLLBACK");
            (self.holds, self.holds_counter) = holds_before;
            self.index_now_current = false;
            return Err(jobs);
        }
        // A failed COMMIT is not run again: on a lost connection its outcome is unknown.
        if let Err(error) = self.connection.batch("COMMIT") {
            (self.holds, self.holds_counter) = holds_before;
            self.holds_counter = None;
            self.index_now_current = false;
            self.fail_unknown(jobs, &error);
            return Ok(());
        }
        self.last_updated = timestamp;
        self.note_commit_position();
        if std::mem::take(&mut self.index_now_current) {
            self.index_stale.store(false, AtomicOrdering::Release);
        }
        for (job, written) in jobs.into_iter().zip(results) {
            let _ = job.reply.send(Ok(written));
        }
        Ok(())
    }

    /// Runs a unit in its own savepoint, so that it fails alone. The outer error is the
    /// transaction's own failure.
    fn apply_in_savepoint(
        &mut self,
        unit: &WriteUnit,
        timestamp: i64,
        timestamp_text: &str,
    ) -> std::result::Result<Result<Vec<Written>>, String> {
        let holds = (self.holds.clone(), self.holds_counter);
        self.connection.batch("SAVEPOINT unit").map_err(|e| e.to_string())?;
        match self.apply(unit, timestamp, timestamp_text) {
            Ok(written) => {
                self.connection.batch("RELEASE unit").map_err(|e| e.to_string())?;
                Ok(Ok(written))
            }
            Err(error) => {
                self.connection.batch("ROLLBACK TO unit; RELEASE unit").map_err(|e| e.to_string())?;
                (self.holds, self.holds_counter) = holds;
                self.index_now_current = false;
                Ok(Err(error))
            }
        }
    }

    fn apply(&mut self, unit: &WriteUnit, timestamp: i64, timestamp_text: &str) -> Result<Vec<Written>> {
        let mut written = Vec::with_capacity(unit.ops.len());
        let mut pending: HashMap<i64, &IndexEntries> = HashMap::new();
        for op in &unit.ops {
            let result = match op {
                WriteOp::Create(resource) => {
                    if self.current(resource.resource_type(), resource.id())?.is_some() {
                        return Err(Error::AlreadyExists(format!(
                            "{}/{}",
                            resource.resource_type(),
                            resource.id()
                        )));
                    }
                    let (stored, rkey) =
                        self.store_version(resource, None, WriteMethod::Create, timestamp, timestamp_text)?;
                    pending.insert(rkey, resource.index());
                    stored
                }
                WriteOp::Update { resource, if_match } => {
                    let current = self.current(resource.resource_type(), resource.id())?;
                    check_if_match(
                        resource.resource_type(),
                        resource.id(),
                        if_match.as_ref(),
                        current.as_ref(),
                    )?;
                    self.check_not_held(resource.resource_type(), resource.id(), current.as_ref())?;
                    let method = if current.as_ref().is_some_and(|c| !c.deleted) {
                        WriteMethod::Update
                    } else {
                        WriteMethod::UpdateCreate
                    };
                    let (stored, rkey) =
                        self.store_version(resource, current, method, timestamp, timestamp_text)?;
                    pending.insert(rkey, resource.index());
                    stored
                }
                WriteOp::CreateIfNoneExist { resource, query } => {
                    self.lock_query(query)?;
                    let matches = self.matches(query)?;
                    match matches.as_slice() {
                        [] => {
                            let (stored, rkey) = self.store_version(
                                resource,
                                None,
                                WriteMethod::Create,
                                timestamp,
                                timestamp_text,
                            )?;
                            pending.insert(rkey, resource.index());
                            stored
                        }
                        [existing] => Written {
                            resource_type: existing.resource_type.clone(),
                            id: existing.id.clone(),
                            outcome: WriteOutcome::Existing {
                                version: existing.version,
                                last_updated: existing.last_updated,
                                body: existing.body.clone().unwrap_or_default(),
                            },
                        },
                        several => return Err(multiple(query, several.len())),
                    }
                }
                WriteOp::ConditionalUpdate { resource, query, id_given } => {
                    self.lock_query(query)?;
                    let matches = self.matches(query)?;
                    let target = match matches.as_slice() {
                        [] => resource.clone(),
                        [existing] if *id_given && existing.id != resource.id() => {
                            return Err(Error::IdMismatch(format!(
                                "the resource's id {} differs from the id {} of the one resource matching {}",
                                resource.id(),
                                existing.id,
                                describe(query)
                            )));
                        }
                        [existing] => resource.with_id(&existing.id),
                        several => return Err(multiple(query, several.len())),
                    };
                    let current = self.current(target.resource_type(), target.id())?;
                    if !matches.is_empty() && current.as_ref().is_none_or(|c| c.deleted) {
                        return Err(changed_meanwhile(target.resource_type(), target.id()));
                    }
                    self.check_not_held(target.resource_type(), target.id(), current.as_ref())?;
                    let method = if current.as_ref().is_some_and(|c| !c.deleted) {
                        WriteMethod::Update
                    } else {
                        WriteMethod::UpdateCreate
                    };
                    let (stored, rkey) =
                        self.store_version(&target, current, method, timestamp, timestamp_text)?;
                    pending.insert(rkey, resource.index());
                    stored
                }
                WriteOp::ConditionalDelete { query } => {
                    self.lock_query(query)?;
                    let matches = self.matches(query)?;
                    match matches.as_slice() {
                        [] => Written {
                            resource_type: query.resource_type.clone(),
                            id: String::new(),
                            outcome: WriteOutcome::NothingToDelete,
                        },
                        [existing] => {
                            let current = self
                                .current(&existing.resource_type, &existing.id)?
                                .filter(|current| !current.deleted)
                                .ok_or_else(|| changed_meanwhile(&existing.resource_type, &existing.id))?;
                            self.check_not_held(&existing.resource_type, &existing.id, Some(&current))?;
                            pending.remove(&current.rkey);
                            self.store_tombstone(&existing.resource_type, &existing.id, current, timestamp)?
                        }
                        several => return Err(multiple(query, several.len())),
                    }
                }
                WriteOp::Reindex { after_rkey, limit } => self.reindex_range(*after_rkey, *limit)?,
                WriteOp::Purge { resource_type, id, if_match } => {
                    let current = self.current(resource_type, id)?;
                    if let Some(current) = &current {
                        pending.remove(&current.rkey);
                    }
                    self.purge(resource_type, id, if_match.clone(), current)?
                }
                WriteOp::Delete { resource_type, id, if_match } => {
                    let current = self.current(resource_type, id)?;
                    check_if_match(resource_type, id, if_match.as_ref(), current.as_ref())?;
                    self.check_not_held(resource_type, id, current.as_ref())?;
                    match current {
                        Some(current) if !current.deleted => {
                            pending.remove(&current.rkey);
                            self.store_tombstone(resource_type, id, current, timestamp)?
                        }
                        _ => Written {
                            resource_type: resource_type.clone(),
                            id: id.clone(),
                            outcome: WriteOutcome::NothingToDelete,
                        },
                    }
                }
            };
            if result.resource_type == "Task" {
                self.note_hold_task(&result)?;
            }
            written.push(result);
        }
        // One move per unit and type, in the unit's transaction (rolled back with it).
        for resource_type in STAMPED_TYPES {
            let changed = written.iter().any(|w| {
                w.resource_type == *resource_type
                    && matches!(w.outcome, WriteOutcome::Stored { .. } | WriteOutcome::Deleted { .. })
            });
            if changed {
                self.connection.execute(
                    "INSERT INTO store_counters (name, value) VALUES ($1, 1)
                     ON CONFLICT (name) DO UPDATE SET value = store_counters.value + 1",
                    &[&stamp_name(resource_type)],
                )?;
            }
        }
        self.write_index(&pending)?;
        Ok(written)
    }

    /// Serializes conditional operations on the same type and criteria across processes: the
    /// second waits for the first's commit, then its search sees what the first wrote.
    fn lock_query(&self, query: &SearchQuery) -> Result<()> {
        let key = format!("{}?{:?}", query.resource_type, query.filters);
        let hash = fnv64(key.as_bytes()) as i64;
        if self.wait_for_locks {
            self.connection.query("SELECT pg_advisory_xact_lock($1)", &[&hash])?;
            return Ok(());
        }
        let locked: bool = self
            .connection
            .query_opt("SELECT pg_try_advisory_xact_lock($1)", &[&hash])?
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or(false);
        if locked {
            Ok(())
        } else {
            Err(Error::Postgres {
                code: LOCK_NOT_AVAILABLE.into(),
                message: format!("another process is running a conditional operation on {}", describe(query)),
            })
        }
    }

    fn check_not_held(&self, resource_type: &str, id: &str, current: Option<&Current>) -> Result<()> {
        let Some(current) = current.filter(|c| !c.deleted && !self.holds.is_empty()) else { return Ok(()) };
        self.check_body_not_held(resource_type, id, current.seq)
    }

    fn check_body_not_held(&self, resource_type: &str, id: &str, seq: i64) -> Result<()> {
        let body: Option<Vec<u8>> = self
            .connection
            .query_opt("SELECT body FROM versions WHERE seq = $1", &[&seq])?
            .map(|row| row.try_get::<_, Option<Vec<u8>>>(0))
            .transpose()?
            .flatten();
        let Some(body) = body else { return Ok(()) };
        let json =
            fhir::parse_json(&body).map_err(|e| Error::Corrupt(format!("stored version {seq}: {e}")))?;
        match crate::hold::held_by(&self.holds, resource_type, &json) {
            Some(hold) => {
                Err(Error::Held { resource: format!("{resource_type}/{id}"), hold: hold.id.clone() })
            }
            None => Ok(()),
        }
    }

    /// Keeps the active holds in step with a Task just written, and tells the other
    /// processes (the counter they read at each commit).
    fn note_hold_task(&mut self, written: &Written) -> Result<()> {
        if !crate::hold::follow(&mut self.holds, written) {
            return Ok(());
        }
        let counter: i64 = self
            .connection
            .query_opt(
                "UPDATE store_counters SET value = value + 1 WHERE name = 'holds' RETURNING value",
                &[],
            )?
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or(0);
        self.holds_counter = Some(counter);
        Ok(())
    }

    fn purge(
        &mut self,
        resource_type: &str,
        id: &str,
        if_match: Option<Precondition>,
        current: Option<Current>,
    ) -> Result<Written> {
        let Some(current) = current else {
            return Ok(Written {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
                outcome: WriteOutcome::Purged { versions: 0 },
            });
        };
        check_if_match(resource_type, id, if_match.as_ref(), Some(&current))?;
        if !self.holds.is_empty() {
            let seq: Option<i64> = self
                .connection
                .query_opt(
                    "SELECT seq FROM versions WHERE rkey = $1 AND body IS NOT NULL ORDER BY seq DESC LIMIT 1",
                    &[&current.rkey],
                )?
                .map(|row| row.try_get(0))
                .transpose()?;
            if let Some(seq) = seq {
                self.check_body_not_held(resource_type, id, seq)?;
            }
        }
        self.connection.query(&self.clear_index, &[&current.rkey])?;
        let versions = self.connection.execute("DELETE FROM versions WHERE rkey = $1", &[&current.rkey])?;
        self.connection.execute("DELETE FROM resources WHERE rkey = $1", &[&current.rkey])?;
        Ok(Written {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            outcome: WriteOutcome::Purged { versions },
        })
    }

    fn matches(&self, query: &SearchQuery) -> Result<Vec<VersionRecord>> {
        if self.index_stale.load(AtomicOrdering::Acquire) {
            return Err(Error::IndexStale);
        }
        let query = SearchQuery {
            count: 2,
            cursor: None,
            sort: Vec::new(),
            total: crate::Total::None,
            ..query.clone()
        };
        Ok(search::search(&self.connection, &query)?.matches)
    }

    fn reindex_range(&mut self, after_rkey: i64, limit: usize) -> Result<Written> {
        if after_rkey == 0 {
            self.connection.batch(&format!("TRUNCATE {}", ALL_INDEX_TABLES.join(", ")))?;
            self.connection.batch("DELETE FROM store_meta WHERE key = 'index_format'")?;
        }
        let rows = self.connection.query(
            "SELECT r.rkey, r.res_type, v.body FROM resources r JOIN versions v ON v.seq = r.seq
              WHERE r.rkey > $1 AND r.deleted = 0 ORDER BY r.rkey LIMIT $2",
            &[&after_rkey, &(limit as i64)],
        )?;
        let mut entries = Vec::with_capacity(rows.len());
        let mut last = after_rkey;
        for row in &rows {
            let rkey: i64 = row.try_get(0)?;
            let resource_type: String = row.try_get(1)?;
            let body: Option<Vec<u8>> = row.try_get(2)?;
            let json = fhir::parse_json(&body.unwrap_or_default())
                .map_err(|e| Error::Corrupt(format!("resource {rkey}: {e}")))?;
            entries.push((rkey, crate::index::extract_json(&resource_type, &json)));
            last = rkey;
        }
        let pending: HashMap<i64, &IndexEntries> = entries.iter().map(|(k, e)| (*k, e)).collect();
        self.write_index(&pending)?;
        if rows.len() < limit {
            write_index_format(&self.connection)?;
            self.index_now_current = true;
        }
        Ok(Written {
            resource_type: String::new(),
            id: String::new(),
            outcome: WriteOutcome::Reindexed { last_rkey: last, count: rows.len() as u64 },
        })
    }

    /// The current version, locked until the commit: another process's change to the same
    /// resource waits for this one, then sees it.
    fn current(&self, resource_type: &str, id: &str) -> Result<Option<Current>> {
        let statement = if self.wait_for_locks {
            "SELECT rkey, version, deleted, seq, last_updated FROM resources WHERE res_type = $1 AND res_id = $2 FOR UPDATE"
        } else {
            "SELECT rkey, version, deleted, seq, last_updated FROM resources WHERE res_type = $1 AND res_id = $2 FOR UPDATE NOWAIT"
        };
        self.connection
            .query_opt(statement, &[&resource_type, &id])?
            .map(|row| {
                Ok(Current {
                    rkey: row.try_get(0)?,
                    version: row.try_get::<_, i64>(1)? as u64,
                    deleted: row.try_get::<_, i64>(2)? != 0,
                    seq: row.try_get(3)?,
                    last_updated: row.try_get(4)?,
                })
            })
            .transpose()
    }

    /// Stores a new version; answers what was written and the resource's rkey.
    fn store_version(
        &mut self,
        resource: &PreparedResource,
        current: Option<Current>,
        method: WriteMethod,
        timestamp: i64,
        timestamp_text: &str,
    ) -> Result<(Written, i64)> {
        let version = current.as_ref().map_or(1, |c| c.version + 1);
        let created = current.as_ref().is_none_or(|c| c.deleted);
        // Another server's clock may be ahead: this version is not dated before the last.
        let (timestamp, timestamp_text) = match &current {
            Some(current) => current.next_time(timestamp, timestamp_text),
            None => (timestamp, timestamp_text.to_string()),
        };
        let timestamp_text = timestamp_text.as_str();
        let body = resource.render(version, timestamp_text);
        let rkey = match &current {
            Some(current) => {
                self.connection.query(&self.clear_index, &[&current.rkey])?;
                self.write_version(current.rkey, version, false, timestamp, method, Some(&body))?;
                current.rkey
            }
            None => {
                let row = self.connection.query_opt(
                    "WITH r AS (
                        INSERT INTO resources (rkey, res_type, res_id, version, deleted, last_updated, seq)
                        VALUES (nextval('resource_keys'), $1, $2, $3, 0, $4, nextval('version_seq'))
                        RETURNING rkey, seq)
                     INSERT INTO versions (seq, rkey, res_type, version, last_updated, method, body)
                     SELECT r.seq, r.rkey, $1, $3, $4, $5, $6 FROM r RETURNING rkey",
                    &[
                        &resource.resource_type(),
                        &resource.id(),
                        &(version as i64),
                        &timestamp,
                        &method.code(),
                        &body,
                    ],
                )?;
                row.ok_or_else(|| Error::Corrupt("an insert returned no row".into()))?.try_get(0)?
            }
        };
        Ok((
            Written {
                resource_type: resource.resource_type().to_string(),
                id: resource.id().to_string(),
                outcome: WriteOutcome::Stored { version, last_updated: timestamp, created, body },
            },
            rkey,
        ))
    }

    /// A new current version of an existing resource (`body` `None`: a tombstone).
    fn write_version(
        &self,
        rkey: i64,
        version: u64,
        deleted: bool,
        timestamp: i64,
        method: WriteMethod,
        body: Option<&[u8]>,
    ) -> Result<()> {
        self.connection.query(
            "WITH r AS (
                UPDATE resources SET version = $2, deleted = $3, last_updated = $4, seq = nextval('version_seq')
                 WHERE rkey = $1 RETURNING rkey, seq, res_type)
             INSERT INTO versions (seq, rkey, res_type, version, last_updated, method, body)
             SELECT r.seq, r.rkey, r.res_type, $2, $4, $5, $6 FROM r",
            &[&rkey, &(version as i64), &i64::from(deleted), &timestamp, &method.code(), &body],
        )?;
        Ok(())
    }

    fn store_tombstone(
        &mut self,
        resource_type: &str,
        id: &str,
        current: Current,
        timestamp: i64,
    ) -> Result<Written> {
        let version = current.version + 1;
        let (timestamp, _) = current.next_time(timestamp, "");
        self.connection.query(&self.clear_index, &[&current.rkey])?;
        self.write_version(current.rkey, version, true, timestamp, WriteMethod::Delete, None)?;
        Ok(Written {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            outcome: WriteOutcome::Deleted { version, last_updated: timestamp },
        })
    }

    /// Every index row of the unit in one statement: each table's rows as arrays, unnested.
    fn write_index(&self, pending: &HashMap<i64, &IndexEntries>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut columns = IndexColumns::default();
        for (&rkey, entries) in pending {
            columns.add(rkey, entries);
        }
        columns.insert(&self.connection)
    }
}

/// Columns of an index table: param, value, rkey, type system, type code.
type IdentifierTypeColumns = (Vec<i64>, Vec<String>, Vec<i64>, Vec<String>, Vec<String>);

/// The index rows of a commit, column by column.
#[derive(Default)]
struct IndexColumns {
    string: (Vec<i64>, Vec<String>, Vec<i64>, Vec<String>),
    token: (Vec<i64>, Vec<String>, Vec<i64>, Vec<String>),
    token_text: (Vec<i64>, Vec<String>, Vec<i64>),
    identifier_type: IdentifierTypeColumns,
    date: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>),
    date_wide: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>),
    number: (Vec<i64>, Vec<f64>, Vec<f64>, Vec<i64>),
    reference: (Vec<i64>, Vec<String>, Vec<String>, Vec<i64>),
    uri: (Vec<i64>, Vec<String>, Vec<i64>),
    quantity: QuantityColumns,
    composite: CompositeColumns,
}

#[derive(Default)]
struct QuantityColumns {
    param: Vec<i64>,
    dimension: Vec<String>,
    canonical_low: Vec<f64>,
    canonical_high: Vec<f64>,
    rkey: Vec<i64>,
    system: Vec<String>,
    code: Vec<String>,
    low: Vec<f64>,
    high: Vec<f64>,
}

#[derive(Default)]
struct CompositeColumns {
    param: Vec<i64>,
    code: Vec<String>,
    rkey: Vec<i64>,
    system: Vec<String>,
    second_system: Vec<String>,
    second_text: Vec<String>,
    second_low: Vec<f64>,
    second_high: Vec<f64>,
}

impl IndexColumns {
    fn add(&mut self, rkey: i64, entries: &IndexEntries) {
        for (param, norm, exact) in &entries.strings {
            self.string.0.push(i64::from(*param));
            self.string.1.push(text(norm));
            self.string.2.push(rkey);
            self.string.3.push(text(exact));
        }
        for (param, system, code) in &entries.tokens {
            self.token.0.push(i64::from(*param));
            self.token.1.push(text(code));
            self.token.2.push(rkey);
            self.token.3.push(text(system));
        }
        for (param, value) in &entries.token_texts {
            self.token_text.0.push(i64::from(*param));
            self.token_text.1.push(text(value));
            self.token_text.2.push(rkey);
        }
        for (param, system, code, value) in &entries.identifier_types {
            self.identifier_type.0.push(i64::from(*param));
            self.identifier_type.1.push(text(value));
            self.identifier_type.2.push(rkey);
            self.identifier_type.3.push(text(system));
            self.identifier_type.4.push(text(code));
        }
        let dates: Vec<(u32, i64, i64, i64)> =
            entries.dates.iter().map(|(p, l, h)| (*p, *l, *h, rkey)).collect();
        for &(param, low, high, rkey) in &dates {
            self.date.0.push(i64::from(param));
            self.date.1.push(low);
            self.date.2.push(high);
            self.date.3.push(rkey);
        }
        let mut dates = dates;
        dates.sort_unstable();
        dates.dedup();
        for (param, rkey, wide, multi) in crate::sqlite::date_flags(&dates) {
            self.date_wide.0.push(i64::from(param));
            self.date_wide.1.push(rkey);
            self.date_wide.2.push(i64::from(wide));
            self.date_wide.3.push(i64::from(multi));
        }
        for (param, low, high) in &entries.numbers {
            self.number.0.push(i64::from(*param));
            self.number.1.push(*low);
            self.number.2.push(*high);
            self.number.3.push(rkey);
        }
        for (param, target_type, target) in &entries.references {
            self.reference.0.push(i64::from(*param));
            self.reference.1.push(text(target_type));
            self.reference.2.push(text(target));
            self.reference.3.push(rkey);
        }
        for (param, value) in &entries.uris {
            self.uri.0.push(i64::from(*param));
            self.uri.1.push(text(value));
            self.uri.2.push(rkey);
        }
        for q in &entries.quantities {
            let (dimension, low, high) = match &q.canonical {
                Some((d, l, h)) => (d.clone(), *l, *h),
                None => (String::new(), q.low, q.high),
            };
            let c = &mut self.quantity;
            c.param.push(i64::from(q.param));
            c.dimension.push(text(&dimension));
            c.canonical_low.push(low);
            c.canonical_high.push(high);
            c.rkey.push(rkey);
            c.system.push(text(&q.system));
            c.code.push(text(&q.code));
            c.low.push(q.low);
            c.high.push(q.high);
        }
        for row in &entries.composites {
            let c = &mut self.composite;
            c.param.push(i64::from(row.param));
            c.code.push(text(&row.code));
            c.rkey.push(rkey);
            c.system.push(text(&row.system));
            c.second_system.push(text(&row.second_system));
            c.second_text.push(text(&row.second_text));
            c.second_low.push(row.second_low);
            c.second_high.push(row.second_high);
        }
    }

    fn insert(&self, connection: &Connection) -> Result<()> {
        let mut batch = InsertBatch::default();
        let s = &self.string;
        batch.add(
            "idx_string",
            &["bigint", "text", "bigint", "text"],
            &[&s.0, &s.1, &s.2, &s.3],
            s.0.is_empty(),
        );
        let t = &self.token;
        batch.add(
            "idx_token",
            &["bigint", "text", "bigint", "text"],
            &[&t.0, &t.1, &t.2, &t.3],
            t.0.is_empty(),
        );
        let t = &self.token_text;
        batch.add("idx_token_text", &["bigint", "text", "bigint"], &[&t.0, &t.1, &t.2], t.0.is_empty());
        let i = &self.identifier_type;
        batch.add(
            "idx_identifier_type",
            &["bigint", "text", "bigint", "text", "text"],
            &[&i.0, &i.1, &i.2, &i.3, &i.4],
            i.0.is_empty(),
        );
        let d = &self.date;
        batch.add(
            "idx_date",
            &["bigint", "bigint", "bigint", "bigint"],
            &[&d.0, &d.1, &d.2, &d.3],
            d.0.is_empty(),
        );
        let w = &self.date_wide;
        batch.add(
            "idx_date_wide",
            &["bigint", "bigint", "bigint", "bigint"],
            &[&w.0, &w.1, &w.2, &w.3],
            w.0.is_empty(),
        );
        let n = &self.number;
        batch.add(
            "idx_number",
            &["bigint", "float8", "float8", "bigint"],
            &[&n.0, &n.1, &n.2, &n.3],
            n.0.is_empty(),
        );
        let r = &self.reference;
        batch.add(
            "idx_reference",
            &["bigint", "text", "text", "bigint"],
            &[&r.0, &r.1, &r.2, &r.3],
            r.0.is_empty(),
        );
        let u = &self.uri;
        batch.add("idx_uri", &["bigint", "text", "bigint"], &[&u.0, &u.1, &u.2], u.0.is_empty());
        let q = &self.quantity;
        batch.add(
            "idx_quantity",
            &["bigint", "text", "float8", "float8", "bigint", "text", "text", "float8", "float8"],
            &[
                &q.param,
                &q.dimension,
                &q.canonical_low,
                &q.canonical_high,
                &q.rkey,
                &q.system,
                &q.code,
                &q.low,
                &q.high,
            ],
            q.param.is_empty(),
        );
        let c = &self.composite;
        batch.add(
            "idx_composite",
            &["bigint", "text", "bigint", "text", "text", "text", "float8", "float8"],
            &[
                &c.param,
                &c.code,
                &c.rkey,
                &c.system,
                &c.second_system,
                &c.second_text,
                &c.second_low,
                &c.second_high,
            ],
            c.param.is_empty(),
        );
        if batch.parts.is_empty() {
            return Ok(());
        }
        let text = format!("WITH {} SELECT 1", batch.parts.join(", "));
        // Not cached: the text varies with which tables have rows.
        block_on(connection.client.query(text.as_str(), &batch.params))?;
        Ok(())
    }
}

/// One statement inserting into several index tables: a data-modifying `WITH` part per table.
#[derive(Default)]
struct InsertBatch<'a> {
    params: Vec<&'a (dyn ToSql + Sync)>,
    parts: Vec<String>,
}

impl<'a> InsertBatch<'a> {
    /// Adds one table's columns (nothing when `empty`).
    fn add(&mut self, target: &str, types: &[&str], values: &[&'a (dyn ToSql + Sync)], empty: bool) {
        if empty {
            return;
        }
        let start = self.params.len();
        let arrays: Vec<String> =
            types.iter().enumerate().map(|(i, t)| format!("${}::{t}[]", start + i + 1)).collect();
        self.parts.push(format!(
            "i{} AS (INSERT INTO {target} SELECT * FROM unnest({}) ON CONFLICT DO NOTHING)",
            self.parts.len(),
            arrays.join(", ")
        ));
        self.params.extend_from_slice(values);
    }
}

/// The active legal holds on record.
fn load_holds(connection: &Connection) -> Result<Vec<crate::hold::Hold>> {
    let rows = connection.query(
        "SELECT v.body FROM resources r JOIN versions v ON v.seq = r.seq WHERE r.res_type = 'Task' AND r.deleted = 0",
        &[],
    )?;
    let mut holds = Vec::new();
    for row in rows {
        holds.extend(
            row.try_get::<_, Option<Vec<u8>>>(0)?.as_deref().and_then(crate::hold::Hold::from_stored),
        );
    }
    Ok(holds)
}

/// FNV-1a: a stable 64-bit key for an advisory lock.
fn fnv64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
