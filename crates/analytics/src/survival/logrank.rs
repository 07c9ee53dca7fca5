//! The log-rank test of equal survival across groups, as lifelines'
//! `statistics.multivariate_logrank_test` computes it (its `logrank_test` for two groups is
//! the same computation).

use super::{check_follow_up, chi_square_sf, order_by_duration};
use crate::{Error, Result};
use serde::Serialize;

/// The result of a log-rank test (lifelines' `StatisticalResult`).
#[derive(Debug, Clone, Serialize)]
pub struct LogRank {
    /// `test_statistic`: Z' V⁻ Z over all groups but the last, where Z is observed minus
    /// expected events and V⁻ the pseudo-inverse of their covariance.
    pub test_statistic: f64,
    /// `p_value`: the chi-square upper tail of the statistic.
    pub p_value: f64,
    /// `degrees_of_freedom`: the number of groups less one.
    pub degrees_of_freedom: usize,
}

/// Tests whether the groups' survival differs. `groups[i]` labels subject `i`'s group; any
/// labels will do, and there must be at least two distinct ones.
pub fn logrank(durations: &[f64], events: &[bool], groups: &[usize]) -> Result<LogRank> {
    check_follow_up(durations, events)?;
    if groups.len() != durations.len() {
        return Err(Error::Invalid(format!(
            "groups and durations differ in length: {} group labels, {} durations",
            groups.len(),
            durations.len()
        )));
    }
    // Groups in ascending label order, as lifelines takes them from np.unique; the last one
    // is the group left out of the statistic.
    let mut labels = groups.to_vec();
    labels.sort_unstable();
    labels.dedup();
    let k = labels.len();
    if k < 2 {
        return Err(Error::NotEnoughData(format!(
            "the log-rank test compares at least 2 groups; the cohort has {k}"
        )));
    }
    if !events.iter().any(|&e| e) {
        return Err(Error::NotEnoughData("no events: every subject is censored".into()));
    }
    let group_of: Vec<usize> = groups.iter().map(|g| labels.partition_point(|l| l < g)).collect();

    let mut at_risk = vec![0.0f64; k];
    for &g in &group_of {
        at_risk[g] += 1.0;
    }
    let mut observed_minus_expected = vec![0.0f64; k];
    // Covariance of the observed event counts (the hypergeometric variance summed over event
    // times), row-major k×k.
    let mut covariance = vec![0.0f64; k * k];
    let mut deaths = vec![0.0f64; k];
    let mut removed = vec![0.0f64; k];

    let order = order_by_duration(durations);
    let mut start = 0;
    while start < order.len() {
        let time = durations[order[start]];
        let mut end = start;
        deaths.fill(0.0);
        removed.fill(0.0);
        while end < order.len() && durations[order[end]] == time {
            let subject = order[end];
            removed[group_of[subject]] += 1.0;
            if events[subject] {
                deaths[group_of[subject]] += 1.0;
            }
            end += 1;
        }
        let total_deaths: f64 = deaths.iter().sum();
        if total_deaths > 0.0 {
            let total_at_risk: f64 = at_risk.iter().sum();
            for g in 0..k {
                observed_minus_expected[g] += deaths[g] - at_risk[g] * (total_deaths / total_at_risk);
            }
            // lifelines' factor (n - d)/(n - 1) · d/n², with the 0/0 and x/0 of a single
            // subject at risk replaced by 1 (the variance term is 0 there anyway).
            let mut correction = (total_at_risk - total_deaths) / (total_at_risk - 1.0);
            if !correction.is_finite() {
                correction = 1.0;
            }
            let factor = correction * total_deaths / (total_at_risk * total_at_risk);
            for a in 0..k {
                for b in 0..k {
                    let diagonal = if a == b { at_risk[a] * total_at_risk } else { 0.0 };
                    covariance[a * k + b] += factor * (diagonal - at_risk[a] * at_risk[b]);
                }
            }
        }
        for g in 0..k {
            at_risk[g] -= removed[g];
        }
        start = end;
    }

    // The statistic over the first k - 1 groups, through numpy's pseudo-inverse as lifelines
    // takes it (a group with nobody at risk at any event time makes V singular).
    let m = k - 1;
    let reduced: Vec<f64> =
        (0..m).flat_map(|a| (0..m).map(move |b| (a, b))).map(|(a, b)| covariance[a * k + b]).collect();
    let inverse = symmetric_pseudo_inverse(&reduced, m);
    let z = &observed_minus_expected[..m];
    let mut statistic = 0.0;
    for a in 0..m {
        for b in 0..m {
            statistic += z[a] * inverse[a * m + b] * z[b];
        }
    }
    Ok(LogRank { test_statistic: statistic, p_value: chi_square_sf(statistic, m), degrees_of_freedom: m })
}

/// Moore–Penrose pseudo-inverse of a symmetric m×m matrix (row-major) with numpy's default
/// cut-off: singular values at or below 1e-15 times the largest are dropped. For a symmetric
/// matrix the singular values are the absolute eigenvalues, found here by cyclic Jacobi
/// rotations (m is the number of groups less one, so small).
fn symmetric_pseudo_inverse(matrix: &[f64], m: usize) -> Vec<f64> {
    let mut a = matrix.to_vec();
    let mut vectors = vec![0.0; m * m];
    for i in 0..m {
        vectors[i * m + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..m)
            .flat_map(|p| (0..m).map(move |q| (p, q)))
            .filter(|(p, q)| p != q)
            .map(|(p, q)| a[p * m + q].powi(2))
            .sum();
        let scale: f64 = a.iter().map(|x| x * x).sum();
        if off <= f64::EPSILON * f64::EPSILON * scale || off == 0.0 {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = a[p * m + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                // The smaller rotation angle; signum(0.0) is 1, the 45° rotation.
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..m {
                    let arp = a[r * m + p];
                    let arq = a[r * m + q];
                    a[r * m + p] = c * arp - s * arq;
                    a[r * m + q] = s * arp + c * arq;
                }
                for r in 0..m {
                    let apr = a[p * m + r];
                    let aqr = a[q * m + r];
                    a[p * m + r] = c * apr - s * aqr;
                    a[q * m + r] = s * apr + c * aqr;
                }
                for r in 0..m {
                    let vrp = vectors[r * m + p];
                    let vrq = vectors[r * m + q];
                    vectors[r * m + p] = c * vrp - s * vrq;
                    vectors[r * m + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    let eigenvalues: Vec<f64> = (0..m).map(|i| a[i * m + i]).collect();
    let largest = eigenvalues.iter().fold(0.0f64, |acc, e| acc.max(e.abs()));
    let cutoff = 1e-15 * largest;
    let mut inverse = vec![0.0; m * m];
    for (e, &lambda) in eigenvalues.iter().enumerate() {
        if lambda.abs() <= cutoff {
            continue;
        }
        for r in 0..m {
            for c in 0..m {
                inverse[r * m + c] += vectors[r * m + e] * vectors[c * m + e] / lambda;
            }
        }
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_single_group() {
        let err = logrank(&[1.0, 2.0, 3.0], &[true, true, false], &[4, 4, 4]).unwrap_err();
        assert!(matches!(err, Error::NotEnoughData(ref m) if m.contains("at least 2 groups")), "{err}");
    }

    #[test]
    fn rejects_mismatched_groups_and_no_events() {
        let err = logrank(&[1.0, 2.0], &[true, true], &[0]).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("groups and durations")), "{err}");
        let err = logrank(&[1.0, 2.0], &[false, false], &[0, 1]).unwrap_err();
        assert!(matches!(err, Error::NotEnoughData(ref m) if m.contains("no events")), "{err}");
        let err = logrank(&[1.0, f64::NAN], &[true, true], &[0, 1]).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    }

    #[test]
    fn lifelines_docstring_example() {
        // statistics.logrank_test's docstring example; the values lifelines 0.30 prints for it.
        let a = [1.0, 4.0, 10.0, 12.0, 12.0, 3.0, 5.4];
        let ea = [true, false, true, false, true, true, true];
        let b = [4.0, 5.0, 7.0, 11.0, 14.0, 20.0, 8.0, 8.0];
        let durations: Vec<f64> = a.iter().chain(&b).copied().collect();
        let events: Vec<bool> = ea.iter().copied().chain(std::iter::repeat_n(true, b.len())).collect();
        let groups: Vec<usize> = (0..durations.len()).map(|i| usize::from(i >= a.len())).collect();
        let result = logrank(&durations, &events, &groups).expect("test");
        assert!((result.test_statistic - 0.08725886275434053).abs() < 1e-12, "{result:?}");
        assert!((result.p_value - 0.7676913033364599).abs() < 1e-12, "{result:?}");
        assert_eq!(result.degrees_of_freedom, 1);
    }

    #[test]
    fn pseudo_inverse_inverts_and_drops_null_directions() {
        let inverse = symmetric_pseudo_inverse(&[4.0, 1.0, 1.0, 3.0], 2);
        let expected = [3.0 / 11.0, -1.0 / 11.0, -1.0 / 11.0, 4.0 / 11.0];
        for (got, want) in inverse.iter().zip(expected) {
            assert!((got - want).abs() < 1e-14, "{inverse:?}");
        }
        let inverse = symmetric_pseudo_inverse(&[1.0, 1.0, 1.0, 1.0], 2);
        for got in inverse {
            assert!((got - 0.25).abs() < 1e-14, "{got}");
        }
    }
}
