//! The flexible Farrington method (Farrington et al. 1996; Noufaily et al. 2012), as R's
//! `surveillance::farringtonFlexible` computes it with `epochAsDate = FALSE`.

use super::glm::{DOUBLE_EPS, Design, Exception, FitFailure, QuasiPoisson, Run, SeriesCache, Weights};
use super::{Judgement, check_alpha, check_counts, qnorm, r_max, resolve_range};
use crate::{Error, Result};
use statrs::distribution::{ContinuousCDF, DiscreteCDF, NegativeBinomial, Poisson, StudentsT};

/// How the upper bound is derived from the fitted model (R's `control$thresholdMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdMethod {
    /// `"delta"`: a normal quantile of the (power-transformed) prediction error, its variance
    /// from the delta method (Farrington et al. 1996).
    Delta,
    /// `"nbPlugin"`: the `1 - alpha` quantile of a negative binomial with the fitted mean and
    /// dispersion plugged in (Noufaily et al. 2012).
    NbPlugin,
    /// `"muan"`: as `NbPlugin`, with the mean taken at the `1 - alpha` quantile of its
    /// asymptotic normal distribution on the link scale.
    Muan,
}

/// The power transformation of the `Delta` threshold (R's `control$powertrans`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerTrans {
    /// `"2/3"`: skewness correction (R's default).
    TwoThirds,
    /// `"1/2"`: variance stabilising.
    Half,
    /// `"none"`.
    None,
}

/// The control of [`farrington_flexible`], mirroring `farringtonFlexible(sts, control =
/// list(...))`. [`Default`] gives R's defaults; [`FarringtonControl::farrington1996`] and
/// [`FarringtonControl::noufaily2012`] give the two published settings.
///
/// R's `fitFun` has a single choice (`"algo.farrington.fitGLM.flexible"`), which is the one
/// implemented, so it has no field; nor has `populationOffset` (no population is taken).
#[derive(Debug, Clone, PartialEq)]
pub struct FarringtonControl {
    /// `control$range` as a 1-based inclusive span; `None` takes R's default,
    /// `frequency * b + w + 1` to the end of the series.
    pub range: Option<(usize, usize)>,
    /// The series' `freq`: periods per year (52 for weekly data).
    pub frequency: usize,
    /// `control$b`: years back (default 5).
    pub b: usize,
    /// `control$w`: half-width of the window around each reference period (default 3).
    pub w: usize,
    /// `control$reweight`: down-weight past outbreaks and refit (default `true`).
    pub reweight: bool,
    /// `control$weightsThreshold`: Anscombe residuals above it are down-weighted (R's default
    /// 2.58; 1 in the original method).
    pub weights_threshold: f64,
    /// `control$alpha`: the one-sided level of the threshold (default 0.05).
    pub alpha: f64,
    /// `control$trend`: try a linear time trend (default `true`).
    pub trend: bool,
    /// `control$pThresholdTrend`: keep the trend only if its p-value is below this (default
    /// 0.05; 1 in the improved method).
    pub p_threshold_trend: f64,
    /// `control$limit54 = c(cases, period)`: no alarm (and no bound) unless at least `cases`
    /// counts fell in the last `period` periods, the current one included (default (5, 4)).
    pub limit54: (usize, usize),
    /// `control$powertrans` (default 2/3).
    pub powertrans: PowerTrans,
    /// `control$noPeriods`: levels of the season-block factor; 1 (default) uses only the
    /// windows around the reference periods, more splits the rest of each year into
    /// `noPeriods - 1` blocks (10 in the improved method).
    pub no_periods: usize,
    /// `control$pastWeeksNotIncluded`: the last periods left out of the fit; `None` takes
    /// R's default, `w` (26 in the improved method).
    pub past_weeks_not_included: Option<usize>,
    /// `control$thresholdMethod` (default `Delta`).
    pub threshold_method: ThresholdMethod,
}

impl Default for FarringtonControl {
    fn default() -> Self {
        FarringtonControl {
            range: None,
            frequency: 52,
            b: 5,
            w: 3,
            reweight: true,
            weights_threshold: 2.58,
            alpha: 0.05,
            trend: true,
            p_threshold_trend: 0.05,
            limit54: (5, 4),
            powertrans: PowerTrans::TwoThirds,
            no_periods: 1,
            past_weeks_not_included: None,
            threshold_method: ThresholdMethod::Delta,
        }
    }
}

impl FarringtonControl {
    /// The original method's settings as the R documentation gives them (`?farringtonFlexible`,
    /// `control1`): `noPeriods = 1`, `weightsThreshold = 1`, `pastWeeksNotIncluded = w`,
    /// `pThresholdTrend = 0.05`, `thresholdMethod = "delta"`; the rest R's defaults.
    pub fn farrington1996() -> Self {
        FarringtonControl {
            weights_threshold: 1.0,
            p_threshold_trend: 0.05,
            no_periods: 1,
            past_weeks_not_included: None,
            threshold_method: ThresholdMethod::Delta,
            ..FarringtonControl::default()
        }
    }

    /// The improved method's settings as the R documentation gives them (`control2`):
    /// `noPeriods = 10`, `weightsThreshold = 2.58`, `pastWeeksNotIncluded = 26`,
    /// `pThresholdTrend = 1`; the rest R's defaults, so the threshold stays `"delta"` (Noufaily
    /// et al. 2012 use the negative binomial quantile: set `threshold_method: NbPlugin`).
    pub fn noufaily2012() -> Self {
        FarringtonControl {
            weights_threshold: 2.58,
            p_threshold_trend: 1.0,
            no_periods: 10,
            past_weeks_not_included: Some(26),
            ..FarringtonControl::default()
        }
    }
}

/// Farrington aberration detection, mirroring R's `farringtonFlexible(sts, control)`
/// (surveillance 1.20.3, `epochAsDate = FALSE`, no population offset).
///
/// For each judged period `k`:
///
/// 1. Baseline: the windows `k - j*freq - w ..= k - j*freq + w` (`j = 1..=b`) and `k - w ..= k`
///    form the factor level `noPeriods`; with `noPeriods > 1` the rest of each of the `b` years
///    is cut into `noPeriods - 1` blocks (R's `blocks()`, first blocks one longer when the
///    split is uneven); then periods `k - pastWeeksNotIncluded ..= k` are dropped.
/// 2. Model: quasi-Poisson log-link `response ~ 1 [+ wtime] [+ seasgroups]`, `wtime` the
///    period index, fitted as R's `glm` (see `glm.rs`). If the fit with trend does not
///    converge it is refitted without; if that does not converge either the period has no
///    result (R's `NA` and a warning). `phi = max(1, dispersion)`.
/// 3. Reweighting (`reweight`): Anscombe residuals `s = 3/2 (y^(2/3) mu^(-1/6) - mu^(1/2)) /
///    sqrt(phi (1 - h))` with hat values `h`; weights `gamma s^-2` above `weightsThreshold`,
///    `gamma` otherwise, `gamma` making them sum to the number of rows; refit (its
///    convergence unchecked, as in R) and `phi` again.
/// 4. The trend stays only if its t-test p-value (estimated dispersion, residual df) is below
///    `pThresholdTrend`, `b >= 3`, and the fitted mean at `k` is at most the largest baseline
///    count; otherwise steps 2-3 are redone without it.
/// 5. Prediction at `k`. Its standard error uses the estimated dispersion, not `phi`: R passes
///    `dispersion = model$phi` inside `newdata`, where `predict.glm` does not look for it.
/// 6. Threshold: `Delta` takes `tau = phi + se^2/mu0` and `U = (mu0^e + z se_e)^(1/e)` with
///    `se_e` from the delta method for `e = 2/3, 1/2, 1`; `NbPlugin`/`Muan` take
///    `U = qnbinom(1 - alpha, size = mu/(phi - 1), prob = 1/phi)` (`qpois` if `phi <= 1`)
///    with `mu = exp(eta0)` or `exp(eta0 + z se_eta)`. The score is `(y - fit) / (U - fit)`,
///    `fit` being the mean for `Delta` and, as in R, the linear predictor otherwise.
/// 7. `limit54`: if fewer than `cases` counts fell in the last `period` periods, R reports no
///    bound (`NaN` here) and no alarm; otherwise the alarm is `score > 1` with a non-zero count.
///
/// A period with no result (the GLM does not converge, or a case where R itself would stop
/// with an error, such as a rank-deficient design or a baseline without the current block
/// level) is reported with a `NaN` bound, no alarm and `None` for `expected`, `score` and
/// `trend`.
///
/// Errors ([`Error::Invalid`] unless noted): a negative or non-finite count; `b`, `w`-window
/// or `frequency` values that cannot be laid out (`b = 0`, `frequency = 0`, `noPeriods = 0`,
/// `noPeriods` too big for the gap between windows: R's "Number of factors too big!");
/// `alpha` outside (0, 1); a `NaN` `weightsThreshold` or `pThresholdTrend`; `limit54` with a
/// period of 0; a range outside the series; a range starting before `b` years plus the
/// window are available ([`Error::NotEnoughData`], R's "Some reference time points did not
/// exist").
pub fn farrington_flexible(counts: &[f64], control: &FarringtonControl) -> Result<Vec<Judgement>> {
    check_counts(counts)?;
    let c = control;
    if c.frequency == 0 {
        return Err(Error::Invalid("frequency is 0: it must be the number of periods per year".into()));
    }
    if c.b == 0 {
        return Err(Error::Invalid("b is 0: at least one year back is needed".into()));
    }
    if c.no_periods == 0 {
        return Err(Error::Invalid("noPeriods is 0: it must be at least 1".into()));
    }
    check_alpha(c.alpha)?;
    if c.weights_threshold.is_nan() {
        return Err(Error::Invalid("weightsThreshold is NaN".into()));
    }
    if c.p_threshold_trend.is_nan() {
        return Err(Error::Invalid("pThresholdTrend is NaN".into()));
    }
    if c.limit54.1 == 0 {
        return Err(Error::Invalid("limit54 period is 0: cases >= 0 and period > 0 are needed".into()));
    }
    let (freq, b, w) = (c.frequency, c.b, c.w);
    if c.no_periods > 1 {
        // R's blocks(): the gap between two windows is split into noPeriods - 1 blocks.
        let gap = freq as i64 - 2 * w as i64 - 1;
        if gap < 0 || gap < c.no_periods as i64 - (2 * w as i64 + 1) {
            return Err(Error::Invalid(format!(
                "noPeriods is {}: too many blocks for the {gap} periods between windows \
                 (R: \"Number of factors too big!\")",
                c.no_periods
            )));
        }
    }
    let n = counts.len();
    let span = freq
        .checked_mul(b)
        .and_then(|x| x.checked_add(w))
        .ok_or_else(|| Error::Invalid(format!("frequency {freq} times b {b} plus w {w} overflows")))?;
    let (start, end) = resolve_range(c.range, n, span.saturating_add(1))?;
    // The earliest window, k - b*freq - w ..= k - b*freq + w, must lie in the series (R also
    // accepts it starting at index 0, which it drops).
    let first_possible = span.max(freq * b + 1);
    if start < first_possible {
        return Err(Error::NotEnoughData(format!(
            "range starts at period {start} but b = {b} years of frequency {freq} with w = {w} \
             need the range to start at period {first_possible} or later"
        )));
    }
    let past_weeks = c.past_weeks_not_included.unwrap_or(w);
    if past_weeks > start {
        return Err(Error::Invalid(format!(
            "pastWeeksNotIncluded is {past_weeks}: more periods than precede the range start {start}"
        )));
    }
    if c.limit54.1 > start + 1 {
        return Err(Error::Invalid(format!(
            "limit54 period is {}: more periods than the range start {start} has",
            c.limit54.1
        )));
    }

    let mut ws = Workspace::new(counts);
    let mut out = Vec::with_capacity(end - start + 1);
    for k in start..=end {
        out.push(ws.judge(counts, c, k, past_weeks));
    }
    Ok(out)
}

/// One fitted model as `algo.farrington.glm` uses it.
#[derive(Debug, Clone, Copy)]
struct Model {
    /// Whether the model has the `wtime` column.
    trend: bool,
    /// `phi = max(1, dispersion)`.
    phi: f64,
    /// The dispersion R's later `summary.glm(model)` calls estimate (see `fit_fun`): with
    /// reweighting not the one behind `phi`.
    dispersion: f64,
    df_residual: f64,
    /// The trend coefficient and its unscaled variance (if `trend`).
    beta_time: f64,
    var_time_unscaled: f64,
    /// The linear predictor at the judged period and its unscaled variance.
    eta0: f64,
    var_eta0_unscaled: f64,
}

/// Buffers for one series, reused across its judged periods.
struct Workspace {
    cache: SeriesCache,
    /// The block level of each period of the current baseline span (0: not in the baseline).
    blocks: Vec<u32>,
    design: Design,
    /// The period whose baseline `design` holds and its current-level dummy, when that
    /// baseline lies wholly inside the series: the layout relative to the judged period is
    /// then the same for every period, so the next one only shifts it.
    template: Option<(usize, Option<usize>)>,
    /// Dummy index of each block level (0 for the reference level).
    level_dummy: Vec<usize>,
    omega: Vec<f64>,
    /// The rows whose weight is not gamma (the down-weighted ones).
    exceptions: Vec<Exception>,
    fit: QuasiPoisson,
}

impl Workspace {
    fn new(counts: &[f64]) -> Self {
        Workspace {
            cache: SeriesCache::new(counts),
            blocks: Vec::new(),
            design: Design::default(),
            template: None,
            level_dummy: Vec::new(),
            omega: Vec::new(),
            exceptions: Vec::new(),
            fit: QuasiPoisson::default(),
        }
    }

    /// Judges period `k` (1-based).
    fn judge(&mut self, counts: &[f64], c: &FarringtonControl, k: usize, past_weeks: usize) -> Judgement {
        let y = counts[k - 1];
        let none = Judgement::plain(k, y, f64::NAN, false);
        let Some(current_dummy) = self.build_design(c, k, past_weeks) else {
            return none;
        };
        let Ok(Some(model)) = self.fit_model(c, current_dummy) else {
            return none;
        };

        // algo.farrington.threshold.*: the prediction's standard error uses the estimated
        // dispersion (see the function docs), the threshold uses phi.
        let se_eta = (model.dispersion * model.var_eta0_unscaled).sqrt();
        let z = qnorm(1.0 - c.alpha);
        let (fit, upper) = match c.threshold_method {
            ThresholdMethod::Delta => {
                let mu0 = model.eta0.exp().max(DOUBLE_EPS);
                let se_fit = se_eta * mu0;
                (mu0, delta_threshold(mu0, se_fit, model.phi, c.powertrans, z))
            }
            ThresholdMethod::NbPlugin | ThresholdMethod::Muan => {
                let eta0 = model.eta0;
                let mu_quantile = if c.threshold_method == ThresholdMethod::NbPlugin {
                    eta0.exp()
                } else {
                    (eta0 + se_eta * z).exp()
                };
                (eta0, negative_binomial_threshold(mu_quantile, model.phi, 1.0 - c.alpha))
            }
        };
        let score = if upper.is_nan() { f64::NAN } else { (y - fit) / (upper - fit) };
        // limit54: the last `period` periods, the current one included.
        let (cases, period) = c.limit54;
        let first = (k + 1).saturating_sub(period).max(1);
        let recent: f64 = counts[first - 1..k].iter().sum();
        let enough_cases = recent >= cases as f64;
        let alarm = enough_cases && !score.is_nan() && score > 1.0 && y != 0.0;
        let expected = if enough_cases && !upper.is_nan() {
            Some(if c.threshold_method == ThresholdMethod::Delta { fit } else { fit.exp() })
        } else {
            None
        };
        Judgement {
            t: k,
            observed: y,
            upperbound: if enough_cases { upper } else { f64::NAN },
            alarm,
            expected,
            score: if score.is_nan() { None } else { Some(score) },
            cusum: None,
            trend: Some(model.trend),
        }
    }

    /// Lays out the baseline of period `k` (R's `algo.farrington.data.glm` and `blocks`) as
    /// runs of consecutive periods. Returns the dummy index of the current block level, or
    /// `None` where R would stop with an error (no baseline, a block factor with a single
    /// level, the current level absent).
    fn build_design(&mut self, c: &FarringtonControl, k: usize, past_weeks: usize) -> Option<usize> {
        // The span k - b*freq - w ..= k (validated to start at 0 or later; index 0 is R's
        // dropped subscript).
        let lo = k - (c.b * c.frequency + c.w);
        if let (true, Some((template_k, current))) = (lo >= 1, self.template) {
            let shift = k - template_k;
            for run in &mut self.design.runs {
                run.first += shift;
            }
            self.design.centre = k;
            self.template = Some((k, current));
            return current;
        }
        let current = self.layout_baseline(c, k, past_weeks, lo);
        self.template = if lo >= 1 { Some((k, current)) } else { None };
        current
    }

    /// [`Self::build_design`] from scratch; `lo` is the first period of the span.
    fn layout_baseline(
        &mut self,
        c: &FarringtonControl,
        k: usize,
        past_weeks: usize,
        lo: usize,
    ) -> Option<usize> {
        let (freq, b, w, p) = (c.frequency, c.b, c.w, c.no_periods);
        self.blocks.clear();
        self.blocks.resize(k - lo + 1, 0);
        let level = p as u32;
        let blocks = &mut self.blocks;
        // R's `vec[from:to] <- value`, `from:to` counting down when from > to.
        let mut assign = |from: usize, to: usize, value: u32| {
            let (a, z) = if from <= to { (from, to) } else { (to, from) };
            for idx in a.max(1)..=z {
                blocks[idx - lo] = value;
            }
        };
        assign(k - w, k, level);
        for i in 1..=b {
            let ref_week = k - i * freq;
            assign(ref_week - w, ref_week + w, level);
            if p != 1 {
                let gap = freq - 2 * w - 1;
                let len = gap / (p - 1);
                let rest = gap % (p - 1);
                let mut offset = 0;
                for j in 1..p {
                    let block_len = len + usize::from(j <= rest);
                    let from = ref_week + w + 1 + offset;
                    // R: from:(from + block_len - 1), which counts down to from - 1 when a
                    // block is empty.
                    let to = (from + block_len).saturating_sub(1);
                    assign(from, to, j as u32);
                    offset += block_len;
                }
            }
        }

        // Levels present after dropping k - pastWeeksNotIncluded ..= k; R's factor() sorts
        // them, the lowest being the reference.
        let excluded_from = k - past_weeks;
        self.level_dummy.clear();
        self.level_dummy.resize(p + 1, usize::MAX);
        for idx in lo.max(1)..excluded_from {
            let l = self.blocks[idx - lo] as usize;
            if l != 0 {
                self.level_dummy[l] = 0;
            }
        }
        let mut dummies = 0usize;
        let mut seen_reference = false;
        for d in self.level_dummy.iter_mut() {
            if *d == 0 {
                if seen_reference {
                    dummies += 1;
                    *d = dummies;
                } else {
                    seen_reference = true;
                }
            }
        }
        if !seen_reference {
            return None;
        }
        let factors = p != 1;
        if factors && (dummies == 0 || self.level_dummy[p] == usize::MAX) {
            return None;
        }
        let design = &mut self.design;
        design.runs.clear();
        design.rows = 0;
        design.centre = k;
        design.groups = if factors { dummies + 1 } else { 1 };
        for idx in lo.max(1)..excluded_from {
            let l = self.blocks[idx - lo] as usize;
            if l == 0 {
                continue;
            }
            let group = if factors { self.level_dummy[l] } else { 0 };
            let i = idx - 1;
            match design.runs.last_mut() {
                Some(run) if run.group == group && run.first + run.len == i => run.len += 1,
                _ => design.runs.push(Run { group, first: i, len: 1, row: design.rows }),
            }
            design.rows += 1;
        }
        let (first, last) = match (design.runs.first(), design.runs.last()) {
            (Some(f), Some(l)) => (f.first, l.first + l.len - 1),
            _ => return None,
        };
        design.t_range = (design.time(first), design.time(last));
        design.max_run = design.runs.iter().map(|r| r.len).max().unwrap_or(0);
        Some(if factors { self.level_dummy[p] } else { 0 })
    }

    /// The largest baseline count (R's `max(dataGLM$response)`).
    fn max_response(&self) -> f64 {
        let y = &self.cache.y;
        self.design
            .runs
            .iter()
            .flat_map(|r| &y[r.first..r.first + r.len])
            .fold(f64::NEG_INFINITY, |m, &v| m.max(v))
    }

    /// `algo.farrington.glm`: the model with trend if it is kept, otherwise without.
    fn fit_model(&mut self, c: &FarringtonControl, current: usize) -> Result<Option<Model>, FitFailure> {
        // With b < 3 R fits the trend model and always drops it again, and a trend fit that
        // does not converge falls back to the model without it: in both cases the result is
        // the no-trend fit, so the trend fit is only tried when it can be kept.
        if c.trend && c.b >= 3 {
            match self.fit_fun(c, true, current)? {
                None => return Ok(None),
                Some(model) if !model.trend => return Ok(Some(model)),
                Some(model) => {
                    let t = model.beta_time / (model.dispersion * model.var_time_unscaled).sqrt();
                    let significant = students_t_two_sided(t, model.df_residual) < c.p_threshold_trend;
                    let predicted = model.eta0.exp().max(DOUBLE_EPS);
                    if significant && predicted <= self.max_response() {
                        return Ok(Some(model));
                    }
                }
            }
        }
        self.fit_fun(c, false, current)
    }

    /// `algo.farrington.fitGLM.flexible`: fit, fall back to no trend if the fit does not
    /// converge, reweight and refit.
    fn fit_fun(
        &mut self,
        c: &FarringtonControl,
        trend: bool,
        current: usize,
    ) -> Result<Option<Model>, FitFailure> {
        let (cache, design, fit) = (&self.cache, &self.design, &mut self.fit);
        fit.fit(cache, design, Weights::Unit, trend)?;
        if !fit.converged {
            if trend {
                fit.fit(cache, design, Weights::Unit, false)?;
            }
            if !fit.converged {
                return Ok(None);
            }
        }
        let mut phi = r_max(fit.dispersion, 1.0);
        let mut dispersion = fit.dispersion;
        if c.reweight {
            // anscombe.residuals(model, phi) with hatvalues(model), then
            // algo.farrington.assign.weights(s, weightsThreshold): omega = gamma s^-2 above the
            // threshold, gamma below, gamma = n / sum(s^-2 above, 1 below). mu^(1/2) is taken
            // as mu * mu^(-1/6)^3, and s only where it can pass a non-negative threshold.
            fit.fill_mu_pow_neg_sixth(design);
            self.omega.clear();
            self.exceptions.clear();
            let threshold = c.weights_threshold;
            let tolerance = 1.0 - 10.0 * f64::EPSILON;
            let mut denominator = 0.0;
            for (r, run) in design.runs.iter().enumerate() {
                let mut t = design.time(run.first);
                for j in 0..run.len {
                    let (i, row) = (run.first + j, run.row + j);
                    let (mu, m6) = (fit.mu[row], fit.mu_pow[row]);
                    let a = 3.0 / 2.0 * m6 * (cache.y_two_thirds[i] - mu * m6 * m6);
                    // s^-2 for the rows above the threshold, 1 for the others. With s = a /
                    // sqrt(v) and a non-negative threshold, s > threshold <=> a > 0 and
                    // a^2 > threshold^2 v, and s^-2 = v / a^2: no square root needed.
                    let mut factor = 1.0;
                    if a > 0.0 || threshold < 0.0 || !a.is_finite() {
                        let mut hat = fit.w2[row] * fit.quad_form(t, run.group);
                        if hat > tolerance {
                            hat = 1.0;
                        }
                        let v = phi * (1.0 - hat);
                        let above = if threshold >= 0.0 && a.is_finite() && v.is_finite() {
                            a * a > threshold * threshold * v
                        } else {
                            let s = a / v.sqrt();
                            if s.is_nan() {
                                // R's weights would be NA and glm() would stop.
                                return Err(FitFailure::NoValidCoefficients);
                            }
                            s > threshold
                        };
                        if above {
                            factor = v / (a * a);
                            self.exceptions.push(Exception { run: r, offset: j, weight: factor });
                        }
                    }
                    denominator += factor;
                    self.omega.push(factor);
                    t += 1.0;
                }
            }
            let gamma = self.omega.len() as f64 / denominator;
            for w in self.omega.iter_mut() {
                *w *= gamma;
            }
            for e in self.exceptions.iter_mut() {
                e.weight *= gamma;
            }
            let trend = fit.trend;
            let weights = Weights::Mostly { base: gamma, all: &self.omega, exceptions: &self.exceptions };
            fit.fit(cache, design, weights, trend)?;
            phi = r_max(fit.dispersion, 1.0);
            // R then overwrites `model$weights` (the working weights) with omega, so every
            // later summary.glm() (the trend test, predict.glm's standard error) estimates the
            // dispersion as sum(omega r^2) / df with the working residuals r = (y - mu) / mu.
            dispersion = fit.prior_weighted_dispersion;
        }
        Ok(Some(Model {
            trend: fit.trend,
            phi,
            dispersion,
            df_residual: fit.df_residual,
            beta_time: fit.slope(),
            var_time_unscaled: fit.slope_variance_unscaled(),
            eta0: fit.predict_link(0.0, current),
            var_eta0_unscaled: fit.quad_form(0.0, current),
        }))
    }
}

/// `algo.farrington.threshold.farrington`'s upper limit: `sort(c(lower, upper))[2]` with R's
/// `NaN` (a negative base under a fractional power) sorted first.
fn delta_threshold(mu0: f64, se_fit: f64, phi: f64, powertrans: PowerTrans, z: f64) -> f64 {
    let tau = phi + se_fit * se_fit / mu0;
    let (se, exponent) = match powertrans {
        PowerTrans::None => ((mu0 * tau).sqrt(), 1.0),
        PowerTrans::Half => ((1.0 / 4.0 * tau).sqrt(), 1.0 / 2.0),
        PowerTrans::TwoThirds => ((4.0 / 9.0 * mu0.powf(1.0 / 3.0) * tau).sqrt(), 2.0 / 3.0),
    };
    let centre = mu0.powf(exponent);
    let lower = (centre - z * se).powf(1.0 / exponent);
    let upper = (centre + z * se).powf(1.0 / exponent);
    match (lower.is_nan(), upper.is_nan()) {
        (false, false) => lower.max(upper),
        (true, false) => upper,
        (false, true) => lower,
        (true, true) => f64::NAN,
    }
}

/// `algo.farrington.threshold.noufaily`'s upper limit: `qnbinom(q, size = mu/(phi - 1),
/// prob = 1/phi)` if `phi > 1`, else `qpois(q, mu)`; `NaN` if `mu` is infinite.
fn negative_binomial_threshold(mu: f64, phi: f64, q: f64) -> f64 {
    if mu == f64::INFINITY || mu.is_nan() {
        return f64::NAN;
    }
    if mu == 0.0 {
        // Both distributions are a point mass at 0.
        return 0.0;
    }
    if phi > 1.0 {
        let size = mu / (phi - 1.0);
        let prob = 1.0 / phi;
        let Ok(nb) = NegativeBinomial::new(size, prob) else { return f64::NAN };
        // R's qnbinom start: a Cornish-Fisher expansion.
        let big_q = 1.0 / prob;
        let big_p = (1.0 - prob) * big_q;
        let mean = size * big_p;
        let sigma = (size * big_p * big_q).sqrt();
        let gamma = (big_q + big_p) / sigma;
        discrete_quantile(q, mean, sigma, gamma, |x| nb.cdf(x))
    } else {
        let Ok(pois) = Poisson::new(mu) else { return f64::NAN };
        let sigma = mu.sqrt();
        discrete_quantile(q, mu, sigma, 1.0 / sigma, |x| pois.cdf(x))
    }
}

/// The smallest count `x` with `cdf(x) >= q` (R's discrete quantile search, with its fuzz
/// against rounding in `cdf`), started from the Cornish-Fisher approximation.
fn discrete_quantile(q: f64, mean: f64, sigma: f64, gamma: f64, cdf: impl Fn(u64) -> f64) -> f64 {
    let z = qnorm(q);
    let start = (mean + sigma * (z + gamma * (z * z - 1.0) / 6.0)).round();
    if !start.is_finite() {
        return f64::NAN;
    }
    let target = q * (1.0 - 64.0 * f64::EPSILON);
    let mut x = start.max(0.0) as u64;
    if cdf(x) >= target {
        while x > 0 && cdf(x - 1) >= target {
            x -= 1;
        }
    } else {
        // The cdf reaches the target: q < 1 and the cdf tends to 1. The cap only guards
        // against a cdf that never does (it would be a statrs defect).
        let cap = x.saturating_add(1 << 40);
        while cdf(x) < target && x < cap {
            x += 1;
        }
    }
    x as f64
}

/// `2 * pt(-|t|, df)`; `NaN` without residual degrees of freedom (R's `NaN` p-value, which
/// leaves the trend out).
fn students_t_two_sided(t: f64, df: f64) -> f64 {
    if df.is_nan() || df <= 0.0 || t.is_nan() {
        return f64::NAN;
    }
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => 2.0 * dist.cdf(-t.abs()),
        Err(_) => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize) -> Vec<f64> {
        (0..n).map(|i| ((i * 37) % 11) as f64).collect()
    }

    #[test]
    fn bad_controls_are_errors() {
        let y = series(300);
        let ok = FarringtonControl::default();
        assert_eq!(farrington_flexible(&y, &ok).unwrap().len(), 300 - 264 + 1);
        let cases: Vec<(FarringtonControl, &str)> = vec![
            (FarringtonControl { b: 0, ..ok.clone() }, "b is 0"),
            (FarringtonControl { frequency: 0, ..ok.clone() }, "frequency"),
            (FarringtonControl { no_periods: 0, ..ok.clone() }, "noPeriods"),
            (FarringtonControl { no_periods: 60, ..ok.clone() }, "noPeriods"),
            (FarringtonControl { alpha: 1.5, ..ok.clone() }, "alpha"),
            (FarringtonControl { alpha: 0.0, ..ok.clone() }, "alpha"),
            (FarringtonControl { weights_threshold: f64::NAN, ..ok.clone() }, "weightsThreshold"),
            (FarringtonControl { p_threshold_trend: f64::NAN, ..ok.clone() }, "pThresholdTrend"),
            (FarringtonControl { limit54: (5, 0), ..ok.clone() }, "limit54"),
            (FarringtonControl { range: Some((264, 301)), ..ok.clone() }, "range"),
            (FarringtonControl { range: Some((0, 10)), ..ok.clone() }, "range"),
            (FarringtonControl { range: Some((264, 1000)), ..ok.clone() }, "range"),
        ];
        for (control, word) in cases {
            match farrington_flexible(&y, &control) {
                Err(Error::Invalid(m)) => assert!(m.contains(word), "{m} should name {word}"),
                other => panic!("{control:?} gave {other:?}"),
            }
        }
        let early = FarringtonControl { range: Some((200, 300)), ..ok.clone() };
        assert!(
            matches!(farrington_flexible(&y, &early), Err(Error::NotEnoughData(m)) if m.contains("range"))
        );
        assert!(matches!(farrington_flexible(&y[..100], &ok), Err(Error::NotEnoughData(_))));
        let mut negative = y.clone();
        negative[5] = -1.0;
        assert!(matches!(farrington_flexible(&negative, &ok), Err(Error::Invalid(_))));
        let mut nan = y;
        nan[5] = f64::NAN;
        assert!(matches!(farrington_flexible(&nan, &ok), Err(Error::Invalid(_))));
    }

    #[test]
    fn all_zero_series_gives_no_alarm() {
        let y = vec![0.0; 300];
        for control in [FarringtonControl::farrington1996(), FarringtonControl::noufaily2012()] {
            let out = farrington_flexible(&y, &control).unwrap();
            assert!(out.iter().all(|j| !j.alarm && j.upperbound.is_nan()));
        }
    }

    #[test]
    fn discrete_quantiles() {
        // qpois(0.95, 3) = 6; qnbinom(0.9, size = 2, prob = 0.4) = 7 (R 4.2.2).
        assert_eq!(negative_binomial_threshold(3.0, 1.0, 0.95), 6.0);
        assert_eq!(negative_binomial_threshold(3.0, 2.5, 0.9), 7.0);
        assert!(negative_binomial_threshold(f64::INFINITY, 2.0, 0.9).is_nan());
    }
}
