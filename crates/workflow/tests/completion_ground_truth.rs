//! Record completion against the synthetic population's planted truth:
//! `ground-truth/deficiencies.ndjson` lists every document the generator took away or left
//! unsigned (rule, focus, who owes it). On the as-of date the rules find exactly those:
//! every planted deficiency, owed by the clinician listed, and nothing else.

#[path = "../../analytics/tests/support/mod.rs"]
mod file_store;

use std::collections::BTreeMap;

use chartroom_workflow::completion::{self, Policy};
use serde_json::Value;

#[test]
fn the_rules_find_every_planted_deficiency_and_nothing_else() {
    let dir = testkit::temp_dir("completion-ground-truth");
    let truth = synth::TruthOptions { completion_defect_rate: 0.05, ..synth::TruthOptions::default() };
    synth::generate(&synth::GenerateOptions { patients: 2_000, seed: 17, truth }, &dir, &|_| {})
        .expect("generate");
    let parameters: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground-truth/parameters.json")).unwrap())
            .unwrap();
    let as_of = parameters["asOf"].as_str().unwrap();
    let now = fhir::DateTime::parse(as_of, fhir::DateTimeKind::DateTime).unwrap().lower_bound_millis();
    let planted: BTreeMap<(String, String), Value> =
        std::fs::read_to_string(dir.join("ground-truth/deficiencies.ndjson"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|l| ((l["rule"].as_str().unwrap().to_string(), l["focus"].as_str().unwrap().to_string()), l))
            .collect();
    let store = file_store::FileStore::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);

    let found = completion::find(&store, &Policy::default(), now).unwrap();
    let found: BTreeMap<(String, String), &completion::Deficiency> =
        found.iter().map(|d| ((d.rule.code().to_string(), d.focus.clone()), d)).collect();
    let missed: Vec<&(String, String)> = planted.keys().filter(|k| !found.contains_key(*k)).collect();
    let extra: Vec<&(String, String)> = found.keys().filter(|k| !planted.contains_key(*k)).collect();
    assert!(missed.is_empty(), "planted but not found: {missed:?}");
    assert!(extra.is_empty(), "found but not planted: {extra:?}");
    assert!(planted.len() >= 90, "{} planted", planted.len());
    for rule in completion::Rule::ALL {
        assert!(planted.keys().any(|(r, _)| r == rule.code()), "nothing planted for {}", rule.code());
    }
    for (key, line) in &planted {
        let deficiency = found[key];
        assert_eq!(deficiency.responsible.as_deref(), line["responsible"].as_str(), "{key:?}");
        assert_eq!(Some(format!("Patient/{}", deficiency.patient).as_str()), line["patient"].as_str());
    }
}
