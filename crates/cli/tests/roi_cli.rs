//! `chartroom roi`, run as the binary on a data directory: a patient's request taken in,
//! extended once, released to a file (only that patient's resources), and an old request on
//! the overdue list.

mod support;

use support::{chartroom, path, run};

use serde_json::{Value, json};

fn task(authored: &str) -> Value {
    let input = |code: &str, value: Value| {
        let mut entry = json!({ "type": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/roi-input", "code": code }] } });
        entry.as_object_mut().unwrap().extend(value.as_object().unwrap().clone());
        entry
    };
    json!({
        "resourceType": "Task", "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow", "code": "release-of-information" }] },
        "for": { "reference": "Patient/pat-000001" }, "authoredOn": authored,
        "requester": { "reference": "Patient/pat-000001" },
        "reasonCode": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "PATRQT" }] },
        "input": [input("requester-type", json!({ "valueCode": "patient" })), input("record-type", json!({ "valueCode": "Encounter" })),
                  input("record-type", json!({ "valueCode": "Patient" }))],
    })
}

#[test]
fn a_request_is_taken_in_released_and_late_ones_listed() {
    let dir = testkit::temp_dir("cli-roi");
    let (ndjson, data) = (dir.join("ndjson"), dir.join("data"));
    chartroom(&["generate", "--patients", "4", "--seed", "2", "--clean", "--out", path(&ndjson)]);
    chartroom(&["import", "--data", path(&data), path(&ndjson), "--no-validate", "--quiet"]);
    let now = fhir::DateTime::now_utc().to_string();
    std::fs::write(dir.join("task.json"), task(&now).to_string()).unwrap();
    let taken = chartroom(&[
        "roi",
        "request",
        "--data",
        path(&data),
        "--task",
        path(&dir.join("task.json")),
        "--by",
        "hana",
    ]);
    let id = taken.split("Task/").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().to_string();
    chartroom(&[
        "roi",
        "extend",
        "--data",
        path(&data),
        "--id",
        &id,
        "--reason",
        "records off-site",
        "--by",
        "hana",
    ]);
    assert!(
        !run(&["roi", "extend", "--data", path(&data), "--id", &id, "--reason", "again", "--by", "hana"])
            .status
            .success()
    );
    let out = dir.join("release.json");
    chartroom(&["roi", "release", "--data", path(&data), "--id", &id, "--out", path(&out), "--by", "hana"]);
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    assert!(entries.len() > 1, "{bundle}");
    for entry in entries {
        let resource = &entry["resource"];
        assert!(["Encounter", "Patient"].contains(&resource["resourceType"].as_str().unwrap()), "{resource}");
        let owner = resource["subject"]["reference"].as_str().unwrap_or("Patient/pat-000001");
        assert!(owner == "Patient/pat-000001" && resource["id"] != "pat-000002", "{resource}");
    }

    std::fs::write(dir.join("old.json"), task("2021-03-01T09:00:00Z").to_string()).unwrap();
    let old = chartroom(&[
        "roi",
        "request",
        "--data",
        path(&data),
        "--task",
        path(&dir.join("old.json")),
        "--by",
        "hana",
    ]);
    let old_id =
        old.split("Task/").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().to_string();
    let overdue = chartroom(&["roi", "overdue", "--data", path(&data), "--by", "hana"]);
    assert!(overdue.contains(&old_id) && !overdue.contains(&id), "{overdue}");
    assert!(
        !run(&["roi", "release", "--data", path(&data), "--id", "../x", "--out", path(&out), "--by", "hana"])
            .status
            .success()
    );
}
