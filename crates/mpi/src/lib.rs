//! The master patient index: finding the patients registered more than once.
//!
//! - [`person`]: a Patient (or a row of a linkage file) reduced to what matching compares,
//!   normalised once.
//! - [`blocking`]: candidate pairs from several blocking keys, so pairs grow about linearly
//!   with the number of patients.
//! - [`compare`]: each pair's comparison vector, one level per field (exact, close, nickname,
//!   transposed day and month, ...).
//! - [`model`]: Fellegi–Sunter: u estimated from random pairs, then m, u and the share of
//!   matches by EM over the candidate pairs (no labels); term-frequency adjustment of exact
//!   name agreement; a match probability per pair.
//! - [`linkage`]: the whole run over a set of people, and its evaluation against true pairs.

pub mod blocking;
pub mod compare;
pub mod febrl;
pub mod index;
pub mod linkage;
pub mod model;
pub mod names;
pub mod person;
pub mod review;

/// What can go wrong in matching.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file or row that cannot be read (the message says where).
    #[error("{0}")]
    Input(String),
    /// A setting out of range (the message names it).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
