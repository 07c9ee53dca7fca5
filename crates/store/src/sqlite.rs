//! The embedded backend: one SQLite database (WAL mode) in a data directory.
//!
//! One writer thread owns the only write connection. It takes whatever units are queued,
//! applies each inside its own savepoint (so a failing unit rolls back alone), commits them
//! all with one sync, and only then answers each caller: group commit. Reads use a small pool
//! of read-only connections and never wait for the writer.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use fhir::DateTime;
use fhir::datetime::epoch_millis_now;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::{
    Error, HistoryPage, HistoryQuery, HistoryScope, PendingWrite, Precondition, PreparedResource, Result,
    Store, VersionRecord, WriteMethod, WriteOp, WriteOutcome, WriteUnit, Written,
};

const DATABASE_FILE: &str = "chartroom.db";
const LOCK_FILE: &str = "chartroom.lock";
const SCHEMA_VERSION: i64 = 1;
const MAX_IDLE_READERS: usize = 32;

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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { synchronous: Synchronous::Full, cache_mib: 64, max_ops_per_commit: 20_000 }
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
    sender: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held for the store's lifetime: a second process on the same directory would corrupt
    /// the writer's sequence counters.
    _lock: File,
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
CREATE INDEX IF NOT EXISTS versions_time ON versions(last_updated);
";

impl SqliteStore {
    /// Opens (creating if needed) the store in data directory `dir`.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self> {
        let io_error = |source| Error::DataDirectory { path: dir.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io_error)?;
        lock.try_lock().map_err(|_| {
            io_error(std::io::Error::other("the data directory is in use by another Chartroom process"))
        })?;
        let database = dir.join(DATABASE_FILE);
        let connection = Connection::open(&database)?;
        stable_query_plans(&connection)?;
        let synchronous = match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        let journal_mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(Error::DataDirectory {
                path: dir.display().to_string(),
                source: std::io::Error::other(format!(
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
             PRAGMA foreign_keys = OFF;",
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
        connection.set_prepared_statement_cache_capacity(32);

        let next_seq: i64 =
            connection.query_row("SELECT coalesce(max(seq), 0) + 1 FROM versions", [], |r| r.get(0))?;
        let next_rkey: i64 =
            connection.query_row("SELECT coalesce(max(rkey), 0) + 1 FROM resources", [], |r| r.get(0))?;
        let last_updated: i64 =
            connection.query_row("SELECT coalesce(max(last_updated), 0) FROM versions", [], |r| r.get(0))?;

        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            connection,
            receiver,
            next_seq,
            next_rkey,
            last_updated,
            max_ops_per_commit: options.max_ops_per_commit.max(1),
        };
        let handle = std::thread::Builder::new()
            .name("chartroom-writer".into())
            .spawn(move || writer.run())
            .map_err(io_error)?;
        Ok(SqliteStore {
            database,
            readers: Mutex::new(Vec::new()),
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            _lock: lock,
        })
    }

    /// Stops accepting writes, lets the writer finish what is queued, and waits for it.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
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
        let connection = Connection::open_with_flags(
            &self.database,
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

/// Plans must not depend on bound values: without this, SQLite re-prepares a cached join
/// statement every time its parameters change, which costs more than the query itself.
fn stable_query_plans(connection: &Connection) -> Result<()> {
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
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
    let seq: Option<i64> = connection
        .prepare_cached(
            "SELECT seq FROM versions WHERE last_updated >= ?1 ORDER BY last_updated, seq LIMIT 1",
        )?
        .query_row([since], |r| r.get(0))
        .optional()?;
    Ok(seq.unwrap_or(i64::MAX))
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
            let snapshot = connection.unchecked_transaction()?;
            let connection: &Connection = &snapshot;
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
}

struct Writer {
    connection: Connection,
    receiver: Receiver<Job>,
    next_seq: i64,
    next_rkey: i64,
    last_updated: i64,
    max_ops_per_commit: usize,
}

struct Current {
    rkey: i64,
    version: u64,
    deleted: bool,
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
    }

    fn fail_all(&mut self, jobs: Vec<Job>, message: &str) {
        tracing::error!("commit failed: {message}");
        self.recover();
        for job in jobs {
            let _ = job.reply.send(Err(Error::CommitFailed(message.to_string())));
        }
    }

    fn commit(&mut self, jobs: Vec<Job>) {
        let timestamp = epoch_millis_now().max(self.last_updated);
        let timestamp_text = DateTime::from_epoch_millis(timestamp).to_string();
        if let Err(error) = self.connection.execute_batch("BEGIN IMMEDIATE") {
            return self.fail_all(jobs, &error.to_string());
        }
        let mut results = Vec::with_capacity(jobs.len());
        for job in &jobs {
            match self.apply_in_savepoint(&job.unit, timestamp, &timestamp_text) {
                Ok(result) => results.push(result),
                Err(aborted) => return self.fail_all(jobs, &aborted),
            }
        }
        match self.connection.execute_batch("COMMIT") {
            Ok(()) => {
                self.last_updated = timestamp;
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
                Ok(Err(error))
            }
        }
    }

    fn apply(&mut self, unit: &WriteUnit, timestamp: i64, timestamp_text: &str) -> Result<Vec<Written>> {
        let mut written = Vec::with_capacity(unit.ops.len());
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
                    self.store_version(resource, None, WriteMethod::Create, timestamp, timestamp_text)?
                }
                WriteOp::Update { resource, if_match } => {
                    let current = self.current(resource.resource_type(), resource.id())?;
                    check_if_match(
                        resource.resource_type(),
                        resource.id(),
                        if_match.as_ref(),
                        current.as_ref(),
                    )?;
                    let method = if current.as_ref().is_some_and(|c| !c.deleted) {
                        WriteMethod::Update
                    } else {
                        WriteMethod::UpdateCreate
                    };
                    self.store_version(resource, current, method, timestamp, timestamp_text)?
                }
                WriteOp::Delete { resource_type, id, if_match } => {
                    let current = self.current(resource_type, id)?;
                    check_if_match(resource_type, id, if_match.as_ref(), current.as_ref())?;
                    match current {
                        Some(current) if !current.deleted => {
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
            written.push(result);
        }
        Ok(written)
    }

    fn current(&self, resource_type: &str, id: &str) -> Result<Option<Current>> {
        Ok(self
            .connection
            .prepare_cached(
                "SELECT rkey, version, deleted FROM resources WHERE res_type = ?1 AND res_id = ?2",
            )?
            .query_row([resource_type, id], |row| {
                Ok(Current { rkey: row.get(0)?, version: row.get::<_, i64>(1)? as u64, deleted: row.get(2)? })
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
        self.upsert_current(current.rkey, true, resource_type, id, version, true, timestamp, seq)?;
        self.next_seq += 1;
        Ok(Written {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            outcome: WriteOutcome::Deleted { version, last_updated: timestamp },
        })
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

fn check_if_match(
    resource_type: &str,
    id: &str,
    if_match: Option<&Precondition>,
    current: Option<&Current>,
) -> Result<()> {
    let Some(precondition) = if_match else { return Ok(()) };
    let met = match (precondition, current) {
        (Precondition::Exists, Some(current)) => !current.deleted,
        (Precondition::Versions(versions), Some(current)) => versions.contains(&current.version),
        (_, None) => false,
    };
    if met {
        return Ok(());
    }
    Err(Error::VersionConflict {
        resource: format!("{resource_type}/{id}"),
        expected: precondition.to_string(),
        current: match current {
            None => "none (it does not exist)".to_string(),
            Some(c) if c.deleted => format!("{} (deleted)", c.version),
            Some(c) => c.version.to_string(),
        },
    })
}
