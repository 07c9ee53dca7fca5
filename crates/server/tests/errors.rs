//! Every class of bad input gets the right 4xx with an OperationOutcome saying what and
//! where, and writes nothing.

mod common;

use chartroom_server as server;
use common::{expect_outcome, start, start_with};
use reqwest::Method;
use serde_json::json;

async fn raw(
    server: &common::TestServer,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &'static str,
) -> reqwest::Response {
    let mut request = server.client.request(method, server.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

const JSON: Option<&str> = Some("application/fhir+json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_located() {
    let server = start("err-json").await;
    let response = raw(
        &server,
        Method::POST,
        "Patient",
        JSON,
        "{\"resourceType\": \"Patient\",\n  \"active\": tru, \"x\": 1\n}",
    )
    .await;
    let outcome = expect_outcome(response, 400, "structure", "invalid JSON at line 2").await;
    assert_eq!(outcome["issue"][0]["location"][0], "line 2, column 16");
    let duplicate = raw(
        &server,
        Method::POST,
        "Patient",
        JSON,
        r#"{"resourceType": "Patient", "active": true, "active": false}"#,
    )
    .await;
    expect_outcome(duplicate, 400, "structure", "duplicate property \"active\"").await;
    let array = raw(&server, Method::POST, "Patient", JSON, "[1, 2]").await;
    expect_outcome(array, 400, "structure", "must be a JSON object").await;
    let trailing = raw(&server, Method::POST, "Patient", JSON, r#"{"resourceType": "Patient"} {}"#).await;
    expect_outcome(trailing, 400, "structure", "trailing characters").await;
    let empty = raw(&server, Method::POST, "Patient", JSON, "").await;
    expect_outcome(empty, 400, "required", "no body").await;
    assert_eq!(server.version_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_types_must_be_known_and_match_the_url() {
    let server = start("err-type").await;
    expect_outcome(
        server.get("Patiant/1").await,
        404,
        "not-supported",
        "'Patiant' is not a FHIR R4 resource type",
    )
    .await;
    expect_outcome(
        server.post("Patiant", &json!({"resourceType": "Patiant"})).await,
        404,
        "not-supported",
        "Patiant",
    )
    .await;
    expect_outcome(server.get("DomainResource/1").await, 404, "not-supported", "").await;
    let outcome = expect_outcome(
        server.post("Patient", &json!({"resourceType": "Observation"})).await,
        400,
        "invalid",
        "does not match",
    )
    .await;
    assert_eq!(outcome["issue"][0]["expression"][0], "resourceType");
    let unknown_in_body = server.put("Patient/p1", &json!({"resourceType": "Patiant", "id": "p1"})).await;
    expect_outcome(unknown_in_body, 400, "not-supported", "'Patiant' is not a FHIR R4 resource type").await;
    expect_outcome(
        server.post("Patient", &json!({"id": "x"})).await,
        400,
        "required",
        "resourceType is missing",
    )
    .await;
    expect_outcome(
        server.post("Patient", &json!({"resourceType": 7})).await,
        400,
        "structure",
        "resourceType must be",
    )
    .await;
    assert_eq!(server.version_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_must_match_the_fhir_id_rule() {
    let server = start("err-id").await;
    let long = "x".repeat(65);
    let outcome =
        expect_outcome(server.get(&format!("Patient/{long}")).await, 400, "value", "not a valid id").await;
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.id");
    expect_outcome(server.get("Patient/a_b").await, 400, "value", "'a_b'").await;
    expect_outcome(server.get("Patient/a%20b").await, 400, "value", "not a valid id").await;
    let body = json!({"resourceType": "Patient", "id": "bad id"});
    expect_outcome(server.put("Patient/bad%20id", &body).await, 400, "value", "not a valid id").await;
    let body_only = json!({"resourceType": "Patient", "id": "ok", "meta": "not an object"});
    expect_outcome(server.put("Patient/ok", &body_only).await, 400, "structure", "Patient.meta").await;
    assert_eq!(server.version_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_must_be_well_formed() {
    let server = start("err-ref").await;
    let body = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patiant/1"}});
    let outcome = expect_outcome(
        server.post("Observation", &body).await,
        422,
        "value",
        "'Patiant' is not a resource type",
    )
    .await;
    assert_eq!(outcome["issue"][0]["expression"][0], "Observation.subject.reference");
    let conditional = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                             "performer": [{"reference": "Practitioner/1"}, {"reference": "Practitioner?identifier=x"}]});
    let outcome = expect_outcome(
        server.post("Observation", &conditional).await,
        422,
        "value",
        "only allowed inside a transaction",
    )
    .await;
    assert_eq!(outcome["issue"][0]["expression"][0], "Observation.performer[1].reference");
    assert_eq!(server.version_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_types_other_than_fhir_json_are_refused() {
    let server = start("err-media").await;
    let xml = raw(
        &server,
        Method::POST,
        "Patient",
        Some("application/fhir+xml"),
        "<Patient xmlns=\"http://hl7.org/fhir\"/>",
    )
    .await;
    expect_outcome(xml, 415, "not-supported", "FHIR JSON only").await;
    let form = raw(&server, Method::POST, "Patient", Some("application/x-www-form-urlencoded"), "a=b").await;
    expect_outcome(form, 415, "not-supported", "application/x-www-form-urlencoded").await;
    let none =
        raw(&server, Method::PUT, "Patient/p1", None, r#"{"resourceType": "Patient", "id": "p1"}"#).await;
    expect_outcome(none, 415, "not-supported", "no Content-Type").await;
    let plain_json = raw(
        &server,
        Method::PUT,
        "Patient/p1",
        Some("application/json"),
        r#"{"resourceType": "Patient", "id": "p1"}"#,
    )
    .await;
    assert_eq!(plain_json.status(), 201, "application/json is FHIR JSON too");
    let accept_xml =
        server.send(Method::GET, "Patient/p1", None, &[("accept", "application/fhir+xml")]).await;
    expect_outcome(accept_xml, 406, "not-supported", "application/fhir+json only").await;
    expect_outcome(server.get("Patient/p1?_format=xml").await, 406, "not-supported", "_format=xml").await;
    let accept_any =
        server.send(Method::GET, "Patient/p1", None, &[("accept", "text/html, */*;q=0.8")]).await;
    assert_eq!(accept_any.status(), 200);
    assert_eq!(server.get("Patient/p1?_format=json").await.status(), 200);
    assert_eq!(server.version_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused_unread() {
    let server =
        start_with("err-size", server::ServerConfig { max_body_bytes: 1024, ..Default::default() }).await;
    let big = json!({"resourceType": "Patient", "name": [{"family": "x".repeat(2000)}]});
    expect_outcome(
        server.post("Patient", &big).await,
        413,
        "too-long",
        "larger than the limit of 1024 bytes",
    )
    .await;
    // Also without a Content-Length: a chunked upload is cut off at the limit.
    let status = chunked_post(
        &server,
        "/fhir/Patient",
        &[br#"{"resourceType": "Patient", "name": [{"family": ""#, &[b'y'; 4000], br#""}]}"#],
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let small = json!({"resourceType": "Patient", "active": true});
    assert_eq!(server.post("Patient", &small).await.status(), 201);
    assert_eq!(server.version_count(), 1);
}

/// Sends a chunked POST by hand (no Content-Length) and returns the response's status line.
async fn chunked_post(server: &common::TestServer, path: &str, chunks: &[&[u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://").trim_end_matches("/fhir").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in chunks {
        // The server may answer and close before every chunk is sent.
        if stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err()
            || stream.write_all(chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).lines().next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_methods_paths_and_operations() {
    let server = start("err-method").await;
    expect_outcome(server.delete("Patient").await, 405, "not-supported", "allowed: GET, POST").await;
    expect_outcome(
        server.send(Method::PATCH, "Patient/p1", Some(&json!({})), &[]).await,
        400,
        "structure",
        "as a JSON Merge Patch it changes nothing",
    )
    .await;
    expect_outcome(
        server.send(Method::PATCH, "Patient/p1", Some(&json!(7)), &[]).await,
        400,
        "structure",
        "a PATCH body is a JSON Patch array",
    )
    .await;
    expect_outcome(server.send(Method::OPTIONS, "Patient/p1", None, &[]).await, 405, "not-supported", "")
        .await;
    expect_outcome(server.get("").await, 400, "not-supported", "search across all resource types").await;
    expect_outcome(server.get("Patient/p1/$diff").await, 400, "not-supported", "$diff").await;
    expect_outcome(server.get("Patient/p1/foo/bar").await, 404, "not-found", "").await;
    let elsewhere = server.client.get(server.base.replace("/fhir", "/nothing-here")).send().await.unwrap();
    expect_outcome(elsewhere, 404, "not-found", "/nothing-here").await;
    expect_outcome(
        server.send(Method::PUT, "_history", Some(&json!({})), &[]).await,
        405,
        "not-supported",
        "",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_host_header_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start("err-host").await;
    let address = server.base.trim_start_matches("http://").trim_end_matches("/fhir").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(
            b"GET /fhir/metadata HTTP/1.1\r\nHost: evil.example\"/><script>\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("invalid Host header"), "{text}");
}

/// Nesting a request controls is bounded wherever it is walked: JSON bodies (as a resource,
/// a Bundle, a view), FHIRPath in a view, search chains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_requests_are_refused_not_followed() {
    let server = start("err-depth").await;
    let deep_json = format!(
        "{{\"resourceType\":\"Patient\",\"extension\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for path in ["Patient", "", "ViewDefinition/$run", "Patient/$validate"] {
        let response = server
            .client
            .post(server.url(path))
            .header("content-type", "application/fhir+json")
            .body(deep_json.clone())
            .send()
            .await
            .unwrap();
        expect_outcome(response, 400, "", "").await;
    }
    let deep_path = format!("{}id{}", "(".repeat(50_000), ")".repeat(50_000));
    let view = json!({ "resourceType": "ViewDefinition", "resource": "Patient", "status": "active",
        "select": [{ "column": [{ "name": "x", "path": deep_path }] }] });
    let response = server.post("ViewDefinition/$run", &view).await;
    expect_outcome(response, 400, "", "").await;
    let chained = format!("Patient?{}name=x", "link.".repeat(2_400));
    expect_outcome(server.get(&chained).await, 400, "too-costly", "at most 512 characters").await;
    let chained = format!("Patient?{}name=x", "link.".repeat(20));
    expect_outcome(server.get(&chained).await, 400, "too-costly", "links; at most 4").await;
    let has = format!("Patient?{}name=x", "_has:Patient:link:".repeat(10));
    expect_outcome(server.get(&has).await, 400, "too-costly", "links; at most 4").await;
    assert_eq!(server.get("metadata").await.status(), 200, "still answering");
}
