//! The views as SQL tables: each view a query names is materialized as a table of
//! `DIR/analytics.sqlite` and rebuilt only when the view's definition or the record changed
//! since (the table's stamp). SQLite rather than a columnar engine: the tables are small
//! beside the record, and one embedded file keeps `chartroom sql` free of another service
//! (ARCHITECTURE.md, "Analytics").
//!
//! Queries run on a read-only connection: a statement cannot change the tables behind the
//! stamps, whatever it says.
//!
//! date, dateTime and instant columns stay TEXT as written (SQLite has no date type; its date
//! functions read the ISO text, and a partial `1970-06` stays what it says rather than
//! becoming a day), unlike Parquet output, which gives them native types (`sof::dates`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::OpenFlags;
pub use rusqlite::types::Value;
use serde_json::Value as Json;
use sof::{Cell, Kind};
use store::Store;

use crate::catalog::NamedView;
use crate::{Error, Result};

/// The file the tables live in, inside a data directory.
pub fn tables_path(data: &Path) -> PathBuf {
    data.join("analytics.sqlite")
}

/// The materialized views of one data directory.
pub struct Tables {
    path: PathBuf,
    db: rusqlite::Connection,
}

/// A query's answer: column names and rows of SQLite values.
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// One table rebuilt by [`Tables::refresh`].
pub struct Rebuilt {
    pub view: String,
    pub rows: u64,
    pub seconds: f64,
}

impl Tables {
    /// Opens (creating if needed) the tables file at `path`.
    pub fn open(path: &Path) -> Result<Tables> {
        let db = rusqlite::Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS _materialized (view TEXT PRIMARY KEY, stamp TEXT NOT NULL, rows INTEGER NOT NULL, built TEXT NOT NULL);",
        )?;
        Ok(Tables { path: path.to_path_buf(), db })
    }

    /// Brings the tables of the views `query` names up to date with `store` (all of them with
    /// `force`), returning those rebuilt.
    pub fn refresh_for_query(
        &mut self,
        query: &str,
        views: &[NamedView],
        store: &dyn Store,
        force: bool,
    ) -> Result<Vec<Rebuilt>> {
        let mut rebuilt = Vec::new();
        for view in named_in(query, views) {
            let started = std::time::Instant::now();
            if let Some(rows) = self.refresh(view, store, force)? {
                rebuilt.push(Rebuilt {
                    view: view.name.clone(),
                    rows,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
        Ok(rebuilt)
    }

    /// Rebuilds `view`'s table if its stamp is not current (or `force`); the rows written, or
    /// `None` when the table was already current.
    pub fn refresh(&mut self, view: &NamedView, store: &dyn Store, force: bool) -> Result<Option<u64>> {
        let stamp = stamp(view, store)?;
        let current: Option<String> = self
            .db
            .query_row("SELECT stamp FROM _materialized WHERE view = ?1", [&view.name], |row| row.get(0))
            .ok();
        if !force && current.as_deref() == Some(stamp.as_str()) {
            return Ok(None);
        }
        self.materialize(view, store, &stamp).map(Some)
    }

    /// Runs one SQL statement over the tables, read-only.
    pub fn query(&self, sql: &str) -> Result<QueryResult> {
        let reader = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.execute_batch("PRAGMA query_only = ON;")?;
        let mut statement =
            reader.prepare(sql).map_err(|e| Error::Query(format!("the query does not compile: {e}")))?;
        let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
        let width = columns.len();
        let mut cursor = statement.query([]).map_err(|e| Error::Query(format!("the query failed: {e}")))?;
        let mut rows = Vec::new();
        while let Some(row) = cursor.next().map_err(|e| Error::Query(format!("the query failed: {e}")))? {
            rows.push((0..width).map(|i| row.get::<_, Value>(i)).collect::<Result<_, _>>()?);
        }
        Ok(QueryResult { columns, rows })
    }

    /// Rebuilds the view's table in one transaction.
    fn materialize(&mut self, view: &NamedView, store: &dyn Store, stamp: &str) -> Result<u64> {
        let columns = view.view.columns();
        let table = quote_identifier(&view.name);
        let transaction = self.db.transaction()?;
        transaction.execute_batch(&format!("DROP TABLE IF EXISTS {table};"))?;
        let definitions: Vec<String> = columns
            .iter()
            .map(|c| format!("{} {}", quote_identifier(c.name()), sql_type(c.kind(), c.collection())))
            .collect();
        transaction.execute_batch(&format!("CREATE TABLE {table} ({});", definitions.join(", ")))?;
        let placeholders = vec!["?"; columns.len()].join(", ");
        let mut rows = 0u64;
        {
            let mut insert = transaction.prepare(&format!("INSERT INTO {table} VALUES ({placeholders})"))?;
            // The store's scan wants its own error back; the first failure is kept aside.
            let mut failure: Option<Error> = None;
            let scanned = store.scan_type(view.view.resource(), None, &mut |resource_type, id, body| {
                let result = (|| -> Result<()> {
                    let json: Json = serde_json::from_slice(body).map_err(|e| {
                        Error::Broken(format!("{resource_type}/{id} is stored as invalid JSON: {e}"))
                    })?;
                    for row in view.view.rows(&json)? {
                        insert.execute(rusqlite::params_from_iter(row.iter().map(sql_value)))?;
                        rows += 1;
                    }
                    Ok(())
                })();
                result.map_err(|error| {
                    failure = Some(error);
                    store::Error::Stopped
                })
            });
            if let Some(error) = failure {
                return Err(error);
            }
            scanned?;
        }
        transaction.execute(
            "INSERT OR REPLACE INTO _materialized (view, stamp, rows, built) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![view.name, stamp, rows as i64, fhir::DateTime::now_utc().to_string()],
        )?;
        transaction.commit()?;
        Ok(rows)
    }
}

/// The views whose names appear as words of `query` (any case).
pub fn named_in<'v>(query: &str, views: &'v [NamedView]) -> Vec<&'v NamedView> {
    let lowered = query.to_ascii_lowercase();
    let words: HashSet<&str> =
        lowered.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
    views.iter().filter(|v| words.contains(v.name.to_ascii_lowercase().as_str())).collect()
}

/// What a materialized table was built from: the view's definition and the record's last
/// commit. Equal stamps mean the table is current.
fn stamp(view: &NamedView, store: &dyn Store) -> Result<String> {
    let newest = store
        .history(&store::HistoryScope::System, &store::HistoryQuery { count: 1, ..Default::default() })?;
    let seq = newest.versions.first().map_or(0, |v| v.seq);
    let live = store.count_live()?;
    Ok(format!("{}|{seq}|{live}", view.definition))
}

fn sql_type(kind: Kind, collection: bool) -> &'static str {
    match (kind, collection) {
        (_, true) | (Kind::Text | Kind::Json, false) => "TEXT",
        (Kind::Boolean | Kind::Integer, false) => "INTEGER",
        (Kind::Decimal, false) => "REAL",
    }
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A cell as SQLite stores it: lists as JSON arrays.
fn sql_value(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Boolean(b) => Value::Integer(i64::from(*b)),
        Cell::Integer(i) => Value::Integer(*i),
        Cell::Decimal(d) => Value::Real(*d),
        Cell::Text(t) => Value::Text(t.to_string()),
        Cell::List(items) => Value::Text(Json::Array(items.iter().map(cell_json).collect()).to_string()),
    }
}

fn cell_json(cell: &Cell) -> Json {
    match cell {
        Cell::Null => Json::Null,
        Cell::Boolean(b) => Json::Bool(*b),
        Cell::Integer(i) => Json::from(*i),
        Cell::Decimal(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Cell::Text(t) => Json::String(t.to_string()),
        Cell::List(items) => Json::Array(items.iter().map(cell_json).collect()),
    }
}
