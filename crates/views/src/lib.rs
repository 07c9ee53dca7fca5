//! The record's SQL on FHIR views, for every face that uses them (`ViewDefinition/$run`,
//! `chartroom view` and `chartroom sql`, and the analyses built on the views).
//!
//! - [`catalog`]: the views known by name (built-in, or saved as `DIR/views/NAME.json`).
//! - [`run`]: a view's rows over the store's current resources, over inline resources or over
//!   NDJSON/JSON files, streamed in batches.
//! - [`partitioned`]: the views as Hive-partitioned Parquet (resource type, month) for
//!   cluster engines.
//! - [`tables`]: the views materialized as tables of `DIR/analytics.sqlite` for SQL, rebuilt
//!   only when the view or the record changed.
//!
//! Nothing here decides who may see what: the API hands [`run::run_view`] a store already
//! narrowed to the caller's view of the record; the command line works on a data directory
//! its operator owns.

pub mod catalog;
pub mod files;
pub mod partitioned;
pub mod run;
pub mod tables;

pub use catalog::{NamedView, find_view, known_views, valid_view_name, view_definition, views_dir};
pub use files::run_files;
pub use run::{Flattener, ViewRun, ViewScope, about_patient, run_inline, run_view};
pub use tables::{QueryResult, Tables};

/// What can go wrong with a view.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No built-in or saved view has this name.
    #[error("ViewDefinition/{0} is not known (see GET ViewDefinition)")]
    Unknown(String),
    /// A definition given by the caller is not a valid ViewDefinition.
    #[error("{0}")]
    Invalid(#[source] sof::Error),
    /// A built-in or saved view cannot be used (a server-side fault, not the caller's).
    #[error("{0}")]
    Broken(String),
    /// A resource could not be flattened, or the rows could not be written.
    #[error(transparent)]
    View(#[from] sof::Error),
    #[error("reading the record failed: {0}")]
    Store(#[from] store::Error),
    /// The run went past its deadline.
    #[error("the view ran past its time limit")]
    TooLong,
    /// Reading input files failed (path and line, where known, in the message).
    #[error("{0}")]
    Input(String),
    /// The SQL statement given does not compile or fails.
    #[error("{0}")]
    Query(String),
    /// The materialized tables could not be read or written.
    #[error("the analytics tables: {0}")]
    Tables(#[from] rusqlite::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
