//! The readmission stays' rules on a small record worked out by hand: nights are midnights, an
//! emergency visit that leads to the admission makes it acute (and is not counted as a visit
//! before it), a stay still going on is a readmission but no index stay, the window is the 30
//! days after the discharge day, and the worklist leaves out those back in hospital or dead.

mod support;

use chartroom_analytics::risk::readmission::{self, FEATURES, stays, worklist};
use serde_json::{Value, json};
use support::FileStore;

fn encounter(id: &str, patient: &str, class: &str, start: &str, end: Option<&str>, status: &str) -> Value {
    let mut e = json!({ "resourceType": "Encounter", "id": id, "status": status, "class": { "code": class },
        "subject": { "reference": format!("Patient/{patient}") }, "period": { "start": start } });
    if let Some(end) = end {
        e["period"]["end"] = json!(end);
    }
    e
}

/// The record, written to a folder of the calling test's own (tests run side by side).
fn record(test: &str) -> FileStore {
    let dir = std::env::temp_dir().join(format!("chartroom-readmission-rules-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let encounters = [
        // a: ED visit the evening before an admission; 11 hours spanning one midnight.
        encounter("ed-a", "a", "EMER", "2024-05-01T18:00:00Z", Some("2024-05-01T21:30:00Z"), "finished"),
        encounter("a1", "a", "IMP", "2024-05-01T22:00:00Z", Some("2024-05-02T09:00:00Z"), "finished"),
        // ... and back, still in hospital on the as-of date.
        encounter("a2", "a", "IMP", "2024-05-20T10:00:00Z", None, "in-progress"),
        // b: discharged on May 12; the window (to June 11) is complete on June 11.
        encounter("b1", "b", "IMP", "2024-05-09T10:00:00Z", Some("2024-05-12T10:00:00Z"), "finished"),
        // c: discharged May 25, died June 1.
        encounter("c1", "c", "IMP", "2024-05-22T10:00:00Z", Some("2024-05-25T10:00:00Z"), "finished"),
    ];
    let lines: Vec<String> = encounters.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("Encounter.ndjson"), lines.join("\n")).unwrap();
    let patients = [
        json!({ "resourceType": "Patient", "id": "a", "birthDate": "1950-05-02", "gender": "female" }),
        json!({ "resourceType": "Patient", "id": "b", "gender": "male" }),
        json!({ "resourceType": "Patient", "id": "c", "birthDate": "1940-01-01", "deceasedDateTime": "2024-06-01T00:00:00Z" }),
    ];
    let lines: Vec<String> = patients.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("Patient.ndjson"), lines.join("\n")).unwrap();
    let store = FileStore::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    store
}

fn feature(stay: &readmission::Stay, name: &str) -> f64 {
    stay.features[FEATURES.iter().position(|(n, _)| *n == name).unwrap()]
}

#[test]
fn stays_follow_the_rules() {
    let store = record("stays");
    let all = stays(&store, "2024-06-09").unwrap();
    assert_eq!(all.len(), 3, "the stay still going on is no index stay");
    let a1 = all.iter().find(|s| s.encounter == "a1").unwrap();
    assert_eq!(feature(a1, "lengthOfStay"), 1.0, "one midnight");
    assert_eq!(feature(a1, "acute"), 1.0, "the emergency visit led to the admission");
    assert_eq!(feature(a1, "edVisits"), 0.0, "and is not a visit before it");
    assert_eq!(feature(a1, "age"), 7.4, "74 on the day of discharge (born May 2, 1950)");
    // LACE: 1 night (1), acute (3), no comorbidity, no visits before.
    assert_eq!(a1.lace, 4);
    assert!(a1.readmitted, "the stay going on is a readmission");
    let b1 = all.iter().find(|s| s.encounter == "b1").unwrap();
    assert!(feature(b1, "age").is_nan(), "no birth date: unknown, not zero");
    let complete = |as_of: &str| {
        stays(&store, as_of).unwrap().iter().find(|s| s.encounter == "b1").unwrap().window_complete
    };
    assert!(complete("2024-06-11"), "discharged May 12: the 30 days end June 11, the as-of day");
    assert!(!complete("2024-06-10"));
}

#[test]
fn the_worklist_leaves_out_the_dead_and_those_back_in_hospital() {
    let store = record("worklist");
    let all = stays(&store, "2024-06-09").unwrap();
    let model = readmission::Model {
        trained_at: "2024-06-09T00:00:00Z".into(),
        as_of: "2024-06-09".into(),
        data: readmission::TrainingData {
            stays: 0,
            training_stays: 0,
            training_readmissions: 0,
            held_out_stays: 0,
            held_out_readmissions: 0,
            patients: 0,
        },
        features: FEATURES.iter().map(|(n, _)| n.to_string()).collect(),
        means: vec![0.0; FEATURES.len()],
        deviations: vec![1.0; FEATURES.len()],
        intercept: -2.0,
        coefficients: vec![0.1; FEATURES.len()],
        penalty_c: 1.0,
        held_out: readmission::Measures {
            auc: 0.5,
            auc_low: 0.4,
            auc_high: 0.6,
            brier: 0.1,
            calibration: vec![],
            lace_auc: 0.5,
            lace_auc_low: 0.4,
            lace_auc_high: 0.6,
        },
    };
    let end = chartroom_analytics::record::end_of_day("2024-06-09").unwrap();
    let listed = |end: i64| {
        let mut names: Vec<String> = worklist(&all, &model, end, 10).into_iter().map(|e| e.patient).collect();
        names.sort();
        names
    };
    // b was discharged May 12, inside the 30 days; a is back in hospital; c died.
    assert_eq!(listed(end), vec!["b".to_string()]);
    let early = chartroom_analytics::record::end_of_day("2024-05-30").unwrap();
    assert_eq!(listed(early), vec!["b".to_string(), "c".to_string()], "before c died");
    // A saved model whose numbers do not fit is refused on load.
    let dir = std::env::temp_dir().join(format!("chartroom-readmission-model-{}", std::process::id()));
    let path = dir.join("model.json");
    let mut broken = model.clone();
    broken.coefficients.pop();
    readmission::save(&broken, &path).unwrap();
    assert!(readmission::load(&path).is_err());
    readmission::save(&model, &path).unwrap();
    assert_eq!(readmission::load(&path).unwrap(), Some(model));
    let _ = std::fs::remove_dir_all(&dir);
}
