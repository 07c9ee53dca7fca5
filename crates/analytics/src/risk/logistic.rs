//! L2-regularised logistic regression and the measures of a risk model: the area under the ROC
//! curve with DeLong's 95% confidence interval, the Brier score and a calibration table.
//!
//! The fit minimises `0.5 ‖w‖² + C Σ logloss` with the intercept unpenalised — scikit-learn's
//! `LogisticRegression(penalty="l2", C=C)` objective — by Newton's method with the exact
//! Hessian, so its coefficients agree with scikit-learn's to the solvers' tolerance.

// Matrix arithmetic reads best with its indices (row j, column k) written out.
#![allow(clippy::needless_range_loop)]

use crate::{Error, Result};

/// A fitted model: intercept and one coefficient per column.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub intercept: f64,
    pub coefficients: Vec<f64>,
    pub iterations: usize,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Fit {
    /// The predicted probability of one row.
    pub fn predict(&self, row: &[f64]) -> f64 {
        sigmoid(self.intercept + row.iter().zip(&self.coefficients).map(|(x, w)| x * w).sum::<f64>())
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (Cholesky), in place of `b`.
fn solve(a: &mut [Vec<f64>], b: &mut [f64]) -> Result<()> {
    let n = b.len();
    for j in 0..n {
        let mut diagonal = a[j][j];
        for k in 0..j {
            diagonal -= a[j][k] * a[j][k];
        }
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return Err(Error::NoConvergence(
                "the logistic regression's Hessian is not positive definite".into(),
            ));
        }
        let diagonal = diagonal.sqrt();
        a[j][j] = diagonal;
        for i in j + 1..n {
            let mut value = a[i][j];
            for k in 0..j {
                value -= a[i][k] * a[j][k];
            }
            a[i][j] = value / diagonal;
        }
    }
    for i in 0..n {
        let mut value = b[i];
        for k in 0..i {
            value -= a[i][k] * b[k];
        }
        b[i] = value / a[i][i];
    }
    for i in (0..n).rev() {
        let mut value = b[i];
        for k in i + 1..n {
            value -= a[k][i] * b[k];
        }
        b[i] = value / a[i][i];
    }
    Ok(())
}

/// Fits `y ~ x` (rows of equal length) with penalty strength `c` (scikit-learn's `C`).
pub fn fit(x: &[Vec<f64>], y: &[bool], c: f64) -> Result<Fit> {
    let columns = x.first().map_or(0, Vec::len);
    if x.len() != y.len() || x.iter().any(|row| row.len() != columns) {
        return Err(Error::Invalid("the rows and outcomes of a logistic regression must match".into()));
    }
    if !y.iter().any(|&v| v) || y.iter().all(|&v| v) {
        return Err(Error::NotEnoughData("a logistic regression needs both outcomes among its rows".into()));
    }
    // Parameters: [intercept, w...].
    let n = columns + 1;
    let mut beta = vec![0.0; n];
    let objective = |beta: &[f64]| -> f64 {
        let penalty: f64 = beta[1..].iter().map(|w| w * w).sum::<f64>() * 0.5;
        let loss: f64 = x
            .iter()
            .zip(y)
            .map(|(row, &outcome)| {
                let z = beta[0] + row.iter().zip(&beta[1..]).map(|(a, b)| a * b).sum::<f64>();
                // log(1 + e^z) - y z, computed stably.
                let softplus = if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
                softplus - if outcome { z } else { 0.0 }
            })
            .sum();
        penalty + c * loss
    };
    let mut current = objective(&beta);
    for iteration in 1..=100 {
        let mut gradient = vec![0.0; n];
        let mut hessian = vec![vec![0.0; n]; n];
        for (row, &outcome) in x.iter().zip(y) {
            let z = beta[0] + row.iter().zip(&beta[1..]).map(|(a, b)| a * b).sum::<f64>();
            let p = sigmoid(z);
            let residual = p - if outcome { 1.0 } else { 0.0 };
            let weight = p * (1.0 - p);
            let value = |j: usize| if j == 0 { 1.0 } else { row[j - 1] };
            for j in 0..n {
                let xj = value(j);
                gradient[j] += c * residual * xj;
                for k in 0..=j {
                    hessian[j][k] += c * weight * xj * value(k);
                }
            }
        }
        for j in 1..n {
            gradient[j] += beta[j];
            hessian[j][j] += 1.0;
        }
        for j in 0..n {
            for k in 0..j {
                hessian[k][j] = hessian[j][k];
            }
        }
        // Converged when the gradient is nil to rounding (its terms sum over every row) or
        // Newton's step no longer moves any parameter.
        let largest = gradient.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        if largest < 1e-12 * c.max(1.0) * x.len().max(1) as f64 {
            return Ok(Fit {
                intercept: beta[0],
                coefficients: beta[1..].to_vec(),
                iterations: iteration - 1,
            });
        }
        let mut step = gradient.clone();
        solve(&mut hessian, &mut step)?;
        if step.iter().fold(0.0f64, |m, s| m.max(s.abs())) < 1e-10 {
            for (b, s) in beta.iter_mut().zip(&step) {
                *b -= s;
            }
            return Ok(Fit { intercept: beta[0], coefficients: beta[1..].to_vec(), iterations: iteration });
        }
        // Halve the step until the objective does not grow (Newton steps on a convex objective
        // rarely need it).
        let mut scale = 1.0;
        loop {
            let trial: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b - scale * s).collect();
            let value = objective(&trial);
            // Rounding in a sum over many rows can make the objective at a better point
            // look a hair worse: within that, the step is taken.
            if value <= current + 1e-12 * current.abs().max(1.0) || scale < 1e-8 {
                beta = trial;
                current = value;
                break;
            }
            scale *= 0.5;
        }
    }
    Err(Error::NoConvergence("the logistic regression did not converge in 100 Newton steps".into()))
}

/// Midranks of `values` (ties share the mean of their ranks), 1-based.
fn midranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &at in &order[i..=j] {
            ranks[at] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// The area under the ROC curve (ties count a half) with DeLong's standard error, and its 95%
/// confidence interval (clipped to [0, 1]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Auc {
    pub auc: f64,
    pub low: f64,
    pub high: f64,
    pub standard_error: f64,
}

/// The AUC of `scores` for the `outcomes`, by DeLong's method (Sun and Xu's fast algorithm).
pub fn auc(scores: &[f64], outcomes: &[bool]) -> Result<Auc> {
    let positives: Vec<f64> = scores.iter().zip(outcomes).filter(|(_, o)| **o).map(|(s, _)| *s).collect();
    let negatives: Vec<f64> = scores.iter().zip(outcomes).filter(|(_, o)| !**o).map(|(s, _)| *s).collect();
    let (m, n) = (positives.len(), negatives.len());
    if m == 0 || n == 0 {
        return Err(Error::NotEnoughData("an AUC needs both outcomes".into()));
    }
    let all: Vec<f64> = positives.iter().chain(&negatives).copied().collect();
    let overall = midranks(&all);
    let within_positive = midranks(&positives);
    let within_negative = midranks(&negatives);
    let (mf, nf) = (m as f64, n as f64);
    let sum_positive: f64 = overall[..m].iter().sum();
    let auc = (sum_positive - mf * (mf + 1.0) / 2.0) / (mf * nf);
    // Placement values.
    let v10: Vec<f64> = (0..m).map(|i| (overall[i] - within_positive[i]) / nf).collect();
    let v01: Vec<f64> = (0..n).map(|j| 1.0 - (overall[m + j] - within_negative[j]) / mf).collect();
    let variance = |v: &[f64]| -> f64 {
        if v.len() < 2 {
            return 0.0;
        }
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    };
    let standard_error = (variance(&v10) / mf + variance(&v01) / nf).sqrt();
    let z = 1.959_963_984_540_054;
    Ok(Auc {
        auc,
        low: (auc - z * standard_error).max(0.0),
        high: (auc + z * standard_error).min(1.0),
        standard_error,
    })
}

/// The mean squared difference between predicted probability and outcome.
pub fn brier(predicted: &[f64], outcomes: &[bool]) -> f64 {
    if predicted.is_empty() {
        return f64::NAN;
    }
    predicted.iter().zip(outcomes).map(|(p, &o)| (p - if o { 1.0 } else { 0.0 }).powi(2)).sum::<f64>()
        / predicted.len() as f64
}

/// One group of a calibration table: rows, mean prediction, observed rate.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationGroup {
    pub rows: usize,
    pub predicted: f64,
    pub observed: f64,
}

/// Predictions sorted and cut into `groups` groups of (nearly) equal size.
pub fn calibration(predicted: &[f64], outcomes: &[bool], groups: usize) -> Vec<CalibrationGroup> {
    let mut order: Vec<usize> = (0..predicted.len()).collect();
    order.sort_by(|&a, &b| predicted[a].total_cmp(&predicted[b]));
    let groups = groups.max(1).min(order.len().max(1));
    (0..groups)
        .filter_map(|g| {
            let from = g * order.len() / groups;
            let to = (g + 1) * order.len() / groups;
            let rows = &order[from..to];
            (!rows.is_empty()).then(|| CalibrationGroup {
                rows: rows.len(),
                predicted: rows.iter().map(|&i| predicted[i]).sum::<f64>() / rows.len() as f64,
                observed: rows.iter().filter(|&&i| outcomes[i]).count() as f64 / rows.len() as f64,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_as_a_half() {
        let a = auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((a.auc - 0.75).abs() < 1e-12);
        let tied = auc(&[0.5, 0.5], &[false, true]).unwrap();
        assert!((tied.auc - 0.5).abs() < 1e-12);
        assert!(auc(&[0.1], &[true]).is_err());
    }

    #[test]
    fn the_fit_recovers_a_separating_direction_and_shrinks_it() {
        let x: Vec<Vec<f64>> = (0..200).map(|i| vec![(i as f64 - 100.0) / 50.0]).collect();
        let y: Vec<bool> = (0..200).map(|i| (i * 7919) % 200 < i).collect();
        let loose = fit(&x, &y, 100.0).unwrap();
        let tight = fit(&x, &y, 0.01).unwrap();
        assert!(loose.coefficients[0] > 0.5, "{loose:?}");
        assert!(tight.coefficients[0].abs() < loose.coefficients[0].abs());
        assert!(fit(&x, &[true; 200], 1.0).is_err());
        assert!((brier(&[1.0, 0.0], &[true, false])).abs() < 1e-12);
        let table = calibration(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true], 2);
        assert_eq!(table.len(), 2);
        assert_eq!((table[0].observed, table[1].observed), (0.0, 1.0));
    }
}
