//! Cox proportional hazards, fitted as lifelines' `CoxPHFitter().fit(df, duration, event)`
//! fits it with its defaults (`SemiParametricPHFitter`): Efron's partial likelihood for tied
//! times, Newton–Raphson from zero with lifelines' step-size rules and stopping tests, on
//! covariates centred and scaled to unit (sample) standard deviation, the coefficients and
//! their covariance scaled back to the covariates' own units afterwards.
//!
//! Scaling changes the path Newton–Raphson takes and so where it stops, within lifelines'
//! tolerance; it is reproduced so that the reported coefficients agree with lifelines' to
//! far better than that tolerance.

use super::{check_follow_up, chi_square_sf, normal_quantile_for};
use crate::{Error, Result};
use serde::Serialize;

/// `_newton_raphson_for_efron_model`'s defaults.
const INITIAL_STEP_SIZE: f64 = 0.95;
/// Stop when the Newton step's norm, or the Newton decrement, falls below this.
const PRECISION: f64 = 1e-7;
/// Stop when the log-likelihood changes by less than this fraction (R's default too).
const RELATIVE_PRECISION: f64 = 1e-9;
const MAX_STEPS: usize = 500;

/// A fitted Cox model. The per-covariate vectors follow `names`' order.
#[derive(Debug, Clone, Serialize)]
pub struct CoxFit {
    /// The covariates' names, as given.
    pub names: Vec<String>,
    /// `params_`: the log hazard ratios, in the covariates' own units.
    pub params: Vec<f64>,
    /// `standard_errors_`: from the inverse of the observed information (not robust).
    pub standard_errors: Vec<f64>,
    /// `hazard_ratios_`: exp(params).
    pub hazard_ratios: Vec<f64>,
    /// `confidence_intervals_`, lower column: params − z(1−alpha/2)·se, on the coefficient scale.
    pub ci_lower: Vec<f64>,
    /// `confidence_intervals_`, upper column.
    pub ci_upper: Vec<f64>,
    /// `summary["z"]`: params / se.
    pub z: Vec<f64>,
    /// `summary["p"]`: the chi-square (1 df) upper tail of z², two-sided.
    pub p_values: Vec<f64>,
    /// `concordance_index_`: Harrell's C of the fitted partial hazards against the follow-up.
    /// NaN where no pair of subjects is comparable (lifelines raises ZeroDivisionError).
    pub concordance_index: f64,
    /// `log_likelihood_`: the Efron partial log-likelihood at the fitted coefficients.
    pub log_likelihood: f64,
    /// `log_likelihood_ratio_test()`: (test_statistic, degrees_freedom, p_value) against the
    /// model without covariates.
    pub log_likelihood_ratio_test: (f64, usize, f64),
    /// Newton–Raphson iterations, as `fit(show_progress=True)` counts them.
    pub iterations: usize,
}

/// Fits a Cox model. `covariates` holds one column per covariate, each with one value per
/// subject; `names` names them; `alpha` sets the confidence level of `ci_lower`/`ci_upper`
/// (lifelines' default is 0.05).
pub fn cox_ph(
    durations: &[f64],
    events: &[bool],
    covariates: &[Vec<f64>],
    names: &[String],
    alpha: f64,
) -> Result<CoxFit> {
    check_follow_up(durations, events)?;
    let z_critical = normal_quantile_for(alpha)?;
    let n = durations.len();
    let d = covariates.len();
    if d == 0 {
        return Err(Error::Invalid("no covariates: the Cox model needs at least one".into()));
    }
    if names.len() != d {
        return Err(Error::Invalid(format!("{} covariate names for {d} covariates", names.len())));
    }
    for (column, name) in covariates.iter().zip(names) {
        if column.len() != n {
            return Err(Error::Invalid(format!(
                "covariate {name} has {} values for {n} subjects",
                column.len()
            )));
        }
        if let Some((i, v)) = column.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "covariate {name} is {v} for subject {i}: values must be finite"
            )));
        }
        // Checked on the values, not on a computed standard deviation, which rounding can
        // leave a hair above zero for a column of one repeated value.
        if column.iter().all(|v| *v == column[0]) {
            return Err(Error::Invalid(format!(
                "covariate {name} is constant ({}): it cannot be estimated",
                column[0]
            )));
        }
    }
    if !events.iter().any(|&e| e) {
        return Err(Error::NotEnoughData("no events: every subject is censored".into()));
    }

    // lifelines' normalisation: mean and sample standard deviation (pandas' ddof = 1).
    let means: Vec<f64> = covariates.iter().map(|c| c.iter().sum::<f64>() / n as f64).collect();
    let stds: Vec<f64> = covariates
        .iter()
        .zip(&means)
        .map(|(c, m)| (c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n as f64 - 1.0)).sqrt())
        .collect();

    // Subjects by duration, censorings before events at a tied time (lifelines sorts on
    // duration then event); the normalised covariates row-major in that order.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| durations[a].total_cmp(&durations[b]).then(events[a].cmp(&events[b])));
    let times: Vec<f64> = order.iter().map(|&i| durations[i]).collect();
    let died: Vec<bool> = order.iter().map(|&i| events[i]).collect();
    let mut x = Vec::with_capacity(n * d);
    for &i in &order {
        for j in 0..d {
            x.push((covariates[j][i] - means[j]) / stds[j]);
        }
    }
    let cohort = SortedCohort { x: &x, times: &times, died: &died, d };

    let fit = newton_raphson(&cohort)?;

    // Back to the covariates' units: beta / std, and the covariance -H⁻¹ / (std stdᵀ).
    let params: Vec<f64> = fit.beta.iter().zip(&stds).map(|(b, s)| b / s).collect();
    let information = fit.hessian.iter().map(|h| -h).collect::<Vec<f64>>();
    let covariance = cholesky(&information, d)
        .map(|factor| cholesky_inverse(&factor, d))
        .ok_or_else(|| singular_hessian(fit.iterations))?;
    let standard_errors: Vec<f64> =
        (0..d).map(|j| (covariance[j * d + j] / (stds[j] * stds[j])).sqrt()).collect();
    let hazard_ratios = params.iter().map(|p| p.exp()).collect();
    let ci_lower = params.iter().zip(&standard_errors).map(|(p, se)| p - z_critical * se).collect();
    let ci_upper = params.iter().zip(&standard_errors).map(|(p, se)| p + z_critical * se).collect();
    let z: Vec<f64> = params.iter().zip(&standard_errors).map(|(p, se)| p / se).collect();
    let p_values = z.iter().map(|z| chi_square_sf(z * z, 1)).collect();

    // lifelines scores concordance on predict_partial_hazard: exp((x - mean)·params), with the
    // predicted "time" its negation (a higher hazard predicts an earlier event).
    let predicted: Vec<f64> = (0..n)
        .map(|i| {
            let log_hazard: f64 = (0..d).map(|j| (covariates[j][i] - means[j]) * params[j]).sum();
            -log_hazard.exp()
        })
        .collect();
    let concordance_index = concordance(durations, &predicted, events);

    let ratio_statistic = 2.0 * fit.log_likelihood - 2.0 * fit.null_log_likelihood;
    Ok(CoxFit {
        names: names.to_vec(),
        params,
        standard_errors,
        hazard_ratios,
        ci_lower,
        ci_upper,
        z,
        p_values,
        concordance_index,
        log_likelihood: fit.log_likelihood,
        log_likelihood_ratio_test: (ratio_statistic, d, chi_square_sf(ratio_statistic, d)),
        iterations: fit.iterations,
    })
}

/// The cohort sorted by duration with normalised covariates, row-major n×d.
struct SortedCohort<'a> {
    x: &'a [f64],
    times: &'a [f64],
    died: &'a [bool],
    d: usize,
}

struct NewtonRaphsonFit {
    /// Coefficients on the normalised scale.
    beta: Vec<f64>,
    log_likelihood: f64,
    /// The log-likelihood at beta = 0, the first iterate (lifelines' `_ll_null_`).
    null_log_likelihood: f64,
    /// The Hessian at `beta`, row-major d×d.
    hessian: Vec<f64>,
    iterations: usize,
}

/// lifelines' `_newton_raphson_for_efron_model` without penalty: each iteration moves beta by
/// the step size times the previous Newton step, then evaluates the likelihood there; the
/// iterate that meets a stopping test is the one returned (its step is not taken).
fn newton_raphson(cohort: &SortedCohort) -> Result<NewtonRaphsonFit> {
    let d = cohort.d;
    let mut beta = vec![0.0; d];
    let mut delta = vec![0.0; d];
    let mut step_sizer = StepSizer::new(INITIAL_STEP_SIZE);
    let mut step_size = step_sizer.step_size;
    let mut previous_log_likelihood = 0.0;
    let mut null_log_likelihood = 0.0;
    let mut iteration = 0;
    loop {
        for (b, step) in beta.iter_mut().zip(&delta) {
            *b += step_size * step;
        }
        iteration += 1;
        let EfronValues { hessian, gradient, log_likelihood } = efron_values(cohort, &beta);
        if iteration == 1 {
            null_log_likelihood = log_likelihood;
        }
        if !log_likelihood.is_finite() || hessian.iter().chain(&gradient).any(|v| !v.is_finite()) {
            return Err(Error::NoConvergence(format!(
                "the Cox partial likelihood or its derivatives are not finite at iteration {iteration}: \
                 a covariate may separate events from censorings, or its values may be too large"
            )));
        }
        let information: Vec<f64> = hessian.iter().map(|h| -h).collect();
        let factor = cholesky(&information, d).ok_or_else(|| singular_hessian(iteration))?;
        delta = cholesky_solve(&factor, &gradient, d);
        if delta.iter().any(|v| v.is_nan()) {
            return Err(Error::NoConvergence(format!("the Newton step is NaN at iteration {iteration}")));
        }
        let norm_delta = delta.iter().map(|v| v * v).sum::<f64>().sqrt();
        let newton_decrement = gradient.iter().zip(&delta).map(|(g, s)| g * s).sum::<f64>() / 2.0;

        // lifelines' stopping tests, in its order: three ways to converge, then three to fail.
        let relative_change = (log_likelihood - previous_log_likelihood).abs() / -previous_log_likelihood;
        let converged = norm_delta < PRECISION
            || (previous_log_likelihood != 0.0 && relative_change < RELATIVE_PRECISION)
            || newton_decrement < PRECISION;
        if converged {
            return Ok(NewtonRaphsonFit {
                beta,
                log_likelihood,
                null_log_likelihood,
                hessian,
                iterations: iteration,
            });
        }
        if iteration >= MAX_STEPS {
            return Err(Error::NoConvergence(format!(
                "Newton-Raphson did not converge in {MAX_STEPS} iterations (last step norm {norm_delta:.3e})"
            )));
        }
        if step_size <= 0.00001 {
            return Err(Error::NoConvergence(format!(
                "Newton-Raphson's step size fell to {step_size:.1e} at iteration {iteration} without converging"
            )));
        }
        if log_likelihood.abs() < 0.0001 && norm_delta > 1.0 {
            return Err(Error::NoConvergence(format!(
                "the log-likelihood approaches 0 while the Newton step stays large ({norm_delta:.3}) at \
                 iteration {iteration}: a covariate may completely separate events from censorings"
            )));
        }
        previous_log_likelihood = log_likelihood;
        step_size = step_sizer.update(norm_delta);
    }
}

fn singular_hessian(iteration: usize) -> Error {
    Error::NoConvergence(format!(
        "the Hessian of the Cox partial likelihood is singular (not negative definite) at iteration \
         {iteration}: the covariates are probably collinear"
    ))
}

/// lifelines' `utils.StepSizer`: shrink the step after a large Newton step, grow it back while
/// the steps' norms keep falling.
struct StepSizer {
    initial_step_size: f64,
    step_size: f64,
    temper_back_up: bool,
    norms_of_deltas: Vec<f64>,
}

impl StepSizer {
    fn new(initial_step_size: f64) -> Self {
        StepSizer {
            initial_step_size,
            step_size: initial_step_size,
            temper_back_up: false,
            norms_of_deltas: vec![],
        }
    }

    /// Records one Newton step's norm and returns the next step size.
    fn update(&mut self, norm_of_delta: f64) -> f64 {
        const SCALE: f64 = 1.3;
        const LOOKBACK: usize = 3;
        self.norms_of_deltas.push(norm_of_delta);
        if self.temper_back_up {
            self.step_size = (self.step_size * SCALE).min(self.initial_step_size);
        }
        if norm_of_delta >= 15.0 {
            self.step_size *= 0.1;
            self.temper_back_up = true;
        } else if 15.0 > norm_of_delta && norm_of_delta > 5.0 {
            self.step_size *= 0.25;
            self.temper_back_up = true;
        }
        let count = self.norms_of_deltas.len();
        if count >= LOOKBACK {
            let recent = &self.norms_of_deltas[count - LOOKBACK..];
            if recent.windows(2).all(|w| w[1] - w[0] < 0.0) {
                self.step_size = (self.step_size * SCALE).min(1.0);
            } else {
                self.step_size *= 0.98;
            }
        }
        self.step_size
    }
}

struct EfronValues {
    /// Row-major d×d.
    hessian: Vec<f64>,
    gradient: Vec<f64>,
    log_likelihood: f64,
}

/// Efron's partial log-likelihood, its gradient and Hessian at `beta`, in one pass from the
/// latest time back (lifelines' `_get_efron_values_single`): the risk set's sums of φ, φx and
/// φxxᵀ (φ = exp(x·β)) grow as earlier subjects join, so each distinct event time costs only
/// its own subjects, O(n·d²) in all. At a time with m tied events the l-th (l = 0..m) share of
/// the tied subjects' φ-sums is taken out of the risk set's.
fn efron_values(cohort: &SortedCohort, beta: &[f64]) -> EfronValues {
    let d = cohort.d;
    let n = cohort.times.len();
    let mut hessian = vec![0.0; d * d];
    let mut gradient = vec![0.0; d];
    let mut log_likelihood = 0.0;

    let mut risk_phi = 0.0;
    let mut risk_phi_x = vec![0.0; d];
    let mut risk_phi_x_x = vec![0.0; d * d];
    let mut tie_phi;
    let mut tie_phi_x = vec![0.0; d];
    let mut tie_phi_x_x = vec![0.0; d * d];
    let mut x_death_sum = vec![0.0; d];
    let mut numerator = vec![0.0; d];
    let mut summand_sum = vec![0.0; d];
    let mut a2 = vec![0.0; d * d];

    let mut end = n;
    while end > 0 {
        let time = cohort.times[end - 1];
        let mut start = end - 1;
        while start > 0 && cohort.times[start - 1] == time {
            start -= 1;
        }
        tie_phi = 0.0;
        tie_phi_x.fill(0.0);
        tie_phi_x_x.fill(0.0);
        x_death_sum.fill(0.0);
        let mut tied_deaths = 0usize;
        for i in (start..end).rev() {
            let xi = &cohort.x[i * d..(i + 1) * d];
            let phi = xi.iter().zip(beta).map(|(x, b)| x * b).sum::<f64>().exp();
            risk_phi += phi;
            for a in 0..d {
                risk_phi_x[a] += phi * xi[a];
                for b in a..d {
                    risk_phi_x_x[a * d + b] += xi[a] * phi * xi[b];
                }
            }
            if cohort.died[i] {
                tied_deaths += 1;
                tie_phi += phi;
                for a in 0..d {
                    x_death_sum[a] += xi[a];
                    tie_phi_x[a] += phi * xi[a];
                    for b in a..d {
                        tie_phi_x_x[a * d + b] += xi[a] * phi * xi[b];
                    }
                }
            }
        }
        end = start;
        if tied_deaths == 0 {
            continue;
        }

        let m = tied_deaths as f64;
        let mut denominator_sum = 0.0;
        let mut share_denominator_sum = 0.0;
        let mut log_denominator_sum = 0.0;
        summand_sum.fill(0.0);
        a2.fill(0.0);
        for l in 0..tied_deaths {
            let share = l as f64 / m;
            let denominator = 1.0 / (risk_phi - share * tie_phi);
            denominator_sum += denominator;
            share_denominator_sum += share * denominator;
            log_denominator_sum += denominator.ln();
            for a in 0..d {
                numerator[a] = (risk_phi_x[a] - share * tie_phi_x[a]) * denominator;
                summand_sum[a] += numerator[a];
            }
            for a in 0..d {
                for b in a..d {
                    a2[a * d + b] += numerator[a] * numerator[b];
                }
            }
        }
        for a in 0..d {
            gradient[a] += x_death_sum[a] - summand_sum[a];
            log_likelihood += x_death_sum[a] * beta[a];
            for b in a..d {
                let a1 = risk_phi_x_x[a * d + b] * denominator_sum
                    - tie_phi_x_x[a * d + b] * share_denominator_sum;
                hessian[a * d + b] += a2[a * d + b] - a1;
            }
        }
        log_likelihood += log_denominator_sum;
    }
    // Only the upper triangle was summed; the Hessian is symmetric.
    for a in 0..d {
        for b in 0..a {
            hessian[a * d + b] = hessian[b * d + a];
        }
    }
    EfronValues { hessian, gradient, log_likelihood }
}

/// The lower Cholesky factor of a symmetric positive definite d×d matrix (row-major), or
/// `None` when it is not positive definite. A pivot that rounding alone keeps above zero
/// (1e-12 of the largest diagonal entry, i.e. covariates correlated to within about 1e-12)
/// counts as singular: the fit there would be noise.
fn cholesky(matrix: &[f64], d: usize) -> Option<Vec<f64>> {
    let scale = (0..d).map(|i| matrix[i * d + i].abs()).fold(0.0, f64::max);
    let mut factor = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut sum = matrix[i * d + j];
            for k in 0..j {
                sum -= factor[i * d + k] * factor[j * d + k];
            }
            if i == j {
                if sum.is_nan() || sum <= 1e-12 * scale {
                    return None;
                }
                factor[i * d + i] = sum.sqrt();
            } else {
                factor[i * d + j] = sum / factor[j * d + j];
            }
        }
    }
    Some(factor)
}

/// Solves L Lᵀ x = b.
fn cholesky_solve(factor: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut y = vec![0.0; d];
    for i in 0..d {
        let sum: f64 = (0..i).map(|k| factor[i * d + k] * y[k]).sum();
        y[i] = (b[i] - sum) / factor[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let sum: f64 = (i + 1..d).map(|k| factor[k * d + i] * x[k]).sum();
        x[i] = (y[i] - sum) / factor[i * d + i];
    }
    x
}

/// (L Lᵀ)⁻¹, row-major, one unit column at a time.
fn cholesky_inverse(factor: &[f64], d: usize) -> Vec<f64> {
    let mut inverse = vec![0.0; d * d];
    let mut unit = vec![0.0; d];
    for j in 0..d {
        unit.fill(0.0);
        unit[j] = 1.0;
        for (i, v) in cholesky_solve(factor, &unit, d).into_iter().enumerate() {
            inverse[i * d + j] = v;
        }
    }
    inverse
}

/// lifelines' `_concordance_summary_statistics` and `_concordance_ratio`: Harrell's C in
/// O(n log n). Subjects are taken in order of exit time, those with the event at a time before
/// those censored at it; each is compared with every earlier event (its predicted time should
/// be larger: counted correct when larger, half when equal). Events tied in time are not
/// compared with each other, and censored subjects never join the pool of earlier events.
fn concordance(times: &[f64], predicted: &[f64], events: &[bool]) -> f64 {
    let mut died: Vec<usize> = (0..times.len()).filter(|&i| events[i]).collect();
    let mut censored: Vec<usize> = (0..times.len()).filter(|&i| !events[i]).collect();
    if died.is_empty() {
        return f64::NAN;
    }
    died.sort_unstable_by(|&a, &b| times[a].total_cmp(&times[b]));
    censored.sort_unstable_by(|&a, &b| times[a].total_cmp(&times[b]));

    let mut pool = RankPool::new(died.iter().map(|&i| predicted[i]).collect());
    let (mut pairs, mut correct, mut tied) = (0u64, 0u64, 0u64);
    let (mut di, mut ci) = (0, 0);
    loop {
        let more_died = di < died.len();
        let more_censored = ci < censored.len();
        let take_censored = more_censored && (!more_died || times[died[di]] > times[censored[ci]]);
        let (batch, next) = if take_censored {
            let next = batch_end(&censored, ci, times);
            (&censored[ci..next], next)
        } else if more_died {
            let next = batch_end(&died, di, times);
            (&died[di..next], next)
        } else {
            break;
        };
        pairs += pool.len * batch.len() as u64;
        for &i in batch {
            let (below, equal) = pool.rank(predicted[i]);
            correct += below;
            tied += equal;
        }
        if take_censored {
            ci = next;
        } else {
            for &i in batch {
                pool.insert(predicted[i]);
            }
            di = next;
        }
    }
    if pairs == 0 {
        return f64::NAN;
    }
    (correct as f64 + tied as f64 / 2.0) / pairs as f64
}

/// The end of the run of subjects (in `sorted`, from `first`) sharing `sorted[first]`'s time.
fn batch_end(sorted: &[usize], first: usize, times: &[f64]) -> usize {
    let time = times[sorted[first]];
    first + sorted[first..].iter().take_while(|&&i| times[i] == time).count()
}

/// A multiset of predicted times drawn from a set known up front: counts of values below and
/// equal to a query, through a Fenwick tree over the distinct values.
struct RankPool {
    values: Vec<f64>,
    tree: Vec<u64>,
    counts: Vec<u64>,
    len: u64,
}

impl RankPool {
    fn new(mut values: Vec<f64>) -> Self {
        values.sort_unstable_by(f64::total_cmp);
        values.dedup();
        let size = values.len();
        RankPool { values, tree: vec![0; size + 1], counts: vec![0; size], len: 0 }
    }

    fn insert(&mut self, value: f64) {
        let position = self.values.partition_point(|v| *v < value);
        // Only values the pool was built from are inserted.
        if position < self.values.len() {
            self.counts[position] += 1;
            self.len += 1;
            let mut i = position + 1;
            while i < self.tree.len() {
                self.tree[i] += 1;
                i += i & i.wrapping_neg();
            }
        }
    }

    /// (how many in the pool are below `value`, how many equal it).
    fn rank(&self, value: f64) -> (u64, u64) {
        let position = self.values.partition_point(|v| *v < value);
        let mut below = 0;
        let mut i = position;
        while i > 0 {
            below += self.tree[i];
            i -= i & i.wrapping_neg();
        }
        let equal = match self.values.get(position) {
            Some(v) if *v == value => self.counts[position],
            _ => 0,
        };
        (below, equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rejects_a_constant_covariate() {
        let err = cox_ph(
            &[1.0, 2.0, 3.0, 4.0],
            &[true, false, true, true],
            &[vec![0.1, 0.1, 0.1, 0.1], vec![1.0, 2.0, 0.0, 3.0]],
            &names(&["dose", "age"]),
            0.05,
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::Invalid(ref m) if m.contains("dose") && m.contains("constant")),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_shapes_and_values() {
        let d = [1.0, 2.0, 3.0];
        let e = [true, false, true];
        let err = cox_ph(&d, &e, &[vec![1.0, 2.0]], &names(&["age"]), 0.05).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("age has 2 values")), "{err}");
        let err = cox_ph(&d, &e, &[vec![1.0, 2.0, 3.0]], &names(&["age", "sex"]), 0.05).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("names")), "{err}");
        let err = cox_ph(&d, &e, &[], &[], 0.05).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("no covariates")), "{err}");
        let err = cox_ph(&d, &e, &[vec![1.0, f64::NAN, 3.0]], &names(&["age"]), 0.05).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("age is NaN for subject 1")), "{err}");
        let err = cox_ph(&[1.0, -1.0, 3.0], &e, &[vec![1.0, 2.0, 3.0]], &names(&["age"]), 0.05).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("negative")), "{err}");
        let err = cox_ph(&d, &[true], &[vec![1.0, 2.0, 3.0]], &names(&["age"]), 0.05).unwrap_err();
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("differ in length")), "{err}");
    }

    #[test]
    fn rejects_a_cohort_without_events() {
        let err = cox_ph(&[1.0, 2.0, 3.0], &[false; 3], &[vec![1.0, 2.0, 3.0]], &names(&["age"]), 0.05)
            .unwrap_err();
        assert!(matches!(err, Error::NotEnoughData(ref m) if m.contains("no events")), "{err}");
    }

    #[test]
    fn rejects_collinear_covariates() {
        let age = vec![50.0, 61.0, 47.0, 70.0, 55.0, 66.0, 43.0, 58.0];
        let age_in_months: Vec<f64> = age.iter().map(|a| a * 12.0).collect();
        let err = cox_ph(
            &[5.0, 3.0, 9.0, 2.0, 7.0, 4.0, 8.0, 6.0],
            &[true, true, false, true, true, false, true, true],
            &[age, age_in_months],
            &names(&["age", "age_months"]),
            0.05,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NoConvergence(ref m) if m.contains("singular")), "{err}");
    }

    #[test]
    fn concordance_counts_like_the_naive_definition() {
        // Every admissible pair by hand: (time, event, predicted time).
        let times = [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0];
        let events = [true, true, false, true, false, true, true];
        let predicted = [0.5, 3.0, 1.0, 3.0, 2.0, 2.0, 9.0];
        let (mut pairs, mut score) = (0.0, 0.0);
        for a in 0..times.len() {
            for b in 0..times.len() {
                // a leaves first with an event; b outlives it (or is censored at the same time).
                let admissible = events[a] && (times[a] < times[b] || (times[a] == times[b] && !events[b]));
                if admissible {
                    pairs += 1.0;
                    if predicted[a] < predicted[b] {
                        score += 1.0;
                    } else if predicted[a] == predicted[b] {
                        score += 0.5;
                    }
                }
            }
        }
        let c = concordance(&times, &predicted, &events);
        assert!((c - score / pairs).abs() < 1e-15, "{c} vs {}", score / pairs);
    }

    #[test]
    fn step_sizer_follows_lifelines() {
        let mut sizer = StepSizer::new(0.95);
        // A large step cuts it to a tenth; later ones temper it back up.
        assert!((sizer.update(20.0) - 0.095).abs() < 1e-15);
        assert!((sizer.update(3.0) - 0.095 * 1.3).abs() < 1e-15);
        // Three falling norms: grows by 1.3 after the temper.
        assert!((sizer.update(1.0) - 0.095 * 1.3 * 1.3 * 1.3).abs() < 1e-15);
    }
}
