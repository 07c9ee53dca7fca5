//! Duplicate registrations over HTTP: the review queue (`Patient/$duplicates`,
//! `Patient/$decide-duplicate`), `Patient/$merge` and `Patient/$unmerge`. A merge moves every
//! resource that refers to the source and loses nothing; an unmerge gives every resource the
//! merge wrote its content from before, byte for byte; a merge that fails half-way leaves the
//! store as it was; only the record's stewards may merge; the audit trail names each version
//! written.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use api::{Api, ApiConfig};
use chartroom_server as server;
use privacy::{Role, Users};
use reqwest::Method;
use serde_json::{Value, json};
use store::{Store, WriteOp, WriteUnit};

/// A store that, once armed, makes the last write of the next large transaction fail inside
/// the commit (its version precondition cannot hold): a failure half-way through a merge.
struct Sabotaged {
    inner: Arc<dyn Store>,
    armed: AtomicBool,
}

impl Store for Sabotaged {
    fn read(&self, t: &str, id: &str) -> store::Result<Option<store::VersionRecord>> {
        self.inner.read(t, id)
    }
    fn vread(&self, t: &str, id: &str, v: u64) -> store::Result<Option<store::VersionRecord>> {
        self.inner.vread(t, id, v)
    }
    fn history(&self, s: &store::HistoryScope, q: &store::HistoryQuery) -> store::Result<store::HistoryPage> {
        self.inner.history(s, q)
    }
    fn submit(&self, mut unit: WriteUnit) -> store::PendingWrite {
        if unit.ops.len() > 3 && self.armed.swap(false, Ordering::SeqCst) {
            let last_update = unit.ops.iter_mut().rev().find(|op| matches!(op, WriteOp::Update { .. }));
            if let Some(WriteOp::Update { if_match, .. }) = last_update {
                *if_match = Some(store::Precondition::Versions(vec![999]));
            }
        }
        self.inner.submit(unit)
    }
    fn count_live(&self) -> store::Result<u64> {
        self.inner.count_live()
    }
    fn scan_current(&self, visit: &mut store::ScanVisitor<'_>) -> store::Result<u64> {
        self.inner.scan_current(visit)
    }
    fn scan_type(
        &self,
        t: &str,
        since: Option<i64>,
        visit: &mut store::ScanVisitor<'_>,
    ) -> store::Result<u64> {
        self.inner.scan_type(t, since, visit)
    }
    fn search(&self, q: &store::SearchQuery) -> store::Result<store::SearchPage> {
        self.inner.search(q)
    }
    fn read_many(&self, ids: &[(String, String)]) -> store::Result<Vec<store::VersionRecord>> {
        self.inner.read_many(ids)
    }
    fn referencing(
        &self,
        keys: &[fhir::search_parameters::ParamKey],
        targets: &[(String, String)],
    ) -> store::Result<Vec<store::VersionRecord>> {
        self.inner.referencing(keys, targets)
    }
    fn reindex(&self) -> store::Result<u64> {
        self.inner.reindex()
    }
}

struct Fixture {
    base: String,
    client: reqwest::Client,
    store: Arc<Sabotaged>,
    security: Arc<server::Security>,
    admin: String,
    technician: String,
    clinician: String,
    patient: String,
}

async fn fixture(name: &str) -> Fixture {
    let dir = testkit::temp_dir(name);
    let privacy_dir = dir.join("privacy");
    let users = Users::open(&privacy_dir).unwrap();
    let admin = users.add("root", Role::Admin, None, None).unwrap();
    let technician = users.add("him-hana", Role::HimTechnician, None, Some("Practitioner/hana")).unwrap();
    let clinician = users.add("dr-grey", Role::Clinician, None, None).unwrap();
    let patient = users.add("dana", Role::Patient, Some("dup"), None).unwrap();
    let security = Arc::new(server::Security::open(&privacy_dir).unwrap());
    let data = dir.join("data");
    let inner = testkit::open_store("merge", &data);
    let store = Arc::new(Sabotaged { inner, armed: AtomicBool::new(false) });
    let config =
        ApiConfig { mpi_decisions: Some(mpi::review::decisions_path(&data)), ..ApiConfig::default() };
    let api = Arc::new(Api::new(store.clone(), config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router =
        server::router(api, server::ServerConfig { security: Some(security.clone()), ..Default::default() });
    tokio::spawn(async move {
        let _ = server::serve(listener, router, std::future::pending()).await;
    });
    let f = Fixture {
        base: format!("http://{address}/fhir"),
        client: reqwest::Client::new(),
        store,
        security,
        admin,
        technician,
        clinician,
        patient,
    };
    for resource in record() {
        let path =
            format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
        let (status, body) = f.call(&f.admin, Method::PUT, &path, Some(&resource)).await;
        assert!(status < 300, "{path}: {status} {body}");
    }
    f
}

impl Fixture {
    async fn call(&self, token: &str, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}/{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.header("content-type", "application/fhir+json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Every live resource's stored bytes, by `Type/id`.
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut all = BTreeMap::new();
        self.store
            .scan_current(&mut |t, id, body| {
                all.insert(format!("{t}/{id}"), body.to_vec());
                Ok(())
            })
            .unwrap();
        all
    }

    fn versions(&self) -> usize {
        self.store
            .history(
                &store::HistoryScope::System,
                &store::HistoryQuery { count: 1_000_000, ..Default::default() },
            )
            .unwrap()
            .versions
            .len()
    }

    /// The audit trail's entries (as AuditEvents), read by the administrator.
    async fn audit(&self) -> Vec<Value> {
        self.security.audit.flush();
        let (status, bundle) = self.call(&self.admin, Method::GET, "AuditEvent?_count=1000", None).await;
        assert_eq!(status, 200);
        bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"].clone()).collect()
    }
}

fn parameters(parts: &[(&str, Value)]) -> Value {
    let parameter: Vec<Value> = parts
        .iter()
        .map(|(name, value)| {
            let mut p = json!({ "name": name });
            match value {
                Value::Bool(b) => p["valueBoolean"] = json!(b),
                Value::String(s) if s.starts_with("Patient/") => {
                    p["valueReference"] = json!({ "reference": s })
                }
                Value::String(s) => p["valueCode"] = json!(s),
                other => p["resource"] = other.clone(),
            }
            p
        })
        .collect();
    json!({ "resourceType": "Parameters", "parameter": parameter })
}

fn person(id: &str, given: &str, family: &str, birth: &str, mrn: &str, line: &str) -> Value {
    json!({ "resourceType": "Patient", "id": id, "active": true, "gender": "female", "birthDate": birth,
        "identifier": [{ "system": "urn:oid:2.16.840.1.113883.3.72.5.9.1", "value": mrn }],
        "name": [{ "use": "official", "family": family, "given": [given] }],
        "telecom": [{ "system": "phone", "value": "937-555-0142" }],
        "address": [{ "use": "home", "line": [line], "city": "Dayton", "state": "OH", "postalCode": "45402" }] })
}

/// Forty people of assorted names (what the matching model learns from), Dana Whitfield
/// registered twice (`keep`, and `dup` with a nickname and another MRN), and the record
/// around `dup`: an encounter, observations, a condition, an allergy, an immunization, a
/// claim, a group, a provenance, and another Patient linking to it.
fn record() -> Vec<Value> {
    let given = ["Ann", "Bo", "Cyd", "Dee", "Eli", "Fay", "Gus", "Hal"];
    let family = ["Adams", "Baker", "Clark", "Dunn", "Evans"];
    let mut all: Vec<Value> = (0..40)
        .map(|n| {
            person(
                &format!("p{n}"),
                given[n % given.len()],
                family[n / given.len()],
                &format!("19{:02}-0{}-1{}", 40 + n, 1 + n % 9, n % 10),
                &format!("MRN{:05}", 100 + n),
                &format!("{} Main St", 100 + n),
            )
        })
        .collect();
    all.push(person("keep", "Danielle", "Whitfield", "1984-07-21", "MRN00001", "42 Oak Ave"));
    all.push(person("dup", "Dani", "Whitfield", "1984-07-21", "MRN00002", "42 Oak Ave"));
    let subject = json!({ "reference": "Patient/dup" });
    all.push(json!({ "resourceType": "Encounter", "id": "enc-dup", "status": "finished",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" }, "subject": subject }));
    for n in 1..=3 {
        all.push(json!({ "resourceType": "Observation", "id": format!("obs-dup{n}"), "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
            "subject": subject, "encounter": { "reference": "Encounter/enc-dup" },
            "valueQuantity": { "value": 70.50 + n as f64, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" } }));
    }
    all.push(json!({ "resourceType": "Observation", "id": "obs-keep", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
        "subject": { "reference": "Patient/keep" }, "valueQuantity": { "value": 64, "unit": "/min" } }));
    all.push(json!({ "resourceType": "Condition", "id": "cond-dup", "subject": subject,
        "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9" }] },
        "encounter": { "reference": "Encounter/enc-dup" } }));
    all.push(json!({ "resourceType": "AllergyIntolerance", "id": "alg-dup", "patient": subject,
        "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active" }] },
        "code": { "text": "penicillin" } }));
    all.push(
        json!({ "resourceType": "Immunization", "id": "imm-dup", "status": "completed", "patient": subject,
        "vaccineCode": { "coding": [{ "system": "http://hl7.org/fhir/sid/cvx", "code": "140" }] },
        "occurrenceDateTime": "2025-10-01" }),
    );
    all.push(json!({ "resourceType": "Claim", "id": "claim-dup", "status": "active", "use": "claim", "patient": subject,
        "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional" }] },
        "created": "2025-10-01", "provider": { "display": "Clinic" }, "priority": { "coding": [{ "code": "normal" }] },
        "insurance": [{ "sequence": 1, "focal": true, "coverage": { "display": "Plan" } }] }));
    all.push(json!({ "resourceType": "Group", "id": "grp", "type": "person", "actual": true,
        "member": [{ "entity": subject }, { "entity": { "reference": "Patient/p1" } }] }));
    all.push(json!({ "resourceType": "Provenance", "id": "prov-dup", "target": [subject],
        "recorded": "2025-10-01T10:00:00Z", "agent": [{ "who": { "display": "registration desk" } }] }));
    all.push(json!({ "resourceType": "Patient", "id": "mother", "name": [{ "family": "Whitfield", "given": ["Ruth"] }],
        "link": [{ "other": subject, "type": "seealso" }] }));
    all
}

/// Every `reference` in a resource rewritten from one target to another.
fn rewritten(value: &Value, from: &str, to: &str) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) if k == "reference" && s == from => (k.clone(), json!(to)),
                    v => (k.clone(), rewritten(v, from, to)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| rewritten(v, from, to)).collect()),
        other => other.clone(),
    }
}

fn without_meta(body: &[u8]) -> Value {
    let mut value: Value = serde_json::from_slice(body).unwrap();
    value.as_object_mut().unwrap().remove("meta");
    value
}

/// The stored bytes after `meta.lastUpdated`'s value, and before `meta.versionId`: all of a
/// stored resource but its version and time.
fn content(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let text = std::str::from_utf8(body).unwrap();
    let head = text.find("\"versionId\":").unwrap();
    let at = text.find("\"lastUpdated\":\"").unwrap() + "\"lastUpdated\":\"".len();
    let end = at + text[at..].find('"').unwrap();
    (text.as_bytes()[..head].to_vec(), text.as_bytes()[end..].to_vec())
}

fn references_to(value: &Value, target: &str) -> usize {
    match value {
        Value::Object(object) => object
            .iter()
            .map(|(k, v)| if k == "reference" && v == target { 1 } else { references_to(v, target) })
            .sum(),
        Value::Array(items) => items.iter().map(|v| references_to(v, target)).sum(),
        _ => 0,
    }
}

const MOVED: [&str; 10] = [
    "AllergyIntolerance/alg-dup",
    "Claim/claim-dup",
    "Condition/cond-dup",
    "Encounter/enc-dup",
    "Group/grp",
    "Immunization/imm-dup",
    "Observation/obs-dup1",
    "Observation/obs-dup2",
    "Observation/obs-dup3",
    "Patient/mother",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_moves_everything_and_an_unmerge_restores_it_byte_for_byte() {
    let f = fixture("merge-round-trip").await;
    let before = f.snapshot();
    let versions = f.versions();
    let merge =
        parameters(&[("source-patient", json!("Patient/dup")), ("target-patient", json!("Patient/keep"))]);

    // Only the record's stewards merge.
    for token in [&f.patient, &f.clinician] {
        let (status, outcome) = f.call(token, Method::POST, "Patient/$merge", Some(&merge)).await;
        assert_eq!(status, 403, "{outcome}");
    }
    assert_eq!(f.versions(), versions, "a refused merge wrote something");

    // A preview says what would change and changes nothing.
    let mut preview = merge.clone();
    preview["parameter"].as_array_mut().unwrap().push(json!({ "name": "preview", "valueBoolean": true }));
    let (status, answer) = f.call(&f.technician, Method::POST, "Patient/$merge", Some(&preview)).await;
    assert_eq!(status, 200, "{answer}");
    let outcome = answer["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "outcome").unwrap();
    assert!(
        outcome["resource"]["issue"][0]["diagnostics"].as_str().unwrap().contains("10 resources moved"),
        "{outcome}"
    );
    assert_eq!(f.versions(), versions, "a preview wrote something");

    let (status, answer) = f.call(&f.technician, Method::POST, "Patient/$merge", Some(&merge)).await;
    assert_eq!(status, 200, "{answer}");
    let result =
        &answer["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "result").unwrap()["resource"];
    assert_eq!(result["id"], "keep");
    assert!(
        result["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["type"] == "replaces" && l["other"]["reference"] == "Patient/dup")
    );
    assert!(
        result["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["value"] == "MRN00002" && i["use"] == "old"),
        "the source's MRN is kept as an old identifier: {result}"
    );
    // One transaction: two Patients, ten moved resources, one Provenance.
    assert_eq!(f.versions(), versions + 13);

    let after = f.snapshot();
    assert_eq!(after.len(), before.len() + 1, "a resource was lost or more than the Provenance added");
    let (_, source) = f.call(&f.admin, Method::GET, "Patient/dup", None).await;
    assert_eq!(source["active"], false);
    assert!(
        source["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["type"] == "replaced-by" && l["other"]["reference"] == "Patient/keep")
    );
    for (key, body) in &before {
        let now = &after[key];
        if key == "Patient/dup" || key == "Patient/keep" {
            continue;
        }
        let expected = if key.starts_with("Provenance/") {
            without_meta(body)
        } else {
            rewritten(&without_meta(body), "Patient/dup", "Patient/keep")
        };
        assert_eq!(without_meta(now), expected, "{key}: changed beyond its references to the source");
        let moved = MOVED.contains(&key.as_str());
        assert_eq!(now != body, moved, "{key}: moved {moved}");
        if key != "Provenance/prov-dup" {
            assert_eq!(
                references_to(&without_meta(now), "Patient/dup"),
                0,
                "{key} still refers to the source"
            );
        }
    }
    // The Provenance of the merge names each version written and each it replaced.
    let provenance = after
        .iter()
        .find(|(k, _)| k.starts_with("Provenance/") && !before.contains_key(*k))
        .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap())
        .unwrap();
    assert_eq!(provenance["activity"]["coding"][0]["code"], "merge");
    assert_eq!(provenance["target"].as_array().unwrap().len(), 12);
    assert_eq!(provenance["entity"].as_array().unwrap().len(), 12);
    assert_eq!(provenance["agent"][0]["who"]["reference"], "Practitioner/hana");
    // The target's record now holds the source's.
    let (_, everything) = f.call(&f.admin, Method::GET, "Patient/keep/$everything", None).await;
    let observations = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Observation")
        .count();
    assert_eq!(observations, 4);
    // The audit trail names the merge's every version.
    let events = f.audit().await;
    let merged = events
        .iter()
        .find(|e| {
            e["agent"][0]["name"] == "him-hana"
                && e["outcome"] == "0"
                && e["entity"]
                    .as_array()
                    .is_some_and(|es| es.iter().any(|x| x["what"]["reference"] == "Patient/keep/_history/2"))
        })
        .expect("the merge's audit entry");
    let named: Vec<&str> =
        merged["entity"].as_array().unwrap().iter().filter_map(|e| e["what"]["reference"].as_str()).collect();
    for key in MOVED {
        assert!(named.contains(&format!("{key}/_history/2").as_str()), "{key} missing from {named:?}");
    }
    assert!(named.contains(&"Patient/dup"), "{named:?}");
    assert!(named.iter().any(|n| n.starts_with("Provenance/")), "{named:?}");
    // A merged registration is not merged again, nor merged into.
    let (status, _) = f.call(&f.technician, Method::POST, "Patient/$merge", Some(&merge)).await;
    assert_eq!(status, 422);

    // A look-alike Provenance written through the API (by anyone who may write one) is not
    // taken for the merge: the unmerge below leaves what it names alone.
    let mut changed = serde_json::from_slice::<Value>(&after["Observation/obs-keep"]).unwrap();
    changed["valueQuantity"]["value"] = json!(66);
    let (status, _) = f.call(&f.clinician, Method::PUT, "Observation/obs-keep", Some(&changed)).await;
    assert_eq!(status, 200);
    let forged = json!({ "resourceType": "Provenance", "recorded": "2026-12-07T10:00:00Z",
        "target": [{ "reference": "Patient/dup/_history/2" }, { "reference": "Patient/keep/_history/2" },
                   { "reference": "Observation/obs-keep/_history/2" }],
        "activity": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle", "code": "merge" }] },
        "agent": [{ "who": { "display": "someone" } }],
        "entity": [{ "role": "revision", "what": { "reference": "Patient/dup/_history/1" } },
                   { "role": "revision", "what": { "reference": "Patient/keep/_history/1" } },
                   { "role": "revision", "what": { "reference": "Observation/obs-keep/_history/1" } }] });
    let (status, _) = f.call(&f.clinician, Method::POST, "Provenance", Some(&forged)).await;
    assert_eq!(status, 201);
    let versions = versions + 2;

    // Undone: every resource the merge wrote has its content from before, byte for byte.
    let unmerge = parameters(&[("source-patient", json!("Patient/dup"))]);
    let (status, outcome) = f.call(&f.clinician, Method::POST, "Patient/$unmerge", Some(&unmerge)).await;
    assert_eq!(status, 403, "{outcome}");
    let (status, answer) = f.call(&f.technician, Method::POST, "Patient/$unmerge", Some(&unmerge)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(f.versions(), versions + 13 + 13);
    let restored = f.snapshot();
    for (key, body) in before.iter().filter(|(k, _)| *k != "Observation/obs-keep") {
        assert_eq!(content(&restored[key]), content(body), "{key} is not as it was");
    }
    let (_, kept) = f.call(&f.admin, Method::GET, "Observation/obs-keep", None).await;
    assert_eq!(
        (kept["meta"]["versionId"].as_str(), kept["valueQuantity"]["value"].as_i64()),
        (Some("2"), Some(66))
    );
    // The history proves it: version 3 is version 1 again.
    let (_, history) = f.call(&f.admin, Method::GET, "Observation/obs-dup1/_history", None).await;
    let versions_of: Vec<&Value> =
        history["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    assert_eq!(versions_of.len(), 3);
    assert_eq!(versions_of[0]["subject"], json!({ "reference": "Patient/dup" }));
    assert_eq!(versions_of[1]["subject"], json!({ "reference": "Patient/keep" }));
    let events = f.audit().await;
    assert!(events.iter().any(|e| {
        e["entity"]
            .as_array()
            .is_some_and(|es| es.iter().any(|x| x["what"]["reference"] == "Observation/obs-dup1/_history/3"))
    }));
    let (status, _) = f.call(&f.technician, Method::POST, "Patient/$unmerge", Some(&unmerge)).await;
    assert_eq!(status, 422, "an unmerged Patient is not unmerged again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_that_fails_half_way_leaves_the_store_unchanged() {
    let f = fixture("merge-half-way").await;
    let before = f.snapshot();
    let versions = f.versions();
    f.store.armed.store(true, Ordering::SeqCst);
    let merge =
        parameters(&[("source-patient", json!("Patient/dup")), ("target-patient", json!("Patient/keep"))]);
    let (status, outcome) = f.call(&f.technician, Method::POST, "Patient/$merge", Some(&merge)).await;
    assert!(status == 409 || status == 412, "{status} {outcome}");
    assert!(!f.store.armed.load(Ordering::SeqCst), "the failure was not injected");
    assert_eq!(f.versions(), versions, "a failed merge wrote versions");
    assert_eq!(f.snapshot(), before, "a failed merge changed the record");
    // Tried again, it goes through whole.
    let (status, answer) = f.call(&f.technician, Method::POST, "Patient/$merge", Some(&merge)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(f.versions(), versions + 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_queue_lists_pairs_and_records_who_decided() {
    let f = fixture("merge-review").await;
    let (status, queue) = f.call(&f.clinician, Method::GET, "Patient/$duplicates", None).await;
    assert_eq!(status, 200, "{queue}");
    let pairs = queue["parameter"].as_array().unwrap();
    let pair = pairs
        .iter()
        .find(|p| {
            let refs: Vec<&str> = p["part"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|x| x["valueReference"]["reference"].as_str())
                .collect();
            refs.contains(&"Patient/dup") && refs.contains(&"Patient/keep")
        })
        .unwrap_or_else(|| panic!("the planted pair is not queued: {queue}"));
    let parts = pair["part"].as_array().unwrap();
    assert!(parts.iter().any(|p| p["name"] == "probability" && p["valueDecimal"].as_f64().unwrap() >= 0.5));
    assert!(parts.iter().any(|p| p["name"] == "evidence"), "{pair}");
    assert!(
        parts
            .iter()
            .any(|p| p["valueReference"]["display"].as_str().is_some_and(|d| d.contains("Whitfield")))
    );

    let decide = parameters(&[
        ("a", json!("Patient/dup")),
        ("b", json!("Patient/keep")),
        ("decision", json!("same-person")),
    ]);
    let (status, _) = f.call(&f.clinician, Method::POST, "Patient/$decide-duplicate", Some(&decide)).await;
    assert_eq!(status, 403, "deciding is the HIM department's");
    let bad = parameters(&[
        ("a", json!("Patient/dup")),
        ("b", json!("Patient/keep")),
        ("decision", json!("maybe")),
    ]);
    let (status, _) = f.call(&f.technician, Method::POST, "Patient/$decide-duplicate", Some(&bad)).await;
    assert_eq!(status, 400);
    let missing = parameters(&[
        ("a", json!("Patient/dup")),
        ("b", json!("Patient/nobody")),
        ("decision", json!("same-person")),
    ]);
    let (status, _) = f.call(&f.technician, Method::POST, "Patient/$decide-duplicate", Some(&missing)).await;
    assert_eq!(status, 404);
    let (status, outcome) =
        f.call(&f.technician, Method::POST, "Patient/$decide-duplicate", Some(&decide)).await;
    assert_eq!(status, 200, "{outcome}");
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("by him-hana"), "{outcome}");

    // Decided, it waits no longer; the decided list says who decided.
    let (_, waiting) = f.call(&f.clinician, Method::GET, "Patient/$duplicates", None).await;
    assert!(!waiting.to_string().contains("Patient/dup\""), "{waiting}");
    let (_, decided) = f.call(&f.clinician, Method::GET, "Patient/$duplicates?status=decided", None).await;
    let text = decided.to_string();
    assert!(text.contains("same-person") && text.contains("him-hana"), "{decided}");
    let (status, _) = f.call(&f.clinician, Method::GET, "Patient/$duplicates?status=some", None).await;
    assert_eq!(status, 400);
    let (status, _) = f.call(&f.patient, Method::GET, "Patient/$duplicates", None).await;
    assert_eq!(status, 403);
    // The decision's audit entry names both registrations.
    let events = f.audit().await;
    assert!(events.iter().any(|e| {
        let entities = e["entity"].as_array().cloned().unwrap_or_default();
        e["agent"][0]["name"] == "him-hana"
            && e["outcome"] == "0"
            && entities.iter().any(|x| x["what"]["reference"] == "Patient/dup")
            && entities.iter().any(|x| x["what"]["reference"] == "Patient/keep")
    }));
    // Decided different, the pair is not proposed again.
    let different = parameters(&[
        ("a", json!("Patient/keep")),
        ("b", json!("Patient/dup")),
        ("decision", json!("different-people")),
    ]);
    let (status, _) = f.call(&f.admin, Method::POST, "Patient/$decide-duplicate", Some(&different)).await;
    assert_eq!(status, 200);
    let (_, matched) = f.call(&f.admin, Method::POST, "Patient/$match", Some(&json!({ "resourceType": "Parameters",
        "parameter": [{ "name": "resource", "resource": record().into_iter().find(|r| r["id"] == "dup").unwrap() }] }))).await;
    assert!(!matched.to_string().contains("Patient/keep"), "{matched}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_chain_and_are_undone_in_reverse_order() {
    let f = fixture("merge-chain").await;
    let before = f.snapshot();
    // The source named by its MRN: dup into keep, then keep into p5.
    let by_mrn = json!({ "resourceType": "Parameters", "parameter": [
        { "name": "source-patient-identifier", "valueIdentifier": { "system": "urn:oid:2.16.840.1.113883.3.72.5.9.1", "value": "MRN00002" } },
        { "name": "target-patient", "valueReference": { "reference": "Patient/keep" } } ] });
    let (status, answer) = f.call(&f.technician, Method::POST, "Patient/$merge", Some(&by_mrn)).await;
    assert_eq!(status, 200, "{answer}");
    let nameless = json!({ "resourceType": "Parameters", "parameter": [
        { "name": "source-patient-identifier", "valueIdentifier": { "system": "urn:oid:2.16.840.1.113883.3.72.5.9.1" } },
        { "name": "target-patient", "valueReference": { "reference": "Patient/keep" } } ] });
    let (status, _) = f.call(&f.technician, Method::POST, "Patient/$merge", Some(&nameless)).await;
    assert_eq!(status, 400, "an identifier without a value names no one");
    let (_, dup_merged) = f.call(&f.admin, Method::GET, "Patient/dup", None).await;
    let second =
        parameters(&[("source-patient", json!("Patient/keep")), ("target-patient", json!("Patient/p5"))]);
    let (status, answer) = f.call(&f.technician, Method::POST, "Patient/$merge", Some(&second)).await;
    assert_eq!(status, 200, "{answer}");
    // The first merge's record stays: dup is still replaced by keep.
    let (_, dup_now) = f.call(&f.admin, Method::GET, "Patient/dup", None).await;
    assert_eq!(dup_now, dup_merged, "the second merge rewrote the first one's history");
    let (_, obs) = f.call(&f.admin, Method::GET, "Observation/obs-dup1", None).await;
    assert_eq!(obs["subject"]["reference"], "Patient/p5");
    // The first merge cannot be undone before the second: what it wrote changed since.
    let first = parameters(&[("source-patient", json!("Patient/dup"))]);
    let (status, outcome) = f.call(&f.technician, Method::POST, "Patient/$unmerge", Some(&first)).await;
    assert_eq!(status, 409, "{outcome}");
    assert!(outcome.to_string().contains("Patient/keep"), "{outcome}");
    let (status, answer) = f
        .call(
            &f.technician,
            Method::POST,
            "Patient/$unmerge",
            Some(&parameters(&[("source-patient", json!("Patient/keep"))])),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = f.call(&f.technician, Method::POST, "Patient/$unmerge", Some(&first)).await;
    assert_eq!(status, 200, "{answer}");
    let restored = f.snapshot();
    for (key, body) in &before {
        assert_eq!(content(&restored[key]), content(body), "{key} is not as it was");
    }
    // Into an inactive registration nothing is merged.
    let (_, mut p6) = f.call(&f.admin, Method::GET, "Patient/p6", None).await;
    p6["active"] = json!(false);
    assert_eq!(f.call(&f.admin, Method::PUT, "Patient/p6", Some(&p6)).await.0, 200);
    let into_inactive =
        parameters(&[("source-patient", json!("Patient/dup")), ("target-patient", json!("Patient/p6"))]);
    assert_eq!(f.call(&f.technician, Method::POST, "Patient/$merge", Some(&into_inactive)).await.0, 422);
}
