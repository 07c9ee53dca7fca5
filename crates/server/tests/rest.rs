//! The FHIR RESTful interactions, driven over a real socket.

mod common;

use common::{expect_outcome, header, json, start};
use reqwest::Method;
use serde_json::{Value, json};

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Ann"]}], "birthDate": "1970-03-04"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_assigns_id_version_and_headers() {
    let server = start("create").await;
    let mut body = patient("Chalmers");
    body["id"] = json!("client-chosen");
    body["meta"] = json!({"versionId": "99", "lastUpdated": "2000-01-01T00:00:00Z", "tag": [{"code": "t"}]});
    let response = server.post("Patient", &body).await;
    assert_eq!(response.status(), 201);
    let location = header(&response, "location").unwrap();
    assert_eq!(header(&response, "etag").as_deref(), Some("W/\"1\""));
    assert!(header(&response, "last-modified").unwrap().ends_with(" GMT"));
    let created = json(response).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_ne!(id, "client-chosen", "a create ignores the client's id");
    assert!(fhir::is_valid_id(&id));
    assert_eq!(location, server.url(&format!("Patient/{id}/_history/1")));
    assert_eq!(created["meta"]["versionId"], "1");
    assert_ne!(created["meta"]["lastUpdated"], "2000-01-01T00:00:00Z");
    assert_eq!(created["meta"]["tag"][0]["code"], "t", "other meta elements are kept");
    assert_eq!(created["name"][0]["family"], "Chalmers");

    let read = server.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status(), 200);
    assert_eq!(header(&read, "etag").as_deref(), Some("W/\"1\""));
    assert_eq!(json(read).await, created);
    assert!(server.get("Patient/client-chosen").await.status() == 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_creates_then_versions() {
    let server = start("update").await;
    let mut body = patient("One");
    body["id"] = json!("p1");
    let first = server.put("Patient/p1", &body).await;
    assert_eq!(first.status(), 201, "create-on-update");
    assert_eq!(header(&first, "location").unwrap(), server.url("Patient/p1/_history/1"));
    body["name"][0]["family"] = json!("Two");
    let second = server.put("Patient/p1", &body).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "etag").as_deref(), Some("W/\"2\""));
    let second = json(second).await;
    assert_eq!(second["meta"]["versionId"], "2");

    let v1 = json(server.get("Patient/p1/_history/1").await).await;
    assert_eq!(v1["name"][0]["family"], "One");
    assert_eq!(v1["meta"]["versionId"], "1");
    let v2 = server.get("Patient/p1/_history/2").await;
    assert_eq!(header(&v2, "etag").as_deref(), Some("W/\"2\""));
    assert_eq!(json(v2).await["name"][0]["family"], "Two");
    expect_outcome(server.get("Patient/p1/_history/3").await, 404, "not-found", "no version '3'").await;
    expect_outcome(server.get("Patient/p1/_history/x").await, 404, "not-found", "no version 'x'").await;
    expect_outcome(server.get("Patient/p2/_history/1").await, 404, "not-found", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_checks_the_id_and_type_in_the_body() {
    let server = start("update-id").await;
    expect_outcome(server.put("Patient/p1", &patient("NoId")).await, 400, "required", "needs the id").await;
    let mut other = patient("Other");
    other["id"] = json!("p2");
    expect_outcome(server.put("Patient/p1", &other).await, 400, "invalid", "does not match 'p1'").await;
    let observation =
        json!({"resourceType": "Observation", "id": "p1", "status": "final", "code": {"text": "x"}});
    let outcome = expect_outcome(
        server.put("Patient/p1", &observation).await,
        400,
        "invalid",
        "does not match 'Patient'",
    )
    .await;
    assert_eq!(outcome["issue"][0]["expression"][0], "resourceType");
    assert_eq!(server.version_count(), 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_writes_a_tombstone() {
    let server = start("delete").await;
    let mut body = patient("Gone");
    body["id"] = json!("p1");
    server.put("Patient/p1", &body).await;
    let deleted = server.delete("Patient/p1").await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(header(&deleted, "etag").as_deref(), Some("W/\"2\""));
    let gone = server.get("Patient/p1").await;
    assert_eq!(header(&gone, "etag").as_deref(), Some("W/\"2\""));
    expect_outcome(gone, 410, "deleted", "was deleted").await;
    // The old version is still there: nothing is physically deleted.
    assert_eq!(server.get("Patient/p1/_history/1").await.status(), 200);
    expect_outcome(server.get("Patient/p1/_history/2").await, 410, "deleted", "").await;
    // Deleting again, or deleting what never existed, changes nothing.
    assert_eq!(server.delete("Patient/p1").await.status(), 204);
    assert_eq!(server.delete("Patient/never").await.status(), 204);
    let outcome =
        server.send(Method::DELETE, "Patient/never", None, &[("prefer", "return=OperationOutcome")]).await;
    assert_eq!(outcome.status(), 200);
    assert_eq!(json(outcome).await["issue"][0]["severity"], "information");
    assert_eq!(server.version_count(), 2);
    // An update brings it back as a new version.
    let back = server.put("Patient/p1", &body).await;
    assert_eq!(back.status(), 201);
    assert_eq!(header(&back, "etag").as_deref(), Some("W/\"3\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_protects_against_lost_updates() {
    let server = start("if-match").await;
    let mut body = patient("V1");
    body["id"] = json!("p1");
    server.put("Patient/p1", &body).await;
    let stale = server.send(Method::PUT, "Patient/p1", Some(&body), &[("if-match", "W/\"7\"")]).await;
    expect_outcome(stale, 412, "conflict", "not the expected version 7").await;
    let fresh = server.send(Method::PUT, "Patient/p1", Some(&body), &[("if-match", "W/\"1\"")]).await;
    assert_eq!(fresh.status(), 200);
    let malformed = server.send(Method::PUT, "Patient/p1", Some(&body), &[("if-match", "yesterday")]).await;
    expect_outcome(malformed, 400, "value", "If-Match").await;
    let delete_stale = server.send(Method::DELETE, "Patient/p1", None, &[("if-match", "W/\"1\"")]).await;
    expect_outcome(delete_stale, 412, "conflict", "").await;
    let absent = server
        .send(
            Method::PUT,
            "Patient/p9",
            Some(&json!({"resourceType": "Patient", "id": "p9"})),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    expect_outcome(absent, 412, "conflict", "does not exist").await;
    assert_eq!(json(server.get("Patient/p1").await).await["meta"]["versionId"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_if_match_updates_one_wins_one_gets_412() {
    let server = std::sync::Arc::new(start("race").await);
    for round in 0..10 {
        let id = format!("race{round}");
        let body = json!({"resourceType": "Patient", "id": id, "active": true});
        server.put(&format!("Patient/{id}"), &body).await;
        let attempt = |family: &'static str| {
            let server = server.clone();
            let id = id.clone();
            async move {
                let body = json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]});
                server
                    .send(Method::PUT, &format!("Patient/{id}"), Some(&body), &[("if-match", "W/\"1\"")])
                    .await
                    .status()
                    .as_u16()
            }
        };
        let (a, b) = tokio::join!(tokio::spawn(attempt("A")), tokio::spawn(attempt("B")));
        let mut statuses = vec![a.unwrap(), b.unwrap()];
        statuses.sort();
        assert_eq!(statuses, vec![200, 412], "round {round}");
        let current = json(server.get(&format!("Patient/{id}")).await).await;
        assert_eq!(current["meta"]["versionId"], "2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_return_controls_the_body() {
    let server = start("prefer").await;
    let minimal =
        server.send(Method::POST, "Patient", Some(&patient("M")), &[("prefer", "return=minimal")]).await;
    assert_eq!(minimal.status(), 201);
    assert!(header(&minimal, "location").is_some());
    assert!(minimal.bytes().await.unwrap().is_empty());
    let outcome = server
        .send(Method::POST, "Patient", Some(&patient("O")), &[("prefer", "return=OperationOutcome")])
        .await;
    assert_eq!(outcome.status(), 201);
    let outcome = json(outcome).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("Created Patient/"));
    let representation = server
        .send(Method::POST, "Patient", Some(&patient("R")), &[("prefer", "return=representation")])
        .await;
    assert_eq!(json(representation).await["resourceType"], "Patient");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_reads_and_head() {
    let server = start("conditional-read").await;
    let mut body = patient("C");
    body["id"] = json!("p1");
    let created = server.put("Patient/p1", &body).await;
    let last_modified = header(&created, "last-modified").unwrap();
    let same = server.send(Method::GET, "Patient/p1", None, &[("if-none-match", "W/\"1\"")]).await;
    assert_eq!(same.status(), 304);
    let changed = server.send(Method::GET, "Patient/p1", None, &[("if-none-match", "W/\"0\"")]).await;
    assert_eq!(changed.status(), 200);
    let since = server.send(Method::GET, "Patient/p1", None, &[("if-modified-since", &last_modified)]).await;
    assert_eq!(since.status(), 304);
    let old = server
        .send(Method::GET, "Patient/p1", None, &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")])
        .await;
    assert_eq!(old.status(), 200);
    let head = server.send(Method::HEAD, "Patient/p1", None, &[]).await;
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "etag").as_deref(), Some("W/\"1\""));
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_at_every_level_with_paging_and_since() {
    let server = start("history").await;
    for i in 0..5 {
        server
            .put(&format!("Patient/p{i}"), &json!({"resourceType": "Patient", "id": format!("p{i}")}))
            .await;
    }
    server.put("Patient/p0", &json!({"resourceType": "Patient", "id": "p0", "active": false})).await;
    server.delete("Patient/p1").await;
    server
        .put(
            "Observation/o1",
            &json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}),
        )
        .await;

    let instance = json(server.get("Patient/p0/_history").await).await;
    assert_eq!(instance["type"], "history");
    assert_eq!(instance["total"], 2);
    let versions: Vec<&str> = instance["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, vec!["2", "1"]);
    assert_eq!(instance["entry"][0]["request"]["method"], "PUT");
    assert_eq!(instance["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(instance["entry"][0]["fullUrl"], server.url("Patient/p0"));

    let deleted = json(server.get("Patient/p1/_history").await).await;
    assert_eq!(deleted["entry"][0]["request"]["method"], "DELETE");
    assert!(deleted["entry"][0].get("resource").is_none());

    let system = json(server.get("_history").await).await;
    assert_eq!(system["entry"].as_array().unwrap().len(), 8);
    assert_eq!(system["entry"][0]["resource"]["resourceType"], "Observation");

    // Type history, two per page; a write between pages does not shift them.
    let first = json(server.get("Patient/_history?_count=2").await).await;
    let page_ids = |page: &Value| -> Vec<String> {
        page["entry"].as_array().map_or(vec![], |entries| {
            entries
                .iter()
                .map(|e| e["fullUrl"].as_str().unwrap().rsplit('/').next().unwrap().to_string())
                .collect()
        })
    };
    assert_eq!(page_ids(&first), vec!["p1", "p0"]);
    let next_link = |page: &Value| -> Option<String> {
        page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string())
    };
    assert_eq!(first["link"][0]["relation"], "self");
    server.put("Patient/late", &json!({"resourceType": "Patient", "id": "late"})).await;
    let second = json(server.client.get(next_link(&first).unwrap()).send().await.unwrap()).await;
    assert_eq!(page_ids(&second), vec!["p4", "p3"]);
    let third = json(server.client.get(next_link(&second).unwrap()).send().await.unwrap()).await;
    assert_eq!(page_ids(&third), vec!["p2", "p1"]);
    let fourth = json(server.client.get(next_link(&third).unwrap()).send().await.unwrap()).await;
    assert_eq!(page_ids(&fourth), vec!["p0"]);
    assert!(next_link(&fourth).is_none());

    // _since: only versions at or after the instant.
    let late = json(server.get("Patient/late").await).await;
    let since = late["meta"]["lastUpdated"].as_str().unwrap();
    let recent = json(server.get(&format!("_history?_since={}", since.replace('+', "%2B"))).await).await;
    assert!(page_ids(&recent).contains(&"late".to_string()));
    assert!(!page_ids(&recent).contains(&"p2".to_string()));
    let future = json(server.get("_history?_since=2999-01-01T00:00:00Z").await).await;
    assert!(future.get("entry").is_none());

    expect_outcome(server.get("_history?_count=lots").await, 400, "value", "_count").await;
    expect_outcome(server.get("_history?_since=yesterday").await, 400, "value", "_since").await;
    let strict = server.send(Method::GET, "_history?_sort=x", None, &[("prefer", "handling=strict")]).await;
    expect_outcome(strict, 400, "not-supported", "_sort").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_statement_states_what_is_supported() {
    let server = start("metadata").await;
    let response = server.get("metadata").await;
    assert_eq!(response.status(), 200);
    let statement = json(response).await;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["kind"], "instance");
    let rest = &statement["rest"][0];
    let resources = rest["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 146);
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let codes: Vec<&str> =
        patient["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    for code in ["read", "vread", "update", "delete", "history-instance", "history-type", "create"] {
        assert!(codes.contains(&code), "{code}");
    }
    assert!(codes.contains(&"search-type"));
    let params: Vec<&str> =
        patient["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in ["_id", "_lastUpdated", "identifier", "name", "birthdate", "general-practitioner"] {
        assert!(params.contains(&name), "{name}");
    }
    assert_eq!(patient["conditionalCreate"], true);
    assert_eq!(patient["operation"][0]["name"], "everything");
    assert_eq!(patient["versioning"], "versioned-update");
    let system: Vec<&str> =
        rest["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(system, vec!["transaction", "batch", "history-system"]);
    expect_outcome(server.post("metadata", &json!({})).await, 405, "not-supported", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_printing() {
    let server = start("pretty").await;
    let text = server.get("metadata?_pretty=true").await.text().await.unwrap();
    assert!(text.contains("\n  \"resourceType\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_forms_and_deleted_resources() {
    let server = start("if-match-forms").await;
    let body = json!({"resourceType": "Patient", "id": "p1", "active": true});
    let star_on_nothing = server.send(Method::PUT, "Patient/p1", Some(&body), &[("if-match", "*")]).await;
    expect_outcome(star_on_nothing, 412, "conflict", "does not exist").await;
    server.put("Patient/p1", &body).await;
    assert_eq!(server.send(Method::PUT, "Patient/p1", Some(&body), &[("if-match", "*")]).await.status(), 200);
    let list = server.send(Method::PUT, "Patient/p1", Some(&body), &[("if-match", "W/\"1\", W/\"2\"")]).await;
    assert_eq!(list.status(), 200);
    let delete = server.send(Method::DELETE, "Patient/p1", None, &[("if-match", "W/\"3\"")]).await;
    assert_eq!(delete.status(), 204, "a delete with the right version succeeds");
    let head = server.send(Method::HEAD, "Patient/p1", None, &[]).await;
    assert_eq!(head.status(), 410);
    let cached = server.send(Method::GET, "Patient/p1", None, &[("if-none-match", "W/\"3\"")]).await;
    assert_eq!(cached.status(), 410, "a client's cached copy of a deleted resource is not current");
    let back = server.put("Patient/p1", &body).await;
    assert_eq!(back.status(), 201);
    let history = json(server.get("Patient/p1/_history").await).await;
    let statuses: Vec<&str> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["201 Created", "204 No Content", "200 OK", "200 OK", "201 Created"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_edge_cases() {
    let server = start("history-edges").await;
    expect_outcome(server.get("Patient/never/_history").await, 404, "not-found", "Patient/never").await;
    server.put("Patient/p1", &json!({"resourceType": "Patient", "id": "p1"})).await;
    let none = json(server.get("Patient/p1/_history?_count=0").await).await;
    assert_eq!(none["total"], 1);
    assert!(none.get("entry").is_none());
    // `+hh:mm` sent unencoded arrives as a space; it is read as the offset it was meant to be.
    let since = server.get("_history?_since=2000-01-01T00:00:00+05:00").await;
    assert_eq!(json(since).await["entry"].as_array().map(Vec::len), Some(1));
    expect_outcome(server.get("_history?_at=2020").await, 400, "not-supported", "_at").await;
    let future = server
        .send(Method::GET, "Patient/p1", None, &[("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT")])
        .await;
    assert_eq!(future.status(), 200, "a future If-Modified-Since is ignored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_parameter_with_a_literal_plus() {
    let server = start("format-plus").await;
    let response = server
        .client
        .get(format!("{}/metadata?_format=application/fhir+json", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
