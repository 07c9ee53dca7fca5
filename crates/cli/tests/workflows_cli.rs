//! `chartroom completion` and `chartroom amend`, run as the binary on a data directory: the
//! deficiencies the generator planted reported and opened as Tasks as of its date; an amendment
//! taken in, denied with its letter, and the patient's statement kept.

mod support;

use support::{chartroom, path, run};

use serde_json::json;

#[test]
fn completion_and_amendments_from_the_command_line() {
    let dir = testkit::temp_dir("cli-workflows");
    let (ndjson, data) = (dir.join("ndjson"), dir.join("data"));
    chartroom(&[
        "generate",
        "--patients",
        "12",
        "--seed",
        "3",
        "--completion-defect-rate",
        "0.5",
        "--out",
        path(&ndjson),
    ]);
    chartroom(&["import", "--data", path(&data), path(&ndjson), "--no-validate", "--quiet"]);
    let planted =
        std::fs::read_to_string(ndjson.join("ground-truth/deficiencies.ndjson")).unwrap().lines().count();
    assert!(planted >= 5, "{planted}");

    let report =
        chartroom(&["completion", "report", "--data", path(&data), "--as-of", "2026-01-01", "--by", "hana"]);
    assert!(report.contains(&format!(": {planted} open deficiencies")), "{report}");
    let scan =
        chartroom(&["completion", "scan", "--data", path(&data), "--as-of", "2026-01-01", "--by", "hana"]);
    assert!(scan.contains(&format!("{planted} deficiencies open ({planted} opened, 0 closed)")), "{scan}");
    let again =
        chartroom(&["completion", "scan", "--data", path(&data), "--as-of", "2026-01-01", "--by", "hana"]);
    assert!(again.contains("(0 opened, 0 closed)"), "{again}");
    assert!(
        !run(&["completion", "report", "--data", path(&data), "--as-of", "soon", "--by", "hana"])
            .status
            .success()
    );

    let request = json!({ "resourceType": "Task", "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow", "code": "amendment" }] },
        "for": { "reference": "Patient/pat-000001" }, "focus": { "reference": "Patient/pat-000001" },
        "authoredOn": fhir::DateTime::now_utc().to_string(), "requester": { "reference": "Patient/pat-000001" },
        "input": [{ "type": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/amendment-input", "code": "requested-change" }] },
                    "valueString": "My middle name is missing" }] });
    std::fs::write(dir.join("amend.json"), request.to_string()).unwrap();
    let taken = chartroom(&[
        "amend",
        "request",
        "--data",
        path(&data),
        "--task",
        path(&dir.join("amend.json")),
        "--by",
        "hana",
    ]);
    let id = taken.split("Task/").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().to_string();
    assert!(taken.contains("requested; due"), "{taken}");
    let denied = chartroom(&[
        "amend",
        "decide",
        "--data",
        path(&data),
        "--id",
        &id,
        "--decision",
        "deny",
        "--basis",
        "not-created-here",
        "--explanation",
        "The registration came from the referring clinic.",
        "--by",
        "hana",
    ]);
    assert!(denied.contains("denied") && denied.contains("denial-letter: DocumentReference/"), "{denied}");
    let kept = chartroom(&[
        "amend",
        "disagree",
        "--data",
        path(&data),
        "--id",
        &id,
        "--statement",
        "The clinic has it right",
        "--by",
        "hana",
    ]);
    assert!(kept.contains("statement-of-disagreement: DocumentReference/"), "{kept}");
    assert!(
        !run(&[
            "amend",
            "decide",
            "--data",
            path(&data),
            "--id",
            &id,
            "--decision",
            "accept",
            "--by",
            "hana"
        ])
        .status
        .success()
    );
}
