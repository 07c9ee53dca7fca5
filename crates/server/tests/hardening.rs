//! Regression tests for defects an outside probe found over HTTP: writes by read-only roles
//! through Bundle entries, a patient's token reaching another patient's record through
//! trimmed responses and other compartments, unconfined JWTs, database limits leaking as
//! 500s, unreadable conditional headers ignored, refusals at the HTTP edge left off the
//! audit trail, and smaller edge cases of ids, fullUrls, absolute references and bodies.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use chartroom_server as server;
use common::{TestServer, json, start_with};
use privacy::{Role, Users};
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

struct Fixture {
    server: TestServer,
    security: Arc<server::Security>,
    privacy_dir: std::path::PathBuf,
    admin: String,
    analyst: String,
    clinician: String,
    officer: String,
    patient_a: String,
}

/// The ids of patient b's resources: what a patient-a token must never see.
const PB_IDS: &[&str] = &["pb", "enc-b", "obs-b1", "obs-b2", "obs-b3", "doc-b"];
const PB_NOTE: &str = "note about patient b";

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn fixture_with(name: &str, max_body_bytes: Option<usize>, load: bool) -> Fixture {
    let privacy_dir = testkit::temp_dir(&format!("{name}-privacy"));
    let users = Users::open(&privacy_dir).unwrap();
    let admin = users.add("root", Role::Admin, None, None).unwrap();
    let analyst = users.add("ana-lyst", Role::Analyst, None, None).unwrap();
    let clinician = users.add("dr-grey", Role::Clinician, None, Some("Practitioner/prac-1")).unwrap();
    let officer = users.add("privacy-pat", Role::PrivacyOfficer, None, None).unwrap();
    let patient_a = users.add("alice", Role::Patient, Some("pa"), None).unwrap();
    let security = Arc::new(server::Security::open(&privacy_dir).unwrap());
    let mut config = server::ServerConfig { security: Some(security.clone()), ..Default::default() };
    if let Some(limit) = max_body_bytes {
        config.max_body_bytes = limit;
    }
    let server = start_with(name, config).await;
    let fixture = Fixture { server, security, privacy_dir, admin, analyst, clinician, officer, patient_a };
    if load {
        fixture.load().await;
    }
    fixture
}

async fn fixture(name: &str) -> Fixture {
    fixture_with(name, None, true).await
}

impl Fixture {
    /// Patients pa and pb, each with an encounter, three observations and a note, all
    /// involving Practitioner prac-1.
    async fn load(&self) {
        let mut resources = vec![
            json!({ "resourceType": "Practitioner", "id": "prac-1", "name": [{ "family": "Grey" }] }),
            json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Able" }], "gender": "female" }),
            json!({ "resourceType": "Patient", "id": "pb", "name": [{ "family": "Baker" }], "gender": "male" }),
        ];
        for (patient, tag) in [("pa", "a"), ("pb", "b")] {
            resources.push(
                json!({ "resourceType": "Encounter", "id": format!("enc-{tag}"), "status": "finished",
                "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
                "subject": { "reference": format!("Patient/{patient}") },
                "participant": [{ "individual": { "reference": "Practitioner/prac-1" } }],
                "period": { "start": "2024-03-01T09:00:00Z", "end": "2024-03-01T10:00:00Z" },
                "reasonCode": [{ "text": format!("reason of {patient}") }] }),
            );
            for n in 1..=3 {
                resources.push(json!({ "resourceType": "Observation", "id": format!("obs-{tag}{n}"), "status": "final",
                    "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
                    "subject": { "reference": format!("Patient/{patient}") },
                    "encounter": { "reference": format!("Encounter/enc-{tag}") },
                    "performer": [{ "reference": "Practitioner/prac-1" }],
                    "valueQuantity": { "value": 70 + n, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" } }));
            }
            let note = format!("note about patient {tag}");
            resources.push(json!({ "resourceType": "DocumentReference", "id": format!("doc-{tag}"), "status": "current",
                "subject": { "reference": format!("Patient/{patient}") },
                "author": [{ "reference": "Practitioner/prac-1" }],
                "text": { "status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{note}</div>") },
                "content": [{ "attachment": { "contentType": "text/plain", "data": base64(note.as_bytes()) } }],
                "context": { "encounter": [{ "reference": format!("Encounter/enc-{tag}") }] } }));
        }
        for resource in &resources {
            let path = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            );
            let response = self.call(&self.admin, Method::PUT, &path, Some(resource)).await;
            let status = response.status();
            assert!(status.is_success(), "{path}: {status} {}", response.text().await.unwrap());
        }
    }

    async fn call(&self, token: &str, method: Method, path: &str, body: Option<&Value>) -> reqwest::Response {
        let bearer = format!("Bearer {token}");
        self.server.send(method, path, body, &[("authorization", bearer.as_str())]).await
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self.call(token, Method::GET, path, None).await;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    /// A Bundle POSTed to the base.
    async fn post_bundle(&self, token: &str, bundle: &Value) -> (u16, Value) {
        let response = self.call(token, Method::POST, "", Some(bundle)).await;
        let status = response.status().as_u16();
        (status, json(response).await)
    }

    /// The current version of a resource, as the administrator reads it.
    async fn version_of(&self, path: &str) -> Option<String> {
        let (status, body) = self.get(&self.admin, path).await;
        (status == 200).then(|| body["meta"]["versionId"].as_str().unwrap_or_default().to_string())
    }

    async fn post_form(&self, token: &str, path: &str, form: String) -> reqwest::Response {
        self.server
            .client
            .post(self.server.url(path))
            .bearer_auth(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap()
    }

    /// The audit trail's entries, once everything recorded so far is committed.
    fn audit_entries(&self) -> Vec<privacy::Access> {
        self.security.audit.flush();
        privacy::audit::entries(&self.privacy_dir).unwrap().into_iter().map(|(_, _, access)| access).collect()
    }

    fn address(&self) -> String {
        self.server.base.trim_start_matches("http://").trim_end_matches("/fhir").to_string()
    }
}

fn assert_outcome(status: u16, body: &Value, allowed: &[u16], context: &str) {
    assert!(allowed.contains(&status), "{context}: status {status} (expected one of {allowed:?}): {body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{context}: {body}");
}

/// Every string anywhere in a JSON value.
fn strings_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings_in(v, out)),
        Value::Object(object) => object.values().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

/// The ids of a Bundle's resources.
fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
        .collect()
}

/// Whether a body carries anything of patient b: one of their resources' ids or the note.
fn carries_pb(body: &Value) -> Option<String> {
    let ids = entry_ids(body);
    if let Some(id) = ids.iter().find(|id| PB_IDS.contains(&id.as_str())) {
        return Some(format!("entry {id}"));
    }
    if let Some(id) = body["id"].as_str()
        && PB_IDS.contains(&id)
    {
        return Some(format!("resource {id}"));
    }
    let mut strings = Vec::new();
    strings_in(body, &mut strings);
    let encoded = base64(PB_NOTE.as_bytes());
    strings.into_iter().find(|s| {
        s.contains(PB_NOTE) || s.contains(&encoded) || s.contains("reason of pb") || s == "Patient/pb"
    })
}

/// Raw HTTP/1.1 over TCP (for what a client library would normalize or refuse to send):
/// the status and the response's head and body as text.
fn raw_exchange(address: &str, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A server refusing the head may close before all of it is sent; its answer still counts.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    split_response(&response)
}

fn split_response(response: &[u8]) -> (u16, String, Vec<u8>) {
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..head_end]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = response.get(head_end + 4..).unwrap_or_default().to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = data.get(start + size + 2..).unwrap_or_default();
    }
}

async fn raw(address: String, request: Vec<u8>) -> (u16, String, Vec<u8>) {
    tokio::task::spawn_blocking(move || raw_exchange(&address, &request)).await.unwrap()
}

fn assert_raw_outcome(status: u16, head: &str, body: &[u8], allowed: &[u16], context: &str) {
    let text = String::from_utf8_lossy(body);
    assert!(allowed.contains(&status), "{context}: status {status} (expected {allowed:?})\n{head}\n{text}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/fhir+json"),
        "{context}: not FHIR JSON\n{head}"
    );
    let outcome: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{context}: {text}");
}

// Finding 1: read-only roles and the audit trail, through absolute entry URLs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_cannot_write_through_absolute_entry_urls() {
    let f = fixture("hardening-absolute-urls").await;
    let base = f.server.base.clone();
    let before = f.version_of("Patient/pa").await.unwrap();
    let overwritten = json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Overwritten" }] });
    let created = json!({ "resourceType": "Patient", "name": [{ "family": "Injected" }] });
    let versions = f.server.version_count();
    let entries = [
        json!({ "resource": overwritten, "request": { "method": "PUT", "url": format!("{base}/Patient/pa") } }),
        json!({ "resource": created, "request": { "method": "POST", "url": format!("{base}/Patient") } }),
        json!({ "request": { "method": "DELETE", "url": format!("{base}/Observation/obs-a1") } }),
    ];
    let mut problems = Vec::new();
    for kind in ["batch", "transaction"] {
        for entry in &entries {
            let bundle = json!({ "resourceType": "Bundle", "type": kind, "entry": [entry] });
            let (status, body) = f.post_bundle(&f.analyst, &bundle).await;
            if status != 403 || body["resourceType"] != "OperationOutcome" {
                problems.push(format!("{kind} {}: {status} {body}", entry["request"]));
            }
        }
    }
    assert!(problems.is_empty(), "an analyst's writes were not refused:\n{}", problems.join("\n"));
    assert_eq!(
        f.version_of("Patient/pa").await.as_deref(),
        Some(before.as_str()),
        "Patient/pa was rewritten"
    );
    assert_eq!(f.get(&f.admin, "Observation/obs-a1").await.0, 200, "Observation/obs-a1 was deleted");
    assert_eq!(f.server.version_count(), versions, "something was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinician_and_privacy_officer_cannot_store_audit_events_through_absolute_entry_urls() {
    let f = fixture("hardening-absolute-audit").await;
    let base = f.server.base.clone();
    let versions = f.server.version_count();
    let event = json!({ "resourceType": "AuditEvent",
        "type": { "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110" },
        "recorded": "2024-01-01T00:00:00Z",
        "agent": [{ "requestor": true, "who": { "display": "forged" } }],
        "source": { "observer": { "display": "forged" } } });
    let mut problems = Vec::new();
    for (who, token) in [("clinician", &f.clinician), ("privacy officer", &f.officer)] {
        for kind in ["batch", "transaction"] {
            let bundle = json!({ "resourceType": "Bundle", "type": kind, "entry": [
                { "resource": event, "request": { "method": "POST", "url": format!("{base}/AuditEvent") } }] });
            let (status, body) = f.post_bundle(token, &bundle).await;
            if status != 403 || body["resourceType"] != "OperationOutcome" {
                problems.push(format!("{who} {kind}: {status} {body}"));
            }
        }
    }
    assert!(problems.is_empty(), "AuditEvents written through the API:\n{}", problems.join("\n"));
    assert_eq!(f.server.version_count(), versions, "an AuditEvent was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrator_cannot_store_audit_events_through_bundle_entries() {
    // The trail is append-only and kept by the server alone; a direct POST is refused, and so
    // must be the same write carried in a Bundle, however its URL is spelled.
    let f = fixture("hardening-admin-audit-entries").await;
    let base = f.server.base.clone();
    let versions = f.server.version_count();
    let event = json!({ "resourceType": "AuditEvent",
        "type": { "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110" },
        "recorded": "2024-01-01T00:00:00Z",
        "agent": [{ "requestor": true, "who": { "display": "forged" } }],
        "source": { "observer": { "display": "forged" } } });
    let mut problems = Vec::new();
    for url in ["AuditEvent".to_string(), format!("{base}/AuditEvent")] {
        for kind in ["batch", "transaction"] {
            let bundle = json!({ "resourceType": "Bundle", "type": kind, "entry": [
                { "resource": event, "request": { "method": "POST", "url": url } }] });
            let (status, body) = f.post_bundle(&f.admin, &bundle).await;
            if status != 403 || body["resourceType"] != "OperationOutcome" {
                problems.push(format!("{kind} {url}: {status} {body}"));
            }
        }
    }
    assert!(problems.is_empty(), "AuditEvents written through the API:\n{}", problems.join("\n"));
    assert_eq!(f.server.version_count(), versions, "an AuditEvent was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_absolute_entry_urls_never_write() {
    let f = fixture("hardening-odd-urls").await;
    let before = f.version_of("Patient/pa").await.unwrap();
    let versions = f.server.version_count();
    let address = f.address();
    let overwritten = json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Overwritten" }] });
    let urls = [
        "http://other.example/fhir/Patient/pa".to_string(),
        format!("HTTP://{address}/fhir//Patient/pa"),
        format!("{}//Patient/pa", f.server.base),
    ];
    for url in &urls {
        for kind in ["batch", "transaction"] {
            let bundle = json!({ "resourceType": "Bundle", "type": kind, "entry": [
                { "resource": overwritten, "request": { "method": "PUT", "url": url } }] });
            let (status, body) = f.post_bundle(&f.analyst, &bundle).await;
            assert_refused_bundle(status, &body, &format!("{kind} {url}"));
        }
    }
    assert_eq!(
        f.version_of("Patient/pa").await.as_deref(),
        Some(before.as_str()),
        "Patient/pa was rewritten"
    );
    assert_eq!(f.server.version_count(), versions, "something was written");
}

/// A Bundle refused as a whole (400 or 403), or a batch whose every entry was refused so.
fn assert_refused_bundle(status: u16, body: &Value, context: &str) {
    if status == 200 && body["type"] == "batch-response" {
        for entry in body["entry"].as_array().into_iter().flatten() {
            let entry_status = entry["response"]["status"].as_str().unwrap_or_default();
            assert!(
                entry_status.starts_with("400") || entry_status.starts_with("403"),
                "{context}: entry answered {entry_status}: {body}"
            );
        }
    } else {
        assert_outcome(status, body, &[400, 403], context);
    }
}

// Finding 2: a patient's token and responses that no longer carry the reference.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_token_cannot_read_another_patients_resources_trimmed_by_elements_or_summary() {
    let f = fixture("hardening-trimmed-reads").await;
    // The untrimmed reads are refused already; the trimmed ones must be too.
    let mut problems = Vec::new();
    for path in [
        "Observation/obs-b1?_elements=code,value",
        "DocumentReference/doc-b?_elements=content",
        "DocumentReference/doc-b?_summary=text",
        "Encounter/enc-b?_elements=period,reasonCode",
        "Observation/obs-b1/_history/1?_elements=code,value",
    ] {
        let (status, body) = f.get(&f.patient_a, path).await;
        if status != 403 || carries_pb(&body).is_some() {
            problems.push(format!("{path}: {status} {body}"));
        }
    }
    assert!(problems.is_empty(), "patient b's data reached patient a's token:\n{}", problems.join("\n"));
    // The own record stays readable the same way.
    let (status, own) = f.get(&f.patient_a, "Observation/obs-a1?_elements=code,value").await;
    assert_eq!((status, own["id"].as_str()), (200, Some("obs-a1")), "{own}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_token_compartment_searches_of_other_compartments_return_nothing_of_another_patient() {
    let f = fixture("hardening-other-compartments").await;
    let mut problems = Vec::new();
    for path in [
        "Encounter/enc-b/Observation?_elements=code,value",
        "Encounter/enc-b/Observation",
        "Practitioner/prac-1/DocumentReference?_elements=content",
        "Practitioner/prac-1/Observation",
        "Practitioner/prac-1/Observation?_elements=code,value",
        "Practitioner/prac-1/Encounter?_elements=period,reasonCode",
    ] {
        let (status, body) = f.get(&f.patient_a, path).await;
        if status != 200 || body["type"] != "searchset" {
            problems.push(format!("{path}: not a searchset: {status} {body}"));
        } else if let Some(found) = carries_pb(&body) {
            problems.push(format!("{path}: {found} in {body}"));
        }
    }
    assert!(problems.is_empty(), "patient b's data reached patient a's token:\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_token_conditional_read_does_not_confirm_another_patients_version() {
    let f = fixture("hardening-if-none-match").await;
    let bearer = format!("Bearer {}", f.patient_a);
    let mut problems = Vec::new();
    for path in ["Observation/obs-b1", "DocumentReference/doc-b", "Encounter/enc-b", "Patient/pb"] {
        let response = f
            .server
            .send(
                Method::GET,
                path,
                None,
                &[("authorization", bearer.as_str()), ("if-none-match", "W/\"1\"")],
            )
            .await;
        // A 304 would confirm that the resource exists at that version.
        if response.status().as_u16() != 403 {
            problems.push(format!("{path}: {}", response.status()));
        }
    }
    assert!(problems.is_empty(), "If-None-Match on patient b's resources:\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_token_counts_reveal_nothing_of_another_patient() {
    let f = fixture("hardening-counts").await;
    let mut problems = Vec::new();
    for path in [
        "Practitioner/prac-1/Encounter?patient=pb&_summary=count",
        "Practitioner/prac-1/Observation?subject=Patient/pb&_summary=count",
        "Encounter/enc-b/Observation?_summary=count",
    ] {
        let (status, body) = f.get(&f.patient_a, path).await;
        let counted_nothing = status == 200 && body["total"].as_u64() == Some(0);
        if status != 403 && !counted_nothing {
            problems.push(format!("{path}: {status} {body}"));
        }
    }
    assert!(problems.is_empty(), "counts of patient b's resources:\n{}", problems.join("\n"));
}

// Finding 3: a JWT saying `role: patient` without a patient claim.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_with_patient_role_and_no_patient_claim_is_not_unconfined() {
    let privacy_dir = testkit::temp_dir("hardening-jwt-patient-role-keys");
    let secret = b"a shared secret of at least 32 bytes!";
    let mut security = server::Security::open(&privacy_dir).unwrap();
    security.jwt =
        Some(privacy::jwt::Verifier::default().with_hs256(privacy::jwt::Hs256::new(secret).unwrap()));
    let admin = security.users.add("root", Role::Admin, None, None).unwrap();
    let config = server::ServerConfig { security: Some(Arc::new(security)), ..Default::default() };
    let server = start_with("hardening-jwt-patient-role", config).await;
    let admin_bearer = format!("Bearer {admin}");
    for patient in ["pa", "pb"] {
        let body = json!({ "resourceType": "Patient", "id": patient, "name": [{ "family": format!("F-{patient}") }] });
        let response = server
            .send(
                Method::PUT,
                &format!("Patient/{patient}"),
                Some(&body),
                &[("authorization", admin_bearer.as_str())],
            )
            .await;
        assert!(response.status().is_success());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for scope in ["user/*.rs", "openid fhirUser user/*.read"] {
        let claims = json!({ "sub": "mallory", "role": "patient", "scope": scope, "exp": now + 600 });
        let bearer = format!("Bearer {}", privacy::jwt::sign(secret, &claims));
        for path in ["Patient/pb", "Patient", "Observation"] {
            let response = server.send(Method::GET, path, None, &[("authorization", bearer.as_str())]).await;
            let status = response.status().as_u16();
            let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
            assert!(status == 401 || status == 403, "{scope} {path}: {status} {body}");
            assert_eq!(body["resourceType"], "OperationOutcome", "{scope} {path}: {body}");
        }
    }
}

// Finding 5: database limits are the client's problem (400), not a 500.

async fn assert_search_refused(f: &Fixture, response: reqwest::Response, context: &str) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).to_string();
    assert_eq!(status, 400, "{context}: {text}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{context}: {text}");
    // The server still answers.
    assert_eq!(f.get(&f.admin, "Patient/pa").await.0, 200, "{context}: the server stopped answering");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_repeated_search_parameters_are_a_bad_request() {
    let f = fixture("hardening-many-params").await;
    let form = vec!["name=a"; 990].join("&");
    let response = f.post_form(&f.admin, "Patient/_search", form).await;
    assert_search_refused(&f, response, "990 name parameters").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_or_values_are_a_bad_request() {
    let f = fixture("hardening-many-or").await;
    let names: Vec<String> = (0..996).map(|n| format!("n{n}")).collect();
    let names = names.join(",");
    // With a second filter the names are probed per resource, as one expression.
    let response = f.post_form(&f.admin, "Patient/_search", format!("name={names}&gender=male")).await;
    assert_search_refused(&f, response, "996 OR names and a gender").await;
    let response = f.post_form(&f.admin, "Patient/_search", format!("name={names}")).await;
    assert_search_refused(&f, response, "996 OR names").await;
    let ids: Vec<String> = (0..32_765).map(|n| format!("i{n}")).collect();
    let response = f.post_form(&f.admin, "Patient/_search", format!("_id={}", ids.join(","))).await;
    assert_search_refused(&f, response, "32,765 ids").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_chains_are_a_bad_request() {
    let f = fixture("hardening-deep-chain").await;
    let chain = format!("subject:Patient{}.name=x", ".link:Patient".repeat(29));
    let response = f.get_response(&f.admin, &format!("Observation?{chain}")).await;
    assert_search_refused(&f, response, "a chain 30 deep").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_chained_parameters_are_a_bad_request() {
    let f = fixture("hardening-many-chains").await;
    let form = vec!["subject:Patient.name=a"; 100].join("&");
    let response = f.post_form(&f.admin, "Observation/_search", form).await;
    assert_search_refused(&f, response, "100 chained parameters").await;
}

/// The limits are set inside what the store runs: a search at every limit at once is
/// answered, not refused by the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_at_the_limits_are_answered() {
    let f = fixture("hardening-at-limits").await;
    // 500 values in 50 parameters, the names probed per resource as one expression.
    let names: Vec<String> = (0..451).map(|n| format!("n{n}")).collect();
    let form = format!("name={}&gender=male&{}", names.join(","), vec!["birthdate=ge1900"; 48].join("&"));
    let response = f.post_form(&f.admin, "Patient/_search", form).await;
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap_or_default());
    let ids: Vec<String> = (0..500).map(|n| format!("i{n}")).collect();
    let response = f.post_form(&f.admin, "Patient/_search", format!("_id={}", ids.join(","))).await;
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap_or_default());
    // Chains four links deep, sixteen links in all (untyped chains fan out over their
    // reference's types).
    let deep = "subject:Patient.link:Patient.link:Patient.link:Patient.name=x";
    let response = f.post_form(&f.admin, "Observation/_search", [deep; 4].join("&")).await;
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap_or_default());
    let untyped = "subject.organization.name=x";
    let response = f.get_response(&f.admin, &format!("Observation?{untyped}&performer.name=y")).await;
    let status = response.status().as_u16();
    assert!(status == 200 || status == 400, "{status}: {}", response.text().await.unwrap_or_default());
    let has = "_has:Observation:subject:_has:Provenance:target:agent=x";
    let response = f.get_response(&f.admin, &format!("Patient?{has}")).await;
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap_or_default());
}

impl Fixture {
    async fn get_response(&self, token: &str, path: &str) -> reqwest::Response {
        self.call(token, Method::GET, path, None).await
    }
}

// Finding 6: conditional headers that cannot be read are refused, not ignored.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_if_match_is_refused_not_ignored() {
    let f = fixture("hardening-if-match-bytes").await;
    let updated = json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Able" }], "gender": "female", "active": true });
    assert!(f.call(&f.admin, Method::PUT, "Patient/pa", Some(&updated)).await.status().is_success());
    assert_eq!(f.version_of("Patient/pa").await.as_deref(), Some("2"));
    let response = f
        .server
        .client
        .put(f.server.url("Patient/pa"))
        .bearer_auth(&f.admin)
        .header("content-type", "application/fhir+json")
        .header("if-match", HeaderValue::from_bytes("W/\"1é\"".as_bytes()).unwrap())
        .body(updated.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = json(response).await;
    assert_outcome(status, &body, &[400], "If-Match with a non-ASCII byte");
    assert_eq!(f.version_of("Patient/pa").await.as_deref(), Some("2"), "a new version was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_if_none_exist_is_refused_not_ignored() {
    let f = fixture("hardening-if-none-exist-bytes").await;
    let versions = f.server.version_count();
    let patient =
        json!({ "resourceType": "Patient", "identifier": [{ "system": "urn:x", "value": "dupé" }] });
    for attempt in 1..=2 {
        let response = f
            .server
            .client
            .post(f.server.url("Patient"))
            .bearer_auth(&f.admin)
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", HeaderValue::from_bytes("identifier=urn:x|dupé".as_bytes()).unwrap())
            .body(patient.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = json(response).await;
        assert_outcome(status, &body, &[400], &format!("create {attempt} with a non-ASCII If-None-Exist"));
    }
    assert_eq!(f.server.version_count(), versions, "a Patient was created");
}

// Finding 7: refusals at the HTTP edge are OperationOutcomes and are audited.

fn assert_audited(f: &Fixture, status: u16, user: &str) {
    let entries = f.audit_entries();
    assert!(
        entries.iter().any(|a| a.status == status && a.user == user),
        "no audit entry with status {status} for {user}: {:?}",
        entries.iter().map(|a| (a.user.as_str(), a.status)).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_host_refusal_is_audited() {
    let f = fixture_with("hardening-edge-host", None, false).await;
    let request = format!(
        "GET /fhir/Patient/pa HTTP/1.1\r\nHost: bad host!\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        f.clinician
    );
    let (status, head, body) = raw(f.address(), request.into_bytes()).await;
    assert_raw_outcome(status, &head, &body, &[400], "bad Host");
    assert_audited(&f, 400, "dr-grey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_acceptable_refusal_is_audited() {
    let f = fixture_with("hardening-edge-accept", None, false).await;
    let bearer = format!("Bearer {}", f.clinician);
    let response = f
        .server
        .send(
            Method::GET,
            "Patient/pa",
            None,
            &[("authorization", bearer.as_str()), ("accept", "application/fhir+xml")],
        )
        .await;
    let status = response.status().as_u16();
    assert_outcome(status, &json(response).await, &[406], "Accept: XML");
    assert_audited(&f, 406, "dr-grey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_too_large_refusal_is_audited() {
    let f = fixture_with("hardening-edge-size", Some(1024), false).await;
    let padding = "x".repeat(4096);
    let patient = json!({ "resourceType": "Patient", "name": [{ "family": padding }] });
    let response = f.call(&f.clinician, Method::POST, "Patient", Some(&patient)).await;
    let status = response.status().as_u16();
    assert_outcome(status, &json(response).await, &[413], "body over the limit");
    assert_audited(&f, 413, "dr-grey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_media_type_refusal_is_audited() {
    let f = fixture_with("hardening-edge-media", None, false).await;
    let response = f
        .server
        .client
        .post(f.server.url("Patient"))
        .bearer_auth(&f.clinician)
        .header("content-type", "text/plain")
        .body("{\"resourceType\":\"Patient\"}")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_outcome(status, &json(response).await, &[415], "Content-Type: text/plain");
    assert_audited(&f, 415, "dr-grey");
}

// Finding 10 (b-f): the smaller edge cases.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_of_80_kib_is_refused_with_an_operation_outcome() {
    let f = fixture_with("hardening-80k-header", None, false).await;
    let request = format!(
        "GET /fhir/metadata HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        f.address(),
        f.admin,
        "a".repeat(80 * 1024)
    );
    let (status, head, body) = raw(f.address(), request.into_bytes()).await;
    assert_raw_outcome(status, &head, &body, &[431, 400], "an 80 KiB header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_refused_by_the_http_layer_get_an_operation_outcome() {
    let f = fixture_with("hardening-huge-head", None, false).await;
    let (address, token) = (f.address(), f.admin.clone());
    let huge = format!(
        "GET /fhir/metadata HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let (status, head, body) = raw(address.clone(), huge.into_bytes()).await;
    assert_raw_outcome(status, &head, &body, &[431, 400], "a 512 KiB header");
    let many: String = (0..150).map(|n| format!("X-Header-{n}: {n}\r\n")).collect();
    let many = format!(
        "GET /fhir/metadata HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n{many}Connection: close\r\n\r\n"
    );
    let (status, head, body) = raw(address, many.into_bytes()).await;
    assert_raw_outcome(status, &head, &body, &[431, 400], "150 headers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segment_ids_are_refused() {
    let f = fixture_with("hardening-dot-ids", None, false).await;
    let address = f.address();
    let put = |id: &str| {
        let body = json!({ "resourceType": "Patient", "id": id }).to_string();
        format!(
            "PUT /fhir/Patient/{id} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            f.admin,
            body.len()
        )
        .into_bytes()
    };
    // `-` is a legal id.
    let (status, head, body) = raw(address.clone(), put("-")).await;
    assert_eq!(status, 201, "Patient/-\n{head}\n{}", String::from_utf8_lossy(&body));
    for id in ["..", "."] {
        let (status, head, body) = raw(address.clone(), put(id)).await;
        assert_raw_outcome(status, &head, &body, &[400], &format!("PUT Patient/{id}"));
        let delete = format!(
            "DELETE /fhir/Patient/{id} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            f.admin
        );
        let (status, head, body) = raw(address.clone(), delete.into_bytes()).await;
        assert_raw_outcome(status, &head, &body, &[400, 404], &format!("DELETE Patient/{id}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_urn_uuid_full_url_is_refused() {
    let f = fixture_with("hardening-urn-uuid", None, false).await;
    let versions = f.server.version_count();
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "fullUrl": "urn:uuid:not-a-uuid", "resource": { "resourceType": "Patient", "name": [{ "family": "X" }] },
          "request": { "method": "POST", "url": "Patient" } }] });
    let (status, body) = f.post_bundle(&f.admin, &bundle).await;
    assert_outcome(status, &body, &[400], "fullUrl urn:uuid:not-a-uuid");
    assert_eq!(f.server.version_count(), versions, "something was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_reference_to_own_base_is_indexed_and_confined() {
    let f = fixture("hardening-absolute-subject").await;
    let observation = json!({ "resourceType": "Observation", "id": "obs-b-abs", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
        "subject": { "reference": format!("{}/Patient/pb", f.server.base) },
        "valueQuantity": { "value": 99, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" } });
    let response = f.call(&f.admin, Method::PUT, "Observation/obs-b-abs", Some(&observation)).await;
    assert!(response.status().is_success(), "{}", response.status());
    let (status, bundle) = f.get(&f.admin, "Observation?patient=pb").await;
    assert_eq!(status, 200, "{bundle}");
    assert!(entry_ids(&bundle).contains(&"obs-b-abs".to_string()), "not indexed as pb's: {bundle}");
    let (status, body) = f.get(&f.patient_a, "Observation/obs-b-abs").await;
    assert_eq!(status, 403, "pa's token read pb's observation: {body}");
    for path in ["Observation", "Observation?code=8867-4", "Observation?_id=obs-b-abs"] {
        let (status, bundle) = f.get(&f.patient_a, path).await;
        assert_eq!(status, 200, "{path}: {bundle}");
        assert!(!entry_ids(&bundle).contains(&"obs-b-abs".to_string()), "{path}: {bundle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_written_in_full_still_gets_its_413() {
    let f = fixture_with("hardening-17mib", None, false).await;
    let (address, token) = (f.address(), f.admin.clone());
    let (status, head, write_error) = tokio::task::spawn_blocking(move || {
        let length = 17 * 1024 * 1024;
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST /fhir/Patient HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b' '; 64 * 1024];
        let mut written = 0;
        let mut write_error = None;
        while written < length {
            if let Err(error) = stream.write_all(&chunk) {
                write_error = Some(error);
                break;
            }
            written += chunk.len();
        }
        let mut response = Vec::new();
        let read = stream.read_to_end(&mut response);
        let (status, head, _) = split_response(&response);
        (status, format!("{head}\n(read: {:?})", read.map(|_| ())), write_error.map(|e| e.to_string()))
    })
    .await
    .unwrap();
    // A client that writes before it reads must be able to finish writing, then read the 413.
    assert_eq!(write_error, None, "the body could not be written in full; the response: {head}");
    assert_eq!(status, 413, "{head}");
}
