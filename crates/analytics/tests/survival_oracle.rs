//! The survival kernels against lifelines 0.30: `tests/oracles/lifelines_oracle.py` writes each
//! case's inputs (CSV) and lifelines' results (JSON); this test runs the kernels on the same
//! inputs and holds every number to lifelines' within 1e-6 (absolute, or relative beyond 1).
//!
//! The Python comes from `CHARTROOM_TEST_PYTHON` (a virtual environment with
//! `tests/oracles/requirements.txt` installed). Without it, or without lifelines importable,
//! the test is skipped with a notice, except under `CI=true`, where it fails.

use chartroom_analytics::survival::{KaplanMeier, cox_ph, kaplan_meier, logrank};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const TOLERANCE: f64 = 1e-6;
/// Fewer compared values than this means the oracle's output lost cases or fields.
const MIN_COMPARISONS: usize = 15_000;

fn oracle_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/lifelines_oracle.py")
}

/// The Python with lifelines, or `None` (after a notice) where the test may be skipped.
fn lifelines_python() -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let python = std::env::var("CHARTROOM_TEST_PYTHON").ok().filter(|p| !p.is_empty());
    let problem = match &python {
        None => "CHARTROOM_TEST_PYTHON is not set".to_string(),
        Some(python) => match Command::new(python).args(["-c", "import lifelines"]).output() {
            Ok(out) if out.status.success() => return Some(python.clone()),
            Ok(out) => {
                format!(
                    "{python} cannot import lifelines: {}",
                    String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").trim()
                )
            }
            Err(e) => format!("{python} cannot be run: {e}"),
        },
    };
    if in_ci {
        panic!(
            "survival oracle: {problem}; CI must provide a Python with crates/analytics/tests/oracles/requirements.txt"
        );
    }
    eprintln!(
        "SKIPPED survival oracle: {problem} (set it to a Python with crates/analytics/tests/oracles/requirements.txt)"
    );
    None
}

/// A fresh directory under the system's temporary one, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(purpose: &str) -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("chartroom-{purpose}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One case's inputs, as the oracle wrote them.
struct Cohort {
    durations: Vec<f64>,
    events: Vec<bool>,
    groups: BTreeMap<String, Vec<usize>>,
    covariates: BTreeMap<String, Vec<f64>>,
}

fn read_cohort(path: &Path) -> Cohort {
    let text = std::fs::read_to_string(path).expect("read case CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("CSV header").split(',').collect();
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); header.len()];
    for line in lines.filter(|l| !l.is_empty()) {
        for (column, field) in columns.iter_mut().zip(line.split(',')) {
            column.push(
                field.parse().unwrap_or_else(|e| panic!("{}: bad number {field:?}: {e}", path.display())),
            );
        }
    }
    let mut cohort =
        Cohort { durations: vec![], events: vec![], groups: BTreeMap::new(), covariates: BTreeMap::new() };
    for (name, values) in header.iter().zip(columns) {
        if *name == "duration" {
            cohort.durations = values;
        } else if *name == "event" {
            cohort.events = values.iter().map(|v| *v != 0.0).collect();
        } else if let Some(group) = name.strip_prefix("group:") {
            cohort.groups.insert(group.to_string(), values.iter().map(|v| *v as usize).collect());
        } else if let Some(covariate) = name.strip_prefix("x:") {
            cohort.covariates.insert(covariate.to_string(), values);
        } else {
            panic!("{}: unexpected column {name}", path.display());
        }
    }
    cohort
}

/// Every comparison, per case and statistic: how many values, the largest difference, and
/// the ones out of tolerance.
#[derive(Default)]
struct Tally {
    stats: BTreeMap<(String, String), (usize, f64)>,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, case: &str, statistic: &str, difference: f64, failure: Option<String>) {
        let entry = self.stats.entry((case.to_string(), statistic.to_string())).or_insert((0, 0.0));
        entry.0 += 1;
        if difference.is_nan() || difference > entry.1 {
            entry.1 = difference;
        }
        if let Some(failure) = failure {
            self.failures.push(format!("{case} {statistic}: {failure}"));
        }
    }

    fn float(&mut self, case: &str, statistic: &str, ours: f64, theirs: f64) {
        let difference = (ours - theirs).abs();
        let ok = difference <= TOLERANCE * theirs.abs().max(1.0) || ours == theirs;
        self.record(
            case,
            statistic,
            difference,
            (!ok).then(|| format!("ours {ours:e}, lifelines {theirs:e}")),
        );
    }

    fn exact<T: PartialEq + std::fmt::Debug>(&mut self, case: &str, statistic: &str, ours: T, theirs: T) {
        let ok = ours == theirs;
        self.record(
            case,
            statistic,
            if ok { 0.0 } else { 1.0 },
            (!ok).then(|| format!("ours {ours:?}, lifelines {theirs:?}")),
        );
    }

    /// A time that lifelines reports as `inf` is `null` in the JSON and `None` here.
    fn optional(&mut self, case: &str, statistic: &str, ours: Option<f64>, theirs: &Value) {
        match (ours, theirs.as_f64()) {
            (Some(a), Some(b)) => self.float(case, statistic, a, b),
            (a, b) => self.exact(case, statistic, a, b),
        }
    }

    fn floats(&mut self, case: &str, statistic: &str, ours: &[f64], theirs: &Value) {
        let theirs = numbers(theirs);
        self.exact(case, &format!("{statistic} (length)"), ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(theirs) {
            self.float(case, statistic, *a, b);
        }
    }

    fn counts(&mut self, case: &str, statistic: &str, ours: &[usize], theirs: &Value) {
        let theirs = numbers(theirs);
        self.exact(case, &format!("{statistic} (length)"), ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(theirs) {
            self.exact(case, statistic, *a as f64, b);
        }
    }

    fn total(&self) -> usize {
        self.stats.values().map(|(count, _)| count).sum()
    }
}

fn numbers(value: &Value) -> Vec<f64> {
    value.as_array().expect("array").iter().map(|v| v.as_f64().expect("number")).collect()
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("expected a number, got {value}"))
}

fn check_kaplan_meier(tally: &mut Tally, case: &str, cohort: &Cohort, expected: &Value) {
    let km: KaplanMeier = kaplan_meier(&cohort.durations, &cohort.events, 0.05).expect("Kaplan-Meier fit");
    tally.floats(case, "km.timeline", &km.timeline, &expected["timeline"]);
    tally.floats(case, "km.survival", &km.survival, &expected["survival"]);
    tally.floats(case, "km.ci_lower", &km.ci_lower, &expected["ci_lower"]);
    tally.floats(case, "km.ci_upper", &km.ci_upper, &expected["ci_upper"]);
    tally.counts(case, "km.at_risk", &km.at_risk, &expected["at_risk"]);
    tally.counts(case, "km.observed", &km.observed, &expected["observed"]);
    tally.counts(case, "km.censored", &km.censored, &expected["censored"]);
    tally.optional(case, "km.median", km.median, &expected["median"]);
    tally.optional(case, "km.median_ci_lower", km.median_ci.0, &expected["median_ci"][0]);
    tally.optional(case, "km.median_ci_upper", km.median_ci.1, &expected["median_ci"][1]);
    for point in expected["survival_at"].as_array().expect("survival_at") {
        let (t, s) = (number(&point[0]), number(&point[1]));
        tally.float(case, "km.survival_at", km.survival_at(t), s);
    }
    for point in expected["at_risk_at"].as_array().expect("at_risk_at") {
        let (t, n) = (number(&point[0]), number(&point[1]));
        tally.exact(case, "km.at_risk_at", km.at_risk_at(t) as f64, n);
    }
}

fn check_logrank(tally: &mut Tally, case: &str, cohort: &Cohort, expected: &Value) {
    let group = expected["group"].as_str().expect("group name");
    let test = expected["test"].as_str().expect("test name");
    let labels = cohort.groups.get(group).unwrap_or_else(|| panic!("{case}: no group column {group}"));
    let result = logrank(&cohort.durations, &cohort.events, labels).expect("log-rank test");
    let name = format!("logrank[{group}] {test}");
    tally.float(
        case,
        &format!("{name} statistic"),
        result.test_statistic,
        number(&expected["test_statistic"]),
    );
    tally.float(case, &format!("{name} p"), result.p_value, number(&expected["p_value"]));
    tally.exact(
        case,
        &format!("{name} df"),
        result.degrees_of_freedom as f64,
        number(&expected["degrees_of_freedom"]),
    );
}

fn check_cox(tally: &mut Tally, case: &str, cohort: &Cohort, expected: &Value) {
    let names: Vec<String> = expected["names"]
        .as_array()
        .expect("names")
        .iter()
        .map(|n| n.as_str().expect("name").to_string())
        .collect();
    let columns: Vec<Vec<f64>> = names
        .iter()
        .map(|n| {
            cohort.covariates.get(n).unwrap_or_else(|| panic!("{case}: no covariate column {n}")).clone()
        })
        .collect();
    let fit = cox_ph(&cohort.durations, &cohort.events, &columns, &names, 0.05).expect("Cox fit");
    tally.exact(case, "cox.names", &fit.names, &names);
    tally.floats(case, "cox.params", &fit.params, &expected["params"]);
    tally.floats(case, "cox.standard_errors", &fit.standard_errors, &expected["standard_errors"]);
    tally.floats(case, "cox.hazard_ratios", &fit.hazard_ratios, &expected["hazard_ratios"]);
    tally.floats(case, "cox.ci_lower", &fit.ci_lower, &expected["ci_lower"]);
    tally.floats(case, "cox.ci_upper", &fit.ci_upper, &expected["ci_upper"]);
    tally.floats(case, "cox.z", &fit.z, &expected["z"]);
    tally.floats(case, "cox.p_values", &fit.p_values, &expected["p_values"]);
    tally.float(case, "cox.concordance_index", fit.concordance_index, number(&expected["concordance_index"]));
    tally.float(case, "cox.log_likelihood", fit.log_likelihood, number(&expected["log_likelihood"]));
    let llr = &expected["log_likelihood_ratio_test"];
    tally.float(case, "cox.llr statistic", fit.log_likelihood_ratio_test.0, number(&llr[0]));
    tally.exact(case, "cox.llr df", fit.log_likelihood_ratio_test.1 as f64, number(&llr[1]));
    tally.float(case, "cox.llr p", fit.log_likelihood_ratio_test.2, number(&llr[2]));
    tally.exact(case, "cox.iterations", fit.iterations as f64, number(&expected["iterations"]));
}

#[test]
fn survival_kernels_match_lifelines() {
    let Some(python) = lifelines_python() else { return };
    let scratch = ScratchDir::new("survival-oracle");
    let out = Command::new(&python)
        .arg(oracle_script())
        .arg(&scratch.0)
        .output()
        .expect("run the lifelines oracle");
    assert!(
        out.status.success(),
        "lifelines oracle failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.0.join("expected.json")).expect("read the oracle's expected.json"),
    )
    .expect("parse expected.json");
    let cases = expected["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10, "the oracle wrote only {} cases", cases.len());

    let mut tally = Tally::default();
    for case in cases {
        let name = case["name"].as_str().expect("case name");
        let cohort = read_cohort(&scratch.0.join(case["csv"].as_str().expect("csv name")));
        if let Some(km) = case.get("km") {
            check_kaplan_meier(&mut tally, name, &cohort, km);
        }
        for test in case["logrank"].as_array().expect("logrank list") {
            check_logrank(&mut tally, name, &cohort, test);
        }
        if let Some(cox) = case.get("cox") {
            check_cox(&mut tally, name, &cohort, cox);
        }
    }

    println!("survival vs lifelines {}: largest difference per statistic", expected["lifelines"]);
    for ((case, statistic), (count, max)) in &tally.stats {
        println!("  {case:<24} {statistic:<45} {count:>6} values  max diff {max:.2e}");
    }
    let total = tally.total();
    println!("{total} values compared, {} out of tolerance", tally.failures.len());
    assert!(
        tally.failures.is_empty(),
        "{} differences from lifelines:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
    assert!(total >= MIN_COMPARISONS, "only {total} values compared (expected at least {MIN_COMPARISONS})");
}

/// A synthetic cohort of `n` patients (seeded, reproducible): integer day follow-up with ties,
/// age, sex and a skewed biomarker, three treatment arms.
fn synthetic_cohort(n: usize) -> Cohort {
    // SplitMix64: enough randomness for a benchmark cohort without a dependency.
    let mut state: u64 = 0x5eed_cafe;
    let mut uniform = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut cohort =
        Cohort { durations: vec![], events: vec![], groups: BTreeMap::new(), covariates: BTreeMap::new() };
    let (mut age, mut female, mut biomarker, mut arm) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let a = (45.0 + 35.0 * uniform()).round();
        let f = if uniform() < 0.5 { 1.0 } else { 0.0 };
        let b = (-(1.0 - uniform()).ln()).sqrt() + 0.1;
        let g = (uniform() * 3.0) as usize;
        let hazard = 0.002 * (0.03 * (a - 60.0) - 0.4 * f + 0.5 * b.ln() - 0.2 * g as f64).exp();
        let event_time = (-(1.0 - uniform()).ln() / hazard).ceil();
        let censor_time = (30.0 + 1470.0 * uniform()).ceil();
        cohort.durations.push(event_time.min(censor_time));
        cohort.events.push(event_time <= censor_time);
        age.push(a);
        female.push(f);
        biomarker.push(b);
        arm.push(g);
    }
    cohort.covariates.insert("age".into(), age);
    cohort.covariates.insert("female".into(), female);
    cohort.covariates.insert("biomarker".into(), biomarker);
    cohort.groups.insert("arm".into(), arm);
    cohort
}

/// Times KM + log-rank + Cox (3 covariates) on a 5,000-patient cohort, and lifelines on the
/// same cohort when CHARTROOM_TEST_PYTHON has it. Run in release:
/// `cargo test --release -p chartroom-analytics --test survival_oracle -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: run explicitly, in release"]
fn benchmark_5000_patients_against_lifelines() {
    let cohort = synthetic_cohort(5000);
    let names = vec!["age".to_string(), "female".to_string(), "biomarker".to_string()];
    let columns: Vec<Vec<f64>> = names.iter().map(|n| cohort.covariates[n].clone()).collect();
    let arms = &cohort.groups["arm"];
    let run = || {
        let km = kaplan_meier(&cohort.durations, &cohort.events, 0.05).expect("KM");
        let lr = logrank(&cohort.durations, &cohort.events, arms).expect("log-rank");
        let cox = cox_ph(&cohort.durations, &cohort.events, &columns, &names, 0.05).expect("Cox");
        (km, lr, cox)
    };
    let _ = run();
    let rounds = 20;
    let started = Instant::now();
    let mut last = None;
    for _ in 0..rounds {
        last = Some(run());
    }
    let rust_seconds = started.elapsed().as_secs_f64() / rounds as f64;
    let (km, lr, cox) = last.expect("ran");
    let time_of = |f: &dyn Fn()| {
        let started = Instant::now();
        for _ in 0..rounds {
            f();
        }
        started.elapsed().as_secs_f64() / rounds as f64 * 1e3
    };
    println!(
        "rust per kernel: KM {:.3} ms, log-rank {:.3} ms, Cox {:.3} ms",
        time_of(&|| drop(kaplan_meier(&cohort.durations, &cohort.events, 0.05))),
        time_of(&|| drop(logrank(&cohort.durations, &cohort.events, arms))),
        time_of(&|| drop(cox_ph(&cohort.durations, &cohort.events, &columns, &names, 0.05)))
    );
    println!(
        "rust: {:.3} ms per KM + log-rank + Cox on 5000 patients (median {:?}, log-rank {:.3}, Cox {} iterations, C {:.4})",
        rust_seconds * 1e3,
        km.median,
        lr.test_statistic,
        cox.iterations,
        cox.concordance_index
    );

    let Some(python) = std::env::var("CHARTROOM_TEST_PYTHON").ok().filter(|p| !p.is_empty()) else {
        println!("lifelines: not timed (CHARTROOM_TEST_PYTHON is not set)");
        return;
    };
    let scratch = ScratchDir::new("survival-benchmark");
    let csv = scratch.0.join("cohort.csv");
    let mut text = String::from("duration,event,group:arm,x:age,x:female,x:biomarker\n");
    for i in 0..cohort.durations.len() {
        text.push_str(&format!(
            "{:?},{},{},{:?},{:?},{:?}\n",
            cohort.durations[i],
            u8::from(cohort.events[i]),
            arms[i],
            columns[0][i],
            columns[1][i],
            columns[2][i]
        ));
    }
    std::fs::write(&csv, text).expect("write benchmark cohort");
    let out = Command::new(python)
        .arg(oracle_script())
        .arg("--benchmark")
        .arg(&csv)
        .output()
        .expect("run the lifelines benchmark");
    assert!(out.status.success(), "lifelines benchmark failed: {}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    print!("{report}");
    if let Some(seconds) = report
        .lines()
        .find_map(|l| l.strip_prefix("lifelines seconds: "))
        .and_then(|s| s.trim().parse::<f64>().ok())
    {
        println!("speed-up: {:.0}x", seconds / rust_seconds);
    }
}
