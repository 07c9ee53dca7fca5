//! `Patient/$match` and the duplicate check at registration, over a small register: a
//! person registered again with a nickname and a transposed birth date is found, graded and
//! warned about; under `Refuse` the second registration is refused with 409 and not written.

use std::sync::Arc;

use chartroom_api::{Api, ApiConfig, DuplicateCheck, Method, Request, Response};
use serde_json::{Value, json};
use store::Store;

fn patient(id: &str, given: &str, family: &str, birth: &str, ssn: Option<&str>, line: &str) -> Value {
    let mut patient = json!({ "resourceType": "Patient", "id": id, "gender": "male", "birthDate": birth,
        "name": [{ "use": "official", "family": family, "given": [given] }],
        "address": [{ "use": "home", "line": [line], "city": "Dayton", "state": "OH", "postalCode": "45402" }] });
    if id.is_empty() {
        patient.as_object_mut().unwrap().remove("id");
    }
    if let Some(ssn) = ssn {
        patient["identifier"] = json!([{ "system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn }]);
    }
    patient
}

/// Forty people of assorted names, so the model has non-matches to learn from, and one
/// William Nelson.
fn register() -> Vec<Value> {
    let given = ["Ann", "Bo", "Cyd", "Dee", "Eli", "Fay", "Gus", "Hal"];
    let family = ["Adams", "Baker", "Clark", "Dunn", "Evans"];
    let mut people = Vec::new();
    for n in 0..40 {
        people.push(patient(
            &format!("p{n}"),
            given[n % given.len()],
            family[n / given.len()],
            &format!("19{:02}-0{}-1{}", 40 + n, 1 + n % 9, n % 10),
            Some(&format!("999-10-{:04}", 1000 + n)),
            &format!("{} Main St", 100 + n),
        ));
    }
    people.push(patient("wn", "William", "Nelson", "1970-03-04", Some("999-55-1234"), "12 High St"));
    people
}

struct Fixture {
    api: Api,
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
}

#[test]
fn a_pair_decided_different_is_not_offered_again() {
    let f = fixture("api-match-decided", DuplicateCheck::Off);
    let mut registered = bill();
    registered["id"] = json!("bn");
    assert!(f.call(Method::Put, "Patient/bn", "", Some(&registered), None).status < 300);
    let first = |f: &Fixture| {
        let response =
            f.call(Method::Post, "Patient/$match", "", Some(&parameters(&registered, false)), None);
        body(&response)["entry"][0]["resource"]["id"].clone()
    };
    assert_eq!(first(&f), "wn");
    let dir = testkit::temp_dir("api-match-decided");
    mpi::review::record(
        &mpi::review::decisions_path(&dir.join("data")),
        &mpi::review::Decision {
            a: "wn".into(),
            b: "bn".into(),
            verdict: mpi::review::Verdict::DifferentPeople,
            by: "hana".into(),
            at: "2026-12-07T10:00:00Z".into(),
        },
    )
    .unwrap();
    assert_ne!(first(&f), "wn", "a pair decided different is offered again");
}

fn fixture(name: &str, check: DuplicateCheck) -> Fixture {
    let dir = testkit::temp_dir(name);
    let store = testkit::open_store("matching", &dir.join("data"));
    let decisions = mpi::review::decisions_path(&dir.join("data"));
    let _ = std::fs::remove_file(&decisions);
    let config = ApiConfig { duplicate_check: check, mpi_decisions: Some(decisions), ..ApiConfig::default() };
    let api = Api::new(store.clone(), config);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let f = Fixture { api, runtime, store };
    for person in register() {
        let path = format!("Patient/{}", person["id"].as_str().unwrap());
        let response = f.call(Method::Put, &path, "", Some(&person), None);
        assert!(response.status < 300, "{}", body(&response));
    }
    f
}

impl Fixture {
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &str,
        payload: Option<&Value>,
        prefer: Option<&str>,
    ) -> Response {
        let request = Request {
            method: Some(method),
            base: "http://test/fhir".into(),
            path: path.into(),
            query: query.into(),
            body: payload.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default(),
            prefer: prefer.map(str::to_string),
            ..Default::default()
        };
        self.runtime.block_on(self.api.handle(&request))
    }
}

fn body(response: &Response) -> Value {
    serde_json::from_slice(response.body.as_deref().unwrap_or(b"null")).unwrap_or(Value::Null)
}

/// William Nelson again: as Bill, day and month transposed, no SSN, same address.
fn bill() -> Value {
    patient("", "Bill", "Nelson", "1970-04-03", None, "12 High St")
}

fn parameters(resource: &Value, only_certain: bool) -> Value {
    json!({ "resourceType": "Parameters", "parameter": [
        { "name": "resource", "resource": resource },
        { "name": "onlyCertainMatches", "valueBoolean": only_certain },
    ] })
}

#[test]
fn match_finds_and_grades_a_second_registration() {
    let f = fixture("api-match", DuplicateCheck::Warn);
    let response = f.call(Method::Post, "Patient/$match", "", Some(&parameters(&bill(), false)), None);
    assert_eq!(response.status, 200, "{}", body(&response));
    let bundle = body(&response);
    assert_eq!(bundle["type"], "searchset");
    let first = &bundle["entry"][0];
    assert_eq!(first["resource"]["id"], "wn", "{bundle}");
    assert_eq!(first["search"]["mode"], "match");
    let score = first["search"]["score"].as_f64().unwrap();
    assert!(score >= 0.5, "{bundle}");
    assert_eq!(first["search"]["extension"][0]["url"], "http://hl7.org/fhir/StructureDefinition/match-grade");
    // Nobody else is a probable match.
    assert!(
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .all(|e| e["search"]["score"].as_f64().unwrap() < 0.5),
        "{bundle}"
    );
    // A stranger matches no one.
    let stranger = patient("", "Zed", "Quinn", "2001-12-30", None, "1 Elm St");
    let response = f.call(Method::Post, "Patient/$match", "", Some(&parameters(&stranger, true)), None);
    assert_eq!(body(&response)["total"], 0, "{}", body(&response));
    // Bad input.
    let response = f.call(
        Method::Post,
        "Patient/$match",
        "",
        Some(&json!({ "resourceType": "Parameters", "parameter": [] })),
        None,
    );
    assert_eq!(response.status, 400);
    let observation = json!({ "resourceType": "Observation", "status": "final", "code": { "text": "x" } });
    let response = f.call(Method::Post, "Patient/$match", "", Some(&parameters(&observation, false)), None);
    assert_eq!(response.status, 400);
}

#[test]
fn a_probable_duplicate_is_warned_about_at_registration() {
    let f = fixture("api-match-warn", DuplicateCheck::Warn);
    let response = f.call(Method::Post, "Patient", "", Some(&bill()), Some("return=OperationOutcome"));
    assert_eq!(response.status, 201, "{}", body(&response));
    let outcome = body(&response);
    let warning = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == "duplicate")
        .expect("a duplicate warning");
    assert_eq!(warning["severity"], "warning");
    assert!(warning["diagnostics"].as_str().unwrap().contains("Patient/wn"), "{outcome}");
    // The new registration is itself on file now, and matched next time.
    let response = f.call(Method::Post, "Patient/$match", "", Some(&parameters(&bill(), false)), None);
    assert!(body(&response)["total"].as_u64().unwrap() >= 2, "{}", body(&response));
}

#[test]
fn under_refuse_a_probable_duplicate_is_not_written() {
    let f = fixture("api-match-refuse", DuplicateCheck::Refuse);
    let before = f.store.count_live().unwrap();
    let response = f.call(Method::Post, "Patient", "", Some(&bill()), None);
    assert_eq!(response.status, 409, "{}", body(&response));
    assert!(body(&response)["issue"][0]["diagnostics"].as_str().unwrap().contains("Patient/wn"));
    assert_eq!(f.store.count_live().unwrap(), before, "nothing written");
    // Someone new is registered as usual.
    let stranger = patient("", "Zed", "Quinn", "2001-12-30", None, "1 Elm St");
    assert_eq!(f.call(Method::Post, "Patient", "", Some(&stranger), None).status, 201);
}

fn bundle(kind: &str, patients: &[Value]) -> Value {
    let entry: Vec<Value> = patients
        .iter()
        .enumerate()
        .map(|(n, p)| {
            json!({ "fullUrl": format!("urn:uuid:00000000-0000-4000-8000-00000000000{n}"), "resource": p,
                    "request": { "method": "POST", "url": "Patient" } })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": kind, "entry": entry })
}

#[test]
fn registrations_inside_bundles_are_checked_too() {
    let stranger = patient("", "Zed", "Quinn", "2001-12-30", None, "1 Elm St");
    // Warn: the transaction goes through, the duplicate's entry carries the warning.
    let f = fixture("api-match-bundle-warn", DuplicateCheck::Warn);
    let response =
        f.call(Method::Post, "", "", Some(&bundle("transaction", &[stranger.clone(), bill()])), None);
    assert_eq!(response.status, 200, "{}", body(&response));
    let answer = body(&response);
    let outcome = &answer["entry"][1]["response"]["outcome"];
    assert!(
        outcome.to_string().contains("Patient/wn") && outcome.to_string().contains("duplicate"),
        "{answer}"
    );
    assert!(answer["entry"][0]["response"]["outcome"].is_null(), "{answer}");

    // Refuse: the transaction is refused whole; a batch refuses only the duplicate's entry.
    let f = fixture("api-match-bundle-refuse", DuplicateCheck::Refuse);
    let before = f.store.count_live().unwrap();
    let response =
        f.call(Method::Post, "", "", Some(&bundle("transaction", &[stranger.clone(), bill()])), None);
    assert_eq!(response.status, 409, "{}", body(&response));
    assert_eq!(f.store.count_live().unwrap(), before, "part of a refused transaction was written");
    let response = f.call(Method::Post, "", "", Some(&bundle("batch", &[stranger, bill()])), None);
    assert_eq!(response.status, 200, "{}", body(&response));
    let answer = body(&response);
    assert!(answer["entry"][0]["response"]["status"].as_str().unwrap().starts_with("201"), "{answer}");
    assert!(answer["entry"][1]["response"]["status"].as_str().unwrap().starts_with("409"), "{answer}");
    assert_eq!(f.store.count_live().unwrap(), before + 1);
}
