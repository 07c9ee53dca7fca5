//! The server's validation setting: `strict` refuses an invalid resource, `warn` stores it and
//! says what is wrong (in an OperationOutcome, and as a Bundle entry's `response.outcome`),
//! `off` stores it silently.

use chartroom_api::{Api, ApiConfig, Method, Request, Response, Validation};
use serde_json::{Value, json};

fn api(name: &str, validation: Validation) -> (Api, tokio::runtime::Runtime) {
    let dir = testkit::temp_dir(name);
    let store = testkit::open_store("validation_modes", &dir);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    (Api::new(store, ApiConfig { validation, ..ApiConfig::default() }), runtime)
}

fn send(
    api: &Api,
    runtime: &tokio::runtime::Runtime,
    method: Method,
    path: &str,
    prefer: Option<&str>,
    body: &Value,
) -> Response {
    let request = Request {
        method: Some(method),
        base: "http://test/fhir".into(),
        path: path.into(),
        prefer: prefer.map(str::to_string),
        body: serde_json::to_vec(body).unwrap(),
        ..Default::default()
    };
    runtime.block_on(api.handle(&request))
}

fn json_of(response: &Response) -> Value {
    serde_json::from_slice(response.body.as_deref().unwrap_or(b"null")).unwrap()
}

fn robot() -> Value {
    json!({"resourceType": "Patient", "id": "r1", "gender": "robot"})
}

#[test]
fn strict_refuses_warn_stores_and_says_off_stores_silently() {
    let (strict, runtime) = api("validation-strict", Validation::Enforce);
    let refused = send(&strict, &runtime, Method::Put, "Patient/r1", None, &robot());
    assert_eq!(refused.status, 422, "{}", refused.body_text());
    assert!(refused.body_text().contains("Patient.gender"));

    let (warn, runtime) = api("validation-warn", Validation::Warn);
    let stored = send(&warn, &runtime, Method::Put, "Patient/r1", None, &robot());
    assert_eq!(stored.status, 201, "{}", stored.body_text());
    assert_eq!(json_of(&stored)["gender"], "robot", "the resource is stored as given");
    let outcome =
        json_of(&send(&warn, &runtime, Method::Put, "Patient/r1", Some("return=OperationOutcome"), &robot()));
    let issues = outcome["issue"].as_array().unwrap();
    let warning = issues.iter().find(|i| i["severity"] == "warning").expect("a warning");
    assert_eq!(warning["expression"][0], "Patient.gender", "{outcome}");
    assert!(issues.iter().all(|i| i["severity"] != "error"), "{outcome}");
    // A valid resource carries no warning.
    let valid = send(
        &warn,
        &runtime,
        Method::Put,
        "Patient/v1",
        None,
        &json!({"resourceType": "Patient", "id": "v1"}),
    );
    assert_eq!((valid.status, valid.outcome.is_none()), (201, true));

    // In a transaction, the entry's response.outcome says it.
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "r2", "gender": "robot"}, "request": {"method": "PUT", "url": "Patient/r2"}},
        {"resource": {"resourceType": "Patient", "id": "v2"}, "request": {"method": "PUT", "url": "Patient/v2"}}
    ]});
    let answered = json_of(&send(&warn, &runtime, Method::Post, "", None, &transaction));
    let entries = answered["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "201 Created", "{answered}");
    assert_eq!(entries[0]["response"]["outcome"]["issue"][0]["severity"], "warning", "{answered}");
    assert!(entries[1]["response"].get("outcome").is_none(), "{answered}");

    let (off, runtime) = api("validation-off", Validation::Skip);
    let silent = send(&off, &runtime, Method::Put, "Patient/r1", Some("return=OperationOutcome"), &robot());
    assert_eq!(silent.status, 201);
    assert!(json_of(&silent)["issue"].as_array().unwrap().iter().all(|i| i["severity"] == "information"));
}
