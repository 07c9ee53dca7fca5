//! On the synthetic population with planted duplicate registrations (`ground-truth/
//! duplicates.ndjson`): recall and precision of the planted pairs at the automatic-link
//! threshold, and the registration-error kinds of the pairs missed.

use std::collections::{BTreeMap, HashSet};

use chartroom_mpi::linkage;
use chartroom_mpi::model::Training;
use chartroom_mpi::person::Person;
use serde_json::Value;

/// The automatic-link threshold the server uses.
const LINK: f64 = linkage::LINK_THRESHOLD;

#[test]
fn planted_duplicates_are_linked_with_few_false_links() {
    let dir = std::env::temp_dir().join(format!("chartroom-mpi-ground-truth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A tenth of the patients registered twice, so the rates are measured on hundreds of pairs.
    let truth = synth::TruthOptions { duplicate_rate: 0.1, ..synth::TruthOptions::none() };
    synth::generate(&synth::GenerateOptions { patients: 4000, seed: 11, truth }, &dir, &|_| {})
        .expect("generate");
    let people: Vec<Person> = std::fs::read_to_string(dir.join("Patient.ndjson"))
        .expect("patients")
        .lines()
        .map(|line| Person::from_patient(&serde_json::from_str::<Value>(line).expect("JSON")))
        .collect();
    let planted: Vec<Value> = std::fs::read_to_string(dir.join("ground-truth/duplicates.ndjson"))
        .expect("duplicates")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let id = |v: &Value| v.as_str().unwrap_or_default().trim_start_matches("Patient/").to_string();
    let pair = |a: String, b: String| if a < b { (a, b) } else { (b, a) };
    let truth: HashSet<(String, String)> =
        planted.iter().map(|d| pair(id(&d["original"]), id(&d["duplicate"]))).collect();

    let run = linkage::run(&people, &Training::default());
    let evaluation = linkage::evaluate(&run, &people, &truth, LINK);
    eprintln!(
        "{} patients, {} planted pairs: {}",
        people.len(),
        truth.len(),
        serde_json::to_string(&evaluation).unwrap()
    );

    // The kinds of error behind each missed pair.
    let linked: HashSet<(String, String)> = run
        .pairs
        .iter()
        .filter(|p| p.probability >= LINK)
        .map(|p| pair(people[p.a as usize].id.clone(), people[p.b as usize].id.clone()))
        .collect();
    let mut missed: BTreeMap<String, usize> = BTreeMap::new();
    for duplicate in &planted {
        if !linked.contains(&pair(id(&duplicate["original"]), id(&duplicate["duplicate"]))) {
            let kinds: Vec<&str> = duplicate["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["kind"].as_str())
                .collect();
            *missed.entry(kinds.join("+")).or_default() += 1;
        }
    }
    eprintln!("missed by kind of registration error: {missed:?}");
    assert!(truth.len() >= 300, "{} planted pairs", truth.len());
    assert!(evaluation.recall >= 0.99, "recall {:.4}; missed {missed:?}", evaluation.recall);
    assert!(evaluation.precision >= 0.99, "precision {:.4}", evaluation.precision);
}
