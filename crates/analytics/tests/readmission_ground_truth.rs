//! The readmission model against the synthetic population's planted truth
//! (`ground-truth/readmissions.ndjson`: each index stay's modelled risk and whether it was
//! readmitted). Trained on the record alone, the model's held-out AUC is within 0.02 of the
//! planted risk's own AUC on the same stays (the best any model can do) and above LACE's.

mod support;

use std::collections::HashMap;

use chartroom_analytics::risk::logistic::auc;
use chartroom_analytics::risk::readmission::{Stay, in_training, index_stays, stays, train};
use serde_json::Value;
use support::FileStore;

/// Enough patients for some thousand index stays.
const PATIENTS: usize = 20_000;

#[test]
fn the_trained_model_ranks_readmissions_nearly_as_well_as_the_planted_risk() {
    let dir = std::env::temp_dir().join(format!("chartroom-readmission-truth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // No data-quality defects, so the record says what the model drew from.
    let truth = synth::TruthOptions { defect_rate: 0.0, ..synth::TruthOptions::default() };
    synth::generate(&synth::GenerateOptions { patients: PATIENTS, seed: 7, truth }, &dir, &|_| {})
        .expect("generate");
    let parameters: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground-truth/parameters.json")).unwrap())
            .unwrap();
    let as_of = parameters["asOf"].as_str().expect("asOf").to_string();
    let planted: HashMap<String, (f64, bool)> =
        std::fs::read_to_string(dir.join("ground-truth/readmissions.ndjson"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| {
                let encounter = v["index"]["reference"]
                    .as_str()
                    .or(v["index"].as_str())
                    .unwrap_or("")
                    .trim_start_matches("Encounter/")
                    .to_string();
                (encounter, (v["risk"].as_f64().unwrap(), v["readmitted"].as_bool().unwrap()))
            })
            .collect();
    let store = FileStore::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);

    let all = stays(&store, &as_of).expect("stays");
    let model = train(&all, &as_of, "2026-12-07T00:00:00Z", 1.0).expect("train");
    let held_out: Vec<&Stay> = index_stays(&all).filter(|s| !in_training(&s.patient)).collect();
    // The same held-out stays, scored by the planted risk (the record's outcome agrees with
    // the truth's on every stay the truth lists).
    let mut ours = Vec::new();
    let mut best = Vec::new();
    let mut outcomes = Vec::new();
    for stay in &held_out {
        let Some(&(risk, readmitted)) = planted.get(&stay.encounter) else { continue };
        assert_eq!(
            stay.readmitted, readmitted,
            "{}: the record's outcome differs from the truth",
            stay.encounter
        );
        ours.push(model.predict(&stay.features));
        best.push(risk);
        outcomes.push(readmitted);
    }
    assert!(
        outcomes.len() as f64 >= 0.9 * held_out.len() as f64,
        "{} of {} held-out stays are in the truth",
        outcomes.len(),
        held_out.len()
    );
    let ours_auc = auc(&ours, &outcomes).unwrap().auc;
    let best_auc = auc(&best, &outcomes).unwrap().auc;
    eprintln!(
        "{} held-out index stays ({} readmitted): model AUC {ours_auc:.4} [{:.4}, {:.4}], planted risk {best_auc:.4}, LACE {:.4}; Brier {:.4}",
        outcomes.len(),
        outcomes.iter().filter(|o| **o).count(),
        model.held_out.auc_low,
        model.held_out.auc_high,
        model.held_out.lace_auc,
        model.held_out.brier
    );
    assert!(outcomes.len() >= 300, "too few held-out stays: {}", outcomes.len());
    assert!((ours_auc - best_auc).abs() <= 0.02, "model {ours_auc} against planted {best_auc}");
    assert!(
        ours_auc > model.held_out.lace_auc,
        "model {ours_auc} not above LACE {}",
        model.held_out.lace_auc
    );
}
