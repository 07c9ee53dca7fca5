//! FHIR R4 (4.0.1) foundations: resources as JSON with typed access, the embedded R4
//! definitions, dates and times with precision, and `OperationOutcome`.

mod base64;
pub mod datetime;
pub mod definitions;
pub mod outcome;
pub mod parameters;
pub mod resource;
pub mod rest;
pub mod search_parameters;

pub use base64::{base64_decode, base64_encode};
pub use datetime::{DateTime, DateTimeKind, Precision, Time};
pub use definitions::{Definitions, definitions};
pub use outcome::{Issue, IssueType, OperationOutcome, Severity};
pub use resource::{
    ReferenceSite, ReferenceTarget, Resource, check_json, is_valid_id, parse_json, parse_reference,
    patient_id_input, patient_id_of_reference, patient_reference, patients_mentioned,
};
pub use search_parameters::{SearchParamType, search_parameters};

/// The FHIR version this crate implements.
pub const FHIR_VERSION: &str = "4.0.1";

/// What can be wrong with FHIR input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Json { line: usize, column: usize, message: String },
    #[error("a resource must be a JSON object")]
    NotAnObject,
    #[error("resourceType is missing")]
    MissingResourceType,
    #[error("'{0}' is not a FHIR R4 resource type")]
    UnknownResourceType(String),
    #[error(
        "'{id}' is not a valid id for {resource_type}: ids are 1-64 characters from A-Z, a-z, 0-9, '-' and '.', not dots only"
    )]
    InvalidId { resource_type: String, id: String },
    #[error("{element} must be {expected}")]
    WrongType { element: String, expected: &'static str },
    #[error("invalid {kind} '{value}': {reason}")]
    InvalidValue { kind: String, value: String, reason: String },
    #[error("invalid reference '{reference}' at {path}: {reason}")]
    InvalidReference { path: String, reference: String, reason: String },
}

impl Error {
    /// The error as an `OperationOutcome` issue, located where the problem is.
    pub fn to_issue(&self) -> Issue {
        let issue = |code| Issue::new(Severity::Error, code, self.to_string());
        match self {
            Error::Json { line, column, .. } => {
                issue(IssueType::Structure).located(format!("line {line}, column {column}"))
            }
            Error::NotAnObject => issue(IssueType::Structure),
            Error::MissingResourceType => issue(IssueType::Required).at("resourceType"),
            Error::UnknownResourceType(_) => issue(IssueType::NotSupported).at("resourceType"),
            Error::InvalidId { resource_type, .. } => {
                issue(IssueType::Value).at(format!("{resource_type}.id"))
            }
            Error::WrongType { element, .. } => issue(IssueType::Structure).at(element.clone()),
            Error::InvalidValue { .. } => issue(IssueType::Value),
            Error::InvalidReference { path, .. } => issue(IssueType::Value).at(path.clone()),
        }
    }

    /// The error as a one-issue `OperationOutcome`.
    pub fn to_outcome(&self) -> OperationOutcome {
        OperationOutcome::single(self.to_issue())
    }
}
