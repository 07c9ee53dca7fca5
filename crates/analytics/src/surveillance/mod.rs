//! Aberration detection over one count series: EARS C1/C2/C3, CUSUM and the flexible
//! Farrington method, computed as R's `surveillance` package (1.20.3) computes them. The oracle
//! test, `tests/surveillance_oracle.rs`, holds every upper bound and alarm to R's output: within
//! 1e-9 for EARS and CUSUM, 1e-6 (relative or absolute) for Farrington.
//!
//! A series is a slice of counts indexed by period (period 1 is `counts[0]`), as R's `sts` with
//! `epochAsDate = FALSE`: weekly data with `frequency = 52` has its reference weeks at
//! `t - j * 52`. Counts must be finite and not negative; they need not be whole numbers.
//!
//! - [`ears`] mirrors `earsC(sts, control)`.
//! - [`cusum`] mirrors `algo.cusum(disProg, control)` (the engine of `cusum(sts, control)`).
//! - [`farrington_flexible`] mirrors `farringtonFlexible(sts, control)`, whose quasi-Poisson
//!   fits are R's `glm.fit` iteration for iteration (see `glm.rs`).
//!
//! Where R leaves a value `NA` (an EARS C3 bound over a flat baseline with `minSigma = 0`, a
//! Farrington bound where the `limit54` rule holds back, a Farrington period whose GLM does
//! not converge) the [`Judgement`] carries `f64::NAN` as its upper bound and `false` as its
//! alarm (R's alarm is `NA` there or `FALSE`).

mod cusum;
mod ears;
mod farrington;
mod glm;

pub use cusum::{CusumControl, CusumTrans, cusum};
pub use ears::{EarsControl, EarsMethod, ears};
pub use farrington::{FarringtonControl, PowerTrans, ThresholdMethod, farrington_flexible};

use crate::{Error, Result};

/// One judged period of a series.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Judgement {
    /// The period, 1-based as R's `range` (period 1 is `counts[0]`).
    pub t: usize,
    /// The count observed in the period.
    pub observed: f64,
    /// The threshold the count is judged against; `NaN` where R reports `NA`.
    pub upperbound: f64,
    /// Whether the period raises an alarm (`false` where R reports `NA`).
    pub alarm: bool,
    /// Farrington: the expected count for the period (R's `control$expected`: the predicted
    /// mean `mu0`, or `exp` of the linear predictor for `nbPlugin`/`muan`); `None` where R
    /// reports `NA` (the `limit54` rule held back, or no model) and for the other methods.
    pub expected: Option<f64>,
    /// Farrington: the exceedance score `(y - fit) / (U - fit)` (R's `control$score`); an alarm
    /// needs it above 1. `None` for the other methods and where R reports `NA`.
    pub score: Option<f64>,
    /// CUSUM: the statistic `C_t` after this period (R's `cusum`). `None` for the other methods.
    pub cusum: Option<f64>,
    /// Farrington: whether the time trend was kept in the model (R's `control$trend`); `None`
    /// for the other methods and where no model could be fitted.
    pub trend: Option<bool>,
}

impl Judgement {
    fn plain(t: usize, observed: f64, upperbound: f64, alarm: bool) -> Self {
        Judgement { t, observed, upperbound, alarm, expected: None, score: None, cusum: None, trend: None }
    }
}

/// Checks a count series: non-empty, every count finite and not negative.
fn check_counts(counts: &[f64]) -> Result<()> {
    if counts.is_empty() {
        return Err(Error::NotEnoughData("the count series is empty".into()));
    }
    if let Some((i, c)) = counts.iter().enumerate().find(|(_, c)| !c.is_finite()) {
        return Err(Error::Invalid(format!(
            "count at period {} is {c}: counts must be finite numbers",
            i + 1
        )));
    }
    if let Some((i, c)) = counts.iter().enumerate().find(|(_, c)| **c < 0.0) {
        return Err(Error::Invalid(format!(
            "count at period {} is negative ({c}): counts must be >= 0",
            i + 1
        )));
    }
    Ok(())
}

/// Resolves a 1-based inclusive `range` against a series of `n` periods: `None` takes
/// `default_start..=n`. Returns the range, checked to lie inside the series.
fn resolve_range(range: Option<(usize, usize)>, n: usize, default_start: usize) -> Result<(usize, usize)> {
    let (start, end) = match range {
        Some(r) => r,
        None => {
            if default_start > n {
                return Err(Error::NotEnoughData(format!(
                    "the series has {n} periods but the default range starts at period {default_start}"
                )));
            }
            (default_start, n)
        }
    };
    if start == 0 {
        return Err(Error::Invalid("range starts at 0: periods are 1-based".into()));
    }
    if start > end {
        return Err(Error::Invalid(format!("range {start}..={end} is empty (start after end)")));
    }
    if end > n {
        return Err(Error::Invalid(format!(
            "range ends at period {end} but the series has only {n} periods"
        )));
    }
    Ok((start, end))
}

/// Checks a one-sided level `alpha` in (0, 1), naming the parameter.
fn check_alpha(alpha: f64) -> Result<()> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::Invalid(format!("alpha is {alpha}: it must lie strictly between 0 and 1")));
    }
    Ok(())
}

/// The standard normal quantile `qnorm(p)`.
fn qnorm(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(p)
}

/// R's `pmax(a, b)` / `max(a, b)`: `NaN` if either is `NaN` (Rust's `f64::max` drops it).
fn r_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_checked() {
        assert!(matches!(check_counts(&[]), Err(Error::NotEnoughData(_))));
        assert!(matches!(check_counts(&[1.0, f64::NAN]), Err(Error::Invalid(m)) if m.contains("period 2")));
        assert!(matches!(check_counts(&[1.0, -1.0]), Err(Error::Invalid(m)) if m.contains("negative")));
        assert!(check_counts(&[0.0, 2.5]).is_ok());
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(resolve_range(None, 10, 3).unwrap(), (3, 10));
        assert!(matches!(resolve_range(None, 2, 3), Err(Error::NotEnoughData(_))));
        assert!(matches!(resolve_range(Some((0, 3)), 10, 3), Err(Error::Invalid(m)) if m.contains("range")));
        assert!(matches!(resolve_range(Some((5, 4)), 10, 3), Err(Error::Invalid(m)) if m.contains("range")));
        assert!(matches!(resolve_range(Some((5, 11)), 10, 3), Err(Error::Invalid(m)) if m.contains("range")));
    }

    /// The throughput target: each method over 10,000 weekly series of ten years. Run with
    /// `cargo test --release -p chartroom-analytics --lib -- --ignored --nocapture surveillance_timing`.
    #[test]
    #[ignore = "timing; run in release mode"]
    fn surveillance_timing() {
        // A deterministic LCG and inversion Poisson sampling: seasonal counts around 5.
        let mut state = 12345_u64;
        let mut uniform = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        // SURVEILLANCE_TIMING_SERIES and SURVEILLANCE_TIMING_ONLY narrow a profiling run.
        let count =
            std::env::var("SURVEILLANCE_TIMING_SERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
        let only = std::env::var("SURVEILLANCE_TIMING_ONLY").unwrap_or_default();
        let series: Vec<Vec<f64>> = (0..count)
            .map(|s| {
                (1..=520)
                    .map(|t| {
                        let lambda = (1.0 + (s % 10) as f64)
                            * (0.6 * (2.0 * std::f64::consts::PI * f64::from(t) / 52.0).sin()).exp();
                        let u = uniform();
                        let (mut x, mut p) = (0.0, (-lambda).exp());
                        let mut cdf = p;
                        while u > cdf {
                            x += 1.0;
                            p *= lambda / x;
                            cdf += p;
                        }
                        x
                    })
                    .collect()
            })
            .collect();
        let time = |name: &str, f: &dyn Fn(&[f64]) -> usize| {
            if !name.contains(only.as_str()) {
                return;
            }
            let started = std::time::Instant::now();
            let judged: usize = series.iter().map(|y| f(y)).sum();
            println!("{name:<34} {judged:>9} periods judged in {:>7.3} s", started.elapsed().as_secs_f64());
        };
        for method in [EarsMethod::C1, EarsMethod::C2, EarsMethod::C3] {
            let c = EarsControl { method, ..EarsControl::default() };
            time(&format!("EARS {method:?}"), &|y| ears(y, &c).map(|v| v.len()).unwrap_or(0));
        }
        for trans in [CusumTrans::Standard, CusumTrans::Rossi] {
            let c = CusumControl { range: Some((105, 520)), trans, ..CusumControl::default() };
            time(&format!("CUSUM {trans:?}"), &|y| cusum(y, &c).map(|v| v.len()).unwrap_or(0));
        }
        let controls = [
            ("Farrington R defaults (delta)", FarringtonControl::default()),
            ("Farrington 1996 (delta)", FarringtonControl::farrington1996()),
            ("Noufaily 2012 (delta)", FarringtonControl::noufaily2012()),
            (
                "Noufaily 2012 (nbPlugin)",
                FarringtonControl {
                    threshold_method: ThresholdMethod::NbPlugin,
                    ..FarringtonControl::noufaily2012()
                },
            ),
        ];
        for (name, c) in controls {
            time(name, &|y| farrington_flexible(y, &c).map(|v| v.len()).unwrap_or(0));
        }
    }

    #[test]
    fn r_max_keeps_nan() {
        assert!(r_max(0.0, f64::NAN).is_nan());
        assert_eq!(r_max(0.0, -1.0), 0.0);
    }
}
