//! Survival analysis over right-censored follow-up: the Kaplan–Meier estimate, the log-rank
//! test and Cox proportional hazards, computed as lifelines 0.30 computes them (the oracle
//! test, `tests/survival_oracle.rs`, holds every reported number to lifelines' within 1e-6).
//!
//! Inputs are one entry per subject: `durations[i]` is the follow-up time (any unit, from the
//! cohort's time zero, so never negative) and `events[i]` says whether it ended with the event
//! (`true`) or was censored (`false`).
//!
//! - [`kaplan_meier`] mirrors `KaplanMeierFitter().fit(durations, events)`.
//! - [`logrank`] mirrors `statistics.multivariate_logrank_test` (for two groups it equals
//!   `statistics.logrank_test`).
//! - [`cox_ph`] mirrors `CoxPHFitter().fit(...)` with its defaults: Efron's handling of tied
//!   times, no penalty, no strata, no weights.

mod cox;
mod kaplan_meier;
mod logrank;

pub use cox::{CoxFit, cox_ph};
pub use kaplan_meier::{KaplanMeier, kaplan_meier};
pub use logrank::{LogRank, logrank};

use crate::{Error, Result};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// Checks one cohort's follow-up: as many event flags as durations, at least one subject, and
/// every duration a finite number not below zero (lifelines refuses NaN and infinite ones; a
/// negative one would move lifelines' timeline origin below zero, which no cohort here means).
fn check_follow_up(durations: &[f64], events: &[bool]) -> Result<()> {
    if durations.len() != events.len() {
        return Err(Error::Invalid(format!(
            "durations and events differ in length: {} durations, {} event flags",
            durations.len(),
            events.len()
        )));
    }
    if durations.is_empty() {
        return Err(Error::NotEnoughData("no subjects: durations is empty".into()));
    }
    if let Some((i, d)) = durations.iter().enumerate().find(|(_, d)| !d.is_finite()) {
        return Err(Error::Invalid(format!("duration {i} is {d}: durations must be finite numbers")));
    }
    if let Some((i, d)) = durations.iter().enumerate().find(|(_, d)| **d < 0.0) {
        return Err(Error::Invalid(format!("duration {i} is negative ({d}): durations must be >= 0")));
    }
    Ok(())
}

/// Subject indices ordered by duration. Durations are checked finite first, so `total_cmp`
/// is the plain numeric order.
fn order_by_duration(durations: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..durations.len()).collect();
    order.sort_unstable_by(|&a, &b| durations[a].total_cmp(&durations[b]));
    order
}

/// The two-sided normal quantile for a `1 - alpha` interval (lifelines'
/// `inv_normal_cdf(1 - alpha / 2)`).
fn normal_quantile_for(alpha: f64) -> Result<f64> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::Invalid(format!("alpha is {alpha}: it must lie strictly between 0 and 1")));
    }
    Ok(Normal::standard().inverse_cdf(1.0 - alpha / 2.0))
}

/// Upper tail of the chi-square distribution (scipy's `chi2.sf`, which lifelines' p-values use);
/// a statistic at or below zero (possible only through rounding) has p = 1, as in scipy.
fn chi_square_sf(statistic: f64, degrees_of_freedom: usize) -> f64 {
    if statistic.is_nan() {
        return f64::NAN;
    }
    if statistic <= 0.0 {
        return 1.0;
    }
    match ChiSquared::new(degrees_of_freedom as f64) {
        Ok(distribution) => distribution.sf(statistic),
        // Only a zero degrees of freedom gets here, and callers never pass one.
        Err(_) => f64::NAN,
    }
}
