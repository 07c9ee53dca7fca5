//! Access control and the audit trail over HTTP: no token, no data; each role and scope does
//! what it may and no more; a patient's token never reaches another patient's record, by any
//! route; every access is audited, the trail verifies, and disclosures can be accounted for.

mod common;

use std::sync::Arc;

use chartroom_server as server;
use common::{TestServer, json, start_with};
use privacy::{Role, Users};
use reqwest::Method;
use serde_json::{Value, json};

struct Secured {
    server: TestServer,
    security: Arc<server::Security>,
    privacy_dir: std::path::PathBuf,
    admin: String,
    clinician: String,
    coder: String,
    officer: String,
    patient_a: String,
}

async fn secured(name: &str) -> Secured {
    let privacy_dir = testkit::temp_dir(&format!("{name}-privacy"));
    let users = Users::open(&privacy_dir).unwrap();
    let admin = users.add("root", Role::Admin, None, None).unwrap();
    let clinician = users.add("dr-grey", Role::Clinician, None, Some("Practitioner/prac-1")).unwrap();
    let coder = users.add("coder-kim", Role::Coder, None, None).unwrap();
    let officer = users.add("privacy-pat", Role::PrivacyOfficer, None, None).unwrap();
    let patient_a = users.add("alice", Role::Patient, Some("pa"), None).unwrap();
    let security = Arc::new(server::Security::open(&privacy_dir).unwrap());
    let config = server::ServerConfig { security: Some(security.clone()), ..Default::default() };
    let server = start_with(name, config).await;
    let secured = Secured { server, security, privacy_dir, admin, clinician, coder, officer, patient_a };
    // Two patients, each with an encounter and observations; an observation of b's points
    // at a's record (as a performer), the kind of link an _include could follow.
    let mut resources = vec![
        json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Able" }], "gender": "female" }),
        json!({ "resourceType": "Patient", "id": "pb", "name": [{ "family": "Baker" }], "gender": "male",
                "link": [{ "other": { "reference": "Patient/pa" }, "type": "seealso" }] }),
        json!({ "resourceType": "Practitioner", "id": "prac-1", "name": [{ "family": "Grey" }] }),
    ];
    for (patient, tag) in [("pa", "a"), ("pb", "b")] {
        resources
            .push(json!({ "resourceType": "Encounter", "id": format!("enc-{tag}"), "status": "finished",
            "class": { "code": "AMB" }, "subject": { "reference": format!("Patient/{patient}") } }));
        for n in 1..=3 {
            resources.push(json!({ "resourceType": "Observation", "id": format!("obs-{tag}{n}"), "status": "final",
                "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
                "subject": { "reference": format!("Patient/{patient}") },
                "encounter": { "reference": format!("Encounter/enc-{tag}") },
                "performer": [{ "reference": "Practitioner/prac-1" }],
                "valueQuantity": { "value": 70 + n, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" } }));
        }
    }
    for resource in &resources {
        let path =
            format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
        let response = secured.call(&secured.admin, Method::PUT, &path, Some(resource)).await;
        assert!(response.status().is_success(), "{path}: {}", response.status());
    }
    secured
}

impl Secured {
    async fn call(&self, token: &str, method: Method, path: &str, body: Option<&Value>) -> reqwest::Response {
        let bearer = format!("Bearer {token}");
        self.server.send(method, path, body, &[("authorization", bearer.as_str())]).await
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self.call(token, Method::GET, path, None).await;
        let status = response.status().as_u16();
        (status, json(response).await)
    }
}

/// Every `Patient/...` a response mentions.
fn patients_in(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                if object.get("resourceType").and_then(Value::as_str) == Some("Patient")
                    && let Some(id) = object.get("id").and_then(Value::as_str)
                {
                    found.push(format!("Patient/{id}"));
                }
                if let Some(Value::String(target)) = object.get("reference")
                    && target.starts_with("Patient/")
                {
                    found.push(target.clone());
                }
                object.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    walk(value, &mut found);
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_token_nothing_is_readable() {
    let secured = secured("privacy-401").await;
    let response = secured.server.get("Patient/pa").await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("www-authenticate").is_some());
    let outcome = json(response).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "login");
    assert_eq!(secured.call("chr_0000", Method::GET, "Patient/pa", None).await.status(), 401);
    assert_eq!(secured.call("not-a-token", Method::GET, "Observation", None).await.status(), 401);
    // Discovery needs no token (a client reads how to authenticate there); a token that is
    // sent must still be valid, and nothing else opens without one.
    let metadata = secured.server.get("metadata").await;
    assert_eq!(metadata.status(), 200);
    assert_eq!(json(metadata).await["resourceType"], "CapabilityStatement");
    assert_eq!(secured.call("chr_0000", Method::GET, "metadata", None).await.status(), 401);
    for path in [
        "Patient",
        "_history",
        "Patient/pa/$everything",
        "AuditEvent",
        "CodeSystem/$lookup?system=http://loinc.org&code=1",
    ] {
        assert_eq!(secured.server.get(path).await.status(), 401, "{path}");
    }
    // Tokens work at once.
    let users = Users::open(&secured.privacy_dir).unwrap();
    let late = users.add("late", Role::Analyst, None, None).unwrap();
    assert_eq!(secured.get(&late, "Patient/pa").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_do_what_their_scopes_permit() {
    let secured = secured("privacy-roles").await;
    assert_eq!(secured.get(&secured.clinician, "Observation?subject=Patient/pb").await.0, 200);
    // A coder reads and codes, but does not delete records or create patients.
    assert_eq!(secured.get(&secured.coder, "Encounter/enc-a").await.0, 200);
    assert_eq!(secured.call(&secured.coder, Method::DELETE, "Observation/obs-a1", None).await.status(), 403);
    let patient = json!({ "resourceType": "Patient", "name": [{ "family": "New" }] });
    assert_eq!(secured.call(&secured.coder, Method::POST, "Patient", Some(&patient)).await.status(), 403);
    let condition = json!({ "resourceType": "Condition", "subject": { "reference": "Patient/pa" },
        "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9" }] } });
    assert_eq!(secured.call(&secured.coder, Method::POST, "Condition", Some(&condition)).await.status(), 201);
    // A transaction is checked entry by entry.
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": condition, "request": { "method": "POST", "url": "Condition" } },
        { "request": { "method": "DELETE", "url": "Observation/obs-a2" } } ] });
    let refused = secured.call(&secured.coder, Method::POST, "", Some(&bundle)).await;
    assert_eq!(refused.status(), 403);
    assert!(json(refused).await["issue"][0]["diagnostics"].as_str().unwrap().contains("Bundle.entry[1]"));
    // The privacy officer reads but does not write.
    assert_eq!(
        secured.call(&secured.officer, Method::DELETE, "Observation/obs-a1", None).await.status(),
        403
    );
    // Only privacy officers and administrators read the audit trail; nobody writes it.
    assert_eq!(secured.get(&secured.clinician, "AuditEvent").await.0, 403);
    assert_eq!(secured.get(&secured.officer, "AuditEvent").await.0, 200);
    let event = json!({ "resourceType": "AuditEvent" });
    assert_eq!(secured.call(&secured.admin, Method::POST, "AuditEvent", Some(&event)).await.status(), 403);

    // An analyst reads and runs views but changes nothing; an HIM technician keeps the record
    // (corrects and retires entries) but does not read the trail.
    let users = Users::open(&secured.privacy_dir).unwrap();
    let analyst = users.add("ana-lyst", Role::Analyst, None, None).unwrap();
    let technician = users.add("him-tech", Role::HimTechnician, None, None).unwrap();
    assert_eq!(secured.get(&analyst, "Observation?subject=Patient/pa").await.0, 200);
    assert_eq!(secured.get(&analyst, "ViewDefinition/patients/$run").await.0, 200);
    assert_eq!(secured.call(&analyst, Method::POST, "Patient", Some(&patient)).await.status(), 403);
    assert_eq!(secured.call(&analyst, Method::DELETE, "Observation/obs-a3", None).await.status(), 403);
    assert_eq!(secured.get(&analyst, "AuditEvent").await.0, 403);
    let corrected = json!({ "resourceType": "Patient", "id": "pb", "name": [{ "family": "Baker-Smith" }], "gender": "male" });
    assert_eq!(secured.call(&technician, Method::PUT, "Patient/pb", Some(&corrected)).await.status(), 200);
    assert!(
        secured.call(&technician, Method::DELETE, "Observation/obs-b3", None).await.status().is_success()
    );
    assert_eq!(secured.get(&technician, "AuditEvent").await.0, 403);
    assert_eq!(secured.get(&technician, "Patient/pb/$disclosures").await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_token_never_reaches_another_patients_record() {
    let secured = secured("privacy-patient").await;
    let token = &secured.patient_a;
    let (status, own) = secured.get(token, "Patient/pa").await;
    assert_eq!((status, own["id"].as_str()), (200, Some("pa")));

    let denied = [
        "Patient/pb",
        "Patient/pb/_history",
        "Patient/pb/_history/1",
        "Patient/pb/$everything",
        "Patient/pb/Observation",
        "Observation/obs-b1",
        "Observation/obs-b1/_history/1",
        "Encounter/enc-b",
        "_history",
        "Observation/_history",
        "Encounter/$coding-worklist",
        "$data-quality",
        "Patient/pb/$disclosures",
    ];
    for path in denied {
        let (status, body) = secured.get(token, path).await;
        assert!(status == 403 || status == 404, "{path}: {status} {body}");
        assert!(!patients_in(&body).contains(&"Patient/pb".to_string()), "{path}: {body}");
    }
    // Writes of any kind.
    let observation = json!({ "resourceType": "Observation", "status": "final", "code": { "text": "x" }, "subject": { "reference": "Patient/pa" } });
    assert_eq!(secured.call(token, Method::POST, "Observation", Some(&observation)).await.status(), 403);
    assert_eq!(secured.call(token, Method::DELETE, "Observation/obs-a1", None).await.status(), 403);

    // Searches, chains, includes and $everything answer with the own record only.
    let searches = [
        ("Observation", 3),
        ("Observation?subject=Patient/pb", 0),
        ("Observation?patient=pb", 0),
        ("Observation?subject.name=Baker", 0),
        ("Observation?_include=Observation:subject", 4),
        ("Observation?_include=Observation:encounter&_revinclude=Observation:encounter", 4),
        ("Patient", 1),
        ("Patient?name=Baker", 0),
        ("Patient?_revinclude=Observation:subject", 4),
        ("Patient?_has:Observation:subject:code=8867-4", 1),
        ("Patient/pa/$everything", 5),
        ("Encounter", 1),
    ];
    for (path, expected) in searches {
        let (status, bundle) = secured.get(token, path).await;
        assert_eq!(status, 200, "{path}: {bundle}");
        assert!(!patients_in(&bundle).contains(&"Patient/pb".to_string()), "{path}: {bundle}");
        let clinical = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                !matches!(e["resource"]["resourceType"].as_str(), Some("OperationOutcome" | "Practitioner"))
            })
            .count();
        assert_eq!(clinical, expected, "{path}: {bundle}");
    }
    // The Patient b links to a: following it back gives nothing of b.
    let (_, bundle) = secured.get(token, "Patient?link=Patient/pa").await;
    assert!(!patients_in(&bundle).contains(&"Patient/pb".to_string()), "{bundle}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_access_is_audited_and_disclosures_are_accounted_for() {
    let secured = secured("privacy-audit").await;
    assert_eq!(secured.get(&secured.clinician, "Patient/pa").await.0, 200);
    assert_eq!(secured.get(&secured.clinician, "Observation?subject=Patient/pa").await.0, 200);
    assert_eq!(secured.server.get("Patient/pa").await.status(), 401);
    assert_eq!(secured.get(&secured.patient_a, "Patient/pb").await.0, 403);

    let (status, disclosures) = secured.get(&secured.officer, "Patient/pa/$disclosures").await;
    assert_eq!(status, 200, "{disclosures}");
    let events: Vec<&Value> =
        disclosures["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    let by = |user: &str, interaction: &str| {
        events.iter().any(|e| {
            e["agent"][0]["who"]["identifier"]["value"] == user && e["subtype"][0]["code"] == interaction
        })
    };
    assert!(by("dr-grey", "read"), "{disclosures}");
    assert!(by("dr-grey", "search-type"), "the search's returned patients count: {disclosures}");
    assert!(by("unauthenticated", "read"), "failed authentication is recorded");
    assert!(events.iter().all(|e| e["resourceType"] == "AuditEvent" && e["recorded"].is_string()));
    // The patient may see who saw their record; others may not.
    assert_eq!(secured.get(&secured.patient_a, "Patient/pa/$disclosures").await.0, 200);
    assert_eq!(secured.get(&secured.clinician, "Patient/pa/$disclosures").await.0, 403);
    // Denied access to b is on b's account.
    let (_, b) = secured.get(&secured.officer, "Patient/pb/$disclosures").await;
    assert!(b["entry"].as_array().unwrap().iter().any(|e| e["resource"]["outcome"] == "4"
        && e["resource"]["agent"][0]["who"]["identifier"]["value"] == "alice"));

    let verification = privacy::audit::verify(&secured.privacy_dir).unwrap();
    assert!(verification.problems.is_empty(), "{:?}", verification.problems);
    assert!(verification.entries >= 15, "{} entries", verification.entries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_directives_withhold_and_break_the_glass_overrides() {
    let secured = secured("privacy-consent").await;
    // Patient a does not want Dr Grey (Practitioner/prac-1) to see her observations.
    let consent = json!({
        "resourceType": "Consent", "id": "consent-a", "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": "Patient/pa" },
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN" }] },
        "provision": { "type": "permit", "provision": [{
            "type": "deny",
            "actor": [{ "role": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP" }] },
                        "reference": { "reference": "Practitioner/prac-1" } }],
            "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Observation" }] }] }
    });
    let stored = secured.call(&secured.admin, Method::PUT, "Consent/consent-a", Some(&consent)).await;
    assert!(stored.status().is_success(), "{}", stored.text().await.unwrap());

    // Withheld from Dr Grey, in searches (saying so, without saying how many: a count would
    // tell what the search's filters matched) and reads.
    let (status, bundle) = secured.get(&secured.clinician, "Observation?subject=Patient/pa").await;
    assert_eq!(status, 200);
    let entries = bundle["entry"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["resource"]["resourceType"] != "Observation"), "{bundle}");
    assert!(
        entries.iter().any(|e| e["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("")
            .contains("consent directive")),
        "{bundle}"
    );
    let (status, outcome) = secured.get(&secured.clinician, "Observation/obs-a1").await;
    assert_eq!(status, 403, "{outcome}");
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("consent"));
    // Not withheld: another class, another patient, another user.
    assert_eq!(secured.get(&secured.clinician, "Encounter/enc-a").await.0, 200);
    assert_eq!(secured.get(&secured.clinician, "Observation/obs-b1").await.0, 200);
    assert_eq!(secured.get(&secured.coder, "Observation/obs-a1").await.0, 200);

    // Break the glass: allowed, and the trail says why.
    let bearer = format!("Bearer {}", secured.clinician);
    let response = secured
        .server
        .send(
            Method::GET,
            "Observation/obs-a1",
            None,
            &[("authorization", bearer.as_str()), ("x-break-glass-reason", "unconscious in the ED")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let (_, disclosures) = secured.get(&secured.officer, "Patient/pa/$disclosures").await;
    assert!(
        disclosures["entry"].as_array().unwrap().iter().any(|e| e["resource"]["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == "break-the-glass" && x["description"] == "unconscious in the ED")),
        "{disclosures}"
    );

    // A directive written through the server applies at once.
    let deny_all = json!({
        "resourceType": "Consent", "id": "consent-b", "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": "Patient/pb" },
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT" }] },
        "provision": { "type": "deny", "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Encounter" }] }
    });
    assert_eq!(secured.get(&secured.clinician, "Encounter/enc-b").await.0, 200);
    let stored = secured.call(&secured.admin, Method::PUT, "Consent/consent-b", Some(&deny_all)).await;
    assert!(stored.status().is_success());
    assert_eq!(secured.get(&secured.clinician, "Encounter/enc-b").await.0, 403);
    assert_eq!(secured.get(&secured.coder, "Encounter/enc-b").await.0, 403, "no actor: everyone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_tokens_carry_smart_claims() {
    let privacy_dir = testkit::temp_dir("privacy-jwt-keys");
    let secret = b"a shared secret of at least 32 bytes!";
    let mut security = server::Security::open(&privacy_dir).unwrap();
    security.jwt = Some(privacy::jwt::Hs256::new(secret).unwrap().into());
    let admin = security.users.add("root", Role::Admin, None, None).unwrap();
    let config = server::ServerConfig { security: Some(Arc::new(security)), ..Default::default() };
    let server = start_with("privacy-jwt", config).await;
    for patient in ["pa", "pb"] {
        let body = json!({ "resourceType": "Patient", "id": patient });
        let bearer = format!("Bearer {admin}");
        let response = server
            .send(
                Method::PUT,
                &format!("Patient/{patient}"),
                Some(&body),
                &[("authorization", bearer.as_str())],
            )
            .await;
        assert!(response.status().is_success());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let token = |claims: Value| format!("Bearer {}", privacy::jwt::sign(secret, &claims));
    let patient = token(
        json!({ "sub": "alice", "scope": "launch/patient openid patient/*.rs", "patient": "pa", "exp": now + 600 }),
    );
    assert_eq!(
        server.send(Method::GET, "Patient/pa", None, &[("authorization", patient.as_str())]).await.status(),
        200
    );
    assert_eq!(
        server.send(Method::GET, "Patient/pb", None, &[("authorization", patient.as_str())]).await.status(),
        403
    );
    let expired = token(json!({ "sub": "alice", "scope": "patient/*.rs", "patient": "pa", "exp": now - 10 }));
    assert_eq!(
        server.send(Method::GET, "Patient/pa", None, &[("authorization", expired.as_str())]).await.status(),
        401
    );
    let forged = format!(
        "Bearer {}",
        privacy::jwt::sign(
            b"not the server's secret, 32 bytes",
            &json!({ "scope": "system/*.cruds", "exp": now + 600 })
        )
    );
    assert_eq!(
        server.send(Method::GET, "Patient/pb", None, &[("authorization", forged.as_str())]).await.status(),
        401
    );
    let system =
        token(json!({ "sub": "etl", "scope": "system/*.read", "role": "analyst", "exp": now + 600 }));
    assert_eq!(
        server.send(Method::GET, "Patient/pb", None, &[("authorization", system.as_str())]).await.status(),
        200
    );
    let body = json!({ "resourceType": "Patient" });
    assert_eq!(
        server
            .send(Method::POST, "Patient", Some(&body), &[("authorization", system.as_str())])
            .await
            .status(),
        403
    );
}

/// The ids of a searchset's AuditEvents, in order.
fn event_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn seq_of(id: &str) -> u64 {
    id.strip_prefix("audit-").unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_privacy_office_searches_the_trail_as_audit_events() {
    let secured = secured("privacy-audit-api").await;
    // The setup wrote 11 resources as root (entries 1 to 11); then:
    assert_eq!(secured.get(&secured.clinician, "Patient/pa").await.0, 200);
    assert_eq!(secured.get(&secured.clinician, "Observation?subject=Patient/pa").await.0, 200);
    // Only privacy officers and administrators read the trail, by any route.
    for path in ["AuditEvent", "AuditEvent/audit-1", "Patient/pa/AuditEvent", "AuditEvent?patient=pa"] {
        let (status, outcome) = secured.get(&secured.clinician, path).await;
        assert_eq!((status, outcome["resourceType"].as_str()), (403, Some("OperationOutcome")), "{path}");
    }
    assert_eq!(secured.get(&secured.coder, "Encounter/enc-a").await.0, 200);
    assert_eq!(secured.get(&secured.patient_a, "AuditEvent?patient=pa").await.0, 403);
    secured.security.audit.flush();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let between = fhir::DateTime::now_utc().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert_eq!(secured.get(&secured.clinician, "Patient/pb").await.0, 200);
    let officer = &secured.officer;

    // By agent: Dr Grey's seven accesses, newest first, refusals included.
    let (status, bundle) = secured.get(officer, "AuditEvent?agent=dr-grey").await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["type"], "searchset");
    let grey = event_ids(&bundle);
    assert_eq!(grey.len(), 7, "{bundle}");
    assert!(grey.windows(2).all(|w| seq_of(&w[0]) > seq_of(&w[1])), "newest first: {grey:?}");
    let events: Vec<&Value> = bundle["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    assert!(events.iter().all(|e| e["agent"][0]["who"]["identifier"]["value"] == "dr-grey"));
    let subtypes: Vec<&str> = events.iter().map(|e| e["subtype"][0]["code"].as_str().unwrap()).collect();
    assert_eq!(subtypes[0], "read", "Patient/pb came last");
    assert_eq!(events.iter().filter(|e| e["outcome"] == "4").count(), 4, "the four refused trail reads");
    let recorded: Vec<&str> = events.iter().map(|e| e["recorded"].as_str().unwrap()).collect();
    assert!(recorded.windows(2).all(|w| w[0] >= w[1]), "{recorded:?}");
    assert_eq!(event_ids(&secured.get(officer, "AuditEvent?agent-name=DR-").await.1), grey);
    assert_eq!(event_ids(&secured.get(officer, "AuditEvent?agent=dr-grey&outcome=4").await.1).len(), 4);

    // By date: before and after the mark.
    let after = secured.get(officer, &format!("AuditEvent?agent=dr-grey&date=ge{between}")).await.1;
    assert_eq!(event_ids(&after), grey[..1], "{after}");
    let before = secured.get(officer, &format!("AuditEvent?agent=dr-grey&date=lt{between}")).await.1;
    assert_eq!(event_ids(&before), grey[1..]);
    let today = &between[..10];
    let window = format!("AuditEvent?agent=dr-grey&date=ge{today}&date=le{today}");
    assert_eq!(event_ids(&secured.get(officer, &window).await.1), grey);

    // By patient: every access touching Patient/pa, and only those: Dr Grey's read, the
    // search that returned pa's observations, the refused `Patient/pa/AuditEvent`, and the
    // read of Patient/pb, which links to pa.
    let (_, pa) = secured.get(officer, "AuditEvent?patient=pa&agent=dr-grey").await;
    assert_eq!(event_ids(&pa).len(), 4, "{pa}");
    let allowed = format!("AuditEvent?patient=pa&agent=dr-grey&outcome=0&date=lt{between}");
    let (_, allowed) = secured.get(officer, &allowed).await;
    let subtypes: Vec<&str> = allowed["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["subtype"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(subtypes, ["search-type", "read"], "{allowed}");
    for entry in pa["entry"].as_array().unwrap() {
        let entities = entry["resource"]["entity"].as_array().unwrap();
        assert!(entities.iter().any(|x| x["what"]["reference"] == "Patient/pa"), "{entry}");
    }
    let compartment = secured.get(officer, "Patient/pa/AuditEvent?agent=dr-grey").await.1;
    assert_eq!(event_ids(&compartment), event_ids(&pa));
    let (_, everyone) = secured.get(officer, "AuditEvent?patient=Patient/pa&_count=100").await;
    let users: std::collections::BTreeSet<&str> = everyone["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["agent"][0]["who"]["identifier"]["value"].as_str().unwrap())
        .collect();
    // The coder's read of pa's encounter counts; so do the office's searches naming pa.
    assert_eq!(users, ["coder-kim", "dr-grey", "privacy-pat", "root"].into(), "{users:?}");

    // Paging: the 11 writes of the setup, five at a time, through the next links.
    let mut url = secured.server.url("AuditEvent?action=U&_count=5");
    let mut pages = Vec::new();
    loop {
        let response = secured.server.client.get(&url).bearer_auth(officer).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let bundle = json(response).await;
        pages.push(event_ids(&bundle));
        let next = bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next");
        match next {
            Some(link) => url = link["url"].as_str().unwrap().to_string(),
            None => break,
        }
        assert!(url.contains("action=U") && url.contains("_count=5") && url.contains("_cursor="), "{url}");
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 1]);
    let writes: Vec<u64> = pages.concat().iter().map(|id| seq_of(id)).collect();
    assert_eq!(writes, (1..=11).rev().collect::<Vec<u64>>());
    let (_, oldest) = secured.get(officer, "AuditEvent?action=U&_sort=date&_count=2&_total=accurate").await;
    assert_eq!(
        (event_ids(&oldest), oldest["total"].as_u64()),
        (vec!["audit-1".into(), "audit-2".into()], Some(11))
    );

    // A read gives the resource the search gave.
    let first = &bundle["entry"][0];
    let id = first["resource"]["id"].as_str().unwrap();
    assert_eq!(first["fullUrl"], secured.server.url(&format!("AuditEvent/{id}")));
    let (status, read) = secured.get(officer, &format!("AuditEvent/{id}")).await;
    assert_eq!((status, &read), (200, &first["resource"]));
    assert_eq!(secured.get(officer, &format!("AuditEvent/{id}/_history/1")).await.1, read);
    assert_eq!(secured.get(officer, &format!("AuditEvent/{id}/_history/2")).await.0, 404);
    assert_eq!(secured.get(&secured.admin, &format!("AuditEvent/{id}")).await.0, 200, "administrators too");
    let (status, missing) = secured.get(officer, "AuditEvent/audit-99999").await;
    assert_eq!((status, missing["issue"][0]["code"].as_str()), (404, Some("not-found")));

    // What is not supported is refused by name.
    let (status, outcome) = secured.get(officer, "AuditEvent?patient=pa&address=10.0.0.1&_elements=id").await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "not-supported");
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("parameters address, _elements;"), "{diagnostics}");
    assert_eq!(secured.get(officer, "AuditEvent?date=yesterday").await.0, 400);
    assert_eq!(secured.get(officer, "AuditEvent/_history").await.0, 400);
    let patch = secured.call(officer, Method::PATCH, &format!("AuditEvent/{id}"), Some(&json!([]))).await;
    assert_eq!(patch.status(), 405);

    // A form-encoded search, as POST [base]/AuditEvent/_search.
    let response = secured
        .server
        .client
        .post(secured.server.url("AuditEvent/_search"))
        .bearer_auth(officer)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("agent=dr-grey")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(event_ids(&json(response).await), grey);

    // Reading the trail is itself on the trail, with the patient the search named.
    let (_, own) = secured.get(officer, "AuditEvent?agent=privacy-pat&patient=pa&subtype=search-type").await;
    let own = own["entry"].as_array().unwrap();
    assert!(!own.is_empty());
    assert!(own.iter().all(|e| e["resource"]["entity"][1]["name"] == "AuditEvent"), "{own:?}");
    let verification = privacy::audit::verify(&secured.privacy_dir).unwrap();
    assert!(verification.problems.is_empty(), "{:?}", verification.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_bearer_tokens_signed_rs256_and_es256_carry_smart_claims() {
    let rsa = privacy::jwt::Signer::rs256(
        "rsa-1",
        include_bytes!("../../privacy/tests/data/test-only-rsa2048-private.pk8"),
    )
    .unwrap();
    let (ec, _) = privacy::jwt::Signer::generate_es256("ec-1").unwrap();
    let jwks = json!({ "keys": [rsa.public_jwk(), ec.public_jwk()] });
    let privacy_dir = testkit::temp_dir("privacy-jwks-keys");
    let mut security = server::Security::open(&privacy_dir).unwrap();
    let jwks = privacy::jwt::Jwks::from_json(jwks.to_string().as_bytes()).unwrap();
    security.jwt = Some(privacy::jwt::Verifier::from(jwks).with_issuer("https://auth.example.org"));
    let admin = security.users.add("root", Role::Admin, None, None).unwrap();
    let config = server::ServerConfig { security: Some(Arc::new(security)), ..Default::default() };
    let server = start_with("privacy-jwks", config).await;
    let send = |token: String, path: &'static str| {
        let server = &server;
        async move {
            let bearer = format!("Bearer {token}");
            let response = server.send(Method::GET, path, None, &[("authorization", bearer.as_str())]).await;
            let status = response.status().as_u16();
            (status, json(response).await)
        }
    };
    for (patient, observation) in [("pa", "obs-a"), ("pb", "obs-b")] {
        let bearer = format!("Bearer {admin}");
        let headers = [("authorization", bearer.as_str())];
        let body = json!({ "resourceType": "Patient", "id": patient });
        assert!(
            server
                .send(Method::PUT, &format!("Patient/{patient}"), Some(&body), &headers)
                .await
                .status()
                .is_success()
        );
        let body = json!({ "resourceType": "Observation", "id": observation, "status": "final", "code": { "text": "pulse" },
                           "subject": { "reference": format!("Patient/{patient}") } });
        let path = format!("Observation/{observation}");
        assert!(server.send(Method::PUT, &path, Some(&body), &headers).await.status().is_success());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let issuer = "https://auth.example.org";

    // RS256, patient context: the own record only.
    let patient = rsa
        .sign(&json!({ "iss": issuer, "sub": "alice", "scope": "launch/patient patient/*.rs", "patient": "pa", "exp": now + 600 }))
        .unwrap();
    assert_eq!(send(patient.clone(), "Patient/pa").await.0, 200);
    assert_eq!(send(patient.clone(), "Patient/pb").await.0, 403);
    let (status, bundle) = send(patient.clone(), "Observation").await;
    assert_eq!(status, 200);
    let subjects: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["subject"]["reference"].as_str())
        .collect();
    assert_eq!(subjects, ["Patient/pa"], "{bundle}");

    // ES256, a user: reads across records, writes nothing its scopes do not allow.
    let user = ec
        .sign(&json!({ "iss": issuer, "sub": "dr-who", "scope": "openid fhirUser user/*.rs", "fhirUser": "Practitioner/p1", "exp": now + 600 }))
        .unwrap();
    assert_eq!(send(user.clone(), "Patient/pb").await.0, 200);
    assert_eq!(send(user.clone(), "Observation?subject=Patient/pb").await.0, 200);
    let bearer = format!("Bearer {user}");
    let body = json!({ "resourceType": "Patient" });
    assert_eq!(
        server
            .send(Method::POST, "Patient", Some(&body), &[("authorization", bearer.as_str())])
            .await
            .status(),
        403
    );

    // Forged, confused, expired, from elsewhere: 401 with an OperationOutcome saying why.
    let impostor = privacy::jwt::Signer::rs256(
        "rsa-1",
        include_bytes!("../../privacy/tests/data/test-only-rsa2048-other-private.pk8"),
    )
    .unwrap();
    let claims = json!({ "iss": issuer, "sub": "mallory", "scope": "system/*.cruds", "exp": now + 600 });
    let modulus = rsa.public_jwk()["n"].as_str().unwrap().to_string();
    // Key confusion: HS256 keyed with the public key's modulus, which anyone can read.
    let confused = privacy::jwt::sign(modulus.as_bytes(), &claims);
    let mut stranger = claims.clone();
    stranger["iss"] = Value::from("https://evil.example.org");
    let mut expired = claims.clone();
    expired["exp"] = Value::from(now - 5);
    for (token, why) in [
        (impostor.sign(&claims).unwrap(), "signature does not verify"),
        (confused, "no shared secret is configured"),
        (rsa.sign(&stranger).unwrap(), "not issued by"),
        (ec.sign(&expired).unwrap(), "expired"),
    ] {
        let (status, outcome) = send(token, "Patient/pb").await;
        assert_eq!(status, 401, "{why}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["code"], "login");
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(diagnostics.contains(why), "{diagnostics} (expected: {why})");
    }
    // The refusals are on the trail with their reason.
    let (status, refused) = send(admin.clone(), "AuditEvent?agent=unauthenticated&outcome=4").await;
    assert_eq!(status, 200);
    let reasons: Vec<&str> = refused["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["outcomeDesc"].as_str())
        .collect();
    for why in ["signature does not verify", "no shared secret is configured", "not issued by", "expired"] {
        assert_eq!(reasons.iter().filter(|r| r.contains(why)).count(), 1, "{why}: {reasons:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_run_over_http_for_the_roles_that_may_and_never_around_consent() {
    let secured = secured("privacy-views").await;
    // Rows in the format asked for, with its media type.
    let bearer = format!("Bearer {}", secured.admin);
    let response = secured
        .server
        .send(
            Method::GET,
            "ViewDefinition/patients/$run?_format=csv",
            None,
            &[("authorization", bearer.as_str())],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv");
    let csv = response.text().await.unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.contains("pa,") && csv.contains("pb,"), "{csv}");
    let response = secured
        .server
        .send(
            Method::GET,
            "ViewDefinition/patients/$run?_format=parquet",
            None,
            &[("authorization", bearer.as_str())],
        )
        .await;
    assert_eq!(response.headers()["content-type"], "application/vnd.apache.parquet");
    assert!(response.bytes().await.unwrap().starts_with(b"PAR1"));
    let (status, listed) = secured.get(&secured.clinician, "ViewDefinition").await;
    assert_eq!(status, 200);
    assert!(listed["entry"].as_array().unwrap().len() >= 10);

    // A patient's token runs no views; a clinician may while no directive is on record.
    assert_eq!(secured.get(&secured.patient_a, "ViewDefinition/observations/$run").await.0, 403);
    let (status, rows) = secured.get(&secured.clinician, "ViewDefinition/observations/$run").await;
    assert_eq!(status, 200);
    assert_eq!(rows.as_array().unwrap().len(), 6);

    // Once patient a restricts her record, a view over everyone would leak it: refused for
    // the roles consent binds, allowed for another patient's rows and for the administrator.
    let consent = json!({
        "resourceType": "Consent", "id": "consent-a", "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": "Patient/pa" },
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT" }] },
        "provision": { "type": "deny", "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Observation" }] }
    });
    assert!(
        secured
            .call(&secured.admin, Method::PUT, "Consent/consent-a", Some(&consent))
            .await
            .status()
            .is_success()
    );
    let (status, outcome) = secured.get(&secured.clinician, "ViewDefinition/observations/$run").await;
    assert_eq!(status, 403, "{outcome}");
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("consent"));
    assert_eq!(
        secured.get(&secured.coder, "ViewDefinition/observations/$run?patient=Patient/pa").await.0,
        403
    );
    let (status, rows) =
        secured.get(&secured.coder, "ViewDefinition/observations/$run?patient=Patient/pb").await;
    assert_eq!(status, 200);
    assert!(rows.as_array().unwrap().iter().all(|r| r["patient_id"] == "pb"));
    assert_eq!(secured.get(&secured.admin, "ViewDefinition/observations/$run").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_bulk_exports_their_own_record_and_no_one_elses() {
    let secured = secured("privacy-export").await;
    let kickoff = |token: String, path: &'static str| {
        let secured = &secured;
        async move {
            let bearer = format!("Bearer {token}");
            secured
                .server
                .send(
                    Method::GET,
                    path,
                    None,
                    &[("authorization", bearer.as_str()), ("prefer", "respond-async")],
                )
                .await
        }
    };
    // Not the whole record, not someone else's, not by a Group.
    assert_eq!(kickoff(secured.patient_a.clone(), "$export").await.status(), 403);
    assert_eq!(kickoff(secured.patient_a.clone(), "Patient/pb/$export").await.status(), 403);
    // Patient/$export is the patient's own record, even when it names someone else.
    let started = kickoff(secured.patient_a.clone(), "Patient/$export?patient=Patient/pb").await;
    assert_eq!(started.status(), 202);
    let status_url = started.headers()["content-location"].to_str().unwrap().to_string();
    let status_path = status_url.split("/fhir/").nth(1).unwrap().to_string();
    let manifest = loop {
        let (status, body) = secured.get(&secured.patient_a, &status_path).await;
        match status {
            202 => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            200 => break body,
            other => panic!("{other}: {body}"),
        }
    };
    let mut exported = Vec::new();
    for output in manifest["output"].as_array().unwrap() {
        let file_path = output["url"].as_str().unwrap().split("/fhir/").nth(1).unwrap().to_string();
        let bearer = format!("Bearer {}", secured.patient_a);
        let response =
            secured.server.send(Method::GET, &file_path, None, &[("authorization", bearer.as_str())]).await;
        assert_eq!(response.status(), 200);
        for line in response.text().await.unwrap().lines() {
            exported.push(serde_json::from_str::<Value>(line).unwrap());
        }
        // Nobody else fetches the patient's files; the administrator may.
        assert_eq!(secured.call(&secured.clinician, Method::GET, &file_path, None).await.status(), 403);
        assert_eq!(secured.call(&secured.admin, Method::GET, &file_path, None).await.status(), 200);
    }
    assert!(exported.iter().any(|r| r["resourceType"] == "Patient" && r["id"] == "pa"));
    assert_eq!(exported.iter().filter(|r| r["resourceType"] == "Observation").count(), 3);
    let mentioned: Vec<String> = exported.iter().flat_map(patients_in).collect();
    assert!(mentioned.iter().all(|p| p == "Patient/pa"), "{mentioned:?}");
    assert_eq!(secured.get(&secured.clinician, &status_path).await.0, 403);
    // The administrator exports everything.
    let all = kickoff(secured.admin.clone(), "$export").await;
    assert_eq!(all.status(), 202);
}
