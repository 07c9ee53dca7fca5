//! The HIM workflows through the API with a test clock: record completion (a scan opening a
//! deficiency Task owned by the attending, closing it when the document arrives, the report),
//! and who may run them.

mod support;

use chartroom_api::Method;
use privacy::Role;
use serde_json::{Value, json};
use support::{Fixture, body, caller};
use workflow::DAY;

fn value<'a>(parameters: &'a Value, name: &str) -> &'a Value {
    let found = parameters["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap();
    found.as_object().unwrap().iter().find(|(k, _)| k.starts_with("value")).unwrap().1
}

fn stay() -> Vec<Value> {
    vec![
        json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Ames" }] }),
        json!({ "resourceType": "Practitioner", "id": "dr-a", "name": [{ "family": "Osler" }] }),
        json!({ "resourceType": "Encounter", "id": "stay", "status": "finished",
                "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP" },
                "subject": { "reference": "Patient/pa" },
                "participant": [{ "individual": { "reference": "Practitioner/dr-a" } }],
                "period": { "start": "2025-03-01T08:00:00Z", "end": "2025-03-05T12:00:00Z" } }),
        note("hp", "34117-2"),
    ]
}

fn note(id: &str, loinc: &str) -> Value {
    json!({ "resourceType": "DocumentReference", "id": id, "status": "current", "docStatus": "final",
            "type": { "coding": [{ "system": "http://loinc.org", "code": loinc }] },
            "subject": { "reference": "Patient/pa" }, "date": "2025-03-05T13:00:00Z",
            "author": [{ "reference": "Practitioner/dr-a" }], "authenticator": { "reference": "Practitioner/dr-a" },
            "content": [{ "attachment": { "contentType": "text/plain", "data": "Tm90ZQ==" } }],
            "context": { "encounter": [{ "reference": "Encounter/stay" }] } })
}

#[test]
fn record_completion_opens_and_closes_deficiencies_on_the_clock() {
    let f = Fixture::new("api-completion", Some("2025-03-10T00:00:00Z"));
    f.put_all(&stay());
    let him = caller("hana", Role::HimTechnician, None);
    // Five days after discharge nothing is due yet.
    let scan = f.call(Some(&him), Method::Post, "Task/$completion-scan", None);
    assert_eq!(scan.status, 200, "{}", body(&scan));
    assert_eq!(value(&body(&scan), "opened"), 0);
    // Twenty days after: the discharge summary is owed by the attending.
    f.clock.advance(15 * DAY);
    let scan = body(&f.call(Some(&him), Method::Post, "Task/$completion-scan", None));
    assert_eq!((value(&scan, "opened"), value(&scan, "open")), (&json!(1), &json!(1)));
    let tasks = body(&f.call(Some(&him), Method::Get, "Task?owner=Practitioner/dr-a&status=requested", None));
    assert_eq!(tasks["entry"].as_array().map(Vec::len), Some(1), "{tasks}");
    let task = tasks["entry"][0]["resource"].clone();
    assert_eq!(task["focus"]["reference"], "Encounter/stay");
    // Only the scan writes deficiency Tasks.
    let path = format!("Task/{}", task["id"].as_str().unwrap());
    let mut closed_by_hand = task.clone();
    closed_by_hand["status"] = json!("completed");
    let refused = f.call(Some(&him), Method::Put, &path, Some(&closed_by_hand));
    assert_eq!(refused.status, 422, "{}", body(&refused));
    // Scanning again opens nothing twice.
    let scan = body(&f.call(Some(&him), Method::Post, "Task/$completion-scan", None));
    assert_eq!(value(&scan, "opened"), 0);
    // The report: one clinician, one open, not yet delinquent (25 days after discharge).
    let report = body(&f.call(Some(&him), Method::Get, "Task/$completion-report", None));
    assert_eq!(value(&report, "openDeficiencies"), 1);
    assert_eq!(value(&report, "delinquentRecords"), 0);
    assert_eq!(value(&report, "completionRate"), 0.0);
    let dated = body(&f.call(Some(&him), Method::Get, "Task/$completion-report?asOf=2025-04-30", None));
    assert_eq!(value(&dated, "delinquentRecords"), 1);
    let bad = f.call(Some(&him), Method::Get, "Task/$completion-report?asOf=soon", None);
    assert_eq!(bad.status, 400);
    // The summary arrives: the next scan closes the Task.
    f.put_all(&[note("ds", "18842-5")]);
    let scan = body(&f.call(Some(&him), Method::Post, "Task/$completion-scan", None));
    assert_eq!((value(&scan, "closed"), value(&scan, "open")), (&json!(1), &json!(0)));
    let done = body(&f.call(Some(&him), Method::Get, &path, None));
    assert_eq!(done["status"], "completed");
    assert_eq!(done["executionPeriod"]["end"], "2025-03-25T00:00:00Z");
    // Coders, analysts and patients may not run it.
    for who in [
        caller("cody", Role::Coder, None),
        caller("ana", Role::Analyst, None),
        caller("pat", Role::Patient, Some("pa")),
    ] {
        assert_eq!(f.call(Some(&who), Method::Post, "Task/$completion-scan", None).status, 403);
        assert_eq!(f.call(Some(&who), Method::Get, "Task/$completion-report", None).status, 403);
    }
}
