//! HIM workflows: the department's daily work, each step a FHIR resource (`Task`, `Consent`,
//! `Bundle`) so the API, the audit trail and the workbench see it like any other record, and
//! each legal clock driven by a [`Clock`] that tests can move.
//!
//! - [`roi`]: release of information. A request is a `Task` (who asks, for whom, why, what
//!   scope, in which form); an authorization is a `Consent` checked for the core elements of
//!   45 CFR 164.508(c); the 30-day clock of 164.524 with its one 30-day extension; fulfilment
//!   as a Bundle of exactly the requested scope; the cost-based fee; overdue requests.

pub mod clock;
pub mod roi;

pub use clock::{Clock, FixedClock, SystemClock};

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

/// Milliseconds in a day.
pub const DAY: i64 = 86_400_000;
