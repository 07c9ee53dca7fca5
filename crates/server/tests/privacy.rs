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
    let security = server::Security::open(&privacy_dir).unwrap();
    let config = server::ServerConfig { security: Some(Arc::new(security)), ..Default::default() };
    let server = start_with(name, config).await;
    let secured = Secured { server, privacy_dir, admin, clinician, coder, officer, patient_a };
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
    // The capability statement needs a token too, and tokens work at once.
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

    // Withheld from Dr Grey, in searches (saying so) and reads.
    let (status, bundle) = secured.get(&secured.clinician, "Observation?subject=Patient/pa").await;
    assert_eq!(status, 200);
    let entries = bundle["entry"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["resource"]["resourceType"] != "Observation"), "{bundle}");
    assert!(
        entries.iter().any(|e| e["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("")
            .contains("3 entries withheld")),
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
    security.jwt = Some(privacy::jwt::Hs256::new(secret).unwrap());
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
