//! Coding edits and the coder worklist.
//!
//! An *edit* is a check a coder (or a claim scrubber) runs on the ICD-10-CM codes of a record:
//! is the code real, is it billable where a bill needs it, does the record document more than
//! the code says, do two codes exclude each other, are etiology and manifestation in the right
//! order, does the code fit the patient's sex and age. [`check`] runs them over the diagnoses of
//! one episode of care; [`extract`] pulls those diagnoses out of FHIR resources;
//! [`worklist`] finds the finished encounters that still need a coder.
//!
//! The edits read the tabular list itself (notes and their code references) through the
//! `terminology` crate, as do the sex and age tables (`terminology::icd10cm::demographics`).

mod edits;
mod error;
pub mod extract;
mod specificity;
pub mod worklist;

pub use edits::{Diagnosis, Edit, EditId, PatientFacts, Setting, Severity, Sex, check};
pub use error::Error;
pub use worklist::{Reason, WorklistItem, edits_for, worklist};
