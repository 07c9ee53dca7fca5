//! The quasi-Poisson log-link GLM behind the Farrington method, fitted as R's `glm.fit` fits
//! it: iteratively reweighted least squares from `mustart = y + 0.1`, at most 25 iterations,
//! stopping when `|dev - dev_old| / (0.1 + |dev|) < 1e-8`, with R's step halving when the
//! deviance leaves the finite numbers. Following R iteration for iteration (not just
//! converging to the same optimum) matters: R stops at its tolerance, and some fits never
//! converge (an all-zero baseline drives the intercept towards minus infinity), so only the
//! same iterates give the same numbers and the same convergence verdicts.
//!
//! The design is the one `farringtonFlexible` builds: an intercept, optionally the time
//! `wtime`, optionally treatment-coded dummies of the season-block factor, over a baseline made
//! of runs of consecutive periods. Its structure makes an iteration cost per run, not per
//! period, without changing what is computed:
//!
//! - Time is centred on the judged period. That changes no fitted value, standard error or
//!   p-value (the column space is the same), and keeps the equations well conditioned.
//! - The dummies are mutually exclusive, so `X'WX` is an "arrow" matrix: a 1x1 or 2x2 block
//!   for intercept and time, bordered by a diagonal. Eliminating the diagonal leaves a 2x2
//!   solve, and every needed entry of `(X'WX)^{-1}` has a closed form.
//! - After the first step the linear predictor is `X beta`, so R's weighted least-squares
//!   step `beta' = (X'WX)^{-1} X'W z` with `z = eta + (y - mu)/mu` is exactly the scoring step
//!   `beta' = beta + (X'WX)^{-1} X' w (y - mu)`. It needs only per-block sums of `w mu`,
//!   `w mu t` and `w mu t^2` (plus constants of the fit), and the deviance follows from the
//!   same sums.
//! - Within a run `mu = exp(b0 + b_g) exp(b1 t0) r^j` with `r = exp(b1)`, so with unit
//!   weights a run's sums are `exp(b0 + b_g) exp(b1 t0)` times prefix sums of `r^j`, `j r^j`,
//!   `j^2 r^j`, tabulated once per iteration. The reweighted fits have the weight `gamma`
//!   everywhere except at the down-weighted outbreak periods, which are added as corrections.
//!   `exp(b1 t0)` is carried from run to run (gaps bridged by a cached `r^gap`), and
//!   re-anchored as `r^t0` every 64 runs; powers come by repeated squaring, so the rounding
//!   stays ~1e-14.
//! - The first step (from R's starting values) takes its per-run sums from prefix sums over
//!   the series.
//!
//! Where a fitted mean could hit R's floor (`pmax(exp(eta), eps)`) or overflow, an iteration
//! falls back to evaluating every period exactly. R's QR and this elimination give the same
//! iterates up to rounding (the oracle test sees differences around 1e-13).

/// R's `.Machine$double.eps`: the log link's floor on fitted means (`pmax(exp(eta), eps)`).
pub(crate) const DOUBLE_EPS: f64 = f64::EPSILON;
/// `glm.control()$epsilon`.
const EPSILON: f64 = 1e-8;
/// `glm.control()$maxit`.
const MAXIT: usize = 25;
/// Runs between fresh anchors (`r^t0` by repeated squaring) of the carried `exp(b1 t0)`.
const ANCHOR_EVERY: usize = 64;
/// Below this linear predictor a fitted mean may meet R's floor `eps` (`ln(eps)` is -36.04);
/// above the upper one `exp` may overflow. Outside the band, periods are evaluated exactly.
const SAFE_ETA: (f64, f64) = (-35.0, 700.0);

/// Per-period values of one series that every fit reads (computed once per series).
#[derive(Debug, Default)]
pub(crate) struct SeriesCache {
    pub y: Vec<f64>,
    /// `log(y)`, 0 where `y = 0`.
    pub log_y: Vec<f64>,
    /// `y log(y)`, 0 where `y = 0`.
    pub y_log_y: Vec<f64>,
    /// `pmax(exp(log(y + 0.1)), eps)`: R's starting means (`mustart <- y + 0.1`).
    pub mu_start: Vec<f64>,
    /// The unit deviance at the starting means.
    pub dev_start: Vec<f64>,
    /// `mu z` at the start, `z = eta + (y - mu) / mu` being R's working response.
    pub mu_z_start: Vec<f64>,
    /// `y^(2/3)`, for the Anscombe residuals.
    pub y_two_thirds: Vec<f64>,
    /// Prefix sums over periods `i = 1..=n` (entry `i` covers periods before `i + 1`) of the
    /// [`PREFIX`] quantities.
    prefix: Vec<[f64; PREFIX]>,
}

/// Prefixed per period: `mu_start`, `mu_start i`, `mu_start i^2`, `mu z`, `mu z i`, `y`,
/// `y i`, `y log y`, the starting deviance.
const PREFIX: usize = 9;

impl SeriesCache {
    pub fn new(counts: &[f64]) -> Self {
        let mut s = SeriesCache::default();
        let mut acc = [0.0; PREFIX];
        s.prefix.push(acc);
        for (index, &y) in counts.iter().enumerate() {
            let eta = (y + 0.1).ln();
            let mu = eta.exp().max(DOUBLE_EPS);
            let log_y = if y > 0.0 { y.ln() } else { 0.0 };
            let dev = unit_deviance(y, mu, log_y, mu.ln());
            let mu_z = mu * eta + (y - mu);
            s.y.push(y);
            s.log_y.push(log_y);
            s.y_log_y.push(y * log_y);
            s.mu_start.push(mu);
            s.dev_start.push(dev);
            s.mu_z_start.push(mu_z);
            s.y_two_thirds.push(y.powf(2.0 / 3.0));
            let i = (index + 1) as f64;
            let values = [mu, mu * i, mu * i * i, mu_z, mu_z * i, y, y * i, y * log_y, dev];
            for (a, v) in acc.iter_mut().zip(values) {
                *a += v;
            }
            s.prefix.push(acc);
        }
        s
    }

    /// Sums of the [`PREFIX`] quantities over `len` periods from 0-based index `first`.
    fn run_sums(&self, first: usize, len: usize) -> [f64; PREFIX] {
        let (a, b) = (&self.prefix[first], &self.prefix[first + len]);
        std::array::from_fn(|q| b[q] - a[q])
    }
}

/// `quasipoisson()$dev.resids` for one period with prior weight 1:
/// `2 * (y log(y / mu) - (y - mu))`, or `2 mu` where `y = 0`.
#[inline]
fn unit_deviance(y: f64, mu: f64, log_y: f64, log_mu: f64) -> f64 {
    if y > 0.0 { 2.0 * (y * (log_y - log_mu) - (y - mu)) } else { 2.0 * mu }
}

/// Consecutive baseline periods of one block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    /// The block: 0 for the reference (lowest) level, `d >= 1` for the d-th dummy.
    pub group: usize,
    /// The 0-based series index of the first period.
    pub first: usize,
    pub len: usize,
    /// The row number (position among all baseline periods) of the first period.
    pub row: usize,
}

/// The baseline of one judged period: its runs, in period order.
#[derive(Debug, Default)]
pub(crate) struct Design {
    pub runs: Vec<Run>,
    pub rows: usize,
    /// Blocks in the model: 1 without the block factor, else the number of levels present.
    pub groups: usize,
    /// The judged period (1-based); time is `period - centre`.
    pub centre: usize,
    /// The smallest and largest centred time of the baseline.
    pub t_range: (f64, f64),
    /// The longest run.
    pub max_run: usize,
}

impl Design {
    /// The centred time of the 0-based series index `i`.
    #[inline]
    pub fn time(&self, i: usize) -> f64 {
        (i + 1) as f64 - self.centre as f64
    }
}

/// Prior weights of a fit (R's `weights = omega`): all rows `base` except the `exceptions`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Weights<'a> {
    /// No prior weights (all 1).
    Unit,
    /// `all[row]` per row, equal to `base` except at `exceptions` (in row order).
    Mostly { base: f64, all: &'a [f64], exceptions: &'a [Exception] },
}

impl Weights<'_> {
    #[inline]
    fn at(&self, row: usize) -> f64 {
        match self {
            Weights::Unit => 1.0,
            Weights::Mostly { all, .. } => all[row],
        }
    }

    fn base(&self) -> f64 {
        match self {
            Weights::Unit => 1.0,
            Weights::Mostly { base, .. } => *base,
        }
    }

    fn exceptions(&self) -> &[Exception] {
        match self {
            Weights::Unit => &[],
            Weights::Mostly { exceptions, .. } => exceptions,
        }
    }
}

/// A row whose prior weight differs from the base weight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exception {
    /// The run and the position within it.
    pub run: usize,
    pub offset: usize,
    pub weight: f64,
}

/// Why a fit stopped where R's `glm.fit` would have raised an error (or, for a rank-deficient
/// design, would have dropped a column, which this port does not do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FitFailure {
    /// The weighted design is (numerically) rank deficient.
    Singular,
    /// No valid coefficients: R's "no valid set of coefficients has been found" or "inner loop
    /// 1; cannot correct step size"; or non-finite coefficients.
    NoValidCoefficients,
}

/// Coefficients: intercept, time slope (0 without trend), block effects (`group[0] = 0`).
#[derive(Debug, Clone, Default)]
struct Coefs {
    intercept: f64,
    slope: f64,
    group: Vec<f64>,
}

impl Coefs {
    fn reset(&mut self, groups: usize) {
        self.intercept = 0.0;
        self.slope = 0.0;
        self.group.clear();
        self.group.resize(groups, 0.0);
    }

    fn copy_from(&mut self, other: &Coefs) {
        self.intercept = other.intercept;
        self.slope = other.slope;
        self.group.clear();
        self.group.extend_from_slice(&other.group);
    }

    fn is_finite(&self) -> bool {
        self.intercept.is_finite() && self.slope.is_finite() && self.group.iter().all(|g| g.is_finite())
    }

    /// Whether every period's linear predictor lies in [`SAFE_ETA`].
    fn in_safe_band(&self, design: &Design) -> bool {
        let (t_lo, t_hi) = design.t_range;
        let (a, b) = (self.slope * t_lo, self.slope * t_hi);
        let (lo, hi) = (a.min(b), a.max(b));
        // The factors exp(b0 + b_g) and exp(b1 t) must stay normal numbers too.
        let factor_bound = SAFE_ETA.1 - 100.0;
        lo > -factor_bound
            && hi < factor_bound
            && self.group.iter().all(|g| {
                let base = self.intercept + g;
                base.abs() < factor_bound && base + lo > SAFE_ETA.0 && base + hi < SAFE_ETA.1
            })
    }
}

/// Per-block sums `sum w mu`, `sum w mu t`, `sum w mu t^2` (w the prior weight).
#[derive(Debug, Clone, Default)]
struct Sums {
    s0: Vec<f64>,
    s1: Vec<f64>,
    s2: Vec<f64>,
}

impl Sums {
    fn reset(&mut self, groups: usize) {
        for v in [&mut self.s0, &mut self.s1, &mut self.s2] {
            v.clear();
            v.resize(groups, 0.0);
        }
    }
}

/// `exp(power * eta)` along a design without an `exp` per period: per block the level
/// `exp(power (b0 + b_g))`, per run `exp(power b1 t0)`, and a table of `r^j` (`r =
/// exp(power b1)`) with prefix sums of `r^j`, `j r^j`, `j^2 r^j`.
#[derive(Debug, Default)]
struct Powers {
    level: Vec<f64>,
    run_start: Vec<f64>,
    table: Vec<f64>,
    t0: Vec<f64>,
    t1: Vec<f64>,
    t2: Vec<f64>,
    /// Whether the tables hold the coefficients last evaluated (see `QuasiPoisson::fit`).
    valid: bool,
}

impl Powers {
    /// Tabulates for coefficients `c` (whose linear predictors must be in the safe band).
    fn prepare(&mut self, c: &Coefs, power: f64, design: &Design, with_sums: bool) {
        self.level.clear();
        self.level.extend(c.group.iter().map(|g| (power * (c.intercept + g)).exp()));
        let slope = power * c.slope;
        let ratio = slope.exp();
        let m = design.max_run;
        self.table.clear();
        let mut q = 1.0;
        for _ in 0..=m {
            self.table.push(q);
            q *= ratio;
        }
        if with_sums {
            for v in [&mut self.t0, &mut self.t1, &mut self.t2] {
                v.clear();
                v.push(0.0);
            }
            let (mut a0, mut a1, mut a2) = (0.0, 0.0, 0.0);
            for (j, &p) in self.table[..m].iter().enumerate() {
                let j = j as f64;
                a0 += p;
                a1 += j * p;
                a2 += j * j * p;
                self.t0.push(a0);
                self.t1.push(a1);
                self.t2.push(a2);
            }
        }
        self.run_start.clear();
        let (mut q, mut next_index, mut steps) = (0.0, usize::MAX, ANCHOR_EVERY);
        let (mut gap, mut gap_factor) = (0usize, 1.0);
        for run in &design.runs {
            if steps >= ANCHOR_EVERY || run.first < next_index {
                q = power_of(ratio, slope, design.time(run.first));
                steps = 0;
            } else {
                if run.first > next_index {
                    let g = run.first - next_index;
                    if g != gap {
                        gap = g;
                        gap_factor = power_of(ratio, slope, g as f64);
                    }
                    q *= gap_factor;
                }
                steps += 1;
            }
            self.run_start.push(q);
            q *= self.table[run.len];
            next_index = run.first + run.len;
        }
        self.valid = true;
    }

    /// `exp(power * eta)` of row `offset` of run `r` (of block `g`).
    #[inline]
    fn at(&self, r: usize, g: usize, offset: usize) -> f64 {
        self.level[g] * self.run_start[r] * self.table[offset]
    }
}

/// `exp(slope * n)` for a whole number `n`: `ratio^n` by repeated squaring (relative error
/// below ~|n| ulp, a few 1e-14 for the spans here) where that is cheaper than `exp`.
#[inline]
fn power_of(ratio: f64, slope: f64, n: f64) -> f64 {
    if n.abs() <= 1024.0 { ratio.powi(n as i32) } else { (slope * n).exp() }
}

/// A quasi-Poisson fit and its buffers, reused across periods and series.
#[derive(Debug, Default)]
pub(crate) struct QuasiPoisson {
    /// Whether the last fit had the time column.
    pub trend: bool,
    coef: Coefs,
    /// The coefficients the last least-squares step started from (its weights' basis).
    prev: Coefs,
    /// R's `coefold`, for step halving.
    old: Coefs,
    delta: Coefs,
    /// Sums at `coef`, and at the start of the last step (that step's `X'WX`).
    cur: Sums,
    step: Sums,
    /// Per-fit constants per block: `sum w y`, `sum w y t`, `sum w`.
    py: Vec<f64>,
    pyt: Vec<f64>,
    pw: Vec<f64>,
    /// `sum w y log y` and `sum w y`.
    yly: f64,
    py_total: f64,
    /// Right-hand sides of a step, per block.
    r0: Vec<f64>,
    r1: Vec<f64>,
    /// Whether the last step started from R's starting values rather than from coefficients.
    last_step_from_start: bool,
    /// Whether R's convergence test was met.
    pub converged: bool,
    /// R's `summary.glm(model)$dispersion` with the working weights: `sum(w r^2) / df`.
    pub dispersion: f64,
    /// The dispersion with the prior weights in place of the working weights,
    /// `sum(prior r^2) / df` (what R's `summary.glm` returns once `model$weights` has been
    /// overwritten with the prior weights, as `farringtonFlexible` does).
    pub prior_weighted_dispersion: f64,
    /// R's `df.residual`.
    pub df_residual: f64,
    /// Inverse of the eliminated intercept/time block of the last step's `X'WX`
    /// (entries 00, 01, 11).
    sinv: [f64; 3],
    /// Per block: weighted mean time of the last step (dummies only).
    tbar: Vec<f64>,
    /// Tables at `coef` and at `prev` (valid when their coefficients were evaluated by the
    /// tabulated path), and for `mu^(-1/6)`.
    powers: Powers,
    powers_prev: Powers,
    powers_sixth: Powers,
    /// Final fitted means and the last step's working weights, per row.
    pub mu: Vec<f64>,
    pub w2: Vec<f64>,
    /// `mu^(-1/6)` per row (see [`QuasiPoisson::fill_mu_pow_neg_sixth`]).
    pub mu_pow: Vec<f64>,
}

impl QuasiPoisson {
    /// Fits `response ~ 1 [+ wtime] [+ seasgroups]` with prior weights, as `glm(..., family =
    /// quasipoisson(link = "log"), weights = ...)` does.
    pub fn fit(
        &mut self,
        cache: &SeriesCache,
        design: &Design,
        weights: Weights<'_>,
        trend: bool,
    ) -> Result<(), FitFailure> {
        let groups = design.groups;
        self.trend = trend;
        self.converged = false;
        for c in [&mut self.coef, &mut self.prev, &mut self.old, &mut self.delta] {
            c.reset(groups);
        }
        self.cur.reset(groups);
        self.step.reset(groups);
        self.powers.valid = false;
        self.powers_prev.valid = false;
        for v in [&mut self.py, &mut self.pyt, &mut self.pw, &mut self.r0, &mut self.r1] {
            v.clear();
            v.resize(groups, 0.0);
        }
        let mut dev_old = self.first_step_sums(cache, design, weights);
        let zero_weights = weights.exceptions().iter().filter(|e| e.weight == 0.0).count();
        let p = 1 + usize::from(trend) + (groups - 1);
        self.df_residual = (design.rows - zero_weights) as f64 - p as f64;

        if !arrow_solve(trend, &self.step, &self.r0, &self.r1, &mut self.coef) {
            return Err(FitFailure::Singular);
        }
        self.last_step_from_start = true;
        let mut first = true;
        let mut finite = self.coef.is_finite();
        for _iter in 0..MAXIT {
            if !first {
                // A scoring step from `coef`: its X'WX is the sums at `coef`.
                std::mem::swap(&mut self.step, &mut self.cur);
                std::mem::swap(&mut self.powers, &mut self.powers_prev);
                self.prev.copy_from(&self.coef);
                self.last_step_from_start = false;
                for g in 0..groups {
                    self.r0[g] = self.py[g] - self.step.s0[g];
                    self.r1[g] = self.pyt[g] - self.step.s1[g];
                }
                if !arrow_solve(trend, &self.step, &self.r0, &self.r1, &mut self.delta) {
                    return Err(FitFailure::Singular);
                }
                self.coef.intercept = self.prev.intercept + self.delta.intercept;
                self.coef.slope = self.prev.slope + self.delta.slope;
                for g in 0..groups {
                    self.coef.group[g] = self.prev.group[g] + self.delta.group[g];
                }
                finite = self.coef.is_finite();
            }
            if !finite {
                // R: "non-finite coefficients", break, not converged.
                break;
            }
            let mut dev = self.evaluate(cache, design, weights);
            if !dev.is_finite() {
                // R's step halving towards the previous coefficients ("step size truncated
                // due to divergence"); the log link's means are never out of bounds otherwise.
                if first {
                    return Err(FitFailure::NoValidCoefficients);
                }
                let mut tries = 1;
                while !dev.is_finite() {
                    if tries > MAXIT {
                        return Err(FitFailure::NoValidCoefficients);
                    }
                    tries += 1;
                    self.coef.intercept = (self.coef.intercept + self.old.intercept) / 2.0;
                    self.coef.slope = (self.coef.slope + self.old.slope) / 2.0;
                    for g in 0..groups {
                        self.coef.group[g] = (self.coef.group[g] + self.old.group[g]) / 2.0;
                    }
                    dev = self.evaluate(cache, design, weights);
                }
            }
            if (dev - dev_old).abs() / (0.1 + dev.abs()) < EPSILON {
                self.converged = true;
                break;
            }
            dev_old = dev;
            self.old.copy_from(&self.coef);
            first = false;
        }
        if !finite {
            // R keeps the previous coefficients; only the fallback logic looks at this fit.
            if first {
                return Err(FitFailure::NoValidCoefficients);
            }
            self.coef.copy_from(&self.old);
            self.powers.valid = false;
        }
        self.finish(cache, design, weights);
        Ok(())
    }

    /// The constants of a fit and R's first step from the starting values (weights `w mu`,
    /// working response `z`) into `step`, `r0`, `r1`; returns the starting deviance.
    fn first_step_sums(&mut self, cache: &SeriesCache, design: &Design, weights: Weights<'_>) -> f64 {
        let base = weights.base();
        let k = design.centre as f64;
        let (mut yly, mut py_total, mut dev) = (0.0, 0.0, 0.0);
        for run in &design.runs {
            let g = run.group;
            let p = cache.run_sums(run.first, run.len);
            // Centred moments: sum f t = sum f i - k sum f, sum f t^2 = sum f i^2 - 2k sum f i
            // + k^2 sum f, with i the 1-based period.
            let m1 = p[1] - k * p[0];
            let m2 = p[2] - k * (2.0 * p[1] - k * p[0]);
            self.step.s0[g] += base * p[0];
            self.step.s1[g] += base * m1;
            self.step.s2[g] += base * m2;
            self.r0[g] += base * p[3];
            self.r1[g] += base * (p[4] - k * p[3]);
            self.py[g] += base * p[5];
            self.pyt[g] += base * (p[6] - k * p[5]);
            self.pw[g] += base * run.len as f64;
            py_total += base * p[5];
            yly += base * p[7];
            dev += base * p[8];
        }
        for e in weights.exceptions() {
            let run = &design.runs[e.run];
            let (g, i) = (run.group, run.first + e.offset);
            let extra = e.weight - base;
            let t = design.time(i);
            let (mu, y) = (cache.mu_start[i], cache.y[i]);
            self.step.s0[g] += extra * mu;
            self.step.s1[g] += extra * mu * t;
            self.step.s2[g] += extra * mu * t * t;
            self.r0[g] += extra * cache.mu_z_start[i];
            self.r1[g] += extra * cache.mu_z_start[i] * t;
            self.py[g] += extra * y;
            self.pyt[g] += extra * y * t;
            self.pw[g] += extra;
            py_total += extra * y;
            yly += extra * cache.y_log_y[i];
            dev += extra * cache.dev_start[i];
        }
        self.yly = yly;
        self.py_total = py_total;
        dev
    }

    /// Fills `cur` with the sums at `coef` and returns the deviance there.
    fn evaluate(&mut self, cache: &SeriesCache, design: &Design, weights: Weights<'_>) -> f64 {
        let groups = design.groups;
        self.cur.reset(groups);
        self.powers.valid = false;
        let c = &self.coef;
        if !self.trend {
            // Without time the mean is constant within a block.
            let mut dev = self.yly - self.py_total;
            for g in 0..groups {
                let (mu, log_mu) = floored_mean(c.intercept + c.group[g]);
                self.cur.s0[g] = mu * self.pw[g];
                dev += self.cur.s0[g] - self.py[g] * log_mu;
            }
            return 2.0 * dev;
        }
        if !c.in_safe_band(design) {
            return sums_exact(c, cache, design, weights, &mut self.cur);
        }
        let pw = &mut self.powers;
        pw.prepare(c, 1.0, design, true);
        let base = weights.base();
        for (r, run) in design.runs.iter().enumerate() {
            // Unit-weight sums of r^j (j = 0..len) shifted to t = t0 + j.
            let (q, t0) = (pw.run_start[r] * base, design.time(run.first));
            let (a, b, d) = (pw.t0[run.len], pw.t1[run.len], pw.t2[run.len]);
            let scale = pw.level[run.group] * q;
            let g = run.group;
            self.cur.s0[g] += scale * a;
            self.cur.s1[g] += scale * (t0 * a + b);
            self.cur.s2[g] += scale * (t0 * (t0 * a + 2.0 * b) + d);
        }
        for e in weights.exceptions() {
            let run = &design.runs[e.run];
            let g = run.group;
            let v = (e.weight - base) * pw.at(e.run, g, e.offset);
            let t = design.time(run.first + e.offset);
            self.cur.s0[g] += v;
            self.cur.s1[g] += v * t;
            self.cur.s2[g] += v * t * t;
        }
        // sum w (y log y - y eta - y + mu), with eta = b0 + b_g + b1 t.
        let mut dev = self.yly - self.py_total;
        for g in 0..groups {
            dev += self.cur.s0[g] - self.py[g] * (c.intercept + c.group[g]) - self.pyt[g] * c.slope;
        }
        2.0 * dev
    }

    /// After the iterations: final means, the last step's working weights, R's dispersion
    /// (and the prior-weighted one) and the inverse pieces of the last step's `X'WX`.
    fn finish(&mut self, cache: &SeriesCache, design: &Design, weights: Weights<'_>) {
        let rows = design.rows;
        self.mu.clear();
        self.mu.resize(rows, 0.0);
        self.w2.clear();
        self.w2.resize(rows, 0.0);
        fill_power(&self.coef, 1.0, self.trend, design, &mut self.powers, &mut self.mu);
        if self.last_step_from_start {
            for run in &design.runs {
                self.w2[run.row..run.row + run.len]
                    .copy_from_slice(&cache.mu_start[run.first..run.first + run.len]);
            }
        } else {
            fill_power(&self.prev, 1.0, self.trend, design, &mut self.powers_prev, &mut self.w2);
        }
        let (mut sum, mut prior_sum) = (0.0, 0.0);
        for run in &design.runs {
            let y = &cache.y[run.first..run.first + run.len];
            let rows = run.row..run.row + run.len;
            for ((&y, &mu), (w2, row)) in
                y.iter().zip(&self.mu[rows.clone()]).zip(self.w2[rows.clone()].iter_mut().zip(rows))
            {
                let w = weights.at(row);
                *w2 *= w;
                if *w2 > 0.0 {
                    let r = (y - mu) / mu;
                    sum += *w2 * r * r;
                    prior_sum += w * r * r;
                }
            }
        }
        let df = self.df_residual;
        self.dispersion = if df > 0.0 { sum / df } else { f64::NAN };
        self.prior_weighted_dispersion = if df > 0.0 { prior_sum / df } else { f64::NAN };
        // (X'WX)^{-1} pieces: the inverse of the eliminated 2x2 (or 1x1) block and each
        // dummy's weighted mean time.
        let st = &self.step;
        self.tbar.clear();
        self.tbar.extend(st.s1.iter().zip(&st.s0).map(|(s1, s0)| s1 / s0));
        let (s00, s01, s11) = eliminated_block(self.trend, st);
        if self.trend {
            let det = s00 * (s11 - s01 * (s01 / s00));
            self.sinv = [s11 / det, -s01 / det, s00 / det];
        } else {
            self.sinv = [1.0 / s00, 0.0, 0.0];
        }
    }

    /// `x' (X'WX)^{-1} x` (R's `cov.unscaled` quadratic form) for the design row of centred
    /// time `t` in block `g`.
    pub fn quad_form(&self, t: f64, g: usize) -> f64 {
        let [v00, v01, v11] = self.sinv;
        if g == 0 {
            if self.trend { v00 + 2.0 * t * v01 + t * t * v11 } else { v00 }
        } else {
            let d = 1.0 / self.step.s0[g];
            if self.trend {
                let dt = t - self.tbar[g];
                d + dt * dt * v11
            } else {
                d
            }
        }
    }

    /// The unscaled variance of the time coefficient (`NaN` without trend).
    pub fn slope_variance_unscaled(&self) -> f64 {
        if self.trend { self.sinv[2] } else { f64::NAN }
    }

    /// The time coefficient (`NaN` without trend).
    pub fn slope(&self) -> f64 {
        if self.trend { self.coef.slope } else { f64::NAN }
    }

    /// The linear predictor at centred time `t` in block `g`.
    pub fn predict_link(&self, t: f64, g: usize) -> f64 {
        self.coef.intercept + self.coef.group[g] + if self.trend { self.coef.slope * t } else { 0.0 }
    }

    /// `mu^(-1/6)` per row into `mu_pow` (for the Anscombe residuals).
    pub fn fill_mu_pow_neg_sixth(&mut self, design: &Design) {
        self.mu_pow.clear();
        self.mu_pow.resize(design.rows, 0.0);
        fill_power(&self.coef, -1.0 / 6.0, self.trend, design, &mut self.powers_sixth, &mut self.mu_pow);
    }
}

/// R's `linkinv` for the log link: `pmax(exp(eta), eps)`, with `log(mu)`.
#[inline]
fn floored_mean(eta: f64) -> (f64, f64) {
    let e = eta.exp();
    if e < DOUBLE_EPS { (DOUBLE_EPS, DOUBLE_EPS.ln()) } else { (e, eta) }
}

/// The sums at `c` period by period, with R's floor on the means; returns the deviance.
fn sums_exact(c: &Coefs, cache: &SeriesCache, design: &Design, weights: Weights<'_>, out: &mut Sums) -> f64 {
    let mut dev = 0.0;
    for run in &design.runs {
        let g = run.group;
        let (mut a0, mut a1, mut a2) = (0.0, 0.0, 0.0);
        for j in 0..run.len {
            let i = run.first + j;
            let w = weights.at(run.row + j);
            let t = design.time(i);
            let (mu, log_mu) = floored_mean(c.intercept + c.group[g] + c.slope * t);
            let v = w * mu;
            a0 += v;
            a1 += v * t;
            a2 += v * t * t;
            dev += w * unit_deviance(cache.y[i], mu, cache.log_y[i], log_mu);
        }
        out.s0[g] += a0;
        out.s1[g] += a1;
        out.s2[g] += a2;
    }
    dev
}

/// `mu^power` per row at `c`, `mu = pmax(exp(eta), eps)` (so `exp(power * eta)` unless the
/// floor applies).
fn fill_power(c: &Coefs, power: f64, trend: bool, design: &Design, powers: &mut Powers, out: &mut [f64]) {
    let slope = if trend { c.slope } else { 0.0 };
    if !c.in_safe_band(design) {
        for run in &design.runs {
            for j in 0..run.len {
                let eta = c.intercept + c.group[run.group] + slope * design.time(run.first + j);
                let mu = floored_mean(eta).0;
                out[run.row + j] = if power == 1.0 { mu } else { mu.powf(power) };
            }
        }
        return;
    }
    if !trend {
        for run in &design.runs {
            out[run.row..run.row + run.len].fill((power * (c.intercept + c.group[run.group])).exp());
        }
        return;
    }
    if !(power == 1.0 && powers.valid) {
        powers.prepare(c, power, design, false);
        // Tables of another power are not the means' tables.
        powers.valid = power == 1.0;
    }
    for (r, run) in design.runs.iter().enumerate() {
        let scale = powers.level[run.group] * powers.run_start[r];
        for (v, p) in out[run.row..run.row + run.len].iter_mut().zip(&powers.table) {
            *v = scale * p;
        }
    }
}

/// The intercept/time block of `X'WX` after eliminating the block dummies:
/// `(s00, s01, s11)`.
fn eliminated_block(trend: bool, s: &Sums) -> (f64, f64, f64) {
    if !trend {
        return (s.s0[0], 0.0, 0.0);
    }
    let mut s11 = s.s2[0];
    for g in 1..s.s0.len() {
        s11 += s.s2[g] - s.s1[g] * (s.s1[g] / s.s0[g]);
    }
    (s.s0[0], s.s1[0], s11)
}

/// Solves `X'WX x = r` for the arrow-shaped `X'WX` given by the block sums, with the
/// right-hand side given per block (`r0[g]` from the intercept/dummy rows, `r1[g]` from the
/// time row). Returns `false` for a singular system.
fn arrow_solve(trend: bool, s: &Sums, r0: &[f64], r1: &[f64], x: &mut Coefs) -> bool {
    // Every block needs weight (a positive, finite diagonal).
    if !s.s0.iter().all(|&d| d.is_finite() && d > 0.0) {
        return false;
    }
    let (s00, s01, s11) = eliminated_block(trend, s);
    if trend {
        // Right-hand side after elimination.
        let mut q1 = r1[0];
        for (((r0g, r1g), s0g), s1g) in r0.iter().zip(r1).zip(&s.s0).zip(&s.s1).skip(1) {
            q1 += r1g - (s1g / s0g) * r0g;
        }
        let q0 = r0[0];
        let pivot = s11 - s01 * (s01 / s00);
        // Rank deficient (or NaN): the time column is (numerically) in the span of the others.
        if pivot.is_nan() || pivot <= 1e-13 * s11.abs() {
            return false;
        }
        let det = s00 * pivot;
        x.intercept = (s11 * q0 - s01 * q1) / det;
        x.slope = (s00 * q1 - s01 * q0) / det;
    } else {
        x.intercept = r0[0] / s00;
        x.slope = 0.0;
    }
    x.group[0] = 0.0;
    let (intercept, slope) = (x.intercept, x.slope);
    for (((beta, r0g), s0g), s1g) in x.group.iter_mut().zip(r0).zip(&s.s0).zip(&s.s1).skip(1) {
        let tbar = if trend { s1g / s0g } else { 0.0 };
        *beta = r0g / s0g - intercept - tbar * slope;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A design over the whole series: rows are the periods, runs split where `group` changes.
    fn design(groups_of: &[usize], centre: usize) -> Design {
        let mut d =
            Design { centre, groups: groups_of.iter().max().map_or(1, |g| g + 1), ..Design::default() };
        for (i, &g) in groups_of.iter().enumerate() {
            match d.runs.last_mut() {
                Some(r) if r.group == g && r.first + r.len == i => r.len += 1,
                _ => d.runs.push(Run { group: g, first: i, len: 1, row: i }),
            }
        }
        d.rows = groups_of.len();
        d.t_range = (d.time(0), d.time(groups_of.len() - 1));
        d.max_run = d.runs.iter().map(|r| r.len).max().unwrap_or(0);
        d
    }

    #[test]
    fn intercept_only_fit_is_the_mean() {
        let y = [1.0, 4.0, 2.0, 0.0, 3.0, 5.0];
        let cache = SeriesCache::new(&y);
        let d = design(&[0; 6], 6);
        let mut q = QuasiPoisson::default();
        q.fit(&cache, &d, Weights::Unit, false).unwrap();
        assert!(q.converged);
        assert!((q.predict_link(0.0, 0).exp() - 2.5).abs() < 1e-9);
        assert_eq!(q.df_residual, 5.0);
    }

    #[test]
    fn matches_r_glm_with_trend_and_blocks() {
        // R: y <- c(3,5,2,8,6,9,4,7,12,10); t <- 1:10 - 10; g <- factor(c(1,1,2,2,1,2,1,2,1,2))
        // m <- glm(y ~ t + g, family = quasipoisson); coef(m); summary(m)$dispersion
        let y = [3.0, 5.0, 2.0, 8.0, 6.0, 9.0, 4.0, 7.0, 12.0, 10.0];
        let cache = SeriesCache::new(&y);
        let d = design(&[0, 0, 1, 1, 0, 1, 0, 1, 0, 1], 10);
        let mut q = QuasiPoisson::default();
        q.fit(&cache, &d, Weights::Unit, true).unwrap();
        assert!(q.converged);
        // Checked against R 4.2.2.
        let (b0, b1, b2) = (2.3485565916571, 0.1192157497314, 0.0314720657913);
        assert!((q.predict_link(0.0, 0) - b0).abs() < 1e-9, "{}", q.predict_link(0.0, 0));
        assert!((q.slope() - b1).abs() < 1e-9, "{}", q.slope());
        assert!((q.predict_link(0.0, 1) - b0 - b2).abs() < 1e-9);
        assert!((q.dispersion - 0.9545319731473).abs() < 1e-9, "{}", q.dispersion);
        // R: summary(m)$cov.unscaled["t", "t"] and predict(m, data.frame(t = 0, g = "2"),
        // se.fit = TRUE)$se.fit^2 / summary(m)$dispersion.
        assert!(
            (q.slope_variance_unscaled() - 0.002061144513389).abs() < 1e-12,
            "{}",
            q.slope_variance_unscaled()
        );
        assert!((q.quad_form(0.0, 1) - 0.04646327982059).abs() < 1e-11, "{}", q.quad_form(0.0, 1));
    }

    #[test]
    fn weighted_fit_matches_r() {
        // R: w <- c(1,1,1,0.2,1,1,1,1,0.5,1) * 1.3; glm(y ~ t, family = quasipoisson, weights = w)
        let y = [3.0, 5.0, 2.0, 8.0, 6.0, 9.0, 4.0, 7.0, 12.0, 10.0];
        let cache = SeriesCache::new(&y);
        let d = design(&[0; 10], 10);
        let all: Vec<f64> =
            [1.0, 1.0, 1.0, 0.2, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0].iter().map(|w| w * 1.3).collect();
        let exceptions = [
            Exception { run: 0, offset: 3, weight: all[3] },
            Exception { run: 0, offset: 8, weight: all[8] },
        ];
        let weights = Weights::Mostly { base: 1.3, all: &all, exceptions: &exceptions };
        let mut q = QuasiPoisson::default();
        q.fit(&cache, &d, weights, true).unwrap();
        let (b0, b1, disp) = (2.3252638451844, 0.1257138259257, 0.8612740061448);
        assert!((q.predict_link(0.0, 0) - b0).abs() < 1e-9, "{}", q.predict_link(0.0, 0));
        assert!((q.slope() - b1).abs() < 1e-9, "{}", q.slope());
        assert!((q.dispersion - disp).abs() < 1e-9, "{}", q.dispersion);
    }

    #[test]
    fn tabulated_sums_match_exact_evaluation() {
        let y: Vec<f64> = (0..60).map(|i| f64::from((i * 7) % 11)).collect();
        let cache = SeriesCache::new(&y);
        let groups: Vec<usize> = (0..60).map(|i| (i / 5) % 3).collect();
        let mut d = design(&groups, 61);
        // Leave a gap so the carried exp(b1 t0) bridges one.
        d.runs.remove(4);
        let c = Coefs { intercept: 0.7, slope: -0.013, group: vec![0.0, 0.4, -0.9] };
        let all = vec![0.8; 60];
        let exceptions: Vec<Exception> = [(1, 2, 0.1), (7, 0, 0.0), (9, 4, 0.3)]
            .iter()
            .map(|&(run, offset, weight)| Exception { run, offset, weight })
            .collect();
        let mut all = all;
        for e in &exceptions {
            all[d.runs[e.run].row + e.offset] = e.weight;
        }
        let weights = Weights::Mostly { base: 0.8, all: &all, exceptions: &exceptions };
        let mut q = QuasiPoisson { trend: true, coef: c.clone(), ..QuasiPoisson::default() };
        q.pw = vec![0.0; 3];
        q.py = vec![0.0; 3];
        q.pyt = vec![0.0; 3];
        q.evaluate(&cache, &d, weights);
        let mut exact = Sums::default();
        exact.reset(3);
        sums_exact(&c, &cache, &d, weights, &mut exact);
        let fast = &q.cur;
        for (a, b) in fast
            .s0
            .iter()
            .chain(&fast.s1)
            .chain(&fast.s2)
            .zip(exact.s0.iter().chain(&exact.s1).chain(&exact.s2))
        {
            assert!((a - b).abs() <= 1e-13 * b.abs(), "{a} vs {b}");
        }
    }

    #[test]
    fn singular_design_is_refused() {
        let y = [1.0, 2.0, 3.0];
        let cache = SeriesCache::new(&y);
        // One period: intercept and time cannot both be estimated.
        let d = design(&[0], 1);
        let mut q = QuasiPoisson::default();
        assert_eq!(q.fit(&cache, &d, Weights::Unit, true), Err(FitFailure::Singular));
    }
}
