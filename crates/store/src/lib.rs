//! The versioned resource store.
//!
//! Invariants every backend keeps:
//! - **Nothing is overwritten.** Every create, update and delete appends a version; a delete
//!   appends a tombstone. Old versions stay readable (`vread`, history). The one exception is
//!   [`WriteOp::Purge`], a retention schedule's destruction of a record past its retention:
//!   every version goes.
//! - **Holds bind every writer.** An update, delete or purge of a resource an active legal
//!   hold covers ([`hold`]) is refused with [`Error::Held`], whoever submits it.
//! - **Atomic units.** A [`WriteUnit`] commits entirely or not at all; a write is acknowledged
//!   only after it is durable.
//! - **Stored bytes are served bytes.** Each version's JSON is stored exactly as a read
//!   returns it, `meta.versionId` and `meta.lastUpdated` included.
//! - **One commit order.** Every version has a sequence number (`seq`) that orders all writes;
//!   history and paging cursors use it, so a page never shifts when later writes arrive.

pub mod hold;
pub mod index;
pub mod params;
mod postgres;
mod prepared;
pub mod search;
mod sqlite;
mod write;

use std::fmt;

pub use postgres::{PostgresOptions, PostgresStore, is_postgres_url};
pub use prepared::PreparedResource;
pub use search::{SearchPage, SearchQuery, Total};
pub use sqlite::{SqliteStore, StoreOptions, Synchronous};

/// What [`Store::scan_current`] calls with each resource: type, id, body.
pub type ScanVisitor<'a> = dyn FnMut(&str, &str, &[u8]) -> Result<()> + 'a;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// An error PostgreSQL reported, with its SQLSTATE `code` (empty for a connection that
    /// failed before the server answered).
    #[error("PostgreSQL: {message}")]
    Postgres { code: String, message: String },
    /// The data directory could not be made, opened or locked. (`cause` rather than
    /// `source`: the message already says it, and a source would be printed a second time by
    /// anything that prints an error's chain.)
    #[error("data directory {path}: {cause}")]
    DataDirectory { path: String, cause: std::io::Error },
    /// Another process (a server, an import) holds the data directory for writing: there is
    /// one writer process at a time. Read-only commands open it beside that writer.
    #[error(
        "the data directory {path} is in use by another Chartroom process (a server or an import \
         writing to it); stop it first"
    )]
    InUse { path: String },
    /// A path given as a data directory that is not one: nothing there was created or changed.
    #[error(
        "{path} is not a Chartroom data directory: {reason}; a data directory is made by \
         `chartroom serve`, `chartroom import` or `chartroom demo`"
    )]
    NotADataDirectory { path: String, reason: String },
    /// A data directory a read-only store cannot read as it is (another schema version, an
    /// index of another format): only a writer may upgrade it.
    #[error("the data directory {path} cannot be read as it is: {reason}")]
    NeedsWriter { path: String, reason: String },
    /// A write asked of a store opened read-only ([`SqliteStore::open_read_only`]).
    #[error(
        "this store was opened read-only (beside the server that writes to it); writes go through \
         the server"
    )]
    ReadOnly,
    /// A read of a read-only store's snapshot started from inside another read of it on the
    /// same thread (a scan's visitor reading the store): it would wait for itself.
    #[error("a read of the read-only snapshot was started inside another read of it")]
    SnapshotBusy,
    #[error("{resource} is at version {current}, not the expected version {expected}")]
    VersionConflict { resource: String, expected: String, current: String },
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("resource {0} has no id; the server assigns one before storing")]
    MissingId(String),
    #[error("the store has shut down")]
    Closed,
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// A scan's visitor asked to stop (it has what it needs, or failed on its own terms).
    #[error("the scan was stopped by its reader")]
    Stopped,
    #[error("the commit failed and nothing of it was stored: {0}")]
    CommitFailed(String),
    /// The database did not answer the COMMIT (its connection was lost as it committed): the
    /// writes may or may not be stored.
    #[error(
        "the commit's outcome is unknown (the database did not answer it: {0}); the write may have been stored: read it before trying again"
    )]
    CommitUnknown(String),
    #[error("{0}")]
    MultipleMatches(String),
    #[error("{0}")]
    IdMismatch(String),
    /// A change to a resource under an active legal hold (`hold`): refused, by any path.
    #[error(
        "{resource} is under legal hold (Task/{hold}): it cannot be changed, deleted or purged until the hold is released"
    )]
    Held { resource: String, hold: String },
    #[error(
        "the search index of this data directory was built by a different version of the index; \
         run `chartroom reindex --data DIR` to rebuild it"
    )]
    IndexStale,
}

/// Result alias for store operations.
pub type Result<T> = std::result::Result<T, Error>;

/// How a version came to be (`Bundle.entry.request` and `response.status` in history).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMethod {
    /// POST: a new resource with a server-assigned id.
    Create,
    /// PUT of a resource that had a live version.
    Update,
    /// PUT that created the resource: its first version, or the first after a delete.
    UpdateCreate,
    Delete,
}

impl WriteMethod {
    fn code(self) -> i64 {
        match self {
            WriteMethod::Create => 0,
            WriteMethod::Update => 1,
            WriteMethod::Delete => 2,
            WriteMethod::UpdateCreate => 3,
        }
    }

    fn from_code(code: i64) -> Self {
        match code {
            0 => WriteMethod::Create,
            2 => WriteMethod::Delete,
            3 => WriteMethod::UpdateCreate,
            _ => WriteMethod::Update,
        }
    }

    /// The HTTP verb of the interaction.
    pub fn http_verb(self) -> &'static str {
        match self {
            WriteMethod::Create => "POST",
            WriteMethod::Update | WriteMethod::UpdateCreate => "PUT",
            WriteMethod::Delete => "DELETE",
        }
    }

    /// Whether the write created the resource (201 rather than 200).
    pub fn created(self) -> bool {
        matches!(self, WriteMethod::Create | WriteMethod::UpdateCreate)
    }
}

/// An `If-Match` precondition on an update or delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// `*`: the resource exists and is not deleted.
    Exists,
    /// The current version is one of these.
    Versions(Vec<u64>),
}

impl std::fmt::Display for Precondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Precondition::Exists => f.write_str("any live version"),
            Precondition::Versions(versions) => {
                let list: Vec<String> = versions.iter().map(u64::to_string).collect();
                f.write_str(&list.join(" or "))
            }
        }
    }
}

/// One stored version of a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRecord {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    /// `meta.lastUpdated` as milliseconds since the Unix epoch.
    pub last_updated: i64,
    pub method: WriteMethod,
    /// The resource JSON as served; `None` for a delete tombstone.
    pub body: Option<Vec<u8>>,
    /// Commit order of this version across the whole store.
    pub seq: i64,
}

impl VersionRecord {
    /// Whether this version is a delete tombstone.
    pub fn is_deleted(&self) -> bool {
        self.body.is_none()
    }
}

/// One change to apply.
#[derive(Debug)]
pub enum WriteOp {
    /// Store a new resource under the id it carries (assigned by the server). Fails if the id
    /// is taken.
    Create(PreparedResource),
    /// Store a new version (or version 1 if the resource never existed). With `if_match`,
    /// fails unless the current version meets it.
    Update { resource: PreparedResource, if_match: Option<Precondition> },
    /// Append a tombstone if the resource exists and is not already deleted.
    Delete { resource_type: String, id: String, if_match: Option<Precondition> },
    /// Conditional create: create unless the search finds a match (one match: nothing is
    /// written and the match is reported; several: an error). Decided inside the commit, so
    /// two concurrent conditional creates cannot both create.
    CreateIfNoneExist { resource: PreparedResource, query: SearchQuery },
    /// Conditional update: no match creates the resource (with its own id), one match is
    /// updated (under the match's id), several are an error.
    ConditionalUpdate { resource: PreparedResource, query: SearchQuery, id_given: bool },
    /// Conditional delete: one match is deleted, none is nothing to do, several are an error.
    ConditionalDelete { query: SearchQuery },
    /// Destroy a resource: every version of it and its index rows, as a retention schedule's
    /// purge does. Refused for a resource an active hold covers, and (with `if_match`) for one
    /// changed since the purge was planned.
    Purge { resource_type: String, id: String, if_match: Option<Precondition> },
    /// Rebuild the search index of the resources after `after_rkey` (at most `limit`); the
    /// first range (`after_rkey == 0`) also empties the index. Used by [`Store::reindex`].
    Reindex { after_rkey: i64, limit: usize },
}

/// Changes that commit together or not at all.
#[derive(Debug, Default)]
pub struct WriteUnit {
    pub ops: Vec<WriteOp>,
}

impl WriteUnit {
    /// A unit of one change.
    pub fn single(op: WriteOp) -> Self {
        WriteUnit { ops: vec![op] }
    }
}

/// What one [`WriteOp`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub resource_type: String,
    pub id: String,
    pub outcome: WriteOutcome,
}

/// The effect of one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new version was stored; `created` when the resource had no live version before.
    Stored { version: u64, last_updated: i64, created: bool, body: Vec<u8> },
    /// A tombstone was stored.
    Deleted { version: u64, last_updated: i64 },
    /// Delete of something absent or already deleted: nothing to do.
    NothingToDelete,
    /// A conditional create found this existing resource; nothing was written.
    Existing { version: u64, last_updated: i64, body: Vec<u8> },
    /// A range of the index was rebuilt.
    Reindexed { last_rkey: i64, count: u64 },
    /// A resource was destroyed: this many versions (0: there was nothing to purge).
    Purged { versions: u64 },
}

/// A write submitted to the store, waiting for its commit.
pub struct PendingWrite(pub(crate) tokio::sync::oneshot::Receiver<Result<Vec<Written>>>);

impl PendingWrite {
    /// A write refused before it was queued (a store that takes no writes, such as a
    /// read-only view of another): waiting answers `error`.
    pub fn refused(error: Error) -> PendingWrite {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let _ = sender.send(Err(error));
        PendingWrite(receiver)
    }

    /// Waits (asynchronously) until the unit has committed or failed.
    pub async fn wait(self) -> Result<Vec<Written>> {
        self.0.await.unwrap_or(Err(Error::Closed))
    }

    /// Waits, blocking the thread, until the unit has committed or failed.
    pub fn wait_blocking(self) -> Result<Vec<Written>> {
        self.0.blocking_recv().unwrap_or(Err(Error::Closed))
    }
}

impl fmt::Debug for PendingWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingWrite")
    }
}

/// Which versions a history request covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance { resource_type: String, id: String },
}

/// Filters and paging for history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only versions with `lastUpdated` at or after this (ms since epoch).
    pub since: Option<i64>,
    /// Only versions committed before this sequence number (a paging cursor).
    pub before_seq: Option<i64>,
    /// Page size.
    pub count: usize,
}

/// A page of history, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub versions: Vec<VersionRecord>,
    /// Cursor for the next (older) page, if there is one.
    pub next_before_seq: Option<i64>,
    /// Total number of matching versions, where it is cheap to know (instance history).
    pub total: Option<u64>,
}

/// A versioned resource store.
pub trait Store: Send + Sync {
    /// The current version of a resource (possibly a tombstone), or `None` if it never existed.
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<VersionRecord>>;

    /// A specific version, or `None` if there is no such version.
    fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<VersionRecord>>;

    /// Versions in a scope, newest first.
    fn history(&self, scope: &HistoryScope, query: &HistoryQuery) -> Result<HistoryPage>;

    /// Queues a unit for commit. Units submitted close together share one commit.
    fn submit(&self, unit: WriteUnit) -> PendingWrite;

    /// Number of resources whose current version is not deleted.
    fn count_live(&self) -> Result<u64>;

    /// Whether the search index must be rebuilt before searches can run (a store written by
    /// another version); `false` for a store without one.
    fn index_is_stale(&self) -> bool {
        false
    }

    /// A stamp that moves whenever a resource of `resource_type` is written, for caches in
    /// processes that share the store with others (the API's consent directives); `None`
    /// for a store only this process writes, whose caches know its writes already.
    fn changes_of(&self, _resource_type: &str) -> Result<Option<i64>> {
        Ok(None)
    }

    /// Live resources by type, types in name order (the administration page). The default
    /// reads every resource; a store with an index by type counts from it.
    fn count_by_type(&self) -> Result<Vec<(String, u64)>> {
        let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        self.scan_current(&mut |resource_type, _, _| {
            *counts.entry(resource_type.to_string()).or_default() += 1;
            Ok(())
        })?;
        Ok(counts.into_iter().collect())
    }

    /// Calls `visit` with the type, id and body of the current version of every live
    /// resource, type by type, from one consistent snapshot; stops at `visit`'s first error.
    /// Returns the resources visited.
    fn scan_current(&self, visit: &mut ScanVisitor<'_>) -> Result<u64>;

    /// Like [`Store::scan_current`], for the live resources of one type only, optionally only
    /// those last updated at or after `since` (ms since the epoch): what an analytics view
    /// flattens.
    fn scan_type(&self, resource_type: &str, since: Option<i64>, visit: &mut ScanVisitor<'_>) -> Result<u64>;

    /// A page of search results.
    fn search(&self, query: &SearchQuery) -> Result<SearchPage>;

    /// The current versions of these resources (type, id), in this order; absent or deleted
    /// ones are left out.
    fn read_many(&self, identities: &[(String, String)]) -> Result<Vec<VersionRecord>>;

    /// The live resources whose reference parameter (one of `keys`) points to one of
    /// `targets` (type, id): `_revinclude`, compartments.
    fn referencing(
        &self,
        keys: &[fhir::search_parameters::ParamKey],
        targets: &[(String, String)],
    ) -> Result<Vec<VersionRecord>>;

    /// Rebuilds the search index of every resource from its stored JSON; returns how many
    /// resources were indexed.
    fn reindex(&self) -> Result<u64>;
}
