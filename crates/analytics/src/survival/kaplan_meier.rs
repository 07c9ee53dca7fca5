//! The Kaplan–Meier estimate with exponential-Greenwood ("log-log") confidence intervals, as
//! lifelines' `KaplanMeierFitter.fit` computes it.

use super::{check_follow_up, normal_quantile_for, order_by_duration};
use crate::Result;
use serde::Serialize;

/// A fitted Kaplan–Meier curve. Each vector has one entry per point of `timeline`.
#[derive(Debug, Clone, Serialize)]
pub struct KaplanMeier {
    /// lifelines' `timeline` (the index of `survival_function_` and `event_table`): 0, then every
    /// distinct duration, event or censoring, ascending.
    pub timeline: Vec<f64>,
    /// `survival_function_`: the estimate just after each timeline point.
    pub survival: Vec<f64>,
    /// `confidence_interval_`, lower column (exponential Greenwood).
    pub ci_lower: Vec<f64>,
    /// `confidence_interval_`, upper column.
    pub ci_upper: Vec<f64>,
    /// `event_table["at_risk"]`: subjects whose duration is at or after the point.
    pub at_risk: Vec<usize>,
    /// `event_table["observed"]`: events at the point.
    pub observed: Vec<usize>,
    /// `event_table["censored"]`: censorings at the point.
    pub censored: Vec<usize>,
    /// `median_survival_time_`: the first timeline point where the survival is at or below 0.5;
    /// `None` where lifelines reports `inf` (the curve stays above 0.5).
    pub median: Option<f64>,
    /// `lifelines.utils.median_survival_times(kmf.confidence_interval_)`: the median read off the
    /// lower and the upper confidence curve; `None` for lifelines' `inf`.
    pub median_ci: (Option<f64>, Option<f64>),
    /// The confidence level's alpha the intervals were computed for.
    pub alpha: f64,
}

impl KaplanMeier {
    /// The estimate at time `t`: lifelines' `survival_function_at_times(t)` (the value at the last
    /// timeline point at or before `t`). Before the timeline starts, where lifelines answers NaN,
    /// this answers 1 (nobody has had the event before time zero); NaN for a NaN `t`.
    pub fn survival_at(&self, t: f64) -> f64 {
        if t.is_nan() {
            return f64::NAN;
        }
        match self.last_point_at_or_before(t) {
            Some(i) => self.survival[i],
            None => 1.0,
        }
    }

    /// Subjects still at risk just after time `t`: the "At risk" row of the table that lifelines'
    /// `plotting.add_at_risk_counts` draws under the curve (its default, which subtracts those
    /// removed at the last timeline point at or before `t`; that is, subjects whose duration is
    /// greater than `t`). Like lifelines it answers 0 before the timeline starts.
    pub fn at_risk_at(&self, t: f64) -> usize {
        match self.last_point_at_or_before(t) {
            Some(i) => self.at_risk[i] - self.observed[i] - self.censored[i],
            None => 0,
        }
    }

    /// The index of the last timeline point at or before `t` (pandas' `asof`).
    fn last_point_at_or_before(&self, t: f64) -> Option<usize> {
        self.timeline.partition_point(|&point| point <= t).checked_sub(1)
    }
}

/// Fits the Kaplan–Meier estimate of survival from right-censored follow-up; `alpha` sets the
/// confidence level of the intervals (lifelines' default is 0.05).
///
/// A cohort without any event is not an error: its curve stays at 1 and it has no median
/// (lifelines fits it the same way).
pub fn kaplan_meier(durations: &[f64], events: &[bool], alpha: f64) -> Result<KaplanMeier> {
    check_follow_up(durations, events)?;
    let z = normal_quantile_for(alpha)?;
    let n = durations.len();

    // lifelines' event table: one row per distinct duration, plus the row of the cohort's entry
    // at time zero (its `birth_times` are min(0, min duration), which is 0 for checked input).
    let mut timeline = vec![0.0];
    let mut observed = vec![0usize];
    let mut censored = vec![0usize];
    for i in order_by_duration(durations) {
        let duration = durations[i];
        let last = timeline.len() - 1;
        if duration != timeline[last] {
            timeline.push(duration);
            observed.push(0);
            censored.push(0);
        }
        let last = timeline.len() - 1;
        if events[i] {
            observed[last] += 1;
        } else {
            censored[last] += 1;
        }
    }

    let points = timeline.len();
    let mut at_risk = Vec::with_capacity(points);
    let mut survival = Vec::with_capacity(points);
    let mut ci_lower = Vec::with_capacity(points);
    let mut ci_upper = Vec::with_capacity(points);
    let mut remaining = n;
    // Summed in lifelines' order: the log of each step's factor, cumulated, then exponentiated;
    // that keeps a median that falls exactly on 0.5 on the same side of 0.5 as lifelines'.
    let mut log_survival = 0.0;
    let mut greenwood = 0.0;
    for i in 0..points {
        at_risk.push(remaining);
        let population = remaining as f64;
        let deaths = observed[i] as f64;
        log_survival += (population - deaths).ln() - population.ln();
        // Greenwood's sum; lifelines replaces the infinite term of the step that empties the
        // risk set (population == deaths) with 0.
        let term = deaths / (population * (population - deaths));
        if term.is_finite() {
            greenwood += term;
        }
        let estimate = log_survival.exp();
        survival.push(estimate);
        let (lower, upper) = exponential_greenwood(estimate, greenwood, z);
        ci_lower.push(lower);
        ci_upper.push(upper);
        remaining -= observed[i] + censored[i];
    }

    let median = first_time_at_or_below_half(&timeline, &survival);
    let median_ci = (
        first_time_at_or_below_half(&timeline, &ci_lower),
        first_time_at_or_below_half(&timeline, &ci_upper),
    );
    Ok(KaplanMeier {
        timeline,
        survival,
        ci_lower,
        ci_upper,
        at_risk,
        observed,
        censored,
        median,
        median_ci,
        alpha,
    })
}

/// The exponential Greenwood interval at one point (lifelines' `KaplanMeierFitter._bounds`): on
/// the log(-log S) scale, ± z·sqrt(Greenwood sum)/log S. Where S is 1 the formula is 0/0 and
/// lifelines fills the NaN with 1; where S is 0 both bounds come out 0.
fn exponential_greenwood(estimate: f64, greenwood: f64, z: f64) -> (f64, f64) {
    let v = estimate.ln();
    let spread = z * greenwood.sqrt() / v;
    let lower = (-((-v).ln() - spread).exp()).exp();
    let upper = (-((-v).ln() + spread).exp()).exp();
    let fill = |bound: f64| if bound.is_nan() { 1.0 } else { bound };
    (fill(lower), fill(upper))
}

/// lifelines' `qth_survival_time(0.5, curve)`: `inf` (here `None`) when the curve's last value
/// is above 0.5, otherwise the time at `(-curve).searchsorted(-0.5)`. That is numpy's
/// left-sided binary search, reproduced step for step because a confidence curve need not be
/// monotone, where a binary search and a scan can disagree.
fn first_time_at_or_below_half(timeline: &[f64], curve: &[f64]) -> Option<f64> {
    let last = *curve.last()?;
    if last > 0.5 {
        return None;
    }
    let (mut low, mut high) = (0, curve.len());
    while low < high {
        let mid = low + (high - low) / 2;
        if -curve[mid] < -0.5 {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    timeline.get(low).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn rejects_mismatched_lengths() {
        let err = kaplan_meier(&[1.0, 2.0], &[true], 0.05).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("differ in length")), "{err}");
    }

    #[test]
    fn rejects_negative_and_nan_durations() {
        let err = kaplan_meier(&[1.0, -2.0], &[true, true], 0.05).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("negative")), "{err}");
        let err = kaplan_meier(&[f64::NAN, 2.0], &[true, true], 0.05).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("duration 0 is NaN")), "{err}");
        let err = kaplan_meier(&[1.0, f64::INFINITY], &[true, true], 0.05).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    }

    #[test]
    fn rejects_empty_cohort_and_bad_alpha() {
        assert!(matches!(kaplan_meier(&[], &[], 0.05), Err(Error::NotEnoughData(_))));
        let err = kaplan_meier(&[1.0], &[true], 1.5).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("alpha")), "{err}");
    }

    #[test]
    fn cohort_without_events_stays_at_one() {
        let km = kaplan_meier(&[3.0, 1.0, 2.0], &[false, false, false], 0.05).expect("fit");
        assert_eq!(km.timeline, vec![0.0, 1.0, 2.0, 3.0]);
        assert!(km.survival.iter().all(|&s| s == 1.0));
        assert!(km.ci_lower.iter().chain(&km.ci_upper).all(|&s| s == 1.0));
        assert_eq!(km.median, None);
        assert_eq!(km.median_ci, (None, None));
    }

    #[test]
    fn point_lookups_follow_lifelines() {
        // Durations 1 (event), 2 (event, censoring), 4 (event).
        let km = kaplan_meier(&[2.0, 1.0, 4.0, 2.0], &[true, true, true, false], 0.05).expect("fit");
        assert_eq!(km.timeline, vec![0.0, 1.0, 2.0, 4.0]);
        assert_eq!(km.at_risk, vec![4, 4, 3, 1]);
        assert!((km.survival_at(1.5) - 0.75).abs() < 1e-15);
        assert!((km.survival_at(2.0) - 0.5).abs() < 1e-15);
        assert_eq!(km.survival_at(-1.0), 1.0);
        assert_eq!(km.survival_at(10.0), 0.0);
        assert_eq!(km.at_risk_at(0.0), 4);
        assert_eq!(km.at_risk_at(1.0), 3);
        assert_eq!(km.at_risk_at(3.0), 1);
        assert_eq!(km.at_risk_at(4.0), 0);
        assert_eq!(km.at_risk_at(-1.0), 0);
    }
}
