//! SQL on FHIR v2: ViewDefinitions over FHIR R4 JSON, as Arrow record batches.
//!
//! [`ViewDefinition::from_json`] reads a definition and checks all of it (properties, column
//! names, unique columns across the whole row, `unionAll` branches alike, FHIRPath syntax,
//! constants and their uses), so a run fails on data only: a `collection: false` column
//! finding several values, a `where` that is not Boolean, a value of the wrong type.
//!
//! Rows follow the specification's processing algorithm: `forEach`/`forEachOrNull`/`repeat`
//! iterate, nested selects and `unionAll` combine by Cartesian product, `%rowIndex` is the
//! position in the nearest iteration. [`Runner`] (or [`ViewDefinition::batches`]) turns pushed
//! resources into batches of a fixed number of rows, so memory stays bounded however many
//! resources go through; [`Writer`] streams batches out as CSV, NDJSON, JSON or Parquet.
//!
//! Column types (see [`Kind`]): text types, and date, dateTime, instant and time in their FHIR
//! lexical form, are `Utf8` in the batches; boolean is `Boolean`; the integer types are
//! `Int64`; decimal is `Float64`; complex types are JSON text; `collection: true` makes a `List`
//! of the item type. A column without `type` is text.
//!
//! Dates keep their text in the batches so that CSV, NDJSON and JSON give them exactly as
//! written (`1970-06` stays `1970-06`). Parquet, read by analytics tools, gets native types
//! ([`dates`]): `date` is `Date32` (DATE), `dateTime` and `instant` are `Timestamp(Microsecond,
//! "UTC")` (TIMESTAMP, adjusted to UTC). A partial value is the start of the period it names
//! (`2020` is 2020-01-01, `2020-03` is 2020-03-01, a dateTime `2020-03-04` is
//! 2020-03-04T00:00:00Z), a time with an offset is converted to UTC, and text that is no date is
//! null. [`NativeDates`] does the same for any batch of a view.
//!
//! [`builtin`] holds the views shipped in the binary (patients, encounters, diagnoses, claims,
//! ...), as ViewDefinition files embedded at build time.
//!
//! `getResourceKey()` is the resource's `id`, and `getReferenceKey([type])` the id part of a
//! relative or absolute literal reference (the FHIRPath crate implements both).

mod batch;
pub mod builtin;
pub mod dates;
mod row;
mod view;
mod write;

pub use batch::{Batches, DEFAULT_BATCH_SIZE, Runner};
pub use dates::NativeDates;
pub use row::{Cell, Row};
pub use view::{Column, DESCRIPTION_KEY, ENCODING_KEY, FHIR_TYPE_KEY, Kind, ViewDefinition};
pub use write::{Format, Writer, write, write_csv, write_json, write_ndjson, write_parquet};

/// What can go wrong with a view, a run, or its output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ViewDefinition is not valid; `location` is a path into it
    /// (`select[0].column[2].path`).
    #[error("invalid ViewDefinition: {location}: {message}")]
    Invalid { location: String, message: String },
    /// A resource could not be turned into rows.
    #[error("{resource}: {location}: {message}")]
    Evaluation {
        /// `Patient/pt1`
        resource: String,
        location: String,
        message: String,
    },
    #[error("{0}")]
    Output(String),
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn invalid(location: &str, message: impl Into<String>) -> Error {
        Error::Invalid { location: location.to_string(), message: message.into() }
    }
}
