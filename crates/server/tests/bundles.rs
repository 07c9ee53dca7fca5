//! batch and transaction Bundles over a real socket.

mod common;

use common::{expect_outcome, json, start};
use reqwest::Method;
use serde_json::{Value, json};

fn entry(full_url: Option<&str>, method: &str, url: &str, resource: Option<Value>) -> Value {
    let mut entry = json!({"request": {"method": method, "url": url}});
    if let Some(full_url) = full_url {
        entry["fullUrl"] = json!(full_url);
    }
    if let Some(resource) = resource {
        entry["resource"] = resource;
    }
    entry
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_resolves_urn_uuids_everywhere() {
    let server = start("tx-urn").await;
    let patient_urn = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a";
    let encounter_urn = "urn:uuid:88888888-bfdc-4613-8bf2-c5e300945f0a";
    let transaction = bundle(
        "transaction",
        vec![
            // The observation comes first, referring forward to entries below.
            entry(
                Some("urn:uuid:0b50b50b-0000-0000-0000-000000000000"),
                "POST",
                "Observation",
                Some(json!({
                    "resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
                    "subject": {"reference": patient_urn},
                    "encounter": {"reference": encounter_urn},
                    "text": {"status": "generated",
                             "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"{patient_urn}\">patient</a></div>")}
                })),
            ),
            entry(
                Some(patient_urn),
                "POST",
                "Patient",
                Some(
                    json!({"resourceType": "Patient", "identifier": [{"system": "urn:ietf:rfc:3986", "value": patient_urn}]}),
                ),
            ),
            entry(
                Some(encounter_urn),
                "POST",
                "Encounter",
                Some(json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                            "subject": {"reference": patient_urn}})),
            ),
            entry(
                None,
                "PUT",
                "Practitioner/dr1",
                Some(json!({"resourceType": "Practitioner", "id": "dr1"})),
            ),
        ],
    );
    let response = server.post("", &transaction).await;
    assert_eq!(response.status(), 200);
    let result = json(response).await;
    assert_eq!(result["type"], "transaction-response");
    let entries = result["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    for e in &entries[..3] {
        assert_eq!(e["response"]["status"], "201 Created");
        assert_eq!(e["response"]["etag"], "W/\"1\"");
        assert!(e.get("resource").is_none(), "return=minimal is the default in bundles");
    }
    let location = |i: usize| entries[i]["response"]["location"].as_str().unwrap().to_string();
    let relative = |url: String| {
        let parts: Vec<&str> = url.rsplit('/').collect();
        format!("{}/{}", parts[3], parts[2])
    };
    let patient_ref = relative(location(1));
    let encounter_ref = relative(location(2));
    let observation = json(server.client.get(location(0)).send().await.unwrap()).await;
    assert_eq!(observation["subject"]["reference"], patient_ref.as_str());
    assert_eq!(observation["encounter"]["reference"], encounter_ref.as_str());
    assert!(observation["text"]["div"].as_str().unwrap().contains(&patient_ref));
    let encounter = json(server.client.get(location(2)).send().await.unwrap()).await;
    assert_eq!(encounter["subject"]["reference"], patient_ref.as_str());
    // An identifier that happens to equal the fullUrl is data, not a reference.
    let patient = json(server.client.get(location(1)).send().await.unwrap()).await;
    assert_eq!(patient["identifier"][0]["value"], patient_urn);
    assert_eq!(entries[3]["response"]["status"], "201 Created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_with_one_bad_entry_changes_nothing() {
    let server = start("tx-atomic").await;
    server.put("Patient/keep", &json!({"resourceType": "Patient", "id": "keep", "active": true})).await;
    let before = server.version_count();
    let good = |n: usize| {
        entry(
            None,
            "POST",
            "Patient",
            Some(json!({"resourceType": "Patient", "name": [{"family": format!("N{n}")}]})),
        )
    };

    // A structurally bad entry: found before anything is written.
    let wrong_type = bundle(
        "transaction",
        vec![good(1), entry(None, "POST", "Observation", Some(json!({"resourceType": "Patient"}))), good(2)],
    );
    let outcome = expect_outcome(server.post("", &wrong_type).await, 400, "invalid", "Bundle.entry[1]").await;
    assert!(outcome["issue"][0]["expression"][0].as_str().unwrap().starts_with("Bundle.entry[1]"));

    // A version conflict: found only by the writer, after other entries were applied.
    let conflict = bundle(
        "transaction",
        vec![
            good(3),
            entry(
                None,
                "PUT",
                "Patient/keep",
                Some(json!({"resourceType": "Patient", "id": "keep", "active": false})),
            ),
            good(4),
        ],
    );
    let mut conflict = conflict;
    conflict["entry"][1]["request"]["ifMatch"] = json!("W/\"5\"");
    expect_outcome(server.post("", &conflict).await, 412, "conflict", "rolled back").await;

    // A dangling urn:uuid reference.
    let dangling = bundle(
        "transaction",
        vec![
            good(5),
            entry(
                None,
                "POST",
                "Observation",
                Some(
                    json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:nowhere"}}),
                ),
            ),
        ],
    );
    expect_outcome(server.post("", &dangling).await, 400, "not-found", "urn:uuid:nowhere").await;

    // Two entries changing the same resource.
    let twice = bundle(
        "transaction",
        vec![
            entry(None, "PUT", "Patient/x", Some(json!({"resourceType": "Patient", "id": "x"}))),
            entry(None, "DELETE", "Patient/x", None),
        ],
    );
    expect_outcome(server.post("", &twice).await, 400, "duplicate", "Patient/x").await;

    // Malformed resource JSON shape inside an entry.
    let bad_id = bundle(
        "transaction",
        vec![
            good(6),
            entry(None, "PUT", "Patient/a b", Some(json!({"resourceType": "Patient", "id": "a b"}))),
        ],
    );
    expect_outcome(server.post("", &bad_id).await, 400, "value", "not a valid id").await;

    assert_eq!(server.version_count(), before, "no entry of a failed transaction was stored");
    assert_eq!(json(server.get("Patient/keep").await).await["active"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_orders_deletes_creates_updates_then_reads() {
    let server = start("tx-order").await;
    server.put("Patient/old", &json!({"resourceType": "Patient", "id": "old"})).await;
    let transaction = bundle(
        "transaction",
        vec![
            entry(None, "GET", "Patient/new", None),
            entry(
                None,
                "PUT",
                "Patient/new",
                Some(json!({"resourceType": "Patient", "id": "new", "active": true})),
            ),
            entry(None, "DELETE", "Patient/old", None),
            entry(None, "GET", "Patient/old/_history", None),
        ],
    );
    let result = json(server.post("", &transaction).await).await;
    let entries = result["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "200 OK", "GET runs after the PUT");
    assert_eq!(entries[0]["resource"]["active"], true);
    assert_eq!(entries[1]["response"]["status"], "201 Created");
    assert_eq!(entries[2]["response"]["status"], "204 No Content");
    assert_eq!(entries[3]["resource"]["entry"][0]["request"]["method"], "DELETE", "history sees the delete");

    // Reading what the same transaction deletes cannot succeed: the transaction fails whole.
    server.put("Patient/old2", &json!({"resourceType": "Patient", "id": "old2"})).await;
    let before = server.version_count();
    let contradictory = bundle(
        "transaction",
        vec![entry(None, "DELETE", "Patient/old2", None), entry(None, "GET", "Patient/old2", None)],
    );
    expect_outcome(server.post("", &contradictory).await, 410, "deleted", "deleted by this transaction")
        .await;
    assert_eq!(server.version_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_entries_succeed_or_fail_on_their_own() {
    let server = start("batch").await;
    let batch = bundle(
        "batch",
        vec![
            entry(None, "POST", "Patient", Some(json!({"resourceType": "Patient", "active": true}))),
            entry(None, "POST", "Patient", Some(json!({"resourceType": "Observation"}))),
            entry(None, "PUT", "Patient/b1", Some(json!({"resourceType": "Patient", "id": "b1"}))),
            entry(None, "GET", "Patient/b1", None),
            entry(None, "GET", "Patient/missing", None),
            entry(None, "PATCH", "Patient/b1", None),
            json!({"resource": {"resourceType": "Patient"}}),
        ],
    );
    let response = server.send(Method::POST, "", Some(&batch), &[("prefer", "return=representation")]).await;
    assert_eq!(response.status(), 200);
    let result = json(response).await;
    assert_eq!(result["type"], "batch-response");
    let statuses: Vec<&str> = result["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![
            "201 Created",
            "400 Bad Request",
            "201 Created",
            "200 OK",
            "404 Not Found",
            "400 Bad Request",
            "400 Bad Request"
        ]
    );
    assert_eq!(result["entry"][0]["resource"]["active"], true, "return=representation honoured");
    assert_eq!(result["entry"][1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert!(
        result["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("Bundle.entry[1]")
    );
    assert_eq!(result["entry"][3]["resource"]["id"], "b1");
    assert_eq!(server.version_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_requests_that_are_not_batch_or_transaction_are_refused() {
    let server = start("bundle-refused").await;
    let collection = bundle("collection", vec![]);
    expect_outcome(server.post("", &collection).await, 400, "invalid", "'collection'").await;
    let not_bundle = json!({"resourceType": "Patient"});
    expect_outcome(server.post("", &not_bundle).await, 400, "invalid", "needs a Bundle").await;
    let empty = server.send(Method::POST, "", None, &[("content-type", "application/fhir+json")]).await;
    expect_outcome(empty, 400, "required", "needs a batch or transaction Bundle").await;
    let elsewhere =
        bundle("batch", vec![entry(None, "GET", "http://other.example.org/fhir/Patient/1", None)]);
    let result = json(server.post("", &elsewhere).await).await;
    assert_eq!(result["entry"][0]["response"]["status"], "400 Bad Request");
    // A conditional create whose condition cannot be evaluated is refused, not run unconditionally.
    let mut conditional =
        bundle("transaction", vec![entry(None, "POST", "Patient", Some(json!({"resourceType": "Patient"})))]);
    conditional["entry"][0]["request"]["ifNoneExist"] = json!("no-such-parameter=1");
    expect_outcome(server.post("", &conditional).await, 400, "not-supported", "no-such-parameter").await;
    assert_eq!(server.version_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_checks_reads_and_full_urls_before_writing() {
    let server = start("tx-reads").await;
    let missing = bundle(
        "transaction",
        vec![
            entry(None, "POST", "Patient", Some(json!({"resourceType": "Patient"}))),
            entry(None, "GET", "Patient/missing", None),
        ],
    );
    expect_outcome(server.post("", &missing).await, 404, "not-found", "Bundle.entry[1]").await;
    let unsupported = bundle(
        "transaction",
        vec![
            entry(None, "POST", "Patient", Some(json!({"resourceType": "Patient"}))),
            entry(None, "POST", "Patient/$validate", Some(json!({"resourceType": "Patient"}))),
        ],
    );
    expect_outcome(server.post("", &unsupported).await, 400, "not-supported", "$validate").await;
    let duplicate_urls = bundle(
        "transaction",
        vec![
            entry(
                Some("urn:uuid:5a3e5a3e-0000-4000-8000-000000000000"),
                "POST",
                "Patient",
                Some(json!({"resourceType": "Patient"})),
            ),
            entry(
                Some("urn:uuid:5a3e5a3e-0000-4000-8000-000000000000"),
                "POST",
                "Patient",
                Some(json!({"resourceType": "Patient"})),
            ),
        ],
    );
    expect_outcome(server.post("", &duplicate_urls).await, 400, "duplicate", "bdl-7").await;
    assert_eq!(server.version_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_rewrites_uris_and_leaves_carried_documents_alone() {
    let server = start("tx-uris").await;
    let binary = "urn:uuid:0b1a0b1a-0000-4000-8000-000000000001";
    let document = json!({
        "resourceType": "Bundle", "type": "document",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:d0c00000-0000-4000-8000-000000000001"},
        "timestamp": "2020-01-01T10:00:00Z",
        "entry": [
            {"fullUrl": "urn:uuid:c0000000-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Composition", "status": "final", "type": {"text": "note"},
                          "date": "2020-01-01", "title": "Note", "author": [{"display": "Dr A"}],
                          "subject": {"reference": "urn:uuid:a0000000-0000-4000-8000-000000000001"}}},
            {"fullUrl": "urn:uuid:a0000000-0000-4000-8000-000000000001", "resource": {"resourceType": "Patient"}}
        ]
    });
    let transaction = bundle(
        "transaction",
        vec![
            entry(
                Some(binary),
                "POST",
                "Binary",
                Some(json!({"resourceType": "Binary", "contentType": "text/plain", "data": "aGk="})),
            ),
            entry(
                None,
                "POST",
                "DocumentReference",
                Some(json!({"resourceType": "DocumentReference", "status": "current",
                            "content": [{"attachment": {"contentType": "text/plain", "url": binary}}]})),
            ),
            entry(None, "POST", "Bundle", Some(document.clone())),
        ],
    );
    let result = json(server.post("", &transaction).await).await;
    let location = |i: usize| result["entry"][i]["response"]["location"].as_str().unwrap().to_string();
    let binary_id = location(0).split('/').rev().nth(2).unwrap().to_string();
    let reference = json(server.client.get(location(1)).send().await.unwrap()).await;
    assert_eq!(reference["content"][0]["attachment"]["url"], format!("Binary/{binary_id}"));
    let stored = json(server.client.get(location(2)).send().await.unwrap()).await;
    assert_eq!(stored["entry"], document["entry"], "a carried document keeps its own references");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_entries_may_not_refer_to_each_other() {
    let server = start("batch-siblings").await;
    let batch = bundle(
        "batch",
        vec![
            entry(
                Some("urn:uuid:a1a1a1a1-0000-4000-8000-000000000001"),
                "POST",
                "Patient",
                Some(json!({"resourceType": "Patient"})),
            ),
            entry(
                None,
                "POST",
                "Observation",
                Some(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                            "subject": {"reference": "urn:uuid:a1a1a1a1-0000-4000-8000-000000000001"}})),
            ),
        ],
    );
    let result = json(server.post("", &batch).await).await;
    assert_eq!(result["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(result["entry"][1]["response"]["status"], "400 Bad Request");
    assert!(
        result["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("transaction")
    );
}
