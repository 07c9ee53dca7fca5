//! Uses of the record: the numeric kernels behind outbreak early warning and treatment
//! comparison, and the extraction that turns the record into their input.
//!
//! - [`surveillance`]: aberration detection over one count series, computed as R's
//!   `surveillance` package (1.20) computes it: EARS C1/C2/C3, CUSUM, Farrington flexible.
//! - [`survival`]: Kaplan–Meier, the log-rank test and Cox proportional hazards, computed as
//!   lifelines (0.30) computes them.
//! - [`risk`]: comorbidity indices (Charlson, Elixhauser, the Hospital Frailty Risk Score),
//!   computed as comorbidipy (0.8) computes them, and each patient's as of a date.
//!
//! - [`billing`]: final bills reconciled with the record, and the revenue-cycle figures.
//!
//! The kernels are pure functions over numbers (no store, no I/O), so the oracle tests call
//! them directly with the reference implementations' inputs.

pub mod billing;
pub mod compare;
pub mod operations;
pub mod outbreak;
pub mod record;
pub mod risk;
pub mod surveillance;
pub mod survival;
pub mod syndromes;

/// What can go wrong in an analysis.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A control parameter or an input is outside what the method accepts (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// The series or cohort is too short or too small for the method (the message says why).
    #[error("{0}")]
    NotEnoughData(String),
    /// A model fit did not converge.
    #[error("{0}")]
    NoConvergence(String),
    /// Reading the record failed.
    #[error("reading the record failed: {0}")]
    Store(#[from] store::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
