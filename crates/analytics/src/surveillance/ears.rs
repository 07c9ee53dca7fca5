//! EARS C1, C2 and C3 (Hutwagner et al. 2003), as R's `surveillance::earsC` computes them.

use super::{Judgement, check_alpha, check_counts, qnorm, r_max, resolve_range};
use crate::{Error, Result};

/// Which EARS statistic (R's `control$method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarsMethod {
    /// Reference periods `t-B .. t-1` (no guard band).
    C1,
    /// Reference periods `t-B-2 .. t-3` (a two-period guard band).
    C2,
    /// C2's reference periods, with the exceedances of the two previous periods subtracted from
    /// the threshold.
    C3,
}

/// The control of [`ears`], mirroring `earsC(sts, control = list(...))`.
#[derive(Debug, Clone, PartialEq)]
pub struct EarsControl {
    /// `control$method`.
    pub method: EarsMethod,
    /// `control$baseline`: the number of reference periods `B` (R's default 7; at least 3).
    pub baseline: usize,
    /// `control$alpha`; `None` takes R's default: 0.001 for C1 and C2, 0.025 for C3.
    pub alpha: Option<f64>,
    /// `control$minSigma`: a floor on the reference standard deviation (R's default 0), which
    /// keeps the threshold above the mean on a flat baseline.
    pub min_sigma: f64,
    /// `control$range` as a 1-based inclusive span; `None` takes R's default, from the first
    /// period with a full baseline (`B+1` for C1, `B+3` for C2, `B+5` for C3) to the end.
    pub range: Option<(usize, usize)>,
}

impl Default for EarsControl {
    fn default() -> Self {
        EarsControl { method: EarsMethod::C1, baseline: 7, alpha: None, min_sigma: 0.0, range: None }
    }
}

/// EARS aberration detection, mirroring R's `earsC(sts, control)` (surveillance 1.20.3).
///
/// With `z = qnorm(1 - alpha)`, `mean` and `sd` (the sample standard deviation, `n - 1`) of the
/// reference periods and `S = max(sd, minSigma)`:
///
/// - C1: reference `Y(t-B) .. Y(t-1)`, `U(t) = mean + z * S`.
/// - C2: reference `Y(t-B-2) .. Y(t-3)`, `U(t) = mean + z * S`.
/// - C3: with `C2(i) = (Y(i) - mean2(i)) / S2(i)` over C2's reference,
///   `U(t) = max(0, Y(t) + S2(t) * (z - max(0, C2(t-2) - 1) - max(0, C2(t-1) - 1)))`.
///   This follows R's code, not its Rd page: the Rd gives `mean2(t)` where the code adds
///   `Y(t)`, so a C3 alarm (with `S2(t) > 0`) fires exactly when the two lagged exceedances
///   together pass `z`.
///
/// An alarm is `Y(t) > U(t)`. With `minSigma = 0` a flat C3 baseline makes R's bound `NaN`
/// (0/0); it is reported as `NaN` with no alarm (R: `NA`).
///
/// Errors: a negative or non-finite count, `baseline < 3`, `minSigma < 0` or non-finite,
/// `alpha` outside (0, 1), or a range outside the series give [`Error::Invalid`]; a range that
/// starts before a full baseline (R's "The vector of observed is too short!") gives
/// [`Error::NotEnoughData`].
pub fn ears(counts: &[f64], control: &EarsControl) -> Result<Vec<Judgement>> {
    check_counts(counts)?;
    let baseline = control.baseline;
    if baseline < 3 {
        return Err(Error::Invalid(format!("baseline is {baseline}: the minimum baseline is 3 periods")));
    }
    if !(control.min_sigma >= 0.0 && control.min_sigma.is_finite()) {
        return Err(Error::Invalid(format!(
            "minSigma is {}: it must be a finite number >= 0",
            control.min_sigma
        )));
    }
    let alpha = control.alpha.unwrap_or(match control.method {
        EarsMethod::C1 | EarsMethod::C2 => 0.001,
        EarsMethod::C3 => 0.025,
    });
    check_alpha(alpha)?;
    // The furthest period back each statistic reads.
    let max_lag = match control.method {
        EarsMethod::C1 => baseline,
        EarsMethod::C2 => baseline + 2,
        EarsMethod::C3 => baseline + 4,
    };
    let n = counts.len();
    let (start, end) = resolve_range(control.range, n, max_lag + 1)?;
    if start <= max_lag {
        return Err(Error::NotEnoughData(format!(
            "range starts at period {start} but EARS {:?} with baseline {baseline} needs {max_lag} earlier periods",
            control.method
        )));
    }
    let z = qnorm(1.0 - alpha);
    let stats = ReferenceStats::new(counts, baseline);
    let min_sigma = control.min_sigma;
    let mut out = Vec::with_capacity(end - start + 1);
    match control.method {
        EarsMethod::C1 | EarsMethod::C2 => {
            let lag = if control.method == EarsMethod::C1 { 1 } else { 3 };
            for t in start..=end {
                // Reference periods t-lag-B+1 ..= t-lag (1-based), i.e. 0-based window ending
                // at index t-lag-1.
                let (mean, sd) = stats.at(t - lag - 1);
                let upper = mean + z * r_max(sd, min_sigma);
                let y = counts[t - 1];
                out.push(Judgement::plain(t, y, upper, y > upper));
            }
        }
        EarsMethod::C3 => {
            // C2(i) for period i (1-based): reference ends at period i-3.
            let c2 = |i: usize| {
                let (mean, sd) = stats.at(i - 4);
                (counts[i - 1] - mean) / r_max(sd, min_sigma)
            };
            for t in start..=end {
                let lag2 = r_max(0.0, c2(t - 2) - 1.0);
                let lag1 = r_max(0.0, c2(t - 1) - 1.0);
                let (_, sd) = stats.at(t - 4);
                let y = counts[t - 1];
                let upper = r_max(0.0, y + r_max(sd, min_sigma) * (z - (lag2 + lag1)));
                out.push(Judgement::plain(t, y, upper, y > upper));
            }
        }
    }
    Ok(out)
}

/// Mean and sample standard deviation of every window of `baseline` consecutive counts.
///
/// Whole-number counts (the usual case) use running sums: the sums of counts and of squares
/// stay exact in `f64`, so `(n * sum(y^2) - sum(y)^2)` is exact and the standard deviation is
/// as accurate as R's two-pass one. Other counts fall back to a two-pass pass per window.
struct ReferenceStats<'a> {
    counts: &'a [f64],
    baseline: usize,
    /// Prefix sums (exact for whole counts), length `n + 1`; empty on the two-pass path.
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

/// The largest count for which `baseline * sum(y^2)` stays below 2^53 for any baseline up to
/// the series length (checked per series below).
fn exact_sums_possible(counts: &[f64]) -> bool {
    let n = counts.len() as f64;
    let max = counts.iter().fold(0.0_f64, |m, &c| m.max(c));
    counts.iter().all(|c| c.fract() == 0.0) && n * n * max * max < 9.0e15
}

impl<'a> ReferenceStats<'a> {
    fn new(counts: &'a [f64], baseline: usize) -> Self {
        let (mut sum, mut sum_sq) = (Vec::new(), Vec::new());
        if exact_sums_possible(counts) {
            sum.reserve(counts.len() + 1);
            sum_sq.reserve(counts.len() + 1);
            let (mut s, mut ss) = (0.0, 0.0);
            sum.push(s);
            sum_sq.push(ss);
            for &c in counts {
                s += c;
                ss += c * c;
                sum.push(s);
                sum_sq.push(ss);
            }
        }
        ReferenceStats { counts, baseline, sum, sum_sq }
    }

    /// Mean and sd of the `baseline` counts ending at 0-based index `last`.
    fn at(&self, last: usize) -> (f64, f64) {
        let b = self.baseline;
        let first = last + 1 - b;
        let nb = b as f64;
        if !self.sum.is_empty() {
            let s = self.sum[last + 1] - self.sum[first];
            let ss = self.sum_sq[last + 1] - self.sum_sq[first];
            let mean = s / nb;
            let var = (nb * ss - s * s) / (nb * (nb - 1.0));
            return (mean, var.max(0.0).sqrt());
        }
        let window = &self.counts[first..=last];
        let mean = window.iter().sum::<f64>() / nb;
        let ssd: f64 = window.iter().map(|y| (y - mean) * (y - mean)).sum();
        (mean, (ssd / (nb - 1.0)).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(method: EarsMethod) -> EarsControl {
        EarsControl { method, ..EarsControl::default() }
    }

    #[test]
    fn bad_controls_are_errors() {
        let y = vec![1.0; 30];
        let bad_baseline = EarsControl { baseline: 0, ..control(EarsMethod::C1) };
        assert!(matches!(ears(&y, &bad_baseline), Err(Error::Invalid(m)) if m.contains("baseline")));
        let bad_baseline = EarsControl { baseline: 2, ..control(EarsMethod::C1) };
        assert!(matches!(ears(&y, &bad_baseline), Err(Error::Invalid(m)) if m.contains("baseline")));
        for alpha in [0.0, 1.0, -0.1, f64::NAN] {
            let c = EarsControl { alpha: Some(alpha), ..control(EarsMethod::C2) };
            assert!(matches!(ears(&y, &c), Err(Error::Invalid(m)) if m.contains("alpha")));
        }
        let c = EarsControl { min_sigma: -1.0, ..control(EarsMethod::C1) };
        assert!(matches!(ears(&y, &c), Err(Error::Invalid(m)) if m.contains("minSigma")));
        let c = EarsControl { range: Some((5, 30)), ..control(EarsMethod::C1) };
        assert!(matches!(ears(&y, &c), Err(Error::NotEnoughData(m)) if m.contains("range")));
        let c = EarsControl { range: Some((20, 31)), ..control(EarsMethod::C3) };
        assert!(matches!(ears(&y, &c), Err(Error::Invalid(m)) if m.contains("range")));
        assert!(matches!(ears(&y[..9], &control(EarsMethod::C2)), Err(Error::NotEnoughData(_))));
        assert!(matches!(ears(&[1.0, f64::NAN, 2.0], &control(EarsMethod::C1)), Err(Error::Invalid(_))));
        assert!(matches!(ears(&[], &control(EarsMethod::C1)), Err(Error::NotEnoughData(_))));
    }

    #[test]
    fn default_ranges_follow_r() {
        let y: Vec<f64> = (0..20).map(|i| (i % 5) as f64).collect();
        assert_eq!(ears(&y, &control(EarsMethod::C1)).unwrap()[0].t, 8);
        assert_eq!(ears(&y, &control(EarsMethod::C2)).unwrap()[0].t, 10);
        assert_eq!(ears(&y, &control(EarsMethod::C3)).unwrap()[0].t, 12);
    }

    #[test]
    fn running_sums_match_two_pass() {
        let whole: Vec<f64> = (0..40).map(|i| ((i * 7919) % 13) as f64).collect();
        let fractional: Vec<f64> = whole.iter().map(|y| y + 1e-9).collect();
        let exact = ReferenceStats::new(&whole, 7);
        let two_pass = ReferenceStats::new(&fractional, 7);
        assert!(two_pass.sum.is_empty());
        for last in 6..40 {
            let (m1, s1) = exact.at(last);
            let (m2, s2) = two_pass.at(last);
            assert!((m1 + 1e-9 - m2).abs() < 1e-12 && (s1 - s2).abs() < 1e-9, "{last}");
        }
    }

    #[test]
    fn flat_c3_baseline_gives_nan_without_alarm() {
        let y = vec![2.0; 20];
        let out = ears(&y, &control(EarsMethod::C3)).unwrap();
        assert!(out.iter().all(|j| j.upperbound.is_nan() && !j.alarm));
        let c = EarsControl { min_sigma: 0.5, ..control(EarsMethod::C3) };
        assert!(ears(&y, &c).unwrap().iter().all(|j| j.upperbound.is_finite()));
    }
}
