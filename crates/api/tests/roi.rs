//! Release of information through the API: intake (an attorney's request refused without an
//! authorization, and with an incomplete one naming each missing element), the extension, the
//! release of exactly the scope with the request completed and the disclosure named for the
//! audit trail, the overdue report, and who may do it.

mod support;

use chartroom_api::Method;
use privacy::Role;
use serde_json::{Value, json};
use support::{Fixture, body, caller};

const INPUTS: &str = "https://chartroom.dev/fhir/CodeSystem/roi-input";

fn fixture(name: &str) -> Fixture {
    let f = Fixture::new(name, None);
    f.put_all(&[
            json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Ames" }] }),
            json!({ "resourceType": "Patient", "id": "pb", "name": [{ "family": "Burns" }] }),
            json!({ "resourceType": "Encounter", "id": "e1", "status": "finished", "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
                    "subject": { "reference": "Patient/pa" }, "period": { "start": "2024-06-01T09:00:00Z", "end": "2024-06-01T10:00:00Z" } }),
            json!({ "resourceType": "Encounter", "id": "e0", "status": "finished", "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
                    "subject": { "reference": "Patient/pa" }, "period": { "start": "2020-06-01T09:00:00Z", "end": "2020-06-01T10:00:00Z" } }),
            json!({ "resourceType": "Encounter", "id": "e9", "status": "finished", "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
                    "subject": { "reference": "Patient/pb" }, "period": { "start": "2024-06-01T09:00:00Z", "end": "2024-06-01T10:00:00Z" } }),
            consent("complete", true),
            json!({ "resourceType": "RelatedPerson", "id": "rp-a", "patient": { "reference": "Patient/pa" }, "name": [{ "family": "Ames" }] }),
            json!({ "resourceType": "RelatedPerson", "id": "rp-b", "patient": { "reference": "Patient/pb" }, "name": [{ "family": "Burns" }] }),
            consent("bare", false),
    ]);
    f
}

fn consent(id: &str, complete: bool) -> Value {
    let mut consent = json!({
        "resourceType": "Consent", "id": id, "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "64292-6" }] }],
        "patient": { "reference": "Patient/pa" },
        "dateTime": "2024-12-01",
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN" }] },
        "organization": [{ "display": "General Hospital" }],
        "sourceAttachment": { "contentType": "application/pdf", "title": "Signed authorization" },
        "provision": {
            "type": "permit",
            "period": { "start": "2024-12-01", "end": "2099-12-01" },
            "actor": [{ "role": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP" }] },
                        "reference": { "display": "Law office of A. Smith" } }],
            "purpose": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HLEGAL" }],
            "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Encounter" }],
        }
    });
    if !complete {
        let object = consent.as_object_mut().unwrap();
        object.remove("sourceAttachment");
        object.remove("organization");
        consent["provision"].as_object_mut().unwrap().remove("period");
    }
    consent
}

fn task(requester: &str, purpose: &str, authored: &str, extra: Vec<Value>) -> Value {
    let mut input = vec![
        json!({ "type": { "coding": [{ "system": INPUTS, "code": "requester-type" }] }, "valueCode": requester }),
        json!({ "type": { "coding": [{ "system": INPUTS, "code": "scope-start" }] }, "valueDate": "2024-01-01" }),
        json!({ "type": { "coding": [{ "system": INPUTS, "code": "record-type" }] }, "valueCode": "Encounter" }),
    ];
    input.extend(extra);
    json!({
        "resourceType": "Task", "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow", "code": "release-of-information" }] },
        "for": { "reference": "Patient/pa" }, "authoredOn": authored,
        "requester": { "display": "Law office of A. Smith" },
        "reasonCode": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose }] },
        "input": input,
    })
}

fn authorization(consent: &str) -> Value {
    json!({ "type": { "coding": [{ "system": INPUTS, "code": "authorization" }] }, "valueReference": { "reference": format!("Consent/{consent}") } })
}

fn today() -> String {
    fhir::DateTime::now_utc().to_string()
}

#[test]
fn a_request_is_taken_in_extended_and_released_with_exactly_its_scope() {
    let f = fixture("api-roi");
    let him = caller("hana", Role::HimTechnician, None);

    // An attorney without an authorization, then with an incomplete one.
    let response = f.call(
        Some(&him),
        Method::Post,
        "Task/$roi-request",
        Some(&task("attorney", "HLEGAL", &today(), vec![])),
    );
    assert_eq!(response.status, 422, "{}", body(&response));
    assert!(body(&response).to_string().contains("164.508"));
    let response = f.call(
        Some(&him),
        Method::Post,
        "Task/$roi-request",
        Some(&task("attorney", "HLEGAL", &today(), vec![authorization("bare")])),
    );
    assert_eq!(response.status, 422, "{}", body(&response));
    let issues = body(&response)["issue"].as_array().unwrap().clone();
    let expressions: Vec<&str> = issues.iter().map(|i| i["expression"][0].as_str().unwrap()).collect();
    assert_eq!(
        expressions,
        vec![
            "Consent.organization",
            "Consent.provision.period.end",
            "Consent.sourceAttachment | sourceReference, Consent.dateTime"
        ]
    );

    // With a complete one: stored, due in 30 days.
    let response = f.call(
        Some(&him),
        Method::Post,
        "Task/$roi-request",
        Some(&task("attorney", "HLEGAL", &today(), vec![authorization("complete")])),
    );
    assert_eq!(response.status, 201, "{}", body(&response));
    let stored = body(&response);
    let id = stored["id"].as_str().unwrap().to_string();
    assert!(stored["restriction"]["period"]["end"].is_string());
    assert!(response.audit.patients.contains(&"Patient/pa".to_string()), "{:?}", response.audit.patients);

    // The one extension.
    let reason = json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": "records in off-site storage" }] });
    let extend = format!("Task/{id}/$roi-extend");
    assert_eq!(f.call(Some(&him), Method::Post, &extend, Some(&reason)).status, 200);
    let again = f.call(Some(&him), Method::Post, &extend, Some(&reason));
    assert_eq!(again.status, 422, "{}", body(&again));

    // The release: pa's encounters from 2024 on, nothing else; the request completed.
    let release = format!("Task/{id}/$roi-release");
    let response = f.call(Some(&him), Method::Post, &release, None);
    assert_eq!(response.status, 200, "{}", body(&response));
    let bundle = body(&response);
    let released: Vec<&str> =
        bundle["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap()).collect();
    assert_eq!(released, vec!["http://test/fhir/Encounter/e1"]);
    let disclosure = response.audit.disclosure.clone().unwrap();
    assert!(
        disclosure.contains("Law office of A. Smith (attorney)")
            && disclosure.contains("HLEGAL")
            && disclosure.contains("Consent/complete"),
        "{disclosure}"
    );
    let stored = body(&f.call(Some(&him), Method::Get, &format!("Task/{id}"), None));
    assert_eq!(stored["status"], "completed");
    assert_eq!(stored["output"][1]["valueMoney"]["value"], 25.0);
    assert_eq!(f.call(Some(&him), Method::Post, &release, None).status, 422, "released once");
    assert!(disclosure.contains("(Encounter, 2024-01-01 to the release)"), "{disclosure}");

    // The request is changed only through its operations, by anyone.
    let mut reopened = stored.clone();
    reopened["status"] = json!("requested");
    for who in [Some(&him), None] {
        let response = f.call(who, Method::Put, &format!("Task/{id}"), Some(&reopened));
        assert_eq!(response.status, 422, "{}", body(&response));
        assert!(body(&response).to_string().contains("$roi-request"));
        assert_eq!(f.call(who, Method::Delete, &format!("Task/{id}"), None).status, 422);
    }
    let forged = task("patient", "PATRQT", &today(), vec![]);
    assert_eq!(f.call(Some(&him), Method::Post, "Task", Some(&forged)).status, 422);
    let mut renamed = reopened.clone();
    renamed["code"] = json!({ "text": "something else" });
    assert_eq!(f.call(Some(&him), Method::Put, &format!("Task/{id}"), Some(&renamed)).status, 422);
}

#[test]
fn overdue_requests_are_listed_and_only_stewards_work_them() {
    let f = fixture("api-roi-overdue");
    let him = caller("hana", Role::HimTechnician, None);
    let old = task("patient", "PATRQT", "2020-01-02T09:00:00Z", vec![]);
    let response = f.call(Some(&him), Method::Post, "Task/$roi-request", Some(&old));
    assert_eq!(response.status, 201, "{}", body(&response));
    let id = body(&response)["id"].as_str().unwrap().to_string();
    let response = f.call(
        Some(&him),
        Method::Post,
        "Task/$roi-request",
        Some(&task("patient", "PATRQT", &today(), vec![])),
    );
    assert_eq!(response.status, 201);
    let overdue = body(&f.call(Some(&him), Method::Get, "$roi-overdue", None));
    let listed: Vec<&str> =
        overdue["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![id.as_str()]);
    // Too late for an extension.
    let reason =
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": "late" }] });
    assert_eq!(
        f.call(Some(&him), Method::Post, &format!("Task/{id}/$roi-extend"), Some(&reason)).status,
        422
    );

    for (who, role, patient) in
        [("cody", Role::Coder, None), ("alice", Role::Patient, Some("pa")), ("ana", Role::Analyst, None)]
    {
        let someone = caller(who, role, patient);
        let response = f.call(Some(&someone), Method::Post, "Task/$roi-request", Some(&old));
        assert_eq!(response.status, 403, "{who}: {}", body(&response));
        assert_eq!(f.call(Some(&someone), Method::Get, "$roi-overdue", None).status, 403, "{who}");
    }
    // Bad requests say what and where.
    let mut bad = task("cousin", "PATRQT", &today(), vec![]);
    let response = f.call(Some(&him), Method::Post, "Task/$roi-request", Some(&bad));
    assert_eq!(response.status, 400);
    assert!(body(&response).to_string().contains("Task.input[0]"));
    bad["for"] = json!({ "reference": "Patient/nobody" });
    bad["input"][0]["valueCode"] = json!("patient");
    assert_eq!(f.call(Some(&him), Method::Post, "Task/$roi-request", Some(&bad)).status, 422);
    // Received in the future; a representative who is not on record as the patient's.
    let future = task("patient", "PATRQT", "2999-01-01T00:00:00Z", vec![]);
    assert_eq!(f.call(Some(&him), Method::Post, "Task/$roi-request", Some(&future)).status, 400);
    let mut representative = task("personal-representative", "PATRQT", &today(), vec![]);
    representative["requester"] = json!({ "reference": "RelatedPerson/rp-b" });
    let response = f.call(Some(&him), Method::Post, "Task/$roi-request", Some(&representative));
    assert_eq!(response.status, 422, "{}", body(&response));
    representative["requester"] = json!({ "reference": "RelatedPerson/rp-a" });
    let response = f.call(Some(&him), Method::Post, "Task/$roi-request", Some(&representative));
    assert_eq!(response.status, 201, "{}", body(&response));
}
