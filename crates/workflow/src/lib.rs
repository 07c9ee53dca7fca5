//! HIM workflows: the department's daily work, each step a FHIR resource (`Task`, `Consent`,
//! `Bundle`) so the API, the audit trail and the workbench see it like any other record, and
//! each legal clock driven by a [`Clock`] that tests can move.
//!
//! - [`roi`]: release of information. A request is a `Task` (who asks, for whom, why, what
//!   scope, in which form); an authorization is a `Consent` checked for the core elements of
//!   45 CFR 164.508(c); the 30-day clock of 164.524 with its one 30-day extension; fulfilment
//!   as a Bundle of exactly the requested scope; the cost-based fee; overdue requests.
//! - [`amendment`]: a patient's request to amend their record (164.526), on its 60-day clock;
//!   accepted as a new version with its Provenance and the people to notify, or denied with a
//!   letter, the patient's statement of disagreement carried into later releases.
//! - [`retention`]: retention schedules per record class, legal holds (enforced by the store
//!   on every path), the purge of what is past retention and under no hold, and its
//!   certificate of destruction.
//! - [`completion`]: record completion. Deficiency rules over finished encounters (discharge
//!   summary, history and physical, operative report, signature), each a `Task` owned by the
//!   clinician who owes the document and closed when it arrives; the delinquency report and
//!   the chart completion rate.

pub mod amendment;
pub mod clock;
pub mod completion;
pub mod retention;
pub mod roi;

pub use clock::{Clock, FixedClock, SystemClock};

/// Whether a resource is a workflow's own record, written only through that workflow's
/// operations (its clock, rules and audit are the law's): the operations that write it.
pub fn written_only_by(resource_type: &str, json: &serde_json::Value) -> Option<&'static str> {
    let coded = match resource_type {
        "Task" => &json["code"],
        "DocumentReference" => &json["type"],
        _ => return None,
    };
    // Every coding in the workflows' code system counts, whichever comes first.
    let codes: Vec<Option<&str>> = coded["coding"]
        .as_array()?
        .iter()
        .filter(|c| c["system"] == roi::WORKFLOW_SYSTEM)
        .map(|c| c["code"].as_str())
        .collect();
    if codes.is_empty() {
        return None;
    }
    let operations = |code: &str| -> Option<&'static str> {
        if resource_type == "DocumentReference" {
            return match code {
                retention::CERTIFICATE_CODE => Some("$retention-purge"),
                amendment::DENIAL_LETTER | amendment::ACCEPTANCE_NOTICE => Some("Task/[id]/$amend-decide"),
                amendment::STATEMENT_OF_DISAGREEMENT => Some("Task/[id]/$amend-disagree"),
                _ => None,
            };
        }
        match code {
            roi::ROI_CODE => Some("Task/$roi-request, Task/[id]/$roi-extend, Task/[id]/$roi-release"),
            completion::DEFICIENCY_CODE => Some("Task/$completion-scan"),
            store::hold::HOLD_CODE => Some("Task/$hold-place, Task/[id]/$hold-release"),
            amendment::AMENDMENT_CODE => Some(
                "Task/$amend-request, Task/[id]/$amend-extend, Task/[id]/$amend-decide, Task/[id]/$amend-disagree",
            ),
            _ => None,
        }
    };
    codes.iter().flatten().find_map(|code| operations(code)).or(match resource_type {
        // A Task in the workflows' system is the department's, whatever its code says.
        "Task" => Some("its workflow's operations"),
        _ => None,
    })
}

/// What can go wrong in a workflow step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request or a parameter is not what the step accepts (the message says what and where).
    #[error("{0}")]
    Invalid(String),
    /// The step is not allowed in the workflow's state or by the law's rules (the message says why).
    #[error("{0}")]
    Refused(String),
    /// Reading the record failed.
    #[error("reading the record failed: {0}")]
    Store(#[from] store::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Milliseconds in a day, and in an hour.
pub const DAY: i64 = 86_400_000;
pub const HOUR: i64 = 3_600_000;

/// An instant (ms) as a FHIR dateTime in UTC, to the second.
pub fn date_time(millis: i64) -> String {
    let (y, m, d) = fhir::datetime::civil_from_days(millis.div_euclid(DAY));
    let seconds = millis.rem_euclid(DAY) / 1000;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// The first instant (ms) of a FHIR date or dateTime, if it is one.
pub fn instant(text: &str) -> Option<i64> {
    fhir::DateTime::parse(text, fhir::DateTimeKind::DateTime).ok().map(|d| d.lower_bound_millis())
}

/// The first instant after a FHIR date or dateTime (its upper bound), if it is one.
pub fn instant_after(text: &str) -> Option<i64> {
    fhir::DateTime::parse(text, fhir::DateTimeKind::DateTime).ok().map(|d| d.upper_bound_millis())
}
