//! One synchronous SQL connection, to an SQLite file or to a PostgreSQL schema, for the small
//! administrative tables (users, SMART clients, refresh tokens, revocations). On PostgreSQL
//! several servers share them, so a user added, a client registered or a token revoked through
//! one server holds at every other.
//!
//! Statements are written once, in the SQL both engines read, with `?N` placeholders (turned
//! into `$N` for PostgreSQL). Values are [`Value`]s; a PostgreSQL parameter takes the type its
//! column has, so an integer binds to `BIGINT` or `INTEGER` alike and `NULL` to anything.
//! The few spellings that differ (DDL, insertion order) are chosen by [`Database::dialect`].

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake};

use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL error with its SQLSTATE (empty when the connection itself failed).
    #[error("PostgreSQL: {message}")]
    Postgres { code: String, message: String },
    /// A column read as a type it does not hold.
    #[error("column {column}: {message}")]
    Column { column: usize, message: String },
    #[error("the database connection is unavailable")]
    Poisoned,
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => {
                Error::Postgres { code: db.code().code().to_string(), message: db.message().to_string() }
            }
            None => Error::Postgres { code: String::new(), message: error.to_string() },
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which SQL the connection speaks, for the statements that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a statement or read from a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Integer(value)
    }
}
impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_string())
    }
}
impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}
impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(value.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// The values of one statement, in placeholder order: `params![a, b]`.
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => { &[$($crate::Value::from($value)),*][..] };
}

/// One row of a result.
#[derive(Clone, Debug, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn value(&self, column: usize) -> Result<&Value> {
        self.0.get(column).ok_or(Error::Column { column, message: "no such column".into() })
    }

    pub fn text(&self, column: usize) -> Result<String> {
        self.opt_text(column)?.ok_or(Error::Column { column, message: "NULL where text was expected".into() })
    }

    pub fn opt_text(&self, column: usize) -> Result<Option<String>> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Text(text) => Ok(Some(text.clone())),
            other => Err(Error::Column { column, message: format!("{other:?} where text was expected") }),
        }
    }

    pub fn blob(&self, column: usize) -> Result<Vec<u8>> {
        match self.value(column)? {
            Value::Blob(bytes) => Ok(bytes.clone()),
            other => Err(Error::Column { column, message: format!("{other:?} where bytes were expected") }),
        }
    }

    pub fn integer(&self, column: usize) -> Result<i64> {
        match self.value(column)? {
            Value::Integer(integer) => Ok(*integer),
            other => {
                Err(Error::Column { column, message: format!("{other:?} where an integer was expected") })
            }
        }
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(integer) => match *ty {
                Type::INT2 => i16::try_from(*integer)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*integer)?.to_sql(ty, out),
                Type::BOOL => (*integer != 0).to_sql(ty, out),
                _ => integer.to_sql(ty, out),
            },
            Value::Text(text) => text.to_sql(ty, out),
            Value::Blob(bytes) => bytes.to_sql(ty, out),
        }
    }

    // The variant is checked against the column's type when encoding.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A connection in use: what a statement or a transaction runs on.
pub enum Handle<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a tokio_postgres::Client),
}

impl Handle<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Handle::Sqlite(_) => Dialect::Sqlite,
            Handle::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, values: &[Value]) -> Result<u64> {
        match self {
            Handle::Sqlite(connection) => {
                let mut statement = connection.prepare_cached(sql)?;
                Ok(statement.execute(rusqlite::params_from_iter(values.iter().map(sqlite_value)))? as u64)
            }
            Handle::Postgres(client) => {
                let sql = postgres_text(sql);
                let params: Vec<&(dyn ToSql + Sync)> =
                    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                block_on(client.execute(sql.as_str(), &params)).map_err(Error::from)
            }
        }
    }

    /// Runs a query; every row it returns.
    pub fn query(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>> {
        match self {
            Handle::Sqlite(connection) => {
                let mut statement = connection.prepare_cached(sql)?;
                let width = statement.column_count();
                let mut rows =
                    statement.query(rusqlite::params_from_iter(values.iter().map(sqlite_value)))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut cells = Vec::with_capacity(width);
                    for column in 0..width {
                        cells.push(match row.get_ref(column)? {
                            rusqlite::types::ValueRef::Null => Value::Null,
                            rusqlite::types::ValueRef::Integer(i) => Value::Integer(i),
                            rusqlite::types::ValueRef::Real(f) => Value::Text(f.to_string()),
                            rusqlite::types::ValueRef::Text(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        });
                    }
                    out.push(Row(cells));
                }
                Ok(out)
            }
            Handle::Postgres(client) => {
                let sql = postgres_text(sql);
                let params: Vec<&(dyn ToSql + Sync)> =
                    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                let rows = block_on(client.query(sql.as_str(), &params))?;
                rows.iter().map(postgres_row).collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&self, sql: &str, values: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, values)?.into_iter().next())
    }

    /// Runs statements without parameters (the schema).
    pub fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Handle::Sqlite(connection) => Ok(connection.execute_batch(sql)?),
            Handle::Postgres(client) => Ok(block_on(client.batch_execute(sql))?),
        }
    }
}

fn sqlite_value(value: &Value) -> rusqlite::types::Value {
    match value {
        Value::Null => rusqlite::types::Value::Null,
        Value::Integer(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
        Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

fn postgres_row(row: &tokio_postgres::Row) -> Result<Row> {
    let mut cells = Vec::with_capacity(row.len());
    for (column, described) in row.columns().iter().enumerate() {
        let failed = |e: tokio_postgres::Error| Error::Column { column, message: e.to_string() };
        let value = match *described.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(column).map_err(failed)?.map(Value::Integer),
            Type::INT4 => {
                row.try_get::<_, Option<i32>>(column).map_err(failed)?.map(|i| Value::Integer(i.into()))
            }
            Type::INT2 => {
                row.try_get::<_, Option<i16>>(column).map_err(failed)?.map(|i| Value::Integer(i.into()))
            }
            Type::BOOL => {
                row.try_get::<_, Option<bool>>(column).map_err(failed)?.map(|b| Value::Integer(b.into()))
            }
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(column).map_err(failed)?.map(Value::Blob),
            _ => row.try_get::<_, Option<String>>(column).map_err(failed)?.map(Value::Text),
        };
        cells.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(cells))
}

/// `?N` placeholders as PostgreSQL's `$N`, outside quoted text.
pub fn postgres_text(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '?' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

enum Connection {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres {
        client: Mutex<tokio_postgres::Client>,
        url: String,
        schema: String,
        /// Drives the connection's I/O; shut down when the database is dropped.
        runtime: Option<tokio::runtime::Runtime>,
    },
}

/// A shared connection; statements from several threads take turns.
pub struct Database {
    connection: Connection,
    /// The SQLite file (to connect again); unused on PostgreSQL.
    path: std::path::PathBuf,
    /// Where it is, for messages (a PostgreSQL URL without its password).
    describe: String,
}

impl Database {
    /// Opens (creating) an SQLite file.
    pub fn sqlite(path: &Path) -> Result<Arc<Database>> {
        let connection = rusqlite::Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Arc::new(Database {
            connection: Connection::Sqlite(Mutex::new(connection)),
            path: path.to_path_buf(),
            describe: path.display().to_string(),
        }))
    }

    /// Connects to PostgreSQL, with `schema` (made if missing) first on the search path.
    pub fn postgres(url: &str, schema: &str) -> Result<Arc<Database>> {
        if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || schema.is_empty() {
            return Err(Error::Postgres {
                code: String::new(),
                message: format!("'{schema}' is not a schema name"),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("chartroom-admin-db")
            .enable_all()
            .build()
            .map_err(|e| Error::Postgres { code: String::new(), message: e.to_string() })?;
        let client = connect(runtime.handle(), url, schema)?;
        Ok(Arc::new(Database {
            connection: Connection::Postgres {
                client: Mutex::new(client),
                url: url.to_string(),
                schema: schema.to_string(),
                runtime: Some(runtime),
            },
            path: std::path::PathBuf::new(),
            describe: redact(url),
        }))
    }

    /// A second connection to the same tables, as another server (another process) holds.
    pub fn another(&self) -> Result<Arc<Database>> {
        match &self.connection {
            Connection::Sqlite(_) => Database::sqlite(&self.path),
            Connection::Postgres { url, schema, .. } => Database::postgres(url, schema),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.connection {
            Connection::Sqlite(_) => Dialect::Sqlite,
            Connection::Postgres { .. } => Dialect::Postgres,
        }
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Runs `work` on the connection, holding it. A PostgreSQL connection the server closed
    /// (a restart, a failover) is opened again first.
    pub fn with<T>(&self, work: impl FnOnce(&Handle<'_>) -> Result<T>) -> Result<T> {
        match &self.connection {
            Connection::Sqlite(connection) => {
                let connection = lock(connection)?;
                work(&Handle::Sqlite(&connection))
            }
            Connection::Postgres { client, url, schema, runtime } => {
                let mut client = lock(client)?;
                if client.is_closed()
                    && let Some(runtime) = runtime
                {
                    *client = connect(runtime.handle(), url, schema)?;
                }
                work(&Handle::Postgres(&client))
            }
        }
    }

    /// Makes tables (statements of `CREATE ... IF NOT EXISTS`): on PostgreSQL under the
    /// advisory lock the store's migrations take, so servers starting together do not
    /// create the same table at once (PostgreSQL refuses the second).
    pub fn create_tables(&self, ddl: &str) -> Result<()> {
        self.with(|handle| match handle {
            Handle::Sqlite(_) => handle.batch(ddl),
            Handle::Postgres(_) => {
                handle.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
                let made = handle.batch(ddl);
                handle.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
                made
            }
        })
    }

    /// Runs `work` in one transaction: all of it or none.
    pub fn transaction<T>(&self, work: impl FnOnce(&Handle<'_>) -> Result<T>) -> Result<T> {
        self.with(|handle| {
            handle.batch(match handle.dialect() {
                Dialect::Sqlite => "BEGIN IMMEDIATE",
                Dialect::Postgres => "BEGIN",
            })?;
            match work(handle) {
                Ok(value) => {
                    handle.batch("COMMIT")?;
                    Ok(value)
                }
                Err(error) => {
                    let _ = handle.batch("ROLLBACK");
                    Err(error)
                }
            }
        })
    }

    pub fn execute(&self, sql: &str, values: &[Value]) -> Result<u64> {
        self.with(|handle| handle.execute(sql, values))
    }

    pub fn query(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>> {
        self.with(|handle| handle.query(sql, values))
    }

    pub fn query_opt(&self, sql: &str, values: &[Value]) -> Result<Option<Row>> {
        self.with(|handle| handle.query_opt(sql, values))
    }

    pub fn batch(&self, sql: &str) -> Result<()> {
        self.with(|handle| handle.batch(sql))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Without waiting: the last handle may be dropped on an async runtime's thread, where
        // a runtime's blocking shutdown would panic.
        if let Connection::Postgres { runtime, .. } = &mut self.connection
            && let Some(runtime) = runtime.take()
        {
            runtime.shutdown_background();
        }
    }
}

/// The key of the advisory lock schema changes take on PostgreSQL (the store's migrations and
/// [`Database::create_tables`]).
pub const MIGRATION_LOCK: i64 = 0x6368_6172_7472_6d31;

/// Connects, makes the schema if missing (under [`MIGRATION_LOCK`]) and puts it first on the
/// search path.
fn connect(runtime: &tokio::runtime::Handle, url: &str, schema: &str) -> Result<tokio_postgres::Client> {
    let owned = url.to_string();
    let task = runtime.spawn(async move {
        let (client, connection) = tokio_postgres::connect(&owned, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok::<_, tokio_postgres::Error>(client)
    });
    let client = block_on(task)
        .map_err(|e| Error::Postgres { code: String::new(), message: e.to_string() })?
        .map_err(|e| Error::Postgres { code: String::new(), message: format!("{}: {e}", redact(url)) })?;
    block_on(client.batch_execute(&format!(
        "SELECT pg_advisory_lock({MIGRATION_LOCK}); CREATE SCHEMA IF NOT EXISTS {schema};
         SELECT pg_advisory_unlock({MIGRATION_LOCK}); SET search_path TO {schema}"
    )))?;
    Ok(client)
}

fn lock<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    mutex.lock().map_err(|_| Error::Poisoned)
}

/// A PostgreSQL URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme) = out.find("://") {
        let rest_start = scheme + 3;
        let authority_end = out[rest_start..].find('/').map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let at = rest_start + at;
            if let Some(colon) = out[rest_start..at].find(':') {
                out.replace_range(rest_start + colon + 1..at, "***");
            }
        }
    }
    // A password may come as a query parameter too.
    if let Some(query) = out.find('?') {
        let (head, tail) = out.split_at(query + 1);
        let tail: Vec<String> = tail
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", tail.join("&"));
    }
    out
}

/// Runs a future to completion on the calling thread. Connections' I/O runs on their own
/// runtime, so this works from any thread, inside an async context or not (where a runtime's
/// own `block_on` would refuse).
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            postgres_text("SELECT '?1', x FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', x FROM t WHERE a = $1 AND b = $12"
        );
    }

    #[test]
    fn passwords_are_redacted_in_the_authority_and_the_query() {
        assert_eq!(redact("postgres://app:secret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(
            redact("postgres://db/x?user=app&password=secret"),
            "postgres://db/x?user=app&password=***"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
    }

    #[test]
    fn sqlite_statements_take_and_give_values() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("chartroom-database-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Column { column: 0, message: e.to_string() })?;
        let db = Database::sqlite(&dir.join("t.sqlite"))?;
        db.batch("CREATE TABLE IF NOT EXISTS t (a TEXT, b BIGINT, c TEXT); DELETE FROM t")?;
        db.execute("INSERT INTO t VALUES (?1, ?2, ?3)", params!["x", 7i64, None::<String>])?;
        let row = db.query_opt("SELECT a, b, c FROM t WHERE a = ?1", params!["x"])?.ok_or(Error::Poisoned)?;
        assert_eq!((row.text(0)?, row.integer(1)?, row.opt_text(2)?), ("x".to_string(), 7, None));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
