//! The Poisson CUSUM of Rossi et al. (1999), as R's `surveillance::algo.cusum` computes it.

use super::{Judgement, check_counts, resolve_range};
use crate::{Error, Result};

/// How each count is standardised before it enters the sum (R's `control$trans`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CusumTrans {
    /// `"standard"`: `z = (x - m) / sqrt(m)`.
    Standard,
    /// `"rossi"`: `z = (x - 3m + 2 sqrt(x m)) / (2 sqrt(m))`.
    Rossi,
    /// `"anscombe"`: `z = 3/2 (x^(2/3) - m^(2/3)) / m^(1/6)`.
    Anscombe,
    /// `"none"`: `z = x` (the upper bound is then `h - C_t`, as in R).
    None,
}

/// The control of [`cusum`], mirroring `algo.cusum(disProg, control = list(...))`.
#[derive(Debug, Clone, PartialEq)]
pub struct CusumControl {
    /// `control$range` as a 1-based inclusive span. R has no default (the argument must be
    /// given); `None` here is accepted only with an explicit `m`, and then judges every period.
    pub range: Option<(usize, usize)>,
    /// `control$k`, the reference value (R's default 1.04).
    pub k: f64,
    /// `control$h`, the decision interval (R's default 2.26).
    pub h: f64,
    /// `control$m`, the in-control mean; `None` takes R's default, the mean of the periods
    /// before the range (`mean(observed[1:(range[1]-1)])`).
    pub m: Option<f64>,
    /// `control$trans`.
    pub trans: CusumTrans,
    /// Not in R's `algo.cusum`: restart the sum at 0 after each alarm. `false` is R's behaviour.
    pub reset: bool,
}

impl Default for CusumControl {
    fn default() -> Self {
        CusumControl { range: None, k: 1.04, h: 2.26, m: None, trans: CusumTrans::Standard, reset: false }
    }
}

/// CUSUM aberration detection, mirroring R's `algo.cusum(disProg, control)` (surveillance
/// 1.20.3; `cusum(sts, control)` wraps it).
///
/// `C_0 = 0`, `C_t = max(0, C_{t-1} + z_t - k)`, alarm when `C_t >= h`. The upper bound is the
/// count that would just raise an alarm given `C_{t-1}`, back-transformed as R does it:
/// standard `ceiling(sqrt(m) (h + k - C_{t-1}) + m)`; rossi
/// `2h sqrt(m) + 2k sqrt(m) - 2C_{t-1} sqrt(m) + 5m - 2 sqrt(4m^2 + 2m^(3/2)(h + k - C_{t-1}))`;
/// anscombe `(2/3 m^(1/6) (h + k - C_{t-1}) + m^(2/3))^(3/2)` (0 if the base is negative);
/// none `h - C_t`. A negative or `NaN` bound is reported as 0, as in R.
///
/// Errors ([`Error::Invalid`] unless noted): a negative or non-finite count; non-finite `k` or
/// `h`; a range outside the series; no range with `m` estimated; a range starting at period 1
/// with `m` estimated ([`Error::NotEnoughData`]: nothing precedes it); `m` not a finite positive
/// number, given or estimated (R would divide by `sqrt(0)` and carry `NaN`/`Inf` sums on).
pub fn cusum(counts: &[f64], control: &CusumControl) -> Result<Vec<Judgement>> {
    check_counts(counts)?;
    let (k, h) = (control.k, control.h);
    if !k.is_finite() {
        return Err(Error::Invalid(format!("k is {k}: the reference value must be finite")));
    }
    if !h.is_finite() {
        return Err(Error::Invalid(format!("h is {h}: the decision interval must be finite")));
    }
    let n = counts.len();
    let (start, end) = match (control.range, control.m) {
        (None, None) => {
            return Err(Error::Invalid(
                "range is required when m is estimated from the periods before it \
                 (R's algo.cusum has no default range)"
                    .into(),
            ));
        }
        (range, _) => resolve_range(range, n, 1)?,
    };
    let m = match control.m {
        Some(m) => m,
        None => {
            if start < 2 {
                return Err(Error::NotEnoughData(
                    "range starts at period 1, so no periods precede it to estimate m from".into(),
                ));
            }
            // R's mean(): the plain sum over the count, which for whole counts is exact.
            counts[..start - 1].iter().sum::<f64>() / (start - 1) as f64
        }
    };
    if !(m > 0.0 && m.is_finite()) {
        return Err(Error::Invalid(format!(
            "m is {m}: the in-control mean must be a finite number > 0 (an all-zero history \
             before the range gives m = 0)"
        )));
    }
    let sqrt_m = m.sqrt();
    let mut out = Vec::with_capacity(end - start + 1);
    let mut previous = 0.0_f64;
    for t in start..=end {
        let x = counts[t - 1];
        let z = match control.trans {
            CusumTrans::Standard => (x - m) / sqrt_m,
            CusumTrans::Rossi => (x - 3.0 * m + 2.0 * (x * m).sqrt()) / (2.0 * sqrt_m),
            CusumTrans::Anscombe => 3.0 / 2.0 * (x.powf(2.0 / 3.0) - m.powf(2.0 / 3.0)) / m.powf(1.0 / 6.0),
            CusumTrans::None => x,
        };
        // R: max(0, cusum[t] + (standObs[t] - k)); z is finite here since m > 0.
        let current = (previous + (z - k)).max(0.0);
        let alarm = current >= h;
        let upper = match control.trans {
            CusumTrans::Standard => (sqrt_m * (h + k - previous) + m).ceil(),
            CusumTrans::Rossi => {
                let m32 = m.powf(1.5);
                2.0 * h * m.powf(0.5) + 2.0 * k * m.powf(0.5) - 2.0 * previous * m.powf(0.5) + 5.0 * m
                    - 2.0 * (4.0 * m * m + 2.0 * m32 * h + 2.0 * m32 * k - 2.0 * m32 * previous).powf(0.5)
            }
            CusumTrans::Anscombe => {
                let base = 2.0 / 3.0 * m.powf(1.0 / 6.0) * (h + k - previous) + m.powf(2.0 / 3.0);
                if base < 0.0 { 0.0 } else { base.powf(1.5) }
            }
            CusumTrans::None => h - current,
        };
        // R: upperbound[is.na(upperbound)] <- 0; upperbound[upperbound < 0] <- 0
        let upper = if upper.is_nan() || upper < 0.0 { 0.0 } else { upper };
        out.push(Judgement { cusum: Some(current), ..Judgement::plain(t, x, upper, alarm) });
        previous = if control.reset && alarm { 0.0 } else { current };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_controls_are_errors() {
        let y: Vec<f64> = (0..30).map(|i| (i % 4) as f64).collect();
        let c = CusumControl { range: Some((11, 30)), ..CusumControl::default() };
        assert!(cusum(&y, &c).is_ok());
        assert!(matches!(cusum(&y, &CusumControl::default()), Err(Error::Invalid(m)) if m.contains("range")));
        let c1 = CusumControl { range: Some((1, 30)), ..CusumControl::default() };
        assert!(matches!(cusum(&y, &c1), Err(Error::NotEnoughData(_))));
        let beyond = CusumControl { range: Some((11, 31)), ..CusumControl::default() };
        assert!(matches!(cusum(&y, &beyond), Err(Error::Invalid(m)) if m.contains("range")));
        let zero_m = CusumControl { m: Some(0.0), ..c.clone() };
        assert!(matches!(cusum(&y, &zero_m), Err(Error::Invalid(m)) if m.contains("m is")));
        let k = CusumControl { k: f64::NAN, ..c.clone() };
        assert!(matches!(cusum(&y, &k), Err(Error::Invalid(m)) if m.contains('k')));
        let h = CusumControl { h: f64::INFINITY, ..c.clone() };
        assert!(matches!(cusum(&y, &h), Err(Error::Invalid(m)) if m.contains('h')));
        let zeros = vec![0.0; 30];
        assert!(matches!(cusum(&zeros, &c), Err(Error::Invalid(m)) if m.contains("m is")));
        assert!(matches!(cusum(&[1.0, -2.0, 3.0], &c), Err(Error::Invalid(_))));
        // With m given, no range means every period.
        let all = CusumControl { m: Some(1.5), ..CusumControl::default() };
        assert_eq!(cusum(&y, &all).unwrap().len(), 30);
    }

    #[test]
    fn reset_restarts_after_alarm() {
        let mut y = vec![1.0; 20];
        y[12] = 12.0;
        y[13] = 12.0;
        let c = CusumControl { range: Some((11, 20)), ..CusumControl::default() };
        let plain = cusum(&y, &c).unwrap();
        let reset = cusum(&y, &CusumControl { reset: true, ..c }).unwrap();
        assert!(plain[2].alarm && plain[3].alarm);
        assert!(reset[2].alarm);
        assert!(reset[3].cusum.unwrap() < plain[3].cusum.unwrap());
    }
}
