//! On a generated population loaded as given (defects included), the report finds every
//! planted defect (recall 100% for every class) and flags little else (precision ≥ 99%),
//! measured against `ground-truth/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chartroom_quality as quality;
use quality::{Options, Report};
use serde_json::Value;
use store::{SqliteStore, StoreOptions};

/// The check that must find each planted defect class.
const CLASS_CHECKS: &[(&str, &str)] = &[
    ("invalid-code", "icd10cm-code-exists"),
    ("non-billable-code", "icd10cm-code-billable"),
    ("unspecified-code", "specific-code-documented"),
    ("missing-diagnosis", "inpatient-diagnosis"),
    ("missing-discharge-disposition", "inpatient-discharge-disposition"),
    ("implausible-vital-sign", "value-in-range"),
    ("end-before-start", "end-after-start"),
    ("event-after-death", "nothing-after-death"),
    ("dangling-reference", "reference-resolves"),
    ("sex-inconsistent-code", "sex-specific-code"),
    ("duplicate-identifier", "identifier-unique"),
];

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn load_and_run(dir: &Path) -> (Arc<SqliteStore>, Report) {
    let population = dir.join("population");
    // Defects at 5% so that 600 patients show every class several times.
    let truth = synth::TruthOptions { defect_rate: 0.05, duplicate_rate: 0.02, ..Default::default() };
    synth::generate(&synth::GenerateOptions { patients: 600, seed: 1, truth }, &population, &|_| {}).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("data"), StoreOptions::default()).unwrap());
    let api = api::Api::new(store.clone(), api::ApiConfig::default());
    let options = api::import::ImportOptions { validation: api::Validation::Skip, ..Default::default() };
    let imported = api::import::import(&api, &population, &options, &|_| {}).unwrap();
    assert!(imported.rejections.is_empty(), "{:?}", imported.rejections.first());
    let report = quality::run(store.as_ref(), &Options { examples: usize::MAX }).unwrap();
    (store, report)
}

#[test]
fn every_planted_defect_is_found_and_little_else_is_flagged() {
    let dir = testkit::temp_dir("quality-ground-truth");
    let (_store, report) = load_and_run(&dir);
    let truth_dir = dir.join("population/ground-truth");
    let defects = lines(&truth_dir.join("defects.ndjson"));
    let duplicates = lines(&truth_dir.join("duplicates.ndjson"));

    let flagged: BTreeMap<&str, BTreeSet<&str>> = report
        .checks
        .iter()
        .map(|c| (c.check.as_str(), c.examples.iter().map(String::as_str).collect()))
        .collect();
    // Recall: each defect is flagged by its class's check (an event after death: every event
    // listed).
    let mut found_per_class: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut truth: BTreeSet<String> = BTreeSet::new();
    for defect in &defects {
        let class = defect["class"].as_str().unwrap();
        let check = CLASS_CHECKS.iter().find(|(c, _)| *c == class).map(|(_, check)| *check).unwrap();
        let resource = defect["resource"].as_str().unwrap().to_string();
        let related: Vec<String> =
            defect["related"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
        let expected: Vec<&String> =
            if class == "event-after-death" { related.iter().collect() } else { vec![&resource] };
        let found = expected.iter().all(|r| flagged[check].contains(r.as_str()));
        let entry = found_per_class.entry(class).or_default();
        entry.1 += 1;
        if found {
            entry.0 += 1;
        }
        truth.insert(resource);
        truth.extend(related);
    }
    // People registered twice share their SSN unless it was left out: a true finding.
    for pair in &duplicates {
        truth.insert(pair["original"].as_str().unwrap().to_string());
        truth.insert(pair["duplicate"].as_str().unwrap().to_string());
    }
    eprintln!("recall per class: {found_per_class:?}");
    assert_eq!(found_per_class.len(), 11, "every class planted");
    for (class, (found, planted)) in &found_per_class {
        assert_eq!(found, planted, "{class}: {found} of {planted} found");
    }

    // Precision: resources flagged by any check that the ground truth does not list.
    let all_flagged: BTreeSet<&str> = flagged.values().flatten().copied().collect();
    let false_positives: Vec<&&str> = all_flagged.iter().filter(|r| !truth.contains(**r)).collect();
    let precision = 1.0 - false_positives.len() as f64 / all_flagged.len().max(1) as f64;
    eprintln!(
        "{} resources flagged, {} not in the ground truth (precision {:.4}); first: {:?}",
        all_flagged.len(),
        false_positives.len(),
        precision,
        false_positives.iter().take(10).collect::<Vec<_>>()
    );
    assert!(precision >= 0.99, "precision {precision}");
    assert!(report.resources > 70_000);
}

#[test]
fn runs_are_kept_and_the_next_report_shows_the_trend() {
    let dir = testkit::temp_dir("quality-runs");
    let store = Arc::new(SqliteStore::open(&dir, StoreOptions::default()).unwrap());
    let api = api::Api::new(store.clone(), api::ApiConfig::default());
    let population = dir.join("population");
    synth::generate(
        &synth::GenerateOptions { patients: 30, seed: 2, ..Default::default() },
        &population,
        &|_| {},
    )
    .unwrap();
    let options = api::import::ImportOptions { validation: api::Validation::Skip, ..Default::default() };
    api::import::import(&api, &population, &options, &|_| {}).unwrap();
    let first = quality::run(store.as_ref(), &Options::default()).unwrap();
    quality::record_run(&dir, "2026-11-01T00:00:00Z", &first).unwrap();
    let runs = quality::load_runs(&dir).unwrap();
    assert_eq!(runs.len(), 1);
    let mut second = quality::run(store.as_ref(), &Options::default()).unwrap();
    second.previous = runs.last().cloned();
    let json = second.to_json("2026-11-02T00:00:00Z");
    assert_eq!(json["previousRun"], "2026-11-01T00:00:00Z");
    for check in json["checks"].as_array().unwrap() {
        for field in [
            "id",
            "name",
            "description",
            "category",
            "subcategory",
            "context",
            "threshold",
            "numerator",
            "denominator",
            "percent",
            "passed",
            "examples",
        ] {
            assert!(!check[field].is_null(), "{field} missing in {check}");
        }
        assert_eq!(check["previousPercent"], check["percent"], "same data, same result");
    }
    let html = second.to_html("2026-11-02T00:00:00Z");
    assert!(html.contains("<table>") && html.contains("Patient has a birth date"));
    // Each check's description and threshold are shown, and every example kept (the
    // default keeps 20), not a fixed few; a failing check never shows 0%.
    for check in &second.checks {
        let definition = check.definition();
        let description = definition
            .description
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        assert!(html.contains(&description), "{} has no description", definition.id);
        assert!(html.contains(&format!("&le; {}", quality::percent_text(definition.threshold))));
        for example in &check.examples {
            assert!(html.contains(example.as_str()), "{example} of {} not shown", definition.id);
        }
        if !check.passed() {
            assert_ne!(quality::percent_text(check.percent()), "0%");
        }
    }
    let parameters = second.to_parameters("2026-11-02T00:00:00Z");
    assert_eq!(parameters["resourceType"], "Parameters");
    assert!(
        validation::Validator::r4().validate(&parameters).iter().all(|i| i.severity != fhir::Severity::Error)
    );
}

/// Each check names the DataQualityDashboard check it mirrors, and that check is in the
/// OMOP CDM v5.4 catalogue with the same Kahn category.
#[test]
fn the_catalogue_mirrors_the_data_quality_dashboard() {
    let Some(dir) = testkit::shared_dir("data/dqd") else { return };
    let descriptions = std::fs::read_to_string(dir.join("OMOP_CDMv5.4_Check_Descriptions.csv")).unwrap();
    let dqd: BTreeMap<&str, &str> = descriptions
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let category =
                fields.iter().find(|f| ["Conformance", "Completeness", "Plausibility"].contains(f))?;
            Some((fields.get(1)?.trim(), *category))
        })
        .collect();
    let mut mirrored = 0;
    for check in quality::checks::CheckId::ALL.iter().map(|check| check.definition()) {
        let Some(name) = check.dqd_check else { continue };
        mirrored += 1;
        let category = dqd.get(name).unwrap_or_else(|| panic!("{}: {name} is not a DQD check", check.id));
        assert_eq!(*category, check.category.as_str(), "{}: {name}", check.id);
    }
    assert!(mirrored >= 15);
}
