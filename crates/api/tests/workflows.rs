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

fn amendment_request(focus: &str, change: &str) -> Value {
    json!({ "resourceType": "Task", "status": "requested", "intent": "order",
            "code": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow", "code": "amendment" }] },
            "for": { "reference": "Patient/pa" }, "focus": { "reference": focus },
            "authoredOn": "2027-03-01T09:00:00Z", "requester": { "reference": "Patient/pa" },
            "input": [
                { "type": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/amendment-input", "code": "requested-change" }] },
                  "valueString": change },
                { "type": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/amendment-input", "code": "notify" }] },
                  "valueReference": { "display": "Dr. Lee, cardiology" } } ] })
}

fn parameters(pairs: &[(&str, Value)]) -> Value {
    let parameter: Vec<Value> = pairs
        .iter()
        .map(|(name, value)| {
            let key = if value.is_object() { "resource" } else { "valueString" };
            json!({ "name": name, key: value })
        })
        .collect();
    json!({ "resourceType": "Parameters", "parameter": parameter })
}

fn own_release(f: &Fixture, him: &std::sync::Arc<chartroom_api::Caller>) -> Value {
    let task = json!({ "resourceType": "Task", "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow", "code": "release-of-information" }] },
        "for": { "reference": "Patient/pa" }, "authoredOn": "2025-03-01T09:00:00Z",
        "requester": { "reference": "Patient/pa", "display": "Ann Ames" },
        "reasonCode": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "PATRQT" }] },
        "input": [
            { "type": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/roi-input", "code": "requester-type" }] }, "valueCode": "patient" },
            { "type": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/roi-input", "code": "record-type" }] }, "valueCode": "Condition" } ] });
    let taken = f.call(Some(him), Method::Post, "Task/$roi-request", Some(&task));
    assert_eq!(taken.status, 201, "{}", body(&taken));
    let path = format!("Task/{}/$roi-release", body(&taken)["id"].as_str().unwrap());
    let released = f.call(Some(him), Method::Post, &path, None);
    assert_eq!(released.status, 200, "{}", body(&released));
    body(&released)
}

fn condition(id: &str, text: &str) -> Value {
    json!({ "resourceType": "Condition", "id": id, "subject": { "reference": "Patient/pa" },
            "code": { "text": text }, "recordedDate": "2025-01-10" })
}

#[test]
fn an_amendment_accepted_and_one_denied_with_the_statement_carried_into_the_next_release() {
    // In the future of the store's own clock, which stamps versions: the releases come after
    // the versions they hold.
    let f = Fixture::new("api-amendment", Some("2027-03-02T09:00:00Z"));
    f.put_all(&[
        json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Ames" }] }),
        json!({ "resourceType": "Patient", "id": "pb", "name": [{ "family": "Burns" }] }),
        condition("wrong-allergy", "Penicillin allergy"),
        condition("disputed", "Alcohol use disorder"),
        json!({ "resourceType": "Condition", "id": "theirs", "subject": { "reference": "Patient/pb" }, "code": { "text": "Asthma" } }),
    ]);
    let him = caller("hana", Role::HimTechnician, None);
    // The patient got a copy of their conditions before asking for the amendments.
    let first = own_release(&f, &him);
    assert_eq!(first["entry"].as_array().unwrap().len(), 2);
    // Another patient's resource cannot be the focus.
    let refused = f.call(
        Some(&him),
        Method::Post,
        "Task/$amend-request",
        Some(&amendment_request("Condition/theirs", "not mine")),
    );
    assert_eq!(refused.status, 422, "{}", body(&refused));
    let taken = f.call(
        Some(&him),
        Method::Post,
        "Task/$amend-request",
        Some(&amendment_request("Condition/wrong-allergy", "I am allergic to sulfa, not penicillin")),
    );
    assert_eq!(taken.status, 201, "{}", body(&taken));
    let accepted_id = body(&taken)["id"].as_str().unwrap().to_string();
    assert_eq!(body(&taken)["restriction"]["period"]["end"], "2027-04-30T09:00:00Z");
    // The clock: one extension before day 60, not two.
    f.clock.advance(58 * DAY);
    let extend = parameters(&[("reason", json!("the allergist is on leave"))]);
    let extended =
        f.call(Some(&him), Method::Post, &format!("Task/{accepted_id}/$amend-extend"), Some(&extend));
    assert_eq!(extended.status, 200, "{}", body(&extended));
    assert_eq!(body(&extended)["restriction"]["period"]["end"], "2027-05-30T09:00:00Z");
    assert_eq!(
        f.call(Some(&him), Method::Post, &format!("Task/{accepted_id}/$amend-extend"), Some(&extend)).status,
        422
    );
    // Accepted: a new version, its Provenance, and who must be told.
    let mut amended = condition("wrong-allergy", "Sulfonamide allergy");
    amended["note"] = json!([{ "text": "Amended at the patient's request" }]);
    let decide = parameters(&[("decision", json!("accept")), ("resource", amended)]);
    let decided =
        f.call(Some(&him), Method::Post, &format!("Task/{accepted_id}/$amend-decide"), Some(&decide));
    assert_eq!(decided.status, 200, "{}", body(&decided));
    let task = body(&decided);
    assert_eq!(task["status"], "completed");
    let outputs = task["output"].to_string();
    assert!(outputs.contains("Condition/wrong-allergy/_history/2"), "{outputs}");
    assert!(
        outputs.contains("Dr. Lee, cardiology") && outputs.contains("Ann Ames (release Task/"),
        "{outputs}"
    );
    assert!(outputs.contains("acceptance-notice"), "{outputs}");
    let now = body(&f.call(Some(&him), Method::Get, "Condition/wrong-allergy", None));
    assert_eq!(
        (now["code"]["text"].as_str(), now["meta"]["versionId"].as_str()),
        (Some("Sulfonamide allergy"), Some("2"))
    );
    let provenance =
        body(&f.call(Some(&him), Method::Get, "Provenance?target=Condition/wrong-allergy", None));
    let provenance = &provenance["entry"][0]["resource"];
    assert_eq!(provenance["entity"][0]["what"]["reference"], "Condition/wrong-allergy/_history/1");
    assert_eq!(provenance["entity"][1]["what"]["reference"], format!("Task/{accepted_id}"));
    assert_eq!(
        f.call(Some(&him), Method::Post, &format!("Task/{accepted_id}/$amend-decide"), Some(&decide)).status,
        422
    );

    // Denied, with a letter; the patient's statement of disagreement kept with the record.
    let taken = f.call(
        Some(&him),
        Method::Post,
        "Task/$amend-request",
        Some(&amendment_request("Condition/disputed", "I never had this")),
    );
    let denied_id = body(&taken)["id"].as_str().unwrap().to_string();
    let early = parameters(&[("statement", json!("too early"))]);
    assert_eq!(
        f.call(Some(&him), Method::Post, &format!("Task/{denied_id}/$amend-disagree"), Some(&early)).status,
        422
    );
    let bad = parameters(&[("decision", json!("deny")), ("basis", json!("do-not-like"))]);
    assert_eq!(
        f.call(Some(&him), Method::Post, &format!("Task/{denied_id}/$amend-decide"), Some(&bad)).status,
        400
    );
    let deny = parameters(&[
        ("decision", json!("deny")),
        ("basis", json!("accurate-and-complete")),
        ("explanation", json!("The diagnosis was made by your physician on 2025-01-10.")),
    ]);
    let decided = f.call(Some(&him), Method::Post, &format!("Task/{denied_id}/$amend-decide"), Some(&deny));
    assert_eq!(decided.status, 200, "{}", body(&decided));
    assert_eq!(body(&decided)["status"], "rejected");
    let statement =
        parameters(&[("statement", json!("I dispute this diagnosis; I have never been treated for it."))]);
    let disagreed =
        f.call(Some(&him), Method::Post, &format!("Task/{denied_id}/$amend-disagree"), Some(&statement));
    assert_eq!(disagreed.status, 200, "{}", body(&disagreed));
    // The next release of the conditions carries the letter and the statement.
    let next = own_release(&f, &him);
    let mut kinds: Vec<String> = next["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["resource"];
            let what = r["type"]["coding"][0]["code"].as_str().or(r["id"].as_str()).unwrap();
            format!("{}:{what}", r["resourceType"].as_str().unwrap())
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "Condition:disputed",
            "Condition:wrong-allergy",
            "DocumentReference:amendment-denial",
            "DocumentReference:statement-of-disagreement"
        ]
    );
    // Plain writes of the request are refused; coders may not decide.
    let coder = caller("cody", Role::Coder, None);
    assert_eq!(
        f.call(Some(&coder), Method::Post, &format!("Task/{denied_id}/$amend-decide"), Some(&deny)).status,
        403
    );
    let stored = body(&f.call(Some(&him), Method::Get, &format!("Task/{denied_id}"), None));
    assert_eq!(f.call(Some(&him), Method::Put, &format!("Task/{denied_id}"), Some(&stored)).status, 422);
}

fn legal_hold(extra: Value) -> Value {
    let mut task = json!({ "resourceType": "Task", "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow", "code": "legal-hold" }] },
        "description": "Smith v. General Hospital", "requester": { "display": "Office of General Counsel" } });
    task.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    task
}

#[test]
fn a_legal_hold_stops_every_write_path_and_the_purge_spares_it() {
    // Far enough ahead that the 2010 records are past a 10-year retention.
    let f = Fixture::new("api-retention", Some("2045-01-01T00:00:00Z"));
    let old = |id: &str, patient: &str| {
        json!({ "resourceType": "Observation", "id": id, "status": "final", "code": { "text": "Weight" },
                "subject": { "reference": format!("Patient/{patient}") }, "effectiveDateTime": "2010-05-01" })
    };
    f.put_all(&[
        json!({ "resourceType": "Patient", "id": "pa", "birthDate": "1950-01-01" }),
        json!({ "resourceType": "Patient", "id": "pb", "birthDate": "1950-01-01" }),
        old("a1", "pa"),
        old("b1", "pb"),
    ]);
    let him = caller("hana", Role::HimTechnician, None);
    let refused = f.call(Some(&him), Method::Post, "Task/$hold-place", Some(&legal_hold(json!({}))));
    assert_eq!(refused.status, 400, "{}", body(&refused));
    let placed = f.call(
        Some(&him),
        Method::Post,
        "Task/$hold-place",
        Some(&legal_hold(json!({ "for": { "reference": "Patient/pa" } }))),
    );
    assert_eq!(placed.status, 201, "{}", body(&placed));
    let hold_id = body(&placed)["id"].as_str().unwrap().to_string();
    assert_eq!(body(&placed)["status"], "in-progress");
    // Every path is refused: update, delete, patch, conditional update, a transaction.
    let mut changed = old("a1", "pa");
    changed["status"] = json!("amended");
    let admin = caller("root", Role::Admin, None);
    for (method, path, payload) in [
        (Method::Put, "Observation/a1", Some(changed.clone())),
        (Method::Delete, "Observation/a1", None),
        (Method::Put, "Observation?_id=a1", Some(changed.clone())),
        (
            Method::Post,
            "",
            Some(json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
            { "resource": changed, "request": { "method": "PUT", "url": "Observation/a1" } }] })),
        ),
    ] {
        let answer = f.call(Some(&admin), method, path, payload.as_ref());
        assert_eq!(answer.status, 409, "{path}: {}", body(&answer));
        assert!(body(&answer).to_string().contains("legal hold"), "{}", body(&answer));
    }
    let patch = json!([{ "op": "replace", "path": "/status", "value": "amended" }]);
    let patched = f.call(Some(&admin), Method::Patch, "Observation/a1", Some(&patch));
    assert_eq!(patched.status, 409, "{}", body(&patched));
    // The hold Task is written only by its operations.
    let stored = body(&f.call(Some(&him), Method::Get, &format!("Task/{hold_id}"), None));
    let mut lifted = stored.clone();
    lifted["status"] = json!("completed");
    assert_eq!(f.call(Some(&admin), Method::Put, &format!("Task/{hold_id}"), Some(&lifted)).status, 422);

    // The report and the purge: pb's old record goes, pa's is kept under the hold.
    let report = body(&f.call(Some(&him), Method::Get, "$retention-report", None));
    assert_eq!((value(&report, "resources"), value(&report, "held")), (&json!(2), &json!(2)), "{report}");
    let a1_before = body(&f.call(Some(&him), Method::Get, "Observation/a1/_history", None));
    let purged = f.call(Some(&him), Method::Post, "$retention-purge", None);
    assert_eq!(purged.status, 200, "{}", body(&purged));
    let certificate = value(&body(&purged), "certificate")["reference"].as_str().unwrap().to_string();
    assert_eq!(f.call(Some(&him), Method::Get, "Observation/b1", None).status, 404);
    assert_eq!(f.call(Some(&him), Method::Get, "Patient/pb", None).status, 404);
    let a1_after = body(&f.call(Some(&him), Method::Get, "Observation/a1/_history", None));
    assert_eq!(a1_before["entry"], a1_after["entry"]);
    let certificate = body(&f.call(Some(&him), Method::Get, &certificate, None));
    assert!(
        certificate["description"].as_str().unwrap().contains("Destroyed 2 resources of 1 patients"),
        "{certificate}"
    );
    assert_eq!(
        f.call(
            Some(&admin),
            Method::Delete,
            &format!("DocumentReference/{}", certificate["id"].as_str().unwrap()),
            None
        )
        .status,
        422
    );
    // Released: the record may change, and the next purge takes it.
    let release = json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": "settled" }] });
    let released = f.call(Some(&him), Method::Post, &format!("Task/{hold_id}/$hold-release"), Some(&release));
    assert_eq!(released.status, 200, "{}", body(&released));
    let report = body(&f.call(Some(&him), Method::Get, "$retention-report", None));
    assert_eq!((value(&report, "resources"), value(&report, "held")), (&json!(2), &json!(0)));
    // Coders may not place holds or purge; unknown schedules are refused.
    let coder = caller("cody", Role::Coder, None);
    assert_eq!(f.call(Some(&coder), Method::Post, "$retention-purge", None).status, 403);
    assert_eq!(f.call(Some(&him), Method::Get, "$retention-report?schedule=XX", None).status, 400);
}

#[test]
fn a_release_is_read_as_its_recipient_with_the_departments_fees_and_an_html_copy() {
    let fees = workflow::roi::fee::FeePolicy { electronic_flat: 6.5, ..Default::default() };
    let config = chartroom_api::ApiConfig { roi_fees: fees, ..Default::default() };
    let f = Fixture::with_config("api-roi-recipient", Some("2027-03-02T09:00:00Z"), config);
    let encounter = |id: &str| {
        json!({ "resourceType": "Encounter", "id": id, "status": "finished",
                "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
                "subject": { "reference": "Patient/pa" }, "period": { "start": "2024-06-01T09:00:00Z", "end": "2024-06-01T10:00:00Z" } })
    };
    f.put_all(&[
        json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Ames" }] }),
        encounter("e1"),
        condition("c1", "Asthma"),
        // The patient's directive: nothing of their encounters for payment.
        json!({ "resourceType": "Consent", "id": "no-payment", "status": "active",
                "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
                "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
                "patient": { "reference": "Patient/pa" },
                "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN" }] },
                "provision": { "type": "permit", "provision": [{ "type": "deny",
                    "purpose": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HPAYMT" }],
                    "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Encounter" }] }] } }),
    ]);
    let him = caller("hana", Role::HimTechnician, None);
    let request = |kind: &str, purpose: &str, requester: Value| {
        json!({ "resourceType": "Task", "status": "requested", "intent": "order",
            "code": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow", "code": "release-of-information" }] },
            "for": { "reference": "Patient/pa" }, "authoredOn": "2027-03-01T09:00:00Z", "requester": requester,
            "reasonCode": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose }] },
            "input": [
                { "type": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/roi-input", "code": "requester-type" }] }, "valueCode": kind },
                { "type": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/roi-input", "code": "record-type" }] }, "valueCode": "Encounter" },
                { "type": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/roi-input", "code": "record-type" }] }, "valueCode": "Condition" } ] })
    };
    let release = |task: Value, accept: Option<&str>| {
        let taken = f.call(Some(&him), Method::Post, "Task/$roi-request", Some(&task));
        assert_eq!(taken.status, 201, "{}", body(&taken));
        let path = format!("Task/{}/$roi-release", body(&taken)["id"].as_str().unwrap());
        f.call_accepting(Some(&him), Method::Post, &path, None, accept)
    };
    // To the insurer for payment: the directive withholds the encounter.
    let insurer = release(request("insurer", "HPAYMT", json!({ "display": "Acme Health" })), None);
    assert_eq!(insurer.status, 200, "{}", body(&insurer));
    let released: Vec<String> = body(&insurer)["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(released, ["c1"]);
    // To the patient: their whole record, as an HTML copy.
    let own = release(
        request("patient", "PATRQT", json!({ "reference": "Patient/pa", "display": "Ann Ames" })),
        Some("text/html"),
    );
    assert_eq!(own.status, 200);
    assert_eq!(own.content_type, Some("text/html; charset=utf-8"));
    let page = String::from_utf8(own.body.clone().unwrap_or_default()).unwrap();
    assert!(
        page.contains("Copy of health records") && page.contains("Encounter/e1") && page.contains("Asthma"),
        "{page}"
    );
    assert!(page.contains("Ann Ames (patient)"), "{page}");
    // A directive aimed at one recipient: a request naming its requester only in words cannot
    // be checked against it and is refused; named by reference, the directive holds.
    f.put_all(&[json!({ "resourceType": "Consent", "id": "not-acme", "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": "Patient/pa" },
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN" }] },
        "provision": { "type": "permit", "provision": [{ "type": "deny",
            "actor": [{ "role": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP" }] },
                        "reference": { "reference": "Organization/acme" } }],
            "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Condition" }] }] } })]);
    let unnamed = release(request("insurer", "HPAYMT", json!({ "display": "Acme Health" })), None);
    assert_eq!(unnamed.status, 422, "{}", body(&unnamed));
    assert!(body(&unnamed).to_string().contains("name the requester by reference"));
    let named = release(
        request("insurer", "HPAYMT", json!({ "reference": "Organization/acme", "display": "Acme Health" })),
        None,
    );
    assert_eq!(named.status, 200, "{}", body(&named));
    assert!(body(&named)["entry"].as_array().is_none_or(Vec::is_empty), "{}", body(&named));
    // A directive that withholds from the steward: the patient's own copy is whole or not
    // given; an administrator gives it.
    f.put_all(&[json!({ "resourceType": "Consent", "id": "no-conditions", "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": "Patient/pa" },
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN" }] },
        "provision": { "type": "permit", "provision": [{ "type": "deny",
            "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Condition" }] }] } })]);
    let own_request =
        request("patient", "PATRQT", json!({ "reference": "Patient/pa", "display": "Ann Ames" }));
    let refused = release(own_request.clone(), None);
    assert_eq!(refused.status, 403, "{}", body(&refused));
    let admin = caller("root", Role::Admin, None);
    let taken = f.call(Some(&admin), Method::Post, "Task/$roi-request", Some(&own_request));
    let path = format!("Task/{}/$roi-release", body(&taken)["id"].as_str().unwrap());
    let whole = f.call(Some(&admin), Method::Post, &path, None);
    assert_eq!(whole.status, 200, "{}", body(&whole));
    assert!(body(&whole).to_string().contains("Asthma"));
    // The department's fees: nothing for payment, the flat fee for the patient's electronic copy.
    let stored = body(&f.call(Some(&him), Method::Get, "Task?_count=100", None));
    let fees: Vec<f64> = stored["entry"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["resource"]["output"].as_array().cloned().unwrap_or_default())
        .filter_map(|o| o["valueMoney"]["value"].as_f64())
        .collect();
    assert_eq!(fees.len(), 4, "{fees:?}");
    assert!(fees.contains(&0.0) && fees.contains(&6.5), "{fees:?}");
    let policy = workflow::roi::fee::FeePolicy::from_json(&json!({ "thirdPartyBase": 40 })).unwrap();
    assert_eq!((policy.third_party_base, policy.electronic_flat), (40.0, 6.5));
    assert!(workflow::roi::fee::FeePolicy::from_json(&json!({ "thirdPartyBase": -1 })).is_err());
}

#[test]
fn holds_survive_a_conditional_create_and_disguised_codes() {
    let f = Fixture::new("api-hold-guards", Some("2027-03-02T09:00:00Z"));
    f.put_all(&[
        json!({ "resourceType": "Patient", "id": "pa" }),
        json!({ "resourceType": "Encounter", "id": "e1", "status": "finished",
                "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
                "subject": { "reference": "Patient/pa" } }),
        json!({ "resourceType": "Observation", "id": "o1", "status": "final", "code": { "text": "Weight" },
                "subject": { "reference": "Patient/pa" }, "encounter": { "reference": "Encounter/e1" } }),
    ]);
    let him = caller("hana", Role::HimTechnician, None);
    let admin = caller("root", Role::Admin, None);
    // A hold on an encounter is on its patient's record: the Patient is named and kept.
    let placed = f.call(
        Some(&him),
        Method::Post,
        "Task/$hold-place",
        Some(&legal_hold(json!({ "focus": { "reference": "Encounter/e1" } }))),
    );
    assert_eq!(placed.status, 201, "{}", body(&placed));
    let hold = body(&placed);
    assert_eq!(hold["for"]["reference"], "Patient/pa");
    assert_eq!(f.call(Some(&admin), Method::Delete, "Patient/pa", None).status, 409);
    assert_eq!(f.call(Some(&admin), Method::Delete, "Observation/o1", None).status, 409);
    // A conditional create that finds the hold changes nothing: the hold still binds.
    let request = chartroom_api::Request {
        method: Some(Method::Post),
        base: "http://test/fhir".into(),
        path: "Task".into(),
        if_none_exist: Some(format!("_id={}", hold["id"].as_str().unwrap())),
        body: serde_json::to_vec(&json!({ "resourceType": "Task", "status": "draft", "intent": "order" }))
            .unwrap(),
        caller: Some(admin.clone()),
        ..Default::default()
    };
    let found =
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f.api.handle(&request));
    assert!(found.status < 300, "{}", body(&found));
    assert_eq!(f.call(Some(&admin), Method::Delete, "Observation/o1", None).status, 409);
    // A Task in the workflows' code system is the department's, whatever coding comes first.
    let disguised = json!({ "resourceType": "Task", "id": "t-disguised", "status": "in-progress", "intent": "order",
        "code": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow" },
                             { "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow", "code": "legal-hold" }] },
        "description": "x" });
    assert_eq!(f.call(Some(&admin), Method::Put, "Task/t-disguised", Some(&disguised)).status, 422);
}
