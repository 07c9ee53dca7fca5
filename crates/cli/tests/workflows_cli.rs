//! `chartroom completion`, `amend`, `hold` and `retention`, run as the binary on a data
//! directory: the deficiencies the generator planted reported and opened as Tasks as of its
//! date; an amendment taken in, denied with its letter, and the patient's statement kept; a
//! hold placed, a purge that spares it with the audit trail's chain intact, the hold released.

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
        "--roi-request-rate",
        "0",
        "--amendment-rate",
        "0",
        "--hold-rate",
        "0",
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

    // A hold on the first patient; a purge under a schedule that keeps nothing destroys every
    // other record, keeps the held one, and leaves the audit trail's chain intact.
    let placed = chartroom(&[
        "hold",
        "place",
        "--data",
        path(&data),
        "--patient",
        "pat-000001",
        "--matter",
        "Ames v. General",
        "--by",
        "hana",
    ]);
    let hold =
        placed.split("Task/").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().to_string();
    assert!(
        !run(&["hold", "place", "--data", path(&data), "--matter", "nothing named", "--by", "hana"])
            .status
            .success()
    );
    std::fs::write(
        dir.join("none.json"),
        r#"{"name":"keep nothing","adultYears":0,"majorityAge":0,"minorYearsAfterMajority":0}"#,
    )
    .unwrap();
    let schedule = path(&dir.join("none.json")).to_string();
    let report = chartroom(&[
        "retention",
        "report",
        "--data",
        path(&data),
        "--schedule-file",
        &schedule,
        "--by",
        "hana",
    ]);
    assert!(report.contains("would destroy") && report.contains("kept under legal hold"), "{report}");
    let entries_before = chartroom(&["audit", "verify", "--data", path(&data)]);
    let purged = chartroom(&[
        "retention",
        "purge",
        "--data",
        path(&data),
        "--schedule-file",
        &schedule,
        "--by",
        "hana",
    ]);
    assert!(
        purged.contains("destroyed") && purged.contains("certificate of destruction: DocumentReference/"),
        "{purged}"
    );
    let verified = chartroom(&["audit", "verify", "--data", path(&data)]);
    assert!(verified.contains("the chain is intact"), "{verified}");
    let count = |text: &str| -> u64 {
        let line = text.lines().find(|l| l.contains(" entries checked")).unwrap();
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(count(&verified) > count(&entries_before), "{entries_before} / {verified}");
    let after = chartroom(&[
        "retention",
        "report",
        "--data",
        path(&data),
        "--schedule-file",
        &schedule,
        "--by",
        "hana",
    ]);
    assert!(after.contains("would destroy 0 resources"), "{after}");
    chartroom(&[
        "hold",
        "release",
        "--data",
        path(&data),
        "--id",
        &hold,
        "--reason",
        "settled",
        "--by",
        "hana",
    ]);
    let released = chartroom(&[
        "retention",
        "report",
        "--data",
        path(&data),
        "--schedule-file",
        &schedule,
        "--by",
        "hana",
    ]);
    assert!(released.contains("of 1 patients") && released.contains("0 kept under legal hold"), "{released}");
}
