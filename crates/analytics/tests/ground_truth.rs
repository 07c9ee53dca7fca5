//! The uses of the record against the synthetic population's planted ground truth
//! (`ground-truth/parameters.json`): every planted outbreak is alarmed in its city within two
//! weeks of its start, false alarms per series-year are reported (and bounded); the lung-cancer
//! cohort's estimated hazard ratio has a 95% interval covering the planted one, and arm A's
//! median survival is within its interval of the planted median.

mod support;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use analytics::outbreak::{Method, Settings, SurveillanceReport};
use analytics::record::cohort::Study;
use analytics::record::syndromic::{Interval, PlaceLevel};
use chartroom_analytics as analytics;
use serde_json::{Value, json};
use support::FileStore;

/// Patients generated: enough residents in each outbreak city for its cases, and a cohort
/// of some fifty at the default rate.
const PATIENTS: usize = 5000;

struct Population {
    store: FileStore,
    parameters: Value,
    /// Lines of `ground-truth/cohort.ndjson`: the planted cohort members.
    cohort_members: usize,
}

fn population() -> &'static Population {
    static POPULATION: OnceLock<Population> = OnceLock::new();
    POPULATION.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("chartroom-analytics-ground-truth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Six outbreaks (the default plants two); the cohort and everything else as by default
        // (each planted feature draws from its own stream).
        let truth = synth::TruthOptions { outbreaks: 6, ..synth::TruthOptions::default() };
        let options = synth::GenerateOptions { patients: PATIENTS, seed: 1, truth };
        synth::generate(&options, &dir, &|_| {}).expect("generate the population");
        let parameters: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("ground-truth/parameters.json")).expect("parameters"),
        )
        .expect("parameters JSON");
        let cohort_members = std::fs::read_to_string(dir.join("ground-truth/cohort.ndjson"))
            .expect("cohort truth")
            .lines()
            .count();
        let store = FileStore::load(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        Population { store, parameters, cohort_members }
    })
}

fn day(date: &str) -> i64 {
    let parsed = fhir::DateTime::parse(date, fhir::DateTimeKind::Date).expect("date");
    parsed.lower_bound_millis().div_euclid(86_400_000)
}

/// The syndrome a planted outbreak's cases fall in.
fn syndrome_of(planted: &str) -> &'static str {
    match planted {
        "gastroenteritis" => "gastrointestinal",
        "influenza-like-illness" => "influenza-like-illness",
        other => panic!("unknown planted syndrome {other}"),
    }
}

fn weekly(method: Method) -> SurveillanceReport {
    let known = analytics::syndromes::builtin();
    let syndromes = analytics::syndromes::select(&known, None).expect("syndromes");
    analytics::outbreak::run(
        &population().store,
        &syndromes,
        Interval::Week,
        PlaceLevel::City,
        Settings::new(method),
    )
    .expect("surveillance run")
}

/// For one method: each outbreak's first alarm (weeks after its start's week), and the false
/// alarms per series-year (alarms outside every outbreak's weeks, in the outbreak's own
/// series, over the judged years of all series).
fn judge(report: &SurveillanceReport) -> (Vec<(String, Option<usize>)>, f64) {
    let outbreaks = population().parameters["outbreaks"].as_array().expect("outbreaks").clone();
    let mut first_alarms = Vec::new();
    let mut explained: Vec<(String, String, usize, usize)> = Vec::new();
    for outbreak in &outbreaks {
        let syndrome = syndrome_of(outbreak["syndrome"].as_str().expect("syndrome"));
        let city = outbreak["city"].as_str().expect("city");
        let start = report
            .timeline
            .period_of(day(outbreak["start"].as_str().expect("start")))
            .expect("start in the series");
        let end = report
            .timeline
            .period_of(day(outbreak["end"].as_str().expect("end")))
            .expect("end in the series");
        let series = report.series.iter().find(|s| s.syndrome == syndrome && s.place == city);
        let first = series.and_then(|s| s.alarms().map(|j| j.t).find(|&t| t + 1 >= start && t <= end + 2));
        first_alarms.push((
            outbreak["id"].as_str().unwrap_or("").to_string(),
            first.map(|t| t.saturating_sub(start)),
        ));
        // Alarms a week before to two weeks after the outbreak are its own (onsets run up to
        // two days before the visit); the respiratory series counts influenza cases too.
        for syndrome in [syndrome, "respiratory"] {
            explained.push((syndrome.to_string(), city.to_string(), start.saturating_sub(1), end + 2));
        }
    }
    let mut false_alarms = 0usize;
    let mut judged_periods = 0usize;
    for series in &report.series {
        judged_periods += series.judgements.len();
        false_alarms += series
            .alarms()
            .filter(|j| {
                !explained.iter().any(|(s, c, from, to)| {
                    *s == series.syndrome && *c == series.place && (*from..=*to).contains(&j.t)
                })
            })
            .count();
    }
    let series_years = judged_periods as f64 / 52.0;
    (first_alarms, false_alarms as f64 / series_years)
}

#[test]
fn every_planted_outbreak_is_alarmed_in_its_city_within_two_weeks() {
    let mut table = BTreeMap::new();
    for method in [Method::EarsC1, Method::EarsC2, Method::EarsC3, Method::Farrington] {
        let report = weekly(method);
        let (first_alarms, false_rate) = judge(&report);
        eprintln!(
            "{:<34} false alarms per series-year {false_rate:.3}; first alarm (weeks after the start's week) {first_alarms:?}",
            report.method
        );
        table.insert(method.name(), (first_alarms, false_rate));
    }
    // The record's default, EARS C2: every outbreak within two weeks, few false alarms.
    let (first_alarms, false_rate) = &table["ears-c2"];
    assert!(!first_alarms.is_empty(), "no outbreaks planted");
    for (id, weeks) in first_alarms {
        assert!(weeks.is_some_and(|w| w <= 2), "{id} alarmed {weeks:?} weeks after its start (EARS C2)");
    }
    assert!(*false_rate < 0.5, "EARS C2 raises {false_rate:.3} false alarms per series-year");
}

#[test]
fn the_lung_cancer_cohort_recovers_the_planted_hazard_ratio_and_median() {
    let parameters = &population().parameters;
    let cohort = &parameters["cohort"];
    let planted_ratio = cohort["hazardRatio"].as_f64().expect("hazard ratio");
    let planted_median = cohort["medianSurvivalDaysArmA"].as_f64().expect("median");
    let rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm";
    let arm_codes = |arm: &Value| -> Vec<Value> {
        arm["rxnorm"]
            .as_array()
            .expect("codes")
            .iter()
            .map(|c| json!({ "system": rxnorm, "code": c }))
            .collect()
    };
    let arms = cohort["arms"].as_array().expect("arms");
    let study = Study::from_json(&json!({
        "name": "lung-cancer-regimens",
        "condition": ["C34"],
        "arms": [{ "name": "A", "codes": arm_codes(&arms[0]) }, { "name": "B", "codes": arm_codes(&arms[1]) }],
        "censoring": { "cutoff": parameters["asOf"] },
    }))
    .expect("study");
    let comparison = analytics::compare::compare(&population().store, &study).expect("comparison");
    let truth_members = population().cohort_members;
    eprintln!(
        "diagnosed {}, included {} (planted {truth_members}), excluded {:?}",
        comparison.diagnosed, comparison.included, comparison.excluded
    );
    assert_eq!(comparison.included, truth_members, "every planted cohort member, and no one else");
    let fit = comparison.cox.as_ref().expect("a Cox fit");
    let (ratio, low, high) = (fit.hazard_ratios[0], fit.ci_lower[0].exp(), fit.ci_upper[0].exp());
    eprintln!(
        "hazard ratio of B against A {ratio:.3} (95% CI {low:.3} to {high:.3}); planted {planted_ratio}"
    );
    assert!(
        low <= planted_ratio && planted_ratio <= high,
        "the 95% CI {low:.3}-{high:.3} misses {planted_ratio}"
    );
    let arm_a = &comparison.arms[0].kaplan_meier;
    let (median, (lower, upper)) = (arm_a.median, arm_a.median_ci);
    eprintln!("arm A median {median:?} days (CI {lower:?} to {upper:?}); planted {planted_median}");
    assert!(
        lower.is_some_and(|l| l <= planted_median),
        "median CI lower bound {lower:?} above {planted_median}"
    );
    assert!(
        upper.is_none_or(|u| u >= planted_median),
        "median CI upper bound {upper:?} below {planted_median}"
    );
}
