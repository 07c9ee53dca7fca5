//! Validation on write over HTTP: an invalid create, update or transaction entry is refused
//! with 422 and every issue at its FHIRPath location, and writes nothing; warnings never
//! block; `$validate` reports without writing.

mod common;

use common::{expect_outcome, json, start};
use serde_json::json;

fn invalid_patient() -> serde_json::Value {
    json!({
        "resourceType": "Patient",
        "gender": "man",
        "birthDate": "1974-13-25",
        "name": [{ "family": "Chalmers", "given": ["Peter", ""] }],
        "telecom": [{ "value": "555-0100" }],
        "foo": 1
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_create_is_refused_with_every_issue_and_writes_nothing() {
    let server = start("validate-create").await;
    let response = server.post("Patient", &invalid_patient()).await;
    assert_eq!(response.status(), 422);
    let outcome = json(response).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let issues: Vec<(String, String, String)> = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["severity"].as_str().unwrap().to_string(),
                i["code"].as_str().unwrap().to_string(),
                i["expression"][0].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (code, location) in [
        ("code-invalid", "Patient.gender"),
        ("value", "Patient.birthDate"),
        ("value", "Patient.name[0].given[1]"),
        ("invariant", "Patient.telecom[0]"),
        ("structure", "Patient.foo"),
    ] {
        assert!(
            issues.iter().any(|(s, c, l)| s == "error" && c == code && l == location),
            "{code} at {location} in {issues:?}"
        );
    }
    assert_eq!(server.version_count(), 0, "nothing written");

    // The same resource as an update, and inside a transaction: refused alike.
    let mut update = invalid_patient();
    update["id"] = json!("p1");
    assert_eq!(server.put("Patient/p1", &update).await.status(), 422);
    let transaction = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "resource": { "resourceType": "Patient", "active": true }, "request": { "method": "POST", "url": "Patient" } },
            { "resource": invalid_patient(), "request": { "method": "POST", "url": "Patient" } }
        ]
    });
    let response = server.post("", &transaction).await;
    assert_eq!(response.status(), 422);
    assert_eq!(server.version_count(), 0, "no partial transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_resource_is_stored_and_validate_reports_without_writing() {
    let server = start("validate-op").await;
    let valid = json!({ "resourceType": "Patient", "gender": "male", "name": [{ "family": "Chalmers" }] });
    assert_eq!(server.post("Patient", &valid).await.status(), 201);

    let response = server.post("Patient/$validate", &invalid_patient()).await;
    assert_eq!(response.status(), 200);
    let outcome = json(response).await;
    assert!(outcome["issue"].as_array().unwrap().len() >= 5, "{outcome}");
    assert!(outcome["issue"].as_array().unwrap().iter().any(|i| i["expression"][0] == "Patient.birthDate"));

    let parameters =
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "resource", "resource": valid }] });
    let outcome = json(server.post("Patient/$validate", &parameters).await).await;
    assert_eq!(outcome["issue"][0]["severity"], "information", "{outcome}");
    assert_eq!(server.version_count(), 1, "$validate writes nothing");

    let mismatch = json(server.post("Observation/$validate", &valid).await).await;
    assert_eq!(mismatch["resourceType"], "OperationOutcome");
    assert!(mismatch["issue"][0]["diagnostics"].as_str().unwrap().contains("not a Observation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_over_one_megabyte_are_refused_and_control_characters_warned_about() {
    let server = start("validate-strings").await;
    let long = json!({ "resourceType": "Patient", "name": [{ "family": "a".repeat(1024 * 1024 + 1) }] });
    let outcome =
        expect_outcome(server.post("Patient", &long).await, 422, "value", "shall not exceed 1 MB").await;
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.name[0].family", "{outcome}");
    assert_eq!(server.version_count(), 0);

    // A NUL is allowed but questionable: stored, and `$validate` says where it is.
    let nul = json!({ "resourceType": "Patient", "name": [{ "family": "Chal\u{0}mers" }] });
    assert_eq!(server.post("Patient", &nul).await.status(), 201);
    let outcome = json(server.post("Patient/$validate", &nul).await).await;
    let issue = &outcome["issue"][0];
    assert_eq!(issue["severity"], "warning", "{outcome}");
    assert_eq!(issue["expression"][0], "Patient.name[0].family", "{outcome}");
    assert!(issue["diagnostics"].as_str().unwrap().contains("U+0000"), "{outcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_quality_report_counts_what_is_missing() {
    let server = start("data-quality").await;
    for patient in [
        json!({ "resourceType": "Patient", "gender": "female" }),
        json!({ "resourceType": "Patient", "gender": "male", "birthDate": "1980-01-01" }),
    ] {
        assert_eq!(server.post("Patient", &patient).await.status(), 201);
    }
    let response = server.get("$data-quality").await;
    assert_eq!(response.status(), 200);
    let report = json(response).await;
    assert_eq!(report["resourceType"], "Parameters");
    let check = report["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "check" && p["part"][0]["valueCode"] == "patient-birth-date")
        .expect("the birth-date check");
    let part =
        |name: &str| check["part"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap();
    assert_eq!(part("numerator")["valueInteger"], 1);
    assert_eq!(part("denominator")["valueInteger"], 2);
    assert_eq!(part("passed")["valueBoolean"], false);
    assert_eq!(part("category")["valueCode"], "Completeness");
    assert!(part("example")["valueReference"]["reference"].as_str().unwrap().starts_with("Patient/"));
}
