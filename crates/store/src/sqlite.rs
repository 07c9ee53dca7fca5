//! The embedded backend: one SQLite database (WAL mode) in a data directory.
//!
//! One writer thread owns the only write connection. It takes whatever units are queued,
//! applies each inside its own savepoint (so a failing unit rolls back alone), commits them
//! all with one sync, and only then answers each caller: group commit. Reads use a small pool
//! of read-only connections and never wait for the writer.
//!
//! One process writes a data directory (it holds `chartroom.lock`); any number of others may
//! read it at the same time through [`SqliteStore::open_read_only`], which takes no lock,
//! starts no writer and reads one snapshot (WAL readers never block the writer).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fhir::DateTime;
use fhir::datetime::epoch_millis_now;
use rusqlite::{Connection, OpenFlags, OptionalExtension, ToSql, params};
use tokio::sync::oneshot;

use crate::index::IndexEntries;
use crate::search::{self, SearchPage, SearchQuery};
use crate::write::{Current, check_if_match, describe, multiple};
use crate::{
    Error, HistoryPage, HistoryQuery, HistoryScope, PendingWrite, Precondition, PreparedResource, Result,
    Store, VersionRecord, WriteMethod, WriteOp, WriteOutcome, WriteUnit, Written,
};
use fhir::search_parameters::ParamKey;

const DATABASE_FILE: &str = "chartroom.db";
const LOCK_FILE: &str = "chartroom.lock";
const SCHEMA_VERSION: i64 = 2;
const MAX_IDLE_READERS: usize = 32;
/// Bumped whenever extraction changes what the index holds for the same resource.
const INDEX_FORMAT: u32 = 5;

/// The `store_meta` value naming the index format and parameter table this build writes.
pub(crate) fn index_format() -> String {
    format!("{INDEX_FORMAT}:{:016x}", fhir::search_parameters::search_parameters().fingerprint())
}

/// How hard SQLite works to make a commit durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    /// WAL + NORMAL: a commit survives the process being killed, but the last commits may be
    /// lost if the machine loses power.
    Normal,
    /// WAL + FULL: a commit also survives power loss. Group commit makes it affordable.
    Full,
}

/// Tuning for [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub synchronous: Synchronous,
    /// Page cache of the write connection, in MiB.
    pub cache_mib: u32,
    /// Upper bound on operations gathered into one commit.
    pub max_ops_per_commit: usize,
    /// Whether a missing data directory (or one without a database) is made. Off for writers
    /// that only work on an existing record (`reindex`): a mistyped path is refused rather
    /// than answered with an empty store.
    pub create: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            synchronous: Synchronous::Full,
            cache_mib: 512,
            max_ops_per_commit: 20_000,
            create: true,
        }
    }
}

struct Job {
    unit: WriteUnit,
    reply: oneshot::Sender<Result<Vec<Written>>>,
}

/// The SQLite store.
pub struct SqliteStore {
    database: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// Opened read-only: the one connection every read goes through, inside the read
    /// transaction that is the store's snapshot. `None` for the writing store.
    snapshot: Option<Snapshot>,
    /// Whether `open` made the database (a new data directory).
    created: bool,
    sender: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<Checkpointer>>,
    /// Set while the index was built by another format: searches would silently miss, so
    /// they fail until `reindex` has run.
    index_stale: Arc<AtomicBool>,
    /// Held for the writing store's lifetime: a second writing process on the same directory
    /// would corrupt the writer's sequence counters. A read-only store takes none.
    _lock: Option<File>,
}

/// A read-only store's connection, inside the read transaction every read of the store sees.
struct Snapshot {
    /// `None` once the store is closed (the transaction ended).
    connection: Mutex<Option<Connection>>,
    /// The thread reading through the connection now: a second read from the same thread
    /// (inside a scan's visitor) would wait for itself, and is refused instead.
    reader: Mutex<Option<std::thread::ThreadId>>,
}

impl Snapshot {
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let me = std::thread::current().id();
        if self.reader.lock().map_err(|_| Error::Closed)?.as_ref() == Some(&me) {
            return Err(Error::SnapshotBusy);
        }
        let guard = self.connection.lock().map_err(|_| Error::Closed)?;
        let connection = guard.as_ref().ok_or(Error::Closed)?;
        self.set_reader(Some(me));
        let result = f(connection);
        self.set_reader(None);
        result
    }

    fn set_reader(&self, reader: Option<std::thread::ThreadId>) {
        if let Ok(mut slot) = self.reader.lock() {
            *slot = reader;
        }
    }

    /// Ends the read transaction (closing the connection rolls it back), so the server's
    /// checkpoints may reset the log again.
    fn end(&self) {
        if let Ok(mut connection) = self.connection.lock() {
            connection.take();
        }
    }
}

/// The database of data directory `dir`, or why `dir` is not a data directory. Creates nothing.
fn existing_database(dir: &Path) -> Result<PathBuf> {
    let not_ours =
        |reason: &str| Error::NotADataDirectory { path: dir.display().to_string(), reason: reason.into() };
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(not_ours("it is not a directory")),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_ours("it does not exist"));
        }
        Err(cause) => return Err(Error::DataDirectory { path: dir.display().to_string(), cause }),
    }
    let database = dir.join(DATABASE_FILE);
    match std::fs::metadata(&database) {
        Ok(metadata) if metadata.is_file() => Ok(database),
        Ok(_) => Err(not_ours(&format!("its {DATABASE_FILE} is not a file"))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(not_ours(&format!("it holds no {DATABASE_FILE}")))
        }
        Err(cause) => Err(Error::DataDirectory { path: database.display().to_string(), cause }),
    }
}

/// Whether the database holds the store's tables (`store_meta` is made with them); a file
/// that is no SQLite database at all says so as `false`.
fn holds_a_store(connection: &Connection) -> Result<bool> {
    let found = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'store_meta')",
        [],
        |r| r.get(0),
    );
    match found {
        Ok(found) => Ok(found),
        Err(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == rusqlite::ErrorCode::NotADatabase =>
        {
            Ok(false)
        }
        Err(error) => Err(error.into()),
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resources (
    rkey INTEGER PRIMARY KEY,
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS resources_identity ON resources(res_type, res_id);
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY,
    rkey INTEGER NOT NULL,
    res_type TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    method INTEGER NOT NULL,
    body BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS versions_instance ON versions(rkey, version);
CREATE INDEX IF NOT EXISTS versions_type ON versions(res_type, seq);
CREATE INDEX IF NOT EXISTS resources_type ON resources(res_type, rkey);
CREATE INDEX IF NOT EXISTS resources_type_updated ON resources(res_type, last_updated);

CREATE TABLE IF NOT EXISTS idx_string (
    param INTEGER NOT NULL, norm TEXT NOT NULL, rkey INTEGER NOT NULL, exact TEXT NOT NULL,
    PRIMARY KEY (param, norm, rkey, exact)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_token (
    param INTEGER NOT NULL, code TEXT NOT NULL, rkey INTEGER NOT NULL, system TEXT NOT NULL,
    PRIMARY KEY (param, code, rkey, system)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_token_text (
    param INTEGER NOT NULL, text TEXT NOT NULL, rkey INTEGER NOT NULL,
    PRIMARY KEY (param, text, rkey)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_identifier_type (
    param INTEGER NOT NULL, value TEXT NOT NULL, rkey INTEGER NOT NULL,
    type_system TEXT NOT NULL, type_code TEXT NOT NULL,
    PRIMARY KEY (param, value, rkey, type_system, type_code)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_date (
    param INTEGER NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL, rkey INTEGER NOT NULL,
    PRIMARY KEY (param, low, high, rkey)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_date_rkey ON idx_date(rkey, param);
CREATE TABLE IF NOT EXISTS idx_number (
    param INTEGER NOT NULL, low REAL NOT NULL, high REAL NOT NULL, rkey INTEGER NOT NULL,
    PRIMARY KEY (param, low, high, rkey)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_number_rkey ON idx_number(rkey, param);
CREATE TABLE IF NOT EXISTS idx_quantity (
    param INTEGER NOT NULL,
    -- UCUM dimension and value in base units; for units UCUM does not convert, '' and the value
    -- as written (matched together with `code`).
    dimension TEXT NOT NULL, canonical_low REAL NOT NULL, canonical_high REAL NOT NULL,
    rkey INTEGER NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, low REAL NOT NULL, high REAL NOT NULL,
    PRIMARY KEY (param, dimension, canonical_low, canonical_high, rkey, system, code, low, high)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_quantity_rkey ON idx_quantity(rkey, param);
CREATE TABLE IF NOT EXISTS idx_date_wide (
    -- Resources whose values of a date parameter cannot be found by a bounded scan of
    -- idx_date.low: a value wider than WIDE_DATE_MS (`wide`), or more than one value (`multi`,
    -- for AND-ed conditions that different values may satisfy).
    param INTEGER NOT NULL, rkey INTEGER NOT NULL, wide INTEGER NOT NULL, multi INTEGER NOT NULL,
    PRIMARY KEY (param, rkey)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_reference (
    param INTEGER NOT NULL, target_type TEXT NOT NULL, target TEXT NOT NULL, rkey INTEGER NOT NULL,
    PRIMARY KEY (param, target_type, target, rkey)) WITHOUT ROWID;
-- Chained searches walk the source type and follow each resource's own references.
CREATE INDEX IF NOT EXISTS idx_reference_rkey ON idx_reference(rkey, param);
CREATE TABLE IF NOT EXISTS idx_uri (
    param INTEGER NOT NULL, value TEXT NOT NULL, rkey INTEGER NOT NULL,
    PRIMARY KEY (param, value, rkey)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_composite (
    param INTEGER NOT NULL, code TEXT NOT NULL, rkey INTEGER NOT NULL, system TEXT NOT NULL,
    second_system TEXT NOT NULL, second_text TEXT NOT NULL, second_low REAL NOT NULL, second_high REAL NOT NULL,
    PRIMARY KEY (param, code, rkey, system, second_system, second_text, second_low, second_high)) WITHOUT ROWID;
-- Composite conditions always fix (param, code), so the key reaches rkey without an index.
DROP INDEX IF EXISTS idx_composite_rkey;
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// Index tables with an `(rkey, param)` index: a resource's rows are deleted by rkey. The
/// other tables are keyed by value only (one B-tree per row written, which is what keeps
/// import fast); their rows are deleted by recomputing them from the old version.
const TABLES_BY_RKEY: &[&str] = &["idx_date", "idx_number", "idx_quantity", "idx_reference"];

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

impl SqliteStore {
    /// Opens the store in data directory `dir` for writing (creating the directory and its
    /// database if needed and `options.create`; [`SqliteStore::created`] says whether it did).
    /// One process at a time: a second writer is refused with [`Error::InUse`].
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self> {
        let io_error = |cause| Error::DataDirectory { path: dir.display().to_string(), cause };
        let database = dir.join(DATABASE_FILE);
        let created = if options.create {
            !database.try_exists().map_err(io_error)?
        } else {
            existing_database(dir)?;
            false
        };
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io_error)?;
        lock.try_lock().map_err(|error| match error {
            std::fs::TryLockError::WouldBlock => Error::InUse { path: dir.display().to_string() },
            std::fs::TryLockError::Error(cause) => io_error(cause),
        })?;
        let connection = Connection::open(&database)?;
        if !options.create && !holds_a_store(&connection)? {
            return Err(Error::NotADataDirectory {
                path: dir.display().to_string(),
                reason: format!("its {DATABASE_FILE} holds no Chartroom store"),
            });
        }
        stable_query_plans(&connection)?;
        let synchronous = match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        connection.execute_batch("PRAGMA page_size = 8192;")?;
        let journal_mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(Error::DataDirectory {
                path: dir.display().to_string(),
                cause: std::io::Error::other(format!(
                    "SQLite cannot use write-ahead logging here (journal mode '{journal_mode}'); \
                     the data directory needs a local file system with shared memory support"
                )),
            });
        }
        connection.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous};
             PRAGMA cache_size = -{};
             PRAGMA temp_store = MEMORY;
             PRAGMA mmap_size = 17179869184;
             PRAGMA foreign_keys = OFF;
             PRAGMA wal_autocheckpoint = 131072;
             PRAGMA journal_size_limit = 134217728;",
            options.cache_mib * 1024
        ))?;
        let schema_version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if schema_version > SCHEMA_VERSION {
            return Err(Error::Corrupt(format!(
                "the data directory has schema version {schema_version}; this build knows {SCHEMA_VERSION}"
            )));
        }
        connection.execute_batch(SCHEMA)?;
        connection.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        connection.set_prepared_statement_cache_capacity(96);
        let stored_format: Option<String> = connection
            .query_row("SELECT value FROM store_meta WHERE key = 'index_format'", [], |r| r.get(0))
            .optional()?;
        let has_resources: bool =
            connection.query_row("SELECT EXISTS (SELECT 1 FROM resources)", [], |r| r.get(0))?;
        let index_stale = match stored_format {
            Some(format) => format != index_format(),
            None if has_resources => true,
            None => {
                write_index_format(&connection)?;
                false
            }
        };
        let index_stale = Arc::new(AtomicBool::new(index_stale));

        let next_seq: i64 =
            connection.query_row("SELECT coalesce(max(seq), 0) + 1 FROM versions", [], |r| r.get(0))?;
        let next_rkey: i64 =
            connection.query_row("SELECT coalesce(max(rkey), 0) + 1 FROM resources", [], |r| r.get(0))?;
        let last_updated: i64 =
            connection.query_row("SELECT coalesce(max(last_updated), 0) FROM versions", [], |r| r.get(0))?;

        let holds = load_holds(&connection)?;
        let commits = Arc::new(AtomicU64::new(0));
        let checkpointer = Checkpointer::start(&database, commits.clone())?;
        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            connection,
            receiver,
            next_seq,
            next_rkey,
            last_updated,
            max_ops_per_commit: options.max_ops_per_commit.max(1),
            index_stale: index_stale.clone(),
            index_now_current: false,
            commits,
            holds,
            holds_touched: false,
        };
        let handle = std::thread::Builder::new()
            .name("chartroom-writer".into())
            .spawn(move || writer.run())
            .map_err(io_error)?;
        Ok(SqliteStore {
            database,
            readers: Mutex::new(Vec::new()),
            snapshot: None,
            created,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some(checkpointer)),
            index_stale,
            _lock: Some(lock),
        })
    }

    /// Opens the store in data directory `dir` for reading only, beside the one process that
    /// may be writing it (a running server, an import): a report over the record while the
    /// hospital keeps working.
    ///
    /// It takes no lock, starts no writer or checkpointer, and opens its connection with
    /// `SQLITE_OPEN_READ_ONLY`: it never changes the schema, migrates or reindexes. A
    /// directory that is no data directory (missing, or without the store's database) is
    /// refused, and nothing is created; a database of another schema version, or whose search
    /// index was built by another format, is refused too ([`Error::NeedsWriter`]): the server
    /// or `chartroom reindex` brings it up to date. Writes ([`Store::submit`],
    /// [`Store::reindex`]) answer [`Error::ReadOnly`].
    ///
    /// Every read sees one snapshot: the read transaction begun here, as of this call, which
    /// lasts until [`SqliteStore::close`] or drop. A WAL reader never blocks the writer, but
    /// while it holds a snapshot the server's checkpoints cannot reset the log past it, so
    /// the log grows for as long as the snapshot is held. Hold a read-only store for one
    /// report (one command) and close it: never keep one open in a long-lived process.
    /// Reads go through the one connection, one at a time.
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        let database = existing_database(dir)?;
        let needs_writer = |reason: String| Error::NeedsWriter { path: dir.display().to_string(), reason };
        let opened = open_read_connection(&database).and_then(|connection| {
            // The snapshot: from the first read on, every read of this transaction sees the
            // record as of now, whatever the server commits meanwhile.
            connection.execute_batch("BEGIN DEFERRED")?;
            Ok((holds_a_store(&connection)?, connection))
        });
        let connection = match opened {
            Ok((true, connection)) => connection,
            Ok((false, _)) => {
                return Err(Error::NotADataDirectory {
                    path: dir.display().to_string(),
                    reason: format!("its {DATABASE_FILE} holds no Chartroom store"),
                });
            }
            Err(Error::Database(rusqlite::Error::SqliteFailure(failure, _)))
                if failure.code == rusqlite::ErrorCode::NotADatabase =>
            {
                return Err(Error::NotADataDirectory {
                    path: dir.display().to_string(),
                    reason: format!("its {DATABASE_FILE} is not a database"),
                });
            }
            Err(error) => return Err(error),
        };
        let journal_mode: String = connection.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            // Outside WAL mode a reader would block the writer; only a writer converts it.
            return Err(needs_writer(format!(
                "its database is not in write-ahead-log mode (journal mode '{journal_mode}'); \
                 start `chartroom serve` on it once"
            )));
        }
        let schema_version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if schema_version > SCHEMA_VERSION {
            return Err(needs_writer(format!(
                "it has schema version {schema_version}, written by a newer Chartroom; this build \
                 reads version {SCHEMA_VERSION}"
            )));
        }
        if schema_version < SCHEMA_VERSION {
            return Err(needs_writer(format!(
                "it has schema version {schema_version} and this build reads version \
                 {SCHEMA_VERSION}; `chartroom serve` (or `import`) of this build upgrades it"
            )));
        }
        let stored_format: Option<String> = connection
            .query_row("SELECT value FROM store_meta WHERE key = 'index_format'", [], |r| r.get(0))
            .optional()?;
        let has_resources: bool =
            connection.query_row("SELECT EXISTS (SELECT 1 FROM resources)", [], |r| r.get(0))?;
        let index_current = match stored_format {
            Some(format) => format == index_format(),
            None => !has_resources,
        };
        if !index_current {
            return Err(needs_writer(
                "its search index was built by a different version of Chartroom; start \
                 `chartroom serve` of this version on it (it rebuilds the index), or run \
                 `chartroom reindex --data DIR` while no server runs"
                    .into(),
            ));
        }
        Ok(SqliteStore {
            database,
            readers: Mutex::new(Vec::new()),
            snapshot: Some(Snapshot { connection: Mutex::new(Some(connection)), reader: Mutex::new(None) }),
            created: false,
            sender: Mutex::new(None),
            writer: Mutex::new(None),
            checkpointer: Mutex::new(None),
            index_stale: Arc::new(AtomicBool::new(false)),
            _lock: None,
        })
    }

    /// Whether `dir` is a data directory (it exists and holds the store's database); the
    /// error names the path and says why not. Creates nothing.
    pub fn check_data_directory(dir: &Path) -> Result<()> {
        existing_database(dir).map(drop)
    }

    /// Whether [`SqliteStore::open`] made this data directory's database (a new record).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether the store was opened with [`SqliteStore::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Whether the search index must be rebuilt (`reindex`) before searches can run.
    pub fn index_is_stale(&self) -> bool {
        self.index_stale.load(AtomicOrdering::Acquire)
    }

    fn check_index(&self) -> Result<()> {
        if self.index_is_stale() { Err(Error::IndexStale) } else { Ok(()) }
    }

    /// Stops accepting writes, lets the writer finish what is queued, and waits for it. A
    /// read-only store ends its snapshot: reads after this answer [`Error::Closed`].
    pub fn close(&self) {
        if let Some(snapshot) = &self.snapshot {
            snapshot.end();
        }
        // The checkpointer stops (and closes its connection) first: the writer's last act is
        // a truncating checkpoint, which a concurrent one would make fail.
        if let Some(checkpointer) = self.checkpointer.lock().ok().and_then(|mut c| c.take()) {
            checkpointer.stop();
        }
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if let Some(snapshot) = &self.snapshot {
            return snapshot.read(f);
        }
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        let connection = match pooled {
            Some(connection) => connection,
            None => self.open_reader()?,
        };
        let result = f(&connection);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(connection);
        }
        result
    }

    fn open_reader(&self) -> Result<Connection> {
        open_read_connection(&self.database)
    }
}

/// A connection that can only read (`SQLITE_OPEN_READ_ONLY`: it cannot create the database
/// or change anything in it).
fn open_read_connection(database: &Path) -> Result<Connection> {
    let connection = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Memory-mapped reads: a point read of a cached page costs no system call.
    connection.execute_batch(
        "PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 17179869184;",
    )?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    stable_query_plans(&connection)?;
    connection.set_prepared_statement_cache_capacity(32);
    Ok(connection)
}

/// A read transaction, so that the statements of one read see one state of the record; none
/// when the connection is already inside one (a read-only store's snapshot), as SQLite
/// transactions do not nest.
fn read_transaction(connection: &Connection) -> Result<Option<rusqlite::Transaction<'_>>> {
    if connection.is_autocommit() { Ok(Some(connection.unchecked_transaction()?)) } else { Ok(None) }
}

fn write_index_format(connection: &Connection) -> Result<()> {
    connection.execute(
        "INSERT INTO store_meta (key, value) VALUES ('index_format', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [index_format()],
    )?;
    Ok(())
}

/// The writer's counters as the database has them: next seq, next rkey, latest lastUpdated.
fn load_counters(connection: &Connection) -> Result<(i64, i64, i64)> {
    let next_seq =
        connection.query_row("SELECT coalesce(max(seq), 0) + 1 FROM versions", [], |r| r.get(0))?;
    let next_rkey =
        connection.query_row("SELECT coalesce(max(rkey), 0) + 1 FROM resources", [], |r| r.get(0))?;
    let last_updated =
        connection.query_row("SELECT coalesce(max(last_updated), 0) FROM versions", [], |r| r.get(0))?;
    Ok((next_seq, next_rkey, last_updated))
}

/// Date values wider than this (two days: dates, dateTimes and instants all fit) are listed in
/// `idx_date_wide`; every other value lies within this distance of its `low`, which bounds
/// the scan for conditions on the upper end of a range. Month and year precision values and
/// long Periods are the (few) wide ones.
pub(crate) const WIDE_DATE_MS: i64 = 2 * 86_400_000;

/// The `idx_date_wide` rows for a batch of `(param, low, high, rkey)` date rows.
pub(crate) fn date_flags(dates: &[(u32, i64, i64, i64)]) -> Vec<(u32, i64, bool, bool)> {
    let mut per_resource: HashMap<(u32, i64), (bool, usize)> = HashMap::new();
    for &(param, low, high, rkey) in dates {
        let entry = per_resource.entry((param, rkey)).or_insert((false, 0));
        entry.0 |= high.saturating_sub(low) > WIDE_DATE_MS;
        entry.1 += 1;
    }
    let mut flags: Vec<(u32, i64, bool, bool)> = per_resource
        .into_iter()
        .filter(|(_, (wide, count))| *wide || *count > 1)
        .map(|((param, rkey), (wide, count))| (param, rkey, wide, count > 1))
        .collect();
    flags.sort_unstable();
    flags
}

/// Rows per multi-row INSERT: one statement execution per chunk instead of per row.
const INSERT_CHUNK: usize = 64;

/// Inserts rows (ignoring duplicates) into `target` (`table (columns)`), `INSERT_CHUNK` rows per
/// statement; the remainder row by row, so only two statements per table are ever prepared.
fn insert_rows<'r, const N: usize>(
    connection: &Connection,
    target: &str,
    rows: impl Iterator<Item = [&'r dyn ToSql; N]>,
) -> Result<()> {
    let rows: Vec<[&dyn ToSql; N]> = rows.collect();
    if rows.is_empty() {
        return Ok(());
    }
    let row = format!("({})", vec!["?"; N].join(","));
    let mut chunks = rows.chunks_exact(INSERT_CHUNK);
    if rows.len() >= INSERT_CHUNK {
        let sql =
            format!("INSERT OR IGNORE INTO {target} VALUES {}", vec![row.as_str(); INSERT_CHUNK].join(","));
        let mut statement = connection.prepare_cached(&sql)?;
        for chunk in chunks.by_ref() {
            statement.execute(rusqlite::params_from_iter(chunk.iter().flatten()))?;
        }
    }
    let mut single = connection.prepare_cached(&format!("INSERT OR IGNORE INTO {target} VALUES {row}"))?;
    for values in chunks.remainder() {
        single.execute(rusqlite::params_from_iter(values.iter()))?;
    }
    Ok(())
}

/// Plans must not depend on bound values: without this, SQLite re-prepares a cached join
/// statement every time its parameters change, which costs more than the query itself.
fn stable_query_plans(connection: &Connection) -> Result<()> {
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // `rarray(?)` binds a list of keys as one parameter.
    rusqlite::vtab::array::load_module(connection)?;
    Ok(())
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn record_from_row(
    row: &rusqlite::Row<'_>,
    resource_type: String,
    id: String,
) -> rusqlite::Result<VersionRecord> {
    Ok(VersionRecord {
        resource_type,
        id,
        version: row.get::<_, i64>(0)? as u64,
        last_updated: row.get(1)?,
        method: WriteMethod::from_code(row.get(2)?),
        body: row.get(3)?,
        seq: row.get(4)?,
    })
}

/// The first sequence number whose version was updated at or after `since` (versions are
/// committed in time order, so this turns a time filter into a key range).
fn first_seq_since(connection: &Connection, since: Option<i64>) -> Result<i64> {
    let Some(since) = since else { return Ok(0) };
    let (mut low, mut high): (i64, i64) = connection.query_row(
        "SELECT coalesce(min(seq), 1), coalesce(max(seq), 0) + 1 FROM versions",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // Binary search over the sequence: `last_updated` never decreases as `seq` grows, so
    // this needs ~log2(n) primary-key lookups and no index on time.
    let mut at = connection
        .prepare_cached("SELECT last_updated FROM versions WHERE seq >= ?1 ORDER BY seq LIMIT 1")?;
    while low < high {
        let middle = low + (high - low) / 2;
        let time: Option<i64> = at.query_row([middle], |r| r.get(0)).optional()?;
        match time {
            Some(time) if time >= since => high = middle,
            Some(_) => low = middle + 1,
            None => high = middle,
        }
    }
    Ok(low)
}

/// The shared search executor over a SQLite connection.
impl search::Db for Connection {
    fn integers(&self, sql: &search::sql::Sql) -> Result<Vec<i64>> {
        let mut statement = self.prepare_cached(&sql.text)?;
        let rows = statement.query_map(rusqlite::params_from_iter(sql.values.iter()), |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn keyed_values(&self, sql: &search::sql::Sql) -> Result<Vec<(i64, search::SortValue)>> {
        let mut statement = self.prepare_cached(&sql.text)?;
        let rows = statement.query_map(rusqlite::params_from_iter(sql.values.iter()), |row| {
            let value = match row.get_ref(1)? {
                rusqlite::types::ValueRef::Integer(i) => search::SortValue::Integer(i),
                rusqlite::types::ValueRef::Real(f) => search::SortValue::Real(f),
                rusqlite::types::ValueRef::Text(t) => {
                    search::SortValue::Text(String::from_utf8_lossy(t).into_owned())
                }
                _ => search::SortValue::Missing,
            };
            Ok((row.get::<_, i64>(0)?, value))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn versions(&self, sql: &search::sql::Sql) -> Result<Vec<(i64, VersionRecord)>> {
        let mut statement = self.prepare_cached(&sql.text)?;
        let rows = statement.query_map(rusqlite::params_from_iter(sql.values.iter()), |row| {
            Ok((
                row.get::<_, i64>(0)?,
                VersionRecord {
                    resource_type: row.get(1)?,
                    id: row.get(2)?,
                    version: row.get::<_, i64>(3)? as u64,
                    last_updated: row.get(4)?,
                    method: WriteMethod::from_code(row.get(5)?),
                    body: row.get(6)?,
                    seq: row.get(7)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl Store for SqliteStore {
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<VersionRecord>> {
        self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT r.version, r.last_updated, v.method, v.body, r.seq
                   FROM resources r JOIN versions v ON v.seq = r.seq
                  WHERE r.res_type = ?1 AND r.res_id = ?2",
            )?;
            Ok(statement
                .query_row([resource_type, id], |row| {
                    record_from_row(row, resource_type.to_string(), id.to_string())
                })
                .optional()?)
        })
    }

    fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<VersionRecord>> {
        self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT v.version, v.last_updated, v.method, v.body, v.seq
                   FROM resources r JOIN versions v ON v.rkey = r.rkey AND v.version = ?3
                  WHERE r.res_type = ?1 AND r.res_id = ?2",
            )?;
            Ok(statement
                .query_row(params![resource_type, id, version as i64], |row| {
                    record_from_row(row, resource_type.to_string(), id.to_string())
                })
                .optional()?)
        })
    }

    fn history(&self, scope: &HistoryScope, query: &HistoryQuery) -> Result<HistoryPage> {
        self.with_reader(|connection| {
            // One read transaction, so that the page, its cursor and the total agree.
            let _snapshot = read_transaction(connection)?;
            let from_seq = first_seq_since(connection, query.since)?;
            let before_seq = query.before_seq.unwrap_or(i64::MAX);
            // One extra row tells whether another page follows.
            let limit = query.count as i64 + 1;
            let mut versions: Vec<VersionRecord> = match scope {
                HistoryScope::Instance { resource_type, id } => {
                    let mut statement = connection.prepare_cached(
                        "SELECT v.version, v.last_updated, v.method, v.body, v.seq
                           FROM resources r JOIN versions v ON v.rkey = r.rkey
                          WHERE r.res_type = ?1 AND r.res_id = ?2 AND v.seq >= ?3 AND v.seq < ?4
                          ORDER BY v.seq DESC LIMIT ?5",
                    )?;
                    let rows = statement
                        .query_map(params![resource_type, id, from_seq, before_seq, limit], |row| {
                            record_from_row(row, resource_type.clone(), id.clone())
                        })?;
                    rows.collect::<rusqlite::Result<_>>()?
                }
                HistoryScope::Type(resource_type) => {
                    let mut statement = connection.prepare_cached(
                        "SELECT v.version, v.last_updated, v.method, v.body, v.seq, r.res_id
                           FROM versions v JOIN resources r ON r.rkey = v.rkey
                          WHERE v.res_type = ?1 AND v.seq >= ?2 AND v.seq < ?3
                          ORDER BY v.seq DESC LIMIT ?4",
                    )?;
                    let rows = statement
                        .query_map(params![resource_type, from_seq, before_seq, limit], |row| {
                            record_from_row(row, resource_type.clone(), row.get(5)?)
                        })?;
                    rows.collect::<rusqlite::Result<_>>()?
                }
                HistoryScope::System => {
                    let mut statement = connection.prepare_cached(
                        "SELECT v.version, v.last_updated, v.method, v.body, v.seq, r.res_id, r.res_type
                           FROM versions v JOIN resources r ON r.rkey = v.rkey
                          WHERE v.seq >= ?1 AND v.seq < ?2
                          ORDER BY v.seq DESC LIMIT ?3",
                    )?;
                    let rows = statement.query_map(params![from_seq, before_seq, limit], |row| {
                        record_from_row(row, row.get(6)?, row.get(5)?)
                    })?;
                    rows.collect::<rusqlite::Result<_>>()?
                }
            };
            let next_before_seq = if versions.len() > query.count {
                versions.truncate(query.count);
                versions.last().map(|v| v.seq)
            } else {
                None
            };
            let total = match scope {
                HistoryScope::Instance { resource_type, id } => Some(
                    connection
                        .prepare_cached(
                            "SELECT count(*) FROM resources r JOIN versions v ON v.rkey = r.rkey
                              WHERE r.res_type = ?1 AND r.res_id = ?2 AND v.seq >= ?3",
                        )?
                        .query_row(params![resource_type, id, from_seq], |r| r.get::<_, i64>(0))?
                        as u64,
                ),
                _ => None,
            };
            Ok(HistoryPage { versions, next_before_seq, total })
        })
    }

    fn submit(&self, unit: WriteUnit) -> PendingWrite {
        let (reply, receiver) = oneshot::channel();
        if self.is_read_only() {
            let _ = reply.send(Err(Error::ReadOnly));
            return PendingWrite(receiver);
        }
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
            let count: i64 = connection
                .prepare_cached("SELECT count(*) FROM resources WHERE deleted = 0")?
                .query_row([], |r| r.get(0))?;
            Ok(count as u64)
        })
    }

    fn index_is_stale(&self) -> bool {
        SqliteStore::index_is_stale(self)
    }

    fn count_by_type(&self) -> Result<Vec<(String, u64)>> {
        self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT res_type, count(*) FROM resources WHERE deleted = 0 GROUP BY res_type ORDER BY res_type",
            )?;
            let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn scan_current(&self, visit: &mut crate::ScanVisitor<'_>) -> Result<u64> {
        self.with_reader(|connection| {
            let _snapshot = read_transaction(connection)?;
            let mut statement = connection.prepare(
                "SELECT r.res_type, r.res_id, v.body
                   FROM resources r JOIN versions v ON v.seq = r.seq
                  WHERE r.deleted = 0
                  ORDER BY r.res_type, r.rkey",
            )?;
            let mut rows = statement.query([])?;
            let mut visited = 0;
            while let Some(row) = rows.next()? {
                let resource_type = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                let id = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
                let body =
                    row.get_ref(2)?.as_blob_or_null().map_err(rusqlite::Error::from)?.unwrap_or_default();
                visit(resource_type, id, body)?;
                visited += 1;
            }
            Ok(visited)
        })
    }

    fn scan_type(
        &self,
        resource_type: &str,
        since: Option<i64>,
        visit: &mut crate::ScanVisitor<'_>,
    ) -> Result<u64> {
        self.with_reader(|connection| {
            let _snapshot = read_transaction(connection)?;
            let mut statement = connection.prepare(
                "SELECT r.res_id, v.body
                   FROM resources r JOIN versions v ON v.seq = r.seq
                  WHERE r.res_type = ?1 AND r.deleted = 0 AND r.last_updated >= ?2
                  ORDER BY r.rkey",
            )?;
            let mut rows = statement.query(rusqlite::params![resource_type, since.unwrap_or(i64::MIN)])?;
            let mut visited = 0;
            while let Some(row) = rows.next()? {
                let id = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                let body =
                    row.get_ref(1)?.as_blob_or_null().map_err(rusqlite::Error::from)?.unwrap_or_default();
                visit(resource_type, id, body)?;
                visited += 1;
            }
            Ok(visited)
        })
    }

    fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        self.check_index()?;
        self.with_reader(|connection| {
            let _snapshot = read_transaction(connection)?;
            search::search(connection, query)
        })
    }

    fn read_many(&self, identities: &[(String, String)]) -> Result<Vec<VersionRecord>> {
        self.with_reader(|connection| {
            let rkeys = search::rkeys_of(connection, identities)?;
            search::fetch(connection, &rkeys)
        })
    }

    fn referencing(&self, keys: &[ParamKey], targets: &[(String, String)]) -> Result<Vec<VersionRecord>> {
        self.check_index()?;
        self.with_reader(|connection| {
            let mut rkeys = search::referencing(connection, keys, targets)?;
            rkeys.sort_unstable();
            rkeys.dedup();
            search::fetch(connection, &rkeys)
        })
    }

    fn reindex(&self) -> Result<u64> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        // Searches fail clearly while the index is partial rather than miss matches.
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
    receiver: Receiver<Job>,
    next_seq: i64,
    next_rkey: i64,
    last_updated: i64,
    max_ops_per_commit: usize,
    index_stale: Arc<AtomicBool>,
    /// Set by the last range of a reindex; takes effect when its commit succeeds.
    index_now_current: bool,
    /// Commits so far, for the checkpointer.
    commits: Arc<AtomicU64>,
    /// The active legal holds, as committed (and as written by the units of the commit under
    /// way); reloaded from the database when a unit that touched a hold Task is rolled back.
    holds: Vec<crate::hold::Hold>,
    holds_touched: bool,
}

/// The active legal holds on record.
fn load_holds(connection: &Connection) -> Result<Vec<crate::hold::Hold>> {
    let mut statement = connection.prepare_cached(
        "SELECT v.body FROM resources r JOIN versions v ON v.seq = r.seq WHERE r.res_type = 'Task' AND r.deleted = 0",
    )?;
    let bodies = statement.query_map([], |row| row.get::<_, Option<Vec<u8>>>(0))?;
    let mut holds = Vec::new();
    for body in bodies {
        holds.extend(body?.as_deref().and_then(crate::hold::Hold::from_stored));
    }
    Ok(holds)
}

/// Copies committed pages from the write-ahead log into the database on its own thread and
/// connection, so the writer never stops to do it (SQLite's automatic checkpoint runs inside
/// the committing thread). A passive checkpoint never blocks the writer or readers. If it
/// ever falls far behind, the writer's own automatic checkpoint (at 1 GiB of log) still bounds
/// the log.
struct Checkpointer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Checkpointer {
    fn start(database: &Path, commits: Arc<AtomicU64>) -> Result<Checkpointer> {
        let connection = Connection::open_with_flags(
            database,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(std::time::Duration::from_millis(50))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = std::thread::Builder::new()
            .name("chartroom-checkpoint".into())
            .spawn(move || {
                let mut seen = commits.load(AtomicOrdering::Acquire);
                while !stopping.load(AtomicOrdering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    let now = commits.load(AtomicOrdering::Acquire);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    if let Err(error) = connection.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                        tracing::warn!("background checkpoint failed: {error}");
                    }
                }
            })
            .map_err(|cause| Error::DataDirectory { path: database.display().to_string(), cause })?;
        Ok(Checkpointer { stop, handle })
    }

    fn stop(self) {
        self.stop.store(true, AtomicOrdering::Release);
        let _ = self.handle.join();
    }
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
            // A panic must not take the only writer down: the jobs' reply channels close (their
            // callers see the store as unavailable), the transaction is rolled back, and the
            // writer carries on.
            let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(jobs)));
            if committed.is_err() {
                tracing::error!("the store writer panicked; that commit was abandoned");
                self.recover();
            }
        }
        // Fold the WAL back into the database so a clean shutdown leaves one file.
        let _ = self.connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    /// After a failed commit: no transaction stays open, and the counters are read back from
    /// what is really in the database.
    fn recover(&mut self) {
        if !self.connection.is_autocommit() {
            let _ = self.connection.execute_batch("ROLLBACK");
        }
        match load_counters(&self.connection) {
            Ok((next_seq, next_rkey, last_updated)) => {
                self.next_seq = next_seq;
                self.next_rkey = next_rkey;
                self.last_updated = self.last_updated.max(last_updated);
            }
            Err(error) => tracing::error!("cannot reload the store counters: {error}"),
        }
        // Whatever the units of the lost transaction did to the holds is undone with it.
        self.holds_touched = true;
        self.reload_holds();
    }

    /// After a rollback of units that wrote a hold Task: the holds as the database has them.
    fn reload_holds(&mut self) {
        if std::mem::take(&mut self.holds_touched) {
            match load_holds(&self.connection) {
                Ok(holds) => self.holds = holds,
                Err(error) => tracing::error!("cannot reload the legal holds: {error}"),
            }
        }
    }

    fn fail_all(&mut self, jobs: Vec<Job>, message: &str) {
        tracing::error!("commit failed: {message}");
        self.recover();
        for job in jobs {
            let _ = job.reply.send(Err(Error::CommitFailed(message.to_string())));
        }
    }

    /// Commits a group of units. Units normally all succeed, so they first run without
    /// savepoints (a savepoint copies every page it touches into a sub-journal, a fifth of the
    /// cost of a bulk write). If one fails, the group is rolled back and run again with a
    /// savepoint per unit, so that unit fails alone.
    fn commit(&mut self, jobs: Vec<Job>) {
        let timestamp = epoch_millis_now().max(self.last_updated);
        let timestamp_text = DateTime::from_epoch_millis(timestamp).to_string();
        let counters = (self.next_seq, self.next_rkey);
        if let Err(error) = self.connection.execute_batch("BEGIN IMMEDIATE") {
            return self.fail_all(jobs, &error.to_string());
        }
        self.index_now_current = false;
        let mut results = Vec::with_capacity(jobs.len());
        for job in &jobs {
            match self.apply(&job.unit, timestamp, &timestamp_text) {
                Ok(written) => results.push(Ok(written)),
                Err(error) if jobs.len() == 1 && !self.connection.is_autocommit() => {
                    // A lone unit needs no savepoint: rolling back the transaction is enough.
                    if let Err(rollback) = self.connection.execute_batch("ROLLBACK") {
                        return self.fail_all(jobs, &rollback.to_string());
                    }
                    (self.next_seq, self.next_rkey) = counters;
                    self.index_now_current = false;
                    self.reload_holds();
                    if let Some(job) = jobs.into_iter().next() {
                        let _ = job.reply.send(Err(error));
                    }
                    return;
                }
                Err(_) => {
                    if !self.connection.is_autocommit() && self.connection.execute_batch("ROLLBACK").is_err()
                    {
                        return self.fail_all(jobs, "rollback failed");
                    }
                    (self.next_seq, self.next_rkey) = counters;
                    self.reload_holds();
                    return self.commit_with_savepoints(jobs, timestamp, &timestamp_text);
                }
            }
        }
        self.finish(jobs, results, timestamp);
    }

    fn commit_with_savepoints(&mut self, jobs: Vec<Job>, timestamp: i64, timestamp_text: &str) {
        if let Err(error) = self.connection.execute_batch("BEGIN IMMEDIATE") {
            return self.fail_all(jobs, &error.to_string());
        }
        self.index_now_current = false;
        let mut results = Vec::with_capacity(jobs.len());
        for job in &jobs {
            match self.apply_in_savepoint(&job.unit, timestamp, timestamp_text) {
                Ok(result) => results.push(result),
                Err(aborted) => return self.fail_all(jobs, &aborted),
            }
        }
        self.finish(jobs, results, timestamp);
    }

    fn finish(&mut self, jobs: Vec<Job>, results: Vec<Result<Vec<Written>>>, timestamp: i64) {
        match self.connection.execute_batch("COMMIT") {
            Ok(()) => {
                self.holds_touched = false;
                self.last_updated = timestamp;
                self.commits.fetch_add(1, AtomicOrdering::Release);
                if std::mem::take(&mut self.index_now_current) {
                    self.index_stale.store(false, AtomicOrdering::Release);
                }
                for (job, result) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => self.fail_all(jobs, &error.to_string()),
        }
    }

    /// Applies one unit inside a savepoint. The inner result is the unit's own outcome (a
    /// failed unit is rolled back alone); the outer error means the whole transaction is lost
    /// and every unit of the group must fail.
    fn apply_in_savepoint(
        &mut self,
        unit: &WriteUnit,
        timestamp: i64,
        timestamp_text: &str,
    ) -> std::result::Result<Result<Vec<Written>>, String> {
        let counters = (self.next_seq, self.next_rkey);
        self.connection.execute_batch("SAVEPOINT unit").map_err(|e| e.to_string())?;
        match self.apply(unit, timestamp, timestamp_text) {
            Ok(written) => {
                self.connection.execute_batch("RELEASE unit").map_err(|e| e.to_string())?;
                Ok(Ok(written))
            }
            Err(error) => {
                // SQLite rolls back the whole transaction on some errors (disk full, I/O).
                if self.connection.is_autocommit() {
                    return Err(error.to_string());
                }
                self.connection.execute_batch("ROLLBACK TO unit; RELEASE unit").map_err(|e| e.to_string())?;
                (self.next_seq, self.next_rkey) = counters;
                self.reload_holds();
                Ok(Err(error))
            }
        }
    }

    fn apply(&mut self, unit: &WriteUnit, timestamp: i64, timestamp_text: &str) -> Result<Vec<Written>> {
        let mut written = Vec::with_capacity(unit.ops.len());
        // Index rows are written after the unit's versions, sorted: B-tree inserts in key
        // order touch each page once instead of once per row. A later write of the same
        // resource in the unit replaces an earlier one's rows.
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
                    let stored =
                        self.store_version(resource, None, WriteMethod::Create, timestamp, timestamp_text)?;
                    pending.insert(self.next_rkey - 1, resource.index());
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
                    let rkey = current.as_ref().map_or(self.next_rkey, |c| c.rkey);
                    let stored = self.store_version(resource, current, method, timestamp, timestamp_text)?;
                    pending.insert(rkey, resource.index());
                    stored
                }
                WriteOp::CreateIfNoneExist { resource, query } => {
                    let matches = self.matches(query)?;
                    match matches.as_slice() {
                        [] => {
                            let stored = self.store_version(
                                resource,
                                None,
                                WriteMethod::Create,
                                timestamp,
                                timestamp_text,
                            )?;
                            pending.insert(self.next_rkey - 1, resource.index());
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
                    self.check_not_held(target.resource_type(), target.id(), current.as_ref())?;
                    let method = if current.as_ref().is_some_and(|c| !c.deleted) {
                        WriteMethod::Update
                    } else {
                        WriteMethod::UpdateCreate
                    };
                    let rkey = current.as_ref().map_or(self.next_rkey, |c| c.rkey);
                    let stored = self.store_version(&target, current, method, timestamp, timestamp_text)?;
                    pending.insert(rkey, resource.index());
                    stored
                }
                WriteOp::ConditionalDelete { query } => {
                    let matches = self.matches(query)?;
                    match matches.as_slice() {
                        [] => Written {
                            resource_type: query.resource_type.clone(),
                            id: String::new(),
                            outcome: WriteOutcome::NothingToDelete,
                        },
                        [existing] => {
                            let current =
                                self.current(&existing.resource_type, &existing.id)?.ok_or_else(|| {
                                    Error::Corrupt(format!(
                                        "{}/{} vanished",
                                        existing.resource_type, existing.id
                                    ))
                                })?;
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
                self.note_hold_task(&result);
            }
            written.push(result);
        }
        self.write_index(&pending)?;
        Ok(written)
    }

    /// Refuses a change to the current version of a resource an active hold covers.
    fn check_not_held(&self, resource_type: &str, id: &str, current: Option<&Current>) -> Result<()> {
        let Some(current) = current.filter(|c| !c.deleted && !self.holds.is_empty()) else { return Ok(()) };
        self.check_body_not_held(resource_type, id, current.seq)
    }

    fn check_body_not_held(&self, resource_type: &str, id: &str, seq: i64) -> Result<()> {
        let body: Option<Vec<u8>> = self
            .connection
            .prepare_cached("SELECT body FROM versions WHERE seq = ?1")?
            .query_row([seq], |row| row.get(0))
            .optional()?
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

    /// Keeps the active holds in step with a Task just written in the commit under way.
    fn note_hold_task(&mut self, written: &Written) {
        if crate::hold::follow(&mut self.holds, written) {
            self.holds_touched = true;
        }
    }

    /// Destroys every version of a resource and its index rows, unless it is not at the
    /// version the purge was planned on or a hold covers it.
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
        // As for any change: what a hold covers now. (A tombstone's last content is judged.)
        if !self.holds.is_empty() {
            let seq: Option<i64> = self
                .connection
                .prepare_cached(
                    "SELECT seq FROM versions WHERE rkey = ?1 AND body IS NOT NULL ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([current.rkey], |row| row.get(0))
                .optional()?;
            if let Some(seq) = seq {
                self.check_body_not_held(resource_type, id, seq)?;
            }
        }
        self.clear_index(&current, resource_type)?;
        let versions = self
            .connection
            .prepare_cached("DELETE FROM versions WHERE rkey = ?1")?
            .execute([current.rkey])?;
        self.connection.prepare_cached("DELETE FROM resources WHERE rkey = ?1")?.execute([current.rkey])?;
        Ok(Written {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            outcome: WriteOutcome::Purged { versions: versions as u64 },
        })
    }

    /// Up to two matches of a conditional operation's search, seen from inside the commit.
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

    /// Rebuilds the index rows of the resources after `after_rkey` (up to `limit` of them);
    /// the first range also empties the index, so rows of old definitions do not linger.
    fn reindex_range(&mut self, after_rkey: i64, limit: usize) -> Result<Written> {
        if after_rkey == 0 {
            for table in ALL_INDEX_TABLES {
                self.connection.execute_batch(&format!("DELETE FROM {table}"))?;
            }
            // Until the last range commits, a restart must see the index as incomplete.
            self.connection.execute_batch("DELETE FROM store_meta WHERE key = 'index_format'")?;
        }
        let rows: Vec<(i64, String, Vec<u8>)> = {
            let mut statement = self.connection.prepare_cached(
                "SELECT r.rkey, r.res_type, v.body FROM resources r JOIN versions v ON v.seq = r.seq
                  WHERE r.rkey > ?1 AND r.deleted = 0 ORDER BY r.rkey LIMIT ?2",
            )?;
            let rows = statement.query_map(params![after_rkey, limit as i64], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get::<_, Option<Vec<u8>>>(2)?.unwrap_or_default()))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut entries = Vec::with_capacity(rows.len());
        for (rkey, resource_type, body) in &rows {
            let json = fhir::parse_json(body).map_err(|e| Error::Corrupt(format!("resource {rkey}: {e}")))?;
            entries.push((*rkey, crate::index::extract_json(resource_type, &json)));
        }
        let pending: HashMap<i64, &IndexEntries> = entries.iter().map(|(k, e)| (*k, e)).collect();
        self.write_index(&pending)?;
        if rows.len() < limit {
            // The last range: the index is whole again. The flag flips only once the commit
            // holding the format record has succeeded.
            write_index_format(&self.connection)?;
            self.index_now_current = true;
        }
        Ok(Written {
            resource_type: String::new(),
            id: String::new(),
            outcome: WriteOutcome::Reindexed {
                last_rkey: rows.last().map_or(after_rkey, |r| r.0),
                count: rows.len() as u64,
            },
        })
    }

    fn current(&self, resource_type: &str, id: &str) -> Result<Option<Current>> {
        Ok(self
            .connection
            .prepare_cached(
                "SELECT rkey, version, deleted, seq, last_updated FROM resources WHERE res_type = ?1 AND res_id = ?2",
            )?
            .query_row([resource_type, id], |row| {
                Ok(Current {
                    rkey: row.get(0)?,
                    version: row.get::<_, i64>(1)? as u64,
                    deleted: row.get(2)?,
                    seq: row.get(3)?,
                    last_updated: row.get(4)?,
                })
            })
            .optional()?)
    }

    fn store_version(
        &mut self,
        resource: &PreparedResource,
        current: Option<Current>,
        method: WriteMethod,
        timestamp: i64,
        timestamp_text: &str,
    ) -> Result<Written> {
        let version = current.as_ref().map_or(1, |c| c.version + 1);
        let created = current.as_ref().is_none_or(|c| c.deleted);
        let body = resource.render(version, timestamp_text);
        let seq = self.next_seq;
        let rkey = match &current {
            Some(current) => current.rkey,
            None => self.next_rkey,
        };
        self.connection
            .prepare_cached(
                "INSERT INTO versions (seq, rkey, res_type, version, last_updated, method, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                seq,
                rkey,
                resource.resource_type(),
                version as i64,
                timestamp,
                method.code(),
                body
            ])?;
        self.upsert_current(
            rkey,
            current.is_some(),
            resource.resource_type(),
            resource.id(),
            version,
            false,
            timestamp,
            seq,
        )?;
        if let Some(current) = &current {
            self.clear_index(current, resource.resource_type())?;
        }
        self.next_seq += 1;
        if current.is_none() {
            self.next_rkey += 1;
        }
        Ok(Written {
            resource_type: resource.resource_type().to_string(),
            id: resource.id().to_string(),
            outcome: WriteOutcome::Stored { version, last_updated: timestamp, created, body },
        })
    }

    fn store_tombstone(
        &mut self,
        resource_type: &str,
        id: &str,
        current: Current,
        timestamp: i64,
    ) -> Result<Written> {
        let version = current.version + 1;
        let seq = self.next_seq;
        self.connection
            .prepare_cached(
                "INSERT INTO versions (seq, rkey, res_type, version, last_updated, method, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
            )?
            .execute(params![
                seq,
                current.rkey,
                resource_type,
                version as i64,
                timestamp,
                WriteMethod::Delete.code()
            ])?;
        self.clear_index(&current, resource_type)?;
        self.upsert_current(current.rkey, true, resource_type, id, version, true, timestamp, seq)?;
        self.next_seq += 1;
        Ok(Written {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            outcome: WriteOutcome::Deleted { version, last_updated: timestamp },
        })
    }

    /// Removes the index rows of a resource's current version (before a new version or a
    /// tombstone replaces it).
    fn clear_index(&self, current: &Current, resource_type: &str) -> Result<()> {
        let rkey = current.rkey;
        for table in TABLES_BY_RKEY {
            self.connection
                .prepare_cached(&format!("DELETE FROM {table} WHERE rkey = ?1"))?
                .execute([rkey])?;
        }
        if current.deleted {
            return Ok(());
        }
        let body: Option<Vec<u8>> = self
            .connection
            .prepare_cached("SELECT body FROM versions WHERE seq = ?1")?
            .query_row([current.seq], |row| row.get(0))
            .optional()?
            .flatten();
        let Some(body) = body else { return Ok(()) };
        let json = fhir::parse_json(&body)
            .map_err(|e| Error::Corrupt(format!("stored version {}: {e}", current.seq)))?;
        let old = crate::index::extract_json(resource_type, &json);
        let c = &self.connection;
        let mut delete =
            c.prepare_cached("DELETE FROM idx_string WHERE param = ?1 AND norm = ?2 AND rkey = ?3")?;
        for (param, norm, _) in &old.strings {
            delete.execute(params![param, norm, rkey])?;
        }
        let mut delete =
            c.prepare_cached("DELETE FROM idx_token WHERE param = ?1 AND code = ?2 AND rkey = ?3")?;
        for (param, _, code) in &old.tokens {
            delete.execute(params![param, code, rkey])?;
        }
        let mut delete =
            c.prepare_cached("DELETE FROM idx_token_text WHERE param = ?1 AND text = ?2 AND rkey = ?3")?;
        for (param, text) in &old.token_texts {
            delete.execute(params![param, text, rkey])?;
        }
        let mut delete = c.prepare_cached(
            "DELETE FROM idx_identifier_type WHERE param = ?1 AND value = ?2 AND rkey = ?3",
        )?;
        for (param, _, _, value) in &old.identifier_types {
            delete.execute(params![param, value, rkey])?;
        }
        let mut delete = c.prepare_cached("DELETE FROM idx_date_wide WHERE param = ?1 AND rkey = ?2")?;
        let mut date_params: Vec<u32> = old.dates.iter().map(|d| d.0).collect();
        date_params.dedup();
        for param in date_params {
            delete.execute(params![param, rkey])?;
        }
        let mut delete =
            c.prepare_cached("DELETE FROM idx_composite WHERE param = ?1 AND code = ?2 AND rkey = ?3")?;
        for row in &old.composites {
            delete.execute(params![row.param, row.code, rkey])?;
        }
        let mut delete =
            c.prepare_cached("DELETE FROM idx_uri WHERE param = ?1 AND value = ?2 AND rkey = ?3")?;
        for (param, value) in &old.uris {
            delete.execute(params![param, value, rkey])?;
        }
        Ok(())
    }

    fn write_index(&self, pending: &HashMap<i64, &IndexEntries>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let c = &self.connection;
        let mut strings: Vec<(u32, &str, i64, &str)> = Vec::new();
        let mut tokens: Vec<(u32, &str, i64, &str)> = Vec::new();
        let mut texts: Vec<(u32, &str, i64)> = Vec::new();
        let mut identifier_types: Vec<(u32, &str, i64, &str, &str)> = Vec::new();
        let mut dates: Vec<(u32, i64, i64, i64)> = Vec::new();
        let mut numbers: Vec<(u32, f64, f64, i64)> = Vec::new();
        let mut references: Vec<(u32, &str, &str, i64)> = Vec::new();
        let mut uris: Vec<(u32, &str, i64)> = Vec::new();
        for (&rkey, entries) in pending {
            strings.extend(
                entries.strings.iter().map(|(p, norm, exact)| (*p, norm.as_str(), rkey, exact.as_str())),
            );
            tokens.extend(
                entries.tokens.iter().map(|(p, system, code)| (*p, code.as_str(), rkey, system.as_str())),
            );
            texts.extend(entries.token_texts.iter().map(|(p, text)| (*p, text.as_str(), rkey)));
            identifier_types.extend(
                entries
                    .identifier_types
                    .iter()
                    .map(|(p, s, c, v)| (*p, v.as_str(), rkey, s.as_str(), c.as_str())),
            );
            dates.extend(entries.dates.iter().map(|(p, low, high)| (*p, *low, *high, rkey)));
            numbers.extend(entries.numbers.iter().map(|(p, low, high)| (*p, *low, *high, rkey)));
            references.extend(
                entries.references.iter().map(|(p, t, target)| (*p, t.as_str(), target.as_str(), rkey)),
            );
            uris.extend(entries.uris.iter().map(|(p, value)| (*p, value.as_str(), rkey)));
        }
        // Sorted (so each B-tree is written in key order) and without duplicates (a display
        // equal to its text, a code in two codings), which would only cost a failed insert.
        strings.sort_unstable();
        strings.dedup();
        tokens.sort_unstable();
        tokens.dedup();
        texts.sort_unstable();
        texts.dedup();
        identifier_types.sort_unstable();
        identifier_types.dedup();
        dates.sort_unstable();
        dates.dedup();
        let wide_dates = date_flags(&dates);
        numbers.sort_unstable_by(|a, b| {
            (a.0, a.1, a.2, a.3).partial_cmp(&(b.0, b.1, b.2, b.3)).unwrap_or(std::cmp::Ordering::Equal)
        });
        references.sort_unstable();
        references.dedup();
        uris.sort_unstable();
        uris.dedup();
        insert_rows(
            c,
            "idx_string (param, norm, rkey, exact)",
            strings.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2, &r.3]),
        )?;
        insert_rows(
            c,
            "idx_token (param, code, rkey, system)",
            tokens.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2, &r.3]),
        )?;
        insert_rows(
            c,
            "idx_token_text (param, text, rkey)",
            texts.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2]),
        )?;
        insert_rows(
            c,
            "idx_identifier_type (param, value, rkey, type_system, type_code)",
            identifier_types.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2, &r.3, &r.4]),
        )?;
        insert_rows(
            c,
            "idx_date (param, low, high, rkey)",
            dates.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2, &r.3]),
        )?;
        insert_rows(
            c,
            "idx_date_wide (param, rkey, wide, multi)",
            wide_dates.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2, &r.3]),
        )?;
        insert_rows(
            c,
            "idx_number (param, low, high, rkey)",
            numbers.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2, &r.3]),
        )?;
        insert_rows(
            c,
            "idx_reference (param, target_type, target, rkey)",
            references.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2, &r.3]),
        )?;
        insert_rows(
            c,
            "idx_uri (param, value, rkey)",
            uris.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2]),
        )?;
        // (param, dimension, canonical low, canonical high, rkey, system, code, low, high)
        type QuantityRow<'a> = (u32, &'a str, f64, f64, i64, &'a str, &'a str, f64, f64);
        // (param, code, rkey, system, second system, second text, second low, second high)
        type CompositeRow<'a> = (u32, &'a str, i64, &'a str, &'a str, &'a str, f64, f64);
        let mut quantities: Vec<QuantityRow> = Vec::new();
        let mut composites: Vec<CompositeRow> = Vec::new();
        for (&rkey, entries) in pending {
            quantities.extend(entries.quantities.iter().map(|q| {
                let (dimension, low, high) = match &q.canonical {
                    Some((d, l, h)) => (d.as_str(), *l, *h),
                    None => ("", q.low, q.high),
                };
                (q.param, dimension, low, high, rkey, q.system.as_str(), q.code.as_str(), q.low, q.high)
            }));
            composites.extend(entries.composites.iter().map(|row| {
                (
                    row.param,
                    row.code.as_str(),
                    rkey,
                    row.system.as_str(),
                    row.second_system.as_str(),
                    row.second_text.as_str(),
                    row.second_low,
                    row.second_high,
                )
            }));
        }
        quantities.sort_unstable_by(|a, b| {
            (a.0, a.1, a.2, a.3, a.4)
                .partial_cmp(&(b.0, b.1, b.2, b.3, b.4))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        composites.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        insert_rows(
            c,
            "idx_quantity (param, dimension, canonical_low, canonical_high, rkey, system, code, low, high)",
            quantities.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2, &r.3, &r.4, &r.5, &r.6, &r.7, &r.8]),
        )?;
        insert_rows(
            c,
            "idx_composite (param, code, rkey, system, second_system, second_text, second_low, second_high)",
            composites.iter().map(|r| [&r.0 as &dyn ToSql, &r.1, &r.2, &r.3, &r.4, &r.5, &r.6, &r.7]),
        )?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn upsert_current(
        &self,
        rkey: i64,
        exists: bool,
        resource_type: &str,
        id: &str,
        version: u64,
        deleted: bool,
        timestamp: i64,
        seq: i64,
    ) -> Result<()> {
        if exists {
            self.connection
                .prepare_cached(
                    "UPDATE resources SET version = ?2, deleted = ?3, last_updated = ?4, seq = ?5 WHERE rkey = ?1",
                )?
                .execute(params![rkey, version as i64, deleted, timestamp, seq])?;
        } else {
            self.connection
                .prepare_cached(
                    "INSERT INTO resources (rkey, res_type, res_id, version, deleted, last_updated, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![rkey, resource_type, id, version as i64, deleted, timestamp, seq])?;
        }
        Ok(())
    }
}
