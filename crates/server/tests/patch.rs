//! PATCH over HTTP: JSON Patch and FHIRPath Patch, applied to the current version and stored
//! as an update (validated, versioned, If-Match, Prefer), conditionally, and inside batches
//! and transactions; malformed patches are 400s and patches that do not apply are 422s, with
//! nothing written.

mod common;

use chartroom_server as server;
use common::{TestServer, expect_outcome, header, json, start, start_with};
use reqwest::Method;
use serde_json::{Value, json};

const JSON_PATCH: &str = "application/json-patch+json";

fn patient(id: &str) -> Value {
    json!({
        "resourceType": "Patient", "id": id,
        "identifier": [
            {"system": "urn:mrn", "value": "1"},
            {"system": "urn:mrn", "value": "2"},
            {"system": "urn:mrn", "value": "3"}
        ],
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "telecom": [
            {"system": "phone", "value": "555-0100"},
            {"system": "email", "value": "p@example.org"}
        ],
        "gender": "male",
        "birthDate": "1974-12-25"
    })
}

async fn stored(server: &TestServer, id: &str) -> Value {
    let response = server.put(&format!("Patient/{id}"), &patient(id)).await;
    assert!(response.status().is_success(), "{}", response.status());
    json(response).await
}

/// `PATCH path` with a body of the given media type.
async fn patch_as(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = server.client.patch(server.url(path)).header("content-type", content_type);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body.to_vec()).send().await.expect("request")
}

async fn json_patch(server: &TestServer, path: &str, operations: &Value) -> reqwest::Response {
    patch_as(server, path, JSON_PATCH, operations.to_string().as_bytes(), &[]).await
}

async fn fhirpath_patch(server: &TestServer, path: &str, operations: Vec<Value>) -> reqwest::Response {
    let parameters = json!({"resourceType": "Parameters", "parameter": operations});
    patch_as(server, path, "application/fhir+json", parameters.to_string().as_bytes(), &[]).await
}

/// One FHIRPath Patch operation from its parts (`value` given as a whole part).
fn operation(kind: &str, path: &str, rest: Vec<Value>) -> Value {
    let mut parts =
        vec![json!({"name": "type", "valueCode": kind}), json!({"name": "path", "valueString": path})];
    parts.extend(rest);
    json!({"name": "operation", "part": parts})
}

async fn read(server: &TestServer, path: &str) -> Value {
    let response = server.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    json(response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_patch_applies_every_operation_as_a_new_version() {
    let server = start("patch-json").await;
    stored(&server, "p1").await;
    let response = json_patch(
        &server,
        "Patient/p1",
        &json!([
            {"op": "test", "path": "/name/0/family", "value": "Chalmers"},
            {"op": "replace", "path": "/name/0/family", "value": "Chalmers-Smith"},
            {"op": "add", "path": "/name/0/given/-", "value": "Jim"},
            {"op": "remove", "path": "/telecom/1"},
            {"op": "copy", "from": "/identifier/0", "path": "/identifier/-"},
            {"op": "move", "from": "/identifier/0", "path": "/identifier/2"},
            {"op": "add", "path": "/active", "value": true},
            {"op": "test", "path": "/meta/versionId", "value": "1"}
        ]),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "etag").as_deref(), Some("W/\"2\""));
    assert!(header(&response, "location").unwrap().ends_with("Patient/p1/_history/2"));
    let patched = json(response).await;
    assert_eq!(patched["meta"]["versionId"], "2");
    assert_eq!(patched["name"][0]["family"], "Chalmers-Smith");
    assert_eq!(patched["name"][0]["given"], json!(["Peter", "James", "Jim"]));
    assert_eq!(patched["telecom"], json!([{"system": "phone", "value": "555-0100"}]));
    let values: Vec<&str> =
        patched["identifier"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert_eq!(values, vec!["2", "3", "1", "1"]);
    assert_eq!(patched["active"], true);
    assert_eq!(read(&server, "Patient/p1").await, patched, "the stored version is the answer");

    // History shows both versions, the first unchanged.
    let history = read(&server, "Patient/p1/_history").await;
    assert_eq!(history["total"], 2);
    let first = read(&server, "Patient/p1/_history/1").await;
    assert_eq!(first["name"][0]["family"], "Chalmers");
    // Values holding '/' and '~' are data, not pointers.
    let escaped = json_patch(
        &server,
        "Patient/p1",
        &json!([{"op": "add", "path": "/extension", "value": [{"url": "http://x.org/a~b/c", "valueString": "v"}]},
                {"op": "test", "path": "/extension/0/url", "value": "http://x.org/a~b/c"},
                {"op": "add", "path": "/name/0/text", "value": "a/b~c"},
                {"op": "test", "path": "/name/0/text", "value": "a/b~c"}]),
    )
    .await;
    assert_eq!(escaped.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_patch_that_does_not_apply_is_422_and_writes_nothing() {
    let server = start("patch-json-422").await;
    stored(&server, "p1").await;
    let before = server.version_count();
    let failed_test = json_patch(
        &server,
        "Patient/p1",
        &json!([
            {"op": "replace", "path": "/gender", "value": "female"},
            {"op": "test", "path": "/name/0/family", "value": "Someone else"}
        ]),
    )
    .await;
    expect_outcome(failed_test, 422, "processing", "operation 1 (test): test failed: /name/0/family").await;
    let missing = json_patch(
        &server,
        "Patient/p1",
        &json!([
            {"op": "add", "path": "/active", "value": true},
            {"op": "add", "path": "/multipleBirthBoolean", "value": false},
            {"op": "replace", "path": "/name/3/family", "value": "X"}
        ]),
    )
    .await;
    expect_outcome(missing, 422, "processing", "operation 2 (replace): path /name/3 does not exist").await;
    let beyond =
        json_patch(&server, "Patient/p1", &json!([{"op": "add", "path": "/name/5", "value": {}}])).await;
    expect_outcome(beyond, 422, "processing", "beyond the end of the array").await;
    let removed =
        json_patch(&server, "Patient/p1", &json!([{"op": "remove", "path": "/deceasedBoolean"}])).await;
    expect_outcome(removed, 422, "processing", "operation 0 (remove): path /deceasedBoolean does not exist")
        .await;
    let into_itself =
        json_patch(&server, "Patient/p1", &json!([{"op": "move", "from": "/name", "path": "/name/0/x"}]))
            .await;
    expect_outcome(into_itself, 422, "processing", "into itself").await;
    // The resource's identity is not the patch's to change.
    let retyped = json_patch(
        &server,
        "Patient/p1",
        &json!([{"op": "replace", "path": "/resourceType", "value": "Group"}]),
    )
    .await;
    expect_outcome(retyped, 422, "invalid", "resourceType").await;
    let renamed =
        json_patch(&server, "Patient/p1", &json!([{"op": "replace", "path": "/id", "value": "p2"}])).await;
    expect_outcome(renamed, 422, "invalid", "cannot be changed").await;
    let unnamed = json_patch(&server, "Patient/p1", &json!([{"op": "remove", "path": "/id"}])).await;
    expect_outcome(unnamed, 422, "invalid", "id").await;
    // The result is validated as an update is: an invalid code is refused with every issue.
    let robot =
        json_patch(&server, "Patient/p1", &json!([{"op": "replace", "path": "/gender", "value": "robot"}]))
            .await;
    let outcome = expect_outcome(robot, 422, "", "").await;
    assert!(outcome.to_string().contains("robot"), "{outcome}");
    let shape = json_patch(
        &server,
        "Patient/p1",
        &json!([{"op": "replace", "path": "/birthDate", "value": {"a": 1}}]),
    )
    .await;
    assert_eq!(shape.status(), 422);
    assert_eq!(server.version_count(), before, "nothing was written");
    assert_eq!(read(&server, "Patient/p1").await["meta"]["versionId"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_patches_are_400_operation_outcomes() {
    let server = start("patch-400").await;
    stored(&server, "p1").await;
    let before = server.version_count();
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (JSON_PATCH, b"{\"op\": \"add\"}".to_vec(), "structure", "is an array of operations"),
        (JSON_PATCH, b"[{\"op\": \"frobnicate\", \"path\": \"/a\"}]".to_vec(), "structure", "operation 0: unknown op 'frobnicate'"),
        (JSON_PATCH, b"[{\"path\": \"/a\"}]".to_vec(), "structure", "operation 0: has no op"),
        (JSON_PATCH, b"[{\"op\": \"test\", \"path\": \"/a\", \"value\": 1}, {\"op\": \"add\", \"value\": 1}]".to_vec(), "structure", "operation 1: (add) has no path"),
        (JSON_PATCH, b"[{\"op\": \"replace\", \"path\": \"/a\"}]".to_vec(), "structure", "(replace) has no value"),
        (JSON_PATCH, b"[{\"op\": \"copy\", \"path\": \"/a\"}]".to_vec(), "structure", "(copy) has no from"),
        (JSON_PATCH, b"[{\"op\": \"remove\", \"path\": \"a\"}]".to_vec(), "structure", "is not a JSON Pointer"),
        (JSON_PATCH, b"[{\"op\": \"remove\", \"path\": \"/a~2\"}]".to_vec(), "structure", "'~' must be followed by 0 or 1"),
        (JSON_PATCH, b"[{\"op\": \"remove\", \"path\": 7}]".to_vec(), "structure", "path is a number"),
        (JSON_PATCH, b"[1]".to_vec(), "structure", "operation 0: is a number, not an object"),
        (JSON_PATCH, b"[{\"op\": \"add\", \"path\": \"/a\", \"value\": 1,".to_vec(), "", ""),
        (JSON_PATCH, b"".to_vec(), "required", "PATCH needs a body"),
        (JSON_PATCH, b"[{\"op\": \"add\", \"op\": \"remove\", \"path\": \"/a\"}]".to_vec(), "", "duplicate"),
        ("application/fhir+json", json!({"resourceType": "Patient", "id": "p1"}).to_string().into_bytes(), "invalid", "not a Patient"),
        ("application/fhir+json", b"{}".to_vec(), "structure", "changes nothing"),
        ("application/merge-patch+json", b"[]".to_vec(), "structure", "a JSON Merge Patch (application/merge-patch+json) is an object"),
        ("application/fhir+json", b"\"text\"".to_vec(), "structure", "the body is a string"),
        (
            "application/fhir+json",
            json!({"resourceType": "Parameters", "parameter": [{"name": "op", "part": []}]}).to_string().into_bytes(),
            "invalid",
            "only parameters named 'operation'",
        ),
        (
            "application/fhir+json",
            json!({"resourceType": "Parameters"}).to_string().into_bytes(),
            "required",
            "no operation parameters",
        ),
        (
            "application/fhir+json",
            json!({"resourceType": "Parameters", "parameter": [
                operation("replace", "Patient.birthDate", vec![json!({"name": "value", "valueDate": "2000-01-01"})]),
                operation("frob", "Patient.birthDate", vec![])
            ]}).to_string().into_bytes(),
            "value",
            "operation 1: unknown type 'frob'",
        ),
        (
            "application/fhir+json",
            json!({"resourceType": "Parameters", "parameter": [operation("replace", "Patient.birthDate", vec![])]})
                .to_string()
                .into_bytes(),
            "required",
            "operation 0: (replace) has no value",
        ),
        (
            "application/fhir+json",
            json!({"resourceType": "Parameters", "parameter": [operation("delete", "Patient.name.where(", vec![])]})
                .to_string()
                .into_bytes(),
            "invalid",
            "is not a FHIRPath expression",
        ),
        (
            "application/fhir+json",
            json!({"resourceType": "Parameters", "parameter": [operation("insert", "Patient.name", vec![
                json!({"name": "index", "valueInteger": -1}),
                json!({"name": "value", "valueHumanName": {"family": "X"}})
            ])]})
            .to_string()
            .into_bytes(),
            "value",
            "part 'index' needs a valueInteger of 0 or more",
        ),
        (
            "application/fhir+json",
            json!({"resourceType": "Parameters", "parameter": [operation("add", "Patient", vec![
                json!({"name": "name", "valueString": "telecom"}),
                json!({"name": "value"})
            ])]})
            .to_string()
            .into_bytes(),
            "invalid",
            "part 'value' has no value",
        ),
        (
            "application/fhir+json",
            json!({"resourceType": "Parameters", "parameter": [operation("delete", "Patient.active", vec![
                json!({"name": "colour", "valueString": "red"})
            ])]})
            .to_string()
            .into_bytes(),
            "invalid",
            "unknown part 'colour'",
        ),
    ];
    for (content_type, body, code, needle) in cases {
        let response = patch_as(&server, "Patient/p1", content_type, &body, &[]).await;
        let outcome = expect_outcome(response, 400, code, needle).await;
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
    // Where a FHIRPath Patch is malformed is said as an expression.
    let response = fhirpath_patch(&server, "Patient/p1", vec![operation("frob", "Patient", vec![])]).await;
    let outcome = expect_outcome(response, 400, "value", "unknown type").await;
    assert_eq!(outcome["issue"][0]["expression"][0], "Parameters.parameter[0].part[0]");
    // Too many operations, and a value nested beyond what a body may nest.
    let many: Vec<Value> = (0..1001).map(|_| json!({"op": "test", "path": "/id", "value": "p1"})).collect();
    expect_outcome(
        json_patch(&server, "Patient/p1", &Value::Array(many)).await,
        400,
        "too-costly",
        "at most 1000",
    )
    .await;
    let deep = format!(
        "[{{\"op\": \"add\", \"path\": \"/x\", \"value\": {}1{}}}]",
        "[".repeat(200),
        "]".repeat(200)
    );
    expect_outcome(patch_as(&server, "Patient/p1", JSON_PATCH, deep.as_bytes(), &[]).await, 400, "", "")
        .await;
    assert_eq!(server.version_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_takes_json_patch_for_patch_only() {
    let server =
        start_with("patch-edge", server::ServerConfig { max_body_bytes: 4096, ..Default::default() }).await;
    stored(&server, "p1").await;
    let put = server
        .client
        .put(server.url("Patient/p1"))
        .header("content-type", JSON_PATCH)
        .body(patient("p1").to_string())
        .send()
        .await
        .unwrap();
    expect_outcome(put, 415, "not-supported", "JSON Patch) is accepted for PATCH only").await;
    let text = patch_as(&server, "Patient/p1", "text/plain", b"[]", &[]).await;
    expect_outcome(
        text,
        415,
        "not-supported",
        "application/json-patch+json (JSON Patch), application/merge-patch+json (JSON Merge Patch) or application/fhir+json",
    )
    .await;
    let xml = patch_as(&server, "Patient/p1", "application/fhir+xml", b"<Parameters/>", &[]).await;
    expect_outcome(xml, 415, "not-supported", "FHIRPath Patch").await;
    // The body limit applies to patches like any body.
    let huge: Vec<Value> = (0..200)
        .map(|i| json!({"op": "add", "path": format!("/extension/{i}"), "value": {"url": "http://x.org"}}))
        .collect();
    let response = json_patch(&server, "Patient/p1", &Value::Array(huge)).await;
    expect_outcome(response, 413, "too-long", "larger than the limit").await;
    // With parameters on the media type, and plain JSON holding a JSON Patch array.
    let charset = patch_as(
        &server,
        "Patient/p1",
        "application/json-patch+json; charset=utf-8",
        json!([{"op": "add", "path": "/active", "value": true}]).to_string().as_bytes(),
        &[],
    )
    .await;
    assert_eq!(charset.status(), 200);
    let plain = patch_as(
        &server,
        "Patient/p1",
        "application/json",
        json!([{"op": "replace", "path": "/active", "value": false}]).to_string().as_bytes(),
        &[],
    )
    .await;
    assert_eq!(plain.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhirpath_patch_replace_add_delete_insert_move() {
    let server = start("patch-fhirpath").await;
    stored(&server, "p1").await;
    let response = fhirpath_patch(
        &server,
        "Patient/p1",
        vec![
            operation(
                "replace",
                "Patient.birthDate",
                vec![json!({"name": "value", "valueDate": "1975-01-01"})],
            ),
            operation(
                "add",
                "Patient",
                vec![
                    json!({"name": "name", "valueString": "telecom"}),
                    json!({"name": "value", "part": [
                        {"name": "system", "valueCode": "sms"},
                        {"name": "value", "valueString": "555-0199"},
                        {"name": "rank", "valuePositiveInt": 2}
                    ]}),
                ],
            ),
            operation("delete", "Patient.telecom.where(system='email')", vec![]),
            operation(
                "insert",
                "Patient.identifier",
                vec![
                    json!({"name": "index", "valueInteger": 1}),
                    json!({"name": "value", "valueIdentifier": {"system": "urn:mrn", "value": "inserted"}}),
                ],
            ),
            operation(
                "move",
                "Patient.identifier",
                vec![
                    json!({"name": "source", "valueInteger": 0}),
                    json!({"name": "destination", "valueInteger": 3}),
                ],
            ),
            operation(
                "add",
                "Patient.name[0]",
                vec![
                    json!({"name": "name", "valueString": "given"}),
                    json!({"name": "value", "valueString": "Jim"}),
                ],
            ),
            operation(
                "add",
                "Patient",
                vec![
                    json!({"name": "name", "valueString": "deceased"}),
                    json!({"name": "value", "valueBoolean": false}),
                ],
            ),
            operation(
                "add",
                "Patient",
                vec![
                    json!({"name": "name", "valueString": "contact"}),
                    json!({"name": "value", "part": [
                        {"name": "name", "valueHumanName": {"family": "Chalmers", "given": ["Jane"]}},
                        {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "555-0111"}}
                    ]}),
                ],
            ),
            // Deleting what is not there changes nothing.
            operation("delete", "Patient.telecom.where(system='fax')", vec![]),
        ],
    )
    .await;
    let status = response.status();
    let patched = json(response).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["meta"]["versionId"], "2");
    assert_eq!(patched["birthDate"], "1975-01-01");
    assert_eq!(
        patched["telecom"],
        json!([{"system": "phone", "value": "555-0100"}, {"system": "sms", "value": "555-0199", "rank": 2}])
    );
    let values: Vec<&str> =
        patched["identifier"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert_eq!(values, vec!["inserted", "2", "3", "1"]);
    assert_eq!(patched["name"][0]["given"], json!(["Peter", "James", "Jim"]));
    assert_eq!(patched["deceasedBoolean"], false);
    assert_eq!(patched["contact"][0]["name"]["given"], json!(["Jane"]));
    assert_eq!(patched["contact"][0]["telecom"], json!([{"system": "phone", "value": "555-0111"}]));

    // A choice element replaced by a value of another type takes that type's name.
    let response = fhirpath_patch(
        &server,
        "Patient/p1",
        vec![
            operation(
                "replace",
                "Patient.deceased",
                vec![json!({"name": "value", "valueDateTime": "2020-02-02"})],
            ),
            // Deleting the last element of a list deletes the list, and an emptied element goes too.
            operation("delete", "Patient.telecom[0]", vec![]),
            operation("delete", "Patient.telecom[0]", vec![]),
            operation("delete", "Patient.contact[0].telecom", vec![]),
            operation("delete", "Patient.contact[0].name", vec![]),
        ],
    )
    .await;
    let status = response.status();
    let patched = json(response).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["deceasedDateTime"], "2020-02-02");
    assert!(patched.get("deceasedBoolean").is_none());
    assert!(patched.get("telecom").is_none(), "{patched}");
    assert!(patched.get("contact").is_none(), "{patched}");

    // Insert into a list the resource does not have yet.
    let response = fhirpath_patch(
        &server,
        "Patient/p1",
        vec![operation(
            "insert",
            "Patient.generalPractitioner",
            vec![
                json!({"name": "index", "valueInteger": 0}),
                json!({"name": "value", "valueReference": {"reference": "Practitioner/dr-1"}}),
            ],
        )],
    )
    .await;
    let status = response.status();
    let patched = json(response).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["generalPractitioner"], json!([{"reference": "Practitioner/dr-1"}]));
    let history = read(&server, "Patient/p1/_history").await;
    assert_eq!(history["total"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhirpath_patches_that_do_not_apply_are_422() {
    let server = start("patch-fhirpath-422").await;
    stored(&server, "p1").await;
    let before = server.version_count();
    let cases: Vec<(Value, &str)> = vec![
        (
            operation(
                "replace",
                "Patient.maritalStatus",
                vec![json!({"name": "value", "valueCodeableConcept": {"text": "x"}})],
            ),
            "path 'Patient.maritalStatus' matches no element",
        ),
        (
            operation(
                "replace",
                "Patient.identifier",
                vec![json!({"name": "value", "valueIdentifier": {"value": "x"}})],
            ),
            "matches 3 elements; it must select exactly one",
        ),
        (operation("delete", "Patient.identifier", vec![]), "matches 3 elements"),
        (
            operation("replace", "Patient.name.count()", vec![json!({"name": "value", "valueInteger": 1})]),
            "which is not an element of the resource",
        ),
        (
            operation(
                "add",
                "Patient",
                vec![
                    json!({"name": "name", "valueString": "gender"}),
                    json!({"name": "value", "valueCode": "female"}),
                ],
            ),
            "already has a gender",
        ),
        (
            operation(
                "add",
                "Patient",
                vec![
                    json!({"name": "name", "valueString": "colour"}),
                    json!({"name": "value", "valueCode": "red"}),
                ],
            ),
            "Patient has no element 'colour'",
        ),
        (
            operation(
                "add",
                "Patient.birthDate",
                vec![json!({"name": "name", "valueString": "x"}), json!({"name": "value", "valueCode": "y"})],
            ),
            "selects a primitive value",
        ),
        (
            operation(
                "add",
                "Patient",
                vec![
                    json!({"name": "name", "valueString": "deceased"}),
                    json!({"name": "value", "valueString": "no"}),
                ],
            ),
            "cannot be a String",
        ),
        (
            operation(
                "insert",
                "Patient.identifier",
                vec![
                    json!({"name": "index", "valueInteger": 4}),
                    json!({"name": "value", "valueIdentifier": {"value": "x"}}),
                ],
            ),
            "index 4 is beyond the end of identifier (length 3)",
        ),
        (
            operation(
                "insert",
                "Patient.identifier.where(value='2')",
                vec![
                    json!({"name": "index", "valueInteger": 0}),
                    json!({"name": "value", "valueIdentifier": {"value": "x"}}),
                ],
            ),
            "not the whole list",
        ),
        (
            operation(
                "insert",
                "Patient.gender",
                vec![
                    json!({"name": "index", "valueInteger": 0}),
                    json!({"name": "value", "valueCode": "male"}),
                ],
            ),
            "does not name a list",
        ),
        (
            operation(
                "move",
                "Patient.identifier",
                vec![
                    json!({"name": "source", "valueInteger": 0}),
                    json!({"name": "destination", "valueInteger": 3}),
                ],
            ),
            "must both be below the length of identifier (3)",
        ),
        (operation("delete", "Patient", vec![]), "the whole resource cannot be deleted"),
        (operation("replace", "Patient.gender", vec![json!({"name": "value", "valueCode": "robot"})]), ""),
    ];
    for (op, needle) in cases {
        let response = fhirpath_patch(&server, "Patient/p1", vec![op.clone()]).await;
        let outcome = expect_outcome(response, 422, "", needle).await;
        if !needle.is_empty() {
            assert!(
                outcome["issue"][0]["diagnostics"]
                    .as_str()
                    .unwrap()
                    .starts_with("FHIRPath Patch operation 0 ("),
                "{outcome}"
            );
            assert_eq!(outcome["issue"][0]["expression"][0], "Parameters.parameter[0]");
        }
    }
    assert_eq!(server.version_count(), before, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_prefer_and_missing_resources() {
    let server = start("patch-if-match").await;
    stored(&server, "p1").await;
    let operations = json!([{"op": "replace", "path": "/gender", "value": "female"}]).to_string();
    let stale =
        patch_as(&server, "Patient/p1", JSON_PATCH, operations.as_bytes(), &[("if-match", "W/\"7\"")]).await;
    expect_outcome(stale, 412, "conflict", "is at version 1, not the expected version 7").await;
    let bad =
        patch_as(&server, "Patient/p1", JSON_PATCH, operations.as_bytes(), &[("if-match", "soon")]).await;
    expect_outcome(bad, 400, "value", "If-Match").await;
    assert_eq!(read(&server, "Patient/p1").await["gender"], "male");
    let current =
        patch_as(&server, "Patient/p1", JSON_PATCH, operations.as_bytes(), &[("if-match", "W/\"1\"")]).await;
    assert_eq!(current.status(), 200);
    assert_eq!(header(&current, "etag").as_deref(), Some("W/\"2\""));
    // Prefer: return= is honoured as for an update.
    let minimal = patch_as(
        &server,
        "Patient/p1",
        JSON_PATCH,
        json!([{"op": "add", "path": "/active", "value": true}]).to_string().as_bytes(),
        &[("prefer", "return=minimal")],
    )
    .await;
    assert_eq!(minimal.status(), 200);
    assert_eq!(header(&minimal, "etag").as_deref(), Some("W/\"3\""));
    assert!(minimal.bytes().await.unwrap().is_empty());
    let outcome = patch_as(
        &server,
        "Patient/p1",
        JSON_PATCH,
        json!([{"op": "replace", "path": "/active", "value": false}]).to_string().as_bytes(),
        &[("prefer", "return=OperationOutcome")],
    )
    .await;
    assert_eq!(outcome.status(), 200);
    let outcome = json(outcome).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(outcome.to_string().contains("Updated Patient/p1 as version 4"), "{outcome}");

    let missing =
        json_patch(&server, "Patient/nobody", &json!([{"op": "add", "path": "/active", "value": true}]))
            .await;
    expect_outcome(missing, 404, "not-found", "Patient/nobody is not known").await;
    assert!(server.get("Patient/nobody").await.status() == 404, "a patch never creates");
    server.delete("Patient/p1").await;
    let deleted =
        json_patch(&server, "Patient/p1", &json!([{"op": "add", "path": "/active", "value": true}])).await;
    expect_outcome(deleted, 410, "deleted", "was deleted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_patch_changes_exactly_one_match() {
    let server = start("patch-conditional").await;
    stored(&server, "p1").await;
    let mut other = patient("p2");
    other["identifier"] = json!([{"system": "urn:mrn", "value": "9"}, {"system": "urn:other", "value": "3"}]);
    assert!(server.put("Patient/p2", &other).await.status().is_success());
    let operations = json!([{"op": "replace", "path": "/gender", "value": "female"}]);
    let none = json_patch(&server, "Patient?identifier=urn:mrn|404", &operations).await;
    expect_outcome(none, 404, "not-found", "no Patient matches").await;
    let many = json_patch(&server, "Patient?family=Chalmers", &operations).await;
    expect_outcome(many, 412, "multiple-matches", "matches more than one").await;
    let unknown = json_patch(&server, "Patient?colour=red", &operations).await;
    assert_eq!(unknown.status(), 400);
    let one = json_patch(&server, "Patient?identifier=urn:mrn|9", &operations).await;
    assert_eq!(one.status(), 200);
    assert_eq!(json(one).await["id"], "p2");
    assert_eq!(read(&server, "Patient/p2").await["gender"], "female");
    assert_eq!(read(&server, "Patient/p1").await["gender"], "male");
    // A FHIRPath Patch, conditionally.
    let response = fhirpath_patch(
        &server,
        "Patient?identifier=urn:mrn|1",
        vec![operation(
            "replace",
            "Patient.birthDate",
            vec![json!({"name": "value", "valueDate": "1980-01-01"})],
        )],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(read(&server, "Patient/p1").await["birthDate"], "1980-01-01");
}

fn binary_patch(operations: &Value) -> Value {
    json!({
        "resourceType": "Binary",
        "contentType": JSON_PATCH,
        "data": fhir::base64_encode(operations.to_string().as_bytes())
    })
}

fn patch_entry(url: &str, resource: Value) -> Value {
    json!({"resource": resource, "request": {"method": "PATCH", "url": url}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_in_batches_and_transactions() {
    let server = start("patch-bundles").await;
    stored(&server, "p1").await;
    stored(&server, "p2").await;
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        operation("replace", "Patient.birthDate", vec![json!({"name": "value", "valueDate": "1990-09-09"})])
    ]});
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        patch_entry("Patient/p1", binary_patch(&json!([{"op": "replace", "path": "/gender", "value": "female"}]))),
        patch_entry("Patient/p2", parameters.clone()),
        patch_entry("Patient/p1", binary_patch(&json!([{"op": "test", "path": "/gender", "value": "other"}]))),
        patch_entry("Patient/missing", parameters.clone()),
        patch_entry("Patient/p2", json!({"resourceType": "Binary", "contentType": "text/plain", "data": "AAAA"})),
        {"request": {"method": "PATCH", "url": "Patient/p2"}},
        patch_entry("Patient?identifier=urn:mrn|1", binary_patch(&json!([{"op": "add", "path": "/active", "value": true}]))),
    ]});
    let response = server.post("", &batch).await;
    assert_eq!(response.status(), 200);
    let result = json(response).await;
    let statuses: Vec<&str> = result["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![
            "200 OK",
            "200 OK",
            "422 Unprocessable Entity",
            "404 Not Found",
            "400 Bad Request",
            "400 Bad Request",
            "412 Precondition Failed"
        ],
        "{result}"
    );
    let failed = result["entry"][2]["response"]["outcome"].to_string();
    assert!(failed.contains("Bundle.entry[2]: JSON Patch operation 0 (test)"), "{failed}");
    assert_eq!(read(&server, "Patient/p1").await["gender"], "female");
    assert_eq!(read(&server, "Patient/p2").await["birthDate"], "1990-09-09");

    // A transaction: a patch beside a create, both or neither.
    let before = server.version_count();
    let failing = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b0c6a2e-8a4e-4c59-9d8a-5f6f1f0e3a11", "resource": {"resourceType": "Observation", "status": "final",
            "code": {"text": "pulse"}, "subject": {"reference": "Patient/p1"}}, "request": {"method": "POST", "url": "Observation"}},
        patch_entry("Patient/p2", parameters.clone()),
        patch_entry("Patient/p1", binary_patch(&json!([{"op": "replace", "path": "/name/9/family", "value": "X"}]))),
    ]});
    let response = server.post("", &failing).await;
    let outcome =
        expect_outcome(response, 422, "processing", "Bundle.entry[2]: JSON Patch operation 0 (replace)")
            .await;
    assert!(outcome.to_string().contains("/name/9 does not exist"), "{outcome}");
    assert_eq!(server.version_count(), before, "the transaction wrote nothing");
    let invalid = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        patch_entry("Patient/p2", binary_patch(&json!([{"op": "replace", "path": "/gender", "value": "robot"}]))),
        {"resource": {"resourceType": "Patient", "active": true}, "request": {"method": "POST", "url": "Patient"}},
    ]});
    let response = server.post("", &invalid).await;
    assert_eq!(response.status(), 422);
    assert_eq!(server.version_count(), before, "the transaction wrote nothing");

    // A transaction that succeeds: the patch may name a resource the transaction creates.
    let working = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b0c6a2e-8a4e-4c59-9d8a-5f6f1f0e3a12", "resource": {"resourceType": "Practitioner", "name": [{"family": "Who"}]},
            "request": {"method": "POST", "url": "Practitioner"}},
        patch_entry("Patient/p2", json!({"resourceType": "Parameters", "parameter": [
            operation("add", "Patient", vec![
                json!({"name": "name", "valueString": "generalPractitioner"}),
                json!({"name": "value", "valueReference": {"reference": "urn:uuid:0b0c6a2e-8a4e-4c59-9d8a-5f6f1f0e3a12"}})
            ])
        ]})),
        patch_entry("Patient?_id=p1", binary_patch(&json!([{"op": "add", "path": "/active", "value": false}]))),
        {"request": {"method": "GET", "url": "Patient/p2"}},
    ]});
    let response =
        server.send(Method::POST, "", Some(&working), &[("prefer", "return=representation")]).await;
    let status = response.status();
    let result = json(response).await;
    assert_eq!(status, 200, "{result}");
    let statuses: Vec<&str> = result["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["201 Created", "200 OK", "200 OK", "200 OK"]);
    assert_eq!(result["entry"][3]["resource"]["meta"]["versionId"], "3", "the read sees the patch");
    assert_eq!(read(&server, "Patient/p1").await["active"], false);
    let practitioner = result["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let p2 = read(&server, "Patient/p2").await;
    assert_eq!(p2["generalPractitioner"][0]["reference"], format!("Practitioner/{practitioner}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capability_statement_declares_patch() {
    let server = start("patch-metadata").await;
    let statement = read(&server, "metadata").await;
    assert_eq!(
        statement["patchFormat"],
        json!([JSON_PATCH, "application/merge-patch+json", "application/fhir+json"])
    );
    for resource in statement["rest"][0]["resource"].as_array().unwrap() {
        let codes: Vec<&str> =
            resource["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
        assert!(codes.contains(&"patch"), "{}", resource["type"]);
    }
}

/// JSON Merge Patch (RFC 7386), as `application/merge-patch+json` or as a JSON object without
/// `resourceType` (what fhirpy's `patch()` sends): members replace, `null` removes, objects
/// merge; validated and versioned like any update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_patch_replaces_removes_and_merges() {
    let server = start("patch-merge").await;
    stored(&server, "p1").await;
    let body = json!({"active": false, "telecom": null, "maritalStatus": {"text": "single"}});
    let response =
        patch_as(&server, "Patient/p1", "application/merge-patch+json", body.to_string().as_bytes(), &[])
            .await;
    assert_eq!(response.status(), 200);
    let patched = json(response).await;
    assert_eq!((patched["active"].clone(), patched["meta"]["versionId"].clone()), (json!(false), json!("2")));
    assert!(patched.get("telecom").is_none(), "{patched}");
    assert_eq!(patched["name"][0]["family"], "Chalmers", "members not named stay");
    let plain = json!({"birthDate": "1975-01-01", "maritalStatus": {"coding": [{"code": "S"}]}});
    let response =
        patch_as(&server, "Patient/p1", "application/json", plain.to_string().as_bytes(), &[]).await;
    assert_eq!(response.status(), 200);
    let patched = json(response).await;
    assert_eq!(patched["birthDate"], "1975-01-01");
    assert_eq!(
        patched["maritalStatus"],
        json!({"text": "single", "coding": [{"code": "S"}]}),
        "objects merge"
    );
    let invalid = json!({"gender": "robot"});
    let refused =
        patch_as(&server, "Patient/p1", "application/merge-patch+json", invalid.to_string().as_bytes(), &[])
            .await;
    expect_outcome(refused, 422, "", "gender").await;
    assert_eq!(read(&server, "Patient/p1").await["meta"]["versionId"], "3");
}
