//! Regression tests for what a second attack on the access design found, over HTTP with real
//! tokens: paging cursors carrying the sort values of withheld records, conditional
//! operations finding a withheld Patient, `_has` through types outside the Patient
//! compartment, stored code systems and value sets read around the policy, a data-quality
//! report and a document's code suggestions shaped by withheld records, a view's rows naming a
//! withheld patient, writes answering preconditions on what the caller may not see, cursors
//! that do not fit the search, earlier versions and deleted records shown by their own
//! content, and a view run without a time limit.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chartroom_server as server;
use common::{TestServer, start_with};
use privacy::Role;
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &[u8] = b"a shared secret of at least 32 bytes, for tests";
const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// Patient b's family name and birth date: what no answer to a caller pb's directive binds may
/// carry, in its entries or its links.
const PB_FAMILY: &str = "Zuniga";
const PB_BIRTH_DATE: &str = "1951-06-17";
/// 1951-06-17T00:00:00Z in milliseconds since the epoch.
const PB_BIRTH_MS: i64 = -585_187_200_000;
/// When pb's Task was authored: a distinctive instant, and it in milliseconds.
const PB_TASK_AUTHORED: &str = "2023-07-14T11:22:33.456Z";
const PB_TASK_AUTHORED_MS: i64 = 1_689_333_753_456;
/// The same for pc's Task.
const PC_TASK_AUTHORED: &str = "2024-01-02T03:04:05.678Z";
const PC_TASK_AUTHORED_MS: i64 = 1_704_164_645_678;
const DAY_MS: i64 = 86_400_000;

/// The stored code system that is pb's (an extension names them), and its one concept.
const PB_CODE_SYSTEM: &str = "http://example.org/cs/pb-private";
const PB_CODE: &str = "secret";
const PB_DISPLAY: &str = "pb private";

struct Fixture {
    server: TestServer,
    admin: String,
    clinician: String,
    analyst: String,
    coder: String,
    officer: String,
    patient_a: String,
}

/// Patients pa (Able, female), pb (Zuniga, female, born 1951) and pc (Carter, male), each
/// with an obesity diagnosis; Practitioner prac-x (the clinician's fhirUser) and
/// Organization org-1; pb's Device (owned by org-1) and Task (owned by prac-x, HIV
/// counselling), and pc's Task. Patient b's directive, recorded by the privacy office, withholds everything
/// of theirs from everyone it binds.
async fn fixture(name: &str) -> Fixture {
    let privacy_dir = testkit::temp_dir(&format!("{name}-privacy"));
    let mut security = server::Security::open(&privacy_dir).unwrap();
    security.jwt =
        Some(privacy::jwt::Verifier::default().with_hs256(privacy::jwt::Hs256::new(SECRET).unwrap()));
    let users = &security.users;
    let admin = users.add("root", Role::Admin, None, None).unwrap();
    let clinician = users.add("dr-xu", Role::Clinician, None, Some("Practitioner/prac-x")).unwrap();
    let analyst = users.add("ana-lyst", Role::Analyst, None, None).unwrap();
    let coder = users.add("coder-kim", Role::Coder, None, None).unwrap();
    let officer = users.add("privacy-pat", Role::PrivacyOfficer, None, None).unwrap();
    let patient_a = users.add("alice", Role::Patient, Some("pa"), None).unwrap();
    let config = server::ServerConfig { security: Some(Arc::new(security)), ..Default::default() };
    let server = start_with(name, config).await;
    let f = Fixture { server, admin, clinician, analyst, coder, officer, patient_a };

    let mut resources = vec![
        json!({ "resourceType": "Practitioner", "id": "prac-x", "name": [{ "family": "Xu" }] }),
        json!({ "resourceType": "Organization", "id": "org-1", "name": "General Hospital" }),
        json!({ "resourceType": "Device", "id": "dev-b", "status": "active",
            "type": { "coding": [{ "system": "http://snomed.info/sct", "code": "14106009" }] },
            "patient": { "reference": "Patient/pb" }, "owner": { "reference": "Organization/org-1" } }),
        json!({ "resourceType": "Task", "id": "task-b", "status": "requested", "intent": "order",
            "code": { "text": "HIV counselling" }, "for": { "reference": "Patient/pb" },
            "owner": { "reference": "Practitioner/prac-x" }, "authoredOn": PB_TASK_AUTHORED }),
        json!({ "resourceType": "Task", "id": "task-c", "status": "requested", "intent": "order",
            "code": { "text": "Physiotherapy" }, "for": { "reference": "Patient/pc" },
            "authoredOn": PC_TASK_AUTHORED }),
    ];
    for (patient, family, gender, birth) in [
        ("pa", "Able", "female", "1980-02-03"),
        ("pb", PB_FAMILY, "female", PB_BIRTH_DATE),
        ("pc", "Carter", "male", "1990-10-10"),
    ] {
        resources.push(json!({ "resourceType": "Patient", "id": patient, "name": [{ "family": family }],
                               "gender": gender, "birthDate": birth }));
        resources.push(condition(&format!("cond-{}1", &patient[1..]), patient, "E66.9"));
    }
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|resource| {
            let url = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            );
            json!({ "resource": resource, "request": { "method": "PUT", "url": url } })
        })
        .collect();
    let (status, body) = f
        .post_bundle(&f.admin, &json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }))
        .await;
    assert_eq!(status, 200, "fixture: {body}");
    // Deny with no class: every resource of pb's.
    let (status, body) =
        f.put(&f.officer, "Consent/consent-b", &consent("consent-b", "pb", json!({ "type": "deny" }))).await;
    assert!(status == 200 || status == 201, "consent: {status} {body}");
    f
}

fn condition(id: &str, patient: &str, code: &str) -> Value {
    json!({ "resourceType": "Condition", "id": id,
        "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
        "code": { "coding": [{ "system": ICD10CM, "code": code }] },
        "subject": { "reference": format!("Patient/{patient}") } })
}

/// An active directive of `patient` whose one nested provision is `deny`.
fn consent(id: &str, patient: &str, deny: Value) -> Value {
    json!({
        "resourceType": "Consent", "id": id, "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{patient}") },
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN" }] },
        "provision": { "type": "permit", "provision": [deny] }
    })
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A JWT signed with the server's shared secret, valid for ten minutes.
fn jwt(mut claims: Value) -> String {
    claims["exp"] = Value::from(now() + 600);
    privacy::jwt::sign(SECRET, &claims)
}

/// A SMART app launched for patient a: `patient/` scopes only.
fn patient_app() -> String {
    jwt(json!({ "sub": "pa-app", "scope": "launch/patient openid fhirUser patient/*.rs", "patient": "pa" }))
}

/// A clinician's SMART app, acting as prac-x.
fn clinician_app() -> String {
    jwt(json!({ "sub": "xu-app", "role": "clinician", "scope": "openid fhirUser user/*.rs",
                "fhirUser": "Practitioner/prac-x" }))
}

impl Fixture {
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let bearer = format!("Bearer {token}");
        let mut all = vec![("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        self.server.send(method, path, body, &all).await
    }

    async fn answer(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        Self::answer(self.call(token, Method::GET, path, None, &[]).await).await
    }

    async fn put(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        Self::answer(self.call(token, Method::PUT, path, Some(body), &[]).await).await
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        Self::answer(self.call(token, Method::POST, path, Some(body), &[]).await).await
    }

    async fn post_bundle(&self, token: &str, bundle: &Value) -> (u16, Value) {
        self.post(token, "", bundle).await
    }
}

/// A path below the base, from a URL the server gave.
fn relative(url: &str) -> String {
    url.split("/fhir/").nth(1).unwrap_or(url).to_string()
}

/// The resources of a Bundle's entries.
fn resources(bundle: &Value) -> Vec<&Value> {
    bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]).collect()
}

/// `Type/id` of a Bundle's resources, OperationOutcomes apart.
fn identities(bundle: &Value) -> Vec<String> {
    resources(bundle)
        .into_iter()
        .filter(|r| r["resourceType"] != "OperationOutcome")
        .map(|r| format!("{}/{}", r["resourceType"].as_str().unwrap_or("?"), r["id"].as_str().unwrap_or("?")))
        .collect()
}

/// A Bundle's links: (relation, url).
fn links(bundle: &Value) -> Vec<(String, String)> {
    bundle["link"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (l["relation"].as_str().unwrap_or("").to_string(), l["url"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn next_link(bundle: &Value) -> Option<String> {
    links(bundle).into_iter().find(|(relation, _)| relation == "next").map(|(_, url)| url)
}

/// A value a paging cursor carries.
#[derive(Debug)]
enum CursorValue {
    Text(String),
    Integer(i64),
    Other,
}

/// The sort values in the `_cursor` of a link URL: `a<rkey>` or `b<rkey>`, then `~`-separated
/// values, text as `t` and its UTF-8 bytes in hex, integers (dates in milliseconds) as `i`.
fn cursor_values(url: &str) -> Vec<CursorValue> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let mut values = Vec::new();
    for (name, cursor) in form_urlencoded::parse(query.as_bytes()) {
        if name != "_cursor" {
            continue;
        }
        for part in cursor.split('~').skip(1) {
            let (kind, rest) = part.split_at(part.len().min(1));
            values.push(match kind {
                "t" => {
                    let bytes: Vec<u8> = (0..rest.len() / 2)
                        .filter_map(|i| u8::from_str_radix(&rest[2 * i..2 * i + 2], 16).ok())
                        .collect();
                    CursorValue::Text(String::from_utf8_lossy(&bytes).into_owned())
                }
                "i" => rest.parse().map(CursorValue::Integer).unwrap_or(CursorValue::Other),
                _ => CursorValue::Other,
            });
        }
    }
    values
}

/// What in a Bundle's links would tell a withheld value: a cursor's text holding one of
/// `texts` (case aside), or a cursor's integer within one of the `[low, high]` millisecond
/// ranges; and the decoded URL holding one of `texts`.
fn leaks_in_links(bundle: &Value, texts: &[&str], ranges: &[(i64, i64)]) -> Vec<String> {
    let mut found = Vec::new();
    for (relation, url) in links(bundle) {
        let decoded: String = form_urlencoded::parse(url.split_once('?').map_or("", |(_, q)| q).as_bytes())
            .map(|(n, v)| format!("{n}={v}&"))
            .collect::<String>()
            .to_lowercase();
        for text in texts {
            if decoded.contains(&text.to_lowercase()) {
                found.push(format!("{relation} link names {text:?}: {url}"));
            }
        }
        for value in cursor_values(&url) {
            match &value {
                CursorValue::Text(t)
                    if texts.iter().any(|x| t.to_lowercase().contains(&x.to_lowercase())) =>
                {
                    found.push(format!("{relation} link's cursor carries {t:?}: {url}"))
                }
                CursorValue::Integer(i) if ranges.iter().any(|(low, high)| low <= i && i <= high) => {
                    found.push(format!("{relation} link's cursor carries {i} (a withheld instant): {url}"))
                }
                _ => {}
            }
        }
    }
    found
}

/// pb's birth date as a range of milliseconds (wide enough for either bound of the day).
fn pb_birth_range() -> (i64, i64) {
    (PB_BIRTH_MS - 1, PB_BIRTH_MS + DAY_MS)
}

/// When the other patients' Tasks were authored, as ranges of milliseconds.
fn task_ranges() -> [(i64, i64); 2] {
    [
        (PB_TASK_AUTHORED_MS - 1_000, PB_TASK_AUTHORED_MS + 1_000),
        (PC_TASK_AUTHORED_MS - 1_000, PC_TASK_AUTHORED_MS + 1_000),
    ]
}

/// Follows a search's `next` links from `path` (at most `pages` pages): every page, and what
/// it finds wrong with them (a withheld value in a link, an empty page offering a next one).
async fn walk_pages(
    f: &Fixture,
    token: &str,
    path: &str,
    pages: usize,
    texts: &[&str],
    ranges: &[(i64, i64)],
) -> (Vec<Value>, Vec<String>) {
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    let mut next = Some(path.to_string());
    while let Some(path) = next.take() {
        let (status, bundle) = f.get(token, &path).await;
        assert_eq!(status, 200, "{path}: {bundle}");
        problems.extend(leaks_in_links(&bundle, texts, ranges).into_iter().map(|p| format!("{path}: {p}")));
        let entries = identities(&bundle);
        if let Some(url) = next_link(&bundle) {
            if entries.is_empty() {
                problems.push(format!("{path}: an empty page offers a next one: {url}"));
            }
            if seen.len() + 1 < pages {
                next = Some(relative(&url));
            }
        }
        seen.push(bundle);
    }
    (seen, problems)
}

// Finding 1: the cursors of a page's links held the sort values of the last match on it,
// withheld or not, so a Patient the caller may not see showed their family name or birth
// date in the `next` link.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_page_links_carry_no_sort_value_of_a_withheld_patient() {
    let f = fixture("attacks2-cursor-patient").await;
    let texts = [PB_FAMILY, PB_BIRTH_DATE];
    let ranges = [pb_birth_range()];
    let mut problems = Vec::new();
    for token in [&f.clinician, &clinician_app()] {
        // pb sorts first both ways: their family last, their birth date first.
        for sort in ["-family", "birthdate"] {
            let path = format!("Patient?_id=pa,pb&_sort={sort}&_count=1");
            let (pages, found) = walk_pages(&f, token, &path, 5, &texts, &ranges).await;
            problems.extend(found);
            let all: Vec<String> = pages.iter().flat_map(identities).collect();
            assert_eq!(all, ["Patient/pa"], "{path}: {pages:?}");
            // With a visible Patient on either side of pb, the links between pages hold the
            // visible neighbour's values, never pb's.
            let path = format!("Patient?_id=pa,pb,pc&_sort={sort}&_count=1");
            let (pages, found) = walk_pages(&f, token, &path, 5, &texts, &ranges).await;
            problems.extend(found);
            let mut all: Vec<String> = pages.iter().flat_map(identities).collect();
            all.sort();
            assert_eq!(all, ["Patient/pa", "Patient/pc"], "{path}: {pages:?}");
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_nothing_visible_offers_no_next_page() {
    let f = fixture("attacks2-cursor-empty").await;
    let texts = [PB_FAMILY, PB_BIRTH_DATE, PB_TASK_AUTHORED, PC_TASK_AUTHORED];
    let [pb_task, pc_task] = task_ranges();
    let ranges = [pb_birth_range(), pb_task, pc_task];
    let mut problems = Vec::new();
    // pb and pc have a Task each, pa none: pa's token sees none, and must learn nothing of the
    // others' from the links (with two matches and one to a page, a next page exists in the
    // store, its cursor at the first Task).
    for token in [&f.patient_a, &patient_app()] {
        for path in ["Task?_sort=authored-on&_count=1", "Task?_sort=-authored-on&_count=1"] {
            let (status, bundle) = f.get(token, path).await;
            assert_eq!(status, 200, "{path}: {bundle}");
            assert_eq!(identities(&bundle), Vec::<String>::new(), "{path}: {bundle}");
            if let Some(next) = next_link(&bundle) {
                problems.push(format!("{path}: pa has no Task, yet a next page is offered: {next}"));
            }
            problems
                .extend(leaks_in_links(&bundle, &texts, &ranges).into_iter().map(|p| format!("{path}: {p}")));
        }
    }
    // The clinician searching only for the Patient a directive withholds.
    for path in ["Patient?_id=pb&_sort=-family&_count=1", "Patient?_id=pb&_sort=birthdate&_count=1"] {
        let (status, bundle) = f.get(&f.clinician, path).await;
        assert_eq!(status, 200, "{path}: {bundle}");
        assert_eq!(identities(&bundle), Vec::<String>::new(), "{path}: {bundle}");
        if let Some(next) = next_link(&bundle) {
            problems.push(format!("{path}: nothing visible, yet a next page is offered: {next}"));
        }
        problems.extend(leaks_in_links(&bundle, &texts, &ranges).into_iter().map(|p| format!("{path}: {p}")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// Finding 2: conditional creates, conditional references and conditional updates searched
// the store for Patients without leaving out the one a directive withholds.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_create_answers_the_same_whether_a_withheld_patient_matches() {
    let f = fixture("attacks2-conditional-create").await;
    let mut answers = Vec::new();
    for birth in [PB_BIRTH_DATE, "1900-01-01"] {
        // The body is a different person: whatever is created matches neither condition.
        let newcomer = json!({ "resourceType": "Patient", "name": [{ "family": "Newcomer" }] });
        let condition = format!("family={PB_FAMILY}&birthdate={birth}");
        let response = f
            .call(
                &f.clinician,
                Method::POST,
                "Patient",
                Some(&newcomer),
                &[("if-none-exist", condition.as_str()), ("prefer", "return=representation")],
            )
            .await;
        let (status, body) = Fixture::answer(response).await;
        assert!(
            !body.to_string().contains(PB_FAMILY) && body["id"] != "pb",
            "{condition}: pb's record came back: {body}"
        );
        answers.push((condition, status, body));
    }
    assert_eq!(
        answers[0].1, answers[1].1,
        "a condition matching only withheld pb is answered differently from one matching no one: {answers:?}"
    );
    assert_eq!(answers[0].1, 201, "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_reference_does_not_resolve_to_a_withheld_patient() {
    let f = fixture("attacks2-conditional-reference").await;
    let mut answers = Vec::new();
    for family in [PB_FAMILY, "Nobody"] {
        let reference = format!("Patient?family={family}&gender=female");
        let observation = json!({ "resourceType": "Observation", "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
            "subject": { "reference": reference },
            "valueQuantity": { "value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" } });
        let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [{
            "fullUrl": "urn:uuid:7d0e6a52-1c3b-4f8e-9a6d-2b5c4e3f1a09",
            "resource": observation, "request": { "method": "POST", "url": "Observation" } }] });
        let response = f
            .call(&f.clinician, Method::POST, "", Some(&bundle), &[("prefer", "return=representation")])
            .await;
        let (status, body) = Fixture::answer(response).await;
        assert!(!body.to_string().contains("Patient/pb"), "{reference} resolved to pb: {status} {body}");
        let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap_or("").replace(family, "FAMILY");
        answers.push((status, diagnostics));
    }
    assert_eq!(answers[0], answers[1], "a reference matching withheld pb and one matching no one differ");
    assert_eq!(answers[0].0, 400, "{answers:?}");
    assert!(answers[0].1.contains("matches no resource"), "{answers:?}");
    // No Observation names pb now.
    let (_, found) = f.get(&f.admin, "Observation?subject=Patient/pb").await;
    assert_eq!(identities(&found), Vec::<String>::new(), "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_update_does_not_overwrite_a_withheld_patient() {
    let f = fixture("attacks2-conditional-update").await;
    let (status, before) = f.get(&f.admin, "Patient/pb").await;
    assert_eq!(status, 200);
    let mut statuses = Vec::new();
    for birth in [PB_BIRTH_DATE, "1900-01-01"] {
        let replacement =
            json!({ "resourceType": "Patient", "name": [{ "family": "Overwritten" }], "gender": "male" });
        let path = format!("Patient?family={PB_FAMILY}&birthdate={birth}");
        let (status, body) = f.put(&f.clinician, &path, &replacement).await;
        assert!(body["id"] != "pb", "{path}: {status} {body}");
        statuses.push((path, status));
    }
    assert_eq!(statuses[0].1, statuses[1].1, "{statuses:?}");
    let (status, after) = f.get(&f.admin, "Patient/pb").await;
    assert_eq!(status, 200);
    assert_eq!(after["meta"]["versionId"], before["meta"]["versionId"], "pb was overwritten: {after}");
    assert_eq!(after["name"][0]["family"], PB_FAMILY, "{after}");
}

// Finding 3: `_has` through a type outside the Patient compartment (Organization, owned
// Devices; Practitioner, owned Tasks) was not narrowed to what the caller may see.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn has_through_devices_and_tasks_finds_nothing_of_a_withheld_or_other_patient() {
    let f = fixture("attacks2-has-outside").await;
    let by_device = "Organization?_has:Device:organization:patient=pb";
    let by_task = "Practitioner?_has:Task:owner:code:text=HIV";
    // The questions are understood: the administrator's answer holds the owners.
    for (path, expected) in [(by_device, "Organization/org-1"), (by_task, "Practitioner/prac-x")] {
        let (status, bundle) = f.get(&f.admin, path).await;
        assert_eq!((status, identities(&bundle)), (200, vec![expected.to_string()]), "{path}: {bundle}");
    }
    let mut problems = Vec::new();
    for (who, token) in [
        ("patient a", f.patient_a.clone()),
        ("patient a's app", patient_app()),
        ("clinician", f.clinician.clone()),
        ("clinician's app", clinician_app()),
    ] {
        for path in [by_device, by_task] {
            let (status, bundle) = f.get(&token, path).await;
            if status != 200 || !identities(&bundle).is_empty() {
                problems.push(format!("{who}: {path}: {status} {:?}", identities(&bundle)));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// Finding 4: `$lookup` and `$expand` read stored code systems and value sets without asking
// the policy about them.

/// pb's code system, and two value sets including it: one naming pb too, one naming no one.
async fn add_pb_terminology(f: &Fixture) {
    let about_pb = json!([{ "url": "http://example.org/fhir/StructureDefinition/concerns-patient",
                            "valueReference": { "reference": "Patient/pb" } }]);
    let code_system = json!({ "resourceType": "CodeSystem", "id": "cs-pb", "url": PB_CODE_SYSTEM,
        "status": "active", "content": "complete", "extension": about_pb,
        "concept": [{ "code": PB_CODE, "display": PB_DISPLAY }] });
    let with_pb = json!({ "resourceType": "ValueSet", "id": "vs-pb", "url": "http://example.org/vs/pb-private",
        "status": "active", "extension": about_pb,
        "compose": { "include": [{ "system": PB_CODE_SYSTEM }] } });
    let plain = json!({ "resourceType": "ValueSet", "id": "vs-plain", "url": "http://example.org/vs/plain",
        "status": "active", "compose": { "include": [{ "system": PB_CODE_SYSTEM }] } });
    for resource in [code_system, with_pb, plain] {
        let path =
            format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
        let (status, body) = f.put(&f.admin, &path, &resource).await;
        assert!(status == 200 || status == 201, "{path}: {status} {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_in_a_withheld_stored_code_system_gives_nothing_away() {
    let f = fixture("attacks2-lookup").await;
    add_pb_terminology(&f).await;
    let lookup = format!("CodeSystem/$lookup?system={PB_CODE_SYSTEM}&code={PB_CODE}");
    let instance = format!("CodeSystem/cs-pb/$lookup?code={PB_CODE}");
    // The administrator sees the concept: the lookups are answerable.
    for path in [&lookup, &instance] {
        let (status, body) = f.get(&f.admin, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.to_string().contains(PB_DISPLAY), "{path}: {body}");
    }
    let mut problems = Vec::new();
    for (who, token) in [
        ("patient a", f.patient_a.clone()),
        ("patient a's app", patient_app()),
        ("clinician", f.clinician.clone()),
        ("clinician's app", clinician_app()),
    ] {
        for path in [&lookup, &instance] {
            let (status, body) = f.get(&token, path).await;
            if status == 200 || body.to_string().contains(PB_DISPLAY) {
                problems.push(format!("{who}: {path}: {status} {body}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expansion_through_a_withheld_stored_code_system_lists_none_of_its_concepts() {
    let f = fixture("attacks2-expand").await;
    add_pb_terminology(&f).await;
    let naming_pb = "ValueSet/$expand?url=http://example.org/vs/pb-private";
    // A value set naming no one still draws its concepts from pb's code system.
    let plain = "ValueSet/$expand?url=http://example.org/vs/plain";
    for path in [naming_pb, plain] {
        let (status, body) = f.get(&f.admin, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.to_string().contains(PB_DISPLAY), "{path}: {body}");
    }
    let listed = |body: &Value| {
        body["expansion"]["contains"].as_array().into_iter().flatten().any(|c| c["code"] == PB_CODE)
            || body.to_string().contains(PB_DISPLAY)
    };
    let mut problems = Vec::new();
    for (who, token) in [
        ("patient a", f.patient_a.clone()),
        ("patient a's app", patient_app()),
        ("clinician", f.clinician.clone()),
        ("clinician's app", clinician_app()),
    ] {
        for path in [naming_pb, plain] {
            let (status, body) = f.get(&token, path).await;
            if listed(&body) {
                problems.push(format!("{who}: {path}: {status} {body}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// Finding 5: the data-quality report reads the whole record, what directives withhold
// included.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_quality_is_refused_to_roles_bound_by_a_directive_on_record() {
    let f = fixture("attacks2-data-quality").await;
    for (who, token) in [("clinician", &f.clinician), ("analyst", &f.analyst), ("coder", &f.coder)] {
        let (status, body) = f.get(token, "$data-quality").await;
        assert_eq!(status, 403, "{who}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{who}: {body}");
        assert_eq!(body["issue"][0]["code"], "forbidden", "{who}: {body}");
    }
    // The administrator answers for the record itself.
    let (status, body) = f.get(&f.admin, "$data-quality").await;
    assert_eq!(status, 200, "{body}");
}

// The uses of the record read all of it too: outbreak counts and cohort studies are refused
// under a directive they cannot honour, like the data-quality report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surveillance_and_cohort_studies_are_refused_to_roles_bound_by_a_directive_on_record() {
    let f = fixture("attacks2-uses").await;
    let study = serde_json::json!({ "name": "t", "condition": ["C34"],
        "arms": [{ "name": "A", "codes": [{ "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "40048" }] },
                 { "name": "B", "codes": [{ "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1547545" }] }] });
    for (who, token) in [("clinician", &f.clinician), ("analyst", &f.analyst), ("coder", &f.coder)] {
        let (status, body) = f.get(token, "$surveillance").await;
        assert_eq!(status, 403, "{who}: {body}");
        assert_eq!(body["issue"][0]["code"], "forbidden", "{who}: {body}");
        let parameters = serde_json::json!({ "resourceType": "Parameters",
            "parameter": [{ "name": "study", "valueString": study.to_string() }] });
        let (status, body) = f.post(token, "$cohort-compare", &parameters).await;
        assert_eq!(status, 403, "{who}: {body}");
    }
    let (status, body) = f.get(&f.admin, "$surveillance").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resourceType"], "Bundle", "{body}");
}

// Finding 6: `$suggest-codes` shaped its suggestions by the sex on the document's subject's
// Patient record, read whether or not the caller may see it.

/// The `suggestion` codes of a `$suggest-codes` answer, in order.
fn suggested_codes(parameters: &Value) -> Vec<String> {
    parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "suggestion")
        .filter_map(|p| {
            p["part"].as_array()?.iter().find(|part| part["name"] == "code")?["valueCoding"]["code"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

fn breast_cancer_note(subject: &str) -> Value {
    json!({ "resourceType": "DocumentReference", "status": "current",
        "subject": { "reference": subject },
        "content": [{ "attachment": { "contentType": "text/plain",
            "data": fhir::base64_encode(b"malignant neoplasm of breast") } }] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_suggestions_ignore_the_sex_of_a_withheld_patient() {
    let f = fixture("attacks2-suggest").await;
    let mut answers = Vec::new();
    for subject in ["Patient/pb", "Patient/no-such-patient", "Patient/pa", "Patient/pc"] {
        let (status, body) =
            f.post(&f.clinician, "DocumentReference/$suggest-codes", &breast_cancer_note(subject)).await;
        assert_eq!(status, 200, "{subject}: {body}");
        answers.push(suggested_codes(&body));
    }
    let [withheld, unknown, female, male] = &answers[..] else { unreachable!() };
    assert!(!unknown.is_empty(), "no suggestions at all");
    // The record's sex does shape suggestions when the caller may see it, so that pb's
    // suggestions being those of no patient at all says the withheld record was not read.
    assert!(female != unknown || male != unknown, "sex makes no difference: {answers:?}");
    assert_eq!(withheld, unknown, "pb's withheld record shaped the suggestions (female: {female:?})");
}

// Finding 7: a patient's `$run` held a Condition about pa that names pb as its asserter,
// though pb's directive withholds everything naming them.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_rows_for_a_patient_leave_out_resources_naming_a_withheld_patient() {
    let f = fixture("attacks2-view-asserter").await;
    let mut mixed = condition("cond-mixed", "pa", "E11.9");
    mixed["asserter"] = json!({ "reference": "Patient/pb" });
    let (status, body) = f.put(&f.admin, "Condition/cond-mixed", &mixed).await;
    assert_eq!(status, 201, "{body}");
    let response =
        f.call(&f.analyst, Method::GET, "ViewDefinition/diagnoses/$run?patient=pa", None, &[]).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("cond-a1"), "pa's own diagnosis is a row: {text}");
    assert!(!text.contains("cond-mixed"), "a Condition naming withheld pb is a row: {text}");
    // And as an inline view, over the record.
    let view = json!({ "resourceType": "ViewDefinition", "status": "active", "resource": "Condition",
        "select": [{ "column": [
            { "name": "id", "path": "getResourceKey()", "type": "id" },
            { "name": "asserter", "path": "asserter.reference", "type": "string" } ] }] });
    let parameters = json!({ "resourceType": "Parameters", "parameter": [
        { "name": "viewResource", "resource": view }, { "name": "patient", "valueString": "pa" } ] });
    let response = f.call(&f.analyst, Method::POST, "ViewDefinition/$run", Some(&parameters), &[]).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("cond-a1"), "{text}");
    assert!(!text.contains("cond-mixed") && !text.contains("Patient/pb"), "{text}");
}

// Finding 8: an update with a stale If-Match answered 412 about a resource the caller may not
// see (telling it exists and its version is another), and a delete removed it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_withheld_resource_are_refused_before_any_precondition() {
    let f = fixture("attacks2-withheld-writes").await;
    let replacement = condition("cond-b1", "pb", "F20.9");
    let (_, before) = f.get(&f.admin, "Condition/cond-b1").await;
    let mut problems = Vec::new();
    for if_match in [Some("W/\"7\""), Some("W/\"1\""), None] {
        let headers: Vec<(&str, &str)> = if_match.map(|tag| ("if-match", tag)).into_iter().collect();
        let response =
            f.call(&f.clinician, Method::PUT, "Condition/cond-b1", Some(&replacement), &headers).await;
        let (status, body) = Fixture::answer(response).await;
        if status != 403 {
            problems.push(format!("PUT with If-Match {if_match:?}: {status} {body}"));
        }
    }
    for if_match in [Some("W/\"7\""), None] {
        let headers: Vec<(&str, &str)> = if_match.map(|tag| ("if-match", tag)).into_iter().collect();
        let response = f.call(&f.clinician, Method::DELETE, "Condition/cond-b1", None, &headers).await;
        let (status, body) = Fixture::answer(response).await;
        if status != 403 {
            problems.push(format!("DELETE with If-Match {if_match:?}: {status} {body}"));
        }
    }
    // The same inside Bundles.
    for (method, resource) in [("PUT", Some(&replacement)), ("DELETE", None)] {
        let mut entry =
            json!({ "request": { "method": method, "url": "Condition/cond-b1", "ifMatch": "W/\"7\"" } });
        if let Some(resource) = resource {
            entry["resource"] = resource.clone();
        }
        let transaction =
            json!({ "resourceType": "Bundle", "type": "transaction", "entry": [entry.clone()] });
        let (status, body) = f.post_bundle(&f.clinician, &transaction).await;
        if status != 403 {
            problems.push(format!("transaction {method}: {status} {body}"));
        }
        let batch = json!({ "resourceType": "Bundle", "type": "batch", "entry": [entry] });
        let (status, body) = f.post_bundle(&f.clinician, &batch).await;
        let entry_status = body["entry"][0]["response"]["status"].as_str().unwrap_or("");
        if !(status == 403 || (status == 200 && entry_status.starts_with("403"))) {
            problems.push(format!("batch {method}: {status} {body}"));
        }
    }
    let (status, after) = f.get(&f.admin, "Condition/cond-b1").await;
    if status != 200 {
        problems.push(format!("pb's Condition is gone: {status} {after}"));
    } else if after["meta"]["versionId"] != before["meta"]["versionId"] {
        problems.push(format!("pb's Condition was changed: {after}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// Finding 9: a cursor with fewer sort values than the search has sort keys made the store
// panic (a 500).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_that_do_not_fit_the_sort_are_refused_not_a_server_error() {
    let f = fixture("attacks2-cursor-shape").await;
    for (who, token, path) in [
        ("admin", &f.admin, "Patient?_sort=family,birthdate&_cursor=a1"),
        ("patient a", &f.patient_a, "Observation?_sort=date,_id&_cursor=a1"),
        ("clinician", &f.clinician, "Patient?_sort=family,birthdate&_cursor=a1"),
        ("clinician", &f.clinician, "Observation?_sort=date,_id&_cursor=a1~i5"),
    ] {
        let (status, body) = f.get(token, path).await;
        assert_eq!(status, 400, "{who}: {path}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{who}: {path}: {body}");
    }
    // Values of the wrong kind for their key, or more of them than keys: refused or answered,
    // never a server error.
    for path in [
        "Patient?_sort=birthdate&_cursor=a1~t41",
        "Patient?_sort=family&_cursor=a1~i5",
        "Patient?_sort=family&_cursor=a1~r3ff0000000000000",
        "Patient?_sort=family&_cursor=a1~t41~t42",
        "Patient?_cursor=a1~t41",
    ] {
        for token in [&f.admin, &f.clinician] {
            let (status, body) = f.get(token, path).await;
            assert!(status < 500, "{path}: {status} {body}");
            if status >= 400 {
                assert_eq!(body["resourceType"], "OperationOutcome", "{path}: {body}");
            }
        }
    }
}

// Finding 10: an earlier version was judged by its own content only, so a version from before
// a restricting label was added stayed readable.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earlier_version_of_a_resource_now_labelled_restricted_is_withheld() {
    let f = fixture("attacks2-vread-label").await;
    let deny = json!({ "type": "deny",
        "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Condition" }],
        "securityLabel": [{ "system": CONFIDENTIALITY, "code": "R" }] });
    let (status, body) = f.put(&f.officer, "Consent/consent-c", &consent("consent-c", "pc", deny)).await;
    assert!(status == 200 || status == 201, "{body}");
    assert_eq!(f.get(&f.clinician, "Condition/cond-c1/_history/1").await.0, 200, "unlabelled, shown");
    let mut labelled = condition("cond-c1", "pc", "E66.9");
    labelled["meta"] = json!({ "security": [{ "system": CONFIDENTIALITY, "code": "R" }] });
    let (status, body) = f.put(&f.admin, "Condition/cond-c1", &labelled).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["versionId"], "2", "{body}");
    for path in ["Condition/cond-c1", "Condition/cond-c1/_history/2", "Condition/cond-c1/_history/1"] {
        let (status, body) = f.get(&f.clinician, path).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    // Its history lists neither version.
    let (status, body) = f.get(&f.clinician, "Condition/cond-c1/_history").await;
    assert!(status == 403 || identities(&body).is_empty(), "{status}: {body}");
}

// Finding 11: a delete's tombstone had no content to judge, so it was listed in histories for
// anyone who may read its type, telling that the withheld record existed and was removed.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_withheld_condition_leaves_no_trace_in_histories() {
    let f = fixture("attacks2-tombstone").await;
    let gone = condition("cond-b-gone", "pb", "F20.9");
    let (status, body) = f.put(&f.admin, "Condition/cond-b-gone", &gone).await;
    assert_eq!(status, 201, "{body}");
    let response = f.call(&f.admin, Method::DELETE, "Condition/cond-b-gone", None, &[]).await;
    assert!(response.status().is_success(), "{}", response.status());
    // The administrator's history shows the delete: the clinician's would, if it leaked.
    for path in ["Condition/_history", "_history"] {
        let (status, body) = f.get(&f.admin, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.to_string().contains("cond-b-gone"), "{path}: {body}");
    }
    let mut problems = Vec::new();
    for (who, token) in [("clinician", f.clinician.clone()), ("clinician's app", clinician_app())] {
        for path in ["Condition/_history", "_history", "Condition/_history?_count=1000"] {
            let (status, body) = f.get(&token, path).await;
            if status != 200 {
                problems.push(format!("{who}: {path}: {status} {body}"));
            } else if body.to_string().contains("cond-b-gone") {
                problems.push(format!("{who}: {path} lists the deleted withheld Condition: {body}"));
            }
        }
        // Nor does its own address tell it was there (a 410 would).
        for path in
            ["Condition/cond-b-gone", "Condition/cond-b-gone/_history/2", "Condition/cond-b-gone/_history"]
        {
            let (status, body) = f.get(&token, path).await;
            if status != 403 {
                problems.push(format!("{who}: {path}: {status} {body}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// Finding 12: `$run` over HTTP had no time limit, so one view could hold a server thread for
// as long as its paths took.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expensive_view_run_stops_at_its_time_limit() {
    let f = fixture("attacks2-view-deadline").await;
    // pa's observations, each with a note of a megabyte: the view below copies the note a
    // hundred thousand times per observation, a few seconds each, minutes over all of them.
    let note = "x".repeat(NOTE_BYTES);
    let all: Vec<Value> = (0..OBSERVATIONS)
        .map(|n| {
            let id = format!("heart-{n}");
            let resource = json!({ "resourceType": "Observation", "id": id, "status": "final",
                "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
                "subject": { "reference": "Patient/pa" }, "note": [{ "text": note }],
                "valueQuantity": { "value": 60 + (n % 40), "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" } });
            json!({ "resource": resource, "request": { "method": "PUT", "url": format!("Observation/{id}") } })
        })
        .collect();
    for chunk in all.chunks(10) {
        let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": chunk });
        let (status, body) = f.post_bundle(&f.admin, &bundle).await;
        assert_eq!(status, 200, "{}", &body.to_string()[..body.to_string().len().min(400)]);
    }
    // Nested selects over a ten-item union, the note copied at the innermost: a hundred
    // thousand copies per resource, within the FHIRPath evaluator's own limit on the items one
    // resource may produce, so only the run's time limit stops it. The cost is in copying the note, so it is much the
    // same in any build.
    let ten = "(0|1|2|3|4|5|6|7|8|9)";
    let copy = "(%resource.note.text & 'y').exists()";
    let path =
        format!("{ten}.select({ten}.select({ten}.select({ten}.select({ten}.select({copy}))))).count()");
    let view = json!({ "resourceType": "ViewDefinition", "status": "active", "resource": "Observation",
        "select": [{ "column": [
            { "name": "id", "path": "getResourceKey()", "type": "id" },
            { "name": "work", "path": path, "type": "integer" } ] }] });
    let parameters = json!({ "resourceType": "Parameters", "parameter": [
        { "name": "viewResource", "resource": view }, { "name": "patient", "valueString": "pa" } ] });
    // Expected: refused after about 60 s (the limit, plus the observation under way).
    let started = Instant::now();
    let response = f.call(&f.analyst, Method::POST, "ViewDefinition/$run", Some(&parameters), &[]).await;
    let elapsed = started.elapsed();
    let (status, body) = Fixture::answer(response).await;
    assert_eq!(status, 400, "after {elapsed:?}: {body}");
    assert_eq!(body["issue"][0]["code"], "too-costly", "{body}");
    assert!(elapsed < Duration::from_secs(75), "answered after {elapsed:?}");
    assert!(elapsed > Duration::from_secs(55), "stopped early, after {elapsed:?}: {body}");
}

/// pa's observations for the time-limit test, and the length of each one's note.
const OBSERVATIONS: usize = 60;
const NOTE_BYTES: usize = 1_000_000;
