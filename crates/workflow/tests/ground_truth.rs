//! The HIM workflows against the synthetic population's planted truth (`ground-truth/`): on
//! the as-of date each report finds every planted item and nothing else.
//!
//! - `deficiencies.ndjson`: every document taken away or left unsigned is a deficiency, owed by
//!   the clinician listed, and no other deficiency is found.
//! - `roi-requests.ndjson` and `amendments.ndjson`: the overdue reports list exactly the
//!   planted requests past their due date.
//! - `holds.ndjson`: under a schedule that keeps nothing, the purge plan keeps exactly what the
//!   planted holds cover, keeps the records of patients with an open request, and would
//!   destroy the rest.

#[path = "../../analytics/tests/support/mod.rs"]
mod file_store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use chartroom_workflow::completion::{self, Policy};
use chartroom_workflow::retention::{self, Schedule};
use chartroom_workflow::{amendment, roi};
use file_store::FileStore;
use serde_json::{Value, json};

struct Population {
    store: FileStore,
    truth: PathBuf,
    now: i64,
}

fn population() -> &'static Population {
    static POPULATION: OnceLock<Population> = OnceLock::new();
    POPULATION.get_or_init(|| {
        let dir = testkit::temp_dir("workflow-ground-truth");
        let truth = synth::TruthOptions {
            completion_defect_rate: 0.05,
            roi_request_rate: 0.05,
            amendment_rate: 0.03,
            hold_rate: 0.02,
            ..synth::TruthOptions::default()
        };
        synth::generate(&synth::GenerateOptions { patients: 2_000, seed: 17, truth }, &dir, &|_| {})
            .expect("generate");
        let parameters: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("ground-truth/parameters.json")).unwrap())
                .unwrap();
        let now = chartroom_workflow::instant(parameters["asOf"].as_str().unwrap()).unwrap();
        let store = FileStore::load(&dir);
        // Keep the truth files; the resources are in memory.
        let truth = std::env::temp_dir().join(format!("workflow-ground-truth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&truth);
        std::fs::rename(dir.join("ground-truth"), &truth).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Population { store, truth, now }
    })
}

fn lines(name: &str) -> Vec<Value> {
    std::fs::read_to_string(population().truth.join(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

#[test]
fn the_completion_rules_find_every_planted_deficiency_and_nothing_else() {
    let p = population();
    let planted: BTreeMap<(String, String), Value> = lines("deficiencies.ndjson")
        .into_iter()
        .map(|l| ((l["rule"].as_str().unwrap().to_string(), l["focus"].as_str().unwrap().to_string()), l))
        .collect();
    let found = completion::find(&p.store, &Policy::default(), p.now).unwrap();
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

#[test]
fn the_overdue_reports_list_exactly_the_planted_late_requests() {
    let p = population();
    let planted = lines("roi-requests.ndjson");
    assert!(planted.len() >= 90, "{}", planted.len());
    let late: BTreeSet<String> = planted
        .iter()
        .filter(|l| l["overdue"] == true)
        .map(|l| l["task"].as_str().unwrap().trim_start_matches("Task/").to_string())
        .collect();
    assert!(!late.is_empty() && late.len() < planted.len());
    assert!(planted.iter().any(|l| l["due"].as_str().unwrap() > l["received"].as_str().unwrap()));
    let found: BTreeSet<String> = roi::overdue(&p.store, p.now).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(found, late);
    // Each planted request reads with the due date it was planted with.
    let due: BTreeMap<String, String> = planted
        .iter()
        .map(|l| (l["task"].as_str().unwrap().to_string(), l["due"].as_str().unwrap().to_string()))
        .collect();
    for request in roi::overdue(&p.store, p.now + 400 * chartroom_workflow::DAY).unwrap() {
        assert_eq!(chartroom_workflow::date_time(request.due()), due[&format!("Task/{}", request.id)]);
    }

    let planted = lines("amendments.ndjson");
    assert!(planted.len() >= 50, "{}", planted.len());
    let late: BTreeSet<String> = planted
        .iter()
        .filter(|l| l["overdue"] == true)
        .map(|l| l["task"].as_str().unwrap().trim_start_matches("Task/").to_string())
        .collect();
    assert!(!late.is_empty() && late.len() < planted.len());
    let found: BTreeSet<String> =
        amendment::overdue(&p.store, p.now).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(found, late);
}

#[test]
fn a_purge_would_keep_exactly_what_the_planted_holds_cover() {
    let p = population();
    let planted = lines("holds.ndjson");
    assert!(planted.len() >= 20, "{}", planted.len());
    assert!(
        planted.iter().any(|l| l["kind"] == "patient") && planted.iter().any(|l| l["kind"] == "encounter")
    );
    let covered: BTreeSet<String> = planted
        .iter()
        .flat_map(|l| l["covers"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()))
        .collect();
    let keep_nothing = Schedule::from_json(&json!({ "name": "none", "adultYears": 0, "majorityAge": 0, "minorYearsAfterMajority": 0, "deceasedYears": 0 })).unwrap();
    let plan = retention::plan(&p.store, &keep_nothing, p.now).unwrap();
    let holds: BTreeSet<String> =
        planted.iter().map(|l| l["task"].as_str().unwrap().trim_start_matches("Task/").to_string()).collect();
    let kept: BTreeSet<String> = plan
        .expired
        .iter()
        .flat_map(|e| e.held.iter().filter(|(_, _, keeper)| holds.contains(keeper)))
        .map(|(t, id, _)| format!("{t}/{id}"))
        .collect();
    let missed: Vec<&String> = covered.difference(&kept).collect();
    let extra: Vec<&String> = kept.difference(&covered).collect();
    assert!(missed.is_empty(), "covered but not kept: {missed:?}");
    assert!(extra.is_empty(), "kept but not covered: {extra:?}");
    // A patient with an open request is kept whole until it is answered.
    let pending: BTreeSet<String> = lines("roi-requests.ndjson")
        .iter()
        .chain(&lines("amendments.ndjson"))
        .map(|l| l["patient"].as_str().unwrap().trim_start_matches("Patient/").to_string())
        .collect();
    for expired in &plan.expired {
        if pending.contains(&expired.patient) {
            assert!(expired.purge.is_empty(), "Patient/{} has an open request", expired.patient);
        }
    }
    // Every other patient resource would be destroyed.
    let destroyed: usize = plan.resources();
    assert!(destroyed > 100_000, "{destroyed}");
}
