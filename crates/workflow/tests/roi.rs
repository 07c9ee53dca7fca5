//! Release of information with a test clock: intake from a Task, when an authorization is
//! needed and what an incomplete one lacks (named), the 30-day clock and its one extension,
//! a release of exactly the requested scope (nothing outside it, nothing of another patient),
//! the fee, and the overdue report.

use chartroom_workflow::roi::authorization::check;
use chartroom_workflow::roi::fee::{FeePolicy, estimated_pages, fee};
use chartroom_workflow::roi::release::release;
use chartroom_workflow::roi::{self, Delivery, Request, Requester};
use chartroom_workflow::{Clock, DAY, FixedClock};
mod support;

use serde_json::{Value, json};
use store::SqliteStore;
use support::{at, empty_store, put};

const RECEIVED: &str = "2025-03-03T09:00:00Z";

fn task(requester: &str, purpose: &str, extra: Vec<Value>) -> Value {
    let mut input = vec![
        json!({ "type": { "coding": [{ "system": roi::INPUT_SYSTEM, "code": "requester-type" }] }, "valueCode": requester }),
    ];
    input.extend(extra);
    json!({
        "resourceType": "Task", "id": "roi-1", "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": roi::WORKFLOW_SYSTEM, "code": roi::ROI_CODE }] },
        "for": { "reference": "Patient/pa" }, "authoredOn": RECEIVED,
        "requester": { "display": "Requester" },
        "reasonCode": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose }] },
        "input": input,
    })
}

fn named(code: &str, value: Value) -> Value {
    let mut entry = json!({ "type": { "coding": [{ "system": roi::INPUT_SYSTEM, "code": code }] } });
    entry.as_object_mut().unwrap().extend(value.as_object().unwrap().clone());
    entry
}

#[test]
fn a_request_reads_from_its_task_and_back() {
    let source = task(
        "attorney",
        "HLEGAL",
        vec![
            named("delivery", json!({ "valueCode": "paper" })),
            named("scope-start", json!({ "valueDate": "2024-01-01" })),
            named("scope-end", json!({ "valueDate": "2024-12-31" })),
            named("record-type", json!({ "valueCode": "Encounter" })),
            named("authorization", json!({ "valueReference": { "reference": "Consent/auth-1" } })),
        ],
    );
    let request = Request::from_task(&source).unwrap();
    assert_eq!(request.requester, Requester::Attorney);
    assert_eq!(request.delivery, Delivery::Paper);
    assert_eq!(request.scope.types, vec!["Encounter".to_string()]);
    assert_eq!(request.authorization.as_deref(), Some("auth-1"));
    assert!(request.needs_authorization());
    let again = Request::from_task(&request.to_task()).unwrap();
    assert_eq!(again, request);
    assert_eq!(request.to_task()["restriction"]["period"]["end"], "2025-04-02T09:00:00Z");

    // What is wrong is named where it is.
    for (bad, expected) in [
        (task("cousin", "HLEGAL", vec![]), "Task.input[0]"),
        (
            task("patient", "PATRQT", vec![named("record-type", json!({ "valueCode": "Organization" }))]),
            "Task.input[1]",
        ),
        (
            task(
                "patient",
                "PATRQT",
                vec![
                    named("scope-start", json!({ "valueDate": "2025-01-01" })),
                    named("scope-end", json!({ "valueDate": "2024-01-01" })),
                ],
            ),
            "starts (2025-01-01) after",
        ),
        (
            task("patient", "PATRQT", vec![named("scope-start", json!({ "valueDate": "March" }))]),
            "not a date",
        ),
    ] {
        let error = Request::from_task(&bad).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
    let mut someone_else = task("patient", "PATRQT", vec![]);
    someone_else["requester"] = json!({ "reference": "Patient/pb" });
    assert!(Request::from_task(&someone_else).unwrap_err().to_string().contains("Patient/pa"));
    let mut representative = task("personal-representative", "PATRQT", vec![]);
    assert!(Request::from_task(&representative).unwrap_err().to_string().contains("RelatedPerson"));
    representative["requester"] = json!({ "reference": "RelatedPerson/mother" });
    assert!(!Request::from_task(&representative).unwrap().needs_authorization());
    let mut other_patient = task("patient", "PATRQT", vec![]);
    other_patient["for"] = json!({ "reference": "Group/g" });
    assert!(Request::from_task(&other_patient).unwrap_err().to_string().contains("Task.for"));
}

#[test]
fn who_needs_an_authorization() {
    let needs = |requester: &str, purpose: &str| {
        let mut asked = task(requester, purpose, vec![]);
        if requester == "personal-representative" {
            asked["requester"] = json!({ "reference": "RelatedPerson/mother" });
        }
        if requester == "court" {
            asked["input"].as_array_mut().unwrap().push(named(
                "legal-order",
                json!({ "valueReference": { "reference": "DocumentReference/order-1" } }),
            ));
        }
        Request::from_task(&asked).unwrap().needs_authorization()
    };
    // 164.512: a public health authority for public health, a court by its order.
    assert!(!needs("public-health", "PUBHLTH"));
    assert!(needs("public-health", "HRESCH"));
    assert!(!needs("court", "HLEGAL"));
    let orderless = Request::from_task(&task("court", "HLEGAL", vec![])).unwrap_err().to_string();
    assert!(orderless.contains("legal-order"), "{orderless}");
    assert!(!needs("patient", "PATRQT"));
    assert!(!needs("personal-representative", "PATRQT"));
    assert!(!needs("provider", "TREAT"));
    assert!(!needs("insurer", "HPAYMT"));
    assert!(needs("insurer", "COVERAGE"));
    assert!(needs("attorney", "HLEGAL"));
    assert!(needs("provider", "HRESCH"));
    assert!(needs("other", "PATRQT"));
}

fn full_consent() -> Value {
    json!({
        "resourceType": "Consent", "id": "auth-1", "status": "active",
        "scope": { "coding": [{ "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "64292-6" }] }],
        "patient": { "reference": "Patient/pa" },
        "dateTime": "2025-02-20",
        "organization": [{ "reference": "Organization/hospital" }],
        "sourceAttachment": { "contentType": "application/pdf", "title": "Signed authorization" },
        "provision": {
            "type": "permit",
            "period": { "start": "2025-02-20", "end": "2025-08-20" },
            "actor": [{ "role": { "coding": [{ "code": "IRCP" }] }, "reference": { "display": "Requester" } }],
            "purpose": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HLEGAL" }],
            "class": [{ "code": "Encounter" }],
        }
    })
}

#[test]
fn an_incomplete_authorization_is_refused_naming_what_it_lacks() {
    let request = Request::from_task(&task(
        "attorney",
        "HLEGAL",
        vec![named("record-type", json!({ "valueCode": "Encounter" }))],
    ))
    .unwrap();
    let now = at(RECEIVED);
    assert!(check(&full_consent(), &request, now).is_empty(), "{:?}", check(&full_consent(), &request, now));
    let mut bare = full_consent();
    let object = bare.as_object_mut().unwrap();
    object.remove("organization");
    object.remove("sourceAttachment");
    let provision = bare["provision"].as_object_mut().unwrap();
    provision.remove("class");
    provision.remove("actor");
    provision.remove("purpose");
    provision.remove("period");
    let lacks: Vec<&str> = check(&bare, &request, now).iter().map(|m| m.element).collect();
    assert_eq!(lacks, vec!["description", "discloser", "recipient", "purpose", "expiry", "signature"]);
    // Another patient's, for another purpose, expired, revoked.
    let mut wrong = full_consent();
    wrong["patient"] = json!({ "reference": "Patient/pb" });
    wrong["status"] = json!("inactive");
    wrong["provision"]["purpose"] = json!([{ "code": "HMARKT" }]);
    let lacks: Vec<&str> = check(&wrong, &request, now).iter().map(|m| m.element).collect();
    assert_eq!(lacks, vec!["purpose-mismatch", "patient", "status"]);
    let later = at("2025-08-21T00:00:00Z");
    let lacks: Vec<String> =
        check(&full_consent(), &request, later).iter().map(|m| m.message.clone()).collect();
    assert_eq!(lacks, vec!["the authorization expired on 2025-08-20".to_string()]);
    // For someone else, for more than it covers, with exceptions, not yet in force.
    let mut other = full_consent();
    other["provision"]["actor"][0]["reference"] = json!({ "display": "Another firm" });
    other["provision"]["provision"] = json!([{ "type": "deny", "class": [{ "code": "Observation" }] }]);
    other["provision"]["period"]["start"] = json!("2025-04-01");
    let whole = Request::from_task(&task("attorney", "HLEGAL", vec![])).unwrap();
    let lacks: Vec<&str> = check(&other, &whole, now).iter().map(|m| m.element).collect();
    assert_eq!(lacks, vec!["recipient-mismatch", "scope-mismatch", "exceptions", "not-yet-valid"]);
}

#[test]
fn the_thirty_day_clock_and_its_one_extension() {
    let clock = FixedClock::at(at(RECEIVED));
    let mut request = Request::from_task(&task("patient", "PATRQT", vec![])).unwrap();
    assert_eq!(request.due(), at(RECEIVED) + 30 * DAY);
    clock.advance(29 * DAY);
    assert!(!request.overdue(clock.now_millis()));
    assert!(request.extend("  ", clock.now_millis()).is_err(), "a reason is required");
    request.extend("records are in off-site storage", clock.now_millis()).unwrap();
    assert_eq!(request.due(), at(RECEIVED) + 60 * DAY);
    let error = request.extend("again", clock.now_millis()).unwrap_err().to_string();
    assert!(error.contains("one extension"), "{error}");
    clock.advance(31 * DAY + 1);
    assert!(request.overdue(clock.now_millis()));
    // The extension survives the Task.
    let kept = Request::from_task(&request.to_task()).unwrap();
    assert_eq!(kept.extension, request.extension);

    // Too late to extend once the first 30 days are over.
    let mut late = Request::from_task(&task("patient", "PATRQT", vec![])).unwrap();
    let error = late.extend("busy", at(RECEIVED) + 30 * DAY + 1).unwrap_err().to_string();
    assert!(error.contains("before then"), "{error}");
    late.status = "completed".into();
    assert!(!late.overdue(at(RECEIVED) + 90 * DAY));
}

fn record(name: &str) -> SqliteStore {
    let store = empty_store(name);
    for resource in [
        json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Ames" }] }),
        json!({ "resourceType": "Patient", "id": "pb", "name": [{ "family": "Burns" }] }),
        json!({ "resourceType": "Encounter", "id": "e-2023", "status": "finished", "class": { "code": "AMB" },
                "subject": { "reference": "Patient/pa" }, "period": { "start": "2023-06-01T09:00:00Z", "end": "2023-06-01T10:00:00Z" } }),
        json!({ "resourceType": "Encounter", "id": "e-2024", "status": "finished", "class": { "code": "AMB" },
                "subject": { "reference": "Patient/pa" }, "period": { "start": "2024-06-01T09:00:00Z", "end": "2024-06-01T10:00:00Z" } }),
        // Spans the scope's first day: in it.
        json!({ "resourceType": "Encounter", "id": "e-span", "status": "finished", "class": { "code": "IMP" },
                "subject": { "reference": "Patient/pa" }, "period": { "start": "2023-12-30T09:00:00Z", "end": "2024-01-02T10:00:00Z" } }),
        json!({ "resourceType": "Encounter", "id": "e-other", "status": "finished", "class": { "code": "AMB" },
                "subject": { "reference": "Patient/pb" }, "period": { "start": "2024-06-01T09:00:00Z" } }),
        json!({ "resourceType": "Observation", "id": "o-2024", "status": "final", "code": { "text": "weight" },
                "subject": { "reference": "Patient/pa" }, "effectiveDateTime": "2024-06-01" }),
        // pa's, but naming pb too (pb's sample): not released.
        json!({ "resourceType": "Observation", "id": "o-shared", "status": "final", "code": { "text": "crossmatch" },
                "subject": { "reference": "Patient/pa" }, "effectiveDateTime": "2024-06-02",
                "performer": [{ "reference": "Patient/pb" }] }),
        json!({ "resourceType": "Condition", "id": "c-2024", "subject": { "reference": "Patient/pa" },
                "code": { "text": "asthma" }, "recordedDate": "2024-06-01" }),
        json!({ "resourceType": "Condition", "id": "c-undated", "subject": { "reference": "Patient/pa" }, "code": { "text": "allergy" } }),
        // A psychotherapy note: never in a general release.
        json!({ "resourceType": "Condition", "id": "c-psy", "subject": { "reference": "Patient/pa" }, "code": { "text": "session" },
                "recordedDate": "2024-06-01",
                "meta": { "security": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSYTHPN" }] } }),
    ] {
        put(&store, resource);
    }
    store
}

fn released(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn the_release_holds_exactly_the_requested_scope() {
    let store = record("roi-release");
    let now = at("2025-03-10T12:00:00Z");
    let scoped = Request::from_task(&task(
        "attorney",
        "HLEGAL",
        vec![
            named("scope-start", json!({ "valueDate": "2024-01-01" })),
            named("scope-end", json!({ "valueDate": "2024-12-31" })),
            named("record-type", json!({ "valueCode": "Encounter" })),
            named("record-type", json!({ "valueCode": "Condition" })),
        ],
    ))
    .unwrap();
    let bundle = release(&store, &scoped, now).unwrap();
    assert_eq!(released(&bundle), vec!["Condition/c-2024", "Encounter/e-2024", "Encounter/e-span"]);
    assert_eq!(bundle["type"], "collection");
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 3);

    // Everything of the patient's record, and nothing of another patient's.
    let whole = Request::from_task(&task("patient", "PATRQT", vec![])).unwrap();
    let bundle = release(&store, &whole, now).unwrap();
    assert_eq!(
        released(&bundle),
        vec![
            "Condition/c-2024",
            "Condition/c-undated",
            "Encounter/e-2023",
            "Encounter/e-2024",
            "Encounter/e-span",
            "Observation/o-2024",
            "Patient/pa"
        ]
    );
    let text = bundle.to_string();
    assert!(!text.contains("Patient/pb") && !text.contains("Burns"), "{text}");

    let mut missing = whole.clone();
    missing.patient = "nobody".into();
    assert!(release(&store, &missing, now).is_err());
}

#[test]
fn fees_follow_the_policy() {
    let policy = FeePolicy::default();
    let request = |requester: &str, purpose: &str, delivery: &str| {
        Request::from_task(&task(
            requester,
            purpose,
            vec![named("delivery", json!({ "valueCode": delivery }))],
        ))
        .unwrap()
    };
    assert_eq!(fee(&policy, &request("patient", "PATRQT", "fhir"), 9), 6.50);
    assert_eq!(fee(&policy, &request("patient", "PATRQT", "paper"), estimated_pages(12)), 2.50);
    assert_eq!(fee(&policy, &request("provider", "TREAT", "paper"), 40), 0.0);
    assert_eq!(fee(&policy, &request("attorney", "HLEGAL", "html"), 40), 25.0);
    assert_eq!(fee(&policy, &request("attorney", "HLEGAL", "paper"), 40), 36.50);
}

#[test]
fn overdue_requests_are_reported() {
    let store = record("roi-overdue");
    let mut late = Request::from_task(&task("patient", "PATRQT", vec![])).unwrap();
    late.id = "late".into();
    put(&store, late.to_task());
    let mut extended = late.clone();
    extended.id = "extended".into();
    extended.extend("off-site storage", at(RECEIVED) + 5 * DAY).unwrap();
    put(&store, extended.to_task());
    let mut done = late.clone();
    done.id = "done".into();
    done.status = "completed".into();
    put(&store, done.to_task());
    let ids =
        |now: i64| -> Vec<String> { roi::overdue(&store, now).unwrap().into_iter().map(|r| r.id).collect() };
    assert!(ids(at(RECEIVED) + 30 * DAY).is_empty());
    assert_eq!(ids(at(RECEIVED) + 31 * DAY), vec!["late"]);
    assert_eq!(ids(at(RECEIVED) + 61 * DAY), vec!["late", "extended"]);
}
