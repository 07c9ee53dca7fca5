//! The record a writing command opens: the data directory's own SQLite database, or a
//! PostgreSQL database (`--store postgres://...`) that several server processes share. The
//! data directory is there either way: it holds what is each process's own (its audit trail,
//! exports, models, keys); the users, clients and tokens of a PostgreSQL record are in its
//! database ([`shared_tables`]).

use std::sync::Arc;

use store::{PostgresStore, SqliteStore, Store};

/// An open record, of either backend.
pub(crate) enum Record {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Record {
    /// The store, for the API and the commands that read it.
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        match self {
            Record::Sqlite(store) => store.clone(),
            Record::Postgres(store) => store.clone(),
        }
    }

    /// Whether opening it made a new, empty record.
    pub(crate) fn created(&self) -> bool {
        match self {
            Record::Sqlite(store) => store.created(),
            Record::Postgres(store) => store.created(),
        }
    }

    /// Lets queued writes finish and stops the writer (on SQLite, also syncs the log into the
    /// database: an import's data is durable only after this).
    pub(crate) fn close(&self) {
        match self {
            Record::Sqlite(store) => store.close(),
            Record::Postgres(store) => store.close(),
        }
    }

    /// Where the record is, for messages.
    pub(crate) fn describe(&self, data: &std::path::Path) -> String {
        match self {
            Record::Sqlite(_) => data.display().to_string(),
            Record::Postgres(_) => "PostgreSQL".to_string(),
        }
    }
}

/// The record a reading command opens: a snapshot of the data directory's SQLite record, or
/// the PostgreSQL record (each read as of itself).
pub(crate) enum Snapshot {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

/// The store, to read.
impl AsRef<dyn Store> for Snapshot {
    fn as_ref(&self) -> &(dyn Store + 'static) {
        match self {
            Snapshot::Sqlite(store) => store.as_ref(),
            Snapshot::Postgres(store) => store.as_ref(),
        }
    }
}

impl Snapshot {
    /// Ends the snapshot (SQLite: so the server's log can be reset past it).
    pub(crate) fn close(&self) {
        match self {
            Snapshot::Sqlite(store) => store.close(),
            Snapshot::Postgres(store) => store.close(),
        }
    }
}

/// The users, clients and tokens of a PostgreSQL record: in its database, shared by every
/// server of the record.
pub(crate) fn shared_tables(url: &str, schema: &str) -> anyhow::Result<Arc<database::Database>> {
    use anyhow::Context as _;
    database::Database::postgres(url, schema)
        .with_context(|| format!("cannot open the users and clients in {}", database::redact(url)))
}
